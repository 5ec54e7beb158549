//! One `admission.k8s.io/v1` AdmissionReview in, one answer out.
//!
//! Everything here is synchronous and does no I/O; the server only moves bytes and runs
//! [`Admission::run`] (the engine) on a blocking thread. A review goes through two steps so
//! that the cheap part never waits for the engine:
//!
//! 1. [`Admission::begin`] parses the review, decides whether promfed cares about the object and
//!    looks the ConfigMap data up in the response cache. Most reviews end here.
//! 2. For a cache miss it returns a [`Pending`]: [`Admission::run`] rewrites the data (pure, may
//!    take ~100 ms on a 1 MiB ConfigMap) and [`Head::respond`] turns the verdict into the answer.
//!
//! The response JSON is written by hand: kube-core's `AdmissionResponse` serialises `patch` as a
//! JSON array of numbers (kube-rs#1781) where the API server wants a base64 string.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::engine::{Engine, ObjectRef, Work, WorkLimits};

/// The only AdmissionReview version promfed speaks.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// Largest request body accepted; larger ones are answered with HTTP 413.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Responses remembered per loaded config.
pub const CACHE_ENTRIES: usize = 256;
/// Bytes of responses remembered per loaded config: the answer for a large ConfigMap can be
/// megabytes (its patch, base64), and 256 of them must not fill the memory. An answer over a
/// quarter of this is not remembered at all.
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;
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

/// What a log line may say about a review: identity, never content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewInfo {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: &'static str,
    pub dry_run: bool,
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
    fn invalid_quoting(message: String) -> Reply {
        let detail = truncate(&withhold_values(&message), 200);
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
                crate::server::FRAME_COST_BYTES
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

/// The outcome of the engine for one ConfigMap data, ready to be sent to any request carrying
/// the same data. This is what the cache holds.
#[derive(Debug)]
pub struct Verdict {
    outcome: Outcome,
    /// The JSON members of `response` after `uid` (`"allowed":true,"patchType":...`).
    members: String,
    patch_bytes: usize,
    warnings: usize,
    /// Where the input was refused (a [`crate::engine::Location`]), for logs.
    denied_at: Option<String>,
}

impl Verdict {
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }
}

/// Everything known about a review except the verdict: enough to answer it.
#[derive(Debug)]
pub struct Head {
    info: ReviewInfo,
    cache: CacheUse,
    /// Size of the request body: the answer may be at most [`ANSWER_FACTOR`] times it.
    request_bytes: usize,
}

/// The engine work a review is waiting for.
#[derive(Debug)]
pub struct Job {
    key: [u8; 32],
    object: String,
    data: Vec<(String, String)>,
}

/// A review that needs the engine: [`Admission::run`] the job, then [`Head::respond`].
#[derive(Debug)]
pub struct Pending {
    pub head: Head,
    pub job: Job,
}

/// The first step's result.
#[derive(Debug)]
pub enum Step {
    Done(Reply),
    Rewrite(Pending),
}

/// A loaded config: the engine plus the cache of its answers. A config reload builds a new one,
/// so a cached answer never outlives the config that produced it.
pub struct Admission {
    engine: Engine,
    generation: u64,
    cache: Cache,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("generation", &self.generation)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// `generation` numbers successive configs; it is part of every cache key.
    pub fn new(engine: Engine, generation: u64) -> Admission {
        Admission {
            engine,
            generation,
            cache: Cache::new(CACHE_ENTRIES),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Answer a request body completely, engine included. Blocks for as long as the engine runs.
    pub fn review(&self, body: &[u8]) -> Reply {
        match self.begin(body) {
            Step::Done(reply) => reply,
            Step::Rewrite(Pending { head, job }) => {
                let verdict = self.run(job);
                head.respond(&verdict)
            }
        }
    }

    /// Parse, match and look the data up in the cache. Cheap apart from parsing the body.
    pub fn begin(&self, body: &[u8]) -> Step {
        let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
            Ok(review) => review,
            Err(e) => {
                return Step::Done(Reply::invalid_quoting(format!(
                    "malformed AdmissionReview: {e}"
                )));
            }
        };
        if review.types.api_version != API_VERSION || review.types.kind != "AdmissionReview" {
            return Step::Done(Reply::invalid_quoting(format!(
                "unsupported review {:?}/{:?}: promfed answers kind AdmissionReview, apiVersion {API_VERSION} \
                 (set admissionReviewVersions: [v1] in the webhook configuration)",
                review.types.api_version, review.types.kind
            )));
        }
        let Some(request) = review.request else {
            return Step::Done(Reply::invalid("AdmissionReview has no request"));
        };
        if request.uid.is_empty() {
            return Step::Done(Reply::invalid("AdmissionReview request has no uid"));
        }
        self.begin_request(request, body.len())
    }

    fn begin_request(
        &self,
        mut request: AdmissionRequest<DynamicObject>,
        request_bytes: usize,
    ) -> Step {
        // The object's fields (data among them) are moved out, not copied: a review may carry
        // megabytes of data.
        let fields = request
            .object
            .as_mut()
            .map(|o| std::mem::take(&mut o.data))
            .unwrap_or_default();
        let object = request.object.as_ref();
        let meta = object.map(|o| &o.metadata);
        let name = meta
            .and_then(|m| m.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| request.name.clone());
        let namespace = meta
            .and_then(|m| m.namespace.clone())
            .or_else(|| request.namespace.clone())
            .unwrap_or_default();
        let info = ReviewInfo {
            uid: request.uid.clone(),
            kind: request.kind.kind.clone(),
            namespace,
            name,
            operation: operation_name(&request.operation),
            dry_run: request.dry_run,
        };
        let mut head = Head {
            info,
            cache: CacheUse::None,
            request_bytes,
        };

        // Only CREATE and UPDATE of a core/v1 ConfigMap itself can be rewritten.
        let writes = matches!(request.operation, Operation::Create | Operation::Update);
        let configmap = request.kind.group.is_empty()
            && request.kind.kind == "ConfigMap"
            && request.sub_resource.as_deref().unwrap_or("").is_empty();
        if !writes || !configmap {
            return Step::Done(head.passed());
        }
        let Some(object) = object else {
            let message = format!(
                "{} request for ConfigMap {} has no object",
                head.info.operation,
                head.info.target()
            );
            return Step::Done(head.invalid(message));
        };
        let target = ObjectRef {
            kind: request.kind.kind.clone(),
            name: head.info.name.clone(),
            namespace: head.info.namespace.clone(),
            labels: object.metadata.labels.clone().unwrap_or_default(),
            data_keys: (fields.get("data").and_then(Value::as_object))
                .map(|data| data.keys().cloned().collect())
                .unwrap_or_default(),
        };
        if !self.engine.matches(&target) {
            return Step::Done(head.passed());
        }

        let data = match configmap_data(fields) {
            Ok(data) => data,
            Err(reason) => {
                let verdict = Verdict::deny(
                    &format!("ConfigMap {}: {reason}", head.info.target()),
                    "data".into(),
                );
                return Step::Done(head.respond(&verdict));
            }
        };
        let key = self.cache_key(&data);
        if let Some(verdict) = self.cache.get(&key) {
            head.cache = CacheUse::Hit;
            return Step::Done(head.respond(&verdict));
        }
        head.cache = CacheUse::Miss;
        let object = head.info.target();
        Step::Rewrite(Pending {
            head,
            job: Job { key, object, data },
        })
    }

    /// Run the engine on a job and remember the verdict. Pure CPU work: call it off the runtime.
    pub fn run(&self, job: Job) -> Arc<Verdict> {
        let mut work = Work::new(WorkLimits::for_data(&job.data));
        self.run_within(job, &mut work)
    }

    /// [`Admission::run`] within `work` (the engine's budget, deadline and cancel flag). A
    /// verdict of a rewrite cut short by the deadline or the cancel flag is not remembered:
    /// it says nothing about the data.
    pub fn run_within(&self, job: Job, work: &mut Work) -> Arc<Verdict> {
        let verdict = Arc::new(self.compute(&job, work));
        if work.stopped().is_none() {
            self.cache.insert(job.key, verdict.clone());
        }
        verdict
    }

    /// The work budget for a job's data, without deadline or cancel flag.
    pub fn work_for(job: &Job) -> Work {
        Work::new(WorkLimits::for_data(&job.data))
    }

    fn compute(&self, job: &Job, work: &mut Work) -> Verdict {
        let rewrite = match self.engine.rewrite_within(&job.data, work) {
            Ok(rewrite) => rewrite,
            Err(e) => {
                return Verdict::deny(
                    &format!("promfed cannot rewrite ConfigMap {}: {e}", job.object),
                    e.location.to_string(),
                );
            }
        };
        let warnings = warning_lines(rewrite.warnings.iter().map(|w| w.to_string()));
        let changed = rewrite.changed_keys(&job.data).len();
        let stats = &rewrite.stats;
        let counts = format!(
            "{changed} of {} keys changed, {} local jobs labelled, {} federation jobs, \
             {} rules rewritten, {} selectors scoped, {} warnings",
            job.data.len(),
            stats.local_jobs_labelled,
            stats.federation_jobs,
            stats.rules_rewritten,
            stats.selectors_scoped,
            rewrite.warnings.len(),
        );

        // rendered = object with `data` replaced. Everything but `data` is equal on both sides,
        // so diffing just `{"data": ...}` gives the same operations as diffing whole objects.
        let before = json!({ "data": pairs_to_map(&job.data) });
        let after = json!({ "data": pairs_to_map(&rewrite.data) });
        let patch = json_patch::diff(&before, &after);

        let mut members = Map::new();
        members.insert("allowed".into(), Value::Bool(true));
        let (outcome, patch_bytes) = if patch.0.is_empty() {
            (Outcome::Unchanged, 0)
        } else {
            let bytes = serde_json::to_vec(&patch).unwrap_or_default();
            members.insert("patchType".into(), "JSONPatch".into());
            members.insert(
                "patch".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(&bytes)
                    .into(),
            );
            (Outcome::Mutated, bytes.len())
        };
        members.insert(
            "auditAnnotations".into(),
            json!({ AUDIT_KEY: format!("{outcome}: {counts}") }),
        );
        if !warnings.is_empty() {
            members.insert("warnings".into(), warnings.into());
        }
        Verdict {
            outcome,
            members: members_json(members),
            patch_bytes,
            warnings: rewrite.warnings.len(),
            denied_at: None,
        }
    }

    /// sha256 over (generation, matched, data in order). Lengths are included so that no two
    /// different inputs hash the same byte stream.
    fn cache_key(&self, data: &[(String, String)]) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.generation.to_le_bytes());
        hash.update([1u8]); // matched: only matched ConfigMaps reach the cache
        for (key, value) in data {
            hash.update((key.len() as u64).to_le_bytes());
            hash.update(key.as_bytes());
            hash.update((value.len() as u64).to_le_bytes());
            hash.update(value.as_bytes());
        }
        hash.finalize().into()
    }

    /// Answers remembered right now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Bytes of the answers remembered right now (at most [`CACHE_BYTES`]).
    pub fn cached_bytes(&self) -> usize {
        self.cache.bytes()
    }
}

impl ReviewInfo {
    /// `namespace/name` (or `name` for an empty namespace).
    pub fn target(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
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
            let denial = Verdict::deny(
                &format!(
                    "promfed's answer for ConfigMap {} would be {} bytes, more than it sends for \
                     a request of {} bytes ({ANSWER_FACTOR} times the request plus {} KiB, at \
                     most {} MiB): the rewritten ConfigMap is refused",
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
                "promfed internal error while rewriting ConfigMap {} (a bug; please report it). \
                 The request was refused so that no unrewritten config slips through.",
                self.info.target()
            ),
            "internal error".into(),
        );
        let mut reply = self.respond(&verdict);
        reply.internal_error = true;
        reply
    }

    fn passed(self) -> Reply {
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

    fn invalid(self, message: String) -> Reply {
        let mut reply = Reply::invalid(message);
        reply.info = Some(self.info);
        reply
    }
}

impl Verdict {
    fn deny(message: &str, at: String) -> Verdict {
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

/// `data` of a ConfigMap as (key, value) pairs in document order.
fn configmap_data(fields: Value) -> Result<Vec<(String, String)>, String> {
    let data = match fields {
        Value::Object(mut fields) => fields.remove("data"),
        _ => None,
    };
    let data = match data {
        None | Some(Value::Null) => {
            return Err("has no data (promfed rewrites the Prometheus config held in data)".into());
        }
        Some(Value::Object(data)) => data,
        Some(_) => return Err("data is not a map of strings".into()),
    };
    data.into_iter()
        .map(|(key, value)| match value {
            Value::String(value) => Ok((key, value)),
            _ => Err(format!("data key {key:?} does not hold a string")),
        })
        .collect()
}

fn pairs_to_map(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Warnings as kubectl will print them: one line each, at most [`MAX_WARNINGS`].
fn warning_lines(warnings: impl ExactSizeIterator<Item = String>) -> Vec<String> {
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
fn members_json(members: Map<String, Value>) -> String {
    let text = Value::Object(members).to_string();
    text[1..text.len() - 1].to_string()
}

fn review_json(uid: &str, members: &str) -> Vec<u8> {
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

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// `message` with the values it quotes from the input withheld, for a log line: the request (or
/// a config file) may carry credentials, and a parse error quotes what it could not parse.
/// Withheld: the string after serde's `invalid type: string` / `invalid value: string`, the
/// value after `unknown variant`, and the two quoted strings of an `unsupported review "…"/"…"`.
/// Everything else stays: paths, lines, expected types, and field names (`unknown field
/// `basicAuth`` is how a typo in the config is found; a key is not a secret).
pub fn withhold_values(message: &str) -> String {
    const QUOTING: [&str; 4] = [
        "invalid type: string ",
        "invalid value: string ",
        "unknown variant ",
        "unsupported review ",
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((at, prefix)) = QUOTING
        .iter()
        .filter_map(|p| rest.find(p).map(|at| (at, *p)))
        .min_by_key(|(at, _)| *at)
    {
        out.push_str(&rest[..at + prefix.len()]);
        rest = &rest[at + prefix.len()..];
        let quotes = if prefix == "unsupported review " {
            2
        } else {
            1
        };
        for n in 0..quotes {
            if n > 0 {
                match rest.strip_prefix('/') {
                    Some(r) => {
                        out.push('/');
                        rest = r;
                    }
                    None => break,
                }
            }
            match quoted_len(rest) {
                Some(len) => {
                    out.push_str("(withheld)");
                    rest = &rest[len..];
                }
                None => break,
            }
        }
    }
    out.push_str(rest);
    out
}

/// Length of a leading `"…"` (with `\` escapes) or `` `…` ``, closing quote included.
fn quoted_len(text: &str) -> Option<usize> {
    let mut chars = text.char_indices();
    let (_, open) = chars.next()?;
    if open != '"' && open != '`' {
        return None;
    }
    let mut escaped = false;
    for (i, c) in chars {
        match c {
            '\\' if open == '"' && !escaped => escaped = true,
            c if c == open && !escaped => return Some(i + c.len_utf8()),
            _ => escaped = false,
        }
    }
    None
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}...", &text[..at]),
    }
}

/// A small LRU bounded in entries and in bytes: a map plus a use counter; eviction scans for
/// the oldest entry, which is cheap at this size and happens only on a miss.
type Entry = (Arc<Verdict>, u64);

struct Cache {
    capacity: usize,
    max_bytes: usize,
    clock: AtomicU64,
    /// key → (verdict, last use), and the bytes of all verdicts.
    entries: Mutex<(HashMap<[u8; 32], Entry>, usize)>,
}

impl Verdict {
    /// What keeping this verdict costs, roughly.
    fn size(&self) -> usize {
        self.members.len() + self.denied_at.as_ref().map_or(0, String::len) + 128
    }
}

impl Cache {
    fn new(capacity: usize) -> Cache {
        Cache::with_bytes(capacity, CACHE_BYTES)
    }

    fn with_bytes(capacity: usize, max_bytes: usize) -> Cache {
        Cache {
            capacity,
            max_bytes,
            clock: AtomicU64::new(0),
            entries: Mutex::new((HashMap::with_capacity(capacity), 0)),
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn get(&self, key: &[u8; 32]) -> Option<Arc<Verdict>> {
        let now = self.tick();
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (verdict, used) = guard.0.get_mut(key)?;
        *used = now;
        Some(verdict.clone())
    }

    fn insert(&self, key: [u8; 32], verdict: Arc<Verdict>) {
        let size = verdict.size();
        if size > self.max_bytes / 4 {
            return;
        }
        let now = self.tick();
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (entries, bytes) = &mut *guard;
        if let Some((old, _)) = entries.remove(&key) {
            *bytes -= old.size();
        }
        while !entries.is_empty()
            && (entries.len() >= self.capacity || *bytes + size > self.max_bytes)
        {
            let oldest = entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some((old, _)) = oldest.and_then(|k| entries.remove(&k)) {
                *bytes -= old.size();
            }
        }
        *bytes += size;
        entries.insert(key, (verdict, now));
    }

    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .len()
    }

    fn bytes(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn admission() -> Admission {
        Admission::new(Engine::new(Config::default()).unwrap(), 1)
    }

    fn review(operation: &str, kind: &str, object: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": API_VERSION,
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": "configmaps"},
                "name": "prometheus-server",
                "namespace": "monitoring",
                "operation": operation,
                "userInfo": {"username": "alice"},
                "object": object,
            }
        }))
        .unwrap()
    }

    fn configmap(data: Value) -> Value {
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

    #[test]
    fn response_members_follow_the_uid() {
        let body = review_json("a\"b", r#""allowed":true"#);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            json!({"apiVersion": API_VERSION, "kind": "AdmissionReview",
                   "response": {"uid": "a\"b", "allowed": true}})
        );
    }

    #[test]
    fn warnings_are_capped_and_single_line() {
        let lines = warning_lines((0..45).map(|i| format!("w{i}\nnext")));
        assert_eq!(lines.len(), MAX_WARNINGS);
        assert_eq!(lines[0], "w0 next");
        assert_eq!(lines[MAX_WARNINGS - 1], "... and 26 more warnings");
        assert_eq!(warning_lines((0..20).map(|i| i.to_string())).len(), 20);
    }

    #[test]
    fn non_string_data_is_denied() {
        let reply = admission().review(&review(
            "CREATE",
            "ConfigMap",
            configmap(json!({"prometheus.yml": 5})),
        ));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.outcome, Outcome::Denied);
        let value = reply.json().unwrap();
        assert_eq!(value["response"]["status"]["code"], 422);
        let message = value["response"]["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("\"prometheus.yml\" does not hold a string"),
            "{message}"
        );
    }

    #[test]
    fn missing_data_is_not_a_prometheus_servers_configmap() {
        let reply = admission().review(&review("UPDATE", "ConfigMap", configmap(Value::Null)));
        assert_eq!(reply.outcome, Outcome::Passed);
        assert_eq!(reply.json().unwrap()["response"]["allowed"], true);
    }

    #[test]
    fn second_review_of_the_same_data_hits_the_cache() {
        let admission = admission();
        let body = review(
            "CREATE",
            "ConfigMap",
            configmap(json!({"prometheus.yml": "scrape_configs: []\n"})),
        );
        let first = admission.review(&body);
        assert_eq!(first.cache, CacheUse::Miss);
        let second = admission.review(&body);
        assert_eq!(second.cache, CacheUse::Hit);
        assert_eq!(first.body, second.body);
        assert_eq!(admission.cached(), 1);
    }

    #[test]
    fn cache_evicts_the_least_recently_used() {
        let cache = Cache::new(2);
        let verdict = || Arc::new(Verdict::deny("x", "x".into()));
        cache.insert([1; 32], verdict());
        cache.insert([2; 32], verdict());
        assert!(cache.get(&[1; 32]).is_some());
        cache.insert([3; 32], verdict());
        assert!(cache.get(&[2; 32]).is_none());
        assert!(cache.get(&[1; 32]).is_some());
        assert!(cache.get(&[3; 32]).is_some());
    }

    #[test]
    fn cache_is_bounded_in_bytes_and_skips_huge_answers() {
        let verdict = |bytes: usize| {
            let mut v = Verdict::deny("x", "x".into());
            v.members = "m".repeat(bytes);
            Arc::new(v)
        };
        let cache = Cache::with_bytes(100, 10_000);
        for k in 0..10u8 {
            cache.insert([k; 32], verdict(2_000));
        }
        assert!(cache.bytes() <= 10_000, "{}", cache.bytes());
        assert_eq!(cache.len(), 4);
        assert!(cache.get(&[9; 32]).is_some() && cache.get(&[5; 32]).is_none());
        cache.insert([42; 32], verdict(3_000));
        assert!(
            cache.get(&[42; 32]).is_none(),
            "over a quarter of the budget: not kept"
        );
        cache.insert([9; 32], verdict(100));
        assert_eq!(cache.len(), 4);
        assert!(cache.bytes() <= 10_000);
    }

    #[test]
    fn an_answer_over_its_limit_is_a_denial_that_says_so() {
        let admission = admission();
        let body = review(
            "CREATE",
            "ConfigMap",
            configmap(json!({"prometheus.yml": "scrape_configs: []\n"})),
        );
        let Step::Rewrite(pending) = admission.begin(&body) else {
            panic!("a matched ConfigMap needs the engine");
        };
        let limit = pending.head.answer_limit();
        assert_eq!(limit, ANSWER_FACTOR * body.len() + ANSWER_EXTRA_BYTES);
        let mut verdict = Verdict::deny("x", "x".into());
        verdict.outcome = Outcome::Mutated;
        verdict.members = format!(r#""allowed":true,"x":"{}""#, "a".repeat(limit));
        let reply = pending.head.respond(&verdict);
        assert_eq!(reply.outcome, Outcome::Denied);
        assert!(reply.body.len() <= limit);
        let response = &reply.json().unwrap()["response"];
        assert_eq!(response["allowed"], false);
        let message = response["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("more than it sends for a request of"),
            "{message}"
        );
    }

    #[test]
    fn other_operations_pass() {
        for operation in ["DELETE", "CONNECT"] {
            let reply = admission().review(&review(operation, "ConfigMap", Value::Null));
            assert_eq!(reply.outcome, Outcome::Passed, "{operation}");
        }
    }

    #[test]
    fn logged_details_withhold_quoted_values() {
        let cases = [
            (
                r#"malformed AdmissionReview: invalid type: string "pa\"ss", expected a boolean at line 1 column 9"#,
                "malformed AdmissionReview: invalid type: string (withheld), expected a boolean at line 1 column 9",
            ),
            (
                "unknown variant `pass`, expected one of `CREATE`, `UPDATE`",
                "unknown variant (withheld), expected one of `CREATE`, `UPDATE`",
            ),
            (
                r#"unsupported review "pass"/"word": promfed answers"#,
                "unsupported review (withheld)/(withheld): promfed answers",
            ),
            (
                r#"invalid setting clusters[0].sample_limit (line 4): invalid type: string "pass", expected u64"#,
                "invalid setting clusters[0].sample_limit (line 4): invalid type: string (withheld), expected u64",
            ),
            (
                r#"scrape config "federation" for targets ["a"] does not have a label "cluster""#,
                r#"scrape config "federation" for targets ["a"] does not have a label "cluster""#,
            ),
            (
                "missing field `uid` at line 1 column 2",
                "missing field `uid` at line 1 column 2",
            ),
            (
                "unknown field `basicAuth`, expected one of `name`",
                "unknown field `basicAuth`, expected one of `name`",
            ),
            ("unknown variant `oops", "unknown variant `oops"),
        ];
        for (message, logged) in cases {
            assert_eq!(withhold_values(message), logged, "{message}");
        }
        let reply = admission().review(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","dryRun":"hunter2"}}"#);
        assert_eq!(reply.status, 400);
        assert!(String::from_utf8_lossy(&reply.body).contains("hunter2"));
        assert!(!reply.detail.unwrap().contains("hunter2"));
    }

    #[test]
    fn create_without_object_is_invalid() {
        let reply = admission().review(&review("CREATE", "ConfigMap", Value::Null));
        assert_eq!(reply.status, 400);
    }
}
