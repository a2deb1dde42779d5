//! The running server: opens the engine, builds the router, serves until SIGINT/SIGTERM, lets
//! in-flight requests finish, then closes the engine (commit thread drained, memtables flushed).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::Uri;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use framelog_store::{Engine, EngineOptions, SystemClock};

use crate::config::Config;
use crate::kds::{self, Ctx, IteratorCodec, KdsSettings};
use crate::kvs::{self, KvsCtx, KvsSettings};

/// Everything the routes share.
#[derive(Debug, Clone)]
struct AppState {
    kds: Ctx,
    kvs: KvsCtx,
}

/// Recently served segments kept for other viewers: about 30 s of 4 Mbit/s video for 4 streams.
const SEGMENT_CACHE_BYTES: usize = 64 << 20;

/// Large enough for a 10 MiB PutRecords request in base64 JSON.
const MAX_BODY_BYTES: usize = 16 << 20;

pub async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let engine = Engine::open(&config.data_dir.join("engine"), Arc::new(SystemClock), EngineOptions::default())
        .context("opening the engine")?;
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    let secret = load_secret(&config.data_dir)?;
    let (consumer_changes, consumer_changes_rx) = tokio::sync::mpsc::unbounded_channel();
    let state = AppState {
        kds: Ctx {
            engine: engine.clone(),
            settings: KdsSettings {
                account_id: config.account_id.clone(),
                region: config.region.clone(),
                shard_limit: config.shard_limit,
                default_retention_hours: 24,
            },
            iterators: IteratorCodec::new(secret.clone()),
        },
        kvs: KvsCtx {
            engine: engine.clone(),
            settings: KvsSettings {
                account_id: config.account_id.clone(),
                region: config.region.clone(),
                default_retention_hours: config.video_retention_hours,
                data_endpoint: config.public_url.clone().unwrap_or_else(|| format!("http://{address}")),
            },
            sessions: crate::token::Signer::new(secret),
            images: decode_pool()?,
            segments: Arc::new(kvs::playback::SegmentCache::new(SEGMENT_CACHE_BYTES)),
            consumer_changes,
        },
    };
    let consumers = tokio::spawn(crate::consumers::runner::supervise(state.kvs.clone(), consumer_changes_rx));
    let router = Router::new()
        // GET / is the web console; KDS clients POST to / with an X-Amz-Target.
        .route(
            "/",
            get(crate::console::index)
                .fallback(|State(s): State<AppState>, method, headers, body| kds::handle(s.kds, method, headers, body)),
        )
        .route("/console/{file}", get(crate::console::file))
        .route("/favicon.ico", get(crate::console::favicon))
        .route("/metrics", get(|State(s): State<AppState>| metrics(s.kvs)))
        .route(
            "/putMedia",
            post(|State(s): State<AppState>, headers, body: axum::body::Body| {
                kvs::put_media::handle(s.kvs, headers, body)
            }),
        )
        .route(
            "/getMediaForFragmentList",
            post(|State(s): State<AppState>, body: Bytes| kvs::archive::get_media_for_fragment_list(s.kvs, body)),
        )
        .route(
            "/hls/v1/{file}",
            get(|State(s): State<AppState>, UrlPath(file): UrlPath<String>, uri: Uri, headers| {
                kvs::playback::handle(s.kvs, file, uri.query().map(str::to_string), headers)
            })
            .options(kvs::playback::preflight),
        )
        .route(
            "/dash/v1/{file}",
            get(|State(s): State<AppState>, UrlPath(file): UrlPath<String>, uri: Uri, headers| {
                kvs::playback::handle(s.kvs, file, uri.query().map(str::to_string), headers)
            })
            .options(kvs::playback::preflight),
        )
        .route("/getImages", post(|State(s): State<AppState>, body: Bytes| kvs::playback::images::handle(s.kvs, body)))
        .route("/getClip", post(|State(s): State<AppState>, body: Bytes| kvs::playback::clip::handle(s.kvs, body)))
        .route("/getMedia", post(|State(s): State<AppState>, body: Bytes| kvs::get_media::handle(s.kvs, body)))
        .route(
            "/{op}",
            post(|State(s): State<AppState>, UrlPath(op): UrlPath<String>, body: Bytes| kvs::handle(s.kvs, op, body)),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);

    let trimmer =
        tokio::spawn(trim_periodically(engine.clone(), Duration::from_secs(config.trim_interval_secs.max(1))));
    println!("framelog listening on http://{address} (point clients at --endpoint-url http://{address})");
    println!("web console: open http://{address}/ in a browser");
    tracing::info!(%address, data_dir = %config.data_dir.display(), "ready");
    // Acks and GetMedia chunks are small writes that must leave at once: with Nagle's algorithm
    // a PERSISTED line waits for the client's delayed ACK of the RECEIVED line before it (~40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router).with_graceful_shutdown(shutdown_signal()).await?;
    trimmer.abort();
    consumers.abort();
    tokio::task::spawn_blocking(move || engine.close()).await??;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Prometheus exposition of the consumers' metrics (the engine reads block, so off the runtime).
async fn metrics(ctx: kvs::KvsCtx) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::task::spawn_blocking(move || crate::consumers::prometheus::render(&ctx)).await {
        Ok(text) => ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn trim_periodically(engine: Engine, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let engine = engine.clone();
        match tokio::task::spawn_blocking(move || engine.trim_expired()).await {
            Ok(Ok(stats)) if stats.entries_removed > 0 => tracing::info!(?stats, "trimmed expired entries"),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "retention trim failed"),
            Err(error) => tracing::error!(%error, "retention trim panicked"),
        }
    }
}

/// The iterator-signing secret: random, made once per data directory so iterators survive restarts.
fn load_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("iterator-secret");
    match std::fs::read(&path) {
        Ok(secret) if secret.len() == 32 => Ok(secret),
        _ => {
            let secret: [u8; 32] = rand::random();
            let temp = data_dir.join("iterator-secret.tmp");
            std::fs::write(&temp, secret)?;
            std::fs::File::open(&temp)?.sync_all()?;
            std::fs::rename(&temp, &path)?;
            Ok(secret.to_vec())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// One decode worker per core; a queue of four jobs per worker bounds what a burst of GetImages
/// requests can hold before it is told to retry.
fn decode_pool() -> anyhow::Result<framelog_imaging::DecodePool> {
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    framelog_imaging::DecodePool::new(workers, workers * 4).context("starting the GStreamer decode pool")
}
