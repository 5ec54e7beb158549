//! The rewrite engine: a pure, synchronous function from ConfigMap data to ConfigMap data.
//!
//! The webhook, the CLI and the tests all call [`Engine::rewrite`]; nothing here does I/O.

pub mod federation;
pub mod operator;
pub mod rules;
pub mod scrape;
pub mod work;

use std::fmt;

use crate::config::{Config, ConfigError, ConfigErrorKind};
use crate::object::{Content, ObjectRef, configmap};
use crate::promql::{self, ScopeOp, Scoper};
use crate::yaml;
use federation::Federation;
pub use work::{Work, WorkLimits};

/// Where in the ConfigMap a finding or an error is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The ConfigMap data key, e.g. `recording_rules.yml`.
    pub key: String,
    /// Rule group name, when inside a rule file.
    pub group: Option<String>,
    /// `record "name"`, `alert "name"` or `job "name"`.
    pub item: Option<String>,
    /// 1-based line inside the data value, when known.
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key)?;
        if let Some(group) = &self.group {
            write!(f, ": group {group:?}")?;
        }
        if let Some(item) = &self.item {
            write!(f, ", {item}")?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Input promfed cannot rewrite. The message says where and why; `kind` says what for code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct Error {
    pub kind: ErrorKind,
    pub location: Location,
    pub reason: String,
}

/// What kind of input an [`Error`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A data value that is not valid YAML.
    Yaml,
    /// A value of the wrong shape where promfed must write: a Prometheus config or rule file
    /// that is not a mapping; `scrape_configs`, `relabel_configs`, `groups` or `rules` that
    /// are not lists.
    Shape,
    /// A scrape config without `job_name`, or a federation job whose timeout the
    /// ConfigMap's global interval makes invalid.
    Scrape,
    /// A rule group or rule promfed cannot rewrite: no name, no `expr` or one that is not
    /// a string, neither `record` nor `alert`, labels that are not a mapping.
    Rule,
    /// A rule's PromQL that cannot be parsed or scoped.
    PromQl,
    /// Over the review's work budget, past its deadline, or cancelled ([`Work`]).
    Work,
    /// An object that would be over Kubernetes' size limit for its kind (a ConfigMap's
    /// data, [`crate::object::configmap::MAX_DATA_BYTES`]) before or after the rewrite: the
    /// API server would refuse to store it.
    Size,
}

impl Error {
    pub fn new(kind: ErrorKind, location: Location, reason: impl Into<String>) -> Error {
        Error {
            kind,
            location,
            reason: reason.into(),
        }
    }
}

/// A non-fatal finding: the rewrite went ahead, but the user should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Counts of what a rewrite did, for logs and audit annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub local_jobs_labelled: usize,
    pub federation_jobs: usize,
    pub rules_rewritten: usize,
    pub selectors_scoped: usize,
}

/// The result of a rewrite: every data key in input order, with its new value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rewrite {
    pub data: Vec<(String, String)>,
    pub warnings: Vec<Warning>,
    pub stats: Stats,
}

impl Rewrite {
    /// Keys whose value differs from `input` (or that `input` lacks).
    pub fn changed_keys<'a>(&'a self, input: &[(String, String)]) -> Vec<&'a str> {
        configmap::changed_keys(input, &self.data)
    }
}

/// The result of [`Engine::rewrite_object`]: the object's new content.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewritten {
    pub content: Content,
    pub warnings: Vec<Warning>,
    pub stats: Stats,
}

/// Nesting of a ConfigMap's data values. The nodes and bytes they may expand to are the
/// review's [`Work`] budget, shared by all data keys (a real 1 MiB ConfigMap is about 24,000
/// nodes; 250,000 keep the worst case within the pod's memory limit).
const DATA_DEPTH: usize = 100;

/// A validated config, ready to rewrite any number of ConfigMaps.
#[derive(Debug, Clone)]
pub struct Engine {
    config: Config,
    federation: Federation,
    scoper: Scoper,
    alert_group: Option<yaml::Node>,
}

impl Engine {
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let federation = Federation::from_config(&config)?;
        let scoper = Scoper::new(
            &config.cluster_label_name,
            &config.local_cluster_name,
            ScopeOp::Equal,
            config.rules.matcher_policy,
        );
        let alert_group = if config.federation_alerts.enabled {
            federation.alert_group(&config)
        } else {
            None
        };
        if let Some(group) = &alert_group {
            check_alert_group(group)?;
        }
        Ok(Engine {
            config,
            federation,
            scoper,
            alert_group,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The names of the federation jobs promfed writes, as rendered: a raw job with targets
    /// of several clusters counts as its parts.
    pub fn federation_jobs(&self) -> impl Iterator<Item = &str> {
        self.federation.jobs.iter().map(|job| job.name.as_str())
    }

    /// Warnings about the config itself (inline secrets, discovered federation targets);
    /// every rewrite of a Prometheus config reports them too.
    pub fn config_warnings(&self) -> &[Warning] {
        &self.federation.warnings
    }

    /// Whether promfed rewrites this object (any kind of [`crate::object::Kind`]).
    pub fn matches(&self, object: &ObjectRef) -> bool {
        self.config.selects(object)
    }

    /// Rewrite the data of a matched ConfigMap. Keys and their order are kept; a key is
    /// added only for the federation alerts when it does not exist yet. Within the default
    /// [`WorkLimits`] for the data, without a deadline.
    pub fn rewrite(&self, data: &[(String, String)]) -> Result<Rewrite, Error> {
        self.rewrite_within(data, &mut Work::new(WorkLimits::for_data(data)))
    }

    /// Rewrite the content of a matched object of any kind (see [`crate::object`]): the one
    /// place that says which engine call a kind takes.
    pub fn rewrite_object(&self, content: &Content, work: &mut Work) -> Result<Rewritten, Error> {
        match content {
            Content::ConfigMap(data) => {
                let before = configmap::data_bytes(data);
                if before > configmap::MAX_DATA_BYTES {
                    return Err(size_error(format!(
                        "the ConfigMap's data is {before} bytes, over Kubernetes' limit of {} \
                         bytes for a ConfigMap's data: the API server refuses to store it \
                         whatever promfed does",
                        configmap::MAX_DATA_BYTES
                    )));
                }
                let rewrite = self.rewrite_within(data, work)?;
                let after = configmap::data_bytes(&rewrite.data);
                if after > configmap::MAX_DATA_BYTES {
                    return Err(size_error(format!(
                        "promfed's rewrite would make the ConfigMap's data {after} bytes (it is \
                         {before} bytes now), over Kubernetes' limit of {} bytes for a \
                         ConfigMap's data: the API server would refuse to store it. Keep some \
                         rule files in a ConfigMap of their own, or leave groups out of the \
                         rewrite with rules.exclude",
                        configmap::MAX_DATA_BYTES
                    )));
                }
                Ok(Rewritten {
                    content: Content::ConfigMap(rewrite.data),
                    warnings: rewrite.warnings,
                    stats: rewrite.stats,
                })
            }
            // The spec names the part of the object in errors and warnings; whoever reports
            // them names the object.
            Content::PrometheusRule(spec) => {
                let mut spec = spec.clone();
                let out = self.rewrite_prometheus_rule(&mut spec, "spec", work)?;
                Ok(Rewritten {
                    content: Content::PrometheusRule(spec),
                    warnings: out.warnings,
                    stats: out.stats,
                })
            }
            Content::Prometheus(spec) => {
                let mut spec = spec.clone();
                let out = self.rewrite_prometheus(&mut spec, "spec")?;
                Ok(Rewritten {
                    content: Content::Prometheus(spec),
                    warnings: out.warnings,
                    stats: out.stats,
                })
            }
        }
    }

    /// [`Engine::rewrite`] within `work`'s budget, deadline and cancel flag.
    pub fn rewrite_within(
        &self,
        data: &[(String, String)],
        work: &mut Work,
    ) -> Result<Rewrite, Error> {
        let mut out = Rewrite {
            data: data.to_vec(),
            warnings: Vec::new(),
            stats: Stats::default(),
        };
        let mut memo = rules::Memo::new();
        let mut rule_files = Vec::new();
        let alerts_key = &self.config.federation_alerts.key;
        let owned_group = self
            .alert_group
            .as_ref()
            .map(|_| self.config.federation_alerts.group.as_str());

        for (key, value) in out.data.iter_mut() {
            let is_config = self.config.keys.prometheus.iter().any(|k| k == key);
            let listed_rules = self.config.keys.rules.iter().any(|k| k == key);
            let auto_rules = self.config.keys.rules.is_empty() && value.contains("groups");
            let is_alerts_key = self.alert_group.is_some() && key == alerts_key;
            if !(is_config || listed_rules || auto_rules || is_alerts_key) {
                continue;
            }
            let at_key = |line: Option<usize>| Location {
                key: key.clone(),
                line,
                ..Location::default()
            };
            work.check()
                .map_err(|reason| Error::new(ErrorKind::Work, at_key(None), reason))?;
            // A key that only mentions "groups" is a rule file only if `groups` is one of its
            // top-level keys: anything else is left alone without being expanded.
            let only_auto = auto_rules && !is_config && !listed_rules && !is_alerts_key;
            if only_auto && !yaml::has_top_level_key(value, "groups").unwrap_or(true) {
                continue;
            }
            let parsed = match yaml::parse_placed(value, work.yaml_limits(DATA_DEPTH)) {
                Ok((root, expanded, places)) => {
                    work.spend_yaml(expanded);
                    Ok(root.map(|root| (root, places)))
                }
                Err(e) => {
                    let location = at_key(Some(e.line).filter(|l| *l > 0));
                    Err(match e.over_limit {
                        Some(over) => Error::new(ErrorKind::Work, location, work.yaml_over(over)),
                        None => Error::new(
                            ErrorKind::Yaml,
                            location,
                            format!("not valid YAML: {}", e.message),
                        ),
                    })
                }
            };
            // The tree as read and its places are kept for writing the changed one over the
            // text: the text is not read a second time for that.
            let (original, mut root) = match parsed {
                Ok(Some((root, places))) => (Some((root.clone(), places)), root),
                Ok(None) => (None, yaml::Node::from_json(&serde_json::Value::Null)),
                // A key that merely mentions "groups" need not be YAML, unless its name says
                // it is one (a broken rule file must not slip through unnoticed).
                Err(_) if only_auto && !looks_like_yaml_file(key) => {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut changed = false;
            if is_config {
                changed |= scrape::rewrite(
                    &mut root,
                    key,
                    &self.config,
                    &self.federation,
                    &mut out.stats,
                    &mut out.warnings,
                )?;
                rule_files = scrape::rule_files(&root);
            } else if listed_rules || rules::is_rule_file(&root) {
                let cx = rules::Context {
                    config: &self.config,
                    scoper: &self.scoper,
                    owned_group,
                    memo: &mut memo,
                    work,
                    stats: &mut out.stats,
                    warnings: &mut out.warnings,
                };
                changed |= rules::rewrite(&mut root, key, cx)?;
            }
            if is_alerts_key && let Some(group) = &self.alert_group {
                changed |= rules::upsert_group(&mut root, group)
                    .map_err(|reason| Error::new(ErrorKind::Shape, at_key(None), reason))?;
            }
            if changed {
                *value = match &original {
                    Some((original, places)) => {
                        yaml::emit_in_place_over(value, original, places, &root)
                    }
                    None => yaml::emit_in_place(value, &root),
                };
                work.spend_output(value.len())
                    .map_err(|reason| Error::new(ErrorKind::Work, at_key(None), reason))?;
            }
        }

        if let Some(group) = &self.alert_group
            && !out.data.iter().any(|(k, _)| k == alerts_key)
        {
            let mut root = yaml::Node::from_json(&serde_json::Value::Null);
            rules::upsert_group(&mut root, group).expect("a null document takes a group");
            out.data.push((alerts_key.clone(), yaml::emit(&root)));
        }
        if self.alert_group.is_some()
            && !rule_files.is_empty()
            && !rule_files
                .iter()
                .any(|f| f == alerts_key || f.ends_with(&format!("/{alerts_key}")))
        {
            out.warnings.push(Warning {
                location: Location {
                    key: alerts_key.clone(),
                    ..Location::default()
                },
                message: "federation alerts are written here, but rule_files does not list it"
                    .into(),
            });
        }
        if !self.federation.jobs.is_empty() {
            out.warnings
                .extend(self.federation.warnings.iter().cloned());
        }
        Ok(out)
    }
}

/// An object over Kubernetes' size limit, located at its data.
fn size_error(reason: String) -> Error {
    let location = Location {
        key: "data".into(),
        ..Location::default()
    };
    Error::new(ErrorKind::Size, location, reason)
}

/// The federation alert group must load in Prometheus like everything else promfed writes.
fn check_alert_group(group: &yaml::Node) -> Result<(), ConfigError> {
    let fail = |reason: String| {
        ConfigError::at(
            ConfigErrorKind::Output,
            "federationAlerts",
            None,
            format!("the rule group promfed writes would not load in Prometheus: {reason}"),
        )
    };
    crate::prometheus::schema::check(group, &crate::prometheus::schema::RULE_GROUP)
        .map_err(|p| fail(p.describe("")))?;
    let rules = group.get("rules").and_then(yaml::Node::as_seq);
    for expr in rules.into_iter().flatten().filter_map(|r| r.get("expr")) {
        let text = expr.scalar_text().unwrap_or_default();
        promql::parse(text).map_err(|e| fail(format!("{text:?}: {e}")))?;
    }
    Ok(())
}

/// Data keys whose names say they hold YAML (or JSON) documents.
fn looks_like_yaml_file(key: &str) -> bool {
    [".yml", ".yaml", ".json", ".rules"]
        .iter()
        .any(|ext| key.ends_with(ext))
}
