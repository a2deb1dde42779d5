//! The rows a sliding window keeps between batches: those of its longest `RANGE ... PRECEDING`
//! before the latest row, and for `ROWS n PRECEDING` the last `n` rows of each partition. The
//! next batch is planned over these rows and its own, so each of its rows sees its whole frame.

use std::collections::HashMap;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::batches::{flagged, keep_rows, rowtimes};
use crate::dialect::History;

/// The rows of `batches` (in order) the next batch's windows reach back to, flagged as not new.
/// `partition` names the columns `ROWS` windows partition by (all of them: the last rows of
/// each finer partition include those of a coarser one); `None` keeps the whole stream's last.
pub fn trim_history(batches: Vec<RecordBatch>, history: History, partition: Option<&[String]>) -> Vec<RecordBatch> {
    let latest_ms = batches.iter().filter_map(|b| rowtimes(b).ok()?.values().iter().copied().max()).max();
    let Some(latest_ms) = latest_ms else { return Vec::new() };
    let cutoff_ms = latest_ms - history.range_ms as i64;
    let in_range = |ms: i64| history.range_ms > 0 && ms >= cutoff_ms;
    // RANGE alone filters batch by batch; counting the last rows of a partition needs the
    // rows in one order, so only ROWS pays for putting them into one batch.
    if history.rows == 0 {
        return batches.iter().filter_map(|batch| kept(batch, in_range, None)).collect();
    }
    let Ok(all) = concat_batches(&batches[0].schema(), &batches) else { return Vec::new() };
    let n = history.rows as usize;
    let last_rows = last_per_partition(&all, partition.unwrap_or_default(), n)
        .or_else(|_| last_per_partition(&all, &[], n))
        .unwrap_or_else(|_| vec![false; all.num_rows()]);
    kept(&all, in_range, Some(&last_rows)).into_iter().collect()
}

/// The rows of `batch` within range or marked in `last_rows`, flagged as not new; `None` when
/// none are.
fn kept(batch: &RecordBatch, in_range: impl Fn(i64) -> bool, last_rows: Option<&[bool]>) -> Option<RecordBatch> {
    let times = rowtimes(batch).ok()?;
    let last = |row: usize| last_rows.is_some_and(|last| last[row]);
    let kept = keep_rows(batch, |row| in_range(times.value(row)) || last(row)).ok()?;
    (kept.num_rows() > 0).then(|| flagged(&kept, false).ok()).flatten()
}

/// For each row of `batch`: whether it is among the last `n` of its partition (the rows with
/// its values in `columns`; every row is in one partition when there are none).
fn last_per_partition(batch: &RecordBatch, columns: &[String], n: usize) -> Result<Vec<bool>, ArrowError> {
    let total = batch.num_rows();
    if columns.is_empty() {
        return Ok((0..total).map(|row| row + n >= total).collect());
    }
    let arrays = columns.iter().map(|name| batch.column_by_name(name).cloned()).collect::<Option<Vec<_>>>();
    let arrays = arrays.ok_or_else(|| ArrowError::SchemaError("a partition column is not the stream's".into()))?;
    let converter = RowConverter::new(arrays.iter().map(|a| SortField::new(a.data_type().clone())).collect())?;
    let keys = converter.convert_columns(&arrays)?;
    let mut seen: HashMap<_, usize> = HashMap::new();
    let mut last = vec![false; total];
    for row in (0..total).rev() {
        let count = seen.entry(keys.row(row)).or_default();
        last[row] = *count < n;
        *count += 1;
    }
    Ok(last)
}
