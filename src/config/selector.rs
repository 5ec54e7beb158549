//! Which objects promfed rewrites: the `configmap` selector, the `prometheusRule` and
//! `prometheus` selectors of prometheus-operator's objects, the opt-out label every kind
//! honours, and the webhooks' `matchConditions` generated from the same settings, so the API
//! server sends promfed exactly what it would rewrite.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Config;
use crate::object::{Kind, ObjectRef};

/// Which ConfigMaps are rewritten. The defaults take every real shape of a Prometheus server's
/// ConfigMap with no configuration: the TKG/TCE package's (`prometheus-server`, labels
/// `app`/`component`, in `tanzu-system-monitoring` or `prometheus`) and the prometheus-community
/// chart's (named `<release>-server` or `<release>-prometheus-server`; labels
/// `app`/`component` before chart 25, `app.kubernetes.io/name`/`component` since). What makes
/// a ConfigMap a server's is a Prometheus config key in its data (`keys.prometheus`), which
/// the API server checks too, so other ConfigMaps with the same labels are never sent.
///
/// The webhook's `matchConditions` are generated from this ([`Config::match_conditions`],
/// `promfed match-conditions`): one source of truth.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    /// ConfigMap names; empty (default) means any.
    #[serde(default)]
    pub names: Vec<String>,
    /// Namespaces; empty means any.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Label sets: a ConfigMap must carry every label of at least one of them. Written as one
    /// mapping (one set) or a list of mappings; an empty list means any labels.
    #[serde(default = "default_label_sets", deserialize_with = "label_sets")]
    pub labels: Vec<BTreeMap<String, String>>,
}

fn default_label_sets() -> Vec<BTreeMap<String, String>> {
    let set = |pairs: [(&str, &str); 2]| {
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    vec![
        set([("app", "prometheus"), ("component", "server")]),
        set([
            ("app.kubernetes.io/name", "prometheus"),
            ("app.kubernetes.io/component", "server"),
        ]),
    ]
}

/// `labels:` as one mapping or a list of them.
fn label_sets<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Vec<BTreeMap<String, String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Sets {
        One(BTreeMap<String, String>),
        Any(Vec<BTreeMap<String, String>>),
    }
    match Sets::deserialize(de) {
        Ok(Sets::One(set)) => Ok(vec![set]),
        Ok(Sets::Any(sets)) => Ok(sets),
        Err(_) => Err(serde::de::Error::custom(
            "expected a mapping of label names to values, or a list of such mappings",
        )),
    }
}

impl Default for Selector {
    fn default() -> Self {
        Selector {
            names: Vec::new(),
            namespaces: Vec::new(),
            labels: default_label_sets(),
        }
    }
}

impl Selector {
    /// Kind, name, namespace and labels; the data key is [`Config::selects`]'s.
    pub fn matches(&self, object: &ObjectRef) -> bool {
        self.misses(object).is_none()
    }

    /// Which part of the selector an object misses, in words; `None` when it matches.
    pub fn misses(&self, object: &ObjectRef) -> Option<String> {
        if object.kind != Kind::ConfigMap.name() {
            return Some(format!("kind {} is not ConfigMap", object.kind));
        }
        if !self.names.is_empty() && !self.names.contains(&object.name) {
            return Some(format!(
                "name {:?} is not in configmap.names {:?}",
                object.name, self.names
            ));
        }
        if !self.namespaces.is_empty() && !self.namespaces.contains(&object.namespace) {
            return Some(format!(
                "namespace {:?} is not in configmap.namespaces {:?}",
                object.namespace, self.namespaces
            ));
        }
        let has_set = |set: &BTreeMap<String, String>| {
            set.iter().all(|(k, v)| object.labels.get(k) == Some(v))
        };
        if !self.labels.is_empty() && !self.labels.iter().any(has_set) {
            let sets: Vec<String> = (self.labels.iter())
                .map(|set| {
                    let pairs: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("{{{}}}", pairs.join(", "))
                })
                .collect();
            return Some(format!(
                "its labels have none of the label sets of configmap.labels: {}",
                sets.join(" or ")
            ));
        }
        None
    }
}

/// The label by which any object opts out: `promfed.io/rewrite: "false"` and promfed leaves it
/// as it is (the webhooks' conditions say so too, so it is not even sent).
pub const OPT_OUT_LABEL: &str = "promfed.io/rewrite";

/// Whether an object carries `promfed.io/rewrite: "false"`.
pub fn opted_out(object: &ObjectRef) -> bool {
    object.labels.get(OPT_OUT_LABEL).map(String::as_str) == Some("false")
}

/// Which objects of a prometheus-operator kind (`prometheusRule`, `prometheus`) are rewritten.
/// By default every one outside `kube-system` and `promfed-system`: on the hub its own rules
/// must read local series only, whoever wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectSelector {
    /// Namespaces; empty (default) means any not excluded.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Namespaces never rewritten (default `[kube-system, promfed-system]`).
    #[serde(default = "default_excluded_namespaces")]
    pub exclude_namespaces: Vec<String>,
    /// Labels an object must all carry; empty (default) means any.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_excluded_namespaces() -> Vec<String> {
    vec!["kube-system".into(), "promfed-system".into()]
}

impl Default for ObjectSelector {
    fn default() -> Self {
        ObjectSelector {
            namespaces: Vec::new(),
            exclude_namespaces: default_excluded_namespaces(),
            labels: BTreeMap::new(),
        }
    }
}

impl ObjectSelector {
    /// Which part of the selector (the config section `section`) an object misses, in words;
    /// `None` when it matches.
    pub fn misses(&self, object: &ObjectRef, section: &str) -> Option<String> {
        if self.exclude_namespaces.contains(&object.namespace) {
            return Some(format!(
                "namespace {:?} is in {section}.excludeNamespaces",
                object.namespace
            ));
        }
        if !self.namespaces.is_empty() && !self.namespaces.contains(&object.namespace) {
            return Some(format!(
                "namespace {:?} is not in {section}.namespaces {:?}",
                object.namespace, self.namespaces
            ));
        }
        if let Some((k, v)) = (self.labels.iter()).find(|(k, v)| object.labels.get(*k) != Some(v)) {
            return Some(format!("it lacks the label {k}={v} of {section}.labels"));
        }
        None
    }

    /// The problem with a setting: its path under `section` and why.
    pub fn problem(&self, section: &str) -> Option<(String, String)> {
        use super::operator::{is_dns_label, is_label_key, is_label_value};
        for (field, names) in [
            ("namespaces", &self.namespaces),
            ("excludeNamespaces", &self.exclude_namespaces),
        ] {
            if let Some(name) = names.iter().find(|n| !is_dns_label(n)) {
                return Some((
                    format!("{section}.{field}"),
                    format!("{name:?} is not a Kubernetes namespace name"),
                ));
            }
        }
        for (key, value) in &self.labels {
            if !is_label_key(key) || !is_label_value(value) {
                return Some((
                    format!("{section}.labels.{key}"),
                    format!("{key}: {value:?} is not a Kubernetes label"),
                ));
            }
        }
        None
    }

    /// The conditions for the webhook of one kind: namespaces, labels.
    fn match_conditions(&self, prefix: &str) -> Vec<MatchCondition> {
        let mut conditions = Vec::new();
        if !self.exclude_namespaces.is_empty() {
            conditions.push(MatchCondition {
                name: format!("{prefix}-namespace-not-excluded"),
                expression: format!(
                    "!({})",
                    cel_one_of("request.namespace", &self.exclude_namespaces)
                ),
            });
        }
        if !self.namespaces.is_empty() {
            conditions.push(MatchCondition {
                name: format!("{prefix}-namespace"),
                expression: cel_one_of("request.namespace", &self.namespaces),
            });
        }
        if !self.labels.is_empty() {
            conditions.push(MatchCondition {
                name: format!("{prefix}-labels"),
                expression: format!(
                    "has(object.metadata.labels) && {}",
                    has_labels(&self.labels)
                ),
            });
        }
        conditions
    }
}

/// `('k' in labels && labels['k'] == 'v' && ...)` for every label of the set.
fn has_labels(set: &BTreeMap<String, String>) -> String {
    let terms: Vec<String> = (set.iter())
        .map(|(k, v)| {
            let k = cel_string(k);
            format!(
                "{k} in object.metadata.labels && object.metadata.labels[{k}] == {}",
                cel_string(v)
            )
        })
        .collect();
    if terms.is_empty() {
        "true".to_string()
    } else {
        format!("({})", terms.join(" && "))
    }
}

/// The condition that leaves out objects that opted out.
fn not_opted_out() -> MatchCondition {
    let k = cel_string(OPT_OUT_LABEL);
    MatchCondition {
        name: "promfed-rewrite-not-disabled".into(),
        expression: format!(
            "!has(object.metadata.labels) || !({k} in object.metadata.labels) || \
             object.metadata.labels[{k}] != 'false'"
        ),
    }
}

/// One of the webhook's `matchConditions`: a CEL expression the API server evaluates before
/// it calls promfed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MatchCondition {
    pub name: String,
    pub expression: String,
}

/// A CEL string literal.
fn cel_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `field == 'a' || field == 'b'`, or `field in [...]` for several.
fn cel_one_of(field: &str, values: &[String]) -> String {
    match values {
        [one] => format!("{field} == {}", cel_string(one)),
        _ => {
            let list: Vec<String> = values.iter().map(|v| cel_string(v)).collect();
            format!("{field} in [{}]", list.join(", "))
        }
    }
}

impl Config {
    /// Whether promfed rewrites this object: not opted out, and for a ConfigMap the selector
    /// and a Prometheus config key in its data, for an operator object its kind's selector.
    /// The webhooks' [`Config::match_conditions_for`] say the same to the API server.
    pub fn selects(&self, object: &ObjectRef) -> bool {
        if opted_out(object) {
            return false;
        }
        match self.object_selector(&object.kind) {
            Some((selector, section)) => selector.misses(object, section).is_none(),
            None => self.configmap.matches(object) && self.has_config_key(object),
        }
    }

    /// The selector of an operator kind, and its config section.
    fn object_selector(&self, kind: &str) -> Option<(&ObjectSelector, &'static str)> {
        if kind == Kind::PrometheusRule.name() {
            Some((&self.prometheus_rule, "prometheusRule"))
        } else if kind == Kind::Prometheus.name() {
            Some((&self.prometheus, "prometheus"))
        } else {
            None
        }
    }

    /// Why an object that looks like a Prometheus server's ConfigMap (a `keys.prometheus` key
    /// in its data) is not rewritten: the selector part it misses. None for anything else,
    /// selected or not a server's.
    pub fn passes_over(&self, object: &ObjectRef) -> Option<String> {
        if object.kind != Kind::ConfigMap.name() || !self.has_config_key(object) {
            return None;
        }
        let key = (object.data_keys.iter()).find(|key| self.keys.prometheus.contains(key))?;
        let missed = self.configmap.misses(object)?;
        Some(format!(
            "ConfigMap {}/{} holds a Prometheus config ({key}) but the configmap selector does \
             not match it ({missed}): left unfederated",
            object.namespace, object.name
        ))
    }

    /// Whether the object's data has one of `keys.prometheus`.
    pub fn has_config_key(&self, object: &ObjectRef) -> bool {
        (object.data_keys.iter()).any(|key| self.keys.prometheus.contains(key))
    }

    /// The `matchConditions` of the MutatingWebhookConfiguration that sends the API server's
    /// reviews to promfed exactly for the objects [`Config::selects`] (kind and namespace
    /// exclusions are the webhook's `rules` and `namespaceSelector`).
    pub fn match_conditions(&self) -> Vec<MatchCondition> {
        self.match_conditions_for(Kind::ConfigMap)
    }

    /// The `matchConditions` of the webhook for one kind (each kind has its own webhook in
    /// deploy/base: its rules name the kind's resource).
    pub fn match_conditions_for(&self, kind: Kind) -> Vec<MatchCondition> {
        let mut conditions = match kind {
            Kind::ConfigMap => self.configmap_conditions(),
            Kind::PrometheusRule => self.prometheus_rule.match_conditions("prometheusrule"),
            Kind::Prometheus => self.prometheus.match_conditions("prometheus"),
        };
        conditions.push(not_opted_out());
        conditions
    }

    fn configmap_conditions(&self) -> Vec<MatchCondition> {
        let mut conditions = Vec::new();
        let keys: Vec<String> = (self.keys.prometheus.iter())
            .map(|k| format!("{} in object.data", cel_string(k)))
            .collect();
        conditions.push(MatchCondition {
            name: "prometheus-config-key".into(),
            expression: format!("has(object.data) && ({})", keys.join(" || ")),
        });
        let selector = &self.configmap;
        if !selector.labels.is_empty() {
            let sets: Vec<String> = selector.labels.iter().map(has_labels).collect();
            conditions.push(MatchCondition {
                name: "prometheus-server-labels".into(),
                expression: format!("has(object.metadata.labels) && ({})", sets.join(" || ")),
            });
        }
        if !selector.names.is_empty() {
            conditions.push(MatchCondition {
                name: "prometheus-server-name".into(),
                expression: cel_one_of("object.metadata.name", &selector.names),
            });
        }
        if !selector.namespaces.is_empty() {
            conditions.push(MatchCondition {
                name: "prometheus-server-namespace".into(),
                expression: cel_one_of("object.metadata.namespace", &selector.namespaces),
            });
        }
        conditions
    }
}
