//! `promfed serve` from flags to exit: load the config and certificate, bind both listeners,
//! start the reloaders and the accept loops (conn.rs), and on SIGTERM stop accepting and drain.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::handlers::{metrics_router, router};
use super::reload::{self, Watched};
use super::state::{AppState, REVIEW_DEADLINE};
use super::telemetry::{LogFormat, init_tracing, install_panic_hook};
use super::tls::{self, CertResolver, ServingCert};
use super::{conn, dev};
use crate::admission::Admission;

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
        // The flags may shorten the metrics listener's own (shorter) timers, not lengthen them.
        let metrics = timers(conn::METRICS_LIMITS);
        let metrics = conn::ConnLimits {
            first_request: metrics
                .first_request
                .min(conn::METRICS_LIMITS.first_request),
            idle: metrics.idle.min(conn::METRICS_LIMITS.idle),
            send: metrics.send.min(conn::METRICS_LIMITS.send),
            ..metrics
        };
        let https = conn::ConnLimits {
            max: self.max_connections.max(1),
            per_address: self.max_connections_per_address.max(1),
            ..timers(conn::HTTPS_LIMITS)
        };
        (https, metrics)
    }
}

const HTTPS_PORT: u16 = 8443;
const METRICS_PORT: u16 = 9102;

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
        Watched::new(vec![files.config.clone()], &[config_text]).settling(reload::CONFIG_QUIET),
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
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
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
