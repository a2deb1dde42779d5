//! The power-cut filesystem itself (media-tests/src/faultfs): mounted for real, what a process
//! synced survives a cut and what it did not is gone, whatever the process did in between.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;

use framelog_media_tests::faultfs::FaultMount;

#[test]
fn a_power_cut_keeps_what_was_synced_and_takes_back_the_rest() {
    let dir = tempfile::tempdir().expect("dir");
    let (backing, mountpoint) = (dir.path().join("backing"), dir.path().join("mounted"));
    std::fs::create_dir_all(&backing).expect("backing");
    std::fs::create_dir_all(&mountpoint).expect("mountpoint");
    let mount = FaultMount::mount(&backing, &mountpoint).expect("mount (as root)");

    let mut log = std::fs::File::create(mountpoint.join("log")).expect("create");
    log.write_all(b"synced|").expect("write");
    log.sync_data().expect("fdatasync");
    log.write_all(b"lost").expect("write");
    log.write_at(b"SYN", 0).expect("overwrite");
    std::fs::create_dir(mountpoint.join("sub")).expect("mkdir");
    std::fs::write(mountpoint.join("sub/never-synced"), b"gone").expect("write");
    let mut renamed = std::fs::File::create(mountpoint.join("tmp")).expect("create");
    renamed.write_all(b"kept by rename").expect("write");
    renamed.sync_all().expect("fsync");
    std::fs::rename(mountpoint.join("tmp"), mountpoint.join("current")).expect("rename");
    assert_eq!(std::fs::read(mountpoint.join("log")).expect("read"), b"SYNced|lost");
    drop((log, renamed));

    assert_eq!(mount.power_cut().expect("cut"), 2, "the log and the unsynced file lost something");
    assert_eq!(std::fs::read(mountpoint.join("log")).expect("read"), b"synced|");
    assert_eq!(std::fs::read(mountpoint.join("sub/never-synced")).expect("read"), b"");
    assert_eq!(std::fs::read(mountpoint.join("current")).expect("read"), b"kept by rename");
    assert_eq!(std::fs::read(backing.join("log")).expect("read"), b"synced|", "the backing files were put back");
}
