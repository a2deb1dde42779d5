//! The audit log: one JSON line per mutating call and per refused request, in
//! `<data-dir>/audit/audit.log`, rotated by size (`audit.log.1` is the newest old file).

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// A file grows to this size before it is rotated.
const ROTATE_AT_BYTES: u64 = 16 << 20;
/// Rotated files kept besides the current one.
const KEEP_FILES: u32 = 5;

/// One line.
#[derive(Debug, Serialize)]
pub struct AuditEntry<'a> {
    pub time_ms: u64,
    pub key_id: &'a str,
    pub action: &'a str,
    pub resource: &'a str,
    pub source_ip: &'a str,
    /// `allowed`, `denied`, or the error type of a failed authentication.
    pub result: &'a str,
}

#[derive(Debug)]
struct Sink {
    file: File,
    written_bytes: u64,
}

/// Appends audit lines; writes are plain appends (not fsynced): the log is an operator's record,
/// not a ledger.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: Arc<PathBuf>,
    sink: Arc<Mutex<Option<Sink>>>,
}

impl AuditLog {
    pub fn open(directory: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(directory)?;
        let path = directory.join("audit.log");
        let sink = open_sink(&path)?;
        Ok(AuditLog { path: Arc::new(path), sink: Arc::new(Mutex::new(Some(sink))) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one line; a failing disk is logged, never fails the request. Fields come from
    /// callers who may not be authenticated, so each is cut to `MAX_FIELD_CHARS`: a refused
    /// request must not be able to write (and rotate away history with) megabyte lines.
    pub fn record(&self, entry: &AuditEntry) {
        let (key_id, action, resource) = (clip(entry.key_id), clip(entry.action), clip(entry.resource));
        let entry = AuditEntry { key_id: &key_id, action: &action, resource: &resource, ..*entry };
        let mut line = match serde_json::to_vec(&entry) {
            Ok(line) => line,
            Err(error) => return tracing::error!(%error, "audit entry not encodable"),
        };
        line.push(b'\n');
        let mut guard = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = self.append(&mut guard, &line) {
            tracing::error!(%error, path = %self.path.display(), "audit log write failed");
        }
    }

    fn append(&self, sink: &mut Option<Sink>, line: &[u8]) -> std::io::Result<()> {
        if sink.as_ref().is_none_or(|s| s.written_bytes + line.len() as u64 > ROTATE_AT_BYTES) {
            *sink = None;
            self.rotate()?;
            *sink = Some(open_sink(&self.path)?);
        }
        let Some(open) = sink.as_mut() else { return Ok(()) };
        open.file.write_all(line)?;
        open.written_bytes += line.len() as u64;
        Ok(())
    }

    /// audit.log.4 → .5, …, audit.log → .1; the oldest falls off.
    fn rotate(&self) -> std::io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        for n in (1..KEEP_FILES).rev() {
            if numbered(n).exists() {
                std::fs::rename(numbered(n), numbered(n + 1))?;
            }
        }
        if self.path.exists() {
            std::fs::rename(self.path.as_path(), numbered(1))?;
        }
        Ok(())
    }
}

fn open_sink(path: &Path) -> std::io::Result<Sink> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    let written_bytes = file.metadata()?.len();
    Ok(Sink { file, written_bytes })
}

/// Longest field in an audit line.
const MAX_FIELD_CHARS: usize = 256;

fn clip(field: &str) -> String {
    field.chars().take(MAX_FIELD_CHARS).collect()
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(result: &str) -> AuditEntry<'_> {
        AuditEntry {
            time_ms: 1,
            key_id: "FLAKTEST",
            action: "kinesis:PutRecord",
            resource: "arn:aws:kinesis:us-east-1:000000000000:stream/s",
            source_ip: "127.0.0.1",
            result,
        }
    }

    #[test]
    fn lines_are_json_and_files_rotate_by_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(dir.path()).expect("opens");
        log.record(&entry("allowed"));
        let text = std::fs::read_to_string(log.path()).expect("written");
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("json line");
        assert_eq!(line["action"], "kinesis:PutRecord");
        assert_eq!(line["result"], "allowed");
        let big = AuditEntry { resource: &"x".repeat(1 << 20), ..entry("denied") };
        for _ in 0..(ROTATE_AT_BYTES / 300 + 10) {
            log.record(&big);
        }
        assert!(dir.path().join("audit.log.1").exists(), "16 MiB of lines must rotate the file");
        assert!(std::fs::metadata(log.path()).expect("current").len() <= ROTATE_AT_BYTES);
        let longest = std::fs::read_to_string(log.path()).expect("log").lines().map(str::len).max().unwrap_or(0);
        assert!(longest < 1024, "a huge field is clipped: {longest} bytes");
    }
}
