//! Behaviour of the shard log engine through its public API: ordering, positions, retention,
//! restarts and deletion. Property tests drive random workloads against a simple model.

use std::sync::Arc;

use framelog_store::{Clock, Engine, EngineOptions, ManualClock, NewEntry, Position, StreamKind, new_stream_meta};
use proptest::prelude::*;

const HOUR_MS: u64 = 3_600_000;
const START_MS: u64 = 1_700_000_000_000;

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Engine {
    Engine::open(dir, clock.clone(), EngineOptions::default()).expect("engine opens")
}

fn entry(shard: u32, payload: &[u8]) -> NewEntry {
    NewEntry { shard, producer_ts_ms: None, attrs: b"pk".to_vec(), payload: payload.to_vec() }
}

fn read_all(engine: &Engine, stream: &framelog_store::StreamHandle, shard: u32, from: u64) -> Vec<(u64, Vec<u8>)> {
    let batch = engine.read(stream, shard, from, usize::MAX, usize::MAX).expect("reads");
    batch.entries.into_iter().map(|e| (e.seq, e.payload)).collect()
}

#[test]
fn appended_entries_read_back_in_order_with_increasing_sequence_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 2, 24, START_MS)).expect("create");
    let landed = engine.append_blocking(&stream, vec![entry(0, b"a"), entry(1, b"x"), entry(0, b"b")]).expect("append");
    assert_eq!(landed.iter().map(|a| (a.shard, a.seq)).collect::<Vec<_>>(), vec![(0, 0), (1, 0), (0, 1)]);
    assert_eq!(read_all(&engine, &stream, 0, 0), vec![(0, b"a".to_vec()), (1, b"b".to_vec())]);
    assert_eq!(read_all(&engine, &stream, 1, 0), vec![(0, b"x".to_vec())]);
}

#[test]
fn reads_are_bounded_by_count_and_bytes_but_return_at_least_one_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 1, 24, START_MS)).expect("create");
    let big = vec![7u8; 10_000];
    engine.append_blocking(&stream, (0..5).map(|_| entry(0, &big)).collect()).expect("append");
    let by_count = engine.read(&stream, 0, 0, 2, usize::MAX).expect("read");
    assert_eq!(by_count.entries.len(), 2);
    assert_eq!(by_count.next_seq, 2);
    let by_bytes = engine.read(&stream, 0, 0, 100, 25_000).expect("read");
    assert_eq!(by_bytes.entries.len(), 2);
    let tiny = engine.read(&stream, 0, 3, 100, 1).expect("read");
    assert_eq!(tiny.entries.len(), 1);
    assert_eq!(tiny.next_seq, 4);
    let caught_up = engine.read(&stream, 0, 5, 100, usize::MAX).expect("read");
    assert!(caught_up.entries.is_empty());
    assert_eq!((caught_up.next_seq, caught_up.tip_seq), (5, 5));
}

#[test]
fn positions_resolve_by_sequence_and_by_arrival_and_producer_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("s", StreamKind::Video, "arn", 1, 24, START_MS)).expect("create");
    for i in 0..6u64 {
        let mut e = entry(0, &[i as u8]);
        e.producer_ts_ms = Some(START_MS - 10_000 + i * 2_000);
        engine.append_blocking(&stream, vec![e]).expect("append");
        clock.advance_ms(1_000);
    }
    assert_eq!(engine.resolve(&stream, 0, Position::TrimHorizon).expect("resolve"), 0);
    assert_eq!(engine.resolve(&stream, 0, Position::Latest).expect("resolve"), 6);
    assert_eq!(engine.resolve(&stream, 0, Position::AtSeq(3)).expect("resolve"), 3);
    assert_eq!(engine.resolve(&stream, 0, Position::AfterSeq(3)).expect("resolve"), 4);
    assert_eq!(engine.resolve(&stream, 0, Position::AtArrivalMs(START_MS + 2_500)).expect("resolve"), 3);
    assert_eq!(engine.resolve(&stream, 0, Position::AtArrivalMs(START_MS + 99_000)).expect("resolve"), 6);
    assert_eq!(engine.resolve(&stream, 0, Position::AtProducerMs(START_MS - 10_000 + 3_001)).expect("resolve"), 2);
}

#[test]
fn expired_entries_are_not_read_and_trim_removes_only_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 1, 24, START_MS)).expect("create");
    engine.append_blocking(&stream, vec![entry(0, b"old1"), entry(0, b"old2")]).expect("append");
    clock.advance_ms(2 * HOUR_MS);
    engine.append_blocking(&stream, vec![entry(0, b"new")]).expect("append");
    clock.advance_ms(23 * HOUR_MS);
    // 25 h after the first two, 23 h after the third: only the third is retained, before any trim.
    assert_eq!(read_all(&engine, &stream, 0, 0), vec![(2, b"new".to_vec())]);
    assert_eq!(engine.resolve(&stream, 0, Position::TrimHorizon).expect("resolve"), 2);
    let stats = engine.trim_expired().expect("trim");
    assert_eq!(stats.entries_removed, 2);
    assert_eq!(engine.trim_expired().expect("trim again").entries_removed, 0);
    assert_eq!(read_all(&engine, &stream, 0, 0), vec![(2, b"new".to_vec())]);
}

#[test]
fn sequence_numbers_continue_after_restart_even_when_everything_expired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    {
        let engine = open(dir.path(), &clock);
        let stream =
            engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 1, 24, START_MS)).expect("create");
        engine.append_blocking(&stream, vec![entry(0, b"a"), entry(0, b"b")]).expect("append");
        engine.close().expect("close");
    }
    {
        let engine = open(dir.path(), &clock);
        let stream = engine.stream("s").expect("stream survives restart");
        assert_eq!(read_all(&engine, &stream, 0, 0), vec![(0, b"a".to_vec()), (1, b"b".to_vec())]);
        clock.advance_ms(25 * HOUR_MS);
        assert_eq!(engine.trim_expired().expect("trim").entries_removed, 2);
        engine.close().expect("close");
    }
    let engine = open(dir.path(), &clock);
    let stream = engine.stream("s").expect("stream survives restart");
    let landed = engine.append_blocking(&stream, vec![entry(0, b"c")]).expect("append");
    assert_eq!(landed[0].seq, 2);
}

#[test]
fn deleted_stream_is_gone_and_a_new_one_with_its_name_starts_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let old = engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 1, 24, START_MS)).expect("create");
    engine.append_blocking(&old, vec![entry(0, b"a")]).expect("append");
    engine.delete_stream("s").expect("delete");
    assert!(engine.stream("s").is_err());
    assert!(engine.append_blocking(&old, vec![entry(0, b"late")]).is_err());
    let new = engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 1, 24, START_MS)).expect("recreate");
    assert!(read_all(&engine, &new, 0, 0).is_empty());
    assert_ne!(old.id(), new.id());
}

#[test]
fn metadata_updates_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    {
        let engine = open(dir.path(), &clock);
        let stream =
            engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 3, 24, START_MS)).expect("create");
        engine
            .update_meta(&stream, |m| {
                m.retention_hours = 48;
                m.tags.insert("team".into(), "video".into());
            })
            .expect("update");
        // Checkpoint-style writes skip their own fsync but are in the WAL all the same.
        engine
            .update_meta_unsynced(&stream, |m| m.settings.insert("consumer.checkpoint.c".into(), "7".into()))
            .expect("unsynced update");
        engine.close().expect("close");
    }
    let engine = open(dir.path(), &clock);
    let meta = engine.stream("s").expect("stream").meta();
    assert_eq!(meta.settings.get("consumer.checkpoint.c").map(String::as_str), Some("7"));
    assert_eq!(meta.retention_hours, 48);
    assert_eq!(meta.tags.get("team").map(String::as_str), Some("video"));
    assert_eq!(meta.shards.len(), 3);
}

#[tokio::test]
async fn a_tailing_reader_is_woken_by_a_new_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 1, 24, START_MS)).expect("create");
    let mut tip = stream.subscribe(0).expect("subscribe");
    let writer = {
        let (engine, stream) = (engine.clone(), stream.clone());
        tokio::spawn(async move { engine.append(&stream, vec![entry(0, b"a")]).expect("queued").wait().await })
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), tip.changed()).await.expect("woken").expect("open");
    assert_eq!(*tip.borrow(), 1);
    writer.await.expect("joined").expect("appended");
}

#[test]
fn concurrent_writers_all_land_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 1, 24, START_MS)).expect("create");
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let (engine, stream) = (engine.clone(), stream.clone());
            std::thread::spawn(move || {
                for i in 0..50u8 {
                    engine.append_blocking(&stream, vec![entry(0, &[t, i])]).expect("append");
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().expect("joined"));
    let mut got: Vec<Vec<u8>> = read_all(&engine, &stream, 0, 0).into_iter().map(|(_, p)| p).collect();
    assert_eq!(got.len(), 400);
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 400);
}

#[derive(Debug, Clone)]
enum Op {
    Append { shard: u32, payload: Vec<u8> },
    Advance { ms: u64 },
    Trim,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..3, proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(shard, payload)| Op::Append { shard, payload }),
        2 => (0u64..(6 * HOUR_MS)).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Trim),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Against a model (a list per shard of (seq, arrival, payload)), every read position returns
    /// exactly the retained entries from that position on, in order, whatever trims ran.
    #[test]
    fn reads_match_a_model_under_appends_time_and_trims(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(START_MS));
        let engine = open(dir.path(), &clock);
        let stream = engine.create_stream(new_stream_meta("p", StreamKind::Data, "arn", 3, 24, START_MS)).expect("create");
        let mut model: Vec<Vec<(u64, u64, Vec<u8>)>> = vec![Vec::new(); 3];
        for op in ops {
            match op {
                Op::Append { shard, payload } => {
                    let landed = engine.append_blocking(&stream, vec![entry(shard, &payload)]).expect("append");
                    let model_shard = &mut model[shard as usize];
                    prop_assert_eq!(landed[0].seq, model_shard.len() as u64);
                    model_shard.push((landed[0].seq, clock.now_ms(), payload));
                }
                Op::Advance { ms } => clock.advance_ms(ms),
                Op::Trim => { engine.trim_expired().expect("trim"); }
            }
        }
        let cutoff = clock.now_ms().saturating_sub(24 * HOUR_MS);
        for (shard, entries) in model.iter().enumerate() {
            let shard = shard as u32;
            let retained: Vec<(u64, Vec<u8>)> =
                entries.iter().filter(|e| e.1 >= cutoff).map(|e| (e.0, e.2.clone())).collect();
            let horizon = engine.resolve(&stream, shard, Position::TrimHorizon).expect("resolve");
            prop_assert_eq!(read_all(&engine, &stream, shard, horizon), retained.clone());
            for (seq, arrival, _) in entries {
                let from_seq: Vec<_> = retained.iter().filter(|e| e.0 >= *seq).cloned().collect();
                prop_assert_eq!(read_all(&engine, &stream, shard, *seq), from_seq.clone());
                let after = engine.resolve(&stream, shard, Position::AfterSeq(*seq)).expect("resolve");
                prop_assert_eq!(read_all(&engine, &stream, shard, after), retained.iter().filter(|e| e.0 > *seq).cloned().collect::<Vec<_>>());
                let at_time = engine.resolve(&stream, shard, Position::AtArrivalMs(*arrival)).expect("resolve");
                let expected_first = entries.iter().find(|e| e.1 >= (*arrival).max(cutoff)).map(|e| e.0);
                prop_assert_eq!(read_all(&engine, &stream, shard, at_time).first().map(|e| e.0), expected_first);
            }
        }
    }
}

#[test]
fn a_reader_racing_group_commits_never_skips_an_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine =
        Engine::open(dir.path(), Arc::new(framelog_store::SystemClock), EngineOptions::default()).expect("opens");
    let stream = engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 1, 24, 0)).expect("create");
    const TOTAL: u64 = 3_000;
    let writer = {
        let (engine, stream) = (engine.clone(), stream.clone());
        std::thread::spawn(move || {
            for i in 0..TOTAL {
                engine.append_blocking(&stream, vec![entry(0, &i.to_be_bytes())]).expect("append");
            }
        })
    };
    // Reads continue from each batch's next_seq, as a GetRecords consumer does with its iterator.
    let mut next = 0;
    let mut seen = Vec::new();
    while next < TOTAL {
        let batch = engine.read(&stream, 0, next, 100, usize::MAX).expect("read");
        seen.extend(batch.entries.iter().map(|e| e.seq));
        next = batch.next_seq;
    }
    writer.join().expect("writer");
    assert_eq!(seen, (0..TOTAL).collect::<Vec<_>>());
}

#[test]
fn producer_time_ranges_page_in_producer_order_and_point_reads_find_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("v", StreamKind::Video, "arn", 1, 24, START_MS)).expect("create");
    // Back-filled media: producer times out of ingestion order.
    for producer in [5_000u64, 1_000, 3_000, 9_000, 7_000] {
        let mut e = entry(0, &producer.to_be_bytes());
        e.producer_ts_ms = Some(producer);
        engine.append_blocking(&stream, vec![e]).expect("append");
    }
    let all = engine.producer_range(&stream, 0, 0, u64::MAX, None, 100).expect("range");
    assert_eq!(all, vec![(1_000, 1), (3_000, 2), (5_000, 0), (7_000, 4), (9_000, 3)]);
    let window = engine.producer_range(&stream, 0, 3_000, 7_000, None, 2).expect("range");
    assert_eq!(window, vec![(3_000, 2), (5_000, 0)]);
    let next = engine.producer_range(&stream, 0, 3_000, 7_000, window.last().copied(), 2).expect("range");
    assert_eq!(next, vec![(7_000, 4)]);
    assert_eq!(engine.entry(&stream, 0, 3).expect("read").map(|e| e.payload), Some(9_000u64.to_be_bytes().to_vec()));
    assert_eq!(engine.header(&stream, 0, 4).expect("read").and_then(|h| h.producer_ts_ms), Some(7_000));
    assert_eq!(engine.entry(&stream, 0, 5).expect("read"), None);
}

fn blob_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("engine dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "blob"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[test]
fn trimming_expired_payloads_deletes_their_blob_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    // Mid-sized payloads live in blob files; here every payload does (segments: tests/segments.rs).
    let options = EngineOptions { segment_min_bytes: u64::MAX, ..EngineOptions::default() };
    let open = |dir: &std::path::Path, clock: &Arc<ManualClock>| {
        Engine::open(dir, clock.clone(), options.clone()).expect("engine opens")
    };
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("v", StreamKind::Video, "arn", 1, 1, START_MS)).expect("create");
    let fragment = vec![9u8; 1 << 20];
    for _ in 0..24 {
        engine.append_blocking(&stream, vec![entry(0, &fragment)]).expect("append");
    }
    engine.close().expect("close flushes payloads into blob files");
    drop(engine);
    let engine = open(dir.path(), &clock);
    assert!(blob_bytes(dir.path()) >= 24 << 20, "payloads live in blob files");
    clock.advance_ms(HOUR_MS + 1);
    assert_eq!(engine.trim_expired().expect("trim").entries_removed, 24);
    assert!(blob_bytes(dir.path()) < 1 << 20, "blob files of expired video are deleted: {}", blob_bytes(dir.path()));
}

#[test]
fn amended_attributes_survive_a_restart_and_leave_the_payload_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let big = vec![7u8; 1 << 20];
    {
        let engine = open(dir.path(), &clock);
        let stream =
            engine.create_stream(new_stream_meta("v", StreamKind::Video, "arn", 1, 24, START_MS)).expect("create");
        let entries = vec![
            NewEntry {
                shard: 0,
                producer_ts_ms: Some(START_MS),
                attrs: b"small".to_vec(),
                payload: b"inline".to_vec(),
            },
            NewEntry { shard: 0, producer_ts_ms: Some(START_MS + 1), attrs: b"large".to_vec(), payload: big.clone() },
        ];
        engine.append_blocking(&stream, entries).expect("append");
        for seq in [0, 1] {
            let amended =
                engine.amend_attrs(&stream, 0, seq, |attrs| Some([attrs, b"+labels"].concat())).expect("amend");
            assert!(amended);
        }
        assert!(!engine.amend_attrs(&stream, 0, 1, |_| None).expect("no change"), "None changes nothing");
        assert!(!engine.amend_attrs(&stream, 0, 9, |_| Some(Vec::new())).expect("missing"), "no such entry");
        engine.close().expect("close");
    }
    let engine = open(dir.path(), &clock);
    let stream = engine.stream("v").expect("stream");
    let first = engine.entry(&stream, 0, 0).expect("read").expect("entry");
    assert_eq!((first.attrs.as_slice(), first.payload.as_slice()), (&b"small+labels"[..], &b"inline"[..]));
    let second = engine.entry(&stream, 0, 1).expect("read").expect("entry");
    assert_eq!(second.attrs, b"large+labels");
    assert_eq!(second.payload, big, "the blob payload is untouched");
    assert_eq!(second.producer_ts_ms, Some(START_MS + 1));
    // An expired entry cannot be amended back to life.
    clock.set_ms(START_MS + 25 * HOUR_MS);
    engine.trim_expired().expect("trim");
    assert!(!engine.amend_attrs(&stream, 0, 0, |_| Some(b"zombie".to_vec())).expect("expired"));
}
