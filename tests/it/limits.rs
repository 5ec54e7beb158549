//! The work budgets against the densest real input: rule files packed to 1 MiB with real
//! short expressions, real regex matchers, real long expressions and tiny rules (generated
//! here from the corpus, not stored). Each must be rewritten, through the engine, `promfed
//! render` and the webhook, having spent at most half of every budget (twice the densest
//! real input fits); what promfed's rewrite would push over Kubernetes' limit for a
//! ConfigMap is denied by promfed, naming both sizes.

use std::fmt::Write as _;

use promfed::admission::{Admission, Step};
use promfed::engine::work::{Spent, Work, WorkLimits};
use promfed::object::configmap::data_bytes;
use promfed::promql::scope::{ScopeOp, Scoper};
use serde_json::Value;

use crate::support::examples::{engine, tkg_configmap};
use crate::support::review::{applied, data_pairs, decoded_patch, review_bytes};
use crate::support::{promfed_bin, read_data, require, run, run_promtool, temp_files};

/// 1 MiB: what the tests pack each shape to (Kubernetes' limit for a ConfigMap's data).
const MIB: usize = 1024 * 1024;

/// A shape of dense real input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Prometheus' own test expressions (40 bytes on average): the most PromQL per byte.
    ShortExpressions,
    /// The corpus expressions with regex matchers, and a regex matcher on every selector.
    RegexMatchers,
    /// The corpus of real rule sets (kube-prometheus, the mixins): long expressions.
    LongExpressions,
    /// `- record: rN` / `expr: mN`: the most rules and YAML nodes per byte.
    TinyRules,
}

pub(crate) const SHAPES: [Shape; 4] = [
    Shape::ShortExpressions,
    Shape::RegexMatchers,
    Shape::LongExpressions,
    Shape::TinyRules,
];

/// The real expressions a shape is made of.
fn expressions(shape: Shape) -> Vec<String> {
    let corpus = || -> Vec<String> {
        read_data("rules/all_exprs.txt")
            .split("\n---\n")
            .map(|e| e.trim_end().to_string())
            .filter(|e| !e.is_empty())
            .collect()
    };
    let short = || -> Vec<String> {
        read_data("rules/prometheus-tests/short_exprs.txt")
            .lines()
            .map(str::to_string)
            .collect()
    };
    match shape {
        Shape::ShortExpressions => short(),
        Shape::RegexMatchers => corpus()
            .into_iter()
            .chain(short())
            .filter(|e| e.contains("=~") || e.contains("!~"))
            .collect(),
        Shape::LongExpressions => corpus(),
        Shape::TinyRules => Vec::new(),
    }
}

/// Distinct expressions of `shape`, without end: the real expressions, then each of them
/// scoped once more for every further copy (a `copy` matcher on every selector; a regex one
/// for [`Shape::RegexMatchers`]), since the engine scopes and counts each distinct
/// expression once.
fn distinct(shape: Shape) -> Box<dyn Iterator<Item = String>> {
    if shape == Shape::TinyRules {
        return Box::new((0..).map(|n| format!("m{n}")));
    }
    let op = match shape {
        Shape::RegexMatchers => ScopeOp::Regex,
        _ => ScopeOp::Equal,
    };
    let exprs = expressions(shape);
    Box::new((0..).flat_map(move |copy: usize| {
        let scoper = Scoper::new("copy", &copy.to_string(), op, Default::default());
        (exprs.clone().into_iter()).map(move |expr| match copy {
            0 => expr,
            _ => {
                (scoper.scope(&expr))
                    .unwrap_or_else(|e| panic!("{expr}: {e}"))
                    .text
            }
        })
    }))
}

/// A rule file of `shape`, as large as fits in `bytes`: groups of 100 recording rules,
/// whole rules only.
pub(crate) fn dense_rule_file(shape: Shape, bytes: usize) -> String {
    let mut text = String::from("groups:\n");
    for (n, expr) in distinct(shape).enumerate() {
        let mut rule = String::new();
        if n % 100 == 0 {
            writeln!(rule, "- name: g{}\n  rules:", n / 100).unwrap();
        }
        let expr = match shape {
            Shape::TinyRules => expr,
            _ => serde_json::to_string(&expr).unwrap(),
        };
        writeln!(rule, "  - record: r{n}\n    expr: {expr}").unwrap();
        if text.len() + rule.len() > bytes {
            return text;
        }
        text.push_str(&rule);
    }
    unreachable!("the expressions have no end")
}

/// A ConfigMap's data: (key, value) pairs.
type Data = Vec<(String, String)>;

/// The data of a ConfigMap holding one dense rule file of `bytes` (key and value).
fn dense_data(shape: Shape, bytes: usize) -> Data {
    let key = "recording_rules.yml";
    vec![(key.into(), dense_rule_file(shape, bytes - key.len()))]
}

/// What the engine spent rewriting `data` within its limits, or its error.
fn rewrite(data: &[(String, String)]) -> (Result<Data, String>, Spent, WorkLimits) {
    let engine = engine(promfed::config::EXAMPLE);
    let limits = WorkLimits::for_data(data);
    let mut work = Work::new(limits);
    let result = engine
        .rewrite_within(data, &mut work)
        .map(|r| r.data)
        .map_err(|e| e.to_string());
    (result, work.spent(), limits)
}

/// Every shape of dense real input, 1 MiB of rule file, is rewritten having spent at most
/// half of each budget: twice its density fits. The densities are printed per MiB.
#[test]
fn dense_real_input_fits_twice_within_every_budget() {
    for shape in SHAPES {
        let data = dense_data(shape, MIB);
        let (result, spent, limits) = rewrite(&data);
        let rewritten = result.unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        let output: usize = rewritten.iter().map(|(k, v)| k.len() + v.len()).sum();
        crate::support::attack::report(format!(
            "{shape:?}, 1 MiB: {} nodes, {} scalar bytes, {} PromQL units, {} output bytes \
             (limits {} / {} / {} / {})",
            spent.nodes,
            spent.yaml_bytes,
            spent.promql_units,
            output,
            limits.nodes,
            limits.yaml_bytes,
            limits.promql_units,
            limits.output_bytes,
        ));
        for (what, spent, limit) in [
            ("YAML nodes", spent.nodes, limits.nodes),
            ("scalar bytes", spent.yaml_bytes, limits.yaml_bytes),
            ("PromQL units", spent.promql_units, limits.promql_units),
            (
                "output bytes",
                spent.output_bytes.max(output),
                limits.output_bytes,
            ),
        ] {
            assert!(
                2 * spent <= limit,
                "{shape:?}: {what}: spent {spent}, twice that is over the limit {limit}"
            );
        }
        // Every rule was rewritten: each carries the cluster label.
        let text = &rewritten[0].1;
        let rules = text.matches("\n  - record: ").count();
        assert_eq!(
            text.matches("\n      cluster: shared-tools\n").count(),
            rules,
            "{shape:?}: not every rule labelled"
        );
    }
}

/// The TKG ConfigMap's data with its recording rules replaced by a rule file of `shape`, the
/// data `bytes` in all.
fn dense_configmap_data(shape: Shape, bytes: usize) -> Data {
    let key = "recording_rules.yml";
    let mut data = data_pairs(&tkg_configmap());
    data.retain(|(k, _)| k != key);
    let rest = bytes - data_bytes(&data) - key.len();
    data.push((key.into(), dense_rule_file(shape, rest)));
    data
}

/// The largest TKG ConfigMap with rules of `shape` whose rewrite stays within Kubernetes'
/// limit, and that rewrite's data.
fn largest_storable(shape: Shape) -> (Data, Data) {
    let limit = promfed::object::configmap::MAX_DATA_BYTES;
    let mut bytes = limit;
    loop {
        let data = dense_configmap_data(shape, bytes);
        let (result, _, _) = rewrite(&data);
        let rewritten = result.unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        let output = data_bytes(&rewritten);
        if output <= limit {
            return (data, rewritten);
        }
        bytes = bytes * limit / output * 99 / 100;
    }
}

/// The TKG ConfigMap with `data` in it (its rule file replaced).
fn configmap_manifest(data: &[(String, String)]) -> Value {
    let mut object = tkg_configmap();
    for (key, value) in data {
        object["data"][key] = Value::String(value.clone());
    }
    object
}

/// Each shape, packed into the largest ConfigMap whose rewrite Kubernetes stores, is
/// rewritten by `promfed render` and by the webhook (the binary, over TLS) alike; the
/// rewritten rule file passes `promtool check rules`, and a second render changes nothing.
#[test]
fn dense_configmaps_are_rewritten_by_render_and_the_webhook() {
    require!(promtool);
    let files = crate::support::serve::Files::new(promfed::config::EXAMPLE);
    // The review deadline (4 s) is for the API server's timeout, not for this test: a debug
    // build on a busy machine may take longer over a dense MiB (a test never asserts speed).
    let server = crate::support::attack::server(&files, &["--review-deadline-ms", "50000"]);
    let client = files.client();
    let config = files.path("promfed.yaml");
    for shape in SHAPES {
        let (data, rewritten) = largest_storable(shape);
        let object = configmap_manifest(&data);
        let manifest = serde_json::to_string(&object).unwrap();

        let out = run(
            &promfed_bin(),
            &[
                "render".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                "-".as_ref(),
            ],
            Some(&manifest),
        );
        assert!(
            out.status.success(),
            "{shape:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = String::from_utf8(out.stdout).unwrap();
        let again = run(
            &promfed_bin(),
            &[
                "render".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                "-".as_ref(),
            ],
            Some(&rendered),
        );
        assert!(again.status.success(), "{shape:?}");
        assert_eq!(
            String::from_utf8(again.stdout).unwrap(),
            rendered,
            "{shape:?}: not a fixed point"
        );

        let body = review_bytes(&format!("dense-{shape:?}"), "CREATE", "ConfigMap", &object);
        let answer = client.post(server.https, &body).unwrap();
        let response = answer.response();
        assert_eq!(response["allowed"], true, "{shape:?}: {response}");
        let patch = decoded_patch(&response).expect("a patch");
        let patched = applied(&object, &patch);
        let rules = &rewritten
            .iter()
            .find(|(k, _)| k == "recording_rules.yml")
            .unwrap()
            .1;
        assert_eq!(
            patched["data"]["recording_rules.yml"].as_str(),
            Some(rules.as_str()),
            "{shape:?}: the webhook wrote what the engine writes"
        );
        let rendered_object = crate::support::manifests::parse_stream(&rendered).remove(0);
        assert_eq!(
            patched, rendered_object,
            "{shape:?}: the webhook's patch gives what render writes"
        );
        let out = run_promtool(
            &["check", "rules", "recording_rules.yml"],
            &[("recording_rules.yml", rules)],
        );
        assert!(
            out.status.success(),
            "{shape:?}: {}",
            crate::support::describe(&out)
        );
        crate::support::attack::report(format!(
            "{shape:?}: a ConfigMap of {} bytes is rewritten to {} bytes",
            data_bytes(&data),
            data_bytes(&rewritten),
        ));
    }
}

/// A ConfigMap that promfed's rewrite would push over Kubernetes' limit is denied by promfed,
/// naming both sizes (the webhook and `render` alike); one already over it is denied before
/// any work.
#[test]
fn a_rewrite_over_the_configmap_limit_is_denied_naming_both_sizes() {
    let admission = Admission::new(engine(promfed::config::EXAMPLE), 1);
    let limit = promfed::object::configmap::MAX_DATA_BYTES;
    for (name, data) in [
        (
            "grown over the limit",
            dense_configmap_data(Shape::TinyRules, limit),
        ),
        (
            "over the limit already",
            dense_configmap_data(Shape::TinyRules, limit + 4096),
        ),
    ] {
        let object = configmap_manifest(&data);
        let body = review_bytes("size", "CREATE", "ConfigMap", &object);
        let Step::Rewrite(pending) = admission.begin(&body) else {
            panic!("{name}: not a rewrite");
        };
        let mut work = Admission::work_for(&pending.job);
        let verdict = admission.run_within(pending.job, &mut work);
        let reply = pending.head.respond(&verdict);
        let response = reply.json().unwrap()["response"].clone();
        assert_eq!(response["allowed"], false, "{name}: {response}");
        let message = response["status"]["message"].as_str().unwrap().to_string();
        let size = data_bytes(&data).to_string();
        assert!(message.contains(&size), "{name}: {message}");
        assert!(message.contains("1048576 bytes"), "{name}: {message}");
        assert!(message.contains("Kubernetes' limit"), "{name}: {message}");
        if name == "over the limit already" {
            assert_eq!(
                work.spent(),
                Spent::default(),
                "{name}: no work before the denial"
            );
        } else {
            assert!(message.contains("rewrite would make"), "{name}: {message}");
        }

        let manifest = serde_json::to_string(&object).unwrap();
        let files = temp_files(&[
            ("in.json", &manifest),
            ("promfed.yaml", promfed::config::EXAMPLE),
        ]);
        let (input, config) = (
            files.path().join("in.json"),
            files.path().join("promfed.yaml"),
        );
        let out = run(
            &promfed_bin(),
            &[
                "render".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                input.as_os_str(),
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&size) && stderr.contains("1048576"),
            "{name}: {stderr}"
        );
    }
}
