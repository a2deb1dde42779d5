//! Stream metadata kept in the engine: name, identity, shard map, retention and tags.
//! Stored as JSON in the `meta` column family so that it is readable with `ldb` when debugging.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a stream carries; it decides defaults such as retention, not the storage format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamKind {
    Data,
    Video,
    /// A Firehose delivery stream's records, kept until delivered (or their retention ends).
    Delivery,
    /// Metrics rollups (CloudWatch's one-minute statistics), kept for their retention.
    Metrics,
    /// A Kinesis Data Analytics application: its definition and checkpoint in settings, its
    /// error stream's rows as records.
    Application,
}

/// The live buffer of a video stream that keeps no archive (retention 0).
pub const VIDEO_LIVE_BUFFER_MS: u64 = 300_000;

/// A shard and the slice of the 128-bit hash key space it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    pub index: u32,
    #[serde(with = "u128_decimal")]
    pub start_hash: u128,
    #[serde(with = "u128_decimal")]
    pub end_hash: u128,
    pub created_ms: u64,
    /// The shard this one was split from, or the first of the two it was merged from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// The second shard of a merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjacent_parent: Option<u32>,
    /// Set once a reshard closed the shard: it takes no more appends, and its entries stay
    /// readable until retention removes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<ShardClosed>,
}

impl ShardMeta {
    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }
}

/// When a shard was closed and where its log ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardClosed {
    pub closed_ms: u64,
    /// One past the shard's last sequence number: no entry will ever be written at or after it.
    pub end_seq: u64,
}

/// Everything the engine remembers about a stream besides its entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// Internal identity; a deleted and recreated stream gets a new id, so old keys never leak into it.
    pub id: u64,
    pub name: String,
    pub kind: StreamKind,
    pub arn: String,
    pub created_ms: u64,
    pub retention_hours: u32,
    pub shards: Vec<ShardMeta>,
    pub tags: BTreeMap<String, String>,
    /// Protocol-specific settings the engine stores but does not interpret (stream mode, record size limit, ...).
    pub settings: BTreeMap<String, String>,
    /// At-rest encryption of payloads; absent for streams that never had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<StreamEncryption>,
}

/// A stream's payload encryption. The data key stays after encryption is turned off: entries
/// written while it was on remain encrypted and readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEncryption {
    /// Whether new entries are encrypted.
    pub enabled: bool,
    /// The key id the API was given (a label; one master key wraps every data key).
    pub key_id: String,
    /// The data key, wrapped by the master key, hex.
    pub wrapped_key_hex: String,
}

impl StreamMeta {
    /// How long entries stay readable. A video stream with retention 0 still keeps a short live
    /// buffer (KVS keeps 5 minutes for GetMedia), so live readers see what arrives.
    pub fn retention_ms(&self) -> u64 {
        let hours_ms = u64::from(self.retention_hours) * 3_600_000;
        match self.kind {
            StreamKind::Video => hours_ms.max(VIDEO_LIVE_BUFFER_MS),
            StreamKind::Data | StreamKind::Delivery | StreamKind::Metrics | StreamKind::Application => hours_ms,
        }
    }
}

/// Splits the hash key space into `count` contiguous ranges as KDS does: step = floor(2^128 / n),
/// shard i = [i*step, (i+1)*step - 1], and the last shard ends at 2^128 - 1.
pub fn even_hash_ranges(count: u32) -> Vec<(u128, u128)> {
    let count = count.max(1);
    // floor(2^128 / n) computed without overflowing u128.
    let step = if count == 1 {
        0
    } else {
        u128::MAX / u128::from(count) + u128::from(u128::MAX % u128::from(count) == u128::from(count) - 1)
    };
    (0..count)
        .map(|i| {
            let start = step * u128::from(i);
            let end = if i + 1 == count { u128::MAX } else { step * u128::from(i + 1) - 1 };
            (start, end)
        })
        .collect()
}

mod u128_decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_covers_the_whole_key_space() {
        assert_eq!(even_hash_ranges(1), vec![(0, u128::MAX)]);
    }

    #[test]
    fn ranges_match_kds_for_three_and_four_shards() {
        // Values as KDS (and kinesalite) report them for CreateStream with 3 and 4 shards.
        let three = even_hash_ranges(3);
        assert_eq!(three[0].1, 113427455640312821154458202477256070484);
        assert_eq!(three[1].0, 113427455640312821154458202477256070485);
        assert_eq!(three[2].1, u128::MAX);
        let four = even_hash_ranges(4);
        assert_eq!(four[1].0, 85070591730234615865843651857942052864);
        assert!(four.windows(2).all(|w| w[0].1 + 1 == w[1].0));
    }

    #[test]
    fn video_streams_without_retention_keep_a_live_buffer_and_data_streams_do_not() {
        let mut meta = crate::new_stream_meta("v", StreamKind::Video, "arn", 1, 0, 0);
        assert_eq!(meta.retention_ms(), VIDEO_LIVE_BUFFER_MS);
        meta.retention_hours = 2;
        assert_eq!(meta.retention_ms(), 7_200_000);
        meta.kind = StreamKind::Data;
        meta.retention_hours = 0;
        assert_eq!(meta.retention_ms(), 0);
    }

    #[test]
    fn meta_round_trips_through_json_with_full_width_hash_keys() {
        let meta = StreamMeta {
            id: 3,
            name: "s".into(),
            kind: StreamKind::Data,
            arn: "arn".into(),
            created_ms: 1,
            retention_hours: 24,
            shards: vec![ShardMeta {
                index: 0,
                start_hash: 0,
                end_hash: u128::MAX,
                created_ms: 1,
                parent: None,
                adjacent_parent: None,
                closed: None,
            }],
            tags: BTreeMap::new(),
            settings: BTreeMap::new(),
            encryption: None,
        };
        let json = serde_json::to_string(&meta).expect("serializes");
        assert!(!json.contains("encryption"), "metadata written before encryption existed looks the same");
        assert!(json.contains("\"340282366920938463463374607431768211455\""));
        assert_eq!(serde_json::from_str::<StreamMeta>(&json).expect("parses"), meta);
    }
}
