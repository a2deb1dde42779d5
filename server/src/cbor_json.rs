//! CBOR documents as the JSON documents the handlers read and write. AWS's CBOR protocols carry
//! the same documents as their JSON forms, with two differences that each protocol settles its
//! own way (`Rules`): blobs are byte strings (base64 text in JSON), and timestamps are tag(1)
//! holding epoch milliseconds (KDS's `x-amz-cbor-1.1`) or seconds (Smithy RPC v2, CloudWatch).

use base64::Engine as _;
use ciborium::value::{Integer, Value as Cbor};
use serde_json::{Map, Number, Value as Json};

use crate::error::ApiError;

/// How a protocol's tag(1) timestamps count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    /// Integer milliseconds (KDS).
    Millis,
    /// Seconds, fractional when they need to be (RFC 8949; Smithy RPC v2).
    Seconds,
}

/// What a protocol's responses encode specially, by member name.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub unit: EpochUnit,
    /// Members holding timestamps (a list's items included).
    pub is_timestamp: fn(&str) -> bool,
    /// Members holding blobs (base64 text in the JSON document).
    pub is_blob: fn(&str) -> bool,
}

/// A request's CBOR as the JSON document: byte strings as base64, tagged timestamps as epoch
/// seconds.
pub fn decode(bytes: &[u8], unit: EpochUnit) -> Result<Json, ApiError> {
    let value: Cbor =
        ciborium::from_reader(bytes).map_err(|e| ApiError::serialization(format!("Malformed CBOR: {e}")))?;
    to_json(value, unit)
}

/// A response's JSON document as CBOR.
pub fn encode(document: &Json, rules: &Rules) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing a well-formed value into a Vec cannot fail.
    let _ = ciborium::into_writer(&from_json(None, document, rules), &mut out);
    out
}

fn to_json(value: Cbor, unit: EpochUnit) -> Result<Json, ApiError> {
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
        Cbor::Tag(1, inner) => {
            let epoch = match *inner {
                Cbor::Integer(n) => i128::from(n) as f64,
                Cbor::Float(f) => f,
                _ => return Err(ApiError::serialization("Timestamp tag must hold a number")),
            };
            let seconds = if unit == EpochUnit::Millis { epoch / 1000.0 } else { epoch };
            Number::from_f64(seconds).map(Json::Number).unwrap_or(Json::Null)
        }
        Cbor::Tag(_, inner) => to_json(*inner, unit)?,
        Cbor::Array(items) => Json::Array(items.into_iter().map(|v| to_json(v, unit)).collect::<Result<_, _>>()?),
        Cbor::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let Cbor::Text(key) = key else {
                    return Err(ApiError::serialization("Map keys must be text"));
                };
                map.insert(key, to_json(value, unit)?);
            }
            Json::Object(map)
        }
        _ => return Err(ApiError::serialization("Unsupported CBOR value")),
    })
}

fn from_json(field: Option<&str>, value: &Json, rules: &Rules) -> Cbor {
    match value {
        Json::Null => Cbor::Null,
        Json::Bool(b) => Cbor::Bool(*b),
        Json::Number(n) if field.is_some_and(rules.is_timestamp) => {
            let seconds = n.as_f64().unwrap_or(0.0);
            let epoch = match rules.unit {
                EpochUnit::Millis => Cbor::Integer(Integer::from((seconds * 1000.0).round() as i64)),
                EpochUnit::Seconds => Cbor::Float(seconds),
            };
            Cbor::Tag(1, Box::new(epoch))
        }
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cbor::Integer(Integer::from(i)),
            (_, Some(u)) => Cbor::Integer(Integer::from(u)),
            _ => Cbor::Float(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) if field.is_some_and(rules.is_blob) => {
            Cbor::Bytes(base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default())
        }
        Json::String(s) => Cbor::Text(s.clone()),
        Json::Array(items) => Cbor::Array(items.iter().map(|v| from_json(field, v, rules)).collect()),
        Json::Object(map) => {
            Cbor::Map(map.iter().map(|(k, v)| (Cbor::Text(k.clone()), from_json(Some(k), v, rules))).collect())
        }
    }
}
