//! gantry-artifacts: content-addressed storage for what steps read and write.
//!
//! An artifact is a file or a directory tree, named by the sha256 of its canonical bytes (a
//! file's bytes, or a deterministic tar of the tree; see `pack`). Objects live in any
//! `object_store` backend — the local filesystem by default — and are committed by writing a
//! small metadata object after the content. Reading verifies the digest, and directory trees
//! are unpacked entry by entry with path and symlink checks, because outputs come from
//! untrusted containers.

mod digest;
mod error;
mod export;
mod pack;
mod store;
mod symlink;
mod unpack;

use serde::{Deserialize, Serialize};

pub use error::ArtifactError;
pub use store::ArtifactStore;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    File,
    Directory,
}

impl ArtifactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::File => "file",
            ArtifactKind::Directory => "directory",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// `sha256:<64 lowercase hex>`.
    pub digest: String,
    pub kind: ArtifactKind,
    /// Bytes stored: a file's length, or the length of a directory's tar.
    pub size: u64,
}
