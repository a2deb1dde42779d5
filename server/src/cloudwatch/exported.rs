//! The CloudWatch metrics as Prometheus sees them, under the names docs/operations.md maps:
//! `framelog_kinesis_` or `framelog_kinesisvideo_` and the CloudWatch name in snake case. An
//! amount is a counter (`_total`); a `.Success` is two counters, `_success_total` and
//! `_attempts_total`; a latency is a histogram in milliseconds (`_latency_milliseconds`); a
//! level is a gauge of its latest sample. Dimensions are labels: `stream`, `shard`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::catalogue::{Metric, Namespace, Shape, snake_case};

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Bucket bounds of every latency histogram, in milliseconds.
const LATENCY_BUCKETS_MS: [f64; 14] =
    [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

#[derive(Debug, Clone)]
enum Exported {
    Total(Family<Labels, Counter>),
    Outcome { successes: Family<Labels, Counter>, attempts: Family<Labels, Counter> },
    Latency(HistogramFamily),
    Level(Family<Labels, Gauge>),
}

impl Exported {
    fn new(shape: Shape) -> Exported {
        match shape {
            Shape::Total => Exported::Total(Family::default()),
            Shape::Outcome => Exported::Outcome { successes: Family::default(), attempts: Family::default() },
            Shape::Latency => Exported::Latency(Family::new_with_constructor(latency_histogram)),
            Shape::Level => Exported::Level(Family::default()),
        }
    }

    fn observe(&self, labels: &Labels, value: f64) {
        // Amounts and levels are whole numbers; a fraction would only be rounding noise.
        let whole = value.max(0.0).round() as u64;
        match self {
            Exported::Total(family) => {
                family.get_or_create(labels).inc_by(whole);
            }
            Exported::Outcome { successes, attempts } => {
                successes.get_or_create(labels).inc_by(whole.min(1));
                attempts.get_or_create(labels).inc();
            }
            Exported::Latency(family) => family.get_or_create(labels).observe(value),
            Exported::Level(family) => {
                family.get_or_create(labels).set(i64::try_from(whole).unwrap_or(i64::MAX));
            }
        }
    }
}

/// Each metric's family, by namespace and CloudWatch name.
type ByMetric = BTreeMap<(Namespace, &'static str), (Metric, Exported)>;

/// Every metric observed since the process started.
#[derive(Debug, Default)]
pub struct Families {
    by_metric: Mutex<ByMetric>,
}

impl Families {
    pub fn observe(&self, metric: &Metric, dimensions: &[(&str, &str)], value: f64) {
        if metric.namespace.prometheus_prefix().is_none() {
            return;
        }
        let labels: Labels =
            dimensions.iter().filter_map(|(name, value)| Some((label(name)?, value.to_string()))).collect();
        let exported = {
            let mut by_metric = self.by_metric.lock().unwrap_or_else(|e| e.into_inner());
            let slot = by_metric
                .entry((metric.namespace, metric.name))
                .or_insert_with(|| (*metric, Exported::new(metric.shape)));
            slot.1.clone()
        };
        exported.observe(&labels, value);
    }

    /// Registers every family observed so far.
    pub fn register(&self, registry: &mut Registry) {
        let by_metric = self.by_metric.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for namespace in Namespace::ALL {
            let Some(prefix) = namespace.prometheus_prefix() else { continue };
            let registry = registry.sub_registry_with_prefix(prefix);
            for (metric, exported) in by_metric.values().filter(|(metric, _)| metric.namespace == namespace) {
                register_one(registry, metric, exported.clone());
            }
        }
    }
}

fn register_one(registry: &mut Registry, metric: &Metric, exported: Exported) {
    let help = format!("CloudWatch {} {}", metric.namespace.name(), metric.name);
    let (name, second) = family_names(metric);
    match exported {
        Exported::Total(family) => registry.register(name, help, family),
        Exported::Outcome { successes, attempts } => {
            registry.register(name, format!("{help}: successes"), successes);
            registry.register(second.unwrap_or_default(), format!("{help}: attempts"), attempts);
        }
        Exported::Latency(family) => registry.register(name, help, family),
        Exported::Level(family) => registry.register(name, help, family),
    }
}

/// The names a metric's families are registered under, before the prefix and the suffixes the
/// exposition adds (`_total`, `_bucket`): an outcome has two.
pub fn family_names(metric: &Metric) -> (String, Option<String>) {
    let name = snake_case(metric.name);
    match metric.shape {
        Shape::Total | Shape::Level => (name, None),
        Shape::Latency => (format!("{name}_milliseconds"), None),
        Shape::Outcome => {
            let operation = name.strip_suffix("_success").unwrap_or(&name).to_string();
            (format!("{operation}_success"), Some(format!("{operation}_attempts")))
        }
    }
}

/// The Prometheus label of a CloudWatch dimension.
fn label(dimension: &str) -> Option<&'static str> {
    match dimension {
        "StreamName" => Some("stream"),
        "ShardId" => Some("shard"),
        "ConsumerName" => Some("consumer"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudwatch::catalogue;

    /// Every Prometheus name of the catalogue, with the suffixes the exposition adds.
    fn exposed_names() -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        for metric in catalogue::all() {
            let Some(prefix) = metric.namespace.prometheus_prefix() else { continue };
            let (first, second) = family_names(&metric);
            for name in std::iter::once(first).chain(second) {
                let full = format!("{prefix}_{name}");
                let suffixes: &[&str] = match metric.shape {
                    Shape::Total | Shape::Outcome => &["_total"],
                    Shape::Latency => &["_bucket", "_sum", "_count"],
                    Shape::Level => &[""],
                };
                names.extend(suffixes.iter().map(|suffix| format!("{full}{suffix}")));
            }
        }
        names
    }

    #[test]
    fn the_dashboards_query_only_metrics_the_server_exports() {
        let exposed = exposed_names();
        let dashboards = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana");
        let mut queried = 0;
        for entry in std::fs::read_dir(dashboards).expect("docs/grafana") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("dashboard");
            let dashboard: serde_json::Value = serde_json::from_str(&text).expect("a JSON dashboard");
            let panels = dashboard["panels"].as_array().expect("panels");
            for expr in panels
                .iter()
                .flat_map(|p| p["targets"].as_array().into_iter().flatten())
                .filter_map(|t| t["expr"].as_str())
            {
                for name in expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("framelog_k"))
                {
                    assert!(exposed.contains(name), "{name} (in {expr}) is not exported");
                    queried += 1;
                }
            }
        }
        assert!(queried >= 10, "the dashboards query {queried} metrics");
    }
}
