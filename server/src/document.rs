//! Typed access to a JSON request document (KDS and KVS), with KDS's two error families: wrong JSON types are
//! SerializationException (Coral's Java-flavoured texts), broken constraints are collected into one
//! ValidationException ("N validation errors detected: Value '..' at '..' failed to satisfy ...").

use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorType};

/// A request document (JSON, or CBOR already mapped to the same shape).
#[derive(Debug)]
pub struct Document(pub Map<String, Value>);

impl Document {
    pub fn parse(value: Value) -> Result<Document, ApiError> {
        match value {
            Value::Object(map) => Ok(Document(map)),
            _ => Err(ApiError::serialization("Start of list found where not expected")),
        }
    }

    /// The document's members as they were sent.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn str(&self, name: &str) -> Result<Option<String>, ApiError> {
        self.get(name).map(as_string).transpose()
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name).map(as_int).transpose()
    }

    /// A number, integer or not.
    pub fn get_f64(&self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => Err(ApiError::serialization(format!("{name} must be a number."))),
        }
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name).map(as_bool).transpose()
    }

    /// A timestamp: epoch seconds as a number (fractions allowed), in milliseconds.
    pub fn timestamp_ms(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name).map(as_timestamp_ms).transpose().map(Option::flatten)
    }

    pub fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
        self.get(name).map(as_blob).transpose()
    }

    pub fn object(&self, name: &str) -> Result<Option<Document>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Document(map.clone()))),
            Some(_) => Err(ApiError::serialization("Expected structure or null")),
        }
    }

    pub fn list(&self, name: &str) -> Result<Option<&Vec<Value>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(ApiError::serialization("Expected list or null")),
        }
    }

    pub fn string_map(&self, name: &str) -> Result<Option<Vec<(String, String)>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => {
                map.iter().map(|(k, v)| Ok((k.clone(), as_string(v)?))).collect::<Result<Vec<_>, _>>().map(Some)
            }
            Some(_) => Err(ApiError::serialization("Expected map or null")),
        }
    }
}

pub fn as_string(value: &Value) -> Result<String, ApiError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(_) => Err(ApiError::serialization("NUMBER_VALUE can not be converted to a String")),
        Value::Bool(_) => Err(ApiError::serialization("TRUE_VALUE can not be converted to a String")),
        Value::Array(_) => Err(ApiError::serialization("Start of list found where not expected")),
        Value::Object(_) => Err(ApiError::serialization("Start of structure or map found where not expected.")),
        Value::Null => Err(ApiError::serialization("Unexpected null")),
    }
}

/// A timestamp value (epoch seconds, a number or a numeric string) in milliseconds.
pub fn as_timestamp_ms(value: &Value) -> Result<Option<u64>, ApiError> {
    match value {
        Value::Number(n) => Ok(n.as_f64().map(|secs| (secs * 1000.0).round().max(0.0) as u64)),
        Value::String(s) => s.parse::<f64>().map(|secs| Some((secs * 1000.0).round().max(0.0) as u64)).map_err(|_| {
            ApiError::serialization(format!(
                "class java.lang.String can not be converted to milliseconds since epoch: {s}"
            ))
        }),
        _ => Err(ApiError::serialization("Start of structure or map found where not expected.")),
    }
}

pub fn as_bool(value: &Value) -> Result<bool, ApiError> {
    match value {
        Value::Bool(b) => Ok(*b),
        _ => Err(ApiError::serialization("class java.lang.String can not be converted to an Boolean")),
    }
}

/// The decoded length of a base64 blob, checked as `as_blob` checks it (the same decoder's
/// rules, in SIMD) but without decoding: request validation reads every blob before the handler
/// decodes it.
pub fn blob_len(value: &Value) -> Result<usize, ApiError> {
    let Value::String(text) = value else { return as_blob(value).map(|b| b.len()) };
    let bytes = text.as_bytes();
    if base64_simd::STANDARD.check(bytes).is_err() {
        return as_blob(value).map(|b| b.len());
    }
    let padding = bytes.iter().rev().take(2).take_while(|b| **b == b'=').count();
    Ok(bytes.len() / 4 * 3 - padding)
}

pub fn as_int(value: &Value) -> Result<i64, ApiError> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(|| ApiError::serialization("class java.lang.Double can not be converted to an Integer")),
        Value::String(_) => Err(ApiError::serialization("class java.lang.String can not be converted to an Integer")),
        Value::Bool(_) => Err(ApiError::serialization("class java.lang.Boolean can not be converted to an Integer")),
        _ => Err(ApiError::serialization("Start of structure or map found where not expected.")),
    }
}

pub fn as_blob(value: &Value) -> Result<Vec<u8>, ApiError> {
    let text = match value {
        Value::String(s) => s,
        Value::Number(n) => {
            return Err(ApiError::serialization(format!(
                "class java.math.BigDecimal can not be converted to a Blob: {n}"
            )));
        }
        _ => return Err(ApiError::serialization("Start of structure or map found where not expected.")),
    };
    if text.len() % 4 != 0 {
        return Err(ApiError::serialization(format!(
            "'{text}' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: {}",
            text.len()
        )));
    }
    decode_base64(text.as_bytes()).ok_or_else(|| {
        ApiError::serialization(format!("'{text}' can not be converted to a Blob: Invalid Base64 character"))
    })
}

/// Standard padded base64 as AWS's JSON protocols carry blobs: a length that is a multiple of
/// four, only the alphabet, `=` only as the last one or two symbols, no bits set past the data.
/// Decoded with SIMD (base64-simd): every record put goes through here, and the scalar decoder
/// was the largest single cost of PutRecordBatch in the profile.
pub fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    base64_simd::STANDARD.decode_to_vec(text).ok()
}

/// Collects constraint violations; `finish` turns them into one ValidationException.
#[derive(Debug, Default)]
pub struct Violations(Vec<String>);

impl Violations {
    pub fn add(&mut self, value: Option<&str>, path: &str, constraint: &str) {
        let value = match value {
            Some(v) => format!("Value '{v}'"),
            None => "Value null".to_string(),
        };
        self.0.push(format!("{value} at '{path}' failed to satisfy constraint: Member must {constraint}"));
    }

    pub fn length(&mut self, v: &str, path: &str, min: usize, max: usize) {
        let len = v.chars().count();
        if len < min {
            self.add(Some(v), path, &format!("have length greater than or equal to {min}"));
        }
        if len > max {
            self.add(Some(v), path, &format!("have length less than or equal to {max}"));
        }
    }

    pub fn range(&mut self, value: Option<i64>, path: &str, min: i64, max: i64) {
        if let Some(v) = value {
            if v < min {
                self.add(Some(&v.to_string()), path, &format!("have value greater than or equal to {min}"));
            }
            if v > max {
                self.add(Some(&v.to_string()), path, &format!("have value less than or equal to {max}"));
            }
        }
    }

    pub fn one_of(&mut self, value: &Option<String>, path: &str, allowed: &[&str]) {
        if let Some(v) = value
            && !allowed.contains(&v.as_str())
        {
            self.add(Some(v), path, &format!("satisfy enum value set: [{}]", allowed.join(", ")));
        }
    }

    pub fn blob_max(&mut self, blob: &[u8], path: &str, max: usize) {
        if blob.len() > max {
            let shown = format!("java.nio.HeapByteBuffer[pos=0 lim={0} cap={0}]", blob.len());
            self.add(Some(&shown), path, &format!("have length less than or equal to {max}"));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let count = self.0.len();
        let noun = if count == 1 { "error" } else { "errors" };
        let listed: Vec<_> = self.0.into_iter().take(10).collect();
        Err(ApiError::new(ErrorType::Validation, format!("{count} validation {noun} detected: {}", listed.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blobs_length_is_what_decoding_it_gives_or_the_same_error() {
        let cases = ["", "eA==", "eHk=", "eHl6", "+/+/", "eA=", "e A=", "eA==eA==", "é===", "eHl6\n", "////"];
        for text in cases {
            let value = Value::String(text.into());
            assert_eq!(blob_len(&value), as_blob(&value).map(|b| b.len()), "{text:?}");
        }
        for byte in 0..=255u8 {
            let value = Value::String(String::from_utf8_lossy(&[b'e', b'H', b'l', byte]).into_owned());
            assert_eq!(blob_len(&value), as_blob(&value).map(|b| b.len()), "byte {byte}");
        }
    }

    /// The SIMD decoder takes exactly what the `base64` crate's strict decoder takes (the rules
    /// AWS's SDKs encode by), and gives the same bytes.
    fn decoders_agree(text: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
        use base64::Engine as _;
        let strict = base64::engine::general_purpose::STANDARD.decode(text).ok();
        proptest::prop_assert_eq!(decode_base64(text), strict, "{:?}", String::from_utf8_lossy(text));
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn simd_base64_agrees_with_the_strict_decoder_on_any_text(
            text in proptest::collection::vec(proptest::sample::select(b"AZaz09+/=-_ \n\x00\xff".to_vec()), 0..40)
        ) {
            decoders_agree(&text)?;
        }

        #[test]
        fn simd_base64_decodes_what_the_encoder_wrote(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            use base64::Engine as _;
            let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
            proptest::prop_assert_eq!(decode_base64(text.as_bytes()), Some(bytes));
            // The same with one symbol of it changed to any byte.
            if !text.is_empty() {
                for byte in [b'=', b'A', b'/', b'*', 0x80] {
                    let mut changed = text.clone().into_bytes();
                    let at = changed.len() / 2;
                    changed[at] = byte;
                    decoders_agree(&changed)?;
                }
            }
        }
    }

    #[test]
    fn padding_and_trailing_bits_are_judged_alike() {
        for text in ["", "=", "==", "A===", "AA==", "AB==", "AAA=", "AAB=", "AA=A", "AAAA====", "AA", "AAA", "AAAA"] {
            decoders_agree(text.as_bytes()).expect(text);
        }
    }

    #[test]
    fn one_violation_reads_like_kds() {
        let mut v = Violations::default();
        v.add(Some("bad name"), "streamName", "satisfy regular expression pattern: [a-zA-Z0-9_.-]+");
        let error = v.finish().expect_err("invalid");
        assert_eq!(
            error.message.as_deref(),
            Some(
                "1 validation error detected: Value 'bad name' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
            )
        );
    }

    #[test]
    fn several_violations_are_counted_and_joined() {
        let mut v = Violations::default();
        v.add(None, "streamName", "not be null");
        v.range(Some(0), "shardCount", 1, 100_000);
        let message = v.finish().expect_err("invalid").message.unwrap_or_default();
        assert!(message.starts_with("2 validation errors detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null; "));
        assert!(message.ends_with(
            "Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
        ));
    }

    #[test]
    fn wrong_types_are_serialization_errors() {
        let body =
            Document::parse(serde_json::json!({"Limit": "3", "Data": "abcde", "StreamName": 5})).expect("object");
        assert_eq!(
            body.int("Limit").expect_err("string").message.as_deref(),
            Some("class java.lang.String can not be converted to an Integer")
        );
        assert!(
            body.blob("Data")
                .expect_err("bad base64")
                .message
                .unwrap_or_default()
                .contains("multiple of 4 bytes but found: 5")
        );
        assert_eq!(body.str("StreamName").expect_err("number").kind, ErrorType::Serialization);
    }
}
