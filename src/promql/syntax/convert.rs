//! The fast parser's AST as `promql-parser` builds it, for the differential tests and the
//! fuzzer: the two parsers agree on an expression when this conversion of one equals the
//! other.

use promql_parser::label::{Labels, Matcher as CrateMatcher, Matchers};
use promql_parser::parser::token::TokenType;
use promql_parser::parser::token::{self, TokenId};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    self as crate_ast, AggregateExpr, BinModifier, BinaryExpr, Function, FunctionArgs,
    LabelModifier, MatrixSelector, NumberLiteral, ParenExpr, StringLiteral, SubqueryExpr,
    UnaryExpr, VectorMatchCardinality, VectorSelector,
};

use super::ast::{
    Aggregate, BinOp, Binary, Call, Expr, Group, Grouping, MatchOp, Matching, Offset, Selector,
    Type,
};
use super::functions;

/// The crate's AST of `expr`. Panics when the crate would refuse a regex the fast parser took
/// (a disagreement the differential tests report).
pub fn to_crate(expr: &Expr<'_>) -> crate_ast::Expr {
    match expr {
        Expr::Number(n, _) => crate_ast::Expr::NumberLiteral(NumberLiteral { val: n.0 }),
        Expr::String(s, _) => crate_ast::Expr::StringLiteral(StringLiteral { val: s.to_string() }),
        Expr::Selector(s) => selector(s),
        Expr::Call(c) => call(c),
        Expr::Aggregate(a) => aggregate(a),
        Expr::Negate(e, _) => crate_ast::Expr::Unary(UnaryExpr {
            expr: Box::new(to_crate(e)),
        }),
        Expr::Binary(b) => binary(b),
        Expr::Paren(e, _) => crate_ast::Expr::Paren(ParenExpr {
            expr: Box::new(to_crate(e)),
        }),
        Expr::Subquery(s) => crate_ast::Expr::Subquery(SubqueryExpr {
            expr: Box::new(to_crate(&s.expr)),
            offset: s.offset.map(offset),
            at: None,
            range: s.range,
            step: s.step,
        }),
    }
}

fn offset(o: Offset) -> crate_ast::Offset {
    match o {
        Offset::Forward(d) => crate_ast::Offset::Pos(d),
        Offset::Back(d) => crate_ast::Offset::Neg(d),
    }
}

fn selector(s: &Selector<'_>) -> crate_ast::Expr {
    let matchers = s
        .braces
        .iter()
        .flat_map(|b| &b.matchers)
        .map(|m| {
            let id = match m.op {
                MatchOp::Equal => token::T_EQL,
                MatchOp::NotEqual => token::T_NEQ,
                MatchOp::Regex => token::T_EQL_REGEX,
                MatchOp::NotRegex => token::T_NEQ_REGEX,
            };
            CrateMatcher::new_matcher(id, m.name.to_string(), m.value.to_string())
                .unwrap_or_else(|e| panic!("the fast parser took a matcher the crate refuses: {e}"))
        })
        .collect();
    let vs = VectorSelector {
        name: s.name.map(str::to_string),
        matchers: Matchers::new(matchers),
        offset: s.offset.map(offset),
        at: None,
    };
    match s.range {
        Some(range) => crate_ast::Expr::MatrixSelector(MatrixSelector { vs, range }),
        None => crate_ast::Expr::VectorSelector(vs),
    }
}

fn value_type(t: Type) -> ValueType {
    match t {
        Type::Scalar => ValueType::Scalar,
        Type::Vector => ValueType::Vector,
        Type::Matrix => ValueType::Matrix,
        Type::String => ValueType::String,
    }
}

fn call(c: &Call<'_>) -> crate_ast::Expr {
    let (name, sig) = functions::lookup_static(c.name).expect("the parser looked it up");
    let func = Function::new(
        name,
        sig.args.iter().copied().map(value_type).collect(),
        sig.variadic,
        value_type(sig.returns),
        false,
    );
    crate_ast::Expr::Call(crate_ast::Call {
        func,
        args: FunctionArgs {
            args: c.args.iter().map(|a| Box::new(to_crate(a))).collect(),
        },
    })
}

fn labels(names: &[&str]) -> Labels {
    Labels::new(names.to_vec())
}

fn aggregate(a: &Aggregate<'_>) -> crate_ast::Expr {
    let id: TokenId = match a.op {
        "avg" => token::T_AVG,
        "bottomk" => token::T_BOTTOMK,
        "count" => token::T_COUNT,
        "count_values" => token::T_COUNT_VALUES,
        "group" => token::T_GROUP,
        "max" => token::T_MAX,
        "min" => token::T_MIN,
        "quantile" => token::T_QUANTILE,
        "stddev" => token::T_STDDEV,
        "stdvar" => token::T_STDVAR,
        "sum" => token::T_SUM,
        "topk" => token::T_TOPK,
        other => unreachable!("the parser reads no aggregation {other}"),
    };
    crate_ast::Expr::Aggregate(AggregateExpr {
        op: TokenType::new(id),
        expr: Box::new(to_crate(&a.expr)),
        param: a.param.as_ref().map(|p| Box::new(to_crate(p))),
        modifier: a.grouping.as_ref().map(|g| match g {
            Grouping::By(l) => LabelModifier::Include(labels(l)),
            Grouping::Without(l) => LabelModifier::Exclude(labels(l)),
        }),
    })
}

fn binary(b: &Binary<'_>) -> crate_ast::Expr {
    let id: TokenId = match b.op {
        BinOp::Add => token::T_ADD,
        BinOp::Sub => token::T_SUB,
        BinOp::Mul => token::T_MUL,
        BinOp::Div => token::T_DIV,
        BinOp::Mod => token::T_MOD,
        BinOp::Pow => token::T_POW,
        BinOp::Atan2 => token::T_ATAN2,
        BinOp::Eq => token::T_EQLC,
        BinOp::Ne => token::T_NEQ,
        BinOp::Gt => token::T_GTR,
        BinOp::Lt => token::T_LSS,
        BinOp::Ge => token::T_GTE,
        BinOp::Le => token::T_LTE,
        BinOp::And => token::T_LAND,
        BinOp::Or => token::T_LOR,
        BinOp::Unless => token::T_LUNLESS,
    };
    let written = b.bool_modifier || b.matching.is_some() || b.group.is_some();
    let mut modifier = written.then(|| {
        let mut m = BinModifier::default().with_return_bool(b.bool_modifier);
        m.matching = b.matching.as_ref().map(|m| match m {
            Matching::On(l) => LabelModifier::Include(labels(l)),
            Matching::Ignoring(l) => LabelModifier::Exclude(labels(l)),
        });
        if let Some(g) = &b.group {
            m.card = match g {
                Group::Left(l) => VectorMatchCardinality::ManyToOne(labels(l)),
                Group::Right(l) => VectorMatchCardinality::OneToMany(labels(l)),
            };
        }
        m
    });
    if matches!(b.op, BinOp::And | BinOp::Or | BinOp::Unless) {
        let m = modifier.get_or_insert_with(BinModifier::default);
        if m.card == VectorMatchCardinality::OneToOne {
            m.card = VectorMatchCardinality::ManyToMany;
        }
    }
    crate_ast::Expr::Binary(BinaryExpr {
        op: TokenType::new(id),
        lhs: Box::new(to_crate(&b.lhs)),
        rhs: Box::new(to_crate(&b.rhs)),
        modifier,
    })
}
