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
#
# As a Helm 4 post-renderer plugin (deploy/helm-plugin/promfed, which runs this script): Helm 4
# keeps a plugin's stderr to itself and says only 'plugin "promfed" exited with error', so
# there (HELM_PLUGIN_NAME set) the messages are also written to helm's own stderr
# (/proc/$PPID/fd/2, Linux), where the user sees them.
set -euo pipefail

config=${1:-${PROMFED_CONFIG:-promfed.yaml}}
promfed=${PROMFED:-promfed}

# helm's own stderr, when helm 4 runs this as a plugin and it can be written.
helm_stderr=
if [ -n "${HELM_PLUGIN_NAME:-}" ] && [ -w "/proc/$PPID/fd/2" ]; then
    helm_stderr=/proc/$PPID/fd/2
fi

fail() {
    printf 'helm-post-renderer: %s\n' "$*" >&2
    [ -z "$helm_stderr" ] || printf 'helm-post-renderer: %s\n' "$*" >"$helm_stderr"
    exit 1
}

[ $# -le 1 ] || fail "takes at most one argument (the promfed config file), got $#"
command -v "$promfed" >/dev/null 2>&1 ||
    fail "promfed binary not found (\"$promfed\"): put it on PATH or set PROMFED=/path/to/promfed"
[ -r "$config" ] ||
    fail "promfed config \"$config\" is not readable: pass it as the argument (--post-renderer-args) or set PROMFED_CONFIG"

if [ -z "$helm_stderr" ]; then
    # exec: promfed's exit code and stderr are helm's to see.
    exec "$promfed" render --config "$config" -
fi
status=0
"$promfed" render --config "$config" - 2>"$helm_stderr" || status=$?
exit "$status"
