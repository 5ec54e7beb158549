# The node of scripts/kube-local.sh (PROMFED_NODE=1): sourced by it, not run on its own.
#
# One node, named kube-local-node, in a network namespace of its own (promfed-ID, ID from a
# hash of DIR, so several DIRs can each have one):
#
#   host netns                         netns promfed-ID (the node)
#   kube-apiserver on 172.30.N.1 --- veth pfID <-> pfnID 172.30.N.2 --- cni0 10.244.N.1/24 --- pods
#   etcd, controller-manager and       containerd, kubelet (their own mount namespace too)
#   scheduler on 127.0.0.1
#
# The host routes the pod network 10.244.N.0/24 to the node, so the API server reaches pods at
# their own addresses: it calls the webhook's Service through the Service's endpoints
# (--enable-aggregator-routing, which the API server also uses for webhooks) and there is no
# kube-proxy. containerd and kubelet run inside one mount namespace (a `holder` process keeps
# it open) with a private tmpfs on /run/containerd, so every mount they and the pods make (volumes,
# overlay rootfs, shim sockets, netns files) lives and dies with it. The pods' cgroups are under
# /promfed-ID (kubelet's cgroupRoot), the node's processes under /promfed-ID/node in the pids
# hierarchy: `down` kills every process of that tree by pid, removes the cgroups, then the netns
# (which takes the veth and the bridge with it).
#
# Needs root, runc (Debian's), and from scripts/build-tools.sh: kube-node (kubelet,
# kube-controller-manager, kube-scheduler), containerd (with ctr, its shim and the pause image),
# cni (bridge, host-local, loopback).

NODE_NAME=kube-local-node
NODE_ID=$(printf '%s' "$DIR" | sha256sum | cut -c1-6)
NODE_N=$((0x${NODE_ID:0:4} % 250 + 1))
NETNS=promfed-$NODE_ID
HOST_IF=pf$NODE_ID
NODE_IF=pfn$NODE_ID
HOST_IP=172.30.$NODE_N.1
NODE_IP=172.30.$NODE_N.2
POD_CIDR=10.244.$NODE_N.0/24
CGROUP=promfed-$NODE_ID
NODE_DIR=$DIR/node
CONTAINERD_SOCK=$NODE_DIR/containerd/containerd.sock
# the names the images are imported under (the manifests' name, so deploy/ needs no change)
PAUSE_IMAGE=localhost/promfed/pause:1
PROMFED_IMAGE_NAME=ghcr.io/promfed/promfed

# node_procs: the pids in the node's cgroup tree (pids hierarchy), one per line.
node_procs() {
    local d=/sys/fs/cgroup/pids/$CGROUP
    [ -d "$d" ] || return 0
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}

# in_node CMD...: CMD inside the node's network and mount namespaces.
in_node() {
    nsenter --target "$(cat "$DIR/node-holder.pid")" --mount --net -- "$@"
}

# node_spawn NAME CMD...: CMD in the background inside the node (namespaces and cgroup), its
# pid in DIR/NAME.pid, its output in DIR/NAME.log.
node_spawn() {
    local name=$1
    shift
    (
        echo "$BASHPID" >"/sys/fs/cgroup/pids/$CGROUP/node/cgroup.procs"
        exec nsenter --target "$(cat "$DIR/node-holder.pid")" --mount --net -- "$@"
    ) >"$DIR/$name.log" 2>&1 &
    echo $! >"$DIR/$name.pid"
    wait_exec "$name"
}


# node_down: the node's processes, by pid (the daemons, then whatever is left in its cgroup
# tree), and its cgroups.
node_down() {
    local pid i left
    stop kube-scheduler
    stop kube-controller-manager
    stop kubelet
    stop containerd
    # What is left in the tree: shims, pause and the pods' processes, the holder.
    for ((i = 0; i < 50; i++)); do
        left=$(node_procs)
        [ -n "$left" ] || break
        for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
        sleep 0.1
    done
    [ -z "$(node_procs)" ] || say "processes still in cgroup $CGROUP: $(node_procs | tr '\n' ' ')"
    rm -f "$DIR/node-holder.pid"
    # cgroups, deepest first, in every hierarchy
    local h
    for h in /sys/fs/cgroup/*/; do
        [ -d "$h$CGROUP" ] || continue
        find "$h$CGROUP" -depth -type d -exec rmdir {} + 2>/dev/null || say "could not remove cgroup $h$CGROUP"
    done
}

# node_network_down: the netns (with it the bridge, the pods' veths and the node's end of the
# host's veth, which goes too). After the API server stopped: it listens on the host's end.
node_network_down() {
    if ip netns list 2>/dev/null | grep -qw "$NETNS"; then
        ip netns delete "$NETNS" || say "could not delete netns $NETNS"
        say "deleted netns $NETNS"
    fi
    ip link delete "$HOST_IF" 2>/dev/null || true
}

# node_network: the netns and the veth between it and the host, the pod network routed to it.
node_network() {
    [ "$(id -u)" = 0 ] || die "PROMFED_NODE=1 needs root (network namespaces, cgroups, mounts)"
    if ip link show "$HOST_IF" >/dev/null 2>&1 || ip netns list | grep -qw "$NETNS"; then
        die "$HOST_IF or netns $NETNS exists: another node runs from $DIR (scripts/kube-local.sh down $DIR)"
    fi
    if ip route show | grep -q "^${POD_CIDR%/*}/\|^172\.30\.$NODE_N\.0/"; then
        die "172.30.$NODE_N.0/30 or $POD_CIDR is routed already (another node's DIR hashes alike): pick another DIR"
    fi
    ip netns add "$NETNS"
    ip link add "$HOST_IF" type veth peer name "$NODE_IF" netns "$NETNS"
    ip addr add "$HOST_IP/30" dev "$HOST_IF"
    ip link set "$HOST_IF" up
    ip -n "$NETNS" addr add "$NODE_IP/30" dev "$NODE_IF"
    ip -n "$NETNS" link set "$NODE_IF" up
    ip -n "$NETNS" link set lo up
    ip -n "$NETNS" route add default via "$HOST_IP"
    ip netns exec "$NETNS" sysctl -qw net.ipv4.ip_forward=1
    ip route add "$POD_CIDR" via "$NODE_IP" dev "$HOST_IF"
    say "node network: netns $NETNS, $HOST_IF $HOST_IP <-> $NODE_IF $NODE_IP, pods $POD_CIDR"
}

# node_start: containerd, the images, kubelet, controller-manager and scheduler; returns when
# the node is Ready.
node_start() {
    local t kd cni_dir h
    t=$(now)
    for b in kubelet kube-controller-manager kube-scheduler containerd ctr containerd-shim-runc-v2 runc; do
        command -v "$b" >/dev/null || die "no $b on PATH ($TOOLS_PATH; runc: Debian's package)"
    done
    cni_dir=$("$ROOT/scripts/build-tools.sh" dir cni)/cni
    local containerd_dir pause_archive
    containerd_dir=$("$ROOT/scripts/build-tools.sh" dir containerd)
    pause_archive=$containerd_dir/pause-image.tar
    rm -rf "$NODE_DIR"
    mkdir -p "$NODE_DIR"/{containerd,cni/net.d,cni/ipam,kubelet,pod-logs}

    # cgroups: kubelet's root in every hierarchy (cpuset needs its cpus and mems copied from
    # the parent before a process may join), the node's processes in pids.
    for h in /sys/fs/cgroup/*/; do
        [ -e "${h}cgroup.procs" ] || continue
        mkdir -p "$h$CGROUP"
        if [ -e "${h}cpuset.cpus" ]; then
            cat "${h}cpuset.cpus" >"$h$CGROUP/cpuset.cpus"
            cat "${h}cpuset.mems" >"$h$CGROUP/cpuset.mems"
        fi
    done
    mkdir -p "/sys/fs/cgroup/pids/$CGROUP/node"

    # The holder: the node's mount namespace (a private tmpfs on /run/containerd), in its netns
    # and its cgroup, kept open by a sleep.
    mkdir -p /run/containerd
    (
        echo $BASHPID >"/sys/fs/cgroup/pids/$CGROUP/node/cgroup.procs"
        exec nsenter --net="/run/netns/$NETNS" -- unshare --mount --propagation slave -- \
            sh -c 'mount -t tmpfs -o mode=0711 promfed-node /run/containerd && exec sleep infinity'
    ) >"$DIR/node-holder.log" 2>&1 &
    echo $! >"$DIR/node-holder.pid"
    local i ok=0
    for ((i = 0; i < 200; i++)); do
        if [ "$(readlink "/proc/$(cat "$DIR/node-holder.pid")/ns/mnt" 2>/dev/null)" != "$(readlink /proc/self/ns/mnt)" ] &&
            in_node findmnt -n /run/containerd >/dev/null 2>&1; then
            ok=1
            break
        fi
        kill -0 "$(cat "$DIR/node-holder.pid")" 2>/dev/null || fail_with node-holder "the node's namespace holder exited"
        sleep 0.05
    done
    [ "$ok" = 1 ] || fail_with node-holder "the node's namespace holder has no tmpfs on /run/containerd after 10 s"

    # --- containerd ---
    cat >"$NODE_DIR/cni/net.d/10-promfed.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "promfed",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$NODE_DIR/cni/ipam"
      }
    }
  ]
}
EOF
    cat >"$NODE_DIR/containerd/config.toml" <<EOF
# Written by scripts/kube-local.sh (PROMFED_NODE=1).
version = 3
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"
[plugins."io.containerd.cri.v1.runtime"]
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  # root here lacks CAP_SYS_RESOURCE (bounding set), so runc cannot lower a sandbox's
  # oom_score_adj to the -998 the kubelet asks: cap it at containerd's own instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$cni_dir"]
    conf_dir = "$NODE_DIR/cni/net.d"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
EOF
    node_spawn containerd containerd --config "$NODE_DIR/containerd/config.toml"
    deadline=$((SECONDS + 60))
    until ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; do
        pid_alive containerd || fail_with containerd "containerd exited"
        [ "$SECONDS" -lt "$deadline" ] || fail_with containerd "containerd not answering after 60 s"
        sleep 0.1
    done
    # The images, into the namespace the CRI uses; no registry anywhere.
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --base-name "${PAUSE_IMAGE%:*}" \
        "$pause_archive" >>"$DIR/images.log" 2>&1 || fail_with images "ctr images import $pause_archive failed"
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --base-name "$PROMFED_IMAGE_NAME" \
        "$IMAGE_ARCHIVE" >>"$DIR/images.log" 2>&1 || fail_with images "ctr images import $IMAGE_ARCHIVE failed"
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images ls -q >"$DIR/images.txt"
    grep -qx "$PAUSE_IMAGE" "$DIR/images.txt" || fail_with images "no $PAUSE_IMAGE after the import ($(tr '\n' ' ' <"$DIR/images.txt"))"
    grep -qx "$PROMFED_IMAGE" "$DIR/images.txt" || fail_with images "no $PROMFED_IMAGE after the import ($(tr '\n' ' ' <"$DIR/images.txt"))"
    say "containerd $(containerd --version | awk '{print $3}') in netns $NETNS (pid $(cat "$DIR/containerd.pid")), images $PAUSE_IMAGE and $PROMFED_IMAGE imported ($(since "$t"))"

    # --- controller-manager, scheduler (host netns, 127.0.0.1) ---
    t=$(now)
    kube-controller-manager --kubeconfig "$DIR/kubeconfig" \
        --authentication-kubeconfig "$DIR/kubeconfig" --authorization-kubeconfig "$DIR/kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
        --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
        --service-cluster-ip-range 10.0.0.0/24 --cluster-name kube-local \
        --use-service-account-credentials=false --profiling=false \
        >"$DIR/kube-controller-manager.log" 2>&1 &
    echo $! >"$DIR/kube-controller-manager.pid"
    wait_exec kube-controller-manager
    kube-scheduler --kubeconfig "$DIR/kubeconfig" \
        --authentication-kubeconfig "$DIR/kubeconfig" --authorization-kubeconfig "$DIR/kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false --profiling=false \
        >"$DIR/kube-scheduler.log" 2>&1 &
    echo $! >"$DIR/kube-scheduler.pid"
    wait_exec kube-scheduler

    # --- kubelet ---
    kd=$NODE_DIR/kubelet
    cat >"$kd/config.yaml" <<EOF
# Written by scripts/kube-local.sh (PROMFED_NODE=1).
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine's cgroups are v1 (hybrid): kubelets from 1.35 on refuse them unless told not to.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: AlwaysAllow
failSwapOn: false
podLogsDir: $NODE_DIR/pod-logs
resolvConf: ""
clusterDomain: cluster.local
# No registry: never collect the imported images.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
registerNode: true
rotateCertificates: false
serverTLSBootstrap: false
syncFrequency: 10s
fileCheckFrequency: 0s
EOF
    node_spawn kubelet kubelet --config "$kd/config.yaml" --kubeconfig "$DIR/kubeconfig" \
        --root-dir "$kd/root" --cert-dir "$kd/pki" --hostname-override "$NODE_NAME" \
        --node-ip "$NODE_IP"
    deadline=$((SECONDS + TIMEOUT))
    until [ "$("$KUBECTL" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; do
        pid_alive kubelet || fail_with kubelet "kubelet exited"
        pid_alive kube-controller-manager || fail_with kube-controller-manager "kube-controller-manager exited"
        pid_alive kube-scheduler || fail_with kube-scheduler "kube-scheduler exited"
        [ "$SECONDS" -lt "$deadline" ] || fail_with kubelet "node $NODE_NAME not Ready after $TIMEOUT s"
        sleep 0.5
    done
    say "node $NODE_NAME Ready: kubelet $(kubelet --version | awk '{print $2}') (pid $(cat "$DIR/kubelet.pid")), controller-manager and scheduler ($(since "$t"))"
}

# node_deploy: the overlay PROMFED_OVERLAY (default deploy/self-signed) from a copy of deploy/
# in DIR/deploy (its certificates made there for the Service's name), applied; returns when
# the Deployment is Available.
node_deploy() {
    local t overlay
    t=$(now)
    overlay=${PROMFED_OVERLAY:-self-signed}
    rm -rf "$DIR/deploy"
    cp -r "$ROOT/deploy" "$DIR/deploy"
    rm -rf "$DIR/deploy/self-signed/certs"
    [ -f "$DIR/deploy/$overlay/kustomization.yaml" ] || die "no overlay deploy/$overlay (PROMFED_OVERLAY)"
    if [ "$overlay" = self-signed ]; then
        "$ROOT/certs/generate.sh" "$DIR/deploy/self-signed/certs" 2>"$DIR/certs.log" ||
            fail_with certs "certs/generate.sh failed"
    fi
    OVERLAY_DIR=$DIR/deploy/$overlay
    "$KUBECTL" apply -k "$OVERLAY_DIR" >>"$DIR/apply.log" 2>&1 || fail_with apply "kubectl apply -k deploy/$overlay failed"
    if ! "$KUBECTL" -n promfed-system wait --for=condition=Available deployment/promfed \
        --timeout="${TIMEOUT}s" >>"$DIR/apply.log" 2>&1; then
        "$KUBECTL" -n promfed-system get pods -o wide >&2 || true
        "$KUBECTL" -n promfed-system describe pods >"$DIR/pods.txt" 2>&1 || true
        fail_with kubelet "deployment/promfed not Available after $TIMEOUT s (pods: $DIR/pods.txt)"
    fi
    say "deploy/$overlay applied, promfed runs as pods $(pod_ips | tr '\n' ' ')($(since "$t"))"
}

# pod_ips: the addresses of promfed's Ready pods, one per line.
pod_ips() {
    "$KUBECTL" -n promfed-system get endpointslices -l kubernetes.io/service-name=promfed \
        -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\n"}{end}' 2>/dev/null
}
