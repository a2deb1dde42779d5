//! KDS sequence numbers: 56-digit decimal strings. We mint them in the layout kinesalite
//! reverse-engineered from AWS (docs/spec/kds.md#sequence-numbers), as 47 hex nibbles:
//!
//! ```text
//! '2' | shard create secs (9) | shard index low nibble (1) | counter (16) | '00' | arrival secs (9) | shard index (8) | '2'
//! ```
//!
//! The counter is the engine's per-shard sequence plus one; counter 0 is the shard's
//! StartingSequenceNumber, so it sorts before every record. Numbers therefore increase with the
//! engine sequence, and the shard index and shard incarnation can be checked without a lookup.

use num_bigint::BigUint;

/// What a decoded sequence number points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub shard_created_secs: u64,
    pub shard_index: u32,
    /// `None` for a shard's StartingSequenceNumber, else the engine sequence of a record.
    pub record_seq: Option<u64>,
}

pub fn encode(shard_created_secs: u64, shard_index: u32, record_seq: Option<u64>, arrival_secs: u64) -> String {
    let counter = record_seq.map_or(0, |s| s + 1);
    let hex = format!(
        "2{:09x}{:x}{:016x}00{:09x}{:08x}2",
        shard_created_secs & 0xf_ffff_ffff,
        shard_index & 0xf,
        counter,
        arrival_secs & 0xf_ffff_ffff,
        shard_index
    );
    BigUint::parse_bytes(hex.as_bytes(), 16).map(|n| n.to_string()).unwrap_or_default()
}

pub fn starting(shard_created_secs: u64, shard_index: u32) -> String {
    encode(shard_created_secs, shard_index, None, shard_created_secs)
}

/// Decodes a sequence number of our layout; `None` for anything else (including syntax errors).
pub fn decode(text: &str) -> Option<Decoded> {
    if text.is_empty() || text.len() > 129 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hex = BigUint::parse_bytes(text.as_bytes(), 10)?.to_str_radix(16);
    if hex.len() != 47 || !hex.starts_with('2') || !hex.ends_with('2') {
        return None;
    }
    let field = |from: usize, len: usize| u64::from_str_radix(&hex[from..from + len], 16).ok();
    let shard_created_secs = field(1, 9)?;
    let counter = field(11, 16)?;
    let shard_index = u32::try_from(field(38, 8)?).ok()?;
    if field(10, 1)? != u64::from(shard_index & 0xf) {
        return None;
    }
    Some(Decoded { shard_created_secs, shard_index, record_seq: counter.checked_sub(1) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_have_56_digits() {
        let n = encode(1_700_000_000, 3, Some(41), 1_700_000_100);
        assert_eq!(n.len(), 56);
        assert_eq!(
            decode(&n),
            Some(Decoded { shard_created_secs: 1_700_000_000, shard_index: 3, record_seq: Some(41) })
        );
        assert_eq!(decode(&starting(1_700_000_000, 3)).map(|d| d.record_seq), Some(None));
    }

    #[test]
    fn the_aws_documentation_sample_decodes_to_its_shard() {
        // The sample in AWS's KDS documentation decodes to shard 6 (docs/spec/kds.md#sequence-numbers).
        let sample = decode("49590338271490256608559692538361571095921575989136588898").expect("our layout");
        assert_eq!(sample.shard_index, 6);
    }

    #[test]
    fn garbage_does_not_decode() {
        assert_eq!(decode("12345"), None);
        assert_eq!(decode("abc"), None);
        assert_eq!(decode(""), None);
    }

    proptest! {
        #[test]
        fn numbers_order_like_engine_sequences(created in 0u64..1u64 << 36, shard in any::<u32>(),
                                                a in 0u64..u64::MAX - 1, b in 0u64..u64::MAX - 1,
                                                ta in 0u64..1u64 << 36, tb in 0u64..1u64 << 36) {
            let na = BigUint::parse_bytes(encode(created, shard, Some(a), ta).as_bytes(), 10).expect("decimal");
            let nb = BigUint::parse_bytes(encode(created, shard, Some(b), tb).as_bytes(), 10).expect("decimal");
            if a < b { prop_assert!(na < nb); }
            prop_assert_eq!(decode(&na.to_string()).and_then(|d| d.record_seq), Some(a));
            let start = BigUint::parse_bytes(starting(created, shard).as_bytes(), 10).expect("decimal");
            prop_assert!(start < na);
        }
    }
}
