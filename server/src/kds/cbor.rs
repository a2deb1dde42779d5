//! `application/x-amz-cbor-1.1`: the same documents as JSON, CBOR-encoded, as the Java SDKs and
//! the KCL send them. Two AWS rules differ from a plain mapping: blobs are byte strings, and
//! timestamps are tag(1) holding integer epoch *milliseconds* (RFC 8949 says seconds).
//!
//! Requests are mapped to the JSON shape (bytes to base64, tagged ms to fractional seconds) so that
//! one set of handlers serves both protocols; responses are mapped back by field name
//! (`Data` is a blob, `*Timestamp` a timestamp), which covers every KDS output shape.

use base64::Engine as _;
use ciborium::value::{Integer, Value as Cbor};
use serde_json::{Map, Number, Value as Json};

use crate::error::ApiError;

pub fn decode_request(bytes: &[u8]) -> Result<Json, ApiError> {
    let value: Cbor =
        ciborium::from_reader(bytes).map_err(|e| ApiError::serialization(format!("Malformed CBOR: {e}")))?;
    to_json(value)
}

fn to_json(value: Cbor) -> Result<Json, ApiError> {
    Ok(match value {
        Cbor::Null => Json::Null,
        Cbor::Bool(b) => Json::Bool(b),
        Cbor::Integer(i) => {
            let wide = i128::from(i);
            i64::try_from(wide)
                .map(Json::from)
                .or_else(|_| u64::try_from(wide).map(Json::from))
                .map_err(|_| ApiError::serialization("Integer out of range"))?
        }
        Cbor::Float(f) => Number::from_f64(f).map(Json::Number).unwrap_or(Json::Null),
        Cbor::Text(s) => Json::String(s),
        Cbor::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Cbor::Tag(1, inner) => match *inner {
            Cbor::Integer(ms) => {
                Number::from_f64(i128::from(ms) as f64 / 1000.0).map(Json::Number).unwrap_or(Json::Null)
            }
            Cbor::Float(ms) => Number::from_f64(ms / 1000.0).map(Json::Number).unwrap_or(Json::Null),
            _ => return Err(ApiError::serialization("Timestamp tag must hold a number")),
        },
        Cbor::Tag(_, inner) => to_json(*inner)?,
        Cbor::Array(items) => Json::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?),
        Cbor::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let Cbor::Text(key) = key else {
                    return Err(ApiError::serialization("Map keys must be text"));
                };
                map.insert(key, to_json(value)?);
            }
            Json::Object(map)
        }
        _ => return Err(ApiError::serialization("Unsupported CBOR value")),
    })
}

pub fn encode_response(value: &Json) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing a well-formed value into a Vec cannot fail.
    let _ = ciborium::into_writer(&from_json(None, value), &mut out);
    out
}

fn from_json(field: Option<&str>, value: &Json) -> Cbor {
    match value {
        Json::Null => Cbor::Null,
        Json::Bool(b) => Cbor::Bool(*b),
        Json::Number(n) if field.is_some_and(|f| f.ends_with("Timestamp")) => {
            let ms = (n.as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            Cbor::Tag(1, Box::new(Cbor::Integer(Integer::from(ms))))
        }
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cbor::Integer(Integer::from(i)),
            (_, Some(u)) => Cbor::Integer(Integer::from(u)),
            _ => Cbor::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) if field == Some("Data") => {
            Cbor::Bytes(base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default())
        }
        Json::String(s) => Cbor::Text(s.clone()),
        Json::Array(items) => Cbor::Array(items.iter().map(|v| from_json(field, v)).collect()),
        Json::Object(map) => {
            Cbor::Map(map.iter().map(|(k, v)| (Cbor::Text(k.clone()), from_json(Some(k), v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
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
