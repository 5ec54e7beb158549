#!/usr/bin/env bash
# Packages the helm 4 post-renderer plugin (deploy/helm-plugin/promfed) as a plugin archive,
# OUTDIR/promfed-VERSION.tgz, which `helm plugin install` copies (a folder it only links,
# so the plugin would break when the checkout moves):
#
#   scripts/helm-plugin-package.sh [OUTDIR]       (default: target/helm-plugin)
#   HELM_DATA_HOME=~/.local/share/helm4 helm4 plugin install --verify=false OUTDIR/promfed-VERSION.tgz
#
# The archive holds `promfed/plugin.yaml` and `promfed/helm-post-renderer.sh` (the script
# itself, not the folder's symlink to it), the layout helm 4 expects of `NAME-VERSION.tgz`.
# It is unsigned, hence `--verify=false` (helm 4 verifies archives by default and finds no
# `.prov`). It depends on the two files only: same input, same bytes.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PLUGIN=$ROOT/deploy/helm-plugin/promfed
OUT=${1:-$ROOT/target/helm-plugin}

# `version:` of plugin.yaml: a top-level key, first field of its line.
version=$(awk '$1 == "version:" { print $2; exit }' "$PLUGIN/plugin.yaml")
[ -n "$version" ] || { echo "helm-plugin-package: no version in $PLUGIN/plugin.yaml" >&2; exit 1; }

mkdir -p "$OUT"
archive=$OUT/promfed-$version.tgz
tar --dereference --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    -C "$ROOT/deploy/helm-plugin" -cf - promfed | gzip -n >"$archive"
echo "$archive"
