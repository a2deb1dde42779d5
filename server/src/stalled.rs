//! Responses the client stopped taking. A client that stops reading a GetMedia, an HLS segment or
//! a clip holds its connection, its response and whatever feeds it for as long as it likes:
//! nothing times out while a request is in flight. hyper polls a response body only when the
//! connection can take more (the socket for HTTP/1.1, the stream's flow-control window for
//! HTTP/2), so a frame handed over and not followed by another poll for a long time means the
//! client has stopped reading; the connection is then dropped.
//!
//! A body waiting for its own data (a live GetMedia between fragments) is being polled, so it is
//! never mistaken for a stalled one.
//!
//! A body's last frame is not followed by a poll, however large it is (a whole HLS segment is
//! one frame): `StalledWrites` watches the socket instead, failing a write that could not
//! proceed for the same time. Together they cover HTTP/1.1 (the socket stalls) and HTTP/2 (one
//! stream's window stays shut while the socket is fine).

use std::collections::BTreeMap;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The message both watches log: what an operator sees when a connection is dropped for it.
pub const DROPPED: &str = "dropping a connection whose client stopped reading its response";

/// A socket whose writes fail once one could not proceed for `timeout`.
#[derive(Debug)]
pub struct StalledWrites<IO> {
    io: IO,
    timeout: Duration,
    /// Armed while a write is pending.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Once the deadline passed, every write fails (and it is logged once).
    stalled: bool,
}

impl<IO> StalledWrites<IO> {
    pub fn new(io: IO, timeout: Duration) -> Self {
        StalledWrites { io, timeout, deadline: None, stalled: false }
    }

    /// Disarms the deadline on progress; on a pending write, arms it or fails once it passed.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let stalled = || Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")));
        if self.stalled {
            return stalled();
        }
        if polled.is_ready() {
            self.deadline = None;
            return polled;
        }
        let timeout = self.timeout;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_ready() {
            self.stalled = true;
            tracing::info!("{DROPPED}");
            return stalled();
        }
        Poll::Pending
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for StalledWrites<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for StalledWrites<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        self.watch(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// One connection's response bodies that handed over a frame and have not been polled since.
#[derive(Debug, Default)]
pub struct Stalls {
    next_id: AtomicU64,
    /// Body id -> when it handed over the frame that is still waiting.
    waiting: Mutex<BTreeMap<u64, Instant>>,
    changed: Notify,
}

impl Stalls {
    pub fn new() -> Arc<Stalls> {
        Arc::new(Stalls::default())
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Instant>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn handed_over(&self, id: u64) {
        self.waiting().entry(id).or_insert_with(Instant::now);
        self.changed.notify_one();
    }

    fn taken(&self, id: u64) {
        self.waiting().remove(&id);
    }

    /// Resolves once some response has waited for the client longer than `timeout`.
    pub async fn stalled_for(&self, timeout: Duration) {
        loop {
            let changed = self.changed.notified();
            let oldest = self.waiting().values().min().copied();
            match oldest {
                Some(since) if Instant::now() >= since + timeout => return,
                // Entries only get newer or go: the oldest one's deadline is the next to look at.
                Some(since) => tokio::time::sleep_until(since + timeout).await,
                None => changed.await,
            }
        }
    }
}

/// The most a body hands over at once. A poll gap then means less than this went out in the
/// whole timeout: a slow reader of a large fragment keeps the body polled, slice after slice.
const SLICE_BYTES: usize = 64 << 10;

/// A response body reporting to its connection's `Stalls`.
#[derive(Debug)]
pub struct WatchedBody {
    body: Body,
    stalls: Arc<Stalls>,
    id: u64,
    /// What is left of a frame larger than a slice.
    rest: Bytes,
}

impl WatchedBody {
    pub fn wrap(body: Body, stalls: &Arc<Stalls>) -> Body {
        let id = stalls.next_id.fetch_add(1, Ordering::Relaxed);
        Body::new(WatchedBody { body, stalls: stalls.clone(), id, rest: Bytes::new() })
    }

    /// The next slice of `rest`, and whether more of the body follows it.
    fn slice(&mut self) -> (Bytes, bool) {
        let slice = self.rest.split_to(self.rest.len().min(SLICE_BYTES));
        let more = !self.rest.is_empty() || !self.body.is_end_stream();
        (slice, more)
    }
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        this.stalls.taken(this.id);
        if this.rest.is_empty() {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.rest = data,
                    // Trailers: handed over as they are.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return other,
            }
        }
        let (slice, more) = this.slice();
        // After its last frame a body is not polled again: only a frame with more to come waits.
        if more {
            this.stalls.handed_over(this.id);
        }
        Poll::Ready(Some(Ok(hyper::body::Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let rest = self.rest.len() as u64;
        let inner = self.body.size_hint();
        let mut hint = hyper::body::SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.stalls.taken(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    fn two_frames() -> Body {
        let frames = tokio_stream::iter([Ok::<_, std::io::Error>(Bytes::from("a")), Ok(Bytes::from("b"))]);
        Body::from_stream(frames)
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_cannot_proceed_fails_after_the_timeout_and_progress_resets_it() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut client, server) = tokio::io::duplex(16);
        let mut socket = StalledWrites::new(server, Duration::from_secs(60));
        // A client that reads a little now and then never stalls, however long the whole write.
        let reader = tokio::spawn(async move {
            let mut byte = [0u8; 16];
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let _ = client.read(&mut byte).await;
            }
            client
        });
        socket.write_all(&[7u8; 16 * 8]).await.expect("a slow reader is no stalled reader");
        let _client = reader.await.expect("joined");
        let started = Instant::now();
        let error = socket.write_all(&[7u8; 64]).await.expect_err("nobody reads any more");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(Instant::now() - started, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_not_followed_by_a_poll_stalls_after_the_timeout() {
        let stalls = Stalls::new();
        let mut body = WatchedBody::wrap(two_frames(), &stalls);
        body.frame().await.expect("a frame").expect("ok");
        let started = Instant::now();
        stalls.stalled_for(Duration::from_secs(60)).await;
        assert_eq!(Instant::now() - started, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_frame_goes_out_in_slices_and_one_not_taken_stalls() {
        let stalls = Stalls::new();
        let frame = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let mut body = WatchedBody::wrap(Body::from(frame.clone()), &stalls);
        let first = body.frame().await.expect("a slice").expect("ok").into_data().expect("data");
        assert_eq!(first.len(), SLICE_BYTES);
        // The rest of the one frame waits for the client: that is a stall if nobody takes it.
        let waited = tokio::time::timeout(Duration::from_secs(61), stalls.stalled_for(Duration::from_secs(60))).await;
        assert!(waited.is_ok(), "a large frame half taken stalls");
        let mut all = first.to_vec();
        while let Some(slice) = body.frame().await {
            all.extend_from_slice(&slice.expect("ok").into_data().expect("data"));
        }
        assert_eq!(all, frame.to_vec());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_read_to_its_end_or_dropped_never_stalls() {
        let stalls = Stalls::new();
        let mut read = WatchedBody::wrap(two_frames(), &stalls);
        while read.frame().await.is_some() {}
        let mut dropped = WatchedBody::wrap(two_frames(), &stalls);
        dropped.frame().await.expect("a frame").expect("ok");
        drop(dropped);
        let waited = tokio::time::timeout(Duration::from_secs(600), stalls.stalled_for(Duration::from_secs(60))).await;
        assert!(waited.is_err(), "nothing waits for the client");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_waiting_for_its_own_data_is_not_stalled() {
        let stalls = Stalls::new();
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let mut body =
            WatchedBody::wrap(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)), &stalls);
        sender.send(Ok(Bytes::from("a"))).await.expect("send");
        body.frame().await.expect("a frame").expect("ok");
        // The reader is back for more, and waits (a live tail between fragments).
        let next = tokio::spawn(async move { body.frame().await.map(|f| f.is_ok()) });
        let waited = tokio::time::timeout(Duration::from_secs(600), stalls.stalled_for(Duration::from_secs(60))).await;
        assert!(waited.is_err(), "a body waiting for data is not waiting for the client");
        drop(sender);
        assert_eq!(next.await.expect("joined"), None);
    }
}
