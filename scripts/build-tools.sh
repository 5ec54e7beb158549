#!/usr/bin/env bash
# Builds the Go tools promfed's tests run against, at the versions pinned in tests/tools/*/go.mod
# (with go.sum), from the Go module proxy, into a cache outside the clone that later runs and
# other clones reuse:
#
#   ${PROMFED_TOOLS_CACHE:-~/.cache/promfed-tools}/NAME-VERSION/bin/...
#
#   kubernetes-VERSION/bin/kube-apiserver, kubectl   tests/tools/kube (k8s.io/kubernetes)
#   etcd-VERSION/bin/etcd                            tests/tools/etcd (go.etcd.io/etcd/server/v3)
#   helm-VERSION/bin/helm                            tests/tools/helm3 (helm.sh/helm/v3)
#   helm4-VERSION/bin/helm4                          tests/tools/helm4 (helm.sh/helm/v4)
#   kapp-VERSION/bin/kapp, ytt-VERSION/bin/ytt       tests/tools/carvel (carvel.dev/kapp, carvel.dev/ytt)
#   kapp-controller-VERSION/bin/kapp-controller, vendir   tests/tools/kappctrl (carvel.dev/kapp-controller
#                                                    and the vendir it fetches with); not on `path`:
#                                                    the tests that run it ask for `dir kapp-controller`
#   prometheus-VERSION/bin/prometheus3, promtool3    tests/tools/prometheus (Prometheus 3.x; the
#                                                    3 keeps them apart from Debian's 2.x; service
#                                                    discovery: kubernetes, dns, file, http only)
#   prometheus-operator-VERSION/bin/prometheus-operator, admission-webhook (its own admission
#                                    webhook, cmd/admission-webhook) and crds/*.yaml (its CRDs)
#   cert-manager-crds-VERSION/crds/*.yaml            cert-manager's CRDs, from its module source
#   kube-node-VERSION/bin/kubelet, kube-controller-manager, kube-scheduler
#                                                    tests/tools/node (k8s.io/kubernetes): the
#                                                    node of `kube-local.sh` with PROMFED_NODE=1
#   containerd-VERSION/bin/containerd, containerd-shim-runc-v2, ctr, pause, and
#     pause-image.tar (an OCI archive of pause)      tests/tools/containerd (containerd/v2)
#   cni-VERSION/cni/bridge, host-local, loopback     tests/tools/cni (containernetworking/plugins;
#                                                    not on PATH: containerd's CNI folder)
#
# A tool is rebuilt only when its stamp (a hash of its tests/tools module, RECIPES below and the
# Go version) changes or a file is missing; a run with everything cached takes about a second.
#
#   scripts/build-tools.sh            build what is missing, say what was cached
#   scripts/build-tools.sh path       print the bin/ folders, PATH-style (of built tools)
#   scripts/build-tools.sh dir NAME   print NAME's cache folder, e.g. `dir prometheus-operator`
#
# Needs go (the machine's Go 1.26) and the Go module proxy. GOMODCACHE and GOCACHE stay Go's
# defaults (~/go/pkg/mod, ~/.cache/go-build).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$ROOT/tests/tools
CACHE=${PROMFED_TOOLS_CACHE:-$HOME/.cache/promfed-tools}
# Bump when a recipe in build_tool changes (flags, names, copied files): every tool is rebuilt.
RECIPES=1

say() { printf 'build-tools: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
# CPU seconds (user + system) of this script's finished children: with `since`, says how much
# of a build's time was spent waiting for a busy machine's cores.
# cpu_now sets CPU; call it in this shell, not in $(...) (a subshell's children are its own).
cpu_now() {
    times >"$CACHE/.times"
    CPU=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, t, "m"); s += t[1] * 60 + t[2] } printf "%.1f", s }' "$CACHE/.times")
}
cpu_since() {
    cpu_now
    CPU_SINCE=$(awk -v a="$1" -v b="$CPU" 'BEGIN { printf "%.0fs", b - a }')
}

# version_of MODDIR MODULE: MODULE's version as required by tests/tools/MODDIR/go.mod.
version_of() {
    local v
    v=$(awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { print ($1 == m ? $2 : $3); exit }' \
        "$TOOLS/$1/go.mod")
    [ -n "$v" ] || die "tests/tools/$1/go.mod does not require $2"
    printf '%s\n' "$v"
}

# The tools: NAME MODDIR MODULE. Order = build order (the one most needed first).
TOOL_LIST="
kubernetes kube k8s.io/kubernetes
etcd etcd go.etcd.io/etcd/server/v3
helm helm3 helm.sh/helm/v3
helm4 helm4 helm.sh/helm/v4
kapp carvel carvel.dev/kapp
ytt carvel carvel.dev/ytt
kapp-controller kappctrl carvel.dev/kapp-controller
prometheus prometheus github.com/prometheus/prometheus
prometheus-operator operator github.com/prometheus-operator/prometheus-operator
cert-manager-crds crds github.com/cert-manager/cert-manager
kube-node node k8s.io/kubernetes
containerd containerd github.com/containerd/containerd/v2
cni cni github.com/containernetworking/plugins
"

# tool_dir NAME: the cache folder of NAME at its pinned version.
tool_dir() {
    local name moddir module version
    while read -r name moddir module; do
        [ -n "$name" ] || continue
        if [ "$name" = "$1" ]; then
            version=$(version_of "$moddir" "$module")
            # Prometheus 3.x is published as module versions v0.3XX.Y: name the folder 3.XX.Y.
            if [ "$name" = prometheus ]; then version=$(prom_version "$version"); fi
            printf '%s/%s-%s\n' "$CACHE" "$name" "$version"
            return
        fi
    done <<<"$TOOL_LIST"
    die "no tool named $1"
}

# v0.316.0 -> v3.16.0
prom_version() {
    [[ $1 =~ ^v0\.3([0-9][0-9])\.([0-9]+)$ ]] || die "unexpected Prometheus module version $1"
    printf 'v3.%d.%s\n' "$((10#${BASH_REMATCH[1]}))" "${BASH_REMATCH[2]}"
}

# What a tool's stamp covers: its module (go.mod, go.sum, any .go file), RECIPES, Go's version.
stamp_of() {
    local moddir=$1
    {
        (cd "$TOOLS/$moddir" && sha256sum go.mod go.sum && find . -maxdepth 1 -name '*.go' -exec sha256sum {} + | sort)
        echo "recipes $RECIPES"
        go version
    } | sha256sum | cut -d' ' -f1
}

# gobuild MODDIR OUT PACKAGE LDFLAGS...: one binary, small and without local paths; build tags
# netgo and $TAGS (comma-separated).
gobuild() {
    local moddir=$1 out=$2 pkg=$3
    shift 3
    (cd "$TOOLS/$moddir" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath -mod=readonly" \
        go build -tags "netgo${TAGS:+,$TAGS}" -ldflags="-s -w $*" -o "$out" "$pkg")
}

# module_dir MODDIR MODULE: the module's source folder in GOMODCACHE (downloaded and verified
# against tests/tools/MODDIR/go.sum).
module_dir() {
    (cd "$TOOLS/$1" && GOFLAGS=-mod=readonly go mod download -json "$2") |
        awk -F'"' '$2 == "Dir" { print $4 }'
}

# kube_ldflags VERSION: the version variables of a Kubernetes release build.
kube_ldflags() {
    local v=${1#v} minor
    minor=$(cut -d. -f2 <<<"$v")
    printf -- '-X %s ' \
        "k8s.io/component-base/version.gitVersion=$1" "k8s.io/component-base/version.gitMajor=${v%%.*}" \
        "k8s.io/component-base/version.gitMinor=$minor" "k8s.io/component-base/version.gitTreeState=clean" \
        "k8s.io/client-go/pkg/version.gitVersion=$1" "k8s.io/client-go/pkg/version.gitMajor=${v%%.*}" \
        "k8s.io/client-go/pkg/version.gitMinor=$minor" "k8s.io/client-go/pkg/version.gitTreeState=clean"
}

# build_tool NAME MODDIR MODULE VERSION DIR: everything into DIR.tmp, then renamed to DIR.
build_tool() {
    local name=$1 moddir=$2 module=$3 version=$4 dir=$5 tmp=$5.tmp src
    rm -rf "$tmp"
    mkdir -p "$tmp/bin"
    case "$name" in
        kubernetes)
            local v=${version#v} kv
            kv="-X k8s.io/component-base/version.gitVersion=$version
                -X k8s.io/component-base/version.gitMajor=${v%%.*}
                -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$v")
                -X k8s.io/component-base/version.gitTreeState=clean
                -X k8s.io/client-go/pkg/version.gitVersion=$version
                -X k8s.io/client-go/pkg/version.gitMajor=${v%%.*}
                -X k8s.io/client-go/pkg/version.gitMinor=$(cut -d. -f2 <<<"$v")
                -X k8s.io/client-go/pkg/version.gitTreeState=clean"
            # shellcheck disable=SC2086 # kv is a list of flags
            gobuild kube "$tmp/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver $kv
            # shellcheck disable=SC2086
            gobuild kube "$tmp/bin/kubectl" k8s.io/kubernetes/cmd/kubectl $kv
            ;;
        etcd) gobuild etcd "$tmp/bin/etcd" . ;;
        helm)
            # as helm's Makefile: its version, and the Kubernetes version its client-go knows
            # (the default .Capabilities.KubeVersion of `helm template`).
            local cg major minor h=helm.sh/helm/v3
            cg=$(version_of helm3 k8s.io/client-go)
            major=$(($(cut -d. -f1 <<<"${cg#v}") + 1))
            minor=$(cut -d. -f2 <<<"$cg")
            gobuild helm3 "$tmp/bin/helm" "$h/cmd/helm" \
                -X "$h/internal/version.version=$version" -X "$h/internal/version.gitTreeState=clean" \
                -X "$h/pkg/chartutil.k8sVersionMajor=$major" -X "$h/pkg/chartutil.k8sVersionMinor=$minor" \
                -X "$h/pkg/lint/rules.k8sVersionMajor=$major" -X "$h/pkg/lint/rules.k8sVersionMinor=$minor"
            ;;
        helm4)
            # helm 4 reads the Kubernetes version from its build info by itself.
            gobuild helm4 "$tmp/bin/helm4" helm.sh/helm/v4/cmd/helm \
                -X "helm.sh/helm/v4/internal/version.version=$version" \
                -X "helm.sh/helm/v4/internal/version.gitTreeState=clean"
            ;;
        kapp) gobuild carvel "$tmp/bin/kapp" carvel.dev/kapp/cmd/kapp -X "carvel.dev/kapp/pkg/kapp/version.Version=${version#v}" ;;
        ytt) gobuild carvel "$tmp/bin/ytt" carvel.dev/ytt/cmd/ytt -X "carvel.dev/ytt/pkg/version.Version=${version#v}" ;;
        kapp-controller)
            gobuild kappctrl "$tmp/bin/kapp-controller" carvel.dev/kapp-controller/cmd/controller -X "main.Version=${version#v}"
            local vv
            vv=$(version_of kappctrl carvel.dev/vendir)
            gobuild kappctrl "$tmp/bin/vendir" carvel.dev/vendir/cmd/vendir -X "carvel.dev/vendir/pkg/vendir/version.Version=${vv#v}"
            # Its CRDs (App, PackageInstall, PackageRepository, the internal ones), plain YAML.
            src=$(module_dir kappctrl "$module")
            mkdir -p "$tmp/crds"
            cp "$src/config/config/crds.yml" "$tmp/crds/crds.yaml"
            ;;
        prometheus)
            # Without the builtinassets tag: the web UI's compiled assets are not in the module
            # (the API, /federate and everything the tests use are). Service discovery: only
            # kubernetes_sd_configs and dns_sd_configs (with file and http, always there), the
            # ones promfed's inputs use; the other 20-odd (AWS, Azure, GCE, ...) would double
            # the build time. A config with one of them fails `promtool3 check config`.
            local pv pf=github.com/prometheus/common/version
            pv=$(prom_version "$version")
            for b in prometheus promtool; do
                TAGS=remove_all_sd,enable_kubernetes_sd,enable_dns_sd gobuild prometheus "$tmp/bin/${b}3" "github.com/prometheus/prometheus/cmd/$b" \
                    -X "$pf.Version=${pv#v}" -X "$pf.Branch=HEAD" -X "$pf.Revision=module-$version"
            done
            ;;
        prometheus-operator)
            local pf=github.com/prometheus/common/version
            gobuild operator "$tmp/bin/prometheus-operator" "$module/cmd/operator" \
                -X "$pf.Version=${version#v}" -X "$pf.Branch=HEAD" -X "$pf.Revision=module-$version"
            gobuild operator "$tmp/bin/admission-webhook" "$module/cmd/admission-webhook" \
                -X "$pf.Version=${version#v}" -X "$pf.Branch=HEAD" -X "$pf.Revision=module-$version"
            src=$(module_dir operator "$module")
            mkdir -p "$tmp/crds"
            cp "$src"/example/prometheus-operator-crd/*.yaml "$tmp/crds/"
            ;;
        cert-manager-crds)
            # deploy/crds holds the CRDs the chart's crd-*.yaml templates are made from (it also
            # keeps copies of prometheus-operator's CRDs for cert-manager's own tests: not those).
            rmdir "$tmp/bin"
            src=$(module_dir crds "$module")
            mkdir -p "$tmp/crds"
            cp "$src"/deploy/crds/cert-manager.io_*.yaml "$src"/deploy/crds/acme.cert-manager.io_*.yaml "$tmp/crds/"
            ;;
        kube-node)
            local b
            for b in kubelet kube-controller-manager kube-scheduler; do
                # shellcheck disable=SC2046 # a list of flags
                gobuild node "$tmp/bin/$b" "k8s.io/kubernetes/cmd/$b" $(kube_ldflags "$version")
            done
            ;;
        containerd)
            # Without the snapshotters that need cgo or kernel features this node does not use
            # (overlayfs and native stay).
            local b cv=github.com/containerd/containerd/v2/version
            for b in containerd containerd-shim-runc-v2 ctr; do
                TAGS=no_btrfs,no_devmapper,no_zfs gobuild containerd "$tmp/bin/$b" "$module/cmd/$b" \
                    -X "$cv.Version=$version" -X "$cv.Revision=module-$version" \
                    -X "$cv.Package=github.com/containerd/containerd"
            done
            gobuild containerd "$tmp/bin/pause" .
            # The pause image: pause alone, run as nobody, as an OCI archive for `ctr images import`.
            command -v umoci >/dev/null || die "umoci is required for the pause image (scripts/test-deps.sh installs it)"
            local img=$tmp/pause-oci
            mkdir -p "$tmp/pause-rootfs"
            install -m 0755 "$tmp/bin/pause" "$tmp/pause-rootfs/pause"
            umoci init --layout "$img"
            umoci new --image "$img:1"
            umoci insert --image "$img:1" --no-history "$tmp/pause-rootfs" /
            umoci config --image "$img:1" --no-history --os linux --architecture amd64 \
                --clear=config.env --config.entrypoint /pause --config.user 65535:65535
            umoci gc --layout "$img"
            tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$img" \
                -cf "$tmp/pause-image.tar" oci-layout index.json blobs
            rm -rf "$img" "$tmp/pause-rootfs"
            ;;
        cni)
            rmdir "$tmp/bin"
            mkdir -p "$tmp/cni"
            local b
            for b in main/bridge ipam/host-local main/loopback; do
                gobuild cni "$tmp/cni/${b#*/}" "$module/plugins/$b" \
                    -X "github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$version"
            done
            ;;
        *) die "no recipe for $name" ;;
    esac
    chmod -R u+w "$tmp"
    rm -rf "$dir"
    mv "$tmp" "$dir"
}

# version_line DIR NAME: the first line each binary of a built tool prints of its version
# (proof that it runs); fails when one does not.
version_line() {
    local b=$1/bin cmd out line=
    local -a cmds
    case "$2" in
        kubernetes) cmds=("kube-apiserver --version" "kubectl version --client") ;;
        etcd) cmds=("etcd --version") ;;
        helm) cmds=("helm version --short") ;;
        helm4) cmds=("helm4 version --short") ;;
        kapp) cmds=("kapp version") ;;
        ytt) cmds=("ytt version") ;;
        kapp-controller) cmds=("vendir version") ;;
        prometheus) cmds=("prometheus3 --version" "promtool3 --version") ;;
        prometheus-operator) cmds=("prometheus-operator --version" "admission-webhook --version") ;;
        kube-node) cmds=("kubelet --version" "kube-controller-manager --version" "kube-scheduler --version") ;;
        containerd) cmds=("containerd --version" "ctr --version") ;;
        *) cmds=() ;;
    esac
    for cmd in ${cmds[@]+"${cmds[@]}"}; do
        # shellcheck disable=SC2086 # cmd is a binary and its arguments
        out=$("$b"/$cmd 2>&1) || return 1
        line=${line:+$line; }$(sed -n 1p <<<"$out")
    done
    if [ -d "$1/cni" ]; then
        line=${line:+$line; }$(CNI_COMMAND=VERSION "$1/cni/bridge" </dev/null | tr -d '\n') || return 1
    fi
    if [ -d "$1/crds" ]; then
        line=${line:+$line; }$(find "$1/crds" -name '*.yaml' | wc -l)" CRDs"
    fi
    printf '%s\n' "$line"
}

built_ok() { # built_ok DIR STAMP
    [ "$(cat "$1/.stamp" 2>/dev/null)" = "$2" ]
}

build_all() {
    command -v go >/dev/null || die "go is required (the machine's Go 1.26; Debian: golang-go is too old)"
    mkdir -p "$CACHE"
    # One build at a time per cache (parallel test modules each starting kube-local.sh, say).
    exec 9>"$CACHE/.lock"
    if ! flock -n 9; then
        say "waiting for another build-tools run (lock $CACHE/.lock) ..."
        flock 9
    fi
    local name moddir module version dir stamp start start_cpu total_start total_cpu built=0 line rc
    total_start=$(now)
    cpu_now
    total_cpu=$CPU
    while read -r name moddir module; do
        [ -n "$name" ] || continue
        version=$(version_of "$moddir" "$module")
        dir=$(tool_dir "$name")
        stamp=$(stamp_of "$moddir")
        # the version the tool calls itself (Prometheus 3.16.0 is module version v0.316.0)
        local shown=${dir##*/}
        shown=${shown#"$name"-}
        if built_ok "$dir" "$stamp"; then
            say "cached $name $shown: $dir"
            continue
        fi
        start=$(now)
        cpu_now
        start_cpu=$CPU
        say "building $name $shown ($module $version, tests/tools/$moddir) ..."
        # In a subshell with errexit on: in `if ! build_tool`, bash would ignore a failed step.
        set +e
        (set -e && build_tool "$name" "$moddir" "$module" "$version" "$dir")
        rc=$?
        set -e
        [ "$rc" = 0 ] || die "building $name $shown failed (exit $rc, see above)"
        line=$(version_line "$dir" "$name") || die "$name was built but does not run: $dir"
        echo "$stamp" >"$dir/.stamp"
        cpu_since "$start_cpu"
        say "built $name $shown in $(since "$start") (CPU $CPU_SINCE): $line"
        built=$((built + 1))
    done <<<"$TOOL_LIST"
    if [ "$built" -gt 0 ]; then
        cpu_since "$total_cpu"
        say "built $built tool(s) in $(since "$total_start") (CPU $CPU_SINCE); cache $CACHE: $(du -sh "$CACHE" | cut -f1)"
    fi
}

case "${1:-build}" in
    build) build_all ;;
    path)
        # only what is built: kube-local.sh runs the build first
        p=
        for n in kubernetes etcd helm helm4 kapp ytt prometheus prometheus-operator kube-node containerd; do
            d=$(tool_dir "$n")
            [ -f "$d/.stamp" ] || die "$n is not built ($d): run scripts/build-tools.sh"
            p=${p:+$p:}$d/bin
        done
        printf '%s\n' "$p"
        ;;
    dir)
        [ $# -eq 2 ] || die "usage: $0 dir NAME"
        tool_dir "$2"
        ;;
    -h | --help) sed -n '2,38s/^# \{0,1\}//p' "$0" ;;
    *) die "unknown command $1 (build, path, dir NAME)" ;;
esac
