#!/usr/bin/env bash
# Makes the Grafana dashboards a chart manages multi-cluster, as ConfigMaps of your own: every
# dashboard of the ConfigMaps SELECTOR picks in NAMESPACE (kube-prometheus-stack's:
# `app=kube-prometheus-stack-grafana,grafana_dashboard=1`) through `promfed dashboard`, then
# one ConfigMap per dashboard, labelled for the dashboard sidecars, by
# scripts/dashboards-configmaps.sh. A `helm upgrade` overwrites the chart's own ConfigMaps;
# these are not the chart's, so switch its dashboards off (kube-prometheus-stack:
# `grafana.defaultDashboardsEnabled=false`) and apply these instead (docs/install.md,
# "Dashboards a chart manages").
#
#   scripts/chart-dashboards.sh NAMESPACE SELECTOR OUT.yaml
#
# Needs kubectl (the current context) and promfed (`$PROMFED`, else `promfed` on PATH).
# promfed's own dashboards (`app.kubernetes.io/name=promfed`) are left out, so running this
# again after applying its output converts the chart's dashboards only.
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROG=${0##*/}
promfed=${PROMFED:-promfed}
die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit 1
}
[ $# -eq 3 ] || { printf 'usage: %s NAMESPACE SELECTOR OUT.yaml\n' "$PROG" >&2; exit 2; }
namespace=$1 selector=$2 out=$3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/chart" "$work/out"
mapfile -t configmaps < <(kubectl get configmap -n "$namespace" \
    -l "$selector,app.kubernetes.io/name!=promfed" -o name)
[ "${#configmaps[@]}" -gt 0 ] || die "no ConfigMap in $namespace matches $selector"
for configmap in "${configmaps[@]}"; do
    # Each data key is a dashboard; go-template prints keys and values as they are stored.
    mapfile -t keys < <(kubectl get -n "$namespace" "$configmap" \
        -o go-template='{{range $k, $v := .data}}{{$k}}{{"\n"}}{{end}}')
    for key in "${keys[@]}"; do
        case $key in
            *.json) ;;
            *) printf '%s: %s: %s is not a dashboard (*.json), skipped\n' "$PROG" "$configmap" "$key" >&2; continue ;;
        esac
        [ ! -e "$work/out/$key" ] || die "two ConfigMaps hold a dashboard $key"
        # The chart's file under its key, so that promfed's warnings name it.
        mkdir -p "$work/chart/${configmap#configmap/}"
        source=$work/chart/${configmap#configmap/}/$key
        kubectl get -n "$namespace" "$configmap" -o go-template="{{index .data \"$key\"}}" >"$source"
        "$promfed" dashboard "$source" >"$work/out/$key" || die "$configmap: $key: promfed dashboard failed"
    done
done
"$ROOT/scripts/dashboards-configmaps.sh" --dir "$work/out" --out "$out"
