//! Recording one stream: source frames → fragments (cut at key frames after the target duration)
//! → the durable buffer. Runs on its own thread: GStreamer pushes frames from its streaming
//! thread into a small bounded queue, and the durable writes (fsync) happen here, never on the
//! async runtime.
//!
//! Producer timestamps are wall-clock: when a source (re)starts, its first frame is pinned to the
//! current time and later frames follow the camera's own timestamps. They never go backwards: if
//! a restarted source would map before the end of the last recorded fragment (a camera whose
//! clock reset, a looping file), the mapping is moved forward, so the server never sees 4004.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::Duration;

use bytes::Bytes;
use framelog_sdk::mkv::{cluster, stream_header, tags};
use framelog_sdk::{EncodedFrame, TrackSpec};

use crate::buffer::{Recorded, StreamBuffer};
use crate::config::StreamConfig;
use crate::schedule::Window;
use crate::source::{Source, SourceEvent, SourceFrame};

const QUEUED_FRAMES: usize = 256;
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// A source that delivers no video for this long (a frozen camera, a dead connection that no
/// one reported) is restarted.
const NO_VIDEO_LIMIT: Duration = Duration::from_secs(10);

/// Source time → producer (wall) time, monotonic across source restarts.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: Option<i64>,
    /// End of the last recorded fragment (ms since the epoch).
    pub last_end_ms: u64,
}

impl Clock {
    /// A new source session: the next frame is pinned to the wall clock again.
    pub fn restart(&mut self) {
        self.offset_ms = None;
    }

    pub fn producer_ms(&mut self, pts_ms: i64, wall_now_ms: u64) -> u64 {
        let offset = *self.offset_ms.get_or_insert_with(|| {
            let pinned = wall_now_ms.max(self.last_end_ms + 1) as i64;
            pinned - pts_ms
        });
        (pts_ms + offset).max(0) as u64
    }
}

/// Frames of the fragment being built (video track 1, AAC track 2), and the codec
/// configuration of each track as the source reported it.
#[derive(Debug, Default)]
struct Pending {
    frames: Vec<EncodedFrame>,
    video: Option<TrackSpec>,
    audio: Option<TrackSpec>,
}

impl Pending {
    fn has_video(&self) -> bool {
        self.frames.iter().any(|f| f.track == 1)
    }

    /// The MKV header: the video track, and the audio track when this fragment has audio (a
    /// declared track without frames in a fragment is error 4011 at the server).
    fn header(&self) -> Option<Vec<u8>> {
        let mut tracks = vec![self.video.clone()?];
        if let Some(audio) = self.audio.clone().filter(|_| self.frames.iter().any(|f| f.track == 2)) {
            tracks.push(audio);
        }
        Some(stream_header(&tracks))
    }
}

/// Records `stream` into `buffer` until `stop`.
pub fn run(stream: StreamConfig, buffer: Arc<StreamBuffer>, record_window: Option<Window>, stop: Arc<AtomicBool>) {
    let metrics = buffer.metrics.clone();
    let mut clock = Clock::default();
    while !stop.load(Ordering::Relaxed) {
        if !crate::schedule::is_open(record_window.as_ref()) {
            metrics.recording.store(false, Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        let (events, frames) = sync_channel(QUEUED_FRAMES);
        let source = match Source::start(&stream, events) {
            Ok(source) => source,
            Err(error) => {
                let error = stream.source.redact_in(&format!("{error:#}"));
                tracing::warn!(stream = %stream.name, %error, "the source did not start");
                metrics.set_error(format!("source: {error}"));
                std::thread::sleep(RESTART_DELAY);
                continue;
            }
        };
        metrics.recording.store(true, Ordering::Relaxed);
        clock.restart();
        let mut pending = Pending::default();
        let mut last_video = std::time::Instant::now();
        let ended = loop {
            if stop.load(Ordering::Relaxed) || !crate::schedule::is_open(record_window.as_ref()) {
                break None;
            }
            if last_video.elapsed() > NO_VIDEO_LIMIT {
                break Some(Some(format!("no video for {} s", NO_VIDEO_LIMIT.as_secs())));
            }
            match frames.recv_timeout(Duration::from_millis(200)) {
                Ok(SourceEvent::Frame(frame)) => {
                    if !frame.is_audio() {
                        last_video = std::time::Instant::now();
                    }
                    if let Err(error) = on_frame(&stream, &buffer, &mut clock, &mut pending, frame) {
                        tracing::error!(stream = %stream.name, error = %format!("{error:#}"), "recording failed");
                        metrics.set_error(format!("recording: {error:#}"));
                    }
                }
                Ok(SourceEvent::Ended(reason)) => break Some(reason),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break Some(Some("the source stopped".into())),
            }
        };
        drop(source);
        // What the source delivered before it ended is a (shorter) fragment of its own.
        if let Err(error) = seal(&stream, &buffer, &mut clock, &mut pending) {
            metrics.set_error(format!("recording: {error:#}"));
        }
        metrics.recording.store(false, Ordering::Relaxed);
        match ended {
            Some(None) if stream.source.starts_with("file://") && !stream.loop_file => {
                tracing::info!(stream = %stream.name, "the file has been recorded");
                return;
            }
            Some(None) if stream.source.starts_with("file://") => {}
            Some(reason) => {
                let reason = stream.source.redact_in(&reason.unwrap_or_else(|| "end of stream".into()));
                tracing::warn!(stream = %stream.name, %reason, "the source ended; restarting it");
                metrics.set_error(format!("source: {reason}"));
                std::thread::sleep(RESTART_DELAY);
            }
            None => {}
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn track_of(frame: &SourceFrame) -> TrackSpec {
    match frame.codec {
        "aac" => TrackSpec::aac(2, frame.config.clone(), f64::from(frame.width), frame.height),
        "h265" => TrackSpec::h265(1, frame.config.clone(), frame.width, frame.height),
        _ => TrackSpec::h264(1, frame.config.clone(), frame.width, frame.height),
    }
}

fn on_frame(
    stream: &StreamConfig,
    buffer: &StreamBuffer,
    clock: &mut Clock,
    pending: &mut Pending,
    frame: SourceFrame,
) -> anyhow::Result<()> {
    let track = track_of(&frame);
    if frame.is_audio() {
        // Audio joins the fragment a video key frame opened; before that there is none.
        if pending.has_video() {
            let pts_ms = clock.producer_ms(frame.pts_ms, now_ms());
            pending.audio = Some(track);
            pending.frames.push(EncodedFrame { track: 2, pts_ms, keyframe: true, data: Bytes::from(frame.data) });
        }
        return Ok(());
    }
    // Wait for a key frame: a fragment must start decodable.
    if !pending.has_video() && !frame.keyframe {
        return Ok(());
    }
    let config_changed = pending.video.as_ref().is_some_and(|v| *v != track);
    let start_ms = pending.frames.iter().map(|f| f.pts_ms).min();
    let pts_ms = clock.producer_ms(frame.pts_ms, now_ms());
    // Half a frame step of tolerance: camera timestamps jitter, and a key frame a millisecond
    // early must still close a full-length fragment.
    let video: Vec<u64> = pending.frames.iter().filter(|f| f.track == 1).map(|f| f.pts_ms).collect();
    let half_step_ms = match (video.iter().min(), video.iter().max()) {
        (Some(first), Some(last)) if video.len() > 1 => (last - first) / (video.len() as u64 - 1) / 2,
        _ => 5,
    };
    let long_enough =
        start_ms.is_some_and(|start| pts_ms.saturating_sub(start) + half_step_ms >= stream.fragment_duration_ms);
    if frame.keyframe && (long_enough || config_changed) {
        seal(stream, buffer, clock, pending)?;
    }
    pending.video = Some(track);
    pending.frames.push(EncodedFrame { track: 1, pts_ms, keyframe: frame.keyframe, data: Bytes::from(frame.data) });
    Ok(())
}

/// Writes the fragment being built to the buffer.
fn seal(stream: &StreamConfig, buffer: &StreamBuffer, clock: &mut Clock, pending: &mut Pending) -> anyhow::Result<()> {
    let header = pending.header();
    let frames = std::mem::take(&mut pending.frames);
    let (Some(header), Some(start_ms)) = (header, frames.iter().map(|f| f.pts_ms).min()) else { return Ok(()) };
    let end_ms = frames.iter().map(|f| f.pts_ms).max().unwrap_or(start_ms);
    // The last frame lasts one (video) frame step.
    let video_frames = frames.iter().filter(|f| f.track == 1).count() as u64;
    let step_ms = if video_frames > 1 { (end_ms - start_ms) / (video_frames - 1) } else { 33 };
    let duration_ms = end_ms - start_ms + step_ms;
    let header_id = buffer.store_header(&header)?;
    let cluster_bytes = cluster(start_ms, &frames)?;
    let recorded = buffer.record(header_id, start_ms, duration_ms, |id| {
        let mut bytes = tags(&[(framelog_media::FRAGMENT_ID_TAG.to_string(), id.to_string())]);
        bytes.extend_from_slice(&cluster_bytes);
        bytes
    })?;
    clock.last_end_ms = clock.last_end_ms.max(start_ms + duration_ms);
    if let Recorded::Stored { seq } = recorded {
        tracing::debug!(stream = %stream.name, seq, start_ms, frames = frames.len(), "fragment recorded");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_source_never_maps_before_what_was_recorded() {
        let mut clock = Clock::default();
        assert_eq!(clock.producer_ms(5_000, 1_000_000), 1_000_000);
        assert_eq!(clock.producer_ms(5_040, 1_000_100), 1_000_040, "later frames follow the camera");
        clock.last_end_ms = 1_000_080;
        // The camera reconnects with its clock reset to 0 and the wall clock behind the recording
        // (it ran fast): the first frame lands just after the last fragment.
        clock.restart();
        assert_eq!(clock.producer_ms(0, 999_000), 1_000_081);
        assert_eq!(clock.producer_ms(40, 999_000), 1_000_121);
        // A reconnect later on picks up the wall clock again.
        clock.restart();
        assert_eq!(clock.producer_ms(123, 2_000_000), 2_000_000);
    }
}
