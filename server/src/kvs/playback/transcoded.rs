//! H.264 renditions of H.265 fragments, for sessions that ask for H.264 (`"VideoCodec": "H264"`,
//! our extension): Chromium cannot decode H.265 (docs/playback.md "H.265 cameras in Chromium").
//!
//! A fragment is transcoded whole, once: the result is kept in the segment cache beside the
//! segments made of it, and viewers who ask for it while it is being made wait for that one
//! transcode instead of starting their own. Fragments without H.265 video pass through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use framelog_imaging::{ImagingError, StoredFragment, TranscodePool, hevc_track, refers_to_previous};
use framelog_media::FragmentRecord;

use super::window::{self, WindowFragment};
use crate::error::{ApiError, ErrorType};
use crate::kvs::VideoStream;
use crate::kvs::context::KvsCtx;

/// The segment cache's rendition for a whole transcoded fragment.
const FRAGMENT_RENDITION: u64 = u64::MAX;
/// Set in the rendition of every segment or part made from a transcoded fragment.
pub const H264_RENDITION: u64 = 1 << 48;
/// How long a request waits for a transcode slot before it is told to retry.
const SLOT_WAIT: Duration = Duration::from_secs(5);
/// A 10-second 4K fragment transcodes in a few seconds on one core; past this the worker is
/// stuck.
const TRANSCODE_DEADLINE: Duration = Duration::from_secs(60);

/// A fragment: its stream's engine id and its sequence number.
type FragmentKey = (u64, u64);

/// One lock per fragment being transcoded; its holder makes the transcode.
type Gates = HashMap<FragmentKey, Arc<Mutex<()>>>;

/// The transcode pool and the fragments being transcoded now.
#[derive(Debug)]
pub struct Transcoding {
    pub pool: TranscodePool,
    in_flight: Mutex<Gates>,
}

impl Transcoding {
    pub fn new(pool: TranscodePool) -> Transcoding {
        Transcoding { pool, in_flight: Mutex::new(HashMap::new()) }
    }
}

/// What a failed transcode answers.
pub fn transcode_error(error: ImagingError) -> ApiError {
    match error {
        ImagingError::Busy => {
            ApiError::new(ErrorType::ClientLimitExceeded, "Too many streams are being transcoded; retry later.")
        }
        other => ApiError::internal(&other),
    }
}

/// `fragment` (with `payload`) as the session wants it: transcoded when `h264` and its video is
/// H.265, else as stored.
pub fn fragment(
    ctx: &KvsCtx,
    handle: &VideoStream,
    h264: bool,
    fragment: WindowFragment,
    payload: Vec<u8>,
) -> Result<(WindowFragment, Vec<u8>), ApiError> {
    if !h264 || hevc_track(&fragment.record.tracks_body).is_none() {
        return Ok((fragment, payload));
    }
    let key = (handle.id(), fragment.seq, FRAGMENT_RENDITION);
    if let Some(kept) = ctx.segments.get(key).and_then(|bytes| unpack(&bytes)) {
        return Ok((WindowFragment { record: kept.record, ..fragment }, kept.payload));
    }
    let gate = {
        let mut in_flight = ctx.transcoding.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        in_flight.entry((handle.id(), fragment.seq)).or_default().clone()
    };
    // One transcode per fragment: whoever holds the gate makes it, the others then find it kept.
    let made = {
        let _turn = gate.lock().unwrap_or_else(|e| e.into_inner());
        match ctx.segments.get(key).and_then(|bytes| unpack(&bytes)) {
            Some(kept) => Ok(kept),
            None => transcode(ctx, handle, key, &fragment, payload),
        }
    };
    ctx.transcoding.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&(handle.id(), fragment.seq));
    let made = made?;
    Ok((WindowFragment { record: made.record, ..fragment }, made.payload))
}

fn transcode(
    ctx: &KvsCtx,
    handle: &VideoStream,
    key: (u64, u64, u64),
    fragment: &WindowFragment,
    payload: Vec<u8>,
) -> Result<StoredFragment, ApiError> {
    let stored = StoredFragment { record: fragment.record.clone(), payload };
    // An open GOP's leading pictures refer into the fragment before: it primes the decoder.
    let previous = if refers_to_previous(&stored) { previous_fragment(ctx, handle, fragment.seq)? } else { None };
    let made = ctx
        .transcoding
        .pool
        .fragment(&stored, previous.as_ref(), SLOT_WAIT, TRANSCODE_DEADLINE)
        .map_err(transcode_error)?;
    ctx.segments.insert(key, pack(&made));
    Ok(made)
}

/// The stored fragment before `seq`, if there is one.
fn previous_fragment(ctx: &KvsCtx, handle: &VideoStream, seq: u64) -> Result<Option<StoredFragment>, ApiError> {
    let Some(before) = seq.checked_sub(1) else { return Ok(None) };
    let stored = handle.fragment(&ctx.engine, before)?;
    Ok(stored.map(|s| StoredFragment { record: s.record, payload: s.payload }))
}

/// A fragment's record as the session wants it (reading the stored fragment when it has to be
/// transcoded): for init segments and CODECS strings.
pub fn record(
    ctx: &KvsCtx,
    handle: &VideoStream,
    h264: bool,
    listed: WindowFragment,
) -> Result<WindowFragment, ApiError> {
    if !h264 || hevc_track(&listed.record.tracks_body).is_none() {
        return Ok(listed);
    }
    let (stored, payload) = window::fragment(ctx, handle, &listed.number)?;
    Ok(fragment(ctx, handle, h264, stored, payload)?.0)
}

/// `record length u32 | record | payload`.
fn pack(fragment: &StoredFragment) -> Bytes {
    let record = fragment.record.encode();
    let mut out = Vec::with_capacity(4 + record.len() + fragment.payload.len());
    out.extend_from_slice(&u32::try_from(record.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&record);
    out.extend_from_slice(&fragment.payload);
    Bytes::from(out)
}

fn unpack(bytes: &[u8]) -> Option<StoredFragment> {
    let length = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let record = FragmentRecord::decode(bytes.get(4..4 + length)?).ok()?;
    Some(StoredFragment { record, payload: bytes.get(4 + length..)?.to_vec() })
}
