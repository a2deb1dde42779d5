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
            forget(node, &name);
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
    let replaced = node.streams.write().unwrap_or_else(|e| e.into_inner()).insert(meta.name.clone(), handle.clone());
    // A stream deleted and made again elsewhere: handles on the old one must fail, not write.
    if let Some(old) = replaced {
        old.0.deleted.store(true, Ordering::Release);
    }
    node.meta_changes.send_modify(|n| *n += 1);
    Ok(Some(handle))
}

/// The stream's metadata as the bucket's leader has it now, applied to this node's table: a
/// stream created or changed through another node a moment ago is seen here at once, not when
/// the watch delivers it.
pub(crate) async fn refresh(node: Arc<Node>, name: String) -> Result<StreamHandle> {
    let key = names::meta_key(&name);
    let subject = format!("$KV.{}.{key}", names::META_BUCKET);
    let found = node.meta.stream.get_last_raw_message_by_subject(&subject).await;
    let message = match found {
        Ok(message) => message,
        Err(error) if matches!(error.kind(), LastRawMessageErrorKind::NoMessageFound) => {
            forget(&node, &name);
            return Err(StoreError::StreamNotFound(name));
        }
        Err(error) => return Err(nats_error("reading a stream")(&error)),
    };
    let operation = message.headers.get("KV-Operation").map(|v| v.as_str().to_string());
    let value = operation.is_none().then_some(&message.payload[..]);
    apply_record(&node, &key, message.sequence, value).await?.ok_or(StoreError::StreamNotFound(name))
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

fn forget(node: &Node, name: &str) {
    if let Some(handle) = node.streams.write().unwrap_or_else(|e| e.into_inner()).remove(name) {
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
    node.streams.write().unwrap_or_else(|e| e.into_inner()).insert(meta.name, handle.clone());
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
    for _ in 0..MAX_META_ATTEMPTS {
        let (meta_kv, key) = (node.meta.clone(), names::meta_key(&name));
        let current =
            bridge.run(async move { meta_kv.entry(key).await.map_err(|e| nats_error("reading a stream")(&e)) })?;
        let Some(current) = current.filter(|entry| entry.operation == kv::Operation::Put) else {
            return Err(StoreError::StreamDeleted(name));
        };
        let mut meta: StreamMeta = serde_json::from_slice(&current.value)
            .map_err(|source| StoreError::BadMetadata { key: current.key.clone(), source })?;
        if meta.id != handle.id() || handle.0.deleted.load(Ordering::Acquire) {
            return Err(StoreError::StreamDeleted(name));
        }
        change(&mut meta);
        let (meta_kv, key, json) =
            (node.meta.clone(), names::meta_key(&name), serde_json::to_vec(&meta).unwrap_or_default());
        let written = bridge.run(async move {
            match meta_kv.update(key, json.into(), current.revision).await {
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
    forget(&node, &meta.name);
    for shard in 0..meta.shards.len() as u32 {
        log::delete(&node, meta.id, shard).await?;
    }
    node.objects.delete_stream(meta.id).await?;
    super::watch::forget_amendments(&node, meta.id, 0..meta.shards.len() as u32, u64::MAX).await
}
