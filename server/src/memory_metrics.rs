//! Where the process's memory goes, for `/metrics`: the engine's parts as RocksDB counts them
//! (`framelog_engine_memory_bytes{part}`), and the allocator's own figures
//! (`framelog_allocator_bytes{kind}`: what is allocated, what the allocator holds resident for it,
//! what it keeps mapped). Beside the process's RSS they tell a cache filling to its bound, live
//! memory that keeps growing, and freed memory the allocator keeps, one from another.

use framelog_store::Engine;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

pub fn register(engine: &Engine, registry: &mut Registry) {
    if let Some(memory) = engine.memory() {
        let parts = Family::<Labels, Gauge>::default();
        for (part, bytes) in [
            ("block_cache", memory.block_cache_bytes),
            ("block_cache_pinned", memory.block_cache_pinned_bytes),
            ("memtables", memory.memtables_bytes),
            ("table_readers", memory.table_readers_bytes),
        ] {
            parts.get_or_create(&vec![("part", part)]).set(gauge_value(bytes));
        }
        registry.register("framelog_engine_memory_bytes", "What the engine holds in memory, by part", parts);
    }
}

/// jemalloc's figures, as of a fresh epoch (it caches them between). Every allocation in the
/// process is jemalloc's, RocksDB's included (main.rs).
pub fn register_allocator(registry: &mut Registry) {
    if tikv_jemalloc_ctl::epoch::advance().is_err() {
        return;
    }
    let kinds = Family::<Labels, Gauge>::default();
    for (kind, read) in [
        ("allocated", tikv_jemalloc_ctl::stats::allocated::read as fn() -> tikv_jemalloc_ctl::Result<usize>),
        ("active", tikv_jemalloc_ctl::stats::active::read),
        ("resident", tikv_jemalloc_ctl::stats::resident::read),
        ("mapped", tikv_jemalloc_ctl::stats::mapped::read),
        ("retained", tikv_jemalloc_ctl::stats::retained::read),
        ("metadata", tikv_jemalloc_ctl::stats::metadata::read),
    ] {
        if let Ok(bytes) = read() {
            kinds.get_or_create(&vec![("kind", kind)]).set(gauge_value(bytes as u64));
        }
    }
    registry.register("framelog_allocator_bytes", "The memory allocator's figures, by kind", kinds);
}

fn gauge_value(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use framelog_store::{EngineOptions, NewEntry, StreamKind, SystemClock, new_stream_meta};
    use prometheus_client::encoding::text::encode;

    use super::*;

    /// The value of `family{label="value"}` in an exposition.
    fn gauge_of(text: &str, family: &str, label: &str, value: &str) -> Option<u64> {
        let prefix = format!("{family}{{{label}=\"{value}\"}} ");
        text.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|value| value.parse().ok())
    }

    fn gauge(text: &str, part: &str) -> Option<u64> {
        gauge_of(text, "framelog_engine_memory_bytes", "part", part)
    }

    #[test]
    fn every_part_is_exposed_and_appends_show_in_the_memtables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path(), Arc::new(SystemClock), EngineOptions::default()).expect("open");
        let stream = engine.create_stream(new_stream_meta("m", StreamKind::Data, "arn:m", 1, 24, 0)).expect("create");
        let entry = NewEntry { shard: 0, producer_ts_ms: None, attrs: vec![], payload: vec![1; 64 << 10] };
        engine.append_blocking(&stream, vec![entry]).expect("append");
        let mut registry = Registry::default();
        register(&engine, &mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        for part in ["block_cache", "block_cache_pinned", "table_readers"] {
            assert!(gauge(&text, part).is_some(), "{part} missing from:\n{text}");
        }
        assert!(gauge(&text, "memtables").is_some_and(|bytes| bytes >= 64 << 10), "{text}");
    }

    fn allocator(text: &str, kind: &str) -> Option<u64> {
        gauge_of(text, "framelog_allocator_bytes", "kind", kind)
    }

    #[test]
    fn the_allocators_figures_count_what_is_held() {
        let held = vec![7u8; 64 << 20];
        let mut registry = Registry::default();
        register_allocator(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        let allocated = allocator(&text, "allocated").expect("allocated");
        assert!(allocated >= 64 << 20, "{allocated} bytes allocated while 64 MiB are held:\n{text}");
        let resident = allocator(&text, "resident").expect("resident");
        assert!(resident >= allocated, "{text}");
        for kind in ["active", "mapped", "retained", "metadata"] {
            assert!(allocator(&text, kind).is_some(), "{kind} missing from:\n{text}");
        }
        assert_eq!(held.iter().map(|b| u64::from(*b)).sum::<u64>(), 7 * (64 << 20));
    }
}
