//! The FUSE side of the power-cut filesystem: a passthrough to a backing directory that tells
//! `Unsynced` about every write, truncation, fsync and removal before doing it. Inodes are the
//! backing files' own; attributes are never cached by the kernel (TTL 0), so after a power cut
//! the next process sees the files as they were put back.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

use super::unsynced::Unsynced;

const TTL: Duration = Duration::ZERO;
const ROOT_INO: u64 = 1;

/// What the filesystem and its owner (who cuts the power) share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Inode -> its path in the backing directory.
    pub paths: HashMap<u64, PathBuf>,
    pub unsynced: Unsynced,
}

pub struct FaultFs {
    shared: Arc<Mutex<Shared>>,
    /// Open files: handle -> (inode, file, opened for appending).
    handles: HashMap<u64, (u64, File, bool)>,
    next_handle: u64,
}

fn errno(error: &io::Error) -> i32 {
    error.raw_os_error().unwrap_or(rustix::io::Errno::IO.raw_os_error())
}

fn attr(ino: u64, meta: &std::fs::Metadata) -> FileAttr {
    let time = |secs: i64, nanos: i64| UNIX_EPOCH + Duration::new(secs.max(0) as u64, nanos.max(0) as u32);
    let kind = if meta.is_dir() {
        FileType::Directory
    } else if meta.file_type().is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    };
    FileAttr {
        ino,
        size: meta.len(),
        blocks: meta.blocks(),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: SystemTime::UNIX_EPOCH,
        kind,
        perm: (meta.mode() & 0o7777) as u16,
        nlink: meta.nlink() as u32,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl FaultFs {
    pub fn new(backing: &Path, shared: Arc<Mutex<Shared>>) -> FaultFs {
        shared.lock().unwrap_or_else(|e| e.into_inner()).paths.insert(ROOT_INO, backing.to_path_buf());
        FaultFs { shared, handles: HashMap::new(), next_handle: 1 }
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, ino: u64) -> Option<PathBuf> {
        self.shared().paths.get(&ino).cloned()
    }

    fn child(&self, parent: u64, name: &OsStr) -> Option<PathBuf> {
        self.path(parent).map(|p| p.join(name))
    }

    /// The FUSE inode of a backing path (its own inode; the root's is 1), remembered.
    fn known(&self, path: &Path) -> io::Result<(u64, FileAttr)> {
        let meta = std::fs::symlink_metadata(path)?;
        let ino = if Some(path) == self.path(ROOT_INO).as_deref() { ROOT_INO } else { meta.ino() };
        self.shared().paths.insert(ino, path.to_path_buf());
        Ok((ino, attr(ino, &meta)))
    }

    fn handle(&mut self, ino: u64, file: File, append: bool) -> u64 {
        let handle = self.next_handle;
        self.next_handle += 1;
        self.handles.insert(handle, (ino, file, append));
        handle
    }

    /// After a rename, every remembered path under `from` moves under `to`.
    fn moved(&self, from: &Path, to: &Path) {
        let mut shared = self.shared();
        for path in shared.paths.values_mut() {
            if let Ok(rest) = path.strip_prefix(from) {
                *path = to.join(rest);
            }
        }
    }
}

fn open_options(flags: i32) -> (OpenOptions, bool) {
    let mut options = OpenOptions::new();
    let access = flags & libc_o::ACCMODE;
    options.read(access != libc_o::WRONLY).write(access != libc_o::RDONLY);
    let append = flags & libc_o::APPEND != 0;
    (options, append)
}

/// The open(2) flag bits the passthrough looks at (Linux values).
mod libc_o {
    pub const ACCMODE: i32 = 0o3;
    pub const RDONLY: i32 = 0o0;
    pub const WRONLY: i32 = 0o1;
    pub const APPEND: i32 = 0o2000;
    pub const TRUNC: i32 = 0o1000;
}

impl Filesystem for FaultFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let Some(path) = self.child(parent, name) else { return reply.error(rustix::io::Errno::NOENT.raw_os_error()) };
        match self.known(&path) {
            Ok((_, attr)) => reply.entry(&TTL, &attr, 0),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        let Some(path) = self.path(ino) else { return reply.error(rustix::io::Errno::NOENT.raw_os_error()) };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => reply.attr(&TTL, &attr(ino, &meta)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let Some(path) = self.path(ino) else { return reply.error(rustix::io::Errno::NOENT.raw_os_error()) };
        let changed = (|| -> io::Result<()> {
            if let Some(len) = size {
                let file = OpenOptions::new().read(true).write(true).open(&path)?;
                self.shared().unsynced.truncating(ino, &file, len)?;
                file.set_len(len)?;
            }
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
            Ok(())
        })();
        match changed.and_then(|()| std::fs::symlink_metadata(&path)) {
            Ok(meta) => reply.attr(&TTL, &attr(ino, &meta)),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn mkdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let Some(path) = self.child(parent, name) else { return reply.error(rustix::io::Errno::NOENT.raw_os_error()) };
        let made = std::fs::create_dir(&path)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !umask & 0o7777)))
            .and_then(|()| self.known(&path));
        match made {
            Ok((_, attr)) => reply.entry(&TTL, &attr, 0),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let Some(path) = self.child(parent, name) else { return reply.error(rustix::io::Errno::NOENT.raw_os_error()) };
        let removed = std::fs::symlink_metadata(&path).and_then(|meta| std::fs::remove_file(&path).map(|()| meta));
        match removed {
            Ok(meta) => {
                let mut shared = self.shared();
                if meta.nlink() <= 1 {
                    shared.unsynced.removed(meta.ino());
                    shared.paths.remove(&meta.ino());
                }
                reply.ok()
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let Some(path) = self.child(parent, name) else { return reply.error(rustix::io::Errno::NOENT.raw_os_error()) };
        match std::fs::remove_dir(&path) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        let (Some(from), Some(to)) = (self.child(parent, name), self.child(newparent, newname)) else {
            return reply.error(rustix::io::Errno::NOENT.raw_os_error());
        };
        let replaced = std::fs::symlink_metadata(&to).ok().filter(|m| m.is_file() && m.nlink() <= 1).map(|m| m.ino());
        match std::fs::rename(&from, &to) {
            Ok(()) => {
                if let Some(ino) = replaced {
                    let mut shared = self.shared();
                    shared.unsynced.removed(ino);
                    shared.paths.remove(&ino);
                }
                self.moved(&from, &to);
                reply.ok()
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let Some(path) = self.path(ino) else { return reply.error(rustix::io::Errno::NOENT.raw_os_error()) };
        let (mut options, append) = open_options(flags);
        if flags & libc_o::TRUNC != 0 {
            // Truncation on open: noted like any other.
            if let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) {
                let _ = self.shared().unsynced.truncating(ino, &file, 0);
            }
            options.truncate(true);
        }
        match options.open(&path) {
            Ok(file) => {
                let handle = self.handle(ino, file, append);
                reply.opened(handle, 0)
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let Some(path) = self.child(parent, name) else { return reply.error(rustix::io::Errno::NOENT.raw_os_error()) };
        let (mut options, append) = open_options(flags);
        options.read(true).write(true).create(true).truncate(flags & libc_o::TRUNC != 0).mode(mode & !umask & 0o7777);
        let existed = path.exists();
        let created = options.open(&path).and_then(|file| self.known(&path).map(|(ino, attr)| (file, ino, attr)));
        match created {
            Ok((file, ino, attr)) => {
                if !existed {
                    self.shared().unsynced.created(ino);
                }
                let handle = self.handle(ino, file, append);
                reply.created(&TTL, &attr, 0, handle, 0)
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Some((_, file, _)) = self.handles.get(&fh) else {
            return reply.error(rustix::io::Errno::BADF.raw_os_error());
        };
        let mut buffer = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read_at(&mut buffer[filled..], offset as u64 + filled as u64) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) => return reply.error(errno(&error)),
            }
        }
        reply.data(&buffer[..filled])
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let Some((_, file, append)) = self.handles.get(&fh) else {
            return reply.error(rustix::io::Errno::BADF.raw_os_error());
        };
        let written = (|| -> io::Result<()> {
            // An appending handle writes at the end, whatever offset the kernel passed.
            let at = if *append { file.metadata()?.len() } else { offset as u64 };
            self.shared.lock().unwrap_or_else(|e| e.into_inner()).unsynced.writing(ino, file, at, data.len() as u64)?;
            file.write_all_at(data, at)
        })();
        match written {
            Ok(()) => reply.written(data.len() as u32),
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        reply.ok()
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles.remove(&fh);
        reply.ok()
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, fh: u64, _datasync: bool, reply: ReplyEmpty) {
        let Some((_, file, _)) = self.handles.get(&fh) else {
            return reply.error(rustix::io::Errno::BADF.raw_os_error());
        };
        match file.sync_all() {
            Ok(()) => {
                self.shared.lock().unwrap_or_else(|e| e.into_inner()).unsynced.synced(ino);
                reply.ok()
            }
            Err(error) => reply.error(errno(&error)),
        }
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let Some(path) = self.path(ino) else { return reply.error(rustix::io::Errno::NOENT.raw_os_error()) };
        let listed = std::fs::read_dir(&path).and_then(|entries| entries.collect::<io::Result<Vec<_>>>());
        let mut entries = match listed {
            Ok(entries) => entries,
            Err(error) => return reply.error(errno(&error)),
        };
        entries.sort_by_key(|e| e.file_name());
        let mut all: Vec<(u64, FileType, std::ffi::OsString)> =
            vec![(ino, FileType::Directory, ".".into()), (ino, FileType::Directory, "..".into())];
        for entry in entries {
            let kind = match entry.file_type() {
                Ok(t) if t.is_dir() => FileType::Directory,
                Ok(t) if t.is_symlink() => FileType::Symlink,
                _ => FileType::RegularFile,
            };
            let entry_ino = entry.metadata().map(|m| m.ino()).unwrap_or(0);
            all.push((entry_ino, kind, entry.file_name()));
        }
        for (index, (entry_ino, kind, name)) in all.into_iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(entry_ino, index as i64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok()
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        // Names are durable at once in this model (unsynced.rs).
        reply.ok()
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let Some(root) = self.path(ROOT_INO) else { return reply.error(rustix::io::Errno::NOENT.raw_os_error()) };
        match rustix::fs::statvfs(&root) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(error) => reply.error(error.raw_os_error()),
        }
    }
}
