//! AWS Signature Version 4, verified on the server side.
//!
//! A client signs a request with a secret key; the server, knowing the same secret, rebuilds the
//! canonical request from what it received, derives the signing key for the request's date,
//! region and service, and compares signatures in constant time. The rules are AWS's
//! (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html); this crate
//! knows no HTTP library and no key store: callers hand it the request's parts and look the
//! secret up themselves.

mod authorization;
mod canonical;
mod error;
mod signing;

pub use authorization::{Authorization, Scope, parse_authorization};
pub use canonical::{PathEncoding, Request, canonical_request};
pub use error::SigV4Error;
pub use signing::{signature, signing_key, string_to_sign, verify};

/// The only algorithm AWS's Signature Version 4 header names.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
