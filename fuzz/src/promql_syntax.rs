//! The oracle of the `promql_syntax` target: promfed's own PromQL parser (`promql::syntax`)
//! against the full path (`promql::parse`: `dialect`, then promql-parser). The fast parser may
//! refuse what the full path reads, never the reverse, and what it reads it must read exactly
//! as the crate does. `tests/it/syntax_properties.rs` includes this file by `#[path]` for the
//! grammar-based property test, so it names only promfed's and the crate's items.

use promfed::promql::syntax::{self, Expr, ast};
use promql_parser::parser::value::ValueType;

/// What the two parsers made of a text that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The fast parser (`syntax::parse`) read it.
    pub fast: bool,
    /// The full path (`promql::parse`) read it.
    pub full: bool,
}

/// Parse `text` both ways and panic where they disagree: the fast parser reads what the full
/// path refuses, `to_crate` of its AST is not the crate's AST (compared with `==` and by
/// `Debug`, which also tells `0` from `-0`), its type is not the crate's, a second parse differs
/// (spans included), or a span is outside the text, off a char boundary or outside its parent.
pub fn check(text: &str) -> Verdict {
    let full = promfed::promql::parse(text);
    let Some(ast) = syntax::parse(text) else {
        return Verdict {
            fast: false,
            full: full.is_ok(),
        };
    };
    let theirs = match full {
        Ok(theirs) => theirs,
        Err(e) => {
            panic!("the fast parser reads {text:?}, the full path refuses it ({e})\nfast: {ast:?}")
        }
    };
    let ours = syntax::to_crate(&ast);
    let (ours_debug, theirs_debug) = (format!("{ours:?}"), format!("{theirs:?}"));
    assert!(
        ours == theirs && ours_debug == theirs_debug,
        "{text:?} reads differently\nfast: {ours_debug}\nfull: {theirs_debug}"
    );
    assert_eq!(
        value_type(ast.value_type()),
        theirs.value_type(),
        "{text:?}: the fast parser types it otherwise"
    );
    let again = syntax::parse(text)
        .unwrap_or_else(|| panic!("{text:?}: read once, refused the second time"));
    assert_eq!(
        format!("{again:?}"),
        format!("{ast:?}"),
        "{text:?}: two parses differ"
    );
    Spans { text }.expr(&ast, ast::Span::new(0, text.len()));
    Verdict {
        fast: true,
        full: true,
    }
}

fn value_type(t: ast::Type) -> ValueType {
    match t {
        ast::Type::Scalar => ValueType::Scalar,
        ast::Type::Vector => ValueType::Vector,
        ast::Type::Matrix => ValueType::Matrix,
        ast::Type::String => ValueType::String,
    }
}

/// The span checks: every node's span is non-empty, on char boundaries, inside its parent's
/// and after its earlier siblings'; a few spans also have documented ends (`(`...`)`,
/// `{`...`}`, a call's name) that are checked against the text.
struct Spans<'t> {
    text: &'t str,
}

impl Spans<'_> {
    fn within(&self, what: &str, span: ast::Span, parent: ast::Span) {
        let text = self.text;
        assert!(
            parent.start <= span.start && span.start < span.end && span.end <= parent.end,
            "{text:?}: {what} at {}..{} is empty or outside {}..{}",
            span.start,
            span.end,
            parent.start,
            parent.end
        );
        assert!(
            text.is_char_boundary(span.start) && text.is_char_boundary(span.end),
            "{text:?}: {what} at {}..{} is off a char boundary",
            span.start,
            span.end
        );
    }

    /// The text of `span` (already checked to be a valid range).
    fn at(&self, span: ast::Span) -> &str {
        &self.text[span.start..span.end]
    }

    /// Siblings come in order and do not overlap.
    fn in_order(&self, what: &str, spans: &[ast::Span]) {
        for pair in spans.windows(2) {
            assert!(
                pair[0].end <= pair[1].start,
                "{:?}: {what}: {}..{} overlaps or follows {}..{}",
                self.text,
                pair[0].start,
                pair[0].end,
                pair[1].start,
                pair[1].end
            );
        }
    }

    fn expr(&self, expr: &Expr<'_>, parent: ast::Span) {
        let span = expr.span();
        self.within("expression", span, parent);
        match expr {
            Expr::Number(..) | Expr::String(..) => {}
            Expr::Selector(selector) => self.selector(selector),
            Expr::Call(call) => {
                assert!(
                    self.at(span).starts_with(call.name),
                    "{:?}: call of {} spans {:?}",
                    self.text,
                    call.name,
                    self.at(span)
                );
                for arg in &call.args {
                    self.expr(arg, span);
                }
                let spans: Vec<_> = call.args.iter().map(Expr::span).collect();
                self.in_order("arguments", &spans);
            }
            Expr::Aggregate(aggregate) => {
                let head = self.at(span).get(..aggregate.op.len());
                assert!(
                    head.is_some_and(|h| h.eq_ignore_ascii_case(aggregate.op)),
                    "{:?}: {} spans {:?}",
                    self.text,
                    aggregate.op,
                    self.at(span)
                );
                let mut spans = Vec::new();
                if let Some(param) = &aggregate.param {
                    self.expr(param, span);
                    spans.push(param.span());
                }
                self.expr(&aggregate.expr, span);
                spans.push(aggregate.expr.span());
                self.in_order("aggregation parameter and operand", &spans);
            }
            Expr::Negate(inner, _) => self.expr(inner, span),
            Expr::Binary(binary) => {
                self.expr(&binary.lhs, span);
                self.expr(&binary.rhs, span);
                self.in_order("operands", &[binary.lhs.span(), binary.rhs.span()]);
            }
            Expr::Paren(inner, _) => {
                let inside = self.at(span);
                assert!(
                    inside.starts_with('(') && inside.ends_with(')'),
                    "{:?}: parentheses span {inside:?}",
                    self.text
                );
                self.expr(inner, ast::Span::new(span.start + 1, span.end - 1));
            }
            Expr::Subquery(subquery) => self.expr(&subquery.expr, span),
        }
    }

    fn selector(&self, selector: &ast::Selector<'_>) {
        let span = selector.span;
        let text = self.text;
        let head = selector.head;
        assert!(
            span.start == head.start && head.start < head.end && head.end <= span.end,
            "{text:?}: head {}..{} outside {}..{}",
            head.start,
            head.end,
            span.start,
            span.end
        );
        let Some(braces) = &selector.braces else {
            let name = selector.name.expect("a selector has a name or braces");
            let written = &text[span.start..head.end];
            assert_eq!(
                written, name,
                "{text:?}: the selector's name spans {written:?}"
            );
            return;
        };
        self.within("braces", braces.span, span);
        let inside = self.at(braces.span);
        assert!(
            inside.starts_with('{') && inside.ends_with('}'),
            "{text:?}: braces span {inside:?}"
        );
        assert_eq!(
            head.end, braces.span.end,
            "{text:?}: the head does not end with the braces"
        );
        if let Some(name) = selector.name
            && span.start < braces.span.start
        {
            let before = &text[span.start..braces.span.start];
            assert!(
                before.starts_with(name),
                "{text:?}: the selector's name {name:?} spans {before:?}"
            );
        }
        let inner = ast::Span::new(braces.span.start + 1, braces.span.end - 1);
        for matcher in &braces.matchers {
            self.within("matcher", matcher.span, inner);
            let written = self.at(matcher.span);
            assert!(
                written.starts_with(matcher.name) || written.starts_with(['"', '\'', '`']),
                "{text:?}: matcher on {:?} spans {written:?}",
                matcher.name
            );
        }
        let spans: Vec<_> = braces.matchers.iter().map(|m| m.span).collect();
        self.in_order("matchers", &spans);
    }
}
