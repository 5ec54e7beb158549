//! Recursive descent over the tokens of [`lex`](super::lex), with Prometheus' precedence
//! (`or` < `and`/`unless` < comparisons < `+ -` < `* / % atan2` < `^`, `^` right-associative,
//! a unary sign binding like `*`, ranges, subqueries and `offset` tighter than any operator)
//! and the checks `promql-parser` makes while building its AST (types, arity, where ranges
//! and offsets may stand, `bool`, vector matching). Every `None` means: the full path decides.

use std::borrow::Cow;
use std::time::Duration;

use super::ast::{
    Aggregate, BinOp, Binary, Braces, Call, Expr, Group, Grouping, MatchOp, Matcher, Matching,
    Number, Offset, Selector, Span, Subquery, Type,
};
use super::functions;
use super::lex::{Kind, Lexer, Token, Word};

/// Deepest nesting of the recursive descent, and most binary operators (each a level of the
/// AST); bigger expressions take the full path, which refuses them with its own limits.
const MAX_DEPTH: usize = 128;
const MAX_OPERATORS: usize = super::super::MAX_OPERATORS;

/// Parse a whole expression.
pub(super) fn parse(text: &str) -> Option<Expr<'_>> {
    let mut parser = Parser {
        text,
        lexer: Lexer::new(text),
        peeked: None,
        last_end: 0,
        depth: 0,
        operators: 0,
    };
    let expr = parser.expr(0)?;
    (parser.next().kind == Kind::Eof).then_some(expr)
}

struct Parser<'a> {
    text: &'a str,
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    /// The end of the last token taken.
    last_end: usize,
    depth: usize,
    operators: usize,
}

impl<'a> Parser<'a> {
    fn peek(&mut self) -> Token {
        match self.peeked {
            Some(t) => t,
            None => {
                let t = self.lexer.next_token();
                self.peeked = Some(t);
                t
            }
        }
    }

    /// The next token, taken. Past the crate's operator limit every token is
    /// [`Kind::Other`], so parsing stops at once and the full path refuses the expression.
    fn next(&mut self) -> Token {
        let mut t = self.peek();
        self.peeked = None;
        self.last_end = t.end;
        if t.is_operator() {
            self.operators += 1;
        }
        if self.operators > MAX_OPERATORS {
            t.kind = Kind::Other;
        }
        t
    }

    fn expect(&mut self, kind: Kind) -> Option<Token> {
        let t = self.next();
        (t.kind == kind).then_some(t)
    }

    fn slice(&self, t: Token) -> &'a str {
        &self.text[t.start..t.end]
    }

    /// Whether the next token is the keyword `word`.
    fn at(&mut self, word: Word) -> bool {
        self.peek().word == word
    }

    /// Binary operators binding at least as tightly as `min` (1 `or` .. 6 `^`).
    fn expr(&mut self, min: u8) -> Option<Expr<'a>> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let mut lhs = self.unary()?;
        while let Some((op, precedence)) = self.binary_operator() {
            if precedence < min {
                break;
            }
            self.next();
            let (bool_modifier, matching, group) = self.binary_modifiers()?;
            // `^` is right-associative; the others are left-associative.
            let next_min = if op == BinOp::Pow {
                precedence
            } else {
                precedence + 1
            };
            let rhs = self.expr(next_min)?;
            lhs = binary(op, lhs, rhs, bool_modifier, matching, group)?;
        }
        self.depth -= 1;
        Some(lhs)
    }

    fn binary_operator(&mut self) -> Option<(BinOp, u8)> {
        let t = self.peek();
        let op = match t.kind {
            Kind::Add => BinOp::Add,
            Kind::Sub => BinOp::Sub,
            Kind::Mul => BinOp::Mul,
            Kind::Div => BinOp::Div,
            Kind::Mod => BinOp::Mod,
            Kind::Pow => BinOp::Pow,
            Kind::EqEq => BinOp::Eq,
            Kind::NotEq => BinOp::Ne,
            Kind::Lt => BinOp::Lt,
            Kind::Le => BinOp::Le,
            Kind::Gt => BinOp::Gt,
            Kind::Ge => BinOp::Ge,
            Kind::Ident => match t.word {
                Word::And => BinOp::And,
                Word::Or => BinOp::Or,
                Word::Unless => BinOp::Unless,
                Word::Atan2 => BinOp::Atan2,
                _ => return None,
            },
            _ => return None,
        };
        Some((op, precedence(op)))
    }

    /// `bool`, `on|ignoring (labels)`, `group_left|group_right [(labels)]`, in that order.
    #[allow(clippy::type_complexity)]
    fn binary_modifiers(&mut self) -> Option<(bool, Option<Matching<'a>>, Option<Group<'a>>)> {
        let bool_modifier = self.at(Word::Bool);
        if bool_modifier {
            self.next();
        }
        let mut matching = None;
        if self.at(Word::On) {
            self.next();
            matching = Some(Matching::On(self.labels()?));
        } else if self.at(Word::Ignoring) {
            self.next();
            matching = Some(Matching::Ignoring(self.labels()?));
        }
        let mut group = None;
        let left = self.at(Word::GroupLeft);
        if left || self.at(Word::GroupRight) {
            matching.as_ref()?;
            self.next();
            let labels = if self.peek().kind == Kind::LParen {
                self.labels()?
            } else {
                Vec::new()
            };
            group = Some(if left {
                Group::Left(labels)
            } else {
                Group::Right(labels)
            });
        }
        Some((bool_modifier, matching, group))
    }

    /// `(a, b)`, `()` or `(a, b,)`: plain label names only.
    fn labels(&mut self) -> Option<Vec<&'a str>> {
        self.expect(Kind::LParen)?;
        let mut labels = Vec::new();
        loop {
            let t = self.next();
            match t.kind {
                Kind::RParen => return Some(labels),
                Kind::Ident => labels.push(self.label_name(t)?),
                _ => return None,
            }
            match self.next().kind {
                Kind::Comma => {}
                Kind::RParen => return Some(labels),
                _ => return None,
            }
        }
    }

    /// A label name: no `:`, not a keyword.
    fn label_name(&self, t: Token) -> Option<&'a str> {
        let name = self.slice(t);
        (t.word == Word::Name && !name.contains(':')).then_some(name)
    }

    /// A sign, or the postfix expression it applies to. A sign binds like `*`: its operand
    /// takes only `^` with it.
    fn unary(&mut self) -> Option<Expr<'a>> {
        let t = self.peek();
        match t.kind {
            Kind::Add | Kind::Sub => {
                self.next();
                let operand = self.expr(precedence(BinOp::Pow))?;
                if !matches!(operand.value_type(), Type::Scalar | Type::Vector) {
                    return None;
                }
                if t.kind == Kind::Add {
                    return Some(operand);
                }
                let span = Span::new(t.start, operand.span().end);
                Some(match operand {
                    Expr::Number(n, _) => Expr::Number(Number(-n.0), span),
                    other => Expr::Negate(Box::new(other), span),
                })
            }
            _ => self.postfix(),
        }
    }

    /// A primary expression followed by ranges, subqueries and `offset`.
    fn postfix(&mut self) -> Option<Expr<'a>> {
        let mut expr = self.primary()?;
        loop {
            let t = self.peek();
            if t.kind == Kind::LBracket {
                self.next();
                // The crate refuses a comment inside brackets (Prometheus does not).
                let close = self.text[t.end..].find(']').map(|i| t.end + i)?;
                if self.text[t.end..close].contains('#') {
                    return None;
                }
                let range = self.duration()?;
                match self.next().kind {
                    Kind::RBracket => expr = range_of(expr, range, self.last_end())?,
                    Kind::Colon => {
                        let step = if self.peek().kind == Kind::RBracket {
                            None
                        } else {
                            Some(self.duration()?)
                        };
                        self.expect(Kind::RBracket)?;
                        if expr.value_type() != Type::Vector {
                            return None;
                        }
                        let start = expr.span().start;
                        expr = Expr::Subquery(Box::new(Subquery {
                            expr,
                            range,
                            step,
                            offset: None,
                            span: Span::new(start, self.last_end()),
                        }));
                    }
                    _ => return None,
                }
            } else if t.word == Word::Offset {
                self.next();
                let offset = match self.peek().kind {
                    Kind::Sub => {
                        self.next();
                        Offset::Back(self.duration()?)
                    }
                    Kind::Add => {
                        self.next();
                        Offset::Forward(self.duration()?)
                    }
                    _ => Offset::Forward(self.duration()?),
                };
                expr = offset_of(expr, offset, self.last_end())?;
            } else {
                return Some(expr);
            }
        }
    }

    /// The end of the last token taken.
    fn last_end(&self) -> usize {
        self.last_end
    }

    /// A non-zero duration written with units (a plain number takes the full path).
    fn duration(&mut self) -> Option<Duration> {
        let t = self.expect(Kind::Duration)?;
        duration(self.slice(t))
    }

    fn primary(&mut self) -> Option<Expr<'a>> {
        let t = self.next();
        match t.kind {
            Kind::Number => {
                // A finite literal past float64 is out of range for Prometheus.
                let value = promql_parser::util::parse_str_radix(self.slice(t)).ok()?;
                value
                    .is_finite()
                    .then(|| Expr::Number(Number(value), Span::new(t.start, t.end)))
            }
            Kind::String => Some(Expr::String(self.string(t)?, Span::new(t.start, t.end))),
            Kind::LParen => {
                let inner = self.expr(0)?;
                let close = self.expect(Kind::RParen)?;
                Some(Expr::Paren(Box::new(inner), Span::new(t.start, close.end)))
            }
            Kind::LBrace => self.selector(None, t.start),
            Kind::Ident => self.named(t),
            _ => None,
        }
    }

    /// What starts with a name: an aggregation, a call, `Inf`/`NaN`, or a selector.
    fn named(&mut self, t: Token) -> Option<Expr<'a>> {
        let name = self.slice(t);
        match t.word {
            Word::Name => {}
            Word::Aggregator(op) => return self.aggregate(op, t.start),
            Word::Inf | Word::NaN => {
                let value = promql_parser::util::parse_str_radix(name).ok()?;
                return Some(Expr::Number(Number(value), Span::new(t.start, t.end)));
            }
            _ => return None,
        }
        if self.peek().kind == Kind::LParen {
            let sig = functions::lookup(name)?;
            self.next();
            let (args, end) = self.args()?;
            let types: Vec<Type> = args.iter().map(Expr::value_type).collect();
            if !functions::fits(&sig, &types) {
                return None;
            }
            return Some(Expr::Call(Box::new(Call {
                name,
                args,
                returns: sig.returns,
                span: Span::new(t.start, end),
            })));
        }
        self.selector(Some((name, t.end)), t.start)
    }

    /// Arguments after the `(`, to the `)`: (arguments, end of the `)`).
    fn args(&mut self) -> Option<(Vec<Expr<'a>>, usize)> {
        let mut args = Vec::new();
        if self.peek().kind == Kind::RParen {
            return Some((args, self.next().end));
        }
        loop {
            args.push(self.expr(0)?);
            let t = self.next();
            match t.kind {
                Kind::Comma => {}
                Kind::RParen => return Some((args, t.end)),
                _ => return None,
            }
        }
    }

    /// `op [by|without (labels)] (args) [by|without (labels)]`.
    fn aggregate(&mut self, op: &'static str, start: usize) -> Option<Expr<'a>> {
        let mut grouping = self.grouping()?;
        self.expect(Kind::LParen)?;
        let (mut args, mut end) = self.args()?;
        if grouping.is_none() {
            grouping = self.grouping()?;
            if grouping.is_some() {
                end = self.last_end();
            }
        }
        let with_param = matches!(op, "topk" | "bottomk" | "quantile" | "count_values");
        let expr = args.pop()?;
        let param = if with_param { Some(args.pop()?) } else { None };
        if !args.is_empty() || expr.value_type() != Type::Vector {
            return None;
        }
        let param_type = match op {
            "count_values" => Some(Type::String),
            "topk" | "bottomk" | "quantile" => Some(Type::Scalar),
            _ => None,
        };
        if param.as_ref().map(Expr::value_type) != param_type {
            return None;
        }
        Some(Expr::Aggregate(Box::new(Aggregate {
            op,
            param,
            expr,
            grouping,
            span: Span::new(start, end),
        })))
    }

    /// `by (labels)` or `without (labels)`, if next.
    fn grouping(&mut self) -> Option<Option<Grouping<'a>>> {
        if self.at(Word::By) {
            self.next();
            return Some(Some(Grouping::By(self.labels()?)));
        }
        if self.at(Word::Without) {
            self.next();
            return Some(Some(Grouping::Without(self.labels()?)));
        }
        Some(None)
    }

    /// A selector: the name (and its end) when written, then `{matchers}` if next. `start`
    /// is the name's or the `{`'s first byte.
    fn selector(&mut self, name: Option<(&'a str, usize)>, start: usize) -> Option<Expr<'a>> {
        let braces = match name {
            None => Some(self.braces(start)?),
            Some(_) if self.peek().kind == Kind::LBrace => {
                let open = self.next();
                Some(self.braces(open.start)?)
            }
            Some(_) => None,
        };
        let selector_end = match (&braces, name) {
            (Some(b), _) => b.span.end,
            (None, Some((_, end))) => end,
            (None, None) => return None,
        };
        let matchers = braces.as_ref().map_or(&[][..], |b| &b.matchers[..]);
        match name {
            Some(_) if matchers.iter().any(|m| m.name == "__name__") => return None,
            // Without a name, some matcher must not match the empty string; regexes take
            // the full path.
            None if !matchers.iter().any(|m| match m.op {
                MatchOp::Equal => !m.value.is_empty(),
                MatchOp::NotEqual => m.value.is_empty(),
                MatchOp::Regex | MatchOp::NotRegex => false,
            }) =>
            {
                return None;
            }
            _ => {}
        }
        Some(Expr::Selector(Box::new(Selector {
            name: name.map(|(n, _)| n),
            braces,
            range: None,
            offset: None,
            span: Span::new(start, selector_end),
            head: Span::new(start, selector_end),
        })))
    }

    /// The matchers after a `{` at `open`, to the `}`; a comma may end the list.
    fn braces(&mut self, open: usize) -> Option<Braces<'a>> {
        // Most selectors have a few matchers: one allocation for them.
        let mut matchers = Vec::with_capacity(4);
        let mut after_comma = false;
        loop {
            let t = self.next();
            match t.kind {
                Kind::RBrace if matchers.is_empty() || after_comma => {
                    return Some(Braces {
                        matchers,
                        span: Span::new(open, t.end),
                        trailing_comma: after_comma,
                    });
                }
                Kind::Ident => matchers.push(self.matcher(t)?),
                _ => return None,
            }
            let t = self.next();
            match t.kind {
                Kind::Comma => after_comma = true,
                Kind::RBrace => {
                    return Some(Braces {
                        matchers,
                        span: Span::new(open, t.end),
                        trailing_comma: false,
                    });
                }
                _ => return None,
            }
        }
    }

    /// `name op "value"`, its name already taken.
    fn matcher(&mut self, name: Token) -> Option<Matcher<'a>> {
        let label = self.label_name(name)?;
        let op = match self.next().kind {
            Kind::Assign => MatchOp::Equal,
            Kind::NotEq => MatchOp::NotEqual,
            Kind::Regex => MatchOp::Regex,
            Kind::NotRegex => MatchOp::NotRegex,
            _ => return None,
        };
        let literal = self.expect(Kind::String)?;
        let value = self.string(literal)?;
        if matches!(op, MatchOp::Regex | MatchOp::NotRegex) && !super::pattern_is_valid(&value) {
            return None;
        }
        Some(Matcher {
            name: label,
            op,
            value,
            span: Span::new(name.start, literal.end),
        })
    }

    /// A string literal's value: borrowed when it holds no escape.
    fn string(&self, t: Token) -> Option<Cow<'a, str>> {
        let literal = self.slice(t);
        let inner = &literal[1..literal.len() - 1];
        if !inner.contains('\\') {
            return Some(Cow::Borrowed(inner));
        }
        promql_parser::util::unquote_string(literal)
            .ok()
            .map(Cow::Owned)
    }
}

fn precedence(op: BinOp) -> u8 {
    match op {
        BinOp::Or => 1,
        BinOp::And | BinOp::Unless => 2,
        BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le => 3,
        BinOp::Add | BinOp::Sub => 4,
        BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Atan2 => 5,
        BinOp::Pow => 6,
    }
}

fn comparison(op: BinOp) -> bool {
    precedence(op) == 3
}

fn set_operator(op: BinOp) -> bool {
    matches!(op, BinOp::And | BinOp::Or | BinOp::Unless)
}

/// A binary expression, if `promql-parser` would build it.
fn binary<'a>(
    op: BinOp,
    lhs: Expr<'a>,
    rhs: Expr<'a>,
    bool_modifier: bool,
    matching: Option<Matching<'a>>,
    group: Option<Group<'a>>,
) -> Option<Expr<'a>> {
    let (l, r) = (lhs.value_type(), rhs.value_type());
    let operand = |t: Type| matches!(t, Type::Scalar | Type::Vector);
    let both_vectors = l == Type::Vector && r == Type::Vector;
    let fine = operand(l)
        && operand(r)
        && (!bool_modifier || comparison(op))
        && (!comparison(op) || bool_modifier || !(l == Type::Scalar && r == Type::Scalar))
        && (!set_operator(op) || (both_vectors && group.is_none()))
        && ((matching.is_none() && group.is_none()) || both_vectors)
        && !on_and_group_share_a_label(&matching, &group);
    if !fine {
        return None;
    }
    let span = Span::new(lhs.span().start, rhs.span().end);
    Some(Expr::Binary(Box::new(Binary {
        op,
        lhs,
        rhs,
        bool_modifier,
        matching,
        group,
        span,
    })))
}

fn on_and_group_share_a_label(matching: &Option<Matching<'_>>, group: &Option<Group<'_>>) -> bool {
    match (matching, group) {
        (Some(Matching::On(on)), Some(Group::Left(g) | Group::Right(g))) => {
            on.iter().any(|l| g.contains(l))
        }
        _ => false,
    }
}

/// `expr[range]`: on a plain selector only.
fn range_of(expr: Expr<'_>, range: Duration, end: usize) -> Option<Expr<'_>> {
    match expr {
        Expr::Selector(mut s) if s.range.is_none() && s.offset.is_none() => {
            s.range = Some(range);
            s.span.end = end;
            Some(Expr::Selector(s))
        }
        _ => None,
    }
}

/// `expr offset d`: on a selector or a subquery, once.
fn offset_of(expr: Expr<'_>, offset: Offset, end: usize) -> Option<Expr<'_>> {
    match expr {
        Expr::Selector(mut s) if s.offset.is_none() => {
            s.offset = Some(offset);
            s.span.end = end;
            Some(Expr::Selector(s))
        }
        Expr::Subquery(mut s) if s.offset.is_none() => {
            s.offset = Some(offset);
            s.span.end = end;
            Some(Expr::Subquery(s))
        }
        _ => None,
    }
}

/// A non-zero duration as Prometheus writes it (`prometheus::duration`, which the config's
/// durations are read with too): None when zero or written otherwise, and when a part is past
/// `u32` (`promql-parser` reads such a part as 0).
pub(super) fn duration(text: &str) -> Option<Duration> {
    let parts_fit = text
        .split(|c: char| c.is_ascii_alphabetic())
        .all(|n| n.is_empty() || n.parse::<u32>().is_ok());
    let d = crate::prometheus::duration::parse(text).ok()?;
    (parts_fit && !d.is_zero()).then(|| Duration::from_millis(d.0))
}
