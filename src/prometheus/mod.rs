//! What Prometheus accepts, checked before promfed writes anything: label and metric names,
//! durations ([`duration`]), regexes ([`re2`]) and the fields of the config structs promfed
//! writes ([`schema`]). Whatever promfed writes must load in Prometheus 2.42 and 3.x, so where
//! the two differ the stricter rule holds (2.x's label name syntax; 3.x also takes UTF-8).

pub mod duration;
pub mod re2;
pub mod schema;

/// `[a-zA-Z_][a-zA-Z0-9_]*`: a label name every Prometheus version accepts.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A label name that is not reserved: labels starting with `__` are internal to Prometheus
/// (dropped after relabeling), so a label that must reach the stored series cannot be one.
pub fn is_user_label_name(name: &str) -> bool {
    is_label_name(name) && !name.starts_with("__")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`: a metric name (a recording rule's `record`).
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names() {
        for name in ["cluster", "_x", "a1", "A_b_C", "__name__"] {
            assert!(is_label_name(name), "{name}");
        }
        for name in ["", "1a", "bad-label", "a.b", "a b", "é", "a:b"] {
            assert!(!is_label_name(name), "{name}");
        }
        assert!(is_user_label_name("cluster"));
        assert!(!is_user_label_name("__cluster"));
        assert!(!is_user_label_name("bad-label"));
    }

    #[test]
    fn metric_names() {
        assert!(is_metric_name("job:up:sum"));
        assert!(is_metric_name(":x"));
        assert!(!is_metric_name("1x"));
        assert!(!is_metric_name("a-b"));
    }
}
