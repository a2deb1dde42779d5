//! framelog-media-tests: helpers for end-to-end tests that run the real `framelog` binary.
//!
//! [`Server`] starts `framelog serve` on a free loopback port with its own data directory, waits
//! until it accepts connections, and can stop it gracefully, kill it with SIGKILL, or restart it
//! on the same data directory. The binary is taken from `FRAMELOG_BIN`, or else from the cargo
//! target directory this test binary was built into.

pub mod edge;
pub mod fault_proxy;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running `framelog` process on loopback.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    address: SocketAddr,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// The `framelog` binary under test.
pub fn framelog_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("FRAMELOG_BIN") {
        return Ok(PathBuf::from(path));
    }
    // Test binaries live in <target>/<profile>/deps; the server binary one level up.
    let exe = std::env::current_exe()?;
    let candidate = exe.parent().and_then(Path::parent).map(|dir| dir.join("framelog")).context("no target dir")?;
    if candidate.exists() {
        Ok(candidate)
    } else {
        bail!("framelog binary not found at {} (build it, or set FRAMELOG_BIN)", candidate.display())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    /// Starts a server on a fresh temporary data directory.
    pub fn start() -> anyhow::Result<Server> {
        let temp = tempfile::tempdir()?;
        let mut server = Server::start_in(temp.path())?;
        server._temp = Some(temp);
        Ok(server)
    }

    /// Starts a server on an existing data directory.
    pub fn start_in(data_dir: &Path) -> anyhow::Result<Server> {
        Server::start_at(data_dir, SocketAddr::from(([127, 0, 0, 1], free_port()?)))
    }

    fn start_at(data_dir: &Path, address: SocketAddr) -> anyhow::Result<Server> {
        let child = Command::new(framelog_bin()?)
            .args(["serve", "--listen", &address.to_string(), "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning framelog")?;
        let mut server = Server { child: Some(child), address, data_dir: data_dir.to_path_buf(), _temp: None };
        server.wait_ready(Duration::from_secs(30))?;
        Ok(server)
    }

    fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&self.address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("framelog exited during start-up: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("framelog did not accept connections within {limit:?}")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for a clean exit; returns whether the exit status was success.
    pub fn stop(&mut self) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else { return Ok(true) };
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        bail!("framelog did not stop within 20 s of SIGTERM")
    }

    /// Starts a new process on the same data directory (after `kill9` or `stop`).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let fresh = Server::start_in(&self.data_dir)?;
        self.address = fresh.address;
        self.child = fresh.into_child();
        Ok(())
    }

    /// Starts a new process on the same data directory and the same port, as a server that
    /// comes back after a crash does (clients keep their endpoint).
    pub fn restart_on_same_port(&mut self) -> anyhow::Result<()> {
        let fresh = Server::start_at(&self.data_dir, self.address)?;
        self.child = fresh.into_child();
        Ok(())
    }

    fn into_child(mut self) -> Option<Child> {
        self.child.take()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
