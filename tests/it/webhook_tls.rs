//! The `promfed serve` binary over real TLS: clients that verify the CA and the in-cluster name
//! `promfed.promfed-system.svc`, certificate and config swaps the way the kubelet does them,
//! SIGTERM, client certificates, `--dev`.

use std::ffi::OsStr;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use promfed::server::dev::Pki;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::Value;

use crate::support::examples::{engine, example_config, rendered, tkg_configmap};
use crate::support::load::Flood;
use crate::support::review::{applied, decoded_patch, review};
use crate::support::serve::{Files, NAME, Server};
use crate::support::tls::{Answer, Client, request_head};
use crate::support::{self, Mount, wait_until};

fn leaf_der(pki: &Pki) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).unwrap()
}

// ---------------------------------------------------------------------------------------
// Tests

/// The corpus ConfigMaps through Python's `ssl` (verifying the CA and the service name) and
/// Python's `jsonpatch`: the patched object is exactly the engine's output, and sending it
/// again yields no patch.
const CORPUS_CLIENT: &str = r#"
import base64, http.client, json, socket, ssl, sys
import jsonpatch, yaml

port, ca, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED

class Conn(http.client.HTTPSConnection):
    def connect(self):
        sock = socket.create_connection(("127.0.0.1", port))
        self.sock = ctx.wrap_socket(sock, server_hostname=name)

def post(uid, operation, obj):
    review = {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
            "operation": operation, "userInfo": {"username": "python"},
            "object": obj, "oldObject": obj if operation == "UPDATE" else None,
        },
    }
    conn = Conn(name, port, context=ctx)
    conn.request("POST", "/mutate", body=json.dumps(review),
                 headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    body = answer.read()
    conn.close()
    assert answer.status == 200, (answer.status, body)
    review = json.loads(body)
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    response = review["response"]
    assert response["uid"] == uid and response["allowed"] is True, response
    return response

out = []
for i, path in enumerate(sys.argv[4:]):
    obj = yaml.safe_load(open(path))
    first = post("py-%d" % i, "CREATE", obj)
    if "patch" in first:
        assert first["patchType"] == "JSONPatch", first
        assert isinstance(first["patch"], str), type(first["patch"])
        ops = json.loads(base64.b64decode(first["patch"], validate=True))
        patched = jsonpatch.JsonPatch(ops).apply(obj)
    else:
        assert "patchType" not in first, first
        patched = obj
    again = post("py-%d-again" % i, "UPDATE", patched)
    assert "patch" not in again and "patchType" not in again, again
    out.append({"path": path, "object": obj, "patched": patched, "mutated": "patch" in first})
json.dump(out, sys.stdout)
"#;

#[test]
fn corpus_configmaps_over_tls_patch_to_the_engine_output_in_python() {
    let python = support::require!(python);
    // Match on the name only, so the Helm 29 ConfigMap (app.kubernetes.io/* labels) counts too.
    let config = example_config("configmap:\n  labels: {}\n");
    let files = Files::new(&config);
    std::fs::write(files.path("ca.crt"), &files.pki.ca_pem).unwrap();
    let server = Server::with(&files);
    let corpus = [
        "tkg/prometheus-server-configmap.yaml",
        "helm/prometheus-server-configmap-chart-14.12.0.yaml",
        "helm/prometheus-server-configmap-chart-29.27.0.yaml",
    ];
    let port = server.https.port().to_string();
    let ca = files.path("ca.crt");
    let mut args: Vec<&OsStr> = vec![
        "-c".as_ref(),
        CORPUS_CLIENT.as_ref(),
        port.as_ref(),
        ca.as_os_str(),
        NAME.as_ref(),
    ];
    let paths: Vec<PathBuf> = corpus.iter().map(support::data).collect();
    args.extend(paths.iter().map(|p| p.as_os_str()));
    let out = support::run(&python, &args, None);
    assert!(
        out.status.success(),
        "{}\n--- server log\n{}",
        support::describe(&out),
        server.log()
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), corpus.len());
    let engine = engine(&config);
    for result in &results {
        assert_eq!(
            result["patched"],
            rendered(&engine, &result["object"]),
            "{}",
            result["path"]
        );
        assert_eq!(
            result["mutated"], true,
            "{} was not rewritten",
            result["path"]
        );
    }
    assert_eq!(
        server.metric("promfed_reviews_total{outcome=\"mutated\"}"),
        3.0
    );
    assert_eq!(
        server.metric("promfed_reviews_total{outcome=\"unchanged\"}"),
        3.0
    );
}

#[test]
fn tls_1_2_and_1_3_both_verify_the_service_name() {
    let files = Files::new(promfed::config::EXAMPLE);
    let pki = &files.pki;
    let server = Server::with(&files);
    let object = tkg_configmap();
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let client = Client::build(&[&pki.ca_pem], NAME, &[version], None);
        let answer = client
            .post_json(server.https, &review("v", "CREATE", "ConfigMap", &object))
            .unwrap();
        let patch = decoded_patch(&answer.response()).expect("patched");
        assert_eq!(
            applied(&object, &patch),
            rendered(&engine(promfed::config::EXAMPLE), &object)
        );
    }
    // A name the certificate does not carry is refused by the client.
    let wrong = Client::named(&[&pki.ca_pem], "promfed.other.svc");
    assert!(wrong.post(server.https, b"{}").is_err());
}

#[test]
fn certificate_swapped_through_the_data_symlink_while_requests_flow() {
    let first = Pki::generate(&[NAME]).unwrap();
    let second = Pki::generate(&[NAME]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("promfed.yaml");
    std::fs::write(&config, promfed::config::EXAMPLE).unwrap();
    let mut secret = Mount::new(
        &tmp.path().join("secret"),
        &[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)],
    );
    let server = Server::start(
        &[
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--tls-cert-file"),
            secret.path("tls.crt").as_os_str(),
            OsStr::new("--tls-key-file"),
            secret.path("tls.key").as_os_str(),
        ],
        &[],
    );
    let client = Client::new(&[&first.ca_pem, &second.ca_pem]);
    let body = review("swap", "CREATE", "ConfigMap", &tkg_configmap());
    let load = Flood::start(&client, server.https, &body, 2);

    std::thread::sleep(Duration::from_millis(300));
    secret.update(&[("tls.crt", &second.cert_pem), ("tls.key", &second.key_pem)]);
    let (first_leaf, second_leaf) = (leaf_der(&first), leaf_der(&second));
    wait_until("the new certificate", support::HANG_GUARD, || {
        client.post_json(server.https, &body).unwrap().leaf == second_leaf
    });
    std::thread::sleep(Duration::from_millis(300));

    // A certificate with the wrong key: refused, the current one stays.
    secret.update(&[("tls.crt", &first.cert_pem), ("tls.key", &second.key_pem)]);
    wait_until("the failed reload", support::HANG_GUARD, || {
        server.metric("promfed_certificate_reloads_total{result=\"failure\"}") == 1.0
    });
    std::thread::sleep(Duration::from_millis(300));
    let results = load.finish();

    let mut served = 0;
    for (thread, results) in results.iter().enumerate() {
        let mut seen_second = false;
        for (i, result) in results.iter().enumerate() {
            let answer = result
                .as_ref()
                .unwrap_or_else(|e| panic!("thread {thread} request {i} failed: {e}"));
            assert!(decoded_patch(&answer.response()).is_some());
            if answer.leaf == second_leaf {
                seen_second = true;
            } else {
                assert_eq!(answer.leaf, first_leaf);
                assert!(
                    !seen_second,
                    "thread {thread}: old certificate after the new one"
                );
            }
            served += 1;
        }
        assert!(seen_second, "thread {thread} never saw the new certificate");
    }
    assert!(served > 10, "only {served} requests");
    assert_eq!(
        client.post_json(server.https, &body).unwrap().leaf,
        second_leaf
    );
    assert_eq!(
        server.metric("promfed_certificate_reloads_total{result=\"success\"}"),
        1.0
    );
    assert!(server.log().contains("new certificate rejected"));
}

#[test]
fn config_swapped_through_the_data_symlink_and_a_broken_one_keeps_the_last_good() {
    let pki = Pki::generate(&[NAME]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("tls.crt"), &pki.cert_pem).unwrap();
    std::fs::write(tmp.path().join("tls.key"), &pki.key_pem).unwrap();
    let config_a = example_config("");
    let config_b = config_a.replace("localClusterName: shared-tools", "localClusterName: hub-b");
    assert_ne!(config_a, config_b);
    let mut mount = Mount::new(&tmp.path().join("config"), &[("promfed.yaml", &config_a)]);
    let server = Server::start(
        &[
            OsStr::new("--config"),
            mount.path("promfed.yaml").as_os_str(),
            OsStr::new("--tls-cert-file"),
            tmp.path().join("tls.crt").as_os_str(),
            OsStr::new("--tls-key-file"),
            tmp.path().join("tls.key").as_os_str(),
        ],
        &[],
    );
    let client = Client::new(&[&pki.ca_pem]);
    let object = tkg_configmap();
    let body = review("cfg", "CREATE", "ConfigMap", &object);
    let patched = |answer: &Answer| applied(&object, &decoded_patch(&answer.response()).unwrap());
    let (want_a, want_b) = (
        rendered(&engine(&config_a), &object),
        rendered(&engine(&config_b), &object),
    );
    assert_eq!(
        patched(&client.post_json(server.https, &body).unwrap()),
        want_a
    );

    let load = Flood::start(&client, server.https, &body, 2);
    mount.update(&[("promfed.yaml", &config_b)]);
    wait_until("the new config", support::HANG_GUARD, || {
        patched(&client.post_json(server.https, &body).unwrap()) == want_b
    });
    mount.update(&[("promfed.yaml", "localClusterName: [unclosed\n")]);
    wait_until("the failed reload", support::HANG_GUARD, || {
        server.metric("promfed_config_reloads_total{result=\"failure\"}") == 1.0
    });
    std::thread::sleep(Duration::from_millis(300));
    let results = load.finish();
    assert_eq!(
        patched(&client.post_json(server.https, &body).unwrap()),
        want_b
    );

    for (thread, results) in results.iter().enumerate() {
        let mut seen_b = false;
        for (i, result) in results.iter().enumerate() {
            let answer = result
                .as_ref()
                .unwrap_or_else(|e| panic!("thread {thread} request {i} failed: {e}"));
            let got = patched(answer);
            if got == want_b {
                seen_b = true;
            } else {
                assert_eq!(got, want_a);
                assert!(!seen_b, "thread {thread}: old config after the new one");
            }
        }
    }
    assert_eq!(
        server.metric("promfed_config_reloads_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(server.metric("promfed_config_generation"), 2.0);
    assert!(server.log().contains("new config rejected"));
    // The log never carries ConfigMap content.
    assert!(!server.log().contains("scrape_configs"));
}

#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let files = Files::new(promfed::config::EXAMPLE);
    let pki = &files.pki;
    let mut server = Server::with(&files);
    let client = Client::new(&[&pki.ca_pem]);
    let object = tkg_configmap();
    let body = serde_json::to_vec(&review("in-flight", "CREATE", "ConfigMap", &object)).unwrap();

    // Headers and half the body: the request is being served when the signal arrives.
    let mut conn = client.connect(server.https).unwrap();
    conn.send(&request_head(body.len(), true)).unwrap();
    conn.send(&body[..body.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.sigterm();
    wait_until("shutdown to start", support::HANG_GUARD, || {
        server.log().contains("shutting down")
    });
    wait_until("the listener to close", support::HANG_GUARD, || {
        TcpStream::connect(server.https).is_err()
    });
    assert_eq!(server.get("/readyz").0, 503);

    conn.send(&body[body.len() / 2..]).unwrap();
    let answer = conn.answer().unwrap();
    let patch = decoded_patch(&answer.response()).expect("patched");
    assert_eq!(
        applied(&object, &patch),
        rendered(&engine(promfed::config::EXAMPLE), &object)
    );
    let status = server.wait_exit(support::HANG_GUARD);
    assert!(status.success(), "exit status {status}\n{}", server.log());
    assert!(server.log().contains("\"stopped\""));
}

#[test]
fn client_ca_requires_a_client_certificate_it_signed() {
    let clients = Pki::generate(&["kube-apiserver"]).unwrap();
    // A client certificate signed by the client CA (rcgen directly, with clientAuth).
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "client CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["kube-apiserver".to_string()]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (client_cert, client_key) = (cert.pem(), key.serialize_pem());

    let files = Files::new(promfed::config::EXAMPLE);
    let pki = &files.pki;
    std::fs::write(files.path("client-ca.crt"), ca_cert.pem()).unwrap();
    let mut args = files.args();
    args.extend([
        "--client-ca-file".into(),
        files.path("client-ca.crt").into(),
    ]);
    let server = Server::start(&args, &[]);
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let body = review("mtls", "DELETE", "ConfigMap", &tkg_configmap());

    let anonymous = Client::build(&[&pki.ca_pem], NAME, &versions, None);
    assert!(anonymous.post_json(server.https, &body).is_err());
    // A certificate from another CA (the server's own leaf) is refused too.
    let stranger = Client::build(
        &[&pki.ca_pem],
        NAME,
        &versions,
        Some((&clients.cert_pem, &clients.key_pem)),
    );
    assert!(stranger.post_json(server.https, &body).is_err());
    let trusted = Client::build(
        &[&pki.ca_pem],
        NAME,
        &versions,
        Some((&client_cert, &client_key)),
    );
    let response = trusted.post_json(server.https, &body).unwrap().response();
    assert_eq!(response["allowed"], true);
}

#[test]
fn dev_mode_needs_no_flags_and_its_curl_example_works() {
    let mut server = Server::start(&["--dev"], &[]);
    let banner = || server.stdout();
    wait_until("the --dev banner", support::HANG_GUARD, || {
        banner().contains("Metrics:")
    });
    let text = banner();
    let word_after = |marker: &str| -> String {
        let at = text
            .find(marker)
            .unwrap_or_else(|| panic!("{marker:?} not in\n{text}"));
        text[at + marker.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let ca = word_after("--cacert ");
    let review_path = word_after("--data-binary @");
    let url = word_after("https://");
    assert_eq!(url, format!("localhost:{}/mutate", server.https.port()));
    assert!(server.https.ip().is_loopback());

    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let body = std::fs::read(&review_path).unwrap();
    assert_eq!(body, support::read_data("review-tkg.json").into_bytes());
    let response = Client::named(&[&ca_pem], "localhost")
        .post(server.https, &body)
        .unwrap()
        .response();
    let object = tkg_configmap();
    let patch = decoded_patch(&response).expect("the example review is rewritten");
    assert_eq!(
        applied(&object, &patch),
        rendered(&engine(promfed::config::EXAMPLE), &object)
    );

    server.sigterm();
    assert!(server.wait_exit(support::HANG_GUARD).success());
    assert!(!Path::new(&ca).exists(), "--dev files are removed at exit");
}
