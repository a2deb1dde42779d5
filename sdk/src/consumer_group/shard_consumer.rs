//! One held lease at work: reads the shard from its checkpoint with GetRecords, unpacks KPL
//! aggregated records, hands the records to the processor in order, and ends at the shard's end
//! (checkpointing SHARD_END), at a graceful shutdown (checkpointing and releasing the lease), or
//! when the lease is lost (stopping at once).

use std::sync::Arc;
use std::time::Duration;

use framelog_wire::kpl_aggregate;
use tokio::sync::watch;

use super::InitialPosition;
use super::lease_api::{LeaseInfo, LeaseScope, SHARD_END};
use super::processor::{Checkpointer, ConsumedRecord, RecordProcessor};
use crate::Client;
use crate::data_stream::{IteratorStart, StreamRecord};

const ERROR_BACKOFF: Duration = Duration::from_millis(500);

/// What the worker tells a running consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Run,
    Shutdown,
    Lost,
}

/// How a consumer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    ShardEnded,
    ShutDown,
    Lost,
}

/// How a consumer reads.
#[derive(Debug, Clone)]
pub struct Reading {
    pub initial_position: InitialPosition,
    pub max_records: usize,
    pub idle_wait: Duration,
}

pub struct ShardConsumer<P> {
    pub client: Client,
    pub scope: Arc<LeaseScope>,
    pub lease: LeaseInfo,
    pub reading: Reading,
    pub processor: P,
}

/// A checkpointed record to skip when reading resumes at it: (sequence, last sub-sequence done).
type Skip = Option<(String, u64)>;

impl<P: RecordProcessor> ShardConsumer<P> {
    pub async fn run(mut self, mut signal: watch::Receiver<Signal>) -> End {
        let shard_id = self.lease.shard_id.clone();
        let checkpointer = Checkpointer::new(self.client.clone(), Arc::clone(&self.scope), &shard_id);
        self.processor.initialize(&shard_id).await;
        let (mut start, mut skip) = self.start();
        let mut iterator: Option<String> = None;
        loop {
            let now = *signal.borrow();
            match now {
                Signal::Run => {}
                Signal::Lost => {
                    self.processor.lease_lost().await;
                    return End::Lost;
                }
                Signal::Shutdown => {
                    self.processor.shutdown_requested(&checkpointer).await;
                    release(&self.client, &self.scope, &shard_id).await;
                    return End::ShutDown;
                }
            }
            let current = match iterator.take() {
                Some(current) => current,
                None => match self.client.get_shard_iterator(&self.scope.stream, &shard_id, &start).await {
                    Ok(current) => current,
                    Err(error) => {
                        tracing::warn!(%error, shard = %shard_id, "GetShardIterator failed");
                        pause(&mut signal, ERROR_BACKOFF).await;
                        continue;
                    }
                },
            };
            let page = match self.client.get_records(&current, self.reading.max_records).await {
                Ok(page) => page,
                Err(error) => {
                    // An expired iterator is read again from the last record delivered.
                    if error.error_type() != Some("ExpiredIteratorException") {
                        tracing::warn!(%error, shard = %shard_id, "GetRecords failed");
                        pause(&mut signal, ERROR_BACKOFF).await;
                    }
                    continue;
                }
            };
            let records = unpack(&shard_id, page.records, &mut skip);
            if let Some(last) = records.last() {
                checkpointer.delivered(last);
                start = IteratorStart::AtSequence(last.sequence_number.clone());
                skip = Some((last.sequence_number.clone(), last.sub_sequence_number.unwrap_or(0)));
                self.processor.process_records(records, &checkpointer).await;
            } else if page.next_iterator.is_some() {
                pause(&mut signal, self.reading.idle_wait).await;
            }
            match page.next_iterator {
                Some(next) => iterator = Some(next),
                None => return self.shard_ended(&checkpointer, &shard_id).await,
            }
        }
    }

    /// Where reading starts, from the lease's checkpoint.
    fn start(&self) -> (IteratorStart, Skip) {
        match self.lease.checkpoint.as_deref() {
            None => (self.reading.initial_position.iterator_start(), None),
            Some("TRIM_HORIZON") => (IteratorStart::TrimHorizon, None),
            Some("LATEST") => (IteratorStart::Latest, None),
            Some(sequence) => (
                IteratorStart::AtSequence(sequence.to_string()),
                Some((sequence.to_string(), self.lease.sub_sequence_number)),
            ),
        }
    }

    async fn shard_ended(&mut self, checkpointer: &Checkpointer, shard_id: &str) -> End {
        self.processor.shard_ended(checkpointer).await;
        if !checkpointer.reached_shard_end() {
            // The children wait for SHARD_END: a processor that did not record it is not allowed
            // to hold them up.
            if let Err(error) = checkpointer.checkpoint_at(SHARD_END, 0).await {
                tracing::warn!(%error, shard = %shard_id, "shard-end checkpoint failed");
            }
        }
        release(&self.client, &self.scope, shard_id).await;
        End::ShardEnded
    }
}

async fn release(client: &Client, scope: &LeaseScope, shard_id: &str) {
    if let Err(error) = client.release_lease(scope, shard_id).await {
        tracing::debug!(%error, shard = %shard_id, "lease not released; it will expire");
    }
}

/// Waits `wait`, or less if the worker signals.
async fn pause(signal: &mut watch::Receiver<Signal>, wait: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = signal.changed() => {}
    }
}

/// The user records in `records`, aggregated ones unpacked, without those up to the checkpoint
/// being resumed from. A record that starts with the KPL's magic but does not decode is handed
/// over as it is, as the KCL does.
fn unpack(shard_id: &str, records: Vec<StreamRecord>, skip: &mut Skip) -> Vec<ConsumedRecord> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let users =
            kpl_aggregate::is_aggregated(&record.data).then(|| kpl_aggregate::deaggregate(&record.data).ok()).flatten();
        let base = |sub: Option<u64>, partition_key: String, explicit_hash_key: Option<String>, data: Vec<u8>| {
            ConsumedRecord {
                shard_id: shard_id.to_string(),
                sequence_number: record.sequence_number.clone(),
                sub_sequence_number: sub,
                partition_key,
                explicit_hash_key,
                data,
                arrival_epoch_ms: record.arrival_epoch_ms,
            }
        };
        let unpacked: Vec<ConsumedRecord> = match users {
            Some(users) => users
                .into_iter()
                .enumerate()
                .map(|(i, u)| {
                    base(
                        Some(i as u64),
                        u.partition_key.to_string(),
                        u.explicit_hash_key.map(|k| k.to_string()),
                        u.data,
                    )
                })
                .collect(),
            None => vec![base(None, record.partition_key.clone(), None, record.data.clone())],
        };
        for user in unpacked {
            match skip {
                Some((sequence, done)) if *sequence == user.sequence_number => {
                    if user.sub_sequence_number.unwrap_or(0) > *done {
                        out.push(user);
                    }
                }
                _ => {
                    *skip = None;
                    out.push(user);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kpl_aggregate::UserRecord;

    use super::*;

    fn stream_record(sequence: &str, data: Vec<u8>) -> StreamRecord {
        StreamRecord { sequence_number: sequence.into(), partition_key: "p".into(), data, arrival_epoch_ms: 0 }
    }

    fn aggregated(count: usize) -> Vec<u8> {
        let users: Vec<_> = (0..count)
            .map(|i| UserRecord {
                partition_key: Arc::from(format!("k{i}")),
                explicit_hash_key: None,
                data: vec![i as u8],
            })
            .collect();
        kpl_aggregate::aggregate(&users)
    }

    #[test]
    fn aggregated_records_unpack_with_sub_sequence_numbers_and_plain_ones_pass() {
        let records = vec![stream_record("10", aggregated(3)), stream_record("11", b"plain".to_vec())];
        let out = unpack("s", records, &mut None);
        let seen: Vec<_> =
            out.iter().map(|r| (r.sequence_number.as_str(), r.sub_sequence_number, r.partition_key.as_str())).collect();
        assert_eq!(seen, vec![("10", Some(0), "k0"), ("10", Some(1), "k1"), ("10", Some(2), "k2"), ("11", None, "p")]);
    }

    #[test]
    fn resuming_skips_what_the_checkpoint_covers_and_nothing_after() {
        let records = vec![stream_record("10", aggregated(3)), stream_record("11", b"x".to_vec())];
        let mut skip = Some(("10".to_string(), 1));
        let out = unpack("s", records.clone(), &mut skip);
        let seen: Vec<_> = out.iter().map(|r| (r.sequence_number.as_str(), r.sub_sequence_number)).collect();
        assert_eq!(seen, vec![("10", Some(2)), ("11", None)]);
        assert_eq!(skip, None);
        let mut plain = Some(("11".to_string(), 0));
        let out = unpack("s", vec![records[1].clone(), stream_record("12", b"y".to_vec())], &mut plain);
        assert_eq!(out.iter().map(|r| r.sequence_number.as_str()).collect::<Vec<_>>(), vec!["12"]);
    }

    #[test]
    fn a_damaged_aggregate_is_handed_over_whole() {
        let mut bytes = aggregated(2);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        let out = unpack("s", vec![stream_record("5", bytes.clone())], &mut None);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, bytes);
    }
}
