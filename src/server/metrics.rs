//! The webhook's Prometheus metrics, all under the `promfed_` prefix.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::admission::{CacheUse, Outcome};
use crate::engine::work::Stopped;

/// `outcome` label of `promfed_reviews_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: OutcomeLabel,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum OutcomeLabel {
    mutated,
    unchanged,
    denied,
    invalid,
    passed,
    busy,
}

impl From<Outcome> for OutcomeLabel {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Mutated => OutcomeLabel::mutated,
            Outcome::Unchanged => OutcomeLabel::unchanged,
            Outcome::Denied => OutcomeLabel::denied,
            Outcome::Invalid => OutcomeLabel::invalid,
            Outcome::Passed => OutcomeLabel::passed,
            Outcome::Busy => OutcomeLabel::busy,
        }
    }
}

/// `result` label of the reload and cache counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: ResultLabel,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ResultLabel {
    success,
    failure,
    hit,
    miss,
}

/// `reason` label of `promfed_engine_stopped_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// `listener` label of the connection metrics (`https`, `metrics`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

/// `listener` and `reason` labels of `promfed_connections_closed_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub reviews: Family<OutcomeLabels, Counter>,
    pub review_duration: Histogram,
    pub patch_bytes: Histogram,
    pub cache: Family<ResultLabels, Counter>,
    pub internal_errors: Counter,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub config_generation: Gauge,
    pub config_reloads_skipped: Counter,
    pub certificate_reloads: Family<ResultLabels, Counter>,
    pub certificate_expiry: Gauge,
    pub client_ca_reloads: Family<ResultLabels, Counter>,
    pub engine_stopped: Family<ReasonLabels, Counter>,
    pub connections: Family<ListenerLabels, Gauge>,
    pub connections_closed: Family<ClosedLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("promfed");
        let reviews = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reviews",
            "AdmissionReviews answered, by outcome (mutated, unchanged, denied, invalid, passed, busy)",
            reviews.clone(),
        );
        // 100 µs .. ~3.3 s
        let review_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "review_duration_seconds",
            "Time from the request body being read to the answer being ready",
            review_duration.clone(),
        );
        // 256 B .. 4 MiB
        let patch_bytes = Histogram::new(exponential_buckets(256.0, 4.0, 8));
        registry.register(
            "patch_bytes",
            "Size of the JSON patches sent (before base64)",
            patch_bytes.clone(),
        );
        let cache = Family::<ResultLabels, Counter>::default();
        registry.register(
            "review_cache",
            "Matched ConfigMaps answered from the response cache (hit) or by the engine (miss)",
            cache.clone(),
        );
        let internal_errors = Counter::default();
        registry.register(
            "internal_errors",
            "Reviews denied because the engine panicked (a bug)",
            internal_errors.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config file reloads after a change, by result; a failed one keeps the last good config",
            config_reloads.clone(),
        );
        let config_reloads_skipped = Counter::default();
        registry.register(
            "config_reloads_skipped",
            "Config file contents not loaded because they changed again before staying the same for a quiet period (a file written in place)",
            config_reloads_skipped.clone(),
        );
        let config_generation = Gauge::default();
        registry.register(
            "config_generation",
            "Number of the config in use: 1 at start, +1 per successful reload",
            config_generation.clone(),
        );
        let certificate_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Serving certificate reloads after a change, by result; a failed one keeps the old one",
            certificate_reloads.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, as a Unix timestamp",
            certificate_expiry.clone(),
        );
        let client_ca_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "client_ca_reloads",
            "Client CA file reloads after a change, by result; a failed one keeps the current CA",
            client_ca_reloads.clone(),
        );
        let engine_stopped = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "engine_stopped",
            "Engine runs stopped before their end or not started, by reason (deadline: the \
             review's time limit passed; cancelled: its client was gone; expired: it waited too \
             long for an engine thread)",
            engine_stopped.clone(),
        );
        for reason in ["deadline", "cancelled", "expired"] {
            let _ = engine_stopped.get_or_create(&ReasonLabels { reason });
        }
        let connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "connections",
            "Connections open, by listener (https, metrics)",
            connections.clone(),
        );
        let connections_closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections promfed closed or refused, by listener and reason (refused: over a cap \
             with every connection busy; evicted: idle, closed to make room; no_request: no \
             request in time; idle: nothing in flight for too long; send_timeout: an answer \
             not taken in time)",
            connections_closed.clone(),
        );
        registry.register(
            "build",
            "promfed version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        // Every series exists from the start, at 0, so rate() and alerts see the first increment.
        for outcome in [
            OutcomeLabel::mutated,
            OutcomeLabel::unchanged,
            OutcomeLabel::denied,
            OutcomeLabel::invalid,
            OutcomeLabel::passed,
            OutcomeLabel::busy,
        ] {
            let _ = reviews.get_or_create(&OutcomeLabels { outcome });
        }
        for result in [ResultLabel::hit, ResultLabel::miss] {
            let _ = cache.get_or_create(&ResultLabels { result });
        }
        for result in [ResultLabel::success, ResultLabel::failure] {
            let _ = config_reloads.get_or_create(&ResultLabels { result });
            let _ = certificate_reloads.get_or_create(&ResultLabels { result });
            let _ = client_ca_reloads.get_or_create(&ResultLabels { result });
        }
        for listener in ["https", "metrics"] {
            let _ = connections.get_or_create(&ListenerLabels { listener });
            for reason in ["refused", "evicted", "no_request", "idle", "send_timeout"] {
                let _ = connections_closed.get_or_create(&ClosedLabels { listener, reason });
            }
        }
        Metrics {
            registry,
            reviews,
            review_duration,
            patch_bytes,
            cache,
            internal_errors,
            config_reloads,
            config_reloads_skipped,
            config_generation,
            certificate_reloads,
            certificate_expiry,
            client_ca_reloads,
            engine_stopped,
            connections,
            connections_closed,
        }
    }

    pub fn engine_stopped(&self, stopped: Stopped) {
        let reason = match stopped {
            Stopped::Deadline => "deadline",
            Stopped::Cancelled => "cancelled",
        };
        self.engine_stopped
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn connections_open(&self, listener: &'static str, open: usize) {
        self.connections
            .get_or_create(&ListenerLabels { listener })
            .set(open as i64);
    }

    pub fn connection_closed(&self, listener: &'static str, reason: &'static str) {
        self.connections_closed
            .get_or_create(&ClosedLabels { listener, reason })
            .inc();
    }

    /// Count one answered review.
    pub fn review(&self, outcome: Outcome, seconds: f64, patch_bytes: usize, cache: CacheUse) {
        self.reviews
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
        self.review_duration.observe(seconds);
        if patch_bytes > 0 {
            self.patch_bytes.observe(patch_bytes as f64);
        }
        let cache = match cache {
            CacheUse::Hit => ResultLabel::hit,
            CacheUse::Miss => ResultLabel::miss,
            CacheUse::None => return,
        };
        self.cache
            .get_or_create(&ResultLabels { result: cache })
            .inc();
    }

    pub fn config_reload(&self, ok: bool) {
        self.config_reloads.get_or_create(&result(ok)).inc();
    }

    pub fn client_ca_reload(&self, ok: bool) {
        self.client_ca_reloads.get_or_create(&result(ok)).inc();
    }

    pub fn certificate_reload(&self, ok: bool) {
        self.certificate_reloads.get_or_create(&result(ok)).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn result(ok: bool) -> ResultLabels {
    ResultLabels {
        result: if ok {
            ResultLabel::success
        } else {
            ResultLabel::failure
        },
    }
}
