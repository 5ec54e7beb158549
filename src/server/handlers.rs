//! The routes: `POST /mutate` on the HTTPS listener; `/healthz`, `/readyz` and `/metrics`
//! on the plain one. A review's body is read within the shared budget, parsed and rewritten
//! on the engine threads, and answered; a panic in the engine becomes a denial.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt as _, Full};

use super::budget::{self, BODY_BUDGET_BYTES, Reservation, Short};
use super::conn::ConnInfo;
use super::io;
use super::metrics::Metrics;
use super::state::AppState;
use super::workers::{Lane, NotRun};
use crate::admission::{
    Admission, FRAME_COST_BYTES, FRAMING_ALLOWANCE_BYTES, Head, MAX_BODY_BYTES, Outcome, Pending,
    Reply, Step, Verdict,
};
use crate::engine::Work;

/// Bodies above this are parsed on a blocking thread too: parsing 3 MiB takes milliseconds.
const INLINE_PARSE_BYTES: usize = 256 * 1024;

impl AppState {
    /// Answer one request body that arrived for a request started at `started` from
    /// `lane` (the client's address). `budget` is its share of [`BODY_BUDGET_BYTES`]: the
    /// work on the worker threads holds it too, so a client that hangs up does not free it
    /// while its body is still being parsed or rewritten. When this future is dropped (the
    /// client is gone), queued work is not started and the engine stops at its next check.
    pub(super) async fn review(
        &self,
        body: Bytes,
        budget: Arc<Reservation>,
        lane: Lane,
        started: Instant,
    ) -> Reply {
        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel = CancelOnDrop(cancel.clone());
        let limit = self.review_deadline();
        let deadline = started + limit;
        let admission = self.admission();
        let step = if body.len() > INLINE_PARSE_BYTES {
            let (admission, budget) = (admission.clone(), budget.clone());
            let parsed =
                self.0
                    .workers
                    .run(lane, Some(deadline), Some(cancel.clone()), move || {
                        let _budget = budget;
                        admission.begin(&body)
                    });
            match parsed.await {
                Ok(step) => step,
                Err(not_run) => return self.not_run(not_run, "read"),
            }
        } else {
            admission.begin(&body)
        };
        let pending = match step {
            Step::Done(reply) => return reply,
            Step::Rewrite(pending) => pending,
        };
        let state = self.clone();
        let answer = self
            .0
            .workers
            .run(lane, Some(deadline), Some(cancel.clone()), move || {
                let _budget = budget;
                let work = Admission::work_for(&pending.job)
                    .with_deadline(deadline, limit)
                    .with_cancel(cancel);
                finish(&admission, pending, work, state.metrics())
            });
        // finish() catches panics: Lost means the workers are gone (shutting down).
        answer
            .await
            .unwrap_or_else(|not_run| self.not_run(not_run, "rewrite"))
    }

    /// The answer to a review the worker threads did not take.
    fn not_run(&self, not_run: NotRun, what: &str) -> Reply {
        let load = self.0.workers.load();
        match not_run {
            NotRun::Full => Reply::busy(
                503,
                format!(
                    "promfed is busy: {} reviews wait for its {} engine threads; retry",
                    load.queued, load.threads
                ),
            ),
            NotRun::Expired => Reply::busy(
                503,
                format!(
                    "promfed is busy: the review could not start within {:.1} s of its \
                     request; retry",
                    self.review_deadline().as_secs_f64()
                ),
            ),
            // Nobody reads this answer.
            NotRun::Cancelled => Reply::busy(503, "the review was cancelled".into()),
            NotRun::Lost => Reply::internal(format!(
                "promfed could not {what} the review: shutting down"
            )),
        }
    }
}

/// Run the engine for a pending review on this (blocking) thread; a panic becomes a denial.
fn finish(admission: &Admission, pending: Pending, mut work: Work, metrics: &Metrics) -> Reply {
    let Pending { head, job } = pending;
    let reply = guarded(head, || admission.run_within(job, &mut work));
    if let Some(stopped) = work.stopped() {
        metrics.engine_stopped(stopped);
    }
    reply
}

/// Sets the flag when dropped: the review's future is gone (its client hung up), or done.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn guarded(head: Head, run: impl FnOnce() -> Arc<Verdict>) -> Reply {
    match std::panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(verdict) => head.respond(&verdict),
        Err(_) => head.internal_error(),
    }
}

/// The webhook's routes: `POST /mutate`. Bodies over 3 MiB are answered with 413.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The plain-HTTP routes: `/healthz`, `/readyz`, `/metrics`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn mutate(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let version = request.version();
    let conn = request.extensions().get::<Arc<ConnInfo>>().cloned();
    // The duration is the review's: from the body being read to the answer being ready.
    let (reply, elapsed, unread, budget, retry) =
        match read_body(&state, conn.as_deref(), request).await {
            Ok((body, budget)) => {
                let budget = Arc::new(budget);
                let read = Instant::now();
                let lane = conn.as_ref().map(|c| c.peer);
                let reply = state.review(body, budget.clone(), lane, started).await;
                (reply, read.elapsed(), None, Some(budget), false)
            }
            Err(refused) => (
                refused.reply,
                Duration::ZERO,
                refused.unread,
                None,
                refused.retry,
            ),
        };
    state.record(&reply, elapsed);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, reply.content_type);
    if retry || reply.outcome == Outcome::Busy {
        response = response.header(header::RETRY_AFTER, budget::RETRY_AFTER_SECONDS);
    }
    if unread.is_some() {
        // Answered before the body was read: close afterwards, lingering, so that a client
        // still writing its body can read the answer (conn.rs, io.rs).
        if let Some(conn) = &conn {
            conn.linger_on_close();
        }
        if version < axum::http::Version::HTTP_2 {
            response = response.header(header::CONNECTION, "close");
        }
    }
    // The unread body lives until the answer is sent. Over HTTP/2 the rest of it is then
    // read and thrown away (bounded like a lingering close): resetting the stream instead
    // makes some clients (curl 7.88) drop the answer they already have.
    let unread = unread.map(|body| Unread {
        body: Some(body),
        drain: version >= axum::http::Version::HTTP_2,
    });
    // The budget too: an answer the client does not take holds it until the connection's
    // send timer closes the connection.
    let body = io::Held::new(Full::new(Bytes::from(reply.body)), (unread, budget));
    response
        .body(Body::new(body))
        .unwrap_or_else(|_| StatusCode::BAD_REQUEST.into_response())
}

/// A request body not read to its end, kept until the answer is sent.
struct Unread {
    body: Option<Body>,
    drain: bool,
}

impl Drop for Unread {
    fn drop(&mut self) {
        let Some(body) = self.body.take() else { return };
        if !self.drain {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

/// Read and throw away what is left of an HTTP/2 request body, within the bounds of a
/// lingering close.
async fn drain(mut body: Body) {
    let started = Instant::now();
    let mut discarded = 0usize;
    loop {
        let wait = io::LINGER_TIME
            .saturating_sub(started.elapsed())
            .min(io::LINGER_IDLE);
        if wait.is_zero() || discarded >= io::LINGER_BYTES {
            return;
        }
        match tokio::time::timeout(wait, body.frame()).await {
            Ok(Some(Ok(frame))) => discarded += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// A request refused before its body was read to the end: the answer, the unread body, and
/// whether the client should retry (429, 503).
struct Refused {
    reply: Reply,
    unread: Option<Body>,
    retry: bool,
}

impl From<Reply> for Refused {
    fn from(reply: Reply) -> Refused {
        Refused {
            reply,
            unread: None,
            retry: false,
        }
    }
}

impl Refused {
    fn unread(reply: Reply, body: Body) -> Refused {
        Refused {
            reply,
            unread: Some(body),
            retry: false,
        }
    }
}

/// Read the body within the budget and the body timeout: the body and its share of the
/// budget, or the answer that refuses it (413, 408, 400, 429, 503).
async fn read_body(
    state: &AppState,
    conn: Option<&ConnInfo>,
    request: Request,
) -> Result<(Bytes, Reservation), Refused> {
    // A declared length over the limit is refused before the body is read at all.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut body = request.into_body();
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(Refused::unread(Reply::too_large(), body));
    }
    let declared = declared.map(|n| n as usize);
    let timeout = state.body_timeout();
    // The body timer covers the wait for budget as well as the body.
    let deadline = tokio::time::Instant::now() + timeout;
    let mut budget = state
        .0
        .body_budget
        .reserve(conn.map(|c| c.peer), conn.map(|c| c.body_share.clone()));
    let mut bytes: Vec<u8> = Vec::new();
    let mut frames = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            // A slow client may still be sending: it gets the 408 with a lingering close.
            Err(_) => return Err(Refused::unread(Reply::body_timeout(timeout), body)),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(Reply::invalid(format!("could not read the request body: {e}")).into());
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        frames += 1;
        let have = bytes.len() + data.len();
        if have > MAX_BODY_BYTES {
            return Err(Refused::unread(Reply::too_large(), body));
        }
        if have + frames * FRAME_COST_BYTES > MAX_BODY_BYTES + FRAMING_ALLOWANCE_BYTES {
            return Err(Refused::unread(Reply::too_fragmented(frames), body));
        }
        // What arrived, up to a first step; past it the whole declared length at once, so
        // that large bodies arriving together never each hold a part and wait for the rest.
        let want = match declared {
            _ if have <= budget::STEP_BYTES => have,
            Some(n) => n.max(have),
            None => (have + budget::STEP_BYTES).min(MAX_BODY_BYTES),
        };
        if let Err(short) = budget.cover(want, deadline).await {
            if tokio::time::Instant::now() >= deadline {
                return Err(Refused::unread(Reply::body_timeout(timeout), body));
            }
            return Err(Refused {
                reply: busy_reply(short),
                unread: Some(body),
                retry: true,
            });
        }
        if bytes.is_empty() {
            bytes.reserve_exact(declared.unwrap_or(data.len()).min(MAX_BODY_BYTES));
        }
        bytes.extend_from_slice(&data);
    }
    Ok((Bytes::from(bytes), budget))
}

/// The answer to a request that found no budget: 429 when its own share (connection,
/// address) is full, 503 when the whole budget is.
fn busy_reply(short: Short) -> Reply {
    let (status, message) = match short {
        Short::Connection => (
            429,
            format!(
                "too many request bytes in flight on this connection (at most {} KiB); retry",
                budget::CONNECTION_SHARE_BYTES / 1024
            ),
        ),
        Short::Address => (
            429,
            format!(
                "too many request bytes in flight from this address (at most {} KiB); retry",
                budget::ADDRESS_SHARE_BYTES / 1024
            ),
        ),
        Short::Budget => (
            503,
            format!(
                "promfed is busy: its {} KiB of request bytes are in use; retry",
                BODY_BUDGET_BYTES / 1024
            ),
        ),
    };
    Reply::busy(status, message)
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.unready() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_engine_run_is_a_denial_not_a_crash() {
        let admission = Admission::new(crate::Engine::new(crate::Config::default()).unwrap(), 1);
        let body = super::super::dev::EXAMPLE_REVIEW.as_bytes();
        let Step::Rewrite(pending) = admission.begin(body) else {
            panic!("the example review needs the engine");
        };
        let reply = guarded(pending.head, || panic!("engine bug"));
        assert!(reply.internal_error);
        assert_eq!(reply.status, 200);
        let response = &reply.json().unwrap()["response"];
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 422);
        assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert!(
            response["status"]["message"]
                .as_str()
                .unwrap()
                .contains("internal error")
        );
    }
}
