//! The running server: opens the state, starts the background work, serves until `shutdown`
//! resolves, lets in-flight requests finish, stops the background work, then closes the engine
//! (commit thread drained, memtables flushed).

use std::future::Future;
use std::time::Duration;

use framelog_store::Engine;
use tokio::net::TcpListener;

use crate::auth::Mode;
use crate::config::Config;
use crate::error::ServerError;
use crate::http_server;
use crate::listener::{PlainListener, TlsListener};
use crate::router::router;
use crate::state::AppState;

/// How long background tasks get to finish their current step once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves `config` on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let address = listener.local_addr().map_err(ServerError::Serve)?;
    let opened = AppState::open(&config, address)?;
    let background = opened.state.background.clone();
    crate::consumers::supervisor::start(opened.state.consumers.clone(), opened.consumer_changes);
    crate::firehose::supervisor::start(opened.state.firehose.clone(), background.clone(), opened.delivery_changes);
    crate::analytics::supervisor::start(opened.state.analytics.clone(), background.clone(), opened.application_changes);
    // A reshard recorded before a crash or a stop takes effect now (or at its due time).
    crate::kds::resume_pending(&opened.state.kds);
    background.spawn("on-demand scaling".into(), crate::kds::scale_on_demand(opened.state.kds.clone()));
    let metrics = opened.state.metrics.clone();
    background.spawn("metrics rollups".into(), crate::cloudwatch::rollups::store_periodically(metrics.clone()));
    let trim_every = Duration::from_secs(config.trim_interval_secs.max(1));
    background.spawn("retention trimmer".into(), trim_periodically(opened.engine.clone(), trim_every));
    match &opened.state.auth.mode {
        Mode::Keys(keys) => {
            tracing::info!(
                keys = keys.current().len(),
                "authentication: every request is verified against the credentials file"
            );
            background.spawn("credentials reload".into(), keys.clone().watch());
        }
        Mode::Open => {
            tracing::warn!("authentication: OPEN (no credentials file): any signature is accepted; loopback only")
        }
    }
    let admin_socket = crate::admin::bind(&config.data_dir);
    if let Some(listener) = admin_socket {
        let ctx = crate::admin::AdminCtx {
            engine: opened.engine.clone(),
            config: std::sync::Arc::new(config.clone()),
            background: background.clone(),
            busy: Default::default(),
        };
        background.spawn("admin socket".into(), crate::admin::serve(listener, ctx));
    }
    tracing::info!(%address, data_dir = %config.data_dir.display(), "ready");
    let router = router(opened.state);
    match &config.tls {
        Some(tls) => {
            let listener = TlsListener::new(listener, tls.server_config()?).map_err(ServerError::Serve)?;
            tracing::info!("serving HTTPS (h2, http/1.1)");
            http_server::serve(listener, router, config.limits, shutdown).await;
        }
        None => http_server::serve(PlainListener(listener), router, config.limits, shutdown).await,
    }
    let _ = std::fs::remove_file(config.data_dir.join(crate::admin::SOCKET_NAME));
    if !background.stop(SHUTDOWN_GRACE).await {
        tracing::warn!(grace_secs = SHUTDOWN_GRACE.as_secs(), "background tasks still running at the deadline");
    }
    // The minute in progress too: a clean stop loses no samples.
    crate::cloudwatch::rollups::store_taken(&metrics, crate::cloudwatch::Recorder::take_all).await;
    let engine = opened.engine;
    tokio::task::spawn_blocking(move || engine.close()).await??;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Trims expired entries every `every`, where this process holds the retention lease (in a
/// cluster, one node at a time; another takes over when it dies).
async fn trim_periodically(engine: Engine, every: Duration) {
    let lease_ttl_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).saturating_mul(3).max(10_000);
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        let engine = engine.clone();
        let trim = move || match engine.hold_lease("retention", lease_ttl_ms)? {
            true => engine.trim_expired(),
            false => Ok(Default::default()),
        };
        match tokio::task::spawn_blocking(trim).await {
            Ok(Ok(stats)) if stats.entries_removed > 0 => tracing::info!(?stats, "trimmed expired entries"),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "retention trim failed"),
            Err(error) => tracing::error!(%error, "retention trim panicked"),
        }
    }
}
