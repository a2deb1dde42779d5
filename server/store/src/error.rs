//! The engine's error type: one enum that keeps the RocksDB or decoding cause.

/// Errors returned by the shard log engine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {0} already exists")]
    StreamExists(String),
    #[error("stream {0} not found")]
    StreamNotFound(String),
    #[error("shard {shard} not found in stream {stream}")]
    ShardNotFound { stream: String, shard: u32 },
    #[error("stream {0} was deleted")]
    StreamDeleted(String),
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("stored metadata for {key} is unreadable")]
    BadMetadata {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored entry at {key_hex} is corrupt: {reason}")]
    CorruptEntry { key_hex: String, reason: &'static str },
    #[error("the engine's commit thread has stopped")]
    CommitterGone,
    #[error("encryption: {0}")]
    Crypto(&'static str),
    #[error("stream {0} is encrypted but the engine has no master key")]
    NoMasterKey(String),
    /// An append named a shard that a reshard closed; route it again by the newest shard map.
    #[error("shard {shard} of stream {stream} is closed")]
    ShardClosed { stream: String, shard: u32 },
    /// A reshard that would break the shard map (a shard not open, a hash key outside it,
    /// shards that are not neighbours).
    #[error("reshard of stream {stream} refused: {reason}")]
    BadReshard { stream: String, reason: String },
    #[error("{0} is not supported by this backend")]
    Unsupported(&'static str),
    #[error("{what}: {detail}")]
    Backend { what: &'static str, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for engine calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
