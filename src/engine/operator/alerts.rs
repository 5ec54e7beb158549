//! The federation alert group (`federationAlerts`) as a PrometheusRule object, for a hub whose
//! Prometheus the operator configures: there is no rule file to write it into. It goes with
//! the ScrapeConfig objects (`render --scrape-configs`), in their namespace and with their
//! labels (kube-prometheus-stack's `ruleSelector` and `scrapeConfigSelector` are both
//! `release: <release>`). Its group is the one the PrometheusRule rewrite leaves as written, so
//! the webhook lets it through unchanged.

use serde_json::json;

use super::scrape_config::{metadata, object_name};
use crate::config::Config;
use crate::yaml::Node;

/// The PrometheusRule holding `group`, the engine's federation alert group.
pub fn object(config: &Config, group: &Node) -> Node {
    let metadata = metadata(config, &object_name(&config.federation_alerts.group));
    Node::from_json(&json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": {"groups": [group.to_json()]},
    }))
}
