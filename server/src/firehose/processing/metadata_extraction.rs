//! MetadataExtraction: a jq query (JQ-1.6, run by `jaq`) over each JSON record, whose object
//! gives the record's partition keys, e.g. `{customer_id: .customer_id, year: .ts | strftime("%Y")}`
//! (<https://docs.aws.amazon.com/firehose/latest/dev/dynamic-partitioning-partitioning-keys.html>).
//!
//! The query is kept as text and compiled where it runs: a compiled `jaq` filter is bound to one
//! thread (its values are reference-counted), and compiling a short query costs microseconds
//! against an object write.

use std::collections::BTreeMap;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;

/// A checked MetadataExtractionQuery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extraction {
    query: String,
}

/// Why a record has no partition keys (the error record's errorCode and errorMessage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractionFailed {
    pub error_code: &'static str,
    pub message: String,
}

/// AWS's code and message for a record the query cannot read.
const FAILED_CODE: &str = "DynamicPartitioning.MetadataExtractionFailed";

impl ExtractionFailed {
    /// The query's thread died before it answered.
    pub fn stopped() -> ExtractionFailed {
        ExtractionFailed { error_code: FAILED_CODE, message: "The query stopped.".into() }
    }
}

type Filter = jaq_core::compile::Filter<jaq_core::Native<data::JustLut<Val>>>;

impl Extraction {
    /// The query, or InvalidArgumentException's message when it is not a jq program this server
    /// runs.
    pub fn compile(query: &str) -> Result<Extraction, String> {
        super::query_guard::check(query)?;
        let text = query.to_string();
        on_a_big_stack(move || compiled(&text).map(|_| ()))
            .unwrap_or_else(|| Err("MetadataExtractionQuery could not be compiled.".into()))?;
        Ok(Extraction { query: query.to_string() })
    }

    /// Each record's partition keys, in order: the query's object, its values as text (strings
    /// as they are, other values as JSON); keys whose value is null are left out. Runs on a
    /// thread of its own with a large stack, as compiling does.
    pub fn extract(&self, records: Vec<Vec<u8>>) -> Vec<Result<BTreeMap<String, String>, ExtractionFailed>> {
        let (query, count) = (self.query.clone(), records.len());
        let run = move || {
            let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            extract_with(&query, &slices)
        };
        on_a_big_stack(run).unwrap_or_else(|| vec![Err(ExtractionFailed::stopped()); count])
    }
}

/// jaq's parser and evaluator recurse; the guard bounds a query's nesting, and this stack
/// leaves room for what a 5,120-character query can still nest. `None` if the thread died.
const QUERY_STACK_BYTES: usize = 64 << 20;

fn on_a_big_stack<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let thread = std::thread::Builder::new().name("jq".into()).stack_size(QUERY_STACK_BYTES).spawn(work).ok()?;
    thread.join().ok()
}

fn extract_with(query: &str, records: &[&[u8]]) -> Vec<Result<BTreeMap<String, String>, ExtractionFailed>> {
    let filter = match compiled(query) {
        Ok(filter) => filter,
        Err(message) => {
            let failed = ExtractionFailed { error_code: FAILED_CODE, message };
            return records.iter().map(|_| Err(failed.clone())).collect();
        }
    };
    records.iter().map(|record| keys_of(&filter, record)).collect()
}

fn compiled(query: &str) -> Result<Filter, String> {
    let invalid = || format!("MetadataExtractionQuery {query} is not a valid JQ-1.6 query.");
    let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
    let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
    let arena = Arena::default();
    let modules = Loader::new(defs).load(&arena, File { code: query, path: () }).map_err(|_| invalid())?;
    Compiler::default().with_funs(funs).compile(modules).map_err(|_| invalid())
}

fn keys_of(filter: &Filter, record: &[u8]) -> Result<BTreeMap<String, String>, ExtractionFailed> {
    let failed = |message: String| ExtractionFailed { error_code: FAILED_CODE, message };
    // serde_json refuses nesting deeper than 128 levels; jaq's reader recurses without a limit,
    // so a record of a million '[' would overflow the stack. Only what serde_json reads reaches it.
    serde_json::from_slice::<serde::de::IgnoredAny>(record).map_err(|_| failed("Non JSON record provided".into()))?;
    let input = jaq_json::read::parse_single(record).map_err(|_| failed("Non JSON record provided".into()))?;
    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
    let mut outputs = filter.id.run((ctx, input)).map(unwrap_valr);
    let object = match outputs.next() {
        Some(Ok(Val::Obj(object))) => object,
        Some(Ok(other)) => return Err(failed(format!("The query gave {other}, not an object of partition keys"))),
        Some(Err(error)) => return Err(failed(format!("The query failed on the record: {error}"))),
        None => return Err(failed("The query gave no value for the record".into())),
    };
    // A null value is a key the record lacks: no partition can be named after it.
    Ok(object
        .iter()
        .filter(|(_, value)| !matches!(value, Val::Null))
        .map(|(key, value)| (text_of(key), text_of(value)))
        .collect())
}

/// A string's characters, or any other value as JSON.
fn text_of(value: &Val) -> String {
    match value {
        Val::TStr(bytes) | Val::BStr(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_query_object_gives_the_keys() {
        let extraction =
            Extraction::compile(r#"{customer_id: .customer_id, device: .type.device, year: .ts | strftime("%Y")}"#)
                .expect("valid");
        let record = br#"{"customer_id": "c-1", "type": {"device": "mobile"}, "ts": 1565382027}"#;
        let numbered = br#"{"customer_id": 42, "type": {"device": null}, "ts": 0}"#;
        let got = extraction.extract(vec![record.to_vec(), numbered.to_vec()]);
        assert_eq!(got[0], Ok(keys(&[("customer_id", "c-1"), ("device", "mobile"), ("year", "2019")])));
        assert_eq!(got[1], Ok(keys(&[("customer_id", "42"), ("year", "1970")])), "a null value is no key");
    }

    #[test]
    fn records_the_query_cannot_read_fail_with_aws_code() {
        let extraction = Extraction::compile("{id: .id}").expect("valid");
        let got = extraction.extract(vec![b"not json".to_vec(), b"[1, 2]".to_vec()]);
        let first = got[0].clone().expect_err("not JSON");
        assert_eq!(first.error_code, "DynamicPartitioning.MetadataExtractionFailed");
        assert_eq!(first.message, "Non JSON record provided");
        assert!(got[1].is_err(), "an array has no .id: {:?}", got[1]);
    }

    #[test]
    fn a_broken_or_unbounded_query_is_refused_up_front() {
        assert!(Extraction::compile("{id: .id").is_err());
        assert!(Extraction::compile("{id: undefined_function(.x)}").is_err());
        let looping = Extraction::compile("{id: [range(1e12)] | length}").expect_err("unbounded");
        assert!(looping.contains("range"), "{looping}");
        assert!(
            Extraction::compile("{ranged: .range, range: .x, s: \"range\"}").is_ok(),
            "members, keys and text are fine"
        );
        assert!(Extraction::compile("{k: (.a | recurse)}").is_err());
    }
}
