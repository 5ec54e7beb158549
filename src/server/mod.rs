//! `promfed serve`: the HTTPS admission webhook.
//!
//! The whole request path: [`router`] (`POST /mutate`) reads the body (within a memory
//! budget shared by all requests) and hands it to [`crate::admission`]; a cache miss runs the
//! engine on one of a few long-lived worker threads (`workers.rs`, one per core) so the
//! runtime never stalls. `tls.rs` terminates TLS with a certificate that
//! `reload.rs` swaps when the files change; `metrics.rs` counts; `dev.rs` makes `--dev` work
//! without any file.

pub mod dev;
pub mod metrics;
pub mod reload;
pub mod tls;
pub mod workers;

use std::future::IntoFuture as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::admission::{Admission, CacheUse, Head, MAX_BODY_BYTES, Pending, Reply, Step, Verdict};
use metrics::Metrics;
use reload::Watched;
use tls::{CertResolver, ServingCert};
use workers::Workers;

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
/// Request bytes being read or reviewed at once, all requests together. A review costs a few
/// times its size while it is parsed and rewritten, so this bounds the process's memory: 24
/// concurrent 2 MiB reviews reached 156 MiB without it (the Deployment's limit is 128 MiB).
/// Requests beyond it wait for their turn before their body is read. Real reviews are far
/// smaller (a ConfigMap is at most 1 MiB; the TKG one is 30 kB) and rarely wait.
pub const BODY_BUDGET_BYTES: usize = 8 * 1024 * 1024;
/// How long a client may take to send a request body (the API server waits at most 30 s
/// for a webhook, `timeoutSeconds`): a client trickling its body cannot hold its share of
/// [`BODY_BUDGET_BYTES`] for longer. `--body-timeout-ms` (hidden, for tests) changes it.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// [`BODY_BUDGET_BYTES`] in KiB: a request holds as many permits as its body has KiB
    /// (the whole [`MAX_BODY_BYTES`] when it does not say) until it is answered.
    body_budget: Arc<Semaphore>,
    /// [`BODY_TIMEOUT`] unless set otherwise, in milliseconds.
    body_timeout_ms: AtomicU64,
}

impl AppState {
    /// State serving `admission`, not yet ready (see [`AppState::set_ready`]).
    pub fn new(admission: Admission) -> AppState {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let metrics = Metrics::new();
        metrics.config_generation.set(admission.generation() as i64);
        AppState(Arc::new(Shared {
            admission: ArcSwap::from_pointee(admission),
            metrics,
            ready: AtomicBool::new(false),
            workers: Workers::new(cores),
            body_budget: Arc::new(Semaphore::new(BODY_BUDGET_BYTES / 1024)),
            body_timeout_ms: AtomicU64::new(BODY_TIMEOUT.as_millis() as u64),
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
        self.0.ready.load(Ordering::SeqCst)
    }

    /// Answer one request body. `budget` is its share of [`BODY_BUDGET_BYTES`]: the work on
    /// the worker threads holds it too, so a client that hangs up does not free it while
    /// its body is still being parsed or rewritten.
    async fn review(&self, body: Bytes, budget: Option<OwnedSemaphorePermit>) -> Reply {
        let budget = Arc::new(budget);
        let admission = self.admission();
        let step = if body.len() > INLINE_PARSE_BYTES {
            let (admission, budget) = (admission.clone(), budget.clone());
            let parsed = self.0.workers.run(move || {
                let _budget = budget;
                admission.begin(&body)
            });
            match parsed.await {
                Some(step) => step,
                None => {
                    return Reply::internal("promfed internal error while reading the review");
                }
            }
        } else {
            admission.begin(&body)
        };
        let pending = match step {
            Step::Done(reply) => return reply,
            Step::Rewrite(pending) => pending,
        };
        let uid = pending.head.info().uid.clone();
        let answer = self.0.workers.run(move || {
            let _budget = budget;
            finish(&admission, pending)
        });
        // finish() catches panics: no answer means the workers are gone (shutting down).
        answer.await.unwrap_or_else(|| {
            Reply::internal(format!(
                "promfed could not answer review {uid}: shutting down"
            ))
        })
    }

    /// Wait until `bytes` more request bytes fit into [`BODY_BUDGET_BYTES`] (the semaphore is
    /// never closed, so this always gets them).
    async fn body_permit(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib = bytes.min(MAX_BODY_BYTES).div_ceil(1024).max(1) as u32;
        self.0
            .body_budget
            .clone()
            .acquire_many_owned(kib)
            .await
            .ok()
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
fn finish(admission: &Admission, pending: Pending) -> Reply {
    let Pending { head, job } = pending;
    guarded(head, || admission.run(job))
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
    // The duration is the review's: from the body being read to the answer being ready.
    let (reply, elapsed) = match read_body(&state, request).await {
        Ok((body, budget)) => {
            let started = Instant::now();
            let reply = state.review(body, budget).await;
            (reply, started.elapsed())
        }
        Err(refused) => (refused, Duration::ZERO),
    };
    state.record(&reply, elapsed);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [(header::CONTENT_TYPE, reply.content_type)],
        reply.body,
    )
        .into_response()
}

/// Read the body within the memory budget and the body timeout: the body and its share of
/// the budget, or the answer that refuses it (413, 408, 400).
async fn read_body(
    state: &AppState,
    request: Request,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Reply> {
    // A declared length over the limit is refused before the body is read at all.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(Reply::too_large());
    }
    let expected = declared.map_or(MAX_BODY_BYTES, |n| n as usize);
    // Held until the answer is ready: the body and everything parsed from it are gone then.
    let budget = state.body_permit(expected).await;
    let limited = Limited::new(request.into_body(), MAX_BODY_BYTES);
    let timeout = state.body_timeout();
    match tokio::time::timeout(timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok((collected.to_bytes(), budget)),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(Reply::too_large()),
        Ok(Err(e)) => Err(Reply::invalid(format!(
            "could not read the request body: {e}"
        ))),
        Err(_) => Err(Reply::body_timeout(timeout)),
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
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
    let tls_config =
        tls::server_config(resolver.clone(), client_ca.as_deref()).context("TLS configuration")?;

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
    let https_task = tokio::spawn(tls::serve(
        https,
        Arc::new(tls_config),
        router(state.clone()),
        stopping.clone(),
        grace,
    ));
    let (metrics_stop, metrics_stopping) = watch::channel(false);
    let metrics_task = tokio::spawn(
        axum::serve(metrics, metrics_router(state.clone()))
            .with_graceful_shutdown(async move {
                let mut stopping = metrics_stopping;
                stopped(&mut stopping).await;
            })
            .into_future(),
    );
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
    let _ = https_task.await;
    let _ = metrics_stop.send(true);
    let _ = metrics_task.await;
    tracing::info!("stopped");
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
