//! The one walk over a PromQL AST.
//!
//! Every other walk of promfed (selectors, grouping lists, the dialect's renames) is built on
//! [`for_each_node`] and [`for_each_node_mut`]: a `match` over every node kind without a
//! catch-all arm, so a new kind in `promql-parser` fails to compile here instead of being
//! skipped somewhere. Aggregation parameters are walked (`topk(scalar(x), y)` scopes `x`).
//!
//! Order: parents before children, aggregation parameters before the aggregated expression,
//! function arguments in order, the left operand before the right. That is source order for
//! the selectors, which the scoper relies on to pair AST selectors with lexed ones.

use promql_parser::parser::{Expr, VectorSelector};

/// Every node, parents before children.
pub fn for_each_node<'a>(expr: &'a Expr, f: &mut dyn FnMut(&'a Expr)) {
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
        // Extensions are not produced by the parser for PromQL text.
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

/// Every node, mutably, parents before children (the same order as [`for_each_node`]).
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

/// Every vector selector in source order, the selector of a range (`x[5m]`) included.
pub fn visit_selectors<'a>(expr: &'a Expr, f: &mut dyn FnMut(&'a VectorSelector)) {
    for_each_node(expr, &mut |e| match e {
        Expr::VectorSelector(vs) => f(vs),
        Expr::MatrixSelector(ms) => f(&ms.vs),
        _ => {}
    });
}

/// Every vector selector in source order, mutably.
pub fn visit_selectors_mut(expr: &mut Expr, f: &mut dyn FnMut(&mut VectorSelector)) {
    for_each_node_mut(expr, &mut |e| match e {
        Expr::VectorSelector(vs) => f(vs),
        Expr::MatrixSelector(ms) => f(&mut ms.vs),
        _ => {}
    });
}

/// The vector selectors of `expr`, in source order.
pub fn selectors(expr: &Expr) -> Vec<&VectorSelector> {
    let mut out = Vec::new();
    visit_selectors(expr, &mut |vs| out.push(vs));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_in_source_order_with_aggregation_parameters() {
        let expr = crate::promql::parse(
            "topk(scalar(a), max_over_time(b[5m:1m])) + count_values(\"v\", rate(c[5m])) or -(d)",
        )
        .unwrap();
        let names: Vec<_> = selectors(&expr)
            .iter()
            .map(|vs| vs.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
    }
}
