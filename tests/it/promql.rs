//! PromQL scoping, table-driven: `{name, policy, expression, want}` rows, as in prom-label-proxy.
//! `want` is the exact text promfed writes: matchers spliced into the user's text.

use promfed::promql::{Policy, ScopeError, ScopeOp, Scoper, parse, selectors};

struct Case {
    name: &'static str,
    policy: Policy,
    input: &'static str,
    want: &'static str,
}

const fn keep(name: &'static str, input: &'static str, want: &'static str) -> Case {
    Case {
        name,
        policy: Policy::Keep,
        input,
        want,
    }
}

const CASES: &[Case] = &[
    // Selectors.
    keep("bare metric", "up", r#"up{cluster="local"}"#),
    keep(
        "metric with colon",
        "job:up:sum",
        r#"job:up:sum{cluster="local"}"#,
    ),
    keep("empty braces", "up{}", r#"up{cluster="local"}"#),
    keep(
        "one matcher",
        r#"up{job="a"}"#,
        r#"up{job="a",cluster="local"}"#,
    ),
    keep(
        "trailing comma",
        r#"up{job="a",}"#,
        r#"up{job="a",cluster="local"}"#,
    ),
    keep(
        "name only in braces",
        r#"{__name__="up"}"#,
        r#"{__name__="up",cluster="local"}"#,
    ),
    keep(
        "regex name",
        r#"{__name__=~"node_.+"}"#,
        r#"{__name__=~"node_.+",cluster="local"}"#,
    ),
    keep(
        "all match ops",
        r#"x{a="1",b!="2",c=~"3",d!~"4"}"#,
        r#"x{a="1",b!="2",c=~"3",d!~"4",cluster="local"}"#,
    ),
    keep(
        "spaces in braces",
        r#"x{ a = "1" }"#,
        r#"x{ a = "1" ,cluster="local"}"#,
    ),
    keep(
        "single quotes",
        r#"x{a='1'}"#,
        r#"x{a='1',cluster="local"}"#,
    ),
    keep(
        "regex escapes",
        r#"x{path=~"/api/v1/.*\\.json"}"#,
        r#"x{path=~"/api/v1/.*\\.json",cluster="local"}"#,
    ),
    keep(
        "unicode value",
        r#"x{city="Zürich ☃"}"#,
        r#"x{city="Zürich ☃",cluster="local"}"#,
    ),
    keep(
        "keyword-like metric",
        "bool_metric",
        r#"bool_metric{cluster="local"}"#,
    ),
    // Ranges, offsets, @.
    keep("matrix", "rate(x[5m])", r#"rate(x{cluster="local"}[5m])"#),
    keep(
        "matrix with braces",
        r#"rate(x{a="b"}[5m])"#,
        r#"rate(x{a="b",cluster="local"}[5m])"#,
    ),
    keep("offset", "x offset 5m", r#"x{cluster="local"} offset 5m"#),
    keep(
        "negative offset",
        "x offset -5m",
        r#"x{cluster="local"} offset -5m"#,
    ),
    keep(
        "matrix offset",
        "rate(x[5m] offset 1h)",
        r#"rate(x{cluster="local"}[5m] offset 1h)"#,
    ),
    keep(
        "at timestamp",
        "x @ 1609746000",
        r#"x{cluster="local"} @ 1609746000"#,
    ),
    keep(
        "negative at timestamp",
        "x @ -100",
        r#"x{cluster="local"} @ -100"#,
    ),
    keep("at start", "x @ start()", r#"x{cluster="local"} @ start()"#),
    keep(
        "at end offset",
        "rate(x[1m] @ end() offset 5m)",
        r#"rate(x{cluster="local"}[1m] @ end() offset 5m)"#,
    ),
    keep(
        "compound duration",
        "rate(x[1h30m])",
        r#"rate(x{cluster="local"}[1h30m])"#,
    ),
    // Subqueries.
    keep(
        "subquery",
        "max_over_time(rate(x[1m])[1h:5m])",
        r#"max_over_time(rate(x{cluster="local"}[1m])[1h:5m])"#,
    ),
    keep(
        "subquery default step",
        "max_over_time(x[1h:])",
        r#"max_over_time(x{cluster="local"}[1h:])"#,
    ),
    keep(
        "subquery offset",
        "min_over_time(x[10m:1m] offset 1h)",
        r#"min_over_time(x{cluster="local"}[10m:1m] offset 1h)"#,
    ),
    keep(
        "nested subquery",
        "max_over_time(deriv(rate(x[1m])[5m:1m])[10m:])",
        r#"max_over_time(deriv(rate(x{cluster="local"}[1m])[5m:1m])[10m:])"#,
    ),
    // Functions.
    keep(
        "function args",
        r#"label_replace(x, "dst", "$1", "src", "(.*)")"#,
        r#"label_replace(x{cluster="local"}, "dst", "$1", "src", "(.*)")"#,
    ),
    keep(
        "histogram_quantile",
        "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))",
        r#"histogram_quantile(0.99, sum by (le) (rate(x_bucket{cluster="local"}[5m])))"#,
    ),
    keep(
        "absent",
        "absent(up{job=\"a\"})",
        r#"absent(up{job="a",cluster="local"})"#,
    ),
    keep(
        "vector and time",
        "vector(1) + time()",
        "vector(1) + time()",
    ),
    keep(
        "scalar arg",
        "clamp_max(x, scalar(y))",
        r#"clamp_max(x{cluster="local"}, scalar(y{cluster="local"}))"#,
    ),
    keep(
        "holt_winters",
        "holt_winters(x[10m], 0.5, 0.5)",
        r#"holt_winters(x{cluster="local"}[10m], 0.5, 0.5)"#,
    ),
    keep(
        "label_join",
        r#"label_join(x, "d", ",", "a", "b")"#,
        r#"label_join(x{cluster="local"}, "d", ",", "a", "b")"#,
    ),
    // Aggregations.
    keep(
        "sum by",
        "sum by (job) (x)",
        r#"sum by (job) (x{cluster="local"})"#,
    ),
    keep(
        "sum by after",
        "sum(x) by (job)",
        r#"sum(x{cluster="local"}) by (job)"#,
    ),
    keep(
        "without",
        "avg without (instance) (x)",
        r#"avg without (instance) (x{cluster="local"})"#,
    ),
    keep(
        "by label named like a metric",
        "sum by (up, cluster) (up)",
        r#"sum by (up, cluster) (up{cluster="local"})"#,
    ),
    keep(
        "topk literal",
        "topk(5, x)",
        r#"topk(5, x{cluster="local"})"#,
    ),
    keep(
        "topk scalar param",
        "topk(scalar(n), x)",
        r#"topk(scalar(n{cluster="local"}), x{cluster="local"})"#,
    ),
    keep(
        "quantile scalar param",
        "quantile(scalar(q), x)",
        r#"quantile(scalar(q{cluster="local"}), x{cluster="local"})"#,
    ),
    keep(
        "count_values",
        r#"count_values("version", build_info)"#,
        r#"count_values("version", build_info{cluster="local"})"#,
    ),
    keep(
        "bottomk by",
        "bottomk by (ns) (3, x)",
        r#"bottomk by (ns) (3, x{cluster="local"})"#,
    ),
    keep(
        "group",
        "group by (job) (up)",
        r#"group by (job) (up{cluster="local"})"#,
    ),
    // Binary operators.
    keep(
        "arithmetic",
        "a + b * c",
        r#"a{cluster="local"} + b{cluster="local"} * c{cluster="local"}"#,
    ),
    keep(
        "comparison bool",
        "a > bool 0",
        r#"a{cluster="local"} > bool 0"#,
    ),
    keep(
        "set operators",
        "a and b or c unless d",
        r#"a{cluster="local"} and b{cluster="local"} or c{cluster="local"} unless d{cluster="local"}"#,
    ),
    keep(
        "on",
        "a / on (job) b",
        r#"a{cluster="local"} / on (job) b{cluster="local"}"#,
    ),
    keep(
        "ignoring",
        "a / ignoring (code) b",
        r#"a{cluster="local"} / ignoring (code) b{cluster="local"}"#,
    ),
    keep(
        "ignoring empty group_left",
        "a * ignoring() group_left b",
        r#"a{cluster="local"} * ignoring() group_left b{cluster="local"}"#,
    ),
    keep(
        "group_left labels",
        "a * on (ns, pod) group_left (node) b",
        r#"a{cluster="local"} * on (ns, pod) group_left (node) b{cluster="local"}"#,
    ),
    keep(
        "group_right",
        "a + on (x) group_right () b",
        r#"a{cluster="local"} + on (x) group_right () b{cluster="local"}"#,
    ),
    keep("unary minus", "-x", r#"-x{cluster="local"}"#),
    keep(
        "parens",
        "(a + (b))",
        r#"(a{cluster="local"} + (b{cluster="local"}))"#,
    ),
    keep("number only", "1 + 2", "1 + 2"),
    keep("string only", r#""hello""#, r#""hello""#),
    keep("power", "x ^ 2", r#"x{cluster="local"} ^ 2"#),
    keep(
        "atan2",
        "a atan2 b",
        r#"a{cluster="local"} atan2 b{cluster="local"}"#,
    ),
    // Formatting and comments.
    keep(
        "multi-line with comment",
        "sum(\n  # errors\n  rate(x{code=~\"5..\"}[5m])\n)\n/\nsum(rate(x[5m]))",
        "sum(\n  # errors\n  rate(x{code=~\"5..\",cluster=\"local\"}[5m])\n)\n/\nsum(rate(x{cluster=\"local\"}[5m]))",
    ),
    keep(
        "comment with brace",
        "x # {not a selector}\n",
        "x{cluster=\"local\"} # {not a selector}\n",
    ),
    keep(
        "backtick raw string",
        "x{a=~`foo.*`}",
        "x{a=~`foo.*`,cluster=\"local\"}",
    ),
    keep(
        "backtick with backslash",
        r"x{a=~`\d+`}",
        r#"x{a=~"\\d+",cluster="local"}"#,
    ),
    keep(
        "string containing braces",
        r#"label_replace(x, "a", "{b}", "c", "")"#,
        r#"label_replace(x{cluster="local"}, "a", "{b}", "c", "")"#,
    ),
    // Existing matchers on the label.
    keep(
        "already scoped",
        r#"x{cluster="local"}"#,
        r#"x{cluster="local"}"#,
    ),
    keep(
        "already scoped mixed",
        r#"a{cluster="local"} + b"#,
        r#"a{cluster="local"} + b{cluster="local"}"#,
    ),
    keep(
        "keep other cluster",
        r#"x{cluster="other"}"#,
        r#"x{cluster="other"}"#,
    ),
    keep(
        "keep cluster regex",
        r#"x{cluster=~".+"}"#,
        r#"x{cluster=~".+"}"#,
    ),
    Case {
        name: "override other cluster",
        policy: Policy::Override,
        input: r#"x{job="a",cluster="other"}"#,
        want: r#"x{job="a",cluster="local"}"#,
    },
    Case {
        name: "override regex",
        policy: Policy::Override,
        input: r#"rate(x{cluster=~"a|b"}[5m])"#,
        want: r#"rate(x{cluster="local"}[5m])"#,
    },
    Case {
        name: "override keeps ours",
        policy: Policy::Override,
        input: r#"x{cluster="local"} / y"#,
        want: r#"x{cluster="local"} / y{cluster="local"}"#,
    },
    Case {
        name: "override a quoted cluster label",
        policy: Policy::Override,
        input: r#"{"my.metric", "cluster"="other"} offset 5m anchored"#,
        want: r#"{"my.metric", cluster="local"} offset 5m anchored"#,
    },
    Case {
        name: "override next to an or label",
        policy: Policy::Override,
        input: r#"x{or ="a", cluster=~"a|b"}"#,
        want: r#"x{or ="a", cluster="local"}"#,
    },
    Case {
        name: "error policy without existing",
        policy: Policy::Error,
        input: "x",
        want: r#"x{cluster="local"}"#,
    },
];

fn scoper(policy: Policy) -> Scoper {
    Scoper::new("cluster", "local", ScopeOp::Equal, policy)
}

#[test]
fn table() {
    assert!(CASES.len() >= 60, "the table has {} rows", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        match scoper(case.policy).scope(case.input) {
            Ok(got) if got.text == case.want => {
                // Idempotent: scoping the output changes nothing.
                let again = scoper(case.policy).scope(&got.text).expect("output parses");
                if again.text != got.text {
                    failures.push(format!("{}: not idempotent: {:?}", case.name, again.text));
                }
                if got.reprinted {
                    failures.push(format!("{}: fell back to printing", case.name));
                }
            }
            Ok(got) => failures.push(format!(
                "{}:\n   input {:?}\n     got {:?}\n    want {:?}",
                case.name, case.input, got.text, case.want
            )),
            Err(e) => failures.push(format!("{}: error {e}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn keep_policy_reports_kept_matchers() {
    let got = scoper(Policy::Keep)
        .scope(r#"a{cluster="other"} + b{cluster=~"x|y"}"#)
        .unwrap();
    assert_eq!(got.kept, vec![r#"cluster="other""#, r#"cluster=~"x|y""#]);
    assert_eq!(got.scoped, 0);
}

#[test]
fn error_policy_refuses_other_cluster() {
    let err = scoper(Policy::Error)
        .scope(r#"x{cluster="other"}"#)
        .unwrap_err();
    assert!(matches!(err, ScopeError::ExistingMatcher { .. }), "{err}");
    assert!(err.to_string().contains("cluster"), "{err}");
}

#[test]
fn regex_scope_for_dashboards() {
    let s = Scoper::new("cluster", "$cluster", ScopeOp::Regex, Policy::Keep);
    let got = s.scope("sum(rate(x[5m]))").unwrap();
    assert_eq!(got.text, r#"sum(rate(x{cluster=~"$cluster"}[5m]))"#);
    assert_eq!(s.scope(&got.text).unwrap().text, got.text);
}

#[test]
fn other_label_and_value_are_escaped() {
    let s = Scoper::new("origin_cluster", "a\"b", ScopeOp::Equal, Policy::Keep);
    assert_eq!(s.scope("x").unwrap().text, r#"x{origin_cluster="a\"b"}"#);
}

/// PromQL that Prometheus refuses.
const BROKEN: &[&str] = &[
    "sum(",
    "x{a=}",
    "rate(x)",
    "x[5m",
    "unknown_function(x)",
    "",
    "x{a=\"1\" or b=\"2\"}",
];

/// Every expression of this module's tables, inputs and wanted outputs, for the parser's
/// differential tests (`support::expressions`).
pub(crate) fn expressions() -> impl Iterator<Item = &'static str> {
    CASES
        .iter()
        .flat_map(|c| [c.input, c.want])
        .chain(BROKEN.iter().copied())
}

#[test]
fn broken_promql_is_an_error() {
    for &input in BROKEN {
        assert!(
            scoper(Policy::Keep).scope(input).is_err(),
            "{input:?} should fail"
        );
    }
}

#[test]
fn deep_nesting_fails_fast() {
    let deep = format!("{}x{}", "(".repeat(5000), ")".repeat(5000));
    assert_eq!(
        scoper(Policy::Keep).scope(&deep).unwrap_err(),
        ScopeError::TooDeep
    );
    let chain = vec!["x"; 5000].join(" + ");
    assert_eq!(
        scoper(Policy::Keep).scope(&chain).unwrap_err(),
        ScopeError::TooDeep
    );
    // Real rules stay far below the limits.
    let ok = format!("{}x{}", "(".repeat(100), ")".repeat(100));
    assert!(scoper(Policy::Keep).scope(&ok).is_ok());
}

/// Every distinct expression of the corpus (840, from kube-prometheus, the mixins and TKG).
#[test]
fn corpus_every_selector_scoped() {
    let text = crate::support::read_data("rules/all_exprs.txt");
    let exprs: Vec<&str> = text.split("\n---\n").collect();
    assert_eq!(exprs.len(), 840);
    let s = scoper(Policy::Keep);
    for expr in exprs {
        let got = s.scope(expr).unwrap_or_else(|e| panic!("{expr}\n{e}"));
        assert!(!got.reprinted, "fell back to printing: {expr}");
        let ast = parse(&got.text).unwrap();
        let sels = selectors(&ast);
        for vs in &sels {
            assert!(
                vs.matchers
                    .matchers
                    .iter()
                    .any(|m| m.name == "cluster" && m.value == "local"),
                "unscoped selector {vs} in {}",
                got.text
            );
        }
        // The original selectors are all still there, in order, with their matchers.
        let before = selectors(&parse(expr).unwrap()).len();
        assert_eq!(before, sels.len());
        assert_eq!(s.scope(&got.text).unwrap().text, got.text, "not idempotent");
    }
}
