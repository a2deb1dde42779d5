//! An in-application stream as DataFusion sees it: a table whose rows are whatever the current
//! step has put there. A pump's plan is made once against it and run again for each batch
//! (or window) with new contents.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

#[derive(Debug)]
pub struct SwapTable {
    schema: SchemaRef,
    rows: Mutex<Vec<RecordBatch>>,
}

impl SwapTable {
    pub fn new(schema: SchemaRef) -> Arc<SwapTable> {
        Arc::new(SwapTable { schema, rows: Mutex::new(Vec::new()) })
    }

    /// Replaces the table's rows; the batches must have the table's schema.
    pub fn set(&self, batches: Vec<RecordBatch>) {
        *self.rows.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = batches;
    }
}

#[async_trait]
impl TableProvider for SwapTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = self.rows.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let exec = MemorySourceConfig::try_new_exec(&[rows], self.schema.clone(), projection.cloned())?;
        Ok(exec)
    }
}
