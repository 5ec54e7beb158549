//! The functions the fast parser reads: Prometheus' stable functions and 2.x's
//! `holt_winters`, with the argument and result types `promql-parser` gives them (a unit test
//! holds every row equal to the crate's own table). A function not listed here sends the
//! expression to the full path.

use super::ast::Type::{self, Matrix as M, Scalar as S, String as Str, Vector as V};

/// A function's signature.
#[derive(Debug, Clone, Copy)]
pub(super) struct Signature {
    pub args: &'static [Type],
    /// As Prometheus counts it: 0 exact, n > 0 the last n arguments optional, -1 the last
    /// one repeated any number of times.
    pub variadic: i32,
    pub returns: Type,
}

const fn sig(args: &'static [Type], variadic: i32, returns: Type) -> Signature {
    Signature {
        args,
        variadic,
        returns,
    }
}

const TABLE: &[(&str, Signature)] = &[
    ("abs", sig(&[V], 0, V)),
    ("absent", sig(&[V], 0, V)),
    ("absent_over_time", sig(&[M], 0, V)),
    ("acos", sig(&[V], 0, V)),
    ("acosh", sig(&[V], 0, V)),
    ("asin", sig(&[V], 0, V)),
    ("asinh", sig(&[V], 0, V)),
    ("atan", sig(&[V], 0, V)),
    ("atanh", sig(&[V], 0, V)),
    ("avg_over_time", sig(&[M], 0, V)),
    ("ceil", sig(&[V], 0, V)),
    ("changes", sig(&[M], 0, V)),
    ("clamp", sig(&[V, S, S], 0, V)),
    ("clamp_max", sig(&[V, S], 0, V)),
    ("clamp_min", sig(&[V, S], 0, V)),
    ("cos", sig(&[V], 0, V)),
    ("cosh", sig(&[V], 0, V)),
    ("count_over_time", sig(&[M], 0, V)),
    ("day_of_month", sig(&[V], 1, V)),
    ("day_of_week", sig(&[V], 1, V)),
    ("day_of_year", sig(&[V], 1, V)),
    ("days_in_month", sig(&[V], 1, V)),
    ("deg", sig(&[V], 0, V)),
    ("delta", sig(&[M], 0, V)),
    ("deriv", sig(&[M], 0, V)),
    ("exp", sig(&[V], 0, V)),
    ("floor", sig(&[V], 0, V)),
    ("histogram_quantile", sig(&[S, V], 0, V)),
    ("holt_winters", sig(&[M, S, S], 0, V)),
    ("hour", sig(&[V], 1, V)),
    ("idelta", sig(&[M], 0, V)),
    ("increase", sig(&[M], 0, V)),
    ("irate", sig(&[M], 0, V)),
    ("label_join", sig(&[V, Str, Str, Str], -1, V)),
    ("label_replace", sig(&[V, Str, Str, Str, Str], 0, V)),
    ("last_over_time", sig(&[M], 0, V)),
    ("ln", sig(&[V], 0, V)),
    ("log10", sig(&[V], 0, V)),
    ("log2", sig(&[V], 0, V)),
    ("max_over_time", sig(&[M], 0, V)),
    ("min_over_time", sig(&[M], 0, V)),
    ("minute", sig(&[V], 1, V)),
    ("month", sig(&[V], 1, V)),
    ("pi", sig(&[], 0, S)),
    ("predict_linear", sig(&[M, S], 0, V)),
    ("present_over_time", sig(&[M], 0, V)),
    ("quantile_over_time", sig(&[S, M], 0, V)),
    ("rad", sig(&[V], 0, V)),
    ("rate", sig(&[M], 0, V)),
    ("resets", sig(&[M], 0, V)),
    ("round", sig(&[V, S], 1, V)),
    ("scalar", sig(&[V], 0, S)),
    ("sgn", sig(&[V], 0, V)),
    ("sin", sig(&[V], 0, V)),
    ("sinh", sig(&[V], 0, V)),
    ("sort", sig(&[V], 0, V)),
    ("sort_desc", sig(&[V], 0, V)),
    ("sqrt", sig(&[V], 0, V)),
    ("stddev_over_time", sig(&[M], 0, V)),
    ("stdvar_over_time", sig(&[M], 0, V)),
    ("sum_over_time", sig(&[M], 0, V)),
    ("tan", sig(&[V], 0, V)),
    ("tanh", sig(&[V], 0, V)),
    ("time", sig(&[], 0, S)),
    ("timestamp", sig(&[V], 0, V)),
    ("vector", sig(&[S], 0, V)),
    ("year", sig(&[V], 1, V)),
];

/// The signature of function `name` (case-sensitive, as Prometheus reads it).
pub(super) fn lookup(name: &str) -> Option<Signature> {
    lookup_static(name).map(|(_, sig)| sig)
}

/// The table's row for `name`: its name as a `'static` string, and its signature.
pub(super) fn lookup_static(name: &str) -> Option<(&'static str, Signature)> {
    TABLE
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| TABLE[i])
}

/// Whether `args` fit the signature, as Prometheus checks a call: the count, then each
/// argument's type (the repeated one for arguments past the list).
pub(super) fn fits(sig: &Signature, args: &[Type]) -> bool {
    let declared = sig.args.len();
    let count_ok = match sig.variadic {
        0 => args.len() == declared,
        n => {
            let least = declared.saturating_sub(1);
            args.len() >= least && (n < 0 || args.len() <= least + n as usize)
        }
    };
    count_ok
        && args
            .iter()
            .enumerate()
            .all(|(i, t)| sig.args.get(i).or(sig.args.last()) == Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::parser::Expr as CrateExpr;
    use promql_parser::parser::value::ValueType;

    #[test]
    fn table_is_sorted_for_lookup() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0));
    }

    fn crate_type(t: Type) -> ValueType {
        match t {
            Type::Scalar => ValueType::Scalar,
            Type::Vector => ValueType::Vector,
            Type::Matrix => ValueType::Matrix,
            Type::String => ValueType::String,
        }
    }

    fn sample(t: &Type) -> &'static str {
        match t {
            Type::Scalar => "1",
            Type::Vector => "x",
            Type::Matrix => "x[5m]",
            Type::String => "\"s\"",
        }
    }

    /// Every row is the crate's own signature of the function: the call with one argument of
    /// each declared type parses, and the crate's `Function` has the same types and count.
    #[test]
    fn every_row_is_the_crates_signature() {
        for (name, sig) in TABLE {
            let args: Vec<&str> = sig.args.iter().map(sample).collect();
            let text = format!("{name}({})", args.join(", "));
            let parsed = crate::promql::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let CrateExpr::Call(call) = parsed else {
                panic!("{text} is not a call");
            };
            let want: Vec<ValueType> = sig.args.iter().copied().map(crate_type).collect();
            assert_eq!(call.func.arg_types, want, "{name}");
            assert_eq!(call.func.variadic, sig.variadic, "{name}");
            assert_eq!(call.func.return_type, crate_type(sig.returns), "{name}");
        }
    }

    #[test]
    fn arity_rows() {
        let round = lookup("round").unwrap();
        assert!(fits(&round, &[Type::Vector]));
        assert!(fits(&round, &[Type::Vector, Type::Scalar]));
        assert!(!fits(&round, &[Type::Vector, Type::Scalar, Type::Scalar]));
        assert!(!fits(&round, &[]));
        let join = lookup("label_join").unwrap();
        let four = [Type::Vector, Type::String, Type::String, Type::String];
        assert!(fits(&join, &four));
        assert!(fits(&join, &[&four[..], &[Type::String; 3]].concat()));
        assert!(!fits(&join, &[Type::Vector, Type::String]));
        assert!(!fits(&lookup("rate").unwrap(), &[Type::Vector]));
        assert!(fits(&lookup("time").unwrap(), &[]));
        assert!(lookup("no_such_function").is_none());
    }
}
