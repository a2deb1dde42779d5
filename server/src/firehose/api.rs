//! Firehose's control plane: create, describe, list, delete, update a destination, and the
//! encryption switch (<https://docs.aws.amazon.com/firehose/latest/APIReference/>). Tags are in
//! tags.rs, records in records.rs.

use framelog_store::{StreamEncryption, StreamKind, new_stream_meta};
use serde_json::{Map, Value, json};

use super::context::FirehoseCtx;
use super::spec::{self, DeliveryStreamSpec, DestinationKind, KinesisSource, Plan, SPEC_KEY};
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

/// Records wait this long for delivery, as Firehose keeps them (24 hours).
const RETENTION_HOURS: u32 = 24;
/// Firehose's default quota of delivery streams per account and region.
const MAX_DELIVERY_STREAMS: usize = 5_000;

pub fn name_of(body: &Document) -> Result<String, ApiError> {
    body.str("DeliveryStreamName")?.ok_or_else(|| ApiError::invalid("DeliveryStreamName is required."))
}

fn members(body: &Document) -> &Map<String, Value> {
    body.fields()
}

/// The one destination configuration of a create call, with AWS's defaults filled in.
fn destination(body: &Document) -> Result<(DestinationKind, Value), ApiError> {
    let given: Vec<(&String, &Value)> =
        members(body).iter().filter(|(k, v)| k.ends_with("DestinationConfiguration") && !v.is_null()).collect();
    let [(kind, config)] = given.as_slice() else {
        return Err(ApiError::invalid("Exactly one destination configuration is supported for a Firehose"));
    };
    match (kind.as_str(), config) {
        ("ExtendedS3DestinationConfiguration" | "S3DestinationConfiguration", Value::Object(config)) => {
            Ok((DestinationKind::ExtendedS3, spec::with_defaults(config.clone())))
        }
        ("HttpEndpointDestinationConfiguration", Value::Object(config)) => {
            Ok((DestinationKind::HttpEndpoint, spec::http_with_defaults(config.clone())))
        }
        (kind, _) => Err(ApiError::invalid(format!("{kind} is not supported by this server yet."))),
    }
}

/// Checks that delivery could run with `destination`: its plan, its bucket, and an endpoint's
/// or a Lambda processor's URL against the destination policy (the consumers' one: no private addresses unless allowed).
fn check_destination(ctx: &FirehoseCtx, kind: DestinationKind, destination: &Value) -> Result<(), ApiError> {
    let plan = Plan::of(kind, destination, &ctx.glue_tables).map_err(ApiError::invalid)?;
    ctx.buckets.sink(plan.bucket()).map_err(ApiError::invalid)?;
    if let Plan::Http { http, .. } = &plan {
        ctx.destinations
            .check_configured(&http.url, "HttpEndpointDestinationConfiguration.EndpointConfiguration.Url")?;
    }
    if let Plan::S3(s3) = &plan
        && let Some(lambda) = &s3.processing.lambda
    {
        ctx.lambda_url(&lambda.function)?;
    }
    Ok(())
}

/// The update member UpdateDestination takes for a destination kind, with the name its S3
/// backup goes by there and in the stored configuration.
fn update_of(body: &Document, kind: DestinationKind) -> Result<Value, ApiError> {
    let (names, backup): (&[&str], Option<(&str, &str)>) = match kind {
        DestinationKind::ExtendedS3 => {
            (&["ExtendedS3DestinationUpdate", "S3DestinationUpdate"], Some(("S3BackupUpdate", "S3BackupConfiguration")))
        }
        DestinationKind::HttpEndpoint => (&["HttpEndpointDestinationUpdate"], Some(("S3Update", "S3Configuration"))),
    };
    let mut update = names
        .iter()
        .find_map(|member| members(body).get(*member).filter(|v| v.is_object()))
        .ok_or_else(|| ApiError::invalid("Changing the destination type is not supported by this server."))?
        .clone();
    if let (Some((given, stored)), Some(object)) = (backup, update.as_object_mut())
        && let Some(value) = object.remove(given)
    {
        object.insert(stored.into(), value);
    }
    Ok(update)
}

/// The Kinesis source a create call names, checked against its stream type.
fn kinesis_source_of(
    ctx: &FirehoseCtx,
    body: &Document,
    stream_type: &str,
    now_ms: u64,
) -> Result<Option<KinesisSource>, ApiError> {
    let source = body.object("KinesisStreamSourceConfiguration")?;
    let kinesis_source = match (stream_type, source) {
        ("DirectPut", None) => None,
        ("KinesisStreamAsSource", Some(source)) => Some(KinesisSource {
            stream_arn: source.str("KinesisStreamARN")?.unwrap_or_default(),
            role_arn: source.str("RoleARN")?.unwrap_or_default(),
            started_ms: now_ms,
            from_trim_horizon: super::kinesis_source::from_trim_horizon(&super::tags::parse_tags(body)?)?,
        }),
        ("KinesisStreamAsSource", None) => {
            return Err(ApiError::invalid("KinesisStreamSourceConfiguration is required for KinesisStreamAsSource."));
        }
        ("DirectPut", Some(_)) => {
            return Err(ApiError::invalid(
                "KinesisSourceStreamConfig is only applicable for KinesisStreamAsSource stream type",
            ));
        }
        (other, _) => {
            return Err(ApiError::invalid(format!("DeliveryStreamType {other} is not supported by this server.")));
        }
    };
    if let Some(source) = &kinesis_source {
        super::kinesis_source::check(ctx, source)?;
    }
    Ok(kinesis_source)
}

pub fn create_delivery_stream(ctx: &FirehoseCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let stream_type = body.str("DeliveryStreamType")?.unwrap_or_else(|| "DirectPut".into());
    let now_ms = ctx.engine.now_ms();
    let kinesis_source = kinesis_source_of(ctx, &body, &stream_type, now_ms)?;
    let (destination_kind, destination) = destination(&body)?;
    check_destination(ctx, destination_kind, &destination)?;
    let encryption = body.object("DeliveryStreamEncryptionConfigurationInput")?;
    if encryption.is_some() && kinesis_source.is_some() {
        return Err(ApiError::invalid("Server-side encryption is only supported for DirectPut delivery streams."));
    }
    if ctx.delivery_streams().len() >= MAX_DELIVERY_STREAMS {
        return Err(ApiError::new(
            ErrorType::LimitExceeded,
            format!("You have already consumed your firehose quota of {MAX_DELIVERY_STREAMS} hoses."),
        ));
    }
    let spec = DeliveryStreamSpec {
        stream_type,
        version: 1,
        created_ms: now_ms,
        updated_ms: now_ms,
        kinesis_source,
        destination_kind,
        destination,
        encryption: None,
    };
    let arn = ctx.arn(&name);
    let mut meta =
        new_stream_meta(&FirehoseCtx::engine_name(&name), StreamKind::Delivery, &arn, 1, RETENTION_HOURS, now_ms);
    meta.tags = super::tags::parse_tags(&body)?.into_iter().collect();
    meta.settings.insert(SPEC_KEY.into(), serde_json::to_string(&spec).map_err(|e| ApiError::internal(&e))?);
    let handle = ctx.engine.create_stream(meta).map_err(|e| ctx.store_error(&name, e))?;
    if let Some(encryption) = encryption {
        turn_encryption_on(ctx, &name, &handle, &encryption)?;
    }
    Ok(json!({"DeliveryStreamARN": arn}))
}

pub fn describe_delivery_stream(ctx: &FirehoseCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let (handle, spec) = ctx.lookup(&name)?;
    let seconds = |ms: u64| ms as f64 / 1000.0;
    let mut description = json!({
        "DeliveryStreamName": name,
        "DeliveryStreamARN": handle.meta().arn,
        "DeliveryStreamStatus": "ACTIVE",
        "DeliveryStreamEncryptionConfiguration": encryption_shown(&spec),
        "DeliveryStreamType": spec.stream_type,
        "VersionId": spec.version.to_string(),
        "CreateTimestamp": seconds(spec.created_ms),
        "LastUpdateTimestamp": seconds(spec.updated_ms),
        "Destinations": [spec::describe(spec.destination_kind, &spec.destination)],
        "HasMoreDestinations": false,
    });
    if let Some(source) = &spec.kinesis_source {
        description["Source"] = json!({"KinesisStreamSourceDescription": {
            "KinesisStreamARN": source.stream_arn,
            "RoleARN": source.role_arn,
            "DeliveryStartTimestamp": seconds(source.started_ms),
        }});
    }
    Ok(json!({"DeliveryStreamDescription": description}))
}

fn encryption_shown(spec: &DeliveryStreamSpec) -> Value {
    match &spec.encryption {
        Some(shown) => shown.clone(),
        None => json!({"Status": "DISABLED"}),
    }
}

pub fn list_delivery_streams(ctx: &FirehoseCtx, body: Document) -> Result<Value, ApiError> {
    let limit = body.int("Limit")?.unwrap_or(10).max(1) as usize;
    let wanted_type = body.str("DeliveryStreamType")?;
    let after = body.str("ExclusiveStartDeliveryStreamName")?;
    let names: Vec<String> = ctx
        .delivery_streams()
        .into_iter()
        .filter(|(name, _, spec)| {
            wanted_type.as_ref().is_none_or(|t| *t == spec.stream_type)
                && after.as_ref().is_none_or(|after| name.as_str() > after.as_str())
        })
        .map(|(name, _, _)| name)
        .collect();
    let more = names.len() > limit;
    let shown: Vec<String> = names.into_iter().take(limit).collect();
    Ok(json!({"DeliveryStreamNames": shown, "HasMoreDeliveryStreams": more}))
}

pub fn delete_delivery_stream(ctx: &FirehoseCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let (handle, _) = ctx.lookup(&name)?;
    ctx.engine.delete_stream(&FirehoseCtx::engine_name(&name)).map_err(|e| ctx.store_error(&name, e))?;
    ctx.quotas.forget(handle.id());
    Ok(json!({}))
}

pub fn update_destination(ctx: &FirehoseCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let current = body.str("CurrentDeliveryStreamVersionId")?.unwrap_or_default();
    let destination_id = body.str("DestinationId")?.unwrap_or_default();
    let (handle, spec) = ctx.lookup(&name)?;
    if destination_id != spec::DESTINATION_ID {
        return Err(ApiError::invalid(format!("Destination Id {destination_id} not found")));
    }
    let update = update_of(&body, spec.destination_kind)?;
    let partitioned = |destination: &Value| {
        destination.pointer("/DynamicPartitioningConfiguration/Enabled").and_then(Value::as_bool) == Some(true)
    };
    if !partitioned(&spec.destination) && partitioned(&spec::merged(&spec.destination, &update)) {
        // AWS's rule: partitioning is chosen when a delivery stream is created.
        return Err(ApiError::invalid("Dynamic Partitioning cannot be enabled on an existing delivery stream."));
    }
    check_destination(ctx, spec.destination_kind, &spec::merged(&spec.destination, &update))?;
    let now_ms = ctx.engine.now_ms();
    // The version is compared under the metadata lock, so of two updates naming the same
    // version exactly one succeeds.
    let (_, outcome) = ctx
        .engine
        .update_meta(&handle, |meta| {
            let Some(mut stored) = DeliveryStreamSpec::from_settings(&meta.settings) else { return Err(ctx.not_found(&name)) };
            if stored.version.to_string() != current {
                return Err(ApiError::new(
                    ErrorType::ConcurrentModification,
                    format!(
                        "Cannot update firehose: {name} since the current version id: {} and specified version id: {current} do not match",
                        stored.version
                    ),
                ));
            }
            stored.destination = spec::merged(&stored.destination, &update);
            stored.version += 1;
            stored.updated_ms = now_ms;
            let text = serde_json::to_string(&stored).map_err(|e| ApiError::internal(&e))?;
            meta.settings.insert(SPEC_KEY.into(), text);
            Ok(())
        })
        .map_err(|e| ctx.store_error(&name, e))?;
    outcome.map(|()| json!({}))
}

pub fn start_encryption(ctx: &FirehoseCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let (handle, spec) = ctx.lookup(&name)?;
    if spec.kinesis_source.is_some() {
        return Err(ApiError::invalid(
            "This operation is not permitted on KinesisStreamAsSource delivery stream type.",
        ));
    }
    let input = body.object("DeliveryStreamEncryptionConfigurationInput")?.unwrap_or(Document(Map::new()));
    turn_encryption_on(ctx, &name, &handle, &input)?;
    Ok(json!({}))
}

pub fn stop_encryption(ctx: &FirehoseCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let (handle, spec) = ctx.lookup(&name)?;
    if spec.kinesis_source.is_some() {
        return Err(ApiError::invalid(
            "This operation is not permitted on KinesisStreamAsSource delivery stream type.",
        ));
    }
    set_encryption(ctx, &name, &handle, None, None)
}

/// Seals every record stored from now on under the stream's data key (the engine's at-rest
/// encryption, docs/security.md); KeyType and KeyARN are recorded as given.
fn turn_encryption_on(
    ctx: &FirehoseCtx,
    name: &str,
    handle: &framelog_store::StreamHandle,
    input: &Document,
) -> Result<(), ApiError> {
    let key_type = input.str("KeyType")?.unwrap_or_else(|| "AWS_OWNED_CMK".into());
    let key_arn = input.str("KeyARN")?;
    if key_type == "CUSTOMER_MANAGED_CMK" && key_arn.is_none() {
        return Err(ApiError::invalid("KeyARN is required when KeyType is CUSTOMER_MANAGED_CMK."));
    }
    let mut shown = json!({"KeyType": key_type, "Status": "ENABLED"});
    if let Some(arn) = &key_arn {
        shown["KeyARN"] = json!(arn);
    }
    let fresh_key = ctx.engine.new_wrapped_data_key_hex().map_err(|e| ctx.store_error(name, e))?;
    let key_id = key_arn.unwrap_or(key_type);
    set_encryption(ctx, name, handle, Some(shown), Some((key_id, fresh_key))).map(drop)
}

/// Records the encryption as shown and turns the engine's sealing on (`key`) or off (`None`).
/// The data key is chosen under the metadata lock and kept when turned off, so records sealed
/// earlier stay readable.
fn set_encryption(
    ctx: &FirehoseCtx,
    name: &str,
    handle: &framelog_store::StreamHandle,
    shown: Option<Value>,
    key: Option<(String, String)>,
) -> Result<Value, ApiError> {
    let (_, outcome) = ctx
        .engine
        .update_meta(handle, |meta| {
            let Some(mut stored) = DeliveryStreamSpec::from_settings(&meta.settings) else {
                return Err(ctx.not_found(name));
            };
            stored.encryption = shown.clone();
            meta.settings.insert(SPEC_KEY.into(), serde_json::to_string(&stored).map_err(|e| ApiError::internal(&e))?);
            meta.encryption = match (meta.encryption.take(), &key) {
                (existing, Some((key_id, fresh))) => Some(StreamEncryption {
                    enabled: true,
                    key_id: key_id.clone(),
                    wrapped_key_hex: existing.map_or_else(|| fresh.clone(), |e| e.wrapped_key_hex),
                }),
                (Some(existing), None) => Some(StreamEncryption { enabled: false, ..existing }),
                (None, None) => None,
            };
            Ok(())
        })
        .map_err(|e| ctx.store_error(name, e))?;
    outcome.map(|()| json!({}))
}
