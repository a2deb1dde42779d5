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

/// The fragment's H.265 video track, the one a transcode replaces; None when it has none.
pub fn hevc_track(record: &FragmentRecord) -> Option<PackagedTrack> {
    let tracks = parse_tracks(&record.tracks_body, 0).ok()?;
    tracks.iter().filter_map(|t| PackagedTrack::from_track(t).ok()).find(|t| t.codec == Codec::Hevc)
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

/// `fragment` with `track`'s frames replaced by `transcoded` (matched by presentation time) and
/// the track declared as H.264 with `avc_config`. A frame the decoder gave nothing for is left
/// out (a damaged frame cannot be shown either way).
pub fn replace_track(
    fragment: &StoredFragment,
    track: u64,
    avc_config: &[u8],
    transcoded: Vec<TranscodedFrame>,
) -> Result<StoredFragment, ImagingError> {
    let StoredFragment { record, payload } = fragment;
    let mut tracks =
        parse_tracks(&record.tracks_body, 0).map_err(|e| ImagingError::Decode(format!("unreadable tracks: {e}")))?;
    let entry = tracks
        .iter_mut()
        .find(|t| t.number == track)
        .ok_or_else(|| ImagingError::Decode(format!("track {track} is not in the fragment")))?;
    entry.codec_id = AVC_CODEC_ID.into();
    entry.codec_private = avc_config.to_vec();
    let mut by_time: BTreeMap<i64, VecDeque<TranscodedFrame>> = BTreeMap::new();
    for frame in transcoded {
        by_time.entry(frame.pts_ms).or_default().push_back(frame);
    }
    let mut body = Vec::with_capacity(payload.len());
    let mut frames = Vec::with_capacity(record.frames.len());
    for frame in &record.frames {
        let (keyframe, data) = if frame.track == track {
            let pts_ms = frame_time_ms(record, frame);
            match by_time.get_mut(&pts_ms).and_then(VecDeque::pop_front) {
                Some(out) => (out.keyframe, out.data),
                None => continue,
            }
        } else {
            (frame.keyframe, payload.get(frame.data.clone()).unwrap_or_default().to_vec())
        };
        let start = body.len();
        body.extend_from_slice(&data);
        let lacing = if frame.track == track { 0 } else { frame.lacing };
        frames.push(Frame {
            track: frame.track,
            relative_timecode: frame.relative_timecode,
            keyframe,
            lacing,
            data: start..body.len(),
        });
    }
    let record = FragmentRecord { tracks_body: tracks_body(&tracks), frames, ..record.clone() };
    Ok(StoredFragment { record, payload: body })
}
