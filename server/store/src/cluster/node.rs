//! What a cluster node holds: its clients, its view of the streams, and small caches. All of it
//! can be rebuilt from NATS at start-up; nothing here is the only copy of anything.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use async_nats::ServerAddr;
use async_nats::jetstream::{self, kv};

use super::names;
use super::objects::Objects;
use super::options::ClusterOptions;
use crate::clock::Clock;
use crate::crypto::{DataKey, NonceSource};
use crate::error::{Result, StoreError};
use crate::handle::StreamHandle;
use crate::meta::StreamMeta;

/// The first entry known to be retained in a shard, for a given retention, so that reads do not
/// search for it each time (read.rs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FirstKept {
    pub(crate) seq: u64,
    pub(crate) arrival_ms: u64,
    pub(crate) retention_ms: u64,
}

/// See `Node::publish_turn`.
#[derive(Debug)]
pub(crate) struct PublishTurn {
    pub(crate) previous: Option<tokio::sync::oneshot::Receiver<()>>,
    pub(crate) done: tokio::sync::oneshot::Sender<()>,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) meta: kv::Store,
    pub(crate) amend: kv::Store,
    pub(crate) leases: kv::Store,
    pub(crate) objects: Objects,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) options: ClusterOptions,
    pub(crate) streams: RwLock<BTreeMap<String, StreamHandle>>,
    /// Amended attributes by (stream id, shard, seq), kept current by a watch (watch.rs).
    pub(crate) amendments: RwLock<HashMap<(u64, u32, u64), Vec<u8>>>,
    pub(crate) first_kept: Mutex<HashMap<(u64, u32), FirstKept>>,
    /// Numbers this node's appends, for message ids that make a retried publish a no-op.
    pub(crate) appends: AtomicU64,
    /// Random per start: a restarted node counts its appends from 0 again, and without this its
    /// new messages would carry ids JetStream still remembers and be dropped as repeats.
    pub(crate) boot_id: u64,
    pub(crate) nonces: NonceSource,
    /// Per stream, the signal that the newest append submitted has published its entries: each
    /// append waits for the one before it, so appends submitted in order are stored in order.
    pub(crate) publish_order: Mutex<HashMap<u64, tokio::sync::oneshot::Receiver<()>>>,
    /// Bumped whenever this node's view of any stream's metadata changes.
    pub(crate) meta_changes: tokio::sync::watch::Sender<u64>,
    /// Set by `close`: from then on a watch ending is the node stopping, not a failure.
    pub(crate) closing: std::sync::atomic::AtomicBool,
}

pub(crate) fn nats_error(what: &'static str) -> impl FnOnce(&dyn std::fmt::Display) -> StoreError {
    move |error| StoreError::Backend { what, detail: error.to_string() }
}

impl Node {
    pub(crate) async fn connect(options: ClusterOptions, clock: Arc<dyn Clock>) -> Result<Arc<Node>> {
        let addresses = options
            .nats_urls
            .iter()
            .map(|url| url.parse::<ServerAddr>().map_err(|e| nats_error("a NATS URL")(&e)))
            .collect::<Result<Vec<_>>>()?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("framelog {}", options.node_id))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .request_timeout(Some(options.request_timeout))
            .connect(addresses)
            .await
            .map_err(|e| nats_error("connecting to NATS")(&e))?;
        let js = jetstream::new(client.clone());
        let meta = bucket(&js, names::META_BUCKET, &options).await?;
        let amend = bucket(&js, names::AMEND_BUCKET, &options).await?;
        let leases = bucket(&js, names::LEASE_BUCKET, &options).await?;
        let objects = Objects::connect(&options.objects, options.request_timeout)?;
        Ok(Arc::new(Node {
            client,
            js,
            meta,
            amend,
            leases,
            objects,
            clock,
            options,
            streams: RwLock::new(BTreeMap::new()),
            amendments: RwLock::new(HashMap::new()),
            first_kept: Mutex::new(HashMap::new()),
            appends: AtomicU64::new(0),
            boot_id: rand::random(),
            nonces: NonceSource::new()?,
            publish_order: Mutex::new(HashMap::new()),
            meta_changes: tokio::sync::watch::channel(0).0,
            closing: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn stream(&self, name: &str) -> Result<StreamHandle> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::StreamNotFound(name.to_string()))
    }

    pub(crate) fn all_streams(&self) -> Vec<StreamHandle> {
        self.streams.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// The stream with this id, if this node knows it (tip notices name streams by id).
    pub(crate) fn stream_by_id(&self, id: u64) -> Option<StreamHandle> {
        self.streams.read().unwrap_or_else(|e| e.into_inner()).values().find(|h| h.id() == id).cloned()
    }

    /// Cutoff below which entries are expired.
    pub(crate) fn cutoff_ms(&self, handle: &StreamHandle) -> u64 {
        self.clock.now_ms().saturating_sub(handle.retention_ms())
    }

    /// A place in the stream's publishing order: the signal of the append before, and the
    /// sender that tells the next one this append has published (or failed: dropping it).
    pub(crate) fn publish_turn(&self, id: u64) -> PublishTurn {
        let (done, next) = tokio::sync::oneshot::channel();
        let previous = self.publish_order.lock().unwrap_or_else(|e| e.into_inner()).insert(id, next);
        PublishTurn { previous, done }
    }

    /// The key that seals and opens the stream's payloads.
    pub(crate) fn data_key(&self, meta: &StreamMeta) -> Result<DataKey> {
        crate::crypto::stream_data_key(self.options.master_key.as_deref(), meta)
    }

    /// The attributes of an entry, amended ones first.
    pub(crate) fn attrs_of(&self, id: u64, shard: u32, seq: u64, stored: Vec<u8>) -> Vec<u8> {
        let amended = self.amendments.read().unwrap_or_else(|e| e.into_inner());
        amended.get(&(id, shard, seq)).cloned().unwrap_or(stored)
    }
}

/// How long one attempt to open a bucket may take at start-up, and the pause between attempts.
const BUCKET_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(2);
const BUCKET_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// Opens a KV bucket, creating it when it does not exist. A NATS cluster that has just started
/// may not have elected its JetStream metadata leader yet, and requests sent before that can go
/// unanswered: each attempt is short, and attempts repeat until the caller's deadline.
async fn bucket(js: &jetstream::Context, name: &str, options: &ClusterOptions) -> Result<kv::Store> {
    loop {
        match tokio::time::timeout(BUCKET_ATTEMPT, open_bucket(js, name, options)).await {
            Ok(Ok(store)) => return Ok(store),
            Ok(Err(error)) => tracing::info!(bucket = name, %error, "JetStream not ready yet; trying again"),
            Err(_) => tracing::info!(bucket = name, "JetStream did not answer yet; trying again"),
        }
        tokio::time::sleep(BUCKET_RETRY_PAUSE).await;
    }
}

/// One attempt: the bucket, created (replicated, on file storage) when it does not exist.
async fn open_bucket(js: &jetstream::Context, name: &str, options: &ClusterOptions) -> Result<kv::Store> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let config = kv::Config {
        bucket: name.to_string(),
        history: 1,
        num_replicas: options.replicas,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another node created it meanwhile.
        Err(_) => js.get_key_value(name).await.map_err(|e| nats_error("opening a KV bucket")(&e)),
    }
}
