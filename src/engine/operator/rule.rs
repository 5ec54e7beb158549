//! PrometheusRule (`monitoring.coreos.com/v1`): its `spec` has the shape of a rule file
//! (`groups: [{name, rules: [...]}]`), so it goes through the same code as a rule file in a
//! ConfigMap ([`rules::rewrite`]): recording rules scoped and labelled, alerting rules as
//! `rules.alerting` says, exclusions, expressions spliced so their formatting stays.
//!
//! The operator's schema allows `expr` as a string or an integer; an integer is a scalar
//! whose text is the number, read and kept as such.

use super::{Outcome, error};
use crate::config::Config;
use crate::engine::{Error, Work, rules};
use crate::promql::Scoper;
use crate::yaml::Node;

/// Rewrite a PrometheusRule's `spec` in place. `object` names the object in every error and
/// warning (it takes the place of a ConfigMap's data key).
pub fn rewrite(
    spec: &mut Node,
    object: &str,
    config: &Config,
    scoper: &Scoper,
    owned_group: Option<&str>,
    work: &mut Work,
) -> Result<Outcome, Error> {
    let mut out = Outcome::default();
    if spec.is_null() {
        return Ok(out);
    }
    if spec.as_map().is_none() {
        return Err(error(
            object,
            None,
            spec.line,
            "spec must be a mapping with `groups`",
        ));
    }
    let mut memo = rules::Memo::new();
    out.changed = rules::rewrite(
        spec,
        object,
        rules::Context {
            config,
            scoper,
            owned_group,
            memo: &mut memo,
            work,
            stats: &mut out.stats,
            warnings: &mut out.warnings,
        },
    )?;
    Ok(out)
}
