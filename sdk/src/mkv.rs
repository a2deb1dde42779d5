//! Matroska writing for the producer: the stream header (EBML header, unknown-size Segment, Info,
//! Tracks), one known-size Cluster per fragment, and Tags, in the layout PutMedia reads
//! (docs/spec/kvs.md#producer-matroska). Timecodes are milliseconds (TimecodeScale 1 ms), the
//! producer SDK's default.

use framelog_media::{ebml, ids};

use crate::error::{Error, Result};

/// Nanoseconds per Matroska timecode unit: 1 ms.
pub const TIMECODE_SCALE_NS: u64 = 1_000_000;

/// What kind of media a track carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrackKind {
    Video { width: u32, height: u32 },
    Audio { sample_rate_hz: f64, channels: u32 },
}

/// One track of an upload.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackSpec {
    /// 1 to 126.
    pub number: u64,
    pub kind: TrackKind,
    /// Matroska codec id, e.g. `V_MPEG4/ISO/AVC`.
    pub codec_id: String,
    /// avcC / hvcC / AudioSpecificConfig bytes.
    pub codec_private: Vec<u8>,
    pub name: String,
}

impl TrackSpec {
    /// H.264 with its avcC record; frames are length-prefixed NAL units.
    pub fn h264(number: u64, avcc: Vec<u8>, width: u32, height: u32) -> Self {
        Self::video(number, "V_MPEG4/ISO/AVC", avcc, width, height)
    }

    /// H.265 with its hvcC record; frames are length-prefixed NAL units.
    pub fn h265(number: u64, hvcc: Vec<u8>, width: u32, height: u32) -> Self {
        Self::video(number, "V_MPEGH/ISO/HEVC", hvcc, width, height)
    }

    /// AAC with its AudioSpecificConfig; frames are raw AAC access units.
    pub fn aac(number: u64, audio_specific_config: Vec<u8>, sample_rate_hz: f64, channels: u32) -> Self {
        Self {
            number,
            kind: TrackKind::Audio { sample_rate_hz, channels },
            codec_id: "A_AAC".into(),
            codec_private: audio_specific_config,
            name: "audio".into(),
        }
    }

    fn video(number: u64, codec_id: &str, codec_private: Vec<u8>, width: u32, height: u32) -> Self {
        Self {
            number,
            kind: TrackKind::Video { width, height },
            codec_id: codec_id.into(),
            codec_private,
            name: "video".into(),
        }
    }

    pub fn is_video(&self) -> bool {
        matches!(self.kind, TrackKind::Video { .. })
    }
}

/// One encoded frame handed to the producer.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedFrame {
    pub track: u64,
    /// Presentation time in ms since the epoch.
    pub pts_ms: u64,
    pub keyframe: bool,
    pub data: bytes::Bytes,
}

/// The bytes that open an upload: EBML header, unknown-size Segment, Info and Tracks.
pub fn stream_header(tracks: &[TrackSpec]) -> Vec<u8> {
    let tracks: Vec<framelog_media::Track> = tracks
        .iter()
        .map(|track| {
            let (video, audio) = match track.kind {
                TrackKind::Video { width, height } => (Some((u64::from(width), u64::from(height))), None),
                TrackKind::Audio { sample_rate_hz, channels } => (None, Some((sample_rate_hz, u64::from(channels)))),
            };
            framelog_media::Track {
                number: track.number,
                uid: track.number,
                track_type: if video.is_some() { 1 } else { 2 },
                codec_id: track.codec_id.clone(),
                codec_private: track.codec_private.clone(),
                name: track.name.clone(),
                pixel_width: video.map(|v| v.0),
                pixel_height: video.map(|v| v.1),
                sampling_frequency_hz: audio.map(|a| a.0),
                channels: audio.map(|a| a.1),
                default_duration_ns: None,
            }
        })
        .collect();
    let mut out = Vec::with_capacity(256 + tracks.iter().map(|t| t.codec_private.len()).sum::<usize>());
    framelog_media::write_stream_header(&mut out, TIMECODE_SCALE_NS, "framelog-sdk", &tracks);
    out
}

/// One known-size Cluster holding `frames` (in the order given), timed from `timecode_ms`.
pub fn cluster(timecode_ms: u64, frames: &[EncodedFrame]) -> Result<Vec<u8>> {
    let mut body = Vec::with_capacity(frames.iter().map(|f| f.data.len() + 8).sum::<usize>() + 16);
    ebml::write_uint(&mut body, ids::TIMECODE, timecode_ms);
    for frame in frames {
        let relative = i64::try_from(frame.pts_ms).ok().and_then(|pts| pts.checked_sub(timecode_ms as i64));
        let relative = relative.and_then(|r| i16::try_from(r).ok()).ok_or_else(|| {
            Error::InvalidInput(format!(
                "frame at {} ms is too far from its fragment at {timecode_ms} ms",
                frame.pts_ms
            ))
        })?;
        if frame.track == 0 || frame.track > 126 {
            return Err(Error::InvalidInput(format!("track number {} is not 1 to 126", frame.track)));
        }
        framelog_media::write_simple_block(&mut body, frame.track as u8, relative, frame.keyframe, &frame.data);
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    ebml::write_bytes(&mut out, ids::CLUSTER, &body);
    Ok(out)
}

/// A Tags element of name/value pairs (fragment metadata, docs/spec/kvs.md#fragment-metadata).
pub fn tags(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    ebml::write_element(&mut out, ids::TAGS, |t| {
        ebml::write_element(t, ids::TAG, |tag| {
            for (name, value) in pairs {
                ebml::write_element(tag, ids::SIMPLE_TAG, |s| {
                    ebml::write_bytes(s, ids::TAG_NAME, name.as_bytes());
                    ebml::write_bytes(s, ids::TAG_STRING, value.as_bytes());
                });
            }
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use framelog_media::{Event, Fragmenter, Limits};

    #[test]
    fn what_the_producer_writes_parses_back_frame_for_frame() {
        let tracks = [TrackSpec::h264(1, vec![1, 2, 3], 640, 480), TrackSpec::aac(2, vec![0x12, 0x10], 48_000.0, 2)];
        let frames = [
            EncodedFrame { track: 1, pts_ms: 1_000, keyframe: true, data: bytes::Bytes::from_static(b"key") },
            EncodedFrame { track: 2, pts_ms: 1_010, keyframe: true, data: bytes::Bytes::from_static(b"aac") },
            EncodedFrame { track: 1, pts_ms: 1_033, keyframe: false, data: bytes::Bytes::from_static(b"delta") },
        ];
        let mut mkv = stream_header(&tracks);
        mkv.extend(tags(&[("label".into(), "cat".into())]));
        mkv.extend(cluster(1_000, &frames).expect("cluster"));
        let mut fragmenter = Fragmenter::new(Limits::default());
        fragmenter.push(&mkv);
        let mut events = Vec::new();
        while let Some(event) = fragmenter.finish().expect("valid") {
            events.push(event);
        }
        let Event::Tracks { tracks: parsed, .. } = &events[0] else { panic!("tracks first") };
        assert_eq!(parsed[1].codec_private, vec![0x12, 0x10]);
        assert!(matches!(&events[1], Event::Tags(t) if t[0].value == "cat"));
        let Event::Cluster(c) = &events[3] else { panic!("cluster") };
        assert_eq!(c.timecode, 1_000);
        let times: Vec<i16> = c.frames.iter().map(|f| f.relative_timecode).collect();
        assert_eq!(times, [0, 10, 33]);
        assert_eq!(&c.body[c.frames[2].data.clone()], b"delta");
    }

    #[test]
    fn frames_too_far_from_their_fragment_are_refused() {
        let frame = EncodedFrame { track: 1, pts_ms: 40_000, keyframe: true, data: bytes::Bytes::new() };
        assert!(matches!(cluster(0, &[frame]), Err(Error::InvalidInput(_))));
    }
}
