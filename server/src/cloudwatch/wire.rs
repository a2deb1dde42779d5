//! CloudWatch's two wire protocols for the same operations
//! (<https://smithy.io/2.0/additional-specs/protocols/smithy-rpc-v2.html>): Smithy RPC v2 CBOR,
//! which current AWS CLIs and SDKs use (`POST /service/GraniteServiceVersion20100801/operation/{Op}`),
//! and awsJson1_0 (`POST /` with `X-Amz-Target: GraniteServiceVersion20100801.{Op}`). Both carry
//! the same documents; timestamps are epoch seconds, tagged 1 in CBOR. Errors carry the
//! query-compatible code in `x-amzn-query-error`, which is the code clients show, as CloudWatch
//! was a query service first.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json};

use crate::cbor_json::{self, EpochUnit, Rules};
use crate::error::{ApiError, Protocol};

pub const TARGET_PREFIX: &str = "GraniteServiceVersion20100801.";
pub const RPC_V2_PATH_PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";
const CBOR_TYPE: &str = "application/cbor";
const JSON_TYPE: &str = "application/x-amz-json-1.0";
static SMITHY_PROTOCOL: HeaderName = HeaderName::from_static("smithy-protocol");
static QUERY_ERROR: HeaderName = HeaderName::from_static("x-amzn-query-error");

/// Which of the two the request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Cbor,
    Json,
}

impl Wire {
    /// The protocol a request to `path` with `headers` speaks, if it is CloudWatch's.
    pub fn of(path: &str, headers: &HeaderMap) -> Option<Wire> {
        if path.starts_with(RPC_V2_PATH_PREFIX) {
            return Some(Wire::Cbor);
        }
        let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
        (path == "/" && target.starts_with(TARGET_PREFIX)).then_some(Wire::Json)
    }

    /// The operation the request names.
    pub fn operation<'a>(self, path: &'a str, headers: &'a HeaderMap) -> &'a str {
        match self {
            Wire::Cbor => path.strip_prefix(RPC_V2_PATH_PREFIX).unwrap_or_default(),
            Wire::Json => headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .and_then(|target| target.strip_prefix(TARGET_PREFIX))
                .unwrap_or_default(),
        }
    }

    /// The request's document; an empty body is an empty document.
    pub fn decode(self, body: &[u8]) -> Result<Json, ApiError> {
        if body.is_empty() {
            return Ok(Json::Object(Map::new()));
        }
        match self {
            Wire::Json => {
                serde_json::from_slice(body).map_err(|e| ApiError::serialization(format!("Malformed JSON: {e}")))
            }
            // Tag 1 is epoch seconds, which is what the JSON protocol sends as a plain number.
            Wire::Cbor => cbor_json::decode(body, EpochUnit::Seconds),
        }
    }

    pub fn answer(self, document: &Json) -> Response {
        self.respond(StatusCode::OK, document, None)
    }

    pub fn error(self, error: &ApiError) -> Response {
        let status = StatusCode::from_u16(error.kind.status(Protocol::CloudWatch)).unwrap_or(StatusCode::BAD_REQUEST);
        let (shape, code, fault) = error.kind.cloudwatch_codes();
        let mut body = Map::new();
        body.insert("__type".into(), format!("com.amazonaws.cloudwatch#{shape}").into());
        body.insert("message".into(), error.message.clone().unwrap_or_default().into());
        self.respond(status, &Json::Object(body), HeaderValue::from_str(&format!("{code};{fault}")).ok())
    }

    fn respond(self, status: StatusCode, document: &Json, query_error: Option<HeaderValue>) -> Response {
        let (content_type, bytes) = match self {
            Wire::Json => (JSON_TYPE, serde_json::to_vec(document).unwrap_or_default()),
            Wire::Cbor => (CBOR_TYPE, cbor_json::encode(document, &CLOUDWATCH)),
        };
        let mut response =
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], bytes).into_response();
        if self == Wire::Cbor {
            response.headers_mut().insert(SMITHY_PROTOCOL.clone(), HeaderValue::from_static("rpc-v2-cbor"));
        }
        if let Some(value) = query_error {
            response.headers_mut().insert(QUERY_ERROR.clone(), value);
        }
        response
    }
}

/// A refusal of a request that may be CloudWatch's, before it reached the operation (auth).
pub fn refusal(path: &str, headers: &HeaderMap, error: &ApiError) -> Response {
    Wire::of(path, headers).unwrap_or(Wire::Json).error(error)
}

/// Output members holding timestamps: a `Timestamp`, or the items of `Timestamps`; no blobs.
const CLOUDWATCH: Rules = Rules {
    unit: EpochUnit::Seconds,
    is_timestamp: |field| matches!(field, "Timestamp" | "Timestamps"),
    is_blob: |_| false,
};

#[cfg(test)]
mod tests {
    use ciborium::value::{Integer, Value as Cbor};

    use super::*;
    use crate::error::ErrorType;

    #[test]
    fn timestamps_go_out_as_tagged_epoch_seconds() {
        let document = serde_json::json!({"Datapoints": [{"Timestamp": 1_700_000_040.0, "Sum": 3.0}],
            "Timestamps": [1_700_000_040.0], "Count": 2});
        let bytes = cbor_json::encode(&document, &CLOUDWATCH);
        let value: Cbor = ciborium::from_reader(bytes.as_slice()).expect("decodes");
        let text = format!("{value:?}");
        assert!(text.contains("Tag(1, Float(1700000040.0))"), "{text}");
        assert!(text.contains("Integer(Integer(2))"), "counts stay integers: {text}");
    }

    #[test]
    fn requests_read_tagged_seconds_as_numbers() {
        let request = Cbor::Map(vec![(
            Cbor::Text("StartTime".into()),
            Cbor::Tag(1, Box::new(Cbor::Integer(Integer::from(1_700_000_000i64)))),
        )]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&request, &mut bytes).expect("encodes");
        let json = Wire::Cbor.decode(&bytes).expect("decodes");
        assert_eq!(json["StartTime"].as_f64(), Some(1_700_000_000.0));
    }

    #[test]
    fn errors_carry_the_query_code_clients_show() {
        let error = ApiError::new(ErrorType::InvalidParameterValue, "bad");
        let response = Wire::Cbor.error(&error);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["x-amzn-query-error"], "InvalidParameterValue;Sender");
        assert_eq!(response.headers()["smithy-protocol"], "rpc-v2-cbor");
    }
}
