//! Tokens of an expression from the crate's lexer, and the selectors and label lists in them.
//!
//! The crate's lexer gives token ids and byte positions; what edits the user's text in place on
//! the crate's path (the full path's splice, the dashboard's grouping lists) finds its spots
//! here, so the text keeps its formatting and `#` comments.

use lrpar::{Lexeme as _, Lexer as _};
use promql_parser::parser;
use promql_parser::parser::token::{
    T_BY, T_COMMA, T_EQL, T_EQL_REGEX, T_GROUP_LEFT, T_GROUP_RIGHT, T_IDENTIFIER, T_IGNORING,
    T_LEFT_BRACE, T_LEFT_BRACKET, T_LEFT_PAREN, T_LOR, T_METRIC_IDENTIFIER, T_NEQ, T_NEQ_REGEX,
    T_ON, T_RIGHT_BRACE, T_RIGHT_BRACKET, T_RIGHT_PAREN, T_STRING, T_WITHOUT, TokenId, TokenType,
};

use super::dialect::Source;
use super::{MAX_NESTING, MAX_OPERATORS, ScopeError};

/// A lexeme: token id, start and end byte.
pub type Token = (TokenId, usize, usize);

/// The crate's tokens of `expr` as promfed reads it (see `dialect`): every name, whatever
/// keyword it spells, as `T_IDENTIFIER`, at byte positions in `expr`. An expression with a
/// backtick string that holds `\` (which promfed rewrites, so its output never has one) is
/// refused: positions in the rewritten text would not fit `expr`.
pub fn tokens(expr: &str) -> Result<Vec<Token>, ScopeError> {
    let source = Source::new(expr)?;
    if *source.text != *expr {
        return Err(ScopeError::Parse(
            "a backtick string holds `\\`: promfed rewrites it first".into(),
        ));
    }
    Ok(source.view.tokens)
}

/// The crate's lexer over the whole text (`T_EOF` included).
pub(super) fn lex(text: &str) -> Result<Vec<Token>, String> {
    let lexer = parser::lexer(text)?;
    Ok(lexer
        .iter()
        .filter_map(|l| l.ok())
        .map(|l| (l.tok_id(), l.span().start(), l.span().end()))
        .collect())
}

/// A PromQL string literal's value, as the parser reads it (Go's `strconv.Unquote` rules).
pub fn unquote(literal: &str) -> Option<String> {
    promql_parser::util::unquote_string(literal).ok()
}

/// A selector's position in the text.
#[derive(Debug)]
pub(super) struct LexedSelector {
    pub end: usize,
    pub braces: Option<Braces>,
}

#[derive(Debug)]
pub(super) struct Braces {
    /// Byte offset of `}`.
    pub close: usize,
    /// Matchers present and the last one not followed by a comma.
    pub needs_comma: bool,
    pub matchers: Vec<LexedMatcher>,
}

#[derive(Debug)]
pub(super) struct LexedMatcher {
    pub label: String,
    pub start: usize,
    pub end: usize,
}

/// Find vector selectors in source order: an identifier not followed by `(` (that is a
/// function call), or a `{...}` block, outside `by (...)`-style label lists. None when the
/// tokens do not have the expected shape; the caller then takes a slower, safer path.
pub(super) fn lex_selectors(text: &str, tokens: &[Token]) -> Option<Vec<LexedSelector>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let (id, _, end) = tokens[i];
        let next = tokens.get(i + 1).map(|t| t.0);
        match id {
            _ if is_label_list(tokens, i) => i = label_list_close(tokens, i) + 1,
            T_IDENTIFIER | T_METRIC_IDENTIFIER if next == Some(T_LEFT_PAREN) => i += 1,
            T_IDENTIFIER | T_METRIC_IDENTIFIER => {
                if next == Some(T_LEFT_BRACE) {
                    let (braces, after) = lex_braces(text, tokens, i + 1)?;
                    out.push(LexedSelector {
                        end: braces.close + 1,
                        braces: Some(braces),
                    });
                    i = after;
                } else {
                    out.push(LexedSelector { end, braces: None });
                    i += 1;
                }
            }
            T_LEFT_BRACE => {
                let (braces, after) = lex_braces(text, tokens, i)?;
                out.push(LexedSelector {
                    end: braces.close + 1,
                    braces: Some(braces),
                });
                i = after;
            }
            _ => i += 1,
        }
    }
    Some(out)
}

/// A label list as written: `by (a, b)`, `on ("x")`, `group_left (c)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelList<'t> {
    /// `T_BY`, `T_WITHOUT`, `T_ON`, `T_IGNORING`, `T_GROUP_LEFT` or `T_GROUP_RIGHT`.
    pub keyword: TokenId,
    /// The names, quotes trimmed.
    pub names: Vec<&'t str>,
    /// Where the last name ends; None for an empty list.
    pub last_end: Option<usize>,
}

/// Every label list of the text, in source order.
pub fn label_lists<'t>(text: &'t str, tokens: &[Token]) -> Vec<LabelList<'t>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !is_label_list(tokens, i) {
            i += 1;
            continue;
        }
        let close = label_list_close(tokens, i);
        let mut names = Vec::new();
        let mut last_end = None;
        for &(id, start, end) in &tokens[i + 2..close] {
            if id != T_COMMA {
                names.push(text[start..end].trim_matches(['"', '\'', '`']));
                last_end = Some(end);
            }
        }
        out.push(LabelList {
            keyword: tokens[i].0,
            names,
            last_end,
        });
        i = close + 1;
    }
    out
}

/// Whether token `i` starts a label list: a grouping keyword followed by `(`.
fn is_label_list(tokens: &[Token], i: usize) -> bool {
    matches!(
        tokens[i].0,
        T_BY | T_WITHOUT | T_ON | T_IGNORING | T_GROUP_LEFT | T_GROUP_RIGHT
    ) && tokens.get(i + 1).map(|t| t.0) == Some(T_LEFT_PAREN)
}

/// The index of the `)` that closes the label list at `i` (the token count when none does).
fn label_list_close(tokens: &[Token], i: usize) -> usize {
    (i + 2..tokens.len())
        .find(|&j| tokens[j].0 == T_RIGHT_PAREN)
        .unwrap_or(tokens.len())
}

/// Tokens from `{` at `open` to the matching `}`; returns the braces and the index after `}`.
fn lex_braces(text: &str, tokens: &[Token], open: usize) -> Option<(Braces, usize)> {
    let mut i = open + 1;
    let mut matchers = Vec::new();
    let mut needs_comma = false;
    while i < tokens.len() {
        let (id, start, end) = tokens[i];
        match id {
            T_RIGHT_BRACE => {
                let braces = Braces {
                    close: start,
                    needs_comma,
                    matchers,
                };
                return Some((braces, i + 1));
            }
            T_LOR => return None,
            T_COMMA => {
                needs_comma = false;
                i += 1;
            }
            // A quoted metric name alone (Prometheus 3): `{"my.metric", job="a"}`.
            T_STRING if matches!(tokens.get(i + 1), Some((T_COMMA | T_RIGHT_BRACE, ..))) => {
                matchers.push(LexedMatcher {
                    label: "__name__".to_string(),
                    start,
                    end,
                });
                needs_comma = true;
                i += 1;
            }
            _ => {
                // label op "value"; the label may be quoted (Prometheus 3: `"label.name"="v"`).
                let (op, _, _) = *tokens.get(i + 1)?;
                let (value_id, _, value_end) = *tokens.get(i + 2)?;
                if value_id != T_STRING || !matches!(op, T_EQL | T_NEQ | T_EQL_REGEX | T_NEQ_REGEX)
                {
                    return None;
                }
                let written = text.get(start..end)?;
                let label = match id {
                    T_STRING => unquote(written)?,
                    _ => written.to_string(),
                };
                matchers.push(LexedMatcher {
                    label,
                    start,
                    end: value_end,
                });
                needs_comma = true;
                i += 3;
            }
        }
    }
    None
}

/// Refuse expressions the recursive parts (AST walks, comparison, drop) could choke on:
/// brackets nested deeper than [`MAX_NESTING`] or more than [`MAX_OPERATORS`] operators
/// (a long `a + a + ...` chain is a deep tree too). Real rules stay far below both.
pub(super) fn check_nesting(tokens: &[Token]) -> Result<(), ScopeError> {
    let mut depth = 0usize;
    let mut operators = 0usize;
    for &(id, _, _) in tokens {
        match id {
            T_LEFT_PAREN | T_LEFT_BRACE | T_LEFT_BRACKET => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(ScopeError::TooDeep);
                }
            }
            T_RIGHT_PAREN | T_RIGHT_BRACE | T_RIGHT_BRACKET => depth = depth.saturating_sub(1),
            _ if TokenType::new(id).is_operator() => {
                operators += 1;
                if operators > MAX_OPERATORS {
                    return Err(ScopeError::TooDeep);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquote_follows_go() {
        let cases = [
            (r#""a\"b""#, Some("a\"b")),
            (r"'a\'b'", Some("a'b")),
            (r"`a\d`", Some(r"a\d")),
            (r#""\x41\u00e9\101\n""#, Some("AéA\n")),
            (r#""\q""#, None),
            // Go refuses an escaped quote of the other kind; the lexer never yields one.
            (r#""\'""#, None),
            (r#""abc"#, None),
        ];
        for (literal, want) in cases {
            assert_eq!(unquote(literal).as_deref(), want, "{literal}");
        }
    }
}
