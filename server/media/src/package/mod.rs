//! Packaging stored fragments for playback: fMP4 init and media segments per track (HLS, DASH),
//! remuxed from the stored Cluster body and sample table without touching the codec data.

mod annex_b;
mod bmff;
mod clip;
mod codec;
mod init_segment;
mod media_segment;
mod parts;
mod timing;
mod ts;

pub use annex_b::AnnexB;
pub use clip::{ClipPlan, plan_clip};
pub use codec::{Codec, PackagedTrack};
pub use init_segment::write_init_segment;
pub use media_segment::write_media_segment;
pub use parts::{Part, cut_parts, write_part};
pub use timing::{TimedSample, frame_time_ms, frame_times_ms, track_samples};
pub use ts::write_ts_segment;

use crate::error::MediaError;
use crate::mkv::parse_tracks;
use crate::record::FragmentRecord;

/// The packageable tracks of a stored fragment, in track-number order.
pub fn packaged_tracks(record: &FragmentRecord) -> Result<Vec<PackagedTrack>, MediaError> {
    let mut tracks = parse_tracks(&record.tracks_body, 0)?;
    tracks.sort_by_key(|t| t.number);
    tracks.iter().map(PackagedTrack::from_track).collect()
}

/// One track of one stored fragment as an fMP4 media segment.
pub fn media_segment(record: &FragmentRecord, cluster_body: &[u8], track: &PackagedTrack, sequence: u32) -> Vec<u8> {
    let samples = track_samples(record, track.number, track.timescale());
    write_media_segment(track.number as u32, sequence, &samples, cluster_body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mkv::Frame;
    use crate::{Event, Limits, Mp4Fragmenter, Track, tracks_body};

    /// A 320x240 H.264 track with a minimal avcC record (Baseline, level 3.0).
    pub(super) fn h264_track() -> Track {
        Track {
            number: 1,
            uid: 1,
            track_type: 1,
            codec_id: "V_MPEG4/ISO/AVC".into(),
            codec_private: vec![1, 0x42, 0, 0x1e, 0xff, 0xe1, 0],
            pixel_width: Some(320),
            pixel_height: Some(240),
            ..Track::default()
        }
    }

    #[test]
    fn packaged_segments_read_back_as_the_same_frames() {
        let video = h264_track();
        let mut body = Vec::new();
        let mut frames = Vec::new();
        for (i, (relative, keyframe)) in [(0i16, true), (66, false), (33, false), (100, false)].into_iter().enumerate()
        {
            let start = body.len();
            body.extend(std::iter::repeat_n(i as u8 + 1, 10 + i));
            frames.push(Frame { track: 1, relative_timecode: relative, keyframe, lacing: 0, data: start..body.len() });
        }
        let record = FragmentRecord {
            timecode: 0,
            timecode_scale_ns: 1_000_000,
            producer_ts_ms: 1_700_000_000_000,
            server_ts_ms: 1_700_000_000_100,
            duration_ms: 133,
            tracks_body: tracks_body(&[video]),
            tags: Vec::new(),
            frames: frames.clone(),
        };
        let tracks = packaged_tracks(&record).expect("packageable");
        assert_eq!(tracks[0].codecs_string(), "avc1.42001e");
        let mut mp4 = write_init_segment(&tracks[0]);
        mp4.extend(media_segment(&record, &body, &tracks[0], 1));

        let mut splitter = Mp4Fragmenter::new(Limits::default());
        splitter.push(&mp4);
        let mut cluster = None;
        while let Some(event) = splitter.finish().expect("valid fMP4") {
            if let Event::Cluster(c) = event {
                cluster = Some(c);
            }
        }
        let cluster = cluster.expect("one fragment");
        // Absolute presentation times (the ingest side may pick another cluster timecode).
        let read: Vec<(i64, bool, Vec<u8>)> = cluster
            .frames
            .iter()
            .map(|f| {
                let pts = cluster.timecode as i64 + i64::from(f.relative_timecode);
                (pts, f.keyframe, cluster.body[f.data.clone()].to_vec())
            })
            .collect();
        let written: Vec<(i64, bool, Vec<u8>)> = frames
            .iter()
            .map(|f| (1_700_000_000_000 + i64::from(f.relative_timecode), f.keyframe, body[f.data.clone()].to_vec()))
            .collect();
        assert_eq!(read, written, "presentation times, key flags and bytes survive the remux");
    }
}
