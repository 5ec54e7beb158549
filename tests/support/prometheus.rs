//! The Prometheus launcher: real Prometheus servers (Debian's 2.42 or a 3.x, see
//! `support::prometheus_release`) started by a test on a config it wrote, waited for, queried
//! through the HTTP API, stopped when dropped (their log's last lines printed if the test
//! fails).
//!
//! ```ignore
//! let release = support::require!(prometheus3_release);
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("prometheus.yml"), "global:\n  scrape_interval: 1s\n").unwrap();
//! let [addr] = support::free_ports::<1>();
//! let mut server = Prometheus::start(&release.server, "tools", dir.path(), addr, None);
//! server.wait_ready();
//! let up = server.api().query("up");                       // Vec<Sample>
//! support::wait_for("a target", support::HANG_GUARD, || { /* Ok(x) or Err(why) */ Ok(()) });
//! ```
//!
//! The server reads `DIR/prometheus.yml` and keeps its TSDB in `DIR/data` (a TSDB made
//! beforehand, e.g. by `promtool tsdb create-blocks-from`, is served as it is).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::HANG_GUARD;
use super::process::Process;

/// A Prometheus server process and its address.
pub struct Prometheus {
    process: Process,
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Start `binary` (a `PrometheusRelease::server`) on `dir/prometheus.yml` with its TSDB in
    /// `dir/data`, listening on `listen` (take one from `support::free_ports`), serving HTTPS or
    /// basic auth per `web_config` when given. Returns at once: call [`Prometheus::wait_ready`].
    pub fn start(
        binary: &Path,
        name: &str,
        dir: &Path,
        listen: SocketAddr,
        web_config: Option<&Path>,
    ) -> Prometheus {
        let mut command = Command::new(binary);
        command
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"));
        if let Some(web_config) = web_config {
            command.arg(format!("--web.config.file={}", web_config.display()));
        }
        Prometheus {
            process: Process::spawn(name, &mut command),
            addr: listen,
        }
    }

    /// Wait for the "ready" log line (also for a server behind TLS, which a plain `/-/ready`
    /// cannot reach); `Err` with the log's end when it exits first or `within` passes.
    pub fn try_wait_ready(&mut self, within: Duration) -> Result<(), String> {
        self.process.try_wait_for_line(within, |line| {
            line.contains("Server is ready to receive web requests")
                .then_some(())
        })
    }

    /// [`Prometheus::try_wait_ready`] within `HANG_GUARD`, failing the test on `Err`.
    pub fn wait_ready(&mut self) {
        self.try_wait_ready(HANG_GUARD)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Its HTTP API over plain HTTP, without credentials.
    pub fn api(&self) -> Api {
        Api {
            addr: self.addr,
            authorization: None,
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Kill it (a target going away) and wait for it.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

// ---------------------------------------------------------------------------------------
// The HTTP API

/// One sample of an instant query.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// The labels other than `__name__`, `cluster`, `job` and `instance`, as `k="v",...`.
    pub fn key(&self) -> String {
        self.labels
            .iter()
            .filter(|(k, _)| !["__name__", "cluster", "job", "instance"].contains(&k.as_str()))
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn sample_value(value: &Value) -> f64 {
    value[1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a sample value: {value}"))
}

/// Prometheus's HTTP API at `addr`, sending `authorization` (e.g. `Basic ...`) when given.
pub struct Api {
    pub addr: SocketAddr,
    pub authorization: Option<String>,
}

impl Api {
    /// `data` of a successful API answer, or what went wrong.
    pub fn try_data(&self, target: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.addr, target, self.authorization.as_deref())
            .map_err(|e| format!("GET {target}: {e}"))?;
        let json: Value = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "GET {target}: {status}, {e}: {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        if status != 200 || json["status"] != "success" {
            return Err(format!("GET {target}: {status} {json}"));
        }
        Ok(json["data"].clone())
    }

    pub fn data(&self, target: &str) -> Value {
        self.try_data(target).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let data = self.try_data(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        let labels = |metric: &Value| -> BTreeMap<String, String> {
            metric
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        };
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| Sample {
                    labels: labels(&s["metric"]),
                    value: sample_value(&s["value"]),
                })
                .collect()),
            Some("scalar") => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: sample_value(&data["result"]),
            }]),
            other => Err(format!("{expr}: unexpected result type {other:?}")),
        }
    }

    pub fn query(&self, expr: &str) -> Vec<Sample> {
        self.try_query(expr).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The label sets of the series `selector` matches (any time).
    pub fn series(&self, selector: &str) -> Result<Vec<BTreeMap<String, String>>, String> {
        let data = self.try_data(&format!("/api/v1/series?match[]={}", url_encode(selector)))?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                s.as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------
// Plain HTTP

/// (status, body) of a complete HTTP/1.x response (Content-Length, chunked, or up to EOF).
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let mut rest = &raw[end + 4..];
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let line = rest.windows(2).position(|w| w == b"\r\n")?;
            let size = std::str::from_utf8(&rest[..line]).ok()?;
            let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[line + 2..];
            if size == 0 {
                return Some((status, body));
            }
            body.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
    }
    match header("content-length") {
        Some(length) => Some((status, rest.get(..length.parse().ok()?)?.to_vec())),
        None => Some((status, rest.to_vec())),
    }
}

/// `GET target` over plain HTTP/1.0 (never chunked, ends at EOF), with an Authorization
/// header when given: (status, body).
pub fn http_get(
    addr: SocketAddr,
    target: &str,
    authorization: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(tcp, "GET {target} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n")?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw)?;
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::other(format!("incomplete response from {addr}")))
}

/// `s` percent-encoded for a URL query value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
