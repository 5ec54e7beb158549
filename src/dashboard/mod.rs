//! Multi-cluster Grafana dashboards: `promfed dashboard`.
//!
//! [`convert`] reads a dashboard, adds a `cluster` variable (multi-select, All = `.*`) when it
//! has none, and scopes every PromQL expression of its Prometheus panels, annotations and query
//! variables with `cluster=~"$cluster"` (through [`Scoper`](crate::promql::Scoper), so the user's formatting is kept
//! and a selector that already matches on the label is left alone). With a multi-value
//! variable it also keeps clusters apart where a panel shows several: `cluster` is added to
//! non-empty `by (...)` and `on (...)` lists and `{{cluster}} ` to legends of series that carry
//! the label.
//!
//! Grafana's template syntax (`$var`, `${var:fmt}`, `[[var]]`, `$__rate_interval`, ...) is not
//! PromQL. [`protect`] swaps each token for a placeholder that is valid PromQL where it stands
//! (a duration in `[...]`, a number, an identifier, any text in a string) and [`Protected::restore`]
//! puts the exact text back, checking that every placeholder survived exactly once.
//!
//! Files by concern: `model` (the dashboard JSON: panels, variables, data sources), `variables`
//! (the added variable, Grafana's variable queries), `template` (template tokens through the
//! parser), `rewrite` (one expression, with `promql::scope` and `promql::labels`), `walk` (the
//! conversion of every query), `list` (a dashboard's PromQL, for checks).

mod list;
mod model;
mod rewrite;
mod template;
#[cfg(test)]
mod tests;
mod variables;
mod walk;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

pub use list::{Expression, expressions, unscoped_selectors};
use model::{dashboard_mut, datasource_variables, is_true, variables};
use rewrite::Rewriter;
pub use template::{ProtectError, Protected, protect, template_tokens};
use variables::{default_datasource, insert_variable, variable_json};
use walk::Walk;

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
