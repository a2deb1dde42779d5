//! Which frames of a fragment a consumer takes (pure, unit-tested).

use framelog_media::FragmentRecord;
use framelog_media::package::{PackagedTrack, frame_times_ms, packaged_tracks};

use super::spec::Selection;

/// A selected frame: its index in the fragment's frames and its presentation time (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Picked {
    pub index: usize,
    pub pts_ms: u64,
}

/// The fragment's video track and the frames of it that `selection` takes (`None` without a
/// readable video track).
pub fn select_video(
    record: &FragmentRecord,
    selection: &Selection,
    last_frame_ms: Option<u64>,
) -> Option<(PackagedTrack, Vec<Picked>)> {
    let video = packaged_tracks(record).ok()?.into_iter().find(|t| t.is_video())?;
    let picked = select(record, video.number, selection, last_frame_ms);
    Some((video, picked))
}

/// The frames of `video_track` that `selection` takes, in presentation order. Rate and interval
/// selections continue from `last_frame_ms` (the last frame delivered, possibly in an earlier
/// fragment): a frame is taken when at least one interval has passed since it.
pub fn select(
    record: &FragmentRecord,
    video_track: u64,
    selection: &Selection,
    mut last_frame_ms: Option<u64>,
) -> Vec<Picked> {
    let times = frame_times_ms(record);
    let mut frames: Vec<(usize, u64, bool)> = record
        .frames
        .iter()
        .zip(&times)
        .enumerate()
        .filter(|(_, (frame, _))| frame.track == video_track)
        .map(|(index, (frame, &ms))| (index, ms.max(0) as u64, frame.keyframe))
        .collect();
    frames.sort_by_key(|&(_, ms, _)| ms);
    let key_frames = || frames.iter().filter(|f| f.2).map(|&(index, pts_ms, _)| Picked { index, pts_ms }).collect();
    let every = |interval_ms: f64, last: &mut Option<u64>| -> Vec<Picked> {
        let mut out = Vec::new();
        for &(index, pts_ms, _) in &frames {
            // Half a millisecond of slack: frame times are whole ms, intervals need not be.
            if last.is_none_or(|l| pts_ms as f64 + 0.5 >= l as f64 + interval_ms) {
                out.push(Picked { index, pts_ms });
                *last = Some(pts_ms);
            }
        }
        out
    };
    match selection {
        Selection::KeyFrames => key_frames(),
        Selection::FramesPerSecond(fps) => every(1000.0 / fps, &mut last_frame_ms),
        Selection::SamplingIntervalMs(ms) => every(*ms as f64, &mut last_frame_ms),
        Selection::Tag { name, value, every_ms } => {
            let matches = record.tags.iter().any(|t| t.name == *name && value.as_ref().is_none_or(|v| *v == t.value));
            match (matches, every_ms) {
                (false, _) => Vec::new(),
                (true, None) => key_frames(),
                (true, Some(ms)) => every(*ms as f64, &mut last_frame_ms),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use framelog_media::{Frame, SimpleTag};

    /// 30 fps video (33/34 ms steps as rounded ms), a key frame every 15 frames, plus audio.
    fn record(frames: usize) -> FragmentRecord {
        let mut list = Vec::new();
        for i in 0..frames {
            let relative = (i * 1000 / 30) as i16;
            list.push(Frame { track: 1, relative_timecode: relative, keyframe: i % 15 == 0, lacing: 0, data: 0..1 });
            list.push(Frame { track: 2, relative_timecode: relative, keyframe: true, lacing: 0, data: 0..1 });
        }
        FragmentRecord {
            timecode: 0,
            timecode_scale_ns: 1_000_000,
            producer_ts_ms: 10_000,
            server_ts_ms: 10_000,
            duration_ms: 1_000,
            tracks_body: Vec::new(),
            tags: vec![SimpleTag { name: "event".into(), value: "motion".into() }],
            frames: list,
        }
    }

    fn times(picked: &[Picked]) -> Vec<u64> {
        picked.iter().map(|p| p.pts_ms).collect()
    }

    #[test]
    fn key_frames_are_the_video_key_frames_only() {
        assert_eq!(times(&select(&record(30), 1, &Selection::KeyFrames, None)), [10_000, 10_500]);
    }

    #[test]
    fn a_rate_takes_one_frame_per_interval_and_continues_across_fragments() {
        let picked = select(&record(30), 1, &Selection::FramesPerSecond(4.0), None);
        assert_eq!(times(&picked), [10_000, 10_266, 10_533, 10_800]);
        // The next fragment (same times here) continues 250 ms after the last frame taken.
        let picked = select(&record(30), 1, &Selection::SamplingIntervalMs(250), Some(9_900));
        assert_eq!(times(&picked), [10_166, 10_433, 10_700, 10_966]);
    }

    #[test]
    fn a_tag_selects_whole_fragments() {
        let motion = Selection::Tag { name: "event".into(), value: Some("motion".into()), every_ms: None };
        assert_eq!(select(&record(30), 1, &motion, None).len(), 2);
        let any_event = Selection::Tag { name: "event".into(), value: None, every_ms: None };
        assert_eq!(select(&record(30), 1, &any_event, None).len(), 2);
        let other = Selection::Tag { name: "event".into(), value: Some("person".into()), every_ms: None };
        assert!(select(&record(30), 1, &other, None).is_empty());
        // Image generation: every 400 ms within tagged fragments, continuing from the last frame.
        let sampled = Selection::Tag { name: "event".into(), value: None, every_ms: Some(400) };
        assert_eq!(times(&select(&record(30), 1, &sampled, None)), [10_000, 10_400, 10_800]);
        assert_eq!(times(&select(&record(30), 1, &sampled, Some(9_800))), [10_200, 10_600]);
        let untagged = Selection::Tag { name: "other".into(), value: None, every_ms: Some(400) };
        assert!(select(&record(30), 1, &untagged, None).is_empty());
    }
}
