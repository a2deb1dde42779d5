//! The four column families' options: what each stores how, and the one block cache they share.

use rocksdb::{ColumnFamilyDescriptor, Options};

use crate::error::Result;
use crate::keys::{CF_ENTRIES, CF_META, CF_PAYLOADS, CF_TIME_INDEX};
use crate::local::EngineOptions;

/// Each flush copies the blocks it writes into the block cache. Readers of a shard are mostly
/// at its tail (consumers, GetMedia tails, live HLS), so what was flushed last is what is read
/// next; and the cache reaches its bound within minutes of start-up instead of filling as
/// readers miss, so the process's memory settles early (soak run 9, docs/benchmarks.md).
/// rust-rocksdb has no setter for this table option; RocksDB applies the string to a copy of the
/// table factory already set, so the shared cache is kept.
const PREPOPULATE_ON_FLUSH: &str = "block_based_table_factory={prepopulate_block_cache=kFlushOnly}";

/// Table options that bound memory. By default every open table keeps its index and filter
/// blocks in memory outside any cache, about 1 MB per 64 MB table of small entries, so the
/// server's RSS grew with the data (soak: ~35 MiB per 10 minutes at 20,000 records/s). In the
/// shared cache they are bounded; the newest tables' (L0) stay pinned, as they are read most.
/// (Partitioned indexes, 16 KiB blocks and 4 MiB memtables for the slow column families were
/// each tried against the soak's memory curve and did not flatten it; what did was the
/// allocator giving back the pages memtable flushes free: docs/benchmarks.md, soak runs 6-7.)
fn bounded_tables(cache: &rocksdb::Cache) -> rocksdb::BlockBasedOptions {
    let mut tables = rocksdb::BlockBasedOptions::default();
    tables.set_block_cache(cache);
    tables.set_cache_index_and_filter_blocks(true);
    tables.set_cache_index_and_filter_blocks_with_high_priority(true);
    tables.set_pin_l0_filter_and_index_blocks_in_cache(true);
    tables
}

/// Options for one column family on the shared tables, with `configure` applied.
fn family(tables: &rocksdb::BlockBasedOptions, configure: impl FnOnce(&mut Options)) -> Result<Options> {
    let mut options = Options::default();
    options.set_block_based_table_factory(tables);
    configure(&mut options);
    Ok(options.get_options_from_string(PREPOPULATE_ON_FLUSH)?)
}

/// The descriptors the database opens with, all four sharing one block cache of
/// `options.block_cache_bytes`.
pub(crate) fn descriptors(options: &EngineOptions) -> Result<Vec<ColumnFamilyDescriptor>> {
    let cache = rocksdb::Cache::new_lru_cache(options.block_cache_bytes);
    let tables = bounded_tables(&cache);
    let meta = family(&tables, |_| {})?;
    let small = |o: &mut Options| o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let payloads = family(&tables, |o| {
        o.set_compression_type(rocksdb::DBCompressionType::None);
        o.set_enable_blob_files(true);
        o.set_min_blob_size(options.min_blob_size_bytes);
        o.set_blob_file_size(256 << 20);
        // No blob GC: it relocates live blobs out of the oldest files during compactions, which
        // rewrote fresh video at ingest rates (200-camera bench: ack p99 76 ms with it, 19 ms
        // without). Retention expires whole time ranges, so blob files die whole instead; see
        // the compaction after each trim in retention.rs.
        o.set_enable_blob_gc(false);
        o.set_write_buffer_size(64 << 20);
    })?;
    Ok(vec![
        ColumnFamilyDescriptor::new(CF_META, meta),
        ColumnFamilyDescriptor::new(CF_ENTRIES, family(&tables, small)?),
        ColumnFamilyDescriptor::new(CF_PAYLOADS, payloads),
        ColumnFamilyDescriptor::new(CF_TIME_INDEX, family(&tables, small)?),
    ])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rocksdb::DB;

    use crate::SystemClock;
    use crate::keys::{CF_META, CF_PAYLOADS};
    use crate::local::{EngineOptions, LocalEngine};

    fn cache_property(db: &DB, family: &str, name: &str) -> u64 {
        let cf = db.cf_handle(family).expect("column family");
        db.property_int_value_cf(&cf, name).expect("property").expect("a block cache figure")
    }

    /// The options string that turns on prepopulation rebuilds the table factory; had it also
    /// replaced the cache, each family would have RocksDB's default cache instead of one shared
    /// cache of the configured size.
    #[test]
    fn every_family_keeps_the_configured_shared_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = EngineOptions { block_cache_bytes: 3 << 20, ..EngineOptions::default() };
        let engine = LocalEngine::open(dir.path(), Arc::new(SystemClock), options).expect("open");
        for family in [CF_META, CF_PAYLOADS] {
            let capacity = cache_property(&engine.inner.db, family, "rocksdb.block-cache-capacity");
            assert_eq!(capacity, 3 << 20, "{family}");
        }
    }

    /// A flush must leave what it wrote in the cache without any read: that is what lets the
    /// cache reach its bound early. Without prepopulation only the new table's index and filter
    /// blocks (a few KB) would be there.
    #[test]
    fn a_flush_leaves_its_blocks_in_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = LocalEngine::open(dir.path(), Arc::new(SystemClock), EngineOptions::default()).expect("open");
        let db = &engine.inner.db;
        let payloads = db.cf_handle(CF_PAYLOADS).expect("payloads");
        for i in 0u32..2000 {
            db.put_cf(&payloads, i.to_be_bytes(), vec![i as u8; 512]).expect("put");
        }
        let before = cache_property(db, CF_PAYLOADS, "rocksdb.block-cache-usage");
        db.flush_cf(&payloads).expect("flush");
        let after = cache_property(db, CF_PAYLOADS, "rocksdb.block-cache-usage");
        assert!(after >= before + 2000 * 512, "block cache went from {before} to {after} bytes over the flush");
    }
}
