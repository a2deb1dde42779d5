//! The cluster backend: shard logs, metadata and amendments in NATS JetStream, large payloads
//! in an S3-compatible object store, so that any number of stateless nodes share one store
//! (docs/cluster.md).

mod append;
mod bridge;
mod leases;
mod log;
mod names;
mod node;
mod objects;
mod options;
mod read;
mod retention;
mod streams;
mod watch;

use std::sync::Arc;

pub use options::{ClusterOptions, DEFAULT_OBJECT_MIN_BYTES, ObjectStoreOptions};

use crate::backend::{AmendFn, AppendWait, Backend, MetaDurability};
use crate::clock::Clock;
use crate::entry::NewEntry;
use crate::error::{Result, StoreError};
use crate::handle::StreamHandle;
use crate::meta::StreamMeta;
use crate::payload_ref::EntryRef;
use crate::read::{HeaderItem, Position, ReadBatch};
use crate::reshard::ReshardStep;
use crate::retention::TrimStats;
use bridge::Bridge;
use node::Node;

/// The least time a lease call gets, however short the lease.
const LEASE_CALL_MIN: std::time::Duration = std::time::Duration::from_millis(500);

/// A node of a cluster: a handle on the shared state plus the runtime its NATS and object
/// store clients run on.
#[derive(Debug)]
pub(crate) struct ClusterEngine {
    node: Arc<Node>,
    bridge: Arc<Bridge>,
    /// Stopped by `close` before the connection goes, so a stopping node's watches end quietly
    /// instead of reporting the dropped connection as a failure.
    watchers: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl ClusterEngine {
    /// Connects, creates the buckets if this is the cluster's first node, loads every stream
    /// and starts the watchers that keep this node's view current.
    pub(crate) fn open(options: ClusterOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let bridge = Arc::new(Bridge::new(options.request_timeout)?);
        // Joining waits for JetStream to be ready (a NATS cluster started with this node may
        // still be electing its leader), so it gets longer than one request.
        let join_timeout = options.request_timeout * 2;
        let node = bridge.run_within(join_timeout, Node::connect(options, clock))?;
        let engine = Self { node, bridge, watchers: Default::default() };
        let (meta, amend) = (engine.node.meta.clone(), engine.node.amend.clone());
        let loaded = engine.bridge.run(async move {
            Ok(watch::Loaded { meta: watch::last_revision(&meta).await?, amend: watch::last_revision(&amend).await? })
        })?;
        engine.bridge.run(streams::load_all(engine.node.clone()))?;
        engine.bridge.run(watch::load_amendments(engine.node.clone()))?;
        let watchers = watch::start(engine.node.clone(), loaded);
        let started = engine.bridge.run(watchers)?;
        let running = started.into_iter().map(|watcher| engine.bridge.spawn(watcher)).collect();
        *engine.watchers.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = running;
        Ok(engine)
    }
}

impl Backend for ClusterEngine {
    fn now_ms(&self) -> u64 {
        self.node.clock.now_ms()
    }

    fn create_stream(&self, meta: StreamMeta) -> Result<StreamHandle> {
        self.bridge.run(streams::create(self.node.clone(), meta))
    }

    fn stream(&self, name: &str) -> Result<StreamHandle> {
        let name = name.to_string();
        self.bridge.run(streams::refresh(self.node.clone(), name))
    }

    fn streams(&self) -> Vec<StreamHandle> {
        self.node.all_streams()
    }

    fn write_meta(
        &self,
        handle: &StreamHandle,
        change: &mut dyn FnMut(&mut StreamMeta),
        _durability: MetaDurability,
    ) -> Result<StreamMeta> {
        // Every KV write is replicated and synced; there is no cheaper kind to choose.
        streams::write_meta(&self.node, &self.bridge, handle, change)
    }

    fn new_wrapped_data_key_hex(&self) -> Result<String> {
        crate::crypto::new_wrapped_data_key_hex(self.node.options.master_key.as_deref())
    }

    fn delete_stream(&self, name: &str) -> Result<()> {
        let handle = self.node.stream(name)?;
        self.bridge.run(streams::delete(self.node.clone(), handle))
    }

    /// Closing a shard's log for every node at once needs a fenced close of its JetStream
    /// stream, which this backend does not have yet (docs/known-gaps.md).
    fn reshard(&self, _handle: &StreamHandle, _steps: Vec<ReshardStep>) -> Result<StreamMeta> {
        Err(StoreError::Unsupported("resharding"))
    }

    fn can_reshard(&self) -> bool {
        false
    }

    fn amend_attrs(&self, handle: &StreamHandle, shard: u32, seq: u64, change: AmendFn) -> Result<bool> {
        let handle = handle.clone();
        self.bridge.run(watch::amend(self.node.clone(), handle, shard, seq, change))
    }

    fn append(&self, handle: &StreamHandle, entries: Vec<NewEntry>) -> Result<AppendWait> {
        for entry in &entries {
            handle.shard(entry.shard)?;
        }
        let (reply, done) = tokio::sync::oneshot::channel();
        let node = self.node.clone();
        let handle = handle.clone();
        let timeout = self.bridge.timeout();
        // Taken now, on the caller's thread, so the order of calls is the order of entries.
        let turn = self.node.publish_turn(handle.id());
        self.bridge.spawn(async move {
            let outcome = tokio::time::timeout(timeout, append::append(node, handle, entries, turn)).await;
            let outcome = outcome.unwrap_or_else(|_| {
                Err(StoreError::Backend {
                    what: "the cluster did not acknowledge in time",
                    detail: format!("{timeout:?}"),
                })
            });
            let _ = reply.send(outcome);
        });
        Ok(AppendWait::new(done))
    }

    fn close(&self) -> Result<()> {
        self.node.closing.store(true, std::sync::atomic::Ordering::SeqCst);
        for watcher in self.watchers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            watcher.abort();
        }
        let client = self.node.client.clone();
        self.bridge.run(async move {
            client.flush().await.map_err(|e| StoreError::Backend { what: "flushing NATS", detail: e.to_string() })
        })
    }

    fn resolve(&self, handle: &StreamHandle, shard: u32, position: Position) -> Result<u64> {
        let handle = handle.clone();
        self.bridge.run(read::resolve(self.node.clone(), handle, shard, position))
    }

    fn read(
        &self,
        handle: &StreamHandle,
        shard: u32,
        from_seq: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch> {
        let handle = handle.clone();
        self.bridge.run(read::read(self.node.clone(), handle, shard, from_seq, max_count, max_bytes))
    }

    fn list_headers(
        &self,
        handle: &StreamHandle,
        shard: u32,
        from_seq: u64,
        to_seq: u64,
        max_count: usize,
    ) -> Result<Vec<HeaderItem>> {
        let handle = handle.clone();
        self.bridge.run(read::list_headers(self.node.clone(), handle, shard, from_seq, to_seq, max_count))
    }

    fn producer_range(
        &self,
        handle: &StreamHandle,
        shard: u32,
        start_ms: u64,
        end_ms: u64,
        after: Option<(u64, u64)>,
        max_count: usize,
    ) -> Result<Vec<(u64, u64)>> {
        let handle = handle.clone();
        self.bridge.run(read::producer_range(self.node.clone(), handle, shard, start_ms..=end_ms, after, max_count))
    }

    fn entry_ref(&self, handle: &StreamHandle, shard: u32, from_seq: u64) -> Result<(Option<EntryRef>, u64)> {
        let handle = handle.clone();
        let bridge = self.bridge.clone();
        self.bridge.run(read::entry_ref(self.node.clone(), bridge, handle, shard, from_seq))
    }

    fn meta_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.node.meta_changes.subscribe()
    }

    fn hold_lease(&self, work: &str, ttl_ms: u64) -> Result<bool> {
        let work = work.to_string();
        // A renewal that cannot finish well within the lease is as good as lost: the caller
        // must learn that in time to stop the work before another node takes it.
        let within = std::time::Duration::from_millis(ttl_ms / 5).max(LEASE_CALL_MIN);
        self.bridge.run_within(within, leases::hold(self.node.clone(), work, ttl_ms))
    }

    fn release_lease(&self, work: &str) -> Result<()> {
        let work = work.to_string();
        self.bridge.run(leases::release(self.node.clone(), work))
    }
    /// The cluster's state lives in JetStream and the object store, each with its own backups.
    fn backup(&self, _to: &std::path::Path) -> Result<crate::backup::BackupStats> {
        Err(StoreError::Unsupported("backup of a cluster node (back up JetStream and the object store)"))
    }

    /// A node keeps its data in JetStream and the object store, not in a database of its own.
    fn memory(&self) -> Option<crate::memory::EngineMemory> {
        None
    }

    // The cluster's state lives in JetStream and the object store, which report their own.
    fn health(&self) -> Option<crate::health::EngineHealth> {
        None
    }

    fn disk_bytes(&self, _stream_id: u64) -> Option<u64> {
        None
    }

    /// Trims every shard of every stream; a shard that fails does not stop the others, and the
    /// first failure is returned at the end (a stream deleted meanwhile is not one).
    fn trim_expired(&self) -> Result<TrimStats> {
        let mut stats = TrimStats::default();
        let mut first_error = None;
        for handle in self.node.all_streams() {
            for shard in 0..handle.shard_count() {
                match self.bridge.run(retention::trim_shard(self.node.clone(), handle.clone(), shard)) {
                    Ok(done) => {
                        stats.entries_removed += done.entries_removed;
                        stats.shards_trimmed += done.shards_trimmed;
                        stats.segments_deleted += done.segments_deleted;
                    }
                    Err(_) if handle.0.deleted.load(std::sync::atomic::Ordering::Acquire) => {}
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
        }
        first_error.map_or(Ok(stats), Err)
    }
}
