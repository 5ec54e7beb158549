//! Connections: how many, for how long, and how they end.
//!
//! Every listener has a [`Tracker`] with [`ConnLimits`]: at most `max` connections, at most
//! `per_address` from one client address. A new connection over a cap takes the place of an
//! *idle* connection (no request in flight: still shaking hands, waiting for its first
//! request, kept alive between requests, lingering), judged connection by connection, not
//! by how many its address holds:
//! - from an address at its own cap: that address's own connection (chosen as below), so
//!   that a neighbour sharing the API server's (or the kubelet's) address cannot keep it
//!   out with idle connections, and only churns its own;
//! - on a full listener: first a connection that has sent no request for a second, then
//!   one of an address holding more than its fair share of the listener (the cap over the
//!   number of addresses), then one kept alive between requests, and a connection younger
//!   than a second that is still shaking hands last; within each, the one idle longest. A
//!   client with a request in flight is never closed, a client that opens a connection per
//!   review gets one while any is idle, many addresses holding one idle connection each
//!   lose them in turn, and a neighbour flooding the listener from a few addresses churns
//!   its own.
//!
//! Only when every connection in reach is busy is the new one closed at once, which costs
//! an accept and a close. The memory of the connections is bounded by the caps, whatever the
//! number of connections attempted (the rest wait in the kernel's accept queue or replace
//! idle ones).
//!
//! Each connection has one timer task (`serve_connection`): its first request must arrive
//! within `first_request` of the accept (the TLS handshake included), a connection with
//! nothing in flight for `idle` is closed (HTTP/2: GOAWAY first), and an answer the client
//! does not take within `send` (a client that stops reading, an HTTP/2 window left at 0)
//! closes the connection and frees what the answer holds.
//!
//! Every connection has its own [`ConnInfo`], handed to the handlers as a request extension,
//! and, when a request was answered before its body was read (a 413), a lingering close
//! (io.rs).

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
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use super::AppState;
use super::io::{Held, IntoTcp, Returning, linger};

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

/// The metrics listener: the kubelet's probes (a connection each, from the node's address,
/// which host-network pods share) and a Prometheus or two. Small and quick to let go: a
/// probe or a scrape sends its request at once, so idle connections are closed after 2 s
/// before a first request and 5 s between requests, and a probe replaces an idle one.
pub const METRICS_LIMITS: ConnLimits = ConnLimits {
    max: 16,
    per_address: 8,
    first_request: Duration::from_secs(2),
    idle: Duration::from_secs(5),
    send: Duration::from_secs(5),
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
/// A new connection this young that has sent no request yet is given up for a newcomer only
/// when nothing else can be: a TLS handshake and a first request take milliseconds, and a
/// neighbour re-opening connections must not close a client's before it could send one.
const HANDSHAKE_GRACE: Duration = Duration::from_secs(1);
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
    /// The idle connection a newcomer from `newcomer` replaces on a listener of `max`
    /// connections, among those of `among` (all when `None`). Busy connections are never
    /// chosen; of the idle ones, by class, then the one idle longest:
    /// 1. one that has sent no request for [`HANDSHAKE_GRACE`];
    /// 2. one of an address holding more than its fair share (`max` over the number of
    ///    addresses, the newcomer's included): a neighbour that floods the listener gives
    ///    up its own before a client holding less loses its kept connection;
    /// 3. one kept alive between requests;
    /// 4. one within its grace (a client shaking hands or sending its first request, as
    ///    every new connection of a well-behaved client is) of an address within its share.
    fn victim(&self, newcomer: IpAddr, among: Option<IpAddr>, max: usize) -> Option<Arc<ConnInfo>> {
        let addresses =
            self.per_address.len() + usize::from(!self.per_address.contains_key(&newcomer));
        let over_share =
            |peer: &IpAddr| self.per_address.get(peer).copied().unwrap_or(0) * addresses > max;
        self.conns
            .values()
            .filter(|c| !c.busy() && among.is_none_or(|p| c.peer == p))
            .max_by_key(|c| {
                let fresh = c.requests.load(Ordering::SeqCst) == 0;
                let idle = c.idle_for();
                let class = if fresh && idle >= HANDSHAKE_GRACE {
                    3
                } else if over_share(&c.peer) {
                    2
                } else if !fresh {
                    1
                } else {
                    0
                };
                (class, idle, std::cmp::Reverse(c.id))
            })
            .cloned()
    }

    /// Close the [`Open::victim`] for a newcomer from `newcomer`; whether there was one.
    fn evict(&mut self, newcomer: IpAddr, among: Option<IpAddr>, max: usize) -> bool {
        match self.victim(newcomer, among, max) {
            Some(conn) => {
                self.remove(&conn);
                conn.evicted.store(true, Ordering::SeqCst);
                conn.close.notify_one();
                true
            }
            None => false,
        }
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
            // An address at its cap gives up one of its own.
            open.evict(peer, Some(peer), self.limits.max)
        } else if open.conns.len() >= self.limits.max {
            open.evict(peer, None, self.limits.max)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(max: usize, per_address: usize) -> Arc<Tracker> {
        let engine = crate::Engine::new(crate::Config::default()).unwrap();
        let state = AppState::new(crate::admission::Admission::new(engine, 1));
        let limits = ConnLimits {
            max,
            per_address,
            ..HTTPS_LIMITS
        };
        Tracker::new("https", limits, state)
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn evicted(slot: &Slot) -> bool {
        slot.info().evicted.load(Ordering::SeqCst)
    }

    /// A connection that has had a request and is idle again.
    fn used(slot: &Slot) {
        drop(slot.info().start_request());
    }

    #[test]
    fn an_address_at_its_cap_gives_up_its_own_idle_connection() {
        let tracker = tracker(8, 3);
        let a: Vec<Slot> = (0..3).map(|_| tracker.admit(ip(1)).unwrap()).collect();
        let b = tracker.admit(ip(2)).unwrap();
        used(&a[1]);
        // Within their grace, connections that sent no request go last: the used one first.
        let a3 = tracker.admit(ip(1)).unwrap();
        assert!(evicted(&a[1]) && !evicted(&a[0]) && !evicted(&a[2]) && !evicted(&b));
        // Past it, they go first, the oldest first.
        std::thread::sleep(HANDSHAKE_GRACE + Duration::from_millis(100));
        used(&a3);
        let a4 = tracker.admit(ip(1)).unwrap();
        assert!(evicted(&a[0]) && !evicted(&a[2]) && !evicted(&a3));
        // Busy ones stay; with every one of the address busy, the newcomer is refused.
        let _busy = [&a[2], &a3, &a4].map(|s| s.info().start_request());
        assert!(tracker.admit(ip(1)).is_none());
        assert!(
            tracker.admit(ip(3)).is_some(),
            "other addresses are not concerned"
        );
        drop(b);
    }

    #[test]
    fn a_full_listener_gives_up_the_longest_idle_and_spares_new_clients() {
        let tracker = tracker(4, 4);
        // Four addresses holding one used, idle connection each (the 160 addresses).
        let held: Vec<Slot> = (1..=4).map(|n| tracker.admit(ip(n)).unwrap()).collect();
        for slot in &held {
            used(slot);
            std::thread::sleep(Duration::from_millis(5));
        }
        // A client opening a connection per review gets one: the longest idle goes.
        let first = tracker.admit(ip(9)).unwrap();
        assert!(evicted(&held[0]) && !evicted(&held[1]));
        assert_eq!(tracker.len(), 4);
        // The next newcomer does not close it while it shakes hands: the next longest idle.
        let second = tracker.admit(ip(10)).unwrap();
        assert!(!evicted(&first) && evicted(&held[1]));
        // A connection that sent nothing for its grace goes before any used one.
        std::thread::sleep(HANDSHAKE_GRACE + Duration::from_millis(100));
        used(&held[2]);
        used(&held[3]);
        let third = tracker.admit(ip(11)).unwrap();
        assert!(evicted(&first) && !evicted(&second) && !evicted(&held[2]));
        // Never busy ones.
        let _busy: Vec<RequestGuard> = [&held[2], &held[3], &second, &third]
            .iter()
            .map(|s| s.info().start_request())
            .collect();
        assert!(tracker.admit(ip(12)).is_none());
        drop((held, first, second, third));
        assert_eq!(tracker.len(), 0);
    }

    #[test]
    fn a_flood_gives_up_its_own_before_a_client_within_its_share() {
        let tracker = tracker(6, 6);
        let well_behaved = tracker.admit(ip(1)).unwrap();
        let attacker: Vec<Slot> = (0..5).map(|_| tracker.admit(ip(2)).unwrap()).collect();
        // The well-behaved client's connection is the oldest fresh one, but its address
        // holds one: the attacker's go first, while it holds more.
        let newcomers: Vec<Slot> = (0..4)
            .map(|n| {
                let newcomer = tracker.admit(ip(3 + n)).unwrap();
                assert!(evicted(&attacker[n as usize]), "{n}");
                newcomer
            })
            .collect();
        assert!(!evicted(&well_behaved));
        assert_eq!(tracker.len(), 6);
        drop(newcomers);
    }
}
