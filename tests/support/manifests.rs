//! Installing promfed, the harness of `tests/it/deploy.rs`: the command-line tools the install
//! paths need (kubectl with its kustomize, openssl, kpt, the standalone kustomize), running
//! them and the repository's scripts, and Kubernetes manifests: rendered by `kubectl
//! kustomize`, parsed with promfed's YAML reader, found by kind and name, validated strictly
//! by kubernetes-validate.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use serde_json::Value;

use super::{describe, root};

/// The Kubernetes version whose schemas the manifests must satisfy.
pub const K8S_VERSION: &str = "1.33.0";

// ---------------------------------------------------------------------------------------
// Tools and processes

/// `need!(kubectl)`: a tool from the function of that name in this module, or a skip (a
/// failure with PROMFED_REQUIRE_TOOLS), as `require!` does for the shared tools.
macro_rules! need {
    ($tool:ident) => {
        match $crate::support::manifests::$tool() {
            Some(path) => path,
            None => {
                $crate::support::skip::<()>(&$crate::support::current_test(), stringify!($tool));
                return;
            }
        }
    };
}
pub(crate) use need;

/// `$env_var`, else `name` on PATH; only if `name args` succeeds.
pub fn tool(env_var: &str, name: &str, args: &[&str]) -> Option<PathBuf> {
    let path = match std::env::var_os(env_var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())?,
    };
    let runs = Command::new(&path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    runs.then_some(path)
}

/// kubectl with its built-in kustomize (`PROMFED_KUBECTL` or PATH).
pub fn kubectl() -> Option<PathBuf> {
    tool("PROMFED_KUBECTL", "kubectl", &["version", "--client"])
}

/// openssl (`PROMFED_OPENSSL` or PATH).
pub fn openssl() -> Option<PathBuf> {
    tool("PROMFED_OPENSSL", "openssl", &["version"])
}

/// kpt, which runs KRM exec functions (`PROMFED_KPT` or PATH).
pub fn kpt() -> Option<PathBuf> {
    tool("PROMFED_KPT", "kpt", &["version"])
}

/// The standalone kustomize (`PROMFED_KUSTOMIZE` or PATH): `kubectl kustomize` cannot run exec
/// functions (it has no --enable-exec and skips them without a word).
pub fn kustomize() -> Option<PathBuf> {
    tool("PROMFED_KUSTOMIZE", "kustomize", &["version"])
}

/// A path as a command-line argument (test paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Run `program args` to completion, with `input` on stdin and `envs` added.
pub fn run(program: &Path, args: &[&str], input: Option<&str>, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    if let Some(text) = input {
        let mut pipe = child.stdin.take().unwrap();
        let text = text.to_owned();
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    child.wait_with_output().unwrap()
}

/// [`run`], which must succeed; its stdout.
pub fn run_ok(program: &Path, args: &[&str], input: Option<&str>, envs: &[(&str, &str)]) -> String {
    let out = run(program, args, input, envs);
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        describe(&out)
    );
    stdout(&out)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A repository script, run with bash (so the executable bit does not matter).
pub fn script(name: &str, args: &[&str]) -> Output {
    let path = root().join(name);
    let all: Vec<&str> = [p(&path)].into_iter().chain(args.iter().copied()).collect();
    run(Path::new("bash"), &all, None, &[])
}

/// `certs/generate.sh ARGS`, which must succeed.
pub fn generate_ok(args: &[&str]) {
    let out = script("certs/generate.sh", args);
    assert!(
        out.status.success(),
        "certs/generate.sh {args:?}: {}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------------------
// Manifests

/// The documents of a YAML stream as JSON, parsed with promfed's YAML reader.
pub fn parse_stream(text: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            docs.last_mut().unwrap().push_str(line);
        }
    }
    docs.iter()
        .filter_map(|doc| {
            promfed::yaml::parse(doc, promfed::yaml::Limits::default())
                .unwrap_or_else(|e| panic!("does not parse: {e:?}\n{doc}"))
        })
        .map(|node| node.to_json())
        .collect()
}

/// A file of the repository, parsed.
pub fn parse_file(path: &str) -> Vec<Value> {
    parse_stream(&std::fs::read_to_string(root().join(path)).unwrap())
}

/// The one document of a file.
pub fn parse_one(path: &Path) -> Value {
    let mut docs = parse_stream(&std::fs::read_to_string(path).unwrap());
    assert_eq!(docs.len(), 1, "{}", path.display());
    docs.remove(0)
}

/// `kubectl kustomize DIR`, parsed.
pub fn kustomize_build(kubectl: &Path, dir: &Path) -> Vec<Value> {
    parse_stream(&run_ok(kubectl, &["kustomize", p(dir)], None, &[]))
}

/// The one object of `kind` named `name` (compared without kustomize's hash suffix).
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && unhashed(o["metadata"]["name"].as_str().unwrap()) == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} {name}, found {}",
        found.len()
    );
    found[0]
}

/// A generated name without kustomize's `-<10 characters>` content hash (`promfed-selfsigned`
/// keeps its last part: `selfsigned` has vowels).
pub fn unhashed(name: &str) -> &str {
    match name.rsplit_once('-') {
        // kustomize writes the hash's hex digits without vowels (0-9a-f to this alphabet).
        Some((base, hash))
            if hash.len() == 10 && hash.bytes().all(|b| b"bcdfghkmt2456789".contains(&b)) =>
        {
            base
        }
        _ => name,
    }
}

/// Whether an object is of a Kubernetes built-in kind (kubernetes-validate has its schema).
pub fn is_builtin(object: &Value) -> bool {
    let api = object["apiVersion"].as_str().unwrap_or("");
    let group = api.split_once('/').map_or("", |(g, _)| g);
    !group.contains('.') || group.ends_with(".k8s.io")
}

/// Validate every built-in object strictly (unknown fields are errors) against the Kubernetes
/// 1.33 schemas, and check that kubernetes-validate reports each one as passed, so none was
/// skipped as unknown. CRD objects (cert-manager's) are left out: it has no schema for them.
pub fn assert_valid(objects: &[Value]) {
    assert_valid_for(objects, K8S_VERSION);
}

/// [`assert_valid`] against the schemas of Kubernetes `k8s_version` (e.g. "1.30.0").
pub fn assert_valid_for(objects: &[Value], k8s_version: &str) {
    let builtin: Vec<&Value> = objects.iter().filter(|o| is_builtin(o)).collect();
    let text: Vec<String> = builtin.iter().map(|o| o.to_string()).collect();
    let out = super::run_kubernetes_validate(&text.join("\n---\n"), k8s_version);
    assert!(
        out.status.success(),
        "kubernetes-validate {k8s_version}: {}",
        describe(&out)
    );
    let report = format!("{}{}", stdout(&out), stderr(&out));
    for object in builtin {
        let kind = object["kind"].as_str().unwrap().to_lowercase();
        let id = format!(
            "passed for resource {kind}/{}",
            object["metadata"]["name"].as_str().unwrap()
        );
        assert!(
            report.contains(&id),
            "kubernetes-validate did not check {id}:\n{report}"
        );
    }
}

/// A copy of `deploy/` in a temporary directory, so certificates can be written into it.
pub fn deploy_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("deploy"), &dir.path().join("deploy"));
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub fn base64_decode(text: &str) -> Vec<u8> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .expect("base64")
}

pub fn strings(value: &Value) -> Vec<&str> {
    let items = value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"));
    items.iter().map(|v| v.as_str().unwrap()).collect()
}

/// The item of a list whose `field` is `value`.
pub fn item<'a>(list: &'a Value, field: &str, value: impl Into<Value>) -> &'a Value {
    let value = value.into();
    let items = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"));
    items
        .iter()
        .find(|i| i[field] == value)
        .unwrap_or_else(|| panic!("no item with {field} = {value} in {list}"))
}
