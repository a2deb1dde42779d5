//! Kinesis Data Analytics' control plane for SQL applications: create, describe, list, delete,
//! start, stop, update, and the Add/Delete calls for inputs, outputs and reference data
//! (<https://docs.aws.amazon.com/kinesisanalytics/latest/dev/API_Operations.html>). Every
//! definition change checks the code compiles against the inputs and moves the version on.

use framelog_store::{StreamKind, new_stream_meta};
use serde_json::{Value, json};

use super::context::AnalyticsCtx;
use super::processing_api::{apply_update as apply_processing_update, describe as describe_processor, parse_processor};
use super::schema::{check_code, input_schema};
use super::spec::{ApplicationSpec, CHECKPOINT_KEY, InputSpec, OutputSpec, ReferenceSpec, SPEC_KEY, Status};
use super::video_input::{matching_streams, video_pattern};
use crate::document::{Document, as_string};
use crate::error::{ApiError, ErrorType};

/// Applications per account, as AWS allowed.
const MAX_APPLICATIONS: usize = 50;
/// One streaming source and one reference source per application; three destinations.
const MAX_INPUTS: usize = 1;
const MAX_REFERENCES: usize = 1;
const MAX_OUTPUTS: usize = 3;
/// The error stream's rows are kept this long.
const ERROR_RETENTION_HOURS: u32 = 24;
/// The in-application stream runtime errors go to; an output may name it.
pub const ERROR_STREAM: &str = "error_stream";

pub fn name_of(body: &Document) -> Result<String, ApiError> {
    body.str("ApplicationName")?.ok_or_else(|| ApiError::invalid("ApplicationName is required."))
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn resource_in_use(name: &str, status: Status, wanted: &str) -> ApiError {
    ApiError::new(
        ErrorType::ResourceInUse,
        format!("Application {name} is {}; this operation needs it {wanted}.", status.name()),
    )
}

/// An input as given, checked: its source exists and its schema reads.
fn parse_input(ctx: &AnalyticsCtx, input: &Value, id: String) -> Result<InputSpec, ApiError> {
    let source_member = ["KinesisStreamsInput", "KinesisFirehoseInput"]
        .into_iter()
        .find(|member| input.get(member).is_some_and(Value::is_object))
        .ok_or_else(|| ApiError::invalid("Either KinesisStreamsInput or KinesisFirehoseInput is required."))?;
    let source = &input[source_member];
    let resource_arn = source["ResourceARN"].as_str().unwrap_or_default().to_string();
    let exists = match video_pattern(&resource_arn) {
        // A pattern may name streams not created yet; a plain name must exist.
        Some(pattern) => pattern.contains('*') || !matching_streams(&ctx.engine, &pattern).is_empty(),
        None => ctx.stream_of_arn(&resource_arn).is_some(),
    };
    if !exists {
        return Err(ApiError::invalid(format!("The input stream {resource_arn} does not exist.")));
    }
    if video_pattern(&resource_arn).is_some() && source_member != "KinesisStreamsInput" {
        return Err(ApiError::invalid("A video stream is read through KinesisStreamsInput."));
    }
    // The model's constraints (1 to 64) were checked with the request.
    let parallelism = input["InputParallelism"]["Count"].as_u64().unwrap_or(1) as u32;
    let schema = input["InputSchema"].clone();
    input_schema(&schema)?;
    let processor = parse_processor(ctx, &input["InputProcessingConfiguration"])?;
    Ok(InputSpec {
        id,
        name_prefix: input["NamePrefix"].as_str().unwrap_or("SOURCE_SQL_STREAM").to_string(),
        source_member: source_member.to_string(),
        resource_arn,
        role_arn: source["RoleARN"].as_str().unwrap_or_default().to_string(),
        schema,
        parallelism,
        processor,
    })
}

/// The function a Lambda ARN names (`arn:aws:lambda:...:function:NAME[:qualifier]`): its URL is
/// `[lambda_functions.NAME]` in the server's config, as for Firehose's processors.
pub fn lambda_function(arn: &str) -> Result<String, ApiError> {
    arn.split_once(":function:")
        .map(|(_, rest)| rest.split(':').next().unwrap_or_default().to_string())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{arn} is not a Lambda function ARN.")))
}

/// An output as given, checked: its destination exists (or its Lambda function is configured).
fn parse_output(ctx: &AnalyticsCtx, output: &Value, id: String) -> Result<OutputSpec, ApiError> {
    let destination_member = ["KinesisStreamsOutput", "KinesisFirehoseOutput", "LambdaOutput"]
        .into_iter()
        .find(|member| output.get(member).is_some_and(Value::is_object))
        .ok_or_else(|| {
            ApiError::invalid("One of KinesisStreamsOutput, KinesisFirehoseOutput or LambdaOutput is required.")
        })?;
    let destination = &output[destination_member];
    let resource_arn = destination["ResourceARN"].as_str().unwrap_or_default().to_string();
    if destination_member == "LambdaOutput" {
        ctx.function_url(&resource_arn)?;
    } else if ctx.stream_of_arn(&resource_arn).is_none() {
        return Err(ApiError::invalid(format!("The output stream {resource_arn} does not exist.")));
    }
    Ok(OutputSpec {
        id,
        name: output["Name"].as_str().unwrap_or_default().to_string(),
        destination_member: destination_member.to_string(),
        resource_arn,
        role_arn: destination["RoleARN"].as_str().unwrap_or_default().to_string(),
        format: output["DestinationSchema"]["RecordFormatType"].as_str().unwrap_or("JSON").to_string(),
    })
}

fn parse_reference(reference: &Value, id: String) -> Result<ReferenceSpec, ApiError> {
    let s3 = &reference["S3ReferenceDataSource"];
    let schema = reference["ReferenceSchema"].clone();
    input_schema(&schema)?;
    Ok(ReferenceSpec {
        id,
        table_name: reference["TableName"].as_str().unwrap_or_default().to_string(),
        bucket_arn: s3["BucketARN"].as_str().unwrap_or_default().to_string(),
        file_key: s3["FileKey"].as_str().unwrap_or_default().to_string(),
        role_arn: s3["ReferenceRoleARN"].as_str().unwrap_or_default().to_string(),
        schema,
    })
}

fn list<'a>(body: &'a Document, name: &str) -> Result<&'a [Value], ApiError> {
    Ok(body.list(name)?.map_or(&[][..], Vec::as_slice))
}

pub fn create_application(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    if ctx.applications().len() >= MAX_APPLICATIONS {
        return Err(ApiError::new(ErrorType::LimitExceeded, "Exceeded the number of applications allowed."));
    }
    let (inputs, outputs) = (list(&body, "Inputs")?, list(&body, "Outputs")?);
    if inputs.len() > MAX_INPUTS || outputs.len() > MAX_OUTPUTS {
        return Err(ApiError::invalid(format!(
            "An application has at most {MAX_INPUTS} input and {MAX_OUTPUTS} outputs."
        )));
    }
    let tags = crate::firehose::parse_tags(&body)?;
    super::tags::check_count(tags.len())?;
    let now_ms = ctx.engine.now_ms();
    let spec = ApplicationSpec {
        name: name.clone(),
        description: body.str("ApplicationDescription")?,
        code: body.str("ApplicationCode")?.unwrap_or_default(),
        status: Status::Ready,
        version: 1,
        created_ms: now_ms,
        updated_ms: now_ms,
        inputs: inputs
            .iter()
            .enumerate()
            .map(|(i, v)| parse_input(ctx, v, format!("1.{}", i + 1)))
            .collect::<Result<_, _>>()?,
        outputs: outputs
            .iter()
            .enumerate()
            .map(|(i, v)| parse_output(ctx, v, format!("1.{}", i + 1)))
            .collect::<Result<_, _>>()?,
        references: Vec::new(),
        tags: tags.into_iter().collect(),
        starting_position: None,
        started_ms: None,
    };
    check_code(&spec)?;
    let arn = ctx.arn(&name);
    let mut meta = new_stream_meta(
        &AnalyticsCtx::engine_name(&name),
        StreamKind::Application,
        &arn,
        1,
        ERROR_RETENTION_HOURS,
        now_ms,
    );
    meta.settings.insert(SPEC_KEY.into(), spec.to_setting());
    ctx.engine.create_stream(meta).map_err(|e| ctx.store_error(&name, e))?;
    Ok(json!({"ApplicationSummary": summary(ctx, &spec)}))
}

fn summary(ctx: &AnalyticsCtx, spec: &ApplicationSpec) -> Value {
    json!({"ApplicationName": spec.name, "ApplicationARN": ctx.arn(&spec.name), "ApplicationStatus": spec.status.name()})
}

pub fn describe_application(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let (_, spec) = ctx.lookup(&name_of(&body)?)?;
    Ok(json!({"ApplicationDetail": detail(ctx, &spec)}))
}

fn detail(ctx: &AnalyticsCtx, spec: &ApplicationSpec) -> Value {
    let starting = spec.starting_position.as_ref().map_or(json!({}), |p| json!({"InputStartingPosition": p}));
    let inputs: Vec<Value> = spec
        .inputs
        .iter()
        .map(|input| {
            let mut shown = json!({
                "InputId": input.id,
                "NamePrefix": input.name_prefix,
                "InAppStreamNames": input.stream_names(),
                "InputSchema": input.schema,
                "InputParallelism": {"Count": input.parallelism},
                "InputStartingPositionConfiguration": starting,
            });
            shown[format!("{}Description", input.source_member)] =
                json!({"ResourceARN": input.resource_arn, "RoleARN": input.role_arn});
            if let Some(processor) = &input.processor {
                shown["InputProcessingConfigurationDescription"] = describe_processor(processor);
            }
            shown
        })
        .collect();
    let outputs: Vec<Value> = spec
        .outputs
        .iter()
        .map(|output| {
            let mut shown = json!({"OutputId": output.id, "Name": output.name, "DestinationSchema": {"RecordFormatType": output.format}});
            shown[format!("{}Description", output.destination_member)] =
                json!({"ResourceARN": output.resource_arn, "RoleARN": output.role_arn});
            shown
        })
        .collect();
    let references: Vec<Value> = spec
        .references
        .iter()
        .map(|r| {
            json!({"ReferenceId": r.id, "TableName": r.table_name, "ReferenceSchema": r.schema,
                "S3ReferenceDataSourceDescription": {"BucketARN": r.bucket_arn, "FileKey": r.file_key, "ReferenceRoleARN": r.role_arn}})
        })
        .collect();
    let mut detail = json!({
        "ApplicationName": spec.name,
        "ApplicationARN": ctx.arn(&spec.name),
        "ApplicationStatus": spec.status.name(),
        "CreateTimestamp": seconds(spec.created_ms),
        "LastUpdateTimestamp": seconds(spec.updated_ms),
        "InputDescriptions": inputs,
        "OutputDescriptions": outputs,
        "ReferenceDataSourceDescriptions": references,
        "CloudWatchLoggingOptionDescriptions": [],
        "ApplicationCode": spec.code,
        "ApplicationVersionId": spec.version,
    });
    if let Some(description) = &spec.description {
        detail["ApplicationDescription"] = json!(description);
    }
    detail
}

pub fn list_applications(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let limit = body.int("Limit")?.unwrap_or(50).clamp(1, 50) as usize;
    let after = body.str("ExclusiveStartApplicationName")?;
    let all: Vec<ApplicationSpec> = ctx
        .applications()
        .into_iter()
        .map(|(_, spec)| spec)
        .filter(|spec| after.as_ref().is_none_or(|after| spec.name.as_str() > after.as_str()))
        .collect();
    let page: Vec<Value> = all.iter().take(limit).map(|spec| summary(ctx, spec)).collect();
    Ok(json!({"ApplicationSummaries": page, "HasMoreApplications": all.len() > limit}))
}

pub fn delete_application(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let (_, spec) = ctx.lookup(&name)?;
    // Clients that stored the time in whole seconds (Terraform does) send it truncated.
    let given_ms = body.timestamp_ms("CreateTimestamp")?.unwrap_or_default();
    if given_ms / 1000 != spec.created_ms / 1000 {
        return Err(ApiError::invalid(format!(
            "CreateTimestamp does not match application {name}: it was created at {}.",
            seconds(spec.created_ms)
        )));
    }
    ctx.engine.delete_stream(&AnalyticsCtx::engine_name(&name)).map_err(|e| ctx.store_error(&name, e))?;
    // Its scoring models (forests, hotspot windows), if it ever wrote one.
    let _ = ctx.engine.delete_stream(&super::models::stream_name(&name));
    Ok(json!({}))
}

pub fn start_application(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let (_, spec) = ctx.lookup(&name)?;
    if spec.status != Status::Ready {
        return Err(resource_in_use(&name, spec.status, "READY"));
    }
    let Some(input) = spec.inputs.first() else {
        return Err(ApiError::new(ErrorType::InvalidApplicationConfiguration, "The application has no input to read."));
    };
    let configurations = list(&body, "InputConfigurations")?;
    let position = configurations
        .iter()
        .find(|c| c["Id"].as_str() == Some(input.id.as_str()))
        .map(|c| c["InputStartingPositionConfiguration"]["InputStartingPosition"].as_str().unwrap_or("NOW").to_string())
        .ok_or_else(|| ApiError::invalid(format!("InputConfigurations must name input {}.", input.id)))?;
    check_outputs(&spec)?;
    let now_ms = ctx.engine.now_ms();
    let from_checkpoint = position == "LAST_STOPPED_POINT";
    change(
        ctx,
        &name,
        None,
        move |spec| {
            spec.status = Status::Running;
            spec.starting_position = Some(position.clone());
            spec.started_ms = Some(now_ms);
            Ok(())
        },
        !from_checkpoint,
    )?;
    Ok(json!({}))
}

/// Every output must name an in-application stream the code creates (or the error stream).
fn check_outputs(spec: &ApplicationSpec) -> Result<(), ApiError> {
    let script = framelog_analytics::parse_script(&spec.code)?;
    for output in &spec.outputs {
        if output.name != ERROR_STREAM && !script.streams.iter().any(|s| s.name == output.name) {
            return Err(ApiError::new(
                ErrorType::InvalidApplicationConfiguration,
                format!(
                    "Output {} names in-application stream {}, which the application code does not create.",
                    output.id, output.name
                ),
            ));
        }
    }
    Ok(())
}

pub fn stop_application(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let name = name_of(&body)?;
    let (_, spec) = ctx.lookup(&name)?;
    if spec.status != Status::Running {
        return Err(resource_in_use(&name, spec.status, "RUNNING"));
    }
    change(
        ctx,
        &name,
        None,
        |spec| {
            spec.status = Status::Ready;
            Ok(())
        },
        false,
    )?;
    Ok(json!({}))
}

/// Applies `edit` to the stored definition. With `version`, the call's CurrentApplicationVersionId
/// must be the current one and the version moves on; with `reset`, the runner's checkpoint goes.
fn change(
    ctx: &AnalyticsCtx,
    name: &str,
    version: Option<u64>,
    edit: impl Fn(&mut ApplicationSpec) -> Result<(), ApiError>,
    reset: bool,
) -> Result<ApplicationSpec, ApiError> {
    let (handle, _) = ctx.lookup(name)?;
    let now_ms = ctx.engine.now_ms();
    let (_, outcome) = ctx
        .engine
        .update_meta(&handle, |meta| {
            let mut spec = ApplicationSpec::from_settings(&meta.settings).ok_or_else(|| ctx.not_found(name))?;
            if let Some(given) = version {
                if given != spec.version {
                    return Err(ApiError::new(
                        ErrorType::ConcurrentModification,
                        format!("Application {name} is at version {}, not {given}.", spec.version),
                    ));
                }
                spec.version += 1;
                spec.updated_ms = now_ms;
            }
            edit(&mut spec)?;
            meta.settings.insert(SPEC_KEY.into(), spec.to_setting());
            if reset {
                meta.settings.remove(CHECKPOINT_KEY);
            }
            Ok(spec)
        })
        .map_err(|e| ctx.store_error(name, e))?;
    outcome
}

/// A definition change: the version must match, the code must still compile.
pub(super) fn change_definition(
    ctx: &AnalyticsCtx,
    body: &Document,
    edit: impl Fn(&mut ApplicationSpec) -> Result<(), ApiError>,
) -> Result<Value, ApiError> {
    let name = name_of(body)?;
    let version = body.int("CurrentApplicationVersionId")?.unwrap_or_default() as u64;
    change(
        ctx,
        &name,
        Some(version),
        |spec| {
            edit(spec)?;
            check_code(spec)
        },
        false,
    )?;
    Ok(json!({}))
}

pub fn add_input(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let input = body.fields().get("Input").cloned().unwrap_or_default();
    change_definition(ctx, &body, |spec| {
        if spec.inputs.len() >= MAX_INPUTS {
            return Err(ApiError::invalid(format!("Application {} already has its input.", spec.name)));
        }
        let parsed = parse_input(ctx, &input, spec.id_in_change(0))?;
        spec.inputs.push(parsed);
        Ok(())
    })
}

pub fn add_output(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let output = body.fields().get("Output").cloned().unwrap_or_default();
    change_definition(ctx, &body, |spec| {
        if spec.outputs.len() >= MAX_OUTPUTS {
            return Err(ApiError::invalid(format!("Application {} already has {MAX_OUTPUTS} outputs.", spec.name)));
        }
        let parsed = parse_output(ctx, &output, spec.id_in_change(0))?;
        spec.outputs.push(parsed);
        Ok(())
    })
}

pub fn delete_output(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let id = body.str("OutputId")?.unwrap_or_default();
    change_definition(ctx, &body, |spec| {
        let before = spec.outputs.len();
        spec.outputs.retain(|o| o.id != id);
        if spec.outputs.len() == before {
            return Err(ApiError::new(ErrorType::ResourceNotFound, format!("Output {id} is not found")));
        }
        Ok(())
    })
}

pub fn add_reference_data_source(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let reference = body.fields().get("ReferenceDataSource").cloned().unwrap_or_default();
    let parsed = parse_reference(&reference, String::new())?;
    super::reference::check_readable(ctx, &parsed)?;
    change_definition(ctx, &body, |spec| {
        if spec.references.len() >= MAX_REFERENCES {
            return Err(ApiError::invalid(format!("Application {} already has its reference data source.", spec.name)));
        }
        spec.references.push(ReferenceSpec { id: spec.id_in_change(0), ..parsed.clone() });
        Ok(())
    })
}

/// UpdateApplication: new code, and updates of inputs' schemas and outputs' destinations.
pub fn update_application(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let update = body.fields().get("ApplicationUpdate").cloned().unwrap_or_default();
    change_definition(ctx, &body, |spec| {
        if let Some(code) = update["ApplicationCodeUpdate"].as_str() {
            spec.code = code.to_string();
        }
        for input_update in update["InputUpdates"].as_array().into_iter().flatten() {
            apply_input_update(ctx, spec, input_update)?;
        }
        for output_update in update["OutputUpdates"].as_array().into_iter().flatten() {
            apply_output_update(ctx, spec, output_update)?;
        }
        Ok(())
    })
}

fn apply_input_update(ctx: &AnalyticsCtx, spec: &mut ApplicationSpec, update: &Value) -> Result<(), ApiError> {
    let id = update["InputId"].as_str().unwrap_or_default();
    let input = spec.input_mut(id)?;
    if let Some(prefix) = update["NamePrefixUpdate"].as_str() {
        input.name_prefix = prefix.to_string();
    }
    if let Some(count) = update["InputParallelismUpdate"]["CountUpdate"].as_u64() {
        input.parallelism = count as u32;
    }
    let schema = &update["InputSchemaUpdate"];
    if schema.is_object() {
        for (from, to) in [
            ("RecordFormatUpdate", "RecordFormat"),
            ("RecordEncodingUpdate", "RecordEncoding"),
            ("RecordColumnUpdates", "RecordColumns"),
        ] {
            if !schema[from].is_null() {
                input.schema[to] = schema[from].clone();
            }
        }
        input_schema(&input.schema)?;
    }
    apply_processing_update(ctx, input, update)
}

fn apply_output_update(ctx: &AnalyticsCtx, spec: &mut ApplicationSpec, update: &Value) -> Result<(), ApiError> {
    let id = update["OutputId"].as_str().unwrap_or_default();
    let output = spec
        .outputs
        .iter_mut()
        .find(|o| o.id == id)
        .ok_or_else(|| ApiError::new(ErrorType::ResourceNotFound, format!("Output {id} is not found")))?;
    if let Some(name) = update["NameUpdate"].as_str() {
        output.name = name.to_string();
    }
    if let Some(format) = update["DestinationSchemaUpdate"]["RecordFormatType"].as_str() {
        output.format = format.to_string();
    }
    for member in ["KinesisStreamsOutput", "KinesisFirehoseOutput", "LambdaOutput"] {
        let given = &update[format!("{member}Update")];
        if let Some(arn) = given["ResourceARNUpdate"].as_str() {
            let replaced = json!({"Name": output.name, "DestinationSchema": {"RecordFormatType": output.format},
                member: {"ResourceARN": arn, "RoleARN": given["RoleARNUpdate"].as_str().unwrap_or(&output.role_arn)}});
            *output = parse_output(ctx, &replaced, output.id.clone())?;
        }
    }
    Ok(())
}

/// A `Tags` or `TagKeys` style list of strings.
pub fn strings(body: &Document, name: &str) -> Result<Vec<String>, ApiError> {
    body.list(name)?.into_iter().flatten().map(as_string).collect()
}
