//! The running server: opens the state, starts the background work, serves until `shutdown`
//! resolves, lets in-flight requests finish, stops the background work, then closes the engine
//! (commit thread drained, memtables flushed).

use std::future::Future;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use framelog_store::Engine;
use tokio::net::TcpListener;

use crate::background::Background;
use crate::config::Config;
use crate::error::ServerError;
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
    let background = Background::new();
    crate::consumers::runner::start(opened.state.consumers.clone(), opened.consumer_changes, &background);
    let trim_every = Duration::from_secs(config.trim_interval_secs.max(1));
    background.spawn("retention trimmer".into(), trim_periodically(opened.engine.clone(), trim_every));
    tracing::info!(%address, data_dir = %config.data_dir.display(), "ready");
    // Acks and GetMedia chunks are small writes that must leave at once: with Nagle's algorithm
    // a PERSISTED line waits for the client's delayed ACK of the RECEIVED line before it (~40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, router(opened.state)).with_graceful_shutdown(shutdown).await;
    if !background.stop(SHUTDOWN_GRACE).await {
        tracing::warn!(grace_secs = SHUTDOWN_GRACE.as_secs(), "background tasks still running at the deadline");
    }
    let engine = opened.engine;
    tokio::task::spawn_blocking(move || engine.close()).await??;
    served.map_err(ServerError::Serve)?;
    tracing::info!("stopped cleanly");
    Ok(())
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
