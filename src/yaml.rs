//! YAML documents as Prometheus reads them.
//!
//! Prometheus (Go `yaml.v2`) and kubectl read YAML 1.1, where unquoted `on`, `yes`, `0777`,
//! `1_000` or `12:30` are not strings. serde-based YAML crates resolve YAML 1.2 and lose how a
//! scalar was written, so a round trip through them can silently turn a string into a boolean.
//! This module keeps every scalar's original text and style: plain scalars are written back
//! exactly as they were read, and any other string is written plain only where both a YAML 1.1
//! and a YAML 1.2 reader would read it back as the same string.

/// Hard limits that make hostile input (alias bombs, deep nesting) fail fast.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most nodes a document may expand to, counting every alias expansion.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 100,
            max_nodes: 1_000_000,
        }
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

/// Parse one YAML document (the content of a ConfigMap data key or a manifest document).
/// An empty input (or only comments) is `Ok(None)`. More than one document is an error.
/// Aliases are expanded (counted against `limits.max_nodes`); duplicate mapping keys are an error.
pub fn parse(_input: &str, _limits: Limits) -> Result<Option<Node>, YamlError> {
    todo!("yaml::parse")
}

/// Write a node as a block-style YAML document (no `---`), ending in a newline.
pub fn emit(_node: &Node) -> String {
    todo!("yaml::emit")
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

    /// The value of a mapping entry whose key is the string `key`.
    pub fn get(&self, _key: &str) -> Option<&Node> {
        todo!("Node::get")
    }

    pub fn get_mut(&mut self, _key: &str) -> Option<&mut Node> {
        todo!("Node::get_mut")
    }

    /// Set `key` in a mapping: replace the value in place if present, else append at the end.
    pub fn insert(&mut self, _key: &str, _value: Node) {
        todo!("Node::insert")
    }

    /// The scalar's value if it is a string as a YAML 1.1 reader sees it (not null, bool or number).
    pub fn as_str(&self) -> Option<&str> {
        todo!("Node::as_str")
    }

    /// The scalar's text, whatever it resolves to (`"5m"`, `"true"`, `"30"`).
    pub fn scalar_text(&self) -> Option<&str> {
        todo!("Node::scalar_text")
    }

    pub fn as_seq(&self) -> Option<&Vec<Node>> {
        todo!("Node::as_seq")
    }

    pub fn as_seq_mut(&mut self) -> Option<&mut Vec<Node>> {
        todo!("Node::as_seq_mut")
    }

    pub fn as_map(&self) -> Option<&Vec<(Node, Node)>> {
        todo!("Node::as_map")
    }

    /// Null as YAML 1.1 reads it (`~`, `null`, `Null`, `NULL`, empty plain scalar).
    pub fn is_null(&self) -> bool {
        todo!("Node::is_null")
    }

    /// The JSON value a YAML 1.1 reader (Go yaml.v2) would produce.
    pub fn to_json(&self) -> serde_json::Value {
        todo!("Node::to_json")
    }

    /// A node that a YAML 1.1 reader reads back as exactly `value`.
    pub fn from_json(_value: &serde_json::Value) -> Node {
        todo!("Node::from_json")
    }
}
