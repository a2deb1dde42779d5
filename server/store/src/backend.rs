//! The interface each storage backend implements (docs/cluster.md section 1). `Engine` is the
//! only caller; features above the store see `Engine` and never a backend.

use tokio::sync::oneshot;

use crate::entry::{Appended, NewEntry};
use crate::error::{Result, StoreError};
use crate::handle::StreamHandle;
use crate::meta::StreamMeta;
use crate::payload_ref::EntryRef;
use crate::read::{HeaderItem, Position, ReadBatch};
use crate::reshard::ReshardStep;
use crate::retention::TrimStats;

/// A change to an entry's attributes: gets the current ones, returns new ones or `None` for no
/// change. May run more than once (a compare-and-set retried after a concurrent change).
pub type AmendFn = Box<dyn FnMut(&[u8]) -> Option<Vec<u8>> + Send + 'static>;

/// How durable a metadata write must be before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaDurability {
    /// Synced to disk (or a replicated quorum) before returning.
    Synced,
    /// Survives a crash of this process, perhaps not of the machine (consumer checkpoints).
    Process,
}

/// The operations of the shard log engine, as each backend provides them.
pub(crate) trait Backend: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;
    fn create_stream(&self, meta: StreamMeta) -> Result<StreamHandle>;
    fn stream(&self, name: &str) -> Result<StreamHandle>;
    fn streams(&self) -> Vec<StreamHandle>;
    fn write_meta(
        &self,
        handle: &StreamHandle,
        change: &mut dyn FnMut(&mut StreamMeta),
        durability: MetaDurability,
    ) -> Result<StreamMeta>;
    fn new_wrapped_data_key_hex(&self) -> Result<String>;
    fn delete_stream(&self, name: &str) -> Result<()>;
    fn reshard(&self, handle: &StreamHandle, steps: Vec<ReshardStep>) -> Result<StreamMeta>;
    fn can_reshard(&self) -> bool;
    fn amend_attrs(&self, handle: &StreamHandle, shard: u32, seq: u64, change: AmendFn) -> Result<bool>;
    fn append(&self, handle: &StreamHandle, entries: Vec<NewEntry>) -> Result<AppendWait>;
    fn close(&self) -> Result<()>;
    fn resolve(&self, handle: &StreamHandle, shard: u32, position: Position) -> Result<u64>;
    fn read(
        &self,
        handle: &StreamHandle,
        shard: u32,
        from_seq: u64,
        max_count: usize,
        max_bytes: usize,
    ) -> Result<ReadBatch>;
    fn list_headers(
        &self,
        handle: &StreamHandle,
        shard: u32,
        from_seq: u64,
        to_seq: u64,
        max_count: usize,
    ) -> Result<Vec<HeaderItem>>;
    fn producer_range(
        &self,
        handle: &StreamHandle,
        shard: u32,
        start_ms: u64,
        end_ms: u64,
        after: Option<(u64, u64)>,
        max_count: usize,
    ) -> Result<Vec<(u64, u64)>>;
    fn entry_ref(&self, handle: &StreamHandle, shard: u32, from_seq: u64) -> Result<(Option<EntryRef>, u64)>;
    fn trim_expired(&self) -> Result<TrimStats>;
    fn meta_changes(&self) -> tokio::sync::watch::Receiver<u64>;
    fn hold_lease(&self, work: &str, ttl_ms: u64) -> Result<bool>;
    fn release_lease(&self, work: &str) -> Result<()>;
    /// A consistent copy of everything stored, made while the backend serves (backup.rs).
    fn backup(&self, to: &std::path::Path) -> Result<crate::backup::BackupStats>;
    /// What this process's share of the engine holds in memory, where the backend keeps it.
    fn memory(&self) -> Option<crate::memory::EngineMemory>;
    /// Compaction debt and write stalls, where the backend has them.
    fn health(&self) -> Option<crate::health::EngineHealth>;
    /// The bytes a stream takes on this backend's disk, where it knows them.
    fn disk_bytes(&self, stream_id: u64) -> Option<u64>;
}

/// A pending append: await it, or block on it.
#[derive(Debug)]
pub struct AppendWait(oneshot::Receiver<Result<Vec<Appended>>>);

impl AppendWait {
    pub(crate) fn new(receiver: oneshot::Receiver<Result<Vec<Appended>>>) -> Self {
        Self(receiver)
    }

    pub async fn wait(self) -> Result<Vec<Appended>> {
        self.0.await.map_err(|_| StoreError::CommitterGone)?
    }

    pub fn wait_blocking(self) -> Result<Vec<Appended>> {
        self.0.blocking_recv().map_err(|_| StoreError::CommitterGone)?
    }
}
