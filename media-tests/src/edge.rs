//! Running `framelog-edge` in tests: start it with a config, read its `/status`, stop it with
//! SIGTERM or kill it with SIGKILL, and start it again on the same buffer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The `framelog-edge` binary: `FRAMELOG_EDGE_BIN`, or next to the test binary's target dir.
pub fn framelog_edge_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("FRAMELOG_EDGE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let candidate =
        exe.parent().and_then(Path::parent).map(|dir| dir.join("framelog-edge")).context("no target dir")?;
    if candidate.exists() {
        Ok(candidate)
    } else {
        bail!("framelog-edge not found at {} (build it, or set FRAMELOG_EDGE_BIN)", candidate.display())
    }
}

/// A running agent.
#[derive(Debug)]
pub struct EdgeAgent {
    child: Option<Child>,
    config_path: PathBuf,
    pub status_address: SocketAddr,
}

/// A free loopback address for an agent's status endpoint.
pub fn free_status_address() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl EdgeAgent {
    /// Writes `config` (which must set `status_listen` to `status_address`) to `dir/edge.toml`
    /// and starts the agent; returns once its status endpoint answers.
    pub fn start(config: &str, dir: &Path, status_address: SocketAddr) -> anyhow::Result<EdgeAgent> {
        let config_path = dir.join("edge.toml");
        std::fs::write(&config_path, config)?;
        let mut agent = EdgeAgent { child: None, config_path, status_address };
        agent.spawn()?;
        Ok(agent)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.config_path.with_extension("log"))?;
        let child = Command::new(framelog_edge_bin()?)
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.status().is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("framelog-edge exited at start-up: {status}; log: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("framelog-edge did not answer on {}", self.status_address)
    }

    /// Whether the agent process is still alive: it has not exited on an error.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// The agent's log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config_path.with_extension("log")).unwrap_or_default()
    }

    /// `GET /status`: one JSON object per stream.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let body = http_get(self.status_address, "/status")?;
        Ok(serde_json::from_str(&body)?)
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> anyhow::Result<String> {
        http_get(self.status_address, "/metrics")
    }

    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        bail!("framelog-edge did not stop within 30 s of SIGTERM")
    }

    /// Starts the agent again with the same config and buffer.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9()?;
        self.spawn()
    }
}

impl Drop for EdgeAgent {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("no HTTP header end")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"), "{head}");
    Ok(body.to_string())
}
