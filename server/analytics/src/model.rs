//! The state a scoring stage keeps between rows: a RANDOM_CUT_FOREST forest or a HOTSPOTS
//! window. Both score rows into the columns they add, stand at the ROWTIME of the last row
//! they took in, and are written out and read back the same way, so the server keeps either
//! across a crash without knowing which it holds.

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::forest::Forest;
use crate::hotspots::Hotspots;

#[derive(Debug, Clone)]
pub enum Model {
    Forest(Box<Forest>),
    Hotspots(Box<Hotspots>),
}

impl Model {
    /// The columns the model adds to `rows`, in the order the stage's stream has them.
    pub fn score(&mut self, rows: &RecordBatch, replay: bool) -> Result<Vec<ArrayRef>> {
        match self {
            Model::Forest(forest) => {
                let (scores, explanations) = forest.score(rows, replay)?;
                Ok(std::iter::once(scores).chain(explanations).collect())
            }
            Model::Hotspots(hotspots) => Ok(vec![hotspots.score(rows, replay)?]),
        }
    }

    /// ROWTIME of the last row taken in (None before the first).
    pub fn absorbed_through_ms(&self) -> Option<i64> {
        match self {
            Model::Forest(forest) => forest.absorbed_through_ms(),
            Model::Hotspots(hotspots) => hotspots.absorbed_through_ms(),
        }
    }

    pub fn snapshot(&self) -> Result<Vec<u8>> {
        match self {
            Model::Forest(forest) => forest.snapshot(),
            Model::Hotspots(hotspots) => hotspots.snapshot(),
        }
    }

    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            Model::Forest(forest) => forest.restore(bytes),
            Model::Hotspots(hotspots) => hotspots.restore(bytes),
        }
    }
}
