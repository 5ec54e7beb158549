#!/usr/bin/env bash
# Soak test of `promfed serve` (release build) over TLS: a steady request rate for SECONDS,
# resident memory sampled every 10 s into a table, then a summary. Fails (exit 1) on any failed
# request or when RSS grows more than $MAX_GROWTH_MIB over the second half of the run (the
# response cache, 256 answers, fills during the first).
#
#   scripts/soak.sh [SECONDS] [RATE]        # defaults: 600 s at 50 requests/s (make soak)
#
# The client is the test suite's own (tests/support/load.rs, the `Load` the fault tests use),
# run as the ignored test `faults::soak_for_scripts_soak_sh`, built in release like the server:
# $CONNECTIONS kept connections, each sending RATE/CONNECTIONS requests per second on an
# absolute schedule (a slow answer does not cause a burst afterwards). Every $MISS_EVERY-th
# request is a ConfigMap never seen before (a label value in a rule varies: the engine runs,
# the response cache evicts), the rest re-apply the TKG ConfigMap (answered from the cache).
# Every answer must be a 200 carrying a patch. The server runs deploy/base/promfed.yaml.
#
# Env: CONNECTIONS (4), MISS_EVERY (10), MAX_GROWTH_MIB (16), PROMFED (a promfed binary;
# default: cargo build --release).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_TOTAL=${1:-600}
RATE=${2:-50}
say() { printf 'soak: %s\n' "$*" >&2; }

if [ -z "${PROMFED:-}" ]; then
    say "building promfed (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin promfed)
    PROMFED=${CARGO_TARGET_DIR:-$ROOT/target}/release/promfed
fi

say "building the test client (release) and running ${SECONDS_TOTAL} s at ${RATE} requests/s"
cd "$ROOT"
PROMFED_BIN=$PROMFED \
PROMFED_SOAK_SECONDS=$SECONDS_TOTAL \
PROMFED_SOAK_RATE=$RATE \
PROMFED_SOAK_CONNECTIONS=${CONNECTIONS:-4} \
PROMFED_SOAK_MISS_EVERY=${MISS_EVERY:-10} \
PROMFED_SOAK_MAX_GROWTH_MIB=${MAX_GROWTH_MIB:-16} \
    exec cargo test --release --quiet --test tests -- \
        --ignored --exact faults::soak_for_scripts_soak_sh --nocapture
