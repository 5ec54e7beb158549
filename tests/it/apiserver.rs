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

fn shape_object(object: &promfed::object::ObjectRef, namespace: &str) -> Value {
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
    let argv = cluster.stop_promfed();

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
    let _promfed = cluster.start_promfed(&argv);
    let deadline = Instant::now() + support::HANG_GUARD;
    loop {
        let out = cluster.kubectl(&["create", "-f", file.path().to_str().unwrap()], None);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
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

/// A ConfigMap within Kubernetes' limit whose rewrite would not be (800 kB of notes promfed
/// does not read, and 100 kB of tiny rules that grow to about 290 kB) is refused with
/// promfed's message naming both sizes, not with the API server's `Too long` that does not
/// name promfed; nothing is stored.
#[test]
fn a_configmap_the_rewrite_would_push_over_the_limit_is_refused_by_promfed() {
    let cluster = cluster!();
    let namespace = "toobig";
    cluster.namespace(namespace);
    let mut object = configmap("tkg/prometheus-server-configmap.yaml", namespace, None);
    let rules = crate::limits::dense_rule_file(crate::limits::Shape::TinyRules, 100_000);
    object["data"]["recording_rules.yml"] = json!(rules);
    object["data"]["notes.txt"] = json!("promfed does not read this line.\n".repeat(25_000));
    let size: usize = (object["data"].as_object().unwrap().iter())
        .map(|(k, v)| k.len() + v.as_str().unwrap().len())
        .sum();
    let file = write_temp(&object);
    let out = cluster.kubectl(&["create", "-f", file.path().to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stored: {stderr}");
    for want in [
        "admission webhook",
        "promfed cannot rewrite ConfigMap",
        "over Kubernetes' limit of 1048576 bytes",
        &format!("(it is {size} bytes now)"),
    ] {
        assert!(stderr.contains(want), "{want:?} not in {stderr}");
    }
    assert!(!stderr.contains("Too long"), "{stderr}");
    let get = cluster.kubectl(
        &["get", "configmap", "-n", namespace, "prometheus-server"],
        None,
    );
    assert!(!get.status.success(), "nothing is stored");
}

// ---------------------------------------------------------------------------------------
// e. TLS as the API server checks it

/// promfed's `promfed_certificate_expiry_timestamp_seconds`: the notAfter it serves.
fn served_expiry(cluster: &Cluster) -> f64 {
    let url = format!("{}/metrics", cluster.env["PROMFED_LOCAL_METRICS"]);
    let text = support::http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (text.lines())
        .find_map(|l| l.strip_prefix("promfed_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .expect("promfed_certificate_expiry_timestamp_seconds")
}

/// notAfter of a PEM certificate file, seconds since the epoch (`openssl x509 -enddate`).
fn not_after(cert: &std::path::Path) -> f64 {
    let out = support::run(
        std::path::Path::new("sh"),
        &[
            OsStr::new("-c"),
            OsStr::new("date -d \"$(openssl x509 -noout -enddate -in \"$1\" | cut -d= -f2)\" +%s"),
            OsStr::new("sh"),
            cert.as_os_str(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Wait until promfed serves a certificate with this notAfter (it polls its files).
fn wait_served(cluster: &Cluster, expiry: f64) {
    let deadline = Instant::now() + support::HANG_GUARD;
    while served_expiry(cluster) != expiry {
        assert!(
            Instant::now() < deadline,
            "promfed did not load the new certificate"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Stop promfed and start it again with the same command line (its certificate files read
/// anew, and no connection the API server kept open survives). The new process is killed
/// and reaped when the returned guard drops.
fn restart_promfed(cluster: &Cluster) -> support::KillOnDrop {
    let argv = cluster.stop_promfed();
    cluster.start_promfed(&argv)
}

/// Create (and delete again) the TKG ConfigMap in `namespace` until the outcome is `ok`; the
/// last attempt's output. The API server takes a moment to see a changed webhook
/// configuration.
fn write_until(cluster: &Cluster, namespace: &str, ok: bool) -> std::process::Output {
    let object = configmap(CONFIGMAPS[0].1, namespace, Some("tls-probe"));
    let file = write_temp(&object);
    let deadline = Instant::now() + support::HANG_GUARD;
    loop {
        let out = cluster.kubectl(&["create", "-f", file.path().to_str().unwrap()], None);
        if out.status.success() {
            assert_stored_federated(cluster, &object, "a TLS probe");
            cluster.kubectl_ok(&["delete", "configmap", "-n", namespace, "tls-probe"], None);
        }
        if out.status.success() == ok {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "the write never {}: {}",
            if ok { "succeeded" } else { "failed" },
            describe(&out)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A JSON patch of the webhook's caBundle to the PEM file `ca`.
fn set_ca_bundle(cluster: &Cluster, ca: &std::path::Path) {
    use base64::Engine as _;
    let pem = std::fs::read(ca).unwrap();
    let patch = json!([{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle",
        "value": base64::engine::general_purpose::STANDARD.encode(pem)}])
    .to_string();
    cluster.kubectl_ok(
        &[
            "patch",
            "mutatingwebhookconfiguration",
            "promfed",
            "--type",
            "json",
            "-p",
            &patch,
        ],
        None,
    );
}

#[test]
fn a_webhook_trusted_with_another_ca_is_refused_with_the_api_servers_x509_error() {
    let cluster = cluster!(own);
    cluster.namespace("wrong-ca");
    // Another CA, as a second run of generate.sh elsewhere makes one.
    let other = tempfile::tempdir().unwrap();
    let out = support::run(
        &root().join("certs/generate.sh"),
        &[
            other.path().as_os_str(),
            OsStr::new("--ip"),
            OsStr::new("127.0.0.1"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    set_ca_bundle(&cluster, &other.path().join("ca.crt"));
    let refused = write_until(&cluster, "wrong-ca", false);
    let message = String::from_utf8_lossy(&refused.stderr).into_owned();
    eprintln!("the API server, caBundle of another CA: {message}");
    for want in [
        "prometheus-server.promfed.io",
        "x509",
        "certificate signed by unknown authority",
    ] {
        assert!(message.contains(want), "no {want:?} in: {message}");
    }
    // The right caBundle back: written again.
    set_ca_bundle(&cluster, &cluster.dir.join("promfed-certs/ca.crt"));
    write_until(&cluster, "wrong-ca", true);
}

/// An expired serving certificate for 127.0.0.1 signed by the CA in `ca_dir` (ca.crt, ca.key):
/// `openssl ca`, which, unlike `openssl x509 -req`, can date a certificate in the past.
fn expired_certificate(ca_dir: &std::path::Path, out: &std::path::Path) {
    const SCRIPT: &str = r#"
set -eu
ca=$1 out=$2 w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/tls.key" 2>/dev/null
openssl req -new -key "$out/tls.key" -subj /CN=promfed.promfed-system.svc -out "$w/req.csr"
touch "$w/index.txt"
cat >"$w/ca.cnf" <<EOF
[ca]
default_ca = d
[d]
database = $w/index.txt
new_certs_dir = $w
serial = $w/serial
default_md = sha256
policy = p
unique_subject = no
[p]
commonName = supplied
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:promfed.promfed-system.svc
EOF
openssl rand -hex 16 >"$w/serial"
openssl ca -batch -notext -config "$w/ca.cnf" -extensions ext -cert "$ca/ca.crt" \
    -keyfile "$ca/ca.key" -startdate 20240101000000Z -enddate 20240201000000Z \
    -in "$w/req.csr" -out "$out/tls.crt" 2>"$w/log" || { cat "$w/log" >&2; exit 1; }
"#;
    let out_run = support::run(
        std::path::Path::new("sh"),
        &[
            OsStr::new("-c"),
            OsStr::new(SCRIPT),
            OsStr::new("sh"),
            ca_dir.as_os_str(),
            out.as_os_str(),
        ],
        None,
    );
    assert!(out_run.status.success(), "{}", describe(&out_run));
}

/// Replace `to` by `from` with a rename (a reader sees the old file or the new one).
fn swap_file(from: &std::path::Path, to: &std::path::Path) {
    let tmp = to.with_extension("swap");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn an_expired_serving_certificate_is_refused_with_the_api_servers_x509_error() {
    let cluster = cluster!(own);
    cluster.namespace("expired");
    let certs = cluster.dir.join("promfed-certs");
    let saved = tempfile::tempdir().unwrap();
    let expired = tempfile::tempdir().unwrap();
    for f in ["tls.crt", "tls.key"] {
        std::fs::copy(certs.join(f), saved.path().join(f)).unwrap();
    }
    expired_certificate(&certs, expired.path());
    // Key first: promfed refuses the mismatched pair in between and keeps the good one.
    swap_file(&expired.path().join("tls.key"), &certs.join("tls.key"));
    swap_file(&expired.path().join("tls.crt"), &certs.join("tls.crt"));
    wait_served(&cluster, not_after(&expired.path().join("tls.crt")));

    // The API server may still hold a connection it opened with the good certificate.
    let object = configmap(CONFIGMAPS[0].1, "expired", Some("kept-connection"));
    let file = write_temp(&object);
    let kept = cluster.kubectl(&["create", "-f", file.path().to_str().unwrap()], None);
    eprintln!(
        "first write after the swap to an expired certificate (no restart): {}",
        if kept.status.success() {
            "succeeded (the API server kept its connection)".to_string()
        } else {
            format!("refused: {}", String::from_utf8_lossy(&kept.stderr))
        }
    );
    // A new promfed process: every connection is new, every handshake sees the expired one.
    let _promfed = restart_promfed(&cluster);
    let refused = write_until(&cluster, "expired", false);
    let message = String::from_utf8_lossy(&refused.stderr).into_owned();
    eprintln!("the API server, promfed's certificate expired: {message}");
    for want in [
        "prometheus-server.promfed.io",
        "x509",
        "certificate has expired or is not yet valid",
    ] {
        assert!(message.contains(want), "no {want:?} in: {message}");
    }
    // The good certificate back, through the same reload: written again.
    swap_file(&saved.path().join("tls.key"), &certs.join("tls.key"));
    swap_file(&saved.path().join("tls.crt"), &certs.join("tls.crt"));
    write_until(&cluster, "expired", true);
}

/// SHA-256 fingerprint of the certificate a new TLS connection to `url` is served.
fn served_fingerprint(url: &str) -> String {
    let host = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let out = support::run(
        std::path::Path::new("sh"),
        &[
            OsStr::new("-c"),
            OsStr::new(
                "openssl s_client -connect \"$1\" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256",
            ),
            OsStr::new("sh"),
            OsStr::new(&host),
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn file_fingerprint(cert: &std::path::Path) -> String {
    let out = support::run(
        std::path::Path::new("openssl"),
        &[
            OsStr::new("x509"),
            OsStr::new("-noout"),
            OsStr::new("-fingerprint"),
            OsStr::new("-sha256"),
            OsStr::new("-in"),
            cert.as_os_str(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// certs/generate.sh's ca.crt, tls.crt and tls.key in `dir`, after a run with `extra`.
fn generated(dir: &std::path::Path, extra: &[&str]) -> Vec<(&'static str, String)> {
    let mut args: Vec<&OsStr> = vec![dir.as_os_str(), OsStr::new("--ip"), OsStr::new("127.0.0.1")];
    args.extend(extra.iter().map(OsStr::new));
    let out = support::run(&root().join("certs/generate.sh"), &args, None);
    assert!(out.status.success(), "{}", describe(&out));
    ["ca.crt", "tls.crt", "tls.key"]
        .into_iter()
        .map(|f| (f, std::fs::read_to_string(dir.join(f)).unwrap()))
        .collect()
}

fn borrowed<'a>(files: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    files.iter().map(|(n, t)| (*n, t.as_str())).collect()
}

#[test]
fn the_serving_certificate_rotated_through_a_data_swap_fails_no_write() {
    if !kube::tools_built() {
        support::skip::<()>(
            &support::current_test(),
            "kube-apiserver (scripts/build-tools.sh)",
        );
        return;
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    // generate.sh's files, in a kubelet-style mount promfed reads them from.
    let tmp = tempfile::tempdir().unwrap();
    let gen_dir = tmp.path().join("generated");
    let mount_dir = tmp.path().join("secret");
    let mut mount = support::Mount::new(&mount_dir, &borrowed(&generated(&gen_dir, &[])));
    let cluster = Cluster::up_with(None, &[("PROMFED_CERT_DIR", mount_dir.as_os_str())]);
    cluster.namespace("rotation");
    let webhook = cluster.env["PROMFED_LOCAL_WEBHOOK"].clone();
    assert_eq!(
        served_fingerprint(&webhook),
        file_fingerprint(&mount.path("tls.crt"))
    );

    // Writes, one after the other, all through the rotation.
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let (failures, after_swap) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut failures = Vec::new();
            let mut n = 0;
            while !stop.load(SeqCst) {
                n += 1;
                let name = format!("write-{n}");
                let object = configmap(CONFIGMAPS[0].1, "rotation", Some(&name));
                let file = write_temp(&object);
                let out = cluster.kubectl(&["create", "-f", file.path().to_str().unwrap()], None);
                if !out.status.success() {
                    failures.push(format!("write {n}: {}", describe(&out)));
                }
                done.fetch_add(1, SeqCst);
            }
            failures
        });
        let wait_writes = |count: usize| {
            let deadline = Instant::now() + support::HANG_GUARD;
            let target = done.load(SeqCst) + count;
            while done.load(SeqCst) < target {
                assert!(Instant::now() < deadline, "the writes stopped");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        };
        wait_writes(3);
        // A new leaf from the same CA (another key, another notAfter), swapped in as the
        // kubelet updates a Secret volume.
        mount.update(&borrowed(&generated(
            &gen_dir,
            &["--force", "--days", "200"],
        )));
        let swapped_at = done.load(SeqCst);
        wait_served(&cluster, not_after(&mount.path("tls.crt")));
        assert_eq!(
            served_fingerprint(&webhook),
            file_fingerprint(&mount.path("tls.crt")),
            "a new connection is not served the new certificate"
        );
        wait_writes(3);
        stop.store(true, SeqCst);
        (writer.join().unwrap(), done.load(SeqCst) - swapped_at)
    });
    let total = done.load(SeqCst);
    eprintln!(
        "certificate rotation: {total} writes, {after_swap} after the swap, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let last = configmap(CONFIGMAPS[0].1, "rotation", Some(&format!("write-{total}")));
    assert_stored_federated(&cluster, &last, "the last write after the rotation");
}

// ---------------------------------------------------------------------------------------
// f. reinvocation: another mutating webhook changes the ConfigMap after promfed

/// The recording rule file the second webhook puts in place of the ConfigMap's.
const LATE_RULES: &str =
    "groups:\n- name: added-late\n  rules:\n  - record: late:up:sum\n    expr: sum by (job) (up)\n";

/// A second mutating webhook, HTTPS on loopback with a certificate of its own (rcgen, through
/// promfed's dev Pki): it replaces `recording_rules.yml` with [`LATE_RULES`] unless the file
/// already records `late:up:sum`. Stopped when dropped.
struct LateWebhook {
    url: String,
    ca_pem: String,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for LateWebhook {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl LateWebhook {
    fn start() -> LateWebhook {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        use base64::Engine as _;
        use rustls_pki_types::pem::PemObject as _;

        let pki = promfed::server::dev::Pki::generate(&["127.0.0.1"]).unwrap();
        let chain = rustls_pki_types::CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let app = axum::Router::new().route(
            "/mutate",
            axum::routing::post(move |body: axum::body::Bytes| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let review: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let request = &review["request"];
                    let rules = request["object"]["data"]["recording_rules.yml"]
                        .as_str()
                        .unwrap_or_default();
                    let mut response = json!({"uid": request["uid"], "allowed": true});
                    if !rules.contains("record: late:up:sum") {
                        let patch = json!([{"op": "add", "path": "/data/recording_rules.yml",
                            "value": LATE_RULES}]);
                        response["patchType"] = json!("JSONPatch");
                        response["patch"] = json!(
                            base64::engine::general_purpose::STANDARD.encode(patch.to_string())
                        );
                    }
                    axum::Json(json!({"apiVersion": "admission.k8s.io/v1",
                        "kind": "AdmissionReview", "response": response}))
                }
            }),
        );

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
        LateWebhook {
            url: format!("https://{addr}/mutate"),
            ca_pem: pki.ca_pem,
            calls,
            runtime: Some(runtime),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_webhook_that_changes_the_configmap_after_promfed_has_promfed_called_again() {
    use base64::Engine as _;
    // Its own cluster: it counts promfed's reviews.
    let cluster = cluster!(own);
    let late = LateWebhook::start();
    let namespace = "reinvocation";
    cluster.namespace(namespace);
    // Named to sort after `promfed`: the API server calls the webhooks in that order.
    let configuration = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-late-rules"},
        "webhooks": [{
            "name": "late-rules.test.promfed.io",
            "clientConfig": {
                "url": late.url,
                "caBundle": base64::engine::general_purpose::STANDARD.encode(&late.ca_pem),
            },
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""],
                "apiVersions": ["v1"], "resources": ["configmaps"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "timeoutSeconds": 5,
        }],
    });
    let file = write_temp(&configuration);
    cluster.kubectl_ok(&["create", "-f", file.path().to_str().unwrap()], None);
    let shipped = cluster.get("mutatingwebhookconfiguration", "", "promfed");
    assert_eq!(
        shipped["webhooks"][0]["reinvocationPolicy"], "IfNeeded",
        "the shipped webhook"
    );

    // The new webhook takes a moment to reach the admission plugin: dry runs until it acts.
    let original = configmap(CONFIGMAPS[0].1, namespace, None);
    let file = write_temp(&original);
    let f = file.path().to_str().unwrap();
    let deadline = Instant::now() + support::HANG_GUARD;
    loop {
        let text = cluster.kubectl_ok(&["create", "--dry-run=server", "-o", "json", "-f", f], None);
        let answer: Value = serde_json::from_str(&text).unwrap();
        if (answer["data"]["recording_rules.yml"].as_str())
            .is_some_and(|r| r.contains("late:up:sum"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the second webhook never acted");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // One write: promfed, the late webhook, promfed again.
    let (reviews, calls) = (cluster.reviews(), late.calls());
    cluster.kubectl_ok(&["create", "-f", f], None);
    let promfed_calls = cluster.reviews() - reviews;
    let late_calls = late.calls() - calls;
    eprintln!(
        "one write: promfed reviewed it {promfed_calls} times, the late webhook {late_calls}"
    );
    assert_eq!(promfed_calls, 2.0, "promfed reviews for one write");
    assert_eq!(late_calls, 1, "the late webhook's reviews for one write");
    // Federated: what promfed renders from the final input (the late webhook's change applied).
    let mut final_input = original.clone();
    final_input["data"]["recording_rules.yml"] = json!(LATE_RULES);
    assert_stored_federated(&cluster, &final_input, "after reinvocation");
    let stored = cluster.get("configmap", namespace, "prometheus-server");
    let rules = stored["data"]["recording_rules.yml"].as_str().unwrap();
    assert!(
        rules.contains("late:up:sum") && rules.contains("cluster"),
        "the late rule is not scoped: {rules}"
    );
    // Stable: promfed renders the stored object to itself, and writing it again changes nothing.
    assert_eq!(
        rendered_data(&stored),
        stored["data"],
        "render of the stored object"
    );
    let file = write_temp(&stored);
    let reviews = cluster.reviews();
    cluster.kubectl_ok(&["replace", "-f", file.path().to_str().unwrap()], None);
    let again = cluster.get("configmap", namespace, "prometheus-server");
    assert_eq!(
        again["data"], stored["data"],
        "a second write changed the data"
    );
    assert_eq!(
        again["metadata"]["resourceVersion"], stored["metadata"]["resourceVersion"],
        "a second write of the same object was stored anew"
    );
    eprintln!(
        "the same object written again: promfed reviewed it {} times",
        cluster.reviews() - reviews
    );
}

// ---------------------------------------------------------------------------------------
// Dashboards a chart manages (docs/install.md): scripts/chart-dashboards.sh on
// kube-prometheus-stack's ConfigMaps

/// kube-prometheus-stack ships kube-prometheus' dashboards (its chart syncs them from
/// kube-prometheus' grafana-dashboardDefinitions) as ConfigMaps labelled
/// `app: kube-prometheus-stack-grafana` and `grafana_dashboard: "1"`, which every `helm upgrade`
/// writes again. The recipe turns them into ConfigMaps of one's own, multi-cluster: each
/// stored dashboard is what `promfed dashboard` makes of the chart's, with a `cluster`
/// variable and no unscoped selector; the chart's datasource and promfed's own dashboards
/// are left out; run again, the recipe writes the same.
#[test]
fn chart_dashboards_recipe_makes_a_charts_dashboards_multi_cluster() {
    let cluster = cluster!();
    let namespace = "kps-dashboards";
    cluster.namespace(namespace);
    // Corpus copies (tests/data/dashboards/SOURCES.md): the ConfigMap values of kube-prometheus.
    let nodes = support::read_data("dashboards/kube-prometheus-0.4-nodes.json");
    let overview = support::read_data("dashboards/kube-prometheus-0.4-prometheus-overview.json");
    let chart_labels = json!({"app": "kube-prometheus-stack-grafana", "release": "kps",
                              "app.kubernetes.io/managed-by": "Helm"});
    let with = |extra: Value| {
        let mut labels = chart_labels.clone();
        labels
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        labels
    };
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "kps-nodes", "namespace": namespace,
                      "labels": with(json!({"grafana_dashboard": "1"}))},
         "data": {"nodes.json": nodes}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "kps-prometheus", "namespace": namespace,
                      "labels": with(json!({"grafana_dashboard": "1"}))},
         "data": {"prometheus.json": overview}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "kps-grafana-datasource", "namespace": namespace,
                      "labels": with(json!({"grafana_datasource": "1"}))},
         "data": {"datasource.yaml": "apiVersion: 1\n"}},
    ]});
    let file = write_temp(&objects);
    cluster.kubectl_ok(&["apply", "-f", file.path().to_str().unwrap()], None);

    let out_dir = tempfile::tempdir().unwrap();
    let recipe = |out: &str| {
        let output = cluster
            .command(root().join("scripts/chart-dashboards.sh").to_str().unwrap())
            .env("PROMFED", support::promfed_bin())
            .args([
                namespace,
                "app=kube-prometheus-stack-grafana,grafana_dashboard=1",
                out,
            ])
            .output()
            .expect("running scripts/chart-dashboards.sh");
        assert!(
            output.status.success(),
            "chart-dashboards.sh: {}",
            describe(&output)
        );
        std::fs::read_to_string(out).unwrap()
    };
    let first = out_dir.path().join("dashboards.yaml");
    let written = recipe(first.to_str().unwrap());
    cluster.kubectl_ok(
        &[
            "apply",
            "--server-side",
            "-n",
            namespace,
            "-f",
            first.to_str().unwrap(),
        ],
        None,
    );

    let options = promfed::dashboard::Options::new("cluster", "cluster").unwrap();
    for (name, key, source) in [
        ("promfed-dashboard-nodes", "nodes.json", &nodes),
        ("promfed-dashboard-prometheus", "prometheus.json", &overview),
    ] {
        let stored = cluster.get("configmap", namespace, name);
        assert_eq!(
            stored["metadata"]["labels"]["grafana_dashboard"], "1",
            "{stored}"
        );
        let text = stored["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {stored}"));
        let want = promfed::dashboard::convert(source, &options).unwrap().text;
        assert_eq!(
            text, want,
            "{name}: what promfed dashboard makes of the chart's"
        );
        let dashboard: Value = serde_json::from_str(text).unwrap();
        let variables: Vec<&str> = (dashboard["templating"]["list"].as_array().unwrap().iter())
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert!(variables.contains(&"cluster"), "{name}: {variables:?}");
        let mut queries = 0;
        for expr in promfed::dashboard::expressions(&dashboard) {
            // The cluster variable's own query lists the clusters.
            if expr.variable.as_deref() == Some("cluster") {
                continue;
            }
            queries += 1;
            let unscoped = promfed::dashboard::unscoped_selectors(&expr.text, "cluster").unwrap();
            assert!(unscoped.is_empty(), "{name}: {}: {unscoped:?}", expr.text);
        }
        assert!(queries > 5, "{name}: {queries} queries");
    }
    let stored = cluster.kubectl_ok(
        &[
            "get",
            "configmap",
            "-n",
            namespace,
            "-l",
            "app.kubernetes.io/name=promfed",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(
        stored.lines().collect::<Vec<_>>(),
        [
            "configmap/promfed-dashboard-nodes",
            "configmap/promfed-dashboard-prometheus"
        ],
        "the datasource is no dashboard"
    );

    // Again, with its output stored beside the chart's: the same ConfigMaps.
    let second = out_dir.path().join("again.yaml");
    assert_eq!(recipe(second.to_str().unwrap()), written);
}
