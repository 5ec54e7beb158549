//! The seam between Kubernetes objects and the engine: which kinds promfed rewrites, and for
//! each kind what the engine reads out of an object and how its answer is written back.
//!
//! Both shells go through here: the webhook with the AdmissionReview's object as JSON
//! (`src/admission/`), `promfed render` with a manifest document as a YAML [`Node`]
//! (`src/render.rs`). Neither names a kind; the engine never sees an object, only its
//! [`Content`] (`Engine::rewrite_object`). This module does no rewriting and imports
//! nothing of the engine or the config, so every other module may depend on it.
//!
//! # Adding a kind
//!
//! PrometheusRule and Prometheus (their `spec`, [`operator`]) were added this way: a kind is
//! one new variant; the compiler then points at every place that must say something about it:
//!
//! 1. a file `src/object/<kind>.rs` with the kind's extract and write-back, as
//!    [`configmap`] has them: `take_json`/`put_json` on the review's object, `from_yaml`/
//!    `write_yaml` on a document, `digest` (the cache key) and `line_in_document` (where an
//!    engine error is in a rendered document);
//! 2. a [`Kind`] variant ([`Kind::ALL`] lists it; its `apiVersion`, name, content field and
//!    what the parts of its content are called), and a [`Content`] variant holding what
//!    [`Kind::take_json`]/[`Kind::from_yaml`] extract; the `match`es in this file get one arm
//!    each, calling the new file;
//! 3. its engine call: one arm in `Engine::rewrite_object` (`src/engine/mod.rs`), and which
//!    objects of the kind are selected (`Config::selects`).
//!
//! The webhook (cache, patch, warnings, limits) and the renderer (documents, KRM lists,
//! error lines) need no change: they diff the whole object before and after.

pub mod configmap;
pub mod operator;

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::yaml::Node;

/// The identity of a Kubernetes object, as much as matching needs. Any kind, including the
/// ones promfed does not rewrite (so that the selector can say why it passed one over).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// The keys of a ConfigMap's `data`.
    pub data_keys: Vec<String>,
}

/// A kind of object promfed rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// core/v1 ConfigMap: a Prometheus server's config and rule files, in `data`.
    ConfigMap,
    /// monitoring.coreos.com/v1 PrometheusRule: rule groups, in `spec`.
    PrometheusRule,
    /// monitoring.coreos.com/v1 Prometheus: the operator's Prometheus server, its `spec`
    /// (promfed writes its scrape classes).
    Prometheus,
}

/// What the engine reads from one object of a [`Kind`], and what it gives back.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// A ConfigMap's `data`, key and value, in the object's order.
    ConfigMap(Vec<(String, String)>),
    /// A PrometheusRule's `spec` (null when it has none).
    PrometheusRule(Node),
    /// A Prometheus object's `spec` (null when it has none).
    Prometheus(Node),
}

impl Kind {
    /// Every kind promfed rewrites.
    pub const ALL: &[Kind] = &[Kind::ConfigMap, Kind::PrometheusRule, Kind::Prometheus];

    /// `apiVersion` of its objects, as promfed writes it (e.g. in a KRM function's results).
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::ConfigMap => "v1",
            Kind::PrometheusRule | Kind::Prometheus => "monitoring.coreos.com/v1",
        }
    }

    /// The API group (empty for the core group).
    pub fn group(self) -> &'static str {
        self.api_version()
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// The kind's name, as in `kind:` and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::PrometheusRule => "PrometheusRule",
            Kind::Prometheus => "Prometheus",
        }
    }

    /// The field that holds its content, where a denial of unusable content points.
    pub fn field(self) -> &'static str {
        match self {
            Kind::ConfigMap => "data",
            Kind::PrometheusRule | Kind::Prometheus => "spec",
        }
    }

    /// What the parts of its content are called, for the audit summary ("2 of 3 keys
    /// changed").
    pub fn parts(self) -> &'static str {
        match self {
            Kind::ConfigMap => "keys",
            Kind::PrometheusRule | Kind::Prometheus => "specs",
        }
    }

    /// The kind an AdmissionReview's `request.kind` names (group and kind; any version).
    pub fn of_review(group: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.group() == group && k.name() == kind)
    }

    /// The kind of a manifest document from its `apiVersion` and `kind`. A core kind is
    /// known by its name alone (documents without `apiVersion` have always been read);
    /// another group's kind needs its group in `apiVersion`.
    pub fn of_document(api_version: Option<&str>, kind: &str) -> Option<Kind> {
        let group = api_version.and_then(|v| v.rsplit_once('/').map(|(g, _)| g));
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == kind && (k.group().is_empty() || group == Some(k.group())))
    }

    /// The identity of a review's object: name, namespace (the request's, which also cover a
    /// `generateName`) and labels from its metadata, the rest from its fields.
    ///
    /// The JSON functions of a kind get the object's map: either the whole object or, as the
    /// webhook passes it until the engine is needed, its fields without `apiVersion`, `kind`
    /// and `metadata` (kube keeps those typed). A kind reads and writes its own fields only.
    pub fn object_ref_json(
        self,
        object: &Map<String, Value>,
        name: &str,
        namespace: &str,
        labels: BTreeMap<String, String>,
    ) -> ObjectRef {
        let mut object_ref = ObjectRef {
            kind: self.name().to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            labels,
            data_keys: Vec::new(),
        };
        match self {
            Kind::ConfigMap => object_ref.data_keys = configmap::keys_json(object),
            Kind::PrometheusRule | Kind::Prometheus => {}
        }
        object_ref
    }

    /// The kind of a manifest document promfed rewrites, if it is one.
    pub fn of_yaml(root: &Node) -> Option<Kind> {
        let kind = root.get("kind")?.as_str()?;
        Kind::of_document(root.get("apiVersion").and_then(Node::as_str), kind)
    }

    /// The identity of a manifest document of this kind.
    pub fn object_ref_yaml(self, root: &Node) -> ObjectRef {
        let metadata = root.get("metadata");
        let field = |name: &str| {
            (metadata.and_then(|m| m.get(name)))
                .and_then(Node::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let mut labels = BTreeMap::new();
        if let Some(entries) = metadata
            .and_then(|m| m.get("labels"))
            .and_then(Node::as_map)
        {
            for (k, v) in entries {
                if let (Some(k), Some(v)) = (k.scalar_text(), v.scalar_text()) {
                    labels.insert(k.to_string(), v.to_string());
                }
            }
        }
        let mut object_ref = ObjectRef {
            kind: self.name().to_string(),
            name: field("name"),
            namespace: field("namespace"),
            labels,
            data_keys: Vec::new(),
        };
        match self {
            Kind::ConfigMap => object_ref.data_keys = configmap::keys_yaml(root),
            Kind::PrometheusRule | Kind::Prometheus => {}
        }
        object_ref
    }

    /// Move the content out of a review's object (`Err` says why the object cannot be
    /// rewritten). What is left is put together again with [`Kind::put_json`].
    pub fn take_json(self, object: &mut Map<String, Value>) -> Result<Content, String> {
        match self {
            Kind::ConfigMap => configmap::take_json(object).map(Content::ConfigMap),
            Kind::PrometheusRule => operator::take_json(object).map(Content::PrometheusRule),
            Kind::Prometheus => operator::take_json(object).map(Content::Prometheus),
        }
    }

    /// Write content into an object [`Kind::take_json`] took it from: the original content
    /// gives the object back as it came, the engine's gives the rewritten object.
    pub fn put_json(self, object: &mut Map<String, Value>, content: &Content) {
        match (self, content) {
            (Kind::ConfigMap, Content::ConfigMap(data)) => configmap::put_json(object, data),
            (Kind::PrometheusRule, Content::PrometheusRule(spec))
            | (Kind::Prometheus, Content::Prometheus(spec)) => operator::put_json(object, spec),
            _ => debug_assert!(false, "content of another kind"),
        }
    }

    /// The content of a manifest document (`Err` names the line of what is wrong).
    pub fn from_yaml(self, root: &Node) -> Result<Content, String> {
        match self {
            Kind::ConfigMap => configmap::from_yaml(root).map(Content::ConfigMap),
            Kind::PrometheusRule => operator::from_yaml(root).map(Content::PrometheusRule),
            Kind::Prometheus => operator::from_yaml(root).map(Content::Prometheus),
        }
    }

    /// Write the parts of `after` that differ from `before` into the document, leaving
    /// everything else as it was. Returns whether anything changed.
    pub fn write_yaml(self, root: &mut Node, before: &Content, after: &Content) -> bool {
        match (self, before, after) {
            (Kind::ConfigMap, Content::ConfigMap(before), Content::ConfigMap(after)) => {
                configmap::write_yaml(root, before, after)
            }
            (
                Kind::PrometheusRule,
                Content::PrometheusRule(before),
                Content::PrometheusRule(after),
            )
            | (Kind::Prometheus, Content::Prometheus(before), Content::Prometheus(after)) => {
                operator::write_yaml(root, before, after)
            }
            _ => false,
        }
    }

    /// The line in the document (1-based, within the document) of line `line` of the part
    /// `part` of its content, where the engine found an error.
    pub fn line_in_document(self, root: &Node, part: &str, line: usize) -> Option<usize> {
        match self {
            Kind::ConfigMap => configmap::line_in_document(root, part, line),
            Kind::PrometheusRule | Kind::Prometheus => operator::line_in_document(line),
        }
    }
}

impl Content {
    pub fn kind(&self) -> Kind {
        match self {
            Content::ConfigMap(_) => Kind::ConfigMap,
            Content::PrometheusRule(_) => Kind::PrometheusRule,
            Content::Prometheus(_) => Kind::Prometheus,
        }
    }

    /// Bytes of input, which bound what the engine may write.
    pub fn input_bytes(&self) -> usize {
        match self {
            Content::ConfigMap(data) => configmap::data_bytes(data),
            Content::PrometheusRule(spec) | Content::Prometheus(spec) => {
                operator::input_bytes(spec)
            }
        }
    }

    /// Parts in all and parts that differ in `after` (or that only `after` has).
    pub fn changed_parts(&self, after: &Content) -> (usize, usize) {
        match (self, after) {
            (Content::ConfigMap(before), Content::ConfigMap(after)) => {
                (configmap::changed_keys(before, after).len(), before.len())
            }
            (Content::PrometheusRule(before), Content::PrometheusRule(after))
            | (Content::Prometheus(before), Content::Prometheus(after)) => {
                (usize::from(before != after), 1)
            }
            _ => (1, 1),
        }
    }

    /// Feed the content to a hash, lengths included so that no two different contents give
    /// the same byte stream.
    pub fn digest(&self, hash: &mut Sha256) {
        let name = self.kind().name();
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        match self {
            Content::ConfigMap(data) => configmap::digest(data, hash),
            Content::PrometheusRule(spec) | Content::Prometheus(spec) => {
                operator::digest(spec, hash)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_known_by_group_and_name() {
        assert_eq!(Kind::of_review("", "ConfigMap"), Some(Kind::ConfigMap));
        assert_eq!(Kind::of_review("apps", "ConfigMap"), None);
        assert_eq!(Kind::of_review("", "Secret"), None);
        assert_eq!(
            Kind::of_document(Some("v1"), "ConfigMap"),
            Some(Kind::ConfigMap)
        );
        assert_eq!(Kind::of_document(None, "ConfigMap"), Some(Kind::ConfigMap));
        assert_eq!(Kind::of_document(Some("v1"), "Secret"), None);
        assert_eq!(
            Kind::of_review("monitoring.coreos.com", "PrometheusRule"),
            Some(Kind::PrometheusRule)
        );
        assert_eq!(
            Kind::of_document(Some("monitoring.coreos.com/v1"), "Prometheus"),
            Some(Kind::Prometheus)
        );
        assert_eq!(Kind::of_document(None, "PrometheusRule"), None);
        assert_eq!(Kind::of_review("", "Prometheus"), None);
    }
}
