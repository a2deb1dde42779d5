//! The commit thread: the single writer. It assigns sequence numbers and arrival times, merges
//! every append waiting in its queue into one RocksDB write batch, syncs the WAL once for all of
//! them (group commit), and only then publishes the new tips and answers the writers.
//!
//! One writer makes sequence assignment trivially ordered, and batching makes the cost of an
//! fsync shared by every writer that arrived while the previous sync ran.

use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::crypto::{DataKey, MasterKey};
use crate::entry::{Appended, NewEntry, Storage, encode_header};
use crate::error::{Result, StoreError};
use crate::free_space::FreeSpace;
use crate::handle::{ShardState, StreamState};
use crate::keys::{self, CF_ENTRIES, CF_META, CF_PAYLOADS, CF_TIME_INDEX, TimeKind};
use crate::local::cf;
use crate::meta::StreamMeta;
use crate::reshard::ReshardStep;
use crate::segments::SegmentStore;

/// Rewrites an entry's attributes; `None` leaves them as they are.
pub(crate) type AttrsChange = Box<dyn FnOnce(&[u8]) -> Option<Vec<u8>> + Send>;

/// Work for the commit thread.
pub(crate) enum Job {
    Append {
        stream: Arc<StreamState>,
        entries: Vec<NewEntry>,
        reply: oneshot::Sender<Result<Vec<Appended>>>,
    },
    Delete {
        stream: Arc<StreamState>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Runs on the commit thread, so each append lands either wholly before the close of the
    /// shards it names or not at all.
    Reshard {
        stream: Arc<StreamState>,
        steps: Vec<ReshardStep>,
        reply: oneshot::Sender<Result<StreamMeta>>,
    },
    /// Runs on the commit thread so that it never races an append's or a delete's write.
    Amend {
        stream: Arc<StreamState>,
        shard: u32,
        seq: u64,
        change: AttrsChange,
        reply: oneshot::Sender<Result<bool>>,
    },
}

/// Upper bounds for one group commit, so one sync never waits on an unbounded batch.
const MAX_GROUP_JOBS: usize = 4096;
const MAX_GROUP_BYTES: usize = 64 << 20;

pub(crate) struct Committer {
    db: Arc<DB>,
    clock: Arc<dyn Clock>,
    write_options: WriteOptions,
    /// Payloads shorter than this are stored inline with their header.
    inline_below_bytes: usize,
    /// Payloads at least this large go to segment files.
    segment_from_bytes: usize,
    segments: Arc<SegmentStore>,
    sync: bool,
    free_space: FreeSpace,
    master_key: Option<Arc<MasterKey>>,
    /// Compactions of deleted streams' ranges, joined before this thread ends (and with it,
    /// before the database closes).
    compactions: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// How the commit thread stores payloads.
pub(crate) struct PayloadPlacement {
    pub(crate) inline_below_bytes: usize,
    pub(crate) segment_from_bytes: usize,
    pub(crate) segments: Arc<SegmentStore>,
}

/// Counters of one shard before a batch, restored if the batch fails to write.
struct Undo {
    shard: Arc<ShardState>,
    next_seq: u64,
    last_arrival_ms: u64,
    last_indexed_arrival_ms: u64,
}

/// The state of each entry's shard, or why the append cannot land: a shard that does not exist
/// or that a reshard closed fails the whole append, before any of it is written.
fn open_shards(stream: &StreamState, entries: &[NewEntry]) -> Result<Vec<Arc<ShardState>>> {
    let shards = stream.shards.read().unwrap_or_else(|e| e.into_inner());
    let name = || stream.meta.read().unwrap_or_else(|e| e.into_inner()).name.clone();
    entries
        .iter()
        .map(|entry| match shards.get(entry.shard as usize) {
            None => Err(StoreError::ShardNotFound { stream: name(), shard: entry.shard }),
            Some(shard) if shard.closed.load(Ordering::Acquire) => {
                Err(StoreError::ShardClosed { stream: name(), shard: entry.shard })
            }
            Some(shard) => Ok(shard.clone()),
        })
        .collect()
}

impl Committer {
    pub(crate) fn new(
        db: Arc<DB>,
        clock: Arc<dyn Clock>,
        sync: bool,
        placement: PayloadPlacement,
        free_space: FreeSpace,
        master_key: Option<Arc<MasterKey>>,
    ) -> Self {
        let mut write_options = WriteOptions::default();
        write_options.set_sync(sync);
        let PayloadPlacement { inline_below_bytes, segment_from_bytes, segments } = placement;
        Self {
            db,
            clock,
            write_options,
            inline_below_bytes,
            segment_from_bytes,
            segments,
            sync,
            free_space,
            master_key,
            compactions: Default::default(),
        }
    }

    /// The data key new entries of this stream are sealed with, if its encryption is on.
    fn sealing_key(&self, meta: &StreamMeta) -> Result<Option<DataKey>> {
        let Some(encryption) = meta.encryption.as_ref().filter(|e| e.enabled) else { return Ok(None) };
        let master = self.master_key.as_ref().ok_or_else(|| StoreError::NoMasterKey(meta.name.clone()))?;
        let wrapped =
            hex::decode(&encryption.wrapped_key_hex).map_err(|_| StoreError::Crypto("wrapped key is not hex"))?;
        master.unwrap_data_key(&wrapped).map(Some)
    }

    pub(crate) fn run(self, jobs: mpsc::Receiver<Job>) {
        while let Ok(first) = jobs.recv() {
            let mut appends = Vec::new();
            let mut bytes = 0usize;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Delete { stream, reply } => {
                        // Deletes are rare: commit what is queued before it, then delete alone.
                        self.commit(std::mem::take(&mut appends));
                        let _ = reply.send(self.delete(&stream));
                    }
                    Job::Reshard { stream, steps, reply } => {
                        self.commit(std::mem::take(&mut appends));
                        let _ = reply.send(self.reshard(&stream, &steps));
                    }
                    Job::Amend { stream, shard, seq, change, reply } => {
                        self.commit(std::mem::take(&mut appends));
                        let _ = reply.send(self.amend(&stream, shard, seq, change));
                    }
                    Job::Append { stream, entries, reply } => {
                        bytes += entries.iter().map(|e| e.payload.len() + e.attrs.len()).sum::<usize>();
                        appends.push((stream, entries, reply));
                    }
                }
                if appends.len() < MAX_GROUP_JOBS && bytes < MAX_GROUP_BYTES {
                    next = jobs.try_recv().ok();
                }
            }
            self.commit(appends);
        }
        for compaction in self.compactions.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = compaction.join();
        }
    }

    #[allow(clippy::type_complexity)]
    fn commit(&self, appends: Vec<(Arc<StreamState>, Vec<NewEntry>, oneshot::Sender<Result<Vec<Appended>>>)>) {
        if appends.is_empty() {
            return;
        }
        let incoming_bytes: usize =
            appends.iter().flat_map(|(_, entries, _)| entries).map(|e| e.payload.len() + e.attrs.len()).sum();
        if let Err(error) = self.free_space.admit(&self.db, incoming_bytes as u64) {
            for (_, _, reply) in appends {
                let _ = reply.send(Err(clone_disk_full(&error)));
            }
            return;
        }
        let now_ms = self.clock.now_ms();
        let mut batch = WriteBatch::default();
        let mut undo: Vec<Undo> = Vec::new();
        let mut results = Vec::with_capacity(appends.len());
        let mut sealing_failed = false;
        let mut segment_failure: Option<StoreError> = None;
        let mut wrote_segments = false;
        for (stream, entries, _) in &appends {
            if stream.deleted.load(Ordering::Acquire) {
                let name = stream.meta.read().unwrap_or_else(|e| e.into_inner()).name.clone();
                results.push(Err(StoreError::StreamDeleted(name)));
                continue;
            }
            let (stream_id, sealing) = {
                let meta = stream.meta.read().unwrap_or_else(|e| e.into_inner());
                (meta.id, self.sealing_key(&meta))
            };
            let sealing = match sealing {
                Ok(sealing) => sealing,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            let shards = match open_shards(stream, entries) {
                Ok(shards) => shards,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            let mut landed = Vec::with_capacity(entries.len());
            for (entry, shard) in entries.iter().zip(shards) {
                if !undo.iter().any(|u| Arc::ptr_eq(&u.shard, &shard)) {
                    undo.push(Undo {
                        shard: shard.clone(),
                        next_seq: shard.next_seq.load(Ordering::Acquire),
                        last_arrival_ms: shard.last_arrival_ms.load(Ordering::Acquire),
                        last_indexed_arrival_ms: shard.last_indexed_arrival_ms.load(Ordering::Acquire),
                    });
                }
                let seq = shard.next_seq.load(Ordering::Acquire);
                // Arrival times never go backwards within a shard, so the log is also ordered by time.
                let arrival_ms = now_ms.max(shard.last_arrival_ms.load(Ordering::Acquire));
                let key = keys::entry_key(stream_id, entry.shard, seq);
                let sealed = match &sealing {
                    Some(data_key) => {
                        let mut sealed = entry.payload.clone();
                        data_key.seal(stream_id, entry.shard, seq, &mut sealed).map(|()| Some(sealed))
                    }
                    None => Ok(None),
                };
                // Never store plaintext for an encrypted stream: a sealing failure fails the batch.
                let sealed = sealed.unwrap_or_else(|_| {
                    sealing_failed = true;
                    None
                });
                let stored: &[u8] = sealed.as_deref().unwrap_or(&entry.payload);
                // A payload that failed to seal fails the batch and must not reach a file.
                let to_segment = stored.len() >= self.segment_from_bytes;
                // Attempted counts as written: a failed write may have left part of it.
                wrote_segments |= to_segment;
                let segment = if to_segment && !sealing_failed && segment_failure.is_none() {
                    self.segments
                        .append(stream_id, entry.shard, seq, stored)
                        .map_err(|error| segment_failure.get_or_insert(error))
                        .ok()
                } else {
                    None
                };
                let inline = segment.is_none() && stored.len() < self.inline_below_bytes;
                let storage = Storage { inline, encrypted: sealed.is_some(), segment };
                let header = encode_header(arrival_ms, entry.producer_ts_ms, &entry.attrs, stored, storage);
                batch.put_cf(cf(&self.db, CF_ENTRIES), key, header);
                if !inline && segment.is_none() {
                    batch.put_cf(cf(&self.db, CF_PAYLOADS), key, stored);
                }
                if seq == 0 || shard.last_indexed_arrival_ms.load(Ordering::Acquire) != arrival_ms {
                    let time_key = keys::time_key(stream_id, entry.shard, TimeKind::Arrival, arrival_ms, seq);
                    batch.put_cf(cf(&self.db, CF_TIME_INDEX), time_key, []);
                    shard.last_indexed_arrival_ms.store(arrival_ms, Ordering::Release);
                }
                if let Some(producer_ms) = entry.producer_ts_ms {
                    let time_key = keys::time_key(stream_id, entry.shard, TimeKind::Producer, producer_ms, seq);
                    batch.put_cf(cf(&self.db, CF_TIME_INDEX), time_key, []);
                }
                shard.next_seq.store(seq + 1, Ordering::Release);
                shard.last_arrival_ms.store(arrival_ms, Ordering::Release);
                landed.push(Appended { shard: entry.shard, seq, arrival_ms });
            }
            results.push(Ok(landed));
        }

        // Payloads in segment files are durable before the index that names them is written.
        let written = if sealing_failed {
            Err(StoreError::Crypto("sealing a payload failed"))
        } else if let Some(error) = segment_failure {
            Err(error)
        } else if self.sync {
            self.segments.sync().and_then(|()| self.db.write_opt(batch, &self.write_options).map_err(StoreError::Rocks))
        } else {
            self.db.write_opt(batch, &self.write_options).map_err(StoreError::Rocks)
        };
        match written {
            Ok(()) => {
                self.segments.committed();
                for u in &undo {
                    u.shard.publish();
                }
                for ((_, _, reply), result) in appends.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, "group commit failed; no entry of the batch was acknowledged");
                self.segments.abandon_open();
                let error_again = |error: &StoreError| match error {
                    StoreError::Rocks(rocks) => StoreError::Rocks(rocks.clone()),
                    StoreError::Io { what, source } => {
                        StoreError::Io { what, source: std::io::Error::new(source.kind(), source.to_string()) }
                    }
                    _ => StoreError::Crypto("sealing a payload failed"),
                };
                for u in &undo {
                    let shard = &u.shard;
                    // Sequence numbers whose sealed payloads may have reached a segment file are
                    // not assigned again: an encrypted payload's nonce is its shard and sequence
                    // number, and two plaintexts under one nonce would leak. The gap is harmless:
                    // readers walk the keys there are.
                    if !wrote_segments {
                        shard.next_seq.store(u.next_seq, Ordering::Release);
                    }
                    shard.last_arrival_ms.store(u.last_arrival_ms, Ordering::Release);
                    shard.last_indexed_arrival_ms.store(u.last_indexed_arrival_ms, Ordering::Release);
                }
                for (_, _, reply) in appends {
                    let _ = reply.send(Err(error_again(&error)));
                }
            }
        }
    }

    /// Applies reshard steps: the tips it closes parents at are final, as every append queued
    /// before was committed and this thread is the only writer.
    fn reshard(&self, stream: &StreamState, steps: &[ReshardStep]) -> Result<StreamMeta> {
        let mut meta = stream.meta.write().unwrap_or_else(|e| e.into_inner());
        if stream.deleted.load(Ordering::Acquire) {
            return Err(StoreError::StreamDeleted(meta.name.clone()));
        }
        let mut next = meta.clone();
        let tip = |index: u32| stream.shard(index).map_or(0, |s| s.next_seq.load(Ordering::Acquire));
        crate::reshard::apply(&mut next, steps, self.clock.now_ms(), tip)?;
        let key = keys::stream_meta_key(&next.name);
        self.db.put_cf_opt(cf(&self.db, CF_META), key, crate::local::meta_json(&next), &crate::local::synced())?;
        stream.follow_reshard(&next);
        // A closed shard's log ends at `end_seq`. A failed group commit may have left
        // `next_seq` above the published tip (its numbers are never reused); publishing the tip
        // here lets readers reach the end through that empty gap.
        for shard in next.shards.iter().filter(|s| !s.is_open()) {
            if let Some(state) = stream.shard(shard.index) {
                state.publish();
            }
        }
        *meta = next.clone();
        Ok(next)
    }

    /// Rewrites one entry's header with changed attributes (same arrival, producer time and
    /// payload). False when the entry is gone (trimmed or never written) or nothing changed.
    fn amend(&self, stream: &StreamState, shard: u32, seq: u64, change: AttrsChange) -> Result<bool> {
        if stream.deleted.load(Ordering::Acquire) {
            return Ok(false);
        }
        let stream_id = stream.meta.read().unwrap_or_else(|e| e.into_inner()).id;
        let key = keys::entry_key(stream_id, shard, seq);
        let Some(bytes) = self.db.get_cf(cf(&self.db, CF_ENTRIES), key)? else { return Ok(false) };
        let header = crate::entry::decode_header(&key, &bytes)?;
        let Some(attrs) = change(&header.attrs) else { return Ok(false) };
        let (payload, inline) = match &header.inline_payload {
            Some(payload) => (payload.as_slice(), true),
            None => (&[][..], false),
        };
        let storage = Storage { inline, encrypted: header.encrypted, segment: header.segment };
        let mut rewritten = encode_header(header.arrival_ms, header.producer_ts_ms, &attrs, payload, storage);
        if !inline {
            // encode_header wrote the length of the (empty) slice; keep the stored payload's.
            let place_bytes = if header.segment.is_some() { 16 } else { 0 };
            let at = rewritten.len() - 8 - place_bytes;
            rewritten[at..at + 8].copy_from_slice(&header.stored_len().to_be_bytes());
        }
        self.db.put_cf_opt(cf(&self.db, CF_ENTRIES), key, rewritten, &crate::local::synced())?;
        Ok(true)
    }

    fn delete(&self, stream: &StreamState) -> Result<()> {
        let meta = stream.meta.read().unwrap_or_else(|e| e.into_inner()).clone();
        let start = meta.id.to_be_bytes();
        let end = keys::stream_end_key(meta.id);
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf(&self.db, CF_META), keys::stream_meta_key(&meta.name));
        for shard in 0..meta.shards.len() as u32 {
            batch.delete_cf(cf(&self.db, CF_META), keys::trim_floor_key(meta.id, shard));
        }
        for name in [CF_ENTRIES, CF_PAYLOADS, CF_TIME_INDEX] {
            batch.delete_range_cf(cf(&self.db, name), start, end);
        }
        self.db.write_opt(batch, &crate::local::synced())?;
        stream.deleted.store(true, Ordering::Release);
        // The index no longer names them: a failure here leaves only unreachable files.
        if let Err(error) = self.segments.delete_stream(meta.id) {
            tracing::warn!(stream = %meta.name, %error, "could not delete a deleted stream's segments");
        }
        let mut compactions = self.compactions.lock().unwrap_or_else(|e| e.into_inner());
        compactions.retain(|c| !c.is_finished());
        compactions.extend(compact_away(self.db.clone(), start.to_vec(), end.to_vec()));
        Ok(())
    }
}

/// The watermark's refusal for each append of a refused group (StoreError is not Clone: it can
/// hold an io::Error).
fn clone_disk_full(error: &StoreError) -> StoreError {
    match error {
        StoreError::DiskFull { available_bytes, min_free_bytes } => {
            StoreError::DiskFull { available_bytes: *available_bytes, min_free_bytes: *min_free_bytes }
        }
        StoreError::Io { what, source } => {
            StoreError::Io { what, source: std::io::Error::new(source.kind(), source.to_string()) }
        }
        _ => StoreError::Unsupported("an append after a failed free-space check"),
    }
}

/// Compacts a deleted stream's key range in the background, so that its space (its SST files,
/// and blob files no other stream's entries refer to) comes back now rather than whenever
/// compaction would reach it: on a full disk, that is what lets writes resume.
fn compact_away(db: Arc<DB>, start: Vec<u8>, end: Vec<u8>) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new().name("framelog-compact".into()).spawn(move || {
        for name in [CF_ENTRIES, CF_PAYLOADS, CF_TIME_INDEX] {
            db.compact_range_cf(cf(&db, name), Some(&start), Some(&end));
        }
    });
    spawned.map_err(|error| tracing::warn!(%error, "could not start compacting a deleted stream's range")).ok()
}
