//! The samples of one track of a stored fragment, timed for MP4: decode times, composition
//! offsets and durations in the track's timescale.
//!
//! Matroska blocks carry presentation times in decode order. MP4 needs decode times that only
//! grow: the n-th sample in decode order gets the n-th smallest presentation time as its decode
//! time, moved earlier by the fragment's largest reorder delay so that no composition offset is
//! negative (ffmpeg's MP4 reader delays every frame by the most negative offset instead, which
//! put H.265 B-frame video 67 ms behind its audio). Presentation times are exact either way;
//! without B-frames every offset is 0.

use std::ops::Range;

use crate::record::FragmentRecord;

/// One sample of a packaged track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedSample {
    pub decode_time: i64,
    pub composition_offset: i32,
    pub duration: u32,
    pub keyframe: bool,
    /// Where the sample's bytes are in the stored Cluster body.
    pub data: Range<usize>,
}

/// Presentation time in ms of each of a fragment's frames (producer clock).
pub fn frame_times_ms(record: &FragmentRecord) -> Vec<i64> {
    record.frames.iter().map(|frame| frame_time_ms(record, frame)).collect()
}

/// Presentation time in ms of one of the fragment's frames (producer clock).
pub fn frame_time_ms(record: &FragmentRecord, frame: &crate::mkv::Frame) -> i64 {
    let offset_ms = i128::from(frame.relative_timecode) * i128::from(record.timecode_scale_ns.max(1)) / 1_000_000;
    i64::try_from(i128::from(record.producer_ts_ms) + offset_ms).unwrap_or(i64::MAX)
}

/// The samples of `track`, in decode order, on a timeline of `timescale` units per second.
pub fn track_samples(record: &FragmentRecord, track: u64, timescale: u32) -> Vec<TimedSample> {
    let times = frame_times_ms(record);
    let to_units =
        |ms: i64| -> i64 { i64::try_from(i128::from(ms) * i128::from(timescale) / 1000).unwrap_or(i64::MAX) };
    let picked: Vec<(i64, &crate::mkv::Frame)> = record
        .frames
        .iter()
        .zip(&times)
        .filter(|(frame, _)| frame.track == track)
        .map(|(frame, &ms)| (to_units(ms), frame))
        .collect();
    let mut decode_times: Vec<i64> = picked.iter().map(|(pts, _)| *pts).collect();
    decode_times.sort_unstable();
    let reorder_delay = picked.iter().zip(&decode_times).map(|((pts, _), dts)| dts - pts).max().unwrap_or(0).max(0);
    for decode_time in &mut decode_times {
        *decode_time -= reorder_delay;
    }
    let mut steps: Vec<i64> = decode_times.windows(2).map(|w| w[1] - w[0]).filter(|&d| d > 0).collect();
    steps.sort_unstable();
    let typical_step = steps.get(steps.len() / 2).copied().unwrap_or(i64::from(timescale) / 30);
    picked
        .iter()
        .enumerate()
        .map(|(index, (pts, frame))| {
            let decode_time = decode_times[index];
            let next = decode_times.get(index + 1).copied().unwrap_or(decode_time + typical_step);
            TimedSample {
                decode_time,
                composition_offset: i32::try_from(pts - decode_time).unwrap_or(0),
                duration: u32::try_from(next - decode_time).unwrap_or(0),
                keyframe: frame.keyframe,
                data: frame.data.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mkv::Frame;

    fn record(frames: Vec<(u64, i16, bool)>) -> FragmentRecord {
        FragmentRecord {
            timecode: 0,
            timecode_scale_ns: 1_000_000,
            producer_ts_ms: 10_000,
            server_ts_ms: 10_000,
            duration_ms: 0,
            tracks_body: Vec::new(),
            tags: Vec::new(),
            frames: frames
                .into_iter()
                .enumerate()
                .map(|(i, (track, relative_timecode, keyframe))| Frame {
                    track,
                    relative_timecode,
                    keyframe,
                    lacing: 0,
                    data: i..i + 1,
                })
                .collect(),
        }
    }

    #[test]
    fn b_frames_get_growing_decode_times_and_non_negative_offsets() {
        // Decode order I P B B with presentation times 0, 100, 33, 67.
        let r = record(vec![(1, 0, true), (1, 100, false), (1, 33, false), (1, 67, false), (2, 10, true)]);
        let samples = track_samples(&r, 1, 1000);
        let decode: Vec<i64> = samples.iter().map(|s| s.decode_time).collect();
        assert_eq!(decode, [9_966, 9_999, 10_033, 10_066]);
        let offsets: Vec<i32> = samples.iter().map(|s| s.composition_offset).collect();
        assert_eq!(offsets, [34, 101, 0, 1]);
        let presentation: Vec<i64> = samples.iter().map(|s| s.decode_time + i64::from(s.composition_offset)).collect();
        assert_eq!(presentation, [10_000, 10_100, 10_033, 10_067]);
        let durations: Vec<u32> = samples.iter().map(|s| s.duration).collect();
        assert_eq!(durations, [33, 34, 33, 33]);
        assert!(samples[0].keyframe && !samples[1].keyframe);
    }

    #[test]
    fn audio_times_are_in_samples() {
        let r = record(vec![(2, 0, true), (2, 21, true), (2, 43, true)]);
        let samples = track_samples(&r, 2, 48_000);
        let decode: Vec<i64> = samples.iter().map(|s| s.decode_time).collect();
        assert_eq!(decode, [480_000, 481_008, 482_064]);
        assert_eq!(samples[2].duration, 1056);
    }
}
