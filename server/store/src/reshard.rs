//! Resharding as pure changes to a stream's shard map: splitting a shard at a hash key, merging
//! two neighbouring shards, and planning a uniform scaling as a sequence of those two steps.
//!
//! Every step closes its parents and adds children numbered after the newest shard, so lineage
//! always has at most two parents (what KDS can show: ParentShardId and AdjacentParentShardId),
//! and after every step the open shards cover the hash key space exactly once. Each backend
//! applies the result together with the close of the parents' logs (docs/engine.md).

use crate::error::{Result, StoreError};
use crate::meta::{ShardClosed, ShardMeta, StreamMeta, even_hash_ranges};

/// One change to a stream's shard map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReshardStep {
    /// Closes `shard` and opens two children: `[start, at_hash - 1]` and `[at_hash, end]`.
    Split { shard: u32, at_hash: u128 },
    /// Closes two neighbouring shards and opens one child covering both.
    Merge { shard: u32, adjacent: u32 },
}

/// Applies `steps` in order. `end_seq_of` gives the next sequence number of an existing shard,
/// which becomes its end when a step closes it (shards opened by earlier steps are empty).
pub(crate) fn apply(
    meta: &mut StreamMeta,
    steps: &[ReshardStep],
    now_ms: u64,
    end_seq_of: impl Fn(u32) -> u64,
) -> Result<()> {
    let existing = meta.shards.len();
    for step in steps {
        let end_seq = |index: u32| if (index as usize) < existing { end_seq_of(index) } else { 0 };
        apply_step(meta, *step, now_ms, end_seq)?;
    }
    check_coverage(meta)
}

fn apply_step(meta: &mut StreamMeta, step: ReshardStep, now_ms: u64, end_seq: impl Fn(u32) -> u64) -> Result<()> {
    let refuse = |reason: String| StoreError::BadReshard { stream: meta.name.clone(), reason };
    match step {
        ReshardStep::Split { shard, at_hash } => {
            let parent = open_shard(meta, shard)?.clone();
            if at_hash <= parent.start_hash || at_hash > parent.end_hash {
                return Err(refuse(format!("hash key {at_hash} does not split shard {shard}")));
            }
            close(meta, shard, now_ms, end_seq(shard));
            push_child(meta, parent.start_hash, at_hash - 1, now_ms, (shard, None));
            push_child(meta, at_hash, parent.end_hash, now_ms, (shard, None));
        }
        ReshardStep::Merge { shard, adjacent } => {
            let first = open_shard(meta, shard)?.clone();
            let second = open_shard(meta, adjacent)?.clone();
            let neighbours = first.end_hash.checked_add(1) == Some(second.start_hash)
                || second.end_hash.checked_add(1) == Some(first.start_hash);
            if !neighbours {
                return Err(refuse(format!("shards {shard} and {adjacent} are not neighbours")));
            }
            close(meta, shard, now_ms, end_seq(shard));
            close(meta, adjacent, now_ms, end_seq(adjacent));
            let (start, end) = (first.start_hash.min(second.start_hash), first.end_hash.max(second.end_hash));
            push_child(meta, start, end, now_ms, (shard, Some(adjacent)));
        }
    }
    Ok(())
}

fn open_shard(meta: &StreamMeta, index: u32) -> Result<&ShardMeta> {
    let refuse =
        |reason: &str| StoreError::BadReshard { stream: meta.name.clone(), reason: format!("shard {index} {reason}") };
    match meta.shards.get(index as usize) {
        None => Err(refuse("does not exist")),
        Some(shard) if !shard.is_open() => Err(refuse("is closed")),
        Some(shard) => Ok(shard),
    }
}

fn close(meta: &mut StreamMeta, index: u32, now_ms: u64, end_seq: u64) {
    if let Some(shard) = meta.shards.get_mut(index as usize) {
        shard.closed = Some(ShardClosed { closed_ms: now_ms, end_seq });
    }
}

fn push_child(meta: &mut StreamMeta, start_hash: u128, end_hash: u128, now_ms: u64, parents: (u32, Option<u32>)) {
    let index = meta.shards.len() as u32;
    meta.shards.push(ShardMeta {
        index,
        start_hash,
        end_hash,
        created_ms: now_ms,
        parent: Some(parents.0),
        adjacent_parent: parents.1,
        closed: None,
    });
}

/// The open shards, ordered by hash key.
pub(crate) fn open_by_hash(meta: &StreamMeta) -> Vec<&ShardMeta> {
    let mut open: Vec<&ShardMeta> = meta.shards.iter().filter(|s| s.is_open()).collect();
    open.sort_by_key(|s| s.start_hash);
    open
}

/// The invariant of every shard map: open shards cover `0..=2^128-1` exactly once.
pub(crate) fn check_coverage(meta: &StreamMeta) -> Result<()> {
    let open = open_by_hash(meta);
    let mut expected_start = Some(0u128);
    for shard in &open {
        if Some(shard.start_hash) != expected_start || shard.end_hash < shard.start_hash {
            return Err(StoreError::BadReshard {
                stream: meta.name.clone(),
                reason: format!("open shards would not cover the hash key space once (at shard {})", shard.index),
            });
        }
        expected_start = shard.end_hash.checked_add(1);
    }
    if expected_start.is_some() {
        return Err(StoreError::BadReshard {
            stream: meta.name.clone(),
            reason: "open shards would not reach the end of the hash key space".into(),
        });
    }
    Ok(())
}

/// The steps that turn a stream's open shards into `target` shards splitting the hash key space
/// evenly: first split every open shard at each target boundary inside it, then merge, within
/// each target range, its pieces left to right. Each child has at most two parents, which a
/// direct cut from N to M shards could not give (a new range can overlap three old ones).
pub fn even_scaling_steps(meta: &StreamMeta, target: u32) -> Result<Vec<ReshardStep>> {
    let targets = even_hash_ranges(target);
    let mut plan = meta.clone();
    let mut steps = Vec::new();
    let mut take = |plan: &mut StreamMeta, step: ReshardStep| -> Result<()> {
        apply_step(plan, step, 0, |_| 0)?;
        steps.push(step);
        Ok(())
    };
    for &(boundary, _) in targets.iter().skip(1) {
        let inside = open_by_hash(&plan)
            .into_iter()
            .find(|s| s.start_hash < boundary && boundary <= s.end_hash)
            .map(|s| s.index);
        if let Some(shard) = inside {
            take(&mut plan, ReshardStep::Split { shard, at_hash: boundary })?;
        }
    }
    for &(start, end) in &targets {
        loop {
            let pieces: Vec<u32> = open_by_hash(&plan)
                .into_iter()
                .filter(|s| s.start_hash >= start && s.end_hash <= end)
                .map(|s| s.index)
                .take(2)
                .collect();
            let [first, second] = pieces[..] else { break };
            take(&mut plan, ReshardStep::Merge { shard: first, adjacent: second })?;
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::meta::StreamKind;

    fn stream(shards: u32) -> StreamMeta {
        crate::new_stream_meta("s", StreamKind::Data, "arn", shards, 24, 1_000)
    }

    fn open_ranges(meta: &StreamMeta) -> Vec<(u128, u128)> {
        open_by_hash(meta).iter().map(|s| (s.start_hash, s.end_hash)).collect()
    }

    #[test]
    fn a_split_closes_the_parent_at_its_tip_and_opens_two_children() {
        let mut meta = stream(1);
        let at = 1u128 << 127;
        apply(&mut meta, &[ReshardStep::Split { shard: 0, at_hash: at }], 5_000, |_| 42).expect("splits");
        assert_eq!(meta.shards[0].closed, Some(ShardClosed { closed_ms: 5_000, end_seq: 42 }));
        assert_eq!(open_ranges(&meta), vec![(0, at - 1), (at, u128::MAX)]);
        assert_eq!((meta.shards[1].index, meta.shards[1].parent, meta.shards[1].adjacent_parent), (1, Some(0), None));
        assert_eq!(meta.shards[2].created_ms, 5_000);
    }

    #[test]
    fn a_merge_names_both_parents_and_covers_both_ranges() {
        let mut meta = stream(3);
        apply(&mut meta, &[ReshardStep::Merge { shard: 2, adjacent: 1 }], 9, |i| u64::from(i) * 10).expect("merges");
        let child = &meta.shards[3];
        assert_eq!((child.parent, child.adjacent_parent), (Some(2), Some(1)));
        assert_eq!((child.start_hash, child.end_hash), (meta.shards[1].start_hash, u128::MAX));
        assert_eq!(meta.shards[1].closed.map(|c| c.end_seq), Some(10));
        assert_eq!(meta.shards[2].closed.map(|c| c.end_seq), Some(20));
    }

    #[test]
    fn bad_steps_are_refused_and_leave_nothing_half_done() {
        let mut meta = stream(3);
        let before = meta.clone();
        let refused = [
            ReshardStep::Merge { shard: 0, adjacent: 2 },
            ReshardStep::Merge { shard: 1, adjacent: 1 },
            ReshardStep::Split { shard: 0, at_hash: 0 },
            ReshardStep::Split { shard: 0, at_hash: meta.shards[1].start_hash },
            ReshardStep::Split { shard: 7, at_hash: 5 },
        ];
        for step in refused {
            let mut copy = meta.clone();
            assert!(matches!(apply(&mut copy, &[step], 1, |_| 0), Err(StoreError::BadReshard { .. })), "{step:?}");
        }
        apply(&mut meta, &[ReshardStep::Split { shard: 0, at_hash: 5 }], 1, |_| 0).expect("splits");
        let again = apply(&mut meta.clone(), &[ReshardStep::Split { shard: 0, at_hash: 9 }], 1, |_| 0);
        assert!(matches!(again, Err(StoreError::BadReshard { .. })), "a closed shard cannot split again");
        assert_eq!(before.shards.len() + 2, meta.shards.len());
    }

    #[test]
    fn doubling_splits_each_shard_in_half_and_halving_merges_pairs() {
        let meta = stream(4);
        let steps = even_scaling_steps(&meta, 8).expect("plans");
        assert_eq!(steps.len(), 4);
        assert!(steps.iter().all(|s| matches!(s, ReshardStep::Split { .. })));
        let steps = even_scaling_steps(&meta, 2).expect("plans");
        assert_eq!(
            steps,
            vec![ReshardStep::Merge { shard: 0, adjacent: 1 }, ReshardStep::Merge { shard: 2, adjacent: 3 }]
        );
    }

    proptest! {
        #[test]
        fn any_reshard_sequence_keeps_one_cover_and_scaling_lands_on_even_ranges(
            start in 1u32..6,
            ops in proptest::collection::vec((0u8..3, any::<u128>(), 1u32..12), 1..12),
        ) {
            let mut meta = stream(start);
            for (kind, hash, target) in ops {
                let open: Vec<ShardMeta> = open_by_hash(&meta).into_iter().cloned().collect();
                let pick = &open[(hash % open.len() as u128) as usize];
                let steps = match kind {
                    0 => vec![ReshardStep::Split { shard: pick.index, at_hash: pick.start_hash.saturating_add(1 + hash % 1000).min(pick.end_hash) }],
                    1 => match open.iter().find(|s| Some(s.start_hash) == pick.end_hash.checked_add(1)) {
                        Some(next) => vec![ReshardStep::Merge { shard: pick.index, adjacent: next.index }],
                        None => vec![],
                    },
                    _ => even_scaling_steps(&meta, target).expect("plans"),
                };
                let mut next = meta.clone();
                match apply(&mut next, &steps, 7, |_| 3) {
                    Ok(()) => meta = next,
                    // Only a split of a one-key shard may be refused.
                    Err(_) => prop_assert!(kind == 0 && pick.start_hash == pick.end_hash),
                }
                check_coverage(&meta).expect("one cover");
                if kind == 2 {
                    prop_assert_eq!(open_ranges(&meta), even_hash_ranges(target));
                }
                for shard in meta.shards.iter().skip(start as usize) {
                    for parent in [shard.parent, shard.adjacent_parent].into_iter().flatten() {
                        prop_assert!(parent < shard.index && !meta.shards[parent as usize].is_open());
                    }
                }
            }
        }
    }
}
