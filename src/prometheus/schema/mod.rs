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
//!
//! `fields.rs` holds the tables (each struct's fields and what they hold), `validate.rs` the
//! checks across fields (the structs' `Validate` methods); this file walks a node against them.

mod fields;
mod validate;

use serde_json::Value as Json;

use super::duration;
use super::{is_label_name, re2};
use crate::yaml::{Kind as YamlKind, Node, Value};
use fields::{ACTIONS, TLS_VERSIONS};

pub use fields::{
    AUTHORIZATION, BASIC_AUTH, HEADER, OAUTH2, RELABEL_CONFIG, RULE, RULE_GROUP, SCRAPE_CONFIG,
    SD_CONFIGS, STATIC_CONFIG, TLS_CONFIG,
};
pub use validate::{DEFAULT_SCRAPE_INTERVAL, check_timeout};

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

    /// The path from the setting `prefix`: `prefix.path`, `prefix[0]`.
    pub fn full_path(&self, prefix: &str) -> String {
        join_path(prefix, &self.path)
    }

    /// Like [`Problem::describe`], naming what the path is in: `path (line N, job "x"): ...`.
    pub fn describe_in(&self, prefix: &str, context: Option<&str>) -> String {
        let path = self.full_path(prefix);
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
