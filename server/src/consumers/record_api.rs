//! The consumer API's data-stream side: the same calls as for video consumers, naming the stream
//! with `DataStreamName` or `DataStreamARN` (docs/consumers.md, "Record consumers").

use framelog_store::{StreamHandle, StreamKind};
use serde_json::{Value, json};

use super::ConsumersCtx;
use super::record_runner::start_seqs;
use super::record_spec::{self, RecordCheckpoint, RecordConsumerSpec};
use super::state;
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

/// The data stream a request names, or `None` when it names a video stream.
pub fn data_stream(ctx: &ConsumersCtx, body: &Document) -> Result<Option<StreamHandle>, ApiError> {
    let (name, arn) = (body.str("DataStreamName")?, body.str("DataStreamARN")?);
    let name = match (name, &arn) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("Provide either DataStreamName or DataStreamARN, not both."));
        }
        (Some(name), None) => name,
        (None, Some(arn)) => match arn.split_once(":stream/") {
            Some((_, name)) => name.to_string(),
            None => return Err(ApiError::invalid(format!("Invalid DataStreamARN {arn}"))),
        },
    };
    if body.str("StreamName")?.is_some() || body.str("StreamARN")?.is_some() {
        return Err(ApiError::invalid("Name either a video stream (StreamName/StreamARN) or a data stream, not both."));
    }
    let not_found = || {
        ApiError::new(
            ErrorType::ResourceNotFound,
            format!("Stream {name} under account {} not found.", ctx.video.settings.account_id),
        )
    };
    let handle = ctx.video.engine.stream(&name).map_err(|_| not_found())?;
    let meta = handle.meta();
    if meta.kind != StreamKind::Data || arn.is_some_and(|arn| arn != meta.arn) {
        return Err(not_found());
    }
    Ok(Some(handle))
}

fn find(handle: &StreamHandle, name: &str) -> Option<RecordConsumerSpec> {
    state::specs_of::<RecordConsumerSpec>(&handle.meta().settings).into_iter().find(|s| s.name == name)
}

/// Creates a record consumer from the request; its name.
pub fn create(ctx: &ConsumersCtx, handle: &StreamHandle, body: &Document) -> Result<String, ApiError> {
    let spec = record_spec::parse(body, ctx.video.engine.now_ms(), &ctx.destinations)?;
    let checkpoint =
        RecordCheckpoint { next_seq: start_seqs(ctx, handle, &spec.start)?, ..RecordCheckpoint::default() };
    super::api::store_new(ctx, handle, &spec.name, &spec, &checkpoint)?;
    Ok(spec.name)
}

pub fn describe(ctx: &ConsumersCtx, handle: &StreamHandle, name: &str) -> Option<Value> {
    find(handle, name).map(|spec| description(ctx, handle, &spec))
}

pub fn list(ctx: &ConsumersCtx, handle: &StreamHandle) -> Vec<Value> {
    state::specs_of::<RecordConsumerSpec>(&handle.meta().settings)
        .iter()
        .map(|spec| description(ctx, handle, spec))
        .collect()
}

/// Lays the request's fields over the current definition; None when there is no such consumer.
pub fn update(
    ctx: &ConsumersCtx,
    handle: &StreamHandle,
    name: &str,
    body: &Document,
) -> Result<Option<Value>, ApiError> {
    let Some(current) = find(handle, name) else { return Ok(None) };
    let mut merged = record_spec::request_of(&current);
    for (key, value) in &body.0 {
        if !matches!(key.as_str(), "DataStreamName" | "DataStreamARN" | "State") {
            merged.insert(key.clone(), value.clone());
        }
    }
    let mut next = record_spec::parse(&Document(merged), current.created_ms, &ctx.destinations)?;
    next.start = current.start.clone();
    next.paused = super::api::paused_state(body, current.paused)?;
    ctx.video.engine.update_meta(handle, |meta| {
        meta.settings.insert(state::spec_key(name), serde_json::to_string(&next).unwrap_or_default());
    })?;
    Ok(Some(description(ctx, handle, &next)))
}

fn description(ctx: &ConsumersCtx, handle: &StreamHandle, spec: &RecordConsumerSpec) -> Value {
    let meta = handle.meta();
    let checkpoint: RecordCheckpoint = state::checkpoint_of(&meta.settings, &spec.name);
    let now_ms = ctx.video.engine.now_ms();
    let (mut lag_records, mut lag_ms) = (0, 0);
    let mut shards = Vec::new();
    for shard in 0..meta.shards.len() as u32 {
        let tip = handle.tip_seq(shard).unwrap_or(0);
        let next = checkpoint.next_seq.get(&shard).copied().unwrap_or(tip);
        lag_records += tip.saturating_sub(next);
        if next < tip
            && let Ok(Some(header)) = ctx.video.engine.header(handle, shard, next)
        {
            lag_ms = lag_ms.max(now_ms.saturating_sub(header.arrival_ms));
        }
        let next_number = ctx
            .video
            .engine
            .header(handle, shard, next)
            .ok()
            .flatten()
            .map(|h| crate::kds::sequence_number(&meta, shard, next, h.arrival_ms));
        shards.push(json!({"ShardId": crate::kds::shard_id(shard), "NextSequenceNumber": next_number}));
    }
    let mut out = Value::Object(record_spec::request_of(spec));
    out["DataStreamName"] = json!(meta.name);
    out["State"] = json!(if spec.paused { "PAUSED" } else { "ACTIVE" });
    out["CreationTime"] = json!(spec.created_ms as f64 / 1000.0);
    out["Checkpoint"] = json!({"Shards": shards});
    out["Metrics"] = json!({
        "LagMs": lag_ms,
        "LagRecords": lag_records,
        "DeliveredRecords": checkpoint.delivered_records,
        "DeliveredBatches": checkpoint.delivered_batches,
        "RetriedCalls": checkpoint.retried_calls,
        "DeadLetteredBatches": checkpoint.dead_lettered_batches,
    });
    out
}
