//! Every PromQL expression the project holds, each with where it came from: the `expr` of every
//! rule in the corpus (rule files, ConfigMaps' embedded rule files, PrometheusRules), every
//! PromQL query of the dashboards, the expression rows of the test tables, the golden files
//! promfed wrote, and the rule files and expressions among the fuzz regressions.
//!
//! The differential tests of promfed's own parser (`tests/it/syntax.rs`) run over all of them.
//! Rule files are read with promfed's YAML reader, dashboards with the dashboard module's own
//! listing (`promfed::dashboard::expressions`), whose template variables (`$__rate_interval`)
//! are replaced by the placeholders the dashboard converter parses (`dashboard::protect`), so
//! the parser sees what the converter gives it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use promfed::yaml::{self, Limits, Node};
use serde_json::Value;

use super::{data, root, yaml_files};

/// What kind of place an expression comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A rule of the corpus: what users write in rule files.
    Rules,
    /// A dashboard query: what users write in Grafana.
    Dashboard,
    /// A row of a test table, or a golden file (promfed's own output).
    Test,
    /// A fuzz regression input.
    Fuzz,
}

impl Origin {
    /// Whether users wrote it (rules and dashboards, not tests' inventions).
    pub fn written_by_users(self) -> bool {
        matches!(self, Origin::Rules | Origin::Dashboard)
    }
}

/// One distinct expression.
#[derive(Debug, Clone)]
pub struct Expression {
    pub text: String,
    pub origin: Origin,
    /// The first place it was found: `tests/data/rules/x.yaml: group "g", rule "r"`.
    pub place: String,
    /// The source (a file, or a test table) of that place, for the counts per source.
    pub source: String,
    /// In how many places it was found.
    pub places: usize,
}

/// All expressions the project holds, deduplicated, with counts per source.
#[derive(Debug, Default)]
pub struct Held {
    pub expressions: Vec<Expression>,
    /// source -> (expressions found there, of them not found in an earlier source).
    pub per_source: BTreeMap<String, (usize, usize)>,
    /// Dashboard queries with template variables, read with placeholders in their stead.
    pub templated: usize,
    /// Dashboard queries with template variables that `protect` could not place (listed).
    pub unprotectable: Vec<String>,
    index: HashMap<String, usize>,
}

impl Held {
    fn add(&mut self, origin: Origin, source: &str, place: String, text: &str) {
        let counts = self.per_source.entry(source.to_string()).or_default();
        counts.0 += 1;
        if let Some(&i) = self.index.get(text) {
            self.expressions[i].places += 1;
            return;
        }
        counts.1 += 1;
        self.index.insert(text.to_string(), self.expressions.len());
        self.expressions.push(Expression {
            text: text.to_string(),
            origin,
            place,
            source: source.to_string(),
            places: 1,
        });
    }

    /// The distinct expressions of one origin.
    pub fn of(&self, origin: Origin) -> impl Iterator<Item = &Expression> {
        self.expressions.iter().filter(move |e| e.origin == origin)
    }

    /// One line per source, and the totals: for reports.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (source, (found, new)) in &self.per_source {
            out.push_str(&format!("  {found:5} found, {new:5} new: {source}\n"));
        }
        for origin in [Origin::Rules, Origin::Dashboard, Origin::Test, Origin::Fuzz] {
            out.push_str(&format!(
                "  {:?}: {} distinct\n",
                origin,
                self.of(origin).count()
            ));
        }
        out.push_str(&format!(
            "  {} distinct in all; {} dashboard queries read with template placeholders, {} \
             not placeable\n",
            self.expressions.len(),
            self.templated,
            self.unprotectable.len()
        ));
        out
    }
}

/// Every expression the project holds, read once per test run.
pub fn held() -> &'static Held {
    static HELD: OnceLock<Held> = OnceLock::new();
    HELD.get_or_init(collect)
}

fn collect() -> Held {
    let mut held = Held::default();
    for file in rule_sources() {
        let text = read(&file);
        let source = relative(&file);
        for (place, expr) in rule_exprs(&text, &source).unwrap_or_else(|e| panic!("{e}")) {
            held.add(Origin::Rules, &source, place, &expr);
        }
    }
    for file in dashboard_sources() {
        dashboard(&mut held, Origin::Dashboard, &file);
    }
    for (source, exprs) in tables() {
        for expr in exprs {
            held.add(Origin::Test, source, source.to_string(), &expr);
        }
    }
    for file in yaml_files(&root().join("tests/golden")) {
        let source = relative(&file);
        for (place, expr) in rule_exprs(&read(&file), &source).unwrap_or_else(|e| panic!("{e}")) {
            held.add(Origin::Test, &source, place, &expr);
        }
    }
    let golden = root().join("tests/golden/dashboards");
    let mut golden_dashboards = files_with(&golden, "json");
    golden_dashboards.extend(files_with(&golden.join("tkg"), "json"));
    for file in golden_dashboards {
        dashboard(&mut held, Origin::Test, &file);
    }
    for (file, exprs) in fuzz_regressions() {
        let source = relative(&file);
        for (place, expr) in exprs {
            held.add(Origin::Fuzz, &source, place, &expr);
        }
    }
    held
}

// ---------------------------------------------------------------------------------------
// Rule files

/// Every file of the corpus that holds rules: the rule files `corpus_inputs` checks with
/// promtool, ConfigMaps with rule files in their data, PrometheusRule objects.
fn rule_sources() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = crate::corpus_inputs::rule_files()
        .iter()
        .map(data)
        .collect();
    for name in [
        "tkg/prometheus-server-configmap.yaml",
        "federation/demo_rules.yml",
    ] {
        files.push(data(name));
    }
    files.extend(yaml_files(&data("helm")));
    files.extend(yaml_files(&data("operator")));
    files.extend(yaml_files(&root().join("deploy/examples")));
    files
}

/// (place, expr) of every rule in a YAML text: a rule file (`groups:`), a PrometheusRule
/// (`spec.groups`), or a ConfigMap whose data values are rule files. Err when it is not YAML.
pub fn rule_exprs(text: &str, source: &str) -> Result<Vec<(String, String)>, String> {
    let node = yaml::parse(text, Limits::default()).map_err(|e| format!("{source}: {e}"))?;
    let mut out = Vec::new();
    if let Some(node) = node {
        walk_rules(&node, source, &mut out);
    }
    Ok(out)
}

fn walk_rules(node: &Node, source: &str, out: &mut Vec<(String, String)>) {
    if let Some(groups) = node.get("groups").and_then(Node::as_seq) {
        for group in groups {
            let name = group.get("name").and_then(Node::scalar_text).unwrap_or("");
            let rules = group.get("rules").and_then(Node::as_seq);
            for rule in rules.into_iter().flatten() {
                let Some(expr) = rule.get("expr").and_then(Node::scalar_text) else {
                    continue;
                };
                let id = ["record", "alert"]
                    .iter()
                    .find_map(|k| rule.get(k).and_then(Node::scalar_text))
                    .unwrap_or("");
                out.push((
                    format!("{source}: group {name:?}, rule {id:?}"),
                    expr.to_string(),
                ));
            }
        }
        return;
    }
    if node.get("kind").and_then(Node::as_str) == Some("ConfigMap") {
        // A data key that is not YAML holds no rules.
        for (key, _, inner) in super::configmap_yaml_data(node) {
            walk_rules(&inner, &format!("{source} [{key}]"), out);
        }
        return;
    }
    for (_, value) in node.as_map().into_iter().flatten() {
        walk_rules(value, source, out);
    }
}

// ---------------------------------------------------------------------------------------
// Dashboards

fn dashboard_sources() -> Vec<PathBuf> {
    let mut files = files_with(&data("dashboards"), "json");
    files.extend(files_with(&data("tkg/dashboards"), "json"));
    files.extend(files_with(&root().join("dashboards"), "json"));
    files
}

/// Every PromQL query of one dashboard file, template variables replaced by placeholders.
fn dashboard(held: &mut Held, origin: Origin, file: &Path) {
    let source = relative(file);
    let root: Value = serde_json::from_str(&read(file)).unwrap_or_else(|e| panic!("{source}: {e}"));
    for expression in promfed::dashboard::expressions(&root) {
        let place = format!("{source}: {}", expression.place);
        if promfed::dashboard::template_tokens(&expression.text).is_empty() {
            held.add(origin, &source, place, &expression.text);
            continue;
        }
        match promfed::dashboard::protect(&expression.text) {
            Ok(protected) => {
                held.templated += 1;
                held.add(origin, &source, place, &protected.text);
            }
            Err(e) => held
                .unprotectable
                .push(format!("{place}: {:?}: {e}", expression.text)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Test tables

/// The expression rows of the test modules' tables.
fn tables() -> Vec<(&'static str, Vec<String>)> {
    let owned = |it: &mut dyn Iterator<Item = &'static str>| it.map(str::to_string).collect();
    vec![
        (
            "tests/it/promql.rs",
            owned(&mut crate::promql::expressions()),
        ),
        ("tests/it/dialect.rs", crate::dialect::expressions()),
        (
            "tests/it/semantic.rs",
            owned(&mut crate::semantic::expressions()),
        ),
        (
            "tests/it/syntax.rs",
            owned(&mut crate::syntax::expressions()),
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Fuzz regressions

/// (file, [(place, expr)]) of every regression input that holds PromQL, decoded as its fuzz
/// target reads it (fuzz/src/lib.rs): `promql_syntax` inputs are an expression, `promql_scope`
/// inputs one after a mode byte; `rewrite`, `admission` and `yaml_roundtrip` inputs may hold
/// rule files.
fn fuzz_regressions() -> Vec<(PathBuf, Vec<(String, String)>)> {
    let base = root().join("fuzz/regressions");
    let mut out = Vec::new();
    let mut targets: Vec<PathBuf> = std::fs::read_dir(&base)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    targets.sort();
    for dir in targets {
        let target = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let source = relative(&file);
            let exprs = fuzz_input_exprs(&target, &bytes, &source);
            if !exprs.is_empty() {
                out.push((file, exprs));
            }
        }
    }
    out
}

fn fuzz_input_exprs(target: &str, bytes: &[u8], source: &str) -> Vec<(String, String)> {
    let rules_in = |text: &str| rule_exprs(text, source).unwrap_or_default();
    let Some((&mode, rest)) = bytes.split_first() else {
        return Vec::new();
    };
    let rest = String::from_utf8_lossy(rest);
    match target {
        "promql_scope" => match std::str::from_utf8(&bytes[1..]) {
            Ok(expr) => vec![(source.to_string(), expr.to_string())],
            Err(_) => Vec::new(),
        },
        "promql_syntax" => match std::str::from_utf8(bytes) {
            Ok(expr) => vec![(source.to_string(), expr.to_string())],
            Err(_) => Vec::new(),
        },
        "rewrite" => match mode % 3 {
            1 => rules_in(&rest),
            2 => rest
                .split_once("\n---\n")
                .map(|(_, rules)| rules_in(rules))
                .unwrap_or_default(),
            _ => Vec::new(),
        },
        "admission" => match mode % 4 {
            0 => {
                // A whole review: the ConfigMap's data values.
                let review: Value = serde_json::from_str(&rest).unwrap_or(Value::Null);
                let data = review["request"]["object"]["data"].as_object();
                data.into_iter()
                    .flatten()
                    .filter_map(|(_, v)| v.as_str())
                    .flat_map(rules_in)
                    .collect()
            }
            2 | 3 => rules_in(&rest),
            _ => Vec::new(),
        },
        "yaml_roundtrip" => std::str::from_utf8(bytes).map(rules_in).unwrap_or_default(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Files

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `path` relative to the crate root, for places.
fn relative(path: &Path) -> String {
    let root = root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The files of `dir` (not recursive) ending in `.ext`, sorted.
fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files
}
