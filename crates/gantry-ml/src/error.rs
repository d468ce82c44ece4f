use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in a built-in component. Messages name the
/// component, option, column, row or file involved and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    #[error("unknown component `{name}`; the built-in components are: {available}")]
    UnknownComponent { name: String, available: String },

    /// A `with:` option is unknown, of the wrong type or out of range.
    #[error("{component}: {message}")]
    Option { component: String, message: String },

    #[error("{component}: missing input `{input}`: {hint}")]
    MissingInput {
        component: String,
        input: String,
        hint: String,
    },

    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("{path}: invalid JSON: {source}; {hint}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
        hint: &'static str,
    },

    #[error(
        "{path}, line {line}: expected {expected} fields (like the header) but found {actual}; \
         fix that row, or quote fields that contain the delimiter"
    )]
    RaggedRow {
        path: PathBuf,
        line: u64,
        expected: usize,
        actual: usize,
    },

    #[error("{path}: {message}")]
    Csv { path: PathBuf, message: String },

    /// A problem at one line of a CSV file, as `file:line: message`.
    #[error("{}:{line}: {message}", path.display())]
    CsvLine {
        path: PathBuf,
        line: u64,
        message: String,
    },

    /// A problem with the data itself (a column, a row, a value).
    #[error("{0}")]
    Data(String),

    /// A dataset artifact on disk is not what `dataset::write` produces.
    #[error("dataset {path}: {message}")]
    Dataset { path: PathBuf, message: String },

    /// A model artifact cannot be loaded or cannot serve the given rows.
    #[error("model: {0}")]
    Model(String),

    /// `validate` found violated expectations; the text lists each of them.
    #[error("validation failed, {failed} of {total} checks:\n{report}")]
    ValidationFailed {
        failed: usize,
        total: usize,
        report: String,
    },

    #[error("invalid gate `{expression}` at character {position}: {message}")]
    GateSyntax {
        expression: String,
        position: usize,
        message: String,
    },

    #[error("{0}")]
    GateUnknownMetric(String),

    #[error("registration refused: {0}")]
    GateUnmet(String),

    /// `drift` with `fail_on_drift` found drift; `report` is its markdown. The
    /// verdict comes last: the engine takes a step's last stderr line as the reason.
    #[error("{report}\ndrift found and fail_on_drift is set: {verdict}")]
    DriftFound { verdict: String, report: String },

    /// A component declared here whose implementation the caller did not link in.
    #[error("component `{component}` is not available here: {hint}")]
    NotLinked { component: String, hint: String },
}

impl MlError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn option(component: &str, message: impl Into<String>) -> Self {
        Self::Option {
            component: component.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn dataset(path: &Path, message: impl Into<String>) -> Self {
        Self::Dataset {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}
