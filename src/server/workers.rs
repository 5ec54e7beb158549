//! The few long-lived threads that run the engine and parse large reviews.
//!
//! Not tokio's blocking pool: glibc gives each thread that allocates heavily an arena of its
//! own and keeps much of what was freed in it, so engine runs spread over the pool's threads
//! multiplied the resident memory (three 2 MiB reviews in a row: 8 → 77 → 152 → 214 MiB;
//! on these threads the growth is the response cache's). One thread per core also bounds how
//! many engine runs are in flight, as the old per-core semaphore did.
//!
//! Jobs wait in one queue per client address, and the threads take from the queues in turn.
//! There is one thread more than one address may keep busy, so that an address sending
//! costly reviews never holds up another's: with one core, two threads share it, and a
//! review from elsewhere runs next to the costly one instead of after it. A queue holds at
//! most [`QUEUED_PER_LANE`] jobs and all together [`QUEUED`]; a job that could not start
//! before its deadline (the review's), or whose caller is gone (its cancel flag set), is not
//! run at all. A job whose caller is gone while it waits (the client hung up: its future was
//! dropped) leaves the queue at once, and with it what the job holds (the review's body and
//! its share of the body budget), instead of waiting for a thread to skip it.
//!
//! The model is fair queuing by client address with equal weights (a round robin over the
//! addresses with work, as a deficit round robin with one job as the quantum): an address
//! sending many jobs waits for its own, and a new address is served after at most one job of
//! every other address with work.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Stack of a worker thread. The engine bounds every recursion (YAML depth 100, PromQL 256
/// brackets and 1000 operators); this leaves a wide margin over the 2 MiB default.
const STACK_BYTES: usize = 8 * 1024 * 1024;
/// Jobs waiting, all addresses together.
pub const QUEUED: usize = 64;
/// Jobs waiting from one client address.
pub const QUEUED_PER_LANE: usize = 8;
/// Whose queue a job waits in: a client address (none in-process).
pub type Lane = Option<IpAddr>;

/// Why a job did not run to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRun {
    /// The queue (all of it, or the address's) was full.
    Full,
    /// It could not start before its deadline.
    Expired,
    /// Its caller was gone before it started.
    Cancelled,
    /// It panicked, or no thread is left to run it.
    Lost,
}

/// What a thread hands a job: run, or say why not.
enum Start {
    Run,
    Skip(NotRun),
}

struct Job {
    id: u64,
    enqueued: Instant,
    start_by: Option<Instant>,
    cancel: Option<Arc<AtomicBool>>,
    run: Box<dyn FnOnce(Start) + Send>,
}

#[derive(Default)]
struct Queue {
    /// Lanes with jobs, in the order they are served next.
    lanes: VecDeque<(Lane, VecDeque<Job>)>,
    queued: usize,
    running: usize,
    /// Jobs running, by lane.
    running_in: HashMap<Lane, usize>,
    closed: bool,
    next_id: u64,
}

impl Queue {
    /// The next job: from the first lane (in turn) below `per_lane` running jobs.
    fn next(&mut self, per_lane: usize) -> Option<(Lane, Job)> {
        let at = self
            .lanes
            .iter()
            .position(|(lane, _)| self.running_in.get(lane).copied().unwrap_or(0) < per_lane)?;
        let (lane, mut jobs) = self.lanes.remove(at)?;
        let job = jobs.pop_front()?;
        if !jobs.is_empty() {
            self.lanes.push_back((lane, jobs));
        }
        self.queued -= 1;
        self.running += 1;
        *self.running_in.entry(lane).or_default() += 1;
        Some((lane, job))
    }

    /// Take job `id` of `lane` out of the queue if it still waits there.
    fn withdraw(&mut self, lane: Lane, id: u64) -> Option<Job> {
        let at = self.lanes.iter().position(|(l, _)| *l == lane)?;
        let jobs = &mut self.lanes[at].1;
        let job = jobs.remove(jobs.iter().position(|job| job.id == id)?)?;
        if jobs.is_empty() {
            self.lanes.remove(at);
        }
        self.queued -= 1;
        Some(job)
    }

    fn done(&mut self, lane: Lane) {
        self.running -= 1;
        if let Some(n) = self.running_in.get_mut(&lane) {
            *n -= 1;
            if *n == 0 {
                self.running_in.remove(&lane);
            }
        }
    }
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    threads: usize,
    /// Jobs one lane may have running at once: one thread is always left to the others.
    per_lane: usize,
    /// Told about every job not run because it expired or was cancelled.
    on_skip: Box<dyn Fn(NotRun) + Send + Sync>,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Ends the threads when the last [`Workers`] handle is dropped.
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.queue().closed = true;
        self.0.ready.notify_all();
    }
}

/// A fixed set of threads taking jobs from per-address queues in turn.
#[derive(Clone)]
pub struct Workers {
    shared: Arc<Shared>,
    _closer: Arc<Closer>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("threads", &self.shared.threads)
            .finish_non_exhaustive()
    }
}

/// How busy the threads are, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub threads: usize,
    pub running: usize,
    pub queued: usize,
    /// How long the job waiting longest has waited.
    pub oldest_wait: Duration,
}

impl Workers {
    /// `threads` threads (at least one), named `promfed-engine-N`.
    pub fn new(threads: usize) -> Workers {
        Workers::with_skip_hook(threads, |_| {})
    }

    /// [`Workers::new`], calling `on_skip` for every job not run because it expired or was
    /// cancelled before it started (for the metrics).
    pub fn with_skip_hook(
        threads: usize,
        on_skip: impl Fn(NotRun) + Send + Sync + 'static,
    ) -> Workers {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            threads,
            per_lane: threads.saturating_sub(1).max(1),
            on_skip: Box::new(on_skip),
        });
        for n in 0..threads {
            let shared = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("promfed-engine-{n}"))
                .stack_size(STACK_BYTES)
                .spawn(move || work(&shared));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start an engine thread");
            }
        }
        Workers {
            _closer: Arc::new(Closer(shared.clone())),
            shared,
        }
    }

    /// Run `work` on a worker thread, queued in `lane`, and wait for its result. A job whose
    /// `cancel` flag is set, or whose `start_by` has passed, before it starts is not run.
    pub async fn run<T: Send + 'static>(
        &self,
        lane: Lane,
        start_by: Option<Instant>,
        cancel: Option<Arc<AtomicBool>>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NotRun> {
        let (answer, result) = oneshot::channel();
        let mut job = Job {
            id: 0,
            enqueued: Instant::now(),
            start_by,
            cancel,
            run: Box::new(move |start| {
                let outcome = match start {
                    Start::Run => Ok(work()),
                    Start::Skip(why) => Err(why),
                };
                let _ = answer.send(outcome);
            }),
        };
        let id = {
            let mut queue = self.shared.queue();
            if queue.closed || queue.queued >= QUEUED {
                return Err(if queue.closed {
                    NotRun::Lost
                } else {
                    NotRun::Full
                });
            }
            let id = queue.next_id;
            job.id = id;
            match queue.lanes.iter_mut().find(|(l, _)| *l == lane) {
                Some((_, jobs)) if jobs.len() >= QUEUED_PER_LANE => return Err(NotRun::Full),
                Some((_, jobs)) => jobs.push_back(job),
                None => queue.lanes.push_back((lane, VecDeque::from([job]))),
            }
            queue.next_id += 1;
            queue.queued += 1;
            id
        };
        let _withdraw = Withdraw {
            shared: &self.shared,
            lane,
            id,
        };
        // All: a thread that may not take this lane's job lets another one try.
        self.shared.ready.notify_all();
        // A job that panicked dropped its answer channel.
        result.await.unwrap_or(Err(NotRun::Lost))
    }

    /// Jobs waiting now (for tests).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.shared.queue().queued
    }

    pub fn load(&self) -> Load {
        let queue = self.shared.queue();
        let now = Instant::now();
        let oldest_wait = queue
            .lanes
            .iter()
            .filter_map(|(_, jobs)| jobs.front())
            .map(|job| now - job.enqueued)
            .max()
            .unwrap_or_default();
        Load {
            threads: self.shared.threads,
            running: queue.running,
            queued: queue.queued,
            oldest_wait,
        }
    }
}

/// Takes a job out of the queue when its caller stops waiting for it (the future of
/// [`Workers::run`] dropped); a job already taken by a thread is left to it.
struct Withdraw<'a> {
    shared: &'a Shared,
    lane: Lane,
    id: u64,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        let job = self.shared.queue().withdraw(self.lane, self.id);
        if job.is_some() {
            (self.shared.on_skip)(NotRun::Cancelled);
        }
        // Dropped outside the lock: what the job holds is freed with it.
        drop(job);
    }
}

/// A worker thread: take the next lane's first job, move the lane to the back, run the job.
fn work(shared: &Shared) {
    loop {
        let (lane, job) = {
            let mut queue = shared.queue();
            loop {
                if let Some(next) = queue.next(shared.per_lane) {
                    break next;
                }
                if queue.closed {
                    return;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
        };
        let start = if job
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            Start::Skip(NotRun::Cancelled)
        } else if job.start_by.is_some_and(|by| Instant::now() >= by) {
            Start::Skip(NotRun::Expired)
        } else {
            Start::Run
        };
        if let Start::Skip(why) = start {
            (shared.on_skip)(why);
        }
        // A job that panics drops its answer channel (the caller sees that); the thread
        // lives on.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(move || (job.run)(start)));
        shared.queue().done(lane);
        // A lane below its cap again may have jobs another thread could not take.
        shared.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_a_panic_is_lost_and_leaves_the_threads_working() {
        let workers = Workers::new(2);
        assert_eq!(workers.run(None, None, None, || 6 * 7).await, Ok(42));
        assert_eq!(
            workers
                .run(None, None, None, || -> u8 { panic!("job bug") })
                .await,
            Err(NotRun::Lost)
        );
        let name = workers
            .run(None, None, None, || {
                std::thread::current().name().unwrap_or("").to_string()
            })
            .await
            .unwrap();
        assert!(name.starts_with("promfed-engine-"), "{name}");
        for i in 0..10 {
            assert_eq!(workers.run(None, None, None, move || i).await, Ok(i));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lanes_take_turns_and_a_full_lane_is_refused() {
        let workers = Workers::new(1);
        let a: Lane = Some("10.0.0.1".parse().unwrap());
        let b: Lane = Some("10.0.0.2".parse().unwrap());
        let order = Arc::new(Mutex::new(Vec::new()));
        // Hold the only thread so the queue fills.
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let held = {
            let (workers, gate) = (workers.clone(), gate.clone());
            tokio::spawn(async move {
                workers
                    .run(None, None, None, move || {
                        let (open, turn) = &*gate;
                        let mut open = open.lock().unwrap();
                        while !*open {
                            open = turn.wait(open).unwrap();
                        }
                    })
                    .await
            })
        };
        while workers.load().running == 0 {
            tokio::task::yield_now().await;
        }
        let mut jobs = Vec::new();
        for (lane, name) in [(a, "a1"), (a, "a2"), (a, "a3"), (b, "b1")] {
            let (w, order) = (workers.clone(), order.clone());
            jobs.push(tokio::spawn(async move {
                w.run(lane, None, None, move || order.lock().unwrap().push(name))
                    .await
            }));
            while workers.load().queued < jobs.len() {
                tokio::task::yield_now().await;
            }
        }
        for _ in 0..(QUEUED_PER_LANE - 3) {
            let (w, order) = (workers.clone(), order.clone());
            jobs.push(tokio::spawn(async move {
                w.run(a, None, None, move || order.lock().unwrap().push("a"))
                    .await
            }));
        }
        while workers.load().queued < QUEUED_PER_LANE + 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(workers.run(a, None, None, || ()).await, Err(NotRun::Full));
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        held.await.unwrap().unwrap();
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(
            &order[..3],
            ["a1", "b1", "a2"],
            "b does not wait for all of a"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_lane_leaves_a_thread_to_the_others() {
        let workers = Workers::new(2);
        let a: Lane = Some("10.0.0.1".parse().unwrap());
        let b: Lane = Some("10.0.0.2".parse().unwrap());
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let blocked = |workers: &Workers, lane: Lane| {
            let (workers, gate) = (workers.clone(), gate.clone());
            tokio::spawn(async move {
                workers
                    .run(lane, None, None, move || {
                        let (open, turn) = &*gate;
                        let mut open = open.lock().unwrap();
                        while !*open {
                            open = turn.wait(open).unwrap();
                        }
                    })
                    .await
            })
        };
        let a1 = blocked(&workers, a);
        let a2 = blocked(&workers, a);
        while workers.load().running + workers.load().queued < 2 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let load = workers.load();
        assert_eq!((load.running, load.queued), (1, 1), "a keeps to one thread");
        // b runs at once on the thread a may not take.
        assert_eq!(workers.run(b, None, None, || 7).await, Ok(7));
        let past = Some(Instant::now());
        assert_eq!(workers.run(b, past, None, || 8).await, Err(NotRun::Expired));
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        a1.await.unwrap().unwrap();
        a2.await.unwrap().unwrap();
    }

    /// A job whose caller stops waiting leaves the queue at once, and what it holds is freed
    /// (the issue: budget held by reviews whose client hung up, and `/readyz` stuck).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_whose_caller_is_gone_leaves_the_queue_and_frees_what_it_holds() {
        let workers = Workers::new(1);
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let held = {
            let (workers, gate) = (workers.clone(), gate.clone());
            tokio::spawn(async move {
                workers
                    .run(None, None, None, move || {
                        let (open, turn) = &*gate;
                        let mut open = open.lock().unwrap();
                        while !*open {
                            open = turn.wait(open).unwrap();
                        }
                    })
                    .await
            })
        };
        while workers.load().running == 0 {
            tokio::task::yield_now().await;
        }
        let holds = Arc::new(());
        let waiting: Vec<_> = (0..3u8)
            .map(|n| {
                let (workers, holds) = (workers.clone(), holds.clone());
                tokio::spawn(async move {
                    let lane = Some(IpAddr::from([10, 0, 0, n]));
                    workers.run(lane, None, None, move || drop(holds)).await
                })
            })
            .collect();
        while workers.queued() < 3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(Arc::strong_count(&holds), 4);
        for job in &waiting {
            job.abort();
        }
        for job in waiting {
            assert!(job.await.unwrap_err().is_cancelled());
        }
        assert_eq!(workers.queued(), 0);
        assert_eq!(Arc::strong_count(&holds), 1, "what the jobs held is freed");
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        held.await.unwrap().unwrap();
        assert_eq!(workers.run(None, None, None, || 5).await, Ok(5));
    }

    #[tokio::test]
    async fn a_cancelled_job_is_not_run() {
        let workers = Workers::new(1);
        let cancel = Arc::new(AtomicBool::new(true));
        assert_eq!(
            workers.run(None, None, Some(cancel), || 1).await,
            Err(NotRun::Cancelled)
        );
    }
}
