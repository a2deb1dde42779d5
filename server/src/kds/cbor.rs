//! `application/x-amz-cbor-1.1`: the same documents as JSON, CBOR-encoded, as the Java SDKs and
//! the KCL send them. Two AWS rules differ from a plain mapping: blobs are byte strings, and
//! timestamps are tag(1) holding integer epoch *milliseconds* (RFC 8949 says seconds).
//!
//! Requests are mapped to the JSON shape (bytes to base64, tagged ms to fractional seconds) so that
//! one set of handlers serves both protocols; responses are mapped back by field name
//! (`Data` is a blob, `*Timestamp` a timestamp), which covers every KDS output shape.

use serde_json::Value as Json;

use crate::cbor_json::{self, EpochUnit, Rules};
use crate::error::ApiError;

/// `Data` is a blob, `*Timestamp` a timestamp in every KDS output shape.
const KDS: Rules = Rules {
    unit: EpochUnit::Millis,
    is_timestamp: |field| field.ends_with("Timestamp"),
    is_blob: |field| field == "Data",
};

pub fn decode_request(bytes: &[u8]) -> Result<Json, ApiError> {
    cbor_json::decode(bytes, EpochUnit::Millis)
}

pub fn encode_response(value: &Json) -> Vec<u8> {
    cbor_json::encode(value, &KDS)
}

#[cfg(test)]
mod tests {
    use ciborium::value::{Integer, Value as Cbor};

    use super::*;

    #[test]
    fn tagged_milliseconds_and_byte_strings_map_to_the_json_shape() {
        let request = Cbor::Map(vec![
            (Cbor::Text("Data".into()), Cbor::Bytes(b"hi".to_vec())),
            (
                Cbor::Text("Timestamp".into()),
                Cbor::Tag(1, Box::new(Cbor::Integer(Integer::from(1_545_084_650_987i64)))),
            ),
        ]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&request, &mut bytes).expect("encodes");
        let json = decode_request(&bytes).expect("decodes");
        assert_eq!(json["Data"], "aGk=");
        assert_eq!(json["Timestamp"].as_f64(), Some(1_545_084_650.987));
    }

    #[test]
    fn responses_carry_blobs_as_bytes_and_timestamps_as_tagged_milliseconds() {
        let json = serde_json::json!({"Records": [{"Data": "aGk=", "ApproximateArrivalTimestamp": 1545084650.987, "SequenceNumber": "1"}]});
        let value: Cbor = ciborium::from_reader(encode_response(&json).as_slice()).expect("parses");
        let record = &value.as_map().expect("map")[0].1.as_array().expect("array")[0];
        let field = |name: &str| {
            record.as_map().expect("record").iter().find(|(k, _)| k.as_text() == Some(name)).map(|(_, v)| v.clone())
        };
        assert_eq!(field("Data"), Some(Cbor::Bytes(b"hi".to_vec())));
        let millis = Cbor::Tag(1, Box::new(Cbor::Integer(Integer::from(1_545_084_650_987i64))));
        assert_eq!(field("ApproximateArrivalTimestamp"), Some(millis));
        assert_eq!(field("SequenceNumber"), Some(Cbor::Text("1".into())));
    }
}
