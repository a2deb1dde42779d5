//! A bounded number of running transcodes. Transcoding 1080p30 H.265 to H.264 costs a large share
//! of a core per stream (docs/benchmarks.md), so the server runs at most `slots` at once: a live viewer
//! beyond them is refused (Busy), and a stored fragment waits a moment for a slot and is then
//! refused. Each transcode runs in a worker process of its own (`Isolation::Process`), or on
//! threads of this process for tests and tools.

use std::io::BufReader;
use std::process::{Child, ChildStdin};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, channel, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use framelog_media::package::Codec;

use crate::decode::EncodedFrame;
use crate::error::ImagingError;
use crate::fragment_transcode::{
    StoredFragment, has_leading_pictures, hevc_track, replace_track, same_track, track_frames,
};
use crate::isolated::{WorkerCommand, spawn_worker};
use crate::pool::Isolation;
use crate::protocol::{read_message, write_message};
use crate::transcode::{Pulled, TranscodeStart, TranscodedFrame, Transcoder};
use crate::transcode_protocol::{FromWorker, ToWorker, decode_from_worker, encode_to_worker};

/// Input frames a live transcode holds before it refuses more (about two seconds at 30 fps).
const LIVE_INPUT_FRAMES: usize = 64;
const PULL_WAIT: Duration = Duration::from_millis(100);

/// Handle to the pool; clones share its slots.
#[derive(Debug, Clone)]
pub struct TranscodePool {
    slots: Arc<Slots>,
    isolation: Isolation,
    /// Transcodes started since the pool was made (for tests and metrics).
    started: Arc<std::sync::atomic::AtomicU64>,
}

/// What a transcode hands its owner.
pub type OnOutput = Box<dyn FnMut(FromWorker) + Send + 'static>;

impl TranscodePool {
    /// A pool of `slots` concurrent transcodes. Initialises GStreamer when transcoding in process.
    pub fn new(slots: usize, isolation: Isolation) -> Result<TranscodePool, ImagingError> {
        if matches!(isolation, Isolation::InProcess) {
            gstreamer::init().map_err(|e| ImagingError::Unavailable(e.to_string()))?;
        }
        Ok(TranscodePool { slots: Arc::new(Slots::new(slots.max(1))), isolation, started: Arc::default() })
    }

    /// Transcodes started so far.
    pub fn started(&self) -> u64 {
        self.started.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Transcodes running now.
    pub fn busy(&self) -> usize {
        self.slots.used()
    }

    /// Starts a live transcode. Its frames (then `Finished` or `Failed`) go to `on_output` on a
    /// thread of its own. Busy when every slot is taken.
    pub fn live(&self, start: TranscodeStart, on_output: OnOutput) -> Result<Transcode, ImagingError> {
        let slot = self.slots.try_take().ok_or(ImagingError::Busy)?;
        self.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Transcode::start(&self.isolation, slot, start, on_output)
    }

    /// `fragment` with its H.265 track as H.264 (unchanged when it has none). `previous`, the
    /// fragment before it, primes the decoder when this one has pictures that refer back into it
    /// (the leading pictures of an open GOP, presented before its key frame): without it they
    /// cannot be decoded and are left out. Blocking: waits up to `slot_wait` for a slot and
    /// `deadline` for the transcode.
    pub fn fragment(
        &self,
        fragment: &StoredFragment,
        previous: Option<&StoredFragment>,
        slot_wait: Duration,
        deadline: Duration,
    ) -> Result<StoredFragment, ImagingError> {
        let Some(track) = hevc_track(&fragment.record.tracks_body) else { return Ok(fragment.clone()) };
        let frames = track_frames(fragment, track.number);
        let keep_ms: Vec<i64> = frames.iter().map(|f| f.pts_ms).collect();
        let lead_in = match previous {
            Some(previous) if has_leading_pictures(&frames) && same_track(previous, track.number, &track.config) => {
                track_frames(previous, track.number)
            }
            _ => Vec::new(),
        };
        let input: Vec<EncodedFrame> = lead_in.into_iter().chain(frames).collect();
        let Some(base_ms) = input.iter().map(|f| f.pts_ms).min() else { return Ok(fragment.clone()) };
        let slot = self.slots.take(slot_wait).ok_or(ImagingError::Busy)?;
        let (sender, outputs) = channel();
        let on_output: OnOutput = Box::new(move |output| drop(sender.send(output)));
        let start = TranscodeStart {
            codec: Codec::Hevc,
            config: track.config.clone(),
            base_ms,
            keep_ms: Some(keep_ms),
            key_frames_as_input: false,
        };
        self.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut transcode = Transcode::start(&self.isolation, slot, start, on_output)?;
        let input_frames = input.len();
        let deadline = Instant::now() + deadline;
        let fed = input.into_iter().try_for_each(|frame| transcode.push_until(frame, deadline));
        transcode.end_input();
        let collected = match fed {
            Ok(()) => collect(&outputs, input_frames, deadline),
            // A worker that died while being fed says why on its way out.
            Err(fed) => Err(reported_failure(&outputs).unwrap_or(fed)),
        };
        if collected.is_err() {
            // A worker that overran or failed must not keep its slot.
            transcode.stop();
        }
        let (config, transcoded) = collected?;
        replace_track(fragment, track.number, &config, transcoded)
    }
}

/// The failure a worker reported on its way out, if it did within a second.
fn reported_failure(outputs: &Receiver<FromWorker>) -> Option<ImagingError> {
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Ok(output) = outputs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if let FromWorker::Failed(error) = output {
            return Some(error);
        }
    }
    None
}

/// The frames of a finished transcode and the avcC record they share.
fn collect(
    outputs: &Receiver<FromWorker>,
    expected: usize,
    deadline: Instant,
) -> Result<(Vec<u8>, Vec<TranscodedFrame>), ImagingError> {
    let mut frames = Vec::with_capacity(expected);
    let mut config = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match outputs.recv_timeout(left) {
            Ok(FromWorker::Frame(frame)) => {
                if let Some(changed) = &frame.avc_config {
                    // One fragment is one init segment: a configuration change mid-fragment
                    // (never seen from x264 at a fixed size) cannot be packaged.
                    if config.as_ref().is_some_and(|c| c != changed) {
                        return Err(ImagingError::Decode("the H.264 configuration changed mid-fragment".into()));
                    }
                    config = Some(changed.clone());
                }
                frames.push(frame);
            }
            Ok(FromWorker::Finished) => break,
            Ok(FromWorker::Failed(error)) => return Err(error),
            Err(RecvTimeoutError::Timeout) => {
                return Err(ImagingError::WorkerFailed("the transcode overran its deadline".into()));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(ImagingError::WorkerFailed("the transcode stopped".into()));
            }
        }
    }
    let config = config.ok_or_else(|| ImagingError::Decode("the transcode made no frame".into()))?;
    Ok((config, frames))
}

/// A running transcode. Dropping it ends the input: the frames in flight still come out, then
/// `Finished`. `stop` ends it at once.
#[derive(Debug)]
pub struct Transcode {
    input: Option<SyncSender<EncodedFrame>>,
    /// The worker process, shared with the thread that reads it: killing through `Child` never
    /// signals a process id the thread has already reaped (and the system may have reused).
    process: Option<SharedChild>,
}

type SharedChild = Arc<Mutex<Child>>;

impl Transcode {
    fn start(
        isolation: &Isolation,
        slot: Slot,
        start: TranscodeStart,
        on_output: OnOutput,
    ) -> Result<Transcode, ImagingError> {
        let (input, frames) = sync_channel(LIVE_INPUT_FRAMES);
        let process = match isolation {
            Isolation::InProcess => {
                let transcoder = Arc::new(Transcoder::start(&start)?);
                run_in_process(transcoder, frames, slot, on_output);
                None
            }
            Isolation::Process(command) => {
                Some(run_in_worker(command, &ToWorker::Start(start), frames, slot, on_output)?)
            }
        };
        Ok(Transcode { input: Some(input), process })
    }

    /// Hands over one input frame; a live caller that gets `Busy` has fallen behind the encoder
    /// and should skip to the next key frame.
    pub fn push(&self, frame: EncodedFrame) -> Result<(), ImagingError> {
        let Some(input) = &self.input else { return Err(stopped()) };
        match input.try_send(frame) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(ImagingError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(stopped()),
        }
    }

    /// Hands over one input frame, waiting for room.
    /// Hands over one input frame, waiting for room until `deadline`.
    pub fn push_until(&self, frame: EncodedFrame, deadline: Instant) -> Result<(), ImagingError> {
        let Some(input) = &self.input else { return Err(stopped()) };
        let mut frame = frame;
        loop {
            match input.try_send(frame) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(stopped()),
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    frame = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => return Err(overran()),
            }
        }
    }

    /// No more input: the frames in flight come out, then `Finished`.
    pub fn end_input(&mut self) {
        self.input = None;
    }

    /// Ends the transcode now, frames in flight included.
    pub fn stop(&mut self) {
        self.input = None;
        if let Some(child) = self.process.take() {
            // The reader thread sees its pipe close, reaps the worker and frees the slot. If it
            // holds the child now it is already killing it: never wait for it here.
            if let Ok(mut child) = child.try_lock() {
                let _ = child.kill();
            }
        }
    }
}

fn overran() -> ImagingError {
    ImagingError::WorkerFailed("the transcode overran its deadline".into())
}

fn stopped() -> ImagingError {
    ImagingError::WorkerFailed("the transcode has stopped".into())
}

fn run_in_process(transcoder: Arc<Transcoder>, frames: Receiver<EncodedFrame>, slot: Slot, mut on_output: OnOutput) {
    let feeder = transcoder.clone();
    std::thread::spawn(move || {
        for frame in frames {
            if feeder.push(frame).is_err() {
                break;
            }
        }
        let _ = feeder.finish();
    });
    std::thread::spawn(move || {
        let last = loop {
            match transcoder.pull(PULL_WAIT) {
                Ok(Pulled::Frame(frame)) => on_output(FromWorker::Frame(frame)),
                Ok(Pulled::Waiting) => {}
                Ok(Pulled::Finished) => break FromWorker::Finished,
                Err(error) => break FromWorker::Failed(error),
            }
        };
        // The slot is free before the owner hears the end, so it can start another at once.
        drop(transcoder);
        drop(slot);
        on_output(last);
    });
}

/// Starts the worker process and its two pipe threads; answers its pid.
fn run_in_worker(
    command: &WorkerCommand,
    start: &ToWorker,
    frames: Receiver<EncodedFrame>,
    slot: Slot,
    mut on_output: OnOutput,
) -> Result<SharedChild, ImagingError> {
    let (mut child, mut stdin, stdout) = spawn_worker(command, "transcode")?;
    if let Err(error) = write_message(&mut stdin, &encode_to_worker(start)) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(ImagingError::WorkerFailed(format!("the transcode worker did not take its start: {error}")));
    }
    let child = Arc::new(Mutex::new(child));
    let reaped = child.clone();
    std::thread::spawn(move || feed_worker(stdin, frames));
    std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let last = loop {
            match read_message(&mut stdout).map(|m| m.map(|m| decode_from_worker(&m))) {
                Ok(Some(Ok(FromWorker::Frame(frame)))) => on_output(FromWorker::Frame(frame)),
                Ok(Some(Ok(ended))) => break ended,
                Ok(Some(Err(error))) => break FromWorker::Failed(error),
                Ok(None) | Err(_) => break FromWorker::Failed(ImagingError::WorkerFailed(exit_of(&reaped))),
            }
        };
        {
            let mut child = reaped.lock().unwrap_or_else(|e| e.into_inner());
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(slot);
        on_output(last);
    });
    Ok(child)
}

fn feed_worker(mut stdin: ChildStdin, frames: Receiver<EncodedFrame>) {
    for frame in frames {
        if write_message(&mut stdin, &encode_to_worker(&ToWorker::Frame(frame))).is_err() {
            return;
        }
    }
    // Dropping stdin closes the pipe: the worker drains and finishes.
}

/// Why the worker stopped answering. It closed its pipe, so it is exiting: give it a moment to
/// be reaped with its own status (a signal, say) before it is killed.
fn exit_of(child: &SharedChild) -> String {
    let lock = || child.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..50 {
        if let Ok(Some(status)) = lock().try_wait() {
            return format!("the transcode worker ended: {status}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = lock().kill();
    "the transcode worker closed its output and was killed".into()
}

/// A counting semaphore: `total` transcodes at once.
#[derive(Debug)]
struct Slots {
    total: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

/// One taken slot, given back when dropped.
#[derive(Debug)]
struct Slot(Arc<Slots>);

impl Slots {
    fn new(total: usize) -> Slots {
        Slots { total, used: Mutex::new(0), freed: Condvar::new() }
    }

    fn used(&self) -> usize {
        *self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.take(Duration::ZERO)
    }

    fn take(self: &Arc<Self>, wait: Duration) -> Option<Slot> {
        let deadline = Instant::now() + wait;
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= self.total {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            used = self.freed.wait_timeout(used, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        *used += 1;
        Some(Slot(self.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use framelog_media::package::{PackagedTrack, packaged_tracks};
    use framelog_media::{FragmentRecord, Frame, Track, tracks_body};

    use super::*;
    use crate::decode::{FrameRequest, Pixels, decode_frames};
    use crate::fragment_transcode::refers_to_previous;
    use crate::test_media::{encoded_bars, shows_colour_bars};
    use framelog_media::package::frame_time_ms;

    /// A stored fragment of 20 H.265 frames (two key frames) on track 1 with an audio frame on
    /// track 2 between every video frame.
    fn hevc_fragment() -> StoredFragment {
        let (config, frames) = encoded_bars(Codec::Hevc, 20, 10);
        stored_fragment(&config, &frames)
    }

    /// `frames` (decode order, the first a key frame) as a stored fragment on track 1, with an
    /// audio frame on track 2 after each.
    fn stored_fragment(config: &[u8], frames: &[EncodedFrame]) -> StoredFragment {
        let video = Track {
            number: 1,
            uid: 1,
            track_type: 1,
            codec_id: "V_MPEGH/ISO/HEVC".into(),
            codec_private: config.to_vec(),
            pixel_width: Some(320),
            pixel_height: Some(240),
            ..Track::default()
        };
        let audio = Track {
            number: 2,
            uid: 2,
            track_type: 2,
            codec_id: "A_AAC".into(),
            codec_private: vec![0x12, 0x10],
            sampling_frequency_hz: Some(48_000.0),
            channels: Some(2),
            ..Track::default()
        };
        let start_ms = frames[0].pts_ms;
        let mut payload = Vec::new();
        let mut stored = Vec::new();
        for (index, frame) in frames.iter().enumerate() {
            let relative = (frame.pts_ms - start_ms) as i16;
            let start = payload.len();
            payload.extend_from_slice(&frame.data);
            let keyframe = frame.keyframe;
            stored.push(Frame {
                track: 1,
                relative_timecode: relative,
                keyframe,
                lacing: 0,
                data: start..payload.len(),
            });
            let start = payload.len();
            payload.extend_from_slice(&[0xA0, index as u8]);
            stored.push(Frame {
                track: 2,
                relative_timecode: relative,
                keyframe: true,
                lacing: 0,
                data: start..payload.len(),
            });
        }
        let record = FragmentRecord {
            timecode: 0,
            timecode_scale_ns: 1_000_000,
            producer_ts_ms: start_ms as u64,
            server_ts_ms: start_ms as u64 + 100,
            duration_ms: 1_000,
            tracks_body: tracks_body(&[video, audio]),
            tags: Vec::new(),
            frames: stored,
        };
        StoredFragment { record, payload }
    }

    #[test]
    fn an_open_gop_fragment_keeps_its_leading_pictures_with_the_fragment_before() {
        let (config, frames) = encoded_bars(Codec::Hevc, 20, 10);
        let second_key = frames.iter().rposition(|f| f.keyframe).expect("two key frames");
        let (first, second) =
            (stored_fragment(&config, &frames[..second_key]), stored_fragment(&config, &frames[second_key..]));
        assert!(refers_to_previous(&second) && !refers_to_previous(&first), "x265's GOPs are open");
        let mut wanted: Vec<i64> = frames[second_key..].iter().map(|f| f.pts_ms).collect();
        wanted.sort_unstable();
        let times = |f: &StoredFragment| -> Vec<i64> {
            f.record.frames.iter().filter(|fr| fr.track == 1).map(|fr| frame_time_ms(&f.record, fr)).collect()
        };
        let pool = in_process(1);
        let wait = (Duration::from_secs(1), Duration::from_secs(30));
        let alone = pool.fragment(&second, None, wait.0, wait.1).expect("transcodes");
        assert!(times(&alone).len() < wanted.len(), "leading pictures cannot be decoded alone");
        let primed = pool.fragment(&second, Some(&first), wait.0, wait.1).expect("transcodes");
        assert_eq!(times(&primed), wanted, "every picture of the fragment, none of the one before");
        // It starts where its first picture is shown, before the key frame it was cut at.
        assert_eq!(primed.record.producer_ts_ms as i64, wanted[0]);
        assert!(primed.record.producer_ts_ms < second.record.producer_ts_ms);
        let keys: Vec<bool> = primed.record.frames.iter().filter(|fr| fr.track == 1).map(|fr| fr.keyframe).collect();
        assert!(keys[0], "the transcoded fragment starts with a key frame");
        // One rendition: every fragment's H.264 has the same parameter sets (no new init segment,
        // no discontinuity, between fragments).
        let first_done = pool.fragment(&first, None, wait.0, wait.1).expect("transcodes");
        let config = |f: &StoredFragment| packaged_tracks(&f.record).expect("tracks")[0].config.clone();
        assert_eq!(config(&first_done), config(&primed));
    }

    fn start(config: &[u8]) -> TranscodeStart {
        TranscodeStart {
            codec: Codec::Hevc,
            config: config.to_vec(),
            base_ms: 0,
            keep_ms: None,
            key_frames_as_input: true,
        }
    }

    fn in_process(slots: usize) -> TranscodePool {
        TranscodePool::new(slots, Isolation::InProcess).expect("pool")
    }

    #[test]
    fn a_stored_fragment_comes_back_as_h264_with_its_audio_and_times() {
        let original = hevc_fragment();
        let pool = in_process(1);
        let done = pool.fragment(&original, None, Duration::from_secs(1), Duration::from_secs(30)).expect("transcodes");
        let tracks = packaged_tracks(&done.record).expect("tracks");
        let codecs: Vec<Codec> = tracks.iter().map(|t| t.codec).collect();
        assert_eq!(codecs, [Codec::Avc, Codec::Aac]);
        assert!(hevc_track(&done.record.tracks_body).is_none());
        let shape = |f: &StoredFragment, track: u64| -> Vec<(i16, bool)> {
            f.record
                .frames
                .iter()
                .filter(|fr| fr.track == track)
                .map(|fr| (fr.relative_timecode, fr.keyframe))
                .collect()
        };
        assert_eq!(shape(&done, 2), shape(&original, 2), "the audio frames are as they were");
        // The video's B-frames are gone: the same times, in presentation order, and one key frame,
        // the first (the fragment's second GOP needs none: it is decoded from the first).
        let mut video_in: Vec<(i16, bool)> = shape(&original, 1).into_iter().map(|(t, _)| (t, t == 0)).collect();
        video_in.sort_unstable();
        assert_eq!(shape(&done, 1), video_in);
        let audio = |f: &StoredFragment| -> Vec<Vec<u8>> {
            f.record.frames.iter().filter(|fr| fr.track == 2).map(|fr| f.payload[fr.data.clone()].to_vec()).collect()
        };
        assert_eq!(audio(&done), audio(&original), "audio is copied byte for byte");
        assert_eq!(pool.busy(), 0, "the slot is given back");
        let video: &PackagedTrack = &tracks[0];
        let request = FrameRequest {
            codec: Codec::Avc,
            config: video.config.clone(),
            frames: track_frames(&done, 1),
            wanted_pts_ms: vec![5_900],
            scale_to: None,
            jpeg_quality: None,
        };
        let mut pictures = Vec::new();
        decode_frames(request, |frame| pictures.push(frame)).expect("decodes");
        let Some(Pixels::Rgb(rgb)) = pictures.first().map(|p| &p.pixels) else { panic!("a picture: {pictures:?}") };
        assert!(shows_colour_bars(rgb));
    }

    #[test]
    fn a_fragment_without_h265_is_handed_back_unchanged() {
        let mut fragment = hevc_fragment();
        fragment.record.frames.retain(|f| f.track == 2);
        let mut tracks = framelog_media::parse_tracks(&fragment.record.tracks_body, 0).expect("tracks");
        tracks.retain(|t| t.number == 2);
        fragment.record.tracks_body = tracks_body(&tracks);
        let done = in_process(1).fragment(&fragment, None, Duration::ZERO, Duration::from_secs(1)).expect("answered");
        assert_eq!(done, fragment);
    }

    #[test]
    fn live_transcodes_beyond_the_slots_are_refused_until_one_ends() {
        let pool = in_process(1);
        let (config, _) = encoded_bars(Codec::Hevc, 1, 10);
        let (sender, outputs) = channel();
        let on_output: OnOutput = Box::new(move |output| drop(sender.send(output)));
        let mut first = pool.live(start(&config), on_output).expect("a slot");
        let refused = pool.live(start(&config), Box::new(|_| {}));
        assert!(matches!(refused, Err(ImagingError::Busy)), "{refused:?}");
        first.end_input();
        assert_eq!(outputs.recv_timeout(Duration::from_secs(10)), Ok(FromWorker::Finished));
        // The slot comes back once the transcode's thread has ended.
        let mut again = Err(ImagingError::Busy);
        for _ in 0..100 {
            again = pool.live(start(&config), Box::new(|_| {}));
            if again.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(again.is_ok(), "{again:?}");
    }

    #[test]
    fn a_worker_that_crashes_fails_its_transcode() {
        let command = WorkerCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "head -c 4 >/dev/null; kill -SEGV $$".into()],
            job_deadline: Duration::from_secs(5),
        };
        let pool = TranscodePool::new(1, Isolation::Process(command)).expect("pool");
        let (sender, outputs) = channel();
        let _live = pool.live(start(&[1]), Box::new(move |output| drop(sender.send(output)))).expect("starts");
        match outputs.recv_timeout(Duration::from_secs(10)) {
            Ok(FromWorker::Failed(ImagingError::WorkerFailed(why))) => assert!(why.contains("signal"), "{why}"),
            other => panic!("expected the worker's failure, got {other:?}"),
        }
    }
}
