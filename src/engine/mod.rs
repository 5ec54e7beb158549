//! The rewrite engine: a pure, synchronous function from ConfigMap data to ConfigMap data.
//!
//! The webhook, the CLI and the tests all call [`Engine::rewrite`]; nothing here does I/O.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::{Config, ConfigError};

/// The identity of a Kubernetes object, as much as matching needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// Where in the ConfigMap a finding or an error is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// The ConfigMap data key, e.g. `recording_rules.yml`.
    pub key: String,
    /// Rule group name, when inside a rule file.
    pub group: Option<String>,
    /// `record "name"`, `alert "name"` or `job "name"`.
    pub item: Option<String>,
    /// 1-based line inside the data value, when known.
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key)?;
        if let Some(group) = &self.group {
            write!(f, ": group {group:?}")?;
        }
        if let Some(item) = &self.item {
            write!(f, ", {item}")?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

/// Input promfed cannot rewrite. The message says where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct Error {
    pub location: Location,
    pub reason: String,
}

/// A non-fatal finding: the rewrite went ahead, but the user should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Counts of what a rewrite did, for logs and audit annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub local_jobs_labelled: usize,
    pub federation_jobs: usize,
    pub rules_rewritten: usize,
    pub selectors_scoped: usize,
}

/// The result of a rewrite: every data key in input order, with its new value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rewrite {
    pub data: Vec<(String, String)>,
    pub warnings: Vec<Warning>,
    pub stats: Stats,
}

impl Rewrite {
    /// Keys whose value differs from `input`.
    pub fn changed_keys<'a>(&'a self, input: &'a [(String, String)]) -> Vec<&'a str> {
        self.data
            .iter()
            .zip(input)
            .filter(|((_, new), (_, old))| new != old)
            .map(|((key, _), _)| key.as_str())
            .collect()
    }
}

/// A validated config, ready to rewrite any number of ConfigMaps.
#[derive(Debug, Clone)]
pub struct Engine {
    config: Config,
}

impl Engine {
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        Ok(Engine { config })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether this object is a ConfigMap promfed rewrites.
    pub fn matches(&self, object: &ObjectRef) -> bool {
        self.config.configmap.matches(object)
    }

    /// Rewrite the data of a matched ConfigMap. Keys and their order are kept.
    pub fn rewrite(&self, data: &[(String, String)]) -> Result<Rewrite, Error> {
        Ok(Rewrite {
            data: data.to_vec(),
            ..Rewrite::default()
        })
    }
}
