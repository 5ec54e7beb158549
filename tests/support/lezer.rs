//! The Prometheus project's lezer grammar of PromQL (`@prometheus-io/lezer-promql`, the parser
//! of Prometheus' web UI) as a peer: `tests/peers/lezer_promql.mjs` run by node over the
//! package that `scripts/test-deps.sh` installs, at the version pinned in
//! `tests/peers/lezer/package.json`, into `~/.cache/promfed-lezer` (or `PROMFED_LEZER`).
//! A test asks for it with `require!(lezer_promql)`.

use std::env;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use super::{peer_script, root, run};

/// node and the directory whose `node_modules` holds the pinned grammar.
#[derive(Debug, Clone)]
pub struct Lezer {
    node: PathBuf,
    dir: PathBuf,
    pub version: String,
}

/// One expression as the grammar reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LezerTree {
    /// The tree has an error node.
    pub error: bool,
    /// Every VectorSelector in document order: its own span and its span with the ranges and
    /// offsets that apply to it, byte offsets (see the script's header).
    pub selectors: Vec<LezerSelector>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LezerSelector {
    /// The VectorSelector node: the metric name and the `{...}`.
    pub head: (usize, usize),
    /// With the ranges and offsets that apply to it.
    pub whole: (usize, usize),
}

/// The version of `@prometheus-io/lezer-promql` pinned in `tests/peers/lezer/package.json`.
pub fn lezer_pin() -> String {
    let path = root().join("tests/peers/lezer/package.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let package: Value = serde_json::from_str(&text).expect("package.json is JSON");
    package["dependencies"]["@prometheus-io/lezer-promql"]
        .as_str()
        .expect("the grammar is pinned")
        .to_string()
}

/// The installed grammar, when node runs and the cache holds the pinned version.
pub fn lezer_promql() -> Option<Lezer> {
    static PEER: OnceLock<Option<Lezer>> = OnceLock::new();
    PEER.get_or_init(|| {
        let dir = match env::var_os("PROMFED_LEZER") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from(env::var_os("HOME")?).join(".cache/promfed-lezer"),
        };
        let installed = dir.join("node_modules/@prometheus-io/lezer-promql/package.json");
        let package: Value =
            serde_json::from_str(&std::fs::read_to_string(installed).ok()?).ok()?;
        let version = package["version"].as_str()?.to_string();
        if version != lezer_pin() {
            return None;
        }
        let node = node()?;
        Some(Lezer { node, dir, version })
    })
    .clone()
}

fn node() -> Option<PathBuf> {
    let path = env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join("node"))
        .find(|p| p.is_file())?;
    Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| path)
}

impl Lezer {
    /// Each of `exprs` as the grammar reads it, in order.
    pub fn read(&self, exprs: &[&str]) -> Vec<LezerTree> {
        let mut input = String::new();
        for expr in exprs {
            input.push_str(&serde_json::to_string(expr).expect("a string serializes"));
            input.push('\n');
        }
        let script = peer_script("lezer_promql.mjs");
        let out = run(
            &self.node,
            &[script.as_os_str(), self.dir.as_os_str()],
            Some(&input),
        );
        assert!(
            out.status.success(),
            "lezer_promql.mjs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("node writes UTF-8");
        let trees: Vec<LezerTree> = text.lines().map(tree).collect();
        assert_eq!(trees.len(), exprs.len(), "one line per expression");
        trees
    }
}

fn tree(line: &str) -> LezerTree {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let at = |v: &Value, i: usize| v[i].as_u64().expect("an offset") as usize;
    LezerTree {
        error: value["error"].as_bool().expect("error"),
        selectors: value["selectors"]
            .as_array()
            .expect("selectors")
            .iter()
            .map(|s| LezerSelector {
                head: (at(s, 0), at(s, 1)),
                whole: (at(s, 2), at(s, 3)),
            })
            .collect(),
    }
}
