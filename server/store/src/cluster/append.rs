//! Appends in cluster mode: payload objects first, then the log entries, and an answer only
//! when JetStream has acknowledged every entry (docs/cluster.md section 3).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;

use super::names;
use super::node::{Node, PublishTurn};
use super::watch::tip_notice;
use crate::entry::{Appended, NewEntry, Storage, encode_header};
use crate::error::Result;
use crate::handle::StreamHandle;

const RETRY_FIRST_PAUSE: Duration = Duration::from_millis(50);
const RETRY_MAX_PAUSE: Duration = Duration::from_secs(1);

/// One entry with its payload stored (sealed, and in the object store if large).
struct Stored {
    entry: NewEntry,
    /// The stored form of the payload (sealed if the stream is encrypted).
    payload: Bytes,
    object: Option<String>,
    nonce: Option<[u8; 12]>,
}

/// One entry ready to publish.
struct Outgoing {
    shard: u32,
    arrival_ms: u64,
    body: Vec<u8>,
    object: Option<String>,
    nonce: Option<[u8; 12]>,
}

pub(crate) async fn append(
    node: Arc<Node>,
    handle: StreamHandle,
    entries: Vec<NewEntry>,
    turn: PublishTurn,
) -> Result<Vec<Appended>> {
    let id = handle.id();
    let append_no = node.appends.fetch_add(1, Ordering::Relaxed);
    // Objects upload while earlier appends publish; only the publishing waits its turn.
    let stored = store_payloads(&node, &handle, entries).await;
    if let Some(previous) = turn.previous {
        // An error only means the append before failed (and dropped its sender).
        let _ = previous.await;
    }
    // The turn is held until every entry is acknowledged, retries included, so appends reach
    // each shard in the order they were made (`turn.done` is dropped on any return).
    let outgoing = with_arrival_times(&handle, node.clock.now_ms(), stored?)?;
    let subject_of = |shard| names::log_subject(id, shard);
    let message_of = |index: usize, entry: &Outgoing| {
        let mut message = PublishMessage::build()
            .payload(entry.body.clone().into())
            .message_id(format!("{}-{:x}-{append_no}-{index}", node.options.node_id, node.boot_id));
        if let Some(key) = &entry.object {
            message = message.header(names::OBJECT_HEADER, key.as_str());
        }
        if let Some(nonce) = &entry.nonce {
            message = message.header(names::NONCE_HEADER, hex::encode(nonce).as_str());
        }
        message
    };
    // Published back to back on one connection, so each shard stores them in this order.
    let mut pending = Vec::with_capacity(outgoing.len());
    for (index, entry) in outgoing.iter().enumerate() {
        pending.push(node.js.send_publish(subject_of(entry.shard), message_of(index, entry)).await);
    }
    let mut appended = Vec::with_capacity(pending.len());
    for (index, (sent, entry)) in pending.into_iter().zip(&outgoing).enumerate() {
        let acked = match sent {
            Ok(ack) => ack.await.ok(),
            Err(_) => None,
        };
        let sequence = match acked {
            Some(ack) => ack.sequence,
            // A NATS server died or the connection moved: publish the same message again until
            // the request deadline; its id makes JetStream answer with the stored copy's
            // sequence instead of storing it twice. Entries of this append published after it
            // may then precede it (PutRecords promises no order within a call, and a video
            // append is one fragment); later appends wait for this one.
            None => republish(&node, subject_of(entry.shard), || message_of(index, entry)).await?,
        };
        appended.push(Appended { shard: entry.shard, seq: sequence - 1, arrival_ms: entry.arrival_ms });
    }
    let _ = turn.done.send(());
    announce(&node, &handle, &appended).await;
    Ok(appended)
}

async fn republish(node: &Node, subject: String, message: impl Fn() -> PublishMessage) -> Result<u64> {
    let mut pause = RETRY_FIRST_PAUSE;
    loop {
        match node.js.send_publish(subject.clone(), message()).await {
            Ok(ack) => match ack.await {
                Ok(ack) => return Ok(ack.sequence),
                Err(error) => tracing::debug!(%error, "an entry was not acknowledged; retrying"),
            },
            Err(error) => tracing::debug!(%error, "an entry was not published; retrying"),
        }
        // The caller's deadline (the request timeout) ends the retries.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX_PAUSE);
    }
}

/// Seals the payloads of an encrypted stream and writes the large ones to the object store, all
/// at once, before any log entry. An object's key carries a time no earlier than the arrival
/// time its entry will get (assigned later, within the request timeout), so retention, which
/// deletes objects by key time, never deletes one whose entry is still readable.
async fn store_payloads(node: &Node, handle: &StreamHandle, entries: Vec<NewEntry>) -> Result<Vec<Stored>> {
    let id = handle.id();
    let meta = handle.meta();
    let sealing = match meta.encryption.as_ref().filter(|e| e.enabled) {
        Some(_) => Some(node.data_key(&meta)?),
        None => None,
    };
    let timeout_ms = u64::try_from(node.options.request_timeout.as_millis()).unwrap_or(u64::MAX);
    let key_time_ms = node.clock.now_ms().saturating_add(timeout_ms);
    let mut stored = Vec::with_capacity(entries.len());
    for mut entry in entries {
        let nonce = match &sealing {
            Some(key) => {
                let nonce = node.nonces.next()?;
                key.seal_unplaced(id, entry.shard, nonce, &mut entry.payload)?;
                Some(nonce)
            }
            None => None,
        };
        let inline = (entry.payload.len() as u64) < node.options.object_min_bytes;
        let object = (!inline).then(|| names::object_key(&node.objects.prefix, id, entry.shard, key_time_ms));
        stored.push(Stored { payload: Bytes::from(std::mem::take(&mut entry.payload)), entry, object, nonce });
    }
    let puts = stored
        .iter()
        .filter_map(|s| Some((s.object.clone()?, s.payload.clone())))
        .map(|(key, payload)| async move { node.objects.put(&key, payload).await });
    futures::future::try_join_all(puts).await?;
    Ok(stored)
}

/// Gives each entry its arrival time, inside the publish turn: the node's clock, never below the
/// newest arrival this node has published in the shard, so times do not go back in a shard.
fn with_arrival_times(handle: &StreamHandle, now_ms: u64, stored: Vec<Stored>) -> Result<Vec<Outgoing>> {
    let mut outgoing = Vec::with_capacity(stored.len());
    for Stored { entry, payload, object, nonce } in stored {
        let shard = handle.shard(entry.shard)?;
        let arrival_ms = now_ms.max(shard.last_arrival_ms.load(Ordering::Acquire));
        shard.last_arrival_ms.fetch_max(arrival_ms, Ordering::AcqRel);
        let storage = Storage { inline: object.is_none(), encrypted: nonce.is_some(), segment: None };
        let body = encode_header(arrival_ms, entry.producer_ts_ms, &entry.attrs, &payload, storage);
        outgoing.push(Outgoing { shard: entry.shard, arrival_ms, body, object, nonce });
    }
    Ok(outgoing)
}

/// Moves this node's tips and tells the other nodes.
async fn announce(node: &Node, handle: &StreamHandle, appended: &[Appended]) {
    let mut newest: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for item in appended {
        let slot = newest.entry(item.shard).or_default();
        *slot = (slot.0.max(item.seq + 1), slot.1.max(item.arrival_ms));
    }
    for (shard, (tip, arrival_ms)) in newest {
        if let Ok(state) = handle.shard(shard) {
            state.advance(tip, arrival_ms);
        }
        let notice = node.client.publish(names::tip_subject(handle.id(), shard), tip_notice(tip, arrival_ms)).await;
        if let Err(error) = notice {
            // Other nodes' tails find the entries on their next poll.
            tracing::debug!(%error, "a tip notice was not sent");
        }
    }
}
