//! The bodies of promfed's fuzz targets, with their oracles. The targets in `fuzz_targets/`
//! call these; `tests/it/hostile.rs` includes this file too (`#[path]`) and replays every input
//! under `fuzz/regressions/<target>/` through the same function in the normal test suite.
//!
//! Each function panics when promfed misbehaves: a panic inside promfed, an answer that breaks
//! the AdmissionReview contract, or a rewrite that is not a fixed point (running promfed on its
//! own output must change nothing).

use std::sync::OnceLock;

pub mod promql_syntax;

use promfed::admission::{API_VERSION, Admission, Outcome};
use promfed::promql::{Policy, ScopeOp, Scoper};
use promfed::yaml::{self, Limits, Node, Value};
use promfed::{Config, Engine};
use serde_json::{Value as Json, json};

// The AdmissionReview fixtures of the integration tests: one file, included by path here too.
// (tests/it/hostile.rs includes this file, so the test binary loads it twice, on purpose.)
#[allow(clippy::duplicate_mod)]
#[path = "../../tests/support/review.rs"]
mod fixtures;

use fixtures::{applied, configmap, data_pairs, decoded_patch, review_bytes};

/// Target names, as in `fuzz/Cargo.toml` and `fuzz/regressions/<target>/`.
pub const TARGETS: [&str; 5] = [
    "admission",
    "promql_scope",
    "promql_syntax",
    "rewrite",
    "yaml_roundtrip",
];

/// Run the target called `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "admission" => admission(data),
        "promql_scope" => promql_scope(data),
        "promql_syntax" => promql_syntax(data),
        "rewrite" => rewrite(data),
        "yaml_roundtrip" => yaml_roundtrip(data),
        _ => panic!("unknown fuzz target {name:?}"),
    }
}

/// Federation jobs, federation alerts, local alerting rules: every part of the engine runs.
const CONFIG: &str = "\
localClusterName: tools
clusters:
- name: w1
  targets: [w1:9090]
additionalScrapeConfigs:
- job_name: federation
  metrics_path: /federate
  honor_labels: true
  static_configs:
  - targets: [a:9090]
    labels: {cluster: a}
  - targets: [b:9090]
    labels: {cluster: b}
rules:
  alerting: local
federationAlerts:
  enabled: true
";

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::new(Config::from_yaml(CONFIG).expect("config")).expect("engine"))
}

const PROMETHEUS_YML: &str = "\
global:
  scrape_interval: 1m
rule_files:
- /etc/config/recording_rules.yml
- /etc/config/alerting_rules.yml
scrape_configs:
- job_name: prometheus
  static_configs:
  - targets: [localhost:9090]
";

const RULES_YML: &str = "\
groups:
- name: g
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
";

/// AdmissionReview bytes in. The first byte picks the mode: the rest of the input as the whole
/// request body, or as the text of one data key of a matched ConfigMap (so that the engine runs
/// on most inputs). Whatever comes in, the answer is 200, 400 or 413; a 200 is a well-formed
/// review response for the request's uid; a patch applies to the object and gives exactly what
/// the engine renders, and the patched object reviewed again needs no patch.
pub fn admission(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let admission = Admission::new(engine().clone(), 1);
    if mode % 4 == 0 {
        let reply = admission.review(rest);
        assert!(
            matches!(reply.status, 200 | 400 | 413),
            "status {}",
            reply.status
        );
        if reply.status == 200 {
            let answer = reply.json().expect("a 200 answer is JSON");
            assert_eq!(answer["apiVersion"], API_VERSION);
            assert!(answer["response"]["uid"].is_string(), "{answer}");
        }
        return;
    }
    let text = String::from_utf8_lossy(rest).into_owned();
    let key = [
        "prometheus.yml",
        "recording_rules.yml",
        "alerting_rules.yml",
    ][mode as usize % 4 - 1];
    let mut data = json!({
        "prometheus.yml": PROMETHEUS_YML,
        "recording_rules.yml": RULES_YML,
        "alerting_rules.yml": "{}\n",
    });
    data[key] = Json::String(text);
    let object = configmap(data);
    let reply = admission.review(&review_bytes("fuzz-1", "UPDATE", "ConfigMap", &object));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let answer = reply.json().expect("a 200 answer is JSON");
    let response = &answer["response"];
    assert_eq!(response["uid"], "fuzz-1");
    match reply.outcome {
        Outcome::Denied => {
            assert_eq!(response["allowed"], false);
            assert_eq!(response["status"]["code"], 422);
            let message = response["status"]["message"].as_str().unwrap_or("");
            assert!(!message.is_empty(), "a denial says why");
            assert!(response.get("patch").is_none());
        }
        Outcome::Unchanged => {
            assert_eq!(response["allowed"], true);
            assert!(response.get("patch").is_none());
        }
        Outcome::Mutated => {
            assert_eq!(response["allowed"], true);
            assert_eq!(response["patchType"], "JSONPatch");
            // A base64 string holding a JSON patch that applies to the object.
            let patch = decoded_patch(response).expect("a mutated answer has a patch");
            let patched = applied(&object, &patch);
            let pairs = data_pairs(&object);
            let rendered = engine().rewrite(&pairs).expect("the engine agrees");
            assert_eq!(
                data_pairs(&patched),
                rendered.data,
                "patched object = rendered"
            );
            let again = admission.review(&review_bytes("fuzz-2", "UPDATE", "ConfigMap", &patched));
            assert_eq!(
                again.outcome,
                Outcome::Unchanged,
                "the patched object needs no patch: {}",
                String::from_utf8_lossy(&again.body)
            );
        }
        other => panic!("unexpected outcome {other:?} for a matched ConfigMap"),
    }
}

/// PromQL in: scoping never panics, a scoped expression parses, and scoping it again changes
/// nothing. The first byte picks the operator and the policy.
pub fn promql_scope(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(expr) = std::str::from_utf8(rest) else {
        return;
    };
    let op = if mode & 1 == 0 {
        ScopeOp::Equal
    } else {
        ScopeOp::Regex
    };
    let policy = [Policy::Keep, Policy::Override, Policy::Error][(mode as usize >> 1) % 3];
    let scoper = Scoper::new("cluster", "local", op, policy);
    let Ok(scoped) = scoper.scope(expr) else {
        return;
    };
    promfed::promql::parse(&scoped.text).unwrap_or_else(|e| {
        panic!(
            "scoped {expr:?} into {:?}, which does not parse: {e}",
            scoped.text
        )
    });
    if policy == Policy::Error {
        return; // every selector now matches on the label: a second pass refuses by design
    }
    let again = scoper
        .scope(&scoped.text)
        .unwrap_or_else(|e| panic!("re-scoping {:?} (from {expr:?}) failed: {e}", scoped.text));
    assert_eq!(again.text, scoped.text, "scoping {expr:?} twice differs");
}

/// PromQL in: promfed's own parser reads no more than the full path does, and what it reads
/// it reads as promql-parser does, with sound spans (`promql_syntax::check`).
pub fn promql_syntax(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        promql_syntax::check(text);
    }
}

/// A data value in: the first byte picks the key (`prometheus.yml`, `recording_rules.yml`, or
/// both, split at the first `\n---\n`); the rewrite never panics and is a fixed point.
pub fn rewrite(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    let input: Vec<(String, String)> = match mode % 3 {
        0 => vec![("prometheus.yml".into(), text)],
        1 => vec![("recording_rules.yml".into(), text)],
        _ => {
            let (config, rules) = text.split_once("\n---\n").unwrap_or((&text, ""));
            vec![
                ("prometheus.yml".into(), config.to_string()),
                ("recording_rules.yml".into(), rules.to_string()),
            ]
        }
    };
    let Ok(first) = engine().rewrite(&input) else {
        return;
    };
    let second = engine()
        .rewrite(&first.data)
        .unwrap_or_else(|e| panic!("promfed refuses its own output: {e}\n{:#?}", first.data));
    assert_eq!(second.data, first.data, "the rewrite is not a fixed point");
}

/// YAML text in: parse → emit → parse gives the same tree (modulo lines and how a string is
/// quoted: a YAML 1.1 reader must read every scalar as the same type and value), and emitting
/// settles: from the second emit on, the text stays the same.
pub fn yaml_roundtrip(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(Some(node)) = yaml::parse(text, Limits::default()) else {
        return;
    };
    let emitted = yaml::emit(&node);
    let reparsed = match yaml::parse(&emitted, Limits::default()) {
        Ok(Some(reparsed)) => reparsed,
        Ok(None) => panic!("{text:?} emitted as {emitted:?}, an empty document"),
        Err(e) => panic!("{text:?} emitted as {emitted:?}, which does not parse: {e}"),
    };
    if let Err(at) = same(&node, &reparsed, "$") {
        panic!("{text:?} emitted as {emitted:?} reads back differently at {at}");
    }
    // A plain multi-line scalar is written quoted, read back as quoted and then written as a
    // literal block: the text may change once, then it must stay.
    let second = yaml::emit(&reparsed);
    let third = match yaml::parse(&second, Limits::default()) {
        Ok(Some(node)) => yaml::emit(&node),
        other => panic!("{text:?} emitted twice as {second:?}, which reads as {other:?}"),
    };
    assert_eq!(third, second, "emit does not settle for {text:?}");
}

/// Equal trees modulo `line`; a scalar keeps its value, tag and YAML 1.1 type. (A plain scalar
/// may come back quoted where writing it plain would be ambiguous, e.g. `-` as a key or a value
/// starting with `---`: same string, other style.)
fn same(a: &Node, b: &Node, at: &str) -> Result<(), String> {
    match (&a.value, &b.value) {
        (Value::Scalar(x), Value::Scalar(y)) => {
            let ok = x.value == y.value && x.tag == y.tag && x.kind() == y.kind();
            if ok {
                Ok(())
            } else {
                Err(format!("{at}: {x:?} became {y:?}"))
            }
        }
        (Value::Seq(x), Value::Seq(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .try_for_each(|(i, (x, y))| same(x, y, &format!("{at}[{i}]"))),
        (Value::Map(x), Value::Map(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().try_for_each(|(i, (x, y))| {
                same(&x.0, &y.0, &format!("{at}.key{i}"))?;
                same(&x.1, &y.1, &format!("{at}.value{i}"))
            })
        }
        _ => Err(format!("{at}: {:?} became {:?}", a.value, b.value)),
    }
}
