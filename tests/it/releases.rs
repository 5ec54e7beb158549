//! promfed installed by its helm chart (helm 3 and helm 4) and by its Carvel package's steps
//! (ytt, then kapp) on the local API server (`scripts/kube-local.sh`): install, upgrade with
//! changed values, rollback, uninstall, in each certificate mode, the API server calling promfed
//! through the webhook configuration the chart or package made.
//!
//! The local API server has no kubelet, so no pod runs: `promfed serve` runs as kube-local.sh's
//! process, and the test does what the kubelet would do with the pod's volumes: it copies the
//! release's config ConfigMap into the file promfed reads, and the release's serving certificate
//! Secret into the kubelet-style mount promfed reads its certificate from (PROMFED_CERT_DIR);
//! the chart's webhooks point at that process with `webhook.url` (the values override for a
//! promfed outside the cluster). deploy/local's webhook configuration is deleted first, so every
//! call comes through the release's. Each release's `configmap.namespaces` names its own
//! namespace, so its webhooks' matchConditions send promfed only that namespace's objects. With
//! a node (pods Ready, the Service's endpoints), the same steps run without the copies and the
//! URL: the kubelet mounts the volumes and the webhook calls the Service.
//!
//! cert-manager's controllers are not run: its CRDs are (the API server checks the Issuers and
//! Certificates against their schemas), and the test writes the serving certificate's Secret and
//! the caBundle as cert-manager's controller and cainjector would.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::charts::assert_match_conditions_from_config;
use crate::support::kube::{self, Cluster, assert_stored_federated_with, configmap};
use crate::support::manifests::{base64_decode, generate_ok, p};
use crate::support::{self, Mount, describe, root};

const TKG: &str = "tkg/prometheus-server-configmap.yaml";

/// A local API server of a test's own, promfed reading its config from `config` and its
/// certificate from the mount `mount`, deploy/local's webhook configuration deleted.
struct Lab {
    cluster: Cluster,
    config: PathBuf,
    mount: Mount,
    tmp: tempfile::TempDir,
}

fn lab() -> Option<Lab> {
    if !kube::tools_built() {
        support::skip::<()>(
            &support::current_test(),
            "kube-apiserver (scripts/build-tools.sh)",
        );
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("promfed.yaml");
    std::fs::copy(root().join("deploy/base/promfed.yaml"), &config).unwrap();
    let files = certificates(&tmp.path().join("initial"));
    let mount = Mount::new(&tmp.path().join("tls"), &borrowed(&files));
    let cluster = Cluster::up_with(
        Some(&config),
        &[("PROMFED_CERT_DIR", tmp.path().join("tls").as_os_str())],
    );
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", "promfed"], None);
    Some(Lab {
        cluster,
        config,
        mount,
        tmp,
    })
}

/// `certs/generate.sh DIR --ip 127.0.0.1`: ca.crt, tls.crt, tls.key.
fn certificates(dir: &Path) -> Vec<(&'static str, String)> {
    generate_ok(&[p(dir), "--ip", "127.0.0.1"]);
    ["ca.crt", "tls.crt", "tls.key"]
        .into_iter()
        .map(|f| (f, std::fs::read_to_string(dir.join(f)).unwrap()))
        .collect()
}

fn borrowed<'a>(files: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    files.iter().map(|(n, t)| (*n, t.as_str())).collect()
}

/// promfed's config generation, from its metrics.
fn generation(cluster: &Cluster) -> f64 {
    let url = format!("{}/metrics", cluster.env["PROMFED_LOCAL_METRICS"]);
    let text = support::http_get(&url).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("promfed_config_generation "))
        .and_then(|v| v.trim().parse().ok())
        .expect("promfed_config_generation")
}

impl Lab {
    /// What the kubelet does for a pod of the release: the config ConfigMap's promfed.yaml and
    /// the serving certificate Secret's files, swapped into what promfed reads; returns once
    /// promfed has loaded a changed config.
    fn kubelet_sync(&mut self, namespace: &str, configmap_name: &str, secret: &str) {
        let cluster = &self.cluster;
        let stored = cluster.get("configmap", namespace, configmap_name);
        let config = stored["data"]["promfed.yaml"].as_str().unwrap().to_string();
        let secret = cluster.get("secret", namespace, secret);
        let file = |key: &str| {
            String::from_utf8(base64_decode(secret["data"][key].as_str().unwrap())).unwrap()
        };
        let files = [
            ("ca.crt", file("ca.crt")),
            ("tls.crt", file("tls.crt")),
            ("tls.key", file("tls.key")),
        ];
        self.mount.update(&borrowed(&files));
        if std::fs::read_to_string(&self.config).unwrap() != config {
            let before = generation(cluster);
            let fresh = self.tmp.path().join("promfed.yaml.new");
            std::fs::write(&fresh, &config).unwrap();
            std::fs::rename(&fresh, &self.config).unwrap();
            let deadline = Instant::now() + support::HANG_GUARD;
            while generation(cluster) <= before {
                assert!(
                    Instant::now() < deadline,
                    "promfed did not reload its config"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }

    /// Write (create or replace) the TKG ConfigMap in `namespace` and check that the API server
    /// stored it federated by promfed's current config; the API server may take a moment to
    /// trust a certificate just swapped in, so a refused write is retried until the hang guard.
    fn write_federated(&self, namespace: &str, how: &str) {
        let object = configmap(TKG, namespace, None);
        let file = self.tmp.path().join("object.json");
        std::fs::write(&file, serde_json::to_vec(&object).unwrap()).unwrap();
        support::wait_for(how, support::HANG_GUARD, || {
            let out = self.cluster.kubectl(
                &[
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "-f",
                    p(&file),
                ],
                None,
            );
            if out.status.success() {
                Ok(())
            } else {
                Err(describe(&out))
            }
        });
        assert_stored_federated_with(&self.cluster, &object, &self.config, how);
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Certs {
    /// The chart makes its CA and certificate (default).
    ChartMade,
    /// A Secret of the user's, named in the values; its ca.crt becomes the caBundle.
    Existing,
    /// cert-manager's Issuers and Certificates (its controllers emulated, see the module doc).
    CertManager,
}

fn helm_out(lab: &Lab, program: &str, args: &[&str]) -> Output {
    let mut command = lab.cluster.command(program);
    command.args(args);
    command.output().expect("running helm")
}

fn ok(out: &Output, what: &str, want: &str) -> String {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && all.contains(want),
        "{what}: {}",
        describe(out)
    );
    all
}

/// The names of the objects of `release` still in `namespace` (any kind the chart makes) and
/// whether its webhook configuration is still there.
fn leftovers(cluster: &Cluster, namespace: &str, release: &str, fullname: &str) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let kinds = "deployments,services,configmaps,secrets,serviceaccounts,poddisruptionbudgets,networkpolicies";
    let text = cluster.kubectl_ok(
        &["get", kinds, "-n", namespace, "-l", &selector, "-o", "name"],
        None,
    );
    let mut left: Vec<String> = text.lines().map(str::to_string).collect();
    let hook = cluster.kubectl(
        &[
            "get",
            "mutatingwebhookconfiguration",
            fullname,
            "-o",
            "name",
        ],
        None,
    );
    if hook.status.success() {
        left.push(String::from_utf8_lossy(&hook.stdout).trim().to_string());
    }
    left
}

fn lifecycle(program: &str) {
    let Some(mut lab) = lab() else { return };
    let chart = root().join("charts/promfed");
    let url = lab.cluster.env["PROMFED_LOCAL_WEBHOOK"].clone();
    let crds = support::run(
        &root().join("scripts/build-tools.sh"),
        &[
            std::ffi::OsStr::new("dir"),
            std::ffi::OsStr::new("cert-manager-crds"),
        ],
        None,
    );
    let crds = PathBuf::from(String::from_utf8(crds.stdout).unwrap().trim()).join("crds");
    lab.cluster
        .kubectl_ok(&["apply", "--server-side", "-f", p(&crds)], None);
    lab.cluster.kubectl_ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=120s",
        ],
        None,
    );

    for certs in [Certs::ChartMade, Certs::Existing, Certs::CertManager] {
        let mode = format!("{certs:?}").to_lowercase();
        let (namespace, apps, release) = (
            format!("{program}-{mode}"),
            format!("{program}-{mode}-apps"),
            format!("pf-{mode}"),
        );
        let fullname = format!("{release}-promfed");
        let case = format!("{program}, {certs:?}");
        lab.cluster.namespace(&namespace);
        lab.cluster.namespace(&apps);
        let mut values = vec![
            format!("webhook.url={}", json!(url)),
            format!("configmap={}", json!({"namespaces": [apps]})),
        ];
        let secret = match certs {
            Certs::ChartMade => {
                values.push(r#"tls.selfSigned.ipAddresses=["127.0.0.1"]"#.into());
                format!("{fullname}-tls")
            }
            Certs::Existing => {
                let dir = lab.tmp.path().join(format!("{mode}-certs"));
                certificates(&dir);
                let f = |n: &str| format!("--from-file={n}={}", dir.join(n).display());
                lab.cluster.kubectl_ok(
                    &[
                        "create",
                        "secret",
                        "generic",
                        "my-tls",
                        "-n",
                        &namespace,
                        "--type=kubernetes.io/tls",
                        &f("tls.crt"),
                        &f("tls.key"),
                        &f("ca.crt"),
                    ],
                    None,
                );
                values.push(r#"tls.existingSecret="my-tls""#.into());
                "my-tls".into()
            }
            Certs::CertManager => {
                values.push("certManager.enabled=true".into());
                format!("{fullname}-tls")
            }
        };
        let run = |lab: &Lab, verb: &str, extra: &[String]| {
            let mut args: Vec<String> = vec![
                verb.into(),
                release.clone(),
                p(&chart).into(),
                "-n".into(),
                namespace.clone(),
            ];
            for v in values.iter().chain(extra) {
                args.extend(["--set-json".into(), v.clone()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            helm_out(lab, program, &args)
        };

        // install
        let out = run(&lab, "install", &[]);
        ok(&out, &format!("{case}: install"), "STATUS: deployed");
        if certs == Certs::CertManager {
            // cert-manager's controller writes the Certificate's Secret, its cainjector the
            // caBundle of every webhook (annotation cert-manager.io/inject-ca-from).
            let config = lab
                .cluster
                .get("mutatingwebhookconfiguration", "", &fullname);
            assert_eq!(
                config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                format!("{namespace}/{fullname}-serving")
            );
            lab.cluster
                .get("certificate", &namespace, &format!("{fullname}-serving"));
            let dir = lab.tmp.path().join(format!("{program}-{mode}-certs"));
            certificates(&dir);
            let f = |n: &str| format!("--from-file={n}={}", dir.join(n).display());
            lab.cluster.kubectl_ok(
                &[
                    "create",
                    "secret",
                    "generic",
                    &secret,
                    "-n",
                    &namespace,
                    "--type=kubernetes.io/tls",
                    &f("tls.crt"),
                    &f("tls.key"),
                    &f("ca.crt"),
                ],
                None,
            );
            let ca = base64::engine::general_purpose::STANDARD
                .encode(std::fs::read(dir.join("ca.crt")).unwrap());
            let patch: Vec<Value> = (0..3)
                .map(|i| json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": ca}))
                .collect();
            lab.cluster.kubectl_ok(
                &[
                    "patch",
                    "mutatingwebhookconfiguration",
                    &fullname,
                    "--type=json",
                    "-p",
                    &serde_json::to_string(&patch).unwrap(),
                ],
                None,
            );
        }
        let ca_bundle = |c: &Cluster| {
            let config = c.get("mutatingwebhookconfiguration", "", &fullname);
            config["webhooks"][0]["clientConfig"]["caBundle"].clone()
        };
        let secret_data = |c: &Cluster| c.get("secret", &namespace, &secret)["data"].clone();
        let checksum = |c: &Cluster| {
            let deployment = c.get("deployment", &namespace, &fullname);
            deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone()
        };
        let (bundle0, data0, sum0) = (
            ca_bundle(&lab.cluster),
            secret_data(&lab.cluster),
            checksum(&lab.cluster),
        );
        assert_eq!(
            bundle0, data0["ca.crt"],
            "{case}: the caBundle is the Secret's CA"
        );
        // As the API server stored them: the webhooks' conditions are promfed's for the config.
        let stored = [
            lab.cluster
                .get("mutatingwebhookconfiguration", "", &fullname),
            lab.cluster
                .get("configmap", &namespace, &format!("{fullname}-config")),
        ];
        assert_match_conditions_from_config(&stored, &fullname, &case);
        lab.kubelet_sync(&namespace, &format!("{fullname}-config"), &secret);
        lab.write_federated(&apps, &format!("{case}: after install"));

        // upgrade, the config changed: picked up, the certificate kept
        let out = run(&lab, "upgrade", &[r#"localClusterName="upgraded""#.into()]);
        ok(&out, &format!("{case}: upgrade"), "STATUS: deployed");
        assert_eq!(
            secret_data(&lab.cluster),
            data0,
            "{case}: the upgrade changed the serving certificate"
        );
        assert_eq!(
            ca_bundle(&lab.cluster),
            bundle0,
            "{case}: the upgrade changed the caBundle"
        );
        assert_ne!(
            checksum(&lab.cluster),
            sum0,
            "{case}: the changed config does not roll the pods"
        );
        lab.kubelet_sync(&namespace, &format!("{fullname}-config"), &secret);
        assert!(
            std::fs::read_to_string(&lab.config)
                .unwrap()
                .contains("localClusterName: upgraded")
        );
        lab.write_federated(&apps, &format!("{case}: after upgrade"));

        // rollback: the first config, the certificate still kept
        let out = helm_out(
            &lab,
            program,
            &["rollback", &release, "1", "-n", &namespace],
        );
        ok(&out, &format!("{case}: rollback"), "Rollback was a success");
        assert_eq!(
            secret_data(&lab.cluster),
            data0,
            "{case}: the rollback changed the serving certificate"
        );
        assert_eq!(
            ca_bundle(&lab.cluster),
            bundle0,
            "{case}: the rollback changed the caBundle"
        );
        assert_eq!(
            checksum(&lab.cluster),
            sum0,
            "{case}: the rollback did not bring the first config back"
        );
        lab.kubelet_sync(&namespace, &format!("{fullname}-config"), &secret);
        assert!(
            !std::fs::read_to_string(&lab.config)
                .unwrap()
                .contains("upgraded")
        );
        lab.write_federated(&apps, &format!("{case}: after rollback"));

        // uninstall: nothing of the release left, and promfed no longer called
        let out = helm_out(&lab, program, &["uninstall", &release, "-n", &namespace]);
        ok(&out, &format!("{case}: uninstall"), "uninstalled");
        let left = leftovers(&lab.cluster, &namespace, &release, &fullname);
        assert!(left.is_empty(), "{case}: left behind: {left:?}");
        if certs == Certs::CertManager {
            let text = lab.cluster.kubectl_ok(
                &[
                    "get",
                    "issuers,certificates",
                    "-n",
                    &namespace,
                    "-o",
                    "name",
                ],
                None,
            );
            assert!(text.trim().is_empty(), "{case}: left behind: {text}");
        }
        if certs == Certs::ChartMade {
            let out = lab
                .cluster
                .kubectl(&["get", "secret", &secret, "-n", &namespace], None);
            assert!(
                !out.status.success(),
                "{case}: the chart-made Secret is left behind"
            );
        }
        let reviews = lab.cluster.reviews();
        let object = configmap(TKG, &apps, Some("after-uninstall"));
        let file = lab.tmp.path().join("after.json");
        std::fs::write(&file, serde_json::to_vec(&object).unwrap()).unwrap();
        lab.cluster.kubectl_ok(&["create", "-f", p(&file)], None);
        let stored = lab.cluster.get("configmap", &apps, "after-uninstall");
        assert_eq!(
            stored["data"], object["data"],
            "{case}: not stored as written"
        );
        assert_eq!(
            lab.cluster.reviews(),
            reviews,
            "{case}: promfed was called after uninstall"
        );
    }
}

#[test]
fn helm3_install_upgrade_rollback_uninstall_in_each_certificate_mode() {
    lifecycle("helm");
}

#[test]
fn helm4_install_upgrade_rollback_uninstall_in_each_certificate_mode() {
    lifecycle("helm4");
}

// ---------------------------------------------------------------------------------------
// The Carvel package, by the steps kapp-controller runs for a PackageInstall

/// kapp's summary line (`Op: 0 create, 0 delete, 1 update, 0 noop, 0 exists`), spaces squeezed.
fn kapp_ops(out: &Output) -> String {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = all
        .lines()
        .find(|l| l.starts_with("Op:"))
        .unwrap_or_else(|| panic!("no Op: line in kapp's output:\n{all}"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

const QUIET: &str = "Op: 0 create, 0 delete, 0 update, 0 noop, 0 exists";
const ONE_UPDATE: &str = "Op: 0 create, 0 delete, 1 update, 0 noop, 0 exists";

/// What kapp-controller does with a Package whose fetch is inline: the files, in a folder.
fn fetch_inline(package: &Path, into: &Path) {
    let package = crate::support::manifests::parse_one(package);
    let paths = package["spec"]["template"]["spec"]["fetch"][0]["inline"]["paths"]
        .as_object()
        .expect("an inline fetch");
    for (name, text) in paths {
        let path = into.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text.as_str().unwrap()).unwrap();
    }
}

/// `ytt ARGS | kapp deploy -a APP -f - -y ...`: the template and deploy steps of an App.
fn ytt_kapp(lab: &Lab, app: &str, ytt: &[&str], kapp: &[&str]) -> Output {
    let mut command = lab.cluster.command("ytt");
    command.args(ytt);
    let out = command.output().unwrap();
    assert!(out.status.success(), "ytt {ytt:?}: {}", describe(&out));
    let rendered = lab.tmp.path().join(format!("{app}-rendered.yaml"));
    std::fs::write(&rendered, &out.stdout).unwrap();
    let mut command = lab.cluster.command("kapp");
    command
        .args(["deploy", "-a", app, "-y", "-f", p(&rendered)])
        .args(kapp);
    command.output().unwrap()
}

#[test]
fn the_package_installed_then_the_tkg_package_reconciled_without_a_fight() {
    let Some(mut lab) = lab() else { return };
    let tmp = lab.tmp.path().to_path_buf();
    // The Package with the bundle inline (no registry), fetched as kapp-controller does.
    let mut build = lab.cluster.command("bash");
    build
        .arg(root().join("packaging/build.sh"))
        .args(["--inline", "--out"])
        .arg(tmp.join("bundle"));
    build.arg("--package").arg(tmp.join("package.yaml"));
    let out = build.output().unwrap();
    assert!(
        out.status.success(),
        "packaging/build.sh: {}",
        describe(&out)
    );
    let fetched = tmp.join("fetched");
    fetch_inline(&tmp.join("package.yaml"), &fetched);

    // promfed's package: its values as a PackageInstall's Secret holds them. No node: no pod
    // would ever be ready, so no replica and kapp does not wait (the Deployment's status is
    // the controller-manager's); promfed runs as kube-local.sh's process.
    let certs = certificates(&tmp.join("package-certs"));
    let ca = &certs.iter().find(|(n, _)| *n == "ca.crt").unwrap().1;
    let values = json!({
        "namespace": "promfed-pkg",
        "fullnameOverride": "pf-pkg",
        "replicaCount": 0,
        "certManager": {"enabled": false},
        "tls": {"existingSecret": "pf-pkg-tls", "caBundle": ca},
        "webhook": {"url": lab.cluster.env["PROMFED_LOCAL_WEBHOOK"]},
    });
    let values_file = tmp.join("promfed-values.yaml");
    std::fs::write(&values_file, serde_json::to_vec(&values).unwrap()).unwrap();
    let config = fetched.join("config");
    let promfed_ytt = ["-f", p(&config), "--data-values-file", p(&values_file)];
    let out = ytt_kapp(&lab, "promfed", &promfed_ytt, &["--wait=false"]);
    assert!(
        out.status.success(),
        "kapp deploy promfed: {}",
        describe(&out)
    );
    let dir = tmp.join("package-certs");
    let f = |n: &str| format!("--from-file={n}={}", dir.join(n).display());
    lab.cluster.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "pf-pkg-tls",
            "-n",
            "promfed-pkg",
            "--type=kubernetes.io/tls",
            &f("tls.crt"),
            &f("tls.key"),
            &f("ca.crt"),
        ],
        None,
    );
    lab.kubelet_sync("promfed-pkg", "pf-pkg-config", "pf-pkg-tls");
    let stored = [
        lab.cluster
            .get("mutatingwebhookconfiguration", "", "pf-pkg"),
        lab.cluster.get("configmap", "promfed-pkg", "pf-pkg-config"),
    ];
    assert_match_conditions_from_config(&stored, "pf-pkg", "the package");
    let out = ytt_kapp(&lab, "promfed", &promfed_ytt, &["--wait=false"]);
    assert_eq!(
        kapp_ops(&out),
        QUIET,
        "promfed's package applied twice: {}",
        describe(&out)
    );

    // The TCE/TKG prometheus package: its upstream ConfigMap, the ConfigMap part of its
    // overlay and its data values, verbatim (tests/data/tkg/raw), plus the namespace overlay
    // the package has elsewhere; kapp's Config for promfed (deploy/kapp) as docs/install.md says.
    let raw = support::data("tkg/raw");
    let package = tmp.join("prometheus-package");
    std::fs::create_dir_all(&package).unwrap();
    for file in [
        "tce-prometheus-2.37.0-upstream-configmap.yaml",
        "tce-prometheus-2.37.0-values.yaml",
    ] {
        std::fs::copy(raw.join(file), package.join(file)).unwrap();
    }
    let overlay =
        std::fs::read_to_string(raw.join("tce-prometheus-2.37.0-overlay-prometheus.yaml")).unwrap();
    let deployment_part = overlay
        .find("#@overlay/match by=overlay.subset({\"kind\":\"Deployment\"")
        .expect("the overlay's Deployment part");
    std::fs::write(
        package.join("overlay-prometheus.yaml"),
        &overlay[..deployment_part],
    )
    .unwrap();
    std::fs::write(
        package.join("overlay-namespace.yaml"),
        "#@ load(\"@ytt:overlay\", \"overlay\")\n#@ load(\"@ytt:data\", \"data\")\n\
         #@overlay/match by=overlay.all, expects=\"1+\"\n---\nmetadata:\n  #@overlay/match missing_ok=True\n  namespace: #@ data.values.namespace\n",
    )
    .unwrap();
    lab.cluster.namespace("prometheus");
    let kapp_config = root().join("deploy/kapp/kapp-config.yaml");
    let change = tmp.join("change.yaml");
    std::fs::write(&change, "prometheus:\n  config:\n    alerting_rules_yml: |\n      groups:\n      - name: hub\n        rules:\n        - alert: ApiServerDown\n          expr: absent(up{job=\"kubernetes-apiservers\"} == 1)\n").unwrap();
    let deploy = |lab: &Lab, changed: bool| {
        let mut ytt = vec!["-f", p(&package)];
        if changed {
            ytt.extend(["--data-values-file", p(&change)]);
        }
        let out = ytt_kapp(lab, "prometheus", &ytt, &["-f", p(&kapp_config)]);
        assert!(
            out.status.success(),
            "kapp deploy prometheus: {}",
            describe(&out)
        );
        out
    };
    let rendered = |lab: &Lab| -> Value {
        let text =
            std::fs::read_to_string(lab.tmp.path().join("prometheus-rendered.yaml")).unwrap();
        crate::support::manifests::parse_stream(&text).remove(0)
    };
    let reviews = lab.cluster.reviews();
    let out = deploy(&lab, false);
    assert!(
        kapp_ops(&out).starts_with("Op: 1 create"),
        "{}",
        describe(&out)
    );
    assert_stored_federated_with(
        &lab.cluster,
        &rendered(&lab),
        &lab.config,
        "the prometheus package installed",
    );
    assert!(
        lab.cluster.reviews() > reviews,
        "promfed was not called through the package's webhook"
    );

    // kapp-controller's periodic reconcile: the same fetch, template and deploy, again.
    let mut quiet = 0;
    for _ in 0..5 {
        let out = deploy(&lab, false);
        assert_eq!(
            kapp_ops(&out),
            QUIET,
            "reconcile {}: {}",
            quiet + 1,
            describe(&out)
        );
        quiet += 1;
    }
    // A change of the data values: one update, federated; then quiet again.
    let out = deploy(&lab, true);
    assert_eq!(kapp_ops(&out), ONE_UPDATE, "{}", describe(&out));
    let changed = rendered(&lab);
    assert!(
        changed["data"]["alerting_rules.yml"]
            .as_str()
            .unwrap()
            .contains("ApiServerDown")
    );
    assert_stored_federated_with(
        &lab.cluster,
        &changed,
        &lab.config,
        "after the data values changed",
    );
    for _ in 0..2 {
        let out = deploy(&lab, true);
        assert_eq!(kapp_ops(&out), QUIET, "{}", describe(&out));
        quiet += 1;
    }
    eprintln!(
        "prometheus package: 1 install, {quiet} quiet reconciles, 1 update from a data values change"
    );

    // kapp delete: nothing of promfed's package left.
    let mut delete = lab.cluster.command("kapp");
    delete.args(["delete", "-a", "promfed", "-y", "--wait=false"]);
    let out = delete.output().unwrap();
    // Without a controller-manager a deleted Namespace stays Terminating (its finalizer is the
    // namespace controller's), which is the one thing kapp finds left; with one, this succeeds.
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success()
            || all.contains(
                "Expected all resources to be gone, but found: namespace/promfed-pkg (v1) cluster\n"
            ),
        "kapp delete promfed: {}",
        describe(&out)
    );
    let hook = lab
        .cluster
        .kubectl(&["get", "mutatingwebhookconfiguration", "pf-pkg"], None);
    assert!(
        !hook.status.success(),
        "the package's webhook configuration is left behind"
    );
    let left = lab.cluster.kubectl_ok(
        &[
            "get",
            "deployments,services,configmaps,serviceaccounts,poddisruptionbudgets,networkpolicies",
            "-n",
            "promfed-pkg",
            "-o",
            "name",
        ],
        None,
    );
    let left: Vec<&str> = left
        .lines()
        .filter(|l| *l != "configmap/kube-root-ca.crt")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

// ---------------------------------------------------------------------------------------
// The README's helm block, as written

/// The README's fenced shell block that starts with `first`.
fn readme_block(first: &str) -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find(&format!("```sh\n{first}"))
        .unwrap_or_else(|| panic!("no README block starting with {first:?}"));
    let body = &readme[start + "```sh\n".len()..];
    body[..body.find("```").unwrap()].to_string()
}

#[test]
fn the_readme_helm_block_installs_as_written() {
    let Some(lab) = lab() else { return };
    let block = readme_block("helm install promfed charts/promfed");
    let mut command = lab.cluster.command("bash");
    command
        .args(["-euo", "pipefail", "-c", &block])
        .current_dir(root());
    let out = command.output().unwrap();
    ok(&out, "the README's helm block", "STATUS: deployed");
    let config = lab
        .cluster
        .get("mutatingwebhookconfiguration", "", "promfed");
    let secret = lab.cluster.get("secret", "promfed-system", "promfed-tls");
    for hook in config["webhooks"].as_array().unwrap() {
        assert_eq!(
            hook["clientConfig"]["service"],
            json!({"name": "promfed", "namespace": "promfed-system", "path": "/mutate", "port": 443})
        );
        assert_eq!(hook["clientConfig"]["caBundle"], secret["data"]["ca.crt"]);
    }
    let deployment = lab.cluster.get("deployment", "promfed-system", "promfed");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/promfed:0.1.0"
    );
    let stored = lab
        .cluster
        .get("configmap", "promfed-system", "promfed-config");
    let written =
        crate::support::manifests::parse_stream(stored["data"]["promfed.yaml"].as_str().unwrap())
            .remove(0);
    let seed = crate::support::manifests::parse_stream(
        &std::fs::read_to_string(support::data("example-config.yaml")).unwrap(),
    )
    .remove(0);
    for key in [
        "localClusterName",
        "clusterLabelName",
        "additionalScrapeConfigs",
    ] {
        assert_eq!(written[key], seed[key], "{key}");
    }
    let out = helm_out(
        &lab,
        "helm",
        &["uninstall", "promfed", "-n", "promfed-system"],
    );
    ok(&out, "helm uninstall", "uninstalled");
    let left = leftovers(&lab.cluster, "promfed-system", "promfed", "promfed");
    assert!(left.is_empty(), "left behind: {left:?}");
}

// ---------------------------------------------------------------------------------------
// kapp-controller itself: two PackageInstalls, periodic reconciles

/// kapp-controller's folder in the tools cache (`bin/kapp-controller`, `bin/vendir`,
/// `crds/crds.yaml`), if built.
fn kapp_controller_dir() -> Option<PathBuf> {
    let out = support::run(
        &root().join("scripts/build-tools.sh"),
        &[
            std::ffi::OsStr::new("dir"),
            std::ffi::OsStr::new("kapp-controller"),
        ],
        None,
    );
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    dir.join(".stamp").is_file().then_some(dir)
}

/// kapp-controller and its sidecarexec as processes beside the local API server, as its
/// Deployment runs them (two containers sharing a socket), killed when dropped. What it needs
/// there: KUBECONFIG (controller-runtime reads it before any in-cluster configuration), its
/// CRDs and Package/PackageMetadata as CRDs (`--start-api-server=false`, see
/// tests/data/kapp-controller), KUBERNETES_SERVICE_HOST/PORT and KAPPCTRL_KUBERNETES_CA_DATA
/// (the kubeconfig it gives kapp for a PackageInstall's ServiceAccount names the API server by
/// them), vendir, ytt and kapp on PATH.
struct KappController {
    _processes: Vec<support::KillOnDrop>,
    log: PathBuf,
}

fn start_kapp_controller(lab: &Lab, dir: &Path) -> KappController {
    let cluster = &lab.cluster;
    let crds = dir.join("crds/crds.yaml");
    let ours = support::data("kapp-controller/data-packaging-crds.yaml");
    cluster.kubectl_ok(
        &["apply", "--server-side", "-f", p(&crds), "-f", p(&ours)],
        None,
    );
    cluster.kubectl_ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=120s",
        ],
        None,
    );
    cluster.namespace("kapp-controller");
    let mem = lab.tmp.path().join("kc");
    std::fs::create_dir_all(&mem).unwrap();
    let socket = mem.join("sidecarexec.sock");
    let server = &cluster.env["PROMFED_LOCAL_SERVER"];
    let port = server.rsplit(':').next().unwrap().to_string();
    let path = format!("{}:{}", dir.join("bin").display(), cluster.env["PATH"]);
    let ca = std::fs::read_to_string(cluster.dir.join("pki/ca.crt")).unwrap();
    let spawn = |name: &str, args: &[&str]| {
        let log = std::fs::File::create(mem.join(format!("{name}.log"))).unwrap();
        let mut command = cluster.command(p(&dir.join("bin/kapp-controller")));
        command
            .args(args)
            .env("PATH", &path)
            .env("KAPPCTRL_MEM_TMP_DIR", &mem)
            .env("KAPPCTRL_SIDECAREXEC_SOCK", &socket)
            .env("KAPPCTRL_SYSTEM_NAMESPACE", "kapp-controller")
            .env("KAPPCTRL_KUBERNETES_CA_DATA", &ca)
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", &port)
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        support::KillOnDrop(command.spawn().unwrap())
    };
    let sidecar = spawn("sidecarexec", &["--sidecarexec"]);
    support::wait_until(
        "kapp-controller's sidecarexec socket",
        support::HANG_GUARD,
        || socket.exists(),
    );
    let controller = spawn(
        "kapp-controller",
        &[
            "--start-api-server=false",
            "--metrics-bind-address=0",
            "--packaging-global-namespace=kapp-controller-packaging-global",
        ],
    );
    let log = mem.join("kapp-controller.log");
    support::wait_until("kapp-controller's workers", support::HANG_GUARD, || {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.contains(r#""controller":"pkgi","worker count""#))
    });
    KappController {
        _processes: vec![sidecar, controller],
        log,
    }
}

/// The App of a PackageInstall once its last deploy is done: (deploy start, kapp's Op line).
fn app_deploy(cluster: &Cluster, namespace: &str, name: &str) -> Option<(String, String)> {
    let out = cluster.kubectl(&["get", "app", "-n", namespace, name, "-o", "json"], None);
    if !out.status.success() {
        return None;
    }
    let app: Value = serde_json::from_slice(&out.stdout).ok()?;
    let deploy = &app["status"]["deploy"];
    if deploy["finished"] != true
        || app["status"]["observedGeneration"] != app["metadata"]["generation"]
    {
        return None;
    }
    let stdout = deploy["stdout"].as_str()?;
    let op = stdout.lines().find(|l| l.starts_with("Op:"))?;
    Some((
        deploy["startedAt"].as_str()?.to_string(),
        op.split_whitespace().collect::<Vec<_>>().join(" "),
    ))
}

/// The TCE/TKG prometheus package's templates, verbatim (tests/data/tkg/raw: the upstream
/// ConfigMap, the ConfigMap part of its overlay, its data values), the overlay that puts it in
/// `data.values.namespace` (the package has its own elsewhere), and promfed's kapp Config.
fn tkg_package_files() -> Vec<(String, String)> {
    let raw = support::data("tkg/raw");
    let read = |f: &str| std::fs::read_to_string(raw.join(f)).unwrap();
    let overlay = read("tce-prometheus-2.37.0-overlay-prometheus.yaml");
    let cut = overlay
        .find("#@overlay/match by=overlay.subset({\"kind\":\"Deployment\"")
        .expect("the overlay's Deployment part");
    vec![
        (
            "config/upstream-configmap.yaml".into(),
            read("tce-prometheus-2.37.0-upstream-configmap.yaml"),
        ),
        (
            "config/values.yaml".into(),
            read("tce-prometheus-2.37.0-values.yaml"),
        ),
        (
            "config/overlay-prometheus.yaml".into(),
            overlay[..cut].to_string(),
        ),
        (
            "config/overlay-namespace.yaml".into(),
            "#@ load(\"@ytt:overlay\", \"overlay\")\n#@ load(\"@ytt:data\", \"data\")\n\
             #@overlay/match by=overlay.subset({\"kind\": \"ConfigMap\"}), expects=\"1+\"\n---\n\
             metadata:\n  #@overlay/match missing_ok=True\n  namespace: #@ data.values.namespace\n"
                .into(),
        ),
        (
            "config/kapp-config.yaml".into(),
            std::fs::read_to_string(root().join("deploy/kapp/kapp-config.yaml")).unwrap(),
        ),
    ]
}

#[test]
fn kapp_controller_reconciles_promfeds_package_then_the_tkg_package_quietly() {
    let Some(dir) = kapp_controller_dir() else {
        support::skip::<()>(
            &support::current_test(),
            "kapp-controller (scripts/build-tools.sh)",
        );
        return;
    };
    let Some(mut lab) = lab() else { return };
    let kc = start_kapp_controller(&lab, &dir);
    let tmp = lab.tmp.path().to_path_buf();
    let ns = "tkg-system";
    lab.cluster.namespace(ns);

    // promfed's Package, inline. The one change from packaging/build.sh's: kapp does not wait,
    // as without a controller-manager no Deployment ever gets a status.
    let mut build = lab.cluster.command("bash");
    build
        .arg(root().join("packaging/build.sh"))
        .args(["--inline", "--out"])
        .arg(tmp.join("bundle"));
    build.arg("--package").arg(tmp.join("package.yaml"));
    let out = build.output().unwrap();
    assert!(
        out.status.success(),
        "packaging/build.sh: {}",
        describe(&out)
    );
    let mut package = crate::support::manifests::parse_one(&tmp.join("package.yaml"));
    package["spec"]["template"]["spec"]["deploy"] =
        json!([{"kapp": {"rawOptions": ["--wait=false"]}}]);
    let certs = certificates(&tmp.join("kc-certs"));
    let ca = &certs.iter().find(|(n, _)| *n == "ca.crt").unwrap().1;
    let values = json!({
        "namespace": "promfed-pkg",
        "fullnameOverride": "pf-pkg",
        "certManager": {"enabled": false},
        "tls": {"existingSecret": "pf-pkg-tls", "caBundle": ca},
        "webhook": {"url": lab.cluster.env["PROMFED_LOCAL_WEBHOOK"]},
    });
    let files = [
        ("package.json", package.to_string()),
        ("values.yaml", values.to_string()),
    ];
    for (name, text) in &files {
        std::fs::write(tmp.join(name), text).unwrap();
    }
    let metadata = root().join("packaging/metadata.yaml");
    lab.cluster.kubectl_ok(
        &[
            "apply",
            "-n",
            ns,
            "-f",
            p(&metadata),
            "-f",
            p(&tmp.join("package.json")),
        ],
        None,
    );
    lab.cluster.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "promfed-values",
            "-n",
            ns,
            &format!(
                "--from-file=values.yaml={}",
                tmp.join("values.yaml").display()
            ),
        ],
        None,
    );
    lab.cluster.kubectl_ok(
        &[
            "apply",
            "-n",
            ns,
            "-f",
            p(&root().join("packaging/packageinstall.yaml")),
        ],
        None,
    );
    let guard = support::HANG_GUARD * 3;
    let (_, op) = support::wait_for("promfed's PackageInstall reconciled", guard, || {
        app_deploy(&lab.cluster, ns, "promfed")
            .ok_or_else(|| std::fs::read_to_string(&kc.log).unwrap_or_default())
    });
    assert!(op.starts_with("Op: 8 create"), "{op}");
    // The PackageInstall's status follows its App's.
    support::wait_for(
        "promfed's PackageInstall: Reconcile succeeded",
        guard,
        || {
            let pkgi = lab.cluster.get("packageinstall", ns, "promfed");
            let status = &pkgi["status"]["friendlyDescription"];
            if status == "Reconcile succeeded" {
                Ok(())
            } else {
                Err(status.to_string())
            }
        },
    );
    let dir_certs = tmp.join("kc-certs");
    let f = |n: &str| format!("--from-file={n}={}", dir_certs.join(n).display());
    lab.cluster.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "pf-pkg-tls",
            "-n",
            "promfed-pkg",
            "--type=kubernetes.io/tls",
            &f("tls.crt"),
            &f("tls.key"),
            &f("ca.crt"),
        ],
        None,
    );
    lab.kubelet_sync("promfed-pkg", "pf-pkg-config", "pf-pkg-tls");

    // The TKG prometheus package by a second PackageInstall, its sync period shortened.
    let files = tkg_package_files();
    let paths: serde_json::Map<String, Value> =
        files.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let prometheus = json!({
        "apiVersion": "data.packaging.carvel.dev/v1alpha1", "kind": "Package",
        "metadata": {"name": "prometheus.tanzu.vmware.com.2.37.0"},
        "spec": {"refName": "prometheus.tanzu.vmware.com", "version": "2.37.0", "template": {"spec": {
            "fetch": [{"inline": {"paths": paths}}],
            "template": [{"ytt": {"paths": ["config/"]}}],
            "deploy": [{"kapp": {}}]}}}
    });
    let install = json!({
        "apiVersion": "packaging.carvel.dev/v1alpha1", "kind": "PackageInstall",
        "metadata": {"name": "prometheus"},
        "spec": {"serviceAccountName": "promfed-install", "syncPeriod": "30s",
                 "packageRef": {"refName": "prometheus.tanzu.vmware.com", "versionSelection": {"constraints": "2.37.0"}},
                 "values": [{"secretRef": {"name": "prometheus-values"}}]}
    });
    lab.cluster.namespace("tanzu-system-monitoring");
    let values = |alert: bool| {
        let mut text = String::from("namespace: tanzu-system-monitoring\n");
        if alert {
            text.push_str("prometheus:\n  config:\n    alerting_rules_yml: |\n      groups:\n      - name: hub\n        rules:\n        - alert: ApiServerDown\n          expr: absent(up{job=\"kubernetes-apiservers\"} == 1)\n");
        }
        text
    };
    let secret = |alert: bool| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "prometheus-values", "namespace": ns},
               "stringData": {"values.yaml": values(alert)}})
    };
    for (name, object) in [
        ("prom-package.json", &prometheus),
        ("prom-install.json", &install),
        ("prom-values.json", &secret(false)),
    ] {
        std::fs::write(tmp.join(name), object.to_string()).unwrap();
        lab.cluster
            .kubectl_ok(&["apply", "-n", ns, "-f", p(&tmp.join(name))], None);
    }
    // What the package's templates make, by ytt here, for the comparison with the stored object.
    let expected = |alert: bool| -> Value {
        let dir = tmp.join(format!("prom-expected-{alert}"));
        for (name, text) in files
            .iter()
            .filter(|(n, _)| !n.ends_with("kapp-config.yaml"))
        {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::write(dir.join("values.yaml"), values(alert)).unwrap();
        let mut ytt = lab.cluster.command("ytt");
        ytt.arg("-f")
            .arg(dir.join("config"))
            .arg("--data-values-file")
            .arg(dir.join("values.yaml"));
        let out = ytt.output().unwrap();
        assert!(out.status.success(), "ytt: {}", describe(&out));
        crate::support::manifests::parse_stream(&String::from_utf8(out.stdout).unwrap()).remove(0)
    };
    let (first, op) = support::wait_for("the prometheus PackageInstall reconciled", guard, || {
        app_deploy(&lab.cluster, ns, "prometheus").ok_or_else(|| "not yet".to_string())
    });
    assert_eq!(op, "Op: 1 create, 0 delete, 0 update, 0 noop, 0 exists");
    assert_stored_federated_with(
        &lab.cluster,
        &expected(false),
        &lab.config,
        "installed by kapp-controller",
    );

    // kapp-controller's periodic reconciles: each a deploy that changes nothing.
    let mut last = first;
    let mut quiet = 0;
    let next = |last: &str| {
        support::wait_for("the next reconcile", guard, || {
            match app_deploy(&lab.cluster, ns, "prometheus") {
                Some((started, op)) if started != last => Ok((started, op)),
                _ => Err("not yet".to_string()),
            }
        })
    };
    while quiet < 5 {
        let (started, op) = next(&last);
        assert_eq!(op, QUIET, "reconcile {} after the install", quiet + 1);
        last = started;
        quiet += 1;
    }
    // A data values change: one update, federated; then quiet again.
    std::fs::write(tmp.join("prom-values.json"), secret(true).to_string()).unwrap();
    lab.cluster.kubectl_ok(
        &["apply", "-n", ns, "-f", p(&tmp.join("prom-values.json"))],
        None,
    );
    // A reconcile that read the values before the change may still finish quietly; the first
    // that reads the new ones is the one update.
    let mut before_change = 0;
    let (started, op) = loop {
        let (started, op) = next(&last);
        if op == ONE_UPDATE {
            break (started, op);
        }
        assert_eq!(op, QUIET, "a reconcile around the data values change");
        before_change += 1;
        assert!(before_change <= 2, "no update after the data values change");
        last = started;
    };
    assert_eq!(op, ONE_UPDATE);
    last = started;
    assert_stored_federated_with(
        &lab.cluster,
        &expected(true),
        &lab.config,
        "after the data values change",
    );
    let (_, op) = next(&last);
    assert_eq!(op, QUIET, "the reconcile after the change");
    eprintln!(
        "kapp-controller: promfed's PackageInstall reconciled; the prometheus PackageInstall: 1 create, \
         {quiet} periodic reconciles with no change, then {before_change} more with no change before the \
         new data values were read, 1 update from the data values change, 1 more with no change"
    );
}

#[test]
fn the_readme_package_block_installs_as_written_with_kapp_controller() {
    let Some(dir) = kapp_controller_dir() else {
        support::skip::<()>(
            &support::current_test(),
            "kapp-controller (scripts/build-tools.sh)",
        );
        return;
    };
    let Some(lab) = lab() else { return };
    let _kc = start_kapp_controller(&lab, &dir);
    // The package's default certificate is cert-manager's: its CRDs, no controllers.
    let crds = support::run(
        &root().join("scripts/build-tools.sh"),
        &[
            std::ffi::OsStr::new("dir"),
            std::ffi::OsStr::new("cert-manager-crds"),
        ],
        None,
    );
    let crds = PathBuf::from(String::from_utf8(crds.stdout).unwrap().trim()).join("crds");
    lab.cluster
        .kubectl_ok(&["apply", "--server-side", "-f", p(&crds)], None);
    lab.cluster.kubectl_ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=120s",
        ],
        None,
    );
    lab.cluster.namespace("tkg-system");
    // A checkout's files the block uses, in a folder of its own (the block writes two files).
    let checkout = lab.tmp.path().join("checkout");
    for folder in ["packaging", "dashboards"] {
        crate::support::manifests::copy_dir(&root().join(folder), &checkout.join(folder));
    }
    let _ = std::fs::remove_dir_all(checkout.join("packaging/bundle"));
    for file in [
        "charts/promfed/Chart.yaml",
        "tests/data/example-config.yaml",
    ] {
        std::fs::create_dir_all(checkout.join(file).parent().unwrap()).unwrap();
        std::fs::copy(root().join(file), checkout.join(file)).unwrap();
    }
    let block = readme_block("packaging/build.sh --inline --package promfed-package.yaml");
    let mut command = lab.cluster.command("bash");
    command
        .args(["-euo", "pipefail", "-c", &block])
        .current_dir(&checkout);
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "the README's package block: {}",
        describe(&out)
    );
    // kapp-controller fetched, templated and applied it; kapp then waits for the pods.
    let config = support::wait_for(
        "the package's webhook configuration",
        support::HANG_GUARD * 3,
        || {
            let out = lab.cluster.kubectl(
                &[
                    "get",
                    "mutatingwebhookconfiguration",
                    "promfed",
                    "-o",
                    "json",
                ],
                None,
            );
            if out.status.success() {
                Ok(serde_json::from_slice::<Value>(&out.stdout).unwrap())
            } else {
                Err(describe(&out))
            }
        },
    );
    assert_eq!(
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "promfed-system/promfed-serving"
    );
    support::wait_for("the package's Certificate", support::HANG_GUARD, || {
        let out = lab.cluster.kubectl(
            &[
                "get",
                "certificate",
                "-n",
                "promfed-system",
                "promfed-serving",
            ],
            None,
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(describe(&out))
        }
    });
    let stored = lab
        .cluster
        .get("configmap", "promfed-system", "promfed-config");
    let written =
        crate::support::manifests::parse_stream(stored["data"]["promfed.yaml"].as_str().unwrap())
            .remove(0);
    let seed = crate::support::manifests::parse_stream(
        &std::fs::read_to_string(support::data("example-config.yaml")).unwrap(),
    )
    .remove(0);
    for key in [
        "localClusterName",
        "clusterLabelName",
        "additionalScrapeConfigs",
    ] {
        assert_eq!(written[key], seed[key], "{key}");
    }
    let stored = [
        config,
        lab.cluster
            .get("configmap", "promfed-system", "promfed-config"),
    ];
    assert_match_conditions_from_config(&stored, "promfed", "the README's package block");
}
