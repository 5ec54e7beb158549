//! The answers of one loaded config, remembered by content: kapp and helm re-apply the same
//! objects all day, and a cached answer costs microseconds where the engine takes up to
//! ~100 ms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::response::Verdict;

/// Responses remembered per loaded config.
pub const CACHE_ENTRIES: usize = 256;
/// Bytes of responses remembered per loaded config: the answer for a large ConfigMap can be
/// megabytes (its patch, base64), and 256 of them must not fill the memory. An answer over a
/// quarter of this is not remembered at all.
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// A small LRU bounded in entries and in bytes: a map plus a use counter; eviction scans for
/// the oldest entry, which is cheap at this size and happens only on a miss.
type Entry = (Arc<Verdict>, u64);

pub(super) struct Cache {
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
    pub(super) fn new(capacity: usize) -> Cache {
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

    pub(super) fn get(&self, key: &[u8; 32]) -> Option<Arc<Verdict>> {
        let now = self.tick();
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (verdict, used) = guard.0.get_mut(key)?;
        *used = now;
        Some(verdict.clone())
    }

    pub(super) fn insert(&self, key: [u8; 32], verdict: Arc<Verdict>) {
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

    pub(super) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
