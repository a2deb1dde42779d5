//! framelog-media: Matroska (EBML) parsing and writing, pure and synchronous, so every parser of
//! outside input can be fuzzed and property-tested without a runtime.
//!
//! The main type is [`Fragmenter`]: it splits a streamed upload into one [`Cluster`] per fragment,
//! with the Segment's tracks and the Tags found between clusters, buffering only the element in
//! flight.
//!
//! ```
//! use framelog_media::{Event, Fragmenter, Limits, ebml, ids};
//!
//! let mut mkv = Vec::new();
//! ebml::write_element(&mut mkv, ids::CLUSTER, |c| {
//!     ebml::write_uint(c, ids::TIMECODE, 1_000);
//!     framelog_media::write_simple_block(c, 1, 0, true, &[0xAA]);
//! });
//! let mut fragmenter = Fragmenter::new(Limits::default());
//! fragmenter.push(&mkv);
//! assert!(matches!(fragmenter.next_event()?, Some(Event::ClusterStarted { offset: 0, timecode: 1_000 })));
//! let Some(Event::Cluster(cluster)) = fragmenter.next_event()? else { panic!("a cluster") };
//! assert_eq!(cluster.timecode, 1_000);
//! assert!(cluster.frames[0].keyframe);
//! assert_eq!(&cluster.body[cluster.frames[0].data.clone()], &[0xAA]);
//! # Ok::<(), framelog_media::MediaError>(())
//! ```

mod chunk;
pub mod ebml;
mod error;
mod fragmenter;
pub mod ids;
mod mkv;
mod mp4;
pub mod package;
mod record;
mod splitter;
pub mod sps;
mod unread;
mod writer;

pub use chunk::{BODY_HEAD_BYTES, ChunkLayout, LiveTags, chunk_layout, seconds_text, write_chunk};

/// The MKV tag naming a fragment's identity for idempotent uploads: a producer that may send a
/// fragment twice (a replay after a lost PERSISTED ack) tags it with a value unique to that
/// fragment, and the server stores a fragment with the same producer timestamp and the same
/// value only once, answering the replay with the stored fragment's number.
pub const FRAGMENT_ID_TAG: &str = "FRAMELOG_FRAGMENT_ID";
pub use error::MediaError;
pub use fragmenter::{Event, Fragmenter, Limits, MAX_FRAMES_PER_FRAGMENT, OpenClusterView};
pub use mkv::{Cluster, Frame, SegmentInfo, SimpleTag, Track, parse_tracks};
pub use mp4::Mp4Fragmenter;
pub use record::FragmentRecord;
pub use splitter::Splitter;
pub use writer::{
    tracks_body, video_track, write_ebml_header, write_simple_block, write_stream_header, write_stream_header_raw,
    write_track_entry,
};
