//! The tree built from parser events, within [`Limits`]: nodes and bytes counted with every
//! alias expanded (`count`; an alias bomb fails before anything is cloned), nesting bounded
//! without recursion on the input's depth, duplicate keys refused.

use std::borrow::Cow;
use std::collections::HashMap;

use super::count::{Counter, Size};
use super::parse::{Expanded, Limits, Sink, YamlError};
use super::resolve::Kind;
use super::tree::{Node, Scalar, Style, Value};

/// An anchored node, kept to expand its aliases.
struct Anchored {
    node: Node,
    size: Size,
}

enum FrameValue {
    Seq(Vec<Node>),
    Map {
        entries: Vec<(Node, Node)>,
        /// A key waiting for its value.
        key: Option<Node>,
        /// Scalar keys seen, for the duplicate check of large mappings: identity -> line.
        index: Option<HashMap<KeyId, usize>>,
    },
}

impl FrameValue {
    fn seq() -> FrameValue {
        FrameValue::Seq(Vec::new())
    }

    fn map() -> FrameValue {
        FrameValue::Map {
            entries: Vec::new(),
            key: None,
            index: None,
        }
    }
}

/// An open collection.
struct Frame {
    value: FrameValue,
    anchor: usize,
    line: usize,
    size: Size,
    /// A flow collection (`[...]`, `{...}`) or inside one.
    flow: bool,
}

/// The identity of a scalar key: what it resolves to, its custom tag, its text.
#[derive(PartialEq, Eq, Hash)]
pub(super) struct KeyId {
    kind: Kind,
    tag: Option<String>,
    text: String,
}

/// Mappings up to this many entries check duplicate keys by a linear scan.
const SCAN_KEYS: usize = 16;

/// Builds the tree from parser events with an explicit stack, so the input's nesting never
/// becomes recursion here.
///
/// Aliases of collections are expanded only at the end: while parsing, an alias is a
/// placeholder whose size is counted, so an alias bomb fails before anything is cloned.
pub(super) struct Builder {
    counter: Counter,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    /// Anchor ids in the order their nodes were finished: an anchored node's aliases only
    /// refer to anchors finished before it.
    finished: Vec<usize>,
    /// Whether the tree holds placeholders.
    placeholders: bool,
    root: Option<Node>,
}

/// The tag of a placeholder for an alias (no input has a NUL), whose value is the anchor id.
const PLACEHOLDER: &str = "\0alias";

fn placeholder_id(node: &Node) -> Option<usize> {
    match &node.value {
        Value::Scalar(s) if s.tag.as_deref() == Some(PLACEHOLDER) => s.value.parse().ok(),
        _ => None,
    }
}

/// Replace the placeholders in `node` by copies of the (expanded) anchored nodes. The tree
/// is at most `max_depth` deep, which bounds the recursion.
fn expand(node: &mut Node, anchors: &HashMap<usize, Anchored>) {
    if let Some(id) = placeholder_id(node) {
        let line = node.line;
        *node = anchors[&id].node.clone();
        node.line = line;
        return;
    }
    match &mut node.value {
        Value::Scalar(_) => {}
        Value::Seq(items) => items.iter_mut().for_each(|n| expand(n, anchors)),
        Value::Map(entries) => {
            for (k, v) in entries {
                expand(k, anchors);
                expand(v, anchors);
            }
        }
    }
}

impl Builder {
    pub(super) fn new(limits: Limits) -> Builder {
        Builder {
            counter: Counter::new(limits),
            stack: Vec::new(),
            anchors: HashMap::new(),
            finished: Vec::new(),
            placeholders: false,
            root: None,
        }
    }

    /// The document's root (`None` for an empty one) and what it expanded to.
    pub(super) fn document(self) -> (Option<Node>, Expanded) {
        let expanded = self.counter.expanded();
        let root = self.finish().filter(|root| {
            // `---` alone, like an empty input, is a document without content.
            !matches!(&root.value, Value::Scalar(s) if s.value.is_empty() && s.style == Style::Plain && s.tag.is_none())
        });
        (root, expanded)
    }

    fn anchor(&mut self, id: usize, node: &Node, size: Size) {
        let anchored = Anchored {
            node: node.clone(),
            size,
        };
        self.anchors.insert(id, anchored);
        self.finished.push(id);
    }

    /// The document's root, its aliases expanded.
    fn finish(mut self) -> Option<Node> {
        let mut root = self.root.take()?;
        if self.placeholders {
            for id in std::mem::take(&mut self.finished) {
                let mut anchored = self.anchors.remove(&id).expect("finished anchor");
                expand(&mut anchored.node, &self.anchors);
                self.anchors.insert(id, anchored);
            }
            expand(&mut root, &self.anchors);
        }
        Some(root)
    }

    /// Put a finished node into its parent (or make it the root).
    fn deliver(&mut self, node: Node, size: Size) -> Result<(), YamlError> {
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        frame.size.add(size);
        match &mut frame.value {
            FrameValue::Seq(items) => items.push(node),
            FrameValue::Map {
                entries,
                key,
                index,
            } => match key.take() {
                Some(k) => entries.push((k, node)),
                None => {
                    check_duplicate(entries, index, &node)?;
                    *key = Some(node);
                }
            },
        }
        Ok(())
    }
}

impl Sink for Builder {
    fn in_flow(&self) -> bool {
        self.stack.last().is_some_and(|f| f.flow)
    }

    fn scalar(
        &mut self,
        text: Cow<'_, str>,
        style: Style,
        tag: Option<String>,
        anchor: usize,
        line: usize,
    ) -> Result<(), YamlError> {
        let scalar = Scalar {
            value: text.into_owned(),
            style,
            tag,
        };
        let size = Size::scalar(scalar.value.len());
        self.counter.scalar(size.bytes, line)?;
        let node = Node {
            value: Value::Scalar(scalar),
            line,
        };
        if anchor > 0 {
            self.anchor(anchor, &node, size);
        }
        self.deliver(node, size)
    }

    fn open(&mut self, map: bool, anchor: usize, line: usize, flow: bool) -> Result<(), YamlError> {
        self.counter.open(self.stack.len(), line)?;
        let flow = flow || self.in_flow();
        let value = if map {
            FrameValue::map()
        } else {
            FrameValue::seq()
        };
        self.stack.push(Frame {
            value,
            anchor,
            line,
            size: Size::OPEN,
            flow,
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), YamlError> {
        let frame = self
            .stack
            .pop()
            .expect("the parser balances collection events");
        let value = match frame.value {
            FrameValue::Seq(items) => Value::Seq(items),
            FrameValue::Map { entries, .. } => Value::Map(entries),
        };
        let node = Node {
            value,
            line: frame.line,
        };
        if frame.anchor > 0 {
            self.anchor(frame.anchor, &node, frame.size);
        }
        self.deliver(node, frame.size)
    }

    fn alias(&mut self, anchor: usize, line: usize) -> Result<(), YamlError> {
        let Some(anchored) = self.anchors.get(&anchor) else {
            return Err(YamlError::new(
                line,
                "alias to a node that contains it (recursive alias)",
            ));
        };
        let size = anchored.size;
        self.counter.alias(self.stack.len(), size, line)?;
        let node = if size.height == 0 {
            // A scalar: as cheap to copy as to stand in for.
            let mut node = self.anchors[&anchor].node.clone();
            node.line = line;
            node
        } else {
            self.placeholders = true;
            Node {
                value: Value::Scalar(Scalar {
                    value: anchor.to_string(),
                    style: Style::Any,
                    tag: Some(PLACEHOLDER.to_owned()),
                }),
                line,
            }
        };
        self.deliver(node, size)
    }
}

fn key_id(key: &Node) -> Option<KeyId> {
    let Value::Scalar(s) = &key.value else {
        return None;
    };
    Some(KeyId {
        kind: s.kind(),
        tag: custom_tag(s).map(str::to_owned),
        text: s.value.clone(),
    })
}

/// A tag other than a core `!!` one.
fn custom_tag(s: &Scalar) -> Option<&str> {
    s.tag.as_deref().filter(|t| !t.starts_with("!!"))
}

fn same_key(a: &Node, b: &Scalar) -> bool {
    let Value::Scalar(a) = &a.value else {
        return false;
    };
    a.value == b.value && a.kind() == b.kind() && custom_tag(a) == custom_tag(b)
}

/// Whether a mapping's entries have two scalar keys that building it refuses as duplicates.
pub(super) fn has_duplicate_keys(entries: &[(Node, Node)]) -> bool {
    let mut index = None;
    (1..entries.len()).any(|i| check_duplicate(&entries[..i], &mut index, &entries[i].0).is_err())
}

/// Duplicate scalar keys are an error (Go yaml.v2 rejects them too). Complex keys are not
/// checked.
fn check_duplicate(
    entries: &[(Node, Node)],
    index: &mut Option<HashMap<KeyId, usize>>,
    key: &Node,
) -> Result<(), YamlError> {
    let Value::Scalar(scalar) = &key.value else {
        return Ok(());
    };
    if placeholder_id(key).is_some() {
        return Ok(());
    }
    let first = if entries.len() < SCAN_KEYS {
        entries
            .iter()
            .find(|(k, _)| same_key(k, scalar))
            .map(|(k, _)| k.line)
    } else {
        let index = index.get_or_insert_with(|| {
            let mut index = HashMap::with_capacity(entries.len() * 2);
            for (k, _) in entries {
                if let Some(id) = key_id(k) {
                    index.entry(id).or_insert(k.line);
                }
            }
            index
        });
        let id = key_id(key).expect("a scalar key");
        match index.get(&id) {
            Some(&line) => Some(line),
            None => {
                index.insert(id, key.line);
                None
            }
        }
    };
    match first {
        Some(first) => Err(YamlError::new(
            key.line,
            format!("duplicate key {:?} (first on line {first})", scalar.value),
        )),
        None => Ok(()),
    }
}
