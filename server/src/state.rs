//! The state every route shares, opened from a `Config`. Each handler extracts only the part it
//! needs (`State<KdsCtx>`, `State<KvsCtx>`, ...) through `FromRef`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRef;
use framelog_imaging::DecodePool;
use framelog_store::{Engine, EngineOptions, SystemClock};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::auth::{AuditLog, Auth, AuthError, Resources};
use crate::background::Background;
use crate::config::Config;
use crate::consumers::{self, ConsumersCtx, runner::Changed};
use crate::error::ServerError;
use crate::kds::{IteratorCodec, KdsCtx, KdsSettings};
use crate::kvs::{self, KvsCtx, KvsSettings};
use crate::rest_json::Operations;

/// Recently served segments kept for other viewers: about 30 s of 4 Mbit/s video for 4 streams.
const SEGMENT_CACHE_BYTES: usize = 64 << 20;

/// `FromRef` (derived) lets each handler extract just its field's type.
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    pub kds: KdsCtx,
    pub kvs: KvsCtx,
    pub consumers: ConsumersCtx,
    pub images: DecodePool,
    /// Background tasks and the engine writes that shutdown must wait for (request handlers'
    /// blocking operations included: a write outlives a client that hangs up).
    pub background: Background,
    /// The rest-json operations: KVS's, then the consumer API's.
    pub operations: Arc<Operations>,
    /// Authentication, policies and the audit log, for the middleware in front of every route.
    pub auth: Arc<Auth>,
}

/// What opening the state hands to the background work rather than to the routes.
#[derive(Debug)]
pub struct Opened {
    pub state: AppState,
    pub engine: Engine,
    /// The consumer API's change notices, for the consumer supervisor.
    pub consumer_changes: UnboundedReceiver<Changed>,
}

impl AppState {
    /// Opens the engine in `config.data_dir` and builds every context. `address` is where the
    /// server listens (GetDataEndpoint's answer unless `public_url` is set).
    pub fn open(config: &Config, address: SocketAddr) -> Result<Opened, ServerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| ServerError::io("creating", &config.data_dir, e))?;
        let engine = Engine::open(&config.data_dir.join("engine"), Arc::new(SystemClock), EngineOptions::default())?;
        let secret = crate::secret::load_or_create(&config.data_dir)?;
        let kds = KdsCtx {
            engine: engine.clone(),
            settings: KdsSettings {
                account_id: config.account_id.clone(),
                region: config.region.clone(),
                shard_limit: config.shard_limit,
                default_retention_hours: 24,
            },
            iterators: IteratorCodec::new(secret.clone()),
        };
        let kvs = KvsCtx {
            engine: engine.clone(),
            settings: KvsSettings {
                account_id: config.account_id.clone(),
                region: config.region.clone(),
                default_retention_hours: config.video_retention_hours,
                data_endpoint: config.public_url.clone().unwrap_or_else(|| {
                    let scheme = if config.tls.is_some() { "https" } else { "http" };
                    format!("{scheme}://{address}")
                }),
            },
            sessions: crate::token::Signer::new(secret),
            segments: Arc::new(kvs::playback::SegmentCache::new(SEGMENT_CACHE_BYTES)),
        };
        let images = decode_pool()?;
        let (changes, consumer_changes) = tokio::sync::mpsc::unbounded_channel();
        let background = Background::new();
        let consumers =
            ConsumersCtx { video: kvs.clone(), images: images.clone(), changes, background: background.clone() };
        let operations =
            Arc::new(Operations::default().with(&kvs, kvs::OPERATIONS).with(&consumers, consumers::OPERATIONS));
        let auth = Arc::new(Auth {
            mode: config.auth.mode(address).map_err(|e| ServerError::Auth(Box::new(e)))?,
            region: config.region.clone(),
            account_id: config.account_id.clone(),
            audit: AuditLog::open(&config.data_dir.join("audit"))
                .map_err(|e| ServerError::Auth(Box::new(AuthError::Audit(e))))?,
            resources: Arc::new(StreamResources { kds: kds.clone(), kvs: kvs.clone() }),
            public_metrics: config.auth.public_metrics,
        });
        let state = AppState { kds, kvs, consumers, images, background, operations, auth };
        Ok(Opened { state, engine, consumer_changes })
    }
}

/// One decode worker per core; a queue of four jobs per worker bounds what a burst of GetImages
/// requests can hold before it is told to retry.
fn decode_pool() -> Result<DecodePool, ServerError> {
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    Ok(DecodePool::new(workers, workers * 4)?)
}

/// Stream names to ARNs for policy evaluation, from the two APIs' contexts.
#[derive(Debug)]
struct StreamResources {
    kds: KdsCtx,
    kvs: KvsCtx,
}

impl Resources for StreamResources {
    fn video_stream_arn(&self, name: &str) -> String {
        match self.kvs.lookup(name) {
            Ok(stream) => self.kvs.arn(name, stream.handle().meta().created_ms),
            Err(_) => format!(
                "arn:aws:kinesisvideo:{}:{}:stream/{name}/",
                self.kvs.settings.region, self.kvs.settings.account_id
            ),
        }
    }

    fn data_stream_arn(&self, name: &str) -> String {
        self.kds.arn(name)
    }

    fn iterator_stream_arn(&self, iterator: &str) -> Option<String> {
        self.kds.iterators.decode(iterator).map(|state| self.kds.arn(&state.stream_name))
    }
}
