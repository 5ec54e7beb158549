//! Reading a document: saphyr-parser's events, checked for what YAML 1.1 readers
//! (Prometheus) and a YAML 1.2 parser would read differently, into the tree `build` makes
//! (or `verify`'s comparison with one), `place` recording where each node is when asked.

use std::borrow::Cow;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};

use super::build::Builder;
use super::edit::MAX_NODES;
use super::place::{Placer, Places};
use super::tree::{Node, Style};

/// Hard limits that make hostile input (alias bombs, deep nesting) fail fast.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most nodes a document may expand to, counting every alias expansion.
    pub max_nodes: usize,
    /// Most bytes of scalars a document may expand to, counting every alias expansion (an
    /// alias of a long string costs its length, not one node).
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 100,
            max_nodes: 1_000_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub message: String,
    /// The document is over [`Limits::max_nodes`] or [`Limits::max_bytes`].
    pub over_limit: Option<Over>,
}

/// Which of the [`Limits`] on what a document expands to it went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Nodes,
    Bytes,
}

impl YamlError {
    pub(super) fn new(line: usize, message: impl Into<String>) -> YamlError {
        YamlError {
            line,
            message: message.into(),
            over_limit: None,
        }
    }

    pub(super) fn limit(line: usize, over: Over, message: String) -> YamlError {
        YamlError {
            over_limit: Some(over),
            ..YamlError::new(line, message)
        }
    }
}

/// What a parsed document expanded to: the nodes and scalar bytes counted against
/// [`Limits`], aliases included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expanded {
    pub nodes: usize,
    pub bytes: usize,
}

/// saphyr's own limit on flow collections (`[[[...`), hit before `Limits::max_depth` when the
/// scanner looks ahead.
const SCANNER_FLOW_DEPTH: usize = 255;

fn scan_error(e: &ScanError, limits: Limits) -> YamlError {
    if e.info() == "recursion limit exceeded" {
        let depth = limits.max_depth.min(SCANNER_FLOW_DEPTH);
        return YamlError::new(e.marker().line(), format!("nesting deeper than {depth}"));
    }
    YamlError::new(e.marker().line(), e.info())
}

/// Reject what YAML forbids or YAML 1.1 and 1.2 readers disagree about, before the parser
/// sees it: C0 and C1 control characters (saphyr takes NUL for the end of the input) and the
/// Unicode line breaks NEL, LS and PS (line breaks in YAML 1.1, ordinary characters in 1.2).
fn check_chars(input: &str) -> Result<(), YamlError> {
    // Most text is printable ASCII and line feeds: a chunk of only those is passed over at
    // once (a test the compiler makes on many bytes together), the others byte by byte.
    const CHUNK: usize = 64;
    let bytes = input.as_bytes();
    let mut from = 0;
    while from < bytes.len() {
        let to = bytes.len().min(from + CHUNK);
        let plain = bytes[from..to].iter().fold(true, |plain, &b| {
            plain & ((b' '..=b'~').contains(&b) | (b == b'\n'))
        });
        if !plain && let Some(i) = (from..to).find(|&i| forbidden_at(bytes, i)) {
            let line = 1 + bytes[..i].iter().filter(|&&c| c == b'\n').count();
            let c = input[i..].chars().next().unwrap_or_default();
            let what = if matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') {
                "line break character (YAML 1.1 and 1.2 readers disagree on it)"
            } else {
                "control character"
            };
            return Err(YamlError::new(
                line,
                format!(
                    "{what} U+{:04X} is not allowed; write it as an escape in a double-quoted string",
                    u32::from(c)
                ),
            ));
        }
        from = to;
    }
    Ok(())
}

/// Whether the character starting at byte `i` is one [`check_chars`] rejects.
fn forbidden_at(bytes: &[u8], i: usize) -> bool {
    match bytes[i] {
        b'\t' | b'\n' | b'\r' => false,
        0..=0x1f | 0x7f => true,
        // U+0080..U+009F
        0xc2 => matches!(bytes.get(i + 1), Some(0x80..=0x9f)),
        // U+2028, U+2029
        0xe2 => bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)),
        // U+FFFE, U+FFFF
        0xef => bytes.get(i + 1) == Some(&0xbf) && matches!(bytes.get(i + 2), Some(0xbe | 0xbf)),
        _ => false,
    }
}

/// Parse one YAML document (the content of a ConfigMap data key or a manifest document).
/// An empty input (or only comments) is `Ok(None)`. More than one document is an error.
/// Aliases are expanded (counted against `limits.max_nodes`); duplicate mapping keys are an error.
/// So is what YAML 1.1 readers (Prometheus) and this YAML 1.2 parser would read differently
/// (control characters, NEL/LS/PS, `?` or a leading `:` in a plain scalar in a flow collection,
/// anchor names beyond `[A-Za-z0-9_-]`), and a tag on a collection other than `!!map`/`!!seq`.
pub fn parse(input: &str, limits: Limits) -> Result<Option<Node>, YamlError> {
    parse_counted(input, limits).map(|(root, _)| root)
}

/// [`parse`], and what the document expanded to.
pub fn parse_counted(input: &str, limits: Limits) -> Result<(Option<Node>, Expanded), YamlError> {
    let mut builder = Builder::new(limits);
    read(input, limits, &mut builder, None)?;
    Ok(builder.document())
}

/// [`parse_counted`], and where each node is in `input`, recorded from the same events: what
/// [`super::emit_in_place_over`] needs to write a changed tree over `input`.
pub fn parse_placed(
    input: &str,
    limits: Limits,
) -> Result<(Option<Node>, Expanded, Places), YamlError> {
    let mut builder = Builder::new(limits);
    let mut placer = Placer::new(input, MAX_NODES);
    read(input, limits, &mut builder, Some(&mut placer))?;
    let (root, expanded) = builder.document();
    Ok((root, expanded, placer.finish()))
}

/// What is made of a document's checked events: a tree ([`Builder`]), or a comparison with
/// one (`verify`).
pub(super) trait Sink {
    /// Whether the innermost open collection is a flow one or inside one.
    fn in_flow(&self) -> bool;
    fn scalar(
        &mut self,
        text: Cow<'_, str>,
        style: Style,
        tag: Option<String>,
        anchor: usize,
        line: usize,
    ) -> Result<(), YamlError>;
    fn open(&mut self, map: bool, anchor: usize, line: usize, flow: bool) -> Result<(), YamlError>;
    fn close(&mut self) -> Result<(), YamlError>;
    fn alias(&mut self, anchor: usize, line: usize) -> Result<(), YamlError>;
}

/// Read one document's events into `sink`, with every check [`parse`] makes; `placer`
/// records where each node is.
pub(super) fn read(
    input: &str,
    limits: Limits,
    sink: &mut impl Sink,
    mut placer: Option<&mut Placer<'_>>,
) -> Result<(), YamlError> {
    check_chars(input)?;
    let mut source = Source {
        input,
        ascii: input.is_ascii(),
        at: (0, 0),
    };
    let mut documents = 0;
    for event in Parser::new_from_str(input) {
        let (event, span) = event.map_err(|e| scan_error(&e, limits))?;
        if let Some(placer) = placer.as_deref_mut() {
            placer.event(&event, span);
        }
        let line = span.start.line();
        let anchor = match &event {
            Event::Scalar(_, _, anchor, _)
            | Event::SequenceStart(anchor, _)
            | Event::MappingStart(anchor, _) => *anchor,
            _ => 0,
        };
        if anchor > 0
            && let Some(name) = source.anchor(span)
        {
            check_anchor_name(name, line)?;
        }
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError::new(
                        line,
                        "more than one YAML document (only one is allowed here)",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    _ => Style::Any,
                };
                if style == Style::Plain && sink.in_flow() {
                    check_flow_plain(&text, line)?;
                }
                let tag = tag.map(|t| check_scalar_tag(&t, line)).transpose()?;
                sink.scalar(text, style, tag, anchor, line)?;
            }
            Event::SequenceStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "seq", line)?;
                let flow = source.is_flow_start(span);
                sink.open(false, anchor, line, flow)?;
            }
            Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "map", line)?;
                let flow = source.is_flow_start(span);
                sink.open(true, anchor, line, flow)?;
            }
            Event::SequenceEnd | Event::MappingEnd => sink.close()?,
            // Its name is an anchor's, already checked.
            Event::Alias(anchor) => sink.alias(anchor, line)?,
        }
    }
    Ok(())
}

/// Whether the document is a mapping with `key` among its top-level keys, read without
/// building a tree or expanding aliases: the cheap test for "is this a rule file" before a
/// data value that merely mentions `groups` is parsed (and its aliases expanded) as one.
pub fn has_top_level_key(input: &str, key: &str) -> Result<bool, YamlError> {
    let mut depth = 0usize;
    // Inside the root mapping: whether the next node at depth 1 is a key.
    let mut at_key = true;
    for event in Parser::new_from_str(input) {
        let (event, _) = event.map_err(|e| scan_error(&e, Limits::default()))?;
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if depth == 0 && !matches!(event, Event::MappingStart(..)) {
                    return Ok(false);
                }
                depth += 1;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                depth = depth.saturating_sub(1);
                match depth {
                    0 => return Ok(false),
                    1 => at_key = !at_key,
                    _ => {}
                }
            }
            Event::Scalar(text, ..) => match depth {
                0 => return Ok(false),
                1 if at_key && text == key => return Ok(true),
                1 => at_key = !at_key,
                _ => {}
            },
            Event::Alias(_) => match depth {
                0 => return Ok(false),
                1 => at_key = !at_key,
                _ => {}
            },
            _ => {}
        }
    }
    Ok(false)
}

/// A tag as it would be written: `!!str`, `!foo`, `!`, or verbatim `!<...>`.
fn tag_text(tag: &Tag) -> String {
    const CORE: &str = "tag:yaml.org,2002:";
    if tag.handle == CORE {
        format!("!!{}", tag.suffix)
    } else if tag.handle == "!" {
        format!("!{}", tag.suffix)
    } else if tag.handle.is_empty() && tag.suffix == "!" {
        "!".to_owned()
    } else if tag.handle.is_empty() && tag.suffix.starts_with(CORE) {
        format!("!!{}", &tag.suffix[CORE.len()..])
    } else {
        format!("!<{}{}>", tag.handle, tag.suffix)
    }
}

/// Scalar tags Prometheus and Kubernetes documents can carry: the core ones and the
/// non-specific `!`. Local and verbatim tags (`!foo`, `!<...>`, `%`-escaped ones) have no
/// meaning there (Go yaml.v2 refuses to decode them into a config) and cannot all be written
/// back as they were read, so they are refused.
fn check_scalar_tag(tag: &Tag, line: usize) -> Result<String, YamlError> {
    const CORE: [&str; 7] = ["str", "int", "float", "bool", "null", "binary", "timestamp"];
    let text = tag_text(tag);
    let known = text == "!" || text.strip_prefix("!!").is_some_and(|t| CORE.contains(&t));
    if known {
        Ok(text)
    } else {
        Err(YamlError::new(
            line,
            format!(
                "tag {text} is not supported (only !!str, !!int, !!float, !!bool, !!null, !!binary, !!timestamp and !)"
            ),
        ))
    }
}

/// The model keeps no tags on collections: accept only the ones that change nothing.
fn check_collection_tag(tag: Option<&Tag>, core: &str, line: usize) -> Result<(), YamlError> {
    let Some(tag) = tag else { return Ok(()) };
    let text = tag_text(tag);
    if text == "!" || text.strip_prefix("!!") == Some(core) {
        return Ok(());
    }
    let what = if core == "map" { "mapping" } else { "sequence" };
    Err(YamlError::new(
        line,
        format!("tag {text} on a {what} is not supported"),
    ))
}

/// The input text at the parser's offsets (which count characters, not bytes), for what the
/// events do not say: whether a collection is a flow one, and anchor names.
struct Source<'a> {
    input: &'a str,
    /// Character offsets are byte offsets.
    ascii: bool,
    /// The character and byte offsets of the last position looked up (offsets mostly grow).
    at: (usize, usize),
}

/// The length of a tag, anchor or alias token: up to white space or a flow indicator.
fn token_len(s: &str) -> usize {
    s.find(|c: char| c.is_whitespace() || ",[]{}".contains(c))
        .unwrap_or(s.len())
}

impl<'a> Source<'a> {
    /// The input from character offset `offset` on.
    fn from(&mut self, offset: usize) -> &'a str {
        if self.ascii {
            return self.input.get(offset..).unwrap_or_default();
        }
        if offset < self.at.0 {
            self.at = (0, 0);
        }
        let (chars, bytes) = self.at;
        let byte = self.input[bytes..]
            .char_indices()
            .nth(offset - chars)
            .map_or(self.input.len(), |(i, _)| bytes + i);
        self.at = (offset, byte);
        &self.input[byte..]
    }

    /// Walk a node's properties (tag, anchor, with white space and comments between) from
    /// the start of its event, up to `end` characters; returns the anchor name and what follows.
    fn properties(&mut self, span: Span) -> (Option<&'a str>, Option<char>) {
        let mut rest = self.from(span.start.index());
        let mut left = span.end.index().saturating_sub(span.start.index());
        let mut anchor = None;
        while left > 0 {
            let Some(c) = rest.chars().next() else { break };
            let len = match c {
                '!' | '&' => {
                    let len = c.len_utf8() + token_len(&rest[c.len_utf8()..]);
                    if c == '&' {
                        anchor = Some(&rest[1..len]);
                    }
                    len
                }
                '#' => rest.find('\n').unwrap_or(rest.len()),
                c if c.is_whitespace() => c.len_utf8(),
                c => return (anchor, Some(c)),
            };
            left = left.saturating_sub(rest[..len].chars().count());
            rest = &rest[len..];
        }
        (anchor, None)
    }

    /// Whether a collection start event is a flow collection's: past the properties comes
    /// the `[` or `{` the event consumed. (A block collection's start is empty, even when its
    /// first key is a flow collection, `[a]: b`.)
    fn is_flow_start(&mut self, span: Span) -> bool {
        matches!(self.properties(span).1, Some('[' | '{'))
    }

    /// The name of the anchor on the node of this event.
    fn anchor(&mut self, span: Span) -> Option<&'a str> {
        self.properties(span).0
    }
}

/// YAML 1.1 readers end anchor names at anything but letters, digits, `_` and `-`
/// (`&a?b` is the anchor `a` on the scalar `?b`); YAML 1.2 readers do not.
fn check_anchor_name(name: &str, line: usize) -> Result<(), YamlError> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        return Ok(());
    }
    Err(YamlError::new(
        line,
        format!("anchor name {name:?}: YAML 1.1 readers allow only letters, digits, `_` and `-`"),
    ))
}

/// YAML 1.1 readers (libyaml, Go yaml.v2, PyYAML) take `?` anywhere and a leading `:` in a
/// flow collection for indicators, where YAML 1.2 (saphyr) reads them as text: `[?a]` is
/// `["?a"]` here but `[{a: null}]` to Prometheus. No output could mean the same to both.
fn check_flow_plain(text: &str, line: usize) -> Result<(), YamlError> {
    if text.starts_with(':') || text.contains('?') {
        return Err(YamlError::new(
            line,
            format!(
                "plain scalar {text:?} in a flow collection: YAML 1.1 readers take its `?` or \
                 leading `:` for an indicator; quote it"
            ),
        ));
    }
    Ok(())
}
