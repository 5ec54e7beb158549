//! The engine on real ConfigMaps and rule files: golden files, promtool, idempotency, errors.

use promfed::config::{AlertingMode, Config, ConfigErrorKind};
use promfed::engine::ErrorKind;
use promfed::promql::{parse, selectors};
use promfed::render::render_stream;
use promfed::yaml::{self, Limits, Node};
use promfed::{Engine, engine};

use crate::support::{self, read_data, require};

fn engine(config_file: &str) -> Engine {
    let config = Config::from_yaml(&read_data(config_file)).expect("test config loads");
    Engine::new(config).expect("test config is valid")
}

fn engine_from(text: &str) -> Engine {
    Engine::new(Config::from_yaml(text).expect("config parses")).expect("config is valid")
}

/// (input ConfigMap, config, golden name)
const GOLDEN: &[(&str, &str, &str)] = &[
    (
        "tkg/prometheus-server-configmap.yaml",
        "example-config.yaml",
        "tkg-seed-config.yaml",
    ),
    (
        "tkg/prometheus-server-configmap.yaml",
        "config-compact.yaml",
        "tkg-compact-config.yaml",
    ),
    (
        "helm/prometheus-server-configmap-chart-14.12.0.yaml",
        "example-config.yaml",
        "helm-14.12.0-seed-config.yaml",
    ),
    (
        "helm/prometheus-server-configmap-chart-29.27.0.yaml",
        "config-helm-29.yaml",
        "helm-29.27.0.yaml",
    ),
];

#[test]
fn golden_configmaps() {
    for (input, config, golden) in GOLDEN {
        let engine = engine(config);
        let text = read_data(input);
        let first = render_stream(&engine, &text).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(first.matched, 1, "{input} matches");
        assert_eq!(first.changed, 1, "{input} changes");
        support::assert_golden(golden, &first.text);
        // Idempotent: rendering the output changes nothing, byte for byte.
        let second = render_stream(&engine, &first.text).unwrap();
        assert_eq!(
            second.changed, 0,
            "{input}: second render changed something"
        );
        assert_eq!(second.text, first.text);
    }
}

/// The diff of each golden rendering is promfed's change only: lines added, and the lines
/// of expressions that got matchers (each removed line comes back in its hunk with
/// `cluster="<local>"` added) or an empty collection promfed fills. Comments, blank lines, quotes, flow lists, block scalar
/// headers and untouched keys are kept as written.
#[test]
fn golden_diffs_are_the_change_only() {
    for (input, config, _) in GOLDEN {
        let engine = engine(config);
        let matcher = format!(
            "{}=\"{}\"",
            engine.config().cluster_label_name,
            engine.config().local_cluster_name
        );
        let unscoped = |line: &str| {
            line.replace(&format!("{{{matcher}}}"), "")
                .replace(&format!(",{matcher}"), "")
                .replace(&format!("{matcher},"), "")
        };
        let text = read_data(input);
        let out = render_stream(&engine, &text).unwrap().text;
        let diff = promfed::render::unified_diff(input, &text, &out);
        let (mut added, mut removed) = (0, 0);
        for hunk in diff.split("\n@@").skip(1) {
            let lines: Vec<&str> = hunk.lines().skip(1).collect();
            let plus: Vec<String> = (lines.iter())
                .filter_map(|l| l.strip_prefix('+'))
                .map(unscoped)
                .collect();
            added += plus.len();
            for line in lines.iter().filter_map(|l| l.strip_prefix('-')) {
                removed += 1;
                // An empty collection promfed fills (`alerting_rules.yml: {}`) is written anew.
                let filled = matches!(line.trim(), "{}" | "[]");
                assert!(
                    filled || plus.iter().any(|p| p == line),
                    "{input} with {config}: removed line not coming back scoped: {line:?}\n{diff}"
                );
            }
        }
        eprintln!(
            "{input} with {config}: {} diff lines, {added} added, {removed} rescoped",
            diff.lines().count()
        );
        assert!(added > 0, "{input}");
    }
}

/// The data of the single ConfigMap in a rendered stream.
pub(crate) fn data_of(stream: &str) -> Vec<(String, String)> {
    let root = yaml::parse(stream, Limits::default()).unwrap().unwrap();
    root.get("data")
        .and_then(Node::as_map)
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
        .collect()
}

#[test]
fn golden_outputs_pass_promtool() {
    let promtools = require!(promtools);
    let _python = require!(python);
    for (input, config, _) in GOLDEN {
        let rendered = render_stream(&engine(config), &read_data(input)).unwrap();
        for (key, value) in data_of(&rendered.text) {
            for (version, promtool) in &promtools {
                let out = if key == "prometheus.yml" {
                    support::promtool_check_config_with(promtool, &value)
                } else if value.contains("groups") {
                    support::run_promtool_with(
                        promtool,
                        &["check", "rules", "rules.yml"],
                        &[("rules.yml", &value)],
                    )
                } else {
                    continue;
                };
                assert!(
                    out.status.success(),
                    "{input} with {config}: {version} rejects {key}:\n{}",
                    support::describe(&out)
                );
            }
        }
    }
}

/// Files that promtool accepts only without the duplicate-rule lint (see rules/SOURCES.md).
const DUPLICATE_LINT: &[&str] = &[
    "kube-prometheus-main/kubernetesControlPlane.rules.yaml",
    "kube-prometheus-release-0.8/kubernetes.rules.yaml",
    "mixins/kubernetes/rules.yaml",
    "mixins/cortex/alerts.yaml",
];

/// Every corpus rule file and the TKG one, by name (the operator module uses them too).
pub(crate) fn corpus_rule_files() -> Vec<(String, String)> {
    let root = support::data("rules");
    let mut files: Vec<(String, String)> = support::yaml_files(&root)
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    files.push((
        "tkg/recording_rules.yml".into(),
        read_data("tkg/recording_rules.yml"),
    ));
    files.sort();
    files
}

fn local_everything() -> Engine {
    let mut config = Config::default();
    config.rules.alerting = AlertingMode::Local;
    Engine::new(config).unwrap()
}

/// Every corpus rule file: every selector of every rule scoped, every rule labelled, nothing
/// lost, second rewrite identical.
#[test]
fn corpus_rule_files_fully_scoped() {
    let engine = local_everything();
    let mut rules_seen = 0;
    for (name, text) in corpus_rule_files() {
        let data = vec![("rules.yml".to_string(), text.clone())];
        let out = engine
            .rewrite(&data)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let before = yaml::parse(&text, Limits::default()).unwrap().unwrap();
        let after = yaml::parse(&out.data[0].1, Limits::default())
            .unwrap()
            .unwrap();
        let groups_before = before.get("groups").unwrap().as_seq().unwrap();
        let groups_after = after.get("groups").unwrap().as_seq().unwrap();
        assert_eq!(groups_before.len(), groups_after.len(), "{name}");
        for (gb, ga) in groups_before.iter().zip(groups_after) {
            let rb = gb.get("rules").unwrap().as_seq().unwrap();
            let ra = ga.get("rules").unwrap().as_seq().unwrap();
            assert_eq!(rb.len(), ra.len(), "{name}");
            for (b, a) in rb.iter().zip(ra) {
                rules_seen += 1;
                for field in ["record", "alert", "for", "annotations"] {
                    assert_eq!(
                        b.get(field).map(Node::to_json),
                        a.get(field).map(Node::to_json),
                        "{name}: {field}"
                    );
                }
                let labels = a.get("labels").unwrap();
                assert_eq!(labels.get("cluster").and_then(Node::as_str), Some("local"));
                if let Some(old) = b.get("labels").and_then(Node::as_map) {
                    for (k, v) in old {
                        let k = k.as_str().unwrap();
                        assert_eq!(
                            labels.get(k).map(Node::to_json),
                            Some(v.to_json()),
                            "{name}"
                        );
                    }
                }
                let expr = a.get("expr").unwrap().scalar_text().unwrap();
                for vs in selectors(&parse(expr).unwrap()) {
                    assert!(
                        vs.matchers
                            .matchers
                            .iter()
                            .any(|m| m.name == "cluster" && m.value == "local"),
                        "{name}: unscoped {vs} in {expr}"
                    );
                }
            }
        }
        let again = engine.rewrite(&out.data).unwrap();
        assert_eq!(again.data, out.data, "{name}: second rewrite changed it");
    }
    assert_eq!(rules_seen, 976, "every corpus rule was checked");
}

#[test]
fn corpus_rule_files_pass_promtool() {
    let promtools = require!(promtools);
    let engine = local_everything();
    for (name, text) in corpus_rule_files() {
        let out = engine.rewrite(&[("rules.yml".to_string(), text)]).unwrap();
        let mut args = vec!["check", "rules"];
        if DUPLICATE_LINT.contains(&name.as_str()) {
            args.push("--lint=none");
        }
        args.push("rules.yml");
        for (version, promtool) in &promtools {
            let result =
                support::run_promtool_with(promtool, &args, &[("rules.yml", &out.data[0].1)]);
            assert!(
                result.status.success(),
                "{name}: {version} rejects the rewritten file:\n{}",
                support::describe(&result)
            );
        }
    }
}

fn prometheus_yml(engine: &Engine, text: &str) -> String {
    let out = engine
        .rewrite(&[("prometheus.yml".to_string(), text.to_string())])
        .unwrap_or_else(|e| panic!("{e}"));
    out.data[0].1.clone()
}

fn relabels(yml: &str, job: &str, key: &str) -> Vec<serde_json::Value> {
    let root = yaml::parse(yml, Limits::default()).unwrap().unwrap();
    let json = root.to_json();
    json["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == job)
        .unwrap_or_else(|| panic!("no job {job}"))[key]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn local_relabel_rule_is_last_and_never_twice() {
    let engine = engine_from("localClusterName: tools");
    let ours = serde_json::json!({"source_labels": ["__address__"], "target_label": "cluster", "replacement": "tools"});
    let cases = [
        ("no relabel_configs", "scrape_configs:\n- job_name: a\n", 1),
        (
            "null relabel_configs",
            "scrape_configs:\n- job_name: a\n  relabel_configs:\n",
            1,
        ),
        (
            "after labelmap",
            "scrape_configs:\n- job_name: a\n  relabel_configs:\n  - action: labelmap\n    regex: __meta_(.+)\n",
            2,
        ),
        (
            "ours moved after a later labelmap",
            "scrape_configs:\n- job_name: a\n  relabel_configs:\n  - source_labels: [__address__]\n    target_label: cluster\n    replacement: tools\n  - action: labelmap\n    regex: (.+)\n",
            2,
        ),
    ];
    for (name, input, len) in cases {
        let out = prometheus_yml(&engine, input);
        let rules = relabels(&out, "a", "relabel_configs");
        assert_eq!(rules.len(), len, "{name}: {out}");
        assert_eq!(rules.last(), Some(&ours), "{name}");
        assert_eq!(prometheus_yml(&engine, &out), out, "{name}: not idempotent");
    }
}

#[test]
fn single_cluster_job_forces_its_literal_cluster() {
    let engine = engine("config-helm-29.yaml");
    let out = prometheus_yml(&engine, "scrape_configs: []\n");
    let forced = relabels(&out, "federate-workload", "metric_relabel_configs");
    assert_eq!(
        forced,
        vec![serde_json::json!({"target_label": "cluster", "replacement": "workload"})]
    );
}

/// The seed's job federates two clusters: it becomes one job per cluster, each forcing its
/// literal cluster (a target label could be outvoted by a scraped label under honor_labels).
#[test]
fn multi_cluster_job_is_split_per_cluster() {
    let engine = engine("example-config.yaml");
    let out = prometheus_yml(&engine, "scrape_configs: []\n");
    for cluster in ["other", "random"] {
        let job = format!("federation-{cluster}");
        assert_eq!(
            relabels(&out, &job, "metric_relabel_configs"),
            vec![serde_json::json!({"target_label": "cluster", "replacement": cluster})]
        );
        let root = yaml::parse(&out, Limits::default())
            .unwrap()
            .unwrap()
            .to_json();
        let node = root["scrape_configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_name"] == job.as_str())
            .unwrap()
            .clone();
        assert_eq!(node["static_configs"].as_array().unwrap().len(), 1);
        assert_eq!(node["static_configs"][0]["labels"]["cluster"], cluster);
        assert_eq!(node["honor_labels"], true);
        assert_eq!(node["tls_config"]["server_name"], "prom-federation");
    }
}

/// Discovered targets can only be forced through a temporary target label; promfed says so.
#[test]
fn discovered_federation_targets_use_the_temporary_label_with_a_warning() {
    let engine = engine_from(
        "additionalScrapeConfigs:\n- job_name: sd\n  honor_labels: true\n  metrics_path: /federate\n  file_sd_configs: [{files: [x.json]}]\n  relabel_configs:\n  - source_labels: [__meta_filepath]\n    target_label: cluster\n",
    );
    let out = engine
        .rewrite(&[(
            "prometheus.yml".to_string(),
            "scrape_configs: []\n".to_string(),
        )])
        .unwrap();
    let yml = &out.data[0].1;
    assert_eq!(
        relabels(yml, "sd", "relabel_configs").last().unwrap(),
        &serde_json::json!({"source_labels": ["cluster"], "target_label": "promfed_cluster"})
    );
    assert_eq!(
        relabels(yml, "sd", "metric_relabel_configs"),
        vec![
            serde_json::json!({"source_labels": ["promfed_cluster"], "regex": "(.+)", "target_label": "cluster"}),
            serde_json::json!({"action": "labeldrop", "regex": "promfed_cluster"}),
        ]
    );
    assert!(
        out.warnings
            .iter()
            .any(|w| w.message.contains("promfed_cluster")),
        "{:?}",
        out.warnings
    );
}

/// A local job with honor_labels keeps a scraped `cluster` label over the target label, so
/// promfed forces local after metric relabeling, keeping the scraped value as
/// `exported_cluster` as Prometheus itself does without honor_labels.
#[test]
fn local_job_with_honor_labels_is_forced_local() {
    let engine = engine_from("localClusterName: shared-tools");
    let input = "scrape_configs:\n- job_name: pods\n  honor_labels: true\n  static_configs: [{targets: [a:1]}]\n";
    let out = prometheus_yml(&engine, input);
    assert_eq!(
        relabels(&out, "pods", "metric_relabel_configs"),
        vec![
            serde_json::json!({"source_labels": ["cluster"], "target_label": "exported_cluster"}),
            serde_json::json!({"source_labels": ["exported_cluster"], "regex": "shared-tools", "target_label": "exported_cluster", "replacement": ""}),
            serde_json::json!({"target_label": "cluster", "replacement": "shared-tools"}),
        ]
    );
    assert_eq!(prometheus_yml(&engine, &out), out, "not idempotent");
    // Without honor_labels the target label already wins: nothing is added.
    let plain = prometheus_yml(&engine, "scrape_configs:\n- job_name: a\n");
    assert!(relabels(&plain, "a", "metric_relabel_configs").is_empty());
}

#[test]
fn compact_clusters_generate_one_job_each() {
    let engine = engine("config-compact.yaml");
    let out = prometheus_yml(&engine, "scrape_configs: []\n");
    let root = yaml::parse(&out, Limits::default())
        .unwrap()
        .unwrap()
        .to_json();
    let b = root["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "federate-workload-b")
        .unwrap();
    assert_eq!(b["metrics_path"], "/prometheus/federate");
    assert_eq!(b["scheme"], "https");
    assert_eq!(b["honor_labels"], true);
    assert_eq!(b["params"]["match[]"][0], "{__name__!=\"\"}");
    assert_eq!(
        b["static_configs"][0]["targets"][0],
        "prom.workload-b.example.com"
    );
    assert_eq!(b["static_configs"][0]["labels"]["cluster"], "workload-b");
}

/// Rows of input promfed must refuse, and what the message must say.
#[test]
fn errors_name_key_group_rule_and_reason() {
    let engine = engine_from("{}");
    let cases: &[(&str, ErrorKind, &str, &str, &[&str])] = &[
        (
            "broken PromQL",
            ErrorKind::PromQl,
            "recording_rules.yml",
            "groups:\n- name: g1\n  rules:\n  - record: r:sum\n    expr: sum(rate(x[5m])\n",
            &[
                "recording_rules.yml",
                "\"g1\"",
                "record \"r:sum\"",
                "line 5",
                "PromQL",
            ],
        ),
        (
            "rule without expr",
            ErrorKind::Rule,
            "recording_rules.yml",
            "groups:\n- name: g1\n  rules:\n  - record: r\n",
            &["\"g1\"", "record \"r\"", "no expr"],
        ),
        (
            "rule that is neither record nor alert",
            ErrorKind::Rule,
            "rules",
            "groups:\n- name: g\n  rules:\n  - expr: up\n",
            &["rules", "\"g\"", "record", "alert"],
        ),
        (
            "invalid YAML",
            ErrorKind::Yaml,
            "prometheus.yml",
            "scrape_configs:\n- job_name: a\n  static_configs: [\n",
            &["prometheus.yml", "not valid YAML"],
        ),
        (
            "scrape_configs of the wrong type",
            ErrorKind::Shape,
            "prometheus.yml",
            "scrape_configs: 5\n",
            &["prometheus.yml", "scrape_configs must be a list"],
        ),
        (
            "job without name",
            ErrorKind::Scrape,
            "prometheus.yml",
            "scrape_configs:\n- static_configs: []\n",
            &["prometheus.yml", "line 2", "job_name"],
        ),
        (
            "groups of the wrong type",
            ErrorKind::Shape,
            "recording_rules.yml",
            "groups: {a: 1}\n",
            &["recording_rules.yml", "groups must be a list"],
        ),
        (
            "alias bomb",
            ErrorKind::Work,
            "prometheus.yml",
            "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
            &["prometheus.yml", "work budget", "nodes (for a review of"],
        ),
    ];
    for (name, kind, key, value, wants) in cases {
        let err = engine
            .rewrite(&[(key.to_string(), value.to_string())])
            .expect_err(name);
        assert_eq!(err.kind, *kind, "{name}: {err}");
        assert_eq!(err.location.key, *key, "{name}");
        let message = err.to_string();
        for want in *wants {
            assert!(message.contains(want), "{name}: {message:?} lacks {want:?}");
        }
    }
}

/// PromQL errors give line:column in the expression, as promtool does. Rows where promfed
/// points one character away from promtool say so.
#[test]
fn promql_errors_give_the_column_promtool_gives() {
    let _promtool = require!(promtool);
    let engine = engine_from("{}");
    // (expression, promfed's position, promtool's when it differs)
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("sum(rate(x[5m])", "1:16", None),
        ("foo{a=\"b\"", "1:10", None),
        ("foo +", "1:6", None),
        ("nosuchfn(x)", "1:1", None),
        ("x[5m] + 1", "1:1", None),
        ("foo bar", "1:5", None),
        ("sum by (a) foo", "1:12", None),
        ("sum(x) by", "1:10", None),
        ("foo{a b}", "1:7", None),
        ("1 + (2 *)", "1:9", None),
        ("sum(x,)", "1:6", None),
        ("foo[5m][1m]", "1:8", None),
        ("foo}", "1:4", None),
        ("foo{a=~\"(\"}", "1:5", None),
        ("sum(\n  rate(x[5m]) +\n  )", "3:3", None),
        ("sum(rate(x[5m]))) by (a)", "1:17", Some("1:18")),
    ];
    for (expr, ours, theirs) in cases {
        let text = format!(
            "groups:\n- name: g\n  rules:\n  - record: r\n    expr: |-\n{}\n",
            expr.lines()
                .map(|l| format!("      {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let err = engine
            .rewrite(&[("rules.yml".to_string(), text.clone())])
            .expect_err(expr)
            .to_string();
        assert!(
            err.contains(&format!("cannot parse PromQL: {ours}: ")),
            "{expr:?}: {err}"
        );
        let out = support::run_promtool(&["check", "rules", "rules.yml"], &[("rules.yml", &text)]);
        let promtool = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        let want = theirs.unwrap_or(ours);
        assert!(
            promtool.contains(&format!("could not parse expression: {want}: ")),
            "{expr:?}: promtool says {promtool}"
        );
    }
}

#[test]
fn config_errors_name_the_setting() {
    let cases: &[(&str, ConfigErrorKind, &str, &[&str])] = &[
        (
            "federation target without cluster label (the seed's check)",
            ConfigErrorKind::Federation,
            "additionalScrapeConfigs:\n- job_name: fed\n  static_configs:\n  - targets: [a:9090]\n",
            &["\"fed\"", "a:9090", "cluster"],
        ),
        (
            "unknown setting",
            ConfigErrorKind::Setting,
            "localClusterName: x\nclusterLabel: c\n",
            &["clusterLabel"],
        ),
        (
            "unknown nested setting",
            ConfigErrorKind::Setting,
            "rules:\n  matcherPolicy: keep\n  alertMode: local\n",
            &["rules", "alertMode"],
        ),
        (
            "bad policy value",
            ConfigErrorKind::Setting,
            "rules:\n  matcherPolicy: replace\n",
            &["rules.matcherPolicy", "line 2"],
        ),
        (
            "reserved label name",
            ConfigErrorKind::Value,
            "clusterLabelName: __cluster\n",
            &["clusterLabelName"],
        ),
        (
            "compact cluster without targets",
            ConfigErrorKind::Federation,
            "clusters:\n- name: a\n",
            &["clusters[0]", "targets or url"],
        ),
        (
            "duplicate federation job",
            ConfigErrorKind::Federation,
            "clusters:\n- name: a\n  targets: [x:1]\n- name: a\n  targets: [y:1]\n",
            &["federate-a", "twice"],
        ),
        (
            "discovered targets without cluster relabel",
            ConfigErrorKind::Federation,
            "additionalScrapeConfigs:\n- job_name: sd\n  file_sd_configs: [{files: [x.json]}]\n",
            &["\"sd\"", "relabel_configs"],
        ),
    ];
    for (name, kind, text, wants) in cases {
        let err = Config::from_yaml(text)
            .and_then(Engine::new)
            .expect_err(name);
        assert_eq!(err.kind, *kind, "{name}: {err}");
        let err = err.to_string();
        for want in *wants {
            assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
        }
    }
}

/// Configs whose output Prometheus would refuse (issue 16): refused when the config loads,
/// naming the setting, its line and why.
#[test]
fn bad_configs_are_refused_at_load_naming_setting_and_line() {
    let cluster = "clusters:\n- name: a\n  targets: [a:9090]\n";
    let raw = "additionalScrapeConfigs:\n- job_name: fed\n  static_configs:\n  - targets: [a:9090]\n    labels: {cluster: a}\n";
    let cases: &[(&str, String, &[&str])] = &[
        (
            "clusters[].scrape_interval: 30 seconds",
            format!("{cluster}  scrape_interval: 30 seconds\n"),
            &[
                "clusters[0].scrape_interval (line 4)",
                "\"30 seconds\" is not a valid duration",
            ],
        ),
        (
            "scrape_timeout: 1m with scrape_interval: 30s",
            format!("{cluster}  scrape_interval: 30s\n  scrape_timeout: 1m\n"),
            &[
                "clusters[0].scrape_timeout (line 5)",
                "scrape_timeout 1m is greater than the scrape interval 30s",
            ],
        ),
        (
            "scrape_timeout over Prometheus' default interval",
            format!("{cluster}  scrape_timeout: 2m\n"),
            &[
                "clusters[0].scrape_timeout (line 4)",
                "greater than the scrape interval 1m",
                "default global scrape_interval",
            ],
        ),
        (
            "federationAlerts.downFor: 5 minutes",
            "federationAlerts:\n  enabled: true\n  downFor: 5 minutes\n".into(),
            &[
                "federationAlerts.downFor (line 3)",
                "\"5 minutes\" is not a valid duration",
            ],
        ),
        (
            "cert_fle in a clusters tls_config",
            format!("{cluster}  tls_config:\n    cert_fle: /x\n"),
            &[
                "clusters[0].tls_config.cert_fle (line 5)",
                "field cert_fle not found in type config.TLSConfig",
            ],
        ),
        (
            "cert_fle in a raw job's tls_config",
            format!("{raw}  tls_config:\n    ca_file: /ca\n    cert_fle: /x\n"),
            &[
                "additionalScrapeConfigs[0].tls_config.cert_fle (line 8, job \"fed\")",
                "field cert_fle not found in type config.TLSConfig",
            ],
        ),
        (
            "scrape_intervall in a raw job",
            format!("{raw}  scrape_intervall: 30s\n"),
            &[
                "additionalScrapeConfigs[0].scrape_intervall (line 6, job \"fed\")",
                "field scrape_intervall not found in type config.ScrapeConfig",
            ],
        ),
        (
            "label bad-label in a clusters entry",
            format!("{cluster}  labels: {{bad-label: x}}\n"),
            &[
                "clusters[0].labels.bad-label (line 4)",
                "\"bad-label\" is not a valid label name",
            ],
        ),
        (
            "label bad-label in a raw job's target labels",
            raw.replace("{cluster: a}", "{cluster: a, bad-label: x}"),
            &[
                "additionalScrapeConfigs[0].static_configs[0].labels.bad-label (line 5, job \"fed\")",
                "not a valid label name",
            ],
        ),
        (
            "clusterLabelName bad-label",
            "clusterLabelName: bad-label\n".into(),
            &["clusterLabelName (line 1)", "\"bad-label\""],
        ),
        (
            "unknown relabel action in a raw job",
            format!("{raw}  relabel_configs:\n  - action: replce\n"),
            &[
                "additionalScrapeConfigs[0].relabel_configs[0].action (line 7, job \"fed\")",
                "unknown relabel action \"replce\"",
            ],
        ),
        (
            "relabel regex that is not RE2",
            format!("{raw}  metric_relabel_configs:\n  - action: labeldrop\n    regex: (?<x>a)\n"),
            &["metric_relabel_configs[0].regex (line 8", "not RE2 syntax"],
        ),
        (
            "duration with decimals in a raw job",
            format!("{raw}  scrape_interval: 1.5m\n"),
            &["scrape_interval (line 6", "not a valid duration"],
        ),
        (
            "a boolean that is not one",
            format!("{raw}  honor_labels: sure\n"),
            &["honor_labels (line 6", "must be true or false"],
        ),
        (
            "two kinds of auth in a clusters entry",
            format!("{cluster}  basic_auth: {{username: u, password_file: /p}}\n  authorization: {{credentials_file: /c}}\n"),
            &["clusters[0]", "\"federate-a\"", "at most one of basic_auth"],
        ),
        (
            "a target with a path",
            "clusters:\n- name: a\n  targets: [a:9090/prometheus]\n".into(),
            &["clusters[0].targets[0] (line 3)", "give url instead"],
        ),
        (
            "federationAlerts.key that is no ConfigMap key",
            "federationAlerts:\n  key: alerts/x.yml\n".into(),
            &["federationAlerts.key (line 2)", "ConfigMap data key"],
        ),
        // Issue 16, item 2: a workload cluster may not take the local cluster's name.
        (
            "clusters[].name equal to localClusterName",
            "localClusterName: tools\nclusters:\n- name: tools\n  targets: [a:9090]\n".into(),
            &[
                "clusters[0].name (line 3)",
                "\"tools\" is the localClusterName",
            ],
        ),
        (
            "raw job target labelled with the local cluster",
            format!("localClusterName: tools\n{raw}  - targets: [b:9090]\n    labels: {{cluster: tools}}\n"),
            &[
                "additionalScrapeConfigs[0].static_configs[1].labels.cluster (line 8, job \"fed\")",
                "\"tools\" is the localClusterName",
            ],
        ),
        (
            "discovered raw job relabelled to the local cluster",
            "additionalScrapeConfigs:\n- job_name: sd\n  file_sd_configs: [{files: [x.json]}]\n  relabel_configs:\n  - target_label: cluster\n    replacement: local\n".into(),
            &[
                "additionalScrapeConfigs[0].relabel_configs[0].replacement (line 6, job \"sd\")",
                "\"local\" is the localClusterName",
            ],
        ),
    ];
    for (name, text, wants) in cases {
        let err = match Config::from_yaml(text).and_then(Engine::new) {
            Ok(_) => panic!("{name}: accepted\n{text}"),
            Err(e) => e,
        };
        // The setting and line the message names are the error's, for code.
        let at = match err.line {
            Some(line) => format!("{} (line {line}", err.path),
            None => err.path.clone(),
        };
        assert!(
            !err.path.is_empty() && err.to_string().contains(&at),
            "{name}: {err:?}"
        );
        let err = err.to_string();
        for want in *wants {
            assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
        }
    }
}

/// A federation job's scrape_timeout is checked against the ConfigMap's own global
/// scrape_interval when the job has none: Prometheus would refuse the whole config.
#[test]
fn federation_timeout_over_the_configmaps_global_interval_is_refused() {
    let engine = engine_from("clusters:\n- name: a\n  targets: [a:9090]\n  scrape_timeout: 30s\n");
    let ok = "global:\n  scrape_interval: 1m\nscrape_configs: []\n";
    assert!(
        engine
            .rewrite(&[("prometheus.yml".into(), ok.into())])
            .is_ok()
    );
    let fast = "global:\n  scrape_interval: 15s\nscrape_configs: []\n";
    let err = engine
        .rewrite(&[("prometheus.yml".into(), fast.into())])
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Scrape, "{err}");
    let err = err.to_string();
    for want in [
        "prometheus.yml",
        "job \"federate-a\"",
        "(line 2)",
        "scrape_timeout 30s is greater than the scrape interval 15s",
        "clusters[0]",
    ] {
        assert!(err.contains(want), "{err:?} lacks {want:?}");
    }
}

#[test]
fn warnings_for_kept_matchers_and_inline_passwords() {
    let engine = engine_from(
        "clusters:\n- name: w\n  targets: [w:9090]\n  basic_auth: {username: u, password: hunter2}\n",
    );
    let out = engine
        .rewrite(&[(
            "recording_rules.yml".to_string(),
            "groups:\n- name: g\n  rules:\n  - record: r\n    expr: x{cluster=\"w\"}\n".to_string(),
        )])
        .unwrap();
    let warnings: Vec<String> = out.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("record \"r\"") && w.contains("cluster=\"w\"")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("basic_auth.password") && !w.contains("hunter2")),
        "{warnings:?}"
    );
}

#[test]
fn excluded_groups_and_rules_are_untouched() {
    let engine =
        engine_from("rules:\n  exclude:\n  - group: raw\n  - group: g\n    rule: keep_me\n");
    let text = "groups:\n- name: raw\n  rules:\n  - record: a\n    expr: xa\n- name: g\n  rules:\n  - record: keep_me\n    expr: ya\n  - record: scope_me\n    expr: za\n";
    let out = engine
        .rewrite(&[("r.yml".to_string(), text.to_string())])
        .unwrap();
    let root = yaml::parse(&out.data[0].1, Limits::default())
        .unwrap()
        .unwrap()
        .to_json();
    assert_eq!(root["groups"][0]["rules"][0]["expr"], "xa");
    assert_eq!(root["groups"][1]["rules"][0]["expr"], "ya");
    assert_eq!(
        root["groups"][1]["rules"][1]["expr"],
        "za{cluster=\"local\"}"
    );
}

#[test]
fn alerting_modes() {
    let text = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n";
    let cases = [
        ("keep", None, "up == 0"),
        ("label-only", Some("local"), "up == 0"),
        ("local", Some("local"), "up{cluster=\"local\"} == 0"),
    ];
    for (mode, label, expr) in cases {
        let engine = engine_from(&format!("rules:\n  alerting: {mode}\n"));
        let out = engine
            .rewrite(&[("a.yml".to_string(), text.to_string())])
            .unwrap();
        let root = yaml::parse(&out.data[0].1, Limits::default())
            .unwrap()
            .unwrap()
            .to_json();
        let rule = &root["groups"][0]["rules"][0];
        assert_eq!(rule["expr"], expr, "{mode}");
        assert_eq!(rule["labels"]["cluster"].as_str(), label, "{mode}");
    }
}

#[test]
fn federation_alerts_group_is_added_once() {
    let engine = engine("config-compact.yaml");
    let data = vec![
        (
            "prometheus.yml".to_string(),
            "rule_files: [/etc/config/alerting_rules.yml]\nscrape_configs: []\n".to_string(),
        ),
        ("alerting_rules.yml".to_string(), "{}\n".to_string()),
    ];
    let out = engine.rewrite(&data).unwrap();
    let alerts = yaml::parse(&out.data[1].1, Limits::default())
        .unwrap()
        .unwrap()
        .to_json();
    let rules = alerts["groups"][0]["rules"].as_array().unwrap();
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "FederationTargetDown",
            "FederationScrapeSlow",
            "FederationTooManySamples"
        ]
    );
    // Its own expressions are not scoped to local: they watch the federation targets.
    assert_eq!(
        rules[0]["expr"],
        "up{job=~\"federate-workload-a|federate-workload-b\"} == 0"
    );
    let again = engine.rewrite(&out.data).unwrap();
    assert_eq!(again.data, out.data);
}

#[test]
fn engine_error_type_is_exhaustive_in_messages() {
    // The location renders every part it has.
    let location = engine::Location {
        key: "recording_rules.yml".into(),
        group: Some("g".into()),
        item: Some("record \"r\"".into()),
        line: Some(7),
    };
    assert_eq!(
        location.to_string(),
        "recording_rules.yml: group \"g\", record \"r\" (line 7)"
    );
}

#[test]
fn rule_label_on_another_cluster_is_replaced_with_a_warning() {
    let engine = engine_from("{}");
    let text =
        "groups:\n- name: g\n  rules:\n  - record: r\n    expr: up\n    labels: {cluster: other}\n";
    let out = engine
        .rewrite(&[("r.yml".to_string(), text.to_string())])
        .unwrap();
    let root = yaml::parse(&out.data[0].1, Limits::default())
        .unwrap()
        .unwrap()
        .to_json();
    assert_eq!(root["groups"][0]["rules"][0]["labels"]["cluster"], "local");
    assert!(
        out.warnings
            .iter()
            .any(|w| w.to_string().contains("cluster=\"other\"")),
        "{:?}",
        out.warnings
    );
}

#[test]
fn broken_yaml_is_refused_only_where_a_rule_file_is_expected() {
    let engine = engine_from("{}");
    let broken = "groups:\n- name: g\n  rules: [\n";
    // A key named like a YAML file that looks like a rule file: refused.
    let err = engine
        .rewrite(&[("recording_rules.yml".to_string(), broken.to_string())])
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Yaml, "{err}");
    assert_eq!(err.location.key, "recording_rules.yml");
    // Free text that happens to mention groups: left alone.
    let notes = vec![("NOTES".to_string(), "groups: [ are not here".to_string())];
    assert_eq!(engine.rewrite(&notes).unwrap().data, notes);
}
