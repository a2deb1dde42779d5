//! The records of a flow waiting to be sent, cut as the Agent cuts its buffers: at
//! `maxBufferSizeRecords`, at `maxBufferSizeBytes`, or when the oldest is `maxBufferAgeMillis` old.

use std::time::{Duration, Instant};

use super::files::Origin;

/// One record read from a file. `data` is `None` for a record a converter refused: it is not
/// sent, but its position is acknowledged with the others.
#[derive(Debug)]
pub struct Entry {
    pub origin: Origin,
    pub end_offset: u64,
    pub data: Option<Vec<u8>>,
}

#[derive(Debug)]
pub struct Batch {
    pub entries: Vec<Entry>,
    bytes: usize,
    records: usize,
    started: Option<Instant>,
    max_records: usize,
    max_bytes: usize,
    max_age: Duration,
}

impl Batch {
    pub fn new(max_records: usize, max_bytes: usize, max_age: Duration) -> Batch {
        Batch { entries: Vec::new(), bytes: 0, records: 0, started: None, max_records, max_bytes, max_age }
    }

    /// Whether `bytes` more would go past the size limit (the record then waits for the next batch).
    pub fn would_overflow(&self, bytes: usize) -> bool {
        self.records > 0 && self.bytes + bytes > self.max_bytes
    }

    pub fn push(&mut self, entry: Entry, bytes: usize) {
        self.started.get_or_insert_with(Instant::now);
        if entry.data.is_some() {
            self.records += 1;
            self.bytes += bytes;
        }
        self.entries.push(entry);
    }

    /// Room for this many more records.
    pub fn room(&self) -> usize {
        self.max_records.saturating_sub(self.records)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Full, or old enough to go.
    pub fn is_ready(&self) -> bool {
        self.records >= self.max_records || self.bytes >= self.max_bytes || self.age() >= self.max_age
    }

    /// How long until the age limit sends it.
    pub fn time_left(&self) -> Duration {
        self.max_age.saturating_sub(self.age())
    }

    fn age(&self) -> Duration {
        self.started.map_or(Duration::ZERO, |at| at.elapsed())
    }

    pub fn take(&mut self) -> Vec<Entry> {
        (self.bytes, self.records, self.started) = (0, 0, None);
        std::mem::take(&mut self.entries)
    }
}
