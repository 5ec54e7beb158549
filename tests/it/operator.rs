//! prometheus-operator's objects through the engine: PrometheusRule specs rewritten exactly as
//! rule files in a ConfigMap, the Prometheus object's default scrape class, the federation jobs
//! as ScrapeConfig objects; and the real operator on a local API server
//! (`PROMFED_OPERATOR=1 scripts/kube-local.sh up`), generating its config from such objects.

use promfed::Engine;
use promfed::config::{AlertingMode, Config};
use promfed::engine::operator::prometheus::{FEDERATION_CLASS, LOCAL_CLASS};
use promfed::engine::promql::{parse, selectors};
use promfed::engine::{Work, WorkLimits};
use promfed::yaml::{self, Limits, Node};
use serde_json::{Value as Json, json};

use crate::support::{self, read_data};

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

/// Every corpus rule file (kube-prometheus' PrometheusRule specs and the mixins), by name.
fn corpus_rule_files() -> Vec<(String, String)> {
    let root = support::data("rules");
    let mut files: Vec<(String, String)> = support::yaml_files(&root)
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    files.sort();
    files
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
        for (name, text) in corpus_rule_files() {
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
                assert_eq!(yaml::emit(&spec), file.data[0].1, "{case}: YAML spec");
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
        {"sourceLabels": ["__address__"], "targetLabel": "cluster", "replacement": "local"},
    ]);
    let metric_relabelings = json!([
        {"sourceLabels": ["cluster"], "regex": "local", "targetLabel": "cluster", "replacement": ""},
        {"sourceLabels": ["cluster"], "regex": "(.+)", "targetLabel": "exported_cluster", "replacement": "$1"},
        {"targetLabel": "cluster", "replacement": "local"},
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
