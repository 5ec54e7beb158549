#!/usr/bin/env bash
# The attacks of issue 17 ("a hostile neighbour cannot stop promfed") at full size, against
# the release binary pinned to one core with MALLOC_ARENA_MAX=2, as the Deployment runs it
# (cpu: 1). It runs the attack tests of tests/it/attacks.rs one at a time with
# PROMFED_ATTACKS_FULL=1: the issue's counts (20,400 idle TLS connections, 16,000 half-sent
# handshakes and trickled headers, 15,000 idle metrics connections, 32 clients with looping
# certificate chains, ...), promfed's default limits (no test flags), and well-behaved clients
# at 10 reviews a second each (a kept HTTP/1.1 connection, an HTTP/2 connection, a new TLS
# connection per review; every 5th a ConfigMap never seen before). Every assertion of the
# tests holds at full size too: each review answered correctly within the webhook's 5 s,
# peak RSS under 128 MiB. The figures (the tests' PROBE lines) go to stdout; the whole output
# to $WORK/probe.log.
#
#   scripts/attack-probe.sh [FILTER]     # FILTER: a test name part, default all of attacks::
#
# Env: CPU (the core to pin promfed to, 0), KEEP=1 keeps the work dir. Needs taskset
# (util-linux); the client side needs up to 17,000 file descriptors (ulimit -n).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FILTER=${1:-}
CPU=${CPU:-0}
say() { printf 'attack-probe: %s\n' "$*" >&2; }
command -v taskset >/dev/null || { say "missing taskset (util-linux)"; exit 1; }
if [ "$(ulimit -n)" -lt 17000 ]; then
    ulimit -n 17000 2>/dev/null || { say "ulimit -n $(ulimit -n): the attacks need 17000"; exit 1; }
fi

WORK=$(mktemp -d /tmp/promfed-attack-probe-XXXXXX)
cleanup() { if [ "${KEEP:-0}" = 1 ]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

say "building promfed and the tests (release)"
(cd "$ROOT" && cargo build --release --quiet --bin promfed)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/promfed

# The tests start promfed through this: one core, two malloc arenas (deploy/base).
cat >"$WORK/promfed" <<EOF
#!/bin/sh
MALLOC_ARENA_MAX=2 exec taskset -c $CPU "$BIN" "\$@"
EOF
chmod +x "$WORK/promfed"

say "running the attacks at full size (several minutes)"
status=0
(cd "$ROOT" && PROMFED_ATTACKS_FULL=1 PROMFED_BIN="$WORK/promfed" \
    cargo test --release --quiet --test tests -- "attacks::$FILTER" --test-threads=1 --nocapture) \
    >"$WORK/probe.log" 2>&1 || status=$?
grep '^PROBE ' "$WORK/probe.log" | sed 's/^PROBE //'
grep -E '^test .* (ok|FAILED)$|^test result' "$WORK/probe.log" >&2 || true
if [ "$status" != 0 ]; then
    say "failed (exit $status); the output:"
    tail -n 60 "$WORK/probe.log" >&2
    KEEP=1
fi
exit "$status"
