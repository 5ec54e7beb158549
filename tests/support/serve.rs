//! `promfed serve` as a process: started on ephemeral loopback ports with a certificate for
//! [`NAME`], its log collected, its metrics port read, signalled, killed when dropped.
//!
//! ```ignore
//! let files = Files::new(promfed::config::EXAMPLE);   // config, certificate, key
//! let server = Server::with(&files);
//! let answer = files.client().post_json(server.https, &review)?;
//! ```
//!
//! The TLS client is `support::tls`, steady request streams `support::load`.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use promfed::server::dev::Pki;
use serde_json::Value;

use super::tls::{Client, parse_response};
use super::{HANG_GUARD, promfed_bin, temp_files};

/// The in-cluster name the certificates are made for and the client checks.
pub const NAME: &str = "promfed.promfed-system.svc";

/// A config, a certificate for [`NAME`] and its key in a temp dir: what `serve` needs.
pub struct Files {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
}

impl Files {
    pub fn new(config: &str) -> Files {
        let pki = Pki::generate(&[NAME]).expect("test certificate");
        let dir = temp_files(&[
            ("promfed.yaml", config),
            ("tls.crt", &pki.cert_pem),
            ("tls.key", &pki.key_pem),
        ]);
        Files { dir, pki }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `--config … --tls-cert-file … --tls-key-file …`
    pub fn args(&self) -> Vec<OsString> {
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

    pub fn client(&self) -> Client {
        Client::new(&[&self.pki.ca_pem])
    }
}

/// A running `promfed serve`; killed when dropped.
pub struct Server {
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
pub fn strip_ansi(line: &str) -> String {
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
    pub fn start(args: &[impl AsRef<OsStr>], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(promfed_bin());
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
        let deadline = Instant::now() + HANG_GUARD;
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
                "promfed serve did not start within {HANG_GUARD:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start with `files` and the default log settings.
    pub fn with(files: &Files) -> Server {
        Server::start(&files.args(), &[])
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line written to stderr so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Every line written to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// GET a path of the plain-HTTP listener: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let (status, body) = plain_http(
            self.metrics,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .expect("metrics listener answers");
        (status, String::from_utf8(body).unwrap())
    }

    /// Poll `/readyz` until it answers 200; fails the test after [`HANG_GUARD`].
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let ready = plain_http(
                self.metrics,
                "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            if matches!(ready, Ok((200, _))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "promfed serve not ready within {HANG_GUARD:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of one sample line of /metrics, e.g. `promfed_config_generation`.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} not in\n{text}"))
    }

    /// Resident memory now and at its peak, from /proc/PID/status.
    pub fn memory(&self) -> Memory {
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

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
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
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Memory {
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

/// One plain-HTTP request (`raw` is the whole request): (status, body).
pub fn plain_http(addr: SocketAddr, raw: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    tcp.write_all(raw.as_bytes())?;
    let mut response = Vec::new();
    tcp.read_to_end(&mut response)?;
    parse_response(&response)
        .map(|(status, body, _)| (status, body))
        .ok_or_else(|| std::io::Error::other("incomplete HTTP response"))
}
