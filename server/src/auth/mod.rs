//! Who is calling, and whether they may: SigV4 authentication against the credentials file,
//! IAM-style policy evaluation, and the audit log. One middleware (`authorize`) runs in front of
//! every route that is not public, so an endpoint added later is protected without asking.
//!
//! Two modes, stated at start-up: with a credentials file every signature is verified and every
//! call is checked against the key's policy; without one, the server accepts any signature, which
//! `AuthSettings::check_mode` allows only on a loopback address.

mod audit;
mod keys;
mod middleware;
mod policy;
mod signature;
mod target;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use audit::AuditLog;
pub use keys::{Keys, KeysError, StoredKey, add_key};
pub use middleware::{MAX_BODY_BYTES, MAX_IN_FLIGHT_BYTES, authorize};
pub use policy::{Policy, wildcard_match};
pub use target::is_public;

/// Turns the names in a request into the ARNs policies are written against. Implemented where
/// the state is built, so this module knows neither KDS nor KVS.
pub trait Resources: Send + Sync + std::fmt::Debug {
    /// The ARN of a video stream by name; for a stream that does not exist yet (CreateStream),
    /// `arn:aws:kinesisvideo:<region>:<account>:stream/<name>/`, which `stream/<name>/*` matches.
    fn video_stream_arn(&self, name: &str) -> String;
    fn data_stream_arn(&self, name: &str) -> String;
    /// The data stream a shard iterator reads, if the iterator is ours.
    fn iterator_stream_arn(&self, iterator: &str) -> Option<String>;
    /// The data stream a ListShards NextToken continues, if the token is ours.
    fn list_token_stream_arn(&self, token: &str) -> Option<String>;
    /// The ARN of a Firehose delivery stream by name.
    fn delivery_stream_arn(&self, name: &str) -> String;
    /// The ARN of a Kinesis Data Analytics application by name.
    fn application_arn(&self, name: &str) -> String;
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Mode {
    /// No credentials file: any signature (or none) is accepted; loopback only.
    Open,
    /// Every signature is verified against these keys.
    Keys(Keys),
}

/// Everything the middleware needs.
#[derive(Debug)]
pub struct Auth {
    pub mode: Mode,
    pub region: String,
    pub account_id: String,
    pub audit: AuditLog,
    pub resources: Arc<dyn Resources>,
    /// Whether GET /metrics needs no signature (Prometheus cannot sign).
    pub public_metrics: bool,
    /// Bytes of request bodies held at once (one permit per byte, `MAX_IN_FLIGHT_BYTES` in all).
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

/// Who made a request; handlers may read it from the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub access_key_id: String,
    /// `None` in open mode.
    pub user_name: Option<String>,
}

/// The `[auth]` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthSettings {
    pub credentials_file: Option<PathBuf>,
    pub public_metrics: bool,
}

/// Why the server will not start as configured.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "refusing to listen on {0} without a credentials file: anyone who can reach it could read and delete \
         every stream. Create keys with `framelog keys add NAME --credentials FILE` and start with \
         `--credentials FILE`, or listen on 127.0.0.1"
    )]
    OpenOnNetwork(SocketAddr),
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error("opening the audit log")]
    Audit(#[source] std::io::Error),
}

impl AuthSettings {
    /// The mode for a server listening on `address`.
    pub fn mode(&self, address: SocketAddr) -> Result<Mode, AuthError> {
        match &self.credentials_file {
            Some(path) => Ok(Mode::Keys(Keys::open(path)?)),
            None if address.ip().is_loopback() => Ok(Mode::Open),
            None => Err(AuthError::OpenOnNetwork(address)),
        }
    }
}
