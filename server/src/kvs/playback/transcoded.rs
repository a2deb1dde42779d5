//! H.264 renditions of H.265 fragments, for sessions that ask for H.264 (`"VideoCodec": "H264"`,
//! our extension): Chromium cannot decode H.265 (docs/playback.md "H.265 cameras in Chromium").
//!
//! A fragment is transcoded whole, once: the result is kept in a cache of its own (a rendition is
//! bigger than the segments the segment cache is sized for), and viewers who ask for it while it
//! is being made wait for that one transcode instead of starting their own. A transcode that
//! failed is not tried again for a few seconds. Fragments without H.265 video pass through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use framelog_imaging::{ImagingError, StoredFragment, TranscodePool, hevc_track, refers_to_previous};
use framelog_media::FragmentRecord;

use super::SegmentCache;
use super::window::{self, WindowFragment};
use crate::error::{ApiError, ErrorType};
use crate::kvs::VideoStream;
use crate::kvs::context::KvsCtx;

/// Set in the rendition of every segment or part made from a transcoded fragment.
pub const H264_RENDITION: u64 = 1 << 48;
/// Transcoded fragments kept: about 8 minutes of 4 Mbit/s H.264 from each of 16 cameras; one
/// fragment of up to a quarter of it (64 MB: a 10-second 4K fragment).
const RENDITIONS_BYTES: usize = 256 << 20;
/// How long a request waits for a transcode slot before it is told to retry.
const SLOT_WAIT: Duration = Duration::from_secs(5);
/// A 10-second 4K fragment transcodes in a few seconds on one core; past this the worker is
/// stuck.
const TRANSCODE_DEADLINE: Duration = Duration::from_secs(60);
/// The longest a request waits for another's transcode of the same fragment.
const GATE_WAIT: Duration = Duration::from_secs(70);
/// A failed transcode is answered with its error for this long before it is tried again.
const FAILURE_KEPT: Duration = Duration::from_secs(10);

/// A fragment: its stream's engine id and its sequence number.
type FragmentKey = (u64, u64);

type Outcome = Result<StoredFragment, ApiError>;
type Gate = Arc<Mutex<Option<Outcome>>>;

/// The transcode pool, the renditions made, and the fragments being transcoded or failed.
#[derive(Debug)]
pub struct Transcoding {
    pub pool: TranscodePool,
    made: SegmentCache,
    /// One gate per fragment being transcoded: its first holder makes the transcode and leaves
    /// the outcome in it for the requests waiting behind (also one too big to keep, or Busy).
    in_flight: Mutex<HashMap<FragmentKey, Gate>>,
    failed: Mutex<HashMap<FragmentKey, (Instant, ApiError)>>,
}

impl Transcoding {
    pub fn new(pool: TranscodePool) -> Transcoding {
        Transcoding {
            pool,
            made: SegmentCache::new(RENDITIONS_BYTES),
            in_flight: Mutex::default(),
            failed: Mutex::default(),
        }
    }

    fn kept(&self, key: FragmentKey) -> Option<StoredFragment> {
        self.made.get((key.0, key.1, 0)).and_then(|bytes| unpack(&bytes))
    }

    fn recent_failure(&self, key: FragmentKey) -> Option<ApiError> {
        let mut failed = lock(&self.failed);
        failed.retain(|_, (at, _)| at.elapsed() < FAILURE_KEPT);
        failed.get(&key).map(|(_, error)| error.clone())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
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

/// Fragment `number` and its payload as the session wants them: transcoded when `h264` and its
/// video is H.265, else as stored.
pub fn load(
    ctx: &KvsCtx,
    handle: &VideoStream,
    h264: bool,
    number: &str,
) -> Result<(WindowFragment, Vec<u8>), ApiError> {
    if h264 {
        let key = (handle.id(), handle.fragment_seq(number)?);
        if let Some(kept) = ctx.transcoding.kept(key) {
            return Ok(as_window(key.1, number, kept));
        }
    }
    let (fragment, payload) = window::fragment(ctx, handle, number)?;
    if !h264 || hevc_track(&fragment.record.tracks_body).is_none() {
        return Ok((fragment, payload));
    }
    let made = once(ctx, handle, &fragment, payload)?;
    Ok(as_window(fragment.seq, number, made))
}

/// A fragment's record as the session wants it: for init segments and CODECS strings.
pub fn record(
    ctx: &KvsCtx,
    handle: &VideoStream,
    h264: bool,
    listed: WindowFragment,
) -> Result<WindowFragment, ApiError> {
    if !h264 || hevc_track(&listed.record.tracks_body).is_none() {
        return Ok(listed);
    }
    Ok(load(ctx, handle, h264, &listed.number)?.0)
}

fn as_window(seq: u64, number: &str, made: StoredFragment) -> (WindowFragment, Vec<u8>) {
    let size_bytes = made.payload.len() as u64;
    (WindowFragment { seq, number: number.to_string(), record: made.record, size_bytes }, made.payload)
}

/// The transcode of `fragment`, made by whoever asks first; the others wait for it.
fn once(ctx: &KvsCtx, handle: &VideoStream, fragment: &WindowFragment, payload: Vec<u8>) -> Outcome {
    let transcoding = &ctx.transcoding;
    let key = (handle.id(), fragment.seq);
    let gate = lock(&transcoding.in_flight).entry(key).or_default().clone();
    let made = match wait_for(&gate) {
        Ok(mut outcome) => match outcome.as_ref() {
            Some(done) => done.clone(),
            None => {
                let made = match (transcoding.kept(key), transcoding.recent_failure(key)) {
                    (Some(kept), _) => Ok(kept),
                    (None, Some(error)) => Err(error),
                    (None, None) => transcode(ctx, handle, key, fragment, payload),
                };
                *outcome = Some(made.clone());
                made
            }
        },
        Err(error) => Err(error),
    };
    // The last request to leave takes the gate away; a later one starts afresh.
    let mine = Arc::as_ptr(&gate);
    drop(gate);
    let mut in_flight = lock(&transcoding.in_flight);
    if in_flight.get(&key).is_some_and(|current| Arc::as_ptr(current) == mine && Arc::strong_count(current) == 1) {
        in_flight.remove(&key);
    }
    made
}

/// The gate, waited for at most GATE_WAIT (a transcode is bounded by its deadline, so only a
/// pile of waiters can take longer).
fn wait_for(gate: &Mutex<Option<Outcome>>) -> Result<MutexGuard<'_, Option<Outcome>>, ApiError> {
    let deadline = Instant::now() + GATE_WAIT;
    loop {
        match gate.try_lock() {
            Ok(turn) => return Ok(turn),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => return Ok(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::sync::TryLockError::WouldBlock) => return Err(transcode_error(ImagingError::Busy)),
        }
    }
}

fn transcode(
    ctx: &KvsCtx,
    handle: &VideoStream,
    key: FragmentKey,
    fragment: &WindowFragment,
    payload: Vec<u8>,
) -> Result<StoredFragment, ApiError> {
    let stored = StoredFragment { record: fragment.record.clone(), payload };
    // An open GOP's leading pictures refer into the fragment before: it primes the decoder.
    let previous = if refers_to_previous(&stored) { previous_fragment(ctx, handle, fragment.seq)? } else { None };
    let made = ctx.transcoding.pool.fragment(&stored, previous.as_ref(), SLOT_WAIT, TRANSCODE_DEADLINE);
    match made {
        Ok(made) => {
            let packed = pack(&made);
            if packed.len() > RENDITIONS_BYTES / 4 {
                tracing::warn!(
                    bytes = packed.len(),
                    "a transcoded fragment is too big to keep: it is made again when asked"
                );
            }
            ctx.transcoding.made.insert((key.0, key.1, 0), packed);
            Ok(made)
        }
        // Busy is about this moment, not this fragment: the next request tries again.
        Err(ImagingError::Busy) => Err(transcode_error(ImagingError::Busy)),
        Err(other) => {
            let error = transcode_error(other);
            lock(&ctx.transcoding.failed).insert(key, (Instant::now(), error.clone()));
            Err(error)
        }
    }
}

/// The stored fragment before `seq`, if there is one.
fn previous_fragment(ctx: &KvsCtx, handle: &VideoStream, seq: u64) -> Result<Option<StoredFragment>, ApiError> {
    let Some(before) = seq.checked_sub(1) else { return Ok(None) };
    let stored = handle.fragment(&ctx.engine, before)?;
    Ok(stored.map(|s| StoredFragment { record: s.record, payload: s.payload }))
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
