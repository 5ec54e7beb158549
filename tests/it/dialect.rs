//! PromQL as Prometheus reads it: what promtool accepts, promfed scopes, and its output passes
//! promtool again. Named rows `{name, input, want, Prometheus 2.42, Prometheus 3}` cover the
//! crate's dialect gaps (names it reserves, Prometheus 3 syntax, 2.x leftovers); a grid puts
//! every keyword of both lexers in every place a name can stand.
//!
//! What the rows say about Prometheus is checked, not assumed: against Debian's promtool 2.42
//! (`require!(promtool)`) and, when the tools cache has a Prometheus 3 promtool (see
//! `support::promtools`: used when present, not required), against it too, with
//! `--enable-feature` for the rows that need a flag. promfed's own behaviour is asserted
//! without either tool.

use std::path::{Path, PathBuf};

use promfed::promql::{Policy, ScopeOp, Scoper, parse, selectors};
use promfed::{Config, Engine};

use crate::support::{self, promtool_check_exprs, require};

/// The Prometheus 3 promtool of the tools cache (`scripts/build-tools.sh`, which `make test`
/// runs), or a skip (a failure under PROMFED_REQUIRE_TOOLS).
fn promtool3() -> Option<PathBuf> {
    match support::prometheus3() {
        Some(server) => Some(server.with_file_name("promtool3")),
        None => support::skip(
            &support::current_test(),
            "promtool3 (scripts/build-tools.sh)",
        ),
    }
}

/// What a Prometheus version does with an expression (`promtool check rules`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prom {
    Accepts,
    Refuses,
    /// Accepts with `--enable-feature=<feature>` only.
    With(&'static str),
}
use Prom::{Accepts, Refuses, With};

const EXPERIMENTAL: Prom = With("promql-experimental-functions");

/// What promfed does.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Scopes it to exactly this text.
    Scoped(&'static str),
    /// Refuses it with a message holding this text, at this line:column.
    Refused(&'static str, &'static str),
}
use Want::{Refused, Scoped};

struct Row {
    name: &'static str,
    input: &'static str,
    want: Want,
    v2: Prom,
    v3: Prom,
}

const fn row(name: &'static str, input: &'static str, want: Want, v2: Prom, v3: Prom) -> Row {
    Row {
        name,
        input,
        want,
        v2,
        v3,
    }
}

/// Valid PromQL for 2.42 and 3.x.
const fn both(name: &'static str, input: &'static str, want: &'static str) -> Row {
    row(name, input, Scoped(want), Accepts, Accepts)
}

/// Prometheus 3 PromQL, valid by default.
const fn three(name: &'static str, input: &'static str, want: &'static str) -> Row {
    row(name, input, Scoped(want), Refuses, Accepts)
}

/// Prometheus 3 PromQL behind an experimental flag.
const fn flagged(name: &'static str, input: &'static str, want: &'static str, v3: Prom) -> Row {
    row(name, input, Scoped(want), Refuses, v3)
}

const ROWS: &[Row] = &[
    // Names promql-parser reserves and Prometheus does not.
    both(
        "anchored as a metric name",
        r#"anchored{job="x"}"#,
        r#"anchored{job="x",cluster="local"}"#,
    ),
    both(
        "smoothed as a bare metric name",
        "smoothed",
        r#"smoothed{cluster="local"}"#,
    ),
    both(
        "anchored in a range",
        "rate(anchored[5m])",
        r#"rate(anchored{cluster="local"}[5m])"#,
    ),
    both(
        "smoothed in by",
        "sum by (smoothed) (up)",
        r#"sum by (smoothed) (up{cluster="local"})"#,
    ),
    both(
        "anchored in a trailing without",
        "sum(up) without (job, anchored)",
        r#"sum(up{cluster="local"}) without (job, anchored)"#,
    ),
    both(
        "on and group_left lists",
        "a * on (anchored) group_left (smoothed) b",
        r#"a{cluster="local"} * on (anchored) group_left (smoothed) b{cluster="local"}"#,
    ),
    both(
        "capitalised",
        "Anchored + SMOOTHED",
        r#"Anchored{cluster="local"} + SMOOTHED{cluster="local"}"#,
    ),
    both(
        "or as a label name",
        r#"up{or ="x"}"#,
        r#"up{or ="x",cluster="local"}"#,
    ),
    both(
        "or as a later label name",
        r#"up{a="1", Or !~"x"}"#,
        r#"up{a="1", Or !~"x",cluster="local"}"#,
    ),
    // Keyword metric names are spliced like any other, not reprinted.
    both(
        "aggregation names as metric names",
        "sum(sum) by (job) / count offset 5m",
        r#"sum(sum{cluster="local"}) by (job) / count{cluster="local"} offset 5m"#,
    ),
    both(
        "set operators as metric names",
        "and and or",
        r#"and{cluster="local"} and or{cluster="local"}"#,
    ),
    both(
        "keyword metric name before a comment",
        "by # a metric named by\n  @ 100",
        "by{cluster=\"local\"} # a metric named by\n  @ 100",
    ),
    both(
        "Prometheus 3 keywords as metric names",
        "step + range + max_of + limitk",
        r#"step{cluster="local"} + range{cluster="local"} + max_of{cluster="local"} + limitk{cluster="local"}"#,
    ),
    both(
        "fill as a label name",
        "a * on (fill, fill_left) b",
        r#"a{cluster="local"} * on (fill, fill_left) b{cluster="local"}"#,
    ),
    // Prometheus 3, by default.
    three(
        "quoted metric name",
        r#"{"my.metric"}"#,
        r#"{"my.metric",cluster="local"}"#,
    ),
    three(
        "quoted metric and label names",
        r#"{"my.metric", "label.name"="v"}"#,
        r#"{"my.metric", "label.name"="v",cluster="local"}"#,
    ),
    three(
        "quoted metric name in a range",
        "rate({'my.metric'}[5m])",
        r#"rate({'my.metric',cluster="local"}[5m])"#,
    ),
    three(
        "quoted labels in by",
        r#"sum by ("a.b", job) (x)"#,
        r#"sum by ("a.b", job) (x{cluster="local"})"#,
    ),
    three(
        "quoted labels in on and group_left",
        r#"x / on ("a.b") group_left ("c.d") y"#,
        r#"x{cluster="local"} / on ("a.b") group_left ("c.d") y{cluster="local"}"#,
    ),
    three(
        "quoted cluster label is kept",
        r#"x{"cluster"="other"} + y"#,
        r#"x{"cluster"="other"} + y{cluster="local"}"#,
    ),
    three(
        "anchored modifier",
        "increase(x[5m] anchored)",
        r#"increase(x{cluster="local"}[5m] anchored)"#,
    ),
    three(
        "smoothed modifier on an instant selector",
        r#"x{job="a"} smoothed"#,
        r#"x{job="a",cluster="local"} smoothed"#,
    ),
    three(
        "modifier after offset",
        "rate(x[5m] offset 1m anchored)",
        r#"rate(x{cluster="local"}[5m] offset 1m anchored)"#,
    ),
    three(
        "modifier after @",
        "rate(x[5m] @ 1700000000 smoothed)",
        r#"rate(x{cluster="local"}[5m] @ 1700000000 smoothed)"#,
    ),
    three(
        "anchored metric with the anchored modifier",
        "increase(anchored[5m] anchored)",
        r#"increase(anchored{cluster="local"}[5m] anchored)"#,
    ),
    three(
        "trim operators",
        "h </ 0.5 + h >/ 0.1",
        r#"h{cluster="local"} </ 0.5 + h{cluster="local"} >/ 0.1"#,
    ),
    three(
        "duration arithmetic in a range",
        "rate(x[5m+1m])",
        r#"rate(x{cluster="local"}[5m+1m])"#,
    ),
    three(
        "step() in a subquery",
        "max_over_time(rate(x[5m])[1h:step()])",
        r#"max_over_time(rate(x{cluster="local"}[5m])[1h:step()])"#,
    ),
    three(
        "min_of in a range",
        "sum_over_time(x[min_of(5m, step())])",
        r#"sum_over_time(x{cluster="local"}[min_of(5m, step())])"#,
    ),
    three(
        "duration expression after offset",
        "x offset (1h + 5m)",
        r#"x{cluster="local"} offset (1h + 5m)"#,
    ),
    three(
        "negative step() offset",
        "x offset -step()",
        r#"x{cluster="local"} offset -step()"#,
    ),
    three(
        "number of seconds as a range",
        "rate(x[300])",
        r#"rate(x{cluster="local"}[300])"#,
    ),
    three(
        "number of seconds as an offset",
        "x offset 300",
        r#"x{cluster="local"} offset 300"#,
    ),
    three(
        "histogram_avg",
        "histogram_avg(rate(x[5m]))",
        r#"histogram_avg(rate(x{cluster="local"}[5m]))"#,
    ),
    three(
        "first_over_time",
        "first_over_time(x[5m])",
        r#"first_over_time(x{cluster="local"}[5m])"#,
    ),
    // Prometheus 3, behind a flag.
    flagged(
        "double_exponential_smoothing",
        "double_exponential_smoothing(x[10m], 0.5, 0.5)",
        r#"double_exponential_smoothing(x{cluster="local"}[10m], 0.5, 0.5)"#,
        EXPERIMENTAL,
    ),
    flagged(
        "info with a data label selector",
        r#"info(rate(x[5m]), {k8s_cluster_name=~".+"})"#,
        r#"info(rate(x{cluster="local"}[5m]), {k8s_cluster_name=~".+",cluster="local"})"#,
        EXPERIMENTAL,
    ),
    flagged(
        "sort_by_label",
        r#"sort_by_label(x, "a", "b")"#,
        r#"sort_by_label(x{cluster="local"}, "a", "b")"#,
        EXPERIMENTAL,
    ),
    flagged(
        "sort_by_label_desc",
        r#"sort_by_label_desc(x, "a")"#,
        r#"sort_by_label_desc(x{cluster="local"}, "a")"#,
        EXPERIMENTAL,
    ),
    flagged(
        "limitk",
        "limitk(5, x)",
        r#"limitk(5, x{cluster="local"})"#,
        EXPERIMENTAL,
    ),
    flagged(
        "limit_ratio",
        "limit_ratio by (job) (0.5, x)",
        r#"limit_ratio by (job) (0.5, x{cluster="local"})"#,
        EXPERIMENTAL,
    ),
    flagged(
        "mad_over_time",
        "mad_over_time(x[5m])",
        r#"mad_over_time(x{cluster="local"}[5m])"#,
        EXPERIMENTAL,
    ),
    flagged(
        "ts_of_max_over_time",
        "ts_of_max_over_time(x[5m])",
        r#"ts_of_max_over_time(x{cluster="local"}[5m])"#,
        EXPERIMENTAL,
    ),
    flagged(
        "fill modifier",
        "x * on (a) group_left fill(0) y",
        r#"x{cluster="local"} * on (a) group_left fill(0) y{cluster="local"}"#,
        With("promql-binop-fill-modifiers"),
    ),
    // Prometheus 2.x only.
    row(
        "holt_winters",
        "holt_winters(x[10m], 0.5, 0.5)",
        Scoped(r#"holt_winters(x{cluster="local"}[10m], 0.5, 0.5)"#),
        Accepts,
        Refuses,
    ),
    both(
        "backtick string with a backslash",
        r"x{a=~`\d+`}",
        r#"x{a=~"\\d+",cluster="local"}"#,
    ),
    // What the crate cannot read, said so.
    row(
        "digit separator",
        "x * 1_000",
        Refused(
            "promtool accepts `_` between the digits of a number (Prometheus 3: `1_000`), but the PromQL \
             parser promfed uses does not support it",
            "1:6",
        ),
        Refuses,
        Accepts,
    ),
    // Refused by Prometheus too.
    row(
        "modifier on an aggregation",
        "sum(x) anchored",
        Refused("invalid promql query", "1:1"),
        Refuses,
        Refuses,
    ),
    row(
        "anchored and smoothed together",
        "x anchored smoothed",
        Refused(
            "anchored and smoothed modifiers cannot be used together",
            "1:12",
        ),
        Refuses,
        Refuses,
    ),
    row(
        "modifier on a subquery",
        "max_over_time(rate(x[5m])[1h:] anchored)",
        Refused("invalid promql query", "1:1"),
        Refuses,
        Refuses,
    ),
    row(
        "negative range",
        "rate(x[-5m])",
        Refused("unexpected character inside brackets: '-'", "1:8"),
        Refuses,
        Refuses,
    ),
    row(
        "bool as a metric name",
        "x + bool",
        Refused("invalid promql query", "1:9"),
        Refuses,
        Refuses,
    ),
    row(
        "without in a label list",
        "sum by (without) (up)",
        Refused("invalid promql query", "1:1"),
        Refuses,
        Refuses,
    ),
];

/// Every expression of [`ROWS`] (inputs and promfed's wanted outputs) and of the keyword
/// [`grid`], for the parser's differential tests (`support::expressions`).
pub(crate) fn expressions() -> Vec<String> {
    let rows = ROWS.iter().flat_map(|r| match r.want {
        Scoped(want) => vec![r.input, want],
        Refused(..) => vec![r.input],
    });
    let mut out: Vec<String> = rows.map(str::to_string).collect();
    out.extend(grid().into_iter().map(|(expr, _)| expr));
    out
}

fn scoper() -> Scoper {
    Scoper::new("cluster", "local", ScopeOp::Equal, Policy::Keep)
}

/// promfed's result for `input`: the scoped text, or the error message.
fn scope(input: &str) -> Result<String, String> {
    scoper()
        .scope(input)
        .map(|s| s.text)
        .map_err(|e| e.to_string())
}

/// Problems with promfed's output for `input` (scoped to `output`): it must be spliced (not
/// printed), scope every selector it has, keep every selector of the input, and be a fixed
/// point of the scoper.
fn check_output(input: &str, output: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let scoped = scoper().scope(input).expect("scoped before");
    if scoped.reprinted {
        problems.push("printed from the AST, not spliced".into());
    }
    match (parse(input), parse(output)) {
        (Ok(before), Ok(after)) => {
            let (before, after) = (selectors(&before), selectors(&after));
            if before.len() != after.len() {
                problems.push(format!("{} selectors became {}", before.len(), after.len()));
            }
            for vs in &after {
                let local = vs.matchers.matchers.iter().any(|m| m.name == "cluster");
                if !local {
                    problems.push(format!("selector {vs} is not scoped"));
                }
            }
        }
        (before, after) => problems.push(format!("parse: {before:?} / {after:?}")),
    }
    match scoper().scope(output) {
        Ok(again) if again.text == output => {}
        again => problems.push(format!("not a fixed point: {again:?}")),
    }
    problems
}

#[test]
fn rows_scope_what_prometheus_accepts() {
    let mut failures = Vec::new();
    for row in ROWS {
        let got = scope(row.input);
        match (row.want, &got) {
            (Scoped(want), Ok(text)) if text == want => {
                for problem in check_output(row.input, text) {
                    failures.push(format!("{}: {problem}", row.name));
                }
            }
            (Refused(message, at), Err(e))
                if e.contains(message) && e.contains(&format!("PromQL: {at}: ")) => {}
            _ => failures.push(format!(
                "{}:\n   input {:?}\n     got {got:?}\n    want {:?}",
                row.name, row.input, row.want
            )),
        }
        // Whatever a Prometheus version accepts is scoped, or refused saying the parser lacks it.
        let accepted = [row.v2, row.v3].iter().any(|v| *v != Refuses);
        if accepted
            && let Refused(message, _) = row.want
            && !message.contains("does not support")
        {
            failures.push(format!(
                "{}: Prometheus accepts it, promfed refuses",
                row.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Which rows `promtool [flags] check rules` accepts, as inputs and as promfed's outputs.
fn promtool_verdicts(promtool: &Path, flags: &[&str]) -> (Vec<bool>, Vec<Option<bool>>) {
    let inputs: Vec<&str> = ROWS.iter().map(|r| r.input).collect();
    let outputs: Vec<String> = ROWS.iter().filter_map(|r| scope(r.input).ok()).collect();
    let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    let on_inputs = promtool_check_exprs(promtool, flags, &inputs);
    let mut on_outputs = promtool_check_exprs(promtool, flags, &outputs).into_iter();
    let accepted = on_inputs.iter().map(Option::is_none).collect();
    let outputs = ROWS
        .iter()
        .map(|r| {
            scope(r.input)
                .ok()
                .and_then(|_| on_outputs.next())
                .map(|v| v.is_none())
        })
        .collect();
    (accepted, outputs)
}

/// The rows' claims about one Prometheus version, checked with its promtool: what it accepts
/// (by default, or with the row's flag) it accepts, promfed's output for it too, and what it
/// refuses it refuses.
fn check_rows_with(promtool: &Path, version: &str, verdict: fn(&Row) -> Prom) {
    let mut flags: Vec<&str> = ROWS
        .iter()
        .filter_map(|r| match verdict(r) {
            With(feature) => Some(feature),
            _ => None,
        })
        .collect();
    flags.sort_unstable();
    flags.dedup();
    let flag = format!("--enable-feature={}", flags.join(","));
    let (default_in, default_out) = promtool_verdicts(promtool, &[]);
    let (flagged_in, flagged_out) = if flags.is_empty() {
        (default_in.clone(), default_out.clone())
    } else {
        promtool_verdicts(promtool, &[&flag])
    };
    let mut failures = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        let (input, output) = match verdict(row) {
            Accepts => (default_in[i], default_out[i]),
            With(_) => (flagged_in[i], flagged_out[i]),
            Refuses => (!default_in[i], None),
        };
        if !input {
            failures.push(format!(
                "{}: {:?} claims {:?}",
                row.name,
                row.input,
                verdict(row)
            ));
        }
        if matches!(verdict(row), With(_)) && default_in[i] {
            failures.push(format!("{}: accepted without a flag", row.name));
        }
        if output == Some(false) {
            failures.push(format!("{}: promfed's output is refused", row.name));
        }
    }
    assert!(
        failures.is_empty(),
        "promtool {version}:\n{}",
        failures.join("\n")
    );
}

#[test]
fn rows_agree_with_promtool_2_42() {
    let promtool = require!(promtool);
    check_rows_with(&promtool, "2.42", |r| r.v2);
}

#[test]
fn rows_agree_with_promtool_3() {
    let Some(promtool) = promtool3() else { return };
    check_rows_with(&promtool, "3", |r| r.v3);
}

// ---------------------------------------------------------------------------------------
// Every keyword as a name

/// Every keyword of promql-parser's lexer and of Prometheus 2.42's and 3.x's, some spelled in
/// capitals (keywords are case-insensitive), and function names.
const WORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "atan2",
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
    "offset",
    "smoothed",
    "anchored",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "fill",
    "fill_left",
    "fill_right",
    "bool",
    "start",
    "end",
    "step",
    "range",
    "max_of",
    "min_of",
    "rate",
    "info",
    "Anchored",
    "SUM",
];

/// Keywords Prometheus' grammar takes neither as metric names (`metric_identifier`) nor ...
const NOT_METRIC_NAMES: &[&str] = &[
    "atan2",
    "bool",
    "group_left",
    "group_right",
    "ignoring",
    "on",
];
/// ... as label names in a label list (`maybe_label`). (In matchers any name is a label.)
const NOT_LABEL_NAMES: &[&str] = &["without"];

/// Where a name stands, `{k}` for the word.
const METRIC_PLACES: &[&str] = &[
    "{k}",
    r#"{k}{{job="x"}}"#,
    "rate({k}[5m])",
    "{k} offset 5m",
    "{k} + 1",
    "sum({k})",
    "{k} @ 100",
    "-{k}",
    "{k} > bool 1",
    "1 < {k}",
    "({k})",
    "max_over_time({k}[5m:1m])",
    "{k} and {k}",
    "{k} # a comment\n/ 2",
];
const LABEL_LIST_PLACES: &[&str] = &[
    "sum by ({k}) (up)",
    "sum without ({k}) (up)",
    "sum(up) by ({k})",
    "up / on ({k}) up",
    "up / ignoring ({k}) up",
    "up * on (job) group_left ({k}) up",
    "sum by (job, {k}) (up)",
    "topk by ({k}) (1, up)",
];
const OTHER_PLACES: &[&str] = &[
    r#"up{{{k}="x"}}"#,
    r#"up{{job="a", {k}!~"x"}}"#,
    r#"count_values("{k}", up)"#,
];

/// (expression, whether Prometheus accepts it) for every word in every place.
fn grid() -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for word in WORDS {
        let lower = word.to_ascii_lowercase();
        let places = [
            (METRIC_PLACES, !NOT_METRIC_NAMES.contains(&lower.as_str())),
            (
                LABEL_LIST_PLACES,
                !NOT_LABEL_NAMES.contains(&lower.as_str()),
            ),
            (OTHER_PLACES, true),
        ];
        for (templates, valid) in places {
            for template in templates {
                let expr = template
                    .replace("{{", "\u{1}")
                    .replace("}}", "\u{2}")
                    .replace("{k}", word)
                    .replace('\u{1}', "{")
                    .replace('\u{2}', "}");
                out.push((expr, valid));
            }
        }
    }
    out
}

#[test]
fn every_keyword_is_a_name_where_prometheus_takes_one() {
    let grid = grid();
    assert!(grid.len() > 1000, "{} expressions", grid.len());
    let mut failures = Vec::new();
    for (expr, valid) in &grid {
        match (scope(expr), valid) {
            (Ok(text), true) => {
                for problem in check_output(expr, &text) {
                    failures.push(format!("{expr:?}: {problem}"));
                }
            }
            (Err(e), false) if e.starts_with("cannot parse PromQL: ") => {}
            (got, _) => failures.push(format!("{expr:?}: {got:?}, Prometheus accepts: {valid}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The grid's claims, checked with a promtool: it accepts exactly the valid expressions, and
/// promfed's outputs for them.
fn check_grid_with(promtool: &Path, version: &str) {
    let grid = grid();
    let inputs: Vec<&str> = grid.iter().map(|(e, _)| e.as_str()).collect();
    let verdicts = promtool_check_exprs(promtool, &[], &inputs);
    let mut failures = Vec::new();
    for ((expr, valid), verdict) in grid.iter().zip(&verdicts) {
        if verdict.is_none() != *valid {
            failures.push(format!(
                "{expr:?}: promtool says {verdict:?}, the grid {valid}"
            ));
        }
    }
    let outputs: Vec<String> = grid
        .iter()
        .filter(|(_, valid)| *valid)
        .filter_map(|(e, _)| scope(e).ok())
        .collect();
    let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    for (output, verdict) in outputs
        .iter()
        .zip(promtool_check_exprs(promtool, &[], &outputs))
    {
        if let Some(message) = verdict {
            failures.push(format!("output {output:?}: {message}"));
        }
    }
    assert!(
        failures.is_empty(),
        "promtool {version}:\n{}",
        failures.join("\n")
    );
}

#[test]
fn keyword_grid_agrees_with_promtool_2_42() {
    let promtool = require!(promtool);
    check_grid_with(&promtool, "2.42");
}

#[test]
fn keyword_grid_agrees_with_promtool_3() {
    let Some(promtool) = promtool3() else { return };
    check_grid_with(&promtool, "3");
}

// ---------------------------------------------------------------------------------------
// Errors say where

/// Errors are placed by `promql::position` (tested against promtool in `engine`) on the
/// crate's view, and given in the user's text: after names, modifiers and duration expressions
/// the view changed, and after backtick strings promfed rewrote.
#[test]
fn errors_carry_line_and_column_of_the_users_text() {
    let cases = [
        (
            "rate(x[5m+1m] anchored) + * y",
            "invalid promql query",
            "1:27",
        ),
        (
            "sum by (smoothed) (anchored) * * y",
            "invalid promql query",
            "1:32",
        ),
        ("x offset (1h + 5m) * * 2", "invalid promql query", "1:22"),
        (
            r#"{"my.metric", "a.b"="c"} / / y"#,
            "invalid promql query",
            "1:28",
        ),
        (
            "rate(x[5m+1m)",
            "unexpected character inside brackets: '+'",
            "1:10",
        ),
        (
            "sum(\n  rate(x[5m] offset 5x)\n)",
            "bad number or duration syntax",
            "2:22",
        ),
        // Columns count characters, in the user's text (before backtick strings are rewritten).
        (r#"x{a="é"} + * y"#, "invalid promql query", "1:12"),
        (
            r"x{a=~`\d+`} + foo(y)",
            "unknown function with name 'foo'",
            "1:15",
        ),
    ];
    let mut failures = Vec::new();
    for (input, message, at) in cases {
        match scope(input) {
            Err(e) if e.contains(message) && e.contains(&format!("PromQL: {at}: ")) => {}
            got => failures.push(format!("{input:?}: {got:?}, want {message:?} at {at}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The webhook's and the CLI's message: where in the ConfigMap, where in the expression, and
/// that the parser, not the PromQL, is the limit.
#[test]
fn denials_say_where_and_what_the_parser_lacks() {
    let engine = Engine::new(Config::from_yaml("localClusterName: local\n").unwrap()).unwrap();
    let rules = "groups:\n- name: g\n  rules:\n  - record: r:ok\n    expr: sum by (smoothed) (up)\n  - record: r:digits\n    expr: x * 1_000\n";
    let err = engine
        .rewrite(&[("recording_rules.yml".into(), rules.into())])
        .unwrap_err()
        .to_string();
    for part in [
        "recording_rules.yml",
        "group \"g\"",
        "record \"r:digits\"",
        "line 7",
        "PromQL: 1:6: ",
        "promtool accepts `_` between the digits",
        "the PromQL parser promfed uses does not support it",
    ] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }
    let ok = engine
        .rewrite(&[(
            "recording_rules.yml".into(),
            rules.replace("x * 1_000", "x * 1000"),
        )])
        .unwrap();
    assert!(
        ok.data[0]
            .1
            .contains("sum by (smoothed) (up{cluster=\"local\"})")
    );
}
