//! Fragment numbers: decimal strings that increase with ingestion order within a stream, 47
//! digits like KVS's. Ours are `9 | stream creation ms (16 digits) | engine sequence (30 digits)`,
//! so a number also names the stream incarnation it came from.

/// The number of the fragment stored at engine sequence `seq` of a stream created at `created_ms`.
pub fn encode(created_ms: u64, seq: u64) -> String {
    format!("9{created_ms:016}{seq:030}")
}

/// The engine sequence a fragment number points at, if it has our shape and names this stream.
pub fn decode(text: &str, created_ms: u64) -> Option<u64> {
    if text.len() != 47 || !text.starts_with('9') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let created: u64 = text[1..17].parse().ok()?;
    (created == created_ms).then(|| text[17..].parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_47_digits_ordered_by_sequence_and_bound_to_their_stream() {
        let a = encode(1_705_489_836_421, 9);
        let b = encode(1_705_489_836_421, 10);
        assert_eq!(a.len(), 47);
        assert!(a < b);
        assert_eq!(decode(&b, 1_705_489_836_421), Some(10));
        assert_eq!(decode(&b, 1_705_489_836_422), None);
        assert_eq!(decode("12", 1_705_489_836_421), None);
    }
}
