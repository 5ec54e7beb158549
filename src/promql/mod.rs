//! The PromQL toolkit: everything promfed knows about PromQL, in one place.
//!
//! - [`parse`] reads PromQL as Prometheus 2.x and 3.x write it, through `dialect`, which makes
//!   what they accept and `promql-parser` does not readable for the crate; errors are placed
//!   at `line:column` by [`position`], as promtool gives them.
//! - [`walk`]: the one exhaustive walk over the AST (immutable and mutable, aggregation
//!   parameters included). Everything that visits nodes or selectors goes through it.
//! - [`lex`]: the crate's tokens at byte positions in the user's text, and the selectors and
//!   label lists found in them.
//! - [`syntax`]: promfed's own PromQL parser, with a span on every node: the scoper's fast
//!   path. It declines what it does not read, and the crate's path decides.
//! - [`scope`]: the scoper, which adds a label matcher to every selector by splicing it into
//!   the text and proving the result by a re-parse.
//! - [`labels`]: which results carry a label, and adding it to grouping lists.
//!
//! Quoting is `promql_parser::util`'s, the parser's own. The rule rewrite (`engine`) and the
//! dashboard converter (`dashboard`) both use this module, so a node kind or a syntax is
//! handled once for both.

mod dialect;
pub mod labels;
pub mod lex;
pub mod position;
pub mod scope;
pub mod syntax;
pub mod walk;

use promql_parser::parser::Expr;

use dialect::Source;
pub use lex::{Token, tokens};
pub use promql_parser::util::escape_string;
pub use scope::{Policy, ScopeOp, Scoped, Scoper};
pub use walk::{for_each_node, for_each_node_mut, selectors, visit_selectors, visit_selectors_mut};

/// Deepest bracket nesting of an expression; AST walks recurse.
const MAX_NESTING: usize = 256;
/// Most operators in one expression; each is a level of the AST.
const MAX_OPERATORS: usize = 1000;

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
