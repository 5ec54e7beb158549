//! The few long-lived threads that run the engine and parse large reviews.
//!
//! Not tokio's blocking pool: glibc gives each thread that allocates heavily an arena of its
//! own and keeps much of what was freed in it, so engine runs spread over the pool's threads
//! multiplied the resident memory (three 2 MiB reviews in a row: 8 → 77 → 152 → 214 MiB;
//! on these threads the growth is the response cache's). One thread per core also bounds how
//! many engine runs are in flight, as the old per-core semaphore did.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Stack of a worker thread. The engine bounds every recursion (YAML depth 100, PromQL 256
/// brackets and 1000 operators); this leaves a wide margin over the 2 MiB default.
const STACK_BYTES: usize = 8 * 1024 * 1024;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads taking jobs from one queue, in order. The threads end when the
/// last handle is dropped.
#[derive(Debug, Clone)]
pub struct Workers {
    queue: mpsc::Sender<Job>,
}

impl Workers {
    /// `threads` threads (at least one), named `promfed-engine-N`.
    pub fn new(threads: usize) -> Workers {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..threads.max(1) {
            let jobs = jobs.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("promfed-engine-{n}"))
                .stack_size(STACK_BYTES)
                .spawn(move || {
                    loop {
                        // Hold the lock only to take a job, not while running it.
                        let job = match jobs.lock() {
                            Ok(jobs) => jobs.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        let Ok(job) = job else { return };
                        // A job that panics drops its answer channel (the caller sees that);
                        // the thread lives on.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start an engine thread");
            }
        }
        Workers { queue }
    }

    /// Run `work` on a worker thread and wait for its result; `None` if it panicked or no
    /// thread is left to run it.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (answer, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(work());
        });
        self.queue.send(job).ok()?;
        result.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_a_panic_is_none_and_leaves_the_threads_working() {
        let workers = Workers::new(2);
        assert_eq!(workers.run(|| 6 * 7).await, Some(42));
        assert_eq!(workers.run(|| -> u8 { panic!("job bug") }).await, None);
        let name = workers
            .run(|| std::thread::current().name().unwrap_or("").to_string())
            .await
            .unwrap();
        assert!(name.starts_with("promfed-engine-"), "{name}");
        for i in 0..10 {
            assert_eq!(workers.run(move || i).await, Some(i));
        }
    }
}
