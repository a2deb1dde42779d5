//! A WebRTC viewer's frames as H.264 when the stream is H.265 and the session asked for H.264:
//! the live edge's frames go through a live transcode (one per viewer, from the bounded pool) and
//! come out as frames of an H.264 track of the same number, which the peer sends as it would a
//! camera's. An H.264 stream's frames pass through untouched.

use std::sync::Arc;
use std::time::Duration;

use framelog_imaging::{
    EncodedFrame, FromWorker, ImagingError, Transcode, TranscodePool, TranscodeStart, TranscodedFrame,
    h264_tracks_body, hevc_track,
};
use framelog_media::package::Codec;
use tokio::sync::{broadcast, mpsc};

use crate::kvs::live_edge::EdgeFrame;

/// Frames a viewer's relay holds for its peer (as the live edge does).
const RELAY_FRAMES: usize = 256;
/// How far before the key frame a transcode starts its timeline (far more than any reorder).
const LEADING_PICTURES_MS: i64 = 10_000;
/// How often an idle relay looks whether its viewer is still there.
const VIEWER_CHECK: Duration = Duration::from_secs(1);

/// `frames` with H.265 video transcoded to H.264. The relay ends when its viewer goes away, the
/// stream's frames end, or no transcode slot is free (the viewer's frames then end too).
pub fn h264_frames(
    pool: TranscodePool,
    frames: broadcast::Receiver<Arc<EdgeFrame>>,
) -> broadcast::Receiver<Arc<EdgeFrame>> {
    let (out, viewer) = broadcast::channel(RELAY_FRAMES);
    tokio::spawn(Relay { pool, out, live: None, need_key: true, looked_at: None }.run(frames));
    viewer
}

/// A running transcode and what it transcodes.
struct Live {
    transcode: Transcode,
    /// The Tracks payload of the input it was started for.
    source: Arc<Vec<u8>>,
    track: u64,
    made: mpsc::UnboundedReceiver<FromWorker>,
    /// The input's Tracks payload with the track as H.264, once the transcode said its avcC.
    tracks_body: Option<Arc<Vec<u8>>>,
}

struct Relay {
    pool: TranscodePool,
    out: broadcast::Sender<Arc<EdgeFrame>>,
    live: Option<Live>,
    /// After a lost frame the decoder needs a key frame.
    need_key: bool,
    /// The last track list looked at and its H.265 track: parsed once, not for every frame.
    looked_at: Option<(Arc<Vec<u8>>, Option<u64>)>,
}

impl Relay {
    async fn run(mut self, mut frames: broadcast::Receiver<Arc<EdgeFrame>>) {
        let mut check = tokio::time::interval(VIEWER_CHECK);
        loop {
            if self.out.receiver_count() == 0 {
                break;
            }
            let made = async {
                match self.live.as_mut() {
                    Some(live) => live.made.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                frame = frames.recv() => match frame {
                    Ok(frame) => {
                        if let Err(error) = self.take(frame) {
                            tracing::warn!(%error, "a WebRTC viewer's transcode could not start");
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => self.need_key = true,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                made = made => self.give(made),
                _ = check.tick() => {}
            }
        }
        if let Some(mut live) = self.live.take() {
            live.transcode.stop();
        }
    }

    /// One frame from the live edge: passed on, or into the transcode.
    fn take(&mut self, frame: Arc<EdgeFrame>) -> Result<(), ImagingError> {
        let Some(track) = self.hevc_track(&frame) else {
            let _ = self.out.send(frame);
            return Ok(());
        };
        if frame.track != track {
            return Ok(());
        }
        if self.need_key && !frame.keyframe {
            return Ok(());
        }
        if self.live.is_none() {
            self.live = Some(self.start(&frame, track)?);
        }
        let Some(live) = &self.live else { return Ok(()) };
        let input = EncodedFrame { pts_ms: frame.pts_ms, keyframe: frame.keyframe, data: frame.data.clone() };
        // A frame the transcode cannot take now (it fell behind, or the time went backwards)
        // is dropped, and the decoder starts again at the next key frame.
        self.need_key = live.transcode.push(input).is_err();
        Ok(())
    }

    /// The H.265 track the frame's codec configuration names, parsed once per configuration; a
    /// changed configuration ends the transcode of the old one.
    fn hevc_track(&mut self, frame: &EdgeFrame) -> Option<u64> {
        match &mut self.looked_at {
            // Each upload (and each fragment) may carry its own copy of an unchanged track list.
            Some((tracks, track)) if Arc::ptr_eq(tracks, &frame.tracks_body) || **tracks == *frame.tracks_body => {
                *tracks = frame.tracks_body.clone();
                *track
            }
            _ => {
                if let Some(mut old) = self.live.take() {
                    tracing::info!("the stream's codec configuration changed: its transcode starts again");
                    old.transcode.stop();
                    self.need_key = true;
                }
                let track = hevc_track(&frame.tracks_body).map(|t| t.number);
                self.looked_at = Some((frame.tracks_body.clone(), track));
                track
            }
        }
    }

    fn start(&self, frame: &EdgeFrame, track: u64) -> Result<Live, ImagingError> {
        let config = hevc_track(&frame.tracks_body).map(|t| t.config).unwrap_or_default();
        let (sender, made) = mpsc::unbounded_channel();
        let on_output = Box::new(move |output| drop(sender.send(output)));
        // Frames decoded after a key frame may present before it (B-frames, an open GOP's leading
        // pictures): the timeline starts early enough for them.
        let base_ms = frame.pts_ms.saturating_sub(LEADING_PICTURES_MS);
        let start = TranscodeStart { codec: Codec::Hevc, config, base_ms, keep_ms: None, key_frames_as_input: true };
        let transcode = self.pool.live(start, on_output)?;
        tracing::info!(track, from_ms = frame.pts_ms, "transcoding H.265 to H.264 for a WebRTC viewer");
        Ok(Live { transcode, source: frame.tracks_body.clone(), track, made, tracks_body: None })
    }

    /// One output of the transcode, to the viewer.
    fn give(&mut self, made: Option<FromWorker>) {
        let Some(live) = self.live.as_mut() else { return };
        match made {
            Some(FromWorker::Frame(frame)) => {
                if let Some(frame) = live.edge_frame(frame) {
                    let _ = self.out.send(Arc::new(frame));
                }
            }
            // The transcode ended (its worker failed): the next key frame starts another.
            Some(FromWorker::Failed(error)) => {
                tracing::warn!(%error, "a WebRTC viewer's transcode failed");
                self.live = None;
                self.need_key = true;
            }
            Some(FromWorker::Finished) | None => {
                tracing::info!("a WebRTC viewer's transcode ended");
                self.live = None;
                self.need_key = true;
            }
        }
    }
}

impl Live {
    fn edge_frame(&mut self, frame: TranscodedFrame) -> Option<EdgeFrame> {
        if let Some(avc_config) = &frame.avc_config {
            self.tracks_body = h264_tracks_body(&self.source, self.track, avc_config).ok().map(Arc::new);
        }
        Some(EdgeFrame {
            track: self.track,
            pts_ms: frame.pts_ms,
            keyframe: frame.keyframe,
            data: frame.data,
            tracks_body: self.tracks_body.clone()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use framelog_imaging::Isolation;
    use framelog_imaging::test_media::encoded_bars;
    use framelog_media::package::PackagedTrack;
    use framelog_media::{Track, tracks_body};

    use super::*;

    fn edge_frames(codec: Codec) -> Vec<Arc<EdgeFrame>> {
        let (config, frames) = encoded_bars(codec, 20, 10);
        let codec_id = if codec == Codec::Hevc { "V_MPEGH/ISO/HEVC" } else { "V_MPEG4/ISO/AVC" };
        let track =
            Track { number: 1, track_type: 1, codec_id: codec_id.into(), codec_private: config, ..Track::default() };
        let tracks = Arc::new(tracks_body(&[track]));
        frames
            .into_iter()
            .map(|f| {
                let (pts_ms, keyframe, data) = (f.pts_ms, f.keyframe, f.data);
                Arc::new(EdgeFrame { track: 1, pts_ms, keyframe, data, tracks_body: tracks.clone() })
            })
            .collect()
    }

    fn video_track(tracks: &[u8]) -> PackagedTrack {
        let parsed = framelog_media::parse_tracks(tracks, 0).expect("tracks");
        PackagedTrack::from_track(&parsed[0]).expect("a packageable track")
    }

    /// Sends `frames` through a relay and collects what comes out until it is quiet.
    async fn relay(frames: Vec<Arc<EdgeFrame>>) -> Vec<Arc<EdgeFrame>> {
        let pool = TranscodePool::new(1, Isolation::InProcess).expect("pool");
        let (edge, input) = broadcast::channel(64);
        let mut viewer = h264_frames(pool, input);
        for frame in frames {
            edge.send(frame).expect("the relay listens");
        }
        let mut out = Vec::new();
        while let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_secs(3), viewer.recv()).await {
            out.push(frame);
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_viewer_of_an_h265_stream_gets_h264_with_the_same_times_and_key_frames() {
        let input = edge_frames(Codec::Hevc);
        let mut times: Vec<i64> = input.iter().map(|f| f.pts_ms).collect();
        times.sort_unstable();
        let keys: Vec<i64> = input.iter().filter(|f| f.keyframe).map(|f| f.pts_ms).collect();
        let out = relay(input).await;
        // The last frames stay in the live transcode until more input pushes them out.
        assert!(out.len() >= 15, "{} frames out", out.len());
        assert_eq!(out.iter().map(|f| f.pts_ms).collect::<Vec<_>>(), times[..out.len()]);
        assert_eq!(out.iter().filter(|f| f.keyframe).map(|f| f.pts_ms).collect::<Vec<_>>(), keys);
        let track = video_track(&out[0].tracks_body);
        assert_eq!((track.number, track.codec), (1, Codec::Avc));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_transcode_serves_fragments_that_carry_copies_of_the_same_tracks() {
        let input: Vec<Arc<EdgeFrame>> = edge_frames(Codec::Hevc)
            .into_iter()
            .map(|f| {
                let tracks_body = Arc::new(f.tracks_body.to_vec());
                Arc::new(EdgeFrame {
                    track: f.track,
                    pts_ms: f.pts_ms,
                    keyframe: f.keyframe,
                    data: f.data.clone(),
                    tracks_body,
                })
            })
            .collect();
        let out = relay(input).await;
        // A restarted transcode would begin again at a key frame and lose the frames in flight.
        assert!(out.len() >= 15, "{} frames out", out.len());
        assert_eq!(out.iter().filter(|f| f.keyframe).count(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_viewer_joining_at_an_open_gop_key_frame_keeps_its_transcode() {
        let input = edge_frames(Codec::Hevc);
        let second_key = input.iter().rposition(|f| f.keyframe).expect("two key frames");
        let joined = input[second_key..].to_vec();
        assert!(joined[1].pts_ms < joined[0].pts_ms, "a leading picture follows the key frame");
        let out = relay(joined).await;
        // The leading picture refers to a GOP the viewer never had; the frames after it all come.
        assert!(out.len() >= 6, "{} frames out", out.len());
        assert!(out.iter().all(|f| f.pts_ms >= input[second_key].pts_ms), "no picture from before the key frame");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_viewer_of_an_h264_stream_gets_its_frames_untouched() {
        let input = edge_frames(Codec::Avc);
        let out = relay(input.clone()).await;
        assert_eq!(out.len(), input.len());
        assert!(out.iter().zip(&input).all(|(out, input)| Arc::ptr_eq(out, input)), "the same frames, not copies");
    }
}
