//! Prometheus 3's duration expressions (`[5m+1m]`, `[1h:step()]`, `offset (1h)`), which the
//! crate's lexer or parser stops at: recognized from tokens and written as a duration of the
//! same length for the crate.

use promql_parser::parser::token::{
    T_ADD, T_COMMA, T_DIV, T_DURATION, T_EOF, T_IDENTIFIER, T_LEFT_PAREN, T_MOD, T_MUL, T_NUMBER,
    T_POW, T_RIGHT_PAREN, T_SUB, TokenId,
};

use crate::promql::MAX_NESTING;
use crate::promql::lex::{Token, lex};

/// Prometheus 3 reads arithmetic, `step()`, `range()`, `min_of()` and `max_of()` of durations
/// inside `[...]`; the crate's lexer stops there. If the lexer failed at `at` inside a range or
/// subquery whose parts are valid duration expressions, return the text with each such part
/// written as a duration of the same length.
pub(super) fn replace_bracket_duration(text: &str, at: usize) -> Option<String> {
    // Inside brackets the crate's lexer only reads numbers, durations, `:` and spaces, so the
    // bracket opens at the last `[` before `at` with only such characters in between.
    let open = text[..at]
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c.is_ascii_whitespace() || c == ':'))
        .filter(|&i| text[i..].starts_with('['))?;
    // A duration expression holds no brackets: the first `]` closes it.
    let close = open + text[open..].find(']')?;
    let inside = open + 1..close;
    let (range, step) = match text[inside.clone()].find(':') {
        Some(colon) => (
            inside.start..inside.start + colon,
            Some(inside.start + colon + 1..close),
        ),
        None => (inside, None),
    };
    let mut bytes = text.as_bytes().to_vec();
    let mut changed = false;
    for (part, optional) in [(Some(range), false), (step, true)] {
        let Some(part) = part else { continue };
        let tokens: Vec<Token> = lex(&text[part.clone()])
            .ok()?
            .into_iter()
            .filter(|t| t.0 != T_EOF)
            .collect();
        match tokens.as_slice() {
            [] if optional => {}
            [(T_NUMBER | T_DURATION, ..)] => {}
            // A negative literal is refused by Prometheus too ("must be greater than 0").
            [(T_SUB, ..), (T_NUMBER | T_DURATION, ..)] => return None,
            _ if is_duration_expr(&text[part.clone()], &tokens) => {
                write_duration(&mut bytes[part]);
                changed = true;
            }
            _ => return None,
        }
    }
    // ASCII replaced ASCII (every replaced part lexed as duration tokens).
    changed.then(|| String::from_utf8(bytes).ok()).flatten()
}

/// Overwrite `bytes` (at least two) with a duration the crate reads: `1s` and spaces.
pub(super) fn write_duration(bytes: &mut [u8]) {
    bytes.fill(b' ');
    if let Some(d) = bytes.get_mut(..2) {
        d.copy_from_slice(b"1s");
    }
}

/// Whether `tokens` (of `text`, lexed on their own) are a Prometheus 3 duration expression:
/// numbers and durations with `+ - * / % ^`, parentheses, `step()`, `range()`, `min_of(a, b)`
/// and `max_of(a, b)`. A division or modulo by a literal 0 is refused, as Prometheus does.
pub(super) fn is_duration_expr(text: &str, tokens: &[Token]) -> bool {
    struct Reader<'t> {
        text: &'t str,
        tokens: &'t [Token],
        i: usize,
    }
    impl Reader<'_> {
        fn peek(&self) -> Option<TokenId> {
            self.tokens.get(self.i).map(|t| t.0)
        }
        fn eat(&mut self, id: TokenId) -> bool {
            let ok = self.peek() == Some(id);
            self.i += usize::from(ok);
            ok
        }
        fn expr(&mut self, depth: usize) -> bool {
            if depth > MAX_NESTING {
                return false;
            }
            loop {
                while matches!(self.peek(), Some(T_ADD | T_SUB)) {
                    self.i += 1;
                }
                if !self.primary(depth) {
                    return false;
                }
                match self.peek() {
                    Some(op @ (T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW)) => {
                        self.i += 1;
                        if matches!(op, T_DIV | T_MOD) && self.zero_literal() {
                            return false;
                        }
                    }
                    _ => return true,
                }
            }
        }
        fn zero_literal(&self) -> bool {
            self.tokens.get(self.i).is_some_and(|&(id, s, e)| {
                id == T_NUMBER && self.text[s..e].parse::<f64>().is_ok_and(|v| v == 0.0)
            })
        }
        fn primary(&mut self, depth: usize) -> bool {
            let Some(&(id, s, e)) = self.tokens.get(self.i) else {
                return false;
            };
            self.i += 1;
            match id {
                T_NUMBER | T_DURATION => true,
                T_LEFT_PAREN => self.expr(depth + 1) && self.eat(T_RIGHT_PAREN),
                T_IDENTIFIER => {
                    let name = self.text[s..e].to_ascii_lowercase();
                    match name.as_str() {
                        "step" | "range" => self.eat(T_LEFT_PAREN) && self.eat(T_RIGHT_PAREN),
                        "min_of" | "max_of" => {
                            self.eat(T_LEFT_PAREN)
                                && self.expr(depth + 1)
                                && self.eat(T_COMMA)
                                && self.expr(depth + 1)
                                && self.eat(T_RIGHT_PAREN)
                        }
                        _ => false,
                    }
                }
                _ => false,
            }
        }
    }
    let mut reader = Reader { text, tokens, i: 0 };
    reader.expr(0) && reader.i == tokens.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_expressions() {
        let yes = [
            "5m+1m",
            "(5m)",
            "step()",
            "min_of(5m, step())",
            "-step()",
            "2 ^ 3",
            "1h % 7m",
        ];
        let no = ["5m,1m", "step", "step()+", "5m / 0", "rate(x)", "x", ""];
        for text in yes {
            let tokens: Vec<Token> = lex(text)
                .unwrap()
                .into_iter()
                .filter(|t| t.0 != T_EOF)
                .collect();
            assert!(is_duration_expr(text, &tokens), "{text}");
        }
        for text in no {
            let tokens: Vec<Token> = lex(text)
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.0 != T_EOF)
                .collect();
            assert!(!is_duration_expr(text, &tokens), "{text}");
        }
    }
}
