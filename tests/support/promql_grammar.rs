//! PromQL text from the grammar, as a proptest strategy: [`expression`].
//!
//! Built bottom-up by value type (scalar, instant vector, range vector, string), three levels
//! deep, so most of what comes out is valid, and then roughened: functions with the wrong
//! arity or argument types, `bool` where it is an error, a grouping without `on`, bad
//! durations and escapes, keywords and function names used as metric and label names, and a
//! share of texts with one token dropped, doubled or replaced. Tokens are joined by random
//! whitespace, newlines and `#` comments (a space where two words would otherwise run into one).
//! Whether a text is valid is for the parsers to say: nothing here decides it.

use proptest::prelude::*;

/// A text as its tokens, before the whitespace between them is chosen.
type Tokens = Vec<String>;
type Gen = BoxedStrategy<Tokens>;

/// A PromQL expression (valid or nearly so) as text. Making one recurses deeper than a debug
/// build's 2 MiB test thread allows: use it on a thread with a larger stack.
pub fn expression() -> impl Strategy<Value = String> {
    let top = levels(3);
    let body = prop_oneof![
        6 => top.vector.clone(),
        2 => top.scalar.clone(),
        1 => top.matrix.clone(),
        1 => string().prop_map(|s| vec![s]),
        2 => broken(top.any.clone()),
    ];
    (
        body,
        prop::collection::vec(separator(), 16),
        separator(),
        separator(),
    )
        .prop_map(|(tokens, gaps, before, after)| {
            format!("{before}{}{after}", render(&tokens, &gaps))
        })
}

/// Join tokens, taking gaps in turn; two tokens that would read as one get a space.
fn render(tokens: &[String], gaps: &[&str]) -> String {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == ':' || c == '.';
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 {
            let gap = gaps[i % gaps.len()];
            let glued = out.ends_with(word) && token.starts_with(word);
            out.push_str(if gap.is_empty() && glued { " " } else { gap });
        }
        out.push_str(token);
    }
    out
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        40 => Just(""),
        24 => Just(" "),
        1 => Just("  "),
        1 => Just("\n"),
        1 => Just("\t"),
        1 => Just("\r\n"),
        1 => Just(" # a comment\n"),
        1 => Just("#\n  "),
        // A comment ends at a carriage return too; a vertical tab or form feed is no space.
        1 => Just("\r"),
        1 => Just("# c\r"),
        1 => Just("\u{b}"),
        1 => Just("\u{c}"),
    ]
}

fn one(token: impl Into<String>) -> Tokens {
    vec![token.into()]
}

fn cat<const N: usize>(parts: [Tokens; N]) -> Tokens {
    parts.into_iter().flatten().collect()
}

/// Generators for each value type at one depth.
#[derive(Clone)]
struct Level {
    scalar: Gen,
    vector: Gen,
    matrix: Gen,
    any: Gen,
}

fn levels(depth: usize) -> Level {
    let mut level = leaves();
    for _ in 0..depth {
        level = grow(&level);
    }
    level
}

fn leaves() -> Level {
    let scalar = number().prop_map(one).boxed();
    let vector = selector().boxed();
    let matrix = range_selector().boxed();
    let any = prop_oneof![
        scalar.clone(),
        vector.clone(),
        matrix.clone(),
        string().prop_map(one)
    ]
    .boxed();
    Level {
        scalar,
        vector,
        matrix,
        any,
    }
}

/// One level up: every construct over the expressions of the level below.
fn grow(below: &Level) -> Level {
    let scalar = prop_oneof![
        4 => number().prop_map(one),
        1 => unary(below.scalar.clone()),
        1 => paren(below.scalar.clone()),
        2 => binary(below.scalar.clone(), below.scalar.clone()),
        2 => call(below, &SCALAR_FUNCTIONS),
    ]
    .boxed();
    let vector = prop_oneof![
        4 => selector(),
        4 => call(below, &VECTOR_FUNCTIONS),
        3 => aggregation(below),
        3 => binary(below.vector.clone(), below.any.clone()),
        2 => binary(below.scalar.clone(), below.vector.clone()),
        1 => unary(below.vector.clone()),
        1 => paren(below.vector.clone()),
    ]
    .boxed();
    let matrix = prop_oneof![
        4 => range_selector(),
        3 => subquery(below.vector.clone()),
        1 => subquery(below.scalar.clone()),
        1 => paren(below.matrix.clone()),
    ]
    .boxed();
    let any = prop_oneof![
        2 => scalar.clone(),
        4 => vector.clone(),
        2 => matrix.clone(),
        1 => string().prop_map(one),
    ]
    .boxed();
    Level {
        scalar,
        vector,
        matrix,
        any,
    }
}

/// A keyword as written: lower case mostly, else upper or capitalised (PromQL's keywords are
/// case-insensitive; function names are not, so those stay as they are).
fn keyword(word: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(word.to_string()),
        1 => Just(word.to_uppercase()),
        1 => Just(word[..1].to_uppercase() + &word[1..]),
    ]
}

/// Words the grammar gives a meaning to, used as names.
static KEYWORDS: [&str; 30] = [
    "sum",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "Inf",
    "nan",
    "NaN",
    "start",
    "end",
    "step",
    "range",
    "topk",
    "count_values",
    "group",
    "rate",
    "time",
    "anchored",
    "smoothed",
    "limitk",
    "x",
];

fn metric_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&[
            "up",
            "http_requests_total",
            "node_cpu_seconds_total",
            "job:http_requests:rate5m",
            "apiserver_request_duration_seconds_bucket",
            "_x",
            ":a",
            "a1",
        ][..])
        .prop_map(str::to_string),
        2 => prop::sample::select(&KEYWORDS[..]).prop_map(str::to_string),
        2 => "[a-zA-Z_:][a-zA-Z0-9_:]{0,8}",
    ]
}

fn label_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&["job", "instance", "le", "namespace", "__name__", "_", "a1"][..])
            .prop_map(str::to_string),
        2 => prop::sample::select(&KEYWORDS[..]).prop_map(str::to_string),
        2 => "[a-zA-Z_][a-zA-Z0-9_]{0,6}",
        // Prometheus 3 quotes UTF-8 label names.
        1 => Just("\"a.b\"".to_string()),
    ]
}

/// `(a, b)`, sometimes empty, sometimes with a trailing comma.
fn label_list() -> impl Strategy<Value = Tokens> {
    (prop::collection::vec(label_name(), 0..4), any::<u8>()).prop_map(|(names, bits)| {
        let mut out = one("(");
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                out.push(",".into());
            }
            out.push(name.clone());
        }
        if bits % 8 == 0 && !names.is_empty() {
            out.push(",".into());
        }
        out.push(")".into());
        out
    })
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[0-9]{1,4}",
        2 => "[0-9]{1,3}\\.[0-9]{0,3}",
        1 => "\\.[0-9]{1,3}",
        2 => "[0-9]{1,2}(\\.[0-9])?[eE][+-]?[0-9]{1,2}",
        1 => "0[xX][0-9a-fA-F]{1,4}",
        1 => "0[0-9]{1,3}",
        1 => prop::sample::select(&[
            "Inf", "inf", "INF", "+Inf", "NaN", "nan", "NAN", "0", "1", "0.0", "1e308", "1e309",
            "4.9e-324", "1_000", "0x_1f", "1e", "1.2.3", "0b101", "0o17", "5m", "1h30m", "0x",
        ][..])
        .prop_map(str::to_string),
    ]
}

/// A string literal in one of the three quotes, with escapes (valid and not) and non-ASCII.
fn string() -> impl Strategy<Value = String> {
    let plain = prop_oneof![
        6 => "[a-zA-Z0-9 _.:/-]{0,6}",
        1 => prop::sample::select(&["é", "日本", "\u{1F600}", "\u{0}", "\u{7f}", "$1", "${1}"][..])
            .prop_map(str::to_string),
    ];
    let escape = prop::sample::select(
        &[
            "\\n",
            "\\t",
            "\\\\",
            "\\a",
            "\\b",
            "\\f",
            "\\r",
            "\\v",
            "\\x41",
            "\\u00e9",
            "\\U0001F600",
            "\\101",
            "\\\\d",
        ][..],
    )
    .prop_map(str::to_string);
    let bad_escape = prop::sample::select(
        &[
            "\\0",
            "\\q",
            "\\x4",
            "\\uD800",
            "\\400",
            "\\U00110000",
            "\\",
            "\\.",
            "\\d",
            "\\\"",
            "\\'",
        ][..],
    )
    .prop_map(str::to_string);
    let regex = prop::sample::select(
        &[
            ".*",
            ".+",
            "a|b",
            "(",
            "[",
            "5..",
            "\\\\d+",
            "\\\\.",
            "(?i)foo",
            "a{2}",
            "x{",
            "[[:alpha:]]",
            "\\\\",
            "^a$",
        ][..],
    )
    .prop_map(str::to_string);
    let piece = prop_oneof![8 => plain, 2 => escape, 1 => bad_escape, 1 => regex];
    (prop::collection::vec(piece, 0..4), 0..40u8).prop_map(|(pieces, quote)| {
        let body: String = pieces.concat();
        match quote {
            // Backticks take no escapes: a backslash is itself, and a backtick cannot occur.
            0..=9 => format!("`{}`", body.replace('`', "")),
            10..=19 => format!("'{}'", quoted(&body, '\'')),
            // Rarely: a raw newline or an unescaped quote.
            20 => format!("\"{body}\n\""),
            21 => format!("\"{body}\"\""),
            _ => format!("\"{}\"", quoted(&body, '"')),
        }
    })
}

/// `body` inside `quote`: a bare quote escaped, and the other quote escaped at times.
fn quoted(body: &str, quote: char) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in body.chars() {
        if c == quote && !escaped {
            out.push('\\');
        }
        escaped = c == '\\' && !escaped;
        out.push(c);
    }
    out
}

fn matcher() -> impl Strategy<Value = Tokens> {
    (
        label_name(),
        prop::sample::select(&["=", "!=", "=~", "!~"][..]),
        string(),
    )
        .prop_map(|(name, op, value)| vec![name, op.to_string(), value])
}

/// `{...}`: matchers with commas, at times none, a trailing comma, or a stray one.
fn braces() -> impl Strategy<Value = Tokens> {
    (prop::collection::vec(matcher(), 1..4), 0..16u8).prop_map(|(mut matchers, shape)| {
        if shape == 3 {
            matchers.clear();
        }
        let mut out = one("{");
        if shape == 0 {
            out.push(",".into());
        }
        for (i, m) in matchers.into_iter().enumerate() {
            if i > 0 {
                out.push(if shape == 1 { "or" } else { "," }.into());
            }
            out.extend(m);
        }
        if shape == 2 {
            out.push(",".into());
        }
        out.push("}".into());
        out
    })
}

fn selector() -> impl Strategy<Value = Tokens> {
    prop_oneof![
        3 => metric_name().prop_map(one),
        3 => (metric_name(), braces()).prop_map(|(name, b)| cat([one(name), b])),
        2 => braces(),
    ]
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => ("[1-9][0-9]{0,2}", prop::sample::select(&["ms", "s", "m", "h", "d", "w", "y"][..]))
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        2 => prop::sample::select(&[
            "1h30m", "1h30m15s500ms", "2w3d", "1y2w", "5m1h", "1m1m", "0s", "0", "1.5m", "5",
            "30", "1e3", "0x10", "-5m", "5M", "1H", "10000000000000000000000y", "5m ",
        ][..])
        .prop_map(str::to_string),
    ]
}

/// `offset d` (forward, back, with `+`), or an `@` modifier.
fn modifier() -> impl Strategy<Value = Tokens> {
    prop_oneof![
        4 => (keyword("offset"), prop::sample::select(&["", "-", "+"][..]), duration())
            .prop_map(|(kw, sign, d)| {
                if sign.is_empty() { vec![kw, d] } else { vec![kw, sign.to_string(), d] }
            }),
        1 => number().prop_map(|n| vec!["@".into(), n]),
        1 => prop::sample::select(&["start", "end"][..])
            .prop_map(|f| vec!["@".into(), f.into(), "(".into(), ")".into()]),
    ]
}

fn maybe_modifier() -> impl Strategy<Value = Tokens> {
    prop_oneof![3 => Just(Vec::new()), 1 => modifier()]
}

fn range_selector() -> impl Strategy<Value = Tokens> {
    (selector(), duration(), maybe_modifier(), 0..8u8).prop_map(
        |(selector, range, modifier, odds)| {
            let range = vec!["[".into(), range, "]".into()];
            // A modifier before the range is an error in PromQL: one case in eight.
            if odds == 0 && !modifier.is_empty() {
                cat([selector, modifier, range])
            } else {
                cat([selector, range, modifier])
            }
        },
    )
}

/// `expr[range:step] modifier`, the step left out at times; the operand is parenthesised
/// unless it is a single token or a call.
fn subquery(inner: Gen) -> impl Strategy<Value = Tokens> {
    (
        inner,
        duration(),
        prop::option::of(duration()),
        maybe_modifier(),
    )
        .prop_map(|(inner, range, step, modifier)| {
            let inner = if inner.len() == 1 || inner.last().is_some_and(|t| t == ")") {
                inner
            } else {
                cat([one("("), inner, one(")")])
            };
            let mut out = cat([inner, one("["), one(range), one(":")]);
            out.extend(step);
            out.push("]".into());
            cat([out, modifier])
        })
}

fn unary(inner: Gen) -> impl Strategy<Value = Tokens> {
    (prop::sample::select(&["-", "+"][..]), inner).prop_map(|(sign, inner)| cat([one(sign), inner]))
}

fn paren(inner: Gen) -> impl Strategy<Value = Tokens> {
    inner.prop_map(|inner| cat([one("("), inner, one(")")]))
}

fn operator() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::sample::select(
            &["+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<="][..]
        )
        .prop_map(str::to_string),
        1 => keyword("atan2"),
        1 => keyword("and"),
        1 => keyword("or"),
        1 => keyword("unless"),
    ]
}

/// `lhs op [bool] [on|ignoring (...)] [group_left|group_right [(...)]] rhs`. Any modifier may
/// come with any operator (`bool` on `+`, a grouping on `and`): the errors are wanted too.
fn binary(lhs: Gen, rhs: Gen) -> impl Strategy<Value = Tokens> {
    let matching = prop_oneof![
        3 => Just(Vec::new()),
        1 => (keyword("on"), label_list()).prop_map(|(kw, l)| cat([one(kw), l])),
        1 => (keyword("ignoring"), label_list()).prop_map(|(kw, l)| cat([one(kw), l])),
    ];
    let group = prop_oneof![
        3 => Just(Vec::new()),
        1 => (
            prop_oneof![keyword("group_left"), keyword("group_right")],
            prop::option::of(label_list()),
        )
            .prop_map(|(kw, l)| cat([one(kw), l.unwrap_or_default()])),
    ];
    (
        lhs,
        operator(),
        prop::option::weighted(0.1, keyword("bool")),
        matching,
        group,
        rhs,
        0..8u8,
    )
        .prop_map(|(lhs, op, bool_modifier, matching, mut group, rhs, odds)| {
            // A grouping without `on` or `ignoring` is an error: kept for one case in eight.
            if matching.is_empty() && odds != 0 {
                group.clear();
            }
            let mut out = cat([lhs, one(op)]);
            out.extend(bool_modifier);
            cat([out, matching, group, rhs])
        })
}

/// An argument's type in a function's signature.
#[derive(Clone, Copy, Debug)]
enum Arg {
    Scalar,
    Vector,
    Matrix,
    Str,
}

/// Functions: name, required arguments, and how many optional trailing ones (of the last
/// type). A few the crate does not know (`holt_winters`) or that do not exist.
type Signature = (&'static str, &'static [Arg], usize);

use Arg::{Matrix as M, Scalar as S, Str as T, Vector as V};

static SCALAR_FUNCTIONS: [Signature; 5] = [
    ("scalar", &[V], 0),
    ("time", &[], 0),
    ("pi", &[], 0),
    ("start", &[], 0),
    ("no_such_function", &[S], 0),
];

static VECTOR_FUNCTIONS: [Signature; 30] = [
    ("rate", &[M], 0),
    ("irate", &[M], 0),
    ("increase", &[M], 0),
    ("delta", &[M], 0),
    ("deriv", &[M], 0),
    ("changes", &[M], 0),
    ("resets", &[M], 0),
    ("avg_over_time", &[M], 0),
    ("sum_over_time", &[M], 0),
    ("count_over_time", &[M], 0),
    ("max_over_time", &[M], 0),
    ("last_over_time", &[M], 0),
    ("absent_over_time", &[M], 0),
    ("predict_linear", &[M, S], 0),
    ("quantile_over_time", &[S, M], 0),
    ("holt_winters", &[M, S, S], 0),
    ("histogram_quantile", &[S, V], 0),
    ("label_replace", &[V, T, T, T, T], 0),
    ("label_join", &[V, T, T, T], 2),
    ("vector", &[S], 0),
    ("abs", &[V], 0),
    ("round", &[V, S], 0),
    ("clamp_min", &[V, S], 0),
    ("clamp", &[V, S, S], 0),
    ("absent", &[V], 0),
    ("sort", &[V], 0),
    ("sort_desc", &[V], 0),
    ("timestamp", &[V], 0),
    ("day_of_week", &[], 1),
    ("RATE", &[M], 0),
];

/// A call: mostly with the signature's arguments, else with the wrong number or types.
fn call(below: &Level, functions: &'static [Signature]) -> impl Strategy<Value = Tokens> + use<> {
    let below = below.clone();
    (prop::sample::select(functions), 0..12u8, 0..3usize).prop_flat_map(
        move |((name, args, optional), shape, extra)| {
            let typed = |arg: Arg| match arg {
                Arg::Scalar => below.scalar.clone(),
                Arg::Vector => below.vector.clone(),
                Arg::Matrix => below.matrix.clone(),
                Arg::Str => string().prop_map(one).boxed(),
            };
            let mut kinds: Vec<Gen> = args.iter().map(|a| typed(*a)).collect();
            if let Some(last) = args.last() {
                kinds.extend((0..optional.min(extra)).map(|_| typed(*last)));
            }
            match shape {
                // One argument too many, one too few, or all of any type.
                0 => kinds.push(below.any.clone()),
                1 => {
                    kinds.pop();
                }
                2 => kinds = (0..kinds.len()).map(|_| below.any.clone()).collect(),
                _ => {}
            }
            kinds.prop_map(move |args| {
                let mut out = vec![name.to_string(), "(".into()];
                for (i, arg) in args.into_iter().enumerate() {
                    if i > 0 {
                        out.push(",".into());
                    }
                    out.extend(arg);
                }
                out.push(")".into());
                out
            })
        },
    )
}

/// Aggregation operators, with the type of their parameter if they take one.
static AGGREGATIONS: [(&str, Option<Arg>); 14] = [
    ("sum", None),
    ("avg", None),
    ("min", None),
    ("max", None),
    ("count", None),
    ("group", None),
    ("stddev", None),
    ("stdvar", None),
    ("topk", Some(S)),
    ("bottomk", Some(S)),
    ("quantile", Some(S)),
    ("count_values", Some(T)),
    ("limitk", Some(S)),
    ("limit_ratio", Some(S)),
];

/// `op [grouping] ([param,] expr) [grouping]`: the grouping before, after or absent, the
/// parameter at times missing or where none belongs.
fn aggregation(below: &Level) -> impl Strategy<Value = Tokens> + use<> {
    let grouping = (prop_oneof![keyword("by"), keyword("without")], label_list())
        .prop_map(|(kw, l)| cat([one(kw), l]));
    let param = prop_oneof![
        below.scalar.clone(),
        string().prop_map(one),
        below.vector.clone()
    ];
    (
        prop::sample::select(&AGGREGATIONS[..]),
        0..10u8,
        prop::option::of(grouping),
        any::<bool>(),
        param,
        below.scalar.clone(),
        string(),
        below.vector.clone(),
    )
        .prop_map(
            |((op, kind), shape, grouping, after, any_param, scalar, string, expr)| {
                let op = if shape == 9 {
                    op.to_uppercase()
                } else {
                    op.to_string()
                };
                let param = match (kind, shape) {
                    (_, 0) => Some(any_param),
                    (Some(_), 1) => None,
                    (Some(S), _) => Some(scalar),
                    (Some(_), _) => Some(one(string)),
                    (None, _) => None,
                };
                let mut body = one("(");
                if let Some(param) = param {
                    body.extend(param);
                    body.push(",".into());
                }
                body.extend(expr);
                body.push(")".into());
                let grouping = grouping.unwrap_or_default();
                if after {
                    cat([one(op), body, grouping])
                } else {
                    cat([one(op), grouping, body])
                }
            },
        )
}

/// Tokens that, put anywhere, make a near miss.
static STRAYS: [&str; 16] = [
    "(", ")", "{", "}", "[", "]", ",", "by", "offset", "bool", "5m", "1", "\"a\"", "==", "+", ":",
];

/// A valid-looking expression with one token dropped, doubled or replaced.
fn broken(inner: Gen) -> impl Strategy<Value = Tokens> {
    (
        inner,
        any::<prop::sample::Index>(),
        0..3u8,
        prop::sample::select(&STRAYS[..]),
    )
        .prop_map(|(mut tokens, at, how, stray)| {
            let at = at.index(tokens.len());
            match how {
                0 => {
                    tokens.remove(at);
                }
                1 => tokens.insert(at, tokens[at].clone()),
                _ => tokens[at] = stray.to_string(),
            }
            tokens
        })
}
