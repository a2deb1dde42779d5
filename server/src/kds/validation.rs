//! Request validation from one table: `constraints.json`, generated from AWS's published `kinesis`
//! model by `scripts/gen-kds-constraints.py`, lists each operation's input members in the model's
//! order with their constraints. Every request is checked against it before its handler runs,
//! as AWS does: first the JSON types of every member given (a wrong type is a
//! SerializationException), then every constraint, all violations of one request reported in one
//! ValidationException, members in the model's order, nested members depth first.

use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::document::{Violations, as_bool, as_int, as_string, as_timestamp_ms, blob_len};
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
struct Table {
    operations: std::collections::HashMap<String, Vec<Member>>,
}

#[derive(Debug, Deserialize)]
struct Member {
    name: String,
    path: String,
    required: bool,
    #[serde(flatten)]
    shape: Shape,
}

#[derive(Debug, Deserialize)]
struct Shape {
    #[serde(rename = "type")]
    kind: String,
    min: Option<f64>,
    max: Option<f64>,
    pattern: Option<String>,
    #[serde(skip)]
    regex: Option<Regex>,
    #[serde(rename = "enum")]
    enum_values: Option<Vec<String>>,
    members: Option<Vec<Member>>,
    item: Option<Box<Shape>>,
    key: Option<Box<Shape>>,
    value: Option<Box<Shape>>,
}

impl Shape {
    /// Compiles the patterns once, anchored at both ends: AWS matches a whole value.
    fn compile(&mut self) {
        if let Some(pattern) = &self.pattern {
            self.regex = Regex::new(&format!("^(?:{pattern})$")).ok();
        }
        for member in self.members.iter_mut().flatten() {
            member.shape.compile();
        }
        for inner in [&mut self.item, &mut self.key, &mut self.value].into_iter().flatten() {
            inner.compile();
        }
    }
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    // The table is part of the source tree; a unit test parses it, so this cannot fail at run time.
    let mut table: Table = serde_json::from_str(include_str!("constraints.json"))
        .unwrap_or_else(|_| Table { operations: Default::default() });
    for members in table.operations.values_mut() {
        for member in members {
            member.shape.compile();
        }
    }
    table
});

/// Checks a request of `operation` against the model: SerializationException for a member of
/// the wrong JSON type, ValidationException listing every violated constraint.
pub fn check(operation: &str, object: &Map<String, Value>) -> Result<(), ApiError> {
    let Some(members) = TABLE.operations.get(operation) else { return Ok(()) };
    check_types(members, object)?;
    let mut violations = Violations::default();
    check_members(members, object, "", &mut violations);
    violations.finish()
}

/// The JSON type of every member given, with the messages the handlers' readers give.
fn check_types(members: &[Member], object: &Map<String, Value>) -> Result<(), ApiError> {
    for member in members {
        if let Some(value) = object.get(&member.name).filter(|v| !v.is_null()) {
            check_type(&member.shape, value)?;
        }
    }
    Ok(())
}

fn check_type(shape: &Shape, value: &Value) -> Result<(), ApiError> {
    match (shape.kind.as_str(), value) {
        ("string", Value::String(_)) => {}
        ("string", _) => drop(as_string(value)?),
        ("integer" | "long", _) => drop(as_int(value)?),
        ("boolean", _) => drop(as_bool(value)?),
        ("timestamp", _) => drop(as_timestamp_ms(value)?),
        ("blob", _) => drop(blob_len(value)?),
        ("structure", Value::Object(object)) => check_types(shape.members.as_deref().unwrap_or_default(), object)?,
        ("structure", _) => return Err(ApiError::serialization("Expected structure or null")),
        ("list", Value::Array(items)) => {
            if let Some(item) = &shape.item {
                items.iter().filter(|v| !v.is_null()).try_for_each(|v| check_type(item, v))?;
            }
        }
        ("list", _) => return Err(ApiError::serialization("Expected list or null")),
        ("map", Value::Object(entries)) => {
            if let Some(item) = &shape.value {
                entries.values().filter(|v| !v.is_null()).try_for_each(|v| check_type(item, v))?;
            }
        }
        ("map", _) => return Err(ApiError::serialization("Expected map or null")),
        _ => {}
    }
    Ok(())
}

fn check_members(members: &[Member], object: &Map<String, Value>, prefix: &str, v: &mut Violations) {
    for member in members {
        let path = format!("{prefix}{}", member.path);
        match object.get(&member.name).filter(|value| !value.is_null()) {
            None if member.required => v.add(None, &path, "not be null"),
            None => {}
            Some(value) => check_value(&member.shape, value, &path, v),
        }
    }
}

fn check_value(shape: &Shape, value: &Value, path: &str, v: &mut Violations) {
    match (shape.kind.as_str(), value) {
        ("string", Value::String(text)) => check_string(shape, text, path, v),
        ("integer" | "long", _) => {
            if let Ok(n) = as_int(value) {
                v.range(
                    Some(n),
                    path,
                    shape.min.map_or(i64::MIN, |m| m as i64),
                    shape.max.map_or(i64::MAX, |m| m as i64),
                );
            }
        }
        ("blob", _) => {
            if let (Ok(len), Some(max)) = (blob_len(value), shape.max)
                && len > max as usize
            {
                let shown = format!("java.nio.HeapByteBuffer[pos=0 lim={len} cap={len}]");
                v.add(Some(&shown), path, &format!("have length less than or equal to {}", max as usize));
            }
        }
        ("list", Value::Array(items)) => {
            check_count(shape, items.len(), path, if items.is_empty() { "[]" } else { "[...]" }, v);
            if let Some(item) = &shape.item {
                for (i, element) in items.iter().enumerate() {
                    check_value(item, element, &format!("{path}.{}.member", i + 1), v);
                }
            }
        }
        ("map", Value::Object(entries)) => {
            check_count(shape, entries.len(), path, "{...}", v);
            for (key, element) in entries {
                if let Some(key_shape) = &shape.key {
                    check_string(key_shape, key, &format!("{path}.key"), v);
                }
                if let Some(value_shape) = &shape.value {
                    check_value(value_shape, element, &format!("{path}.value"), v);
                }
            }
        }
        ("structure", Value::Object(object)) => {
            if let Some(members) = &shape.members {
                check_members(members, object, &format!("{path}."), v);
            }
        }
        _ => {}
    }
}

fn check_string(shape: &Shape, text: &str, path: &str, v: &mut Violations) {
    if shape.min.is_some() || shape.max.is_some() {
        v.length(text, path, shape.min.map_or(0, |m| m as usize), shape.max.map_or(usize::MAX, |m| m as usize));
    }
    if let (Some(regex), Some(pattern)) = (&shape.regex, &shape.pattern)
        && !text.is_empty()
        && !regex.is_match(text)
    {
        v.add(Some(text), path, &format!("satisfy regular expression pattern: {pattern}"));
    }
    if let Some(allowed) = &shape.enum_values {
        let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
        v.one_of(&Some(text.to_string()), path, &allowed);
    }
}

/// A list's or map's number of entries.
fn check_count(shape: &Shape, count: usize, path: &str, shown: &str, v: &mut Violations) {
    if let Some(min) = shape.min
        && (count as f64) < min
    {
        v.add(Some(shown), path, &format!("have length greater than or equal to {min}"));
    }
    if let Some(max) = shape.max
        && (count as f64) > max
    {
        v.add(Some(shown), path, &format!("have length less than or equal to {max}"));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::ErrorType;

    fn map(value: &Value) -> &Map<String, Value> {
        value.as_object().expect("an object")
    }

    fn every_shape(shape: &Shape, f: &mut impl FnMut(&Shape)) {
        f(shape);
        for member in shape.members.iter().flatten() {
            every_shape(&member.shape, f);
        }
        for inner in [&shape.item, &shape.key, &shape.value].into_iter().flatten() {
            every_shape(inner, f);
        }
    }

    #[test]
    fn the_table_parses_and_every_pattern_compiles() {
        assert!(TABLE.operations.len() >= 57, "{} operations", TABLE.operations.len());
        for members in TABLE.operations.values() {
            for member in members {
                every_shape(&member.shape, &mut |shape| {
                    assert_eq!(shape.pattern.is_some(), shape.regex.is_some(), "{:?} compiles", shape.pattern);
                });
            }
        }
    }

    #[test]
    fn all_violations_of_a_request_come_in_the_models_member_order() {
        let request = json!({
            "Records": [{"Data": "AA==", "PartitionKey": ""}, {"PartitionKey": "p", "ExplicitHashKey": "-1"}],
            "StreamName": "bad name",
        });
        let error = check("PutRecords", map(&request)).expect_err("invalid");
        assert_eq!(error.kind, ErrorType::Validation);
        assert_eq!(
            error.message.as_deref(),
            Some(
                "4 validation errors detected: \
                 Value '' at 'records.1.member.partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1; \
                 Value null at 'records.2.member.data' failed to satisfy constraint: Member must not be null; \
                 Value '-1' at 'records.2.member.explicitHashKey' failed to satisfy constraint: Member must satisfy regular expression pattern: ^(0|([1-9]\\d{0,38}))$; \
                 Value 'bad name' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
            )
        );
    }

    #[test]
    fn types_are_checked_before_constraints() {
        let request = json!({"StreamName": "", "ShardCount": "three"});
        assert_eq!(check("CreateStream", map(&request)).expect_err("wrong type").kind, ErrorType::Serialization);
        let nested = json!({"StreamName": "s", "StreamModeDetails": {"StreamMode": 5}});
        assert_eq!(check("CreateStream", map(&nested)).expect_err("wrong nested type").kind, ErrorType::Serialization);
    }

    #[test]
    fn enums_ranges_maps_and_nested_members_are_checked() {
        let request = json!({
            "StreamName": "s",
            "ShardCount": 0,
            "StreamModeDetails": {"StreamMode": "SOMETIMES"},
            "Tags": {"": "v"},
        });
        let message = check("CreateStream", map(&request)).expect_err("invalid").message.unwrap_or_default();
        assert!(message.starts_with("3 validation errors detected: Value '0' at 'shardCount'"), "{message}");
        assert!(message.contains("at 'streamModeDetails.streamMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, ON_DEMAND]"), "{message}");
        assert!(message.contains("Value '' at 'tags.key'"), "{message}");
        check("CreateStream", map(&json!({"StreamName": "ok", "ShardCount": 2}))).expect("valid");
        check("NotAnOperation", map(&json!({"anything": 1})))
            .expect("operations outside the table are not checked here");
    }
}
