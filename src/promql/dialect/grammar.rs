//! One pass over the crate's tokens that follows Prometheus' grammar as far as scoping needs:
//! it tells names among keyword tokens and finds the edits the crate needs.

use promql_parser::parser::token::{
    T_ADD, T_ANCHORED, T_AT, T_ATAN2, T_AVG, T_BOOL, T_BOTTOMK, T_BY, T_COLON, T_COMMA, T_COUNT,
    T_COUNT_VALUES, T_DIV, T_DURATION, T_END, T_EOF, T_EQL, T_EQL_REGEX, T_FILL, T_FILL_LEFT,
    T_FILL_RIGHT, T_GROUP, T_GROUP_LEFT, T_GROUP_RIGHT, T_GTR, T_IDENTIFIER, T_IGNORING, T_LAND,
    T_LEFT_BRACE, T_LEFT_BRACKET, T_LEFT_PAREN, T_LIMIT_RATIO, T_LIMITK, T_LOR, T_LSS, T_LUNLESS,
    T_MAX, T_METRIC_IDENTIFIER, T_MIN, T_NEQ, T_NEQ_REGEX, T_NUMBER, T_OFFSET, T_ON, T_QUANTILE,
    T_RIGHT_BRACE, T_RIGHT_BRACKET, T_RIGHT_PAREN, T_SMOOTHED, T_START, T_STDDEV, T_STDVAR,
    T_STRING, T_SUB, T_SUM, T_TOPK, T_WITHOUT, TokenId, TokenType,
};

use super::Located;
use super::duration::is_duration_expr;
use crate::promql::lex::Token;

/// An edit of the text for the crate (byte ranges of whole tokens).
#[derive(Debug, Clone, Copy)]
pub(super) enum Edit {
    /// A name the crate reads as a keyword: a placeholder of the same length.
    Rename(usize, usize),
    /// Syntax the AST cannot hold and scoping need not see: spaces.
    Blank(usize, usize),
    /// A duration expression after `offset`: a duration of the same length.
    Duration(usize, usize),
}

pub(super) struct Classified {
    pub tokens: Vec<Token>,
    pub edits: Vec<Edit>,
}

/// What an operand that just ended is, for the modifiers after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operand {
    Selector,
    Matrix,
    Other,
}

/// An open bracket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Open {
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
pub(super) enum InBraces {
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
pub(super) enum After {
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
pub(super) fn is_keyword_name(id: TokenId) -> bool {
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
pub(super) fn is_keyword_label(id: TokenId) -> bool {
    (is_keyword_name(id) && id != T_WITHOUT)
        || matches!(
            id,
            T_BOOL | T_ON | T_IGNORING | T_GROUP_LEFT | T_GROUP_RIGHT | T_ATAN2
        )
}

pub(super) fn is_match_operator(id: TokenId) -> bool {
    matches!(id, T_EQL | T_NEQ | T_EQL_REGEX | T_NEQ_REGEX)
}

/// One pass over the crate's tokens that follows Prometheus' grammar as far as scoping needs:
/// where an operand may start, what the last one was, which brackets are open. It tells the
/// names among keyword tokens and the edits the crate needs; the crate's parse decides what is
/// valid.
pub(super) fn classify(text: &str, lexed: &[Token]) -> Result<Classified, Located> {
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

pub(super) struct Walker<'t> {
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
