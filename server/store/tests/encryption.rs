//! Payload encryption at rest: sealed on disk, read back transparently, readable after
//! encryption is turned off, unreadable without the master key.

use std::path::Path;
use std::sync::Arc;

use framelog_store::{
    Engine, EngineOptions, MasterKey, NewEntry, Position, StreamEncryption, StreamKind, SystemClock, new_stream_meta,
};

const MARKER: &[u8] = b"plaintext-marker-7f3a9c1e5b2d4f60";

fn options(master: Option<[u8; 32]>) -> EngineOptions {
    let master_key = master.map(|bytes| Arc::new(MasterKey::from_bytes(&bytes).expect("key")));
    EngineOptions { master_key, ..EngineOptions::default() }
}

fn entry(size: usize) -> NewEntry {
    let mut payload = MARKER.to_vec();
    payload.resize(size, b'x');
    NewEntry { shard: 0, producer_ts_ms: None, attrs: b"k".to_vec(), payload }
}

/// Whether any file under `dir` contains `needle`.
fn found_on_disk(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).expect("dir").flatten().any(|item| {
        let path = item.path();
        if path.is_dir() {
            return found_on_disk(&path, needle);
        }
        std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

fn read_all(engine: &Engine, name: &str) -> framelog_store::Result<Vec<Vec<u8>>> {
    let stream = engine.stream(name)?;
    let from = engine.resolve(&stream, 0, Position::TrimHorizon)?;
    Ok(engine.read(&stream, 0, from, 100, usize::MAX)?.entries.into_iter().map(|e| e.payload).collect())
}

#[test]
fn encrypted_payloads_never_reach_the_disk_in_clear() {
    let dir = tempfile::tempdir().expect("dir");
    let engine = Engine::open(dir.path(), Arc::new(SystemClock), options(Some([9; 32]))).expect("opens");
    let secret = engine.create_stream(new_stream_meta("secret", StreamKind::Data, "arn:s", 1, 24, 0)).expect("s");
    let wrapped_key_hex = engine.new_wrapped_data_key_hex().expect("key");
    engine
        .update_meta(&secret, |meta| {
            meta.encryption = Some(StreamEncryption {
                enabled: true,
                key_id: "alias/aws/kinesis".into(),
                wrapped_key_hex: wrapped_key_hex.clone(),
            })
        })
        .expect("encryption on");
    // A small (inline), a mid-sized (blob file) and a large (segment file) payload.
    engine.append_blocking(&secret, vec![entry(100), entry(8 << 10), entry(256 << 10)]).expect("appended");
    engine.close().expect("closed");
    drop(engine);
    assert!(!found_on_disk(dir.path(), MARKER), "an encrypted stream's payload is on disk in clear");

    let engine = Engine::open(dir.path(), Arc::new(SystemClock), options(Some([9; 32]))).expect("reopens");
    let read = read_all(&engine, "secret").expect("reads");
    assert_eq!(read.iter().map(Vec::len).collect::<Vec<_>>(), [100, 8 << 10, 256 << 10]);
    assert!(read.iter().all(|payload| payload.starts_with(MARKER)));
    let stream = engine.stream("secret").expect("stream");
    let header = engine.header(&stream, 0, 2).expect("header").expect("exists");
    assert_eq!(header.payload_len, 256 << 10, "listings show the plaintext size");

    // Turned off: new entries are plain, the sealed ones stay readable.
    engine.update_meta(&stream, |meta| meta.encryption.as_mut().map(|e| e.enabled = false)).expect("off");
    engine.append_blocking(&stream, vec![entry(200)]).expect("appended");
    assert_eq!(read_all(&engine, "secret").expect("reads").len(), 4);
    engine.close().expect("closed");
    drop(engine);
    assert!(found_on_disk(dir.path(), MARKER), "entries written after encryption was turned off are plain");

    let engine = Engine::open(dir.path(), Arc::new(SystemClock), options(None)).expect("opens without a key");
    assert!(read_all(&engine, "secret").is_err(), "sealed payloads need the master key");
    drop(engine);
    let engine = Engine::open(dir.path(), Arc::new(SystemClock), options(Some([1; 32]))).expect("opens");
    assert!(read_all(&engine, "secret").is_err(), "another master key opens nothing");
}
