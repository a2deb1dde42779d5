//! A stored fragment with its H.265 video as H.264: the same record (times, tags, audio) with the
//! video track's codec, codec private data and frames replaced. Everything that packages a
//! stored fragment (HLS and DASH segments, LL-HLS parts, MPEG-TS) then packages the transcoded
//! one unchanged.

use std::collections::{BTreeMap, VecDeque};

use framelog_media::package::{Codec, PackagedTrack, frame_time_ms};
use framelog_media::{FragmentRecord, Frame, parse_tracks, tracks_body};

use crate::decode::EncodedFrame;
use crate::error::ImagingError;
use crate::transcode::TranscodedFrame;

/// Matroska's codec id for H.264 in avcC form.
const AVC_CODEC_ID: &str = "V_MPEG4/ISO/AVC";

/// A stored fragment: its record and its Cluster body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFragment {
    pub record: FragmentRecord,
    pub payload: Vec<u8>,
}

/// The H.265 video track of a Tracks payload, the one a transcode replaces; None when it has none.
pub fn hevc_track(tracks_body: &[u8]) -> Option<PackagedTrack> {
    let tracks = parse_tracks(tracks_body, 0).ok()?;
    tracks.iter().filter_map(|t| PackagedTrack::from_track(t).ok()).find(|t| t.codec == Codec::Hevc)
}

/// Whether the fragment's H.265 video has leading pictures (an open GOP's pictures presented
/// before its key frame, which refer to the GOP before): its transcode needs the previous fragment.
pub fn refers_to_previous(fragment: &StoredFragment) -> bool {
    hevc_track(&fragment.record.tracks_body)
        .is_some_and(|track| has_leading_pictures(&track_frames(fragment, track.number)))
}

/// Whether some frame presents before the first key frame.
pub(crate) fn has_leading_pictures(frames: &[EncodedFrame]) -> bool {
    let Some(key) = frames.iter().find(|f| f.keyframe) else { return false };
    frames.iter().any(|f| f.pts_ms < key.pts_ms)
}

/// Whether `previous` has H.265 track `track` with the configuration `config` (else it cannot
/// prime the decoder).
pub(crate) fn same_track(previous: &StoredFragment, track: u64, config: &[u8]) -> bool {
    hevc_track(&previous.record.tracks_body).is_some_and(|t| t.number == track && t.config == config)
}

/// The frames of `track` in decode order, as the transcoder takes them.
pub fn track_frames(fragment: &StoredFragment, track: u64) -> Vec<EncodedFrame> {
    let StoredFragment { record, payload } = fragment;
    record
        .frames
        .iter()
        .filter(|frame| frame.track == track)
        .map(|frame| EncodedFrame {
            pts_ms: frame_time_ms(record, frame),
            keyframe: frame.keyframe,
            data: payload.get(frame.data.clone()).unwrap_or_default().to_vec(),
        })
        .collect()
}

/// A Tracks payload with `track` declared as H.264 described by `avc_config`.
pub fn h264_tracks_body(stored_tracks: &[u8], track: u64, avc_config: &[u8]) -> Result<Vec<u8>, ImagingError> {
    let mut tracks =
        parse_tracks(stored_tracks, 0).map_err(|e| ImagingError::Decode(format!("unreadable tracks: {e}")))?;
    let entry = tracks
        .iter_mut()
        .find(|t| t.number == track)
        .ok_or_else(|| ImagingError::Decode(format!("track {track} is not in the fragment")))?;
    entry.codec_id = AVC_CODEC_ID.into();
    entry.codec_private = avc_config.to_vec();
    Ok(tracks_body(&tracks))
}

/// `fragment` with `track`'s frames replaced by `transcoded` and the track declared as H.264 with
/// `avc_config`. The transcoded frames are in presentation order, which without B-frames is their
/// decode order too: they take the track's places in the fragment in that order, each with the
/// timecode of the input frame of its time. A frame the decoder gave nothing for is left out (a
/// damaged frame cannot be shown either way).
pub fn replace_track(
    fragment: &StoredFragment,
    track: u64,
    avc_config: &[u8],
    transcoded: Vec<TranscodedFrame>,
) -> Result<StoredFragment, ImagingError> {
    let StoredFragment { record, payload } = fragment;
    let tracks_body = h264_tracks_body(&record.tracks_body, track, avc_config)?;
    let timecodes: BTreeMap<i64, i16> = record
        .frames
        .iter()
        .filter(|frame| frame.track == track)
        .map(|frame| (frame_time_ms(record, frame), frame.relative_timecode))
        .collect();
    let mut outputs: VecDeque<TranscodedFrame> = transcoded.into();
    let mut body = Vec::with_capacity(payload.len());
    let mut frames = Vec::with_capacity(record.frames.len());
    for frame in &record.frames {
        let (relative_timecode, keyframe, lacing, data) = if frame.track == track {
            let Some(out) = outputs.pop_front() else { continue };
            let Some(&timecode) = timecodes.get(&out.pts_ms) else { continue };
            (timecode, out.keyframe, 0, out.data)
        } else {
            let data = payload.get(frame.data.clone()).unwrap_or_default().to_vec();
            (frame.relative_timecode, frame.keyframe, frame.lacing, data)
        };
        let start = body.len();
        body.extend_from_slice(&data);
        frames.push(Frame { track: frame.track, relative_timecode, keyframe, lacing, data: start..body.len() });
    }
    let record = FragmentRecord { tracks_body, frames, ..record.clone() };
    Ok(StoredFragment { record: starting_at_first_picture(record), payload: body })
}

/// The record with its start moved to its earliest picture when leading pictures present before
/// the key frame that starts it (an open GOP): players place a segment by its start time, and one
/// that begins before its stated start overlaps the segment before and leaves a hole in its own
/// first part. Every frame keeps its presentation time; only the base they are counted from moves.
fn starting_at_first_picture(mut record: FragmentRecord) -> FragmentRecord {
    let earliest_ms = record.frames.iter().map(|frame| frame_time_ms(&record, frame)).min();
    let Some(lead_ms) = earliest_ms
        .and_then(|ms| i64::try_from(record.producer_ts_ms).ok()?.checked_sub(ms))
        .filter(|&ms| ms > 0 && ms as u64 <= record.producer_ts_ms)
    else {
        return record;
    };
    let scale_ns = record.timecode_scale_ns.max(1) as i128;
    let lead_units = i128::from(lead_ms) * 1_000_000 / scale_ns;
    // Only when the lead is a whole number of timecode units (always, at millisecond scale).
    let (Ok(lead), true) = (i16::try_from(lead_units), lead_units * scale_ns == i128::from(lead_ms) * 1_000_000) else {
        return record;
    };
    let shifted: Option<Vec<i16>> = record.frames.iter().map(|f| f.relative_timecode.checked_add(lead)).collect();
    let Some(shifted) = shifted else { return record };
    for (frame, timecode) in record.frames.iter_mut().zip(shifted) {
        frame.relative_timecode = timecode;
    }
    record.producer_ts_ms -= lead_ms as u64;
    record.timecode = record.timecode.saturating_sub(lead as u64);
    record
}
