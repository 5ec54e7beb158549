//! Grafana's template syntax (`$var`, `${var:fmt}`, `[[var]]`, ...) through the PromQL parser:
//! each token becomes a placeholder that is valid PromQL where it stands.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use crate::promql::parse;

/// Grafana's variable syntax, as its `templateSrv` regex: `$var`, `[[var]]`, `[[var:fmt]]`,
/// `${var}`, `${var.field}`, `${var:fmt}` (ASCII word characters, as JavaScript's `\w`).
pub(super) static TEMPLATE_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+?)(?::([A-Za-z0-9_]+))?\]\]|\$\{([A-Za-z0-9_]+)(?:\.([^:^}]+))?(?::([^}]+))?\}",
    )
    .expect("valid regex")
});

/// The template tokens of a text, in order (byte ranges).
pub fn template_tokens(text: &str) -> Vec<Range<usize>> {
    TEMPLATE_TOKEN.find_iter(text).map(|m| m.range()).collect()
}

/// Whether `text` refers to the template variable `name` in any of Grafana's syntaxes.
pub(super) fn uses_variable(text: &str, name: &str) -> bool {
    TEMPLATE_TOKEN.captures_iter(text).any(|c| {
        [1, 2, 4]
            .iter()
            .any(|&i| c.get(i).is_some_and(|m| m.as_str() == name))
    })
}

/// What a template token stands for, judged from where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// Inside a string or comment: any text.
    Text,
    /// A whole duration: `[$__rate_interval]`, `offset $__interval`.
    Duration,
    /// A number: `topk($n, ...)`, `${__range_s}s`, `@ ${__to:date:seconds}`.
    Number,
    /// An identifier or part of one: `${metric}_total`, `by ($label)`, `{$label="a"}`.
    Ident,
    /// Standing alone where a number or a metric name both fit (`x > $threshold`): tried as
    /// a number first (unless it is the whole expression), then as an identifier.
    Either,
}

/// An expression with its template tokens replaced by placeholders that parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    /// The expression with placeholders; it parses as PromQL.
    pub text: String,
    /// (placeholder, original token), each placeholder put in exactly once.
    pub placeholders: Vec<(String, String)>,
}

/// Why an expression cannot be parsed even with its template tokens protected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtectError(pub String);

impl Protected {
    /// Put the original tokens back; every placeholder must occur exactly once in `text`.
    pub fn restore(&self, text: &str) -> Result<String, String> {
        let mut out = text.to_string();
        for (placeholder, original) in &self.placeholders {
            let n = out.matches(placeholder.as_str()).count();
            if n != 1 {
                return Err(format!(
                    "template variable {original} did not come through the rewrite intact \
                     ({n} copies of its placeholder)"
                ));
            }
            out = out.replacen(placeholder.as_str(), original, 1);
        }
        Ok(out)
    }

    /// Put back whatever placeholders occur (for messages).
    pub fn restore_lenient(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (placeholder, original) in &self.placeholders {
            out = out.replace(placeholder.as_str(), original);
        }
        out
    }
}

/// Replace the template tokens of `expr` by placeholders valid in their context, so that the
/// result parses as PromQL. Expressions without tokens are only parsed.
pub fn protect(expr: &str) -> Result<Protected, ProtectError> {
    let tokens = template_tokens(expr);
    if tokens.is_empty() {
        parse(expr).map_err(|e| ProtectError(e.to_string()))?;
        return Ok(Protected {
            text: expr.to_string(),
            placeholders: Vec::new(),
        });
    }
    let slots = classify(expr, &tokens);
    // Placeholders must not occur in the text already; restore() double-checks the counts.
    let salt = (0..1000)
        .find(|&salt| {
            !expr.contains(&format!("__promfed{salt}_"))
                && !expr.contains(&format!("{}d7h13m", 424 + salt))
                && (0..tokens.len()).all(|i| !expr.contains(&number_placeholder(salt, i)))
        })
        .unwrap_or(0);
    let either: Vec<usize> = (0..tokens.len())
        .filter(|&i| slots[i] == Slot::Either)
        .collect();
    // A bit set means "identifier". Numbers first: `x > $threshold` must not become a selector.
    let whole = tokens.len() == 1 && expr.trim() == &expr[tokens[0].clone()];
    let masks: Vec<u64> = if whole {
        vec![1, 0]
    } else if either.len() <= 6 {
        let mut m: Vec<u64> = (0..1u64 << either.len()).collect();
        m.sort_by_key(|m| m.count_ones());
        m
    } else {
        vec![0, u64::MAX]
    };
    let mut first_error = None;
    for mask in masks {
        let mut text = String::with_capacity(expr.len() + 16 * tokens.len());
        let mut placeholders = Vec::with_capacity(tokens.len());
        let mut last = 0;
        for (i, range) in tokens.iter().enumerate() {
            let slot = match slots[i] {
                Slot::Either => {
                    let bit = either.iter().position(|&e| e == i).unwrap_or(0);
                    if bit < 64 && mask & (1 << bit) != 0 {
                        Slot::Ident
                    } else {
                        Slot::Number
                    }
                }
                slot => slot,
            };
            let placeholder = match slot {
                Slot::Text | Slot::Ident | Slot::Either => ident_placeholder(salt, i),
                Slot::Duration => duration_placeholder(salt, i),
                Slot::Number => number_placeholder(salt, i),
            };
            text.push_str(&expr[last..range.start]);
            text.push_str(&placeholder);
            placeholders.push((placeholder, expr[range.clone()].to_string()));
            last = range.end;
        }
        text.push_str(&expr[last..]);
        let protected = Protected { text, placeholders };
        match parse(&protected.text) {
            Ok(_) => return Ok(protected),
            Err(e) => {
                first_error.get_or_insert_with(|| protected.restore_lenient(&e.to_string()));
            }
        }
    }
    Err(ProtectError(first_error.unwrap_or_default()))
}

/// Placeholders are fixed-width and distinct, so none contains another, and they print back
/// the same from the AST (durations in canonical form) should the scoper have to reprint.
pub(super) fn ident_placeholder(salt: usize, i: usize) -> String {
    format!("__promfed{salt}_{i:04}__")
}

pub(super) fn number_placeholder(salt: usize, i: usize) -> String {
    format!("{}{:06}", 735 + salt, i)
}

pub(super) fn duration_placeholder(salt: usize, i: usize) -> String {
    format!(
        "{}d7h13m{}s{}ms",
        424 + salt,
        10 + (i / 900) % 50,
        100 + i % 900
    )
}

pub(super) const GROUPING_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

pub(super) fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Decide each token's slot with a small scan of the text: strings and comments, bracket
/// nesting (`[...]` ranges, `{...}` matchers, grouping label lists) and the neighbours. Not
/// `promql::lex`: with the template tokens still in it the text is not PromQL the lexer reads.
pub(super) fn classify(text: &str, tokens: &[Range<usize>]) -> Vec<Slot> {
    #[derive(PartialEq)]
    enum Prev {
        None,
        Word(String),
        Byte(u8),
        Token,
    }
    let bytes = text.as_bytes();
    let mut slots = vec![Slot::Either; tokens.len()];
    // (bracket, is a grouping label list)
    let mut stack: Vec<(u8, bool)> = Vec::new();
    let mut prev = Prev::None;
    let mut t = 0;
    let mut i = 0;
    while i < bytes.len() {
        while t < tokens.len() && tokens[t].start < i {
            // A token that began inside something skipped below.
            t += 1;
        }
        if t < tokens.len() && tokens[t].start == i {
            let Range { start, end } = tokens[t].clone();
            let top = stack.last().copied();
            let after = bytes.get(end).copied();
            let unit_follows = after.is_some_and(|b| b.is_ascii_alphabetic());
            let glued = (start > 0 && is_word_byte(bytes[start - 1]))
                || prev == Prev::Token && t > 0 && tokens[t - 1].end == start
                || after.is_some_and(is_word_byte)
                || tokens.get(t + 1).is_some_and(|n| n.start == end);
            let next = bytes[end..]
                .iter()
                .copied()
                .find(|b| !b.is_ascii_whitespace());
            slots[t] = if matches!(top, Some((b'[', _)))
                || matches!(&prev, Prev::Word(w) if w.eq_ignore_ascii_case("offset"))
            {
                if unit_follows {
                    Slot::Number
                } else {
                    Slot::Duration
                }
            } else if prev == Prev::Byte(b'@') {
                Slot::Number
            } else if glued
                || matches!(top, Some((b'{', _)) | Some((b'(', true)))
                || matches!(next, Some(b'{' | b'[' | b'('))
            {
                Slot::Ident
            } else {
                Slot::Either
            };
            prev = Prev::Token;
            i = end;
            t += 1;
            continue;
        }
        let c = bytes[i];
        match c {
            b'"' | b'\'' | b'`' => {
                let mut j = i + 1;
                while j < bytes.len() {
                    if t < tokens.len() && tokens[t].start == j {
                        slots[t] = Slot::Text;
                        j = tokens[t].end;
                        t += 1;
                        continue;
                    }
                    if bytes[j] == b'\\' && c != b'`' {
                        j += 2;
                        continue;
                    }
                    if bytes[j] == c {
                        break;
                    }
                    j += 1;
                }
                i = j + 1;
                prev = Prev::Byte(c);
            }
            b'#' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b'\n' {
                    if t < tokens.len() && tokens[t].start == j {
                        slots[t] = Slot::Text;
                        j = tokens[t].end;
                        t += 1;
                        continue;
                    }
                    j += 1;
                }
                i = j;
            }
            b'(' => {
                let grouping = matches!(&prev, Prev::Word(w)
                    if GROUPING_KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)));
                stack.push((c, grouping));
                prev = Prev::Byte(c);
                i += 1;
            }
            b'[' | b'{' => {
                stack.push((c, false));
                prev = Prev::Byte(c);
                i += 1;
            }
            b')' | b']' | b'}' => {
                stack.pop();
                prev = Prev::Byte(c);
                i += 1;
            }
            c if is_word_byte(c) => {
                let start = i;
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                prev = Prev::Word(text[start..i].to_string());
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                prev = Prev::Byte(c);
                i += 1;
            }
        }
    }
    slots
}
