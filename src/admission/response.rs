//! The answer to a review: the reply sent, the engine's verdict it carries (patch, warnings,
//! audit annotation, denial) and the limits on what an answer may hold.
//!
//! The response JSON is written by hand: kube-core's `AdmissionResponse` serialises `patch` as a
//! JSON array of numbers (kube-rs#1781) where the API server wants a base64 string.

use std::fmt;

use serde_json::{Map, Value, json};

use super::review::{API_VERSION, FRAME_COST_BYTES, MAX_BODY_BYTES, ReviewInfo};

/// An answer is at most this many times its request (a real ConfigMap's is 0.6 to 1.6
/// times: the patch holds the rewritten values, base64; promfed writes YAML flow lists as
/// block lists, which can make degenerate input three times longer) ...
pub const ANSWER_FACTOR: usize = 4;
/// ... plus this (a small review's answer carries the federation jobs and alerts the config
/// adds) ...
pub const ANSWER_EXTRA_BYTES: usize = 64 * 1024;
/// ... and never more than this: the API server's own limit on a request, which the patched
/// object has to fit in.
pub const MAX_ANSWER_BYTES: usize = 3 * 1024 * 1024;
/// Warnings returned to the client; the rest are summarised in one line.
pub const MAX_WARNINGS: usize = 20;
/// Key of the audit annotation. The API server prefixes it with the webhook's name, so a webhook
/// named `promfed.io` yields `promfed.io/summary` (a key with a `/` of its own would be dropped).
pub const AUDIT_KEY: &str = "summary";

/// What happened to a review; the `outcome` label of `promfed_reviews_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A matched ConfigMap was rewritten: the answer carries a patch.
    Mutated,
    /// A matched ConfigMap needed no change.
    Unchanged,
    /// A matched ConfigMap promfed cannot rewrite: `allowed: false`, code 422.
    Denied,
    /// Not a usable AdmissionReview: HTTP 400 (or 413).
    Invalid,
    /// Not promfed's business (other object, DELETE, CONNECT): allowed untouched.
    Passed,
    /// Not answered for lack of resources: HTTP 429 or 503 with Retry-After.
    Busy,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Mutated => "mutated",
            Outcome::Unchanged => "unchanged",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::Passed => "passed",
            Outcome::Busy => "busy",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the response cache answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    Hit,
    Miss,
    /// The review never got as far as the cache (not matched, malformed).
    None,
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status: 200 for every review answered (denials included), 400/413 for malformed ones.
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub outcome: Outcome,
    /// Present once the review parsed.
    pub info: Option<ReviewInfo>,
    /// Size of the JSON patch before base64.
    pub patch_bytes: usize,
    pub warnings: usize,
    pub cache: CacheUse,
    /// Why it was invalid or where the input was refused. Safe to log: it never quotes data.
    pub detail: Option<String>,
    /// The engine panicked; the review was denied.
    pub internal_error: bool,
}

impl Reply {
    /// A request that is not a usable AdmissionReview (HTTP 400).
    pub fn invalid(message: impl Into<String>) -> Reply {
        Reply::client_error(400, message.into())
    }

    /// Like [`Reply::invalid`], but the message may quote the request (a parse error naming a
    /// value): the sender gets it whole, the log gets it with the quoted values withheld.
    pub(super) fn invalid_quoting(message: String) -> Reply {
        let detail = truncate(&crate::redact::withhold_values(&message), 200);
        let mut reply = Reply::client_error(400, message);
        reply.detail = Some(detail);
        reply
    }

    /// A failure of promfed itself outside the engine: HTTP 400 like any review it cannot
    /// answer (promfed never answers with a 5xx), counted as an internal error.
    pub fn internal(message: impl Into<String>) -> Reply {
        let mut reply = Reply::invalid(message);
        reply.internal_error = true;
        reply
    }

    /// A request body over [`MAX_BODY_BYTES`] (HTTP 413).
    pub fn too_large() -> Reply {
        Reply::client_error(
            413,
            format!("AdmissionReview larger than {MAX_BODY_BYTES} bytes"),
        )
    }

    /// A request body sent in too many pieces (HTTP 413).
    pub fn too_fragmented(pieces: usize) -> Reply {
        Reply::client_error(
            413,
            format!(
                "AdmissionReview sent in too many pieces ({pieces} chunks or frames so far; each \
                 counts {} bytes against the {MAX_BODY_BYTES}-byte limit)",
                FRAME_COST_BYTES
            ),
        )
    }

    /// A request promfed has no room for now (HTTP 429 or 503, sent with Retry-After).
    pub fn busy(status: u16, message: String) -> Reply {
        let mut reply = Reply::client_error(status, message);
        reply.outcome = Outcome::Busy;
        reply
    }

    /// A request body that did not arrive in time (HTTP 408).
    pub fn body_timeout(after: std::time::Duration) -> Reply {
        Reply::client_error(
            408,
            format!(
                "the request body did not arrive within {:.1} s",
                after.as_secs_f64()
            ),
        )
    }

    fn client_error(status: u16, message: String) -> Reply {
        let mut body = message.clone().into_bytes();
        body.push(b'\n');
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
            outcome: Outcome::Invalid,
            info: None,
            patch_bytes: 0,
            warnings: 0,
            cache: CacheUse::None,
            detail: Some(truncate(&message, 200)),
            internal_error: false,
        }
    }

    /// Decode the body as a JSON value (tests and tools).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// The outcome of the engine for one object's content, ready to be sent to any request
/// carrying the same content. This is what the cache holds.
#[derive(Debug)]
pub struct Verdict {
    pub(super) outcome: Outcome,
    /// The JSON members of `response` after `uid` (`"allowed":true,"patchType":...`).
    pub(super) members: String,
    pub(super) patch_bytes: usize,
    pub(super) warnings: usize,
    /// Where the input was refused (a [`crate::engine::Location`]), for logs.
    pub(super) denied_at: Option<String>,
}

impl Verdict {
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }
}

/// Everything known about a review except the verdict: enough to answer it.
#[derive(Debug)]
pub struct Head {
    pub(super) info: ReviewInfo,
    pub(super) cache: CacheUse,
    /// Size of the request body: the answer may be at most [`ANSWER_FACTOR`] times it.
    pub(super) request_bytes: usize,
}

impl Head {
    pub fn info(&self) -> &ReviewInfo {
        &self.info
    }

    /// The largest answer this review may get: [`ANSWER_FACTOR`] times its request plus
    /// [`ANSWER_EXTRA_BYTES`], and never more than [`MAX_ANSWER_BYTES`].
    pub fn answer_limit(&self) -> usize {
        self.request_bytes
            .saturating_mul(ANSWER_FACTOR)
            .saturating_add(ANSWER_EXTRA_BYTES)
            .min(MAX_ANSWER_BYTES)
    }

    /// Answer with a verdict (from the engine or the cache); an answer over
    /// [`Head::answer_limit`] becomes a denial that says so.
    pub fn respond(self, verdict: &Verdict) -> Reply {
        let body = review_json(&self.info.uid, &verdict.members);
        if body.len() > self.answer_limit() {
            let kind = &self.info.kind;
            let denial = Verdict::deny(
                &format!(
                    "promfed's answer for {kind} {} would be {} bytes, more than it sends for \
                     a request of {} bytes ({ANSWER_FACTOR} times the request plus {} KiB, at \
                     most {} MiB): the rewritten {kind} is refused",
                    self.info.target(),
                    body.len(),
                    self.request_bytes,
                    ANSWER_EXTRA_BYTES / 1024,
                    MAX_ANSWER_BYTES / 1024 / 1024,
                ),
                "answer size".into(),
            );
            return Reply {
                body: review_json(&self.info.uid, &denial.members),
                ..self.reply(&denial)
            };
        }
        Reply {
            body,
            ..self.reply(verdict)
        }
    }

    /// The reply for a verdict, without its body.
    fn reply(self, verdict: &Verdict) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            body: Vec::new(),
            outcome: verdict.outcome,
            patch_bytes: verdict.patch_bytes,
            warnings: verdict.warnings,
            cache: self.cache,
            detail: verdict.denied_at.clone(),
            info: Some(self.info),
            internal_error: false,
        }
    }

    /// The engine panicked. That is a bug; refuse the object rather than pass it unrewritten,
    /// and say so.
    pub fn internal_error(self) -> Reply {
        let verdict = Verdict::deny(
            &format!(
                "promfed internal error while rewriting {} {} (a bug; please report it). \
                 The request was refused so that no unrewritten config slips through.",
                self.info.kind,
                self.info.target()
            ),
            "internal error".into(),
        );
        let mut reply = self.respond(&verdict);
        reply.internal_error = true;
        reply
    }

    pub(super) fn passed(self) -> Reply {
        Reply {
            status: 200,
            content_type: "application/json",
            body: review_json(&self.info.uid, r#""allowed":true"#),
            outcome: Outcome::Passed,
            info: Some(self.info),
            patch_bytes: 0,
            warnings: 0,
            cache: CacheUse::None,
            detail: None,
            internal_error: false,
        }
    }

    pub(super) fn invalid(self, message: String) -> Reply {
        let mut reply = Reply::invalid(message);
        reply.info = Some(self.info);
        reply
    }
}

impl Verdict {
    pub(super) fn deny(message: &str, at: String) -> Verdict {
        let mut members = Map::new();
        members.insert("allowed".into(), Value::Bool(false));
        members.insert(
            "status".into(),
            json!({
                "status": "Failure",
                "code": 422,
                "reason": "Invalid",
                "message": message,
            }),
        );
        members.insert(
            "auditAnnotations".into(),
            json!({ AUDIT_KEY: format!("denied: {at}") }),
        );
        Verdict {
            outcome: Outcome::Denied,
            members: members_json(members),
            patch_bytes: 0,
            warnings: 0,
            denied_at: Some(at),
        }
    }
}

/// Warnings as kubectl will print them: one line each, at most [`MAX_WARNINGS`].
pub(super) fn warning_lines(warnings: impl ExactSizeIterator<Item = String>) -> Vec<String> {
    let total = warnings.len();
    // A warning header cannot carry control characters; the API server would drop the line.
    let clean = |w: String| -> String {
        w.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    if total <= MAX_WARNINGS {
        return warnings.map(clean).collect();
    }
    let keep = MAX_WARNINGS - 1;
    let mut lines: Vec<String> = warnings.take(keep).map(clean).collect();
    lines.push(format!("... and {} more warnings", total - keep));
    lines
}

/// The members of a JSON object without the braces.
pub(super) fn members_json(members: Map<String, Value>) -> String {
    let text = Value::Object(members).to_string();
    text[1..text.len() - 1].to_string()
}

pub(super) fn review_json(uid: &str, members: &str) -> Vec<u8> {
    let uid = Value::from(uid).to_string();
    let mut out = Vec::with_capacity(96 + uid.len() + members.len());
    out.extend_from_slice(br#"{"apiVersion":""#);
    out.extend_from_slice(API_VERSION.as_bytes());
    out.extend_from_slice(br#"","kind":"AdmissionReview","response":{"uid":"#);
    out.extend_from_slice(uid.as_bytes());
    if !members.is_empty() {
        out.push(b',');
        out.extend_from_slice(members.as_bytes());
    }
    out.extend_from_slice(b"}}");
    out
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}...", &text[..at]),
    }
}
