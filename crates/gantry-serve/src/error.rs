use std::path::PathBuf;

use axum::http::StatusCode;

/// Why a request or a model load failed. The variant decides the HTTP status of the
/// Open Inference Protocol error (`{"error": "..."}`) a handler answers with.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The request cannot be served as sent (400): the message says which input and what to fix.
    #[error("{0}")]
    BadRequest(String),
    /// No such model or version (404).
    #[error("{0}")]
    NotFound(String),
    /// The body is larger than the server accepts (413).
    #[error("{0}")]
    TooLarge(String),
    /// The model failed on input that passed validation, or the server itself failed (500).
    #[error("{0}")]
    Internal(String),
    /// The models given to the server do not fit together (a name and version twice).
    #[error("{0}")]
    Config(String),
    /// A model could not be loaded at startup.
    #[error("cannot load model {path}: {reason}")]
    Load { path: PathBuf, reason: String },
}

impl ServeError {
    pub fn bad_request(message: impl Into<String>) -> ServeError {
        ServeError::BadRequest(message.into())
    }

    pub fn internal(message: impl Into<String>) -> ServeError {
        ServeError::Internal(message.into())
    }

    pub(crate) fn load(path: impl Into<PathBuf>, reason: impl Into<String>) -> ServeError {
        ServeError::Load {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The HTTP status the Open Inference Protocol gives this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServeError::NotFound(_) => StatusCode::NOT_FOUND,
            ServeError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::Internal(_) | ServeError::Config(_) | ServeError::Load { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The `kind` label of `gantry_model_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            ServeError::BadRequest(_) => "bad_request",
            ServeError::NotFound(_) => "not_found",
            ServeError::TooLarge(_) => "too_large",
            ServeError::Internal(_) | ServeError::Config(_) | ServeError::Load { .. } => "internal",
        }
    }
}
