use std::path::PathBuf;

use thiserror::Error;

use crate::ArtifactKind;

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

    #[error(
        "no space left on device while storing {path} ({detail}): free some space (`gantry df` shows what uses it, `gantry gc` removes what nothing needs) and run the step again"
    )]
    NoSpace { path: PathBuf, detail: String },

    #[error("this needs an artifact store on the local filesystem")]
    NotLocal,

    #[error("bad artifact store location '{location}': {detail}")]
    Location { location: String, detail: String },

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

    #[error(
        "input {rel} is refused: {why} (inputs are read only from inside the data root {root})"
    )]
    Escape {
        root: PathBuf,
        rel: PathBuf,
        why: &'static str,
    },

    #[error(
        "input {path} is refused: it has {links} hard links, and a file with more than one link may be a link to a file outside the data root (copy it instead)"
    )]
    HardLink { path: PathBuf, links: u64 },

    #[error("permission denied: {as_user} cannot read input {path}")]
    PermissionDenied { path: PathBuf, as_user: String },

    #[error(
        "the upload does not match its digest: expected {expected}, got {got}; nothing was stored"
    )]
    DigestMismatch { expected: String, got: String },

    #[error(
        "the upload of {digest} is larger than the {max} bytes allowed here; nothing was stored"
    )]
    UploadTooLarge { digest: String, max: u64 },

    #[error(
        "artifact {digest} is already stored as a {}, not a {}",
        .stored.as_str(),
        .requested.as_str()
    )]
    KindConflict {
        digest: String,
        stored: ArtifactKind,
        requested: ArtifactKind,
    },

    #[error("the uploaded archive for {digest} is not a valid tar ({detail}); nothing was stored")]
    BadArchive { digest: String, detail: String },

    #[error("reading the upload body failed: {source}")]
    Body {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

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
