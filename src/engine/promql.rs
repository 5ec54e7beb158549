//! Scoping PromQL: add a label matcher to every vector selector of an expression.
//!
//! The expression is parsed with `promql-parser`; the matchers are then spliced into the
//! original text at the selectors' byte positions (found with the crate's lexer), so the
//! user's formatting and `#` comments survive. The spliced text is parsed again and its AST
//! must equal the AST with the matchers injected; only if that check fails is the printed AST
//! used instead, and it must pass the same check. An expression is never returned unverified.

use std::sync::Once;

use lrpar::{Lexeme, Lexer};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::token::{
    T_BY, T_GROUP_LEFT, T_GROUP_RIGHT, T_IDENTIFIER, T_IGNORING, T_LEFT_BRACE, T_LEFT_BRACKET,
    T_LEFT_PAREN, T_LOR, T_METRIC_IDENTIFIER, T_ON, T_RIGHT_BRACE, T_RIGHT_BRACKET, T_RIGHT_PAREN,
    T_WITHOUT, TokenId, TokenType,
};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, Function, VectorSelector};

/// Deepest bracket nesting of an expression; AST walks recurse.
const MAX_NESTING: usize = 256;
/// Most operators in one expression; each is a level of the AST.
const MAX_OPERATORS: usize = 1000;

/// What to do with a selector that already has a matcher on the label.
pub use crate::config::MatcherPolicy as Policy;

/// The matcher operator promfed adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeOp {
    /// `label="value"` (rules: local series only).
    Equal,
    /// `label=~"value"` (dashboards: `cluster=~"$cluster"`).
    Regex,
}

/// Adds `label op "value"` to every vector selector.
#[derive(Debug, Clone)]
pub struct Scoper {
    label: String,
    value: String,
    op: ScopeOp,
    policy: Policy,
    matcher_text: String,
}

/// A scoped expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scoped {
    /// The new expression text (identical to the input when nothing changed).
    pub text: String,
    /// Selectors that got the matcher (added or overridden).
    pub scoped: usize,
    /// Existing matchers on the label that were kept as written (`Policy::Keep`), as text.
    pub kept: Vec<String>,
    /// True when splicing failed verification and the printed AST was used.
    pub reprinted: bool,
}

/// Why an expression could not be scoped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("cannot parse PromQL: {0}")]
    Parse(String),
    #[error("selector {selector} already matches on {label:?} (matcherPolicy: error)")]
    ExistingMatcher { selector: String, label: String },
    #[error("label matchers joined by `or` are not supported: {0}")]
    OrMatchers(String),
    #[error(
        "expression nests deeper than {MAX_NESTING} brackets or has more than {MAX_OPERATORS} operators"
    )]
    TooDeep,
    #[error("internal error: scoped expression failed verification ({0}); please report it")]
    Verification(String),
}

static EXTRA_FUNCTIONS: Once = Once::new();

/// Functions Prometheus 2.x knows that the parser does not.
fn register_prometheus2_functions() {
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

/// Parse PromQL as Prometheus 2.x writes it: backtick strings may hold `\`, `holt_winters` exists.
pub fn parse(expr: &str) -> Result<Expr, ScopeError> {
    register_prometheus2_functions();
    let text = normalize_raw_strings(expr);
    check_nesting(&text)?;
    parser::parse(&text).map_err(ScopeError::Parse)
}

impl Scoper {
    pub fn new(label: &str, value: &str, op: ScopeOp, policy: Policy) -> Scoper {
        register_prometheus2_functions();
        let matcher_text = format!(
            "{label}{}\"{}\"",
            match op {
                ScopeOp::Equal => "=",
                ScopeOp::Regex => "=~",
            },
            escape_string(value)
        );
        Scoper {
            label: label.to_string(),
            value: value.to_string(),
            op,
            policy,
            matcher_text,
        }
    }

    /// Scope every vector selector of `expr`.
    pub fn scope(&self, expr: &str) -> Result<Scoped, ScopeError> {
        let text = normalize_raw_strings(expr);
        check_nesting(&text)?;
        let original = parser::parse(&text).map_err(ScopeError::Parse)?;

        // Decide per selector (in source order) and build the AST we expect.
        let mut expected = original.clone();
        let mut actions = Vec::new();
        let mut kept = Vec::new();
        let mut failure = None;
        visit_selectors_mut(&mut expected, &mut |vs| {
            if failure.is_some() {
                return;
            }
            match self.decide(vs) {
                Ok(action) => {
                    if let Action::Keep(text) = &action {
                        kept.push(text.clone());
                    }
                    self.apply(vs, &action);
                    actions.push(action);
                }
                Err(e) => failure = Some(e),
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        let scoped = actions
            .iter()
            .filter(|a| matches!(a, Action::Add | Action::Override))
            .count();
        if scoped == 0 {
            // Nothing to do: return the user's text untouched (even backtick strings).
            return Ok(Scoped {
                text: expr.to_string(),
                scoped: 0,
                kept,
                reprinted: false,
            });
        }
        normalize(&mut expected);

        if let Some(spliced) = self.splice(&text, &actions)
            && parses_to(&spliced, &expected)
        {
            return Ok(Scoped {
                text: spliced,
                scoped,
                kept,
                reprinted: false,
            });
        }
        let printed = expected.to_string();
        if parses_to(&printed, &expected) {
            return Ok(Scoped {
                text: printed,
                scoped,
                kept,
                reprinted: true,
            });
        }
        Err(ScopeError::Verification(format!(
            "neither the spliced nor the printed expression parses back to the scoped AST: {printed}"
        )))
    }

    fn decide(&self, vs: &VectorSelector) -> Result<Action, ScopeError> {
        if !vs.matchers.or_matchers.is_empty() {
            return Err(ScopeError::OrMatchers(vs.to_string()));
        }
        let existing: Vec<&Matcher> = vs
            .matchers
            .matchers
            .iter()
            .filter(|m| m.name == self.label)
            .collect();
        if existing.is_empty() {
            return Ok(Action::Add);
        }
        if existing.iter().any(|m| self.is_ours(m)) {
            return Ok(Action::Present);
        }
        match self.policy {
            Policy::Keep => Ok(Action::Keep(
                existing
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            Policy::Override => Ok(Action::Override),
            Policy::Error => Err(ScopeError::ExistingMatcher {
                selector: vs.to_string(),
                label: self.label.clone(),
            }),
        }
    }

    fn is_ours(&self, m: &Matcher) -> bool {
        m.value == self.value
            && matches!(
                (&m.op, self.op),
                (MatchOp::Equal, ScopeOp::Equal) | (MatchOp::Re(_), ScopeOp::Regex)
            )
    }

    fn matcher(&self) -> Matcher {
        match self.op {
            ScopeOp::Equal => Matcher::new(MatchOp::Equal, &self.label, &self.value),
            // The pattern came from our own config or dashboard variable; the parser
            // re-validates it when the spliced text is parsed.
            ScopeOp::Regex => {
                let re = regex_for(&self.value);
                Matcher::new(MatchOp::Re(re), &self.label, &self.value)
            }
        }
    }

    fn apply(&self, vs: &mut VectorSelector, action: &Action) {
        match action {
            Action::Add => vs.matchers.matchers.push(self.matcher()),
            Action::Override => {
                for m in vs.matchers.matchers.iter_mut() {
                    if m.name == self.label {
                        *m = self.matcher();
                    }
                }
            }
            Action::Present | Action::Keep(_) => {}
        }
    }

    /// Splice the matcher into `text` for every selector whose action changes it.
    fn splice(&self, text: &str, actions: &[Action]) -> Option<String> {
        let selectors = lex_selectors(text)?;
        if selectors.len() != actions.len() {
            return None;
        }
        // (position, bytes to remove, text to insert), applied back to front.
        let mut edits: Vec<(usize, usize, String)> = Vec::new();
        for (sel, action) in selectors.iter().zip(actions) {
            match action {
                Action::Add => match &sel.braces {
                    None => edits.push((sel.end, 0, format!("{{{}}}", self.matcher_text))),
                    Some(b) => {
                        let sep = if b.needs_comma { "," } else { "" };
                        edits.push((b.close, 0, format!("{sep}{}", self.matcher_text)));
                    }
                },
                Action::Override => {
                    let b = sel.braces.as_ref()?;
                    let mut found = false;
                    for m in &b.matchers {
                        if m.label == self.label {
                            edits.push((m.start, m.end - m.start, self.matcher_text.clone()));
                            found = true;
                        }
                    }
                    if !found {
                        return None;
                    }
                }
                Action::Present | Action::Keep(_) => {}
            }
        }
        edits.sort_by_key(|e| std::cmp::Reverse(e.0));
        let mut out = text.to_string();
        for (pos, len, insert) in edits {
            out.replace_range(pos..pos + len, &insert);
        }
        Some(out)
    }
}

/// What happens to one selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Add the matcher.
    Add,
    /// The exact matcher is already there.
    Present,
    /// Another matcher on the label is kept (its text).
    Keep(String),
    /// Replace the existing matcher(s) on the label.
    Override,
}

fn regex_for(pattern: &str) -> regex::Regex {
    // Prometheus anchors label regexes; the parser stores them the same way.
    regex::Regex::new(&format!("^(?:{pattern})$"))
        .unwrap_or_else(|_| regex::Regex::new("^$").expect("literal regex compiles"))
}

/// Parse `text` and compare with `expected` (both normalized).
fn parses_to(text: &str, expected: &Expr) -> bool {
    if check_nesting(text).is_err() {
        return false;
    }
    match parser::parse(text) {
        Ok(mut got) => {
            normalize(&mut got);
            got == *expected
        }
        Err(_) => false,
    }
}

/// Make ASTs comparable: matcher order is not significant.
fn normalize(expr: &mut Expr) {
    visit_selectors_mut(expr, &mut |vs| {
        vs.matchers.matchers.sort_by(|a, b| {
            (&a.name, a.op.to_string(), &a.value).cmp(&(&b.name, b.op.to_string(), &b.value))
        });
    });
}

/// Every vector selector in source order: aggregation parameters before the aggregated
/// expression, function arguments in order, left operand before right.
pub fn visit_selectors_mut(expr: &mut Expr, f: &mut dyn FnMut(&mut VectorSelector)) {
    match expr {
        Expr::Aggregate(agg) => {
            if let Some(param) = agg.param.as_deref_mut() {
                visit_selectors_mut(param, f);
            }
            visit_selectors_mut(&mut agg.expr, f);
        }
        Expr::Unary(unary) => visit_selectors_mut(&mut unary.expr, f),
        Expr::Binary(binary) => {
            visit_selectors_mut(&mut binary.lhs, f);
            visit_selectors_mut(&mut binary.rhs, f);
        }
        Expr::Paren(paren) => visit_selectors_mut(&mut paren.expr, f),
        Expr::Subquery(sub) => visit_selectors_mut(&mut sub.expr, f),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
        Expr::VectorSelector(vs) => f(vs),
        Expr::MatrixSelector(ms) => f(&mut ms.vs),
        Expr::Call(call) => {
            for arg in call.args.args.iter_mut() {
                visit_selectors_mut(arg, f);
            }
        }
        // Extensions are not produced by the parser for PromQL text.
        Expr::Extension(_) => {}
    }
}

/// Read-only walk, same order as [`visit_selectors_mut`].
pub fn selectors(expr: &Expr) -> Vec<VectorSelector> {
    let mut copy = expr.clone();
    let mut out = Vec::new();
    visit_selectors_mut(&mut copy, &mut |vs| out.push(vs.clone()));
    out
}

/// A selector's position in the text.
#[derive(Debug)]
struct LexedSelector {
    end: usize,
    braces: Option<Braces>,
}

#[derive(Debug)]
struct Braces {
    /// Byte offset of `}`.
    close: usize,
    /// Matchers present and the last one not followed by a comma.
    needs_comma: bool,
    matchers: Vec<LexedMatcher>,
}

#[derive(Debug)]
struct LexedMatcher {
    label: String,
    start: usize,
    end: usize,
}

/// Find vector selectors in source order with the crate's lexer: an identifier not followed
/// by `(` (that is a function call), or a `{...}` block, outside `by (...)`-style label lists.
/// Returns None when the text cannot be lexed; the caller then falls back to printing.
fn lex_selectors(text: &str) -> Option<Vec<LexedSelector>> {
    let lexer = parser::lexer(text).ok()?;
    let tokens: Vec<(TokenId, usize, usize)> = lexer
        .iter()
        .filter_map(|l| l.ok())
        .map(|l| (l.tok_id(), l.span().start(), l.span().end()))
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let (id, start, end) = tokens[i];
        let next = tokens.get(i + 1).map(|t| t.0);
        match id {
            T_BY | T_WITHOUT | T_ON | T_IGNORING | T_GROUP_LEFT | T_GROUP_RIGHT
                if next == Some(T_LEFT_PAREN) =>
            {
                // A label list: skip to its `)`.
                i += 2;
                while i < tokens.len() && tokens[i].0 != T_RIGHT_PAREN {
                    i += 1;
                }
                i += 1;
            }
            T_IDENTIFIER | T_METRIC_IDENTIFIER if next == Some(T_LEFT_PAREN) => i += 1,
            T_IDENTIFIER | T_METRIC_IDENTIFIER => {
                if next == Some(T_LEFT_BRACE) {
                    let (braces, after) = lex_braces(text, &tokens, i + 1)?;
                    out.push(LexedSelector {
                        end: braces.close + 1,
                        braces: Some(braces),
                    });
                    i = after;
                } else {
                    out.push(LexedSelector { end, braces: None });
                    i += 1;
                }
                let _ = start;
            }
            T_LEFT_BRACE => {
                let (braces, after) = lex_braces(text, &tokens, i)?;
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

/// Tokens from `{` at `open` to the matching `}`; returns the braces and the index after `}`.
fn lex_braces(
    text: &str,
    tokens: &[(TokenId, usize, usize)],
    open: usize,
) -> Option<(Braces, usize)> {
    let mut i = open + 1;
    let mut matchers = Vec::new();
    let mut needs_comma = false;
    while i < tokens.len() {
        let (id, start, _) = tokens[i];
        if id == T_RIGHT_BRACE {
            return Some((
                Braces {
                    close: start,
                    needs_comma,
                    matchers,
                },
                i + 1,
            ));
        }
        if id == T_LOR {
            return None;
        }
        if id == promql_parser::parser::token::T_COMMA {
            needs_comma = false;
            i += 1;
            continue;
        }
        // label op value
        let (_, op_start, _) = *tokens.get(i + 1)?;
        let (_, _, value_end) = *tokens.get(i + 2)?;
        let _ = op_start;
        let label = text.get(start..tokens[i].2)?.trim_matches('"').to_string();
        matchers.push(LexedMatcher {
            label,
            start,
            end: value_end,
        });
        needs_comma = true;
        i += 3;
    }
    None
}

/// PromQL backtick strings have no escapes, but the lexer treats `\` in them as one. Rewrite
/// each backtick string that holds a `\` as the equivalent double-quoted string.
fn normalize_raw_strings(expr: &str) -> std::borrow::Cow<'_, str> {
    if !expr.contains('`') {
        return std::borrow::Cow::Borrowed(expr);
    }
    let mut out = String::with_capacity(expr.len() + 8);
    let mut chars = expr.char_indices().peekable();
    let mut changed = false;
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
                let mut closed = false;
                for (_, d) in chars.by_ref() {
                    if d == '`' {
                        closed = true;
                        break;
                    }
                    raw.push(d);
                }
                if closed && raw.contains('\\') {
                    out.push('"');
                    out.push_str(&escape_string(&raw));
                    out.push('"');
                    changed = true;
                } else {
                    out.push('`');
                    out.push_str(&raw);
                    if closed {
                        out.push('`');
                    }
                }
            }
            _ => out.push(c),
        }
    }
    if changed {
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(expr)
    }
}

/// Refuse expressions the recursive parts (AST walks, comparison, drop) could choke on:
/// brackets nested deeper than [`MAX_NESTING`] or more than [`MAX_OPERATORS`] operators
/// (a long `a + a + ...` chain is a deep tree too). Real rules stay far below both.
fn check_nesting(text: &str) -> Result<(), ScopeError> {
    let lexer = parser::lexer(text).map_err(ScopeError::Parse)?;
    let mut depth = 0usize;
    let mut operators = 0usize;
    for lexeme in lexer.iter().filter_map(|l| l.ok()) {
        let id = lexeme.tok_id();
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

/// Escape a string for a double-quoted PromQL string literal.
pub fn escape_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}
