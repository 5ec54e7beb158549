//! The fast path: promfed's own parser (`syntax`) reads the expression with the byte span of
//! every selector and matcher, the matchers are spliced in at those spans, and the spliced
//! text, parsed again, must be the first AST with exactly those matchers added. Anything the
//! parser declines, and any failed check, goes to the full path.

use std::borrow::Cow;

use super::super::syntax::{
    self, ast::Braces, ast::MatchOp, ast::Matcher, ast::Selector, ast::Span,
};
use super::{Action, Policy, ScopeError, ScopeOp, Scoped, Scoper, decide_each};

impl Scoper {
    /// Scope `expr` on the fast path; Ok(None): the full path decides.
    pub(super) fn scope_fast<'s>(&'s self, expr: &'s str) -> Result<Option<Scoped>, ScopeError> {
        let Some(mut expected) = syntax::parse(expr) else {
            return Ok(None);
        };
        let mut edits: Vec<(usize, usize, Cow<'_, str>)> = Vec::new();
        let decided = decide_each(
            |each| expected.visit_selectors_mut(each),
            |selector| {
                let action = self.decide_fast(selector, expr)?;
                self.edit(selector, &action, &mut edits);
                self.apply_fast(selector, &action);
                Ok(action)
            },
        )?;
        if decided.scoped == 0 {
            return Ok(Some(decided.unchanged(expr)));
        }
        let Some(spliced) = splice(expr, &mut edits) else {
            return Ok(None);
        };
        let verified = syntax::parse(&spliced).is_some_and(|got| got == expected);
        Ok(verified.then_some(Scoped {
            text: spliced,
            scoped: decided.scoped,
            kept: decided.kept,
            reprinted: false,
            full_path: false,
        }))
    }

    fn decide_fast(&self, selector: &Selector<'_>, text: &str) -> Result<Action, ScopeError> {
        let on_label = || {
            selector
                .braces
                .iter()
                .flat_map(|b| &b.matchers)
                .filter(|m| m.name == self.label)
        };
        if on_label().next().is_none() {
            return Ok(Action::Add);
        }
        let ours = match self.op {
            ScopeOp::Equal => MatchOp::Equal,
            ScopeOp::Regex => MatchOp::Regex,
        };
        if on_label().any(|m| m.op == ours && m.value == self.value) {
            return Ok(Action::Present);
        }
        match self.policy {
            Policy::Keep => Ok(Action::Keep(
                on_label()
                    .map(|m| &text[m.span.start..m.span.end])
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            Policy::Override => Ok(Action::Override),
            Policy::Error => Err(ScopeError::ExistingMatcher {
                selector: text[selector.head.start..selector.head.end].to_string(),
                label: self.label.clone(),
            }),
        }
    }

    /// The text edits of `action`: (position, bytes removed, text inserted).
    fn edit<'t>(
        &'t self,
        selector: &Selector<'_>,
        action: &Action,
        edits: &mut Vec<(usize, usize, Cow<'t, str>)>,
    ) {
        let ours = Cow::Borrowed(self.matcher_text.as_str());
        match (action, &selector.braces) {
            (Action::Add, None) => edits.push((
                selector.head.end,
                0,
                Cow::Owned(format!("{{{}}}", self.matcher_text)),
            )),
            (Action::Add, Some(b)) => {
                let close = b.span.end - 1;
                if b.matchers.is_empty() || b.trailing_comma {
                    edits.push((close, 0, ours));
                } else {
                    edits.push((close, 0, Cow::Owned(format!(",{}", self.matcher_text))));
                }
            }
            (Action::Override, Some(b)) => {
                for m in b.matchers.iter().filter(|m| m.name == self.label) {
                    edits.push((m.span.start, m.span.end - m.span.start, ours.clone()));
                }
            }
            _ => {}
        }
    }

    /// The AST the spliced text must have: `action` applied to the selector.
    fn apply_fast<'a>(&'a self, selector: &mut Selector<'a>, action: &Action) {
        let ours = Matcher {
            name: &self.label,
            op: match self.op {
                ScopeOp::Equal => MatchOp::Equal,
                ScopeOp::Regex => MatchOp::Regex,
            },
            value: Cow::Borrowed(&self.value),
            span: Span::default(),
        };
        match action {
            Action::Add => match &mut selector.braces {
                Some(b) => {
                    b.matchers.push(ours);
                    b.trailing_comma = false;
                }
                None => {
                    selector.braces = Some(Braces {
                        matchers: vec![ours],
                        span: Span::default(),
                        trailing_comma: false,
                    })
                }
            },
            Action::Override => {
                for m in selector.braces.iter_mut().flat_map(|b| &mut b.matchers) {
                    if m.name == self.label {
                        *m = ours.clone();
                    }
                }
            }
            Action::Present | Action::Keep(_) => {}
        }
    }
}

/// `text` with the edits (position, bytes removed, text inserted) made, in one pass; None
/// if two overlap.
fn splice(text: &str, edits: &mut [(usize, usize, Cow<'_, str>)]) -> Option<String> {
    edits.sort_by_key(|e| e.0);
    let added: usize = edits.iter().map(|e| e.2.len()).sum();
    let mut out = String::with_capacity(text.len() + added);
    let mut at = 0;
    for (position, removed, insert) in edits.iter() {
        out.push_str(text.get(at..*position)?);
        out.push_str(insert);
        at = position + removed;
    }
    out.push_str(text.get(at..)?);
    Some(out)
}

/// For the tests: the fast path's answer, if it gives one.
#[cfg(test)]
pub(super) fn fast_only(scoper: &Scoper, expr: &str) -> Option<Scoped> {
    scoper.scope_fast(expr).ok().flatten()
}
