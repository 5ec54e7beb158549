//! `prometheus.yml`: label local scrape jobs, add the federation jobs.

use serde_json::json;

use super::federation::Federation;
use super::{Error, Location, Stats, Warning};
use crate::config::Config;
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
        return Err(Error {
            location: at(root.line, None),
            reason: "a Prometheus config must be a mapping".into(),
        });
    }
    let local_rule = Node::from_json(&json!({
        "source_labels": ["__address__"],
        "target_label": config.cluster_label_name,
        "replacement": config.local_cluster_name,
    }));
    let local_rule_json = local_rule.to_json();

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
        return Err(Error {
            location: at(scrape_line, None),
            reason: "scrape_configs must be a list of scrape configs".into(),
        });
    };

    let mut seen_federation = Vec::new();
    for job in jobs.iter_mut() {
        let line = job.line;
        if job.as_map().is_none() {
            return Err(Error {
                location: at(line, None),
                reason: "each entry of scrape_configs must be a scrape config mapping".into(),
            });
        }
        let Some(name) = job
            .get("job_name")
            .and_then(Node::as_str)
            .map(str::to_string)
        else {
            return Err(Error {
                location: at(line, None),
                reason: "scrape config has no job_name".into(),
            });
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
        changed |= label_local(job, &local_rule, &local_rule_json).map_err(|reason| Error {
            location: at(line, Some(format!("job {name:?}"))),
            reason,
        })?;
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

/// Make the local relabel rule the last rule of the job, exactly once.
fn label_local(job: &mut Node, rule: &Node, rule_json: &serde_json::Value) -> Result<bool, String> {
    match job.get("relabel_configs") {
        None => {
            job.insert("relabel_configs", Node::from_json(&json!([])));
        }
        Some(n) if n.is_null() => {
            job.insert("relabel_configs", Node::from_json(&json!([])));
        }
        Some(n) if n.as_seq().is_none() => {
            return Err("relabel_configs must be a list".into());
        }
        Some(_) => {}
    }
    let list = job
        .get_mut("relabel_configs")
        .and_then(Node::as_seq_mut)
        .expect("relabel_configs was just ensured to be a list");
    if list.last().is_some_and(|last| last.to_json() == *rule_json) {
        return Ok(false);
    }
    // A copy earlier in the list (a labelmap was added after it): move it to the end.
    list.retain(|r| r.to_json() != *rule_json);
    list.push(rule.clone());
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
