//! Scratch directories inside the store root that vanish unless committed, so a failed import
//! leaves nothing behind.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ImageError;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory under `<root>/tmp` removed on drop. Staging lives on the store's filesystem so
/// that committing is a `rename`, never a copy.
#[derive(Debug)]
pub(crate) struct StagingDir {
    path: PathBuf,
}

impl StagingDir {
    pub(crate) fn new(tmp_root: &Path, prefix: &str) -> Result<StagingDir, ImageError> {
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = tmp_root.join(format!("{prefix}-{}-{n}-{nanos:08x}", std::process::id()));
            match fs::DirBuilder::new().create(&path) {
                Ok(()) => return Ok(StagingDir { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ImageError::io("cannot create staging directory", path, e)),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        // Nothing to report to: the caller already has the error that made us drop unused.
        let _ = remove_tree(&self.path);
    }
}

/// Removes a file, symlink or directory tree without following symlinks. Directories are made
/// writable first: a layer may carry read-only directories that an unprivileged user could not
/// otherwise empty.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    for child in fs::read_dir(path)? {
        remove_tree(&child?.path())?;
    }
    match fs::remove_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_dir_is_removed_on_drop_even_with_readonly_dirs() {
        let root = tempfile::tempdir().unwrap();
        let path;
        {
            let staging = StagingDir::new(root.path(), "t").unwrap();
            path = staging.path().to_path_buf();
            let ro = path.join("ro");
            fs::create_dir(&ro).unwrap();
            fs::write(ro.join("f"), b"x").unwrap();
            std::os::unix::fs::symlink("/etc", ro.join("l")).unwrap();
            fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        }
        assert!(!path.exists());
        assert!(Path::new("/etc").is_dir());
    }
}
