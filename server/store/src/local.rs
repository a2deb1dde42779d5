//! The local backend: RocksDB for the index and small payloads, segment files for video
//! (docs/engine.md). Opens the database, keeps the live stream table, owns the commit thread.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;

use rocksdb::{DB, Direction, IteratorMode, Options, WriteOptions};
use tokio::sync::oneshot;

use crate::backend::{AmendFn, AppendWait, Backend, MetaDurability};
use crate::backup::BackupStats;
use crate::clock::Clock;
use crate::committer::{Committer, Job, PayloadPlacement};
use crate::crypto::{DataKey, MasterKey};
use crate::entry::{NewEntry, decode_header};
use crate::error::{Result, StoreError};
use crate::free_space::FreeSpace;
use crate::handle::{StreamHandle, new_handle};
use crate::keys::{self, CF_ENTRIES, CF_META, CF_PAYLOADS, CF_TIME_INDEX};
use crate::meta::StreamMeta;
use crate::payload_ref::EntryRef;
use crate::read::{HeaderItem, Position, ReadBatch};
use crate::reshard::ReshardStep;
use crate::retention::TrimStats;
use crate::segments::SegmentStore;

/// How the engine is opened.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Sync the WAL (and segment files) before acknowledging an append. Only benchmarks turn
    /// this off; without it a power loss can leave index entries naming lost segment bytes that
    /// start-up does not look for (it checks only the newest).
    pub sync_writes: bool,
    /// Payloads at least this large go to blob files, so compaction never rewrites them;
    /// smaller ones are stored inline with their entry header.
    pub min_blob_size_bytes: u64,
    /// Payloads at least this large are written once, to segment files (docs/engine.md).
    pub segment_min_bytes: u64,
    /// A shard's segment file is closed and a new one started past this size; retention deletes
    /// whole files, so this is also how much expired video may outlive its retention.
    pub segment_roll_bytes: u64,
    /// Wraps the data keys of encrypted streams; without it, encrypted streams cannot be written
    /// or read.
    pub master_key: Option<Arc<MasterKey>>,
    /// Appends are refused (`StoreError::DiskFull`) while the disk has less than this free;
    /// 0 turns the watermark off (free_space.rs).
    pub min_free_disk_bytes: u64,
    /// The block cache every column family shares (data blocks, and the tables' index blocks).
    pub block_cache_bytes: usize,
}

/// Table and blob files RocksDB keeps open (its table cache); more are reopened as read.
const MAX_OPEN_TABLE_FILES: i32 = 1024;
/// The default size of the block cache every column family shares.
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 64 << 20;

/// Measured (docs/benchmarks.md, engine appends synced one at a time): a payload in a segment
/// file costs two syncs (the file, then the WAL) where RocksDB alone costs one, which only pays
/// once the second write RocksDB would make (the blob file) is big enough: segment files were
/// 0.82 of RocksDB at 64 KiB and 1.07 at 256 KiB (1.77 at 1 MiB). Video fragments are larger.
pub const DEFAULT_SEGMENT_MIN_BYTES: u64 = 256 << 10;

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            sync_writes: true,
            min_blob_size_bytes: 4096,
            segment_min_bytes: DEFAULT_SEGMENT_MIN_BYTES,
            segment_roll_bytes: 64 << 20,
            master_key: None,
            min_free_disk_bytes: crate::free_space::DEFAULT_MIN_FREE_DISK_BYTES,
            block_cache_bytes: DEFAULT_BLOCK_CACHE_BYTES,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) db: Arc<DB>,
    pub(crate) clock: Arc<dyn Clock>,
    streams: RwLock<BTreeMap<String, StreamHandle>>,
    /// Bumped after every change to any stream's metadata (Engine::meta_changes).
    meta_changes: tokio::sync::watch::Sender<u64>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
    pub(crate) master_key: Option<Arc<MasterKey>>,
    pub(crate) segments: Arc<SegmentStore>,
}

impl Drop for Inner {
    /// Stops the commit thread and waits for it, so its handle on the database is gone before
    /// the database closes here. Without the join, a process could exit while a detached commit
    /// thread was still closing RocksDB, racing RocksDB's static destructors.
    fn drop(&mut self) {
        self.jobs.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.committer.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// The local backend. Clone it freely; all clones share one database.
#[derive(Clone)]
pub(crate) struct LocalEngine {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEngine").field("path", &self.inner.db.path()).finish()
    }
}

impl LocalEngine {
    /// Opens (or creates) an engine in `path` and restores every stream's tip from disk.
    pub fn open(path: &Path, clock: Arc<dyn Clock>, options: EngineOptions) -> Result<LocalEngine> {
        // No preallocation (rust-rocksdb has no setter for it): RocksDB reserves a blob file's
        // full size (256 MB) and a WAL's (1.1 write buffers) up front, so a flush holding 2 MB
        // failed on a disk with 34 MB free, and the free-space watermark (free_space.rs) could
        // not keep RocksDB off a full disk.
        let mut db_opts = Options::default().get_options_from_string("allow_fallocate=false")?;
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        // Each open table keeps a descriptor and its index in memory; without a bound both grow
        // with the data until retention (days of video) removes files.
        db_opts.set_max_open_files(MAX_OPEN_TABLE_FILES);
        // Flushes write payload blobs in the background; sync them as they go, so that the commit
        // thread's WAL fsync never waits behind tens of MB of someone else's dirty pages
        // (ext4 commits its journal for everyone on fsync).
        db_opts.set_bytes_per_sync(1 << 20);

        let cfs = crate::column_families::descriptors(&options)?;
        crate::format_version::check_before_open(path)?;
        let db = Arc::new(DB::open_cf_descriptors(&db_opts, path, cfs)?);
        crate::format_version::stamp(&db)?;
        let segments = Arc::new(SegmentStore::new(path.join("segments"), options.segment_roll_bytes));

        let mut streams = BTreeMap::new();
        for item in db.iterator_cf(cf(&db, CF_META), IteratorMode::From(keys::META_STREAM_PREFIX, Direction::Forward)) {
            let (key, value) = item?;
            if !key.starts_with(keys::META_STREAM_PREFIX) {
                break;
            }
            let meta: StreamMeta = serde_json::from_slice(&value).map_err(|source| StoreError::BadMetadata {
                key: String::from_utf8_lossy(&key).into_owned(),
                source,
            })?;
            for shard in 0..meta.shards.len() as u32 {
                let recovered = crate::recovery::recover_shard(&db, &segments, meta.id, shard)?;
                if recovered != Default::default() {
                    tracing::warn!(stream = %meta.name, shard, ?recovered, "segments recovered after a crash");
                }
            }
            let state = restore_stream(&db, meta)?;
            streams.insert(state.meta().name, state);
        }

        // Segment directories of streams the index does not know: a stream deleted while its
        // files could not be removed, or one created after the checkpoint a restored backup
        // holds. A new stream could be given such an id again (ids come from the checkpoint's
        // counter) and retention would then read the old files as its own.
        let known: std::collections::HashSet<u64> = streams.values().map(|s: &StreamHandle| s.meta().id).collect();
        segments.remove_unknown_streams(&known)?;
        segments.remove_backup_staging()?;
        let (sender, receiver) = mpsc::channel();
        let placement = PayloadPlacement {
            inline_below_bytes: options.min_blob_size_bytes as usize,
            segment_from_bytes: options.segment_min_bytes as usize,
            segments: segments.clone(),
        };
        let free_space = FreeSpace::new(path.to_path_buf(), options.min_free_disk_bytes);
        let committer = Committer::new(
            db.clone(),
            clock.clone(),
            options.sync_writes,
            placement,
            free_space,
            options.master_key.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("framelog-commit".into())
            .spawn(move || committer.run(receiver))
            .map_err(|_| StoreError::CommitterGone)?;
        Ok(LocalEngine {
            inner: Arc::new(Inner {
                db,
                clock,
                streams: RwLock::new(streams),
                meta_changes: tokio::sync::watch::channel(0).0,
                jobs: Mutex::new(Some(sender)),
                committer: Mutex::new(Some(thread)),
                master_key: options.master_key,
                segments,
            }),
        })
    }

    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// Creates a stream from `meta` (its `id` is assigned here). Durable before it returns.
    pub fn create_stream(&self, mut meta: StreamMeta) -> Result<StreamHandle> {
        let mut streams = self.inner.streams.write().unwrap_or_else(|e| e.into_inner());
        if streams.contains_key(&meta.name) {
            return Err(StoreError::StreamExists(meta.name));
        }
        let db = &self.inner.db;
        let meta_cf = cf(db, CF_META);
        let next_id = match db.get_cf(meta_cf, keys::META_NEXT_STREAM_ID)? {
            Some(bytes) if bytes.len() == 8 => u64::from_be_bytes(bytes[..8].try_into().unwrap_or([0; 8])),
            _ => 1,
        };
        meta.id = next_id;
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(meta_cf, keys::META_NEXT_STREAM_ID, (next_id + 1).to_be_bytes());
        batch.put_cf(meta_cf, keys::stream_meta_key(&meta.name), meta_json(&meta));
        db.write_opt(batch, &synced())?;
        let handle = new_handle(meta);
        streams.insert(handle.meta().name, handle.clone());
        self.inner.meta_changes.send_modify(|n| *n += 1);
        Ok(handle)
    }

    pub fn stream(&self, name: &str) -> Result<StreamHandle> {
        self.inner
            .streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::StreamNotFound(name.to_string()))
    }

    /// All streams, ordered by name.
    pub fn streams(&self) -> Vec<StreamHandle> {
        self.inner.streams.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Applies `change` to a stream's metadata and stores it; returns the new metadata.
    /// `Durability::Process` writes reach the WAL without an fsync (Engine::update_meta_unsynced).
    pub fn write_meta(
        &self,
        handle: &StreamHandle,
        change: &mut dyn FnMut(&mut StreamMeta),
        durability: MetaDurability,
    ) -> Result<StreamMeta> {
        let options = match durability {
            MetaDurability::Synced => synced(),
            MetaDurability::Process => WriteOptions::default(),
        };
        let mut meta = handle.0.meta.write().unwrap_or_else(|e| e.into_inner());
        if handle.0.deleted.load(Ordering::Acquire) {
            return Err(StoreError::StreamDeleted(meta.name.clone()));
        }
        let mut next = meta.clone();
        change(&mut next);
        let db = &self.inner.db;
        db.put_cf_opt(cf(db, CF_META), keys::stream_meta_key(&next.name), meta_json(&next), &options)?;
        *meta = next.clone();
        self.inner.meta_changes.send_modify(|n| *n += 1);
        Ok(next)
    }

    /// A new data key wrapped by the master key (hex), for `StreamEncryption::wrapped_key_hex`.
    pub fn new_wrapped_data_key_hex(&self) -> Result<String> {
        crate::crypto::new_wrapped_data_key_hex(self.inner.master_key.as_deref())
    }

    /// The key that opens the stream's sealed payloads.
    pub(crate) fn data_key(&self, meta: &StreamMeta) -> Result<DataKey> {
        crate::crypto::stream_data_key(self.inner.master_key.as_deref(), meta)
    }

    /// Deletes a stream and all its entries. Runs on the commit thread so no append can land after it.
    pub fn delete_stream(&self, name: &str) -> Result<()> {
        let handle = self.stream(name)?;
        let (reply, done) = oneshot::channel();
        self.send(Job::Delete { stream: handle.0.clone(), reply })?;
        done.blocking_recv().map_err(|_| StoreError::CommitterGone)??;
        self.inner.streams.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        self.inner.meta_changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Applies reshard steps on the commit thread, after the appends queued before it: their
    /// entries land before the parents close, and every later append to a parent is refused.
    pub fn reshard(&self, handle: &StreamHandle, steps: Vec<ReshardStep>) -> Result<StreamMeta> {
        let (reply, done) = oneshot::channel();
        self.send(Job::Reshard { stream: handle.0.clone(), steps, reply })?;
        let meta = done.blocking_recv().map_err(|_| StoreError::CommitterGone)??;
        self.inner.meta_changes.send_modify(|n| *n += 1);
        Ok(meta)
    }

    /// Rewrites the attributes of a stored entry durably (metadata written back to a fragment).
    /// `change` gets the current attributes and returns new ones, or `None` for no change.
    /// Returns false when the entry no longer exists or nothing changed.
    pub fn amend_attrs(&self, handle: &StreamHandle, shard: u32, seq: u64, change: AmendFn) -> Result<bool> {
        handle.shard(shard)?;
        if seq < self.resolve(handle, shard, crate::Position::TrimHorizon)? {
            return Ok(false);
        }
        let (reply, done) = oneshot::channel();
        let mut change = change;
        let once = Box::new(move |attrs: &[u8]| change(attrs));
        self.send(Job::Amend { stream: handle.0.clone(), shard, seq, change: once, reply })?;
        done.blocking_recv().map_err(|_| StoreError::CommitterGone)?
    }

    /// Appends entries to a stream; resolves once they are durable, in the order given.
    pub fn append(&self, handle: &StreamHandle, entries: Vec<NewEntry>) -> Result<AppendWait> {
        for entry in &entries {
            handle.shard(entry.shard)?;
        }
        let (reply, done) = oneshot::channel();
        self.send(Job::Append { stream: handle.0.clone(), entries, reply })?;
        Ok(AppendWait::new(done))
    }

    fn send(&self, job: Job) -> Result<()> {
        let jobs = self.inner.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.as_ref().ok_or(StoreError::CommitterGone)?.send(job).map_err(|_| StoreError::CommitterGone)
    }

    /// Stops the commit thread after the appends already queued, then flushes memtables.
    pub fn close(&self) -> Result<()> {
        self.inner.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = self.inner.committer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
        for name in [CF_META, CF_ENTRIES, CF_PAYLOADS, CF_TIME_INDEX] {
            self.inner.db.flush_cf(cf(&self.inner.db, name))?;
        }
        Ok(())
    }
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> &'a rocksdb::ColumnFamily {
    // The four column families are created at open; a missing one is a programming error.
    db.cf_handle(name).unwrap_or_else(|| panic!("column family {name} is opened with the database"))
}

pub(crate) fn synced() -> rocksdb::WriteOptions {
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    opts
}

pub(crate) fn meta_json(meta: &StreamMeta) -> Vec<u8> {
    // Serializing plain strings, numbers and maps cannot fail.
    serde_json::to_vec(meta).unwrap_or_default()
}

/// Rebuilds a shard's tip from its newest entry, so restarts continue the sequence.
fn restore_stream(db: &DB, meta: StreamMeta) -> Result<StreamHandle> {
    let id = meta.id;
    let handle = new_handle(meta);
    let shards = handle.0.shards.read().unwrap_or_else(|e| e.into_inner()).clone();
    for (index, shard) in shards.iter().enumerate() {
        let upper = keys::entry_key(id, index as u32, u64::MAX);
        let mut iter = db.raw_iterator_cf(cf(db, CF_ENTRIES));
        iter.seek_for_prev(upper);
        if let (Some(key), Some(value)) = (iter.key(), iter.value())
            && key[..12] == upper[..12]
        {
            let seq = keys::entry_key_seq(key).unwrap_or(0);
            let header = decode_header(key, value)?;
            shard.next_seq.store(seq + 1, Ordering::Release);
            shard.last_arrival_ms.store(header.arrival_ms, Ordering::Release);
            shard.last_indexed_arrival_ms.store(header.arrival_ms, Ordering::Release);
            shard.publish();
        }
        iter.status()?;
        // A closed shard ends at `end_seq`, which may lie past its last entry (an empty gap left
        // by a failed group commit): readers must reach it.
        let closed = handle.0.meta.read().unwrap_or_else(|e| e.into_inner()).shards.get(index).and_then(|s| s.closed);
        if let Some(closed) = closed
            && closed.end_seq > shard.next_seq.load(Ordering::Acquire)
        {
            shard.next_seq.store(closed.end_seq, Ordering::Release);
            shard.publish();
        }
        // After retention removed every entry, the trim floor keeps sequence numbers increasing.
        if let Some(floor) = db.get_cf(cf(db, CF_META), keys::trim_floor_key(id, index as u32))?
            && let Ok(bytes) = <[u8; 8]>::try_from(floor.as_slice())
        {
            let floor = u64::from_be_bytes(bytes);
            if floor > shard.next_seq.load(Ordering::Acquire) {
                shard.next_seq.store(floor, Ordering::Release);
                shard.publish();
            }
        }
    }
    Ok(handle)
}

impl Backend for LocalEngine {
    fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }
    fn create_stream(&self, meta: StreamMeta) -> Result<StreamHandle> {
        LocalEngine::create_stream(self, meta)
    }
    fn stream(&self, name: &str) -> Result<StreamHandle> {
        LocalEngine::stream(self, name)
    }
    fn streams(&self) -> Vec<StreamHandle> {
        LocalEngine::streams(self)
    }
    fn write_meta(
        &self,
        handle: &StreamHandle,
        change: &mut dyn FnMut(&mut StreamMeta),
        durability: MetaDurability,
    ) -> Result<StreamMeta> {
        LocalEngine::write_meta(self, handle, change, durability)
    }
    fn new_wrapped_data_key_hex(&self) -> Result<String> {
        LocalEngine::new_wrapped_data_key_hex(self)
    }
    fn delete_stream(&self, name: &str) -> Result<()> {
        LocalEngine::delete_stream(self, name)
    }
    fn reshard(&self, handle: &StreamHandle, steps: Vec<ReshardStep>) -> Result<StreamMeta> {
        LocalEngine::reshard(self, handle, steps)
    }
    fn can_reshard(&self) -> bool {
        true
    }
    fn amend_attrs(&self, handle: &StreamHandle, shard: u32, seq: u64, change: AmendFn) -> Result<bool> {
        LocalEngine::amend_attrs(self, handle, shard, seq, change)
    }
    fn append(&self, handle: &StreamHandle, entries: Vec<NewEntry>) -> Result<AppendWait> {
        LocalEngine::append(self, handle, entries)
    }
    fn close(&self) -> Result<()> {
        LocalEngine::close(self)
    }
    fn resolve(&self, handle: &StreamHandle, shard: u32, position: Position) -> Result<u64> {
        LocalEngine::resolve(self, handle, shard, position)
    }
    fn read(
        &self,
        handle: &StreamHandle,
        shard: u32,
        from_seq: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch> {
        LocalEngine::read(self, handle, shard, from_seq, max_count, max_bytes)
    }
    fn list_headers(
        &self,
        handle: &StreamHandle,
        shard: u32,
        from_seq: u64,
        to_seq: u64,
        max_count: usize,
    ) -> Result<Vec<HeaderItem>> {
        LocalEngine::list_headers(self, handle, shard, from_seq, to_seq, max_count)
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
        LocalEngine::producer_range(self, handle, shard, start_ms, end_ms, after, max_count)
    }
    fn entry_ref(&self, handle: &StreamHandle, shard: u32, from_seq: u64) -> Result<(Option<EntryRef>, u64)> {
        LocalEngine::entry_ref(self, handle, shard, from_seq)
    }
    fn trim_expired(&self) -> Result<TrimStats> {
        LocalEngine::trim_expired(self)
    }
    fn meta_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.meta_changes.subscribe()
    }
    /// One process owns the database, so it owns all its work.
    fn hold_lease(&self, _work: &str, _ttl_ms: u64) -> Result<bool> {
        Ok(true)
    }
    fn release_lease(&self, _work: &str) -> Result<()> {
        Ok(())
    }
    fn backup(&self, to: &Path) -> Result<BackupStats> {
        crate::backup::backup_local(&self.inner.db, &self.inner.segments, to)
    }
    fn memory(&self) -> Option<crate::memory::EngineMemory> {
        Some(crate::memory::engine_memory(&self.inner.db))
    }
    fn health(&self) -> Option<crate::health::EngineHealth> {
        Some(crate::health::engine_health(&self.inner.db))
    }
    fn disk_bytes(&self, stream_id: u64) -> Option<u64> {
        Some(crate::health::stream_disk_bytes(&self.inner.db, &self.inner.segments, stream_id))
    }
}
