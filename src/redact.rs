//! What a log line may quote from input promfed was given: the values are withheld.
//!
//! A review (or a config file) may carry credentials, and a parser's error message quotes
//! what it could not parse. The webhook's log of a malformed review and the reloader's log of
//! a config that failed to load both go through [`withhold_values`].

/// `message` with the values it quotes from the input withheld, for a log line: the request (or
/// a config file) may carry credentials, and a parse error quotes what it could not parse.
/// Withheld: the string after serde's `invalid type: string` / `invalid value: string`, the
/// value after `unknown variant`, and the two quoted strings of an `unsupported review "…"/"…"`.
/// Everything else stays: paths, lines, expected types, and field names (`unknown field
/// `basicAuth`` is how a typo in the config is found; a key is not a secret).
pub fn withhold_values(message: &str) -> String {
    const QUOTING: [&str; 4] = [
        "invalid type: string ",
        "invalid value: string ",
        "unknown variant ",
        "unsupported review ",
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((at, prefix)) = QUOTING
        .iter()
        .filter_map(|p| rest.find(p).map(|at| (at, *p)))
        .min_by_key(|(at, _)| *at)
    {
        out.push_str(&rest[..at + prefix.len()]);
        rest = &rest[at + prefix.len()..];
        let quotes = if prefix == "unsupported review " {
            2
        } else {
            1
        };
        for n in 0..quotes {
            if n > 0 {
                match rest.strip_prefix('/') {
                    Some(r) => {
                        out.push('/');
                        rest = r;
                    }
                    None => break,
                }
            }
            match quoted_len(rest) {
                Some(len) => {
                    out.push_str("(withheld)");
                    rest = &rest[len..];
                }
                None => break,
            }
        }
    }
    out.push_str(rest);
    out
}

/// Length of a leading `"…"` (with `\` escapes) or `` `…` ``, closing quote included.
fn quoted_len(text: &str) -> Option<usize> {
    let mut chars = text.char_indices();
    let (_, open) = chars.next()?;
    if open != '"' && open != '`' {
        return None;
    }
    let mut escaped = false;
    for (i, c) in chars {
        match c {
            '\\' if open == '"' && !escaped => escaped = true,
            c if c == open && !escaped => return Some(i + c.len_utf8()),
            _ => escaped = false,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_details_withhold_quoted_values() {
        let cases = [
            (
                r#"malformed AdmissionReview: invalid type: string "pa\"ss", expected a boolean at line 1 column 9"#,
                "malformed AdmissionReview: invalid type: string (withheld), expected a boolean at line 1 column 9",
            ),
            (
                "unknown variant `pass`, expected one of `CREATE`, `UPDATE`",
                "unknown variant (withheld), expected one of `CREATE`, `UPDATE`",
            ),
            (
                r#"unsupported review "pass"/"word": promfed answers"#,
                "unsupported review (withheld)/(withheld): promfed answers",
            ),
            (
                r#"invalid setting clusters[0].sample_limit (line 4): invalid type: string "pass", expected u64"#,
                "invalid setting clusters[0].sample_limit (line 4): invalid type: string (withheld), expected u64",
            ),
            (
                r#"scrape config "federation" for targets ["a"] does not have a label "cluster""#,
                r#"scrape config "federation" for targets ["a"] does not have a label "cluster""#,
            ),
            (
                "missing field `uid` at line 1 column 2",
                "missing field `uid` at line 1 column 2",
            ),
            (
                "unknown field `basicAuth`, expected one of `name`",
                "unknown field `basicAuth`, expected one of `name`",
            ),
            ("unknown variant `oops", "unknown variant `oops"),
        ];
        for (message, logged) in cases {
            assert_eq!(withhold_values(message), logged, "{message}");
        }
    }
}
