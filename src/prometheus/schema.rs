//! The fields of the Prometheus config structs promfed writes, as data, and a checker that
//! refuses what Prometheus' strict YAML loading (`yaml.UnmarshalStrict`) and its `Validate`
//! methods refuse: unknown fields ("field scrape_intervall not found in type
//! config.ScrapeConfig"), values of the wrong type, bad durations, label names and regexes,
//! relabel rules Prometheus rejects, conflicting auth settings, a timeout over the interval.
//!
//! The tables mirror, for Prometheus 2.42 through 3.x (a field any of these versions knows is
//! accepted; promfed cannot know which one reads the ConfigMap):
//! - prometheus/prometheus `config/config.go`: `ScrapeConfig`;
//! - prometheus/common `config/http_config.go`: `HTTPClientConfig`, `ProxyConfig`,
//!   `TLSConfig`, `BasicAuth`, `Authorization`, `OAuth2`, `Headers`;
//! - prometheus/prometheus `model/relabel/relabel.go`: `relabel.Config`;
//! - prometheus/prometheus `discovery/targetgroup`: a `static_configs` entry;
//! - prometheus/prometheus `model/rulefmt/rulefmt.go`: `RuleGroup`, `RuleNode`;
//! - the `*_sd_configs` keys of the `scrape_config` section of Prometheus' configuration
//!   docs (their contents are kept as written and not checked here).

use serde_json::Value as Json;

use super::duration::{self, Duration};
use super::{is_label_name, is_metric_name, re2};
use crate::yaml::{Kind as YamlKind, Node, Value};

/// What a field holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Any scalar (Go's yaml.v2 reads any scalar into a string).
    Str,
    /// A secret: a string, or (newer Prometheus) a mapping naming where it comes from.
    Secret,
    /// A YAML 1.1 boolean (`true`, `false`, `yes`, `no`, `on`, `off`, ...).
    Bool,
    /// A non-negative number.
    Uint,
    /// A number.
    Float,
    /// A Prometheus duration.
    Duration,
    /// An RE2 regex (anchored by Prometheus).
    Regex,
    /// A relabel action.
    Action,
    /// `TLS10` .. `TLS13`.
    TlsVersion,
    /// A list of scalars.
    StrList,
    /// A list of label names.
    LabelNames,
    /// A mapping of label names to scalars.
    Labels,
    /// A mapping of strings to strings.
    StrMap,
    /// A mapping of strings to lists of strings (`params`, `proxy_connect_header`).
    StrListMap,
    /// A mapping of header names to `Header` structs.
    Headers,
    /// Anything (kept as written).
    Any,
    /// A service discovery list: a list, each entry kept as written.
    Discovery,
    /// A mapping of the given type.
    Struct(&'static Type),
    /// A list of mappings of the given type.
    List(&'static Type),
}

/// A struct's checks across its fields: its node (for lines) and its merged value.
pub type Rules = fn(&Node, &Json) -> Result<(), Problem>;

/// A Go config struct.
#[derive(Debug)]
pub struct Type {
    /// The Go type as Prometheus names it in "field X not found in type Y".
    pub go: &'static str,
    /// Its fields; inlined structs (`HTTPClientConfig` in `ScrapeConfig`) are further parts.
    pub parts: &'static [&'static [(&'static str, Kind)]],
    /// Whether the [`SD_CONFIGS`] lists are fields too (a scrape config).
    pub discovery: bool,
    /// What its `Validate` / `UnmarshalYAML` checks across fields.
    pub rules: Option<Rules>,
}

impl Type {
    fn field(&self, name: &str) -> Option<Kind> {
        self.parts
            .iter()
            .flat_map(|part| part.iter())
            .find(|(field, _)| *field == name)
            .map(|(_, kind)| *kind)
    }
}

/// Something Prometheus would refuse: where (a path below the checked node, and a line) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path from the checked node, e.g. `tls_config.cert_fle`; empty for the node itself.
    pub path: String,
    /// 1-based line in the file the node came from (0: unknown, e.g. a generated node).
    pub line: usize,
    pub message: String,
}

impl Problem {
    fn new(path: &str, line: usize, message: impl Into<String>) -> Problem {
        Problem {
            path: path.to_string(),
            line,
            message: message.into(),
        }
    }

    /// `prefix.path (line N): message`, the way promfed's config errors read.
    pub fn describe(&self, prefix: &str) -> String {
        self.describe_in(prefix, None)
    }

    /// Like [`Problem::describe`], naming what the path is in: `path (line N, job "x"): ...`.
    pub fn describe_in(&self, prefix: &str, context: Option<&str>) -> String {
        let path = join_path(prefix, &self.path);
        let mut notes = Vec::new();
        if self.line > 0 {
            notes.push(format!("line {}", self.line));
        }
        notes.extend(context.map(str::to_string));
        let notes = notes.join(", ");
        match (path.is_empty(), notes.is_empty()) {
            (true, true) => self.message.clone(),
            (true, false) => format!("{notes}: {}", self.message),
            (false, true) => format!("{path}: {}", self.message),
            (false, false) => format!("{path} ({notes}): {}", self.message),
        }
    }
}

/// `path` + `.key` (or `["key"]` when the key is not a plain word).
fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

// ---------------------------------------------------------------------------------------
// The tables

/// `config.ScrapeConfig`'s own fields (config/config.go).
const SCRAPE_OWN: &[(&str, Kind)] = &[
    ("job_name", Kind::Str),
    ("honor_labels", Kind::Bool),
    ("honor_timestamps", Kind::Bool),
    ("track_timestamps_staleness", Kind::Bool),
    ("params", Kind::StrListMap),
    ("scrape_interval", Kind::Duration),
    ("scrape_timeout", Kind::Duration),
    ("scrape_protocols", Kind::StrList),
    ("fallback_scrape_protocol", Kind::Str),
    ("scrape_native_histograms", Kind::Bool),
    ("always_scrape_classic_histograms", Kind::Bool),
    // 2.45 to 2.55; renamed always_scrape_classic_histograms in 3.0.
    ("scrape_classic_histograms", Kind::Bool),
    ("convert_classic_histograms_to_nhcb", Kind::Bool),
    ("scrape_failure_log_file", Kind::Str),
    ("metrics_path", Kind::Str),
    ("scheme", Kind::Str),
    ("enable_compression", Kind::Bool),
    ("body_size_limit", Kind::Str),
    ("sample_limit", Kind::Uint),
    ("target_limit", Kind::Uint),
    ("label_limit", Kind::Uint),
    ("label_name_length_limit", Kind::Uint),
    ("label_value_length_limit", Kind::Uint),
    ("native_histogram_bucket_limit", Kind::Uint),
    ("native_histogram_min_bucket_factor", Kind::Float),
    ("keep_dropped_targets", Kind::Uint),
    ("metric_name_validation_scheme", Kind::Str),
    ("metric_name_escaping_scheme", Kind::Str),
    ("extra_scrape_metrics", Kind::Bool),
    ("relabel_configs", Kind::List(&RELABEL_CONFIG)),
    ("metric_relabel_configs", Kind::List(&RELABEL_CONFIG)),
    ("static_configs", Kind::List(&STATIC_CONFIG)),
];

/// The service discovery lists a scrape config may hold (Prometheus' configuration docs,
/// `<scrape_config>`); their entries are kept as written.
pub const SD_CONFIGS: &[&str] = &[
    "azure_sd_configs",
    "consul_sd_configs",
    "digitalocean_sd_configs",
    "docker_sd_configs",
    "dockerswarm_sd_configs",
    "dns_sd_configs",
    "ec2_sd_configs",
    "eureka_sd_configs",
    "file_sd_configs",
    "gce_sd_configs",
    "hetzner_sd_configs",
    "http_sd_configs",
    "ionos_sd_configs",
    "kubernetes_sd_configs",
    "kuma_sd_configs",
    "lightsail_sd_configs",
    "linode_sd_configs",
    "marathon_sd_configs",
    "nerve_sd_configs",
    "nomad_sd_configs",
    "openstack_sd_configs",
    "ovhcloud_sd_configs",
    "puppetdb_sd_configs",
    "scaleway_sd_configs",
    "serverset_sd_configs",
    "stackit_sd_configs",
    "triton_sd_configs",
    "uyuni_sd_configs",
    "vultr_sd_configs",
];

/// `config.HTTPClientConfig` (prometheus/common config/http_config.go), inlined in scrape configs.
const HTTP_CLIENT: &[(&str, Kind)] = &[
    ("basic_auth", Kind::Struct(&BASIC_AUTH)),
    ("authorization", Kind::Struct(&AUTHORIZATION)),
    ("oauth2", Kind::Struct(&OAUTH2)),
    ("bearer_token", Kind::Secret),
    ("bearer_token_file", Kind::Str),
    ("tls_config", Kind::Struct(&TLS_CONFIG)),
    ("follow_redirects", Kind::Bool),
    ("enable_http2", Kind::Bool),
    ("http_headers", Kind::Headers),
];

/// `config.ProxyConfig`, inlined in `HTTPClientConfig` and `OAuth2`.
const PROXY: &[(&str, Kind)] = &[
    ("proxy_url", Kind::Str),
    ("no_proxy", Kind::Str),
    ("proxy_from_environment", Kind::Bool),
    ("proxy_connect_header", Kind::StrListMap),
];

pub static SCRAPE_CONFIG: Type = Type {
    go: "config.ScrapeConfig",
    parts: &[SCRAPE_OWN, HTTP_CLIENT, PROXY],
    discovery: true,
    rules: Some(scrape_config_rules),
};

pub static TLS_CONFIG: Type = Type {
    go: "config.TLSConfig",
    parts: &[&[
        ("ca", Kind::Str),
        ("cert", Kind::Str),
        ("key", Kind::Secret),
        ("ca_file", Kind::Str),
        ("cert_file", Kind::Str),
        ("key_file", Kind::Str),
        ("ca_ref", Kind::Str),
        ("cert_ref", Kind::Str),
        ("key_ref", Kind::Str),
        ("server_name", Kind::Str),
        ("insecure_skip_verify", Kind::Bool),
        ("min_version", Kind::TlsVersion),
        ("max_version", Kind::TlsVersion),
        ("next_protos", Kind::StrList),
    ]],
    discovery: false,
    rules: Some(tls_rules),
};

pub static BASIC_AUTH: Type = Type {
    go: "config.BasicAuth",
    parts: &[&[
        ("username", Kind::Secret),
        ("username_file", Kind::Str),
        ("username_ref", Kind::Str),
        ("password", Kind::Secret),
        ("password_file", Kind::Str),
        ("password_ref", Kind::Str),
    ]],
    discovery: false,
    rules: Some(basic_auth_rules),
};

pub static AUTHORIZATION: Type = Type {
    go: "config.Authorization",
    parts: &[&[
        ("type", Kind::Str),
        ("credentials", Kind::Secret),
        ("credentials_file", Kind::Str),
        ("credentials_ref", Kind::Str),
    ]],
    discovery: false,
    rules: Some(authorization_rules),
};

pub static OAUTH2: Type = Type {
    go: "config.OAuth2",
    parts: &[
        &[
            ("client_id", Kind::Str),
            ("client_secret", Kind::Secret),
            ("client_secret_file", Kind::Str),
            ("client_secret_ref", Kind::Str),
            ("client_certificate_key_id", Kind::Str),
            ("client_certificate_key", Kind::Secret),
            ("client_certificate_key_file", Kind::Str),
            ("grant_type", Kind::Str),
            ("signature_algorithm", Kind::Str),
            ("iss", Kind::Str),
            ("audience", Kind::Str),
            ("claims", Kind::Any),
            ("scopes", Kind::StrList),
            ("token_url", Kind::Str),
            ("endpoint_params", Kind::StrMap),
            ("tls_config", Kind::Struct(&TLS_CONFIG)),
        ],
        PROXY,
    ],
    discovery: false,
    rules: Some(oauth2_rules),
};

/// One entry of `http_headers` (`config.Header`).
pub static HEADER: Type = Type {
    go: "config.Header",
    parts: &[&[
        ("values", Kind::StrList),
        ("secrets", Kind::StrList),
        ("files", Kind::StrList),
    ]],
    discovery: false,
    rules: None,
};

pub static RELABEL_CONFIG: Type = Type {
    go: "relabel.Config",
    parts: &[&[
        ("source_labels", Kind::LabelNames),
        ("separator", Kind::Str),
        ("regex", Kind::Regex),
        ("modulus", Kind::Uint),
        ("target_label", Kind::Str),
        ("replacement", Kind::Str),
        ("action", Kind::Action),
    ]],
    discovery: false,
    rules: Some(relabel_rules),
};

pub static STATIC_CONFIG: Type = Type {
    go: "targetgroup.Group",
    parts: &[&[("targets", Kind::StrList), ("labels", Kind::Labels)]],
    discovery: false,
    rules: None,
};

pub static RULE_GROUP: Type = Type {
    go: "rulefmt.RuleGroup",
    parts: &[&[
        ("name", Kind::Str),
        ("interval", Kind::Duration),
        ("query_offset", Kind::Duration),
        ("limit", Kind::Uint),
        ("labels", Kind::Labels),
        ("rules", Kind::List(&RULE)),
    ]],
    discovery: false,
    rules: Some(rule_group_rules),
};

pub static RULE: Type = Type {
    go: "rulefmt.RuleNode",
    parts: &[&[
        ("record", Kind::Str),
        ("alert", Kind::Str),
        ("expr", Kind::Str),
        ("for", Kind::Duration),
        ("keep_firing_for", Kind::Duration),
        ("labels", Kind::Labels),
        ("annotations", Kind::StrMap),
    ]],
    discovery: false,
    rules: Some(rule_rules),
};

/// The relabel actions (case-insensitive, like Prometheus).
const ACTIONS: &[&str] = &[
    "replace",
    "keep",
    "drop",
    "keepequal",
    "dropequal",
    "hashmod",
    "labelmap",
    "labeldrop",
    "labelkeep",
    "lowercase",
    "uppercase",
];

const TLS_VERSIONS: &[&str] = &["TLS10", "TLS11", "TLS12", "TLS13"];

// ---------------------------------------------------------------------------------------
// The checker

/// Check `node` as a value of type `ty`.
pub fn check(node: &Node, ty: &Type) -> Result<(), Problem> {
    check_struct(node, ty, "")
}

fn check_struct(node: &Node, ty: &Type, path: &str) -> Result<(), Problem> {
    if node.is_null() {
        return Ok(());
    }
    check_fields(node, ty, path)?;
    if let Some(rules) = ty.rules {
        rules(node, &node.to_json()).map_err(|p| Problem {
            path: join_path(path, &p.path),
            ..p
        })?;
    }
    Ok(())
}

/// Check the fields of a mapping, and those of any mapping merged into it with `<<`.
fn check_fields(node: &Node, ty: &Type, path: &str) -> Result<(), Problem> {
    let Some(entries) = node.as_map() else {
        return Err(Problem::new(
            path,
            node.line,
            format!("must be a mapping ({})", ty.go),
        ));
    };
    for (key, value) in entries {
        let Some(name) = key.scalar_text() else {
            return Err(Problem::new(path, key.line, "keys must be strings"));
        };
        if is_merge(key) {
            for source in merged(value) {
                check_fields(source, ty, path)?;
            }
            continue;
        }
        let field_path = join(path, name);
        let kind = match ty.field(name) {
            Some(kind) => kind,
            None if ty.discovery && SD_CONFIGS.contains(&name) => Kind::Discovery,
            None => {
                return Err(Problem::new(
                    &field_path,
                    key.line,
                    format!("field {name} not found in type {}", ty.go),
                ));
            }
        };
        check_value(value, kind, &field_path)?;
    }
    Ok(())
}

/// `path` + a relative path from a rule (`scrape_timeout`, `static_configs[0].targets[1]`).
fn join_path(path: &str, rest: &str) -> String {
    match (path.is_empty(), rest.is_empty()) {
        (_, true) => path.to_string(),
        (true, false) => rest.to_string(),
        (false, false) if rest.starts_with('[') => format!("{path}{rest}"),
        (false, false) => format!("{path}.{rest}"),
    }
}

fn is_merge(key: &Node) -> bool {
    matches!(&key.value, Value::Scalar(s) if s.kind() == YamlKind::Merge)
}

/// The mappings a merge key (`<<: *a` or `<<: [*a, *b]`) brings in.
fn merged(value: &Node) -> Vec<&Node> {
    match &value.value {
        Value::Map(_) => vec![value],
        Value::Seq(items) => items.iter().filter(|i| i.as_map().is_some()).collect(),
        Value::Scalar(_) => Vec::new(),
    }
}

fn scalar_kind(node: &Node) -> Option<YamlKind> {
    match &node.value {
        Value::Scalar(s) => Some(s.kind()),
        _ => None,
    }
}

fn type_name(node: &Node) -> &'static str {
    match &node.value {
        Value::Map(_) => "a mapping",
        Value::Seq(_) => "a list",
        Value::Scalar(s) => match s.kind() {
            YamlKind::Bool => "a boolean",
            YamlKind::Int => "an integer",
            YamlKind::Float => "a number",
            _ => "a string",
        },
    }
}

pub fn check_value(node: &Node, kind: Kind, path: &str) -> Result<(), Problem> {
    let wrong = |want: &str| {
        Problem::new(
            path,
            node.line,
            format!("must be {want}, not {}", type_name(node)),
        )
    };
    if node.is_null() && !matches!(kind, Kind::Action) {
        // Go leaves the zero value: the field's default.
        return Ok(());
    }
    match kind {
        Kind::Str => scalar_kind(node)
            .map(|_| ())
            .ok_or_else(|| wrong("a string")),
        Kind::Secret => match &node.value {
            Value::Seq(_) => Err(wrong("a string")),
            _ => Ok(()),
        },
        Kind::Bool => match scalar_kind(node) {
            Some(YamlKind::Bool) => Ok(()),
            _ => Err(wrong("true or false")),
        },
        Kind::Uint | Kind::Float => {
            let number = node.to_json().as_f64();
            match (scalar_kind(node), number) {
                (Some(YamlKind::Int | YamlKind::Float), Some(n))
                    if n >= 0.0 || matches!(kind, Kind::Float) =>
                {
                    Ok(())
                }
                _ if matches!(kind, Kind::Uint) => Err(wrong("a non-negative integer")),
                _ => Err(wrong("a number")),
            }
        }
        Kind::Duration => {
            let text = node.scalar_text().ok_or_else(|| wrong("a duration"))?;
            duration::parse(text)
                .map(|_| ())
                .map_err(|e| Problem::new(path, node.line, e.to_string()))
        }
        Kind::Regex => {
            let text = node.scalar_text().ok_or_else(|| wrong("a regex"))?;
            re2::check(text).map_err(|e| Problem::new(path, node.line, e))
        }
        Kind::Action => {
            let text = node.scalar_text().unwrap_or_default();
            if node.is_null() || !ACTIONS.contains(&text.to_ascii_lowercase().as_str()) {
                return Err(Problem::new(
                    path,
                    node.line,
                    format!(
                        "unknown relabel action {text:?} (one of {})",
                        ACTIONS.join(", ")
                    ),
                ));
            }
            Ok(())
        }
        Kind::TlsVersion => {
            let text = node.scalar_text().unwrap_or_default();
            if TLS_VERSIONS.contains(&text) {
                Ok(())
            } else {
                Err(Problem::new(
                    path,
                    node.line,
                    format!(
                        "unknown TLS version: {text} (one of {})",
                        TLS_VERSIONS.join(", ")
                    ),
                ))
            }
        }
        Kind::StrList => {
            let items = node.as_seq().ok_or_else(|| wrong("a list"))?;
            for (i, item) in items.iter().enumerate() {
                check_value(item, Kind::Str, &index(path, i))?;
            }
            Ok(())
        }
        Kind::LabelNames => {
            let items = node
                .as_seq()
                .ok_or_else(|| wrong("a list of label names"))?;
            for (i, item) in items.iter().enumerate() {
                check_label_name_node(item, &index(path, i))?;
            }
            Ok(())
        }
        Kind::Labels => {
            let entries = node.as_map().ok_or_else(|| wrong("a mapping of labels"))?;
            for (key, value) in entries {
                let name = key.scalar_text().unwrap_or_default();
                let entry_path = join(path, name);
                check_label_name_node(key, &entry_path)?;
                check_value(value, Kind::Str, &entry_path)?;
            }
            Ok(())
        }
        Kind::StrMap | Kind::StrListMap | Kind::Headers => {
            let entries = node.as_map().ok_or_else(|| wrong("a mapping"))?;
            for (key, value) in entries {
                let name = key
                    .scalar_text()
                    .ok_or_else(|| Problem::new(path, key.line, "keys must be strings"))?;
                let entry_path = join(path, name);
                match kind {
                    Kind::StrMap => check_value(value, Kind::Str, &entry_path)?,
                    Kind::StrListMap => check_value(value, Kind::StrList, &entry_path)?,
                    _ => check_struct(value, &HEADER, &entry_path)?,
                }
            }
            Ok(())
        }
        Kind::Any => Ok(()),
        Kind::Discovery => node.as_seq().map(|_| ()).ok_or_else(|| wrong("a list")),
        Kind::Struct(ty) => check_struct(node, ty, path),
        Kind::List(ty) => {
            let items = node.as_seq().ok_or_else(|| wrong("a list"))?;
            for (i, item) in items.iter().enumerate() {
                let item_path = index(path, i);
                if item.as_map().is_none() {
                    return Err(Problem::new(
                        &item_path,
                        item.line,
                        format!("must be a mapping ({}), not {}", ty.go, type_name(item)),
                    ));
                }
                check_struct(item, ty, &item_path)?;
            }
            Ok(())
        }
    }
}

fn check_label_name_node(node: &Node, path: &str) -> Result<(), Problem> {
    let name = node.scalar_text().unwrap_or_default();
    if node.scalar_text().is_some() && is_label_name(name) {
        return Ok(());
    }
    Err(Problem::new(path, node.line, label_name_error(name)))
}

/// Why `name` is not a label name.
pub fn label_name_error(name: &str) -> String {
    format!(
        "{name:?} is not a valid label name: it must match [a-zA-Z_][a-zA-Z0-9_]* \
         (what Prometheus 2.x accepts)"
    )
}

// ---------------------------------------------------------------------------------------
// Rules across fields (the structs' Validate methods)

/// A non-empty string field of a JSON object.
fn text<'a>(json: &'a Json, key: &str) -> Option<&'a str> {
    json.get(key)
        .and_then(|v| match v {
            Json::String(s) => Some(s.as_str()),
            _ => None,
        })
        .filter(|s| !s.is_empty())
}

/// Whether a field is set to something other than null or an empty string.
fn set(json: &Json, key: &str) -> bool {
    match json.get(key) {
        None | Some(Json::Null) => false,
        Some(Json::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// The line of `key` in `node`, or the node's own.
fn line_of(node: &Node, key: &str) -> usize {
    node.get(key).map_or(node.line, |n| n.line)
}

/// At most one of `keys` may be set.
fn at_most_one(node: &Node, json: &Json, keys: &[&str]) -> Result<(), Problem> {
    let present: Vec<&str> = keys.iter().copied().filter(|k| set(json, k)).collect();
    if present.len() > 1 {
        return Err(Problem::new(
            "",
            line_of(node, present[1]),
            format!(
                "at most one of {} may be set (has {})",
                keys.join(", "),
                present.join(" and ")
            ),
        ));
    }
    Ok(())
}

/// The default global scrape interval (Prometheus' `DefaultGlobalConfig`).
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);

/// A scrape config's explicit `scrape_timeout` must not exceed its interval (its own
/// `scrape_interval`, else `global_interval`), as `ScrapeConfig.Validate` requires.
/// `global_interval` says where it came from, for the message. A timeout left out never
/// does: Prometheus takes min(global scrape_timeout, interval).
pub fn check_timeout(node: &Node, global_interval: (Duration, &str)) -> Result<(), Problem> {
    let get = |key: &str| -> Option<Duration> {
        node.get(key)
            .and_then(Node::scalar_text)
            .and_then(|t| duration::parse(t).ok())
            .filter(|d| !d.is_zero())
    };
    let Some(timeout) = get("scrape_timeout") else {
        return Ok(());
    };
    let (interval, from) = match get("scrape_interval") {
        Some(own) => (own, "its scrape_interval".to_string()),
        None => (global_interval.0, global_interval.1.to_string()),
    };
    if timeout > interval {
        return Err(Problem::new(
            "scrape_timeout",
            line_of(node, "scrape_timeout"),
            format!(
                "scrape_timeout {timeout} is greater than the scrape interval {interval} \
                 ({from}); Prometheus refuses a scrape timeout greater than the scrape interval"
            ),
        ));
    }
    Ok(())
}

fn scrape_config_rules(node: &Node, json: &Json) -> Result<(), Problem> {
    if text(json, "job_name").is_none() {
        return Err(Problem::new(
            "job_name",
            line_of(node, "job_name"),
            "job_name is empty",
        ));
    }
    check_timeout(
        node,
        (
            DEFAULT_SCRAPE_INTERVAL,
            "Prometheus' default global scrape_interval",
        ),
    )?;
    http_client_rules(node, json)?;
    // Without relabel rules a static target is used as the address as written
    // (config.CheckTargetAddress).
    let relabels = json
        .get("relabel_configs")
        .and_then(Json::as_array)
        .is_some_and(|r| !r.is_empty());
    if !relabels {
        let statics = json.get("static_configs").and_then(Json::as_array);
        for (i, group) in statics.into_iter().flatten().enumerate() {
            let targets = group.get("targets").and_then(Json::as_array);
            for (j, target) in targets.into_iter().flatten().enumerate() {
                let target = target.as_str().unwrap_or_default();
                if target.contains('/') {
                    let line = node
                        .get("static_configs")
                        .and_then(|s| s.as_seq()?.get(i)?.get("targets")?.as_seq()?.get(j))
                        .map_or(node.line, |n| n.line);
                    return Err(Problem::new(
                        &format!("static_configs[{i}].targets[{j}]"),
                        line,
                        format!(
                            "{target:?} is not a valid hostname: a target is host:port \
                             (set scheme and metrics_path for the rest)"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn http_client_rules(node: &Node, json: &Json) -> Result<(), Problem> {
    at_most_one(node, json, &["bearer_token", "bearer_token_file"])?;
    at_most_one(
        node,
        json,
        &["basic_auth", "oauth2", "authorization", "bearer_token"],
    )?;
    at_most_one(
        node,
        json,
        &["basic_auth", "oauth2", "authorization", "bearer_token_file"],
    )?;
    proxy_rules(node, json)
}

fn proxy_rules(node: &Node, json: &Json) -> Result<(), Problem> {
    let url = set(json, "proxy_url");
    let from_env = json.get("proxy_from_environment") == Some(&Json::Bool(true));
    let fail = |key: &str, message: &str| Err(Problem::new(key, line_of(node, key), message));
    if set(json, "proxy_connect_header") && !url && !from_env {
        return fail(
            "proxy_connect_header",
            "if proxy_connect_header is configured, proxy_url or proxy_from_environment must also be configured",
        );
    }
    if from_env && url {
        return fail(
            "proxy_url",
            "if proxy_from_environment is configured, proxy_url must not be configured",
        );
    }
    if from_env && set(json, "no_proxy") {
        return fail(
            "no_proxy",
            "if proxy_from_environment is configured, no_proxy must not be configured",
        );
    }
    if !url && set(json, "no_proxy") {
        return fail(
            "no_proxy",
            "if no_proxy is configured, proxy_url must also be configured",
        );
    }
    Ok(())
}

fn tls_rules(node: &Node, json: &Json) -> Result<(), Problem> {
    at_most_one(node, json, &["ca", "ca_file", "ca_ref"])?;
    at_most_one(node, json, &["cert", "cert_file", "cert_ref"])?;
    at_most_one(node, json, &["key", "key_file", "key_ref"])?;
    let cert = ["cert", "cert_file", "cert_ref"]
        .iter()
        .any(|k| set(json, k));
    let key = ["key", "key_file", "key_ref"].iter().any(|k| set(json, k));
    if cert && !key {
        return Err(Problem::new(
            "",
            node.line,
            "a client certificate (cert_file) needs its key (key_file)",
        ));
    }
    if key && !cert {
        return Err(Problem::new(
            "",
            node.line,
            "a client key (key_file) needs its certificate (cert_file)",
        ));
    }
    Ok(())
}

fn basic_auth_rules(node: &Node, json: &Json) -> Result<(), Problem> {
    at_most_one(node, json, &["username", "username_file", "username_ref"])?;
    at_most_one(node, json, &["password", "password_file", "password_ref"])
}

fn authorization_rules(node: &Node, json: &Json) -> Result<(), Problem> {
    at_most_one(
        node,
        json,
        &["credentials", "credentials_file", "credentials_ref"],
    )?;
    if text(json, "type").is_some_and(|t| t.trim().eq_ignore_ascii_case("basic")) {
        return Err(Problem::new(
            "type",
            line_of(node, "type"),
            "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
        ));
    }
    Ok(())
}

fn oauth2_rules(node: &Node, json: &Json) -> Result<(), Problem> {
    for required in ["client_id", "token_url"] {
        if text(json, required).is_none() {
            return Err(Problem::new(
                "",
                node.line,
                format!("oauth2 {required} must be configured"),
            ));
        }
    }
    at_most_one(
        node,
        json,
        &["client_secret", "client_secret_file", "client_secret_ref"],
    )?;
    proxy_rules(node, json)
}

/// `relabel.Config.Validate`, with 2.x's label name syntax.
fn relabel_rules(node: &Node, json: &Json) -> Result<(), Problem> {
    let action = text(json, "action")
        .unwrap_or("replace")
        .to_ascii_lowercase();
    let action = action.as_str();
    let target = text(json, "target_label");
    // Explicitly set to something other than the default.
    let differs = |key: &str, default: &str| match json.get(key) {
        None | Some(Json::Null) => false,
        Some(Json::String(s)) => s != default,
        Some(Json::Number(n)) => n.as_f64() != Some(0.0) || !default.is_empty(),
        Some(_) => true,
    };
    let fail = |key: &str, message: String| {
        Err(Problem::new(
            if node.get(key).is_some() { key } else { "" },
            line_of(node, key),
            message,
        ))
    };
    let modulus = json.get("modulus").and_then(Json::as_f64).unwrap_or(0.0);
    if action == "hashmod" && modulus == 0.0 {
        return fail(
            "modulus",
            "relabel configuration for hashmod requires non-zero modulus".into(),
        );
    }
    let needs_target = [
        "replace",
        "hashmod",
        "lowercase",
        "uppercase",
        "keepequal",
        "dropequal",
    ];
    if needs_target.contains(&action) {
        let Some(target) = target else {
            return fail(
                "target_label",
                format!("relabel configuration for {action} action requires 'target_label' value"),
            );
        };
        let valid = if action == "replace" && target.contains('$') {
            is_relabel_template(target)
        } else {
            is_label_name(target)
        };
        if !valid {
            return fail(
                "target_label",
                format!(
                    "{target:?} is invalid 'target_label' for {action} action (a label name: \
                     [a-zA-Z_][a-zA-Z0-9_]*)"
                ),
            );
        }
    }
    if ["lowercase", "uppercase", "keepequal", "dropequal"].contains(&action)
        && differs("replacement", "$1")
    {
        return fail(
            "replacement",
            format!("'replacement' can not be set for {action} action"),
        );
    }
    if action == "labelmap" {
        let replacement = json
            .get("replacement")
            .and_then(Json::as_str)
            .unwrap_or("$1");
        if !is_relabel_template(replacement) {
            return fail(
                "replacement",
                format!("{replacement:?} is invalid 'replacement' for labelmap action"),
            );
        }
    }
    if (action == "keepequal" || action == "dropequal")
        && (differs("regex", "(.*)")
            || differs("modulus", "")
            || differs("separator", ";")
            || differs("replacement", "$1"))
    {
        return fail(
            "",
            format!(
                "{action} action requires only 'source_labels' and `target_label`, and no other fields"
            ),
        );
    }
    if (action == "labeldrop" || action == "labelkeep")
        && (json.get("source_labels").is_some_and(|v| !v.is_null())
            || differs("target_label", "")
            || differs("modulus", "")
            || differs("separator", ";")
            || differs("replacement", "$1"))
    {
        return fail(
            "",
            format!("{action} action requires only 'regex', and no other fields"),
        );
    }
    Ok(())
}

/// Prometheus' `relabelTarget`: label name characters and `$1`, `${1}`, `$name`, `${name}`
/// references, not starting with a digit.
fn is_relabel_template(text: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = text.chars().peekable();
    let mut first = true;
    while let Some(c) = chars.next() {
        if c == '$' {
            if chars.peek() == Some(&'{') {
                chars.next();
                let mut n = 0;
                while chars.peek().is_some_and(|c| word(*c)) {
                    chars.next();
                    n += 1;
                }
                if n == 0 || chars.next() != Some('}') {
                    return false;
                }
            } else {
                let mut n = 0;
                while chars.peek().is_some_and(|c| word(*c)) {
                    chars.next();
                    n += 1;
                }
                if n == 0 {
                    return false;
                }
            }
        } else if !(word(c) && !(first && c.is_ascii_digit())) {
            return false;
        }
        first = false;
    }
    !first
}

fn rule_group_rules(node: &Node, json: &Json) -> Result<(), Problem> {
    if text(json, "name").is_none() {
        return Err(Problem::new(
            "name",
            node.line,
            "rule group name must not be empty",
        ));
    }
    Ok(())
}

fn rule_rules(node: &Node, json: &Json) -> Result<(), Problem> {
    let record = text(json, "record");
    let alert = text(json, "alert");
    match (record, alert) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(Problem::new(
                "",
                node.line,
                "a rule needs exactly one of record and alert",
            ));
        }
        (Some(name), None) if !is_metric_name(name) => {
            return Err(Problem::new(
                "record",
                line_of(node, "record"),
                format!("invalid recording rule name: {name}"),
            ));
        }
        (Some(_), None) if set(json, "for") || set(json, "keep_firing_for") => {
            return Err(Problem::new(
                "for",
                line_of(node, "for"),
                "invalid field 'for' or 'keep_firing_for' in recording rule",
            ));
        }
        _ => {}
    }
    if text(json, "expr").is_none() {
        return Err(Problem::new(
            "expr",
            line_of(node, "expr"),
            "field 'expr' must be set in rule",
        ));
    }
    if json.get("labels").and_then(|l| l.get("__name__")).is_some() {
        return Err(Problem::new(
            "labels.__name__",
            line_of(node, "labels"),
            "invalid label name: __name__",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{self, Limits};

    fn node(text: &str) -> Node {
        yaml::parse(text, Limits::default()).unwrap().unwrap()
    }

    fn problem(text: &str, ty: &Type) -> String {
        check(&node(text), ty)
            .map(|()| "ok".to_string())
            .unwrap_or_else(|p| p.describe("job"))
    }

    #[test]
    fn scrape_configs_prometheus_accepts() {
        for text in [
            "job_name: a\n",
            "job_name: a\nscrape_interval: 30s\nscrape_timeout: 30s\n",
            "job_name: a\nscrape_timeout: 1m\n",
            "job_name: a\nhonor_labels: yes\nparams: {'match[]': ['{job=\"x\"}']}\n",
            "job_name: a\nstatic_configs:\n- targets: [a:1]\n  labels: {cluster: b, __param_x: y}\n",
            "job_name: a\nkubernetes_sd_configs:\n- role: pod\n  whatever: kept\n",
            "job_name: a\ntls_config: {ca_file: x, cert_file: c, key_file: k, min_version: TLS12}\n",
            "job_name: a\nbasic_auth: {username: u, password_file: p}\n",
            "job_name: a\noauth2: {client_id: i, token_url: t, client_secret_file: f}\n",
            "job_name: a\nauthorization: {type: Bearer, credentials_file: f}\n",
            "job_name: a\nhttp_headers: {X-A: {values: [b]}}\nproxy_url: http://p\nno_proxy: x\n",
            "job_name: a\nrelabel_configs:\n- action: LabelMap\n  regex: __meta_(.+)\n- {source_labels: [a, b], separator: '-', target_label: '${1}_x', regex: '(.*)'}\n- {action: hashmod, modulus: 4, source_labels: [a], target_label: shard}\n- {action: labeldrop, regex: tmp_.*}\n- {action: keepequal, source_labels: [a], target_label: b}\n- {action: lowercase, source_labels: [a], target_label: b}\n",
            "job_name: a\n<<: {honor_labels: true}\n",
        ] {
            assert_eq!(problem(text, &SCRAPE_CONFIG), "ok", "{text}");
        }
    }

    #[test]
    fn scrape_configs_prometheus_refuses() {
        let cases = [
            (
                "job_name: a\nscrape_intervall: 30s\n",
                "job.scrape_intervall (line 2): field scrape_intervall not found in type config.ScrapeConfig",
            ),
            (
                "job_name: a\ntls_config:\n  cert_fle: x\n",
                "job.tls_config.cert_fle (line 3): field cert_fle not found in type config.TLSConfig",
            ),
            (
                "job_name: a\nscrape_interval: 30 seconds\n",
                "job.scrape_interval (line 2): \"30 seconds\" is not a valid duration",
            ),
            (
                "job_name: a\nscrape_interval: 30s\nscrape_timeout: 1m\n",
                "job.scrape_timeout (line 3): scrape_timeout 1m is greater than the scrape interval 30s",
            ),
            (
                "job_name: a\nscrape_timeout: 2m\n",
                "default global scrape_interval",
            ),
            (
                "job_name: a\nstatic_configs:\n- targets: [x:1]\n  labels: {bad-label: x}\n",
                "job.static_configs[0].labels.bad-label (line 4): \"bad-label\" is not a valid label name",
            ),
            (
                "job_name: a\nhonor_labels: maybe\n",
                "must be true or false",
            ),
            ("job_name: a\nsample_limit: -1\n", "non-negative integer"),
            ("job_name: ''\n", "job_name is empty"),
            (
                "job_name: a\nrelabel_configs:\n- action: replce\n",
                "job.relabel_configs[0].action (line 3): unknown relabel action \"replce\"",
            ),
            (
                "job_name: a\nrelabel_configs:\n- regex: '('\n  target_label: x\n",
                "invalid regex \"(\"",
            ),
            (
                "job_name: a\nrelabel_configs:\n- source_labels: [a-b]\n  target_label: x\n",
                "\"a-b\" is not a valid label name",
            ),
            (
                "job_name: a\nrelabel_configs:\n- source_labels: [a]\n",
                "requires 'target_label'",
            ),
            (
                "job_name: a\nrelabel_configs:\n- {target_label: bad-label}\n",
                "invalid 'target_label'",
            ),
            (
                "job_name: a\nrelabel_configs:\n- {action: hashmod, target_label: x}\n",
                "non-zero modulus",
            ),
            (
                "job_name: a\nrelabel_configs:\n- {action: labeldrop, regex: x, target_label: y}\n",
                "requires only 'regex'",
            ),
            ("job_name: a\nrelabel_configs:\n- ~\n", "must be a mapping"),
            (
                "job_name: a\nbasic_auth: {password: x, password_file: y}\n",
                "at most one of password, password_file",
            ),
            (
                "job_name: a\nbasic_auth: {username: u}\nauthorization: {credentials: x}\n",
                "at most one of basic_auth, oauth2, authorization",
            ),
            ("job_name: a\ntls_config: {cert_file: c}\n", "needs its key"),
            (
                "job_name: a\ntls_config: {min_version: TLS1.2}\n",
                "unknown TLS version",
            ),
            ("job_name: a\noauth2: {client_id: x}\n", "token_url"),
            (
                "job_name: a\nstatic_configs:\n- targets: [https://x/federate]\n",
                "is not a valid hostname",
            ),
            (
                "job_name: a\nstatic_configs: {targets: [x]}\n",
                "must be a list",
            ),
            (
                "job_name: a\nfile_sd_configs: {files: [x]}\n",
                "must be a list",
            ),
            (
                "job_name: a\nfoo_sd_configs: []\n",
                "field foo_sd_configs not found",
            ),
            ("job_name: a\nparams: {x: y}\n", "must be a list"),
            (
                "job_name: a\nno_proxy: x\n",
                "proxy_url must also be configured",
            ),
            (
                "job_name: a\n<<: {scrape_intervall: 1m}\n",
                "field scrape_intervall not found",
            ),
        ];
        for (text, want) in cases {
            let got = problem(text, &SCRAPE_CONFIG);
            assert!(got.contains(want), "{text}\n  got: {got}\n want: {want}");
        }
    }

    #[test]
    fn relabel_templates() {
        for ok in ["a", "_a", "$1", "${1}", "a_$1", "${name}_x", "x$1y", "a1"] {
            assert!(is_relabel_template(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "$", "${}", "${1", "a.b", "$-"] {
            assert!(!is_relabel_template(bad), "{bad}");
        }
    }

    #[test]
    fn rule_groups() {
        let good = "name: g\nrules:\n- alert: A\n  expr: up == 0\n  for: 5m\n  keep_firing_for: 1m\n  labels: {severity: critical}\n  annotations: {summary: x}\n";
        assert_eq!(problem(good, &RULE_GROUP), "ok");
        for (text, want) in [
            (
                "name: g\nrules:\n- alert: A\n  expr: up\n  for: 5 minutes\n",
                "job.rules[0].for (line 5): \"5 minutes\" is not a valid duration",
            ),
            (
                "name: g\nrules:\n- alert: A\n  expr: up\n  fro: 5m\n",
                "field fro not found in type rulefmt.RuleNode",
            ),
            (
                "name: g\nrules:\n- alert: A\n  expr: up\n  labels: {bad-label: x}\n",
                "not a valid label name",
            ),
            ("name: ''\nrules: []\n", "must not be empty"),
            (
                "name: g\nrules:\n- record: a-b\n  expr: up\n",
                "invalid recording rule name",
            ),
        ] {
            let got = problem(text, &RULE_GROUP);
            assert!(got.contains(want), "{text}\n  got: {got}\n want: {want}");
        }
    }
}
