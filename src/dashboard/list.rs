//! Listing a dashboard's PromQL, for checks: every expression [`convert`](super::convert)
//! would scope, and the selectors of one that lack the label.

use serde_json::Value;

use super::model::{
    Datasource, classify_datasource, datasource_variables, each_panel, panel_title, ref_id,
    target_is_prometheus, variables,
};
use super::template::{ProtectError, protect};
use super::variables::VariableQuery;
use crate::promql::{parse, selectors};

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
/// variables, as [`convert`](super::convert) sees them. `label_values(label)` without a metric, `metrics()` and
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
