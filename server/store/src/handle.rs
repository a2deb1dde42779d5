//! A stream handle: the cached metadata of one stream and, per shard, the committed tip that
//! tailing readers wait on. Both backends hand out the same handle; the local one moves the tip
//! after its commit thread synced, the cluster one after JetStream acknowledged (or another node
//! said so).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::error::{Result, StoreError};
use crate::meta::StreamMeta;

/// Live per-shard state, written only by the commit thread.
///
/// `next_seq` and `last_arrival_ms` run ahead while a group commit is being written; readers must
/// never see them, or a read could skip entries that land a moment later. Readers use the
/// committed pair, `tip` and `committed_arrival_ms`, which move only after the write succeeded.
#[derive(Debug)]
pub(crate) struct ShardState {
    pub(crate) next_seq: AtomicU64,
    pub(crate) last_arrival_ms: AtomicU64,
    pub(crate) last_indexed_arrival_ms: AtomicU64,
    pub(crate) committed_arrival_ms: AtomicU64,
    /// The committed tip (one past the newest durable entry); tailing readers wait on it.
    pub(crate) tip: watch::Sender<u64>,
    /// Set when a reshard closed the shard; appends to it are refused from then on.
    pub(crate) closed: AtomicBool,
}

impl ShardState {
    pub(crate) fn new(closed: bool) -> Self {
        ShardState {
            next_seq: AtomicU64::new(0),
            last_arrival_ms: AtomicU64::new(0),
            last_indexed_arrival_ms: AtomicU64::new(0),
            committed_arrival_ms: AtomicU64::new(0),
            tip: watch::channel(0).0,
            closed: AtomicBool::new(closed),
        }
    }
}

impl ShardState {
    /// Publishes everything assigned so far as committed; called after a successful write.
    pub(crate) fn publish(&self) {
        self.committed_arrival_ms.store(self.last_arrival_ms.load(Ordering::Acquire), Ordering::Release);
        self.tip.send_replace(self.next_seq.load(Ordering::Acquire));
    }
}

impl ShardState {
    /// Moves the committed tip forward to `tip` (never back), for a backend that learns of
    /// commits made elsewhere (another cluster node) as well as its own.
    pub(crate) fn advance(&self, tip: u64, arrival_ms: u64) {
        self.last_arrival_ms.fetch_max(arrival_ms, Ordering::AcqRel);
        self.committed_arrival_ms.fetch_max(arrival_ms, Ordering::AcqRel);
        self.next_seq.fetch_max(tip, Ordering::AcqRel);
        self.tip.send_if_modified(|current| {
            let moved = tip > *current;
            *current = (*current).max(tip);
            moved
        });
    }
}

#[derive(Debug)]
pub(crate) struct StreamState {
    pub(crate) meta: RwLock<StreamMeta>,
    /// One per shard of `meta`, by index; a reshard only adds to it, under the meta lock.
    pub(crate) shards: RwLock<Vec<Arc<ShardState>>>,
    pub(crate) deleted: AtomicBool,
    /// The revision `meta` was read at, where the backend versions metadata (the cluster's KV
    /// bucket); a watcher never replaces newer metadata with an older revision.
    pub(crate) meta_revision: AtomicU64,
}

/// A cheap handle on one stream, valid until the stream is deleted.
#[derive(Debug, Clone)]
pub struct StreamHandle(pub(crate) Arc<StreamState>);

impl StreamHandle {
    pub fn meta(&self) -> StreamMeta {
        self.0.meta.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn id(&self) -> u64 {
        self.0.meta.read().unwrap_or_else(|e| e.into_inner()).id
    }

    /// How long entries stay readable, read in place (reads call this on every request, and
    /// `meta()` would clone the whole shard map and tags).
    pub fn retention_ms(&self) -> u64 {
        self.0.meta.read().unwrap_or_else(|e| e.into_inner()).retention_ms()
    }

    /// Shards ever created, closed ones included (indices run from 0 to this, exclusive).
    pub fn shard_count(&self) -> u32 {
        self.0.shards.read().unwrap_or_else(|e| e.into_inner()).len() as u32
    }

    pub(crate) fn shard(&self, shard: u32) -> Result<Arc<ShardState>> {
        self.0.shard(shard).ok_or_else(|| StoreError::ShardNotFound { stream: self.meta().name, shard })
    }

    /// The next sequence number to be assigned in a shard (one past the newest committed entry).
    pub fn tip_seq(&self, shard: u32) -> Result<u64> {
        Ok(*self.shard(shard)?.tip.borrow())
    }

    /// Arrival time of the newest committed entry of a shard (0 if it has none).
    pub fn last_arrival_ms(&self, shard: u32) -> Result<u64> {
        Ok(self.shard(shard)?.committed_arrival_ms.load(Ordering::Acquire))
    }

    /// Whether a reshard closed the shard (it takes no more entries). Tailing readers are woken
    /// when it closes.
    pub fn is_closed(&self, shard: u32) -> Result<bool> {
        Ok(self.shard(shard)?.closed.load(Ordering::Acquire))
    }

    /// A receiver that changes whenever new entries are committed to the shard: tailing readers wait on it.
    pub fn subscribe(&self, shard: u32) -> Result<watch::Receiver<u64>> {
        Ok(self.shard(shard)?.tip.subscribe())
    }
}

impl StreamState {
    pub(crate) fn shard(&self, shard: u32) -> Option<Arc<ShardState>> {
        self.shards.read().unwrap_or_else(|e| e.into_inner()).get(shard as usize).cloned()
    }

    /// Adds state for shards a reshard created and marks the ones it closed. Called with the
    /// new metadata before it replaces the old, so no reader sees a shard without its state.
    pub(crate) fn follow_reshard(&self, meta: &StreamMeta) {
        let mut shards = self.shards.write().unwrap_or_else(|e| e.into_inner());
        for shard in &meta.shards[shards.len().min(meta.shards.len())..] {
            shards.push(Arc::new(ShardState::new(!shard.is_open())));
        }
        for (state, shard) in shards.iter().zip(&meta.shards) {
            if !shard.is_open() && !state.closed.swap(true, Ordering::AcqRel) {
                // Wakes the shard's tailing readers, which end at a closed shard's end.
                state.tip.send_modify(|_| {});
            }
        }
    }
}

pub(crate) fn new_handle(meta: StreamMeta) -> StreamHandle {
    let shards = meta.shards.iter().map(|s| Arc::new(ShardState::new(!s.is_open()))).collect();
    StreamHandle(Arc::new(StreamState {
        meta: RwLock::new(meta),
        shards: RwLock::new(shards),
        deleted: AtomicBool::new(false),
        meta_revision: AtomicU64::new(0),
    }))
}
