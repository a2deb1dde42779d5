//! Which leases a worker takes on each round, as the KCL balances: every worker aims at an equal
//! share of the unfinished leases; it takes free (or expired) leases first, and steals one lease
//! a round from the busiest worker only when none is free and that worker holds more than its
//! share. A lease whose parent shard is unfinished waits.

use std::collections::BTreeMap;

use super::lease_api::LeaseInfo;

/// A lease to take, and whether from a live owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub lease: LeaseInfo,
    pub steal: bool,
}

/// The leases `me` should take now.
pub fn choose(leases: &[LeaseInfo], me: &str) -> Vec<Choice> {
    let unfinished: Vec<&LeaseInfo> = leases.iter().filter(|l| !l.is_finished()).collect();
    let mut held: BTreeMap<&str, usize> = BTreeMap::new();
    held.insert(me, 0);
    for owner in unfinished.iter().filter_map(|l| l.owner.as_deref()) {
        *held.entry(owner).or_default() += 1;
    }
    let share = unfinished.len().div_ceil(held.len());
    let mine = held[me];
    if mine >= share {
        return Vec::new();
    }
    let ready = |lease: &&&LeaseInfo| parents_finished(lease, leases);
    let free: Vec<Choice> = unfinished
        .iter()
        .filter(|l| l.owner.is_none())
        .filter(ready)
        .take(share - mine)
        .map(|l| Choice { lease: (*l).clone(), steal: false })
        .collect();
    if !free.is_empty() {
        return free;
    }
    let busiest = held.iter().filter(|(owner, _)| **owner != me).max_by_key(|(_, count)| **count);
    match busiest {
        Some((owner, count)) if *count > share => unfinished
            .iter()
            .find(|l| l.owner.as_deref() == Some(*owner))
            .map(|l| vec![Choice { lease: (*l).clone(), steal: true }])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Whether every parent of `lease` is finished (a parent without a lease was trimmed away).
pub fn parents_finished(lease: &LeaseInfo, leases: &[LeaseInfo]) -> bool {
    lease
        .parent_shard_ids
        .iter()
        .all(|parent| leases.iter().find(|l| &l.shard_id == parent).is_none_or(LeaseInfo::is_finished))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(shard: u32, owner: Option<&str>) -> LeaseInfo {
        LeaseInfo {
            shard_id: format!("shardId-{shard:012}"),
            parent_shard_ids: Vec::new(),
            owner: owner.map(str::to_string),
            counter: 1,
            checkpoint: None,
            sub_sequence_number: 0,
        }
    }

    fn shards(choices: &[Choice]) -> Vec<(String, bool)> {
        choices.iter().map(|c| (c.lease.shard_id[8..].trim_start_matches('0').to_string(), c.steal)).collect()
    }

    #[test]
    fn a_new_worker_takes_its_share_of_free_leases() {
        let leases: Vec<_> = (1..=4).map(|s| lease(s, None)).collect();
        assert_eq!(shards(&choose(&leases, "a")).len(), 4, "alone, it takes all");
        let leases = vec![lease(1, Some("b")), lease(2, Some("b")), lease(3, None), lease(4, None)];
        assert_eq!(shards(&choose(&leases, "a")), vec![("3".into(), false), ("4".into(), false)]);
    }

    #[test]
    fn with_nothing_free_it_steals_one_from_the_busiest_above_its_share() {
        let leases: Vec<_> = (1..=4).map(|s| lease(s, Some("b"))).collect();
        assert_eq!(shards(&choose(&leases, "a")), vec![("1".into(), true)]);
        let balanced = vec![lease(1, Some("b")), lease(2, Some("b")), lease(3, Some("a")), lease(4, Some("a"))];
        assert!(choose(&balanced, "a").is_empty());
        let three = vec![lease(1, Some("b")), lease(2, Some("b")), lease(3, Some("c")), lease(4, Some("c"))];
        assert!(choose(&three, "a").is_empty(), "share 2: nobody holds more than their share");
    }

    #[test]
    fn children_wait_for_their_parents_and_finished_leases_do_not_count() {
        let mut parent = lease(0, Some("b"));
        let mut child = lease(1, None);
        child.parent_shard_ids = vec![parent.shard_id.clone()];
        assert!(choose(&[parent.clone(), child.clone()], "a").is_empty(), "the child waits");
        parent.checkpoint = Some("SHARD_END".into());
        parent.owner = None;
        assert_eq!(shards(&choose(&[parent, child], "a")), vec![("1".into(), false)]);
    }
}
