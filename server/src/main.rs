//! `framelog`: the server binary. Thin glue: parse flags and config, bind, run the library until
//! SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use framelog_server::admin::{self, AdminReply, AdminRequest};
use framelog_server::auth::Policy;
use framelog_server::tls::TlsSettings;
use framelog_server::{Config, FileConfig};

/// jemalloc for every allocation, RocksDB's C++ ones too (the crate's unprefixed symbols), set up
/// in .cargo/config.toml to give freed pages back within a second: with its own defaults it kept
/// the pages each memtable flush freed, and the soak's RSS rose while the live heap stayed flat.
/// Its statistics go to `/metrics` (docs/benchmarks.md, soak runs 6 and 7).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "framelog",
    version,
    about = "Self-hosted video ingest and shard log server, wire-compatible with AWS Kinesis"
)]
struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one object a line, with the
    /// request's span fields) for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the server on the embedded RocksDB store.
    Serve {
        /// Address to listen on [default: 127.0.0.1:4566].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where the store lives [default: ./data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A TOML file with the same keys (listen, data_dir, region, account_id, shard_limit, trim_interval_secs,
        /// video_retention_hours, public_url, and an [auth] table).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The credentials file (`framelog keys add` writes it). Without one, any signature is accepted and
        /// the server refuses to listen on anything but loopback.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's PEM private key.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Write certificates for local HTTPS: a new local CA (ca.pem) and a certificate it signs for
    /// localhost and 127.0.0.1 (server.pem, server-key.pem).
    Cert {
        /// Development certificates (the only kind this command makes).
        #[arg(long, required = true)]
        dev: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// Decode video for the server that started this process (jobs on stdin, pictures on stdout).
    #[command(hide = true)]
    DecodeWorker {
        #[arg(long)]
        memory_limit_mib: u64,
    },
    /// Transcode one H.265 stream to H.264 for the server that started this process (frames on
    /// stdin and stdout).
    #[command(hide = true)]
    TranscodeWorker {
        #[arg(long)]
        memory_limit_mib: u64,
    },
    /// Copy a data dir into a new directory: through the running server's admin socket while it
    /// serves, or directly when no server runs on the data dir.
    Backup {
        /// The data dir to copy [default: the config's, else ./data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// The server's config file (for its data dir, credentials and master key file).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the copy goes: a directory that does not exist yet, or is empty.
        #[arg(long)]
        to: PathBuf,
    },
    /// Bring a backup back into a new (empty) data dir; start the server on it afterwards.
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Manage the access keys of a credentials file.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key pair for NAME, store it in the credentials file (0600) and print it once as JSON.
    Add {
        name: String,
        #[arg(long)]
        credentials: PathBuf,
        /// An IAM policy document (JSON) for the key [default: allow everything].
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve { listen, data_dir, config, credentials, tls_cert, tls_key } => {
            let flags = ServeFlags { listen, data_dir, config, credentials, tls: tls_cert.zip(tls_key) };
            serve_command(flags)
        }
        Command::Cert { dev: _, out } => {
            let written = framelog_server::tls::write_dev_certificates(&out)?;
            println!("CA (give it to clients): {}", written.ca.display());
            println!(
                "start with: framelog serve --tls-cert {} --tls-key {}",
                written.cert.display(),
                written.key.display()
            );
            Ok(())
        }
        Command::Backup { data_dir, config, to } => backup_command(data_dir, config, &to),
        Command::Restore { from, data_dir } => restore_command(&from, &data_dir),
        Command::Keys { command: KeysCommand::Add { name, credentials, policy } } => {
            add_key(&name, &credentials, policy)
        }
        Command::DecodeWorker { memory_limit_mib } => {
            let limits =
                framelog_imaging::WorkerLimits { memory_limit_bytes: memory_limit_mib.saturating_mul(1 << 20) };
            Ok(framelog_imaging::serve_decode_worker(limits)?)
        }
        Command::TranscodeWorker { memory_limit_mib } => {
            let limits =
                framelog_imaging::WorkerLimits { memory_limit_bytes: memory_limit_mib.saturating_mul(1 << 20) };
            Ok(framelog_imaging::serve_transcode_worker(limits)?)
        }
    }
}

/// The serve command's flags, which win over the config file.
struct ServeFlags {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    credentials: Option<PathBuf>,
    tls: Option<(PathBuf, PathBuf)>,
}

fn serve_command(flags: ServeFlags) -> anyhow::Result<()> {
    let ServeFlags { listen, data_dir, config, credentials, tls } = flags;
    let mut settings = load_settings(config, data_dir)?;
    settings.listen = listen.unwrap_or(settings.listen);
    settings.auth.credentials_file = credentials.or(settings.auth.credentials_file);
    if let Some((cert_file, key_file)) = tls {
        settings.tls = Some(TlsSettings { cert_file, key_file });
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve(settings))
}

/// The defaults, then the config file, then the data dir flag.
fn load_settings(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<Config> {
    let mut settings = Config::default();
    // Decoding runs in helper processes of this same binary unless the file turns it off.
    settings.images.decoder_program = Some(std::env::current_exe().context("locating the framelog binary")?);
    if let Some(path) = config {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let file: FileConfig = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        settings = settings.merge(file);
        settings.config_file = Some(std::path::absolute(&path)?);
    }
    settings.data_dir = data_dir.unwrap_or(settings.data_dir);
    Ok(settings)
}

fn backup_command(data_dir: Option<PathBuf>, config: Option<PathBuf>, to: &Path) -> anyhow::Result<()> {
    let settings = load_settings(config, data_dir)?;
    // The server resolves the path from its own working directory.
    let to = std::path::absolute(to)?;
    let request = AdminRequest::Backup { to: to.clone() };
    let manifest = match admin::request(&settings.data_dir, &request)
        .with_context(|| format!("asking the server on {}", settings.data_dir.display()))?
    {
        Some(AdminReply::BackedUp(manifest)) => manifest,
        Some(AdminReply::Failed(reason)) => anyhow::bail!("the server could not make the backup: {reason}"),
        None => {
            anyhow::ensure!(settings.cluster.is_none(), "a cluster node keeps nothing in its data dir to back up");
            // Opening a missing engine would create an empty one and back that up.
            let current = settings.data_dir.join("engine").join("CURRENT");
            anyhow::ensure!(current.exists(), "{} holds no Framelog engine", settings.data_dir.display());
            eprintln!("no server runs on {}: copying it directly", settings.data_dir.display());
            let options = framelog_store::EngineOptions { min_free_disk_bytes: 0, ..Default::default() };
            let engine_dir = settings.data_dir.join("engine");
            let engine =
                framelog_store::Engine::open(&engine_dir, std::sync::Arc::new(framelog_store::SystemClock), options)
                    .with_context(|| format!("opening {}", engine_dir.display()))?;
            framelog_server::backup::backup(&engine, &settings, &to)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    eprintln!("backed up to {}", to.display());
    Ok(())
}

fn restore_command(from: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let manifest = framelog_server::backup::restore(from, data_dir)?;
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    eprintln!("restored into {}: start with framelog serve --data-dir {}", data_dir.display(), data_dir.display());
    for (name, flag) in [("credentials.json", "--credentials"), ("config.toml", "--config")] {
        if manifest.files.iter().any(|f| f == name) {
            eprintln!("the backup holds the server's {name}: pass it as {flag} {}", from.join(name).display());
        }
    }
    Ok(())
}

fn add_key(name: &str, credentials: &Path, policy: Option<PathBuf>) -> anyhow::Result<()> {
    let policy = match policy {
        Some(path) => {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => {
            eprintln!("no --policy given: the key may do everything");
            Policy::allow_all_json()
        }
    };
    let key = framelog_server::auth::add_key(credentials, name, policy)?;
    // The only time the secret is shown: the file keeps it, nothing else does.
    let shown = serde_json::json!({
        "UserName": key.user_name,
        "AccessKeyId": key.access_key_id,
        "SecretAccessKey": key.secret_access_key,
    });
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(())
}

/// Lets the server hold as many sockets as the system allows this process: the default soft
/// limit (often 1024) would end a server with a thousand idle clients before its own limits do.
#[cfg(unix)]
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%error, "could not raise the open files limit");
        }
    }
}

async fn serve(settings: Config) -> anyhow::Result<()> {
    #[cfg(unix)]
    raise_open_files_limit();
    let listener =
        tokio::net::TcpListener::bind(settings.listen).await.with_context(|| format!("binding {}", settings.listen))?;
    let address = listener.local_addr()?;
    let scheme = if settings.tls.is_some() { "https" } else { "http" };
    println!("framelog listening on {scheme}://{address} (point clients at --endpoint-url {scheme}://{address})");
    println!("web console: open {scheme}://{address}/ in a browser");
    framelog_server::run(settings, listener, shutdown_signal()).await.context("the server stopped with an error")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
