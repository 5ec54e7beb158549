//! prometheus-operator's objects, rewritten by the same engine as a ConfigMap.
//!
//! Each function takes the part of the object promfed changes (a `spec`, as a YAML node: the
//! admission path turns the object's JSON into one with [`Node::from_json`], render has it
//! from the stream with every scalar's style) and changes it in place, or makes new objects:
//! - [`Engine::rewrite_prometheus_rule`]: a PrometheusRule's `spec.groups`, exactly as a rule
//!   file in a ConfigMap (`rule.rs`);
//! - [`Engine::rewrite_prometheus`]: a Prometheus object's `spec.scrapeClasses`, so the hub's
//!   own series carry `cluster=<local>` (`prometheus.rs`);
//! - [`Engine::scrape_configs`]: the federation jobs as ScrapeConfig objects
//!   (`scrape_config.rs`), and the federation alert group as a PrometheusRule (`alerts.rs`).

pub mod alerts;
pub mod prometheus;
pub mod rule;
pub mod scrape_config;

use super::{Engine, Error, ErrorKind, Location, Stats, Warning, Work};
use crate::yaml::Node;

/// An error about one object (`object` takes the place of a ConfigMap's data key), the one
/// place these modules make an [`Error`].
fn error(object: &str, item: Option<String>, line: usize, reason: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::Shape,
        Location {
            key: object.to_string(),
            group: None,
            item,
            line: Some(line).filter(|l| *l > 0),
        },
        reason,
    )
}

/// What rewriting one object did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the node was changed (an unchanged object gets no patch).
    pub changed: bool,
    pub warnings: Vec<Warning>,
    pub stats: Stats,
}

impl Engine {
    /// Rewrite a PrometheusRule's `spec` in place: its groups are a rule file's. `object`
    /// names it in errors and warnings, e.g. `PrometheusRule monitoring/node-rules`.
    pub fn rewrite_prometheus_rule(
        &self,
        spec: &mut Node,
        object: &str,
        work: &mut Work,
    ) -> Result<Outcome, Error> {
        let owned_group =
            (self.alert_group.as_ref()).map(|_| self.config.federation_alerts.group.as_str());
        rule::rewrite(spec, object, &self.config, &self.scoper, owned_group, work)
    }

    /// Rewrite a Prometheus object's `spec` in place: the default scrape class labels every
    /// target and forces the label on every sample; with federation jobs, the scrape class
    /// the ScrapeConfig objects of [`Engine::scrape_configs`] name is there too.
    pub fn rewrite_prometheus(&self, spec: &mut Node, object: &str) -> Result<Outcome, Error> {
        prometheus::rewrite(spec, object, &self.config, !self.federation.jobs.is_empty())
    }

    /// One ScrapeConfig object (`monitoring.coreos.com/v1alpha1`) per federation job, in the
    /// order of [`Engine::federation_jobs`].
    pub fn scrape_configs(&self) -> Result<Vec<Node>, Error> {
        scrape_config::objects(&self.config, &self.federation)
    }

    /// With `federationAlerts.enabled` and federation jobs, the federation alert group as a
    /// PrometheusRule object, which goes with the ScrapeConfig objects.
    pub fn federation_alert_rule(&self) -> Option<Node> {
        (self.alert_group.as_ref()).map(|group| alerts::object(&self.config, group))
    }
}
