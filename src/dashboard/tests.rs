use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::model::{Datasource, classify_datasource};
use super::rewrite::Rewriter;
use super::template::{Slot, classify, uses_variable};
use super::variables::VariableQuery;
use super::walk::{Walk, legend_has_label};
use super::*;

/// `{name, input, want}`: `want` is the scoped text, grouping on (a multi-value variable).
struct Case {
    name: &'static str,
    input: &'static str,
    want: &'static str,
}

const fn case(name: &'static str, input: &'static str, want: &'static str) -> Case {
    Case { name, input, want }
}

const PROMQL_CASES: &[Case] = &[
    case(
        "rate interval",
        "rate(x[$__rate_interval])",
        r#"rate(x{cluster=~"$cluster"}[$__rate_interval])"#,
    ),
    case(
        "interval in braces syntax",
        "rate(x[${__interval}])",
        r#"rate(x{cluster=~"$cluster"}[${__interval}])"#,
    ),
    case(
        "variable in a label value",
        r#"x{job=~"$job"}"#,
        r#"x{job=~"$job",cluster=~"$cluster"}"#,
    ),
    case(
        "variable inside an anchored regex",
        r#"x{node=~"^$Node$"}"#,
        r#"x{node=~"^$Node$",cluster=~"$cluster"}"#,
    ),
    case(
        "metric name part",
        "${metric}_total",
        r#"${metric}_total{cluster=~"$cluster"}"#,
    ),
    case(
        "metric name middle",
        r#"node_${kind}_bytes{job="n"}"#,
        r#"node_${kind}_bytes{job="n",cluster=~"$cluster"}"#,
    ),
    case(
        "whole metric name",
        "$metric",
        r#"$metric{cluster=~"$cluster"}"#,
    ),
    case(
        "old bracket syntax",
        r#"x{job="[[job]]"}"#,
        r#"x{job="[[job]]",cluster=~"$cluster"}"#,
    ),
    case(
        "old bracket syntax as metric name",
        r#"[[metric]]{job="a"}"#,
        r#"[[metric]]{job="a",cluster=~"$cluster"}"#,
    ),
    case(
        "old bracket syntax as range",
        "rate(x[[[interval]]])",
        r#"rate(x{cluster=~"$cluster"}[[[interval]]])"#,
    ),
    case(
        "format suffix",
        r#"x{pod=~"${pod:regex}"}"#,
        r#"x{pod=~"${pod:regex}",cluster=~"$cluster"}"#,
    ),
    case(
        "topk parameter",
        "topk($n, x)",
        r#"topk($n, x{cluster=~"$cluster"})"#,
    ),
    case(
        "offset",
        "x offset $__interval",
        r#"x{cluster=~"$cluster"} offset $__interval"#,
    ),
    case(
        "quantile parameter",
        "histogram_quantile($q, sum by (le) (rate(x_bucket[5m])))",
        r#"histogram_quantile($q, sum by (le, cluster) (rate(x_bucket{cluster=~"$cluster"}[5m])))"#,
    ),
    case(
        "grouping by a variable",
        "sum by ($groupby) (x)",
        r#"sum by ($groupby, cluster) (x{cluster=~"$cluster"})"#,
    ),
    case(
        "threshold is a number",
        "x > $threshold",
        r#"x{cluster=~"$cluster"} > $threshold"#,
    ),
    case(
        "subquery with two variables",
        "max_over_time(x[$__range:$__interval])",
        r#"max_over_time(x{cluster=~"$cluster"}[$__range:$__interval])"#,
    ),
    case(
        "seconds variable with a unit",
        "increase(x[${__range_s}s])",
        r#"increase(x{cluster=~"$cluster"}[${__range_s}s])"#,
    ),
    case(
        "at modifier",
        "x @ ${__to:date:seconds}",
        r#"x{cluster=~"$cluster"} @ ${__to:date:seconds}"#,
    ),
    case(
        "label name variable",
        r#"x{$label="a"}"#,
        r#"x{$label="a",cluster=~"$cluster"}"#,
    ),
    case(
        "interval arithmetic",
        "sum(rate(x[5m])) * $__interval_ms / 1000",
        r#"sum(rate(x{cluster=~"$cluster"}[5m])) * $__interval_ms / 1000"#,
    ),
    case(
        "dollar group reference in label_replace",
        r#"label_replace(x, "a", "$1", "b", "(.*)")"#,
        r#"label_replace(x{cluster=~"$cluster"}, "a", "$1", "b", "(.*)")"#,
    ),
    case(
        "already scoped",
        r#"x{cluster=~"$cluster"}"#,
        r#"x{cluster=~"$cluster"}"#,
    ),
    case(
        "own equality matcher kept",
        r#"x{cluster="$cluster"}"#,
        r#"x{cluster="$cluster"}"#,
    ),
    case(
        "total stays a total",
        "sum(rate(x[5m]))",
        r#"sum(rate(x{cluster=~"$cluster"}[5m]))"#,
    ),
    case(
        "on list of a ratio",
        "sum by (pod) (a) / on (pod) sum by (pod) (b)",
        r#"sum by (pod, cluster) (a{cluster=~"$cluster"}) / on (pod, cluster) sum by (pod, cluster) (b{cluster=~"$cluster"})"#,
    ),
    case(
        "on list against a total is left alone",
        "a / on (job) group_left sum(b)",
        r#"a{cluster=~"$cluster"} / on (job) group_left sum(b{cluster=~"$cluster"})"#,
    ),
    case(
        "comment with a variable",
        "x # per $job\n",
        "x{cluster=~\"$cluster\"} # per $job\n",
    ),
    // PromQL the crate reads through the engine's dialect layer, as the rules do.
    case(
        "keyword label names in by and on lists",
        "sum by (smoothed) (a) / on (anchored) sum by (anchored) (b)",
        r#"sum by (smoothed, cluster) (a{cluster=~"$cluster"}) / on (anchored, cluster) sum by (anchored, cluster) (b{cluster=~"$cluster"})"#,
    ),
    case(
        "keyword metric name",
        "offset offset $__interval",
        r#"offset{cluster=~"$cluster"} offset $__interval"#,
    ),
    case(
        "Prometheus 3 quoted names and modifier",
        r#"sum by ("k8s.pod") (rate({"http.requests"}[$__rate_interval] anchored))"#,
        r#"sum by ("k8s.pod", cluster) (rate({"http.requests",cluster=~"$cluster"}[$__rate_interval] anchored))"#,
    ),
    case(
        "Prometheus 3 duration expression",
        "rate(x[$__rate_interval:step()])",
        r#"rate(x{cluster=~"$cluster"}[$__rate_interval:step()])"#,
    ),
];

#[test]
fn promql_with_template_variables() {
    let rewriter = Rewriter::new(&Options::default());
    let mut failures = Vec::new();
    for c in PROMQL_CASES {
        match rewriter.rewrite(c.input, true) {
            Ok(r) if r.text == c.want => {}
            Ok(r) => failures.push(format!("{}: got {:?}, want {:?}", c.name, r.text, c.want)),
            Err(e) => failures.push(format!("{}: error {e}", c.name)),
        }
        // Idempotent.
        if let Ok(again) = rewriter.rewrite(c.want, true)
            && again.text != c.want
        {
            failures.push(format!("{}: not idempotent: {:?}", c.name, again.text));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const VARIABLE_CASES: &[Case] = &[
    case(
        "label_values with metric",
        "label_values(up, job)",
        r#"label_values(up{cluster=~"$cluster"}, job)"#,
    ),
    case(
        "label_values with selector",
        r#"label_values(kube_pod_info{namespace=~"$namespace"}, pod)"#,
        r#"label_values(kube_pod_info{namespace=~"$namespace",cluster=~"$cluster"}, pod)"#,
    ),
    case(
        "label_values without metric",
        "label_values(job)",
        r#"label_values({job!="", cluster=~"$cluster"}, job)"#,
    ),
    case(
        "query_result",
        "query_result(topk(5, x))",
        r#"query_result(topk(5, x{cluster=~"$cluster"}))"#,
    ),
    case(
        "query_result with a range variable",
        "query_result(sum by (pod) (rate(x[$__range])))",
        r#"query_result(sum by (pod) (rate(x{cluster=~"$cluster"}[$__range])))"#,
    ),
    case("metrics", "metrics(node_.*)", "metrics(node_.*)"),
    case("label_names", "label_names()", "label_names()"),
    case(
        "plain selector",
        r#"up{job="a"}"#,
        r#"up{job="a",cluster=~"$cluster"}"#,
    ),
    case(
        "already scoped",
        r#"label_values(up{cluster=~"$cluster"}, job)"#,
        r#"label_values(up{cluster=~"$cluster"}, job)"#,
    ),
];

#[test]
fn variable_queries() {
    let options = Options::default();
    let rewriter = Rewriter::new(&options);
    let datasources = HashMap::new();
    let mut report = Report::default();
    let mut walk = Walk {
        rewriter: &rewriter,
        datasources: &datasources,
        report: &mut report,
        kept: BTreeMap::new(),
    };
    let mut failures = Vec::new();
    for c in VARIABLE_CASES {
        let got = walk
            .variable_query("test", c.input)
            .unwrap_or_else(|| c.input.to_string());
        if got != c.want {
            failures.push(format!("{}: got {got:?}, want {:?}", c.name, c.want));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn label_values_without_metric_is_idempotent() {
    // The rewritten form has a metric part, which is already scoped.
    let q = VariableQuery::parse(r#"label_values({job!="", cluster=~"$cluster"}, job)"#);
    assert!(matches!(
        q,
        VariableQuery::LabelValues {
            metric: Some(_),
            ..
        }
    ));
}

#[test]
fn slots() {
    let rows: &[(&str, &[Slot])] = &[
        ("rate(x[$__rate_interval])", &[Slot::Duration]),
        ("x{a=~\"$b\"}", &[Slot::Text]),
        ("${m}_total", &[Slot::Ident]),
        ("topk($n, x)", &[Slot::Either]),
        ("sum by ($g) (x)", &[Slot::Ident]),
        ("x offset $__interval", &[Slot::Duration]),
        ("x[${s}s]", &[Slot::Number]),
        ("x @ $t", &[Slot::Number]),
        ("$a$b", &[Slot::Ident, Slot::Ident]),
        ("rate($m[5m])", &[Slot::Ident]),
    ];
    for (text, want) in rows {
        assert_eq!(classify(text, &template_tokens(text)), *want, "{text}");
    }
}

#[test]
fn restore_checks_counts() {
    let p = protect("rate(x[$__rate_interval])").unwrap();
    assert_eq!(p.placeholders.len(), 1);
    let ph = &p.placeholders[0].0;
    assert!(p.restore(&format!("{ph} {ph}")).is_err());
    assert!(p.restore("nothing").is_err());
    assert_eq!(p.restore(&p.text).unwrap(), "rate(x[$__rate_interval])");
}

#[test]
fn unparseable_is_an_error() {
    assert!(protect("sum(rate(x[5m])").is_err());
    assert!(protect("$a $b").is_err());
}

#[test]
fn datasources() {
    let mut vars = HashMap::new();
    vars.insert("ds".to_string(), "prometheus".to_string());
    vars.insert("logs".to_string(), "loki".to_string());
    let rows: &[(Value, Datasource)] = &[
        (Value::Null, Datasource::Default),
        (json!("Prometheus"), Datasource::Prometheus),
        (json!("-- Grafana --"), Datasource::Other),
        (json!("-- Mixed --"), Datasource::Mixed),
        (json!("$ds"), Datasource::Prometheus),
        (json!("${logs}"), Datasource::Other),
        (json!({"type": "loki", "uid": "x"}), Datasource::Other),
        (
            json!({"type": "prometheus", "uid": "${ds}"}),
            Datasource::Prometheus,
        ),
        (
            json!({"type": "datasource", "uid": "-- Mixed --"}),
            Datasource::Mixed,
        ),
        (
            json!({"type": "datasource", "uid": "grafana"}),
            Datasource::Other,
        ),
        (json!({"uid": "$logs"}), Datasource::Other),
    ];
    for (ds, want) in rows {
        assert_eq!(classify_datasource(Some(ds), &vars), *want, "{ds}");
    }
}

#[test]
fn variable_references() {
    assert!(uses_variable(r#"cluster="$cluster""#, "cluster"));
    assert!(uses_variable(r#"cluster=~"${cluster:regex}""#, "cluster"));
    assert!(uses_variable(r#"cluster="[[cluster]]""#, "cluster"));
    assert!(!uses_variable(r#"cluster="$clusters""#, "cluster"));
    assert!(!uses_variable(r#"cluster="local""#, "cluster"));
}

#[test]
fn legend_detection() {
    assert!(legend_has_label("{{cluster}} x", "cluster"));
    assert!(legend_has_label("{{ cluster }}", "cluster"));
    assert!(!legend_has_label("{{ clusters }}", "cluster"));
    assert!(!legend_has_label("cluster", "cluster"));
}
