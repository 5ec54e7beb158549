//! prometheus-operator on the local API server (`PROMFED_OPERATOR=1 scripts/kube-local.sh up`):
//! create a stack of its objects in a namespace and take what the operator generates from
//! them, the Prometheus config (Secret `prometheus-NAME`, key `prometheus.yaml.gz`) and the
//! rule files (ConfigMaps `prometheus-NAME-rulefiles-N`). No kubelet runs, so no Prometheus
//! pod starts; the operator writes those objects all the same.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Instant;

use base64::Engine as _;
use serde_json::{Value, json};

use super::kube::Cluster;
use super::prometheus::Prometheus;
use super::{HANG_GUARD, describe};

/// A cluster with the operator running, for a module to share (its `shared()`).
pub fn up() -> Cluster {
    Cluster::up_with(None, &[("PROMFED_OPERATOR", OsStr::new("1"))])
}

/// What the operator generated for one Prometheus object.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// `prometheus.yaml` as the operator wrote it (placeholders such as `$(SHARD)` that the
    /// config reloader fills in a pod are left as they are).
    pub config: String,
    /// Rule files by their key in the rulefiles ConfigMaps.
    pub rule_files: BTreeMap<String, String>,
}

impl Generated {
    /// The config parsed (as JSON values).
    pub fn config_json(&self) -> Value {
        let node = promfed::yaml::parse(&self.config, promfed::yaml::Limits::default())
            .expect("the operator's config is YAML")
            .expect("a document");
        node.to_json()
    }

    /// The scrape config named `job_name`.
    pub fn job(&self, job_name: &str) -> Value {
        let config = self.config_json();
        let jobs = config["scrape_configs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        jobs.into_iter()
            .find(|j| j["job_name"] == job_name)
            .unwrap_or_else(|| panic!("no job {job_name:?} in\n{}", self.config))
    }

    /// Every rule of every rule file, parsed, by (group name, record or alert name).
    pub fn rules(&self) -> BTreeMap<(String, String), Value> {
        let mut out = BTreeMap::new();
        for text in self.rule_files.values() {
            let node = promfed::yaml::parse(text, promfed::yaml::Limits::default())
                .expect("a rule file is YAML")
                .expect("a document");
            let file = node.to_json();
            for group in file["groups"].as_array().into_iter().flatten() {
                for rule in group["rules"].as_array().into_iter().flatten() {
                    let name = rule.get("record").or(rule.get("alert")).unwrap();
                    out.insert(
                        (
                            group["name"].as_str().unwrap().to_string(),
                            name.as_str().unwrap().to_string(),
                        ),
                        rule.clone(),
                    );
                }
            }
        }
        out
    }
}

/// Create (or update) `objects` with `kubectl apply --server-side`: they go through the
/// admission chain like any client's.
pub fn apply(cluster: &Cluster, objects: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    cluster.kubectl_ok(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&list.to_string()),
    );
}

/// Wait until the operator has generated, for the Prometheus object `namespace/name`, a
/// config and rule files that `ready` accepts (the operator reconciles in its own time, and
/// several times), and return them. Panics after [`HANG_GUARD`] with the last ones seen and
/// the operator's log.
pub fn generated(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    ready: impl Fn(&Generated) -> bool,
) -> Generated {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let seen = read_generated(cluster, namespace, name);
        if let Some(seen) = &seen
            && ready(seen)
        {
            return seen.clone();
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(cluster.dir.join("prometheus-operator.log"))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "the operator did not generate what was expected for Prometheus \
                 {namespace}/{name}; last seen: {seen:#?}\nlast lines of its log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// The generated Secret and ConfigMaps as they are now; None while the Secret is missing.
fn read_generated(cluster: &Cluster, namespace: &str, name: &str) -> Option<Generated> {
    let secret = format!("prometheus-{name}");
    let out = cluster.kubectl(
        &["get", "secret", "-n", namespace, &secret, "-o", "json"],
        None,
    );
    if !out.status.success() {
        return None;
    }
    let secret: Value = serde_json::from_slice(&out.stdout).unwrap();
    let gz = secret["data"]["prometheus.yaml.gz"].as_str()?;
    let gz = base64::engine::general_purpose::STANDARD
        .decode(gz)
        .expect("Secret data is base64");
    let config = gunzip(&gz);

    let selector = format!("managed-by=prometheus-operator,prometheus-name={name}");
    let list = cluster.kubectl_ok(
        &[
            "get",
            "configmap",
            "-n",
            namespace,
            "-l",
            &selector,
            "-o",
            "json",
        ],
        None,
    );
    let list: Value = serde_json::from_str(&list).unwrap();
    let mut rule_files = BTreeMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let cm = item["metadata"]["name"].as_str().unwrap_or_default();
        if !cm.starts_with(&format!("prometheus-{name}-rulefiles-")) {
            continue;
        }
        for (key, value) in item["data"].as_object().into_iter().flatten() {
            rule_files.insert(key.clone(), value.as_str().unwrap_or_default().to_string());
        }
    }
    Some(Generated { config, rule_files })
}

/// `gzip -dc`: the crate has no gzip reader and the tests need none elsewhere.
fn gunzip(bytes: &[u8]) -> String {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running gzip");
    let mut stdin = child.stdin.take().unwrap();
    let bytes = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child.wait_with_output().expect("gzip output");
    let _ = writer.join();
    assert!(out.status.success(), "gzip -dc: {}", describe(&out));
    String::from_utf8(out.stdout).expect("the config is UTF-8")
}

/// A small stack in `namespace`: a Prometheus object `hub` that selects everything in its
/// namespace, a PrometheusRule, a ServiceMonitor and a federation ScrapeConfig as the
/// operator's users write them (before promfed). `version`: the Prometheus object's.
pub fn stack(namespace: &str, version: &str) -> Vec<Value> {
    let meta = |name: &str| json!({"name": name, "namespace": namespace});
    vec![
        json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Prometheus",
            "metadata": meta("hub"),
            "spec": {
                "version": version,
                "serviceMonitorSelector": {},
                "podMonitorSelector": {},
                "scrapeConfigSelector": {},
                "ruleSelector": {},
            },
        }),
        json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": meta("hub-rules"),
            "spec": {"groups": [{"name": "hub.rules", "rules": [
                {"record": "job:up:sum", "expr": "sum by (job) (up)"},
                {"record": "one", "expr": 1},
                {"alert": "TargetDown", "expr": "up == 0\n", "for": "5m",
                 "labels": {"severity": "warning"}},
            ]}]},
        }),
        json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": meta("node-exporter"),
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": "node-exporter"}},
                "endpoints": [{"port": "metrics", "honorLabels": true}],
            },
        }),
    ]
}

/// A Prometheus server started by a test (the shared launcher, [`Prometheus`]), stopped when
/// dropped.
pub struct Server {
    prometheus: Prometheus,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl Server {
    /// Start `binary` on a free port with `config` (text; `{address}` in it is replaced by
    /// the server's own address) and files `dir/*`, and wait until it is ready.
    pub fn start(binary: &std::path::Path, dir: &std::path::Path, config: &str) -> Server {
        let [listen] = super::free_ports::<1>();
        let address = listen.to_string();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("prometheus.yml"),
            config.replace("{address}", &address),
        )
        .unwrap();
        let mut prometheus = Prometheus::start(binary, "prometheus", dir, listen, None);
        prometheus.wait_ready();
        Server {
            prometheus,
            address,
        }
    }

    /// An instant query: each series' labels and value.
    pub fn query(&self, expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        (self.prometheus.api().query(expr).into_iter())
            .map(|sample| (sample.labels, sample.value))
            .collect()
    }

    /// The end of its log, for a failure message.
    pub fn log(&self) -> String {
        self.prometheus.log_tail(40)
    }
}

/// The operator's config made runnable outside a pod, everything else as generated: the
/// placeholders the config reloader fills (`$(SHARD)`, `$(POD_NAME)`) filled, `rule_files`
/// pointed at `rules_dir`, and each job's Kubernetes discovery replaced by the static targets
/// `discovered(job_name)` gives (with the `__meta_kubernetes_*` labels the API server would
/// have given them, which the operator's relabelings read).
pub fn runnable(
    config: &str,
    rules_dir: &std::path::Path,
    discovered: impl Fn(&str) -> Value,
) -> String {
    use promfed::yaml::{self, Node};
    let config = config
        .replace("$(SHARD)", "0")
        .replace("$(POD_NAME)", "hub-0");
    let mut root = yaml::parse(&config, yaml::Limits::default())
        .expect("the operator's config is YAML")
        .expect("a document");
    root.insert(
        "rule_files",
        Node::from_json(&json!([format!("{}/*.yaml", rules_dir.display())])),
    );
    if let Some(jobs) = root.get_mut("scrape_configs").and_then(Node::as_seq_mut) {
        for job in jobs {
            if job.remove("kubernetes_sd_configs").is_some() {
                let name = job
                    .get("job_name")
                    .and_then(Node::as_str)
                    .unwrap_or_default()
                    .to_string();
                job.insert("static_configs", Node::from_json(&discovered(&name)));
            }
        }
    }
    yaml::emit(&root)
}
