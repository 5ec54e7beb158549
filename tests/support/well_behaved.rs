//! Well-behaved clients, as the API server talks to promfed, run while an attack goes on: a
//! kept HTTP/1.1 connection, a new TLS connection per review, one HTTP/2 connection; each
//! review timed and judged, and every one must be answered correctly within the webhook's
//! timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use serde_json::Value;

use super::attack::{Identity, TIMEOUT_SECONDS, pace, tls_config_as};
use super::examples::tkg_configmap;
use super::load::distinct_configmap;
use super::review::review;
use super::serve::{Files, NAME};
use super::tls::Client;

// ---------------------------------------------------------------------------------------
// Well-behaved clients

/// How a well-behaved client talks to promfed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One HTTP/1.1 connection, kept alive (re-opened when the server closes it).
    KeepAlive,
    /// A new TLS connection for every review.
    NewConnection,
    /// One HTTP/2 connection, as the API server does (re-opened after a GOAWAY).
    Http2,
}

/// Reviews sent at a low, steady rate until stopped; every 5th a ConfigMap never seen before
/// (so the engine runs), the rest the TKG ConfigMap (answered from the cache).
pub struct WellBehaved {
    stop: Arc<AtomicBool>,
    threads: Vec<(Transport, std::thread::JoinHandle<Results>)>,
}

/// Each review's time to a correct answer, or what went wrong.
pub type Results = Vec<Result<Duration, String>>;

/// Every 5th review is a ConfigMap never seen before.
pub const MISS_EVERY: usize = 5;

/// The body of review `i` of client `t` (distinct ConfigMaps never repeat within a run).
pub fn well_behaved_body(t: usize, i: usize) -> Vec<u8> {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    if i % MISS_EVERY == MISS_EVERY - 1 {
        let n = RUN.fetch_add(1, Ordering::Relaxed)
            + 10_000 * t
            + 1_000_000 * std::process::id() as usize;
        serde_json::to_vec(&review(
            &format!("miss-{n}"),
            "UPDATE",
            "ConfigMap",
            &distinct_configmap(n),
        ))
        .unwrap()
    } else {
        serde_json::to_vec(&review(
            "well-behaved",
            "UPDATE",
            "ConfigMap",
            &tkg_configmap(),
        ))
        .unwrap()
    }
}

/// Whether an answer is what the API server wants: 200, allowed, a patch.
pub fn judge(status: u16, body: &[u8]) -> Result<(), String> {
    if status != 200 {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(body)));
    }
    let answer: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let response = &answer["response"];
    if response["allowed"] != true || response.get("patch").is_none() {
        return Err(format!("not a patch: {response}"));
    }
    Ok(())
}

impl WellBehaved {
    /// One client per transport, each sending a review every `every`.
    /// Well-behaved clients of every transport the API server uses: a new TLS connection per
    /// review, a kept HTTP/1.1 connection and one HTTP/2 connection, at the usual pace.
    pub fn every_transport(files: &Files, https: SocketAddr) -> WellBehaved {
        WellBehaved::start(
            files,
            https,
            &[
                Transport::NewConnection,
                Transport::KeepAlive,
                Transport::Http2,
            ],
            pace(),
        )
    }

    pub fn start(
        files: &Files,
        addr: SocketAddr,
        transports: &[Transport],
        every: Duration,
    ) -> WellBehaved {
        WellBehaved::start_as(files, addr, transports, every, None)
    }

    /// [`WellBehaved::start`], the clients presenting `identity`.
    pub fn start_as(
        files: &Files,
        addr: SocketAddr,
        transports: &[Transport],
        every: Duration,
        identity: Option<Identity>,
    ) -> WellBehaved {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = transports
            .iter()
            .enumerate()
            .map(|(t, &transport)| {
                let stop = stop.clone();
                let ca = files.pki.ca_pem.clone();
                let h1 = Client::from_config(tls_config_as(&ca, &[b"http/1.1"], identity.as_ref()));
                let h2 = tls_config_as(&ca, &[b"h2"], identity.as_ref());
                let thread = std::thread::spawn(move || match transport {
                    Transport::Http2 => h2_client(h2, addr, t, every, &stop),
                    _ => h1_client(&h1, addr, transport, t, every, &stop),
                });
                (transport, thread)
            })
            .collect();
        WellBehaved { stop, threads }
    }

    /// Stop and check: every review answered correctly within [`TIMEOUT_SECONDS`]. Returns
    /// a summary line.
    pub fn finish(self, what: &str) -> String {
        self.stop.store(true, Ordering::SeqCst);
        let mut failures = Vec::new();
        let mut summary = Vec::new();
        for (transport, thread) in self.threads {
            let results = thread.join().unwrap();
            let answered = results.iter().filter(|r| r.is_ok()).count();
            let slowest = results
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .max()
                .copied()
                .unwrap_or_default();
            summary.push(format!(
                "{transport:?} {answered}/{} (slowest {:.2} s)",
                results.len(),
                slowest.as_secs_f64()
            ));
            assert!(!results.is_empty(), "{what}: {transport:?} sent nothing");
            for (i, result) in results.iter().enumerate() {
                match result {
                    Err(why) => failures.push(format!("{transport:?} #{i}: {why}")),
                    Ok(took) if *took > TIMEOUT_SECONDS => {
                        failures.push(format!("{transport:?} #{i}: answered after {took:?}"))
                    }
                    Ok(_) => {}
                }
            }
        }
        let summary = summary.join(", ");
        assert!(
            failures.is_empty(),
            "{what}: {} reviews not answered correctly within {TIMEOUT_SECONDS:?} ({summary}):\n{}",
            failures.len(),
            failures[..failures.len().min(10)].join("\n")
        );
        summary
    }
}

pub fn h1_client(
    client: &Client,
    addr: SocketAddr,
    transport: Transport,
    t: usize,
    every: Duration,
    stop: &AtomicBool,
) -> Vec<Result<Duration, String>> {
    let mut results = Vec::new();
    let mut kept = None;
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let body = well_behaved_body(t, i);
        i += 1;
        let started = Instant::now();
        let result = match transport {
            Transport::NewConnection => client.post(addr, &body),
            _ => {
                // A kept connection the server closed while idle is re-opened, as any
                // HTTP client does; a request that fails on it counts.
                let mut conn = match kept.take() {
                    Some(conn) => conn,
                    None => match client.connect(addr) {
                        Ok(conn) => conn,
                        Err(e) => {
                            results.push(Err(format!("connect: {e}")));
                            continue;
                        }
                    },
                };
                let answer = conn.request(&body, false);
                if answer.is_ok() {
                    kept = Some(conn);
                }
                answer
            }
        };
        results.push(
            result
                .map_err(|e| e.to_string())
                .and_then(|a| judge(a.status, &a.body))
                .map(|()| started.elapsed()),
        );
        let left = every.saturating_sub(started.elapsed());
        std::thread::sleep(left);
    }
    results
}

pub type H2Sender = h2::client::SendRequest<axum::body::Bytes>;

pub async fn h2_connect(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
) -> Result<H2Sender, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    h2_handshake(config, tcp).await
}

/// TLS (verifying [`NAME`]) and the HTTP/2 handshake on a connected `tcp`; the connection is
/// driven by a task of its own.
pub async fn h2_handshake(
    config: Arc<rustls::ClientConfig>,
    tcp: tokio::net::TcpStream,
) -> Result<H2Sender, String> {
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(NAME).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, connection) = h2::client::handshake(tls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// POST `body` on an HTTP/2 connection: (status, answer).
pub async fn h2_post(sender: &mut H2Sender, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let request = axum::http::Request::post(format!("https://{NAME}/mutate"))
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(())
        .unwrap();
    let (answer, mut send) = sender
        .send_request(request, body.is_empty())
        .map_err(|e| e.to_string())?;
    h2_send(&mut send, body).await?;
    let answer = answer.await.map_err(|e| e.to_string())?;
    let status = answer.status().as_u16();
    let mut stream = answer.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = stream.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = stream.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    Ok((status, out))
}

/// Send `body` on a stream as the flow-control window allows, ending the stream.
pub async fn h2_send(
    send: &mut h2::SendStream<axum::body::Bytes>,
    body: &[u8],
) -> Result<(), String> {
    let mut rest = axum::body::Bytes::copy_from_slice(body);
    while !rest.is_empty() {
        send.reserve_capacity(rest.len());
        let granted = std::future::poll_fn(|cx| send.poll_capacity(cx))
            .await
            .ok_or("stream closed")?
            .map_err(|e| e.to_string())?;
        let piece = rest.split_to(granted.min(rest.len()));
        send.send_data(piece, rest.is_empty())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub fn h2_client(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    t: usize,
    every: Duration,
    stop: &AtomicBool,
) -> Vec<Result<Duration, String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut results = Vec::new();
        let mut sender: Option<H2Sender> = None;
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            let body = well_behaved_body(t, i);
            i += 1;
            let started = Instant::now();
            // A connection the server asked to close (GOAWAY) is replaced, as Go's client does.
            let ready = match sender.take() {
                Some(s) => s.ready().await.ok(),
                None => None,
            };
            let mut s = match ready {
                Some(s) => s,
                None => match h2_connect(config.clone(), addr).await {
                    Ok(s) => s,
                    Err(e) => {
                        results.push(Err(format!("connect: {e}")));
                        continue;
                    }
                },
            };
            let result =
                match tokio::time::timeout(TIMEOUT_SECONDS * 4, h2_post(&mut s, &body)).await {
                    Ok(Ok((status, answer))) => judge(status, &answer).map(|()| started.elapsed()),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err("no answer".into()),
                };
            if result.is_ok() {
                sender = Some(s);
            }
            results.push(result);
            tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
        }
        results
    })
}
