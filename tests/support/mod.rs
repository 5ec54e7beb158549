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

// Each test module uses only some of these helpers.
#![allow(dead_code, unused_macros, unused_imports)]

use std::env;
use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub mod kube;
pub mod operator;

/// The crate root (where Cargo.toml is).
/// How long a test waits for something that should happen before it calls it a hang. Only a
/// guard: no test passes or fails on speed, and the suite runs on small, busy machines (debug
/// build, another process on one of two cores), so this is many times what that takes.
pub const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(120);

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
/// `kubernetes_validate`.
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

/// An executable file on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `$env_var` if set (it must exist), else `name` on `PATH`, else `/usr/bin/name`; checked to
/// run `--version`.
fn find_tool(env_var: &str, name: &str) -> Option<PathBuf> {
    let path = match env::var_os(env_var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => on_path(name).unwrap_or_else(|| Path::new("/usr/bin").join(name)),
    };
    let runs = Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    runs.then_some(path)
}

/// promtool (Debian's `prometheus` package: 2.42, built without Kubernetes service discovery,
/// see [`stub_kubernetes_sd`]).
pub fn promtool() -> Option<PathBuf> {
    static TOOL: OnceLock<Option<PathBuf>> = OnceLock::new();
    TOOL.get_or_init(|| find_tool("PROMFED_PROMTOOL", "promtool"))
        .clone()
}

/// Every promtool promfed's output is checked with, each with its version line: the 2.42
/// one of [`promtool`] (required: None when it is missing) and, when the tools cache has one,
/// a Prometheus 3.x promtool (`~/.cache/promfed-tools/prometheus-*/bin/promtool3`, or
/// `PROMFED_PROMTOOL3`), required under PROMFED_REQUIRE_TOOLS like every peer.
pub fn promtools() -> Option<Vec<(String, PathBuf)>> {
    let version = |path: &Path| {
        let out = Command::new(path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        // promtool prints its version on stdout or stderr depending on the release.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(text.lines().next().unwrap_or_default().trim().to_string())
    };
    let mut tools = vec![(version(&promtool()?)?, promtool()?)];
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = env::var_os("PROMFED_PROMTOOL3").filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(path));
    }
    // The one next to the cached Prometheus 3 server (prometheus3() finds the cache).
    candidates.extend(prometheus3().map(|server| server.with_file_name("promtool3")));
    for path in candidates {
        if let Some(v) = path.is_file().then(|| version(&path)).flatten()
            && !tools.iter().any(|(_, p)| *p == path)
        {
            tools.push((v, path));
        }
    }
    if tools.len() < 2 {
        // Built by scripts/build-tools.sh (make test): required like every peer.
        skip::<()>(&current_test(), "promtool3 (scripts/build-tools.sh)");
    }
    Some(tools)
}

/// `promtool check config --syntax-only` with a given promtool, after [`stub_kubernetes_sd`]
/// (harmless for a promtool that has Kubernetes discovery). Needs `require!(python)`.
pub fn promtool_check_config_with(promtool: &Path, prometheus_yml: &str) -> Output {
    let stubbed = stub_kubernetes_sd(prometheus_yml);
    run_promtool_with(
        promtool,
        &["check", "config", "--syntax-only", "prometheus.yml"],
        &[("prometheus.yml", &stubbed)],
    )
}

/// [`run_promtool`] with a given promtool.
pub fn run_promtool_with(promtool: &Path, args: &[&str], files: &[(&str, &str)]) -> Output {
    let dir = temp_files(files);
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    run_in(promtool, &args, None, Some(dir.path()))
}

/// `promtool [flags] check rules` on one rule file that holds each of `exprs` as a recording
/// rule; returns, per expression, `None` when promtool accepts it or promtool's message.
pub fn promtool_check_exprs(
    promtool: &Path,
    flags: &[&str],
    exprs: &[&str],
) -> Vec<Option<String>> {
    let mut rules = String::from("groups:\n- name: check\n  rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = serde_json::to_string(expr).expect("a string serializes");
        rules.push_str(&format!("  - record: check:r{i}\n    expr: {expr}\n"));
    }
    let mut args = flags.to_vec();
    args.extend(["check", "rules", "rules.yml"]);
    let out = run_promtool_with(promtool, &args, &[("rules.yml", &rules)]);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Each error names its rule: `group "check", rule 3, "check:r2": <message>`.
    let mut verdicts = vec![None; exprs.len()];
    for line in report.lines() {
        let Some((_, rest)) = line.split_once("\"check:r") else {
            continue;
        };
        let Some((index, message)) = rest.split_once('"') else {
            continue;
        };
        if let Some(v) = index.parse().ok().and_then(|i: usize| verdicts.get_mut(i)) {
            *v = Some(message.trim_start_matches(':').trim().to_string());
        }
    }
    assert!(
        out.status.success() || verdicts.iter().any(Option::is_some),
        "promtool check rules failed without naming a rule:\n{report}"
    );
    verdicts
}

/// The Prometheus server binary (same package as promtool).
pub fn prometheus() -> Option<PathBuf> {
    static TOOL: OnceLock<Option<PathBuf>> = OnceLock::new();
    TOOL.get_or_init(|| find_tool("PROMFED_PROMETHEUS", "prometheus"))
        .clone()
}

/// Prometheus 3.x (`prometheus3`, with `promtool3` next to it) from the tools cache
/// (`~/.cache/promfed-tools/prometheus-*/bin`, built by scripts/build-tools.sh), or
/// `PROMFED_PROMETHEUS3`; the newest cached one when there are several.
pub fn prometheus3() -> Option<PathBuf> {
    static TOOL: OnceLock<Option<PathBuf>> = OnceLock::new();
    TOOL.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(path) = env::var_os("PROMFED_PROMETHEUS3").filter(|p| !p.is_empty()) {
            candidates.push(PathBuf::from(path));
        }
        if let Some(home) = env::var_os("HOME") {
            let cache = PathBuf::from(home).join(".cache/promfed-tools");
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cache)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(OsStr::to_str)
                        .is_some_and(|n| n.starts_with("prometheus-v") && !n.ends_with(".tmp"))
                })
                .collect();
            dirs.sort();
            candidates.extend(dirs.into_iter().rev().map(|d| d.join("bin/prometheus3")));
        }
        candidates.into_iter().find(|path| {
            path.is_file()
                && path.with_file_name("promtool3").is_file()
                && Command::new(path)
                    .arg("--version")
                    .stdin(Stdio::null())
                    .output()
                    .is_ok_and(|o| o.status.success())
        })
    })
    .clone()
}

/// A Prometheus server release the checks run against: its major line, the server binary and
/// the promtool of the same release.
#[derive(Debug, Clone)]
pub struct PrometheusRelease {
    pub name: &'static str,
    pub server: PathBuf,
    pub promtool: PathBuf,
}

/// The Prometheus releases the semantic and federation checks run against: Debian's 2.42
/// ([`prometheus`], [`promtool`]) and 3.x ([`prometheus3`], `promtool3` next to it). Each is
/// `None` (to skip, or to fail under `PROMFED_REQUIRE_TOOLS`) when missing.
pub fn prometheus_release(major: u8) -> Option<PrometheusRelease> {
    match major {
        2 => Some(PrometheusRelease {
            name: "Prometheus 2.42 (Debian)",
            server: prometheus()?,
            promtool: promtool()?,
        }),
        3 => {
            let server = prometheus3()?;
            Some(PrometheusRelease {
                name: "Prometheus 3.x (tools cache)",
                promtool: server.with_file_name("promtool3"),
                server,
            })
        }
        _ => None,
    }
}

/// `require!(prometheus2)` / `require!(prometheus3)`: a [`PrometheusRelease`].
pub fn prometheus2_release() -> Option<PrometheusRelease> {
    prometheus_release(2)
}

pub fn prometheus3_release() -> Option<PrometheusRelease> {
    prometheus_release(3)
}

/// Whether `python` can import every module in `modules`.
fn python_imports(python: &Path, modules: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The test venv's Python: `PROMFED_PYTHON`, else `.venv/bin/python` at the crate root; only if
/// it imports `yaml` and `jsonpatch`.
pub fn python() -> Option<PathBuf> {
    static TOOL: OnceLock<Option<PathBuf>> = OnceLock::new();
    TOOL.get_or_init(|| {
        let python = match env::var_os("PROMFED_PYTHON") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => root().join(".venv/bin/python"),
        };
        python_imports(&python, "yaml, jsonpatch").then_some(python)
    })
    .clone()
}

/// A Python that has `kubernetes_validate` (the venv's), for [`run_kubernetes_validate`].
pub fn kubernetes_validate() -> Option<PathBuf> {
    static TOOL: OnceLock<Option<PathBuf>> = OnceLock::new();
    TOOL.get_or_init(|| python().filter(|p| python_imports(p, "kubernetes_validate")))
        .clone()
}

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
