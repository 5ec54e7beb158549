//! Federation scrape jobs, built once from the config, and their health alerts.
//!
//! With `honor_labels: true` a federated series keeps the labels the workload Prometheus sent,
//! so a workload whose external labels say `cluster: local` would pose as the tools cluster.
//! Every federation job therefore forces the cluster label with `metric_relabel_configs`,
//! which run after the scraped and target labels are merged:
//! - a job whose static targets all belong to one cluster sets the label to that literal value;
//!   a raw job with static targets of several clusters is split into one such job per cluster;
//! - a job that discovers its targets copies each target's cluster into the temporary target
//!   label [`TEMP_LABEL`] and forces it from there (spoofable by a workload that exports that
//!   label, which promfed warns about).

use serde_json::{Value as Json, json};

use super::{Location, Warning};
use crate::config::{Cluster, Config, ConfigError, ConfigErrorKind};
use crate::prometheus::schema::{self, Problem};
use crate::yaml::Node;

/// Target label that carries a discovered target's cluster into `metric_relabel_configs`
/// (non-reserved: labels starting with `__` are gone by then). Dropped from the scraped series;
/// the target's own `up` and `scrape_*` series keep it, as metric relabeling does not see them.
pub const TEMP_LABEL: &str = "promfed_cluster";

/// The federation jobs, final form, and what to warn about them.
#[derive(Debug, Clone, Default)]
pub struct Federation {
    pub jobs: Vec<Job>,
    pub warnings: Vec<Warning>,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub node: Node,
    /// The config setting it comes from, e.g. `clusters[1]`.
    pub source: String,
}

impl Federation {
    pub fn from_config(config: &Config) -> Result<Federation, ConfigError> {
        let label = &config.cluster_label_name;
        let mut federation = Federation::default();
        for (i, raw) in config.additional_scrape_configs.iter().enumerate() {
            let source = format!("additionalScrapeConfigs[{i}]");
            let job_name = raw
                .get("job_name")
                .and_then(Node::scalar_text)
                .filter(|n| !n.is_empty());
            let job = job_name.map(|name| format!("job {name:?}"));
            let problem =
                |kind, p: Problem| ConfigError::problem(kind, &source, &p, job.as_deref());
            schema::check(raw, &schema::SCRAPE_CONFIG)
                .map_err(|p| problem(ConfigErrorKind::Value, p))?;
            not_local(raw, label, &config.local_cluster_name)
                .map_err(|p| problem(ConfigErrorKind::Federation, p))?;
            let (jobs, warning) = raw_jobs(raw, label, &source).map_err(|reason| {
                ConfigError::at(ConfigErrorKind::Federation, &source, Some(raw.line), reason)
            })?;
            for job in jobs {
                federation.push(job)?;
            }
            if let Some(message) = warning {
                federation.warnings.push(Warning {
                    location: Location {
                        key: "prometheus.yml".into(),
                        ..Location::default()
                    },
                    message,
                });
            }
        }
        for (i, cluster) in config.clusters.iter().enumerate() {
            let source = format!("clusters[{i}]");
            let job = cluster_job(cluster, &config.federation_job_prefix, label, &source).map_err(
                |reason| ConfigError::at(ConfigErrorKind::Federation, &source, None, reason),
            )?;
            federation.push(job)?;
        }
        for job in &federation.jobs {
            // What promfed writes must load: the jobs as generated are checked again (this
            // also catches settings that conflict only together, like two kinds of auth).
            schema::check(&job.node, &schema::SCRAPE_CONFIG).map_err(|p| {
                ConfigError::at(
                    ConfigErrorKind::Output,
                    &job.source,
                    None,
                    format!(
                        "the scrape config {:?} made from it would not load in Prometheus: {}",
                        job.name,
                        p.describe("")
                    ),
                )
            })?;
            federation.warnings.extend(inline_secrets(job));
        }
        Ok(federation)
    }

    fn push(&mut self, job: Job) -> Result<(), ConfigError> {
        if self.jobs.iter().any(|j| j.name == job.name) {
            return Err(ConfigError::message(
                ConfigErrorKind::Federation,
                format!("federation job {:?} is defined twice", job.name),
            )
            .with_path(job.source));
        }
        self.jobs.push(job);
        Ok(())
    }

    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The health alert group for these jobs (seed 000's alerts), or None without jobs.
    pub fn alert_group(&self, config: &Config) -> Option<Node> {
        if self.jobs.is_empty() {
            return None;
        }
        let settings = &config.federation_alerts;
        let jobs = self
            .jobs
            .iter()
            .map(|j| regex_escape(&j.name))
            .collect::<Vec<_>>()
            .join("|");
        let selector = format!("{{job=~\"{}\"}}", crate::promql::escape_string(&jobs));
        let group = json!({
            "name": settings.group,
            "rules": [
                {
                    "alert": "FederationTargetDown",
                    "expr": format!("up{selector} == 0"),
                    "for": settings.down_for,
                    "labels": {"severity": "critical"},
                    "annotations": {
                        "summary": "Federation target {{ $labels.instance }} is down",
                        "description": "Cannot federate metrics of cluster {{ $labels.cluster }} from {{ $labels.instance }}."
                    }
                },
                {
                    "alert": "FederationScrapeSlow",
                    "expr": format!("scrape_duration_seconds{selector} > {}", settings.slow_scrape_seconds),
                    "for": "10m",
                    "labels": {"severity": settings.severity},
                    "annotations": {
                        "summary": "Federation scrape is slow",
                        "description": "Federating cluster {{ $labels.cluster }} from {{ $labels.instance }} takes {{ $value }}s."
                    }
                },
                {
                    "alert": "FederationTooManySamples",
                    "expr": format!("scrape_samples_scraped{selector} > {}", settings.max_samples),
                    "for": "10m",
                    "labels": {"severity": settings.severity},
                    "annotations": {
                        "summary": "Federation scrape returns too many samples",
                        "description": "Federating cluster {{ $labels.cluster }} from {{ $labels.instance }} returns {{ $value }} samples."
                    }
                }
            ]
        });
        Some(Node::from_json(&group))
    }
}

/// A job from `additionalScrapeConfigs`: validated, then the cluster label is forced.
///
/// A job with static targets of several clusters (the seed's `federation` job) becomes one job
/// per cluster, `<job_name>-<cluster>`, each forcing its literal cluster: a single job could
/// only force the cluster from a target label, and with `honor_labels: true` a scraped label of
/// the same name would win. Only jobs that discover their targets take that route, with a
/// warning.
fn raw_jobs(raw: &Node, label: &str, source: &str) -> Result<(Vec<Job>, Option<String>), String> {
    let json = raw.to_json();
    let Some(map) = json.as_object() else {
        return Err("must be a scrape config mapping".into());
    };
    let name = map
        .get("job_name")
        .and_then(Json::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("has no job_name")?
        .to_string();
    // Each static target group's cluster, in order.
    let mut groups: Vec<String> = Vec::new();
    let statics = map.get("static_configs").and_then(Json::as_array);
    for group in statics.into_iter().flatten() {
        let targets = group.get("targets").cloned().unwrap_or(Json::Null);
        match group
            .get("labels")
            .and_then(|l| l.get(label))
            .and_then(Json::as_str)
        {
            Some(value) if !value.is_empty() => groups.push(value.to_string()),
            _ => {
                return Err(format!(
                    "scrape config {name:?} for targets {targets} does not have a label {label:?}"
                ));
            }
        }
    }
    let mut clusters: Vec<String> = Vec::new();
    for cluster in &groups {
        if !clusters.contains(cluster) {
            clusters.push(cluster.clone());
        }
    }
    let discovered = map
        .keys()
        .any(|k| k.ends_with("_sd_configs") && k != "static_configs");
    if discovered {
        let relabels_cluster = map
            .get("relabel_configs")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .any(|r| r.get("target_label").and_then(Json::as_str) == Some(label));
        if !relabels_cluster {
            return Err(format!(
                "scrape config {name:?} discovers its targets but no relabel_configs rule sets \
                 the {label:?} label: every federated target needs one"
            ));
        }
        let mut node = raw.clone();
        append(
            &mut node,
            "relabel_configs",
            vec![json!({"source_labels": [label], "target_label": TEMP_LABEL})],
        )?;
        append(
            &mut node,
            "metric_relabel_configs",
            vec![
                json!({"source_labels": [TEMP_LABEL], "regex": "(.+)", "target_label": label}),
                json!({"action": "labeldrop", "regex": TEMP_LABEL}),
            ],
        )?;
        let warning = format!(
            "job {name:?} discovers its targets, so their cluster can only be forced from the \
             target label {TEMP_LABEL}: a workload whose series carry that label could choose \
             its cluster; prefer static targets or one `clusters` entry per cluster"
        );
        let source = source.to_string();
        return Ok((vec![Job { name, node, source }], Some(warning)));
    }
    if clusters.is_empty() {
        return Err(format!(
            "scrape config {name:?} has no targets with a {label:?} label"
        ));
    }
    let mut jobs = Vec::new();
    for cluster in &clusters {
        let mut node = raw.clone();
        if clusters.len() > 1 {
            node.insert("job_name", Node::string(format!("{name}-{cluster}")));
            if let Some(list) = node.get_mut("static_configs").and_then(Node::as_seq_mut) {
                let mut index = 0;
                list.retain(|_| {
                    index += 1;
                    groups[index - 1] == *cluster
                });
            }
        }
        append(
            &mut node,
            "metric_relabel_configs",
            vec![json!({"target_label": label, "replacement": cluster})],
        )?;
        let job_name = node
            .get("job_name")
            .and_then(Node::as_str)
            .unwrap_or_default()
            .to_string();
        jobs.push(Job {
            name: job_name,
            node,
            source: source.to_string(),
        });
    }
    Ok((jobs, None))
}

/// Append relabel rules to the list under `key`, creating it when absent.
fn append(node: &mut Node, key: &str, rules: Vec<Json>) -> Result<(), String> {
    let rules: Vec<Node> = rules.iter().map(Node::from_json).collect();
    match node.get_mut(key) {
        Some(existing) if existing.is_null() => *existing = Node::from_json(&Json::Array(vec![])),
        Some(existing) if existing.as_seq().is_none() => {
            return Err(format!("{key} must be a list"));
        }
        Some(_) => {}
        None => node.insert(key, Node::from_json(&Json::Array(vec![]))),
    }
    let list = node
        .get_mut(key)
        .and_then(Node::as_seq_mut)
        .expect("list was just ensured");
    list.extend(rules);
    Ok(())
}

/// A job generated from the compact `clusters:` form: one job per cluster, label forced to the
/// literal cluster name.
fn cluster_job(cluster: &Cluster, prefix: &str, label: &str, source: &str) -> Result<Job, String> {
    if cluster.name.is_empty() {
        return Err("name must not be empty".into());
    }
    let name = format!("{prefix}{}", cluster.name);
    let (scheme, targets, path) = match (&cluster.url, cluster.targets.is_empty()) {
        (Some(url), true) => {
            let (scheme, rest) = url
                .split_once("://")
                .ok_or_else(|| format!("url {url:?} must look like https://host[:port][/path]"))?;
            if scheme != "http" && scheme != "https" {
                return Err(format!("url {url:?}: scheme must be http or https"));
            }
            let (host, path) = match rest.find('/') {
                Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
                None => (rest, ""),
            };
            if host.is_empty() {
                return Err(format!("url {url:?} has no host"));
            }
            (
                Some(scheme.to_string()),
                vec![host.to_string()],
                format!("{path}/federate"),
            )
        }
        (None, false) => (None, cluster.targets.clone(), "/federate".to_string()),
        (Some(_), false) => return Err("give either targets or url, not both".into()),
        (None, true) => return Err("needs targets or url".into()),
    };
    let scheme = cluster.scheme.clone().or(scheme);
    let path = cluster.metrics_path.clone().unwrap_or(path);
    let matches = cluster
        .matches
        .clone()
        .unwrap_or_else(|| vec![r#"{__name__!=""}"#.to_string()]);
    if matches.is_empty() {
        return Err("match must list at least one selector".into());
    }
    for m in &matches {
        crate::promql::parse(m).map_err(|e| format!("match {m:?}: {e}"))?;
    }

    let mut job = serde_json::Map::new();
    job.insert("job_name".into(), json!(name));
    job.insert("honor_labels".into(), json!(true));
    job.insert("metrics_path".into(), json!(path));
    if let Some(scheme) = scheme {
        job.insert("scheme".into(), json!(scheme));
    }
    job.insert("params".into(), json!({"match[]": matches}));
    let optional = [
        (
            "scrape_interval",
            cluster.scrape_interval.clone().map(Json::from),
        ),
        (
            "scrape_timeout",
            cluster.scrape_timeout.clone().map(Json::from),
        ),
        ("sample_limit", cluster.sample_limit.map(Json::from)),
        ("proxy_url", cluster.proxy_url.clone().map(Json::from)),
        ("tls_config", cluster.tls_config.clone()),
        ("basic_auth", cluster.basic_auth.clone()),
        ("authorization", cluster.authorization.clone()),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            job.insert(key.into(), value);
        }
    }
    let mut labels = serde_json::Map::new();
    labels.insert(label.to_string(), json!(cluster.name));
    for (k, v) in &cluster.labels {
        if k != label {
            labels.insert(k.clone(), json!(v));
        }
    }
    job.insert(
        "static_configs".into(),
        json!([{"targets": targets, "labels": labels}]),
    );
    job.insert(
        "metric_relabel_configs".into(),
        json!([{"target_label": label, "replacement": cluster.name}]),
    );
    Ok(Job {
        name,
        node: Node::from_json(&Json::Object(job)),
        source: source.to_string(),
    })
}

/// A raw job must not make a workload cluster pass for the local one: no static target group
/// labelled with the local cluster's name, no relabel rule that writes it literally.
fn not_local(raw: &Node, label: &str, local: &str) -> Result<(), Problem> {
    let impersonates = |line: usize, path: String| Problem {
        path,
        line,
        message: format!(
            "{local:?} is the localClusterName: a workload cluster must not take the local \
             cluster's name (its series would pass for local ones and feed the local recording \
             rules)"
        ),
    };
    let groups = raw.get("static_configs").and_then(Node::as_seq);
    for (i, group) in groups.into_iter().flatten().enumerate() {
        if let Some(value) = group.get("labels").and_then(|l| l.get(label))
            && value.scalar_text() == Some(local)
        {
            return Err(impersonates(
                value.line,
                format!("static_configs[{i}].labels.{label}"),
            ));
        }
    }
    let rules = raw.get("relabel_configs").and_then(Node::as_seq);
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        let field = |key: &str| rule.get(key).and_then(Node::scalar_text);
        let replaces = field("action").is_none_or(|a| a.eq_ignore_ascii_case("replace"));
        if replaces && field("target_label") == Some(label) && field("replacement") == Some(local) {
            let line = rule.get("replacement").map_or(rule.line, |n| n.line);
            return Err(impersonates(
                line,
                format!("relabel_configs[{i}].replacement"),
            ));
        }
    }
    Ok(())
}

/// Inline secrets in a federation job: they end up in a ConfigMap anyone with read access sees.
fn inline_secrets(job: &Job) -> Vec<Warning> {
    let json = job.node.to_json();
    let mut out = Vec::new();
    let checks = [
        ("basic_auth", "password", "password_file"),
        ("authorization", "credentials", "credentials_file"),
    ];
    for (section, field, instead) in checks {
        if json.get(section).and_then(|s| s.get(field)).is_some() {
            out.push(Warning {
                location: Location {
                    key: "prometheus.yml".into(),
                    item: Some(format!("job {:?}", job.name)),
                    ..Location::default()
                },
                message: format!(
                    "{section}.{field} is inline and readable by anyone who can read the ConfigMap; \
                     mount a Secret and use {section}.{instead}"
                ),
            });
        }
    }
    out
}

/// Escape a literal for an RE2 pattern.
pub(crate) fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
