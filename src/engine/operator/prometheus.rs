//! Prometheus (`monitoring.coreos.com/v1`): the hub's own series get `cluster=<local>`.
//!
//! The operator builds every scrape job from ServiceMonitors, PodMonitors, Probes and
//! ScrapeConfigs; what applies to all of them is the default scrape class
//! (`spec.scrapeClasses[]` with `default: true`): its `relabelings` come before each object's
//! own, its `metricRelabelings` before each object's own. promfed adds to it (or adds a class
//! [`LOCAL_CLASS`] when there is no default):
//! - a relabeling that sets the target label to the local cluster, so `up` and the scrape
//!   series carry it;
//! - metric relabelings that force it on every sample. Under `honorLabels: true` a scraped
//!   `cluster` label beats the target label; these keep a foreign scraped value as
//!   `exported_cluster` (what Prometheus does without `honorLabels`) and leave an
//!   `exported_cluster` that Prometheus already made alone.
//!
//! Every rule says `action: replace`, which the CRD makes the default: the API server stores
//! the rules with it, and a later UPDATE must find promfed's rules as promfed wrote them
//! (otherwise they would be added again on every write).
//!
//! Federation jobs must not get the local label: the ScrapeConfig objects promfed writes name
//! the class [`FEDERATION_CLASS`] (no rules of its own), which is added here when the config
//! has federation jobs, so the default class does not apply to them.
//!
//! The operator puts an object's own `metricRelabelings` after the class's: a ServiceMonitor
//! that sets `cluster` itself still can; promfed sees only the Prometheus object here.

use serde_json::{Value as Json, json};

use super::{Outcome, error};
use crate::config::Config;
use crate::engine::Error;
use crate::engine::federation::regex_escape;
use crate::engine::scrape::ensure_last;
use crate::yaml::Node;

/// The default scrape class promfed adds when the Prometheus object has none.
pub const LOCAL_CLASS: &str = "promfed-local";
/// The scrape class of promfed's federation ScrapeConfig objects.
pub const FEDERATION_CLASS: &str = "promfed-federation";

/// `relabelings` of the default class: every target is local.
pub fn relabelings(config: &Config) -> Vec<Json> {
    vec![json!({
        "sourceLabels": ["__address__"],
        "targetLabel": config.cluster_label_name,
        "replacement": config.local_cluster_name,
        "action": "replace",
    })]
}

/// `metricRelabelings` of the default class: the label is local on every sample, whatever a
/// target exported. In order: a scraped value equal to local is dropped (so only a value a
/// target won with under `honorLabels` is left), such a value is kept as
/// `exported_<label>`, then the label is set. Without `honorLabels` the label is already
/// local and Prometheus' own `exported_<label>` is untouched.
pub fn metric_relabelings(config: &Config) -> Vec<Json> {
    let label = &config.cluster_label_name;
    let local = &config.local_cluster_name;
    vec![
        json!({
            "sourceLabels": [label],
            "regex": regex_escape(local),
            "targetLabel": label,
            "replacement": "",
            "action": "replace",
        }),
        json!({
            "sourceLabels": [label],
            "regex": "(.+)",
            "targetLabel": format!("exported_{label}"),
            "replacement": "$1",
            "action": "replace",
        }),
        json!({"targetLabel": label, "replacement": local, "action": "replace"}),
    ]
}

/// Rewrite a Prometheus object's `spec` in place. `federation`: add [`FEDERATION_CLASS`].
pub fn rewrite(
    spec: &mut Node,
    object: &str,
    config: &Config,
    federation: bool,
) -> Result<Outcome, Error> {
    let fail =
        |item: Option<String>, line: usize, reason: String| error(object, item, line, reason);
    let mut out = Outcome::default();
    if spec.is_null() {
        *spec = Node::from_json(&json!({}));
        out.changed = true;
    }
    if spec.as_map().is_none() {
        return Err(fail(None, spec.line, "spec must be a mapping".into()));
    }
    match spec.get("scrapeClasses") {
        None => spec.insert("scrapeClasses", Node::from_json(&json!([]))),
        Some(n) if n.is_null() => spec.insert("scrapeClasses", Node::from_json(&json!([]))),
        Some(n) if n.as_seq().is_none() => {
            return Err(fail(
                None,
                n.line,
                "spec.scrapeClasses must be a list of scrape classes".into(),
            ));
        }
        Some(_) => {}
    }
    let classes = spec
        .get_mut("scrapeClasses")
        .and_then(Node::as_seq_mut)
        .expect("the list was just ensured");
    for class in classes.iter() {
        if class.as_map().is_none() {
            return Err(fail(
                None,
                class.line,
                "each entry of spec.scrapeClasses must be a mapping".into(),
            ));
        }
    }
    let name_of = |class: &Node| {
        (class.get("name").and_then(Node::scalar_text))
            .unwrap_or_default()
            .to_string()
    };
    let is_default = |class: &Node| {
        class
            .get("default")
            .is_some_and(|d| d.to_json() == json!(true))
    };
    if federation
        && let Some(class) =
            (classes.iter()).find(|c| name_of(c) == FEDERATION_CLASS && is_default(c))
    {
        return Err(fail(
            Some(format!("scrape class {FEDERATION_CLASS:?}")),
            class.line,
            "is the default scrape class, but it is the class of promfed's federation jobs, \
             which must not carry the local cluster label"
                .into(),
        ));
    }
    let default = match classes.iter().position(is_default) {
        Some(i) => i,
        None => match classes.iter().position(|c| name_of(c) == LOCAL_CLASS) {
            // promfed's own class, made not default by someone: it is the default again.
            Some(i) => {
                classes[i].insert("default", Node::from_json(&json!(true)));
                out.changed = true;
                i
            }
            None => {
                classes.push(Node::from_json(&json!({
                    "name": LOCAL_CLASS,
                    "default": true,
                })));
                out.changed = true;
                classes.len() - 1
            }
        },
    };
    let class = &mut classes[default];
    let item = Some(format!("scrape class {:?}", name_of(class)));
    let line = class.line;
    out.changed |= ensure_last(class, "relabelings", &relabelings(config))
        .map_err(|reason| fail(item.clone(), line, reason))?;
    out.changed |= ensure_last(class, "metricRelabelings", &metric_relabelings(config))
        .map_err(|reason| fail(item.clone(), line, reason))?;
    if federation && !classes.iter().any(|c| name_of(c) == FEDERATION_CLASS) {
        classes.push(Node::from_json(&json!({"name": FEDERATION_CLASS})));
        out.changed = true;
    }
    Ok(out)
}
