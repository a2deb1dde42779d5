//! A record consumer: the consumer machinery pointed at a Kinesis Data Stream, delivering batches
//! of records per shard to a webhook like a Lambda event source mapping (docs/consumers.md).
//! Its definition and checkpoint are stored in the data stream's metadata, under the same keys as
//! a video consumer's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::policy::DestinationPolicy;
use super::spec::{self, Start};
use super::webhook_url::WebhookUrl;
use crate::document::Document;
use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordConsumerSpec {
    pub name: String,
    /// Now (LATEST), Earliest (TRIM_HORIZON) or ServerTimestamp (AT_TIMESTAMP).
    pub start: Start,
    /// Debug shows it redacted: it may carry credentials.
    pub webhook_url: WebhookUrl,
    pub max_records: usize,
    pub max_wait_ms: u64,
    pub max_attempts: u32,
    pub paused: bool,
    pub created_ms: u64,
    /// Deliver each user record of a KPL aggregated record as its own record, with its
    /// sub-sequence number (as AWS's deaggregation library shows them to a Lambda function).
    #[serde(default)]
    pub deaggregate: bool,
}

/// Per shard, the next record to deliver; and what delivery has done so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordCheckpoint {
    pub next_seq: BTreeMap<u32, u64>,
    pub delivered_records: u64,
    pub delivered_batches: u64,
    pub retried_calls: u64,
    pub dead_lettered_batches: u64,
}

/// Lambda caps an event at 6 MB; a batch stops at this many record bytes.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

fn start_of(document: &Document) -> Result<Start, ApiError> {
    let Some(selector) = document.object("StartSelector")? else { return Ok(Start::Now) };
    let kind = selector.str("StartSelectorType")?.ok_or_else(|| ApiError::invalid("StartSelectorType is required."))?;
    Ok(match kind.as_str() {
        "LATEST" | "NOW" => Start::Now,
        "TRIM_HORIZON" | "EARLIEST" => Start::Earliest,
        "AT_TIMESTAMP" | "SERVER_TIMESTAMP" => Start::ServerTimestamp(
            selector
                .timestamp_ms("StartTimestamp")?
                .ok_or_else(|| ApiError::invalid(format!("StartTimestamp is required for {kind}.")))?,
        ),
        other => {
            return Err(ApiError::invalid(format!(
                "StartSelectorType {other} is not supported for a data stream (TRIM_HORIZON, LATEST or AT_TIMESTAMP)."
            )));
        }
    })
}

/// Parses a CreateConsumer request on a data stream.
pub fn parse(document: &Document, now_ms: u64, policy: &DestinationPolicy) -> Result<RecordConsumerSpec, ApiError> {
    for video_only in ["Selection", "Output", "LagPolicy"] {
        if document.0.get(video_only).is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid(format!(
                "{video_only} applies to video streams only, not to a data stream."
            )));
        }
    }
    let name = document.str("ConsumerName")?.ok_or_else(|| ApiError::invalid("ConsumerName is required."))?;
    spec::check_name(&name)?;
    let webhook_url = spec::webhook_url(document, policy)?;
    let (max_records, max_wait_ms) = match document.object("Batching")? {
        Some(b) => {
            (spec::uint(&b, "MaxRecords", 100, 1, 10_000)? as usize, spec::uint(&b, "MaxWaitMs", 1_000, 0, 60_000)?)
        }
        None => (100, 1_000),
    };
    let max_attempts = match document.object("Retry")? {
        Some(retry) => spec::uint(&retry, "MaxAttempts", 5, 1, 100)? as u32,
        None => 5,
    };
    Ok(RecordConsumerSpec {
        name,
        start: start_of(document)?,
        webhook_url,
        max_records,
        max_wait_ms,
        max_attempts,
        paused: false,
        created_ms: now_ms,
        deaggregate: document.bool("Deaggregate")?.unwrap_or(false),
    })
}

/// The request that would create `spec` (what Describe shows and Update starts from).
pub fn request_of(spec: &RecordConsumerSpec) -> Map<String, Value> {
    let start = match &spec.start {
        Start::Earliest => json!({"StartSelectorType": "TRIM_HORIZON"}),
        Start::ServerTimestamp(ms) => {
            json!({"StartSelectorType": "AT_TIMESTAMP", "StartTimestamp": *ms as f64 / 1000.0})
        }
        _ => json!({"StartSelectorType": "LATEST"}),
    };
    let value = json!({
        "ConsumerName": spec.name,
        "StartSelector": start,
        "Webhook": {"Url": spec.webhook_url},
        "Batching": {"MaxRecords": spec.max_records, "MaxWaitMs": spec.max_wait_ms},
        "Retry": {"MaxAttempts": spec.max_attempts},
        "Deaggregate": spec.deaggregate,
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
