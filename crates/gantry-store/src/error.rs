use thiserror::Error;

/// Everything the metadata store can fail with. Messages name the run, step run or URL involved.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(
        "unsupported metadata store url '{url}': use sqlite:///abs/path/gantry.db, sqlite://relative.db or postgres://user@host/db"
    )]
    UnsupportedUrl { url: String },

    #[error("cannot create the directory for sqlite database {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot lock {path} to migrate the sqlite database: {source}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "cannot open the metadata store at '{url}' (check that it exists and is reachable): {source}"
    )]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    #[error(
        "cannot migrate the metadata store schema at '{url}' (was it written by a newer gantry?): {source}"
    )]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    #[error("metadata store query failed while {op}: {source}")]
    BulkQuery {
        op: String,
        #[source]
        source: rusqlite::Error,
    },

    #[error("metadata store query failed while {op}: {source}")]
    Query {
        op: String,
        #[source]
        source: sqlx::Error,
    },

    /// `kind` is "run", "step run", "model", "model version" (id `name@7`) or "model alias"
    /// (id `name@alias`).
    #[error("{}", not_found_message(kind, id))]
    NotFound { kind: &'static str, id: String },

    #[error("{kind} prefix '{prefix}' is ambiguous: it matches {} — give more characters", matches.join(", "))]
    Ambiguous {
        kind: &'static str,
        prefix: String,
        matches: Vec<String>,
    },

    #[error("invalid value for {what}: {detail}")]
    Invalid { what: String, detail: String },

    #[error("corrupt metadata in {what}: {detail} (was the database written by a newer gantry?)")]
    Corrupt { what: String, detail: String },

    /// `kind` is "experiment", "registered model", "prediction" (id `request-id/role`), ...;
    /// `id` its name.
    #[error("{}", already_exists_message(kind, id))]
    AlreadyExists { kind: &'static str, id: String },

    /// A compare-and-set write found another revision than the caller read: someone else
    /// changed `id` in between. Revision 0 means "does not exist".
    #[error("{}", conflict_message(kind, id, *expected, *actual))]
    Conflict {
        kind: &'static str,
        id: String,
        expected: i64,
        actual: i64,
    },
}

impl StoreError {
    pub(crate) fn query(op: impl Into<String>) -> impl FnOnce(sqlx::Error) -> StoreError {
        let op = op.into();
        move |source| StoreError::Query { op, source }
    }
}

fn not_found_message(kind: &str, id: &str) -> String {
    match kind {
        "model" => format!(
            "no model named '{id}' in the registry (a model is created by registering its first version)"
        ),
        "model version" | "model alias" => format!(
            "no {kind} '{id}' in the registry (list the model's versions and aliases to see what exists)"
        ),
        "deployment" => format!("no deployment named '{id}' (list deployments to see which exist)"),
        "prediction" => format!(
            "no prediction with request id '{id}' (it was not logged, was sampled out, or retention removed it)"
        ),
        "experiment" | "tracking run" | "registered model" => {
            format!("no {kind} '{id}' (search them through the MLflow API to see which exist)")
        }
        _ => format!(
            "no {kind} with id or prefix '{id}' (list them with `gantry runs`; a prefix needs at least 4 characters)"
        ),
    }
}

fn already_exists_message(kind: &str, id: &str) -> String {
    match kind {
        "prediction" => format!(
            "prediction '{id}' is already logged: a request id is logged once per role (was a committed batch sent again?)"
        ),
        _ => format!("{kind} '{id}' already exists: choose another name, or use the existing one"),
    }
}

fn conflict_message(kind: &str, id: &str, expected: i64, actual: i64) -> String {
    let found = if actual == 0 {
        "it does not exist".to_owned()
    } else {
        format!("it is at revision {actual}")
    };
    let wanted = if expected == 0 {
        "expected it not to exist yet".to_owned()
    } else {
        format!("expected revision {expected}")
    };
    format!(
        "{kind} '{id}' was changed by someone else: {wanted} but {found}; read it again and reapply your change"
    )
}

/// A status string that is not one of the known values.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("unknown {kind} status '{value}' (expected one of: {expected})")]
pub struct ParseStatusError {
    pub kind: &'static str,
    pub value: String,
    pub expected: String,
}
