//! Retention in cluster mode: per shard, the expired objects (listed in time order, up to the
//! first kept), then the log below the first kept entry, then its amendments
//! (docs/cluster.md section 5). Every step is idempotent, so two nodes running it at once only
//! repeat work.

use std::sync::Arc;

use super::log;
use super::node::Node;
use super::read::first_kept;
use super::watch::forget_amendments;
use crate::error::Result;
use crate::handle::StreamHandle;
use crate::retention::TrimStats;

/// Trims one shard (each shard gets its own deadline: one slow shard must not stop the rest).
pub(crate) async fn trim_shard(node: Arc<Node>, handle: StreamHandle, shard: u32) -> Result<TrimStats> {
    let (node, handle) = (&*node, &handle);
    let mut stats = TrimStats::default();
    let id = handle.id();
    // One cutoff for the index and the objects, as in the local engine.
    let cutoff_ms = node.cutoff_ms(handle);
    let range = log::range(node, id, shard).await?;
    let keep_from = first_kept(node, handle, shard, range).await?;
    stats.segments_deleted += node.objects.delete_before(id, shard, cutoff_ms).await?;
    if keep_from > range.first {
        let removed = log::purge_below(node, id, shard, keep_from).await?;
        stats.entries_removed += removed;
        stats.shards_trimmed += u64::from(removed > 0);
        forget_amendments(node, id, shard..shard + 1, keep_from).await?;
    }
    Ok(stats)
}
