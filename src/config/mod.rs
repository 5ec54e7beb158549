//! The promfed config file (`promfed.yaml`), validated once when it is loaded.
//!
//! The seed's ytt data-values file (`localClusterName`, `clusterLabelName`,
//! `additionalScrapeConfigs`) is accepted unchanged; everything else is optional. Which
//! objects it selects, and the webhook's `matchConditions` that say so, are in `selector.rs`.

mod error;
mod selector;

pub mod operator;

use std::collections::BTreeMap;

use serde::Deserialize;

pub use operator::{Operator, ScrapeConfigObjects};

use crate::prometheus::schema::{self, Problem};
use crate::prometheus::{duration, is_label_name, is_user_label_name};
use crate::yaml::{self, Limits, Node};
pub use error::{ConfigError, ConfigErrorKind};
pub use selector::{MatchCondition, OPT_OUT_LABEL, ObjectSelector, Selector, opted_out};

/// What to do with a selector that already has a matcher on the cluster label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MatcherPolicy {
    /// Leave the user's matcher as it is and report a warning.
    #[default]
    Keep,
    /// Replace it with `<label>="<local>"`.
    Override,
    /// Refuse the ConfigMap.
    Error,
}

/// How alerting rules are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AlertingMode {
    /// Alerts see every cluster's series, as before federation (default).
    #[default]
    Keep,
    /// Alerts read local series only and carry the local cluster label, like recording rules.
    Local,
    /// Alerts carry the local cluster label; their expressions are untouched.
    LabelOnly,
}

/// Which data keys hold what.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Keys {
    /// Keys holding a Prometheus config (default `[prometheus.yml]`).
    #[serde(default = "default_config_keys")]
    pub prometheus: Vec<String>,
    /// Keys holding rule files. Empty (default): every other key whose YAML has `groups:`.
    #[serde(default)]
    pub rules: Vec<String>,
}

fn default_config_keys() -> Vec<String> {
    vec!["prometheus.yml".into()]
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            prometheus: default_config_keys(),
            rules: Vec::new(),
        }
    }
}

/// A rule or group left exactly as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exclude {
    /// Group name; alone, the whole group is skipped.
    #[serde(default)]
    pub group: Option<String>,
    /// `record` or `alert` name; with `group`, only in that group.
    #[serde(default)]
    pub rule: Option<String>,
}

impl Exclude {
    pub fn matches(&self, group: &str, rule: Option<&str>) -> bool {
        let group_ok = self.group.as_deref().is_none_or(|g| g == group);
        let rule_ok = match (&self.rule, rule) {
            (None, _) => true,
            (Some(want), Some(name)) => want == name,
            (Some(_), None) => false,
        };
        group_ok && rule_ok
    }
}

/// Settings for rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rules {
    /// What to do with a selector that already matches on the cluster label.
    #[serde(default)]
    pub matcher_policy: MatcherPolicy,
    /// How alerting rules are treated.
    #[serde(default)]
    pub alerting: AlertingMode,
    /// Groups or rules left untouched.
    #[serde(default)]
    pub exclude: Vec<Exclude>,
}

/// The generated federation health alerts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FederationAlerts {
    #[serde(default)]
    pub enabled: bool,
    /// Data key the group is written to (it must be listed in `rule_files`).
    #[serde(default = "default_alerts_key")]
    pub key: String,
    /// Group name; an existing group of that name is replaced.
    #[serde(default = "default_alerts_group")]
    pub group: String,
    /// How long a federation target must be down before `FederationTargetDown` fires.
    #[serde(default = "default_down_for")]
    pub down_for: String,
    /// Scrape duration in seconds above which `FederationScrapeSlow` fires.
    #[serde(default = "default_slow_seconds")]
    pub slow_scrape_seconds: f64,
    /// Samples per scrape above which `FederationTooManySamples` fires.
    #[serde(default = "default_max_samples")]
    pub max_samples: u64,
    /// `severity` label of the alerts that are not about a target being down.
    #[serde(default = "default_severity")]
    pub severity: String,
}

fn default_alerts_key() -> String {
    "alerting_rules.yml".into()
}
fn default_alerts_group() -> String {
    "promfed-federation-health".into()
}
fn default_down_for() -> String {
    "5m".into()
}
fn default_slow_seconds() -> f64 {
    30.0
}
fn default_max_samples() -> u64 {
    100_000
}
fn default_severity() -> String {
    "warning".into()
}

impl Default for FederationAlerts {
    fn default() -> Self {
        FederationAlerts {
            enabled: false,
            key: default_alerts_key(),
            group: default_alerts_group(),
            down_for: default_down_for(),
            slow_scrape_seconds: default_slow_seconds(),
            max_samples: default_max_samples(),
            severity: default_severity(),
        }
    }
}

/// One workload cluster in the compact form; promfed generates its federation job.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Cluster {
    pub name: String,
    /// `host:port` targets of the workload cluster's Prometheus.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Alternative to `targets`: `https://host[:port][/path-prefix]`; sets scheme, target and
    /// metrics path (`<path-prefix>/federate`).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub metrics_path: Option<String>,
    #[serde(default)]
    pub tls_config: Option<serde_json::Value>,
    #[serde(default)]
    pub basic_auth: Option<serde_json::Value>,
    #[serde(default)]
    pub authorization: Option<serde_json::Value>,
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// `match[]` selectors (default `['{__name__!=""}']`: everything).
    #[serde(default, rename = "match")]
    pub matches: Option<Vec<String>>,
    #[serde(default)]
    pub scrape_interval: Option<String>,
    #[serde(default)]
    pub scrape_timeout: Option<String>,
    #[serde(default)]
    pub sample_limit: Option<u64>,
    /// Extra target labels (the cluster label is always set).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The typed part of the file; `additionalScrapeConfigs` is kept as YAML nodes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    local_cluster_name: Option<String>,
    #[serde(default)]
    cluster_label_name: Option<String>,
    /// Taken from the YAML nodes instead (to keep how each scalar was written); named here
    /// so the strict deserialisation accepts it.
    #[serde(default)]
    #[allow(dead_code)]
    additional_scrape_configs: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    clusters: Vec<Cluster>,
    #[serde(default)]
    federation_job_prefix: Option<String>,
    #[serde(default)]
    configmap: Selector,
    #[serde(default)]
    keys: Keys,
    #[serde(default)]
    rules: Rules,
    #[serde(default)]
    federation_alerts: FederationAlerts,
    #[serde(default)]
    operator: Operator,
    #[serde(default)]
    prometheus_rule: ObjectSelector,
    #[serde(default)]
    prometheus: ObjectSelector,
}

/// The whole promfed config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Value of the cluster label on local series (default `local`).
    pub local_cluster_name: String,
    /// Name of the cluster label (default `cluster`).
    pub cluster_label_name: String,
    /// Raw federation scrape configs, exactly as written.
    pub additional_scrape_configs: Vec<Node>,
    /// Compact federation targets.
    pub clusters: Vec<Cluster>,
    /// Prefix of the job names generated from `clusters` (default `federate-`).
    pub federation_job_prefix: String,
    pub configmap: Selector,
    pub keys: Keys,
    pub rules: Rules,
    pub federation_alerts: FederationAlerts,
    /// prometheus-operator's objects promfed writes.
    pub operator: Operator,
    /// Which PrometheusRule objects are rewritten.
    pub prometheus_rule: ObjectSelector,
    /// Which Prometheus objects are rewritten.
    pub prometheus: ObjectSelector,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            local_cluster_name: "local".into(),
            cluster_label_name: "cluster".into(),
            additional_scrape_configs: Vec::new(),
            clusters: Vec::new(),
            federation_job_prefix: "federate-".into(),
            configmap: Selector::default(),
            keys: Keys::default(),
            rules: Rules::default(),
            federation_alerts: FederationAlerts::default(),
            operator: Operator::default(),
            prometheus_rule: ObjectSelector::default(),
            prometheus: ObjectSelector::default(),
        }
    }
}

/// The example config embedded in the binary: the seed's data values.
pub const EXAMPLE: &str = include_str!("../../deploy/base/promfed.yaml");

impl Config {
    /// Parse and validate a config file's text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let root = yaml::parse(text, Limits::default()).map_err(|e| {
            ConfigError::message(
                ConfigErrorKind::Yaml,
                format!("config is not valid YAML: {e}"),
            )
            .with_line(Some(e.line))
        })?;
        let Some(root) = root else {
            return Ok(Config::default());
        };
        if root.is_null() {
            return Ok(Config::default());
        }
        if root.as_map().is_none() {
            return Err(ConfigError::message(
                ConfigErrorKind::Shape,
                format!("line {}: config must be a mapping of settings", root.line),
            )
            .with_line(Some(root.line)));
        }
        let raw: Raw = serde_path_to_error::deserialize(root.to_json()).map_err(|e| {
            let path = e.path().to_string();
            let line = line_of(&root, &path);
            let at = error::setting_at(&path, line);
            ConfigError::message(
                ConfigErrorKind::Setting,
                format!("invalid setting {at}: {}", e.inner()),
            )
            .with_path(path)
            .with_line(line)
        })?;
        let additional = match root.get("additionalScrapeConfigs") {
            None => Vec::new(),
            Some(node) if node.is_null() => Vec::new(),
            Some(node) => node.as_seq().cloned().ok_or_else(|| {
                ConfigError::at(
                    ConfigErrorKind::Shape,
                    "additionalScrapeConfigs",
                    Some(node.line),
                    "must be a list of scrape configs",
                )
            })?,
        };
        let config = Config {
            local_cluster_name: non_empty(raw.local_cluster_name).unwrap_or_else(|| "local".into()),
            cluster_label_name: non_empty(raw.cluster_label_name)
                .unwrap_or_else(|| "cluster".into()),
            additional_scrape_configs: additional,
            clusters: raw.clusters,
            federation_job_prefix: raw
                .federation_job_prefix
                .unwrap_or_else(|| "federate-".into()),
            configmap: raw.configmap,
            keys: raw.keys,
            rules: raw.rules,
            federation_alerts: raw.federation_alerts,
            operator: raw.operator,
            prometheus_rule: raw.prometheus_rule,
            prometheus: raw.prometheus,
        };
        config.validate(&root)?;
        Ok(config)
    }

    /// Everything promfed takes from the config must be something Prometheus (and Kubernetes)
    /// accept where promfed writes it; the message names the setting and its line.
    fn validate(&self, root: &Node) -> Result<(), ConfigError> {
        let at = |path: &str, reason: String| {
            ConfigError::at(ConfigErrorKind::Value, path, line_of(root, path), reason)
        };
        if !is_user_label_name(&self.cluster_label_name) {
            return Err(at(
                "clusterLabelName",
                format!(
                    "{:?} is not a valid, non-reserved Prometheus label name \
                     ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)",
                    self.cluster_label_name
                ),
            ));
        }
        let alerts = &self.federation_alerts;
        if !(alerts.slow_scrape_seconds.is_finite() && alerts.slow_scrape_seconds > 0.0) {
            // The one message without a colon after the setting.
            let path = "federationAlerts.slowScrapeSeconds";
            let line = line_of(root, path);
            let at = error::setting_at(path, line);
            return Err(ConfigError::message(
                ConfigErrorKind::Value,
                format!("{at} must be a positive number"),
            )
            .with_path(path)
            .with_line(line));
        }
        duration::parse(&alerts.down_for)
            .map_err(|e| at("federationAlerts.downFor", e.to_string()))?;
        if alerts.group.is_empty() {
            return Err(at(
                "federationAlerts.group",
                "a rule group needs a name".into(),
            ));
        }
        if !is_configmap_key(&alerts.key) {
            return Err(at(
                "federationAlerts.key",
                format!(
                    "{:?} is not a valid ConfigMap data key ([-._a-zA-Z0-9]+)",
                    alerts.key
                ),
            ));
        }
        if self.keys.prometheus.is_empty() {
            return Err(ConfigError::message(
                ConfigErrorKind::Value,
                "keys.prometheus must name at least one data key (it is what makes a ConfigMap \
                 a Prometheus server's)",
            )
            .with_path("keys.prometheus"));
        }
        let problem = (self.operator.problem())
            .or_else(|| self.prometheus_rule.problem("prometheusRule"))
            .or_else(|| self.prometheus.problem("prometheus"));
        if let Some((path, problem)) = problem {
            return Err(at(&path, problem));
        }
        for (i, cluster) in self.clusters.iter().enumerate() {
            let node = root
                .get("clusters")
                .and_then(Node::as_seq)
                .and_then(|list| list.get(i));
            self.validate_cluster(cluster, node).map_err(|p| {
                ConfigError::problem(ConfigErrorKind::Value, &format!("clusters[{i}]"), &p, None)
            })?;
        }
        Ok(())
    }

    /// One `clusters` entry, with its YAML node for the lines of its fields.
    fn validate_cluster(&self, cluster: &Cluster, node: Option<&Node>) -> Result<(), Problem> {
        let line = |key: &str| node.and_then(|n| n.get(key)).or(node).map_or(0, |n| n.line);
        let fail = |key: &str, message: String| Problem {
            path: key.to_string(),
            line: line(key),
            message,
        };
        if cluster.name.is_empty() {
            return Err(fail("name", "must not be empty".into()));
        }
        if cluster.name == self.local_cluster_name {
            return Err(fail(
                "name",
                format!(
                    "{:?} is the localClusterName: a workload cluster must not take the local \
                     cluster's name (its series would pass for local ones and feed the local \
                     recording rules)",
                    cluster.name
                ),
            ));
        }
        if let Some(scheme) = &cluster.scheme
            && scheme != "http"
            && scheme != "https"
        {
            return Err(fail(
                "scheme",
                format!("{scheme:?} is not a scheme Prometheus scrapes: http or https"),
            ));
        }
        for (i, target) in cluster.targets.iter().enumerate() {
            if target.is_empty() || target.contains('/') {
                return Err(Problem {
                    path: format!("targets[{i}]"),
                    line: line("targets"),
                    message: format!(
                        "{target:?} is not host:port (for a path or scheme, give url instead)"
                    ),
                });
            }
        }
        for name in cluster.labels.keys() {
            if !is_label_name(name) {
                return Err(Problem {
                    path: format!("labels.{name}"),
                    line: line("labels"),
                    message: schema::label_name_error(name),
                });
            }
        }
        // The fields copied into the generated scrape config, checked as Prometheus reads them.
        if let Some(node) = node {
            for (key, kind) in [
                ("scrape_interval", schema::Kind::Duration),
                ("scrape_timeout", schema::Kind::Duration),
                ("tls_config", schema::Kind::Struct(&schema::TLS_CONFIG)),
                ("basic_auth", schema::Kind::Struct(&schema::BASIC_AUTH)),
                (
                    "authorization",
                    schema::Kind::Struct(&schema::AUTHORIZATION),
                ),
            ] {
                if let Some(value) = node.get(key) {
                    schema::check_value(value, kind, key)?;
                }
            }
            schema::check_timeout(
                node,
                (
                    schema::DEFAULT_SCRAPE_INTERVAL,
                    "Prometheus' default global scrape_interval",
                ),
            )?;
        }
        Ok(())
    }
}

/// A Kubernetes ConfigMap data key.
fn is_configmap_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// Best-effort line of a dotted serde path (`rules.matcherPolicy`, `clusters[0].name`).
fn line_of(root: &Node, path: &str) -> Option<usize> {
    let mut node = root;
    let mut line = None;
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            node = node.get(key)?;
            line = Some(node.line);
        }
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            node = node.as_seq()?.get(index.parse::<usize>().ok()?)?;
            line = Some(node.line);
        }
    }
    line
}
