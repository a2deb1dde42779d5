//! Every request runs inside one `request` span that carries its request id (the
//! `x-amzn-RequestId` it is answered with), the call (its `X-Amz-Target`, or method and path)
//! and, once authorization has named them, its IAM action and resource: every log line the
//! request's work writes, on async tasks or on the blocking threads (background.rs), carries
//! them. When the request is answered, one access-log line
//! (target `framelog::access`) says its status, its bytes in and out and how long it took;
//! `access_log = false` in the config turns those lines off.

use std::time::Instant;

use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::http::HeaderName;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// Whether the access-log lines are written (the spans are there either way), and where each
/// answered call's CloudWatch latency and outcome go.
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub enabled: bool,
    pub metrics: crate::cloudwatch::Recorder,
}

/// The IAM action and resource authorization named, carried on the answer for the metrics.
#[derive(Debug, Clone)]
pub struct Named {
    pub action: String,
    pub resource: String,
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
static TARGET: HeaderName = HeaderName::from_static("x-amz-target");

pub async fn record(State(log): State<AccessLog>, request: Request, next: Next) -> Response {
    let request_id = header(&request, &REQUEST_ID).unwrap_or_else(|| "-".into());
    let call = header(&request, &TARGET).unwrap_or_else(|| format!("{} {}", request.method(), request.uri().path()));
    let bytes_in = request.body().size_hint().exact();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        call = %call,
        action = tracing::field::Empty,
        resource = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    if let Some(named) = response.extensions().get::<Named>() {
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let succeeded = response.status().is_success();
        crate::cloudwatch::requests::record(&log.metrics, &named.action, &named.resource, succeeded, latency_ms);
    }
    if log.enabled {
        // A streamed answer's size is not known when its head goes out.
        let bytes_out = response.body().size_hint().exact();
        span.in_scope(|| {
            tracing::info!(
                target: "framelog::access",
                status = response.status().as_u16(),
                bytes_in,
                bytes_out,
                duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                "answered"
            )
        });
    }
    response
}

fn header(request: &Request, name: &HeaderName) -> Option<String> {
    request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Names the request's IAM action and resource on its span, once authorization has resolved
/// them (public routes have neither).
pub fn name_request(action: &str, resource: &str) {
    let span = tracing::Span::current();
    span.record("action", action);
    span.record("resource", resource);
}

/// Spawns work a request hands off (a streamed answer, PutMedia's ingest and ack writer) inside
/// the request's span, so its log lines carry the request's id as the handler's do.
pub fn spawn_in_request<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(task.instrument(tracing::Span::current()))
}
