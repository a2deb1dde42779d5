//! The state every route shares, opened from a `Config`. Each handler extracts only the part it
//! needs (`State<KdsCtx>`, `State<KvsCtx>`, ...) through `FromRef`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRef;
use framelog_imaging::{DecodePool, Isolation, TranscodePool, WorkerCommand};
use framelog_store::{Engine, EngineOptions, MasterKey, SystemClock};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::analytics::AnalyticsCtx;
use crate::auth::{AuditLog, Auth, AuthError, MAX_IN_FLIGHT_BYTES, Mode, Resources};
use crate::background::Background;
use crate::config::{Config, ImageSettings};
use crate::consumers::{self, ConsumersCtx, supervisor::Changed};
use crate::error::ServerError;
use crate::firehose::{Buckets, FirehoseCtx};
use crate::guard::Guard;
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
    pub firehose: FirehoseCtx,
    pub analytics: AnalyticsCtx,
    pub images: DecodePool,
    /// Background tasks and the engine writes that shutdown must wait for (request handlers'
    /// blocking operations included: a write outlives a client that hangs up).
    pub background: Background,
    /// The rest-json operations: KVS's, then the consumer API's.
    pub operations: Arc<Operations>,
    /// Authentication, policies and the audit log, for the middleware in front of every route.
    pub auth: Arc<Auth>,
    /// Host, origin and content-type checks in front of authentication.
    pub guard: Arc<Guard>,
    /// Whether each answered request gets an access-log line, and where its latency goes.
    pub access_log: crate::access_log::AccessLog,
    /// CloudWatch's metrics of every service, and their one-minute rollups.
    pub metrics: crate::cloudwatch::Recorder,
}

/// What opening the state hands to the background work rather than to the routes.
#[derive(Debug)]
pub struct Opened {
    pub state: AppState,
    pub engine: Engine,
    /// The consumer API's change notices, for the consumer supervisor.
    pub consumer_changes: UnboundedReceiver<Changed>,
    /// The Firehose API's change notices, for the delivery supervisor.
    pub delivery_changes: UnboundedReceiver<()>,
    /// The analytics API's change notices, for the application supervisor.
    pub application_changes: UnboundedReceiver<()>,
}

impl AppState {
    /// Opens the engine in `config.data_dir` and builds every context. `address` is where the
    /// server listens (GetDataEndpoint's answer unless `public_url` is set).
    pub fn open(config: &Config, address: SocketAddr) -> Result<Opened, ServerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| ServerError::io("creating", &config.data_dir, e))?;
        let master_key = crate::secret::master_key(&config.data_dir, config.master_key_file.as_deref())?;
        let options = EngineOptions {
            master_key: Some(Arc::new(MasterKey::from_bytes(&master_key)?)),
            segment_min_bytes: config.segment_min_bytes,
            min_free_disk_bytes: config.min_free_disk_bytes,
            block_cache_bytes: config.block_cache_bytes,
            ..Default::default()
        };
        let engine = open_engine(config, address, options)?;
        let shared_secret = config.cluster.as_ref().map(|c| c.cluster.signing_secret_file.as_path());
        let secret = crate::secret::load_shared(&config.data_dir, shared_secret)?;
        let metrics =
            crate::cloudwatch::Recorder::new(engine.clone()).with_engine_names(|namespace, stream| match namespace {
                crate::cloudwatch::Namespace::KinesisVideo => kvs::video_engine_name(stream),
                _ => stream.to_string(),
            });
        let kds = KdsCtx {
            engine: engine.clone(),
            settings: KdsSettings {
                account_id: config.account_id.clone(),
                region: config.region.clone(),
                shard_limit: config.shard_limit,
                default_retention_hours: 24,
                reshard_delay_ms: config.kds.reshard_delay_ms,
            },
            subscriptions: Default::default(),
            quotas: crate::kds::Quotas::new(config.kds.quotas),
            iterators: IteratorCodec::new(secret.derive("kds shard iterator")),
            metrics: metrics.clone(),
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
            sessions: framelog_wire::Signer::new(secret.derive("kvs streaming session")),
            segments: Arc::new(kvs::playback::SegmentCache::new(SEGMENT_CACHE_BYTES)),
            edges: Arc::default(),
            ll_views: Arc::default(),
            whep: Arc::new(whep_sessions(config, address)),
            transcoding: Arc::new(kvs::playback::transcoded::Transcoding::new(transcode_pool(config)?)),
            metrics: metrics.clone(),
        };
        let images = decode_pool(&config.images)?;
        let (changes, consumer_changes) = tokio::sync::mpsc::unbounded_channel();
        let background = Background::new();
        let consumers = ConsumersCtx {
            video: kvs.clone(),
            images: images.clone(),
            changes,
            background: background.clone(),
            destinations: destination_policy(config)?,
            image_files: consumers::ImageFiles::new(
                config.consumers.images_root.clone().unwrap_or_else(|| config.data_dir.join("images")),
                config.consumers.images_quota_bytes,
            ),
        };
        let (delivery_notices, delivery_changes) = tokio::sync::mpsc::unbounded_channel();
        let firehose = FirehoseCtx {
            engine: engine.clone(),
            account_id: config.account_id.clone(),
            region: config.region.clone(),
            buckets: Buckets::new(&config.data_dir, config.buckets.clone()),
            lambda_functions: config.lambda_functions.clone(),
            glue_tables: config.glue_tables.clone(),
            destinations: consumers.destinations.clone(),
            changes: delivery_notices,
            incoming: Default::default(),
            quotas: crate::firehose::PutQuotas::new(&config.firehose),
            metrics: metrics.clone(),
        };
        let (application_notices, application_changes) = tokio::sync::mpsc::unbounded_channel();
        let analytics = AnalyticsCtx {
            engine: engine.clone(),
            account_id: config.account_id.clone(),
            region: config.region.clone(),
            kds: kds.clone(),
            firehose: firehose.clone(),
            changes: application_notices,
        };
        let operations =
            Arc::new(Operations::default().with(&kvs, kvs::OPERATIONS).with(&consumers, consumers::OPERATIONS));
        let auth = Arc::new(Auth {
            mode: config.auth.mode(address).map_err(|e| ServerError::Auth(Box::new(e)))?,
            region: config.region.clone(),
            account_id: config.account_id.clone(),
            audit: AuditLog::open(&config.data_dir.join("audit"))
                .map_err(|e| ServerError::Auth(Box::new(AuthError::Audit(e))))?,
            resources: Arc::new(StreamResources {
                kds: kds.clone(),
                kvs: kvs.clone(),
                firehose: firehose.clone(),
                analytics: analytics.clone(),
            }),
            public_metrics: config.auth.public_metrics,
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_BYTES)),
        });
        let guard = Arc::new(Guard {
            settings: config.http.clone(),
            loopback_hosts_only: matches!(auth.mode, Mode::Open),
            public_host: config.public_url.as_deref().and_then(url_host),
        });
        let access_log = crate::access_log::AccessLog { enabled: config.access_log, metrics: metrics.clone() };
        let state = AppState {
            kds,
            kvs,
            consumers,
            firehose,
            analytics,
            images,
            background,
            operations,
            auth,
            guard,
            access_log,
            metrics,
        };
        Ok(Opened { state, engine, consumer_changes, delivery_changes, application_changes })
    }
}

/// The local engine in the data directory, or a node of the cluster the config names.
fn open_engine(config: &Config, address: SocketAddr, options: EngineOptions) -> Result<Engine, ServerError> {
    let options_master_key = options.master_key.clone();
    match &config.cluster {
        Some(cluster) => {
            if config.master_key_file.is_none() {
                // Each node would make its own, and none could open what another sealed.
                return Err(ServerError::Config(
                    "[cluster] needs [encryption] master_key_file, the same file on every node".into(),
                ));
            }
            let mut options = cluster.options(&address.to_string()).map_err(ServerError::Config)?;
            options.master_key = options_master_key;
            tracing::info!(nats = ?options.nats_urls, objects = ?options.objects, node = %options.node_id, "joining the cluster");
            Ok(Engine::open_cluster(options, Arc::new(SystemClock))?)
        }
        None => Ok(Engine::open(&config.data_dir.join("engine"), Arc::new(SystemClock), options)?),
    }
}

/// Private destinations are for the local developer mode unless the config says otherwise; a
/// malformed prefix stops start-up rather than silently matching nothing.
fn destination_policy(config: &Config) -> Result<consumers::DestinationPolicy, ServerError> {
    let trust = match &config.consumers.ca_file {
        Some(path) => consumers::OutboundTrust::with_ca_file(path).map_err(ServerError::Config)?,
        None => consumers::OutboundTrust::default(),
    };
    let policy = consumers::DestinationPolicy {
        allow_private: config.consumers.allow_private_destinations.unwrap_or(config.auth.credentials_file.is_none()),
        allowed_prefixes: config.consumers.allowed_destination_prefixes.clone(),
        trust,
    };
    policy.validate().map_err(ServerError::Config)?;
    Ok(policy)
}

/// Transcodes run in worker processes of their own, as decoding for images does.
fn transcode_pool(config: &Config) -> Result<TranscodePool, ServerError> {
    Ok(TranscodePool::new(config.transcode.max_concurrent, worker_isolation(&config.images, "transcode-worker"))?)
}

/// Where GStreamer work runs: `framelog <subcommand>` processes under the decoder memory
/// ceiling, or the server's own threads when isolation is off.
fn worker_isolation(settings: &ImageSettings, subcommand: &str) -> Isolation {
    match &settings.decoder_program {
        Some(program) => Isolation::Process(WorkerCommand {
            program: program.clone(),
            args: vec![
                subcommand.into(),
                "--memory-limit-mib".into(),
                settings.decoder_memory_limit_mib.to_string().into(),
            ],
            job_deadline: DECODE_JOB_DEADLINE,
        }),
        None => Isolation::InProcess,
    }
}

/// One decode worker per core; a queue of four jobs per worker bounds what a burst of GetImages
/// requests can hold before it is told to retry.
fn decode_pool(settings: &ImageSettings) -> Result<DecodePool, ServerError> {
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let isolation = worker_isolation(settings, "decode-worker");
    Ok(DecodePool::new(workers, workers * 4, isolation)?)
}

/// A worker still busy with one job after this is killed: the decoder gives up on its own after
/// 30 s, so this only fires for a worker that hangs.
const DECODE_JOB_DEADLINE: std::time::Duration = std::time::Duration::from_secs(45);

/// Stream names to ARNs for policy evaluation, from the two APIs' contexts.
#[derive(Debug)]
struct StreamResources {
    kds: KdsCtx,
    kvs: KvsCtx,
    firehose: FirehoseCtx,
    analytics: AnalyticsCtx,
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

    fn list_token_stream_arn(&self, token: &str) -> Option<String> {
        crate::kds::list_shards_token_stream(token).map(|name| self.kds.arn(&name))
    }

    fn delivery_stream_arn(&self, name: &str) -> String {
        self.firehose.arn(name)
    }

    fn application_arn(&self, name: &str) -> String {
        self.analytics.arn(name)
    }
}

/// `https://video.example.com:8443/x` → `video.example.com`.
fn url_host(url: &str) -> Option<String> {
    let authority = url.split_once("://")?.1.split('/').next()?;
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    Some(host.trim_start_matches('[').trim_end_matches(']').to_string())
}

/// The WebRTC sessions' registry, warning when browsers on other machines could not reach it.
fn whep_sessions(config: &Config, address: SocketAddr) -> kvs::webrtc::WhepSessions {
    if config.webrtc.candidate_ip.is_none() && address.ip().is_unspecified() {
        tracing::warn!(
            "WebRTC offers 127.0.0.1 to browsers: set [webrtc] candidate_ip to an address they can reach \
             (the console falls back to LL-HLS after a few seconds)"
        );
    }
    kvs::webrtc::WhepSessions::new(config.webrtc.candidate_ip(address), config.webrtc.max_sessions)
}
