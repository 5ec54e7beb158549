//! The federation jobs as ScrapeConfig objects (`monitoring.coreos.com/v1alpha1`), for a hub
//! whose Prometheus the operator configures: one object per job of [`Federation`] (a raw job
//! with static targets of several clusters is already split, one job per cluster), each with
//! the same forced-cluster metric relabeling as in a ConfigMap, and the scrape class
//! [`FEDERATION_CLASS`] so the default class does not label it local.
//!
//! A ScrapeConfig cannot hold a password or a file path: TLS files, `password_file`,
//! `username_file` and `credentials_file` must be where the operator mounts a Secret
//! (`/etc/prometheus/secrets/<secret>/<key>`, the Secret listed in the Prometheus object's
//! `spec.secrets`) or, for a CA, a ConfigMap (`/etc/prometheus/configmaps/<name>/<key>`), and
//! become references to it. Anything a ScrapeConfig cannot say is an error naming the job and
//! the setting, never dropped.

use serde_json::{Map, Value as Json, json};

use super::error;
use super::prometheus::FEDERATION_CLASS;
use crate::config::Config;
use crate::engine::Error;
use crate::engine::federation::{Federation, Job};
use crate::yaml::Node;

/// Where the operator mounts the Secrets and ConfigMaps a Prometheus object lists.
pub const SECRETS_DIR: &str = "/etc/prometheus/secrets/";
pub const CONFIGMAPS_DIR: &str = "/etc/prometheus/configmaps/";

/// One ScrapeConfig object per federation job.
pub fn objects(config: &Config, federation: &Federation) -> Result<Vec<Node>, Error> {
    let mut out = Vec::new();
    for job in &federation.jobs {
        let item = Some(format!("job {:?}", job.name));
        let fail = |reason: String| {
            let reason = format!("cannot be a ScrapeConfig object: {reason}");
            error(&job.source, item.clone(), 0, reason)
        };
        let spec = spec(job).map_err(fail)?;
        let name = object_name(&job.name);
        if let Some(other) = (federation.jobs.iter())
            .find(|other| other.name != job.name && object_name(&other.name) == name)
        {
            return Err(fail(format!(
                "its object name {name:?} is also job {:?}'s; rename one of them",
                other.name
            )));
        }
        let metadata = metadata(config, &name);
        out.push(Node::from_json(&json!({
            "apiVersion": "monitoring.coreos.com/v1alpha1",
            "kind": "ScrapeConfig",
            "metadata": metadata,
            "spec": spec,
        })));
    }
    Ok(out)
}

/// A Secret or ConfigMap that ScrapeConfig objects refer to, and the keys they read from it:
/// what must exist in their namespace before the operator can use them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// `Secret` or `ConfigMap`.
    pub kind: &'static str,
    pub name: String,
    pub keys: Vec<String>,
}

/// The Secrets and ConfigMaps `objects` (ScrapeConfig objects) refer to, each once, sorted.
pub fn references(objects: &[Node]) -> Vec<Reference> {
    let mut found: std::collections::BTreeMap<(&'static str, String), Vec<String>> =
        Default::default();
    for object in objects {
        let spec = object.get("spec").map(Node::to_json).unwrap_or_default();
        let tls = &spec["tlsConfig"];
        let selectors = [
            ("Secret", &tls["ca"]["secret"]),
            ("ConfigMap", &tls["ca"]["configMap"]),
            ("Secret", &tls["cert"]["secret"]),
            ("Secret", &tls["keySecret"]),
            ("Secret", &spec["basicAuth"]["username"]),
            ("Secret", &spec["basicAuth"]["password"]),
            ("Secret", &spec["authorization"]["credentials"]),
        ];
        for (kind, selector) in selectors {
            if let (Some(name), Some(key)) = (selector["name"].as_str(), selector["key"].as_str()) {
                let keys = found.entry((kind, name.to_string())).or_default();
                if !keys.iter().any(|k| k == key) {
                    keys.push(key.to_string());
                }
            }
        }
    }
    (found.into_iter())
        .map(|((kind, name), mut keys)| {
            keys.sort();
            Reference { kind, name, keys }
        })
        .collect()
}

/// The metadata of an object promfed writes for the operator: `name`, and the namespace and
/// labels of `operator.scrapeConfigs` (with `app.kubernetes.io/managed-by: promfed`).
pub fn metadata(config: &Config, name: &str) -> Map<String, Json> {
    let settings = &config.operator.scrape_configs;
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(name));
    if let Some(namespace) = &settings.namespace {
        metadata.insert("namespace".into(), json!(namespace));
    }
    let mut labels = Map::new();
    labels.insert("app.kubernetes.io/managed-by".into(), json!("promfed"));
    for (k, v) in &settings.labels {
        labels.insert(k.clone(), json!(v));
    }
    metadata.insert("labels".into(), Json::Object(labels));
    metadata
}

/// A Kubernetes object name for a job name: lower case, every other character `-`.
pub fn object_name(job: &str) -> String {
    let name: String = (job.chars())
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let name = name.trim_matches(|c| c == '-' || c == '.');
    let name: String = name.chars().take(253).collect();
    if name.is_empty() {
        "promfed-federation".into()
    } else {
        name
    }
}

/// The ScrapeConfig `spec` of one federation job (a Prometheus scrape config).
fn spec(job: &Job) -> Result<Json, String> {
    let Json::Object(fields) = job.node.to_json() else {
        return Err("not a scrape config mapping".into());
    };
    let mut spec = Map::new();
    spec.insert("scrapeClass".into(), json!(FEDERATION_CLASS));
    for (key, value) in fields {
        let (name, value) = match key.as_str() {
            "job_name" => ("jobName", value),
            "honor_labels" => ("honorLabels", value),
            "honor_timestamps" => ("honorTimestamps", value),
            "metrics_path" => ("metricsPath", value),
            "params" => ("params", value),
            "scrape_interval" => ("scrapeInterval", value),
            "scrape_timeout" => ("scrapeTimeout", value),
            "sample_limit" => ("sampleLimit", value),
            "target_limit" => ("targetLimit", value),
            "label_limit" => ("labelLimit", value),
            "proxy_url" => ("proxyUrl", value),
            "scheme" => ("scheme", scheme(&value)?),
            "static_configs" => ("staticConfigs", static_configs(&value)?),
            "relabel_configs" => ("relabelings", relabelings(&value, &key)?),
            "metric_relabel_configs" => ("metricRelabelings", relabelings(&value, &key)?),
            "tls_config" => ("tlsConfig", tls_config(&value)?),
            "basic_auth" => ("basicAuth", basic_auth(&value)?),
            "authorization" => ("authorization", authorization(&value)?),
            other if other.ends_with("_sd_configs") => {
                return Err(format!(
                    "{other}: promfed writes ScrapeConfig objects for static targets only \
                     (give each cluster's targets, or one `clusters` entry per cluster)"
                ));
            }
            other => {
                return Err(format!(
                    "{other} has no ScrapeConfig field promfed writes; leave it out or use \
                     the ConfigMap path"
                ));
            }
        };
        if !value.is_null() {
            spec.insert(name.into(), value);
        }
    }
    Ok(Json::Object(spec))
}

fn scheme(value: &Json) -> Result<Json, String> {
    match value.as_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => Ok(json!("HTTP")),
        Some(s) if s.eq_ignore_ascii_case("https") => Ok(json!("HTTPS")),
        _ => Err(format!("scheme {value} is not http or https")),
    }
}

fn static_configs(value: &Json) -> Result<Json, String> {
    let groups = value.as_array().ok_or("static_configs must be a list")?;
    let mut out = Vec::new();
    for group in groups {
        let mut entry = Map::new();
        for (key, value) in group
            .as_object()
            .ok_or("a static config must be a mapping")?
        {
            match key.as_str() {
                "targets" | "labels" => entry.insert(key.clone(), value.clone()),
                other => return Err(format!("static_configs: {other} is not supported")),
            };
        }
        out.push(Json::Object(entry));
    }
    Ok(Json::Array(out))
}

/// Prometheus' relabel config fields in the operator's spelling.
fn relabelings(value: &Json, key: &str) -> Result<Json, String> {
    let rules = value.as_array().ok_or(format!("{key} must be a list"))?;
    let mut out = Vec::new();
    for rule in rules {
        let mut entry = Map::new();
        for (field, value) in rule.as_object().ok_or(format!("{key}: not a mapping"))? {
            let name = match field.as_str() {
                "source_labels" => "sourceLabels",
                "target_label" => "targetLabel",
                "separator" | "regex" | "modulus" | "replacement" | "action" => field,
                other => return Err(format!("{key}: {other} is not a relabel field")),
            };
            entry.insert(name.into(), value.clone());
        }
        out.push(Json::Object(entry));
    }
    Ok(Json::Array(out))
}

/// A file path where the operator mounts a Secret: its name and key.
fn secret_ref(path: &Json, setting: &str) -> Result<Json, String> {
    mounted(path, SECRETS_DIR, setting).map(|(name, key)| json!({"name": name, "key": key}))
}

/// `<dir><name>/<key>` as (name, key).
fn mounted(path: &Json, dir: &str, setting: &str) -> Result<(String, String), String> {
    let text = path.as_str().unwrap_or_default();
    let parts = text.strip_prefix(dir).and_then(|rest| rest.split_once('/'));
    match parts {
        Some((name, key))
            if crate::config::operator::is_dns_subdomain(name)
                && !key.is_empty()
                && !key.contains('/') =>
        {
            Ok((name.to_string(), key.to_string()))
        }
        _ => Err(format!(
            "{setting} {path} is not a mounted Secret's key ({dir}<secret>/<key>), which a \
             ScrapeConfig could refer to"
        )),
    }
}

fn inline(setting: &str, instead: &str) -> String {
    format!(
        "{setting} is inline; a ScrapeConfig takes it from a Secret: put it in one and give \
         {instead}: {SECRETS_DIR}<secret>/<key>"
    )
}

fn tls_config(value: &Json) -> Result<Json, String> {
    let mut out = Map::new();
    for (field, value) in value.as_object().ok_or("tls_config must be a mapping")? {
        let setting = format!("tls_config.{field}");
        match field.as_str() {
            "ca_file" => {
                let ca = match secret_ref(value, &setting) {
                    Ok(secret) => json!({"secret": secret}),
                    Err(_) => {
                        let (name, key) =
                            mounted(value, CONFIGMAPS_DIR, &setting).map_err(|_| {
                                format!(
                                    "{setting} {value} is neither {SECRETS_DIR}<secret>/<key> nor \
                                 {CONFIGMAPS_DIR}<configmap>/<key>, which a ScrapeConfig \
                                 could refer to"
                                )
                            })?;
                        json!({"configMap": {"name": name, "key": key}})
                    }
                };
                out.insert("ca".into(), ca);
            }
            "cert_file" => {
                out.insert(
                    "cert".into(),
                    json!({"secret": secret_ref(value, &setting)?}),
                );
            }
            "key_file" => {
                out.insert("keySecret".into(), secret_ref(value, &setting)?);
            }
            "server_name" => {
                out.insert("serverName".into(), value.clone());
            }
            "insecure_skip_verify" => {
                out.insert("insecureSkipVerify".into(), value.clone());
            }
            "min_version" => {
                out.insert("minVersion".into(), value.clone());
            }
            "max_version" => {
                out.insert("maxVersion".into(), value.clone());
            }
            "ca" | "cert" => return Err(inline(&setting, &format!("{field}_file"))),
            "key" => return Err(inline(&setting, "key_file")),
            other => return Err(format!("tls_config.{other} has no ScrapeConfig field")),
        }
    }
    Ok(Json::Object(out))
}

fn basic_auth(value: &Json) -> Result<Json, String> {
    let mut out = Map::new();
    for (field, value) in value.as_object().ok_or("basic_auth must be a mapping")? {
        let setting = format!("basic_auth.{field}");
        match field.as_str() {
            "username_file" => out.insert("username".into(), secret_ref(value, &setting)?),
            "password_file" => out.insert("password".into(), secret_ref(value, &setting)?),
            "username" => return Err(inline(&setting, "basic_auth.username_file")),
            "password" => return Err(inline(&setting, "basic_auth.password_file")),
            other => return Err(format!("basic_auth.{other} has no ScrapeConfig field")),
        };
    }
    Ok(Json::Object(out))
}

fn authorization(value: &Json) -> Result<Json, String> {
    let mut out = Map::new();
    for (field, value) in value.as_object().ok_or("authorization must be a mapping")? {
        let setting = format!("authorization.{field}");
        match field.as_str() {
            "type" => out.insert("type".into(), value.clone()),
            "credentials_file" => out.insert("credentials".into(), secret_ref(value, &setting)?),
            "credentials" => return Err(inline(&setting, "authorization.credentials_file")),
            other => return Err(format!("authorization.{other} has no ScrapeConfig field")),
        };
    }
    Ok(Json::Object(out))
}
