//! Whatever promfed writes loads in Prometheus (issue 16): generated promfed configs, valid
//! ones rendered and checked with every promtool there is (2.42, and 3.x when the tools cache
//! has it), invalid ones refused when the config loads, with the message promfed promises and,
//! where the mistake is in a raw scrape config, refused by promtool too (so promfed is not
//! stricter than Prometheus there).
//!
//! The generator is seeded (`PROMFED_GEN_SEED` picks another seed; the seed is printed).

use promfed::render::render_stream;
use promfed::yaml::{self, Node};
use promfed::{Config, Engine};
use serde_json::{Value as Json, json};

use crate::support::{self, require};

/// xorshift64*: small, deterministic, good enough to pick from tables.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn seed() -> u64 {
    let seed = std::env::var("PROMFED_GEN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    eprintln!("validation: generator seed {seed} (set PROMFED_GEN_SEED to vary it)");
    seed
}

/// Durations with their length in seconds, for picking a timeout within an interval.
const INTERVALS: &[(&str, u64)] = &[
    ("15s", 15),
    ("30s", 30),
    ("1m", 60),
    ("1m30s", 90),
    ("2m", 120),
    ("5m", 300),
];
const TIMEOUTS: &[(&str, u64)] = &[
    ("5s", 5),
    ("10s", 10),
    ("15s", 15),
    ("30s", 30),
    ("45s", 45),
    ("1m", 60),
    ("0s", 0),
];
const DOWN_FOR: &[&str] = &["0s", "1m", "5m", "10m", "1h30m", "2d", "1w"];
const CLUSTERS: &[&str] = &["workload-a", "workload-b", "edge_1", "prod", "eu.west"];
const EXTRA_LABELS: &[&str] = &["team", "env", "_region", "tier2"];
const MATCHES: &[&str] = &[
    r#"{__name__!=""}"#,
    r#"{job="kube-state-metrics"}"#,
    r#"{__name__=~"job:.*|up"}"#,
    "up",
];

/// Relabel rules every Prometheus from 2.42 accepts.
fn relabel_rule(rng: &mut Rng) -> Json {
    rng.pick(&[
        json!({"action": "labeldrop", "regex": "tmp_.*"}),
        json!({"action": "LabelMap", "regex": "x_(.+)", "replacement": "y_$1"}),
        json!({"source_labels": ["a", "b"], "separator": "-", "target_label": "c"}),
        json!({"action": "hashmod", "source_labels": ["instance"], "modulus": 4, "target_label": "shard"}),
        json!({"action": "lowercase", "source_labels": ["a"], "target_label": "b"}),
        json!({"action": "keep", "source_labels": ["__name__"], "regex": "up|job:.*"}),
        json!({"action": "drop", "source_labels": ["__name__"], "regex": "(?i)go_.+"}),
        json!({"action": "keepequal", "source_labels": ["a"], "target_label": "b"}),
        json!({"source_labels": ["__address__"], "regex": "([^:]+):\\d+", "target_label": "host", "replacement": "${1}"}),
    ])
    .clone()
}

/// An interval (or none) and a timeout within it (or none), as Prometheus requires against
/// the base ConfigMap's global 1m.
fn timing(rng: &mut Rng, job: &mut serde_json::Map<String, Json>) {
    let interval = rng.chance(60).then(|| *rng.pick(INTERVALS));
    if let Some((text, _)) = interval {
        job.insert("scrape_interval".into(), json!(text));
    }
    let limit = interval.map_or(60, |(_, secs)| secs);
    if rng.chance(50) {
        let fitting: Vec<&(&str, u64)> = TIMEOUTS.iter().filter(|(_, s)| *s <= limit).collect();
        job.insert("scrape_timeout".into(), json!(rng.pick(&fitting).0));
    }
}

fn tls_config(rng: &mut Rng) -> Json {
    let mut tls = serde_json::Map::new();
    if rng.chance(70) {
        tls.insert("ca_file".into(), json!("/etc/prometheus/federation/ca.crt"));
    }
    if rng.chance(50) {
        tls.insert(
            "cert_file".into(),
            json!("/etc/prometheus/federation/tls.crt"),
        );
        tls.insert(
            "key_file".into(),
            json!("/etc/prometheus/federation/tls.key"),
        );
    }
    if rng.chance(50) {
        tls.insert("server_name".into(), json!("prom-federation"));
    }
    if rng.chance(20) {
        tls.insert("insecure_skip_verify".into(), json!(rng.chance(50)));
    }
    if rng.chance(30) {
        tls.insert("min_version".into(), json!(rng.pick(&["TLS12", "TLS13"])));
    }
    Json::Object(tls)
}

fn auth(rng: &mut Rng, raw: bool) -> Option<(&'static str, Json)> {
    match rng.below(if raw { 6 } else { 4 }) {
        0 => Some((
            "basic_auth",
            json!({"username": "federate", "password_file": "/etc/prometheus/secrets/password"}),
        )),
        1 => Some((
            "authorization",
            json!({"credentials_file": "/etc/prometheus/secrets/token"}),
        )),
        4 => Some((
            "oauth2",
            json!({"client_id": "promfed", "client_secret_file": "/etc/prometheus/secrets/oauth", "token_url": "https://auth.example.com/token", "scopes": ["read"]}),
        )),
        5 => Some(("bearer_token_file", json!("/etc/prometheus/secrets/token"))),
        _ => None,
    }
}

/// A `clusters` entry named `name`.
fn cluster(rng: &mut Rng, name: &str) -> Json {
    let mut entry = serde_json::Map::new();
    entry.insert("name".into(), json!(name));
    if rng.chance(30) {
        let prefix = rng.pick(&["", "/prometheus", "/prom/"]);
        entry.insert(
            "url".into(),
            json!(format!("https://prom.{name}.example.com:9443{prefix}")),
        );
    } else {
        entry.insert(
            "targets".into(),
            json!([format!("prom.{name}.example.com:9090")]),
        );
        if rng.chance(50) {
            entry.insert("scheme".into(), json!(rng.pick(&["http", "https"])));
        }
    }
    timing(rng, &mut entry);
    if rng.chance(50) {
        entry.insert("tls_config".into(), tls_config(rng));
    }
    if let Some((key, value)) = auth(rng, false) {
        entry.insert(key.into(), value);
    }
    if rng.chance(40) {
        let n = 1 + rng.below(2);
        let matches: Vec<&str> = (0..n).map(|_| *rng.pick(MATCHES)).collect();
        entry.insert("match".into(), json!(matches));
    }
    if rng.chance(30) {
        entry.insert("sample_limit".into(), json!(500_000));
    }
    if rng.chance(40) {
        entry.insert(
            "labels".into(),
            json!({*rng.pick(EXTRA_LABELS): rng.pick(&["a", "b c", "1"])}),
        );
    }
    if rng.chance(15) {
        entry.insert("proxy_url".into(), json!("http://proxy.example.com:3128"));
    }
    Json::Object(entry)
}

/// A raw `additionalScrapeConfigs` job named `fed-<index>`; `statics` forces static targets.
fn raw_job(rng: &mut Rng, index: usize, label: &str, local: &str, statics: bool) -> Json {
    let mut job = serde_json::Map::new();
    job.insert("job_name".into(), json!(format!("fed-{index}")));
    job.insert("honor_labels".into(), json!(true));
    job.insert("metrics_path".into(), json!("/federate"));
    job.insert("params".into(), json!({"match[]": [rng.pick(MATCHES)]}));
    let names: Vec<&str> = CLUSTERS.iter().copied().filter(|c| *c != local).collect();
    if statics || rng.chance(70) {
        let groups: Vec<Json> = (0..1 + rng.below(3))
            .map(|g| {
                let cluster = rng.pick(&names);
                let mut labels = serde_json::Map::new();
                labels.insert(label.into(), json!(cluster));
                if rng.chance(30) {
                    labels.insert((*rng.pick(EXTRA_LABELS)).into(), json!("x"));
                }
                json!({"targets": [format!("prom-{g}.{cluster}.example.com:9090")], "labels": labels})
            })
            .collect();
        job.insert("static_configs".into(), json!(groups));
    } else {
        if rng.chance(50) {
            job.insert(
                "file_sd_configs".into(),
                json!([{"files": ["/etc/prometheus/federation/*.json"]}]),
            );
        } else {
            job.insert(
                "dns_sd_configs".into(),
                json!([{"names": ["_prometheus._tcp.federation.example.com"]}]),
            );
        }
        job.insert(
            "relabel_configs".into(),
            json!([{"source_labels": ["__meta_filepath"], "regex": ".*/(.+)\\.json", "target_label": label}]),
        );
    }
    if rng.chance(50) {
        job.insert("scheme".into(), json!("https"));
    }
    timing(rng, &mut job);
    if rng.chance(60) {
        job.insert("tls_config".into(), tls_config(rng));
    }
    if let Some((key, value)) = auth(rng, true) {
        job.insert(key.into(), value);
    }
    for key in ["honor_timestamps", "follow_redirects", "enable_http2"] {
        if rng.chance(20) {
            job.insert(key.into(), json!(rng.chance(50)));
        }
    }
    if rng.chance(50) {
        let rules: Vec<Json> = (0..1 + rng.below(3)).map(|_| relabel_rule(rng)).collect();
        job.insert("metric_relabel_configs".into(), json!(rules));
    }
    Json::Object(job)
}

/// A promfed config with at least one federation job, as JSON (emitted as YAML for loading).
fn valid_config(rng: &mut Rng) -> Json {
    let local = *rng.pick(&["local", "tools", "shared-tools"]);
    let label = *rng.pick(&["cluster", "cluster", "kube_cluster"]);
    let mut config = serde_json::Map::new();
    config.insert("localClusterName".into(), json!(local));
    config.insert("clusterLabelName".into(), json!(label));
    let compact = rng.below(3);
    let raw = if compact == 0 {
        1 + rng.below(2)
    } else {
        rng.below(3)
    };
    let names: Vec<&str> = CLUSTERS.iter().copied().filter(|c| *c != local).collect();
    let clusters: Vec<Json> = (0..compact).map(|i| cluster(rng, names[i])).collect();
    if !clusters.is_empty() {
        config.insert("clusters".into(), json!(clusters));
    }
    let jobs: Vec<Json> = (0..raw)
        .map(|i| raw_job(rng, i, label, local, false))
        .collect();
    if !jobs.is_empty() {
        config.insert("additionalScrapeConfigs".into(), json!(jobs));
    }
    if rng.chance(60) {
        config.insert(
            "federationAlerts".into(),
            json!({"enabled": true, "downFor": rng.pick(DOWN_FOR), "severity": rng.pick(&["warning", "page"])}),
        );
    }
    Json::Object(config)
}

fn yaml_text(config: &Json) -> String {
    yaml::emit(&Node::from_json(config))
}

/// The ConfigMap every generated config renders: a global 1m interval, a local job, rule
/// files listed where the kubelet mounts them.
const BASE_CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: prometheus-server
  namespace: monitoring
  labels: {app: prometheus, component: server}
data:
  prometheus.yml: |
    global:
      scrape_interval: 1m
      scrape_timeout: 10s
      evaluation_interval: 1m
    rule_files:
    - /etc/config/alerting_rules.yml
    - /etc/config/recording_rules.yml
    scrape_configs:
    - job_name: prometheus
      static_configs:
      - targets: [localhost:9090]
    - job_name: pods
      honor_labels: true
      kubernetes_sd_configs:
      - role: pod
  alerting_rules.yml: |
    {}
  recording_rules.yml: |
    groups:
    - name: node.rules
      rules:
      - record: instance:up:sum
        expr: sum by (instance) (up)
";

fn rendered_data(config_text: &str) -> Vec<(String, String)> {
    let engine = Config::from_yaml(config_text)
        .and_then(Engine::new)
        .unwrap_or_else(|e| panic!("a valid generated config is refused: {e}\n{config_text}"));
    let rendered =
        render_stream(&engine, BASE_CONFIGMAP).unwrap_or_else(|e| panic!("{e}\n{config_text}"));
    assert_eq!(rendered.changed, 1, "{config_text}");
    crate::engine::data_of(&rendered.text)
}

/// Valid generated configs: promfed loads them and every promtool accepts what it renders.
#[test]
fn generated_valid_configs_render_what_every_promtool_accepts() {
    let promtools = require!(promtools);
    let _python = require!(python);
    let versions: Vec<&str> = promtools.iter().map(|(v, _)| v.as_str()).collect();
    eprintln!("validation: checking with {versions:?}");
    let mut rng = Rng::new(seed());
    let mut checked = 0;
    for _ in 0..24 {
        let config = valid_config(&mut rng);
        let text = yaml_text(&config);
        for (key, value) in rendered_data(&text) {
            for (version, promtool) in &promtools {
                let out = if key == "prometheus.yml" {
                    support::promtool_check_config_with(promtool, &value)
                } else {
                    support::run_promtool_with(
                        promtool,
                        &["check", "rules", "rules.yml"],
                        &[("rules.yml", &value)],
                    )
                };
                assert!(
                    out.status.success(),
                    "{version} refuses {key} rendered with this config:\n{text}\n--- {key}\n{value}\n{}",
                    support::describe(&out)
                );
                checked += 1;
            }
        }
    }
    eprintln!("validation: {checked} rendered documents accepted");
}

/// Where a mutation goes.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// A `clusters` entry (the last one).
    Cluster,
    /// A raw job with static targets (the last one), and which promtools must refuse it too.
    Raw(Refused),
    /// The config itself.
    Config,
}

/// Which Prometheus versions refuse a raw job promfed refuses.
#[derive(Clone, Copy, PartialEq)]
enum Refused {
    All,
    /// 2.x only: 3.x takes UTF-8 label names and Go 1.22's regex syntax, but promfed writes
    /// what every version loads.
    V2,
    /// None: promfed's own rule (a workload cluster may not pose as the local one).
    PromfedOnly,
}

type Mutate = fn(&mut serde_json::Map<String, Json>, &str, &str);

/// (name, where, mutation (entry, cluster label, local name), what the message says)
const MUTATIONS: &[(&str, Target, Mutate, &[&str])] = &[
    (
        "scrape_interval: 30 seconds",
        Target::Cluster,
        |c, _, _| {
            c.remove("scrape_timeout");
            c.insert("scrape_interval".into(), json!("30 seconds"));
        },
        &[
            "].scrape_interval (line",
            "\"30 seconds\" is not a valid duration",
        ],
    ),
    (
        "scrape_timeout: 1m with scrape_interval: 30s",
        Target::Cluster,
        |c, _, _| {
            c.insert("scrape_interval".into(), json!("30s"));
            c.insert("scrape_timeout".into(), json!("1m"));
        },
        &[
            "].scrape_timeout (line",
            "greater than the scrape interval 30s",
        ],
    ),
    (
        "cert_fle in tls_config",
        Target::Cluster,
        |c, _, _| {
            c.insert("tls_config".into(), json!({"cert_fle": "/x"}));
        },
        &[
            "].tls_config.cert_fle (line",
            "field cert_fle not found in type config.TLSConfig",
        ],
    ),
    (
        "label bad-label",
        Target::Cluster,
        |c, _, _| {
            c.insert("labels".into(), json!({"bad-label": "x"}));
        },
        &[
            "].labels.bad-label (line",
            "\"bad-label\" is not a valid label name",
        ],
    ),
    (
        "the local cluster's name",
        Target::Cluster,
        |c, _, local| {
            c.insert("name".into(), json!(local));
        },
        &["].name (line", "is the localClusterName"],
    ),
    (
        "federationAlerts.downFor: 5 minutes",
        Target::Config,
        |c, _, _| {
            c.insert(
                "federationAlerts".into(),
                json!({"enabled": true, "downFor": "5 minutes"}),
            );
        },
        &[
            "federationAlerts.downFor (line",
            "\"5 minutes\" is not a valid duration",
        ],
    ),
    (
        "scrape_intervall",
        Target::Raw(Refused::All),
        |c, _, _| {
            c.insert("scrape_intervall".into(), json!("30s"));
        },
        &[
            "].scrape_intervall (line",
            "field scrape_intervall not found in type config.ScrapeConfig",
        ],
    ),
    (
        "cert_fle in a raw tls_config",
        Target::Raw(Refused::All),
        |c, _, _| {
            c.insert(
                "tls_config".into(),
                json!({"ca_file": "/ca", "cert_fle": "/x"}),
            );
        },
        &[
            "].tls_config.cert_fle (line",
            "field cert_fle not found in type config.TLSConfig",
        ],
    ),
    (
        "target label bad-label",
        Target::Raw(Refused::V2),
        |c, _, _| {
            c["static_configs"][0]["labels"]["bad-label"] = json!("x");
        },
        &[
            "].static_configs[0].labels.bad-label (line",
            "not a valid label name",
        ],
    ),
    (
        "scrape_interval: 1.5m",
        Target::Raw(Refused::All),
        |c, _, _| {
            c.remove("scrape_timeout");
            c.insert("scrape_interval".into(), json!("1.5m"));
        },
        &[
            "].scrape_interval (line",
            "\"1.5m\" is not a valid duration",
        ],
    ),
    (
        "scrape_timeout over scrape_interval",
        Target::Raw(Refused::All),
        |c, _, _| {
            c.insert("scrape_interval".into(), json!("30s"));
            c.insert("scrape_timeout".into(), json!("1m"));
        },
        &[
            "].scrape_timeout (line",
            "greater than the scrape interval 30s",
        ],
    ),
    (
        "relabel action replce",
        Target::Raw(Refused::All),
        |c, _, _| {
            c.insert(
                "metric_relabel_configs".into(),
                json!([{"action": "replce", "target_label": "x"}]),
            );
        },
        &[
            "].metric_relabel_configs[0].action (line",
            "unknown relabel action \"replce\"",
        ],
    ),
    (
        "relabel regex that does not compile",
        Target::Raw(Refused::All),
        |c, _, _| {
            c.insert(
                "metric_relabel_configs".into(),
                json!([{"source_labels": ["a"], "regex": "(", "target_label": "b"}]),
            );
        },
        &[
            "].metric_relabel_configs[0].regex (line",
            "invalid regex \"(\"",
        ],
    ),
    (
        "relabel source label a-b",
        Target::Raw(Refused::V2),
        |c, _, _| {
            c.insert(
                "metric_relabel_configs".into(),
                json!([{"source_labels": ["a-b"], "target_label": "b"}]),
            );
        },
        &[
            "].metric_relabel_configs[0].source_labels[0] (line",
            "\"a-b\" is not a valid label name",
        ],
    ),
    (
        "replace without target_label",
        Target::Raw(Refused::All),
        |c, _, _| {
            c.insert(
                "metric_relabel_configs".into(),
                json!([{"source_labels": ["a"]}]),
            );
        },
        &["].metric_relabel_configs[0]", "requires 'target_label'"],
    ),
    (
        "honor_labels: sure",
        Target::Raw(Refused::All),
        |c, _, _| {
            c.insert("honor_labels".into(), json!("sure"));
        },
        &["].honor_labels (line", "must be true or false"],
    ),
    (
        "basic_auth and authorization",
        Target::Raw(Refused::All),
        |c, _, _| {
            c.remove("oauth2");
            c.remove("bearer_token_file");
            c.insert(
                "basic_auth".into(),
                json!({"username": "u", "password_file": "/p"}),
            );
            c.insert("authorization".into(), json!({"credentials_file": "/c"}));
        },
        &["at most one of basic_auth, oauth2, authorization"],
    ),
    (
        "client certificate without its key",
        Target::Raw(Refused::All),
        |c, _, _| {
            c.insert("tls_config".into(), json!({"cert_file": "/tls.crt"}));
        },
        &["].tls_config (line", "needs its key"],
    ),
    (
        "min_version TLS1.2",
        Target::Raw(Refused::All),
        |c, _, _| {
            c.insert("tls_config".into(), json!({"min_version": "TLS1.2"}));
        },
        &[
            "].tls_config.min_version (line",
            "unknown TLS version: TLS1.2",
        ],
    ),
    (
        "a target with a path",
        Target::Raw(Refused::All),
        |c, _, _| {
            c.remove("relabel_configs");
            c["static_configs"][0]["targets"][0] = json!("prom.example.com:9090/prometheus");
        },
        &[
            "].static_configs[0].targets[0] (line",
            "is not a valid hostname",
        ],
    ),
    (
        "target labelled with the local cluster",
        Target::Raw(Refused::PromfedOnly),
        |c, label, local| {
            c["static_configs"][0]["labels"][label] = json!(local);
        },
        &["].static_configs[0].labels.", "is the localClusterName"],
    ),
    (
        // Go 1.22 learned (?<name>); Prometheus 2.42 was built with an older Go.
        "named group written (?<x>)",
        Target::Raw(Refused::V2),
        |c, _, _| {
            c.insert(
                "metric_relabel_configs".into(),
                json!([{"action": "labeldrop", "regex": "(?<x>tmp)_.*"}]),
            );
        },
        &["].metric_relabel_configs[0].regex (line", "not RE2 syntax"],
    ),
];

/// Invalid configs: each mistake, in several generated configs, is refused at load with its
/// message; a mistake in a raw scrape config is refused by every promtool too.
#[test]
fn generated_invalid_configs_are_refused_at_load_as_prometheus_would() {
    let promtools = support::promtools().unwrap_or_default();
    let python = support::python();
    if promtools.is_empty() || python.is_none() {
        // The promfed side runs anyway; only the cross-check with promtool is skipped.
        support::skip::<()>(&support::current_test(), "promtool and python");
    }
    let mut rng = Rng::new(seed() ^ 0x5eed);
    let mut refused = 0;
    for (name, target, mutate, wants) in MUTATIONS {
        for _ in 0..3 {
            let mut config = valid_config(&mut rng);
            let label = config["clusterLabelName"].as_str().unwrap().to_string();
            let local = config["localClusterName"].as_str().unwrap().to_string();
            let object = config.as_object_mut().unwrap();
            let (list, entry) = match target {
                Target::Cluster => ("clusters", Some(cluster(&mut rng, "mutated"))),
                Target::Raw(_) => (
                    "additionalScrapeConfigs",
                    Some(raw_job(&mut rng, 9, &label, &local, true)),
                ),
                Target::Config => ("", None),
            };
            let mut prefix = String::new();
            if let Some(mut entry) = entry {
                mutate(entry.as_object_mut().unwrap(), &label, &local);
                let items = object
                    .entry(list)
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .unwrap();
                items.push(entry);
                prefix = format!("{list}[{}", items.len() - 1);
            } else {
                mutate(object, &label, &local);
            }
            let text = yaml_text(&config);
            let err = match Config::from_yaml(&text).and_then(Engine::new) {
                Ok(_) => panic!("{name}: accepted\n{text}"),
                Err(e) => e.to_string(),
            };
            assert!(
                err.contains(&prefix),
                "{name}: {err:?} does not name {prefix:?}\n{text}"
            );
            for want in *wants {
                assert!(err.contains(want), "{name}: {err:?} lacks {want:?}\n{text}");
            }
            refused += 1;
            let refused_by = match target {
                Target::Raw(refused) if python.is_some() => *refused,
                _ => continue,
            };
            let job = config["additionalScrapeConfigs"]
                .as_array()
                .unwrap()
                .last()
                .unwrap();
            let prometheus_yml = yaml_text(&json!({"scrape_configs": [job]}));
            for (version, promtool) in &promtools {
                let v2 = version.starts_with("promtool, version 2.");
                if refused_by == Refused::PromfedOnly || (refused_by == Refused::V2 && !v2) {
                    continue;
                }
                let out = support::promtool_check_config_with(promtool, &prometheus_yml);
                assert!(
                    !out.status.success(),
                    "{name}: promfed refuses it but {version} accepts:\n{prometheus_yml}"
                );
            }
        }
    }
    eprintln!("validation: {refused} invalid configs refused");
}
