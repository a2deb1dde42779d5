//! Leases on background work (docs/cluster.md section 6): one KV key per piece of work, holding
//! the holder and an expiry. A node takes a lease that is free or expired, and renews its own,
//! always with compare-and-set on the key's revision, so two nodes never both succeed.

use std::sync::Arc;

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use super::node::{Node, nats_error};
use super::streams::{is_conflict, leader_entry};
use crate::error::Result;

#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    holder: String,
    expires_ms: u64,
}

/// Lease keys are KV keys: work names are hex-encoded, as stream names are.
fn lease_key(work: &str) -> String {
    format!("lease.{}", hex::encode(work.as_bytes()))
}

/// This node's name in leases: its id and start, so a restarted node does not mistake a lease
/// its previous life held for its own (the old one's work may still be winding down).
fn holder(node: &Node) -> String {
    format!("{}-{:x}", node.options.node_id, node.boot_id)
}

/// Takes or renews the lease on `work` for `ttl_ms`; false when another node holds it.
pub(crate) async fn hold(node: Arc<Node>, work: String, ttl_ms: u64) -> Result<bool> {
    let key = lease_key(&work);
    let me = holder(&node);
    let now_ms = node.clock.now_ms();
    // From the leader: a lagging replica could show a lease as free, or as someone else's.
    let current = leader_entry(&node.leases, &key).await?;
    if let Some((_, Some(value))) = &current {
        let lease: Option<Lease> = serde_json::from_slice(value).ok();
        if lease.is_some_and(|lease| lease.holder != me && lease.expires_ms > now_ms) {
            return Ok(false);
        }
    }
    let value = serde_json::to_vec(&Lease { holder: me, expires_ms: now_ms + ttl_ms }).unwrap_or_default();
    match &current {
        Some((revision, _)) => match node.leases.update(&key, value.into(), *revision).await {
            Ok(_) => Ok(true),
            Err(error) if is_conflict(&error) => Ok(false),
            Err(error) => Err(nats_error("writing a lease")(&error)),
        },
        None => match node.leases.create(&key, value.into()).await {
            Ok(_) => Ok(true),
            Err(error) if matches!(error.kind(), kv::CreateErrorKind::AlreadyExists) => Ok(false),
            Err(error) => Err(nats_error("writing a lease")(&error)),
        },
    }
}

/// Gives up `work` if this node holds it, so another node may take it at once.
pub(crate) async fn release(node: Arc<Node>, work: String) -> Result<()> {
    let key = lease_key(&work);
    let Some((revision, Some(value))) = leader_entry(&node.leases, &key).await? else {
        return Ok(());
    };
    let lease: Option<Lease> = serde_json::from_slice(&value).ok();
    if lease.is_some_and(|lease| lease.holder == holder(&node)) {
        // Lost races only mean someone else changed it: nothing of ours to release.
        let _ = node.leases.delete_expect_revision(&key, Some(revision)).await;
    }
    Ok(())
}
