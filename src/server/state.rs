//! The state the handlers share: the current [`Admission`] (engine, config and cache),
//! swapped whole when the config reloads, the metrics, readiness, the engine threads and the
//! request-body budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::budget::{BODY_BUDGET_BYTES, BodyBudget};
use super::metrics::{self, Metrics};
use super::workers::{NotRun, Workers};
use crate::admission::Admission;

/// How long a client may take to send a request body (the API server waits at most 30 s
/// for a webhook, `timeoutSeconds`), waiting for budget included: a client trickling its
/// body cannot hold its share of [`BODY_BUDGET_BYTES`] for longer. `--body-timeout-ms` (hidden, for tests) changes it.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after its request started a review must be answered: below the webhook's
/// `timeoutSeconds` (5 s in deploy/base), after which the API server has given up. The wait
/// for budget and for an engine thread count, and the engine stops at its next check (a
/// data key, a rule) once it passes, with a denial that says so. `--review-deadline-ms`
/// (hidden, for tests) changes it.
pub const REVIEW_DEADLINE: Duration = Duration::from_secs(4);

/// What the handlers share: the current config (engine + cache), metrics, readiness.
#[derive(Clone, Debug)]
pub struct AppState(pub(super) Arc<Shared>);

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) admission: ArcSwap<Admission>,
    pub(super) metrics: Metrics,
    pub(super) ready: AtomicBool,
    /// One thread per core runs the engine and parses large bodies; further work queues
    /// there. Cache hits of small bodies are answered without it.
    pub(super) workers: Workers,
    /// [`BODY_BUDGET_BYTES`]: a request holds what its body has sent until its answer is
    /// sent (budget.rs).
    pub(super) body_budget: Arc<BodyBudget>,
    /// [`BODY_TIMEOUT`] unless set otherwise, in milliseconds.
    pub(super) body_timeout_ms: AtomicU64,
    /// [`REVIEW_DEADLINE`] unless set otherwise, in milliseconds.
    pub(super) review_deadline_ms: AtomicU64,
}

impl AppState {
    /// State serving `admission`, not yet ready (see [`AppState::set_ready`]).
    pub fn new(admission: Admission) -> AppState {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let metrics = Metrics::new();
        metrics.config_generation.set(admission.generation() as i64);
        let stopped = metrics.engine_stopped.clone();
        // One thread more than the cores: the one an address keeping the others busy leaves
        // to everyone else (workers.rs).
        let workers = Workers::with_skip_hook(cores + 1, move |why| {
            let reason = match why {
                NotRun::Cancelled => "cancelled",
                _ => "expired",
            };
            stopped
                .get_or_create(&metrics::ReasonLabels { reason })
                .inc();
        });
        AppState(Arc::new(Shared {
            admission: ArcSwap::from_pointee(admission),
            metrics,
            ready: AtomicBool::new(false),
            workers,
            body_budget: Arc::new(BodyBudget::new()),
            body_timeout_ms: AtomicU64::new(BODY_TIMEOUT.as_millis() as u64),
            review_deadline_ms: AtomicU64::new(REVIEW_DEADLINE.as_millis() as u64),
        }))
    }

    /// How long a client may take to send a request body from now on.
    pub fn set_body_timeout(&self, timeout: Duration) {
        self.0
            .body_timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    pub(super) fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.0.body_timeout_ms.load(Ordering::Relaxed))
    }

    pub fn admission(&self) -> Arc<Admission> {
        self.0.admission.load_full()
    }

    /// Serve a new config from now on (reviews already running finish with the old one).
    pub fn set_admission(&self, admission: Admission) {
        self.0
            .metrics
            .config_generation
            .set(admission.generation() as i64);
        self.0.admission.store(Arc::new(admission));
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.unready().is_none()
    }

    /// Why promfed cannot take reviews now, if it cannot: shutting down, or the body budget
    /// in use with requests waiting for it (a new review, from any address, queues behind
    /// them: nothing at all can be read). `/readyz` fails then, so that Kubernetes routes to
    /// the other replica (`failureThreshold` 2: for 10 s).
    ///
    /// Not for what a new review can still get past: one address at its share (429 to it
    /// alone), or the engine threads busy (answers from the cache flow, and the threads take
    /// a new address's review after one of every other address's, workers.rs). Failing then
    /// would let an attack spread over the replicas take every endpoint off the Service,
    /// which fails every review. Every count read here is kept by guards that let go when
    /// the request they count ends, however it ends (budget.rs, workers.rs), so readiness
    /// comes back by itself once an attack stops.
    pub fn unready(&self) -> Option<String> {
        if !self.0.ready.load(Ordering::SeqCst) {
            return Some("starting or shutting down".into());
        }
        let waiting = self.0.body_budget.waiting_for_total();
        if waiting > 0 {
            return Some(format!(
                "the request-body budget ({} KiB) is in use and {waiting} requests wait for it",
                BODY_BUDGET_BYTES / 1024
            ));
        }
        None
    }

    /// How long after its request started a review must be answered.
    pub(super) fn review_deadline(&self) -> Duration {
        Duration::from_millis(self.0.review_deadline_ms.load(Ordering::Relaxed))
    }

    /// Set how long after its request started a review must be answered.
    pub fn set_review_deadline(&self, deadline: Duration) {
        self.0
            .review_deadline_ms
            .store(deadline.as_millis() as u64, Ordering::Relaxed);
    }
}
