//! The document tree: nodes that keep how each scalar was written, their accessors, and
//! their JSON values.

use super::resolve::{
    Kind, bool_1_1, float_json, int_form, int_json, int_value, number_text, resolve_1_1,
};

/// How a scalar was written (or should be written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unquoted in the input: written back with exactly the same text.
    Plain,
    /// Quoted or block scalar in the input, or a string made by promfed: the emitter chooses
    /// the safest representation (plain if unambiguous, literal block if multi-line, quoted otherwise).
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub value: String,
    pub style: Style,
    /// Explicit tag as written (e.g. `!!str`), re-emitted as is.
    pub tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A node with the 1-based line where it starts (0 for nodes made by promfed).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
}

impl Scalar {
    /// What a YAML 1.1 reader makes of this scalar: an untagged plain scalar by
    /// [`resolve_1_1`], a quoted or block one is a string, a core tag (`!!int`) says it.
    pub fn kind(&self) -> Kind {
        kind_of(&self.value, self.style, self.tag.as_deref())
    }

    fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        let text = self.value.as_str();
        let value = match self.kind() {
            Kind::Null => Some(J::Null),
            Kind::Bool => bool_1_1(text).map(J::Bool),
            Kind::Int => int_json(text),
            Kind::Float => float_json(text).or_else(|| {
                let (negative, form) = int_form(text)?;
                let n = int_value(form);
                let f = n.as_f64();
                serde_json::Number::from_f64(if negative { -f } else { f }).map(J::Number)
            }),
            Kind::Timestamp | Kind::Merge | Kind::Value | Kind::Str => None,
        };
        value.unwrap_or_else(|| J::String(self.value.clone()))
    }
}

/// [`Scalar::kind`] of a scalar's parts.
pub(super) fn kind_of(value: &str, style: Style, tag: Option<&str>) -> Kind {
    match tag {
        None if style == Style::Plain => resolve_1_1(value),
        Some("!!null") => Kind::Null,
        Some("!!bool") => Kind::Bool,
        Some("!!int") => Kind::Int,
        Some("!!float") => Kind::Float,
        Some("!!timestamp") => Kind::Timestamp,
        Some("!!merge") => Kind::Merge,
        _ => Kind::Str,
    }
}

/// A mapping key as a JSON object key: a string as is, anything else as its JSON text
/// (`true`, `31` for `0x1F`, `null`).
fn json_key(key: &Node) -> String {
    match key.as_str() {
        Some(s) => s.to_owned(),
        None => match key.to_json() {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        },
    }
}

fn is_merge_key(key: &Node) -> bool {
    matches!(&key.value, Value::Scalar(s) if s.kind() == Kind::Merge)
}

/// The mappings a merge key's value merges in: a mapping or a sequence of mappings.
fn merge_sources(value: &Node) -> Option<Vec<&Node>> {
    match &value.value {
        Value::Map(_) => Some(vec![value]),
        Value::Seq(items) if items.iter().all(|i| matches!(i.value, Value::Map(_))) => {
            Some(items.iter().collect())
        }
        _ => None,
    }
}

impl Node {
    /// A new string scalar (style chosen when written).
    pub fn string(value: impl Into<String>) -> Node {
        Node {
            value: Value::Scalar(Scalar {
                value: value.into(),
                style: Style::Any,
                tag: None,
            }),
            line: 0,
        }
    }

    /// A new plain scalar, written as is so that readers resolve it: `true` is a bool, `30`
    /// an int, `5m` a string. Text that cannot be written plain is quoted (a string).
    pub fn plain(text: impl Into<String>) -> Node {
        Node {
            value: Value::Scalar(Scalar {
                value: text.into(),
                style: Style::Plain,
                tag: None,
            }),
            line: 0,
        }
    }

    /// A new sequence.
    pub fn seq(items: Vec<Node>) -> Node {
        Node {
            value: Value::Seq(items),
            line: 0,
        }
    }

    /// A new mapping.
    pub fn map(entries: Vec<(Node, Node)>) -> Node {
        Node {
            value: Value::Map(entries),
            line: 0,
        }
    }

    /// The value of a mapping entry whose key is the string `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.as_map_mut()?
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Set `key` in a mapping: replace the value in place if present, else append at the end.
    /// A node that is not a mapping (e.g. the null of an empty `global:`) becomes one.
    pub fn insert(&mut self, key: &str, value: Node) {
        if let Some(slot) = self.get_mut(key) {
            *slot = value;
            return;
        }
        if !matches!(self.value, Value::Map(_)) {
            self.value = Value::Map(Vec::new());
        }
        if let Value::Map(entries) = &mut self.value {
            entries.push((Node::string(key), value));
        }
    }

    /// Remove the entry whose key is the string `key` from a mapping, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let entries = self.as_map_mut()?;
        let i = entries.iter().position(|(k, _)| k.as_str() == Some(key))?;
        Some(entries.remove(i).1)
    }

    /// The scalar's value if it is a string as a YAML 1.1 reader sees it (not null, bool or number).
    /// Timestamps count as strings (yaml.v2 gives them as strings to untyped code).
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => match s.kind() {
                Kind::Str | Kind::Timestamp | Kind::Value => Some(&s.value),
                Kind::Null | Kind::Bool | Kind::Int | Kind::Float | Kind::Merge => None,
            },
            _ => None,
        }
    }

    /// The scalar's text, whatever it resolves to (`"5m"`, `"true"`, `"30"`).
    pub fn scalar_text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(&s.value),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&Vec<Node>> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_seq_mut(&mut self) -> Option<&mut Vec<Node>> {
        match &mut self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Vec<(Node, Node)>> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Vec<(Node, Node)>> {
        match &mut self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// Null as YAML 1.1 reads it (`~`, `null`, `Null`, `NULL`, empty plain scalar).
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if s.kind() == Kind::Null)
    }

    /// The JSON value a YAML 1.1 reader (Go yaml.v2) would produce. Merge keys (`<<`) are
    /// applied; timestamps, infinities and NaN (which JSON has no numbers for) are strings.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Scalar(s) => s.to_json(),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => {
                let mut object = serde_json::Map::with_capacity(entries.len());
                // Merged entries first, so the mapping's own keys override them; of several
                // merged mappings, the first one to have a key wins.
                for (_, value) in entries.iter().filter(|(k, _)| is_merge_key(k)) {
                    for source in merge_sources(value).into_iter().flatten() {
                        if let serde_json::Value::Object(merged) = source.to_json() {
                            for (k, v) in merged {
                                object.entry(k).or_insert(v);
                            }
                        }
                    }
                }
                for (key, value) in entries {
                    if !(is_merge_key(key) && merge_sources(value).is_some()) {
                        object.insert(json_key(key), value.to_json());
                    }
                }
                serde_json::Value::Object(object)
            }
        }
    }

    /// A node that a YAML 1.1 reader reads back as exactly `value`.
    pub fn from_json(value: &serde_json::Value) -> Node {
        use serde_json::Value as J;
        match value {
            J::Null => Node::plain("null"),
            J::Bool(b) => Node::plain(if *b { "true" } else { "false" }),
            J::Number(n) => Node::plain(number_text(n)),
            J::String(s) => Node::string(s.as_str()),
            J::Array(items) => Node::seq(items.iter().map(Node::from_json).collect()),
            J::Object(object) => Node::map(
                object
                    .iter()
                    .map(|(k, v)| (Node::string(k.as_str()), Node::from_json(v)))
                    .collect(),
            ),
        }
    }
}
