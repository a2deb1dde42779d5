//! The HTTP server loop: hyper's automatic HTTP/1.1 and HTTP/2 connections with the limits an
//! exposed server needs (a deadline for request headers, which also ends idle HTTP/1.1
//! keep-alive connections; an idle deadline for HTTP/2 connections, which pings keep up
//! otherwise; a cap on open connections), the peer address on every request, and a graceful
//! shutdown that gives requests in flight a bounded time.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::first_bytes::FirstBytesDeadline;
use crate::idle::{Activity, TrackedBody};
use crate::listener::PeerAddr;
use crate::stalled::{StalledWrites, Stalls, WatchedBody};

/// How long requests in flight get once shutdown begins. Some never end by themselves (a live
/// GetMedia, a camera's endless PutMedia); past this they are cut, and what they had acknowledged
/// is already durable.
const REQUEST_GRACE: Duration = Duration::from_secs(5);

/// Connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A client must send its first bytes within this time of connecting, and a request's headers
    /// within this time of starting them (idle sockets, slowloris).
    pub header_read_timeout: Duration,
    /// Connections beyond this are closed as soon as they are accepted.
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed gracefully.
    pub idle_timeout: Duration,
    /// A connection whose client takes nothing of a response for this long is dropped (stalled.rs).
    pub stalled_response_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(60),
            stalled_response_timeout: Duration::from_secs(60),
        }
    }
}

/// Connections open in this process, for `/metrics` (one server serves a process).
pub static OPEN_CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Serves `router` on `listener` until `shutdown`, then lets requests finish for at most
/// `REQUEST_GRACE`.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let builder = Arc::new(connection_builder(limits));
    let connections = TaskTracker::new();
    let stopping = CancellationToken::new();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open connections");
            continue;
        };
        let accepted = Accepted { peer, router: router.clone(), limits, stopping: stopping.clone() };
        let builder = builder.clone();
        OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        connections.spawn(async move {
            serve_connection(&builder, io, accepted).await;
            OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    stopping.cancel();
    connections.close();
    tokio::select! {
        () = connections.wait() => {}
        () = tokio::time::sleep(REQUEST_GRACE) => {
            tracing::warn!(grace_secs = REQUEST_GRACE.as_secs(), "requests still open at the deadline were cut");
        }
    }
}

/// What a connection's task needs besides its socket.
struct Accepted {
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    /// Cancelled when the server shuts down.
    stopping: CancellationToken,
}

/// Serves one connection until it ends; closes it gracefully (requests in flight finish, HTTP/2
/// gets a GOAWAY) when the server stops or the connection has been idle too long.
async fn serve_connection<I>(builder: &auto::Builder<TokioExecutor>, io: I, accepted: Accepted)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Accepted { peer, router, limits, stopping } = accepted;
    let activity = Activity::new();
    let tracked = activity.clone();
    let stalls = Stalls::new();
    let watched = stalls.clone();
    let service = tower::service_fn(move |mut request: axum::http::Request<Incoming>| {
        let active = tracked.start();
        request.extensions_mut().insert(ConnectInfo(PeerAddr(peer)));
        let (router, watched) = (router.clone(), watched.clone());
        async move {
            let response = router.oneshot(request).await?;
            Ok::<_, Infallible>(response.map(|body| WatchedBody::wrap(TrackedBody::wrap(body, active), &watched)))
        }
    });
    let io = StalledWrites::new(io, limits.stalled_response_timeout);
    let io = TokioIo::new(FirstBytesDeadline::new(io, limits.header_read_timeout));
    let connection = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = stopping.cancelled(), if !closing => {}
            () = activity.idle_for(limits.idle_timeout), if !closing => {
                tracing::debug!(%peer, "closing an idle connection");
            }
            () = stalls.stalled_for(limits.stalled_response_timeout) => {
                // Not gracefully: the client takes nothing, so a goodbye would only wait as well.
                tracing::info!(%peer, "{}", crate::stalled::DROPPED);
                return;
            }
        }
        connection.as_mut().graceful_shutdown();
        closing = true;
    }
}

fn connection_builder(limits: ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    // Pings find dead HTTP/2 peers (a camera that lost power) without waiting for TCP.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}
