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
    /// The data dir was written in a layout this build does not read.
    #[error(
        "the data dir's on-disk format is version {found}; this build reads versions 1 to {supported}. \
         Run the Framelog release that wrote it (or a newer one), or `framelog restore` a backup into a new data dir"
    )]
    FormatUnsupported { found: u32, supported: u32 },
    /// Appends are refused while the disk holding the data dir has less than the configured
    /// headroom, so RocksDB never meets a full disk (which stops it until a restart).
    #[error(
        "the disk holding the data dir is nearly full: {available_bytes} bytes available, {min_free_bytes} kept free"
    )]
    DiskFull { available_bytes: u64, min_free_bytes: u64 },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for engine calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
