//! One PromQL expression of a dashboard: template tokens protected, scoped, grouped by the
//! cluster label, and put back.

use super::Options;
use super::template::protect;
use crate::promql::labels::{add_grouping, keeps_label};
use crate::promql::{Policy, ScopeOp, Scoper, parse};

pub(super) struct Rewriter {
    pub(super) label: String,
    pub(super) variable: String,
    /// `cluster=~"$cluster"`
    pub(super) matcher: String,
    pub(super) scoper: Scoper,
}

/// One rewritten expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rewritten {
    pub(super) text: String,
    pub(super) scoped: usize,
    pub(super) present: usize,
    /// Other matchers on the label, as written (template text restored).
    pub(super) kept: Vec<String>,
    /// The result series carry the label.
    pub(super) keeps_label: bool,
    /// The label was added to a `by`/`on` list.
    pub(super) grouped: bool,
}

impl Rewriter {
    pub(super) fn new(options: &Options) -> Rewriter {
        Rewriter {
            label: options.label.clone(),
            variable: options.variable.clone(),
            matcher: options.matcher(),
            scoper: Scoper::new(
                &options.label,
                &format!("${}", options.variable),
                ScopeOp::Regex,
                Policy::Keep,
            ),
        }
    }

    pub(super) fn rewrite(&self, expr: &str, group: bool) -> Result<Rewritten, String> {
        let protected = protect(expr).map_err(|e| e.to_string())?;
        let scoped = self
            .scoper
            .scope(&protected.text)
            .map_err(|e| protected.restore_lenient(&e.to_string()))?;
        let mut text = scoped.text;
        let mut grouped = false;
        if group && let Some(g) = add_grouping(&text, &self.label) {
            grouped = g != text;
            text = g;
        }
        let keeps_label = parse(&text).is_ok_and(|e| keeps_label(&e, &self.label));
        let restored = protected.restore(&text)?;
        let mut kept = Vec::new();
        let mut present = 0;
        for k in &scoped.kept {
            let k = protected.restore_lenient(k);
            if k == self.matcher {
                present += 1;
            } else {
                kept.push(k);
            }
        }
        Ok(Rewritten {
            text: restored,
            scoped: scoped.scoped,
            present,
            kept,
            keeps_label,
            grouped,
        })
    }
}
