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
    /// Objects that matched and objects that changed (a `kind: List`'s items count one by one).
    pub matched: usize,
    pub changed: usize,
    pub stats: Stats,
    /// What was looked at and not selected, one line each ("document 1: no `kind` ...");
    /// what [`Rendered::nothing_selected`] names when no object matched.
    pub passed: Vec<String>,
}

impl Rendered {
    /// When no object of the input was selected: a sentence saying what the input held, so
    /// that an empty diff is not taken for "already federated".
    pub fn nothing_selected(&self) -> Option<String> {
        (self.matched == 0).then(|| nothing_selected(&self.passed))
    }
}

/// The sentence for an input in which no object is selected, from what was passed over.
fn nothing_selected(passed: &[String]) -> String {
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    // The first few say what the input is; a long stream (a chart's manifests) is not listed.
    const LISTED: usize = 5;
    let what = match passed.len() {
        0 => "it is empty".to_string(),
        n if n <= LISTED => passed.join("; "),
        n => format!("{}; and {} more", passed[..LISTED].join("; "), n - LISTED),
    };
    format!(
        "nothing here is an object promfed rewrites (a {} the config selects): {what}",
        kinds.join(", ")
    )
}

/// Render a multi-document manifest stream. A `kind: List` document (what `kubectl get -o
/// yaml` prints) is a list of objects: each item is rendered as a document would be.
pub fn render_stream(engine: &Engine, input: &str) -> Result<Rendered, RenderError> {
    let mut out = Rendered::default();
    let mut line = 1;
    for (index, chunk) in split_documents(input).into_iter().enumerate() {
        let document = index + 1;
        line += chunk.separator.matches('\n').count();
        let first_line = line;
        line += chunk.body.matches('\n').count();
        let rendered = render_document(engine, chunk.body, document, first_line, &mut out)?;
        out.text.push_str(chunk.separator);
        match rendered {
            Some(text) => out.text.push_str(&text),
            None => out.text.push_str(chunk.body),
        }
    }
    Ok(out)
}

/// The objects of a document: a `kind: List`'s items, or the document itself.
fn objects_mut(root: &mut Node) -> Vec<&mut Node> {
    if root.get("kind").and_then(Node::as_str) == Some("List")
        && root.get("items").and_then(Node::as_seq).is_some()
    {
        return (root.get_mut("items").and_then(Node::as_seq_mut))
            .map(|items| items.iter_mut().collect())
            .unwrap_or_default();
    }
    vec![root]
}

/// [`objects_mut`], read only.
fn objects(root: &Node) -> Vec<&Node> {
    match root.get("items").and_then(Node::as_seq) {
        Some(items) if root.get("kind").and_then(Node::as_str) == Some("List") => {
            items.iter().collect()
        }
        _ => vec![root],
    }
}

/// Why a document's object is not one promfed rewrites, for [`Rendered::passed`].
fn passed_over(root: &Node, engine: &Engine) -> String {
    let Some(kind) = root.get("kind").and_then(Node::as_str) else {
        // A Prometheus config or rule file given as it is, not in its object.
        let holder = if root.get("groups").is_some() {
            Some("a rule file (promfed rewrites the ConfigMap or PrometheusRule that holds it)")
        } else if root.get("scrape_configs").is_some() || root.get("global").is_some() {
            Some("a Prometheus config (promfed rewrites the ConfigMap that holds it)")
        } else {
            None
        };
        return match holder {
            Some(holder) => format!("no `kind`: {holder}"),
            None => "no `kind`: not a Kubernetes object".to_string(),
        };
    };
    match Kind::of_yaml(root) {
        None => format!("a {kind}"),
        Some(kind) => {
            let object = kind.object_ref_yaml(root);
            let missed = (engine.config().passes_over(&object))
                .unwrap_or_else(|| "the config does not select it".to_string());
            format!("{}: {missed}", describe(kind, &object))
        }
    }
}

/// Render one document into `out` (objects, warnings, stats): its new text, or None when
/// nothing in it changed. A Prometheus server's ConfigMap that no selector matches is a
/// warning: silence would look like "already federated".
fn render_document(
    engine: &Engine,
    body: &str,
    document: usize,
    first_line: usize,
    out: &mut Rendered,
) -> Result<Option<String>, RenderError> {
    let (root, _, places) =
        yaml::parse_placed(body, Limits::default()).map_err(|e| RenderError {
            document,
            object: String::new(),
            reason: format!("not valid YAML: {e}"),
        })?;
    let Some(mut root) = root else {
        return Ok(None);
    };
    let selected = |object: &Node| {
        Kind::of_yaml(object).is_some_and(|kind| engine.matches(&kind.object_ref_yaml(object)))
    };
    // The tree as read, so that writing the changed one over `body` need not parse it again;
    // not copied for a document with nothing selected (most of a chart's).
    let original = objects(&root)
        .into_iter()
        .any(selected)
        .then(|| root.clone());
    let mut changed = false;
    for object in objects_mut(&mut root) {
        let Some(kind) = Kind::of_yaml(object) else {
            let what = passed_over(object, engine);
            out.passed.push(format!("document {document}: {what}"));
            continue;
        };
        let object_ref = kind.object_ref_yaml(object);
        if !engine.matches(&object_ref) {
            if let Some(warning) = engine.config().passes_over(&object_ref) {
                out.warnings.push(format!("document {document}: {warning}"));
            }
            let what = passed_over(object, engine);
            out.passed.push(format!("document {document}: {what}"));
            continue;
        }
        let rendered = render_object(engine, object, kind, &object_ref, document, first_line)?;
        out.matched += 1;
        out.stats.local_jobs_labelled += rendered.stats.local_jobs_labelled;
        out.stats.federation_jobs += rendered.stats.federation_jobs;
        out.stats.rules_rewritten += rendered.stats.rules_rewritten;
        out.stats.selectors_scoped += rendered.stats.selectors_scoped;
        (out.warnings).extend(
            rendered
                .warnings
                .iter()
                .map(|w| format!("{}: {w}", rendered.name)),
        );
        if rendered.changed {
            out.changed += 1;
            changed = true;
        }
    }
    Ok(original
        .filter(|_| changed)
        .map(|original| yaml::emit_in_place_over(body, &original, &places, &root)))
}

/// What rendering one selected object did.
struct ObjectRendered {
    /// `Kind namespace/name`.
    name: String,
    changed: bool,
    warnings: Vec<Warning>,
    stats: Stats,
}

/// Rewrite one selected object (a document, or an item of a List) in place.
fn render_object(
    engine: &Engine,
    object: &mut Node,
    kind: Kind,
    object_ref: &ObjectRef,
    document: usize,
    first_line: usize,
) -> Result<ObjectRendered, RenderError> {
    let name = describe(kind, object_ref);
    let label = format!(" ({name})");
    let fail = |reason: String| RenderError {
        document,
        object: label.clone(),
        reason,
    };
    let content = kind.from_yaml(object).map_err(fail)?;
    let rewritten = rewrite(engine, &content).map_err(|e: engine::Error| {
        let file_line = (e.location.line)
            .and_then(|line| kind.line_in_document(object, &e.location.key, line))
            .map(|line| first_line + line - 1);
        match file_line {
            Some(n) => fail(format!("{e}; line {n} of the stream")),
            None => fail(e.to_string()),
        }
    })?;
    let changed = kind.write_yaml(object, &content, &rewritten.content);
    Ok(ObjectRendered {
        name,
        changed,
        warnings: rewritten.warnings,
        stats: rewritten.stats,
    })
}

/// What `promfed check --objects` found in a stream of objects as they are stored.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// Every selected object render would change, or cannot rewrite, one line each.
    pub findings: Vec<String>,
    /// Objects the config selects.
    pub selected: usize,
    /// What was looked at and not selected, as in [`Rendered::passed`].
    pub passed: Vec<String>,
}

impl Checked {
    /// As [`Rendered::nothing_selected`].
    pub fn nothing_selected(&self) -> Option<String> {
        (self.selected == 0).then(|| nothing_selected(&self.passed))
    }
}

/// What `promfed check --objects` found in a stream of objects as they are stored (documents,
/// or a `kind: List` as `kubectl get -o yaml` prints it, read as `render` reads it): every
/// object promfed selects that render would change, i.e. that did not come through promfed
/// (the webhook was down, or bypassed), and every one it cannot rewrite.
pub fn check_objects(engine: &Engine, input: &str) -> Result<Checked, RenderError> {
    let mut out = Checked::default();
    for (index, chunk) in split_documents(input).into_iter().enumerate() {
        let document = index + 1;
        let root = yaml::parse(chunk.body, Limits::default()).map_err(|e| RenderError {
            document,
            object: String::new(),
            reason: format!("not valid YAML: {e}"),
        })?;
        let Some(root) = root else { continue };
        for item in objects(&root) {
            let Some(kind) =
                Kind::of_yaml(item).filter(|kind| engine.matches(&kind.object_ref_yaml(item)))
            else {
                let what = passed_over(item, engine);
                out.passed.push(format!("document {document}: {what}"));
                continue;
            };
            out.selected += 1;
            let name = describe(kind, &kind.object_ref_yaml(item));
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
            out.findings.extend(finding);
        }
    }
    Ok(out)
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

/// The text `--diff` compares: the stream with every JSON document (one whose first character
/// is `{`) written as YAML, as render writes a JSON document it changes. A JSON object is then
/// diffed line by line, not as one line of hundreds of changes.
pub fn diff_view(input: &str) -> std::borrow::Cow<'_, str> {
    let chunks = split_documents(input);
    let is_json = |chunk: &Chunk<'_>| chunk.body.trim_start().starts_with('{');
    if !chunks.iter().any(is_json) {
        return input.into();
    }
    let mut out = String::with_capacity(input.len());
    for chunk in &chunks {
        out.push_str(chunk.separator);
        match yaml::parse(chunk.body, Limits::default()) {
            Ok(Some(root)) if is_json(chunk) => out.push_str(&yaml::emit(&root)),
            _ => out.push_str(chunk.body),
        }
    }
    out.into()
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
