//! GetClip (docs/spec/kvs.md#getclip): a regular MP4 of the fragments that start inside a time range, at most
//! the first 200 fragments or 100 MB. The `moov` is planned from the fragments' indexes; the
//! `mdat` is then streamed one fragment at a time, so a clip never sits whole in memory.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use framelog_media::package::{ClipPlan, plan_clip};

use super::session::{Clock, MAX_RANGE_MS, choice};
use super::window::{self, WindowFragment};
use crate::document::Document;
use crate::error::{ApiError, ErrorType};
use crate::kvs::VIDEO_SHARD;
use crate::kvs::context::KvsCtx;

const MAX_CLIP_FRAGMENTS: usize = 200;
const MAX_CLIP_BYTES: u64 = 100 * 1024 * 1024;

/// A validated clip: the stream, its fragments and the MP4 layout.
struct Clip {
    handle: crate::kvs::VideoStream,
    fragments: Vec<WindowFragment>,
    plan: ClipPlan,
}

/// `(clock, start_ms, end_ms)` of a `{FragmentSelectorType, TimestampRange}` selector.
pub(super) fn timestamp_selector(
    body: &Document,
    selector_field: &str,
    type_field: &str,
) -> Result<(Clock, u64, u64), ApiError> {
    let selector =
        body.object(selector_field)?.ok_or_else(|| ApiError::invalid(format!("{selector_field} is required.")))?;
    let clock = match selector.str(type_field)? {
        None => return Err(ApiError::invalid(format!("{selector_field}.{type_field} is required."))),
        Some(_) => choice(
            &selector,
            type_field,
            Clock::Server,
            &[("SERVER_TIMESTAMP", Clock::Server), ("PRODUCER_TIMESTAMP", Clock::Producer)],
        )?,
    };
    let range = selector
        .object("TimestampRange")?
        .ok_or_else(|| ApiError::invalid(format!("{selector_field}.TimestampRange is required.")))?;
    let required = |field: &str| {
        range.timestamp_ms(field)?.ok_or_else(|| ApiError::invalid(format!("TimestampRange.{field} is required.")))
    };
    let (start_ms, end_ms) = (required("StartTimestamp")?, required("EndTimestamp")?);
    if end_ms < start_ms {
        return Err(ApiError::invalid("EndTimestamp must not be before StartTimestamp."));
    }
    if end_ms - start_ms > MAX_RANGE_MS {
        return Err(ApiError::invalid("The timestamp range must not span more than 24 hours."));
    }
    Ok((clock, start_ms, end_ms))
}

fn plan(ctx: &KvsCtx, body: &[u8]) -> Result<Clip, ApiError> {
    let document = crate::kvs::parse_document(body)?;
    let handle = ctx.stream(&document, "StreamARN")?;
    let (clock, start_ms, end_ms) = timestamp_selector(&document, "ClipFragmentSelector", "FragmentSelectorType")?;
    handle.require_archive()?;
    let mut fragments = window::in_range(ctx, &handle, clock, (start_ms, end_ms), MAX_CLIP_FRAGMENTS)?;
    let mut clip_bytes = 0;
    let within_size = fragments
        .iter()
        .take_while(|f| {
            clip_bytes += f.size_bytes;
            clip_bytes <= MAX_CLIP_BYTES
        })
        .count()
        .max(1);
    fragments.truncate(within_size);
    let first = fragments.first().ok_or_else(|| {
        ApiError::new(ErrorType::ResourceNotFound, "No fragments found in the stream for the streaming request.")
    })?;
    window::packageable(&first.record)?;
    let records: Vec<_> = fragments.iter().map(|f| f.record.clone()).collect();
    let plan = plan_clip(&records).map_err(|e| ApiError::new(ErrorType::InvalidMediaFrame, e.to_string()))?;
    fragments.truncate(plan.fragment_count());
    Ok(Clip { handle, fragments, plan })
}

/// `POST /getClip`.
pub async fn handle(State(ctx): State<KvsCtx>, body: Bytes) -> Response {
    let planning = ctx.clone();
    let planned = tokio::task::spawn_blocking(move || plan(&planning, &body))
        .await
        .unwrap_or_else(|join| Err(ApiError::internal(&join)));
    let clip = match planned {
        Ok(clip) => clip,
        Err(error) => return crate::kvs::error_response(&error),
    };
    let (chunks, mut response) = crate::kvs::streamed_response("video/mp4", 2);
    // A declared length makes a clip cut short (a fragment expired mid-stream) a visible
    // transfer error instead of a well-framed but broken file.
    if let Ok(length) = HeaderValue::from_str(&clip.plan.total_bytes().to_string()) {
        response.headers_mut().insert(header::CONTENT_LENGTH, length);
    }
    crate::access_log::spawn_in_request(async move {
        if !crate::kvs::send_chunk(&chunks, Bytes::copy_from_slice(clip.plan.header())).await {
            return;
        }
        let plan = std::sync::Arc::new(clip.plan);
        for fragment in clip.fragments {
            let (engine, stream, plan) = (ctx.engine.clone(), clip.handle.clone(), plan.clone());
            let payload = tokio::task::spawn_blocking(move || {
                let entry = engine.entry(&stream, VIDEO_SHARD, fragment.seq).ok().flatten()?;
                Some(plan.fragment_payload(&fragment.record, &entry.payload))
            })
            .await;
            let Ok(Some(payload)) = payload else { return };
            if !crate::kvs::send_chunk(&chunks, Bytes::from(payload)).await {
                return;
            }
        }
    });
    response
}
