//! The node's application error: what a use case can refuse, with enough structure for
//! the API (status code, code, field) and the pages (inline field errors) to show it.

use markaz_sync::model::catalog::FieldError;

use crate::storage::{StorageError, WriteError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Input that does not parse; each bad field is named.
    #[error("invalid input: {}", summary(.0))]
    Invalid(Vec<FieldError>),
    #[error("{what} not found")]
    NotFound { what: String },
    /// The request is well-formed but the current state forbids it (e.g. illegal case
    /// transition); the message names the current state.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Well-formed, semantically refused (e.g. a fee missing for the date).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("not logged in or session expired")]
    Unauthenticated,
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("too many attempts; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("storage failure: {0}")]
    Storage(#[from] StorageError),
    #[error("internal error: {0}")]
    Internal(String),
}

fn summary(errs: &[FieldError]) -> String {
    errs.iter()
        .map(|e| format!("{}: {}", e.field, e.message_en))
        .collect::<Vec<_>>()
        .join("; ")
}

impl AppError {
    pub fn field(field: &str, code: &str, en: impl Into<String>, ar: impl Into<String>) -> Self {
        AppError::Invalid(vec![FieldError {
            field: field.to_string(),
            code: code.to_string(),
            message_en: en.into(),
            message_ar: ar.into(),
        }])
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        AppError::NotFound { what: what.into() }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Forbidden {
            code,
            message: message.into(),
        }
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        AppError::Storage(StorageError::Sqlite(e))
    }
}

impl From<WriteError<AppError>> for AppError {
    fn from(e: WriteError<AppError>) -> Self {
        match e {
            WriteError::Work(e) => e,
            WriteError::Storage(e) => AppError::Storage(e),
        }
    }
}

impl From<serde_json::Error> for AppError {
    fn from(e: serde_json::Error) -> Self {
        AppError::Internal(format!("json: {e}"))
    }
}

impl From<markaz_sync::store::StoreError> for AppError {
    fn from(e: markaz_sync::store::StoreError) -> Self {
        AppError::Storage(StorageError::Docs(Box::new(e)))
    }
}
