//! Test video made by GStreamer: its colour-bar pattern, encoded.

use framelog_media::package::Codec;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;

use crate::decode::EncodedFrame;

/// `frames` of GStreamer's SMPTE colour bars at 320x240 and 10 fps, encoded by x264 (`Avc`, no
/// B-frames) or x265 (`Hevc`, with B-frames and open GOPs, as cameras' H.265 often has: with
/// `key_every` 10, the frame before each later key frame is decoded after it) with a key frame
/// every `key_every` frames: the codec configuration record and the access units in decode order,
/// the first key frame at 5,000 ms.
pub fn encoded_bars(codec: Codec, frames: u32, key_every: u32) -> (Vec<u8>, Vec<EncodedFrame>) {
    gst::init().expect("gstreamer");
    let encoder = match codec {
        Codec::Avc => format!(
            "x264enc key-int-max={key_every} bframes=0 tune=zerolatency ! h264parse ! video/x-h264,stream-format=avc,alignment=au"
        ),
        Codec::Hevc => format!(
            "x265enc key-int-max={key_every} option-string=bframes=3:b-adapt=0:scenecut=0 ! h265parse \
             ! video/x-h265,stream-format=hvc1,alignment=au"
        ),
        Codec::Aac => panic!("no pictures in audio"),
    };
    let description = format!(
        "videotestsrc num-buffers={frames} pattern=smpte ! video/x-raw,width=320,height=240,framerate=10/1,format=I420 \
         ! {encoder} ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&description).expect("pipeline").downcast::<gst::Pipeline>().expect("a pipeline");
    let sink = pipeline.by_name("sink").and_then(|e| e.downcast::<AppSink>().ok()).expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let mut config = Vec::new();
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        if config.is_empty() {
            let caps = sample.caps().expect("caps");
            let codec_data = caps.structure(0).and_then(|s| s.get::<gst::Buffer>("codec_data").ok()).expect("record");
            config = codec_data.map_readable().expect("readable").as_slice().to_vec();
        }
        let buffer = sample.buffer().expect("buffer");
        out.push(EncodedFrame {
            pts_ms: buffer.pts().expect("pts").mseconds() as i64,
            keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data: buffer.map_readable().expect("readable").as_slice().to_vec(),
        });
    }
    let _ = pipeline.set_state(gst::State::Null);
    // Encoders may start their timeline far in; re-base the first frame to 5,000 ms.
    let first_ms = out.iter().map(|f| f.pts_ms).min().unwrap_or(0);
    for frame in &mut out {
        frame.pts_ms += 5_000 - first_ms;
    }
    (config, out)
}

/// An upload of `encoded_bars(codec, frames, key_every)`: the stream header and a cluster per
/// key frame at `start_ms` plus the frame times (absolute timecodes, 1 ms scale), frames in
/// decode order (x265's open GOPs put a leading picture of each fragment after its key frame).
pub fn colour_bars_mkv(codec: Codec, frames: u32, key_every: u32, start_ms: u64) -> Vec<u8> {
    use framelog_media::{Track, ebml, ids};
    let (config, frames) = encoded_bars(codec, frames, key_every);
    let codec_id = if codec == Codec::Hevc { "V_MPEGH/ISO/HEVC" } else { "V_MPEG4/ISO/AVC" };
    let track = Track {
        number: 1,
        uid: 1,
        track_type: 1,
        codec_id: codec_id.into(),
        codec_private: config,
        pixel_width: Some(320),
        pixel_height: Some(240),
        ..Track::default()
    };
    let mut body = Vec::new();
    framelog_media::write_stream_header(&mut body, 1_000_000, "test", &[track]);
    let keys: Vec<usize> = frames.iter().enumerate().filter(|(_, f)| f.keyframe).map(|(at, _)| at).collect();
    let ends: Vec<usize> = keys.iter().skip(1).copied().chain([frames.len()]).collect();
    for (&from, &to) in keys.iter().zip(&ends) {
        let gop = &frames[from..to];
        let cluster_ms = gop[0].pts_ms;
        ebml::write_element(&mut body, ids::CLUSTER, |cluster| {
            ebml::write_uint(cluster, ids::TIMECODE, start_ms + cluster_ms as u64);
            for frame in gop {
                let relative = (frame.pts_ms - cluster_ms) as i16;
                framelog_media::write_simple_block(cluster, 1, relative, frame.keyframe, &frame.data);
            }
        });
    }
    body
}

/// Whether `rgb` (320x240, packed) shows the colour bars' top: white, yellow, cyan from the left.
pub fn shows_colour_bars(rgb: &[u8]) -> bool {
    let pixel = |x: usize, y: usize| -> [u8; 3] {
        let at = (y * 320 + x) * 3;
        [rgb[at], rgb[at + 1], rgb[at + 2]]
    };
    let near = |got: [u8; 3], want: [u8; 3]| got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) < 24);
    near(pixel(20, 60), [255, 255, 255]) && near(pixel(66, 60), [255, 255, 0]) && near(pixel(112, 60), [0, 255, 255])
}
