use std::path::PathBuf;

use thiserror::Error;

/// Everything the artifact store can fail with. Messages name the path or digest involved.
#[derive(Debug, Error)]
pub enum ArtifactError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{path} is a symlink: store the file or directory itself (symlinks are only kept inside a directory)"
    )]
    TopLevelSymlink { path: PathBuf },

    #[error(
        "symlink {path} -> {target} {problem}: only relative links that stay inside the directory can be stored"
    )]
    UnsafeSymlink {
        path: PathBuf,
        target: PathBuf,
        problem: &'static str,
    },

    #[error("{path} is a {kind}: artifacts hold only regular files, directories and symlinks")]
    SpecialFile { path: PathBuf, kind: &'static str },

    #[error("{path} changed while it was being stored: make sure nothing writes to it, then retry")]
    Changed { path: PathBuf },

    #[error("invalid artifact digest '{digest}': expected sha256:<64 hex characters>")]
    InvalidDigest { digest: String },

    #[error("artifact {digest} is not in the store")]
    NotFound { digest: String },

    #[error(
        "artifact {digest} is a directory: only a file's bytes can be read directly (use export)"
    )]
    NotAFile { digest: String },

    #[error("artifact {digest} is {size} bytes, more than the {max} bytes allowed here")]
    TooLarge { digest: String, size: u64, max: u64 },

    #[error("artifact {digest} is corrupt in the store ({detail}): delete it and produce it again")]
    Corrupt { digest: String, detail: String },

    #[error("artifact {digest} holds an unsafe entry {entry}: {reason}")]
    UnsafeEntry {
        digest: String,
        entry: String,
        reason: String,
    },

    #[error("{path} already exists: choose another output directory or remove it first")]
    Exists { path: PathBuf },

    #[error("object store failed while {op}: {source}")]
    ObjectStore {
        op: String,
        #[source]
        source: object_store::Error,
    },

    #[error("background task failed while {op}: {source}")]
    Task {
        op: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl ArtifactError {
    pub(crate) fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self + use<> {
        let path = path.to_owned();
        move |source| ArtifactError::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn object_store(op: impl Into<String>) -> impl FnOnce(object_store::Error) -> Self {
        let op = op.into();
        move |source| ArtifactError::ObjectStore { op, source }
    }

    pub(crate) fn task(op: impl Into<String>) -> impl FnOnce(tokio::task::JoinError) -> Self {
        let op = op.into();
        move |source| ArtifactError::Task { op, source }
    }
}
