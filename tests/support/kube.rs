//! A real Kubernetes API server for the tests: `scripts/kube-local.sh up DIR` (etcd,
//! kube-apiserver and `promfed serve` on loopback, the `deploy/local` overlay applied), driven
//! with the pinned kubectl it puts on `PATH`. A module starts one [`Cluster`] and shares it
//! between its tests ([`Cluster::shared`]); each test works in namespaces of its own.
//!
//! The cluster outlives no test run: a reaper process started with it runs
//! `kube-local.sh down DIR` as soon as the test process is gone, however it ended.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use super::{describe, promfed_bin, root};

/// One running local cluster.
pub struct Cluster {
    /// Its folder: kubeconfig, env, pids, logs.
    pub dir: PathBuf,
    /// `DIR/env`, read: KUBECONFIG, PATH (the pinned tools first), PROMFED_LOCAL_*.
    pub env: BTreeMap<String, String>,
    /// Keeps the folder until the test process ends.
    _tmp: tempfile::TempDir,
}

/// Where `scripts/build-tools.sh` put kube-apiserver, if it did: the tools are built by
/// `scripts/test-deps.sh` (which `make test` runs); a test never builds them itself.
pub fn tools_built() -> bool {
    let out = Command::new(root().join("scripts/build-tools.sh"))
        .arg("path")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    out.is_ok_and(|o| {
        std::env::split_paths(OsStr::new(String::from_utf8_lossy(&o.stdout).trim()))
            .any(|dir| dir.join("kube-apiserver").is_file())
    })
}

impl Cluster {
    /// Start a cluster with promfed running `config` (a promfed config file; None: the
    /// deploy/base one). Panics with kube-local.sh's own output when it does not come up.
    pub fn up(config: Option<&Path>) -> Cluster {
        Cluster::up_with(config, &[])
    }

    /// [`Cluster::up`] with more environment for kube-local.sh (e.g. `PROMFED_CERT_DIR`).
    pub fn up_with(config: Option<&Path>, env: &[(&str, &OsStr)]) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("promfed-kube-")
            .tempdir()
            .expect("a temp dir");
        let dir = tmp.path().to_path_buf();
        let mut command = Command::new(root().join("scripts/kube-local.sh"));
        command
            .arg("up")
            .arg(&dir)
            // The debug binary cargo built for the tests: no release build inside a test.
            .env("PROMFED_BIN", promfed_bin())
            .stdin(Stdio::null());
        if let Some(config) = config {
            command.env("PROMFED_CONFIG", config);
        }
        command.envs(env.iter().copied());
        // The reaper first, so that a half-started cluster is stopped too. The shell puts it
        // in the background and exits at once: the reaper is nobody's child to wait for, and
        // outlives this process.
        let status = Command::new("sh")
            .arg("-c")
            .arg(
                "( while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \
                 [ -d \"$3\" ] && \"$2\" down \"$3\"; rm -rf \"$3\" ) </dev/null >/dev/null 2>&1 &",
            )
            .arg("reaper")
            .arg(std::process::id().to_string())
            .arg(root().join("scripts/kube-local.sh"))
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("starting the reaper");
        assert!(status.success(), "starting the reaper: {status}");
        let out = command.output().expect("running scripts/kube-local.sh");
        assert!(
            out.status.success(),
            "scripts/kube-local.sh up: {}",
            describe(&out)
        );
        let text = std::fs::read_to_string(dir.join("env")).expect("DIR/env");
        let mut env = BTreeMap::new();
        for line in text.lines() {
            if let Some((key, value)) = line.strip_prefix("export ").and_then(|l| l.split_once('='))
            {
                let path = std::env::var("PATH").unwrap_or_default();
                env.insert(key.to_string(), value.replace("$PATH", &path));
            }
        }
        Cluster {
            dir,
            env,
            _tmp: tmp,
        }
    }

    /// A program with this cluster's environment (the pinned tools first on PATH).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.envs(&self.env).stdin(Stdio::null());
        command
    }

    /// `kubectl ARGS` (with `stdin`, if given), its output whatever the exit status.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = self.command("kubectl");
        command.args(args);
        match stdin {
            None => command.output().expect("running kubectl"),
            Some(text) => {
                use std::io::Write as _;
                command.stdin(Stdio::piped()).stdout(Stdio::piped());
                command.stderr(Stdio::piped());
                let mut child = command.spawn().expect("running kubectl");
                let mut pipe = child.stdin.take().unwrap();
                let text = text.to_string();
                let writer = std::thread::spawn(move || pipe.write_all(text.as_bytes()));
                let out = child.wait_with_output().expect("kubectl output");
                let _ = writer.join();
                out
            }
        }
    }

    /// `kubectl ARGS`, which must succeed: its stdout.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(out.status.success(), "kubectl {args:?}: {}", describe(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// An object as JSON (`kubectl get -o json`).
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> serde_json::Value {
        let text = self.kubectl_ok(&["get", kind, "-n", namespace, name, "-o", "json"], None);
        serde_json::from_str(&text).unwrap()
    }

    /// Create a namespace (a test's own).
    pub fn namespace(&self, name: &str) {
        let out = self.kubectl(&["create", "namespace", name], None);
        let already = String::from_utf8_lossy(&out.stderr).contains("AlreadyExists");
        assert!(out.status.success() || already, "{}", describe(&out));
    }

    /// The sum of promfed's review counter (every outcome): how many reviews it answered.
    pub fn reviews(&self) -> f64 {
        let url = format!("{}/metrics", self.env["PROMFED_LOCAL_METRICS"]);
        let text = super::http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        text.lines()
            .filter(|l| l.starts_with("promfed_reviews_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Stop promfed (SIGTERM, then wait until it is gone): its command line, to start it again
    /// with [`Cluster::start_promfed`].
    pub fn stop_promfed(&self) -> Vec<String> {
        let pid = self.promfed_pid();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let argv: Vec<String> = (cmdline.split(|b| *b == 0))
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let status = Command::new("kill").arg(pid.to_string()).status().unwrap();
        assert!(status.success(), "kill {pid}: {status}");
        let deadline = std::time::Instant::now() + super::HANG_GUARD;
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(std::time::Instant::now() < deadline, "promfed did not stop");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        argv
    }

    /// Start promfed with `argv` (what [`Cluster::stop_promfed`] returned), recorded in
    /// `DIR/promfed.pid` for `down`, logging to `DIR/promfed-restarted.log`; returns once its
    /// `/readyz` answers. The process is killed and reaped when the guard drops.
    pub fn start_promfed(&self, argv: &[String]) -> super::KillOnDrop {
        let log = std::fs::File::create(self.dir.join("promfed-restarted.log")).unwrap();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        std::fs::write(self.dir.join("promfed.pid"), child.id().to_string()).unwrap();
        let url = format!("{}/readyz", self.env["PROMFED_LOCAL_METRICS"]);
        let deadline = std::time::Instant::now() + super::HANG_GUARD;
        while super::http_get(&url).is_err() {
            let exited = child.try_wait().unwrap();
            assert!(
                std::time::Instant::now() < deadline && exited.is_none(),
                "promfed did not come back (exit {exited:?}); see {}",
                self.dir.join("promfed-restarted.log").display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        super::KillOnDrop(child)
    }

    /// promfed's process id, from `DIR/promfed.pid`.
    pub fn promfed_pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.dir.join("promfed.pid")).unwrap();
        text.trim().parse().unwrap()
    }
}

/// A cluster a test started for itself stops when the test ends (the shared one, never
/// dropped, is stopped by its reaper).
impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/kube-local.sh"))
            .arg("down")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
    }
}

/// `cluster!()`: the module's shared cluster (its `shared()` function), or a skip when the Go
/// tools are not built; `cluster!(own)`: a cluster of the test's own.
#[macro_export]
macro_rules! cluster {
    () => {
        match shared() {
            Some(cluster) => cluster,
            None => {
                $crate::support::skip::<()>(
                    &$crate::support::current_test(),
                    "kube-apiserver (scripts/build-tools.sh)",
                );
                return;
            }
        }
    };
    (own) => {
        if $crate::support::kube::tools_built() {
            $crate::support::kube::Cluster::up(None)
        } else {
            $crate::support::skip::<()>(
                &$crate::support::current_test(),
                "kube-apiserver (scripts/build-tools.sh)",
            );
            return;
        }
    };
}

/// A corpus ConfigMap as JSON, moved to `namespace` (and renamed, if `name` is given).
pub fn configmap(path: &str, namespace: &str, name: Option<&str>) -> Value {
    let text = super::read_data(path);
    let node = promfed::yaml::parse(&text, promfed::yaml::Limits::default())
        .unwrap()
        .unwrap();
    let mut object = node.to_json();
    object["metadata"]["namespace"] = json!(namespace);
    if let Some(name) = name {
        object["metadata"]["name"] = json!(name);
    }
    object
}

/// What `promfed render --config deploy/base/promfed.yaml` makes of `object`: its data.
pub fn rendered_data(object: &Value) -> Value {
    rendered_data_with(object, &root().join("deploy/base/promfed.yaml"))
}

/// What `promfed render --config CONFIG` makes of `object`: its data.
pub fn rendered_data_with(object: &Value, config: &Path) -> Value {
    let input = serde_json::to_string(object).unwrap();
    let out = super::run(
        &promfed_bin(),
        &[
            OsStr::new("render"),
            OsStr::new("--config"),
            config.as_os_str(),
        ],
        Some(&input),
    );
    assert!(out.status.success(), "promfed render: {}", describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let node = promfed::yaml::parse(&text, promfed::yaml::Limits::default())
        .unwrap()
        .unwrap();
    node.to_json()["data"].clone()
}

/// The stored object's data equals promfed render's output for the object written.
pub fn assert_stored_federated(cluster: &Cluster, written: &Value, how: &str) {
    assert_stored_federated_with(
        cluster,
        written,
        &root().join("deploy/base/promfed.yaml"),
        how,
    );
}

/// The stored object's data equals `promfed render --config CONFIG`'s output for the object
/// written.
pub fn assert_stored_federated_with(cluster: &Cluster, written: &Value, config: &Path, how: &str) {
    let namespace = written["metadata"]["namespace"].as_str().unwrap();
    let name = written["metadata"]["name"].as_str().unwrap();
    let stored = cluster.get("configmap", namespace, name);
    let want = rendered_data_with(written, config);
    assert_ne!(
        want, written["data"],
        "{how}: promfed render changes nothing?"
    );
    assert!(
        stored["data"] == want,
        "{how}: the stored {namespace}/{name} is not what promfed render writes"
    );
}
