//! The process and the engine under Prometheus: compaction debt and write stalls
//! (`framelog_engine_*`), each stream's bytes on disk (`framelog_stream_disk_bytes{stream,kind}`),
//! open HTTP connections and the decode pool's queue.

use framelog_imaging::DecodePool;
use framelog_store::{Engine, StreamKind};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub fn register(engine: &Engine, images: &DecodePool, registry: &mut Registry) {
    if let Some(health) = engine.health() {
        let gauges: [(&str, &str, u64); 5] = [
            (
                "framelog_engine_pending_compaction_bytes",
                "Bytes compaction still has to rewrite",
                health.pending_compaction_bytes,
            ),
            (
                "framelog_engine_writes_stopped",
                "1 while RocksDB stops writes (a stall)",
                u64::from(health.writes_stopped),
            ),
            (
                "framelog_engine_delayed_write_rate_bytes",
                "The rate RocksDB slows writes to, 0 when it does not",
                health.delayed_write_rate_bytes,
            ),
            ("framelog_engine_immutable_memtables", "Memtables waiting to be flushed", health.immutable_memtables),
            ("framelog_engine_blob_file_bytes", "Payload bytes in blob files, every stream's", health.blob_file_bytes),
        ];
        for (name, help, value) in gauges {
            registry.register(name, help, gauge(value));
        }
    }
    let streams = Family::<Labels, Gauge>::default();
    for handle in engine.streams() {
        let meta = handle.meta();
        let Some(bytes) = engine.disk_bytes(&handle) else { continue };
        let (name, kind) = public(&meta.name, meta.kind);
        streams.get_or_create(&vec![("stream", name), ("kind", kind.into())]).set(value(bytes));
    }
    registry.register("framelog_stream_disk_bytes", "Bytes each stream takes on disk", streams);
    let open = crate::http_server::OPEN_CONNECTIONS.load(std::sync::atomic::Ordering::Relaxed);
    registry.register("framelog_http_open_connections", "HTTP connections open", gauge(open));
    registry.register(
        "framelog_decode_pool_queued_jobs",
        "Decode jobs waiting for a worker",
        gauge(images.queued() as u64),
    );
    registry.register("framelog_decode_pool_workers", "Decode workers", gauge(images.workers() as u64));
}

/// A stream's name as its clients know it, and what kind of stream it is.
fn public(engine_name: &str, kind: StreamKind) -> (String, &'static str) {
    match kind {
        StreamKind::Data => (engine_name.to_string(), "data"),
        StreamKind::Video => (crate::kvs::video_public_name(engine_name).to_string(), "video"),
        StreamKind::Delivery => {
            (crate::firehose::FirehoseCtx::public_name(engine_name).unwrap_or(engine_name).to_string(), "delivery")
        }
        StreamKind::Metrics => (engine_name.to_string(), "metrics"),
        // Named here, not through crate::analytics, which would close an import cycle
        // (analytics -> firehose -> consumers -> metrics -> here).
        StreamKind::Application => (engine_name.trim_start_matches("analytics/").to_string(), "application"),
    }
}

fn gauge(amount: u64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(value(amount));
    gauge
}

fn value(amount: u64) -> i64 {
    i64::try_from(amount).unwrap_or(i64::MAX)
}
