#!/usr/bin/env bash
# Soak test of `promfed serve` (release build) over TLS: a steady request rate for SECONDS,
# resident memory sampled every 10 s into a table, then a summary. Fails (exit 1) on any failed
# request or when RSS grows more than $MAX_GROWTH_MIB over the second half of the run (the
# response cache, 256 answers, fills during the first).
#
#   scripts/soak.sh [SECONDS] [RATE]        # defaults: 600 s at 50 requests/s
#
# The client is a fixed-rate Python client (wrk2 is not in Debian, and plain wrk has no rate):
# $CONNECTIONS keep-alive connections, each sending RATE/CONNECTIONS requests per second on an
# absolute schedule (a slow answer does not cause a burst afterwards). Every $MISS_EVERY-th
# request is a ConfigMap never seen before (a label value in a rule varies: the engine runs,
# the response cache evicts), the rest re-apply the TKG ConfigMap (answered from the cache).
# Every answer must be a 200 carrying a patch.
#
# Env: CONNECTIONS (4), MISS_EVERY (10), MAX_GROWTH_MIB (16), PROMFED (a promfed binary;
# default: cargo build --release), KEEP=1 keeps the work dir. Needs python3 and openssl.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_TOTAL=${1:-600}
RATE=${2:-50}
CONNECTIONS=${CONNECTIONS:-4}
MISS_EVERY=${MISS_EVERY:-10}
MAX_GROWTH_MIB=${MAX_GROWTH_MIB:-16}
say() { printf 'soak: %s\n' "$*" >&2; }

need() { command -v "$1" >/dev/null || { say "missing $1: $2"; exit 1; }; }
need python3 "apt-get install python3"
need openssl "apt-get install openssl"

if [ -z "${PROMFED:-}" ]; then
    say "building promfed (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin promfed)
    PROMFED=${CARGO_TARGET_DIR:-$ROOT/target}/release/promfed
fi

WORK=$(mktemp -d /tmp/promfed-soak-XXXXXX)
PROMFED_PID=""
cleanup() {
    if [ -n "$PROMFED_PID" ]; then kill "$PROMFED_PID" 2>/dev/null || true; wait "$PROMFED_PID" 2>/dev/null || true; fi
    if [ "${KEEP:-0}" = 1 ]; then say "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTPS_PORT=$(free_port)
METRICS_PORT=$(free_port)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
cp "$ROOT/deploy/base/promfed.yaml" "$WORK/promfed.yaml"

"$PROMFED" serve --config "$WORK/promfed.yaml" \
    --tls-cert-file "$WORK/tls.crt" --tls-key-file "$WORK/tls.key" \
    --listen "127.0.0.1:$HTTPS_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
    2>"$WORK/promfed.log" &
PROMFED_PID=$!
for _ in $(seq 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$METRICS_PORT/readyz', timeout=1)" 2>/dev/null; then break; fi
    sleep 0.1
done

say "promfed pid $PROMFED_PID: ${SECONDS_TOTAL} s at ${RATE} requests/s, $CONNECTIONS connections, every ${MISS_EVERY}th request a new ConfigMap"
python3 - "$ROOT/tests/data/review-tkg.json" "$WORK/tls.crt" "$HTTPS_PORT" "$METRICS_PORT" \
    "$PROMFED_PID" "$SECONDS_TOTAL" "$RATE" "$CONNECTIONS" "$MISS_EVERY" "$MAX_GROWTH_MIB" <<'EOF'
import http.client, json, socket, ssl, sys, threading, time, urllib.request

(review_path, ca, port, metrics_port, pid, seconds, rate, connections, miss_every,
 max_growth) = sys.argv[1:]
port, metrics_port, seconds = int(port), int(metrics_port), int(seconds)
rate, connections, miss_every, max_growth = float(rate), int(connections), int(miss_every), float(max_growth)

review = json.load(open(review_path))
same = json.dumps(review, separators=(",", ":")).encode()
rules = review["request"]["object"]["data"]["recording_rules.yml"]

def distinct(n):
    r = json.loads(same)
    r["request"]["uid"] = f"soak-miss-{n}"
    r["request"]["object"]["data"]["recording_rules.yml"] = rules + (
        f"  - name: soak-{n}\n    rules:\n    - record: soak:up:sum\n"
        f"      expr: sum(up{{soak=\"{n}\"}})\n")
    return json.dumps(r, separators=(",", ":")).encode()

ctx = ssl.create_default_context(cafile=ca)

class Conn(http.client.HTTPSConnection):
    def connect(self):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # server's delayed ACK add 40 ms to every request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = ctx.wrap_socket(sock, server_hostname="localhost")

lock = threading.Lock()
stats = {"ok": 0, "errors": 0, "reconnects": 0, "latencies": [], "first_errors": []}
misses = [0]
stop = time.monotonic() + seconds

def worker(t):
    conn = Conn("localhost", port, timeout=30)
    every = connections / rate
    next_at = time.monotonic() + t * every / connections
    i = 0
    while True:
        now = time.monotonic()
        if next_at >= stop:
            break
        if next_at > now:
            time.sleep(next_at - now)
        next_at = max(next_at, time.monotonic() - every) + every
        i += 1
        if miss_every and i % miss_every == 0:
            with lock:
                misses[0] += 1
                n = misses[0]
            body = distinct(n * 1000 + t)
        else:
            body = same
        started = time.monotonic()
        error = None
        try:
            conn.request("POST", "/mutate", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                error = f"HTTP {resp.status}: {data[:200]!r}"
            else:
                r = json.loads(data)["response"]
                if r.get("allowed") is not True or "patch" not in r:
                    error = f"no patch: {str(r)[:200]}"
        except Exception as e:  # connection closed, reset, timeout
            error = f"{type(e).__name__}: {e}"
            conn.close()
            conn = Conn("localhost", port, timeout=30)
            with lock:
                stats["reconnects"] += 1
        took = time.monotonic() - started
        with lock:
            if error:
                stats["errors"] += 1
                if len(stats["first_errors"]) < 5:
                    stats["first_errors"].append(error)
            else:
                stats["ok"] += 1
                stats["latencies"].append(took)

def memory():
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]

def quantile(values, q):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, round((len(values) - 1) * q))]

threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(connections)]
started = time.monotonic()
for th in threads:
    th.start()

print(f"{'time':>6} {'requests':>9} {'errors':>6} {'req/s':>7} {'p99 ms':>7} {'RSS MiB':>8} {'HWM MiB':>8}")
samples = []
last_count, last_time = 0, started
def sample():
    global last_count, last_time
    now = time.monotonic()
    with lock:
        done, errors = stats["ok"] + stats["errors"], stats["errors"]
        lat = list(stats["latencies"][-int(rate * 10):])
    rss, hwm = memory()
    rps = (done - last_count) / (now - last_time) if now > last_time else 0.0
    last_count, last_time = done, now
    samples.append((now - started, done, errors, rss, hwm))
    print(f"{now - started:6.0f} {done:9d} {errors:6d} {rps:7.1f} {quantile(lat, 0.99) * 1000:7.1f} {rss:8.1f} {hwm:8.1f}", flush=True)

sample()
next_sample = started + 10
while any(th.is_alive() for th in threads):
    time.sleep(0.2)
    if time.monotonic() >= next_sample:
        sample()
        next_sample += 10
sample()

metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
wanted = ("promfed_reviews_total", "promfed_review_cache_total", "promfed_internal_errors_total")
metric_lines = [l for l in metrics.splitlines() if l.startswith(wanted)]

lat = stats["latencies"]
elapsed = time.monotonic() - started
rss_values = [s[3] for s in samples]
first, end, peak = rss_values[0], rss_values[-1], max(s[4] for s in samples)
# The response cache fills during the first part of a run; a leak shows as growth in the
# second half.
middle = rss_values[len(rss_values) // 2]
growth = end - middle
print()
print(f"requests    {stats['ok'] + stats['errors']} in {elapsed:.0f} s ({(stats['ok'] + stats['errors']) / elapsed:.1f}/s), "
      f"{stats['errors']} errors, {stats['reconnects']} reconnects")
print(f"latency     p50 {quantile(lat, 0.5) * 1000:.1f} ms, p99 {quantile(lat, 0.99) * 1000:.1f} ms, max {max(lat, default=0) * 1000:.1f} ms")
print(f"RSS         start {first:.1f} MiB, end {end:.1f} MiB, max {max(rss_values):.1f} MiB, peak (VmHWM) {peak:.1f} MiB; "
      f"second half {growth:+.1f} MiB")
for line in metric_lines:
    print(f"metrics     {line}")
for error in stats["first_errors"]:
    print(f"error       {error}")
failed = stats["errors"] > 0 or growth > max_growth
if growth > max_growth:
    print(f"FAIL: RSS grew {growth:.1f} MiB (more than {max_growth} MiB)")
if stats["errors"]:
    print(f"FAIL: {stats['errors']} failed requests")
sys.exit(1 if failed else 0)
EOF
