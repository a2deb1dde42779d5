//! Decoding H.264/H.265 access units with GStreamer:
//! `appsrc (avc/hvc1 caps with the codec record) ! avdec_h26x ! videoconvert[scale] ! RGB !
//! appsink`, or `... ! RGB ! jpegenc ! appsink` when the caller wants JPEG at the decoded
//! size (libjpeg-turbo is several times faster than encoding in Rust). Frames nobody wants are
//! dropped as they leave the decoder, so only wanted pictures are scaled, converted and encoded.
//!
//! Frames go in decode order with their presentation times; pictures come out in presentation
//! order and only the wanted ones are kept, so memory stays at the decoder's reorder depth.
//! Callers pass a prefix of each fragment (from its key frame to the last frame they need),
//! which is always decodable.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use framelog_media::package::Codec;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::{AppSink, AppSrc};

use crate::error::ImagingError;

/// Longest a decode may take before it is abandoned (a stuck decoder must not hold a worker).
const DECODE_DEADLINE: Duration = Duration::from_secs(30);
const PULL_WAIT: Duration = Duration::from_millis(50);

/// One access unit in decode order, as stored (length-prefixed NAL units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    pub pts_ms: i64,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// Frames of one codec configuration and the presentation times to keep pictures of.
#[derive(Debug, Clone)]
pub struct FrameRequest {
    pub codec: Codec,
    /// The avcC or hvcC record.
    pub config: Vec<u8>,
    pub frames: Vec<EncodedFrame>,
    pub wanted_pts_ms: Vec<i64>,
    /// Scale pictures to this size inside the pipeline (in the same pass as the RGB conversion:
    /// a 1080p key frame to 640x360 costs a tenth of converting it whole and resizing the RGB).
    pub scale_to: Option<(u32, u32)>,
    /// Encode pictures to JPEG of this quality (1-100) inside the pipeline.
    pub jpeg_quality: Option<u8>,
}

/// What a decoded picture holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pixels {
    /// Tightly packed RGB (3 bytes per pixel, no row padding).
    Rgb(Vec<u8>),
    /// A JPEG made in the pipeline (`FrameRequest::jpeg_quality`).
    Jpeg(Vec<u8>),
}

/// A decoded picture.
#[derive(Debug, Clone)]
pub struct DecodedFrame {
    pub pts_ms: i64,
    pub width: u32,
    pub height: u32,
    pub pixels: Pixels,
}

/// Decodes `request` and calls `on_frame` for each wanted picture as it comes out. A wanted time
/// the decoder yields no picture for is simply not reported: the caller decides what a missing
/// picture means.
pub fn decode_frames(request: FrameRequest, mut on_frame: impl FnMut(DecodedFrame)) -> Result<(), ImagingError> {
    let wanted: BTreeSet<i64> = request.wanted_pts_ms.iter().copied().collect();
    let Some(base_ms) = request.frames.iter().map(|f| f.pts_ms).min() else { return Ok(()) };
    let (caps_name, decoder) = match request.codec {
        Codec::Avc => ("video/x-h264", "avdec_h264"),
        Codec::Hevc => ("video/x-h265", "avdec_h265"),
        Codec::Aac => return Err(ImagingError::Decode("an audio track has no pictures".into())),
    };
    let stream_format = if request.codec == Codec::Avc { "avc" } else { "hvc1" };
    let caps = gst::Caps::builder(caps_name)
        .field("stream-format", stream_format)
        .field("alignment", "au")
        .field("codec_data", gst::Buffer::from_slice(request.config.clone()))
        .build();
    let pipeline = Pipeline::build(decoder, &caps, &request, base_ms, &wanted)?;
    let result = pipeline.run(request.frames, base_ms, &wanted, &mut on_frame);
    pipeline.stop();
    result
}

/// The running pipeline and its two ends.
struct Pipeline {
    pipeline: gst::Pipeline,
    source: AppSrc,
    sink: AppSink,
}

impl Pipeline {
    fn build(
        decoder: &str,
        caps: &gst::Caps,
        request: &FrameRequest,
        base_ms: i64,
        wanted: &BTreeSet<i64>,
    ) -> Result<Pipeline, ImagingError> {
        let unavailable = |what: &str| ImagingError::Unavailable(what.to_string());
        // One element scales and converts to RGB in a single pass; add-borders=false stretches
        // to the requested size, as GetImages specifies.
        let to_rgb = match request.scale_to {
            Some((w, h)) => format!(
                "videoconvertscale add-borders=false ! video/x-raw,format=RGB,width={w},height={h},pixel-aspect-ratio=1/1"
            ),
            None => "videoconvert ! video/x-raw,format=RGB".to_string(),
        };
        // For JPEG, RGB still goes in so that libjpeg makes JFIF's full-range BT.601 YCbCr itself:
        // handing it the video's limited-range YUV washes pictures out (and this GStreamer's
        // videoconvert ignores a range-only change in the caps).
        let output = match request.jpeg_quality {
            Some(quality) => format!("{to_rgb} ! jpegenc quality={} idct-method=islow", quality.clamp(1, 100)),
            None => to_rgb,
        };
        let description = format!(
            "appsrc name=source format=time ! {decoder} name=decoder ! {output} ! appsink name=sink sync=false"
        );
        let pipeline = gst::parse::launch(&description)
            .map_err(|e| ImagingError::Unavailable(format!("{description}: {e}")))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| unavailable("not a pipeline"))?;
        let decoded = pipeline
            .by_name("decoder")
            .and_then(|e| e.static_pad("src"))
            .ok_or_else(|| unavailable("decoder pad missing"))?;
        let wanted = wanted.clone();
        decoded.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let unwanted = match &info.data {
                Some(gst::PadProbeData::Buffer(buffer)) => {
                    buffer.pts().is_some_and(|pts| !wanted.contains(&(base_ms + pts.mseconds() as i64)))
                }
                _ => false,
            };
            if unwanted { gst::PadProbeReturn::Drop } else { gst::PadProbeReturn::Ok }
        });
        let source = pipeline
            .by_name("source")
            .and_then(|e| e.downcast::<AppSrc>().ok())
            .ok_or_else(|| unavailable("appsrc missing"))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<AppSink>().ok())
            .ok_or_else(|| unavailable("appsink missing"))?;
        source.set_caps(Some(caps));
        pipeline.set_state(gst::State::Playing).map_err(|e| ImagingError::Unavailable(e.to_string()))?;
        Ok(Pipeline { pipeline, source, sink })
    }

    fn run(
        &self,
        frames: Vec<EncodedFrame>,
        base_ms: i64,
        wanted: &BTreeSet<i64>,
        on_frame: &mut impl FnMut(DecodedFrame),
    ) -> Result<(), ImagingError> {
        let deadline = Instant::now() + DECODE_DEADLINE;
        for frame in frames {
            let mut buffer = gst::Buffer::from_slice(frame.data);
            let buffer_ref = buffer.make_mut();
            buffer_ref.set_pts(gst::ClockTime::from_mseconds((frame.pts_ms - base_ms).max(0) as u64));
            if !frame.keyframe {
                buffer_ref.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
            self.source.push_buffer(buffer).map_err(|e| ImagingError::Decode(format!("decoder refused input: {e}")))?;
            // Take pictures as they come so that at most the reorder depth waits in the sink.
            while let Some(sample) = self.sink.try_pull_sample(gst::ClockTime::ZERO) {
                self.keep(&sample, base_ms, wanted, on_frame)?;
            }
            self.check_bus()?;
        }
        self.source.end_of_stream().map_err(|e| ImagingError::Decode(format!("end of stream refused: {e}")))?;
        loop {
            if let Some(sample) = self.sink.try_pull_sample(gst::ClockTime::from_nseconds(PULL_WAIT.as_nanos() as u64))
            {
                self.keep(&sample, base_ms, wanted, on_frame)?;
                continue;
            }
            self.check_bus()?;
            if self.sink.is_eos() {
                break;
            }
            if Instant::now() > deadline {
                return Err(ImagingError::Decode("the decoder did not finish in time".into()));
            }
        }
        Ok(())
    }

    /// Hands the sample's picture to `on_frame` if its time is wanted.
    fn keep(
        &self,
        sample: &gst::Sample,
        base_ms: i64,
        wanted: &BTreeSet<i64>,
        on_frame: &mut impl FnMut(DecodedFrame),
    ) -> Result<(), ImagingError> {
        let bad = |what: &str| ImagingError::Decode(what.to_string());
        let buffer = sample.buffer().ok_or_else(|| bad("a sample without a buffer"))?;
        let Some(pts) = buffer.pts() else { return Ok(()) };
        let pts_ms = base_ms + pts.mseconds() as i64;
        if !wanted.contains(&pts_ms) {
            return Ok(());
        }
        let caps = sample.caps().ok_or_else(|| bad("a sample without caps"))?;
        let map = buffer.map_readable().map_err(|_| bad("unreadable picture"))?;
        let structure = caps.structure(0).ok_or_else(|| bad("empty caps"))?;
        if structure.name() == "image/jpeg" {
            let dimension = |field: &str| structure.get::<i32>(field).ok().and_then(|v| u32::try_from(v).ok());
            let (Some(width), Some(height)) = (dimension("width"), dimension("height")) else {
                return Err(bad("a JPEG without its size"));
            };
            on_frame(DecodedFrame { pts_ms, width, height, pixels: Pixels::Jpeg(map.as_slice().to_vec()) });
            return Ok(());
        }
        let info = gstreamer_video::VideoInfo::from_caps(caps).map_err(|_| bad("unreadable video caps"))?;
        let (width, height) = (info.width(), info.height());
        let stride = usize::try_from(info.stride()[0]).map_err(|_| bad("negative stride"))?;
        let row_bytes = width as usize * 3;
        let mut rgb = Vec::with_capacity(row_bytes * height as usize);
        for row in 0..height as usize {
            let start = row * stride;
            let line = map.as_slice().get(start..start + row_bytes).ok_or_else(|| bad("a short picture"))?;
            rgb.extend_from_slice(line);
        }
        on_frame(DecodedFrame { pts_ms, width, height, pixels: Pixels::Rgb(rgb) });
        Ok(())
    }

    fn check_bus(&self) -> Result<(), ImagingError> {
        let Some(bus) = self.pipeline.bus() else { return Ok(()) };
        if let Some(message) = bus.pop_filtered(&[gst::MessageType::Error])
            && let gst::MessageView::Error(error) = message.view()
        {
            return Err(ImagingError::Decode(error.error().to_string()));
        }
        Ok(())
    }

    fn stop(&self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded_bars(frames: u32) -> (Vec<u8>, Vec<EncodedFrame>) {
        crate::test_media::encoded_bars(Codec::Avc, frames, 1000)
    }

    #[test]
    fn wanted_frames_come_out_as_the_colour_bars() {
        let (config, frames) = encoded_bars(10);
        assert_eq!(frames.len(), 10);
        assert!(frames[0].keyframe && !frames[5].keyframe);
        let wanted = vec![5_000, 5_700];
        let mut got = Vec::new();
        let request = FrameRequest {
            codec: Codec::Avc,
            config,
            frames,
            wanted_pts_ms: wanted.clone(),
            scale_to: None,
            jpeg_quality: None,
        };
        decode_frames(request, |frame| got.push(frame)).expect("decodes");
        assert_eq!(got.iter().map(|f| f.pts_ms).collect::<Vec<_>>(), wanted);
        for frame in &got {
            let Pixels::Rgb(rgb) = &frame.pixels else { panic!("RGB was asked for") };
            assert_eq!((frame.width, frame.height, rgb.len()), (320, 240, 320 * 240 * 3));
            // videotestsrc's SMPTE bars, top part: white at the left, then yellow, then cyan.
            let pixel = |x: usize, y: usize| -> [u8; 3] {
                let at = (y * 320 + x) * 3;
                [rgb[at], rgb[at + 1], rgb[at + 2]]
            };
            let near = |got: [u8; 3], want: [u8; 3]| got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) < 24);
            assert!(near(pixel(20, 60), [255, 255, 255]), "white bar: {:?}", pixel(20, 60));
            assert!(near(pixel(66, 60), [255, 255, 0]), "yellow bar: {:?}", pixel(66, 60));
            assert!(near(pixel(112, 60), [0, 255, 255]), "cyan bar: {:?}", pixel(112, 60));
        }
    }

    #[test]
    fn pictures_can_be_scaled_in_the_pipeline() {
        let (config, frames) = encoded_bars(2);
        let mut got = Vec::new();
        let request = FrameRequest {
            codec: Codec::Avc,
            config,
            frames,
            wanted_pts_ms: vec![5_000],
            scale_to: Some((160, 90)),
            jpeg_quality: None,
        };
        decode_frames(request, |frame| got.push(frame)).expect("decodes");
        assert_eq!(got.len(), 1);
        let Pixels::Rgb(rgb) = &got[0].pixels else { panic!("RGB was asked for") };
        assert_eq!((got[0].width, got[0].height, rgb.len()), (160, 90, 160 * 90 * 3));
        // Stretched, not letterboxed: the white bar still starts at the left edge.
        let first = &rgb[(45 * 160 + 2) * 3..(45 * 160 + 2) * 3 + 3];
        assert!(first.iter().all(|&c| c > 200), "white at the left edge: {first:?}");
    }

    #[test]
    fn jpegs_made_in_the_pipeline_are_the_wanted_frames_only() {
        let (config, frames) = encoded_bars(10);
        let mut got = Vec::new();
        let request = FrameRequest {
            codec: Codec::Avc,
            config,
            frames,
            wanted_pts_ms: vec![5_200, 5_600],
            scale_to: Some((160, 120)),
            jpeg_quality: Some(85),
        };
        decode_frames(request, |frame| got.push(frame)).expect("decodes");
        assert_eq!(
            got.iter().map(|f| (f.pts_ms, f.width, f.height)).collect::<Vec<_>>(),
            [(5_200, 160, 120), (5_600, 160, 120)]
        );
        for frame in &got {
            let Pixels::Jpeg(jpeg) = &frame.pixels else { panic!("JPEG was asked for") };
            // SOI and EOI markers around a real picture.
            assert_eq!((&jpeg[..2], &jpeg[jpeg.len() - 2..]), (&[0xFF, 0xD8][..], &[0xFF, 0xD9][..]));
            assert!(jpeg.len() > 500, "{} bytes", jpeg.len());
            // Full range: the white bar is white, not the video's limited-range 235 grey.
            let picture = image::load_from_memory(jpeg).expect("a readable JPEG").to_rgb8();
            let white = picture.get_pixel(5, 30).0;
            assert!(white.iter().all(|&c| c > 245), "white bar: {white:?}");
        }
    }

    #[test]
    fn garbage_is_a_decode_error_or_no_picture_never_a_panic() {
        let (config, _) = encoded_bars(1);
        let frames = vec![EncodedFrame { pts_ms: 0, keyframe: true, data: vec![0, 0, 0, 5, 0x65, 1, 2, 3, 4] }];
        let mut got = 0;
        let request = FrameRequest {
            codec: Codec::Avc,
            config,
            frames,
            wanted_pts_ms: vec![0],
            scale_to: None,
            jpeg_quality: None,
        };
        let _ = decode_frames(request, |_| got += 1);
        assert_eq!(got, 0);
    }
}
