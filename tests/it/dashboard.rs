//! `promfed dashboard` and the dashboards in `dashboards/`.
//!
//! The shipped dashboards: every PromQL expression parses (template variables protected) and
//! every selector filters on `cluster`; each is a fixed point of the converter. The converter
//! on the corpus dashboards (tests/data/dashboards, tests/data/tkg/dashboards): golden output
//! and report (`PROMFED_UPDATE_GOLDEN=1` rewrites them), idempotent, every selector scoped,
//! template variables intact. Then the edge cases on small inline dashboards, and the CLI.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use promfed::dashboard::{
    Options, convert, convert_value, expressions, protect, template_tokens, unscoped_selectors,
};
use serde_json::{Value, json};

use crate::support::{
    assert_golden, data, describe, promfed_bin, require, root, run, run_promtool,
};

const SHIPPED: &[&str] = &[
    "api.json",
    "global-overview.json",
    "promfed.json",
    "tkg.json",
];

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension() == Some(OsStr::new("json")))
        .collect();
    files.sort();
    files
}

/// Corpus dashboards as (golden name, path).
fn corpus() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for (prefix, dir) in [("", "dashboards"), ("tkg/", "tkg/dashboards")] {
        for path in json_files(&data(dir)) {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            out.push((format!("{prefix}{stem}"), path));
        }
    }
    assert!(out.len() >= 9, "corpus dashboards missing: {out:?}");
    out
}

fn shipped() -> Vec<PathBuf> {
    let files = json_files(&root().join("dashboards"));
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names, SHIPPED,
        "dashboards/ holds other files than expected"
    );
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every expression parses and every selector has a `cluster` matcher; the cluster variable's
/// own query is the one exception (it lists the clusters).
fn assert_all_scoped(name: &str, dashboard: &Value) -> usize {
    let exprs = expressions(dashboard);
    let mut problems = Vec::new();
    let mut count = 0;
    for e in &exprs {
        if e.variable.as_deref() == Some("cluster") {
            continue;
        }
        count += 1;
        match unscoped_selectors(&e.text, "cluster") {
            Ok(unscoped) if unscoped.is_empty() => {}
            Ok(unscoped) => problems.push(format!("{}: unscoped {unscoped:?}", e.place)),
            Err(err) => problems.push(format!("{}: does not parse: {err}", e.place)),
        }
    }
    assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
    count
}

fn cluster_variable(dashboard: &Value) -> Option<&Value> {
    dashboard["templating"]["list"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == "cluster")
}

#[test]
fn shipped_dashboards_parse_and_every_selector_filters_on_cluster() {
    for path in shipped() {
        let name = path.display().to_string();
        let dashboard: Value = serde_json::from_str(&read(&path)).expect("valid JSON");
        let count = assert_all_scoped(&name, &dashboard);
        assert!(count >= 10, "{name}: only {count} expressions");

        let list = dashboard["templating"]["list"]
            .as_array()
            .expect("variables");
        assert_eq!(
            list[0]["type"], "datasource",
            "{name}: datasource variable first"
        );
        assert_eq!(list[0]["name"], "datasource");
        assert_eq!(list[0]["query"], "prometheus");
        let cluster = cluster_variable(&dashboard).expect("cluster variable");
        assert_eq!(cluster["multi"], true, "{name}");
        assert_eq!(cluster["includeAll"], true, "{name}");
        assert_eq!(cluster["allValue"], ".*", "{name}");
        assert!(
            cluster["query"]
                .as_str()
                .is_some_and(|q| q.starts_with("label_values(") && q.ends_with(", cluster)")),
            "{name}: {}",
            cluster["query"]
        );
        // Every Prometheus panel and target goes through the datasource variable.
        let text = read(&path);
        assert!(!text.contains("\"Prometheus\""), "{name}: fixed datasource");
        assert!(text.ends_with("}\n"), "{name}: trailing newline");
    }
}

#[test]
fn shipped_dashboards_are_fixed_points_of_the_converter() {
    for path in shipped() {
        let text = read(&path);
        let converted = convert(&text, &Options::default()).expect("converts");
        assert!(
            converted.report.warnings.is_empty(),
            "{}: {:?}",
            path.display(),
            converted.report.warnings
        );
        assert_eq!(converted.report.scoped, 0, "{}", path.display());
        assert!(
            converted.text == text,
            "{}: not a fixed point (reformat it with `promfed dashboard`):\n{}",
            path.display(),
            similar::TextDiff::from_lines(&text, &converted.text)
                .unified_diff()
                .header("file", "converted")
        );
    }
}

#[test]
fn corpus_golden() {
    for (name, path) in corpus() {
        let converted = convert(&read(&path), &Options::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_golden(format!("dashboards/{name}.json"), &converted.text);
        assert_golden(
            format!("dashboards/{name}.report.txt"),
            &converted.report.to_string(),
        );
    }
}

#[test]
fn corpus_conversion_is_idempotent() {
    for (name, path) in corpus() {
        let once = convert(&read(&path), &Options::default()).expect("converts");
        let twice = convert(&once.text, &Options::default()).expect("converts again");
        assert!(
            once.text == twice.text,
            "{name}: second run changed the dashboard"
        );
        assert_eq!(twice.report.scoped, 0, "{name}");
        assert_eq!(twice.report.legends, 0, "{name}");
        assert_eq!(twice.report.grouped, 0, "{name}");
        assert!(!twice.report.variable_added, "{name}");
    }
}

#[test]
fn corpus_every_selector_is_scoped() {
    for (name, path) in corpus() {
        let converted = convert(&read(&path), &Options::default()).expect("converts");
        let unparsed: Vec<&String> = (converted.report.warnings.iter())
            .filter(|w| w.contains("left as it is"))
            .collect();
        assert!(unparsed.is_empty(), "{name}: {unparsed:?}");
        let dashboard: Value = serde_json::from_str(&converted.text).expect("JSON out");
        assert_all_scoped(&name, &dashboard);
        // `label_values(label)` gains a selector, the new variable has one.
        let input: Value = serde_json::from_str(&read(&path)).expect("JSON in");
        assert!(
            expressions(&input).len() <= expressions(&dashboard).len(),
            "{name}: expressions lost"
        );
    }
}

/// The real parser agrees: every expression of the shipped and the converted corpus
/// dashboards, template tokens protected, passes `promtool check rules` as a recording rule.
#[test]
fn promtool_parses_every_dashboard_expression() {
    let _promtool = require!(promtool);
    let mut dashboards: Vec<(String, Value)> = Vec::new();
    for path in shipped() {
        let value = serde_json::from_str(&read(&path)).expect("JSON");
        dashboards.push((path.display().to_string(), value));
    }
    for (name, path) in corpus() {
        let converted = convert(&read(&path), &Options::default()).expect("converts");
        dashboards.push((name, serde_json::from_str(&converted.text).expect("JSON")));
    }
    let mut rules = String::from("groups:\n- name: dashboards\n  rules:\n");
    let mut places = Vec::new();
    for (name, dashboard) in &dashboards {
        for e in expressions(dashboard) {
            let protected = protect(&e.text).unwrap_or_else(|err| panic!("{name}: {err}"));
            rules.push_str(&format!(
                "  - record: dashboard_expr_{}\n    expr: {}\n",
                places.len(),
                serde_json::to_string(&protected.text).unwrap()
            ));
            places.push(format!("{name}: {}", e.place));
        }
    }
    assert!(places.len() > 250, "only {} expressions", places.len());
    let out = run_promtool(
        &["check", "rules", "--lint=none", "rules.yml"],
        &[("rules.yml", &rules)],
    );
    assert!(out.status.success(), "{}", describe(&out));
}

/// Template tokens of every string in a JSON value, counted by text.
fn tokens_of(value: &Value, counts: &mut BTreeMap<String, usize>) {
    match value {
        Value::String(s) => {
            for r in template_tokens(s) {
                *counts.entry(s[r].to_string()).or_default() += 1;
            }
        }
        Value::Array(items) => items.iter().for_each(|v| tokens_of(v, counts)),
        Value::Object(map) => map.values().for_each(|v| tokens_of(v, counts)),
        _ => {}
    }
}

#[test]
fn corpus_template_variables_come_through_intact() {
    for (name, path) in corpus() {
        let input: Value = serde_json::from_str(&read(&path)).expect("JSON in");
        let converted = convert(&read(&path), &Options::default()).expect("converts");
        let mut output: Value = serde_json::from_str(&converted.text).expect("JSON out");
        if converted.report.variable_added {
            // Its text is ours (it copies a datasource reference, too).
            let list = output["templating"]["list"].as_array_mut().unwrap();
            list.retain(|v| v["name"] != "cluster");
        }
        let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
        tokens_of(&input, &mut before);
        tokens_of(&output, &mut after);
        // Ours: `$cluster` in each new matcher.
        let ours = ["$cluster"];
        for (token, n) in &before {
            if !ours.contains(&token.as_str()) {
                assert_eq!(after.get(token), Some(n), "{name}: {token}");
            }
        }
        for (token, n) in &after {
            assert!(
                before.contains_key(token) || ours.contains(&token.as_str()),
                "{name}: new token {token} ({n}x)"
            );
            if ours.contains(&token.as_str()) {
                assert!(*n >= before.get(token).copied().unwrap_or(0), "{name}");
            }
        }
        assert!(
            after.get("$cluster").copied().unwrap_or(0)
                >= converted.report.scoped + before.get("$cluster").copied().unwrap_or(0),
            "{name}: fewer $cluster than scoped selectors"
        );
    }
}

/// A dashboard with the cases the corpus lacks.
fn edge_dashboard() -> Value {
    json!({
        "title": "Edge cases",
        "templating": {"list": [
            {"name": "ds", "type": "datasource", "query": "prometheus"},
            {"name": "logs", "type": "datasource", "query": "loki"},
            {"name": "job", "type": "query", "datasource": "$ds",
             "query": {"query": "label_values(job)", "refId": "PrometheusVariableQueryEditor-VariableQuery"},
             "definition": "label_values(job)"},
            {"name": "pod", "type": "query", "datasource": {"type": "prometheus", "uid": "${ds}"},
             "query": "query_result(topk(5, sum by (pod) (rate(x{job=~\"$job\"}[$__range]))))"},
            {"name": "stream", "type": "query", "datasource": "$logs", "query": "label_values(app)"},
            {"name": "names", "type": "query", "query": "metrics(node_.*)"},
            {"name": "step", "type": "interval", "query": "1m,5m"}
        ]},
        "annotations": {"list": [
            {"builtIn": 1, "datasource": "-- Grafana --", "name": "Annotations & Alerts"},
            {"name": "deploys", "datasource": "$ds", "expr": "changes(kube_deployment_status_observed_generation[5m]) > 0"}
        ]},
        "panels": [
            {"title": "Plain", "datasource": "$ds", "targets": [
                {"refId": "A", "expr": "sum by (pod) (rate(x{job=~\"$job\"}[$__rate_interval]))", "legendFormat": "{{pod}}"},
                {"refId": "B", "expr": "sum(rate(x[5m]))", "legendFormat": "total"},
                {"refId": "C", "expr": "sum(rate(x[5m]", "legendFormat": "broken"}
            ]},
            {"title": "Logs", "datasource": {"type": "loki", "uid": "l"}, "targets": [
                {"refId": "A", "expr": "{app=\"x\"} |= \"error\""}
            ]},
            {"title": "Mixed", "datasource": {"type": "datasource", "uid": "-- Mixed --"}, "targets": [
                {"refId": "A", "datasource": {"type": "loki", "uid": "l"}, "expr": "rate({app=\"x\"}[1m])"},
                {"refId": "B", "datasource": {"type": "prometheus", "uid": "p"}, "expr": "up"},
                {"refId": "C", "expr": "up{job=\"a\"}"}
            ]},
            {"title": "Annotations list", "datasource": "-- Grafana --", "targets": [{"refId": "A", "expr": "up"}]},
            {"title": "Library", "libraryPanel": {"uid": "lib1", "name": "Shared CPU"}},
            {"title": "Collapsed row", "type": "row", "collapsed": true, "panels": [
                {"title": "Inside", "targets": [{"refId": "A", "expr": "${metric}_total{cluster=\"local\"}"}]}
            ]}
        ],
        "rows": [
            {"title": "Old row", "panels": [
                {"title": "Old panel", "datasource": "$logs", "targets": [{"refId": "A", "expr": "{app=\"y\"}"}]},
                {"title": "Old prometheus panel", "targets": [{"refId": "A", "expr": "topk($n, x offset $__interval)"}]}
            ]}
        ]
    })
}

#[test]
fn edge_cases() {
    let mut dashboard = edge_dashboard();
    let report = convert_value(&mut dashboard, &Options::default()).expect("converts");
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    // Added after the datasource variables, querying through the first Prometheus one.
    assert_eq!(vars[2]["name"], "cluster");
    assert_eq!(vars[2]["datasource"], "$ds");
    assert_eq!(vars[2]["query"], "label_values(up, cluster)");
    assert_eq!(
        vars[3]["query"]["query"],
        r#"label_values({job!="", cluster=~"$cluster"}, job)"#
    );
    assert_eq!(vars[3]["definition"], vars[3]["query"]["query"]);
    assert_eq!(
        vars[4]["query"],
        r#"query_result(topk(5, sum by (pod) (rate(x{job=~"$job",cluster=~"$cluster"}[$__range]))))"#
    );
    assert_eq!(
        vars[5]["query"], "label_values(app)",
        "loki variable untouched"
    );
    assert_eq!(vars[6]["query"], "metrics(node_.*)");

    let annotations = dashboard["annotations"]["list"].as_array().unwrap();
    assert_eq!(
        annotations[1]["expr"],
        r#"changes(kube_deployment_status_observed_generation{cluster=~"$cluster"}[5m]) > 0"#
    );

    let panels = dashboard["panels"].as_array().unwrap();
    let plain = &panels[0]["targets"];
    assert_eq!(
        plain[0]["expr"],
        r#"sum by (pod, cluster) (rate(x{job=~"$job",cluster=~"$cluster"}[$__rate_interval]))"#
    );
    assert_eq!(plain[0]["legendFormat"], "{{cluster}} {{pod}}");
    assert_eq!(plain[1]["expr"], r#"sum(rate(x{cluster=~"$cluster"}[5m]))"#);
    assert_eq!(plain[1]["legendFormat"], "total", "a total has no cluster");
    assert_eq!(
        plain[2]["expr"], "sum(rate(x[5m]",
        "unparseable: left alone"
    );
    assert_eq!(panels[1]["targets"][0]["expr"], r#"{app="x"} |= "error""#);
    assert_eq!(panels[2]["targets"][0]["expr"], r#"rate({app="x"}[1m])"#);
    assert_eq!(
        panels[2]["targets"][1]["expr"],
        r#"up{cluster=~"$cluster"}"#
    );
    assert_eq!(
        panels[2]["targets"][2]["expr"], r#"up{job="a",cluster=~"$cluster"}"#,
        "no target datasource under Mixed: the default, Prometheus"
    );
    assert_eq!(panels[3]["targets"][0]["expr"], "up", "-- Grafana --");
    assert_eq!(
        panels[5]["panels"][0]["targets"][0]["expr"], r#"${metric}_total{cluster="local"}"#,
        "a fixed cluster matcher is kept"
    );
    let rows = dashboard["rows"][0]["panels"].as_array().unwrap();
    assert_eq!(rows[0]["targets"][0]["expr"], r#"{app="y"}"#);
    assert_eq!(
        rows[1]["targets"][0]["expr"],
        r#"topk($n, x{cluster=~"$cluster"} offset $__interval)"#
    );

    assert!(report.variable_added && report.multi);
    assert_eq!(report.other_datasources, 5, "{report}");
    assert_eq!(report.kept, 1, "{report}");
    let warnings = report.warnings.join("\n");
    assert_eq!(report.warnings.len(), 3, "{warnings}");
    assert!(
        warnings.contains(r#"panel "Plain" (refId C): left as it is"#),
        "{warnings}"
    );
    assert!(
        warnings.contains(r#"panel "Library": library panel "Shared CPU" left alone"#),
        "{warnings}"
    );
    assert!(
        warnings.contains(r#"1 selector(s) keep their own matcher cluster="local""#),
        "{warnings}"
    );

    // Idempotent, edge cases included.
    let mut again = dashboard.clone();
    let report = convert_value(&mut again, &Options::default()).unwrap();
    assert_eq!(again, dashboard);
    assert_eq!(report.scoped, 0);
}

#[test]
fn other_label_and_variable_names() {
    let mut dashboard = json!({"panels": [{"title": "p", "targets": [
        {"refId": "A", "expr": "sum by (job) (up)", "legendFormat": "{{job}}"}
    ]}]});
    let options = Options::new("originCluster", "origin").unwrap();
    convert_value(&mut dashboard, &options).unwrap();
    let target = &dashboard["panels"][0]["targets"][0];
    assert_eq!(
        target["expr"],
        r#"sum by (job, originCluster) (up{originCluster=~"$origin"})"#
    );
    assert_eq!(target["legendFormat"], "{{originCluster}} {{job}}");
    let var = &dashboard["templating"]["list"][0];
    assert_eq!(var["name"], "origin");
    assert_eq!(var["query"], "label_values(up, originCluster)");
    assert!(Options::new("bad-label", "x").is_err());
    assert!(Options::new("cluster", "bad var").is_err());
}

#[test]
fn single_value_variable_only_scopes() {
    // The mixins' own `cluster` variable selects one cluster: no grouping, no legends.
    let mut dashboard = json!({
        "templating": {"list": [{"name": "cluster", "type": "query", "query": "label_values(up, cluster)"}]},
        "panels": [{"title": "p", "targets": [
            {"refId": "A", "expr": "sum by (job) (up)", "legendFormat": "{{job}}"}
        ]}]
    });
    let report = convert_value(&mut dashboard, &Options::default()).unwrap();
    assert!(!report.variable_added && !report.multi);
    let target = &dashboard["panels"][0]["targets"][0];
    assert_eq!(target["expr"], r#"sum by (job) (up{cluster=~"$cluster"})"#);
    assert_eq!(target["legendFormat"], "{{job}}");
    assert_eq!(
        dashboard["templating"]["list"][0]["query"], "label_values(up, cluster)",
        "the variable's own query is not scoped by itself"
    );
}

#[test]
fn protected_expressions_round_trip() {
    for expr in [
        "rate(x[$__rate_interval])",
        r#"x{job=~"$job"}"#,
        "${metric}_total",
        "[[metric]]",
        r#"x{a=~"${var:regex}"}"#,
        "topk($n, x)",
        "x offset $__interval",
        "histogram_quantile($q, sum by (le) (rate(x_bucket[5m])))",
        "sum by ($groupby) (x)",
    ] {
        let p = protect(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert!(!p.text.contains('$'), "{expr}: {}", p.text);
        assert_eq!(p.restore(&p.text).unwrap(), expr);
    }
}

fn promfed(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    run(&promfed_bin(), &args, stdin)
}

#[test]
fn cli_keeps_the_wrapping_and_reports_warnings() {
    let input = json!({"dashboard": edge_dashboard(), "overwrite": true, "folderId": 0});
    let out = promfed(&["dashboard", "-"], Some(&input.to_string()));
    assert!(out.status.success(), "{}", describe(&out));
    let output: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(output["overwrite"], true);
    assert_eq!(
        output["dashboard"]["templating"]["list"][2]["name"],
        "cluster"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"promfed: warning: stdin: panel "Plain" (refId C): left as it is"#),
        "{stderr}"
    );
    assert!(out.stdout.ends_with(b"}\n"));
}

#[test]
fn cli_file_argument_and_options() {
    let path = data("tkg/dashboards/kubernetes-apiserver.json");
    let out = promfed(
        &[
            "dashboard",
            "--label",
            "originCluster",
            path.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(r#"originCluster=~\"$cluster\""#), "{text}");
}

#[test]
fn cli_rejects_invalid_input_with_exit_1() {
    let out = promfed(&["dashboard", "-"], Some("{not json"));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("promfed: stdin: not JSON"),
        "{}",
        describe(&out)
    );
    let out = promfed(&["dashboard", "-"], Some("[1, 2]"));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    // A bad option is a usage error (exit 2), like any bad argument.
    let out = promfed(&["dashboard", "--label", "a-b", "-"], Some("{}"));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let out = promfed(&["dashboard", "/nonexistent/dashboard.json"], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}
