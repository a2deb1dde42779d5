//! The stored form of a video fragment's index: timestamps, the Tracks it was recorded with, its
//! tags, and a sample table pointing into the Cluster body (which is stored as the payload). Every
//! output container is then a remux of payload slices, with no parsing of the payload on read.
//!
//! Layout (big-endian): `version u8 (1) | timecode u64 | timecode_scale_ns u64 | producer_ts_ms u64 |
//! server_ts_ms u64 | duration_ms u64 | tracks_len u32 | tracks body | tag_count u16 |
//! (name_len u16 | name | value_len u16 | value)* | frame_count u32 |
//! (track u32 | relative_timecode i16 | flags u8 | start u32 | end u32)*`
//! with flags bit 0 = key frame and bits 1-2 = lacing.

use crate::error::MediaError;
use crate::mkv::{Frame, SimpleTag};

const VERSION: u8 = 1;

/// Everything about a stored fragment except its Cluster body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentRecord {
    /// The Cluster Timecode as the producer sent it (KVS echoes it in acks).
    pub timecode: u64,
    pub timecode_scale_ns: u64,
    pub producer_ts_ms: u64,
    /// When the fragment's first byte arrived.
    pub server_ts_ms: u64,
    pub duration_ms: u64,
    /// The Tracks element payload in force for this fragment.
    pub tracks_body: Vec<u8>,
    pub tags: Vec<SimpleTag>,
    pub frames: Vec<Frame>,
}

impl FragmentRecord {
    /// The tags that describe the fragment: all but the producer's identity tag
    /// (`FRAGMENT_ID_TAG`), which is bookkeeping for idempotent uploads.
    pub fn event_tags(&self) -> impl Iterator<Item = &SimpleTag> {
        self.tags.iter().filter(|t| t.name != crate::FRAGMENT_ID_TAG)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.tracks_body.len() + self.frames.len() * 15);
        out.push(VERSION);
        for v in [self.timecode, self.timecode_scale_ns, self.producer_ts_ms, self.server_ts_ms, self.duration_ms] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&(self.tracks_body.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.tracks_body);
        out.extend_from_slice(&(self.tags.len() as u16).to_be_bytes());
        for tag in &self.tags {
            for text in [&tag.name, &tag.value] {
                let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
                out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
        out.extend_from_slice(&(self.frames.len() as u32).to_be_bytes());
        for frame in &self.frames {
            out.extend_from_slice(&(frame.track as u32).to_be_bytes());
            out.extend_from_slice(&frame.relative_timecode.to_be_bytes());
            out.push(u8::from(frame.keyframe) | (frame.lacing << 1));
            out.extend_from_slice(&(frame.data.start as u32).to_be_bytes());
            out.extend_from_slice(&(frame.data.end as u32).to_be_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<FragmentRecord, MediaError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(1)?[0] != VERSION {
            return Err(reader.error("unknown record version"));
        }
        let timecode = reader.u64()?;
        let timecode_scale_ns = reader.u64()?;
        let producer_ts_ms = reader.u64()?;
        let server_ts_ms = reader.u64()?;
        let duration_ms = reader.u64()?;
        let tracks_len = reader.u32()? as usize;
        let tracks_body = reader.take(tracks_len)?.to_vec();
        let tag_count = reader.u16()?;
        let mut tags = Vec::with_capacity(usize::from(tag_count));
        for _ in 0..tag_count {
            let name_len = usize::from(reader.u16()?);
            let name = String::from_utf8_lossy(reader.take(name_len)?).into_owned();
            let value_len = usize::from(reader.u16()?);
            let value = String::from_utf8_lossy(reader.take(value_len)?).into_owned();
            tags.push(SimpleTag { name, value });
        }
        let frame_count = reader.u32()? as usize;
        let mut frames = Vec::with_capacity(frame_count.min(bytes.len() / 15));
        for _ in 0..frame_count {
            let track = u64::from(reader.u32()?);
            let relative_timecode = reader.u16()? as i16;
            let flags = reader.take(1)?[0];
            let start = reader.u32()? as usize;
            let end = reader.u32()? as usize;
            if end < start {
                return Err(reader.error("frame ends before it starts"));
            }
            frames.push(Frame {
                track,
                relative_timecode,
                keyframe: flags & 1 != 0,
                lacing: (flags >> 1) & 3,
                data: start..end,
            });
        }
        Ok(FragmentRecord {
            timecode,
            timecode_scale_ns,
            producer_ts_ms,
            server_ts_ms,
            duration_ms,
            tracks_body,
            tags,
            frames,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, reason: &'static str) -> MediaError {
        MediaError::Malformed { offset: self.at as u64, path: "FragmentRecord".into(), reason }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MediaError> {
        let end =
            self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or_else(|| self.error("truncated"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, MediaError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().map_err(|_| self.error("truncated"))?))
    }

    fn u32(&mut self) -> Result<u32, MediaError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| self.error("truncated"))?))
    }

    fn u64(&mut self) -> Result<u64, MediaError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| self.error("truncated"))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame() -> impl Strategy<Value = Frame> {
        (1u64..4, any::<i16>(), any::<bool>(), 0u8..4, 0usize..1_000_000, 0usize..10_000).prop_map(
            |(track, relative_timecode, keyframe, lacing, start, len)| Frame {
                track,
                relative_timecode,
                keyframe,
                lacing,
                data: start..start + len,
            },
        )
    }

    proptest! {
        #[test]
        fn records_round_trip(timecode in any::<u64>(), producer in any::<u64>(), server in any::<u64>(),
                              tracks_body in proptest::collection::vec(any::<u8>(), 0..200),
                              tags in proptest::collection::vec(("[A-Z_]{1,20}", "[a-z0-9 ]{0,40}"), 0..10),
                              frames in proptest::collection::vec(frame(), 0..100)) {
            let record = FragmentRecord {
                timecode,
                timecode_scale_ns: 1_000_000,
                producer_ts_ms: producer,
                server_ts_ms: server,
                duration_ms: 2_000,
                tracks_body,
                tags: tags.into_iter().map(|(name, value)| SimpleTag { name, value }).collect(),
                frames,
            };
            let bytes = record.encode();
            prop_assert_eq!(FragmentRecord::decode(&bytes).expect("decodes"), record);
            for cut in [0, bytes.len() / 2, bytes.len().saturating_sub(1)] {
                if cut < bytes.len() {
                    prop_assert!(FragmentRecord::decode(&bytes[..cut]).is_err());
                }
            }
        }
    }
}
