//! Writes fragments the way GetMedia and GetMediaForFragmentList return them: each one a
//! self-contained MKV "chunk" (docs/spec/kvs.md#getmedia-chunks): EBML header, unknown-size
//! Segment, Info, Tracks, a Tags element with AWS_KINESISVIDEO_FRAGMENT_NUMBER / SERVER_TIMESTAMP /
//! PRODUCER_TIMESTAMP, one known-size Cluster, the producer's tags, and optionally a final Tags
//! element with AWS_KINESISVIDEO_MILLIS_BEHIND_NOW and AWS_KINESISVIDEO_CONTINUATION_TOKEN.

use crate::ebml;
use crate::ids;
use crate::mkv::SimpleTag;
use crate::record::FragmentRecord;

/// Trailing tags of a GetMedia chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTags {
    pub millis_behind_now: u64,
    pub continuation_token: String,
}

/// Decimal seconds with milliseconds, as KVS writes timestamps in tags: `1726677687.758`.
pub fn seconds_text(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn write_tags(out: &mut Vec<u8>, tags: &[SimpleTag]) {
    ebml::write_element(out, ids::TAGS, |t| {
        ebml::write_element(t, ids::TAG, |tag| {
            for simple in tags {
                ebml::write_element(tag, ids::SIMPLE_TAG, |s| {
                    ebml::write_bytes(s, ids::TAG_NAME, simple.name.as_bytes());
                    ebml::write_bytes(s, ids::TAG_STRING, simple.value.as_bytes());
                });
            }
        });
    });
}

/// Where the stored Cluster body goes in a chunk: the chunk is `prefix`, then the body from
/// `body_from` on, then `suffix`. Lets a caller stream a stored body from disk in pieces instead
/// of building the chunk in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLayout {
    pub prefix: Vec<u8>,
    pub body_from: usize,
    pub suffix: Vec<u8>,
}

/// How many leading bytes of a stored body `chunk_layout` needs: the Timecode element comes
/// before the first block, within the first few dozen bytes of any body a producer sends.
pub const BODY_HEAD_BYTES: usize = 4096;

/// Writes the Cluster header and the start of the stored body as a known-size Cluster whose
/// Timecode is the fragment's absolute producer time (in the stream's TimecodeScale), as KVS
/// does: producers that upload RELATIVE timecodes get absolute ones back. Block timecodes are
/// relative to the Cluster and stay as they are. `body_head` is the body's start (at least
/// `BODY_HEAD_BYTES` of it, or all); returns where the rest of the body continues.
fn write_cluster_start(out: &mut Vec<u8>, record: &FragmentRecord, body_head: &[u8], body_len: usize) -> usize {
    let scale_ns = u128::from(record.timecode_scale_ns.max(1));
    let absolute = u64::try_from(u128::from(record.producer_ts_ms) * 1_000_000 / scale_ns).unwrap_or(u64::MAX);
    let mut timecode = Vec::with_capacity(10);
    ebml::write_uint(&mut timecode, ids::TIMECODE, absolute);
    ebml::write_id(out, ids::CLUSTER);
    match timecode_element(body_head) {
        Some(range) => {
            let size = range.start + timecode.len() + (body_len - range.end);
            ebml::write_size(out, size as u64, false);
            out.extend_from_slice(&body_head[..range.start]);
            out.extend_from_slice(&timecode);
            range.end
        }
        // A body without its own Timecode gets one first, where Matroska wants it.
        None => {
            ebml::write_size(out, (body_len + timecode.len()) as u64, false);
            out.extend_from_slice(&timecode);
            0
        }
    }
}

/// The byte range of the Cluster's Timecode element (header included), if the stored body has one
/// before its first block.
fn timecode_element(body: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut at = 0;
    while at < body.len() {
        let ebml::Read::Done(header) = ebml::read_header(&body[at..]) else { return None };
        let end = at.checked_add(header.header_len)?.checked_add(usize::try_from(header.size).ok()?)?;
        if end > body.len() {
            return None;
        }
        match header.id {
            ids::TIMECODE => return Some(at..end),
            ids::SIMPLE_BLOCK | ids::BLOCK_GROUP => return None,
            _ => at = end,
        }
    }
    None
}

fn tag(name: &str, value: String) -> SimpleTag {
    SimpleTag { name: name.to_string(), value }
}

/// Appends one chunk for a stored fragment (`cluster_body` is the stored payload).
pub fn write_chunk(
    out: &mut Vec<u8>,
    fragment_number: &str,
    record: &FragmentRecord,
    cluster_body: &[u8],
    live: Option<&LiveTags>,
) {
    let layout = chunk_layout(fragment_number, record, cluster_body, cluster_body.len(), live);
    out.extend_from_slice(&layout.prefix);
    out.extend_from_slice(&cluster_body[layout.body_from..]);
    out.extend_from_slice(&layout.suffix);
}

/// The chunk of a stored fragment around its body, from the body's first bytes (`body_head`, at
/// least `BODY_HEAD_BYTES` or the whole body) and its length.
pub fn chunk_layout(
    fragment_number: &str,
    record: &FragmentRecord,
    body_head: &[u8],
    body_len: usize,
    live: Option<&LiveTags>,
) -> ChunkLayout {
    let mut prefix = Vec::with_capacity(512 + record.tracks_body.len());
    crate::writer::write_ebml_header(&mut prefix);
    ebml::write_id(&mut prefix, ids::SEGMENT);
    ebml::write_size(&mut prefix, ebml::UNKNOWN_SIZE, false);
    ebml::write_element(&mut prefix, ids::INFO, |i| {
        ebml::write_uint(i, ids::TIMECODE_SCALE, record.timecode_scale_ns);
        ebml::write_bytes(i, ids::MUXING_APP, b"framelog");
        ebml::write_bytes(i, ids::WRITING_APP, b"framelog");
    });
    ebml::write_bytes(&mut prefix, ids::TRACKS, &record.tracks_body);
    write_tags(
        &mut prefix,
        &[
            tag("AWS_KINESISVIDEO_FRAGMENT_NUMBER", fragment_number.to_string()),
            tag("AWS_KINESISVIDEO_SERVER_TIMESTAMP", seconds_text(record.server_ts_ms)),
            tag("AWS_KINESISVIDEO_PRODUCER_TIMESTAMP", seconds_text(record.producer_ts_ms)),
        ],
    );
    let body_from = write_cluster_start(&mut prefix, record, body_head, body_len);
    let mut suffix = Vec::new();
    if !record.tags.is_empty() {
        write_tags(&mut suffix, &record.tags);
    }
    if let Some(live) = live {
        write_tags(
            &mut suffix,
            &[
                tag("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", live.millis_behind_now.to_string()),
                tag("AWS_KINESISVIDEO_CONTINUATION_TOKEN", live.continuation_token.clone()),
            ],
        );
    }
    ChunkLayout { prefix, body_from, suffix }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Fragmenter, Limits};

    #[test]
    fn a_chunk_parses_back_into_its_tracks_tags_and_cluster() {
        let mut tracks = Vec::new();
        ebml::write_element(&mut tracks, ids::TRACK_ENTRY, |e| {
            ebml::write_uint(e, ids::TRACK_NUMBER, 1);
            ebml::write_bytes(e, ids::CODEC_ID, b"V_MPEG4/ISO/AVC");
        });
        let mut body = Vec::new();
        ebml::write_uint(&mut body, ids::TIMECODE, 1_700_000_000_000);
        crate::write_simple_block(&mut body, 1, 0, true, &[9, 9]);
        let record = FragmentRecord {
            timecode: 1_700_000_000_000,
            timecode_scale_ns: 1_000_000,
            producer_ts_ms: 1_700_000_000_000,
            server_ts_ms: 1_700_000_000_123,
            duration_ms: 0,
            tracks_body: tracks,
            tags: vec![SimpleTag { name: "labels".into(), value: "person".into() }],
            frames: Vec::new(),
        };
        let mut out = Vec::new();
        let live = LiveTags { millis_behind_now: 42, continuation_token: "7".into() };
        write_chunk(&mut out, "91", &record, &body, Some(&live));

        let mut fragmenter = Fragmenter::new(Limits::default());
        fragmenter.push(&out);
        let mut events = Vec::new();
        while let Some(event) = fragmenter.finish().expect("valid chunk") {
            events.push(event);
        }
        assert!(matches!(&events[0], Event::Tracks { tracks, .. } if tracks[0].codec_id == "V_MPEG4/ISO/AVC"));
        let Event::Tags(kvs) = &events[1] else { panic!("fragment tags first: {:?}", events[1]) };
        assert_eq!(kvs[0], tag("AWS_KINESISVIDEO_FRAGMENT_NUMBER", "91".into()));
        assert_eq!(kvs[1], tag("AWS_KINESISVIDEO_SERVER_TIMESTAMP", "1700000000.123".into()));
        let Event::Cluster(cluster) = &events[3] else { panic!("cluster: {:?}", events[3]) };
        assert_eq!(cluster.body, body);
        assert!(matches!(&events[4], Event::Tags(t) if t[0].name == "labels"));
        assert!(matches!(&events[5], Event::Tags(t) if t[0].value == "42" && t[1].value == "7"));
    }

    #[test]
    fn a_layout_from_the_body_head_streams_the_same_chunk_as_the_whole_body() {
        let mut body = Vec::new();
        ebml::write_uint(&mut body, ids::TIMECODE, 0);
        for index in 0..200u8 {
            crate::write_simple_block(&mut body, 1, i16::from(index), index == 0, &[index; 300]);
        }
        let record = FragmentRecord {
            timecode: 0,
            timecode_scale_ns: 1_000_000,
            producer_ts_ms: 1_700_000_000_000,
            server_ts_ms: 1_700_000_000_100,
            duration_ms: 6_600,
            tracks_body: Vec::new(),
            tags: Vec::new(),
            frames: Vec::new(),
        };
        let mut whole = Vec::new();
        write_chunk(&mut whole, "5", &record, &body, None);

        let layout = chunk_layout("5", &record, &body[..BODY_HEAD_BYTES], body.len(), None);
        let streamed = [&layout.prefix[..], &body[layout.body_from..], &layout.suffix[..]].concat();

        assert!(body.len() > BODY_HEAD_BYTES, "the head is a part of the body");
        assert_eq!(streamed, whole);
    }

    #[test]
    fn relative_cluster_timecodes_come_back_absolute() {
        let mut body = Vec::new();
        ebml::write_uint(&mut body, ids::TIMECODE, 2_000);
        crate::write_simple_block(&mut body, 1, 40, true, &[7]);
        let record = FragmentRecord {
            timecode: 2_000,
            timecode_scale_ns: 1_000_000,
            producer_ts_ms: 1_700_000_002_000,
            server_ts_ms: 1_700_000_002_100,
            duration_ms: 0,
            tracks_body: Vec::new(),
            tags: Vec::new(),
            frames: Vec::new(),
        };
        let mut out = Vec::new();
        write_chunk(&mut out, "1", &record, &body, None);
        let mut fragmenter = Fragmenter::new(Limits::default());
        fragmenter.push(&out);
        let mut cluster = None;
        while let Some(event) = fragmenter.finish().expect("valid chunk") {
            if let Event::Cluster(c) = event {
                cluster = Some(c);
            }
        }
        let cluster = cluster.expect("a cluster");
        assert_eq!(cluster.timecode, 1_700_000_002_000);
        assert_eq!(cluster.frames[0].relative_timecode, 40);
        assert_eq!(&cluster.body[cluster.frames[0].data.clone()], &[7]);
    }
}
