//! Regular expressions as Prometheus compiles them: Go's RE2 syntax (`regexp`, via
//! grafana/regexp), anchored as `^(?:<pattern>)$`.
//!
//! regex-syntax parses nearly the same language; what it accepts and Go refuses is refused
//! here too, so a pattern promfed accepts compiles in Prometheus: `(?<name>...)` (Go before
//! 1.22, which Prometheus 2.42 was built with), the flags `x`, `u` and `R`, nested classes and
//! class set operations (`[a-z&&[^x]]`), `\u`/`\U` escapes, `\b{start}`, `\<`, `\>`, Unicode
//! `\p{name=value}` classes, repetition counts over 1000 and stacked repetition operators
//! (`a**`). (Go's `\Q...\E` is the one RE2
//! form regex-syntax lacks: such a pattern is refused although Prometheus would take it.)

use regex_syntax::ast::{
    self, AssertionKind, Ast, ClassSetBinaryOp, ClassSetItem, ClassUnicodeKind, Flag,
    FlagsItemKind, GroupKind, HexLiteralKind, LiteralKind, RepetitionKind, RepetitionRange,
};

/// Go's limit on `{n,m}` counts.
const MAX_REPEAT: u32 = 1000;

/// Check that Prometheus compiles `pattern`; the error says why not.
pub fn check(pattern: &str) -> Result<(), String> {
    let anchored = format!("^(?:{pattern})$");
    let parsed = ast::parse::Parser::new()
        .parse(&anchored)
        .map_err(|e| format!("invalid regex {pattern:?}: {}", e.kind()))?;
    ast::visit(&parsed, GoSyntax).map_err(|what| {
        format!("invalid regex {pattern:?}: {what} is not RE2 syntax (Prometheus uses Go's regexp)")
    })?;
    regex_syntax::hir::translate::Translator::new()
        .translate(&anchored, &parsed)
        .map_err(|e| format!("invalid regex {pattern:?}: {}", e.kind()))?;
    Ok(())
}

/// Refuses the constructs Go's regexp does not know.
struct GoSyntax;

impl ast::Visitor for GoSyntax {
    type Output = ();
    type Err = String;

    fn finish(self) -> Result<(), String> {
        Ok(())
    }

    fn visit_pre(&mut self, ast: &Ast) -> Result<(), String> {
        match ast {
            Ast::Flags(set) => check_flags(&set.flags),
            Ast::Group(group) => match &group.kind {
                GroupKind::CaptureName {
                    starts_with_p: false,
                    ..
                } => Err("a named group written (?<name>...) (write (?P<name>...))".into()),
                GroupKind::NonCapturing(flags) => check_flags(flags),
                _ => Ok(()),
            },
            Ast::Literal(literal) => check_literal(literal),
            Ast::Assertion(assertion) => match assertion.kind {
                AssertionKind::StartLine
                | AssertionKind::EndLine
                | AssertionKind::StartText
                | AssertionKind::EndText
                | AssertionKind::WordBoundary
                | AssertionKind::NotWordBoundary => Ok(()),
                _ => Err("a word boundary other than \\b and \\B".into()),
            },
            Ast::ClassUnicode(class) => check_unicode(class),
            // Go refuses a repetition of a repetition written directly (`a**`, `a+{2}`):
            // "invalid nested repetition operator".
            Ast::Repetition(repetition) if matches!(*repetition.ast, Ast::Repetition(_)) => {
                Err("a repetition operator right after another (`**`)".into())
            }
            Ast::Repetition(repetition) => match &repetition.op.kind {
                RepetitionKind::Range(
                    RepetitionRange::Exactly(n)
                    | RepetitionRange::AtLeast(n)
                    | RepetitionRange::Bounded(_, n),
                ) if *n > MAX_REPEAT => Err(format!("a repetition count over {MAX_REPEAT}")),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), String> {
        match item {
            ClassSetItem::Bracketed(_) => Err("a character class nested in another".into()),
            ClassSetItem::Literal(literal) => check_literal(literal),
            ClassSetItem::Range(range) => {
                check_literal(&range.start)?;
                check_literal(&range.end)
            }
            ClassSetItem::Unicode(class) => check_unicode(class),
            _ => Ok(()),
        }
    }

    fn visit_class_set_binary_op_pre(&mut self, _op: &ClassSetBinaryOp) -> Result<(), String> {
        Err("a class set operation (&&, --, ~~)".into())
    }
}

fn check_flags(flags: &ast::Flags) -> Result<(), String> {
    for item in &flags.items {
        if let FlagsItemKind::Flag(flag @ (Flag::Unicode | Flag::CRLF | Flag::IgnoreWhitespace)) =
            item.kind
        {
            let letter = match flag {
                Flag::Unicode => 'u',
                Flag::CRLF => 'R',
                _ => 'x',
            };
            return Err(format!("the flag {letter}"));
        }
    }
    Ok(())
}

fn check_literal(literal: &ast::Literal) -> Result<(), String> {
    match literal.kind {
        LiteralKind::HexFixed(HexLiteralKind::UnicodeShort | HexLiteralKind::UnicodeLong)
        | LiteralKind::HexBrace(HexLiteralKind::UnicodeShort | HexLiteralKind::UnicodeLong) => {
            Err("a \\u or \\U escape (write \\x{...})".into())
        }
        _ => Ok(()),
    }
}

fn check_unicode(class: &ast::ClassUnicode) -> Result<(), String> {
    match class.kind {
        ClassUnicodeKind::NamedValue { .. } => Err("a Unicode class \\p{name=value}".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_re2() {
        for pattern in [
            "",
            "(.*)",
            "(.+)",
            "promfed_cluster",
            "__meta_kubernetes_pod_label_(.+)",
            "shared\\-tools",
            "a|b|",
            "(?i)get|list",
            "(?P<host>[^:]+):\\d+",
            "[[:alpha:]]+",
            "\\pL\\p{Greek}",
            "x{2,1000}",
            "\\x{263a}",
            "(?s:.)\\A\\z\\b\\B^$",
            "a*?",
            "a??",
            "(?:a*)*",
        ] {
            assert_eq!(check(pattern), Ok(()), "{pattern:?}");
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        for (pattern, why) in [
            ("(", "invalid regex"),
            ("a{2,1}", "invalid regex"),
            ("[z-a]", "invalid regex"),
            ("(?<name>x)", "named group"),
            ("(?x) a", "flag x"),
            ("(?u:a)", "flag u"),
            ("[a-z&&[^x]]", "class set operation"),
            ("[a[bc]]", "nested"),
            ("\\u0041", "\\u"),
            ("\\b{start}x", "word boundary"),
            ("\\<x\\>", "word boundary"),
            ("\\p{Script=Greek}", "name=value"),
            ("x{1001}", "over 1000"),
            ("a**", "right after another"),
            ("a+{2}", "right after another"),
            ("a?*", "right after another"),
        ] {
            let err = check(pattern).expect_err(pattern);
            assert!(err.contains(why), "{pattern:?}: {err}");
            assert!(err.contains(&format!("{pattern:?}")), "{err}");
        }
    }
}
