//! The dashboard's variables: the one promfed adds, and Grafana's Prometheus variable queries.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

use super::Options;
use super::model::{Datasource, classify_datasource, each_panel, variables};

/// The new variable: multi-select with All, listing the label's values on `up`.
pub(super) fn variable_json(options: &Options, datasource: Value) -> Value {
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
pub(super) fn insert_variable(dashboard: &mut Map<String, Value>, variable: Value) {
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
pub(super) fn default_datasource(
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

// ---------------------------------------------------------------------------------------
// Grafana's Prometheus variable queries: `label_values(metric, label)`, `query_result(expr)`...

/// A query variable's query, as Grafana's Prometheus data source reads it. Byte ranges point
/// into the query text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum VariableQuery {
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
    pub(super) fn parse(query: &str) -> VariableQuery {
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
