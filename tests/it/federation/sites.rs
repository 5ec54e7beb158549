//! The federation test's clusters: their names, the numbers each cluster's exporter serves
//! (scaled per cluster), the rule outputs computed by hand from them, and the exporter itself,
//! a thread serving fixed text expositions.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// The clusters and their exporters' numbers

/// One cluster of the set-up: its name and the scale of its exporter's numbers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Site {
    pub(super) name: &'static str,
    pub(super) scale: f64,
    pub(super) node: &'static str,
}

pub(super) const LOCAL: Site = Site {
    name: "local",
    scale: 1.0,
    node: "tools-node-0",
};
pub(super) const WORKLOAD_A: Site = Site {
    name: "workload-a",
    scale: 2.0,
    node: "a-node-0",
};
pub(super) const WORKLOAD_B: Site = Site {
    name: "workload-b",
    scale: 3.0,
    node: "b-node-0",
};
pub(super) const SITES: [Site; 3] = [LOCAL, WORKLOAD_A, WORKLOAD_B];

/// The federation jobs promfed generates from `federation/promfed.yaml`: the raw one (the seed's
/// job name) for workload-a, `federate-` + name for the compact one.
pub(super) const FEDERATION_JOBS: [(&str, &str); 2] = [
    ("federation", "workload-a"),
    ("federate-workload-b", "workload-b"),
];

/// The tools Prometheus's local jobs (`federation/tools-prometheus.yml`).
pub(super) const LOCAL_JOBS: [&str; 6] = [
    "prometheus",
    "kubernetes-apiservers",
    "kubernetes-nodes-cadvisor",
    "kube-state-metrics",
    "node-exporter",
    "promfed",
];

/// The jobs of each workload's Prometheus (`federation/workload-*-prometheus.yml`).
pub(super) const WORKLOAD_JOBS: [&str; 5] = [
    "prometheus",
    "kubernetes-apiservers",
    "kubernetes-nodes-cadvisor",
    "kube-state-metrics",
    "node-exporter",
];

/// `node_cpu_seconds_total{cpu, mode}`: seconds per unit of scale.
pub(super) const NODE_CPU: &[(&str, &str, f64)] = &[
    ("0", "idle", 1000.0),
    ("0", "user", 200.0),
    ("1", "idle", 1100.0),
    ("1", "user", 300.0),
    ("1", "system", 50.0),
];
pub(super) const MEM_TOTAL_BYTES: f64 = 16e9;
/// `node_memory_MemAvailable_bytes` per unit of scale.
pub(super) const MEM_AVAILABLE_BYTES: f64 = 2e9;
/// `apiserver_request_total{code, resource, verb}`: requests per unit of scale.
pub(super) const API_REQUESTS: &[(&str, &str, &str, f64)] = &[
    ("200", "pods", "GET", 1000.0),
    ("200", "pods", "LIST", 500.0),
    ("201", "pods", "POST", 100.0),
    ("404", "configmaps", "GET", 30.0),
    ("500", "pods", "GET", 7.0),
];
/// `apiserver_request_duration_seconds_bucket{verb="GET"}`: (le, count per unit of scale, fixed
/// count). Not proportional to the scale, so each cluster's quantiles differ.
pub(super) const GET_BUCKETS: &[(&str, f64, f64)] = &[
    ("0.1", 10.0, 0.0),
    ("0.5", 10.0, 30.0),
    ("1", 10.0, 50.0),
    ("+Inf", 10.0, 60.0),
];

/// A text exposition being written.
#[derive(Default)]
pub(super) struct Exposition(String);

impl Exposition {
    pub(super) fn family(&mut self, name: &str, kind: &str) {
        self.0.push_str(&format!("# TYPE {name} {kind}\n"));
    }

    pub(super) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        if labels.is_empty() {
            self.0.push_str(&format!("{name} {value}\n"));
        } else {
            self.0
                .push_str(&format!("{name}{{{}}} {value}\n", labels.join(",")));
        }
    }
}

/// What the exporter of `site` serves at `path` (one path per scrape job), or None (404).
pub(super) fn exposition(site: Site, path: &str) -> Option<String> {
    let k = site.scale;
    let node = site.node;
    let mut out = Exposition::default();
    match path {
        "/metrics/node" => {
            out.family("node_cpu_seconds_total", "counter");
            for (cpu, mode, per) in NODE_CPU {
                out.sample(
                    "node_cpu_seconds_total",
                    &[("cpu", cpu), ("mode", mode)],
                    per * k,
                );
            }
            out.family("node_memory_MemTotal_bytes", "gauge");
            out.sample("node_memory_MemTotal_bytes", &[], MEM_TOTAL_BYTES);
            out.family("node_memory_MemAvailable_bytes", "gauge");
            out.sample(
                "node_memory_MemAvailable_bytes",
                &[],
                MEM_AVAILABLE_BYTES * k,
            );
        }
        "/metrics/apiserver" => {
            out.family("apiserver_request_total", "counter");
            for (code, resource, verb, per) in API_REQUESTS {
                out.sample(
                    "apiserver_request_total",
                    &[("code", code), ("resource", resource), ("verb", verb)],
                    per * k,
                );
            }
            out.family("apiserver_request_duration_seconds", "histogram");
            let get = [("resource", "pods"), ("scope", "resource"), ("verb", "GET")];
            for (le, per, fixed) in GET_BUCKETS {
                let mut labels = get.to_vec();
                labels.push(("le", le));
                out.sample(
                    "apiserver_request_duration_seconds_bucket",
                    &labels,
                    per * k + fixed,
                );
            }
            let get_count = GET_BUCKETS
                .last()
                .map_or(0.0, |(_, per, fixed)| per * k + fixed);
            out.sample(
                "apiserver_request_duration_seconds_sum",
                &get,
                0.3 * get_count,
            );
            out.sample("apiserver_request_duration_seconds_count", &get, get_count);
            let post = [
                ("resource", "pods"),
                ("scope", "resource"),
                ("verb", "POST"),
            ];
            for (le, count) in [("0.1", 20.0), ("1", 90.0), ("+Inf", 100.0)] {
                let mut labels = post.to_vec();
                labels.push(("le", le));
                out.sample(
                    "apiserver_request_duration_seconds_bucket",
                    &labels,
                    count * k,
                );
            }
            out.sample("apiserver_request_duration_seconds_sum", &post, 25.0 * k);
            out.sample("apiserver_request_duration_seconds_count", &post, 100.0 * k);
            let queue = [("name", "APIServiceRegistrationController")];
            out.family("workqueue_adds_total", "counter");
            out.sample("workqueue_adds_total", &queue, 40.0 * k);
            out.family("workqueue_depth", "gauge");
            out.sample("workqueue_depth", &queue, k);
            out.family("workqueue_queue_duration_seconds", "histogram");
            for (le, count) in [("0.001", 10.0), ("0.01", 30.0), ("+Inf", 40.0)] {
                let mut labels = queue.to_vec();
                labels.push(("le", le));
                out.sample(
                    "workqueue_queue_duration_seconds_bucket",
                    &labels,
                    count * k,
                );
            }
            out.sample("workqueue_queue_duration_seconds_sum", &queue, 0.2 * k);
            out.sample("workqueue_queue_duration_seconds_count", &queue, 40.0 * k);
            out.family("process_resident_memory_bytes", "gauge");
            out.sample("process_resident_memory_bytes", &[], 1e8 * k);
            out.family("process_cpu_seconds_total", "counter");
            out.sample("process_cpu_seconds_total", &[], 12.5 * k);
            out.family("go_goroutines", "gauge");
            out.sample("go_goroutines", &[], 100.0 * k);
        }
        "/metrics/cadvisor" => {
            let host = ("kubernetes_io_hostname", node);
            out.family("machine_cpu_cores", "gauge");
            out.sample("machine_cpu_cores", &[host], 4.0 * k);
            out.family("machine_memory_bytes", "gauge");
            out.sample("machine_memory_bytes", &[host], MEM_TOTAL_BYTES);
            // The node itself, a pod's container, a systemd service, a container outside
            // Kubernetes: the kinds of cgroup the TKG dashboard tells apart.
            let containers: [&[(&str, &str)]; 4] = [
                &[("id", "/"), host],
                &[
                    ("id", "/kubepods/burstable/pod-web-0/nginx"),
                    ("image", "nginx:1.25"),
                    ("name", "k8s_nginx_web-0_default_0"),
                    ("container", "nginx"),
                    ("container_name", "nginx"),
                    ("pod", "web-0"),
                    ("pod_name", "web-0"),
                    ("namespace", "default"),
                    host,
                ],
                &[("id", "/system.slice/kubelet.service"), host],
                &[
                    ("id", "/docker/registry"),
                    ("image", "registry:2"),
                    ("name", "registry"),
                    host,
                ],
            ];
            let families = [
                ("container_cpu_usage_seconds_total", "counter", 1000.0),
                ("container_memory_working_set_bytes", "gauge", 5e8),
                ("container_network_receive_bytes_total", "counter", 7e6),
                ("container_network_transmit_bytes_total", "counter", 3e6),
            ];
            for (name, kind, per) in families {
                out.family(name, kind);
                for (i, labels) in containers.iter().enumerate() {
                    out.sample(name, labels, per * k / (i + 1) as f64);
                }
            }
            let root = [("device", "/dev/sda1"), ("id", "/"), host];
            out.family("container_fs_usage_bytes", "gauge");
            out.sample("container_fs_usage_bytes", &root, 2e10 * k);
            out.family("container_fs_limit_bytes", "gauge");
            out.sample("container_fs_limit_bytes", &root, 1e11);
        }
        "/metrics/kube-state-metrics" => {
            let pods = [
                ("default", "web-0", "Running"),
                ("batch", "job-1", "Pending"),
            ];
            out.family("kube_pod_info", "gauge");
            for (namespace, pod, _) in pods {
                out.sample(
                    "kube_pod_info",
                    &[("namespace", namespace), ("pod", pod), ("node", node)],
                    1.0,
                );
            }
            out.family("kube_pod_status_phase", "gauge");
            for (namespace, pod, phase) in pods {
                for p in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
                    out.sample(
                        "kube_pod_status_phase",
                        &[("namespace", namespace), ("pod", pod), ("phase", p)],
                        if p == phase { 1.0 } else { 0.0 },
                    );
                }
            }
        }
        _ => return None,
    }
    Some(out.0)
}

/// Prometheus's `histogram_quantile` on one set of cumulative buckets (upper bound, count),
/// sorted, the last one `+Inf`: linear interpolation inside the bucket the rank falls in.
pub(super) fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
    let total = buckets.last().expect("buckets").1;
    let rank = q * total;
    let i = buckets
        .iter()
        .position(|(_, count)| *count >= rank)
        .expect("rank within the total");
    if i == buckets.len() - 1 {
        return buckets[i - 1].0;
    }
    let (lower, below) = if i == 0 { (0.0, 0.0) } else { buckets[i - 1] };
    let (upper, count) = buckets[i];
    lower + (upper - lower) * (rank - below) / (count - below)
}

/// What a rule of `federation/demo_rules.yml` records in `site`, computed from the exporter's
/// numbers: the output's labels (`mode="idle"`, or "" for none) -> value.
pub(super) fn expected(record: &str, site: Site) -> BTreeMap<String, f64> {
    let k = site.scale;
    let mut out = BTreeMap::new();
    match record {
        "mode:node_cpu_seconds:sum" => {
            for (_, mode, per) in NODE_CPU {
                *out.entry(format!("mode=\"{mode}\"")).or_default() += per * k;
            }
        }
        "cluster:node_memory_available:ratio" => {
            out.insert(String::new(), MEM_AVAILABLE_BYTES * k / MEM_TOTAL_BYTES);
        }
        "code:apiserver_request_total:sum" => {
            for (code, _, _, per) in API_REQUESTS {
                *out.entry(format!("code=\"{code}\"")).or_default() += per * k;
            }
        }
        "cluster:apiserver_request_duration_seconds:p50" => {
            let buckets: Vec<(f64, f64)> = GET_BUCKETS
                .iter()
                .map(|(le, per, fixed)| (le.parse().expect("le"), per * k + fixed))
                .collect();
            out.insert(String::new(), bucket_quantile(0.5, &buckets));
        }
        "cluster:node_cpu_seconds:sum" => {
            out.insert(
                String::new(),
                NODE_CPU.iter().map(|(_, _, per)| per * k).sum(),
            );
        }
        other => panic!("no expected values for rule {other}"),
    }
    out
}

/// The demo rules, in file order (checked against what workload-b loaded).
pub(super) const DEMO_RECORDS: [&str; 5] = [
    "mode:node_cpu_seconds:sum",
    "cluster:node_memory_available:ratio",
    "code:apiserver_request_total:sum",
    "cluster:apiserver_request_duration_seconds:p50",
    "cluster:node_cpu_seconds:sum",
];

// ---------------------------------------------------------------------------------------
// Exporter: a thread serving fixed text expositions

/// The exporter of one cluster, on its own loopback port; stopped when dropped.
pub(super) struct Exporter {
    pub(super) addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    pub(super) fn start(site: Site) -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("exporter listener");
        let addr = listener.local_addr().expect("exporter address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    std::thread::spawn(move || answer_scrape(site, stream));
                }
            }
        });
        Exporter {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop up so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(super) fn answer_scrape(site: Site, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let (status, body) = match exposition(site, path) {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", "not found\n".to_string()),
    };
    let mut stream = &stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
