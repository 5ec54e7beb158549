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
//!
//! Why a parser of promfed's own: scoping parses every expression twice (the user's, and the
//! spliced result that must read as the user's plus the matchers). `promql-parser` lexes into
//! owned tokens, runs an LR parser and compiles every regex matcher, which made parsing about
//! 60% of an uncached admission review; this parser does both parses in a fraction of that.
//!
//! - `lex`: tokens on demand; `parser`: the descent and the crate's checks; `functions`: the
//!   function signatures; `ast`: the tree; `convert`: the crate's tree of it.

pub mod ast;
mod convert;
mod functions;
mod lex;
mod parser;

pub use ast::Expr;
pub use convert::to_crate;

/// Parse `text`, or None when it is outside what this parser reads (errors included).
pub fn parse(text: &str) -> Option<Expr<'_>> {
    parser::parse(text)
}

/// Whether `pattern` is a regex the crate compiles (`^(?:pattern)$`, with the `regex` crate
/// and its size limit, as the crate does it). A pattern of literal characters, `|` and `.`,
/// with `*` and `+` only right after a `.` (`LIST|GET`, `kube-.*`), compiles in every regex
/// syntax without trying; anything else is compiled.
pub(crate) fn pattern_is_valid(pattern: &str) -> bool {
    plainly_valid(pattern) || regex::Regex::new(&format!("^(?:{pattern})$")).is_ok()
}

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

#[cfg(test)]
mod tests;
