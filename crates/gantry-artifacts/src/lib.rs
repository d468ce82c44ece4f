//! gantry-artifacts: content-addressed storage for what steps read and write.
//!
//! An artifact is a file or a directory tree, named by the sha256 of its canonical bytes (a
//! file's bytes, or a deterministic tar of the tree; see `pack`). Objects live in any
//! `object_store` backend — the local filesystem by default — and are committed by writing a
//! small metadata object after the content. `Location` names a store: a directory, or an
//! S3-compatible bucket and prefix. Reading verifies the digest, and directory trees
//! are unpacked entry by entry with path and symlink checks, because outputs come from
//! untrusted containers.
//!
//! Inputs named by remote users come in two ways, both refusing anything outside what the user
//! may read: `put_confined` reads below an admin-configured data root by file descriptors
//! only (no `..`, no symlinks, no hard links; optionally with an unprivileged user's
//! permissions), and `put_stream` takes a client's upload, verified against the digest the
//! client computed with `digest_path` and sent with `canonical_body`, and a directory's tar
//! checked entry by entry before anything is committed.

mod archive_check;
mod capture;
mod confined;
mod digest;
mod error;
mod export;
mod gc;
mod location;
mod pack;
mod read_as;
mod store;
mod streamed;
mod symlink;
mod unpack;

use serde::{Deserialize, Serialize};

pub use confined::{Confined, probe_confined};
pub use error::ArtifactError;
pub use gc::{StoreUsage, StoredArtifact, disk_bytes};
pub use location::Location;
pub use store::ArtifactStore;
pub use streamed::{canonical_body, digest_path};

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
