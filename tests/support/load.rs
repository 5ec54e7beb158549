//! Steady request streams against `promfed serve`: [`Load`] sends at a fixed rate from a few
//! threads and judges every answer ([`Workload`]); [`Flood`] sends back to back and keeps every
//! answer in order. The soak (`faults.rs`, `scripts/soak.sh`) and the fault tests use them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

use super::examples::tkg_configmap;
use super::review::review;
use super::tls::{Answer, Client, Conn};

/// How a load thread talks to the servers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// One connection per thread, reused; re-opened when the server closes it.
    KeepAlive,
    /// A new connection (full handshake) per request.
    NewConnection,
}

/// Judges an answer: `Err(why)` for a wrong one.
pub type Check = Box<dyn Fn(&Answer) -> Result<(), String> + Send + Sync>;

/// What the request stream sends and how each answer is judged.
pub struct Workload {
    /// Request body for thread `t`, request `i`.
    pub body: Box<dyn Fn(usize, usize) -> Vec<u8> + Send + Sync>,
    pub check: Check,
}

/// One thread's results.
#[derive(Debug, Default)]
pub struct Tally {
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
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Tally>>,
    live: Arc<Live>,
}

/// What the threads of a [`Load`] have done so far, readable while it runs.
#[derive(Default)]
struct Live {
    ok: AtomicUsize,
    failed: AtomicUsize,
    /// Latencies of answered requests not yet taken by [`Load::take_latencies`].
    latencies: Mutex<Vec<Duration>>,
}

/// The outcome of a load run.
#[derive(Debug, Default)]
pub struct Totals {
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
    pub fn start(
        client: &Client,
        servers: &[SocketAddr],
        workload: Arc<Workload>,
        threads: usize,
        rate: f64,
        mode: Mode,
        retry: bool,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live::default());
        let every = Duration::from_secs_f64(1.0 / rate);
        let threads = (0..threads)
            .map(|t| {
                let (client, stop, live) = (client.clone(), stop.clone(), live.clone());
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
                                let took = started.elapsed();
                                tally.latencies.push(took);
                                live.latencies.lock().unwrap().push(took);
                                match (workload.check)(&answer) {
                                    Ok(()) => {
                                        tally.ok += 1;
                                        live.ok.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(why) => {
                                        tally.failed.push(format!("t{t} #{i}: {why}"));
                                        live.failed.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                tally.leaves.push((started, answer.leaf));
                            }
                            None => {
                                tally.failed.push(format!("t{t} #{i}: {last_error}"));
                                live.failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        Load {
            stop,
            threads,
            live,
        }
    }

    /// (correct answers, failed requests) of all threads so far.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.live.ok.load(Ordering::Relaxed),
            self.live.failed.load(Ordering::Relaxed),
        )
    }

    /// The latencies of the requests answered since the last call (all, at the first).
    pub fn take_latencies(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.live.latencies.lock().unwrap())
    }

    pub fn finish(self) -> Totals {
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
    pub fn assert_no_failures(&self, what: &str) {
        assert!(
            self.failed.is_empty(),
            "{what}: {} of {} requests failed, first: {:?}",
            self.failed.len(),
            self.ok + self.failed.len(),
            &self.failed[..self.failed.len().min(5)]
        );
    }

    pub fn summary(&self) -> String {
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

/// Requests sent back to back by a few threads, each on a new connection, until stopped;
/// every result is kept, in the order each thread got them.
pub struct Flood {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Result<Answer, String>>>>,
}

impl Flood {
    /// `threads` threads POSTing `review` (its uid made unique per request) to `addr`.
    pub fn start(client: &Client, addr: SocketAddr, review: &Value, threads: usize) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|t| {
                let (client, stop) = (client.clone(), stop.clone());
                let mut review = review.clone();
                std::thread::spawn(move || {
                    let mut results = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        review["request"]["uid"] = json!(format!("load-{t}-{i}"));
                        i += 1;
                        results.push(client.post_json(addr, &review).map_err(|e| e.to_string()));
                    }
                    results
                })
            })
            .collect();
        Flood { stop, threads }
    }

    /// Stop and return every thread's results, in the order each thread got them.
    pub fn finish(self) -> Vec<Vec<Result<Answer, String>>> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Workloads

/// The TKG ConfigMap with one recording rule's label value changed by `n`: every `n` is a
/// ConfigMap never seen before, so the engine runs (a cache miss).
pub fn distinct_configmap(n: usize) -> Value {
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
pub fn mixed_workload(miss_every: usize) -> Arc<Workload> {
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
