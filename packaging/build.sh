#!/usr/bin/env bash
# Builds promfed's Carvel package from packaging/config (the ytt templates and their
# #@data/values-schema), the dashboards and the chart's appVersion:
#
#   packaging/build.sh [--image REPO@sha256:DIGEST] [--out DIR] [--bundle REF] [--inline] [--package FILE|-]
#
#   DIR (default packaging/bundle, gitignored): the imgpkg bundle's files: config/ (the
#       templates, dashboards/*.json) and, with --image, .imgpkg/images.yml, the image lock
#       naming the pushed promfed image by digest (`docker push` prints it), which the Package's
#       kbld step resolves the Deployment's image with. Publish it with
#       `imgpkg push -b REF -f DIR`.
#   FILE (default packaging/package.yaml): the Package. Its valuesSchema is
#       `ytt -f config/schema.yaml --data-values-schema-inspect -o openapi-v3`; its fetch the
#       bundle REF (default ghcr.io/promfed/promfed-package:VERSION) or, with --inline, the
#       bundle's files themselves (no registry: a PackageInstall works from the Package alone).
#
# Needs ytt (scripts/build-tools.sh builds it). packaging/package.yaml is committed: rerun this
# script (no arguments) after changing config/schema.yaml; tests/it/package.rs checks it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=packaging/build.sh
die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}
usage() {
    sed -n '2,22s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

IMAGE= OUT=$ROOT/packaging/bundle BUNDLE= INLINE=0 PACKAGE=$ROOT/packaging/package.yaml
while [ $# -gt 0 ]; do
    case "$1" in
        --image) [ $# -ge 2 ] || usage; IMAGE=$2; shift 2 ;;
        --out) [ $# -ge 2 ] || usage; OUT=$2; shift 2 ;;
        --bundle) [ $# -ge 2 ] || usage; BUNDLE=$2; shift 2 ;;
        --inline) INLINE=1; shift ;;
        --package) [ $# -ge 2 ] || usage; PACKAGE=$2; shift 2 ;;
        -h | --help) usage ;;
        *) printf '%s: unknown argument: %s\n' "$PROG" "$1" >&2; usage ;;
    esac
done
command -v ytt >/dev/null || die "needs ytt on PATH (scripts/build-tools.sh; . DIR/env of scripts/kube-local.sh)"

VERSION=$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2 }' "$ROOT/charts/promfed/Chart.yaml")
[ -n "$VERSION" ] || die "no appVersion in charts/promfed/Chart.yaml"
BUNDLE=${BUNDLE:-ghcr.io/promfed/promfed-package:$VERSION}
REPO=$(ytt -f "$ROOT/packaging/config/schema.yaml" --data-values-inspect -o json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["image"]["repository"])')
if [ -n "$IMAGE" ]; then
    [[ $IMAGE =~ ^[^@]+@sha256:[0-9a-f]{64}$ ]] || die "--image $IMAGE: want REPOSITORY@sha256:<64 hex digits>"
fi

# --- the bundle -------------------------------------------------------------------------
rm -rf "$OUT"
mkdir -p "$OUT/config/dashboards"
cp "$ROOT"/packaging/config/*.yaml "$ROOT"/packaging/config/*.star "$OUT/config/"
cp "$ROOT"/dashboards/*.json "$OUT/config/dashboards/"
if [ -n "$IMAGE" ]; then
    mkdir -p "$OUT/.imgpkg"
    # kbld finds the templates' image (REPOSITORY:VERSION) by its id and writes the digest.
    cat >"$OUT/.imgpkg/images.yml" <<YAML
apiVersion: imgpkg.carvel.dev/v1alpha1
kind: ImagesLock
images:
- image: $IMAGE
  annotations:
    kbld.carvel.dev/id: $REPO:$VERSION
YAML
fi

# --- the Package ------------------------------------------------------------------------
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
ytt -f "$ROOT/packaging/config/schema.yaml" --data-values-schema-inspect -o openapi-v3 >"$TMP/openapi.yaml"
{
    printf 'version: "%s"\nbundle: "%s"\n' "$VERSION" "$BUNDLE"
    # kbld: a published bundle always carries the image lock; an inline one only with --image.
    if [ "$INLINE" = 0 ] || [ -n "$IMAGE" ]; then echo "kbld: true"; else echo "kbld: false"; fi
    if [ "$INLINE" = 1 ]; then
        # Each file as a JSON string, which is a YAML double-quoted one.
        python3 - "$OUT" <<'PY'
import json, os, sys
root = sys.argv[1]
files = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
print("inline:")
for f in files:
    with open(os.path.join(root, f), encoding="utf-8") as text:
        print(f"  {json.dumps(f)}: {json.dumps(text.read())}")
PY
    else
        echo "inline: null"
    fi
} >"$TMP/values.yaml"
printf '#@data/values\n---\nversion: ""\nbundle: ""\nkbld: false\ninline: null\n' >"$TMP/defaults.yaml"
out=$(ytt -f "$ROOT/packaging/package-template.yaml" -f "$TMP/defaults.yaml" \
    --data-values-file "$TMP/values.yaml" --data-value-file "openapi=$TMP/openapi.yaml")
if [ "$PACKAGE" = - ]; then
    printf '%s\n' "$out"
else
    printf '%s\n' "$out" >"$PACKAGE"
fi
