//! Issue 6: real federation end to end, three Prometheus servers configured only by promfed.
//!
//! All on loopback, started and stopped by the test: two workload clusters' Prometheus servers
//! (workload-a behind mTLS with certificates from `certs/generate.sh federation`, and hostile:
//! `external_labels: {cluster: local}`; workload-b behind basic auth) and the tools cluster's,
//! whose `prometheus-server` ConfigMap goes through `promfed serve` as an AdmissionReview over
//! TLS. The patched ConfigMap's files are all the tools Prometheus gets (only `rule_files` is
//! pointed at the temporary directory). Then the test asks it: every series carries its own
//! cluster, recording rules read local series only, the workloads' rule outputs arrive with their
//! cluster, the dashboards in `dashboards/` answer for every cluster, and a stopped workload
//! raises `FederationTargetDown`. `promfed render` must give the same ConfigMap as the webhook.
//!
//! Every cluster has a tiny exporter: a thread serving fixed text expositions whose numbers are
//! scaled per cluster, so rule outputs differ per cluster and are computed by hand here. The
//! fixtures are in `tests/data/federation/` (its SOURCES.md says what each file is).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use promfed::promql::{for_each_node, selectors};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, VectorSelector};
use regex::Regex;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};

use crate::support;

// ---------------------------------------------------------------------------------------
// The clusters and their exporters' numbers

/// One cluster of the set-up: its name and the scale of its exporter's numbers.
#[derive(Debug, Clone, Copy)]
struct Site {
    name: &'static str,
    scale: f64,
    node: &'static str,
}

const LOCAL: Site = Site {
    name: "local",
    scale: 1.0,
    node: "tools-node-0",
};
const WORKLOAD_A: Site = Site {
    name: "workload-a",
    scale: 2.0,
    node: "a-node-0",
};
const WORKLOAD_B: Site = Site {
    name: "workload-b",
    scale: 3.0,
    node: "b-node-0",
};
const SITES: [Site; 3] = [LOCAL, WORKLOAD_A, WORKLOAD_B];

/// The federation jobs promfed generates from `federation/promfed.yaml`: the raw one (the seed's
/// job name) for workload-a, `federate-` + name for the compact one.
const FEDERATION_JOBS: [(&str, &str); 2] = [
    ("federation", "workload-a"),
    ("federate-workload-b", "workload-b"),
];

/// The tools Prometheus's local jobs (`federation/tools-prometheus.yml`).
const LOCAL_JOBS: [&str; 6] = [
    "prometheus",
    "kubernetes-apiservers",
    "kubernetes-nodes-cadvisor",
    "kube-state-metrics",
    "node-exporter",
    "promfed",
];

/// The jobs of each workload's Prometheus (`federation/workload-*-prometheus.yml`).
const WORKLOAD_JOBS: [&str; 5] = [
    "prometheus",
    "kubernetes-apiservers",
    "kubernetes-nodes-cadvisor",
    "kube-state-metrics",
    "node-exporter",
];

/// The name the webhook's serving certificate (certs/generate.sh, defaults) is issued for.
const WEBHOOK_NAME: &str = "promfed.promfed-system.svc";

/// `node_cpu_seconds_total{cpu, mode}`: seconds per unit of scale.
const NODE_CPU: &[(&str, &str, f64)] = &[
    ("0", "idle", 1000.0),
    ("0", "user", 200.0),
    ("1", "idle", 1100.0),
    ("1", "user", 300.0),
    ("1", "system", 50.0),
];
const MEM_TOTAL_BYTES: f64 = 16e9;
/// `node_memory_MemAvailable_bytes` per unit of scale.
const MEM_AVAILABLE_BYTES: f64 = 2e9;
/// `apiserver_request_total{code, resource, verb}`: requests per unit of scale.
const API_REQUESTS: &[(&str, &str, &str, f64)] = &[
    ("200", "pods", "GET", 1000.0),
    ("200", "pods", "LIST", 500.0),
    ("201", "pods", "POST", 100.0),
    ("404", "configmaps", "GET", 30.0),
    ("500", "pods", "GET", 7.0),
];
/// `apiserver_request_duration_seconds_bucket{verb="GET"}`: (le, count per unit of scale, fixed
/// count). Not proportional to the scale, so each cluster's quantiles differ.
const GET_BUCKETS: &[(&str, f64, f64)] = &[
    ("0.1", 10.0, 0.0),
    ("0.5", 10.0, 30.0),
    ("1", 10.0, 50.0),
    ("+Inf", 10.0, 60.0),
];

/// A text exposition being written.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str) {
        self.0.push_str(&format!("# TYPE {name} {kind}\n"));
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
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
fn exposition(site: Site, path: &str) -> Option<String> {
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
fn bucket_quantile(q: f64, buckets: &[(f64, f64)]) -> f64 {
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
fn expected(record: &str, site: Site) -> BTreeMap<String, f64> {
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
const DEMO_RECORDS: [&str; 5] = [
    "mode:node_cpu_seconds:sum",
    "cluster:node_memory_available:ratio",
    "code:apiserver_request_total:sum",
    "cluster:apiserver_request_duration_seconds:p50",
    "cluster:node_cpu_seconds:sum",
];

// ---------------------------------------------------------------------------------------
// Exporter: a thread serving fixed text expositions

/// The exporter of one cluster, on its own loopback port; stopped when dropped.
struct Exporter {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Exporter {
    fn start(site: Site) -> Exporter {
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

fn answer_scrape(site: Site, stream: TcpStream) {
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

// ---------------------------------------------------------------------------------------
// Processes: killed and waited for when dropped, their log shown when the test fails

struct Process {
    name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

fn collect_lines(pipe: impl std::io::Read + Send + 'static, log: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            log.lock().unwrap().push(line);
        }
    });
}

impl Process {
    fn spawn(name: &str, command: &mut Command) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stdout.take().expect("stdout"), log.clone());
        collect_lines(child.stderr.take().expect("stderr"), log.clone());
        Process {
            name: name.to_string(),
            child,
            log,
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(lines)..].join("\n")
    }

    /// The first log line `found` accepts; fails when the process exits first or time runs out.
    fn wait_for_line<T>(&mut self, within: Duration, found: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(hit) = self.log.lock().unwrap().iter().find_map(|l| found(l)) {
                return hit;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_tail(60)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {within:?}:\n{}",
                self.name,
                self.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for Prometheus's "ready" log line.
    fn wait_prometheus_ready(&mut self) {
        self.wait_for_line(support::HANG_GUARD, |line| {
            line.contains("Server is ready to receive web requests")
                .then_some(())
        });
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "--- last log lines of {}:\n{}",
                self.name,
                self.log_tail(25)
            );
        }
    }
}

/// Start a Prometheus (Debian's 2.42 or a 3.x) on `dir/prometheus.yml`, its TSDB in `dir/data`.
fn start_prometheus(
    binary: &Path,
    name: &str,
    dir: &Path,
    listen: SocketAddr,
    web_config: Option<&Path>,
) -> Process {
    let mut command = Command::new(binary);
    command
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={listen}"));
    if let Some(web_config) = web_config {
        command.arg(format!("--web.config.file={}", web_config.display()));
    }
    Process::spawn(name, &mut command)
}

/// `N` distinct free loopback ports (bound together, then released for the servers to take).
fn free_ports<const N: usize>() -> [SocketAddr; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("port"))
}

// ---------------------------------------------------------------------------------------
// HTTP: plain HTTP/1.0 for Prometheus's API (no chunking), rustls for the TLS peers

/// (status, body) of a complete HTTP/1.x response (Content-Length, chunked, or up to EOF).
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let mut rest = &raw[end + 4..];
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let line = rest.windows(2).position(|w| w == b"\r\n")?;
            let size = std::str::from_utf8(&rest[..line]).ok()?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[line + 2..];
            if size == 0 {
                return Some((status, body));
            }
            body.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
    }
    match header("content-length") {
        Some(length) => Some((status, rest.get(..length.parse().ok()?)?.to_vec())),
        None => Some((status, rest.to_vec())),
    }
}

fn http_get(
    addr: SocketAddr,
    target: &str,
    authorization: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(tcp, "GET {target} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n")?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw)?;
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::other(format!("incomplete response from {addr}")))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A rustls client trusting `ca_pem`, presenting `identity` (cert, key PEM) when given.
fn tls_client(ca_pem: &str, identity: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("client certificate PEM"),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("client key PEM"),
            )
            .expect("client identity"),
    };
    Arc::new(config)
}

/// Send `request` over TLS to `addr`, verifying the server as `name`; (status, body).
fn https(
    config: &Arc<rustls::ClientConfig>,
    name: &str,
    addr: SocketAddr,
    request: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let name = ServerName::try_from(name.to_string()).map_err(std::io::Error::other)?;
    let tls = rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    stream.write_all(request)?;
    stream.flush()?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer that closes without close_notify; the response may still be complete.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e),
    }
    parse_response(&raw).ok_or_else(|| std::io::Error::other("incomplete response"))
}

/// One sample of an instant query.
#[derive(Debug, Clone)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// The labels other than `__name__`, `cluster`, `job` and `instance`, as `k="v",...`.
    fn key(&self) -> String {
        self.labels
            .iter()
            .filter(|(k, _)| !["__name__", "cluster", "job", "instance"].contains(&k.as_str()))
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn sample_value(value: &Value) -> f64 {
    value[1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a sample value: {value}"))
}

/// Prometheus's HTTP API.
struct Api {
    addr: SocketAddr,
    authorization: Option<String>,
}

impl Api {
    /// `data` of a successful API answer, or what went wrong.
    fn try_data(&self, target: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.addr, target, self.authorization.as_deref())
            .map_err(|e| format!("GET {target}: {e}"))?;
        let json: Value = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "GET {target}: {status}, {e}: {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        if status != 200 || json["status"] != "success" {
            return Err(format!("GET {target}: {status} {json}"));
        }
        Ok(json["data"].clone())
    }

    fn data(&self, target: &str) -> Value {
        self.try_data(target).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let data = self.try_data(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        let labels = |metric: &Value| -> BTreeMap<String, String> {
            metric
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        };
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| Sample {
                    labels: labels(&s["metric"]),
                    value: sample_value(&s["value"]),
                })
                .collect()),
            Some("scalar") => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: sample_value(&data["result"]),
            }]),
            other => Err(format!("{expr}: unexpected result type {other:?}")),
        }
    }

    fn query(&self, expr: &str) -> Vec<Sample> {
        self.try_query(expr).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The label sets of the series `selector` matches (any time).
    fn series(&self, selector: &str) -> Result<Vec<BTreeMap<String, String>>, String> {
        let data = self.try_data(&format!("/api/v1/series?match[]={}", url_encode(selector)))?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                s.as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .collect())
    }
}

/// Poll `probe` until it gives a value; fail with its last complaint at the deadline.
fn wait_until<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; last: {last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures and files

/// A fixture with its `${NAME}` placeholders filled in; an unknown placeholder is an error.
fn fill(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    assert!(
        !out.contains("${"),
        "a placeholder is left in the fixture:\n{out}"
    );
    out
}

fn write(path: &Path, contents: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("creating a directory");
    }
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn run_ok(program: &Path, args: &[&OsStr]) -> Vec<u8> {
    let out = support::run(program, args, None);
    assert!(
        out.status.success(),
        "{} {args:?}\n{}",
        program.display(),
        support::describe(&out)
    );
    out.stdout
}

/// An AdmissionReview (`admission.k8s.io/v1`) as the API server sends it for a CREATE.
fn admission_review(uid: &str, object: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "requestKind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "requestResource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": object,
            "oldObject": null,
            "dryRun": false
        }
    })
}

/// Every document of a YAML stream, read by PyYAML (a reader that is not promfed's).
fn yaml_documents(python: &Path, text: &str) -> Vec<Value> {
    const SCRIPT: &str = "import json, sys, yaml\njson.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)";
    let out = support::run(python, &["-c".as_ref(), SCRIPT.as_ref()], Some(text));
    assert!(out.status.success(), "{}", support::describe(&out));
    serde_json::from_slice(&out.stdout).expect("PyYAML's JSON")
}

// ---------------------------------------------------------------------------------------
// PromQL: selectors and filters, with promfed's walker (its order and coverage are tested in
// the promql module)

/// Whether an expression may be empty by design: it filters with a comparison (without
/// `bool`), `and` or `unless`.
fn filters(expr: &Expr) -> bool {
    let mut found = false;
    for_each_node(expr, &mut |e| {
        if let Expr::Binary(b) = e {
            let comparison = b.op.is_comparison_operator()
                && !b.modifier.as_ref().is_some_and(|m| m.return_bool);
            let set_filter = b.op.is_set_operator() && b.op.to_string() != "or";
            found |= comparison || set_filter;
        }
    });
    found
}

/// A selector as a `match[]` for the series API: `{__name__="x",a="b",...}` (no offset, no @).
fn match_selector(vs: &VectorSelector) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &vs.name
        && !vs.matchers.matchers.iter().any(|m| m.name == "__name__")
    {
        parts.push(format!("__name__=\"{name}\""));
    }
    parts.extend(vs.matchers.matchers.iter().map(ToString::to_string));
    format!("{{{}}}", parts.join(","))
}

fn parse_promql(expr: &str) -> Result<Expr, String> {
    promfed::promql::parse(expr).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// Dashboards

/// What the dashboards in `dashboards/` gave.
#[derive(Default)]
struct DashboardReport {
    /// dashboard, queries (expressions x clusters), with data, a selector absent, empty by a
    /// filter.
    rows: Vec<(String, usize, usize, usize, usize)>,
    /// dashboard -> selector (without the cluster matcher) that has no series -> clusters.
    absent: BTreeMap<String, BTreeMap<String, BTreeSet<&'static str>>>,
    /// dashboard, the cluster variable's query, the clusters it offers.
    cluster_options: Vec<(String, String, BTreeSet<String>)>,
    failures: Vec<String>,
}

impl DashboardReport {
    fn table(&self) -> String {
        let mut out = format!(
            "dashboards/*.json, every expression for each cluster ($cluster = local, \
             workload-a, workload-b)\n  {:<22} {:>7} {:>9} {:>14} {:>15}\n",
            "dashboard", "queries", "with data", "metric absent", "empty (filter)"
        );
        for (name, total, with_data, absent, filtered) in &self.rows {
            out.push_str(&format!(
                "  {name:<22} {total:>7} {with_data:>9} {absent:>14} {filtered:>15}\n"
            ));
        }
        for (name, query, options) in &self.cluster_options {
            out.push_str(&format!(
                "  {name}: the cluster variable `{query}` offers {options:?}\n"
            ));
        }
        out.push_str("  absent in the set-up (selector: clusters):\n");
        for (name, selectors) in &self.absent {
            for (selector, clusters) in selectors {
                let clusters: Vec<&str> = clusters.iter().copied().collect();
                out.push_str(&format!(
                    "    {name}: {selector}: {}\n",
                    clusters.join(", ")
                ));
            }
        }
        out
    }
}

/// Every `expr` string of a dashboard (panels, rows' panels, annotations), deduplicated.
fn dashboard_exprs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => {
                        if !expr.trim().is_empty() && !out.contains(expr) {
                            out.push(expr.clone());
                        }
                    }
                    _ => dashboard_exprs(value, out),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                dashboard_exprs(item, out);
            }
        }
        _ => {}
    }
}

/// Grafana's variables in `expr` replaced: `$cluster` by `cluster`, built-ins by the values of a
/// 5-minute dashboard, every other variable by its "All" value (`.*` without one).
fn substitute(
    expr: &str,
    cluster: &str,
    variables: &HashMap<String, String>,
) -> Result<String, String> {
    static VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)").expect("regex")
    });
    let mut unknown = Vec::new();
    let out = VARIABLE.replace_all(expr, |c: &regex::Captures| {
        let name = c
            .get(1)
            .or_else(|| c.get(2))
            .or_else(|| c.get(3))
            .map_or("", |m| m.as_str());
        let value = match name {
            // Cluster names are DNS labels: as a regex they match themselves (and a PromQL
            // string would not take regex::escape's `\-`).
            "cluster" => Some(cluster.to_string()),
            "__rate_interval" => Some("1m".into()),
            "__interval" => Some("15s".into()),
            "__interval_ms" => Some("15000".into()),
            "__range" => Some("5m".into()),
            "__range_s" => Some("300".into()),
            "__range_ms" => Some("300000".into()),
            other => variables.get(other).cloned(),
        };
        value.unwrap_or_else(|| {
            unknown.push(name.to_string());
            c[0].to_string()
        })
    });
    if unknown.is_empty() {
        Ok(out.into_owned())
    } else {
        Err(format!("unknown variables {unknown:?}"))
    }
}

/// A selector for the report: its name and matchers other than the cluster's.
fn selector_without_cluster(vs: &VectorSelector) -> String {
    let matchers: Vec<String> = vs
        .matchers
        .matchers
        .iter()
        .filter(|m| m.name != "cluster" && m.name != "__name__")
        .map(ToString::to_string)
        .collect();
    format!(
        "{}{{{}}}",
        vs.name.as_deref().unwrap_or_default(),
        matchers.join(",")
    )
}

/// Run every expression of every dashboard in `dir` for each cluster. An expression must return
/// data when each of its selectors has series in that cluster, unless it filters (a comparison,
/// `and`, `unless`); otherwise it counts as "metric absent in the set-up".
fn check_dashboards(api: &Api, dir: &Path) -> DashboardReport {
    let mut report = DashboardReport::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dashboards/")
        .map(|e| e.expect("dashboards/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut exists: HashMap<String, bool> = HashMap::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let dashboard: Value = serde_json::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut variables = HashMap::new();
        let mut cluster_variable = false;
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(var) = variable["name"].as_str() else {
                continue;
            };
            let all = variable["allValue"]
                .as_str()
                .filter(|v| !v.is_empty() && variable["includeAll"] == true);
            variables.insert(var.to_string(), all.unwrap_or(".*").to_string());
            if var != "cluster" {
                continue;
            }
            cluster_variable = true;
            // The dropdown's options: `label_values(SELECTOR, cluster)`.
            let query = variable["query"]
                .as_str()
                .or_else(|| variable["query"]["query"].as_str())
                .unwrap_or_default();
            let Some(selector) = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(", cluster)"))
            else {
                report.failures.push(format!(
                    "{name}: the cluster variable's query is not label_values(..., cluster): \
                     {query}"
                ));
                continue;
            };
            let options = api
                .series(selector)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .iter()
                .filter_map(|s| s.get("cluster").cloned())
                .collect();
            report
                .cluster_options
                .push((name.clone(), query.to_string(), options));
        }
        if !cluster_variable {
            report
                .failures
                .push(format!("{name} has no cluster variable"));
        }
        let mut exprs = Vec::new();
        dashboard_exprs(&dashboard, &mut exprs);
        let (mut total, mut with_data, mut absent, mut filtered) = (0, 0, 0, 0);
        for expr in &exprs {
            for site in SITES {
                total += 1;
                let what = format!("{name}, cluster {}: {expr}", site.name);
                let parsed = substitute(expr, site.name, &variables)
                    .and_then(|query| Ok((parse_promql(&query)?, query)));
                let (parsed, query) = match parsed {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        report.failures.push(format!("{what}: {e}"));
                        continue;
                    }
                };
                let missing: Vec<String> = selectors(&parsed)
                    .into_iter()
                    .filter(|vs| {
                        let selector = match_selector(vs);
                        !*exists.entry(selector.clone()).or_insert_with(|| {
                            !api.series(&selector)
                                .unwrap_or_else(|e| panic!("{what}: {e}"))
                                .is_empty()
                        })
                    })
                    .map(selector_without_cluster)
                    .collect();
                if !missing.is_empty() {
                    absent += 1;
                    for selector in missing {
                        report
                            .absent
                            .entry(name.clone())
                            .or_default()
                            .entry(selector)
                            .or_default()
                            .insert(site.name);
                    }
                    continue;
                }
                match api.try_query(&query) {
                    Ok(samples) if !samples.is_empty() => with_data += 1,
                    Ok(_) if filters(&parsed) => filtered += 1,
                    Ok(_) => report.failures.push(format!(
                        "{what}: no data, although every selector of `{query}` has series"
                    )),
                    Err(e) => report.failures.push(format!("{what}: {e}")),
                }
            }
        }
        report.rows.push((name, total, with_data, absent, filtered));
    }
    report
}

// ---------------------------------------------------------------------------------------
// The set-up

/// Everything the test runs, stopped when dropped: the processes first (fields drop in
/// order), then the exporters, then the files.
struct SetUp {
    _tools: Process,
    _promfed: Process,
    _workload_a: Process,
    workload_b: Process,
    exporters: Vec<Exporter>,
    /// The tools Prometheus's API, and workload-b's (with its password).
    api: Api,
    workload_b_api: Api,
    workload_a_addr: SocketAddr,
    promfed_metrics: SocketAddr,
    certs: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SetUp {
    /// Start everything: the workloads, promfed serve, the tools ConfigMap through the webhook
    /// (and `promfed render`, which must agree), the tools Prometheus on the result.
    fn start(prometheus: &Path, python: &Path) -> SetUp {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().to_path_buf();
        let generate = support::root().join("certs/generate.sh");

        // Exporters first: they keep their listeners. Then the three Prometheus ports.
        let exporters: Vec<Exporter> = SITES.iter().map(|s| Exporter::start(*s)).collect();
        let exporter = |site: Site| {
            let i = SITES.iter().position(|s| s.name == site.name).unwrap();
            exporters[i].addr
        };
        let [tools_addr, a_addr, b_addr] = free_ports::<3>();

        // Certificates as a user makes them: the federation CA, workload-a's server certificate
        // and web config, the tools side's client certificate; the webhook's serving one.
        let certs = root.join("certs");
        run_ok(
            &generate,
            &[
                "federation".as_ref(),
                certs.as_os_str(),
                "--cluster".as_ref(),
                "workload-a".as_ref(),
                "--address".as_ref(),
                a_addr.to_string().as_ref(),
            ],
        );
        let serving = root.join("serving");
        run_ok(&generate, &[serving.as_os_str()]);
        let secrets = root.join("secrets");
        let password = support::read_data("federation/basic-auth-password");
        write(&secrets.join("basic-auth-password"), password.trim());

        // The workloads: the user's recording rules plus ours, no cluster labels anywhere.
        let tkg_rules = support::read_data("tkg/recording_rules.yml");
        let demo_rules = support::read_data("federation/demo_rules.yml");
        let workload_files = |site: Site, addr: SocketAddr| -> PathBuf {
            let dir = root.join(site.name);
            write(&dir.join("recording_rules.yml"), &tkg_rules);
            write(&dir.join("demo_rules.yml"), &demo_rules);
            let template = support::read_data(format!("federation/{}-prometheus.yml", site.name));
            let config = fill(
                &template,
                &[
                    ("SELF", addr.to_string()),
                    ("EXPORTER", exporter(site).to_string()),
                    ("RULES", display(&dir)),
                    ("CERTS", display(&certs)),
                    ("SECRETS", display(&secrets)),
                ],
            );
            write(&dir.join("prometheus.yml"), &config);
            dir
        };
        let a_dir = workload_files(WORKLOAD_A, a_addr);
        // certs/generate.sh's web config names the files where the Secret is mounted.
        let a_certs = certs.join("workload/workload-a");
        let web_config = read(&a_certs.join("web.config.yml")).replace(
            "/etc/prometheus/federation/",
            &format!("{}/", a_certs.display()),
        );
        assert!(
            web_config
                .lines()
                .all(|l| l.trim_start().starts_with('#') || !l.contains("/etc/")),
            "{web_config}"
        );
        write(&a_dir.join("web.config.yml"), &web_config);
        let b_dir = workload_files(WORKLOAD_B, b_addr);
        write(
            &b_dir.join("web.config.yml"),
            &support::read_data("federation/workload-b-web-config.yml"),
        );
        let mut workload_a = start_prometheus(
            prometheus,
            "workload-a prometheus",
            &a_dir,
            a_addr,
            Some(&a_dir.join("web.config.yml")),
        );
        let mut workload_b = start_prometheus(
            prometheus,
            "workload-b prometheus",
            &b_dir,
            b_addr,
            Some(&b_dir.join("web.config.yml")),
        );

        // promfed serve, with the tools side's config.
        let promfed_config = root.join("promfed.yaml");
        let promfed_yaml = fill(
            &support::read_data("federation/promfed.yaml"),
            &[
                ("WORKLOAD_A", a_addr.to_string()),
                ("WORKLOAD_B", b_addr.to_string()),
                ("CERTS", display(&certs)),
                ("SECRETS", display(&secrets)),
            ],
        );
        write(&promfed_config, &promfed_yaml);
        let mut promfed = Process::spawn(
            "promfed serve",
            Command::new(support::promfed_bin())
                .arg("serve")
                .arg("--config")
                .arg(&promfed_config)
                .arg("--tls-cert-file")
                .arg(serving.join("tls.crt"))
                .arg("--tls-key-file")
                .arg(serving.join("tls.key"))
                .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
                .env("RUST_LOG", "info"),
        );
        let (webhook, promfed_metrics) = promfed.wait_for_line(support::HANG_GUARD, |line| {
            let log: Value = serde_json::from_str(line).ok()?;
            (log["message"] == "listening").then(|| {
                let addr = |f: &str| log[f].as_str()?.parse::<SocketAddr>().ok();
                Some((addr("https_addr")?, addr("metrics_addr")?))
            })?
        });

        // The tools cluster's ConfigMap, as the chart would install it.
        let tools_yml = fill(
            &support::read_data("federation/tools-prometheus.yml"),
            &[
                ("SELF", tools_addr.to_string()),
                ("EXPORTER", exporter(LOCAL).to_string()),
                ("PROMFED_METRICS", promfed_metrics.to_string()),
            ],
        );
        let configmap = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "prometheus-server",
                "namespace": "tanzu-system-monitoring",
                "labels": {"app": "prometheus", "component": "server"}
            },
            "data": {
                "prometheus.yml": tools_yml,
                "alerting_rules.yml": support::read_data("tkg/alerting_rules.yml"),
                "recording_rules.yml": tkg_rules,
                "demo_rules.yml": demo_rules,
            }
        });
        let ca = read(&serving.join("ca.crt"));
        let patched = through_the_webhook(&ca, webhook, &configmap);

        // promfed render makes the same ConfigMap of it (read back by PyYAML).
        let configmap_file = root.join("configmap.json");
        write(
            &configmap_file,
            &serde_json::to_string_pretty(&configmap).unwrap(),
        );
        let rendered = run_ok(
            &support::promfed_bin(),
            &[
                "render".as_ref(),
                "--config".as_ref(),
                promfed_config.as_os_str(),
                configmap_file.as_os_str(),
            ],
        );
        let rendered = yaml_documents(python, &String::from_utf8(rendered).expect("UTF-8"));
        assert_eq!(rendered.len(), 1, "promfed render wrote {rendered:?}");
        assert_eq!(
            rendered[0]["data"], patched["data"],
            "promfed render and the webhook disagree"
        );
        assert_eq!(rendered[0], patched);

        // The tools Prometheus runs on the patched ConfigMap's files; only rule_files move.
        let tools_dir = root.join("tools");
        let config_dir = tools_dir.join("config");
        for (key, value) in patched["data"].as_object().expect("data") {
            let text = value.as_str().expect("string data");
            write(&config_dir.join(key), text);
            if key == "prometheus.yml" {
                assert_eq!(text.matches("/etc/config/").count(), 3, "{text}");
                let text = text.replace("/etc/config/", &format!("{}/", config_dir.display()));
                write(&tools_dir.join("prometheus.yml"), &text);
            }
        }
        let mut tools =
            start_prometheus(prometheus, "tools prometheus", &tools_dir, tools_addr, None);
        workload_a.wait_prometheus_ready();
        workload_b.wait_prometheus_ready();
        tools.wait_prometheus_ready();

        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("federate:{}", password.trim()))
        );
        SetUp {
            _tools: tools,
            _promfed: promfed,
            _workload_a: workload_a,
            workload_b,
            exporters,
            api: Api {
                addr: tools_addr,
                authorization: None,
            },
            workload_b_api: Api {
                addr: b_addr,
                authorization: Some(basic),
            },
            workload_a_addr: a_addr,
            promfed_metrics,
            certs,
            _tmp: tmp,
        }
    }

    fn exporter(&self, site: Site) -> SocketAddr {
        let i = SITES.iter().position(|s| s.name == site.name).unwrap();
        self.exporters[i].addr
    }

    /// Wait until every target of the tools Prometheus is up and every cluster's rule outputs
    /// are there.
    fn wait_for_everything(&self) {
        // Every target: the tools' own, its federation jobs, and each workload's, federated.
        let targets = LOCAL_JOBS.len() + FEDERATION_JOBS.len() + 2 * WORKLOAD_JOBS.len();
        let records = DEMO_RECORDS.join("|");
        wait_until(
            "the tools Prometheus to have every target up three times and every cluster's rules",
            Duration::from_secs(90),
            || {
                let up = self.api.query("up");
                let down: Vec<String> = up
                    .iter()
                    .filter(|s| s.value != 1.0)
                    .map(|s| format!("{:?}", s.labels))
                    .collect();
                // rate() needs two samples: three of `up` mean three of every series of that
                // scrape (federation keeps the workloads' timestamps).
                let young: Vec<String> = self
                    .api
                    .query("count_over_time(up[1m]) < 3")
                    .iter()
                    .map(|s| format!("{}/{}", s.label("cluster"), s.label("job")))
                    .collect();
                let local = up.iter().filter(|s| s.label("cluster") == "local").count();
                let recorded: BTreeSet<(String, String)> = self
                    .api
                    .query(&format!(
                        r#"group by (cluster, __name__) ({{__name__=~"{records}"}})"#
                    ))
                    .iter()
                    .map(|s| (s.label("cluster").into(), s.label("__name__").into()))
                    .collect();
                if down.is_empty()
                    && young.is_empty()
                    && up.len() == targets
                    && local == LOCAL_JOBS.len()
                    && recorded.len() == SITES.len() * DEMO_RECORDS.len()
                {
                    Ok(())
                } else {
                    Err(format!(
                        "{} of {targets} targets ({local} local), down {down:?}, fewer than 3 \
                         samples {young:?}, rule outputs {recorded:?}",
                        up.len()
                    ))
                }
            },
        );
    }
}

/// POST an AdmissionReview of `configmap` to the webhook over TLS (verifying its certificate
/// against `ca`) and return the ConfigMap with the answer's patch applied.
fn through_the_webhook(ca: &str, webhook: SocketAddr, configmap: &Value) -> Value {
    let review = admission_review("federation-e2e", configmap);
    let body = serde_json::to_vec(&review).unwrap();
    let mut request = format!(
        "POST /mutate HTTP/1.1\r\nHost: {WEBHOOK_NAME}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let (status, answer) = https(&tls_client(ca, None), WEBHOOK_NAME, webhook, &request)
        .unwrap_or_else(|e| panic!("POST /mutate: {e}"));
    let answer: Value = serde_json::from_slice(&answer)
        .unwrap_or_else(|e| panic!("{status} {e}: {}", String::from_utf8_lossy(&answer)));
    assert_eq!(status, 200, "{answer}");
    let response = &answer["response"];
    assert_eq!(response["uid"], "federation-e2e", "{response}");
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(
            response["patch"]
                .as_str()
                .expect("patch is a base64 string"),
        )
        .expect("base64 patch");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("RFC 6902 patch");
    let mut patched = configmap.clone();
    json_patch::patch(&mut patched, &patch).expect("the patch applies to the request object");
    patched
}

// ---------------------------------------------------------------------------------------
// The checks

/// Every series carries the cluster label, with one of the three names.
fn check_cluster_labels(api: &Api) -> Vec<Sample> {
    let per_cluster = api.query(r#"count by (cluster) ({__name__=~".+"})"#);
    let clusters: BTreeSet<&str> = per_cluster.iter().map(|s| s.label("cluster")).collect();
    assert_eq!(
        clusters,
        SITES.iter().map(|s| s.name).collect::<BTreeSet<_>>(),
        "{per_cluster:?}"
    );
    let unlabelled = api.query(r#"count({__name__=~".+", cluster=""})"#);
    assert!(
        unlabelled.is_empty(),
        "series without a cluster label: {unlabelled:?}"
    );
    per_cluster
}

/// workload-a's /federate claims every series is `local`; on the tools side they carry
/// workload-a, and nothing labelled `local` comes from anywhere but the tools cluster's targets.
/// Both workloads refuse clients without their credentials.
fn check_hostile_workload(set_up: &SetUp) {
    let certs = &set_up.certs;
    let ca = read(&certs.join("ca.crt"));
    let identity = (
        read(&certs.join("tools/tls.crt")),
        read(&certs.join("tools/tls.key")),
    );
    let federate_up = format!(
        "GET /federate?match[]={} HTTP/1.0\r\nHost: prom-federation\r\n\r\n",
        url_encode("up")
    );
    let a_addr = set_up.workload_a_addr;
    let mtls = tls_client(&ca, Some((&identity.0, &identity.1)));
    let (status, body) = https(&mtls, "prom-federation", a_addr, federate_up.as_bytes())
        .expect("workload-a's /federate with the client certificate");
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cluster=\"local\""), "{body}");
    let anonymous = tls_client(&ca, None);
    if let Ok((status, body)) = https(
        &anonymous,
        "prom-federation",
        a_addr,
        federate_up.as_bytes(),
    ) {
        panic!(
            "workload-a answered without a client certificate: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, _) =
        http_get(set_up.workload_b_api.addr, "/federate?match[]=up", None).expect("workload-b");
    assert_eq!(status, 401, "workload-b answered without basic auth");

    let api = &set_up.api;
    let a_exporter = set_up.exporter(WORKLOAD_A).to_string();
    let a_series = api.query(&format!(
        r#"node_cpu_seconds_total{{instance="{a_exporter}"}}"#
    ));
    assert_eq!(a_series.len(), NODE_CPU.len(), "{a_series:?}");
    assert!(
        a_series.iter().all(|s| s.label("cluster") == "workload-a"),
        "{a_series:?}"
    );
    for addr in [a_addr.to_string(), a_exporter] {
        let clusters = api.query(&format!(r#"count by (cluster) ({{instance="{addr}"}})"#));
        let names: Vec<&str> = clusters.iter().map(|s| s.label("cluster")).collect();
        assert_eq!(names, ["workload-a"], "series of {addr}");
    }
    let local_instances: BTreeSet<String> = [
        set_up.api.addr.to_string(),
        set_up.exporter(LOCAL).to_string(),
        set_up.promfed_metrics.to_string(),
    ]
    .into();
    for sample in api.query(r#"count by (instance, job) ({cluster="local"})"#) {
        let instance = sample.label("instance");
        assert!(
            instance.is_empty() || local_instances.contains(instance),
            "a series labelled cluster=\"local\" comes from {instance} (job {}), not from the \
             tools cluster's own targets {local_instances:?}",
            sample.label("job")
        );
    }
}

/// The rules as the tools Prometheus loaded them: every recording rule (the user's and ours)
/// labelled cluster="local", every selector of its query matching cluster="local"; the
/// federation health group is there.
fn check_loaded_rules(api: &Api) {
    let groups = api.data("/api/v1/rules?type=record")["groups"].clone();
    let mut recording = 0;
    for group in groups.as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            recording += 1;
            let name = rule["name"].as_str().unwrap_or_default();
            assert_eq!(rule["labels"]["cluster"], "local", "{rule}");
            assert_ne!(rule["health"], "err", "{rule}");
            let query = rule["query"].as_str().expect("query");
            let parsed = parse_promql(query).unwrap_or_else(|e| panic!("{name}: {e}"));
            for vs in selectors(&parsed) {
                let scoped = vs.matchers.matchers.iter().any(|m| {
                    m.name == "cluster" && m.value == "local" && matches!(m.op, MatchOp::Equal)
                });
                assert!(scoped, "rule {name}: selector {vs} is not scoped: {query}");
            }
        }
    }
    let records_in = |file: &str| {
        support::read_data(file)
            .lines()
            .filter(|l| {
                l.trim_start()
                    .trim_start_matches("- ")
                    .starts_with("record:")
            })
            .count()
    };
    assert_eq!(
        recording,
        records_in("tkg/recording_rules.yml") + records_in("federation/demo_rules.yml"),
        "recording rules on the tools Prometheus"
    );
    let alerting = api.data("/api/v1/rules?type=alert")["groups"].clone();
    let health = alerting
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["name"] == "promfed-federation-health")
        .unwrap_or_else(|| panic!("no federation health group among {alerting}"));
    let alerts: Vec<&str> = health["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(alerts.contains(&"FederationTargetDown"), "{health}");
}

/// Rule outputs: the tools cluster's own read its own exporter only (computed by hand), the
/// workloads' arrive federated with their names, and the original expression over everything
/// the tools Prometheus has would give something else.
fn check_rule_values(set_up: &SetUp) {
    let (api, workload_b) = (&set_up.api, &set_up.workload_b_api);
    // The original expressions, as workload-b (which runs them unchanged) read them.
    let originals: BTreeMap<String, String> =
        workload_b.data("/api/v1/rules?type=record")["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["name"] == "promfed-e2e.rules")
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| {
                let text = |f: &str| r[f].as_str().expect("rule field").to_string();
                (text("name"), text("query"))
            })
            .collect();
    assert_eq!(
        originals
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        DEMO_RECORDS.into_iter().collect(),
        "workload-b's demo rules"
    );
    let values = |api: &Api, expr: &str| -> BTreeMap<String, f64> {
        api.query(expr).iter().map(|s| (s.key(), s.value)).collect()
    };
    let close = |got: &BTreeMap<String, f64>, want: &BTreeMap<String, f64>| {
        got.len() == want.len()
            && got
                .iter()
                .zip(want)
                .all(|((gk, gv), (wk, wv))| gk == wk && (gv - wv).abs() <= 1e-9 * wv.abs().max(1.0))
    };
    for record in DEMO_RECORDS {
        for site in SITES {
            let got = values(api, &format!(r#"{record}{{cluster="{}"}}"#, site.name));
            let want = expected(record, site);
            assert!(
                close(&got, &want),
                "{record} in cluster {} on the tools Prometheus: got {got:?}, want {want:?}",
                site.name
            );
        }
        let original = &originals[record];
        let isolated = values(workload_b, original);
        assert!(
            close(&isolated, &expected(record, WORKLOAD_B)),
            "{record} computed by workload-b itself: {isolated:?}"
        );
        let unscoped = values(api, original);
        assert!(
            !close(&unscoped, &expected(record, LOCAL)),
            "{record}: the unscoped expression gives the local value too ({unscoped:?}), so \
             this check proves nothing"
        );
    }
}

/// The series per cluster and `up` by cluster and job, as a table for the README.
fn series_table(per_cluster: &[Sample], api: &Api) -> String {
    let mut out = String::from(
        "Federated series on the tools Prometheus, as tests/it/federation.rs sees them:\n\n\
         count by (cluster) ({__name__=~\".+\"})\n",
    );
    out.push_str(&format!("  {:<12} {:>7}\n", "cluster", "series"));
    for s in per_cluster {
        out.push_str(&format!("  {:<12} {:>7}\n", s.label("cluster"), s.value));
    }
    out.push_str(&format!(
        "\nup by cluster and job\n  {:<12} {:<27} {:>2}  {}\n",
        "cluster", "job", "up", "scraped by"
    ));
    let mut up = api.query("up");
    up.sort_by_key(|s| (s.label("cluster").to_string(), s.label("job").to_string()));
    for s in &up {
        let (cluster, job) = (s.label("cluster"), s.label("job"));
        let by = if cluster == "local" {
            "tools Prometheus".to_string()
        } else if FEDERATION_JOBS.iter().any(|(j, _)| *j == job) {
            let how = if cluster == "workload-a" {
                "raw job, mTLS"
            } else {
                "clusters entry, basic auth"
            };
            format!("tools Prometheus, /federate ({how})")
        } else {
            format!("{cluster}'s Prometheus, federated")
        };
        out.push_str(&format!("  {cluster:<12} {job:<27} {:>2}  {by}\n", s.value));
    }
    out
}

/// A workload goes away: its federation target is down and `FederationTargetDown` goes off
/// for it, and only for it.
fn check_target_down_alert(set_up: &mut SetUp) {
    set_up.workload_b.stop();
    let api = &set_up.api;
    let alert = wait_until(
        "FederationTargetDown for workload-b",
        Duration::from_secs(60),
        || {
            let up = api.query(r#"up{job="federate-workload-b"}"#);
            if up.len() != 1 || up[0].value != 0.0 || up[0].label("cluster") != "workload-b" {
                return Err(format!("up: {up:?}"));
            }
            let alerts = api.data("/api/v1/alerts")["alerts"].clone();
            alerts
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["labels"]["alertname"] == "FederationTargetDown")
                .cloned()
                .ok_or_else(|| format!("alerts: {alerts}"))
        },
    );
    assert_eq!(alert["labels"]["cluster"], "workload-b", "{alert}");
    assert_eq!(alert["labels"]["job"], "federate-workload-b", "{alert}");
    assert!(
        alert["state"] == "pending" || alert["state"] == "firing",
        "{alert}"
    );
    let alerts = api.data("/api/v1/alerts")["alerts"].clone();
    let down = alerts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == "FederationTargetDown")
        .count();
    assert_eq!(down, 1, "only workload-b is down: {alerts}");
    let a_up = api.query(r#"up{job="federation"}"#);
    assert!(
        a_up.len() == 1 && a_up[0].value == 1.0,
        "workload-a is still up: {a_up:?}"
    );
}

/// Whether `openssl` runs (certs/generate.sh needs it).
fn openssl_runs() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn three_prometheus_servers_configured_only_by_promfed_federate() {
    let release = support::require!(prometheus2_release);
    federate(&release);
}

#[test]
fn three_prometheus_servers_configured_only_by_promfed_federate_on_prometheus_3() {
    let release = support::require!(prometheus3_release);
    federate(&release);
}

/// The whole set-up with every server of one Prometheus release.
fn federate(release: &support::PrometheusRelease) {
    let prometheus = release.server.clone();
    let python = support::require!(python);
    if !openssl_runs() {
        support::skip::<()>(&support::current_test(), "openssl");
        return;
    }
    let started = Instant::now();
    let mut set_up = SetUp::start(&prometheus, &python);
    set_up.wait_for_everything();
    let ready_after = started.elapsed();

    let per_cluster = check_cluster_labels(&set_up.api);
    check_hostile_workload(&set_up);
    check_loaded_rules(&set_up.api);
    check_rule_values(&set_up);

    let mut report = series_table(&per_cluster, &set_up.api);
    let dashboards = support::root().join("dashboards");
    let dashboard_report = if dashboards.is_dir() {
        let dashboard_report = check_dashboards(&set_up.api, &dashboards);
        report.push('\n');
        report.push_str(&dashboard_report.table());
        Some(dashboard_report)
    } else {
        report.push_str("\nSKIPPED the dashboard checks: dashboards/ does not exist\n");
        None
    };
    // Printed past libtest's capture, for the README; before the assertions that may fail.
    let _ = writeln!(std::io::stderr(), "{report}");
    if let Some(dashboard_report) = dashboard_report {
        assert!(
            dashboard_report.failures.is_empty(),
            "dashboard queries that failed, or returned nothing although the set-up has every \
             series they select:\n{}",
            dashboard_report.failures.join("\n")
        );
        for (name, query, options) in &dashboard_report.cluster_options {
            let known: BTreeSet<&str> = SITES.iter().map(|s| s.name).collect();
            assert!(
                !options.is_empty() && options.iter().all(|o| known.contains(o.as_str())),
                "{name}: {query} offers {options:?}"
            );
            if query == "label_values(up, cluster)" {
                assert_eq!(options.len(), SITES.len(), "{name}: {query}");
            }
        }
    }

    check_target_down_alert(&mut set_up);
    let _ = writeln!(
        std::io::stderr(),
        "federation end to end on {}: every target up after {:.1}s, done after {:.1}s",
        release.name,
        ready_after.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
