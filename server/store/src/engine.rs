//! `Engine`, the store's one API: every feature calls it, and it hands each call to the backend
//! that was opened (the local RocksDB engine, or the cluster on JetStream and an object store).

use std::path::Path;
use std::sync::Arc;

use crate::backend::{AppendWait, Backend, MetaDurability};
use crate::backup::BackupStats;
use crate::clock::Clock;
use crate::cluster::{ClusterEngine, ClusterOptions};
use crate::entry::{Appended, Entry, EntryHeader, NewEntry};
use crate::error::{Result, StoreError};
use crate::handle::StreamHandle;
use crate::health::EngineHealth;
use crate::local::{EngineOptions, LocalEngine};
use crate::memory::EngineMemory;
use crate::meta::StreamMeta;
use crate::payload_ref::EntryRef;
use crate::read::{HeaderItem, Position, ReadBatch};
use crate::reshard::ReshardStep;
use crate::retention::TrimStats;

/// The shard log engine. Clone it freely; all clones share one backend.
#[derive(Clone, Debug)]
pub struct Engine {
    backend: Arc<dyn Backend>,
}

impl Engine {
    /// Opens (or creates) a local engine in `path` and restores every stream's tip from disk.
    pub fn open(path: &Path, clock: Arc<dyn Clock>, options: EngineOptions) -> Result<Engine> {
        Ok(Engine { backend: Arc::new(LocalEngine::open(path, clock, options)?) })
    }

    /// Joins a cluster (docs/cluster.md): NATS JetStream and an object store hold everything.
    pub fn open_cluster(options: ClusterOptions, clock: Arc<dyn Clock>) -> Result<Engine> {
        Ok(Engine { backend: Arc::new(ClusterEngine::open(options, clock)?) })
    }

    pub fn now_ms(&self) -> u64 {
        self.backend.now_ms()
    }

    /// Creates a stream from `meta` (its `id` is assigned here). Durable before it returns.
    pub fn create_stream(&self, meta: StreamMeta) -> Result<StreamHandle> {
        self.backend.create_stream(meta)
    }

    pub fn stream(&self, name: &str) -> Result<StreamHandle> {
        self.backend.stream(name)
    }

    /// All streams, ordered by name.
    pub fn streams(&self) -> Vec<StreamHandle> {
        self.backend.streams()
    }

    /// Applies `change` to a stream's metadata and stores it durably; returns the new metadata.
    /// `change` may run more than once: a backend shared by several nodes reapplies it to the
    /// newest metadata when another node changed the stream meanwhile.
    pub fn update_meta<T>(
        &self,
        handle: &StreamHandle,
        change: impl FnMut(&mut StreamMeta) -> T,
    ) -> Result<(StreamMeta, T)> {
        self.write_meta(handle, change, MetaDurability::Synced)
    }

    /// Like `update_meta`, but durable only against a crash of this process, not of the machine:
    /// for frequent, replaceable state such as consumer checkpoints (a lost one means
    /// redelivery, never a gap), so those writes neither cost an fsync each nor hold the
    /// stream's metadata lock across one while ingest waits.
    pub fn update_meta_unsynced<T>(
        &self,
        handle: &StreamHandle,
        change: impl FnMut(&mut StreamMeta) -> T,
    ) -> Result<(StreamMeta, T)> {
        self.write_meta(handle, change, MetaDurability::Process)
    }

    fn write_meta<T>(
        &self,
        handle: &StreamHandle,
        mut change: impl FnMut(&mut StreamMeta) -> T,
        durability: MetaDurability,
    ) -> Result<(StreamMeta, T)> {
        let mut outcome = None;
        let meta = self.backend.write_meta(handle, &mut |meta| outcome = Some(change(meta)), durability)?;
        let outcome = outcome
            .ok_or(StoreError::Backend { what: "a metadata change was never applied", detail: meta.name.clone() })?;
        Ok((meta, outcome))
    }

    /// A new data key wrapped by the master key (hex), for `StreamEncryption::wrapped_key_hex`.
    pub fn new_wrapped_data_key_hex(&self) -> Result<String> {
        self.backend.new_wrapped_data_key_hex()
    }

    /// Deletes a stream and all its entries; no append lands after it.
    pub fn delete_stream(&self, name: &str) -> Result<()> {
        self.backend.delete_stream(name)
    }

    /// Changes a stream's shard map (docs/engine.md "Resharding"): parents close at their tip,
    /// children open empty, all in one durable metadata write. Appends that were accepted before
    /// land in the parents; later appends naming a parent fail with `ShardClosed` and must be
    /// routed again by the returned map.
    pub fn reshard(&self, handle: &StreamHandle, steps: Vec<ReshardStep>) -> Result<StreamMeta> {
        self.backend.reshard(handle, steps)
    }

    /// Whether `reshard` is available on this backend.
    pub fn can_reshard(&self) -> bool {
        self.backend.can_reshard()
    }

    /// Rewrites the attributes of a stored entry durably (metadata written back to a fragment).
    /// `change` gets the current attributes and returns new ones, or `None` for no change; it may
    /// run more than once. Returns false when the entry no longer exists or nothing changed.
    pub fn amend_attrs(
        &self,
        handle: &StreamHandle,
        shard: u32,
        seq: u64,
        change: impl FnMut(&[u8]) -> Option<Vec<u8>> + Send + 'static,
    ) -> Result<bool> {
        self.backend.amend_attrs(handle, shard, seq, Box::new(change))
    }

    /// Appends entries to a stream; resolves once they are durable, in the order given.
    pub fn append(&self, handle: &StreamHandle, entries: Vec<NewEntry>) -> Result<AppendWait> {
        self.backend.append(handle, entries)
    }

    /// Appends and blocks the calling thread until durable; for synchronous callers.
    pub fn append_blocking(&self, handle: &StreamHandle, entries: Vec<NewEntry>) -> Result<Vec<Appended>> {
        self.append(handle, entries)?.wait_blocking()
    }

    /// Finishes the appends already queued and releases the backend's resources.
    pub fn close(&self) -> Result<()> {
        self.backend.close()
    }

    /// Turns a position into the sequence number a reader starts at.
    pub fn resolve(&self, handle: &StreamHandle, shard: u32, position: Position) -> Result<u64> {
        self.backend.resolve(handle, shard, position)
    }

    /// Reads up to `max_count` entries from `from_seq`, stopping before `max_bytes` of payload
    /// (but always returning at least one entry when one is available). Expired entries are
    /// never returned, whether or not retention has removed them yet.
    pub fn read(
        &self,
        handle: &StreamHandle,
        shard: u32,
        from_seq: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch> {
        self.backend.read(handle, shard, from_seq, max_count, max_bytes)
    }

    /// Lists entry headers (no payloads) in `[from_seq, to_seq)`, up to `max_count`.
    pub fn list_headers(
        &self,
        handle: &StreamHandle,
        shard: u32,
        from_seq: u64,
        to_seq: u64,
        max_count: usize,
    ) -> Result<Vec<HeaderItem>> {
        self.backend.list_headers(handle, shard, from_seq, to_seq, max_count)
    }

    /// One entry by sequence number, if it exists and has not expired.
    pub fn entry(&self, handle: &StreamHandle, shard: u32, seq: u64) -> Result<Option<Entry>> {
        Ok(self.read(handle, shard, seq, 1, usize::MAX)?.entries.into_iter().next().filter(|e| e.seq == seq))
    }

    /// One entry's header by sequence number, if it exists and has not expired.
    pub fn header(&self, handle: &StreamHandle, shard: u32, seq: u64) -> Result<Option<EntryHeader>> {
        Ok(self.list_headers(handle, shard, seq, seq.saturating_add(1), 1)?.into_iter().next().map(|item| item.header))
    }

    /// Entries whose producer time lies in `[start_ms, end_ms]`, in producer-time order, as
    /// `(producer_ms, seq)`; `after` continues a previous page after that pair.
    pub fn producer_range(
        &self,
        handle: &StreamHandle,
        shard: u32,
        start_ms: u64,
        end_ms: u64,
        after: Option<(u64, u64)>,
        max_count: usize,
    ) -> Result<Vec<(u64, u64)>> {
        self.backend.producer_range(handle, shard, start_ms, end_ms, after, max_count)
    }

    /// The first retained entry at or after `from_seq` with its payload where it lies, and the
    /// sequence number to continue from (like `read` with a count of one).
    pub fn entry_ref(&self, handle: &StreamHandle, shard: u32, from_seq: u64) -> Result<(Option<EntryRef>, u64)> {
        self.backend.entry_ref(handle, shard, from_seq)
    }

    /// A receiver that changes whenever any stream is created, changed or deleted, by this
    /// process or (in a cluster) by another node: background work that follows definitions
    /// kept in metadata (consumers) wakes on it.
    pub fn meta_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.backend.meta_changes()
    }

    /// Takes, or renews, this process's lease on a piece of background work (a consumer, the
    /// retention pass) for `ttl_ms`: true while no one else holds it. Work runs only where its
    /// lease is held; the holder renews well within `ttl_ms`, and another process takes over
    /// once the lease has lapsed. A local engine is one process, which holds every lease.
    pub fn hold_lease(&self, work: &str, ttl_ms: u64) -> Result<bool> {
        self.backend.hold_lease(work, ttl_ms)
    }

    /// Gives up a lease this process holds (work stopped here), so another may take it at once.
    pub fn release_lease(&self, work: &str) -> Result<()> {
        self.backend.release_lease(work)
    }

    /// Copies everything stored to `to` (which must not exist) while the engine keeps serving:
    /// the copy opens as an engine holding every entry appended before the call began.
    pub fn backup(&self, to: &Path) -> Result<BackupStats> {
        self.backend.backup(to)
    }

    /// The engine's memory by part, for `/metrics`; `None` where the engine keeps no database in
    /// this process (a cluster node's data lives in NATS).
    pub fn memory(&self) -> Option<EngineMemory> {
        self.backend.memory()
    }

    /// Compaction debt and write stalls (the local engine; a cluster node has none to report).
    pub fn health(&self) -> Option<EngineHealth> {
        self.backend.health()
    }

    /// The bytes `handle`'s stream takes on disk (the local engine).
    pub fn disk_bytes(&self, handle: &StreamHandle) -> Option<u64> {
        self.backend.disk_bytes(handle.id())
    }

    /// Removes expired entries of every stream once. Safe to call at any time.
    pub fn trim_expired(&self) -> Result<TrimStats> {
        self.backend.trim_expired()
    }
}
