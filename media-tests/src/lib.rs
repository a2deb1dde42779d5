//! framelog-media-tests: helpers for end-to-end tests that run the real `framelog` binary.
//!
//! [`Server`] starts `framelog serve` on a free loopback port with its own data directory, waits
//! until it accepts connections, and can stop it gracefully, kill it with SIGKILL, or restart it
//! on the same data directory. The binary is taken from `FRAMELOG_BIN`, or else from the cargo
//! target directory this test binary was built into.

pub mod edge;
pub mod fault_proxy;
pub mod faultfs;

use std::ffi::OsString;
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
    /// Flags beyond --listen and --data-dir (TLS, credentials), kept across restarts.
    extra_args: Vec<OsString>,
    scheme: &'static str,
    _temp: Option<tempfile::TempDir>,
}

/// What a client of a `Server::start_secure` server needs: the CA to trust and its key.
#[derive(Debug, Clone)]
pub struct Secure {
    pub ca_file: PathBuf,
    pub access_key_id: String,
    pub secret_access_key: String,
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
        Server::start_at(data_dir, SocketAddr::from(([127, 0, 0, 1], free_port()?)), Vec::new(), "http")
    }

    /// Starts a server on a fresh data directory with more `serve` flags (e.g. `--config`).
    pub fn start_with_args(args: Vec<OsString>) -> anyhow::Result<Server> {
        let temp = tempfile::tempdir()?;
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut server = Server::start_at(&temp.path().join("data"), address, args, "http")?;
        server._temp = Some(temp);
        Ok(server)
    }

    /// Starts an HTTPS server that verifies signatures: development certificates from
    /// `framelog cert --dev` and one key from `framelog keys add`, both made by the binary itself.
    pub fn start_secure() -> anyhow::Result<(Server, Secure)> {
        let temp = tempfile::tempdir()?;
        let tls_dir = temp.path().join("tls");
        let made = Command::new(framelog_bin()?).args(["cert", "--dev", "--out"]).arg(&tls_dir).output()?;
        anyhow::ensure!(made.status.success(), "framelog cert failed: {}", String::from_utf8_lossy(&made.stderr));
        let credentials = temp.path().join("credentials.json");
        let added =
            Command::new(framelog_bin()?).args(["keys", "add", "e2e", "--credentials"]).arg(&credentials).output()?;
        anyhow::ensure!(added.status.success(), "framelog keys add failed: {}", String::from_utf8_lossy(&added.stderr));
        let key: serde_json::Value = serde_json::from_slice(&added.stdout)?;
        let field = |name: &str| key[name].as_str().map(str::to_string).context("keys add printed no key");
        let secure = Secure {
            ca_file: tls_dir.join("ca.pem"),
            access_key_id: field("AccessKeyId")?,
            secret_access_key: field("SecretAccessKey")?,
        };
        let args: Vec<OsString> = vec![
            "--tls-cert".into(),
            tls_dir.join("server.pem").into(),
            "--tls-key".into(),
            tls_dir.join("server-key.pem").into(),
            "--credentials".into(),
            credentials.into(),
        ];
        let data_dir = temp.path().join("data");
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut server = Server::start_at(&data_dir, address, args, "https")?;
        server._temp = Some(temp);
        Ok((server, secure))
    }

    fn start_at(
        data_dir: &Path,
        address: SocketAddr,
        extra_args: Vec<OsString>,
        scheme: &'static str,
    ) -> anyhow::Result<Server> {
        let child = Command::new(framelog_bin()?)
            .args(["serve", "--listen", &address.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(&extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning framelog")?;
        let mut server =
            Server { child: Some(child), address, data_dir: data_dir.to_path_buf(), extra_args, scheme, _temp: None };
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
        format!("{}://{}", self.scheme, self.address)
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
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let fresh = Server::start_at(&self.data_dir, address, self.extra_args.clone(), self.scheme)?;
        self.address = fresh.address;
        self.child = fresh.into_child();
        Ok(())
    }

    /// Starts a new process on the same data directory and the same port, as a server that
    /// comes back after a crash does (clients keep their endpoint).
    pub fn restart_on_same_port(&mut self) -> anyhow::Result<()> {
        let fresh = Server::start_at(&self.data_dir, self.address, self.extra_args.clone(), self.scheme)?;
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
