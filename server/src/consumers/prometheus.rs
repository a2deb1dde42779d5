//! `GET /metrics`: every consumer's metrics (the `Metrics` of describeConsumer, hidden
//! notification/image-generation consumers included) in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use framelog_store::StreamKind;
use serde_json::Value;

use super::ConsumersCtx;
use super::{api, record_api, state};

/// `LagMs` → `lag_ms`, `DeliveredFrames` → `delivered_frames`.
fn snake_case(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A label value with Prometheus' three escapes.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// (stream, consumer, kind, describeConsumer's Metrics) for every consumer of every stream.
fn all_metrics(ctx: &ConsumersCtx) -> Vec<(String, String, &'static str, Value)> {
    let mut out = Vec::new();
    for handle in ctx.video.engine.streams() {
        let meta = handle.meta();
        let described: Vec<Value> = match meta.kind {
            StreamKind::Video => state::specs(&meta.settings)
                .iter()
                .map(|spec| api::describe(ctx, &handle, spec, &state::checkpoint(&meta.settings, &spec.name)))
                .collect(),
            StreamKind::Data => record_api::list(ctx, &handle),
        };
        let (stream, kind) = match meta.kind {
            StreamKind::Video => (crate::kvs::public_stream_name(&handle), "video"),
            StreamKind::Data => (meta.name.clone(), "data"),
        };
        for consumer in described {
            let name = consumer["ConsumerName"].as_str().unwrap_or_default().to_string();
            out.push((stream.clone(), name, kind, consumer["Metrics"].clone()));
        }
    }
    out
}

/// `GET /metrics` (the engine reads block, so off the runtime).
pub async fn handle(State(ctx): State<ConsumersCtx>) -> Response {
    match tokio::task::spawn_blocking(move || render(&ctx)).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The exposition text. Lags are gauges; everything else counts up from the consumer's creation.
pub fn render(ctx: &ConsumersCtx) -> String {
    // Family name → its samples, so each family is written once with its TYPE line.
    let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (stream, consumer, kind, metrics) in all_metrics(ctx) {
        let Value::Object(metrics) = metrics else { continue };
        let labels = format!("stream=\"{}\",consumer=\"{}\",kind=\"{kind}\"", label(&stream), label(&consumer));
        for (key, value) in metrics {
            let Some(number) = value.as_u64() else { continue };
            let base = format!("framelog_consumer_{}", snake_case(&key));
            let family = if key.starts_with("Lag") { base } else { format!("{base}_total") };
            families.entry(family).or_default().push(format!("{{{labels}}} {number}"));
        }
    }
    let mut text = String::new();
    for (family, samples) in families {
        let kind = if family.ends_with("_total") { "counter" } else { "gauge" };
        let _ = writeln!(text, "# TYPE {family} {kind}");
        for sample in samples {
            let _ = writeln!(text, "{family}{sample}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_follow_the_exposition_format() {
        assert_eq!(snake_case("LagMs"), "lag_ms");
        assert_eq!(snake_case("DeadLetteredBatches"), "dead_lettered_batches");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
