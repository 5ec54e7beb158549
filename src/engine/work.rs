//! What one rewrite may spend, and when it must stop.
//!
//! The engine stays pure and synchronous: the caller hands [`Engine::rewrite_within`] a
//! [`Work`] that counts what the rewrite spends against [`WorkLimits`] (all data keys of the
//! review together) and, at coarse points (every data key, every rule), checks a deadline
//! and a cancel flag the caller may set from another thread. Over a limit, the rewrite ends
//! in an error naming it (a denial, the same for the same data); past the deadline or
//! cancelled, in an error too, and [`Work::stopped`] says so (an answer not to be cached).
//!
//! Every limit grows with the review's input (its data keys and values, or an object's
//! content): a [`Scale`] of so much per MiB of input plus a floor for small inputs. The rate
//! is twice what the densest real configuration needs per byte (measured by
//! `tests/it/limits.rs` on rule files packed with real expressions, regex matchers and tiny
//! rules), so real input of any size fits; what only a hostile input needs per byte (aliases
//! that expand, operator chains whose cost grows faster than their text) does not.
//!
//! [`Engine::rewrite_within`]: super::Engine::rewrite_within

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::yaml::{Expanded, Limits, Over};

const MIB: usize = 1024 * 1024;

/// A limit that grows with the input: `floor` plus `per_mib` for every MiB of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub floor: usize,
    pub per_mib: usize,
}

impl Scale {
    /// The limit for `input` bytes.
    pub const fn of(self, input: usize) -> usize {
        let grown = input as u128 * self.per_mib as u128 / MIB as u128;
        let grown = if grown > usize::MAX as u128 {
            usize::MAX
        } else {
            grown as usize
        };
        self.floor.saturating_add(grown)
    }
}

/// YAML nodes, an alias counted by what it expands to. Tiny rules (`- record: rN` /
/// `expr: mN`) are the densest real input: 149,308 nodes in 1 MiB.
pub const NODES: Scale = Scale {
    floor: 20_000,
    per_mib: 280_000,
};
/// Bytes of YAML scalars, an alias counted by the length of what it expands to (one alias
/// of a long string is that string again). Without aliases, less than the input: 0.94 MiB
/// in a MiB of rules with regex matchers.
pub const YAML_BYTES: Scale = Scale {
    floor: 256 * 1024,
    per_mib: 2 * MIB,
};
/// PromQL work units (see [`promql_units`]; each distinct expression counted once). The
/// floor holds the costliest expression the parser allows (a chain of 1,000 operators on
/// the full path counts about 88,000) next to a ConfigMap's own rules. Prometheus' own short
/// test expressions are the densest real input: 240,085 units in 1 MiB (many of them take
/// the full path); the kube-prometheus and mixin rules 61,004, with regex matchers 82,925.
pub const PROMQL_UNITS: Scale = Scale {
    floor: 100_000,
    per_mib: 500_000,
};
/// Rewritten data: the input and what promfed adds to it (a matcher per selector, a label
/// per rule, the federation jobs and the alert group of the config). Tiny rules grow the
/// most: a MiB becomes 2.8 MiB with the cluster name `shared-tools` (and more with a longer
/// one).
pub const OUTPUT_BYTES: Scale = Scale {
    floor: MIB,
    per_mib: 6 * MIB,
};

/// What one review's rewrite may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkLimits {
    /// The input the limits were made for, in bytes.
    pub input_bytes: usize,
    pub nodes: usize,
    pub yaml_bytes: usize,
    pub promql_units: usize,
    pub output_bytes: usize,
}

impl WorkLimits {
    /// The limits for rewriting `data` (its keys and values).
    pub fn for_data(data: &[(String, String)]) -> WorkLimits {
        WorkLimits::for_input(crate::object::configmap::data_bytes(data))
    }

    /// The limits for rewriting an object's content (see [`crate::object`]).
    pub fn for_content(content: &crate::object::Content) -> WorkLimits {
        WorkLimits::for_input(content.input_bytes())
    }

    /// The limits for `input` bytes.
    pub fn for_input(input: usize) -> WorkLimits {
        WorkLimits {
            input_bytes: input,
            nodes: NODES.of(input),
            yaml_bytes: YAML_BYTES.of(input),
            promql_units: PROMQL_UNITS.of(input),
            output_bytes: OUTPUT_BYTES.of(input),
        }
    }

    /// How a limit follows from the input, for the messages.
    fn scaled(&self, scale: Scale) -> String {
        format!(
            "for a review of {} bytes: {} per MiB plus {}",
            self.input_bytes, scale.per_mib, scale.floor
        )
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
                "over promfed's work budget: the review's YAML expands to more than {} nodes \
                 ({}), all data keys together, aliases counted by what they expand to (alias \
                 bomb?)",
                self.limits.nodes,
                self.limits.scaled(NODES)
            ),
            Over::Bytes => format!(
                "over promfed's work budget: the review's YAML expands to more than {} bytes of \
                 scalars ({}), all data keys together, aliases counted by what they expand to",
                self.limits.yaml_bytes,
                self.limits.scaled(YAML_BYTES)
            ),
        }
    }

    /// Count scoping `expr` (a distinct expression), on the full path or not. Counted after
    /// the expression was scoped: the parser's own limits bound what one expression costs,
    /// and its errors say more than a budget's.
    pub(crate) fn spend_promql(&mut self, expr: &str, full_path: bool) -> Result<(), String> {
        let units = promql_units(expr, full_path);
        self.spent.promql_units = self.spent.promql_units.saturating_add(units);
        if self.spent.promql_units > self.limits.promql_units {
            return Err(format!(
                "over promfed's work budget: more than {} PromQL units to scope ({}; a unit \
                 is an expression, an operator or a bracket, and weighs more in long chains; \
                 distinct expressions, all rule files together)",
                self.limits.promql_units,
                self.limits.scaled(PROMQL_UNITS)
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
                 ({})",
                self.limits.output_bytes,
                self.limits.scaled(OUTPUT_BYTES)
            ));
        }
        Ok(())
    }
}

/// A long expression's units grow with the square of its operators divided by this: what
/// scoping one step costs grows with the depth of the operator tree (measured, release
/// build: a microsecond or two per step in expressions of up to ten operators, about 6 at
/// 100, 12 at 1,000, the parser's limit), so that a chain of 1,000 additions counts 8,796
/// units where 500 expressions `a + b`, as many steps, count 1,000.
pub const OPERATOR_DIVISOR: usize = 128;

/// An expression that promfed's own parser declines (the full path: promql-parser and the
/// dialect layer) costs this many times as much per step (measured: 17 to 134 µs per step
/// against 1.5 to 12 on the fast path).
pub const FULL_PATH_WEIGHT: usize = 10;

/// The work units of scoping one expression: its [`promql_steps`] plus the square of its
/// operators over [`OPERATOR_DIVISOR`], times [`FULL_PATH_WEIGHT`] when it took the full path.
pub fn promql_units(expr: &str, full_path: bool) -> usize {
    let (steps, operators) = promql_steps_and_operators(expr);
    let units = steps.saturating_add(operators.saturating_mul(operators) / OPERATOR_DIVISOR);
    match full_path {
        true => units.saturating_mul(FULL_PATH_WEIGHT),
        false => units,
    }
}

/// The steps of scoping one expression: one, plus one for every operator character
/// (`+ - * / % ^ < > = !`, a two-character comparison counted once), bracket and keyword
/// operator (`and`, `or`, `unless`) outside string literals and comments. An operator is a
/// level of the AST that is walked, compared and printed; this counts what the parser's own
/// limits (1,000 operators, 256 brackets) count, without parsing.
pub fn promql_steps(expr: &str) -> usize {
    promql_steps_and_operators(expr).0
}

/// [`promql_steps`], and how many of them are operators (not brackets).
fn promql_steps_and_operators(expr: &str) -> (usize, usize) {
    let bytes = expr.as_bytes();
    let (mut steps, mut operators) = (1, 0);
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
            b'(' | b'[' | b'{' => steps += 1,
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => {
                steps += 1;
                operators += 1;
            }
            b'<' | b'>' | b'=' | b'!' => {
                steps += 1;
                operators += 1;
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
                    steps += 1;
                    operators += 1;
                }
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    (steps, operators)
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
    fn promql_steps_count_operators_and_brackets_outside_strings() {
        assert_eq!(promql_steps("up"), 1);
        assert_eq!(promql_steps("sum(rate(x[5m]))"), 4);
        assert_eq!(promql_steps(r#"a{b=~"x+y(z)", c!="\"-"} >= 1"#), 5);
        assert_eq!(promql_steps("a and b unless c or d"), 4);
        assert_eq!(promql_steps("a # + - * /\n+ b"), 2);
        assert_eq!(promql_steps("band + orchid"), 2);
    }

    #[test]
    fn promql_units_grow_with_the_square_of_the_operators_and_on_the_full_path() {
        assert_eq!(promql_units("up", false), 1);
        assert_eq!(promql_units("sum(rate(x[5m]))", false), 4);
        assert_eq!(promql_units("sum(rate(x[5m]))", true), 40);
        let chain = vec!["up"; 1000].join(" + ");
        assert_eq!(promql_steps(&chain), 1000);
        assert_eq!(
            promql_units(&chain, false),
            1000 + 999 * 999 / OPERATOR_DIVISOR
        );
        let short: usize = (0..500).map(|_| promql_units("a + b", false)).sum();
        assert_eq!(short, 1000);
        assert!(promql_units(&chain, false) > 8 * short);
        // Brackets are steps, not operators.
        let deep = format!("{}x{}", "(".repeat(200), ")".repeat(200));
        assert_eq!(promql_units(&deep, false), 201);
        assert!(promql_units(&chain, true) <= PROMQL_UNITS.floor);
    }

    #[test]
    fn limits_grow_with_the_input() {
        let small = WorkLimits::for_input(0);
        assert_eq!(small.nodes, NODES.floor);
        assert_eq!(small.promql_units, PROMQL_UNITS.floor);
        let mib = WorkLimits::for_input(MIB);
        assert_eq!(mib.nodes, NODES.floor + NODES.per_mib);
        assert_eq!(mib.yaml_bytes, YAML_BYTES.floor + YAML_BYTES.per_mib);
        assert_eq!(mib.output_bytes, OUTPUT_BYTES.floor + OUTPUT_BYTES.per_mib);
        let half = WorkLimits::for_input(MIB / 2);
        assert_eq!(
            half.promql_units,
            PROMQL_UNITS.floor + PROMQL_UNITS.per_mib / 2
        );
        assert!(
            WorkLimits::for_input(usize::MAX).nodes > NODES.per_mib,
            "no overflow"
        );
    }

    #[test]
    fn spending_is_counted_for_the_whole_review() {
        let data = vec![("k".to_string(), "x".repeat(1000))];
        let limits = WorkLimits::for_data(&data);
        assert_eq!(limits.input_bytes, 1001);
        let mut work = Work::new(limits);
        work.spend_yaml(Expanded {
            nodes: limits.nodes - 10,
            bytes: 100,
        });
        assert_eq!(work.yaml_limits(100).max_nodes, 10);
        let mut spent = 0;
        while spent + promql_units("up + up", false) <= limits.promql_units {
            assert!(work.spend_promql("up + up", false).is_ok());
            spent += promql_units("up + up", false);
        }
        let over = work.spend_promql("up + up", false).unwrap_err();
        assert!(over.contains("PromQL units"), "{over}");
        assert!(over.contains("for a review of 1001 bytes"), "{over}");
        assert!(work.spend_output(limits.output_bytes).is_ok());
        assert!(work.spend_output(1).is_err());
        assert!(work.spend_rewritten(limits.output_bytes).is_ok());
        assert!(work.spend_rewritten(1).is_err());
        assert_eq!(work.stopped(), None, "limits are not stops");
    }
}
