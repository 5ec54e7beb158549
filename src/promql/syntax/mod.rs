//! promfed's own PromQL parser: the scoper's fast path.
//!
//! A recursive-descent parser over the text's bytes that gives every node its exact byte span
//! and borrows names and strings from the text. It reads the PromQL that rule files and
//! dashboards are made of; for anything else (and for every error) it answers `None`, and the
//! caller takes the full path (`dialect` and `promql-parser`), which accepts all that
//! Prometheus 2.x and 3.x accept and places errors as promtool does. So this parser may be
//! stricter than Prometheus but never more lenient, and what it accepts it must read as
//! `promql-parser` does: [`to_crate`] turns its AST into the crate's for the differential
//! tests (every expression the project holds, promtool, the lezer grammar) and the fuzzer.

pub mod ast;

pub use ast::Expr;

/// Parse `text`, or None when it is outside what this parser reads (errors included).
pub fn parse(_text: &str) -> Option<Expr<'_>> {
    None
}

/// The AST as `promql-parser` builds it, for the differential tests.
pub fn to_crate(_expr: &Expr<'_>) -> promql_parser::parser::Expr {
    unimplemented!()
}
