//! The Kinesis Data Streams API (awsJson1_1 and CBOR): `POST /` with `X-Amz-Target:
//! Kinesis_20131202.<Operation>`. This module checks the envelope in KDS's order, decodes the
//! document, runs the operation on a blocking thread (engine calls block on RocksDB and on group
//! commit), and encodes the answer in the request's own content type.

mod account;
mod cbor;
mod context;
mod encryption;
mod event_stream;
mod hashkey;
mod iterator;
mod lease_table;
#[cfg(test)]
mod lease_tests;
mod leases;
mod list_shards;
mod metrics;
mod on_demand;
#[cfg(test)]
mod quota_tests;
mod quotas;
mod records;
pub(crate) use records::sequence_number as record_sequence_number;
mod reshard;
#[cfg(test)]
mod reshard_tests;
mod resources;
mod seqnum;
mod stream_consumers;
mod stream_settings;
mod streams;
mod subscribe;
#[cfg(test)]
mod tests;
mod validation;

/// What the record consumers (crate::consumers) show of a stored record.
pub(crate) use context::{epoch_secs, shard_id};
pub(crate) use records::sequence_number;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

pub use context::{KdsCtx, KdsSettings};
pub use iterator::IteratorCodec;
pub use list_shards::token_stream as list_shards_token_stream;
pub use on_demand::scale_on_demand;
pub use quotas::Quotas;
pub use reshard::resume_pending;

use crate::background::Background;
use crate::document::Document;
use crate::error::{ApiError, ErrorType, Protocol};

const TARGET_PREFIX: &str = "Kinesis_20131202.";
const JSON_TYPE: &str = "application/x-amz-json-1.1";
const CBOR_TYPE: &str = "application/x-amz-cbor-1.1";

type Operation = fn(&KdsCtx, Document) -> Result<Value, ApiError>;

/// How an operation answers: one document, or an event stream.
#[derive(Clone, Copy)]
enum Dispatch {
    Unary(Operation),
    Subscribe,
    NotImplemented(&'static str),
}

fn dispatch(name: &str) -> Option<Dispatch> {
    if let Some(known) = account::NOT_IMPLEMENTED.iter().find(|n| **n == name) {
        return Some(Dispatch::NotImplemented(known));
    }
    match name {
        "SubscribeToShard" => Some(Dispatch::Subscribe),
        _ => operation(name).map(Dispatch::Unary),
    }
}

fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "CreateStream" => streams::create_stream,
        "DeleteStream" => streams::delete_stream,
        "DescribeStream" => streams::describe_stream,
        "DescribeStreamSummary" => streams::describe_stream_summary,
        "ListStreams" => streams::list_streams,
        "ListShards" => list_shards::list_shards,
        "SplitShard" => reshard::split_shard,
        "MergeShards" => reshard::merge_shards,
        "UpdateShardCount" => reshard::update_shard_count,
        "RegisterStreamConsumer" => stream_consumers::register,
        "DescribeStreamConsumer" => stream_consumers::describe,
        "ListStreamConsumers" => stream_consumers::list,
        "DeregisterStreamConsumer" => stream_consumers::deregister,
        "TagResource" => resources::tag_resource,
        "UntagResource" => resources::untag_resource,
        "ListTagsForResource" => resources::list_tags_for_resource,
        "PutResourcePolicy" => resources::put_resource_policy,
        "GetResourcePolicy" => resources::get_resource_policy,
        "DeleteResourcePolicy" => resources::delete_resource_policy,
        "EnableEnhancedMonitoring" => stream_settings::enable_enhanced_monitoring,
        "DisableEnhancedMonitoring" => stream_settings::disable_enhanced_monitoring,
        "UpdateStreamMode" => stream_settings::update_stream_mode,
        "UpdateStreamWarmThroughput" => stream_settings::update_warm_throughput,
        "UpdateStreamRecordDistributionStrategy" => stream_settings::update_record_distribution,
        "UpdateMaxRecordSize" => stream_settings::update_max_record_size,
        "DescribeLimits" => account::describe_limits,
        "DescribeAccountSettings" => account::describe_account_settings,
        "UpdateAccountSettings" => account::update_account_settings,
        "IncreaseStreamRetentionPeriod" => |ctx, body| streams::change_retention(ctx, body, true),
        "DecreaseStreamRetentionPeriod" => |ctx, body| streams::change_retention(ctx, body, false),
        "AddTagsToStream" => streams::add_tags,
        "RemoveTagsFromStream" => streams::remove_tags,
        "ListTagsForStream" => streams::list_tags,
        "PutRecord" => records::put_record,
        "PutRecords" => records::put_records,
        "GetShardIterator" => records::get_shard_iterator,
        "GetRecords" => records::get_records,
        "StartStreamEncryption" => encryption::start_stream_encryption,
        // Framelog's lease API for consumer groups (docs/consumer-groups.md).
        "DescribeLeases" => leases::describe_leases,
        "AcquireLease" => leases::acquire_lease,
        "RenewLease" => leases::renew_lease,
        "CheckpointLease" => leases::checkpoint_lease,
        "ReleaseLease" => leases::release_lease,
        "DeleteLeases" => leases::delete_leases,
        "StopStreamEncryption" => encryption::stop_stream_encryption,
        _ => return None,
    })
}

/// Runs one operation as a client's call would (analytics outputs put records through it): the
/// model's constraints, then the handler. Blocks: call it off the async threads.
pub fn call(ctx: &KdsCtx, name: &str, document: Document) -> Result<Value, ApiError> {
    let op = operation(name).ok_or_else(|| ApiError::bare(ErrorType::UnknownOperation))?;
    validation::check(name, document.fields())?;
    op(ctx, document)
}

/// Handles one KDS request end to end.
pub async fn handle(
    State(ctx): State<KdsCtx>,
    State(background): State<Background>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let cbor = content_type.starts_with(CBOR_TYPE);
    let result = match envelope(&method, &headers, content_type, &body, TARGET_PREFIX, dispatch) {
        Ok((name, Dispatch::Unary(op), document)) => background
            .spawn_blocking(move || {
                validation::check(&name, document.fields())?;
                op(&ctx, document)
            })
            .await
            .unwrap_or_else(|join| Err(ApiError::internal(&join))),
        Ok((_, Dispatch::NotImplemented(name), _)) => Err(account::not_implemented(name)),
        Ok((name, Dispatch::Subscribe, document)) => {
            if let Err(error) = validation::check(&name, document.fields()) {
                return error_answer(&error, content_type);
            }
            return match subscribe::handle(ctx, background, document, cbor).await {
                Ok(response) => response,
                Err(error) => error_answer(&error, content_type),
            };
        }
        Err(EnvelopeError::Xml(status, name, message)) => return xml_error(status, name, message),
        Err(EnvelopeError::Api(error)) => Err(error),
    };
    match result {
        Ok(document) => answer(StatusCode::OK, &document, cbor),
        Err(error) => error_answer(&error, content_type),
    }
}

/// An error in KDS's form, encoded in the request's content type.
pub fn error_answer(error: &ApiError, content_type: &str) -> Response {
    let status = StatusCode::from_u16(error.kind.status(Protocol::Kds)).unwrap_or(StatusCode::BAD_REQUEST);
    answer(status, &error.body(), content_type.starts_with(CBOR_TYPE))
}

pub(crate) fn answer(status: StatusCode, document: &Value, cbor: bool) -> Response {
    if !cbor {
        return json_answer(status, document);
    }
    let bytes = cbor::encode_response(document);
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(CBOR_TYPE))], bytes).into_response()
}

/// A JSON answer from anything serializable: an operation may answer without building a tree.
pub(crate) fn json_answer(status: StatusCode, document: &impl serde::Serialize) -> Response {
    let bytes = serde_json::to_vec(document).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(JSON_TYPE))], bytes).into_response()
}

pub(crate) enum EnvelopeError {
    Xml(StatusCode, &'static str, &'static str),
    Api(ApiError),
}

impl From<ApiError> for EnvelopeError {
    fn from(error: ApiError) -> Self {
        EnvelopeError::Api(error)
    }
}

/// The pre-dispatch checks of KDS, in kinesalite's (and AWS's) order, which every awsJson1_1
/// service here shares (Firehose too): the operation named by `X-Amz-Target` after `prefix`, as
/// `dispatch` knows it.
pub(crate) fn envelope<D>(
    method: &Method,
    headers: &HeaderMap,
    content_type: &str,
    body: &[u8],
    prefix: &str,
    dispatch: impl Fn(&str) -> Option<D>,
) -> Result<(String, D, Document), EnvelopeError> {
    if method != Method::POST {
        return Err(EnvelopeError::Xml(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "Unable to determine service/operation name to be authorized",
        ));
    }
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let op = target.strip_prefix(prefix).and_then(dispatch);
    let json = is_json(content_type);
    if !json && !content_type.starts_with(CBOR_TYPE) {
        return Err(EnvelopeError::Xml(StatusCode::NOT_FOUND, "UnknownOperationException", ""));
    }
    if body.is_empty() {
        return Err(match op {
            Some(_) => ApiError::bare(ErrorType::Serialization),
            None => ApiError::bare(ErrorType::UnknownOperation),
        }
        .into());
    }
    let document = if json {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::serialization(format!("Unexpected token in request body: {e}")))?
    } else {
        cbor::decode_request(body)?
    };
    let op = op.ok_or_else(|| ApiError::bare(ErrorType::UnknownOperation))?;
    authorization_present(headers)?;
    let name = target.strip_prefix(prefix).unwrap_or_default().to_string();
    Ok((name, op, Document::parse(document)?))
}

/// Whether a request's content type is one of the JSON ones awsJson1_1 clients send.
fn is_json(content_type: &str) -> bool {
    content_type.starts_with(JSON_TYPE) || content_type.starts_with("application/json")
}

/// The envelope's last check: an Authorization header naming a credential. (Its signature is
/// the auth middleware's business.)
fn authorization_present(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        None => Err(ApiError::new(ErrorType::MissingAuthenticationToken, "Missing Authentication Token")),
        Some(auth) if !auth.contains("Credential=") => Err(ApiError::new(
            ErrorType::IncompleteSignature,
            format!(
                "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization={auth}"
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Whether `envelope` takes a JSON request for the operation `target` names whatever its body
/// holds, as long as that parses: an operation may then read the body its own typed way, and
/// leave anything it does not take to `envelope`, which answers as it always does.
pub(crate) fn plain_json_call(method: &Method, headers: &HeaderMap, content_type: &str, target: &str) -> bool {
    method == Method::POST
        && is_json(content_type)
        && headers.get("x-amz-target").and_then(|v| v.to_str().ok()) == Some(target)
        && authorization_present(headers).is_ok()
}

pub fn xml_error(status: StatusCode, name: &str, message: &str) -> Response {
    let body = format!("<{name}>\n  <Message>{message}</Message>\n</{name}>\n");
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}
