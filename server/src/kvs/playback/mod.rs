//! HLS and DASH for browsers and tools (docs/spec/kvs.md#hls-and-dash-sessions): the session calls, and the GET URLs
//! they hand out (`/hls/v1/…`, `/dash/v1/…`), authorised only by their SessionToken. Segments are remuxed from the stored
//! fragments on request; every answer carries CORS headers, and segments honour byte ranges.

pub mod clip;
pub mod images;
pub use ll_view::LlViews;
pub use segment_cache::SegmentCache;
mod ll_playlist;
#[cfg(test)]
mod ll_tests;
mod ll_view;
mod low_latency;
mod manifest;
mod playlist;
mod segment_cache;
pub mod session;
#[cfg(test)]
mod transcode_tests;
pub mod transcoded;
mod window;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use framelog_media::package::{media_segment, write_init_segment, write_ts_segment};

use self::session::{Mode, Session};
use super::context::KvsCtx;
use crate::error::{ApiError, ErrorType};

const PLAYLIST_TYPE: &str = "application/x-mpegURL";
const MP4_TYPE: &str = "video/mp4";
const DASH_TYPE: &str = "application/dash+xml";
const TS_TYPE: &str = "video/MP2T";

/// A query parameter by name, percent-decoded (`+` is a space, as in forms).
pub(crate) fn query_value(query: &str, name: &str) -> Option<String> {
    // An empty value (`SessionToken=` or a bare `SessionToken`) counts as missing, as before.
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, value)| key == name && !value.is_empty())
        .map(|(_, value)| value.into_owned())
}

/// Matroska track numbers our packaging takes; the segment cache keys renditions above them.
const MAX_TRACK_NUMBER: u64 = 0xFFFF;

fn track_number(query: &str) -> Result<u64, ApiError> {
    let text = query_value(query, "TrackNumber").ok_or_else(|| ApiError::invalid("TrackNumber is required."))?;
    let number: u64 = text.parse().map_err(|_| ApiError::invalid(format!("TrackNumber {text} is not a number.")))?;
    if !(1..=MAX_TRACK_NUMBER).contains(&number) {
        return Err(ApiError::invalid(format!("TrackNumber must be between 1 and {MAX_TRACK_NUMBER}.")));
    }
    Ok(number)
}

fn session_stream(ctx: &KvsCtx, session: &Session) -> Result<crate::kvs::VideoStream, ApiError> {
    let handle = ctx.lookup(&session.stream_name)?;
    // A stream deleted and re-created under the same name is another stream.
    if handle.meta().created_ms != session.stream_created_ms {
        return Err(super::context::not_found());
    }
    Ok(handle)
}

/// The session a playback URL's query names (`webrtc`: a WHEP one, else HLS/DASH): its token,
/// the session and its stream.
pub(crate) fn open_session(
    ctx: &KvsCtx,
    query: &str,
    webrtc: bool,
) -> Result<(String, Session, crate::kvs::VideoStream), ApiError> {
    let token = query_value(query, "SessionToken");
    let session = session::open(ctx, token.as_deref(), webrtc)?;
    let handle = session_stream(ctx, &session)?;
    Ok((token.unwrap_or_default(), session, handle))
}

/// Builds the answer for one `/hls/v1/<file>` request: (content type, body, is a segment).
fn answer(ctx: &KvsCtx, file: &str, query: &str) -> Result<(&'static str, Bytes), ApiError> {
    let (token, session, handle) = open_session(ctx, query, false)?;
    let token = token.as_str();
    let not_found =
        || ApiError::new(ErrorType::ResourceNotFound, "No fragments found in the stream for the streaming request.");
    match file {
        "getHLSMasterPlaylist.m3u8" => {
            let fragments = window::fragments(ctx, &handle, &session)?;
            let newest = fragments.last().cloned().ok_or_else(not_found)?;
            let newest = transcoded::record(ctx, &handle, session.h264, newest)?;
            let tracks = window::packageable(&newest.record)?;
            Ok((PLAYLIST_TYPE, Bytes::from(playlist::master(token, session.mpeg_ts, &tracks, &fragments))))
        }
        "getDASHManifest.mpd" => {
            let fragments = window::fragments(ctx, &handle, &session)?;
            let newest = fragments.last().cloned().ok_or_else(not_found)?;
            let newest = transcoded::record(ctx, &handle, session.h264, newest)?;
            let tracks = window::packageable(&newest.record)?;
            let now_ms = ctx.engine.now_ms();
            Ok((DASH_TYPE, Bytes::from(manifest::dash(token, &session, &tracks, &fragments, now_ms))))
        }
        "getHLSMediaPlaylist.m3u8" => {
            let number = track_number(query)?;
            let fragments = window::fragments(ctx, &handle, &session)?;
            let complete = match session.mode {
                Mode::OnDemand => true,
                Mode::LiveReplay => session.end_ms.is_some_and(|end| ctx.engine.now_ms() > end),
                Mode::Live => false,
            };
            Ok((PLAYLIST_TYPE, Bytes::from(playlist::media(token, number, &session, &fragments, complete))))
        }
        "getMP4InitFragment.mp4" => {
            let number = track_number(query)?;
            let fragment = match query_value(query, "FragmentNumber") {
                Some(fragment_number) => window::fragment_header(ctx, &handle, &fragment_number)?,
                None => window::fragments(ctx, &handle, &session)?.pop().ok_or_else(not_found)?,
            };
            let fragment = transcoded::record(ctx, &handle, session.h264, fragment)?;
            let tracks = window::packageable(&fragment.record)?;
            let track = tracks
                .iter()
                .find(|t| t.number == number)
                .ok_or_else(|| ApiError::invalid(format!("TrackNumber {number} is not a track of this stream.")))?;
            Ok((MP4_TYPE, Bytes::from(write_init_segment(track))))
        }
        "getMP4MediaFragment.mp4" => {
            let number = track_number(query)?;
            let fragment_number =
                query_value(query, "FragmentNumber").ok_or_else(|| ApiError::invalid("FragmentNumber is required."))?;
            let segment = cached(ctx, &handle, &session, &fragment_number, number, |fragment, payload| {
                let tracks = window::packageable(&fragment.record)?;
                let track = tracks
                    .iter()
                    .find(|t| t.number == number)
                    .ok_or_else(|| ApiError::invalid(format!("TrackNumber {number} is not a track of this stream.")))?;
                let sequence = u32::try_from(fragment.seq + 1).unwrap_or(u32::MAX);
                Ok(media_segment(&fragment.record, payload, track, sequence))
            })?;
            Ok((MP4_TYPE, segment))
        }
        "getTSFragment.ts" => {
            let fragment_number =
                query_value(query, "FragmentNumber").ok_or_else(|| ApiError::invalid("FragmentNumber is required."))?;
            let segment = cached(ctx, &handle, &session, &fragment_number, TS_RENDITION, |fragment, payload| {
                let tracks = window::packageable(&fragment.record)?;
                Ok(write_ts_segment(&fragment.record, payload, &tracks))
            })?;
            Ok((TS_TYPE, segment))
        }
        other => Err(ApiError::new(ErrorType::ResourceNotFound, format!("{other} is not an HLS resource."))),
    }
}

/// The segment cache's rendition number for a TS segment (fMP4 ones use their track number).
const TS_RENDITION: u64 = 0;

/// A segment from the cache, or built by `build` from its stored fragment (transcoded first when
/// the session asks for H.264) and cached.
fn cached(
    ctx: &KvsCtx,
    handle: &crate::kvs::VideoStream,
    session: &Session,
    fragment_number: &str,
    rendition: u64,
    build: impl FnOnce(&window::WindowFragment, &[u8]) -> Result<Vec<u8>, ApiError>,
) -> Result<Bytes, ApiError> {
    let seq = handle.fragment_seq(fragment_number)?;
    let rendition = if session.h264 { rendition | transcoded::H264_RENDITION } else { rendition };
    let key = (handle.id(), seq, rendition);
    if let Some(segment) = ctx.segments.get(key) {
        return Ok(segment);
    }
    let (fragment, payload) = transcoded::load(ctx, handle, session.h264, fragment_number)?;
    let segment = Bytes::from(build(&fragment, &payload)?);
    ctx.segments.insert(key, segment.clone());
    Ok(segment)
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` over a body of `len` bytes; `None` when unsatisfiable.
fn byte_range(value: &str, len: usize) -> Option<std::ops::Range<usize>> {
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let range = match (start.trim(), end.trim()) {
        ("", suffix) => len.saturating_sub(suffix.parse().ok()?)..len,
        (start, "") => start.parse().ok()?..len,
        (start, end) => start.parse().ok()?..end.parse::<usize>().ok()?.saturating_add(1).min(len),
    };
    (range.start < range.end && range.start < len).then_some(range)
}

/// `GET|HEAD|OPTIONS /hls/v1/<file>`.
pub async fn handle(State(ctx): State<KvsCtx>, Path(file): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    let started = std::time::Instant::now();
    let query = uri.query().unwrap_or_default().to_string();
    let measured = (ctx.clone(), file.clone(), query.clone());
    let response = serve(ctx, file, query, &headers).await;
    measure(&measured, response.status().is_success(), started);
    response
}

/// Records the call's Latency, Success and Requests under the operation its file names
/// (`getHLSMasterPlaylist.m3u8` is GetHLSMasterPlaylist) and its session's stream.
fn measure((ctx, file, query): &(KvsCtx, String, String), succeeded: bool, started: std::time::Instant) {
    let Ok((_, _, stream)) = open_session(ctx, query, false) else { return };
    let operation = file.split('.').next().unwrap_or_default();
    let mut chars = operation.chars();
    let Some(first) = chars.next() else { return };
    let action = format!("kinesisvideo:{}{}", first.to_ascii_uppercase(), chars.as_str());
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    crate::cloudwatch::requests::record_on(&ctx.metrics, &action, &stream.public_name(), succeeded, latency_ms);
}

async fn serve(ctx: KvsCtx, file: String, query: String, headers: &HeaderMap) -> Response {
    let built = match low_latency::answer(ctx.clone(), &file, &query).await {
        Some(built) => built,
        None => tokio::task::spawn_blocking(move || answer(&ctx, &file, &query))
            .await
            .unwrap_or_else(|join| Err(ApiError::internal(&join))),
    };
    let (content_type, body) = match built {
        Ok(found) => found,
        Err(error) => return super::error_response(&error),
    };
    let len = body.len();
    let requested = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let mut response = match requested.map(|value| byte_range(value, len)) {
        None => (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response(),
        Some(Some(range)) => {
            let content_range = format!("bytes {}-{}/{len}", range.start, range.end - 1);
            let mut response = (StatusCode::PARTIAL_CONTENT, [(header::CONTENT_TYPE, content_type)], body.slice(range))
                .into_response();
            if let Ok(value) = HeaderValue::from_str(&content_range) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
        Some(None) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            response
        }
    };
    response.headers_mut().insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_follow_rfc_9110() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(0..10));
        assert_eq!(byte_range("bytes=90-", 100), Some(90..100));
        assert_eq!(byte_range("bytes=-10", 100), Some(90..100));
        assert_eq!(byte_range("bytes=95-200", 100), Some(95..100));
        assert_eq!(byte_range("bytes=100-", 100), None);
        assert_eq!(byte_range("bytes=5-2", 100), None);
        assert_eq!(byte_range("bytes=0-1,4-5", 100), None);
        assert_eq!(byte_range("items=0-1", 100), None);
    }

    #[test]
    fn query_values_are_found_by_name() {
        let query = "SessionToken=abc_-&TrackNumber=2&FragmentNumber=9";
        assert_eq!(query_value(query, "TrackNumber").as_deref(), Some("2"));
        assert_eq!(query_value(query, "SessionToken").as_deref(), Some("abc_-"));
        assert_eq!(query_value(query, "Missing"), None);
        assert_eq!(query_value("SessionToken=a%2Bb%3D&x=1", "SessionToken").as_deref(), Some("a+b="));
    }
}
