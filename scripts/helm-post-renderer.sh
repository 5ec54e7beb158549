#!/usr/bin/env bash
# Helm post-renderer: federates the prometheus-server ConfigMap of a chart's manifests with
# `promfed render`, for clusters without promfed's webhook (with the webhook, nothing is needed).
#
#   helm install prometheus prometheus-community/prometheus \
#     --post-renderer scripts/helm-post-renderer.sh [--post-renderer-args CONFIG]
#
# Helm pipes the rendered manifests to stdin and installs what this writes to stdout.
# The promfed config: the first argument, else $PROMFED_CONFIG, else ./promfed.yaml.
# The binary: $PROMFED, else `promfed` on PATH.
# Any failure (no binary, no config, a ConfigMap promfed cannot rewrite) exits non-zero with
# promfed's message on stderr, which makes helm stop before installing anything.
set -euo pipefail

config=${1:-${PROMFED_CONFIG:-promfed.yaml}}
promfed=${PROMFED:-promfed}

fail() {
    printf 'helm-post-renderer: %s\n' "$*" >&2
    exit 1
}

[ $# -le 1 ] || fail "takes at most one argument (the promfed config file), got $#"
command -v "$promfed" >/dev/null 2>&1 ||
    fail "promfed binary not found (\"$promfed\"): put it on PATH or set PROMFED=/path/to/promfed"
[ -r "$config" ] ||
    fail "promfed config \"$config\" is not readable: pass it as the argument (--post-renderer-args) or set PROMFED_CONFIG"

# exec: promfed's exit code and stderr are helm's to see.
exec "$promfed" render --config "$config" -
