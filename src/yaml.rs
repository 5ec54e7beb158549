//! YAML documents as Prometheus reads them.
//!
//! Prometheus (Go `yaml.v2`) and kubectl read YAML 1.1, where unquoted `on`, `yes`, `0777`,
//! `1_000` or `12:30` are not strings. serde-based YAML crates resolve YAML 1.2 and lose how a
//! scalar was written, so a round trip through them can silently turn a string into a boolean.
//! This module keeps every scalar's original text and style: plain scalars are written back
//! exactly as they were read, and any other string is written plain only where both a YAML 1.1
//! and a YAML 1.2 reader would read it back as the same string.

use std::collections::HashMap;
use std::fmt::Write as _;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};

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
    fn new(line: usize, message: impl Into<String>) -> YamlError {
        YamlError {
            line,
            message: message.into(),
            over_limit: None,
        }
    }

    fn limit(line: usize, over: Over, message: String) -> YamlError {
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

// ---------------------------------------------------------------------------------------
// Resolving plain scalars

/// What a YAML 1.1 reader makes of a scalar (see <https://yaml.org/type/>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Timestamp,
    /// `<<`, the merge key.
    Merge,
    /// `=`, the "default value" key.
    Value,
    Str,
}

/// The type a YAML 1.1 reader gives an untagged plain scalar, by the yaml.org 1.1 type
/// regexes as Go `yaml.v2` and PyYAML implement them: `y`/`n` are booleans (yaml.v2, the
/// spec); a float needs a digit next to its dot (`1.`, `.5`, but not `.` or `1.2.3`).
pub fn resolve_1_1(text: &str) -> Kind {
    let Some(&first) = text.as_bytes().first() else {
        return Kind::Null;
    };
    match first {
        b'~' | b'n' | b'N' if matches!(text, "~" | "null" | "Null" | "NULL") => Kind::Null,
        b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O'
            if bool_1_1(text).is_some() =>
        {
            Kind::Bool
        }
        b'<' if text == "<<" => Kind::Merge,
        b'=' if text == "=" => Kind::Value,
        b'0'..=b'9' | b'+' | b'-' | b'.' => {
            if int_form(text).is_some() {
                Kind::Int
            } else if float_form(text).is_some() {
                Kind::Float
            } else if is_timestamp_1_1(text) {
                Kind::Timestamp
            } else {
                Kind::Str
            }
        }
        _ => Kind::Str,
    }
}

fn bool_1_1(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

fn split_sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

#[derive(Debug, Clone, Copy)]
enum IntForm<'a> {
    Bin(&'a str),
    Oct(&'a str),
    Dec(&'a str),
    Hex(&'a str),
    /// Base 60: `190:20:30`.
    Sexagesimal(&'a str),
}

fn all_bytes(s: &str, f: impl Fn(u8) -> bool) -> bool {
    s.bytes().all(f)
}

/// `(:[0-5]?[0-9])+`, the tail of a base 60 number.
fn is_sexagesimal_tail(tail: &str) -> bool {
    !tail.is_empty()
        && tail.split(':').all(|group| match group.as_bytes() {
            [d] => d.is_ascii_digit(),
            [h, d] => (b'0'..=b'5').contains(h) && d.is_ascii_digit(),
            _ => false,
        })
}

/// The YAML 1.1 int forms: `[-+]?0b[0-1_]+`, `[-+]?0[0-7_]+`, `[-+]?(0|[1-9][0-9_]*)`,
/// `[-+]?0x[0-9a-fA-F_]+`, `[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+`.
fn int_form(text: &str) -> Option<(bool, IntForm<'_>)> {
    let (negative, body) = split_sign(text);
    let form = if let Some(digits) = body.strip_prefix("0b") {
        (!digits.is_empty() && all_bytes(digits, |c| matches!(c, b'0' | b'1' | b'_')))
            .then_some(IntForm::Bin(digits))?
    } else if let Some(digits) = body.strip_prefix("0x") {
        (!digits.is_empty() && all_bytes(digits, |c| c.is_ascii_hexdigit() || c == b'_'))
            .then_some(IntForm::Hex(digits))?
    } else {
        match body.as_bytes().first()? {
            b'0' if body.len() == 1 => IntForm::Dec(body),
            b'0' => all_bytes(&body[1..], |c| matches!(c, b'0'..=b'7' | b'_'))
                .then_some(IntForm::Oct(&body[1..]))?,
            b'1'..=b'9' => match body.split_once(':') {
                None => all_bytes(body, |c| c.is_ascii_digit() || c == b'_')
                    .then_some(IntForm::Dec(body))?,
                Some((head, tail)) => (all_bytes(head, |c| c.is_ascii_digit() || c == b'_')
                    && is_sexagesimal_tail(tail))
                .then_some(IntForm::Sexagesimal(body))?,
            },
            _ => return None,
        }
    };
    Some((negative, form))
}

#[derive(Debug, Clone, Copy)]
enum FloatForm<'a> {
    Decimal(&'a str),
    /// Base 60 with a fraction: `190:20:30.15`.
    Sexagesimal(&'a str),
    Inf,
    NaN,
}

/// The YAML 1.1 float forms (PyYAML's reading of the spec regexes, which also accepts a
/// sign on `.5`): `[-+]?([0-9][0-9_]*\.[0-9_]*|\.[0-9_]+)([eE][-+][0-9]+)?`,
/// `[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*`, `[-+]?\.(inf|Inf|INF)`, `\.(nan|NaN|NAN)`.
fn float_form(text: &str) -> Option<(bool, FloatForm<'_>)> {
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some((false, FloatForm::NaN));
    }
    let (negative, body) = split_sign(text);
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        return Some((negative, FloatForm::Inf));
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac) = mantissa.split_once('.')?;
    if !all_bytes(frac, |c| c.is_ascii_digit() || c == b'_') {
        return None;
    }
    if let Some(exp) = exponent {
        let digits = exp.strip_prefix(['-', '+'])?;
        if digits.is_empty() || !all_bytes(digits, |c| c.is_ascii_digit()) {
            return None;
        }
    }
    match int_part.split_once(':') {
        None if int_part.is_empty() => (!frac.is_empty()).then_some(()),
        None => (int_part.as_bytes()[0].is_ascii_digit()
            && all_bytes(int_part, |c| c.is_ascii_digit() || c == b'_'))
        .then_some(()),
        Some((head, tail)) => (exponent.is_none()
            && head.as_bytes().first().is_some_and(u8::is_ascii_digit)
            && all_bytes(head, |c| c.is_ascii_digit() || c == b'_')
            && is_sexagesimal_tail(tail))
        .then_some(()),
    }?;
    let form = if int_part.contains(':') {
        FloatForm::Sexagesimal(body)
    } else {
        FloatForm::Decimal(body)
    };
    Some((negative, form))
}

/// A tiny cursor for the timestamp regex.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.at += usize::from(hit);
        hit
    }

    /// Between `min` and `max` ASCII digits.
    fn digits(&mut self, min: usize, max: usize) -> bool {
        let start = self.at;
        while self.at - start < max && self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start >= min
    }

    fn blanks(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
        self.at - start
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

/// `YYYY-MM-DD`, or `YYYY-M-D` then `T`/`t`/blanks, `h:mm:ss`, an optional fraction and an
/// optional zone (`Z`, `+1`, `-05:00`, after optional blanks).
fn is_timestamp_1_1(text: &str) -> bool {
    let mut c = Cursor {
        bytes: text.as_bytes(),
        at: 0,
    };
    if !(c.digits(4, 4) && c.eat(b'-') && c.digits(1, 2) && c.eat(b'-') && c.digits(1, 2)) {
        return false;
    }
    if c.done() {
        // The date-only form wants two-digit month and day.
        return text.len() == 10;
    }
    if !(c.eat(b'T') || c.eat(b't') || c.blanks() > 0) {
        return false;
    }
    if !(c.digits(1, 2) && c.eat(b':') && c.digits(2, 2) && c.eat(b':') && c.digits(2, 2)) {
        return false;
    }
    if c.eat(b'.') {
        c.digits(0, usize::MAX);
    }
    if c.done() {
        return true;
    }
    c.blanks();
    if c.eat(b'Z') {
        return c.done();
    }
    if !(c.eat(b'+') || c.eat(b'-')) || !c.digits(1, 2) {
        return false;
    }
    if c.eat(b':') && !c.digits(2, 2) {
        return false;
    }
    c.done()
}

/// A superset of what any common reader takes for a number: YAML 1.1 (including the spec's
/// loose `1.2.3` float), YAML 1.2 core (`1e3`, `0o17`), Go `strconv` after yaml.v2 drops the
/// underscores (`0B1`, `0_7`).
fn looks_numeric(text: &str) -> bool {
    let (_, body) = split_sign(text);
    let bytes = body.as_bytes();
    if bytes.len() > 2
        && bytes[0] == b'0'
        && matches!(bytes[1], b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
    {
        return bytes[2..]
            .iter()
            .all(|c| c.is_ascii_hexdigit() || *c == b'_');
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if mantissa.is_empty() || !all_bytes(mantissa, |c| c.is_ascii_digit() || b"_.:".contains(&c)) {
        return false;
    }
    match exponent {
        None => true,
        Some(exp) => {
            let digits = exp.strip_prefix(['-', '+']).unwrap_or(exp);
            mantissa.bytes().any(|c| c.is_ascii_digit())
                && !digits.is_empty()
                && all_bytes(digits, |c| c.is_ascii_digit())
        }
    }
}

/// Whether some reader might not take `text`, written plain, for a string: a YAML 1.1
/// non-string, anything number-like, or anything starting like a date (yaml.v2 reads
/// `2006-1-2` as a timestamp).
fn is_ambiguous(text: &str) -> bool {
    let b = text.as_bytes();
    resolve_1_1(text) != Kind::Str
        || looks_numeric(text)
        || (b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-')
}

// ---------------------------------------------------------------------------------------
// Checking characters

/// A character a YAML 1.1 reader (PyYAML) accepts in a stream and that no reader takes for a
/// line break or a byte order mark: what may appear unescaped in a single-line scalar.
fn is_inline_char(c: char) -> bool {
    match c {
        ' '..='~' => true,
        '\u{2028}' | '\u{2029}' | '\u{feff}' => false,
        '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' => true,
        c => c >= '\u{10000}',
    }
}

/// Reject what YAML forbids or YAML 1.1 and 1.2 readers disagree about, before the parser
/// sees it: C0 and C1 control characters (saphyr takes NUL for the end of the input) and the
/// Unicode line breaks NEL, LS and PS (line breaks in YAML 1.1, ordinary characters in 1.2).
fn check_chars(input: &str) -> Result<(), YamlError> {
    let bytes = input.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let bad = match b {
            b'\t' | b'\n' | b'\r' => false,
            0..=0x1f | 0x7f => true,
            // U+0080..U+009F
            0xc2 => matches!(bytes.get(i + 1), Some(0x80..=0x9f)),
            // U+2028, U+2029
            0xe2 => {
                bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9))
            }
            // U+FFFE, U+FFFF
            0xef => {
                bytes.get(i + 1) == Some(&0xbf) && matches!(bytes.get(i + 2), Some(0xbe | 0xbf))
            }
            _ => false,
        };
        if bad {
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
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Parsing

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
    check_chars(input)?;
    let mut builder = Builder {
        limits,
        nodes: 0,
        bytes: 0,
        stack: Vec::new(),
        anchors: HashMap::new(),
        finished: Vec::new(),
        placeholders: false,
        root: None,
    };
    let mut source = Source {
        input,
        ascii: input.is_ascii(),
        at: (0, 0),
    };
    let mut documents = 0;
    for event in Parser::new_from_str(input) {
        let (event, span) = event.map_err(|e| scan_error(&e, limits))?;
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
                if style == Style::Plain && builder.in_flow() {
                    check_flow_plain(&text, line)?;
                }
                let tag = tag.map(|t| check_scalar_tag(&t, line)).transpose()?;
                let scalar = Scalar {
                    value: text.into_owned(),
                    style,
                    tag,
                };
                let bytes = scalar.value.len();
                builder.count(1, bytes, line)?;
                let node = Node {
                    value: Value::Scalar(scalar),
                    line,
                };
                if anchor > 0 {
                    builder.anchor(anchor, &node, 1, 0, bytes);
                }
                builder.deliver(node, 1, 0, bytes)?;
            }
            Event::SequenceStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "seq", line)?;
                let flow = source.is_flow_start(span);
                builder.open(FrameValue::Seq(Vec::new()), anchor, line, flow)?;
            }
            Event::MappingStart(anchor, tag) => {
                check_collection_tag(tag.as_deref(), "map", line)?;
                let map = FrameValue::Map {
                    entries: Vec::new(),
                    key: None,
                    index: None,
                };
                let flow = source.is_flow_start(span);
                builder.open(map, anchor, line, flow)?;
            }
            Event::SequenceEnd | Event::MappingEnd => builder.close()?,
            // Its name is an anchor's, already checked.
            Event::Alias(anchor) => builder.alias(anchor, line)?,
        }
    }
    let expanded = Expanded {
        nodes: builder.nodes,
        bytes: builder.bytes,
    };
    let root = builder.finish().filter(|root| {
        // `---` alone, like an empty input, is a document without content.
        !matches!(&root.value, Value::Scalar(s) if s.value.is_empty() && s.style == Style::Plain && s.tag.is_none())
    });
    Ok((root, expanded))
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

/// An anchored node, kept to expand its aliases.
struct Anchored {
    node: Node,
    /// Nodes in the subtree.
    size: usize,
    /// Collections on the deepest path (0 for a scalar).
    height: usize,
    /// Bytes of the scalars in the subtree.
    bytes: usize,
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

/// An open collection.
struct Frame {
    value: FrameValue,
    anchor: usize,
    line: usize,
    size: usize,
    height: usize,
    bytes: usize,
    /// A flow collection (`[...]`, `{...}`) or inside one.
    flow: bool,
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

/// The identity of a scalar key: what it resolves to, its custom tag, its text.
#[derive(PartialEq, Eq, Hash)]
struct KeyId {
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
struct Builder {
    limits: Limits,
    nodes: usize,
    /// Bytes of scalars, aliases counted by what they expand to.
    bytes: usize,
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

    fn in_flow(&self) -> bool {
        self.stack.last().is_some_and(|f| f.flow)
    }

    fn open(
        &mut self,
        value: FrameValue,
        anchor: usize,
        line: usize,
        flow: bool,
    ) -> Result<(), YamlError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(self.too_deep(line));
        }
        self.count(1, 0, line)?;
        let flow = flow || self.in_flow();
        self.stack.push(Frame {
            value,
            anchor,
            line,
            size: 1,
            height: 1,
            bytes: 0,
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
            self.anchor(frame.anchor, &node, frame.size, frame.height, frame.bytes);
        }
        self.deliver(node, frame.size, frame.height, frame.bytes)
    }

    fn anchor(&mut self, id: usize, node: &Node, size: usize, height: usize, bytes: usize) {
        let anchored = Anchored {
            node: node.clone(),
            size,
            height,
            bytes,
        };
        self.anchors.insert(id, anchored);
        self.finished.push(id);
    }

    fn alias(&mut self, anchor: usize, line: usize) -> Result<(), YamlError> {
        let Some(anchored) = self.anchors.get(&anchor) else {
            return Err(YamlError::new(
                line,
                "alias to a node that contains it (recursive alias)",
            ));
        };
        let (size, height, bytes) = (anchored.size, anchored.height, anchored.bytes);
        if self.stack.len() + height > self.limits.max_depth {
            return Err(self.too_deep(line));
        }
        self.count(size, bytes, line)?;
        let node = if height == 0 {
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
        self.deliver(node, size, height, bytes)
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
    fn deliver(
        &mut self,
        node: Node,
        size: usize,
        height: usize,
        bytes: usize,
    ) -> Result<(), YamlError> {
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        frame.size += size;
        frame.bytes += bytes;
        frame.height = frame.height.max(height + 1);
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

// ---------------------------------------------------------------------------------------
// Emitting

/// Write a node as a block-style YAML document (no `---`), ending in a newline.
pub fn emit(node: &Node) -> String {
    let mut e = Emitter {
        out: String::with_capacity(4096),
    };
    match &node.value {
        Value::Scalar(s) => e.scalar(s, 2, false),
        Value::Seq(items) if items.is_empty() => e.out.push_str("[]\n"),
        Value::Map(entries) if entries.is_empty() => e.out.push_str("{}\n"),
        Value::Seq(items) => e.seq(items, 0, false),
        Value::Map(entries) => e.map(entries, 0, false),
    }
    e.out
}

/// How a scalar's text is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repr {
    /// Nothing (an empty plain scalar: null, or empty with its tag).
    Empty,
    Plain,
    DoubleQuoted,
    Literal,
}

fn repr(s: &Scalar, key: bool) -> Repr {
    let text = s.value.as_str();
    match s.style {
        Style::Plain if text.is_empty() => Repr::Empty,
        // Plain in the input: the same text means the same value to every reader.
        Style::Plain if plain_syntax_ok(text, false) => Repr::Plain,
        // A multi-line plain scalar (its line breaks folded) or a `Node::plain` that cannot be
        // plain: only ever a string.
        Style::Plain => Repr::DoubleQuoted,
        _ if plain_syntax_ok(text, true) && !is_ambiguous(text) => Repr::Plain,
        _ if !key && literal_ok(text) => Repr::Literal,
        _ => Repr::DoubleQuoted,
    }
}

/// Whether `text` can be written as a plain scalar in block context and read back as the
/// same text by YAML 1.1 and 1.2 readers. `strict` also refuses a leading `-`, `?` or `:`
/// (fine before a non-space, but not worth the risk for strings promfed writes).
fn plain_syntax_ok(text: &str, strict: bool) -> bool {
    let b = text.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    match first {
        b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\''
        | b'"' | b'%' | b'@' | b'`' | b' ' => return false,
        b'-' | b'?' | b':' if strict || b.len() < 2 || b[1] == b' ' => return false,
        _ => {}
    }
    !matches!(last, b' ' | b':')
        && !text.starts_with("---")
        && !text.starts_with("...")
        && !text.contains(": ")
        && !text.contains(" #")
        // Tabs: PyYAML ends a plain scalar at a tab.
        && text.chars().all(is_inline_char)
}

/// Whether a multi-line string can be a literal block scalar: printable (tabs allowed), at
/// least one line break, something besides spaces.
fn literal_ok(text: &str) -> bool {
    let body = text.trim_end_matches('\n');
    text.contains('\n')
        && body.bytes().any(|c| c != b'\n' && c != b' ')
        && body
            .chars()
            .all(|c| c == '\n' || c == '\t' || is_inline_char(c))
}

struct Emitter {
    out: String,
}

const SPACES: &str = "                                                                ";

impl Emitter {
    fn pad(&mut self, mut n: usize) {
        while n > SPACES.len() {
            self.out.push_str(SPACES);
            n -= SPACES.len();
        }
        self.out.push_str(&SPACES[..n]);
    }

    /// A scalar in value position, then the line break. `block_indent` is where literal
    /// content lines go: 2 more than the indentation of the collection holding the scalar.
    fn scalar(&mut self, s: &Scalar, block_indent: usize, space: bool) {
        let mut sep = space;
        if let Some(tag) = &s.tag {
            if sep {
                self.out.push(' ');
            }
            self.out.push_str(tag);
            sep = true;
        }
        let r = repr(s, false);
        if sep && r != Repr::Empty {
            self.out.push(' ');
        }
        match r {
            Repr::Empty => {}
            Repr::Plain => self.out.push_str(&s.value),
            Repr::DoubleQuoted => self.double_quoted(&s.value),
            Repr::Literal => return self.literal(&s.value, block_indent),
        }
        self.out.push('\n');
    }

    /// A mapping key as an implicit key (one line, at most 1024 characters, as YAML asks),
    /// without the `:`. Returns false, having written nothing, when it needs the `? ` form.
    fn implicit_key(&mut self, key: &Node) -> bool {
        let Value::Scalar(s) = &key.value else {
            return false;
        };
        let start = self.out.len();
        if let Some(tag) = &s.tag {
            self.out.push_str(tag);
            self.out.push(' ');
        }
        match repr(s, true) {
            Repr::Plain => self.out.push_str(&s.value),
            Repr::DoubleQuoted => self.double_quoted(&s.value),
            Repr::Empty | Repr::Literal => {
                self.out.truncate(start);
                return false;
            }
        }
        if self.out[start..].chars().count() > 1000 {
            self.out.truncate(start);
            return false;
        }
        true
    }

    fn map(&mut self, entries: &[(Node, Node)], indent: usize, inline_first: bool) {
        for (i, (key, value)) in entries.iter().enumerate() {
            if i > 0 || !inline_first {
                self.pad(indent);
            }
            if !self.implicit_key(key) {
                self.out.push('?');
                self.after_indicator(key, indent + 2);
                self.pad(indent);
            }
            self.out.push(':');
            self.after_colon(value, indent);
        }
    }

    fn seq(&mut self, items: &[Node], indent: usize, inline_first: bool) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 || !inline_first {
                self.pad(indent);
            }
            self.out.push('-');
            self.after_indicator(item, indent + 2);
        }
    }

    /// A mapping value, after the `:` of a key at column `indent`. Sequences stay at the
    /// key's column; mappings go 2 deeper.
    fn after_colon(&mut self, node: &Node, indent: usize) {
        match &node.value {
            Value::Scalar(s) => self.scalar(s, indent + 2, true),
            Value::Seq(items) if items.is_empty() => self.out.push_str(" []\n"),
            Value::Map(entries) if entries.is_empty() => self.out.push_str(" {}\n"),
            Value::Seq(items) => {
                self.out.push('\n');
                self.seq(items, indent, false);
            }
            Value::Map(entries) => {
                self.out.push('\n');
                self.map(entries, indent + 2, false);
            }
        }
    }

    /// A sequence item after its `-`, or an explicit key after its `?`; `indent` is the
    /// column of the content, 2 past the indicator. Collections start on the same line.
    fn after_indicator(&mut self, node: &Node, indent: usize) {
        match &node.value {
            Value::Scalar(s) => self.scalar(s, indent, true),
            Value::Seq(items) if items.is_empty() => self.out.push_str(" []\n"),
            Value::Map(entries) if entries.is_empty() => self.out.push_str(" {}\n"),
            Value::Seq(items) => {
                self.out.push(' ');
                self.seq(items, indent, true);
            }
            Value::Map(entries) => {
                self.out.push(' ');
                self.map(entries, indent, true);
            }
        }
    }

    /// `|` with chomping (`-` no final line break, none for one, `+` for more) and an
    /// indentation indicator when the first line starts with white space (the reader would
    /// otherwise take it for indentation). Content lines at `indent`, empty lines left empty.
    fn literal(&mut self, text: &str, indent: usize) {
        let body = text.trim_end_matches('\n');
        let breaks = text.len() - body.len();
        self.out.push('|');
        let first = body.split('\n').find(|l| !l.is_empty()).unwrap_or_default();
        if first.starts_with([' ', '\t']) {
            // Relative to the parent collection, which is always 2 less than `indent`.
            self.out.push('2');
        }
        match breaks {
            0 => self.out.push('-'),
            1 => {}
            _ => self.out.push('+'),
        }
        self.out.push('\n');
        for line in body.split('\n') {
            if !line.is_empty() {
                self.pad(indent);
                self.out.push_str(line);
            }
            self.out.push('\n');
        }
        for _ in 1..breaks {
            self.out.push('\n');
        }
    }

    fn double_quoted(&mut self, text: &str) {
        self.out.push('"');
        let mut clean = 0;
        for (i, c) in text.char_indices() {
            let escape = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\t' => "\\t",
                '\r' => "\\r",
                '\0' => "\\0",
                c if is_inline_char(c) => continue,
                _ => "",
            };
            self.out.push_str(&text[clean..i]);
            clean = i + c.len_utf8();
            if escape.is_empty() {
                let code = u32::from(c);
                // Writing to a String cannot fail.
                let _ = if code <= 0xff {
                    write!(self.out, "\\x{code:02X}")
                } else if code <= 0xffff {
                    write!(self.out, "\\u{code:04X}")
                } else {
                    write!(self.out, "\\U{code:08X}")
                };
            } else {
                self.out.push_str(escape);
            }
        }
        self.out.push_str(&text[clean..]);
        self.out.push('"');
    }
}

// ---------------------------------------------------------------------------------------
// The tree

impl Scalar {
    /// What a YAML 1.1 reader makes of this scalar: an untagged plain scalar by
    /// [`resolve_1_1`], a quoted or block one is a string, a core tag (`!!int`) says it.
    pub fn kind(&self) -> Kind {
        match self.tag.as_deref() {
            None if self.style == Style::Plain => resolve_1_1(&self.value),
            Some("!!null") => Kind::Null,
            Some("!!bool") => Kind::Bool,
            Some("!!int") => Kind::Int,
            Some("!!float") => Kind::Float,
            Some("!!timestamp") => Kind::Timestamp,
            Some("!!merge") => Kind::Merge,
            _ => Kind::Str,
        }
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

/// An unsigned integer, exact while it fits in 128 bits.
#[derive(Debug, Clone, Copy)]
enum Magnitude {
    Exact(u128),
    Approx(f64),
}

impl Magnitude {
    fn mul_add(self, radix: u32, digit: u32) -> Magnitude {
        match self {
            Magnitude::Exact(v) => v
                .checked_mul(u128::from(radix))
                .and_then(|v| v.checked_add(u128::from(digit)))
                .map_or_else(
                    || Magnitude::Approx(v as f64 * f64::from(radix) + f64::from(digit)),
                    Magnitude::Exact,
                ),
            Magnitude::Approx(v) => Magnitude::Approx(v * f64::from(radix) + f64::from(digit)),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Magnitude::Exact(v) => v as f64,
            Magnitude::Approx(v) => v,
        }
    }
}

fn digits_value(start: Magnitude, digits: &str, radix: u32) -> Magnitude {
    digits
        .chars()
        .filter_map(|c| c.to_digit(radix))
        .fold(start, |acc, d| acc.mul_add(radix, d))
}

fn int_value(form: IntForm<'_>) -> Magnitude {
    let zero = Magnitude::Exact(0);
    match form {
        IntForm::Bin(d) => digits_value(zero, d, 2),
        IntForm::Oct(d) => digits_value(zero, d, 8),
        IntForm::Dec(d) => digits_value(zero, d, 10),
        IntForm::Hex(d) => digits_value(zero, d, 16),
        IntForm::Sexagesimal(d) => d.split(':').fold(zero, |acc, group| {
            let group = digits_value(zero, group, 10);
            match (acc, group) {
                (Magnitude::Exact(a), Magnitude::Exact(g)) => {
                    match a.checked_mul(60).and_then(|a| a.checked_add(g)) {
                        Some(v) => Magnitude::Exact(v),
                        None => Magnitude::Approx(a as f64 * 60.0 + g as f64),
                    }
                }
                (a, g) => Magnitude::Approx(a.as_f64() * 60.0 + g.as_f64()),
            }
        }),
    }
}

/// An int as yaml.v2 gives it: i64 or u64 when it fits, else a float.
fn int_json(text: &str) -> Option<serde_json::Value> {
    let (negative, form) = int_form(text)?;
    let number = match int_value(form) {
        Magnitude::Exact(v) if negative && v <= i64::MAX as u128 + 1 => {
            serde_json::Number::from((-(v as i128)) as i64)
        }
        Magnitude::Exact(v) if !negative && v <= u128::from(u64::MAX) => {
            serde_json::Number::from(v as u64)
        }
        m => {
            let f = m.as_f64();
            serde_json::Number::from_f64(if negative { -f } else { f })?
        }
    };
    Some(serde_json::Value::Number(number))
}

/// A float; infinities and NaN (which JSON cannot hold) give `None`.
fn float_json(text: &str) -> Option<serde_json::Value> {
    let (negative, form) = float_form(text)?;
    let magnitude = match form {
        FloatForm::Inf | FloatForm::NaN => return None,
        FloatForm::Decimal(body) => body.replace('_', "").parse::<f64>().ok()?,
        FloatForm::Sexagesimal(body) => {
            let body = body.replace('_', "");
            let (whole, last) = body.rsplit_once(':')?;
            let whole = whole
                .split(':')
                .try_fold(0.0, |acc: f64, g| Some(acc * 60.0 + g.parse::<f64>().ok()?))?;
            whole * 60.0 + last.parse::<f64>().ok()?
        }
    };
    let value = if negative { -magnitude } else { magnitude };
    serde_json::Number::from_f64(value).map(serde_json::Value::Number)
}

/// A JSON number as a plain scalar every reader takes for the same number: floats always
/// have a dot and a signed exponent (`1.0e+300`, as YAML 1.1 wants).
fn number_text(n: &serde_json::Number) -> String {
    let text = n.to_string();
    if n.is_i64() || n.is_u64() {
        return text;
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (text.as_str(), None),
    };
    let mut out = String::with_capacity(text.len() + 4);
    out.push_str(mantissa);
    if !mantissa.contains('.') {
        out.push_str(".0");
    }
    if let Some(exp) = exponent {
        out.push('e');
        if !exp.starts_with(['-', '+']) {
            out.push('+');
        }
        out.push_str(exp);
    }
    out
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse_ok(input: &str) -> Node {
        parse(input, Limits::default())
            .unwrap_or_else(|e| panic!("parsing {input:?}: {e}"))
            .unwrap_or_else(|| panic!("{input:?} has no document"))
    }

    fn parse_err(input: &str) -> YamlError {
        match parse(input, Limits::default()) {
            Ok(node) => panic!("{input:?} parsed: {node:?}"),
            Err(e) => e,
        }
    }

    /// The tree as a reader sees it, to compare trees read from different texts: no line
    /// numbers, and strings without their style (a quoted string may be written plain).
    fn canonical(node: &Node) -> Node {
        let value = match &node.value {
            Value::Scalar(s) => Value::Scalar(Scalar {
                style: if s.kind() == Kind::Str {
                    Style::Any
                } else {
                    s.style
                },
                ..s.clone()
            }),
            Value::Seq(items) => Value::Seq(items.iter().map(canonical).collect()),
            Value::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| (canonical(k), canonical(v)))
                    .collect(),
            ),
        };
        Node { value, line: 0 }
    }

    /// parse -> emit -> parse gives the same tree; returns the emitted text.
    fn round_trip(input: &str) -> String {
        let first = parse_ok(input);
        let out = emit(&first);
        let second = parse(&out, Limits::default())
            .unwrap_or_else(|e| panic!("re-parsing {out:?} (from {input:?}): {e}"))
            .expect("a document");
        assert_eq!(
            canonical(&first),
            canonical(&second),
            "round trip of {input:?} through {out:?}"
        );
        out
    }

    /// Every YAML 1.1 (or 1.2, or yaml.v2) trap: none of these is a string when plain.
    const TRAPS: &[&str] = &[
        "on",
        "On",
        "ON",
        "off",
        "Off",
        "yes",
        "Yes",
        "no",
        "NO",
        "y",
        "Y",
        "n",
        "N",
        "true",
        "False",
        "TRUE",
        "~",
        "null",
        "Null",
        "NULL",
        "0777",
        "0o17",
        "0x1F",
        "0b101",
        "1_000",
        "12:30",
        "190:20:30",
        "1:30.5",
        ".inf",
        "-.inf",
        "+.INF",
        ".NaN",
        ".nan",
        "1e3",
        "1.5e+3",
        "1.",
        ".5",
        "-.5",
        "+12",
        "-1",
        "0",
        "09",
        "1.2.3",
        "2001-12-14",
        "2001-12-14t21:59:43.10-05:00",
        "2001-12-14 21:59:43.10 -5",
        "2002-1-2",
        "<<",
        "=",
    ];

    const PROMETHEUS_STYLE: &str = "\
global:
  scrape_interval: 1m
  external_labels:
    cluster: \"on\"
scrape_configs:
- job_name: prometheus
  static_configs:
  - targets:
    - localhost:9090
  - targets: []
    labels: {}
- - nested
  - - deeper
rule_files:
- /etc/config/recording_rules.yml
";

    #[test]
    fn emits_prometheus_layout_unchanged() {
        let node = parse_ok(PROMETHEUS_STYLE);
        assert_eq!(emit(&node), PROMETHEUS_STYLE);
        round_trip(PROMETHEUS_STYLE);
    }

    #[test]
    fn reindents_other_layouts() {
        let input = "a:\n    b:\n        - x\n        -   y: 1\n            z: [1, {k: v}]\n";
        assert_eq!(
            round_trip(input),
            "a:\n  b:\n  - x\n  - y: 1\n    z:\n    - 1\n    - k: v\n"
        );
    }

    #[test]
    fn quoted_traps_stay_quoted() {
        for trap in TRAPS {
            for quoted in [format!("\"{trap}\""), format!("'{trap}'")] {
                let input = format!("k: {quoted}\n- {quoted}\n");
                // The second line makes it invalid; build the two documents separately.
                let _ = input;
                let map = format!("k: {quoted}\n");
                let out = round_trip(&map);
                assert_eq!(out, format!("k: \"{trap}\"\n"), "{map:?}");
                let seq = format!("- {quoted}\n");
                assert_eq!(round_trip(&seq), format!("- \"{trap}\"\n"), "{seq:?}");
                let node = parse_ok(&map);
                assert_eq!(node.get("k").and_then(Node::as_str), Some(*trap));
            }
            // As a key too.
            let key = format!("\"{trap}\": v\n");
            assert_eq!(round_trip(&key), key);
        }
    }

    #[test]
    fn plain_traps_stay_plain() {
        for trap in TRAPS {
            let map = format!("k: {trap}\n");
            assert_eq!(round_trip(&map), map);
            let seq = format!("- {trap}\n");
            assert_eq!(round_trip(&seq), seq);
            let node = parse_ok(&map);
            let value = node.get("k").unwrap();
            assert_eq!(value.scalar_text(), Some(*trap));
            assert_eq!(
                value.as_str().is_some(),
                matches!(resolve_1_1(trap), Kind::Str | Kind::Timestamp | Kind::Value),
                "{trap}"
            );
        }
        assert_eq!(round_trip("k:\n- \n"), "k:\n-\n");
    }

    #[test]
    fn made_strings_are_quoted_only_when_needed() {
        let cases = [
            ("localhost:9090", "localhost:9090"),
            ("5m", "5m"),
            ("a b", "a b"),
            ("http://x/y#frag", "http://x/y#frag"),
            ("sum(rate(x[5m]))", "sum(rate(x[5m]))"),
            ("", "\"\""),
            ("a: b", "\"a: b\""),
            ("a #b", "\"a #b\""),
            ("ends:", "\"ends:\""),
            ("-x", "\"-x\""),
            ("- x", "\"- x\""),
            ("?x", "\"?x\""),
            ("*x", "\"*x\""),
            ("&x", "\"&x\""),
            ("!x", "\"!x\""),
            ("%x", "\"%x\""),
            ("@x", "\"@x\""),
            ("`x", "\"`x\""),
            ("{x}", "\"{x}\""),
            ("[x]", "\"[x]\""),
            ("|x", "\"|x\""),
            (">x", "\">x\""),
            ("#x", "\"#x\""),
            ("'x'", "\"'x'\""),
            ("\"x\"", "\"\\\"x\\\"\""),
            (" x", "\" x\""),
            ("x ", "\"x \""),
            ("...", "\"...\""),
            ("---", "\"---\""),
            ("a\tb", "\"a\\tb\""),
            ("10.0.0.1", "\"10.0.0.1\""),
            (
                "\u{0}\u{1}\u{7f}\u{85}\u{2028}\u{feff}\\",
                "\"\\0\\x01\\x7F\\x85\\u2028\\uFEFF\\\\\"",
            ),
            ("é ü 中 🦀", "é ü 中 🦀"),
        ];
        for (text, written) in cases {
            let node = Node::map(vec![(Node::string("k"), Node::string(text))]);
            let out = emit(&node);
            assert_eq!(out, format!("k: {written}\n"), "{text:?}");
            let back = parse_ok(&out);
            assert_eq!(back.get("k").and_then(Node::as_str), Some(text), "{out:?}");
        }
        for trap in TRAPS {
            let node = Node::seq(vec![Node::string(*trap)]);
            assert_eq!(emit(&node), format!("- \"{trap}\"\n"));
        }
    }

    const EXPRS: &[&str] = &[
        "sum by (job) (\n  rate(http_requests_total[5m])\n)",
        "sum by (job) (\n  rate(http_requests_total[5m])\n)\n",
        "sum by (job) (\n  rate(http_requests_total[5m])\n)\n\n",
        "sum by (job) (\n  rate(http_requests_total[5m])\n)\n\n\n",
        "# leading comment\nup == 0\n",
        "up\n# trailing comment",
        "  indented first line\nsecond\n",
        "  indented first line\n    more\n",
        "\n\nleading empty lines\n",
        "\n  leading empty then indented\n",
        "\tleading tab\nx\n",
        "tabs\tinside\n\tand here\n",
        "trailing spaces  \nhere \n",
        "a\n\nb\n\n\nc",
        "blank spaces line\n   \nx\n",
        "x: y\n- z\n? q\n--- doc\n... end\n",
        "'quotes' and \"doubles\" and \\backslash\n",
        "one line with newline\n",
        "uni 中文\nline 🦀\n",
    ];

    /// Each expression in every position: map value (nested), seq item, map in seq, root.
    #[test]
    fn multi_line_strings_round_trip_exactly() {
        for expr in EXPRS {
            let rule = Node::map(vec![
                (Node::string("record"), Node::string("r")),
                (Node::string("expr"), Node::string(*expr)),
            ]);
            let doc = Node::map(vec![(
                Node::string("groups"),
                Node::seq(vec![Node::map(vec![
                    (Node::string("name"), Node::string("g")),
                    (
                        Node::string("rules"),
                        Node::seq(vec![
                            rule,
                            Node::string(*expr),
                            Node::seq(vec![Node::string(*expr)]),
                        ]),
                    ),
                    (
                        Node::string("nested"),
                        Node::map(vec![(Node::string("deep"), Node::string(*expr))]),
                    ),
                ])]),
            )]);
            let out = emit(&doc);
            assert!(out.contains("expr: |"), "{expr:?} not literal in:\n{out}");
            let back = parse_ok(&out);
            let group = &back.get("groups").unwrap().as_seq().unwrap()[0];
            let rules = group.get("rules").unwrap().as_seq().unwrap();
            let nested = &rules[2].as_seq().unwrap()[0];
            for (what, got) in [
                ("map value", rules[0].get("expr")),
                ("seq item", Some(&rules[1])),
                ("nested seq item", Some(nested)),
                ("nested map value", group.get("nested").unwrap().get("deep")),
            ] {
                assert_eq!(got.and_then(Node::as_str), Some(*expr), "{what} in:\n{out}");
            }
            // At the root.
            let root = emit(&Node::string(*expr));
            assert_eq!(parse_ok(&root).as_str(), Some(*expr), "root {root:?}");
        }
    }

    #[test]
    fn literal_headers() {
        let cases = [
            ("a\nb", "k: |-\n  a\n  b\n"),
            ("a\nb\n", "k: |\n  a\n  b\n"),
            ("a\nb\n\n", "k: |+\n  a\n  b\n\n"),
            (" a\nb\n", "k: |2\n   a\n  b\n"),
            (" a\nb", "k: |2-\n   a\n  b\n"),
            ("\n a\n\n", "k: |2+\n\n   a\n\n"),
        ];
        for (text, want) in cases {
            let node = Node::map(vec![(Node::string("k"), Node::string(text))]);
            assert_eq!(emit(&node), want, "{text:?}");
        }
        // Only line breaks or spaces: no content to show, so quoted.
        for text in ["\n", "\n\n", "  \n", "a\r\nb\n", "a\u{85}b\n"] {
            let node = Node::seq(vec![Node::string(text)]);
            let out = emit(&node);
            assert!(out.starts_with("- \""), "{text:?} -> {out:?}");
            assert_eq!(parse_ok(&out).as_seq().unwrap()[0].as_str(), Some(text));
        }
    }

    #[test]
    fn block_scalars_in_input_round_trip() {
        let input = "\
groups:
- name: g
  rules:
  - alert: A
    expr: |
      sum(x) # comment
        > 0
    annotations:
      description: >-
        folded
        text
      keep: |+
        kept

  - record: r
    expr: |2-
        indented
      less
";
        let out = round_trip(input);
        let node = parse_ok(&out);
        let rules = node.get("groups").unwrap().as_seq().unwrap()[0]
            .get("rules")
            .unwrap()
            .as_seq()
            .unwrap();
        assert_eq!(
            rules[0].get("expr").unwrap().as_str(),
            Some("sum(x) # comment\n  > 0\n")
        );
        assert_eq!(
            rules[0]
                .get("annotations")
                .unwrap()
                .get("description")
                .unwrap()
                .as_str(),
            Some("folded text")
        );
        assert_eq!(
            rules[1].get("expr").unwrap().as_str(),
            Some("  indented\nless")
        );
    }

    #[test]
    fn multi_line_plain_scalars_are_quoted() {
        let out = round_trip("k: a\n  b\n\n  c\nj: x\n  y\n");
        assert_eq!(out, "k: \"a b\\nc\"\nj: x y\n");
    }

    #[test]
    fn emits_compact_nested_collections() {
        let input = "- - a\n  - - b\n    - c\n- k: v\n  j:\n  - 1\n- []\n- {}\n- k: []\n  m: {}\n";
        assert_eq!(round_trip(input), input);
        assert_eq!(emit(&Node::map(vec![])), "{}\n");
        assert_eq!(emit(&Node::seq(vec![])), "[]\n");
        assert_eq!(round_trip("{}"), "{}\n");
        assert_eq!(round_trip("[]"), "[]\n");
        assert_eq!(round_trip("foo"), "foo\n");
        assert_eq!(round_trip("'on'"), "\"on\"\n");
    }

    #[test]
    fn emits_awkward_keys() {
        // Non-scalar keys, an empty key, a key too long to be implicit.
        let long = "k".repeat(1100);
        let input = format!(
            "? [a, b]\n: seq key\n? {{x: 1}}\n: map key\n: empty key\n? \"{long}\"\n: long\n\"on\": quoted\non: plain\n\"a\\nb\": multi\n"
        );
        let out = round_trip(&input);
        assert!(
            out.starts_with("? - a\n  - b\n: seq key\n? x: 1\n: map key\n?\n: empty key\n? "),
            "{out}"
        );
        assert!(
            out.contains("\n\"on\": quoted\non: plain\n\"a\\nb\": multi\n"),
            "{out}"
        );
        let node = parse_ok(&out);
        assert_eq!(node.get("on").and_then(Node::as_str), Some("quoted"));
        assert_eq!(node.get(&long).and_then(Node::as_str), Some("long"));
        // A nested seq as a value under an explicit key.
        round_trip("? [a]\n: - x\n  - y\n");
        round_trip("- ? [a]\n  : {b: [c]}\n");
    }

    #[test]
    fn keeps_tags() {
        let input = "a: !!str 0777\nc: !!str\nd: !!str \"on\"\ne: ! x\nf: !!int \"12\"\n";
        let out = round_trip(input);
        assert_eq!(out, input);
        // Local, verbatim and escaped tags are refused (found by fuzzing: they did not all
        // come back as they were read).
        for refused in [
            "b: !foo bar\n",
            "g: !<tag:example.com,2000:x> y\n",
            "!<tag:yaml.org,2002:app.kubernetes.io/pf>\n",
            "!F.%00\r(",
            "!%0ex ",
            "!/?2222=/",
        ] {
            assert!(
                parse_err(refused).message.contains("not supported"),
                "{refused:?}"
            );
        }
        let node = parse_ok(&out);
        assert_eq!(node.get("a").unwrap().as_str(), Some("0777"));
        assert_eq!(node.get("c").unwrap().as_str(), Some(""));
        assert_eq!(node.get("f").unwrap().to_json(), json!(12));
        // Collection tags that change nothing are dropped; others are refused.
        assert_eq!(round_trip("a: !!map {b: !!seq [c]}\n"), "a:\n  b:\n  - c\n");
        assert!(
            parse_err("a: !!set {b}\n")
                .message
                .contains("not supported")
        );
    }

    #[test]
    fn expands_aliases() {
        let node = parse_ok("a: &x\n  b: [1, 2]\nc: *x\nd: &s str\ne: *s\n");
        assert_eq!(node.get("c").unwrap().to_json(), json!({"b": [1, 2]}));
        assert_eq!(node.get("c").unwrap().line, 3);
        assert_eq!(node.get("e").unwrap().as_str(), Some("str"));
        assert_eq!(
            emit(&node),
            "a:\n  b:\n  - 1\n  - 2\nc:\n  b:\n  - 1\n  - 2\nd: str\ne: str\n"
        );
        // Aliases inside anchored nodes, anchors inside anchored nodes, redefined anchors.
        let node = parse_ok(
            "a: &a [1, &b {x: [2]}]\nb: *b\nc: &c [*a, *b]\nd: *c\ne: &a [3]\nf: *a\n*b : k\n",
        );
        assert_eq!(
            node.to_json(),
            json!({
                "a": [1, {"x": [2]}], "b": {"x": [2]}, "c": [[1, {"x": [2]}], {"x": [2]}],
                "d": [[1, {"x": [2]}], {"x": [2]}], "e": [3], "f": [3], "{\"x\":[2]}": "k",
            })
        );
        let d = node.get("d").unwrap();
        assert_eq!((d.line, d.as_seq().unwrap()[0].line), (4, 3));
        round_trip("a: &a [1, &b {x: [2]}]\nb: *b\nc: &c [*a, *b]\nd: *c\n");
        assert!(parse_err("&a [*a]").message.contains("recursive alias"));
        assert!(parse_err("a: *nope\n").message.contains("unknown anchor"));
    }

    fn alias_bomb(levels: usize, width: usize) -> String {
        let mut doc = String::from("l0: &l0 [lol]\n");
        for level in 1..=levels {
            let refs = vec![format!("*l{}", level - 1); width].join(", ");
            doc.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
        }
        doc
    }

    #[test]
    fn an_alias_of_a_long_string_counts_its_length() {
        let long = "x".repeat(1000);
        let doc = format!("a: &a {long}\nb: [{}]\n", vec!["*a"; 100].join(", "));
        let small = Limits {
            max_bytes: 50_000,
            ..Limits::default()
        };
        let err = parse(&doc, small).unwrap_err();
        assert_eq!(err.over_limit, Some(Over::Bytes), "{err}");
        let (_, expanded) = parse_counted(&doc, Limits::default()).unwrap();
        // The two keys, the string, and a hundred copies of it.
        assert_eq!(expanded.bytes, 2 + 101 * 1000);
        assert_eq!(expanded.nodes, 1 + 2 + 1 + 1 + 100);
    }

    #[test]
    fn top_level_keys_are_found_without_expanding_aliases() {
        for (doc, found) in [
            ("groups: []\n", true),
            ("a: {groups: 1}\ngroups: x\n", true),
            ("? [a]\n: x\ngroups: y\n", true),
            ("a: {groups: 1}\nb: [groups]\n", false),
            ("a: groups\n", false),
            ("? [groups]\n: x\n", false),
            ("- groups\n", false),
            ("groups\n", false),
            ("", false),
        ] {
            assert_eq!(has_top_level_key(doc, "groups"), Ok(found), "{doc:?}");
        }
        let bomb = format!("{}groups: []\n", alias_bomb(9, 10));
        assert_eq!(has_top_level_key(&bomb, "groups"), Ok(true));
        assert!(has_top_level_key("a: [unclosed\n", "groups").is_err());
    }

    #[test]
    fn alias_bomb_fails_fast() {
        let doc = alias_bomb(9, 10);
        let err = parse_err(&doc);
        assert!(err.message.contains("alias bomb"), "{err}");
        // Aliases of collections are counted, not copied, until the document is known to
        // fit: the bomb fails on the count of what it would expand to (10^9 scalars), before
        // it allocates anything.
        assert!(err.message.contains("1000000"), "{err}");
        let small = Limits {
            max_nodes: 10_000,
            ..Limits::default()
        };
        let err = parse(&doc, small).unwrap_err();
        assert_eq!(err.line, 5, "{err}");
        // The same shape within the budget is fine.
        assert!(parse(&alias_bomb(3, 10), Limits::default()).is_ok());
    }

    fn assert_too_deep(doc: &str) {
        let err = parse_err(doc);
        assert_eq!(err.message, "nesting deeper than 100", "{err}");
    }

    #[test]
    fn deep_nesting_fails_without_overflow() {
        const N: usize = 20_000;
        assert_too_deep(&format!("{}{}", "[".repeat(N), "]".repeat(N)));
        assert_too_deep(&format!("{}{}", "{a: ".repeat(N), "}".repeat(N)));
        assert_too_deep(&format!("{}a\n", "- ".repeat(N)));
        // Block mappings need a deeper indentation per level, so the document grows with the
        // square of the depth: 2,000 levels (2 MB) already take the same path as 20,000.
        let mut doc = String::new();
        for level in 0..2_000 {
            doc.push_str(&" ".repeat(level));
            doc.push_str("a:\n");
        }
        assert_too_deep(&doc);
        // Exactly at the limit is fine.
        assert!(
            parse(
                &format!("{}{}", "[".repeat(100), "]".repeat(100)),
                Limits::default()
            )
            .is_ok()
        );
        assert_too_deep(&format!("{}{}", "[".repeat(101), "]".repeat(101)));
        // An alias may not take the tree past the limit either.
        let deep = format!("{}{}", "[".repeat(60), "]".repeat(60));
        assert_too_deep(&format!(
            "a: &x {deep}\nb: {}*x{}\n",
            "[".repeat(50),
            "]".repeat(50)
        ));
    }

    #[test]
    fn rejects_duplicate_keys() {
        let err = parse_err("a: 1\nb: 2\na: 3\n");
        assert_eq!(err.line, 3);
        assert!(
            err.message
                .contains("duplicate key \"a\" (first on line 1)"),
            "{err}"
        );
        let err = parse_err("x:\n  \"a\": 1\n  a: 2\n");
        assert_eq!(err.line, 3);
        // Large mappings use an index.
        let mut doc: String = (0..40).map(|i| format!("k{i}: {i}\n")).collect();
        doc.push_str("k7: again\n");
        let err = parse_err(&doc);
        assert_eq!(
            (err.line, err.message.contains("first on line 8")),
            (41, true),
            "{err}"
        );
        // Same text, different values: not duplicates.
        parse_ok("1: a\n\"1\": b\non: c\n'on': d\n");
        let doc: String = (0..40).map(|i| format!("{i}: x\n\"{i}\": y\n")).collect();
        parse_ok(&doc);
    }

    #[test]
    fn documents() {
        for empty in ["", "\n", "# only a comment\n", "---\n", "---\n...\n"] {
            assert_eq!(parse(empty, Limits::default()), Ok(None), "{empty:?}");
        }
        let err = parse_err("a: 1\n---\nb: 2\n");
        assert_eq!(err.line, 2);
        assert!(err.message.contains("more than one"), "{err}");
        parse_err("---\n---\n");
        assert_eq!(
            parse_ok("--- # c\na: 1\n...\n").get("a").unwrap().to_json(),
            json!(1)
        );
        assert_eq!(parse_ok("~").to_json(), json!(null));
    }

    #[test]
    fn rejects_control_characters() {
        for (doc, line) in [
            ("a: b\u{0}c\n", 1),
            ("a: \"b\u{0}\"\n", 1),
            ("a: b\nc: \u{1}\n", 2),
            ("a: \u{7f}\n", 1),
            ("a: \u{9c}\n", 1),
            ("a: |\n  x\u{85}y\n", 2),
            ("a: x\u{2028}y\n", 1),
            ("\u{0}", 1),
        ] {
            let err = parse_err(doc);
            assert_eq!(err.line, line, "{doc:?}: {err}");
            assert!(err.message.contains("U+"), "{err}");
        }
        // Tabs, CR LF and other Unicode are fine.
        assert_eq!(
            parse_ok("a: \"x\ty\"\r\nb: é\r\n")
                .get("b")
                .unwrap()
                .as_str(),
            Some("é")
        );
    }

    #[test]
    fn rejects_what_yaml_1_1_and_1_2_read_differently_in_flow() {
        for doc in [
            "a: [?x]\n",
            "a: [x?y]\n",
            "a: {?x: 1}\n",
            "a: [:x]\n",
            "é: [ü, [?x]]\n",
            "- [a: ?b]\n",
        ] {
            let err = parse_err(doc);
            assert!(err.message.contains("quote it"), "{doc:?}: {err}");
        }
        // Even with properties, white space and comments before the bracket.
        for doc in [
            "a: &x [ ?]\n",
            "a: !!seq # c\n  [ ?]\n",
            "a: &x\n  [ ?]\n",
            "a: [ ?:<, x]\n",
        ] {
            assert!(parse_err(doc).message.contains("quote it"), "{doc:?}");
        }
        // Anchor names: YAML 1.1 readers split `&ny?_` into the anchor `ny` and `?_`.
        for doc in [
            "- &ny?_\n",
            "- &a? x\n- *a?\n",
            "- &é x\n",
            "- !!str &a.b x\n",
            "a: &x!!seq [b]\n",
        ] {
            let err = parse_err(doc);
            assert!(err.message.contains("anchor name"), "{doc:?}: {err}");
        }
        parse_ok("- &a-b_C9 [x]\n- *a-b_C9\n- !!str &s x\n- &t !!str y\n- *s\n");
        // A block mapping whose first key is a flow sequence is not a flow collection.
        assert_eq!(
            parse_ok("[a]: x?y\n").as_map().unwrap()[0].1.as_str(),
            Some("x?y")
        );
        // Fine: quoted, explicit keys, block context, colons inside.
        let node =
            parse_ok("a: ['?x', \"x?y\"]\nb: {? x : 1}\nc: ?x\nd: x?y\ne: [localhost:9090, a:b]\n");
        assert_eq!(
            node.to_json(),
            json!({"a": ["?x", "x?y"], "b": {"x": 1}, "c": "?x", "d": "x?y", "e": ["localhost:9090", "a:b"]})
        );
    }

    #[test]
    fn parser_errors_have_lines() {
        let err = parse_err("a: b\nc: [d\n");
        assert!(err.line >= 2, "{err}");
        let err = parse_err("a: b\n c: d\n");
        assert_eq!(err.line, 2, "{err}");
        assert!(err.to_string().starts_with("line 2: "));
    }

    #[test]
    fn records_lines() {
        let node = parse_ok("# c\na:\n  b: x\nseq:\n- 1\n- k: v\n");
        assert_eq!(node.line, 2);
        let (k, v) = &node.as_map().unwrap()[0];
        assert_eq!((k.line, v.line), (2, 3));
        let seq = node.get("seq").unwrap().as_seq().unwrap();
        assert_eq!((seq[0].line, seq[1].line), (5, 6));
        assert_eq!(seq[1].get("k").unwrap().line, 6);
    }

    #[test]
    fn resolves_yaml_1_1() {
        let cases = [
            ("", Kind::Null),
            ("~", Kind::Null),
            ("NULL", Kind::Null),
            ("nULL", Kind::Str),
            ("y", Kind::Bool),
            ("Off", Kind::Bool),
            ("oFF", Kind::Str),
            ("0", Kind::Int),
            ("-0", Kind::Int),
            ("0777", Kind::Int),
            ("0778", Kind::Str),
            ("0b1_0", Kind::Int),
            ("0x_1F", Kind::Int),
            ("0X1F", Kind::Str),
            ("1_000", Kind::Int),
            ("12:30", Kind::Int),
            ("12:60", Kind::Str),
            ("-1:2:03", Kind::Int),
            ("0:30", Kind::Str),
            ("1.5", Kind::Float),
            ("1.", Kind::Float),
            (".5", Kind::Float),
            ("-.5e+3", Kind::Float),
            ("1e3", Kind::Str),
            ("1.0e3", Kind::Str),
            ("1.0e-3", Kind::Float),
            ("1:30.5", Kind::Float),
            (".", Kind::Str),
            ("1.2.3", Kind::Str),
            (".inf", Kind::Float),
            ("-.Inf", Kind::Float),
            (".NaN", Kind::Float),
            ("-.nan", Kind::Str),
            ("2001-12-14", Kind::Timestamp),
            ("2001-12-1", Kind::Str),
            ("2001-12-14t21:59:43.10-05:00", Kind::Timestamp),
            ("2001-12-14 21:59:43.10 -5", Kind::Timestamp),
            ("2001-12-14 21:59:43.10Z", Kind::Timestamp),
            ("2001-1-4 1:59:43", Kind::Timestamp),
            ("2001-12-14 21:59", Kind::Str),
            ("<<", Kind::Merge),
            ("=", Kind::Value),
            ("localhost:9090", Kind::Str),
            ("10.0.0.1", Kind::Str),
        ];
        for (text, kind) in cases {
            assert_eq!(resolve_1_1(text), kind, "{text:?}");
        }
    }

    #[test]
    fn converts_to_json() {
        let node = parse_ok(
            "\
oct: 0777
hex: 0x1F
bin: -0b101
under: 1_000
sexa: 12:30
neg_sexa: -1:30
float: 1.5
sexa_float: 1:30.5
exp: 1.0e+3
on: on
y: y
no: NO
null: ~
empty:
ts: 2001-12-14
quoted: \"on\"
inf: .inf
u64: 18446744073709551615
i64_min: -9223372036854775808
huge: 99999999999999999999999
str_int: !!int \"12\"
str_float: !!float \"3\"
str: !!str 12
version: 2.45.0
",
        );
        assert_eq!(
            node.to_json(),
            json!({
                "oct": 511, "hex": 31, "bin": -5, "under": 1000, "sexa": 750, "neg_sexa": -90,
                "float": 1.5, "sexa_float": 90.5, "exp": 1000.0, "true": true, "true": true,
                "false": false, "null": null, "empty": null, "ts": "2001-12-14", "quoted": "on",
                "inf": ".inf", "u64": 18446744073709551615u64, "i64_min": i64::MIN,
                "huge": 1e23, "str_int": 12, "str_float": 3.0, "str": "12", "version": "2.45.0",
            })
        );
        let merged =
            parse_ok("base: &b {x: 1, w: 2}\nother: &o {w: 9, z: 3}\nd:\n  <<: [*b, *o]\n  w: 5\n");
        assert_eq!(
            merged.get("d").unwrap().to_json(),
            json!({"x": 1, "w": 5, "z": 3})
        );
    }

    #[test]
    fn from_json_reads_back_the_same() {
        let mut value = json!({
            "numbers": [0, -1, 1.5, 1e300, -2.5e-8, 0.1, 18446744073709551615u64, i64::MIN, 1.0],
            "bools": [true, false], "null": null,
            "empty": {"seq": [], "map": {}, "str": ""},
            "nested": [[["x"]], [{"a": {"b": ["c"]}}]],
            "multi": "line one\n  line two\n# comment\n",
            "ctrl": "a\u{1}b\u{85}c\u{2028}\"\\",
        });
        for trap in TRAPS {
            value[*trap] = json!(trap);
            value["traps"]
                .as_array_mut()
                .map(|a| a.push(json!(trap)))
                .unwrap_or_else(|| {
                    value["traps"] = json!([trap]);
                });
        }
        let out = emit(&Node::from_json(&value));
        assert_eq!(parse_ok(&out).to_json(), value, "{out}");
        assert_eq!(
            number_text(&serde_json::Number::from_f64(1e300).unwrap()),
            "1.0e+300"
        );
        assert_eq!(
            resolve_1_1(&number_text(&serde_json::Number::from_f64(1e-7).unwrap())),
            Kind::Float
        );
    }

    #[test]
    fn accessors() {
        let mut node = parse_ok("a: 1\nb: x\non: plain\n\"on\": quoted\nc:\nd: [1]\n");
        assert_eq!(node.get("a").unwrap().as_str(), None);
        assert_eq!(node.get("a").unwrap().scalar_text(), Some("1"));
        assert_eq!(node.get("b").unwrap().as_str(), Some("x"));
        assert_eq!(node.get("on").unwrap().as_str(), Some("quoted"));
        assert!(node.get("c").unwrap().is_null());
        assert!(!node.get("b").unwrap().is_null());
        assert!(!Node::string("null").is_null());
        assert_eq!(node.get("d").unwrap().as_seq().unwrap().len(), 1);
        assert!(node.get("zz").is_none());
        assert!(node.get("d").unwrap().get("x").is_none());

        node.insert("b", Node::string("z"));
        node.insert("e", Node::string("new"));
        node.get_mut("c").unwrap().insert("k", Node::string("v"));
        node.get_mut("d")
            .unwrap()
            .as_seq_mut()
            .unwrap()
            .push(Node::plain("2"));
        assert_eq!(node.remove("a").unwrap().scalar_text(), Some("1"));
        assert!(node.remove("a").is_none());
        assert_eq!(
            emit(&node),
            "b: z\non: plain\n\"on\": quoted\nc:\n  k: v\nd:\n- 1\n- 2\ne: new\n"
        );
        assert_eq!(node.as_map().unwrap().len(), 6);
        node.as_map_mut().unwrap().clear();
        assert_eq!(emit(&node), "{}\n");
    }

    #[test]
    fn plain_nodes_that_cannot_be_plain_are_quoted() {
        let node = Node::seq(vec![
            Node::plain("a: b"),
            Node::plain("x\ny"),
            Node::plain("-"),
            Node::plain("true"),
            Node::plain("-1"),
        ]);
        let out = emit(&node);
        assert_eq!(out, "- \"a: b\"\n- \"x\\ny\"\n- \"-\"\n- true\n- -1\n");
    }
}
