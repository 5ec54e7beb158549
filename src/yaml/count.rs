//! What a document expands to, counted against [`Limits`] as its events come: nodes and bytes
//! of scalars with every alias expanded, and nesting. The one count the tree's builder and the
//! in-place writer's proof (`verify`) keep, so that both refuse the same documents.

use super::parse::{Expanded, Limits, Over, YamlError};

/// The measure of a subtree, what an alias of it expands to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Size {
    /// Nodes in the subtree.
    pub nodes: usize,
    /// Collections on the deepest path (0 for a scalar).
    pub height: usize,
    /// Bytes of the scalars in the subtree.
    pub bytes: usize,
}

impl Size {
    /// A scalar of `bytes` bytes.
    pub(super) fn scalar(bytes: usize) -> Size {
        Size {
            nodes: 1,
            height: 0,
            bytes,
        }
    }

    /// A collection just opened.
    pub(super) const OPEN: Size = Size {
        nodes: 1,
        height: 1,
        bytes: 0,
    };

    /// A finished child of this collection.
    pub(super) fn add(&mut self, child: Size) {
        self.nodes += child.nodes;
        self.bytes += child.bytes;
        self.height = self.height.max(child.height + 1);
    }
}

/// The document's count so far.
pub(super) struct Counter {
    limits: Limits,
    nodes: usize,
    /// Bytes of scalars, aliases counted by what they expand to.
    bytes: usize,
}

impl Counter {
    pub(super) fn new(limits: Limits) -> Counter {
        Counter {
            limits,
            nodes: 0,
            bytes: 0,
        }
    }

    /// What the document has expanded to so far.
    pub(super) fn expanded(&self) -> Expanded {
        Expanded {
            nodes: self.nodes,
            bytes: self.bytes,
        }
    }

    /// A scalar read.
    pub(super) fn scalar(&mut self, bytes: usize, line: usize) -> Result<(), YamlError> {
        self.count(1, bytes, line)
    }

    /// A collection opened inside `depth` open ones.
    pub(super) fn open(&mut self, depth: usize, line: usize) -> Result<(), YamlError> {
        if depth >= self.limits.max_depth {
            return Err(self.too_deep(line));
        }
        self.count(1, 0, line)
    }

    /// An alias, inside `depth` open collections, of a node of `size`: counted as what it
    /// expands to.
    pub(super) fn alias(&mut self, depth: usize, size: Size, line: usize) -> Result<(), YamlError> {
        if depth + size.height > self.limits.max_depth {
            return Err(self.too_deep(line));
        }
        self.count(size.nodes, size.bytes, line)
    }

    fn count(&mut self, nodes: usize, bytes: usize, line: usize) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(nodes);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.nodes > self.limits.max_nodes {
            return Err(YamlError::limit(
                line,
                Over::Nodes,
                format!(
                    "document expands to more than {} nodes (alias bomb?)",
                    self.limits.max_nodes
                ),
            ));
        }
        if self.bytes > self.limits.max_bytes {
            return Err(YamlError::limit(
                line,
                Over::Bytes,
                format!(
                    "document expands to more than {} bytes of scalars (aliases counted by \
                     what they expand to)",
                    self.limits.max_bytes
                ),
            ));
        }
        Ok(())
    }

    fn too_deep(&self, line: usize) -> YamlError {
        YamlError::new(
            line,
            format!("nesting deeper than {}", self.limits.max_depth),
        )
    }
}
