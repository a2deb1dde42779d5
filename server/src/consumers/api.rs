//! The consumer API, rest-json like the KVS control plane: `POST /createConsumer`,
//! `/describeConsumer`, `/listConsumers`, `/updateConsumer` (settings, and `State` ACTIVE or
//! PAUSED), `/deleteConsumer` and `/listConsumerDeadLetters` (docs/consumers.md).

use serde_json::{Map, Value, json};

use super::ConsumersCtx;
use super::record_api;
use super::runner::start_seq;
use super::spec::{self, ConsumerSpec, Format, LagPolicy, Selection, Start};
use super::state::{self, Checkpoint};
use super::supervisor::Changed;
use crate::document::Document;
use crate::error::{ApiError, ErrorType};
use crate::kvs::VIDEO_SHARD;
use crate::kvs::VideoStream;

fn video_stream(ctx: &ConsumersCtx, document: &Document) -> Result<VideoStream, ApiError> {
    ctx.video.stream(document, "StreamARN")
}

fn consumer_name(document: &Document) -> Result<String, ApiError> {
    let name = document.str("ConsumerName")?.ok_or_else(|| ApiError::invalid("ConsumerName is required."))?;
    spec::check_name(&name)?;
    Ok(name)
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorType::ResourceNotFound, format!("Consumer {name} does not exist on this stream."))
}

/// Stores a new consumer's definition and first checkpoint (ResourceInUse when the name is
/// taken) and starts it.
/// Consumers a stream may have (hidden hook consumers aside): each runs a reader and, for video,
/// a decoder; KDS allows 20 enhanced fan-out consumers per stream, and so do we.
const MAX_CONSUMERS_PER_STREAM: usize = 20;

pub(super) fn store_new(
    ctx: &ConsumersCtx,
    handle: &framelog_store::StreamHandle,
    name: &str,
    spec: &impl serde::Serialize,
    checkpoint: &impl serde::Serialize,
) -> Result<(), ApiError> {
    let (_, outcome) = ctx.video.engine.update_meta(handle, |meta| {
        if meta.settings.contains_key(&state::spec_key(name)) {
            return Err(ApiError::new(
                ErrorType::ResourceInUse,
                format!("Consumer {name} already exists on this stream."),
            ));
        }
        let visible = state::consumer_names(&meta.settings).filter(|n| !super::stream_hooks::is_hidden(n)).count();
        if visible >= MAX_CONSUMERS_PER_STREAM && !super::stream_hooks::is_hidden(name) {
            return Err(ApiError::new(
                ErrorType::LimitExceeded,
                format!("A stream can have at most {MAX_CONSUMERS_PER_STREAM} consumers."),
            ));
        }
        meta.settings.insert(state::spec_key(name), serde_json::to_string(spec).unwrap_or_default());
        meta.settings.insert(state::checkpoint_key(name), serde_json::to_string(checkpoint).unwrap_or_default());
        Ok(())
    })?;
    outcome?;
    notify(ctx, handle, name);
    Ok(())
}

/// The stream a request names: a data stream (DataStreamName/ARN) or a video stream.
fn any_stream(ctx: &ConsumersCtx, body: &Document) -> Result<framelog_store::StreamHandle, ApiError> {
    match record_api::data_stream(ctx, body)? {
        Some(handle) => Ok(handle),
        None => video_stream(ctx, body).map(|video| video.handle().clone()),
    }
}

fn is_data(handle: &framelog_store::StreamHandle) -> bool {
    handle.meta().kind == framelog_store::StreamKind::Data
}

/// The request's `State` (ACTIVE or PAUSED) as paused, `current` when absent.
pub fn paused_state(body: &Document, current: bool) -> Result<bool, ApiError> {
    match body.str("State")?.as_deref() {
        None => Ok(current),
        Some("ACTIVE") => Ok(false),
        Some("PAUSED") => Ok(true),
        Some(other) => Err(ApiError::invalid(format!("State must be ACTIVE or PAUSED, not {other}."))),
    }
}

/// Tells the supervisor to (re)consider `consumer` after a change to its definition.
pub(super) fn notify(ctx: &ConsumersCtx, handle: &framelog_store::StreamHandle, consumer: &str) {
    let _ = ctx.changes.send(Changed {
        stream_id: handle.id(),
        stream_name: handle.meta().name,
        consumer: consumer.to_string(),
    });
}

pub fn create_consumer(ctx: &ConsumersCtx, body: Document) -> Result<Value, ApiError> {
    if let Some(handle) = record_api::data_stream(ctx, &body)? {
        let name = record_api::create(ctx, &handle, &body)?;
        return Ok(json!({"ConsumerName": name, "DataStreamName": handle.meta().name}));
    }
    let handle = video_stream(ctx, &body)?;
    let spec = spec::parse(&body, ctx.video.engine.now_ms(), &ctx.destinations)?;
    // NOW means from the moment of creation, whenever the task gets to run.
    let checkpoint = Checkpoint { seq: Some(start_seq(ctx, &handle, &spec.start)?), ..Checkpoint::default() };
    store_new(ctx, &handle, &spec.name, &spec, &checkpoint)?;
    Ok(json!({"ConsumerName": spec.name, "StreamName": handle.public_name()}))
}

pub fn describe_consumer(ctx: &ConsumersCtx, body: Document) -> Result<Value, ApiError> {
    let handle = any_stream(ctx, &body)?;
    let name = consumer_name(&body)?;
    if is_data(&handle) {
        let consumer = record_api::describe(ctx, &handle, &name).ok_or_else(|| not_found(&name))?;
        return Ok(json!({ "Consumer": consumer }));
    }
    let settings = handle.meta().settings;
    let spec = state::specs(&settings).into_iter().find(|s| s.name == name).ok_or_else(|| not_found(&name))?;
    Ok(json!({"Consumer": describe(ctx, &handle, &spec, &state::checkpoint(&settings, &name))}))
}

pub fn list_consumers(ctx: &ConsumersCtx, body: Document) -> Result<Value, ApiError> {
    let handle = any_stream(ctx, &body)?;
    if is_data(&handle) {
        return Ok(json!({"Consumers": record_api::list(ctx, &handle)}));
    }
    let settings = handle.meta().settings;
    let consumers: Vec<Value> = state::specs(&settings)
        .iter()
        .filter(|spec| !super::stream_hooks::is_hidden(&spec.name))
        .map(|spec| describe(ctx, &handle, spec, &state::checkpoint(&settings, &spec.name)))
        .collect();
    Ok(json!({"Consumers": consumers}))
}

pub fn update_consumer(ctx: &ConsumersCtx, body: Document) -> Result<Value, ApiError> {
    let handle = any_stream(ctx, &body)?;
    let name = consumer_name(&body)?;
    if is_data(&handle) {
        let consumer = record_api::update(ctx, &handle, &name, &body)?.ok_or_else(|| not_found(&name))?;
        notify(ctx, &handle, &name);
        return Ok(json!({ "Consumer": consumer }));
    }
    let settings = handle.meta().settings;
    let current = state::specs(&settings).into_iter().find(|s| s.name == name).ok_or_else(|| not_found(&name))?;
    // The update is the current definition with the request's fields laid over it.
    let mut merged = request_of(&current);
    for (key, value) in &body.0 {
        merged.insert(key.clone(), value.clone());
    }
    let mut next = spec::parse(&Document(merged), current.created_ms, &ctx.destinations)?;
    next.created_ms = current.created_ms;
    next.start = current.start.clone();
    next.paused = paused_state(&body, current.paused)?;
    ctx.video.engine.update_meta(&handle, |meta| {
        meta.settings.insert(state::spec_key(&name), serde_json::to_string(&next).unwrap_or_default());
    })?;
    notify(ctx, &handle, &name);
    Ok(json!({"Consumer": describe(ctx, &handle, &next, &state::checkpoint(&settings, &name))}))
}

pub fn delete_consumer(ctx: &ConsumersCtx, body: Document) -> Result<Value, ApiError> {
    let handle = any_stream(ctx, &body)?;
    let name = consumer_name(&body)?;
    let (_, existed) = ctx.video.engine.update_meta(&handle, |meta| {
        let existed = meta.settings.remove(&state::spec_key(&name)).is_some();
        meta.settings.remove(&state::checkpoint_key(&name));
        meta.settings.remove(&state::dead_key(&name));
        existed
    })?;
    if !existed {
        return Err(not_found(&name));
    }
    notify(ctx, &handle, &name);
    Ok(json!({}))
}

pub fn list_consumer_dead_letters(ctx: &ConsumersCtx, body: Document) -> Result<Value, ApiError> {
    let handle = any_stream(ctx, &body)?;
    let name = consumer_name(&body)?;
    let settings = handle.meta().settings;
    if !settings.contains_key(&state::spec_key(&name)) {
        return Err(not_found(&name));
    }
    let letters: Vec<Value> = state::dead_letters(&settings, &name)
        .into_iter()
        .map(|d| {
            let mut letter = json!({"Time": d.at_ms as f64 / 1000.0, "Attempts": d.attempts, "Error": d.error});
            match d.shard_id {
                Some(shard_id) => {
                    letter["ShardId"] = json!(shard_id);
                    letter["SequenceNumbers"] = json!(d.sequence_numbers);
                }
                None => {
                    letter["FragmentNumbers"] = json!(d.fragment_numbers);
                    letter["FrameTimestamps"] =
                        json!(d.frame_timestamps_ms.iter().map(|ms| *ms as f64 / 1000.0).collect::<Vec<_>>());
                }
            }
            letter
        })
        .collect();
    Ok(json!({"DeadLetters": letters}))
}

/// The request that would create `spec` (the shape Describe shows and Update starts from).
fn request_of(spec: &ConsumerSpec) -> Map<String, Value> {
    let start = match &spec.start {
        Start::Now => json!({"StartSelectorType": "NOW"}),
        Start::Earliest => json!({"StartSelectorType": "EARLIEST"}),
        Start::ProducerTimestamp(ms) => {
            json!({"StartSelectorType": "PRODUCER_TIMESTAMP", "StartTimestamp": *ms as f64 / 1000.0})
        }
        Start::ServerTimestamp(ms) => {
            json!({"StartSelectorType": "SERVER_TIMESTAMP", "StartTimestamp": *ms as f64 / 1000.0})
        }
        Start::FragmentNumber(n) => json!({"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": n}),
    };
    let selection = match &spec.selection {
        Selection::KeyFrames => json!({"Type": "KEY_FRAMES"}),
        Selection::FramesPerSecond(fps) => json!({"Type": "FRAMES_PER_SECOND", "FramesPerSecond": fps}),
        Selection::SamplingIntervalMs(ms) => json!({"Type": "SAMPLING_INTERVAL", "SamplingIntervalMs": ms}),
        Selection::Tag { name, value, .. } => json!({"Type": "TAG", "TagName": name, "TagValue": value}),
    };
    let mut output = match spec.format {
        Format::Jpeg { quality } => json!({"Format": "JPEG", "JPEGQuality": quality}),
        Format::Png => json!({"Format": "PNG"}),
        Format::Raw => json!({"Format": "RAW"}),
    };
    if let Some(width) = spec.width {
        output["WidthPixels"] = json!(width);
    }
    if let Some(height) = spec.height {
        output["HeightPixels"] = json!(height);
    }
    let lag = match spec.lag {
        LagPolicy::Block => json!({"Type": "BLOCK"}),
        LagPolicy::Latest { max_lag_ms } => json!({"Type": "LATEST", "MaxLagMs": max_lag_ms}),
    };
    let value = json!({
        "ConsumerName": spec.name,
        "StartSelector": start,
        "Selection": selection,
        "Output": output,
        "Webhook": {"Url": spec.webhook_url},
        "Batching": {"MaxFrames": spec.max_frames_per_batch, "MaxWaitMs": spec.max_wait_ms},
        "LagPolicy": lag,
        "Retry": {"MaxAttempts": spec.max_attempts},
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub(super) fn describe(
    ctx: &ConsumersCtx,
    handle: &framelog_store::StreamHandle,
    spec: &ConsumerSpec,
    checkpoint: &Checkpoint,
) -> Value {
    let mut out = Value::Object(request_of(spec));
    let tip = handle.tip_seq(VIDEO_SHARD).unwrap_or(0);
    let next = checkpoint.seq.unwrap_or(tip);
    let lag_fragments = tip.saturating_sub(next);
    let lag_ms = match ctx.video.engine.header(handle, VIDEO_SHARD, next) {
        Ok(Some(header)) if lag_fragments > 0 => ctx.video.engine.now_ms().saturating_sub(header.arrival_ms),
        _ => 0,
    };
    let video = VideoStream::new(handle.clone());
    out["StreamName"] = json!(video.public_name());
    out["State"] = json!(if spec.paused { "PAUSED" } else { "ACTIVE" });
    out["CreationTime"] = json!(spec.created_ms as f64 / 1000.0);
    out["Checkpoint"] = json!({
        "NextFragmentNumber": video.fragment_number(next),
        "FramesDoneInFragment": checkpoint.frames_done,
        "LastFrameTimestamp": checkpoint.last_frame_ms.map(|ms| ms as f64 / 1000.0),
    });
    out["Metrics"] = json!({
        "LagMs": lag_ms,
        "LagFragments": lag_fragments,
        "LagFrames": super::lag::lag_frames(&ctx.video.engine, handle, next, tip),
        "DeliveredFrames": checkpoint.delivered_frames,
        "DeliveredBatches": checkpoint.delivered_batches,
        "RetriedCalls": checkpoint.retried_calls,
        "DeadLetteredBatches": checkpoint.dead_lettered_batches,
        "SkippedFragments": checkpoint.skipped_fragments,
        "SkippedFrames": checkpoint.skipped_frames,
    });
    out
}
