//! `operator:` in the promfed config: where the prometheus-operator objects promfed writes go.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Settings for prometheus-operator's objects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Operator {
    /// The federation jobs as ScrapeConfig objects.
    #[serde(default)]
    pub scrape_configs: ScrapeConfigObjects,
}

/// Where the ScrapeConfig objects go, and what makes the Prometheus object select them.
///
/// Their TLS, basic auth and authorization settings are Secret (or, for a CA, ConfigMap)
/// references, taken from the federation job's file paths as the operator mounts them:
/// `/etc/prometheus/secrets/<secret>/<key>` (a Secret listed in the Prometheus object's
/// `spec.secrets`) and `/etc/prometheus/configmaps/<configmap>/<key>`. The same config then
/// serves a ConfigMap-based Prometheus with the same Secrets mounted there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScrapeConfigObjects {
    /// Their namespace (the hub Prometheus' own, where the Secrets are); none: left to
    /// whoever applies them (`kubectl -n`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Their labels: what the Prometheus object's `scrapeConfigSelector` matches
    /// (kube-prometheus-stack: `release: <release name>`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Operator {
    /// Why the ScrapeConfig objects (and the alerts' PrometheusRule) written with these
    /// settings may be picked up by no Prometheus: without labels they carry only promfed's
    /// own, which a `scrapeConfigSelector` matches only when it is empty (`{}`).
    pub fn selection_warning(&self) -> Option<String> {
        self.scrape_configs.labels.is_empty().then(|| {
            "operator.scrapeConfigs.labels is not set: the objects carry only \
             app.kubernetes.io/managed-by=promfed, which a Prometheus picks up only if its \
             scrapeConfigSelector is {} (kube-prometheus-stack's is `release: <release>`): set \
             operator.scrapeConfigs.labels to the labels your Prometheus object selects"
                .to_string()
        })
    }

    /// The problem with a setting: its path under `operator` and why.
    pub fn problem(&self) -> Option<(String, String)> {
        let objects = &self.scrape_configs;
        if let Some(namespace) = &objects.namespace
            && !is_dns_label(namespace)
        {
            return Some((
                "operator.scrapeConfigs.namespace".into(),
                format!(
                    "{namespace:?} is not a Kubernetes namespace name (lower case letters, \
                     digits and `-`, at most 63)"
                ),
            ));
        }
        for (key, value) in &objects.labels {
            let path = format!("operator.scrapeConfigs.labels.{key}");
            if !is_label_key(key) {
                return Some((
                    path,
                    format!("{key:?} is not a Kubernetes label key ([prefix/]name)"),
                ));
            }
            if !is_label_value(value) {
                return Some((
                    path,
                    format!(
                        "{value:?} is not a Kubernetes label value (at most 63 letters, digits, \
                         `-`, `_`, `.`, starting and ending with a letter or digit)"
                    ),
                ));
            }
        }
        None
    }
}

/// RFC 1123 label: a namespace name.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// RFC 1123 subdomain: an object name (Secret, ConfigMap, ScrapeConfig).
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// A label value: empty, or up to 63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
pub fn is_label_value(value: &str) -> bool {
    let edge = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && edge(value.chars().next())
        && edge(value.chars().last())
}

/// A label key: `[prefix/]name`, the prefix a DNS subdomain, the name a non-empty label value.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let rows: &[(&str, bool, bool)] = &[
            // (text, label key, namespace)
            ("release", true, true),
            ("app.kubernetes.io/name", true, false),
            ("Release", true, false),
            ("-x", false, false),
            ("a/b/c", false, false),
            ("", false, false),
            ("x-", false, false),
        ];
        for (text, key, namespace) in rows {
            assert_eq!(is_label_key(text), *key, "label key {text:?}");
            assert_eq!(is_dns_label(text), *namespace, "namespace {text:?}");
        }
        assert!(is_label_value(""));
        assert!(!is_label_value("a b"));
    }
}
