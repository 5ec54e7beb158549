//! Which label a result keeps, and grouping by it.
//!
//! A dashboard that shows several clusters at once must keep their series apart: the scoped
//! selectors all carry the cluster label, and [`keeps_label`] follows it through aggregations
//! and vector matching as Prometheus builds the result labels; [`add_grouping`] adds it to the
//! `by (...)` and `on (...)` lists that would otherwise merge clusters.

use promql_parser::parser::token::{
    T_BOTTOMK, T_BY, T_LAND, T_LIMIT_RATIO, T_LIMITK, T_LOR, T_LUNLESS, T_ON, T_TOPK,
};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Expr, LabelModifier, VectorMatchCardinality};

use super::lex::label_lists;
use super::walk::{for_each_node, for_each_node_mut};
use super::{parse, tokens};

/// Add `label` to every non-empty `by (...)` list, and to every non-empty `on (...)` list when
/// both sides of each such match carry the label. The text is edited at the lexer's token
/// positions and must parse to the AST edited the same way; None when it does not.
pub fn add_grouping(text: &str, label: &str) -> Option<String> {
    let original = parse(text).ok()?;
    let mut expected = original.clone();
    let mut by = 0;
    for_each_node_mut(&mut expected, &mut |e| {
        if let Expr::Aggregate(agg) = e
            && let Some(LabelModifier::Include(ls)) = &mut agg.modifier
            && !ls.labels.is_empty()
            && !ls.labels.iter().any(|l| l == label)
        {
            ls.labels.push(label.to_string());
            by += 1;
        }
    });
    let mut on_ok = true;
    for_each_node(&expected, &mut |e| {
        if let Expr::Binary(b) = e
            && let Some(m) = &b.modifier
            && let Some(LabelModifier::Include(ls)) = &m.matching
            && !ls.labels.is_empty()
            && !ls.labels.iter().any(|l| l == label)
            && !(keeps_label(&b.lhs, label) && keeps_label(&b.rhs, label))
        {
            on_ok = false;
        }
    });
    let mut on = 0;
    if on_ok {
        for_each_node_mut(&mut expected, &mut |e| {
            if let Expr::Binary(b) = e
                && let Some(m) = &mut b.modifier
                && let Some(LabelModifier::Include(ls)) = &mut m.matching
                && !ls.labels.is_empty()
                && !ls.labels.iter().any(|l| l == label)
            {
                ls.labels.push(label.to_string());
                on += 1;
            }
        });
    }
    if by + on == 0 {
        return Some(text.to_string());
    }

    // The tokens as promfed reads PromQL: keywords used as names (`by (anchored)`) are names.
    let tokens = tokens(text).ok()?;
    let inserts: Vec<usize> = label_lists(text, &tokens)
        .into_iter()
        .filter(|list| list.keyword == T_BY || (list.keyword == T_ON && on > 0))
        .filter(|list| !list.names.contains(&label))
        .filter_map(|list| list.last_end)
        .collect();
    let mut out = text.to_string();
    for at in inserts.into_iter().rev() {
        out.insert_str(at, &format!(", {label}"));
    }
    (parse(&out).ok()? == expected).then_some(out)
}

/// Whether the series an expression returns carry `label` (given that every selector does):
/// aggregations keep it only through `by (label)` or a `without` list that spares it, vector
/// matching through its `on`/`ignoring` lists and `group_*` sides, as Prometheus builds the
/// result labels.
pub fn keeps_label(expr: &Expr, label: &str) -> bool {
    let has = |ls: &promql_parser::label::Labels| ls.labels.iter().any(|l| l == label);
    match expr {
        Expr::Aggregate(agg) => {
            let id = agg.op.id();
            if matches!(id, T_TOPK | T_BOTTOMK | T_LIMITK | T_LIMIT_RATIO) {
                // These select series; they keep all of their labels.
                return keeps_label(&agg.expr, label);
            }
            match &agg.modifier {
                Some(LabelModifier::Include(ls)) => has(ls) && keeps_label(&agg.expr, label),
                Some(LabelModifier::Exclude(ls)) => !has(ls) && keeps_label(&agg.expr, label),
                None => false,
            }
        }
        Expr::Unary(u) => keeps_label(&u.expr, label),
        Expr::Binary(b) => {
            let lhs_vector = b.lhs.value_type() == ValueType::Vector;
            let rhs_vector = b.rhs.value_type() == ValueType::Vector;
            match (lhs_vector, rhs_vector) {
                (false, false) => false,
                (true, false) => keeps_label(&b.lhs, label),
                (false, true) => keeps_label(&b.rhs, label),
                (true, true) => {
                    let lhs = keeps_label(&b.lhs, label);
                    let rhs = keeps_label(&b.rhs, label);
                    match b.op.id() {
                        T_LAND | T_LUNLESS => return lhs,
                        T_LOR => return lhs || rhs,
                        _ => {}
                    }
                    let Some(m) = &b.modifier else {
                        return lhs;
                    };
                    match &m.card {
                        VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany => {
                            match &m.matching {
                                Some(LabelModifier::Include(ls)) => has(ls) && lhs,
                                Some(LabelModifier::Exclude(ls)) => !has(ls) && lhs,
                                None => lhs,
                            }
                        }
                        VectorMatchCardinality::ManyToOne(include) => lhs || (has(include) && rhs),
                        VectorMatchCardinality::OneToMany(include) => rhs || (has(include) && lhs),
                    }
                }
            }
        }
        Expr::Paren(p) => keeps_label(&p.expr, label),
        Expr::Subquery(s) => keeps_label(&s.expr, label),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => false,
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => true,
        Expr::Call(call) => {
            if !matches!(call.func.return_type, ValueType::Vector | ValueType::Matrix) {
                return false;
            }
            match call.func.name {
                // New series: no labels, or only those of equality matchers.
                "vector" | "absent" | "absent_over_time" => false,
                "label_replace" | "label_join"
                    if matches!(call.args.args.get(1).map(|a| a.as_ref()),
                        Some(Expr::StringLiteral(s)) if s.val == label) =>
                {
                    true
                }
                _ => call.args.args.iter().any(|a| {
                    matches!(a.value_type(), ValueType::Vector | ValueType::Matrix)
                        && keeps_label(a, label)
                }),
            }
        }
        Expr::Extension(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_label_rows() {
        let rows: &[(&str, bool)] = &[
            ("x", true),
            ("sum(x)", false),
            ("sum by (cluster) (x)", true),
            ("sum without (pod) (x)", true),
            ("sum without (cluster) (x)", false),
            ("topk(3, sum(x))", false),
            ("topk(3, x)", true),
            ("x / on (pod) y", false),
            ("x / ignoring (pod) y", true),
            ("x * on (pod) group_left (node) y", true),
            ("sum(x) * on () group_right y", true),
            ("vector(1)", false),
            ("scalar(x)", false),
            ("rate(x[5m])", true),
            ("histogram_quantile(0.9, sum by (le) (x))", false),
            ("x or vector(0)", true),
            ("1 - x", true),
            (r#"label_replace(sum(x), "cluster", "a", "", "")"#, true),
        ];
        for (text, want) in rows {
            let e = parse(text).unwrap();
            assert_eq!(keeps_label(&e, "cluster"), *want, "{text}");
        }
    }
}
