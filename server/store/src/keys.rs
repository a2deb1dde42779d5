//! On-disk key layout. All integers are big-endian so RocksDB's byte order is numeric order.
//!
//! ```text
//! meta        "stream/" + name                          -> JSON StreamMeta
//!             "next_stream_id"                          -> u64
//!             "format_version"                          -> u32 (format_version.rs)
//!             "trim_floor/" stream_id u64 | shard u32   -> u64 first sequence kept by the last trim
//! entries     stream_id u64 | shard u32 | seq u64       -> entry header (see entry.rs)
//! payloads    stream_id u64 | shard u32 | seq u64       -> payload bytes (blob files)
//! time_index  stream_id u64 | shard u32 | kind u8 | ts_ms u64 | seq u64 -> empty
//! ```
//! `kind` is 0 for arrival time (sparse: first entry of each millisecond) and 1 for producer time
//! (dense: every entry that has one).

pub const CF_META: &str = "meta";
pub const CF_ENTRIES: &str = "entries";
pub const CF_PAYLOADS: &str = "payloads";
pub const CF_TIME_INDEX: &str = "time_index";
/// Every column family, in the order the engine opens them.
pub const ALL_CFS: [&str; 4] = [CF_META, CF_ENTRIES, CF_PAYLOADS, CF_TIME_INDEX];

pub const META_STREAM_PREFIX: &[u8] = b"stream/";
pub const META_NEXT_STREAM_ID: &[u8] = b"next_stream_id";
pub const META_FORMAT_VERSION: &[u8] = b"format_version";

pub const ENTRY_KEY_LEN: usize = 20;
pub const TIME_KEY_LEN: usize = 29;

/// Which timestamp a time-index key orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TimeKind {
    Arrival = 0,
    Producer = 1,
}

pub fn stream_meta_key(name: &str) -> Vec<u8> {
    let mut key = META_STREAM_PREFIX.to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

pub fn trim_floor_key(stream_id: u64, shard: u32) -> Vec<u8> {
    let mut key = b"trim_floor/".to_vec();
    key.extend_from_slice(&stream_id.to_be_bytes());
    key.extend_from_slice(&shard.to_be_bytes());
    key
}

pub fn entry_key(stream_id: u64, shard: u32, seq: u64) -> [u8; ENTRY_KEY_LEN] {
    let mut key = [0u8; ENTRY_KEY_LEN];
    key[..8].copy_from_slice(&stream_id.to_be_bytes());
    key[8..12].copy_from_slice(&shard.to_be_bytes());
    key[12..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number in an entry key, if the key has the entry layout.
pub fn entry_key_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(12..ENTRY_KEY_LEN)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// The first key after every key of a stream: used as the exclusive end of range deletes.
pub fn stream_end_key(stream_id: u64) -> [u8; 8] {
    (stream_id + 1).to_be_bytes()
}

pub fn time_key(stream_id: u64, shard: u32, kind: TimeKind, ts_ms: u64, seq: u64) -> [u8; TIME_KEY_LEN] {
    let mut key = [0u8; TIME_KEY_LEN];
    key[..8].copy_from_slice(&stream_id.to_be_bytes());
    key[8..12].copy_from_slice(&shard.to_be_bytes());
    key[12] = kind as u8;
    key[13..21].copy_from_slice(&ts_ms.to_be_bytes());
    key[21..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Splits a time-index key into (timestamp, sequence) if it belongs to the given shard and kind.
pub fn parse_time_key(key: &[u8], stream_id: u64, shard: u32, kind: TimeKind) -> Option<(u64, u64)> {
    if key.len() != TIME_KEY_LEN || key[..12] != entry_key(stream_id, shard, 0)[..12] || key[12] != kind as u8 {
        return None;
    }
    let ts = u64::from_be_bytes(key[13..21].try_into().ok()?);
    let seq = u64::from_be_bytes(key[21..].try_into().ok()?);
    Some((ts, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_sort_by_stream_then_shard_then_seq() {
        let keys = [entry_key(1, 0, 5), entry_key(1, 0, 256), entry_key(1, 1, 0), entry_key(2, 0, 0)];
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(entry_key_seq(&keys[1]), Some(256));
        assert!(keys[3][..] >= stream_end_key(1)[..]);
        assert!(keys[2][..] < stream_end_key(1)[..]);
    }

    #[test]
    fn entry_key_layout_matches_the_documented_bytes() {
        assert_eq!(
            entry_key(0x0102, 3, 0x0a0b).to_vec(),
            vec![0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x0a, 0x0b]
        );
    }

    #[test]
    fn time_keys_round_trip_and_sort_by_time() {
        let a = time_key(7, 2, TimeKind::Arrival, 1_000, 9);
        let b = time_key(7, 2, TimeKind::Arrival, 1_001, 3);
        assert!(a < b);
        assert_eq!(parse_time_key(&a, 7, 2, TimeKind::Arrival), Some((1_000, 9)));
        assert_eq!(parse_time_key(&a, 7, 2, TimeKind::Producer), None);
        assert_eq!(parse_time_key(&a, 7, 3, TimeKind::Arrival), None);
    }
}
