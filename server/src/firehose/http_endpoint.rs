//! Delivery to an HTTP endpoint, as AWS's request and response specification has it
//! (<https://docs.aws.amazon.com/firehose/latest/dev/httpdeliveryrequestresponse.html>): a POST
//! of `{requestId, timestamp, records: [{data}]}` (optionally gzipped) with the
//! `X-Amz-Firehose-*` headers; only a 200 whose JSON names the same `requestId` is a success;
//! 413 is final; anything else is retried, with waits doubling from 1 s to 120 s, until
//! `RetryOptions.DurationInSeconds` have passed since the first failure; then the records go to
//! the S3 backup under the error prefix, one AWS error record per line.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderValue;
use base64::Engine as _;
use framelog_store::Entry;
use framelog_wire::Backoff;
use serde_json::{Value, json};

use super::compression::Compression;
use crate::consumers::DestinationPolicy;
use crate::consumers::outbound::{BodyKind, CallError, post};
use crate::consumers::webhook_url::WebhookUrl;

/// Waits between attempts: 1 s doubling to two minutes, within RetryOptions' window.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(120));

/// What delivery to an endpoint needs from its configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpPlan {
    pub url: String,
    pub access_key: Option<String>,
    pub gzip: bool,
    /// `X-Amz-Firehose-Common-Attributes`, already as its JSON text.
    pub common_attributes: Option<String>,
    pub retry_for: Duration,
    /// S3BackupMode `AllData`: every record also goes to the backup bucket.
    pub backup_all: bool,
}

impl HttpPlan {
    pub fn from_destination(destination: &Value) -> Result<HttpPlan, String> {
        let endpoint = destination.get("EndpointConfiguration");
        let url = endpoint.and_then(|e| e.get("Url")).and_then(Value::as_str).unwrap_or_default().to_string();
        let access_key = endpoint.and_then(|e| e.get("AccessKey")).and_then(Value::as_str).map(str::to_string);
        let request = destination.get("RequestConfiguration");
        let gzip = request.and_then(|r| r.get("ContentEncoding")).and_then(Value::as_str) == Some("GZIP");
        let attributes: serde_json::Map<String, Value> = request
            .and_then(|r| r.get("CommonAttributes"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| Some((a.get("AttributeName")?.as_str()?.to_string(), a.get("AttributeValue")?.clone())))
            .collect();
        let common_attributes = (!attributes.is_empty()).then(|| json!({"commonAttributes": attributes}).to_string());
        let retry_secs = destination.pointer("/RetryOptions/DurationInSeconds").and_then(Value::as_u64).unwrap_or(300);
        let backup_all = destination.get("S3BackupMode").and_then(Value::as_str) == Some("AllData");
        Ok(HttpPlan {
            url,
            access_key,
            gzip,
            common_attributes,
            retry_for: Duration::from_secs(retry_secs),
            backup_all,
        })
    }
}

/// How a batch's delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        attempts: u32,
    },
    /// Retries ran out: the records belong in the backup bucket's error prefix.
    Failed {
        attempts: u32,
        error_code: &'static str,
        message: String,
    },
    /// The endpoint answered 413: AWS neither retries nor backs these up.
    TooLarge,
}

/// The request's JSON body and headers; the same `request_id` on every attempt.
fn request(
    plan: &HttpPlan,
    source_arn: &str,
    request_id: &str,
    now_ms: u64,
    buffer: &[Entry],
) -> std::io::Result<(Bytes, Vec<(&'static str, HeaderValue)>)> {
    let records: Vec<Value> =
        buffer.iter().map(|e| json!({"data": base64::engine::general_purpose::STANDARD.encode(&e.payload)})).collect();
    let body = serde_json::to_vec(&json!({"requestId": request_id, "timestamp": now_ms, "records": records}))?;
    let body = if plan.gzip { Compression::Gzip.compress(&body, "")? } else { body };
    let value = |text: &str| HeaderValue::from_str(text).map_err(std::io::Error::other);
    let mut headers = vec![
        ("x-amz-firehose-protocol-version", HeaderValue::from_static("1.0")),
        ("x-amz-firehose-request-id", value(request_id)?),
        ("x-amz-firehose-source-arn", value(source_arn)?),
    ];
    if let Some(key) = &plan.access_key {
        let mut key = value(key)?;
        key.set_sensitive(true);
        headers.push(("x-amz-firehose-access-key", key));
    }
    if let Some(attributes) = &plan.common_attributes {
        headers.push(("x-amz-firehose-common-attributes", value(attributes)?));
    }
    if plan.gzip {
        headers.push(("content-encoding", HeaderValue::from_static("gzip")));
    }
    Ok((Bytes::from(body), headers))
}

/// One attempt: `Ok` for a 200 that names our request, else the error code and message AWS would
/// log, and whether it is final (413).
async fn attempt(
    policy: &DestinationPolicy,
    url: &WebhookUrl,
    request_id: &str,
    body: Bytes,
    headers: &[(&'static str, HeaderValue)],
) -> Result<(), (&'static str, String, bool)> {
    match post(policy, url, BodyKind::Json, headers, body).await {
        Ok((status, answer)) if status.as_u16() == 200 => {
            let answer: Option<Value> = answer.as_deref().and_then(|bytes| serde_json::from_slice(bytes).ok());
            match answer.as_ref().and_then(|a| a.get("requestId")).and_then(Value::as_str) {
                Some(id) if id == request_id => Ok(()),
                _ => Err((
                    "HttpEndpoint.InvalidResponseFromDestination",
                    "The response did not name the request's requestId.".into(),
                    false,
                )),
            }
        }
        Ok((status, answer)) => {
            let text = answer.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            let message = format!(
                "The following response was received from the endpoint destination. {}: {text}",
                status.as_u16()
            );
            Err(("HttpEndpoint.DestinationException", message, status.as_u16() == 413))
        }
        Err(CallError::Refused(reason) | CallError::Failed(reason)) => {
            Err(("HttpEndpoint.ConnectionFailed", reason, false))
        }
    }
}

/// Posts the buffer until it is delivered, refused for good, or its retry time has run out.
pub async fn deliver(
    policy: &DestinationPolicy,
    plan: &HttpPlan,
    source_arn: &str,
    request_id: &str,
    now_ms: u64,
    buffer: &[Entry],
) -> Outcome {
    let (body, headers) = match request(plan, source_arn, request_id, now_ms, buffer) {
        Ok(request) => request,
        Err(error) => {
            return Outcome::Failed {
                attempts: 0,
                error_code: "HttpEndpoint.RequestError",
                message: error.to_string(),
            };
        }
    };
    let url = WebhookUrl::new(plan.url.clone());
    let mut first_failure: Option<Instant> = None;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt(policy, &url, request_id, body.clone(), &headers).await {
            Ok(()) => return Outcome::Delivered { attempts },
            Err((_, _, true)) => return Outcome::TooLarge,
            Err((error_code, message, false)) => {
                let since = *first_failure.get_or_insert_with(Instant::now);
                if since.elapsed() >= plan.retry_for {
                    return Outcome::Failed { attempts, error_code, message };
                }
                tracing::warn!(error_code, %message, attempts, "delivery to an HTTP endpoint failed; retrying");
                let left = plan.retry_for.saturating_sub(since.elapsed()).max(Duration::from_millis(1));
                tokio::time::sleep(RETRY.step(attempts - 1).min(left)).await;
            }
        }
    }
}

/// The records of a failed batch as AWS writes them under `http-endpoint-failed`: one JSON
/// document per line.
pub fn error_records(buffer: &[Entry], attempts: u32, error_code: &str, message: &str, ended_ms: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in buffer {
        let record = json!({
            "attemptsMade": attempts,
            "arrivalTimestamp": entry.arrival_ms,
            "errorCode": error_code,
            "errorMessage": message,
            "attemptEndingTimestamp": ended_ms,
            "rawData": base64::engine::general_purpose::STANDARD.encode(&entry.payload),
            "subsequenceNumber": 0,
            "dataId": format!("{}.0", entry.seq),
        });
        out.extend_from_slice(record.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;

    use super::*;

    type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

    /// An endpoint that answers with the statuses of `script` in turn (the last one after that),
    /// echoing the request id in a 200's body as AWS's endpoints do; it records every request.
    async fn endpoint(script: Vec<u16>) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let calls = Arc::new(Mutex::new(0usize));
        let record = seen.clone();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let (record, calls, script) = (record.clone(), calls.clone(), script.clone());
                async move {
                    let raw = if headers.get("content-encoding").is_some() {
                        let mut out = Vec::new();
                        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)
                            .expect("gzip");
                        out
                    } else {
                        body.to_vec()
                    };
                    let document: Value = serde_json::from_slice(&raw).expect("json");
                    let id = document["requestId"].clone();
                    record.lock().expect("lock").push((headers, document));
                    let mut n = calls.lock().expect("lock");
                    let status = script.get(*n).or(script.last()).copied().unwrap_or(200);
                    *n += 1;
                    let answer = json!({"requestId": id, "timestamp": 1, "errorMessage": "not now"}).to_string();
                    (StatusCode::from_u16(status).expect("status"), answer)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn plan(url: String, gzip: bool, retry_secs: u64) -> HttpPlan {
        HttpPlan {
            url,
            access_key: Some("secret-key".into()),
            gzip,
            common_attributes: Some(json!({"commonAttributes": {"env": "test"}}).to_string()),
            retry_for: Duration::from_secs(retry_secs),
            backup_all: false,
        }
    }

    fn entries() -> Vec<Entry> {
        (0..3u64)
            .map(|seq| Entry {
                seq,
                arrival_ms: 1_000 + seq,
                producer_ts_ms: None,
                attrs: Vec::new(),
                payload: format!("r{seq}").into_bytes(),
            })
            .collect()
    }

    fn policy() -> DestinationPolicy {
        DestinationPolicy { allow_private: true, ..Default::default() }
    }

    #[tokio::test]
    async fn requests_follow_awss_spec_and_retries_keep_the_request_id() {
        let (url, seen) = endpoint(vec![500, 200]).await;
        let outcome = deliver(
            &policy(),
            &plan(url, true, 60),
            "arn:aws:firehose:us-east-1:0:deliverystream/d",
            "req-1",
            5,
            &entries(),
        )
        .await;
        assert_eq!(outcome, Outcome::Delivered { attempts: 2 });
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2);
        for (headers, body) in seen.iter() {
            assert_eq!(headers["x-amz-firehose-request-id"], "req-1");
            assert_eq!(headers["x-amz-firehose-protocol-version"], "1.0");
            assert_eq!(headers["x-amz-firehose-access-key"], "secret-key");
            assert_eq!(headers["x-amz-firehose-source-arn"], "arn:aws:firehose:us-east-1:0:deliverystream/d");
            assert_eq!(headers["x-amz-firehose-common-attributes"], r#"{"commonAttributes":{"env":"test"}}"#);
            assert_eq!(headers["content-type"], "application/json");
            assert_eq!(body["requestId"], "req-1");
            assert_eq!(body["records"], json!([{"data": "cjA="}, {"data": "cjE="}, {"data": "cjI="}]));
        }
    }

    #[tokio::test]
    async fn a_413_is_final_and_failures_end_when_the_retry_time_is_spent() {
        let (url, seen) = endpoint(vec![413]).await;
        assert_eq!(deliver(&policy(), &plan(url, false, 60), "arn", "req", 5, &entries()).await, Outcome::TooLarge);
        assert_eq!(seen.lock().expect("lock").len(), 1, "not retried");

        let (url, _) = endpoint(vec![503]).await;
        let outcome = deliver(&policy(), &plan(url, false, 0), "arn", "req", 5, &entries()).await;
        let Outcome::Failed { attempts, error_code, message } = outcome else { panic!("{outcome:?}") };
        assert_eq!((attempts, error_code), (1, "HttpEndpoint.DestinationException"));
        assert!(message.contains("503") && message.contains("not now"), "{message}");
        let lines = error_records(&entries(), attempts, error_code, &message, 9);
        let first: Value = serde_json::from_slice(lines.split(|b| *b == b'\n').next().expect("a line")).expect("json");
        assert_eq!(first["rawData"], "cjA=");
        assert_eq!(first["errorCode"], "HttpEndpoint.DestinationException");
        assert_eq!(first["arrivalTimestamp"], 1_000);
        assert_eq!(lines.iter().filter(|b| **b == b'\n').count(), 3);
    }

    #[tokio::test]
    async fn an_answer_without_our_request_id_is_not_a_success() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let app = Router::new().route("/hook", post(|| async { r#"{"requestId":"someone-else","timestamp":1}"# }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let outcome = deliver(&policy(), &plan(url, false, 0), "arn", "req", 5, &entries()).await;
        assert!(
            matches!(outcome, Outcome::Failed { error_code: "HttpEndpoint.InvalidResponseFromDestination", .. }),
            "{outcome:?}"
        );
    }
}
