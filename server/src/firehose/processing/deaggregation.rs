//! RecordDeAggregation: one put record holding several (concatenated JSON objects, or pieces
//! between a delimiter) becomes several records; and, for a Kinesis stream source, KPL
//! aggregated records are unpacked as Firehose does before any processor. A record that does not
//! split as asked passes through whole, as the KCL passes a record that is not aggregated.

use framelog_wire::kpl_aggregate;

use super::plan::SubRecords;

/// Firehose splits a record into at most this many; one that holds more passes whole.
const MAX_SUB_RECORDS: usize = 500;

/// The sub-records of `data` (one, `data` itself, when it does not split).
pub fn split(data: &[u8], how: &SubRecords) -> Vec<Vec<u8>> {
    let pieces = match how {
        SubRecords::Json => json_objects(data),
        SubRecords::Delimited(delimiter) => Some(delimited(data, delimiter)),
    };
    match pieces {
        Some(pieces) if !pieces.is_empty() && pieces.len() <= MAX_SUB_RECORDS => pieces,
        _ => vec![data.to_vec()],
    }
}

/// The user records of a KPL aggregated record, or `data` itself when it is not one (or is
/// damaged: the KCL hands those on unchanged too).
pub fn kpl_user_records(data: &[u8]) -> Vec<Vec<u8>> {
    if !kpl_aggregate::is_aggregated(data) {
        return vec![data.to_vec()];
    }
    match kpl_aggregate::deaggregate(data) {
        Ok(users) if !users.is_empty() => users.into_iter().map(|user| user.data).collect(),
        _ => vec![data.to_vec()],
    }
}

/// Each top-level JSON object, as its bytes; `None` unless the record is only objects (with
/// whitespace between them).
fn json_objects(data: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut stream = serde_json::Deserializer::from_slice(data).into_iter::<serde::de::IgnoredAny>();
    let mut pieces = Vec::new();
    let mut start = 0;
    while let Some(item) = stream.next() {
        item.ok()?;
        let end = stream.byte_offset();
        let piece = data[start..end].trim_ascii();
        if !piece.starts_with(b"{") {
            return None;
        }
        pieces.push(piece.to_vec());
        start = end;
    }
    Some(pieces)
}

/// The pieces between occurrences of `delimiter`; empty pieces are dropped.
fn delimited(data: &[u8], delimiter: &[u8]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(delimiter.len()).position(|w| w == delimiter) {
        pieces.push(rest[..at].to_vec());
        rest = &rest[at + delimiter.len()..];
    }
    pieces.push(rest.to_vec());
    pieces.retain(|piece| !piece.is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    use framelog_wire::kpl_aggregate::{UserRecord, aggregate};

    use super::*;

    fn texts(pieces: Vec<Vec<u8>>) -> Vec<String> {
        pieces.into_iter().map(|p| String::from_utf8(p).expect("utf-8")).collect()
    }

    #[test]
    fn concatenated_and_line_separated_json_objects_split() {
        assert_eq!(texts(split(br#"{"a":1}{"a":2}"#, &SubRecords::Json)), [r#"{"a":1}"#, r#"{"a":2}"#]);
        assert_eq!(texts(split(b"{\"a\":1}\n {\"b\":[2]}\n", &SubRecords::Json)), [r#"{"a":1}"#, r#"{"b":[2]}"#]);
    }

    #[test]
    fn records_that_do_not_split_pass_whole() {
        for whole in [&b"[1,2]"[..], b"{\"a\":1} tail", b"plain text", b"{\"a\":1}[2]"] {
            assert_eq!(split(whole, &SubRecords::Json), vec![whole.to_vec()]);
        }
        let many: Vec<u8> = std::iter::repeat_n(&b"{}"[..], MAX_SUB_RECORDS + 1).flatten().copied().collect();
        assert_eq!(split(&many, &SubRecords::Json).len(), 1);
    }

    #[test]
    fn delimited_records_split_on_the_delimiter() {
        let how = SubRecords::Delimited(b"####".to_vec());
        assert_eq!(texts(split(b"a####bb########c", &how)), ["a", "bb", "c"]);
        assert_eq!(texts(split(b"no delimiter", &how)), ["no delimiter"]);
    }

    #[test]
    fn kpl_records_unpack_and_others_pass() {
        let user = |data: &[u8]| UserRecord { partition_key: "k".into(), explicit_hash_key: None, data: data.to_vec() };
        let packed = aggregate(&[user(b"one"), user(b"two")]);
        assert_eq!(texts(kpl_user_records(&packed)), ["one", "two"]);
        assert_eq!(texts(kpl_user_records(b"plain")), ["plain"]);
        let mut damaged = packed.clone();
        damaged.truncate(damaged.len() - 1);
        assert_eq!(kpl_user_records(&damaged), vec![damaged.clone()]);
    }
}
