//! RANDOM_CUT_FOREST as a continuous operator: each row's numeric columns are a point; the row
//! is scored against the forest built from the rows before it, then added to it. The forest is
//! AWS's Random Cut Forest library (krcflib), so scores behave as the service's did: near 1 for
//! ordinary points, higher the more a point stands apart, 0 while the forest is still filling.
//!
//! The model can be written out and read back (`snapshot`, `restore`), with the ROWTIME of the
//! last row it took in, so a restarted application feeds it only the rows after that.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float32Array, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use rcflib::rcf::{AugmentedRCF, RCFBuilder, RCFLarge, RCFOptionsBuilder};

use crate::batches::rowtimes;
use crate::error::{AnalyticsError, Result};

/// The column a forest adds to its input's.
pub const ANOMALY_SCORE: &str = "ANOMALY_SCORE";
/// The column RANDOM_CUT_FOREST_WITH_EXPLANATION adds after the score.
pub const ANOMALY_EXPLANATION: &str = "ANOMALY_EXPLANATION";

/// The function's parameters after its input stream, as the SQL reference names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForestParams {
    pub number_of_trees: usize,
    pub sub_sample_size: usize,
    /// How many recent rows the forest's sample favours (its decay is the inverse).
    pub time_decay: u64,
    pub shingle_size: usize,
    /// RANDOM_CUT_FOREST_WITH_EXPLANATION: each row's attribution by column, and with `true`
    /// (withDirectionality) whether each column stands out high or low.
    pub explanation: Option<bool>,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            number_of_trees: 100,
            sub_sample_size: 256,
            time_decay: 100_000,
            shingle_size: 1,
            explanation: None,
        }
    }
}

/// A fixed seed: the same rows build the same forest, so a replay gives the same scores.
const SEED: u64 = 0x4b44_4152_4346;

/// The columns the forest scores: those of the numeric types the function accepts.
pub fn is_scored_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::Float32 | DataType::Float64
    )
}

/// The indexes of `schema`'s numeric columns after ROWTIME, but for the function's own `added`.
pub fn numeric_columns(schema: &SchemaRef, added: &str) -> Vec<usize> {
    let numeric = |i: &usize| {
        let field = schema.field(*i);
        field.name() != added && is_scored_type(field.data_type())
    };
    (1..schema.fields().len()).filter(numeric).collect()
}

#[derive(Debug, Clone)]
pub struct Forest {
    model: RCFLarge<u64, u64>,
    /// Indexes of the scored columns in the rows the forest is given, and their names.
    columns: Vec<usize>,
    names: Vec<String>,
    explanation: Option<bool>,
    /// ROWTIME of the last row taken in; a replay skips rows up to it.
    absorbed_through_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot {
    absorbed_through_ms: i64,
    model: RCFLarge<u64, u64>,
}

impl Forest {
    /// A forest for rows of `schema` (ROWTIME first), scoring its numeric columns.
    pub fn new(params: ForestParams, schema: &SchemaRef) -> Result<Forest> {
        let columns = numeric_columns(schema, ANOMALY_SCORE);
        if columns.is_empty() {
            return Err(AnalyticsError::Plan(
                "RANDOM_CUT_FOREST needs a numeric column (DOUBLE, REAL, INTEGER, BIGINT, SMALLINT or TINYINT).".into(),
            ));
        }
        let mut builder = RCFBuilder::new(columns.len(), params.shingle_size);
        builder
            .number_of_trees(params.number_of_trees)
            .tree_capacity(params.sub_sample_size)
            .time_decay(1.0 / params.time_decay as f64)
            .random_seed(SEED)
            .parallel_enabled(false);
        let model = builder.build_large_simple::<u64>().map_err(|e| AnalyticsError::Plan(e.to_string()))?;
        let names = columns.iter().map(|&i| schema.field(i).name().clone()).collect();
        Ok(Forest { model, columns, names, explanation: params.explanation, absorbed_through_ms: i64::MIN })
    }

    /// Scores each row (of the schema `new` was given) and takes it in; with an explanation, each
    /// row's too. With `replay`, rows are only taken in, and only those after the last row
    /// taken in.
    pub fn score(&mut self, rows: &RecordBatch, replay: bool) -> Result<(ArrayRef, Option<ArrayRef>)> {
        let times = rowtimes(rows).map_err(runtime)?.clone();
        let values: Vec<Float32Array> = self.columns.iter().map(|&i| as_f32(rows.column(i))).collect::<Result<_>>()?;
        let mut scores = Vec::with_capacity(rows.num_rows());
        let mut explanations: Vec<Option<String>> = Vec::new();
        let mut point = vec![0f32; self.columns.len()];
        for row in 0..rows.num_rows() {
            let time = times.value(row);
            if replay && time <= self.absorbed_through_ms {
                scores.push(0.0);
                explanations.push(None);
                continue;
            }
            for (slot, column) in point.iter_mut().zip(&values) {
                let value = if column.is_null(row) { 0.0 } else { column.value(row) };
                *slot = if value.is_finite() { value } else { 0.0 };
            }
            scores.push(if replay { 0.0 } else { self.model.score(&point).map_err(model_error)? });
            explanations.push(match self.explanation {
                Some(directed) if !replay => Some(self.explain(&point, directed)?),
                _ => None,
            });
            self.model.update(&point, 0).map_err(model_error)?;
            self.absorbed_through_ms = self.absorbed_through_ms.max(time);
        }
        let explained = self.explanation.map(|_| Arc::new(StringArray::from(explanations)) as ArrayRef);
        Ok((Arc::new(Float64Array::from(scores)), explained))
    }

    /// The service's ANOMALY_EXPLANATION of a point, before it is taken in: per column
    /// `{"ATTRIBUTION_SCORE"}`, and with `directed` `"DIRECTION"` (`HIGH` or `LOW`) and
    /// `"STRENGTH"`, as text with four decimals. A column's attribution sums its places in
    /// every shingle, so the attributions add up to the score.
    fn explain(&self, point: &[f32], directed: bool) -> Result<String> {
        let attribution = self.model.attribution(point).map_err(model_error)?;
        let width = self.columns.len();
        let mut explained = serde_json::Map::new();
        for (column, name) in self.names.iter().enumerate() {
            let places = (column..attribution.high.len()).step_by(width);
            let (high, low) = places.fold((0.0, 0.0), |(h, l), i| (h + attribution.high[i], l + attribution.low[i]));
            let mut entry = serde_json::Map::new();
            if directed {
                entry.insert("DIRECTION".into(), (if high >= low { "HIGH" } else { "LOW" }).into());
                entry.insert("STRENGTH".into(), format!("{:.4}", (high - low).abs()).into());
            }
            entry.insert("ATTRIBUTION_SCORE".into(), format!("{:.4}", high + low).into());
            explained.insert(name.clone(), entry.into());
        }
        Ok(serde_json::Value::Object(explained).to_string())
    }

    /// ROWTIME of the last row taken in (None before the first).
    pub fn absorbed_through_ms(&self) -> Option<i64> {
        (self.absorbed_through_ms != i64::MIN).then_some(self.absorbed_through_ms)
    }

    /// The model and where it stands, as bytes.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let snapshot = SnapshotRef { absorbed_through_ms: self.absorbed_through_ms, model: &self.model };
        let mut bytes = Vec::new();
        ciborium::into_writer(&snapshot, &mut bytes)
            .map_err(|e| AnalyticsError::Plan(format!("writing a forest snapshot: {e}")))?;
        Ok(bytes)
    }

    /// Takes up a model `snapshot` wrote; refused if it scores other columns.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let snapshot: Snapshot = ciborium::from_reader(bytes)
            .map_err(|e| AnalyticsError::Plan(format!("reading a forest snapshot: {e}")))?;
        if snapshot.model.dimensions() != self.model.dimensions()
            || snapshot.model.shingle_size() != self.model.shingle_size()
        {
            return Err(AnalyticsError::Plan("the forest snapshot is of another shape".into()));
        }
        self.model = snapshot.model;
        self.absorbed_through_ms = snapshot.absorbed_through_ms;
        Ok(())
    }
}

#[derive(serde::Serialize)]
struct SnapshotRef<'a> {
    absorbed_through_ms: i64,
    model: &'a RCFLarge<u64, u64>,
}

fn as_f32(column: &ArrayRef) -> Result<Float32Array> {
    let cast = cast(column, &DataType::Float32).map_err(runtime)?;
    cast.as_any()
        .downcast_ref::<Float32Array>()
        .cloned()
        .ok_or_else(|| AnalyticsError::Plan("a scored column did not convert to REAL".into()))
}

pub(crate) fn runtime(error: datafusion::arrow::error::ArrowError) -> AnalyticsError {
    AnalyticsError::Runtime(error.into())
}

fn model_error(error: rcflib::errors::RCFError) -> AnalyticsError {
    AnalyticsError::Plan(format!("RANDOM_CUT_FOREST: {error}"))
}

#[cfg(test)]
#[path = "forest_tests.rs"]
mod tests;
