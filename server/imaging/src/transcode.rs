//! H.265 to H.264 with GStreamer, frame by frame: `appsrc (hvc1 caps) ! avdec_h265 ! videoconvert !
//! x264enc ! h264parse ! avc/au ! appsink`. Chromium cannot decode H.265; this lets a browser
//! play an H.265 camera (docs/playback.md "H.265 cameras in Chromium").
//!
//! Frames go in decode order and come out as H.264 access units with the same presentation
//! times, one out for each one in, with no B-frames (so decode order is presentation order). The
//! first picture is a key frame; with `key_frames_as_input` (live) so is every picture whose
//! input was one, so a WebRTC viewer can start where it could before. x264 runs with `tune=zerolatency` (no look-ahead, sliced threads), so
//! a frame leaves as soon as it is decoded: the same pipeline serves a whole stored fragment and
//! a live stream.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use framelog_media::package::Codec;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::{AppSink, AppSrc};

use crate::decode::EncodedFrame;
use crate::error::ImagingError;

/// Constant quality for x264 (its CRF scale; 23 is its default). Cameras' H.265 is already lossy:
/// a little more loss keeps the bit rate near the source's at ultrafast.
const X264_QUALITY: u32 = 23;

/// Where input times start on GStreamer's timeline. x264enc wants no frame earlier than 1000 hours
/// (room for decode times before the first frame) and shifts earlier input there, but its
/// base class then compares forced key frames' times with the shifted ones and drops all but the
/// first: starting there ourselves keeps one timeline.
const TIMELINE_START: gst::ClockTime = gst::ClockTime::from_seconds(1000 * 3600);

/// One H.264 access unit out of the transcoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscodedFrame {
    pub pts_ms: i64,
    pub keyframe: bool,
    /// Length-prefixed NAL units (4-byte lengths), as stored.
    pub data: Vec<u8>,
    /// The avcC record in force from this frame on: set on the first frame and whenever it changes.
    pub avc_config: Option<Vec<u8>>,
}

/// What `pull` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulled {
    Frame(TranscodedFrame),
    /// Nothing came out within the wait.
    Waiting,
    /// Everything is out after `finish`.
    Finished,
}

/// A running transcode. `push` and `pull` may be called from different threads.
pub struct Transcoder {
    pipeline: gst::Pipeline,
    source: AppSrc,
    sink: AppSink,
    /// Input times are shifted by this so that GStreamer's timeline starts at zero.
    base_ms: i64,
    last_config: Mutex<Option<Vec<u8>>>,
    /// Times of input key frames not yet decoded: the encoder is told to make those key frames.
    key_times: KeyTimes,
    key_frames_as_input: bool,
    /// The pipeline's first error. Taking it off the bus hides it from the other side (push and
    /// pull run on different threads), and a stopped pipeline never reaches its end: both sides
    /// report it from here.
    failure: Mutex<Option<ImagingError>>,
}

type KeyTimes = Arc<Mutex<BTreeSet<gst::ClockTime>>>;

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder").field("base_ms", &self.base_ms).finish_non_exhaustive()
    }
}

/// What a transcode takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscodeStart {
    pub codec: Codec,
    /// The hvcC record.
    pub config: Vec<u8>,
    /// The earliest presentation time of any frame (earlier ones are refused).
    pub base_ms: i64,
    /// Only pictures presented at these times are encoded; the other frames only prime the
    /// decoder (the previous fragment, for pictures that refer back into it). None keeps all.
    pub keep_ms: Option<Vec<i64>>,
    /// Make a key frame wherever the input has one (a live stream: a viewer who fell behind
    /// starts again there). Otherwise the first picture is the only key frame: a stored
    /// fragment's parts then start a new one only where it starts, however its GOPs fall.
    pub key_frames_as_input: bool,
}

impl Transcoder {
    /// Starts a transcode of `start.codec` (only H.265 is transcoded).
    pub fn start(start: &TranscodeStart) -> Result<Transcoder, ImagingError> {
        let TranscodeStart { codec, config, base_ms, keep_ms, key_frames_as_input } = start;
        let (codec, base_ms) = (*codec, *base_ms);
        if codec != Codec::Hevc {
            return Err(ImagingError::Decode("only H.265 is transcoded".into()));
        }
        gst::init().map_err(|e| ImagingError::Unavailable(e.to_string()))?;
        let caps = gst::Caps::builder("video/x-h265")
            .field("stream-format", "hvc1")
            .field("alignment", "au")
            .field("codec_data", gst::Buffer::from_slice(config.to_vec()))
            .build();
        // Slice threads only: frame threads hold frames back, one per thread, and live viewers
        // would wait for them.
        let description = format!(
            "appsrc name=source format=time ! avdec_h265 name=decoder thread-type=slice ! videoconvert ! video/x-raw,format=I420 \
             ! x264enc name=encoder tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max=100000 \
             pass=qual quantizer={X264_QUALITY} option-string=scenecut=0 \
             ! h264parse ! video/x-h264,stream-format=avc,alignment=au ! appsink name=sink sync=false"
        );
        let unavailable = |what: String| ImagingError::Unavailable(what);
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| unavailable(format!("{description}: {e}")))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| unavailable("not a pipeline".into()))?;
        let source = pipeline
            .by_name("source")
            .and_then(|e| e.downcast::<AppSrc>().ok())
            .ok_or_else(|| unavailable("appsrc missing".into()))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<AppSink>().ok())
            .ok_or_else(|| unavailable("appsink missing".into()))?;
        let key_times = KeyTimes::default();
        let keep = keep_ms.as_ref().map(|times| times.iter().filter_map(|&ms| timeline_time(ms, base_ms)).collect());
        force_key_frames(&pipeline, key_times.clone(), keep)
            .ok_or_else(|| unavailable("decoder or encoder pad missing".into()))?;
        source.set_caps(Some(&caps));
        // A bounded input queue: a caller pushing faster than x264 encodes waits, it does not
        // pile up frames.
        source.set_max_bytes(64 << 20);
        source.set_property("block", true);
        pipeline.set_state(gst::State::Playing).map_err(|e| unavailable(e.to_string()))?;
        Ok(Transcoder {
            pipeline,
            source,
            sink,
            base_ms,
            last_config: Mutex::new(None),
            key_times,
            key_frames_as_input: *key_frames_as_input,
            failure: Mutex::new(None),
        })
    }

    /// Hands one H.265 access unit (length-prefixed NAL units) to the decoder.
    pub fn push(&self, frame: EncodedFrame) -> Result<(), ImagingError> {
        let pts = timeline_time(frame.pts_ms, self.base_ms)
            .ok_or_else(|| ImagingError::Decode("a frame before the transcode's first".into()))?;
        if frame.keyframe && self.key_frames_as_input {
            self.key_times.lock().unwrap_or_else(|e| e.into_inner()).insert(pts);
        }
        let mut buffer = gst::Buffer::from_slice(frame.data);
        let buffer_ref = buffer.make_mut();
        buffer_ref.set_pts(pts);
        if !frame.keyframe {
            buffer_ref.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
        self.source.push_buffer(buffer).map_err(|e| ImagingError::Decode(format!("decoder refused input: {e}")))?;
        self.check_bus()
    }

    /// No more input: what is in flight still comes out, then `pull` answers `Ok(None)`.
    pub fn finish(&self) -> Result<(), ImagingError> {
        self.source.end_of_stream().map(|_| ()).map_err(|e| ImagingError::Decode(format!("end of stream refused: {e}")))
    }

    /// The next H.264 frame, waiting at most `wait` for it.
    pub fn pull(&self, wait: Duration) -> Result<Pulled, ImagingError> {
        let timeout = gst::ClockTime::from_nseconds(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
        match self.sink.try_pull_sample(timeout) {
            Some(sample) => self.frame(&sample).map(Pulled::Frame),
            None if self.sink.is_eos() => Ok(Pulled::Finished),
            None => self.check_bus().map(|()| Pulled::Waiting),
        }
    }

    fn frame(&self, sample: &gst::Sample) -> Result<TranscodedFrame, ImagingError> {
        let bad = |what: &str| ImagingError::Decode(what.to_string());
        let buffer = sample.buffer().ok_or_else(|| bad("a sample without a buffer"))?;
        let pts = buffer
            .pts()
            .and_then(|pts| pts.checked_sub(TIMELINE_START))
            .ok_or_else(|| bad("an encoded frame without a time"))?;
        let config = sample
            .caps()
            .and_then(|caps| caps.structure(0))
            .and_then(|s| s.get::<gst::Buffer>("codec_data").ok())
            .and_then(|b| b.map_readable().ok().map(|m| m.as_slice().to_vec()));
        let mut last = self.last_config.lock().unwrap_or_else(|e| e.into_inner());
        let avc_config = match config {
            Some(config) if last.as_ref() != Some(&config) => {
                *last = Some(config.clone());
                Some(config)
            }
            _ => None,
        };
        let map = buffer.map_readable().map_err(|_| bad("unreadable frame"))?;
        Ok(TranscodedFrame {
            pts_ms: self.base_ms + i64::try_from(pts.mseconds()).unwrap_or(i64::MAX - self.base_ms),
            keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data: map.as_slice().to_vec(),
            avc_config,
        })
    }

    fn check_bus(&self) -> Result<(), ImagingError> {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if failure.is_none()
            && let Some(bus) = self.pipeline.bus()
            && let Some(message) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(error) = message.view()
        {
            *failure = Some(ImagingError::Decode(error.error().to_string()));
        }
        failure.clone().map_or(Ok(()), Err)
    }
}

/// A presentation time on the pipeline's timeline.
fn timeline_time(pts_ms: i64, base_ms: i64) -> Option<gst::ClockTime> {
    let offset_ms = u64::try_from(pts_ms.checked_sub(base_ms)?).ok()?;
    TIMELINE_START.checked_add(gst::ClockTime::from_nseconds(offset_ms.checked_mul(1_000_000)?))
}

/// As pictures leave the decoder: drops those not kept (`keep`, when set), and makes the encoder
/// start a key frame (with its parameter sets) at each kept picture whose input was one. A
/// force-key-unit event sent with the input does not survive the decoder, so it is sent to the
/// encoder here, ahead of the picture itself.
fn force_key_frames(
    pipeline: &gst::Pipeline,
    key_times: KeyTimes,
    keep: Option<BTreeSet<gst::ClockTime>>,
) -> Option<()> {
    let decoded = pipeline.by_name("decoder")?.static_pad("src")?;
    let encoder_input = pipeline.by_name("encoder")?.static_pad("sink")?;
    decoded.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else { return gst::PadProbeReturn::Ok };
        let Some(pts) = buffer.pts() else { return gst::PadProbeReturn::Ok };
        let is_key = key_times.lock().unwrap_or_else(|e| e.into_inner()).remove(&pts);
        if keep.as_ref().is_some_and(|keep| !keep.contains(&pts)) {
            return gst::PadProbeReturn::Drop;
        }
        if is_key {
            let force = gstreamer_video::DownstreamForceKeyUnitEvent::builder()
                .timestamp(pts)
                .stream_time(pts)
                .running_time(pts)
                .all_headers(true)
                .build();
            encoder_input.send_event(force);
        }
        gst::PadProbeReturn::Ok
    })?;
    Some(())
}

impl Drop for Transcoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{FrameRequest, Pixels, decode_frames};
    use crate::test_media::{encoded_bars, shows_colour_bars};

    /// Everything a transcode of `frames` makes, in order.
    fn transcode_all(config: &[u8], frames: Vec<EncodedFrame>) -> Vec<TranscodedFrame> {
        let base_ms = frames.iter().map(|f| f.pts_ms).min().expect("frames");
        let start = TranscodeStart {
            codec: Codec::Hevc,
            config: config.to_vec(),
            base_ms,
            keep_ms: None,
            key_frames_as_input: true,
        };
        let transcoder = Transcoder::start(&start).expect("starts");
        for frame in frames {
            transcoder.push(frame).expect("pushed");
        }
        transcoder.finish().expect("finished");
        let mut out = Vec::new();
        loop {
            match transcoder.pull(Duration::from_secs(10)).expect("pulls") {
                Pulled::Frame(frame) => out.push(frame),
                Pulled::Waiting => panic!("the transcoder stalled"),
                Pulled::Finished => return out,
            }
        }
    }

    #[test]
    fn every_frame_comes_out_as_h264_at_its_time_with_its_key_frames() {
        let (config, frames) = encoded_bars(Codec::Hevc, 20, 10);
        let keys_in: Vec<i64> = frames.iter().filter(|f| f.keyframe).map(|f| f.pts_ms).collect();
        assert_eq!(keys_in, [5_000, 6_000], "the source has two key frames");
        let mut times_in: Vec<i64> = frames.iter().map(|f| f.pts_ms).collect();
        assert!(times_in.windows(2).any(|w| w[1] < w[0]), "the source has B-frames");
        let out = transcode_all(&config, frames);
        // Every frame, in presentation order: with no B-frames that is the H.264 decode order.
        times_in.sort_unstable();
        assert_eq!(out.iter().map(|f| f.pts_ms).collect::<Vec<_>>(), times_in);
        assert_eq!(out.iter().filter(|f| f.keyframe).map(|f| f.pts_ms).collect::<Vec<_>>(), keys_in);
        let avc_config = out[0].avc_config.clone().expect("the first frame carries the avcC record");
        assert_eq!(avc_config[0], 1, "an avcC record");
        assert!(out[1..].iter().all(|f| f.avc_config.is_none()), "the record does not change");
        // An H.264 decoder shows the same picture, from the second key frame on too.
        let second_gop: Vec<EncodedFrame> = out[10..]
            .iter()
            .map(|f| EncodedFrame { pts_ms: f.pts_ms, keyframe: f.keyframe, data: f.data.clone() })
            .collect();
        let request = FrameRequest {
            codec: Codec::Avc,
            config: avc_config,
            frames: second_gop,
            wanted_pts_ms: vec![6_000, 6_500],
            scale_to: None,
            jpeg_quality: None,
        };
        let mut pictures = Vec::new();
        decode_frames(request, |frame| pictures.push(frame)).expect("decodes");
        assert_eq!(pictures.len(), 2);
        for picture in pictures {
            let Pixels::Rgb(rgb) = &picture.pixels else { panic!("RGB was asked for") };
            assert!(shows_colour_bars(rgb), "the colour bars at {}", picture.pts_ms);
        }
    }

    #[test]
    fn garbage_input_is_an_error_not_a_crash() {
        let (config, mut frames) = encoded_bars(Codec::Hevc, 3, 10);
        for frame in &mut frames {
            frame.data = vec![0, 0, 0, 4, 0xFF, 0xFF, 0xFF, 0xFF];
        }
        let start =
            TranscodeStart { codec: Codec::Hevc, config, base_ms: 5_000, keep_ms: None, key_frames_as_input: true };
        let transcoder = Transcoder::start(&start).expect("starts");
        // Whichever side meets the decoder's error first, both report it.
        let pushed: Result<(), ImagingError> = frames.into_iter().try_for_each(|f| transcoder.push(f));
        let _ = transcoder.finish();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut outcome = transcoder.pull(Duration::from_millis(100));
        while matches!(outcome, Ok(Pulled::Waiting | Pulled::Frame(_))) && std::time::Instant::now() < deadline {
            outcome = transcoder.pull(Duration::from_millis(100));
        }
        // The decoder reports the damage or makes nothing of it and ends; it never panics or hangs.
        assert!(matches!(outcome, Err(ImagingError::Decode(_)) | Ok(Pulled::Finished)), "{outcome:?} after {pushed:?}");
    }

    #[test]
    fn only_h265_is_transcoded() {
        let start = TranscodeStart {
            codec: Codec::Avc,
            config: vec![1, 2, 3],
            base_ms: 0,
            keep_ms: None,
            key_frames_as_input: true,
        };
        assert!(matches!(Transcoder::start(&start), Err(ImagingError::Decode(_))));
    }
}
