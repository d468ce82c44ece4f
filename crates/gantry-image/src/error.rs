//! The one error type of the image store.

use std::path::PathBuf;

/// Everything that can go wrong while importing, unpacking, resolving or removing an image.
///
/// Messages are lower-case, name the failing path, digest or reference, and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON document (manifest, index, config) could not be parsed or written.
    #[error("invalid JSON in {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// A layer entry would write outside the image root or through a symlink.
    #[error("entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },

    /// An error inside one layer; `source` says which entry and why.
    #[error("layer {layer}: {source}")]
    Layer {
        layer: String,
        #[source]
        source: Box<ImageError>,
    },

    /// A size or entry-count bound was hit.
    #[error("{0}; raise the unpack limits only for images you trust")]
    LimitExceeded(String),

    /// The input is not an archive or layout this store understands.
    #[error("{path}: {reason}")]
    InvalidArchive { path: PathBuf, reason: String },

    /// A plain rootfs tar has no name of its own.
    #[error(
        "{path} is a plain rootfs tar with no image name in it; pass a name (for example `--name myimage:1`)"
    )]
    NameRequired { path: PathBuf },

    /// Content does not hash to the digest (or size) that refers to it.
    #[error(
        "{what}: expected {expected}, found {actual}; the content is corrupt or was tampered with"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// A reference is not a valid image name, digest or digest prefix.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// No image matches the reference.
    #[error(
        "image {0:?} not found; list images with `gantry images` or import one with `gantry image import`"
    )]
    NotFound(String),

    /// A digest prefix matches more than one image.
    #[error(
        "image reference {reference:?} is ambiguous: it matches {matches}; use more digest characters"
    )]
    Ambiguous { reference: String, matches: String },

    /// `name@sha256:…` where the name points at another digest.
    #[error("image {name} is {actual}, not {pinned} as pinned in {reference:?}")]
    PinMismatch {
        reference: String,
        name: String,
        pinned: String,
        actual: String,
    },

    /// A user or group could not be resolved inside the image.
    #[error("user {user:?} in image {digest}: {reason}")]
    User {
        user: String,
        digest: String,
        reason: String,
    },

    /// An archive or layer is not well-formed (bad tar header, truncated stream, bad JSON shape).
    #[error("{0}")]
    Malformed(String),

    /// A registry refused a request or answered something unusable.
    #[error("registry {registry}: {reference}: {message}")]
    Registry {
        registry: String,
        reference: String,
        /// The HTTP status, when the registry answered with one.
        status: Option<u16>,
        message: String,
    },

    /// The image uses a feature this store does not support.
    #[error("{0}")]
    Unsupported(String),
}

impl ImageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn unsafe_entry(
        entry: impl AsRef<std::path::Path>,
        reason: impl Into<String>,
    ) -> Self {
        ImageError::UnsafeEntry {
            entry: entry.as_ref().display().to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        ImageError::Json {
            what: what.into(),
            source,
        }
    }
}
