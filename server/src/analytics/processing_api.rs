//! An input's InputProcessingConfiguration (a Lambda function preprocessing its records): read
//! from CreateApplication and AddApplicationInput, shown by DescribeApplication, set by
//! AddApplicationInputProcessingConfiguration, removed by
//! DeleteApplicationInputProcessingConfiguration, changed by UpdateApplication's
//! InputProcessingConfigurationUpdate.

use serde_json::{Value, json};

use super::api::change_definition;
use super::context::AnalyticsCtx;
use super::spec::{InputSpec, LambdaProcessor};
use crate::document::Document;
use crate::error::{ApiError, ErrorType};

/// The processor an `InputProcessingConfiguration` names, checked: its function is configured.
pub fn parse_processor(ctx: &AnalyticsCtx, configuration: &Value) -> Result<Option<LambdaProcessor>, ApiError> {
    if !configuration.is_object() {
        return Ok(None);
    }
    let lambda = &configuration["InputLambdaProcessor"];
    let resource_arn = lambda["ResourceARN"].as_str().unwrap_or_default().to_string();
    ctx.function_url(&resource_arn)?;
    Ok(Some(LambdaProcessor { resource_arn, role_arn: lambda["RoleARN"].as_str().unwrap_or_default().to_string() }))
}

/// DescribeApplication's view of an input's processor.
pub fn describe(processor: &LambdaProcessor) -> Value {
    json!({"InputLambdaProcessorDescription": {"ResourceARN": processor.resource_arn, "RoleARN": processor.role_arn}})
}

pub fn add_input_processing_configuration(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let id = body.str("InputId")?.unwrap_or_default();
    let configuration = body.fields().get("InputProcessingConfiguration").cloned().unwrap_or_default();
    let processor = parse_processor(ctx, &configuration)?;
    change_definition(ctx, &body, |spec| {
        let input = spec.input_mut(&id)?;
        if input.processor.is_some() {
            return Err(ApiError::invalid(format!("Input {id} already has an input processing configuration.")));
        }
        input.processor = processor.clone();
        Ok(())
    })
}

pub fn delete_input_processing_configuration(ctx: &AnalyticsCtx, body: Document) -> Result<Value, ApiError> {
    let id = body.str("InputId")?.unwrap_or_default();
    change_definition(ctx, &body, |spec| {
        let input = spec.input_mut(&id)?;
        if input.processor.take().is_none() {
            return Err(ApiError::new(
                ErrorType::ResourceNotFound,
                format!("Input {id} has no input processing configuration."),
            ));
        }
        Ok(())
    })
}

/// UpdateApplication's `InputProcessingConfigurationUpdate` of `input`, if the update has one.
pub fn apply_update(ctx: &AnalyticsCtx, input: &mut InputSpec, update: &Value) -> Result<(), ApiError> {
    let lambda = &update["InputProcessingConfigurationUpdate"]["InputLambdaProcessorUpdate"];
    if !lambda.is_object() {
        return Ok(());
    }
    let current = input.processor.clone();
    let resource_arn = lambda["ResourceARNUpdate"].as_str().map(str::to_string);
    let role_arn = lambda["RoleARNUpdate"].as_str().map(str::to_string);
    let resource_arn = resource_arn.or_else(|| current.as_ref().map(|p| p.resource_arn.clone())).ok_or_else(|| {
        ApiError::invalid(format!("Input {} has no input processing configuration to update.", input.id))
    })?;
    ctx.function_url(&resource_arn)?;
    let role_arn = role_arn.or_else(|| current.map(|p| p.role_arn)).unwrap_or_default();
    input.processor = Some(LambdaProcessor { resource_arn, role_arn });
    Ok(())
}
