//! What an application writes for a consumer group (the KCL's record processor): one processor
//! per shard lease, called with the shard's records in order, and a checkpointer that records
//! how far it got.

use std::future::Future;
use std::sync::{Arc, Mutex};

use super::lease_api::{LeaseScope, SHARD_END};
use crate::Client;
use crate::error::Result;

/// A user record as the processor sees it: KPL aggregated records are unpacked, each user
/// record with its sub-sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub shard_id: String,
    pub sequence_number: String,
    /// The record's place in its aggregated record; None for a record sent alone.
    pub sub_sequence_number: Option<u64>,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
    pub arrival_epoch_ms: u64,
}

/// One shard's processor. `shard_ended` and `shutdown_requested` checkpoint by default.
pub trait RecordProcessor: Send + 'static {
    /// Called once, before the first records of the lease.
    fn initialize(&mut self, _shard_id: &str) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The next records of the shard, in order. Checkpoint through `checkpointer` when they
    /// are safely handled; records after the last checkpoint are delivered again to whichever
    /// worker takes the lease next.
    fn process_records(
        &mut self,
        records: Vec<ConsumedRecord>,
        checkpointer: &Checkpointer,
    ) -> impl Future<Output = ()> + Send;

    /// Every record of the shard has been processed (it was closed by a reshard): checkpoint
    /// SHARD_END so its children can be processed.
    fn shard_ended(&mut self, checkpointer: &Checkpointer) -> impl Future<Output = ()> + Send {
        async move {
            if let Err(error) = checkpointer.checkpoint_shard_end().await {
                tracing::warn!(%error, "shard-end checkpoint failed");
            }
        }
    }

    /// The worker is shutting down gracefully: checkpoint what was processed before the lease
    /// is handed over.
    fn shutdown_requested(&mut self, checkpointer: &Checkpointer) -> impl Future<Output = ()> + Send {
        async move {
            if let Err(error) = checkpointer.checkpoint().await {
                tracing::warn!(%error, "shutdown checkpoint failed");
            }
        }
    }

    /// Another worker took the lease (or it expired): stop without checkpointing.
    fn lease_lost(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Records checkpoints for one lease.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    client: Client,
    scope: Arc<LeaseScope>,
    shard_id: String,
    /// The last record handed to the processor: (sequence number, sub-sequence number).
    last_delivered: Arc<Mutex<Option<(String, u64)>>>,
    /// The last position checkpointed, so a repeated checkpoint costs no call.
    last_checkpointed: Arc<Mutex<Option<(String, u64)>>>,
}

impl Checkpointer {
    pub(crate) fn new(client: Client, scope: Arc<LeaseScope>, shard_id: &str) -> Self {
        Self {
            client,
            scope,
            shard_id: shard_id.to_string(),
            last_delivered: Arc::default(),
            last_checkpointed: Arc::default(),
        }
    }

    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// Checkpoints the last record delivered to the processor.
    pub async fn checkpoint(&self) -> Result<()> {
        let last = self.last_delivered.lock().map(|l| l.clone()).unwrap_or_default();
        match last {
            Some((sequence, sub)) => self.checkpoint_at(&sequence, sub).await,
            None => Ok(()),
        }
    }

    /// Checkpoints a given record: it and everything before it are processed.
    pub async fn checkpoint_at(&self, sequence_number: &str, sub_sequence_number: u64) -> Result<()> {
        let position = (sequence_number.to_string(), sub_sequence_number);
        if self.last_checkpointed.lock().is_ok_and(|l| l.as_ref() == Some(&position)) {
            return Ok(());
        }
        self.client.checkpoint_lease(&self.scope, &self.shard_id, sequence_number, sub_sequence_number).await?;
        if let Ok(mut last) = self.last_checkpointed.lock() {
            *last = Some(position);
        }
        Ok(())
    }

    /// Marks the shard processed to its end.
    pub async fn checkpoint_shard_end(&self) -> Result<()> {
        self.checkpoint_at(SHARD_END, 0).await
    }

    pub(crate) fn delivered(&self, record: &ConsumedRecord) {
        if let Ok(mut last) = self.last_delivered.lock() {
            *last = Some((record.sequence_number.clone(), record.sub_sequence_number.unwrap_or(0)));
        }
    }

    pub(crate) fn reached_shard_end(&self) -> bool {
        self.last_checkpointed.lock().is_ok_and(|l| l.as_ref().is_some_and(|(s, _)| s == SHARD_END))
    }
}
