//! The buffers of one shard being delivered at once. Writing a buffer (an upload, a POST) takes
//! longer than reading and cutting the next, so the next buffers start while earlier ones are
//! still on the wire; their checkpoint still moves strictly in order, so a crash leaves a list
//! of whole ranges to write again, each under its own deterministic key.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Buffers on the wire per shard at most.
pub const MAX_BUFFERS: usize = 4;
/// A buffer starts beside others only while those hold less than this: a few 5 MB buffers
/// overlap, a 128 MB one goes alone.
pub const MAX_BYTES: usize = 64 << 20;

/// What the checkpoint counts once a buffer is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub first_seq: u64,
    pub end_seq: u64,
    pub records: u64,
    pub bytes: u64,
    pub oldest_arrival_ms: u64,
}

/// One buffer on the wire: its summary and the task writing it (which answers its partitions).
struct Flight {
    summary: Summary,
    task: JoinHandle<u64>,
}

/// The shard's buffers on the wire, oldest first.
pub struct InFlight {
    flights: VecDeque<Flight>,
    bytes: usize,
    /// Woken by each task as it ends, so the shard's loop can wait for tips and ends at once.
    finished: Arc<Notify>,
}

impl InFlight {
    pub fn new() -> Self {
        InFlight { flights: VecDeque::new(), bytes: 0, finished: Arc::new(Notify::new()) }
    }

    /// Whether another buffer may start now.
    pub fn has_room(&self) -> bool {
        self.flights.is_empty() || (self.flights.len() < MAX_BUFFERS && self.bytes < MAX_BYTES)
    }

    /// Starts `delivery`; the task signals its end so that `finished()` wakes.
    pub fn start(&mut self, summary: Summary, delivery: impl Future<Output = u64> + Send + 'static) {
        let finished = self.finished.clone();
        let task = tokio::spawn(async move {
            let partitions = delivery.await;
            finished.notify_one();
            partitions
        });
        self.bytes += summary.bytes as usize;
        self.flights.push_back(Flight { summary, task });
    }

    /// Resolves when some task ended since the last call (at once if one ended in between).
    pub async fn finished(&self) {
        self.finished.notified().await;
    }

    /// The oldest buffer once its task ended (waiting for it when `wait`), with its partitions
    /// (`None` if the task panicked); `None` when nothing is on the wire, or the oldest is still
    /// running and `wait` is false.
    pub async fn pop_done(&mut self, wait: bool) -> Option<(Summary, Option<u64>)> {
        let front = self.flights.front()?;
        if !wait && !front.task.is_finished() {
            return None;
        }
        let flight = self.flights.pop_front()?;
        self.bytes -= flight.summary.bytes as usize;
        Some((flight.summary, flight.task.await.ok()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The shard's delivery was stopped: its writes stop with it.
        for flight in &self.flights {
            flight.task.abort();
        }
    }
}

/// Per shard, ranges of sequence numbers `[first, end)`, oldest first.
pub type RangesByShard = BTreeMap<u32, Vec<(u64, u64)>>;

/// The checkpoint's ranges in flight per shard: a list each, or one pair as checkpoints written
/// before deliveries overlapped hold.
pub fn ranges_by_shard<'de, D: Deserializer<'de>>(deserializer: D) -> Result<RangesByShard, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Many(Vec<(u64, u64)>),
        One((u64, u64)),
    }
    let stored = BTreeMap::<u32, Stored>::deserialize(deserializer)?;
    let ranges = |stored| match stored {
        Stored::Many(ranges) => ranges,
        Stored::One(range) => vec![range],
    };
    Ok(stored.into_iter().map(|(shard, stored)| (shard, ranges(stored))).collect())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct Stored {
        #[serde(deserialize_with = "ranges_by_shard")]
        in_flight: BTreeMap<u32, Vec<(u64, u64)>>,
    }

    #[test]
    fn checkpoints_from_before_overlapping_deliveries_read_as_one_range() {
        let old: Stored = serde_json::from_str(r#"{"in_flight": {"0": [5, 9]}}"#).expect("one pair");
        assert_eq!(old.in_flight, BTreeMap::from([(0, vec![(5, 9)])]));
        let new: Stored = serde_json::from_str(r#"{"in_flight": {"2": [[5, 9], [9, 12]], "3": []}}"#).expect("lists");
        assert_eq!(new.in_flight, BTreeMap::from([(2, vec![(5, 9), (9, 12)]), (3, vec![])]));
        assert!(serde_json::from_str::<Stored>(r#"{"in_flight": {"0": [5]}}"#).is_err());
    }

    #[tokio::test]
    async fn buffers_land_oldest_first_whatever_order_their_writes_end_in() {
        let mut flights = InFlight::new();
        let summary =
            |first_seq| Summary { first_seq, end_seq: first_seq + 1, records: 1, bytes: 10, oldest_arrival_ms: 0 };
        let (release_first, first_released) = tokio::sync::oneshot::channel::<()>();
        flights.start(summary(0), async move {
            let _ = first_released.await;
            7
        });
        flights.start(summary(1), async { 8 });
        assert!(flights.has_room());
        flights.finished().await;
        assert_eq!(flights.pop_done(false).await, None, "the second ended, but the first has not");
        let _ = release_first.send(());
        assert_eq!(flights.pop_done(true).await, Some((summary(0), Some(7))));
        assert_eq!(flights.pop_done(true).await, Some((summary(1), Some(8))));
        assert_eq!(flights.pop_done(true).await, None, "nothing left on the wire");
    }

    #[tokio::test]
    async fn room_is_bounded_by_count_and_bytes() {
        let mut flights = InFlight::new();
        let big = Summary { first_seq: 0, end_seq: 1, records: 1, bytes: MAX_BYTES as u64, oldest_arrival_ms: 0 };
        flights.start(big, std::future::pending());
        assert!(!flights.has_room(), "a buffer of the byte bound goes alone");
        let mut flights = InFlight::new();
        for first_seq in 0..MAX_BUFFERS as u64 {
            assert!(flights.has_room());
            let small = Summary { first_seq, end_seq: first_seq + 1, records: 1, bytes: 1, oldest_arrival_ms: 0 };
            flights.start(small, std::future::pending());
        }
        assert!(!flights.has_room());
    }
}
