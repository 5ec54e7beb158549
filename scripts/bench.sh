#!/usr/bin/env bash
# The README's side-by-side timing, all in one run, with hyperfine: for the TKG
# prometheus-server ConfigMap, a ~1 MB ConfigMap holding every corpus rule repeated
# (tests/peers/mkbig.py) and one of about the same size in which no expression repeats
# (mkbig.py --distinct: promfed's per-expression memo cannot help), the wall time of
#   promfed   promfed render --config tests/data/example-config.yaml CONFIGMAP
#   promtool  promtool check rules --lint=none recording_rules.yml alerting_rules.yml
#             (the ConfigMap's two rule files, extracted first: only parsing and checking the
#             rules, no rewrite; the floor any tool that reads them pays)
#   seed      python tests/peers/seed_overlay.py tests/data/example-config.yaml CONFIGMAP
#             (the user's old ytt overlay, in Python)
# Prints a markdown table: mean ± σ of each, promfed/promtool and seed/promfed; then the mean
# CPU time (user + system) of each, steadier than wall time on a busy machine.
#
# Needs hyperfine and promtool (scripts/test-deps.sh installs them) and a Python with PyYAML
# (the venv it makes). Env: PROMFED_PYTHON (default .venv/bin/python), RUNS (min runs, 10),
# WARMUP (3), BIG_BYTES (1000000), KEEP=1 keeps the work dir.
# Exits non-zero only when a tool is missing or a command fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PROMFED_PYTHON:-$ROOT/.venv/bin/python}
RUNS=${RUNS:-10}
WARMUP=${WARMUP:-3}
BIG_BYTES=${BIG_BYTES:-1000000}
say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# --- tools --------------------------------------------------------------------------------
for tool in hyperfine promtool cargo; do
    command -v "$tool" >/dev/null || die "missing $tool (run scripts/test-deps.sh)"
done
"$PYTHON" -c 'import yaml' 2>/dev/null ||
    die "$PYTHON cannot import yaml (run scripts/test-deps.sh, or set PROMFED_PYTHON)"
PROMTOOL=$(command -v promtool)

say "building promfed (release)"
(cd "$ROOT" && cargo build --release --quiet --bin promfed)
PROMFED=${CARGO_TARGET_DIR:-$ROOT/target}/release/promfed
[ -x "$PROMFED" ] || die "no binary at $PROMFED"

WORK=$(mktemp -d /tmp/promfed-bench-XXXXXX)
cleanup() { if [ "${KEEP:-0}" = 1 ]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

# --- inputs ---------------------------------------------------------------------------------
say "generating the big ConfigMap (mkbig.py, $BIG_BYTES bytes)"
"$PYTHON" "$ROOT/tests/peers/mkbig.py" "$ROOT/tests/data" "$BIG_BYTES" >"$WORK/big.yaml" 2>"$WORK/mkbig.log" ||
    { cat "$WORK/mkbig.log" >&2; die "mkbig.py failed"; }
say "  $(cat "$WORK/mkbig.log")"
"$PYTHON" "$ROOT/tests/peers/mkbig.py" --distinct "$ROOT/tests/data" "$BIG_BYTES" >"$WORK/distinct.yaml" 2>"$WORK/mkbig.log" ||
    { cat "$WORK/mkbig.log" >&2; die "mkbig.py --distinct failed"; }
say "  $(cat "$WORK/mkbig.log")"
cp "$ROOT/tests/data/tkg/prometheus-server-configmap.yaml" "$WORK/tkg.yaml"

# Each ConfigMap's rule files into $WORK/<name>/ for promtool.
for name in tkg big distinct; do
    mkdir -p "$WORK/$name"
    "$PYTHON" - "$WORK/$name.yaml" "$WORK/$name" <<'EOF'
import sys, yaml
configmap, out = sys.argv[1], sys.argv[2]
data = yaml.safe_load(open(configmap))["data"]
for key in ("recording_rules.yml", "alerting_rules.yml"):
    with open(f"{out}/{key}", "w") as f:
        f.write(data[key])
EOF
done

CONFIG=$ROOT/tests/data/example-config.yaml
SEED=$ROOT/tests/peers/seed_overlay.py
promfed_cmd() { printf '%q render --config %q %q' "$PROMFED" "$CONFIG" "$WORK/$1.yaml"; }
promtool_cmd() { printf '%q check rules --lint=none %q %q' "$PROMTOOL" "$WORK/$1/recording_rules.yml" "$WORK/$1/alerting_rules.yml"; }
seed_cmd() { printf '%q %q %q %q' "$PYTHON" "$SEED" "$CONFIG" "$WORK/$1.yaml"; }

# Every command once first: a failure is reported with its output, not as a timing.
for name in tkg big distinct; do
    for kind in promfed promtool seed; do
        cmd=$("${kind}_cmd" "$name")
        if ! bash -c "$cmd" >"$WORK/$name.$kind.out" 2>"$WORK/$name.$kind.err"; then
            cat "$WORK/$name.$kind.err" >&2
            die "$kind on $name failed: $cmd"
        fi
    done
    grep -q 'cluster: shared-tools' "$WORK/$name.promfed.out" ||
        die "promfed render on $name did not label the rules with the local cluster"
done

# --- timing ---------------------------------------------------------------------------------
for name in tkg big distinct; do
    say "timing on $name.yaml ($(wc -c <"$WORK/$name.yaml") bytes)"
    # -N: no intermediate shell, so nothing is subtracted and nothing added.
    hyperfine -N --style basic --warmup "$WARMUP" --min-runs "$RUNS" \
        --export-json "$WORK/$name.json" \
        -n promfed "$(promfed_cmd "$name")" \
        -n promtool "$(promtool_cmd "$name")" \
        -n seed "$(seed_cmd "$name")" >&2
done

# --- table ----------------------------------------------------------------------------------
"$PYTHON" - "$WORK" "$(nproc)" "$("$PROMTOOL" --version 2>&1 | head -n 1)" "$("$PYTHON" --version 2>&1)" <<'EOF'
import json, os, sys
work, cores, promtool_version, python_version = sys.argv[1:5]

def ms(r):
    return f"{r['mean'] * 1000:.1f} ± {r['stddev'] * 1000:.1f} ms"

def cpu(r):
    return f"{(r['user'] + r['system']) * 1000:.1f} ms"

rows = []
for name, label in (("tkg", "TKG prometheus-server"), ("big", "every corpus rule, repeated"),
                    ("distinct", "distinct expressions only")):
    results = {r["command"]: r for r in json.load(open(f"{work}/{name}.json"))["results"]}
    size = os.path.getsize(f"{work}/{name}.yaml")
    rows.append((f"{label} ({size / 1000:.0f} kB)", results["promfed"], results["promtool"], results["seed"]))

print()
print("| ConfigMap | promfed render | promtool check rules | seed overlay (Python) | promfed/promtool | seed/promfed |")
print("|---|---:|---:|---:|---:|---:|")
for label, p, t, s in rows:
    print(f"| {label} | {ms(p)} | {ms(t)} | {ms(s)} | {p['mean'] / t['mean']:.2f} | {s['mean'] / p['mean']:.1f} |")
print()
print(f"Wall time per run (hyperfine mean ± σ), {cores} cores; {promtool_version}; {python_version}.")
print()
# CPU time is steadier than wall time on a shared machine (promtool also runs on several threads).
print("| ConfigMap | promfed CPU | promtool CPU | seed CPU |")
print("|---|---:|---:|---:|")
for label, p, t, s in rows:
    print(f"| {label} | {cpu(p)} | {cpu(t)} | {cpu(s)} |")
print()
print("CPU time per run: user + system, hyperfine means.")
EOF
