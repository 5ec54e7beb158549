//! The request-body budget: how many request bytes promfed holds at once, and who may hold
//! how much of it.
//!
//! A review costs a few times its size while it is parsed and rewritten, so the bytes held
//! bound the process's memory: 24 concurrent 2 MiB reviews reached 156 MiB without a budget
//! (the Deployment's limit is 128 MiB). A request holds its share from its first body bytes
//! until its answer is sent.
//!
//! So that nobody can hold the budget hostage:
//! - A request holds what has *arrived* up to its first [`STEP_BYTES`], and only then its
//!   whole declared length, at once (a body without a length: a step ahead of what arrived).
//!   A client that declares 3 MiB and sends a byte a second holds a KiB per KiB sent, an
//!   HTTP/2 stream without DATA nothing; and large bodies arriving together do not each hold
//!   a part while waiting for the rest (they queue, first come first served).
//! - One connection (its HTTP/2 streams together) holds at most [`CONNECTION_SHARE_BYTES`],
//!   one client address at most [`ADDRESS_SHARE_BYTES`].
//! - Waiting for budget is bounded: a request waits at most [`WAIT`] in all, within its
//!   body timer (30 s), then gets 429 (its connection's or address's share is full) or 503
//!   (the budget is full), with `Retry-After`, as kube-apiserver's max-in-flight does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::admission::MAX_BODY_BYTES;

/// Request bytes held at once, all requests together.
pub const BODY_BUDGET_BYTES: usize = 8 * 1024 * 1024;
/// What one client address may hold: three quarters of the budget, so that a neighbour at one
/// address leaves 2 MiB (a 1 MiB ConfigMap's review) to everyone else.
pub const ADDRESS_SHARE_BYTES: usize = BODY_BUDGET_BYTES / 4 * 3;
/// What one connection may hold (its HTTP/2 streams together): one review of the largest size.
pub const CONNECTION_SHARE_BYTES: usize = MAX_BODY_BYTES + STEP_BYTES;
/// What a body holds before it holds its declared length.
pub const STEP_BYTES: usize = 64 * 1024;
/// The longest a request waits for budget, in all: what is left of the API server's 5 s
/// (`timeoutSeconds`) is enough to answer a large review.
pub const WAIT: Duration = Duration::from_secs(3);
/// What a client is told to wait before retrying, seconds.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Budget is accounted in KiB (semaphore permits).
const KIB: usize = 1024;

/// Whose share ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Short {
    /// The connection's share ([`CONNECTION_SHARE_BYTES`]): 429.
    Connection,
    /// The client address's share ([`ADDRESS_SHARE_BYTES`]): 429.
    Address,
    /// The whole budget: 503.
    Budget,
}

/// The budget of the process.
#[derive(Debug)]
pub struct BodyBudget {
    total: Arc<Semaphore>,
    addresses: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
    /// Requests waiting for budget right now.
    waiting: AtomicUsize,
    /// Requests waiting for the whole budget (not their own share) right now.
    waiting_for_total: AtomicUsize,
}

impl Default for BodyBudget {
    fn default() -> Self {
        BodyBudget::new()
    }
}

impl BodyBudget {
    pub fn new() -> BodyBudget {
        BodyBudget {
            total: Arc::new(Semaphore::new(BODY_BUDGET_BYTES / KIB)),
            addresses: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            waiting_for_total: AtomicUsize::new(0),
        }
    }

    /// A new connection's share.
    pub fn connection_share() -> Arc<Semaphore> {
        Arc::new(Semaphore::new(CONNECTION_SHARE_BYTES / KIB))
    }

    /// Bytes of the budget free now.
    pub fn free_bytes(&self) -> usize {
        self.total.available_permits() * KIB
    }

    /// Requests waiting for budget now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Requests waiting now because the whole budget is in use (not only their address's or
    /// connection's share): a new review would wait too.
    pub fn waiting_for_total(&self) -> usize {
        self.waiting_for_total.load(Ordering::Relaxed)
    }

    /// An empty reservation for a request from `address` on a connection with `connection`
    /// as its share (both unknown in-process).
    pub fn reserve(
        self: &Arc<Self>,
        address: Option<IpAddr>,
        connection: Option<Arc<Semaphore>>,
    ) -> Reservation {
        let address = address.map(|address| {
            let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
            let share = addresses
                .entry(address)
                .or_insert_with(|| Arc::new(Semaphore::new(ADDRESS_SHARE_BYTES / KIB)));
            (address, share.clone())
        });
        Reservation {
            budget: self.clone(),
            address,
            connection,
            held: Vec::new(),
            kib: 0,
            wait_left: WAIT,
        }
    }
}

/// The budget one request holds; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    address: Option<(IpAddr, Arc<Semaphore>)>,
    connection: Option<Arc<Semaphore>>,
    /// Permits of the connection, the address and the budget, in that order of acquiring.
    held: Vec<OwnedSemaphorePermit>,
    kib: usize,
    wait_left: Duration,
}

impl Reservation {
    /// Bytes reserved.
    pub fn bytes(&self) -> usize {
        self.kib * KIB
    }

    /// Make sure `bytes` are reserved, waiting at most what is left of [`WAIT`] and never
    /// past `deadline`.
    pub async fn cover(&mut self, bytes: usize, deadline: Instant) -> Result<(), Short> {
        let want = bytes.div_ceil(KIB).max(1);
        if want <= self.kib {
            return Ok(());
        }
        let more = (want - self.kib) as u32;
        let started = Instant::now();
        let until = deadline.min(started + self.wait_left);
        // Counted by a guard: a waiter whose client hung up (its future dropped mid-wait,
        // as hyper does on an HTTP/1 close or an HTTP/2 RST_STREAM) is no longer counted.
        let waiting = Waiting::count(&self.budget.waiting);
        let taken = self.take(more, until).await;
        drop(waiting);
        self.wait_left = self.wait_left.saturating_sub(started.elapsed());
        let taken = taken?;
        self.held.extend(taken);
        self.kib += more as usize;
        Ok(())
    }

    /// `kib` permits from each share (connection, address, budget), or none.
    async fn take(&self, kib: u32, until: Instant) -> Result<Vec<OwnedSemaphorePermit>, Short> {
        let mut taken = Vec::with_capacity(3);
        let shares = [
            (self.connection.as_ref(), Short::Connection),
            (self.address.as_ref().map(|(_, s)| s), Short::Address),
            (Some(&self.budget.total), Short::Budget),
        ];
        for (share, short) in shares {
            let Some(share) = share else { continue };
            // More than a share can ever give is refused at once instead of waited for.
            if kib as usize > total_permits(short) {
                return Err(short);
            }
            let total = short == Short::Budget && share.available_permits() < kib as usize;
            let waiting = total.then(|| Waiting::count(&self.budget.waiting_for_total));
            let acquired =
                tokio::time::timeout_at(until, share.clone().acquire_many_owned(kib)).await;
            drop(waiting);
            match acquired {
                Ok(Ok(permit)) => taken.push(permit),
                // Never closed; a timeout is the share being full.
                _ => return Err(short),
            }
        }
        Ok(taken)
    }
}

/// One waiter counted in a gauge for as long as it lives: dropped with the future that waits,
/// however that future ends.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(gauge: &'a AtomicUsize) -> Waiting<'a> {
        gauge.fetch_add(1, Ordering::Relaxed);
        Waiting(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn total_permits(short: Short) -> usize {
    match short {
        Short::Connection => CONNECTION_SHARE_BYTES / KIB,
        Short::Address => ADDRESS_SHARE_BYTES / KIB,
        Short::Budget => BODY_BUDGET_BYTES / KIB,
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.held.clear();
        // Forget an address once nothing of it is held (the map stays as small as the set
        // of addresses with requests in flight).
        if let Some((address, share)) = self.address.take() {
            let mut addresses = self
                .budget
                .addresses
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // Ours and the map's: nobody else is reserving for this address.
            if Arc::strong_count(&share) <= 2 {
                addresses.remove(&address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn shares_run_out_in_order_and_waiting_is_bounded() {
        let budget = Arc::new(BodyBudget::new());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let conn = BodyBudget::connection_share();
        let mut first = budget.reserve(Some(a), Some(conn.clone()));
        first.cover(MAX_BODY_BYTES, soon()).await.unwrap();
        // The same connection cannot take a second large body.
        let mut second = budget.reserve(Some(a), Some(conn.clone()));
        let started = std::time::Instant::now();
        assert_eq!(
            second.cover(MAX_BODY_BYTES, soon()).await,
            Err(Short::Connection)
        );
        assert!(started.elapsed() >= WAIT);
        // Nor can the address, from other connections, beyond its share.
        let mut third = budget.reserve(Some(a), Some(BodyBudget::connection_share()));
        third.cover(2 * 1024 * 1024, soon()).await.unwrap();
        let mut fourth = budget.reserve(Some(a), Some(BodyBudget::connection_share()));
        assert_eq!(
            fourth.cover(2 * 1024 * 1024, soon()).await,
            Err(Short::Address)
        );
        assert_eq!(fourth.bytes(), 0, "a refused step holds nothing");
        // Another address gets what is left, then the budget is full for a third.
        let mut other = budget.reserve(Some(b), None);
        other.cover(3 * 1024 * 1024, soon()).await.unwrap();
        let mut c = budget.reserve(Some("10.0.0.3".parse().unwrap()), None);
        assert_eq!(c.cover(1024 * 1024, soon()).await, Err(Short::Budget));
        let started = std::time::Instant::now();
        assert_eq!(
            c.cover(1024 * 1024, soon()).await,
            Err(Short::Budget),
            "its wait is used up"
        );
        assert!(started.elapsed() < WAIT / 2);
        drop((first, c));
        let mut c = budget.reserve(Some("10.0.0.3".parse().unwrap()), None);
        c.cover(2 * 1024 * 1024, soon()).await.unwrap();
        drop((second, third, fourth, other, c));
        assert_eq!(budget.free_bytes(), BODY_BUDGET_BYTES);
        assert!(budget.addresses.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_waiting_request_gets_budget_as_soon_as_it_is_freed() {
        let budget = Arc::new(BodyBudget::new());
        let mut all = budget.reserve(None, None);
        all.cover(BODY_BUDGET_BYTES, soon()).await.unwrap();
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let mut r = budget.reserve(None, None);
                r.cover(1024, soon()).await.map(|()| r.bytes())
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(budget.waiting(), 1);
        drop(all);
        assert_eq!(waiter.await.unwrap(), Ok(1024));
    }

    /// A waiter whose client hangs up (its future dropped mid-wait) is counted no more: the
    /// issue's `/readyz` stuck at 503 for good after three such waiters.
    #[tokio::test]
    async fn a_waiter_that_is_dropped_is_no_longer_counted() {
        let budget = Arc::new(BodyBudget::new());
        let mut most = budget.reserve(None, None);
        most.cover(BODY_BUDGET_BYTES - 1024, soon()).await.unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|n| {
                let budget = budget.clone();
                let address = IpAddr::from([10, 0, 0, n]);
                tokio::spawn(async move {
                    let mut r = budget.reserve(Some(address), Some(BodyBudget::connection_share()));
                    r.cover(MAX_BODY_BYTES, soon()).await
                })
            })
            .collect();
        while budget.waiting_for_total() < 3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(budget.waiting(), 3);
        for waiter in &waiters {
            waiter.abort();
        }
        for waiter in waiters {
            assert!(waiter.await.unwrap_err().is_cancelled());
        }
        assert_eq!((budget.waiting(), budget.waiting_for_total()), (0, 0));
        assert!(
            budget.addresses.lock().unwrap().is_empty(),
            "their addresses are forgotten"
        );
        drop(most);
        assert_eq!(budget.free_bytes(), BODY_BUDGET_BYTES);
    }
}
