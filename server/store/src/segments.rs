//! Segment files: large payloads (video fragments) written once, to per-shard append-only files
//! the engine owns, instead of twice through RocksDB (its WAL, then a blob file at flush).
//! RocksDB keeps each entry's header with the payload's place (`SegmentRef`).
//!
//! Layout: `<engine>/segments/<stream id>/<shard>/<first seq>.seg`, each a run of records
//! `seq u64 | len u32 | crc32 u32 | payload`, little-endian. Write order (docs/engine.md): the
//! commit thread appends a group's payloads, `fdatasync`s every file it touched (and the
//! directory of a new file), and only then writes the group's index batch: an index entry never
//! names bytes that are not durable. A file is never rewritten; retention deletes whole files.
//!
//! The interface is what a remote payload store (object storage) would offer: append, read a
//! record, delete the files below a sequence number.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Result, StoreError};

/// Bytes before each payload: seq, length, checksum.
pub(crate) const RECORD_HEADER_BYTES: u64 = 16;
/// At most this many segment files are kept open for appending; beyond it the least recently
/// used is synced and closed.
const MAX_OPEN_WRITERS: usize = 1024;

/// Where a payload lies: the segment (named by its first sequence number) and the record's
/// offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRef {
    pub segment: u64,
    pub offset: u64,
}

/// The segment file a shard is appending to.
#[derive(Debug)]
struct Writer {
    segment: u64,
    file: File,
    len_bytes: u64,
    /// One past the newest sequence number appended to this file.
    next_seq: u64,
    dirty: bool,
    /// The file (or its directory) is new: the directory must be synced for its name to last.
    new_name: bool,
    last_used: u64,
}

#[derive(Debug)]
pub(crate) struct SegmentStore {
    root: PathBuf,
    roll_bytes: u64,
    writers: Mutex<Writers>,
    /// Deleting files takes this shared; a backup takes it exclusively, so no file its
    /// checkpoint names disappears before it is copied.
    deletions: std::sync::RwLock<()>,
}

#[derive(Debug, Default)]
struct Writers {
    open: HashMap<(u64, u32), Writer>,
    uses: u64,
    /// Files created since the last committed group: a failed group's are removed, so no file
    /// named by a sequence number the index never took outlives it.
    created: Vec<PathBuf>,
    /// Shard directories whose names (and parents') this process has synced.
    synced_dirs: std::collections::HashSet<PathBuf>,
}

impl SegmentStore {
    pub(crate) fn new(root: PathBuf, roll_bytes: u64) -> SegmentStore {
        SegmentStore { root, roll_bytes, writers: Mutex::new(Writers::default()), deletions: Default::default() }
    }

    fn shard_dir(&self, stream_id: u64, shard: u32) -> PathBuf {
        self.root.join(format!("{stream_id:020}")).join(format!("{shard:05}"))
    }

    fn segment_path(&self, stream_id: u64, shard: u32, segment: u64) -> PathBuf {
        self.shard_dir(stream_id, shard).join(format!("{segment:020}.seg"))
    }

    /// Appends one payload as record `seq` of the shard's open segment (a new one when the open
    /// one is full, or after a restart). Not durable until `sync`.
    pub(crate) fn append(&self, stream_id: u64, shard: u32, seq: u64, payload: &[u8]) -> Result<SegmentRef> {
        let len = u32::try_from(payload.len()).map_err(|_| io_error("append", &self.root, "payload over 4 GiB"))?;
        let mut writers = self.lock();
        writers.uses += 1;
        let uses = writers.uses;
        let key = (stream_id, shard);
        let full = writers.open.get(&key).is_some_and(|w| w.len_bytes >= self.roll_bytes);
        if full && let Some(mut old) = writers.open.remove(&key) {
            sync_writer(&mut old, &self.shard_dir(stream_id, shard))?;
        }
        if !writers.open.contains_key(&key) {
            if writers.open.len() >= MAX_OPEN_WRITERS {
                self.evict_least_used(&mut writers)?;
            }
            let writer = self.create_writer(&mut writers, stream_id, shard, seq)?;
            writers.open.insert(key, writer);
        }
        let writer = writers.open.get_mut(&key).ok_or(StoreError::CommitterGone)?;
        let mut record = Vec::with_capacity(RECORD_HEADER_BYTES as usize + payload.len());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        record.extend_from_slice(payload);
        let offset = writer.len_bytes;
        if let Err(source) = writer.file.write_all(&record) {
            // Part of the record may be in the file: later records must not follow it there.
            writers.open.remove(&key);
            return Err(StoreError::Io { what: "appending to a segment", source });
        }
        writer.len_bytes += record.len() as u64;
        writer.next_seq = seq + 1;
        writer.dirty = true;
        writer.last_used = uses;
        Ok(SegmentRef { segment: writer.segment, offset })
    }

    fn create_writer(&self, writers: &mut Writers, stream_id: u64, shard: u32, seq: u64) -> Result<Writer> {
        let dir = self.shard_dir(stream_id, shard);
        if !writers.synced_dirs.contains(&dir) {
            std::fs::create_dir_all(&dir)
                .map_err(|e| StoreError::Io { what: "creating a segment directory", source: e })?;
            // The directories' names must last too: sync each parent, the engine's included. Done
            // once per process and shard whether or not they existed: an earlier run may have
            // been killed between creating and syncing them.
            let engine_dir = self.root.parent().unwrap_or(&self.root);
            for parent in [engine_dir, self.root.as_path(), dir.parent().unwrap_or(&self.root)] {
                sync_dir(parent)?;
            }
            writers.synced_dirs.insert(dir.clone());
        }
        let path = self.segment_path(stream_id, shard, seq);
        // A leftover file of this name holds only records the index never acknowledged (a
        // crash before their batch committed): start it afresh.
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| StoreError::Io { what: "creating a segment", source: e })?;
        writers.created.push(path);
        Ok(Writer { segment: seq, file, len_bytes: 0, next_seq: seq, dirty: false, new_name: true, last_used: 0 })
    }

    fn evict_least_used(&self, writers: &mut Writers) -> Result<()> {
        let Some(key) = writers.open.iter().min_by_key(|(_, w)| w.last_used).map(|(key, _)| *key) else {
            return Ok(());
        };
        if let Some(mut writer) = writers.open.remove(&key) {
            sync_writer(&mut writer, &self.shard_dir(key.0, key.1))?;
        }
        Ok(())
    }

    /// Makes every append so far durable: data of each touched file, then the directory of
    /// each new file. Several files (a group with many cameras' fragments) are synced in
    /// parallel: the filesystem's journal merges concurrent syncs into one commit, where one
    /// after the other each would wait for its own.
    pub(crate) fn sync(&self) -> Result<()> {
        let mut writers = self.lock();
        let mut pending: Vec<(PathBuf, &mut Writer)> = writers
            .open
            .iter_mut()
            .filter(|(_, writer)| writer.dirty || writer.new_name)
            .map(|(&(stream_id, shard), writer)| (self.shard_dir(stream_id, shard), writer))
            .collect();
        if pending.len() <= 1 {
            return pending.iter_mut().try_for_each(|(dir, writer)| sync_writer(writer, dir));
        }
        std::thread::scope(|scope| {
            let syncs: Vec<_> =
                pending.iter_mut().map(|(dir, writer)| scope.spawn(move || sync_writer(writer, dir))).collect();
            syncs.into_iter().try_for_each(|sync| sync.join().unwrap_or(Err(StoreError::CommitterGone)))
        })
    }

    /// Forgets every open file after a group commit failed: their last records name sequence
    /// numbers the index never took and that will be assigned again, and a file's records must
    /// keep increasing, so the next appends start new files.
    pub(crate) fn abandon_open(&self) {
        let mut writers = self.lock();
        writers.open.clear();
        for path in std::mem::take(&mut writers.created) {
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), %error, "could not remove a failed group's segment");
            }
            if let Some(dir) = path.parent() {
                let _ = sync_dir(dir);
            }
        }
    }

    /// A group's index batch committed: the files it created are named in the index now.
    pub(crate) fn committed(&self) {
        self.lock().created.clear();
    }

    /// Opens the segment holding record `seq` at `place` and checks the record's header against
    /// what the index says (its sequence number and `stored_len`): the file and the header.
    pub(crate) fn open_record(
        &self,
        stream_id: u64,
        shard: u32,
        seq: u64,
        place: SegmentRef,
        stored_len: u64,
    ) -> Result<(File, RecordHeader)> {
        let path = self.segment_path(stream_id, shard, place.segment);
        if stored_len > u64::from(u32::MAX) {
            return Err(corrupt(&path, "payload length beyond a record's"));
        }
        let file = File::open(&path).map_err(|e| StoreError::Io { what: "opening a segment", source: e })?;
        let mut bytes = [0u8; RECORD_HEADER_BYTES as usize];
        file.read_exact_at(&mut bytes, place.offset)
            .map_err(|e| StoreError::Io { what: "reading a segment", source: e })?;
        let header = RecordHeader::parse(&bytes).ok_or_else(|| corrupt(&path, "short record header"))?;
        if header.seq != seq || u64::from(header.len) != stored_len {
            return Err(corrupt(&path, "record header does not match the index"));
        }
        Ok((file, header))
    }

    /// Reads record `seq` of `stored_len` payload bytes at `place`, checking its header and
    /// checksum.
    pub(crate) fn read(
        &self,
        stream_id: u64,
        shard: u32,
        seq: u64,
        place: SegmentRef,
        stored_len: u64,
    ) -> Result<Vec<u8>> {
        let (file, header) = self.open_record(stream_id, shard, seq, place, stored_len)?;
        let mut payload = vec![0u8; stored_len as usize];
        file.read_exact_at(&mut payload, place.offset + RECORD_HEADER_BYTES)
            .map_err(|e| StoreError::Io { what: "reading a segment", source: e })?;
        if crc32fast::hash(&payload) != header.crc {
            let path = self.segment_path(stream_id, shard, place.segment);
            return Err(corrupt(&path, "payload checksum mismatch"));
        }
        Ok(payload)
    }

    /// Deletes the shard's segments whose every record is below `keep_from` (retention); the
    /// open segment only once nothing was appended to it at or after `keep_from`. Returns how
    /// many files went.
    pub(crate) fn delete_below(&self, stream_id: u64, shard: u32, keep_from: u64) -> Result<u64> {
        let _deleting = self.deletions.read().unwrap_or_else(|e| e.into_inner());
        let dir = self.shard_dir(stream_id, shard);
        let segments = list_segments(&dir)?;
        let mut writers = self.lock();
        let open = writers.open.get(&(stream_id, shard)).map(|w| (w.segment, w.next_seq));
        let mut deleted = 0;
        for (index, &segment) in segments.iter().enumerate() {
            let end = match (segments.get(index + 1), open) {
                (Some(&next), _) => next,
                (None, Some((open_segment, next_seq))) if open_segment == segment => next_seq,
                // The newest file of a shard no writer has open (written before a restart).
                (None, _) => segment_end_seq(&dir, segment)?,
            };
            if end > keep_from {
                break;
            }
            if open.is_some_and(|(open_segment, _)| open_segment == segment) {
                writers.open.remove(&(stream_id, shard));
            }
            match std::fs::remove_file(dir.join(format!("{segment:020}.seg"))) {
                Ok(()) => deleted += 1,
                // The stream was deleted meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Io { what: "deleting a segment", source: e }),
            }
        }
        Ok(deleted)
    }

    /// Removes every segment of a deleted stream.
    pub(crate) fn delete_stream(&self, stream_id: u64) -> Result<()> {
        let _deleting = self.deletions.read().unwrap_or_else(|e| e.into_inner());
        self.lock().open.retain(|&(id, _), _| id != stream_id);
        let dir = self.root.join(format!("{stream_id:020}"));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io { what: "deleting a stream's segments", source: e }),
        }
    }

    /// The bytes of a stream's segment files (0 when it has none).
    pub(crate) fn stream_bytes(&self, stream_id: u64) -> u64 {
        let Ok(shards) = std::fs::read_dir(self.root.join(format!("{stream_id:020}"))) else { return 0 };
        shards
            .flatten()
            .filter_map(|shard| std::fs::read_dir(shard.path()).ok())
            .flat_map(|files| files.flatten())
            .filter_map(|file| file.metadata().ok())
            .map(|metadata| metadata.len())
            .sum()
    }

    pub(crate) fn shard_segments(&self, stream_id: u64, shard: u32) -> Result<Vec<u64>> {
        list_segments(&self.shard_dir(stream_id, shard))
    }

    pub(crate) fn segment_file(&self, stream_id: u64, shard: u32, segment: u64) -> PathBuf {
        self.segment_path(stream_id, shard, segment)
    }

    /// Holds every deletion of segment files off until the guard drops (backup.rs).
    pub(crate) fn hold_deletions(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.deletions.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Where a backup links the segment files while deletions wait (backup.rs): beside the
    /// segments, on the same filesystem, outside what recovery reads.
    pub(crate) fn backup_staging(&self) -> PathBuf {
        self.root.with_file_name("segments-backup")
    }

    /// Removes a staging directory a crash left in the middle of a backup.
    pub(crate) fn remove_backup_staging(&self) -> Result<()> {
        match std::fs::remove_dir_all(self.backup_staging()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StoreError::Io { what: "removing a backup's staging directory", source: e })
            }
            _ => Ok(()),
        }
    }

    /// Removes the segment directories of every stream id not in `known`.
    pub(crate) fn remove_unknown_streams(&self, known: &std::collections::HashSet<u64>) -> Result<()> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::Io { what: "listing segments", source: e }),
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_str().and_then(|name| name.parse::<u64>().ok());
            if let Some(id) = id.filter(|id| !known.contains(id)) {
                tracing::warn!(stream_id = id, "removing the segments of a stream the index does not know");
                std::fs::remove_dir_all(entry.path())
                    .map_err(|e| StoreError::Io { what: "removing an unknown stream's segments", source: e })?;
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writers> {
        self.writers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A record's header fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordHeader {
    pub(crate) seq: u64,
    pub(crate) len: u32,
    pub(crate) crc: u32,
}

impl RecordHeader {
    pub(crate) fn parse(bytes: &[u8]) -> Option<RecordHeader> {
        let seq = u64::from_le_bytes(bytes.get(0..8)?.try_into().ok()?);
        let len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
        let crc = u32::from_le_bytes(bytes.get(12..16)?.try_into().ok()?);
        Some(RecordHeader { seq, len, crc })
    }
}

fn sync_writer(writer: &mut Writer, dir: &Path) -> Result<()> {
    if writer.dirty {
        writer.file.sync_data().map_err(|e| StoreError::Io { what: "syncing a segment", source: e })?;
        writer.dirty = false;
    }
    if writer.new_name {
        sync_dir(dir)?;
        writer.new_name = false;
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::Io { what: "syncing a segment directory", source: e })
}

/// The first sequence numbers of a shard's segment files, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::Io { what: "listing segments", source: e }),
    };
    let mut segments: Vec<u64> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .collect();
    segments.sort_unstable();
    Ok(segments)
}

/// One past the last record's sequence number of a closed segment, by walking its record
/// headers (one small read per record).
fn segment_end_seq(dir: &Path, segment: u64) -> Result<u64> {
    let path = dir.join(format!("{segment:020}.seg"));
    let records = crate::recovery::complete_records(&path)?;
    Ok(records.last().map_or(segment, |(header, _)| header.seq + 1))
}

fn corrupt(path: &Path, reason: &'static str) -> StoreError {
    StoreError::CorruptEntry { key_hex: path.display().to_string(), reason }
}

fn io_error(what: &'static str, path: &Path, reason: &str) -> StoreError {
    StoreError::Io {
        what,
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{}: {reason}", path.display())),
    }
}
