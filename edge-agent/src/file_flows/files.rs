//! The files of one flow: every file its pattern matches, each followed by identity (device
//! and inode) rather than by name, so that rotation by rename-and-create keeps reading the
//! renamed file to its end while the new one starts from its beginning. A file that shrinks
//! below what was read was truncated (copytruncate): it is read again from its start, and the
//! copy that appears with the same first bytes continues where the truncated file was.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::checkpoints::FileCheckpoint;
use super::lines::{Cutting, RawRecord, Splitter};

/// How much of a file's start identifies it.
const HEAD_BYTES: u64 = 1024;
/// How much one read takes from a file.
const READ_BYTES: usize = 256 << 10;
/// How many scans a new file that looks like a copy waits for its original's truncation.
const COPY_WAIT_SCANS: u32 = 20;
/// A multi-line record is sent once its file was quiet this long (its next start line may never come).
const QUIET_BEFORE_FLUSH: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// A record's origin: its file, and which of the file's lives (a truncation starts a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub id: FileId,
    pub generation: u32,
}

/// A file's first bytes, by length and CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Head {
    len: u64,
    crc: u32,
}

fn head_of(file: &File, len: u64) -> io::Result<Head> {
    let mut bytes = vec![0; len.min(HEAD_BYTES) as usize];
    let read = file.read_at(&mut bytes, 0)?;
    bytes.truncate(read);
    Ok(Head { len: read as u64, crc: crc32fast::hash(&bytes) })
}

#[derive(Debug)]
struct Tracked {
    path: PathBuf,
    file: File,
    generation: u32,
    read_offset: u64,
    acked_offset: u64,
    size: u64,
    modified: std::time::SystemTime,
    head: Head,
    splitter: Splitter,
    quiet_since: Option<Instant>,
    listed: bool,
    /// The order files were found in, which breaks ties of modification times.
    found: u64,
}

/// Where a truncated file's content was cut to, for the copy that carries it on, and where it
/// was acknowledged to: records cut before the truncation may still be on their way, and the
/// copy's checkpoint must not pass them until they are acknowledged.
#[derive(Debug, Clone, Copy)]
struct Truncation {
    head: Head,
    offset: u64,
    acked: u64,
}

#[derive(Debug)]
pub struct FileSet {
    dir: PathBuf,
    name_pattern: glob::Pattern,
    cutting: Cutting,
    /// Files found at the first scan start at their end (`END_OF_FILE` on a first start).
    start_at_end: bool,
    first_scan: bool,
    files: BTreeMap<FileId, Tracked>,
    /// Positions from the checkpoint file, taken up as their files are found.
    restored: Vec<FileCheckpoint>,
    truncations: Vec<Truncation>,
    /// New files that look like copies of a followed one, with the scans they have waited.
    copies: BTreeMap<FileId, u32>,
    found_count: u64,
}

impl FileSet {
    pub fn new(
        pattern: &str,
        cutting: Cutting,
        start_at_end: bool,
        restored: Vec<FileCheckpoint>,
    ) -> anyhow::Result<FileSet> {
        let path = Path::new(pattern);
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        Ok(FileSet {
            dir,
            name_pattern: glob::Pattern::new(name)?,
            cutting,
            start_at_end,
            first_scan: true,
            files: BTreeMap::new(),
            restored,
            truncations: Vec::new(),
            copies: BTreeMap::new(),
            found_count: 0,
        })
    }

    /// Finds new, renamed, truncated and removed files.
    pub fn scan(&mut self) -> io::Result<()> {
        let mut found = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_str().is_some_and(|n| self.name_pattern.matches(n)) {
                continue;
            }
            if let Ok(metadata) = std::fs::metadata(entry.path())
                && metadata.is_file()
            {
                found.push((FileId { dev: metadata.dev(), ino: metadata.ino() }, entry.path(), metadata));
            }
        }
        self.files.values_mut().for_each(|tracked| tracked.listed = false);
        // Truncations first: a copy found in the same scan continues the truncated file.
        for (id, path, metadata) in &found {
            if let Some(tracked) = self.files.get_mut(id) {
                tracked.listed = true;
                tracked.path = path.clone();
                tracked.modified = metadata.modified().unwrap_or(tracked.modified);
                // Shorter than what was read, or other first bytes: truncated (and perhaps
                // written again past the old position before this scan).
                let replaced = tracked.head.len > 0
                    && metadata.len() >= tracked.head.len
                    && head_of(&tracked.file, tracked.head.len)? != tracked.head;
                if metadata.len() < tracked.read_offset || replaced {
                    let cut_to = tracked.splitter.uncut_from();
                    let acked = tracked.acked_offset.min(cut_to);
                    self.truncations.push(Truncation { head: tracked.head, offset: cut_to, acked });
                    tracing::info!(file = %path.display(), "file truncated: read again from its start");
                    tracked.generation += 1;
                    (tracked.read_offset, tracked.acked_offset) = (0, 0);
                    tracked.splitter = Splitter::new(&self.cutting, 0);
                    tracked.head = Head::default();
                }
                tracked.size = metadata.len();
                if tracked.head.len < HEAD_BYTES {
                    tracked.head = head_of(&tracked.file, tracked.size)?;
                }
            }
        }
        // Checkpointed files next: one truncated while the agent was down names the position
        // its copy (found after it) carries on from.
        let (restored, new): (Vec<_>, Vec<_>) = found
            .into_iter()
            .filter(|(id, _, _)| !self.files.contains_key(id))
            .partition(|(id, _, _)| self.restored.iter().any(|c| c.dev == id.dev && c.ino == id.ino));
        for (id, path, metadata) in restored.into_iter().chain(new) {
            // A file that went away since the listing (rotation) or cannot be read is looked at
            // again at the next scan; it does not stop the flow's other files.
            let tracked = match self.copy_in_progress(id, &path) {
                Ok(true) => continue,
                Ok(false) => self.track(id, path.clone(), &metadata),
                Err(error) => Err(error),
            };
            if let Err(error) = tracked {
                tracing::warn!(file = %path.display(), %error, "cannot follow the file yet");
            }
        }
        self.first_scan = false;
        // A file gone from the directory is read to its end through its open handle, then dropped.
        self.files.retain(|_, t| t.listed || t.acked_offset < t.read_offset || t.read_offset < t.size);
        Ok(())
    }

    /// A new file with the first bytes of a file being followed is a copy (copytruncate copies,
    /// then truncates): it is left for a few scans, so that the truncation is seen first and
    /// the copy continues from where the original was read to. A copy whose original is never
    /// truncated is then followed from the original's position, as its content was read there.
    fn copy_in_progress(&mut self, id: FileId, path: &Path) -> io::Result<bool> {
        let file = File::open(path)?;
        let mut original = None;
        for tracked in self.files.values().filter(|t| t.head.len > 0) {
            if head_of(&file, tracked.head.len)? == tracked.head {
                original = Some(tracked.splitter.uncut_from());
                break;
            }
        }
        let Some(read_offset) = original else { return Ok(false) };
        let waited = self.copies.entry(id).or_default();
        *waited += 1;
        if *waited <= COPY_WAIT_SCANS {
            return Ok(true);
        }
        self.copies.remove(&id);
        let size = file.metadata()?.len();
        let offset = read_offset.min(size);
        self.truncations.push(Truncation { head: head_of(&file, HEAD_BYTES)?, offset, acked: offset });
        Ok(false)
    }

    fn track(&mut self, id: FileId, path: PathBuf, metadata: &std::fs::Metadata) -> io::Result<()> {
        let file = File::open(&path)?;
        let size = metadata.len();
        let head = head_of(&file, size)?;
        let (start, acked) = self.start_offset(id, &file, size)?;
        tracing::info!(file = %path.display(), offset = start, "following file");
        let tracked = Tracked {
            path,
            file,
            generation: 0,
            read_offset: start,
            acked_offset: acked,
            size,
            modified: metadata.modified().unwrap_or(std::time::UNIX_EPOCH),
            head,
            splitter: Splitter::new(&self.cutting, start),
            quiet_since: None,
            listed: true,
            found: self.found_count,
        };
        self.found_count += 1;
        self.files.insert(id, tracked);
        Ok(())
    }

    /// Where a newly found file is read from, and acknowledged to: its checkpoint, the
    /// positions of the truncated file it is a copy of, its end (a first start at END_OF_FILE),
    /// or its start.
    fn start_offset(&mut self, id: FileId, file: &File, size: u64) -> io::Result<(u64, u64)> {
        if let Some(index) = self.restored.iter().position(|c| c.dev == id.dev && c.ino == id.ino) {
            let restored = self.restored.swap_remove(index);
            let kept = Head { len: restored.head_len, crc: restored.head_crc };
            if size >= restored.offset && head_of(file, kept.len)? == kept {
                return Ok((restored.offset, restored.offset));
            }
            // Truncated (or the inode reused) while the agent was down: its copy, if one
            // appears, carries on from the checkpoint.
            self.truncations.push(Truncation { head: kept, offset: restored.offset, acked: restored.offset });
            return Ok((0, 0));
        }
        for index in (0..self.truncations.len()).rev() {
            let truncation = self.truncations[index];
            if truncation.offset <= size && head_of(file, truncation.head.len)? == truncation.head {
                self.truncations.swap_remove(index);
                return Ok((truncation.offset, truncation.acked));
            }
        }
        let start = if self.first_scan && self.start_at_end { size } else { 0 };
        Ok((start, start))
    }

    /// Reads new bytes, oldest file first (a rotated file before its successor), until
    /// `max_records` records are cut or nothing is left.
    pub fn read(&mut self, max_records: usize, out: &mut Vec<(Origin, RawRecord)>) -> io::Result<()> {
        let mut order: Vec<(std::time::SystemTime, u64, FileId)> =
            self.files.iter().map(|(id, t)| (t.modified, t.found, *id)).collect();
        order.sort();
        let mut buffer = vec![0u8; READ_BYTES];
        let mut cut = Vec::new();
        for (_, _, id) in order {
            let Some(tracked) = self.files.get_mut(&id) else { continue };
            let origin = Origin { id, generation: tracked.generation };
            while out.len() < max_records {
                let read = match tracked.file.read_at(&mut buffer, tracked.read_offset) {
                    Ok(read) => read,
                    Err(error) => {
                        tracing::warn!(file = %tracked.path.display(), %error, "reading failed; trying again later");
                        break;
                    }
                };
                if read == 0 {
                    let quiet_since = *tracked.quiet_since.get_or_insert_with(Instant::now);
                    if quiet_since.elapsed() >= QUIET_BEFORE_FLUSH {
                        tracked.splitter.flush(&mut cut);
                    }
                    out.extend(cut.drain(..).map(|record| (origin, record)));
                    break;
                }
                tracked.quiet_since = None;
                tracked.read_offset += read as u64;
                tracked.size = tracked.size.max(tracked.read_offset);
                tracked.splitter.push(&buffer[..read], tracked.read_offset, &mut cut);
                out.extend(cut.drain(..).map(|record| (origin, record)));
            }
        }
        Ok(())
    }

    /// A record from `origin` ending at `end_offset` was acknowledged.
    pub fn acknowledge(&mut self, origin: Origin, end_offset: u64) {
        if let Some(tracked) = self.files.get_mut(&origin.id).filter(|t| t.generation == origin.generation) {
            tracked.acked_offset = tracked.acked_offset.max(end_offset);
        }
    }

    pub fn checkpoints(&self) -> Vec<FileCheckpoint> {
        self.files
            .iter()
            .map(|(id, t)| FileCheckpoint {
                path: t.path.clone(),
                dev: id.dev,
                ino: id.ino,
                offset: t.acked_offset,
                head_len: t.head.len,
                head_crc: t.head.crc,
            })
            .collect()
    }

    /// Bytes in the flow's files not acknowledged yet.
    pub fn bytes_behind(&self) -> u64 {
        self.files.values().map(|t| t.size.saturating_sub(t.acked_offset)).sum()
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn cutting() -> Cutting {
        Cutting { skip_header_lines: 0, start_pattern: None, max_record_bytes: 1 << 20, terminator: b"\n".to_vec() }
    }

    fn append(path: &Path, lines: std::ops::Range<u32>) {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("log");
        for i in lines {
            writeln!(file, "line {i:05} {}", "x".repeat(60)).expect("written");
        }
    }

    /// Scans and reads everything there is, acknowledging it all; the line numbers read.
    fn drain(files: &mut FileSet) -> Vec<u32> {
        files.scan().expect("scan");
        let mut read = Vec::new();
        loop {
            let mut out = Vec::new();
            files.read(1000, &mut out).expect("read");
            if out.is_empty() {
                return read;
            }
            for (origin, record) in out {
                files.acknowledge(origin, record.end_offset);
                let text = String::from_utf8(record.data).expect("utf-8");
                read.push(text[5..10].parse().expect("a line number"));
            }
        }
    }

    #[test]
    fn rename_and_create_reads_the_old_file_to_its_end_then_the_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("app.log");
        let mut files =
            FileSet::new(log.with_file_name("app.log*").to_str().expect("utf-8"), cutting(), false, Vec::new())
                .expect("set");
        append(&log, 0..50);
        assert_eq!(drain(&mut files), (0..50).collect::<Vec<_>>());
        append(&log, 50..60);
        std::fs::rename(&log, dir.path().join("app.log.1")).expect("rotated");
        append(&log, 60..70);
        assert_eq!(drain(&mut files), (50..70).collect::<Vec<_>>());
    }

    #[test]
    fn copytruncate_continues_in_the_copy_and_reads_the_truncated_file_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("app.log");
        let mut files =
            FileSet::new(log.with_file_name("app.log*").to_str().expect("utf-8"), cutting(), false, Vec::new())
                .expect("set");
        append(&log, 0..40);
        assert_eq!(drain(&mut files), (0..40).collect::<Vec<_>>());
        append(&log, 40..45);
        std::fs::copy(&log, dir.path().join("app.log.1")).expect("copied");
        std::fs::OpenOptions::new().write(true).truncate(true).open(&log).expect("truncated");
        append(&log, 45..50);
        let mut read = drain(&mut files);
        read.sort_unstable();
        assert_eq!(read, (40..50).collect::<Vec<_>>(), "nothing lost, nothing twice");
    }

    #[test]
    fn a_copy_is_not_checkpointed_past_records_still_on_their_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("app.log");
        let mut files =
            FileSet::new(log.with_file_name("app.log*").to_str().expect("utf-8"), cutting(), false, Vec::new())
                .expect("set");
        append(&log, 0..20);
        files.scan().expect("scan");
        let mut unacknowledged = Vec::new();
        files.read(1000, &mut unacknowledged).expect("read");
        assert_eq!(unacknowledged.len(), 20);
        std::fs::copy(&log, dir.path().join("app.log.1")).expect("copied");
        std::fs::OpenOptions::new().write(true).truncate(true).open(&log).expect("truncated");
        files.scan().expect("scan");
        let copy =
            files.checkpoints().into_iter().find(|c| c.path.ends_with("app.log.1")).expect("the copy is followed");
        assert_eq!(copy.offset, 0, "the twenty records in flight are not acknowledged yet");
    }

    #[test]
    fn a_restart_resumes_at_the_checkpoint_even_across_a_copytruncate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("app.log");
        let pattern = log.with_file_name("app.log*");
        let pattern = pattern.to_str().expect("utf-8");
        let mut files = FileSet::new(pattern, cutting(), false, Vec::new()).expect("set");
        append(&log, 0..30);
        assert_eq!(drain(&mut files).len(), 30);
        let saved = files.checkpoints();
        drop(files);
        append(&log, 30..35);
        std::fs::copy(&log, dir.path().join("app.log.1")).expect("copied");
        std::fs::OpenOptions::new().write(true).truncate(true).open(&log).expect("truncated");
        append(&log, 35..40);
        let mut files = FileSet::new(pattern, cutting(), true, saved).expect("set");
        let mut read = drain(&mut files);
        read.sort_unstable();
        assert_eq!(read, (30..40).collect::<Vec<_>>());
    }

    #[test]
    fn end_of_file_skips_what_was_there_at_a_first_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("app.log");
        append(&log, 0..10);
        let mut files = FileSet::new(log.to_str().expect("utf-8"), cutting(), true, Vec::new()).expect("set");
        assert!(drain(&mut files).is_empty());
        append(&log, 10..12);
        assert_eq!(drain(&mut files), vec![10, 11]);
    }
}
