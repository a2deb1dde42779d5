//! A deadline for a connection's first bytes. hyper's header timeout starts only once a request
//! begins, so a client that connects and sends nothing would hold its socket forever; this
//! wrapper fails the connection's reads if nothing arrives in time, then steps aside.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

#[derive(Debug)]
pub struct FirstBytesDeadline<IO> {
    io: IO,
    /// `None` once the first bytes arrived.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<IO> FirstBytesDeadline<IO> {
    pub fn new(io: IO, within: Duration) -> Self {
        FirstBytesDeadline { io, deadline: Some(Box::pin(tokio::time::sleep(within))) }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FirstBytesDeadline<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let Some(deadline) = self.deadline.as_mut() else { return polled };
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.deadline = None,
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no request within the deadline")));
            }
            _ => {}
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FirstBytesDeadline<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test(start_paused = true)]
    async fn silence_past_the_deadline_fails_the_read() {
        let (client, server) = tokio::io::duplex(64);
        let mut wrapped = FirstBytesDeadline::new(server, Duration::from_secs(3));
        let mut byte = [0u8; 1];
        let error = wrapped.read(&mut byte).await.expect_err("nothing was sent");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn once_bytes_arrived_later_silence_is_the_protocols_business() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut wrapped = FirstBytesDeadline::new(server, Duration::from_secs(3));
        client.write_all(b"G").await.expect("write");
        let mut byte = [0u8; 1];
        assert_eq!(wrapped.read(&mut byte).await.expect("read"), 1);
        let later = tokio::time::timeout(Duration::from_secs(60), wrapped.read(&mut byte)).await;
        assert!(later.is_err(), "a connection that started talking is not cut by this deadline");
    }
}
