//! promfed's helm chart (`charts/promfed`) and Carvel package (`packaging/`) as their tools
//! render them: the pinned helm, helm 4 and ytt (scripts/build-tools.sh), found on `PATH` or in
//! the tools cache; the rendered objects parsed; the webhooks' `matchConditions` next to what
//! `promfed match-conditions` prints for the config the same render wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::manifests::{find, p, parse_stream, run_ok};
use super::{promfed_bin, root};

/// The Kubernetes versions promfed supports (docs/install.md, "Requirements": 1.30 or newer)
/// whose schemas kubernetes-validate has: the oldest, the one the other manifests are checked
/// against, the newest.
pub const K8S_VERSIONS: [&str; 3] = ["1.30.0", "1.33.0", "1.37.0"];

/// `pinned!(helm)`: helm, helm4 or ytt from this module, or a skip (a failure with
/// PROMFED_REQUIRE_TOOLS), as `need!` does for the install tools.
macro_rules! pinned {
    ($tool:ident) => {
        match $crate::support::charts::$tool() {
            Some(path) => path,
            None => {
                $crate::support::skip::<()>(
                    &$crate::support::current_test(),
                    concat!(stringify!($tool), " (scripts/build-tools.sh)"),
                );
                return;
            }
        }
    };
}
pub(crate) use pinned;

/// The lookup: `$env_var`, else `bin` on PATH, else the tools cache's
/// `NAME-VERSION/bin/bin` (`scripts/build-tools.sh dir NAME`); only if it runs `version`.
fn lookup(env_var: &str, name: &str, bin: &str) -> Option<PathBuf> {
    let runs = |path: &Path| {
        Command::new(path)
            .arg("version")
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if let Some(path) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path)).filter(|p| runs(p));
    }
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(bin))
        .find(|p| p.is_file());
    let cached = || {
        let out = Command::new(root().join("scripts/build-tools.sh"))
            .args(["dir", name])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let dir = String::from_utf8(out.stdout).ok()?;
        Some(PathBuf::from(dir.trim()).join("bin").join(bin))
    };
    on_path.or_else(cached).filter(|p| runs(p))
}

/// helm 3 (`PROMFED_HELM`, PATH, or the cache).
pub fn helm() -> Option<PathBuf> {
    lookup("PROMFED_HELM", "helm", "helm")
}

/// helm 4 (`PROMFED_HELM4`, PATH, or the cache).
pub fn helm4() -> Option<PathBuf> {
    lookup("PROMFED_HELM4", "helm4", "helm4")
}

/// ytt (`PROMFED_YTT`, PATH, or the cache).
pub fn ytt() -> Option<PathBuf> {
    lookup("PROMFED_YTT", "ytt", "ytt")
}

/// `helm template RELEASE charts/promfed -n NAMESPACE --kube-version K8S ARGS` (ARGS: `-f`,
/// `--set` ...), which must succeed: the text.
pub fn helm_template(
    helm: &Path,
    release: &str,
    namespace: &str,
    k8s: &str,
    args: &[&str],
) -> String {
    let chart = root().join("charts/promfed");
    let mut all = vec![
        "template",
        release,
        p(&chart),
        "-n",
        namespace,
        "--kube-version",
        k8s,
    ];
    all.extend_from_slice(args);
    run_ok(helm, &all, None, &[])
}

/// `ytt -f packaging/config ARGS` with the dashboards beside it as the bundle has them (a
/// temporary copy: `packaging/build.sh`'s layout), which must succeed: the text.
pub fn ytt_package(ytt: &Path, args: &[&str]) -> String {
    let bundle = package_bundle(ytt);
    let config = bundle.path().join("config");
    let mut all = vec!["-f", p(&config)];
    all.extend_from_slice(args);
    run_ok(ytt, &all, None, &[])
}

/// `packaging/build.sh --out TMP --package TMP/package.yaml` with `ytt` first on PATH: the
/// bundle's folder (config/, dashboards; no image lock).
pub fn package_bundle(ytt: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let package = dir.path().join("package.yaml");
    build_package(ytt, &[("--out", &out), ("--package", &package)], &[]);
    let bundle = tempfile::tempdir().unwrap();
    super::manifests::copy_dir(&out, bundle.path());
    bundle
}

/// `packaging/build.sh` with `ytt`'s folder first on PATH; its stdout.
pub fn build_package(ytt: &Path, options: &[(&str, &Path)], flags: &[&str]) -> String {
    let path = format!(
        "{}:{}",
        ytt.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = root().join("packaging/build.sh");
    let mut args: Vec<&str> = vec![p(&script)];
    for (option, value) in options {
        args.push(option);
        args.push(p(value));
    }
    args.extend_from_slice(flags);
    run_ok(Path::new("bash"), &args, None, &[("PATH", &path)])
}

/// The promfed config a render wrote (`promfed.yaml` of the ConfigMap `<name>-config`).
pub fn rendered_config(objects: &[Value], fullname: &str) -> String {
    let configmap = find(objects, "ConfigMap", &format!("{fullname}-config"));
    configmap["data"]["promfed.yaml"]
        .as_str()
        .expect("promfed.yaml in the config ConfigMap")
        .to_string()
}

/// `promfed match-conditions --kind KIND --config CONFIG` for a config given as text: the
/// conditions as (name, expression) pairs.
pub fn promfed_match_conditions(config: &str, kind: &str) -> Vec<(String, String)> {
    let dir = super::temp_files(&[("promfed.yaml", config)]);
    let file = dir.path().join("promfed.yaml");
    let text = run_ok(
        &promfed_bin(),
        &["match-conditions", "--kind", kind, "--config", p(&file)],
        None,
        &[],
    );
    conditions(&parse_stream(&text).remove(0))
}

/// A `matchConditions` list as (name, expression) pairs.
pub fn conditions(list: &Value) -> Vec<(String, String)> {
    let items = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"));
    items
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["expression"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The three webhooks of promfed's MutatingWebhookConfiguration `fullname`, each with the
/// kind `promfed match-conditions --kind` names it by.
pub fn webhooks<'a>(objects: &'a [Value], fullname: &str) -> Vec<(&'static str, &'a Value)> {
    let config = find(objects, "MutatingWebhookConfiguration", fullname);
    let hooks = config["webhooks"].as_array().expect("webhooks");
    let kind = |name: &str| match name {
        "prometheus-server.promfed.io" => "ConfigMap",
        "prometheusrules.promfed.io" => "PrometheusRule",
        "prometheuses.promfed.io" => "Prometheus",
        other => panic!("unexpected webhook {other}"),
    };
    hooks
        .iter()
        .map(|h| (kind(h["name"].as_str().unwrap()), h))
        .collect()
}

/// Every webhook's `matchConditions` are what `promfed match-conditions` prints for the
/// config the same render wrote into promfed's ConfigMap.
pub fn assert_match_conditions_from_config(objects: &[Value], fullname: &str, case: &str) {
    let config = rendered_config(objects, fullname);
    let hooks = webhooks(objects, fullname);
    assert_eq!(hooks.len(), 3, "{case}: three webhooks");
    for (kind, hook) in hooks {
        assert_eq!(
            conditions(&hook["matchConditions"]),
            promfed_match_conditions(&config, kind),
            "{case}: the {kind} webhook's matchConditions are not what `promfed \
             match-conditions --kind {kind}` prints for the rendered config:\n{config}"
        );
    }
}
