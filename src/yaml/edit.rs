//! Writing a changed tree over the text it was read from, so that a diff shows only the
//! change: the text of every node that reads the same as before is kept (scalars as written,
//! comments, blank lines, indentation, flow and block styles), and what is new or changed is
//! written where it goes, indented like its siblings. A block scalar that changes keeps its
//! header's indentation indicator and its content's indentation; a quoted one its quotes.
//!
//! Whatever cannot be changed in place (a flow collection that grows, a node whose kind
//! changes) is written anew at its place; a document with anchors or aliases is written anew
//! whole, as [`emit`] writes it. The result is parsed again and must read exactly as the tree
//! does (`verify`), else [`emit`]'s text is used: in-place writing never changes what readers
//! see.

use saphyr_parser::ScalarStyle;

use super::emit::{Emitter, Repr, emit, literal_ok, repr};
use super::parse::{Limits, parse_placed};
use super::place::{Place, Places, Shape, dash_before};
use super::resolve::is_inline_char;
use super::tree::{Node, Scalar, Style, Value};
use super::verify::reads_as;

/// Write `node`, a tree read from `source` and then changed, as `source` with only the
/// changed nodes rewritten. Falls back to [`emit`] (after `source`'s leading comment lines)
/// where that is not possible.
pub fn emit_in_place(source: &str, node: &Node) -> String {
    in_place(source, node).unwrap_or_else(|| fallback(source, node))
}

/// [`emit_in_place`] when the caller still holds `original` and `places`, the tree `source`
/// parses to and where its nodes are (as [`super::parse_placed`] read them, within the same
/// depth): `source` is not read again. The output is still parsed back and checked against
/// `node`.
pub fn emit_in_place_over(source: &str, original: &Node, places: &Places, node: &Node) -> String {
    in_place_over(source, original, places, node).unwrap_or_else(|| fallback(source, node))
}

/// What is written when in-place writing is not possible: [`emit`] after `source`'s leading
/// comment lines.
fn fallback(source: &str, node: &Node) -> String {
    let mut out = leading_comments(source).to_owned();
    out.push_str(&emit(node));
    out
}

/// Documents with more nodes than this are written anew: editing in place holds the text's
/// places and its tree beside the changed tree (a real 1 MiB ConfigMap has about 24,000
/// nodes; a review's data may expand to 250,000, within the pod's memory only without them).
pub(super) const MAX_NODES: usize = 100_000;

/// How many old children past the last match a new child is looked for among.
const LOOK_AHEAD: usize = 64;

/// The limits of the parses here: the in-place writer's node bound, no bound on bytes.
const LIMITS: Limits = Limits {
    max_depth: 100,
    max_nodes: MAX_NODES,
    max_bytes: usize::MAX,
};

pub(super) fn in_place(source: &str, node: &Node) -> Option<String> {
    if !within(node, MAX_NODES) {
        return None;
    }
    let (original, _, places) = parse_placed(source, LIMITS).ok()?;
    written_over(source, &original?, &places, node)
}

/// [`in_place`] with the tree of `source` and its places at hand.
fn in_place_over(source: &str, original: &Node, places: &Places, node: &Node) -> Option<String> {
    if !within(node, MAX_NODES) || !within(original, MAX_NODES) {
        return None;
    }
    written_over(source, original, places, node)
}

/// `node` written over `source`, whose tree is `original` and places `places`; None where
/// that is not possible or the result does not read back as `node`.
fn written_over(source: &str, original: &Node, places: &Places, node: &Node) -> Option<String> {
    // An unchanged tree is its text, whatever the writer could make of its places (values
    // left empty before a comment, as ytt templates write them).
    if reads_same(original, node) {
        return Some(source.to_owned());
    }
    let out = {
        let place = places.0.as_ref()?;
        let mut writer = Writer {
            source,
            layout: (2, 0),
            edits: Vec::new(),
        };
        writer.layout = writer.layout(place);
        if !writer.collection(node, original, place) {
            return None;
        }
        writer.apply()?
    };
    reads_as(&out, LIMITS, node).then_some(out)
}

/// Whether the tree has at most `max` nodes.
fn within(node: &Node, max: usize) -> bool {
    let mut count = 0;
    let mut stack = vec![node];
    while let Some(node) = stack.pop() {
        count += 1;
        if count > max {
            return false;
        }
        match &node.value {
            Value::Scalar(_) => {}
            Value::Seq(items) => stack.extend(items),
            Value::Map(entries) => stack.extend(entries.iter().flat_map(|(k, v)| [k, v])),
        }
    }
    true
}

/// Comment and blank lines at the start of a text.
fn leading_comments(text: &str) -> &str {
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if !(trimmed.starts_with('#') || trimmed.is_empty()) {
            break;
        }
        end += line.len();
    }
    &text[..end]
}

/// Whether two nodes read the same to a YAML 1.1 reader, wherever they were read from: the
/// same scalars (text, type, tag), the same collections in the same order.
pub(super) fn reads_same(a: &Node, b: &Node) -> bool {
    match (&a.value, &b.value) {
        (Value::Scalar(x), Value::Scalar(y)) => same_scalar(x, y),
        (Value::Seq(x), Value::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| reads_same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| reads_same(ka, kb) && reads_same(va, vb))
        }
        _ => false,
    }
}

fn same_scalar(a: &Scalar, b: &Scalar) -> bool {
    a.value == b.value && a.tag == b.tag && a.kind() == b.kind()
}

/// Where a node stands in its parent: what is replaced when it is written anew.
#[derive(Clone, Copy)]
enum Slot {
    /// The value of a block mapping entry: after the `:` at `colon`, in a mapping at column
    /// `column`.
    Value { colon: usize, column: usize },
    /// An item of a block sequence: after the `-` at `dash`, at column `column`.
    Item { dash: usize, column: usize },
}

struct Writer<'a> {
    source: &'a str,
    /// The document's indentation of nested mappings and of lists under a key, found in
    /// its text ((2, 0) when it has neither), for what is written anew.
    layout: (usize, usize),
    /// (start, end, text): replace `source[start..end]` by `text`.
    edits: Vec<(usize, usize, String)>,
}

impl Writer<'_> {
    /// The text after all edits; `None` if two of them overlap.
    fn apply(mut self) -> Option<String> {
        // Inserts before a replacement that starts at the same byte; otherwise in the order made.
        self.edits.sort_by_key(|(start, end, _)| (*start, *end));
        let mut out = String::with_capacity(self.source.len() + 1024);
        let mut at = 0;
        for (start, end, text) in &self.edits {
            if *start < at {
                return None;
            }
            out.push_str(&self.source[at..*start]);
            out.push_str(text);
            at = *end;
        }
        out.push_str(&self.source[at..]);
        Some(out)
    }

    /// An emitter that writes nested collections as the document does.
    fn emitter(&self) -> Emitter {
        let mut e = Emitter::new();
        (e.map_step, e.seq_indent) = self.layout;
        e
    }

    /// How the document indents a mapping under a key, and a list under a key: the first of
    /// each its text has.
    fn layout(&self, root: &Place) -> (usize, usize) {
        let (mut map_step, mut seq_indent) = (None, None);
        let mut stack = vec![root];
        while let Some(place) = stack.pop() {
            if place.shape == Shape::BlockMap {
                let column = self.column(place.start);
                for value in place.children.iter().skip(1).step_by(2) {
                    let offset = self.column(value.start).checked_sub(column);
                    match value.shape {
                        Shape::BlockMap if map_step.is_none() => {
                            map_step = offset.filter(|o| (1..=8).contains(o));
                        }
                        Shape::BlockSeq if seq_indent.is_none() => {
                            seq_indent = offset.filter(|o| *o <= 8);
                        }
                        _ => {}
                    }
                }
            }
            if map_step.is_some() && seq_indent.is_some() {
                break;
            }
            stack.extend(place.children.iter().rev());
        }
        (map_step.unwrap_or(2), seq_indent.unwrap_or(0))
    }

    fn column(&self, at: usize) -> usize {
        at - self.line_start(at)
    }

    fn line_start(&self, at: usize) -> usize {
        self.source[..at].rfind('\n').map_or(0, |i| i + 1)
    }

    /// Whether only spaces come before `at` on its line.
    fn starts_line(&self, at: usize) -> bool {
        self.source[self.line_start(at)..at]
            .bytes()
            .all(|c| c == b' ')
    }

    /// The start of the line after the one `at` is on; `at` itself when it starts a line
    /// (a block scalar's end).
    fn line_end(&self, at: usize) -> usize {
        if at == 0 || self.source.as_bytes().get(at - 1) == Some(&b'\n') {
            return at;
        }
        self.source[at..]
            .find('\n')
            .map_or(self.source.len(), |i| at + i + 1)
    }

    /// The `:` after a block mapping key that ends at `key_end`.
    fn colon(&self, key_end: usize) -> Option<usize> {
        let rest = &self.source[key_end..];
        let skipped = rest.len() - rest.trim_start_matches(' ').len();
        rest[skipped..]
            .starts_with(':')
            .then_some(key_end + skipped)
    }

    fn insert(&mut self, at: usize, text: String) {
        let text =
            if at == self.source.len() && !self.source.is_empty() && !self.source.ends_with('\n') {
                format!("\n{text}")
            } else {
                text
            };
        self.edits.push((at, at, text));
    }

    /// Edit the root collection in place; false when it cannot be.
    fn collection(&mut self, new: &Node, old: &Node, place: &Place) -> bool {
        if reads_same(new, old) {
            return true;
        }
        match (&new.value, &old.value, place.shape) {
            (Value::Map(n), Value::Map(o), Shape::BlockMap) => self.map(n, o, place).is_some(),
            (Value::Seq(n), Value::Seq(o), Shape::BlockSeq) => self.seq(n, o, place).is_some(),
            _ => false,
        }
    }

    /// Edit the node at `slot` in place, or write it anew there.
    fn node(&mut self, new: &Node, old: &Node, place: &Place, slot: Slot) {
        if reads_same(new, old) {
            return;
        }
        let edited = match (&new.value, &old.value, place.shape) {
            (Value::Map(n), Value::Map(o), Shape::BlockMap) => {
                let mark = self.edits.len();
                let done = self.map(n, o, place).is_some();
                if !done {
                    self.edits.truncate(mark);
                }
                done
            }
            (Value::Seq(n), Value::Seq(o), Shape::BlockSeq) => {
                let mark = self.edits.len();
                let done = self.seq(n, o, place).is_some();
                if !done {
                    self.edits.truncate(mark);
                }
                done
            }
            (Value::Scalar(s), Value::Scalar(_), Shape::Inline(style)) => {
                match inline_text(s, style) {
                    Some(text) => {
                        self.edits.push((place.start, place.end, text));
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        };
        if !edited {
            self.replace(new, place, slot);
        }
    }

    /// Write `new` anew in place of the node at `slot`, from its indicator to the end of its
    /// last line.
    fn replace(&mut self, new: &Node, place: &Place, slot: Slot) {
        let (indicator, column) = match slot {
            Slot::Value { colon, column }
            | Slot::Item {
                dash: colon,
                column,
            } => (colon, column),
        };
        let end = self.line_end(place.end.max(indicator + 1));
        let mut e = self.emitter();
        // Where a block scalar's lines or an item's content go.
        let content = column + 2;
        if let (Value::Scalar(s), Shape::Block) = (&new.value, place.shape)
            && (repr(s, false) == Repr::Literal
                || (s.style == Style::Any && literal_ok(&format!("{}\n", s.value))))
        {
            // Keep the block scalar's indentation and indentation indicator.
            let indent = match place.indicator {
                Some(step) => column + step,
                None => self.content_indent(place).unwrap_or(content),
            };
            let step = indent.saturating_sub(column);
            let (indent, step) = if (1..=9).contains(&step) {
                (indent, step)
            } else {
                (content, 2)
            };
            e.out.push(' ');
            if let Some(tag) = &s.tag {
                e.out.push_str(tag);
                e.out.push(' ');
            }
            e.literal_at(&s.value, indent, step, place.indicator.is_some());
        } else {
            match slot {
                Slot::Value { .. } => e.after_colon(new, column),
                Slot::Item { .. } => e.after_indicator(new, content),
            }
        }
        self.edits.push((indicator + 1, end, e.out));
    }

    /// The indentation of a block scalar's first content line that is not empty.
    fn content_indent(&self, place: &Place) -> Option<usize> {
        let text = &self.source[place.start..place.end];
        let body = &text[text.find('\n')? + 1..];
        body.split('\n')
            .find(|line| !line.trim().is_empty())
            .map(|line| line.len() - line.trim_start_matches(' ').len())
    }

    /// Edit a block mapping in place: entries matched by key keep their text (a changed
    /// value is edited in turn), others are removed, new ones written after the entry before
    /// them. `None` (having made edits to discard) when it is better written anew.
    fn map(&mut self, new: &[(Node, Node)], old: &[(Node, Node)], place: &Place) -> Option<()> {
        if place.children.len() != old.len() * 2 {
            return None;
        }
        let column = self.column(place.start);
        let compact = !self.starts_line(place.start);
        // Per old entry: key start, colon, end.
        let mut spans = Vec::with_capacity(old.len());
        for i in 0..old.len() {
            let (key, value) = (&place.children[2 * i], &place.children[2 * i + 1]);
            let colon = self.colon(key.end)?;
            spans.push((key.start, colon, value.end.max(colon + 1)));
        }
        let keys: Vec<&Node> = new.iter().map(|(k, _)| k).collect();
        let matched = self.matches(&keys, |j, k| reads_same(k, &old[j].0), old.len());
        if matched.iter().all(Option::is_none) {
            // Nothing left to edit around (an emptied mapping is written `{}`).
            return None;
        }
        self.remove(
            &matched,
            &spans.iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(),
            compact,
        )?;
        let mut previous: Option<usize> = None;
        let mut flow = None;
        for (i, entry) in new.iter().enumerate() {
            match matched[i] {
                Some(j) => {
                    previous = Some(j);
                    let (_, colon, _) = spans[j];
                    let slot = Slot::Value { colon, column };
                    self.node(&entry.1, &old[j].1, &place.children[2 * j + 1], slot);
                }
                None => {
                    let at = self.insertion(
                        previous,
                        &matched[i..],
                        &spans.iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(),
                        compact,
                    )?;
                    let mut e = self.emitter();
                    e.flow_lists = *flow.get_or_insert_with(|| flow_lists(place));
                    e.map(std::slice::from_ref(entry), column, false);
                    self.insert(at, e.out);
                }
            }
        }
        Some(())
    }

    /// Edit a block sequence in place, as [`Writer::map`] does a mapping; items are matched
    /// by the line they were read from, else by reading the same.
    fn seq(&mut self, new: &[Node], old: &[Node], place: &Place) -> Option<()> {
        if place.children.len() != old.len() {
            return None;
        }
        let column = self.column(place.start);
        let compact = !self.starts_line(place.start);
        let mut spans = Vec::with_capacity(old.len());
        for item in &place.children {
            let dash = dash_before(self.source, item.start)?;
            spans.push((dash, item.end.max(dash + 1)));
        }
        let items: Vec<&Node> = new.iter().collect();
        let matched = self.matches(
            &items,
            |j, n| (n.line != 0 && n.line == old[j].line) || reads_same(n, &old[j]),
            old.len(),
        );
        if matched.iter().all(Option::is_none) {
            return None;
        }
        self.remove(&matched, &spans, compact)?;
        let mut previous: Option<usize> = None;
        let mut flow = None;
        for (i, item) in new.iter().enumerate() {
            match matched[i] {
                Some(j) => {
                    previous = Some(j);
                    let slot = Slot::Item {
                        dash: spans[j].0,
                        column,
                    };
                    self.node(item, &old[j], &place.children[j], slot);
                }
                None => {
                    let at = self.insertion(previous, &matched[i..], &spans, compact)?;
                    let mut e = self.emitter();
                    e.flow_lists = *flow.get_or_insert_with(|| flow_lists(place));
                    e.seq(std::slice::from_ref(item), column, false);
                    self.insert(at, e.out);
                }
            }
        }
        Some(())
    }

    /// For each new child, the old child it continues: the first after the previous match
    /// that `same` accepts, so matches keep their order. Only the next [`LOOK_AHEAD`] old
    /// children are looked at, so that large collections cost linear time; a child further
    /// on counts as new (and is written anew).
    fn matches(
        &self,
        new: &[&Node],
        same: impl Fn(usize, &Node) -> bool,
        old: usize,
    ) -> Vec<Option<usize>> {
        let mut next = 0;
        new.iter()
            .map(|n| {
                let j = (next..old.min(next + LOOK_AHEAD)).find(|&j| same(j, n))?;
                next = j + 1;
                Some(j)
            })
            .collect()
    }

    /// Remove the old children no new one continues, whole lines each. `None` for the first
    /// child of a compact collection (`- a: 1`), which shares its line with the indicator.
    fn remove(
        &mut self,
        matched: &[Option<usize>],
        spans: &[(usize, usize)],
        compact: bool,
    ) -> Option<()> {
        let mut kept = vec![false; spans.len()];
        for &j in matched.iter().flatten() {
            kept[j] = true;
        }
        for (j, &(start, end)) in spans.iter().enumerate() {
            if kept[j] {
                continue;
            }
            if (j == 0 && compact) || !self.starts_line(start) {
                return None;
            }
            let from = self.line_start(start);
            let to = self.line_end(end);
            self.edits.push((from, to, String::new()));
        }
        Some(())
    }

    /// Where a new child goes: after the line of the matched child before it, else before
    /// the line of the first matched child after it. `None` when there is neither, or the
    /// child after it is the compact first one.
    fn insertion(
        &self,
        previous: Option<usize>,
        rest: &[Option<usize>],
        spans: &[(usize, usize)],
        compact: bool,
    ) -> Option<usize> {
        if let Some(j) = previous {
            return Some(self.line_end(spans[j].1));
        }
        let next = rest.iter().flatten().next().copied()?;
        if next == 0 && compact {
            return None;
        }
        let start = spans[next].0;
        self.starts_line(start).then(|| self.line_start(start))
    }
}

/// Whether a collection writes lists as flow lists: it has a non-empty one, its new
/// children will too.
fn flow_lists(place: &Place) -> bool {
    let mut stack = vec![place];
    while let Some(place) = stack.pop() {
        if place.shape == Shape::Flow && !place.children.is_empty() {
            return true;
        }
        stack.extend(&place.children);
    }
    false
}

/// A changed scalar written where an inline (plain or quoted) one was: in the same quotes
/// when it is a string that they can hold, else as [`emit`] would write it. `None` when it
/// needs more than one line (a literal block) or is empty.
fn inline_text(s: &Scalar, old: ScalarStyle) -> Option<String> {
    let r = repr(s, false);
    if matches!(r, Repr::Empty | Repr::Literal) {
        return None;
    }
    let mut e = Emitter::new();
    if let Some(tag) = &s.tag {
        e.out.push_str(tag);
        e.out.push(' ');
    }
    let string = s.style == Style::Any || r == Repr::DoubleQuoted;
    match old {
        ScalarStyle::SingleQuoted
            if string && !s.value.is_empty() && s.value.chars().all(is_inline_char) =>
        {
            e.out.push('\'');
            e.out.push_str(&s.value.replace('\'', "''"));
            e.out.push('\'');
        }
        ScalarStyle::DoubleQuoted if string => e.double_quoted(&s.value),
        _ if r == Repr::Plain => e.out.push_str(&s.value),
        _ => e.double_quoted(&s.value),
    }
    Some(e.out)
}
