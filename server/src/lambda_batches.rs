//! Records into Lambda invocations: consecutive records whose base64 (and a per-record overhead
//! for their ids and metadata) fits in an event of `limit_bytes`; a record larger alone goes
//! alone. Firehose's processors and Kinesis Data Analytics' preprocessing both batch this way.

/// `items` split into invocations; `data_len` gives a record's data length in bytes.
pub fn by_event_size<T>(
    items: Vec<T>,
    limit_bytes: usize,
    overhead_bytes: usize,
    data_len: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut batches: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = data_len(&item).div_ceil(3) * 4 + overhead_bytes;
        match batches.last_mut() {
            Some(batch) if bytes + size <= limit_bytes => batch.push(item),
            _ => {
                batches.push(vec![item]);
                bytes = 0;
            }
        }
        bytes += size;
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_share_an_event_while_their_base64_fits() {
        let sizes = [3_000usize, 3_000, 10, 3_000, 9_000];
        let batches = by_event_size(sizes.to_vec(), 8_300, 100, |n| *n);
        // 3,000 bytes are 4,000 in base64, 4,100 with the overhead.
        let lens: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![2, 2, 1], "{batches:?}");
        assert_eq!(batches[2], vec![9_000], "a record over the limit goes alone");
    }
}
