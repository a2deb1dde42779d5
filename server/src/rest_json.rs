//! The rest-json control plane: `POST /<operation>` with a JSON body, as Kinesis Video Streams
//! speaks it. The operation table is composed where the router is built (the KVS operations, then
//! the consumer operations), so the modules that provide operations never name each other.
//! Errors are `{"Message": ...}` with the type in the `x-amzn-ErrorType` header.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::background::Background;
use crate::document::Document;
use crate::error::{ApiError, Protocol};

/// One operation over its module's context.
pub type Operation<C> = fn(&C, Document) -> Result<Value, ApiError>;

type Bound = Arc<dyn Fn(Document) -> Result<Value, ApiError> + Send + Sync>;

/// Every rest-json operation the server answers, each bound to its context.
#[derive(Clone, Default)]
pub struct Operations {
    table: BTreeMap<&'static str, Bound>,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.table.keys()).finish()
    }
}

impl Operations {
    /// Adds `operations`, each called with its own clone of `ctx`.
    pub fn with<C: Clone + Send + Sync + 'static>(
        mut self,
        ctx: &C,
        operations: &[(&'static str, Operation<C>)],
    ) -> Self {
        for &(name, operation) in operations {
            let ctx = ctx.clone();
            self.table.insert(name, Arc::new(move |document| operation(&ctx, document)));
        }
        self
    }
}

/// Handles `POST /<op>`.
pub async fn handle(
    State(operations): State<Arc<Operations>>,
    State(background): State<Background>,
    Path(op): Path<String>,
    body: Bytes,
) -> Response {
    let Some(run) = operations.table.get(op.as_str()).cloned() else {
        // What KVS answers for a path it does not know (including wrong capitalisation).
        let body = serde_json::json!({"Output": {"__type": "com.amazon.coral.service#UnknownOperationException"}, "Version": "1.0"});
        return json_response(StatusCode::NOT_FOUND, &body);
    };
    let result = match parse_document(&body) {
        // Operations block on the engine (RocksDB, group commit), so they run off the async workers.
        Ok(document) => {
            background.spawn_blocking(move || run(document)).await.unwrap_or_else(|join| Err(ApiError::internal(&join)))
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(error) => error_response(&error),
    }
}

/// A request's JSON document; an empty body is an empty document.
pub fn parse_document(body: &[u8]) -> Result<Document, ApiError> {
    if body.is_empty() {
        return Document::parse(Value::Object(Default::default()));
    }
    let value = serde_json::from_slice::<Value>(body)
        .map_err(|e| ApiError::serialization(format!("Malformed JSON body: {e}")))?;
    Document::parse(value)
}

/// An error as KVS answers it: the status, `{"Message"}`, and the type in a header.
pub fn error_response(error: &ApiError) -> Response {
    let status = StatusCode::from_u16(error.kind.status(Protocol::Kvs)).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json_response(status, &error.kvs_body());
    let kind = error.kind.name();
    if let Ok(value) =
        HeaderValue::from_str(&format!("{kind}:http://internal.amazon.com/coral/com.amazon.kinesisvideo.v20170930/"))
    {
        // Both spellings: the docs name x-amz-ErrorType, the SDKs read x-amzn-ErrorType.
        response.headers_mut().insert("x-amzn-ErrorType", value.clone());
        response.headers_mut().insert("x-amz-ErrorType", value);
    }
    response
}

pub fn json_response(status: StatusCode, value: &Value) -> Response {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
}
