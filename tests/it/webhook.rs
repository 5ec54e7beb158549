//! The webhook in-process: `promfed::server::router` driven with `tower::ServiceExt::oneshot`,
//! one test per kind of review. Over real TLS with the binary: `webhook_tls.rs`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use promfed::Engine;
use promfed::admission::{API_VERSION, Admission, MAX_BODY_BYTES};
use promfed::server::{AppState, metrics_router, router};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support;
use crate::support::examples::{engine, example_config, rendered, tkg_configmap};
use crate::support::review::{applied, decoded_patch, review};

// ---------------------------------------------------------------------------------------
// In-process driver

struct Hook {
    state: AppState,
    engine: Engine,
}

impl Hook {
    fn new(config: &str) -> Hook {
        let state = AppState::new(Admission::new(engine(config), 1));
        Hook {
            state,
            engine: engine(config),
        }
    }

    fn example() -> Hook {
        Hook::new(promfed::config::EXAMPLE)
    }

    /// POST raw bytes to /mutate: (HTTP status, body text).
    async fn post_bytes(&self, body: Vec<u8>) -> (StatusCode, String) {
        let request = Request::post("/mutate")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// POST a review that must be answered with 200: the `response` object.
    async fn post(&self, review: &Value) -> Value {
        let (status, body) = self.post_bytes(serde_json::to_vec(review).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let answer: Value = serde_json::from_str(&body).expect("response is JSON");
        assert_eq!(answer["apiVersion"], API_VERSION);
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(
            answer["response"]["uid"], review["request"]["uid"],
            "the response carries the request's uid"
        );
        answer["response"].clone()
    }

    async fn get_metrics(&self, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = metrics_router(self.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }
}

/// A response that lets the object through untouched.
fn assert_passed(response: &Value) {
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("patch").is_none(), "{response}");
    assert!(response.get("patchType").is_none(), "{response}");
    assert!(response.get("status").is_none(), "{response}");
}

/// A recording rule file whose second rule is not PromQL.
const BROKEN_RULES: &str = "\
groups:
- name: node.rules
  rules:
  - record: instance:up:sum
    expr: sum by (instance) (up)
  - record: broken:rate5m
    expr: sum(rate(node_cpu_seconds_total[5m])
";

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn tkg_configmap_is_patched_to_the_engine_output() {
    let hook = Hook::example();
    let object = tkg_configmap();
    let response = hook
        .post(&review("uid-tkg", "CREATE", "ConfigMap", &object))
        .await;
    assert_eq!(response["allowed"], true);
    let patch = decoded_patch(&response).expect("the TKG ConfigMap is rewritten");
    assert!(!patch.0.is_empty());
    assert_eq!(applied(&object, &patch), rendered(&hook.engine, &object));
    let summary = response["auditAnnotations"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("mutated: "), "{summary}");
}

#[tokio::test]
async fn update_is_patched_like_create() {
    let hook = Hook::example();
    let object = tkg_configmap();
    let response = hook
        .post(&review("uid-update", "UPDATE", "ConfigMap", &object))
        .await;
    let patch = decoded_patch(&response).expect("patched");
    assert_eq!(applied(&object, &patch), rendered(&hook.engine, &object));
}

#[tokio::test]
async fn rendered_configmap_is_unchanged_no_patch_no_patch_type() {
    let hook = Hook::example();
    let rendered = rendered(&hook.engine, &tkg_configmap());
    let response = hook
        .post(&review("uid-again", "UPDATE", "ConfigMap", &rendered))
        .await;
    assert_passed(&response);
    let summary = response["auditAnnotations"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("unchanged: 0 of "), "{summary}");
}

#[tokio::test]
async fn same_data_again_is_answered_from_the_cache_with_its_own_uid() {
    let hook = Hook::example();
    let object = tkg_configmap();
    let first = hook
        .post(&review("uid-1", "CREATE", "ConfigMap", &object))
        .await;
    let second = hook
        .post(&review("uid-2", "UPDATE", "ConfigMap", &object))
        .await;
    assert_eq!(first["patch"], second["patch"]);
    assert_eq!(hook.state.admission().cached(), 1);
    let (_, metrics) = hook.get_metrics("/metrics").await;
    assert!(
        metrics.contains("promfed_review_cache_total{result=\"hit\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("promfed_review_cache_total{result=\"miss\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn dry_run_is_answered_the_same() {
    let hook = Hook::example();
    let object = tkg_configmap();
    let mut dry = review("uid-dry", "CREATE", "ConfigMap", &object);
    dry["request"]["dryRun"] = json!(true);
    let response = hook.post(&dry).await;
    let patch = decoded_patch(&response).expect("patched");
    assert_eq!(applied(&object, &patch), rendered(&hook.engine, &object));
}

#[tokio::test]
async fn configmap_with_the_labels_but_no_prometheus_config_passes() {
    let hook = Hook::example();
    let mut object = tkg_configmap();
    object["metadata"]["name"] = json!("grafana-dashboards");
    object["data"] = json!({"node.json": "{}"});
    assert_passed(
        &hook
            .post(&review("u", "CREATE", "ConfigMap", &object))
            .await,
    );
}

#[tokio::test]
async fn configmap_without_the_selector_labels_passes() {
    let hook = Hook::example();
    let mut object = tkg_configmap();
    object["metadata"]["labels"] = json!({"app": "prometheus"});
    assert_passed(
        &hook
            .post(&review("u", "CREATE", "ConfigMap", &object))
            .await,
    );
}

#[tokio::test]
async fn other_kind_with_the_same_name_passes() {
    let hook = Hook::example();
    let mut object = tkg_configmap();
    object["kind"] = json!("Secret");
    assert_passed(&hook.post(&review("u", "CREATE", "Secret", &object)).await);
}

#[tokio::test]
async fn delete_passes() {
    let hook = Hook::example();
    let response = hook
        .post(&review("u-del", "DELETE", "ConfigMap", &tkg_configmap()))
        .await;
    assert_passed(&response);
}

#[tokio::test]
async fn connect_passes() {
    let hook = Hook::example();
    let response = hook
        .post(&review("u-con", "CONNECT", "ConfigMap", &tkg_configmap()))
        .await;
    assert_passed(&response);
}

#[tokio::test]
async fn broken_promql_is_denied_with_422_naming_key_group_and_rule() {
    let hook = Hook::example();
    let mut object = tkg_configmap();
    object["data"]["recording_rules.yml"] = json!(BROKEN_RULES);
    let response = hook
        .post(&review("u-broken", "CREATE", "ConfigMap", &object))
        .await;
    assert_eq!(response["allowed"], false, "{response}");
    assert!(response.get("patch").is_none());
    assert_eq!(response["status"]["code"], 422);
    let message = response["status"]["message"].as_str().unwrap();
    for part in ["recording_rules.yml", "node.rules", "broken:rate5m"] {
        assert!(message.contains(part), "{part:?} missing from {message:?}");
    }
    // The same input again is refused from the cache, identically.
    let again = hook
        .post(&review("u-broken-2", "UPDATE", "ConfigMap", &object))
        .await;
    assert_eq!(again["status"], response["status"]);
}

#[tokio::test]
async fn configmap_without_data_passes() {
    // No Prometheus config in it: not a server's ConfigMap (the webhook's matchConditions do
    // not send it either).
    let hook = Hook::example();
    let mut object = tkg_configmap();
    object.as_object_mut().unwrap().remove("data");
    assert_passed(
        &hook
            .post(&review("u", "CREATE", "ConfigMap", &object))
            .await,
    );
}

#[tokio::test]
async fn configmap_of_another_release_name_is_federated() {
    // The chart names the ConfigMap `<release>-prometheus-server` for a release "monitoring".
    let hook = Hook::example();
    let mut object = tkg_configmap();
    object["metadata"]["name"] = json!("monitoring-prometheus-server");
    let response = hook
        .post(&review("u", "CREATE", "ConfigMap", &object))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    assert!(decoded_patch(&response).is_some(), "{response}");
}

#[tokio::test]
async fn many_warnings_are_capped_with_a_count_of_the_rest() {
    let hook = Hook::example();
    let mut rules = String::from("groups:\n- name: pinned\n  rules:\n");
    for i in 0..25 {
        rules.push_str(&format!(
            "  - record: pinned:up{i}\n    expr: sum(up{{cluster=\"other\", job=\"j{i}\"}})\n"
        ));
    }
    let mut object = tkg_configmap();
    object["data"]["recording_rules.yml"] = json!(rules);
    let response = hook
        .post(&review("u-warn", "CREATE", "ConfigMap", &object))
        .await;
    assert_eq!(response["allowed"], true, "{response}");
    let warnings = response["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 20, "{warnings:?}");
    assert_eq!(warnings[19], "... and 6 more warnings");
    assert!(
        warnings[0].as_str().unwrap().contains("pinned"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn malformed_reviews_are_400_with_a_message() {
    let hook = Hook::example();
    let good = review("u", "CREATE", "ConfigMap", &tkg_configmap());
    let without = |path: &[&str]| {
        let mut v = good.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut v;
        for p in parents {
            at = &mut at[*p];
        }
        at.as_object_mut().unwrap().remove(*last);
        serde_json::to_vec(&v).unwrap()
    };
    let with = |path: &[&str], value: Value| {
        let mut v = good.clone();
        let mut at = &mut v;
        for p in path {
            at = &mut at[*p];
        }
        *at = value;
        serde_json::to_vec(&v).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not JSON",
            b"apiVersion: admission.k8s.io/v1".to_vec(),
            "malformed",
        ),
        ("empty body", Vec::new(), "malformed"),
        ("JSON array", b"[1, 2]".to_vec(), "malformed"),
        ("no request", without(&["request"]), "no request"),
        ("no uid", without(&["request", "uid"]), "uid"),
        ("empty uid", with(&["request", "uid"], json!("")), "uid"),
        (
            "v1beta1",
            with(&["apiVersion"], json!("admission.k8s.io/v1beta1")),
            "admission.k8s.io/v1",
        ),
        (
            "wrong kind",
            with(&["kind"], json!("TokenReview")),
            "AdmissionReview",
        ),
    ];
    for (name, body, expect) in cases {
        let (status, text) = hook.post_bytes(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {text}");
        assert!(
            text.contains(expect),
            "{name}: {expect:?} missing from {text:?}"
        );
    }
    let (_, metrics) = hook.get_metrics("/metrics").await;
    assert!(
        metrics.contains("promfed_reviews_total{outcome=\"invalid\"} 8"),
        "{metrics}"
    );
}

#[tokio::test]
async fn body_of_3_mib_is_read_and_one_byte_more_is_413() {
    let hook = Hook::example();
    let body =
        serde_json::to_vec(&review("u-big", "CREATE", "ConfigMap", &tkg_configmap())).unwrap();
    // JSON allows trailing whitespace: pad a real review to exactly the limit.
    let mut padded = body.clone();
    padded.resize(MAX_BODY_BYTES, b' ');
    let (status, text) = hook.post_bytes(padded.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    padded.push(b' ');
    let (status, text) = hook.post_bytes(padded).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(text.contains("larger than"), "{text}");
}

#[tokio::test]
async fn patch_on_the_wire_is_a_base64_string() {
    let hook = Hook::example();
    let request = review("u-wire", "CREATE", "ConfigMap", &tkg_configmap());
    let (status, text) = hook.post_bytes(serde_json::to_vec(&request).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    // Look at the bytes, not at a decoded struct: `"patch":[` is what kube-core would send.
    assert!(text.contains(r#""patchType":"JSONPatch""#), "{text}");
    let start = text.find(r#""patch":""#).expect("patch is a JSON string") + 9;
    let end = start + text[start..].find('"').unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&text[start..end])
        .expect("standard base64 with padding");
    let ops: Value = serde_json::from_slice(&decoded).unwrap();
    assert!(ops.as_array().is_some_and(|ops| !ops.is_empty()), "{ops}");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let hook = Hook::example();
    assert_eq!(hook.get_metrics("/healthz").await.0, StatusCode::OK);
    assert_eq!(
        hook.get_metrics("/readyz").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    hook.state.set_ready(true);
    assert_eq!(hook.get_metrics("/readyz").await.0, StatusCode::OK);

    let object = tkg_configmap();
    hook.post(&review("a", "CREATE", "ConfigMap", &object))
        .await;
    hook.post(&review("b", "DELETE", "ConfigMap", &object))
        .await;
    let (status, text) = hook.get_metrics("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "promfed_reviews_total{outcome=\"mutated\"} 1",
        "promfed_reviews_total{outcome=\"passed\"} 1",
        "promfed_review_duration_seconds_count 2",
        "promfed_patch_bytes_count 1",
        "promfed_config_generation 1",
        "promfed_build_info{version=\"",
        "# TYPE promfed_certificate_expiry_timestamp_seconds gauge",
        "promfed_config_reloads_total{result=\"failure\"} 0",
        "promfed_certificate_reloads_total{result=\"success\"} 0",
        "promfed_reviews_total{outcome=\"denied\"} 0",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
}

#[tokio::test]
async fn a_new_config_is_used_at_once_and_its_cache_starts_empty() {
    let hook = Hook::example();
    let object = tkg_configmap();
    let before = hook
        .post(&review("a", "CREATE", "ConfigMap", &object))
        .await;
    let other =
        example_config("").replace("localClusterName: shared-tools", "localClusterName: hub-b");
    hook.state.set_admission(Admission::new(engine(&other), 2));
    let after = hook
        .post(&review("b", "CREATE", "ConfigMap", &object))
        .await;
    assert_ne!(before["patch"], after["patch"]);
    let patched = applied(&object, &decoded_patch(&after).unwrap());
    assert_eq!(patched, rendered(&engine(&other), &object));
    assert!(
        patched["data"]["prometheus.yml"]
            .as_str()
            .unwrap()
            .contains("hub-b")
    );
}

#[test]
fn review_tkg_json_holds_the_tkg_configmap() {
    // tests/data/review-tkg.json was built from tests/data/tkg/prometheus-server-configmap.yaml;
    // check they still agree (through Python's YAML, the independent parser).
    let python = support::require!(python);
    let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let yaml_path = support::data("tkg/prometheus-server-configmap.yaml");
    let out = support::run(
        &python,
        &["-c".as_ref(), script.as_ref(), yaml_path.as_os_str()],
        None,
    );
    assert!(out.status.success(), "{}", support::describe(&out));
    let from_yaml: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(from_yaml, tkg_configmap());
}
