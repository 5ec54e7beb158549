//! Helpers shared by the test modules of `tests/tests.rs`.
//!
//! Real peers (promtool, prometheus, the Python venv with PyYAML, jsonpatch and
//! kubernetes-validate) are looked up once; `scripts/test-deps.sh` (run by `make test`)
//! installs them. A test that needs one starts with
//!
//! ```ignore
//! let promtool = require!(promtool);
//! ```
//!
//! which returns the tool's path, or, when it is missing, prints one line
//! `SKIPPED <test>: needs promtool (run `make test`, which installs it)` to stderr and
//! returns from the test. With `PROMFED_REQUIRE_TOOLS=1` (set by `make test`) a missing tool
//! fails the test instead, so the README's command never passes by skipping.
//!
//! Env: `PROMFED_PROMTOOL`, `PROMFED_PROMETHEUS`, `PROMFED_PYTHON` point at a tool
//! explicitly; `PROMFED_UPDATE_GOLDEN=1` rewrites golden files instead of comparing.
//!
//! The files, one concern each:
//!
//! - this file: inputs, the skip convention, running a peer, golden files, ports, waiting
//!   (`wait_until`, `wait_for`: hang guards only), mounted-Secret layouts; `tools`: finding the
//!   real peers (`promtool`, `PrometheusRelease`, `python`), re-exported here;
//! - `serve`: `promfed serve` as a process (`Files`, `Server`); `tls`: the verifying client;
//!   `load`: steady request streams (`Load`, `Flood`) and their workloads;
//! - `prometheus`: the Prometheus launcher (`Prometheus::start`, `wait_ready`, `api().query`);
//!   `process`: a child process with its log collected, killed when dropped;
//! - `review`: AdmissionReview fixtures, also included by `fuzz/src/lib.rs` (so it names no
//!   crate item); `examples`: the example config, the TKG ConfigMap, the engine's rendering;
//! - `promql_grammar`: PromQL text from the grammar, as a proptest strategy;
//! - `attack`, `well_behaved`: the attack tests' neighbour and clients; `manifests`: the
//!   install tools and manifest helpers of `deploy`; `kube`: a local Kubernetes API server;
//!   `charts`: the helm chart and the Carvel package as the pinned helm and ytt render them;
//! - `expressions`: every PromQL expression the project holds, with where it came from;
//!   `lezer`: the Prometheus project's lezer grammar of PromQL as a peer (`require!(lezer_promql)`).

// Each test module uses only some of these helpers.
#![allow(dead_code, unused_macros, unused_imports)]

use std::env;
use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub mod attack;
pub mod charts;
pub mod examples;
pub mod expressions;
pub mod kube;
mod lezer;
pub mod load;
pub mod manifests;
pub mod operator;
pub mod process;
pub mod prometheus;
pub mod promql_grammar;
pub mod review;
pub mod serve;
pub mod tls;
mod tools;
pub mod well_behaved;

pub use lezer::*;
pub use tools::*;

/// How long a test waits for something that should happen before it calls it a hang. Only a
/// guard: no test passes or fails on speed, and the suite runs on small, busy machines (debug
/// build, another process on one of two cores), so this is many times what that takes.
pub const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(120);

/// The crate root (where Cargo.toml is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A test input under `tests/data/`, e.g. `data("tkg/prometheus.yml")`.
pub fn data(path: impl AsRef<Path>) -> PathBuf {
    root().join("tests/data").join(path)
}

/// A test input under `tests/data/`, read as UTF-8.
pub fn read_data(path: impl AsRef<Path>) -> String {
    let path = data(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A script under `tests/peers/` (the user's reference implementation, generators).
pub fn peer_script(name: &str) -> PathBuf {
    root().join("tests/peers").join(name)
}

/// The promfed binary that cargo built for this test run, or `PROMFED_BIN` when set (the
/// attack probe, `scripts/attack-probe.sh`, runs the attack tests against the release
/// binary pinned to one core).
pub fn promfed_bin() -> PathBuf {
    match env::var_os("PROMFED_BIN") {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_promfed")),
    }
}

// ---------------------------------------------------------------------------------------
// Tools and the skip convention

/// Whether a missing tool fails the test (`PROMFED_REQUIRE_TOOLS` set and not `0`).
pub fn tools_required() -> bool {
    env::var_os("PROMFED_REQUIRE_TOOLS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The name of the running test, as libtest names its thread (`module::test`).
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unknown test>")
        .to_string()
}

/// Report that `test` cannot run without `tool`: one line on stderr and `None`, or a panic when
/// `PROMFED_REQUIRE_TOOLS` is set. The line goes to the real stderr, not through libtest's
/// capture (which would hide it for a passing test), so `cargo test` shows every skip.
pub fn skip<T>(test: &str, tool: &str) -> Option<T> {
    if tools_required() {
        panic!(
            "{test}: needs {tool}, which is missing, and PROMFED_REQUIRE_TOOLS is set \
             (run scripts/test-deps.sh to install it)"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs {tool} (run `make test`, which installs it)"
    );
    None
}

/// `require!(promtool)`: the path of a tool from the function of that name in this module,
/// or return from the test after [`skip`]. Tools: `promtool`, `prometheus`, `python`,
/// `kubernetes_validate`, `lezer_promql`.
macro_rules! require {
    ($tool:ident) => {
        match $crate::support::$tool() {
            Some(path) => path,
            None => {
                $crate::support::skip::<()>(&$crate::support::current_test(), stringify!($tool));
                return;
            }
        }
    };
}
pub(crate) use require;

// ---------------------------------------------------------------------------------------
// Running the peers

/// Run `program args` with `stdin` fed in (or none) and return its output; panics only if
/// it cannot be started.
pub fn run(program: &Path, args: &[&OsStr], stdin: Option<&str>) -> Output {
    run_in(program, args, stdin, None)
}

fn run_in(program: &Path, args: &[&OsStr], stdin: Option<&str>, cwd: Option<&Path>) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    if let Some(input) = stdin {
        // Feed stdin from another thread so a child that writes a lot before reading all of
        // its input cannot deadlock with us.
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_owned();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {}: {e}", program.display()))
}

/// A temporary directory holding `files` (name, contents); names may contain `/`.
pub fn temp_files(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, contents) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("temp subdir");
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {name}: {e}"));
    }
    dir
}

/// Run promtool with `args` in a temporary directory that holds `files` (name, contents), so
/// args can name them relatively: `run_promtool(&["check", "rules", "r.yml"], &[("r.yml", s)])`.
/// Call `require!(promtool)` first; this panics if promtool is missing.
pub fn run_promtool(args: &[&str], files: &[(&str, &str)]) -> Output {
    let promtool = promtool().expect("run_promtool without require!(promtool)");
    let dir = temp_files(files);
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    run_in(&promtool, &args, None, Some(dir.path()))
}

/// Debian's promtool/prometheus are built without Kubernetes service discovery, so any config
/// with `kubernetes_sd_configs` fails `promtool check config` ("field kubernetes_sd_configs not
/// found"). This returns `prometheus_yml` with every `kubernetes_sd_configs` list replaced by
/// as many `file_sd_configs` entries (`files: [kubernetes_sd_stub.json]`), everything else
/// unchanged in meaning (it is re-emitted by PyYAML), so the rest of the config can be
/// checked. Call `require!(python)` first.
pub fn stub_kubernetes_sd(prometheus_yml: &str) -> String {
    const SCRIPT: &str = r#"
import sys, yaml
def walk(node):
    if isinstance(node, dict):
        if "kubernetes_sd_configs" in node:
            n = len(node.pop("kubernetes_sd_configs") or []) or 1
            node.setdefault("file_sd_configs", []).extend(
                {"files": ["kubernetes_sd_stub.json"]} for _ in range(n))
        for v in node.values():
            walk(v)
    elif isinstance(node, list):
        for v in node:
            walk(v)
cfg = yaml.safe_load(sys.stdin)
walk(cfg)
yaml.safe_dump(cfg, sys.stdout, sort_keys=False)
"#;
    let python = python().expect("stub_kubernetes_sd without require!(python)");
    let out = run(
        &python,
        &[OsStr::new("-c"), OsStr::new(SCRIPT)],
        Some(prometheus_yml),
    );
    assert!(
        out.status.success(),
        "stub_kubernetes_sd: python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("python wrote UTF-8")
}

/// `promtool check config --syntax-only` on a prometheus.yml given as text, after
/// [`stub_kubernetes_sd`]. Needs `require!(promtool)` and `require!(python)`.
pub fn promtool_check_config(prometheus_yml: &str) -> Output {
    let stubbed = stub_kubernetes_sd(prometheus_yml);
    run_promtool(
        &["check", "config", "--syntax-only", "prometheus.yml"],
        &[("prometheus.yml", &stubbed)],
    )
}

/// Validate Kubernetes objects (YAML or JSON text, one or more documents) with
/// kubernetes-validate against Kubernetes `k8s_version` (e.g. "1.33.0"), strictly (unknown
/// fields are errors). Needs `require!(kubernetes_validate)`.
pub fn run_kubernetes_validate(objects: &str, k8s_version: &str) -> Output {
    let python = kubernetes_validate().expect("without require!(kubernetes_validate)");
    let dir = temp_files(&[("objects.yaml", objects)]);
    let file = dir.path().join("objects.yaml");
    run(
        &python,
        &[
            OsStr::new("-m"),
            OsStr::new("kubernetes_validate"),
            OsStr::new("--strict"),
            OsStr::new("-k"),
            OsStr::new(k8s_version),
            file.as_os_str(),
        ],
        None,
    )
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------
// Golden files

/// Compare `actual` with `tests/golden/<path>`; on a difference, panic with a unified diff.
/// With `PROMFED_UPDATE_GOLDEN=1` the file is (re)written instead, and the test passes:
/// review the change with `git diff tests/golden`.
pub fn assert_golden(path: impl AsRef<Path>, actual: &str) {
    let path = root().join("tests/golden").join(path);
    let update = env::var_os("PROMFED_UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0");
    let expected = std::fs::read_to_string(&path).ok();
    if expected.as_deref() == Some(actual) {
        return;
    }
    if update {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("golden dir");
        }
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        let _ = writeln!(std::io::stderr(), "UPDATED golden file {}", path.display());
        return;
    }
    let Some(expected) = expected else {
        panic!(
            "golden file {} is missing; create it with PROMFED_UPDATE_GOLDEN=1 cargo test",
            path.display()
        );
    };
    let diff = similar::TextDiff::from_lines(expected.as_str(), actual)
        .unified_diff()
        .context_radius(3)
        .header("golden", "actual")
        .to_string();
    panic!(
        "{} differs from the output (rerun with PROMFED_UPDATE_GOLDEN=1 to accept it):\n{diff}",
        path.display()
    );
}

// ---------------------------------------------------------------------------------------
// Processes and ports

/// A free loopback port: bound, then released for the process that takes it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `N` distinct free loopback ports (bound together, then released for the servers to take).
pub fn free_ports<const N: usize>() -> [std::net::SocketAddr; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("port"))
}

/// Poll `done` until it holds; fail the test after `within` (a hang guard, see
/// [`HANG_GUARD`]). Returns how long it took.
pub fn wait_until(
    what: &str,
    within: std::time::Duration,
    mut done: impl FnMut() -> bool,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    started.elapsed()
}

/// Poll `probe` until it gives a value; fail with its last complaint after `within`.
pub fn wait_for<T>(
    what: &str,
    within: std::time::Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) => assert!(
                std::time::Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; last: {last}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Files laid out like a mounted Secret or ConfigMap

/// `dir/..<stamp>/<files>`, `dir/..data -> ..<stamp>`, `dir/<file> -> ..data/<file>`.
pub struct Mount {
    dir: PathBuf,
    version: usize,
}

impl Mount {
    pub fn new(dir: &Path, files: &[(&str, &str)]) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let mut mount = Mount {
            dir: dir.to_path_buf(),
            version: 0,
        };
        mount.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
        mount
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// What the kubelet does: a new timestamped dir, then a new symlink renamed over `..data`.
    pub fn update(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let stamp = format!("..2026_01_01_00_00_00.{:09}", self.version);
        std::fs::create_dir(self.dir.join(&stamp)).unwrap();
        for (name, text) in files {
            std::fs::write(self.dir.join(&stamp).join(name), text).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

/// The data values of a ConfigMap (`node`) that hold a YAML document, with their keys and the
/// document; nothing for any other object.
pub fn configmap_yaml_data(node: &promfed::yaml::Node) -> Vec<(String, &str, promfed::yaml::Node)> {
    use promfed::yaml::{Limits, Node};
    if node.get("kind").and_then(Node::as_str) != Some("ConfigMap") {
        return Vec::new();
    }
    let data = node
        .get("data")
        .and_then(Node::as_map)
        .into_iter()
        .flatten();
    data.filter_map(|(key, value)| {
        let (key, text) = (key.scalar_text()?, value.as_str()?);
        let document = promfed::yaml::parse(text, Limits::default()).ok()??;
        Some((key.to_string(), text, document))
    })
    .collect()
}

/// Every `*.yaml` / `*.yml` file under `dir`, recursively, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `GET http://HOST:PORT/PATH` over plain HTTP/1.1 (promfed's metrics port): the body of a 200.
pub fn http_get(url: &str) -> Result<String, String> {
    use std::io::Read as _;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut tcp = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(HANG_GUARD))
        .map_err(|e| e.to_string())?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer: {answer:?}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_string());
    }
    Ok(body.to_string())
}
