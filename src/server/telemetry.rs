//! What promfed says about itself: the log format, one log line per review (identity and
//! sizes, never the ConfigMap's content) and panics logged without their message.

use std::time::Duration;

use super::state::AppState;
use crate::admission::{CacheUse, Reply};

/// The format of the log lines on stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

impl AppState {
    /// Metrics and the log line of one answered review.
    pub(super) fn record(&self, reply: &Reply, elapsed: Duration) {
        let metrics = self.metrics();
        metrics.review(
            reply.outcome,
            elapsed.as_secs_f64(),
            reply.patch_bytes,
            reply.cache,
        );
        if reply.internal_error {
            metrics.internal_errors.inc();
        }
        let default = Default::default();
        let info = reply.info.as_ref().unwrap_or(&default);
        let cache = match reply.cache {
            CacheUse::Hit => "hit",
            CacheUse::Miss => "miss",
            CacheUse::None => "",
        };
        // Identity and sizes only: the ConfigMap may hold credentials, and warnings and denial
        // messages may quote it. `detail` is a location or a parse error with the quoted
        // values withheld, never data. Control characters are escaped: in the text format a
        // line break in a uid would otherwise start a log line of the sender's choosing.
        let detail = reply.detail.as_deref().unwrap_or("");
        macro_rules! review_event {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    uid = %printable(&info.uid),
                    kind = %printable(&info.kind),
                    namespace = %printable(&info.namespace),
                    name = %printable(&info.name),
                    operation = info.operation,
                    dry_run = info.dry_run,
                    outcome = reply.outcome.as_str(),
                    http_status = reply.status,
                    duration_ms = elapsed.as_secs_f64() * 1000.0,
                    patch_bytes = reply.patch_bytes,
                    warnings = reply.warnings,
                    cache,
                    detail = %printable(detail),
                    "review"
                )
            };
        }
        if reply.internal_error {
            review_event!(tracing::Level::ERROR);
        } else {
            review_event!(tracing::Level::INFO);
        }
    }
}

/// `text` with control characters escaped (`\n`, `\u{1b}`), for a log field.
pub(crate) fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// JSON lines (or text) on stderr, filtered by `RUST_LOG` (default `info`).
pub(super) fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a log collector would store the escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // try_init: a subscriber may already be installed (tests, an embedding program).
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Log panics as one line with their location only: a panic message could quote the
/// ConfigMap being rewritten, which may hold credentials.
pub(super) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|panic| {
        let location = panic
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic (message withheld: it may quote ConfigMap data)");
    }));
}
