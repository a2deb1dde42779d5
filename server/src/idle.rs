//! Per-connection activity, for ending connections that sit idle. HTTP/1.1 keep-alive
//! connections are already ended by hyper's header deadline, but an HTTP/2 connection with no
//! stream open stays up as long as the client answers pings; an exposed server cannot let every
//! client hold one forever. A request counts as active until its response body is finished or
//! dropped, so a long GetMedia or PutMedia is never idle.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use tokio::time::Instant;

/// What one connection is doing.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity { in_flight: AtomicUsize::new(0), idle_since: Mutex::new(Instant::now()) })
    }

    /// Marks a request as started; it ends when the guard drops.
    pub fn start(self: &Arc<Self>) -> ActiveRequest {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        ActiveRequest(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let since = *self.idle_since.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let deadline = since + timeout;
            if self.in_flight.load(Ordering::Acquire) == 0 && Instant::now() >= deadline {
                return;
            }
            // Busy: look again a full timeout later (a request ending moves `idle_since`).
            let wake = if self.in_flight.load(Ordering::Acquire) == 0 { deadline } else { Instant::now() + timeout };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// A request in flight; dropping it ends it.
#[derive(Debug)]
pub struct ActiveRequest(Arc<Activity>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request active until it is finished or dropped.
#[derive(Debug)]
pub struct TrackedBody {
    body: Body,
    _active: ActiveRequest,
}

impl TrackedBody {
    pub fn wrap(body: Body, active: ActiveRequest) -> Body {
        Body::new(TrackedBody { body, _active: active })
    }
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_when_nothing_is_in_flight_for_the_timeout() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(60);
        let request = activity.start();
        // In flight for five minutes: never idle meanwhile.
        let waited = tokio::time::timeout(Duration::from_secs(300), activity.idle_for(timeout)).await;
        assert!(waited.is_err(), "a connection with a request in flight is not idle");
        drop(request);
        let ended = Instant::now();
        activity.idle_for(timeout).await;
        assert_eq!(Instant::now() - ended, timeout, "idle exactly one timeout after the request ended");
    }
}
