//! WebRTC egress over WHEP (the IETF's WebRTC-HTTP Egress Protocol, RFC 9725): a stream's live
//! H.264, straight from its live edge, to a browser a few hundred milliseconds behind the camera
//! (docs/playback.md "WebRTC (WHEP)").
//!
//! `POST /getWHEPSessionURL {"StreamName" | "StreamARN", "Expires"}` (our extension, signed and
//! authorized like every API call) answers `{"WHEPSessionURL"}`, a URL whose SessionToken is its
//! authority, as an HLS URL's is. A player POSTs its SDP offer there (`application/sdp`) and gets
//! 201 Created with the SDP answer and a `Location`, the session's resource; DELETE on that
//! resource ends the session. A session also ends when the browser goes away or its token
//! expires.

mod peer;
mod sessions;
mod transcoded;

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use sessions::WhepSessions;

use super::context::KvsCtx;
use super::playback::session::{self, Clock, Discontinuity, Mode, Session};
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

/// An SDP offer is a few KB; anything near this is not one.
const MAX_OFFER_BYTES: usize = 64 << 10;
/// How long a client may take to send its offer.
const OFFER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const OFFER_FILE: &str = "offer";
const SDP_TYPE: &str = "application/sdp";

/// `POST /getWHEPSessionURL`.
pub fn get_whep_session_url(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    let handle = ctx.stream(&body, "StreamARN")?;
    let expires_s = session::read_expires(&body)?;
    let now_ms = ctx.engine.now_ms();
    let whep = Session {
        stream_name: handle.public_name(),
        stream_created_ms: handle.meta().created_ms,
        mode: Mode::Live,
        clock: Clock::Server,
        start_ms: None,
        end_ms: None,
        max_fragments: 1,
        discontinuity: Discontinuity::Never,
        display_timestamps: false,
        display_fragment_numbers: false,
        mpeg_ts: false,
        low_latency: false,
        webrtc: true,
        h264: session::read_video_codec(&body)?,
        expires_ms: now_ms + expires_s as u64 * 1000,
    };
    // Its player will want frames: the stream's live edge starts taking fragments.
    ctx.edges.slot(handle.id()).watch();
    let token = session::seal(ctx, &whep);
    Ok(json!({"WHEPSessionURL": format!("{}/whep/v1/{OFFER_FILE}?SessionToken={token}", ctx.settings.data_endpoint)}))
}

/// The WHEP session named by the request's token: the token, the session and its stream.
fn open(ctx: &KvsCtx, uri: &Uri) -> Result<(String, Session, super::VideoStream), ApiError> {
    super::playback::open_session(ctx, uri.query().unwrap_or_default(), true)
}

/// `POST /whep/v1/offer?SessionToken=`: an SDP offer in, 201 with the answer out.
pub async fn offer(
    State(ctx): State<KvsCtx>,
    Path(file): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match start(&ctx, &file, &uri, &headers, body).await {
        Ok((answer, location)) => {
            let mut response = (StatusCode::CREATED, [(header::CONTENT_TYPE, SDP_TYPE)], answer).into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(error) => crate::rest_json::error_response(&error),
    }
}

/// Checks the request, answers the offer and starts the peer: (answer SDP, resource URL).
async fn start(
    ctx: &KvsCtx,
    file: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<(String, String), ApiError> {
    if file != OFFER_FILE {
        return Err(ApiError::new(ErrorType::ResourceNotFound, format!("{file} is not a WHEP endpoint.")));
    }
    let (token, whep, handle) = open(ctx, uri)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with(SDP_TYPE) {
        return Err(ApiError::new(
            ErrorType::UnsupportedMediaType,
            format!("A WHEP offer is {SDP_TYPE}, not '{content_type}'."),
        ));
    }
    let offer = read_offer(body).await?;
    let (id, stop) = ctx.whep.admit(&whep.stream_name)?;
    let (answer, peer) = match peer::answer(&offer, ctx.whep.candidate_ip).await {
        Ok(answered) => answered,
        Err(error) => {
            ctx.whep.remove(&id);
            return Err(error);
        }
    };
    let mut frames = ctx.edges.slot(handle.id()).frames();
    if whep.h264 {
        frames = transcoded::h264_frames(ctx.transcoding.pool.clone(), frames);
    }
    let left_ms = whep.expires_ms.saturating_sub(ctx.engine.now_ms());
    let expires_at = Instant::now() + Duration::from_millis(left_ms);
    let sessions = ctx.whep.clone();
    let (stream, session_id) = (whep.stream_name.clone(), id.clone());
    crate::access_log::spawn_in_request(async move {
        let ended = peer.run(frames, stop, expires_at).await;
        sessions.remove(&session_id);
        tracing::info!(%stream, session = %session_id, ?ended, "WebRTC session ended");
    });
    Ok((answer, format!("/whep/v1/{id}?SessionToken={token}")))
}

/// The offer's text, bounded in bytes and time.
async fn read_offer(body: Body) -> Result<String, ApiError> {
    let read = tokio::time::timeout(OFFER_READ_TIMEOUT, axum::body::to_bytes(body, MAX_OFFER_BYTES)).await;
    let bytes: Bytes = match read {
        Err(_) => return Err(ApiError::invalid("The SDP offer did not arrive in time.")),
        Ok(Err(_)) => return Err(ApiError::invalid(format!("An SDP offer is at most {MAX_OFFER_BYTES} bytes."))),
        Ok(Ok(bytes)) => bytes,
    };
    String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::invalid("The SDP offer is not UTF-8 text."))
}

/// `DELETE /whep/v1/<session id>?SessionToken=`: ends the session.
pub async fn close(State(ctx): State<KvsCtx>, Path(id): Path<String>, uri: Uri) -> Response {
    let stopped = open(&ctx, &uri).and_then(|(_, whep, _)| {
        if ctx.whep.stop(&id, &whep.stream_name) {
            Ok(())
        } else {
            Err(ApiError::new(ErrorType::ResourceNotFound, format!("There is no WebRTC session {id}.")))
        }
    });
    match stopped {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => crate::rest_json::error_response(&error),
    }
}
