//! Scoping PromQL: add a label matcher to every vector selector of an expression.
//!
//! The expression is parsed with `promql-parser`, through `dialect`, which makes what
//! Prometheus 2.x and 3.x accept and the crate does not readable for it; the matchers are then
//! spliced into the original text at the selectors' byte positions (found with the crate's
//! lexer), so the user's formatting and `#` comments survive. The spliced text is parsed again
//! and its AST must equal the AST with the matchers injected; only if that check fails is the
//! printed AST used instead (never for syntax the AST cannot hold), and it must pass the same
//! check. An expression is never returned unverified.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::token::{
    T_BY, T_COMMA, T_EQL, T_EQL_REGEX, T_GROUP_LEFT, T_GROUP_RIGHT, T_IDENTIFIER, T_IGNORING,
    T_LEFT_BRACE, T_LEFT_BRACKET, T_LEFT_PAREN, T_LOR, T_METRIC_IDENTIFIER, T_NEQ, T_NEQ_REGEX,
    T_ON, T_RIGHT_BRACE, T_RIGHT_BRACKET, T_RIGHT_PAREN, T_STRING, T_WITHOUT, TokenType,
};
use promql_parser::parser::{Expr, VectorSelector};

mod dialect;

use dialect::Source;
pub use dialect::Token;

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
    /// `line:column: why`, the position in the expression as promtool gives it. When the crate
    /// lacks something Prometheus accepts, `why` says so.
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

/// Parse PromQL as Prometheus 2.x and 3.x write it (see `dialect`), with the user's names.
pub fn parse(expr: &str) -> Result<Expr, ScopeError> {
    Source::new(expr)?.parse()
}

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

impl Scoper {
    pub fn new(label: &str, value: &str, op: ScopeOp, policy: Policy) -> Scoper {
        dialect::register_prometheus2_functions();
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
        let source = Source::new(expr)?;
        if let Some(scoped) = self.scope_without_regexes(expr, &source)? {
            return Ok(scoped);
        }
        self.scope_with_full_parse(expr, &source)
    }

    /// The fast path. promql-parser compiles a regex for every `=~`/`!~` matcher it parses,
    /// which costs several times the parse itself. The structure of an expression does not
    /// depend on which matchers are regexes, so this path parses a view of the text with
    /// `=~` written `= ` and `!~` written `!=` (same length, same byte positions), takes the
    /// operators from the lexer, and checks the patterns' syntax with regex-syntax. Ok(None)
    /// sends anything unusual (and every error, for the parser's own message) to the full path.
    fn scope_without_regexes(
        &self,
        expr: &str,
        source: &Source<'_>,
    ) -> Result<Option<Scoped>, ScopeError> {
        let text: &str = &source.text;
        let tokens = &source.view.tokens;
        let Some(selectors) = lex_selectors(text, tokens) else {
            return Ok(None);
        };
        if !regexes_are_valid(text, &selectors) {
            return Ok(None);
        }
        let Ok(mut expected) = parse_regex_free(source) else {
            return Ok(None);
        };
        let mut actions = Vec::with_capacity(selectors.len());
        let mut kept = Vec::new();
        let mut unsure = false;
        let mut failure = None;
        let mut index = 0;
        visit_selectors_mut(&mut expected, &mut |vs| {
            let Some(lexed) = selectors.get(index) else {
                unsure = true;
                return;
            };
            index += 1;
            if unsure || failure.is_some() {
                return;
            }
            match self.decide_lexed(vs, lexed, text) {
                Ok(Some(action)) => {
                    if let Action::Keep(text) = &action {
                        kept.push(text.clone());
                    }
                    // In the regex-free view our matcher reads as an equality.
                    self.apply_with(vs, &action, MatchOp::Equal);
                    actions.push(action);
                }
                Ok(None) => unsure = true,
                Err(e) => failure = Some(e),
            }
        });
        if unsure || index != selectors.len() {
            return Ok(None);
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let scoped = count_scoped(&actions);
        if scoped == 0 {
            return Ok(Some(Scoped {
                text: expr.to_string(),
                scoped: 0,
                kept,
                reprinted: false,
            }));
        }
        normalize(&mut expected);
        let Some(spliced) = self.splice(text, &selectors, &actions) else {
            return Ok(None);
        };
        let verified = Source::new(&spliced).is_ok_and(|spliced| {
            parse_regex_free(&spliced).is_ok_and(|mut got| {
                normalize(&mut got);
                got == expected
            })
        });
        Ok(verified.then_some(Scoped {
            text: spliced,
            scoped,
            kept,
            reprinted: false,
        }))
    }

    /// Like [`Scoper::decide`], with the operators of the label's matchers taken from the
    /// lexer (the AST of the regex-free view shows them as `=`/`!=`). None: not sure.
    fn decide_lexed(
        &self,
        vs: &VectorSelector,
        lexed: &LexedSelector,
        text: &str,
    ) -> Result<Option<Action>, ScopeError> {
        if !vs.matchers.or_matchers.is_empty() {
            return Ok(None);
        }
        let in_ast: Vec<&Matcher> = vs
            .matchers
            .matchers
            .iter()
            .filter(|m| m.name == self.label)
            .collect();
        let in_text: Vec<&LexedMatcher> = lexed
            .braces
            .iter()
            .flat_map(|b| &b.matchers)
            .filter(|m| m.label == self.label)
            .collect();
        if in_ast.len() != in_text.len() {
            return Ok(None);
        }
        if in_ast.is_empty() {
            return Ok(Some(Action::Add));
        }
        let ours = in_ast.iter().zip(&in_text).any(|(m, l)| {
            m.value == self.value
                && match self.op {
                    ScopeOp::Equal => m.op == MatchOp::Equal && !l.regex,
                    ScopeOp::Regex => m.op == MatchOp::Equal && l.regex,
                }
        });
        if ours {
            return Ok(Some(Action::Present));
        }
        let written = || {
            in_text
                .iter()
                .map(|m| &text[m.start..m.end])
                .collect::<Vec<_>>()
                .join(",")
        };
        match self.policy {
            Policy::Keep => Ok(Some(Action::Keep(written()))),
            Policy::Override => Ok(Some(Action::Override)),
            Policy::Error => Err(ScopeError::ExistingMatcher {
                selector: text[lexed.start..lexed.end].to_string(),
                label: self.label.clone(),
            }),
        }
    }

    /// The full path: parse with regexes and decide on the exact AST; if splicing cannot be
    /// verified, print the AST (and verify that).
    fn scope_with_full_parse(&self, expr: &str, source: &Source<'_>) -> Result<Scoped, ScopeError> {
        let text: &str = &source.text;
        let tokens = &source.view.tokens;
        let original = source.parse()?;

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
        let scoped = count_scoped(&actions);
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

        if let Some(selectors) = lex_selectors(text, tokens)
            && let Some(spliced) = self.splice(text, &selectors, &actions)
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
        // A lossy view's AST lacks what was blanked (modifiers, duration expressions).
        if !source.view.lossy && parses_to(&printed, &expected) {
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
        let op = match self.matcher().op {
            MatchOp::Re(re) => MatchOp::Re(re),
            _ => MatchOp::Equal,
        };
        self.apply_with(vs, action, op);
    }

    /// Apply `action` with our matcher written with `op`.
    fn apply_with(&self, vs: &mut VectorSelector, action: &Action, op: MatchOp) {
        let ours = Matcher {
            op,
            name: self.label.clone(),
            value: self.value.clone(),
        };
        match action {
            Action::Add => vs.matchers.matchers.push(ours),
            Action::Override => {
                for m in vs.matchers.matchers.iter_mut() {
                    if m.name == self.label {
                        *m = ours.clone();
                    }
                }
            }
            Action::Present | Action::Keep(_) => {}
        }
    }

    /// Splice the matcher into `text` for every selector whose action changes it.
    fn splice(
        &self,
        text: &str,
        selectors: &[LexedSelector],
        actions: &[Action],
    ) -> Option<String> {
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
    Source::new(text)
        .and_then(|source| source.parse())
        .is_ok_and(|mut got| {
            normalize(&mut got);
            got == *expected
        })
}

/// Parse the view of `source` with its regex matchers written as equalities (see
/// [`regex_free`]); the crate's message on failure.
fn parse_regex_free(source: &Source<'_>) -> Result<Expr, String> {
    let view = &source.view;
    view.parse_text(&regex_free(source.view_text(), &view.tokens))
}

/// Make ASTs comparable: matcher order is not significant.
fn normalize(expr: &mut Expr) {
    fn op_rank(op: &MatchOp) -> u8 {
        match op {
            MatchOp::Equal => 0,
            MatchOp::NotEqual => 1,
            MatchOp::Re(_) => 2,
            MatchOp::NotRe(_) => 3,
        }
    }
    visit_selectors_mut(expr, &mut |vs| {
        vs.matchers.matchers.sort_by(|a, b| {
            (&a.name, op_rank(&a.op), &a.value).cmp(&(&b.name, op_rank(&b.op), &b.value))
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

/// Every node, parents before children.
pub fn for_each_node(expr: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(expr);
    match expr {
        Expr::Aggregate(agg) => {
            if let Some(param) = &agg.param {
                for_each_node(param, f);
            }
            for_each_node(&agg.expr, f);
        }
        Expr::Unary(u) => for_each_node(&u.expr, f),
        Expr::Binary(b) => {
            for_each_node(&b.lhs, f);
            for_each_node(&b.rhs, f);
        }
        Expr::Paren(p) => for_each_node(&p.expr, f),
        Expr::Subquery(s) => for_each_node(&s.expr, f),
        Expr::Call(call) => {
            for arg in &call.args.args {
                for_each_node(arg, f);
            }
        }
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

/// Every node, mutably, parents before children.
pub fn for_each_node_mut(expr: &mut Expr, f: &mut dyn FnMut(&mut Expr)) {
    f(expr);
    match expr {
        Expr::Aggregate(agg) => {
            if let Some(param) = agg.param.as_deref_mut() {
                for_each_node_mut(param, f);
            }
            for_each_node_mut(&mut agg.expr, f);
        }
        Expr::Unary(u) => for_each_node_mut(&mut u.expr, f),
        Expr::Binary(b) => {
            for_each_node_mut(&mut b.lhs, f);
            for_each_node_mut(&mut b.rhs, f);
        }
        Expr::Paren(p) => for_each_node_mut(&mut p.expr, f),
        Expr::Subquery(s) => for_each_node_mut(&mut s.expr, f),
        Expr::Call(call) => {
            for arg in call.args.args.iter_mut() {
                for_each_node_mut(arg, f);
            }
        }
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

/// `text` with `=~` written `= ` and `!~` written `!=`: same length, no regexes to compile.
fn regex_free(text: &str, tokens: &[Token]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(id, start, end) in tokens {
        if end == start + 2 {
            match id {
                T_EQL_REGEX => bytes[start + 1] = b' ',
                T_NEQ_REGEX => bytes[start + 1] = b'=',
                _ => {}
            }
        }
    }
    // Only ASCII bytes of two ASCII tokens changed.
    String::from_utf8(bytes).expect("replacing ASCII with ASCII keeps UTF-8")
}

/// Every regex matcher's pattern is valid RE2-style syntax (what the parser would check by
/// compiling it). False also when a value cannot be unquoted: the full path decides then.
fn regexes_are_valid(text: &str, selectors: &[LexedSelector]) -> bool {
    // Rules repeat their patterns (`verb=~"LIST|GET"` in every selector): check each once.
    let mut checked = std::collections::HashSet::new();
    selectors
        .iter()
        .flat_map(|s| s.braces.iter().flat_map(|b| &b.matchers))
        .filter(|m| m.regex)
        .all(|m| {
            let literal = &text[m.value.0..m.value.1];
            !checked.insert(literal)
                || unquote(literal).is_some_and(|pattern| {
                    regex_syntax::Parser::new()
                        .parse(&format!("^(?:{pattern})$"))
                        .is_ok()
                })
        })
}

/// A PromQL string literal's value (Go's `strconv.Unquote` rules).
pub(crate) fn unquote(literal: &str) -> Option<String> {
    let quote = literal.chars().next()?;
    let inner = literal.strip_prefix(quote)?.strip_suffix(quote)?;
    if quote == '`' {
        return Some(inner.to_string());
    }
    if quote != '"' && quote != '\'' {
        return None;
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escaped = match chars.next()? {
            'a' => '\u{7}',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\u{b}',
            c @ ('\\' | '\'' | '"') => c,
            'x' => hex_char(&mut chars, 2)?,
            'u' => hex_char(&mut chars, 4)?,
            'U' => hex_char(&mut chars, 8)?,
            d @ '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let code = u32::from_str_radix(&format!("{d}{rest}"), 8).ok()?;
                char::from_u32(code).filter(|_| code < 256)?
            }
            _ => return None,
        };
        out.push(escaped);
    }
    Some(out)
}

fn hex_char(chars: &mut std::str::Chars<'_>, digits: usize) -> Option<char> {
    let hex: String = chars.by_ref().take(digits).collect();
    if hex.len() != digits {
        return None;
    }
    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
}

/// Selectors that get the matcher.
fn count_scoped(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Add | Action::Override))
        .count()
}

/// A selector's position in the text.
#[derive(Debug)]
struct LexedSelector {
    start: usize,
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
    /// `=~` or `!~`.
    regex: bool,
    start: usize,
    end: usize,
    /// The value's string literal, quotes included.
    value: (usize, usize),
}

/// Find vector selectors in source order: an identifier not followed by `(` (that is a
/// function call), or a `{...}` block, outside `by (...)`-style label lists. None when the
/// tokens do not have the expected shape; the caller then takes a slower, safer path.
fn lex_selectors(text: &str, tokens: &[Token]) -> Option<Vec<LexedSelector>> {
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
                    let (braces, after) = lex_braces(text, tokens, i + 1)?;
                    out.push(LexedSelector {
                        start,
                        end: braces.close + 1,
                        braces: Some(braces),
                    });
                    i = after;
                } else {
                    out.push(LexedSelector {
                        start,
                        end,
                        braces: None,
                    });
                    i += 1;
                }
            }
            T_LEFT_BRACE => {
                let (braces, after) = lex_braces(text, tokens, i)?;
                out.push(LexedSelector {
                    start,
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
                    regex: false,
                    start,
                    end,
                    value: (start, end),
                });
                needs_comma = true;
                i += 1;
            }
            _ => {
                // label op "value"; the label may be quoted (Prometheus 3: `"label.name"="v"`).
                let (op, _, _) = *tokens.get(i + 1)?;
                let (value_id, value_start, value_end) = *tokens.get(i + 2)?;
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
                    regex: op == T_EQL_REGEX || op == T_NEQ_REGEX,
                    start,
                    end: value_end,
                    value: (value_start, value_end),
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
fn check_nesting(tokens: &[Token]) -> Result<(), ScopeError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn both_paths(scoper: &Scoper, expr: &str) -> (Option<Scoped>, Result<Scoped, ScopeError>) {
        let source = Source::new(expr).unwrap();
        let fast = scoper.scope_without_regexes(expr, &source).unwrap();
        let full = scoper.scope_with_full_parse(expr, &source);
        (fast, full)
    }

    /// The regex-free path gives exactly what the full parse gives, on every corpus expression
    /// and for every policy, and it is the path taken.
    #[test]
    fn fast_path_agrees_with_full_parse_on_the_corpus() {
        let corpus = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/rules/all_exprs.txt"
        ))
        .unwrap();
        let scopers = [
            Scoper::new("cluster", "local", ScopeOp::Equal, Policy::Keep),
            Scoper::new("job", "local", ScopeOp::Equal, Policy::Override),
            Scoper::new("namespace", "$ns", ScopeOp::Regex, Policy::Keep),
        ];
        for scoper in &scopers {
            for expr in corpus.split("\n---\n") {
                let (fast, full) = both_paths(scoper, expr);
                let fast = fast.unwrap_or_else(|| panic!("fast path gave up on {expr}"));
                assert_eq!(fast, full.unwrap(), "{expr}");
            }
        }
    }

    #[test]
    fn fast_path_reads_operators_from_the_text() {
        let keep = Scoper::new("cluster", "local", ScopeOp::Equal, Policy::Keep);
        let regex = Scoper::new("cluster", "local", ScopeOp::Regex, Policy::Keep);
        let cases = [
            (&keep, r#"x{cluster=~"local"}"#),
            (&keep, r#"x{cluster!~"local"}"#),
            (&keep, r#"x{cluster!="local"}"#),
            (&regex, r#"x{cluster="local"}"#),
            (&regex, r#"x{cluster=~"local"}"#),
            (&keep, r#"x{a=~"(unclosed"}"#),
        ];
        for (scoper, expr) in cases {
            let (fast, full) = both_paths(scoper, expr);
            match (fast, full) {
                (Some(fast), Ok(full)) => assert_eq!(fast, full, "{expr}"),
                (None, Err(_)) => {}
                (fast, full) => panic!("{expr}: fast {fast:?}, full {full:?}"),
            }
        }
    }

    #[test]
    fn unquote_follows_go() {
        let cases = [
            (r#""a\"b""#, Some("a\"b")),
            (r"'a\'b'", Some("a'b")),
            (r"`a\d`", Some(r"a\d")),
            (r#""\x41\u00e9\101\n""#, Some("AéA\n")),
            (r#""\q""#, None),
            (r#""abc"#, None),
        ];
        for (literal, want) in cases {
            assert_eq!(unquote(literal).as_deref(), want, "{literal}");
        }
    }

    #[test]
    fn regex_free_keeps_positions() {
        let text = r#"x{a=~"1",b!~"2",c="=~"}"#;
        let free = regex_free(text, &dialect::lex(text).unwrap());
        assert_eq!(free, r#"x{a= "1",b!="2",c="=~"}"#);
        assert_eq!(free.len(), text.len());
    }
}
