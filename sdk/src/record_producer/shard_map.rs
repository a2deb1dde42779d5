//! Which open shard takes a hash key, from ListShards: the producer routes each user record
//! itself so that records packed together all belong to one shard.

use crate::data_stream::ShardInfo;

#[derive(Debug, Clone, Default)]
pub struct ShardMap {
    /// Open shards by starting hash key.
    ranges: Vec<(u128, u128, String)>,
}

impl ShardMap {
    pub fn new(shards: &[ShardInfo]) -> Self {
        let mut ranges: Vec<_> =
            shards.iter().filter(|s| !s.closed).map(|s| (s.start_hash, s.end_hash, s.shard_id.clone())).collect();
        ranges.sort_by_key(|r| r.0);
        Self { ranges }
    }

    /// The shard whose range holds `hash_key`; None only for a map with a gap (a stream being
    /// resharded when it was read), where the service routes the record itself.
    pub fn shard_for(&self, hash_key: u128) -> Option<&str> {
        let after = self.ranges.partition_point(|(start, _, _)| *start <= hash_key);
        let (_, end, shard) = self.ranges.get(after.checked_sub(1)?)?;
        (hash_key <= *end).then_some(shard.as_str())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, start: u128, end: u128, closed: bool) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            parent_shard_id: None,
            adjacent_parent_shard_id: None,
            start_hash: start,
            end_hash: end,
            closed,
        }
    }

    #[test]
    fn a_hash_key_finds_the_open_shard_covering_it() {
        let map = ShardMap::new(&[
            shard("child-high", 1 << 127, u128::MAX, false),
            shard("parent", 0, u128::MAX, true),
            shard("child-low", 0, (1 << 127) - 1, false),
        ]);
        assert_eq!(map.len(), 2, "the closed parent takes nothing");
        assert_eq!(map.shard_for(0), Some("child-low"));
        assert_eq!(map.shard_for((1 << 127) - 1), Some("child-low"));
        assert_eq!(map.shard_for(1 << 127), Some("child-high"));
        assert_eq!(map.shard_for(u128::MAX), Some("child-high"));
        let gap = ShardMap::new(&[shard("high", 10, u128::MAX, false)]);
        assert_eq!(gap.shard_for(3), None);
    }
}
