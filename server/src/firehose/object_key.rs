//! Object keys as Firehose names them: an evaluated prefix, then
//! `<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><extension>`
//! (<https://docs.aws.amazon.com/firehose/latest/dev/s3-object-name.html>). Prefixes may hold
//! `!{timestamp:<pattern>}`, `!{firehose:random-string}`, `!{firehose:error-output-type}`,
//! `!{partitionKeyFromQuery:<key>}` and `!{partitionKeyFromLambda:<key>}`
//! (<https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html>).
//!
//! Nothing here is random: the "random" parts come from a seed the caller derives from the
//! buffer (its stream and first record), so a buffer delivered again after a crash gets the same
//! key and overwrites its first delivery instead of doubling it.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::timestamp_pattern::TimestampPattern;

/// The prefix Firehose uses, and appends to a prefix without a timestamp.
const DEFAULT_TIMESTAMP: &str = "yyyy/MM/dd/HH/";

/// One piece of a parsed prefix.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Timestamp(TimestampPattern),
    RandomString,
    ErrorOutputType,
    FromQuery(String),
    FromLambda(String),
}

/// A parsed `Prefix` or `ErrorOutputPrefix`.
#[derive(Debug, Clone, PartialEq)]
pub struct Prefix {
    parts: Vec<Part>,
}

/// What a key is evaluated with.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    /// The approximate arrival time of the object's oldest record.
    pub arrival_ms: u64,
    /// Derived from the buffer; the same buffer always gets the same value.
    pub seed: u64,
    pub error_output_type: Option<&'a str>,
    pub partition_keys: &'a PartitionKeys,
}

/// The values of `!{partitionKeyFromQuery:KEY}` and `!{partitionKeyFromLambda:KEY}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionKeys {
    pub from_query: BTreeMap<String, String>,
    pub from_lambda: BTreeMap<String, String>,
}

impl Prefix {
    /// Parses `text`; the message says what is wrong (InvalidArgumentException's text).
    pub fn parse(text: &str) -> Result<Prefix, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("!{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("The expression starting at '{}' is not closed.", &rest[start..]))?;
            parts.push(expression(&after[..end])?);
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Prefix { parts })
    }

    /// Whether the prefix holds any `!{...}` expression.
    pub fn has_expressions(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    fn has_timestamp(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Timestamp(_)))
    }

    fn has_error_output_type(&self) -> bool {
        self.parts.contains(&Part::ErrorOutputType)
    }

    /// The partition keys the prefix asks for, `(from_lambda, key)`.
    pub fn partition_keys(&self) -> impl Iterator<Item = (bool, &str)> {
        self.parts.iter().filter_map(|p| match p {
            Part::FromQuery(key) => Some((false, key.as_str())),
            Part::FromLambda(key) => Some((true, key.as_str())),
            _ => None,
        })
    }

    /// Evaluates the prefix. Every timestamp uses the same instant; each random string differs.
    pub fn render(&self, inputs: &KeyInputs<'_>) -> String {
        let mut out = String::new();
        let mut random_strings = 0u64;
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Timestamp(pattern) => out.push_str(&pattern.format(inputs.arrival_ms)),
                Part::RandomString => {
                    random_strings += 1;
                    out.push_str(&hex::encode(seeded_bytes(inputs.seed, random_strings))[..11]);
                }
                Part::ErrorOutputType => out.push_str(inputs.error_output_type.unwrap_or_default()),
                Part::FromQuery(key) => {
                    out.push_str(inputs.partition_keys.from_query.get(key).map(String::as_str).unwrap_or_default());
                }
                Part::FromLambda(key) => {
                    out.push_str(inputs.partition_keys.from_lambda.get(key).map(String::as_str).unwrap_or_default());
                }
            }
        }
        out
    }
}

fn expression(inner: &str) -> Result<Part, String> {
    let (namespace, value) = inner.split_once(':').unwrap_or((inner, ""));
    Ok(match (namespace, value) {
        ("timestamp", pattern) => Part::Timestamp(TimestampPattern::parse(pattern)?),
        ("firehose", "random-string") => Part::RandomString,
        ("firehose", "error-output-type") => Part::ErrorOutputType,
        ("partitionKeyFromQuery", key) if !key.is_empty() => Part::FromQuery(key.to_string()),
        ("partitionKeyFromLambda", key) if !key.is_empty() => Part::FromLambda(key.to_string()),
        _ => return Err(format!("The expression '!{{{inner}}}' is not supported.")),
    })
}

/// A destination's data and error prefixes, checked by Firehose's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Prefixes {
    data: Prefix,
    error: Prefix,
}

impl Prefixes {
    /// Firehose's rules: a prefix without a timestamp (and without partition keys) gets
    /// `!{timestamp:yyyy/MM/dd/HH/}` appended; an ErrorOutputPrefix is required once the Prefix
    /// has expressions; error-output-type belongs to the error prefix only, partition keys to
    /// the data prefix only. Without an ErrorOutputPrefix, errors go to
    /// `<prefix><error-output-type>/yyyy/MM/dd/HH/`.
    pub fn new(prefix: Option<&str>, error_prefix: Option<&str>) -> Result<Prefixes, String> {
        let prefix_text = prefix.unwrap_or_default();
        let mut data = Prefix::parse(prefix_text)?;
        let error_text = error_prefix.filter(|p| !p.is_empty());
        if data.has_expressions() && error_text.is_none() {
            return Err("Ths supplied prefix(es) do not satisfy the following constraint: ErrorOutputPrefix cannot be null or empty when Prefix contains expressions".into());
        }
        if data.has_error_output_type() {
            return Err("The expression '!{firehose:error-output-type}' is only allowed in ErrorOutputPrefix.".into());
        }
        let error = match error_text {
            Some(text) => Prefix::parse(text)?,
            None => Prefix::parse(&format!(
                "{prefix_text}!{{firehose:error-output-type}}/!{{timestamp:{DEFAULT_TIMESTAMP}}}"
            ))?,
        };
        if error.partition_keys().next().is_some() {
            return Err("Partition key expressions are not allowed in ErrorOutputPrefix.".into());
        }
        if error.has_expressions() && !error.has_error_output_type() {
            return Err("ErrorOutputPrefix must contain the expression '!{firehose:error-output-type}' when it has expressions.".into());
        }
        if !data.has_timestamp() && data.partition_keys().next().is_none() {
            data.parts.push(Part::Timestamp(TimestampPattern::parse(DEFAULT_TIMESTAMP)?));
        }
        Ok(Prefixes { data, error })
    }

    pub fn data(&self) -> &Prefix {
        &self.data
    }

    pub fn error(&self) -> &Prefix {
        &self.error
    }
}

/// The object's name after its prefix: `<stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><extension>`.
pub fn object_name(stream: &str, version: u64, inputs: &KeyInputs<'_>, extension: &str) -> String {
    let time = TimestampPattern::parse("yyyy-MM-dd-HH-mm-ss").map(|p| p.format(inputs.arrival_ms)).unwrap_or_default();
    format!("{stream}-{version}-{time}-{}{extension}", seeded_uuid(inputs.seed))
}

/// A version-4-shaped UUID from the seed: an object's name, an HTTP request's id.
pub fn seeded_uuid(seed: u64) -> String {
    let mut bytes = seeded_bytes(seed, 0);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(&bytes[..16]);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

fn seeded_bytes(seed: u64, index: u64) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(seed.to_be_bytes());
    hash.update(index.to_be_bytes());
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2018-08-27T10:30:15.250Z
    const ARRIVAL_MS: u64 = 1_535_365_815_250;

    fn inputs(keys: &PartitionKeys) -> KeyInputs<'_> {
        KeyInputs {
            arrival_ms: ARRIVAL_MS,
            seed: 7,
            error_output_type: Some("processing-failed"),
            partition_keys: keys,
        }
    }

    #[test]
    fn default_layout_is_utc_hour_folders_then_the_named_object() {
        let keys = PartitionKeys::default();
        let prefixes = Prefixes::new(None, None).expect("valid");
        assert_eq!(prefixes.data().render(&inputs(&keys)), "2018/08/27/10/");
        assert_eq!(prefixes.error().render(&inputs(&keys)), "processing-failed/2018/08/27/10/");
        let name = object_name("orders", 3, &inputs(&keys), ".gz");
        assert!(name.starts_with("orders-3-2018-08-27-10-30-15-"), "{name}");
        assert!(name.ends_with(".gz"));
        let uuid = &name["orders-3-2018-08-27-10-30-15-".len()..name.len() - 3];
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert_eq!(name, object_name("orders", 3, &inputs(&keys), ".gz"), "the same buffer, the same key");
        let other = KeyInputs { seed: 8, ..inputs(&keys) };
        assert_ne!(name, object_name("orders", 3, &other, ".gz"));
    }

    #[test]
    fn a_literal_prefix_gets_the_hour_folders_and_errors_go_beside_it() {
        let keys = PartitionKeys::default();
        let prefixes = Prefixes::new(Some("logs/"), None).expect("valid");
        assert_eq!(prefixes.data().render(&inputs(&keys)), "logs/2018/08/27/10/");
        assert_eq!(prefixes.error().render(&inputs(&keys)), "logs/processing-failed/2018/08/27/10/");
    }

    #[test]
    fn expressions_render_with_one_instant_and_partition_keys() {
        let keys = PartitionKeys {
            from_query: BTreeMap::from([("customer".to_string(), "42".to_string())]),
            from_lambda: BTreeMap::from([("customer".to_string(), "from-lambda".to_string())]),
        };
        let prefixes = Prefixes::new(
            Some("c=!{partitionKeyFromQuery:customer}/!{timestamp:yyyy'-'MM}/!{firehose:random-string}/l=!{partitionKeyFromLambda:customer}/"),
            Some("err/!{firehose:error-output-type}/!{timestamp:yyyy}/"),
        )
        .expect("valid");
        let data = prefixes.data().render(&inputs(&keys));
        assert!(data.starts_with("c=42/2018-08/"), "{data}");
        assert!(data.ends_with("/l=from-lambda/"), "{data}");
        assert_eq!(data.len(), "c=42/2018-08/".len() + 12 + "l=from-lambda/".len());
        assert_eq!(prefixes.error().render(&inputs(&keys)), "err/processing-failed/2018/");
    }

    #[test]
    fn firehoses_prefix_rules_are_enforced() {
        let error = Prefixes::new(Some("!{timestamp:yyyy}/"), None).expect_err("needs an error prefix");
        assert!(error.starts_with("Ths supplied prefix(es)"), "{error}");
        assert!(
            Prefixes::new(Some("!{firehose:error-output-type}/"), Some("e/!{firehose:error-output-type}")).is_err()
        );
        assert!(Prefixes::new(Some("a/"), Some("e/!{partitionKeyFromQuery:x}/")).is_err());
        assert!(Prefixes::new(Some("a/"), Some("e/!{timestamp:yyyy}/")).is_err(), "no error-output-type");
        assert!(Prefixes::new(Some("!{unknown:x}"), Some("e")).is_err());
        assert!(Prefixes::new(Some("!{timestamp:yyyy"), Some("e")).is_err(), "unclosed");
        assert!(Prefixes::new(Some("a/"), Some("plain-errors/")).is_ok());
    }
}
