//! A stream-to-stream join's state: the windowed stream's recent rows, and the driving rows
//! waiting for the watermark. A driving row joins only once the watermark has passed its
//! ROWTIME: by then every windowed row that precedes it has been read, even one that came in
//! a later round (from another shard, a few ms behind). Joining on arrival missed those.

use datafusion::arrow::record_batch::RecordBatch;

use crate::batches::{keep_rows, rowtimes};

#[derive(Debug, Default)]
pub struct JoinRows {
    history: Vec<RecordBatch>,
    pending: Vec<RecordBatch>,
}

impl JoinRows {
    /// Keeps rows of the windowed stream.
    pub fn keep(&mut self, rows: &RecordBatch) {
        if rows.num_rows() > 0 {
            self.history.push(rows.clone());
        }
    }

    /// Holds the driving rows after `after_ms` until the watermark passes them.
    pub fn pend(&mut self, rows: &RecordBatch, after_ms: i64) {
        self.pending.extend(rows_where(std::slice::from_ref(rows), |ms| ms > after_ms));
    }

    /// The windowed rows kept.
    pub fn history(&self) -> &[RecordBatch] {
        &self.history
    }

    /// Takes out the driving rows at or before `watermark_ms`; later ones keep waiting.
    pub fn take_due(&mut self, watermark_ms: i64) -> Vec<RecordBatch> {
        let due = rows_where(&self.pending, |ms| ms <= watermark_ms);
        self.pending = rows_where(&self.pending, |ms| ms > watermark_ms);
        due
    }

    /// Drops the windowed rows that no driving row after `joined_through_ms` reaches: such a
    /// row joins those of the `range_ms` before its own ROWTIME.
    pub fn trim(&mut self, joined_through_ms: i64, range_ms: i64) {
        let cutoff_ms = joined_through_ms.saturating_sub(range_ms);
        self.history = rows_where(&self.history, |ms| ms >= cutoff_ms);
    }

    /// The earliest ROWTIME held, windowed or waiting: a restart replays from there.
    pub fn held_from_ms(&self) -> Option<i64> {
        let batches = self.history.iter().chain(&self.pending);
        batches.filter_map(|b| rowtimes(b).ok()?.values().iter().copied().min()).min()
    }
}

/// The rows whose ROWTIME `keep` accepts, without the batches left empty.
fn rows_where(batches: &[RecordBatch], keep: impl Fn(i64) -> bool) -> Vec<RecordBatch> {
    batches
        .iter()
        .filter_map(|batch| {
            let times = rowtimes(batch).ok()?;
            keep_rows(batch, |row| keep(times.value(row))).ok()
        })
        .filter(|batch| batch.num_rows() > 0)
        .collect()
}
