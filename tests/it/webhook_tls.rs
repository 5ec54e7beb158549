//! The `promfed serve` binary over real TLS: clients that verify the CA and the in-cluster name
//! `promfed.promfed-system.svc`, certificate and config swaps the way the kubelet does them,
//! SIGTERM, client certificates, `--dev`.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use promfed::server::dev::Pki;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};

use crate::support::{self, Mount};
use crate::webhook::{
    applied, decoded_patch, engine, example_config, rendered, review, tkg_configmap,
};

const NAME: &str = "promfed.promfed-system.svc";

// ---------------------------------------------------------------------------------------
// The server process

/// A running `promfed serve`; killed when dropped.
struct Server {
    child: Child,
    https: SocketAddr,
    metrics: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Server {
    /// Start with `args` plus ephemeral loopback ports and a 100 ms reload interval; wait for the
    /// "listening" log line, which names the bound addresses.
    fn start(args: &[&OsStr]) -> Server {
        let mut child = Command::new(support::promfed_bin())
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--reload-interval-ms", "100"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting promfed serve");
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = collect(child.stdout.take().unwrap());
        let deadline = Instant::now() + support::HANG_GUARD;
        loop {
            let listening = stderr.lock().unwrap().iter().find_map(|line| {
                let log: Value = serde_json::from_str(line).ok()?;
                (log["message"] == "listening").then(|| {
                    let addr = |f: &str| log[f].as_str().unwrap().parse::<SocketAddr>().unwrap();
                    (addr("https_addr"), addr("metrics_addr"))
                })
            });
            if let Some((https, metrics)) = listening {
                return Server {
                    child,
                    https,
                    metrics,
                    stderr,
                    stdout,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "promfed serve exited with {status} before listening:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "promfed serve did not start in 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// GET a path of the plain-HTTP listener: (status, body).
    fn get(&self, path: &str) -> (u16, String) {
        let mut tcp = TcpStream::connect(self.metrics).expect("metrics listener");
        write!(
            tcp,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).unwrap();
        let (status, body) = parse_response(&raw).expect("HTTP response");
        (status, String::from_utf8(body).unwrap())
    }

    /// The value of one sample line of /metrics, e.g. `promfed_config_generation`.
    fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} not in\n{text}"))
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "promfed serve still running after {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// A verifying TLS client (rustls, ring)

#[derive(Clone)]
struct Client {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// What one request got.
struct Answer {
    status: u16,
    body: Vec<u8>,
    /// The leaf certificate the server presented.
    leaf: CertificateDer<'static>,
}

impl Answer {
    fn response(&self) -> Value {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        let review: Value = serde_json::from_slice(&self.body).unwrap();
        review["response"].clone()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Client {
    /// Trusts the CAs in `ca_pems`, expects the name `name`.
    fn new(ca_pems: &[&str], name: &str) -> Client {
        Client::build(
            ca_pems,
            name,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
            None,
        )
    }

    fn build(
        ca_pems: &[&str],
        name: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
        identity: Option<(&str, &str)>,
    ) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for pem in ca_pems {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
        };
        // Full handshakes only: a resumed session shows the certificate of the session it
        // resumes, and the certificate tests need to see what a new client gets.
        config.resumption = rustls::client::Resumption::disabled();
        Client {
            config: Arc::new(config),
            name: ServerName::try_from(name.to_string()).unwrap(),
        }
    }

    fn connect(&self, addr: SocketAddr) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        let tls = rustls::ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(std::io::Error::other)?;
        Ok(Conn(rustls::StreamOwned::new(tls, tcp)))
    }

    /// POST `body` to /mutate on a new connection.
    fn post(&self, addr: SocketAddr, body: &[u8]) -> std::io::Result<Answer> {
        let mut conn = self.connect(addr)?;
        conn.send(&request_head(body.len()))?;
        conn.send(body)?;
        conn.answer()
    }

    fn post_json(&self, addr: SocketAddr, review: &Value) -> std::io::Result<Answer> {
        self.post(addr, &serde_json::to_vec(review).unwrap())
    }
}

struct Conn(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl Conn {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)?;
        self.0.flush()
    }

    fn answer(mut self) -> std::io::Result<Answer> {
        let mut raw = Vec::new();
        match self.0.read_to_end(&mut raw) {
            Ok(_) => {}
            // A peer that closes without close_notify; the response may still be complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e),
        }
        let (status, body) = parse_response(&raw)
            .ok_or_else(|| std::io::Error::other(format!("incomplete response: {raw:?}")))?;
        let leaf = self
            .0
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .expect("server certificate")
            .clone()
            .into_owned();
        Ok(Answer { status, body, leaf })
    }
}

fn request_head(length: usize) -> Vec<u8> {
    format!(
        "POST /mutate HTTP/1.1\r\nHost: {NAME}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// (status, body) of a complete HTTP/1.1 response with Content-Length.
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(raw.len() - end - 4);
    let body = raw.get(end + 4..end + 4 + length)?.to_vec();
    Some((status, body))
}

/// Requests sent in a loop by a few threads until stopped; every result is kept.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Result<Answer, String>>>>,
}

impl Load {
    fn start(client: &Client, addr: SocketAddr, review: &Value, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|t| {
                let (client, stop) = (client.clone(), stop.clone());
                let mut review = review.clone();
                std::thread::spawn(move || {
                    let mut results = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        review["request"]["uid"] = json!(format!("load-{t}-{i}"));
                        i += 1;
                        results.push(client.post_json(addr, &review).map_err(|e| e.to_string()));
                    }
                    results
                })
            })
            .collect();
        Load { stop, threads }
    }

    /// Stop and return every thread's results, in the order each thread got them.
    fn finish(self) -> Vec<Vec<Result<Answer, String>>> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect()
    }
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
    let pki = Pki::generate(&[NAME]).unwrap();
    // Match on the name only, so the Helm 29 ConfigMap (app.kubernetes.io/* labels) counts too.
    let config = example_config("configmap:\n  labels: {}\n");
    let dir = support::temp_files(&[
        ("promfed.yaml", &config),
        ("tls.crt", &pki.cert_pem),
        ("tls.key", &pki.key_pem),
        ("ca.crt", &pki.ca_pem),
    ]);
    let d = dir.path();
    let server = Server::start(&[
        "--config".as_ref(),
        d.join("promfed.yaml").as_os_str(),
        "--tls-cert-file".as_ref(),
        d.join("tls.crt").as_os_str(),
        "--tls-key-file".as_ref(),
        d.join("tls.key").as_os_str(),
    ]);
    let corpus = [
        "tkg/prometheus-server-configmap.yaml",
        "helm/prometheus-server-configmap-chart-14.12.0.yaml",
        "helm/prometheus-server-configmap-chart-29.27.0.yaml",
    ];
    let port = server.https.port().to_string();
    let ca = d.join("ca.crt");
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
    let pki = Pki::generate(&[NAME]).unwrap();
    let dir = support::temp_files(&[
        ("promfed.yaml", promfed::config::EXAMPLE),
        ("tls.crt", &pki.cert_pem),
        ("tls.key", &pki.key_pem),
    ]);
    let d = dir.path();
    let server = Server::start(&[
        "--config".as_ref(),
        d.join("promfed.yaml").as_os_str(),
        "--tls-cert-file".as_ref(),
        d.join("tls.crt").as_os_str(),
        "--tls-key-file".as_ref(),
        d.join("tls.key").as_os_str(),
    ]);
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
    let wrong = Client::new(&[&pki.ca_pem], "promfed.other.svc");
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
    let server = Server::start(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--tls-cert-file".as_ref(),
        secret.path("tls.crt").as_os_str(),
        "--tls-key-file".as_ref(),
        secret.path("tls.key").as_os_str(),
    ]);
    let client = Client::new(&[&first.ca_pem, &second.ca_pem], NAME);
    let body = review("swap", "CREATE", "ConfigMap", &tkg_configmap());
    let load = Load::start(&client, server.https, &body, 2);

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
    let server = Server::start(&[
        "--config".as_ref(),
        mount.path("promfed.yaml").as_os_str(),
        "--tls-cert-file".as_ref(),
        tmp.path().join("tls.crt").as_os_str(),
        "--tls-key-file".as_ref(),
        tmp.path().join("tls.key").as_os_str(),
    ]);
    let client = Client::new(&[&pki.ca_pem], NAME);
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

    let load = Load::start(&client, server.https, &body, 2);
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
    let pki = Pki::generate(&[NAME]).unwrap();
    let dir = support::temp_files(&[
        ("promfed.yaml", promfed::config::EXAMPLE),
        ("tls.crt", &pki.cert_pem),
        ("tls.key", &pki.key_pem),
    ]);
    let d = dir.path();
    let mut server = Server::start(&[
        "--config".as_ref(),
        d.join("promfed.yaml").as_os_str(),
        "--tls-cert-file".as_ref(),
        d.join("tls.crt").as_os_str(),
        "--tls-key-file".as_ref(),
        d.join("tls.key").as_os_str(),
    ]);
    let client = Client::new(&[&pki.ca_pem], NAME);
    let object = tkg_configmap();
    let body = serde_json::to_vec(&review("in-flight", "CREATE", "ConfigMap", &object)).unwrap();

    // Headers and half the body: the request is being served when the signal arrives.
    let mut conn = client.connect(server.https).unwrap();
    conn.send(&request_head(body.len())).unwrap();
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
    let pki = Pki::generate(&[NAME]).unwrap();
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

    let dir = support::temp_files(&[
        ("promfed.yaml", promfed::config::EXAMPLE),
        ("tls.crt", &pki.cert_pem),
        ("tls.key", &pki.key_pem),
        ("client-ca.crt", &ca_cert.pem()),
    ]);
    let d = dir.path();
    let server = Server::start(&[
        "--config".as_ref(),
        d.join("promfed.yaml").as_os_str(),
        "--tls-cert-file".as_ref(),
        d.join("tls.crt").as_os_str(),
        "--tls-key-file".as_ref(),
        d.join("tls.key").as_os_str(),
        "--client-ca-file".as_ref(),
        d.join("client-ca.crt").as_os_str(),
    ]);
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
    let mut server = Server::start(&["--dev".as_ref()]);
    let banner = || server.stdout.lock().unwrap().join("\n");
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
    let response = Client::new(&[&ca_pem], "localhost")
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
