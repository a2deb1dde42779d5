//! Splits a streamed Matroska upload (a PutMedia body) into fragments, one per Cluster, with
//! bounded memory: only the element in flight is buffered, never the whole stream.
//!
//! Known- and unknown-size Segments and Clusters are both accepted (the KVS producer SDK writes
//! unknown sizes; GStreamer's matroskamux may write either). An unknown-size Cluster ends where an
//! element that cannot be a Cluster child begins (RFC 9559 §6.2), or at the end of input.
//! Several EBML headers and Segments may follow each other in one upload, as producers start a
//! new Segment when codec data changes.

use crate::ebml::{self, Read, UNKNOWN_SIZE};
use crate::error::MediaError;
use crate::ids;
use crate::mkv::{self, Cluster, Frame, SegmentInfo, SimpleTag, Track};
use crate::unread::Unread;

/// Limits applied while parsing; exceeding one is an error, not unbounded buffering.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest cluster (fragment) accepted, header included.
    pub max_cluster_bytes: u64,
    /// Largest non-cluster element (EBML header, Info, Tracks, Tags, SeekHead, Cues...).
    pub max_element_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        // KVS: fragments up to 50 MB; CodecPrivate up to 1 MiB, so 16 MiB covers any sane header.
        Self { max_cluster_bytes: 50_000_000, max_element_bytes: 16 << 20 }
    }
}

/// Most frames one fragment may hold. 20 s of 60 fps video plus audio is a few thousand; the
/// bound keeps a hostile fragment of tiny blocks from costing gigabytes of frame index.
pub const MAX_FRAMES_PER_FRAGMENT: usize = 20_000;

/// What the fragmenter found.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A Segment's Info and Tracks have been read (again, for every new Segment). `tracks_body`
    /// is the Tracks element's payload as received, so it can be stored and written back verbatim.
    Tracks { info: SegmentInfo, tracks: Vec<Track>, tracks_body: Vec<u8> },
    /// A Cluster has begun and its Timecode is known (KVS sends BUFFERING here; the Timecode is
    /// the Cluster's first child, a few bytes in).
    ClusterStarted { offset: u64, timecode: u64 },
    /// A Tags element between clusters.
    Tags(Vec<SimpleTag>),
    /// A whole Cluster.
    Cluster(Cluster),
}

/// A read-only view of the Cluster in flight (see [`Fragmenter::open_cluster`]).
#[derive(Debug, Clone, Copy)]
pub struct OpenClusterView<'a> {
    pub timecode: u64,
    pub frames: &'a [Frame],
    pub body: &'a [u8],
}

#[derive(Debug)]
struct OpenCluster {
    offset: u64,
    /// Absolute end offset when the Cluster's size is known.
    end: Option<u64>,
    timecode: Option<u64>,
    frames: Vec<Frame>,
    body: Vec<u8>,
}

/// The streaming splitter. Feed bytes with [`push`](Self::push), drain with
/// [`next_event`](Self::next_event), and call [`finish`](Self::finish) at end of input.
#[derive(Debug)]
pub struct Fragmenter {
    buf: Unread,
    /// Absolute offset of `buf[0]` in the input.
    offset: u64,
    limits: Limits,
    info: SegmentInfo,
    cluster: Option<OpenCluster>,
}

impl Fragmenter {
    pub fn new(limits: Limits) -> Self {
        Self { buf: Unread::default(), offset: 0, limits, info: SegmentInfo::default(), cluster: None }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.push(data);
    }

    /// Bytes received but not yet consumed into an event or an open cluster.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len() + self.cluster.as_ref().map_or(0, |c| c.body.len())
    }

    /// Whether a Cluster has started and not yet completed.
    pub fn in_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// The Cluster being received, once its Timecode is known: the frames read so far and the
    /// body bytes they index. Frames and bytes only ever grow until the Cluster completes, when
    /// they are exactly the [`Cluster`] event's, so a reader may show them before the fragment
    /// is whole (a live edge).
    pub fn open_cluster(&self) -> Option<OpenClusterView<'_>> {
        let open = self.cluster.as_ref()?;
        Some(OpenClusterView { timecode: open.timecode?, frames: &open.frames, body: &open.body })
    }

    fn consume(&mut self, n: usize) {
        self.buf.consume(n);
        self.offset += n as u64;
    }

    /// The next event, or `None` when more input is needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, MediaError> {
        loop {
            if self.cluster.is_some() {
                match self.step_cluster()? {
                    Step::Event(event) => return Ok(Some(event)),
                    Step::NeedMore => return Ok(None),
                    Step::Continue => continue,
                }
            }
            let header = match ebml::read_header(&self.buf) {
                Read::Done(h) => h,
                Read::NeedMore => return Ok(None),
                Read::Invalid => return Err(MediaError::BadVint { offset: self.offset }),
            };
            match header.id {
                ids::SEGMENT => {
                    // Enter the Segment; its children follow. Its size only bounds them.
                    self.consume(header.header_len);
                    self.info = SegmentInfo::default();
                }
                ids::CLUSTER => {
                    if header.size != UNKNOWN_SIZE
                        && header.size + header.header_len as u64 > self.limits.max_cluster_bytes
                    {
                        return Err(self.too_large("Segment/Cluster", header.size));
                    }
                    let offset = self.offset;
                    let end = (header.size != UNKNOWN_SIZE).then(|| offset + header.header_len as u64 + header.size);
                    self.consume(header.header_len);
                    self.cluster =
                        Some(OpenCluster { offset, end, timecode: None, frames: Vec::new(), body: Vec::new() });
                }
                id => {
                    if header.size == UNKNOWN_SIZE {
                        return Err(MediaError::Malformed {
                            offset: self.offset,
                            path: format!("0x{id:X}"),
                            reason: "unknown size is only allowed for Segment and Cluster",
                        });
                    }
                    if header.size > self.limits.max_element_bytes {
                        return Err(self.too_large("Segment/element", header.size));
                    }
                    let total = header.header_len + header.size as usize;
                    if self.buf.len() < total {
                        return Ok(None);
                    }
                    let at = self.offset + header.header_len as u64;
                    let body = self.buf[header.header_len..total].to_vec();
                    self.consume(total);
                    match id {
                        ids::EBML => {
                            let doc_type = mkv::parse_doc_type(&body, at)?;
                            if doc_type != "matroska" && doc_type != "webm" {
                                return Err(MediaError::DocType { doc_type });
                            }
                        }
                        ids::INFO => self.info = mkv::parse_info(&body, at)?,
                        ids::TRACKS => {
                            let tracks = mkv::parse_tracks(&body, at)?;
                            return Ok(Some(Event::Tracks { info: self.info, tracks, tracks_body: body }));
                        }
                        ids::TAGS => return Ok(Some(Event::Tags(mkv::parse_tags(&body, at)?))),
                        // SeekHead, Cues, Chapters, Attachments, Void, CRC-32, unknown: skipped.
                        _ => {}
                    }
                }
            }
        }
    }

    /// Signals the end of input: completes an open unknown-size Cluster; leftovers are an error.
    pub fn finish(&mut self) -> Result<Option<Event>, MediaError> {
        if let Some(event) = self.next_event()? {
            return Ok(Some(event));
        }
        match &self.cluster {
            Some(cluster) if cluster.end.is_none() && self.buf.is_empty() => {
                Ok(Some(Event::Cluster(self.close_cluster()?)))
            }
            Some(cluster) => Err(MediaError::Malformed {
                offset: cluster.offset,
                path: "Segment/Cluster".into(),
                reason: "input ended inside a cluster",
            }),
            None if self.buf.is_empty() => Ok(None),
            None => Err(MediaError::Malformed {
                offset: self.offset,
                path: "Segment".into(),
                reason: "input ended inside an element",
            }),
        }
    }

    fn too_large(&self, path: &str, size_bytes: u64) -> MediaError {
        let limit_bytes =
            if path.ends_with("Cluster") { self.limits.max_cluster_bytes } else { self.limits.max_element_bytes };
        MediaError::TooLarge { offset: self.offset, path: path.to_string(), size_bytes, limit_bytes }
    }

    fn close_cluster(&mut self) -> Result<Cluster, MediaError> {
        let open = self.cluster.take().ok_or(MediaError::Malformed {
            offset: self.offset,
            path: "Segment/Cluster".into(),
            reason: "no cluster open",
        })?;
        let timecode = open.timecode.ok_or(MediaError::Malformed {
            offset: open.offset,
            path: "Segment/Cluster".into(),
            reason: "cluster has no Timecode",
        })?;
        Ok(Cluster { offset: open.offset, timecode, frames: open.frames, body: open.body })
    }

    /// Reads the next child of the open cluster, or closes it.
    fn step_cluster(&mut self) -> Result<Step, MediaError> {
        let Some(open) = &self.cluster else { return Ok(Step::Continue) };
        if open.end == Some(self.offset) {
            return Ok(Step::Event(Event::Cluster(self.close_cluster()?)));
        }
        let header = match ebml::read_header(&self.buf) {
            Read::Done(h) => h,
            Read::NeedMore => return Ok(Step::NeedMore),
            Read::Invalid => return Err(MediaError::BadVint { offset: self.offset }),
        };
        if !ids::is_cluster_child(header.id) {
            if open.end.is_some() {
                return Err(MediaError::Unexpected {
                    offset: self.offset,
                    path: "Segment/Cluster".into(),
                    id: header.id,
                });
            }
            return Ok(Step::Event(Event::Cluster(self.close_cluster()?)));
        }
        let total = self.check_child(open, &header)?;
        if (self.buf.len() as u64) < total {
            return Ok(Step::NeedMore);
        }
        self.take_child(&header, total as usize)
    }

    /// Checks a cluster child's header before any of its data is buffered, so a hostile size
    /// costs nothing: a known size, within the cluster size limit, and inside a known-size
    /// cluster. Returns the child's length, header included.
    fn check_child(&self, open: &OpenCluster, header: &ebml::Header) -> Result<u64, MediaError> {
        if header.size == UNKNOWN_SIZE {
            return Err(MediaError::Malformed {
                offset: self.offset,
                path: "Segment/Cluster/child".into(),
                reason: "unknown size",
            });
        }
        let total = header.header_len as u64 + header.size;
        let grown = open.body.len() as u64 + total;
        if grown > self.limits.max_cluster_bytes {
            return Err(MediaError::TooLarge {
                offset: open.offset,
                path: "Segment/Cluster".into(),
                size_bytes: grown,
                limit_bytes: self.limits.max_cluster_bytes,
            });
        }
        if open.end.is_some_and(|end| self.offset + total > end) {
            return Err(MediaError::Malformed {
                offset: self.offset,
                path: "Segment/Cluster".into(),
                reason: "child overruns cluster",
            });
        }
        Ok(total)
    }

    /// Moves a whole cluster child (`total` bytes, all buffered) into the open cluster's body and
    /// reads it: the Timecode starts the cluster; a SimpleBlock or BlockGroup adds a frame.
    fn take_child(&mut self, header: &ebml::Header, total: usize) -> Result<Step, MediaError> {
        let child_offset = self.offset;
        let data_offset = child_offset + header.header_len as u64;
        let Some(open) = self.cluster.as_mut() else { return Ok(Step::Continue) };
        let body_start = open.body.len() + header.header_len;
        open.body.extend_from_slice(&self.buf[..total]);
        let data = &self.buf[header.header_len..total];
        match header.id {
            ids::TIMECODE => {
                let timecode = ebml::read_uint(data).ok_or(MediaError::Malformed {
                    offset: data_offset,
                    path: "Segment/Cluster/Timecode".into(),
                    reason: "integer wider than 8 bytes",
                })?;
                let first = open.timecode.replace(timecode).is_none();
                let offset = open.offset;
                self.consume(total);
                if first {
                    return Ok(Step::Event(Event::ClusterStarted { offset, timecode }));
                }
                return Ok(Step::Continue);
            }
            ids::SIMPLE_BLOCK | ids::BLOCK_GROUP if open.frames.len() >= MAX_FRAMES_PER_FRAGMENT => {
                return Err(MediaError::Malformed {
                    offset: child_offset,
                    path: "Segment/Cluster".into(),
                    reason: "more frames than a fragment may hold",
                });
            }
            ids::SIMPLE_BLOCK => open.frames.push(simple_block_frame(data, data_offset, body_start)?),
            ids::BLOCK_GROUP => {
                let child_start = open.body.len() - total;
                if let Some(frame) = block_group_frame(data, data_offset, child_offset, child_start)? {
                    open.frames.push(frame);
                }
            }
            _ => {}
        }
        self.consume(total);
        Ok(Step::Continue)
    }
}

/// The frame of a SimpleBlock whose data (`data`, at `data_offset` in the input) starts at
/// `body_start` in the cluster body.
fn simple_block_frame(data: &[u8], data_offset: u64, body_start: usize) -> Result<Frame, MediaError> {
    let (track, relative_timecode, keyframe, lacing, head) = mkv::parse_block(data, data_offset, true)?;
    Ok(Frame { track, relative_timecode, keyframe, lacing, data: body_start + head..body_start + data.len() })
}

/// The frame of a BlockGroup's Block, a key frame unless a ReferenceBlock says otherwise; `None`
/// for a group without a Block. The group's data is `data` (at `data_offset` in the input); the
/// group itself starts at `child_offset` in the input and at `child_start` in the cluster body.
fn block_group_frame(
    data: &[u8],
    data_offset: u64,
    child_offset: u64,
    child_start: usize,
) -> Result<Option<Frame>, MediaError> {
    let mut block = None;
    let mut referenced = false;
    for child in mkv::Children::new(data, data_offset, "Segment/Cluster/BlockGroup") {
        let (id, payload, at) = child?;
        match id {
            ids::BLOCK => {
                block = Some((mkv::parse_block(payload, at, false)?, (at - child_offset) as usize, payload.len()))
            }
            ids::REFERENCE_BLOCK => referenced = true,
            _ => {}
        }
    }
    Ok(block.map(|((track, relative_timecode, _, lacing, head), at, len)| {
        let start = child_start + at + head;
        let end = child_start + at + len;
        Frame { track, relative_timecode, keyframe: !referenced, lacing, data: start..end }
    }))
}

enum Step {
    Event(Event),
    NeedMore,
    Continue,
}
