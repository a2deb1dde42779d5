//! GetHLSStreamingSessionURL and GetDASHStreamingSessionURL: validate a session request
//! (docs/spec/kvs.md#hls-and-dash-sessions) and seal it into an opaque SessionToken. The token
//! carries the whole session, so serving it needs no server state.

use serde_json::{Value, json};

use super::window;
use crate::document::Document;
use crate::error::{ApiError, ErrorType};
use crate::kvs::context::KvsCtx;
pub use framelog_wire::playback_session::{Clock, Discontinuity, Mode, Session};

const DEFAULT_EXPIRES_S: i64 = 300;
const MAX_EXPIRES_S: i64 = 43_200;
pub(super) const MAX_RANGE_MS: u64 = 24 * 3_600_000;
/// LIVE needs a fragment received at least this recently, as KVS does (docs/spec/kvs.md#session-errors).
pub const LIVE_FRESHNESS_MS: u64 = 30_000;
/// The most fragments a low-latency playlist lists (MaxMediaPlaylistFragmentResults is capped).
const MAX_LOW_LATENCY_FRAGMENTS: usize = 30;

/// Which streaming protocol a session is for; they differ in field names and URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Hls,
    Dash,
}

impl Protocol {
    fn selector_field(self) -> &'static str {
        match self {
            Protocol::Hls => "HLSFragmentSelector",
            Protocol::Dash => "DASHFragmentSelector",
        }
    }

    fn max_field(self) -> &'static str {
        match self {
            Protocol::Hls => "MaxMediaPlaylistFragmentResults",
            Protocol::Dash => "MaxManifestFragmentResults",
        }
    }
}

pub(super) fn choice<T: Copy>(body: &Document, field: &str, default: T, options: &[(&str, T)]) -> Result<T, ApiError> {
    match body.str(field)? {
        None => Ok(default),
        Some(value) => options.iter().find(|(name, _)| *name == value).map(|(_, v)| *v).ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
            ApiError::invalid(format!("{field} must be one of {}, not {value}.", names.join(", ")))
        }),
    }
}

pub fn get_hls_streaming_session_url(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    let token = new_session(ctx, &body, Protocol::Hls)?;
    let url = format!("{}/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken={token}", ctx.settings.data_endpoint);
    Ok(json!({"HLSStreamingSessionURL": url}))
}

pub fn get_dash_streaming_session_url(ctx: &KvsCtx, body: Document) -> Result<Value, ApiError> {
    let token = new_session(ctx, &body, Protocol::Dash)?;
    let url = format!("{}/dash/v1/getDASHManifest.mpd?SessionToken={token}", ctx.settings.data_endpoint);
    Ok(json!({"DASHStreamingSessionURL": url}))
}

/// Validates a session request and returns its sealed token.
fn new_session(ctx: &KvsCtx, body: &Document, protocol: Protocol) -> Result<String, ApiError> {
    let handle = ctx.stream(body, "StreamARN")?;
    let meta = handle.meta();
    let request = read_request(body, protocol)?;
    handle.require_archive()?;
    let now_ms = ctx.engine.now_ms();
    let session = Session {
        stream_name: handle.public_name(),
        stream_created_ms: meta.created_ms,
        mode: request.mode,
        clock: request.clock,
        start_ms: request.start_ms,
        end_ms: request.end_ms,
        // A low-latency playlist is rebuilt on every change of the stream: its window is kept
        // to what a live player needs.
        max_fragments: if request.low_latency {
            (request.max_fragments as usize).min(MAX_LOW_LATENCY_FRAGMENTS)
        } else {
            request.max_fragments as usize
        },
        discontinuity: request.discontinuity,
        display_timestamps: request.display_timestamps,
        display_fragment_numbers: request.display_fragment_numbers,
        mpeg_ts: request.mpeg_ts,
        low_latency: request.low_latency,
        webrtc: false,
        h264: request.h264,
        expires_ms: now_ms + request.expires_s as u64 * 1000,
    };
    check_newest_fragment(ctx, &handle, &session, now_ms)?;
    if session.low_latency {
        // Its player will ask for parts: the stream's live edge starts taking fragments.
        ctx.edges.slot(handle.id()).watch();
    }
    Ok(seal(ctx, &session))
}

/// A session request's parameters, validated (every one but the stream's).
struct Request {
    mode: Mode,
    mpeg_ts: bool,
    low_latency: bool,
    h264: bool,
    discontinuity: Discontinuity,
    display_timestamps: bool,
    display_fragment_numbers: bool,
    expires_s: i64,
    max_fragments: i64,
    clock: Clock,
    start_ms: Option<u64>,
    end_ms: Option<u64>,
}

/// Reads and checks the request's parameters, reporting the first invalid one in the order the
/// fields are read here.
fn read_request(body: &Document, protocol: Protocol) -> Result<Request, ApiError> {
    let mode = choice(
        body,
        "PlaybackMode",
        Mode::Live,
        &[("LIVE", Mode::Live), ("LIVE_REPLAY", Mode::LiveReplay), ("ON_DEMAND", Mode::OnDemand)],
    )?;
    let mpeg_ts = protocol == Protocol::Hls
        && choice(body, "ContainerFormat", false, &[("FRAGMENTED_MP4", false), ("MPEG_TS", true)])?;
    let discontinuity = choice(
        body,
        "DiscontinuityMode",
        None,
        &[
            ("ALWAYS", Some(Discontinuity::Always)),
            ("NEVER", Some(Discontinuity::Never)),
            ("ON_DISCONTINUITY", Some(Discontinuity::OnGap)),
        ],
    )?;
    let display_timestamps = choice(body, "DisplayFragmentTimestamp", false, &[("ALWAYS", true), ("NEVER", false)])?;
    let display_fragment_numbers = protocol == Protocol::Dash
        && choice(body, "DisplayFragmentNumber", false, &[("ALWAYS", true), ("NEVER", false)])?;
    let expires_s = read_expires(body)?;
    let max_fragments = read_max_fragments(body, protocol, mode)?;
    let (clock, start_ms, end_ms) = read_selector(body, protocol)?;
    let low_latency = protocol == Protocol::Hls && body.bool("LowLatency")?.unwrap_or(false);
    if low_latency && (mode != Mode::Live || mpeg_ts) {
        return Err(ApiError::invalid("LowLatency requires PlaybackMode LIVE and ContainerFormat FRAGMENTED_MP4."));
    }
    // KVS's defaults (docs/spec/kvs.md#session-parameters): ALWAYS with server timestamps, NEVER with
    // producer timestamps. A low-latency session (our extension) marks real gaps only: a player
    // following parts should not reset its timeline every fragment.
    let discontinuity = discontinuity.unwrap_or(match clock {
        _ if low_latency => Discontinuity::OnGap,
        Clock::Server => Discontinuity::Always,
        Clock::Producer => Discontinuity::Never,
    });
    check_range(mode, start_ms, end_ms)?;
    let h264 = read_video_codec(body)?;
    Ok(Request {
        mode,
        mpeg_ts,
        low_latency,
        h264,
        discontinuity,
        display_timestamps,
        display_fragment_numbers,
        expires_s,
        max_fragments,
        clock,
        start_ms,
        end_ms,
    })
}

/// `VideoCodec` (our extension): `H264` asks for H.265 video as H.264; absent, video is served
/// as stored.
pub(crate) fn read_video_codec(body: &Document) -> Result<bool, ApiError> {
    choice(body, "VideoCodec", false, &[("H264", true)])
}

/// `Expires`, in seconds: how long the session's token stays valid.
pub(crate) fn read_expires(body: &Document) -> Result<i64, ApiError> {
    let expires_s = body.int("Expires")?.unwrap_or(DEFAULT_EXPIRES_S);
    if !(300..=MAX_EXPIRES_S).contains(&expires_s) {
        return Err(ApiError::invalid(format!("Expires must be between 300 and {MAX_EXPIRES_S} seconds.")));
    }
    Ok(expires_s)
}

/// The most fragments a playlist or manifest lists; LIVE defaults to a short window.
fn read_max_fragments(body: &Document, protocol: Protocol, mode: Mode) -> Result<i64, ApiError> {
    let max_fragments = body.int(protocol.max_field())?.unwrap_or(if mode == Mode::Live { 5 } else { 1000 });
    if !(1..=5000).contains(&max_fragments) {
        return Err(ApiError::invalid(format!("{} must be between 1 and 5000.", protocol.max_field())));
    }
    Ok(max_fragments)
}

/// The fragment selector: which clock, and the timestamp range when one is given.
fn read_selector(body: &Document, protocol: Protocol) -> Result<(Clock, Option<u64>, Option<u64>), ApiError> {
    let Some(selector) = body.object(protocol.selector_field())? else { return Ok((Clock::Server, None, None)) };
    let clock = choice(
        &selector,
        "FragmentSelectorType",
        Clock::Server,
        &[("SERVER_TIMESTAMP", Clock::Server), ("PRODUCER_TIMESTAMP", Clock::Producer)],
    )?;
    match selector.object("TimestampRange")? {
        None => Ok((clock, None, None)),
        Some(range) => Ok((clock, range.timestamp_ms("StartTimestamp")?, range.timestamp_ms("EndTimestamp")?)),
    }
}

/// Which timestamps each playback mode needs (none for LIVE), and a range of at most 24 hours.
fn check_range(mode: Mode, start_ms: Option<u64>, end_ms: Option<u64>) -> Result<(), ApiError> {
    match (mode, start_ms, end_ms) {
        (Mode::Live, None, None) => {}
        (Mode::Live, _, _) => return Err(ApiError::invalid("TimestampRange must not be given for LIVE playback.")),
        (Mode::LiveReplay, None, _) => return Err(ApiError::invalid("StartTimestamp is required for LIVE_REPLAY.")),
        (Mode::OnDemand, None, _) | (Mode::OnDemand, _, None) => {
            return Err(ApiError::invalid("StartTimestamp and EndTimestamp are required for ON_DEMAND."));
        }
        _ => {}
    }
    if let (Some(start), Some(end)) = (start_ms, end_ms) {
        if end < start {
            return Err(ApiError::invalid("EndTimestamp must not be before StartTimestamp."));
        }
        if end - start > MAX_RANGE_MS {
            return Err(ApiError::invalid("The timestamp range must not span more than 24 hours."));
        }
    }
    Ok(())
}

/// A session is only handed out when its window has a fragment to play: for LIVE, one received
/// within `LIVE_FRESHNESS_MS`; and the newest fragment must be one that can be packaged.
fn check_newest_fragment(
    ctx: &KvsCtx,
    handle: &framelog_store::StreamHandle,
    session: &Session,
    now_ms: u64,
) -> Result<(), ApiError> {
    let fragments = window::fragments(ctx, handle, session)?;
    let newest = match fragments.last() {
        Some(newest)
            if session.mode != Mode::Live || now_ms.saturating_sub(newest.record.server_ts_ms) <= LIVE_FRESHNESS_MS =>
        {
            newest
        }
        _ => {
            return Err(ApiError::new(
                ErrorType::ResourceNotFound,
                "No fragments found in the stream for the streaming request.",
            ));
        }
    };
    window::packageable(&newest.record)?;
    Ok(())
}

/// Seals a session into its token.
pub fn seal(ctx: &KvsCtx, session: &Session) -> String {
    ctx.sessions.seal(&framelog_wire::playback_session::encode(session))
}

/// Opens a token: the session, or 403 when it is expired, not ours, or for the other kind of
/// playback (`webrtc`: a WHEP token, else an HLS/DASH one).
pub fn open(ctx: &KvsCtx, token: Option<&str>, webrtc: bool) -> Result<Session, ApiError> {
    let denied = |message: &str| ApiError::new(ErrorType::AccessDenied, message);
    let token = token.ok_or_else(|| ApiError::invalid("SessionToken is required."))?;
    let payload = ctx.sessions.open(token).ok_or_else(|| denied("Streaming session token is invalid"))?;
    let session = framelog_wire::playback_session::decode(&payload)
        .filter(|session| session.webrtc == webrtc)
        .ok_or_else(|| denied("Streaming session token is invalid"))?;
    if ctx.engine.now_ms() > session.expires_ms {
        return Err(denied("Streaming session token is expired"));
    }
    Ok(session)
}
