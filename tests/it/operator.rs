//! prometheus-operator's objects through the engine: PrometheusRule specs rewritten exactly as
//! rule files in a ConfigMap, the Prometheus object's default scrape class, the federation jobs
//! as ScrapeConfig objects; and the real operator on a local API server
//! (`PROMFED_OPERATOR=1 scripts/kube-local.sh up`), generating its config from such objects.

use promfed::Engine;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use promfed::config::{AlertingMode, Config};
use promfed::engine::operator::prometheus::{FEDERATION_CLASS, LOCAL_CLASS};
use promfed::engine::{Work, WorkLimits};
use promfed::promql::{parse, selectors};
use promfed::yaml::{self, Limits, Node};
use serde_json::{Value as Json, json};

use crate::support::kube::{self, Cluster};
use crate::support::operator::{self, Generated};
use crate::support::{self, describe, read_data, require};

fn engine(text: &str) -> Engine {
    Engine::new(Config::from_yaml(text).expect("config parses")).expect("config is valid")
}

fn parse_yaml(text: &str) -> Node {
    yaml::parse(text, Limits::default())
        .expect("valid YAML")
        .expect("a document")
}

fn work() -> Work {
    Work::new(WorkLimits::for_data(&[]))
}

/// Label objects `promfed.io/rewrite: "false"`: the shared cluster's webhook (the
/// deploy/base config) leaves them as the test made them.
fn opted_out(mut objects: Vec<Json>) -> Vec<Json> {
    for object in &mut objects {
        object["metadata"]["labels"]["promfed.io/rewrite"] = json!("false");
    }
    objects
}

/// A PrometheusRule's spec comes out exactly as the same groups in a ConfigMap rule file, in
/// every alerting mode, whether it came as YAML (render) or as JSON (admission); a second
/// rewrite changes nothing.
#[test]
fn prometheus_rule_spec_is_rewritten_as_the_rule_file() {
    let modes = [
        ("keep", AlertingMode::Keep),
        ("local", AlertingMode::Local),
        ("label-only", AlertingMode::LabelOnly),
    ];
    let mut rules_rewritten = 0;
    for (mode_name, mode) in modes {
        let mut config = Config::default();
        config.rules.alerting = mode;
        let engine = Engine::new(config).unwrap();
        for (name, text) in crate::engine::corpus_rule_files() {
            let case = format!("{name} ({mode_name})");
            let file = engine
                .rewrite(&[("rules.yml".to_string(), text.clone())])
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let object = format!("PrometheusRule monitoring/{name}");

            let mut spec = parse_yaml(&text);
            let out = engine
                .rewrite_prometheus_rule(&mut spec, &object, &mut work())
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(out.changed, file.data[0].1 != text, "{case}: changed");
            if out.changed {
                assert_eq!(
                    yaml::emit_in_place(&text, &spec),
                    file.data[0].1,
                    "{case}: YAML spec"
                );
            } else {
                assert_eq!(
                    spec.to_json(),
                    parse_yaml(&text).to_json(),
                    "{case}: YAML spec"
                );
            }
            assert_eq!(out.stats, file.stats, "{case}: stats");
            assert_eq!(out.warnings.len(), file.warnings.len(), "{case}: warnings");
            rules_rewritten += out.stats.rules_rewritten;

            let mut from_json = Node::from_json(&parse_yaml(&text).to_json());
            engine
                .rewrite_prometheus_rule(&mut from_json, &object, &mut work())
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(
                from_json.to_json(),
                parse_yaml(&file.data[0].1).to_json(),
                "{case}: JSON spec"
            );

            let again = engine
                .rewrite_prometheus_rule(&mut spec, &object, &mut work())
                .unwrap();
            assert!(!again.changed, "{case}: second rewrite changed it");
        }
    }
    assert!(rules_rewritten > 0);
}

/// kube-prometheus' own PrometheusRule object, as the API server would send its JSON: every
/// alert scoped and labelled with `alerting: local`, untouched by default.
#[test]
fn kube_prometheus_object_through_its_json() {
    let object = parse_yaml(&read_data(
        "operator/prometheusOperator-prometheusRule.yaml",
    ))
    .to_json();
    let rows: &[(&str, &str, bool)] = &[
        ("default keeps alerts", "{}", false),
        ("alerts local", "rules: {alerting: local}", true),
        (
            "alerts labelled only",
            "rules: {alerting: label-only}",
            true,
        ),
        (
            "every group excluded",
            "rules: {alerting: local, exclude: [{group: prometheus-operator}, {group: config-reloaders}]}",
            false,
        ),
    ];
    for (name, config, changes) in rows {
        let engine = engine(config);
        let mut spec = Node::from_json(&object["spec"]);
        let out = engine
            .rewrite_prometheus_rule(
                &mut spec,
                "PrometheusRule monitoring/prometheus-operator-rules",
                &mut work(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out.changed, *changes, "{name}");
        let spec = spec.to_json();
        if !changes {
            assert_eq!(spec, object["spec"], "{name}");
            continue;
        }
        for group in spec["groups"].as_array().unwrap() {
            for rule in group["rules"].as_array().unwrap() {
                assert_eq!(rule["labels"]["cluster"], "local", "{name}: {rule}");
                assert_eq!(rule["labels"]["severity"], "warning", "{name}: {rule}");
                let expr = rule["expr"].as_str().unwrap();
                assert!(expr.ends_with('\n'), "{name}: block scalar kept: {expr:?}");
                let scoped = selectors(&parse(expr).unwrap())
                    .iter()
                    .all(|vs| vs.matchers.matchers.iter().any(|m| m.name == "cluster"));
                assert_eq!(scoped, config.contains("alerting: local"), "{name}: {expr}");
            }
        }
    }
}

/// `expr` as an integer (the operator's schema allows it): kept an integer, the rule labelled.
#[test]
fn integer_expressions_stay_integers() {
    let engine = engine("{}");
    let mut spec = Node::from_json(&json!({"groups": [{"name": "g", "rules": [
        {"record": "one", "expr": 1},
        {"record": "up:sum", "expr": "sum(up)"},
    ]}]}));
    let out = engine
        .rewrite_prometheus_rule(&mut spec, "PrometheusRule ns/x", &mut work())
        .unwrap();
    assert!(out.changed);
    assert_eq!(
        spec.to_json(),
        json!({"groups": [{"name": "g", "rules": [
            {"record": "one", "expr": 1, "labels": {"cluster": "local"}},
            {"record": "up:sum", "expr": "sum(up{cluster=\"local\"})", "labels": {"cluster": "local"}},
        ]}]})
    );
}

/// A spec promfed cannot rewrite is refused with the object, the group and the rule named.
#[test]
fn errors_name_the_object_group_and_rule() {
    let engine = engine("{}");
    let object = "PrometheusRule monitoring/broken";
    let rows: &[(&str, Json, &str)] = &[
        (
            "broken PromQL",
            json!({"groups": [{"name": "g", "rules": [{"record": "r", "expr": "rate(x[5m]"}]}]}),
            "PrometheusRule monitoring/broken: group \"g\", record \"r\": ",
        ),
        (
            "no expr",
            json!({"groups": [{"name": "g", "rules": [{"alert": "A"}]}]}),
            "PrometheusRule monitoring/broken: group \"g\", alert \"A\": rule has no expr",
        ),
        (
            "spec not a mapping",
            json!(["groups"]),
            "PrometheusRule monitoring/broken: spec must be a mapping",
        ),
        (
            "groups not a list",
            json!({"groups": "x"}),
            "PrometheusRule monitoring/broken: groups must be a list",
        ),
    ];
    for (name, spec, want) in rows {
        let mut spec = Node::from_json(spec);
        let err = engine
            .rewrite_prometheus_rule(&mut spec, object, &mut work())
            .expect_err(name);
        assert!(err.to_string().starts_with(want), "{name}: {err}");
    }
    // A spec without groups, or null: nothing to do.
    for spec in [json!({}), json!(null), json!({"groups": null})] {
        let mut node = Node::from_json(&spec);
        let out = engine
            .rewrite_prometheus_rule(&mut node, object, &mut work())
            .unwrap();
        assert!(!out.changed, "{spec}");
    }
}

/// promfed's rules of the default scrape class, for `cluster`/`local`.
fn class_rules() -> (Json, Json) {
    let relabelings = json!([
        {"sourceLabels": ["__address__"], "targetLabel": "cluster", "replacement": "local", "action": "replace"},
    ]);
    let metric_relabelings = json!([
        {"sourceLabels": ["cluster"], "regex": "local", "targetLabel": "cluster", "replacement": "", "action": "replace"},
        {"sourceLabels": ["cluster"], "regex": "(.+)", "targetLabel": "exported_cluster", "replacement": "$1", "action": "replace"},
        {"targetLabel": "cluster", "replacement": "local", "action": "replace"},
    ]);
    (relabelings, metric_relabelings)
}

fn concat(a: &Json, b: &Json) -> Json {
    let mut out = a.as_array().unwrap().clone();
    out.extend(b.as_array().unwrap().iter().cloned());
    Json::Array(out)
}

/// The Prometheus object: a default scrape class with promfed's rules (an existing default
/// class keeps its own rules first), the federation class when there are federation jobs,
/// and never twice.
#[test]
fn prometheus_object_gets_the_local_scrape_class() {
    let (relabelings, metric_relabelings) = class_rules();
    let own = json!([{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}]);
    let ours = |extra: Json| {
        let mut class = json!({"name": LOCAL_CLASS, "default": true});
        for (k, v) in extra.as_object().unwrap() {
            class[k] = v.clone();
        }
        class["relabelings"] = relabelings.clone();
        class["metricRelabelings"] = metric_relabelings.clone();
        class
    };
    let federation = "clusters: [{name: a, targets: ['a:9090']}]";
    let rows: Vec<(&str, &str, Json, Json)> = vec![
        (
            "no scrape classes",
            "{}",
            json!({"version": "v3.5.0", "replicas": 1}),
            json!({"version": "v3.5.0", "replicas": 1, "scrapeClasses": [ours(json!({}))]}),
        ),
        (
            "null spec",
            "{}",
            json!(null),
            json!({"scrapeClasses": [ours(json!({}))]}),
        ),
        (
            "a default class keeps its rules first",
            "{}",
            json!({"scrapeClasses": [
                {"name": "other"},
                {"name": "istio", "default": true, "relabelings": own, "tlsConfig": {"insecureSkipVerify": true}},
            ]}),
            json!({"scrapeClasses": [
                {"name": "other"},
                {"name": "istio", "default": true, "relabelings": concat(&own, &relabelings),
                 "tlsConfig": {"insecureSkipVerify": true}, "metricRelabelings": metric_relabelings},
            ]}),
        ),
        (
            "promfed's class made not default is the default again",
            "{}",
            json!({"scrapeClasses": [{"name": LOCAL_CLASS, "default": false}]}),
            json!({"scrapeClasses": [ours(json!({}))]}),
        ),
        (
            "federation jobs: the federation class too",
            federation,
            json!({"scrapeClasses": []}),
            json!({"scrapeClasses": [ours(json!({})), {"name": FEDERATION_CLASS}]}),
        ),
    ];
    for (name, config, spec, want) in rows {
        let engine = engine(config);
        let object = "Prometheus monitoring/k8s";
        let mut node = Node::from_json(&spec);
        let out = engine
            .rewrite_prometheus(&mut node, object)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.changed, "{name}");
        assert_eq!(node.to_json(), want, "{name}");
        let again = engine.rewrite_prometheus(&mut node, object).unwrap();
        assert!(!again.changed, "{name}: second rewrite changed it");
        assert_eq!(node.to_json(), want, "{name}: second rewrite");
    }

    // promfed's rules moved away from the end (a rule added after them) are moved back once.
    let engine = engine("{}");
    let mut node = Node::from_json(&json!({"scrapeClasses": [ours(json!({}))]}));
    let relabels = node.get_mut("scrapeClasses").unwrap().as_seq_mut().unwrap()[0]
        .get_mut("relabelings")
        .unwrap()
        .as_seq_mut()
        .unwrap();
    relabels.push(Node::from_json(&own[0]));
    assert!(engine.rewrite_prometheus(&mut node, "p").unwrap().changed);
    assert_eq!(
        node.to_json()["scrapeClasses"][0]["relabelings"],
        concat(&own, &relabelings)
    );

    let bad: &[(&str, Json, &str)] = &[
        (
            "spec a list",
            json!([]),
            "Prometheus monitoring/k8s: spec must be a mapping",
        ),
        (
            "scrapeClasses a mapping",
            json!({"scrapeClasses": {}}),
            "Prometheus monitoring/k8s: spec.scrapeClasses must be a list",
        ),
        (
            "relabelings a mapping",
            json!({"scrapeClasses": [{"name": "x", "default": true, "relabelings": {}}]}),
            "Prometheus monitoring/k8s, scrape class \"x\": relabelings must be a list",
        ),
    ];
    for (name, spec, want) in bad {
        let mut node = Node::from_json(spec);
        let err = engine
            .rewrite_prometheus(&mut node, "Prometheus monitoring/k8s")
            .expect_err(name);
        assert!(err.to_string().starts_with(want), "{name}: {err}");
    }
    let mut node =
        Node::from_json(&json!({"scrapeClasses": [{"name": FEDERATION_CLASS, "default": true}]}));
    let err = self::engine(federation)
        .rewrite_prometheus(&mut node, "p")
        .expect_err("the federation class as default");
    assert!(
        err.to_string().contains("is the default scrape class"),
        "{err}"
    );
}

/// The federation jobs as ScrapeConfig objects: one per workload cluster (the seed's job of
/// two clusters split), the cluster forced per object, the federation scrape class, TLS and
/// basic auth as references to the Secrets the operator mounts, the config's namespace and
/// labels.
#[test]
fn federation_jobs_become_scrape_configs() {
    let config = r#"
localClusterName: hub
additionalScrapeConfigs:
- job_name: federation
  static_configs:
  - targets: [prom.other.example:443]
    labels: {cluster: other}
  - targets: [prom.random.example:443]
    labels: {cluster: random}
  scheme: https
  metrics_path: /federate
  params: {'match[]': ['{__name__!=""}']}
  honor_labels: true
  tls_config:
    ca_file: /etc/prometheus/configmaps/federation-ca/ca.crt
    cert_file: /etc/prometheus/secrets/federation-client/tls.crt
    key_file: /etc/prometheus/secrets/federation-client/tls.key
    server_name: prom-federation
clusters:
- name: workload-b
  url: https://prom.workload-b.example/prometheus
  basic_auth:
    username_file: /etc/prometheus/secrets/workload-b-auth/username
    password_file: /etc/prometheus/secrets/workload-b-auth/password
  scrape_interval: 1m
operator:
  scrapeConfigs:
    namespace: monitoring
    labels: {release: kube-prometheus-stack}
"#;
    let objects: Vec<Json> = engine(config)
        .scrape_configs()
        .expect("scrape configs")
        .iter()
        .map(Node::to_json)
        .collect();
    let tls = json!({
        "ca": {"configMap": {"name": "federation-ca", "key": "ca.crt"}},
        "cert": {"secret": {"name": "federation-client", "key": "tls.crt"}},
        "keySecret": {"name": "federation-client", "key": "tls.key"},
        "serverName": "prom-federation",
    });
    let metadata = |name: &str| {
        json!({
            "name": name,
            "namespace": "monitoring",
            "labels": {"app.kubernetes.io/managed-by": "promfed", "release": "kube-prometheus-stack"},
        })
    };
    let raw = |cluster: &str, target: &str| {
        json!({
            "apiVersion": "monitoring.coreos.com/v1alpha1",
            "kind": "ScrapeConfig",
            "metadata": metadata(&format!("federation-{cluster}")),
            "spec": {
                "scrapeClass": FEDERATION_CLASS,
                "jobName": format!("federation-{cluster}"),
                "staticConfigs": [{"targets": [target], "labels": {"cluster": cluster}}],
                "scheme": "HTTPS",
                "metricsPath": "/federate",
                "params": {"match[]": ["{__name__!=\"\"}"]},
                "honorLabels": true,
                "tlsConfig": tls,
                "metricRelabelings": [{"targetLabel": "cluster", "replacement": cluster}],
            },
        })
    };
    let want = vec![
        raw("other", "prom.other.example:443"),
        raw("random", "prom.random.example:443"),
        json!({
            "apiVersion": "monitoring.coreos.com/v1alpha1",
            "kind": "ScrapeConfig",
            "metadata": metadata("federate-workload-b"),
            "spec": {
                "scrapeClass": FEDERATION_CLASS,
                "jobName": "federate-workload-b",
                "honorLabels": true,
                "metricsPath": "/prometheus/federate",
                "scheme": "HTTPS",
                "params": {"match[]": ["{__name__!=\"\"}"]},
                "scrapeInterval": "1m",
                "basicAuth": {
                    "username": {"name": "workload-b-auth", "key": "username"},
                    "password": {"name": "workload-b-auth", "key": "password"},
                },
                "staticConfigs": [{"targets": ["prom.workload-b.example"], "labels": {"cluster": "workload-b"}}],
                "metricRelabelings": [{"targetLabel": "cluster", "replacement": "workload-b"}],
            },
        }),
    ];
    assert_eq!(objects, want);
}

/// What a ScrapeConfig cannot say is refused naming the setting, the job and why; bad
/// `operator` settings are refused at load.
#[test]
fn scrape_config_errors_name_the_job_and_setting() {
    let rows: &[(&str, &str, &str)] = &[
        (
            "inline password",
            "clusters: [{name: a, targets: ['a:443'], basic_auth: {username: u, password: p}}]",
            "clusters[0], job \"federate-a\": cannot be a ScrapeConfig object: basic_auth.username is inline",
        ),
        (
            "a CA file elsewhere",
            "clusters: [{name: a, targets: ['a:443'], tls_config: {ca_file: /etc/ca.crt}}]",
            "tls_config.ca_file \"/etc/ca.crt\" is neither /etc/prometheus/secrets/<secret>/<key>",
        ),
        (
            "two jobs, one object name",
            "federationJobPrefix: fed_\nclusters: [{name: a, targets: ['a:443']}]\n\
             additionalScrapeConfigs: [{job_name: fed-a, static_configs: [{targets: ['b:443'], labels: {cluster: b}}]}]",
            "cannot be a ScrapeConfig object: its object name \"fed-a\" is also job \"fed_a\"'s",
        ),
        (
            "discovered targets",
            "additionalScrapeConfigs: [{job_name: f, dns_sd_configs: [{names: [x]}], \
             relabel_configs: [{target_label: cluster, replacement: a}]}]",
            "additionalScrapeConfigs[0], job \"f\": cannot be a ScrapeConfig object: dns_sd_configs: \
             promfed writes ScrapeConfig objects for static targets only",
        ),
    ];
    for (name, config, want) in rows {
        let err = engine(config).scrape_configs().expect_err(name);
        assert!(err.to_string().contains(want), "{name}: {err}");
    }
    let bad: &[(&str, &str)] = &[
        (
            "operator: {scrapeConfigs: {namespace: Monitoring}}",
            "operator.scrapeConfigs.namespace (line 1): \"Monitoring\" is not a Kubernetes namespace name",
        ),
        (
            "operator: {scrapeConfigs: {labels: {release: 'a b'}}}",
            "operator.scrapeConfigs.labels.release (line 1): \"a b\" is not a Kubernetes label value",
        ),
        (
            "operator: {scrapeConfig: {}}",
            "invalid setting operator.scrapeConfig (line 1): unknown field `scrapeConfig`",
        ),
    ];
    for (config, want) in bad {
        let err = Config::from_yaml(config).expect_err(config);
        assert!(err.to_string().starts_with(want), "{config}: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// The real operator on a local API server

/// The cluster with the operator the tests below share, started on first use.
fn shared() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| kube::tools_built().then(operator::up))
        .as_ref()
}

/// The Prometheus version the objects ask for: one the operator knows, accepted by the
/// Prometheus 3 the tests run.
const VERSION: &str = "v3.5.0";

/// promtool 3 accepts the config and every rule file the operator generated.
fn assert_promtool_accepts(generated: &Generated, promtool: &Path) {
    let out = support::run_promtool_with(
        promtool,
        &["check", "config", "--syntax-only", "prometheus.yml"],
        &[("prometheus.yml", &generated.config)],
    );
    assert!(
        out.status.success(),
        "promtool check config: {}\n{}",
        describe(&out),
        generated.config
    );
    for (key, text) in &generated.rule_files {
        let out = support::run_promtool_with(
            promtool,
            &["check", "rules", "rules.yaml"],
            &[("rules.yaml", text)],
        );
        assert!(
            out.status.success(),
            "promtool check rules {key}: {}\n{text}",
            describe(&out)
        );
    }
}

/// A plain stack (no promfed: the objects opt out of its webhook): the operator generates the config Secret and the rule
/// ConfigMaps from it, with the objects' jobs and rules as written.
#[test]
fn operator_generates_config_and_rules_from_a_plain_stack() {
    let cluster = crate::cluster!();
    let release = require!(prometheus3_release);
    let namespace = "op-plain";
    cluster.namespace(namespace);
    let mut objects = operator::stack(namespace, VERSION);
    objects.push(json!({
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "ScrapeConfig",
        "metadata": {"name": "federation", "namespace": namespace},
        "spec": {
            "honorLabels": true,
            "metricsPath": "/federate",
            "params": {"match[]": ["{__name__!=\"\"}"]},
            "staticConfigs": [{"targets": ["127.0.0.1:9091"], "labels": {"cluster": "a"}}],
        },
    }));
    operator::apply(cluster, &opted_out(objects));
    let monitor = format!("serviceMonitor/{namespace}/node-exporter/0");
    let federation = format!("scrapeConfig/{namespace}/federation");
    let generated = operator::generated(cluster, namespace, "hub", |g| {
        g.config.contains(&monitor) && g.config.contains(&federation) && g.rules().len() == 3
    });

    let rules = generated.rules();
    let rule = |name: &str| rules[&("hub.rules".to_string(), name.to_string())].clone();
    assert_eq!(
        rule("job:up:sum"),
        json!({"record": "job:up:sum", "expr": "sum by (job) (up)"})
    );
    assert_eq!(rule("one")["expr"], json!(1));
    assert_eq!(rule("TargetDown")["labels"], json!({"severity": "warning"}));
    let job = generated.job(&monitor);
    assert_eq!(job["honor_labels"], json!(true));
    let labels_cluster = |rules: &Json| {
        rules
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["target_label"] == "cluster")
    };
    assert!(!labels_cluster(&job["relabel_configs"]), "{job}");
    assert!(!labels_cluster(&job["metric_relabel_configs"]), "{job}");
    let job = generated.job(&federation);
    assert_eq!(job["static_configs"][0]["labels"]["cluster"], "a");
    assert_promtool_accepts(&generated, &release.promtool);
}

/// The same stack as promfed rewrites it (the engine's operator functions, applied here to
/// the objects before they are created, opted out of the webhook, which does the same: `webhook_rewrites_operator_objects_and_they_federate`): the
/// operator's config labels the local jobs and forces the label on their samples, the
/// federation jobs force their own cluster and carry no local label, the recording rules are
/// scoped and labelled; promtool 3 accepts all of it.
#[test]
fn operator_generates_a_federated_config_from_rewritten_objects() {
    let cluster = crate::cluster!();
    let release = require!(prometheus3_release);
    let namespace = "op-promfed";
    cluster.namespace(namespace);
    let engine = engine(&format!(
        "clusters:\n\
         - {{name: workload-a, targets: ['127.0.0.1:9091']}}\n\
         - {{name: workload-b, targets: ['127.0.0.1:9092'], scrape_interval: 30s}}\n\
         operator: {{scrapeConfigs: {{namespace: {namespace}, labels: {{release: hub}}}}}}\n"
    ));
    let mut objects = operator::stack(namespace, VERSION);
    for object in &mut objects {
        let name = format!(
            "{} {namespace}/{}",
            object["kind"].as_str().unwrap(),
            object["metadata"]["name"].as_str().unwrap()
        );
        let mut spec = Node::from_json(&object["spec"]);
        let out = match object["kind"].as_str().unwrap() {
            "Prometheus" => engine.rewrite_prometheus(&mut spec, &name).unwrap(),
            "PrometheusRule" => engine
                .rewrite_prometheus_rule(&mut spec, &name, &mut work())
                .unwrap(),
            _ => continue,
        };
        assert!(out.changed, "{name}");
        object["spec"] = spec.to_json();
    }
    objects.extend(engine.scrape_configs().unwrap().iter().map(Node::to_json));
    operator::apply(cluster, &opted_out(objects));
    let monitor = format!("serviceMonitor/{namespace}/node-exporter/0");
    let federation = |c: &str| format!("scrapeConfig/{namespace}/federate-{c}");
    let generated = operator::generated(cluster, namespace, "hub", |g| {
        g.config.contains(&monitor)
            && g.config.contains(&federation("workload-a"))
            && g.config.contains(&federation("workload-b"))
            && g.rules().len() == 3
    });

    let rules = generated.rules();
    let rule = |name: &str| rules[&("hub.rules".to_string(), name.to_string())].clone();
    assert_eq!(
        rule("job:up:sum"),
        json!({"record": "job:up:sum", "expr": "sum by (job) (up{cluster=\"local\"})", "labels": {"cluster": "local"}})
    );
    assert_eq!(
        rule("one"),
        json!({"record": "one", "expr": 1, "labels": {"cluster": "local"}})
    );
    assert_eq!(
        rule("TargetDown")["expr"],
        "up == 0\n",
        "alerts kept by default"
    );

    // The operator's spelling of promfed's rules: snake case, `action: replace` added.
    let snake = |rules: Json| -> Vec<Json> {
        rules
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut out = serde_json::Map::new();
                for (k, v) in r.as_object().unwrap() {
                    let k = match k.as_str() {
                        "sourceLabels" => "source_labels",
                        "targetLabel" => "target_label",
                        k => k,
                    };
                    out.insert(k.to_string(), v.clone());
                }
                out.insert("action".into(), json!("replace"));
                Json::Object(out)
            })
            .collect()
    };
    let (relabelings, metric_relabelings) = class_rules();
    let job = generated.job(&monitor);
    let relabels = job["relabel_configs"].as_array().unwrap();
    assert!(relabels.contains(&snake(relabelings)[0]), "{job}");
    let metric = job["metric_relabel_configs"].as_array().unwrap();
    assert_eq!(metric, &snake(metric_relabelings), "{job}");
    for (name, target) in [
        ("workload-a", "127.0.0.1:9091"),
        ("workload-b", "127.0.0.1:9092"),
    ] {
        let job = generated.job(&federation(name));
        assert_eq!(job["honor_labels"], json!(true), "{job}");
        assert_eq!(
            job["static_configs"],
            json!([{"targets": [target], "labels": {"cluster": name}}]),
            "{job}"
        );
        let relabels = job["relabel_configs"].as_array().unwrap();
        assert!(
            !relabels.iter().any(|r| r["target_label"] == "cluster"),
            "no local label: {job}"
        );
        let metric = job["metric_relabel_configs"].as_array().unwrap();
        assert_eq!(metric.last().unwrap()["replacement"], name, "{job}");
        assert_eq!(metric.len(), 1, "{job}");
        assert!(
            relabels
                .iter()
                .any(|r| r["target_label"] == "job"
                    && r["replacement"] == format!("federate-{name}")),
            "{job}"
        );
    }
    assert_eq!(
        generated.job(&federation("workload-b"))["scrape_interval"],
        "30s"
    );
    assert_promtool_accepts(&generated, &release.promtool);
}

/// Every series' labels and value, as a set of label sets.
fn label_sets(server: &operator::Server, expr: &str) -> BTreeSet<BTreeMap<String, String>> {
    server
        .query(expr)
        .into_iter()
        .map(|(labels, _)| labels)
        .collect()
}

/// Two workload Prometheus servers for the federation table: workload-a hostile (its external
/// labels say `cluster: local`), workload-b honest. Stopped when dropped.
struct Workloads {
    a: operator::Server,
    b: operator::Server,
    tmp: tempfile::TempDir,
}

fn workloads(release: &support::PrometheusRelease) -> Workloads {
    let tmp = tempfile::tempdir().unwrap();
    let workload = |name: &str, external: &str| {
        let config = format!(
            "global: {{scrape_interval: 1s, external_labels: {{cluster: {external}}}}}\n\
             scrape_configs:\n\
             - job_name: {name}-self\n  static_configs: [{{targets: ['{{address}}']}}]\n"
        );
        operator::Server::start(&release.server, &tmp.path().join(name), &config)
    };
    let a = workload("workload-a", "local");
    let b = workload("workload-b", "workload-b");
    Workloads { a, b, tmp }
}

/// The promfed config of the table: the two workloads as clusters, their ScrapeConfig objects
/// in `namespace`.
fn federation_config(workloads: &Workloads, namespace: &str) -> String {
    format!(
        "clusters:\n\
         - {{name: workload-a, targets: ['{}']}}\n\
         - {{name: workload-b, targets: ['{}']}}\n\
         operator: {{scrapeConfigs: {{namespace: {namespace}}}}}\n",
        workloads.a.address, workloads.b.address
    )
}

/// The stack of the table as its users write it (before promfed): 1 s intervals, and a second
/// ServiceMonitor endpoint, workload-b's /federate, a local target exporting
/// `cluster="workload-b"` under honorLabels.
fn federation_stack(namespace: &str) -> Vec<Json> {
    let mut objects = operator::stack(namespace, VERSION);
    for object in &mut objects {
        match object["kind"].as_str().unwrap() {
            "Prometheus" => {
                object["spec"]["scrapeInterval"] = json!("1s");
                object["spec"]["evaluationInterval"] = json!("1s");
            }
            "ServiceMonitor" => object["spec"]["endpoints"].as_array_mut().unwrap().push(
                json!({"port": "federate", "path": "/federate", "honorLabels": true,
                             "params": {"match[]": ["prometheus_build_info"]}}),
            ),
            _ => {}
        }
    }
    objects
}

/// The end of the road: a real Prometheus 3 runs the config and rule files the operator
/// generated from the objects as promfed rewrote them, federating two workload Prometheus
/// servers (workload-a hostile: its external labels say `cluster: local`). Every series
/// carries exactly one of the three clusters, nothing from workload-a passes for local, a
/// local `honorLabels` job whose target exports another cluster's label stores it as
/// `exported_cluster`, and the recording rules carry `cluster: local` and equal their
/// expression over local series only.
fn assert_federation_table(
    cluster: &Cluster,
    namespace: &str,
    workloads: &Workloads,
    release: &support::PrometheusRelease,
) {
    let tmp = workloads.tmp.path().join(namespace);
    let monitor = format!("serviceMonitor/{namespace}/node-exporter/");
    let generated = operator::generated(cluster, namespace, "hub", |g| {
        g.config.contains(&format!("{monitor}1"))
            && g.config.contains("federate-workload-b")
            && g.rules().len() == 3
    });

    // What the API server would have discovered for the ServiceMonitor's endpoints.
    let rules_dir = tmp.join("hub-rules");
    std::fs::create_dir_all(&rules_dir).unwrap();
    for (key, text) in &generated.rule_files {
        std::fs::write(rules_dir.join(key), text).unwrap();
    }
    let b_address = workloads.b.address.clone();
    let config = operator::runnable(&generated.config, &rules_dir, |job| {
        let (port, target) = if job.ends_with("/0") {
            ("metrics", "{address}".to_string())
        } else {
            ("federate", b_address.clone())
        };
        json!([{"targets": [target], "labels": {
            "__meta_kubernetes_namespace": namespace,
            "__meta_kubernetes_service_name": "node-exporter",
            "__meta_kubernetes_service_label_app_kubernetes_io_name": "node-exporter",
            "__meta_kubernetes_service_labelpresent_app_kubernetes_io_name": "true",
            "__meta_kubernetes_endpoint_port_name": port,
        }}])
    });
    let hub = operator::Server::start(&release.server, &tmp.join("hub"), &config);

    let deadline = Instant::now() + support::HANG_GUARD;
    loop {
        let clusters = label_sets(&hub, "count by (cluster) (up == 1)");
        let ready = clusters.len() == 3
            && !hub.query("job:up:sum").is_empty()
            && !hub
                .query("prometheus_build_info{exported_cluster=\"workload-b\"}")
                .is_empty()
            && !hub
                .query("prometheus_build_info{cluster=\"workload-a\"}")
                .is_empty();
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hub did not scrape every cluster: {clusters:?}\nconfig:\n{config}\nlog:\n{}",
            hub.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Let a rule evaluation run after every target's first scrape.
    std::thread::sleep(Duration::from_secs(3));

    let clusters: BTreeSet<String> = label_sets(&hub, "count by (cluster) ({__name__=~\".+\"})")
        .into_iter()
        .map(|labels| labels.get("cluster").cloned().unwrap_or_default())
        .collect();
    let want: BTreeSet<String> = ["local", "workload-a", "workload-b"]
        .map(String::from)
        .into();
    assert_eq!(
        clusters, want,
        "every series carries one of the three clusters"
    );

    // workload-a's external labels say local: none of its series pass for local.
    assert!(
        hub.query("{cluster=\"local\", job=\"workload-a-self\"}")
            .is_empty(),
        "hostile workload"
    );
    assert!(
        !hub.query("{cluster=\"workload-a\", job=\"workload-a-self\"}")
            .is_empty()
    );
    assert!(
        !hub.query("{cluster=\"workload-b\", job=\"workload-b-self\"}")
            .is_empty()
    );
    // A local honorLabels job: the target's own cluster label kept as exported_cluster.
    let honored = label_sets(
        &hub,
        "prometheus_build_info{job=\"workload-b-self\", cluster=\"local\"}",
    );
    assert!(!honored.is_empty());
    for labels in &honored {
        assert_eq!(
            labels.get("exported_cluster").map(String::as_str),
            Some("workload-b"),
            "{labels:?}"
        );
    }
    // The hub's own series: local, nothing exported.
    let own = label_sets(&hub, "up{job=\"node-exporter\"}");
    assert_eq!(own.len(), 2, "{own:?}");
    for labels in &own {
        assert_eq!(
            labels.get("cluster").map(String::as_str),
            Some("local"),
            "{labels:?}"
        );
    }

    // Recording rules: labelled local, equal to their expression over local series only.
    let recorded = hub.query("job:up:sum");
    let local_only = hub.query("sum by (job) (up{cluster=\"local\"})");
    let by_job = |series: &[(BTreeMap<String, String>, f64)]| -> BTreeMap<String, f64> {
        series
            .iter()
            .map(|(l, v)| (l.get("job").cloned().unwrap_or_default(), *v))
            .collect()
    };
    for (labels, _) in &recorded {
        assert_eq!(
            labels.get("cluster").map(String::as_str),
            Some("local"),
            "{labels:?}"
        );
    }
    assert_eq!(by_job(&recorded), by_job(&local_only));
    assert!(by_job(&hub.query("sum by (job) (up)")).len() > by_job(&recorded).len());
    assert_eq!(hub.query("one{cluster=\"local\"}").len(), 1);
}

/// The table on the objects as the engine's operator functions rewrite them (applied here to
/// the objects before they are created).
#[test]
fn operator_config_federates_two_workloads() {
    let cluster = crate::cluster!();
    let release = require!(prometheus3_release);
    let namespace = "op-federation";
    cluster.namespace(namespace);
    let workloads = workloads(&release);
    let engine = engine(&federation_config(&workloads, namespace));
    let mut objects = federation_stack(namespace);
    for object in &mut objects {
        let kind = object["kind"].as_str().unwrap().to_string();
        let name = format!(
            "{kind} {namespace}/{}",
            object["metadata"]["name"].as_str().unwrap()
        );
        let mut spec = Node::from_json(&object["spec"]);
        match kind.as_str() {
            "Prometheus" => {
                engine.rewrite_prometheus(&mut spec, &name).unwrap();
            }
            "PrometheusRule" => {
                engine
                    .rewrite_prometheus_rule(&mut spec, &name, &mut work())
                    .unwrap();
            }
            _ => continue,
        }
        object["spec"] = spec.to_json();
    }
    objects.extend(engine.scrape_configs().unwrap().iter().map(Node::to_json));
    operator::apply(cluster, &opted_out(objects));
    assert_federation_table(cluster, namespace, &workloads, &release);
}

/// The ScrapeConfig objects' Secret and ConfigMap references, as the CRD and the operator
/// read them: with the Secrets there, the operator takes both objects and writes mTLS and
/// basic auth into the generated jobs.
#[test]
fn scrape_config_secret_references_reach_the_generated_config() {
    let cluster = crate::cluster!();
    let release = require!(prometheus3_release);
    let namespace = "op-secrets";
    cluster.namespace(namespace);
    let pki = |file: &str| std::fs::read_to_string(cluster.dir.join("pki").join(file)).unwrap();
    let engine = engine(&format!(
        "clusters:\n\
         - name: workload-a\n  targets: ['127.0.0.1:9091']\n  scheme: https\n  tls_config:\n\
         \x20   ca_file: /etc/prometheus/configmaps/federation-ca/ca.crt\n\
         \x20   cert_file: /etc/prometheus/secrets/federation-client/tls.crt\n\
         \x20   key_file: /etc/prometheus/secrets/federation-client/tls.key\n\
         \x20   server_name: prom-a\n\
         - name: workload-b\n  url: https://127.0.0.1:9092/prometheus\n  basic_auth:\n\
         \x20   username_file: /etc/prometheus/secrets/workload-b-auth/username\n\
         \x20   password_file: /etc/prometheus/secrets/workload-b-auth/password\n\
         operator: {{scrapeConfigs: {{namespace: {namespace}}}}}\n"
    ));
    let secret = |name: &str, data: Json| {
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": name, "namespace": namespace}, "stringData": data})
    };
    let mut objects = vec![
        secret(
            "federation-client",
            json!({"tls.crt": pki("admin.crt"), "tls.key": pki("admin.key")}),
        ),
        secret(
            "workload-b-auth",
            json!({"username": "federate", "password": "s3cret"}),
        ),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "federation-ca", "namespace": namespace},
               "data": {"ca.crt": pki("ca.crt")}}),
    ];
    let mut prometheus = operator::stack(namespace, VERSION).remove(0);
    let mut spec = Node::from_json(&prometheus["spec"]);
    engine.rewrite_prometheus(&mut spec, "Prometheus").unwrap();
    prometheus["spec"] = spec.to_json();
    objects.push(prometheus);
    objects.extend(engine.scrape_configs().unwrap().iter().map(Node::to_json));
    operator::apply(cluster, &opted_out(objects));
    let job = |c: &str| format!("scrapeConfig/{namespace}/federate-{c}");
    let generated = operator::generated(cluster, namespace, "hub", |g| {
        g.config.contains(&job("workload-a")) && g.config.contains(&job("workload-b"))
    });

    let a = generated.job(&job("workload-a"));
    assert_eq!(a["scheme"], "https", "{a}");
    let tls = &a["tls_config"];
    for field in ["ca_file", "cert_file", "key_file"] {
        assert!(
            tls[field]
                .as_str()
                .is_some_and(|f| f.starts_with("/etc/prometheus/certs/")),
            "{a}"
        );
    }
    assert_eq!(tls["server_name"], "prom-a", "{a}");
    let b = generated.job(&job("workload-b"));
    assert_eq!(b["metrics_path"], "/prometheus/federate", "{b}");
    assert_eq!(b["basic_auth"]["username"], "federate", "{b}");
    assert!(
        b["basic_auth"]["password"]
            .as_str()
            .is_some_and(|p| !p.is_empty()),
        "{b}"
    );
    assert_promtool_accepts(&generated, &release.promtool);
}

// ---------------------------------------------------------------------------------------
// The webhook in front of the operator

/// `promfed ARGS` with `stdin`: exit code and stdout.
fn promfed(args: &[&str], stdin: Option<&str>) -> (Option<i32>, String) {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let out = support::run(&support::promfed_bin(), &args, stdin);
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        out.status.code().is_some_and(|c| c < 2),
        "promfed {args:?}: {}",
        describe(&out)
    );
    (out.status.code(), stdout)
}

/// The documents of a YAML stream, as JSON.
fn documents(stream: &str) -> Vec<Json> {
    let mut out = Vec::new();
    let mut document = String::new();
    for line in stream.split_inclusive('\n').chain(["---\n"]) {
        if line.trim_end() == "---" {
            if let Some(node) = yaml::parse(&document, Limits::default()).expect("YAML") {
                out.push(node.to_json());
            }
            document.clear();
        } else {
            document.push_str(line);
        }
    }
    out
}

/// The stored object: every field of `want`'s spec as `want` has it (the API server adds
/// the CRD's defaults to the rest).
fn assert_stored_spec(cluster: &Cluster, want: &Json, how: &str) {
    let kind = want["kind"].as_str().unwrap();
    let namespace = want["metadata"]["namespace"].as_str().unwrap();
    let name = want["metadata"]["name"].as_str().unwrap();
    let stored = cluster.get(kind, namespace, name);
    for (field, value) in want["spec"].as_object().unwrap() {
        assert_eq!(
            &stored["spec"][field], value,
            "{how}: {kind} {namespace}/{name}: spec.{field} is not what was expected"
        );
    }
}

/// Through the webhook, end to end: with promfed serving and deploy/local's webhooks for
/// prometheus-operator's kinds, plain PrometheusRule and Prometheus objects applied with
/// kubectl are stored as `promfed render` writes them; an object labelled
/// `promfed.io/rewrite: "false"` and one in kube-system are never sent to promfed; the
/// operator generates rules that carry both its `enforcedNamespaceLabel` matcher and
/// promfed's; the ScrapeConfig objects of `promfed render --scrape-configs` complete the
/// config, and a real Prometheus on what the operator generated passes the federation table;
/// the federation alerts' PrometheusRule of the same command is stored as written and loaded;
/// with promfed down a PrometheusRule is still admitted (failurePolicy Ignore), and
/// `promfed check --objects` finds it. The operator's own admission webhook runs next to
/// promfed's for PrometheusRule objects (see [`assert_both_webhooks_admit_prometheus_rules`]).
#[test]
fn webhook_rewrites_operator_objects_and_they_federate() {
    if !kube::tools_built() {
        support::skip::<()>(
            &support::current_test(),
            "kube-apiserver (scripts/build-tools.sh)",
        );
        return;
    }
    let release = require!(prometheus3_release);
    let namespace = "op-webhook";
    let workloads = workloads(&release);
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("promfed.yaml");
    // With the federation alerts, which the operator path writes as a PrometheusRule.
    let text = format!(
        "{}federationAlerts: {{enabled: true}}\n",
        federation_config(&workloads, namespace)
    );
    std::fs::write(&config, text).unwrap();
    let config_arg = config.to_str().unwrap();
    let cluster = Cluster::up_with(
        Some(&config),
        &[("PROMFED_OPERATOR", std::ffi::OsStr::new("1"))],
    );
    cluster.namespace(namespace);

    // Plain objects, as their users write them: stored as promfed render writes them.
    let objects = federation_stack(namespace);
    let before = cluster.reviews();
    operator::apply(&cluster, &objects);
    let sent = cluster.reviews() - before;
    assert!(sent >= 2.0, "promfed reviewed {sent} objects");
    // The same objects applied again (an UPDATE through the webhook, after the API server
    // added the CRDs' defaults): stored as before, nothing added twice.
    operator::apply(&cluster, &objects);
    for object in &objects {
        let kind = object["kind"].as_str().unwrap();
        if !matches!(kind, "Prometheus" | "PrometheusRule") {
            continue;
        }
        let (_, text) = promfed(
            &["render", "--config", config_arg],
            Some(&object.to_string()),
        );
        let rendered = documents(&text).remove(0);
        assert_ne!(rendered["spec"], object["spec"], "render changes {kind}");
        assert_stored_spec(&cluster, &rendered, "through the webhook");
    }
    assert_both_webhooks_admit_prometheus_rules(&cluster, namespace, &objects);

    // Opted out, or in kube-system: not sent, stored as written.
    let mut rule = objects
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .unwrap()
        .clone();
    // In a namespace of its own: the hub would load it, unscoped.
    cluster.namespace("op-opted-out");
    rule["metadata"] = json!({"name": "opted-out", "namespace": "op-opted-out",
                              "labels": {"promfed.io/rewrite": "false"}});
    let mut system = rule.clone();
    system["metadata"] = json!({"name": "system-rules", "namespace": "kube-system"});
    for object in [&rule, &system] {
        let before = cluster.reviews();
        operator::apply(&cluster, std::slice::from_ref(object));
        assert_eq!(cluster.reviews(), before, "sent to promfed: {object}");
        assert_stored_spec(&cluster, object, "left alone");
    }

    // The operator's enforcedNamespaceLabel and promfed's scoping, on the same expression.
    let enforced = "op-enforced";
    cluster.namespace(enforced);
    let mut stack = operator::stack(enforced, VERSION);
    stack.retain(|o| o["kind"] != "ServiceMonitor");
    stack[0]["spec"]["enforcedNamespaceLabel"] = json!("namespace");
    operator::apply(&cluster, &stack);
    let generated = operator::generated(&cluster, enforced, "hub", |g| g.rules().len() == 3);
    let rule = &generated.rules()[&("hub.rules".to_string(), "job:up:sum".to_string())];
    let expr = rule["expr"].as_str().unwrap();
    let matchers: BTreeSet<(String, String)> = selectors(&parse(expr).unwrap())
        .iter()
        .flat_map(|vs| vs.matchers.matchers.iter())
        .map(|m| (m.name.clone(), m.value.clone()))
        .collect();
    for want in [("namespace", enforced), ("cluster", "local")] {
        let want = (want.0.to_string(), want.1.to_string());
        assert!(matchers.contains(&want), "no {want:?} in {expr}");
    }
    assert_eq!(rule["labels"]["cluster"], "local", "{rule}");

    // The ScrapeConfig objects from the same config; then the table.
    let (_, text) = promfed(
        &["render", "--config", config_arg, "--scrape-configs"],
        None,
    );
    let mut scrape_configs = documents(&text);
    assert_eq!(scrape_configs.len(), 3, "{text}");
    let alerts = scrape_configs.pop().unwrap();
    assert_eq!(alerts["kind"], "PrometheusRule", "{text}");
    operator::apply(&cluster, &scrape_configs);
    assert_federation_table(&cluster, namespace, &workloads, &release);

    // The federation alerts: stored as written (the webhook leaves promfed's own group
    // alone) and loaded by the operator into the hub's rule files.
    operator::apply(&cluster, std::slice::from_ref(&alerts));
    assert_stored_spec(
        &cluster,
        &alerts,
        "the federation alerts through the webhook",
    );
    let key = |alert: &str| ("promfed-federation-health".to_string(), alert.to_string());
    let generated = operator::generated(&cluster, namespace, "hub", |g| {
        g.rules().contains_key(&key("FederationTargetDown"))
    });
    let down = &generated.rules()[&key("FederationTargetDown")];
    let expr = down["expr"].as_str().unwrap();
    assert!(
        expr.contains("federate-workload-a") && expr.contains("federate-workload-b"),
        "{down}"
    );

    // promfed down: a PrometheusRule is still admitted, as written, and check finds it.
    let (code, _) = promfed(
        &["check", config_arg, "--objects", "-"],
        Some(&cluster.kubectl_ok(
            &["get", "prometheusrules,prometheuses", "-A", "-o", "yaml"],
            None,
        )),
    );
    assert_eq!(code, Some(0), "everything so far went through promfed");
    cluster.stop_promfed();
    let mut late = objects
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .unwrap()
        .clone();
    late["metadata"]["name"] = json!("late-rules");
    operator::apply(&cluster, std::slice::from_ref(&late));
    assert_stored_spec(&cluster, &late, "promfed down");
    let listed = cluster.kubectl_ok(&["get", "prometheusrules", "-A", "-o", "yaml"], None);
    let (code, report) = promfed(&["check", config_arg, "--objects", "-"], Some(&listed));
    assert_eq!(code, Some(1), "{report}");
    let flagged: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("did not go through promfed"))
        .collect();
    assert_eq!(flagged.len(), 1, "{report}");
    assert!(
        flagged[0].contains(&format!("PrometheusRule {namespace}/late-rules")),
        "{report}"
    );
}

/// promfed's webhook next to prometheus-operator's own (kube-local.sh registers its mutating
/// and validating PrometheusRule webhooks, failure policy Fail, as kube-prometheus-stack
/// does): the rewritten PrometheusRule of `objects` was stored, so the operator validated
/// what promfed wrote, and carries the annotation the operator's mutating webhook adds; broken
/// PromQL is refused by promfed (the object, group and rule named), and when the object opts
/// out of promfed, by the operator (its parser's message), promfed never asked.
fn assert_both_webhooks_admit_prometheus_rules(
    cluster: &Cluster,
    namespace: &str,
    objects: &[Json],
) {
    let rule = objects
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .unwrap();
    let name = rule["metadata"]["name"].as_str().unwrap();
    let stored = cluster.get("PrometheusRule", namespace, name);
    assert_eq!(
        stored["metadata"]["annotations"]["prometheus-operator-validated"], "true",
        "the operator's mutating webhook did not see {namespace}/{name}: {stored}"
    );
    // Stored means admitted by the operator's validating webhook, which sees the object after
    // every mutating webhook: promfed's scoped expression, not the one written.
    let expr = stored["spec"]["groups"][0]["rules"][0]["expr"]
        .as_str()
        .unwrap();
    assert!(expr.contains("cluster=\"local\""), "not scoped: {expr}");

    let mut broken = rule.clone();
    broken["metadata"] = json!({"name": "broken-rules", "namespace": namespace});
    broken["spec"]["groups"][0]["rules"][0]["expr"] = json!("sum by (job) (up");
    let list = |o: &Json| json!({"apiVersion": "v1", "kind": "List", "items": [o]}).to_string();
    let refused = |object: &Json| {
        let out = cluster.kubectl(&["apply", "--server-side", "-f", "-"], Some(&list(object)));
        assert!(!out.status.success(), "admitted: {object}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let before = cluster.reviews();
    let message = refused(&broken);
    assert_eq!(cluster.reviews(), before + 1.0, "promfed answered once");
    for want in [
        "admission webhook \"prometheusrules.promfed.io\" denied the request",
        &format!("PrometheusRule {namespace}/broken-rules"),
        "group \"hub.rules\"",
        "record \"job:up:sum\"",
    ] {
        assert!(message.contains(want), "no {want:?} in {message}");
    }

    broken["metadata"]["labels"] = json!({"promfed.io/rewrite": "false"});
    let before = cluster.reviews();
    let message = refused(&broken);
    assert_eq!(cluster.reviews(), before, "opted out, yet sent to promfed");
    for want in [
        "group \"hub.rules\", rule 1, \"job:up:sum\": could not parse expression",
        "unclosed left parenthesis",
    ] {
        assert!(message.contains(want), "no {want:?} in {message}");
    }
    assert!(!message.contains("promfed"), "{message}");
}

// ---------------------------------------------------------------------------------------
// Admission, selection and the CLI, without an API server

/// A review of an operator object as the API server sends it.
fn operator_review(operation: &str, object: &Json) -> Vec<u8> {
    let kind = object["kind"].as_str().unwrap();
    let mut review = support::review::review("u-1", operation, kind, object);
    for field in ["kind", "resource", "requestKind", "requestResource"] {
        review["request"][field]["group"] = json!("monitoring.coreos.com");
    }
    serde_json::to_vec(&review).unwrap()
}

fn prometheus_rule(namespace: &str, name: &str, expr: &str) -> Json {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"groups": [{"name": "g", "rules": [
            {"record": "r", "expr": expr},
            {"alert": "A", "expr": "up == 0", "for": "5m"},
        ]}]},
    })
}

/// The webhook's answer for PrometheusRule and Prometheus objects: a patch that makes the
/// object what `promfed render` writes; broken PromQL denied naming the object, the group and
/// the rule; objects that opt out or live in an excluded namespace passed untouched.
#[test]
fn admission_answers_for_operator_objects_are_what_render_writes() {
    use promfed::admission::{Admission, Outcome};
    let config = support::temp_files(&[("promfed.yaml", "{}\n")]);
    let config = config.path().join("promfed.yaml");
    let admission = Admission::new(engine("{}"), 1);
    let prometheus = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": "k8s", "namespace": "monitoring"},
        "spec": {"replicas": 2, "version": VERSION},
    });
    for object in [
        prometheus_rule("monitoring", "rules", "sum(up)"),
        prometheus,
    ] {
        for operation in ["CREATE", "UPDATE"] {
            let reply = admission.review(&operator_review(operation, &object));
            assert_eq!(reply.outcome, Outcome::Mutated, "{operation} {object}");
            let answer = reply.json().unwrap();
            let patch = support::review::decoded_patch(&answer["response"]).unwrap();
            let patched = support::review::applied(&object, &patch);
            let (_, text) = promfed(
                &["render", "--config", config.to_str().unwrap()],
                Some(&object.to_string()),
            );
            assert_eq!(patched, documents(&text)[0], "{operation} {object}");
            // What the webhook wrote is a fixed point.
            let again = admission.review(&operator_review("UPDATE", &patched));
            assert_eq!(again.outcome, Outcome::Unchanged, "{patched}");
        }
    }

    let broken = prometheus_rule("monitoring", "broken", "rate(x[5m]");
    let reply = admission.review(&operator_review("CREATE", &broken));
    assert_eq!(reply.outcome, Outcome::Denied);
    let answer = reply.json().unwrap();
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    for want in [
        "PrometheusRule monitoring/broken",
        "group \"g\"",
        "record \"r\"",
    ] {
        assert!(message.contains(want), "no {want:?} in {message}");
    }

    let mut opted = prometheus_rule("monitoring", "mine", "sum(up)");
    opted["metadata"]["labels"] = json!({"promfed.io/rewrite": "false"});
    for object in [opted, prometheus_rule("kube-system", "system", "sum(up)")] {
        let reply = admission.review(&operator_review("CREATE", &object));
        assert_eq!(reply.outcome, Outcome::Passed, "{object}");
    }
}

/// Which operator objects are selected: by default all outside kube-system and
/// promfed-system; narrowed by namespaces and labels; never one that opts out (any kind);
/// the generated conditions say the same; bad settings are refused with their path and line.
#[test]
fn operator_objects_are_selected_by_their_sections() {
    use promfed::object::{Kind, ObjectRef};
    let object = |kind: Kind, namespace: &str, labels: &[(&str, &str)]| ObjectRef {
        kind: kind.name().to_string(),
        name: "x".into(),
        namespace: namespace.into(),
        labels: (labels.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        data_keys: vec!["prometheus.yml".into()],
    };
    let server = [("app", "prometheus"), ("component", "server")];
    let opt_out = ("promfed.io/rewrite", "false");
    let narrowed = "prometheusRule: {namespaces: [monitoring], labels: {release: hub}}\n\
                    prometheus: {excludeNamespaces: []}";
    let rows: &[(&str, &str, ObjectRef, bool)] = &[
        (
            "default",
            "{}",
            object(Kind::PrometheusRule, "apps", &[]),
            true,
        ),
        (
            "kube-system",
            "{}",
            object(Kind::PrometheusRule, "kube-system", &[]),
            false,
        ),
        (
            "promfed-system",
            "{}",
            object(Kind::Prometheus, "promfed-system", &[]),
            false,
        ),
        (
            "opted out",
            "{}",
            object(Kind::PrometheusRule, "apps", &[opt_out]),
            false,
        ),
        (
            "ConfigMap",
            "{}",
            object(Kind::ConfigMap, "apps", &server),
            true,
        ),
        (
            "ConfigMap opted out",
            "{}",
            object(Kind::ConfigMap, "apps", &[server[0], server[1], opt_out]),
            false,
        ),
        (
            "opt-out true",
            "{}",
            object(Kind::Prometheus, "apps", &[("promfed.io/rewrite", "true")]),
            true,
        ),
        (
            "narrowed: match",
            narrowed,
            object(Kind::PrometheusRule, "monitoring", &[("release", "hub")]),
            true,
        ),
        (
            "narrowed: namespace",
            narrowed,
            object(Kind::PrometheusRule, "apps", &[("release", "hub")]),
            false,
        ),
        (
            "narrowed: labels",
            narrowed,
            object(Kind::PrometheusRule, "monitoring", &[]),
            false,
        ),
        (
            "exclusions emptied",
            narrowed,
            object(Kind::Prometheus, "kube-system", &[]),
            true,
        ),
    ];
    for (name, config, object, want) in rows {
        let config = Config::from_yaml(config).unwrap();
        assert_eq!(config.selects(object), *want, "{name}");
    }
    let names = |kind| -> Vec<String> {
        let config = Config::from_yaml(narrowed).unwrap();
        config
            .match_conditions_for(kind)
            .into_iter()
            .map(|c| c.name)
            .collect()
    };
    assert_eq!(
        names(Kind::PrometheusRule),
        [
            "prometheusrule-namespace-not-excluded",
            "prometheusrule-namespace",
            "prometheusrule-labels",
            "promfed-rewrite-not-disabled"
        ]
    );
    assert_eq!(names(Kind::Prometheus), ["promfed-rewrite-not-disabled"]);

    for (config, want) in [
        (
            "prometheusRule: {namespaces: [Apps]}",
            "prometheusRule.namespaces (line 1)",
        ),
        ("prometheus:\n  labels: {'a b': x}", "prometheus.labels.a b"),
        ("prometheusRule: {names: [x]}", "unknown field `names`"),
    ] {
        let err = Config::from_yaml(config).expect_err(config).to_string();
        assert!(err.contains(want), "{config}: {err}");
    }
}

/// The CLI: `render --scrape-configs` writes what `Engine::scrape_configs` makes, a stream;
/// `match-conditions --kind` the kind's conditions; `check --objects` exits like diff.
#[test]
fn cli_writes_scrape_configs_conditions_and_checks_objects() {
    let text = "clusters: [{name: a, targets: ['a:9090']}, {name: b, targets: ['b:9090']}]\n\
                operator: {scrapeConfigs: {namespace: monitoring}}\n";
    let dir = support::temp_files(&[("promfed.yaml", text)]);
    let config = dir.path().join("promfed.yaml");
    let config = config.to_str().unwrap();
    let (code, out) = promfed(&["render", "--config", config, "--scrape-configs"], None);
    assert_eq!(code, Some(0));
    let want: Vec<Json> = (engine(text).scrape_configs().unwrap().iter())
        .map(Node::to_json)
        .collect();
    assert_eq!(documents(&out), want);

    let (_, out) = promfed(
        &[
            "match-conditions",
            "--config",
            config,
            "--kind",
            "PrometheusRule",
        ],
        None,
    );
    assert!(
        out.contains("- name: prometheusrule-namespace-not-excluded\n"),
        "{out}"
    );
    assert!(
        out.contains("- name: promfed-rewrite-not-disabled\n"),
        "{out}"
    );

    let stored = |object: &Json| json!({"apiVersion": "v1", "kind": "List", "items": [object]});
    let plain = prometheus_rule("monitoring", "plain", "sum(up)");
    let (code, report) = promfed(
        &["check", config, "--objects", "-"],
        Some(&stored(&plain).to_string()),
    );
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report.contains("PrometheusRule monitoring/plain: not as promfed writes it"),
        "{report}"
    );
    let (_, rendered) = promfed(&["render", "--config", config], Some(&plain.to_string()));
    let (code, report) = promfed(
        &["check", config, "--objects", "-"],
        Some(&stored(&documents(&rendered)[0]).to_string()),
    );
    assert_eq!(code, Some(0), "{report}");
    assert!(report.contains("0 selected objects"), "{report}");
}
