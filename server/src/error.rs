//! Start-up errors, and API errors with the one place that maps them to an HTTP status and an AWS error type.

use std::path::{Path, PathBuf};

use framelog_store::StoreError;

/// Why the server could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the engine failed")]
    Store(#[from] StoreError),
    #[error("the GStreamer decode pool could not start")]
    Imaging(#[from] framelog_imaging::ImagingError),
    #[error("the configuration is invalid: {0}")]
    Config(String),
    #[error("TLS is not configured correctly")]
    Tls(#[from] crate::tls::TlsError),
    #[error("serving HTTP failed")]
    Serve(#[source] std::io::Error),
    /// Kept as a boxed source so this module does not import the auth module (which maps its
    /// refusals through this one).
    #[error("authentication is not configured safely")]
    Auth(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("backup or restore: {0}")]
    Backup(String),
    #[error("a shutdown step panicked")]
    Join(#[from] tokio::task::JoinError),
}

impl ServerError {
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        ServerError::Io { action, path: path.to_path_buf(), source }
    }
}

/// The AWS error types this server answers with. The names are the wire `__type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    ResourceNotFound,
    ResourceInUse,
    InvalidArgument,
    ExpiredIterator,
    ExpiredNextToken,
    LimitExceeded,
    ProvisionedThroughputExceeded,
    Validation,
    Serialization,
    UnknownOperation,
    MissingAuthenticationToken,
    IncompleteSignature,
    InvalidSignature,
    UnrecognizedClient,
    ExpiredToken,
    VersionMismatch,
    TagsPerResourceExceededLimit,
    NoDataRetention,
    UnsupportedStreamMediaType,
    MissingCodecPrivateData,
    InvalidMediaFrame,
    ClientLimitExceeded,
    AccessDenied,
    UnsupportedMediaType,
    ConcurrentModification,
    /// A lease change whose condition no longer holds (the lease API's, named as DynamoDB
    /// names it for the KCL's lease table).
    ConditionalCheckFailed,
    /// CloudWatch's refusals of a parameter (InvalidParameterValueException), of a missing one
    /// and of two that do not go together; and of a paging token it did not issue.
    InvalidParameterValue,
    MissingParameter,
    InvalidParameterCombination,
    InvalidNextToken,
    /// Kinesis Data Analytics: application code that does not compile (its message names the
    /// line and column), a configuration that cannot run, too many tags, a stream whose records
    /// give no schema, a member this server does not support.
    CodeValidation,
    InvalidApplicationConfiguration,
    TooManyTags,
    UnableToDetectSchema,
    UnsupportedOperation,
    /// Firehose's throttling answer (a fault: 503, which SDKs retry).
    ServiceUnavailable,
    InternalFailure,
}

/// Which AWS service's conventions an answer follows; they differ in status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Kinesis Data Streams (awsJson1_1): every client error is 400.
    Kds,
    /// Kinesis Video Streams (rest-json): a missing resource is 404.
    Kvs,
    /// CloudWatch (Smithy RPC v2 CBOR, awsJson1_0, query-compatible): client errors are 400,
    /// authentication refusals 403, as its query protocol answered.
    CloudWatch,
}

impl ErrorType {
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::ResourceNotFound => "ResourceNotFoundException",
            ErrorType::ResourceInUse => "ResourceInUseException",
            ErrorType::InvalidArgument => "InvalidArgumentException",
            ErrorType::ExpiredIterator => "ExpiredIteratorException",
            ErrorType::ExpiredNextToken => "ExpiredNextTokenException",
            ErrorType::LimitExceeded => "LimitExceededException",
            ErrorType::ProvisionedThroughputExceeded => "ProvisionedThroughputExceededException",
            ErrorType::Validation => "ValidationException",
            ErrorType::Serialization => "SerializationException",
            ErrorType::UnknownOperation => "UnknownOperationException",
            ErrorType::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            ErrorType::IncompleteSignature => "IncompleteSignatureException",
            ErrorType::InvalidSignature => "InvalidSignatureException",
            ErrorType::UnrecognizedClient => "UnrecognizedClientException",
            ErrorType::ExpiredToken => "ExpiredTokenException",
            ErrorType::VersionMismatch => "VersionMismatchException",
            ErrorType::TagsPerResourceExceededLimit => "TagsPerResourceExceededLimitException",
            ErrorType::NoDataRetention => "NoDataRetentionException",
            ErrorType::UnsupportedStreamMediaType => "UnsupportedStreamMediaTypeException",
            ErrorType::MissingCodecPrivateData => "MissingCodecPrivateDataException",
            ErrorType::InvalidMediaFrame => "InvalidMediaFrameException",
            ErrorType::ClientLimitExceeded => "ClientLimitExceededException",
            ErrorType::AccessDenied => "AccessDeniedException",
            ErrorType::UnsupportedMediaType => "UnsupportedMediaTypeException",
            ErrorType::ConcurrentModification => "ConcurrentModificationException",
            ErrorType::ConditionalCheckFailed => "ConditionalCheckFailedException",
            ErrorType::CodeValidation => "CodeValidationException",
            ErrorType::InvalidApplicationConfiguration => "InvalidApplicationConfigurationException",
            ErrorType::TooManyTags => "TooManyTagsException",
            ErrorType::UnableToDetectSchema => "UnableToDetectSchemaException",
            ErrorType::UnsupportedOperation => "UnsupportedOperationException",
            ErrorType::InvalidParameterValue => "InvalidParameterValueException",
            ErrorType::MissingParameter => "MissingRequiredParameterException",
            ErrorType::InvalidParameterCombination => "InvalidParameterCombinationException",
            ErrorType::InvalidNextToken => "InvalidNextToken",
            ErrorType::ServiceUnavailable => "ServiceUnavailableException",
            ErrorType::InternalFailure => "InternalFailure",
        }
    }

    /// A refusal to authenticate or authorize.
    pub fn is_auth(self) -> bool {
        matches!(
            self,
            ErrorType::MissingAuthenticationToken
                | ErrorType::IncompleteSignature
                | ErrorType::InvalidSignature
                | ErrorType::UnrecognizedClient
                | ErrorType::ExpiredToken
                | ErrorType::AccessDenied
        )
    }

    /// The HTTP status each service sends for this error.
    pub fn status(self, protocol: Protocol) -> u16 {
        match (self, protocol) {
            (ErrorType::InternalFailure, _) => 500,
            (ErrorType::ServiceUnavailable, _) => 503,
            (ErrorType::UnsupportedMediaType, _) => 415,
            // KDS answers every authentication and authorization refusal with 400, as its JSON
            // protocol does for all client errors; KVS's front door answers 403.
            (kind, Protocol::Kvs | Protocol::CloudWatch) if kind.is_auth() => 403,
            (kind, Protocol::Kds) if kind.is_auth() => 400,
            (ErrorType::ResourceNotFound, Protocol::Kvs) => 404,
            _ => 400,
        }
    }
}

impl ErrorType {
    /// CloudWatch's shape name, its query-compatible code (what clients show) and whose fault
    /// it is, for `x-amzn-query-error`.
    pub fn cloudwatch_codes(self) -> (&'static str, &'static str, &'static str) {
        match self {
            ErrorType::InvalidParameterValue => ("InvalidParameterValueException", "InvalidParameterValue", "Sender"),
            ErrorType::MissingParameter => ("MissingRequiredParameterException", "MissingParameter", "Sender"),
            ErrorType::InvalidParameterCombination => {
                ("InvalidParameterCombinationException", "InvalidParameterCombination", "Sender")
            }
            ErrorType::InvalidNextToken => ("InvalidNextToken", "InvalidNextToken", "Sender"),
            ErrorType::InternalFailure => ("InternalServiceFault", "InternalServiceError", "Receiver"),
            ErrorType::InvalidSignature => ("InvalidSignatureException", "SignatureDoesNotMatch", "Sender"),
            ErrorType::UnrecognizedClient => ("UnrecognizedClientException", "InvalidClientTokenId", "Sender"),
            ErrorType::ServiceUnavailable => ("ServiceUnavailableException", "ServiceUnavailable", "Receiver"),
            other => (other.name(), other.name().trim_end_matches("Exception"), "Sender"),
        }
    }
}

/// An error answered to a client. Internal causes are logged where they are converted, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: Option<String>,
}

impl ApiError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self { kind, message: Some(message.into()) }
    }

    pub fn bare(kind: ErrorType) -> Self {
        Self { kind, message: None }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorType::InvalidArgument, message)
    }

    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Serialization, message)
    }

    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, source = ?cause.source().map(|s| s.to_string()), "internal failure");
        Self::bare(ErrorType::InternalFailure)
    }

    /// KVS's body: `{"Message": ...}` (the type travels in the `x-amzn-ErrorType` header).
    pub fn kvs_body(&self) -> serde_json::Value {
        serde_json::json!({"Message": self.message.clone().unwrap_or_default()})
    }

    /// KDS's body: `{"__type": ..., "message": ...}`; SerializationException says `Message`,
    /// as KDS does.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("__type".into(), self.kind.name().into());
        if let Some(message) = &self.message {
            let key = if self.kind == ErrorType::Serialization { "Message" } else { "message" };
            body.insert(key.into(), message.clone().into());
        }
        serde_json::Value::Object(body)
    }
}

/// The engine's errors as clients see them: a missing or existing stream is the client's error
/// (KVS's wording; KDS answers through `from_store`, which names the account), anything else is an
/// internal failure, logged once here.
impl From<framelog_analytics::AnalyticsError> for ApiError {
    fn from(error: framelog_analytics::AnalyticsError) -> Self {
        use framelog_analytics::AnalyticsError;
        match error {
            AnalyticsError::Code { .. } | AnalyticsError::Plan(_) => {
                ApiError::new(ErrorType::CodeValidation, error.to_string())
            }
            AnalyticsError::Schema(message) => ApiError::invalid(message),
            AnalyticsError::Runtime(_) => ApiError::internal(&error),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::StreamNotFound(_) | StoreError::StreamDeleted(_) | StoreError::ShardNotFound { .. } => {
                ApiError::new(ErrorType::ResourceNotFound, "The requested stream is not found or not active.")
            }
            StoreError::StreamExists(_) => ApiError::new(ErrorType::ResourceInUse, "The stream already exists."),
            StoreError::DiskFull { .. } => disk_full(&error),
            other => ApiError::internal(&other),
        }
    }
}

/// A write refused by the free-space watermark: a server failure a client retries (InternalFailure
/// is retried by every AWS SDK), with the reason spelled out for the operator reading the error.
fn disk_full(error: &StoreError) -> ApiError {
    tracing::warn!(%error, "write refused");
    ApiError::new(ErrorType::InternalFailure, format!("Internal service failure: {error}; nothing was stored."))
}

/// Maps an engine error for a stream named `stream` in `account` to what KDS would answer.
pub fn from_store(error: StoreError, account: &str) -> ApiError {
    match error {
        StoreError::StreamNotFound(name) | StoreError::StreamDeleted(name) => {
            ApiError::new(ErrorType::ResourceNotFound, format!("Stream {name} under account {account} not found."))
        }
        StoreError::StreamExists(name) => {
            ApiError::new(ErrorType::ResourceInUse, format!("Stream {name} under account {account} already exists."))
        }
        StoreError::ShardNotFound { stream, shard } => ApiError::new(
            ErrorType::ResourceNotFound,
            format!("Shard shardId-{shard:012} in stream {stream} under account {account} does not exist"),
        ),
        StoreError::DiskFull { .. } => disk_full(&error),
        other => ApiError::internal(&other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialization_errors_use_capital_message_like_kds() {
        let body = ApiError::serialization("bad").body();
        assert_eq!(body, serde_json::json!({"__type": "SerializationException", "Message": "bad"}));
        let body = ApiError::invalid("x").body();
        assert_eq!(body, serde_json::json!({"__type": "InvalidArgumentException", "message": "x"}));
    }

    #[test]
    fn missing_stream_maps_to_resource_not_found_with_the_kds_message() {
        let error = from_store(StoreError::StreamNotFound("nope".into()), "000000000000");
        assert_eq!(error.kind.status(Protocol::Kds), 400);
        assert_eq!(error.kind.status(Protocol::Kvs), 404);
        assert_eq!(error.message.as_deref(), Some("Stream nope under account 000000000000 not found."));
    }
}
