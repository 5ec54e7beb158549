//! Finding the real peers the tests compare with: promtool and prometheus (Debian's 2.42 and a
//! 3.x from the tools cache), the test venv's Python. Each is looked up once per test run; a
//! test asks for one with `require!(NAME)` (see `support/mod.rs`).

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use super::{current_test, root, run_in, skip, stub_kubernetes_sd, temp_files};

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

/// The Prometheus 3.x promtool next to [`prometheus3`] (`require!(promtool3)`).
pub fn promtool3() -> Option<PathBuf> {
    prometheus3().map(|server| server.with_file_name("promtool3"))
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
