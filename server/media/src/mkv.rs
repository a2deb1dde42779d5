//! Parsed Matroska structures (segment info, tracks, tags, cluster frames) and the parsers that
//! read them from a fully buffered element body.

use crate::ebml::{self, Read};
use crate::error::MediaError;
use crate::ids;

/// Segment Info: only what timestamps need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Nanoseconds per timecode unit (Matroska's default is 1 ms).
    pub timecode_scale_ns: u64,
}

impl Default for SegmentInfo {
    fn default() -> Self {
        Self { timecode_scale_ns: 1_000_000 }
    }
}

/// One TrackEntry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Track {
    pub number: u64,
    pub uid: u64,
    pub track_type: u64,
    pub codec_id: String,
    pub codec_private: Vec<u8>,
    pub name: String,
    pub pixel_width: Option<u64>,
    pub pixel_height: Option<u64>,
    pub sampling_frequency_hz: Option<f64>,
    pub channels: Option<u64>,
    pub default_duration_ns: Option<u64>,
}

/// A SimpleTag: name and string value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleTag {
    pub name: String,
    pub value: String,
}

/// One frame (a SimpleBlock or Block) of a cluster; its bytes are `data` within the cluster body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub track: u64,
    /// Timecode relative to the cluster, in timecode units.
    pub relative_timecode: i16,
    pub keyframe: bool,
    /// Lacing bits of the block flags (0 = none); laced payloads are kept as one unit.
    pub lacing: u8,
    pub data: std::ops::Range<usize>,
}

/// A complete cluster: its absolute timecode, its frames, and its body bytes as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Byte offset of the Cluster element in the input.
    pub offset: u64,
    pub timecode: u64,
    pub frames: Vec<Frame>,
    /// The Cluster's children, exactly as they arrived.
    pub body: Vec<u8>,
}

/// Iterates the children of a buffered element body; each child must have a known size that fits.
pub struct Children<'a> {
    data: &'a [u8],
    at: usize,
    base_offset: u64,
    path: &'static str,
}

impl<'a> Children<'a> {
    pub fn new(data: &'a [u8], base_offset: u64, path: &'static str) -> Self {
        Self { data, at: 0, base_offset, path }
    }
}

impl<'a> Iterator for Children<'a> {
    /// (id, payload, absolute offset of the payload)
    type Item = Result<(u32, &'a [u8], u64), MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.data.len() {
            return None;
        }
        let offset = self.base_offset + self.at as u64;
        let malformed = |reason| MediaError::Malformed { offset, path: self.path.to_string(), reason };
        let header = match ebml::read_header(&self.data[self.at..]) {
            Read::Done(h) => h,
            Read::NeedMore => {
                self.at = self.data.len();
                return Some(Err(malformed("truncated child header")));
            }
            Read::Invalid => {
                self.at = self.data.len();
                return Some(Err(MediaError::BadVint { offset }));
            }
        };
        let start = self.at + header.header_len;
        let remaining = (self.data.len() - start) as u64;
        if header.size == ebml::UNKNOWN_SIZE || header.size > remaining {
            self.at = self.data.len();
            return Some(Err(malformed("child does not fit in its parent")));
        }
        let end = start + header.size as usize;
        self.at = end;
        Some(Ok((header.id, &self.data[start..end], self.base_offset + start as u64)))
    }
}

fn uint(data: &[u8], offset: u64, path: &'static str) -> Result<u64, MediaError> {
    ebml::read_uint(data).ok_or(MediaError::Malformed {
        offset,
        path: path.to_string(),
        reason: "integer wider than 8 bytes",
    })
}

fn text(data: &[u8]) -> String {
    // Matroska strings may be NUL-padded.
    String::from_utf8_lossy(data).trim_end_matches('\0').to_string()
}

pub fn parse_doc_type(body: &[u8], offset: u64) -> Result<String, MediaError> {
    for child in Children::new(body, offset, "EBML") {
        let (id, data, _) = child?;
        if id == ids::DOC_TYPE {
            return Ok(text(data));
        }
    }
    Ok("matroska".to_string())
}

pub fn parse_info(body: &[u8], offset: u64) -> Result<SegmentInfo, MediaError> {
    let mut info = SegmentInfo::default();
    for child in Children::new(body, offset, "Segment/Info") {
        let (id, data, at) = child?;
        if id == ids::TIMECODE_SCALE {
            info.timecode_scale_ns = uint(data, at, "Segment/Info/TimecodeScale")?.max(1);
        }
    }
    Ok(info)
}

/// Parsing stops here: KVS takes at most 3 tracks, so a Tracks element of thousands of tiny
/// entries is refused before it costs memory (the element itself may be 16 MiB).
pub const MAX_TRACK_ENTRIES: usize = 16;
/// KVS takes at most 10 tags per fragment; parsing stops well past that, not at the element's end.
pub const MAX_SIMPLE_TAGS: usize = 64;

pub fn parse_tracks(body: &[u8], offset: u64) -> Result<Vec<Track>, MediaError> {
    let mut tracks = Vec::new();
    for child in Children::new(body, offset, "Segment/Tracks") {
        let (id, data, at) = child?;
        if id != ids::TRACK_ENTRY {
            continue;
        }
        if tracks.len() == MAX_TRACK_ENTRIES {
            return Err(MediaError::Malformed { offset: at, path: "Segment/Tracks".into(), reason: "too many tracks" });
        }
        let mut track = Track::default();
        for field in Children::new(data, at, "Segment/Tracks/TrackEntry") {
            let (id, data, at) = field?;
            let path = "Segment/Tracks/TrackEntry";
            match id {
                ids::TRACK_NUMBER => track.number = uint(data, at, path)?,
                ids::TRACK_UID => track.uid = uint(data, at, path)?,
                ids::TRACK_TYPE => track.track_type = uint(data, at, path)?,
                ids::CODEC_ID => track.codec_id = text(data),
                ids::CODEC_PRIVATE => track.codec_private = data.to_vec(),
                ids::TRACK_NAME => track.name = text(data),
                ids::DEFAULT_DURATION => track.default_duration_ns = Some(uint(data, at, path)?),
                ids::VIDEO => {
                    for video in Children::new(data, at, "Segment/Tracks/TrackEntry/Video") {
                        let (id, data, at) = video?;
                        match id {
                            ids::PIXEL_WIDTH => track.pixel_width = Some(uint(data, at, path)?),
                            ids::PIXEL_HEIGHT => track.pixel_height = Some(uint(data, at, path)?),
                            _ => {}
                        }
                    }
                }
                ids::AUDIO => {
                    for audio in Children::new(data, at, "Segment/Tracks/TrackEntry/Audio") {
                        let (id, data, at) = audio?;
                        match id {
                            ids::SAMPLING_FREQUENCY => track.sampling_frequency_hz = ebml::read_float(data),
                            ids::CHANNELS => track.channels = Some(uint(data, at, path)?),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if track.number == 0 {
            return Err(MediaError::Malformed {
                offset: at,
                path: "Segment/Tracks/TrackEntry".into(),
                reason: "TrackNumber missing or 0",
            });
        }
        tracks.push(track);
    }
    Ok(tracks)
}

pub fn parse_tags(body: &[u8], offset: u64) -> Result<Vec<SimpleTag>, MediaError> {
    let mut out = Vec::new();
    for tag in Children::new(body, offset, "Segment/Tags") {
        let (id, data, at) = tag?;
        if id == ids::TAG {
            collect_simple_tags(data, at, &mut out, 0)?;
        }
    }
    Ok(out)
}

fn collect_simple_tags(body: &[u8], offset: u64, out: &mut Vec<SimpleTag>, depth: u8) -> Result<(), MediaError> {
    for child in Children::new(body, offset, "Segment/Tags/Tag") {
        let (id, data, at) = child?;
        if id != ids::SIMPLE_TAG {
            continue;
        }
        let mut name = String::new();
        let mut value = String::new();
        for field in Children::new(data, at, "Segment/Tags/Tag/SimpleTag") {
            let (id, data, _) = field?;
            match id {
                ids::TAG_NAME => name = text(data),
                ids::TAG_STRING | ids::TAG_BINARY => value = text(data),
                _ => {}
            }
        }
        if out.len() == MAX_SIMPLE_TAGS {
            return Err(MediaError::Malformed { offset: at, path: "Segment/Tags".into(), reason: "too many tags" });
        }
        out.push(SimpleTag { name, value });
        // KVS event tags nest their name/value pairs inside one SimpleTag; depth is bounded so a
        // hostile stream cannot recurse without limit.
        if depth < 4 {
            collect_simple_tags(data, at, out, depth + 1)?;
        }
    }
    Ok(())
}

/// Reads a SimpleBlock or Block payload header: track vint, int16 timecode, flags.
pub fn parse_block(data: &[u8], offset: u64, simple: bool) -> Result<(u64, i16, bool, u8, usize), MediaError> {
    let malformed = |reason| MediaError::Malformed { offset, path: "Cluster/SimpleBlock".to_string(), reason };
    let (track, len) = match ebml::read_size(data) {
        Read::Done(v) => v,
        _ => return Err(malformed("bad track number")),
    };
    let rest = &data[len..];
    if rest.len() < 3 {
        return Err(malformed("block shorter than its header"));
    }
    let timecode = i16::from_be_bytes([rest[0], rest[1]]);
    let flags = rest[2];
    let keyframe = simple && flags & 0x80 != 0;
    Ok((track, timecode, keyframe, (flags >> 1) & 0x03, len + 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Tags body (the element's content) with `count` SimpleTags in one Tag.
    fn tags_body(count: usize) -> Vec<u8> {
        let mut body = Vec::new();
        ebml::write_element(&mut body, ids::TAG, |tag| {
            for i in 0..count {
                ebml::write_element(tag, ids::SIMPLE_TAG, |s| {
                    ebml::write_bytes(s, ids::TAG_NAME, format!("n{i}").as_bytes());
                    ebml::write_bytes(s, ids::TAG_STRING, b"v");
                });
            }
        });
        body
    }

    /// A Tracks body with `count` video entries.
    fn tracks_body(count: usize) -> Vec<u8> {
        let mut body = Vec::new();
        for number in 1..=count as u64 {
            ebml::write_element(&mut body, ids::TRACK_ENTRY, |entry| {
                ebml::write_uint(entry, ids::TRACK_NUMBER, number);
                ebml::write_bytes(entry, ids::CODEC_ID, b"V_MPEG4/ISO/AVC");
            });
        }
        body
    }

    #[test]
    fn tags_and_tracks_stop_parsing_at_their_limits() {
        assert_eq!(parse_tags(&tags_body(MAX_SIMPLE_TAGS), 0).expect("at the limit").len(), MAX_SIMPLE_TAGS);
        assert!(parse_tags(&tags_body(100_000), 0).is_err(), "a flood of tiny tags is refused");
        assert_eq!(parse_tracks(&tracks_body(MAX_TRACK_ENTRIES), 0).expect("at the limit").len(), MAX_TRACK_ENTRIES);
        assert!(parse_tracks(&tracks_body(10_000), 0).is_err(), "a flood of tiny tracks is refused");
    }
}
