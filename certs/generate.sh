#!/usr/bin/env bash
# Certificates for promfed, made with openssl (EC P-256 keys, SANs, EKUs, key files mode 0600).
#
#   certs/generate.sh OUTDIR [--namespace NS] [--service NAME] [--ip ADDR]... [--days N] [--force]
#       The webhook's serving certificate: OUTDIR/ca.crt, ca.key (a CA, kept if present),
#       tls.crt, tls.key for NAME.NS.svc (also NAME, NAME.NS, NAME.NS.svc.cluster.local), and
#       each --ip ADDR as an IP SAN (scripts/kube-local.sh: --ip 127.0.0.1, for a webhook that
#       the API server calls at https://127.0.0.1:PORT).
#       Defaults: --namespace promfed-system --service promfed --days 365, no IP SAN.
#       deploy/self-signed reads OUTDIR=deploy/self-signed/certs.
#
#   certs/generate.sh federation OUTDIR --cluster NAME [--server-name NAME] [--address HOST[:PORT]]
#                     [--days N] [--force]
#       mTLS between the tools Prometheus (client) and a workload Prometheus (server):
#         OUTDIR/ca.crt, ca.key                  federation CA, shared by every cluster (kept if present)
#         OUTDIR/tools/{ca.crt,tls.crt,tls.key}  client certificate of the tools Prometheus (clientAuth),
#                                                one for all clusters: the seed's addCerts/federation
#         OUTDIR/workload/NAME/{ca.crt,tls.crt,tls.key,web.config.yml}
#                                                server certificate of cluster NAME's Prometheus
#                                                (serverAuth, SAN = --server-name) and its web config
#                                                (client certificates required, verified against ca.crt)
#         OUTDIR/promfed/NAME.yaml               the tools side's promfed `clusters:` entry
#       Defaults: --server-name prom-federation (the seed's), --address prom.NAME.cluster.local.
#
# A run keeps what is still good: an existing CA, and a certificate that the CA signed, that has
# the wanted names (and IP addresses) and is valid for at least 30 more days (--force issues new ones anyway; a
# new CA is made only when OUTDIR has none). CA validity: 10 years. Exit 2 on bad arguments.
set -euo pipefail

PROG=${0##*/}
CA_DAYS=3650
RENEW_SECONDS=$((30 * 24 * 3600))

usage() {
    cat >&2 <<EOF
usage: $PROG OUTDIR [--namespace NS] [--service NAME] [--ip ADDR]... [--days N] [--force]
       $PROG federation OUTDIR --cluster NAME [--server-name NAME] [--address HOST[:PORT]] [--days N] [--force]
EOF
}

die_usage() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    usage
    exit 2
}

die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# A DNS name (RFC 1123 labels), as Kubernetes names and SANs need.
is_dns_name() {
    [[ $1 =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$ ]] && [ "${#1}" -le 253 ]
}

# An IPv4 address (dotted quad) or an IPv6 address (hex groups and colons, as openssl prints
# them: write IPv6 in full, 0:0:0:0:0:0:0:1, for a certificate that is kept across runs).
is_ip() {
    local o
    if [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]]; then
        for o in "${BASH_REMATCH[@]:1}"; do [ "$((10#$o))" -le 255 ] || return 1; done
        return 0
    fi
    [[ $1 =~ ^[0-9A-Fa-f:]+$ && $1 == *:*:* ]]
}

command -v openssl >/dev/null || die "openssl is required (apt-get install openssl)"

# --- arguments ---------------------------------------------------------------------------
MODE=serving
if [ "${1:-}" = federation ]; then
    MODE=federation
    shift
fi
case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
    "") die_usage "OUTDIR is required" ;;
    -*) die_usage "OUTDIR is required before options (got $1)" ;;
esac
OUTDIR=$1
shift

NAMESPACE=promfed-system
SERVICE=promfed
DAYS=365
FORCE=0
CLUSTER=
SERVER_NAME=prom-federation
ADDRESS=
IPS=()
need_value() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then die_usage "$1 needs a value"; fi
}
while [ $# -gt 0 ]; do
    case "$1" in
        --namespace | --service)
            [ "$MODE" = serving ] || die_usage "$1 is an option of the serving mode"
            need_value "$@"
            if [ "$1" = --namespace ]; then NAMESPACE=$2; else SERVICE=$2; fi
            shift 2
            ;;
        --ip)
            [ "$MODE" = serving ] || die_usage "$1 is an option of the serving mode"
            need_value "$@"
            is_ip "$2" || die_usage "--ip is not an IPv4 or IPv6 address: $2"
            IPS+=("$2")
            shift 2
            ;;
        --cluster | --server-name | --address)
            [ "$MODE" = federation ] || die_usage "$1 is an option of the federation mode"
            need_value "$@"
            case "$1" in
                --cluster) CLUSTER=$2 ;;
                --server-name) SERVER_NAME=$2 ;;
                --address) ADDRESS=$2 ;;
            esac
            shift 2
            ;;
        --days)
            need_value "$@"
            DAYS=$2
            shift 2
            ;;
        --force)
            FORCE=1
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die_usage "unknown argument: $1" ;;
    esac
done
[[ $DAYS =~ ^[1-9][0-9]{0,4}$ ]] || die_usage "--days must be a whole number of days (1-99999), got: $DAYS"
if [ "$MODE" = serving ]; then
    is_dns_name "$NAMESPACE" || die_usage "--namespace is not a valid name: $NAMESPACE"
    is_dns_name "$SERVICE" || die_usage "--service is not a valid name: $SERVICE"
else
    [ -n "$CLUSTER" ] || die_usage "federation needs --cluster NAME"
    is_dns_name "$CLUSTER" || die_usage "--cluster must be a DNS label-like name, got: $CLUSTER"
    is_dns_name "$SERVER_NAME" || die_usage "--server-name is not a DNS name: $SERVER_NAME"
    ADDRESS=${ADDRESS:-prom.$CLUSTER.cluster.local}
    [[ $ADDRESS =~ ^[A-Za-z0-9.-]+(:[0-9]{1,5})?$ ]] || die_usage "--address must be HOST or HOST:PORT, got: $ADDRESS"
fi

mkdir -p "$OUTDIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/promfed-certs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- openssl helpers ---------------------------------------------------------------------
# new_key FILE: an EC P-256 private key (PKCS#8 PEM), mode 0600 from the start.
new_key() {
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null) ||
        die "openssl could not make a key"
}

# ensure_ca DIR CN: DIR/ca.crt + DIR/ca.key, made unless both exist and belong together.
ensure_ca() {
    local dir=$1 cn=$2
    if [ -s "$dir/ca.crt" ] && [ -s "$dir/ca.key" ]; then
        same_key "$dir/ca.crt" "$dir/ca.key" || die "$dir/ca.key is not the key of $dir/ca.crt; move both away to make a new CA"
        say "kept the CA $dir/ca.crt ($(openssl x509 -in "$dir/ca.crt" -noout -subject))"
        return
    fi
    if [ -e "$dir/ca.crt" ] || [ -e "$dir/ca.key" ]; then
        die "$dir has only one of ca.crt and ca.key (or an empty one); move it away to make a new CA"
    fi
    cat >"$WORK/ca.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $cn
[ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    new_key "$WORK/ca.key"
    openssl req -x509 -new -key "$WORK/ca.key" -config "$WORK/ca.cnf" -extensions ext \
        -sha256 -days "$CA_DAYS" -set_serial "0x$(openssl rand -hex 16)" -out "$WORK/ca.crt" 2>/dev/null ||
        die "openssl could not make the CA"
    mv "$WORK/ca.key" "$dir/ca.key"
    mv "$WORK/ca.crt" "$dir/ca.crt"
    say "made the CA $dir/ca.crt (CN=$cn, $CA_DAYS days)"
}

# same_key CERT KEY: whether KEY is the private key of CERT.
same_key() {
    local a b
    a=$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null) || return 1
    b=$(openssl pkey -in "$2" -pubout 2>/dev/null) || return 1
    [ -n "$a" ] && [ "$a" = "$b" ]
}

# sans_of CERT: its SANs, sorted, one a line: DNS names as they are, IP addresses as IP:ADDR.
sans_of() {
    openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null |
        tr ',' '\n' | sed -n 's/^ *DNS://p; s/^ *IP Address:/IP:/p' | sort
}

# still_good CA_DIR CERT KEY EKU NAMES...: CERT is signed by the CA, has exactly NAMES as SANs
# (a DNS name, or IP:ADDR for an IP address),
# the purpose EKU (sslserver/sslclient), KEY as its key, and 30 more days to live.
still_good() {
    local ca=$1/ca.crt cert=$2 key=$3 purpose=$4
    shift 4
    [ "$FORCE" = 0 ] && [ -s "$cert" ] && [ -s "$key" ] || return 1
    openssl verify -CAfile "$ca" -purpose "$purpose" "$cert" >/dev/null 2>&1 || return 1
    openssl x509 -in "$cert" -noout -checkend "$RENEW_SECONDS" >/dev/null 2>&1 || return 1
    same_key "$cert" "$key" || return 1
    [ "$(sans_of "$cert")" = "$(printf '%s\n' "$@" | sort)" ]
}

# issue CA_DIR OUTCRT OUTKEY CN EKU NAMES...: a leaf certificate signed by the CA in CA_DIR,
# EKU serverAuth or clientAuth, SANs NAMES (a DNS name, or IP:ADDR for an IP address); written to
# OUTCRT/OUTKEY only when complete.
issue() {
    local ca_dir=$1 crt=$2 key=$3 cn=$4 eku=$5
    shift 5
    local sans="" n
    for n in "$@"; do
        case "$n" in
            IP:*) sans="${sans:+$sans, }$n" ;;
            *) sans="${sans:+$sans, }DNS:$n" ;;
        esac
    done
    cat >"$WORK/leaf.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = $cn
[ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = $eku
subjectAltName = $sans
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    new_key "$WORK/leaf.key"
    openssl req -new -key "$WORK/leaf.key" -config "$WORK/leaf.cnf" -out "$WORK/leaf.csr" 2>/dev/null ||
        die "openssl could not make the request for $cn"
    openssl x509 -req -in "$WORK/leaf.csr" -CA "$ca_dir/ca.crt" -CAkey "$ca_dir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -sha256 -days "$DAYS" \
        -extfile "$WORK/leaf.cnf" -extensions ext -out "$WORK/leaf.crt" 2>/dev/null ||
        die "openssl could not sign the certificate for $cn"
    mv "$WORK/leaf.key" "$key"
    mv "$WORK/leaf.crt" "$crt"
    say "issued $crt (CN=$cn, $eku, $sans, $DAYS days)"
}

# --- serving mode -------------------------------------------------------------------------
if [ "$MODE" = serving ]; then
    ensure_ca "$OUTDIR" "promfed-webhook-ca"
    names=("$SERVICE.$NAMESPACE.svc" "$SERVICE.$NAMESPACE.svc.cluster.local" "$SERVICE" "$SERVICE.$NAMESPACE")
    for ip in ${IPS[@]+"${IPS[@]}"}; do names+=("IP:$ip"); done
    if still_good "$OUTDIR" "$OUTDIR/tls.crt" "$OUTDIR/tls.key" sslserver "${names[@]}"; then
        say "kept $OUTDIR/tls.crt (valid for more than 30 days; --force renews it)"
    else
        issue "$OUTDIR" "$OUTDIR/tls.crt" "$OUTDIR/tls.key" "${names[0]}" serverAuth "${names[@]}"
    fi
    exit 0
fi

# --- federation mode ----------------------------------------------------------------------
ensure_ca "$OUTDIR" "promfed-federation-ca"
tools=$OUTDIR/tools
workload=$OUTDIR/workload/$CLUSTER
mkdir -p "$tools" "$workload" "$OUTDIR/promfed"

# The tools Prometheus's client certificate, shared by all its federation jobs.
cp "$OUTDIR/ca.crt" "$tools/ca.crt"
if still_good "$OUTDIR" "$tools/tls.crt" "$tools/tls.key" sslclient prometheus-federation-client; then
    say "kept $tools/tls.crt"
else
    issue "$OUTDIR" "$tools/tls.crt" "$tools/tls.key" prometheus-federation-client clientAuth prometheus-federation-client
fi

# The workload Prometheus's server certificate and the client CA it checks the tools side with.
cp "$OUTDIR/ca.crt" "$workload/ca.crt"
if still_good "$OUTDIR" "$workload/tls.crt" "$workload/tls.key" sslserver "$SERVER_NAME"; then
    say "kept $workload/tls.crt"
else
    issue "$OUTDIR" "$workload/tls.crt" "$workload/tls.key" "$SERVER_NAME" serverAuth "$SERVER_NAME"
fi

# Prometheus's --web.config.file for the workload cluster: mount a Secret made from this folder
# at /etc/prometheus/federation and start Prometheus with
# --web.config.file=/etc/prometheus/federation/web.config.yml.
cat >"$workload/web.config.yml" <<EOF
# Prometheus web config of workload cluster $CLUSTER (written by certs/generate.sh federation):
# HTTPS with client certificates required and checked against the federation CA.
# Mount this folder as a Secret at /etc/prometheus/federation and pass
#   --web.config.file=/etc/prometheus/federation/web.config.yml
tls_server_config:
  cert_file: /etc/prometheus/federation/tls.crt
  key_file: /etc/prometheus/federation/tls.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: /etc/prometheus/federation/ca.crt
EOF

# The tools side: promfed generates the federation job from this entry. The files are the
# seed's paths (a Secret made from OUTDIR/tools mounted at /etc/prometheus/addCerts/federation).
cat >"$OUTDIR/promfed/$CLUSTER.yaml" <<EOF
# promfed config entry for workload cluster $CLUSTER (written by certs/generate.sh federation).
# Add the list item under \`clusters:\` in promfed.yaml. The raw form
# (additionalScrapeConfigs) takes the same tls_config.
clusters:
- name: $CLUSTER
  url: https://$ADDRESS
  tls_config:
    ca_file: /etc/prometheus/addCerts/federation/ca.crt
    cert_file: /etc/prometheus/addCerts/federation/tls.crt
    key_file: /etc/prometheus/addCerts/federation/tls.key
    server_name: $SERVER_NAME
EOF
say "wrote $workload/web.config.yml and $OUTDIR/promfed/$CLUSTER.yaml"
say "next: a Secret from $tools on the tools cluster (mounted at /etc/prometheus/addCerts/federation),"
say "      a Secret from $workload on cluster $CLUSTER (mounted at /etc/prometheus/federation); see docs/install.md"
