//! `promfed render`: a manifest stream in, the same stream out with matching ConfigMaps rewritten.
//!
//! Documents are split on `---` lines, the way kubectl reads a stream. Every document that is not
//! a matched ConfigMap, and every matched one the engine leaves unchanged, is copied byte for byte.

use std::collections::BTreeMap;

use crate::engine::{self, Engine, ObjectRef, Rewrite, Stats, Warning};
use crate::yaml::{self, Limits, Node, Value};

/// Why a stream could not be rendered. The message names the document and the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}{object}: {reason}")]
pub struct RenderError {
    /// 1-based index of the document in the stream.
    pub document: usize,
    /// ` (ConfigMap namespace/name)` when known.
    pub object: String,
    pub reason: String,
}

/// A rendered stream.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub text: String,
    /// Warnings, each prefixed with its object.
    pub warnings: Vec<String>,
    /// ConfigMaps that matched and ConfigMaps that changed.
    pub matched: usize,
    pub changed: usize,
    pub stats: Stats,
}

/// Render a multi-document manifest stream.
pub fn render_stream(engine: &Engine, input: &str) -> Result<Rendered, RenderError> {
    let mut out = Rendered::default();
    let mut line = 1;
    for (index, chunk) in split_documents(input).into_iter().enumerate() {
        let document = index + 1;
        line += chunk.separator.matches('\n').count();
        let first_line = line;
        line += chunk.body.matches('\n').count();
        let rendered = render_document(engine, chunk.body, document, first_line, &mut |w| {
            out.warnings.push(format!("document {document}: {w}"));
        })?;
        match rendered {
            Some((text, object, warnings, stats)) => {
                out.matched += 1;
                out.stats.local_jobs_labelled += stats.local_jobs_labelled;
                out.stats.federation_jobs += stats.federation_jobs;
                out.stats.rules_rewritten += stats.rules_rewritten;
                out.stats.selectors_scoped += stats.selectors_scoped;
                out.warnings
                    .extend(warnings.iter().map(|w| format!("{object}: {w}")));
                out.text.push_str(chunk.separator);
                match text {
                    Some(text) => {
                        out.changed += 1;
                        out.text.push_str(&text);
                    }
                    None => out.text.push_str(chunk.body),
                }
            }
            None => {
                out.text.push_str(chunk.separator);
                out.text.push_str(chunk.body);
            }
        }
    }
    Ok(out)
}

type DocumentResult = (Option<String>, String, Vec<Warning>, Stats);

/// Render one document: None when it is not a matched ConfigMap; Some(None, ..) when matched
/// but unchanged. A Prometheus server's ConfigMap that no selector matches is reported to
/// `passed_over`: silence would look like "already federated".
fn render_document(
    engine: &Engine,
    body: &str,
    document: usize,
    first_line: usize,
    passed_over: &mut dyn FnMut(String),
) -> Result<Option<DocumentResult>, RenderError> {
    let fail = |object: &str, reason: String| RenderError {
        document,
        object: object.to_string(),
        reason,
    };
    let Some(mut root) = yaml::parse(body, Limits::default())
        .map_err(|e| fail("", format!("not valid YAML: {e}")))?
    else {
        return Ok(None);
    };
    let Some(object) = object_ref(&root) else {
        return Ok(None);
    };
    if !engine.matches(&object) {
        if let Some(warning) = engine.config().passes_over(&object) {
            passed_over(warning);
        }
        return Ok(None);
    }
    let label = format!(" (ConfigMap {}/{})", object.namespace, object.name);
    let data = config_map_data(&root).map_err(|reason| fail(&label, reason))?;
    let rewrite = engine.rewrite(&data).map_err(|e: engine::Error| {
        let file_line = e.location.line.and_then(|line| {
            let value = root.get("data")?.get(&e.location.key)?;
            // A multi-line value is a block scalar; its node starts where its text does.
            let multi_line = value.as_str()?.contains('\n');
            Some(first_line + value.line - 1 + if multi_line { line - 1 } else { 0 })
        });
        match file_line {
            Some(n) => fail(&label, format!("{e}; line {n} of the stream")),
            None => fail(&label, e.to_string()),
        }
    })?;
    let object_name = format!("ConfigMap {}/{}", object.namespace, object.name);
    if !write_back(&mut root, &data, &rewrite) {
        return Ok(Some((None, object_name, rewrite.warnings, rewrite.stats)));
    }
    let text = yaml::emit_in_place(body, &root);
    Ok(Some((
        Some(text),
        object_name,
        rewrite.warnings,
        rewrite.stats,
    )))
}

/// A KRM function input (`kind: ResourceList`, as kustomize and kpt send it), parsed.
pub fn parse_resource_list(input: &str) -> Option<Node> {
    // Cheap test first: a manifest stream is not parsed twice.
    if !input.contains("ResourceList") {
        return None;
    }
    let root = yaml::parse(input, Limits::default()).ok()??;
    let kind = root.get("kind")?.as_str()?;
    (kind == "ResourceList" && root.get("items").is_some()).then_some(root)
}

/// The promfed config a KRM function was given: `functionConfig` is a ConfigMap whose
/// `data["promfed.yaml"]` holds it.
pub fn resource_list_config(list: &Node) -> Option<String> {
    let config = list.get("functionConfig")?;
    Some(
        config
            .get("data")?
            .get("promfed.yaml")?
            .as_str()?
            .to_string(),
    )
}

/// Rewrite the matched ConfigMaps among a ResourceList's items; warnings become `results`.
pub fn render_resource_list(engine: &Engine, mut list: Node) -> Result<Rendered, RenderError> {
    let mut out = Rendered::default();
    let mut results = Vec::new();
    let items = list
        .get_mut("items")
        .and_then(Node::as_seq_mut)
        .ok_or_else(|| RenderError {
            document: 1,
            object: String::new(),
            reason: "ResourceList items must be a list".into(),
        })?;
    for (index, item) in items.iter_mut().enumerate() {
        let Some(object) = object_ref(item) else {
            continue;
        };
        if !engine.matches(&object) {
            if let Some(warning) = engine.config().passes_over(&object) {
                results.push(serde_json::json!({
                    "message": warning,
                    "severity": "warning",
                    "resourceRef": {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": object.name,
                        "namespace": object.namespace,
                    },
                }));
                out.warnings.push(format!("item {}: {warning}", index + 1));
            }
            continue;
        }
        out.matched += 1;
        let label = format!(" (ConfigMap {}/{})", object.namespace, object.name);
        let fail = |reason: String| RenderError {
            document: index + 1,
            object: label.clone(),
            reason,
        };
        let data = config_map_data(item).map_err(&fail)?;
        let rewrite = engine.rewrite(&data).map_err(|e| fail(e.to_string()))?;
        for warning in &rewrite.warnings {
            results.push(serde_json::json!({
                "message": warning.to_string(),
                "severity": "warning",
                "resourceRef": {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": object.name,
                    "namespace": object.namespace,
                },
            }));
            out.warnings.push(format!(
                "ConfigMap {}/{}: {warning}",
                object.namespace, object.name
            ));
        }
        if write_back(item, &data, &rewrite) {
            out.changed += 1;
        }
    }
    if !results.is_empty() {
        list.insert(
            "results",
            Node::from_json(&serde_json::Value::Array(results)),
        );
    }
    out.text = yaml::emit(&list);
    Ok(out)
}

/// Put the values the rewrite changed into the ConfigMap node's `data` (other keys and the
/// rest of the node untouched). Returns whether anything changed.
fn write_back(config_map: &mut Node, data: &[(String, String)], rewrite: &Rewrite) -> bool {
    let changed = rewrite.changed_keys(data);
    if changed.is_empty() {
        return false;
    }
    if config_map.get("data").is_none_or(Node::is_null) {
        config_map.insert("data", Node::from_json(&serde_json::json!({})));
    }
    let data_node = config_map.get_mut("data").expect("data was just ensured");
    for (key, value) in &rewrite.data {
        if changed.contains(&key.as_str()) {
            data_node.insert(key, Node::string(value.clone()));
        }
    }
    true
}

/// Kind, name, namespace and labels of a manifest document, if it is a mapping with a kind.
pub fn object_ref(root: &Node) -> Option<ObjectRef> {
    let kind = root.get("kind")?.as_str()?.to_string();
    let metadata = root.get("metadata");
    let field = |name: &str| {
        metadata
            .and_then(|m| m.get(name))
            .and_then(Node::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut labels = BTreeMap::new();
    if let Some(Value::Map(entries)) = metadata.and_then(|m| m.get("labels")).map(|l| &l.value) {
        for (k, v) in entries {
            if let (Some(k), Some(v)) = (k.scalar_text(), v.scalar_text()) {
                labels.insert(k.to_string(), v.to_string());
            }
        }
    }
    let data_keys = match root.get("data").map(|d| &d.value) {
        Some(Value::Map(entries)) => (entries.iter())
            .filter_map(|(k, _)| k.scalar_text().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Some(ObjectRef {
        kind,
        name: field("name"),
        namespace: field("namespace"),
        labels,
        data_keys,
    })
}

/// The `data` of a ConfigMap document as key/value strings, in document order.
fn config_map_data(root: &Node) -> Result<Vec<(String, String)>, String> {
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

/// One document of a stream: the `---` line before it (empty for the first) and its text.
#[derive(Debug, PartialEq, Eq)]
struct Chunk<'a> {
    separator: &'a str,
    body: &'a str,
}

/// Split on lines that are exactly `---` (optionally followed by spaces or a comment).
fn split_documents(input: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut separator = "";
    let mut start = 0;
    let mut pos = 0;
    for line in input.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let is_separator = content == "---"
            || (content.starts_with("--- ") && content[4..].trim_start().starts_with('#'))
            || (content.starts_with("---") && content[3..].trim().is_empty());
        if is_separator {
            chunks.push(Chunk {
                separator,
                body: &input[start..pos],
            });
            separator = &input[pos..pos + line.len()];
            start = pos + line.len();
        }
        pos += line.len();
    }
    chunks.push(Chunk {
        separator,
        body: &input[start..],
    });
    chunks
}

/// A unified diff of a rendering, for `--diff`.
pub fn unified_diff(name: &str, before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_every_byte() {
        let cases = [
            "",
            "a: 1\n",
            "---\na: 1\n",
            "a: 1\n---\nb: 2\n",
            "a: 1\n--- # next\nb: 2\n---\n",
            "a: |\n  ---x\n",
        ];
        for input in cases {
            let chunks = split_documents(input);
            let joined: String = chunks
                .iter()
                .map(|c| format!("{}{}", c.separator, c.body))
                .collect();
            assert_eq!(joined, input, "{input:?}");
        }
        assert_eq!(split_documents("a: 1\n---\nb: 2\n").len(), 2);
        assert_eq!(split_documents("a: |\n  ---x\n").len(), 1);
    }
}
