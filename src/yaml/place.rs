//! Where each node of a document is in its text: the byte ranges the in-place writer
//! (`edit`) keeps or replaces.

use saphyr_parser::{Event, Parser, ScalarStyle};

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

/// Byte offsets of the parser's character offsets.
struct Offsets<'a> {
    input: &'a str,
    /// The byte offset of every character, when the input is not ASCII.
    bytes: Option<Vec<usize>>,
}

impl Offsets<'_> {
    fn byte(&self, index: usize) -> usize {
        match &self.bytes {
            None => index.min(self.input.len()),
            Some(bytes) => bytes.get(index).copied().unwrap_or(self.input.len()),
        }
    }
}

/// The places of a one-document input's nodes; `None` for an empty document, or one with
/// anchors or aliases (an alias's text means nothing where its anchor is not written).
pub(super) fn places(input: &str) -> Option<Place> {
    let offsets = Offsets {
        input,
        bytes: (!input.is_ascii()).then(|| input.char_indices().map(|(i, _)| i).collect()),
    };
    let mut stack: Vec<Place> = Vec::new();
    let mut root = None;
    // The end of the last scalar or flow collection: a block scalar's header comes after it.
    let mut prev_end = 0;
    for event in Parser::new_from_str(input) {
        let (event, span) = event.ok()?;
        let start = offsets.byte(span.start.index());
        let end = offsets.byte(span.end.index());
        let place = match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::DocumentEnd | Event::Nothing => {
                continue;
            }
            Event::StreamEnd => break,
            Event::Alias(_) => return None,
            Event::Scalar(_, style, anchor, tag) => {
                if anchor > 0 {
                    return None;
                }
                let mut place = Place {
                    start,
                    end,
                    shape: Shape::Inline(style),
                    indicator: None,
                    children: Vec::new(),
                };
                match style {
                    ScalarStyle::Plain if start == end => place.shape = Shape::Empty,
                    ScalarStyle::Literal | ScalarStyle::Folded => {
                        place.shape = Shape::Block;
                        // The event ends past the next line's indentation: end at its start.
                        let line = input[..end].rfind('\n').map_or(0, |i| i + 1);
                        if input[line..end].bytes().all(|c| c == b' ') {
                            place.end = line;
                        }
                        // Untagged, the event starts at the content; tagged, at the tag.
                        let from = if tag.is_some() { start } else { prev_end };
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
                prev_end = end;
                place
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if anchor > 0 {
                    return None;
                }
                let flow = skip_tag(&input[start..]).starts_with(['[', '{']);
                let shape = match event {
                    _ if flow => Shape::Flow,
                    Event::MappingStart(..) => Shape::BlockMap,
                    _ => Shape::BlockSeq,
                };
                stack.push(Place {
                    start,
                    end: start,
                    shape,
                    indicator: None,
                    children: Vec::new(),
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let mut place = stack.pop()?;
                if place.shape == Shape::Flow {
                    // The event is the closing bracket (and what follows it on its line).
                    place.end = start + 1;
                    prev_end = place.end;
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
        match stack.last_mut() {
            Some(parent) => parent.children.push(place),
            None => root = Some(place),
        }
    }
    root
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
