//! Firehose's CloudWatch metrics under Prometheus names, per delivery stream
//! (<https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-metrics.html>):
//! `IncomingRecords`, `IncomingBytes` and `ThrottledRecords` (counted by this process since it
//! started, as counters may reset), and from the delivery checkpoint `DeliveryToS3.Success`
//! (objects written), `.Records`, `.Bytes`, failed attempts, `.DataFreshness` (the age of the
//! oldest record not delivered yet), and `PartitionCount`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::context::FirehoseCtx;
use super::runner::Checkpoint;
use super::spec::DestinationKind;

/// What was put into one delivery stream since this process started.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    records: u64,
    bytes: u64,
    /// Records refused by the Direct PUT quotas.
    throttled: u64,
}

/// Each delivery stream's counts since this process started.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    counts: Arc<Mutex<BTreeMap<String, Counts>>>,
}

impl Incoming {
    pub fn add(&self, stream: &str, records: u64, bytes: u64) {
        self.change(stream, |counts| {
            counts.records += records;
            counts.bytes += bytes;
        });
    }

    pub fn throttled(&self, stream: &str, records: u64) {
        self.change(stream, |counts| counts.throttled += records);
    }

    fn change(&self, stream: &str, change: impl FnOnce(&mut Counts)) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        change(counts.entry(stream.to_string()).or_default());
    }

    fn of(&self, stream: &str) -> Counts {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).get(stream).copied().unwrap_or_default()
    }
}

type Labels = Vec<(&'static str, String)>;

/// Every delivery stream's metrics into `registry`, under `framelog_firehose`; delivery metrics
/// are named for the destination's kind, as CloudWatch's are (`delivery_to_s3_*`,
/// `delivery_to_http_endpoint_*`).
pub fn register(ctx: &FirehoseCtx, registry: &mut Registry) {
    let mut counters: BTreeMap<String, (&'static str, Family<Labels, Counter>)> = BTreeMap::new();
    let mut gauges: BTreeMap<String, (&'static str, Family<Labels, Gauge>)> = BTreeMap::new();
    let mut count = |name: String, help: &'static str, labels: &Labels, value: u64| {
        counters.entry(name).or_insert_with(|| (help, Family::default())).1.get_or_create(labels).inc_by(value);
    };
    let now_ms = ctx.engine.now_ms();
    for (name, handle, spec) in ctx.delivery_streams() {
        let labels: Labels = vec![("delivery_stream", name.clone())];
        let incoming = ctx.incoming.of(&name);
        count("incoming_records".into(), "IncomingRecords: records put", &labels, incoming.records);
        count("incoming_bytes".into(), "IncomingBytes: bytes put", &labels, incoming.bytes);
        let help = "ThrottledRecords: records refused by the Direct PUT quotas";
        count("throttled_records".into(), help, &labels, incoming.throttled);
        let to = match spec.destination_kind {
            DestinationKind::ExtendedS3 => "delivery_to_s3",
            DestinationKind::HttpEndpoint => "delivery_to_http_endpoint",
        };
        let checkpoint = Checkpoint::of(&handle.meta().settings);
        count(format!("{to}_success"), "DeliveryTo*.Success: batches delivered", &labels, checkpoint.delivered_objects);
        count(format!("{to}_records"), "DeliveryTo*.Records: records delivered", &labels, checkpoint.delivered_records);
        count(format!("{to}_bytes"), "DeliveryTo*.Bytes: bytes delivered", &labels, checkpoint.delivered_bytes);
        count(
            format!("{to}_failed_attempts"),
            "delivery attempts that failed and were retried",
            &labels,
            checkpoint.failed_attempts,
        );
        // A DirectPut stream's one shard; a Kinesis source is read in place and has no backlog here.
        let next = checkpoint.next_seq.get(&0).copied().unwrap_or(0);
        let oldest_ms = ctx.engine.header(&handle, 0, next).ok().flatten().map(|h| h.arrival_ms);
        let age_secs = oldest_ms.map_or(0, |ms| now_ms.saturating_sub(ms) / 1000);
        let help = "DeliveryTo*.DataFreshness: age of the oldest record not delivered yet";
        let gauge = gauges.entry(format!("{to}_data_freshness_seconds")).or_insert_with(|| (help, Family::default()));
        gauge.1.get_or_create(&labels).set(i64::try_from(age_secs).unwrap_or(i64::MAX));
        let help = "PartitionCount: partitions (objects) of the newest delivered buffer";
        let partitions = gauges.entry("partition_count".into()).or_insert_with(|| (help, Family::default()));
        partitions.1.get_or_create(&labels).set(i64::try_from(checkpoint.partition_count).unwrap_or(i64::MAX));
    }
    let registry = registry.sub_registry_with_prefix("framelog_firehose");
    for (name, (help, family)) in counters {
        registry.register(name, help, family);
    }
    for (name, (help, family)) in gauges {
        registry.register(name, help, family);
    }
}
