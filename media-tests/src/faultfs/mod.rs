//! A filesystem for power cuts (FUSE, mounted by the tests as root): a passthrough to a backing
//! directory that remembers every write not made durable by fsync, and on `power_cut` takes all
//! of them back, as a machine losing power would lose its disk cache. kill -9 alone cannot
//! show a wrong fsync order: the page cache survives the process. docs/testing.md (the crash campaign).

mod fs;
mod unsynced;

use std::path::Path;
use std::sync::{Arc, Mutex};

pub use unsynced::Unsynced;

/// A mounted power-cut filesystem; unmounted when dropped.
pub struct FaultMount {
    shared: Arc<Mutex<fs::Shared>>,
    _session: fuser::BackgroundSession,
}

impl std::fmt::Debug for FaultMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultMount(..)")
    }
}

impl FaultMount {
    /// Mounts the filesystem over `backing` at `mountpoint` (an empty directory).
    pub fn mount(backing: &Path, mountpoint: &Path) -> std::io::Result<FaultMount> {
        let shared = Arc::new(Mutex::new(fs::Shared::default()));
        let filesystem = fs::FaultFs::new(backing, shared.clone());
        let options = [fuser::MountOption::FSName("framelog-faultfs".into())];
        let session = fuser::spawn_mount2(filesystem, mountpoint, &options)?;
        Ok(FaultMount { shared, _session: session })
    }

    /// Takes back every write not synced since; call it with no process using the filesystem
    /// (after kill -9). Returns how many files lost something.
    pub fn power_cut(&self) -> std::io::Result<usize> {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let paths = shared.paths.clone();
        shared.unsynced.discard(|ino| {
            let path = paths.get(&ino)?;
            std::fs::OpenOptions::new().write(true).open(path).ok()
        })
    }
}
