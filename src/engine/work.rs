//! What one rewrite may spend, and when it must stop.
//!
//! The engine stays pure and synchronous: the caller hands [`Engine::rewrite_within`] a
//! [`Work`] that counts what the rewrite spends against [`WorkLimits`] (all data keys of the
//! review together) and, at coarse points (every data key, every rule), checks a deadline
//! and a cancel flag the caller may set from another thread. Over a limit, the rewrite ends
//! in an error naming it (a denial, the same for the same data); past the deadline or
//! cancelled, in an error too, and [`Work::stopped`] says so (an answer not to be cached).
//!
//! [`Engine::rewrite_within`]: super::Engine::rewrite_within

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::yaml::{Expanded, Limits, Over};

/// YAML nodes per review, all data keys together, an alias counted by what it expands to.
/// A real 1 MiB ConfigMap (every corpus rule) is about 24,000.
pub const NODES: usize = 250_000;
/// Bytes of YAML scalars per review, an alias counted by the length of what it expands to
/// (one alias of a long string is that string again): twice the largest request.
pub const YAML_BYTES: usize = 6 * 1024 * 1024;
/// PromQL work units per review (see [`promql_units`]; each distinct expression counted
/// once). The 4,303 distinct expressions of a corpus of real rule sets (kube-prometheus, the
/// mixins) come to 17,450 together. What a unit costs depends on the expression's shape: a
/// microsecond or two for real ones, up to 75 for a chain of 1,000 additions (release
/// build), so the most expensive review within the budget costs about 1.5 s.
pub const PROMQL_UNITS: usize = 20_000;
/// Rewritten data may be at most this many times the input data ...
pub const OUTPUT_FACTOR: usize = 2;
/// ... plus this (what the config adds: federation jobs, the alert group).
pub const OUTPUT_EXTRA_BYTES: usize = 1024 * 1024;

/// What one review's rewrite may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkLimits {
    pub nodes: usize,
    pub yaml_bytes: usize,
    pub promql_units: usize,
    pub output_bytes: usize,
}

impl WorkLimits {
    /// The limits for rewriting `data`: the fixed ones, and output at most
    /// [`OUTPUT_FACTOR`] times the data plus [`OUTPUT_EXTRA_BYTES`].
    pub fn for_data(data: &[(String, String)]) -> WorkLimits {
        WorkLimits::for_input(data.iter().map(|(k, v)| k.len() + v.len()).sum())
    }

    /// The limits for rewriting an object's content (see [`crate::object`]).
    pub fn for_content(content: &crate::object::Content) -> WorkLimits {
        WorkLimits::for_input(content.input_bytes())
    }

    fn for_input(input: usize) -> WorkLimits {
        WorkLimits {
            nodes: NODES,
            yaml_bytes: YAML_BYTES,
            promql_units: PROMQL_UNITS,
            output_bytes: input
                .saturating_mul(OUTPUT_FACTOR)
                .saturating_add(OUTPUT_EXTRA_BYTES),
        }
    }
}

/// What a rewrite spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spent {
    pub nodes: usize,
    pub yaml_bytes: usize,
    pub promql_units: usize,
    /// Rewritten expressions, counted for every rule that holds one.
    pub rewritten_bytes: usize,
    /// Data values written back.
    pub output_bytes: usize,
}

/// Why a rewrite stopped before its end for a reason other than its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The deadline passed.
    Deadline,
    /// The caller set the cancel flag (its client is gone).
    Cancelled,
}

/// The budget of one rewrite and what it spent so far.
#[derive(Debug, Clone)]
pub struct Work {
    limits: WorkLimits,
    deadline: Option<(Instant, Duration)>,
    cancel: Option<Arc<AtomicBool>>,
    spent: Spent,
    stopped: Option<Stopped>,
}

impl Work {
    pub fn new(limits: WorkLimits) -> Work {
        Work {
            limits,
            deadline: None,
            cancel: None,
            spent: Spent::default(),
            stopped: None,
        }
    }

    /// Stop with an error once `at` has passed; `limit` is the time limit it stands for
    /// (named in the error).
    pub fn with_deadline(mut self, at: Instant, limit: Duration) -> Work {
        self.deadline = Some((at, limit));
        self
    }

    /// Stop with an error once `cancel` is set.
    pub fn with_cancel(mut self, cancel: Arc<AtomicBool>) -> Work {
        self.cancel = Some(cancel);
        self
    }

    pub fn limits(&self) -> WorkLimits {
        self.limits
    }

    pub fn spent(&self) -> Spent {
        self.spent
    }

    /// Whether the rewrite was cut short by the deadline or the cancel flag (its error says
    /// nothing about the data).
    pub fn stopped(&self) -> Option<Stopped> {
        self.stopped
    }

    /// The time and cancel check of a coarse point (a data key, a rule).
    pub(crate) fn check(&mut self) -> Result<(), String> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            self.stopped = Some(Stopped::Cancelled);
            return Err("the review was cancelled: its caller is gone".into());
        }
        if let Some((at, within)) = self.deadline
            && Instant::now() >= at
        {
            self.stopped = Some(Stopped::Deadline);
            return Err(format!(
                "promfed stopped rewriting after {:.1} s, its time limit per review (the \
                 ConfigMap costs too much to rewrite, or promfed is overloaded: retry)",
                within.as_secs_f64()
            ));
        }
        Ok(())
    }

    /// YAML limits for the next data value: what is left of the review's.
    pub(crate) fn yaml_limits(&self, max_depth: usize) -> Limits {
        Limits {
            max_depth,
            max_nodes: self.limits.nodes.saturating_sub(self.spent.nodes),
            max_bytes: self.limits.yaml_bytes.saturating_sub(self.spent.yaml_bytes),
        }
    }

    pub(crate) fn spend_yaml(&mut self, expanded: Expanded) {
        self.spent.nodes += expanded.nodes;
        self.spent.yaml_bytes += expanded.bytes;
    }

    /// The reason for a data value over what is left of the review's YAML budget.
    pub(crate) fn yaml_over(&self, over: Over) -> String {
        match over {
            Over::Nodes => format!(
                "over promfed's work budget: the review's YAML expands to more than {} nodes, \
                 all data keys together, aliases counted by what they expand to (alias bomb?)",
                self.limits.nodes
            ),
            Over::Bytes => format!(
                "over promfed's work budget: the review's YAML expands to more than {} bytes of \
                 scalars, all data keys together, aliases counted by what they expand to",
                self.limits.yaml_bytes
            ),
        }
    }

    /// Count scoping `expr` (a distinct expression).
    pub(crate) fn spend_promql(&mut self, expr: &str) -> Result<(), String> {
        self.spent.promql_units += promql_units(expr);
        if self.spent.promql_units > self.limits.promql_units {
            return Err(format!(
                "over promfed's work budget: more than {} PromQL operators, brackets and \
                 expressions to scope (distinct expressions, all rule files together)",
                self.limits.promql_units
            ));
        }
        Ok(())
    }

    /// Count a rewritten expression about to be written (every rule that holds it: an
    /// alias of one expression is written as often as it is used), so that a rewrite whose
    /// output would blow up stops before the output is written.
    pub(crate) fn spend_rewritten(&mut self, bytes: usize) -> Result<(), String> {
        self.spent.rewritten_bytes += bytes;
        self.output_within(self.spent.rewritten_bytes)
    }

    /// Count a data value written back.
    pub(crate) fn spend_output(&mut self, bytes: usize) -> Result<(), String> {
        self.spent.output_bytes += bytes;
        self.output_within(self.spent.output_bytes)
    }

    fn output_within(&self, bytes: usize) -> Result<(), String> {
        if bytes > self.limits.output_bytes {
            return Err(format!(
                "over promfed's work budget: the rewritten data would be more than {} bytes \
                 ({OUTPUT_FACTOR} times the ConfigMap's data plus {} KiB)",
                self.limits.output_bytes,
                OUTPUT_EXTRA_BYTES / 1024
            ));
        }
        Ok(())
    }
}

/// The work units of scoping one expression: one, plus one for every operator character
/// (`+ - * / % ^ < > = !`, a two-character comparison counted once), bracket and keyword
/// operator (`and`, `or`, `unless`) outside string literals and comments. An operator is a
/// level of the AST that is walked, compared and printed; this counts what the parser's own
/// limits (1,000 operators, 256 brackets) count, without parsing.
pub fn promql_units(expr: &str) -> usize {
    let bytes = expr.as_bytes();
    let mut units = 1;
    let mut at = 0;
    while at < bytes.len() {
        let c = bytes[at];
        match c {
            b'"' | b'\'' | b'`' => {
                // A string literal: to its closing quote (`\` escapes, except in backticks).
                at += 1;
                while at < bytes.len() && bytes[at] != c {
                    at += if bytes[at] == b'\\' && c != b'`' {
                        2
                    } else {
                        1
                    };
                }
            }
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' {
                    at += 1;
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'(' | b'[' | b'{' => units += 1,
            b'<' | b'>' | b'=' | b'!' => {
                units += 1;
                let next = bytes.get(at + 1);
                if next == Some(&b'=') || (c != b'<' && c != b'>' && next == Some(&b'~')) {
                    at += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = at;
                while at < bytes.len()
                    && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_' || bytes[at] == b':')
                {
                    at += 1;
                }
                if matches!(&expr[start..at], "and" | "or" | "unless") {
                    units += 1;
                }
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_and_cancel_stop_at_the_next_check() {
        let limits = WorkLimits::for_data(&[]);
        let mut work = Work::new(limits).with_deadline(Instant::now(), Duration::from_secs(4));
        assert!(
            work.check()
                .unwrap_err()
                .contains("after 4.0 s, its time limit")
        );
        assert_eq!(work.stopped(), Some(Stopped::Deadline));

        let cancel = Arc::new(AtomicBool::new(false));
        let mut work = Work::new(limits).with_cancel(cancel.clone());
        assert!(work.check().is_ok());
        cancel.store(true, Ordering::Relaxed);
        assert!(work.check().is_err());
        assert_eq!(work.stopped(), Some(Stopped::Cancelled));
    }

    #[test]
    fn promql_units_count_operators_and_brackets_outside_strings() {
        assert_eq!(promql_units("up"), 1);
        assert_eq!(promql_units("sum(rate(x[5m]))"), 4);
        assert_eq!(promql_units(r#"a{b=~"x+y(z)", c!="\"-"} >= 1"#), 5);
        assert_eq!(promql_units("a and b unless c or d"), 4);
        assert_eq!(promql_units("a # + - * /\n+ b"), 2);
        assert_eq!(promql_units("band + orchid"), 2);
    }

    #[test]
    fn spending_is_counted_for_the_whole_review() {
        let data = vec![("k".to_string(), "x".repeat(1000))];
        let mut work = Work::new(WorkLimits::for_data(&data));
        assert_eq!(work.limits().output_bytes, 2 * 1001 + OUTPUT_EXTRA_BYTES);
        work.spend_yaml(Expanded {
            nodes: NODES - 10,
            bytes: 100,
        });
        assert_eq!(work.yaml_limits(100).max_nodes, 10);
        let chain = vec!["up"; 1000].join(" + ");
        assert_eq!(promql_units(&chain), 1000);
        for _ in 0..PROMQL_UNITS / 1000 {
            assert!(work.spend_promql(&chain).is_ok());
        }
        assert!(
            work.spend_promql("up")
                .unwrap_err()
                .contains("PromQL operators")
        );
        assert!(work.spend_output(OUTPUT_EXTRA_BYTES + 2002).is_ok());
        assert!(work.spend_output(1).is_err());
        assert!(work.spend_rewritten(OUTPUT_EXTRA_BYTES + 2002).is_ok());
        assert!(work.spend_rewritten(1).is_err());
        assert_eq!(work.stopped(), None, "limits are not stops");
    }
}
