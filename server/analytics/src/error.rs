//! What can go wrong in an application: its code (with the line and column AWS's
//! CodeValidationException names), its input schema, or a batch at run time.

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The application code does not compile; `line` and `column` count from 1.
    #[error("{message} (line {line}, column {column})")]
    Code { line: u64, column: u64, message: String },
    /// The code is well formed but refers to something the application lacks (a stream, a column)
    /// or uses SQL this engine does not run.
    #[error("{0}")]
    Plan(String),
    /// An input schema that cannot describe rows (an unknown SQL type, a bad mapping path).
    #[error("{0}")]
    Schema(String),
    /// A batch failed while running; its rows go to the error stream.
    #[error("{0}")]
    Runtime(#[source] DataFusionError),
}

impl AnalyticsError {
    pub fn code(line: u64, column: u64, message: impl Into<String>) -> Self {
        AnalyticsError::Code { line, column, message: message.into() }
    }
}

pub type Result<T, E = AnalyticsError> = std::result::Result<T, E>;
