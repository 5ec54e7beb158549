//! Installing promfed: the kustomize overlays under `deploy/` (rendered with `kubectl kustomize`,
//! validated strictly against the Kubernetes 1.33 schemas by kubernetes-validate, and checked
//! for the settings the webhook depends on), `certs/generate.sh` (certificates that `promfed
//! serve` presents to a verifying client, and mTLS federation certificates that a real
//! Prometheus accepts), the helm post-renderer, the KRM function example, the kapp Config, the
//! dashboard ConfigMaps and the image files.
//!
//! Tools: kubectl (its built-in kustomize), openssl, kpt, the venv's Python and
//! kubernetes-validate, Debian's prometheus. kubernetes-validate knows the schemas of 1.25 to
//! 1.37; these tests use 1.33. It has none for CRDs, so cert-manager's Issuer and Certificate
//! are checked field by field here instead.

use std::io::Read as _;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::manifests::{
    assert_valid, base64_decode, copy_dir, deploy_copy, find, generate_ok, item, kustomize,
    kustomize_build, need, p, parse_file, parse_one, parse_stream, run, run_ok, script, stderr,
    stdout, strings, unhashed,
};
use crate::support::serve::Server;
use crate::support::{self, describe, promfed_bin, require, root};

/// The webhook's in-cluster name, as the API server verifies it.
const SERVICE_NAME: &str = "promfed.promfed-system.svc";
/// The image the manifests name (tagged with the crate version).
const IMAGE: &str = "ghcr.io/promfed/promfed";

// ---------------------------------------------------------------------------------------
// The base

#[test]
fn base_renders_and_every_object_is_valid_kubernetes_1_33() {
    let kubectl = need!(kubectl);
    let _ = require!(kubernetes_validate);
    let objects = kustomize_build(&kubectl, &root().join("deploy/base"));
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "MutatingWebhookConfiguration",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in deploy/base: {kinds:?}");
    }
    // promfed calls no API: no RBAC at all.
    assert!(
        !kinds.iter().any(|k| k.contains("Role")),
        "deploy/base has RBAC: {kinds:?}"
    );
    for object in &objects {
        if !matches!(
            object["kind"].as_str().unwrap(),
            "Namespace" | "MutatingWebhookConfiguration"
        ) {
            assert_eq!(
                object["metadata"]["namespace"], "promfed-system",
                "{object}"
            );
        }
    }
    assert_valid(&objects);
}

#[test]
fn webhook_registers_only_prometheus_server_configmaps_and_fails_closed() {
    let kubectl = need!(kubectl);
    let objects = kustomize_build(&kubectl, &root().join("deploy/base"));
    let config = find(&objects, "MutatingWebhookConfiguration", "promfed");
    let hooks = config["webhooks"].as_array().unwrap();
    assert_eq!(
        hooks.len(),
        3,
        "the ConfigMap's, the PrometheusRule's, the Prometheus'"
    );
    let hook = &hooks[0];
    // The API server wants a name of at least three dot-separated parts.
    assert!(
        hook["name"].as_str().unwrap().split('.').count() >= 3,
        "{}",
        hook["name"]
    );
    assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["timeoutSeconds"], 5);
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(
        hook["rules"],
        json!([{
            "operations": ["CREATE", "UPDATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["configmaps"],
            "scope": "Namespaced",
        }])
    );
    assert_eq!(
        hook["namespaceSelector"],
        json!({"matchExpressions": [{
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["kube-system", "promfed-system"],
        }]})
    );
    assert_eq!(
        hook["clientConfig"],
        json!({"service": {
            "name": "promfed", "namespace": "promfed-system", "path": "/mutate", "port": 443,
        }}),
        "no caBundle in the base: an overlay adds it"
    );

    // The webhook selects exactly what the shipped promfed config rewrites: it is never called
    // for a ConfigMap promfed would leave alone, and misses none it would rewrite.
    let text = std::fs::read_to_string(root().join("deploy/base/promfed.yaml")).unwrap();
    let promfed_config = promfed::Config::from_yaml(&text).expect("deploy/base/promfed.yaml");
    // No objectSelector: it cannot say "one label set or the other"; the conditions do.
    assert!(hook.get("objectSelector").is_none(), "{hook}");
    let conditions = |hook: &Value| -> Vec<(String, String)> {
        (hook["matchConditions"].as_array().unwrap().iter())
            .map(|c| {
                let field = |f: &str| c[f].as_str().unwrap().to_string();
                (field("name"), field("expression"))
            })
            .collect()
    };
    let want = |kind: promfed::object::Kind| -> Vec<(String, String)> {
        (promfed_config.match_conditions_for(kind).into_iter())
            .map(|c| (c.name, c.expression))
            .collect()
    };
    assert_eq!(
        conditions(hook),
        want(promfed::object::Kind::ConfigMap),
        "the webhook's matchConditions are not what `promfed match-conditions --config \
         deploy/base/promfed.yaml` prints"
    );

    // prometheus-operator's kinds: one webhook each, failing open (an outage must not block
    // unrelated installs; `promfed check --objects` finds what got through), selected by
    // conditions generated from the same config.
    for (hook, name, resource, kind) in [
        (
            &hooks[1],
            "prometheusrules.promfed.io",
            "prometheusrules",
            promfed::object::Kind::PrometheusRule,
        ),
        (
            &hooks[2],
            "prometheuses.promfed.io",
            "prometheuses",
            promfed::object::Kind::Prometheus,
        ),
    ] {
        assert_eq!(hook["name"], name);
        assert_eq!(hook["admissionReviewVersions"], json!(["v1"]), "{name}");
        assert_eq!(hook["sideEffects"], "None", "{name}");
        assert_eq!(hook["timeoutSeconds"], 5, "{name}");
        assert_eq!(hook["reinvocationPolicy"], "IfNeeded", "{name}");
        assert_eq!(hook["failurePolicy"], "Ignore", "{name}");
        assert_eq!(
            hook["rules"],
            json!([{
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": ["monitoring.coreos.com"],
                "apiVersions": ["v1"],
                "resources": [resource],
                "scope": "Namespaced",
            }]),
            "{name}"
        );
        assert!(hook.get("namespaceSelector").is_none(), "{name}");
        assert!(hook.get("objectSelector").is_none(), "{name}");
        assert_eq!(hook["clientConfig"], hooks[0]["clientConfig"], "{name}");
        assert_eq!(
            conditions(hook),
            want(kind),
            "{name}: the matchConditions are not what `promfed match-conditions --kind {} \
             --config deploy/base/promfed.yaml` prints",
            kind.name()
        );
    }

    // The Service sends 443 to the container port promfed serves /mutate on, 9102 to metrics.
    let service = find(&objects, "Service", "promfed");
    let deployment = find(&objects, "Deployment", "promfed");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let target = |port: u16| {
        let name = &item(&service["spec"]["ports"], "port", port)["targetPort"];
        item(&container["ports"], "name", name.clone())["containerPort"].clone()
    };
    assert_eq!((target(443), target(9102)), (json!(8443), json!(9102)));
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn deployment_is_redundant_hardened_probed_and_scraped() {
    let kubectl = need!(kubectl);
    let objects = kustomize_build(&kubectl, &root().join("deploy/base"));
    let deployment = find(&objects, "Deployment", "promfed");
    let spec = &deployment["spec"];
    let pod = &spec["template"]["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let anti =
        &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(
        anti["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        anti["podAffinityTerm"]["labelSelector"]["matchLabels"],
        *pod_labels
    );

    // Pod and container security.
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    let sa = find(
        &objects,
        "ServiceAccount",
        pod["serviceAccountName"].as_str().unwrap(),
    );
    assert_eq!(sa["automountServiceAccountToken"], false);

    // The image carries the crate's version (overridable with kustomize's `images:`).
    assert_eq!(c["image"], format!("{IMAGE}:{}", env!("CARGO_PKG_VERSION")));

    // Probes on the plain-HTTP metrics port.
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(item(&c["ports"], "name", "metrics")["containerPort"], 9102);

    // Requests and limits; the memory request covers what the process needs (< 64 MiB).
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][resource].is_string(),
                "no {kind}.{resource}"
            );
        }
    }
    assert_eq!(c["resources"]["requests"]["memory"], "64Mi");

    // Scraped by the `kubernetes-pods` job of the TKG package and of the helm chart.
    let annotations = &spec["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9102");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // Every file flag names a file in a read-only directory mount of the right volume: the
    // config key of the generated ConfigMap, the keys of the TLS Secret.
    let args = strings(&c["args"]);
    assert_eq!(args[0], "serve");
    let flag = |name: &str| {
        let prefix = format!("--{name}=");
        let value = args.iter().find_map(|a| a.strip_prefix(&prefix));
        value
            .unwrap_or_else(|| panic!("no {prefix} in {args:?}"))
            .to_string()
    };
    let mounted = |path: &str| {
        let (dir, file) = path.rsplit_once('/').unwrap();
        let mount = item(&c["volumeMounts"], "mountPath", dir);
        assert_eq!(mount["readOnly"], true, "{dir} is mounted writable");
        assert!(
            mount.get("subPath").is_none(),
            "a subPath mount never sees updates"
        );
        let volume = item(&pod["volumes"], "name", mount["name"].clone()).clone();
        (volume, file.to_string())
    };
    let (config_volume, config_key) = mounted(&flag("config"));
    let configmap_name = config_volume["configMap"]["name"].as_str().unwrap();
    let configmap = find(&objects, "ConfigMap", unhashed(configmap_name));
    assert_eq!(configmap["metadata"]["name"], configmap_name);
    assert_eq!(
        configmap["data"][&config_key].as_str().unwrap(),
        std::fs::read_to_string(root().join("deploy/base/promfed.yaml")).unwrap(),
        "the ConfigMap carries deploy/base/promfed.yaml unchanged"
    );
    let (cert_volume, cert_key) = mounted(&flag("tls-cert-file"));
    let (key_volume, key_key) = mounted(&flag("tls-key-file"));
    assert_eq!(cert_volume, key_volume);
    assert_eq!(
        (cert_key.as_str(), key_key.as_str()),
        ("tls.crt", "tls.key")
    );
    assert_eq!(cert_volume["secret"]["secretName"], "promfed-tls");

    // The PodDisruptionBudget and the NetworkPolicy select these pods.
    let pdb = find(&objects, "PodDisruptionBudget", "promfed");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], *pod_labels);
    let policy = find(&objects, "NetworkPolicy", "promfed");
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"], *pod_labels);
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    // The webhook port from anywhere; the metrics port from the scraping namespaces only.
    assert_eq!(
        ingress[0],
        json!({"ports": [{"port": 8443, "protocol": "TCP"}]})
    );
    assert_eq!(
        ingress[1]["ports"],
        json!([{"port": 9102, "protocol": "TCP"}])
    );
    let scrapers = &ingress[1]["from"][0]["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(scrapers["key"], "kubernetes.io/metadata.name");
    assert_eq!(scrapers["operator"], "In");
    assert!(
        strings(&scrapers["values"]).contains(&"tanzu-system-monitoring"),
        "{scrapers}"
    );
    assert_eq!(ingress.len(), 2);
    assert_eq!(
        policy["spec"]["egress"],
        json!([]),
        "promfed opens no connection"
    );
}

// ---------------------------------------------------------------------------------------
// The overlays

#[test]
fn cert_manager_overlay_issues_the_serving_certificate_and_injects_its_ca() {
    let kubectl = need!(kubectl);
    let _ = require!(kubernetes_validate);
    let objects = kustomize_build(&kubectl, &root().join("deploy/cert-manager"));
    assert_valid(&objects);

    // self-signed Issuer -> CA Certificate -> CA Issuer -> serving Certificate -> promfed-tls
    let of_kind =
        |kind: &str| -> Vec<&Value> { objects.iter().filter(|o| o["kind"] == kind).collect() };
    let (issuers, certificates) = (of_kind("Issuer"), of_kind("Certificate"));
    assert_eq!((issuers.len(), certificates.len()), (2, 2));
    let ca = certificates
        .iter()
        .find(|c| c["spec"]["isCA"] == true)
        .expect("a CA Certificate");
    let ca_signer = find(
        &objects,
        "Issuer",
        ca["spec"]["issuerRef"]["name"].as_str().unwrap(),
    );
    assert!(ca_signer["spec"].get("selfSigned").is_some());
    let ca_issuer = (issuers.iter())
        .find(|i| i["spec"]["ca"]["secretName"] == ca["spec"]["secretName"])
        .expect("an Issuer signing with the CA's Secret");
    let serving = certificates
        .iter()
        .find(|c| c["spec"]["isCA"] != true)
        .unwrap();
    assert_eq!(
        serving["spec"]["issuerRef"]["name"],
        ca_issuer["metadata"]["name"]
    );
    assert_eq!(serving["spec"]["secretName"], "promfed-tls");
    let dns = strings(&serving["spec"]["dnsNames"]);
    for name in [SERVICE_NAME, "promfed.promfed-system.svc.cluster.local"] {
        assert!(dns.contains(&name), "{name} not in {dns:?}");
    }
    assert!(strings(&serving["spec"]["usages"]).contains(&"server auth"));
    for object in issuers.iter().chain(&certificates) {
        assert_eq!(object["metadata"]["namespace"], "promfed-system");
    }

    let webhook = find(&objects, "MutatingWebhookConfiguration", "promfed");
    let inject = &webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"];
    assert_eq!(
        *inject,
        format!(
            "promfed-system/{}",
            serving["metadata"]["name"].as_str().unwrap()
        )
    );
    // The Deployment mounts the Secret cert-manager writes.
    let deployment = find(&objects, "Deployment", "promfed");
    let volume = item(
        &deployment["spec"]["template"]["spec"]["volumes"],
        "name",
        "tls",
    );
    assert_eq!(volume["secret"]["secretName"], "promfed-tls");
}

#[test]
fn self_signed_overlay_puts_generated_certificates_into_the_secret_and_the_ca_bundle() {
    let kubectl = need!(kubectl);
    let _ = need!(openssl);
    let _ = require!(kubernetes_validate);
    let tmp = deploy_copy();
    let certs = tmp.path().join("deploy/self-signed/certs");
    generate_ok(&[p(&certs)]);
    let objects = kustomize_build(&kubectl, &tmp.path().join("deploy/self-signed"));
    assert_valid(&objects);

    let read = |name: &str| std::fs::read(certs.join(name)).unwrap();
    let secret = find(&objects, "Secret", "promfed-tls");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert_eq!(
            base64_decode(secret["data"][key].as_str().unwrap()),
            read(key),
            "{key}"
        );
    }
    let webhook = find(&objects, "MutatingWebhookConfiguration", "promfed");
    // Every webhook: the ConfigMap's and prometheus-operator's kinds'.
    for hook in webhook["webhooks"].as_array().unwrap() {
        let bundle = hook["clientConfig"]["caBundle"]
            .as_str()
            .unwrap_or_else(|| panic!("caBundle of {}", hook["name"]));
        assert_eq!(
            base64_decode(bundle),
            read("ca.crt"),
            "caBundle is the CA's PEM"
        );
    }

    // The Secret's name carries a hash of its content and the Deployment follows it: a new
    // certificate rolls the pods.
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    assert_ne!(secret_name, "promfed-tls");
    let deployment = find(&objects, "Deployment", "promfed");
    let volume = item(
        &deployment["spec"]["template"]["spec"]["volumes"],
        "name",
        "tls",
    );
    assert_eq!(volume["secret"]["secretName"], secret_name);
}

#[test]
fn self_signed_overlay_without_certificates_fails_naming_the_missing_file() {
    let kubectl = need!(kubectl);
    let tmp = deploy_copy();
    let _ = std::fs::remove_dir_all(tmp.path().join("deploy/self-signed/certs"));
    let overlay = tmp.path().join("deploy/self-signed");
    let out = run(&kubectl, &["kustomize", p(&overlay)], None, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("certs/tls.crt"), "{}", describe(&out));
}

// ---------------------------------------------------------------------------------------
// certs/generate.sh

/// Permission bits of a file.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The DNS SANs of a certificate, sorted.
fn sans(openssl: &Path, cert: &Path) -> Vec<String> {
    let text = run_ok(
        openssl,
        &["x509", "-in", p(cert), "-noout", "-ext", "subjectAltName"],
        None,
        &[],
    );
    let mut names: Vec<String> = (text.split([',', '\n']))
        .filter_map(|s| s.trim().strip_prefix("DNS:"))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn extensions(openssl: &Path, cert: &Path) -> String {
    let ext = "extendedKeyUsage,basicConstraints";
    run_ok(
        openssl,
        &["x509", "-in", p(cert), "-noout", "-ext", ext],
        None,
        &[],
    )
}

/// `openssl verify` of `cert` against `ca` for `purpose` (sslserver, sslclient), and that it
/// is valid for at least another `days` days.
fn verify(openssl: &Path, ca: &Path, purpose: &str, cert: &Path) {
    run_ok(
        openssl,
        &["verify", "-CAfile", p(ca), "-purpose", purpose, p(cert)],
        None,
        &[],
    );
}

fn valid_for_days(openssl: &Path, cert: &Path, days: u64) -> bool {
    let seconds = (days * 86400).to_string();
    let args = ["x509", "-in", p(cert), "-noout", "-checkend", &seconds];
    run(openssl, &args, None, &[]).status.success()
}

#[test]
fn generate_sh_serving_certificate_names_the_service_and_keeps_keys_private() {
    let openssl = need!(openssl);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    generate_ok(&[
        p(&dir),
        "--namespace",
        "monitoring",
        "--service",
        "fed",
        "--days",
        "30",
    ]);
    for key in ["ca.key", "tls.key"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    let cert = dir.join("tls.crt");
    assert_eq!(
        sans(&openssl, &cert),
        [
            "fed",
            "fed.monitoring",
            "fed.monitoring.svc",
            "fed.monitoring.svc.cluster.local"
        ]
    );
    let ext = extensions(&openssl, &cert);
    assert!(
        ext.contains("TLS Web Server Authentication") && ext.contains("CA:FALSE"),
        "{ext}"
    );
    verify(&openssl, &dir.join("ca.crt"), "sslserver", &cert);
    assert!(valid_for_days(&openssl, &cert, 29) && !valid_for_days(&openssl, &cert, 31));
}

#[test]
fn generate_sh_keeps_what_is_still_good_and_renews_with_force() {
    let openssl = need!(openssl);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let files =
        || ["ca.crt", "ca.key", "tls.crt", "tls.key"].map(|f| std::fs::read(dir.join(f)).unwrap());
    generate_ok(&[p(&dir)]);
    let first = files();
    generate_ok(&[p(&dir)]);
    assert_eq!(files(), first, "a second run changes nothing");
    generate_ok(&[p(&dir), "--force"]);
    let forced = files();
    assert_eq!(
        forced[..2],
        first[..2],
        "--force keeps the CA, so the caBundle stays valid"
    );
    assert_ne!(forced[2], first[2], "--force issues a new certificate");
    // Other names: the certificate no longer fits and is reissued by the same CA.
    generate_ok(&[p(&dir), "--service", "other"]);
    assert_eq!(files()[0], first[0]);
    assert!(sans(&openssl, &dir.join("tls.crt")).contains(&"other.promfed-system.svc".into()));
}

#[test]
fn generate_sh_usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let out = p(&out_dir);
    let rows: &[(&str, &[&str])] = &[
        ("no arguments", &[]),
        ("an option before OUTDIR", &["--days", "3"]),
        ("unknown option", &[out, "--bogus"]),
        ("missing value", &[out, "--days"]),
        ("days not a number", &[out, "--days", "ten"]),
        ("days zero", &[out, "--days", "0"]),
        ("bad service name", &[out, "--service", "Promfed_1"]),
        (
            "a federation option in serving mode",
            &[out, "--cluster", "a"],
        ),
        ("federation without --cluster", &["federation", out]),
        (
            "federation with a bad cluster name",
            &["federation", out, "--cluster", "a b"],
        ),
        (
            "a serving option in federation mode",
            &["federation", out, "--cluster", "a", "--service", "x"],
        ),
    ];
    for (name, args) in rows {
        let result = script("certs/generate.sh", args);
        assert_eq!(
            result.status.code(),
            Some(2),
            "{name}: {}",
            describe(&result)
        );
        assert!(
            stderr(&result).contains("usage:"),
            "{name}: {}",
            describe(&result)
        );
    }
    assert!(!out_dir.exists(), "a usage error writes nothing");
}

/// An HTTPS client in Python's `ssl` (OpenSSL's verifier, not promfed's rustls): connects to
/// 127.0.0.1:PORT, verifies the server as NAME against CA, presents CERT/KEY if given, sends
/// one request and prints `{"status", "tls", "body"}` or `{"error"}` as JSON.
const PY_HTTPS: &str = r#"
import http.client, json, socket, ssl, sys
port, name, ca, method, path, body, cert, key = sys.argv[1:9]
ctx = ssl.create_default_context(cafile=ca)
if cert:
    ctx.load_cert_chain(cert, key)
class Conn(http.client.HTTPSConnection):
    def connect(self):
        raw = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=name)
        self.tls_version = self.sock.version()
conn = Conn("127.0.0.1", int(port), context=ctx, timeout=20)
try:
    data = open(body, "rb").read() if body else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = {"status": resp.status, "tls": conn.tls_version, "body": resp.read().decode()}
except OSError as e:  # ssl.SSLError, certificate errors, resets
    out = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(out))
"#;

/// One HTTPS request with [`PY_HTTPS`].
struct Https<'a> {
    python: &'a Path,
    ca: &'a Path,
    client: Option<(&'a Path, &'a Path)>,
}

impl Https<'_> {
    fn send(
        &self,
        addr: SocketAddr,
        name: &str,
        method: &str,
        path: &str,
        body: Option<&Path>,
    ) -> Value {
        let port = addr.port().to_string();
        let (cert, key) = self.client.map_or(("", ""), |(c, k)| (p(c), p(k)));
        let args = [
            "-c",
            PY_HTTPS,
            &port,
            name,
            p(self.ca),
            method,
            path,
            body.map_or("", p),
            cert,
            key,
        ];
        let out = run_ok(self.python, &args, None, &[]);
        serde_json::from_str(out.trim()).unwrap()
    }
}

#[test]
fn promfed_serve_presents_the_generated_certificate_for_the_service_name() {
    let _ = need!(openssl);
    let python = require!(python);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    generate_ok(&[p(&dir)]);
    let config = root().join("deploy/base/promfed.yaml");
    let serve = Server::start(
        &[
            "--config",
            p(&config),
            "--tls-cert-file",
            p(&dir.join("tls.crt")),
            "--tls-key-file",
            p(&dir.join("tls.key")),
        ],
        &[],
    );
    serve.wait_ready();
    let client = Https {
        python: &python,
        ca: &dir.join("ca.crt"),
        client: None,
    };
    let review_file = support::data("review-tkg.json");
    let post = |name: &str| client.send(serve.https, name, "POST", "/mutate", Some(&review_file));

    let answer = post(SERVICE_NAME);
    assert_eq!(answer["status"], 200, "{answer}");
    let review: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    let request: Value = serde_json::from_str(&support::read_data("review-tkg.json")).unwrap();
    let response = &review["response"];
    assert_eq!(response["uid"], request["request"]["uid"]);
    assert_eq!(response["allowed"], true, "{review}");
    assert_eq!(
        response["patchType"], "JSONPatch",
        "the TKG ConfigMap is rewritten: {review}"
    );
    let patch: Value =
        serde_json::from_slice(&base64_decode(response["patch"].as_str().unwrap())).unwrap();
    assert!(!patch.as_array().unwrap().is_empty());

    // The certificate's other names verify too; a name it does not carry does not.
    for name in [
        "promfed.promfed-system.svc.cluster.local",
        "promfed.promfed-system",
    ] {
        assert_eq!(post(name)["status"], 200, "{name}");
    }
    let wrong = post("promfed.other.svc");
    assert!(
        wrong["error"]
            .as_str()
            .is_some_and(|e| e.contains("CERTIFICATE_VERIFY_FAILED")),
        "{wrong}"
    );
}

#[test]
fn federation_certificates_verify_and_the_promfed_entry_is_a_valid_config() {
    let openssl = need!(openssl);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("federation");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    generate_ok(&["federation", p(&dir), "--cluster", "other"]);
    let (ca_before, client_before) = (read("ca.crt"), read("tools/tls.crt"));
    generate_ok(&[
        "federation",
        p(&dir),
        "--cluster",
        "random",
        "--server-name",
        "prom-random.example.com",
        "--address",
        "prom.random.example.com:8443",
    ]);
    // One CA and one client certificate (the tools Prometheus's) for every cluster.
    assert_eq!(
        (read("ca.crt"), read("tools/tls.crt")),
        (ca_before.clone(), client_before)
    );
    let ca = dir.join("ca.crt");
    let client = dir.join("tools/tls.crt");
    verify(&openssl, &ca, "sslclient", &client);
    assert!(valid_for_days(&openssl, &client, 1));
    assert!(extensions(&openssl, &client).contains("TLS Web Client Authentication"));
    for (cluster, server_name) in [
        ("other", "prom-federation"),
        ("random", "prom-random.example.com"),
    ] {
        let workload = dir.join("workload").join(cluster);
        let cert = workload.join("tls.crt");
        verify(&openssl, &ca, "sslserver", &cert);
        assert!(valid_for_days(&openssl, &cert, 1));
        assert_eq!(sans(&openssl, &cert), [server_name]);
        assert_eq!(
            std::fs::read(workload.join("ca.crt")).unwrap(),
            ca_before,
            "client CA"
        );
        assert_eq!(mode(&workload.join("tls.key")), 0o600);
        assert_eq!(
            parse_one(&workload.join("web.config.yml"))["tls_server_config"],
            json!({
                "cert_file": "/etc/prometheus/federation/tls.crt",
                "key_file": "/etc/prometheus/federation/tls.key",
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": "/etc/prometheus/federation/ca.crt",
            })
        );
        // The tools side's entry is a promfed config by itself, with the seed's tls_config.
        let entry = dir.join("promfed").join(format!("{cluster}.yaml"));
        run_ok(&promfed_bin(), &["check", "--config", p(&entry)], None, &[]);
        let tls = &parse_one(&entry)["clusters"][0]["tls_config"];
        assert_eq!(tls["server_name"], server_name);
        assert_eq!(
            tls["cert_file"],
            "/etc/prometheus/addCerts/federation/tls.crt"
        );
    }
    assert_eq!(mode(&dir.join("tools/tls.key")), 0o600);
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
}

/// The generated web config on a real Prometheus: the tools side's client certificate gets
/// `/federate`, a client without one is refused.
#[test]
fn federation_mtls_works_against_a_real_prometheus() {
    let _ = need!(openssl);
    let prometheus = require!(prometheus);
    let python = require!(python);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("federation");
    generate_ok(&["federation", p(&dir), "--cluster", "other"]);
    let workload = dir.join("workload/other");
    // The web config names the in-cluster mount; point it at the files here.
    let web = std::fs::read_to_string(workload.join("web.config.yml"))
        .unwrap()
        .replace("/etc/prometheus/federation", p(&workload));
    let web_file = tmp.path().join("web.yml");
    std::fs::write(&web_file, web).unwrap();
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let port = support::free_port();
    let mut prom = support::KillOnDrop(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.config.file={}", web_file.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting prometheus"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (cert, key) = (dir.join("tools/tls.crt"), dir.join("tools/tls.key"));
    let ca = dir.join("ca.crt");
    let with_cert = Https {
        python: &python,
        ca: &ca,
        client: Some((&cert, &key)),
    };
    let without = Https {
        python: &python,
        ca: &ca,
        client: None,
    };
    let federate = "/federate?match%5B%5D=%7B__name__%21%3D%22%22%7D";
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let answer = with_cert.send(addr, "prom-federation", "GET", federate, None);
        if answer["status"] == 200 {
            break answer;
        }
        if let Ok(Some(status)) = prom.0.try_wait() {
            let mut log = String::new();
            let _ = prom.0.stderr.take().unwrap().read_to_string(&mut log);
            panic!("prometheus exited with {status}:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not answer /federate: {answer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        answer["tls"].as_str().unwrap().starts_with("TLSv1."),
        "{answer}"
    );
    let refused = without.send(addr, "prom-federation", "GET", federate, None);
    assert!(
        refused.get("error").is_some(),
        "no client certificate, yet: {refused}"
    );
}

// ---------------------------------------------------------------------------------------
// helm, KRM functions (kustomize, kpt), kapp

/// The corpus ConfigMaps, each with a config that matches it.
const CORPUS: &[(&str, &str)] = &[
    (
        "tkg/prometheus-server-configmap.yaml",
        "deploy/base/promfed.yaml",
    ),
    (
        "helm/prometheus-server-configmap-chart-14.12.0.yaml",
        "deploy/base/promfed.yaml",
    ),
    (
        "helm/prometheus-server-configmap-chart-29.27.0.yaml",
        "tests/data/config-helm-29.yaml",
    ),
];

#[test]
fn helm_post_renderer_writes_what_promfed_render_writes() {
    let renderer = root().join("scripts/helm-post-renderer.sh");
    let promfed = promfed_bin();
    for (input, config) in CORPUS {
        let manifest = support::read_data(input);
        let config = root().join(config);
        let expected = run_ok(
            &promfed,
            &["render", "--config", p(&config), "-"],
            Some(&manifest),
            &[],
        );
        assert_ne!(expected, manifest, "{input}: the config matches it");
        // The config as helm's --post-renderer-args passes it, and from PROMFED_CONFIG.
        let by_arg = run_ok(
            &renderer,
            &[p(&config)],
            Some(&manifest),
            &[("PROMFED", p(&promfed))],
        );
        let envs = [("PROMFED", p(&promfed)), ("PROMFED_CONFIG", p(&config))];
        let by_env = run_ok(&renderer, &[], Some(&manifest), &envs);
        assert_eq!(
            (by_arg == expected, by_env == expected),
            (true, true),
            "{input}"
        );
    }
}

#[test]
fn helm_post_renderer_fails_loudly() {
    let renderer = root().join("scripts/helm-post-renderer.sh");
    let promfed = promfed_bin();
    let manifest = support::read_data("tkg/prometheus-server-configmap.yaml");
    let tmp = support::temp_files(&[("bad.yaml", "localClusterName: x\nbogus: true\n")]);
    let bad = tmp.path().join("bad.yaml");
    let missing = tmp.path().join("missing.yaml");
    let rows = [
        ("invalid config", p(&bad), p(&promfed), "bogus"),
        ("missing config", p(&missing), p(&promfed), "missing.yaml"),
        ("no binary", p(&bad), "/nonexistent/promfed", "not found"),
    ];
    for (name, config, binary, says) in rows {
        let out = run(
            &renderer,
            &[config],
            Some(&manifest),
            &[("PROMFED", binary)],
        );
        assert!(!out.status.success(), "{name}: {}", describe(&out));
        assert!(out.stdout.is_empty(), "{name}: wrote a partial stream");
        assert!(stderr(&out).contains(says), "{name}: {}", describe(&out));
    }
}

/// The data `promfed render --config deploy/base/promfed.yaml` makes of the example ConfigMap.
fn krm_expected_data() -> Value {
    let input = root().join("deploy/examples/krm/prometheus-server-configmap.yaml");
    let config = root().join("deploy/base/promfed.yaml");
    let out = run_ok(
        &promfed_bin(),
        &["render", "--config", p(&config), p(&input)],
        None,
        &[],
    );
    find(&parse_stream(&out), "ConfigMap", "prometheus-server")["data"].clone()
}

#[test]
fn krm_example_is_the_tkg_configmap_and_the_seed_config() {
    let example = std::fs::read_to_string(
        root().join("deploy/examples/krm/prometheus-server-configmap.yaml"),
    );
    assert_eq!(
        example.unwrap(),
        support::read_data("tkg/prometheus-server-configmap.yaml")
    );
    // The function config carries deploy/base/promfed.yaml, less its leading comment.
    let function = &parse_file("deploy/examples/krm/promfed-fn.yaml")[0];
    let base = std::fs::read_to_string(root().join("deploy/base/promfed.yaml")).unwrap();
    let base: String = base
        .split_inclusive('\n')
        .skip_while(|l| l.starts_with('#'))
        .collect();
    assert_eq!(function["data"]["promfed.yaml"].as_str().unwrap(), base);
    let spec = &function["metadata"]["annotations"]["config.kubernetes.io/function"];
    assert!(
        spec.as_str().unwrap().contains("path: ./promfed-fn.sh"),
        "{spec}"
    );
}

/// The example's function under kpt, which runs exec KRM functions (`kpt fn eval --exec`): the
/// wrapper gets a ResourceList on stdin, and promfed its config from the functionConfig.
#[test]
fn krm_example_function_runs_under_kpt() {
    let kpt = need!(kpt);
    let example = root().join("deploy/examples/krm");
    let input = std::fs::read_to_string(example.join("prometheus-server-configmap.yaml")).unwrap();
    let exec = format!("sh {}", p(&example.join("promfed-fn.sh")));
    let fn_config = example.join("promfed-fn.yaml");
    let args = [
        "fn",
        "eval",
        "-",
        "--output",
        "unwrap",
        "--exec",
        &exec,
        "--fn-config",
        p(&fn_config),
    ];
    let out = run_ok(&kpt, &args, Some(&input), &[("PROMFED", p(&promfed_bin()))]);
    let objects = parse_stream(&out);
    assert_eq!(
        find(&objects, "ConfigMap", "prometheus-server")["data"],
        krm_expected_data()
    );
}

/// The example as kustomize runs it. `kubectl kustomize` cannot (no --enable-exec), so this
/// needs the standalone kustomize: `PROMFED_KUSTOMIZE=/path/to/kustomize cargo test --test
/// tests -- --ignored krm_example_builds`.
#[test]
#[ignore = "needs the standalone kustomize (kubectl kustomize skips exec functions); set PROMFED_KUSTOMIZE"]
fn krm_example_builds_with_standalone_kustomize() {
    let kustomize = kustomize().expect("no kustomize: set PROMFED_KUSTOMIZE or put it on PATH");
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("krm");
    copy_dir(&root().join("deploy/examples/krm"), &copy);
    let args = ["build", "--enable-alpha-plugins", "--enable-exec", p(&copy)];
    let out = run_ok(&kustomize, &args, None, &[("PROMFED", p(&promfed_bin()))]);
    let objects = parse_stream(&out);
    assert_eq!(
        objects.len(),
        1,
        "the function config is local-config, not output"
    );
    assert_eq!(
        find(&objects, "ConfigMap", "prometheus-server")["data"],
        krm_expected_data()
    );
}

#[test]
fn kapp_config_only_excludes_data_of_prometheus_config_maps_from_the_last_applied_check() {
    let config = &parse_file("deploy/kapp/kapp-config.yaml")[0];
    assert_eq!(config["apiVersion"], "kapp.k14s.io/v1alpha1");
    assert_eq!(config["kind"], "Config");
    // A rebase rule on data would hide template changes behind the live object.
    assert!(config.get("rebaseRules").is_none());
    // Not tied to a namespace or a name: any ConfigMap with a Prometheus config.
    let matcher = json!([{"andMatcher": {"matchers": [
        {"apiGroupKindMatcher": {"apiGroup": "", "kind": "ConfigMap"}},
        {"notMatcher": {"matcher": {"emptyFieldMatcher": {"path": ["data", "prometheus.yml"]}}}},
    ]}}]);
    let rules = config["diffAgainstLastAppliedFieldExclusionRules"]
        .as_array()
        .unwrap();
    let mut paths = Vec::new();
    for rule in rules {
        let keys: Vec<&String> = rule.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["path", "resourceMatchers"],
            "kapp takes one `path` per rule: {rule}"
        );
        assert_eq!(rule["resourceMatchers"], matcher);
        paths.push(rule["path"].clone());
    }
    assert!(paths.contains(&json!(["data"])), "{paths:?}");
}

// ---------------------------------------------------------------------------------------
// Dashboards

/// A Grafana dashboard sidecar as its users run it: the label it watches and the value it wants
/// (`None`: any value).
struct Sidecar {
    grafana: &'static str,
    source: &'static str,
    label: &'static str,
    value: Option<&'static str>,
}

/// The sidecars of the Grafanas promfed's users run, as their manifests configure them.
const SIDECARS: &[Sidecar] = &[
    Sidecar {
        grafana: "TKG/TCE grafana package 7.5.16",
        // kiwigrid/k8s-sidecar 1.15.6 with LABEL=grafana-dashboard and no LABEL_VALUE (so any
        // value), NAMESPACE unset (Grafana's own).
        source: "vmware-tanzu/community-edition \
                 addons/packages/grafana/7.5.16/bundle/config/upstream/grafana/deployment.yaml",
        label: "grafana-dashboard",
        value: None,
    },
    Sidecar {
        grafana: "grafana helm chart, as kube-prometheus-stack installs it",
        // sidecar.dashboards.label / labelValue in the charts' values.yaml; searchNamespace
        // unset (Grafana's own namespace).
        source: "grafana/helm-charts charts/grafana/values.yaml; prometheus-community/helm-charts \
                 charts/kube-prometheus-stack/values.yaml",
        label: "grafana_dashboard",
        value: Some("1"),
    },
];

/// Every ConfigMap holds one JSON file of `dir`, byte for byte, labelled for every sidecar.
fn assert_configmaps_hold(objects: &[Value], dir: &Path) {
    let mut files: Vec<PathBuf> = (std::fs::read_dir(dir).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(objects.len(), files.len());
    for file in files {
        let key = file.file_name().unwrap().to_str().unwrap();
        let configmap = (objects.iter())
            .find(|o| o["data"].get(key).is_some())
            .unwrap_or_else(|| panic!("no ConfigMap holds {key}"));
        let labels = &configmap["metadata"]["labels"];
        for sidecar in SIDECARS {
            let found = labels[sidecar.label].as_str();
            assert!(
                found.is_some() && sidecar.value.is_none_or(|v| found == Some(v)),
                "{key}: the {} sidecar ({}) wants label {}={} and finds {labels}",
                sidecar.grafana,
                sidecar.source,
                sidecar.label,
                sidecar.value.unwrap_or("<any>")
            );
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(configmap["data"][key].as_str().unwrap(), text, "{key}");
    }
}

#[test]
fn dashboard_configmaps_are_up_to_date_and_hold_the_dashboards() {
    let kubectl = need!(kubectl);
    let _ = require!(kubernetes_validate);
    let dir = root().join("dashboards");
    assert!(dir.is_dir(), "dashboards/ is missing");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    let out = script("scripts/dashboards-configmaps.sh", &["--out", "-"]);
    assert!(out.status.success(), "{}", describe(&out));
    let committed = std::fs::read_to_string(root().join("deploy/dashboards/configmaps.yaml"));
    assert!(
        committed.is_ok_and(|c| c == stdout(&out)),
        "deploy/dashboards/configmaps.yaml is out of date: run scripts/dashboards-configmaps.sh"
    );
    let objects = kustomize_build(&kubectl, &root().join("deploy/dashboards"));
    assert_configmaps_hold(&objects, &dir);
    assert_valid(&objects);
    // Each in the namespace of the Grafana whose sidecar looks for it.
    for (overlay, namespace) in [
        ("deploy/dashboards", "tanzu-system-dashboards"),
        ("deploy/dashboards-kube-prometheus-stack", "monitoring"),
    ] {
        let objects = kustomize_build(&kubectl, &root().join(overlay));
        assert_configmaps_hold(&objects, &dir);
        for object in &objects {
            assert_eq!(object["metadata"]["namespace"], namespace, "{overlay}");
        }
    }
}

#[test]
fn dashboard_configmaps_keep_tricky_files_byte_for_byte() {
    let kubectl = need!(kubectl);
    let tmp = support::temp_files(&[
        (
            "no-newline.json",
            "{\n\t\"tab\": \"é ✓\",\n  \"x\": [1,\n\n 2]   \n}",
        ),
        ("Leading_Space.json", "  {\"first line\": \"indented\"}\n"),
        ("trailing-lines.json", "{\"a\": \"---\"}\n\n\n"),
        (
            "comment-like.json",
            "{\"expr\": \"# not a comment: ---\"}\n",
        ),
    ]);
    let dir = p(tmp.path());
    let out_dir = tmp.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out_file = out_dir.join("configmaps.yaml");
    let write = script(
        "scripts/dashboards-configmaps.sh",
        &["--dir", dir, "--out", p(&out_file)],
    );
    assert!(write.status.success(), "{}", describe(&write));
    let check = || {
        script(
            "scripts/dashboards-configmaps.sh",
            &["--check", "--dir", dir, "--out", p(&out_file)],
        )
    };
    let fresh = check();
    assert!(
        fresh.status.success(),
        "--check right after writing: {}",
        describe(&fresh)
    );
    // promfed's YAML reader, and kubectl's (Go yaml, through kustomize)
    let objects = parse_stream(&std::fs::read_to_string(&out_file).unwrap());
    assert_configmaps_hold(&objects, tmp.path());
    std::fs::write(
        out_dir.join("kustomization.yaml"),
        "resources: [configmaps.yaml]\n",
    )
    .unwrap();
    assert_configmaps_hold(&kustomize_build(&kubectl, &out_dir), tmp.path());
    // --check notices a changed dashboard.
    std::fs::write(tmp.path().join("comment-like.json"), "{}\n").unwrap();
    let stale = check();
    assert_eq!(stale.status.code(), Some(1), "{}", describe(&stale));
}

// ---------------------------------------------------------------------------------------
// The image

/// The webhook port is set in one place (deploy/base/webhook-port.yaml) and reaches the flag
/// promfed listens on, the containerPort the Service's targetPort names and the NetworkPolicy;
/// the GKE private-cluster overlay moves all of them to 10250 with one patch.
#[test]
fn the_webhook_port_is_set_in_one_place() {
    let kubectl = need!(kubectl);
    for (overlay, port) in [("deploy/base", 8443), ("deploy/gke-private", 10250)] {
        let objects = kustomize_build(&kubectl, &root().join(overlay));
        assert!(
            objects.iter().all(|o| o["kind"] != "Settings"),
            "{overlay}: the local-config Settings object reached the output"
        );
        let deployment = find(&objects, "Deployment", "promfed");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args = strings(&container["args"]);
        assert!(
            args.contains(&format!("--listen=0.0.0.0:{port}").as_str()),
            "{overlay}: {args:?}"
        );
        let https = item(&container["ports"], "name", json!("https"));
        assert_eq!(https["containerPort"], port, "{overlay}");
        let service = find(&objects, "Service", "promfed");
        let to = item(&service["spec"]["ports"], "port", json!(443));
        assert_eq!(to["targetPort"], "https", "{overlay}");
        let policy = find(&objects, "NetworkPolicy", "promfed");
        let ports: Vec<&Value> = (policy["spec"]["ingress"].as_array().unwrap())
            .iter()
            .flat_map(|rule| rule["ports"].as_array().unwrap())
            .map(|p| &p["port"])
            .collect();
        assert_eq!(ports, [&json!(port), &json!(9102)], "{overlay}");
        assert_valid(&objects);
    }
    assert_eq!(
        std::fs::read_to_string(root().join("deploy/base/webhook-port-replacements.yaml")).unwrap(),
        std::fs::read_to_string(root().join("deploy/gke-private/webhook-port-replacements.yaml"))
            .unwrap(),
        "the overlay's copy of the replacements differs from the base's"
    );
}

/// The JSON array of an exec-form Dockerfile instruction (its last occurrence: the final stage).
fn dockerfile_exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let prefix = format!("{instruction} ");
    let line = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(&prefix));
    let line = line.unwrap_or_else(|| panic!("no {instruction} in the Dockerfile"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{instruction} is not in exec form: {e}"))
}

#[test]
fn image_runs_what_the_deployment_runs_as_the_user_it_expects() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let deployment = parse_one(&root().join("deploy/base/deployment.yaml"));
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        dockerfile_exec_form(&dockerfile, "ENTRYPOINT"),
        ["/promfed"]
    );
    assert_eq!(
        dockerfile_exec_form(&dockerfile, "CMD"),
        strings(&container["args"])
    );
    assert!(
        container.get("command").is_none(),
        "the image's ENTRYPOINT is the command"
    );
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap();
    assert_eq!(
        user.split(':').next().unwrap(),
        pod["securityContext"]["runAsUser"].to_string()
    );
    assert!(dockerfile.contains("cargo build --release --locked"));
    let last_from = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("FROM "))
        .unwrap();
    assert!(
        last_from.contains("distroless") && last_from.ends_with(":nonroot"),
        "{last_from}"
    );
}

/// The files of the targets Cargo.toml declares (`[[bin]]`, `[[bench]]`, `[[test]]`,
/// `[[example]]`): `path`, else Cargo's default for the kind.
fn declared_targets(manifest: &str) -> Vec<String> {
    let mut files = Vec::new();
    let mut section: Option<(&str, Option<String>, Option<String>)> = None;
    let mut finish = |section: Option<(&str, Option<String>, Option<String>)>| {
        if let Some((kind, name, path)) = section {
            let name = name.unwrap_or_default();
            files.push(path.unwrap_or_else(|| match kind {
                "bin" => format!("src/bin/{name}.rs"),
                "bench" => format!("benches/{name}.rs"),
                "test" => format!("tests/{name}.rs"),
                _ => format!("examples/{name}.rs"),
            }));
        }
    };
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            finish(section.take());
            let kind = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]"));
            section = kind
                .filter(|k| ["bin", "bench", "test", "example"].contains(k))
                .map(|k| (k, None, None));
        } else if let Some((_, name, path)) = section.as_mut() {
            let value = |key: &str| {
                let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
                Some(rest.trim().trim_matches('"').to_string())
            };
            if let Some(v) = value("name") {
                *name = Some(v);
            } else if let Some(v) = value("path") {
                *path = Some(v);
            }
        }
    }
    finish(section);
    files
}

#[test]
fn dockerignore_admits_every_file_the_build_embeds() {
    let dockerignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let rules: Vec<&str> = (dockerignore.lines().map(str::trim))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules[0], "*",
        "an allow-list: everything out, then what the build reads"
    );
    let admitted = |path: &str| {
        rules
            .iter()
            .filter_map(|r| r.strip_prefix('!'))
            .any(|allowed| {
                path == allowed.trim_end_matches('/')
                    || (allowed.ends_with('/') && path.starts_with(allowed))
            })
    };
    // Cargo reads every declared target's file when it loads the manifest, so `cargo build
    // --bin promfed` fails if a [[bench]] or [[test]] file is missing from the context.
    let mut needed = vec![
        "Cargo.toml".to_string(),
        "Cargo.lock".into(),
        "src/lib.rs".into(),
    ];
    needed.extend(declared_targets(
        &std::fs::read_to_string(root().join("Cargo.toml")).unwrap(),
    ));
    for file in &needed {
        assert!(admitted(file), "{file} is kept out of the build context");
    }
    // Every include_str!/include_bytes! under src/, resolved against its file.
    let root = root().canonicalize().unwrap();
    let mut embedded = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for opening in ["include_str!(\"", "include_bytes!(\""] {
                for (at, _) in text.match_indices(opening) {
                    let rest = &text[at + opening.len()..];
                    let file = path
                        .parent()
                        .unwrap()
                        .join(&rest[..rest.find('"').unwrap()]);
                    let file = file
                        .canonicalize()
                        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                    embedded.push(p(file.strip_prefix(&root).unwrap()).to_string());
                }
            }
        }
    }
    assert!(
        embedded.iter().any(|f| f == "deploy/base/promfed.yaml"),
        "{embedded:?}"
    );
    for file in &embedded {
        assert!(
            admitted(file),
            "src/ embeds {file}, which .dockerignore keeps out of the build"
        );
    }
}
