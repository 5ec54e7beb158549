#!/usr/bin/env bash
# Load benchmark of `promfed serve` next to nginx, both over TLS with the same certificate, in
# the same run. Prints a table (req/s, p50/p99 latency, failed requests, promfed RSS).
#
# Cases (wrk, $CONNECTIONS connections, $THREADS threads, $DURATION each):
#   same      the TKG prometheus-server ConfigMap re-applied unchanged (what kapp and helm do
#             all day): promfed answers from its response cache.   Goal: >= 0.5x nginx req/s.
#   distinct  a ConfigMap never seen before on every request (a label value inside a rule
#             expression varies): the engine runs every time.       Goal: >= 0.2x nginx req/s.
# nginx answers POST /mutate with a static file as large as promfed's answer (the patch of the
# TKG ConfigMap), so both read the same request and write the same number of bytes.
#
# Each case runs $REPEAT times, promfed and nginx alternating, and the table shows the run with
# the median req/s of each (all runs are listed below it): on a small shared machine one run
# is noise.
#
# Needs wrk (scripts/test-deps.sh installs it), nginx (installed here when missing and root),
# openssl, python3. Env: DURATION (10s), CONNECTIONS (8), THREADS (2), REPEAT (3), KEEP=1 keeps
# the work dir.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-8}
THREADS=${THREADS:-2}
REPEAT=${REPEAT:-3}
say() { printf 'loadtest: %s\n' "$*" >&2; }

# --- tools --------------------------------------------------------------------------------
need() { command -v "$1" >/dev/null || { say "missing $1: $2"; exit 1; }; }
need wrk "run scripts/test-deps.sh"
need openssl "apt-get install openssl"
need python3 "apt-get install python3"
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ]; then
        say "installing nginx (Debian package nginx-light or nginx)"
        # The package's postinst would start a daemon on :80; a policy-rc.d answering 101 stops
        # invoke-rc.d from starting anything (added only for the install, only if absent).
        policy=/usr/sbin/policy-rc.d added=0
        if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; added=1; fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends nginx >/tmp/promfed-loadtest-apt.log 2>&1 ||
            { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null &&
              apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends nginx >/tmp/promfed-loadtest-apt.log 2>&1; } ||
            { [ "$added" = 1 ] && rm -f "$policy"; say "apt-get install nginx failed:"; tail -n 20 /tmp/promfed-loadtest-apt.log >&2; exit 1; }
        if [ "$added" = 1 ]; then rm -f "$policy"; fi
    else
        say "nginx is missing: sudo apt-get install --no-install-recommends nginx"
        exit 1
    fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

say "building promfed (release)"
(cd "$ROOT" && cargo build --release --quiet --bin promfed)
PROMFED=${CARGO_TARGET_DIR:-$ROOT/target}/release/promfed

# --- work dir, certificate, payloads --------------------------------------------------------
WORK=$(mktemp -d /tmp/promfed-loadtest-XXXXXX)
chmod 755 "$WORK" # nginx workers (user nobody) read www/ here
PROMFED_PID="" NGINX_PID=""
cleanup() {
    [ -n "$PROMFED_PID" ] && kill "$PROMFED_PID" 2>/dev/null && wait "$PROMFED_PID" 2>/dev/null
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    if [ "${KEEP:-0}" = 1 ]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTPS_PORT=$(free_port)
METRICS_PORT=$(free_port)
NGINX_PORT=$(free_port)

# One ECDSA P-256 certificate for both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
chmod 644 "$WORK/tls.key"
cp "$ROOT/deploy/base/promfed.yaml" "$WORK/promfed.yaml"

# same.json: the shipped example review, compact. distinct.json: the same with a marker in a
# label value of the first rule expression that has job="kubernetes-apiservers".
python3 - "$ROOT/tests/data/review-tkg.json" "$WORK" <<'EOF'
import json, sys
review = json.load(open(sys.argv[1]))
json.dump(review, open(sys.argv[2] + "/same.json", "w"), separators=(",", ":"))
data = review["request"]["object"]["data"]
rules = data["recording_rules.yml"]
marker = 'job="kubernetes-apiservers"'
assert marker in rules, "marker label not found in recording_rules.yml"
data["recording_rules.yml"] = rules.replace(marker, 'job="kubernetes-apiservers-PROMFEDSEQ"', 1)
json.dump(review, open(sys.argv[2] + "/distinct.json", "w"), separators=(",", ":"))
EOF

# --- servers --------------------------------------------------------------------------------
start_promfed() {
    "$PROMFED" serve --config "$WORK/promfed.yaml" \
        --tls-cert-file "$WORK/tls.crt" --tls-key-file "$WORK/tls.key" \
        --listen "127.0.0.1:$HTTPS_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
        2>"$WORK/promfed.log" &
    PROMFED_PID=$!
    for _ in $(seq 100); do
        if curl -fsS "http://127.0.0.1:$METRICS_PORT/readyz" >/dev/null 2>&1; then return; fi
        sleep 0.1
    done
    say "promfed did not become ready:"; tail -n 20 "$WORK/promfed.log" >&2; exit 1
}

start_nginx() { # start_nginx ANSWER_FILE (as large as promfed's answers, within a few bytes)
    mkdir -p "$WORK/www"
    cp "$1" "$WORK/www/mutate"
    chmod -R a+rX "$WORK/www"
    sed -e "s|@DIR@|$WORK|g" -e "s|@PORT@|$NGINX_PORT|g" "$ROOT/tests/nginx/nginx.conf.in" >"$WORK/nginx.conf"
    "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" &
    NGINX_PID=$!
    for _ in $(seq 100); do
        if curl -fsS -k -X POST --data-binary @"$WORK/same.json" "https://127.0.0.1:$NGINX_PORT/mutate" -o /dev/null 2>/dev/null; then return; fi
        sleep 0.1
    done
    say "nginx did not start:"; cat "$WORK/nginx-error.log" >&2; exit 1
}

stop_nginx() { kill -QUIT "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true; NGINX_PID=""; }

# post URL BODY-FILE OUT: one request through curl, verifying the certificate.
post() { curl -fsS --cacert "$WORK/tls.crt" -H 'Content-Type: application/json' --data-binary @"$2" "$1" -o "$3"; }

rss() { awk -v f="$1" '$1 == f":" { printf "%.0f MB", $2 / 1024 }' "/proc/$PROMFED_PID/status"; }

# bench CASE SERVER URL LUA BODY RUN: run wrk, append a row to $WORK/rows.
bench() {
    local case=$1 server=$2 url=$3 lua=$4 body=$5 run=$6 out="$WORK/wrk-$1-$2-$6.txt"
    say "wrk $case -> $server, run $run of $REPEAT ($DURATION, $CONNECTIONS connections, $THREADS threads)"
    PROMFED_BODY=$body wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$lua" "$url" >"$out" 2>&1
    local rps p50 p99 total non2xx sock mem=""
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(awk '$1 == "50%" { print $2 }' "$out")
    p99=$(awk '$1 == "99%" { print $2 }' "$out")
    total=$(awk '/requests in/ { print $1 }' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
    sock=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out")
    local failed=$(( ${non2xx:-0} + ${sock:-0} ))
    if [ "$server" = promfed ]; then mem="$(rss VmRSS) (peak $(rss VmHWM))"; fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$server" "$rps" "$p50" "$p99" "$total" "$failed" "$mem" >>"$WORK/rows"
}

# --- runs -----------------------------------------------------------------------------------
: >"$WORK/rows"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
start_promfed
URL_P="https://localhost:$HTTPS_PORT/mutate"
URL_N="https://localhost:$NGINX_PORT/mutate"

# promfed's answers, checked, become nginx's static answers.
post "$URL_P" "$WORK/same.json" "$WORK/answer-same.json"
sed 's/PROMFEDSEQ/check/' "$WORK/distinct.json" >"$WORK/distinct-check.json"
post "$URL_P" "$WORK/distinct-check.json" "$WORK/answer-distinct.json"
for answer in answer-same answer-distinct; do
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["response"]; assert r["allowed"] and "patch" in r, r' "$WORK/$answer.json" ||
        { say "promfed did not patch the benchmark ConfigMap ($answer)"; exit 1; }
done
say "answer sizes: same $(wc -c <"$WORK/answer-same.json") B, distinct $(wc -c <"$WORK/answer-distinct.json") B; request $(wc -c <"$WORK/same.json") B"

start_nginx "$WORK/answer-same.json"
for case in same distinct; do
    for run in $(seq "$REPEAT"); do
        bench "$case" promfed "$URL_P" "$ROOT/tests/nginx/wrk-$case.lua" "$WORK/$case.json" "$run"
        bench "$case" nginx "$URL_N" "$ROOT/tests/nginx/wrk-$case.lua" "$WORK/$case.json" "$run"
    done
done
stop_nginx

curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" >"$WORK/metrics.txt"
hits=$(awk '/^promfed_review_cache_total\{result="hit"\}/ { print $2 }' "$WORK/metrics.txt")
misses=$(awk '/^promfed_review_cache_total\{result="miss"\}/ { print $2 }' "$WORK/metrics.txt")

# --- table ----------------------------------------------------------------------------------
echo
echo "promfed $("$PROMFED" --version | awk '{print $2}') vs nginx $("$NGINX" -v 2>&1 | sed 's|.*/||'), wrk -t$THREADS -c$CONNECTIONS -d$DURATION, TLS, $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))"
echo "request: TKG prometheus-server AdmissionReview, $(wc -c <"$WORK/same.json") bytes; answer $(wc -c <"$WORK/answer-same.json") bytes; load before: $LOAD_BEFORE"
echo
awk -F'\t' '
    BEGIN { goal["same"] = 0.5; goal["distinct"] = 0.2 }
    {
        k = $1 SUBSEP $2; n[k]++
        rps[k, n[k]] = $3; row[k, n[k]] = $0
        runs[k] = runs[k] sprintf("%s%.0f", (n[k] > 1 ? " " : ""), $3)
        failed[k] += $7
        if (!($1 in seen)) { seen[$1] = 1; order[++cases] = $1 }
    }
    # the row whose req/s is the median of its runs
    function median_row(k,    i, j, t, idx, m) {
        for (i = 1; i <= n[k]; i++) idx[i] = i
        for (i = 1; i <= n[k]; i++)
            for (j = i + 1; j <= n[k]; j++)
                if (rps[k, idx[j]] + 0 < rps[k, idx[i]] + 0) { t = idx[i]; idx[i] = idx[j]; idx[j] = t }
        m = idx[int((n[k] + 1) / 2)]
        return row[k, m]
    }
    END {
        printf "%-9s %-8s %10s %9s %9s %8s  %-19s  %s\n", "case", "server", "req/s", "p50", "p99", "failed", "promfed RSS", "req/s of each run"
        for (c = 1; c <= cases; c++) {
            name = order[c]
            for (s = 1; s <= 2; s++) {
                server = (s == 1 ? "promfed" : "nginx"); k = name SUBSEP server
                split(median_row(k), f, "\t")
                med[server] = f[3]
                printf "%-9s %-8s %10.0f %9s %9s %8d  %-19s  %s\n", name, server, f[3], f[4], f[5], failed[k], f[8], runs[k]
            }
            ratio = med["promfed"] / med["nginx"]
            printf "%-9s %-8s %9.3fx  (goal >= %sx: %s)\n", name, "ratio", ratio, goal[name], (ratio >= goal[name] ? "met" : "NOT met")
        }
    }' "$WORK/rows"
echo
echo "promfed cache: ${hits:-0} hits, ${misses:-0} misses"
