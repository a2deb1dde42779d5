//! `GET /metrics`: the server's metrics in the OpenMetrics text format that Prometheus scrapes,
//! written by `prometheus-client`: CloudWatch's metrics of data and video streams
//! (`framelog_kinesis_*`, `framelog_kinesisvideo_*`, cloudwatch/exported.rs), every consumer's
//! (`framelog_consumer_*`) and every delivery stream's (`framelog_firehose_*`), and where memory
//! goes (memory_metrics.rs), and how the engine and the process keep up (engine_metrics.rs).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

use crate::cloudwatch::Recorder;
use crate::consumers::{self, ConsumersCtx};
use crate::firehose::{self, FirehoseCtx};

const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The engine reads block, so the exposition is built off the runtime.
pub async fn handle(
    State(consumers): State<ConsumersCtx>,
    State(firehose): State<FirehoseCtx>,
    State(recorder): State<Recorder>,
) -> Response {
    match tokio::task::spawn_blocking(move || render(&consumers, &firehose, &recorder)).await {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

pub fn render(consumers: &ConsumersCtx, firehose: &FirehoseCtx, recorder: &Recorder) -> String {
    let mut registry = Registry::default();
    recorder.register(&mut registry);
    consumers::prometheus::register(consumers, &mut registry);
    firehose::metrics::register(firehose, &mut registry);
    crate::memory_metrics::register(&firehose.engine, &mut registry);
    crate::memory_metrics::register_allocator(&mut registry);
    crate::engine_metrics::register(&firehose.engine, &consumers.images, &mut registry);
    let mut text = String::new();
    if let Err(error) = encode(&mut text, &registry) {
        tracing::error!(%error, "the metrics could not be encoded");
    }
    text
}
