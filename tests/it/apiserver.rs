//! promfed as kube-apiserver calls it: a real API server (`scripts/kube-local.sh`, pinned
//! kube-apiserver, etcd and kubectl built from their Go modules) with the `deploy/local`
//! overlay, i.e. the shipped MutatingWebhookConfiguration (rules, matchConditions,
//! namespaceSelector, timeouts, failurePolicy) pointed at a local `promfed serve`.
//!
//! The tests that share one cluster each work in namespaces of their own; the ones that watch
//! promfed's review counter or stop promfed get a cluster of their own.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::{Value, json};

use crate::cluster;
use crate::support::kube::{self, Cluster, assert_stored_federated, configmap, rendered_data};
use crate::support::{self, describe, root};

/// The cluster most tests share, started on first use.
fn shared() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| kube::tools_built().then(|| Cluster::up(None)))
        .as_ref()
}

/// The real ConfigMaps promfed is for (corpus copies under tests/data).
const CONFIGMAPS: &[(&str, &str)] = &[
    ("tkg", "tkg/prometheus-server-configmap.yaml"),
    (
        "chart-14",
        "helm/prometheus-server-configmap-chart-14.12.0.yaml",
    ),
    (
        "chart-29",
        "helm/prometheus-server-configmap-chart-29.27.0.yaml",
    ),
];

fn write_temp(object: &Value) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    std::fs::write(file.path(), serde_json::to_vec_pretty(object).unwrap()).unwrap();
    file
}

// ---------------------------------------------------------------------------------------
// a. every overlay of deploy/ is accepted

#[test]
fn every_overlay_is_accepted_by_the_api_server_client_side_and_server_side() {
    // Its own cluster, without deploy/local's webhook: that one has the base's name and a
    // URL, and applying the base's (a Service) over it would merge the two.
    let cluster = cluster!(own);
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", "promfed"], None);
    // The namespaces the dashboards go to exist wherever those Grafanas run.
    for namespace in ["tanzu-system-dashboards", "monitoring"] {
        cluster.namespace(namespace);
    }
    // cert-manager's CRDs (from its Go module, by scripts/build-tools.sh) for its overlay.
    let out = std::process::Command::new(root().join("scripts/build-tools.sh"))
        .args(["dir", "cert-manager-crds"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let crds = std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("crds");
    cluster.kubectl_ok(
        &["apply", "--server-side", "-f", crds.to_str().unwrap()],
        None,
    );
    cluster.kubectl_ok(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=120s",
            "crd/certificates.cert-manager.io",
            "crd/issuers.cert-manager.io",
        ],
        None,
    );
    // The self-signed overlay reads the certificates generate.sh writes next to it.
    let tmp = tempfile::tempdir().unwrap();
    let copy = |from: &str| {
        let out = std::process::Command::new("cp")
            .args(["-r", root().join(from).to_str().unwrap()])
            .arg(tmp.path().join(from.trim_start_matches("deploy/")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
    };
    copy("deploy/base");
    copy("deploy/self-signed");
    let out = support::run(
        &root().join("certs/generate.sh"),
        &[tmp.path().join("self-signed/certs").as_os_str()],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));

    let overlays: Vec<(String, std::path::PathBuf)> = [
        "deploy/base",
        "deploy/cert-manager",
        "deploy/gke-private",
        "deploy/dashboards",
        "deploy/dashboards-kube-prometheus-stack",
    ]
    .iter()
    .map(|o| (o.to_string(), root().join(o)))
    .chain([(
        "deploy/self-signed".to_string(),
        tmp.path().join("self-signed"),
    )])
    .collect();
    let mut refused = Vec::new();
    for (name, dir) in &overlays {
        for mode in [
            &["--dry-run=server"][..],
            &["--server-side", "--dry-run=server"][..],
        ] {
            let mut args = vec!["apply", "-k", dir.to_str().unwrap()];
            args.extend_from_slice(mode);
            let out = cluster.kubectl(&args, None);
            if !out.status.success() {
                refused.push(format!("{name} {mode:?}: {}", describe(&out)));
            }
        }
    }
    assert!(refused.is_empty(), "{}", refused.join("\n\n"));
}

// ---------------------------------------------------------------------------------------
// b. the real ConfigMaps through every way kubectl writes them

#[test]
fn configmaps_written_every_way_are_stored_as_promfed_render_writes_them() {
    let cluster = cluster!();
    for (short, path) in CONFIGMAPS {
        let namespace = format!("write-{short}");
        cluster.namespace(&namespace);
        let ns = namespace.as_str();

        // create
        let object = configmap(path, ns, Some("by-create"));
        let file = write_temp(&object);
        cluster.kubectl_ok(&["create", "-f", file.path().to_str().unwrap()], None);
        assert_stored_federated(cluster, &object, &format!("{short}: kubectl create"));

        // apply (client-side), then kubectl diff shows nothing
        let object = configmap(path, ns, Some("by-apply"));
        let file = write_temp(&object);
        let f = file.path().to_str().unwrap();
        cluster.kubectl_ok(&["apply", "-f", f], None);
        assert_stored_federated(cluster, &object, &format!("{short}: kubectl apply"));
        let diff = cluster.kubectl(&["diff", "-f", f], None);
        assert_eq!(
            diff.status.code(),
            Some(0),
            "{short}: kubectl diff after apply: {}",
            describe(&diff)
        );
        // Applied again: kubectl's three-way patch sends the template's data again (it puts
        // back whatever differs from the file, promfed's rewrite included), so kubectl says
        // "configured"; promfed rewrites it to what is stored, and the API server, seeing no
        // change, writes nothing: the resourceVersion stays.
        let version =
            |c: &Cluster| c.get("configmap", ns, "by-apply")["metadata"]["resourceVersion"].clone();
        let before = version(cluster);
        let again = cluster.kubectl_ok(&["apply", "-f", f], None);
        assert_eq!(
            version(cluster),
            before,
            "{short}: re-applied, it was written: {again}"
        );
        assert_stored_federated(cluster, &object, &format!("{short}: kubectl apply again"));
        let before = version(cluster);
        cluster.kubectl_ok(
            &["apply", "--server-side", "--force-conflicts", "-f", f],
            None,
        );
        cluster.kubectl_ok(&["apply", "--server-side", "-f", f], None);
        let after = version(cluster);
        cluster.kubectl_ok(&["apply", "--server-side", "-f", f], None);
        assert_eq!(
            version(cluster),
            after,
            "{short}: server-side re-apply wrote it"
        );
        assert_ne!(before, json!(null));

        // apply --server-side
        let object = configmap(path, ns, Some("by-ssa"));
        let file = write_temp(&object);
        let f = file.path().to_str().unwrap();
        cluster.kubectl_ok(&["apply", "--server-side", "-f", f], None);
        assert_stored_federated(
            cluster,
            &object,
            &format!("{short}: kubectl apply --server-side"),
        );
        let diff = cluster.kubectl(&["diff", "--server-side", "-f", f], None);
        assert_eq!(diff.status.code(), Some(0), "{short}: {}", describe(&diff));

        // replace, with a changed rule file
        let object = configmap(path, ns, Some("by-replace"));
        let file = write_temp(&object);
        cluster.kubectl_ok(&["create", "-f", file.path().to_str().unwrap()], None);
        let mut changed = object.clone();
        changed["data"]["recording_rules.yml"] = json!(
            "groups:\n- name: replaced\n  rules:\n  - record: job:up:sum\n    expr: sum by (job) (up)\n"
        );
        let file = write_temp(&changed);
        cluster.kubectl_ok(&["replace", "-f", file.path().to_str().unwrap()], None);
        assert_stored_federated(cluster, &changed, &format!("{short}: kubectl replace"));

        // patch: the unfederated prometheus.yml put back by a merge patch
        let stored = cluster.get("configmap", ns, "by-replace");
        let original = object["data"]["prometheus.yml"].clone();
        assert_ne!(stored["data"]["prometheus.yml"], original);
        let patch = json!({"data": {"prometheus.yml": original}}).to_string();
        cluster.kubectl_ok(
            &[
                "patch",
                "configmap",
                "by-replace",
                "-n",
                ns,
                "--type",
                "merge",
                "-p",
                &patch,
            ],
            None,
        );
        let mut patched = stored.clone();
        patched["data"]["prometheus.yml"] = original;
        assert_stored_federated(cluster, &patched, &format!("{short}: kubectl patch"));

        // --dry-run=server: the federated object comes back, nothing is stored
        let object = configmap(path, ns, Some("by-dry-run"));
        let file = write_temp(&object);
        let text = cluster.kubectl_ok(
            &[
                "create",
                "--dry-run=server",
                "-o",
                "json",
                "-f",
                file.path().to_str().unwrap(),
            ],
            None,
        );
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["data"], rendered_data(&object), "{short}: dry run");
        let gone = cluster.kubectl(&["get", "configmap", "-n", ns, "by-dry-run"], None);
        assert!(
            !gone.status.success() && describe(&gone).contains("NotFound"),
            "{short}: a dry run stored the object: {}",
            describe(&gone)
        );
    }
}

// ---------------------------------------------------------------------------------------
// c. the selectors catch every real shape and nothing else

/// A namespace of this test for each row (several rows share a name).
fn shape_namespace(row: usize) -> String {
    format!("shape-{row}")
}

fn shape_object(object: &promfed::engine::ObjectRef, namespace: &str) -> Value {
    let data: BTreeMap<&str, &str> = (object.data_keys.iter())
        .map(|k| {
            let value = if k == "prometheus.yml" {
                "scrape_configs:\n- job_name: prometheus\n  static_configs:\n  - targets: [localhost:9090]\n"
            } else {
                "{}\n"
            };
            (k.as_str(), value)
        })
        .collect();
    let mut value = json!({
        "apiVersion": "v1",
        "kind": object.kind,
        "metadata": {"name": object.name, "namespace": namespace, "labels": object.labels},
    });
    if object.kind == "Secret" {
        value["stringData"] = json!(data);
    } else if !data.is_empty() {
        value["data"] = json!(data);
    }
    value
}

#[test]
fn selectors_send_every_real_shape_to_promfed_and_nothing_else() {
    // Its own cluster: it counts every review promfed answers.
    let cluster = cluster!(own);
    let mut wrong = Vec::new();
    let mut rows: Vec<(String, Value, bool)> = crate::selection::shapes()
        .into_iter()
        .enumerate()
        .map(|(row, (case, object, selected))| {
            let namespace = shape_namespace(row);
            (case, shape_object(&object, &namespace), selected)
        })
        .collect();
    // Never sent, whatever they hold: the webhook's own namespace and kube-system.
    for namespace in ["kube-system", "promfed-system"] {
        rows.push((
            format!("the TKG ConfigMap in {namespace}"),
            configmap(CONFIGMAPS[0].1, namespace, None),
            false,
        ));
    }
    for (case, object, selected) in &rows {
        let namespace = object["metadata"]["namespace"].as_str().unwrap();
        cluster.namespace(namespace);
        let before = cluster.reviews();
        let file = write_temp(object);
        let out = cluster.kubectl(&["create", "-f", file.path().to_str().unwrap()], None);
        if !out.status.success() {
            wrong.push(format!("{case}: not created: {}", describe(&out)));
            continue;
        }
        let sent = cluster.reviews() - before;
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        let stored = cluster.get(kind, namespace, name);
        let changed = object.get("data").is_some() && stored["data"] != object["data"];
        match (selected, sent, changed) {
            (true, 1.0, true) | (false, 0.0, false) => {}
            _ => wrong.push(format!(
                "{case}: want {}, got {sent} reviews and data {}",
                if *selected {
                    "one review and a federated object"
                } else {
                    "no review"
                },
                if changed { "changed" } else { "unchanged" }
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------
// d. failurePolicy: Fail, for real

#[test]
fn with_promfed_down_only_prometheus_configmaps_are_refused_and_come_back_with_it() {
    let cluster = cluster!(own);
    let pid = cluster.promfed_pid();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = (cmdline.split(|b| *b == 0))
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let status = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + support::HANG_GUARD;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "promfed did not stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    cluster.namespace("down");
    let tkg = configmap(CONFIGMAPS[0].1, "down", None);
    let file = write_temp(&tkg);
    let refused = cluster.kubectl(&["create", "-f", file.path().to_str().unwrap()], None);
    assert!(!refused.status.success(), "written with promfed down");
    let message = String::from_utf8_lossy(&refused.stderr).into_owned();
    eprintln!("the API server, promfed down: {message}");
    assert!(
        message.contains("prometheus-server.promfed.io"),
        "the refusal does not name promfed's webhook: {message}"
    );
    // Everything else is written.
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "other", "namespace": "down"}, "data": {"a": "b"}});
    let file_other = write_temp(&other);
    cluster.kubectl_ok(&["create", "-f", file_other.path().to_str().unwrap()], None);
    for namespace in ["kube-system", "promfed-system"] {
        let object = configmap(CONFIGMAPS[0].1, namespace, Some("while-down"));
        let file = write_temp(&object);
        cluster.kubectl_ok(&["create", "-f", file.path().to_str().unwrap()], None);
    }

    // promfed back: the same write succeeds, federated.
    let log = std::fs::File::create(cluster.dir.join("promfed-restarted.log")).unwrap();
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    std::fs::write(cluster.dir.join("promfed.pid"), child.id().to_string()).unwrap();
    let deadline = Instant::now() + support::HANG_GUARD;
    loop {
        let out = cluster.kubectl(&["create", "-f", file.path().to_str().unwrap()], None);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline && child.try_wait().unwrap().is_none(),
            "still refused with promfed back: {}",
            describe(&out)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_stored_federated(&cluster, &tkg, "after promfed came back");
}

// ---------------------------------------------------------------------------------------
// g. the largest ConfigMap Kubernetes stores

#[test]
fn a_one_megabyte_configmap_goes_through_the_api_server() {
    let cluster = cluster!();
    let python = support::require!(python);
    let out = support::run(
        &python,
        &[
            support::peer_script("mkbig.py").as_os_str(),
            support::data("").as_os_str(),
            OsStr::new("1000000"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let node = promfed::yaml::parse(&text, promfed::yaml::Limits::default())
        .unwrap()
        .unwrap();
    let mut object = node.to_json();
    object["metadata"]["namespace"] = json!("big");
    cluster.namespace("big");
    let file = write_temp(&object);
    let started = Instant::now();
    cluster.kubectl_ok(&["create", "-f", file.path().to_str().unwrap()], None);
    let took = started.elapsed();
    eprintln!(
        "a {} byte ConfigMap through the API server and promfed (debug build): {took:?}",
        text.len()
    );
    assert_stored_federated(cluster, &object, "the 1 MB ConfigMap");
}
