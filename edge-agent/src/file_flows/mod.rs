//! The Kinesis Agent's file flows: files tailed into a data stream (PutRecords) or a delivery
//! stream (PutRecordBatch), from the Agent's own `agent.json` (docs/edge-agent.md, "File flows").
//! Each file's position is checkpointed once its records are acknowledged, so lines are
//! delivered at least once and in order per file, through outages, rotations and restarts.

mod agent_config;
mod batch;
mod checkpoints;
mod files;
mod flow;
mod lines;
mod processing;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use serde::Serialize;

pub use agent_config::AgentConfig;
pub use framelog_sdk::MAX_BATCH_RECORDS;

/// One flow's counts, for the status endpoint.
#[derive(Debug, Default)]
pub struct FlowMetrics {
    /// Records cut from the files (lines, or multi-line records).
    pub records_parsed: AtomicU64,
    /// Records the service acknowledged (one stored again after a refusal before it counts again).
    pub records_sent: AtomicU64,
    /// Refusals of a record by the service (each is sent again, with the records after it).
    pub records_refused: AtomicU64,
    /// Records a converter could not read (not sent).
    pub records_unconverted: AtomicU64,
    /// Bytes of the files not acknowledged yet.
    pub bytes_behind: AtomicU64,
    pub files: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl FlowMetrics {
    fn set_error(&self, error: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(error);
        }
    }

    pub fn snapshot(&self, name: &str) -> FlowStatus {
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        FlowStatus {
            name: name.to_string(),
            records_parsed: get(&self.records_parsed),
            records_sent: get(&self.records_sent),
            records_refused: get(&self.records_refused),
            records_unconverted: get(&self.records_unconverted),
            bytes_behind: get(&self.bytes_behind),
            files: get(&self.files),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }
}

/// One flow's status as `/flows` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowStatus {
    pub name: String,
    pub records_parsed: u64,
    pub records_sent: u64,
    pub records_refused: u64,
    pub records_unconverted: u64,
    pub bytes_behind: u64,
    pub files: u64,
    pub last_error: Option<String>,
}

/// The running flows, by name.
pub type Flows = Arc<Vec<(String, Arc<FlowMetrics>)>>;

/// Starts every flow on a thread of its own; they stop when `stop` is set.
pub fn start(config: &AgentConfig, stop: Arc<AtomicBool>) -> anyhow::Result<(Flows, Vec<std::thread::JoinHandle<()>>)> {
    let checkpoints = Arc::new(checkpoints::Checkpoints::open(&config.checkpoint_file)?);
    let mut flows = Vec::new();
    let mut threads = Vec::new();
    for flow_config in &config.flows {
        let endpoint = match flow_config.destination() {
            agent_config::Destination::Stream(_) => config.kinesis_endpoint.as_deref(),
            agent_config::Destination::DeliveryStream(_) => config.firehose_endpoint.as_deref(),
        };
        let client = framelog_sdk::Client::new(client_config(config, endpoint.unwrap_or_default())?);
        let key = format!("{} -> {:?}", flow_config.file_pattern, flow_config.destination());
        let metrics = Arc::new(FlowMetrics::default());
        flows.push((key.clone(), metrics.clone()));
        let flow = flow::Flow {
            config: flow_config.clone(),
            key: key.clone(),
            client,
            checkpoints: checkpoints.clone(),
            metrics,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new().name("file-flow".into()).spawn(move || {
            if let Err(error) = flow.run() {
                tracing::error!(flow = %key, error = %format!("{error:#}"), "the flow stopped");
            }
        })?;
        threads.push(thread);
    }
    Ok((Arc::new(flows), threads))
}

/// The agent's keys when it names them, else AWS's standard places.
fn client_config(config: &AgentConfig, endpoint: &str) -> anyhow::Result<framelog_sdk::ClientConfig> {
    let client_config = framelog_sdk::ClientConfig::new(endpoint).with_region(&config.region);
    Ok(match (&config.aws_access_key_id, &config.aws_secret_access_key) {
        (Some(access_key_id), Some(secret_access_key)) => client_config.with_credentials(framelog_sdk::Credentials {
            access_key_id: access_key_id.clone(),
            secret_access_key: secret_access_key.clone(),
            session_token: None,
        }),
        _ => client_config.with_default_credentials().context("reading AWS credentials")?,
    })
}
