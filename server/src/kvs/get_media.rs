//! GetMedia: an endless MKV stream of chunks from a start position, tailing the live stream.
//! A tailing reader waits on the engine's tip watch, so a new fragment reaches it as soon as it
//! is committed (no polling); each chunk ends with MILLIS_BEHIND_NOW and a CONTINUATION_TOKEN
//! (the fragment number to resume after).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use framelog_media::{FragmentRecord, LiveTags};
use framelog_store::{Engine, Position, StreamHandle};

use super::VideoStream;

use super::context::KvsCtx;
use super::fragment_number;
use crate::document::Document;
use crate::error::ApiError;
use crate::kvs::VIDEO_SHARD;

/// How often a waiting reader checks that its client is still there.
const CLIENT_CHECK_EVERY: Duration = Duration::from_secs(1);

fn start_position(handle: &StreamHandle, body: &Document) -> Result<Position, ApiError> {
    let selector = body.object("StartSelector")?.ok_or_else(|| ApiError::invalid("StartSelector is required."))?;
    let kind = selector.str("StartSelectorType")?.ok_or_else(|| ApiError::invalid("StartSelectorType is required."))?;
    let created_ms = handle.meta().created_ms;
    let after_number = |field: &str| -> Result<Position, ApiError> {
        let number =
            selector.str(field)?.ok_or_else(|| ApiError::invalid(format!("{field} is required for {kind}.")))?;
        let seq = fragment_number::decode(&number, created_ms)
            .ok_or_else(|| ApiError::invalid(format!("{field} {number} is not a fragment of this stream.")))?;
        Ok(Position::AfterSeq(seq))
    };
    let timestamp = || -> Result<u64, ApiError> {
        selector
            .timestamp_ms("StartTimestamp")?
            .ok_or_else(|| ApiError::invalid(format!("StartTimestamp is required for {kind}.")))
    };
    Ok(match kind.as_str() {
        "NOW" => Position::Latest,
        "EARLIEST" => Position::TrimHorizon,
        "FRAGMENT_NUMBER" => after_number("AfterFragmentNumber")?,
        "CONTINUATION_TOKEN" => after_number("ContinuationToken")?,
        "SERVER_TIMESTAMP" => Position::AtArrivalMs(timestamp()?),
        "PRODUCER_TIMESTAMP" => Position::AtProducerMs(timestamp()?),
        other => return Err(ApiError::invalid(format!("StartSelectorType {other} is not supported."))),
    })
}

pub async fn handle(State(ctx): State<KvsCtx>, body: Bytes) -> Response {
    let started = (|| {
        let document = super::parse_document(&body)?;
        let handle = ctx.stream(&document, "StreamARN")?;
        let position = start_position(&handle, &document)?;
        let seq = first_chunk(&ctx.engine, &handle, position)?;
        Ok::<_, ApiError>((handle, seq))
    })();
    let (handle, seq) = match started {
        Ok(found) => found,
        Err(error) => return super::error_response(&error),
    };
    let (chunks, response) = super::streamed_response("video/webm", 2);
    let metrics = super::stream_metrics::StreamMetrics::new(&ctx.metrics, handle.public_name());
    crate::access_log::spawn_in_request(tail(ctx.engine, handle, seq, chunks, metrics));
    response
}

/// The sequence of the first chunk to send. NOW is the newest stored fragment (not the next one),
/// and a timestamp selects the fragment that contains it: one that starts at or before the time
/// and lasts past it, else the first that starts after it.
fn first_chunk(engine: &Engine, handle: &StreamHandle, position: Position) -> framelog_store::Result<u64> {
    let first = engine.resolve(handle, VIDEO_SHARD, Position::TrimHorizon)?;
    let seq = engine.resolve(handle, VIDEO_SHARD, position)?;
    let target_ms = match position {
        Position::Latest => return Ok(if seq > first { seq - 1 } else { seq }),
        Position::AtArrivalMs(ms) | Position::AtProducerMs(ms) => ms,
        _ => return Ok(seq),
    };
    if seq <= first {
        return Ok(seq);
    }
    let Some(previous) = engine.header(handle, VIDEO_SHARD, seq - 1)? else { return Ok(seq) };
    let Ok(record) = FragmentRecord::decode(&previous.attrs) else { return Ok(seq) };
    let start_ms = match position {
        Position::AtArrivalMs(_) => record.server_ts_ms,
        _ => record.producer_ts_ms,
    };
    // A fragment covers [start, start + duration): the next one owns its own start time.
    let contains = start_ms <= target_ms && target_ms < start_ms.saturating_add(record.duration_ms);
    Ok(if contains { seq - 1 } else { seq })
}

/// Sends every fragment from `seq` on, then waits for new ones, until the client leaves or the
/// stream is deleted.
async fn tail(
    engine: Engine,
    handle: VideoStream,
    mut seq: u64,
    chunks: super::ChunkSender,
    metrics: super::stream_metrics::StreamMetrics,
) {
    let Ok(mut tip) = handle.subscribe(VIDEO_SHARD) else { return };
    let created_ms = handle.meta().created_ms;
    loop {
        let (reader, stream) = (engine.clone(), handle.clone());
        let found = tokio::task::spawn_blocking(move || reader.entry_ref(&stream, VIDEO_SHARD, seq)).await;
        let Ok(Ok((found, next_seq))) = found else { return };
        let Some(entry) = found else {
            seq = next_seq;
            // Caught up: wait for the next commit (or check the client is still there).
            match tokio::time::timeout(CLIENT_CHECK_EVERY, tip.changed()).await {
                Ok(Err(_)) => return,
                Err(_) if chunks.is_closed() => return,
                _ => {}
            }
            if engine.stream(&handle.meta().name).ok().map(|h| h.id()) != Some(handle.id()) {
                return;
            }
            continue;
        };
        seq = entry.seq + 1;
        let Ok(record) = FragmentRecord::decode(&entry.attrs) else { continue };
        let number = fragment_number::encode(created_ms, entry.seq);
        let live = LiveTags {
            millis_behind_now: engine.now_ms().saturating_sub(entry.arrival_ms),
            continuation_token: number.clone(),
        };
        let (bytes, behind_ms) = (entry.payload.len_bytes(), live.millis_behind_now);
        if !super::chunk_stream::send_fragment(&chunks, &number, &record, entry.payload, Some(&live)).await {
            return;
        }
        metrics.fragment_sent(bytes, behind_ms);
    }
}
