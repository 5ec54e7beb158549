//! Rule files: recording rules read local series only and carry the local cluster label.

use std::collections::HashMap;

use super::{Error, ErrorKind, Location, Stats, Warning, Work};
use crate::config::{AlertingMode, Config};
use crate::promql::{ScopeError, Scoped, Scoper};
use crate::yaml::Node;

/// Scoping results by expression text: real rule sets repeat expressions.
pub type Memo = HashMap<String, Result<Scoped, ScopeError>>;

/// Whether a parsed data value is a rule file (`groups:` at the top).
pub fn is_rule_file(root: &Node) -> bool {
    root.get("groups").is_some()
}

/// What rewriting a rule file takes besides the file: the settings and the scoper, and what
/// all rule files of one review share (scoping results, the work budget, stats, warnings).
pub struct Context<'a> {
    pub config: &'a Config,
    pub scoper: &'a Scoper,
    /// The federation alert group, which promfed writes and leaves unscoped.
    pub owned_group: Option<&'a str>,
    pub memo: &'a mut Memo,
    pub work: &'a mut Work,
    pub stats: &'a mut Stats,
    pub warnings: &'a mut Vec<Warning>,
}

/// Rewrite one rule file in place. Returns whether it changed.
pub fn rewrite(root: &mut Node, key: &str, cx: Context<'_>) -> Result<bool, Error> {
    let Context {
        config,
        scoper,
        owned_group,
        memo,
        work,
        stats,
        warnings,
    } = cx;
    let at = |group: Option<&str>, item: Option<String>, line: usize| Location {
        key: key.to_string(),
        group: group.map(str::to_string),
        item,
        line: Some(line).filter(|l| *l > 0),
    };
    if root.as_map().is_none() {
        return Err(Error::new(
            ErrorKind::Shape,
            at(None, None, root.line),
            "a rule file must be a mapping with `groups`",
        ));
    }
    let groups_line = root.get("groups").map_or(root.line, |g| g.line);
    let Some(groups) = root.get_mut("groups") else {
        return Ok(false);
    };
    if groups.is_null() {
        return Ok(false);
    }
    let Some(groups) = groups.as_seq_mut() else {
        return Err(Error::new(
            ErrorKind::Shape,
            at(None, None, groups_line),
            "groups must be a list of rule groups",
        ));
    };
    let label = &config.cluster_label_name;
    let local = &config.local_cluster_name;
    let mut changed = false;
    for group in groups.iter_mut() {
        let group_line = group.line;
        let Some(name) = group
            .get("name")
            .and_then(Node::scalar_text)
            .map(str::to_string)
        else {
            return Err(Error::new(
                ErrorKind::Rule,
                at(None, None, group_line),
                "rule group has no name",
            ));
        };
        if owned_group == Some(name.as_str())
            || config
                .rules
                .exclude
                .iter()
                .any(|e| e.rule.is_none() && e.matches(&name, None))
        {
            continue;
        }
        let rules_line = group.get("rules").map_or(group_line, |r| r.line);
        let Some(rules) = group.get_mut("rules") else {
            continue;
        };
        if rules.is_null() {
            continue;
        }
        let Some(rules) = rules.as_seq_mut() else {
            return Err(Error::new(
                ErrorKind::Shape,
                at(Some(&name), None, rules_line),
                "rules must be a list",
            ));
        };
        for rule in rules.iter_mut() {
            let line = rule.line;
            let record = rule
                .get("record")
                .and_then(Node::scalar_text)
                .map(str::to_string);
            let alert = rule
                .get("alert")
                .and_then(Node::scalar_text)
                .map(str::to_string);
            let (kind, rule_name) = match (&record, &alert) {
                (Some(r), None) => ("record", r.clone()),
                (None, Some(a)) => ("alert", a.clone()),
                _ => {
                    return Err(Error::new(
                        ErrorKind::Rule,
                        at(Some(&name), None, line),
                        "a rule needs exactly one of `record` and `alert`",
                    ));
                }
            };
            let item = Some(format!("{kind} {rule_name:?}"));
            work.check().map_err(|reason| {
                Error::new(ErrorKind::Work, at(Some(&name), item.clone(), line), reason)
            })?;
            if config
                .rules
                .exclude
                .iter()
                .any(|e| e.matches(&name, Some(&rule_name)))
            {
                continue;
            }
            let (scope, add_label) = match (kind, config.rules.alerting) {
                ("record", _) => (true, true),
                (_, AlertingMode::Keep) => (false, false),
                (_, AlertingMode::Local) => (true, true),
                (_, AlertingMode::LabelOnly) => (false, true),
            };
            let Some(expr_node) = rule.get("expr") else {
                return Err(Error::new(
                    ErrorKind::Rule,
                    at(Some(&name), item, line),
                    "rule has no expr",
                ));
            };
            let expr_line = expr_node.line;
            let Some(expr) = expr_node.scalar_text().map(str::to_string) else {
                return Err(Error::new(
                    ErrorKind::Rule,
                    at(Some(&name), item, expr_line),
                    "expr must be a string",
                ));
            };
            let mut rule_changed = false;
            if scope {
                let result = match memo.get(&expr) {
                    Some(result) => result.clone(),
                    None => {
                        // Each distinct expression is scoped once and counted once, after
                        // scoping: the parser's limits bound one expression's cost, and its
                        // errors name what is wrong.
                        let result = scoper.scope(&expr);
                        if let Ok(scoped) = &result {
                            work.spend_promql(&expr, scoped.full_path)
                                .map_err(|reason| {
                                    Error::new(
                                        ErrorKind::Work,
                                        at(Some(&name), item.clone(), expr_line),
                                        reason,
                                    )
                                })?;
                        }
                        memo.insert(expr.clone(), result.clone());
                        result
                    }
                };
                let scoped = result.map_err(|e| {
                    Error::new(
                        ErrorKind::PromQl,
                        at(Some(&name), item.clone(), expr_line),
                        e.to_string(),
                    )
                })?;
                for kept in &scoped.kept {
                    warnings.push(Warning {
                        location: at(Some(&name), item.clone(), expr_line),
                        message: format!(
                            "kept the existing matcher {kept}; this selector may read federated series"
                        ),
                    });
                }
                work.spend_rewritten(scoped.text.len()).map_err(|reason| {
                    Error::new(
                        ErrorKind::Work,
                        at(Some(&name), item.clone(), expr_line),
                        reason,
                    )
                })?;
                if scoped.text != expr {
                    stats.selectors_scoped += scoped.scoped;
                    rule.insert("expr", Node::string(scoped.text));
                    rule_changed = true;
                }
            }
            if add_label {
                let (labelled, replaced) = set_label(rule, label, local).map_err(|reason| {
                    Error::new(ErrorKind::Rule, at(Some(&name), item.clone(), line), reason)
                })?;
                if let Some(old) = replaced {
                    warnings.push(Warning {
                        location: at(Some(&name), item.clone(), line),
                        message: format!("replaced the rule's label {label}={old} with {local:?}"),
                    });
                }
                rule_changed |= labelled;
            }
            if rule_changed {
                stats.rules_rewritten += 1;
                changed = true;
            }
        }
    }
    Ok(changed)
}

/// Set `labels.<label>: <value>`. Returns whether the rule changed and the value it replaced.
fn set_label(
    rule: &mut Node,
    label: &str,
    value: &str,
) -> Result<(bool, Option<serde_json::Value>), String> {
    match rule.get_mut("labels") {
        Some(labels) if labels.is_null() => {
            *labels = Node::from_json(&serde_json::json!({}));
        }
        Some(labels) if labels.as_map().is_none() => {
            return Err("labels must be a mapping".into());
        }
        Some(_) => {}
        None => rule.insert("labels", Node::from_json(&serde_json::json!({}))),
    }
    let labels = rule.get_mut("labels").expect("labels was just ensured");
    let old = labels.get(label).map(Node::to_json);
    if old.as_ref().and_then(serde_json::Value::as_str) == Some(value) {
        return Ok((false, None));
    }
    labels.insert(label, Node::string(value));
    Ok((true, old))
}

/// Replace the group named like `group` in a rule file, or append it. Returns whether it changed.
pub fn upsert_group(root: &mut Node, group: &Node) -> Result<bool, String> {
    let name = group.get("name").and_then(Node::as_str).unwrap_or_default();
    if root.as_map().is_none() || root.get("groups").is_none_or(Node::is_null) {
        if root.as_map().is_none() && !root.is_null() {
            return Err("the file must be a mapping to hold rule groups".into());
        }
        *root = Node::from_json(&serde_json::json!({"groups": []}));
        root.get_mut("groups")
            .and_then(Node::as_seq_mut)
            .expect("groups was just created")
            .push(group.clone());
        return Ok(true);
    }
    let groups = root
        .get_mut("groups")
        .and_then(Node::as_seq_mut)
        .ok_or("groups must be a list")?;
    let want = group.to_json();
    for existing in groups.iter_mut() {
        if existing.get("name").and_then(Node::as_str) == Some(name) {
            if existing.to_json() == want {
                return Ok(false);
            }
            *existing = group.clone();
            return Ok(true);
        }
    }
    groups.push(group.clone());
    Ok(true)
}
