//! Every consumer's metrics for `GET /metrics` (crate::metrics): the `Metrics` of
//! describeConsumer, hidden notification/image-generation consumers included.

use std::collections::BTreeMap;

use framelog_store::StreamKind;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use super::{ConsumersCtx, api, record_api, state};
use crate::kvs::VideoStream;

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
            StreamKind::Delivery | StreamKind::Metrics | StreamKind::Application => continue,
        };
        let (stream, kind) = match meta.kind {
            StreamKind::Video => (VideoStream::new(handle.clone()).public_name(), "video"),
            StreamKind::Data | StreamKind::Delivery | StreamKind::Metrics | StreamKind::Application => {
                (meta.name.clone(), "data")
            }
        };
        for consumer in described {
            let name = consumer["ConsumerName"].as_str().unwrap_or_default().to_string();
            out.push((stream.clone(), name, kind, consumer["Metrics"].clone()));
        }
    }
    out
}

/// Labels of every consumer sample.
type Labels = Vec<(&'static str, String)>;

/// Every consumer's metrics into `registry` (under the `framelog_consumer` prefix). Lags are
/// gauges; everything else counts up from the consumer's creation, so it is a counter
/// (`<name>_total` on the wire).
pub fn register(ctx: &ConsumersCtx, registry: &mut Registry) {
    let mut gauges: BTreeMap<String, Family<Labels, Gauge>> = BTreeMap::new();
    let mut counters: BTreeMap<String, Family<Labels, Counter>> = BTreeMap::new();
    for (stream, consumer, kind, metrics) in all_metrics(ctx) {
        let Value::Object(metrics) = metrics else { continue };
        let labels: Labels = vec![("stream", stream), ("consumer", consumer), ("kind", kind.to_string())];
        for (key, value) in metrics {
            let Some(number) = value.as_u64() else { continue };
            if key.starts_with("Lag") {
                let gauge = gauges.entry(key).or_default();
                gauge.get_or_create(&labels).set(i64::try_from(number).unwrap_or(i64::MAX));
            } else {
                counters.entry(key).or_default().get_or_create(&labels).inc_by(number);
            }
        }
    }
    let registry = registry.sub_registry_with_prefix("framelog_consumer");
    for (key, family) in gauges {
        registry.register(snake_case(&key), format!("describeConsumer's Metrics.{key}"), family);
    }
    for (key, family) in counters {
        registry.register(snake_case(&key), format!("describeConsumer's Metrics.{key}"), family);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_snake_case() {
        assert_eq!(snake_case("LagMs"), "lag_ms");
        assert_eq!(snake_case("DeadLetteredBatches"), "dead_lettered_batches");
    }
}
