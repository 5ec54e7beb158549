//! Security properties of `promfed serve` and of the build:
//!
//! - TLS 1.2+ only, by rustls; AEAD cipher suites only; no plain-HTTP way to `/mutate`.
//!   (Client-certificate authentication: `webhook_tls::client_ca_requires_a_client_certificate_it_signed`.)
//! - A password planted in the promfed config, in the ConfigMap's own prometheus.yml and in a
//!   rule annotation appears in no log line at any level, in either log format, on any path:
//!   mutated, cached, unchanged, denied, invalid, warnings, reloads good and bad, shutdown.
//! - Log lines cannot be forged through the review's fields in the text format.
//! - Every dependency's license is on the allow-list of `deny.toml`, and no new duplicate crate
//!   versions creep in (checked offline with `cargo metadata` and `cargo tree`, for those without
//!   cargo-deny).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::examples::tkg_configmap;
use crate::support::review::{applied, decoded_patch, review};
use crate::support::serve::{Files, Server, plain_http, strip_ansi};
use crate::support::wait_until;
use crate::support::{self, Mount};

// ---------------------------------------------------------------------------------------
// TLS and plain HTTP

/// A ClientHello offering only `version` (0x0301 TLS 1.0, 0x0302 TLS 1.1, 0x0303 TLS 1.2) and
/// `suites`, without extensions, as a pre-1.3 client sends it.
fn client_hello(version: [u8; 2], suites: &[[u8; 2]]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for suite in suites {
        body.extend_from_slice(suite);
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    if version == [3, 3] {
        // TLS 1.2 needs the curves and signature algorithms for an ECDHE suite.
        let mut ext = Vec::new();
        ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17]); // secp256r1
        ext.extend_from_slice(&[0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03]); // ecdsa_secp256r1_sha256
        ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]); // point formats
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
    }
    let mut handshake = vec![1u8]; // ClientHello
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Send `bytes` and read what comes back until the server closes.
fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    tcp.write_all(bytes).unwrap();
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got);
    got
}

/// The alert description of a plaintext TLS alert record (`15 03 0x 00 02 level desc`).
fn alert(bytes: &[u8]) -> Option<u8> {
    (bytes.len() >= 7 && bytes[0] == 0x15 && bytes[3..5] == [0, 2]).then(|| bytes[6])
}

const PROTOCOL_VERSION: u8 = 70;
const HANDSHAKE_FAILURE: u8 = 40;

#[test]
fn tls_1_0_and_1_1_are_refused_with_an_alert() {
    let files = Files::new(promfed::config::EXAMPLE);
    let server = Server::with(&files);
    let suites = [[0xc0, 0x2b], [0xc0, 0x13], [0x00, 0x2f]];
    for (name, version) in [("TLS 1.0", [3, 1]), ("TLS 1.1", [3, 2])] {
        let got = exchange(server.https, &client_hello(version, &suites));
        // rustls answers a hello without TLS 1.2 with handshake_failure (or protocol_version).
        assert!(
            matches!(alert(&got), Some(HANDSHAKE_FAILURE | PROTOCOL_VERSION)),
            "{name}: {got:02x?}"
        );
        assert_eq!(got.get(5), Some(&2), "{name}: a fatal alert");
    }
}

#[test]
fn tls_1_2_without_an_aead_cipher_suite_is_refused() {
    let files = Files::new(promfed::config::EXAMPLE);
    let server = Server::with(&files);
    // ECDHE-ECDSA with AES-CBC-SHA, AES-CBC-SHA256, 3DES, RC4: what an old client offers.
    let weak = [[0xc0, 0x09], [0xc0, 0x23], [0xc0, 0x08], [0xc0, 0x07]];
    let got = exchange(server.https, &client_hello([3, 3], &weak));
    assert_eq!(alert(&got), Some(HANDSHAKE_FAILURE), "{got:02x?}");
    // The same hello with an AEAD suite gets a ServerHello (a handshake record).
    let got = exchange(server.https, &client_hello([3, 3], &[[0xc0, 0x2b]]));
    assert_eq!(got.first(), Some(&0x16), "{got:02x?}");
}

#[test]
fn no_plain_http_path_to_mutate() {
    let files = Files::new(promfed::config::EXAMPLE);
    let server = Server::with(&files);
    let body =
        serde_json::to_string(&review("plain", "CREATE", "ConfigMap", &tkg_configmap())).unwrap();
    let request = format!(
        "POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // The metrics listener does not route /mutate.
    let (status, _) = plain_http(server.metrics, &request).unwrap();
    assert!(
        matches!(status, 404 | 405),
        "POST /mutate on the metrics port: {status}"
    );
    for path in ["/", "/mutate?x=1", "/metrics/../mutate"] {
        let (status, _) =
            plain_http(server.metrics, &request.replacen("/mutate", path, 1)).unwrap();
        assert!(
            matches!(status, 404 | 405),
            "POST {path} on the metrics port: {status}"
        );
    }
    // Plain HTTP to the TLS port gets no HTTP answer: a TLS alert at most, then the close.
    let got = exchange(server.https, request.as_bytes());
    assert!(
        !got.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(got.is_empty() || got[0] == 0x15, "{got:02x?}");
    assert_eq!(
        server.metric("promfed_reviews_total{outcome=\"mutated\"}"),
        0.0
    );
    // And the server is fine.
    let answer = files
        .client()
        .post_json(
            server.https,
            &review("after", "DELETE", "ConfigMap", &tkg_configmap()),
        )
        .unwrap();
    assert_eq!(answer.response()["allowed"], true);
}

// ---------------------------------------------------------------------------------------
// No secret in a log line

const SECRET: &str = "S3cr3t-planted";

/// The planted secret and what a log could carry instead of it: its base64 at each of the
/// three alignments (without the characters that depend on the neighbours).
fn forms_of_the_secret() -> Vec<String> {
    let mut forms = vec![SECRET.to_string()];
    for shift in 0..3 {
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}{SECRET}", "x".repeat(shift)));
        let skip = (shift * 4).div_ceil(3) + 1;
        let keep = (SECRET.len() * 4 / 3).saturating_sub(3);
        forms.push(encoded.chars().skip(skip).take(keep).collect());
    }
    forms
}

fn secret_config(extra: &str) -> String {
    format!(
        "localClusterName: hub\n\
         clusters:\n\
         - name: w\n  targets: [w:9090]\n  basic_auth: {{username: u, password: {SECRET}}}\n\
         federationAlerts:\n  enabled: true\n{extra}"
    )
}

/// The TKG ConfigMap with the secret in a raw local job's basic_auth, in a raw job scraping
/// /federate (left as is, with a warning), in a rule annotation, and in a rule matcher
/// (`cluster="…"`: kept, with a warning that quotes it).
fn secret_configmap() -> Value {
    let mut object = tkg_configmap();
    let config = object["data"]["prometheus.yml"].as_str().unwrap().replacen(
        "\nscrape_configs:\n",
        &format!(
            "\nscrape_configs:\n\
             - job_name: guarded\n  basic_auth:\n    username: u\n    password: {SECRET}\n  static_configs:\n  - targets: [guarded:9100]\n\
             - job_name: old-hub\n  metrics_path: /federate\n  basic_auth:\n    username: u\n    password: {SECRET}\n  static_configs:\n  - targets: [old-hub:9090]\n"
        ),
        1,
    );
    object["data"]["prometheus.yml"] = json!(config);
    object["data"]["alerting_rules.yml"] = json!(format!(
        "groups:\n- name: secretive\n  rules:\n  - alert: Leaky\n    expr: up{{cluster=\"{SECRET}\"}} == 0\n    annotations:\n      summary: 'token {SECRET}'\n"
    ));
    object
}

/// Every path of a review and of a reload, in one log format, at trace level: the lines.
fn exercise(format: &str) -> (Vec<String>, String) {
    let files = Files::new("");
    let mut mount = Mount::new(
        &files.path("config"),
        &[("promfed.yaml", &secret_config(""))],
    );
    let args: Vec<OsString> = vec![
        "--config".into(),
        mount.path("promfed.yaml").into(),
        "--tls-cert-file".into(),
        files.path("tls.crt").into(),
        "--tls-key-file".into(),
        files.path("tls.key").into(),
        "--log-format".into(),
        format.into(),
    ];
    let mut server = Server::start(&args, &[("RUST_LOG", "trace")]);
    let client = files.client();
    let post = |body: &Value| client.post_json(server.https, body).unwrap();
    let object = secret_configmap();

    // Mutated, with warnings (the inline password of the federation job, the raw /federate
    // job, the kept matcher); then the cache; then the patched object, unchanged.
    let response = post(&review("s-mutated", "UPDATE", "ConfigMap", &object)).response();
    let warnings = response["warnings"].to_string();
    assert!(
        warnings.contains("old-hub") && warnings.contains("inline"),
        "{warnings}"
    );
    let patched = applied(&object, &decoded_patch(&response).expect("patched"));
    assert!(
        patched["data"]["prometheus.yml"]
            .as_str()
            .unwrap()
            .contains(SECRET)
    );
    post(&review("s-cached", "UPDATE", "ConfigMap", &object));
    let unchanged = post(&review("s-unchanged", "UPDATE", "ConfigMap", &patched)).response();
    assert!(unchanged.get("patch").is_none(), "{unchanged}");

    // Denied: broken PromQL around the secret, a non-string value under a key named by it.
    let mut broken = object.clone();
    broken["data"]["recording_rules.yml"] = json!(format!(
        "groups:\n- name: g\n  rules:\n  - record: r\n    expr: sum(up{{job=\"{SECRET}\"}}\n"
    ));
    let denied = post(&review("s-denied", "UPDATE", "ConfigMap", &broken)).response();
    assert_eq!(denied["allowed"], false, "{denied}");
    let mut odd = object.clone();
    odd["data"][SECRET] = json!(5);
    assert_eq!(
        post(&review("s-denied-2", "UPDATE", "ConfigMap", &odd)).response()["allowed"],
        false
    );

    // Invalid reviews whose parse errors would quote the secret.
    let good = review("s-invalid", "UPDATE", "ConfigMap", &object);
    for (path, value) in [
        (&["request", "dryRun"][..], json!(SECRET)),
        (&["request", "operation"][..], json!(SECRET)),
        (&["apiVersion"][..], json!(SECRET)),
        (&["kind"][..], json!(SECRET)),
        (
            &["request", "object", "metadata", "labels"][..],
            json!({"app": [SECRET]}),
        ),
    ] {
        let mut bad = good.clone();
        let mut at = &mut bad;
        for p in path {
            at = &mut at[*p];
        }
        *at = value;
        let answer = post(&bad);
        assert_eq!(answer.status, 400, "{path:?}: {}", answer.text());
    }

    // Reloads: a good config with the secret elsewhere, a config with the secret where a
    // number belongs, a config that is not YAML around the secret.
    let reloads = |ok: f64, failed: f64| {
        wait_until("the reload", support::HANG_GUARD, || {
            server.metric("promfed_config_reloads_total{result=\"success\"}") == ok
                && server.metric("promfed_config_reloads_total{result=\"failure\"}") == failed
        });
    };
    mount.update(&[(
        "promfed.yaml",
        &secret_config(&format!("additionalScrapeConfigs:\n- job_name: raw\n  authorization: {{credentials: {SECRET}}}\n  static_configs:\n  - targets: [r:9090]\n    labels: {{cluster: r}}\n")),
    )]);
    reloads(1.0, 0.0);
    post(&review("s-reloaded", "UPDATE", "ConfigMap", &object));
    let typed = |setting: &str| {
        secret_config("").replacen(
            "federationAlerts:\n",
            &format!("{setting}federationAlerts:\n"),
            1,
        )
    };
    mount.update(&[(
        "promfed.yaml",
        &typed(&format!(
            "- name: x\n  targets: [x:1]\n  sample_limit: {SECRET}\n"
        )),
    )]);
    reloads(1.0, 1.0);
    mount.update(&[(
        "promfed.yaml",
        &typed(&format!("rules:\n  matcherPolicy: {SECRET}\n")),
    )]);
    reloads(1.0, 2.0);
    mount.update(&[(
        "promfed.yaml",
        &format!("clusters:\n- name: w\n  basic_auth: {{password: \"{SECRET}\n"),
    )]);
    reloads(1.0, 3.0);

    let metrics = server.get("/metrics").1;
    server.sigterm();
    assert!(server.wait_exit(support::HANG_GUARD).success());
    let mut lines: Vec<String> = server.log().lines().map(str::to_string).collect();
    lines.extend(server.stdout().lines().map(str::to_string));
    (lines, metrics)
}

fn assert_no_secret(format: &str) {
    let (lines, metrics) = exercise(format);
    let forms = forms_of_the_secret();
    let leaks: Vec<&String> = lines
        .iter()
        .filter(|l| forms.iter().any(|f| l.contains(f.as_str())))
        .collect();
    assert!(
        leaks.is_empty(),
        "{format} log: the secret is in {} lines:\n{}",
        leaks.len(),
        leaks
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !forms.iter().any(|f| metrics.contains(f.as_str())),
        "the secret is in /metrics"
    );
    // The log really was at trace level and saw every path.
    let text = lines
        .iter()
        .map(|l| strip_ansi(l))
        .collect::<Vec<_>>()
        .join("\n");
    for seen in [
        "TRACE",
        "mutated",
        "unchanged",
        "denied",
        "invalid",
        "config reloaded",
        "new config rejected",
        "(withheld)",
        "stopped",
    ] {
        assert!(text.contains(seen), "{format} log has no {seen:?}:\n{text}");
    }
}

#[test]
fn a_planted_password_is_in_no_json_log_line() {
    assert_no_secret("json");
}

#[test]
fn a_planted_password_is_in_no_text_log_line() {
    assert_no_secret("text");
}

/// A uid or name holding a line break cannot start a log line of its own in the text format.
#[test]
fn review_fields_cannot_forge_log_lines() {
    let files = Files::new(promfed::config::EXAMPLE);
    let args: Vec<OsString> = files
        .args()
        .into_iter()
        .chain(["--log-format".into(), "text".into()])
        .collect();
    let mut server = Server::start(&args, &[]);
    let forged = "\n2026-01-01T00:00:00Z  INFO promfed::server: FORGED outcome=\"mutated\"";
    let mut object = tkg_configmap();
    object["metadata"]["name"] = json!(format!("x{forged}"));
    let answer = files
        .client()
        .post_json(
            server.https,
            &review(&format!("u{forged}"), "CREATE", "ConfigMap", &object),
        )
        .unwrap();
    assert_eq!(answer.status, 200);
    server.sigterm();
    server.wait_exit(support::HANG_GUARD);
    let log = server.log();
    for line in log.lines().map(strip_ansi) {
        assert!(!line.starts_with("2026-01-01"), "a forged line:\n{log}");
    }
    assert!(log.contains("FORGED"), "the review was logged:\n{log}");
}

// ---------------------------------------------------------------------------------------
// Licenses and duplicate crates (the offline half of deny.toml)

/// SPDX identifiers a dependency may be licensed under (deny.toml `[licenses] allow`).
const ALLOWED_LICENSES: &[&str] = &[
    "Apache-2.0",
    "BSD-3-Clause",
    "ISC",
    "MIT",
    "Unicode-3.0",
    "Zlib",
];

/// Crates that may be in the graph in two versions, and why (deny.toml `[bans] skip`). A new
/// duplicate fails the test, and so does an entry that is no longer needed: look at
/// `cargo tree -d --target all -e normal,build,dev` and either unify the versions or list the
/// crate here with the reason.
const ALLOWED_DUPLICATES: &[(&str, &str)] = &[
    (
        "base64",
        "0.22 is ours and k8s-openapi's; 0.23 comes with rcgen through pem",
    ),
    ("getrandom", "0.2 via ring; 0.4 via tempfile and proptest"),
    (
        "syn",
        "2 for lrlex/lrpar (promql-parser) and several derives; 3 for serde, clap, tokio derives",
    ),
    (
        "unicode-width",
        "0.1 via lrpar; 0.2 via getopts, a build dependency of lrlex",
    ),
    (
        "windows-sys",
        "Windows only: 0.52 via ring, 0.61 via everything else",
    ),
];

/// Whether an SPDX expression (`A OR B`, `A AND B`, `A WITH E`, parentheses, and the old
/// `A/B` for OR) is satisfied by the allowed identifiers.
fn license_allowed(expression: &str) -> bool {
    let spaced = expression
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace('/', " OR ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut at = 0;
    let ok = or_expr(&tokens, &mut at);
    ok && at == tokens.len()
}

fn or_expr(tokens: &[&str], at: &mut usize) -> bool {
    let mut ok = and_expr(tokens, at);
    while tokens.get(*at) == Some(&"OR") {
        *at += 1;
        ok |= and_expr(tokens, at);
    }
    ok
}

fn and_expr(tokens: &[&str], at: &mut usize) -> bool {
    let mut ok = atom(tokens, at);
    while tokens.get(*at) == Some(&"AND") {
        *at += 1;
        ok &= atom(tokens, at);
    }
    ok
}

fn atom(tokens: &[&str], at: &mut usize) -> bool {
    match tokens.get(*at) {
        Some(&"(") => {
            *at += 1;
            let ok = or_expr(tokens, at);
            if tokens.get(*at) == Some(&")") {
                *at += 1;
                ok
            } else {
                false
            }
        }
        Some(id) => {
            *at += 1;
            let mut id = id.to_string();
            if tokens.get(*at) == Some(&"WITH") {
                id = format!("{id} WITH {}", tokens.get(*at + 1).unwrap_or(&""));
                *at += 2;
            }
            ALLOWED_LICENSES.contains(&id.as_str())
        }
        None => false,
    }
}

#[test]
fn license_expressions_are_evaluated() {
    for yes in [
        "MIT",
        "MIT OR Apache-2.0",
        "MIT/Apache-2.0",
        "(MIT OR Apache-2.0) AND Unicode-3.0",
        "Apache-2.0 WITH LLVM-exception OR MIT",
        "MIT OR Apache-2.0 OR LGPL-2.1-or-later",
    ] {
        assert!(license_allowed(yes), "{yes}");
    }
    for no in [
        "GPL-3.0",
        "MIT AND GPL-3.0",
        "",
        "(MIT",
        "LGPL-2.1-or-later",
        "Apache-2.0 WITH Nonsense",
    ] {
        assert!(!license_allowed(no), "{no}");
    }
}

#[test]
fn dependencies_have_allowed_licenses_and_no_new_duplicates() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // A build fetches only the crates of this platform; the graph below spans every platform
    // (android_system_properties, windows-sys). `cargo fetch` brings the rest from the registry
    // once (a no-op when all of Cargo.lock is already here), so what follows can be --offline
    // and does not depend on what an earlier build on this machine happened to download.
    let out = std::process::Command::new(&cargo)
        .args(["fetch", "--locked"])
        .current_dir(support::root())
        .output()
        .expect("running cargo fetch");
    assert!(out.status.success(), "{}", support::describe(&out));
    let out = std::process::Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .current_dir(support::root())
        .output()
        .expect("running cargo metadata");
    assert!(out.status.success(), "{}", support::describe(&out));
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let in_graph: BTreeSet<&str> = metadata["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    let mut refused = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        if !in_graph.contains(package["id"].as_str().unwrap()) {
            continue;
        }
        let name = package["name"].as_str().unwrap();
        let version = package["version"].as_str().unwrap();
        if name == "promfed" {
            continue;
        }
        match package["license"].as_str() {
            Some(license) if license_allowed(license) => {}
            Some(license) => refused.push(format!("{name} {version}: {license}")),
            None => refused.push(format!(
                "{name} {version}: no SPDX license (license-file only)"
            )),
        }
    }
    assert!(
        refused.is_empty(),
        "licenses not on the allow-list (tests/it/security.rs, deny.toml):\n{}",
        refused.join("\n")
    );

    // Duplicates in the graph that is built: `cargo metadata`'s resolve also lists optional
    // dependencies no feature turns on (yasna's bit-vec 0.9, say), which are never compiled;
    // `cargo tree` (and cargo-deny) see only what is.
    let out = std::process::Command::new(&cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "--target",
            "all",
            "-e",
            "normal,build,dev",
        ])
        .args(["--prefix", "none", "-f", "{p}"])
        .current_dir(support::root())
        .output()
        .expect("running cargo tree");
    assert!(out.status.success(), "{}", support::describe(&out));
    let tree = String::from_utf8(out.stdout).unwrap();
    let mut built: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for line in tree.lines() {
        let mut words = line.split_whitespace();
        if let (Some(name), Some(version)) = (words.next(), words.next()) {
            built.entry(name).or_default().insert(version);
        }
    }
    let duplicates: BTreeMap<&str, &BTreeSet<&str>> = built
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, v)| (*k, v))
        .collect();
    let allowed: BTreeSet<&str> = ALLOWED_DUPLICATES.iter().map(|(name, _)| *name).collect();
    let new: Vec<String> = duplicates
        .iter()
        .filter(|(name, _)| !allowed.contains(*name))
        .map(|(name, v)| {
            format!(
                "{name}: {}",
                v.iter().copied().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        new.is_empty(),
        "new duplicate crate versions (unify them, or allow them with a reason in ALLOWED_DUPLICATES and deny.toml):\n{}",
        new.join("\n")
    );
    let stale: Vec<&str> = allowed
        .iter()
        .copied()
        .filter(|name| !duplicates.contains_key(name))
        .collect();
    assert!(
        stale.is_empty(),
        "no longer duplicated, remove from ALLOWED_DUPLICATES and deny.toml: {stale:?}"
    );
}

/// deny.toml says the same as the constants above.
#[test]
fn deny_toml_matches_the_offline_check() {
    let text = std::fs::read_to_string(support::root().join("deny.toml")).unwrap();
    for license in ALLOWED_LICENSES {
        assert!(
            text.contains(&format!("\"{license}\"")),
            "{license} missing from deny.toml"
        );
    }
    for (name, _) in ALLOWED_DUPLICATES {
        assert!(
            text.contains(&format!("crate = \"{name}\"")),
            "{name} missing from deny.toml [bans] skip"
        );
    }
}
