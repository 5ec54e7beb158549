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
use promql_parser::parser::{Expr, VectorSelector};
use promql_parser::util::escape_string;

use super::ScopeError;
use super::dialect::Source;
use super::lex::{LexedMatcher, LexedSelector, lex_selectors, regex_free, unquote};
use super::walk::visit_selectors_mut;

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

impl Scoper {
    pub fn new(label: &str, value: &str, op: ScopeOp, policy: Policy) -> Scoper {
        super::dialect::register_prometheus2_functions();
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
                    plainly_valid(&pattern)
                        || regex_syntax::Parser::new()
                            .parse(&format!("^(?:{pattern})$"))
                            .is_ok()
                })
        })
}

/// A pattern of literal characters, `|` and `.`, with `*` and `+` only right after a `.`
/// (`LIST|GET`, `kube-.*`): valid in every regex syntax, no parser needed. Anything else is
/// parsed.
fn plainly_valid(pattern: &str) -> bool {
    let mut previous = None;
    pattern.chars().all(|c| {
        let ok = c.is_ascii_alphanumeric()
            || matches!(c, '_' | '-' | ':' | '/' | ',' | '=' | ' ' | '|' | '.')
            || (matches!(c, '*' | '+') && previous == Some('.'));
        previous = Some(c);
        ok
    })
}

/// Selectors that get the matcher.
fn count_scoped(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Add | Action::Override))
        .count()
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
    fn plain_patterns_are_valid_without_a_parse() {
        for pattern in ["", "LIST|GET", "kube-.*", ".+", "a.*b.+|c", "/api/v1:x,y=z"] {
            assert!(plainly_valid(pattern), "{pattern}");
            assert!(
                regex_syntax::Parser::new()
                    .parse(&format!("^(?:{pattern})$"))
                    .is_ok()
            );
        }
        for pattern in ["*", "a**", ".+*", "(a", "a{2}", "[a-z]", "a\\d", "a?", "é"] {
            assert!(!plainly_valid(pattern), "{pattern}");
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
}
