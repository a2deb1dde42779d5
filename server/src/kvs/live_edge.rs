//! The live edge of each video stream: the frames of the fragment PutMedia is receiving, shown to
//! live readers (LL-HLS parts, WebRTC) before the fragment is complete and PERSISTED.
//!
//! It lives in memory, per process, one per stream, and holds only what the store does not have
//! yet: a fragment leaves the edge when its append lands (the stored fragment is the truth from
//! then on) or when its upload ends without it (readers then see a gap, never frames the archive
//! will not have). Frames are only ever appended to an edge fragment, and they are the Cluster's
//! own frames and bytes, so what a reader cut from the edge is what it will cut from the store.
//!
//! Live means newest: a fragment enters the edge only if its producer time is after every
//! fragment the edge has shown and the newest stored when its upload began. An edge agent
//! draining a backlog on a second connection beside its live one therefore never shows old
//! footage as live, and the upload with the newest fragment owns the edge.
//!
//! Copies are made only for a stream someone watches (a reader in the last `WATCHED_FOR`), so an
//! upload nobody views costs no second copy of its Cluster. Readers that follow frame by frame
//! (WebRTC) subscribe to the edge's frames: each frame is sent once, in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use framelog_media::{FragmentRecord, Frame};
use tokio::sync::{broadcast, watch};

/// Frames a slow frame reader may fall behind before it skips ahead (about 8 s of 30 fps video).
const FRAME_BACKLOG: usize = 256;
/// How long after its last reader a stream's edge keeps taking new fragments.
const WATCHED_FOR: Duration = Duration::from_secs(60);

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
    /// The upload it comes from.
    owner: u64,
    /// The record's Tracks payload, shared with the frames sent to frame readers.
    tracks_body: Arc<Vec<u8>>,
    /// How many of its frames went to frame readers.
    sent_frames: usize,
}

impl EdgeFragment {
    fn new(owner: u64, record: FragmentRecord, body: Vec<u8>, complete: bool) -> EdgeFragment {
        let tracks_body = Arc::new(record.tracks_body.clone());
        EdgeFragment { record, body, complete, owner, tracks_body, sent_frames: 0 }
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
    last_upload: u64,
    /// A new fragment must start after this (producer ms): the newest shown or stored.
    newest_producer_ms: u64,
    /// Until when new fragments are copied (a reader looked recently).
    watched_until: Option<Instant>,
    /// Oldest first.
    fragments: Vec<EdgeFragment>,
}

impl EdgeState {
    fn watched(&self) -> bool {
        self.watched_until.is_some_and(|until| Instant::now() < until)
    }
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
            let record = &fragment.record;
            for frame in &record.frames[fragment.sent_frames..] {
                let pts_ms = framelog_media::package::frame_time_ms(record, frame);
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
        self.lock().watched_until = Some(Instant::now() + WATCHED_FOR);
        self.frames.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, EdgeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|version| *version += 1);
    }

    /// A new upload: its token for the calls below. `newest_stored_ms` is the producer time of
    /// the stream's newest stored fragment: only later fragments are live.
    pub fn begin_upload(&self, newest_stored_ms: u64) -> u64 {
        let mut state = self.lock();
        state.last_upload += 1;
        state.newest_producer_ms = state.newest_producer_ms.max(newest_stored_ms);
        state.last_upload
    }

    /// A new fragment enters the edge if it is live (watched, and after everything shown or
    /// stored): older open fragments, which will never complete as live, leave it, and its
    /// frames go to frame readers. `fragment` is only made (its bytes copied) when it enters.
    fn enter(&self, state: &mut EdgeState, producer_ms: u64, fragment: impl FnOnce() -> EdgeFragment) -> bool {
        if !state.watched() || producer_ms <= state.newest_producer_ms {
            return false;
        }
        state.newest_producer_ms = producer_ms;
        state.fragments.retain(|f| f.complete);
        let mut fragment = fragment();
        self.send_frames(&mut fragment);
        state.fragments.push(fragment);
        true
    }

    /// Shows the Cluster in flight (`timecode`) of upload `owner` as far as it has arrived:
    /// `head` makes its record without frames, `frames` and `body` are the frames and bytes
    /// received so far (they only ever grow).
    pub fn publish(
        &self,
        owner: u64,
        timecode: u64,
        head: impl FnOnce() -> FragmentRecord,
        frames: &[Frame],
        body: &[u8],
    ) {
        let mut state = self.lock();
        let open =
            state.fragments.iter().position(|f| f.owner == owner && !f.complete && f.record.timecode == timecode);
        match open {
            Some(index) => {
                let fragment = &mut state.fragments[index];
                let known = fragment.record.frames.len();
                if frames.len() <= known || body.len() < fragment.body.len() {
                    return;
                }
                fragment.record.frames.extend_from_slice(&frames[known..]);
                let held = fragment.body.len();
                fragment.body.extend_from_slice(&body[held..]);
                self.send_frames(fragment);
            }
            None => {
                let record = head();
                let fragment = || {
                    EdgeFragment::new(owner, FragmentRecord { frames: frames.to_vec(), ..record }, body.to_vec(), false)
                };
                if frames.is_empty() || !self.enter(&mut state, record.producer_ts_ms, fragment) {
                    return;
                }
            }
        }
        drop(state);
        self.notify();
    }

    /// The Cluster is complete and its append queued: `record` and `body` are final. The edge
    /// usually holds every byte already, so only the record is copied.
    pub fn complete(&self, owner: u64, record: &FragmentRecord, body: &[u8]) {
        let mut state = self.lock();
        let timecode = record.timecode;
        let open =
            state.fragments.iter().position(|f| f.owner == owner && !f.complete && f.record.timecode == timecode);
        match open {
            Some(index) if body.starts_with(&state.fragments[index].body) => {
                let fragment = &mut state.fragments[index];
                let held = fragment.body.len();
                fragment.body.extend_from_slice(&body[held..]);
                fragment.record = record.clone();
                fragment.complete = true;
                self.send_frames(fragment);
            }
            Some(index) => {
                state.fragments.remove(index);
            }
            // A Cluster that arrived whole: it enters the edge now if it is live.
            None => {
                let fragment = || EdgeFragment::new(owner, record.clone(), body.to_vec(), true);
                if !self.enter(&mut state, record.producer_ts_ms, fragment) {
                    return;
                }
            }
        }
        drop(state);
        self.notify();
    }

    /// Upload `owner`'s fragment with `timecode` leaves the edge: it is in the store, it replays
    /// a stored one, or its append failed.
    pub fn remove(&self, owner: u64, timecode: u64) {
        let mut state = self.lock();
        state.fragments.retain(|f| !(f.owner == owner && f.record.timecode == timecode));
        drop(state);
        self.notify();
    }

    /// Upload `owner` ended: a fragment it had not completed will never be stored and leaves the
    /// edge; with `failed`, so do completed ones whose appends will not land.
    pub fn release(&self, owner: u64, failed: bool) {
        let mut state = self.lock();
        state.fragments.retain(|f| f.owner != owner || (f.complete && !failed));
        drop(state);
        self.notify();
    }

    /// Reads the edge's fragments (oldest first) under its lock: keep `read` short. A read marks
    /// the stream as watched.
    pub fn read<T>(&self, read: impl FnOnce(&[EdgeFragment]) -> T) -> T {
        let mut state = self.lock();
        state.watched_until = Some(Instant::now() + WATCHED_FOR);
        read(&state.fragments)
    }

    /// A viewer is coming (a live session was handed out): the edge takes new fragments.
    pub fn watch(&self) {
        self.lock().watched_until = Some(Instant::now() + WATCHED_FOR);
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

    /// A slot someone watches (a reader looked), so new fragments enter it.
    fn watched_slot() -> EdgeSlot {
        let slot = EdgeSlot::new();
        slot.read(|_| ());
        slot
    }

    fn edge_frames(slot: &EdgeSlot) -> Vec<(u64, usize, bool)> {
        slot.read(|f| f.iter().map(|f| (f.record.timecode, f.record.frames.len(), f.complete)).collect())
    }

    #[test]
    fn frames_grow_until_the_fragment_is_stored_then_leave() {
        let slot = watched_slot();
        let owner = slot.begin_upload(0);
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
    fn the_newest_fragment_owns_the_edge_and_older_footage_never_enters() {
        let slot = watched_slot();
        // Nothing older than the newest stored fragment is live.
        let live = slot.begin_upload(900);
        slot.publish(live, 800, head(800), &frames(2), &[0; 8]);
        assert!(edge_frames(&slot).is_empty());
        slot.publish(live, 1000, head(1000), &frames(2), &[0; 8]);
        // A backlog on a second connection: older footage is not shown as live.
        let backlog = slot.begin_upload(900);
        slot.publish(backlog, 950, head(950), &frames(3), &[0; 12]);
        slot.complete(backlog, &head(950)(), &[]);
        assert_eq!(edge_frames(&slot), [(1000, 2, false)]);
        // A newer fragment from another upload takes over; the older open one leaves.
        let newer = slot.begin_upload(0);
        slot.publish(newer, 5000, head(5000), &frames(1), &[0; 4]);
        slot.publish(live, 1000, head(1000), &frames(3), &[0; 12]);
        assert_eq!(edge_frames(&slot), [(5000, 1, false)]);
        slot.release(live, true);
        assert_eq!(edge_frames(&slot), [(5000, 1, false)]);
    }

    #[test]
    fn an_unwatched_stream_copies_nothing() {
        let slot = EdgeSlot::new();
        let owner = slot.begin_upload(0);
        slot.publish(owner, 1000, head(1000), &frames(2), &[0; 8]);
        slot.complete(owner, &head(2000)(), &[]);
        assert!(slot.lock().fragments.is_empty());
    }

    #[test]
    fn frame_readers_get_every_frame_once_in_order() {
        let slot = EdgeSlot::new();
        let owner = slot.begin_upload(0);
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
        let slot = watched_slot();
        let owner = slot.begin_upload(0);
        slot.complete(owner, &head(1000)(), &[]);
        slot.release(owner, true);
        assert!(edge_frames(&slot).is_empty());
    }
}
