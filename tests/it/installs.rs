//! kapp, ytt and helm as their users run them, against the local API server with promfed's
//! webhook (`scripts/kube-local.sh`, the pinned kapp, ytt, helm 3 and helm 4): each step asserts
//! on the tool's own output and exit code, and on the stored ConfigMap being exactly what
//! `promfed render` makes of what the tool wrote.
//!
//! The tests that change promfed's config run on a cluster of their own (promfed reloads the
//! file it was started with); the others share one, each in namespaces of its own.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::{Value, json};

use crate::cluster;
use crate::support::kube::{
    self, Cluster, assert_stored_federated, assert_stored_federated_with, configmap, rendered_data,
};
use crate::support::{self, describe, root};

/// The cluster the tests that keep promfed's config share, started on first use.
fn shared() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| kube::tools_built().then(|| Cluster::up(None)))
        .as_ref()
}

const TKG: &str = "tkg/prometheus-server-configmap.yaml";

/// stdout and stderr of a tool, together, as a user sees them.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn output(mut command: Command) -> Output {
    command.output().expect("running a tool")
}

/// kapp's summary line (`Op: 0 create, 0 delete, 1 update, 0 noop, 0 exists`), spaces squeezed.
fn kapp_ops(out: &Output) -> String {
    let all = text(out);
    let line = all
        .lines()
        .find(|l| l.starts_with("Op:"))
        .unwrap_or_else(|| panic!("no Op: line in kapp's output:\n{all}"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

const QUIET: &str = "Op: 0 create, 0 delete, 0 update, 0 noop, 0 exists";
const ONE_UPDATE: &str = "Op: 0 create, 0 delete, 1 update, 0 noop, 0 exists";

/// The removed and added lines of kapp's `--diff-changes` output (`10     -   text`,
/// `     10 +   text`).
fn kapp_diff_lines(out: &Output) -> (usize, usize) {
    let all = text(out);
    let mut counts = (0, 0);
    for line in all.lines() {
        let mut words = line.split_whitespace();
        let (Some(number), Some(sign)) = (words.next(), words.next()) else {
            continue;
        };
        if number.chars().all(|c| c.is_ascii_digit()) {
            match sign {
                "-" => counts.0 += 1,
                "+" => counts.1 += 1,
                _ => {}
            }
        }
    }
    counts
}

fn write_json(path: &Path, value: &Value) {
    // JSON is YAML: kapp and ytt read it as the package's YAML.
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

fn namespace_object(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
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

/// Change promfed's config file and wait until promfed has reloaded it.
fn change_config(cluster: &Cluster, config: &Path, federation: &str) {
    let before = generation(cluster);
    let mut text = std::fs::read_to_string(config).unwrap();
    if !text.contains("\nclusters:\n") {
        text.push_str("clusters:\n");
    }
    text.push_str(&format!(
        "- name: {federation}\n  targets: [prom.{federation}.cluster.local:9090]\n"
    ));
    // Written whole and renamed into place, as kubelet swaps a mounted ConfigMap: a reader
    // polling the file must never see it half written (an empty or cut config is a valid one).
    let fresh = config.with_extension("yaml.new");
    std::fs::write(&fresh, text).unwrap();
    std::fs::rename(&fresh, config).unwrap();
    let deadline = Instant::now() + support::HANG_GUARD;
    while generation(cluster) <= before {
        assert!(
            Instant::now() < deadline,
            "promfed did not reload {config:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// 1, 2. kapp, directly and after ytt

/// How the manifests reach kapp.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Path_ {
    /// `kapp deploy -f DIR`, without the kapp Config.
    Plain,
    /// `kapp deploy -f DIR -f deploy/kapp/kapp-config.yaml`.
    WithConfig,
    /// The PackageInstall path: the Config in a Secret (`kubectl create secret generic
    /// promfed-kapp-config --from-file=...` as docs/install.md says), its file given to ytt with
    /// the package's templates as kapp-controller does, ytt's output to `kapp deploy`.
    Ytt,
}

/// One kapp case: the TKG ConfigMap and its Namespace as app `app` in `namespace`, through
/// every step of the issue. `config` is the file promfed runs with (it is changed).
fn kapp_case(cluster: &Cluster, namespace: &str, app: &str, how: Path_, config: &Path) {
    let case = format!("{how:?} in {namespace}");
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("package");
    std::fs::create_dir(&package).unwrap();
    let mut object = configmap(TKG, namespace, None);
    write_json(
        &package.join("namespace.yaml"),
        &namespace_object(namespace),
    );
    write_json(&package.join("configmap.yaml"), &object);
    let kapp_config = root().join("deploy/kapp/kapp-config.yaml");
    // The Secret kapp-controller would read for the PackageInstall path.
    let secret_files = dir.path().join("secret");
    if how == Path_::Ytt {
        // The PackageInstall's namespace, as in docs/install.md.
        let secret = format!("promfed-kapp-config-{app}");
        cluster.namespace("tkg-system");
        cluster.kubectl_ok(
            &[
                "-n",
                "tkg-system",
                "create",
                "secret",
                "generic",
                &secret,
                &format!("--from-file=kapp-config.yaml={}", kapp_config.display()),
            ],
            None,
        );
        std::fs::create_dir(&secret_files).unwrap();
        let stored = cluster.get("secret", "tkg-system", &secret);
        for (name, value) in stored["data"].as_object().unwrap() {
            let out = support::run(
                Path::new("base64"),
                &[OsStr::new("-d")],
                Some(value.as_str().unwrap()),
            );
            assert!(out.status.success(), "{}", describe(&out));
            std::fs::write(secret_files.join(name), out.stdout).unwrap();
        }
    }
    let deploy = |extra: &[&str]| -> Output {
        let mut kapp = cluster.command("kapp");
        kapp.args(["deploy", "-a", app]);
        match how {
            Path_::Plain => {
                kapp.arg("-f").arg(&package);
            }
            Path_::WithConfig => {
                kapp.arg("-f").arg(&package).arg("-f").arg(&kapp_config);
            }
            Path_::Ytt => {
                let mut ytt = cluster.command("ytt");
                ytt.arg("-f").arg(&package).arg("-f").arg(&secret_files);
                let out = output(ytt);
                assert!(out.status.success(), "{case}: ytt: {}", describe(&out));
                let rendered = dir.path().join("rendered.yaml");
                std::fs::write(&rendered, &out.stdout).unwrap();
                kapp.arg("-f").arg(rendered);
            }
        }
        kapp.args(extra);
        output(kapp)
    };
    // `--diff-run --diff-exit-status`: kapp exits 2 with no pending changes, 3 with some.
    let diff_run = || deploy(&["--diff-run", "--diff-exit-status", "--diff-changes"]);
    let assert_quiet = |step: &str| {
        let out = diff_run();
        assert_eq!(
            (out.status.code(), kapp_ops(&out).as_str()),
            (Some(2), QUIET),
            "{case}, {step}: kapp sees changes: {}",
            describe(&out)
        );
        out
    };
    let version = || {
        cluster.get("configmap", namespace, "prometheus-server")["metadata"]["resourceVersion"]
            .clone()
    };

    // First deploy: created, federated.
    let out = deploy(&["-y"]);
    assert!(
        out.status.success() && text(&out).contains("Succeeded"),
        "{case}: first deploy: {}",
        describe(&out)
    );
    assert_stored_federated_with(cluster, &object, config, &format!("{case}: first deploy"));

    // The same deploy again: nothing to do, nothing written.
    let quiet = assert_quiet("the same deploy again");
    let before = version();
    let out = deploy(&["-y"]);
    assert!(out.status.success(), "{case}: {}", describe(&out));
    assert_eq!(kapp_ops(&out), QUIET, "{case}: {}", describe(&out));
    assert_eq!(
        version(),
        before,
        "{case}: a quiet deploy wrote the ConfigMap"
    );

    // A data value changed: one update, showing only that line, federated, then quiet.
    let yml = object["data"]["prometheus.yml"].as_str().unwrap();
    assert!(yml.contains("scrape_timeout: 10s"));
    object["data"]["prometheus.yml"] =
        json!(yml.replace("scrape_timeout: 10s", "scrape_timeout: 15s"));
    write_json(&package.join("configmap.yaml"), &object);
    let update = deploy(&["-y", "--diff-changes"]);
    assert!(update.status.success(), "{case}: {}", describe(&update));
    assert_eq!(
        kapp_ops(&update),
        ONE_UPDATE,
        "{case}: {}",
        describe(&update)
    );
    assert_eq!(
        kapp_diff_lines(&update),
        (1, 1),
        "{case}: kapp's diff is not the one changed line: {}",
        describe(&update)
    );
    assert_stored_federated_with(cluster, &object, config, &format!("{case}: after a change"));
    assert_quiet("after the change");

    // promfed's config changed, the ConfigMap re-rendered as docs/install.md says.
    change_config(cluster, config, &format!("{app}-extra"));
    cluster.kubectl_ok(
        &[
            "-n",
            namespace,
            "annotate",
            "configmap",
            "prometheus-server",
            "promfed.io/rerender=2026-01-01T00:00:00Z",
            "--overwrite",
        ],
        None,
    );
    assert_stored_federated_with(cluster, &object, config, &format!("{case}: re-rendered"));
    if how == Path_::Plain {
        // Without the Config, kapp diffs against the live object: promfed's new rewrite shows
        // as one update; applying it sends the template again, which promfed federates again.
        let out = diff_run();
        assert_eq!(
            (out.status.code(), kapp_ops(&out).as_str()),
            (Some(3), ONE_UPDATE),
            "{case}: after a re-render: {}",
            describe(&out)
        );
        let (removed, added) = kapp_diff_lines(&out);
        eprintln!(
            "{case}: after a re-render kapp shows 1 update, {removed} lines removed, {added} added"
        );
        let out = deploy(&["-y"]);
        assert!(out.status.success(), "{case}: {}", describe(&out));
        assert_stored_federated_with(cluster, &object, config, &format!("{case}: re-applied"));
    }
    assert_quiet("after the re-render");
    eprintln!(
        "{case}: kapp deploy, nothing changed (exit {:?}):\n{}",
        quiet.status.code(),
        text(&quiet)
    );
}

/// A copy of deploy/base/promfed.yaml for a cluster of a test's own to run with and change.
fn config_copy() -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::copy(root().join("deploy/base/promfed.yaml"), file.path()).unwrap();
    file
}

macro_rules! own_cluster_with {
    ($config:expr) => {
        if kube::tools_built() {
            Cluster::up(Some($config))
        } else {
            support::skip::<()>(
                &support::current_test(),
                "kube-apiserver (scripts/build-tools.sh)",
            );
            return;
        }
    };
}

#[test]
fn kapp_without_config_in_tkg_namespace_with_config_in_tce_namespace() {
    let config = config_copy();
    let cluster = own_cluster_with!(config.path());
    kapp_case(
        &cluster,
        "tanzu-system-monitoring",
        "prometheus",
        Path_::Plain,
        config.path(),
    );
    kapp_case(
        &cluster,
        "prometheus",
        "prometheus-tce",
        Path_::WithConfig,
        config.path(),
    );
}

#[test]
fn kapp_with_config_in_tkg_namespace_without_config_in_tce_namespace() {
    let config = config_copy();
    let cluster = own_cluster_with!(config.path());
    kapp_case(
        &cluster,
        "tanzu-system-monitoring",
        "prometheus",
        Path_::WithConfig,
        config.path(),
    );
    kapp_case(
        &cluster,
        "prometheus",
        "prometheus-tce",
        Path_::Plain,
        config.path(),
    );
}

#[test]
fn ytt_then_kapp_the_package_install_path_in_both_namespaces() {
    let config = config_copy();
    let cluster = own_cluster_with!(config.path());
    kapp_case(
        &cluster,
        "tanzu-system-monitoring",
        "prometheus",
        Path_::Ytt,
        config.path(),
    );
    kapp_case(
        &cluster,
        "prometheus",
        "prometheus-tce",
        Path_::Ytt,
        config.path(),
    );
}

/// kapp keeps its last-applied copy (`kapp.k14s.io/original`) only while the applied object's
/// compact JSON is at most 262144 bytes; without it kapp diffs against the live object.
#[test]
fn kapp_and_a_configmap_over_256_kib() {
    let cluster = cluster!();
    let python = support::require!(python);
    let mut rows = Vec::new();
    for (target, namespace) in [(0, "kapp-tkg"), (400_000, "kapp-400k")] {
        // 0: the TKG ConfigMap itself (29 kB); else mkbig.py's (every corpus rule, at least
        // one copy of each: about 500 kB).
        let mut object = if target == 0 {
            configmap(TKG, namespace, None)
        } else {
            let out = support::run(
                &python,
                &[
                    support::peer_script("mkbig.py").as_os_str(),
                    support::data("").as_os_str(),
                    OsStr::new(&target.to_string()),
                ],
                None,
            );
            assert!(out.status.success(), "{}", describe(&out));
            single_document(&String::from_utf8(out.stdout).unwrap())
        };
        object["metadata"]["namespace"] = json!(namespace);
        let compact = serde_json::to_vec(&object).unwrap().len();
        let dir = tempfile::tempdir().unwrap();
        write_json(
            &dir.path().join("namespace.yaml"),
            &namespace_object(namespace),
        );
        write_json(&dir.path().join("configmap.yaml"), &object);
        let kapp_config = root().join("deploy/kapp/kapp-config.yaml");
        let deploy = |extra: &[&str]| {
            let mut kapp = cluster.command("kapp");
            kapp.args(["deploy", "-a", namespace, "-f"])
                .arg(dir.path())
                .arg("-f")
                .arg(&kapp_config)
                .args(extra);
            output(kapp)
        };
        let out = deploy(&["-y"]);
        assert!(out.status.success(), "{}", describe(&out));
        assert_stored_federated(cluster, &object, namespace);
        let stored = cluster.get("configmap", namespace, "prometheus-server");
        let original = stored["metadata"]["annotations"]
            .get("kapp.k14s.io/original")
            .is_some();
        let before = stored["metadata"]["resourceVersion"].clone();
        let again = deploy(&["--diff-run", "--diff-exit-status", "--diff-changes"]);
        let (removed, added) = kapp_diff_lines(&again);
        let applied = deploy(&["-y"]);
        assert!(applied.status.success(), "{}", describe(&applied));
        let after = cluster.get("configmap", namespace, "prometheus-server");
        assert_stored_federated(cluster, &object, namespace);
        let written = after["metadata"]["resourceVersion"] != before;
        rows.push(format!(
            "{:>9} {:>13} {:>9} {:>10} {:>13} {:>9}",
            compact,
            original,
            again.status.code().unwrap_or(-1),
            format!("-{removed}/+{added}"),
            kapp_ops(&applied)
                .replace("Op: ", "")
                .split(", ")
                .nth(2)
                .unwrap_or(""),
            written
        ));
        if compact <= 262_144 {
            assert!(original, "{namespace}: no last-applied copy");
            assert_eq!(again.status.code(), Some(2), "{}", describe(&again));
        } else {
            // What kapp does: no last-applied copy, so every deploy diffs the template against
            // the live, federated object and applies it; promfed federates it again and the
            // API server, seeing no change, writes nothing.
            assert!(
                !original,
                "{namespace}: a last-applied copy over the limit?"
            );
            assert_eq!(again.status.code(), Some(3), "{}", describe(&again));
            assert_eq!(kapp_ops(&applied), ONE_UPDATE);
            assert!(
                !written,
                "{namespace}: the re-applied ConfigMap was written"
            );
        }
    }
    eprintln!(
        "kapp and big ConfigMaps (with deploy/kapp/kapp-config.yaml)\n\
         {:>9} {:>13} {:>9} {:>10} {:>13} {:>9}\n{}",
        "JSON B",
        "last-applied",
        "diff exit",
        "diff lines",
        "next deploy",
        "written",
        rows.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// 2. the seed's ytt overlay next to promfed

/// What a tool made of the TKG ConfigMap, counted.
#[derive(Debug, Default)]
struct Effect {
    jobs: usize,
    jobs_labelled: usize,
    jobs_duplicate: usize,
    federation_jobs: usize,
    federation_forced: usize,
    rules: usize,
    rules_labelled: usize,
    rules_scoped: usize,
    rules_broken: usize,
}

fn effect(object: &Value, local: &str) -> Effect {
    let parse = |text: &str| {
        promfed::yaml::parse(text, promfed::yaml::Limits::default())
            .unwrap()
            .unwrap()
            .to_json()
    };
    let mut e = Effect::default();
    let prometheus = parse(object["data"]["prometheus.yml"].as_str().unwrap());
    let mut names = std::collections::BTreeSet::new();
    for job in prometheus["scrape_configs"].as_array().unwrap() {
        if !names.insert(job["job_name"].to_string()) {
            e.jobs_duplicate += 1;
        }
        let federation = job["metrics_path"].as_str() == Some("/federate");
        let sets_cluster = |key: &str| {
            (job[key].as_array().into_iter().flatten())
                .any(|r| r["target_label"] == "cluster" && r["source_labels"].is_null())
        };
        if federation {
            e.federation_jobs += 1;
            if sets_cluster("metric_relabel_configs") {
                e.federation_forced += 1;
            }
        } else {
            e.jobs += 1;
            let last = job["relabel_configs"].as_array().and_then(|r| r.last());
            if last.is_some_and(|r| r["target_label"] == "cluster" && r["replacement"] == local) {
                e.jobs_labelled += 1;
            }
        }
    }
    let rules = parse(object["data"]["recording_rules.yml"].as_str().unwrap());
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            e.rules += 1;
            if rule["labels"]["cluster"] == local {
                e.rules_labelled += 1;
            }
            match promfed::promql::parse(rule["expr"].as_str().unwrap()) {
                Err(_) => e.rules_broken += 1,
                Ok(ast) => {
                    let all = promfed::promql::selectors(&ast).iter().all(|vs| {
                        vs.matchers
                            .matchers
                            .iter()
                            .any(|m| m.name == "cluster" && m.value == local)
                    });
                    if all {
                        e.rules_scoped += 1;
                    }
                }
            }
        }
    }
    e
}

/// The data keys, rules and jobs a second run changes.
fn second_run_changes(first: &Value, second: &Value) -> (usize, usize) {
    let keys = (first["data"].as_object().unwrap().iter())
        .filter(|(k, v)| second["data"][k.as_str()] != **v)
        .count();
    let exprs = |o: &Value| -> Vec<String> {
        let text = o["data"]["recording_rules.yml"].as_str().unwrap();
        let rules = promfed::yaml::parse(text, promfed::yaml::Limits::default())
            .unwrap()
            .unwrap()
            .to_json();
        (rules["groups"].as_array().unwrap().iter())
            .flat_map(|g| g["rules"].as_array().unwrap().iter())
            .map(|r| r.to_string())
            .collect()
    };
    let rules = (exprs(first).iter().zip(exprs(second).iter()))
        .filter(|(a, b)| a != b)
        .count();
    (keys, rules)
}

fn single_document(text: &str) -> Value {
    promfed::yaml::parse(text, promfed::yaml::Limits::default())
        .unwrap()
        .unwrap()
        .to_json()
}

#[test]
fn the_seed_ytt_overlay_next_to_promfed() {
    let cluster = cluster!();
    let seed = root().join("tests/peers/seed-ytt");
    let input = support::data(TKG);
    let ytt = |input: &Path, overlay: &Path| {
        let mut ytt = cluster.command("ytt");
        ytt.arg("-f").arg(input).arg("-f").arg(overlay);
        output(ytt)
    };
    // The overlay as the seed wrote it: real ytt refuses it.
    let as_written = ytt(&input, &seed);
    assert!(!as_written.status.success(), "{}", describe(&as_written));
    let refusal = text(&as_written);
    assert!(refusal.contains("keyword k not found"), "{refusal}");
    // With its one error mended (named arguments for the named placeholders).
    let fixed = tempfile::tempdir().unwrap();
    for file in ["overlay.yaml", "values.yaml"] {
        let text_ = std::fs::read_to_string(seed.join(file)).unwrap();
        let text_ = text_.replace(
            ".format(clusterLabelName, localClusterName)",
            ".format(k=clusterLabelName, v=localClusterName)",
        );
        std::fs::write(fixed.path().join(file), text_).unwrap();
    }
    let first = ytt(&input, fixed.path());
    assert!(first.status.success(), "{}", describe(&first));
    let outputs = tempfile::tempdir().unwrap();
    let first_path = outputs.path().join("first.yaml");
    std::fs::write(&first_path, &first.stdout).unwrap();
    let second = ytt(&first_path, fixed.path());
    assert!(second.status.success(), "{}", describe(&second));
    let seed_first = single_document(&String::from_utf8_lossy(&first.stdout));
    let seed_second = single_document(&String::from_utf8_lossy(&second.stdout));

    let original = configmap(TKG, "tanzu-system-monitoring", None);
    let mut promfed_first = original.clone();
    promfed_first["data"] = rendered_data(&original);
    let mut promfed_second = promfed_first.clone();
    promfed_second["data"] = rendered_data(&promfed_first);

    let local = "shared-tools";
    let rows = [
        ("TKG ConfigMap as shipped", effect(&original, local), None),
        (
            "seed overlay (real ytt, format() mended)",
            effect(&seed_first, local),
            Some(second_run_changes(&seed_first, &seed_second)),
        ),
        (
            "promfed",
            effect(&promfed_first, local),
            Some(second_run_changes(&promfed_first, &promfed_second)),
        ),
    ];
    let mut table = String::from(
        "| | local jobs labelled | duplicate job names | federation jobs (cluster forced) | recording rules labelled | rules scoped | rules broken | second run: keys / rules changed |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, e, again) in &rows {
        table.push_str(&format!(
            "| {name} | {}/{} | {} | {} ({}) | {}/{} | {}/{} | {} | {} |\n",
            e.jobs_labelled,
            e.jobs,
            e.jobs_duplicate,
            e.federation_jobs,
            e.federation_forced,
            e.rules_labelled,
            e.rules,
            e.rules_scoped,
            e.rules,
            e.rules_broken,
            again.map_or("–".into(), |(k, r)| format!("{k} / {r}")),
        ));
    }
    eprintln!("seed overlay as written, real ytt: {}", refusal.trim());
    eprintln!("{table}");
    let p = &rows[2].1;
    assert_eq!(p.jobs_labelled, p.jobs);
    assert_eq!(p.rules_scoped, p.rules);
    assert_eq!(p.rules_broken, 0);
    assert_eq!(
        rows[2].2,
        Some((0, 0)),
        "promfed's second run changed something"
    );
    assert_ne!(
        rows[1].2,
        Some((0, 0)),
        "the seed's second run changed nothing?"
    );
}

// ---------------------------------------------------------------------------------------
// 3. helm 3 and helm 4

/// The test chart (tests/charts/prometheus-server) with the TKG package's files added.
fn chart() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("cp")
        .arg("-r")
        .arg(root().join("tests/charts/prometheus-server"))
        .arg(dir.path().join("prometheus"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let files = dir.path().join("prometheus/files");
    std::fs::create_dir(&files).unwrap();
    for file in [
        "prometheus.yml",
        "recording_rules.yml",
        "alerting_rules.yml",
    ] {
        std::fs::copy(support::data(format!("tkg/{file}")), files.join(file)).unwrap();
    }
    dir
}

/// The ConfigMap of a manifest stream helm printed (`helm get manifest`, `helm template`).
fn manifest_configmap(text: &str) -> Value {
    let document = text
        .split("\n---")
        .find(|d| d.contains("kind: ConfigMap"))
        .expect("a ConfigMap in helm's manifest");
    single_document(document.trim_start_matches("---"))
}

/// The ConfigMap's name by the chart's rule.
fn server_name(release: &str) -> String {
    if release.contains("prometheus") {
        format!("{release}-server")
    } else {
        format!("{release}-prometheus-server")
    }
}

#[derive(Clone, Copy, Debug)]
enum Helm {
    Three,
    FourServerSide,
    FourClientSide,
}

fn helm_releases(helm: Helm) {
    let cluster = cluster!();
    let chart = chart();
    let chart_path = chart.path().join("prometheus");
    let (program, apply): (&str, &[&str]) = match helm {
        Helm::Three => ("helm", &[]),
        Helm::FourServerSide => ("helm4", &[]),
        Helm::FourClientSide => ("helm4", &["--server-side=false"]),
    };
    let mut transcript = String::new();
    for (release, labels) in [
        ("prometheus", "14"),
        ("monitoring", "25"),
        ("my-prometheus", "25"),
    ] {
        let namespace = format!("{}-{release}", format!("{helm:?}").to_lowercase());
        cluster.namespace(&namespace);
        let name = server_name(release);
        let helm_run = |args: &[&str]| {
            let mut command = cluster.command(program);
            command.args(args).args(["-n", &namespace]);
            output(command)
        };
        let check = |step: &str, out: &Output, success: &str, interval: &str| {
            let all = text(out);
            assert!(
                out.status.success() && all.contains(success),
                "{helm:?} {release}: {step}: {}",
                describe(out)
            );
            let manifest = helm_run(&["get", "manifest", release]);
            assert!(manifest.status.success(), "{}", describe(&manifest));
            let template = manifest_configmap(&String::from_utf8_lossy(&manifest.stdout));
            assert_eq!(template["metadata"]["name"], json!(name));
            assert!(
                (template["data"]["prometheus.yml"].as_str().unwrap())
                    .contains(&format!("scrape_interval: {interval}"))
            );
            let mut written = template.clone();
            written["metadata"]["namespace"] = json!(namespace);
            assert_stored_federated(cluster, &written, &format!("{helm:?} {release}: {step}"));
            all
        };
        let chart_arg = chart_path.to_str().unwrap();
        let labels_arg = format!("labels={labels}");
        let with = |verb: &[&str], extra: &[&str]| {
            let mut args: Vec<&str> = verb.to_vec();
            args.extend([release, chart_arg, "--set", &labels_arg]);
            args.extend_from_slice(extra);
            args.extend_from_slice(apply);
            helm_run(&args)
        };
        let out = with(&["install"], &[]);
        let installed = check("install", &out, "STATUS: deployed", "1m");
        let out = with(&["upgrade"], &[]);
        check("upgrade, values unchanged", &out, "STATUS: deployed", "1m");
        let out = with(&["upgrade"], &["--set", "scrapeInterval=2m"]);
        check("upgrade, values changed", &out, "STATUS: deployed", "2m");
        let mut rollback = vec!["rollback", release, "1"];
        if !matches!(helm, Helm::Three) {
            rollback.extend_from_slice(apply);
        }
        let out = helm_run(&rollback);
        let rolled = check("rollback", &out, "Rollback was a success", "1m");
        let out = with(&["upgrade", "--install"], &[]);
        check("upgrade --install", &out, "STATUS: deployed", "1m");
        if release == "prometheus" {
            transcript = format!("{installed}\n{rolled}");
        }
    }
    eprintln!("{helm:?}, release prometheus:\n{transcript}");
}

#[test]
fn helm3_install_upgrade_rollback_federated_after_each() {
    helm_releases(Helm::Three);
}

#[test]
fn helm4_server_side_install_upgrade_rollback_federated_after_each() {
    helm_releases(Helm::FourServerSide);
}

#[test]
fn helm4_client_side_install_upgrade_rollback_federated_after_each() {
    helm_releases(Helm::FourClientSide);
}

// ---------------------------------------------------------------------------------------
// 4. the post-renderer, helm 3 and a helm 4 plugin

#[test]
fn post_renderer_helm3_and_helm4_plugin_federate_and_show_promfed_refusal() {
    // Its own cluster, without the webhook: what is stored is the post-renderer's alone.
    let cluster = cluster!(own);
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", "promfed"], None);
    let chart = chart();
    let chart_path = chart.path().join("prometheus");
    let chart_arg = chart_path.to_str().unwrap();
    let config = root().join("deploy/base/promfed.yaml");
    let config_arg = config.to_str().unwrap();
    // Each helm its own data folder, where its plugins are: helm 3 fails on every command
    // with the helm 4 plugin among its own (docs/install.md says so, and shows the alias).
    let homes = tempfile::tempdir().unwrap();
    let data_home = |program: &str| homes.path().join(program).join("data");
    let with_env = |program: &str| {
        let mut command = cluster.command(program);
        command.env("PROMFED", support::promfed_bin());
        command
            .env(
                "HELM_CONFIG_HOME",
                homes.path().join(program).join("config"),
            )
            .env("HELM_CACHE_HOME", homes.path().join(program).join("cache"))
            .env("HELM_DATA_HOME", data_home(program));
        command
    };
    // The plugin as a user installs it: from the archive scripts/helm-plugin-package.sh
    // writes, copied (not linked to the checkout), unsigned.
    let packaged = homes.path().join("package");
    let out = output({
        let mut command = Command::new(root().join("scripts/helm-plugin-package.sh"));
        command.arg(&packaged);
        command
    });
    assert!(
        out.status.success(),
        "helm-plugin-package.sh: {}",
        describe(&out)
    );
    let archive = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(archive.ends_with("/promfed-0.1.0.tgz"), "{archive}");
    let mut install = with_env("helm4");
    install.args(["plugin", "install", "--verify=false", &archive]);
    let out = output(install);
    assert!(
        out.status.success(),
        "helm4 plugin install: {}",
        describe(&out)
    );
    let installed = data_home("helm4").join("plugins/promfed");
    let script = installed.join("helm-post-renderer.sh");
    assert!(
        !std::fs::symlink_metadata(&installed).unwrap().is_symlink()
            && !std::fs::symlink_metadata(&script).unwrap().is_symlink(),
        "the plugin is a copy, not a link into the checkout"
    );
    // helm 3 beside it, in its own folder, works; in helm 4's it fails as documented.
    let mut list = with_env("helm");
    list.args(["plugin", "list"]);
    let out = output(list);
    assert!(
        out.status.success(),
        "helm 3 beside helm 4: {}",
        describe(&out)
    );
    let mut shared = with_env("helm");
    shared
        .args(["plugin", "list"])
        .env("HELM_DATA_HOME", data_home("helm4"));
    let out = output(shared);
    assert!(
        text(&out).contains("apiVersion"),
        "helm 3 reading helm 4's plugins, docs/install.md says it fails: {}",
        describe(&out)
    );
    let script = root().join("scripts/helm-post-renderer.sh");

    let bad = r#"extraRules=[{"record":"bad:rule","expr":"sum(rate(x[5m])"}]"#;
    for (program, post_renderer) in [("helm", script.to_str().unwrap()), ("helm4", "promfed")] {
        let namespace = format!("post-{program}");
        cluster.namespace(&namespace);
        let run = |release: &str, extra: &[&str]| {
            let mut command = with_env(program);
            command
                .args([
                    "install",
                    release,
                    chart_arg,
                    "-n",
                    &namespace,
                    "--set",
                    "labels=14",
                ])
                .args([
                    "--post-renderer",
                    post_renderer,
                    "--post-renderer-args",
                    config_arg,
                ])
                .args(extra);
            output(command)
        };
        let out = run("prometheus", &[]);
        assert!(
            out.status.success() && text(&out).contains("STATUS: deployed"),
            "{program}: {}",
            describe(&out)
        );
        let mut template = with_env(program);
        template.args([
            "template",
            "prometheus",
            chart_arg,
            "-n",
            &namespace,
            "--set",
            "labels=14",
        ]);
        let out = output(template);
        assert!(out.status.success(), "{}", describe(&out));
        let mut written = manifest_configmap(&String::from_utf8_lossy(&out.stdout));
        written["metadata"]["namespace"] = json!(namespace);
        assert_stored_federated(&cluster, &written, &format!("{program} post-renderer"));

        // promfed refuses: helm fails, installs nothing, and promfed's message reaches the user.
        let out = run("refused", &["--set-json", bad]);
        let all = text(&out);
        eprintln!("{program}, a ConfigMap promfed refuses:\n{all}");
        assert!(!out.status.success(), "{program}: installed: {all}");
        assert!(
            all.contains("extra_rules.yml") && all.contains("bad:rule"),
            "{program}: promfed's message does not reach helm's output:\n{all}"
        );
        let none = cluster.kubectl(
            &["get", "configmap", "-n", &namespace, "refused-server"],
            None,
        );
        assert!(!none.status.success());
    }
}
