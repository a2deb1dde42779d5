//! What a power cut would take back: for each file written since its last fsync, the length it
//! had then and the bytes it held where it has been overwritten since. A power cut (`discard`)
//! puts every such file back to that state; an fsync (`synced`) forgets the file's record.
//!
//! The model is the one applications must assume of a disk's write cache: data reaches the
//! platter only through fsync/fdatasync. Names (create, rename, unlink) are taken as durable at
//! once, as a journaling filesystem's metadata mostly is; a new file nobody synced comes back
//! empty.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;

/// One file's changes since its last fsync.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Changes {
    /// The file's length at its last fsync (0 for a file created since).
    durable_len: u64,
    /// (offset, bytes there at the last fsync) of every overwrite inside `durable_len`, oldest
    /// first: restored newest first, so each range ends as the oldest saved bytes say.
    overwritten: Vec<(u64, Vec<u8>)>,
}

/// Every file's changes, by inode.
#[derive(Debug, Default)]
pub struct Unsynced {
    files: HashMap<u64, Changes>,
}

impl Unsynced {
    /// Notes a new (empty) file: nothing of it is durable until it is synced.
    pub fn created(&mut self, ino: u64) {
        self.files.insert(ino, Changes::default());
    }

    /// Notes a write of `len` bytes at `offset` to `file` (inode `ino`), before it is made.
    pub fn writing(&mut self, ino: u64, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let changes = self.changes(ino, file)?;
        let end = (offset + len).min(changes.durable_len);
        if offset < end {
            let mut old = vec![0u8; (end - offset) as usize];
            file.read_exact_at(&mut old, offset)?;
            changes.overwritten.push((offset, old));
        }
        Ok(())
    }

    /// Notes a truncation of `file` to `len`, before it is made.
    pub fn truncating(&mut self, ino: u64, file: &File, len: u64) -> io::Result<()> {
        let changes = self.changes(ino, file)?;
        if len < changes.durable_len {
            let mut old = vec![0u8; (changes.durable_len - len) as usize];
            file.read_exact_at(&mut old, len)?;
            changes.overwritten.push((len, old));
        }
        Ok(())
    }

    /// The file is durable as it is now.
    pub fn synced(&mut self, ino: u64) {
        self.files.remove(&ino);
    }

    /// The file is gone (its last name was removed).
    pub fn removed(&mut self, ino: u64) {
        self.files.remove(&ino);
    }

    /// The power cut: every file with changes goes back to its state at its last fsync.
    /// `open` opens a file by inode (None: it is gone, nothing to put back). Returns how many
    /// files lost something.
    pub fn discard(&mut self, mut open: impl FnMut(u64) -> Option<File>) -> io::Result<usize> {
        let mut reverted = 0;
        for (ino, changes) in self.files.drain() {
            let Some(file) = open(ino) else { continue };
            file.set_len(changes.durable_len)?;
            for (offset, bytes) in changes.overwritten.iter().rev() {
                file.write_all_at(bytes, *offset)?;
            }
            file.sync_all()?;
            reverted += 1;
        }
        Ok(reverted)
    }

    fn changes(&mut self, ino: u64, file: &File) -> io::Result<&mut Changes> {
        match self.files.entry(ino) {
            std::collections::hash_map::Entry::Occupied(changes) => Ok(changes.into_mut()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let durable_len = file.metadata()?.len();
                Ok(slot.insert(Changes { durable_len, overwritten: Vec::new() }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(dir: &std::path::Path, bytes: &[u8]) -> (File, std::path::PathBuf) {
        let path = dir.join("f");
        std::fs::write(&path, bytes).expect("write");
        (std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open"), path)
    }

    #[test]
    fn a_power_cut_takes_back_appends_overwrites_and_truncations_since_the_last_sync() {
        let dir = tempfile::tempdir().expect("dir");
        let (file, path) = file_with(dir.path(), b"durable!");
        let mut unsynced = Unsynced::default();
        unsynced.writing(1, &file, 8, 4).expect("note");
        file.write_all_at(b"more", 8).expect("append");
        unsynced.writing(1, &file, 2, 3).expect("note");
        file.write_all_at(b"XYZ", 2).expect("overwrite");
        unsynced.writing(1, &file, 3, 2).expect("note");
        file.write_all_at(b"QQ", 3).expect("overwrite again");
        assert_eq!(unsynced.discard(|_| std::fs::OpenOptions::new().write(true).open(&path).ok()).expect("cut"), 1);
        assert_eq!(std::fs::read(&path).expect("read"), b"durable!");

        let (file, path) = file_with(dir.path(), b"0123456789");
        unsynced.truncating(2, &file, 4).expect("note");
        file.set_len(4).expect("truncate");
        unsynced.discard(|_| std::fs::OpenOptions::new().write(true).open(&path).ok()).expect("cut");
        assert_eq!(std::fs::read(&path).expect("read"), b"0123456789");
    }

    #[test]
    fn synced_data_survives_and_a_new_unsynced_file_comes_back_empty() {
        let dir = tempfile::tempdir().expect("dir");
        let (file, path) = file_with(dir.path(), b"");
        let mut unsynced = Unsynced::default();
        unsynced.created(1);
        unsynced.writing(1, &file, 0, 5).expect("note");
        file.write_all_at(b"first", 0).expect("write");
        unsynced.synced(1);
        unsynced.writing(1, &file, 5, 6).expect("note");
        file.write_all_at(b"second", 5).expect("write");
        unsynced.discard(|_| std::fs::OpenOptions::new().write(true).open(&path).ok()).expect("cut");
        assert_eq!(std::fs::read(&path).expect("read"), b"first");

        let fresh = dir.path().join("fresh");
        std::fs::write(&fresh, b"never synced").expect("write");
        unsynced.created(2);
        unsynced.discard(|_| std::fs::OpenOptions::new().write(true).open(&fresh).ok()).expect("cut");
        assert_eq!(std::fs::read(&fresh).expect("read"), b"");
    }
}
