//! The rewrite's meaning, checked on a real Prometheus: a recording rule rewritten by promfed and
//! evaluated over local + federated series gives exactly what the original rule gives over the
//! local series alone.
//!
//! Two `prometheus` servers (Debian's 2.42, and in a second test Prometheus 3.x) are started on loopback ports, each on a TSDB built
//! by `promtool tsdb create-blocks-from openmetrics` from 30 minutes of synthetic series:
//!
//! - `local`: only the tools cluster's own series, labelled `cluster="local"` (what the scrape
//!   relabel rule gives them);
//! - `federated`: the same local series plus copies from workload clusters `w1` and `w2`, with
//!   other values and a few series of their own (what the tools Prometheus holds once it
//!   federates).
//!
//! For every expression of [`ROWS`] and three evaluation times, `/api/v1/query` must give the
//! same (labels, value) set for the original expression on `local` and the rewritten one on
//! `federated`. Results are compared as the recorded series would be stored: with the rule's
//! `cluster: local` label applied, since `absent()` takes its labels from equality matchers and
//! so adds `cluster="local"` only on the rewritten side. A negative control shows the federated
//! series change the result of every original expression, so none of the checks is vacuous.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promfed::yaml::{self, Limits};
use promfed::{Config, Engine};
use serde_json::Value;

use crate::support::prometheus::{self, Prometheus};
use crate::support::{self, describe, read_data, require};

/// One expression: a name (the record is `semantic:<name>`), the PromQL, and for an expression
/// copied from the corpus the rule file it comes from (the test checks that it is there).
struct Row {
    name: &'static str,
    expr: &'static str,
    source: Option<&'static str>,
}

const fn row(name: &'static str, expr: &'static str) -> Row {
    Row {
        name,
        expr,
        source: None,
    }
}

const fn corpus(name: &'static str, source: &'static str, expr: &'static str) -> Row {
    Row {
        name,
        expr,
        source: Some(source),
    }
}

/// Every expression of [`ROWS`], for the parser's differential tests (`support::expressions`).
pub(crate) fn expressions() -> impl Iterator<Item = &'static str> {
    ROWS.iter().map(|r| r.expr)
}

const TKG: &str = "tkg/recording_rules.yml";
const KP_CONTROL_PLANE: &str = "rules/kube-prometheus-main/kubernetesControlPlane.rules.yaml";
const KP_GENERAL: &str = "rules/kube-prometheus-main/kubePrometheus.rules.yaml";
const KP_NODE: &str = "rules/kube-prometheus-main/nodeExporter.rules.yaml";

const ROWS: &[Row] = &[
    // Counters.
    row("rate", "rate(http_requests_total[5m])"),
    row("irate", r#"irate(http_requests_total{code="500"}[5m])"#),
    row(
        "increase",
        r#"increase(http_requests_total{method="GET"}[10m])"#,
    ),
    // Aggregations.
    row(
        "sum_by",
        "sum by (job, code) (rate(http_requests_total[5m]))",
    ),
    row(
        "sum_without",
        "sum without (instance, method) (rate(http_requests_total[5m]))",
    ),
    row("avg", "avg(node_memory_MemTotal_bytes)"),
    row("count", "count(up == 1)"),
    row("stddev", "stddev(temperature_celsius)"),
    row("group", "group by (namespace, pod) (kube_pod_info)"),
    row(
        "count_values",
        r#"count_values("value", kube_pod_status_phase)"#,
    ),
    row(
        "topk_scalar",
        r#"topk(scalar(count(up{job="api"})), rate(http_requests_total[5m]))"#,
    ),
    row(
        "bottomk_scalar",
        r#"bottomk(scalar(count(up{job="node-exporter"})), rate(node_cpu_seconds_total[5m]))"#,
    ),
    row(
        "quantile",
        r#"quantile(0.9, rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#,
    ),
    row(
        "quantile_by",
        "quantile by (sensor) (0.5, temperature_celsius)",
    ),
    row(
        "sort_desc",
        r#"sort_desc(sum by (namespace) (kube_pod_container_resource_requests{resource="cpu"}))"#,
    ),
    // Histograms.
    row(
        "histogram_quantile",
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    row(
        "histogram_quantile_by_job",
        r#"histogram_quantile(0.5, sum by (job, le) (rate(http_request_duration_seconds_bucket{job="api"}[10m])))"#,
    ),
    row(
        "mean_latency",
        "sum(rate(http_request_duration_seconds_sum[5m])) / sum(rate(http_request_duration_seconds_count[5m]))",
    ),
    // Vector matching.
    row(
        "on",
        r#"rate(http_requests_total{code="500"}[5m]) / on (job, instance, method) rate(http_requests_total{code="200"}[5m])"#,
    ),
    row(
        "ignoring_group_left",
        "sum by (instance) (rate(http_requests_total[5m])) / ignoring (instance) group_left sum(rate(http_requests_total[5m]))",
    ),
    row(
        "ignoring_empty_group_left",
        "node_memory_Cached_bytes * ignoring() group_left node_memory_MemTotal_bytes",
    ),
    row(
        "group_left_labels",
        "sum by (namespace, pod) (rate(container_cpu_usage_seconds_total[5m])) * on (namespace, pod) group_left (node) kube_pod_info",
    ),
    // Names promql-parser reserves and Prometheus does not (the dialect layer's placeholders).
    row(
        "keyword_label_names",
        "sum by (job, anchored) (rate(http_requests_total[5m])) / on (job, smoothed) group_left sum by (job) (up)",
    ),
    row(
        "or_label_name",
        r#"sum by (job) (rate(http_requests_total{or ="", code="500"}[5m]))"#,
    ),
    row("bool", "rate(http_requests_total[5m]) > bool 0.5"),
    row("bool_sum", "sum by (instance) (up == bool 1)"),
    // Set operators and fallbacks.
    row(
        "or_vector0",
        r#"sum(rate(http_requests_total{code="503"}[5m])) or vector(0)"#,
    ),
    row(
        "and",
        r#"rate(http_requests_total[5m]) and on (instance) (up{job="api"} == 1)"#,
    ),
    row(
        "unless",
        r#"up unless on (job, instance) (rate(http_requests_total{code="500"}[5m]) > 0.5)"#,
    ),
    row("absent", r#"absent(remote_only_metric{job="api"})"#),
    row(
        "absent_over_time",
        "absent_over_time(remote_only_metric[5m])",
    ),
    // Functions, subqueries, offsets.
    row(
        "label_replace",
        r#"label_replace(rate(http_requests_total[5m]), "host", "$1", "instance", "(.*)-[0-9]+")"#,
    ),
    row(
        "subquery",
        "max_over_time(rate(http_requests_total[5m])[10m:1m])",
    ),
    row("offset", "rate(http_requests_total[5m] offset 5m)"),
    row(
        "offset_delta",
        "http_requests_total - http_requests_total offset 10m",
    ),
    row("max_over_time", "max_over_time(temperature_celsius[10m])"),
    row("deriv", "deriv(temperature_celsius[10m])"),
    row(
        "predict_linear",
        "predict_linear(node_memory_MemAvailable_bytes[10m], 3600)",
    ),
    row(
        "clamp_max",
        "clamp_max(rate(node_cpu_seconds_total[5m]), 0.5)",
    ),
    // Real rules of the corpus, verbatim.
    corpus(
        "tkg_burnrate5m_read",
        TKG,
        r#"(
  (
    # too slow
    sum(rate(apiserver_request_duration_seconds_count{job="kubernetes-apiservers",verb=~"LIST|GET"}[5m]))
    -
    (
      (
        sum(rate(apiserver_request_duration_seconds_bucket{job="kubernetes-apiservers",verb=~"LIST|GET",scope=~"resource|",le="0.1"}[5m]))
        or
        vector(0)
      )
      +
      sum(rate(apiserver_request_duration_seconds_bucket{job="kubernetes-apiservers",verb=~"LIST|GET",scope="namespace",le="0.5"}[5m]))
      +
      sum(rate(apiserver_request_duration_seconds_bucket{job="kubernetes-apiservers",verb=~"LIST|GET",scope="cluster",le="5"}[5m]))
    )
  )
  +
  # errors
  sum(rate(apiserver_request_total{job="kubernetes-apiservers",verb=~"LIST|GET",code=~"5.."}[5m]))
)
/
sum(rate(apiserver_request_total{job="kubernetes-apiservers",verb=~"LIST|GET"}[5m]))"#,
    ),
    corpus(
        "tkg_code_resource_rate5m",
        TKG,
        r#"sum by (code,resource) (rate(apiserver_request_total{job="kubernetes-apiservers",verb=~"LIST|GET"}[5m]))"#,
    ),
    corpus(
        "tkg_histogram_quantile",
        TKG,
        r#"histogram_quantile(0.99, sum by (le, resource) (rate(apiserver_request_duration_seconds_bucket{job="kubernetes-apiservers",verb=~"LIST|GET"}[5m]))) > 0"#,
    ),
    corpus(
        "tkg_mean5m",
        TKG,
        r#"sum(rate(apiserver_request_duration_seconds_sum{subresource!="log",verb!~"LIST|WATCH|WATCHLIST|DELETECOLLECTION|PROXY|CONNECT"}[5m])) without(instance, pod)
/
sum(rate(apiserver_request_duration_seconds_count{subresource!="log",verb!~"LIST|WATCH|WATCHLIST|DELETECOLLECTION|PROXY|CONNECT"}[5m])) without(instance, pod)"#,
    ),
    corpus(
        "kp_instance_node_cpu_ratio",
        KP_GENERAL,
        r#"sum(rate(node_cpu_seconds_total{mode!="idle",mode!="iowait",mode!="steal"}[5m])) WITHOUT (cpu, mode) / ON(instance) GROUP_LEFT() count(sum(node_cpu_seconds_total) BY (instance, cpu)) BY (instance)"#,
    ),
    corpus(
        "kp_count_up1",
        KP_GENERAL,
        "count without(instance, pod, node) (up == 1)",
    ),
    corpus(
        "kp_node_cpu_utilisation",
        KP_NODE,
        r#"1 - avg without (cpu) (
  sum without (mode) (rate(node_cpu_seconds_total{job="node-exporter", mode=~"idle|iowait|steal"}[5m]))
)"#,
    ),
    corpus(
        "kp_node_memory_utilisation",
        KP_NODE,
        r#"1 - (
  (
    node_memory_MemAvailable_bytes{job="node-exporter"}
    or
    (
      node_memory_Buffers_bytes{job="node-exporter"}
      +
      node_memory_Cached_bytes{job="node-exporter"}
      +
      node_memory_MemFree_bytes{job="node-exporter"}
      +
      node_memory_Slab_bytes{job="node-exporter"}
    )
  )
/
  node_memory_MemTotal_bytes{job="node-exporter"}
)"#,
    ),
    corpus(
        "kp_container_cpu_sum_irate",
        KP_CONTROL_PLANE,
        r#"sum by (cluster, namespace, pod, container) (
  irate(container_cpu_usage_seconds_total{job="kubelet", metrics_path="/metrics/cadvisor", image!=""}[5m])
) * on (cluster, namespace, pod) group_left(node) topk by (cluster, namespace, pod) (
  1, max by(cluster, namespace, pod, node) (kube_pod_info{node!=""})
)"#,
    ),
    corpus(
        "kp_node_namespace_pod_info",
        KP_CONTROL_PLANE,
        r#"topk by(cluster, namespace, pod) (1,
  max by (cluster, node, namespace, pod) (
    label_replace(kube_pod_info{job="kube-state-metrics",node!=""}, "pod", "$1", "pod", "(.*)")
))"#,
    ),
    corpus(
        "kp_namespace_cpu_requests",
        KP_CONTROL_PLANE,
        r#"sum by (namespace, cluster) (
    sum by (namespace, pod, cluster) (
        max by (namespace, pod, container, cluster) (
          kube_pod_container_resource_requests{resource="cpu",job="kube-state-metrics"}
        ) * on(namespace, pod, cluster) group_left() max by (namespace, pod, cluster) (
          kube_pod_status_phase{phase=~"Pending|Running"} == 1
        )
    )
)"#,
    ),
    corpus(
        "kp_memory_available_sum",
        KP_CONTROL_PLANE,
        r#"sum(
  node_memory_MemAvailable_bytes{job="node-exporter"} or
  (
    node_memory_Buffers_bytes{job="node-exporter"} +
    node_memory_Cached_bytes{job="node-exporter"} +
    node_memory_MemFree_bytes{job="node-exporter"} +
    node_memory_Slab_bytes{job="node-exporter"}
  )
) by (cluster)"#,
    ),
    corpus(
        "kp_node_cpu_utilization",
        KP_CONTROL_PLANE,
        r#"avg by (cluster, node) (
  sum without (mode) (
    rate(node_cpu_seconds_total{mode!="idle",mode!="iowait",mode!="steal",job="node-exporter"}[5m])
  )
)"#,
    ),
];

// ---------------------------------------------------------------------------------------
// Synthetic series

/// Seconds between samples, and samples after the first: 30 minutes of history.
const STEP: i64 = 15;
const STEPS: i64 = 120;

/// Clusters and how much their values differ from the local ones (counters grow `scale` times
/// faster, histograms lean towards slower buckets, gauges are `scale` times larger).
const CLUSTERS: &[(&str, f64)] = &[("local", 1.0), ("w1", 2.5), ("w2", 4.0)];

#[derive(Clone, Copy)]
enum Kind {
    /// Grows by `per_second`; restarts from zero at step `reset`, if any.
    Counter { per_second: f64, reset: Option<i64> },
    /// A histogram bucket (or `_count` with `fraction` 1): the counter times `fraction^scale`.
    Bucket { per_second: f64, fraction: f64 },
    /// `base * scale` plus a sine wave.
    Gauge { base: f64, amplitude: f64 },
    /// A value that neither changes over time nor scales (info metrics, `up`, phases).
    Constant(f64),
}

const fn counter(per_second: f64) -> Kind {
    Kind::Counter {
        per_second,
        reset: None,
    }
}

const fn gauge(base: f64, amplitude: f64) -> Kind {
    Kind::Gauge { base, amplitude }
}

const fn bucket(per_second: f64, fraction: f64) -> Kind {
    Kind::Bucket {
        per_second,
        fraction,
    }
}

struct Series {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    kind: Kind,
}

/// A number in [0, 1) that differs between series, so rates and gauges are not all alike.
fn spread(name: &str, labels: &[(&str, &str)]) -> f64 {
    // FNV-1a: stable across runs and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let text = labels.iter().fold(name.to_string(), |mut s, (k, v)| {
        let _ = write!(s, ",{k}={v}");
        s
    });
    for byte in text.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash % 1000) as f64 / 1000.0
}

/// The series of one cluster, being built.
#[derive(Default)]
struct Builder(Vec<Series>);

impl Builder {
    fn add(&mut self, name: &'static str, labels: &[(&'static str, &str)], kind: Kind) {
        self.0.push(Series {
            name,
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            kind,
        });
    }

    /// A counter growing by `low + width * spread` per second.
    fn counter(
        &mut self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        low: f64,
        width: f64,
    ) {
        self.add(name, labels, counter(low + width * spread(name, labels)));
    }

    /// A histogram: `_bucket` series for `buckets` (le, share of requests), `_count`, `_sum`.
    fn histogram(
        &mut self,
        [bucket_name, count_name, sum_name]: [&'static str; 3],
        labels: &[(&'static str, &str)],
        per_second: f64,
        buckets: &[(&'static str, f64)],
    ) {
        for &(le, fraction) in buckets {
            let mut with_le = labels.to_vec();
            with_le.push(("le", le));
            self.add(bucket_name, &with_le, bucket(per_second, fraction));
        }
        self.add(count_name, labels, bucket(per_second, 1.0));
        self.add(sum_name, labels, counter(per_second * 0.3));
    }
}

/// The series of one cluster. Workload clusters (`remote`) have the local ones plus a few of
/// their own; `up` differs too (one local API instance is down).
fn cluster_series(remote: bool) -> Vec<Series> {
    let mut b = Builder::default();
    for instance in ["api-0", "api-1"] {
        let api = [("job", "api"), ("instance", instance)];
        for method in ["GET", "POST"] {
            for code in ["200", "500"] {
                let mut labels = api.to_vec();
                labels.extend([("method", method), ("code", code)]);
                let per_second = 0.1 + 2.0 * spread("http_requests_total", &labels);
                // A restarted process: rate() must handle the reset the same on both sides.
                let reset = (instance == "api-1" && code == "500").then_some(80);
                let kind = Kind::Counter { per_second, reset };
                b.add("http_requests_total", &labels, kind);
            }
        }
        b.histogram(
            [
                "http_request_duration_seconds_bucket",
                "http_request_duration_seconds_count",
                "http_request_duration_seconds_sum",
            ],
            &api,
            1.0 + 3.0 * spread("http_request_duration_seconds", &api),
            &[
                ("0.05", 0.2),
                ("0.1", 0.45),
                ("0.5", 0.8),
                ("1", 0.93),
                ("+Inf", 1.0),
            ],
        );
        let down = instance == "api-1" && !remote;
        b.add("up", &api, Kind::Constant(if down { 0.0 } else { 1.0 }));
    }
    if remote {
        let labels = [
            ("job", "api"),
            ("instance", "api-0"),
            ("method", "GET"),
            ("code", "503"),
        ];
        b.add("http_requests_total", &labels, counter(0.7));
        b.add("remote_only_metric", &[("job", "api")], gauge(3.0, 1.0));
    }

    let gib = 1024.0 * 1024.0 * 1024.0;
    for (i, instance) in ["node-0:9100", "node-1:9100"].into_iter().enumerate() {
        let node = [("job", "node-exporter"), ("instance", instance)];
        b.add("up", &node, Kind::Constant(1.0));
        for cpu in ["0", "1"] {
            for mode in ["idle", "iowait", "system", "user"] {
                let mut labels = node.to_vec();
                labels.extend([("cpu", cpu), ("mode", mode)]);
                b.counter("node_cpu_seconds_total", &labels, 0.05, 0.9);
            }
        }
        let total = (8 << i) as f64 * gib;
        b.add("node_memory_MemTotal_bytes", &node, gauge(total, 0.0));
        // node-1 has no MemAvailable locally (an old kernel): the `or` fallbacks take over.
        if i == 0 || remote {
            let kind = gauge(total * 0.4, 0.2 * gib);
            b.add("node_memory_MemAvailable_bytes", &node, kind);
        }
        for (name, share) in [
            ("node_memory_Buffers_bytes", 0.05),
            ("node_memory_Cached_bytes", 0.2),
            ("node_memory_MemFree_bytes", 0.1),
            ("node_memory_Slab_bytes", 0.03),
        ] {
            b.add(name, &node, gauge(total * share, 0.01 * gib));
        }
    }
    for (i, sensor) in ["s1", "s2", "s3"].into_iter().enumerate() {
        let kind = gauge(40.0 + 10.0 * i as f64, 5.0);
        b.add("temperature_celsius", &[("sensor", sensor)], kind);
    }

    let mut pods = vec![
        ("default", "web-0", "node-0", "Running"),
        ("default", "web-1", "node-1", "Running"),
        ("kube-system", "coredns-0", "node-1", "Pending"),
    ];
    if remote {
        pods.push(("default", "web-2", "node-0", "Running"));
    }
    for (namespace, pod, node, phase) in pods {
        let ksm = [
            ("job", "kube-state-metrics"),
            ("namespace", namespace),
            ("pod", pod),
        ];
        let mut info = ksm.to_vec();
        info.extend([("node", node), ("created_by_kind", "StatefulSet")]);
        b.add("kube_pod_info", &info, Kind::Constant(1.0));
        for p in ["Pending", "Running", "Succeeded"] {
            let mut labels = ksm.to_vec();
            labels.push(("phase", p));
            let value = if p == phase { 1.0 } else { 0.0 };
            b.add("kube_pod_status_phase", &labels, Kind::Constant(value));
        }
        for (resource, unit, base) in [("cpu", "core", 0.25), ("memory", "byte", 2.5e8)] {
            let mut labels = ksm.to_vec();
            labels.extend([
                ("container", "app"),
                ("resource", resource),
                ("unit", unit),
                ("node", node),
            ]);
            b.add(
                "kube_pod_container_resource_requests",
                &labels,
                gauge(base, 0.0),
            );
        }
        // The app container and the pause container (no image: the corpus rules drop it).
        for (container, image) in [("app", "example.com/app:1.0"), ("POD", "")] {
            let labels = [
                ("job", "kubelet"),
                ("metrics_path", "/metrics/cadvisor"),
                ("namespace", namespace),
                ("pod", pod),
                ("container", container),
                ("image", image),
            ];
            b.counter("container_cpu_usage_seconds_total", &labels, 0.01, 0.5);
        }
    }

    let apiserver = [
        ("job", "kubernetes-apiservers"),
        ("instance", "10.0.0.1:6443"),
    ];
    for resource in ["pods", "nodes"] {
        for verb in ["GET", "LIST", "POST"] {
            for code in ["200", "500"] {
                let mut labels = apiserver.to_vec();
                labels.extend([("verb", verb), ("code", code), ("resource", resource)]);
                // Mostly successes: the burn rates stay realistic.
                let (low, width) = if code == "200" {
                    (2.5, 5.0)
                } else {
                    (0.15, 0.3)
                };
                b.counter("apiserver_request_total", &labels, low, width);
            }
        }
        for (verb, scope) in [
            ("GET", "resource"),
            ("LIST", "namespace"),
            ("LIST", "cluster"),
            ("POST", "resource"),
        ] {
            let mut labels = apiserver.to_vec();
            labels.extend([("verb", verb), ("resource", resource), ("scope", scope)]);
            b.histogram(
                [
                    "apiserver_request_duration_seconds_bucket",
                    "apiserver_request_duration_seconds_count",
                    "apiserver_request_duration_seconds_sum",
                ],
                &labels,
                1.0 + 4.0 * spread("apiserver_request_duration_seconds", &labels),
                &[
                    ("0.1", 0.3),
                    ("0.5", 0.6),
                    ("1", 0.8),
                    ("5", 0.995),
                    ("+Inf", 1.0),
                ],
            );
        }
    }
    b.0
}

fn value(kind: Kind, scale: f64, step: i64, phase: f64) -> f64 {
    let elapsed = (step * STEP) as f64;
    match kind {
        Kind::Counter { per_second, reset } => match reset {
            Some(at) if step >= at => per_second * scale * ((step - at) * STEP) as f64,
            _ => per_second * scale * elapsed,
        },
        // Floor to whole requests so buckets stay cumulative (bucket <= next bucket).
        Kind::Bucket {
            per_second,
            fraction,
        } => (per_second * scale * elapsed * fraction.powf(scale)).floor(),
        Kind::Gauge { base, amplitude } => {
            base * scale + amplitude * (step as f64 * 0.21 + phase * 6.0).sin()
        }
        Kind::Constant(v) => v,
    }
}

/// An OpenMetrics text of `clusters`, samples from `start` every [`STEP`] seconds. Each
/// metric family's series are together and each series' samples in time order, as the format
/// requires.
fn openmetrics(clusters: &[(&str, f64)], start: i64) -> String {
    let mut lines: BTreeMap<&str, String> = BTreeMap::new();
    for &(cluster, scale) in clusters {
        for s in cluster_series(cluster != "local") {
            let pairs: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let phase = spread(s.name, &pairs);
            let mut labels = format!("cluster=\"{cluster}\"");
            for (k, v) in &s.labels {
                let _ = write!(labels, ",{k}=\"{v}\"");
            }
            let family = lines.entry(s.name).or_default();
            for step in 0..=STEPS {
                let v = value(s.kind, scale, step, phase);
                let _ = writeln!(family, "{}{{{labels}}} {v} {}", s.name, start + step * STEP);
            }
        }
    }
    let mut text: String = lines.into_values().collect();
    text.push_str("# EOF\n");
    text
}

// ---------------------------------------------------------------------------------------
// A Prometheus server for the test

/// A `prometheus` process serving a TSDB on a loopback port (`support::prometheus`); stopped
/// when dropped, also when the test panics, before its directory goes.
struct Server {
    name: &'static str,
    prometheus: Prometheus,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Build a TSDB from `openmetrics` with promtool and start Prometheus on it.
    fn start(name: &'static str, prometheus: &Path, promtool: &Path, openmetrics: &str) -> Server {
        let dir = support::temp_files(&[
            ("series.om", openmetrics),
            // No scrape configs: the server only answers queries.
            ("prometheus.yml", "global:\n  evaluation_interval: 1m\n"),
        ]);
        let data = dir.path().join("data");
        let out = support::run(
            promtool,
            &[
                OsStr::new("tsdb"),
                OsStr::new("create-blocks-from"),
                OsStr::new("openmetrics"),
                OsStr::new("--quiet"),
                dir.path().join("series.om").as_os_str(),
                data.as_os_str(),
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{name}: promtool tsdb create-blocks-from openmetrics failed\n{}",
            describe(&out)
        );
        let listen = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
        Server {
            name,
            prometheus: Prometheus::start(prometheus, name, dir.path(), listen, None),
            _dir: dir,
        }
    }

    /// Wait until it is ready; Err if the process exits or the deadline passes.
    fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        self.prometheus
            .try_wait_ready(deadline.saturating_duration_since(Instant::now()))
    }

    fn log_tail(&self) -> String {
        self.prometheus.log_tail(15)
    }

    /// An instant query's result as recorded series: (labels with the rule's `cluster: local`,
    /// value), or the error Prometheus (or the rule evaluation) would report.
    fn query(&self, expr: &str, time: i64) -> Result<Sample, String> {
        let path = format!(
            "/api/v1/query?query={}&time={time}",
            prometheus::url_encode(expr)
        );
        let (status, body) = prometheus::http_get(self.prometheus.addr, &path, None)
            .map_err(|e| format!("GET {path}: {e}"))?;
        let body = String::from_utf8_lossy(&body);
        let json: Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if json["status"] != "success" {
            return Err(format!("{}: {}", json["errorType"], json["error"]));
        }
        let data = &json["data"];
        assert_eq!(
            data["resultType"], "vector",
            "{}: recording rules give vectors: {expr}",
            self.name
        );
        let mut out = Sample::new();
        for item in data["result"].as_array().expect("result is a list") {
            let mut labels: BTreeMap<String, String> = item["metric"]
                .as_object()
                .expect("metric is an object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_string()))
                .collect();
            labels.remove("__name__");
            labels.insert("cluster".into(), "local".into());
            let text = item["value"][1].as_str().expect("sample value is a string");
            let value: f64 = text
                .parse()
                .unwrap_or_else(|_| panic!("sample value {text:?}"));
            let key = format!("{labels:?}");
            if out.insert(key.clone(), value).is_some() {
                // What Prometheus says when it evaluates such a rule.
                return Err(format!(
                    "vector contains metrics with the same labelset after applying rule labels: {key}"
                ));
            }
        }
        Ok(out)
    }
}

/// Labels (as text) to value.
type Sample = BTreeMap<String, f64>;

/// Start `openmetrics`' servers, retrying on another port if one loses its port to a race.
fn start_all(prometheus: &Path, promtool: &Path, specs: [(&'static str, &str); 2]) -> [Server; 2] {
    let deadline = Instant::now() + support::HANG_GUARD;
    let mut servers = specs.map(|(name, om)| Server::start(name, prometheus, promtool, om));
    for (server, (name, om)) in servers.iter_mut().zip(specs) {
        let mut attempts = 1;
        while let Err(e) = server.wait_ready(deadline) {
            let bind_error = server.log_tail().contains("address already in use");
            if !bind_error || attempts == 3 {
                panic!(
                    "prometheus {name}: {e}; its log ends with:\n{}",
                    server.log_tail()
                );
            }
            attempts += 1;
            *server = Server::start(name, prometheus, promtool, om);
        }
    }
    servers
}

// ---------------------------------------------------------------------------------------
// The rules

/// The rule file of [`ROWS`]; expressions as JSON strings, which are YAML double-quoted scalars.
fn rule_file() -> String {
    let mut text = String::from("groups:\n- name: semantic\n  rules:\n");
    for row in ROWS {
        let _ = writeln!(text, "  - record: semantic:{}", row.name);
        let _ = writeln!(
            text,
            "    expr: {}",
            serde_json::to_string(row.expr).unwrap()
        );
    }
    text
}

/// `record` -> (expr, labels) of a rule file.
fn rules_of(text: &str) -> BTreeMap<String, (String, Value)> {
    let root = yaml::parse(text, Limits::default())
        .expect("rule file parses")
        .expect("rule file is not empty")
        .to_json();
    let mut out = BTreeMap::new();
    for group in root["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let record = rule["record"].as_str().expect("record").to_string();
            let expr = rule["expr"].as_str().expect("expr").to_string();
            out.insert(record, (expr, rule["labels"].clone()));
        }
    }
    out
}

/// Lines trimmed, blank lines dropped: corpus exprs are copied without their YAML indentation.
fn normalize(expr: &str) -> String {
    expr.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn corpus_rows_are_verbatim() {
    for row in ROWS {
        let Some(source) = row.source else { continue };
        let root = yaml::parse(&read_data(source), Limits::default())
            .expect("corpus file parses")
            .expect("corpus file is not empty")
            .to_json();
        let found = root["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().expect("rules"))
            .filter_map(|r| r["expr"].as_str())
            .any(|expr| normalize(expr) == normalize(row.expr));
        assert!(found, "row {}: expression not found in {source}", row.name);
    }
}

fn same(a: &Sample, b: &Sample) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((ka, va), (kb, vb))| {
            ka == kb
                && ((va.is_nan() && vb.is_nan())
                    || va == vb
                    || (va - vb).abs() <= 1e-9 * va.abs().max(vb.abs()).max(1.0))
        })
}

fn show(result: &Result<Sample, String>) -> String {
    match result {
        Ok(sample) if sample.is_empty() => "(empty)".into(),
        Ok(sample) => sample
            .iter()
            .map(|(k, v)| format!("  {k} {v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn rewritten_rules_on_federated_data_equal_original_rules_on_local_data() {
    let release = require!(prometheus2_release);
    semantic_check(&release);
}

#[test]
fn rewritten_rules_on_federated_data_equal_original_rules_on_local_data_on_prometheus_3() {
    let release = require!(prometheus3_release);
    semantic_check(&release);
}

/// The whole check on one Prometheus release: its promtool builds the TSDBs and checks the
/// rule files, its server answers the queries.
fn semantic_check(release: &support::PrometheusRelease) {
    let started = Instant::now();
    let prometheus = release.server.clone();
    let promtool = release.promtool.clone();

    // Rewrite the rules as the webhook would.
    let original = rule_file();
    let engine = Engine::new(Config::from_yaml("localClusterName: local\n").unwrap()).unwrap();
    let rewrite = engine
        .rewrite(&[("recording_rules.yml".into(), original.clone())])
        .expect("rules rewrite");
    assert_eq!(rewrite.stats.rules_rewritten, ROWS.len());
    let rewritten_text = &rewrite.data[0].1;
    let rewritten = rules_of(rewritten_text);
    for (file, text) in [
        ("original.yml", &original),
        ("rewritten.yml", rewritten_text),
    ] {
        let out = support::run_promtool_with(&promtool, &["check", "rules", file], &[(file, text)]);
        assert!(
            out.status.success(),
            "{}: promtool check rules {file}\n{}",
            release.name,
            describe(&out)
        );
    }

    // The data: history up to a minute ago, so every sample is in the past.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = (now - 60) / STEP * STEP;
    let start = end - STEPS * STEP;
    let [local, federated] = start_all(
        &prometheus,
        &promtool,
        [
            ("local", &openmetrics(&CLUSTERS[..1], start)),
            ("federated", &openmetrics(CLUSTERS, start)),
        ],
    );
    let times = [end, end - 7 * 60, end - 13 * 60];

    let mut failures = Vec::new();
    let mut failed = Vec::new();
    let mut polluted = Vec::new();
    let mut report = String::new();
    for row in ROWS {
        let record = format!("semantic:{}", row.name);
        let (scoped, labels) = &rewritten[&record];
        assert_eq!(
            labels["cluster"], "local",
            "{record}: the rewritten rule carries cluster: local"
        );
        assert_ne!(scoped, row.expr, "{record}: the expression was scoped");
        let mut series = 0;
        let mut differs = false;
        let failures_before = failures.len();
        for &time in &times {
            let want = local.query(row.expr, time);
            let got = federated.query(scoped, time);
            let unscoped = federated.query(row.expr, time);
            match (&want, &got) {
                (Ok(w), Ok(g)) if same(w, g) && !w.is_empty() => series += w.len(),
                (Ok(w), Ok(_)) if w.is_empty() => failures.push(format!(
                    "{record} at {time}: the original gives no series on local data, a weak \
                     check; change the data or the expression\n{}",
                    row.expr
                )),
                _ => failures.push(format!(
                    "{record} at {time}:\noriginal on local data:\n{}\n{}\nrewritten on \
                     federated data:\n{}\n{}",
                    row.expr,
                    show(&want),
                    scoped,
                    show(&got)
                )),
            }
            differs |= match (&want, &unscoped) {
                (Ok(w), Ok(u)) => !same(w, u),
                _ => true,
            };
        }
        if failures.len() > failures_before {
            failed.push(row.name);
        }
        if differs {
            polluted.push(row.name);
        }
        let _ = writeln!(
            report,
            "{:<30} {:>3} series  original on federated data: {}",
            row.name,
            series,
            if differs { "differs" } else { "same" }
        );
    }
    drop((local, federated));
    println!("{report}");
    assert!(
        failures.is_empty(),
        "{}: {} of {} expressions fail ({failed:?}), in {} evaluations:\n\n{}",
        release.name,
        failed.len(),
        ROWS.len(),
        failures.len(),
        failures.join("\n\n")
    );
    // The negative control: without scoping, the federated series change every result (the
    // data is built so; a row they don't change would prove nothing).
    assert_eq!(
        polluted.len(),
        ROWS.len(),
        "some original expressions give the same result on federated data; give them data \
         the workload clusters change (changed: {polluted:?})"
    );
    println!(
        "{}: {} expressions, {} evaluation times, {} changed by federated series without scoping; {:.1?}",
        release.name,
        ROWS.len(),
        times.len(),
        polluted.len(),
        started.elapsed()
    );
}
