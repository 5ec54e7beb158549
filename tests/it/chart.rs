//! promfed's helm chart, `charts/promfed`, as helm renders it: `helm lint --strict` (helm 3 and
//! 4), and for every values case below `helm template` against each Kubernetes version promfed
//! supports, every object valid by kubernetes-validate (strict), the webhooks' matchConditions
//! exactly what `promfed match-conditions` prints for the config the same render wrote, and
//! what the case is about. Installing it on a real API server: `tests/it/releases.rs`.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::charts::{
    K8S_VERSIONS, assert_match_conditions_from_config, helm_template, pinned, rendered_config,
    webhooks,
};
use crate::support::manifests::{
    assert_valid_for, base64_decode, find, openssl, p, parse_stream, run, run_ok, stderr,
};
use crate::support::{data, describe, require, root};

const NS: &str = "promfed-system";

/// One values case: its name, helm's value arguments, the release name, and its own checks.
struct Case {
    name: &'static str,
    args: Vec<String>,
    release: &'static str,
    check: fn(&[Value], &str),
}

fn fullname(release: &str) -> String {
    if release.contains("promfed") {
        release.to_string()
    } else {
        format!("{release}-promfed")
    }
}

fn set(pairs: &[&str]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|p| ["--set-json".to_string(), p.to_string()])
        .collect()
}

fn cases() -> Vec<Case> {
    let seed = data("example-config.yaml");
    vec![
        Case {
            name: "defaults: the chart makes its CA and serving certificate",
            args: vec![],
            release: "promfed",
            check: |objects, name| {
                let secret = find(objects, "Secret", &format!("{name}-tls"));
                assert_eq!(secret["type"], "kubernetes.io/tls");
                let hooks = webhooks(objects, name);
                for (_, hook) in &hooks {
                    assert_eq!(hook["clientConfig"]["caBundle"], secret["data"]["ca.crt"]);
                    assert_eq!(
                        hook["clientConfig"]["service"],
                        json!({"name": name, "namespace": NS, "path": "/mutate", "port": 443})
                    );
                }
                assert_eq!(hooks[0].1["failurePolicy"], "Fail");
                assert_eq!(hooks[1].1["failurePolicy"], "Ignore");
                assert_eq!(hooks[0].1["timeoutSeconds"], 5);
                assert_eq!(
                    hooks[0].1["namespaceSelector"]["matchExpressions"][0]["values"],
                    json!(["kube-system", NS])
                );
                let pdb = find(objects, "PodDisruptionBudget", name);
                assert_eq!(pdb["spec"]["minAvailable"], 1);
                find(objects, "NetworkPolicy", name);
                let deployment = find(objects, "Deployment", name);
                assert_eq!(deployment["spec"]["replicas"], 2);
                let pod = &deployment["spec"]["template"]["spec"];
                assert_eq!(
                    pod["containers"][0]["image"],
                    "ghcr.io/promfed/promfed:0.1.0"
                );
                assert_eq!(
                    pod["volumes"][1]["secret"]["secretName"],
                    format!("{name}-tls")
                );
                assert!(!objects.iter().any(|o| o["kind"] == "ServiceMonitor"));
                let configmaps = objects.iter().filter(|o| o["kind"] == "ConfigMap").count();
                assert_eq!(configmaps, 1, "only promfed's config, no dashboards");
                check_serving_certificate(secret, name, &[]);
            },
        },
        Case {
            name: "the seed's ytt data values file, as it is",
            args: vec!["-f".into(), p(&seed).into()],
            release: "promfed",
            check: |objects, name| {
                let config = rendered_config(objects, name);
                let written = parse_stream(&config).remove(0);
                let seed =
                    parse_stream(&std::fs::read_to_string(data("example-config.yaml")).unwrap())
                        .remove(0);
                for key in [
                    "localClusterName",
                    "clusterLabelName",
                    "additionalScrapeConfigs",
                ] {
                    assert_eq!(written[key], seed[key], "{key}");
                }
            },
        },
        Case {
            name: "cert-manager: Issuers, Certificates and the cainjector's annotation",
            args: set(&["certManager.enabled=true"]),
            release: "hub",
            check: |objects, name| {
                assert!(!objects.iter().any(|o| o["kind"] == "Secret"));
                let config = find(objects, "MutatingWebhookConfiguration", name);
                assert_eq!(
                    config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                    format!("{NS}/{name}-serving")
                );
                for (_, hook) in webhooks(objects, name) {
                    assert!(hook["clientConfig"].get("caBundle").is_none());
                }
                let serving = find(objects, "Certificate", &format!("{name}-serving"));
                assert_eq!(serving["spec"]["secretName"], format!("{name}-tls"));
                assert_eq!(serving["spec"]["issuerRef"]["name"], format!("{name}-ca"));
                assert!(
                    serving["spec"]["dnsNames"]
                        .as_array()
                        .unwrap()
                        .contains(&json!(format!("{name}.{NS}.svc")))
                );
                let ca = find(objects, "Certificate", &format!("{name}-ca"));
                assert_eq!(ca["spec"]["isCA"], true);
                find(objects, "Issuer", &format!("{name}-ca"));
                find(objects, "Issuer", &format!("{name}-selfsigned"));
            },
        },
        Case {
            name: "an existing Secret, its CA given",
            args: set(&[
                r#"tls.existingSecret="my-tls""#,
                r#"tls.caBundle="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n""#,
            ]),
            release: "promfed",
            check: |objects, name| {
                assert!(!objects.iter().any(|o| o["kind"] == "Secret"));
                let deployment = find(objects, "Deployment", name);
                let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
                assert_eq!(volumes[1]["secret"]["secretName"], "my-tls");
                let bundle = base64::engine::general_purpose::STANDARD
                    .encode("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
                for (_, hook) in webhooks(objects, name) {
                    assert_eq!(hook["clientConfig"]["caBundle"], bundle);
                }
            },
        },
        Case {
            name: "every selector setting, several excluded namespaces",
            args: set(&[
                r#"configmap={"labels":{"app":"prom","tier":"hub"},"names":["prometheus-server","hub-server"],"namespaces":["monitoring"]}"#,
                r#"keys={"prometheus":["prometheus.yml","prometheus.yaml"]}"#,
                r#"prometheusRule={"namespaces":["monitoring","apps"],"labels":{"team":"sre"}}"#,
                r#"prometheus={"excludeNamespaces":["kube-system"],"labels":{"promfed":"yes"}}"#,
                r#"webhook.excludedNamespaces=["kube-system","kube-public"]"#,
            ]),
            release: "promfed",
            check: |objects, name| {
                let hooks = webhooks(objects, name);
                assert_eq!(
                    hooks[0].1["namespaceSelector"]["matchExpressions"][0]["values"],
                    json!(["kube-system", "kube-public", NS])
                );
                let names: Vec<&str> = (hooks[0].1["matchConditions"].as_array().unwrap().iter())
                    .map(|c| c["name"].as_str().unwrap())
                    .collect();
                assert_eq!(
                    names,
                    [
                        "prometheus-config-key",
                        "prometheus-server-labels",
                        "prometheus-server-name",
                        "prometheus-server-namespace",
                        "promfed-rewrite-not-disabled"
                    ]
                );
                let config = parse_stream(&rendered_config(objects, name)).remove(0);
                assert_eq!(
                    config["prometheusRule"]["excludeNamespaces"],
                    json!(["kube-system", "kube-public", NS]),
                    "the webhook's excluded namespaces, as the config did not set them"
                );
                assert_eq!(
                    config["prometheus"]["excludeNamespaces"],
                    json!(["kube-system"])
                );
            },
        },
        Case {
            name: "label sets as a list; an operator kind with no excluded namespaces",
            args: set(&[
                r#"configmap={"labels":[{"app":"prometheus"},{"app.kubernetes.io/part-of":"tkg"}]}"#,
                r#"prometheusRule={"excludeNamespaces":[]}"#,
            ]),
            release: "promfed",
            check: |objects, name| {
                let hooks = webhooks(objects, name);
                assert_eq!(hooks[1].1["matchConditions"].as_array().unwrap().len(), 1);
            },
        },
        Case {
            name: "no label sets at all",
            args: set(&[r#"configmap={"labels":[]}"#]),
            release: "promfed",
            check: |objects, name| {
                let hooks = webhooks(objects, name);
                assert_eq!(hooks[0].1["matchConditions"].as_array().unwrap().len(), 2);
            },
        },
        Case {
            name: "scheduling, resources, disruption budget by maxUnavailable, no NetworkPolicy",
            args: set(&[
                "replicaCount=3",
                r#"nodeSelector={"kubernetes.io/os":"linux"}"#,
                r#"tolerations=[{"key":"dedicated","operator":"Equal","value":"monitoring","effect":"NoSchedule"}]"#,
                r#"affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"tier","operator":"In","values":["infra"]}]}]}}}"#,
                r#"priorityClassName="system-cluster-critical""#,
                r#"resources={"requests":{"cpu":"100m","memory":"96Mi"}}"#,
                "podDisruptionBudget.minAvailable=null",
                "podDisruptionBudget.maxUnavailable=1",
                "networkPolicy.enabled=false",
                r#"image={"repository":"registry.example.com/promfed","tag":"0.1.0-rc1","pullPolicy":"Always"}"#,
            ]),
            release: "promfed",
            check: |objects, name| {
                let deployment = find(objects, "Deployment", name);
                let pod = &deployment["spec"]["template"]["spec"];
                assert_eq!(deployment["spec"]["replicas"], 3);
                assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
                assert_eq!(pod["tolerations"][0]["key"], "dedicated");
                assert!(pod["affinity"].get("podAntiAffinity").is_none());
                assert_eq!(pod["priorityClassName"], "system-cluster-critical");
                let container = &pod["containers"][0];
                assert_eq!(container["image"], "registry.example.com/promfed:0.1.0-rc1");
                assert_eq!(container["imagePullPolicy"], "Always");
                // helm merges maps: the requests are the case's, the limits the chart's.
                assert_eq!(
                    container["resources"],
                    json!({"requests": {"cpu": "100m", "memory": "96Mi"},
                           "limits": {"cpu": "1", "memory": "128Mi"}})
                );
                let pdb = find(objects, "PodDisruptionBudget", name);
                assert_eq!(pdb["spec"]["maxUnavailable"], 1);
                assert!(pdb["spec"].get("minAvailable").is_none());
                assert!(!objects.iter().any(|o| o["kind"] == "NetworkPolicy"));
            },
        },
        Case {
            name: "ServiceMonitor and dashboards for both sidecars",
            args: set(&[
                "serviceMonitor.enabled=true",
                r#"serviceMonitor.labels={"release":"kube-prometheus-stack"}"#,
                "dashboards.enabled=true",
                r#"dashboards.namespace="monitoring""#,
            ]),
            release: "promfed",
            check: |objects, name| {
                let monitor = find(objects, "ServiceMonitor", name);
                assert_eq!(
                    monitor["metadata"]["labels"]["release"],
                    "kube-prometheus-stack"
                );
                assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
                let mut files = dashboard_files();
                files.sort();
                assert!(files.len() >= 4, "{files:?}");
                for file in files {
                    let base = file
                        .trim_end_matches(".json")
                        .to_lowercase()
                        .replace('_', "-");
                    let configmap = find(objects, "ConfigMap", &format!("{name}-dashboard-{base}"));
                    assert_eq!(configmap["metadata"]["namespace"], "monitoring");
                    let labels = &configmap["metadata"]["labels"];
                    assert_eq!(
                        (&labels["grafana-dashboard"], &labels["grafana_dashboard"]),
                        (&json!("1"), &json!("1"))
                    );
                    let text =
                        std::fs::read_to_string(root().join("dashboards").join(&file)).unwrap();
                    assert!(
                        configmap["data"][&file] == text,
                        "{file}: not the dashboard byte for byte"
                    );
                }
            },
        },
        Case {
            name: "a webhook URL (a promfed outside the cluster), its IP in the certificate; policies and timeout",
            args: set(&[
                r#"webhook.url="https://127.0.0.1:8443/mutate""#,
                r#"tls.selfSigned.ipAddresses=["127.0.0.1"]"#,
                r#"webhook.failurePolicy="Ignore""#,
                r#"webhook.operatorFailurePolicy="Fail""#,
                "webhook.timeoutSeconds=10",
            ]),
            release: "promfed",
            check: |objects, name| {
                let hooks = webhooks(objects, name);
                for (_, hook) in &hooks {
                    assert_eq!(hook["clientConfig"]["url"], "https://127.0.0.1:8443/mutate");
                    assert!(hook["clientConfig"].get("service").is_none());
                    assert_eq!(hook["timeoutSeconds"], 10);
                }
                assert_eq!(hooks[0].1["failurePolicy"], "Ignore");
                assert_eq!(hooks[2].1["failurePolicy"], "Fail");
                let secret = find(objects, "Secret", &format!("{name}-tls"));
                check_serving_certificate(secret, name, &["127.0.0.1"]);
            },
        },
    ]
}

/// The dashboards' file names (dashboards/*.json).
fn dashboard_files() -> Vec<String> {
    std::fs::read_dir(root().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect()
}

/// The chart-made certificate: signed by the Secret's CA, for the Service's names (and `ips`).
fn check_serving_certificate(secret: &Value, name: &str, ips: &[&str]) {
    let Some(openssl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    for key in ["tls.crt", "ca.crt", "tls.key"] {
        let pem = base64_decode(secret["data"][key].as_str().unwrap());
        std::fs::write(dir.path().join(key), pem).unwrap();
    }
    let f = |k: &str| dir.path().join(k);
    let verify = run(
        &openssl,
        &["verify", "-CAfile", p(&f("ca.crt")), p(&f("tls.crt"))],
        None,
        &[],
    );
    assert!(
        verify.status.success(),
        "not signed by ca.crt: {}",
        describe(&verify)
    );
    let text = run_ok(
        &openssl,
        &[
            "x509",
            "-in",
            p(&f("tls.crt")),
            "-noout",
            "-ext",
            "subjectAltName",
        ],
        None,
        &[],
    );
    assert!(text.contains(&format!("DNS:{name}.{NS}.svc")), "{text}");
    for ip in ips {
        assert!(text.contains(&format!("IP Address:{ip}")), "{text}");
    }
}

#[test]
fn every_values_case_renders_valid_objects_whose_match_conditions_are_promfeds() {
    let helm = pinned!(helm);
    let _ = require!(kubernetes_validate);
    for case in cases() {
        let name = fullname(case.release);
        for k8s in K8S_VERSIONS {
            let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
            let text = helm_template(&helm, case.release, NS, k8s, &args);
            let objects = parse_stream(&text);
            assert_valid_for(&objects, k8s);
            assert_match_conditions_from_config(&objects, &name, case.name);
            (case.check)(&objects, &name);
        }
    }
}

#[test]
fn helm3_and_helm4_lint_strict() {
    let helm = pinned!(helm);
    let helm4 = pinned!(helm4);
    let chart = root().join("charts/promfed");
    for tool in [&helm, &helm4] {
        let out = run(tool, &["lint", "--strict", p(&chart)], None, &[]);
        assert!(
            out.status.success(),
            "{} lint: {}",
            tool.display(),
            describe(&out)
        );
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            report.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{report}"
        );
    }
}

#[test]
fn helm4_renders_what_helm3_renders() {
    let helm = pinned!(helm);
    let helm4 = pinned!(helm4);
    // The chart-made certificate differs at every render: compare everything else.
    let args = [
        "--set",
        "certManager.enabled=true",
        "--set",
        "dashboards.enabled=true",
    ];
    // helm 4 orders the documents of different kinds differently: compare them by kind and name.
    let sorted = |text: String| {
        let mut objects = parse_stream(&text);
        objects.sort_by_key(|o| (o["kind"].to_string(), o["metadata"]["name"].to_string()));
        objects
    };
    let three = sorted(helm_template(&helm, "promfed", NS, "1.33.0", &args));
    let four = sorted(helm_template(&helm4, "promfed", NS, "1.33.0", &args));
    assert_eq!(three.len(), four.len());
    for (a, b) in three.iter().zip(&four) {
        assert!(
            a == b,
            "{} {}: helm 4 renders it otherwise",
            a["kind"],
            a["metadata"]["name"]
        );
    }
}

#[test]
fn contradictory_or_incomplete_values_are_refused_with_the_reason() {
    let helm = pinned!(helm);
    let chart = root().join("charts/promfed");
    for (values, reason) in [
        (
            vec!["certManager.enabled=true", "tls.existingSecret=mine"],
            "choose one way to get the serving certificate",
        ),
        (
            vec!["tls.existingSecret=mine"],
            "set tls.caBundle to the PEM of the CA that signed its certificate",
        ),
        (
            vec!["podDisruptionBudget.maxUnavailable=1"],
            "set minAvailable or maxUnavailable, not both",
        ),
    ] {
        let mut args = vec!["template", "promfed", p(&chart), "--kube-version", "1.33.0"];
        for v in &values {
            args.extend(["--set", v]);
        }
        let out = run(&helm, &args, None, &[]);
        assert!(!out.status.success(), "{values:?} rendered");
        assert!(
            stderr(&out).contains(reason),
            "{values:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn the_charts_dashboards_are_the_dashboards() {
    let chart = root().join("charts/promfed/dashboards");
    let mut in_chart: Vec<String> = std::fs::read_dir(&chart)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut files = dashboard_files();
    in_chart.sort();
    files.sort();
    assert_eq!(
        in_chart, files,
        "charts/promfed/dashboards holds a copy of dashboards/*.json"
    );
    for file in files {
        let a = std::fs::read(root().join("dashboards").join(&file)).unwrap();
        let b = std::fs::read(chart.join(&file)).unwrap();
        assert!(
            a == b,
            "charts/promfed/dashboards/{file} differs from dashboards/{file}: cp dashboards/*.json charts/promfed/dashboards/"
        );
    }
}
