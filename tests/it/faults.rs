//! Faults under load, against the real `promfed serve` over TLS: certificate rotation through
//! the `..data` symlink swap, config reloads (a broken one keeps the last good config), SIGTERM
//! with two instances behind a retrying client, and a short soak (the long one is
//! `scripts/soak.sh`). Every test drives a steady, concurrent request stream and counts failed
//! requests, which must be zero.
//!
//! The harness here (server process, verifying rustls client with keep-alive, steady load,
//! mounted files) is shared with `hostile.rs` and `security.rs`.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use promfed::server::dev::Pki;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

use crate::support::{self, Mount};
use crate::webhook::{
    applied, decoded_patch, engine, example_config, rendered, review, tkg_configmap,
};

/// The in-cluster name the certificates are made for and the client checks.
pub(crate) const NAME: &str = "promfed.promfed-system.svc";

// ---------------------------------------------------------------------------------------
// The server process

/// A config, a certificate for [`NAME`] and its key in a temp dir: what `serve` needs.
pub(crate) struct Files {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
}

impl Files {
    pub(crate) fn new(config: &str) -> Files {
        let pki = Pki::generate(&[NAME]).expect("test certificate");
        let dir = support::temp_files(&[
            ("promfed.yaml", config),
            ("tls.crt", &pki.cert_pem),
            ("tls.key", &pki.key_pem),
        ]);
        Files { dir, pki }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `--config … --tls-cert-file … --tls-key-file …`
    pub(crate) fn args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        for (flag, file) in [
            ("--config", "promfed.yaml"),
            ("--tls-cert-file", "tls.crt"),
            ("--tls-key-file", "tls.key"),
        ] {
            args.push(flag.into());
            args.push(self.path(file).into());
        }
        args
    }

    pub(crate) fn client(&self) -> Client {
        Client::new(&[&self.pki.ca_pem])
    }
}

/// A running `promfed serve`; killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub https: SocketAddr,
    pub metrics: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// A log line without terminal colour codes.
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The addresses of the "listening" line, in either log format.
fn listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if let Ok(log) = serde_json::from_str::<Value>(line) {
        if log["message"] != "listening" {
            return None;
        }
        let addr = |f: &str| log[f].as_str()?.parse::<SocketAddr>().ok();
        return Some((addr("https_addr")?, addr("metrics_addr")?));
    }
    let line = strip_ansi(line);
    if !line.contains("listening") {
        return None;
    }
    let addr = |f: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(f)?.strip_prefix('=')?.parse().ok())
    };
    Some((addr("https_addr")?, addr("metrics_addr")?))
}

impl Server {
    /// `promfed serve ARGS` on ephemeral loopback ports with a 100 ms reload interval and
    /// `RUST_LOG=info` unless `env` says otherwise; returns once it logs "listening".
    pub(crate) fn start(args: &[OsString], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(support::promfed_bin());
        command
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--reload-interval-ms", "100"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("starting promfed serve");
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = collect(child.stdout.take().unwrap());
        let deadline = Instant::now() + support::HANG_GUARD;
        loop {
            let found = stderr.lock().unwrap().iter().find_map(|l| listening(l));
            if let Some((https, metrics)) = found {
                return Server {
                    child,
                    https,
                    metrics,
                    stderr,
                    stdout,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "promfed serve exited with {status} before listening:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "promfed serve did not start in 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start with `files` and the default log settings.
    pub(crate) fn with(files: &Files) -> Server {
        Server::start(&files.args(), &[])
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line written to stderr so far.
    pub(crate) fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Every line written to stdout so far.
    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// GET a path of the plain-HTTP listener: (status, body).
    pub(crate) fn get(&self, path: &str) -> (u16, String) {
        let (status, body) = plain_http(
            self.metrics,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .expect("metrics listener answers");
        (status, String::from_utf8(body).unwrap())
    }

    /// The value of one sample line of /metrics, e.g. `promfed_config_generation`.
    pub(crate) fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} not in\n{text}"))
    }

    /// Resident memory now and at its peak, from /proc/PID/status.
    pub(crate) fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status");
        let kib = |field: &str| -> u64 {
            status
                .lines()
                .find_map(|l| {
                    l.strip_prefix(field)?
                        .trim()
                        .strip_suffix("kB")?
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap_or_else(|| panic!("{field} not in /proc/PID/status"))
        };
        Memory {
            rss_kib: kib("VmRSS:"),
            hwm_kib: kib("VmHWM:"),
        }
    }

    pub(crate) fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "promfed serve still running after {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of the server process, KiB.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Memory {
    pub(crate) fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub(crate) fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

/// One plain-HTTP request (`raw` is the whole request): (status, body).
pub(crate) fn plain_http(addr: SocketAddr, raw: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    tcp.write_all(raw.as_bytes())?;
    let mut response = Vec::new();
    tcp.read_to_end(&mut response)?;
    parse_response(&response)
        .map(|(status, body, _)| (status, body))
        .ok_or_else(|| std::io::Error::other("incomplete HTTP response"))
}

// ---------------------------------------------------------------------------------------
// A verifying TLS client (rustls, ring) with keep-alive

#[derive(Clone)]
pub(crate) struct Client {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// What one request got.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// The leaf certificate the server presented.
    pub leaf: CertificateDer<'static>,
}

impl Answer {
    /// The `response` of a 200 answer.
    pub(crate) fn response(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text());
        let review: Value = serde_json::from_slice(&self.body).expect("a 200 answer is JSON");
        review["response"].clone()
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Client {
    /// Trusts the CAs in `ca_pems`, expects [`NAME`], TLS 1.2 or 1.3, no session resumption
    /// (every connection shows the certificate a new client gets).
    pub(crate) fn new(ca_pems: &[&str]) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for pem in ca_pems {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
        }
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        Client {
            config: Arc::new(config),
            name: ServerName::try_from(NAME).unwrap(),
        }
    }

    /// A client with its own rustls config (client certificates, ALPN), expecting [`NAME`].
    pub(crate) fn from_config(config: Arc<rustls::ClientConfig>) -> Client {
        Client {
            config,
            name: ServerName::try_from(NAME).unwrap(),
        }
    }

    pub(crate) fn connect(&self, addr: SocketAddr) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(60)))?;
        tcp.set_nodelay(true)?;
        let tls = rustls::ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(std::io::Error::other)?;
        Ok(Conn {
            tls: rustls::StreamOwned::new(tls, tcp),
            buf: Vec::new(),
        })
    }

    /// POST `body` to /mutate on a connection of its own.
    pub(crate) fn post(&self, addr: SocketAddr, body: &[u8]) -> std::io::Result<Answer> {
        self.connect(addr)?.request(body, true)
    }

    pub(crate) fn post_json(&self, addr: SocketAddr, review: &Value) -> std::io::Result<Answer> {
        self.post(addr, &serde_json::to_vec(review).unwrap())
    }
}

/// A TLS connection that can carry several requests (HTTP/1.1 keep-alive).
pub(crate) struct Conn {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Send raw bytes.
    pub(crate) fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes)?;
        self.tls.flush()
    }

    /// POST `body` to /mutate and read the answer. The body goes in 64 KiB pieces; if the
    /// server stops reading (a 413 answered early), the answer is still read.
    pub(crate) fn request(&mut self, body: &[u8], close: bool) -> std::io::Result<Answer> {
        self.send(&request_head(body.len(), close))?;
        let mut write_error = None;
        for piece in body.chunks(64 * 1024) {
            if let Err(e) = self.send(piece) {
                write_error = Some(e);
                break;
            }
        }
        match self.answer() {
            Ok(answer) => Ok(answer),
            Err(e) => Err(write_error.unwrap_or(e)),
        }
    }

    /// Read one response.
    pub(crate) fn answer(&mut self) -> std::io::Result<Answer> {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut eof = false;
        loop {
            if let Some((status, body, used)) = parse_response_at_eof(&self.buf, eof) {
                self.buf.drain(..used);
                let leaf = self
                    .tls
                    .conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .expect("server certificate")
                    .clone()
                    .into_owned();
                return Ok(Answer { status, body, leaf });
            }
            if eof {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed after {} bytes of response",
                        self.buf.len()
                    ),
                ));
            }
            match self.read_some(&mut chunk) {
                Ok(0) => eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                // A peer that closes without close_notify.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => eof = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Read decrypted bytes without writing anything first. (`StreamOwned::read` flushes
    /// pending TLS writes before reading; after a server answered early and stopped reading,
    /// that write fails and the answer, already received, would be lost.)
    fn read_some(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut closed = false;
        loop {
            match self.tls.conn.reader().read(out) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && closed => return Ok(0),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.tls.conn.read_tls(&mut self.tls.sock)? == 0 {
                closed = true;
            }
            self.tls
                .conn
                .process_new_packets()
                .map_err(std::io::Error::other)?;
        }
    }
}

pub(crate) fn request_head(length: usize, close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "POST /mutate HTTP/1.1\r\nHost: {NAME}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nConnection: {connection}\r\n\r\n"
    )
    .into_bytes()
}

/// (status, body, bytes used) of the first complete response in `raw`; a response without
/// Content-Length ends at EOF.
fn parse_response_at_eof(raw: &[u8], eof: bool) -> Option<(u16, Vec<u8>, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    let length = match length {
        Some(length) => length,
        None if eof => raw.len() - end - 4,
        None => return None,
    };
    let body = raw.get(end + 4..end + 4 + length)?.to_vec();
    Some((status, body, end + 4 + length))
}

fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>, usize)> {
    parse_response_at_eof(raw, true)
}

// ---------------------------------------------------------------------------------------
// Files laid out like a mounted Secret or ConfigMap

// ---------------------------------------------------------------------------------------
// Steady load

/// How a load thread talks to the servers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// One connection per thread, reused; re-opened when the server closes it.
    KeepAlive,
    /// A new connection (full handshake) per request.
    NewConnection,
}

/// Judges an answer: `Err(why)` for a wrong one.
pub(crate) type Check = Box<dyn Fn(&Answer) -> Result<(), String> + Send + Sync>;

/// What the request stream sends and how each answer is judged.
pub(crate) struct Workload {
    /// Request body for thread `t`, request `i`.
    pub body: Box<dyn Fn(usize, usize) -> Vec<u8> + Send + Sync>,
    pub check: Check,
}

/// One thread's results.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub ok: usize,
    /// Requests that got no correct answer (after retries, if any).
    pub failed: Vec<String>,
    /// Attempts that failed and were retried on the next server.
    pub retried: usize,
    pub latencies: Vec<Duration>,
    /// (when it was sent, leaf certificate) of every answered request.
    pub leaves: Vec<(Instant, CertificateDer<'static>)>,
}

/// Requests at a fixed rate from a few threads until stopped.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Tally>>,
}

/// The outcome of a load run.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub ok: usize,
    pub failed: Vec<String>,
    pub retried: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub threads: Vec<Tally>,
}

impl Load {
    /// `threads` threads, each sending `rate` requests per second (no catch-up bursts) to
    /// `servers[0]`; with `retry`, a request whose attempt fails (connection refused, closed,
    /// reset) goes to the next server, up to 4 attempts.
    pub(crate) fn start(
        client: &Client,
        servers: &[SocketAddr],
        workload: Arc<Workload>,
        threads: usize,
        rate: f64,
        mode: Mode,
        retry: bool,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let every = Duration::from_secs_f64(1.0 / rate);
        let threads = (0..threads)
            .map(|t| {
                let (client, stop) = (client.clone(), stop.clone());
                let servers = servers.to_vec();
                let workload = workload.clone();
                std::thread::spawn(move || {
                    let mut tally = Tally::default();
                    let mut conn: Option<Conn> = None;
                    let mut next = Instant::now();
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        next = next.max(Instant::now() - every) + every;
                        let body = (workload.body)(t, i);
                        i += 1;
                        let started = Instant::now();
                        let mut last_error = String::new();
                        let attempts = if retry { 4 } else { 1 };
                        let mut answered = None;
                        for attempt in 0..attempts {
                            let server = servers[attempt % servers.len()];
                            let result = match mode {
                                Mode::NewConnection => client.post(server, &body),
                                Mode::KeepAlive => {
                                    // A kept connection goes to servers[0]; retries use their
                                    // own connection.
                                    if attempt == 0 {
                                        let c = match conn.take() {
                                            Some(c) => Ok(c),
                                            None => client.connect(server),
                                        };
                                        c.and_then(|mut c| {
                                            let r = c.request(&body, false);
                                            if r.is_ok() {
                                                conn = Some(c);
                                            }
                                            r
                                        })
                                    } else {
                                        client.post(server, &body)
                                    }
                                }
                            };
                            match result {
                                Ok(answer) => {
                                    answered = Some(answer);
                                    break;
                                }
                                Err(e) => {
                                    last_error = format!("{server}: {e}");
                                    if attempt + 1 < attempts {
                                        tally.retried += 1;
                                    }
                                }
                            }
                        }
                        match answered {
                            Some(answer) => {
                                tally.latencies.push(started.elapsed());
                                match (workload.check)(&answer) {
                                    Ok(()) => tally.ok += 1,
                                    Err(why) => tally.failed.push(format!("t{t} #{i}: {why}")),
                                }
                                tally.leaves.push((started, answer.leaf));
                            }
                            None => tally.failed.push(format!("t{t} #{i}: {last_error}")),
                        }
                    }
                    tally
                })
            })
            .collect();
        Load { stop, threads }
    }

    pub(crate) fn finish(self) -> Totals {
        self.stop.store(true, Ordering::SeqCst);
        let threads: Vec<Tally> = self
            .threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let mut latencies: Vec<Duration> = threads
            .iter()
            .flat_map(|t| t.latencies.iter().copied())
            .collect();
        latencies.sort();
        let at = |q: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        Totals {
            ok: threads.iter().map(|t| t.ok).sum(),
            failed: threads
                .iter()
                .flat_map(|t| t.failed.iter().cloned())
                .collect(),
            retried: threads.iter().map(|t| t.retried).sum(),
            p50: at(0.5),
            p99: at(0.99),
            max: latencies.last().copied().unwrap_or_default(),
            threads,
        }
    }
}

impl Totals {
    pub(crate) fn assert_no_failures(&self, what: &str) {
        assert!(
            self.failed.is_empty(),
            "{what}: {} of {} requests failed, first: {:?}",
            self.failed.len(),
            self.ok + self.failed.len(),
            &self.failed[..self.failed.len().min(5)]
        );
    }

    pub(crate) fn summary(&self) -> String {
        format!(
            "{} ok, {} failed, {} retried, latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.ok,
            self.failed.len(),
            self.retried,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.max.as_secs_f64() * 1e3
        )
    }
}

pub(crate) fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
    started.elapsed()
}

// ---------------------------------------------------------------------------------------
// Workloads

/// The TKG ConfigMap with one recording rule's label value changed by `n`: every `n` is a
/// ConfigMap never seen before, so the engine runs (a cache miss).
pub(crate) fn distinct_configmap(n: usize) -> Value {
    let mut object = tkg_configmap();
    let rules = object["data"]["recording_rules.yml"].as_str().unwrap();
    let extra = format!(
        "{rules}  - name: soak-{n}\n    rules:\n    - record: soak:up:sum\n      expr: sum(up{{soak=\"{n}\"}})\n"
    );
    // The TKG file is one `groups:` list (items indented by 2): a new group continues it.
    object["data"]["recording_rules.yml"] = json!(extra);
    object
}

/// Checks that an answer is a review response for a matched ConfigMap that carries a patch.
fn patched_answer(answer: &Answer) -> Result<(), String> {
    if answer.status != 200 {
        return Err(format!("HTTP {}: {}", answer.status, answer.text()));
    }
    let response: Value = serde_json::from_slice::<Value>(&answer.body)
        .map_err(|e| e.to_string())?["response"]
        .clone();
    if response["allowed"] != true || response.get("patch").is_none() {
        return Err(format!("not a patch: {response}"));
    }
    Ok(())
}

/// Every 8th request a new ConfigMap (the engine runs), the rest the TKG ConfigMap (the cache
/// answers); every answer must carry a patch.
pub(crate) fn mixed_workload(miss_every: usize) -> Arc<Workload> {
    let same =
        serde_json::to_vec(&review("same", "UPDATE", "ConfigMap", &tkg_configmap())).unwrap();
    let counter = AtomicUsize::new(0);
    Arc::new(Workload {
        body: Box::new(move |_, i| {
            if miss_every > 0 && i % miss_every == miss_every - 1 {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                serde_json::to_vec(&review(
                    &format!("miss-{n}"),
                    "UPDATE",
                    "ConfigMap",
                    &distinct_configmap(n + 1_000_000 * std::process::id() as usize),
                ))
                .unwrap()
            } else {
                same.clone()
            }
        }),
        check: Box::new(patched_answer),
    })
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn certificate_rotation_under_a_steady_stream_fails_no_request() {
    let certs: Vec<Pki> = (0..4).map(|_| Pki::generate(&[NAME]).unwrap()).collect();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("promfed.yaml");
    std::fs::write(&config, promfed::config::EXAMPLE).unwrap();
    let mut secret = Mount::new(
        &tmp.path().join("secret"),
        &[
            ("tls.crt", &certs[0].cert_pem),
            ("tls.key", &certs[0].key_pem),
        ],
    );
    let args: Vec<OsString> = vec![
        "--config".into(),
        config.into(),
        "--tls-cert-file".into(),
        secret.path("tls.crt").into(),
        "--tls-key-file".into(),
        secret.path("tls.key").into(),
    ];
    let server = Server::start(&args, &[]);
    let cas: Vec<&str> = certs.iter().map(|c| c.ca_pem.as_str()).collect();
    let client = Client::new(&cas);
    let workload = mixed_workload(16);

    // 2 threads on kept connections, 2 shaking hands for every request: 4 × 20 req/s.
    let kept = Load::start(
        &client,
        &[server.https],
        workload.clone(),
        2,
        20.0,
        Mode::KeepAlive,
        false,
    );
    let fresh = Load::start(
        &client,
        &[server.https],
        workload,
        2,
        20.0,
        Mode::NewConnection,
        false,
    );
    let probe =
        serde_json::to_vec(&review("probe", "DELETE", "ConfigMap", &tkg_configmap())).unwrap();
    let mut rotated_at = Vec::new();
    for (i, cert) in certs.iter().enumerate().skip(1) {
        std::thread::sleep(Duration::from_millis(700));
        secret.update(&[("tls.crt", &cert.cert_pem), ("tls.key", &cert.key_pem)]);
        let leaf = CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap();
        let took = wait_until(&format!("certificate {i}"), support::HANG_GUARD, || {
            client.post(server.https, &probe).unwrap().leaf == leaf
        });
        rotated_at.push((Instant::now(), leaf, took));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (kept, fresh) = (kept.finish(), fresh.finish());
    let shown_after: Vec<Duration> = rotated_at.iter().map(|r| r.2).collect();
    eprintln!(
        "certificate rotation: each shown after {shown_after:?}; kept {}; fresh {}",
        kept.summary(),
        fresh.summary()
    );
    kept.assert_no_failures("kept connections");
    fresh.assert_no_failures("new connections");
    // Both streams ran through the rotations (a count, not a rate: how many depends on the
    // machine).
    assert!(
        kept.ok > 0 && fresh.ok > 0,
        "no requests: {} {}",
        kept.ok,
        fresh.ok
    );

    // A new connection made after a rotation was seen never gets an older certificate.
    let order: Vec<CertificateDer> = certs
        .iter()
        .map(|c| CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap())
        .collect();
    let rank = |leaf: &CertificateDer| order.iter().position(|l| l == leaf).unwrap();
    for (seen_at, leaf, _) in &rotated_at {
        for thread in &fresh.threads {
            for (sent, got) in &thread.leaves {
                if sent > seen_at {
                    assert!(
                        rank(got) >= rank(leaf),
                        "a new connection got an old certificate"
                    );
                }
            }
        }
    }
    let last = order.last().unwrap();
    for thread in &fresh.threads {
        assert_eq!(
            &thread.leaves.last().unwrap().1,
            last,
            "new connections end on the last certificate"
        );
    }
    assert_eq!(
        server.metric("promfed_certificate_reloads_total{result=\"success\"}"),
        3.0
    );
    assert_eq!(
        server.metric("promfed_certificate_reloads_total{result=\"failure\"}"),
        0.0
    );
}

#[test]
fn config_reload_under_load_keeps_the_last_good_and_applies_a_good_one() {
    let config_a = example_config("");
    let config_b = config_a.replace("localClusterName: shared-tools", "localClusterName: hub-b");
    let files = Files::new("");
    let mut mount = Mount::new(&files.path("config"), &[("promfed.yaml", &config_a)]);
    let args: Vec<OsString> = vec![
        "--config".into(),
        mount.path("promfed.yaml").into(),
        "--tls-cert-file".into(),
        files.path("tls.crt").into(),
        "--tls-key-file".into(),
        files.path("tls.key").into(),
    ];
    let server = Server::start(&args, &[]);
    let client = files.client();
    let object = tkg_configmap();
    let want_a = rendered(&engine(&config_a), &object);
    let want_b = rendered(&engine(&config_b), &object);
    let body = serde_json::to_vec(&review("cfg", "UPDATE", "ConfigMap", &object)).unwrap();
    let patched = |answer: &Answer| applied(&object, &decoded_patch(&answer.response()).unwrap());
    let (a, b) = (want_a.clone(), want_b.clone());
    let workload = Arc::new(Workload {
        body: Box::new(move |_, _| body.clone()),
        check: Box::new(move |answer| {
            let got = applied(
                &tkg_configmap(),
                &decoded_patch(&answer.response()).unwrap(),
            );
            if got == a || got == b {
                Ok(())
            } else {
                Err("the patch is neither config's".into())
            }
        }),
    });
    let load = Load::start(
        &client,
        &[server.https],
        workload,
        3,
        25.0,
        Mode::KeepAlive,
        false,
    );
    let probe = serde_json::to_vec(&review("probe", "UPDATE", "ConfigMap", &object)).unwrap();

    // Two broken configs: not YAML, and a federation target without a cluster label.
    let unlabelled = config_a.replace("labels:  { cluster: random }", "labels:  { team: random }");
    assert_ne!(unlabelled, config_a);
    for (n, broken) in ["localClusterName: [unclosed\n", unlabelled.as_str()]
        .iter()
        .enumerate()
    {
        std::thread::sleep(Duration::from_millis(300));
        mount.update(&[("promfed.yaml", broken)]);
        wait_until("the failed reload", support::HANG_GUARD, || {
            server.metric("promfed_config_reloads_total{result=\"failure\"}") == (n + 1) as f64
        });
        assert_eq!(server.metric("promfed_config_generation"), 1.0);
        assert_eq!(patched(&client.post(server.https, &probe).unwrap()), want_a);
    }
    // The log line is read by another thread than the one serving the metric: wait for it.
    wait_until("the refusal's log line", support::HANG_GUARD, || {
        server.log().contains("does not have a label")
    });

    std::thread::sleep(Duration::from_millis(300));
    mount.update(&[("promfed.yaml", &config_b)]);
    let took = wait_until("the good config", support::HANG_GUARD, || {
        patched(&client.post(server.https, &probe).unwrap()) == want_b
    });
    std::thread::sleep(Duration::from_millis(300));
    let totals = load.finish();
    eprintln!(
        "config reload: good config in effect after {took:?}; {}",
        totals.summary()
    );
    totals.assert_no_failures("config reloads");
    assert_eq!(
        server.metric("promfed_config_reloads_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(server.metric("promfed_config_generation"), 2.0);
}

#[test]
fn sigterm_under_load_completes_in_flight_reviews_and_a_retrying_client_loses_none() {
    let files = Files::new(promfed::config::EXAMPLE);
    let mut first = Server::with(&files);
    let second = Server::with(&files);
    let client = files.client();
    let load = Load::start(
        &client,
        &[first.https, second.https],
        mixed_workload(4),
        2,
        25.0,
        Mode::KeepAlive,
        true,
    );
    let fresh = Load::start(
        &client,
        &[first.https, second.https],
        mixed_workload(4),
        2,
        15.0,
        Mode::NewConnection,
        true,
    );
    std::thread::sleep(Duration::from_millis(1500));

    // In flight when the signal comes: engine runs (never-seen ConfigMaps) and requests whose
    // body is only half sent.
    let in_flight: Vec<_> = (0..6)
        .map(|k| {
            let client = client.clone();
            let addr = first.https;
            std::thread::spawn(move || {
                let object = distinct_configmap(900_000 + k);
                let body = serde_json::to_vec(&review(
                    &format!("inflight-{k}"),
                    "UPDATE",
                    "ConfigMap",
                    &object,
                ))
                .unwrap();
                let mut conn = client.connect(addr).unwrap();
                conn.send(&request_head(body.len(), true)).unwrap();
                if k % 2 == 0 {
                    conn.send(&body[..body.len() / 2]).unwrap();
                    std::thread::sleep(Duration::from_millis(400));
                    conn.send(&body[body.len() / 2..]).unwrap();
                } else {
                    conn.send(&body).unwrap();
                }
                let answer = conn.answer().unwrap();
                let patch = decoded_patch(&answer.response()).expect("patched");
                assert_eq!(
                    applied(&object, &patch),
                    rendered(&engine(promfed::config::EXAMPLE), &object)
                );
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    first.sigterm();
    for thread in in_flight {
        thread
            .join()
            .expect("an in-flight review completes after SIGTERM");
    }
    let status = first.wait_exit(support::HANG_GUARD);
    assert!(status.success(), "exit status {status}\n{}", first.log());
    std::thread::sleep(Duration::from_millis(1000));
    let (load, fresh) = (load.finish(), fresh.finish());
    eprintln!(
        "SIGTERM: kept {}; fresh {}",
        load.summary(),
        fresh.summary()
    );
    load.assert_no_failures("kept connections");
    fresh.assert_no_failures("new connections");
    assert!(
        second.metric("promfed_reviews_total{outcome=\"mutated\"}") > 10.0,
        "the second instance took over"
    );
    assert!(first.log().contains("\"stopped\""), "{}", first.log());
}

#[test]
fn soak_at_a_steady_rate_has_no_errors_and_flat_memory() {
    let files = Files::new(promfed::config::EXAMPLE);
    let server = Server::with(&files);
    let client = files.client();

    // Fill the response cache (256 answers) first, so that what follows measures steady state.
    let warm = Load::start(
        &client,
        &[server.https],
        mixed_workload(1),
        2,
        1000.0,
        Mode::KeepAlive,
        false,
    );
    wait_until("the cache to fill", support::HANG_GUARD, || {
        server.metric("promfed_review_cache_total{result=\"miss\"}") >= 300.0
    });
    warm.finish().assert_no_failures("warm-up");

    let seconds = 20;
    let load = Load::start(
        &client,
        &[server.https],
        mixed_workload(10),
        4,
        25.0,
        Mode::KeepAlive,
        false,
    );
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(2));
        samples.push((started.elapsed().as_secs(), server.memory()));
    }
    let totals = load.finish();
    let table: Vec<String> = samples
        .iter()
        .map(|(s, m)| {
            format!(
                "{s:>3} s  RSS {:6.1} MiB  HWM {:6.1} MiB",
                m.rss_mib(),
                m.hwm_mib()
            )
        })
        .collect();
    eprintln!(
        "soak {seconds} s: {}\n{}",
        totals.summary(),
        table.join("\n")
    );
    totals.assert_no_failures("soak");
    // Only that answers kept coming (one a second is a hang guard, not a rate): how many the
    // server answers is scripts/soak.sh's to measure, against its reference.
    assert!(totals.ok >= seconds as usize, "{}", totals.summary());
    let first = samples[1].1.rss_mib();
    let last = samples.last().unwrap().1.rss_mib();
    assert!(
        last < first + 8.0,
        "RSS grew from {first:.1} to {last:.1} MiB"
    );
    let peak = samples.iter().map(|s| s.1.hwm_mib()).fold(0.0, f64::max);
    assert!(
        peak < 128.0,
        "peak RSS {peak:.1} MiB is over the Deployment's 128 MiB limit"
    );
}
