//! PromQL as Prometheus reads it, made readable for `promql-parser`.
//!
//! The crate parses most PromQL, but not all that Prometheus 2.x and 3.x accept. An expression
//! becomes a *crate view*: a text of the same byte length, every token at the same position,
//! that the crate can parse, and what is needed to give the parsed AST the user's names back.
//! It is built from the crate's own lexer tokens:
//!
//! - names the crate reserves and Prometheus does not (`anchored` and `smoothed` as metric or
//!   label names, `or` as a label name in braces, where the crate reads its own `or` between
//!   matchers) become placeholder identifiers of the same length, renamed back in the AST;
//! - Prometheus 3's `anchored`/`smoothed` modifiers and the `/` of its trim operators `</` and
//!   `>/` are blanked, and its duration expressions (`[5m+1m]`, `[1h:step()]`,
//!   `offset (1h)`) become a same-length duration. None of them selects series, so the
//!   selectors, all that scoping changes, are the same; but the AST no longer shows them, so
//!   such a view is *lossy* and an AST parsed from it must never be printed as a result;
//! - Prometheus 2.x backtick strings that hold `\` become double-quoted strings (the crate's
//!   lexer reads `\` in them as an escape). This one changes lengths, so it comes first, and
//!   its shifts are kept to report positions in the user's text.
//!
//! Errors give line:column in the user's expression (found by `promql::position`: the crate
//! reports none), and say so when the crate lacks something Prometheus accepts.
//!
//! `grammar` is the pass over the tokens that tells names from keywords and finds the edits;
//! `duration` recognizes Prometheus 3's duration expressions.

use std::borrow::Cow;
use std::sync::Once;

use promql_parser::label::Labels;
use promql_parser::parser::token::T_IDENTIFIER;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    self, Expr, Function, LabelModifier, VectorMatchCardinality, VectorSelector,
};

mod duration;
mod grammar;

use duration::{replace_bracket_duration, write_duration};
use grammar::{Edit, classify};

use super::lex::{Token, check_nesting, lex};
use super::walk::for_each_node_mut;
use super::{ScopeError, position};

static EXTRA_FUNCTIONS: Once = Once::new();

/// Functions Prometheus 2.x knows that the parser does not.
pub(super) fn register_prometheus2_functions() {
    EXTRA_FUNCTIONS.call_once(|| {
        // holt_winters was renamed double_exponential_smoothing in Prometheus 3; 2.x rules use it.
        let holt_winters = Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        // Ignore a conflict: a future parser that knows the function itself is fine.
        let _ = parser::register_extra_functions(vec![holt_winters]);
    });
}

/// An expression and the crate's view of it.
#[derive(Debug)]
pub(super) struct Source<'a> {
    /// The user's expression.
    original: &'a str,
    /// The expression with backtick strings that hold `\` rewritten: the text promfed splices
    /// into and returns.
    pub text: Cow<'a, str>,
    /// (end in `text`, end in `original`) of each rewritten string, in order.
    shifts: Vec<(usize, usize)>,
    /// The crate's view of `text`.
    pub view: View,
}

/// What the crate parses: the same length and token positions as the text it was made from.
#[derive(Debug, Default)]
pub(super) struct View {
    /// The edited text; `None` when it is the text itself.
    text: Option<String>,
    /// The crate's tokens of the view without `T_EOF`, every name (of a selector, in a label
    /// list or a matcher) as `T_IDENTIFIER`, whatever keyword it spells.
    pub tokens: Vec<Token>,
    /// (placeholder, the user's name).
    renames: Vec<(String, String)>,
    /// How many names were renamed.
    renamed: usize,
    /// Something the AST cannot show was blanked or replaced (see the module docs).
    pub lossy: bool,
}

impl<'a> Source<'a> {
    /// Rewrite backtick strings, lex, build the crate view and check the nesting limits.
    pub fn new(expr: &'a str) -> Result<Source<'a>, ScopeError> {
        register_prometheus2_functions();
        let (text, shifts) = normalize_raw_strings(expr);
        let mut source = Source {
            original: expr,
            text,
            shifts,
            view: View::default(),
        };
        let (edited, tokens) = lex_prometheus(&source.text).map_err(|e| source.error(e))?;
        // Before anything else walks the tokens: the limits bound all later work.
        check_nesting(&tokens)?;
        source.view = View::new(edited, &source.text, &tokens).map_err(|e| source.error(e))?;
        Ok(source)
    }

    /// The view's text.
    pub fn view_text(&self) -> &str {
        self.view.text.as_deref().unwrap_or(&self.text)
    }

    /// Parse the view and give the AST the user's names; errors say where they are.
    pub fn parse(&self) -> Result<Expr, ScopeError> {
        self.view
            .parse_text(self.view_text())
            .map_err(|message| self.explain(message))
    }

    /// Byte `at` of `text` as an offset in the user's expression (backtick strings rewritten
    /// before it change lengths).
    fn original_offset(&self, at: usize) -> usize {
        let (text_end, original_end) = self
            .shifts
            .iter()
            .take_while(|(text_end, _)| *text_end <= at)
            .last()
            .copied()
            .unwrap_or((0, 0));
        original_end + (at - text_end)
    }

    /// The error, as `line:column: why` in the user's expression.
    fn error(&self, e: Located) -> ScopeError {
        let why = match e.unsupported {
            Some(what) => format!(
                "promtool accepts {what}, but the PromQL parser promfed uses does not support \
                 it ({})",
                e.message
            ),
            None => e.message,
        };
        match e.at {
            Some(at) => {
                let offset = self.original_offset(at);
                let (line, column) = position::line_column(self.original, offset);
                ScopeError::Parse(format!("{line}:{column}: {why}"))
            }
            None => ScopeError::Parse(why),
        }
    }

    /// A crate parse error of the view, placed by `promql::position` (the view has the text's
    /// positions).
    fn explain(&self, message: String) -> ScopeError {
        let at = position::offset(self.view_text());
        self.error(Located {
            message,
            at: Some(at),
            unsupported: None,
        })
    }
}

/// Lex `text` with the crate's lexer. Prometheus 3 duration expressions in `[...]` stop it;
/// each is replaced (see [`replace_bracket_duration`]) until the text lexes. Returns the
/// edited text, if any, and its tokens.
fn lex_prometheus(text: &str) -> Result<(Option<String>, Vec<Token>), Located> {
    let mut edited: Option<String> = None;
    // Each round replaces at least one bracket; a bound keeps hostile input cheap.
    for _ in 0..MAX_LEX_ROUNDS {
        let current = edited.as_deref().unwrap_or(text);
        match lex(current) {
            Ok(tokens) => return Ok((edited, tokens)),
            Err(message) => {
                let at = position::lexer_error_offset(current);
                match replace_bracket_duration(current, at) {
                    Some(next) => edited = Some(next),
                    None => return Err(explain_lex_error(current, message, at)),
                }
            }
        }
    }
    Err(Located {
        message: format!("more than {MAX_LEX_ROUNDS} ranges with duration expressions"),
        at: None,
        unsupported: None,
    })
}

/// Rounds of [`lex_prometheus`]: ranges with duration expressions in one expression.
const MAX_LEX_ROUNDS: usize = 64;

impl View {
    /// The view of `text` (or of `edited`, its lexable form) from the crate's `tokens` of it.
    fn new(edited: Option<String>, text: &str, tokens: &[Token]) -> Result<View, Located> {
        let lossy = edited.is_some();
        let current = edited.as_deref().unwrap_or(text);
        let first = classify(current, tokens)?;
        if first.edits.is_empty() {
            return Ok(View {
                text: edited,
                tokens: first.tokens,
                lossy,
                ..View::default()
            });
        }

        let mut bytes = current.as_bytes().to_vec();
        let mut renames: Vec<(String, String)> = Vec::new();
        let mut renamed = 0;
        let mut lossy = lossy;
        for &edit in &first.edits {
            match edit {
                Edit::Rename(start, end) => {
                    let word = &current[start..end];
                    let known = renames.iter().find(|(_, w)| w == word).map(|(p, _)| p);
                    let placeholder = match known {
                        Some(p) => p.clone(),
                        None => {
                            let p = placeholder(word, current, &renames).ok_or_else(|| {
                                Located::at(format!("no placeholder for the name {word:?}"), start)
                            })?;
                            renames.push((p.clone(), word.to_string()));
                            p
                        }
                    };
                    bytes[start..end].copy_from_slice(placeholder.as_bytes());
                    renamed += 1;
                }
                Edit::Blank(start, end) => {
                    bytes[start..end].fill(b' ');
                    lossy = true;
                }
                Edit::Duration(start, end) => {
                    write_duration(&mut bytes[start..end]);
                    lossy = true;
                }
            }
        }
        let internal = |what: String| Located {
            message: format!("internal error: {what}"),
            at: None,
            unsupported: None,
        };
        // Whole ASCII tokens were replaced with ASCII of the same length.
        let text = String::from_utf8(bytes).map_err(|_| internal("view is not UTF-8".into()))?;
        let tokens = lex(&text).map_err(|e| internal(format!("view does not lex: {e}")))?;
        let second = classify(&text, &tokens)?;
        if !second.edits.is_empty() {
            return Err(internal("view still needs edits".into()));
        }
        Ok(View {
            text: Some(text),
            tokens: second.tokens,
            renames,
            renamed,
            lossy,
        })
    }

    /// Parse `text` (this view's text, or one with the same names in the same places) and
    /// give the AST the user's names.
    pub fn parse_text(&self, text: &str) -> Result<Expr, String> {
        let mut expr = parser::parse(text)?;
        self.restore(&mut expr)?;
        Ok(expr)
    }

    /// Put the user's names back where the placeholders are.
    fn restore(&self, expr: &mut Expr) -> Result<(), String> {
        if self.renames.is_empty() {
            return Ok(());
        }
        let mut count = 0;
        let mut rename = |s: &mut String| {
            if let Some((_, original)) = self.renames.iter().find(|(p, _)| p == s) {
                s.clone_from(original);
                count += 1;
            }
        };
        for_each_node_mut(expr, &mut |node| match node {
            Expr::VectorSelector(vs) => rename_selector(vs, &mut rename),
            Expr::MatrixSelector(ms) => rename_selector(&mut ms.vs, &mut rename),
            Expr::Aggregate(agg) => {
                if let Some(LabelModifier::Include(ls) | LabelModifier::Exclude(ls)) =
                    &mut agg.modifier
                {
                    rename_labels(ls, &mut rename);
                }
            }
            Expr::Binary(b) => {
                if let Some(m) = &mut b.modifier {
                    if let Some(LabelModifier::Include(ls) | LabelModifier::Exclude(ls)) =
                        &mut m.matching
                    {
                        rename_labels(ls, &mut rename);
                    }
                    if let VectorMatchCardinality::ManyToOne(ls)
                    | VectorMatchCardinality::OneToMany(ls) = &mut m.card
                    {
                        rename_labels(ls, &mut rename);
                    }
                }
            }
            _ => {}
        });
        // Each renamed token is one name in the AST. Any other count means a placeholder also
        // came from somewhere else (a quoted name spelling it with escapes): trust nothing.
        if count != self.renamed {
            return Err(format!(
                "internal error: {count} names to rename in the AST, {} in the text",
                self.renamed
            ));
        }
        Ok(())
    }
}

fn rename_selector(vs: &mut VectorSelector, rename: &mut dyn FnMut(&mut String)) {
    if let Some(name) = &mut vs.name {
        rename(name);
    }
    for m in &mut vs.matchers.matchers {
        rename(&mut m.name);
    }
    for m in vs.matchers.or_matchers.iter_mut().flatten() {
        rename(&mut m.name);
    }
}

fn rename_labels(ls: &mut Labels, rename: &mut dyn FnMut(&mut String)) {
    for l in &mut ls.labels {
        rename(l);
    }
}

/// An error before parsing: message, byte offset in the text, and what Prometheus accepts that
/// the crate does not, if that is the reason.
#[derive(Debug)]
struct Located {
    message: String,
    at: Option<usize>,
    unsupported: Option<&'static str>,
}

impl Located {
    fn at(message: String, at: usize) -> Located {
        Located {
            message,
            at: Some(at),
            unsupported: None,
        }
    }
}

/// A lexer error, explained: a `_` between digits is Prometheus 3 syntax the crate lacks.
fn explain_lex_error(text: &str, message: String, at: usize) -> Located {
    let digit_separator = text.get(at..).is_some_and(|rest| rest.starts_with('_'))
        && text[..at].ends_with(|c: char| c.is_ascii_hexdigit())
        && text[at + 1..].starts_with(|c: char| c.is_ascii_hexdigit());
    Located {
        message,
        at: Some(at),
        unsupported: digit_separator
            .then_some("`_` between the digits of a number (Prometheus 3: `1_000`)"),
    }
}

/// A placeholder for `word`: an identifier of the same length that is no keyword and occurs
/// nowhere in `text` (so nothing else can be renamed back to `word`), and is not taken.
fn placeholder(word: &str, text: &str, taken: &[(String, String)]) -> Option<String> {
    let first = word.chars().next().filter(char::is_ascii_alphabetic)?;
    let rest = word.len().checked_sub(1)?;
    if rest == 0 {
        return None;
    }
    // Keep the first letter; the rest is a counter in base 36 (letters and digits).
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz_";
    let free = |candidate: &str| {
        !text.contains(candidate)
            && !taken.iter().any(|(p, _)| p == candidate)
            && lex(candidate).is_ok_and(
                |t| matches!(t.first(), Some((T_IDENTIFIER, 0, e)) if *e == candidate.len()),
            )
    };
    (0..4096usize).find_map(|n| {
        let mut suffix = vec![b'_'; rest];
        let mut n = n;
        for slot in suffix.iter_mut().rev() {
            *slot = DIGITS[n % DIGITS.len()];
            n /= DIGITS.len();
            if n == 0 {
                break;
            }
        }
        let candidate = format!("{first}{}", String::from_utf8(suffix).ok()?);
        free(&candidate).then_some(candidate)
    })
}

/// Rewrite each backtick string that holds a `\` as the equivalent double-quoted string:
/// PromQL backtick strings have no escapes, but the crate's lexer reads `\` in them as one.
/// Also returns (end in the result, end in `expr`) of each rewritten string.
fn normalize_raw_strings(expr: &str) -> (Cow<'_, str>, Vec<(usize, usize)>) {
    if !expr.contains('`') {
        return (Cow::Borrowed(expr), Vec::new());
    }
    let mut out = String::with_capacity(expr.len() + 8);
    let mut shifts = Vec::new();
    let mut chars = expr.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '"' | '\'' => {
                out.push(c);
                while let Some((_, d)) = chars.next() {
                    out.push(d);
                    if d == '\\' {
                        if let Some((_, e)) = chars.next() {
                            out.push(e);
                        }
                    } else if d == c {
                        break;
                    }
                }
            }
            '#' => {
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '`' => {
                let mut raw = String::new();
                let mut closed = None;
                for (i, d) in chars.by_ref() {
                    if d == '`' {
                        closed = Some(i + 1);
                        break;
                    }
                    raw.push(d);
                }
                match closed {
                    Some(end) if raw.contains('\\') => {
                        out.push('"');
                        out.push_str(&promql_parser::util::escape_string(&raw));
                        out.push('"');
                        shifts.push((out.len(), end));
                    }
                    _ => {
                        out.push('`');
                        out.push_str(&raw);
                        if closed.is_some() {
                            out.push('`');
                        }
                    }
                }
            }
            _ => out.push(c),
        }
    }
    if shifts.is_empty() {
        (Cow::Borrowed(expr), shifts)
    } else {
        (Cow::Owned(out), shifts)
    }
}

#[cfg(test)]
mod tests {
    use promql_parser::parser::token::T_EOF;

    use super::*;

    fn view(text: &str) -> View {
        let (edited, tokens) = lex_prometheus(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        View::new(edited, text, &tokens).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    /// The tokens a view hands on are the crate's tokens of the view text, with names as
    /// identifiers: patching them never drifts from what the lexer makes of the edited text.
    #[test]
    fn view_tokens_are_the_lexers_tokens_of_the_view() {
        for text in [
            "anchored",
            "sum by (smoothed) (rate(anchored[5m] anchored))",
            r#"x{or ="a", a="b"}"#,
            "x </ 5 + y >/ 2",
            "x offset (1h + 5m) smoothed",
            "rate(x[5m+1m:step()])",
            "sum + by",
        ] {
            let v = view(text);
            let view_text = v.text.as_deref().unwrap_or(text);
            assert_eq!(view_text.len(), text.len(), "{text}");
            let relexed: Vec<Token> = lex(view_text)
                .unwrap()
                .into_iter()
                .filter(|t| t.0 != T_EOF)
                .collect();
            assert_eq!(relexed.len(), v.tokens.len(), "{text}");
            for (a, b) in relexed.iter().zip(&v.tokens) {
                assert_eq!((a.1, a.2), (b.1, b.2), "{text}");
                assert!(a.0 == b.0 || b.0 == T_IDENTIFIER, "{text}: {a:?} {b:?}");
            }
        }
    }

    /// Found by generating token soup: blanking a modifier must not change how anything after it
    /// is read, also in invalid input (an internal error would be a false "please report it").
    #[test]
    fn invalid_input_is_an_ordinary_error() {
        for text in [
            "by Anchored{or =\"x\"}info</ bool'q'/=",
            "or = = {\"a.b\"} offset smoothed (1h)upon andgroup_left < topk unless",
            "group_left offsetAnchoredand x offsetx offset smoothed min_of(5m, 1m) [1h:step()]",
            "x @ anchored 5 smoothed",
        ] {
            let e = Source::new(text).and_then(|s| s.parse()).unwrap_err();
            assert!(!e.to_string().contains("internal"), "{text}: {e}");
        }
    }

    /// The walker reads the `fill(0)` binary operator modifier, so the selector after it is
    /// found and spliced (a lossy view, from the trim operator, cannot fall back to printing).
    #[test]
    fn fill_modifier_after_a_trim_operator() {
        let scoper = super::super::Scoper::new(
            "cluster",
            "local",
            super::super::ScopeOp::Equal,
            super::super::Policy::Keep,
        );
        let got = scoper.scope("up >/ fill(0) count_values == 1h").unwrap();
        assert_eq!(
            got.text,
            r#"up{cluster="local"} >/ fill(0) count_values{cluster="local"} == 1h"#
        );
    }

    #[test]
    fn placeholders_avoid_the_text_and_keywords() {
        assert_eq!(placeholder("or", "x", &[]).as_deref(), Some("o0"));
        assert_eq!(placeholder("or", "o0 o1", &[]).as_deref(), Some("o2"));
        let p = placeholder("anchored", "anchore0", &[]).unwrap();
        assert_eq!(p.len(), 8);
        assert_ne!(p, "anchore0");
        // `on` is a keyword: never a placeholder for `or`.
        let all_digits = "o0 o1 o2 o3 o4 o5 o6 o7 o8 o9 oa ob oc od oe of og oh oi oj ok ol om";
        assert_eq!(placeholder("or", all_digits, &[]).as_deref(), Some("oo"));
    }
}
