//! Where a PromQL expression is broken, as `line:column` in the expression the way promtool
//! reports it (`could not parse expression: 1:16: ...`).
//!
//! promql-parser says why an expression does not parse but not where. The crate stays the
//! judge of validity; this module only locates the error it reported:
//! - a lexer error: the character where the lexer stops (found by lexing prefixes), or the end
//!   of the expression for errors the lexer raises there (an unclosed parenthesis);
//! - a syntax error: the first token that cannot follow the tokens before it, found by a small
//!   recognizer of PromQL's structure (operands, operators, calls, aggregations, selectors,
//!   ranges, subqueries, `offset`, `@`), or the end when an operand is missing there;
//! - anything else (types, unknown functions): the start of the innermost call, aggregation,
//!   parenthesis or selector that does not parse on its own, else of the expression.
//!
//! The position is the offending character or token; for some errors Prometheus points one
//! character away (after a stray `)`, at the quote of a string with a bad escape).

use lrpar::{Lexeme as _, Lexer as _};
use promql_parser::parser;
use promql_parser::parser::token::{
    T_ADD, T_ANCHORED, T_AT, T_ATAN2, T_BOOL, T_BY, T_COLON, T_COMMA, T_DIV, T_DURATION, T_END,
    T_EOF, T_EQL, T_EQL_REGEX, T_EQLC, T_FILL, T_FILL_LEFT, T_FILL_RIGHT, T_GROUP_LEFT,
    T_GROUP_RIGHT, T_GTE, T_GTR, T_IDENTIFIER, T_IGNORING, T_KEYWORDS_END, T_KEYWORDS_START,
    T_LAND, T_LEFT_BRACE, T_LEFT_BRACKET, T_LEFT_PAREN, T_LOR, T_LSS, T_LTE, T_LUNLESS,
    T_METRIC_IDENTIFIER, T_MOD, T_MUL, T_NEQ, T_NEQ_REGEX, T_NUMBER, T_OFFSET, T_ON, T_POW,
    T_RIGHT_BRACE, T_RIGHT_BRACKET, T_RIGHT_PAREN, T_SMOOTHED, T_START, T_STEP, T_STRING, T_SUB,
    T_WITHOUT, TokenId, TokenType,
};

/// Bytes of sub-expressions parsed, at most, to find where a type or function error is;
/// beyond it the start of the expression is given (hostile input stays cheap).
const SPAN_BUDGET: usize = 1 << 20;

/// A lexeme: token id, start and end byte.
type Token = (TokenId, usize, usize);

/// The 1-based line and column in `text` (which promql-parser refuses) of its error.
pub fn locate(text: &str) -> (usize, usize) {
    line_column(text, offset(text))
}

/// `line:column: message`, as promtool writes a parse error.
pub fn with_position(text: &str, message: &str) -> String {
    let (line, column) = locate(text);
    format!("{line}:{column}: {message}")
}

/// The byte offset in `text` (which promql-parser refuses) of its error.
pub(crate) fn offset(text: &str) -> usize {
    let Some(tokens) = tokens(text) else {
        return lexer_error_offset(text);
    };
    let mut recognizer = Recognizer {
        text,
        tokens: &tokens,
        i: 0,
        spans: Vec::new(),
    };
    match recognizer.expression() {
        Ok(()) => {}
        Err(Stop::At(offset)) => return offset,
        Err(Stop::Unknown) => {}
    }
    let first = tokens.first().map_or(0, |t| t.1);
    // Innermost first: a failing span contains no shorter failing span checked before it.
    let mut spans = recognizer.spans;
    spans.sort_by_key(|(start, end)| end - start);
    spans.dedup();
    let mut budget = SPAN_BUDGET;
    for (start, end) in spans {
        budget = match budget.checked_sub(end - start) {
            Some(left) => left,
            None => break,
        };
        if parser::parse(&text[start..end]).is_err() {
            return start;
        }
    }
    first
}

/// The crate's lexemes, or None when the lexer fails.
fn tokens(text: &str) -> Option<Vec<Token>> {
    let lexer = parser::lexer(text).ok()?;
    Some(
        lexer
            .iter()
            .filter_map(|l| l.ok())
            .map(|l| (l.tok_id(), l.span().start(), l.span().end()))
            .collect(),
    )
}

/// Where the lexer stops: the end of the text for errors raised there, else the first
/// character whose prefix fails the same way.
pub(crate) fn lexer_error_offset(text: &str) -> usize {
    let error = |t: &str| parser::lexer(t).err();
    let Some(full) = error(text) else {
        return text.len();
    };
    // An error raised at the end changes when more text follows (a NUL is never valid
    // PromQL, so the lexer then stops at it instead); an error before the end does not.
    if error(&format!("{text}\u{0}")).as_deref() != Some(full.as_str()) {
        return text.len();
    }
    let ends: Vec<usize> = text.char_indices().map(|(i, c)| i + c.len_utf8()).collect();
    if ends.is_empty() {
        return 0;
    }
    // The smallest prefix that fails with the same message; beyond it, every prefix does.
    let (mut low, mut high) = (0, ends.len() - 1);
    while low < high {
        let mid = (low + high) / 2;
        if error(&text[..ends[mid]]).as_deref() == Some(full.as_str()) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    ends[low]
        - text[..ends[low]]
            .chars()
            .next_back()
            .map_or(0, char::len_utf8)
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Why the recognizer stopped: a syntax error at a byte offset, or a construct it does not
/// know (then the sub-expression check decides).
enum Stop {
    At(usize),
    Unknown,
}

struct Recognizer<'a> {
    text: &'a str,
    tokens: &'a [Token],
    i: usize,
    /// Calls, aggregations, parentheses and selectors seen, as byte spans.
    spans: Vec<(usize, usize)>,
}

/// What an open bracket is.
enum Frame {
    Paren(usize),
    /// A function call or an aggregation: its start, arguments so far, the last comma, and
    /// for an aggregation whether it may still take `by`/`without` after its `)`.
    Call {
        start: usize,
        args: usize,
        comma: Option<usize>,
        grouping_after: bool,
    },
}

fn is_binary_operator(id: TokenId) -> bool {
    matches!(
        id,
        T_ADD
            | T_SUB
            | T_MUL
            | T_DIV
            | T_MOD
            | T_POW
            | T_ATAN2
            | T_EQLC
            | T_NEQ
            | T_GTE
            | T_GTR
            | T_LSS
            | T_LTE
            | T_LAND
            | T_LOR
            | T_LUNLESS
    )
}

/// Prometheus 3's experimental modifiers, which this recognizer does not follow.
fn is_experimental(id: TokenId) -> bool {
    matches!(
        id,
        T_SMOOTHED | T_ANCHORED | T_FILL | T_FILL_LEFT | T_FILL_RIGHT | T_STEP
    )
}

/// A token that can be a label name: identifiers and every word-like keyword.
fn is_word(id: TokenId) -> bool {
    let ty = TokenType::new(id);
    matches!(id, T_IDENTIFIER | T_METRIC_IDENTIFIER)
        || ty.is_aggregator()
        || (id > T_KEYWORDS_START && id < T_KEYWORDS_END)
        || matches!(id, T_LAND | T_LOR | T_LUNLESS | T_ATAN2 | T_START | T_END)
}

impl Recognizer<'_> {
    fn peek(&self) -> Option<Token> {
        self.tokens.get(self.i).copied().filter(|t| t.0 != T_EOF)
    }

    fn peek_id(&self) -> Option<TokenId> {
        self.peek().map(|t| t.0)
    }

    /// The offset of the current token, or the end of the text.
    fn here(&self) -> usize {
        self.peek().map_or(self.text.len(), |t| t.1)
    }

    fn fail<T>(&self) -> Result<T, Stop> {
        Err(Stop::At(self.here()))
    }

    fn expect(&mut self, id: TokenId) -> Result<Token, Stop> {
        match self.peek() {
            Some(t) if t.0 == id => {
                self.i += 1;
                Ok(t)
            }
            _ => self.fail(),
        }
    }

    fn end_of_previous(&self) -> usize {
        self.i
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or(0, |t| t.2)
    }

    fn expression(&mut self) -> Result<(), Stop> {
        let mut frames: Vec<Frame> = Vec::new();
        loop {
            // An operand.
            let start = self.here();
            let plain_selector = self.operand(&mut frames)?;
            let Some(plain_selector) = plain_selector else {
                continue; // an opening bracket, or a unary sign: an operand still follows
            };
            // Its suffixes, then an operator, a closing bracket, a comma or the end.
            self.suffixes(plain_selector, start)?;
            loop {
                match self.peek_id() {
                    None => {
                        return if frames.is_empty() {
                            Ok(())
                        } else {
                            self.fail()
                        };
                    }
                    Some(id) if is_experimental(id) => return Err(Stop::Unknown),
                    Some(id) if is_binary_operator(id) => {
                        self.i += 1;
                        self.binary_modifiers()?;
                        break;
                    }
                    Some(T_COMMA) => match frames.last_mut() {
                        Some(Frame::Call { args, comma, .. }) => {
                            *args += 1;
                            *comma = Some(self.here());
                            self.i += 1;
                            break;
                        }
                        _ => return self.fail(),
                    },
                    Some(T_RIGHT_PAREN) => {
                        let close = self.peek().map_or(0, |t| t.2);
                        match frames.pop() {
                            Some(Frame::Paren(open)) => {
                                self.i += 1;
                                self.spans.push((open, close));
                                self.suffixes(false, open)?;
                            }
                            Some(Frame::Call {
                                start,
                                grouping_after,
                                ..
                            }) => {
                                self.i += 1;
                                if grouping_after
                                    && matches!(self.peek_id(), Some(T_BY | T_WITHOUT))
                                {
                                    self.i += 1;
                                    self.label_list()?;
                                }
                                self.spans.push((start, self.end_of_previous()));
                                self.suffixes(false, start)?;
                            }
                            None => return self.fail(),
                        }
                    }
                    Some(_) => return self.fail(),
                }
            }
        }
    }

    /// One operand, or the opening of one. Some(plain selector?) when an operand is complete,
    /// None when an operand must still follow (after `(`, `f(`, `sum(`, a sign).
    fn operand(&mut self, frames: &mut Vec<Frame>) -> Result<Option<bool>, Stop> {
        let Some((id, start, end)) = self.peek() else {
            return self.fail();
        };
        match id {
            T_ADD | T_SUB => {
                self.i += 1;
                Ok(None)
            }
            T_NUMBER | T_STRING => {
                self.i += 1;
                Ok(Some(false))
            }
            T_LEFT_PAREN => {
                self.i += 1;
                frames.push(Frame::Paren(start));
                Ok(None)
            }
            T_LEFT_BRACE => {
                self.braces(false)?;
                self.spans.push((start, self.end_of_previous()));
                Ok(Some(true))
            }
            T_RIGHT_PAREN => {
                let previous = self.i.checked_sub(1).and_then(|i| self.tokens.get(i));
                let just_opened = previous.map(|t| t.0) == Some(T_LEFT_PAREN);
                match frames.last() {
                    // `f()`: a call without arguments; the caller's `)` closes it.
                    Some(Frame::Call { comma: None, .. }) if just_opened => Ok(Some(false)),
                    // `f(x,)`: Prometheus points at the trailing comma.
                    Some(Frame::Call {
                        comma: Some(comma), ..
                    }) if previous.map(|t| t.1) == Some(*comma) => Err(Stop::At(*comma)),
                    _ => self.fail(),
                }
            }
            _ if TokenType::new(id).is_aggregator() => {
                self.i += 1;
                let grouped_before = matches!(self.peek_id(), Some(T_BY | T_WITHOUT));
                if grouped_before {
                    self.i += 1;
                    self.label_list()?;
                }
                self.expect(T_LEFT_PAREN)?;
                frames.push(Frame::Call {
                    start,
                    args: 0,
                    comma: None,
                    grouping_after: !grouped_before,
                });
                Ok(None)
            }
            T_IDENTIFIER if self.tokens.get(self.i + 1).map(|t| t.0) == Some(T_LEFT_PAREN) => {
                self.i += 2;
                frames.push(Frame::Call {
                    start,
                    args: 0,
                    comma: None,
                    grouping_after: false,
                });
                Ok(None)
            }
            T_IDENTIFIER | T_METRIC_IDENTIFIER => {
                self.i += 1;
                if self.peek_id() == Some(T_LEFT_BRACE) {
                    self.braces(true)?;
                }
                self.spans.push((start, self.end_of_previous().max(end)));
                Ok(Some(true))
            }
            _ if is_experimental(id) => Err(Stop::Unknown),
            _ => self.fail(),
        }
    }

    /// `[range]`, `[range:step]`, `offset d`, `@ t` after an operand.
    fn suffixes(&mut self, mut plain_selector: bool, start: usize) -> Result<(), Stop> {
        loop {
            match self.peek_id() {
                Some(T_LEFT_BRACKET) => {
                    let bracket = self.here();
                    self.i += 1;
                    self.duration()?;
                    if self.peek_id() == Some(T_COLON) {
                        self.i += 1;
                        if self.peek_id() != Some(T_RIGHT_BRACKET) {
                            self.duration()?;
                        }
                    } else if !plain_selector {
                        // A range needs a vector selector right before it.
                        return Err(Stop::At(bracket));
                    }
                    self.expect(T_RIGHT_BRACKET)?;
                }
                Some(T_OFFSET) => {
                    self.i += 1;
                    if self.peek_id() == Some(T_SUB) {
                        self.i += 1;
                    }
                    self.duration()?;
                }
                Some(T_AT) => {
                    self.i += 1;
                    match self.peek_id() {
                        Some(T_NUMBER) => self.i += 1,
                        Some(T_ADD | T_SUB) => {
                            self.i += 1;
                            self.expect(T_NUMBER)?;
                        }
                        Some(T_START | T_END) => {
                            self.i += 1;
                            self.expect(T_LEFT_PAREN)?;
                            self.expect(T_RIGHT_PAREN)?;
                        }
                        _ => return self.fail(),
                    }
                }
                _ => break,
            }
            plain_selector = false;
            self.spans.push((start, self.end_of_previous()));
        }
        Ok(())
    }

    /// A duration (or, in Prometheus 3, a number of seconds).
    fn duration(&mut self) -> Result<(), Stop> {
        match self.peek() {
            Some((T_DURATION | T_NUMBER, start, end)) => {
                let text = &self.text[start..end];
                let valid =
                    crate::prometheus::duration::parse(text).is_ok() || text.parse::<f64>().is_ok();
                if !valid {
                    return self.fail();
                }
                self.i += 1;
                Ok(())
            }
            _ => self.fail(),
        }
    }

    /// After a binary operator: `bool`, `on(...)`/`ignoring(...)`, `group_left(...)`.
    fn binary_modifiers(&mut self) -> Result<(), Stop> {
        if self.peek_id() == Some(T_BOOL) {
            self.i += 1;
        }
        if matches!(self.peek_id(), Some(T_ON | T_IGNORING)) {
            self.i += 1;
            self.label_list()?;
            if matches!(self.peek_id(), Some(T_GROUP_LEFT | T_GROUP_RIGHT)) {
                self.i += 1;
                if self.peek_id() == Some(T_LEFT_PAREN) {
                    self.label_list()?;
                }
            }
        }
        Ok(())
    }

    /// `(a, b)` after `by`, `without`, `on`, `ignoring`, `group_left`.
    fn label_list(&mut self) -> Result<(), Stop> {
        self.expect(T_LEFT_PAREN)?;
        loop {
            match self.peek_id() {
                Some(T_RIGHT_PAREN) => {
                    self.i += 1;
                    return Ok(());
                }
                Some(id) if is_word(id) || id == T_STRING => {
                    self.i += 1;
                    match self.peek_id() {
                        Some(T_COMMA) => self.i += 1,
                        Some(T_RIGHT_PAREN) => {}
                        _ => return self.fail(),
                    }
                }
                _ => return self.fail(),
            }
        }
    }

    /// `{label op "value", ...}`, after a metric name (`named`) or not; without one, a
    /// quoted metric name may stand alone.
    fn braces(&mut self, named: bool) -> Result<(), Stop> {
        self.expect(T_LEFT_BRACE)?;
        loop {
            let label = match self.peek() {
                Some((T_RIGHT_BRACE, ..)) => {
                    self.i += 1;
                    return Ok(());
                }
                Some(token @ (id, ..)) if is_word(id) => token,
                // A quoted name (Prometheus 3): a label when an operator follows.
                Some(token @ (T_STRING, ..))
                    if matches!(
                        self.tokens.get(self.i + 1).map(|t| t.0),
                        Some(T_EQL | T_NEQ | T_EQL_REGEX | T_NEQ_REGEX)
                    ) =>
                {
                    token
                }
                // A quoted metric name alone (Prometheus 3): `{"my.metric", job="a"}`.
                Some((T_STRING, ..)) if !named => {
                    self.i += 1;
                    match self.peek_id() {
                        Some(T_COMMA) => self.i += 1,
                        Some(T_RIGHT_BRACE) => {}
                        _ => return self.fail(),
                    }
                    continue;
                }
                _ => return self.fail(),
            };
            self.i += 1;
            let op = match self.peek_id() {
                Some(op @ (T_EQL | T_NEQ | T_EQL_REGEX | T_NEQ_REGEX)) => op,
                _ => return self.fail(),
            };
            self.i += 1;
            let (_, value_start, value_end) = self.expect(T_STRING)?;
            if matches!(op, T_EQL_REGEX | T_NEQ_REGEX) {
                let literal = &self.text[value_start..value_end];
                let compiles = super::lex::unquote(literal)
                    .is_some_and(|pattern| crate::prometheus::re2::check(&pattern).is_ok());
                if !compiles {
                    return Err(Stop::At(label.1));
                }
            }
            match self.peek_id() {
                Some(T_COMMA) => self.i += 1,
                Some(T_RIGHT_BRACE) => {}
                _ => return self.fail(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(expr: &str) -> String {
        if crate::promql::parse(expr).is_ok() {
            return "parses".into();
        }
        let (line, column) = locate(expr);
        format!("{line}:{column}")
    }

    /// (expression, position): promtool 2.42's column where it agrees, else (marked) the
    /// offending character promfed points at.
    #[test]
    fn positions_of_parse_errors() {
        let cases = [
            ("sum(rate(x[5m])", "1:16"),
            ("foo{a=\"b\"", "1:10"),
            ("foo +", "1:6"),
            ("(foo", "1:5"),
            ("foo[5m", "1:7"),
            ("nosuchfn(x)", "1:1"),
            ("x[5m] + 1", "1:1"),
            ("foo bar", "1:5"),
            ("foo{a=\"b\"} 1", "1:12"),
            ("sum by (a) foo", "1:12"),
            ("sum(x) by", "1:10"),
            ("foo offset", "1:11"),
            ("foo{a b}", "1:7"),
            ("foo{\"a\"}", "1:5"),
            ("foo @ bar", "1:7"),
            ("1 + (2 *)", "1:9"),
            ("sum(x,)", "1:6"),
            ("abs(x, y)", "1:1"),
            ("x and 1", "1:1"),
            ("foo[5m][1m]", "1:8"),
            ("foo}", "1:4"),
            ("foo]", "1:4"),
            ("foo{a=\"b\",,}", "1:11"),
            ("foo{a=~\"(\"}", "1:5"),
            // promtool: 1:18, after the stray parenthesis.
            ("sum(rate(x[5m]))) by (a)", "1:17"),
            // promtool: 1:8, the start of the duration.
            ("rate(x[5q])", "1:9"),
            // Lines count from the expression's first.
            ("sum(\n  rate(x[5m])\n  by (a)", "3:9"),
            ("sum by (job) (\n  rate(x[5m]) +\n)", "3:1"),
            ("sum(nosuchfn(x))", "1:5"),
        ];
        for (expr, want) in cases {
            assert_eq!(position(expr), want, "{expr:?}");
        }
    }

    #[test]
    fn valid_expressions_are_not_errors() {
        for expr in [
            "sum by (a) (rate(x{b=~\"c|d\"}[5m] offset -1m @ 100))",
            "topk(5, x) or on(a) y",
            "x * on(a) group_left(b) y",
            "rate(x[5m])[10m:1m]",
            "time()",
            "-x ^ 2",
        ] {
            assert_eq!(position(expr), "parses", "{expr}");
            let mut recognizer = Recognizer {
                text: expr,
                tokens: &tokens(expr).unwrap(),
                i: 0,
                spans: Vec::new(),
            };
            assert!(recognizer.expression().is_ok(), "{expr}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Any text, broken or not: a position inside it (or just past it), never a panic.
        #[test]
        fn any_text_gets_a_position_within_it(
            text in "[a-z_ (){}\\[\\]\"'`=~!,:@+*/^<>0-9.\n-]{0,40}|\\PC{0,20}"
        ) {
            let (line, column) = locate(&text);
            proptest::prop_assert!(line >= 1 && line <= text.lines().count().max(1) + 1);
            proptest::prop_assert!(column >= 1 && column <= text.chars().count() + 1);
        }
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_column("é(x", 3), (1, 3));
        assert_eq!(line_column("a\nbc", 4), (2, 3));
        assert_eq!(line_column("abc", 99), (1, 4));
    }
}
