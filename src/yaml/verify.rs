//! Whether a text reads as a given tree: its events, with every check [`parse()`] makes,
//! compared with the tree node by node as they come, without building a second tree. The
//! in-place writer's proof that its output reads as the changed tree.
//!
//! [`parse()`]: super::parse()

use std::borrow::Cow;
use std::collections::HashMap;

use super::build::has_duplicate_keys;
use super::count::{Counter, Size};
use super::edit::reads_same;
use super::parse::{Limits, Sink, YamlError, read};
use super::tree::{Node, Style, Value, kind_of};

/// Whether `text` parses (as [`super::parse()`] with `limits` does) to a document, and that
/// document reads the same as `node` ([`reads_same`]).
pub(super) fn reads_as(text: &str, limits: Limits, node: &Node) -> bool {
    let mut verifier = Verifier {
        counter: Counter::new(limits),
        root: Some(node),
        matched: false,
        stack: Vec::new(),
        anchors: HashMap::new(),
    };
    read(text, limits, &mut verifier, None).is_ok() && verifier.matched
}

/// An open collection and the tree's collection it is compared with.
struct Frame<'t> {
    node: &'t Node,
    /// The next child expected: an item, or a key and then its value (`at_value`).
    next: usize,
    at_value: bool,
    anchor: usize,
    size: Size,
    flow: bool,
}

struct Verifier<'t> {
    counter: Counter,
    /// The tree's root, until an event has matched it.
    root: Option<&'t Node>,
    /// The text's root matched the tree's, and is a document (not an empty one).
    matched: bool,
    stack: Vec<Frame<'t>>,
    /// The subtrees anchors name (the tree's nodes they were read as), and their sizes.
    anchors: HashMap<usize, (&'t Node, Size)>,
}

/// The error that stops the reading: the text does not read as the tree. Its wording is never
/// shown.
fn differs(line: usize) -> YamlError {
    YamlError::new(line, "differs")
}

impl<'t> Verifier<'t> {
    /// The tree's node the next event must read as.
    fn expected(&self) -> Option<&'t Node> {
        let Some(frame) = self.stack.last() else {
            return self.root;
        };
        match &frame.node.value {
            Value::Seq(items) => items.get(frame.next),
            Value::Map(entries) => entries
                .get(frame.next)
                .map(|(k, v)| if frame.at_value { v } else { k }),
            Value::Scalar(_) => None,
        }
    }

    /// A node read as the expected one: move past it.
    fn matched(&mut self, node: &'t Node, size: Size) {
        let Some(frame) = self.stack.last_mut() else {
            self.root = None;
            // `---` alone, like an empty input, is a document without content.
            self.matched = !matches!(&node.value, Value::Scalar(s) if s.value.is_empty() && s.style == Style::Plain && s.tag.is_none());
            return;
        };
        frame.size.add(size);
        match (&frame.node.value, frame.at_value) {
            (Value::Map(_), false) => frame.at_value = true,
            _ => {
                frame.at_value = false;
                frame.next += 1;
            }
        }
    }
}

impl Sink for Verifier<'_> {
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
        let node = self.expected().ok_or_else(|| differs(line))?;
        let Value::Scalar(want) = &node.value else {
            return Err(differs(line));
        };
        let same = want.value == text
            && want.tag == tag
            && (want.style == style || kind_of(&text, style, tag.as_deref()) == want.kind());
        if !same {
            return Err(differs(line));
        }
        let size = Size::scalar(text.len());
        self.counter.scalar(size.bytes, line)?;
        if anchor > 0 {
            self.anchors.insert(anchor, (node, size));
        }
        self.matched(node, size);
        Ok(())
    }

    fn open(&mut self, map: bool, anchor: usize, line: usize, flow: bool) -> Result<(), YamlError> {
        self.counter.open(self.stack.len(), line)?;
        let node = self.expected().ok_or_else(|| differs(line))?;
        match &node.value {
            // Duplicate keys are refused as the text is read; the text's keys read as the
            // tree's, so the tree's say whether it has any.
            Value::Map(entries) if map && !has_duplicate_keys(entries) => {}
            Value::Seq(_) if !map => {}
            _ => return Err(differs(line)),
        }
        let flow = flow || self.in_flow();
        self.stack.push(Frame {
            node,
            next: 0,
            at_value: false,
            anchor,
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
        let len = match &frame.node.value {
            Value::Seq(items) => items.len(),
            Value::Map(entries) => entries.len(),
            Value::Scalar(_) => 0,
        };
        if frame.next != len || frame.at_value {
            return Err(differs(0));
        }
        if frame.anchor > 0 {
            self.anchors.insert(frame.anchor, (frame.node, frame.size));
        }
        self.matched(frame.node, frame.size);
        Ok(())
    }

    fn alias(&mut self, anchor: usize, line: usize) -> Result<(), YamlError> {
        // An alias to a node that contains it is not anchored yet: refused, as when building.
        let Some(&(target, size)) = self.anchors.get(&anchor) else {
            return Err(differs(line));
        };
        self.counter.alias(self.stack.len(), size, line)?;
        let node = self.expected().ok_or_else(|| differs(line))?;
        if !reads_same(node, target) {
            return Err(differs(line));
        }
        // An expanded alias is checked for duplicate keys where it is anchored.
        self.matched(node, size);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    /// What `reads_as` must say: the text parses, and its tree reads the same.
    fn by_parse(text: &str, limits: Limits, node: &Node) -> bool {
        parse(text, limits)
            .ok()
            .flatten()
            .is_some_and(|back| reads_same(&back, node))
    }

    fn tree(text: &str) -> Node {
        parse(text, Limits::default()).unwrap().unwrap()
    }

    #[test]
    fn says_what_parsing_and_comparing_say() {
        let twice = Node::map(vec![
            (Node::plain("a"), Node::plain("1")),
            (Node::plain("a"), Node::plain("1")),
        ]);
        let empty = Node::plain("");
        // (text, tree, reads as it)
        let cases: Vec<(&str, Node, bool)> = vec![
            ("a: 1\n", tree("a: 1"), true),
            ("a: 1\n", tree("a: 2"), false),
            ("a: '1'\n", tree("a: 1"), false),
            ("a: \"x\"\n", tree("a: x"), true),
            ("a: !!str 1\n", tree("a: '1'"), false),
            ("a: !!str 1\n", tree("a: !!str '1'"), true),
            ("a: 0x1F\n", tree("a: 31"), false),
            ("[a, b]\n", tree("- a\n- b"), true),
            ("x: |\n  hi\n", tree("x: \"hi\\n\""), true),
            ("x: |-\n  hi\n", tree("x: \"hi\\n\""), false),
            ("a: 1\nb: 2\n", tree("a: 1"), false),
            ("a: 1\n", tree("a: 1\nb: 2"), false),
            ("- 1\n- 2\n", tree("- 1"), false),
            ("- 1\n", tree("- 1\n- 2"), false),
            ("a: [1]\n", tree("a: {1: 1}"), false),
            ("a: 1\na: 1\n", twice.clone(), false),
            ("a: 1\n", twice, false),
            ("a: &x [1, 2]\nb: *x\n", tree("a: [1, 2]\nb: [1, 2]"), true),
            ("a: &x [1, 2]\nb: *x\n", tree("a: [1, 2]\nb: [1, 3]"), false),
            ("a: &x 1\nb: *x\n", tree("a: 1\nb: 1"), true),
            ("a: &x [*x]\n", tree("a: [[]]"), false),
            ("&a?b x\n", tree("x"), false),
            ("", empty.clone(), false),
            ("---\n", empty.clone(), false),
            ("''\n", empty, false),
            ("a: 1\n---\na: 1\n", tree("a: 1"), false),
            ("a: \u{1}\n", tree("a: 1"), false),
            ("[?a]\n", tree("['?a']"), false),
            ("a: !foo x\n", tree("a: x"), false),
            ("!!set {a: 1}\n", tree("{a: 1}"), false),
        ];
        for (text, node, expected) in &cases {
            let limits = Limits::default();
            assert_eq!(
                by_parse(text, limits, node),
                *expected,
                "{text:?} (by parse)"
            );
            assert_eq!(reads_as(text, limits, node), *expected, "{text:?}");
        }
    }

    #[test]
    fn keeps_the_limits() {
        let deep = format!("{}1{}", "[".repeat(5), "]".repeat(5));
        let node = tree(&deep);
        let shallow = Limits {
            max_depth: 4,
            ..Limits::default()
        };
        assert!(!by_parse(&deep, shallow, &node));
        assert!(!reads_as(&deep, shallow, &node));
        assert!(reads_as(&deep, Limits::default(), &node));

        let bomb = "a: &a [1, 2, 3]\nb: [*a, *a, *a]\n";
        let node = tree(bomb);
        for max_nodes in [10, 16, 17, 40] {
            let limits = Limits {
                max_nodes,
                ..Limits::default()
            };
            assert_eq!(
                reads_as(bomb, limits, &node),
                by_parse(bomb, limits, &node),
                "{max_nodes} nodes"
            );
        }
        for max_bytes in [5, 13, 14] {
            let limits = Limits {
                max_bytes,
                ..Limits::default()
            };
            assert_eq!(
                reads_as(bomb, limits, &node),
                by_parse(bomb, limits, &node),
                "{max_bytes} bytes"
            );
        }
    }
}
