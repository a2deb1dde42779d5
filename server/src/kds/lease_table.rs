//! One consumer application's leases on one stream (the role of the KCL's DynamoDB lease table,
//! docs/consumer-groups.md): a lease per shard, its owner and expiry, a counter that every change
//! bumps, and the checkpoint. Pure: the operations in leases.rs load it from the stream's
//! metadata, apply one change and store it back in the same atomic metadata update.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The checkpoint of a shard whose every record has been processed.
pub const SHARD_END: &str = "SHARD_END";
/// Where a child shard's consumer starts: at its first record, whatever the application's
/// initial position, so nothing written after a reshard is skipped.
pub const TRIM_HORIZON: &str = "TRIM_HORIZON";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTable {
    /// By shard index.
    pub leases: BTreeMap<u32, Lease>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub counter: u64,
    #[serde(default)]
    pub expires_ms: u64,
    /// A sequence number, SHARD_END, TRIM_HORIZON, or none yet (the worker's initial position).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    #[serde(default)]
    pub sub_sequence: u64,
}

impl Lease {
    pub fn is_finished(&self) -> bool {
        self.checkpoint.as_deref() == Some(SHARD_END)
    }

    /// Whether an owner holds it at `now_ms`.
    pub fn is_held(&self, now_ms: u64) -> bool {
        self.owner.is_some() && self.expires_ms > now_ms
    }
}

/// A shard as the table needs it: its index and parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLink {
    pub index: u32,
    pub parent: Option<u32>,
    pub adjacent_parent: Option<u32>,
}

/// Why a lease change was refused; leases.rs words it for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseRefusal {
    NoLease,
    /// The counter is not the one the caller read: someone changed the lease since.
    CounterMoved {
        current: u64,
    },
    HeldBy(String),
    NotOwner,
    ParentUnfinished(u32),
    /// A new table on a stream that already has as many as it may.
    TooManyTables,
}

/// What a worker asks for when it takes a lease.
#[derive(Debug, Clone)]
pub struct Take<'a> {
    pub worker: &'a str,
    pub expected_counter: u64,
    pub duration_ms: u64,
    /// Take it from a live owner (balancing), not only when free or expired.
    pub steal: bool,
}

impl LeaseTable {
    /// Adds a lease for each shard without one and drops leases of shards no longer listed;
    /// returns whether anything changed. A shard whose parent has a lease starts at
    /// TRIM_HORIZON; the others at the worker's initial position.
    pub fn sync(&mut self, shards: &[ShardLink]) -> bool {
        let before = self.leases.len();
        self.leases.retain(|index, _| shards.iter().any(|s| s.index == *index));
        let mut changed = before != self.leases.len();
        for shard in shards {
            if self.leases.contains_key(&shard.index) {
                continue;
            }
            let parents: Vec<u32> = shard.parent.into_iter().chain(shard.adjacent_parent).collect();
            let known_parent = parents.iter().any(|p| self.leases.contains_key(p));
            let checkpoint = known_parent.then(|| TRIM_HORIZON.to_string());
            self.leases.insert(shard.index, Lease { parents, checkpoint, ..Lease::default() });
            changed = true;
        }
        changed
    }

    /// Takes `shard`'s lease for `take.worker` if the caller saw its current counter, it is free
    /// or expired (or stolen on purpose), and every parent has been processed to its end.
    pub fn take(&mut self, shard: u32, take: &Take, now_ms: u64) -> Result<&Lease, LeaseRefusal> {
        let unfinished = self.unfinished_parent(shard)?;
        let lease = self.leases.get_mut(&shard).ok_or(LeaseRefusal::NoLease)?;
        if lease.counter != take.expected_counter {
            return Err(LeaseRefusal::CounterMoved { current: lease.counter });
        }
        if let Some(parent) = unfinished {
            return Err(LeaseRefusal::ParentUnfinished(parent));
        }
        let held_by_another = lease.owner.as_ref().filter(|o| lease.expires_ms > now_ms && *o != take.worker);
        if let Some(owner) = held_by_another.filter(|_| !take.steal) {
            return Err(LeaseRefusal::HeldBy(owner.clone()));
        }
        lease.owner = Some(take.worker.to_string());
        lease.expires_ms = now_ms.saturating_add(take.duration_ms);
        lease.counter += 1;
        Ok(lease)
    }

    /// A parent of `shard` whose lease is not finished (a parent without a lease was trimmed
    /// away with its records, so there is nothing left to wait for).
    fn unfinished_parent(&self, shard: u32) -> Result<Option<u32>, LeaseRefusal> {
        let lease = self.leases.get(&shard).ok_or(LeaseRefusal::NoLease)?;
        Ok(lease.parents.iter().copied().find(|p| self.leases.get(p).is_some_and(|l| !l.is_finished())))
    }

    /// Extends `worker`'s hold on `shard`.
    pub fn renew(&mut self, shard: u32, worker: &str, duration_ms: u64, now_ms: u64) -> Result<&Lease, LeaseRefusal> {
        let lease = self.owned_mut(shard, worker)?;
        lease.expires_ms = now_ms.saturating_add(duration_ms);
        lease.counter += 1;
        Ok(lease)
    }

    /// Records that `worker` processed `shard` up to (sequence, sub-sequence), or to its end.
    pub fn checkpoint(
        &mut self,
        shard: u32,
        worker: &str,
        sequence: &str,
        sub_sequence: u64,
    ) -> Result<&Lease, LeaseRefusal> {
        let lease = self.owned_mut(shard, worker)?;
        lease.checkpoint = Some(sequence.to_string());
        lease.sub_sequence = sub_sequence;
        lease.counter += 1;
        Ok(lease)
    }

    /// Gives `shard` up so another worker takes it at once (graceful hand-over).
    pub fn release(&mut self, shard: u32, worker: &str) -> Result<&Lease, LeaseRefusal> {
        let lease = self.owned_mut(shard, worker)?;
        lease.owner = None;
        lease.expires_ms = 0;
        lease.counter += 1;
        Ok(lease)
    }

    fn owned_mut(&mut self, shard: u32, worker: &str) -> Result<&mut Lease, LeaseRefusal> {
        let lease = self.leases.get_mut(&shard).ok_or(LeaseRefusal::NoLease)?;
        match &lease.owner {
            Some(owner) if owner == worker => Ok(lease),
            Some(owner) => Err(LeaseRefusal::HeldBy(owner.clone())),
            None => Err(LeaseRefusal::NotOwner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, parent: Option<u32>) -> ShardLink {
        ShardLink { index, parent, adjacent_parent: None }
    }

    fn take(worker: &str, expected_counter: u64, steal: bool) -> Take<'_> {
        Take { worker, expected_counter, duration_ms: 10_000, steal }
    }

    #[test]
    fn a_lease_is_taken_once_then_only_after_expiry_or_by_stealing() {
        let mut table = LeaseTable::default();
        assert!(table.sync(&[link(0, None)]));
        assert!(!table.sync(&[link(0, None)]), "nothing new");
        assert_eq!(table.take(0, &take("a", 0, false), 1_000).expect("free").counter, 1);
        assert_eq!(table.take(0, &take("b", 0, false), 1_000), Err(LeaseRefusal::CounterMoved { current: 1 }));
        assert_eq!(table.take(0, &take("b", 1, false), 2_000), Err(LeaseRefusal::HeldBy("a".into())));
        assert_eq!(table.take(0, &take("b", 1, false), 11_001).expect("expired").owner.as_deref(), Some("b"));
        assert_eq!(table.take(0, &take("a", 2, true), 11_002).expect("stolen").owner.as_deref(), Some("a"));
        assert_eq!(table.renew(0, "b", 10_000, 11_003), Err(LeaseRefusal::HeldBy("a".into())), "b lost it");
    }

    #[test]
    fn a_child_waits_for_its_parent_to_reach_shard_end() {
        let mut table = LeaseTable::default();
        table.sync(&[link(0, None)]);
        table.sync(&[link(0, None), link(1, Some(0)), link(2, Some(0))]);
        assert_eq!(table.leases[&1].checkpoint.as_deref(), Some(TRIM_HORIZON), "a child starts at its beginning");
        assert_eq!(table.leases[&0].checkpoint, None);
        assert_eq!(table.take(1, &take("a", 0, false), 0), Err(LeaseRefusal::ParentUnfinished(0)));
        table.take(0, &take("a", 0, false), 0).expect("parent");
        table.checkpoint(0, "a", "123", 4).expect("mid-shard");
        assert_eq!(table.take(1, &take("a", 0, false), 0), Err(LeaseRefusal::ParentUnfinished(0)));
        table.checkpoint(0, "a", SHARD_END, 0).expect("end");
        assert!(table.take(1, &take("a", 0, false), 0).is_ok());
        table.sync(&[link(1, Some(0)), link(2, Some(0))]);
        assert!(table.take(2, &take("b", 0, false), 0).is_ok(), "a trimmed parent leaves nothing to wait for");
    }

    #[test]
    fn release_and_checkpoint_need_the_owner() {
        let mut table = LeaseTable::default();
        table.sync(&[link(0, None)]);
        assert_eq!(table.checkpoint(0, "a", "1", 0), Err(LeaseRefusal::NotOwner));
        table.take(0, &take("a", 0, false), 0).expect("free");
        assert_eq!(table.release(0, "b"), Err(LeaseRefusal::HeldBy("a".into())));
        let released = table.release(0, "a").expect("owner");
        assert!(!released.is_held(0));
        let counter = released.counter;
        assert!(table.take(0, &take("b", counter, false), 1).is_ok(), "free again at once");
        assert_eq!(table.take(9, &take("b", 0, false), 1), Err(LeaseRefusal::NoLease));
    }
}
