//! The Grafana dashboard JSON as promfed reads it: the dashboard object, its variables, its
//! panels (nested ones included) and which data source a query goes to.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::DashboardError;

/// The dashboard object: the root, or `root.dashboard` when wrapped.
pub(super) fn dashboard_mut(root: &mut Value) -> Result<&mut Map<String, Value>, DashboardError> {
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

pub(super) fn is_true(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool).unwrap_or(false)
}

pub(super) fn variables(dashboard: &Map<String, Value>) -> &[Value] {
    dashboard
        .get("templating")
        .and_then(|t| t.get("list"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Datasource-type variables: name -> plugin id (`prometheus`, `loki`, ...).
pub(super) fn datasource_variables(dashboard: &Map<String, Value>) -> HashMap<String, String> {
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

/// Every panel, nested ones (collapsed rows, old-schema `rows[].panels`) included.
pub(super) fn each_panel<'a>(dashboard: &'a Map<String, Value>, f: &mut dyn FnMut(&'a Value)) {
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
pub(super) fn target_is_prometheus(
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
pub(super) enum Datasource {
    /// Absent or null: the dashboard's default, taken to be Prometheus.
    Default,
    Prometheus,
    /// `-- Mixed --` on a panel: each target names its own.
    Mixed,
    Other,
}

pub(super) fn classify_datasource(
    ds: Option<&Value>,
    variables: &HashMap<String, String>,
) -> Datasource {
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
pub(super) fn classify_datasource_name(
    name: &str,
    variables: &HashMap<String, String>,
) -> Datasource {
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

pub(super) fn panel_title(panel: &Value) -> String {
    match panel.get("title").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => format!("panel {t:?}"),
        _ => match panel.get("id") {
            Some(id) => format!("panel id {id}"),
            None => "untitled panel".into(),
        },
    }
}

/// A target's refId, or its position when it has none.
pub(super) fn ref_id(target: &Value, index: usize) -> String {
    match target.get("refId").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        None => format!("#{}", index + 1),
    }
}
