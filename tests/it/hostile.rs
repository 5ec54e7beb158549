//! Hostile input: one table of requests that promfed must refuse (or pass) with a precise
//! answer, run in-process through `router()` and against the real binary over TLS, where each
//! answer is timed and the process's memory is read afterwards. Then memory under concurrent
//! large reviews, a trickled body, the config-side case (a federation target without a cluster
//! label is a refused reload) and a raw `/federate` job in the ConfigMap, the fuzz regressions
//! (`fuzz/regressions/<target>/*`, replayed through the fuzz targets' own code) and the
//! property tests of the review path.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt as _;
use promfed::admission::{API_VERSION, Admission, MAX_BODY_BYTES, Outcome};
use promfed::server::{AppState, router};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::examples::{engine, rendered, tkg_configmap};
use crate::support::review::{applied, decoded_patch, review};
use crate::support::serve::{Files, Server};
use crate::support::{self, Mount, require, wait_until};

/// The fuzz targets' bodies and oracles (`fuzz/src/lib.rs`), shared with `cargo fuzz`.
#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod fuzz_targets;

/// Resident memory the server may reach while answering the whole table.
const MAX_RSS_MIB: f64 = 200.0;

// ---------------------------------------------------------------------------------------
// The table

/// What a row must be answered with.
#[derive(Debug, Clone)]
enum Want {
    /// An HTTP error whose text names every part.
    Refused(u16, Vec<&'static str>),
    /// 200, `allowed: false`, code 422, a message naming every part.
    Denied(Vec<&'static str>),
    /// 200, allowed, no patch.
    Passed,
    /// 200, allowed, a patch, and a warning naming every part (none: no warning needed).
    Patched(Vec<&'static str>),
}

struct Row {
    name: &'static str,
    body: Vec<u8>,
    want: Want,
}

fn row(name: &'static str, body: Vec<u8>, want: Want) -> Row {
    Row { name, body, want }
}

fn bytes(review: &Value) -> Vec<u8> {
    serde_json::to_vec(review).unwrap()
}

/// The TKG ConfigMap reviewed (UPDATE: object and oldObject) with `data[key]` replaced by
/// `value`.
fn with_data(key: &str, value: Value) -> Vec<u8> {
    let mut object = tkg_configmap();
    object["data"][key] = value;
    bytes(&review("hostile", "UPDATE", "ConfigMap", &object))
}

/// The same as a CREATE: the object once, for large values.
fn created_with_data(key: &str, value: Value) -> Vec<u8> {
    let mut object = tkg_configmap();
    object["data"][key] = value;
    bytes(&review("hostile", "CREATE", "ConfigMap", &object))
}

/// A rule file of one group `hostile` holding `rule` (YAML, indented for the list).
fn rule_file(rule: &str) -> String {
    format!("groups:\n- name: hostile\n  rules:\n{rule}")
}

/// A recording rule `hostile:rule` with `expr` as a double-quoted YAML string.
fn recording_rule(expr: &str) -> String {
    rule_file(&format!(
        "  - record: hostile:rule\n    expr: {}\n",
        serde_json::to_string(expr).unwrap()
    ))
}

/// The good review with `edit` applied to its JSON.
fn edited(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = review("hostile", "UPDATE", "ConfigMap", &tkg_configmap());
    edit(&mut v);
    bytes(&v)
}

/// The legacy federation job, a raw job of the ConfigMap's own prometheus.yml.
const LEGACY_FEDERATE: &str = "- job_name: legacy-federate\n  metrics_path: /federate\n  honor_labels: true\n  static_configs:\n  - targets: [old-hub:9090]\n";

/// `prometheus_yml` (whose scrape_configs list is not indented) with [`LEGACY_FEDERATE`] first.
fn with_legacy_federate_job(prometheus_yml: &str) -> String {
    assert!(prometheus_yml.contains("\nscrape_configs:\n- "));
    prometheus_yml.replacen(
        "\nscrape_configs:\n",
        &format!("\nscrape_configs:\n{LEGACY_FEDERATE}"),
        1,
    )
}

/// "Billion laughs": nine levels of nine aliases, 9^9 nodes once expanded.
fn alias_bomb() -> String {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..=9 {
        let prev = format!("*a{}", level - 1);
        let items = [prev.as_str(); 9].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
    }
    text.push_str("groups:\n- name: laughs\n  rules: *a9\n");
    text
}

fn table() -> Vec<Row> {
    use Want::*;
    assert_eq!(
        MAX_BODY_BYTES,
        3 * 1024 * 1024,
        "the 413 row names the limit"
    );
    let deep_flow = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let deep_block = format!("groups:\n{}x\n", "- ".repeat(20_000));
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let parens = format!("{}up{}", "(".repeat(5_000), ")".repeat(5_000));
    let operators = |n: usize| vec!["up"; n + 1].join(" + ");
    let mut invalid_utf8 = with_data("notes.txt", json!("MARK"));
    let at = invalid_utf8.windows(4).position(|w| w == b"MARK").unwrap();
    invalid_utf8.splice(at..at + 4, [0xff, 0xfe, b'a', 0xc3]);
    let mut eight_mib = bytes(&review("big", "UPDATE", "ConfigMap", &tkg_configmap()));
    eight_mib.resize(8 * 1024 * 1024, b' ');
    let legacy_federation =
        with_legacy_federate_job(tkg_configmap()["data"]["prometheus.yml"].as_str().unwrap());
    let deep_json = String::from_utf8(bytes(&review(
        "hostile",
        "UPDATE",
        "ConfigMap",
        &tkg_configmap(),
    )))
    .unwrap()
    .replacen(
        "\"object\":{",
        &format!("\"object\":{{\"deep\":{deep_json},"),
        1,
    );

    vec![
        // Not an AdmissionReview at all: 400 with the reason.
        row(
            "empty body",
            Vec::new(),
            Refused(400, vec!["malformed AdmissionReview", "EOF while parsing"]),
        ),
        row(
            "not JSON",
            b"apiVersion: admission.k8s.io/v1\n".to_vec(),
            Refused(400, vec!["malformed AdmissionReview", "expected value"]),
        ),
        row(
            "a JSON array",
            b"[1, 2, 3]".to_vec(),
            Refused(
                400,
                vec!["malformed AdmissionReview", "invalid type: sequence"],
            ),
        ),
        row(
            "JSON nested 100,000 deep in the object",
            deep_json.into_bytes(),
            Refused(400, vec!["malformed AdmissionReview", "recursion limit"]),
        ),
        row(
            "invalid UTF-8 in a string",
            invalid_utf8,
            Refused(
                400,
                vec!["malformed AdmissionReview", "invalid unicode code point"],
            ),
        ),
        row(
            "a lone UTF-16 surrogate escape",
            String::from_utf8(with_data("notes.txt", json!("MARK")))
                .unwrap()
                .replace("MARK", "\\ud800")
                .into_bytes(),
            Refused(400, vec!["malformed AdmissionReview", "hex escape"]),
        ),
        row(
            "no request",
            edited(|v| {
                v.as_object_mut().unwrap().remove("request");
            }),
            Refused(400, vec!["no request"]),
        ),
        row(
            "no uid",
            edited(|v| {
                v["request"].as_object_mut().unwrap().remove("uid");
            }),
            Refused(400, vec!["missing field `uid`"]),
        ),
        row(
            "uid of the wrong type",
            edited(|v| v["request"]["uid"] = json!(7)),
            Refused(400, vec!["malformed AdmissionReview", "invalid type"]),
        ),
        row(
            "apiVersion v1beta1",
            edited(|v| v["apiVersion"] = json!("admission.k8s.io/v1beta1")),
            Refused(
                400,
                vec!["admission.k8s.io/v1beta1", "admissionReviewVersions: [v1]"],
            ),
        ),
        row(
            "kind TokenReview",
            edited(|v| v["kind"] = json!("TokenReview")),
            Refused(
                400,
                vec!["TokenReview", "promfed answers kind AdmissionReview"],
            ),
        ),
        row(
            "8 MiB body",
            eight_mib,
            Refused(413, vec!["larger than 3145728 bytes"]),
        ),
        // Not promfed's business: allowed untouched.
        row(
            "a Secret named prometheus-server with the labels",
            {
                let mut object = tkg_configmap();
                object["kind"] = json!("Secret");
                bytes(&review("hostile", "UPDATE", "Secret", &object))
            },
            Passed,
        ),
        // The ConfigMap promfed rewrites, with data it cannot rewrite: a denial naming the key
        // (and the group and rule) and the reason.
        row(
            "a data value that is a number",
            with_data("prometheus.yml", json!(5)),
            Denied(vec!["\"prometheus.yml\"", "does not hold a string"]),
        ),
        row(
            "a data value that is a map",
            with_data("recording_rules.yml", json!({"groups": []})),
            Denied(vec!["\"recording_rules.yml\"", "does not hold a string"]),
        ),
        // No Prometheus config key, so not a server's ConfigMap: let through untouched, as the
        // webhook's matchConditions would (the API server, which decodes data as a map, never
        // sends this).
        row(
            "data that is a list",
            edited(|v| v["request"]["object"]["data"] = json!(["a"])),
            Passed,
        ),
        row(
            "prometheus.yml that is not YAML",
            with_data("prometheus.yml", json!("scrape_configs: [unclosed\n")),
            Denied(vec!["prometheus.yml (line 2)", "not valid YAML"]),
        ),
        row(
            "prometheus.yml that is a list",
            with_data("prometheus.yml", json!("- a\n- b\n")),
            Denied(vec!["prometheus.yml", "must be a mapping"]),
        ),
        row(
            "scrape_configs that is a string",
            with_data("prometheus.yml", json!("scrape_configs: all of them\n")),
            Denied(vec!["prometheus.yml", "scrape_configs must be a list"]),
        ),
        row(
            "a scrape config without job_name",
            with_data(
                "prometheus.yml",
                json!("scrape_configs:\n- static_configs: []\n"),
            ),
            Denied(vec!["prometheus.yml", "line 2", "no job_name"]),
        ),
        row(
            "relabel_configs that is a map",
            with_data(
                "prometheus.yml",
                json!("scrape_configs:\n- job_name: x\n  relabel_configs: {a: b}\n"),
            ),
            Denied(vec![
                "prometheus.yml",
                "job \"x\"",
                "relabel_configs must be a list",
            ]),
        ),
        row(
            "a rule without expr",
            with_data(
                "recording_rules.yml",
                json!(rule_file("  - record: hostile:rule\n")),
            ),
            Denied(vec![
                "recording_rules.yml",
                "group \"hostile\"",
                "record \"hostile:rule\"",
                "no expr",
            ]),
        ),
        row(
            "a rule with record and alert",
            with_data(
                "recording_rules.yml",
                json!(rule_file("  - record: a\n    alert: b\n    expr: up\n")),
            ),
            Denied(vec![
                "recording_rules.yml",
                "group \"hostile\"",
                "exactly one of",
            ]),
        ),
        row(
            "broken PromQL",
            with_data(
                "recording_rules.yml",
                json!(recording_rule("sum(rate(x[5m])")),
            ),
            Denied(vec![
                "recording_rules.yml",
                "group \"hostile\"",
                "record \"hostile:rule\"",
                "cannot parse PromQL",
            ]),
        ),
        row(
            "an alias bomb in a rule file",
            with_data("recording_rules.yml", json!(alias_bomb())),
            Denied(vec![
                "recording_rules.yml",
                "over promfed's work budget",
                "nodes (for a review of",
                "(alias bomb?)",
            ]),
        ),
        row(
            "20,000 levels of flow nesting in prometheus.yml",
            with_data("prometheus.yml", json!(deep_flow)),
            Denied(vec!["prometheus.yml", "nesting deeper than 100"]),
        ),
        row(
            "20,000 levels of block nesting in a rule file",
            with_data("recording_rules.yml", json!(deep_block)),
            Denied(vec!["recording_rules.yml", "nesting deeper than 100"]),
        ),
        row(
            "5,000 levels of PromQL parentheses",
            with_data("recording_rules.yml", json!(recording_rule(&parens))),
            Denied(vec![
                "recording_rules.yml",
                "record \"hostile:rule\"",
                "nests deeper than 256",
            ]),
        ),
        row(
            "1,001 PromQL operators",
            with_data(
                "recording_rules.yml",
                json!(recording_rule(&operators(1001))),
            ),
            Denied(vec![
                "recording_rules.yml",
                "record \"hostile:rule\"",
                "more than 1000 operators",
            ]),
        ),
        row(
            "an invalid regex",
            with_data(
                "recording_rules.yml",
                json!(recording_rule("up{job=~\"(a\"}")),
            ),
            Denied(vec![
                "recording_rules.yml",
                "record \"hostile:rule\"",
                "cannot parse PromQL",
                "illegal regex",
            ]),
        ),
        row(
            "a NUL byte in prometheus.yml",
            with_data("prometheus.yml", json!("global: {}\u{0}\n")),
            Denied(vec!["prometheus.yml", "control character U+0000"]),
        ),
        row(
            "a NUL byte in a rule expression",
            with_data("recording_rules.yml", json!(recording_rule("up\u{0}"))),
            Denied(vec![
                "recording_rules.yml",
                "record \"hostile:rule\"",
                "unexpected character",
            ]),
        ),
        // Hostile but rewritable: answered with a patch, in time.
        row(
            "1,000 PromQL operators (the limit)",
            with_data(
                "recording_rules.yml",
                json!(recording_rule(&operators(1000))),
            ),
            Patched(vec![]),
        ),
        row(
            "1,000 unary minus signs",
            with_data(
                "recording_rules.yml",
                json!(recording_rule(&format!("{}up", "- ".repeat(1000)))),
            ),
            Patched(vec![]),
        ),
        row(
            "1,000 right-associative powers",
            with_data(
                "recording_rules.yml",
                json!(recording_rule(&vec!["up"; 1001].join(" ^ "))),
            ),
            Patched(vec![]),
        ),
        row(
            "the deepest AST allowed: 255 brackets and 1,000 operators",
            with_data(
                "recording_rules.yml",
                json!(recording_rule(&format!(
                    "{}{}up{}",
                    "-(".repeat(255),
                    "- ".repeat(745),
                    ")".repeat(255)
                ))),
            ),
            Patched(vec![]),
        ),
        row(
            "255 levels of PromQL parentheses",
            with_data(
                "recording_rules.yml",
                json!(recording_rule(&format!(
                    "{}up{}",
                    "(".repeat(255),
                    ")".repeat(255)
                ))),
            ),
            Patched(vec![]),
        ),
        // A pattern whose program would be huge is refused, as Prometheus refuses it; its
        // compilation stops at the regex crate's size limit.
        row(
            "a regex whose program would be huge",
            with_data(
                "recording_rules.yml",
                json!(recording_rule("up{job=~\"((a{100}){100}){100}\"}")),
            ),
            Denied(vec!["recording_rules.yml", "illegal regex"]),
        ),
        row(
            "a NUL byte in a key promfed does not read",
            with_data("notes.txt", json!("a\u{0}b")),
            Patched(vec![]),
        ),
        row(
            "a raw job scraping /federate that is not promfed's",
            with_data("prometheus.yml", json!(legacy_federation)),
            Patched(vec![
                "prometheus.yml",
                "job \"legacy-federate\"",
                "scrapes /federate but is not a federation job",
                "left as is",
            ]),
        ),
    ]
}

/// Check one answer against its row; `Err` says what is wrong.
fn judge(row: &Row, status: u16, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    let names_all = |message: &str, parts: &[&str]| -> Result<(), String> {
        match parts.iter().find(|p| !message.contains(**p)) {
            Some(missing) => Err(format!("{missing:?} missing from {message:?}")),
            None => Ok(()),
        }
    };
    let response = || -> Result<Value, String> {
        if status != 200 {
            return Err(format!("HTTP {status}: {text}"));
        }
        let answer: Value = serde_json::from_slice(body).map_err(|e| format!("{e}: {text}"))?;
        if answer["apiVersion"] != API_VERSION
            || answer["response"]["uid"] != "hostile" && answer["response"]["uid"] != "big"
        {
            return Err(format!("not a response to this review: {text}"));
        }
        Ok(answer["response"].clone())
    };
    match &row.want {
        Want::Refused(want, parts) => {
            if status != *want {
                return Err(format!("HTTP {status}, want {want}: {text}"));
            }
            names_all(&text, parts)
        }
        Want::Denied(parts) => {
            let r = response()?;
            if r["allowed"] != false || r["status"]["code"] != 422 || r.get("patch").is_some() {
                return Err(format!("not a denial: {r}"));
            }
            names_all(r["status"]["message"].as_str().unwrap_or(""), parts)
        }
        Want::Passed => {
            let r = response()?;
            if r["allowed"] != true || r.get("patch").is_some() {
                return Err(format!("not passed untouched: {r}"));
            }
            Ok(())
        }
        Want::Patched(parts) => {
            let r = response()?;
            if r["allowed"] != true || r.get("patch").is_none() {
                return Err(format!("no patch: {r}"));
            }
            if parts.is_empty() {
                return Ok(());
            }
            let warnings: Vec<&str> = r["warnings"]
                .as_array()
                .map(|w| w.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if warnings.iter().any(|w| names_all(w, parts).is_ok()) {
                Ok(())
            } else {
                Err(format!("no warning names {parts:?}: {warnings:?}"))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The table, in-process and over TLS

async fn post_in_process(state: &AppState, body: Vec<u8>) -> (u16, Vec<u8>) {
    let request = Request::post("/mutate")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

#[tokio::test]
async fn hostile_table_in_process() {
    let state = AppState::new(Admission::new(engine(promfed::config::EXAMPLE), 1));
    let mut wrong = Vec::new();
    for row in table() {
        let started = Instant::now();
        let (status, answer) = post_in_process(&state, row.body.clone()).await;
        let took = started.elapsed();
        if let Err(why) = judge(&row, status, &answer) {
            wrong.push(format!("{}: {why} (after {took:?})", row.name));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} rows answered wrongly:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let metrics = state.metrics().encode();
    assert!(
        metrics.contains("promfed_internal_errors_total 0"),
        "{metrics}"
    );
}

#[test]
fn hostile_table_over_tls_against_the_binary() {
    let files = Files::new(promfed::config::EXAMPLE);
    let server = Server::with(&files);
    let client = files.client();
    let before = server.memory();
    let mut wrong = Vec::new();
    let mut times = Vec::new();
    for row in table() {
        let started = Instant::now();
        let result = client
            .connect(server.https)
            .and_then(|mut conn| conn.request(&row.body, true));
        let took = started.elapsed();
        times.push(format!(
            "{:>8.1} ms  {}",
            took.as_secs_f64() * 1e3,
            row.name
        ));
        match result {
            Err(e) => wrong.push(format!("{}: no answer: {e}", row.name)),
            Ok(answer) => {
                if let Err(why) = judge(&row, answer.status, &answer.body) {
                    wrong.push(format!("{}: {why}", row.name));
                }
            }
        }
    }
    // Still serving, correctly.
    let object = tkg_configmap();
    let answer = client
        .post_json(
            server.https,
            &review("after", "CREATE", "ConfigMap", &object),
        )
        .expect("the server still answers");
    let patch = decoded_patch(&answer.response()).expect("patched");
    assert_eq!(
        applied(&object, &patch),
        rendered(&engine(promfed::config::EXAMPLE), &object)
    );
    let after = server.memory();
    eprintln!(
        "hostile table over TLS (debug binary):\n{}\nRSS before {:.1} MiB, after {:.1} MiB, peak {:.1} MiB",
        times.join("\n"),
        before.rss_mib(),
        after.rss_mib(),
        after.hwm_mib()
    );
    assert!(
        wrong.is_empty(),
        "{} rows answered wrongly:\n{}\n{}",
        wrong.len(),
        wrong.join("\n"),
        server.log()
    );
    assert!(
        after.hwm_mib() < MAX_RSS_MIB,
        "peak RSS {:.1} MiB",
        after.hwm_mib()
    );
    assert_eq!(server.metric("promfed_internal_errors_total"), 0.0);
}

// ---------------------------------------------------------------------------------------
// Memory under large reviews

/// The Deployment's memory limit (deploy/base/deployment.yaml).
const POD_LIMIT_MIB: f64 = 128.0;

/// Send `bodies` at once, each on its own connection: (status, seconds) of each.
fn post_all_at_once(
    client: &crate::support::tls::Client,
    addr: std::net::SocketAddr,
    bodies: Vec<Vec<u8>>,
) -> Vec<(u16, f64)> {
    let threads: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let client = client.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let answer = client.post(addr, &body).expect("an answer");
                (answer.status, started.elapsed().as_secs_f64())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// 24 reviews of 2 MiB at once (a data key promfed does not read, so this measures the
/// request path, not the engine): the body budget queues them, memory stays under the limit.
/// One address holds at most 6 MiB of the 8 MiB budget and a review waits at most 3 s for it:
/// the reviews still waiting then are answered 429 with Retry-After (the API server's
/// max-in-flight answer), never left hanging.
#[test]
fn concurrent_2_mib_reviews_stay_under_the_pod_memory_limit() {
    let files = Files::new(promfed::config::EXAMPLE);
    let server = Server::with(&files);
    let bodies: Vec<Vec<u8>> = (0..24)
        .map(|i| {
            created_with_data(
                "notes.txt",
                json!(format!("{i:03} ").repeat(2 * 1024 * 1024 / 4 + 1)),
            )
        })
        .collect();
    assert!(bodies[0].len() > 2 * 1024 * 1024);
    let answers = post_all_at_once(&files.client(), server.https, bodies);
    let memory = server.memory();
    let slowest = answers.iter().map(|a| a.1).fold(0.0, f64::max);
    eprintln!(
        "24 concurrent 2 MiB reviews: {} answered, slowest {slowest:.2} s, peak RSS {:.1} MiB",
        answers.iter().filter(|a| a.0 == 200).count(),
        memory.hwm_mib()
    );
    assert!(
        answers.iter().all(|a| a.0 == 200 || a.0 == 429),
        "{answers:?}"
    );
    assert!(answers.iter().any(|a| a.0 == 200), "{answers:?}");
    assert!(
        memory.hwm_mib() < POD_LIMIT_MIB,
        "peak RSS {:.1} MiB",
        memory.hwm_mib()
    );
}

/// Reviews whose prometheus.yml is one flow list of short scalars: under the engine's node
/// budget for their size (20,000 nodes plus 280,000 per MiB: 90,000 scalars `ab` in 270 kB,
/// rewritten), over it (250,000 scalars `a` in 500 kB: denied once 153,000 are read), and a
/// list of 990,000 (1.9 MiB, over Kubernetes' limit for a ConfigMap: denied before it is
/// read). With the first fixed budget (1,000,000 nodes) the largest was rewritten and
/// peaked at 215 MiB (release build).
#[test]
fn reviews_of_many_yaml_nodes_stay_under_the_pod_memory_limit() {
    let files = Files::new(promfed::config::EXAMPLE);
    // About memory, not time: a debug build on a busy machine may take longer than the
    // review deadline (4 s) for the 90,000 scalars.
    let mut args = files.args();
    args.extend(["--review-deadline-ms".into(), "120000".into()]);
    let server = Server::start(&args, &[]);
    let client = files.client();
    for (scalars, each, denied) in [
        (90_000, "ab", None),
        (250_000, "a", Some("expands to more than")),
        (990_000, "a", Some("over Kubernetes' limit")),
    ] {
        let list = vec![each; scalars].join(",");
        let body = created_with_data(
            "prometheus.yml",
            json!(format!("global: {{}}\nscrape_configs: []\nx: [{list}]\n")),
        );
        let started = Instant::now();
        let answer = client.post(server.https, &body).expect("an answer");
        let took = started.elapsed();
        let response = answer.response();
        let memory = server.memory();
        eprintln!(
            "{scalars} YAML scalars: allowed {}, {took:?}, peak RSS {:.1} MiB",
            response["allowed"],
            memory.hwm_mib()
        );
        assert_eq!(response["allowed"], json!(denied.is_none()), "{response}");
        if let Some(reason) = denied {
            let message = response["status"]["message"].as_str().unwrap();
            assert!(message.contains(reason), "{message}");
        }
        assert!(
            memory.hwm_mib() < POD_LIMIT_MIB,
            "peak RSS {:.1} MiB",
            memory.hwm_mib()
        );
    }
}

/// A client that sends its headers and then trickles the body is answered 408 once the body
/// timeout passes (30 s; 5 s here), and everyone else is served meanwhile: a normal review sent
/// while four bodies trickle is answered before any of them times out (an order of events,
/// not a speed: the timeout is far longer than a review takes on a busy debug build).
#[test]
fn a_trickled_body_gets_408_and_does_not_hold_up_anyone() {
    let files = Files::new(promfed::config::EXAMPLE);
    let args: Vec<std::ffi::OsString> = files
        .args()
        .into_iter()
        .chain(["--body-timeout-ms".into(), "5000".into()])
        .collect();
    let server = Server::start(&args, &[]);
    let client = files.client();
    let body = bytes(&review("slow", "CREATE", "ConfigMap", &tkg_configmap()));
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let (client, addr, body) = (client.clone(), server.https, body.clone());
            std::thread::spawn(move || {
                let mut conn = client.connect(addr).unwrap();
                conn.send(&crate::support::tls::request_head(body.len(), true))
                    .unwrap();
                // 64 bytes every 200 ms, then nothing: the body never completes.
                for piece in body.chunks(64).take(8) {
                    if conn.send(piece).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                let answer = conn.answer().expect("an answer");
                (answer.status, answer.text(), Instant::now())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let answer = client.post(server.https, &body).unwrap();
    let normal_answered = Instant::now();
    assert!(decoded_patch(&answer.response()).is_some());
    for thread in slow {
        let (status, text, answered) = thread.join().unwrap();
        assert_eq!(status, 408, "{text}");
        assert!(text.contains("did not arrive within 5.0 s"), "{text}");
        assert!(
            normal_answered < answered,
            "the normal review was answered only after a trickled body timed out"
        );
    }
}

/// A client that writes its whole body before reading (Python's http.client here) reads the
/// 413 for an 8 MiB body, declared or chunked: promfed answers, shuts its side and reads
/// what is still coming (a lingering close) instead of resetting the connection, and keeps
/// none of it (memory stays low). Over HTTP/2 see `attacks::a_413_over_http2_is_readable`.
#[test]
fn a_413_reaches_a_client_that_writes_the_whole_body_first() {
    let python = require!(python);
    const CLIENT: &str = r#"
import http.client, ssl, sys
port, ca, framing = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False  # the chain is verified; the name is promfed's in-cluster one
conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=60)
piece = b" " * (1024 * 1024)
if framing == "chunked":
    body = (piece for _ in range(8))
    conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"},
                 encode_chunked=True)
else:
    conn.request("POST", "/mutate", body=piece * 8, headers={"Content-Type": "application/json"})
answer = conn.getresponse()
print(answer.status, answer.read().decode().strip())
"#;
    let files = Files::new(promfed::config::EXAMPLE);
    let server = Server::with(&files);
    let ca = support::temp_files(&[("ca.crt", &files.pki.ca_pem)]);
    let ca = ca.path().join("ca.crt");
    for framing in ["content-length", "chunked"] {
        for round in 0..3 {
            let out = std::process::Command::new(&python)
                .args(["-c", CLIENT, &server.https.port().to_string()])
                .arg(&ca)
                .arg(framing)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success()
                    && stdout.trim() == "413 AdmissionReview larger than 3145728 bytes",
                "{framing}, round {round}: {}",
                support::describe(&out)
            );
        }
    }
    let memory = server.memory();
    assert!(
        memory.hwm_mib() < POD_LIMIT_MIB,
        "peak RSS {:.1} MiB",
        memory.hwm_mib()
    );
    // And the server goes on answering.
    let answer = files
        .client()
        .post_json(
            server.https,
            &review("after", "CREATE", "ConfigMap", &tkg_configmap()),
        )
        .unwrap();
    assert!(decoded_patch(&answer.response()).is_some());
}

// ---------------------------------------------------------------------------------------
// A federation target without a cluster label: a config property, refused at load

/// The example config with the `random` target's cluster label renamed away.
fn unlabelled_config() -> String {
    let config = promfed::config::EXAMPLE
        .replace("labels:  { cluster: random }", "labels:  { team: random }");
    assert_ne!(config, promfed::config::EXAMPLE);
    config
}

#[test]
fn a_federation_target_without_cluster_label_is_refused_by_check_naming_job_and_targets() {
    let dir = support::temp_files(&[("promfed.yaml", &unlabelled_config())]);
    let out = std::process::Command::new(support::promfed_bin())
        .args(["check", "--config"])
        .arg(dir.path().join("promfed.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", support::describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for part in [
        "additionalScrapeConfigs[0]",
        "\"federation\"",
        "prom.random.cluster.local",
        "does not have a label \"cluster\"",
    ] {
        assert!(stderr.contains(part), "{part:?} missing from {stderr}");
    }
}

#[test]
fn a_federation_target_without_cluster_label_is_a_refused_reload_that_keeps_the_last_good_config() {
    let files = Files::new("");
    let mut mount = Mount::new(
        &files.path("config"),
        &[("promfed.yaml", promfed::config::EXAMPLE)],
    );
    let args = vec![
        "--config".into(),
        mount.path("promfed.yaml").into_os_string(),
        "--tls-cert-file".into(),
        files.path("tls.crt").into_os_string(),
        "--tls-key-file".into(),
        files.path("tls.key").into_os_string(),
    ];
    let server = Server::start(&args, &[]);
    let client = files.client();
    let object = tkg_configmap();
    let want = rendered(&engine(promfed::config::EXAMPLE), &object);
    mount.update(&[("promfed.yaml", &unlabelled_config())]);
    wait_until("the refused reload", support::HANG_GUARD, || {
        server.metric("promfed_config_reloads_total{result=\"failure\"}") == 1.0
    });
    assert_eq!(server.metric("promfed_config_generation"), 1.0);
    let answer = client
        .post_json(server.https, &review("u", "UPDATE", "ConfigMap", &object))
        .unwrap();
    assert_eq!(
        applied(&object, &decoded_patch(&answer.response()).unwrap()),
        want
    );
    let log = server.log();
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "new config rejected; keeping the last good config")
        .unwrap_or_else(|| panic!("no rejection logged:\n{log}"));
    let error = line["error"].as_str().unwrap();
    for part in [
        "additionalScrapeConfigs[0]",
        "\"federation\"",
        "prom.random.cluster.local",
        "does not have a label \"cluster\"",
    ] {
        assert!(error.contains(part), "{part:?} missing from {error}");
    }
}

/// A job in the ConfigMap's own prometheus.yml that scrapes /federate but is not in promfed's
/// config: left exactly as written (not labelled as local), with a warning; every other job is
/// rewritten as usual.
#[test]
fn a_raw_federate_job_in_the_configmap_is_left_as_is_with_a_warning() {
    let engine = engine(promfed::config::EXAMPLE);
    let mut object = tkg_configmap();
    let config = with_legacy_federate_job(object["data"]["prometheus.yml"].as_str().unwrap());
    object["data"]["prometheus.yml"] = json!(config);
    let state = AppState::new(Admission::new(engine.clone(), 1));
    let reply = state
        .admission()
        .review(&bytes(&review("u", "UPDATE", "ConfigMap", &object)));
    assert_eq!(reply.outcome, Outcome::Mutated);
    let response = &reply.json().unwrap()["response"];
    let patched = applied(&object, &decoded_patch(response).unwrap());
    assert_eq!(patched, rendered(&engine, &object));
    let parse = |text: &Value| {
        promfed::yaml::parse(text.as_str().unwrap(), promfed::yaml::Limits::default())
            .unwrap()
            .unwrap()
            .to_json()
    };
    let jobs = parse(&patched["data"]["prometheus.yml"])["scrape_configs"].clone();
    let legacy = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "legacy-federate")
        .unwrap();
    assert_eq!(
        legacy,
        &parse(&json!(LEGACY_FEDERATE))[0],
        "the raw federate job is untouched"
    );
    let warnings = response["warnings"].to_string();
    assert!(
        warnings.contains("job \\\"legacy-federate\\\""),
        "{warnings}"
    );
}

// ---------------------------------------------------------------------------------------
// Fuzz regressions

/// Run every input under `dir/<target>/` through its fuzz target: the failures, and how many
/// inputs there were.
fn replay(dir: &std::path::Path) -> (Vec<String>, usize) {
    let mut failed = Vec::new();
    let mut count = 0;
    for target in fuzz_targets::TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            let name = format!("{target}/{}", path.file_name().unwrap().to_string_lossy());
            count += 1;
            if let Err(panic) = std::panic::catch_unwind(|| fuzz_targets::run(target, &data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{name}: {message}"));
            }
        }
    }
    (failed, count)
}

/// Every input that once made a fuzz target fail (`fuzz/regressions/<target>/`), through the
/// same target code: fixed bugs stay fixed. Among them: YAML tags (verbatim, `%`-escaped) that
/// were written back in a form no YAML reader accepts, now refused when read.
#[test]
fn fuzz_regressions_replay() {
    let (failed, count) = replay(&support::root().join("fuzz/regressions"));
    assert!(count > 0, "no regression inputs");
    assert!(
        failed.is_empty(),
        "{} of {count} regression inputs fail:\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------
// Properties

/// A shared engine for the properties (the example config).
fn example_admission() -> Admission {
    Admission::new(engine(promfed::config::EXAMPLE), 1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any bytes at all get an answer: 200, 400 or 413, never a panic.
    #[test]
    fn any_bytes_get_an_answer(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let reply = example_admission().review(&body);
        prop_assert!(matches!(reply.status, 200 | 400 | 413), "status {}", reply.status);
    }

    /// Bytes that look like a review (a real one, cut and spliced with garbage).
    #[test]
    fn mangled_reviews_get_an_answer(cut in 0usize..4096, junk in prop::collection::vec(any::<u8>(), 0..64)) {
        let good = bytes(&review("p", "UPDATE", "ConfigMap", &tkg_configmap()));
        let cut = cut.min(good.len());
        let mut body = good[..cut].to_vec();
        body.extend_from_slice(&junk);
        body.extend_from_slice(&good[cut..]);
        let reply = example_admission().review(&body);
        prop_assert!(matches!(reply.status, 200 | 400 | 413), "status {}", reply.status);
    }
}

mod generated {
    //! Generated ConfigMaps (the generators of `properties.rs`): the patch applied to the object
    //! is the rendered object, and the patched object needs no further patch.

    use proptest::prelude::*;
    use serde_json::{Value as Json, json};

    use promfed::admission::{Admission, Outcome};
    use promfed::yaml::{self, Node};

    use crate::properties::{engine, prometheus_yml, rule_file, tricky_string};
    use crate::support::examples::rendered;
    use crate::support::review::{applied, decoded_patch, review};

    /// The matched ConfigMap of the fixtures, with an annotation that must be kept.
    fn configmap(data: Json) -> Json {
        let mut object = crate::support::review::configmap(data);
        object["metadata"]["annotations"] = json!({"note": "kept"});
        object
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn patch_gives_the_rendered_object_and_is_idempotent(
            config in prometheus_yml(),
            rules in rule_file(),
            other in tricky_string(),
        ) {
            let object = configmap(json!({
                "prometheus.yml": yaml::emit(&Node::from_json(&config)),
                "recording_rules.yml": yaml::emit(&Node::from_json(&rules)),
                "notes.txt": other,
            }));
            let admission = Admission::new(engine().clone(), 1);
            let reply = admission.review(&serde_json::to_vec(&review("p1", "UPDATE", "ConfigMap", &object)).unwrap());
            prop_assert_eq!(reply.status, 200);
            let response = reply.json().unwrap()["response"].clone();
            prop_assert_eq!(&response["allowed"], &json!(true), "{}", response);
            // The federation job and alerts are always added: there is always a patch.
            let patch = decoded_patch(&response).expect("a patch");
            let patched = applied(&object, &patch);
            prop_assert_eq!(&patched, &rendered(engine(), &object));
            let again = admission.review(&serde_json::to_vec(&review("p2", "UPDATE", "ConfigMap", &patched)).unwrap());
            prop_assert_eq!(again.outcome, Outcome::Unchanged, "{}", String::from_utf8_lossy(&again.body));
        }
    }
}
