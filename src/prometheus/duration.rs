//! Prometheus durations (`model.Duration` of prometheus/common, `model/time.go`): what
//! `scrape_interval`, `scrape_timeout`, `for` and `keep_firing_for` accept.
//!
//! The grammar: `0`, or one or more `<digits><unit>` parts with units `y w d h m s ms`, each
//! unit at most once and larger units first, no spaces, signs or decimals (`30s`, `1m30s`,
//! `1h`, `2w3d`). The value must fit Go's `time.Duration` (about 292 years).

use std::fmt;

/// The units, largest first, with their length in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Go's `time.Duration` is nanoseconds in an int64.
const MAX_MILLIS: u64 = i64::MAX as u64 / 1_000_000;

/// A duration Prometheus accepts, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(pub u64);

impl Duration {
    pub const fn from_secs(secs: u64) -> Duration {
        Duration(secs * 1_000)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// Why a text is not a Prometheus duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a valid duration: {reason} (Prometheus durations look like 30s, 1m30s, 1h or 2w; units y w d h m s ms, largest first, no spaces or decimals)"
)]
pub struct DurationError {
    pub text: String,
    pub reason: &'static str,
}

/// Parse a duration the way Prometheus does.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        text: text.to_string(),
        reason,
    };
    match text {
        "" => return Err(fail("it is empty")),
        "0" => return Ok(Duration(0)),
        _ => {}
    }
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut total: u64 = 0;
    // Index into UNITS of the last unit seen; the next must come after it.
    let mut next_unit = 0;
    while pos < bytes.len() {
        let digits_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == digits_start {
            return Err(fail("each part must start with a whole number"));
        }
        let unit_start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let unit = &text[unit_start..pos];
        if unit.is_empty() {
            return Err(fail("a number needs a unit"));
        }
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(fail("unknown unit"));
        };
        if index < next_unit {
            return Err(fail(
                "units must go from largest to smallest, each at most once",
            ));
        }
        next_unit = index + 1;
        let millis = UNITS[index].1;
        let out_of_range = || fail("it is out of range (more than about 292 years)");
        let count: u64 = text[digits_start..unit_start]
            .parse()
            .map_err(|_| out_of_range())?;
        total = count
            .checked_mul(millis)
            .and_then(|part| total.checked_add(part))
            .filter(|t| *t <= MAX_MILLIS)
            .ok_or_else(out_of_range)?;
    }
    Ok(Duration(total))
}

impl fmt::Display for Duration {
    /// The way Prometheus prints a duration: `1m30s`, `2w`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0s");
        }
        let mut rest = self.0;
        for (name, millis) in UNITS {
            // Prometheus prints weeks only for whole weeks and years only for whole years.
            if (name == "y" || name == "w") && !rest.is_multiple_of(millis) {
                continue;
            }
            if rest >= millis {
                write!(f, "{}{name}", rest / millis)?;
                rest %= millis;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_prometheus_accepts() {
        let cases = [
            ("0", 0),
            ("0s", 0),
            ("30s", 30_000),
            ("1m30s", 90_000),
            ("1h", 3_600_000),
            ("5m", 300_000),
            ("100ms", 100),
            ("1m1ms", 60_001),
            ("2w3d", 17 * 24 * 3_600_000),
            ("1y", 365 * 24 * 3_600_000),
            ("01m", 60_000),
            (
                "1y1w1d1h1m1s1ms",
                365 * 86_400_000 + 8 * 86_400_000 + 3_661_001,
            ),
        ];
        for (text, millis) in cases {
            assert_eq!(parse(text), Ok(Duration(millis)), "{text}");
        }
    }

    #[test]
    fn refuses_what_prometheus_refuses() {
        let cases = [
            ("", "empty"),
            ("30 seconds", "unknown unit"),
            ("5 minutes", "unknown unit"),
            ("30", "needs a unit"),
            ("1.5h", "unknown unit"),
            ("-1s", "whole number"),
            ("1s1m", "largest to smallest"),
            ("1m1m", "largest to smallest"),
            ("1H", "unknown unit"),
            (" 1s", "whole number"),
            ("1s ", "unknown unit"),
            ("1sec", "unknown unit"),
            ("s", "whole number"),
            ("300y", "out of range"),
            ("99999999999999999999s", "out of range"),
        ];
        for (text, reason) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.to_string().contains(reason), "{text}: {err}");
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn the_largest_duration_fits_go() {
        // 292 years is within int64 nanoseconds, 293 is not.
        assert!(parse("292y").is_ok());
        assert!(parse("293y").is_err());
    }

    #[test]
    fn prints_like_prometheus() {
        for (millis, text) in [
            (0, "0s"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
            (8 * 86_400_000, "8d"),
            (14 * 86_400_000, "2w"),
            (1_500, "1s500ms"),
        ] {
            assert_eq!(Duration(millis).to_string(), text);
            assert_eq!(parse(text), Ok(Duration(millis)));
        }
    }
}
