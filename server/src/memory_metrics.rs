//! Where the engine's memory goes, for `/metrics`: its parts as RocksDB counts them
//! (`framelog_engine_memory_bytes{part}`). Beside the process's RSS they tell a cache filling to
//! its bound from memory that keeps growing.

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

fn gauge_value(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use framelog_store::{EngineOptions, NewEntry, StreamKind, SystemClock, new_stream_meta};
    use prometheus_client::encoding::text::encode;

    use super::*;

    fn gauge(text: &str, part: &str) -> Option<u64> {
        let prefix = format!("framelog_engine_memory_bytes{{part=\"{part}\"}} ");
        text.lines().find_map(|line| line.strip_prefix(&prefix)).and_then(|value| value.parse().ok())
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
}
