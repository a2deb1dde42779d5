//! Keeping a node's view current: stream metadata and amendments from KV watches, tips from
//! other nodes' notices and, for shards someone is tailing, a poll each second in case a notice
//! was lost (notices are at most once). Also the amendments' writes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt as _;

use super::log;
use super::names;
use super::node::{Node, nats_error};
use super::streams;
use crate::backend::AmendFn;
use crate::error::{Result, StoreError};
use crate::handle::StreamHandle;

type Watcher = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How often tailed shards are checked against their logs.
const TAIL_POLL: Duration = Duration::from_secs(1);
/// Pause before a watch that ended (NATS reconnecting) is opened again.
const REWATCH_PAUSE: Duration = Duration::from_millis(500);
const MAX_AMEND_ATTEMPTS: usize = 20;

/// The newest revision of a bucket: what a load that starts now is sure to include.
pub(crate) async fn last_revision(bucket: &kv::Store) -> Result<u64> {
    let info = bucket.stream.get_info().await.map_err(|e| nats_error("reading a bucket's state")(&e))?;
    Ok(info.state.last_sequence)
}

/// Subscribes to tip notices now (so none sent after `open` returns is missed) and returns the
/// watchers to run. Each watch replays its bucket from just after the revision the node's load
/// started at (`loaded`), so nothing changed between the load and the watch is missed.
pub(crate) async fn start(node: Arc<Node>, loaded: Loaded) -> Result<Vec<Watcher>> {
    let tips = node.client.subscribe(names::TIP_SUBJECTS).await.map_err(|e| nats_error("subscribing to tips")(&e))?;
    Ok(vec![
        Box::pin(watch_bucket(node.clone(), node.meta.clone(), loaded.meta, |node, entry| {
            Box::pin(async move {
                if let Err(error) = streams::apply(&node, &entry).await {
                    tracing::warn!(%error, key = %entry.key, "stream metadata from the cluster not applied");
                }
            })
        })),
        Box::pin(watch_bucket(node.clone(), node.amend.clone(), loaded.amend, |node, entry| {
            Box::pin(async move { apply_amendment(&node, &entry) })
        })),
        Box::pin(follow_tips(node.clone(), tips)),
        Box::pin(poll_tailed_shards(node)),
    ])
}

type Apply = fn(Arc<Node>, kv::Entry) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// The revisions of the metadata and amendment buckets when the node loaded them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Loaded {
    pub(crate) meta: u64,
    pub(crate) amend: u64,
}

/// Applies every change of a bucket after revision `applied`, reopening the watch after the last
/// change applied whenever it ends.
async fn watch_bucket(node: Arc<Node>, bucket: kv::Store, mut applied: u64, apply: Apply) {
    loop {
        match bucket.watch_all_from_revision(applied + 1).await {
            Ok(mut changes) => {
                while let Some(change) = changes.next().await {
                    match change {
                        Ok(entry) => {
                            applied = applied.max(entry.revision);
                            apply(node.clone(), entry).await
                        }
                        Err(_) if node.is_closing() => return,
                        Err(error) => {
                            tracing::warn!(%error, "a cluster watch failed");
                            break;
                        }
                    }
                }
            }
            Err(_) if node.is_closing() => return,
            Err(error) => tracing::warn!(%error, "opening a cluster watch failed"),
        }
        tokio::time::sleep(REWATCH_PAUSE).await;
    }
}

async fn follow_tips(node: Arc<Node>, mut tips: async_nats::Subscriber) {
    while let Some(notice) = tips.next().await {
        let Some((id, shard)) = names::parse_tip_subject(&notice.subject) else { continue };
        let Some((tip, arrival_ms)) = parse_tip(&notice.payload) else { continue };
        if let Some(handle) = node.stream_by_id(id)
            && let Ok(state) = handle.shard(shard)
        {
            state.advance(tip, arrival_ms);
        }
    }
}

pub(crate) fn tip_notice(tip: u64, arrival_ms: u64) -> bytes::Bytes {
    format!("{tip} {arrival_ms}").into()
}

fn parse_tip(payload: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (tip, arrival) = text.split_once(' ')?;
    Some((tip.parse().ok()?, arrival.parse().ok()?))
}

async fn poll_tailed_shards(node: Arc<Node>) {
    let mut ticks = tokio::time::interval(TAIL_POLL);
    loop {
        ticks.tick().await;
        for handle in node.all_streams() {
            for shard in 0..handle.shard_count() {
                let Ok(state) = handle.shard(shard) else { continue };
                if state.tip.receiver_count() == 0 {
                    continue;
                }
                if let Ok(range) = log::range(&node, handle.id(), shard).await
                    && range.tip > *state.tip.borrow()
                {
                    let newest = log::get(&node, handle.id(), shard, range.tip - 1).await.ok().flatten();
                    state.advance(range.tip, newest.map_or(0, |e| e.header.arrival_ms));
                }
            }
        }
    }
}

fn apply_amendment(node: &Node, entry: &kv::Entry) {
    let Some(place) = names::parse_amend_key(&entry.key) else { return };
    let mut amended = node.amendments.write().unwrap_or_else(|e| e.into_inner());
    match entry.operation {
        kv::Operation::Put => {
            amended.insert(place, entry.value.to_vec());
        }
        kv::Operation::Delete | kv::Operation::Purge => {
            amended.remove(&place);
        }
    }
}

pub(crate) async fn load_amendments(node: Arc<Node>) -> Result<()> {
    let mut keys = node.amend.keys().await.map_err(|e| nats_error("listing amendments")(&e))?;
    let mut found = Vec::new();
    while let Some(key) = keys.next().await {
        found.push(key.map_err(|e| nats_error("listing amendments")(&e))?);
    }
    for key in found {
        if let Some(entry) = node.amend.entry(key).await.map_err(|e| nats_error("reading an amendment")(&e))? {
            apply_amendment(&node, &entry);
        }
    }
    Ok(())
}

/// Rewrites an entry's attributes with compare-and-set on its amendment key.
pub(crate) async fn amend(
    node: Arc<Node>,
    handle: StreamHandle,
    shard: u32,
    seq: u64,
    mut change: AmendFn,
) -> Result<bool> {
    let id = handle.id();
    let Some(stored) = log::get(&node, id, shard, seq).await? else { return Ok(false) };
    if stored.header.arrival_ms < node.cutoff_ms(&handle) {
        return Ok(false);
    }
    let key = names::amend_key(id, shard, seq);
    for _ in 0..MAX_AMEND_ATTEMPTS {
        let current = streams::leader_entry(&node.amend, &key).await?;
        let live = current.as_ref().and_then(|(_, value)| value.as_ref());
        let attrs = live.map_or(stored.header.attrs.clone(), |value| value.to_vec());
        let Some(next) = change(&attrs) else { return Ok(false) };
        if next == attrs {
            return Ok(false);
        }
        let written = match &current {
            Some((revision, _)) => node.amend.update(&key, next.clone().into(), *revision).await.is_ok(),
            None => node.amend.create(&key, next.clone().into()).await.is_ok(),
        };
        if written {
            node.amendments.write().unwrap_or_else(|e| e.into_inner()).insert((id, shard, seq), next);
            return Ok(true);
        }
    }
    Err(StoreError::Backend { what: "amending an entry", detail: "too many concurrent changes".into() })
}

/// Deletes the amendments of `shards` of a stream below `below_seq` (retention, deletion).
pub(crate) async fn forget_amendments(
    node: &Node,
    id: u64,
    shards: std::ops::Range<u32>,
    below_seq: u64,
) -> Result<()> {
    let doomed: Vec<(u64, u32, u64)> = {
        let amended = node.amendments.read().unwrap_or_else(|e| e.into_inner());
        amended.keys().filter(|(i, s, q)| *i == id && shards.contains(s) && *q < below_seq).copied().collect()
    };
    for (id, shard, seq) in doomed {
        node.amend
            .purge(names::amend_key(id, shard, seq))
            .await
            .map_err(|e| nats_error("deleting an amendment")(&e))?;
        node.amendments.write().unwrap_or_else(|e| e.into_inner()).remove(&(id, shard, seq));
    }
    Ok(())
}
