//! How many video frames a consumer still has ahead of it, for its metrics.

use crate::kvs::VIDEO_SHARD;
use framelog_media::FragmentRecord;
use framelog_store::{Engine, StreamHandle};

/// Fragments whose frames are counted one by one; beyond them the count is extrapolated from
/// their average, so a scrape of a consumer days behind stays a bounded read.
const COUNTED_FRAGMENTS: usize = 1_000;

/// Video frames in fragments `[from_seq, tip_seq)` of a video stream.
pub fn lag_frames(engine: &Engine, handle: &StreamHandle, from_seq: u64, tip_seq: u64) -> u64 {
    if from_seq >= tip_seq {
        return 0;
    }
    let Ok(headers) = engine.list_headers(handle, VIDEO_SHARD, from_seq, tip_seq, COUNTED_FRAGMENTS) else { return 0 };
    let counted: u64 = headers.iter().map(|item| video_frames(&item.header.attrs)).sum();
    let lagging = tip_seq - from_seq;
    match headers.len() as u64 {
        0 => 0,
        n if n >= lagging => counted,
        n => counted * lagging / n,
    }
}

fn video_frames(attrs: &[u8]) -> u64 {
    let Ok(record) = FragmentRecord::decode(attrs) else { return 0 };
    let Ok(tracks) = framelog_media::package::packaged_tracks(&record) else { return 0 };
    let Some(video) = tracks.iter().find(|t| t.is_video()) else { return 0 };
    record.frames.iter().filter(|f| f.track == video.number).count() as u64
}
