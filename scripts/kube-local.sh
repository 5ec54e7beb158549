#!/usr/bin/env bash
# A real Kubernetes API server on this machine, calling `promfed serve` as its webhook.
#
#   scripts/kube-local.sh up DIR     start it all; returns once the API server is ready and has
#                                    called promfed
#   scripts/kube-local.sh down DIR   stop it all (by the pids recorded in DIR)
#
# `up` runs, all on 127.0.0.1 and on free ports:
#   - etcd (TLS, client certificates required), data in DIR/etcd-data (new at every `up`);
#   - kube-apiserver with its own CA (DIR/pki): serving certificate, an admin client certificate
#     (group system:masters: RBAC lets it do everything), a service-account signing key;
#     no controller-manager, scheduler or kubelet, so the ServiceAccount admission plugin is off
#     and namespaces, once deleted, stay Terminating; MutatingAdmissionWebhook is on;
#   - `promfed serve` (release build of this checkout, or $PROMFED_BIN) with config
#     $PROMFED_CONFIG (default deploy/base/promfed.yaml) and a certificate from
#     `certs/generate.sh DIR/promfed-certs --ip 127.0.0.1` (or from $PROMFED_CERT_DIR);
#   - the deploy/local overlay (the base's MutatingWebhookConfiguration, pointed at that promfed)
#     applied with the pinned kubectl;
# and proves that the API server calls promfed: a server-side dry run of the TKG ConfigMap
# (tests/data/tkg) must come back federated, with promfed's review counter one higher.
#
# With PROMFED_OPERATOR=1 it also installs prometheus-operator's CRDs (monitoring.coreos.com,
# as built by scripts/build-tools.sh) and runs the operator against this API server with the
# admin certificate, every namespace watched, metrics on 127.0.0.1. There is no kubelet, so no
# Prometheus pod ever starts, but the operator still writes what it generates for a Prometheus
# object `NAME`: the Secret `prometheus-NAME` (`prometheus.yaml.gz`) and the ConfigMaps
# `prometheus-NAME-rulefiles-N`. It needs no kubelet flag (--kubelet-service is off by
# default) and proves it is up by answering /healthz and having synced its caches. Next to it
# runs the operator's own admission webhook (`admission-webhook`, same version) on 127.0.0.1 with
# a serving certificate from DIR/pki, registered for PrometheusRule objects as its docs and
# kube-prometheus-stack do: the ValidatingWebhookConfiguration and MutatingWebhookConfiguration
# `prometheus-operator-admission` (/admission-prometheusrules/validate and /mutate, failure
# policy Fail), so an object goes through promfed's webhook and the operator's alike.
#
# It writes DIR/kubeconfig (admin), DIR/env (`. DIR/env` sets KUBECONFIG, puts the pinned kubectl,
# helm, helm4, kapp, ytt, etcd, prometheus3 and promtool3 first on PATH, and sets PROMFED_LOCAL_*:
# the webhook and metrics URLs), DIR/etcd.pid, DIR/kube-apiserver.pid, DIR/promfed.pid (with the
# operator: DIR/prometheus-operator.pid, DIR/admission-webhook.pid), and logs
# in DIR/*.log. The tools come from scripts/build-tools.sh (built on first use, then cached).
#
# With PROMFED_NODE=1 (root only) there is a real node instead of the local `promfed serve`:
# kube-controller-manager, kube-scheduler, and in a network namespace of its own a kubelet and
# containerd with runc and CNI (bridge, host-local), the pod network routed from the host
# (scripts/kube-node.sh says how). promfed's image (PROMFED_IMAGE, default
# target/promfed-image.tar, built by scripts/image.sh when missing) and a pause image built here
# are imported into containerd: no registry. `up` applies the overlay PROMFED_OVERLAY (default
# self-signed; from a copy of deploy/ in DIR/deploy, its certificates made there) and returns
# once promfed runs as pods and the API server has called it through the Service (the dry run
# below, promfed's review counter read from the pods). The API server then listens on the
# host's end of the node's veth (172.30.N.1), not 127.0.0.1, and calls Services at their
# endpoints (--enable-aggregator-routing: no kube-proxy). DIR/env also sets
# PROMFED_LOCAL_NODE=1, PROMFED_LOCAL_NETNS, PROMFED_LOCAL_CONTAINERD (containerd's socket, for
# `ctr --address`), PROMFED_LOCAL_IMAGE (the imported image) and PROMFED_LOCAL_OVERLAY (the
# applied overlay's folder); PROMFED_LOCAL_WEBHOOK and PROMFED_LOCAL_METRICS are empty. `down`
# leaves no process, mount, cgroup, interface or namespace behind.
#
# Env: PROMFED_NODE (1: the node), PROMFED_OVERLAY, PROMFED_IMAGE, PROMFED_OPERATOR (1: the operator too), PROMFED_CONFIG, PROMFED_BIN (skip the cargo build), KUBE_LOCAL_TIMEOUT (seconds to wait
# for the API server, default 120), PROMFED_CERT_DIR (a folder holding tls.crt, tls.key and the
# ca.crt that signed them, e.g. a kubelet-style mount with `..data` that the caller swaps:
# promfed reads its certificate from there, the webhook's caBundle is its ca.crt, and
# certs/generate.sh is not run).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=kube-local
TIMEOUT=${KUBE_LOCAL_TIMEOUT:-120}

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    say "$*"
    exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

usage() {
    echo "usage: $0 up DIR | down DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
CMD=$1
DIR=$2
case "$CMD" in up | down) ;; *) usage ;; esac
NODE=${PROMFED_NODE:-0}

# --- processes ---------------------------------------------------------------------------
# pid_alive NAME: the pid in DIR/NAME.pid runs, and is that program (not a reused pid).
pid_alive() {
    local pid
    pid=$(cat "$DIR/$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$1" 2>/dev/null
}

# wait_exec NAME: until the process in DIR/NAME.pid (just started with `&`) has exec'd NAME, or
# exited. Before, its command line is this script's and pid_alive NAME would call it dead
# (seen under load: "etcd exited" for an etcd that was starting).
wait_exec() {
    local i
    for ((i = 0; i < 200; i++)); do
        pid_alive "$1" && return
        kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null || return 0
        sleep 0.05
    done
}

# stop NAME: SIGTERM, up to 20 s to exit, then SIGKILL.
stop() {
    local name=$1 pid i
    if pid_alive "$name"; then
        pid=$(cat "$DIR/$name.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 200; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name (pid $pid) did not stop in 20 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $name (pid $pid)"
    elif [ -f "$DIR/$name.pid" ]; then
        say "$name (pid $(cat "$DIR/$name.pid")) was not running"
    fi
    rm -f "$DIR/$name.pid"
}

down() {
    [ -d "$DIR" ] || die "no such folder: $DIR"
    stop admission-webhook
    stop prometheus-operator
    stop promfed
    # the node (a no-op when DIR had none); its network after the API server, which listens
    # there and deletes its lease on the way out
    node_down
    stop kube-apiserver
    stop etcd
    node_network_down
}

if [ "$CMD" = up ]; then mkdir -p "$DIR"; fi
[ -d "$DIR" ] || die "no such folder: $DIR"
DIR=$(cd "$DIR" && pwd)
# shellcheck source=scripts/kube-node.sh
. "$ROOT/scripts/kube-node.sh"

if [ "$CMD" = down ]; then
    down
    exit 0
fi

# --- up ----------------------------------------------------------------------------------
for n in admission-webhook prometheus-operator promfed kube-apiserver etcd kubelet containerd kube-controller-manager kube-scheduler; do
    if pid_alive "$n"; then
        die "$n already runs from $DIR (pid $(cat "$DIR/$n.pid")): scripts/kube-local.sh down $DIR first"
    fi
done
START=$(now)
# Everything up to the end stops again when `up` fails half-way.
UP_OK=0
trap '[ "$UP_OK" = 1 ] || { say "up failed; stopping what it started"; down 2>/dev/null || true; }' EXIT

# The webhook calls and kubectl go to 127.0.0.1: never through a proxy.
export NO_PROXY=127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}
export no_proxy=$NO_PROXY

# fail_with NAME MESSAGE: MESSAGE and the end of NAME's log.
fail_with() {
    say "$2"
    if [ -s "$DIR/$1.log" ]; then
        say "last lines of $DIR/$1.log:"
        tail -n 30 "$DIR/$1.log" >&2
    fi
    exit 1
}

# --- tools -------------------------------------------------------------------------------
"$ROOT/scripts/build-tools.sh" || die "scripts/build-tools.sh failed"
TOOLS_PATH=$("$ROOT/scripts/build-tools.sh" path)
export PATH=$TOOLS_PATH:$PATH
for t in etcd kube-apiserver kubectl; do
    command -v "$t" >/dev/null || die "no $t in $TOOLS_PATH"
done
KUBECTL=$(command -v kubectl)

if [ "$NODE" = 1 ]; then
    IMAGE_ARCHIVE=${PROMFED_IMAGE:-$ROOT/target/promfed-image.tar}
    if ! [ -f "$IMAGE_ARCHIVE" ]; then
        say "no image at $IMAGE_ARCHIVE: scripts/image.sh"
        "$ROOT/scripts/image.sh" "$IMAGE_ARCHIVE" || die "scripts/image.sh failed"
    fi
    IMAGE_ARCHIVE=$(cd "$(dirname "$IMAGE_ARCHIVE")" && pwd)/$(basename "$IMAGE_ARCHIVE")
    # the tag is the crate version the archive was made from (its index's ref.name)
    PROMFED_IMAGE=$PROMFED_IMAGE_NAME:$(tar -xOf "$IMAGE_ARCHIVE" index.json | python3 -c '
import json, sys
print(json.load(sys.stdin)["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])')
elif [ -n "${PROMFED_BIN:-}" ]; then
    [ -x "$PROMFED_BIN" ] || die "PROMFED_BIN=$PROMFED_BIN is not an executable"
else
    say "cargo build --release (PROMFED_BIN=/path/to/promfed skips it)"
    (cd "$ROOT" && cargo build --release -q) || die "cargo build --release failed"
    PROMFED_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/promfed
fi
CONFIG=${PROMFED_CONFIG:-$ROOT/deploy/base/promfed.yaml}
[ -f "$CONFIG" ] || die "no promfed config at $CONFIG"
CONFIG=$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")

# --- ports -------------------------------------------------------------------------------
# Free ports on 127.0.0.1, all different (the kernel's picks, released right away: another
# process could take one before we bind it, which then fails loudly below).
read -r ETCD_PORT ETCD_PEER_PORT API_PORT WEBHOOK_PORT METRICS_PORT OPERATOR_PORT ADMISSION_PORT KCM_PORT SCHEDULER_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(9)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')

# The API server's address: 127.0.0.1, or with the node the host's end of its veth (which the
# kubelet in the node's netns can reach).
API_ADDR=127.0.0.1
if [ "$NODE" = 1 ]; then
    node_network
    API_ADDR=$HOST_IP
    # the API server and the pods, never through a proxy
    export NO_PROXY=$NO_PROXY,$HOST_IP,$POD_CIDR
    export no_proxy=$NO_PROXY
fi

# --- certificates ------------------------------------------------------------------------
PKI=$DIR/pki
mkdir -p "$PKI"
key() { # key FILE: EC P-256, mode 0600
    [ -s "$1" ] || (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null)
}
# leaf NAME CN O EKU SANS: PKI/NAME.crt signed by PKI/ca, kept when it exists
leaf() {
    local name=$1 cn=$2 o=$3 eku=$4 sans=$5 subj
    [ -s "$PKI/$name.crt" ] && [ -s "$PKI/$name.key" ] && return
    key "$PKI/$name.key"
    subj="/CN=$cn${o:+/O=$o}"
    openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s' \
        "$eku" "${sans:+subjectAltName=$sans}" >"$PKI/$name.ext"
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 365 -sha256 -extfile "$PKI/$name.ext" \
        -out "$PKI/$name.crt" 2>/dev/null || die "openssl could not sign $name"
    rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
if ! [ -s "$PKI/ca.crt" ] || ! [ -s "$PKI/ca.key" ]; then
    rm -f "$PKI"/*
    key "$PKI/ca.key"
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=promfed-kube-local-ca" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$PKI/ca.crt" 2>/dev/null || die "openssl could not make the CA"
fi
leaf etcd etcd "" serverAuth,clientAuth "IP:127.0.0.1,DNS:localhost"
leaf apiserver-etcd-client kube-apiserver-etcd-client "" clientAuth ""
# (named after its address, so a DIR used with and without the node has one of each)
API_SANS=IP:127.0.0.1
[ "$API_ADDR" = 127.0.0.1 ] || API_SANS=IP:$API_ADDR,$API_SANS
leaf "apiserver-$API_ADDR" kube-apiserver "" serverAuth \
    "$API_SANS,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
leaf admin kube-local-admin system:masters clientAuth ""
# the operator's admission webhook (used with PROMFED_OPERATOR=1)
leaf admission-webhook prometheus-operator-admission "" serverAuth "IP:127.0.0.1"
key "$PKI/sa.key"
openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
if [ -n "${PROMFED_CERT_DIR:-}" ]; then
    CERTS=$(cd "$PROMFED_CERT_DIR" && pwd) || die "PROMFED_CERT_DIR=$PROMFED_CERT_DIR is not a folder"
    for f in tls.crt tls.key ca.crt; do
        [ -s "$CERTS/$f" ] || die "PROMFED_CERT_DIR=$CERTS holds no $f"
    done
else
    CERTS=$DIR/promfed-certs
    "$ROOT/certs/generate.sh" "$CERTS" --ip 127.0.0.1 2>"$DIR/certs.log" ||
        fail_with certs "certs/generate.sh failed"
fi

# --- etcd --------------------------------------------------------------------------------
rm -rf "$DIR/etcd-data"
t=$(now)
etcd --name kube-local --data-dir "$DIR/etcd-data" \
    --listen-client-urls "https://127.0.0.1:$ETCD_PORT" --advertise-client-urls "https://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "kube-local=http://127.0.0.1:$ETCD_PEER_PORT" \
    --cert-file "$PKI/etcd.crt" --key-file "$PKI/etcd.key" \
    --client-cert-auth --trusted-ca-file "$PKI/ca.crt" \
    --unsafe-no-fsync --log-level warn \
    >"$DIR/etcd.log" 2>&1 &
echo $! >"$DIR/etcd.pid"
wait_exec etcd
etcd_ok() {
    curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/apiserver-etcd-client.crt" \
        --key "$PKI/apiserver-etcd-client.key" "https://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'
}
deadline=$((SECONDS + 30))
until etcd_ok; do
    pid_alive etcd || fail_with etcd "etcd exited"
    [ "$SECONDS" -lt "$deadline" ] || fail_with etcd "etcd not healthy after 30 s"
    sleep 0.1
done
say "etcd $(etcd --version | awk 'NR == 1 {print $3}') on https://127.0.0.1:$ETCD_PORT (pid $(cat "$DIR/etcd.pid"), $(since "$t"))"

# --- kube-apiserver ----------------------------------------------------------------------
t=$(now)
# Without a node nothing makes ServiceAccounts, so their admission plugin is off. With one, the
# controller-manager does, and Services are called at their endpoints (no kube-proxy).
if [ "$NODE" = 1 ]; then
    NODE_API_FLAGS=(--enable-aggregator-routing=true)
else
    NODE_API_FLAGS=(--disable-admission-plugins=ServiceAccount)
fi
kube-apiserver \
    --bind-address="$API_ADDR" --advertise-address="$API_ADDR" --secure-port="$API_PORT" \
    --etcd-servers="https://127.0.0.1:$ETCD_PORT" --etcd-cafile="$PKI/ca.crt" \
    --etcd-certfile="$PKI/apiserver-etcd-client.crt" --etcd-keyfile="$PKI/apiserver-etcd-client.key" \
    --tls-cert-file="$PKI/apiserver-$API_ADDR.crt" --tls-private-key-file="$PKI/apiserver-$API_ADDR.key" \
    --client-ca-file="$PKI/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --endpoint-reconciler-type=none \
    --authorization-mode=RBAC \
    "${NODE_API_FLAGS[@]}" \
    --enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --profiling=false \
    >"$DIR/kube-apiserver.log" 2>&1 &
echo $! >"$DIR/kube-apiserver.pid"
wait_exec kube-apiserver

CA_DATA=$(base64 -w0 <"$PKI/ca.crt")
(
    umask 077
    cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kube-local
  cluster:
    server: https://$API_ADDR:$API_PORT
    certificate-authority-data: $CA_DATA
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/admin.crt")
    client-key-data: $(base64 -w0 <"$PKI/admin.key")
contexts:
- name: kube-local
  context:
    cluster: kube-local
    user: admin
current-context: kube-local
EOF
)
export KUBECONFIG=$DIR/kubeconfig

# Ready: /readyz answers ok (etcd reachable, every post-start hook done, RBAC's bootstrap roles
# in place) and the namespace `default` exists (made by a controller just after start).
api_ready() {
    [ "$("$KUBECTL" get --raw /readyz 2>/dev/null)" = ok ] && "$KUBECTL" get namespace default >/dev/null 2>&1
}
deadline=$((SECONDS + TIMEOUT))
until api_ready; do
    pid_alive kube-apiserver || fail_with kube-apiserver "kube-apiserver exited"
    [ "$SECONDS" -lt "$deadline" ] || fail_with kube-apiserver "kube-apiserver not ready after $TIMEOUT s"
    sleep 0.25
done
say "kube-apiserver $("$KUBECTL" version -o json 2>/dev/null | awk -F'"' '/gitVersion/ {v=$4} END {print v}') on https://$API_ADDR:$API_PORT (pid $(cat "$DIR/kube-apiserver.pid"), ready in $(since "$t"))"

if [ "$NODE" = 1 ]; then
    # --- the node, and promfed as its pods --------------------------------------------------
    node_start
    node_deploy
    METRICS_URLS=$(pod_ips | sed 's|.*|http://&:9102|' | tr '\n' ' ')
    [ -n "$METRICS_URLS" ] || die "no Ready promfed endpoint in the Service's EndpointSlices"
    METRICS_URL=
else
    # --- promfed -----------------------------------------------------------------------------
    t=$(now)
    "$PROMFED_BIN" serve --config "$CONFIG" \
        --tls-cert-file "$CERTS/tls.crt" --tls-key-file "$CERTS/tls.key" \
        --listen "127.0.0.1:$WEBHOOK_PORT" --metrics-listen "127.0.0.1:$METRICS_PORT" \
        >"$DIR/promfed.log" 2>&1 &
    echo $! >"$DIR/promfed.pid"
    wait_exec promfed
    METRICS_URL=http://127.0.0.1:$METRICS_PORT
    deadline=$((SECONDS + 30))
    until curl -sf --max-time 2 "$METRICS_URL/readyz" >/dev/null 2>&1; do
        pid_alive promfed || fail_with promfed "promfed serve exited"
        [ "$SECONDS" -lt "$deadline" ] || fail_with promfed "promfed not ready after 30 s"
        sleep 0.1
    done
    say "promfed serve on https://127.0.0.1:$WEBHOOK_PORT/mutate, metrics $METRICS_URL (pid $(cat "$DIR/promfed.pid"), config $CONFIG, $(since "$t"))"

    # --- deploy/local ------------------------------------------------------------------------
    # An overlay on top of deploy/local with this run's port and caBundle (kustomize wants the
    # path relative, not absolute).
    rm -rf "$DIR/local"
    mkdir -p "$DIR/local"
    cat >"$DIR/local/kustomization.yaml" <<EOF
# Written by scripts/kube-local.sh: deploy/local with this run's webhook port and caBundle.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="$DIR/local" "$ROOT/deploy/local")
patches:
- path: endpoint.yaml
EOF
    cat >"$DIR/local/endpoint.yaml" <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: promfed
webhooks:
- name: prometheus-server.promfed.io
  clientConfig:
    url: https://127.0.0.1:$WEBHOOK_PORT/mutate
    caBundle: $(base64 -w0 <"$CERTS/ca.crt")
- name: prometheusrules.promfed.io
  clientConfig:
    url: https://127.0.0.1:$WEBHOOK_PORT/mutate
    caBundle: $(base64 -w0 <"$CERTS/ca.crt")
- name: prometheuses.promfed.io
  clientConfig:
    url: https://127.0.0.1:$WEBHOOK_PORT/mutate
    caBundle: $(base64 -w0 <"$CERTS/ca.crt")
EOF
    "$KUBECTL" kustomize "$DIR/local" >"$DIR/local.yaml" 2>"$DIR/apply.log" ||
        fail_with apply "kubectl kustomize $DIR/local failed"
    kinds=$(awk '/^kind:/ {print $2}' "$DIR/local.yaml" | sort -u | paste -sd ' ')
    [ "$kinds" = "MutatingWebhookConfiguration Namespace" ] ||
        die "deploy/local renders kinds '$kinds', wanted only the Namespace and the MutatingWebhookConfiguration: update its patches for what deploy/base gained"
    n_webhooks=$(grep -c '^ *clientConfig:' "$DIR/local.yaml" || true)
    n_local=$(grep -c "^ *url: https://127.0.0.1:$WEBHOOK_PORT/mutate\$" "$DIR/local.yaml" || true)
    if [ "$n_webhooks" = 0 ] || [ "$n_local" != "$n_webhooks" ] || grep -q '^ *service:' "$DIR/local.yaml"; then
        die "not every webhook of deploy/local calls https://127.0.0.1:$WEBHOOK_PORT/mutate (a new webhook in deploy/base needs its patch in deploy/local and in this script): $DIR/local.yaml"
    fi
    "$KUBECTL" apply -f "$DIR/local.yaml" >>"$DIR/apply.log" 2>&1 || fail_with apply "kubectl apply of deploy/local failed"
    say "applied deploy/local: $(grep -c '^kind:' "$DIR/local.yaml") objects (${kinds// /, })"
    METRICS_URLS=$METRICS_URL
fi

# --- proof: the API server calls promfed -------------------------------------------------
# The TKG package's ConfigMap (a shape the webhook must catch) created with --dry-run=server
# in its namespace: stored nowhere, but sent through the admission chain, so it must come back
# with promfed's changes and promfed's review counter must move.
# (summed over the pods with the node)
reviews() {
    local u
    for u in $METRICS_URLS; do curl -sf --max-time 5 "$u/metrics"; done |
        awk '/^promfed_reviews_total\{/ { n += $NF } END { print n + 0 }'
}
PROBE=$ROOT/tests/data/tkg/prometheus-server-configmap.yaml
PROBE_NS=$(awk '/^  namespace:/ {print $2; exit}' "$PROBE")
"$KUBECTL" create namespace "$PROBE_NS" --dry-run=client -o yaml | "$KUBECTL" apply -f - >>"$DIR/apply.log" 2>&1 ||
    fail_with apply "could not make the namespace $PROBE_NS"
before=$(reviews)
t=$(now)
ok=0
# The webhook configuration takes a moment to reach the API server's admission plugin.
deadline=$((SECONDS + 30))
while [ "$SECONDS" -lt "$deadline" ]; do
    if "$KUBECTL" create --dry-run=server -o yaml -f "$PROBE" >"$DIR/probe.yaml" 2>"$DIR/probe.log" &&
        grep -q 'target_label: cluster' "$DIR/probe.yaml" && [ "$(reviews)" -gt "$before" ]; then
        ok=1
        break
    fi
    sleep 0.2
done
if [ "$ok" != 1 ]; then
    cat "$DIR/probe.log" >&2
    fail_with promfed "the API server did not have promfed federate the TKG ConfigMap ($PROBE, dry run; promfed reviews before $before, now $(reviews); the object it returned: $DIR/probe.yaml)"
fi
say "the API server calls promfed: a dry-run create of $PROBE_NS/prometheus-server came back federated ($(since "$t"), promfed reviews $before -> $(reviews))"

# --- prometheus-operator (PROMFED_OPERATOR=1) -----------------------------------------------
OPERATOR_METRICS=
ADMISSION_URL=
if [ "${PROMFED_OPERATOR:-}" = 1 ]; then
    t=$(now)
    command -v prometheus-operator >/dev/null || die "no prometheus-operator in $TOOLS_PATH"
    CRDS=$(cd "$(dirname "$(command -v prometheus-operator)")/../crds" && pwd) ||
        die "no crds folder next to $(command -v prometheus-operator)"
    # Server-side: the Prometheus CRD is too large for the annotation client-side apply writes.
    "$KUBECTL" apply --server-side -f "$CRDS" >>"$DIR/apply.log" 2>&1 ||
        fail_with apply "kubectl apply of the CRDs in $CRDS failed"
    "$KUBECTL" wait --for=condition=Established crd --all --timeout=60s >>"$DIR/apply.log" 2>&1 ||
        fail_with apply "the CRDs in $CRDS were not established in 60 s"
    prometheus-operator --apiserver "https://$API_ADDR:$API_PORT" --ca-file "$PKI/ca.crt" \
        --cert-file "$PKI/admin.crt" --key-file "$PKI/admin.key" \
        --web.listen-address "127.0.0.1:$OPERATOR_PORT" --log-format logfmt \
        >"$DIR/prometheus-operator.log" 2>&1 &
    echo $! >"$DIR/prometheus-operator.pid"
    wait_exec prometheus-operator
    OPERATOR_METRICS=http://127.0.0.1:$OPERATOR_PORT
    deadline=$((SECONDS + 60))
    until curl -sf --max-time 2 "$OPERATOR_METRICS/healthz" >/dev/null 2>&1 &&
        grep -q 'msg="successfully synced all caches" component=prometheus-controller' "$DIR/prometheus-operator.log"; do
        pid_alive prometheus-operator || fail_with prometheus-operator "prometheus-operator exited"
        [ "$SECONDS" -lt "$deadline" ] || fail_with prometheus-operator "prometheus-operator not ready after 60 s"
        sleep 0.2
    done
    say "prometheus-operator $(prometheus-operator --version 2>&1 | awk 'NR == 1 {print $3}') with $(find "$CRDS" -name '*.yaml' | wc -l) CRDs, metrics $OPERATOR_METRICS (pid $(cat "$DIR/prometheus-operator.pid"), $(since "$t"))"

    # The operator's admission webhook: no client certificate asked of the API server (an
    # empty client CA file turns that off), TLS 1.3 as by default.
    t=$(now)
    command -v admission-webhook >/dev/null || die "no admission-webhook in $TOOLS_PATH"
    admission-webhook --web.listen-address "127.0.0.1:$ADMISSION_PORT" \
        --web.cert-file "$PKI/admission-webhook.crt" --web.key-file "$PKI/admission-webhook.key" \
        --web.client-ca-file "" --log-format logfmt \
        >"$DIR/admission-webhook.log" 2>&1 &
    echo $! >"$DIR/admission-webhook.pid"
    wait_exec admission-webhook
    ADMISSION_URL=https://127.0.0.1:$ADMISSION_PORT
    deadline=$((SECONDS + 30))
    until curl -sf --max-time 2 --cacert "$PKI/ca.crt" "$ADMISSION_URL/healthz" >/dev/null 2>&1; do
        pid_alive admission-webhook || fail_with admission-webhook "admission-webhook exited"
        [ "$SECONDS" -lt "$deadline" ] || fail_with admission-webhook "admission-webhook not ready after 30 s"
        sleep 0.1
    done
    # webhook NAME PATH: one PrometheusRule webhook entry on ADMISSION_URL/PATH.
    webhook() {
        cat <<EOF
- name: $1
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 10
  rules:
  - apiGroups: [monitoring.coreos.com]
    apiVersions: ["*"]
    resources: [prometheusrules]
    operations: [CREATE, UPDATE]
  clientConfig:
    url: $ADMISSION_URL$2
    caBundle: $CA_DATA
EOF
    }
    {
        printf 'apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\n'
        printf 'metadata:\n  name: prometheus-operator-admission\nwebhooks:\n'
        webhook prometheusrulevalidate.monitoring.coreos.com /admission-prometheusrules/validate
        printf -- '---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n'
        printf 'metadata:\n  name: prometheus-operator-admission\nwebhooks:\n'
        webhook prometheusrulemutate.monitoring.coreos.com /admission-prometheusrules/mutate
    } >"$DIR/admission-webhook.yaml"
    "$KUBECTL" apply -f "$DIR/admission-webhook.yaml" >>"$DIR/apply.log" 2>&1 ||
        fail_with apply "kubectl apply of $DIR/admission-webhook.yaml failed"
    # Proof that the API server calls it: a dry-run PrometheusRule with broken PromQL (opted
    # out of promfed's webhook, which would refuse it first) is refused with its message.
    cat >"$DIR/admission-probe.yaml" <<EOF
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: kube-local-probe
  namespace: default
  labels:
    promfed.io/rewrite: "false"
spec:
  groups:
  - name: probe
    rules:
    - record: probe
      expr: sum(
EOF
    ok=0
    deadline=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if ! "$KUBECTL" create --dry-run=server -f "$DIR/admission-probe.yaml" >"$DIR/admission-probe.log" 2>&1 &&
            grep -q 'could not parse expression' "$DIR/admission-probe.log"; then
            ok=1
            break
        fi
        sleep 0.2
    done
    [ "$ok" = 1 ] || fail_with admission-webhook "the API server did not have the operator's admission webhook refuse broken PromQL ($DIR/admission-probe.yaml; answer: $(cat "$DIR/admission-probe.log"))"
    say "prometheus-operator's admission webhook on $ADMISSION_URL, registered for PrometheusRule objects (pid $(cat "$DIR/admission-webhook.pid"), $(since "$t"))"
fi

# --- env ---------------------------------------------------------------------------------
cat >"$DIR/env" <<EOF
# . $DIR/env   (written by scripts/kube-local.sh up)
export KUBECONFIG=$DIR/kubeconfig
export PATH=$TOOLS_PATH:\$PATH
export NO_PROXY=$NO_PROXY
export no_proxy=$NO_PROXY
export PROMFED_LOCAL_DIR=$DIR
export PROMFED_LOCAL_SERVER=https://$API_ADDR:$API_PORT
export PROMFED_LOCAL_WEBHOOK=${METRICS_URL:+https://127.0.0.1:$WEBHOOK_PORT/mutate}
export PROMFED_LOCAL_METRICS=$METRICS_URL
export PROMFED_LOCAL_OPERATOR_METRICS=$OPERATOR_METRICS
export PROMFED_LOCAL_OPERATOR_WEBHOOK=$ADMISSION_URL
EOF
if [ "$NODE" = 1 ]; then
    cat >>"$DIR/env" <<EOF
export PROMFED_LOCAL_NODE=1
export PROMFED_LOCAL_NETNS=$NETNS
export PROMFED_LOCAL_CONTAINERD=$CONTAINERD_SOCK
export PROMFED_LOCAL_IMAGE=$PROMFED_IMAGE
export PROMFED_LOCAL_OVERLAY=$OVERLAY_DIR
EOF
fi
UP_OK=1
say "up in $(since "$START"): . $DIR/env; kubectl get --raw /version; scripts/kube-local.sh down $DIR"
