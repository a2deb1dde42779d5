//! Writing the opening of a Matroska stream: the EBML header, an unknown-size Segment, Info and
//! Tracks, as producers send it to PutMedia and as every GetMedia chunk begins.

use crate::ebml;
use crate::ids;
use crate::mkv::Track;

/// The EBML header of a `matroska` document (DocTypeVersion 2, as the KVS producer SDK writes).
pub fn write_ebml_header(out: &mut Vec<u8>) {
    ebml::write_element(out, ids::EBML, |e| {
        ebml::write_uint(e, 0x4286, 1); // EBMLVersion
        ebml::write_uint(e, 0x42F7, 1); // EBMLReadVersion
        ebml::write_uint(e, 0x42F2, 4); // EBMLMaxIDLength
        ebml::write_uint(e, 0x42F3, 8); // EBMLMaxSizeLength
        ebml::write_bytes(e, ids::DOC_TYPE, b"matroska");
        ebml::write_uint(e, 0x4287, 2); // DocTypeVersion
        ebml::write_uint(e, 0x4285, 2); // DocTypeReadVersion
    });
}

/// One TrackEntry; optional fields are written only when set.
pub fn write_track_entry(out: &mut Vec<u8>, track: &Track) {
    ebml::write_element(out, ids::TRACK_ENTRY, |e| {
        ebml::write_uint(e, ids::TRACK_NUMBER, track.number);
        ebml::write_uint(e, ids::TRACK_UID, if track.uid == 0 { track.number } else { track.uid });
        ebml::write_uint(e, ids::TRACK_TYPE, track.track_type);
        if !track.name.is_empty() {
            ebml::write_bytes(e, ids::TRACK_NAME, track.name.as_bytes());
        }
        ebml::write_bytes(e, ids::CODEC_ID, track.codec_id.as_bytes());
        if !track.codec_private.is_empty() {
            ebml::write_bytes(e, ids::CODEC_PRIVATE, &track.codec_private);
        }
        if let Some(ns) = track.default_duration_ns {
            ebml::write_uint(e, ids::DEFAULT_DURATION, ns);
        }
        if let (Some(width), Some(height)) = (track.pixel_width, track.pixel_height) {
            ebml::write_element(e, ids::VIDEO, |v| {
                ebml::write_uint(v, ids::PIXEL_WIDTH, width);
                ebml::write_uint(v, ids::PIXEL_HEIGHT, height);
            });
        }
        if let Some(rate) = track.sampling_frequency_hz {
            ebml::write_element(e, ids::AUDIO, |a| {
                ebml::write_float(a, ids::SAMPLING_FREQUENCY, rate);
                ebml::write_uint(a, ids::CHANNELS, track.channels.unwrap_or(1));
            });
        }
    });
}

/// The Tracks element's payload for `tracks`.
pub fn tracks_body(tracks: &[Track]) -> Vec<u8> {
    let mut body = Vec::new();
    for track in tracks {
        write_track_entry(&mut body, track);
    }
    body
}

/// EBML header, unknown-size Segment, Info (TimecodeScale, muxing and writing app) and Tracks:
/// everything before the first Cluster of an upload.
pub fn write_stream_header(out: &mut Vec<u8>, timecode_scale_ns: u64, app: &str, tracks: &[Track]) {
    write_stream_header_raw(out, timecode_scale_ns, app, &tracks_body(tracks));
}

/// [`write_stream_header`] with a Tracks payload given as bytes (forwarding someone else's
/// Tracks verbatim).
pub fn write_stream_header_raw(out: &mut Vec<u8>, timecode_scale_ns: u64, app: &str, tracks_body: &[u8]) {
    write_ebml_header(out);
    ebml::write_id(out, ids::SEGMENT);
    ebml::write_size(out, ebml::UNKNOWN_SIZE, false);
    ebml::write_element(out, ids::INFO, |i| {
        ebml::write_uint(i, ids::TIMECODE_SCALE, timecode_scale_ns);
        ebml::write_bytes(i, ids::MUXING_APP, app.as_bytes());
        ebml::write_bytes(i, ids::WRITING_APP, app.as_bytes());
    });
    ebml::write_bytes(out, ids::TRACKS, tracks_body);
}

/// A video track with the given Matroska codec id, for tests and benchmarks.
pub fn video_track(number: u64, codec_id: &str) -> Track {
    Track { number, uid: number, track_type: 1, codec_id: codec_id.to_string(), ..Track::default() }
}

/// Appends one SimpleBlock element: track number (1 to 126, a one-byte vint), time relative to
/// the Cluster's Timecode, the key-frame flag, then the frame. Every MKV writer in the project
/// (the SDK, the fMP4-to-MKV remux, tests and benchmarks) goes through here.
pub fn write_simple_block(out: &mut Vec<u8>, track: u8, relative_ms: i16, keyframe: bool, frame: &[u8]) {
    debug_assert!((1..=126).contains(&track), "one-byte track numbers only");
    let mut block = Vec::with_capacity(4 + frame.len());
    block.push(0x80 | track);
    block.extend_from_slice(&relative_ms.to_be_bytes());
    block.push(if keyframe { 0x80 } else { 0 });
    block.extend_from_slice(frame);
    ebml::write_bytes(out, ids::SIMPLE_BLOCK, &block);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Fragmenter, Limits};

    #[test]
    fn a_written_header_parses_back_into_the_same_tracks() {
        let tracks = vec![
            Track {
                pixel_width: Some(1920),
                pixel_height: Some(1080),
                codec_private: vec![1, 2, 3],
                name: "video".into(),
                ..video_track(1, "V_MPEG4/ISO/AVC")
            },
            Track {
                number: 2,
                uid: 2,
                track_type: 2,
                codec_id: "A_AAC".into(),
                sampling_frequency_hz: Some(48_000.0),
                channels: Some(2),
                ..Track::default()
            },
        ];
        let mut out = Vec::new();
        write_stream_header(&mut out, 1_000_000, "test", &tracks);
        let mut fragmenter = Fragmenter::new(Limits::default());
        fragmenter.push(&out);
        let Some(Event::Tracks { info, tracks: parsed, .. }) = fragmenter.finish().expect("valid") else {
            panic!("tracks")
        };
        assert_eq!(info.timecode_scale_ns, 1_000_000);
        assert_eq!(parsed, tracks);
    }
}
