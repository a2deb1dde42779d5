//! Partition key routing: KDS hashes the UTF-8 partition key with MD5 and reads the digest as an
//! unsigned 128-bit big-endian integer; an ExplicitHashKey (decimal) replaces the hash.

use md5::{Digest, Md5};

pub fn partition_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// Parses an ExplicitHashKey already checked against the model's pattern (validation.rs); `None` when above 2^128-1.
pub fn parse_explicit(text: &str) -> Option<u128> {
    text.parse::<u128>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_the_key_is_read_big_endian() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(partition_hash("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn explicit_hash_keys_above_the_space_are_rejected() {
        assert_eq!(parse_explicit("340282366920938463463374607431768211455"), Some(u128::MAX));
        assert_eq!(parse_explicit("340282366920938463463374607431768211456"), None);
    }
}
