//! The live edge of each video stream: the frames of the fragment PutMedia is receiving, shown to
//! live readers (LL-HLS parts) before the fragment is complete and PERSISTED.
//!
//! It lives in memory, per process, one per stream, and holds only what the store does not have
//! yet: a fragment leaves the edge when its append lands (the stored fragment is the truth from
//! then on) or when its upload ends without it (readers then see a gap, never frames the archive
//! will not have). Frames are only ever appended to an edge fragment, and they are the Cluster's
//! own frames and bytes, so what a reader cut from the edge is what it will cut from the store.
//! One upload owns a stream's edge at a time; a newer upload takes it over.
//!
//! Readers that follow frame by frame (WebRTC) subscribe to the edge's frames: each frame is sent
//! once, in order, as it reaches the edge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use framelog_media::{FragmentRecord, Frame};
use tokio::sync::{broadcast, watch};

/// Frames a slow frame reader may fall behind before it skips ahead (about 8 s of 30 fps video).
const FRAME_BACKLOG: usize = 256;

/// Every stream's edge, by engine stream id.
#[derive(Debug, Default)]
pub struct LiveEdges {
    slots: Mutex<HashMap<u64, Arc<EdgeSlot>>>,
}

impl LiveEdges {
    /// The stream's edge, created empty on first use.
    pub fn slot(&self, stream_id: u64) -> Arc<EdgeSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(stream_id).or_insert_with(|| Arc::new(EdgeSlot::new())).clone()
    }
}

/// A fragment not yet in the store: its record so far (frames index `body`) and whether the
/// Cluster is complete (accepted, its append queued).
#[derive(Debug, Clone)]
pub struct EdgeFragment {
    pub record: FragmentRecord,
    pub body: Vec<u8>,
    pub complete: bool,
    /// The record's Tracks payload, shared with the frames sent to frame readers.
    tracks_body: Arc<Vec<u8>>,
    /// How many of its frames went to frame readers.
    sent_frames: usize,
}

impl EdgeFragment {
    fn new(record: FragmentRecord, body: Vec<u8>, complete: bool) -> EdgeFragment {
        let tracks_body = Arc::new(record.tracks_body.clone());
        EdgeFragment { record, body, complete, tracks_body, sent_frames: 0 }
    }
}

/// One frame as it reached the edge, for readers that follow the stream frame by frame.
#[derive(Debug)]
pub struct EdgeFrame {
    pub track: u64,
    /// Presentation time on the producer clock.
    pub pts_ms: i64,
    pub keyframe: bool,
    pub data: Vec<u8>,
    /// The Segment's Tracks payload: the codec configuration the frame needs.
    pub tracks_body: Arc<Vec<u8>>,
}

#[derive(Debug, Default)]
struct EdgeState {
    /// The upload that owns the edge (0: none yet).
    owner: u64,
    last_owner: u64,
    /// Oldest first.
    fragments: Vec<EdgeFragment>,
}

/// One stream's edge, a watch that moves whenever it changes, and its frames as they arrive.
#[derive(Debug)]
pub struct EdgeSlot {
    state: Mutex<EdgeState>,
    changed: watch::Sender<u64>,
    frames: broadcast::Sender<Arc<EdgeFrame>>,
}

impl EdgeSlot {
    fn new() -> EdgeSlot {
        EdgeSlot {
            state: Mutex::new(EdgeState::default()),
            changed: watch::channel(0).0,
            frames: broadcast::channel(FRAME_BACKLOG).0,
        }
    }

    /// Sends the fragment's frames that frame readers have not had yet.
    fn send_frames(&self, fragment: &mut EdgeFragment) {
        let known = fragment.record.frames.len();
        if self.frames.receiver_count() > 0 && fragment.sent_frames < known {
            let times = framelog_media::package::frame_times_ms(&fragment.record);
            for (frame, pts_ms) in fragment.record.frames.iter().zip(times).skip(fragment.sent_frames) {
                let data = fragment.body.get(frame.data.clone()).unwrap_or_default().to_vec();
                let tracks_body = fragment.tracks_body.clone();
                let frame = EdgeFrame { track: frame.track, pts_ms, keyframe: frame.keyframe, data, tracks_body };
                // No receiver left is not an error: the frames were for whoever listens.
                let _ = self.frames.send(Arc::new(frame));
            }
        }
        fragment.sent_frames = known;
    }

    /// The edge's frames from now on, each once and in order. A reader more than
    /// `FRAME_BACKLOG` frames behind is told how many it missed (`RecvError::Lagged`).
    pub fn frames(&self) -> broadcast::Receiver<Arc<EdgeFrame>> {
        self.frames.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, EdgeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|version| *version += 1);
    }

    /// A new upload takes the edge over; what an older one left is dropped. Returns its token.
    pub fn claim(&self) -> u64 {
        let mut state = self.lock();
        state.last_owner += 1;
        state.owner = state.last_owner;
        state.fragments.clear();
        let owner = state.owner;
        drop(state);
        self.notify();
        owner
    }

    /// Shows the Cluster in flight (`timecode`) as far as it has arrived: `head` makes its record
    /// without frames, `frames` and `body` are the frames and bytes received so far (they only
    /// ever grow). Ignored unless `owner` still owns the edge.
    pub fn publish(
        &self,
        owner: u64,
        timecode: u64,
        head: impl FnOnce() -> FragmentRecord,
        frames: &[Frame],
        body: &[u8],
    ) {
        let mut state = self.lock();
        if state.owner != owner {
            return;
        }
        let grown = match state.fragments.last_mut() {
            Some(open) if !open.complete && open.record.timecode == timecode => {
                let known = open.record.frames.len();
                if frames.len() <= known || body.len() < open.body.len() {
                    return;
                }
                open.record.frames.extend_from_slice(&frames[known..]);
                let held = open.body.len();
                open.body.extend_from_slice(&body[held..]);
                self.send_frames(open);
                true
            }
            _ => {
                if frames.is_empty() {
                    return;
                }
                // A Cluster left incomplete never will be: only the newest one is open.
                state.fragments.retain(|f| f.complete);
                let mut record = head();
                record.frames = frames.to_vec();
                let mut fragment = EdgeFragment::new(record, body.to_vec(), false);
                self.send_frames(&mut fragment);
                state.fragments.push(fragment);
                true
            }
        };
        drop(state);
        if grown {
            self.notify();
        }
    }

    /// The Cluster is complete and its append queued: `record` and `body` are final. The edge
    /// usually holds every byte already, so only the record is copied.
    pub fn complete(&self, owner: u64, record: &FragmentRecord, body: &[u8]) {
        let mut state = self.lock();
        if state.owner != owner {
            return;
        }
        let timecode = record.timecode;
        let index = state.fragments.iter().position(|f| !f.complete && f.record.timecode == timecode);
        match index.map(|i| &mut state.fragments[i]) {
            Some(fragment) if body.starts_with(&fragment.body) => {
                let held = fragment.body.len();
                fragment.body.extend_from_slice(&body[held..]);
                fragment.record = record.clone();
                fragment.complete = true;
                self.send_frames(fragment);
            }
            _ => {
                state.fragments.retain(|f| f.record.timecode != timecode);
                let mut fragment = EdgeFragment::new(record.clone(), body.to_vec(), true);
                self.send_frames(&mut fragment);
                state.fragments.push(fragment);
            }
        }
        drop(state);
        self.notify();
    }

    /// The fragment with `timecode` leaves the edge: it is in the store, it replays a stored one,
    /// or its append failed.
    pub fn remove(&self, owner: u64, timecode: u64) {
        let mut state = self.lock();
        if state.owner != owner {
            return;
        }
        state.fragments.retain(|f| f.record.timecode != timecode);
        drop(state);
        self.notify();
    }

    /// The upload ended: a fragment it had not completed will never be stored and leaves the
    /// edge; with `failed`, so do completed ones whose appends will not land.
    pub fn release(&self, owner: u64, failed: bool) {
        let mut state = self.lock();
        if state.owner != owner {
            return;
        }
        state.fragments.retain(|f| f.complete && !failed);
        drop(state);
        self.notify();
    }

    /// Reads the edge's fragments (oldest first) under its lock: keep `read` short.
    pub fn read<T>(&self, read: impl FnOnce(&[EdgeFragment]) -> T) -> T {
        read(&self.lock().fragments)
    }

    /// A number that grows whenever the edge changes.
    pub fn version(&self) -> u64 {
        *self.changed.borrow()
    }

    /// A receiver that changes whenever the edge does: blocked playlist and part requests wait on it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(timecode: u64) -> impl FnOnce() -> FragmentRecord {
        move || FragmentRecord {
            timecode,
            timecode_scale_ns: 1_000_000,
            producer_ts_ms: timecode,
            server_ts_ms: 0,
            duration_ms: 0,
            tracks_body: Vec::new(),
            tags: Vec::new(),
            frames: Vec::new(),
        }
    }

    fn frames(count: usize) -> Vec<Frame> {
        (0..count)
            .map(|i| Frame {
                track: 1,
                relative_timecode: i as i16 * 33,
                keyframe: i == 0,
                lacing: 0,
                data: i * 4..i * 4 + 4,
            })
            .collect()
    }

    fn edge_frames(slot: &EdgeSlot) -> Vec<(u64, usize, bool)> {
        slot.read(|f| f.iter().map(|f| (f.record.timecode, f.record.frames.len(), f.complete)).collect())
    }

    #[test]
    fn frames_grow_until_the_fragment_is_stored_then_leave() {
        let slot = EdgeSlot::new();
        let owner = slot.claim();
        let all = frames(6);
        let body: Vec<u8> = (0..24).collect();
        let mut seen = slot.subscribe();
        slot.publish(owner, 1000, head(1000), &all[..2], &body[..8]);
        slot.publish(owner, 1000, head(1000), &all[..5], &body[..20]);
        assert!(seen.has_changed().unwrap_or(false));
        assert_eq!(edge_frames(&slot), [(1000, 5, false)]);
        assert_eq!(slot.read(|f| f[0].body.clone()), body[..20]);
        slot.complete(owner, &FragmentRecord { frames: all.clone(), ..head(1000)() }, &body);
        slot.publish(owner, 3000, head(3000), &all[..1], &body[..4]);
        assert_eq!(edge_frames(&slot), [(1000, 6, true), (3000, 1, false)]);
        assert_eq!(slot.read(|f| f[0].body.clone()), body);
        slot.remove(owner, 1000);
        assert_eq!(edge_frames(&slot), [(3000, 1, false)]);
        seen.mark_unchanged();
        slot.release(owner, false);
        assert!(edge_frames(&slot).is_empty(), "an incomplete fragment never reaches the store");
        assert!(seen.has_changed().unwrap_or(false));
    }

    #[test]
    fn a_newer_upload_takes_the_edge_and_the_older_one_is_ignored() {
        let slot = EdgeSlot::new();
        let first = slot.claim();
        slot.publish(first, 1000, head(1000), &frames(2), &[0; 8]);
        let second = slot.claim();
        assert!(edge_frames(&slot).is_empty());
        slot.publish(first, 1000, head(1000), &frames(3), &[0; 12]);
        slot.complete(first, &head(1000)(), &[]);
        assert!(edge_frames(&slot).is_empty());
        slot.publish(second, 5000, head(5000), &frames(1), &[0; 4]);
        slot.release(first, true);
        assert_eq!(edge_frames(&slot), [(5000, 1, false)]);
    }

    #[test]
    fn frame_readers_get_every_frame_once_in_order() {
        let slot = EdgeSlot::new();
        let owner = slot.claim();
        let mut reader = slot.frames();
        let all = frames(6);
        let body: Vec<u8> = (0..24).collect();
        slot.publish(owner, 1000, head(1000), &all[..2], &body[..8]);
        slot.publish(owner, 1000, head(1000), &all[..4], &body[..16]);
        slot.complete(owner, &FragmentRecord { frames: all.clone(), ..head(1000)() }, &body);
        // A Cluster that arrived whole is sent whole when it completes.
        slot.complete(owner, &FragmentRecord { frames: all[..1].to_vec(), ..head(3000)() }, &body[..4]);
        let mut got = Vec::new();
        while let Ok(frame) = reader.try_recv() {
            got.push((frame.pts_ms, frame.keyframe, frame.data.clone()));
        }
        let expected: Vec<_> = (0..6)
            .map(|i| (1000 + i as i64 * 33, i == 0, body[i * 4..i * 4 + 4].to_vec()))
            .chain([(3000, true, body[..4].to_vec())])
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_failed_upload_takes_its_unstored_fragments_with_it() {
        let slot = EdgeSlot::new();
        let owner = slot.claim();
        slot.complete(owner, &head(1000)(), &[]);
        slot.release(owner, true);
        assert!(edge_frames(&slot).is_empty());
    }
}
