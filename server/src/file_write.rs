//! Writing a file whole or not at all, with its permissions set from its first byte: a fresh
//! temp file beside it (`create_new`, so a link planted at the temp name is never followed),
//! fsync, rename over the target (which replaces a link rather than following it), and an fsync
//! of the directory so the rename itself survives a crash. Key files, the credentials file and
//! certificates all go through here.

use std::io::Write as _;
use std::path::Path;

/// Replaces `path` with `bytes`, created with permission bits `mode` (Unix).
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let directory = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = directory.join(format!(".{name}.tmp"));
    // A temp file left by a crash mid-write is ours to replace.
    match std::fs::remove_file(&temp) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    std::fs::File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_replaced_file_has_its_mode_and_a_planted_link_is_replaced_not_followed() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"keep").expect("outside");
        let target = dir.path().join("key.pem");
        std::os::unix::fs::symlink(&outside, &target).expect("link");
        std::os::unix::fs::symlink(&outside, dir.path().join(".key.pem.tmp")).expect("temp link");
        replace_file(&target, b"secret", 0o600).expect("written");
        assert_eq!(std::fs::read(&outside).expect("outside"), b"keep");
        assert_eq!(std::fs::read(&target).expect("target"), b"secret");
        let mode = std::fs::symlink_metadata(&target).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
