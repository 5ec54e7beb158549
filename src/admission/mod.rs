//! One `admission.k8s.io/v1` AdmissionReview in, one answer out.
//!
//! Everything here is synchronous and does no I/O; the server only moves bytes and runs
//! [`Admission::run`] (the engine) on a blocking thread. A review goes through two steps so
//! that the cheap part never waits for the engine:
//!
//! 1. [`Admission::begin`] parses the review (`review`), decides whether promfed cares about
//!    the object and looks its content up in the response cache (`cache`). Most reviews end
//!    here.
//! 2. For a cache miss it returns a [`Pending`]: [`Admission::run`] rewrites the content (pure,
//!    may take ~100 ms on a 1 MiB ConfigMap) and [`Head::respond`] turns the verdict into the
//!    answer (`response`).
//!
//! Which kinds are rewritten, and what of them, is [`crate::object`]'s: the patch is
//! `json_patch::diff` of the whole object before and after.

mod cache;
mod response;
mod review;

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::engine::{Engine, Work, WorkLimits};
use crate::object::{Content, Kind};
use cache::Cache;
pub use cache::{CACHE_BYTES, CACHE_ENTRIES};
pub use response::{
    ANSWER_EXTRA_BYTES, ANSWER_FACTOR, AUDIT_KEY, CacheUse, Head, MAX_ANSWER_BYTES, MAX_WARNINGS,
    Outcome, Reply, Verdict,
};
use response::{members_json, warning_lines};
pub use review::{
    API_VERSION, FRAME_COST_BYTES, FRAMING_ALLOWANCE_BYTES, MAX_BODY_BYTES, ReviewInfo,
};

/// The engine work a review is waiting for.
#[derive(Debug)]
pub struct Job {
    key: [u8; 32],
    kind: Kind,
    /// `namespace/name`, for messages.
    target: String,
    /// The object without its content ([`Kind::take_json`]).
    object: Map<String, Value>,
    content: Content,
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

    /// Parse, match and look the content up in the cache. Cheap apart from parsing the body.
    pub fn begin(&self, body: &[u8]) -> Step {
        let request = match review::parse(body) {
            Ok(request) => request,
            Err(reply) => return Step::Done(*reply),
        };
        let mut head = Head {
            info: request.info,
            cache: CacheUse::None,
            request_bytes: body.len(),
        };
        let Some(kind) = request.rewritable else {
            return Step::Done(head.passed());
        };
        let Some(mut object) = request.object else {
            let message = format!(
                "{} request for {} {} has no object",
                head.info.operation,
                kind.name(),
                head.info.target()
            );
            return Step::Done(head.invalid(message));
        };
        let labels = object.metadata.labels.clone().unwrap_or_default();
        let target = kind.object_ref_json(
            &object.fields,
            &head.info.name,
            &head.info.namespace,
            labels,
        );
        if !self.engine.matches(&target) {
            return Step::Done(head.passed());
        }

        let content = match kind.take_json(&mut object.fields) {
            Ok(content) => content,
            Err(reason) => {
                let verdict = Verdict::deny(
                    &format!("{} {}: {reason}", kind.name(), head.info.target()),
                    kind.field().into(),
                );
                return Step::Done(head.respond(&verdict));
            }
        };
        let key = self.cache_key(kind, &head.info.target(), &content);
        if let Some(verdict) = self.cache.get(&key) {
            head.cache = CacheUse::Hit;
            return Step::Done(head.respond(&verdict));
        }
        head.cache = CacheUse::Miss;
        let target = head.info.target();
        Step::Rewrite(Pending {
            head,
            job: Job {
                key,
                kind,
                target,
                object: object.into_whole(),
                content,
            },
        })
    }

    /// Run the engine on a job and remember the verdict. Pure CPU work: call it off the runtime.
    pub fn run(&self, job: Job) -> Arc<Verdict> {
        let mut work = Admission::work_for(&job);
        self.run_within(job, &mut work)
    }

    /// [`Admission::run`] within `work` (the engine's budget, deadline and cancel flag). A
    /// verdict of a rewrite cut short by the deadline or the cancel flag is not remembered:
    /// it says nothing about the content.
    pub fn run_within(&self, job: Job, work: &mut Work) -> Arc<Verdict> {
        let verdict = Arc::new(self.compute(&job, work));
        if work.stopped().is_none() {
            self.cache.insert(job.key, verdict.clone());
        }
        verdict
    }

    /// The work budget for a job's content, without deadline or cancel flag.
    pub fn work_for(job: &Job) -> Work {
        Work::new(WorkLimits::for_content(&job.content))
    }

    fn compute(&self, job: &Job, work: &mut Work) -> Verdict {
        let kind = job.kind;
        let rewritten = match self.engine.rewrite_object(&job.content, work) {
            Ok(rewritten) => rewritten,
            Err(e) => {
                return Verdict::deny(
                    &format!("promfed cannot rewrite {} {}: {e}", kind.name(), job.target),
                    e.location.to_string(),
                );
            }
        };
        let warnings = warning_lines(rewritten.warnings.iter().map(|w| w.to_string()));
        let (changed, total) = job.content.changed_parts(&rewritten.content);
        let stats = &rewritten.stats;
        let counts = format!(
            "{changed} of {total} {} changed, {} local jobs labelled, {} federation jobs, \
             {} rules rewritten, {} selectors scoped, {} warnings",
            kind.parts(),
            stats.local_jobs_labelled,
            stats.federation_jobs,
            stats.rules_rewritten,
            stats.selectors_scoped,
            rewritten.warnings.len(),
        );

        let mut before = job.object.clone();
        kind.put_json(&mut before, &job.content);
        let mut after = job.object.clone();
        kind.put_json(&mut after, &rewritten.content);
        let patch = json_patch::diff(&Value::Object(before), &Value::Object(after));

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
            warnings: rewritten.warnings.len(),
            denied_at: None,
        }
    }

    /// sha256 over (generation, matched, kind, namespace/name, content). The object's identity
    /// is part of the key because a denial names the object: one chart can write the same
    /// PrometheusRule spec into many namespaces, and each refusal must name its own.
    fn cache_key(&self, kind: Kind, target: &str, content: &Content) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.generation.to_le_bytes());
        hash.update([1u8]); // matched: only matched objects reach the cache
        for field in [kind.name(), target] {
            hash.update((field.len() as u64).to_le_bytes());
            hash.update(field.as_bytes());
        }
        content.digest(&mut hash);
        hash.finalize().into()
    }

    /// Answers remembered right now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }
}

/// The reviews the integration tests and the fuzz targets send, from the one fixture file.
#[cfg(test)]
#[path = "../../tests/support/review.rs"]
mod fixture;

#[cfg(test)]
mod tests {
    use super::response::{MAX_WARNINGS, review_json, warning_lines};
    use super::*;
    use crate::Config;
    use serde_json::{Value, json};

    fn admission() -> Admission {
        Admission::new(Engine::new(Config::default()).unwrap(), 1)
    }

    use super::fixture::{self, configmap};

    fn review(operation: &str, kind: &str, object: Value) -> Vec<u8> {
        fixture::review_bytes("u-1", operation, kind, &object)
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
    fn a_remembered_denial_names_the_object_it_answers() {
        let admission = admission();
        let broken = json!({"prometheus.yml": "rule_files: [r.yml]\n", "r.yml": "groups:\n- name: g\n  rules:\n  - record: r\n    expr: sum(\n"});
        let mut names = Vec::new();
        for (namespace, name) in [("team-a", "prometheus-server"), ("team-b", "other-server")] {
            let mut object = configmap(broken.clone());
            object["metadata"]["namespace"] = json!(namespace);
            object["metadata"]["name"] = json!(name);
            let reply = admission.review(&review("CREATE", "ConfigMap", object));
            let answer: Value = serde_json::from_slice(&reply.body).unwrap();
            assert_eq!(answer["response"]["allowed"], json!(false), "{answer}");
            let message = answer["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                message.contains(&format!("{namespace}/{name}")),
                "{message}"
            );
            names.push(message);
        }
        let again = admission.review(&review("CREATE", "ConfigMap", {
            let mut object = configmap(broken.clone());
            object["metadata"]["namespace"] = json!("team-a");
            object
        }));
        assert_eq!(
            again.cache,
            CacheUse::Hit,
            "the same object again is remembered"
        );
        assert_ne!(names[0], names[1]);
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
