//! Kinesis Data Analytics SQL applications without AWS: the application code (in-application
//! streams and pumps, in the SQL dialect Kinesis Data Analytics ran) translated onto Apache
//! DataFusion, which plans and evaluates it; the continuous parts DataFusion has no notion of
//! (tumbling and sliding windows over ROWTIME, the watermark that closes them, the state a
//! restart needs) are ours, as are RANDOM_CUT_FOREST's operator on AWS's Random Cut Forest
//! library and HOTSPOTS' dense-region search. Records become rows through an input schema (JSON or CSV).
//!
//! No HTTP and no store: the server feeds batches in, takes rows out and keeps the marks.

mod application;
mod batches;
mod cursor_stage;
mod dense_regions;
mod dialect;
mod error;
mod forest;
mod forest_call;
mod hotspot_call;
mod hotspots;
mod item_call;
mod item_pump;
mod join_rows;
mod model;
mod model_pump;
mod partition_windows;
mod pump;
mod rows;
mod script;
mod session_clause;
mod sliding_history;
mod sql_type;
mod stagger_clause;
mod stream_join;
mod swap_table;
mod table_call;

pub use application::{Application, Emitted, InputDef, RunError, Step, WindowId, WindowMarks};
pub use batches::{empty_table, table_schema};
pub use datafusion::arrow;
pub use dialect::ROWTIME;
pub use error::{AnalyticsError, Result};
pub use forest::{ANOMALY_SCORE, ForestParams};
pub use hotspots::HOTSPOTS_RESULT;
pub use rows::{ColumnSpec, InputSchema, RecordFormat, RejectedRecord, read_records, read_reference};
pub use script::{PumpDef, Script, StreamDef, parse_script};
pub use sql_type::{SqlType, parse_sql_type};
