//! `prometheus.yml`: label local scrape jobs, add the federation jobs.

use serde_json::json;

use super::federation::Federation;
use super::{Error, ErrorKind, Location, Stats, Warning};
use crate::config::Config;
use crate::prometheus::{duration, schema};
use crate::yaml::{Node, Value};

/// Rewrite one Prometheus config document in place. Returns whether it changed.
pub fn rewrite(
    root: &mut Node,
    key: &str,
    config: &Config,
    federation: &Federation,
    stats: &mut Stats,
    warnings: &mut Vec<Warning>,
) -> Result<bool, Error> {
    let at = |line: usize, item: Option<String>| Location {
        key: key.to_string(),
        group: None,
        item,
        line: Some(line).filter(|l| *l > 0),
    };
    if root.as_map().is_none() {
        return Err(Error::new(
            ErrorKind::Shape,
            at(root.line, None),
            "a Prometheus config must be a mapping",
        ));
    }
    check_federation_timeouts(root, federation, &at)?;
    let label = &config.cluster_label_name;
    let local = &config.local_cluster_name;
    let relabel = [json!({
        "source_labels": ["__address__"],
        "target_label": label,
        "replacement": local,
    })];
    // With `honor_labels: true` a scraped `cluster` label beats the target label. Do what
    // Prometheus does without honor_labels: keep the scraped value as `exported_<label>` (unless
    // it already says local) and set the label to local.
    let exported = format!("exported_{label}");
    let honored = [
        json!({"source_labels": [label], "target_label": exported}),
        json!({
            "source_labels": [exported],
            "regex": super::federation::regex_escape(local),
            "target_label": exported,
            "replacement": "",
        }),
        json!({"target_label": label, "replacement": local}),
    ];

    let mut changed = false;
    if root.get("scrape_configs").is_none_or(Node::is_null) {
        if federation.jobs.is_empty() {
            return Ok(false);
        }
        root.insert("scrape_configs", Node::from_json(&json!([])));
        changed = true;
    }
    let scrape_line = root.get("scrape_configs").map_or(0, |n| n.line);
    let Some(jobs) = root.get_mut("scrape_configs").and_then(Node::as_seq_mut) else {
        return Err(Error::new(
            ErrorKind::Shape,
            at(scrape_line, None),
            "scrape_configs must be a list of scrape configs",
        ));
    };

    let mut seen_federation = Vec::new();
    for job in jobs.iter_mut() {
        let line = job.line;
        if job.as_map().is_none() {
            return Err(Error::new(
                ErrorKind::Shape,
                at(line, None),
                "each entry of scrape_configs must be a scrape config mapping",
            ));
        }
        let Some(name) = job
            .get("job_name")
            .and_then(Node::as_str)
            .map(str::to_string)
        else {
            return Err(Error::new(
                ErrorKind::Scrape,
                at(line, None),
                "scrape config has no job_name",
            ));
        };
        if let Some(wanted) = federation.job(&name) {
            seen_federation.push(name.clone());
            if job.to_json() != wanted.node.to_json() {
                *job = wanted.node.clone();
                changed = true;
            }
            continue;
        }
        if job.get("metrics_path").and_then(Node::as_str) == Some("/federate") {
            warnings.push(Warning {
                location: at(line, Some(format!("job {name:?}"))),
                message: "scrapes /federate but is not a federation job of the promfed config: \
                          left as is, not labelled as local"
                    .into(),
            });
            continue;
        }
        let fail = |reason: String| {
            Error::new(
                ErrorKind::Shape,
                at(line, Some(format!("job {name:?}"))),
                reason,
            )
        };
        changed |= ensure_last(job, "relabel_configs", &relabel).map_err(fail)?;
        let honors_labels = job
            .get("honor_labels")
            .is_some_and(|h| h.to_json() == json!(true));
        if honors_labels {
            changed |= ensure_last(job, "metric_relabel_configs", &honored).map_err(fail)?;
        }
        stats.local_jobs_labelled += 1;
    }
    for wanted in &federation.jobs {
        if !seen_federation.contains(&wanted.name) {
            jobs.push(wanted.node.clone());
            changed = true;
        }
    }
    stats.federation_jobs = federation.jobs.len();
    Ok(changed)
}

/// A federation job without its own `scrape_interval` scrapes at this config's global one,
/// which its `scrape_timeout` must not exceed: Prometheus would refuse the whole config.
fn check_federation_timeouts(
    root: &Node,
    federation: &Federation,
    at: &dyn Fn(usize, Option<String>) -> Location,
) -> Result<(), Error> {
    let global = root.get("global").and_then(|g| g.get("scrape_interval"));
    let interval = global
        .and_then(Node::scalar_text)
        .and_then(|text| duration::parse(text).ok())
        .filter(|d| !d.is_zero());
    let (interval, from, line) = match (interval, global) {
        (Some(interval), Some(node)) => (
            interval,
            format!("global.scrape_interval, line {}", node.line),
            node.line,
        ),
        _ => (
            schema::DEFAULT_SCRAPE_INTERVAL,
            "Prometheus' default global scrape_interval".to_string(),
            0,
        ),
    };
    for job in &federation.jobs {
        schema::check_timeout(&job.node, (interval, &from)).map_err(|p| {
            Error::new(
                ErrorKind::Scrape,
                at(line, Some(format!("job {:?}", job.name))),
                format!(
                    "{}; give the job a scrape_interval in the promfed config ({})",
                    p.message, job.source
                ),
            )
        })?;
    }
    Ok(())
}

/// Make `rules` the last rules of the list under `key`, exactly once: a list that already
/// ends with them is left alone; copies earlier in the list (a `labelmap` was added after
/// them) are moved to the end.
pub(super) fn ensure_last(
    job: &mut Node,
    key: &str,
    rules: &[serde_json::Value],
) -> Result<bool, String> {
    match job.get(key) {
        None => job.insert(key, Node::from_json(&json!([]))),
        Some(n) if n.is_null() => job.insert(key, Node::from_json(&json!([]))),
        Some(n) if n.as_seq().is_none() => return Err(format!("{key} must be a list")),
        Some(_) => {}
    }
    let list = job
        .get_mut(key)
        .and_then(Node::as_seq_mut)
        .expect("the list was just ensured");
    let tail: Vec<serde_json::Value> = list
        .iter()
        .skip(list.len().saturating_sub(rules.len()))
        .map(Node::to_json)
        .collect();
    if tail == rules {
        return Ok(false);
    }
    list.retain(|r| !rules.contains(&r.to_json()));
    list.extend(rules.iter().map(Node::from_json));
    Ok(true)
}

/// Paths listed under `rule_files`, for checking where generated rules go.
pub fn rule_files(root: &Node) -> Vec<String> {
    match root.get("rule_files").map(|n| &n.value) {
        Some(Value::Seq(items)) => items
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}
