//! promfed's own PromQL parser (`promql::syntax`, the scoper's fast path) against its peers, on
//! every expression the project holds (`support::expressions`: the rules corpus, dashboards,
//! test tables, golden files, fuzz regressions) and on named cases at the spots where parsers
//! differ. The parser may decline anything (the caller then takes the full path); what it
//! accepts must be:
//!
//! - read exactly as `promql-parser` reads it through promfed's full path
//!   (`promfed::promql::parse`): `syntax::to_crate` of its AST equals the crate's AST;
//! - accepted by promtool: Prometheus 3.x (by default, else with its experimental PromQL
//!   features) or Debian's 2.42 (`holt_winters`);
//! - read by the Prometheus project's lezer grammar without an error node, with the same
//!   selector spans.
//!
//! And it must accept most of what users write (rules and dashboards), so that the fast path
//! cannot silently stop being taken.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use promfed::promql::syntax::{self, ast};
use promql_parser::parser::Expr as CrateExpr;

use crate::support::expressions::{Expression, Origin, held};
use crate::support::{promtool_check_exprs, require};

/// The least share of the user-written expressions (rules and dashboards) that promql-parser
/// reads which the fast parser must accept. When it landed it accepted 1,113 of 1,117 (99.6%):
/// rules 845 of 847, dashboard queries 268 of 270.
const LEAST_SHARE_ACCEPTED: f64 = 0.99;

/// The experimental PromQL of Prometheus 3.x, enabled for expressions it refuses by default.
const FEATURES: &str = "--enable-feature=promql-experimental-functions,promql-binop-fill-modifiers";

/// Expressions Prometheus accepts (promtool 2.42 or 3.16: `accepted_expressions_pass_promtool`
/// checks every accepted one) in which lezer-promql 0.315.0 finds an error: gaps of the web UI's
/// grammar, not of the parser. (expression, why)
const LEZER_GAPS: &[(&str, &str)] = &[
    (
        "holt_winters(x[10m], 0.5, 0.5)",
        "a 2.x function, gone from 3.x's grammar",
    ),
    (
        r#"holt_winters(x{cluster="local"}[10m], 0.5, 0.5)"#,
        "a 2.x function, gone from 3.x's grammar",
    ),
    (
        "0X1f",
        "the grammar knows hex numbers with a lower-case `0x` only",
    ),
    ("5.", "the grammar wants a digit after a decimal point"),
    ("5.e3", "the grammar wants a digit after a decimal point"),
    ("offset", "`offset` as a metric name"),
    (r#"offset{job="x"}"#, "`offset` as a metric name"),
    ("rate(offset[5m])", "`offset` as a metric name"),
    ("offset offset 5m", "`offset` as a metric name"),
    ("offset + 1", "`offset` as a metric name"),
    ("sum(offset)", "`offset` as a metric name"),
    ("offset @ 100", "`offset` as a metric name"),
    ("-offset", "`offset` as a metric name"),
    ("offset > bool 1", "`offset` as a metric name"),
    ("1 < offset", "`offset` as a metric name"),
    ("(offset)", "`offset` as a metric name"),
    ("max_over_time(offset[5m:1m])", "`offset` as a metric name"),
    ("offset and offset", "`offset` as a metric name"),
    ("offset # a comment\n/ 2", "`offset` as a metric name"),
];

/// Named cases: (name, expression, whether promfed's full path reads it; that is what Prometheus
/// accepts, but for the few places where promql-parser differs, marked, where the fast parser
/// must decline).
/// Each also runs through every check of this module like any held expression;
/// `named_cases_agree` checks the third column against the full path.
const CASES: &[(&str, &str, bool)] = &[
    // Precedence and associativity.
    ("unary minus under power", "-a ^ b", true),
    ("unary minus on a number under power", "-2 ^ 2", true),
    ("power is right-associative", "2 ^ 3 ^ 2", true),
    ("minus of a negation", "a - -b", true),
    ("minus of a negation, no spaces", "a--b", true),
    ("plus of a plus", "a + +b", true),
    ("product before difference", "1 - 2 * 3", true),
    ("difference is left-associative", "1 - 2 - 3", true),
    ("division is left-associative", "a / b / c", true),
    ("modulo and atan2 share a level", "a % b atan2 c * d", true),
    ("comparison below arithmetic", "a + 1 > b * 2", true),
    ("and before or", "a or b and c", true),
    ("unless with and", "a and b unless c", true),
    ("or of comparisons", "a > 1 or b < 2", true),
    ("nested parens", "((a + b)) * (c)", true),
    ("negated parens", "-(a + b)", true),
    ("double negation", "- -a", true),
    ("negated number", "-1", true),
    ("negated number in a sum", "1 + -1", true),
    ("plus sign number", "+1", true),
    // Unary operators on selectors and calls.
    ("unary minus on a selector", r#"-x{a="b"}"#, true),
    ("unary plus on a selector", "+x", true),
    ("unary minus on a call", "-rate(x[5m])", true),
    ("unary minus on an aggregation", "-sum(x)", true),
    ("unary minus with offset", "-x offset 5m", true),
    ("unary minus on a range selector", "-x[5m]", false),
    // Offsets, ranges, subqueries.
    ("offset", "x offset 5m", true),
    ("negative offset", "x offset -5m", true),
    ("compound offset", "x offset 1h30m", true),
    ("offset on a range", "rate(x[5m] offset 1h)", true),
    ("offset before the range", "rate(x offset 1h [5m])", false),
    (
        "offset on a subquery",
        "max_over_time(x[10m:1m] offset 5m)",
        true,
    ),
    (
        "offset inside and after a subquery",
        "max_over_time(rate(x[5m] offset 1m)[10m:1m] offset 5m)",
        true,
    ),
    ("subquery without step", "max_over_time(x[1h:])", true),
    (
        "subquery of a subquery",
        "max_over_time(max_over_time(x[5m:])[1h:5m])",
        true,
    ),
    (
        "subquery of an expression",
        "avg_over_time((a + b)[5m:1m])",
        true,
    ),
    ("offset twice", "x offset 5m offset 1m", false),
    ("offset on an aggregation", "sum(x) offset 5m", false),
    ("range on a range", "x[5m][5m]", false),
    ("range on a call", "rate(x[5m])[5m]", false),
    ("range as the whole expression", "x[5m]", true),
    ("millisecond range", "x[1500ms]", true),
    ("year and week durations", "x[1y] offset 2w", true),
    ("space before the range", "rate(x [5m])", true),
    ("spaces inside the range", "rate(x[ 5m ])", true),
    ("zero range", "rate(x[0s])", false),
    // bool and vector matching.
    ("bool comparison", "a > bool 1", true),
    ("bool between vectors", "a == bool b", true),
    ("bool between scalars", "1 == bool 2", true),
    ("scalar comparison without bool", "1 == 2", false),
    ("bool on arithmetic", "a + bool b", false),
    ("bool with on", "a != bool on (job) b", true),
    ("on with no labels", "a + on () b", true),
    ("on() without a space", "a + on() b", true),
    ("ignoring", "a / ignoring (code) b", true),
    ("group_left without labels", "a * on (x) group_left b", true),
    (
        "group_left with empty labels",
        "a * on (x) group_left () b",
        true,
    ),
    (
        "group_right with labels",
        "a * ignoring (x) group_right (y, z) b",
        true,
    ),
    ("trailing comma in on", "a / on (x,) b", true),
    ("group_left without on", "a * group_left b", false),
    ("set operator on scalars", "1 and 2", false),
    (
        "set operator with group_left",
        "a and on (x) group_left b",
        false,
    ),
    ("comparison chain with bool", "a > bool b > bool c", true),
    // Aggregations.
    ("by before", "sum by (job) (x)", true),
    ("by after", "sum(x) by (job)", true),
    ("without", "avg without (instance) (x)", true),
    ("empty by", "sum by () (x)", true),
    ("trailing comma in by", "sum by (a, b,) (x)", true),
    ("no space", "sum(x)by(job)", true),
    ("topk", "topk(5, x)", true),
    ("topk by", "topk by (ns) (3, x)", true),
    ("quantile", "quantile(0.9, x)", true),
    ("count_values", r#"count_values("version", x)"#, true),
    ("topk without a parameter", "topk(x)", false),
    ("sum with a parameter", "sum(1, x)", false),
    ("by twice", "sum by (a) (x) by (b)", false),
    ("capitalised aggregation", "SUM(x) BY (job)", true),
    ("capitalised set operator", "a AND b Or c", true),
    ("capitalised offset", "x OFFSET 5m", true),
    // Functions.
    ("space before the call's parenthesis", "rate (x[5m])", true),
    ("functions are case-sensitive", "RATE(x[5m])", false),
    ("no arguments", "time()", true),
    ("vector of a number", "vector(1)", true),
    ("pi", "pi()", true),
    (
        "label_replace",
        r#"label_replace(x, "dst", "$1", "src", "(.*)")"#,
        true,
    ),
    ("optional argument", "round(x)", true),
    ("optional argument given", "round(x, 5)", true),
    ("trailing comma in a call", "round(x,)", false),
    ("wrong argument type", "rate(x)", false),
    ("too many arguments", "abs(x, y)", false),
    ("unknown function", "no_such_function(x)", false),
    (
        "histogram_quantile",
        "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))",
        true,
    ),
    ("holt_winters", "holt_winters(x[10m], 0.5, 0.5)", true),
    ("absent of a range", "absent_over_time(x[5m])", true),
    // Comments and white space.
    ("comment between operands", "x # the numerator\n/ y", true),
    (
        "comment inside braces",
        "x{a=\"b\", # a comment\nc=\"d\"}",
        true,
    ),
    ("comment inside a call", "sum(\n  # what\n  x\n)", true),
    ("comment at the end", "x # trailing", true),
    ("comment holding a brace", "x # {not a selector}\n", true),
    ("tabs and newlines", "sum\t(\n\tx\n)\r\n", true),
    // Names: keywords where Prometheus takes names.
    (
        "keywords as label names",
        r#"x{on="a", by="b", bool="c", offset="d", sum="e", and="f"}"#,
        true,
    ),
    (
        "keyword as a metric name",
        "sum(sum) by (job) / count offset 5m",
        true,
    ),
    ("set operators as metric names", "and and or", true),
    ("offset as a metric name", "offset offset 5m", true),
    (
        "keywords in by",
        "sum by (offset, bool, group_left) (x)",
        true,
    ),
    ("keyword in on", "a / on (by) b", true),
    ("without in by", "sum by (without) (x)", false),
    ("bool as a metric name", "x + bool", false),
    ("metric name with colons", "job:up:sum", true),
    ("metric name in braces", r#"{__name__="up"}"#, true),
    ("metric name twice", r#"up{__name__="up"}"#, false),
    ("empty braces with a name", "x{}", true),
    ("empty braces alone", "{}", false),
    ("only an empty matcher", r#"{a=""}"#, false),
    ("only a regex matching empty", r#"{a=~".*"}"#, false),
    ("a regex not matching empty", r#"{a=~".+"}"#, true),
    ("trailing comma in braces", r#"x{a="b",}"#, true),
    (
        "all match operators",
        r#"x{a="1",b!="2",c=~"3",d!~"4"}"#,
        true,
    ),
    ("label name with a digit", r#"x{a1="b"}"#, true),
    ("label name starting with a digit", r#"x{1a="b"}"#, false),
    ("unicode in a value", r#"x{city="Zürich ☃"}"#, true),
    // promql-parser reads it, Prometheus does not: the fast parser must decline it.
    ("or between matchers", r#"x{a="1" or b="2"}"#, true),
    // Numbers.
    ("hex", "0x1F", true),
    ("hex capital X", "0X1f", true),
    ("octal", "010", true),
    ("leading zero float", "010.5", true),
    ("exponent", "1e3", true),
    ("negative exponent", "1E-3", true),
    ("leading dot", ".5", true),
    ("trailing dot", "5.", true),
    ("Inf", "Inf", true),
    ("negative Inf", "-Inf", true),
    ("NaN", "NaN", true),
    ("nan lower case", "nan", true),
    ("inf in a sum", "x > -inf", true),
    ("hex in a call", "topk(0x10, x)", true),
    // Prometheus 3 reads it, promql-parser does not: the fast parser must decline it.
    ("digit separator", "1_000", false),
    ("number as a duration", "x offset 300", true),
    ("number with a unit is a duration", "x > 5m", true),
    // Strings.
    (
        "double-quoted with escapes",
        r#"label_replace(x, "a", "\"q\"\t\n\\", "b", "")"#,
        true,
    ),
    (
        "single-quoted",
        "label_replace(x, 'a', 'it\\'s', 'b', '')",
        true,
    ),
    ("backtick raw string", r"x{a=~`\d+\.`}", true),
    ("unicode escapes", r#"x{a="\u00e9\U0001F600"}"#, true),
    ("hex escape", r#"x{a="\x41"}"#, true),
    ("octal escape", r#"x{a="\101"}"#, true),
    ("bell and form feed escapes", r#"x{a="\a\b\f\v\r"}"#, true),
    ("unknown escape", r#"x{a="\q"}"#, false),
    ("a string as the expression", r#""hello""#, true),
    ("an unterminated string", r#"x{a="b}"#, false),
    ("newline in a string", "x{a=\"b\nc\"}", false),
    ("regex escapes", r#"x{path=~"/api/v1/.*\\.json"}"#, true),
    // More precedence and signs.
    ("negative one to a power", "-1 ^ 2", true),
    ("negated parens to a power", "(-1) ^ 2", true),
    ("power of a negation", "2 ^ -x", true),
    ("negation of a power of a negation", "-x ^ -y", true),
    ("three minuses", "1---1", true),
    ("alternating signs", "1+-+-1", true),
    ("plus of a negation", "+-x", true),
    ("negation of a plus", "-+x", true),
    ("negated operand of and", "-x and y", true),
    ("comparison with a negation", "x > -y", true),
    ("comparison chain", "x >= 1 <= 2", true),
    ("unless, or and and", "x unless y or z and w", true),
    (
        "bool comparison chain of scalars",
        "1 > bool 2 > bool 3",
        true,
    ),
    ("scalar compared without bool", "1 > scalar(x)", false),
    // More vector matching.
    (
        "the same label in on and group_left",
        "a * on (x) group_left (x) b",
        false,
    ),
    (
        "group_left then group_right",
        "a + on(x) group_left(y) group_right b",
        false,
    ),
    ("bool after on", "a > on(x) bool b", false),
    ("bool on a set operator", "a and bool b", false),
    (
        "group_left on a set operator",
        "a and on(x) group_left() b",
        false,
    ),
    ("and on()", "x and on() y", true),
    ("group_left in a chain", "a / on(x) group_left b / c", true),
    (
        "group_left and group_right in a chain",
        "a * on(x) group_left(y) b * on(x) group_right c",
        true,
    ),
    ("a set operator with a scalar", "vector(1) or 1", false),
    (
        "group_left of __name__",
        "a * on (x) group_left (__name__) b",
        true,
    ),
    // More aggregations.
    ("by and without", "sum by (a) (x) without (b)", false),
    ("a second body", "sum(x) by (a) (y)", false),
    ("by as a metric name", "sum(by)", true),
    ("trailing comma in an aggregation", "sum(x,)", false),
    ("grouping on a function", "rate(x[5m]) by (a)", false),
    ("empty by after", "count(x) by ()", true),
    ("labels without a comma", "sum by (a b) (x)", false),
    ("__name__ in by", "sum by (__name__) (x)", true),
    // More functions.
    (
        "label_replace to an invalid label (checked when run)",
        r#"label_replace(x, "1a", "$1", "b", "(.*)")"#,
        true,
    ),
    (
        "label_replace with an invalid regex (checked when run)",
        r#"label_replace(x, "a", "$1", "b", "(")"#,
        true,
    ),
    (
        "label_replace with too few arguments",
        r#"label_replace(x, "a", "b", "c")"#,
        false,
    ),
    ("count_values with a number", "count_values(1, x)", false),
    ("topk with a string", r#"topk("a", x)"#, false),
    (
        "quantile_over_time's arguments swapped",
        "quantile_over_time(x[5m], 0.5)",
        false,
    ),
    ("vector of a vector", "vector(x)", false),
    ("scalar of a number", "scalar(1)", false),
    ("time with an argument", "time(1)", false),
    ("absent of a range", "absent(x[5m])", false),
    ("days_in_month without an argument", "days_in_month()", true),
    (
        "label_join without sources",
        r#"label_join(x, "a", ",")"#,
        true,
    ),
    ("timestamp of a rate", "timestamp(rate(x[5m]))", true),
    // More subqueries and offsets.
    ("space before a subquery", "rate(x[5m]) [5m:1m]", true),
    ("three parts in brackets", "x[5m:1m:1m]", false),
    ("zero step", "x[1h:0s]", false),
    ("subquery of a string", r#""a"[5m:1m]"#, false),
    ("subquery of a call", "vector(1)[5m:1m]", true),
    ("subquery of a range", "x[5m][5m:]", false),
    ("range on parens", "(x)[5m]", false),
    ("offset on parens", "(x) offset 5m", false),
    (
        "offset inside a subquery's parens",
        "max_over_time((x offset 5m)[10m:1m])",
        true,
    ),
    ("negated subquery with offset", "-x[5m:1m] offset 1m", false),
    ("range after offset", r#"x{a="b"} offset 5m [5m]"#, false),
    ("rate of a negated range", "rate(-x[5m])", false),
    ("spaces in a subquery", "x[ 5m : 1m ]", true),
    ("newline in a range", "rate(x[\n5m])", true),
    (
        "newline before the duration of offset",
        "x offset\n5m",
        true,
    ),
    // More durations.
    ("hours then minutes", "x[1h5m]", true),
    ("minutes then hours", "x[5m1h]", false),
    ("a unit twice", "x[5m5m]", false),
    ("a fraction of a unit", "x[0.5m]", false),
    ("days", "x[1d]", true),
    ("capital M", "x[5M]", false),
    ("leading zero", "x[05m]", true),
    ("every unit", "x[1y2w3d4h5m6s7ms]", true),
    ("minutes then milliseconds", "x[1m1ms]", true),
    ("milliseconds then seconds", "x[1ms1s]", false),
    ("offset of many units", "x offset 1h30m15s10ms", true),
    ("the longest range Go holds", "x[106751d]", true),
    (
        "an offset past any duration",
        "x offset 99999999999y",
        false,
    ),
    // More numbers.
    ("08 is not octal", "08", true),
    ("09.5", "09.5", true),
    ("hex int64 max", "0x7FFFFFFFFFFFFFFF", true),
    ("hex past int64", "0x8000000000000000", false),
    ("int64 max", "9223372036854775807", true),
    ("past int64", "9223372036854775808", true),
    ("twenty digits", "99999999999999999999", true),
    ("hex past 64 bits", "0x1FFFFFFFFFFFFFFFF", false),
    ("hex with an underscore", "0x_1", false),
    ("bare exponent", "1e", false),
    ("bare 0x", "0x", false),
    ("two points", "1.2.3", false),
    ("exponent with a plus", "1E+03", true),
    ("leading point with an exponent", ".5e-3", true),
    ("trailing point with an exponent", "5.e3", true),
    ("smallest subnormal", "4.9e-324", true),
    ("largest float", "1.7976931348623157e308", true),
    ("negative zero", "-0", true),
    ("negative zero float", "-0.0", true),
    ("negative hex zero", "-0x0", true),
    ("infinity spelled out is a metric", "infinity", true),
    ("Inf plus NaN", "Inf + NaN", true),
    ("negated NaN", "-NaN", true),
    // More strings.
    (
        "escaped backslash before a non-ASCII character",
        r#""\\é""#,
        true,
    ),
    ("escaped single quote in double quotes", r#""\'""#, false),
    ("escaped single quote in single quotes", r"'\''", true),
    ("double quote in single quotes", r#"'a"b'"#, true),
    ("single quote in double quotes", r#""a'b""#, true),
    ("short \\u", r#""\u00""#, false),
    ("code point past Unicode", r#""\U00110000""#, false),
    ("surrogate", r#""\uDFFF""#, false),
    ("short \\x", r#""\x4""#, false),
    ("octal escape with an 8", r#""\18""#, false),
    ("octal escape past 255", r#""\777""#, false),
    ("raw tab in a string", "\"a\tb\"", true),
    // More regexes.
    ("backreference", r#"x{a=~"\\1"}"#, false),
    ("Unicode class", r#"x{a=~"\\pN"}"#, true),
    ("POSIX class", r#"x{a=~"[[:alpha:]]"}"#, true),
    ("case-insensitive flag", r#"x{a=~"(?i)a"}"#, true),
    ("named group", r#"x{a=~"(?P<n>a)"}"#, true),
    ("lookahead", r#"x{a=~"(?=a)"}"#, false),
    ("unbalanced parenthesis", r#"x{a=~"("}"#, false),
    // More names.
    ("point in a name", "x.y", false),
    ("minus between names", "x-y", true),
    ("underscore", "_", true),
    ("name ending in a colon", "x:", true),
    ("two braces", r#"x{a="b"}{c="d"}"#, false),
    ("two names", "x y{}", false),
    ("on alone", "on", false),
    ("bool alone", "bool", false),
    ("offset without a duration", "x offset", false),
    ("only a regex on the empty string", r#"{a=~""}"#, false),
    ("only a not-equal empty", r#"{a!=""}"#, true),
    // More comments and white space.
    ("comment before the range", "x # c\n[5m]", true),
    ("comment before braces", "x # c\n{a=\"b\"}", true),
    ("comment before a line's expression", "# c\nx", true),
    ("comment without a space", "x#c", true),
    ("comment after a subquery", "x[5m:1m] # c\n offset 1m", true),
    ("non-breaking space", "x\u{a0}+ y", false),
    // promql-parser reads it, Prometheus does not: the fast parser must decline it.
    ("form feed", "x\x0c+ y", true),
    ("vertical tab", "x\x0b+ y", false),
    ("carriage return and newline", "x\r\n+ y", true),
    // Types.
    ("string in arithmetic", r#"x + "a""#, false),
    ("aggregation of a scalar", "sum(1)", false),
    ("aggregation of a string", r#"sum("a")"#, false),
    ("scalar of a vector", "scalar(x) * 2", true),
    // Where the fast parser and its peers parted when it landed (337ebb7); it declines these
    // since 9dfc86c. It panicked on a `\` before a non-ASCII character (promql-parser's
    // unescape slices inside the character); the full path refuses these.
    ("escape of a non-ASCII character", r#""\é""#, false),
    (
        "escape of a non-ASCII character in single quotes",
        r"'\é'",
        false,
    ),
    ("escape of a snowman in a matcher", r#"x{a="\☃"}"#, false),
    ("escape of an emoji in a matcher", r#"x{a="\😀"}"#, false),
    (
        "escape of é in a label_replace argument",
        r#"label_replace(x, "a", "\é", "b", "")"#,
        false,
    ),
    // A regex that regex-syntax parses but the crate cannot compile (too big): the fast parser
    // accepts it, to_crate panics, Prometheus and the full path refuse it.
    (
        "regex past the compiled size limit",
        r#"x{a=~"(a{1000}){1000}"}"#,
        false,
    ),
    // Comments inside `[...]`: the fast parser skips them, promql-parser refuses them;
    // Prometheus accepts some (`x[5m # c\n]`) and refuses others (`rate(x[ # c\n5m])`).
    (
        "comment at the start of a range",
        "rate(x[ # c\n5m])",
        false,
    ),
    ("comment right after the bracket", "rate(x[# c\n5m])", false),
    ("comment in a range", "x[5m # c\n]", false),
    ("comment before a subquery's step", "x[5m:# c\n1m]", false),
    ("comment before a subquery's colon", "x[5m # c\n:1m]", false),
    ("comment at the end of a subquery", "x[5m:1m # c\n]", false),
    // Prometheus refuses these, promql-parser (so the full path) reads them; the fast parser
    // must be the stricter one and decline them. As of 9dfc86c it reads them all, so
    // `accepted_expressions_pass_promtool` fails on each.
    ("number past float64", "1e400", true),
    ("negative number past float64", "-1e400", true),
    ("number just past float64", "1.8e308", true),
    ("range past Go's durations", "x[293y]", true),
    ("range of days past Go's durations", "x[106752d]", true),
    ("offset past Go's durations", "x offset 293y", true),
    ("repetition past RE2's limit", r#"x{a=~"a{1001}"}"#, true),
    ("nested repetition", r#"x{a=~"a**"}"#, true),
    // Broken.
    ("empty", "", false),
    ("only a comment", "# nothing", false),
    ("unclosed call", "sum(x", false),
    ("dangling operator", "x +", false),
    ("two expressions", "x y", false),
];

/// The named cases' expressions, for `support::expressions`.
pub(crate) fn expressions() -> impl Iterator<Item = &'static str> {
    CASES.iter().map(|&(_, expr, _)| expr)
}

// ---------------------------------------------------------------------------------------
// The fast parser's reading

/// A selector's spans: the name and `{...}` (the fast parser's `head`, lezer's VectorSelector),
/// and with the range and offset that apply to it (the fast parser's `span`).
type SelectorSpan = ((usize, usize), (usize, usize));

/// What the fast parser does with one expression.
enum Fast {
    Declined,
    /// Its AST as the crate builds it, and its selectors.
    Accepted(CrateExpr, Vec<SelectorSpan>),
    Panicked(String),
}

fn fast(text: &str) -> Fast {
    let read = catch_unwind(AssertUnwindSafe(|| {
        syntax::parse(text).map(|ast| {
            let mut spans = Vec::new();
            selector_spans(&ast, &mut spans);
            (syntax::to_crate(&ast), spans)
        })
    }));
    match read {
        Ok(None) => Fast::Declined,
        Ok(Some((expr, spans))) => Fast::Accepted(expr, spans),
        Err(panic) => Fast::Panicked(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default(),
        ),
    }
}

fn selector_spans(expr: &ast::Expr<'_>, out: &mut Vec<SelectorSpan>) {
    match expr {
        ast::Expr::Number(..) | ast::Expr::String(..) => {}
        ast::Expr::Selector(s) => {
            out.push(((s.head.start, s.head.end), (s.span.start, s.span.end)))
        }
        ast::Expr::Call(c) => c.args.iter().for_each(|a| selector_spans(a, out)),
        ast::Expr::Aggregate(a) => {
            if let Some(param) = &a.param {
                selector_spans(param, out);
            }
            selector_spans(&a.expr, out);
        }
        ast::Expr::Negate(e, _) | ast::Expr::Paren(e, _) => selector_spans(e, out),
        ast::Expr::Binary(b) => {
            selector_spans(&b.lhs, out);
            selector_spans(&b.rhs, out);
        }
        ast::Expr::Subquery(s) => selector_spans(&s.expr, out),
    }
}

/// The fast parser's verdict on `text` against promfed's full path: Ok(accepted) when they
/// agree (or it declined), Err(what differs).
fn agreement(text: &str) -> Result<bool, String> {
    let mine = match fast(text) {
        Fast::Declined => return Ok(false),
        Fast::Panicked(message) => return Err(format!("the fast parser panicked: {message}")),
        Fast::Accepted(expr, _) => expr,
    };
    let full = promfed::promql::parse(text)
        .map_err(|e| format!("the fast parser accepts it, promql-parser refuses it: {e}"))?;
    let (full_text, mine_text) = (format!("{full:#?}"), format!("{mine:#?}"));
    if full == mine && full_text == mine_text {
        return Ok(true);
    }
    let diff = similar::TextDiff::from_lines(&full_text, &mine_text)
        .unified_diff()
        .context_radius(3)
        .header("promql-parser", "syntax::to_crate")
        .to_string();
    let how = if full == mine {
        "equal by ==, but not in Debug (the sign of a zero, a NaN)"
    } else {
        "the ASTs differ"
    };
    Err(format!(
        "{how}: promql-parser prints {full}, the fast parser {mine}\n{diff}"
    ))
}

/// Every held expression with the fast parser's verdict, computed once.
fn verdicts() -> &'static [(&'static Expression, Result<bool, String>)] {
    static VERDICTS: OnceLock<Vec<(&'static Expression, Result<bool, String>)>> = OnceLock::new();
    VERDICTS.get_or_init(|| {
        held()
            .expressions
            .iter()
            .map(|e| (e, agreement(&e.text)))
            .collect()
    })
}

/// The held expressions the fast parser accepts, with their selectors.
fn accepted() -> Vec<(&'static Expression, Vec<SelectorSpan>)> {
    held()
        .expressions
        .iter()
        .filter_map(|e| match fast(&e.text) {
            Fast::Accepted(_, spans) => Some((e, spans)),
            Fast::Declined | Fast::Panicked(_) => None,
        })
        .collect()
}

fn describe(e: &Expression) -> String {
    let also = match e.places {
        1 => String::new(),
        n => format!(" (and {} more places)", n - 1),
    };
    format!("{}{also}\n    {:?}", e.place, e.text)
}

// ---------------------------------------------------------------------------------------
// The tests

/// Every source still gives its expressions (a lost directory or a broken reader fails here).
#[test]
fn holds_every_source() {
    let held = held();
    println!("{}", held.summary());
    let count = |origin| held.of(origin).count();
    // As of writing: 847 rules, 270 dashboard queries, 1,773 of tests, 5 fuzz regressions.
    assert!(count(Origin::Rules) >= 840, "{}", held.summary());
    assert!(count(Origin::Dashboard) >= 250, "{}", held.summary());
    assert!(count(Origin::Test) >= 1500, "{}", held.summary());
    for source in [
        "tests/data/tkg/prometheus-server-configmap.yaml",
        "tests/data/operator/prometheusOperator-prometheusRule.yaml",
        "tests/data/dashboards/multicluster-kubernetes-mixin-apiserver.json",
        "dashboards/tkg.json",
        "tests/it/promql.rs",
        "tests/it/dialect.rs",
        "tests/it/semantic.rs",
        "tests/it/syntax.rs",
        "tests/golden/tkg-seed-config.yaml",
    ] {
        let found = held
            .per_source
            .iter()
            .any(|(s, (n, _))| s.starts_with(source) && *n > 0);
        assert!(found, "nothing held from {source}:\n{}", held.summary());
    }
    assert!(
        held.unprotectable.is_empty(),
        "dashboard queries whose template variables cannot be placed:\n{}",
        held.unprotectable.join("\n")
    );
}

#[test]
fn agrees_with_promql_parser() {
    let mut failures = Vec::new();
    let mut accepted = 0;
    for (expression, verdict) in verdicts() {
        match verdict {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(problem) => failures.push(format!("{}\n  {problem}", describe(expression))),
        }
    }
    println!(
        "the fast parser accepts {accepted} of {} held expressions",
        verdicts().len()
    );
    assert!(
        failures.is_empty(),
        "{} expressions read differently from promql-parser:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn reads_most_of_what_users_write() {
    let mut by_origin: BTreeMap<Origin, (usize, usize)> = BTreeMap::new();
    let mut declined = Vec::new();
    for (expression, verdict) in verdicts() {
        // Only what the full path reads: a broken dashboard query is declined by both.
        if !expression.origin.written_by_users()
            || promfed::promql::parse(&expression.text).is_err()
        {
            continue;
        }
        let counts = by_origin.entry(expression.origin).or_default();
        counts.1 += 1;
        if *verdict == Ok(true) {
            counts.0 += 1;
        } else {
            declined.push(describe(expression));
        }
    }
    let (accepted, total) = by_origin
        .values()
        .fold((0, 0), |(a, t), (da, dt)| (a + da, t + dt));
    assert!(total > 0, "no user-written expressions held");
    let share = accepted as f64 / total as f64;
    let report = format!(
        "the fast parser accepts {accepted} of {total} user-written expressions ({:.1}%; at \
         least {:.0}% wanted): {}",
        share * 100.0,
        LEAST_SHARE_ACCEPTED * 100.0,
        by_origin
            .iter()
            .map(|(o, (a, t))| format!("{o:?} {a}/{t}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("{report}\ndeclined:\n{}", declined.join("\n"));
    assert!(
        share >= LEAST_SHARE_ACCEPTED,
        "{report}\n{} declined:\n{}",
        declined.len(),
        declined.join("\n")
    );
}

/// What `promtool check rules` says of each of `exprs`, in batches of one rule file each.
fn promtool_verdicts(
    promtool: &std::path::Path,
    flags: &[&str],
    exprs: &[&str],
) -> Vec<Option<String>> {
    exprs
        .chunks(2000)
        .flat_map(|chunk| promtool_check_exprs(promtool, flags, chunk))
        .collect()
}

#[test]
fn accepted_expressions_pass_promtool() {
    let promtool3 = require!(promtool3);
    let promtool2 = require!(promtool);
    let accepted = accepted();
    let texts: Vec<&str> = accepted.iter().map(|(e, _)| e.text.as_str()).collect();
    // Prometheus 3.x by default, then with its experimental PromQL, then Debian's 2.42.
    let mut refused: Vec<(usize, Vec<String>)> = promtool_verdicts(&promtool3, &[], &texts)
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|m| (i, vec![format!("promtool 3: {m}")])))
        .collect();
    let mut levels = vec![("Prometheus 3", texts.len() - refused.len())];
    for (name, promtool, flags) in [
        (
            "Prometheus 3 with experimental PromQL",
            &promtool3,
            &[FEATURES][..],
        ),
        ("Prometheus 2.42", &promtool2, &[][..]),
    ] {
        let again: Vec<&str> = refused.iter().map(|(i, _)| texts[*i]).collect();
        let before = refused.len();
        let verdicts = promtool_verdicts(promtool, flags, &again);
        refused = refused
            .into_iter()
            .zip(verdicts)
            .filter_map(|((i, mut messages), v)| {
                let message = v?;
                messages.push(format!("{name}: {message}"));
                Some((i, messages))
            })
            .collect();
        levels.push((name, before - refused.len()));
    }
    println!("accepted by promtool, of {}: {levels:?}", texts.len());
    let failures: Vec<String> = refused
        .iter()
        .map(|(i, messages)| format!("{}\n  {}", describe(accepted[*i].0), messages.join("\n  ")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} expressions the fast parser accepts are refused by every promtool:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn accepted_expressions_read_the_same_by_lezer() {
    let lezer = require!(lezer_promql);
    let accepted = accepted();
    let texts: Vec<&str> = accepted.iter().map(|(e, _)| e.text.as_str()).collect();
    let trees = lezer.read(&texts);
    let mut failures = Vec::new();
    for ((expression, spans), tree) in accepted.iter().zip(&trees) {
        let text = expression.text.as_str();
        if tree.error {
            if !LEZER_GAPS.iter().any(|(gap, _)| *gap == text) {
                failures.push(format!(
                    "{}\n  lezer-promql {} finds an error in it (if Prometheus accepts it, \
                     list it in LEZER_GAPS, saying why)",
                    describe(expression),
                    lezer.version
                ));
            }
            continue;
        }
        let mut mine: Vec<SelectorSpan> = spans.clone();
        mine.sort_unstable();
        let mut theirs: Vec<SelectorSpan> =
            tree.selectors.iter().map(|s| (s.head, s.whole)).collect();
        theirs.sort_unstable();
        if mine != theirs {
            let show = |spans: &[SelectorSpan]| {
                spans
                    .iter()
                    .map(|&((a, b), (c, d))| {
                        let at = |r: std::ops::Range<usize>| {
                            text.get(r).unwrap_or("<not on a char boundary>")
                        };
                        format!(
                            "{a}..{b} {:?}, with range and offset {c}..{d} {:?}",
                            at(a..b),
                            at(c..d)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n      ")
            };
            failures.push(format!(
                "{}\n  selectors differ:\n    fast parser:\n      {}\n    lezer-promql {}:\n      {}",
                describe(expression),
                show(&mine),
                lezer.version,
                show(&theirs)
            ));
        }
    }
    println!(
        "lezer-promql {} read {} accepted expressions",
        lezer.version,
        trees.len()
    );
    assert!(
        failures.is_empty(),
        "{} expressions the fast parser accepts are read otherwise by lezer-promql {}:\n\n{}",
        failures.len(),
        lezer.version,
        failures.join("\n\n")
    );
}

/// The named cases: each row's claim about Prometheus holds for promfed's full path (so the
/// row is right), and the fast parser agrees with it wherever it accepts.
#[test]
fn named_cases_agree() {
    let mut failures = Vec::new();
    let mut declined = Vec::new();
    for &(name, expr, valid) in CASES {
        let full = promfed::promql::parse(expr);
        if full.is_ok() != valid {
            failures.push(format!(
                "{name}: {expr:?}: the row says Prometheus accepts it: {valid}; promfed's full \
                 path says {:?}",
                full.err()
            ));
        }
        match agreement(expr) {
            Ok(true) => {}
            Ok(false) => declined.push(name),
            Err(problem) => failures.push(format!("{name}: {expr:?}\n  {problem}")),
        }
    }
    println!(
        "the fast parser declines {} named cases: {declined:?}",
        declined.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every listed gap is one: lezer-promql finds an error in it, and it is valid PromQL.
#[test]
fn lezer_gaps_are_gaps() {
    let lezer = require!(lezer_promql);
    let gaps: Vec<&str> = LEZER_GAPS.iter().map(|(gap, _)| *gap).collect();
    for (gap, tree) in gaps.iter().zip(lezer.read(&gaps)) {
        assert!(tree.error, "lezer-promql {} reads {gap:?}", lezer.version);
        assert!(promfed::promql::parse(gap).is_ok(), "{gap:?}");
    }
}

/// The lezer peer reads what the checks above rely on: selector spans with ranges and offsets
/// (bytes, not UTF-16 units), postfix operators hung on enclosing nodes, errors.
#[test]
fn lezer_peer_reads_selector_spans() {
    let lezer = require!(lezer_promql);
    let trees = lezer.read(&[
        r#"rate(x{a="é"}[5m] offset 1h)"#,
        "a / count offset 5m",
        "-x[5m:1m] offset 1m",
        "sum(x",
    ]);
    let spans = |i: usize| -> Vec<SelectorSpan> {
        trees[i]
            .selectors
            .iter()
            .map(|s| (s.head, s.whole))
            .collect()
    };
    assert_eq!(spans(0), [((5, 14), (5, 28))]);
    assert_eq!(spans(1), [((0, 1), (0, 1)), ((4, 9), (4, 19))]);
    assert_eq!(spans(2), [((1, 2), (1, 2))]);
    assert!(!trees[0].error && !trees[1].error && !trees[2].error);
    assert!(trees[3].error);
}
