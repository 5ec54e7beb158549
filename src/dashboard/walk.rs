//! The conversion walk: every panel target, annotation and query variable, scoped and
//! counted in the report.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;
use serde_json::Value;

use super::Report;
use super::model::{Datasource, classify_datasource, panel_title, ref_id, target_is_prometheus};
use super::rewrite::{Rewriter, Rewritten};
use super::template::uses_variable;
use super::variables::VariableQuery;

pub(super) struct Walk<'a> {
    pub(super) rewriter: &'a Rewriter,
    pub(super) datasources: &'a HashMap<String, String>,
    pub(super) report: &'a mut Report,
    /// Kept matchers that do not use the variable: text -> count.
    pub(super) kept: BTreeMap<String, usize>,
}

impl Walk<'_> {
    pub(super) fn panels(&mut self, panels: &mut [Value]) {
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

    pub(super) fn annotation(&mut self, annotation: &mut Value) {
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

    pub(super) fn variable(&mut self, variable: &mut Value) {
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
    pub(super) fn variable_query(&mut self, place: &str, query: &str) -> Option<String> {
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

/// Whether a legend already shows the label: `{{cluster}}`, `{{ cluster }}`.
pub(super) fn legend_has_label(legend: &str, label: &str) -> bool {
    let re = Regex::new(&format!(r"\{{\{{\s*{}\s*\}}\}}", regex::escape(label)))
        .expect("escaped label makes a valid regex");
    re.is_match(legend)
}
