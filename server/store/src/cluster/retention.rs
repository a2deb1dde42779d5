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

/// Trims every shard of every stream; a shard that fails does not stop the others, and the
/// first failure is returned at the end (a stream deleted meanwhile is not one).
pub(crate) async fn trim_all(node: Arc<Node>) -> Result<TrimStats> {
    let mut stats = TrimStats::default();
    let mut first_error = None;
    for handle in node.all_streams() {
        for shard in 0..handle.shard_count() {
            if let Err(error) = trim_shard(&node, &handle, shard, &mut stats).await
                && !handle.0.deleted.load(std::sync::atomic::Ordering::Acquire)
            {
                first_error.get_or_insert(error);
            }
        }
    }
    first_error.map_or(Ok(stats), Err)
}

async fn trim_shard(node: &Node, handle: &StreamHandle, shard: u32, stats: &mut TrimStats) -> Result<()> {
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
    Ok(())
}
