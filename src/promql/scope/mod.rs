//! Scoping PromQL: add a label matcher to every vector selector of an expression.
//!
//! The matchers are spliced into the original text at the selectors' byte positions, so the
//! user's formatting and `#` comments survive; the spliced text is parsed again and its AST
//! must equal the first AST with the matchers injected. An expression is never returned
//! unverified.
//!
//! `fast` does this with promfed's own parser (`syntax`). What that parser declines takes the
//! full path here: `promql-parser` through `dialect`, which makes what Prometheus 2.x and 3.x
//! accept and the crate does not readable for it, the selectors found with the crate's lexer;
//! only if the splice fails verification is the printed AST used instead (never for syntax
//! the AST cannot hold), and it must pass the same check.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};
use promql_parser::util::escape_string;

use super::ScopeError;
use super::dialect::Source;
use super::lex::{LexedSelector, lex_selectors};
use super::walk::visit_selectors_mut;

mod fast;

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
    /// True when promfed's own parser declined the expression and the full path scoped it
    /// (about ten times the work per step: the work budget counts it so).
    pub full_path: bool,
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

    /// Scope every vector selector of `expr`: on the fast path when promfed's own parser
    /// reads it, else on the full path.
    pub fn scope(&self, expr: &str) -> Result<Scoped, ScopeError> {
        if let Some(scoped) = self.scope_fast(expr)? {
            return Ok(scoped);
        }
        let scoped = self.scope_with_full_parse(expr, &Source::new(expr)?)?;
        Ok(Scoped {
            full_path: true,
            ..scoped
        })
    }

    /// The full path: parse with regexes and decide on the exact AST; if splicing cannot be
    /// verified, print the AST (and verify that).
    fn scope_with_full_parse(&self, expr: &str, source: &Source<'_>) -> Result<Scoped, ScopeError> {
        let text: &str = &source.text;
        let tokens = &source.view.tokens;
        let original = source.parse()?;

        // Decide per selector (in source order) and build the AST we expect.
        let mut expected = original.clone();
        let decided = decide_each(
            |each| visit_selectors_mut(&mut expected, each),
            |vs| {
                let action = self.decide(vs)?;
                self.apply(vs, &action);
                Ok(action)
            },
        )?;
        if decided.scoped == 0 {
            // Nothing to do: return the user's text untouched (even backtick strings).
            return Ok(decided.unchanged(expr));
        }
        let Decided {
            actions,
            kept,
            scoped,
        } = decided;
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
                full_path: false,
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
                full_path: false,
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
        let ours = self.matcher();
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

/// What was decided for each selector of an expression, in source order.
struct Decided {
    actions: Vec<Action>,
    /// The text of the kept matchers ([`Action::Keep`]).
    kept: Vec<String>,
    /// Selectors that get the matcher (added or overridden).
    scoped: usize,
}

impl Decided {
    /// The answer when no selector changes: the user's text as it is.
    fn unchanged(self, expr: &str) -> Scoped {
        Scoped {
            text: expr.to_string(),
            scoped: 0,
            kept: self.kept,
            reprinted: false,
            full_path: false,
        }
    }
}

/// Run `decide` on every selector `visit` reaches, in source order, stopping at the first
/// error. Both paths decide this way, each on its own AST.
fn decide_each<S: ?Sized>(
    visit: impl FnOnce(&mut dyn FnMut(&mut S)),
    mut decide: impl FnMut(&mut S) -> Result<Action, ScopeError>,
) -> Result<Decided, ScopeError> {
    let mut decided = Decided {
        actions: Vec::new(),
        kept: Vec::new(),
        scoped: 0,
    };
    let mut failure = None;
    visit(&mut |selector| {
        if failure.is_some() {
            return;
        }
        match decide(selector) {
            Ok(action) => {
                match &action {
                    Action::Keep(text) => decided.kept.push(text.clone()),
                    Action::Add | Action::Override => decided.scoped += 1,
                    Action::Present => {}
                }
                decided.actions.push(action);
            }
            Err(e) => failure = Some(e),
        }
    });
    failure.map_or(Ok(decided), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both_paths(scoper: &Scoper, expr: &str) -> (Option<Scoped>, Result<Scoped, ScopeError>) {
        let fast = fast::fast_only(scoper, expr);
        let full = scoper.scope_with_full_parse(expr, &Source::new(expr).unwrap());
        (fast, full)
    }

    /// The fast path gives exactly what the full parse gives, on every corpus expression and
    /// for every policy, and it is the path taken for all but a few.
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
            let mut declined = Vec::new();
            let mut total = 0;
            for expr in corpus.split("\n---\n") {
                total += 1;
                let (fast, full) = both_paths(scoper, expr);
                match fast {
                    Some(fast) => assert_eq!(fast, full.unwrap(), "{expr}"),
                    None => declined.push(expr),
                }
            }
            assert!(declined.len() * 100 <= total, "declined: {declined:#?}");
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
