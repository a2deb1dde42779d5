//! GetImages (docs/spec/kvs.md#getimages): one picture per sampling instant of a time range, JPEG or PNG, at most
//! 25 per page. Each instant shows the video frame on screen at that moment (the last frame
//! presented at or before it) of the fragment that covers it; an instant no fragment covers is
//! NO_MEDIA, one whose fragment has no decodable video is MEDIA_ERROR.
//!
//! Decoding and encoding run on the bounded decode pool: the request's fragments are split into
//! at most one job per worker, and the handler awaits them without holding a runtime thread.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use framelog_imaging::ImagingError;
use framelog_imaging::{DecodePool, FrameRequest, ImageFormat, PictureJob, Pictures, fragment_request, output_size};
use framelog_media::package::frame_times_ms;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::session::{Clock, choice};
use super::window::{self, WindowFragment};
use crate::document::Document;
use crate::error::{ApiError, ErrorType};
use crate::kvs::VIDEO_SHARD;
use crate::kvs::context::KvsCtx;
use crate::rest_json::{error_response, json_response};

const MAX_RANGE_MS: u64 = 300_000;
const MIN_SAMPLING_MS: u64 = 200;
/// AWS documents no default; one picture every 3 s suits a 300 s window of 2 s fragments.
const DEFAULT_SAMPLING_MS: u64 = 3_000;
const PAGE_IMAGES: usize = 25;
/// GetImages answers at most 100 MB (docs/spec/kvs.md#getimages); a page that would be larger
/// ends early and its NextToken resumes at the first picture left out.
const MAX_RESPONSE_BYTES: usize = 100_000_000;
/// JSON around each entry: its keys, the timestamp and punctuation.
const ENTRY_OVERHEAD_BYTES: usize = 64;
/// How far before the first instant a fragment covering it may start.
const LOOKBACK_MS: u64 = 60_000;

/// A validated GetImages request.
#[derive(Debug)]
struct Query {
    handle: crate::kvs::VideoStream,
    clock: Clock,
    /// This page's instants and whether more follow (the next instant).
    instants_ms: Vec<u64>,
    next_ms: Option<u64>,
    format: ImageFormat,
    width: Option<u32>,
    height: Option<u32>,
}

/// What one instant shows.
#[derive(Debug)]
enum Outcome {
    Image(Vec<u8>),
    NoMedia,
    MediaError,
}

fn parse(ctx: &KvsCtx, body: &[u8]) -> Result<Query, ApiError> {
    let document = crate::kvs::parse_document(body)?;
    let handle = ctx.stream(&document, "StreamARN")?;
    let required = |field: &str| ApiError::invalid(format!("{field} is required."));
    if document.str("ImageSelectorType")?.is_none() {
        return Err(required("ImageSelectorType"));
    }
    let clock = choice(
        &document,
        "ImageSelectorType",
        Clock::Server,
        &[("SERVER_TIMESTAMP", Clock::Server), ("PRODUCER_TIMESTAMP", Clock::Producer)],
    )?;
    let start_ms = document.timestamp_ms("StartTimestamp")?.ok_or_else(|| required("StartTimestamp"))?;
    let end_ms = document.timestamp_ms("EndTimestamp")?.ok_or_else(|| required("EndTimestamp"))?;
    if end_ms < start_ms {
        return Err(ApiError::invalid("EndTimestamp must not be before StartTimestamp."));
    }
    if end_ms - start_ms > MAX_RANGE_MS {
        return Err(ApiError::invalid(
            "The time range between StartTimestamp and EndTimestamp must not exceed 300 seconds.",
        ));
    }
    let sampling_ms = match document.int("SamplingInterval")? {
        None => DEFAULT_SAMPLING_MS,
        Some(ms) if ms >= MIN_SAMPLING_MS as i64 => ms as u64,
        Some(_) => return Err(ApiError::invalid("SamplingInterval must be at least 200 milliseconds.")),
    };
    if document.str("Format")?.is_none() {
        return Err(required("Format"));
    }
    let jpeg = choice(&document, "Format", true, &[("JPEG", true), ("PNG", false)])?;
    let format = if jpeg { ImageFormat::Jpeg { quality: jpeg_quality(&document)? } } else { ImageFormat::Png };
    let dimension = |field: &str, max: i64| -> Result<Option<u32>, ApiError> {
        match document.int(field)? {
            None => Ok(None),
            Some(value) if (1..=max).contains(&value) => Ok(Some(value as u32)),
            Some(_) => Err(ApiError::invalid(format!("{field} must be between 1 and {max}."))),
        }
    };
    let (width, height) = (dimension("WidthPixels", 3840)?, dimension("HeightPixels", 2160)?);
    let page = match document.int("MaxResults")? {
        None => PAGE_IMAGES,
        Some(max) if (1..=100).contains(&max) => (max as usize).min(PAGE_IMAGES),
        Some(_) => return Err(ApiError::invalid("MaxResults must be between 1 and 100.")),
    };
    let first_ms = match document.str("NextToken")? {
        None => start_ms,
        Some(token) => decode_token(&token, (start_ms, end_ms))?,
    };
    handle.require_archive()?;
    // A range shorter than the interval still yields the picture at its start.
    let all = (first_ms..=end_ms).step_by(sampling_ms as usize);
    let mut instants_ms: Vec<u64> = all.take(page + 1).collect();
    let next_ms = if instants_ms.len() > page { instants_ms.pop() } else { None };
    Ok(Query { handle, clock, instants_ms, next_ms, format, width, height })
}

fn jpeg_quality(document: &Document) -> Result<u8, ApiError> {
    let Some(config) = document.string_map("FormatConfig")? else { return Ok(80) };
    let mut quality = 80;
    for (key, value) in config {
        if key != "JPEGQuality" {
            return Err(ApiError::invalid(format!("FormatConfig key {key} is not supported; use JPEGQuality.")));
        }
        quality = value
            .parse::<u8>()
            .ok()
            .filter(|q| (1..=100).contains(q))
            .ok_or_else(|| ApiError::invalid("JPEGQuality must be an integer from 1 to 100."))?;
    }
    Ok(quality)
}

fn encode_token(next_ms: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("images:{next_ms}"))
}

fn decode_token(token: &str, (start_ms, end_ms): (u64, u64)) -> Result<u64, ApiError> {
    let invalid = || ApiError::invalid("NextToken is not valid for this request.");
    let bytes = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let next_ms = text.strip_prefix("images:").and_then(|n| n.parse::<u64>().ok()).ok_or_else(invalid)?;
    if !(start_ms..=end_ms).contains(&next_ms) {
        return Err(invalid());
    }
    Ok(next_ms)
}

/// The fragment covering `instant_ms`: the latest one starting at or before it that lasts past it.
fn covering(fragments: &[WindowFragment], clock: Clock, instant_ms: u64) -> Option<usize> {
    let index = fragments.partition_point(|f| f.start_ms(clock) <= instant_ms).checked_sub(1)?;
    let fragment = &fragments[index];
    (instant_ms <= fragment.start_ms(clock) + fragment.record.duration_ms).then_some(index)
}

/// Each instant with what it shows.
type Outcomes = Vec<(u64, Outcome)>;

/// One decode job: frames to decode and, per wanted presentation time, the instants showing it.
#[derive(Debug)]
struct Job {
    request: FrameRequest,
    instants: BTreeMap<i64, Vec<u64>>,
}

/// Picks, in one fragment, the frames to decode for `instants_ms`; errors are per fragment.
fn fragment_job(ctx: &KvsCtx, query: &Query, fragment: &WindowFragment, instants_ms: &[u64]) -> Option<Job> {
    let tracks = framelog_media::package::packaged_tracks(&fragment.record).ok()?;
    let video = tracks.into_iter().find(|t| t.is_video())?;
    let entry = ctx.engine.entry(&query.handle, VIDEO_SHARD, fragment.seq).ok()??;
    let times = frame_times_ms(&fragment.record);
    let video_times: Vec<i64> = fragment
        .record
        .frames
        .iter()
        .zip(&times)
        .filter(|(frame, _)| frame.track == video.number)
        .map(|(_, &pts)| pts)
        .collect();
    let first_pts = video_times.iter().copied().min()?;
    let mut instants: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    for &instant in instants_ms {
        let offset = instant.saturating_sub(fragment.start_ms(query.clock)) as i64;
        let target = fragment.record.producer_ts_ms as i64 + offset;
        // The frame on screen at `target`; before the first one, the first one.
        let pts = video_times.iter().copied().filter(|&pts| pts <= target.max(first_pts)).max()?;
        instants.entry(pts).or_default().push(instant);
    }
    // Scaled by the decoder when the stored size is known; else by the encoder.
    let scale_to = (video.width > 0 && video.height > 0)
        .then(|| output_size((video.width, video.height), query.width, query.height))
        .flatten();
    let wanted: Vec<i64> = instants.keys().copied().collect();
    let request = fragment_request(&fragment.record, &entry.payload, &video, wanted, scale_to)?;
    Some(Job { request, instants })
}

/// Every instant a job covered gets an outcome from the job's pictures.
fn job_outcomes(instants: BTreeMap<i64, Vec<u64>>, answer: Pictures) -> Outcomes {
    let Pictures { pictures, failure } = answer;
    if let Some(error) = failure {
        tracing::warn!(%error, "not every picture could be made");
    }
    let mut out = Vec::new();
    for (pts, instants_ms) in instants {
        for instant in instants_ms {
            let outcome =
                pictures.get(&pts).map_or(Outcome::MediaError, |picture| Outcome::Image(picture.bytes.clone()));
            out.push((instant, outcome));
        }
    }
    out
}

/// Plans the page: outcomes known without decoding, and the decode jobs for the rest.
fn plan(ctx: &KvsCtx, query: &Query) -> Result<(Outcomes, Vec<Job>), ApiError> {
    let (Some(&first), Some(&last)) = (query.instants_ms.first(), query.instants_ms.last()) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let fragments =
        window::in_range(ctx, &query.handle, query.clock, (first.saturating_sub(LOOKBACK_MS), last), usize::MAX)?;
    let mut per_fragment: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut known = Vec::new();
    for &instant in &query.instants_ms {
        match covering(&fragments, query.clock, instant) {
            Some(index) => per_fragment.entry(index).or_default().push(instant),
            None => known.push((instant, Outcome::NoMedia)),
        }
    }
    let mut jobs = Vec::new();
    for (index, instants) in per_fragment {
        match fragment_job(ctx, query, &fragments[index], &instants) {
            Some(job) => jobs.push(job),
            None => known.extend(instants.into_iter().map(|i| (i, Outcome::MediaError))),
        }
    }
    Ok((known, jobs))
}

/// Joins consecutive jobs of one codec configuration whose times do not overlap into at most
/// `parts` jobs: fewer decoder pipelines, while every worker still gets a share.
fn merge_jobs(jobs: Vec<Job>, parts: usize) -> Vec<Job> {
    let per_part = jobs.len().div_ceil(parts.max(1)).max(1);
    let mut merged: Vec<Job> = Vec::new();
    let mut in_current = 0;
    for job in jobs {
        if let Some(current) = merged.last_mut()
            && in_current < per_part
            && current.request.codec == job.request.codec
            && current.request.config == job.request.config
            && current.request.scale_to == job.request.scale_to
            && current.request.frames.iter().map(|f| f.pts_ms).max() < job.request.frames.iter().map(|f| f.pts_ms).min()
        {
            current.request.frames.extend(job.request.frames);
            current.request.wanted_pts_ms.extend(job.request.wanted_pts_ms);
            current.instants.extend(job.instants);
            in_current += 1;
            continue;
        }
        merged.push(job);
        in_current = 1;
    }
    merged
}

/// Drops the entries (in time order) from the first one that would take the response past
/// `max_bytes`, and answers that entry's instant; the first entry always stays, so every page
/// makes progress.
fn cut_to_response_limit(outcomes: &mut Outcomes, max_bytes: usize) -> Option<u64> {
    let mut total_bytes = 0usize;
    let entry_bytes = |outcome: &Outcome| match outcome {
        Outcome::Image(bytes) => bytes.len().div_ceil(3) * 4 + ENTRY_OVERHEAD_BYTES,
        Outcome::NoMedia | Outcome::MediaError => ENTRY_OVERHEAD_BYTES,
    };
    let cut = outcomes.iter().enumerate().position(|(index, (_, outcome))| {
        total_bytes += entry_bytes(outcome);
        index > 0 && total_bytes > max_bytes
    })?;
    let next_ms = outcomes[cut].0;
    outcomes.truncate(cut);
    Some(next_ms)
}

/// `POST /getImages`.
pub async fn handle(State(ctx): State<KvsCtx>, State(pool): State<DecodePool>, body: Bytes) -> Response {
    let result = answer(ctx, pool, body).await;
    match result {
        Ok(value) => json_response(axum::http::StatusCode::OK, &value),
        Err(error) => error_response(&error),
    }
}

async fn answer(ctx: KvsCtx, pool: DecodePool, body: Bytes) -> Result<Value, ApiError> {
    let planning = ctx.clone();
    let (query, mut outcomes, jobs) = tokio::task::spawn_blocking(move || {
        let query = parse(&planning, &body)?;
        let (known, jobs) = plan(&planning, &query)?;
        Ok::<_, ApiError>((query, known, jobs))
    })
    .await
    .map_err(|join| ApiError::internal(&join))??;
    let busy =
        || ApiError::new(ErrorType::ClientLimitExceeded, "Too many image requests are being processed; retry later.");
    let mut replies = Vec::new();
    for job in merge_jobs(jobs, pool.workers()) {
        let (reply, answer) = oneshot::channel();
        let Job { request, instants } = job;
        let job = PictureJob { request, format: query.format, width: query.width, height: query.height };
        pool.try_submit(job, move |pictures| drop(reply.send(job_outcomes(instants, pictures)))).map_err(|error| {
            match error {
                ImagingError::Busy => busy(),
                other => ApiError::internal(&other),
            }
        })?;
        replies.push(answer);
    }
    for answer in replies {
        outcomes.extend(answer.await.map_err(|_| ApiError::new(ErrorType::InternalFailure, "An image job failed."))?);
    }
    outcomes.sort_by_key(|(instant, _)| *instant);
    let next_ms = cut_to_response_limit(&mut outcomes, MAX_RESPONSE_BYTES).or(query.next_ms);
    let images: Vec<Value> = outcomes
        .into_iter()
        .map(|(instant, outcome)| {
            let timestamp = instant as f64 / 1000.0;
            match outcome {
                Outcome::Image(bytes) => json!({
                    "TimeStamp": timestamp,
                    "ImageContent": base64::engine::general_purpose::STANDARD.encode(bytes),
                }),
                Outcome::NoMedia => json!({"TimeStamp": timestamp, "Error": "NO_MEDIA"}),
                Outcome::MediaError => json!({"TimeStamp": timestamp, "Error": "MEDIA_ERROR"}),
            }
        })
        .collect();
    let mut out = json!({"Images": images});
    if let Some(next_ms) = next_ms {
        out["NextToken"] = json!(encode_token(next_ms));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_over_the_response_limit_ends_early_and_resumes_where_it_stopped() {
        let image = |kib: usize| Outcome::Image(vec![0; kib * 1024]);
        let mut outcomes: Outcomes =
            vec![(1_000, image(30)), (2_000, Outcome::NoMedia), (3_000, image(30)), (4_000, image(30))];
        // 30 KiB is 40 KiB of base64: two pictures fit in 100 KiB, the third does not.
        assert_eq!(cut_to_response_limit(&mut outcomes, 100 * 1024), Some(4_000));
        assert_eq!(outcomes.iter().map(|(instant, _)| *instant).collect::<Vec<_>>(), [1_000, 2_000, 3_000]);
        let mut one_huge: Outcomes = vec![(1_000, image(200)), (2_000, image(1))];
        assert_eq!(cut_to_response_limit(&mut one_huge, 100 * 1024), Some(2_000), "the first entry always stays");
        assert_eq!(one_huge.len(), 1);
        let mut small: Outcomes = vec![(1_000, image(1))];
        assert_eq!(cut_to_response_limit(&mut small, 100 * 1024), None);
    }

    #[test]
    fn tokens_round_trip_inside_their_range_only() {
        let token = encode_token(1_500);
        assert_eq!(decode_token(&token, (1_000, 2_000)).expect("valid"), 1_500);
        assert!(decode_token(&token, (1_600, 2_000)).is_err());
        assert!(decode_token("bm9wZQ==", (0, u64::MAX)).is_err());
    }
}
