//! Camera sources through GStreamer: each ends in an appsink of H.264/H.265 access units in AVC
//! form (`stream-format=avc|hvc1, alignment=au`) with their codec record in the caps. RTSP and file
//! sources pass the camera's encoding through; raw sources (V4L2, the test pattern) are encoded
//! with x264 at the configured bitrate and key-frame interval.

use std::sync::mpsc::SyncSender;

use anyhow::{Context, bail};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;

use crate::config::StreamConfig;

/// One access unit from the camera.
#[derive(Debug, Clone)]
pub struct SourceFrame {
    /// Presentation time on the pipeline's running clock.
    pub pts_ms: i64,
    pub keyframe: bool,
    pub data: Vec<u8>,
    /// `h264`, `h265` (with the avcC/hvcC record and picture size from the caps) or `aac` (with
    /// the AudioSpecificConfig, sample rate in `width` and channels in `height`).
    pub codec: &'static str,
    pub config: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

impl SourceFrame {
    pub fn is_audio(&self) -> bool {
        self.codec == "aac"
    }
}

/// What the pipeline says.
#[derive(Debug)]
pub enum SourceEvent {
    Frame(SourceFrame),
    /// The source ended (end of file) or failed; the recorder restarts it.
    Ended(Option<String>),
}

/// The gst-launch description of a stream's source, ending in `appsink name=sink`.
pub fn describe(stream: &StreamConfig) -> anyhow::Result<String> {
    let (parse, caps) = match stream.codec.as_str() {
        "h265" => ("h265parse", "video/x-h265,stream-format=hvc1,alignment=au"),
        _ => ("h264parse", "video/x-h264,stream-format=avc,alignment=au"),
    };
    let encode = format!(
        "videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=veryfast bitrate={} key-int-max={} \
         ! h264parse ! video/x-h264,stream-format=avc,alignment=au",
        stream.bitrate_kbps, stream.key_frame_interval_frames
    );
    // The raw URL, password included: GStreamer needs it; only what we print is masked.
    let source: &str = &stream.source;
    // A file plays at its own pace (the sinks sync to the clock); live sources run free.
    let sync = source.starts_with("file://");
    // The audio branch links only when the source has AAC; async=false lets a source without
    // audio start anyway (that sink never prerolls).
    let audio_sink = format!(
        "aacparse ! audio/mpeg,mpegversion=4,stream-format=raw ! appsink name=audio sync={sync} async=false max-buffers=256 drop=false"
    );
    let head = if source.starts_with("rtsp://") || source.starts_with("rtsps://") {
        // rtspsrc reads user:pass from the URL.
        let audio = match stream.audio {
            true => format!(
                " src. ! application/x-rtp,media=audio,encoding-name=MPEG4-GENERIC ! rtpmp4gdepay ! {audio_sink}"
            ),
            false => String::new(),
        };
        format!(
            "rtspsrc name=src location={source} protocols={} latency=200 buffer-mode=none{audio} src. ! application/x-rtp,media=video ! {}depay ! {parse} ! {caps}",
            stream.rtsp_transport,
            depay(stream)
        )
    } else if let Some(path) = source.strip_prefix("file://") {
        if path.contains(char::is_whitespace) {
            bail!("file paths with spaces are not supported: {path}");
        }
        let elementary = if stream.codec == "h265" { "video/x-h265" } else { "video/x-h264" };
        let audio = match stream.audio {
            true => format!(" demux. ! audio/mpeg ! {audio_sink}"),
            false => String::new(),
        };
        format!("filesrc location={path} ! parsebin name=demux{audio} demux. ! {elementary} ! {parse} ! {caps}")
    } else if let Some(device) = source.strip_prefix("v4l2://") {
        format!(
            "v4l2src device={device} ! videoconvert ! videoscale ! video/x-raw,width={},height={},framerate={}/1 ! {encode}",
            stream.width, stream.height, stream.fps
        )
    } else if let Some(pattern) = source.strip_prefix("testsrc:") {
        // `testsrc:` is a moving ball; `testsrc:snow` (any videotestsrc pattern) is another.
        let pattern = if pattern.is_empty() { "ball" } else { pattern };
        if !pattern.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            bail!("bad test pattern {pattern:?}");
        }
        format!(
            "videotestsrc is-live=true pattern={pattern} ! video/x-raw,width={},height={},framerate={}/1 ! {encode}",
            stream.width, stream.height, stream.fps
        )
    } else {
        bail!("unknown source {source:?}: use rtsp://, file://, v4l2:// or testsrc:");
    };
    Ok(format!("{head} ! appsink name=sink sync={sync} max-buffers=64 drop=false"))
}

fn depay(stream: &StreamConfig) -> &'static str {
    if stream.codec == "h265" { "rtph265" } else { "rtph264" }
}

/// A running source pipeline; stopped when dropped.
#[derive(Debug)]
pub struct Source {
    pipeline: gst::Pipeline,
}

impl Source {
    /// Builds and starts the pipeline; frames and the end go to `events`.
    pub fn start(stream: &StreamConfig, events: SyncSender<SourceEvent>) -> anyhow::Result<Source> {
        gst::init().context("initialising GStreamer")?;
        let description = describe(stream)?;
        let pipeline = gst::parse::launch(&description)
            .with_context(|| format!("building {description}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow::anyhow!("not a pipeline: {description}"))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<AppSink>().ok())
            .context("the pipeline has no appsink named sink")?;
        sink.set_callbacks(callbacks(events.clone(), true));
        if let Some(audio) = pipeline.by_name("audio").and_then(|e| e.downcast::<AppSink>().ok()) {
            audio.set_callbacks(callbacks(events.clone(), false));
        }
        let bus = pipeline.bus().context("the pipeline has no bus")?;
        let ended = events;
        bus.set_sync_handler(move |_, message| {
            match message.view() {
                gst::MessageView::Eos(_) => drop(ended.try_send(SourceEvent::Ended(None))),
                gst::MessageView::Error(error) => {
                    drop(ended.try_send(SourceEvent::Ended(Some(format!("{} ({:?})", error.error(), error.debug())))))
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
        pipeline.set_state(gst::State::Playing).with_context(|| format!("starting {description}"))?;
        Ok(Source { pipeline })
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Forwards an appsink's samples as frames; a full queue waits here (back-pressure). The video
/// sink's end of stream ends the source: the pipeline itself posts EOS only once every sink has
/// it, and an audio branch that never linked (a camera without audio) never gets one.
fn callbacks(frames: SyncSender<SourceEvent>, ends_source: bool) -> gstreamer_app::AppSinkCallbacks {
    let ended = frames.clone();
    gstreamer_app::AppSinkCallbacks::builder()
        .eos(move |_| {
            if ends_source {
                let _ = ended.try_send(SourceEvent::Ended(None));
            }
        })
        .new_sample(move |sink| {
            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            match frame_of(&sample) {
                Some(frame) => frames.send(SourceEvent::Frame(frame)).map_err(|_| gst::FlowError::Flushing)?,
                None => tracing::debug!("a sample without data, time or codec record"),
            }
            Ok(gst::FlowSuccess::Ok)
        })
        .build()
}

fn frame_of(sample: &gst::Sample) -> Option<SourceFrame> {
    let buffer = sample.buffer()?;
    let caps = sample.caps()?;
    let structure = caps.structure(0)?;
    let codec = match structure.name().as_str() {
        "video/x-h264" => "h264",
        "video/x-h265" => "h265",
        "audio/mpeg" => "aac",
        _ => return None,
    };
    let config = structure.get::<gst::Buffer>("codec_data").ok()?.map_readable().ok()?.as_slice().to_vec();
    let field = |name: &str| structure.get::<i32>(name).ok().and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    let (width, height) =
        if codec == "aac" { (field("rate"), field("channels")) } else { (field("width"), field("height")) };
    Some(SourceFrame {
        pts_ms: buffer.pts().or(buffer.dts())?.mseconds() as i64,
        // Every AAC frame decodes on its own.
        keyframe: codec == "aac" || !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        data: buffer.map_readable().ok()?.as_slice().to_vec(),
        codec,
        config,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(source: &str) -> StreamConfig {
        toml::from_str(&format!("name = \"s\"\nsource = \"{source}\"\n")).expect("stream config")
    }

    #[test]
    fn each_source_kind_ends_in_avc_access_units() {
        for source in ["rtsp://u:p@10.0.0.5/main", "file:///tmp/clip.mkv", "v4l2:///dev/video0", "testsrc:"] {
            let description = describe(&stream(source)).expect("known source");
            assert!(description.contains("stream-format=avc,alignment=au ! appsink name=sink"), "{description}");
        }
        assert!(describe(&stream("rtsp://cam/main")).expect("rtsp").contains("protocols=tcp"));
        assert!(describe(&stream("file:///tmp/clip.mkv")).expect("file").contains("sync=true"));
        assert!(describe(&stream("http://cam")).is_err());
        assert!(describe(&stream("testsrc:snow")).expect("pattern").contains("pattern=snow"));
        assert!(describe(&stream("testsrc:snow ! fakesink")).is_err());
    }

    #[test]
    fn the_test_pattern_is_encoded_and_delivered() {
        let mut config = stream("testsrc:");
        (config.width, config.height, config.key_frame_interval_frames) = (160, 120, 10);
        let (events, frames) = std::sync::mpsc::sync_channel(64);
        let source = Source::start(&config, events).expect("pipeline");
        let mut got = Vec::new();
        while got.len() < 12 {
            match frames.recv_timeout(std::time::Duration::from_secs(10)).expect("a frame in time") {
                SourceEvent::Frame(frame) => got.push(frame),
                SourceEvent::Ended(why) => panic!("ended: {why:?}"),
            }
        }
        drop(source);
        assert!(got[0].keyframe, "the encoder starts with a key frame");
        assert_eq!(got.iter().filter(|f| f.keyframe).count(), 2, "a key frame every 10 frames");
        assert_eq!((got[0].width, got[0].height, got[0].codec), (160, 120, "h264"));
        assert_eq!(got[0].config[0], 1, "an avcC record");
        assert!(got.windows(2).all(|w| w[1].pts_ms > w[0].pts_ms));
    }
}
