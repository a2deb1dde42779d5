//! Keeping image generation's `file://` destinations inside the images root. A destination is
//! judged by its canonical form: `..` is refused outright, and a symlink on the way counts by
//! where it leads, so one that leads out of the root is refused. The check runs when the
//! destination is configured and again, one directory at a time, whenever a picture is written:
//! a symlink planted later cannot take the write elsewhere either.

use std::io;
use std::path::{Component, Path, PathBuf};

/// A path that would leave the images root.
#[derive(Debug, thiserror::Error)]
pub enum Escape {
    #[error("{path} is not an absolute path without '..'")]
    NotPlain { path: PathBuf },
    #[error("{path} is outside the images root {root}")]
    Outside { path: PathBuf, root: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The canonical form of directory `dir` (which need not exist yet) when it lies under `root`
/// (itself canonical): the canonical form of its deepest existing ancestor, then the rest.
pub fn confine(root: &Path, dir: &Path) -> Result<PathBuf, Escape> {
    let plain = dir.is_absolute() && dir.components().all(|c| !matches!(c, Component::ParentDir));
    if !plain {
        return Err(Escape::NotPlain { path: dir.to_path_buf() });
    }
    for ancestor in dir.ancestors() {
        match std::fs::canonicalize(ancestor) {
            Ok(real) => {
                let rest = dir.strip_prefix(ancestor).unwrap_or(Path::new(""));
                return inside(root, real.join(rest));
            }
            // An entry that exists but does not resolve (a dangling or looping symlink) cannot
            // be judged by where it leads.
            Err(source) if std::fs::symlink_metadata(ancestor).is_ok() => {
                return Err(Escape::Io { path: ancestor.to_path_buf(), source });
            }
            Err(_) => {}
        }
    }
    Err(Escape::Outside { path: dir.to_path_buf(), root: root.to_path_buf() })
}

fn inside(root: &Path, path: PathBuf) -> Result<PathBuf, Escape> {
    if path.starts_with(root) { Ok(path) } else { Err(Escape::Outside { path, root: root.to_path_buf() }) }
}

/// Creates directory `dir` under `root` one level at a time, checking where each level really
/// is before going into it (so nothing is ever created beyond a symlink that leads out); its
/// canonical path.
pub fn ensure_dir(root: &Path, dir: &Path) -> Result<PathBuf, Escape> {
    let target = confine(root, dir)?;
    let rest = target.strip_prefix(root).unwrap_or(Path::new("")).to_path_buf();
    let mut current = root.to_path_buf();
    for part in rest.components() {
        let next = current.join(part);
        match std::fs::create_dir(&next) {
            // mkdir does not follow a symlink already at `next`: it fails with AlreadyExists, and
            // the canonical form below says where that symlink leads.
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(Escape::Io { path: next, source }),
        }
        let real = std::fs::canonicalize(&next).map_err(|source| Escape::Io { path: next.clone(), source })?;
        current = inside(root, real)?;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    struct Dirs {
        _temp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    fn dirs() -> Dirs {
        let temp = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(temp.path()).expect("canonical");
        let (root, outside) = (base.join("images"), base.join("outside"));
        std::fs::create_dir_all(&root).expect("root");
        std::fs::create_dir_all(&outside).expect("outside");
        Dirs { _temp: temp, root, outside }
    }

    #[test]
    fn destinations_under_the_root_pass_and_dot_dot_or_escaping_symlinks_do_not() {
        let d = dirs();
        assert_eq!(confine(&d.root, &d.root).expect("the root"), d.root);
        assert_eq!(confine(&d.root, &d.root.join("cam/new")).expect("under"), d.root.join("cam/new"));
        assert!(matches!(confine(&d.root, &d.root.join("../outside")), Err(Escape::NotPlain { .. })));
        assert!(matches!(confine(&d.root, Path::new("relative/dir")), Err(Escape::NotPlain { .. })));
        assert!(matches!(confine(&d.root, &d.outside), Err(Escape::Outside { .. })));

        symlink(&d.outside, d.root.join("escape")).expect("symlink");
        assert!(matches!(confine(&d.root, &d.root.join("escape/cam")), Err(Escape::Outside { .. })));
        std::fs::create_dir(d.root.join("real")).expect("dir");
        symlink(d.root.join("real"), d.root.join("alias")).expect("symlink");
        assert_eq!(confine(&d.root, &d.root.join("alias/cam")).expect("inside"), d.root.join("real/cam"));
        symlink(d.root.join("nowhere"), d.root.join("dangling")).expect("symlink");
        assert!(matches!(confine(&d.root, &d.root.join("dangling/cam")), Err(Escape::Io { .. })));
    }

    #[test]
    fn a_symlink_planted_after_configuration_stops_the_write_and_creates_nothing_outside() {
        let d = dirs();
        let dir = d.root.join("cam/2026/01");
        assert_eq!(ensure_dir(&d.root, &dir).expect("created"), dir);
        std::fs::remove_dir_all(d.root.join("cam")).expect("remove");
        symlink(&d.outside, d.root.join("cam")).expect("planted");
        assert!(matches!(ensure_dir(&d.root, &dir), Err(Escape::Outside { .. })));
        assert_eq!(std::fs::read_dir(&d.outside).expect("list").count(), 0, "a directory was made outside the root");
    }
}
