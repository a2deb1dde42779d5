//! What the engine holds in memory, by part, as RocksDB reports it: the figures that tell a
//! growing process (soak: RSS rising over minutes) from a cache filling to its bound.

use rocksdb::DB;

use crate::keys::{CF_ENTRIES, CF_META, CF_PAYLOADS, CF_TIME_INDEX};

/// Bytes held by each part of the local engine at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineMemory {
    /// The shared block cache's content: data blocks, and the tables' index and filter blocks.
    pub block_cache_bytes: u64,
    /// Of `block_cache_bytes`, entries pinned (L0 index and filter blocks, blocks in use).
    pub block_cache_pinned_bytes: u64,
    /// Every column family's memtables: active, immutable and those kept for history.
    pub memtables_bytes: u64,
    /// Table readers outside the block cache (open tables' own structures).
    pub table_readers_bytes: u64,
}

const COLUMN_FAMILIES: [&str; 4] = [CF_META, CF_ENTRIES, CF_PAYLOADS, CF_TIME_INDEX];

/// Reads the figures from RocksDB's properties. A property RocksDB cannot give counts as 0: the
/// figures are for watching, and a missing one must not fail a scrape.
pub(crate) fn engine_memory(db: &DB) -> EngineMemory {
    // The cache is shared, so any column family reports all of it; the rest are per family.
    let first = db.cf_handle(CF_META);
    let cache = |name: &str| first.as_ref().and_then(|cf| db.property_int_value_cf(cf, name).ok().flatten());
    let summed = |name: &str| -> u64 {
        COLUMN_FAMILIES
            .iter()
            .filter_map(|family| db.cf_handle(family))
            .filter_map(|cf| db.property_int_value_cf(&cf, name).ok().flatten())
            .sum()
    };
    EngineMemory {
        block_cache_bytes: cache("rocksdb.block-cache-usage").unwrap_or(0),
        block_cache_pinned_bytes: cache("rocksdb.block-cache-pinned-usage").unwrap_or(0),
        memtables_bytes: summed("rocksdb.size-all-mem-tables"),
        table_readers_bytes: summed("rocksdb.estimate-table-readers-mem"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::{Engine, EngineOptions, NewEntry, StreamKind, SystemClock, new_stream_meta};

    /// Appends land in the memtables first, so they must show there: a figure stuck at 0 would
    /// mean the properties are read from the wrong place.
    #[test]
    fn appends_show_in_the_memtables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path(), Arc::new(SystemClock), EngineOptions::default()).expect("open");
        let stream = engine.create_stream(new_stream_meta("m", StreamKind::Data, "arn:m", 1, 24, 0)).expect("create");
        let before = engine.memory().expect("a local engine reports its memory");
        let entries = (0..2000)
            .map(|i| NewEntry { shard: 0, producer_ts_ms: None, attrs: vec![], payload: vec![i as u8; 512] })
            .collect();
        engine.append_blocking(&stream, entries).expect("append");
        let after = engine.memory().expect("memory");
        assert!(
            after.memtables_bytes >= before.memtables_bytes + 2000 * 512,
            "memtables grew from {} to {} bytes",
            before.memtables_bytes,
            after.memtables_bytes
        );
    }
}
