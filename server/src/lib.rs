//! The Framelog server as a library: `run` serves a `Config` on a listener until a shutdown
//! future resolves; `AppState::open` and `router` give tests the same router in process.
//! The `framelog` binary (main.rs) only parses flags and signals.

mod access_log;
pub mod admin;
mod analytics;
mod app;
pub mod auth;
mod background;
pub mod backup;
mod cbor_json;
mod civil_date;
mod cloudwatch;
pub mod cluster_config;
pub mod config;
mod console;
mod consumers;
mod document;
mod engine_metrics;
mod error;
mod file_write;
mod firehose;
mod first_bytes;
mod guard;
mod http_server;
mod idle;
mod kds;
mod kvs;
mod lambda_batches;
mod leased;
mod listener;
mod memory_metrics;
mod metrics;
mod rest_json;
mod router;
mod secret;
mod stalled;
mod state;
mod streamed;
pub mod tls;
mod token_bucket;
mod validation;

/// Firehose's Parquet conversion, for the benchmark that measures it against pyarrow.
pub mod firehose_parquet {
    pub use crate::firehose::{ConversionPlan, GlueTables};
}

pub use app::run;
pub use config::{Config, FileConfig};
pub use error::ServerError;
pub use router::{rest_json_operations, router};
pub use state::{AppState, Opened};
