//! Partial segments (LL-HLS parts): one track's samples of a fragment cut into runs of about a
//! part target, each packaged as its own `moof` + `mdat`.
//!
//! The cut depends only on sample decode times and key frames, never on anything after the part,
//! so a part cut from a fragment still being received is the same part when it is cut again from
//! the stored fragment: a player may fetch it from either and never sees two versions.

use std::ops::Range;

use super::media_segment::write_media_segment;
use super::timing::TimedSample;

/// One partial segment: which of the track's samples (decode order) it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub samples: Range<usize>,
    /// Starts with a key frame: a player may begin decoding here (`INDEPENDENT=YES`).
    pub independent: bool,
    /// In the track's timescale.
    pub duration: u64,
}

/// Cuts `samples` into parts. A sample starts a new part when it begins `cut_units` or more after
/// the part's first sample, or (`video`) when it is a key frame. With `complete` false the
/// samples are a prefix of a fragment still arriving: the last part is left out, because a later
/// sample may still join it; every part returned is final.
pub fn cut_parts(samples: &[TimedSample], cut_units: i64, video: bool, complete: bool) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (index, sample) in samples.iter().enumerate().skip(1) {
        let long_enough = sample.decode_time - samples[start].decode_time >= cut_units.max(1);
        if long_enough || (video && sample.keyframe) {
            parts.push(part(samples, start..index));
            start = index;
        }
    }
    if complete && start < samples.len() {
        parts.push(part(samples, start..samples.len()));
    }
    parts
}

fn part(samples: &[TimedSample], range: Range<usize>) -> Part {
    let held = &samples[range.clone()];
    Part {
        independent: held.first().is_some_and(|s| s.keyframe),
        duration: held.iter().map(|s| u64::from(s.duration)).sum(),
        samples: range,
    }
}

/// The part as an fMP4 fragment (`moof` + `mdat`), its bytes taken from `cluster_body`.
pub fn write_part(track_id: u32, sequence: u32, samples: &[TimedSample], part: &Part, cluster_body: &[u8]) -> Vec<u8> {
    let held = samples.get(part.samples.clone()).unwrap_or_default();
    write_media_segment(track_id, sequence, held, cluster_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every `step` units from 0, a key frame where `keys` says so.
    fn samples(count: usize, step: i64, keys: &[usize]) -> Vec<TimedSample> {
        (0..count)
            .map(|i| TimedSample {
                decode_time: i as i64 * step,
                composition_offset: 0,
                duration: step as u32,
                keyframe: keys.contains(&i),
                data: i * 10..i * 10 + 10,
            })
            .collect()
    }

    #[test]
    fn thirty_fps_video_is_cut_into_parts_of_at_most_the_target() {
        // 2 s at 30 fps in ms units (33 ms steps), cut at 300 ms: ten frames a part.
        let all = samples(60, 33, &[0]);
        let parts = cut_parts(&all, 300, true, true);
        assert_eq!(parts.len(), 6);
        assert_eq!(parts[0].samples, 0..10);
        assert!(parts[0].independent && !parts[1].independent);
        assert!(parts.iter().all(|p| p.duration <= 334), "{parts:?}");
        assert_eq!(parts.iter().map(|p| p.duration).sum::<u64>(), 60 * 33);
        assert_eq!(parts.last().map(|p| p.samples.end), Some(60));
    }

    #[test]
    fn a_key_frame_starts_a_video_part_but_not_an_audio_one() {
        let video = cut_parts(&samples(12, 33, &[0, 4]), 300, true, true);
        assert_eq!(video[0].samples, 0..4);
        assert!(video[1].independent);
        let audio = cut_parts(&samples(12, 33, &(0..12).collect::<Vec<_>>()), 300, false, true);
        assert_eq!(audio[0].samples, 0..10);
    }

    #[test]
    fn a_prefix_yields_the_same_parts_less_the_open_one() {
        let all = samples(60, 33, &[0]);
        let whole = cut_parts(&all, 300, true, true);
        for received in 1..60 {
            let prefix = cut_parts(&all[..received], 300, true, false);
            assert!(whole.starts_with(&prefix), "after {received} samples: {prefix:?}");
            // A part is final once the sample that starts the next one arrived.
            assert_eq!(prefix.len(), whole.iter().filter(|p| p.samples.end < received).count());
        }
        assert!(cut_parts(&[], 300, true, true).is_empty());
    }

    #[test]
    fn a_part_is_a_media_segment_of_its_samples() {
        let all = samples(3, 33, &[0]);
        let body: Vec<u8> = (0..30).collect();
        let part = Part { samples: 1..3, independent: false, duration: 66 };
        let bytes = write_part(1, 7, &all, &part, &body);
        assert_eq!(bytes, write_media_segment(1, 7, &all[1..3], &body));
        assert!(bytes.ends_with(&body[10..30]));
    }
}
