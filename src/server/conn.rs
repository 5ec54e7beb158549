//! Connections: how many, for how long, and how they end.
//!
//! Every listener has a [`Tracker`] with [`ConnLimits`]: at most `max` connections, at most
//! `per_address` from one client address. A connection that would go over a cap takes the
//! place of an *idle* one (no request in flight: still shaking hands, waiting for its first
//! request, kept alive between requests, lingering) of the address that holds the most
//! connections (its own address when that one is at its cap), oldest first; when every
//! connection is busy it is closed at once. So connections left idle can never keep a new
//! client out, and the memory of the connections is bounded by the caps, whatever the
//! number of connections attempted (the rest wait in the kernel's accept queue or are
//! closed).
//!
//! Each connection has one timer task ([`serve_connection`]): its first request must arrive
//! within `first_request` of the accept (the TLS handshake included), a connection with
//! nothing in flight for `idle` is closed (HTTP/2: GOAWAY first), and an answer the client
//! does not take within `send` (a client that stops reading, an HTTP/2 window left at 0)
//! closes the connection and frees what the answer holds.
//!
//! Every connection has its own [`ConnInfo`], handed to the handlers as a request extension,
//! and, when a request was answered before its body was read (a 413), a lingering close.
//!
//! Lingering close, as nginx does it: a client that writes its whole body before reading the
//! answer (Python's http.client, Go's net/http, curl without `Expect`) would lose the 413 if
//! the connection were simply closed with request bytes still unread, because the kernel
//! then answers with a reset that discards what the client has not read yet. So the answer
//! is sent, the write side shut (TLS close_notify, then FIN), and what the client still
//! sends is read and thrown away, raw, without decrypting it, for a bounded time and amount.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot, watch};

use super::AppState;

/// Longest a lingering close reads what the client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(10);
/// A lingering close ends when the client has sent nothing for this long.
pub const LINGER_IDLE: Duration = Duration::from_secs(2);
/// Most bytes a lingering close reads (and throws away): a few times the largest body.
pub const LINGER_BYTES: usize = 32 * 1024 * 1024;
/// How long shutting the write side may take before the lingering close gives up.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// The caps and timers of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections open at once.
    pub max: usize,
    /// Connections open at once from one client address.
    pub per_address: usize,
    /// From the accept to the first request's headers, TLS handshake included.
    pub first_request: Duration,
    /// Nothing in flight for this long closes the connection. HTTP/1 keep-alive: hyper's
    /// header timer, which starts when the connection waits for the next request.
    pub idle: Duration,
    /// An answer the client has not taken after this long closes the connection.
    pub send: Duration,
    /// HTTP/2 streams open at once on one connection.
    pub streams: u32,
}

/// The webhook's listener. Memory per connection is about 35 KiB once shaken hands (rustls,
/// hyper's 16 KiB HTTP/1 buffer) and at most about 200 KiB (a 64 KiB TLS handshake message
/// being assembled, or 128 KiB of unread HTTP/2 data): 128 connections stay under 26 MiB. The
/// API server needs a few (one HTTP/2 connection per API server instance, a few more under
/// load); 32 per address leave room for four API servers behind one address.
pub const HTTPS_LIMITS: ConnLimits = ConnLimits {
    max: 128,
    per_address: 32,
    first_request: Duration::from_secs(10),
    idle: Duration::from_secs(10),
    send: Duration::from_secs(10),
    streams: 32,
};

/// The metrics listener: the kubelet's probes (a connection each) and a Prometheus or two.
pub const METRICS_LIMITS: ConnLimits = ConnLimits {
    max: 32,
    per_address: 8,
    first_request: Duration::from_secs(10),
    idle: Duration::from_secs(10),
    send: Duration::from_secs(10),
    streams: 8,
};

/// HTTP/1 read buffer: the request headers must fit (hyper's minimum is 8 KiB).
const HTTP1_BUFFER_BYTES: usize = 16 * 1024;
/// HTTP/2 flow-control windows: the most request data a stream (a connection) may have
/// sent that was not read yet.
const HTTP2_STREAM_WINDOW: u32 = 64 * 1024;
const HTTP2_CONNECTION_WINDOW: u32 = 128 * 1024;
/// HTTP/2 keep-alive pings while a connection is open: a peer gone without a word (the API
/// server's node lost) is noticed, and the reviews it was waiting for are cancelled.
const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(5);
const HTTP2_PING_TIMEOUT: Duration = Duration::from_secs(5);
/// After an idle connection was asked to close (HTTP/2 GOAWAY), how long it may take.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How often a connection's timers are checked.
const TICK: Duration = Duration::from_millis(250);

/// Why a connection was closed by promfed, for `promfed_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Over a cap with no idle connection to replace: closed at accept.
    Refused,
    /// An idle connection that made room for a new one.
    Evicted,
    /// No request within [`ConnLimits::first_request`].
    NoRequest,
    /// Nothing in flight for [`ConnLimits::idle`].
    Idle,
    /// An answer not taken within [`ConnLimits::send`].
    SendTimeout,
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Refused => "refused",
            Closed::Evicted => "evicted",
            Closed::NoRequest => "no_request",
            Closed::Idle => "idle",
            Closed::SendTimeout => "send_timeout",
        }
    }
}

/// One connection, as the handlers and the [`Tracker`] see it.
#[derive(Debug)]
pub struct ConnInfo {
    id: u64,
    pub peer: IpAddr,
    epoch: Instant,
    linger: AtomicBool,
    /// Requests started on this connection.
    requests: AtomicU64,
    /// Requests whose answer has not been sent (or dropped) yet.
    in_flight: AtomicUsize,
    /// Milliseconds after `epoch` when `in_flight` last became 0 (or the accept).
    idle_since_ms: AtomicU64,
    /// Answers ready but not yet taken by the client: request number → since when.
    unsent: Mutex<HashMap<u64, Instant>>,
    evicted: AtomicBool,
    close: Notify,
    /// What this connection may hold of the body budget (budget.rs).
    pub body_share: Arc<tokio::sync::Semaphore>,
}

impl ConnInfo {
    fn new(id: u64, peer: IpAddr) -> ConnInfo {
        ConnInfo {
            id,
            peer,
            epoch: Instant::now(),
            linger: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            unsent: Mutex::new(HashMap::new()),
            evicted: AtomicBool::new(false),
            close: Notify::new(),
            body_share: super::budget::BodyBudget::connection_share(),
        }
    }

    /// A connection for in-process use (tests, `router().oneshot`).
    pub fn detached(peer: IpAddr) -> ConnInfo {
        ConnInfo::new(u64::MAX, peer)
    }

    /// The request being answered was not read to its end: close this connection with a
    /// lingering close so that the client can read the answer.
    pub fn linger_on_close(&self) {
        self.linger.store(true, Ordering::Relaxed);
    }

    pub fn lingers(&self) -> bool {
        self.linger.load(Ordering::Relaxed)
    }

    fn millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }

    fn idle_for(&self) -> Duration {
        if self.busy() {
            return Duration::ZERO;
        }
        let since = self.idle_since_ms.load(Ordering::SeqCst);
        Duration::from_millis(self.millis().saturating_sub(since))
    }

    fn oldest_unsent(&self) -> Option<Instant> {
        let unsent = self.unsent.lock().unwrap_or_else(|e| e.into_inner());
        unsent.values().min().copied()
    }

    /// Count a request until the returned guard (moved into its answer) is dropped.
    pub fn start_request(self: &Arc<Self>) -> RequestGuard {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        RequestGuard {
            info: self.clone(),
            n,
        }
    }
}

/// A request in flight on a connection: counted until its answer is sent or abandoned.
#[derive(Debug)]
pub struct RequestGuard {
    info: Arc<ConnInfo>,
    n: u64,
}

impl RequestGuard {
    /// The answer is ready: from now on the client has [`ConnLimits::send`] to take it.
    fn answered(&self) {
        let mut unsent = self.info.unsent.lock().unwrap_or_else(|e| e.into_inner());
        unsent.insert(self.n, Instant::now());
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let info = &self.info;
        info.unsent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.n);
        info.idle_since_ms.store(info.millis(), Ordering::SeqCst);
        info.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The open connections of one listener.
#[derive(Debug)]
pub struct Tracker {
    name: &'static str,
    limits: ConnLimits,
    state: AppState,
    inner: Mutex<Open>,
    /// Signalled whenever a connection ends (for draining at shutdown).
    ended: Notify,
}

#[derive(Debug, Default)]
struct Open {
    conns: HashMap<u64, Arc<ConnInfo>>,
    per_address: HashMap<IpAddr, usize>,
    next_id: u64,
}

impl Open {
    /// Close the idle connection of `peer` that has been idle the longest.
    fn evict_from(&mut self, peer: IpAddr) -> bool {
        let oldest = self
            .conns
            .values()
            .filter(|c| c.peer == peer && !c.busy())
            .max_by_key(|c| c.idle_for())
            .cloned();
        match oldest {
            Some(conn) => {
                self.remove(&conn);
                conn.evicted.store(true, Ordering::SeqCst);
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Close an idle connection of the address with the most connections (the next one
    /// down when all of that address's are busy).
    fn evict_from_busiest(&mut self) -> bool {
        let mut addresses: Vec<(IpAddr, usize)> =
            self.per_address.iter().map(|(a, n)| (*a, *n)).collect();
        addresses.sort_by_key(|a| std::cmp::Reverse(a.1));
        addresses
            .into_iter()
            .any(|(address, _)| self.evict_from(address))
    }

    fn remove(&mut self, conn: &ConnInfo) -> bool {
        if self.conns.remove(&conn.id).is_none() {
            return false;
        }
        if let Some(n) = self.per_address.get_mut(&conn.peer) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&conn.peer);
            }
        }
        true
    }
}

impl Tracker {
    /// `name` labels the metrics (`https`, `metrics`).
    pub fn new(name: &'static str, limits: ConnLimits, state: AppState) -> Arc<Tracker> {
        state.metrics().connections_open(name, 0);
        Arc::new(Tracker {
            name,
            limits,
            state,
            inner: Mutex::new(Open::default()),
            ended: Notify::new(),
        })
    }

    pub fn limits(&self) -> ConnLimits {
        self.limits
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open().conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn closed(&self, why: Closed) {
        self.state
            .metrics()
            .connection_closed(self.name, why.as_str());
    }

    /// Make room for a connection from `peer` and count it, or `None` (closed at once).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let mut open = self.open();
        let from_peer = open.per_address.get(&peer).copied().unwrap_or(0);
        let room = if from_peer >= self.limits.per_address {
            open.evict_from(peer)
        } else if open.conns.len() >= self.limits.max {
            open.evict_from_busiest()
        } else {
            true
        };
        if !room {
            drop(open);
            self.closed(Closed::Refused);
            return None;
        }
        let id = open.next_id;
        open.next_id += 1;
        let info = Arc::new(ConnInfo::new(id, peer));
        open.conns.insert(id, info.clone());
        *open.per_address.entry(peer).or_default() += 1;
        let count = open.conns.len();
        drop(open);
        self.state.metrics().connections_open(self.name, count);
        Some(Slot {
            tracker: self.clone(),
            info,
        })
    }

    /// Wait until every connection has ended.
    pub async fn drained(&self) {
        loop {
            let ended = self.ended.notified();
            if self.is_empty() {
                return;
            }
            ended.await;
        }
    }
}

/// A counted connection; dropping it ends the count.
#[derive(Debug)]
pub struct Slot {
    tracker: Arc<Tracker>,
    info: Arc<ConnInfo>,
}

impl Slot {
    pub fn info(&self) -> &Arc<ConnInfo> {
        &self.info
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.tracker.open();
        open.remove(&self.info);
        let count = open.conns.len();
        drop(open);
        if self.info.evicted.load(Ordering::SeqCst) {
            self.tracker.closed(Closed::Evicted);
        }
        self.tracker
            .state
            .metrics()
            .connections_open(self.tracker.name, count);
        self.tracker.ended.notify_waiters();
    }
}

/// A transport that can be taken apart into its TCP socket once the write side is shut.
pub trait IntoTcp: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn into_tcp(self) -> TcpStream;
}

impl IntoTcp for TcpStream {
    fn into_tcp(self) -> TcpStream {
        self
    }
}

impl IntoTcp for tokio_rustls::server::TlsStream<TcpStream> {
    fn into_tcp(self) -> TcpStream {
        self.into_inner().0
    }
}

/// An IO that hands itself back through a channel when dropped, so that the connection's
/// task gets the socket back from hyper for a lingering close.
pub struct Returning<T> {
    io: Option<T>,
    back: Option<oneshot::Sender<T>>,
}

impl<T> Returning<T> {
    pub fn new(io: T) -> (Returning<T>, oneshot::Receiver<T>) {
        let (back, returned) = oneshot::channel();
        (
            Returning {
                io: Some(io),
                back: Some(back),
            },
            returned,
        )
    }

    fn io(&mut self) -> io::Result<&mut T> {
        self.io
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<T> Drop for Returning<T> {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            // Nobody waiting (the task is gone): the socket just closes.
            let _ = back.send(io);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Returning<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(io) => Pin::new(io).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Returning<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.io() {
            Ok(io) => Pin::new(io).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.io() {
            Ok(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(io) => Pin::new(io).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.io() {
            Ok(io) => Pin::new(io).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// Shut the write side (after whatever hyper already sent) and read what the client still
/// sends until it closes, pauses for [`LINGER_IDLE`], or [`LINGER_TIME`] or
/// [`LINGER_BYTES`] run out. Returns the bytes thrown away.
pub async fn linger(mut io: impl IntoTcp) -> usize {
    // Sends TLS close_notify (once) and FIN; a client that reads nothing cannot stall it.
    let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, io.shutdown()).await;
    let mut tcp = io.into_tcp();
    let started = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let mut discarded = 0usize;
    loop {
        let wait = LINGER_TIME
            .saturating_sub(started.elapsed())
            .min(LINGER_IDLE);
        if wait.is_zero() || discarded >= LINGER_BYTES {
            break;
        }
        match tokio::time::timeout(wait, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => break,
        }
    }
    discarded
}

/// How a listener turns an accepted socket into the transport HTTP is spoken on.
pub trait Handshake: Clone + Send + Sync + 'static {
    type Io: IntoTcp;
    fn handshake(&self, tcp: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// Plain HTTP (the metrics listener).
#[derive(Debug, Clone, Copy)]
pub struct Plain;

impl Handshake for Plain {
    type Io = TcpStream;
    async fn handshake(&self, tcp: TcpStream) -> io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// Accept connections and serve `app` on them within `tracker`'s caps and timers until
/// `shutdown` turns true; then stop accepting, ask every connection to finish (HTTP/2:
/// GOAWAY; HTTP/1: close once the answer in flight is sent) and wait at most `grace`.
/// Returns whether every connection ended within the grace period.
pub async fn serve<H: Handshake>(
    listener: TcpListener,
    tracker: Arc<Tracker>,
    handshake: H,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> bool {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = super::stopped(&mut shutdown) => break,
        };
        let Some(slot) = tracker.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: every connection is busy");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_connection(
            tcp,
            slot,
            handshake.clone(),
            app.clone(),
            shutdown.clone(),
        ));
    }
    drop(listener);
    tokio::time::timeout(grace, tracker.drained()).await.is_ok()
}

/// One connection from accept to close, with its timers (see the module's doc).
async fn serve_connection<H: Handshake>(
    tcp: TcpStream,
    slot: Slot,
    handshake: H,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let info = slot.info().clone();
    let tracker = slot.tracker.clone();
    let limits = tracker.limits;
    let peer = info.peer;
    let first_request_by = tokio::time::Instant::now() + limits.first_request;
    let io = tokio::select! {
        done = tokio::time::timeout_at(first_request_by, handshake.handshake(tcp)) => match done {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "no request in time (handshake unfinished)");
                tracker.closed(Closed::NoRequest);
                return;
            }
        },
        // Evicted to make room, or shutting down: a client still shaking hands gets no
        // request in.
        _ = info.close.notified() => return,
        _ = super::stopped(&mut stop) => return,
    };
    let (io, returned) = Returning::new(io);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle)
        .max_buf_size(HTTP1_BUFFER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.streams)
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
        .max_send_buf_size(HTTP2_STREAM_WINDOW as usize)
        .keep_alive_interval(HTTP2_PING_INTERVAL)
        .keep_alive_timeout(HTTP2_PING_TIMEOUT);
    let service = TowerToHyperService::new(Tracked {
        inner: app,
        info: info.clone(),
    });
    // Boxed, not pinned on the stack: dropping it must hand the transport back (Returning).
    let mut conn = Box::pin(builder.serve_connection(TokioIo::new(io), service));
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the connection was asked to close (GOAWAY), if it was.
    let mut closing: Option<Instant> = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = info.close.notified() => {
                tracing::debug!(%peer, "idle connection closed to make room for a new one");
                break;
            }
            _ = super::stopped(&mut stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if info.requests.load(Ordering::SeqCst) == 0
                    && tokio::time::Instant::now() >= first_request_by
                {
                    tracing::debug!(%peer, "no request in time");
                    tracker.closed(Closed::NoRequest);
                    break;
                }
                if info.oldest_unsent().is_some_and(|since| now - since >= limits.send) {
                    tracing::debug!(%peer, "answer not taken in time");
                    tracker.closed(Closed::SendTimeout);
                    break;
                }
                if stopping {
                    continue;
                }
                match closing {
                    None if info.idle_for() >= limits.idle => {
                        tracker.closed(Closed::Idle);
                        closing = Some(now);
                        conn.as_mut().graceful_shutdown();
                    }
                    Some(at) if !info.busy() && now - at >= CLOSE_GRACE => break,
                    _ => {}
                }
            }
        }
    }
    drop(conn);
    if info.lingers()
        && let Ok(io) = returned.await
    {
        let discarded = linger(io).await;
        tracing::debug!(%peer, discarded, "lingering close");
    }
    drop(slot);
}

/// The router with the connection's [`ConnInfo`] in every request, and the request counted
/// until its answer is sent.
#[derive(Clone)]
struct Tracked {
    inner: Router,
    info: Arc<ConnInfo>,
}

impl tower::Service<Request<Incoming>> for Tracked {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        let guard = self.info.start_request();
        request.extensions_mut().insert(self.info.clone());
        let answer = tower::Service::call(&mut self.inner.clone(), request);
        Box::pin(async move {
            let response = answer.await?;
            guard.answered();
            Ok(response.map(|body| Body::new(Held::new(body, guard))))
        })
    }
}

/// A response body that keeps `T` alive until the body is sent (or dropped).
pub struct Held<B, T> {
    body: B,
    _held: T,
}

impl<B, T> Held<B, T> {
    pub fn new(body: B, held: T) -> Held<B, T> {
        Held { body, _held: held }
    }
}

impl<B: HttpBody + Unpin, T: Unpin> HttpBody for Held<B, T> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lingering_close_reads_until_the_client_closes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            // Write everything first (more than the socket buffers hold), then read.
            tcp.write_all(&vec![b'x'; 4 * 1024 * 1024]).await.unwrap();
            let mut answer = Vec::new();
            tcp.read_to_end(&mut answer).await.unwrap();
            answer
        });
        let (mut server, _) = listener.accept().await.unwrap();
        server.write_all(b"413").await.unwrap();
        let (io, back) = Returning::new(server);
        drop(io);
        let discarded = linger(back.await.unwrap()).await;
        assert_eq!(client.await.unwrap(), b"413");
        assert_eq!(discarded, 4 * 1024 * 1024);
    }
}
