//! The tokens of the fast parser, read on demand from the text's bytes.
//!
//! Only what the parser reads is a token of its own; anything else (a `:` starting a name,
//! UTF-8 outside strings, a backtick string holding `\`, a number run into letters) is
//! [`Kind::Other`], on which the parser gives up and the full path decides. Whitespace and
//! `#` comments are skipped.

/// A token's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `[a-zA-Z_][a-zA-Z0-9_:]*`: a name or a keyword.
    Ident,
    /// A number: decimal, with a fraction or an exponent, or hexadecimal.
    Number,
    /// A duration: digits and unit letters (`5m`, `1h30m`, `100ms`).
    Duration,
    /// A quoted string, `"` or `'`, or a backtick string without `\`.
    String,
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Colon,
    /// `=` (a matcher).
    Assign,
    /// `==`
    EqEq,
    /// `!=`
    NotEq,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eof,
    /// Anything this parser does not read.
    Other,
}

impl Kind {
    /// Whether the crate's lexer counts a token of this kind as an operator (its limit of 1,000
    /// counts matcher operators and signs too); the keywords `and`, `or`, `unless` and `atan2`
    /// are identifiers here, counted by [`Token::is_operator`].
    pub fn is_operator(self) -> bool {
        matches!(
            self,
            Kind::EqEq
                | Kind::NotEq
                | Kind::Regex
                | Kind::NotRegex
                | Kind::Lt
                | Kind::Le
                | Kind::Gt
                | Kind::Ge
                | Kind::Add
                | Kind::Sub
                | Kind::Mul
                | Kind::Div
                | Kind::Mod
                | Kind::Pow
        )
    }
}

impl Token {
    /// Whether the crate's lexer counts the token as an operator.
    pub fn is_operator(&self) -> bool {
        self.kind.is_operator()
            || matches!(self.word, Word::And | Word::Or | Word::Unless | Word::Atan2)
    }
}

/// What an identifier spells, in any case: a keyword, or a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Word {
    /// Not a keyword (and every token that is not an identifier).
    Name,
    And,
    Or,
    Unless,
    Atan2,
    Bool,
    By,
    Without,
    On,
    Ignoring,
    GroupLeft,
    GroupRight,
    Offset,
    Inf,
    NaN,
    /// An aggregation operator this parser reads, lower case.
    Aggregator(&'static str),
    /// A keyword of Prometheus or of `promql-parser` this parser does not read (`start`,
    /// `limitk`, `anchored`, ...): wherever it stands, the full path decides.
    Reserved,
}

/// The keyword `ident` spells, ignoring case (Prometheus reads keywords so).
fn classify(ident: &[u8]) -> Word {
    let mut lower = [0u8; 12];
    let Some(lower) = lower.get_mut(..ident.len()) else {
        return Word::Name;
    };
    for (l, b) in lower.iter_mut().zip(ident) {
        *l = b.to_ascii_lowercase();
    }
    match &*lower {
        b"and" => Word::And,
        b"or" => Word::Or,
        b"unless" => Word::Unless,
        b"atan2" => Word::Atan2,
        b"bool" => Word::Bool,
        b"by" => Word::By,
        b"without" => Word::Without,
        b"on" => Word::On,
        b"ignoring" => Word::Ignoring,
        b"group_left" => Word::GroupLeft,
        b"group_right" => Word::GroupRight,
        b"offset" => Word::Offset,
        b"inf" => Word::Inf,
        b"nan" => Word::NaN,
        b"avg" => Word::Aggregator("avg"),
        b"bottomk" => Word::Aggregator("bottomk"),
        b"count" => Word::Aggregator("count"),
        b"count_values" => Word::Aggregator("count_values"),
        b"group" => Word::Aggregator("group"),
        b"max" => Word::Aggregator("max"),
        b"min" => Word::Aggregator("min"),
        b"quantile" => Word::Aggregator("quantile"),
        b"stddev" => Word::Aggregator("stddev"),
        b"stdvar" => Word::Aggregator("stdvar"),
        b"sum" => Word::Aggregator("sum"),
        b"topk" => Word::Aggregator("topk"),
        // Prometheus 3's experimental aggregations and modifiers, the `@` functions, and the
        // crate's `fill` modifiers.
        b"limitk" | b"limit_ratio" | b"anchored" | b"smoothed" | b"start" | b"end" | b"fill"
        | b"fill_left" | b"fill_right" => Word::Reserved,
        _ => Word::Name,
    }
}

/// A token: its kind, bytes `start..end` of the text, and for an identifier the keyword it
/// spells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    pub word: Word,
}

/// The lexer's place in the text.
pub(super) struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    /// The next token.
    pub fn next_token(&mut self) -> Token {
        self.skip_blank();
        let start = self.pos;
        let kind = match self.bytes.get(start) {
            None => Kind::Eof,
            Some(&b) => self.kind_at(b),
        };
        let word = match kind {
            Kind::Ident => classify(&self.bytes[start..self.pos]),
            _ => Word::Name,
        };
        Token {
            kind,
            start,
            end: self.pos,
            word,
        }
    }

    fn skip_blank(&mut self) {
        while let Some(&b) = self.bytes.get(self.pos) {
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => self.pos += 1,
                // A comment ends at a line feed or a carriage return, as Prometheus reads it.
                b'#' => {
                    while self
                        .bytes
                        .get(self.pos)
                        .is_some_and(|&b| b != b'\n' && b != b'\r')
                    {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// Read the token starting with byte `b` and say what it is.
    fn kind_at(&mut self, b: u8) -> Kind {
        let next = self.bytes.get(self.pos + 1).copied();
        let (kind, len) = match (b, next) {
            (b'(', _) => (Kind::LParen, 1),
            (b')', _) => (Kind::RParen, 1),
            (b'{', _) => (Kind::LBrace, 1),
            (b'}', _) => (Kind::RBrace, 1),
            (b'[', _) => (Kind::LBracket, 1),
            (b']', _) => (Kind::RBracket, 1),
            (b',', _) => (Kind::Comma, 1),
            (b':', _) => (Kind::Colon, 1),
            (b'=', Some(b'=')) => (Kind::EqEq, 2),
            (b'=', Some(b'~')) => (Kind::Regex, 2),
            (b'=', _) => (Kind::Assign, 1),
            (b'!', Some(b'=')) => (Kind::NotEq, 2),
            (b'!', Some(b'~')) => (Kind::NotRegex, 2),
            (b'<', Some(b'=')) => (Kind::Le, 2),
            (b'<', _) => (Kind::Lt, 1),
            (b'>', Some(b'=')) => (Kind::Ge, 2),
            (b'>', _) => (Kind::Gt, 1),
            (b'+', _) => (Kind::Add, 1),
            (b'-', _) => (Kind::Sub, 1),
            (b'*', _) => (Kind::Mul, 1),
            (b'/', _) => (Kind::Div, 1),
            (b'%', _) => (Kind::Mod, 1),
            (b'^', _) => (Kind::Pow, 1),
            (b'"' | b'\'' | b'`', _) => return self.string(b),
            (b'0'..=b'9', _) | (b'.', Some(b'0'..=b'9')) => return self.number(),
            (b'a'..=b'z' | b'A'..=b'Z' | b'_', _) => {
                self.pos += 1;
                while self
                    .bytes
                    .get(self.pos)
                    .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
                {
                    self.pos += 1;
                }
                return Kind::Ident;
            }
            _ => (Kind::Other, 1),
        };
        self.pos += len;
        kind
    }

    /// A quoted string. A newline inside `"`/`'`, a `\` in a backtick string (Prometheus 2
    /// and 3 read it differently) or no closing quote: [`Kind::Other`].
    fn string(&mut self, quote: u8) -> Kind {
        let mut at = self.pos + 1;
        loop {
            match self.bytes.get(at) {
                None => {
                    self.pos = self.bytes.len();
                    return Kind::Other;
                }
                Some(&b) if b == quote => {
                    self.pos = at + 1;
                    return Kind::String;
                }
                Some(b'\\') if quote == b'`' => {
                    self.pos = at;
                    return Kind::Other;
                }
                // An escape of a non-ASCII character: the full path says why it is wrong.
                Some(b'\\') if self.bytes.get(at + 1).is_some_and(|b| !b.is_ascii()) => {
                    self.pos = at;
                    return Kind::Other;
                }
                Some(b'\\') => at += 2,
                Some(b'\n') if quote != b'`' => {
                    self.pos = at;
                    return Kind::Other;
                }
                Some(_) => at += 1,
            }
        }
    }

    /// A number or a duration. Hexadecimal (`0x1f`), a fraction, an exponent; digits with
    /// unit letters make a duration. A number run into other letters is [`Kind::Other`].
    fn number(&mut self) -> Kind {
        let bytes = self.bytes;
        let start = self.pos;
        let digits = |mut at: usize| {
            while bytes.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            at
        };
        if bytes[start] == b'0' && matches!(bytes.get(start + 1), Some(b'x' | b'X')) {
            let mut at = start + 2;
            while bytes.get(at).is_some_and(u8::is_ascii_hexdigit) {
                at += 1;
            }
            self.pos = at;
            return if at == start + 2 || continues_name(bytes.get(at)) {
                Kind::Other
            } else {
                Kind::Number
            };
        }
        let mut at = digits(start);
        if at > start && is_unit(bytes.get(at)) {
            // A duration: (digits unit)+.
            loop {
                while is_unit(bytes.get(at)) {
                    at += 1;
                }
                if !bytes.get(at).is_some_and(u8::is_ascii_digit) {
                    break;
                }
                at = digits(at);
                if !is_unit(bytes.get(at)) {
                    self.pos = at;
                    return Kind::Other;
                }
            }
            self.pos = at;
            return if continues_name(bytes.get(at)) || bytes.get(at) == Some(&b'.') {
                Kind::Other
            } else {
                Kind::Duration
            };
        }
        if bytes.get(at) == Some(&b'.') {
            at = digits(at + 1);
        }
        if matches!(bytes.get(at), Some(b'e' | b'E')) {
            let mut exp = at + 1;
            if matches!(bytes.get(exp), Some(b'+' | b'-')) {
                exp += 1;
            }
            let end = digits(exp);
            if end == exp {
                self.pos = end;
                return Kind::Other;
            }
            at = end;
        }
        self.pos = at;
        if continues_name(bytes.get(at)) || bytes.get(at) == Some(&b'.') {
            Kind::Other
        } else {
            Kind::Number
        }
    }
}

/// A duration unit letter (`ms` is `m` then `s`; `parse_duration` checks the order).
fn is_unit(b: Option<&u8>) -> bool {
    matches!(b, Some(b'y' | b'w' | b'd' | b'h' | b'm' | b's'))
}

/// A letter, digit or `_` right after a number: not a number alone (a `:` may follow, as in
/// `[5m:1m]`).
fn continues_name(b: Option<&u8>) -> bool {
    b.is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Kind> {
        let mut lexer = Lexer::new(text);
        let mut out = Vec::new();
        loop {
            let t = lexer.next_token();
            out.push(t.kind);
            if matches!(t.kind, Kind::Eof | Kind::Other) {
                return out;
            }
        }
    }

    #[test]
    fn keywords_in_any_case() {
        let word = |text: &str| Lexer::new(text).next_token().word;
        assert_eq!(word("SUM"), Word::Aggregator("sum"));
        assert_eq!(word("Group_Left"), Word::GroupLeft);
        assert_eq!(word("offset"), Word::Offset);
        assert_eq!(word("NaN"), Word::NaN);
        assert_eq!(word("limitk"), Word::Reserved);
        assert_eq!(word("summary"), Word::Name);
        assert_eq!(word("count_values_x"), Word::Name);
        assert_eq!(word("a_name_longer_than_twelve"), Word::Name);
        assert_eq!(word("5m"), Word::Name);
    }

    #[test]
    fn token_rows() {
        use Kind::*;
        let rows: &[(&str, &[Kind])] = &[
            (
                "rate(x[5m])",
                &[
                    Ident, LParen, Ident, LBracket, Duration, RBracket, RParen, Eof,
                ],
            ),
            (
                "a{b=~\"c\",d!~'e'}",
                &[
                    Ident, LBrace, Ident, Regex, String, Comma, Ident, NotRegex, String, RBrace,
                    Eof,
                ],
            ),
            ("1.5e-3 0x1F .5 010", &[Number, Number, Number, Number, Eof]),
            ("1h30m 100ms", &[Duration, Duration, Eof]),
            ("a # comment\n+ b", &[Ident, Add, Ident, Eof]),
            (
                "x == bool 1 != 2 <= 3 >= 4 < 5 > 6",
                &[
                    Ident, EqEq, Ident, Number, NotEq, Number, Le, Number, Ge, Number, Lt, Number,
                    Gt, Number, Eof,
                ],
            ),
            ("`raw`", &[String, Eof]),
            ("`a\\b`", &[Other]),
            ("\"a\nb\"", &[Other]),
            ("\"open", &[Other]),
            ("5x", &[Other]),
            ("1e", &[Other]),
            ("5m.", &[Other]),
            ("x@1", &[Ident, Other]),
            ("a # comment\r+ b", &[Ident, Add, Ident, Eof]),
            ("\"\\é\"", &[Other]),
        ];
        for (text, want) in rows {
            assert_eq!(kinds(text), *want, "{text}");
        }
    }
}
