//! HOTSPOTS as a continuous operator: each row's numeric columns are a point; the row is taken
//! into a window of the last `windowSize` rows, and its HOTSPOTS_RESULT describes the dense
//! regions of that window (dense_regions.rs, kept up to date as rows come and go, with
//! `scanRadius` and `minimumNumberOfPointsInAHotspot`):
//! `{"hotspots":[{"density":…,"minValues":[…],"maxValues":[…]}]}`, values in the order of the
//! numeric columns, densest first. A region's density is its rows divided by its
//! size, the volume of its bounding box with each side widened by `scanRadius` (so a region of
//! equal points has a size).
//!
//! The window can be written out and read back (`snapshot`, `restore`) with the ROWTIME of the
//! last row taken in, as a forest's model is.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::json;

use crate::batches::rowtimes;
use crate::dense_regions::{PointWindow, Region};
use crate::error::{AnalyticsError, Result};
use crate::forest::{numeric_columns, runtime};

/// The column HOTSPOTS adds to its input's.
pub const HOTSPOTS_RESULT: &str = "HOTSPOTS_RESULT";

/// The function's parameters after its input stream, as the SQL reference names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HotspotParams {
    pub window_size: usize,
    pub scan_radius: f64,
    pub minimum_points: usize,
}

#[derive(Debug, Clone)]
pub struct Hotspots {
    params: HotspotParams,
    /// Indexes of the numeric columns in the rows given.
    columns: Vec<usize>,
    window: PointWindow,
    absorbed_through_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot {
    absorbed_through_ms: i64,
    window: Vec<Vec<f64>>,
}

impl Hotspots {
    /// A window for rows of `schema` (ROWTIME first), over its numeric columns.
    pub fn new(params: HotspotParams, schema: &SchemaRef) -> Result<Hotspots> {
        let columns = numeric_columns(schema, HOTSPOTS_RESULT);
        if columns.is_empty() {
            return Err(AnalyticsError::Plan(
                "HOTSPOTS needs a numeric column (DOUBLE, REAL, INTEGER, BIGINT, SMALLINT or TINYINT).".into(),
            ));
        }
        let window = PointWindow::new(params.scan_radius, params.window_size, columns.len());
        Ok(Hotspots { params, columns, window, absorbed_through_ms: i64::MIN })
    }

    /// Takes each row in and describes the window's hotspots after it. With `replay`, rows are
    /// only taken in (those after the last row taken in), and described by nothing.
    pub fn score(&mut self, rows: &RecordBatch, replay: bool) -> Result<ArrayRef> {
        let times = rowtimes(rows).map_err(runtime)?.clone();
        let values: Vec<Float64Array> = self.columns.iter().map(|&i| as_f64(rows.column(i))).collect::<Result<_>>()?;
        let mut results: Vec<Option<String>> = Vec::with_capacity(rows.num_rows());
        for row in 0..rows.num_rows() {
            let time = times.value(row);
            if replay && time <= self.absorbed_through_ms {
                results.push(None);
                continue;
            }
            // As RANDOM_CUT_FOREST reads them: a null or non-finite value counts as 0.
            let point = values
                .iter()
                .map(|column| if column.is_null(row) { 0.0 } else { column.value(row) })
                .map(|value| if value.is_finite() { value } else { 0.0 })
                .collect();
            self.window.push(point);
            self.absorbed_through_ms = self.absorbed_through_ms.max(time);
            results.push((!replay).then(|| self.describe()));
        }
        Ok(Arc::new(StringArray::from(results)))
    }

    /// The window's hotspots as HOTSPOTS_RESULT's JSON.
    fn describe(&self) -> String {
        let radius = self.params.scan_radius;
        let mut found: Vec<(f64, Region)> = self
            .window
            .regions(self.params.minimum_points)
            .into_iter()
            .map(|region| (density(&region, radius), region))
            .collect();
        found.sort_by(|a, b| b.0.total_cmp(&a.0));
        let hotspots: Vec<serde_json::Value> = found
            .into_iter()
            .map(|(density, region)| json!({"density": density, "minValues": region.min, "maxValues": region.max}))
            .collect();
        json!({ "hotspots": hotspots }).to_string()
    }

    /// ROWTIME of the last row taken in (None before the first).
    pub fn absorbed_through_ms(&self) -> Option<i64> {
        (self.absorbed_through_ms != i64::MIN).then_some(self.absorbed_through_ms)
    }

    /// The window and where it stands, as bytes.
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let snapshot =
            Snapshot { absorbed_through_ms: self.absorbed_through_ms, window: self.window.points().cloned().collect() };
        let mut bytes = Vec::new();
        ciborium::into_writer(&snapshot, &mut bytes)
            .map_err(|e| AnalyticsError::Plan(format!("writing a hotspots snapshot: {e}")))?;
        Ok(bytes)
    }

    /// Takes up a window `snapshot` wrote; refused if its points have another dimension.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let snapshot: Snapshot = ciborium::from_reader(bytes)
            .map_err(|e| AnalyticsError::Plan(format!("reading a hotspots snapshot: {e}")))?;
        if snapshot.window.iter().any(|point| point.len() != self.columns.len()) {
            return Err(AnalyticsError::Plan("the hotspots snapshot is of another shape".into()));
        }
        self.window = PointWindow::new(self.params.scan_radius, self.params.window_size, self.columns.len());
        for point in snapshot.window {
            self.window.push(point);
        }
        self.absorbed_through_ms = snapshot.absorbed_through_ms;
        Ok(())
    }
}

/// A region's rows per unit of its size (its bounding box, each side widened by `radius`).
fn density(region: &Region, radius: f64) -> f64 {
    let size: f64 = region.min.iter().zip(&region.max).map(|(low, high)| high - low + radius).product();
    region.count as f64 / size
}

fn as_f64(column: &ArrayRef) -> Result<Float64Array> {
    let cast = cast(column, &DataType::Float64).map_err(runtime)?;
    cast.as_any()
        .downcast_ref::<Float64Array>()
        .cloned()
        .ok_or_else(|| AnalyticsError::Plan("a HOTSPOTS column did not convert to DOUBLE".into()))
}

#[cfg(test)]
#[path = "hotspots_tests.rs"]
mod tests;
