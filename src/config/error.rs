//! Why a config file could not be used: what kind of problem, which setting, which line, and
//! the message promfed prints (documented and tested word for word).

use crate::prometheus::schema::Problem;

/// The config file could not be used. The message names the setting and, where known, its
/// line; [`ConfigError::path`] and [`ConfigError::line`] say the same for code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub kind: ConfigErrorKind,
    /// The setting, e.g. `clusters[1].scrape_interval`; empty for the file as a whole.
    pub path: String,
    /// 1-based line of the setting in the config file, when known.
    pub line: Option<usize>,
    message: String,
}

/// What kind of problem a [`ConfigError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file is not valid YAML.
    Yaml,
    /// The file, or a setting, is not the shape it must be (a mapping, a list).
    Shape,
    /// A setting promfed does not know, or of the wrong type.
    Setting,
    /// A value promfed or Prometheus would refuse: a label name, a duration, a data key, a
    /// field of a scrape config.
    Value,
    /// Federation jobs that cannot be made safe: targets without a cluster, a job defined
    /// twice, a workload cluster that would pass for the local one.
    Federation,
    /// What promfed would write from the config would not load in Prometheus.
    Output,
}

impl ConfigError {
    /// `path (line N): reason`, or `path: reason` without a line.
    pub fn at(
        kind: ConfigErrorKind,
        path: impl Into<String>,
        line: Option<usize>,
        reason: impl std::fmt::Display,
    ) -> ConfigError {
        let path = path.into();
        let message = format!("{}: {reason}", setting_at(&path, line));
        ConfigError {
            kind,
            path,
            line,
            message,
        }
    }

    /// A schema problem below the setting `prefix`, as [`Problem::describe_in`] words it.
    pub fn problem(
        kind: ConfigErrorKind,
        prefix: &str,
        problem: &Problem,
        context: Option<&str>,
    ) -> ConfigError {
        ConfigError {
            kind,
            path: problem.full_path(prefix),
            line: Some(problem.line).filter(|l| *l > 0),
            message: problem.describe_in(prefix, context),
        }
    }

    /// A message worded as a whole; [`ConfigError::with_path`] and [`ConfigError::with_line`]
    /// add where, for code, without changing it.
    pub fn message(kind: ConfigErrorKind, message: impl Into<String>) -> ConfigError {
        ConfigError {
            kind,
            path: String::new(),
            line: None,
            message: message.into(),
        }
    }

    pub fn with_path(self, path: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            ..self
        }
    }

    /// The line, when known (0 is not a line).
    pub fn with_line(self, line: Option<usize>) -> ConfigError {
        ConfigError {
            line: line.filter(|l| *l > 0),
            ..self
        }
    }
}

/// `path (line N)`, or `path` without a line: how a message names a setting.
pub(super) fn setting_at(path: &str, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{path} (line {line})"),
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_setting_its_line_holds_the_same() {
        let err = ConfigError::at(ConfigErrorKind::Value, "clusters[1].name", Some(4), "empty");
        assert_eq!(err.to_string(), "clusters[1].name (line 4): empty");
        assert_eq!((err.path.as_str(), err.line), ("clusters[1].name", Some(4)));
        let err = ConfigError::at(
            ConfigErrorKind::Federation,
            "clusters[0]",
            None,
            "no targets",
        );
        assert_eq!(err.to_string(), "clusters[0]: no targets");

        let problem = Problem {
            path: "tls_config.cert_fle".into(),
            line: 5,
            message: "unknown".into(),
        };
        let err = ConfigError::problem(ConfigErrorKind::Value, "clusters[0]", &problem, None);
        assert_eq!(err.path, "clusters[0].tls_config.cert_fle");
        assert_eq!(err.line, Some(5));
        assert_eq!(err.to_string(), problem.describe("clusters[0]"));

        let err = ConfigError::message(ConfigErrorKind::Shape, "line 0: whole").with_line(Some(0));
        assert_eq!(
            (err.to_string().as_str(), err.line),
            ("line 0: whole", None)
        );
    }
}
