//! Multi-cluster Grafana dashboards: `promfed dashboard`.
//!
//! [`convert`] reads a dashboard, adds a `cluster` variable (multi-select, All = `.*`) when it
//! has none, and scopes every PromQL expression of its Prometheus panels, annotations and query
//! variables with `cluster=~"$cluster"` (through [`Scoper`], so the user's formatting is kept
//! and a selector that already matches on the label is left alone). With a multi-value
//! variable it also keeps clusters apart where a panel shows several: `cluster` is added to
//! non-empty `by (...)` and `on (...)` lists and `{{cluster}} ` to legends of series that carry
//! the label.
//!
//! Grafana's template syntax (`$var`, `${var:fmt}`, `[[var]]`, `$__rate_interval`, ...) is not
//! PromQL. [`protect`] swaps each token for a placeholder that is valid PromQL where it stands
//! (a duration in `[...]`, a number, an identifier, any text in a string) and [`Protected::restore`]
//! puts the exact text back, checking that every placeholder survived exactly once.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::LazyLock;

use promql_parser::parser::token::{
    T_BOTTOMK, T_BY, T_COMMA, T_GROUP_LEFT, T_GROUP_RIGHT, T_IGNORING, T_LAND, T_LEFT_PAREN,
    T_LIMIT_RATIO, T_LIMITK, T_LOR, T_LUNLESS, T_ON, T_RIGHT_PAREN, T_TOPK, T_WITHOUT,
};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, LabelModifier, VectorMatchCardinality};
use regex::Regex;
use serde_json::{Map, Value, json};

use crate::engine::promql::{
    Policy, ScopeOp, Scoper, for_each_node, for_each_node_mut, parse, selectors, tokens,
};

/// What to scope with: `label=~"$variable"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The label that names a series' cluster.
    pub label: String,
    /// The dashboard variable that selects clusters (added when missing).
    pub variable: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            label: "cluster".into(),
            variable: "cluster".into(),
        }
    }
}

impl Options {
    /// Checked options: a Prometheus label name and a Grafana variable name.
    pub fn new(label: &str, variable: &str) -> Result<Options, DashboardError> {
        if !crate::prometheus::is_user_label_name(label) {
            return Err(DashboardError::InvalidLabel(label.into()));
        }
        let variable_ok = !variable.is_empty()
            && variable
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !variable_ok || variable.starts_with("__") {
            return Err(DashboardError::InvalidVariable(variable.into()));
        }
        Ok(Options {
            label: label.into(),
            variable: variable.into(),
        })
    }

    /// The matcher every selector gets: `cluster=~"$cluster"`.
    pub fn matcher(&self) -> String {
        format!("{}=~\"${}\"", self.label, self.variable)
    }
}

/// Why a dashboard could not be converted at all (one bad query is only a warning).
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a Grafana dashboard: {0}")]
    NotADashboard(&'static str),
    #[error("invalid label name {0:?}: it must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __")]
    InvalidLabel(String),
    #[error("invalid variable name {0:?}: it must match [a-zA-Z0-9_]+ and not start with __")]
    InvalidVariable(String),
}

/// What [`convert`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Whether the variable was added.
    pub variable_added: bool,
    /// Whether clusters are kept apart (the variable is multi-value): grouping and legends.
    pub multi: bool,
    /// PromQL expressions looked at (targets, annotations, variable queries).
    pub expressions: usize,
    /// Expressions whose text changed.
    pub changed: usize,
    /// Selectors that got the matcher.
    pub scoped: usize,
    /// Selectors that already had exactly the matcher.
    pub present: usize,
    /// Selectors with another matcher on the label, kept as written.
    pub kept: usize,
    /// Expressions that got `cluster` in a `by (...)`/`on (...)` list.
    pub grouped: usize,
    /// Legends that got `{{cluster}} `.
    pub legends: usize,
    /// Targets, annotations and variables of other data sources, left alone.
    pub other_datasources: usize,
    /// Things left as they were, and why.
    pub warnings: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "variable added: {}", self.variable_added)?;
        writeln!(f, "multi-value: {}", self.multi)?;
        writeln!(f, "expressions: {}", self.expressions)?;
        writeln!(f, "changed: {}", self.changed)?;
        writeln!(f, "selectors scoped: {}", self.scoped)?;
        writeln!(f, "selectors already scoped: {}", self.present)?;
        writeln!(f, "selectors kept: {}", self.kept)?;
        writeln!(f, "grouping lists extended: {}", self.grouped)?;
        writeln!(f, "legends prefixed: {}", self.legends)?;
        writeln!(f, "other data sources: {}", self.other_datasources)?;
        writeln!(f, "warnings: {}", self.warnings.len())?;
        for w in &self.warnings {
            writeln!(f, "  {w}")?;
        }
        Ok(())
    }
}

/// A converted dashboard.
#[derive(Debug, Clone)]
pub struct Converted {
    /// Pretty JSON (2-space indent, input key order), with a trailing newline.
    pub text: String,
    pub report: Report,
}

/// Convert a dashboard (plain, or wrapped as `{"dashboard": ...}`; the wrapping is kept).
pub fn convert(text: &str, options: &Options) -> Result<Converted, DashboardError> {
    let mut root: Value = serde_json::from_str(text)?;
    let report = convert_value(&mut root, options)?;
    let mut text = serde_json::to_string_pretty(&root)?;
    text.push('\n');
    Ok(Converted { text, report })
}

/// [`convert`] on a parsed dashboard, in place.
pub fn convert_value(root: &mut Value, options: &Options) -> Result<Report, DashboardError> {
    let dashboard = dashboard_mut(root)?;
    let mut report = Report::default();
    let datasources = datasource_variables(dashboard);

    let existing = variables(dashboard)
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(options.variable.as_str()))
        .cloned();
    report.multi = match &existing {
        Some(v) => is_true(v.get("multi")) || is_true(v.get("includeAll")),
        None => true,
    };
    if existing.is_none() {
        let datasource = default_datasource(dashboard, &datasources);
        insert_variable(dashboard, variable_json(options, datasource));
        report.variable_added = true;
    }

    let rewriter = Rewriter::new(options);
    let mut ctx = Walk {
        rewriter: &rewriter,
        datasources: &datasources,
        report: &mut report,
        kept: BTreeMap::new(),
    };
    if let Some(panels) = dashboard.get_mut("panels").and_then(Value::as_array_mut) {
        ctx.panels(panels);
    }
    if let Some(rows) = dashboard.get_mut("rows").and_then(Value::as_array_mut) {
        for row in rows {
            if let Some(panels) = row.get_mut("panels").and_then(Value::as_array_mut) {
                ctx.panels(panels);
            }
        }
    }
    if let Some(list) = dashboard
        .get_mut("annotations")
        .and_then(|a| a.get_mut("list"))
        .and_then(Value::as_array_mut)
    {
        for annotation in list {
            ctx.annotation(annotation);
        }
    }
    if let Some(list) = dashboard
        .get_mut("templating")
        .and_then(|t| t.get_mut("list"))
        .and_then(Value::as_array_mut)
    {
        for variable in list {
            if variable.get("name").and_then(Value::as_str) != Some(options.variable.as_str()) {
                ctx.variable(variable);
            }
        }
    }
    let kept = std::mem::take(&mut ctx.kept);
    for (matcher, count) in kept {
        report.warnings.push(format!(
            "{count} selector(s) keep their own matcher {matcher}, which ignores ${}",
            options.variable
        ));
    }
    Ok(report)
}

/// The dashboard object: the root, or `root.dashboard` when wrapped.
fn dashboard_mut(root: &mut Value) -> Result<&mut Map<String, Value>, DashboardError> {
    let Some(object) = root.as_object() else {
        return Err(DashboardError::NotADashboard("expected a JSON object"));
    };
    let wrapped = object.get("dashboard").is_some_and(Value::is_object)
        && !object.contains_key("panels")
        && !object.contains_key("rows");
    let target = if wrapped {
        root.get_mut("dashboard").expect("checked above")
    } else {
        root
    };
    target
        .as_object_mut()
        .ok_or(DashboardError::NotADashboard("expected a JSON object"))
}

fn is_true(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool).unwrap_or(false)
}

fn variables(dashboard: &Map<String, Value>) -> &[Value] {
    dashboard
        .get("templating")
        .and_then(|t| t.get("list"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Datasource-type variables: name -> plugin id (`prometheus`, `loki`, ...).
fn datasource_variables(dashboard: &Map<String, Value>) -> HashMap<String, String> {
    variables(dashboard)
        .iter()
        .filter(|v| v.get("type").and_then(Value::as_str) == Some("datasource"))
        .filter_map(|v| {
            Some((
                v.get("name")?.as_str()?.to_string(),
                v.get("query")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ))
        })
        .collect()
}

/// The new variable: multi-select with All, listing the label's values on `up`.
fn variable_json(options: &Options, datasource: Value) -> Value {
    let query = format!("label_values(up, {})", options.label);
    json!({
        "allValue": ".*",
        "current": {"selected": true, "text": ["All"], "value": ["$__all"]},
        "datasource": datasource,
        "definition": query,
        "hide": 0,
        "includeAll": true,
        "label": options.variable,
        "multi": true,
        "name": options.variable,
        "options": [],
        "query": query,
        "refresh": 2,
        "regex": "",
        "skipUrlSync": false,
        "sort": 1,
        "type": "query"
    })
}

/// Insert after the datasource variables (the new one queries through them), else first.
fn insert_variable(dashboard: &mut Map<String, Value>, variable: Value) {
    let templating = dashboard
        .entry("templating")
        .or_insert_with(|| json!({"list": []}));
    if !templating.is_object() {
        *templating = json!({"list": []});
    }
    let list = templating
        .as_object_mut()
        .expect("made an object above")
        .entry("list")
        .or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let list = list.as_array_mut().expect("made an array above");
    let at = list
        .iter()
        .take_while(|v| v.get("type").and_then(Value::as_str) == Some("datasource"))
        .count();
    list.insert(at, variable);
}

/// The data source the new variable queries: that of the first Prometheus query variable, else
/// of the first Prometheus panel or target, else the default (null).
fn default_datasource(
    dashboard: &Map<String, Value>,
    datasources: &HashMap<String, String>,
) -> Value {
    for v in variables(dashboard) {
        if v.get("type").and_then(Value::as_str) == Some("query")
            && let Some(ds) = v.get("datasource").filter(|d| !d.is_null())
            && classify_datasource(Some(ds), datasources) == Datasource::Prometheus
        {
            return ds.clone();
        }
    }
    let mut found = None;
    each_panel(dashboard, &mut |panel| {
        if found.is_some() {
            return;
        }
        let targets = panel.get("targets").and_then(Value::as_array);
        let candidates = std::iter::once(panel.get("datasource"))
            .chain(targets.into_iter().flatten().map(|t| t.get("datasource")));
        found = candidates.flatten().find(|ds| {
            !ds.is_null() && classify_datasource(Some(ds), datasources) == Datasource::Prometheus
        });
    });
    found.cloned().unwrap_or(Value::Null)
}

/// Every panel, nested ones (collapsed rows, old-schema `rows[].panels`) included.
fn each_panel<'a>(dashboard: &'a Map<String, Value>, f: &mut dyn FnMut(&'a Value)) {
    fn walk<'a>(panels: &'a [Value], f: &mut dyn FnMut(&'a Value)) {
        for panel in panels {
            f(panel);
            if let Some(inner) = panel.get("panels").and_then(Value::as_array) {
                walk(inner, f);
            }
        }
    }
    if let Some(panels) = dashboard.get("panels").and_then(Value::as_array) {
        walk(panels, f);
    }
    let rows = dashboard.get("rows").and_then(Value::as_array);
    for row in rows.into_iter().flatten() {
        if let Some(panels) = row.get("panels").and_then(Value::as_array) {
            walk(panels, f);
        }
    }
}

/// Whether a target's query goes to Prometheus: its own data source, else its panel's, else
/// the default.
fn target_is_prometheus(
    panel_ds: Datasource,
    target: &Value,
    datasources: &HashMap<String, String>,
) -> bool {
    let ds = match classify_datasource(target.get("datasource"), datasources) {
        Datasource::Default => panel_ds,
        ds => ds,
    };
    ds != Datasource::Other
}

// ---------------------------------------------------------------------------------------
// Data sources

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Datasource {
    /// Absent or null: the dashboard's default, taken to be Prometheus.
    Default,
    Prometheus,
    /// `-- Mixed --` on a panel: each target names its own.
    Mixed,
    Other,
}

fn classify_datasource(ds: Option<&Value>, variables: &HashMap<String, String>) -> Datasource {
    match ds {
        None | Some(Value::Null) => Datasource::Default,
        Some(Value::String(name)) => classify_datasource_name(name, variables),
        Some(Value::Object(o)) => {
            let uid = o.get("uid").and_then(Value::as_str);
            match o.get("type").and_then(Value::as_str) {
                Some(t) if t.contains("prometheus") => Datasource::Prometheus,
                Some(_) if uid == Some("-- Mixed --") => Datasource::Mixed,
                Some(_) => Datasource::Other,
                None => match uid {
                    Some(uid) => classify_datasource_name(uid, variables),
                    None => Datasource::Default,
                },
            }
        }
        Some(_) => Datasource::Prometheus,
    }
}

/// A data source name or uid: `-- Grafana --`-style built-ins are not Prometheus, a reference
/// to a datasource variable is what that variable selects, any other name is taken to be
/// Prometheus.
fn classify_datasource_name(name: &str, variables: &HashMap<String, String>) -> Datasource {
    let name = name.trim();
    if name == "-- Mixed --" {
        return Datasource::Mixed;
    }
    if name.starts_with("--") && name.ends_with("--") {
        return Datasource::Other;
    }
    let reference = name
        .strip_prefix("${")
        .and_then(|s| s.strip_suffix('}'))
        .or_else(|| name.strip_prefix("[[").and_then(|s| s.strip_suffix("]]")))
        .or_else(|| name.strip_prefix('$'));
    if let Some(var) = reference
        && let Some(plugin) = variables.get(var.split(':').next().unwrap_or(var))
        && !plugin.contains("prometheus")
    {
        return Datasource::Other;
    }
    Datasource::Prometheus
}

// ---------------------------------------------------------------------------------------
// Walking the dashboard

struct Walk<'a> {
    rewriter: &'a Rewriter,
    datasources: &'a HashMap<String, String>,
    report: &'a mut Report,
    /// Kept matchers that do not use the variable: text -> count.
    kept: BTreeMap<String, usize>,
}

impl Walk<'_> {
    fn panels(&mut self, panels: &mut [Value]) {
        for panel in panels {
            self.panel(panel);
        }
    }

    fn panel(&mut self, panel: &mut Value) {
        let title = panel_title(panel);
        if let Some(lib) = panel.get("libraryPanel") {
            let name = lib
                .get("name")
                .or_else(|| lib.get("uid"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            self.report.warnings.push(format!(
                "{title}: library panel {name:?} left alone (convert the library panel itself)"
            ));
            return;
        }
        let panel_ds = classify_datasource(panel.get("datasource"), self.datasources);
        let singlestat = panel.get("type").and_then(Value::as_str) == Some("singlestat");
        let mut per_cluster = false;
        if let Some(targets) = panel.get_mut("targets").and_then(Value::as_array_mut) {
            for (i, target) in targets.iter_mut().enumerate() {
                per_cluster |= self.target(&title, i, panel_ds, target);
            }
        }
        if singlestat && per_cluster && self.report.multi {
            // Grafana's old singlestat shows one series and errors on several.
            self.report.warnings.push(format!(
                "{title}: a singlestat, but its query returns a series per {}: aggregate it \
                 (e.g. min/max/sum) or make it a stat panel",
                self.rewriter.label
            ));
        }
        if let Some(inner) = panel.get_mut("panels").and_then(Value::as_array_mut) {
            self.panels(inner);
        }
    }

    /// Rewrite one target; true when its series carry the label.
    fn target(
        &mut self,
        title: &str,
        index: usize,
        panel_ds: Datasource,
        target: &mut Value,
    ) -> bool {
        let Some(expr) = target.get("expr").and_then(Value::as_str) else {
            return false;
        };
        if !target_is_prometheus(panel_ds, target, self.datasources) {
            self.report.other_datasources += 1;
            return false;
        }
        let place = format!("{title} (refId {})", ref_id(target, index));
        let group = self.report.multi;
        let Some(result) = self.expr(&place, expr, group) else {
            return false;
        };
        target["expr"] = Value::String(result.text);
        if group
            && result.keeps_label
            && let Some(legend) = target.get("legendFormat").and_then(Value::as_str)
            && !legend.trim().is_empty()
            && legend != "__auto"
            && !legend_has_label(legend, &self.rewriter.label)
        {
            target["legendFormat"] =
                Value::String(format!("{{{{{}}}}} {legend}", self.rewriter.label));
            self.report.legends += 1;
        }
        result.keeps_label
    }

    fn annotation(&mut self, annotation: &mut Value) {
        let Some(expr) = annotation.get("expr").and_then(Value::as_str) else {
            return;
        };
        if classify_datasource(annotation.get("datasource"), self.datasources) == Datasource::Other
        {
            self.report.other_datasources += 1;
            return;
        }
        let name = annotation.get("name").and_then(Value::as_str).unwrap_or("");
        let place = format!("annotation {name:?}");
        let group = self.report.multi;
        if let Some(result) = self.expr(&place, expr, group) {
            annotation["expr"] = Value::String(result.text);
        }
    }

    fn variable(&mut self, variable: &mut Value) {
        if variable.get("type").and_then(Value::as_str) != Some("query") {
            return;
        }
        if classify_datasource(variable.get("datasource"), self.datasources) == Datasource::Other {
            self.report.other_datasources += 1;
            return;
        }
        let name = variable.get("name").and_then(Value::as_str).unwrap_or("");
        let place = format!("variable {name:?}");
        let (query, in_object) = match variable.get("query") {
            Some(Value::String(q)) => (q.clone(), false),
            Some(Value::Object(o)) => match o.get("query").and_then(Value::as_str) {
                Some(q) => (q.to_string(), true),
                None => return,
            },
            _ => return,
        };
        let new = match self.variable_query(&place, &query) {
            Some(new) if new != query => new,
            _ => return,
        };
        if in_object {
            variable["query"]["query"] = Value::String(new.clone());
        } else {
            variable["query"] = Value::String(new.clone());
        }
        if variable.get("definition").and_then(Value::as_str) == Some(query.as_str()) {
            variable["definition"] = Value::String(new);
        }
    }

    /// Scope a query variable's query; None when it is left alone.
    fn variable_query(&mut self, place: &str, query: &str) -> Option<String> {
        match VariableQuery::parse(query) {
            VariableQuery::Untouched => None,
            VariableQuery::LabelValues {
                metric: None,
                label,
            } => {
                self.report.expressions += 1;
                self.report.changed += 1;
                self.report.scoped += 1;
                // `label!=""` keeps the selector valid when All makes the cluster matcher
                // match everything (Prometheus refuses a match[] whose matchers all match "").
                let selector = format!(
                    "{{{}!=\"\", {}}}",
                    &query[label.clone()],
                    self.rewriter.matcher
                );
                Some(format!(
                    "{}{selector}, {}",
                    &query[..label.start],
                    &query[label.start..]
                ))
            }
            VariableQuery::LabelValues {
                metric: Some(range),
                ..
            }
            | VariableQuery::QueryResult(range)
            | VariableQuery::Selector(range) => {
                // Variables list values: no grouping, merging clusters is what a list does.
                let result = self.expr(place, &query[range.clone()], false)?;
                Some(format!(
                    "{}{}{}",
                    &query[..range.start],
                    result.text,
                    &query[range.end..]
                ))
            }
        }
    }

    /// Rewrite one expression, counting; None (with a warning) when it is left as it is.
    fn expr(&mut self, place: &str, expr: &str, group: bool) -> Option<Rewritten> {
        self.report.expressions += 1;
        match self.rewriter.rewrite(expr, group) {
            Ok(result) => {
                self.report.scoped += result.scoped;
                self.report.present += result.present;
                self.report.kept += result.kept.len();
                for k in &result.kept {
                    if !uses_variable(k, &self.rewriter.variable) {
                        *self.kept.entry(k.clone()).or_default() += 1;
                    }
                }
                if result.grouped {
                    self.report.grouped += 1;
                }
                if result.text != expr {
                    self.report.changed += 1;
                }
                Some(result)
            }
            Err(e) => {
                self.report
                    .warnings
                    .push(format!("{place}: left as it is: {e}"));
                None
            }
        }
    }
}

fn panel_title(panel: &Value) -> String {
    match panel.get("title").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => format!("panel {t:?}"),
        _ => match panel.get("id") {
            Some(id) => format!("panel id {id}"),
            None => "untitled panel".into(),
        },
    }
}

/// A target's refId, or its position when it has none.
fn ref_id(target: &Value, index: usize) -> String {
    match target.get("refId").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => format!("#{}", index + 1),
    }
}

/// Whether a legend already shows the label: `{{cluster}}`, `{{ cluster }}`.
fn legend_has_label(legend: &str, label: &str) -> bool {
    let re = Regex::new(&format!(r"\{{\{{\s*{}\s*\}}\}}", regex::escape(label)))
        .expect("escaped label makes a valid regex");
    re.is_match(legend)
}

// ---------------------------------------------------------------------------------------
// Grafana's Prometheus variable queries: `label_values(metric, label)`, `query_result(expr)`...

/// A query variable's query, as Grafana's Prometheus data source reads it. Byte ranges point
/// into the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum VariableQuery {
    /// `label_names()`, `metrics(regex)`: no series selector to scope.
    Untouched,
    /// `label_values(label)` or `label_values(metric, label)`.
    LabelValues {
        metric: Option<Range<usize>>,
        label: Range<usize>,
    },
    /// `query_result(expr)`.
    QueryResult(Range<usize>),
    /// Anything else: Grafana lists the series that match it.
    Selector(Range<usize>),
}

impl VariableQuery {
    /// The same grammar as Grafana's `PrometheusMetricFindQuery` (its regexes, in its order).
    fn parse(query: &str) -> VariableQuery {
        static LABEL_NAMES: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"^label_names\(\)\s*$").expect("valid regex"));
        static LABEL_VALUES: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"^label_values\((?:(.+),\s*)?([a-zA-Z_$][a-zA-Z0-9_]*)\)\s*$")
                .expect("valid regex")
        });
        static METRICS: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"^metrics\((.+)\)\s*$").expect("valid regex"));
        static QUERY_RESULT: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"^query_result\((.+)\)\s*$").expect("valid regex"));
        if query.trim().is_empty() || LABEL_NAMES.is_match(query) || METRICS.is_match(query) {
            return VariableQuery::Untouched;
        }
        if let Some(c) = LABEL_VALUES.captures(query) {
            let label = c.get(2).expect("group 2 always matches").range();
            return VariableQuery::LabelValues {
                metric: c.get(1).map(|m| m.range()),
                label,
            };
        }
        if let Some(c) = QUERY_RESULT.captures(query) {
            return VariableQuery::QueryResult(c.get(1).expect("group 1 matches").range());
        }
        VariableQuery::Selector(0..query.len())
    }
}

// ---------------------------------------------------------------------------------------
// Rewriting one PromQL expression

struct Rewriter {
    label: String,
    variable: String,
    /// `cluster=~"$cluster"`
    matcher: String,
    scoper: Scoper,
}

/// One rewritten expression.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rewritten {
    text: String,
    scoped: usize,
    present: usize,
    /// Other matchers on the label, as written (template text restored).
    kept: Vec<String>,
    /// The result series carry the label.
    keeps_label: bool,
    /// The label was added to a `by`/`on` list.
    grouped: bool,
}

impl Rewriter {
    fn new(options: &Options) -> Rewriter {
        Rewriter {
            label: options.label.clone(),
            variable: options.variable.clone(),
            matcher: options.matcher(),
            scoper: Scoper::new(
                &options.label,
                &format!("${}", options.variable),
                ScopeOp::Regex,
                Policy::Keep,
            ),
        }
    }

    fn rewrite(&self, expr: &str, group: bool) -> Result<Rewritten, String> {
        let protected = protect(expr).map_err(|e| e.to_string())?;
        let scoped = self
            .scoper
            .scope(&protected.text)
            .map_err(|e| protected.restore_lenient(&e.to_string()))?;
        let mut text = scoped.text;
        let mut grouped = false;
        if group && let Some(g) = add_grouping(&text, &self.label) {
            grouped = g != text;
            text = g;
        }
        let keeps_label = parse(&text).is_ok_and(|e| keeps_label(&e, &self.label));
        let restored = protected.restore(&text)?;
        let mut kept = Vec::new();
        let mut present = 0;
        for k in &scoped.kept {
            let k = protected.restore_lenient(k);
            if k == self.matcher {
                present += 1;
            } else {
                kept.push(k);
            }
        }
        Ok(Rewritten {
            text: restored,
            scoped: scoped.scoped,
            present,
            kept,
            keeps_label,
            grouped,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Template variables through the parser

/// Grafana's variable syntax, as its `templateSrv` regex: `$var`, `[[var]]`, `[[var:fmt]]`,
/// `${var}`, `${var.field}`, `${var:fmt}` (ASCII word characters, as JavaScript's `\w`).
static TEMPLATE_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+?)(?::([A-Za-z0-9_]+))?\]\]|\$\{([A-Za-z0-9_]+)(?:\.([^:^}]+))?(?::([^}]+))?\}",
    )
    .expect("valid regex")
});

/// The template tokens of a text, in order (byte ranges).
pub fn template_tokens(text: &str) -> Vec<Range<usize>> {
    TEMPLATE_TOKEN.find_iter(text).map(|m| m.range()).collect()
}

/// Whether `text` refers to the template variable `name` in any of Grafana's syntaxes.
fn uses_variable(text: &str, name: &str) -> bool {
    TEMPLATE_TOKEN.captures_iter(text).any(|c| {
        [1, 2, 4]
            .iter()
            .any(|&i| c.get(i).is_some_and(|m| m.as_str() == name))
    })
}

/// What a template token stands for, judged from where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Inside a string or comment: any text.
    Text,
    /// A whole duration: `[$__rate_interval]`, `offset $__interval`.
    Duration,
    /// A number: `topk($n, ...)`, `${__range_s}s`, `@ ${__to:date:seconds}`.
    Number,
    /// An identifier or part of one: `${metric}_total`, `by ($label)`, `{$label="a"}`.
    Ident,
    /// Standing alone where a number or a metric name both fit (`x > $threshold`): tried as
    /// a number first (unless it is the whole expression), then as an identifier.
    Either,
}

/// An expression with its template tokens replaced by placeholders that parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    /// The expression with placeholders; it parses as PromQL.
    pub text: String,
    /// (placeholder, original token), each placeholder put in exactly once.
    pub placeholders: Vec<(String, String)>,
}

/// Why an expression cannot be parsed even with its template tokens protected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtectError(pub String);

impl Protected {
    /// Put the original tokens back; every placeholder must occur exactly once in `text`.
    pub fn restore(&self, text: &str) -> Result<String, String> {
        let mut out = text.to_string();
        for (placeholder, original) in &self.placeholders {
            let n = out.matches(placeholder.as_str()).count();
            if n != 1 {
                return Err(format!(
                    "template variable {original} did not come through the rewrite intact \
                     ({n} copies of its placeholder)"
                ));
            }
            out = out.replacen(placeholder.as_str(), original, 1);
        }
        Ok(out)
    }

    /// Put back whatever placeholders occur (for messages).
    pub fn restore_lenient(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (placeholder, original) in &self.placeholders {
            out = out.replace(placeholder.as_str(), original);
        }
        out
    }
}

/// Replace the template tokens of `expr` by placeholders valid in their context, so that the
/// result parses as PromQL. Expressions without tokens are only parsed.
pub fn protect(expr: &str) -> Result<Protected, ProtectError> {
    let tokens = template_tokens(expr);
    if tokens.is_empty() {
        parse(expr).map_err(|e| ProtectError(e.to_string()))?;
        return Ok(Protected {
            text: expr.to_string(),
            placeholders: Vec::new(),
        });
    }
    let slots = classify(expr, &tokens);
    // Placeholders must not occur in the text already; restore() double-checks the counts.
    let salt = (0..1000)
        .find(|&salt| {
            !expr.contains(&format!("__promfed{salt}_"))
                && !expr.contains(&format!("{}d7h13m", 424 + salt))
                && (0..tokens.len()).all(|i| !expr.contains(&number_placeholder(salt, i)))
        })
        .unwrap_or(0);
    let either: Vec<usize> = (0..tokens.len())
        .filter(|&i| slots[i] == Slot::Either)
        .collect();
    // A bit set means "identifier". Numbers first: `x > $threshold` must not become a selector.
    let whole = tokens.len() == 1 && expr.trim() == &expr[tokens[0].clone()];
    let masks: Vec<u64> = if whole {
        vec![1, 0]
    } else if either.len() <= 6 {
        let mut m: Vec<u64> = (0..1u64 << either.len()).collect();
        m.sort_by_key(|m| m.count_ones());
        m
    } else {
        vec![0, u64::MAX]
    };
    let mut first_error = None;
    for mask in masks {
        let mut text = String::with_capacity(expr.len() + 16 * tokens.len());
        let mut placeholders = Vec::with_capacity(tokens.len());
        let mut last = 0;
        for (i, range) in tokens.iter().enumerate() {
            let slot = match slots[i] {
                Slot::Either => {
                    let bit = either.iter().position(|&e| e == i).unwrap_or(0);
                    if bit < 64 && mask & (1 << bit) != 0 {
                        Slot::Ident
                    } else {
                        Slot::Number
                    }
                }
                slot => slot,
            };
            let placeholder = match slot {
                Slot::Text | Slot::Ident | Slot::Either => ident_placeholder(salt, i),
                Slot::Duration => duration_placeholder(salt, i),
                Slot::Number => number_placeholder(salt, i),
            };
            text.push_str(&expr[last..range.start]);
            text.push_str(&placeholder);
            placeholders.push((placeholder, expr[range.clone()].to_string()));
            last = range.end;
        }
        text.push_str(&expr[last..]);
        let protected = Protected { text, placeholders };
        match parse(&protected.text) {
            Ok(_) => return Ok(protected),
            Err(e) => {
                first_error.get_or_insert_with(|| protected.restore_lenient(&e.to_string()));
            }
        }
    }
    Err(ProtectError(first_error.unwrap_or_default()))
}

/// Placeholders are fixed-width and distinct, so none contains another, and they print back
/// the same from the AST (durations in canonical form) should the scoper have to reprint.
fn ident_placeholder(salt: usize, i: usize) -> String {
    format!("__promfed{salt}_{i:04}__")
}

fn number_placeholder(salt: usize, i: usize) -> String {
    format!("{}{:06}", 735 + salt, i)
}

fn duration_placeholder(salt: usize, i: usize) -> String {
    format!(
        "{}d7h13m{}s{}ms",
        424 + salt,
        10 + (i / 900) % 50,
        100 + i % 900
    )
}

const GROUPING_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Decide each token's slot with a small scan of the text: strings and comments, bracket
/// nesting (`[...]` ranges, `{...}` matchers, grouping label lists) and the neighbours.
fn classify(text: &str, tokens: &[Range<usize>]) -> Vec<Slot> {
    #[derive(PartialEq)]
    enum Prev {
        None,
        Word(String),
        Byte(u8),
        Token,
    }
    let bytes = text.as_bytes();
    let mut slots = vec![Slot::Either; tokens.len()];
    // (bracket, is a grouping label list)
    let mut stack: Vec<(u8, bool)> = Vec::new();
    let mut prev = Prev::None;
    let mut t = 0;
    let mut i = 0;
    while i < bytes.len() {
        while t < tokens.len() && tokens[t].start < i {
            // A token that began inside something skipped below.
            t += 1;
        }
        if t < tokens.len() && tokens[t].start == i {
            let Range { start, end } = tokens[t].clone();
            let top = stack.last().copied();
            let after = bytes.get(end).copied();
            let unit_follows = after.is_some_and(|b| b.is_ascii_alphabetic());
            let glued = (start > 0 && is_word_byte(bytes[start - 1]))
                || prev == Prev::Token && t > 0 && tokens[t - 1].end == start
                || after.is_some_and(is_word_byte)
                || tokens.get(t + 1).is_some_and(|n| n.start == end);
            let next = bytes[end..]
                .iter()
                .copied()
                .find(|b| !b.is_ascii_whitespace());
            slots[t] = if matches!(top, Some((b'[', _)))
                || matches!(&prev, Prev::Word(w) if w.eq_ignore_ascii_case("offset"))
            {
                if unit_follows {
                    Slot::Number
                } else {
                    Slot::Duration
                }
            } else if prev == Prev::Byte(b'@') {
                Slot::Number
            } else if glued
                || matches!(top, Some((b'{', _)) | Some((b'(', true)))
                || matches!(next, Some(b'{' | b'[' | b'('))
            {
                Slot::Ident
            } else {
                Slot::Either
            };
            prev = Prev::Token;
            i = end;
            t += 1;
            continue;
        }
        let c = bytes[i];
        match c {
            b'"' | b'\'' | b'`' => {
                let mut j = i + 1;
                while j < bytes.len() {
                    if t < tokens.len() && tokens[t].start == j {
                        slots[t] = Slot::Text;
                        j = tokens[t].end;
                        t += 1;
                        continue;
                    }
                    if bytes[j] == b'\\' && c != b'`' {
                        j += 2;
                        continue;
                    }
                    if bytes[j] == c {
                        break;
                    }
                    j += 1;
                }
                i = j + 1;
                prev = Prev::Byte(c);
            }
            b'#' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b'\n' {
                    if t < tokens.len() && tokens[t].start == j {
                        slots[t] = Slot::Text;
                        j = tokens[t].end;
                        t += 1;
                        continue;
                    }
                    j += 1;
                }
                i = j;
            }
            b'(' => {
                let grouping = matches!(&prev, Prev::Word(w)
                    if GROUPING_KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)));
                stack.push((c, grouping));
                prev = Prev::Byte(c);
                i += 1;
            }
            b'[' | b'{' => {
                stack.push((c, false));
                prev = Prev::Byte(c);
                i += 1;
            }
            b')' | b']' | b'}' => {
                stack.pop();
                prev = Prev::Byte(c);
                i += 1;
            }
            c if is_word_byte(c) => {
                let start = i;
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                prev = Prev::Word(text[start..i].to_string());
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                prev = Prev::Byte(c);
                i += 1;
            }
        }
    }
    slots
}

// ---------------------------------------------------------------------------------------
// Keeping clusters apart: grouping lists and which results carry the label

/// Add `label` to every non-empty `by (...)` list, and to every non-empty `on (...)` list when
/// both sides of each such match carry the label. The text is edited at the lexer's token
/// positions and must parse to the AST edited the same way; None when it does not.
fn add_grouping(text: &str, label: &str) -> Option<String> {
    let original = parse(text).ok()?;
    let mut expected = original.clone();
    let mut by = 0;
    for_each_node_mut(&mut expected, &mut |e| {
        if let Expr::Aggregate(agg) = e
            && let Some(LabelModifier::Include(ls)) = &mut agg.modifier
            && !ls.labels.is_empty()
            && !ls.labels.iter().any(|l| l == label)
        {
            ls.labels.push(label.to_string());
            by += 1;
        }
    });
    let mut on_ok = true;
    for_each_node(&expected, &mut |e| {
        if let Expr::Binary(b) = e
            && let Some(m) = &b.modifier
            && let Some(LabelModifier::Include(ls)) = &m.matching
            && !ls.labels.is_empty()
            && !ls.labels.iter().any(|l| l == label)
            && !(keeps_label(&b.lhs, label) && keeps_label(&b.rhs, label))
        {
            on_ok = false;
        }
    });
    let mut on = 0;
    if on_ok {
        for_each_node_mut(&mut expected, &mut |e| {
            if let Expr::Binary(b) = e
                && let Some(m) = &mut b.modifier
                && let Some(LabelModifier::Include(ls)) = &mut m.matching
                && !ls.labels.is_empty()
                && !ls.labels.iter().any(|l| l == label)
            {
                ls.labels.push(label.to_string());
                on += 1;
            }
        });
    }
    if by + on == 0 {
        return Some(text.to_string());
    }

    // The tokens as promfed reads PromQL: keywords used as names (`by (anchored)`) are names.
    let tokens = tokens(text).ok()?;
    let mut inserts = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let id = tokens[i].0;
        let is_list = matches!(
            id,
            T_BY | T_WITHOUT | T_ON | T_IGNORING | T_GROUP_LEFT | T_GROUP_RIGHT
        ) && tokens.get(i + 1).map(|t| t.0) == Some(T_LEFT_PAREN);
        if !is_list {
            i += 1;
            continue;
        }
        let mut j = i + 2;
        let mut names = Vec::new();
        let mut last_end = None;
        while j < tokens.len() && tokens[j].0 != T_RIGHT_PAREN {
            if tokens[j].0 != T_COMMA {
                names.push(text[tokens[j].1..tokens[j].2].trim_matches(['"', '\'', '`']));
                last_end = Some(tokens[j].2);
            }
            j += 1;
        }
        let wanted = id == T_BY || (id == T_ON && on > 0);
        if wanted
            && let Some(end) = last_end
            && !names.contains(&label)
        {
            inserts.push(end);
        }
        i = j + 1;
    }
    let mut out = text.to_string();
    for at in inserts.into_iter().rev() {
        out.insert_str(at, &format!(", {label}"));
    }
    (parse(&out).ok()? == expected).then_some(out)
}

/// Whether the series an expression returns carry `label` (given that every selector does):
/// aggregations keep it only through `by (label)` or a `without` list that spares it, vector
/// matching through its `on`/`ignoring` lists and `group_*` sides, as Prometheus builds the
/// result labels.
fn keeps_label(expr: &Expr, label: &str) -> bool {
    let has = |ls: &promql_parser::label::Labels| ls.labels.iter().any(|l| l == label);
    match expr {
        Expr::Aggregate(agg) => {
            let id = agg.op.id();
            if matches!(id, T_TOPK | T_BOTTOMK | T_LIMITK | T_LIMIT_RATIO) {
                // These select series; they keep all of their labels.
                return keeps_label(&agg.expr, label);
            }
            match &agg.modifier {
                Some(LabelModifier::Include(ls)) => has(ls) && keeps_label(&agg.expr, label),
                Some(LabelModifier::Exclude(ls)) => !has(ls) && keeps_label(&agg.expr, label),
                None => false,
            }
        }
        Expr::Unary(u) => keeps_label(&u.expr, label),
        Expr::Binary(b) => {
            let lhs_vector = b.lhs.value_type() == ValueType::Vector;
            let rhs_vector = b.rhs.value_type() == ValueType::Vector;
            match (lhs_vector, rhs_vector) {
                (false, false) => false,
                (true, false) => keeps_label(&b.lhs, label),
                (false, true) => keeps_label(&b.rhs, label),
                (true, true) => {
                    let lhs = keeps_label(&b.lhs, label);
                    let rhs = keeps_label(&b.rhs, label);
                    match b.op.id() {
                        T_LAND | T_LUNLESS => return lhs,
                        T_LOR => return lhs || rhs,
                        _ => {}
                    }
                    let Some(m) = &b.modifier else {
                        return lhs;
                    };
                    match &m.card {
                        VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany => {
                            match &m.matching {
                                Some(LabelModifier::Include(ls)) => has(ls) && lhs,
                                Some(LabelModifier::Exclude(ls)) => !has(ls) && lhs,
                                None => lhs,
                            }
                        }
                        VectorMatchCardinality::ManyToOne(include) => lhs || (has(include) && rhs),
                        VectorMatchCardinality::OneToMany(include) => rhs || (has(include) && lhs),
                    }
                }
            }
        }
        Expr::Paren(p) => keeps_label(&p.expr, label),
        Expr::Subquery(s) => keeps_label(&s.expr, label),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => false,
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => true,
        Expr::Call(call) => {
            if !matches!(call.func.return_type, ValueType::Vector | ValueType::Matrix) {
                return false;
            }
            match call.func.name {
                // New series: no labels, or only those of equality matchers.
                "vector" | "absent" | "absent_over_time" => false,
                "label_replace" | "label_join"
                    if matches!(call.args.args.get(1).map(|a| a.as_ref()),
                        Some(Expr::StringLiteral(s)) if s.val == label) =>
                {
                    true
                }
                _ => call.args.args.iter().any(|a| {
                    matches!(a.value_type(), ValueType::Vector | ValueType::Matrix)
                        && keeps_label(a, label)
                }),
            }
        }
        Expr::Extension(_) => false,
    }
}

// ---------------------------------------------------------------------------------------
// Listing a dashboard's PromQL (for checks)

/// One PromQL expression of a dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    /// Where it is: `panel "CPU" (refId A)`, `variable "instance"`, `annotation "x"`.
    pub place: String,
    /// The query variable it belongs to, if any.
    pub variable: Option<String>,
    /// The PromQL text (for variables: the selector or `query_result` expression inside).
    pub text: String,
}

/// Every PromQL expression of a dashboard's Prometheus targets, annotations and query
/// variables, as [`convert`] sees them. `label_values(label)` without a metric, `metrics()` and
/// `label_names()` hold none.
pub fn expressions(root: &Value) -> Vec<Expression> {
    let mut out = Vec::new();
    let dashboard = match root.get("dashboard") {
        Some(d) if d.is_object() && root.get("panels").is_none() && root.get("rows").is_none() => d,
        _ => root,
    };
    let Some(dashboard) = dashboard.as_object() else {
        return out;
    };
    let datasources = datasource_variables(dashboard);
    each_panel(dashboard, &mut |panel| {
        if panel.get("libraryPanel").is_some() {
            return;
        }
        let title = panel_title(panel);
        let panel_ds = classify_datasource(panel.get("datasource"), &datasources);
        let targets = panel.get("targets").and_then(Value::as_array);
        for (i, target) in targets.into_iter().flatten().enumerate() {
            if let Some(expr) = target.get("expr").and_then(Value::as_str)
                && target_is_prometheus(panel_ds, target, &datasources)
            {
                out.push(Expression {
                    place: format!("{title} (refId {})", ref_id(target, i)),
                    variable: None,
                    text: expr.to_string(),
                });
            }
        }
    });
    for annotation in dashboard
        .get("annotations")
        .and_then(|a| a.get("list"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation.get("expr").and_then(Value::as_str)
            && classify_datasource(annotation.get("datasource"), &datasources) != Datasource::Other
        {
            let name = annotation.get("name").and_then(Value::as_str).unwrap_or("");
            out.push(Expression {
                place: format!("annotation {name:?}"),
                variable: None,
                text: expr.to_string(),
            });
        }
    }
    for variable in variables(dashboard) {
        if variable.get("type").and_then(Value::as_str) != Some("query")
            || classify_datasource(variable.get("datasource"), &datasources) == Datasource::Other
        {
            continue;
        }
        let name = variable.get("name").and_then(Value::as_str).unwrap_or("");
        let query = match variable.get("query") {
            Some(Value::String(q)) => q.as_str(),
            Some(Value::Object(o)) => match o.get("query").and_then(Value::as_str) {
                Some(q) => q,
                None => continue,
            },
            _ => continue,
        };
        let range = match VariableQuery::parse(query) {
            VariableQuery::Untouched | VariableQuery::LabelValues { metric: None, .. } => continue,
            VariableQuery::LabelValues {
                metric: Some(r), ..
            }
            | VariableQuery::QueryResult(r)
            | VariableQuery::Selector(r) => r,
        };
        out.push(Expression {
            place: format!("variable {name:?}"),
            variable: Some(name.to_string()),
            text: query[range].to_string(),
        });
    }
    out
}

/// The selectors of `expr` (template tokens protected) that have no matcher on `label`, as
/// text; Err when it does not parse.
pub fn unscoped_selectors(expr: &str, label: &str) -> Result<Vec<String>, ProtectError> {
    let protected = protect(expr)?;
    let ast = parse(&protected.text).map_err(|e| ProtectError(e.to_string()))?;
    Ok(selectors(&ast)
        .into_iter()
        .filter(|vs| !vs.matchers.matchers.iter().any(|m| m.name == label))
        .map(|vs| protected.restore_lenient(&vs.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
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
    fn keeps_label_rows() {
        let rows: &[(&str, bool)] = &[
            ("x", true),
            ("sum(x)", false),
            ("sum by (cluster) (x)", true),
            ("sum without (pod) (x)", true),
            ("sum without (cluster) (x)", false),
            ("topk(3, sum(x))", false),
            ("topk(3, x)", true),
            ("x / on (pod) y", false),
            ("x / ignoring (pod) y", true),
            ("x * on (pod) group_left (node) y", true),
            ("sum(x) * on () group_right y", true),
            ("vector(1)", false),
            ("scalar(x)", false),
            ("rate(x[5m])", true),
            ("histogram_quantile(0.9, sum by (le) (x))", false),
            ("x or vector(0)", true),
            ("1 - x", true),
            (r#"label_replace(sum(x), "cluster", "a", "", "")"#, true),
        ];
        for (text, want) in rows {
            let e = parse(text).unwrap();
            assert_eq!(keeps_label(&e, "cluster"), *want, "{text}");
        }
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
}
