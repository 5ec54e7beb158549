//! `promfed serve`: the HTTPS admission webhook.
//!
//! The whole request path: [`router`] (`POST /mutate`) reads the body (within a memory
//! budget shared by all requests) and hands it to [`crate::admission`]; a cache miss runs the
//! engine on one of a few long-lived worker threads (`workers.rs`, one per core) so the
//! runtime never stalls. `tls.rs` terminates TLS with a certificate that
//! `reload.rs` swaps when the files change; `metrics.rs` counts; `dev.rs` makes `--dev` work
//! without any file.

pub mod budget;
pub mod conn;
pub mod dev;
pub mod metrics;
pub mod reload;
pub mod tls;
pub mod workers;

use std::net::{Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt as _, Full};
use tokio::sync::watch;

use crate::admission::{
    Admission, CacheUse, Head, MAX_BODY_BYTES, Outcome, Pending, Reply, Step, Verdict,
};
use crate::engine::Work;
use budget::{BodyBudget, Reservation, Short};
use conn::ConnInfo;
use metrics::Metrics;
use reload::Watched;
use tls::{CertResolver, ServingCert};
use workers::{Lane, NotRun, Workers};

/// Flags of `promfed serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// promfed config file (reloaded when it changes).
    #[arg(long, required_unless_present = "dev")]
    pub config: Option<PathBuf>,
    /// PEM serving certificate (reloaded when it changes).
    #[arg(long, required_unless_present = "dev")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the serving certificate.
    #[arg(long, required_unless_present = "dev")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle: when given, clients must present a certificate it signed.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// HTTPS listener for `POST /mutate` [default: 0.0.0.0:8443; 127.0.0.1:8443 with --dev].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Plain-HTTP listener for `/healthz`, `/readyz` and `/metrics`
    /// [default: 0.0.0.0:9102; 127.0.0.1:9102 with --dev].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Local development: embedded example config and a fresh self-signed certificate.
    #[arg(long)]
    pub dev: bool,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// How often the config and certificate files are checked for changes.
    #[arg(long, hide = true, default_value_t = 1000, value_name = "MS")]
    pub reload_interval_ms: u64,
    /// How long in-flight requests may take after SIGTERM.
    #[arg(long, hide = true, default_value_t = 5000, value_name = "MS")]
    pub shutdown_grace_ms: u64,
    /// How long a client may take to send a request body.
    #[arg(long, hide = true, default_value_t = 30_000, value_name = "MS")]
    pub body_timeout_ms: u64,
    /// How long after its request started a review must be answered.
    #[arg(long, hide = true, default_value_t = REVIEW_DEADLINE.as_millis() as u64, value_name = "MS")]
    pub review_deadline_ms: u64,
    /// HTTPS connections open at once (docs/operations.md, "Connections").
    #[arg(long, hide = true, default_value_t = conn::HTTPS_LIMITS.max)]
    pub max_connections: usize,
    /// HTTPS connections open at once from one client address.
    #[arg(long, hide = true, default_value_t = conn::HTTPS_LIMITS.per_address)]
    pub max_connections_per_address: usize,
    /// From accept to the first request's headers, TLS handshake included (both listeners).
    #[arg(long, hide = true, default_value_t = conn::HTTPS_LIMITS.first_request.as_millis() as u64, value_name = "MS")]
    pub first_request_timeout_ms: u64,
    /// A connection with nothing in flight for this long is closed (both listeners).
    #[arg(long, hide = true, default_value_t = conn::HTTPS_LIMITS.idle.as_millis() as u64, value_name = "MS")]
    pub idle_timeout_ms: u64,
    /// An answer the client has not taken after this long closes its connection.
    #[arg(long, hide = true, default_value_t = conn::HTTPS_LIMITS.send.as_millis() as u64, value_name = "MS")]
    pub send_timeout_ms: u64,
}

impl ServeArgs {
    /// The HTTPS and metrics listeners' limits, with the hidden flags applied.
    fn conn_limits(&self) -> (conn::ConnLimits, conn::ConnLimits) {
        let ms = |ms: u64| Duration::from_millis(ms.max(1));
        let timers = |limits: conn::ConnLimits| conn::ConnLimits {
            first_request: ms(self.first_request_timeout_ms),
            idle: ms(self.idle_timeout_ms),
            send: ms(self.send_timeout_ms),
            ..limits
        };
        let https = conn::ConnLimits {
            max: self.max_connections.max(1),
            per_address: self.max_connections_per_address.max(1),
            ..timers(conn::HTTPS_LIMITS)
        };
        (https, timers(conn::METRICS_LIMITS))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

const HTTPS_PORT: u16 = 8443;
const METRICS_PORT: u16 = 9102;
/// Bodies above this are parsed on a blocking thread too: parsing 3 MiB takes milliseconds.
const INLINE_PARSE_BYTES: usize = 256 * 1024;
pub use budget::BODY_BUDGET_BYTES;
/// Each chunk (HTTP/1) or DATA frame (HTTP/2) of a body counts this many bytes against the
/// body limit besides its data, and a body may spend [`FRAMING_ALLOWANCE_BYTES`] on them: a
/// 3 MiB body arrives in up to 768 pieces, a body sent a byte per chunk is refused early.
/// (Every piece costs a wake-up and a copy: a body of one-byte chunks cost 3 million.)
pub const FRAME_COST_BYTES: usize = 64;
pub const FRAMING_ALLOWANCE_BYTES: usize = MAX_BODY_BYTES / FRAME_COST_BYTES;
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

/// Every engine thread busy and a job waiting longer than this: `/readyz` fails.
pub const SATURATED_WAIT: Duration = Duration::from_secs(1);

/// What the handlers share: the current config (engine + cache), metrics, readiness.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    admission: ArcSwap<Admission>,
    metrics: Metrics,
    ready: AtomicBool,
    /// One thread per core runs the engine and parses large bodies; further work queues
    /// there. Cache hits of small bodies are answered without it.
    workers: Workers,
    /// [`BODY_BUDGET_BYTES`]: a request holds what its body has sent until its answer is
    /// sent (budget.rs).
    body_budget: Arc<BodyBudget>,
    /// [`BODY_TIMEOUT`] unless set otherwise, in milliseconds.
    body_timeout_ms: AtomicU64,
    /// [`REVIEW_DEADLINE`] unless set otherwise, in milliseconds.
    review_deadline_ms: AtomicU64,
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

    fn body_timeout(&self) -> Duration {
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

    /// Why promfed cannot take reviews now, if it cannot: shutting down, the body budget in
    /// use with requests waiting for it, or every engine thread busy with jobs waiting
    /// longer than [`SATURATED_WAIT`]. `/readyz` fails then, so that Kubernetes routes to
    /// the other replica (`failureThreshold` 2: for 10 s).
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
        let load = self.0.workers.load();
        if load.running >= load.threads && load.oldest_wait > SATURATED_WAIT {
            return Some(format!(
                "all {} engine threads are busy and {} reviews wait, one for {:.1} s",
                load.threads,
                load.queued,
                load.oldest_wait.as_secs_f64()
            ));
        }
        None
    }

    /// Answer one request body that arrived for a request started at `started` from
    /// `lane` (the client's address). `budget` is its share of [`BODY_BUDGET_BYTES`]: the
    /// work on the worker threads holds it too, so a client that hangs up does not free it
    /// while its body is still being parsed or rewritten. When this future is dropped (the
    /// client is gone), queued work is not started and the engine stops at its next check.
    async fn review(
        &self,
        body: Bytes,
        budget: Arc<Reservation>,
        lane: Lane,
        started: Instant,
    ) -> Reply {
        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel = CancelOnDrop(cancel.clone());
        let limit = self.review_deadline();
        let deadline = started + limit;
        let admission = self.admission();
        let step = if body.len() > INLINE_PARSE_BYTES {
            let (admission, budget) = (admission.clone(), budget.clone());
            let parsed =
                self.0
                    .workers
                    .run(lane, Some(deadline), Some(cancel.clone()), move || {
                        let _budget = budget;
                        admission.begin(&body)
                    });
            match parsed.await {
                Ok(step) => step,
                Err(not_run) => return self.not_run(not_run, "read"),
            }
        } else {
            admission.begin(&body)
        };
        let pending = match step {
            Step::Done(reply) => return reply,
            Step::Rewrite(pending) => pending,
        };
        let state = self.clone();
        let answer = self
            .0
            .workers
            .run(lane, Some(deadline), Some(cancel.clone()), move || {
                let _budget = budget;
                let work = Admission::work_for(&pending.job)
                    .with_deadline(deadline, limit)
                    .with_cancel(cancel);
                finish(&admission, pending, work, state.metrics())
            });
        // finish() catches panics: Lost means the workers are gone (shutting down).
        answer
            .await
            .unwrap_or_else(|not_run| self.not_run(not_run, "rewrite"))
    }

    /// The answer to a review the worker threads did not take.
    fn not_run(&self, not_run: NotRun, what: &str) -> Reply {
        let load = self.0.workers.load();
        match not_run {
            NotRun::Full => Reply::busy(
                503,
                format!(
                    "promfed is busy: {} reviews wait for its {} engine threads; retry",
                    load.queued, load.threads
                ),
            ),
            NotRun::Expired => Reply::busy(
                503,
                format!(
                    "promfed is busy: the review could not start within {:.1} s of its \
                     request; retry",
                    self.review_deadline().as_secs_f64()
                ),
            ),
            // Nobody reads this answer.
            NotRun::Cancelled => Reply::busy(503, "the review was cancelled".into()),
            NotRun::Lost => Reply::internal(format!(
                "promfed could not {what} the review: shutting down"
            )),
        }
    }

    /// How long after its request started a review must be answered.
    fn review_deadline(&self) -> Duration {
        Duration::from_millis(self.0.review_deadline_ms.load(Ordering::Relaxed))
    }

    /// Set how long after its request started a review must be answered.
    pub fn set_review_deadline(&self, deadline: Duration) {
        self.0
            .review_deadline_ms
            .store(deadline.as_millis() as u64, Ordering::Relaxed);
    }

    /// Metrics and the log line of one answered review.
    fn record(&self, reply: &Reply, elapsed: Duration) {
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

/// Run the engine for a pending review on this (blocking) thread; a panic becomes a denial.
fn finish(admission: &Admission, pending: Pending, mut work: Work, metrics: &Metrics) -> Reply {
    let Pending { head, job } = pending;
    let reply = guarded(head, || admission.run_within(job, &mut work));
    if let Some(stopped) = work.stopped() {
        metrics.engine_stopped(stopped);
    }
    reply
}

/// Sets the flag when dropped: the review's future is gone (its client hung up), or done.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn guarded(head: Head, run: impl FnOnce() -> Arc<Verdict>) -> Reply {
    match std::panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(verdict) => head.respond(&verdict),
        Err(_) => head.internal_error(),
    }
}

/// The webhook's routes: `POST /mutate`. Bodies over 3 MiB are answered with 413.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The plain-HTTP routes: `/healthz`, `/readyz`, `/metrics`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn mutate(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let version = request.version();
    let conn = request.extensions().get::<Arc<ConnInfo>>().cloned();
    // The duration is the review's: from the body being read to the answer being ready.
    let (reply, elapsed, unread, budget, retry) =
        match read_body(&state, conn.as_deref(), request).await {
            Ok((body, budget)) => {
                let budget = Arc::new(budget);
                let read = Instant::now();
                let lane = conn.as_ref().map(|c| c.peer);
                let reply = state.review(body, budget.clone(), lane, started).await;
                (reply, read.elapsed(), None, Some(budget), false)
            }
            Err(refused) => (
                refused.reply,
                Duration::ZERO,
                refused.unread,
                None,
                refused.retry,
            ),
        };
    state.record(&reply, elapsed);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, reply.content_type);
    if retry || reply.outcome == Outcome::Busy {
        response = response.header(header::RETRY_AFTER, budget::RETRY_AFTER_SECONDS);
    }
    if unread.is_some() {
        // Answered before the body was read: close afterwards, lingering, so that a client
        // still writing its body can read the answer (conn.rs).
        if let Some(conn) = &conn {
            conn.linger_on_close();
        }
        if version < axum::http::Version::HTTP_2 {
            response = response.header(header::CONNECTION, "close");
        }
    }
    // The unread body lives until the answer is sent. Over HTTP/2 the rest of it is then
    // read and thrown away (bounded like a lingering close): resetting the stream instead
    // makes some clients (curl 7.88) drop the answer they already have.
    let unread = unread.map(|body| Unread {
        body: Some(body),
        drain: version >= axum::http::Version::HTTP_2,
    });
    // The budget too: an answer the client does not take holds it until the connection's
    // send timer closes the connection.
    let body = conn::Held::new(Full::new(Bytes::from(reply.body)), (unread, budget));
    response
        .body(Body::new(body))
        .unwrap_or_else(|_| StatusCode::BAD_REQUEST.into_response())
}

/// A request body not read to its end, kept until the answer is sent.
struct Unread {
    body: Option<Body>,
    drain: bool,
}

impl Drop for Unread {
    fn drop(&mut self) {
        let Some(body) = self.body.take() else { return };
        if !self.drain {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

/// Read and throw away what is left of an HTTP/2 request body, within the bounds of a
/// lingering close.
async fn drain(mut body: Body) {
    let started = Instant::now();
    let mut discarded = 0usize;
    loop {
        let wait = conn::LINGER_TIME
            .saturating_sub(started.elapsed())
            .min(conn::LINGER_IDLE);
        if wait.is_zero() || discarded >= conn::LINGER_BYTES {
            return;
        }
        match tokio::time::timeout(wait, body.frame()).await {
            Ok(Some(Ok(frame))) => discarded += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// A request refused before its body was read to the end: the answer, the unread body, and
/// whether the client should retry (429, 503).
struct Refused {
    reply: Reply,
    unread: Option<Body>,
    retry: bool,
}

impl From<Reply> for Refused {
    fn from(reply: Reply) -> Refused {
        Refused {
            reply,
            unread: None,
            retry: false,
        }
    }
}

impl Refused {
    fn unread(reply: Reply, body: Body) -> Refused {
        Refused {
            reply,
            unread: Some(body),
            retry: false,
        }
    }
}

/// Read the body within the budget and the body timeout: the body and its share of the
/// budget, or the answer that refuses it (413, 408, 400, 429, 503).
async fn read_body(
    state: &AppState,
    conn: Option<&ConnInfo>,
    request: Request,
) -> Result<(Bytes, Reservation), Refused> {
    // A declared length over the limit is refused before the body is read at all.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut body = request.into_body();
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(Refused::unread(Reply::too_large(), body));
    }
    let declared = declared.map(|n| n as usize);
    let timeout = state.body_timeout();
    // The body timer covers the wait for budget as well as the body.
    let deadline = tokio::time::Instant::now() + timeout;
    let mut budget = state
        .0
        .body_budget
        .reserve(conn.map(|c| c.peer), conn.map(|c| c.body_share.clone()));
    let mut bytes: Vec<u8> = Vec::new();
    let mut frames = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            // A slow client may still be sending: it gets the 408 with a lingering close.
            Err(_) => return Err(Refused::unread(Reply::body_timeout(timeout), body)),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(Reply::invalid(format!("could not read the request body: {e}")).into());
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        frames += 1;
        let have = bytes.len() + data.len();
        if have > MAX_BODY_BYTES {
            return Err(Refused::unread(Reply::too_large(), body));
        }
        if have + frames * FRAME_COST_BYTES > MAX_BODY_BYTES + FRAMING_ALLOWANCE_BYTES {
            return Err(Refused::unread(Reply::too_fragmented(frames), body));
        }
        // What arrived, up to a first step; past it the whole declared length at once, so
        // that large bodies arriving together never each hold a part and wait for the rest.
        let want = match declared {
            _ if have <= budget::STEP_BYTES => have,
            Some(n) => n.max(have),
            None => (have + budget::STEP_BYTES).min(MAX_BODY_BYTES),
        };
        if let Err(short) = budget.cover(want, deadline).await {
            if tokio::time::Instant::now() >= deadline {
                return Err(Refused::unread(Reply::body_timeout(timeout), body));
            }
            return Err(Refused {
                reply: busy_reply(short),
                unread: Some(body),
                retry: true,
            });
        }
        if bytes.is_empty() {
            bytes.reserve_exact(declared.unwrap_or(data.len()).min(MAX_BODY_BYTES));
        }
        bytes.extend_from_slice(&data);
    }
    Ok((Bytes::from(bytes), budget))
}

/// The answer to a request that found no budget: 429 when its own share (connection,
/// address) is full, 503 when the whole budget is.
fn busy_reply(short: Short) -> Reply {
    let (status, message) = match short {
        Short::Connection => (
            429,
            format!(
                "too many request bytes in flight on this connection (at most {} KiB); retry",
                budget::CONNECTION_SHARE_BYTES / 1024
            ),
        ),
        Short::Address => (
            429,
            format!(
                "too many request bytes in flight from this address (at most {} KiB); retry",
                budget::ADDRESS_SHARE_BYTES / 1024
            ),
        ),
        Short::Budget => (
            503,
            format!(
                "promfed is busy: its {} KiB of request bytes are in use; retry",
                BODY_BUDGET_BYTES / 1024
            ),
        ),
    };
    Reply::busy(status, message)
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.unready() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().encode(),
    )
        .into_response()
}

/// Run the webhook until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    tls::install_default_provider();
    init_tracing(args.log_format);
    install_panic_hook();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("promfed")
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// JSON lines (or text) on stderr, filtered by `RUST_LOG` (default `info`).
fn init_tracing(format: LogFormat) {
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
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|panic| {
        let location = panic
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic (message withheld: it may quote ConfigMap data)");
    }));
}

/// Where `serve` reads its files from.
struct Files {
    config: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

async fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    tokio::fs::read(path)
        .await
        .with_context(|| format!("reading the {what} {}", path.display()))
}

/// The server: load, bind, serve until a signal, drain, return.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let loopback = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let any = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let (https_addr, metrics_addr) = if args.dev {
        (
            args.listen.unwrap_or(loopback(HTTPS_PORT)),
            args.metrics_listen.unwrap_or(loopback(METRICS_PORT)),
        )
    } else {
        (
            args.listen.unwrap_or(any(HTTPS_PORT)),
            args.metrics_listen.unwrap_or(any(METRICS_PORT)),
        )
    };
    let dev = if args.dev {
        Some(dev::DevFiles::create(https_addr)?)
    } else {
        None
    };
    // Flags win over --dev's files, so `--dev --config mine.yaml` works.
    let pick = |flag: &Option<PathBuf>, dev_path: fn(&dev::DevFiles) -> &PathBuf, name: &str| {
        flag.clone()
            .or_else(|| dev.as_ref().map(|d| dev_path(d).clone()))
            .with_context(|| format!("--{name} is required without --dev"))
    };
    let files = Files {
        config: pick(&args.config, |d| &d.config, "config")?,
        cert: pick(&args.tls_cert_file, |d| &d.cert, "tls-cert-file")?,
        key: pick(&args.tls_key_file, |d| &d.key, "tls-key-file")?,
    };

    let config_text = read(&files.config, "config").await?;
    let engine = reload::load_engine(&config_text)
        .with_context(|| format!("config {}", files.config.display()))?;
    let state = AppState::new(Admission::new(engine, 1));
    state.set_body_timeout(Duration::from_millis(args.body_timeout_ms.max(1)));
    state.set_review_deadline(Duration::from_millis(args.review_deadline_ms.max(1)));

    let cert_pem = read(&files.cert, "certificate").await?;
    let key_pem = read(&files.key, "private key").await?;
    let cert = ServingCert::from_pem(&cert_pem, &key_pem).with_context(|| {
        format!(
            "certificate {} with key {}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    state.metrics().certificate_expiry.set(cert.not_after);
    let resolver = Arc::new(CertResolver::new(&cert));
    let client_ca = match &args.client_ca_file {
        Some(path) => Some(read(path, "client CA").await?),
        None => None,
    };
    let tls_config = Arc::new(ArcSwap::from_pointee(
        tls::server_config(resolver.clone(), client_ca.as_deref()).context("TLS configuration")?,
    ));
    // Verifying client certificates costs CPU: those handshakes run on a runtime of their own.
    let handshakes = match &client_ca {
        Some(_) => Some(tls::HandshakeRuntime::start()?),
        None => None,
    };

    let https = tokio::net::TcpListener::bind(https_addr)
        .await
        .with_context(|| format!("binding --listen {https_addr}"))?;
    let metrics = tokio::net::TcpListener::bind(metrics_addr)
        .await
        .with_context(|| format!("binding --metrics-listen {metrics_addr}"))?;
    let https_addr = https.local_addr()?;
    let metrics_addr = metrics.local_addr()?;

    let (stop, stopping) = watch::channel(false);
    let every = Duration::from_millis(args.reload_interval_ms.max(10));
    tokio::spawn(reload::watch_config(
        state.clone(),
        Watched::new(vec![files.config.clone()], &[config_text]),
        every,
        stopping.clone(),
    ));
    if let (Some(path), Some(pem)) = (&args.client_ca_file, client_ca) {
        tokio::spawn(reload::watch_client_ca(
            state.clone(),
            tls_config.clone(),
            resolver.clone(),
            Watched::new(vec![path.clone()], &[pem]),
            every,
            stopping.clone(),
        ));
    }
    tokio::spawn(reload::watch_certificate(
        state.clone(),
        resolver,
        Watched::new(
            vec![files.cert.clone(), files.key.clone()],
            &[cert_pem, key_pem],
        ),
        every,
        stopping.clone(),
    ));

    let grace = Duration::from_millis(args.shutdown_grace_ms);
    let (https_limits, metrics_limits) = args.conn_limits();
    let https_task = tokio::spawn(conn::serve(
        https,
        conn::Tracker::new("https", https_limits, state.clone()),
        tls::Tls {
            config: tls_config,
            handshakes: handshakes.as_ref().and_then(tls::HandshakeRuntime::handle),
        },
        router(state.clone()),
        stopping.clone(),
        grace,
    ));
    let (metrics_stop, metrics_stopping) = watch::channel(false);
    let metrics_task = tokio::spawn(conn::serve(
        metrics,
        conn::Tracker::new("metrics", metrics_limits, state.clone()),
        conn::Plain,
        metrics_router(state.clone()),
        metrics_stopping,
        grace,
    ));
    state.set_ready(true);
    tracing::info!(
        https_addr = %https_addr,
        metrics_addr = %metrics_addr,
        config = %files.config.display(),
        certificate_names = ?cert.names,
        client_auth = args.client_ca_file.is_some(),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    if let Some(dev) = &dev {
        println!("{}", dev.banner(&files.config, https_addr, metrics_addr));
    }

    let signal = shutdown_signal().await;
    tracing::info!(
        signal,
        "shutting down: no new connections, finishing requests in flight"
    );
    state.set_ready(false);
    let _ = stop.send(true);
    match https_task.await {
        Ok(true) => tracing::info!("HTTPS connections drained"),
        _ => tracing::warn!(
            grace_seconds = grace.as_secs_f64(),
            "connections still open after the grace period; closing them"
        ),
    }
    let _ = metrics_stop.send(true);
    let _ = metrics_task.await;
    tracing::info!("stopped");
    drop(handshakes);
    drop(dev);
    Ok(())
}

/// Resolves once the watch turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_engine_run_is_a_denial_not_a_crash() {
        let admission = Admission::new(crate::Engine::new(crate::Config::default()).unwrap(), 1);
        let body = dev::EXAMPLE_REVIEW.as_bytes();
        let Step::Rewrite(pending) = admission.begin(body) else {
            panic!("the example review needs the engine");
        };
        let reply = guarded(pending.head, || panic!("engine bug"));
        assert!(reply.internal_error);
        assert_eq!(reply.status, 200);
        let response = &reply.json().unwrap()["response"];
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 422);
        assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert!(
            response["status"]["message"]
                .as_str()
                .unwrap()
                .contains("internal error")
        );
    }
}
