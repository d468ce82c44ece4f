//! Copies a materialized artifact out of the cache for a user (`gantry artifact get`).

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use walkdir::WalkDir;

use crate::error::ArtifactError;

/// Copies `source` (file or tree) to `dest` inside `out_dir`, staged then renamed so a
/// partial copy is never left at `dest`; fails if `dest` exists.
pub(crate) fn copy_out(source: &Path, out_dir: &Path, dest: &Path) -> Result<(), ArtifactError> {
    fs::create_dir_all(out_dir).map_err(ArtifactError::io("create", out_dir))?;
    let exists = || ArtifactError::Exists {
        path: dest.to_owned(),
    };
    if fs::symlink_metadata(dest).is_ok() {
        return Err(exists());
    }
    let meta = fs::symlink_metadata(source).map_err(ArtifactError::io("read", source))?;
    if meta.is_dir() {
        let staging = tempfile::Builder::new()
            .prefix(".export-")
            .tempdir_in(out_dir)
            .map_err(ArtifactError::io("create a temp directory in", out_dir))?;
        copy_tree(source, staging.path())?;
        fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
            .map_err(ArtifactError::io("set permissions of", staging.path()))?;
        // rename(2) would silently replace an empty directory created meanwhile.
        if fs::symlink_metadata(dest).is_ok() {
            return Err(exists());
        }
        fs::rename(staging.path(), dest).map_err(ArtifactError::io("create", dest))?;
        let _ = staging.keep();
    } else {
        let mut staging = tempfile::Builder::new()
            .prefix(".export-")
            .tempfile_in(out_dir)
            .map_err(ArtifactError::io("create a temp file in", out_dir))?;
        let mut src = fs::File::open(source).map_err(ArtifactError::io("open", source))?;
        io::copy(&mut src, staging.as_file_mut())
            .map_err(ArtifactError::io("write", staging.path()))?;
        staging
            .as_file()
            .set_permissions(meta.permissions())
            .map_err(ArtifactError::io("set permissions of", staging.path()))?;
        staging.persist_noclobber(dest).map_err(|e| {
            if e.error.kind() == io::ErrorKind::AlreadyExists {
                exists()
            } else {
                ArtifactError::io("create", dest)(e.error)
            }
        })?;
    }
    Ok(())
}

/// Copies a tree that came out of the checked unpacker: symlinks are recreated, not followed.
fn copy_tree(from: &Path, to: &Path) -> Result<(), ArtifactError> {
    for entry in WalkDir::new(from).min_depth(1).follow_links(false) {
        let entry = entry.map_err(|e| ArtifactError::Io {
            action: "read",
            path: e.path().unwrap_or(from).to_owned(),
            source: e.into(),
        })?;
        let rel = entry
            .path()
            .strip_prefix(from)
            .map_err(|_| ArtifactError::Changed {
                path: entry.path().to_owned(),
            })?;
        let target = to.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            fs::create_dir(&target).map_err(ArtifactError::io("create", &target))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
                .map_err(ArtifactError::io("set permissions of", &target))?;
        } else if ft.is_symlink() {
            let link = fs::read_link(entry.path())
                .map_err(ArtifactError::io("read symlink", entry.path()))?;
            symlink(&link, &target).map_err(ArtifactError::io("create", &target))?;
        } else {
            fs::copy(entry.path(), &target).map_err(ArtifactError::io("copy to", &target))?;
        }
    }
    Ok(())
}
