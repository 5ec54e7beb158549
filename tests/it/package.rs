//! promfed's Carvel package, `packaging/`: the Package that `packaging/build.sh` writes (its
//! valuesSchema is the ytt schema's OpenAPI), the imgpkg bundle with its image lock, the schema
//! mirroring the helm chart's values, and the ytt templates rendering the chart's objects for
//! the same values file, with matchConditions that are `promfed match-conditions`' for the
//! config they wrote. Installing it for real (kapp, the PackageInstall path):
//! `tests/it/releases.rs`.

use serde_json::{Value, json};

use crate::support::charts::{
    K8S_VERSIONS, assert_match_conditions_from_config, build_package, helm_template,
    package_bundle, pinned, ytt_package,
};
use crate::support::manifests::{assert_valid_for, find, p, parse_stream, run, run_ok, stderr};
use crate::support::{data, describe, require, root, temp_files};

/// The Package's document, and the one of `ytt --data-values-schema-inspect -o openapi-v3`.
fn openapi_of_schema(ytt: &std::path::Path) -> Value {
    let schema = root().join("packaging/config/schema.yaml");
    let text = run_ok(
        ytt,
        &[
            "-f",
            p(&schema),
            "--data-values-schema-inspect",
            "-o",
            "openapi-v3",
        ],
        None,
        &[],
    );
    parse_stream(&text).remove(0)["components"]["schemas"]["dataValues"].clone()
}

#[test]
fn package_yaml_is_what_build_sh_writes_and_its_values_schema_is_the_schemas() {
    let ytt = pinned!(ytt);
    let dir = tempfile::tempdir().unwrap();
    let package = dir.path().join("package.yaml");
    build_package(
        &ytt,
        &[
            ("--out", &dir.path().join("bundle")),
            ("--package", &package),
        ],
        &[],
    );
    let committed = std::fs::read_to_string(root().join("packaging/package.yaml")).unwrap();
    assert!(
        std::fs::read_to_string(&package).unwrap() == committed,
        "packaging/package.yaml is not what packaging/build.sh writes: run it"
    );
    let package = parse_stream(&committed).remove(0);
    assert_eq!(package["kind"], "Package");
    assert_eq!(
        package["spec"]["valuesSchema"]["openAPIv3"],
        openapi_of_schema(&ytt),
        "the Package's valuesSchema is not the schema's OpenAPI"
    );
    let chart =
        parse_stream(&std::fs::read_to_string(root().join("charts/promfed/Chart.yaml")).unwrap())
            .remove(0);
    assert_eq!(package["spec"]["version"], chart["appVersion"]);
    assert_eq!(
        package["spec"]["template"]["spec"]["fetch"],
        json!([{"imgpkgBundle": {"image": format!("ghcr.io/promfed/promfed-package:{}", chart["appVersion"].as_str().unwrap())}}])
    );
    let metadata =
        parse_stream(&std::fs::read_to_string(root().join("packaging/metadata.yaml")).unwrap())
            .remove(0);
    assert_eq!(metadata["kind"], "PackageMetadata");
    assert_eq!(metadata["metadata"]["name"], package["spec"]["refName"]);
}

#[test]
fn the_schema_is_the_charts_values_key_for_key() {
    let ytt = pinned!(ytt);
    let schema = root().join("packaging/config/schema.yaml");
    let text = run_ok(
        &ytt,
        &["-f", p(&schema), "--data-values-inspect", "-o", "json"],
        None,
        &[],
    );
    let mut package: Value = serde_json::from_str(&text).unwrap();
    let mut chart =
        parse_stream(&std::fs::read_to_string(root().join("charts/promfed/values.yaml")).unwrap())
            .remove(0);
    // The two differences, by design: a package has no release namespace, and cannot make a
    // certificate itself (ytt has no crypto), so it takes cert-manager's by default.
    assert_eq!(
        package.as_object_mut().unwrap().remove("namespace"),
        Some(json!("promfed-system"))
    );
    assert_eq!(package["certManager"]["enabled"], true);
    assert_eq!(chart["certManager"]["enabled"], false);
    chart["certManager"]["enabled"] = json!(true);
    assert_eq!(package, chart);
}

/// A values file given to helm (`-f`) and to ytt (`--data-values-file`) alike.
struct Values {
    name: &'static str,
    text: &'static str,
}

const VALUES: [Values; 3] = [
    Values {
        name: "cert-manager, the seed's config, ServiceMonitor and dashboards",
        text: r#"
certManager: {enabled: true}
serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack}}
dashboards: {enabled: true}
localClusterName: shared-tools
additionalScrapeConfigs:
- job_name: federation
  static_configs:
  - targets: [prom.other.cluster.local]
    labels: {cluster: other}
"#,
    },
    Values {
        name: "an existing Secret, a webhook URL, every selector",
        text: r#"
certManager: {enabled: false}
tls:
  existingSecret: my-tls
  caBundle: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
webhook:
  url: https://127.0.0.1:8443/mutate
  excludedNamespaces: [kube-system, kube-public]
  failurePolicy: Ignore
  timeoutSeconds: 10
configmap: {labels: [{app: prom}, {tier: hub}], names: [prometheus-server], namespaces: [a, b]}
keys: {prometheus: [prometheus.yml, prometheus.yaml]}
prometheusRule: {namespaces: [monitoring], labels: {team: sre}}
prometheus: {excludeNamespaces: []}
"#,
    },
    Values {
        name: "scheduling, disruption budget by maxUnavailable, no NetworkPolicy",
        text: r#"
certManager: {enabled: true}
replicaCount: 3
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Exists, effect: NoSchedule}]
priorityClassName: system-cluster-critical
podDisruptionBudget: {minAvailable: null, maxUnavailable: 1}
networkPolicy: {enabled: false}
image: {repository: registry.example.com/promfed, tag: 0.1.0-rc1}
"#,
    },
];

/// An object without what only helm writes: its labels (helm.sh/chart, managed-by, version)
/// and the config checksum that rolls the pods on `helm upgrade`.
fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("labels");
    }
    if let Some(annotations) = object["spec"]["template"]["metadata"]["annotations"].as_object_mut()
    {
        annotations.remove("checksum/config");
    }
    if object["kind"] == "ConfigMap"
        && let Some(config) = object["data"]["promfed.yaml"].as_str()
    {
        // The same config, whatever the key order each tool writes.
        object["data"]["promfed.yaml"] = parse_stream(config).remove(0);
    }
    object
}

#[test]
fn the_package_renders_the_charts_objects_for_the_same_values_file() {
    let ytt = pinned!(ytt);
    let helm = pinned!(helm);
    let _ = require!(kubernetes_validate);
    let bundle = package_bundle(&ytt);
    let config = bundle.path().join("config");
    for values in VALUES {
        let file = temp_files(&[("values.yaml", values.text)]);
        let file = file.path().join("values.yaml");
        let package = parse_stream(&run_ok(
            &ytt,
            &["-f", p(&config), "--data-values-file", p(&file)],
            None,
            &[],
        ));
        let chart = parse_stream(&helm_template(
            &helm,
            "promfed",
            "promfed-system",
            "1.33.0",
            &["-f", p(&file)],
        ));
        for object in &chart {
            let (kind, name) = (
                object["kind"].as_str().unwrap(),
                object["metadata"]["name"].as_str().unwrap(),
            );
            let twin = find(&package, kind, name);
            assert_eq!(
                comparable(twin),
                comparable(object),
                "{}: the package's {kind} {name} is not the chart's",
                values.name
            );
        }
        // What the package has besides: its Namespace, and kapp's Config (never applied).
        let mut extra: Vec<String> = (package.iter())
            .filter(|o| {
                !chart.iter().any(|c| {
                    c["kind"] == o["kind"] && c["metadata"]["name"] == o["metadata"]["name"]
                })
            })
            .map(|o| o["kind"].as_str().unwrap().to_string())
            .collect();
        extra.sort();
        assert_eq!(extra, ["Config", "Namespace"], "{}", values.name);
        assert_match_conditions_from_config(&package, "promfed", values.name);
        for k8s in K8S_VERSIONS {
            assert_valid_for(&package, k8s);
        }
    }
}

/// The seed's `values.yaml` as it is (tests/data/example-config.yaml below its header
/// comment, which ytt would refuse: its comments are `#!`).
fn seed_values() -> String {
    let text = std::fs::read_to_string(data("example-config.yaml")).unwrap();
    let start = text
        .find("#@data/values\n")
        .expect("the seed's #@data/values line");
    text[start..].to_string()
}

#[test]
fn the_seed_data_values_are_package_values_as_they_are() {
    let ytt = pinned!(ytt);
    let seed = seed_values();
    let below = seed.split_once("---\n").unwrap().1;
    let files = temp_files(&[("values.yaml", &seed), ("plain.yaml", below)]);
    let (values, plain) = (
        files.path().join("values.yaml"),
        files.path().join("plain.yaml"),
    );
    let want = parse_stream(below).remove(0);
    // As the seed gives it to ytt (a data values file among the templates), and as a
    // PackageInstall's values Secret reaches ytt (a plain data values file).
    for args in [["-f", p(&values)], ["--data-values-file", p(&plain)]] {
        let objects = parse_stream(&ytt_package(&ytt, &args));
        let config = find(&objects, "ConfigMap", "promfed-config");
        let written = parse_stream(config["data"]["promfed.yaml"].as_str().unwrap()).remove(0);
        for key in [
            "localClusterName",
            "clusterLabelName",
            "additionalScrapeConfigs",
        ] {
            assert_eq!(written[key], want[key], "{args:?}: {key}");
        }
    }
}

#[test]
fn the_package_refuses_values_it_cannot_install_with_the_reason() {
    let ytt = pinned!(ytt);
    let bundle = package_bundle(&ytt);
    let config = bundle.path().join("config");
    for (values, reason) in [
        (
            "certManager: {enabled: false}\n",
            "the package cannot make a serving certificate itself",
        ),
        (
            "tls: {existingSecret: mine}\n",
            "choose one way to get the serving certificate",
        ),
        (
            "certManager: {enabled: false}\ntls: {existingSecret: mine}\n",
            "set tls.caBundle",
        ),
        ("webhook: {timeoutSeconds: soon}\n", "expected: integer"),
        ("unknownKey: 1\n", "unknownKey"),
    ] {
        let file = temp_files(&[("values.yaml", values)]);
        let file = file.path().join("values.yaml");
        let out = run(
            &ytt,
            &["-f", p(&config), "--data-values-file", p(&file)],
            None,
            &[],
        );
        assert!(!out.status.success(), "{values:?} rendered");
        assert!(
            stderr(&out).contains(reason),
            "{values:?}: {}",
            describe(&out)
        );
    }
}

#[test]
fn build_sh_writes_the_image_lock_and_an_inline_package() {
    let ytt = pinned!(ytt);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let package = dir.path().join("package.yaml");
    let digest = format!("ghcr.io/promfed/promfed@sha256:{}", "ab".repeat(32));
    build_package(
        &ytt,
        &[
            ("--out", &out),
            ("--package", &package),
            ("--image", std::path::Path::new(&digest)),
        ],
        &["--inline"],
    );
    let lock =
        parse_stream(&std::fs::read_to_string(out.join(".imgpkg/images.yml")).unwrap()).remove(0);
    assert_eq!(lock["kind"], "ImagesLock");
    assert_eq!(lock["images"][0]["image"], digest.as_str());
    assert_eq!(
        lock["images"][0]["annotations"]["kbld.carvel.dev/id"], "ghcr.io/promfed/promfed:0.1.0",
        "the image the templates name, which kbld replaces by the digest"
    );
    let written = parse_stream(&std::fs::read_to_string(&package).unwrap()).remove(0);
    let spec = &written["spec"]["template"]["spec"];
    let paths = &spec["fetch"][0]["inline"]["paths"];
    for file in [
        ".imgpkg/images.yml",
        "config/schema.yaml",
        "config/promfed.yaml",
        "config/promfed.star",
    ] {
        let on_disk = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(
            paths[file] == on_disk.as_str(),
            "{file} inline is not the bundle's"
        );
    }
    assert_eq!(
        spec["template"][1],
        json!({"kbld": {"paths": ["-", ".imgpkg/images.yml"]}})
    );
    // Without --image, an inline Package has no image lock, so no kbld step.
    build_package(
        &ytt,
        &[("--out", &out), ("--package", &package)],
        &["--inline"],
    );
    let written = parse_stream(&std::fs::read_to_string(&package).unwrap()).remove(0);
    let steps = &written["spec"]["template"]["spec"]["template"];
    assert_eq!(steps.as_array().unwrap().len(), 1, "{steps}");
    assert!(!out.join(".imgpkg").exists());
}
