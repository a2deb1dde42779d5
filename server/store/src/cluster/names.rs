//! Names of everything the cluster backend keeps in NATS and the object store
//! (docs/cluster.md section 2).

/// Stream metadata and the stream id counter.
pub(crate) const META_BUCKET: &str = "framelog_meta";
/// Amended entry attributes.
pub(crate) const AMEND_BUCKET: &str = "framelog_amend";
/// Leases on background work.
pub(crate) const LEASE_BUCKET: &str = "framelog_leases";
pub(crate) const NEXT_STREAM_ID_KEY: &str = "next_stream_id";
/// Core NATS subjects of tip notices: `framelog.tip.<id>.<shard>`.
pub(crate) const TIP_SUBJECTS: &str = "framelog.tip.>";
/// Header naming the object that holds an entry's payload.
pub(crate) const OBJECT_HEADER: &str = "Framelog-Object";
/// Header carrying the nonce a sealed payload was sealed with (hex).
pub(crate) const NONCE_HEADER: &str = "Framelog-Nonce";

/// Stream names may hold characters KV keys may not ('..', say): keys carry them in hex.
pub(crate) fn meta_key(name: &str) -> String {
    format!("stream.{}", hex::encode(name.as_bytes()))
}

pub(crate) fn log_stream(id: u64, shard: u32) -> String {
    format!("FL_{id}_{shard}")
}

pub(crate) fn log_subject(id: u64, shard: u32) -> String {
    format!("framelog.log.{id}.{shard}")
}

pub(crate) fn tip_subject(id: u64, shard: u32) -> String {
    format!("framelog.tip.{id}.{shard}")
}

/// Parses `framelog.tip.<id>.<shard>`.
pub(crate) fn parse_tip_subject(subject: &str) -> Option<(u64, u32)> {
    let mut parts = subject.strip_prefix("framelog.tip.")?.split('.');
    let id = parts.next()?.parse().ok()?;
    let shard = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((id, shard))
}

pub(crate) fn amend_key(id: u64, shard: u32, seq: u64) -> String {
    format!("a.{id}.{shard}.{seq}")
}

pub(crate) fn parse_amend_key(key: &str) -> Option<(u64, u32, u64)> {
    let mut parts = key.strip_prefix("a.")?.split('.');
    let parsed = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    parts.next().is_none().then_some(parsed)
}

/// Where a shard's objects live: `<prefix>/<id>/<shard>/`.
pub(crate) fn shard_object_prefix(prefix: &str, id: u64, shard: u32) -> String {
    format!("{prefix}/{id}/{shard}")
}

pub(crate) fn stream_object_prefix(prefix: &str, id: u64) -> String {
    format!("{prefix}/{id}")
}

/// A fresh object key: the arrival time first (13 digits sort until the year 2286), so that a
/// listing in key order meets the expired objects first, then 128 random bits.
pub(crate) fn object_key(prefix: &str, id: u64, shard: u32, arrival_ms: u64) -> String {
    let nonce: u128 = rand::random();
    format!("{}/{arrival_ms:013}-{nonce:032x}", shard_object_prefix(prefix, id, shard))
}

/// The arrival time an object key starts with.
pub(crate) fn object_key_time_ms(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        assert_eq!(parse_tip_subject(&tip_subject(12, 3)), Some((12, 3)));
        assert_eq!(parse_tip_subject("framelog.tip.1.2.3"), None);
        assert_eq!(parse_amend_key(&amend_key(4, 0, 99)), Some((4, 0, 99)));
        let key = object_key("fl", 7, 1, 1_700_000_000_123);
        assert!(key.starts_with("fl/7/1/1700000000123-"));
        assert_eq!(object_key_time_ms(&key), Some(1_700_000_000_123));
        assert_eq!(meta_key("a..b"), "stream.612e2e62");
    }

    #[test]
    fn object_keys_sort_by_time() {
        let early = object_key("p", 1, 0, 999);
        let late = object_key("p", 1, 0, 1_000);
        assert!(early < late, "zero-padded times sort as numbers");
    }
}
