//! Windows a partition's rows open: per partition, the window its first row opened, holding
//! its rows until its end (then the watermark closes it). A stagger window ends `range_ms`
//! after the row that opened it; a session window `gap_ms` after its latest row, so each row
//! within the gap extends it. A partition's row past its window's end ends that window and
//! opens the next.
//!
//! After a restart the windows open at the checkpoint are known by partition and opening time;
//! replayed rows go only to those (a replayed row of another partition belonged to a window
//! already written).

use std::collections::{BTreeMap, HashMap};

use datafusion::arrow::array::{Array, BooleanArray, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::batches::rowtimes;

/// When a partition's window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// WINDOWED BY STAGGER: `range_ms` after the row that opened it.
    Stagger { range_ms: i64 },
    /// GROUP BY SESSION: `gap_ms` after its latest row.
    Session { gap_ms: i64 },
}

#[derive(Debug)]
struct Window {
    key: Vec<u8>,
    open_ms: i64,
    /// The latest ROWTIME among its rows.
    last_ms: i64,
    rows: Vec<RecordBatch>,
}

impl Window {
    fn new(key: &[u8], open_ms: i64) -> Window {
        Window { key: key.to_vec(), open_ms, last_ms: open_ms, rows: Vec::new() }
    }

    fn end_ms(&self, rule: Rule) -> i64 {
        match rule {
            Rule::Stagger { range_ms } => self.open_ms + range_ms,
            Rule::Session { gap_ms } => self.last_ms + gap_ms,
        }
    }
}

/// A window closing: its partitions' earliest opening and their rows.
#[derive(Debug)]
pub struct Closing {
    pub start_ms: i64,
    pub rows: Vec<RecordBatch>,
}

#[derive(Debug)]
pub struct PartitionWindows {
    rule: Rule,
    open: HashMap<Vec<u8>, Window>,
    /// Windows a later row of their partition ended before the watermark closed them.
    ended: Vec<Window>,
    /// While replaying after a restart: the windows open at the checkpoint, by partition.
    restored: Option<HashMap<Vec<u8>, i64>>,
    converter: Option<RowConverter>,
}

impl PartitionWindows {
    pub fn new(rule: Rule) -> PartitionWindows {
        PartitionWindows { rule, open: HashMap::new(), ended: Vec::new(), restored: None, converter: None }
    }

    /// Puts each source row into its partition's window. `keys` has a row per source row: the
    /// partition's columns, then whether the query's WHERE keeps the row.
    pub fn hold(&mut self, rows: &RecordBatch, keys: &RecordBatch, replay: bool) -> Result<(), ArrowError> {
        if !replay {
            self.restored = None;
        }
        let Some((flag, partition)) = keys.columns().split_last() else { return Ok(()) };
        let kept = flag.as_any().downcast_ref::<BooleanArray>().cloned();
        let kept = kept.ok_or_else(|| ArrowError::SchemaError("the stagger key query's flag".into()))?;
        let converter = match &mut self.converter {
            Some(converter) => converter,
            None => {
                let fields = partition.iter().map(|c| SortField::new(c.data_type().clone())).collect();
                self.converter.insert(RowConverter::new(fields)?)
            }
        };
        let partitions = converter.convert_columns(partition)?;
        let times = rowtimes(rows)?;
        let mut placed: BTreeMap<(Vec<u8>, i64), Vec<u32>> = BTreeMap::new();
        for row in 0..rows.num_rows() {
            if kept.is_null(row) || !kept.value(row) {
                continue;
            }
            let key = partitions.row(row).as_ref().to_vec();
            if let Some(open_ms) = self.place(&key, times.value(row), replay) {
                placed.entry((key, open_ms)).or_default().push(row as u32);
            }
        }
        for ((key, open_ms), indices) in placed {
            let batch = take_record_batch(rows, &UInt32Array::from(indices))?;
            // The window may have ended within this batch, a later row opening the next.
            let window = match self.open.get_mut(&key) {
                Some(window) if window.open_ms == open_ms => Some(window),
                _ => self.ended.iter_mut().find(|w| w.key == key && w.open_ms == open_ms),
            };
            if let Some(window) = window {
                window.rows.push(batch);
            }
        }
        Ok(())
    }

    /// The window a row at `time_ms` of partition `key` goes to (opened or ended as needed);
    /// None for a replayed row of a window already written.
    fn place(&mut self, key: &[u8], time_ms: i64, replay: bool) -> Option<i64> {
        if replay && !self.open.contains_key(key) {
            let open_ms = *self.restored.as_ref()?.get(key)?;
            if time_ms < open_ms {
                return None;
            }
            self.open.insert(key.to_vec(), Window::new(key, open_ms));
        }
        let rule = self.rule;
        match self.open.get_mut(key) {
            Some(window) if time_ms < window.end_ms(rule) => {
                window.last_ms = window.last_ms.max(time_ms);
                return Some(window.open_ms);
            }
            Some(_) => {
                let ended = self.open.remove(key)?;
                self.ended.push(ended);
            }
            None => {}
        }
        self.open.insert(key.to_vec(), Window::new(key, time_ms));
        Some(time_ms)
    }

    /// The windows ending at or before `watermark_ms`, with their rows, grouped by end.
    pub fn close(&mut self, watermark_ms: i64) -> BTreeMap<i64, Closing> {
        let rule = self.rule;
        let due = |w: &Window| w.end_ms(rule) <= watermark_ms;
        let ending: Vec<Vec<u8>> = self.open.iter().filter(|(_, w)| due(w)).map(|(key, _)| key.clone()).collect();
        let mut windows: Vec<Window> = ending.iter().filter_map(|key| self.open.remove(key)).collect();
        let (closed, later): (Vec<Window>, Vec<Window>) = std::mem::take(&mut self.ended).into_iter().partition(due);
        self.ended = later;
        windows.extend(closed);
        let mut closing: BTreeMap<i64, Closing> = BTreeMap::new();
        for window in windows {
            let entry = closing.entry(window.end_ms(rule)).or_insert(Closing { start_ms: i64::MAX, rows: Vec::new() });
            entry.start_ms = entry.start_ms.min(window.open_ms);
            entry.rows.extend(window.rows);
        }
        closing
    }

    /// The earliest opening among windows not written yet.
    pub fn held_from_ms(&self) -> Option<i64> {
        self.open.values().chain(&self.ended).map(|w| w.open_ms).min()
    }

    /// The open windows, partition (hex) and opening, for a checkpoint.
    pub fn open_windows(&self) -> Vec<(String, i64)> {
        let mut windows: Vec<(String, i64)> = self.open.iter().map(|(key, w)| (to_hex(key), w.open_ms)).collect();
        windows.sort();
        windows
    }

    /// Where windows stood at a checkpoint: the replay refills these and no others.
    pub fn restore(&mut self, windows: &[(String, i64)]) {
        let restored = windows.iter().filter_map(|(key, open_ms)| Some((from_hex(key)?, *open_ms))).collect();
        self.restored = Some(restored);
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_survive_hex() {
        let key = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(from_hex(&to_hex(&key)), Some(key));
        assert_eq!(from_hex("abc"), None);
    }
}
