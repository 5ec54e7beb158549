//! Rules across fields: what the structs' `Validate` and `UnmarshalYAML` methods refuse that no
//! single field's type does (conflicting auth settings, a timeout over the interval, relabel
//! rules missing what their action needs).

use serde_json::Value as Json;

use super::Problem;
use crate::prometheus::duration::{self, Duration};
use crate::prometheus::{is_label_name, is_metric_name};
use crate::yaml::Node;

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

pub(super) fn scrape_config_rules(node: &Node, json: &Json) -> Result<(), Problem> {
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

pub(super) fn tls_rules(node: &Node, json: &Json) -> Result<(), Problem> {
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

pub(super) fn basic_auth_rules(node: &Node, json: &Json) -> Result<(), Problem> {
    at_most_one(node, json, &["username", "username_file", "username_ref"])?;
    at_most_one(node, json, &["password", "password_file", "password_ref"])
}

pub(super) fn authorization_rules(node: &Node, json: &Json) -> Result<(), Problem> {
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

pub(super) fn oauth2_rules(node: &Node, json: &Json) -> Result<(), Problem> {
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
pub(super) fn relabel_rules(node: &Node, json: &Json) -> Result<(), Problem> {
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

pub(super) fn rule_group_rules(node: &Node, json: &Json) -> Result<(), Problem> {
    if text(json, "name").is_none() {
        return Err(Problem::new(
            "name",
            node.line,
            "rule group name must not be empty",
        ));
    }
    Ok(())
}

pub(super) fn rule_rules(node: &Node, json: &Json) -> Result<(), Problem> {
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

    #[test]
    fn relabel_templates() {
        for ok in ["a", "_a", "$1", "${1}", "a_$1", "${name}_x", "x$1y", "a1"] {
            assert!(is_relabel_template(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "$", "${}", "${1", "a.b", "$-"] {
            assert!(!is_relabel_template(bad), "{bad}");
        }
    }
}
