//! Where each node of a document is in its text: the byte ranges the in-place writer
//! (`edit`) keeps or replaces.

use saphyr_parser::{Event, ScalarStyle, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// A scalar written on one or more lines without a block header: plain or quoted.
    Inline(ScalarStyle),
    /// A literal or folded block scalar.
    Block,
    /// An empty plain scalar (`key:` with nothing after it).
    Empty,
    BlockMap,
    BlockSeq,
    /// A flow collection, `[...]` or `{...}`.
    Flow,
}

/// A node's place in the text, in the tree's shape: a mapping's children are its keys and
/// values in turn.
#[derive(Debug, Clone)]
pub(super) struct Place {
    /// The first byte: of the properties (tag), the header of a block scalar, the first key
    /// of a block mapping, the first `-` of a block sequence, the `[` or `{`.
    pub start: usize,
    /// Past the last byte: a block scalar's ends at the start of the line after it.
    pub end: usize,
    pub shape: Shape,
    /// A block scalar's indentation indicator, when its header has one.
    pub indicator: Option<usize>,
    pub children: Vec<Place>,
}

/// Where each node of a document is in its text, recorded while it was parsed
/// ([`super::parse_placed`]): what [`super::emit_in_place_over`] writes a changed tree over.
/// Empty for a document that cannot be written over (one with anchors or aliases, or more
/// nodes than the in-place writer takes).
#[derive(Debug, Clone, Default)]
pub struct Places(pub(super) Option<Place>);

/// Byte offsets of the parser's character offsets: a cursor that follows the events (forward,
/// now and then a little back), so that a text that is not ASCII costs no table of them.
struct Offsets<'a> {
    input: &'a str,
    ascii: bool,
    /// The character and byte offsets of the last position looked up.
    at: (usize, usize),
}

impl Offsets<'_> {
    fn byte(&mut self, index: usize) -> usize {
        if self.ascii {
            return index.min(self.input.len());
        }
        let (chars, bytes) = self.at;
        let byte = if index >= chars {
            self.input[bytes..]
                .char_indices()
                .nth(index - chars)
                .map(|(i, _)| bytes + i)
        } else {
            self.input[..bytes]
                .char_indices()
                .nth_back(chars - index - 1)
                .map(|(i, _)| i)
        };
        match byte {
            Some(byte) => {
                self.at = (index, byte);
                byte
            }
            None => self.input.len(),
        }
    }
}

/// Records the places of a one-document input's nodes from the parser's events, as the tree
/// is built from the same events; gives up (no places) on an anchor or alias (an alias's text
/// means nothing where its anchor is not written) and past `max` nodes.
pub(super) struct Placer<'a> {
    input: &'a str,
    offsets: Offsets<'a>,
    stack: Vec<Place>,
    root: Option<Place>,
    /// The end of the last scalar or flow collection: a block scalar's header comes after it.
    prev_end: usize,
    /// Nodes left before giving up.
    left: usize,
    failed: bool,
}

impl<'a> Placer<'a> {
    pub(super) fn new(input: &'a str, max: usize) -> Placer<'a> {
        Placer {
            input,
            offsets: Offsets {
                input,
                ascii: input.is_ascii(),
                at: (0, 0),
            },
            stack: Vec::new(),
            root: None,
            prev_end: 0,
            left: max,
            failed: false,
        }
    }

    /// The places recorded; empty when the document has none that can be written over.
    pub(super) fn finish(self) -> Places {
        Places(if self.failed { None } else { self.root })
    }

    /// Take in the parser's next event.
    pub(super) fn event(&mut self, event: &Event, span: Span) {
        if !self.failed && self.place(event, span).is_none() {
            self.failed = true;
            self.stack = Vec::new();
        }
    }

    /// `None` when the document cannot be placed.
    fn place(&mut self, event: &Event, span: Span) -> Option<()> {
        let input = self.input;
        let start = self.offsets.byte(span.start.index());
        let end = self.offsets.byte(span.end.index());
        let place = match event {
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => return Some(()),
            Event::Alias(_) => return None,
            Event::Scalar(_, style, anchor, tag) => {
                if *anchor > 0 {
                    return None;
                }
                self.left = self.left.checked_sub(1)?;
                let mut place = Place {
                    start,
                    end,
                    shape: Shape::Inline(*style),
                    indicator: None,
                    children: Vec::new(),
                };
                match style {
                    ScalarStyle::Plain if start == end => place.shape = Shape::Empty,
                    // The parser's span of a quoted scalar runs on over a comment after it:
                    // the scalar ends at its closing quote.
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                        place.end = closing_quote(input, start, end)?;
                    }
                    ScalarStyle::Literal | ScalarStyle::Folded => {
                        place.shape = Shape::Block;
                        // The event ends past the next line's indentation: end at its start.
                        let line = input[..end].rfind('\n').map_or(0, |i| i + 1);
                        if input[line..end].bytes().all(|c| c == b' ') {
                            place.end = line;
                        }
                        // Untagged, the event starts at the content; tagged, at the tag.
                        let from = if tag.is_some() { start } else { self.prev_end };
                        let header = find_header(input, from, tag.is_some())?;
                        place.start = place.start.min(header);
                        place.indicator = input[header + 1..]
                            .bytes()
                            .take_while(|c| !c.is_ascii_whitespace())
                            .find(u8::is_ascii_digit)
                            .map(|d| usize::from(d - b'0'));
                    }
                    _ => {}
                }
                self.prev_end = end;
                place
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if *anchor > 0 {
                    return None;
                }
                self.left = self.left.checked_sub(1)?;
                let flow = skip_tag(&input[start..]).starts_with(['[', '{']);
                let shape = match event {
                    _ if flow => Shape::Flow,
                    Event::MappingStart(..) => Shape::BlockMap,
                    _ => Shape::BlockSeq,
                };
                self.stack.push(Place {
                    start,
                    end: start,
                    shape,
                    indicator: None,
                    children: Vec::new(),
                });
                return Some(());
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let mut place = self.stack.pop()?;
                if place.shape == Shape::Flow {
                    // The event is the closing bracket (and what follows it on its line).
                    place.end = start + 1;
                    self.prev_end = place.end;
                } else {
                    let first = place.children.first()?;
                    place.start = match place.shape {
                        Shape::BlockSeq => dash_before(input, first.start)?,
                        _ => first.start,
                    };
                    place.end = place.children.iter().map(|c| c.end).max()?;
                }
                place
            }
        };
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(place),
            None => self.root = Some(place),
        }
        Some(())
    }
}

/// `s` past a tag (`!!map `) and the white space after it.
fn skip_tag(s: &str) -> &str {
    if !s.starts_with('!') {
        return s;
    }
    let len = s.find(char::is_whitespace).unwrap_or(s.len());
    s[len..].trim_start()
}

/// The `|` or `>` of a block scalar's header, looked for from `from`: past a tag when there
/// is one, else past the `:`, `-` or `?` and white space before the value.
fn find_header(input: &str, from: usize, tagged: bool) -> Option<usize> {
    let mut rest = input.get(from..)?;
    if tagged {
        rest = skip_tag(rest);
    } else {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ':' | '-' | '?'));
    }
    let at = input.len() - rest.len();
    rest.starts_with(['|', '>']).then_some(at)
}

/// The `-` of the sequence item whose content starts at `start`: before it, only white
/// space (and line breaks) back to the indicator.
pub(super) fn dash_before(input: &str, start: usize) -> Option<usize> {
    let before = input.get(..start)?.trim_end();
    before.ends_with('-').then(|| before.len() - 1)
}

/// Past the closing quote of the quoted scalar at `start` (`''` in single quotes and `\` escapes
/// in double quotes are skipped), within `..end`.
fn closing_quote(input: &str, start: usize, end: usize) -> Option<usize> {
    let bytes = input.as_bytes();
    let quote = *bytes.get(start)?;
    let mut at = start + 1;
    while at < end {
        match bytes[at] {
            b'\\' if quote == b'"' => at += 2,
            b'\'' if quote == b'\'' && bytes.get(at + 1) == Some(&b'\'') => at += 2,
            b if b == quote => return Some(at + 1),
            _ => at += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quoted scalar's place ends at its closing quote, not at the end of a comment after it.
    #[test]
    fn quoted_scalars_end_at_their_quote() {
        for (input, want) in [
            ("a: 'x' # c\nb: 1\n", "'x'"),
            ("a: 'it''s' # it's\nb: 1\n", "'it''s'"),
            ("a: \"x\\\"y\" # \"c\"\nb: 1\n", "\"x\\\"y\""),
            ("a: \"multi\n  line\" # c\nb: 1\n", "\"multi\n  line\""),
            ("a: x # c\nb: 1\n", "x"),
        ] {
            let (_, _, places) =
                crate::yaml::parse_placed(input, crate::yaml::Limits::default()).expect("parses");
            let root = places.0.expect("placed");
            let value = &root.children[1];
            assert_eq!(&input[value.start..value.end], want, "{input:?}");
        }
    }

    /// The cursor gives each character's byte offset in whatever order it is asked.
    #[test]
    fn offsets_forward_and_back() {
        let input = "ä: 'ß'\n# ∑ 😀\nb: [é, x]\n";
        let table: Vec<usize> = input.char_indices().map(|(i, _)| i).collect();
        let mut offsets = Offsets {
            input,
            ascii: false,
            at: (0, 0),
        };
        let chars = table.len();
        for index in [3, 1, 9, 0, 12, 11, chars - 1, 2, chars, chars + 5, 7, 7, 4] {
            let want = table.get(index).copied().unwrap_or(input.len());
            assert_eq!(offsets.byte(index), want, "character {index}");
        }
    }
}
