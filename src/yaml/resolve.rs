//! Resolving plain scalars as YAML 1.1 readers (Go `yaml.v2`, PyYAML) do, and the JSON
//! values they give.

/// What a YAML 1.1 reader makes of a scalar (see <https://yaml.org/type/>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Timestamp,
    /// `<<`, the merge key.
    Merge,
    /// `=`, the "default value" key.
    Value,
    Str,
}

/// The type a YAML 1.1 reader gives an untagged plain scalar, by the yaml.org 1.1 type
/// regexes as Go `yaml.v2` and PyYAML implement them: `y`/`n` are booleans (yaml.v2, the
/// spec); a float needs a digit next to its dot (`1.`, `.5`, but not `.` or `1.2.3`).
pub fn resolve_1_1(text: &str) -> Kind {
    let Some(&first) = text.as_bytes().first() else {
        return Kind::Null;
    };
    match first {
        b'~' | b'n' | b'N' if matches!(text, "~" | "null" | "Null" | "NULL") => Kind::Null,
        b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O'
            if bool_1_1(text).is_some() =>
        {
            Kind::Bool
        }
        b'<' if text == "<<" => Kind::Merge,
        b'=' if text == "=" => Kind::Value,
        b'0'..=b'9' | b'+' | b'-' | b'.' => {
            if int_form(text).is_some() {
                Kind::Int
            } else if float_form(text).is_some() {
                Kind::Float
            } else if is_timestamp_1_1(text) {
                Kind::Timestamp
            } else {
                Kind::Str
            }
        }
        _ => Kind::Str,
    }
}

pub(super) fn bool_1_1(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

fn split_sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum IntForm<'a> {
    Bin(&'a str),
    Oct(&'a str),
    Dec(&'a str),
    Hex(&'a str),
    /// Base 60: `190:20:30`.
    Sexagesimal(&'a str),
}

fn all_bytes(s: &str, f: impl Fn(u8) -> bool) -> bool {
    s.bytes().all(f)
}

/// `(:[0-5]?[0-9])+`, the tail of a base 60 number.
fn is_sexagesimal_tail(tail: &str) -> bool {
    !tail.is_empty()
        && tail.split(':').all(|group| match group.as_bytes() {
            [d] => d.is_ascii_digit(),
            [h, d] => (b'0'..=b'5').contains(h) && d.is_ascii_digit(),
            _ => false,
        })
}

/// The YAML 1.1 int forms: `[-+]?0b[0-1_]+`, `[-+]?0[0-7_]+`, `[-+]?(0|[1-9][0-9_]*)`,
/// `[-+]?0x[0-9a-fA-F_]+`, `[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+`.
pub(super) fn int_form(text: &str) -> Option<(bool, IntForm<'_>)> {
    let (negative, body) = split_sign(text);
    let form = if let Some(digits) = body.strip_prefix("0b") {
        (!digits.is_empty() && all_bytes(digits, |c| matches!(c, b'0' | b'1' | b'_')))
            .then_some(IntForm::Bin(digits))?
    } else if let Some(digits) = body.strip_prefix("0x") {
        (!digits.is_empty() && all_bytes(digits, |c| c.is_ascii_hexdigit() || c == b'_'))
            .then_some(IntForm::Hex(digits))?
    } else {
        match body.as_bytes().first()? {
            b'0' if body.len() == 1 => IntForm::Dec(body),
            b'0' => all_bytes(&body[1..], |c| matches!(c, b'0'..=b'7' | b'_'))
                .then_some(IntForm::Oct(&body[1..]))?,
            b'1'..=b'9' => match body.split_once(':') {
                None => all_bytes(body, |c| c.is_ascii_digit() || c == b'_')
                    .then_some(IntForm::Dec(body))?,
                Some((head, tail)) => (all_bytes(head, |c| c.is_ascii_digit() || c == b'_')
                    && is_sexagesimal_tail(tail))
                .then_some(IntForm::Sexagesimal(body))?,
            },
            _ => return None,
        }
    };
    Some((negative, form))
}

#[derive(Debug, Clone, Copy)]
enum FloatForm<'a> {
    Decimal(&'a str),
    /// Base 60 with a fraction: `190:20:30.15`.
    Sexagesimal(&'a str),
    Inf,
    NaN,
}

/// The YAML 1.1 float forms (PyYAML's reading of the spec regexes, which also accepts a
/// sign on `.5`): `[-+]?([0-9][0-9_]*\.[0-9_]*|\.[0-9_]+)([eE][-+][0-9]+)?`,
/// `[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]*`, `[-+]?\.(inf|Inf|INF)`, `\.(nan|NaN|NAN)`.
fn float_form(text: &str) -> Option<(bool, FloatForm<'_>)> {
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some((false, FloatForm::NaN));
    }
    let (negative, body) = split_sign(text);
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        return Some((negative, FloatForm::Inf));
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac) = mantissa.split_once('.')?;
    if !all_bytes(frac, |c| c.is_ascii_digit() || c == b'_') {
        return None;
    }
    if let Some(exp) = exponent {
        let digits = exp.strip_prefix(['-', '+'])?;
        if digits.is_empty() || !all_bytes(digits, |c| c.is_ascii_digit()) {
            return None;
        }
    }
    match int_part.split_once(':') {
        None if int_part.is_empty() => (!frac.is_empty()).then_some(()),
        None => (int_part.as_bytes()[0].is_ascii_digit()
            && all_bytes(int_part, |c| c.is_ascii_digit() || c == b'_'))
        .then_some(()),
        Some((head, tail)) => (exponent.is_none()
            && head.as_bytes().first().is_some_and(u8::is_ascii_digit)
            && all_bytes(head, |c| c.is_ascii_digit() || c == b'_')
            && is_sexagesimal_tail(tail))
        .then_some(()),
    }?;
    let form = if int_part.contains(':') {
        FloatForm::Sexagesimal(body)
    } else {
        FloatForm::Decimal(body)
    };
    Some((negative, form))
}

/// A tiny cursor for the timestamp regex.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.at += usize::from(hit);
        hit
    }

    /// Between `min` and `max` ASCII digits.
    fn digits(&mut self, min: usize, max: usize) -> bool {
        let start = self.at;
        while self.at - start < max && self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start >= min
    }

    fn blanks(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
        self.at - start
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

/// `YYYY-MM-DD`, or `YYYY-M-D` then `T`/`t`/blanks, `h:mm:ss`, an optional fraction and an
/// optional zone (`Z`, `+1`, `-05:00`, after optional blanks).
fn is_timestamp_1_1(text: &str) -> bool {
    let mut c = Cursor {
        bytes: text.as_bytes(),
        at: 0,
    };
    if !(c.digits(4, 4) && c.eat(b'-') && c.digits(1, 2) && c.eat(b'-') && c.digits(1, 2)) {
        return false;
    }
    if c.done() {
        // The date-only form wants two-digit month and day.
        return text.len() == 10;
    }
    if !(c.eat(b'T') || c.eat(b't') || c.blanks() > 0) {
        return false;
    }
    if !(c.digits(1, 2) && c.eat(b':') && c.digits(2, 2) && c.eat(b':') && c.digits(2, 2)) {
        return false;
    }
    if c.eat(b'.') {
        c.digits(0, usize::MAX);
    }
    if c.done() {
        return true;
    }
    c.blanks();
    if c.eat(b'Z') {
        return c.done();
    }
    if !(c.eat(b'+') || c.eat(b'-')) || !c.digits(1, 2) {
        return false;
    }
    if c.eat(b':') && !c.digits(2, 2) {
        return false;
    }
    c.done()
}

/// A superset of what any common reader takes for a number: YAML 1.1 (including the spec's
/// loose `1.2.3` float), YAML 1.2 core (`1e3`, `0o17`), Go `strconv` after yaml.v2 drops the
/// underscores (`0B1`, `0_7`).
fn looks_numeric(text: &str) -> bool {
    let (_, body) = split_sign(text);
    let bytes = body.as_bytes();
    if bytes.len() > 2
        && bytes[0] == b'0'
        && matches!(bytes[1], b'x' | b'X' | b'o' | b'O' | b'b' | b'B')
    {
        return bytes[2..]
            .iter()
            .all(|c| c.is_ascii_hexdigit() || *c == b'_');
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if mantissa.is_empty() || !all_bytes(mantissa, |c| c.is_ascii_digit() || b"_.:".contains(&c)) {
        return false;
    }
    match exponent {
        None => true,
        Some(exp) => {
            let digits = exp.strip_prefix(['-', '+']).unwrap_or(exp);
            mantissa.bytes().any(|c| c.is_ascii_digit())
                && !digits.is_empty()
                && all_bytes(digits, |c| c.is_ascii_digit())
        }
    }
}

/// Whether some reader might not take `text`, written plain, for a string: a YAML 1.1
/// non-string, anything number-like, or anything starting like a date (yaml.v2 reads
/// `2006-1-2` as a timestamp).
pub(super) fn is_ambiguous(text: &str) -> bool {
    let b = text.as_bytes();
    resolve_1_1(text) != Kind::Str
        || looks_numeric(text)
        || (b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-')
}

/// A character a YAML 1.1 reader (PyYAML) accepts in a stream and that no reader takes for a
/// line break or a byte order mark: what may appear unescaped in a single-line scalar.
pub(super) fn is_inline_char(c: char) -> bool {
    match c {
        ' '..='~' => true,
        '\u{2028}' | '\u{2029}' | '\u{feff}' => false,
        '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' => true,
        c => c >= '\u{10000}',
    }
}

/// An unsigned integer, exact while it fits in 128 bits.
#[derive(Debug, Clone, Copy)]
pub(super) enum Magnitude {
    Exact(u128),
    Approx(f64),
}

impl Magnitude {
    fn mul_add(self, radix: u32, digit: u32) -> Magnitude {
        match self {
            Magnitude::Exact(v) => v
                .checked_mul(u128::from(radix))
                .and_then(|v| v.checked_add(u128::from(digit)))
                .map_or_else(
                    || Magnitude::Approx(v as f64 * f64::from(radix) + f64::from(digit)),
                    Magnitude::Exact,
                ),
            Magnitude::Approx(v) => Magnitude::Approx(v * f64::from(radix) + f64::from(digit)),
        }
    }

    pub(super) fn as_f64(self) -> f64 {
        match self {
            Magnitude::Exact(v) => v as f64,
            Magnitude::Approx(v) => v,
        }
    }
}

fn digits_value(start: Magnitude, digits: &str, radix: u32) -> Magnitude {
    digits
        .chars()
        .filter_map(|c| c.to_digit(radix))
        .fold(start, |acc, d| acc.mul_add(radix, d))
}

pub(super) fn int_value(form: IntForm<'_>) -> Magnitude {
    let zero = Magnitude::Exact(0);
    match form {
        IntForm::Bin(d) => digits_value(zero, d, 2),
        IntForm::Oct(d) => digits_value(zero, d, 8),
        IntForm::Dec(d) => digits_value(zero, d, 10),
        IntForm::Hex(d) => digits_value(zero, d, 16),
        IntForm::Sexagesimal(d) => d.split(':').fold(zero, |acc, group| {
            let group = digits_value(zero, group, 10);
            match (acc, group) {
                (Magnitude::Exact(a), Magnitude::Exact(g)) => {
                    match a.checked_mul(60).and_then(|a| a.checked_add(g)) {
                        Some(v) => Magnitude::Exact(v),
                        None => Magnitude::Approx(a as f64 * 60.0 + g as f64),
                    }
                }
                (a, g) => Magnitude::Approx(a.as_f64() * 60.0 + g.as_f64()),
            }
        }),
    }
}

/// An int as yaml.v2 gives it: i64 or u64 when it fits, else a float.
pub(super) fn int_json(text: &str) -> Option<serde_json::Value> {
    let (negative, form) = int_form(text)?;
    let number = match int_value(form) {
        Magnitude::Exact(v) if negative && v <= i64::MAX as u128 + 1 => {
            serde_json::Number::from((-(v as i128)) as i64)
        }
        Magnitude::Exact(v) if !negative && v <= u128::from(u64::MAX) => {
            serde_json::Number::from(v as u64)
        }
        m => {
            let f = m.as_f64();
            serde_json::Number::from_f64(if negative { -f } else { f })?
        }
    };
    Some(serde_json::Value::Number(number))
}

/// A float; infinities and NaN (which JSON cannot hold) give `None`.
pub(super) fn float_json(text: &str) -> Option<serde_json::Value> {
    let (negative, form) = float_form(text)?;
    let magnitude = match form {
        FloatForm::Inf | FloatForm::NaN => return None,
        FloatForm::Decimal(body) => body.replace('_', "").parse::<f64>().ok()?,
        FloatForm::Sexagesimal(body) => {
            let body = body.replace('_', "");
            let (whole, last) = body.rsplit_once(':')?;
            let whole = whole
                .split(':')
                .try_fold(0.0, |acc: f64, g| Some(acc * 60.0 + g.parse::<f64>().ok()?))?;
            whole * 60.0 + last.parse::<f64>().ok()?
        }
    };
    let value = if negative { -magnitude } else { magnitude };
    serde_json::Number::from_f64(value).map(serde_json::Value::Number)
}

/// A JSON number as a plain scalar every reader takes for the same number: floats always
/// have a dot and a signed exponent (`1.0e+300`, as YAML 1.1 wants).
pub(super) fn number_text(n: &serde_json::Number) -> String {
    let text = n.to_string();
    if n.is_i64() || n.is_u64() {
        return text;
    }
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (text.as_str(), None),
    };
    let mut out = String::with_capacity(text.len() + 4);
    out.push_str(mantissa);
    if !mantissa.contains('.') {
        out.push_str(".0");
    }
    if let Some(exp) = exponent {
        out.push('e');
        if !exp.starts_with(['-', '+']) {
            out.push('+');
        }
        out.push_str(exp);
    }
    out
}
