#!/usr/bin/env bash
# promfed's image, built without a Docker daemon or a registry (`make image`):
#
#   scripts/image.sh [OUT]     OUT defaults to target/promfed-image.tar
#
# 1. The release binary, linked statically (glibc, `-C target-feature=+crt-static`, a static
#    PIE): the image carries no library at all, so nothing in it can mismatch the binary.
#    promfed resolves no host names (it listens on and is called at addresses), so glibc's
#    NSS, the one part that would dlopen, is never used. The build is checked: no dynamic
#    section entry NEEDED, no interpreter.
# 2. An OCI image assembled with umoci (Debian's package) in an OCI layout, one layer: /promfed,
#    /etc/passwd and /etc/group naming uid/gid 65532 `nonroot` (as distroless does), /tmp, and
#    /LICENSE. No shell, no package manager, nothing else.
# 3. Its config from the Dockerfile's final stage (one source for both ways of building):
#    ENTRYPOINT, CMD, USER, EXPOSE and LABEL, plus the labels only a build knows:
#    org.opencontainers.image.version (Cargo.toml's), .source (its `repository`), .revision (the
#    git commit, when there is one) and .created (the commit's time, so two builds of one commit
#    give the same config).
# 4. The layout packed as an OCI archive (`oci-archive:` to skopeo): OUT, tagged with the crate
#    version (`oci-archive:OUT:0.1.0`; the index's org.opencontainers.image.ref.name).
#
# Push it: skopeo copy oci-archive:target/promfed-image.tar:0.1.0 docker://REGISTRY/promfed:0.1.0
# Load it into containerd: ctr -n k8s.io images import --base-name ghcr.io/promfed/promfed OUT
#
# Env: PROMFED_IMAGE_BIN (a static promfed binary to use instead of building one).
# Needs: cargo, umoci, python3, readelf (binutils), tar.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/target/promfed-image.tar}
TARGET=x86_64-unknown-linux-gnu

say() { printf 'image: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

for t in umoci python3 readelf tar; do
    command -v "$t" >/dev/null || die "needs $t (scripts/test-deps.sh installs it)"
done
START=$(now)

# --- the binary --------------------------------------------------------------------------
if [ -n "${PROMFED_IMAGE_BIN:-}" ]; then
    BIN=$PROMFED_IMAGE_BIN
else
    # --target keeps the flag off build scripts and proc macros (which cannot be static) and
    # puts the binary in target/$TARGET/, apart from the usual dynamic one.
    say "cargo build --release --target $TARGET (static)"
    (cd "$ROOT" && CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --bin promfed --target "$TARGET" -q) || die "cargo build failed"
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release/promfed
fi
[ -x "$BIN" ] || die "no promfed binary at $BIN"
if readelf -d "$BIN" 2>/dev/null | grep -q '(NEEDED)' || readelf -l "$BIN" | grep -q 'INTERP'; then
    die "$BIN is linked dynamically ($(readelf -d "$BIN" | grep NEEDED | tr -s ' ' | tr '\n' ' ')): the image carries no libraries"
fi

# --- what the image says about itself -----------------------------------------------------
META=$(cd "$ROOT" && cargo metadata --no-deps --format-version 1 --offline) || die "cargo metadata failed"
read -r VERSION REPOSITORY < <(python3 -c '
import json, sys
p = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "promfed"][0]
print(p["version"], p.get("repository") or "")
' <<<"$META")
[ -n "$REPOSITORY" ] || die "Cargo.toml names no repository (the image's source label)"
REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || true)
# The commit's time, else 1970: a fixed time, never the build's.
EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# The Dockerfile's final stage, as umoci arguments, one per line (exec-form JSON; LABEL pairs
# split as a shell would: the Dockerfile's own syntax).
mapfile -t CONFIG_ARGS < <(python3 - "$ROOT/Dockerfile" <<'EOF'
import json, shlex, sys

lines, cur = [], ""
for raw in open(sys.argv[1]):
    s = raw.rstrip("\n")
    if not cur and (s.lstrip().startswith("#") or not s.strip()):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    lines.append((cur + s).strip())
    cur = ""
stage = []
for l in lines:
    word = l.split(None, 1)[0].upper()
    if word == "FROM":
        stage = []
    stage.append((word, l.split(None, 1)[1] if " " in l else ""))
seen = set()
for word, rest in stage:
    if word in ("ENTRYPOINT", "CMD"):
        args = json.loads(rest)
        if not isinstance(args, list):
            sys.exit(f"{word} is not in exec form")
        flag = "--config." + word.lower()
        for a in args:
            print(f"{flag}={a}")
        seen.add(word)
    elif word == "USER":
        print(f"--config.user={rest}")
        seen.add(word)
    elif word == "EXPOSE":
        for p in rest.split():
            print(f"--config.exposedports={p if '/' in p else p + '/tcp'}")
    elif word == "LABEL":
        for pair in shlex.split(rest):
            print(f"--config.label={pair}")
missing = {"ENTRYPOINT", "CMD", "USER"} - seen
if missing:
    sys.exit(f"the Dockerfile's final stage has no {', '.join(sorted(missing))}")
EOF
) || die "could not read the Dockerfile"
[ "${#CONFIG_ARGS[@]}" -gt 0 ] || die "nothing read from the Dockerfile"

# --- the layout --------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/promfed-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOTFS=$WORK/rootfs
LAYOUT=$WORK/oci
mkdir -p "$ROOTFS/etc" "$ROOTFS/tmp"
install -m 0755 "$BIN" "$ROOTFS/promfed"
install -m 0644 "$ROOT/LICENSE" "$ROOTFS/LICENSE"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$ROOTFS/etc/group"
chmod 0644 "$ROOTFS/etc/passwd" "$ROOTFS/etc/group"
chmod 1777 "$ROOTFS/tmp"
# Same bytes in, same layer out: fixed times and owners.
find "$ROOTFS" -exec touch -h -d "@$EPOCH" {} +
chown -R 0:0 "$ROOTFS" 2>/dev/null || true

TAG=$VERSION
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:$TAG"
umoci insert --image "$LAYOUT:$TAG" --history.created "$CREATED" --history.created_by "scripts/image.sh" \
    --history.comment "promfed $VERSION" "$ROOTFS" /
umoci config --image "$LAYOUT:$TAG" --created "$CREATED" --author "promfed" \
    --os linux --architecture amd64 --clear=config.env --clear=config.cmd --clear=config.entrypoint \
    --config.workingdir / "${CONFIG_ARGS[@]}" \
    --config.label "org.opencontainers.image.version=$VERSION" \
    --config.label "org.opencontainers.image.source=$REPOSITORY" \
    --config.label "org.opencontainers.image.created=$CREATED" \
    ${REVISION:+--config.label "org.opencontainers.image.revision=$REVISION"} \
    --no-history
umoci gc --layout "$LAYOUT"

mkdir -p "$(dirname "$OUT")"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" -C "$LAYOUT" \
    -cf "$OUT.tmp" oci-layout index.json blobs
mv "$OUT.tmp" "$OUT"
say "$OUT: promfed $VERSION (oci-archive:$OUT:$TAG), $(du -h "$OUT" | cut -f1), in $(since "$START")"
