//! What every Firehose operation needs: the engine, the account, the buckets, and how a
//! delivery stream's name maps to its engine stream.

use framelog_store::{Engine, StoreError, StreamHandle, StreamKind};

use super::buckets::Buckets;
use super::format_conversion::GlueTables;
use super::processing::lambda::LambdaFunctionFile;
use super::spec::DeliveryStreamSpec;
use crate::error::{ApiError, ErrorType};

/// Delivery streams live in the engine under this prefix, apart from KDS and KVS names (which
/// cannot contain '/').
const ENGINE_PREFIX: &str = "firehose/";

#[derive(Debug, Clone)]
pub struct FirehoseCtx {
    pub engine: Engine,
    pub account_id: String,
    pub region: String,
    pub buckets: Buckets,
    /// `[lambda_functions.NAME]`: where each Lambda processor's function is.
    pub lambda_functions: std::collections::BTreeMap<String, LambdaFunctionFile>,
    /// `[glue_tables.DATABASE.TABLE]`: the tables DataFormatConversion writes Parquet with.
    pub glue_tables: GlueTables,
    /// Which HTTP endpoints deliveries may reach (the consumers' policy).
    pub destinations: crate::consumers::DestinationPolicy,
    /// Tells the delivery supervisor that a definition changed (crate::leased).
    pub changes: tokio::sync::mpsc::UnboundedSender<()>,
    /// Records and bytes put, and records throttled, for /metrics.
    pub incoming: super::metrics::Incoming,
    /// Direct PUT quotas (`[firehose] quotas`).
    pub quotas: super::quotas::PutQuotas,
    /// Where CloudWatch's AWS/Firehose metrics are recorded.
    pub metrics: crate::cloudwatch::Recorder,
}

impl FirehoseCtx {
    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:firehose:{}:{}:deliverystream/{name}", self.region, self.account_id)
    }

    pub fn engine_name(name: &str) -> String {
        format!("{ENGINE_PREFIX}{name}")
    }

    /// Records put into `name`: for /metrics and CloudWatch's IncomingRecords and IncomingBytes.
    pub fn count_put(&self, name: &str, records: u64, bytes: u64) {
        self.incoming.add(name, records, bytes);
        let dimensions = [("DeliveryStreamName", name)];
        self.metrics.record(&crate::cloudwatch::firehose::INCOMING_RECORDS, &dimensions, records as f64);
        self.metrics.record(&crate::cloudwatch::firehose::INCOMING_BYTES, &dimensions, bytes as f64);
    }

    /// Records refused by the Direct PUT quotas: ThrottledRecords.
    pub fn count_throttled(&self, name: &str, records: u64) {
        self.incoming.throttled(name, records);
        let dimensions = [("DeliveryStreamName", name)];
        self.metrics.record(&crate::cloudwatch::firehose::THROTTLED_RECORDS, &dimensions, records as f64);
    }

    /// The delivery stream's name, from its engine stream's.
    pub fn public_name(engine_name: &str) -> Option<&str> {
        engine_name.strip_prefix(ENGINE_PREFIX)
    }

    /// AWS's answer for a delivery stream that does not exist.
    pub fn not_found(&self, name: &str) -> ApiError {
        ApiError::new(
            ErrorType::ResourceNotFound,
            format!("Firehose {name} under account {} not found.", self.account_id),
        )
    }

    /// The engine's errors as Firehose words them.
    pub fn store_error(&self, name: &str, error: StoreError) -> ApiError {
        match error {
            StoreError::StreamNotFound(_) | StoreError::StreamDeleted(_) => self.not_found(name),
            StoreError::StreamExists(_) => ApiError::new(
                ErrorType::ResourceInUse,
                format!("Firehose {name} under account {} already exists.", self.account_id),
            ),
            other => other.into(),
        }
    }

    /// The delivery stream `name` and its definition.
    pub fn lookup(&self, name: &str) -> Result<(StreamHandle, DeliveryStreamSpec), ApiError> {
        let handle = self.engine.stream(&Self::engine_name(name)).map_err(|e| self.store_error(name, e))?;
        let meta = handle.meta();
        if meta.kind != StreamKind::Delivery {
            return Err(self.not_found(name));
        }
        let spec = DeliveryStreamSpec::from_settings(&meta.settings).ok_or_else(|| self.not_found(name))?;
        Ok((handle, spec))
    }

    /// The URL standing in for the Lambda function `name`, checked against the destination
    /// policy; InvalidArgumentException's message when it is not configured or is refused.
    pub fn lambda_url(&self, name: &str) -> Result<crate::consumers::webhook_url::WebhookUrl, ApiError> {
        let function = self.lambda_functions.get(name).ok_or_else(|| {
            ApiError::invalid(format!(
                "The Lambda function {name} is not known to this server: configure [lambda_functions.{name}] with its url."
            ))
        })?;
        self.destinations.check_configured(&function.url, &format!("[lambda_functions.{name}] url"))
    }

    /// Every delivery stream, by name.
    pub fn delivery_streams(&self) -> Vec<(String, StreamHandle, DeliveryStreamSpec)> {
        self.engine
            .streams()
            .into_iter()
            .filter_map(|handle| {
                let meta = handle.meta();
                let name = Self::public_name(&meta.name)?.to_string();
                let spec = DeliveryStreamSpec::from_settings(&meta.settings)?;
                (meta.kind == StreamKind::Delivery).then_some((name, handle, spec))
            })
            .collect()
    }
}
