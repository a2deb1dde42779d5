//! Rows of in-application streams as Arrow batches: their schema (ROWTIME, the declared
//! columns, the hidden "new" flag), and the cuts and casts the pumps need.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, TimestampMillisecondArray, UInt32Array, new_null_array};
use datafusion::arrow::compute::{SortColumn, cast, filter_record_batch, lexsort_to_indices, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

use crate::dialect::{HIDDEN_NEW, ROWTIME};
use crate::sql_type::SqlType;

pub const ROWTIME_TYPE: DataType = DataType::Timestamp(TimeUnit::Millisecond, None);

/// An in-application stream's table: ROWTIME, its columns, then the hidden flag.
pub fn stream_schema(columns: &[(String, SqlType)]) -> SchemaRef {
    let mut fields = vec![Field::new(ROWTIME, ROWTIME_TYPE, false)];
    fields.extend(columns.iter().map(|(name, sql_type)| Field::new(name, sql_type.arrow.clone(), true)));
    fields.push(Field::new(HIDDEN_NEW, DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// A reference table's schema: its columns only (it has no ROWTIME).
pub fn table_schema(columns: &[(String, SqlType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns.iter().map(|(name, sql_type)| Field::new(name, sql_type.arrow.clone(), true)).collect::<Vec<_>>(),
    ))
}

/// A reference table with no rows (for checking code before its rows are read).
pub fn empty_table(columns: &[(String, SqlType)]) -> RecordBatch {
    RecordBatch::new_empty(table_schema(columns))
}

/// The batch with its hidden flag set to `new` on every row.
pub fn flagged(batch: &RecordBatch, new: bool) -> Result<RecordBatch, ArrowError> {
    let mut columns = batch.columns().to_vec();
    let flag: ArrayRef = Arc::new(BooleanArray::from(vec![new; batch.num_rows()]));
    match columns.last_mut() {
        Some(last) => *last = flag,
        None => return Err(ArrowError::SchemaError("a stream batch has no columns".into())),
    }
    RecordBatch::try_new(batch.schema(), columns)
}

/// The batch without its hidden flag: what leaves the application.
pub fn visible(batch: &RecordBatch) -> RecordBatch {
    let mut batch = batch.clone();
    if batch.schema().fields().last().is_some_and(|f| f.name() == HIDDEN_NEW) {
        batch.remove_column(batch.num_columns() - 1);
    }
    batch
}

/// ROWTIME of each row (the first column).
pub fn rowtimes(batch: &RecordBatch) -> Result<&TimestampMillisecondArray, ArrowError> {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(|| ArrowError::SchemaError("ROWTIME is not a millisecond timestamp".into()))
}

/// The batch's rows by tumbling window: start (ms) to rows.
pub fn split_by_window(batch: &RecordBatch, length_ms: i64) -> Result<BTreeMap<i64, RecordBatch>, ArrowError> {
    let mut rows: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (row, time) in rowtimes(batch)?.values().iter().enumerate() {
        rows.entry(time.div_euclid(length_ms) * length_ms).or_default().push(row as u32);
    }
    rows.into_iter()
        .map(|(start, indices)| Ok((start, take_record_batch(batch, &UInt32Array::from(indices))?)))
        .collect()
}

/// The rows the predicate keeps.
pub fn keep_rows(batch: &RecordBatch, keep: impl Fn(usize) -> bool) -> Result<RecordBatch, ArrowError> {
    let mask = BooleanArray::from((0..batch.num_rows()).map(keep).collect::<Vec<bool>>());
    filter_record_batch(batch, &mask)
}

/// The rows in the order of their values, column by column: a window's result comes out in the
/// same order every time it is computed, so each row keeps its place (and its id) in a rewrite.
pub fn in_value_order(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<SortColumn> =
        batch.columns().iter().map(|values| SortColumn { values: values.clone(), options: None }).collect();
    let indices = lexsort_to_indices(&columns, None)?;
    take_record_batch(batch, &indices)
}

/// Where a pump's result rows get their ROWTIME.
#[derive(Debug, Clone, Copy)]
pub enum Rowtime {
    /// From a column of the result (the source row's, carried through).
    Column(usize),
    /// One time for every row (a window's end).
    At(i64),
}

/// A pump's result as rows of its target stream: each target column from the result column
/// `mapping` names (or NULL), cast to the target's type; the hidden flag set.
pub fn into_target(
    result: &RecordBatch,
    target: &SchemaRef,
    mapping: &[Option<usize>],
    rowtime: Rowtime,
) -> Result<RecordBatch, ArrowError> {
    let rows = result.num_rows();
    let rowtime: ArrayRef = match rowtime {
        Rowtime::Column(index) => cast(result.column(index), &ROWTIME_TYPE)?,
        Rowtime::At(ms) => Arc::new(TimestampMillisecondArray::from(vec![ms; rows])),
    };
    let mut columns = vec![rowtime];
    for (field, source) in target.fields().iter().skip(1).take(target.fields().len() - 2).zip(mapping) {
        columns.push(match source {
            Some(index) => cast(result.column(*index), field.data_type())?,
            None => new_null_array(field.data_type(), rows),
        });
    }
    columns.push(Arc::new(BooleanArray::from(vec![true; rows])));
    RecordBatch::try_new(target.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_type::parse_sql_type;
    use datafusion::arrow::array::Int32Array;

    fn batch(times: &[i64], values: &[i32]) -> RecordBatch {
        let schema = stream_schema(&[("V".into(), parse_sql_type("INTEGER").expect("as the test set it up"))]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMillisecondArray::from(times.to_vec())),
            Arc::new(Int32Array::from(values.to_vec())),
            Arc::new(BooleanArray::from(vec![true; times.len()])),
        ];
        RecordBatch::try_new(schema, columns).expect("as the test set it up")
    }

    #[test]
    fn rows_fall_into_the_window_of_their_rowtime() {
        let windows = split_by_window(&batch(&[59_999, 60_000, 1_000, 119_999], &[1, 2, 3, 4]), 60_000)
            .expect("as the test set it up");
        let starts: Vec<i64> = windows.keys().copied().collect();
        assert_eq!(starts, [0, 60_000]);
        assert_eq!(windows[&0].num_rows(), 2);
        assert_eq!(windows[&60_000].num_rows(), 2);
    }

    #[test]
    fn the_hidden_flag_is_set_and_dropped() {
        let old = flagged(&batch(&[1], &[1]), false).expect("as the test set it up");
        let flag = old.column(2).as_any().downcast_ref::<BooleanArray>().expect("as the test set it up");
        assert!(!flag.value(0));
        assert_eq!(visible(&old).num_columns(), 2);
    }
}
