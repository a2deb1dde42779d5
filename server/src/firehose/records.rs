//! PutRecord and PutRecordBatch: a record is acknowledged once it is in the engine (WAL synced);
//! delivery reads it from there. A batch is one append, so it shares one group commit. Records
//! over the Direct PUT quotas (quotas.rs) are refused as AWS refuses them.

use base64::Engine as _;
use framelog_store::{NewEntry, StoreError, StreamHandle};
use serde::Serialize;
use serde_json::{Value, json};

use super::api::name_of;
use super::batch_input::Batch;
use super::context::FirehoseCtx;
use crate::document::{Document, as_blob};
use crate::error::{ApiError, ErrorType};

/// PutRecordBatch's limit on the records' bytes together.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// What AWS answers a throttled call or record with.
const SLOW_DOWN: &str = "Slow down.";

/// The delivery stream a DirectPut call writes to, and whether its records are sealed.
fn direct_put_target(ctx: &FirehoseCtx, name: &str) -> Result<(StreamHandle, bool), ApiError> {
    let (handle, spec) = ctx.lookup(name)?;
    if spec.kinesis_source.is_some() {
        return Err(ApiError::invalid(
            "This operation is not permitted on KinesisStreamAsSource delivery stream type.",
        ));
    }
    let encrypted = handle.meta().encryption.is_some_and(|e| e.enabled);
    Ok((handle, encrypted))
}

/// An opaque id naming where the record landed.
fn record_id(handle: &StreamHandle, seq: u64) -> String {
    let mut bytes = handle.id().to_be_bytes().to_vec();
    bytes.extend_from_slice(&seq.to_be_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn entry(payload: Vec<u8>) -> NewEntry {
    NewEntry { shard: 0, producer_ts_ms: None, attrs: Vec::new(), payload }
}

pub fn put_record(ctx: &FirehoseCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let (handle, encrypted) = direct_put_target(ctx, &name)?;
    let record = body.object("Record")?.ok_or_else(|| ApiError::invalid("Record is required."))?;
    let data = record.blob("Data")?.unwrap_or_default();
    let bytes = data.len() as u64;
    if ctx.quotas.admit(handle.id(), &[bytes], ctx.engine.now_ms()) != Some(vec![true]) {
        ctx.count_throttled(&name, 1);
        return Err(ApiError::new(ErrorType::ServiceUnavailable, SLOW_DOWN));
    }
    let appended = ctx.engine.append_blocking(&handle, vec![entry(data)]).map_err(|e| ctx.store_error(&name, e))?;
    ctx.count_put(&name, 1, bytes);
    let seq = appended.first().map(|a| a.seq).unwrap_or_default();
    Ok(json!({"RecordId": record_id(&handle, seq), "Encrypted": encrypted}))
}

/// PutRecordBatch read from its generic document (batch_input.rs reads the common case).
pub fn put_record_batch(ctx: &FirehoseCtx, body: Document) -> Result<Value, ApiError> {
    let delivery_stream_name = name_of(&body)?;
    let records = body.list("Records")?.ok_or_else(|| ApiError::invalid("Records is required."))?;
    let payloads = records
        .iter()
        .map(|record| Ok(record.get("Data").filter(|d| !d.is_null()).map(as_blob).transpose()?.unwrap_or_default()))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let answer = store_batch(ctx, Batch { delivery_stream_name, payloads })?;
    serde_json::to_value(answer).map_err(|e| ApiError::internal(&e))
}

/// PutRecordBatch's answer. Serialized straight from here on the common path: a tree of 500
/// small JSON objects per call cost more than the records' own bookkeeping.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchAnswer {
    encrypted: bool,
    failed_put_count: usize,
    request_responses: Vec<RecordAnswer>,
}

/// One record's part of the answer, in AWS's members.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged, rename_all = "PascalCase")]
enum RecordAnswer {
    Stored {
        #[serde(rename = "RecordId")]
        record_id: String,
    },
    Failed {
        #[serde(rename = "ErrorCode")]
        error_code: &'static str,
        #[serde(rename = "ErrorMessage")]
        error_message: String,
    },
}

/// Stores the records of a batch that are within the quotas, in one append, and answers for
/// each record in order.
pub fn store_batch(ctx: &FirehoseCtx, batch: Batch) -> Result<BatchAnswer, ApiError> {
    let name = batch.delivery_stream_name;
    let (handle, encrypted) = direct_put_target(ctx, &name)?;
    let sizes: Vec<u64> = batch.payloads.iter().map(|p| p.len() as u64).collect();
    if sizes.iter().sum::<u64>() > MAX_BATCH_BYTES as u64 {
        return Err(ApiError::invalid("Records size exceeds 4 MB limit"));
    }
    let entries: Vec<NewEntry> = batch.payloads.into_iter().map(entry).collect();
    let Some(admitted) = ctx.quotas.admit(handle.id(), &sizes, ctx.engine.now_ms()) else {
        ctx.count_throttled(&name, sizes.len() as u64);
        return Err(ApiError::new(ErrorType::ServiceUnavailable, SLOW_DOWN));
    };
    let entries: Vec<NewEntry> = entries.into_iter().zip(&admitted).filter(|(_, in_)| **in_).map(|(e, _)| e).collect();
    let (count, bytes) = (entries.len(), entries.iter().map(|e| e.payload.len() as u64).sum::<u64>());
    ctx.count_throttled(&name, (admitted.len() - count) as u64);
    // When every record was throttled there is nothing to store.
    let appended = if count == 0 { Ok(Vec::new()) } else { ctx.engine.append_blocking(&handle, entries) };
    let stored: Vec<RecordAnswer> = match appended {
        Ok(appended) => {
            ctx.count_put(&name, count as u64, bytes);
            appended.iter().map(|a| RecordAnswer::Stored { record_id: record_id(&handle, a.seq) }).collect()
        }
        // The stream is gone, or nothing could be stored: every record failed, which each
        // entry says (a client retries those entries, as with throttling).
        Err(error @ (StoreError::StreamNotFound(_) | StoreError::StreamDeleted(_))) => {
            return Err(ctx.store_error(&name, error));
        }
        Err(error) => {
            let failure = ctx.store_error(&name, error);
            let error_message = failure.message.unwrap_or_else(|| "Internal service failure.".into());
            vec![RecordAnswer::Failed { error_code: "InternalFailure", error_message }; count]
        }
    };
    let request_responses = with_throttled(&admitted, stored);
    let failed_put_count = request_responses.iter().filter(|r| matches!(r, RecordAnswer::Failed { .. })).count();
    Ok(BatchAnswer { encrypted, failed_put_count, request_responses })
}

/// One answer per record put, in order: the stored records' answers where they were admitted,
/// AWS's throttling answer where they were not.
fn with_throttled(admitted: &[bool], stored: Vec<RecordAnswer>) -> Vec<RecordAnswer> {
    let mut stored = stored.into_iter();
    let throttled =
        RecordAnswer::Failed { error_code: "ServiceUnavailableException", error_message: SLOW_DOWN.to_string() };
    admitted
        .iter()
        .map(|in_| if *in_ { stored.next().unwrap_or_else(|| throttled.clone()) } else { throttled.clone() })
        .collect()
}
