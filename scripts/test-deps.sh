#!/usr/bin/env bash
# Installs what promfed's tests need, when it is missing, and says what it found.
# Idempotent: a second run installs nothing and takes a second or two.
#
#   Debian packages  prometheus (/usr/bin/prometheus, /usr/bin/promtool 2.42), wrk, hyperfine,
#                    umoci and skopeo (the image: scripts/image.sh), runc (the node mode of
#                    scripts/kube-local.sh)
#   Python venv      .venv/ at the crate root, from scripts/requirements-test.txt
#                    (pyyaml, jsonpatch, kubernetes-validate: the real peers the tests compare with)
#   lezer-promql     the Prometheus project's lezer grammar of PromQL (npm, pinned in
#                    tests/peers/lezer/ with its lock file) in ~/.cache/promfed-lezer, outside
#                    the clone; the parser tests compare with it (needs node and npm)
#   Go tools         kube-apiserver, kubectl, etcd, helm 3 and 4, kapp, ytt, Prometheus 3,
#                    prometheus-operator and CRDs, built from the Go module proxy at the versions
#                    pinned in tests/tools/ into ~/.cache/promfed-tools (scripts/build-tools.sh;
#                    15 to 30 minutes the first time on 2 cores, a second after that)
#
# As root (CI, a bare Debian 12 machine) it installs; otherwise it prints the command to run
# and exits 1 if something is missing.
# Env: PROMFED_VENV (default <root>/.venv), PROMFED_BASE_PYTHON (default python3),
# PROMFED_LEZER (default ~/.cache/promfed-lezer).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${PROMFED_VENV:-$ROOT/.venv}
REQ=$ROOT/scripts/requirements-test.txt
BASE_PYTHON=${PROMFED_BASE_PYTHON:-python3}
export DEBIAN_FRONTEND=noninteractive

say() { printf 'test-deps: %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
is_root() { [ "$(id -u)" = 0 ]; }

missing=()     # what a non-root run could not install
apt_updated=0

apt_get() {
    # Wait for a dpkg lock held by someone else (another engineer's install) instead of failing.
    apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 "$@"
}

apt_update() {
    if [ "$apt_updated" = 0 ]; then
        say "apt-get update"
        apt_get update -q >/dev/null
        apt_updated=1
    fi
}

# pids of running Prometheus servers (the Debian binary), one per line
prometheus_pids() { pgrep -x prometheus 2>/dev/null || true; }

# Install Debian packages. The prometheus package's postinst starts the service through
# invoke-rc.d (no systemd in a container: it runs /etc/init.d/prometheus start, a daemon on
# :9090 that would outlive the install). A policy-rc.d that answers 101 tells invoke-rc.d not
# to start anything; we add one for the install only when the machine has none, and we stop
# any Prometheus server that still appeared during the install.
apt_install() {
    local start before after pid policy=/usr/sbin/policy-rc.d added_policy=0
    start=$(now)
    before=$(prometheus_pids)
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# added by promfed scripts/test-deps.sh for one apt-get install\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT # also when the install is interrupted
    fi
    # Refresh the package lists only when they don't know a package or when the install fails
    # (lists too old: the .deb files they name are gone from the mirror).
    local p
    for p in "$@"; do
        if ! apt-cache show --no-all-versions "$p" >/dev/null 2>&1; then
            apt_update
            break
        fi
    done
    local rc=0
    if ! apt_get install -y -q --no-install-recommends "$@" >/tmp/promfed-test-deps-apt.log 2>&1; then
        if [ "$apt_updated" = 0 ]; then
            apt_update
            apt_get install -y -q --no-install-recommends "$@" >/tmp/promfed-test-deps-apt.log 2>&1 || rc=$?
        else
            rc=1
        fi
    fi
    if [ "$added_policy" = 1 ]; then
        rm -f "$policy"
        trap - EXIT
    fi
    after=$(prometheus_pids)
    for pid in $after; do
        if ! grep -qx "$pid" <<<"$before"; then
            say "stopping the Prometheus server (pid $pid) that the package install started"
            kill "$pid" 2>/dev/null || true
        fi
    done
    if [ "$rc" != 0 ]; then
        say "apt-get install $* failed; its log:"
        tail -n 30 /tmp/promfed-test-deps-apt.log >&2
        exit 1
    fi
    say "installed Debian packages: $* ($(since "$start"))"
}

# --- Debian packages ---------------------------------------------------------------------
debs=()
check_tool() { # check_tool COMMAND PACKAGE VERSION-ARGS...
    local cmd=$1 pkg=$2
    shift 2
    local path
    if path=$(command -v "$cmd"); then
        say "found $cmd: $path ($("$path" "$@" 2>&1 | head -n 1))"
    else
        debs+=("$pkg")
    fi
}
check_tool prometheus prometheus --version
check_tool promtool prometheus --version
check_tool wrk wrk --version
check_tool hyperfine hyperfine --version
check_tool openssl openssl version
check_tool node nodejs --version
check_tool npm npm --version
# the image (scripts/image.sh: umoci assembles it, skopeo reads it back) and the node's runtime
check_tool umoci umoci --version
check_tool skopeo skopeo --version
check_tool runc runc --version
check_tool readelf binutils --version
# de-duplicate (prometheus and promtool come from one package)
if [ "${#debs[@]}" -gt 0 ]; then
    mapfile -t debs < <(printf '%s\n' "${debs[@]}" | sort -u)
fi

if [ "${#debs[@]}" -gt 0 ]; then
    if is_root; then
        apt_install "${debs[@]}"
        for cmd in prometheus promtool wrk hyperfine openssl node npm umoci skopeo runc readelf; do
            command -v "$cmd" >/dev/null || { say "still missing after install: $cmd"; exit 1; }
        done
        say "now: $(promtool --version 2>&1 | head -n 1); $(hyperfine --version); wrk $(wrk --version 2>&1 | head -n 1 | awk '{print $2}')"
    else
        missing+=("Debian packages ${debs[*]}: sudo apt-get install --no-install-recommends ${debs[*]}")
    fi
fi

# kubectl (kustomize) and kpt come with this project's machine image, not from Debian: say so
# when they are missing rather than letting the deploy tests fail obscurely.
for cmd in kubectl kpt; do
    command -v "$cmd" >/dev/null || say "missing $cmd: the deploy tests need it (not in Debian's archive; install it from its project)"
done

# --- Python venv -------------------------------------------------------------------------
# The stamp holds the hash of the requirements the venv was built from: a changed pin reinstalls.
req_hash=$(sha256sum "$REQ" | cut -d' ' -f1)
stamp=$VENV/.promfed-requirements.sha256
venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        [ "$(cat "$stamp" 2>/dev/null)" = "$req_hash" ] &&
        "$VENV/bin/python" -c 'import yaml, jsonpatch, kubernetes_validate' 2>/dev/null
}

make_venv() {
    local start
    start=$(now)
    # A venv whose interpreter is gone (the base Python was removed) is rebuilt from scratch.
    if [ -e "$VENV" ] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
        say "removing broken venv $VENV"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        if ! command -v "$BASE_PYTHON" >/dev/null || ! "$BASE_PYTHON" -m venv "$VENV" 2>/dev/null; then
            # Debian's python3 makes venvs only with python3-venv (ensurepip) installed.
            rm -rf "$VENV"
            if is_root; then
                apt_install python3 python3-venv
                BASE_PYTHON=/usr/bin/python3
                "$BASE_PYTHON" -m venv "$VENV"
            else
                missing+=("a Python with venv: sudo apt-get install --no-install-recommends python3 python3-venv")
                return
            fi
        fi
        say "created venv $VENV ($("$VENV/bin/python" --version 2>&1))"
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
    echo "$req_hash" >"$stamp"
    say "installed Python packages from scripts/requirements-test.txt into $VENV ($(since "$start"))"
}

if venv_ok; then
    say "found venv $VENV: $("$VENV/bin/python" --version 2>&1), $("$VENV/bin/python" -m pip freeze 2>/dev/null | grep -iE '^(pyyaml|jsonpatch|kubernetes-validate)==' | tr '\n' ' ')"
else
    make_venv
    venv_ok || [ "${#missing[@]}" -gt 0 ] || { say "venv $VENV still lacks yaml/jsonpatch/kubernetes_validate"; exit 1; }
fi

if [ "${#missing[@]}" -gt 0 ]; then
    say "not root, so nothing was installed. Missing:"
    for m in "${missing[@]}"; do say "  $m"; done
    say "then run scripts/test-deps.sh again (it makes the venv itself once python3-venv is there)"
    exit 1
fi

# --- lezer-promql ------------------------------------------------------------------------
# Installed with `npm ci` from the pinned package.json and package-lock.json into a directory of
# its own outside the clone (made aside and moved into place, so an interrupted install leaves
# no half-made cache); as for the venv, a stamp holds the hash of the pins it was made from and
# a changed pin reinstalls.
LEZER=${PROMFED_LEZER:-$HOME/.cache/promfed-lezer}
LEZER_PINS=$ROOT/tests/peers/lezer
lezer_hash=$(cat "$LEZER_PINS/package.json" "$LEZER_PINS/package-lock.json" | sha256sum | cut -d' ' -f1)
lezer_ok() {
    [ "$(cat "$LEZER/.promfed-pins.sha256" 2>/dev/null)" = "$lezer_hash" ] &&
        [ -f "$LEZER/node_modules/@prometheus-io/lezer-promql/package.json" ]
}

make_lezer() {
    local start tmp
    start=$(now)
    mkdir -p "$(dirname "$LEZER")"
    tmp=$LEZER.tmp.$$
    rm -rf "$tmp"
    mkdir "$tmp"
    cp "$LEZER_PINS/package.json" "$LEZER_PINS/package-lock.json" "$tmp/"
    if ! (cd "$tmp" && npm ci --no-audit --no-fund >/tmp/promfed-test-deps-npm.log 2>&1); then
        rm -rf "$tmp"
        say "npm ci of tests/peers/lezer failed; its log:"
        tail -n 30 /tmp/promfed-test-deps-npm.log >&2
        exit 1
    fi
    echo "$lezer_hash" >"$tmp/.promfed-pins.sha256"
    rm -rf "$LEZER"
    mv "$tmp" "$LEZER"
    say "installed $(lezer_version) into $LEZER ($(since "$start"))"
}

lezer_version() {
    node -p 'const p = require(process.argv[1]); p.name + " " + p.version' \
        "$LEZER/node_modules/@prometheus-io/lezer-promql/package.json"
}

if lezer_ok; then
    say "found $(lezer_version) in $LEZER"
else
    make_lezer
fi

# --- Go tools ----------------------------------------------------------------------------
"$ROOT/scripts/build-tools.sh"
say "all test dependencies present"
