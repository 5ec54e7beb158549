//! ConfigMap: the engine reads and writes its `data`, key by key; nothing else of the
//! object is touched.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::yaml::Node;

/// Kubernetes' limit on a ConfigMap's size: the bytes of its `data` and `binaryData` keys
/// and values together (the API server's validation, `MaxSecretSize`; over it, a write is
/// refused with "Too long: must have at most 1048576 bytes").
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// The bytes of `data` as Kubernetes counts them against [`MAX_DATA_BYTES`]: every key and
/// value.
pub fn data_bytes(data: &[(String, String)]) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// The keys of a review object's `data`.
pub fn keys_json(object: &Map<String, Value>) -> Vec<String> {
    (object.get("data").and_then(Value::as_object))
        .map(|data| data.keys().cloned().collect())
        .unwrap_or_default()
}

/// `data` as (key, value) pairs in the object's order, moved out: a review may carry
/// megabytes of data. `data` keeps its place in the object (as null) for [`put_json`].
pub fn take_json(object: &mut Map<String, Value>) -> Result<Vec<(String, String)>, String> {
    let data = object.get_mut("data").map(Value::take);
    let data = match data {
        None | Some(Value::Null) => {
            return Err("has no data (promfed rewrites the Prometheus config held in data)".into());
        }
        Some(Value::Object(data)) => data,
        Some(_) => return Err("data is not a map of strings".into()),
    };
    data.into_iter()
        .map(|(key, value)| match value {
            Value::String(value) => Ok((key, value)),
            _ => Err(format!("data key {key:?} does not hold a string")),
        })
        .collect()
}

/// Set `data` to these pairs.
pub fn put_json(object: &mut Map<String, Value>, data: &[(String, String)]) {
    let data = (data.iter())
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    object.insert("data".into(), Value::Object(data));
}

/// The `data` of a ConfigMap document as key/value strings, in document order.
pub fn from_yaml(root: &Node) -> Result<Vec<(String, String)>, String> {
    let Some(data) = root.get("data") else {
        return Ok(Vec::new());
    };
    if data.is_null() {
        return Ok(Vec::new());
    }
    let Some(entries) = data.as_map() else {
        return Err(format!("line {}: data must be a mapping", data.line));
    };
    entries
        .iter()
        .map(|(k, v)| {
            let key = k
                .scalar_text()
                .ok_or_else(|| format!("line {}: data keys must be strings", k.line))?;
            let value = v.as_str().ok_or_else(|| {
                format!(
                    "line {}: data[{key:?}] must be a string (quote it or use a block scalar)",
                    v.line
                )
            })?;
            Ok((key.to_string(), value.to_string()))
        })
        .collect()
}

/// The keys of a document's `data`.
pub fn keys_yaml(root: &Node) -> Vec<String> {
    (root.get("data").and_then(Node::as_map))
        .map(|entries| {
            (entries.iter())
                .filter_map(|(k, _)| k.scalar_text().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Put the values that changed into the document's `data` (other keys and the rest of the
/// node untouched). Returns whether anything changed.
pub fn write_yaml(
    root: &mut Node,
    before: &[(String, String)],
    after: &[(String, String)],
) -> bool {
    let changed = changed_keys(before, after);
    if changed.is_empty() {
        return false;
    }
    if root.get("data").is_none_or(Node::is_null) {
        root.insert("data", Node::from_json(&serde_json::json!({})));
    }
    let data_node = root.get_mut("data").expect("data was just ensured");
    for (key, value) in after {
        if changed.contains(&key.as_str()) {
            data_node.insert(key, Node::string(value.clone()));
        }
    }
    true
}

/// Keys whose value in `after` differs from `before` (or that `before` lacks).
pub fn changed_keys<'a>(
    before: &[(String, String)],
    after: &'a [(String, String)],
) -> Vec<&'a str> {
    after
        .iter()
        .filter(|(key, new)| !before.iter().any(|(k, old)| k == key && old == new))
        .map(|(key, _)| key.as_str())
        .collect()
}

/// Line `line` of data key `key`'s value, as a line of the document.
pub fn line_in_document(root: &Node, key: &str, line: usize) -> Option<usize> {
    let value = root.get("data")?.get(key)?;
    // A multi-line value is a block scalar; its node starts where its text does.
    let multi_line = value.as_str()?.contains('\n');
    Some(value.line + if multi_line { line - 1 } else { 0 })
}

pub fn digest(data: &[(String, String)], hash: &mut Sha256) {
    for (key, value) in data {
        hash.update((key.len() as u64).to_le_bytes());
        hash.update(key.as_bytes());
        hash.update((value.len() as u64).to_le_bytes());
        hash.update(value.as_bytes());
    }
}
