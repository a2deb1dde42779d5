//! DiscoverInputSchema: a sample of a stream's records (or an object's lines) read as JSON
//! objects or CSV rows, and the columns, mappings and SQL types that describe them. Types are
//! the narrowest that hold every sampled value (integers as TINYINT..BIGINT, other numbers as
//! DOUBLE, text as VARCHAR of the next power of two), as the service inferred them.

use framelog_store::Position;
use serde_json::{Map, Value, json};

use super::context::AnalyticsCtx;
use super::feed::{Feed, Item};
use super::preprocess::Preprocessor;
use super::processing_api::parse_processor;
use super::video_input::{sample_documents, video_pattern};
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

/// Records sampled per shard.
const SAMPLE_RECORDS: usize = 100;
const SAMPLE_BYTES: usize = 1 << 20;

pub fn discover_input_schema(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let (raw, source_arn) = match (body.str("ResourceARN")?, body.object("S3Configuration")?) {
        (Some(arn), _) => (sample_stream(ctx, &arn, &body)?, arn),
        (None, Some(s3)) => (sample_object(ctx, &s3)?, s3.str("BucketARN")?.unwrap_or_default()),
        (None, None) => return Err(ApiError::invalid("Either ResourceARN or S3Configuration is required.")),
    };
    let raw_texts: Vec<String> = raw.iter().filter_map(|i| String::from_utf8(i.data.clone()).ok()).collect();
    let processed = preprocess(ctx, &body, &source_arn, raw)?;
    let texts: Vec<String> = processed.iter().filter_map(|i| String::from_utf8(i.data.clone()).ok()).collect();
    if texts.is_empty() {
        return Err(unable("No records were found to detect a schema from."));
    }
    let objects: Option<Vec<Map<String, Value>>> =
        texts.iter().map(|t| serde_json::from_str::<Value>(t).ok().and_then(|v| v.as_object().cloned())).collect();
    let (schema, parsed) = match objects {
        Some(objects) => json_schema(&objects),
        None => csv_schema(&texts),
    };
    Ok(json!({
        "InputSchema": schema,
        "ParsedInputRecords": parsed,
        "ProcessedInputRecords": texts,
        "RawInputRecords": raw_texts,
    }))
}

/// The sample through the request's InputProcessingConfiguration, if it has one.
fn preprocess(ctx: &AnalyticsCtx, body: &Document, source_arn: &str, sample: Vec<Item>) -> Result<Vec<Item>, ApiError> {
    let configuration = body.fields().get("InputProcessingConfiguration").cloned().unwrap_or_default();
    let Some(processor) = parse_processor(ctx, &configuration)? else { return Ok(sample) };
    let preprocessor =
        Preprocessor::new(ctx, &processor, String::new(), source_arn.to_string()).map_err(ApiError::invalid)?;
    let feed = Feed::open(ctx, source_arn).ok();
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| ApiError::internal(&e))?;
    let (kept, _) = runtime.block_on(preprocessor.run(feed.as_ref(), sample));
    Ok(kept)
}

fn unable(detail: &str) -> ApiError {
    ApiError::new(
        ErrorType::UnableToDetectSchema,
        format!(
            "Data format is not valid. Amazon Kinesis Analytics is not able to detect schema for the given streaming source. {detail}"
        ),
    )
}

/// Up to SAMPLE_RECORDS records of each shard: the oldest, or with NOW the newest.
fn sample_stream(ctx: &AnalyticsCtx, arn: &str, body: &Document) -> Result<Vec<Item>, ApiError> {
    let position = body
        .object("InputStartingPositionConfiguration")?
        .map(|c| c.str("InputStartingPosition"))
        .transpose()?
        .flatten()
        .unwrap_or_else(|| "NOW".into());
    if let Some(pattern) = video_pattern(arn) {
        let documents = sample_documents(&ctx.engine, &pattern, position != "TRIM_HORIZON", SAMPLE_RECORDS);
        return Ok(unnumbered("video", documents));
    }
    let handle =
        ctx.stream_of_arn(arn).ok_or_else(|| ApiError::invalid(format!("The stream {arn} does not exist.")))?;
    let mut records = Vec::new();
    for shard in 0..handle.shard_count() {
        let oldest = ctx.engine.resolve(&handle, shard, Position::TrimHorizon).map_err(ApiError::from)?;
        let from = match position.as_str() {
            "TRIM_HORIZON" => oldest,
            _ => handle.tip_seq(shard).map_err(ApiError::from)?.saturating_sub(SAMPLE_RECORDS as u64).max(oldest),
        };
        let batch = ctx.engine.read(&handle, shard, from, SAMPLE_RECORDS, SAMPLE_BYTES).map_err(ApiError::from)?;
        records.extend(batch.entries.into_iter().map(|e| Item {
            part: shard.to_string(),
            seq: e.seq,
            arrival_ms: e.arrival_ms,
            data: e.payload,
            attrs: e.attrs,
        }));
    }
    Ok(records)
}

/// The lines of an object in a bucket the server knows.
fn sample_object(ctx: &AnalyticsCtx, s3: &Document) -> Result<Vec<Item>, ApiError> {
    let bucket_arn = s3.str("BucketARN")?.unwrap_or_default();
    let key = s3.str("FileKey")?.unwrap_or_default();
    let sink = ctx.firehose.buckets.sink(super::reference::bucket_name(&bucket_arn)?).map_err(ApiError::invalid)?;
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| ApiError::internal(&e))?;
    let bytes =
        runtime.block_on(sink.get(&key)).map_err(|e| ApiError::invalid(format!("{key} could not be read: {e}")))?;
    let lines = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).take(SAMPLE_RECORDS).map(<[u8]>::to_vec);
    Ok(unnumbered("s3", lines.collect()))
}

/// Sampled records that are not a stream's entries, numbered by their place.
fn unnumbered(part: &str, records: Vec<Vec<u8>>) -> Vec<Item> {
    records
        .into_iter()
        .enumerate()
        .map(|(i, data)| Item { part: part.to_string(), seq: i as u64, arrival_ms: 0, data, attrs: Vec::new() })
        .collect()
}

/// A column found in the sample: its name, JSON path and the values seen.
struct Found {
    name: String,
    mapping: String,
    values: Vec<Value>,
}

fn json_schema(objects: &[Map<String, Value>]) -> (Value, Vec<Vec<Value>>) {
    let mut found: Vec<Found> = Vec::new();
    for object in objects {
        collect(object, "$", "", &mut found);
    }
    let parsed: Vec<Vec<Value>> = objects
        .iter()
        .map(|object| {
            let document = Value::Object(object.clone());
            found.iter().map(|f| shown(lookup(&document, &f.mapping))).collect()
        })
        .collect();
    let columns: Vec<Value> =
        found.iter().map(|f| json!({"Name": f.name, "Mapping": f.mapping, "SqlType": sql_type(&f.values)})).collect();
    let schema = json!({
        "RecordFormat": {"RecordFormatType": "JSON", "MappingParameters": {"JSONMappingParameters": {"RecordRowPath": "$"}}},
        "RecordEncoding": "UTF-8",
        "RecordColumns": columns,
    });
    (schema, parsed)
}

/// Members of `object` (nested objects flattened, their names joined by `_`), in first-seen order.
fn collect(object: &Map<String, Value>, path: &str, prefix: &str, found: &mut Vec<Found>) {
    for (key, value) in object {
        let mapping = format!("{path}.{key}");
        let name = column_name(&format!("{prefix}{key}"));
        match value {
            Value::Object(inner) => collect(inner, &mapping, &format!("{prefix}{key}_"), found),
            _ => match found.iter_mut().find(|f| f.mapping == mapping) {
                Some(existing) => existing.values.push(value.clone()),
                None => found.push(Found { name, mapping, values: vec![value.clone()] }),
            },
        }
    }
}

fn lookup<'a>(document: &'a Value, mapping: &str) -> &'a Value {
    mapping.trim_start_matches("$.").split('.').try_fold(document, |v, k| v.get(k)).unwrap_or(&Value::Null)
}

fn shown(value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::String(s) => json!(s),
        other => json!(other.to_string()),
    }
}

/// A name that is a valid identifier as given; otherwise `COL_` and its valid characters.
fn column_name(raw: &str) -> String {
    let valid = raw.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        return raw.to_string();
    }
    let kept: String = raw.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    if kept.is_empty() { "COL_#".to_string() } else { format!("COL_{kept}") }
}

/// The narrowest SQL type holding every sampled value.
fn sql_type(values: &[Value]) -> String {
    let present: Vec<&Value> = values.iter().filter(|v| !v.is_null()).collect();
    if !present.is_empty() && present.iter().all(|v| v.is_boolean()) {
        return "BOOLEAN".into();
    }
    if !present.is_empty() && present.iter().all(|v| v.is_i64()) {
        let widest = present.iter().filter_map(|v| v.as_i64()).map(|n| n.unsigned_abs()).max().unwrap_or(0);
        return match widest {
            0..=127 => "TINYINT",
            128..=32_767 => "SMALLINT",
            32_768..=2_147_483_647 => "INTEGER",
            _ => "BIGINT",
        }
        .into();
    }
    if !present.is_empty() && present.iter().all(|v| v.is_number()) {
        return "DOUBLE".into();
    }
    let longest = present.iter().map(|v| v.as_str().map_or_else(|| v.to_string().len(), str::len)).max().unwrap_or(1);
    format!("VARCHAR({})", longest.max(1).next_power_of_two())
}

fn csv_schema(lines: &[String]) -> (Value, Vec<Vec<Value>>) {
    let rows: Vec<Vec<&str>> = lines.iter().flat_map(|l| l.lines()).map(|l| l.split(',').collect()).collect();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let columns: Vec<Value> = (0..width)
        .map(|i| {
            let values: Vec<Value> = rows.iter().filter_map(|r| r.get(i)).map(|text| typed(text)).collect();
            json!({"Name": format!("COL_{}", i + 1), "SqlType": sql_type(&values)})
        })
        .collect();
    let parsed = rows.iter().map(|r| r.iter().map(|v| json!(v)).collect()).collect();
    let schema = json!({
        "RecordFormat": {"RecordFormatType": "CSV", "MappingParameters": {"CSVMappingParameters": {"RecordRowDelimiter": "\n", "RecordColumnDelimiter": ","}}},
        "RecordEncoding": "UTF-8",
        "RecordColumns": columns,
    });
    (schema, parsed)
}

/// A CSV field as the JSON value it reads as (a number, a boolean, or text).
fn typed(text: &str) -> Value {
    let text = text.trim();
    serde_json::from_str::<Value>(text).ok().filter(|v| v.is_number() || v.is_boolean()).unwrap_or_else(|| json!(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_the_narrowest_that_hold_every_value() {
        assert_eq!(sql_type(&[json!(60), json!(-5)]), "TINYINT");
        assert_eq!(sql_type(&[json!(60), json!(40_000)]), "INTEGER");
        assert_eq!(sql_type(&[json!(1), json!(2.5)]), "DOUBLE");
        assert_eq!(sql_type(&[json!("AMZN"), json!("GOOGL")]), "VARCHAR(8)");
        assert_eq!(sql_type(&[json!(true), Value::Null]), "BOOLEAN");
    }

    #[test]
    fn nested_members_are_flattened_and_bad_names_prefixed() {
        let objects: Vec<Map<String, Value>> = [json!({"a": {"b": 1}, "1st": "x"}), json!({"a": {"b": 300}})]
            .into_iter()
            .filter_map(|v| v.as_object().cloned())
            .collect();
        let (schema, parsed) = json_schema(&objects);
        let columns = schema["RecordColumns"].as_array().expect("columns");
        let named = |name: &str| columns.iter().position(|c| c["Name"] == name).expect("the column is found");
        assert_eq!(columns[named("a_b")], json!({"Name": "a_b", "Mapping": "$.a.b", "SqlType": "SMALLINT"}));
        assert_eq!(columns[named("COL_1st")]["Mapping"], "$.1st");
        assert_eq!(parsed[1][named("a_b")], json!("300"));
        assert_eq!(parsed[1][named("COL_1st")], Value::Null);
    }
}
