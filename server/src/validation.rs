//! Request validation from a service's table (`kds/constraints.json`, `firehose/constraints.json`),
//! generated from AWS's published service models by `scripts/gen-constraints.py`: each
//! operation's input members in the model's order with their constraints. Every request is
//! checked against it before its handler runs, as AWS does: first the JSON types of every member
//! given (a wrong type is a SerializationException), then every constraint, all violations of one
//! request reported in one ValidationException, members in the model's order, nested members
//! depth first.

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::document::{Violations, as_bool, as_int, as_string, as_timestamp_ms, blob_len};
use crate::error::ApiError;

/// One service's operations and their members' constraints.
#[derive(Debug, Deserialize)]
pub struct Table {
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

/// One member's type and constraints.
#[derive(Debug, Deserialize)]
pub struct Shape {
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

    /// Whether `text` meets this string shape's length, pattern and enumeration.
    pub fn admits_str(&self, text: &str) -> bool {
        let mut violations = Violations::default();
        check_string(self, text, "", &mut violations);
        violations.is_empty()
    }

    /// Whether a list of `count` entries, or a blob of `count` bytes, is within this shape's
    /// bounds.
    pub fn admits_count(&self, count: usize) -> bool {
        self.min.is_none_or(|min| count as f64 >= min) && self.max.is_none_or(|max| count as f64 <= max)
    }
}

impl Table {
    /// Parses a table that is part of the source tree (a unit test per service parses each, so
    /// a broken one cannot reach a release) and compiles its patterns once.
    pub fn from_json(json: &str) -> Table {
        let mut table: Table = serde_json::from_str(json).unwrap_or_else(|_| Table { operations: Default::default() });
        for members in table.operations.values_mut() {
            for member in members {
                member.shape.compile();
            }
        }
        table
    }

    /// Checks a request of `operation` against the model: SerializationException for a member
    /// of the wrong JSON type, ValidationException listing every violated constraint.
    pub fn check(&self, operation: &str, object: &Map<String, Value>) -> Result<(), ApiError> {
        let Some(members) = self.operations.get(operation) else { return Ok(()) };
        check_types(members, object)?;
        let mut violations = Violations::default();
        check_members(members, object, "", &mut violations);
        violations.finish()
    }

    /// The shape of the member at `path` in `operation`'s input: member names, where a list's
    /// item is named "member" as in the error paths. Lets a typed reader of one operation agree
    /// with `check` without restating the model's limits.
    pub fn shape(&self, operation: &str, path: &[&str]) -> Option<&Shape> {
        let (first, rest) = path.split_first()?;
        let top = self.operations.get(operation)?.iter().find(|m| m.name == *first)?;
        rest.iter().try_fold(&top.shape, |shape, step| match *step {
            "member" => shape.item.as_deref(),
            name => shape.members.as_deref()?.iter().find(|m| m.name == name).map(|m| &m.shape),
        })
    }

    /// How many operations the table describes.
    #[cfg(test)]
    pub fn operation_count(&self) -> usize {
        self.operations.len()
    }

    /// Whether every pattern in the table compiled.
    #[cfg(test)]
    pub fn patterns_compile(&self) -> bool {
        fn every(shape: &Shape) -> bool {
            shape.pattern.is_some() == shape.regex.is_some()
                && shape.members.iter().flatten().all(|m| every(&m.shape))
                && [&shape.item, &shape.key, &shape.value].into_iter().flatten().all(|inner| every(inner))
        }
        self.operations.values().flatten().all(|member| every(&member.shape))
    }
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
