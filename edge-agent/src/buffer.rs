//! The durable local buffer: one file per fragment, bounded in bytes across all streams.
//!
//! Layout under `buffer_dir`:
//! - `agent-id`: this agent's identity (random, made once), part of every fragment identity;
//! - `<stream>/headers/<id>.mkvh`: the MKV stream headers (EBML, Segment, Info, Tracks) fragments
//!   refer to, written once per codec configuration;
//! - `<stream>/fragments/<seq>_<producer ms>_<duration ms>_<header id>.frag`: a fragment's Tags
//!   (with its identity, `FRAMELOG_FRAGMENT_ID = <agent id>/<stream>/<seq>`) and Cluster, exactly
//!   the bytes PutMedia sends; `.sent` instead of `.frag` once the server has PERSISTED it (when
//!   uploaded fragments are kept).
//!
//! Durability: a fragment is written to `.tmp`, fsynced, renamed into place and the directory is
//! fsynced; only then does it count as recorded. The file name is the index, so a crash leaves
//! either a whole fragment or a `.tmp` that start-up deletes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::config::StrategyOnFull;
use crate::metrics::StreamMetrics;

/// Bytes buffered by all streams, against the configured cap.
#[derive(Debug)]
pub struct Budget {
    pub max_bytes: u64,
    used_bytes: AtomicU64,
}

impl Budget {
    pub fn new(max_bytes: u64) -> Arc<Budget> {
        Arc::new(Budget { max_bytes, used_bytes: AtomicU64::new(0) })
    }

    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Relaxed)
    }
}

/// One buffered fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub producer_ms: u64,
    pub duration_ms: u64,
    pub header_id: u64,
    pub size_bytes: u64,
    pub uploaded: bool,
}

impl Entry {
    fn file_name(&self) -> String {
        let suffix = if self.uploaded { "sent" } else { "frag" };
        format!("{:020}_{}_{}_{:016x}.{suffix}", self.seq, self.producer_ms, self.duration_ms, self.header_id)
    }

    fn parse(name: &str) -> Option<Entry> {
        let (stem, suffix) = name.rsplit_once('.')?;
        let uploaded = match suffix {
            "frag" => false,
            "sent" => true,
            _ => return None,
        };
        let mut parts = stem.split('_');
        let seq = parts.next()?.parse().ok()?;
        let producer_ms = parts.next()?.parse().ok()?;
        let duration_ms = parts.next()?.parse().ok()?;
        let header_id = u64::from_str_radix(parts.next()?, 16).ok()?;
        Some(Entry { seq, producer_ms, duration_ms, header_id, size_bytes: 0, uploaded })
    }
}

/// What became of a recorded fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Stored {
        seq: u64,
    },
    /// `deny_new_media` with a full buffer: the fragment was dropped.
    Refused,
}

/// One stream's buffer.
#[derive(Debug)]
pub struct StreamBuffer {
    dir: PathBuf,
    identity_prefix: String,
    strategy: StrategyOnFull,
    budget: Arc<Budget>,
    entries: Mutex<BTreeMap<u64, Entry>>,
    next_seq: AtomicU64,
    pub metrics: Arc<StreamMetrics>,
    /// The next sequence number, published whenever a fragment is recorded (wakes the uploader).
    pub recorded: tokio::sync::watch::Sender<u64>,
}

/// The agent's identity, made on first start.
pub fn agent_id(buffer_dir: &Path) -> anyhow::Result<String> {
    fs::create_dir_all(buffer_dir).with_context(|| format!("creating {}", buffer_dir.display()))?;
    let path = buffer_dir.join("agent-id");
    if let Ok(id) = fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let id = format!("{:016x}", rand::random::<u64>());
    write_durably(&path, id.as_bytes())?;
    Ok(id)
}

/// Writes `bytes` to `path` so that after a crash the file is either absent or whole.
fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn entries_len(entries: &Mutex<BTreeMap<u64, Entry>>) -> usize {
    entries.lock().map(|e| e.len()).unwrap_or(0)
}

/// Whether writing failed for want of space (ENOSPC, or a quota's EDQUOT).
fn is_disk_full(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded))
}

/// In a stream's directory: the next sequence number, written before the newest fragment leaves
/// the buffer, so that a restart with nothing buffered does not number new fragments from 0
/// again. Reused numbers would give new recordings the identities of fragments already stored.
const NEXT_SEQ_FILE: &str = "next-seq";

/// The next sequence number a stream's directory says is free: past every fragment buffered or
/// rejected, and past what `NEXT_SEQ_FILE` recorded.
fn free_seq(dir: &Path, buffered: &BTreeMap<u64, Entry>) -> anyhow::Result<u64> {
    let after_buffered = buffered.keys().next_back().map_or(0, |seq| seq + 1);
    let written = fs::read_to_string(dir.join(NEXT_SEQ_FILE)).ok().and_then(|text| text.trim().parse().ok());
    let mut after_rejected = 0;
    if let Ok(items) = fs::read_dir(dir.join("rejected")) {
        for item in items {
            if let Some(entry) = Entry::parse(&item?.file_name().to_string_lossy()) {
                after_rejected = after_rejected.max(entry.seq + 1);
            }
        }
    }
    Ok(after_buffered.max(written.unwrap_or(0)).max(after_rejected))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all().with_context(|| format!("syncing {}", dir.display()))
}

impl StreamBuffer {
    /// Opens (or creates) a stream's buffer, recovering what a previous run left.
    pub fn open(
        buffer_dir: &Path,
        agent_id: &str,
        stream: &str,
        strategy: StrategyOnFull,
        budget: Arc<Budget>,
    ) -> anyhow::Result<StreamBuffer> {
        let dir = buffer_dir.join(stream);
        fs::create_dir_all(dir.join("headers"))?;
        fs::create_dir_all(dir.join("fragments"))?;
        let mut entries = BTreeMap::new();
        for item in fs::read_dir(dir.join("fragments"))? {
            let item = item?;
            let name = item.file_name().to_string_lossy().to_string();
            if name.ends_with(".tmp") {
                // A fragment that was being written when the agent stopped: never recorded.
                fs::remove_file(item.path())?;
                continue;
            }
            if let Some(mut entry) = Entry::parse(&name) {
                entry.size_bytes = item.metadata()?.len();
                entries.insert(entry.seq, entry);
            }
        }
        let used: u64 = entries.values().map(|e| e.size_bytes).sum();
        budget.used_bytes.fetch_add(used, Ordering::Relaxed);
        let next_seq = free_seq(&dir, &entries)?;
        let metrics = Arc::new(StreamMetrics::default());
        let buffer = StreamBuffer {
            dir,
            identity_prefix: format!("{agent_id}/{stream}/"),
            strategy,
            budget,
            entries: Mutex::new(entries),
            next_seq: AtomicU64::new(next_seq),
            metrics,
            recorded: tokio::sync::watch::Sender::new(next_seq),
        };
        buffer.refresh_gauges();
        Ok(buffer)
    }

    /// The identity the fragment with sequence number `seq` carries.
    pub fn fragment_id(&self, seq: u64) -> String {
        format!("{}{seq}", self.identity_prefix)
    }

    /// The sequence number the next recorded fragment will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    fn header_path(&self, header_id: u64) -> PathBuf {
        self.dir.join("headers").join(format!("{header_id:016x}.mkvh"))
    }

    fn fragment_path(&self, entry: &Entry) -> PathBuf {
        self.dir.join("fragments").join(entry.file_name())
    }

    /// Stores a stream header once; its id is a hash of its bytes.
    pub fn store_header(&self, header: &[u8]) -> anyhow::Result<u64> {
        let id =
            header.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let path = self.header_path(id);
        if !path.exists() {
            write_durably(&path, header)?;
        }
        Ok(id)
    }

    pub fn header(&self, header_id: u64) -> anyhow::Result<Vec<u8>> {
        let path = self.header_path(header_id);
        fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Durably records a fragment whose bytes `make` builds from its identity; makes room by the
    /// configured strategy first.
    pub fn record(
        &self,
        header_id: u64,
        producer_ms: u64,
        duration_ms: u64,
        make: impl FnOnce(&str) -> Vec<u8>,
    ) -> anyhow::Result<Recorded> {
        let seq = self.next_seq.load(Ordering::Relaxed);
        let bytes = make(&self.fragment_id(seq));
        if !self.make_room(bytes.len() as u64)? {
            self.metrics.refused_fragments.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(stream = %self.dir.display(), "buffer full (deny_new_media): a new fragment was dropped");
            return Ok(Recorded::Refused);
        }
        let entry = Entry { seq, producer_ms, duration_ms, header_id, size_bytes: bytes.len() as u64, uploaded: false };
        let path = self.fragment_path(&entry);
        // A disk that fills before the cap does is full all the same: the strategy decides.
        while let Err(error) = write_durably(&path, &bytes) {
            if !is_disk_full(&error) {
                return Err(error);
            }
            let _ = fs::remove_file(path.with_extension("tmp"));
            if self.strategy == StrategyOnFull::DenyNewMedia || !self.evict_one()? {
                self.metrics.refused_fragments.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(stream = %self.dir.display(), "disk full: a new fragment was dropped");
                return Ok(Recorded::Refused);
            }
        }
        self.next_seq.store(seq + 1, Ordering::Relaxed);
        self.budget.used_bytes.fetch_add(entry.size_bytes, Ordering::Relaxed);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(seq, entry);
        }
        self.metrics.recorded_fragments.fetch_add(1, Ordering::Relaxed);
        self.metrics.recorded_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.refresh_gauges();
        self.recorded.send_replace(seq + 1);
        Ok(Recorded::Stored { seq })
    }

    /// Frees space for `needed` bytes; false when the strategy refuses the new fragment.
    fn make_room(&self, needed: u64) -> anyhow::Result<bool> {
        while self.budget.used_bytes() + needed > self.budget.max_bytes {
            if self.strategy == StrategyOnFull::DenyNewMedia || !self.evict_one()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Deletes one fragment to make room (delete_oldest_media): an uploaded one first, else the
    /// oldest. False when the stream has none left.
    fn evict_one(&self) -> anyhow::Result<bool> {
        let victim = {
            let entries = self.entries.lock().map_err(|_| anyhow::anyhow!("buffer lock poisoned"))?;
            entries.values().find(|e| e.uploaded).or_else(|| entries.values().next()).cloned()
        };
        let Some(victim) = victim else { return Ok(false) };
        // The newest fragment leaving would first write down the next sequence number: on a
        // full disk that write fails too. Keep it; the new fragment is refused instead.
        if entries_len(&self.entries) == 1 && !victim.uploaded {
            return Ok(false);
        }
        if !victim.uploaded {
            self.metrics.dropped_fragments.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(seq = victim.seq, "buffer full (delete_oldest_media): an unuploaded fragment was deleted");
        }
        self.remove(victim.seq)?;
        Ok(true)
    }

    /// Takes `seq` out of the index; when it is the newest, the next sequence number is written
    /// down first (`NEXT_SEQ_FILE`).
    fn take_entry(&self, seq: u64) -> anyhow::Result<Option<Entry>> {
        let mut entries = self.entries.lock().map_err(|_| anyhow::anyhow!("buffer lock poisoned"))?;
        let newest = entries.keys().next_back().is_some_and(|&newest| newest == seq);
        if newest {
            let next = self.next_seq.load(Ordering::Acquire).max(seq + 1);
            write_durably(&self.dir.join(NEXT_SEQ_FILE), next.to_string().as_bytes())?;
        }
        Ok(entries.remove(&seq))
    }

    fn remove(&self, seq: u64) -> anyhow::Result<()> {
        let entry = self.take_entry(seq)?;
        if let Some(entry) = entry {
            match fs::remove_file(self.fragment_path(&entry)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error.into()),
            }
            sync_dir(&self.dir.join("fragments"))?;
            self.budget.used_bytes.fetch_sub(entry.size_bytes, Ordering::Relaxed);
        }
        self.refresh_gauges();
        Ok(())
    }

    /// Fragments not yet uploaded with `seq` in `range`, oldest first, at most `limit`.
    pub fn pending(&self, range: std::ops::Range<u64>, limit: usize) -> Vec<Entry> {
        let Ok(entries) = self.entries.lock() else { return Vec::new() };
        entries.range(range).map(|(_, e)| e).filter(|e| !e.uploaded).take(limit).cloned().collect()
    }

    /// The server refused the fragment for its content: it moves to `rejected/` (kept for a look,
    /// never retried, out of the budget).
    pub fn reject(&self, seq: u64) -> anyhow::Result<()> {
        let entry = self.take_entry(seq)?;
        if let Some(entry) = entry {
            let rejected = self.dir.join("rejected");
            fs::create_dir_all(&rejected)?;
            fs::rename(self.fragment_path(&entry), rejected.join(entry.file_name()))?;
            sync_dir(&self.dir.join("fragments"))?;
            self.budget.used_bytes.fetch_sub(entry.size_bytes, Ordering::Relaxed);
            self.metrics.rejected_fragments.fetch_add(1, Ordering::Relaxed);
        }
        self.refresh_gauges();
        Ok(())
    }

    /// The newest fragment not yet uploaded.
    pub fn newest_pending(&self) -> Option<Entry> {
        let entries = self.entries.lock().ok()?;
        entries.values().rev().find(|e| !e.uploaded).cloned()
    }

    pub fn read(&self, entry: &Entry) -> anyhow::Result<Vec<u8>> {
        let path = self.fragment_path(entry);
        fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// The server PERSISTED the fragment: delete it, or keep it marked as uploaded.
    pub fn uploaded(&self, seq: u64, delete: bool) -> anyhow::Result<()> {
        if delete {
            return self.remove(seq);
        }
        let entry = self.entries.lock().map_err(|_| anyhow::anyhow!("buffer lock poisoned"))?.get(&seq).cloned();
        if let Some(entry) = entry.filter(|e| !e.uploaded) {
            let sent = Entry { uploaded: true, ..entry.clone() };
            fs::rename(self.fragment_path(&entry), self.fragment_path(&sent))?;
            sync_dir(&self.dir.join("fragments"))?;
            if let Ok(mut entries) = self.entries.lock() {
                entries.insert(seq, sent);
            }
            self.refresh_gauges();
        }
        Ok(())
    }

    /// Deletes fragments recorded more than `retention_ms` ago (uploaded or not).
    pub fn expire(&self, now_ms: u64, retention_ms: u64) -> anyhow::Result<usize> {
        let old: Vec<Entry> = {
            let entries = self.entries.lock().map_err(|_| anyhow::anyhow!("buffer lock poisoned"))?;
            entries.values().filter(|e| e.producer_ms + retention_ms < now_ms).cloned().collect()
        };
        for entry in &old {
            if !entry.uploaded {
                self.metrics.expired_fragments.fetch_add(1, Ordering::Relaxed);
            }
            self.remove(entry.seq)?;
        }
        Ok(old.len())
    }

    /// Publishes buffered bytes and fragments and the oldest unuploaded time.
    fn refresh_gauges(&self) {
        let Ok(entries) = self.entries.lock() else { return };
        let pending = entries.values().filter(|e| !e.uploaded);
        let (mut bytes, mut count, mut oldest) = (0, 0, 0);
        for entry in pending {
            bytes += entry.size_bytes;
            count += 1;
            if oldest == 0 {
                oldest = entry.producer_ms;
            }
        }
        self.metrics.buffered_bytes.store(bytes, Ordering::Relaxed);
        self.metrics.buffered_fragments.store(count, Ordering::Relaxed);
        self.metrics.oldest_unuploaded_ms.store(oldest, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, strategy: StrategyOnFull, budget: &Arc<Budget>) -> StreamBuffer {
        StreamBuffer::open(dir, "agent", "cam", strategy, budget.clone()).expect("buffer")
    }

    fn record(buffer: &StreamBuffer, producer_ms: u64, len: usize) -> Recorded {
        buffer
            .record(7, producer_ms, 2_000, |id| {
                let mut bytes = id.as_bytes().to_vec();
                bytes.resize(len, 0);
                bytes
            })
            .expect("record")
    }

    #[test]
    fn fragments_survive_a_reopen_with_their_identity_and_order() {
        let dir = tempfile::tempdir().expect("dir");
        let budget = Budget::new(1 << 20);
        let buffer = open(dir.path(), StrategyOnFull::DeleteOldestMedia, &budget);
        for at in [1_000, 3_000, 5_000] {
            record(&buffer, at, 100);
        }
        buffer.uploaded(0, true).expect("uploaded");
        // A half-written fragment from a crash is discarded on open.
        fs::write(dir.path().join("cam/fragments/x.tmp"), b"partial").expect("tmp");
        drop(buffer);
        let reopened = open(dir.path(), StrategyOnFull::DeleteOldestMedia, &Budget::new(1 << 20));
        let pending = reopened.pending(0..u64::MAX, 10);
        assert_eq!(pending.iter().map(|e| (e.seq, e.producer_ms)).collect::<Vec<_>>(), [(1, 3_000), (2, 5_000)]);
        let bytes = reopened.read(&pending[0]).expect("read");
        assert!(bytes.starts_with(b"agent/cam/1"), "the identity is in the bytes");
        assert_eq!(reopened.next_seq(), 3, "sequence numbers are never reused");
        assert!(!dir.path().join("cam/fragments/x.tmp").exists());
    }

    #[test]
    fn sequence_numbers_go_on_after_every_fragment_was_uploaded_or_rejected() {
        let dir = tempfile::tempdir().expect("dir");
        let buffer = open(dir.path(), StrategyOnFull::DeleteOldestMedia, &Budget::new(1 << 20));
        for at in [1_000, 3_000, 5_000] {
            record(&buffer, at, 100);
        }
        // The newest goes first (the live lane), then the rest.
        for seq in [2, 0, 1] {
            buffer.uploaded(seq, true).expect("uploaded");
        }
        drop(buffer);
        let reopened = open(dir.path(), StrategyOnFull::DeleteOldestMedia, &Budget::new(1 << 20));
        assert!(reopened.pending(0..u64::MAX, 10).is_empty());
        assert_eq!(reopened.next_seq(), 3, "an empty buffer does not start again at 0");
        record(&reopened, 7_000, 100);
        reopened.reject(3).expect("rejected");
        drop(reopened);
        assert_eq!(open(dir.path(), StrategyOnFull::DeleteOldestMedia, &Budget::new(1 << 20)).next_seq(), 4);
    }

    #[test]
    fn a_full_buffer_deletes_the_oldest_or_refuses_the_newest() {
        let dir = tempfile::tempdir().expect("dir");
        let budget = Budget::new(350);
        let oldest_first = open(dir.path(), StrategyOnFull::DeleteOldestMedia, &budget);
        for at in 0..5 {
            assert!(matches!(record(&oldest_first, at * 1_000, 100), Recorded::Stored { .. }));
        }
        let kept: Vec<u64> = oldest_first.pending(0..u64::MAX, 10).iter().map(|e| e.seq).collect();
        assert_eq!(kept, [2, 3, 4]);
        assert_eq!(oldest_first.metrics.dropped_fragments.load(Ordering::Relaxed), 2);
        assert!(budget.used_bytes() <= 350);

        let dir = tempfile::tempdir().expect("dir");
        let budget = Budget::new(350);
        let deny = open(dir.path(), StrategyOnFull::DenyNewMedia, &budget);
        let outcomes: Vec<Recorded> = (0..5).map(|at| record(&deny, at * 1_000, 100)).collect();
        assert_eq!(outcomes.iter().filter(|o| **o == Recorded::Refused).count(), 2);
        assert_eq!(deny.pending(0..u64::MAX, 10).iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(deny.metrics.refused_fragments.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn uploaded_fragments_kept_are_the_first_to_make_room_and_retention_expires_all() {
        let dir = tempfile::tempdir().expect("dir");
        let budget = Budget::new(300);
        let buffer = open(dir.path(), StrategyOnFull::DeleteOldestMedia, &budget);
        for at in 0..3 {
            record(&buffer, at * 1_000, 100);
        }
        buffer.uploaded(1, false).expect("kept as sent");
        record(&buffer, 3_000, 100);
        assert_eq!(buffer.pending(0..u64::MAX, 10).iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 2, 3]);
        assert_eq!(buffer.metrics.dropped_fragments.load(Ordering::Relaxed), 0);
        assert_eq!(buffer.expire(10_000, 7_500).expect("expire"), 2);
        assert_eq!(buffer.pending(0..u64::MAX, 10).iter().map(|e| e.seq).collect::<Vec<_>>(), [3]);
    }
}
