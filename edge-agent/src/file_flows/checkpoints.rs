//! Where each flow's files were read to, acknowledged: one JSON file (`checkpointFile`)
//! replaced atomically (written beside, synced, renamed), so a restart resumes at the last
//! acknowledged record of every file and a crash at worst sends the records since again.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// A file's identity and acknowledged position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// Just past the last acknowledged record.
    pub offset: u64,
    /// The file's first bytes, by length and CRC: a reused inode, or a copy, is told by them.
    pub head_len: u64,
    pub head_crc: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    flows: BTreeMap<String, Vec<FileCheckpoint>>,
}

#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    stored: Mutex<Stored>,
    /// Whether the file existed at start: `initialPosition` applies only to a first start.
    existed: bool,
}

impl Checkpoints {
    pub fn open(path: &Path) -> anyhow::Result<Checkpoints> {
        let (stored, existed) = match std::fs::read(path) {
            Ok(bytes) => (
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a checkpoint file", path.display()))?,
                true,
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => (Stored::default(), false),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(Checkpoints { path: path.to_path_buf(), stored: Mutex::new(stored), existed })
    }

    pub fn existed(&self) -> bool {
        self.existed
    }

    pub fn of(&self, flow: &str) -> Vec<FileCheckpoint> {
        self.stored.lock().map(|s| s.flows.get(flow).cloned().unwrap_or_default()).unwrap_or_default()
    }

    /// Replaces a flow's checkpoints and writes the file durably.
    pub fn save(&self, flow: &str, files: Vec<FileCheckpoint>) -> anyhow::Result<()> {
        let mut stored = self.stored.lock().map_err(|_| anyhow::anyhow!("checkpoint lock poisoned"))?;
        stored.flows.insert(flow.to_string(), files);
        let bytes = serde_json::to_vec_pretty(&*stored)?;
        let temporary = self.path.with_extension("tmp");
        let mut file =
            std::fs::File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path).with_context(|| format!("replacing {}", self.path.display()))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir).and_then(|d| d.sync_all())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_checkpoints_are_read_back_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/checkpoints");
        let first = Checkpoints::open(&path).expect("opens");
        assert!(!first.existed());
        let file = FileCheckpoint { path: "/var/log/a".into(), dev: 1, ino: 2, offset: 30, head_len: 30, head_crc: 7 };
        first.save("flow", vec![file.clone()]).expect("saved");
        let again = Checkpoints::open(&path).expect("opens");
        assert!(again.existed());
        assert_eq!(again.of("flow"), vec![file]);
        assert!(again.of("other").is_empty());
    }
}
