//! The dashboards in `dashboards/` asked of the tools Prometheus, for every cluster: which
//! queries answer, which select series the set-up does not have, which a filter empties.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use promql_parser::parser::VectorSelector;
use regex::Regex;
use serde_json::Value;

use super::setup::read;
use super::sites::SITES;
use super::{filters, match_selector, parse_promql, selectors};
use crate::support::prometheus::Api;

// ---------------------------------------------------------------------------------------
// Dashboards

/// What the dashboards in `dashboards/` gave.
#[derive(Default)]
pub(super) struct DashboardReport {
    /// dashboard, queries (expressions x clusters), with data, a selector absent, empty by a
    /// filter.
    pub(super) rows: Vec<(String, usize, usize, usize, usize)>,
    /// dashboard -> selector (without the cluster matcher) that has no series -> clusters.
    pub(super) absent: BTreeMap<String, BTreeMap<String, BTreeSet<&'static str>>>,
    /// dashboard, the cluster variable's query, the clusters it offers.
    pub(super) cluster_options: Vec<(String, String, BTreeSet<String>)>,
    pub(super) failures: Vec<String>,
}

impl DashboardReport {
    pub(super) fn table(&self) -> String {
        let mut out = format!(
            "dashboards/*.json, every expression for each cluster ($cluster = local, \
             workload-a, workload-b)\n  {:<22} {:>7} {:>9} {:>14} {:>15}\n",
            "dashboard", "queries", "with data", "metric absent", "empty (filter)"
        );
        for (name, total, with_data, absent, filtered) in &self.rows {
            out.push_str(&format!(
                "  {name:<22} {total:>7} {with_data:>9} {absent:>14} {filtered:>15}\n"
            ));
        }
        for (name, query, options) in &self.cluster_options {
            out.push_str(&format!(
                "  {name}: the cluster variable `{query}` offers {options:?}\n"
            ));
        }
        out.push_str("  absent in the set-up (selector: clusters):\n");
        for (name, selectors) in &self.absent {
            for (selector, clusters) in selectors {
                let clusters: Vec<&str> = clusters.iter().copied().collect();
                out.push_str(&format!(
                    "    {name}: {selector}: {}\n",
                    clusters.join(", ")
                ));
            }
        }
        out
    }
}

/// Every `expr` string of a dashboard (panels, rows' panels, annotations), deduplicated.
pub(super) fn dashboard_exprs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => {
                        if !expr.trim().is_empty() && !out.contains(expr) {
                            out.push(expr.clone());
                        }
                    }
                    _ => dashboard_exprs(value, out),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                dashboard_exprs(item, out);
            }
        }
        _ => {}
    }
}

/// Grafana's variables in `expr` replaced: `$cluster` by `cluster`, built-ins by the values of a
/// 5-minute dashboard, every other variable by its "All" value (`.*` without one).
pub(super) fn substitute(
    expr: &str,
    cluster: &str,
    variables: &HashMap<String, String>,
) -> Result<String, String> {
    static VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)").expect("regex")
    });
    let mut unknown = Vec::new();
    let out = VARIABLE.replace_all(expr, |c: &regex::Captures| {
        let name = c
            .get(1)
            .or_else(|| c.get(2))
            .or_else(|| c.get(3))
            .map_or("", |m| m.as_str());
        let value = match name {
            // Cluster names are DNS labels: as a regex they match themselves (and a PromQL
            // string would not take regex::escape's `\-`).
            "cluster" => Some(cluster.to_string()),
            "__rate_interval" => Some("1m".into()),
            "__interval" => Some("15s".into()),
            "__interval_ms" => Some("15000".into()),
            "__range" => Some("5m".into()),
            "__range_s" => Some("300".into()),
            "__range_ms" => Some("300000".into()),
            other => variables.get(other).cloned(),
        };
        value.unwrap_or_else(|| {
            unknown.push(name.to_string());
            c[0].to_string()
        })
    });
    if unknown.is_empty() {
        Ok(out.into_owned())
    } else {
        Err(format!("unknown variables {unknown:?}"))
    }
}

/// A selector for the report: its name and matchers other than the cluster's.
pub(super) fn selector_without_cluster(vs: &VectorSelector) -> String {
    let matchers: Vec<String> = vs
        .matchers
        .matchers
        .iter()
        .filter(|m| m.name != "cluster" && m.name != "__name__")
        .map(ToString::to_string)
        .collect();
    format!(
        "{}{{{}}}",
        vs.name.as_deref().unwrap_or_default(),
        matchers.join(",")
    )
}

/// Run every expression of every dashboard in `dir` for each cluster. An expression must return
/// data when each of its selectors has series in that cluster, unless it filters (a comparison,
/// `and`, `unless`); otherwise it counts as "metric absent in the set-up".
pub(super) fn check_dashboards(api: &Api, dir: &Path) -> DashboardReport {
    let mut report = DashboardReport::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dashboards/")
        .map(|e| e.expect("dashboards/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut exists: HashMap<String, bool> = HashMap::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let dashboard: Value = serde_json::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut variables = HashMap::new();
        let mut cluster_variable = false;
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(var) = variable["name"].as_str() else {
                continue;
            };
            let all = variable["allValue"]
                .as_str()
                .filter(|v| !v.is_empty() && variable["includeAll"] == true);
            variables.insert(var.to_string(), all.unwrap_or(".*").to_string());
            if var != "cluster" {
                continue;
            }
            cluster_variable = true;
            // The dropdown's options: `label_values(SELECTOR, cluster)`.
            let query = variable["query"]
                .as_str()
                .or_else(|| variable["query"]["query"].as_str())
                .unwrap_or_default();
            let Some(selector) = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(", cluster)"))
            else {
                report.failures.push(format!(
                    "{name}: the cluster variable's query is not label_values(..., cluster): \
                     {query}"
                ));
                continue;
            };
            let options = api
                .series(selector)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .iter()
                .filter_map(|s| s.get("cluster").cloned())
                .collect();
            report
                .cluster_options
                .push((name.clone(), query.to_string(), options));
        }
        if !cluster_variable {
            report
                .failures
                .push(format!("{name} has no cluster variable"));
        }
        let mut exprs = Vec::new();
        dashboard_exprs(&dashboard, &mut exprs);
        let (mut total, mut with_data, mut absent, mut filtered) = (0, 0, 0, 0);
        for expr in &exprs {
            for site in SITES {
                total += 1;
                let what = format!("{name}, cluster {}: {expr}", site.name);
                let parsed = substitute(expr, site.name, &variables)
                    .and_then(|query| Ok((parse_promql(&query)?, query)));
                let (parsed, query) = match parsed {
                    Ok(parsed) => parsed,
                    Err(e) => {
                        report.failures.push(format!("{what}: {e}"));
                        continue;
                    }
                };
                let missing: Vec<String> = selectors(&parsed)
                    .into_iter()
                    .filter(|vs| {
                        let selector = match_selector(vs);
                        !*exists.entry(selector.clone()).or_insert_with(|| {
                            !api.series(&selector)
                                .unwrap_or_else(|e| panic!("{what}: {e}"))
                                .is_empty()
                        })
                    })
                    .map(selector_without_cluster)
                    .collect();
                if !missing.is_empty() {
                    absent += 1;
                    for selector in missing {
                        report
                            .absent
                            .entry(name.clone())
                            .or_default()
                            .entry(selector)
                            .or_default()
                            .insert(site.name);
                    }
                    continue;
                }
                match api.try_query(&query) {
                    Ok(samples) if !samples.is_empty() => with_data += 1,
                    Ok(_) if filters(&parsed) => filtered += 1,
                    Ok(_) => report.failures.push(format!(
                        "{what}: no data, although every selector of `{query}` has series"
                    )),
                    Err(e) => report.failures.push(format!("{what}: {e}")),
                }
            }
        }
        report.rows.push((name, total, with_data, absent, filtered));
    }
    report
}
