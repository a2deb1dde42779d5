//! What a Low-Latency HLS playlist of one track shows right now: the LIVE window's stored
//! fragments as segments, then the fragment at the live edge (not yet stored) as parts only,
//! each segment's parts cut from its frames (`framelog_media::package::cut_parts`).
//!
//! Media sequence numbers are the fragments' sequence numbers in the store, so a segment keeps
//! its number from the edge into the store: the edge fragment takes the number after the newest
//! stored one, the number the store gives it when its append lands. That holds while one upload
//! feeds the stream, as cameras do; docs/playback.md says what two concurrent uploads do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use framelog_imaging::hevc_track;
use framelog_media::FragmentRecord;
use framelog_media::package::{PackagedTrack, Part, TimedSample, cut_parts, track_samples};

use super::session::Session;
use super::transcoded;
use super::window::{self, WindowFragment};
use crate::error::ApiError;
use crate::kvs::VideoStream;
use crate::kvs::context::KvsCtx;

/// Parts start a new one at the first frame this long after the part's first (ms). Shorter parts
/// bring the player closer to live (it holds back three part targets) for more requests: 200 ms
/// put hls.js 1.2 s behind the camera where 300 ms put it 1.7 s behind (docs/benchmarks.md).
pub const PART_CUT_MS: u64 = 200;
/// The smallest PART-TARGET declared: the cut plus one 30 fps frame (a part ends on the frame
/// before the one that crosses the cut).
pub const MIN_PART_TARGET_MS: u64 = 234;
/// Parts are listed for this many segments at the end of the playlist (RFC 8216bis §4.4.4.9:
/// at least those within three target durations of the end; fragments last 1-10 s).
const SEGMENTS_WITH_PARTS: usize = 4;

/// One segment of the playlist.
#[derive(Debug, Clone)]
pub struct LlSegment {
    pub msn: u64,
    pub record: FragmentRecord,
    /// The stored fragment's number; `None` for the fragment at the live edge.
    pub number: Option<String>,
    /// Every frame is known (stored, or complete at the edge).
    pub complete: bool,
    /// This track's parts (empty for segments too old to list parts for).
    pub parts: Vec<Part>,
    /// Whether `parts` were cut (the newest segments only).
    pub parts_cut: bool,
    /// This track's samples, which `parts` index.
    pub samples: Vec<TimedSample>,
}

impl LlSegment {
    /// A stored segment has a URI of its own; the edge fragment is listed as parts only.
    pub fn is_stored(&self) -> bool {
        self.number.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct LlView {
    pub track: PackagedTrack,
    pub segments: Vec<LlSegment>,
    /// Parts appear as the fragment arrives (from the live edge). False when H.265 is transcoded
    /// for the session: a fragment's parts then appear all at once when it is stored.
    pub live_parts: bool,
}

impl LlView {
    /// The segment with sequence number `msn`.
    pub fn segment(&self, msn: u64) -> Option<&LlSegment> {
        self.segments.iter().find(|s| s.msn == msn)
    }

    /// The number the next segment will have.
    pub fn next_msn(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.msn + 1)
    }

    /// Seconds of `duration` units of this track.
    pub fn seconds(&self, duration: u64) -> f64 {
        duration as f64 / f64::from(self.track.timescale())
    }

    /// PART-TARGET in ms: every listed part fits it. A camera's frame rate is steady, so it is the
    /// same on every reload.
    pub fn part_target_ms(&self) -> u64 {
        let longest_ms = self
            .segments
            .iter()
            .flat_map(|s| &s.parts)
            .map(|p| (self.seconds(p.duration) * 1000.0).ceil() as u64)
            .max()
            .unwrap_or(0);
        longest_ms.max(MIN_PART_TARGET_MS)
    }
}

/// Which view: the stream (engine id), the track, the window's size, and whether H.265 is
/// transcoded to H.264.
type ViewKey = (u64, u64, usize, bool);
/// What a view was built from: the stream's commit tip and its live edge's version.
type ViewVersion = (u64, u64);
/// Past this many (stream, track, window) entries the cache starts again: streams come and go.
const MAX_CACHED_VIEWS: usize = 1024;

/// The newest view of each stream, track and window size, shared by every viewer. A change of
/// the stream wakes every held request at once; one build then serves them all (100 viewers on
/// one camera cost a third of a core with a build each).
#[derive(Debug, Default)]
pub struct LlViews {
    latest: Mutex<HashMap<ViewKey, (ViewVersion, Arc<LlView>)>>,
}

impl LlViews {
    /// The current view, built only when the stream changed since the last one.
    pub fn get(
        &self,
        ctx: &KvsCtx,
        handle: &VideoStream,
        session: &Session,
        track: u64,
    ) -> Result<Arc<LlView>, ApiError> {
        let key = (handle.id(), track, session.max_fragments, session.h264);
        let tip = handle.tip_seq(crate::kvs::VIDEO_SHARD).map_err(|e| ApiError::internal(&e))?;
        let edge_version = ctx.edges.slot(handle.id()).version();
        let lock = || self.latest.lock().unwrap_or_else(|e| e.into_inner());
        // A view without live parts (H.265 asked for as H.264) does not show the edge: only a
        // new stored fragment changes it.
        let version_for = |view: &LlView| (tip, if view.live_parts { edge_version } else { 0 });
        if let Some((built_from, view)) = lock().get(&key)
            && *built_from == version_for(view)
        {
            return Ok(view.clone());
        }
        let view = Arc::new(build(ctx, handle, session, track)?);
        let mut latest = lock();
        if latest.len() >= MAX_CACHED_VIEWS {
            latest.clear();
        }
        latest.insert(key, (version_for(&view), view.clone()));
        Ok(view)
    }
}

/// The view of track `track_number` for a LIVE low-latency session.
pub fn build(ctx: &KvsCtx, handle: &VideoStream, session: &Session, track_number: u64) -> Result<LlView, ApiError> {
    let stored = contiguous_tail(window::fragments(ctx, handle, session)?);
    let tip = handle.tip_seq(crate::kvs::VIDEO_SHARD).map_err(|e| ApiError::internal(&e))?;
    // The edge fragment will be stored at the tip. If the newest stored fragment is not the one
    // before it (another upload's older fragment landed in between, as an edge agent's backlog
    // does), no number can be promised, and the edge waits.
    let edge_numbered = stored.last().is_none_or(|last| last.seq + 1 == tip);
    let newest_producer_ms = stored.last().map(|f| f.record.producer_ts_ms);
    let edge = ctx.edges.slot(handle.id()).read(|fragments| {
        // Only the oldest fragment not yet stored: the one after it gets its number once this
        // one's append lands, a few milliseconds after it completes.
        fragments
            .iter()
            .find(|f| newest_producer_ms.is_none_or(|newest| f.record.producer_ts_ms > newest))
            .map(|f| (f.record.clone(), f.complete))
    });
    // H.265 asked for as H.264 is transcoded a stored fragment at a time: the edge's frames are
    // not shown (docs/playback.md "H.265 cameras in Chromium").
    let newest_tracks = edge.as_ref().map(|(record, _)| record).or(stored.last().map(|f| &f.record));
    let transcoded = session.h264 && newest_tracks.is_some_and(|record| hevc_track(&record.tracks_body).is_some());
    let edge = edge.filter(|_| edge_numbered && !transcoded);
    let next_msn = tip;
    let with_parts = (stored.len() + usize::from(edge.is_some())).saturating_sub(SEGMENTS_WITH_PARTS);
    let stored = if session.h264 { as_h264(ctx, handle, stored, with_parts)? } else { stored };
    let newest = edge.as_ref().map(|(record, _)| record).or(stored.last().map(|f| &f.record)).ok_or_else(|| {
        ApiError::new(
            crate::error::ErrorType::ResourceNotFound,
            "No fragments found in the stream for the streaming request.",
        )
    })?;
    let track = track_of(newest, track_number)?;
    let mut segments: Vec<LlSegment> = stored
        .into_iter()
        .map(|f| LlSegment {
            msn: f.seq,
            number: Some(f.number),
            record: f.record,
            complete: true,
            parts: Vec::new(),
            parts_cut: false,
            samples: Vec::new(),
        })
        .collect();
    if let Some((record, complete)) = edge {
        segments.push(LlSegment {
            msn: next_msn,
            number: None,
            record,
            complete,
            parts: Vec::new(),
            parts_cut: false,
            samples: Vec::new(),
        });
    }
    for (index, segment) in segments.iter_mut().enumerate() {
        cut(segment, &track, index >= with_parts);
    }
    Ok(LlView { track, segments, live_parts: !transcoded })
}

/// The window as an H.264 session sees it. Only the segments that list parts (from
/// `with_parts` on) are transcoded: the others' durations are the same, and their track lists
/// are those of a transcoded twin (`declare_rendition`).
fn as_h264(
    ctx: &KvsCtx,
    handle: &VideoStream,
    stored: Vec<WindowFragment>,
    with_parts: usize,
) -> Result<Vec<WindowFragment>, ApiError> {
    let as_stored: Vec<Vec<u8>> = stored.iter().map(|f| f.record.tracks_body.clone()).collect();
    let mut stored = stored
        .into_iter()
        .enumerate()
        .map(|(index, f)| if index >= with_parts { transcoded::record(ctx, handle, true, f) } else { Ok(f) })
        .collect::<Result<Vec<_>, ApiError>>()?;
    declare_rendition(&mut stored, &as_stored, with_parts);
    Ok(stored)
}

/// Gives the older segments (not transcoded until fetched) the H.264 track list of a transcoded
/// segment recorded with the same one: the playlist then declares one rendition throughout,
/// with no new init segment or discontinuity where the transcoded segments begin. The transcode
/// of a given track list always has the same parameter sets (the encoder's settings are fixed).
fn declare_rendition(stored: &mut [WindowFragment], as_stored: &[Vec<u8>], transcoded_from: usize) {
    for index in 0..transcoded_from.min(stored.len()) {
        let twin = (transcoded_from..stored.len()).find(|&at| as_stored[at] == as_stored[index]);
        if let Some(twin) = twin {
            stored[index].record.tracks_body = stored[twin].record.tracks_body.clone();
        }
    }
}

/// The track as packaging sees it, from a fragment's own track list.
fn track_of(record: &FragmentRecord, track_number: u64) -> Result<PackagedTrack, ApiError> {
    window::packageable(record)?
        .into_iter()
        .find(|t| t.number == track_number)
        .ok_or_else(|| ApiError::invalid(format!("TrackNumber {track_number} is not a track of this stream.")))
}

/// Fills in the segment's samples for `track`, and with `with_parts` its parts.
pub fn cut(segment: &mut LlSegment, track: &PackagedTrack, with_parts: bool) {
    let timescale = track.timescale();
    segment.samples = track_samples(&segment.record, track.number, timescale);
    segment.parts_cut = with_parts;
    // With B-frames a later frame can present before earlier ones and move their decode times:
    // parts of a fragment still arriving could change, so it is listed once complete.
    let reordered = segment.samples.iter().any(|sample| sample.composition_offset != 0);
    if !with_parts || (reordered && !segment.complete) {
        return;
    }
    let cut_units = i64::try_from(PART_CUT_MS * u64::from(timescale) / 1000).unwrap_or(i64::MAX);
    segment.parts = cut_parts(&segment.samples, cut_units, track.is_video(), segment.complete);
}

/// The newest run of fragments with consecutive sequence numbers. The LIVE window leaves out
/// back-filled fragments; media sequence numbers must not skip, so the playlist starts after
/// the last fragment it left out.
fn contiguous_tail(mut stored: Vec<WindowFragment>) -> Vec<WindowFragment> {
    let start = stored.windows(2).rposition(|pair| pair[1].seq != pair[0].seq + 1).map_or(0, |at| at + 1);
    stored.split_off(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(seq: u64) -> WindowFragment {
        WindowFragment {
            seq,
            number: seq.to_string(),
            record: FragmentRecord {
                timecode: 0,
                timecode_scale_ns: 1_000_000,
                producer_ts_ms: seq,
                server_ts_ms: seq,
                duration_ms: 0,
                tracks_body: Vec::new(),
                tags: Vec::new(),
                frames: Vec::new(),
            },
            size_bytes: 0,
        }
    }

    #[test]
    fn the_playlist_starts_after_the_last_skipped_fragment() {
        let seqs = |v: Vec<WindowFragment>| v.into_iter().map(|f| f.seq).collect::<Vec<_>>();
        assert_eq!(seqs(contiguous_tail(vec![fragment(3), fragment(4), fragment(6), fragment(7)])), [6, 7]);
        assert_eq!(seqs(contiguous_tail(vec![fragment(3), fragment(4)])), [3, 4]);
        assert!(contiguous_tail(Vec::new()).is_empty());
    }
}
