//! The API's SourceSchema (RecordFormat, RecordEncoding, RecordColumns) as the engine's
//! `InputSchema`, and an application's code compiled against its inputs: what Create, Update,
//! AddApplicationInput and Start check, and what the runner runs.

use framelog_analytics::{Application, InputDef, InputSchema, RecordFormat};
use serde_json::Value;

use super::spec::{ApplicationSpec, InputSpec};
use crate::error::ApiError;

/// Reads a SourceSchema document.
pub fn input_schema(schema: &Value) -> Result<InputSchema, ApiError> {
    let format = &schema["RecordFormat"];
    let mapping = &format["MappingParameters"];
    let record_format = match format["RecordFormatType"].as_str() {
        Some("JSON") => RecordFormat::Json {
            row_path: mapping["JSONMappingParameters"]["RecordRowPath"].as_str().unwrap_or("$").to_string(),
        },
        Some("CSV") => {
            let csv = &mapping["CSVMappingParameters"];
            RecordFormat::Csv {
                row_delimiter: csv["RecordRowDelimiter"].as_str().unwrap_or("\n").to_string(),
                column_delimiter: csv["RecordColumnDelimiter"].as_str().unwrap_or(",").to_string(),
            }
        }
        other => {
            return Err(ApiError::invalid(format!(
                "RecordFormatType {} is not supported: use JSON or CSV.",
                other.unwrap_or("(none)")
            )));
        }
    };
    if let Some(encoding) = schema["RecordEncoding"].as_str()
        && encoding != "UTF-8"
    {
        return Err(ApiError::invalid(format!("RecordEncoding {encoding} is not supported: use UTF-8.")));
    }
    let columns: Vec<(String, Option<String>, String)> = schema["RecordColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|column| {
            let name = column["Name"].as_str().unwrap_or_default().to_string();
            let mapping = column["Mapping"].as_str().map(str::to_string);
            (name, mapping, column["SqlType"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    if columns.is_empty() {
        return Err(ApiError::invalid("An input schema needs at least one RecordColumn."));
    }
    Ok(InputSchema::new(record_format, &columns)?)
}

/// The in-application streams an input fills, with their columns.
pub fn input_defs(input: &InputSpec) -> Result<Vec<InputDef>, ApiError> {
    let columns = input_schema(&input.schema)?.stream_columns();
    Ok(input.stream_names().into_iter().map(|name| InputDef { name, columns: columns.clone() }).collect())
}

/// The reference tables' names and columns (their rows are read when the application starts).
pub fn reference_columns(spec: &ApplicationSpec) -> Result<Vec<InputDef>, ApiError> {
    spec.references
        .iter()
        .map(|r| Ok(InputDef { name: r.table_name.clone(), columns: input_schema(&r.schema)?.stream_columns() }))
        .collect()
}

/// Compiles the application's code against its inputs and (empty) reference tables: the
/// check a definition change must pass. On a blocking thread: planning is async in DataFusion.
pub fn check_code(spec: &ApplicationSpec) -> Result<(), ApiError> {
    let inputs = spec.inputs.iter().map(input_defs).collect::<Result<Vec<_>, _>>()?.concat();
    let references = reference_columns(spec)?
        .into_iter()
        .map(|table| (table.name, framelog_analytics::empty_table(&table.columns)))
        .collect();
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| ApiError::internal(&e))?;
    runtime.block_on(Application::compile(&spec.code, &inputs, references))?;
    Ok(())
}
