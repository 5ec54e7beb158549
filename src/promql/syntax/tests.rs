//! The fast parser against `promql-parser`: named rows for the tricky spots, and every corpus
//! expression. Where the fast parser answers, the crate must read the same AST.

use super::{parse, to_crate};

/// The fast parser accepts `text` and reads it as the crate does.
fn agrees(text: &str) {
    let fast = parse(text).unwrap_or_else(|| panic!("the fast parser declined {text:?}"));
    let full = crate::promql::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(to_crate(&fast), full, "{text:?}");
}

#[test]
fn rows_read_as_the_crate_reads_them() {
    let rows = [
        "x",
        "x{a=\"b\",c!=\"d\",e=~\"f.*\",g!~\"h|i\"}",
        "{__name__=\"x\"}",
        "x{}",
        "x{a=\"b\",}",
        "job:rate5m:sum",
        "rate(x[5m])",
        "rate(x[1h30m] offset 5m)",
        "x offset -5m",
        "max_over_time(rate(x[5m])[1h:5m])",
        "max_over_time(rate(x[5m])[1h:])",
        "max_over_time(rate(x[5m])[1h:] offset 1d)",
        "-x",
        "-1",
        "- -1",
        "+x",
        "-x ^ 2",
        "-2 ^ 2",
        "2 ^ 3 ^ 2",
        "1 - 2 * 3",
        "a - -b",
        "a + b * c - d / e % f",
        "a or b and c unless d",
        "a > bool 1",
        "1 == bool 1",
        "a / on (x, y) b",
        "a / on () b",
        "a * on (x) group_left b",
        "a * on (x) group_left (y, z) b",
        "a * ignoring (x) group_right () b",
        "a and on (x) b",
        "a atan2 b",
        "sum(x)",
        "sum by (a, b) (x)",
        "sum(x) by (a)",
        "SUM WITHOUT (a) (x)",
        "sum by () (x)",
        "sum by (a,) (x)",
        "topk(5, x)",
        "quantile(0.9, x)",
        "count_values(\"v\", x)",
        "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))",
        "label_replace(x, \"a\", \"$1\", \"b\", \"(.*)\")",
        "label_join(x, \"a\", \",\", \"b\", \"c\")",
        "round(x)",
        "round(x, 0.5)",
        "vector(1)",
        "time() - x",
        "scalar(x) + 1",
        "absent(x{a=\"b\"})",
        "(x)",
        "((x + y))",
        "1.5e3 + 0x1F + .5 + 010 + Inf + NaN + -Inf",
        "\"str\"",
        "'single'",
        "`raw`",
        "x{a=\"esc\\\"aped\\n\"}",
        "x{a='it\\'s'}",
        "x # a comment\n + y",
        "  x\n  +\n  y  ",
        "x and y or z",
        "x > 0",
        "sum(rate(x[5m])) by (job) / ignoring (job) group_left sum(y)",
    ];
    for text in rows {
        agrees(text);
    }
}

/// What the crate refuses, or the fast parser leaves to the full path, it declines.
#[test]
fn declines_rows() {
    let rows = [
        "",
        "x{",
        "x}",
        "rate(x)",
        "sum(x[5m])",
        "x[5m][5m]",
        "x offset 5m offset 5m",
        "x offset 5m [5m]",
        "(x) offset 5m",
        "(x)[5m]",
        "1 > 1",
        "x + bool y",
        "x and 1",
        "1 + on (a) x",
        "x * group_left y",
        "x * on (a) group_left (a) y",
        "x and on (a) group_left y",
        "{}",
        "{a=\"\"}",
        "{a=~\".*\"}",
        "x{__name__=\"y\"}",
        "no_such_function(x)",
        "topk(x)",
        "sum(1, x)",
        "count_values(1, x)",
        "-\"s\"",
        "-x[5m]",
        "x @ 100",
        "x[0s]",
        "x[5]",
        "x{a=~\"(\"}",
        "x{\"quoted\"=\"y\"}",
        "x{a=\"b\" or c=\"d\"}",
        "sum(x,)",
        "rate(x[5m],)",
        "5m",
        "x offset 5",
        "`a\\b`",
        "limitk(1, x)",
        "sum by (group) (x)",
        "anchored",
    ];
    for text in rows {
        assert!(parse(text).is_none(), "{text:?}");
    }
}

/// Every corpus expression the fast parser reads, it reads as the crate does; and it reads
/// nearly all of them, or the fast path would not be the one taken.
#[test]
fn corpus_reads_as_the_crate_reads_it() {
    let corpus = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rules/all_exprs.txt"
    ))
    .unwrap();
    let mut declined = Vec::new();
    let mut total = 0;
    for text in corpus.split("\n---\n") {
        total += 1;
        match parse(text) {
            Some(fast) => {
                let full = crate::promql::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(to_crate(&fast), full, "{text}");
            }
            None => declined.push(text),
        }
    }
    assert!(
        declined.len() * 100 <= total,
        "declined {} of {total}: {declined:#?}",
        declined.len()
    );
}

#[test]
fn plain_patterns_are_valid_without_a_parse() {
    use super::plainly_valid;
    for pattern in ["", "LIST|GET", "kube-.*", ".+", "a.*b.+|c", "/api/v1:x,y=z"] {
        assert!(plainly_valid(pattern), "{pattern}");
        assert!(regex::Regex::new(&format!("^(?:{pattern})$")).is_ok());
    }
    for pattern in ["*", "a**", ".+*", "(a", "a{2}", "[a-z]", "a\\d", "a?", "é"] {
        assert!(!plainly_valid(pattern), "{pattern}");
    }
}

/// Durations read as the crate reads them; only zero, plain numbers and values too big for
/// milliseconds in a u64 are declined.
#[test]
fn durations_read_as_the_crate_reads_them() {
    let units = ["y", "w", "d", "h", "m", "s", "ms"];
    let mut texts: Vec<String> = Vec::new();
    for (i, a) in units.iter().enumerate() {
        texts.push(format!("5{a}"));
        for b in &units[i + 1..] {
            texts.push(format!("1{a}30{b}"));
            texts.push(format!("2{b}3{a}"));
        }
        texts.push(format!("0{a}"));
        texts.push(format!("4294967295{a}"));
        texts.push(format!("4294967296{a}"));
        texts.push(format!("1{a}1{a}"));
    }
    texts.extend(
        [
            "1h30m15s100ms",
            "90s",
            "1d2h",
            "10ms",
            "1mss",
            "1x",
            "m",
            "1",
        ]
        .map(String::from),
    );
    for text in &texts {
        let crate_reads = promql_parser::util::parse_duration(text).ok();
        match super::parser::duration(text) {
            Some(ours) => assert_eq!(Some(ours), crate_reads, "{text}"),
            None => assert!(
                crate_reads
                    .is_none_or(|d| d.is_zero() || !text.bytes().any(|b| b.is_ascii_alphabetic()))
                    || text.starts_with("429496729"),
                "declined {text}, the crate reads {crate_reads:?}"
            ),
        }
    }
}
