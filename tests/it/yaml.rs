//! `promfed::yaml` against a real YAML 1.1 reader: PyYAML's `safe_load` must read what
//! `yaml::emit` writes exactly as it reads the input (every scalar the same type and value),
//! for documents full of YAML 1.1 traps, for the whole corpus under `tests/data`, and for
//! `Node::from_json`. The resolver (`Node::to_json`) is checked against PyYAML too.

use std::ffi::OsStr;
use std::path::Path;

use promfed::yaml::{self, Kind, Limits, Node};
use serde_json::{Value, json};

use crate::support::{self, describe, require};

/// Reads a JSON list of YAML documents on stdin and prints, for each, `{"ok": value}` or
/// `{"error": message}`. What JSON cannot say is spelled out as strings, so that nothing is
/// lost in the comparison: non-string keys (`<bool>True`), dates, NaN and infinities.
const LOAD: &str = r#"
import datetime, json, math, sys, yaml

def key(k):
    return k if isinstance(k, str) else "<%s>%r" % (type(k).__name__, k)

def norm(x):
    if isinstance(x, dict):
        return {key(k): norm(v) for k, v in x.items()}
    if isinstance(x, list):
        return [norm(v) for v in x]
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return "<float>%r" % x
    if isinstance(x, (datetime.date, datetime.datetime)):
        return "<%s>%s" % (type(x).__name__, x.isoformat())
    if isinstance(x, bytes):
        return "<bytes>%r" % x
    return x

results = []
for doc in json.load(sys.stdin):
    try:
        results.append({"ok": norm(yaml.safe_load(doc))})
    except Exception as e:
        results.append({"error": "%s: %s" % (type(e).__name__, e)})
print(json.dumps(results))
"#;

/// PyYAML's reading of each document, in one Python run.
fn pyyaml_load(python: &Path, docs: &[String]) -> Vec<Result<Value, String>> {
    let input = serde_json::to_string(docs).expect("JSON list of strings");
    let out = support::run(python, &[OsStr::new("-c"), OsStr::new(LOAD)], Some(&input));
    assert!(
        out.status.success(),
        "PyYAML loader failed: {}",
        describe(&out)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("loader prints JSON");
    assert_eq!(results.len(), docs.len());
    results
        .into_iter()
        .map(|r| match r {
            Value::Object(mut o) => match (o.remove("ok"), o.remove("error")) {
                (Some(v), _) => Ok(v),
                (_, Some(Value::String(e))) => Err(e),
                other => panic!("unexpected loader result {other:?}"),
            },
            other => panic!("unexpected loader result {other}"),
        })
        .collect()
}

fn parse(name: &str, input: &str) -> Node {
    yaml::parse(input, Limits::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .unwrap_or_else(|| panic!("{name}: empty document"))
}

/// For each (name, input): parse, emit unchanged, and check PyYAML reads the output as it
/// reads the input (which it must accept).
fn assert_pyyaml_reads_emitted_as_input(python: &Path, docs: &[(String, String)]) {
    let mut texts = Vec::with_capacity(docs.len() * 2);
    for (name, input) in docs {
        let emitted = yaml::emit(&parse(name, input));
        texts.push(input.clone());
        texts.push(emitted);
    }
    let loaded = pyyaml_load(python, &texts);
    let mut failures = Vec::new();
    for (i, (name, input)) in docs.iter().enumerate() {
        let (before, after) = (&loaded[2 * i], &loaded[2 * i + 1]);
        match before {
            Err(e) => failures.push(format!("{name}: PyYAML rejects the input: {e}\n{input}")),
            Ok(_) if before != after => failures.push(format!(
                "{name}: PyYAML reads the output differently\n--- input\n{input}\n--- output\n{}\n\
                 --- input reads\n{before:?}\n--- output reads\n{after:?}",
                texts[2 * i + 1]
            )),
            Ok(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Scalars that are not strings to a YAML 1.1 reader when plain (PyYAML can read each one
/// as a value; `=` and `<<` are only used quoted, since PyYAML rejects them plain).
const TRAPS: &[&str] = &[
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "yes",
    "Yes",
    "YES",
    "no",
    "No",
    "NO",
    "y",
    "Y",
    "n",
    "N",
    "true",
    "True",
    "TRUE",
    "false",
    "False",
    "FALSE",
    "~",
    "null",
    "Null",
    "NULL",
    "0777",
    "-0777",
    "0o17",
    "0x1F",
    "0x_1f",
    "0b101",
    "1_000",
    "+12",
    "-1",
    "0",
    "09",
    "12:30",
    "190:20:30",
    "-1:30",
    "1:30.5",
    "1.5",
    "1.",
    ".5",
    "-.5",
    "1e3",
    "1.0e+3",
    "1.0e3",
    ".inf",
    "-.inf",
    "+.INF",
    ".NaN",
    ".nan",
    ".NAN",
    "1.2.3",
    "10.0.0.1",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10 -5",
    "2001-12-14T21:59:43Z",
    "2002-1-2",
];

/// Strings that are only safe quoted.
const QUOTED_ONLY: &[&str] = &[
    "=",
    "<<",
    "",
    " lead",
    "trail ",
    "a: b",
    "a #b",
    "ends:",
    "-x",
    "- x",
    "?x",
    ":x",
    "*x",
    "&x",
    "!x",
    "%x",
    "@x",
    "`x",
    "{x}",
    "[x]",
    "|x",
    ">x",
    "#x",
    "'x'",
    "\"x\"",
    "...",
    "---",
    "--- x",
    "a\tb",
    "back\\slash",
    "é",
    "中文 🦀",
    "\u{a0}nbsp",
];

/// A rule file whose labels and annotations hold every trap, plain, single- and
/// double-quoted, as values and as keys.
fn traps_rule_file() -> String {
    let mut doc = String::from(
        "groups:\n- name: traps\n  rules:\n  - alert: Plain\n    expr: up == 0\n    for: 5m\n    labels:\n",
    );
    for (i, trap) in TRAPS.iter().enumerate() {
        doc.push_str(&format!("      l{i}: {trap}\n"));
    }
    doc.push_str("    annotations:\n");
    for (i, trap) in TRAPS.iter().chain(QUOTED_ONLY).enumerate() {
        doc.push_str(&format!("      a{i}: '{}'\n", trap.replace('\'', "''")));
    }
    doc.push_str("  - record: quoted\n    expr: vector(1)\n    labels:\n");
    for (i, trap) in TRAPS.iter().chain(QUOTED_ONLY).enumerate() {
        let quoted = serde_json::to_string(trap).unwrap();
        doc.push_str(&format!("      l{i}: {quoted}\n"));
    }
    doc.push_str("  - record: keys\n    expr: vector(2)\n    keys:\n");
    for trap in TRAPS.iter().filter(|t| !t.is_empty()) {
        doc.push_str(&format!("    - {trap}: plain key\n"));
        doc.push_str(&format!(
            "    - {}: quoted key\n",
            serde_json::to_string(trap).unwrap()
        ));
    }
    for trap in QUOTED_ONLY {
        doc.push_str(&format!(
            "    - {}: quoted key\n",
            serde_json::to_string(trap).unwrap()
        ));
    }
    doc
}

const SCRAPE_CONFIG: &str = r#"global:
  scrape_interval: 1m
  external_labels:
    cluster: 'on'
    region: no
    replica: "0777"
scrape_configs:
- job_name: 'yes'
  honor_labels: yes
  scrape_interval: 30s
  metrics_path: /federate
  params:
    'match[]':
    - '{job="prometheus"}'
    - '{__name__=~"job:.*"}'
    format: ['prometheus', "0x1F", off]
  static_configs:
  - targets: ["10.0.0.1:9090", localhost:9090, '2001-12-14', 12:30]
    labels:
      env: off
      version: "1.10"
      zone: 0x1F
      build: 1_000
      ratio: .5
      empty: ''
      nothing:
      tilde: ~
  relabel_configs:
  - source_labels: [__address__]
    regex: '(.*):\d+'
    target_label: instance
    replacement: '${1}'
  - action: labelmap
    regex: __meta_kubernetes_node_label_(.+)
  - source_labels: [__meta_kubernetes_namespace, __meta_kubernetes_pod_name]
    separator: ;
    regex: (.+);(.+)
    replacement: $1/$2
"#;

const BLOCK_SCALARS: &str = "groups:
- name: exprs
  rules:
  - record: literal
    expr: |
      sum by (job) (
        rate(http_requests_total{code=~\"5..\"}[5m])  # errors
      )
      # trailing comment line
  - record: strip
    expr: |-
      up
        == 1
  - record: keep
    expr: |+
      up

  - record: indented
    expr: |2
        leading spaces
      less
  - alert: Folded
    expr: >
      sum(up)
      > 0

      by job
    annotations:
      description: >-
        Folded text with a # hash
        and more.
      plain_multi: first line
        continued line

        after blank
      double: \"tab\\there \\u00e9 \\x01 newline\\n end\"
      single: 'it''s folded
        over lines'
      trailing: \"spaces   \"
      spaces_line: \"a\\n   \\nb\\n\"
      crlf: \"a\\r\\nb\"
";

const ANCHORS: &str = "defaults: &defaults
  scrape_interval: 30s
  honor_labels: on
  labels: &labels {team: 'no', tier: 0777}
jobs:
- <<: *defaults
  job_name: a
- <<: [*defaults, {extra: yes}]
  job_name: b
  scrape_interval: 1m
- labels: *labels
  list: &list [on, 'off', 12:30]
  again: *list
";

const FLOW_AND_MISC: &str = "{a: [1, {b: c}], 'd': \"e\", f: [], g: {}, h: [[x, [y]], {i: [j]}],
 ~: null key, 1: int key, yes: bool key, 1.5: float key, 2001-12-14: date key,
 k: !!str 0777, l: !!int \"12\", m: !!float 1, n: !!bool yes, o: !!null '',
 'long \": key': v, p: \"#not a comment\", q: a#b, r: 'x: y'}
";

/// The documents of the trap table: (name, text).
fn trap_documents() -> Vec<(String, String)> {
    let long_key = "k".repeat(1100);
    let mut docs = vec![
        ("rule file traps".to_owned(), traps_rule_file()),
        ("scrape config".to_owned(), SCRAPE_CONFIG.to_owned()),
        ("block scalars".to_owned(), BLOCK_SCALARS.to_owned()),
        ("anchors and merges".to_owned(), ANCHORS.to_owned()),
        ("flow and misc".to_owned(), FLOW_AND_MISC.to_owned()),
        (
            "crlf".to_owned(),
            "a: 'on'\r\nb:\r\n- |\r\n  x\r\n  y\r\nc: off\r\n".to_owned(),
        ),
        (
            "nested seqs".to_owned(),
            "- - - a\n    - 'no'\n  - - {}\n- []\n- - k: v\n    j: 'y'\n".to_owned(),
        ),
        (
            "comments".to_owned(),
            "# head\na: 1 # one\n# mid\nb: # empty\n- c # item\n# tail\n".to_owned(),
        ),
        (
            "explicit keys".to_owned(),
            format!("? \"{long_key}\"\n: long key\n? |\n  multi\n  line key\n: v\n"),
        ),
        ("root plain scalar".to_owned(), "on\n".to_owned()),
        ("root quoted scalar".to_owned(), "'on'\n".to_owned()),
        (
            "root literal".to_owned(),
            "|2\n   indented\n  root\n".to_owned(),
        ),
        ("root seq".to_owned(), "- 'on'\n- on\n".to_owned()),
    ];
    for trap in TRAPS {
        docs.push((format!("root {trap:?}"), format!("- {trap}\n- '{trap}'\n")));
    }
    docs
}

#[test]
fn pyyaml_reads_emitted_trap_documents_as_the_input() {
    let python = require!(python);
    assert_pyyaml_reads_emitted_as_input(&python, &trap_documents());
}

/// Every document of every YAML file of the corpus (a file may hold several, `---` between
/// them), and every data value of its ConfigMaps.
fn corpus_documents() -> Vec<(String, String)> {
    let base = support::data("");
    let paths = support::yaml_files(&base);
    let mut docs = Vec::new();
    for path in paths {
        let file = path.strip_prefix(&base).unwrap().display().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut parts = vec![String::new()];
        for line in text.split_inclusive('\n') {
            match line.trim_end() == "---" {
                true => parts.push(String::new()),
                false => parts.last_mut().unwrap().push_str(line),
            }
        }
        let several = parts.len() > 1;
        for (i, text) in parts.into_iter().enumerate() {
            let name = match several {
                true => format!("{file}#{i}"),
                false => file.clone(),
            };
            // A document of comments only (a ytt template's header) holds nothing to read.
            if yaml::parse(&text, Limits::default()).is_ok_and(|n| n.is_none()) {
                continue;
            }
            let node = parse(&name, &text);
            for (key, value, _) in support::configmap_yaml_data(&node) {
                docs.push((format!("{name} data.{key}"), value.to_owned()));
            }
            docs.push((name, text));
        }
    }
    assert!(docs.len() > 30, "corpus not found under {}", base.display());
    docs
}

#[test]
fn pyyaml_reads_emitted_corpus_as_the_input() {
    let python = require!(python);
    assert_pyyaml_reads_emitted_as_input(&python, &corpus_documents());
}

/// The renderings promfed writes in place (the golden inputs, with the configs of their
/// golden files): PyYAML reads the stream, and each changed data value, as it reads what
/// `yaml::emit` writes for the same tree.
#[test]
fn pyyaml_reads_in_place_renderings_as_emitted() {
    let python = require!(python);
    let cases = [
        (
            "tkg/prometheus-server-configmap.yaml",
            "example-config.yaml",
        ),
        (
            "tkg/prometheus-server-configmap.yaml",
            "config-compact.yaml",
        ),
        (
            "helm/prometheus-server-configmap-chart-14.12.0.yaml",
            "example-config.yaml",
        ),
        (
            "helm/prometheus-server-configmap-chart-29.27.0.yaml",
            "config-helm-29.yaml",
        ),
    ];
    let mut docs = Vec::new();
    for (input, config) in cases {
        let config = promfed::Config::from_yaml(&support::read_data(config)).unwrap();
        let engine = promfed::Engine::new(config).unwrap();
        let input_text = support::read_data(input);
        let out = promfed::render::render_stream(&engine, &input_text).unwrap();
        let node = parse(input, &out.text);
        for (key, value, _) in support::configmap_yaml_data(&node) {
            docs.push((format!("{input} data.{key}"), value.to_owned()));
        }
        docs.push((input.to_owned(), out.text));
    }
    assert_pyyaml_reads_emitted_as_input(&python, &docs);
}

#[test]
fn pyyaml_reads_from_json_back() {
    let python = require!(python);
    let mut strings: Vec<&str> = TRAPS.iter().chain(QUOTED_ONLY).copied().collect();
    strings.extend([
        "sum by (job) (\n  rate(x[5m])  # comment\n)",
        "sum(x)\n# comment\n",
        "  leading\nspaces\n\n",
        "\n\nleading breaks\n",
        "\ttab first\nx",
        "trailing  \nspaces  ",
        "a\r\nb",
        "ctrl \u{1} \u{7f} \u{85} \u{2028} \u{feff}",
        "quote \" and \\",
    ]);
    let mut object = serde_json::Map::new();
    for (i, s) in strings.iter().enumerate() {
        object.insert((*s).to_owned(), json!(i));
        object.insert(format!("v{i}"), json!(s));
    }
    let value = json!({
        "strings": strings,
        "by_key": object,
        "numbers": [0, -1, 1.5, 1e300, -2.5e-8, 0.1, 1.0, 18446744073709551615u64, i64::MIN],
        "other": [true, false, null, [], {}, [[[]]], [{"": ""}]],
    });
    let emitted = yaml::emit(&Node::from_json(&value));
    let loaded = pyyaml_load(&python, std::slice::from_ref(&emitted));
    assert_eq!(loaded[0].as_ref(), Ok(&value), "PyYAML reads\n{emitted}");
    // And promfed reads it back the same way.
    assert_eq!(parse("from_json", &emitted).to_json(), value);
}

/// Where PyYAML departs from the YAML 1.1 type regexes that promfed follows, as Go yaml.v2
/// (what Prometheus reads with) does: PyYAML has no `y`/`n` booleans and no sign on `.5`.
const PYYAML_DIFFERS: &[&str] = &["y", "Y", "n", "N", "-.5", "+.5"];

#[test]
fn resolver_agrees_with_pyyaml() {
    let python = require!(python);
    let mut texts: Vec<&str> = TRAPS
        .iter()
        .copied()
        .filter(|t| !PYYAML_DIFFERS.contains(t))
        .collect();
    texts.extend([
        "",
        "oN",
        "nULL",
        "0778",
        "0X1F",
        "0b102",
        "12:60",
        "0:30",
        "1_0.5_0",
        "1e+3",
        ".",
        "1.0E-3",
        "-0",
        "+0.0",
        "0.",
        "99999999999999999999",
        "18446744073709551615",
        "-9223372036854775808",
        "190:20:30.15",
        "2001-12-1",
        "2001-12-14 21:59",
        "5m",
        "a",
        "localhost:9090",
        "1.2.3",
        "0x",
        "0b",
        "__",
        "1__0",
    ]);
    let docs: Vec<String> = texts.iter().map(|t| format!("k: {t}\n")).collect();
    let loaded = pyyaml_load(&python, &docs);
    let mut failures = Vec::new();
    for ((text, doc), pyyaml) in texts.iter().zip(&docs).zip(loaded) {
        let node = parse(text, doc);
        let value = node.get("k").unwrap();
        let Ok(pyyaml) = pyyaml else {
            failures.push(format!("{text:?}: PyYAML: {pyyaml:?}"));
            continue;
        };
        let pyyaml = &pyyaml["k"];
        let kind = yaml::resolve_1_1(text);
        let agrees = match kind {
            // yaml.v2 hands timestamps to untyped code as strings; PyYAML makes dates.
            Kind::Timestamp => pyyaml.as_str().is_some_and(|s| s.starts_with("<date")),
            // JSON has no infinities or NaN: promfed keeps the text.
            Kind::Float
                if text.to_lowercase().contains("inf") || text.to_lowercase().contains("nan") =>
            {
                pyyaml.as_str().is_some_and(|s| s.starts_with("<float>"))
            }
            _ => value.to_json() == *pyyaml,
        };
        if !agrees {
            failures.push(format!(
                "{text:?}: promfed {kind:?} {}, PyYAML {pyyaml}",
                value.to_json()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
