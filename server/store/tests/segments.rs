//! Large payloads in segment files: written once (not through RocksDB's WAL or blob files), read
//! back intact, repaired at start-up after a torn write, and deleted whole by retention.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use framelog_store::{Engine, EngineOptions, ManualClock, NewEntry, Position, StreamKind, new_stream_meta};

const HOUR_MS: u64 = 3_600_000;
const START_MS: u64 = 1_700_000_000_000;
const FRAGMENT_BYTES: usize = 256 << 10;

fn options() -> EngineOptions {
    // Four 256 KiB payloads (plus record headers) per file.
    EngineOptions { segment_roll_bytes: 4 * FRAGMENT_BYTES as u64, ..EngineOptions::default() }
}

fn open(dir: &Path, clock: &Arc<ManualClock>) -> Engine {
    Engine::open(dir, clock.clone(), options()).expect("engine opens")
}

fn fragment(seed: u8) -> Vec<u8> {
    (0..FRAGMENT_BYTES).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn video_entry(producer_ms: u64, payload: Vec<u8>) -> NewEntry {
    NewEntry { shard: 0, producer_ts_ms: Some(producer_ms), attrs: b"fragment".to_vec(), payload }
}

/// Every segment file under the engine, in name order.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "seg") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("segments"), &mut out);
    out.sort();
    out
}

fn bytes_with_extension(dir: &Path, extension: &str) -> u64 {
    std::fs::read_dir(dir)
        .expect("engine dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == extension))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn payloads(engine: &Engine, name: &str) -> Vec<(u64, Vec<u8>)> {
    let stream = engine.stream(name).expect("stream");
    let from = engine.resolve(&stream, 0, Position::TrimHorizon).expect("resolve");
    let batch = engine.read(&stream, 0, from, usize::MAX, usize::MAX).expect("read");
    batch.entries.into_iter().map(|e| (e.seq, e.payload)).collect()
}

#[test]
fn large_payloads_are_written_once_to_segment_files_and_read_back() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("v", StreamKind::Video, "arn", 1, 24, START_MS)).expect("create");
    let sent: Vec<Vec<u8>> = (0..10).map(fragment).collect();
    for (index, payload) in sent.iter().enumerate() {
        engine.append_blocking(&stream, vec![video_entry(START_MS + index as u64, payload.clone())]).expect("append");
    }
    // A small record beside them keeps RocksDB's path.
    engine.append_blocking(&stream, vec![video_entry(START_MS + 10, b"small".to_vec())]).expect("append");

    let segment_bytes: u64 = segment_files(dir.path()).iter().map(|p| p.metadata().expect("meta").len()).sum();
    assert_eq!(segment_bytes, 10 * (FRAGMENT_BYTES as u64 + 16), "each payload once, with a 16-byte record header");
    assert_eq!(segment_files(dir.path()).len(), 3, "files roll at four payloads");
    let wal_bytes = bytes_with_extension(dir.path(), "log");
    assert!(wal_bytes < (FRAGMENT_BYTES / 4) as u64, "the WAL holds headers, not payloads: {wal_bytes} bytes");
    engine.close().expect("close");
    assert_eq!(bytes_with_extension(dir.path(), "blob"), 0, "no payload reached a blob file");

    let mut expected: Vec<(u64, Vec<u8>)> = sent.into_iter().enumerate().map(|(i, p)| (i as u64, p)).collect();
    expected.push((10, b"small".to_vec()));
    assert_eq!(payloads(&engine, "v"), expected);
    drop(engine);
    assert_eq!(payloads(&open(dir.path(), &clock), "v"), expected, "and after a restart");
}

#[test]
fn a_torn_payload_is_dropped_at_start_up_and_the_ones_before_it_stay() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Arc::new(ManualClock::new(START_MS));
    {
        let engine = open(dir.path(), &clock);
        let stream =
            engine.create_stream(new_stream_meta("v", StreamKind::Video, "arn", 1, 24, START_MS)).expect("create");
        for seed in 0..3 {
            engine
                .append_blocking(&stream, vec![video_entry(START_MS + u64::from(seed), fragment(seed))])
                .expect("append");
        }
        engine.close().expect("close");
    }
    // The third payload's write was cut halfway, as a crash (or a lying disk) leaves it.
    let file = segment_files(dir.path()).pop().expect("a segment");
    let torn_at = 2 * (FRAGMENT_BYTES as u64 + 16) + 16 + FRAGMENT_BYTES as u64 / 2;
    std::fs::OpenOptions::new().write(true).open(&file).expect("open").set_len(torn_at).expect("tear");

    let engine = open(dir.path(), &clock);

    assert_eq!(payloads(&engine, "v"), vec![(0, fragment(0)), (1, fragment(1))]);
    let stream = engine.stream("v").expect("stream");
    // The torn entry is gone from the index, and its number stays used (see below).
    assert_eq!(stream.tip_seq(0).expect("tip"), 3);
    assert_eq!(engine.entry(&stream, 0, 2).expect("read"), None);
    assert_eq!(file.metadata().expect("meta").len(), 2 * (FRAGMENT_BYTES as u64 + 16), "the torn bytes are cut");
    let by_producer_time = engine.producer_range(&stream, 0, START_MS, START_MS + 2, None, 10).expect("range");
    assert_eq!(by_producer_time, vec![(START_MS, 0), (START_MS + 1, 1)], "no index key of the torn entry is left");
    // Number 2 reached the disk once (torn): it is not assigned again, so no two payloads are
    // ever sealed under one (shard, sequence) nonce.
    let next = engine.append_blocking(&stream, vec![video_entry(START_MS + 9, fragment(9))]).expect("append");
    assert_eq!(next[0].seq, 3);
    assert_eq!(payloads(&engine, "v"), vec![(0, fragment(0)), (1, fragment(1)), (3, fragment(9))]);
    drop(engine);
    let engine = open(dir.path(), &clock);
    assert_eq!(
        engine
            .append_blocking(&engine.stream("v").expect("stream"), vec![video_entry(START_MS + 10, fragment(10))])
            .expect("append")[0]
            .seq,
        4
    );
}

#[test]
fn records_the_index_never_named_are_cut_at_start_up() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Arc::new(ManualClock::new(START_MS));
    {
        let engine = open(dir.path(), &clock);
        let stream =
            engine.create_stream(new_stream_meta("v", StreamKind::Video, "arn", 1, 24, START_MS)).expect("create");
        engine.append_blocking(&stream, vec![video_entry(START_MS, fragment(0))]).expect("append");
        engine.close().expect("close");
    }
    // A whole record (seq 1) written but never committed to the index: the crash came between.
    let file = segment_files(dir.path()).pop().expect("a segment");
    let committed_len = file.metadata().expect("meta").len();
    let mut record = Vec::new();
    record.extend_from_slice(&1u64.to_le_bytes());
    record.extend_from_slice(&(FRAGMENT_BYTES as u32).to_le_bytes());
    record.extend_from_slice(&0u32.to_le_bytes());
    record.extend_from_slice(&fragment(1));
    let mut bytes = std::fs::read(&file).expect("read");
    bytes.extend_from_slice(&record);
    std::fs::write(&file, bytes).expect("write");

    let engine = open(dir.path(), &clock);

    assert_eq!(file.metadata().expect("meta").len(), committed_len);
    assert_eq!(payloads(&engine, "v"), vec![(0, fragment(0))]);
    let stream = engine.stream("v").expect("stream");
    let next = engine.append_blocking(&stream, vec![video_entry(START_MS + 1, fragment(2))]).expect("append");
    assert_eq!(next[0].seq, 2, "the never-indexed record's number is not reused");
}

#[test]
fn retention_deletes_whole_segment_files_once_every_payload_in_them_expired() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("v", StreamKind::Video, "arn", 1, 1, START_MS)).expect("create");
    for seed in 0..10 {
        engine.append_blocking(&stream, vec![video_entry(START_MS, fragment(seed))]).expect("append");
    }
    clock.advance_ms(HOUR_MS / 2);
    for seed in 10..12 {
        engine.append_blocking(&stream, vec![video_entry(START_MS, fragment(seed))]).expect("append");
    }
    // Files: [0..4), [4..8), [8..12): the last one mixes expired and live payloads.
    assert_eq!(segment_files(dir.path()).len(), 3);

    clock.advance_ms(HOUR_MS / 2 + 1);
    let stats = engine.trim_expired().expect("trim");

    assert_eq!((stats.entries_removed, stats.segments_deleted), (10, 2));
    let left = segment_files(dir.path());
    assert_eq!(left.len(), 1);
    assert!(left[0].ends_with("00000000000000000008.seg"), "{left:?}");
    assert_eq!(payloads(&engine, "v"), vec![(10, fragment(10)), (11, fragment(11))]);

    clock.advance_ms(HOUR_MS);
    let stats = engine.trim_expired().expect("trim");
    assert_eq!((stats.entries_removed, stats.segments_deleted), (2, 1));
    assert!(segment_files(dir.path()).is_empty());
    let next = engine.append_blocking(&stream, vec![video_entry(START_MS, fragment(12))]).expect("append");
    assert_eq!(next[0].seq, 12);
    assert_eq!(payloads(&engine, "v"), vec![(12, fragment(12))], "a new file after the open one was deleted");
}

#[test]
fn deleting_a_stream_deletes_its_segments() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("v", StreamKind::Video, "arn", 1, 24, START_MS)).expect("create");
    engine.append_blocking(&stream, vec![video_entry(START_MS, fragment(0))]).expect("append");
    assert_eq!(segment_files(dir.path()).len(), 1);

    engine.delete_stream("v").expect("delete");

    assert!(segment_files(dir.path()).is_empty());
}

#[test]
fn pass_through_readers_get_segment_payloads_as_files_and_others_loaded() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("v", StreamKind::Video, "arn", 1, 24, START_MS)).expect("create");
    engine.append_blocking(&stream, vec![video_entry(START_MS, fragment(3))]).expect("append");
    engine.append_blocking(&stream, vec![video_entry(START_MS + 1, b"small".to_vec())]).expect("append");

    let (first, next) = engine.entry_ref(&stream, 0, 0).expect("read");
    let first = first.expect("an entry");
    assert_eq!((first.seq, next, first.producer_ts_ms), (0, 1, Some(START_MS)));
    let framelog_store::Payload::InFile(file) = first.payload else { panic!("a segment payload comes as its file") };
    // Read back in uneven pieces, as a response streams it.
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < file.len_bytes() {
        let piece = file.read(at, 100_000).expect("piece");
        at += piece.len() as u64;
        pieces.extend(piece);
    }
    assert_eq!(pieces, fragment(3));

    let (second, next) = engine.entry_ref(&stream, 0, 1).expect("read");
    assert!(matches!(second.expect("an entry").payload, framelog_store::Payload::Loaded(ref p) if p == b"small"));
    assert_eq!(engine.entry_ref(&stream, 0, next).expect("read").0.map(|e| e.seq), None, "caught up at the tip");
}
