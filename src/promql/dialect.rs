//! PromQL as Prometheus reads it, made readable for `promql-parser`.
//!
//! The crate parses most PromQL, but not all that Prometheus 2.x and 3.x accept. An expression
//! becomes a *crate view*: a text of the same byte length, every token at the same position,
//! that the crate can parse, and what is needed to give the parsed AST the user's names back.
//! It is built from the crate's own lexer tokens:
//!
//! - names the crate reserves and Prometheus does not (`anchored` and `smoothed` as metric or
//!   label names, `or` as a label name in braces, where the crate reads its own `or` between
//!   matchers) become placeholder identifiers of the same length, renamed back in the AST;
//! - Prometheus 3's `anchored`/`smoothed` modifiers and the `/` of its trim operators `</` and
//!   `>/` are blanked, and its duration expressions (`[5m+1m]`, `[1h:step()]`,
//!   `offset (1h)`) become a same-length duration. None of them selects series, so the
//!   selectors, all that scoping changes, are the same; but the AST no longer shows them, so
//!   such a view is *lossy* and an AST parsed from it must never be printed as a result;
//! - Prometheus 2.x backtick strings that hold `\` become double-quoted strings (the crate's
//!   lexer reads `\` in them as an escape). This one changes lengths, so it comes first, and
//!   its shifts are kept to report positions in the user's text.
//!
//! Errors give line:column in the user's expression (found by `promql::position`: the crate
//! reports none), and say so when the crate lacks something Prometheus accepts.

use std::borrow::Cow;
use std::sync::Once;

use promql_parser::label::Labels;
use promql_parser::parser::token::{
    T_ADD, T_ANCHORED, T_AT, T_ATAN2, T_AVG, T_BOOL, T_BOTTOMK, T_BY, T_COLON, T_COMMA, T_COUNT,
    T_COUNT_VALUES, T_DIV, T_DURATION, T_END, T_EOF, T_EQL, T_EQL_REGEX, T_FILL, T_FILL_LEFT,
    T_FILL_RIGHT, T_GROUP, T_GROUP_LEFT, T_GROUP_RIGHT, T_GTR, T_IDENTIFIER, T_IGNORING, T_LAND,
    T_LEFT_BRACE, T_LEFT_BRACKET, T_LEFT_PAREN, T_LIMIT_RATIO, T_LIMITK, T_LOR, T_LSS, T_LUNLESS,
    T_MAX, T_METRIC_IDENTIFIER, T_MIN, T_MOD, T_MUL, T_NEQ, T_NEQ_REGEX, T_NUMBER, T_OFFSET, T_ON,
    T_POW, T_QUANTILE, T_RIGHT_BRACE, T_RIGHT_BRACKET, T_RIGHT_PAREN, T_SMOOTHED, T_START,
    T_STDDEV, T_STDVAR, T_STRING, T_SUB, T_SUM, T_TOPK, T_WITHOUT, TokenId, TokenType,
};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    self, Expr, Function, LabelModifier, VectorMatchCardinality, VectorSelector,
};

use super::lex::{Token, check_nesting, lex};
use super::walk::for_each_node_mut;
use super::{MAX_NESTING, ScopeError, position};

static EXTRA_FUNCTIONS: Once = Once::new();

/// Functions Prometheus 2.x knows that the parser does not.
pub(super) fn register_prometheus2_functions() {
    EXTRA_FUNCTIONS.call_once(|| {
        // holt_winters was renamed double_exponential_smoothing in Prometheus 3; 2.x rules use it.
        let holt_winters = Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        // Ignore a conflict: a future parser that knows the function itself is fine.
        let _ = parser::register_extra_functions(vec![holt_winters]);
    });
}

/// An expression and the crate's view of it.
#[derive(Debug)]
pub(super) struct Source<'a> {
    /// The user's expression.
    original: &'a str,
    /// The expression with backtick strings that hold `\` rewritten: the text promfed splices
    /// into and returns.
    pub text: Cow<'a, str>,
    /// (end in `text`, end in `original`) of each rewritten string, in order.
    shifts: Vec<(usize, usize)>,
    /// The crate's view of `text`.
    pub view: View,
}

/// What the crate parses: the same length and token positions as the text it was made from.
#[derive(Debug, Default)]
pub(super) struct View {
    /// The edited text; `None` when it is the text itself.
    text: Option<String>,
    /// The crate's tokens of the view without `T_EOF`, every name (of a selector, in a label
    /// list or a matcher) as `T_IDENTIFIER`, whatever keyword it spells.
    pub tokens: Vec<Token>,
    /// (placeholder, the user's name).
    renames: Vec<(String, String)>,
    /// How many names were renamed.
    renamed: usize,
    /// Something the AST cannot show was blanked or replaced (see the module docs).
    pub lossy: bool,
}

impl<'a> Source<'a> {
    /// Rewrite backtick strings, lex, build the crate view and check the nesting limits.
    pub fn new(expr: &'a str) -> Result<Source<'a>, ScopeError> {
        register_prometheus2_functions();
        let (text, shifts) = normalize_raw_strings(expr);
        let mut source = Source {
            original: expr,
            text,
            shifts,
            view: View::default(),
        };
        let (edited, tokens) = lex_prometheus(&source.text).map_err(|e| source.error(e))?;
        // Before anything else walks the tokens: the limits bound all later work.
        check_nesting(&tokens)?;
        source.view = View::new(edited, &source.text, &tokens).map_err(|e| source.error(e))?;
        Ok(source)
    }

    /// The view's text.
    pub fn view_text(&self) -> &str {
        self.view.text.as_deref().unwrap_or(&self.text)
    }

    /// Parse the view and give the AST the user's names; errors say where they are.
    pub fn parse(&self) -> Result<Expr, ScopeError> {
        self.view
            .parse_text(self.view_text())
            .map_err(|message| self.explain(message))
    }

    /// Byte `at` of `text` as an offset in the user's expression (backtick strings rewritten
    /// before it change lengths).
    fn original_offset(&self, at: usize) -> usize {
        let (text_end, original_end) = self
            .shifts
            .iter()
            .take_while(|(text_end, _)| *text_end <= at)
            .last()
            .copied()
            .unwrap_or((0, 0));
        original_end + (at - text_end)
    }

    /// The error, as `line:column: why` in the user's expression.
    fn error(&self, e: Located) -> ScopeError {
        let why = match e.unsupported {
            Some(what) => format!(
                "promtool accepts {what}, but the PromQL parser promfed uses does not support \
                 it ({})",
                e.message
            ),
            None => e.message,
        };
        match e.at {
            Some(at) => {
                let offset = self.original_offset(at);
                let (line, column) = position::line_column(self.original, offset);
                ScopeError::Parse(format!("{line}:{column}: {why}"))
            }
            None => ScopeError::Parse(why),
        }
    }

    /// A crate parse error of the view, placed by `promql::position` (the view has the text's
    /// positions).
    fn explain(&self, message: String) -> ScopeError {
        let at = position::offset(self.view_text());
        self.error(Located {
            message,
            at: Some(at),
            unsupported: None,
        })
    }
}

/// Lex `text` with the crate's lexer. Prometheus 3 duration expressions in `[...]` stop it;
/// each is replaced (see [`replace_bracket_duration`]) until the text lexes. Returns the
/// edited text, if any, and its tokens.
fn lex_prometheus(text: &str) -> Result<(Option<String>, Vec<Token>), Located> {
    let mut edited: Option<String> = None;
    // Each round replaces at least one bracket; a bound keeps hostile input cheap.
    for _ in 0..MAX_LEX_ROUNDS {
        let current = edited.as_deref().unwrap_or(text);
        match lex(current) {
            Ok(tokens) => return Ok((edited, tokens)),
            Err(message) => {
                let at = position::lexer_error_offset(current);
                match replace_bracket_duration(current, at) {
                    Some(next) => edited = Some(next),
                    None => return Err(explain_lex_error(current, message, at)),
                }
            }
        }
    }
    Err(Located {
        message: format!("more than {MAX_LEX_ROUNDS} ranges with duration expressions"),
        at: None,
        unsupported: None,
    })
}

/// Rounds of [`lex_prometheus`]: ranges with duration expressions in one expression.
const MAX_LEX_ROUNDS: usize = 64;

impl View {
    /// The view of `text` (or of `edited`, its lexable form) from the crate's `tokens` of it.
    fn new(edited: Option<String>, text: &str, tokens: &[Token]) -> Result<View, Located> {
        let lossy = edited.is_some();
        let current = edited.as_deref().unwrap_or(text);
        let first = classify(current, tokens)?;
        if first.edits.is_empty() {
            return Ok(View {
                text: edited,
                tokens: first.tokens,
                lossy,
                ..View::default()
            });
        }

        let mut bytes = current.as_bytes().to_vec();
        let mut renames: Vec<(String, String)> = Vec::new();
        let mut renamed = 0;
        let mut lossy = lossy;
        for &edit in &first.edits {
            match edit {
                Edit::Rename(start, end) => {
                    let word = &current[start..end];
                    let known = renames.iter().find(|(_, w)| w == word).map(|(p, _)| p);
                    let placeholder = match known {
                        Some(p) => p.clone(),
                        None => {
                            let p = placeholder(word, current, &renames).ok_or_else(|| {
                                Located::at(format!("no placeholder for the name {word:?}"), start)
                            })?;
                            renames.push((p.clone(), word.to_string()));
                            p
                        }
                    };
                    bytes[start..end].copy_from_slice(placeholder.as_bytes());
                    renamed += 1;
                }
                Edit::Blank(start, end) => {
                    bytes[start..end].fill(b' ');
                    lossy = true;
                }
                Edit::Duration(start, end) => {
                    write_duration(&mut bytes[start..end]);
                    lossy = true;
                }
            }
        }
        let internal = |what: String| Located {
            message: format!("internal error: {what}"),
            at: None,
            unsupported: None,
        };
        // Whole ASCII tokens were replaced with ASCII of the same length.
        let text = String::from_utf8(bytes).map_err(|_| internal("view is not UTF-8".into()))?;
        let tokens = lex(&text).map_err(|e| internal(format!("view does not lex: {e}")))?;
        let second = classify(&text, &tokens)?;
        if !second.edits.is_empty() {
            return Err(internal("view still needs edits".into()));
        }
        Ok(View {
            text: Some(text),
            tokens: second.tokens,
            renames,
            renamed,
            lossy,
        })
    }

    /// Parse `text` (this view's text, or one with the same names in the same places) and
    /// give the AST the user's names.
    pub fn parse_text(&self, text: &str) -> Result<Expr, String> {
        let mut expr = parser::parse(text)?;
        self.restore(&mut expr)?;
        Ok(expr)
    }

    /// Put the user's names back where the placeholders are.
    fn restore(&self, expr: &mut Expr) -> Result<(), String> {
        if self.renames.is_empty() {
            return Ok(());
        }
        let mut count = 0;
        let mut rename = |s: &mut String| {
            if let Some((_, original)) = self.renames.iter().find(|(p, _)| p == s) {
                s.clone_from(original);
                count += 1;
            }
        };
        for_each_node_mut(expr, &mut |node| match node {
            Expr::VectorSelector(vs) => rename_selector(vs, &mut rename),
            Expr::MatrixSelector(ms) => rename_selector(&mut ms.vs, &mut rename),
            Expr::Aggregate(agg) => {
                if let Some(LabelModifier::Include(ls) | LabelModifier::Exclude(ls)) =
                    &mut agg.modifier
                {
                    rename_labels(ls, &mut rename);
                }
            }
            Expr::Binary(b) => {
                if let Some(m) = &mut b.modifier {
                    if let Some(LabelModifier::Include(ls) | LabelModifier::Exclude(ls)) =
                        &mut m.matching
                    {
                        rename_labels(ls, &mut rename);
                    }
                    if let VectorMatchCardinality::ManyToOne(ls)
                    | VectorMatchCardinality::OneToMany(ls) = &mut m.card
                    {
                        rename_labels(ls, &mut rename);
                    }
                }
            }
            _ => {}
        });
        // Each renamed token is one name in the AST. Any other count means a placeholder also
        // came from somewhere else (a quoted name spelling it with escapes): trust nothing.
        if count != self.renamed {
            return Err(format!(
                "internal error: {count} names to rename in the AST, {} in the text",
                self.renamed
            ));
        }
        Ok(())
    }
}

fn rename_selector(vs: &mut VectorSelector, rename: &mut dyn FnMut(&mut String)) {
    if let Some(name) = &mut vs.name {
        rename(name);
    }
    for m in &mut vs.matchers.matchers {
        rename(&mut m.name);
    }
    for m in vs.matchers.or_matchers.iter_mut().flatten() {
        rename(&mut m.name);
    }
}

fn rename_labels(ls: &mut Labels, rename: &mut dyn FnMut(&mut String)) {
    for l in &mut ls.labels {
        rename(l);
    }
}

/// An error before parsing: message, byte offset in the text, and what Prometheus accepts that
/// the crate does not, if that is the reason.
#[derive(Debug)]
struct Located {
    message: String,
    at: Option<usize>,
    unsupported: Option<&'static str>,
}

impl Located {
    fn at(message: String, at: usize) -> Located {
        Located {
            message,
            at: Some(at),
            unsupported: None,
        }
    }
}

/// A lexer error, explained: a `_` between digits is Prometheus 3 syntax the crate lacks.
fn explain_lex_error(text: &str, message: String, at: usize) -> Located {
    let digit_separator = text.get(at..).is_some_and(|rest| rest.starts_with('_'))
        && text[..at].ends_with(|c: char| c.is_ascii_hexdigit())
        && text[at + 1..].starts_with(|c: char| c.is_ascii_hexdigit());
    Located {
        message,
        at: Some(at),
        unsupported: digit_separator
            .then_some("`_` between the digits of a number (Prometheus 3: `1_000`)"),
    }
}

/// Prometheus 3 reads arithmetic, `step()`, `range()`, `min_of()` and `max_of()` of durations
/// inside `[...]`; the crate's lexer stops there. If the lexer failed at `at` inside a range or
/// subquery whose parts are valid duration expressions, return the text with each such part
/// written as a duration of the same length.
fn replace_bracket_duration(text: &str, at: usize) -> Option<String> {
    // Inside brackets the crate's lexer only reads numbers, durations, `:` and spaces, so the
    // bracket opens at the last `[` before `at` with only such characters in between.
    let open = text[..at]
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c.is_ascii_whitespace() || c == ':'))
        .filter(|&i| text[i..].starts_with('['))?;
    // A duration expression holds no brackets: the first `]` closes it.
    let close = open + text[open..].find(']')?;
    let inside = open + 1..close;
    let (range, step) = match text[inside.clone()].find(':') {
        Some(colon) => (
            inside.start..inside.start + colon,
            Some(inside.start + colon + 1..close),
        ),
        None => (inside, None),
    };
    let mut bytes = text.as_bytes().to_vec();
    let mut changed = false;
    for (part, optional) in [(Some(range), false), (step, true)] {
        let Some(part) = part else { continue };
        let tokens: Vec<Token> = lex(&text[part.clone()])
            .ok()?
            .into_iter()
            .filter(|t| t.0 != T_EOF)
            .collect();
        match tokens.as_slice() {
            [] if optional => {}
            [(T_NUMBER | T_DURATION, ..)] => {}
            // A negative literal is refused by Prometheus too ("must be greater than 0").
            [(T_SUB, ..), (T_NUMBER | T_DURATION, ..)] => return None,
            _ if is_duration_expr(&text[part.clone()], &tokens) => {
                write_duration(&mut bytes[part]);
                changed = true;
            }
            _ => return None,
        }
    }
    // ASCII replaced ASCII (every replaced part lexed as duration tokens).
    changed.then(|| String::from_utf8(bytes).ok()).flatten()
}

/// Overwrite `bytes` (at least two) with a duration the crate reads: `1s` and spaces.
fn write_duration(bytes: &mut [u8]) {
    bytes.fill(b' ');
    if let Some(d) = bytes.get_mut(..2) {
        d.copy_from_slice(b"1s");
    }
}

/// Whether `tokens` (of `text`, lexed on their own) are a Prometheus 3 duration expression:
/// numbers and durations with `+ - * / % ^`, parentheses, `step()`, `range()`, `min_of(a, b)`
/// and `max_of(a, b)`. A division or modulo by a literal 0 is refused, as Prometheus does.
fn is_duration_expr(text: &str, tokens: &[Token]) -> bool {
    struct Reader<'t> {
        text: &'t str,
        tokens: &'t [Token],
        i: usize,
    }
    impl Reader<'_> {
        fn peek(&self) -> Option<TokenId> {
            self.tokens.get(self.i).map(|t| t.0)
        }
        fn eat(&mut self, id: TokenId) -> bool {
            let ok = self.peek() == Some(id);
            self.i += usize::from(ok);
            ok
        }
        fn expr(&mut self, depth: usize) -> bool {
            if depth > MAX_NESTING {
                return false;
            }
            loop {
                while matches!(self.peek(), Some(T_ADD | T_SUB)) {
                    self.i += 1;
                }
                if !self.primary(depth) {
                    return false;
                }
                match self.peek() {
                    Some(op @ (T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW)) => {
                        self.i += 1;
                        if matches!(op, T_DIV | T_MOD) && self.zero_literal() {
                            return false;
                        }
                    }
                    _ => return true,
                }
            }
        }
        fn zero_literal(&self) -> bool {
            self.tokens.get(self.i).is_some_and(|&(id, s, e)| {
                id == T_NUMBER && self.text[s..e].parse::<f64>().is_ok_and(|v| v == 0.0)
            })
        }
        fn primary(&mut self, depth: usize) -> bool {
            let Some(&(id, s, e)) = self.tokens.get(self.i) else {
                return false;
            };
            self.i += 1;
            match id {
                T_NUMBER | T_DURATION => true,
                T_LEFT_PAREN => self.expr(depth + 1) && self.eat(T_RIGHT_PAREN),
                T_IDENTIFIER => {
                    let name = self.text[s..e].to_ascii_lowercase();
                    match name.as_str() {
                        "step" | "range" => self.eat(T_LEFT_PAREN) && self.eat(T_RIGHT_PAREN),
                        "min_of" | "max_of" => {
                            self.eat(T_LEFT_PAREN)
                                && self.expr(depth + 1)
                                && self.eat(T_COMMA)
                                && self.expr(depth + 1)
                                && self.eat(T_RIGHT_PAREN)
                        }
                        _ => false,
                    }
                }
                _ => false,
            }
        }
    }
    let mut reader = Reader { text, tokens, i: 0 };
    reader.expr(0) && reader.i == tokens.len()
}

/// An edit of the text for the crate (byte ranges of whole tokens).
#[derive(Debug, Clone, Copy)]
enum Edit {
    /// A name the crate reads as a keyword: a placeholder of the same length.
    Rename(usize, usize),
    /// Syntax the AST cannot hold and scoping need not see: spaces.
    Blank(usize, usize),
    /// A duration expression after `offset`: a duration of the same length.
    Duration(usize, usize),
}

struct Classified {
    tokens: Vec<Token>,
    edits: Vec<Edit>,
}

/// What an operand that just ended is, for the modifiers after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operand {
    Selector,
    Matrix,
    Other,
}

/// An open bracket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// The label list of `by`/`without` (`prefix`: before the aggregated expression) or of
    /// `on`, `ignoring`, `group_left`, `group_right` (`by` false).
    Labels { by: bool, prefix: bool },
    /// A call's or an aggregation's arguments, or a parenthesized expression.
    Group { aggregation: bool },
    /// `[...]`: whether a `:` was seen (a subquery), and what it follows.
    Bracket { colon: bool, after: Option<Operand> },
    /// `{...}`, and what may come next in it.
    Braces(InBraces),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InBraces {
    /// A label name, a quoted metric name or `}`.
    Label,
    /// A match operator.
    Operator,
    /// A string.
    Value,
    /// `,` or `}`.
    Separator,
}

/// What the previous token was, for the tokens that may only follow certain ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Other,
    /// A binary operator; `comparison` allows `bool`.
    Operator {
        comparison: bool,
    },
    Bool,
    /// The `)` of an `on`/`ignoring` list: `group_left`/`group_right` may follow.
    Matching,
    /// An aggregation's name before `by`/`without`.
    Aggregator,
    /// The `)` of `sum by (...)`: the arguments must follow.
    PrefixGrouping,
    /// The `)` of an aggregation's arguments: `by`/`without` may follow.
    Aggregation,
}

/// Keywords the crate accepts as metric names (its `metric_identifier`), as Prometheus does.
fn is_keyword_name(id: TokenId) -> bool {
    matches!(
        id,
        T_AVG
            | T_BOTTOMK
            | T_BY
            | T_COUNT
            | T_COUNT_VALUES
            | T_FILL
            | T_FILL_LEFT
            | T_FILL_RIGHT
            | T_GROUP
            | T_LAND
            | T_LOR
            | T_LUNLESS
            | T_MAX
            | T_MIN
            | T_OFFSET
            | T_QUANTILE
            | T_STDDEV
            | T_STDVAR
            | T_SUM
            | T_TOPK
            | T_LIMITK
            | T_LIMIT_RATIO
            | T_WITHOUT
            | T_START
            | T_END
    )
}

/// Keywords the crate accepts as label names in a label list (its `maybe_label`).
fn is_keyword_label(id: TokenId) -> bool {
    (is_keyword_name(id) && id != T_WITHOUT)
        || matches!(
            id,
            T_BOOL | T_ON | T_IGNORING | T_GROUP_LEFT | T_GROUP_RIGHT | T_ATAN2
        )
}

fn is_match_operator(id: TokenId) -> bool {
    matches!(id, T_EQL | T_NEQ | T_EQL_REGEX | T_NEQ_REGEX)
}

/// One pass over the crate's tokens that follows Prometheus' grammar as far as scoping needs:
/// where an operand may start, what the last one was, which brackets are open. It tells the
/// names among keyword tokens and the edits the crate needs; the crate's parse decides what is
/// valid.
fn classify(text: &str, lexed: &[Token]) -> Result<Classified, Located> {
    let tokens: Vec<Token> = lexed.iter().copied().filter(|t| t.0 != T_EOF).collect();
    let mut walker = Walker {
        text,
        out: tokens.clone(),
        tokens: &tokens,
        edits: Vec::new(),
        stack: Vec::new(),
        expect: true,
        last: None,
        modifier: None,
        after: After::Other,
        call: None,
    };
    let mut i = 0;
    while i < tokens.len() {
        i = walker.step(i)?;
    }
    Ok(Classified {
        tokens: walker.out,
        edits: walker.edits,
    })
}

struct Walker<'t> {
    text: &'t str,
    tokens: &'t [Token],
    /// `tokens` with names as `T_IDENTIFIER`.
    out: Vec<Token>,
    edits: Vec<Edit>,
    stack: Vec<Open>,
    /// An operand may start here.
    expect: bool,
    /// The operand that just ended, and its `anchored`/`smoothed` modifier.
    last: Option<Operand>,
    modifier: Option<TokenId>,
    after: After,
    /// A name followed by `(`: whether it is an aggregation's.
    call: Option<bool>,
}

impl Walker<'_> {
    fn id_at(&self, k: usize) -> Option<TokenId> {
        self.tokens.get(k).map(|t| t.0)
    }

    /// A token that cannot stand where it is (the crate refuses the expression). No modifier
    /// is blanked after it: blanking must not change how anything else is read, and after
    /// invalid syntax that is not sure.
    fn invalid(&mut self) {
        self.last = None;
    }

    /// An operand ended.
    fn operand(&mut self, kind: Operand) {
        (self.last, self.modifier, self.expect) = (Some(kind), None, false);
    }

    /// Token `i`; returns the index of the next token to look at.
    fn step(&mut self, i: usize) -> Result<usize, Located> {
        let id = self.tokens[i].0;
        let after = std::mem::replace(&mut self.after, After::Other);
        match self.stack.last().copied() {
            Some(Open::Braces(state)) => self.in_braces(i, state),
            Some(Open::Bracket { colon, after }) => match id {
                T_COLON if !colon => {
                    self.stack.pop();
                    self.stack.push(Open::Bracket { colon: true, after });
                }
                T_RIGHT_BRACKET => {
                    self.stack.pop();
                    self.operand(match (colon, after) {
                        (false, Some(Operand::Selector)) => Operand::Matrix,
                        _ => Operand::Other,
                    });
                }
                T_NUMBER | T_DURATION => {}
                _ => self.invalid(),
            },
            Some(Open::Labels { by, prefix }) => self.in_labels(i, by, prefix),
            Some(Open::Group { .. }) | None if self.expect => {
                return Ok(self.operand_position(i, after));
            }
            Some(Open::Group { .. }) | None => return self.after_operand(i, after),
        }
        Ok(i + 1)
    }

    fn in_braces(&mut self, i: usize, state: InBraces) {
        let (id, start, end) = self.tokens[i];
        let next = self.id_at(i + 1);
        let to = |walker: &mut Self, state| {
            walker.stack.pop();
            walker.stack.push(Open::Braces(state));
        };
        match (state, id) {
            (InBraces::Label | InBraces::Separator, T_RIGHT_BRACE) => {
                self.stack.pop();
                self.operand(Operand::Selector);
            }
            (InBraces::Label, T_IDENTIFIER) => to(self, InBraces::Operator),
            // The crate reads `or ` in braces as its own `a="1" or b="2"` extension; where a
            // label name stands, it is one.
            (InBraces::Label, T_LOR) if next.is_some_and(is_match_operator) => {
                self.edits.push(Edit::Rename(start, end));
                self.out[i].0 = T_IDENTIFIER;
                to(self, InBraces::Operator);
            }
            // A quoted label name, or a quoted metric name alone.
            (InBraces::Label, T_STRING) if next.is_some_and(is_match_operator) => {
                to(self, InBraces::Operator)
            }
            (InBraces::Label, T_STRING) => to(self, InBraces::Separator),
            (InBraces::Operator, _) if is_match_operator(id) => to(self, InBraces::Value),
            (InBraces::Value, T_STRING) => to(self, InBraces::Separator),
            (InBraces::Separator, T_COMMA | T_LOR) => to(self, InBraces::Label),
            _ => self.invalid(),
        }
    }

    fn in_labels(&mut self, i: usize, by: bool, prefix: bool) {
        let (id, start, end) = self.tokens[i];
        match id {
            T_RIGHT_PAREN => {
                self.stack.pop();
                match (by, prefix) {
                    (true, true) => (self.expect, self.after) = (true, After::PrefixGrouping),
                    (true, false) => self.operand(Operand::Other),
                    (false, _) => {
                        (self.last, self.expect, self.after) = (None, true, After::Matching)
                    }
                }
            }
            T_ANCHORED | T_SMOOTHED => {
                self.edits.push(Edit::Rename(start, end));
                self.out[i].0 = T_IDENTIFIER;
            }
            _ if is_keyword_label(id) => self.out[i].0 = T_IDENTIFIER,
            T_IDENTIFIER | T_METRIC_IDENTIFIER | T_STRING | T_COMMA => {}
            _ => self.invalid(),
        }
    }

    /// A token where an operand may start; returns the index of the next token to look at.
    fn operand_position(&mut self, i: usize, after: After) -> usize {
        let (id, start, end) = self.tokens[i];
        let next = self.id_at(i + 1);
        if after == After::PrefixGrouping && id != T_LEFT_PAREN {
            self.invalid();
        }
        let name = matches!(
            id,
            T_IDENTIFIER | T_METRIC_IDENTIFIER | T_ANCHORED | T_SMOOTHED
        ) || is_keyword_name(id);
        let aggregator = TokenType::new(id).is_aggregator();
        let vector_matching = matches!(
            after,
            After::Operator { .. } | After::Bool | After::Matching
        );
        if matches!(id, T_FILL | T_FILL_LEFT | T_FILL_RIGHT) && vector_matching {
            // The crate's (and Prometheus 3's, behind a flag) `fill(0)` binary operator
            // modifier: `(`, a signed number, `)`; more modifiers or the operand follow.
            let mut j = i + 1;
            if self.id_at(j) == Some(T_LEFT_PAREN) {
                j += 1;
                if matches!(self.id_at(j), Some(T_ADD | T_SUB)) {
                    j += 1;
                }
                if self.id_at(j) == Some(T_NUMBER) && self.id_at(j + 1) == Some(T_RIGHT_PAREN) {
                    self.after = After::Matching;
                    return j + 2;
                }
            }
        }
        if name && next == Some(T_LEFT_PAREN) {
            // A call or an aggregation: its `(` comes next.
            self.call = Some(aggregator);
            return i + 1;
        }
        if aggregator && matches!(next, Some(T_BY | T_WITHOUT)) {
            (self.expect, self.after) = (false, After::Aggregator);
            return i + 1;
        }
        if name {
            // A selector's name.
            if matches!(id, T_ANCHORED | T_SMOOTHED) {
                self.edits.push(Edit::Rename(start, end));
            }
            self.out[i].0 = T_IDENTIFIER;
            self.operand(Operand::Selector);
            return i + 1;
        }
        let binary = matches!(after, After::Operator { .. } | After::Bool);
        match id {
            T_NUMBER | T_STRING | T_DURATION => self.operand(Operand::Other),
            T_LEFT_BRACE => self.stack.push(Open::Braces(InBraces::Label)),
            T_LEFT_PAREN => {
                let aggregation = self.call.take().unwrap_or(after == After::PrefixGrouping);
                self.stack.push(Open::Group { aggregation });
            }
            // Unary signs.
            T_ADD | T_SUB => {}
            T_BOOL if after == (After::Operator { comparison: true }) => self.after = After::Bool,
            // Vector matching: a label list follows (optional for group_left/group_right).
            T_ON | T_IGNORING | T_GROUP_LEFT | T_GROUP_RIGHT if next == Some(T_LEFT_PAREN) => {
                let valid = match id {
                    T_ON | T_IGNORING => binary,
                    _ => after == After::Matching,
                };
                if !valid {
                    self.invalid();
                }
                let labels = Open::Labels {
                    by: false,
                    prefix: false,
                };
                self.stack.push(labels);
                return i + 2;
            }
            T_GROUP_LEFT | T_GROUP_RIGHT if after == After::Matching => {}
            // `f()`: a call without arguments.
            T_RIGHT_PAREN if i > 0 && self.tokens[i - 1].0 == T_LEFT_PAREN => {
                self.stack.pop();
                self.operand(Operand::Other);
            }
            _ => self.invalid(),
        }
        i + 1
    }

    /// A token after an operand; returns the index of the next token to look at.
    fn after_operand(&mut self, i: usize, after: After) -> Result<usize, Located> {
        let (id, start, end) = self.tokens[i];
        let next = self.id_at(i + 1);
        match id {
            T_OFFSET => return Ok(self.offset(i)),
            T_AT => {
                // `@ 123`, `@ -123`, `@ start()`, `@ end()`.
                let mut j = i + 1;
                if matches!(self.id_at(j), Some(T_ADD | T_SUB)) {
                    j += 1;
                }
                if self.id_at(j) == Some(T_NUMBER) {
                    return Ok(j + 1);
                }
                if matches!(self.id_at(j), Some(T_START | T_END))
                    && self.id_at(j + 1) == Some(T_LEFT_PAREN)
                    && self.id_at(j + 2) == Some(T_RIGHT_PAREN)
                {
                    return Ok(j + 3);
                }
                self.invalid();
            }
            T_ANCHORED | T_SMOOTHED => {
                // Prometheus 3 modifiers of a vector or range selector, one kind per selector.
                let selector = matches!(self.last, Some(Operand::Selector | Operand::Matrix));
                if selector && self.modifier.is_some_and(|m| m != id) {
                    // As Prometheus says; blanking one would hide the conflict from the crate.
                    return Err(Located::at(
                        "anchored and smoothed modifiers cannot be used together".into(),
                        start,
                    ));
                }
                if selector {
                    self.edits.push(Edit::Blank(start, end));
                    self.modifier = Some(id);
                } else {
                    self.invalid();
                }
            }
            // Prometheus 3's trim operators `</` and `>/` (native histograms): comparisons to
            // the crate, which have the same precedence and operands.
            T_LSS | T_GTR
                if next == Some(T_DIV) && self.tokens.get(i + 1).is_some_and(|t| t.1 == end) =>
            {
                let (_, slash, slash_end) = self.tokens[i + 1];
                self.edits.push(Edit::Blank(slash, slash_end));
                (self.last, self.expect) = (None, true);
                self.after = After::Operator { comparison: true };
                return Ok(i + 2);
            }
            _ if TokenType::new(id).is_operator() => {
                let comparison = TokenType::new(id).is_comparison_operator();
                (self.last, self.expect) = (None, true);
                self.after = After::Operator { comparison };
            }
            T_BY | T_WITHOUT if next == Some(T_LEFT_PAREN) => {
                if !matches!(after, After::Aggregator | After::Aggregation) {
                    self.invalid();
                }
                self.stack.push(Open::Labels {
                    by: true,
                    prefix: after == After::Aggregator,
                });
                return Ok(i + 2);
            }
            T_RIGHT_PAREN => {
                let open = self.stack.pop();
                self.operand(Operand::Other);
                if open == Some(Open::Group { aggregation: true }) {
                    self.after = After::Aggregation;
                }
            }
            T_COMMA if matches!(self.stack.last(), Some(Open::Group { .. })) => {
                (self.last, self.expect) = (None, true);
            }
            T_LEFT_BRACKET => self.stack.push(Open::Bracket {
                colon: false,
                after: self.last,
            }),
            // Brackets open and close as the lexer reads them, valid where they stand or not,
            // so that what is inside is read the same way whatever was blanked before them.
            T_LEFT_BRACE => {
                let after_name = i
                    .checked_sub(1)
                    .is_some_and(|k| self.out[k].0 == T_IDENTIFIER);
                if self.last != Some(Operand::Selector) || !after_name {
                    self.invalid();
                }
                self.stack.push(Open::Braces(InBraces::Label));
                self.last = None;
            }
            T_LEFT_PAREN => {
                self.invalid();
                self.stack.push(Open::Group { aggregation: false });
                (self.last, self.expect) = (None, true);
            }
            _ => self.invalid(),
        }
        Ok(i + 1)
    }

    /// `offset` at token `i` and what follows: a signed number or duration, or a Prometheus 3
    /// duration expression (`offset (1h+5m)`, `offset -step()`, `offset min_of(1h, range())`),
    /// which becomes a duration of the same length. Returns the index after it.
    fn offset(&mut self, i: usize) -> usize {
        let mut j = i + 1;
        if matches!(self.id_at(j), Some(T_ADD | T_SUB)) {
            j += 1;
        }
        let open = match self.id_at(j) {
            Some(T_NUMBER | T_DURATION) => return j + 1,
            Some(T_LEFT_PAREN) => j,
            Some(T_IDENTIFIER) if self.id_at(j + 1) == Some(T_LEFT_PAREN) => j + 1,
            _ => {
                self.invalid();
                return i + 1;
            }
        };
        // The expression ends at the `)` that closes its first `(`.
        let mut depth = 0usize;
        let close = (open..self.tokens.len()).find(|&k| {
            match self.tokens[k].0 {
                T_LEFT_PAREN => depth += 1,
                T_RIGHT_PAREN => depth = depth.saturating_sub(1),
                _ => {}
            }
            depth == 0
        });
        match close {
            Some(close) if is_duration_expr(self.text, &self.tokens[i + 1..=close]) => {
                let (first, last) = (self.tokens[i + 1].1, self.tokens[close].2);
                self.edits.push(Edit::Duration(first, last));
                close + 1
            }
            _ => {
                self.invalid();
                i + 1
            }
        }
    }
}

/// A placeholder for `word`: an identifier of the same length that is no keyword and occurs
/// nowhere in `text` (so nothing else can be renamed back to `word`), and is not taken.
fn placeholder(word: &str, text: &str, taken: &[(String, String)]) -> Option<String> {
    let first = word.chars().next().filter(char::is_ascii_alphabetic)?;
    let rest = word.len().checked_sub(1)?;
    if rest == 0 {
        return None;
    }
    // Keep the first letter; the rest is a counter in base 36 (letters and digits).
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz_";
    let free = |candidate: &str| {
        !text.contains(candidate)
            && !taken.iter().any(|(p, _)| p == candidate)
            && lex(candidate).is_ok_and(
                |t| matches!(t.first(), Some((T_IDENTIFIER, 0, e)) if *e == candidate.len()),
            )
    };
    (0..4096usize).find_map(|n| {
        let mut suffix = vec![b'_'; rest];
        let mut n = n;
        for slot in suffix.iter_mut().rev() {
            *slot = DIGITS[n % DIGITS.len()];
            n /= DIGITS.len();
            if n == 0 {
                break;
            }
        }
        let candidate = format!("{first}{}", String::from_utf8(suffix).ok()?);
        free(&candidate).then_some(candidate)
    })
}

/// Rewrite each backtick string that holds a `\` as the equivalent double-quoted string:
/// PromQL backtick strings have no escapes, but the crate's lexer reads `\` in them as one.
/// Also returns (end in the result, end in `expr`) of each rewritten string.
fn normalize_raw_strings(expr: &str) -> (Cow<'_, str>, Vec<(usize, usize)>) {
    if !expr.contains('`') {
        return (Cow::Borrowed(expr), Vec::new());
    }
    let mut out = String::with_capacity(expr.len() + 8);
    let mut shifts = Vec::new();
    let mut chars = expr.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '"' | '\'' => {
                out.push(c);
                while let Some((_, d)) = chars.next() {
                    out.push(d);
                    if d == '\\' {
                        if let Some((_, e)) = chars.next() {
                            out.push(e);
                        }
                    } else if d == c {
                        break;
                    }
                }
            }
            '#' => {
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '`' => {
                let mut raw = String::new();
                let mut closed = None;
                for (i, d) in chars.by_ref() {
                    if d == '`' {
                        closed = Some(i + 1);
                        break;
                    }
                    raw.push(d);
                }
                match closed {
                    Some(end) if raw.contains('\\') => {
                        out.push('"');
                        out.push_str(&promql_parser::util::escape_string(&raw));
                        out.push('"');
                        shifts.push((out.len(), end));
                    }
                    _ => {
                        out.push('`');
                        out.push_str(&raw);
                        if closed.is_some() {
                            out.push('`');
                        }
                    }
                }
            }
            _ => out.push(c),
        }
    }
    if shifts.is_empty() {
        (Cow::Borrowed(expr), shifts)
    } else {
        (Cow::Owned(out), shifts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(text: &str) -> View {
        let (edited, tokens) = lex_prometheus(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        View::new(edited, text, &tokens).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    /// The tokens a view hands on are the crate's tokens of the view text, with names as
    /// identifiers: patching them never drifts from what the lexer makes of the edited text.
    #[test]
    fn view_tokens_are_the_lexers_tokens_of_the_view() {
        for text in [
            "anchored",
            "sum by (smoothed) (rate(anchored[5m] anchored))",
            r#"x{or ="a", a="b"}"#,
            "x </ 5 + y >/ 2",
            "x offset (1h + 5m) smoothed",
            "rate(x[5m+1m:step()])",
            "sum + by",
        ] {
            let v = view(text);
            let view_text = v.text.as_deref().unwrap_or(text);
            assert_eq!(view_text.len(), text.len(), "{text}");
            let relexed: Vec<Token> = lex(view_text)
                .unwrap()
                .into_iter()
                .filter(|t| t.0 != T_EOF)
                .collect();
            assert_eq!(relexed.len(), v.tokens.len(), "{text}");
            for (a, b) in relexed.iter().zip(&v.tokens) {
                assert_eq!((a.1, a.2), (b.1, b.2), "{text}");
                assert!(a.0 == b.0 || b.0 == T_IDENTIFIER, "{text}: {a:?} {b:?}");
            }
        }
    }

    /// Found by generating token soup: blanking a modifier must not change how anything after it
    /// is read, also in invalid input (an internal error would be a false "please report it").
    #[test]
    fn invalid_input_is_an_ordinary_error() {
        for text in [
            "by Anchored{or =\"x\"}info</ bool'q'/=",
            "or = = {\"a.b\"} offset smoothed (1h)upon andgroup_left < topk unless",
            "group_left offsetAnchoredand x offsetx offset smoothed min_of(5m, 1m) [1h:step()]",
            "x @ anchored 5 smoothed",
        ] {
            let e = Source::new(text).and_then(|s| s.parse()).unwrap_err();
            assert!(!e.to_string().contains("internal"), "{text}: {e}");
        }
    }

    /// The walker reads the `fill(0)` binary operator modifier, so the selector after it is
    /// found and spliced (a lossy view, from the trim operator, cannot fall back to printing).
    #[test]
    fn fill_modifier_after_a_trim_operator() {
        let scoper = super::super::Scoper::new(
            "cluster",
            "local",
            super::super::ScopeOp::Equal,
            super::super::Policy::Keep,
        );
        let got = scoper.scope("up >/ fill(0) count_values == 1h").unwrap();
        assert_eq!(
            got.text,
            r#"up{cluster="local"} >/ fill(0) count_values{cluster="local"} == 1h"#
        );
    }

    #[test]
    fn placeholders_avoid_the_text_and_keywords() {
        assert_eq!(placeholder("or", "x", &[]).as_deref(), Some("o0"));
        assert_eq!(placeholder("or", "o0 o1", &[]).as_deref(), Some("o2"));
        let p = placeholder("anchored", "anchore0", &[]).unwrap();
        assert_eq!(p.len(), 8);
        assert_ne!(p, "anchore0");
        // `on` is a keyword: never a placeholder for `or`.
        let all_digits = "o0 o1 o2 o3 o4 o5 o6 o7 o8 o9 oa ob oc od oe of og oh oi oj ok ol om";
        assert_eq!(placeholder("or", all_digits, &[]).as_deref(), Some("oo"));
    }

    #[test]
    fn duration_expressions() {
        let yes = [
            "5m+1m",
            "(5m)",
            "step()",
            "min_of(5m, step())",
            "-step()",
            "2 ^ 3",
            "1h % 7m",
        ];
        let no = ["5m,1m", "step", "step()+", "5m / 0", "rate(x)", "x", ""];
        for text in yes {
            let tokens: Vec<Token> = lex(text)
                .unwrap()
                .into_iter()
                .filter(|t| t.0 != T_EOF)
                .collect();
            assert!(is_duration_expr(text, &tokens), "{text}");
        }
        for text in no {
            let tokens: Vec<Token> = lex(text)
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.0 != T_EOF)
                .collect();
            assert!(!is_duration_expr(text, &tokens), "{text}");
        }
    }
}
