//! The federation alert group (`federationAlerts`) as a PrometheusRule object, for a hub whose
//! Prometheus the operator configures: there is no rule file to write it into. It goes with
//! the ScrapeConfig objects (`render --scrape-configs`), in their namespace and with their
//! labels (kube-prometheus-stack's `ruleSelector` and `scrapeConfigSelector` are both
//! `release: <release>`). Its group is the one the PrometheusRule rewrite leaves as written, so
//! the webhook lets it through unchanged.

use serde_json::{Map, Value as Json, json};

use super::scrape_config::object_name;
use crate::config::Config;
use crate::yaml::Node;

/// The PrometheusRule holding `group`, the engine's federation alert group.
pub fn object(config: &Config, group: &Node) -> Node {
    let settings = &config.operator.scrape_configs;
    let mut metadata = Map::new();
    metadata.insert(
        "name".into(),
        json!(object_name(&config.federation_alerts.group)),
    );
    if let Some(namespace) = &settings.namespace {
        metadata.insert("namespace".into(), json!(namespace));
    }
    let mut labels = Map::new();
    labels.insert("app.kubernetes.io/managed-by".into(), json!("promfed"));
    for (k, v) in &settings.labels {
        labels.insert(k.clone(), json!(v));
    }
    metadata.insert("labels".into(), Json::Object(labels));
    Node::from_json(&json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": {"groups": [group.to_json()]},
    }))
}
