//! What every Kinesis Data Analytics operation and runner needs: the engine, the account, the
//! KDS and Firehose services outputs write through, and how an application's name maps to its
//! engine stream.

use framelog_store::{Engine, StoreError, StreamHandle, StreamKind};

use super::spec::ApplicationSpec;
use crate::consumers::webhook_url::WebhookUrl;
use crate::error::{ApiError, ErrorType};
use crate::firehose::FirehoseCtx;
use crate::kds::KdsCtx;

/// Applications live in the engine under this prefix, apart from every other name
/// (engine_metrics.rs strips it too).
const ENGINE_PREFIX: &str = "analytics/";

#[derive(Debug, Clone)]
pub struct AnalyticsCtx {
    pub engine: Engine,
    pub account_id: String,
    pub region: String,
    /// Outputs to KDS streams and inputs from them.
    pub kds: KdsCtx,
    /// Outputs to delivery streams, inputs from them, and the buckets reference data is read from.
    pub firehose: FirehoseCtx,
    /// Tells the runner supervisor that an application changed (crate::leased).
    pub changes: tokio::sync::mpsc::UnboundedSender<()>,
}

impl AnalyticsCtx {
    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:kinesisanalytics:{}:{}:application/{name}", self.region, self.account_id)
    }

    pub fn engine_name(name: &str) -> String {
        format!("{ENGINE_PREFIX}{name}")
    }

    pub fn not_found(&self, name: &str) -> ApiError {
        ApiError::new(ErrorType::ResourceNotFound, format!("Application {name} is not found"))
    }

    pub fn store_error(&self, name: &str, error: StoreError) -> ApiError {
        match error {
            StoreError::StreamNotFound(_) | StoreError::StreamDeleted(_) => self.not_found(name),
            StoreError::StreamExists(_) => {
                ApiError::new(ErrorType::ResourceInUse, format!("Application {name} already exists"))
            }
            other => other.into(),
        }
    }

    /// The application `name` and its definition.
    pub fn lookup(&self, name: &str) -> Result<(StreamHandle, ApplicationSpec), ApiError> {
        let handle = self.engine.stream(&Self::engine_name(name)).map_err(|e| self.store_error(name, e))?;
        let meta = handle.meta();
        if meta.kind != StreamKind::Application {
            return Err(self.not_found(name));
        }
        let spec = ApplicationSpec::from_settings(&meta.settings).ok_or_else(|| self.not_found(name))?;
        Ok((handle, spec))
    }

    /// Every application, by name.
    pub fn applications(&self) -> Vec<(StreamHandle, ApplicationSpec)> {
        let mut found: Vec<(StreamHandle, ApplicationSpec)> = self
            .engine
            .streams()
            .into_iter()
            .filter_map(|handle| {
                let meta = handle.meta();
                let spec = ApplicationSpec::from_settings(&meta.settings)?;
                (meta.kind == StreamKind::Application).then_some((handle, spec))
            })
            .collect();
        found.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        found
    }

    /// The URL standing in for the Lambda function `arn` names: `[lambda_functions.NAME]` in the
    /// server's config, as for Firehose's processors (InvalidArgument when it is not there).
    pub fn function_url(&self, arn: &str) -> Result<WebhookUrl, ApiError> {
        self.firehose.lambda_url(&super::api::lambda_function(arn)?)
    }

    /// The engine stream an input or output ARN names: a KDS stream or a delivery stream.
    pub fn stream_of_arn(&self, arn: &str) -> Option<StreamHandle> {
        if let Some((_, name)) = arn.rsplit_once(":stream/") {
            return self.engine.stream(name).ok().filter(|h| h.meta().kind == StreamKind::Data);
        }
        let (_, name) = arn.rsplit_once(":deliverystream/")?;
        self.engine.stream(&FirehoseCtx::engine_name(name)).ok().filter(|h| h.meta().kind == StreamKind::Delivery)
    }
}
