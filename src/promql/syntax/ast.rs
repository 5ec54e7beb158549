//! The AST of promfed's own PromQL parser: borrowed names and strings, a byte span on every
//! node, and equality that ignores the spans (two parses of one expression placed differently
//! in two texts are equal), so a re-parse of a spliced text can be compared with the AST it
//! must have.

use std::borrow::Cow;
use std::time::Duration;

/// Bytes `start..end` of the parsed text. Spans never take part in equality: see the module
/// docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

/// A number, equal to another when its bits are (NaN equals NaN, 0 differs from -0).
#[derive(Debug, Clone, Copy)]
pub struct Number(pub f64);

impl PartialEq for Number {
    fn eq(&self, other: &Number) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

/// The type of an expression's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Scalar,
    Vector,
    Matrix,
    String,
}

/// An expression; every variant carries its span.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr<'a> {
    Number(Number, Span),
    String(Cow<'a, str>, Span),
    /// An instant selector, or a range selector when `range` is set.
    Selector(Box<Selector<'a>>),
    Call(Box<Call<'a>>),
    Aggregate(Box<Aggregate<'a>>),
    /// `-expr` (a `-` before a number literal is part of the number, and `+expr` is `expr`).
    Negate(Box<Expr<'a>>, Span),
    Binary(Box<Binary<'a>>),
    Paren(Box<Expr<'a>>, Span),
    Subquery(Box<Subquery<'a>>),
}

/// `name{matchers}[range] offset d`.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector<'a> {
    pub name: Option<&'a str>,
    /// The `{...}` part, when written.
    pub braces: Option<Braces<'a>>,
    pub range: Option<Duration>,
    pub offset: Option<Offset>,
    /// From the name (or the `{`) to the end of the selector's last part.
    pub span: Span,
    /// The name and the `{...}`, without range and offset: its end is where a `{...}` or a
    /// matcher is added.
    pub head: Span,
}

/// A selector's `{...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Braces<'a> {
    pub matchers: Vec<Matcher<'a>>,
    /// The span of the whole `{...}`; `span.end - 1` is the `}`.
    pub span: Span,
    /// Whether the list ends with a `,` before the `}`.
    pub trailing_comma: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// `name op "value"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matcher<'a> {
    pub name: &'a str,
    pub op: MatchOp,
    pub value: Cow<'a, str>,
    pub span: Span,
}

/// `offset d` or `offset -d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    Forward(Duration),
    Back(Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Call<'a> {
    pub name: &'a str,
    pub args: Vec<Expr<'a>>,
    /// The function's result type.
    pub returns: Type,
    pub span: Span,
}

/// `by (...)` or `without (...)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Grouping<'a> {
    By(Vec<&'a str>),
    Without(Vec<&'a str>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate<'a> {
    /// The aggregation operator, lower case (`sum`, `topk`, ...).
    pub op: &'static str,
    pub param: Option<Expr<'a>>,
    pub expr: Expr<'a>,
    pub grouping: Option<Grouping<'a>>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

/// `on (...)` or `ignoring (...)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Matching<'a> {
    On(Vec<&'a str>),
    Ignoring(Vec<&'a str>),
}

/// `group_left (...)` or `group_right (...)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Group<'a> {
    Left(Vec<&'a str>),
    Right(Vec<&'a str>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Binary<'a> {
    pub op: BinOp,
    pub lhs: Expr<'a>,
    pub rhs: Expr<'a>,
    pub bool_modifier: bool,
    pub matching: Option<Matching<'a>>,
    pub group: Option<Group<'a>>,
    pub span: Span,
}

/// `expr[range:step] offset d`.
#[derive(Debug, Clone, PartialEq)]
pub struct Subquery<'a> {
    pub expr: Expr<'a>,
    pub range: Duration,
    pub step: Option<Duration>,
    pub offset: Option<Offset>,
    pub span: Span,
}

impl Expr<'_> {
    pub fn span(&self) -> Span {
        match self {
            Expr::Number(_, span) | Expr::String(_, span) => *span,
            Expr::Negate(_, span) | Expr::Paren(_, span) => *span,
            Expr::Selector(s) => s.span,
            Expr::Call(c) => c.span,
            Expr::Aggregate(a) => a.span,
            Expr::Binary(b) => b.span,
            Expr::Subquery(s) => s.span,
        }
    }

    /// The type of the expression's value, as Prometheus types it.
    pub fn value_type(&self) -> Type {
        match self {
            Expr::Number(..) => Type::Scalar,
            Expr::String(..) => Type::String,
            Expr::Selector(s) if s.range.is_some() => Type::Matrix,
            Expr::Selector(_) => Type::Vector,
            Expr::Call(c) => c.returns,
            Expr::Aggregate(_) => Type::Vector,
            Expr::Negate(e, _) | Expr::Paren(e, _) => e.value_type(),
            Expr::Binary(b) => {
                if b.lhs.value_type() == Type::Scalar && b.rhs.value_type() == Type::Scalar {
                    Type::Scalar
                } else {
                    Type::Vector
                }
            }
            Expr::Subquery(_) => Type::Matrix,
        }
    }
}

impl<'a> Expr<'a> {
    /// Every selector, mutably, in source order (an aggregation's parameter before its
    /// expression, arguments in order, the left operand before the right).
    pub fn visit_selectors_mut(&mut self, f: &mut dyn FnMut(&mut Selector<'a>)) {
        match self {
            Expr::Number(..) | Expr::String(..) => {}
            Expr::Selector(s) => f(s),
            Expr::Call(c) => c.args.iter_mut().for_each(|a| a.visit_selectors_mut(f)),
            Expr::Aggregate(a) => {
                if let Some(p) = &mut a.param {
                    p.visit_selectors_mut(f);
                }
                a.expr.visit_selectors_mut(f);
            }
            Expr::Negate(e, _) | Expr::Paren(e, _) => e.visit_selectors_mut(f),
            Expr::Binary(b) => {
                b.lhs.visit_selectors_mut(f);
                b.rhs.visit_selectors_mut(f);
            }
            Expr::Subquery(s) => s.expr.visit_selectors_mut(f),
        }
    }
}
