//! The errors of this crate.

use std::path::PathBuf;

/// Why an inventory, an import or a database load failed as a whole. Problems with single
/// files or records are not errors: they end up in `notes` or [`crate::ImportReport::skipped`].
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The rootfs given to [`crate::inventory`] is not a directory.
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The import source is neither a `.zip`, a `.json` file nor a directory, or it cannot be
    /// read as one (a broken zip archive, too many entries).
    #[error("{}: {reason}", path.display())]
    InvalidSource {
        /// The source path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The stored database cannot be read back (truncated or written by an incompatible
    /// version); re-import to rebuild it.
    #[error("vulnerability database {}: {reason}", path.display())]
    CorruptDatabase {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl ScanError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ScanError::Io {
            path: path.into(),
            source,
        }
    }
}
