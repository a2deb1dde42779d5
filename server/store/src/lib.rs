//! framelog-store: the shard log engine shared by video fragments and data records.
//!
//! A [`Engine`] holds streams; a stream holds shards; a shard is an append-only log of entries,
//! each with a per-shard sequence number, an arrival (server) time and optionally a producer time.
//! Appends go through one commit thread that group-commits them with a synced WAL, so an
//! acknowledged append survives `kill -9`. Large payloads (video fragments) are written once, to
//! segment files synced before their index entries commit; mid-sized ones live in RocksDB blob
//! files, so compaction never rewrites them. The crate knows nothing of HTTP or codecs.
//!
//! ```no_run
//! use std::sync::Arc;
//! use framelog_store::{Engine, EngineOptions, NewEntry, Position, SystemClock, StreamKind, new_stream_meta};
//!
//! let engine = Engine::open("data".as_ref(), Arc::new(SystemClock), EngineOptions::default())?;
//! let stream = engine.create_stream(new_stream_meta("orders", StreamKind::Data, "arn:x", 1, 24, 0))?;
//! let entry = NewEntry { shard: 0, producer_ts_ms: None, attrs: b"key".to_vec(), payload: b"hello".to_vec() };
//! engine.append_blocking(&stream, vec![entry])?;
//! let from = engine.resolve(&stream, 0, Position::TrimHorizon)?;
//! let batch = engine.read(&stream, 0, from, 100, 1 << 20)?;
//! assert_eq!(batch.entries[0].payload, b"hello");
//! # Ok::<(), framelog_store::StoreError>(())
//! ```

mod backend;
mod backup;
mod clock;
mod cluster;
mod column_families;
mod committer;
mod crypto;
mod engine;
mod entry;
mod error;
mod format_version;
mod free_space;
mod handle;
mod health;
mod keys;
mod local;
mod memory;
mod meta;
mod payload_ref;
mod read;
mod recovery;
mod reshard;
mod retention;
mod segments;

pub use backend::{AppendWait, MetaDurability};
pub use backup::BackupStats;
pub use clock::{Clock, ManualClock, SystemClock};
pub use cluster::{ClusterOptions, DEFAULT_OBJECT_MIN_BYTES, ObjectStoreOptions};
pub use crypto::{KEY_BYTES, MasterKey};
pub use engine::Engine;
pub use entry::{Appended, Entry, EntryHeader, NewEntry};
pub use error::{Result, StoreError};
pub use format_version::FORMAT_VERSION;
pub use free_space::DEFAULT_MIN_FREE_DISK_BYTES;
pub use handle::StreamHandle;
pub use health::EngineHealth;
pub use local::{DEFAULT_BLOCK_CACHE_BYTES, DEFAULT_SEGMENT_MIN_BYTES, EngineOptions};
pub use memory::EngineMemory;
pub use meta::{ShardClosed, ShardMeta, StreamEncryption, StreamKind, StreamMeta, even_hash_ranges};
pub use payload_ref::{EntryRef, Payload, PayloadFile};
pub use read::{HeaderItem, Position, ReadBatch};
pub use reshard::{ReshardStep, even_scaling_steps};
pub use retention::TrimStats;

/// Builds the metadata of a new stream with `shard_count` shards splitting the hash key space evenly.
pub fn new_stream_meta(
    name: &str,
    kind: StreamKind,
    arn: &str,
    shard_count: u32,
    retention_hours: u32,
    now_ms: u64,
) -> StreamMeta {
    StreamMeta {
        id: 0,
        name: name.to_string(),
        kind,
        arn: arn.to_string(),
        created_ms: now_ms,
        retention_hours,
        shards: even_hash_ranges(shard_count)
            .into_iter()
            .enumerate()
            .map(|(index, (start_hash, end_hash))| ShardMeta {
                index: index as u32,
                start_hash,
                end_hash,
                created_ms: now_ms,
                parent: None,
                adjacent_parent: None,
                closed: None,
            })
            .collect(),
        tags: Default::default(),
        settings: Default::default(),
        encryption: None,
    }
}
