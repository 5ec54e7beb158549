//! `promfed render`: a manifest stream in, the same stream out with matching ConfigMaps rewritten.
//!
//! Documents are split on `---` lines, the way kubectl reads a stream. Every document that is not
//! a matched ConfigMap, and every matched one the engine leaves unchanged, is copied byte for byte.

use crate::engine::{self, Engine, Stats, Warning, Work, WorkLimits};
use crate::object::{Content, Kind, ObjectRef};
use crate::yaml::{self, Limits, Node};

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

/// Render one document: None when it is not a matched object; Some(None, ..) when matched
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
    let (root, _, places) = yaml::parse_placed(body, Limits::default())
        .map_err(|e| fail("", format!("not valid YAML: {e}")))?;
    let Some(mut root) = root else {
        return Ok(None);
    };
    let Some(kind) = Kind::of_yaml(&root) else {
        return Ok(None);
    };
    let object = kind.object_ref_yaml(&root);
    if !engine.matches(&object) {
        if let Some(warning) = engine.config().passes_over(&object) {
            passed_over(warning);
        }
        return Ok(None);
    }
    let object_name = describe(kind, &object);
    let label = format!(" ({object_name})");
    let content = kind
        .from_yaml(&root)
        .map_err(|reason| fail(&label, reason))?;
    let rewritten = rewrite(engine, &content).map_err(|e: engine::Error| {
        let file_line = (e.location.line)
            .and_then(|line| kind.line_in_document(&root, &e.location.key, line))
            .map(|line| first_line + line - 1);
        match file_line {
            Some(n) => fail(&label, format!("{e}; line {n} of the stream")),
            None => fail(&label, e.to_string()),
        }
    })?;
    // The tree as read, so that writing the changed one over `body` need not parse it again.
    let original = root.clone();
    if !kind.write_yaml(&mut root, &content, &rewritten.content) {
        return Ok(Some((
            None,
            object_name,
            rewritten.warnings,
            rewritten.stats,
        )));
    }
    let text = yaml::emit_in_place_over(body, &original, &places, &root);
    Ok(Some((
        Some(text),
        object_name,
        rewritten.warnings,
        rewritten.stats,
    )))
}

/// What `promfed check --objects` found in a stream of objects as they are stored (documents,
/// or a `kind: List` as `kubectl get -o yaml` prints it): every object promfed selects that
/// render would change, i.e. that did not come through promfed (the webhook was down, or
/// bypassed), and every one it cannot rewrite. Empty when all are as promfed writes them.
pub fn check_objects(engine: &Engine, input: &str) -> Result<Vec<String>, RenderError> {
    let mut findings = Vec::new();
    for (index, chunk) in split_documents(input).into_iter().enumerate() {
        let document = index + 1;
        let root = yaml::parse(chunk.body, Limits::default()).map_err(|e| RenderError {
            document,
            object: String::new(),
            reason: format!("not valid YAML: {e}"),
        })?;
        let Some(root) = root else { continue };
        let is_list = root.get("kind").and_then(Node::as_str) == Some("List");
        let items: Vec<&Node> = match root.get("items").and_then(Node::as_seq) {
            Some(items) if is_list => items.iter().collect(),
            _ => vec![&root],
        };
        for item in items {
            let Some(kind) = Kind::of_yaml(item) else {
                continue;
            };
            let object = kind.object_ref_yaml(item);
            if !engine.matches(&object) {
                continue;
            }
            let name = describe(kind, &object);
            let finding = match kind.from_yaml(item) {
                Err(reason) => Some(format!("{name}: cannot be rewritten: {reason}")),
                Ok(content) => match rewrite(engine, &content) {
                    Err(e) => Some(format!("{name}: cannot be rewritten: {e}")),
                    Ok(rewritten) if rewritten.content != content => {
                        let (changed, total) = content.changed_parts(&rewritten.content);
                        Some(format!(
                            "{name}: not as promfed writes it ({changed} of {total} {} would \
                             change, {} rules rewritten): it did not go through promfed",
                            kind.parts(),
                            rewritten.stats.rules_rewritten,
                        ))
                    }
                    Ok(_) => None,
                },
            };
            findings.extend(finding);
        }
    }
    Ok(findings)
}

/// The engine on an object's content, within the default work limits and no deadline.
fn rewrite(engine: &Engine, content: &Content) -> Result<engine::Rewritten, engine::Error> {
    engine.rewrite_object(content, &mut Work::new(WorkLimits::for_content(content)))
}

/// `Kind namespace/name`, as messages name an object.
fn describe(kind: Kind, object: &ObjectRef) -> String {
    format!("{} {}/{}", kind.name(), object.namespace, object.name)
}

/// A KRM function's `resourceRef` for an object.
fn resource_ref(kind: Kind, object: &ObjectRef) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": kind.api_version(),
        "kind": kind.name(),
        "name": object.name,
        "namespace": object.namespace,
    })
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

/// Rewrite the matched objects among a ResourceList's items; warnings become `results`.
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
        let Some(kind) = Kind::of_yaml(item) else {
            continue;
        };
        let object = kind.object_ref_yaml(item);
        if !engine.matches(&object) {
            if let Some(warning) = engine.config().passes_over(&object) {
                results.push(serde_json::json!({
                    "message": warning,
                    "severity": "warning",
                    "resourceRef": resource_ref(kind, &object),
                }));
                out.warnings.push(format!("item {}: {warning}", index + 1));
            }
            continue;
        }
        out.matched += 1;
        let object_name = describe(kind, &object);
        let label = format!(" ({object_name})");
        let fail = |reason: String| RenderError {
            document: index + 1,
            object: label.clone(),
            reason,
        };
        let content = kind.from_yaml(item).map_err(&fail)?;
        let rewritten = rewrite(engine, &content).map_err(|e| fail(e.to_string()))?;
        for warning in &rewritten.warnings {
            results.push(serde_json::json!({
                "message": warning.to_string(),
                "severity": "warning",
                "resourceRef": resource_ref(kind, &object),
            }));
            out.warnings.push(format!("{object_name}: {warning}"));
        }
        if kind.write_yaml(item, &content, &rewritten.content) {
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
