//! Backups of a live engine and the free-space watermark: a backup taken while writers append
//! opens as an engine holding every entry appended before it began, byte for byte, in every
//! payload placement; a disk under the watermark refuses appends with a typed error and keeps
//! serving reads.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use framelog_store::{Engine, EngineOptions, NewEntry, Position, StoreError, StreamKind, SystemClock, new_stream_meta};

/// Sizes that land inline, in a blob file and in a segment file.
const PAYLOAD_BYTES: [usize; 3] = [100, 40_000, 300_000];

fn payload(index: usize) -> Vec<u8> {
    let size = PAYLOAD_BYTES[index % PAYLOAD_BYTES.len()];
    (0..size).map(|i| (i as u8).wrapping_mul(17).wrapping_add(index as u8)).collect()
}

fn entry(shard: u32, index: usize) -> NewEntry {
    NewEntry { shard, producer_ts_ms: None, attrs: index.to_be_bytes().to_vec(), payload: payload(index) }
}

fn open(dir: &Path, options: EngineOptions) -> Engine {
    Engine::open(dir, Arc::new(SystemClock), options).expect("engine opens")
}

/// Every entry of the shard as (attrs, payload).
fn entries(engine: &Engine, name: &str, shard: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    let stream = engine.stream(name).expect("stream");
    let from = engine.resolve(&stream, shard, Position::TrimHorizon).expect("resolve");
    let batch = engine.read(&stream, shard, from, usize::MAX, usize::MAX).expect("read");
    batch.entries.into_iter().map(|e| (e.attrs, e.payload)).collect()
}

#[test]
fn a_backup_under_load_holds_every_entry_appended_before_it_began() {
    let dir = tempfile::tempdir().expect("test step");
    let engine = open(&dir.path().join("live"), EngineOptions::default());
    let stream =
        engine.create_stream(new_stream_meta("cam", StreamKind::Video, "arn:cam", 2, 24, 0)).expect("test step");
    for index in 0..30 {
        engine.append_blocking(&stream, vec![entry(index as u32 % 2, index)]).expect("test step");
    }
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (engine, stream, writing) = (engine.clone(), stream.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut index = 30;
            while writing.load(Ordering::Acquire) {
                engine.append_blocking(&stream, vec![entry(index as u32 % 2, index)]).expect("test step");
                index += 1;
            }
            index
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    let stats = engine.backup(&dir.path().join("copy")).expect("backup");
    writing.store(false, Ordering::Release);
    let written = writer.join().expect("test step");
    assert!(written > 30, "the writer appended while the backup ran");
    assert!(stats.files > 0 && stats.bytes > 300_000, "{stats:?}");

    let copy = open(&dir.path().join("copy"), EngineOptions::default());
    for shard in 0..2 {
        let restored = entries(&copy, "cam", shard);
        let live = entries(&engine, "cam", shard);
        let before: Vec<_> =
            (0..30).filter(|i| i % 2 == shard as usize).map(|i| (i.to_be_bytes().to_vec(), payload(i))).collect();
        assert!(restored.len() >= before.len(), "shard {shard}: {} of {} entries", restored.len(), before.len());
        assert_eq!(restored[..before.len()], before[..], "shard {shard}: the entries from before the backup");
        // Whatever else the copy holds is the live engine's own prefix, intact.
        assert_eq!(restored[..], live[..restored.len()], "shard {shard}: the copy is a prefix of the live log");
    }
}

#[test]
fn a_backup_refuses_a_target_that_exists() {
    let dir = tempfile::tempdir().expect("test step");
    let engine = open(&dir.path().join("live"), EngineOptions::default());
    std::fs::create_dir(dir.path().join("copy")).expect("test step");
    assert!(engine.backup(&dir.path().join("copy")).is_err());
}

#[test]
fn under_the_watermark_appends_are_refused_reads_go_on_and_the_engine_reopens() {
    let dir = tempfile::tempdir().expect("test step");
    let engine = open(dir.path(), EngineOptions { min_free_disk_bytes: 0, ..EngineOptions::default() });
    let stream =
        engine.create_stream(new_stream_meta("orders", StreamKind::Data, "arn:o", 1, 24, 0)).expect("test step");
    engine.append_blocking(&stream, vec![entry(0, 0)]).expect("test step");
    drop((engine, stream));

    // No disk has u64::MAX bytes free: every append is under the watermark.
    let full = open(dir.path(), EngineOptions { min_free_disk_bytes: u64::MAX, ..EngineOptions::default() });
    let stream = full.stream("orders").expect("test step");
    let refused = full.append_blocking(&stream, vec![entry(0, 1)]).expect_err("refused");
    assert!(matches!(refused, StoreError::DiskFull { min_free_bytes: u64::MAX, .. }), "{refused}");
    assert_eq!(entries(&full, "orders", 0), vec![(0usize.to_be_bytes().to_vec(), payload(0))]);
    drop((full, stream));

    let freed = open(dir.path(), EngineOptions { min_free_disk_bytes: 0, ..EngineOptions::default() });
    let stream = freed.stream("orders").expect("test step");
    let landed = freed.append_blocking(&stream, vec![entry(0, 1)]).expect("test step");
    assert_eq!(landed[0].seq, 1, "the refused append took no sequence number");
}

#[test]
fn segments_of_streams_the_index_does_not_know_are_removed_at_open() {
    let dir = tempfile::tempdir().expect("dir");
    let engine = open(dir.path(), EngineOptions::default());
    let stream = engine.create_stream(new_stream_meta("cam", StreamKind::Video, "arn:cam", 1, 24, 0)).expect("stream");
    engine.append_blocking(&stream, vec![entry(0, 2)]).expect("a segment payload");
    drop((engine, stream));
    // What a restored backup can hold: the files of a stream created after its checkpoint, whose
    // id the restored engine will give out again.
    let orphan = dir.path().join("segments").join(format!("{:020}", 2)).join("00000");
    std::fs::create_dir_all(&orphan).expect("dir");
    std::fs::write(orphan.join(format!("{:020}.seg", 5)), b"not this stream's").expect("file");
    std::fs::create_dir_all(dir.path().join("segments-backup")).expect("a crashed backup's staging");

    let engine = open(dir.path(), EngineOptions::default());
    assert!(!dir.path().join("segments").join(format!("{:020}", 2)).exists(), "the unknown stream's segments");
    assert!(!dir.path().join("segments-backup").exists(), "the staging directory");
    let next = engine.create_stream(new_stream_meta("new", StreamKind::Video, "arn:new", 1, 24, 0)).expect("stream");
    assert_eq!(next.meta().id, 2, "the id is given out again, to a stream with no old files");
    assert_eq!(entries(&engine, "cam", 0), vec![(2usize.to_be_bytes().to_vec(), payload(2))]);
}
