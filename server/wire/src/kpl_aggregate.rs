//! The KPL's aggregated record: many user records packed into one Kinesis record, as the Kinesis
//! Producer Library writes them and the Kinesis Client Library (and Firehose's
//! RecordDeAggregation processor) unpacks them. Laid out as the 4 magic bytes, a protobuf
//! `AggregatedRecord`, and the MD5 of the protobuf bytes (docs/firehose.md describes it in
//! words; the layout is the KPL's published aggregation format).

use std::collections::HashMap;
use std::sync::Arc;

use md5::{Digest, Md5};
use prost::Message;

/// Every aggregated record starts with these bytes; a record without them is a plain record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_BYTES: usize = 16;

#[derive(Clone, PartialEq, Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<Record>,
}

#[derive(Clone, PartialEq, Message)]
struct Record {
    // proto2 `required`: written even when 0, as proto2 readers (the KCL's) insist on it.
    #[prost(uint64, required, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    tags: Vec<Tag>,
}

#[derive(Clone, PartialEq, Message)]
struct Tag {
    #[prost(string, required, tag = "1")]
    key: String,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

/// One user record out of an aggregated record. Keys are shared with the other records that
/// name them, so a million records naming one key hold it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: Arc<str>,
    pub explicit_hash_key: Option<Arc<str>>,
    pub data: Vec<u8>,
}

/// Kinesis's limits on a partition key (characters) and an explicit hash key (decimal digits of
/// a 128-bit number).
const MAX_PARTITION_KEY_CHARS: usize = 256;
const MAX_HASH_KEY_CHARS: usize = 39;

/// Why bytes that start with the magic are not a valid aggregated record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AggregateError {
    #[error("the aggregated record is shorter than its magic and digest")]
    TooShort,
    #[error("the aggregated record's MD5 digest does not match its content")]
    DigestMismatch,
    #[error("the aggregated record's protobuf does not decode: {0}")]
    Protobuf(String),
    #[error("user record {record} names partition key {index}, beyond the table's {table}")]
    KeyIndex { record: usize, index: u64, table: usize },
    #[error("a key in the aggregated record's tables is longer than Kinesis allows")]
    KeyTooLong,
}

/// Whether `bytes` is an aggregated record (it starts with the magic).
pub fn is_aggregated(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// The user records packed in `bytes`, which must be an aggregated record (`is_aggregated`).
pub fn deaggregate(bytes: &[u8]) -> Result<Vec<UserRecord>, AggregateError> {
    if bytes.len() < MAGIC.len() + DIGEST_BYTES || !is_aggregated(bytes) {
        return Err(AggregateError::TooShort);
    }
    let (message, digest) = bytes[MAGIC.len()..].split_at(bytes.len() - MAGIC.len() - DIGEST_BYTES);
    if Md5::digest(message).as_slice() != digest {
        return Err(AggregateError::DigestMismatch);
    }
    let aggregated = AggregatedRecord::decode(message).map_err(|e| AggregateError::Protobuf(e.to_string()))?;
    let partition_keys = shared_table(aggregated.partition_key_table, MAX_PARTITION_KEY_CHARS)?;
    let hash_keys = shared_table(aggregated.explicit_hash_key_table, MAX_HASH_KEY_CHARS)?;
    let table_entry = |table: &[Arc<str>], index: u64| usize::try_from(index).ok().and_then(|i| table.get(i)).cloned();
    aggregated
        .records
        .into_iter()
        .enumerate()
        .map(|(record, user)| {
            let index = user.partition_key_index;
            let partition_key = table_entry(&partition_keys, index).ok_or(AggregateError::KeyIndex {
                record,
                index,
                table: partition_keys.len(),
            })?;
            let explicit_hash_key = user.explicit_hash_key_index.and_then(|i| table_entry(&hash_keys, i));
            Ok(UserRecord { partition_key, explicit_hash_key, data: user.data })
        })
        .collect()
}

/// A key table, each key shared; a key over `max_chars` is refused.
fn shared_table(table: Vec<String>, max_chars: usize) -> Result<Vec<Arc<str>>, AggregateError> {
    table
        .into_iter()
        .map(|key| if key.chars().count() > max_chars { Err(AggregateError::KeyTooLong) } else { Ok(Arc::from(key)) })
        .collect()
}

/// Packs `records` into one aggregated record, each distinct key stored once in its table.
pub fn aggregate(records: &[UserRecord]) -> Vec<u8> {
    let mut aggregated = AggregatedRecord::default();
    // Indexed by a map, not by searching the table: a producer packs hundreds of distinct keys
    // into one record, thousands of times a second.
    let (mut partition_keys, mut hash_keys) = (KeyIndex::default(), KeyIndex::default());
    for user in records {
        let partition_key_index = partition_keys.index_of(&mut aggregated.partition_key_table, &user.partition_key);
        let explicit_hash_key_index = user
            .explicit_hash_key
            .as_deref()
            .map(|key| hash_keys.index_of(&mut aggregated.explicit_hash_key_table, key));
        aggregated.records.push(Record {
            partition_key_index,
            explicit_hash_key_index,
            data: user.data.clone(),
            tags: Vec::new(),
        });
    }
    let message = aggregated.encode_to_vec();
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&message);
    bytes.extend_from_slice(&Md5::digest(&message));
    bytes
}

/// Each key's place in its table.
#[derive(Default)]
struct KeyIndex<'a>(HashMap<&'a str, u64>);

impl<'a> KeyIndex<'a> {
    fn index_of(&mut self, table: &mut Vec<String>, key: &'a str) -> u64 {
        *self.0.entry(key).or_insert_with(|| {
            table.push(key.to_string());
            (table.len() - 1) as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(key: &str, data: &[u8]) -> UserRecord {
        UserRecord { partition_key: key.into(), explicit_hash_key: None, data: data.to_vec() }
    }

    #[test]
    fn aggregated_records_come_back_whole_and_in_order() {
        let records = vec![
            user("a", b"one"),
            user("b", b""),
            UserRecord { explicit_hash_key: Some("42".into()), ..user("a", b"three") },
        ];
        let bytes = aggregate(&records);
        assert!(is_aggregated(&bytes));
        assert_eq!(deaggregate(&bytes), Ok(records));
    }

    /// Known bytes: one record with key "k" and data "hi", laid out by hand from the format, so
    /// the encoder cannot agree with itself on a wrong layout.
    #[test]
    fn a_hand_laid_record_decodes() {
        // table entry 1: "k"; record 3: { index 1: 0, data 3: "hi" }
        let message = [0x0A, 0x01, b'k', 0x1A, 0x06, 0x08, 0x00, 0x1A, 0x02, b'h', b'i'];
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&message);
        bytes.extend_from_slice(&Md5::digest(message));
        assert_eq!(deaggregate(&bytes), Ok(vec![user("k", b"hi")]));
        assert_eq!(aggregate(&[user("k", b"hi")]), bytes);
    }

    #[test]
    fn keys_longer_than_kinesis_allows_are_refused() {
        let long = user(&"k".repeat(257), b"x");
        assert_eq!(deaggregate(&aggregate(&[long])), Err(AggregateError::KeyTooLong));
        assert!(deaggregate(&aggregate(&[user(&"k".repeat(256), b"x")])).is_ok());
    }

    #[test]
    fn damage_is_reported_not_panicked_on() {
        let mut bytes = aggregate(&[user("a", b"x")]);
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(deaggregate(&bytes), Err(AggregateError::DigestMismatch));
        assert_eq!(deaggregate(&MAGIC), Err(AggregateError::TooShort));
        let message = [0x1A, 0x04, 0x08, 0x05, 0x1A, 0x00]; // a record naming key 5 of an empty table
        let mut bad_index = MAGIC.to_vec();
        bad_index.extend_from_slice(&message);
        bad_index.extend_from_slice(&Md5::digest(message));
        assert_eq!(deaggregate(&bad_index), Err(AggregateError::KeyIndex { record: 0, index: 5, table: 0 }));
    }
}
