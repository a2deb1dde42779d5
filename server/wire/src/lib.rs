//! The public wire between Framelog's parts, in one place: the server writes acknowledgements
//! with it, the SDK and the edge agent read them with it, and all of them classify an ack error
//! the same way (docs/spec/kvs.md describes the format in words).
//!
//! Pure and synchronous: no HTTP client or server, no I/O.

mod ack;
mod ack_error;
mod backoff;
pub mod headers;
pub mod kpl_aggregate;
pub mod playback_session;
mod token;

pub use ack::{Ack, AckLines, AckParseError};
pub use ack_error::{AckError, AckErrorClass, classify};
pub use backoff::Backoff;
pub use token::Signer;
