//! ON_DEMAND capacity: a stream in ON_DEMAND mode starts with 4 shards, and a shard whose writes
//! ran over its write quota (1 MiB/s or 1,000 records/s) across a 10 s meter window is split at
//! the middle of its hash key range. One split per stream per pass, a pass every
//! `PASS_EVERY`, within the account's shard limit (docs/kds.md "Capacity modes").

use std::time::Duration;

use super::context::KdsCtx;
use super::stream_settings::is_on_demand;

const PASS_EVERY: Duration = Duration::from_secs(5);
/// A shard is hot past this share of its write quota.
const HOT_LOAD: f64 = 1.0;

/// Runs the passes until the server stops.
pub async fn scale_on_demand(ctx: KdsCtx) {
    let mut ticks = tokio::time::interval(PASS_EVERY);
    loop {
        ticks.tick().await;
        let pass_ctx = ctx.clone();
        if let Err(join) = tokio::task::spawn_blocking(move || pass(&pass_ctx)).await {
            tracing::error!(%join, "an on-demand scaling pass failed");
        }
    }
}

/// Splits the hottest open shard of each ON_DEMAND stream that has one.
pub(super) fn pass(ctx: &KdsCtx) {
    if !ctx.engine.can_reshard() {
        return;
    }
    let now_ms = ctx.engine.now_ms();
    for handle in ctx.engine.streams() {
        let meta = handle.meta();
        if meta.kind != framelog_store::StreamKind::Data || !is_on_demand(&meta) {
            continue;
        }
        let hot = ctx.quotas.hot_shards(meta.id, HOT_LOAD, now_ms);
        let Some(shard) = hot.into_iter().find(|&s| meta.shards.get(s as usize).is_some_and(|m| m.is_open())) else {
            continue;
        };
        match super::reshard::split_in_half(ctx, &handle, shard) {
            Ok(()) => tracing::info!(stream = %meta.name, shard, "split a hot shard of an ON_DEMAND stream"),
            Err(error) => tracing::debug!(stream = %meta.name, shard, ?error, "a hot shard was not split"),
        }
    }
}
