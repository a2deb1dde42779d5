//! Why a signature was not accepted. Each variant maps to the AWS error a client expects.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The header is not `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
    #[error("{0}")]
    Incomplete(String),
    /// A header the signature covers is absent, or `host` / `x-amz-date` is not signed.
    #[error("{0}")]
    MissingSignedHeader(String),
    /// The computed signature differs.
    #[error("The request signature we calculated does not match the signature you provided.")]
    Mismatch,
}
