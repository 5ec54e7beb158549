//! prometheus-operator's PrometheusRule and Prometheus (`monitoring.coreos.com/v1`): the engine
//! reads and writes their `spec` as a whole (a PrometheusRule's groups, a Prometheus object's
//! scrape classes); nothing else of the object is touched.
//!
//! The spec travels as a YAML [`Node`]: from a manifest document with every scalar's style and
//! line (so a rendered document keeps its formatting and an engine error its line), from a
//! review's JSON through [`Node::from_json`].

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::yaml::Node;

/// `spec`, moved out of a review's object (it keeps its place as null for [`put_json`]). A
/// missing spec is null: the engine decides what that means for the kind.
pub fn take_json(object: &mut Map<String, Value>) -> Result<Node, String> {
    let spec = object.get_mut("spec").map(Value::take).unwrap_or_default();
    match spec {
        Value::Null | Value::Object(_) => Ok(Node::from_json(&spec)),
        _ => Err("spec is not a mapping".into()),
    }
}

/// Set `spec` to this node (a null spec, as it came, stays absent).
pub fn put_json(object: &mut Map<String, Value>, spec: &Node) {
    if spec.is_null() {
        object.remove("spec");
    } else {
        object.insert("spec".into(), spec.to_json());
    }
}

/// The `spec` of a document, lines as in the document.
pub fn from_yaml(root: &Node) -> Result<Node, String> {
    match root.get("spec") {
        None => Ok(Node::from_json(&Value::Null)),
        Some(spec) if spec.is_null() || spec.as_map().is_some() => Ok(spec.clone()),
        Some(spec) => Err(format!("line {}: spec must be a mapping", spec.line)),
    }
}

/// Put the rewritten spec into the document. Returns whether anything changed.
pub fn write_yaml(root: &mut Node, before: &Node, after: &Node) -> bool {
    if before == after {
        return false;
    }
    root.insert("spec", after.clone());
    true
}

/// An engine error's line is already the document's: the spec was read with its lines.
pub fn line_in_document(line: usize) -> Option<usize> {
    Some(line).filter(|l| *l > 0)
}

/// Bytes of the spec as JSON, which bound what the engine may write.
pub fn input_bytes(spec: &Node) -> usize {
    serde_json::to_vec(&spec.to_json()).map_or(0, |v| v.len())
}

pub fn digest(spec: &Node, hash: &mut Sha256) {
    let bytes = serde_json::to_vec(&spec.to_json()).unwrap_or_default();
    hash.update((bytes.len() as u64).to_le_bytes());
    hash.update(&bytes);
}
