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
    /// A cluster started by scripts/cluster.sh (docs/cluster.md): stopped when the target drops.
    cluster: Option<ClusterRun>,
}

/// A running `scripts/cluster.sh` cluster: its state directory and port block.
#[derive(Debug)]
pub struct ClusterRun {
    script: std::path::PathBuf,
    dir: std::path::PathBuf,
    port: u16,
    binary: std::path::PathBuf,
}

impl ClusterRun {
    /// Runs a `scripts/cluster.sh` subcommand on this cluster (`kill-node 2`, `start-node 2`).
    pub fn command(&self, args: &[&str]) -> anyhow::Result<()> {
        let status = Command::new("bash")
            .arg(&self.script)
            .args(args)
            .env("FRAMELOG_BIN", &self.binary)
            .env("FRAMELOG_CLUSTER_DIR", &self.dir)
            .env("FRAMELOG_CLUSTER_PORT", self.port.to_string())
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {}", self.script.display()))?;
        if !status.success() {
            bail!("cluster.sh {args:?} failed ({status}); logs in {}/log", self.dir.display());
        }
        Ok(())
    }

    fn node_pid(&self, node: u16) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("run/node{node}.pid"))).ok()?.trim().parse().ok()
    }
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
        let server_log = std::env::var("FRAMELOG_BENCH_SERVER_LOG").ok();
        let child = command
            .args(["serve", "--listen", &address.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", server_log.as_deref().unwrap_or("warn"))
            // A filter asked for is there to be read: the server's log then comes out here.
            .stdout(if server_log.is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Target { name: "framelog", address, child, _data: None, cluster: None }.ready()
    }

    fn spawn_framelog(binary: &Path, data_dir: &Path, address: SocketAddr) -> anyhow::Result<Target> {
        let child = Command::new(binary)
            .args(["serve", "--listen", &address.to_string(), "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Target { name: "framelog", address, child, _data: None, cluster: None }.ready()
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
        Target { name: "kinesalite", address, child, _data: None, cluster: None }.ready()
    }

    /// A cluster of three nodes on NATS and SeaweedFS behind HAProxy, all on this machine,
    /// started by `script` (scripts/cluster.sh) with its state in `dir`; `address` is HAProxy.
    pub fn cluster(binary: &Path, script: &Path, dir: &Path) -> anyhow::Result<Target> {
        let port = free_port_block()?;
        let run = ClusterRun { script: script.into(), dir: dir.into(), port, binary: binary.into() };
        run.command(&["up"])?;
        // A stand-in child: the cluster's processes are the script's, stopped by `down` on drop.
        let child = Command::new("sleep").arg("infinity").spawn().context("starting sleep")?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        Target { name: "framelog cluster", address, child, _data: None, cluster: Some(run) }.ready()
    }

    pub fn cluster_run(&self) -> Option<&ClusterRun> {
        self.cluster.as_ref()
    }

    /// The server process; for a cluster, node 1 (whose CPU and memory stand for one node's).
    pub fn pid(&self) -> u32 {
        match &self.cluster {
            Some(run) => run.node_pid(1).unwrap_or(0),
            None => self.child.id(),
        }
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
        if let Some(run) = &self.cluster {
            let _ = run.command(&["down"]);
        }
    }
}

/// The first port of a free block for scripts/cluster.sh (it uses base..base+50, and SeaweedFS's
/// gRPC ports 10000 above).
fn free_port_block() -> anyhow::Result<u16> {
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    // Below the ephemeral ports (32768 and up), SeaweedFS's gRPC ports (+10000) included.
    (100..220u16)
        .map(|n| n * 100)
        .find(|base| (*base..base + 50).chain(base + 10_040..base + 10_050).all(free))
        .context("no free block of 50 ports for the cluster")
}
