//! Packs one shard's user records into Kinesis records: many per aggregated record in the KPL's
//! format when aggregation is on, one each when it is off. The Kinesis record carries the first
//! user record's partition key and, as its explicit hash key, that record's hash key, so the
//! service stores it on the shard every packed record was routed to.

use std::sync::Arc;

use framelog_wire::kpl_aggregate::{self, UserRecord};

use super::Pending;

/// What one user record adds to an aggregated record beyond its data and key: the protobuf tags
/// and lengths (a generous bound, so a sealed record never exceeds the limit).
const PER_RECORD_OVERHEAD_BYTES: usize = 16;
/// The magic and the MD5 digest.
const FRAMING_BYTES: usize = 20;

/// One Kinesis record ready for PutRecords, with the user records it carries.
#[derive(Debug)]
pub struct KinesisRecord {
    pub partition_key: String,
    pub explicit_hash_key: String,
    pub data: Vec<u8>,
    pub members: Vec<Pending>,
    /// Whether `data` is an aggregated record (members get sub-sequence numbers).
    pub aggregated: bool,
    pub attempts: u32,
}

impl KinesisRecord {
    /// What PutRecords counts against its 5 MiB: data and partition key.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// The user records waiting to be packed for one shard.
#[derive(Debug, Default)]
pub struct Aggregator {
    members: Vec<Pending>,
    estimated_bytes: usize,
}

impl Aggregator {
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Adds `pending` (routed: its hash key is set); returns the record sealed to make room.
    pub fn add(&mut self, pending: Pending, max_bytes: usize, aggregate: bool) -> Option<KinesisRecord> {
        if !aggregate {
            return Some(single(pending));
        }
        let size = estimated_size(&pending);
        let sealed = if self.estimated_bytes + size > max_bytes { self.seal() } else { None };
        if self.members.is_empty() {
            self.estimated_bytes = FRAMING_BYTES;
        }
        self.estimated_bytes += size;
        self.members.push(pending);
        sealed
    }

    /// Packs everything waiting into one Kinesis record (none when nothing waits).
    pub fn seal(&mut self) -> Option<KinesisRecord> {
        let mut members = std::mem::take(&mut self.members);
        self.estimated_bytes = 0;
        match members.len() {
            0 => None,
            1 => members.pop().map(single),
            _ => Some(aggregated(members)),
        }
    }
}

/// A record that goes alone: its own key, not wrapped.
fn single(pending: Pending) -> KinesisRecord {
    KinesisRecord {
        partition_key: pending.record.partition_key.clone(),
        explicit_hash_key: pending.hash_key.to_string(),
        data: pending.record.data.clone(),
        members: vec![pending],
        aggregated: false,
        attempts: 0,
    }
}

fn aggregated(members: Vec<Pending>) -> KinesisRecord {
    let users: Vec<UserRecord> = members
        .iter()
        .map(|m| UserRecord {
            partition_key: Arc::from(m.record.partition_key.as_str()),
            explicit_hash_key: m.record.explicit_hash_key.as_deref().map(Arc::from),
            data: m.record.data.clone(),
        })
        .collect();
    let first = &members[0];
    KinesisRecord {
        partition_key: first.record.partition_key.clone(),
        explicit_hash_key: first.hash_key.to_string(),
        data: kpl_aggregate::aggregate(&users),
        aggregated: true,
        members,
        attempts: 0,
    }
}

fn estimated_size(pending: &Pending) -> usize {
    let record = &pending.record;
    record.data.len()
        + record.partition_key.len()
        + record.explicit_hash_key.as_ref().map_or(0, String::len)
        + PER_RECORD_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_producer::ProducerRecord;

    fn pending(key: &str, size: usize, hash_key: u128) -> Pending {
        Pending::detached(ProducerRecord::new(key, vec![7; size]), hash_key)
    }

    #[test]
    fn records_pack_until_the_size_limit_then_seal() {
        let mut shard = Aggregator::default();
        let mut sealed = Vec::new();
        for i in 0..100 {
            sealed.extend(shard.add(pending(&format!("k{i}"), 100, i), 1_000, true));
        }
        sealed.extend(shard.seal());
        assert!(sealed.len() > 10, "{} records", sealed.len());
        for record in &sealed {
            assert!(record.data.len() <= 1_000, "{} bytes", record.data.len());
            let users = kpl_aggregate::deaggregate(&record.data).expect("aggregated");
            assert_eq!(users.len(), record.members.len());
            assert_eq!(record.explicit_hash_key, record.members[0].hash_key.to_string());
        }
        let total: usize = sealed.iter().map(|r| r.members.len()).sum();
        assert_eq!(total, 100, "every record packed once");
    }

    #[test]
    fn without_aggregation_each_record_goes_alone() {
        let mut shard = Aggregator::default();
        let record = shard.add(pending("k", 10, 5), 1_000, false).expect("sealed at once");
        assert!(!record.aggregated);
        assert_eq!(record.data, vec![7; 10]);
        assert!(shard.is_empty());
        assert!(shard.add(pending("k", 10, 5), 1_000, true).is_none(), "waits for more");
        assert!(!shard.seal().expect("one").aggregated, "one waiting record is sent plain");
        assert!(shard.seal().is_none());
    }
}
