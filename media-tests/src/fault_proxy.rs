//! A fault-injecting TCP proxy for the edge agent tests: it forwards a loopback port to a target
//! and, on command, cuts every open connection (mid-fragment, wherever the bytes are), stalls
//! them (bytes stop flowing both ways but the sockets stay open), or refuses new connections
//! (accepted and closed at once, as a dead NAT or a down server looks).
//!
//! It runs its own tokio runtime on a thread, so synchronous tests can use it.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Handle to a running proxy; dropping it stops the proxy and its connections.
#[derive(Debug)]
pub struct FaultProxy {
    pub address: SocketAddr,
    /// Bumped to cut every connection open at that moment.
    cuts: watch::Sender<u64>,
    stalled: watch::Sender<bool>,
    refusing: Arc<AtomicBool>,
    /// Connections accepted and forwarded so far.
    pub forwarded: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// Forwards a new loopback port to `target`.
    pub fn start(target: SocketAddr) -> anyhow::Result<FaultProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let std_listener = StdListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let address = std_listener.local_addr()?;
        let (cuts, _) = watch::channel(0u64);
        let (stalled, _) = watch::channel(false);
        let refusing = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (cut_rx, stall_rx, refuse, count) =
            (cuts.subscribe(), stalled.subscribe(), refusing.clone(), forwarded.clone());
        runtime.spawn(async move {
            let Ok(listener) = TcpListener::from_std(std_listener) else { return };
            while let Ok((client, _)) = listener.accept().await {
                if refuse.load(Ordering::Relaxed) {
                    drop(client);
                    continue;
                }
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(forward(client, target, cut_rx.clone(), stall_rx.clone()));
            }
        });
        Ok(FaultProxy { address, cuts, stalled, refusing, forwarded, runtime: Some(runtime) })
    }

    /// Cuts every open connection now.
    pub fn cut_all(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Stops (or resumes) the flow of bytes on every connection, old and new.
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.send_replace(stalled);
    }

    /// Closes new connections at once while set.
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::Relaxed);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut_all();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn forward(
    client: TcpStream,
    target: SocketAddr,
    mut cuts: watch::Receiver<u64>,
    stalled: watch::Receiver<bool>,
) {
    let Ok(server) = TcpStream::connect(target).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    cuts.mark_unchanged();
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let upstream = pump(client_read, server_write, stalled.clone());
    let downstream = pump(server_read, client_write, stalled);
    tokio::select! {
        _ = cuts.changed() => {}
        _ = async { tokio::join!(upstream, downstream) } => {}
    }
    // Dropping both halves closes both sockets: the cut lands wherever the bytes were.
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        while *stalled.borrow_and_update() {
            if stalled.changed().await.is_err() {
                return;
            }
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
