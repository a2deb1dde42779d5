//! How the local engine keeps up, for `/metrics`: RocksDB's compaction debt and write stalls,
//! and the bytes each stream takes on disk (its keys' share of the table files, plus its segment
//! files). Payloads in RocksDB's blob files (4 KiB up to the segment size) are shared by every
//! stream's keys and are counted once, for the engine. Read from RocksDB's properties and sizes;
//! a figure RocksDB cannot give counts as 0.

use rocksdb::{DB, Range};

use crate::keys::{CF_ENTRIES, CF_META, CF_PAYLOADS, CF_TIME_INDEX};
use crate::segments::SegmentStore;

/// Compaction and stalls, over every column family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineHealth {
    /// Bytes compaction still has to rewrite (`rocksdb.estimate-pending-compaction-bytes`).
    pub pending_compaction_bytes: u64,
    /// Whether writes are stopped (`rocksdb.is-write-stopped`): a stall.
    pub writes_stopped: bool,
    /// The rate writes are slowed to, 0 when they are not (`rocksdb.actual-delayed-write-rate`).
    pub delayed_write_rate_bytes: u64,
    /// Memtables waiting to be flushed (`rocksdb.num-immutable-mem-table`).
    pub immutable_memtables: u64,
    /// Payload bytes in blob files, every stream's (`rocksdb.total-blob-file-size`).
    pub blob_file_bytes: u64,
}

const FAMILIES: [&str; 4] = [CF_META, CF_ENTRIES, CF_PAYLOADS, CF_TIME_INDEX];

pub(crate) fn engine_health(db: &DB) -> EngineHealth {
    let each = |name: &str| -> Vec<u64> {
        FAMILIES
            .iter()
            .filter_map(|family| db.cf_handle(family))
            .filter_map(|cf| db.property_int_value_cf(&cf, name).ok().flatten())
            .collect()
    };
    EngineHealth {
        pending_compaction_bytes: each("rocksdb.estimate-pending-compaction-bytes").iter().sum(),
        writes_stopped: each("rocksdb.is-write-stopped").iter().any(|&stopped| stopped > 0),
        delayed_write_rate_bytes: each("rocksdb.actual-delayed-write-rate").into_iter().max().unwrap_or(0),
        immutable_memtables: each("rocksdb.num-immutable-mem-table").iter().sum(),
        blob_file_bytes: each("rocksdb.total-blob-file-size").iter().sum(),
    }
}

/// A stream's bytes on disk: its keys' approximate share of the table files of the families that
/// hold its entries, and its segment files.
pub(crate) fn stream_disk_bytes(db: &DB, segments: &SegmentStore, stream_id: u64) -> u64 {
    let start = stream_id.to_be_bytes();
    let end = stream_id.saturating_add(1).to_be_bytes();
    let tables: u64 = [CF_ENTRIES, CF_PAYLOADS, CF_TIME_INDEX]
        .iter()
        .filter_map(|family| db.cf_handle(family))
        .map(|cf| db.get_approximate_sizes_cf(&cf, &[Range::new(&start, &end)]).iter().sum::<u64>())
        .sum();
    tables + segments.stream_bytes(stream_id)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::{Engine, EngineOptions, NewEntry, StreamKind, SystemClock, new_stream_meta};

    #[test]
    fn a_stream_with_entries_takes_disk_and_an_empty_one_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let engine = Engine::open(dir.path(), Arc::new(SystemClock), EngineOptions::default()).expect("open");
            let full =
                engine.create_stream(new_stream_meta("full", StreamKind::Data, "arn:f", 1, 24, 0)).expect("create");
            engine.create_stream(new_stream_meta("empty", StreamKind::Data, "arn:e", 1, 24, 0)).expect("create");
            // Below the blob size, and not compressible: the table files hold them as they are.
            let entries = (0..800u32)
                .map(|i| {
                    let mut state = u64::from(i) + 1;
                    let payload = (0..2000)
                        .map(|_| {
                            state =
                                state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                            (state >> 33) as u8
                        })
                        .collect();
                    NewEntry { shard: 0, producer_ts_ms: None, attrs: vec![], payload }
                })
                .collect();
            engine.append_blocking(&full, entries).expect("appended");
            // Closing flushes the memtables into table files, which is what the sizes count.
            engine.close().expect("closed");
        }
        let engine = Engine::open(dir.path(), Arc::new(SystemClock), EngineOptions::default()).expect("reopen");
        let full = engine.stream("full").expect("full");
        let empty_bytes = engine.disk_bytes(&engine.stream("empty").expect("empty")).expect("local");
        let full_bytes = engine.disk_bytes(&full).expect("local");
        assert!(full_bytes >= 800 * 2000 / 2, "{full_bytes} bytes for 1.6 MB of payloads");
        assert_eq!(empty_bytes, 0);
        let health = engine.health().expect("a local engine reports its health");
        assert!(!health.writes_stopped);
    }
}
