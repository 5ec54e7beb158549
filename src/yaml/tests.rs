use serde_json::json;

use super::resolve::number_text;
use super::*;

fn parse_ok(input: &str) -> Node {
    parse(input, Limits::default())
        .unwrap_or_else(|e| panic!("parsing {input:?}: {e}"))
        .unwrap_or_else(|| panic!("{input:?} has no document"))
}

fn parse_err(input: &str) -> YamlError {
    match parse(input, Limits::default()) {
        Ok(node) => panic!("{input:?} parsed: {node:?}"),
        Err(e) => e,
    }
}

/// The tree as a reader sees it, to compare trees read from different texts: no line
/// numbers, and strings without their style (a quoted string may be written plain).
fn canonical(node: &Node) -> Node {
    let value = match &node.value {
        Value::Scalar(s) => Value::Scalar(Scalar {
            style: if s.kind() == Kind::Str {
                Style::Any
            } else {
                s.style
            },
            ..s.clone()
        }),
        Value::Seq(items) => Value::Seq(items.iter().map(canonical).collect()),
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| (canonical(k), canonical(v)))
                .collect(),
        ),
    };
    Node { value, line: 0 }
}

/// parse -> emit -> parse gives the same tree; returns the emitted text.
fn round_trip(input: &str) -> String {
    let first = parse_ok(input);
    let out = emit(&first);
    let second = parse(&out, Limits::default())
        .unwrap_or_else(|e| panic!("re-parsing {out:?} (from {input:?}): {e}"))
        .expect("a document");
    assert_eq!(
        canonical(&first),
        canonical(&second),
        "round trip of {input:?} through {out:?}"
    );
    out
}

/// Every YAML 1.1 (or 1.2, or yaml.v2) trap: none of these is a string when plain.
const TRAPS: &[&str] = &[
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "yes",
    "Yes",
    "no",
    "NO",
    "y",
    "Y",
    "n",
    "N",
    "true",
    "False",
    "TRUE",
    "~",
    "null",
    "Null",
    "NULL",
    "0777",
    "0o17",
    "0x1F",
    "0b101",
    "1_000",
    "12:30",
    "190:20:30",
    "1:30.5",
    ".inf",
    "-.inf",
    "+.INF",
    ".NaN",
    ".nan",
    "1e3",
    "1.5e+3",
    "1.",
    ".5",
    "-.5",
    "+12",
    "-1",
    "0",
    "09",
    "1.2.3",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "2001-12-14 21:59:43.10 -5",
    "2002-1-2",
    "<<",
    "=",
];

const PROMETHEUS_STYLE: &str = "\
global:
  scrape_interval: 1m
  external_labels:
    cluster: \"on\"
scrape_configs:
- job_name: prometheus
  static_configs:
  - targets:
    - localhost:9090
  - targets: []
    labels: {}
- - nested
  - - deeper
rule_files:
- /etc/config/recording_rules.yml
";

#[test]
fn emits_prometheus_layout_unchanged() {
    let node = parse_ok(PROMETHEUS_STYLE);
    assert_eq!(emit(&node), PROMETHEUS_STYLE);
    round_trip(PROMETHEUS_STYLE);
}

#[test]
fn reindents_other_layouts() {
    let input = "a:\n    b:\n        - x\n        -   y: 1\n            z: [1, {k: v}]\n";
    assert_eq!(
        round_trip(input),
        "a:\n  b:\n  - x\n  - y: 1\n    z:\n    - 1\n    - k: v\n"
    );
}

#[test]
fn quoted_traps_stay_quoted() {
    for trap in TRAPS {
        for quoted in [format!("\"{trap}\""), format!("'{trap}'")] {
            let input = format!("k: {quoted}\n- {quoted}\n");
            // The second line makes it invalid; build the two documents separately.
            let _ = input;
            let map = format!("k: {quoted}\n");
            let out = round_trip(&map);
            assert_eq!(out, format!("k: \"{trap}\"\n"), "{map:?}");
            let seq = format!("- {quoted}\n");
            assert_eq!(round_trip(&seq), format!("- \"{trap}\"\n"), "{seq:?}");
            let node = parse_ok(&map);
            assert_eq!(node.get("k").and_then(Node::as_str), Some(*trap));
        }
        // As a key too.
        let key = format!("\"{trap}\": v\n");
        assert_eq!(round_trip(&key), key);
    }
}

#[test]
fn plain_traps_stay_plain() {
    for trap in TRAPS {
        let map = format!("k: {trap}\n");
        assert_eq!(round_trip(&map), map);
        let seq = format!("- {trap}\n");
        assert_eq!(round_trip(&seq), seq);
        let node = parse_ok(&map);
        let value = node.get("k").unwrap();
        assert_eq!(value.scalar_text(), Some(*trap));
        assert_eq!(
            value.as_str().is_some(),
            matches!(resolve_1_1(trap), Kind::Str | Kind::Timestamp | Kind::Value),
            "{trap}"
        );
    }
    assert_eq!(round_trip("k:\n- \n"), "k:\n-\n");
}

#[test]
fn made_strings_are_quoted_only_when_needed() {
    let cases = [
        ("localhost:9090", "localhost:9090"),
        ("5m", "5m"),
        ("a b", "a b"),
        ("http://x/y#frag", "http://x/y#frag"),
        ("sum(rate(x[5m]))", "sum(rate(x[5m]))"),
        ("", "\"\""),
        ("a: b", "\"a: b\""),
        ("a #b", "\"a #b\""),
        ("ends:", "\"ends:\""),
        ("-x", "\"-x\""),
        ("- x", "\"- x\""),
        ("?x", "\"?x\""),
        ("*x", "\"*x\""),
        ("&x", "\"&x\""),
        ("!x", "\"!x\""),
        ("%x", "\"%x\""),
        ("@x", "\"@x\""),
        ("`x", "\"`x\""),
        ("{x}", "\"{x}\""),
        ("[x]", "\"[x]\""),
        ("|x", "\"|x\""),
        (">x", "\">x\""),
        ("#x", "\"#x\""),
        ("'x'", "\"'x'\""),
        ("\"x\"", "\"\\\"x\\\"\""),
        (" x", "\" x\""),
        ("x ", "\"x \""),
        ("...", "\"...\""),
        ("---", "\"---\""),
        ("a\tb", "\"a\\tb\""),
        ("10.0.0.1", "\"10.0.0.1\""),
        (
            "\u{0}\u{1}\u{7f}\u{85}\u{2028}\u{feff}\\",
            "\"\\0\\x01\\x7F\\x85\\u2028\\uFEFF\\\\\"",
        ),
        ("é ü 中 🦀", "é ü 中 🦀"),
    ];
    for (text, written) in cases {
        let node = Node::map(vec![(Node::string("k"), Node::string(text))]);
        let out = emit(&node);
        assert_eq!(out, format!("k: {written}\n"), "{text:?}");
        let back = parse_ok(&out);
        assert_eq!(back.get("k").and_then(Node::as_str), Some(text), "{out:?}");
    }
    for trap in TRAPS {
        let node = Node::seq(vec![Node::string(*trap)]);
        assert_eq!(emit(&node), format!("- \"{trap}\"\n"));
    }
}

const EXPRS: &[&str] = &[
    "sum by (job) (\n  rate(http_requests_total[5m])\n)",
    "sum by (job) (\n  rate(http_requests_total[5m])\n)\n",
    "sum by (job) (\n  rate(http_requests_total[5m])\n)\n\n",
    "sum by (job) (\n  rate(http_requests_total[5m])\n)\n\n\n",
    "# leading comment\nup == 0\n",
    "up\n# trailing comment",
    "  indented first line\nsecond\n",
    "  indented first line\n    more\n",
    "\n\nleading empty lines\n",
    "\n  leading empty then indented\n",
    "\tleading tab\nx\n",
    "tabs\tinside\n\tand here\n",
    "trailing spaces  \nhere \n",
    "a\n\nb\n\n\nc",
    "blank spaces line\n   \nx\n",
    "x: y\n- z\n? q\n--- doc\n... end\n",
    "'quotes' and \"doubles\" and \\backslash\n",
    "one line with newline\n",
    "uni 中文\nline 🦀\n",
];

/// Each expression in every position: map value (nested), seq item, map in seq, root.
#[test]
fn multi_line_strings_round_trip_exactly() {
    for expr in EXPRS {
        let rule = Node::map(vec![
            (Node::string("record"), Node::string("r")),
            (Node::string("expr"), Node::string(*expr)),
        ]);
        let doc = Node::map(vec![(
            Node::string("groups"),
            Node::seq(vec![Node::map(vec![
                (Node::string("name"), Node::string("g")),
                (
                    Node::string("rules"),
                    Node::seq(vec![
                        rule,
                        Node::string(*expr),
                        Node::seq(vec![Node::string(*expr)]),
                    ]),
                ),
                (
                    Node::string("nested"),
                    Node::map(vec![(Node::string("deep"), Node::string(*expr))]),
                ),
            ])]),
        )]);
        let out = emit(&doc);
        assert!(out.contains("expr: |"), "{expr:?} not literal in:\n{out}");
        let back = parse_ok(&out);
        let group = &back.get("groups").unwrap().as_seq().unwrap()[0];
        let rules = group.get("rules").unwrap().as_seq().unwrap();
        let nested = &rules[2].as_seq().unwrap()[0];
        for (what, got) in [
            ("map value", rules[0].get("expr")),
            ("seq item", Some(&rules[1])),
            ("nested seq item", Some(nested)),
            ("nested map value", group.get("nested").unwrap().get("deep")),
        ] {
            assert_eq!(got.and_then(Node::as_str), Some(*expr), "{what} in:\n{out}");
        }
        // At the root.
        let root = emit(&Node::string(*expr));
        assert_eq!(parse_ok(&root).as_str(), Some(*expr), "root {root:?}");
    }
}

#[test]
fn literal_headers() {
    let cases = [
        ("a\nb", "k: |-\n  a\n  b\n"),
        ("a\nb\n", "k: |\n  a\n  b\n"),
        ("a\nb\n\n", "k: |+\n  a\n  b\n\n"),
        (" a\nb\n", "k: |2\n   a\n  b\n"),
        (" a\nb", "k: |2-\n   a\n  b\n"),
        ("\n a\n\n", "k: |2+\n\n   a\n\n"),
    ];
    for (text, want) in cases {
        let node = Node::map(vec![(Node::string("k"), Node::string(text))]);
        assert_eq!(emit(&node), want, "{text:?}");
    }
    // Only line breaks or spaces: no content to show, so quoted.
    for text in ["\n", "\n\n", "  \n", "a\r\nb\n", "a\u{85}b\n"] {
        let node = Node::seq(vec![Node::string(text)]);
        let out = emit(&node);
        assert!(out.starts_with("- \""), "{text:?} -> {out:?}");
        assert_eq!(parse_ok(&out).as_seq().unwrap()[0].as_str(), Some(text));
    }
}

#[test]
fn block_scalars_in_input_round_trip() {
    let input = "\
groups:
- name: g
  rules:
  - alert: A
    expr: |
      sum(x) # comment
        > 0
    annotations:
      description: >-
        folded
        text
      keep: |+
        kept

  - record: r
    expr: |2-
        indented
      less
";
    let out = round_trip(input);
    let node = parse_ok(&out);
    let rules = node.get("groups").unwrap().as_seq().unwrap()[0]
        .get("rules")
        .unwrap()
        .as_seq()
        .unwrap();
    assert_eq!(
        rules[0].get("expr").unwrap().as_str(),
        Some("sum(x) # comment\n  > 0\n")
    );
    assert_eq!(
        rules[0]
            .get("annotations")
            .unwrap()
            .get("description")
            .unwrap()
            .as_str(),
        Some("folded text")
    );
    assert_eq!(
        rules[1].get("expr").unwrap().as_str(),
        Some("  indented\nless")
    );
}

#[test]
fn multi_line_plain_scalars_are_quoted() {
    let out = round_trip("k: a\n  b\n\n  c\nj: x\n  y\n");
    assert_eq!(out, "k: \"a b\\nc\"\nj: x y\n");
}

#[test]
fn emits_compact_nested_collections() {
    let input = "- - a\n  - - b\n    - c\n- k: v\n  j:\n  - 1\n- []\n- {}\n- k: []\n  m: {}\n";
    assert_eq!(round_trip(input), input);
    assert_eq!(emit(&Node::map(vec![])), "{}\n");
    assert_eq!(emit(&Node::seq(vec![])), "[]\n");
    assert_eq!(round_trip("{}"), "{}\n");
    assert_eq!(round_trip("[]"), "[]\n");
    assert_eq!(round_trip("foo"), "foo\n");
    assert_eq!(round_trip("'on'"), "\"on\"\n");
}

#[test]
fn emits_awkward_keys() {
    // Non-scalar keys, an empty key, a key too long to be implicit.
    let long = "k".repeat(1100);
    let input = format!(
        "? [a, b]\n: seq key\n? {{x: 1}}\n: map key\n: empty key\n? \"{long}\"\n: long\n\"on\": quoted\non: plain\n\"a\\nb\": multi\n"
    );
    let out = round_trip(&input);
    assert!(
        out.starts_with("? - a\n  - b\n: seq key\n? x: 1\n: map key\n?\n: empty key\n? "),
        "{out}"
    );
    assert!(
        out.contains("\n\"on\": quoted\non: plain\n\"a\\nb\": multi\n"),
        "{out}"
    );
    let node = parse_ok(&out);
    assert_eq!(node.get("on").and_then(Node::as_str), Some("quoted"));
    assert_eq!(node.get(&long).and_then(Node::as_str), Some("long"));
    // A nested seq as a value under an explicit key.
    round_trip("? [a]\n: - x\n  - y\n");
    round_trip("- ? [a]\n  : {b: [c]}\n");
}

#[test]
fn keeps_tags() {
    let input = "a: !!str 0777\nc: !!str\nd: !!str \"on\"\ne: ! x\nf: !!int \"12\"\n";
    let out = round_trip(input);
    assert_eq!(out, input);
    // Local, verbatim and escaped tags are refused (found by fuzzing: they did not all
    // come back as they were read).
    for refused in [
        "b: !foo bar\n",
        "g: !<tag:example.com,2000:x> y\n",
        "!<tag:yaml.org,2002:app.kubernetes.io/pf>\n",
        "!F.%00\r(",
        "!%0ex ",
        "!/?2222=/",
    ] {
        assert!(
            parse_err(refused).message.contains("not supported"),
            "{refused:?}"
        );
    }
    let node = parse_ok(&out);
    assert_eq!(node.get("a").unwrap().as_str(), Some("0777"));
    assert_eq!(node.get("c").unwrap().as_str(), Some(""));
    assert_eq!(node.get("f").unwrap().to_json(), json!(12));
    // Collection tags that change nothing are dropped; others are refused.
    assert_eq!(round_trip("a: !!map {b: !!seq [c]}\n"), "a:\n  b:\n  - c\n");
    assert!(
        parse_err("a: !!set {b}\n")
            .message
            .contains("not supported")
    );
}

#[test]
fn expands_aliases() {
    let node = parse_ok("a: &x\n  b: [1, 2]\nc: *x\nd: &s str\ne: *s\n");
    assert_eq!(node.get("c").unwrap().to_json(), json!({"b": [1, 2]}));
    assert_eq!(node.get("c").unwrap().line, 3);
    assert_eq!(node.get("e").unwrap().as_str(), Some("str"));
    assert_eq!(
        emit(&node),
        "a:\n  b:\n  - 1\n  - 2\nc:\n  b:\n  - 1\n  - 2\nd: str\ne: str\n"
    );
    // Aliases inside anchored nodes, anchors inside anchored nodes, redefined anchors.
    let node = parse_ok(
        "a: &a [1, &b {x: [2]}]\nb: *b\nc: &c [*a, *b]\nd: *c\ne: &a [3]\nf: *a\n*b : k\n",
    );
    assert_eq!(
        node.to_json(),
        json!({
            "a": [1, {"x": [2]}], "b": {"x": [2]}, "c": [[1, {"x": [2]}], {"x": [2]}],
            "d": [[1, {"x": [2]}], {"x": [2]}], "e": [3], "f": [3], "{\"x\":[2]}": "k",
        })
    );
    let d = node.get("d").unwrap();
    assert_eq!((d.line, d.as_seq().unwrap()[0].line), (4, 3));
    round_trip("a: &a [1, &b {x: [2]}]\nb: *b\nc: &c [*a, *b]\nd: *c\n");
    assert!(parse_err("&a [*a]").message.contains("recursive alias"));
    assert!(parse_err("a: *nope\n").message.contains("unknown anchor"));
}

fn alias_bomb(levels: usize, width: usize) -> String {
    let mut doc = String::from("l0: &l0 [lol]\n");
    for level in 1..=levels {
        let refs = vec![format!("*l{}", level - 1); width].join(", ");
        doc.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
    }
    doc
}

#[test]
fn an_alias_of_a_long_string_counts_its_length() {
    let long = "x".repeat(1000);
    let doc = format!("a: &a {long}\nb: [{}]\n", vec!["*a"; 100].join(", "));
    let small = Limits {
        max_bytes: 50_000,
        ..Limits::default()
    };
    let err = parse(&doc, small).unwrap_err();
    assert_eq!(err.over_limit, Some(Over::Bytes), "{err}");
    let (_, expanded) = parse_counted(&doc, Limits::default()).unwrap();
    // The two keys, the string, and a hundred copies of it.
    assert_eq!(expanded.bytes, 2 + 101 * 1000);
    assert_eq!(expanded.nodes, 1 + 2 + 1 + 1 + 100);
}

#[test]
fn top_level_keys_are_found_without_expanding_aliases() {
    for (doc, found) in [
        ("groups: []\n", true),
        ("a: {groups: 1}\ngroups: x\n", true),
        ("? [a]\n: x\ngroups: y\n", true),
        ("a: {groups: 1}\nb: [groups]\n", false),
        ("a: groups\n", false),
        ("? [groups]\n: x\n", false),
        ("- groups\n", false),
        ("groups\n", false),
        ("", false),
    ] {
        assert_eq!(has_top_level_key(doc, "groups"), Ok(found), "{doc:?}");
    }
    let bomb = format!("{}groups: []\n", alias_bomb(9, 10));
    assert_eq!(has_top_level_key(&bomb, "groups"), Ok(true));
    assert!(has_top_level_key("a: [unclosed\n", "groups").is_err());
}

#[test]
fn alias_bomb_fails_fast() {
    let doc = alias_bomb(9, 10);
    let err = parse_err(&doc);
    assert!(err.message.contains("alias bomb"), "{err}");
    // Aliases of collections are counted, not copied, until the document is known to
    // fit: the bomb fails on the count of what it would expand to (10^9 scalars), before
    // it allocates anything.
    assert!(err.message.contains("1000000"), "{err}");
    let small = Limits {
        max_nodes: 10_000,
        ..Limits::default()
    };
    let err = parse(&doc, small).unwrap_err();
    assert_eq!(err.line, 5, "{err}");
    // The same shape within the budget is fine.
    assert!(parse(&alias_bomb(3, 10), Limits::default()).is_ok());
}

fn assert_too_deep(doc: &str) {
    let err = parse_err(doc);
    assert_eq!(err.message, "nesting deeper than 100", "{err}");
}

#[test]
fn deep_nesting_fails_without_overflow() {
    const N: usize = 20_000;
    assert_too_deep(&format!("{}{}", "[".repeat(N), "]".repeat(N)));
    assert_too_deep(&format!("{}{}", "{a: ".repeat(N), "}".repeat(N)));
    assert_too_deep(&format!("{}a\n", "- ".repeat(N)));
    // Block mappings need a deeper indentation per level, so the document grows with the
    // square of the depth: 2,000 levels (2 MB) already take the same path as 20,000.
    let mut doc = String::new();
    for level in 0..2_000 {
        doc.push_str(&" ".repeat(level));
        doc.push_str("a:\n");
    }
    assert_too_deep(&doc);
    // Exactly at the limit is fine.
    assert!(
        parse(
            &format!("{}{}", "[".repeat(100), "]".repeat(100)),
            Limits::default()
        )
        .is_ok()
    );
    assert_too_deep(&format!("{}{}", "[".repeat(101), "]".repeat(101)));
    // An alias may not take the tree past the limit either.
    let deep = format!("{}{}", "[".repeat(60), "]".repeat(60));
    assert_too_deep(&format!(
        "a: &x {deep}\nb: {}*x{}\n",
        "[".repeat(50),
        "]".repeat(50)
    ));
}

#[test]
fn rejects_duplicate_keys() {
    let err = parse_err("a: 1\nb: 2\na: 3\n");
    assert_eq!(err.line, 3);
    assert!(
        err.message
            .contains("duplicate key \"a\" (first on line 1)"),
        "{err}"
    );
    let err = parse_err("x:\n  \"a\": 1\n  a: 2\n");
    assert_eq!(err.line, 3);
    // Large mappings use an index.
    let mut doc: String = (0..40).map(|i| format!("k{i}: {i}\n")).collect();
    doc.push_str("k7: again\n");
    let err = parse_err(&doc);
    assert_eq!(
        (err.line, err.message.contains("first on line 8")),
        (41, true),
        "{err}"
    );
    // Same text, different values: not duplicates.
    parse_ok("1: a\n\"1\": b\non: c\n'on': d\n");
    let doc: String = (0..40).map(|i| format!("{i}: x\n\"{i}\": y\n")).collect();
    parse_ok(&doc);
}

#[test]
fn documents() {
    for empty in ["", "\n", "# only a comment\n", "---\n", "---\n...\n"] {
        assert_eq!(parse(empty, Limits::default()), Ok(None), "{empty:?}");
    }
    let err = parse_err("a: 1\n---\nb: 2\n");
    assert_eq!(err.line, 2);
    assert!(err.message.contains("more than one"), "{err}");
    parse_err("---\n---\n");
    assert_eq!(
        parse_ok("--- # c\na: 1\n...\n").get("a").unwrap().to_json(),
        json!(1)
    );
    assert_eq!(parse_ok("~").to_json(), json!(null));
}

#[test]
fn rejects_control_characters() {
    for (doc, line) in [
        ("a: b\u{0}c\n", 1),
        ("a: \"b\u{0}\"\n", 1),
        ("a: b\nc: \u{1}\n", 2),
        ("a: \u{7f}\n", 1),
        ("a: \u{9c}\n", 1),
        ("a: |\n  x\u{85}y\n", 2),
        ("a: x\u{2028}y\n", 1),
        ("\u{0}", 1),
    ] {
        let err = parse_err(doc);
        assert_eq!(err.line, line, "{doc:?}: {err}");
        assert!(err.message.contains("U+"), "{err}");
    }
    // Wherever it is in the text, across the chunks the plain text is passed over in.
    for at in 50..140 {
        for c in ['\u{1}', '\u{85}', '\u{2028}', '\u{ffff}'] {
            let doc = format!("a: b\n{}: {c}\n", "x".repeat(at));
            assert_eq!(parse_err(&doc).line, 2, "{doc:?}");
        }
        let doc = format!("a: b\n{}: é\u{a0}\t\r\n", "x".repeat(at));
        parse_ok(&doc);
    }
    // Tabs, CR LF and other Unicode are fine.
    assert_eq!(
        parse_ok("a: \"x\ty\"\r\nb: é\r\n")
            .get("b")
            .unwrap()
            .as_str(),
        Some("é")
    );
}

#[test]
fn rejects_what_yaml_1_1_and_1_2_read_differently_in_flow() {
    for doc in [
        "a: [?x]\n",
        "a: [x?y]\n",
        "a: {?x: 1}\n",
        "a: [:x]\n",
        "é: [ü, [?x]]\n",
        "- [a: ?b]\n",
    ] {
        let err = parse_err(doc);
        assert!(err.message.contains("quote it"), "{doc:?}: {err}");
    }
    // Even with properties, white space and comments before the bracket.
    for doc in [
        "a: &x [ ?]\n",
        "a: !!seq # c\n  [ ?]\n",
        "a: &x\n  [ ?]\n",
        "a: [ ?:<, x]\n",
    ] {
        assert!(parse_err(doc).message.contains("quote it"), "{doc:?}");
    }
    // Anchor names: YAML 1.1 readers split `&ny?_` into the anchor `ny` and `?_`.
    for doc in [
        "- &ny?_\n",
        "- &a? x\n- *a?\n",
        "- &é x\n",
        "- !!str &a.b x\n",
        "a: &x!!seq [b]\n",
    ] {
        let err = parse_err(doc);
        assert!(err.message.contains("anchor name"), "{doc:?}: {err}");
    }
    parse_ok("- &a-b_C9 [x]\n- *a-b_C9\n- !!str &s x\n- &t !!str y\n- *s\n");
    // A block mapping whose first key is a flow sequence is not a flow collection.
    assert_eq!(
        parse_ok("[a]: x?y\n").as_map().unwrap()[0].1.as_str(),
        Some("x?y")
    );
    // Fine: quoted, explicit keys, block context, colons inside.
    let node =
        parse_ok("a: ['?x', \"x?y\"]\nb: {? x : 1}\nc: ?x\nd: x?y\ne: [localhost:9090, a:b]\n");
    assert_eq!(
        node.to_json(),
        json!({"a": ["?x", "x?y"], "b": {"x": 1}, "c": "?x", "d": "x?y", "e": ["localhost:9090", "a:b"]})
    );
}

#[test]
fn parser_errors_have_lines() {
    let err = parse_err("a: b\nc: [d\n");
    assert!(err.line >= 2, "{err}");
    let err = parse_err("a: b\n c: d\n");
    assert_eq!(err.line, 2, "{err}");
    assert!(err.to_string().starts_with("line 2: "));
}

#[test]
fn records_lines() {
    let node = parse_ok("# c\na:\n  b: x\nseq:\n- 1\n- k: v\n");
    assert_eq!(node.line, 2);
    let (k, v) = &node.as_map().unwrap()[0];
    assert_eq!((k.line, v.line), (2, 3));
    let seq = node.get("seq").unwrap().as_seq().unwrap();
    assert_eq!((seq[0].line, seq[1].line), (5, 6));
    assert_eq!(seq[1].get("k").unwrap().line, 6);
}

#[test]
fn resolves_yaml_1_1() {
    let cases = [
        ("", Kind::Null),
        ("~", Kind::Null),
        ("NULL", Kind::Null),
        ("nULL", Kind::Str),
        ("y", Kind::Bool),
        ("Off", Kind::Bool),
        ("oFF", Kind::Str),
        ("0", Kind::Int),
        ("-0", Kind::Int),
        ("0777", Kind::Int),
        ("0778", Kind::Str),
        ("0b1_0", Kind::Int),
        ("0x_1F", Kind::Int),
        ("0X1F", Kind::Str),
        ("1_000", Kind::Int),
        ("12:30", Kind::Int),
        ("12:60", Kind::Str),
        ("-1:2:03", Kind::Int),
        ("0:30", Kind::Str),
        ("1.5", Kind::Float),
        ("1.", Kind::Float),
        (".5", Kind::Float),
        ("-.5e+3", Kind::Float),
        ("1e3", Kind::Str),
        ("1.0e3", Kind::Str),
        ("1.0e-3", Kind::Float),
        ("1:30.5", Kind::Float),
        (".", Kind::Str),
        ("1.2.3", Kind::Str),
        (".inf", Kind::Float),
        ("-.Inf", Kind::Float),
        (".NaN", Kind::Float),
        ("-.nan", Kind::Str),
        ("2001-12-14", Kind::Timestamp),
        ("2001-12-1", Kind::Str),
        ("2001-12-14t21:59:43.10-05:00", Kind::Timestamp),
        ("2001-12-14 21:59:43.10 -5", Kind::Timestamp),
        ("2001-12-14 21:59:43.10Z", Kind::Timestamp),
        ("2001-1-4 1:59:43", Kind::Timestamp),
        ("2001-12-14 21:59", Kind::Str),
        ("<<", Kind::Merge),
        ("=", Kind::Value),
        ("localhost:9090", Kind::Str),
        ("10.0.0.1", Kind::Str),
    ];
    for (text, kind) in cases {
        assert_eq!(resolve_1_1(text), kind, "{text:?}");
    }
}

#[test]
fn converts_to_json() {
    let node = parse_ok(
        "\
oct: 0777
hex: 0x1F
bin: -0b101
under: 1_000
sexa: 12:30
neg_sexa: -1:30
float: 1.5
sexa_float: 1:30.5
exp: 1.0e+3
on: on
y: y
no: NO
null: ~
empty:
ts: 2001-12-14
quoted: \"on\"
inf: .inf
u64: 18446744073709551615
i64_min: -9223372036854775808
huge: 99999999999999999999999
str_int: !!int \"12\"
str_float: !!float \"3\"
str: !!str 12
version: 2.45.0
",
    );
    assert_eq!(
        node.to_json(),
        json!({
            "oct": 511, "hex": 31, "bin": -5, "under": 1000, "sexa": 750, "neg_sexa": -90,
            "float": 1.5, "sexa_float": 90.5, "exp": 1000.0, "true": true, "true": true,
            "false": false, "null": null, "empty": null, "ts": "2001-12-14", "quoted": "on",
            "inf": ".inf", "u64": 18446744073709551615u64, "i64_min": i64::MIN,
            "huge": 1e23, "str_int": 12, "str_float": 3.0, "str": "12", "version": "2.45.0",
        })
    );
    let merged =
        parse_ok("base: &b {x: 1, w: 2}\nother: &o {w: 9, z: 3}\nd:\n  <<: [*b, *o]\n  w: 5\n");
    assert_eq!(
        merged.get("d").unwrap().to_json(),
        json!({"x": 1, "w": 5, "z": 3})
    );
}

#[test]
fn from_json_reads_back_the_same() {
    let mut value = json!({
        "numbers": [0, -1, 1.5, 1e300, -2.5e-8, 0.1, 18446744073709551615u64, i64::MIN, 1.0],
        "bools": [true, false], "null": null,
        "empty": {"seq": [], "map": {}, "str": ""},
        "nested": [[["x"]], [{"a": {"b": ["c"]}}]],
        "multi": "line one\n  line two\n# comment\n",
        "ctrl": "a\u{1}b\u{85}c\u{2028}\"\\",
    });
    for trap in TRAPS {
        value[*trap] = json!(trap);
        value["traps"]
            .as_array_mut()
            .map(|a| a.push(json!(trap)))
            .unwrap_or_else(|| {
                value["traps"] = json!([trap]);
            });
    }
    let out = emit(&Node::from_json(&value));
    assert_eq!(parse_ok(&out).to_json(), value, "{out}");
    assert_eq!(
        number_text(&serde_json::Number::from_f64(1e300).unwrap()),
        "1.0e+300"
    );
    assert_eq!(
        resolve_1_1(&number_text(&serde_json::Number::from_f64(1e-7).unwrap())),
        Kind::Float
    );
}

#[test]
fn accessors() {
    let mut node = parse_ok("a: 1\nb: x\non: plain\n\"on\": quoted\nc:\nd: [1]\n");
    assert_eq!(node.get("a").unwrap().as_str(), None);
    assert_eq!(node.get("a").unwrap().scalar_text(), Some("1"));
    assert_eq!(node.get("b").unwrap().as_str(), Some("x"));
    assert_eq!(node.get("on").unwrap().as_str(), Some("quoted"));
    assert!(node.get("c").unwrap().is_null());
    assert!(!node.get("b").unwrap().is_null());
    assert!(!Node::string("null").is_null());
    assert_eq!(node.get("d").unwrap().as_seq().unwrap().len(), 1);
    assert!(node.get("zz").is_none());
    assert!(node.get("d").unwrap().get("x").is_none());

    node.insert("b", Node::string("z"));
    node.insert("e", Node::string("new"));
    node.get_mut("c").unwrap().insert("k", Node::string("v"));
    node.get_mut("d")
        .unwrap()
        .as_seq_mut()
        .unwrap()
        .push(Node::plain("2"));
    assert_eq!(node.remove("a").unwrap().scalar_text(), Some("1"));
    assert!(node.remove("a").is_none());
    assert_eq!(
        emit(&node),
        "b: z\non: plain\n\"on\": quoted\nc:\n  k: v\nd:\n- 1\n- 2\ne: new\n"
    );
    assert_eq!(node.as_map().unwrap().len(), 6);
    node.as_map_mut().unwrap().clear();
    assert_eq!(emit(&node), "{}\n");
}

#[test]
fn plain_nodes_that_cannot_be_plain_are_quoted() {
    let node = Node::seq(vec![
        Node::plain("a: b"),
        Node::plain("x\ny"),
        Node::plain("-"),
        Node::plain("true"),
        Node::plain("-1"),
    ]);
    let out = emit(&node);
    assert_eq!(out, "- \"a: b\"\n- \"x\\ny\"\n- \"-\"\n- true\n- -1\n");
}
