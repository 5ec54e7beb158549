#!/bin/sh
# `promfed render` as a KRM exec function: kustomize calls this without arguments, with a
# ResourceList on stdin. PROMFED names the binary when it is not `promfed` on PATH.
exec "${PROMFED:-promfed}" render
