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
    let Some(schema) = batches.first().map(RecordBatch::schema) else { return Vec::new() };
    let Ok(all) = concat_batches(&schema, &batches) else { return Vec::new() };
    let Ok(times) = rowtimes(&all) else { return Vec::new() };
    let Some(latest_ms) = times.values().iter().copied().max() else { return Vec::new() };
    let cutoff_ms = latest_ms - history.range_ms as i64;
    let in_range = |row: usize| history.range_ms > 0 && times.value(row) >= cutoff_ms;
    let last_rows = match history.rows {
        0 => vec![false; all.num_rows()],
        n => last_per_partition(&all, partition.unwrap_or_default(), n as usize)
            .or_else(|_| last_per_partition(&all, &[], n as usize))
            .unwrap_or_else(|_| vec![false; all.num_rows()]),
    };
    match keep_rows(&all, |row| in_range(row) || last_rows[row]).and_then(|kept| flagged(&kept, false)) {
        Ok(kept) if kept.num_rows() > 0 => vec![kept],
        _ => Vec::new(),
    }
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
