//! The admin socket, `<data_dir>/admin.sock`: commands an operator runs on the server's machine
//! while it serves (`framelog backup`). It is a Unix socket rather than an HTTP operation because
//! what it does (write a copy of every stream and key to a local path) is for whoever owns the
//! data dir, not for a holder of an access key: the socket is 0600 and each peer's uid must be
//! the server's own (or root's).

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use framelog_store::Engine;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::background::Background;
use crate::backup::BackupManifest;
use crate::config::Config;

pub const SOCKET_NAME: &str = "admin.sock";
/// A request is one JSON line naming a path: far below this.
const MAX_REQUEST_BYTES: u64 = 8 << 10;
/// A client that connects and says nothing is dropped after this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
pub enum AdminRequest {
    Backup { to: PathBuf },
}

/// What the server answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum AdminReply {
    BackedUp(BackupManifest),
    Failed(String),
}

/// Where the engine is and what a backup copies besides it.
#[derive(Clone, Debug)]
pub struct AdminCtx {
    pub engine: Engine,
    pub config: Arc<Config>,
    pub background: Background,
    /// One backup at a time: a second would only compete for the same disk.
    pub busy: Arc<tokio::sync::Mutex<()>>,
}

/// Binds the socket, replacing a stale one (the engine's lock already proved no other server uses
/// this data dir). None, with a warning, where the path is too long for a Unix socket.
pub fn bind(data_dir: &Path) -> Option<UnixListener> {
    let path = data_dir.join(SOCKET_NAME);
    let _ = std::fs::remove_file(&path);
    let bound = UnixListener::bind(&path).and_then(|listener| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map(|()| listener)
    });
    match bound {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "no admin socket: `framelog backup` cannot reach this server");
            None
        }
    }
}

/// Serves the admin socket until the task is cancelled.
pub async fn serve(listener: UnixListener, ctx: AdminCtx) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    if let Err(error) = handle(stream, ctx).await {
                        tracing::warn!(%error, "admin socket request failed");
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "admin socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(stream: UnixStream, ctx: AdminCtx) -> std::io::Result<()> {
    let own_uid = rustix::process::geteuid().as_raw();
    let peer_uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    if peer_uid != own_uid && peer_uid != 0 {
        let refusal = AdminReply::Failed(format!("uid {peer_uid} may not use the admin socket"));
        let _ = write.write_all(&reply_line(&refusal)?).await;
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, format!("uid {peer_uid} refused")));
    }
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES));
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    let reply = match serde_json::from_str::<AdminRequest>(&line) {
        Ok(AdminRequest::Backup { to }) => run_backup(&ctx, to).await,
        Err(error) => AdminReply::Failed(format!("not an admin request: {error}")),
    };
    write.write_all(&reply_line(&reply)?).await
}

fn reply_line(reply: &AdminReply) -> std::io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

async fn run_backup(ctx: &AdminCtx, to: PathBuf) -> AdminReply {
    let Ok(_running) = ctx.busy.try_lock() else {
        return AdminReply::Failed("a backup is already running".into());
    };
    let (engine, config) = (ctx.engine.clone(), ctx.config.clone());
    // Shutdown waits for a backup in progress rather than closing the engine under it.
    match ctx.background.spawn_blocking(move || crate::backup::backup(&engine, &config, &to)).await {
        Ok(Ok(manifest)) => AdminReply::BackedUp(manifest),
        Ok(Err(error)) => AdminReply::Failed(error_chain(&error)),
        Err(join) => AdminReply::Failed(join.to_string()),
    }
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// Sends `request` to the server serving `data_dir`. None when no server listens there.
pub fn request(data_dir: &Path, request: &AdminRequest) -> std::io::Result<Option<AdminReply>> {
    let path = data_dir.join(SOCKET_NAME);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    // The request goes at once; the answer may take as long as the copy does.
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    line.push(b'\n');
    // A server that refuses this peer answers before reading the request and closes: the
    // write may fail, and its answer is still there to read.
    let written = stream.write_all(&line);
    let mut reply = String::new();
    let read = std::io::BufReader::new(stream).read_line(&mut reply);
    if reply.is_empty() {
        written?;
        read?;
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed without an answer"));
    }
    serde_json::from_str(&reply)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("the server's reply: {e}")))
}
