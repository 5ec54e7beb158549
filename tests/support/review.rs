//! AdmissionReview fixtures: a review of an object as the API server sends it, a matched
//! prometheus-server ConfigMap, and an answer's patch decoded and applied.
//!
//! One file for every place that builds reviews: the integration tests (`support::review`), the
//! fuzz targets (`fuzz/src/lib.rs` includes it with `#[path]`) and the library's unit tests
//! (which can include it the same way, under `#[cfg(test)]`). So it names no `crate::` or
//! `promfed::` item, only serde_json, base64 and json_patch, which all of them depend on.

// Each includer uses only some of these.
#![allow(dead_code)]

use base64::Engine as _;
use serde_json::{Value, json};

/// The AdmissionReview version the API server sends (promfed's `admission::API_VERSION`, kept
/// as the literal here: the fixture says what the API server sends, not what promfed expects).
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// An AdmissionReview for `object` as the API server sends it: `kind` is the request's GVK
/// kind (its resource the lower-case plural), name and namespace come from the object's
/// metadata, `object` is null for a DELETE and `oldObject` null for a CREATE.
pub fn review(uid: &str, operation: &str, kind: &str, object: &Value) -> Value {
    let resource = format!("{}s", kind.to_lowercase());
    let meta = &object["metadata"];
    json!({
        "apiVersion": API_VERSION,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "requestKind": {"group": "", "version": "v1", "kind": kind},
            "requestResource": {"group": "", "version": "v1", "resource": resource},
            "name": meta["name"].as_str().unwrap_or(""),
            "namespace": meta["namespace"].as_str().unwrap_or("default"),
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": if operation == "DELETE" { Value::Null } else { object.clone() },
            "oldObject": if operation == "CREATE" { Value::Null } else { object.clone() },
            "dryRun": false,
        }
    })
}

/// [`review`] as the request body bytes.
pub fn review_bytes(uid: &str, operation: &str, kind: &str, object: &Value) -> Vec<u8> {
    serde_json::to_vec(&review(uid, operation, kind, object)).expect("a JSON value serialises")
}

/// A small ConfigMap promfed's default selector matches (`prometheus-server` in `monitoring`,
/// labels `app: prometheus, component: server`) holding `data`.
pub fn configmap(data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "prometheus-server",
            "namespace": "monitoring",
            "labels": {"app": "prometheus", "component": "server"},
        },
        "data": data,
    })
}

/// The decoded JSON patch of a review response, checking the wire format: `patch` must be a
/// base64 string (kube-core would write an array of numbers) and `patchType` must say
/// JSONPatch. `None` when the response has no patch.
pub fn decoded_patch(response: &Value) -> Option<json_patch::Patch> {
    let patch = response.get("patch")?;
    let text = patch
        .as_str()
        .unwrap_or_else(|| panic!("patch is not a string on the wire: {patch}"));
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("patch is base64");
    Some(serde_json::from_slice(&bytes).expect("patch is an RFC 6902 JSON array"))
}

/// `object` after `patch`.
pub fn applied(object: &Value, patch: &json_patch::Patch) -> Value {
    let mut out = object.clone();
    json_patch::patch(&mut out, patch).expect("patch applies to the request object");
    out
}

/// A ConfigMap's `data` as (key, value) pairs, in order: what the engine takes.
pub fn data_pairs(object: &Value) -> Vec<(String, String)> {
    object["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_string()))
        .collect()
}
