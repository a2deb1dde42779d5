//! Resharding through the engine's API: parents close at their tip, children take the appends,
//! closed shards stay readable, and the shard map survives a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use framelog_store::{
    Engine, EngineOptions, ManualClock, NewEntry, Position, ReshardStep, StoreError, StreamKind, new_stream_meta,
};

const START_MS: u64 = 1_700_000_000_000;

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Engine {
    Engine::open(dir, clock.clone(), EngineOptions::default()).expect("engine opens")
}

fn entry(shard: u32, payload: &[u8]) -> NewEntry {
    NewEntry { shard, producer_ts_ms: None, attrs: b"pk".to_vec(), payload: payload.to_vec() }
}

fn payloads(engine: &Engine, stream: &framelog_store::StreamHandle, shard: u32) -> Vec<Vec<u8>> {
    let from = engine.resolve(stream, shard, Position::TrimHorizon).expect("resolves");
    engine
        .read(stream, shard, from, usize::MAX, usize::MAX)
        .expect("reads")
        .entries
        .into_iter()
        .map(|e| e.payload)
        .collect()
}

#[test]
fn a_split_closes_the_parent_and_both_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    {
        let engine = open(dir.path(), &clock);
        let stream =
            engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 1, 24, START_MS)).expect("creates");
        engine.append_blocking(&stream, vec![entry(0, b"a"), entry(0, b"b")]).expect("appends");
        clock.advance_ms(1_000);
        let meta = engine.reshard(&stream, vec![ReshardStep::Split { shard: 0, at_hash: 1 << 100 }]).expect("splits");
        assert_eq!(meta.shards[0].closed.map(|c| c.end_seq), Some(2));
        assert_eq!(stream.shard_count(), 3);
        let refused = engine.append_blocking(&stream, vec![entry(0, b"late")]);
        assert!(matches!(refused, Err(StoreError::ShardClosed { shard: 0, .. })), "{refused:?}");
        engine.append_blocking(&stream, vec![entry(2, b"child")]).expect("a child takes appends");
        engine.close().expect("closes");
    }
    let engine = open(dir.path(), &clock);
    let stream = engine.stream("s").expect("still there");
    assert_eq!(payloads(&engine, &stream, 0), vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(payloads(&engine, &stream, 2), vec![b"child".to_vec()]);
    let meta = stream.meta();
    assert_eq!((meta.shards[1].parent, meta.shards[2].parent), (Some(0), Some(0)));
    let refused = engine.append_blocking(&stream, vec![entry(0, b"after restart")]);
    assert!(matches!(refused, Err(StoreError::ShardClosed { .. })), "the close is durable: {refused:?}");
}

#[test]
fn a_refused_reshard_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 3, 24, START_MS)).expect("creates");
    let before = stream.meta();
    let refused = engine.reshard(
        &stream,
        vec![
            ReshardStep::Split { shard: 1, at_hash: before.shards[1].start_hash + 9 },
            ReshardStep::Merge { shard: 0, adjacent: 2 },
        ],
    );
    assert!(matches!(refused, Err(StoreError::BadReshard { .. })), "{refused:?}");
    assert_eq!(stream.meta(), before);
    assert_eq!(stream.shard_count(), 3);
    engine.append_blocking(&stream, vec![entry(1, b"still open")]).expect("appends");
}

/// Writers racing a split: every append either landed below the parent's end or was refused
/// whole; none lands in the parent after its close.
#[test]
fn appends_racing_a_split_land_before_the_end_or_not_at_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(START_MS));
    let engine = open(dir.path(), &clock);
    let stream = engine.create_stream(new_stream_meta("s", StreamKind::Data, "arn", 1, 24, START_MS)).expect("creates");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (engine, stream, stop) = (engine.clone(), stream.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut accepted = Vec::new();
                for i in 0u32.. {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    match engine.append_blocking(&stream, vec![entry(0, format!("{w}-{i}").as_bytes())]) {
                        Ok(landed) => accepted.push(landed[0].seq),
                        Err(StoreError::ShardClosed { .. }) => break,
                        Err(other) => panic!("unexpected {other}"),
                    }
                }
                accepted
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let meta = engine.reshard(&stream, vec![ReshardStep::Split { shard: 0, at_hash: 7 }]).expect("splits");
    stop.store(true, Ordering::Release);
    let end_seq = meta.shards[0].closed.expect("closed").end_seq;
    let mut accepted: Vec<u64> = writers.into_iter().flat_map(|w| w.join().expect("writer")).collect();
    accepted.sort_unstable();
    assert!(accepted.iter().all(|&seq| seq < end_seq), "an acknowledged append landed after the close");
    assert_eq!(accepted.len() as u64, end_seq, "every entry below the end was acknowledged once");
    assert_eq!(payloads(&engine, &stream, 0).len() as u64, end_seq);
}
