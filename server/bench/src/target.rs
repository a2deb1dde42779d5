//! The servers under test: a `framelog` process on a temporary data directory, or kinesalite
//! (the Node.js KDS emulator, our named baseline), each on a free loopback port.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[derive(Debug)]
pub struct Target {
    pub name: &'static str,
    pub address: SocketAddr,
    child: Child,
    _data: Option<tempfile::TempDir>,
}

fn free_address() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Target {
    pub fn framelog(binary: &Path) -> anyhow::Result<Target> {
        let data = tempfile::tempdir_in(".")?;
        let mut target = Target::framelog_in(binary, data.path())?;
        target._data = Some(data);
        Ok(target)
    }

    /// A framelog server with its own data directory on a given address.
    pub fn framelog_at(binary: &Path, address: SocketAddr) -> anyhow::Result<Target> {
        let data = tempfile::tempdir_in(".")?;
        let mut target = Target::spawn_framelog(binary, data.path(), address)?;
        target._data = Some(data);
        Ok(target)
    }

    /// A framelog server on an existing data directory (which outlives it).
    pub fn framelog_in(binary: &Path, data_dir: &Path) -> anyhow::Result<Target> {
        Target::spawn_framelog(binary, data_dir, free_address()?)
    }

    /// A framelog server started with `--config` of `toml`, written to `<scratch>/<name>.toml`,
    /// on the data directory `<scratch>/<name>-data`.
    pub fn framelog_configured(binary: &Path, scratch: &Path, name: &str, toml: &str) -> anyhow::Result<Target> {
        let config = scratch.join(format!("{name}.toml"));
        std::fs::write(&config, toml)?;
        let data = scratch.join(format!("{name}-data"));
        Target::framelog_with(binary, &data, &["--config".into(), config.into_os_string()], None)
    }

    /// A framelog server with more `serve` flags (credentials, TLS); `pin_core` runs it on that
    /// one CPU core (taskset), for per-core figures.
    pub fn framelog_with(
        binary: &Path,
        data_dir: &Path,
        extra: &[std::ffi::OsString],
        pin_core: Option<u32>,
    ) -> anyhow::Result<Target> {
        let address = free_address()?;
        let mut command = match pin_core {
            Some(core) => {
                let mut command = Command::new("taskset");
                command.args(["-c", &core.to_string()]).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let child = command
            .args(["serve", "--listen", &address.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", std::env::var("FRAMELOG_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Target { name: "framelog", address, child, _data: None }.ready()
    }

    fn spawn_framelog(binary: &Path, data_dir: &Path, address: SocketAddr) -> anyhow::Result<Target> {
        let child = Command::new(binary)
            .args(["serve", "--listen", &address.to_string(), "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Target { name: "framelog", address, child, _data: None }.ready()
    }

    pub fn kinesalite(script: &Path) -> anyhow::Result<Target> {
        let address = free_address()?;
        // Streams become ACTIVE at once, as in framelog, so no waiting is measured.
        let child = Command::new(script)
            .args(["--port", &address.port().to_string(), "--createStreamMs", "0", "--shardLimit", "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        Target { name: "kinesalite", address, child, _data: None }.ready()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn ready(mut self) -> anyhow::Result<Target> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&self.address, Duration::from_millis(200)).is_ok() {
                return Ok(self);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited during start-up: {status}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("{} did not start listening", self.name)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
