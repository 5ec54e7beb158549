//! Writing a tree as block YAML that every reader reads back as the same values.

use std::fmt::Write as _;

use super::resolve::{is_ambiguous, is_inline_char};
use super::tree::{Node, Scalar, Style, Value};

/// Write a node as a block-style YAML document (no `---`), ending in a newline.
pub fn emit(node: &Node) -> String {
    let mut e = Emitter::new();
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
pub(super) enum Repr {
    /// Nothing (an empty plain scalar: null, or empty with its tag).
    Empty,
    Plain,
    DoubleQuoted,
    Literal,
}

pub(super) fn repr(s: &Scalar, key: bool) -> Repr {
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
pub(super) fn literal_ok(text: &str) -> bool {
    let body = text.trim_end_matches('\n');
    let printable = |c: char| c == '\n' || c == '\t' || is_inline_char(c);
    text.contains('\n')
        && body.bytes().any(|c| c != b'\n' && c != b' ')
        && if body.is_ascii() {
            // The same test on bytes, which the compiler makes on many at once.
            body.bytes()
                .fold(true, |ok, c| ok & printable(char::from(c)))
        } else {
            body.chars().all(printable)
        }
}

pub(super) struct Emitter {
    pub(super) out: String,
    /// Write a mapping value that is a list of short scalars as a flow list, `[a, b]`: the
    /// style of the text a new node goes into, when its lists are written so.
    pub(super) flow_lists: bool,
    /// How much deeper than its key a mapping value's entries go (2).
    pub(super) map_step: usize,
    /// How much deeper than its key a mapping value's `-` go (0: at the key's column).
    pub(super) seq_indent: usize,
}

const SPACES: &str = "                                                                ";

impl Emitter {
    pub(super) fn new() -> Emitter {
        Emitter {
            out: String::with_capacity(4096),
            flow_lists: false,
            map_step: 2,
            seq_indent: 0,
        }
    }

    pub(super) fn pad(&mut self, mut n: usize) {
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

    pub(super) fn map(&mut self, entries: &[(Node, Node)], indent: usize, inline_first: bool) {
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

    pub(super) fn seq(&mut self, items: &[Node], indent: usize, inline_first: bool) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 || !inline_first {
                self.pad(indent);
            }
            self.out.push('-');
            self.after_indicator(item, indent + 2);
        }
    }

    /// A mapping value, after the `:` of a key at column `indent`. Sequences go
    /// `seq_indent` deeper (0: stay at the key's column); mappings `map_step` deeper.
    pub(super) fn after_colon(&mut self, node: &Node, indent: usize) {
        match &node.value {
            Value::Scalar(s) => self.scalar(s, indent + 2, true),
            Value::Seq(items) if items.is_empty() => self.out.push_str(" []\n"),
            Value::Map(entries) if entries.is_empty() => self.out.push_str(" {}\n"),
            Value::Seq(items) if self.flow_lists && self.flow_list(items) => {}
            Value::Seq(items) => {
                self.out.push('\n');
                self.seq(items, indent + self.seq_indent, false);
            }
            Value::Map(entries) => {
                self.out.push('\n');
                self.map(entries, indent + self.map_step, false);
            }
        }
    }

    /// ` [a, "b"]` and the line break, for a list of untagged one-line scalars that read the
    /// same in a flow list; false, having written nothing, for any other list.
    fn flow_list(&mut self, items: &[Node]) -> bool {
        let start = self.out.len();
        self.out.push_str(" [");
        for (i, item) in items.iter().enumerate() {
            let Value::Scalar(s) = &item.value else {
                self.out.truncate(start);
                return false;
            };
            let text = s.value.as_str();
            // Flow indicators, and what YAML 1.1 readers take for one in a flow list.
            let flow_plain = plain_syntax_ok(text, true)
                && !text.contains([',', '[', ']', '{', '}', '?'])
                && !text.contains(':');
            let plain = flow_plain && (s.style == Style::Plain || !is_ambiguous(text));
            if s.tag.is_some() || text.contains('\n') || (s.style == Style::Plain && !plain) {
                self.out.truncate(start);
                return false;
            }
            if i > 0 {
                self.out.push_str(", ");
            }
            if plain {
                self.out.push_str(text);
            } else {
                self.double_quoted(text);
            }
        }
        self.out.push_str("]\n");
        if self.out.len() - start > 100 {
            self.out.truncate(start);
            return false;
        }
        true
    }

    /// A sequence item after its `-`, or an explicit key after its `?`; `indent` is the
    /// column of the content, 2 past the indicator. Collections start on the same line.
    pub(super) fn after_indicator(&mut self, node: &Node, indent: usize) {
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

    /// A literal block scalar with content lines at `indent`, 2 deeper than the parent
    /// collection.
    fn literal(&mut self, text: &str, indent: usize) {
        self.literal_at(text, indent, 2, false);
    }

    /// `|` with chomping (`-` no final line break, none for one, `+` for more) and an
    /// indentation indicator `step` (content lines `step` deeper than the parent collection)
    /// when `indicator` asks for it or the first line starts with white space (the reader
    /// would otherwise take it for indentation). Content lines at `indent`, empty lines left
    /// empty.
    pub(super) fn literal_at(&mut self, text: &str, indent: usize, step: usize, indicator: bool) {
        let body = text.trim_end_matches('\n');
        let breaks = text.len() - body.len();
        self.out.push('|');
        let first = body.split('\n').find(|l| !l.is_empty()).unwrap_or_default();
        if indicator || first.starts_with([' ', '\t']) {
            let _ = write!(self.out, "{step}");
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

    pub(super) fn double_quoted(&mut self, text: &str) {
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
