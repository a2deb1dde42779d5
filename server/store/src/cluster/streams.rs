//! The stream table of a cluster node: metadata in the KV bucket, compare-and-set on every
//! change, and this node's handles kept in step with it (docs/cluster.md section 2).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use futures::StreamExt as _;

use super::bridge::Bridge;
use super::log;
use super::names;
use super::node::{Node, nats_error};
use crate::error::{Result, StoreError};
use crate::handle::{StreamHandle, new_handle};
use crate::meta::StreamMeta;

/// How often a metadata change is retried after losing a race with another node's change.
const MAX_META_ATTEMPTS: usize = 20;

pub(crate) async fn load_all(node: Arc<Node>) -> Result<()> {
    let mut keys = node.meta.keys().await.map_err(|e| nats_error("listing streams")(&e))?;
    let mut names = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| nats_error("listing streams")(&e))?;
        if key.starts_with("stream.") {
            names.push(key);
        }
    }
    for key in names {
        if let Some(entry) = node.meta.entry(key).await.map_err(|e| nats_error("reading a stream")(&e))? {
            apply(&node, &entry).await?;
        }
    }
    Ok(())
}

/// Brings this node's table in line with one metadata record (from a load or the watch).
pub(crate) async fn apply(node: &Node, entry: &kv::Entry) -> Result<()> {
    if !entry.key.starts_with("stream.") {
        return Ok(());
    }
    let value = (entry.operation == kv::Operation::Put).then_some(&entry.value[..]);
    apply_record(node, &entry.key, entry.revision, value).await.map(|_| ())
}

/// Applies one metadata record: `value` is the stream's metadata, or `None` when the key was
/// deleted. Returns the stream's handle when it exists.
async fn apply_record(node: &Node, key: &str, revision: u64, value: Option<&[u8]>) -> Result<Option<StreamHandle>> {
    let Some(value) = value else {
        let name = hex::decode(key.trim_start_matches("stream.")).ok().and_then(|b| String::from_utf8(b).ok());
        if let Some(name) = name {
            forget(node, &name, revision);
        }
        return Ok(None);
    };
    let meta: StreamMeta =
        serde_json::from_slice(value).map_err(|source| StoreError::BadMetadata { key: key.to_string(), source })?;
    if let Ok(known) = node.stream(&meta.name)
        && known.id() == meta.id
    {
        set_meta(node, &known, meta, revision);
        return Ok(Some(known));
    }
    let handle = new_handle(meta.clone());
    handle.0.meta_revision.store(revision, Ordering::Release);
    for shard in 0..handle.shard_count() {
        restore_tip(node, &handle, shard).await?;
    }
    let mut streams = node.streams.write().unwrap_or_else(|e| e.into_inner());
    // Another task (the watch, a refresh, a create) may have added this stream meanwhile: keep
    // its handle, which readers may already wait on.
    if let Some(known) = streams.get(&meta.name).filter(|known| known.id() == meta.id).cloned() {
        drop(streams);
        set_meta(node, &known, meta, revision);
        return Ok(Some(known));
    }
    let replaced = streams.insert(meta.name.clone(), handle.clone());
    drop(streams);
    // A stream deleted and made again elsewhere: handles on the old one must fail, not write.
    if let Some(old) = replaced {
        old.0.deleted.store(true, Ordering::Release);
    }
    node.meta_changes.send_modify(|n| *n += 1);
    Ok(Some(handle))
}

/// A KV key's newest record as the bucket's leader has it (KV reads may otherwise be answered by
/// a lagging replica): its revision and value, the value `None` when the key was deleted;
/// `None` when the key was never written (or purged).
pub(crate) async fn leader_entry(store: &kv::Store, key: &str) -> Result<Option<(u64, Option<bytes::Bytes>)>> {
    let subject = format!("$KV.{}.{key}", store.name);
    match store.stream.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => {
            let deleted = message.headers.get("KV-Operation").is_some();
            Ok(Some((message.sequence, (!deleted).then_some(message.payload))))
        }
        Err(error) if matches!(error.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(error) => Err(nats_error("reading a KV record")(&error)),
    }
}

/// The stream's metadata as the bucket's leader has it now, applied to this node's table: a
/// stream created or changed through another node a moment ago is seen here at once, not when
/// the watch delivers it.
pub(crate) async fn refresh(node: Arc<Node>, name: String) -> Result<StreamHandle> {
    let key = names::meta_key(&name);
    let Some((revision, value)) = leader_entry(&node.meta, &key).await? else {
        forget(&node, &name, u64::MAX);
        return Err(StoreError::StreamNotFound(name));
    };
    apply_record(&node, &key, revision, value.as_deref()).await?.ok_or(StoreError::StreamNotFound(name))
}

/// Sets a shard's tip and newest arrival time from its log.
async fn restore_tip(node: &Node, handle: &StreamHandle, shard: u32) -> Result<()> {
    let range = log::range(node, handle.id(), shard).await?;
    let arrival_ms = match range.tip.checked_sub(1) {
        Some(newest) => log::get(node, handle.id(), shard, newest).await?.map_or(0, |e| e.header.arrival_ms),
        None => 0,
    };
    handle.shard(shard)?.advance(range.tip, arrival_ms);
    Ok(())
}

fn set_meta(node: &Node, handle: &StreamHandle, meta: StreamMeta, revision: u64) {
    let mut current = handle.0.meta.write().unwrap_or_else(|e| e.into_inner());
    if handle.0.meta_revision.fetch_max(revision, Ordering::AcqRel) < revision {
        *current = meta;
        drop(current);
        node.meta_changes.send_modify(|n| *n += 1);
    }
}

/// Drops a deleted stream from this node's table, unless what it holds is newer than the
/// deletion at `revision` (a late notice of an older incarnation's deletion).
fn forget(node: &Node, name: &str, revision: u64) {
    let mut streams = node.streams.write().unwrap_or_else(|e| e.into_inner());
    if streams.get(name).is_some_and(|h| h.0.meta_revision.load(Ordering::Acquire) > revision) {
        return;
    }
    let removed = streams.remove(name);
    drop(streams);
    if let Some(handle) = removed {
        handle.0.deleted.store(true, Ordering::Release);
        node.publish_order.lock().unwrap_or_else(|e| e.into_inner()).remove(&handle.id());
        node.meta_changes.send_modify(|n| *n += 1);
    }
}

/// Claims the next stream id with compare-and-set, so ids are never reused across nodes.
async fn next_id(node: &Node) -> Result<u64> {
    for _ in 0..MAX_META_ATTEMPTS {
        let current = node.meta.entry(names::NEXT_STREAM_ID_KEY).await.map_err(|e| nats_error("reading ids")(&e))?;
        let claimed = match &current {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let id: u64 = std::str::from_utf8(&entry.value).ok().and_then(|t| t.parse().ok()).unwrap_or(1);
                node.meta
                    .update(names::NEXT_STREAM_ID_KEY, (id + 1).to_string().into(), entry.revision)
                    .await
                    .ok()
                    .map(|_| id)
            }
            _ => node.meta.create(names::NEXT_STREAM_ID_KEY, "2".into()).await.ok().map(|_| 1),
        };
        if let Some(id) = claimed {
            return Ok(id);
        }
    }
    Err(StoreError::Backend { what: "claiming a stream id", detail: "too many concurrent creations".into() })
}

pub(crate) async fn create(node: Arc<Node>, mut meta: StreamMeta) -> Result<StreamHandle> {
    if node.stream(&meta.name).is_ok() {
        return Err(StoreError::StreamExists(meta.name));
    }
    meta.id = next_id(&node).await?;
    for shard in 0..meta.shards.len() as u32 {
        log::create(&node, meta.id, shard).await?;
    }
    let json = serde_json::to_vec(&meta).unwrap_or_default();
    let revision = match node.meta.create(names::meta_key(&meta.name), json.into()).await {
        Ok(revision) => revision,
        Err(error) => {
            for shard in 0..meta.shards.len() as u32 {
                log::delete(&node, meta.id, shard).await?;
            }
            if matches!(error.kind(), kv::CreateErrorKind::AlreadyExists) {
                return Err(StoreError::StreamExists(meta.name));
            }
            return Err(nats_error("storing a stream")(&error));
        }
    };
    let handle = new_handle(meta.clone());
    handle.0.meta_revision.store(revision, Ordering::Release);
    let mut streams = node.streams.write().unwrap_or_else(|e| e.into_inner());
    // The watch may have added it first; readers may already wait on that handle.
    if let Some(known) = streams.get(&meta.name).filter(|known| known.id() == meta.id).cloned() {
        return Ok(known);
    }
    streams.insert(meta.name, handle.clone());
    drop(streams);
    node.meta_changes.send_modify(|n| *n += 1);
    Ok(handle)
}

/// Applies `change` to the newest stored metadata and writes it back if nobody wrote in
/// between; otherwise reads again and reapplies.
pub(crate) fn write_meta(
    node: &Arc<Node>,
    bridge: &Bridge,
    handle: &StreamHandle,
    change: &mut dyn FnMut(&mut StreamMeta),
) -> Result<StreamMeta> {
    let name = handle.meta().name;
    for attempt in 0..MAX_META_ATTEMPTS as u64 {
        if attempt > 0 {
            // Spread out nodes that keep colliding on one stream.
            std::thread::sleep(std::time::Duration::from_millis(rand::random_range(1..=5 * attempt)));
        }
        let (meta_kv, key) = (node.meta.clone(), names::meta_key(&name));
        let current = bridge.run(async move { leader_entry(&meta_kv, &key).await })?;
        let Some((revision, Some(value))) = current else {
            return Err(StoreError::StreamDeleted(name));
        };
        let mut meta: StreamMeta = serde_json::from_slice(&value)
            .map_err(|source| StoreError::BadMetadata { key: names::meta_key(&name), source })?;
        if meta.id != handle.id() || handle.0.deleted.load(Ordering::Acquire) {
            return Err(StoreError::StreamDeleted(name));
        }
        change(&mut meta);
        let (meta_kv, key, json) =
            (node.meta.clone(), names::meta_key(&name), serde_json::to_vec(&meta).unwrap_or_default());
        let written = bridge.run(async move {
            match meta_kv.update(key, json.into(), revision).await {
                Ok(revision) => Ok(Some(revision)),
                Err(error) if is_conflict(&error) => Ok(None),
                Err(error) => Err(nats_error("writing a stream")(&error)),
            }
        })?;
        if let Some(revision) = written {
            set_meta(node, handle, meta.clone(), revision);
            return Ok(meta);
        }
    }
    Err(StoreError::Backend { what: "changing a stream", detail: "too many concurrent changes".into() })
}

/// Whether an update lost a compare-and-set race. NATS 2.12 and later answer such an update with
/// error 10164 ("wrong last sequence"), which the client does not map to its own kind.
pub(crate) fn is_conflict(error: &kv::UpdateError) -> bool {
    matches!(error.kind(), kv::UpdateErrorKind::WrongLastRevision) || error.to_string().contains("wrong last sequence")
}

pub(crate) async fn delete(node: Arc<Node>, handle: StreamHandle) -> Result<()> {
    let meta = handle.meta();
    node.meta.delete(names::meta_key(&meta.name)).await.map_err(|e| nats_error("deleting a stream")(&e))?;
    forget(&node, &meta.name, u64::MAX);
    for shard in 0..meta.shards.len() as u32 {
        log::delete(&node, meta.id, shard).await?;
    }
    node.objects.delete_stream(meta.id).await?;
    super::watch::forget_amendments(&node, meta.id, 0..meta.shards.len() as u32, u64::MAX).await
}
