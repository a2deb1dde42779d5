//! Posting a batch to a consumer's webhook: a 2xx commits it; anything else (a status, a refused
//! connection, no answer in 30 s) is retried with exponential backoff and jitter until the
//! consumer's attempts are used up.

use std::time::Duration;

use axum::body::Bytes;
use framelog_wire::Backoff;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type WebhookClient = Client<HttpConnector, Full<Bytes>>;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

pub fn client() -> WebhookClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// What became of a batch.
#[derive(Debug)]
pub enum Delivery {
    /// The webhook answered 2xx with this body, after `retries` failed calls.
    Delivered { body: Bytes, retries: u32 },
    /// Every attempt failed; the last error.
    Failed { attempts: u32, error: String },
}

/// What a call's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// A consumer's JSON batch.
    Json,
    /// An SNS HTTP notification: SNS posts these as text/plain with a message-type header that
    /// subscribers dispatch on.
    SnsNotification,
}

async fn call(client: &WebhookClient, url: &str, kind: BodyKind, body: Bytes) -> Result<Bytes, String> {
    let content_type = match kind {
        BodyKind::Json => "application/json",
        BodyKind::SnsNotification => "text/plain; charset=UTF-8",
    };
    let mut request = hyper::Request::post(url)
        .header("content-type", content_type)
        .header("user-agent", "framelog-consumer")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    if kind == BodyKind::SnsNotification {
        request.headers_mut().insert("x-amz-sns-message-type", hyper::header::HeaderValue::from_static("Notification"));
    }
    let response = tokio::time::timeout(CALL_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "no answer in 30 s".to_string())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = tokio::time::timeout(CALL_TIMEOUT, response.into_body().collect())
        .await
        .map_err(|_| "the answer did not finish in 30 s".to_string())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status.is_success() { Ok(body) } else { Err(format!("HTTP {status}")) }
}

/// Posts `body` until a 2xx or `max_attempts` calls.
pub async fn deliver(client: &WebhookClient, url: &str, kind: BodyKind, body: Bytes, max_attempts: u32) -> Delivery {
    let mut error = String::new();
    for attempt in 0..max_attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(RETRY_BACKOFF.delay(attempt - 1)).await;
        }
        match call(client, url, kind, body.clone()).await {
            Ok(answer) => return Delivery::Delivered { body: answer, retries: attempt },
            Err(e) => error = e,
        }
    }
    Delivery::Failed { attempts: max_attempts.max(1), error }
}
