//! Start-up of a data dir written in an on-disk layout this build does not read: the server
//! process refuses it, names both versions and says what to run, rather than serving it.

use std::process::Command;

use framelog_store::{Engine, EngineOptions, FORMAT_VERSION, SystemClock};

#[test]
fn the_server_refuses_a_data_dir_of_a_newer_layout_and_says_what_to_do() {
    let data_dir = tempfile::tempdir().expect("test step");
    let engine_dir = data_dir.path().join("engine");
    drop(Engine::open(&engine_dir, std::sync::Arc::new(SystemClock), EngineOptions::default()).expect("test step"));
    {
        // What a later release would have stamped.
        let names = ["meta", "entries", "payloads", "time_index"];
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &engine_dir, names).expect("test step");
        let meta = db.cf_handle("meta").expect("test step");
        db.put_cf(meta, b"format_version", (FORMAT_VERSION + 1).to_be_bytes()).expect("test step");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_framelog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .output()
        .expect("test step");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("on-disk format is version {}", FORMAT_VERSION + 1)), "{stderr}");
    assert!(stderr.contains(&format!("reads versions 1 to {FORMAT_VERSION}")), "{stderr}");
    assert!(stderr.contains("framelog restore"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
