//! promfed as users run it: its image (`make image`) imported into containerd on a real node
//! (`scripts/kube-local.sh` with `PROMFED_NODE=1`: kubelet, containerd, runc, CNI bridge,
//! controller-manager, scheduler), `deploy/self-signed` applied with `kubectl apply -k`, and
//! the API server calling promfed through its Service.
//!
//! The tests share one node and run one at a time (some stop pods or roll the Deployment).
//! Needs root, the node tools (scripts/build-tools.sh), runc and the image archive
//! (`make image`, or `PROMFED_IMAGE`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::kube::{self, Cluster, configmap, rendered_data};
use crate::support::{HANG_GUARD, current_test, describe, root, skip, wait_until};

const NS: &str = "promfed-system";

/// What the node needs that a test cannot make itself, or None when all is there.
fn missing() -> Option<String> {
    if !kube::tools_built() {
        return Some("kube-apiserver (scripts/build-tools.sh)".into());
    }
    let dir = |name: &str| {
        let out = std::process::Command::new(root().join("scripts/build-tools.sh"))
            .args(["dir", name])
            .output()
            .unwrap();
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    };
    for name in ["kube-node", "containerd", "cni"] {
        if !dir(name).join(".stamp").is_file() {
            return Some(format!("{name} (scripts/build-tools.sh)"));
        }
    }
    if !archive().is_file() {
        return Some(format!(
            "the image archive {} (make image)",
            archive().display()
        ));
    }
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("root (the node's namespaces and cgroups)".into());
    }
    None
}

fn archive() -> PathBuf {
    std::env::var_os("PROMFED_IMAGE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/promfed-image.tar"))
}

/// The node, started on first use, and the lock that makes its tests run one at a time.
fn node() -> Option<(&'static Cluster, MutexGuard<'static, ()>)> {
    static NODE: OnceLock<Option<Cluster>> = OnceLock::new();
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(what) = missing() {
        return skip(&current_test(), &what);
    }
    let archive = archive();
    let cluster = NODE.get_or_init(|| {
        Some(Cluster::up_with(
            None,
            &[
                ("PROMFED_NODE", OsStr::new("1")),
                ("PROMFED_IMAGE", archive.as_os_str()),
                // a hang guard for each wait of `up` (pods on a busy machine)
                ("KUBE_LOCAL_TIMEOUT", OsStr::new("600")),
            ],
        ))
    });
    cluster.as_ref().map(|c| (c, guard))
}

macro_rules! node {
    () => {
        match node() {
            Some(node) => node,
            None => return,
        }
    };
}

fn json_of(cluster: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&cluster.kubectl_ok(&all, None)).unwrap()
}

/// promfed's pods (JSON items).
fn pods(cluster: &Cluster) -> Vec<Value> {
    let list = json_of(
        cluster,
        &[
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/name=promfed",
        ],
    );
    list["items"].as_array().unwrap().clone()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    }) && pod["metadata"]["deletionTimestamp"].is_null()
}

/// Wait until the Deployment has `n` Ready pods and nothing else (a rollout done).
fn wait_ready_pods(cluster: &Cluster, n: usize) {
    wait_until(&format!("{n} Ready promfed pods"), HANG_GUARD * 3, || {
        let pods = pods(cluster);
        pods.len() == n && pods.iter().all(ready)
    });
}

/// The review counter summed over the Ready pods (their metrics port, from the host).
fn reviews(cluster: &Cluster) -> f64 {
    pods(cluster)
        .iter()
        .filter(|p| ready(p))
        .map(|p| {
            let url = format!(
                "http://{}:9102/metrics",
                p["status"]["podIP"].as_str().unwrap()
            );
            let text = crate::support::http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
            text.lines()
                .filter(|l| l.starts_with("promfed_reviews_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum()
}

/// The host pids of promfed's containers (containerd's tasks of the pods' container ids).
fn promfed_pids(cluster: &Cluster) -> Vec<u32> {
    let tasks = cluster
        .command("ctr")
        .args(["--address", &cluster.env["PROMFED_LOCAL_CONTAINERD"]])
        .args(["-n", "k8s.io", "tasks", "ls"])
        .output()
        .unwrap();
    assert!(tasks.status.success(), "ctr tasks ls: {}", describe(&tasks));
    let tasks: BTreeMap<String, u32> = String::from_utf8_lossy(&tasks.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect();
    pods(cluster)
        .iter()
        .filter(|p| ready(p))
        .map(|p| {
            let id = p["status"]["containerStatuses"][0]["containerID"]
                .as_str()
                .unwrap();
            let id = id.strip_prefix("containerd://").unwrap();
            *tasks
                .get(id)
                .unwrap_or_else(|| panic!("no task {id}: {tasks:?}"))
        })
        .collect()
}

/// A writer of the TKG ConfigMap in a namespace of its own: each write a `kubectl replace` of
/// the unfederated original (a new annotation each time, so each is an update that promfed
/// reviews), then a read of what was stored.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Outcomes>>,
}

#[derive(Debug, Default)]
struct Outcomes {
    federated: usize,
    /// refused, with the API server's message
    refused: Vec<String>,
    /// stored as written: must never happen
    unfederated: usize,
}

impl Writer {
    fn start(cluster: &'static Cluster, namespace: &str) -> Writer {
        cluster.namespace(namespace);
        let mut object = configmap("tkg/prometheus-server-configmap.yaml", namespace, None);
        let want = rendered_data(&object);
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let text = serde_json::to_string(&object).unwrap();
        let created = cluster.kubectl(&["create", "-f", "-"], Some(&text));
        assert!(created.status.success(), "{}", describe(&created));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let namespace = namespace.to_string();
        let thread = std::thread::spawn(move || {
            let mut outcomes = Outcomes::default();
            let mut seq = 0u64;
            while !flag.load(Ordering::Relaxed) {
                seq += 1;
                object["metadata"]["annotations"] = json!({"promfed.test/write": seq.to_string()});
                let text = serde_json::to_string(&object).unwrap();
                let out = cluster.kubectl(&["replace", "-f", "-"], Some(&text));
                if !out.status.success() {
                    outcomes
                        .refused
                        .push(String::from_utf8_lossy(&out.stderr).trim().to_string());
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                let stored = cluster.get("configmap", &namespace, &name);
                if stored["data"] == want {
                    outcomes.federated += 1;
                } else {
                    outcomes.unfederated += 1;
                }
            }
            outcomes
        });
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Outcomes {
        self.stop.store(true, Ordering::Relaxed);
        let outcomes = self.thread.take().unwrap().join().unwrap();
        eprintln!(
            "{}: {} writes stored federated, {} refused, {} stored unfederated",
            current_test(),
            outcomes.federated,
            outcomes.refused.len(),
            outcomes.unfederated
        );
        outcomes
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn two_ready_pods_answer_the_api_server_through_the_service() {
    let (cluster, _serial) = node!();
    wait_ready_pods(cluster, 2);
    let deployment = json_of(cluster, &["get", "deployment", "-n", NS, "promfed"]);
    assert_eq!(
        deployment["status"]["readyReplicas"], 2,
        "{}",
        deployment["status"]
    );
    // Every pod runs the imported image, probes passing, and no restart.
    for pod in pods(cluster) {
        let status = &pod["status"]["containerStatuses"][0];
        assert_eq!(
            status["image"], cluster.env["PROMFED_LOCAL_IMAGE"],
            "{status}"
        );
        assert_eq!(status["ready"], true, "{status}");
        assert_eq!(status["restartCount"], 0, "{status}");
        let ip = pod["status"]["podIP"].as_str().unwrap();
        for path in ["/readyz", "/healthz"] {
            crate::support::http_get(&format!("http://{ip}:9102{path}"))
                .unwrap_or_else(|e| panic!("{path} of {ip}: {e}"));
        }
    }
    // The webhook's clientConfig is the Service: the API server calls it there.
    let webhook = json_of(cluster, &["get", "mutatingwebhookconfiguration", "promfed"]);
    for w in webhook["webhooks"].as_array().unwrap() {
        assert_eq!(w["clientConfig"]["service"]["name"], "promfed", "{w}");
        assert!(w["clientConfig"].get("url").is_none(), "{w}");
    }
    // A real write of the TKG ConfigMap is stored federated, reviewed by a pod.
    let before = reviews(cluster);
    let namespace = "node-tkg";
    cluster.namespace(namespace);
    let object = configmap("tkg/prometheus-server-configmap.yaml", namespace, None);
    let out = cluster.kubectl(
        &["create", "-f", "-"],
        Some(&serde_json::to_string(&object).unwrap()),
    );
    assert!(out.status.success(), "{}", describe(&out));
    kube::assert_stored_federated(cluster, &object, "created through the Service");
    assert!(reviews(cluster) > before, "no pod counted the review");
}

#[test]
fn the_pods_run_as_65532_read_only_without_capabilities_within_their_memory_limit() {
    let (cluster, _serial) = node!();
    wait_ready_pods(cluster, 2);
    let pids = promfed_pids(cluster);
    assert_eq!(pids.len(), 2);
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(field("Name"), ["promfed"], "{status}");
        assert_eq!(field("Uid"), ["65532"; 4], "{status}");
        assert_eq!(field("Gid"), ["65532"; 4], "{status}");
        for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(field(caps), ["0000000000000000"], "{caps}: {status}");
        }
        assert_eq!(field("NoNewPrivs"), ["1"], "{status}");
        // RuntimeDefault: a seccomp filter
        assert_eq!(field("Seccomp"), ["2"], "{status}");
        // The root filesystem, as the process sees it: read-only.
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let root_mount = mountinfo
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/"))
            .unwrap_or_else(|| panic!("no / in {mountinfo}"));
        let options = root_mount.split_whitespace().nth(5).unwrap();
        assert!(options.split(',').any(|o| o == "ro"), "{root_mount}");
        // The memory limit, from the Deployment (128Mi), in the process's own memory cgroup.
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let memory = cgroups
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
            .unwrap_or_else(|| panic!("no memory cgroup: {cgroups}"));
        let limit = std::fs::read_to_string(format!(
            "/sys/fs/cgroup/memory{memory}/memory.limit_in_bytes"
        ))
        .unwrap();
        assert_eq!(limit.trim(), (128u64 << 20).to_string(), "{memory}");
        let usage = std::fs::read_to_string(format!(
            "/sys/fs/cgroup/memory{memory}/memory.max_usage_in_bytes"
        ))
        .unwrap();
        let usage: u64 = usage.trim().parse().unwrap();
        assert!(usage < 128 << 20, "peak {usage} bytes");
    }
}

#[test]
fn a_rolling_update_under_a_writer_stores_nothing_unfederated_and_refuses_nothing() {
    let (cluster, _serial) = node!();
    wait_ready_pods(cluster, 2);
    // A new tag of the same image, as a release would bring: the Deployment rolls.
    let image = &cluster.env["PROMFED_LOCAL_IMAGE"];
    let next = format!("{image}-rollout");
    let tag = cluster
        .command("ctr")
        .args(["--address", &cluster.env["PROMFED_LOCAL_CONTAINERD"]])
        .args(["-n", "k8s.io", "images", "tag", "--force", image, &next])
        .output()
        .unwrap();
    assert!(tag.status.success(), "{}", describe(&tag));
    let writer = Writer::start(cluster, "node-rollout");
    wait_until("writes before the rollout", HANG_GUARD, || {
        reviews(cluster) > 0.0
    });
    cluster.kubectl_ok(
        &[
            "set",
            "image",
            "-n",
            NS,
            "deployment/promfed",
            &format!("promfed={next}"),
        ],
        None,
    );
    let rollout = cluster.kubectl(
        &[
            "rollout",
            "status",
            "-n",
            NS,
            "deployment/promfed",
            "--timeout=600s",
        ],
        None,
    );
    assert!(rollout.status.success(), "{}", describe(&rollout));
    wait_ready_pods(cluster, 2);
    let outcomes = writer.finish();
    assert_eq!(outcomes.unfederated, 0, "{outcomes:?}");
    assert!(outcomes.refused.is_empty(), "{outcomes:?}");
    assert!(outcomes.federated > 0, "{outcomes:?}");
    for pod in pods(cluster) {
        assert_eq!(pod["spec"]["containers"][0]["image"], json!(next));
    }
}

#[test]
fn a_renewed_certificate_reaches_the_pods_through_the_secret_and_no_write_is_lost() {
    let (cluster, _serial) = node!();
    wait_ready_pods(cluster, 2);
    let overlay = PathBuf::from(&cluster.env["PROMFED_LOCAL_OVERLAY"]);
    let certs = overlay.join("certs");
    // A new serving certificate from the same CA (so the caBundle stays right).
    let out = cluster
        .command(root().join("certs/generate.sh").to_str().unwrap())
        .arg(&certs)
        .arg("--force")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let new_cert = std::fs::read_to_string(certs.join("tls.crt")).unwrap();
    let deployment = json_of(cluster, &["get", "deployment", "-n", NS, "promfed"]);
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let secret_name = volumes.iter().find(|v| v["name"] == "tls").unwrap()["secret"]["secretName"]
        .as_str()
        .unwrap()
        .to_string();
    let writer = Writer::start(cluster, "node-renewal");
    // The Secret updated in place, as cert-manager does: the kubelet swaps `..data`.
    let mut secret = json_of(cluster, &["get", "secret", "-n", NS, &secret_name]);
    let b64 = |path: &str| {
        let out = std::process::Command::new("base64")
            .args(["-w0", path])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    secret["data"]["tls.crt"] = json!(b64(certs.join("tls.crt").to_str().unwrap()));
    secret["data"]["tls.key"] = json!(b64(certs.join("tls.key").to_str().unwrap()));
    cluster.kubectl_ok(
        &["replace", "-f", "-"],
        Some(&serde_json::to_string(&secret).unwrap()),
    );
    // Each pod serves the new certificate (what its TLS port presents).
    let served = |ip: &str| -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("openssl s_client -connect \"$1:8443\" -servername promfed.promfed-system.svc </dev/null 2>/dev/null | openssl x509")
            .arg("sh")
            .arg(ip)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for pod in pods(cluster) {
        let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
        wait_until(
            &format!("{ip} serves the renewed certificate"),
            HANG_GUARD * 3,
            || served(&ip) == new_cert.trim(),
        );
    }
    let outcomes = writer.finish();
    assert_eq!(outcomes.unfederated, 0, "{outcomes:?}");
    assert!(outcomes.refused.is_empty(), "{outcomes:?}");
    assert!(outcomes.federated > 0, "{outcomes:?}");
    // no restart: the files were reloaded
    for pod in pods(cluster) {
        assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    }
}

#[test]
fn with_both_pods_gone_the_write_is_refused_and_resumes_when_one_is_ready() {
    let (cluster, _serial) = node!();
    wait_ready_pods(cluster, 2);
    let namespace = "node-outage";
    cluster.namespace(namespace);
    let object = configmap("tkg/prometheus-server-configmap.yaml", namespace, None);
    let text = serde_json::to_string(&object).unwrap();
    cluster.kubectl_ok(
        &["scale", "-n", NS, "deployment/promfed", "--replicas=0"],
        None,
    );
    wait_until("no promfed pod", HANG_GUARD * 3, || {
        pods(cluster).is_empty()
    });
    // failurePolicy: Fail: no webhook, no write (and nothing stored).
    let out = cluster.kubectl(&["create", "-f", "-"], Some(&text));
    assert!(
        !out.status.success(),
        "stored without promfed: {}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed calling webhook \"prometheus-server.promfed.io\""),
        "{stderr}"
    );
    let missing = cluster.kubectl(
        &["get", "configmap", "-n", namespace, "prometheus-server"],
        None,
    );
    assert!(!missing.status.success(), "{}", describe(&missing));
    cluster.kubectl_ok(
        &["scale", "-n", NS, "deployment/promfed", "--replicas=2"],
        None,
    );
    wait_until("a Ready promfed pod", HANG_GUARD * 3, || {
        pods(cluster).iter().any(ready)
    });
    // The endpoints follow readiness; the first writes may still find none.
    wait_until("the write accepted", HANG_GUARD, || {
        cluster
            .kubectl(&["create", "-f", "-"], Some(&text))
            .status
            .success()
    });
    kube::assert_stored_federated(cluster, &object, "written once a pod was Ready again");
    wait_ready_pods(cluster, 2);
}

#[test]
fn megabyte_configmaps_from_four_writers_at_once_stay_within_the_pods_memory_limit() {
    let (cluster, _serial) = node!();
    let Some(python) = crate::support::python() else {
        skip::<()>(&current_test(), "python");
        return;
    };
    wait_ready_pods(cluster, 2);
    // The largest ConfigMap the API server stores (1 MB, made by tests/peers/mkbig.py), from
    // four writers at once, so both pods hold several at a time.
    let out = crate::support::run(
        &python,
        &[
            crate::support::peer_script("mkbig.py").as_os_str(),
            crate::support::data("").as_os_str(),
            OsStr::new("1000000"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let big = promfed::yaml::parse(&text, promfed::yaml::Limits::default())
        .unwrap()
        .unwrap()
        .to_json();
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let namespace = format!("node-big-{i}");
            cluster.namespace(&namespace);
            let mut object = big.clone();
            object["metadata"]["namespace"] = json!(namespace);
            std::thread::spawn(move || {
                let out = cluster.kubectl(
                    &["create", "-f", "-"],
                    Some(&serde_json::to_string(&object).unwrap()),
                );
                assert!(out.status.success(), "{}", describe(&out));
                object
            })
        })
        .collect();
    for writer in writers {
        let object = writer.join().unwrap();
        kube::assert_stored_federated(cluster, &object, "a 1 MB ConfigMap of four at once");
    }
    for pid in promfed_pids(cluster) {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let memory = cgroups
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
            .unwrap();
        let read = |file: &str| -> u64 {
            std::fs::read_to_string(format!("/sys/fs/cgroup/memory{memory}/{file}"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let peak = read("memory.max_usage_in_bytes");
        eprintln!(
            "promfed pid {pid}: peak memory {} KiB of {} KiB",
            peak >> 10,
            read("memory.limit_in_bytes") >> 10
        );
        assert!(peak < read("memory.limit_in_bytes"), "peak {peak}");
        assert_eq!(read("memory.failcnt"), 0, "the limit was hit");
    }
    for pod in pods(cluster) {
        assert_eq!(
            pod["status"]["containerStatuses"][0]["restartCount"], 0,
            "{}",
            pod["status"]
        );
    }
}

#[test]
fn down_leaves_no_process_mount_cgroup_interface_or_namespace() {
    // A node of its own (the shared one stays up for the others), taken down here.
    let Some((_, _serial)) = node() else { return };
    let own = Cluster::up_with(
        None,
        &[
            ("PROMFED_NODE", OsStr::new("1")),
            ("PROMFED_IMAGE", archive().as_os_str()),
            ("KUBE_LOCAL_TIMEOUT", OsStr::new("600")),
        ],
    );
    let netns = own.env["PROMFED_LOCAL_NETNS"].clone();
    let id = netns.strip_prefix("promfed-").unwrap().to_string();
    let dir = own.dir.to_str().unwrap().to_string();
    // Up, it has all of them.
    let netns_list = || {
        String::from_utf8(
            std::process::Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    let links = || {
        String::from_utf8(
            std::process::Command::new("ip")
                .args(["-o", "link"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    let cgroups = || {
        std::fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .filter_map(|h| {
                let p = h.ok()?.path().join(&netns);
                p.exists().then(|| p.display().to_string())
            })
            .collect::<Vec<_>>()
    };
    let mounts = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&dir))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    // every process whose command line or cgroup names this node
    let processes = || {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
            // (not the test's own reaper, which waits for this process to end)
            let reaper = cmdline.contains(" reaper ");
            if (cmdline.contains(&dir) && !reaper) || cgroup.contains(&netns) {
                found.push(format!("{pid}: {cmdline}"));
            }
        }
        found
    };
    // The node's mounts live in the mount namespace of its holder process: the pods' root
    // filesystems and volumes are there, not in the host's.
    let holder = std::fs::read_to_string(own.dir.join("node-holder.pid")).unwrap();
    let node_ns = std::fs::read_link(format!("/proc/{}/ns/mnt", holder.trim())).unwrap();
    let node_mounts =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", holder.trim())).unwrap();
    assert!(
        node_mounts
            .lines()
            .any(|l| l.contains(&dir) && l.contains(" overlay ")),
        "no pod root filesystem in the node's mounts: {node_mounts}"
    );
    // every process in that mount namespace
    let in_node_ns = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read_link(e.path().join("ns/mnt")).is_ok_and(|ns| ns == node_ns))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    assert!(!in_node_ns().is_empty());
    assert!(netns_list().contains(&netns), "{}", netns_list());
    assert!(links().contains(&format!("pf{id}")), "{}", links());
    assert!(!cgroups().is_empty());
    assert!(!processes().is_empty());
    let out = std::process::Command::new(root().join("scripts/kube-local.sh"))
        .args(["down", &dir])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!netns_list().contains(&netns), "{}", netns_list());
    assert!(!links().contains(&format!("pf{id}")), "{}", links());
    assert_eq!(cgroups(), Vec::<String>::new());
    assert_eq!(mounts(), Vec::<String>::new());
    // nothing keeps the node's mount namespace, so its mounts are gone with it
    assert_eq!(in_node_ns(), Vec::<String>::new());
    assert_eq!(processes(), Vec::<String>::new());
}
