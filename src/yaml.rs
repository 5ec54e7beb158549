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
