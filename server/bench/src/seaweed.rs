//! SeaweedFS (`weed server -s3`, from scripts/setup.sh's venv) for the Firehose benchmark: one
//! server on free ports in a scratch directory, one identity, one bucket; stopped on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "bench";
pub const SECRET_KEY: &str = "bench-secret";
/// SeaweedFS's gRPC ports sit this far above their HTTP ports by its own convention.
const GRPC_OFFSET: u16 = 10_000;

pub struct Seaweed {
    child: Child,
    pub s3_endpoint: String,
    master: String,
    weed: std::path::PathBuf,
}

impl Seaweed {
    /// Starts SeaweedFS under `dir` and waits for its S3 port.
    pub fn start(weed: &Path, dir: &Path) -> anyhow::Result<Seaweed> {
        std::fs::create_dir_all(dir.join("data"))?;
        let identities = serde_json::json!({"identities": [{"name": "bench",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]});
        std::fs::write(dir.join("s3.json"), identities.to_string())?;
        let ports = free_ports(4)?;
        let (master, volume, filer, s3) = (ports[0], ports[1], ports[2], ports[3]);
        let port = |name: &str, value: u16| format!("-{name}={value}");
        let log = std::fs::File::create(dir.join("weed.log"))?;
        let child = Command::new(weed)
            .arg("server")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3", "-volume.max=0", "-master.volumeSizeLimitMB=256"])
            .args([port("master.port", master), port("volume.port", volume), port("filer.port", filer)])
            .args([port("master.port.grpc", master + GRPC_OFFSET), port("volume.port.grpc", volume + GRPC_OFFSET)])
            .args([
                port("filer.port.grpc", filer + GRPC_OFFSET),
                port("s3.port", s3),
                port("s3.port.grpc", s3 + GRPC_OFFSET),
            ])
            .arg(format!("-s3.config={}", dir.join("s3.json").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let seaweed = Seaweed {
            child,
            s3_endpoint: format!("http://127.0.0.1:{s3}"),
            master: format!("127.0.0.1:{master}"),
            weed: weed.into(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", s3)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "SeaweedFS's S3 port never opened");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(seaweed)
    }

    /// Creates `bucket` through `weed shell`, retrying while the volume server joins.
    pub fn make_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut shell = Command::new(&self.weed)
                .args(["shell", &format!("-master={}", self.master)])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(stdin) = shell.stdin.as_mut() {
                use std::io::Write as _;
                writeln!(stdin, "s3.bucket.create -name {bucket}")?;
            }
            let output = shell.wait_with_output()?;
            let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
            if output.status.success() && !text.to_lowercase().contains("error") {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "could not create bucket {bucket}: {text}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The `[buckets.NAME]` table pointing Framelog at `bucket` here.
    pub fn config_toml(&self, name: &str, bucket: &str) -> String {
        format!(
            "[buckets.{name}]\nendpoint = \"{}\"\nregion = \"us-east-1\"\nbucket = \"{bucket}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n",
            self.s3_endpoint
        )
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `count` ports free now whose gRPC neighbours (+10,000) are free too.
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let mut ports = Vec::new();
    let mut held = Vec::new();
    while ports.len() < count {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if port < u16::MAX - GRPC_OFFSET && std::net::TcpListener::bind(("127.0.0.1", port + GRPC_OFFSET)).is_ok() {
            ports.push(port);
        }
        held.push(listener);
    }
    Ok(ports)
}
