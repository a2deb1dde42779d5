//! Recently served segments, bounded in bytes. Every viewer of a live stream fetches the same
//! newest segments within a few seconds of each other; keeping them saves a store read and a
//! remux per viewer. Archive playback rarely repeats, so least-recently-used entries go first.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;

/// Which segment: the stream's engine id, the fragment's sequence number, and the rendition
/// (an fMP4 track number, or 0 for the TS segment holding every track).
pub type SegmentKey = (u64, u64, u64);

#[derive(Debug)]
pub struct SegmentCache {
    budget_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<SegmentKey, (Bytes, u64)>,
    held_bytes: usize,
    clock: u64,
}

impl SegmentCache {
    pub fn new(budget_bytes: usize) -> SegmentCache {
        SegmentCache { budget_bytes, inner: Mutex::new(Inner::default()) }
    }

    pub fn get(&self, key: SegmentKey) -> Option<Bytes> {
        let mut inner = self.inner.lock().ok()?;
        inner.clock += 1;
        let now = inner.clock;
        let (bytes, used) = inner.entries.get_mut(&key)?;
        *used = now;
        Some(bytes.clone())
    }

    /// Keeps `bytes` unless they alone exceed a quarter of the budget (one huge segment must not
    /// flush every live viewer's), evicting the least recently used entries to make room.
    pub fn insert(&self, key: SegmentKey, bytes: Bytes) {
        if bytes.len() > self.budget_bytes / 4 {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else { return };
        inner.clock += 1;
        let now = inner.clock;
        if let Some((old, _)) = inner.entries.insert(key, (bytes.clone(), now)) {
            inner.held_bytes -= old.len();
        }
        inner.held_bytes += bytes.len();
        while inner.held_bytes > self.budget_bytes {
            // A linear scan is fine: a budget of tens of MB holds tens of segments.
            let Some(oldest) = inner.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(key, _)| *key) else {
                break;
            };
            if let Some((evicted, _)) = inner.entries.remove(&oldest) {
                inner.held_bytes -= evicted.len();
            }
        }
    }

    #[cfg(test)]
    fn held_bytes(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.held_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize) -> Bytes {
        Bytes::from(vec![7; len])
    }

    #[test]
    fn the_least_recently_used_segment_goes_first_and_the_budget_holds() {
        let cache = SegmentCache::new(100);
        cache.insert((1, 1, 1), bytes(25));
        cache.insert((1, 2, 1), bytes(25));
        cache.insert((1, 3, 1), bytes(25));
        cache.insert((1, 4, 1), bytes(25));
        assert!(cache.get((1, 1, 1)).is_some(), "touching the oldest makes it the newest");
        cache.insert((1, 5, 1), bytes(25));
        assert!(cache.get((1, 2, 1)).is_none(), "the least recently used was evicted");
        assert!(cache.get((1, 1, 1)).is_some());
        assert_eq!(cache.held_bytes(), 100);
    }

    #[test]
    fn a_segment_over_a_quarter_of_the_budget_is_not_kept() {
        let cache = SegmentCache::new(100);
        cache.insert((1, 1, 1), bytes(10));
        cache.insert((1, 2, 1), bytes(26));
        assert!(cache.get((1, 2, 1)).is_none());
        assert!(cache.get((1, 1, 1)).is_some());
    }

    #[test]
    fn replacing_a_key_keeps_the_count_right() {
        let cache = SegmentCache::new(100);
        cache.insert((1, 1, 1), bytes(20));
        cache.insert((1, 1, 1), bytes(10));
        assert_eq!(cache.held_bytes(), 10);
    }
}
