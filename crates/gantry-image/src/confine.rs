//! Lexical checks that keep every path a layer names inside the directory it is unpacked into.
//!
//! The unpacker is the only writer of its staging directory, so checking with `lstat` before each
//! write is enough: nothing can swap a component between the check and the write.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Turns an archive entry path into a path relative to the image root.
///
/// `./` and `.` components are dropped; an absolute path or a `..` component is refused rather
/// than cleaned, because an archive that contains one was not built for safe extraction. The root
/// itself comes back as an empty path.
pub(crate) fn entry_relative_path(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut rel = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => rel.push(part),
            Component::ParentDir => return Err("path escapes the image root (`..` component)"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("path escapes the image root (absolute path)");
            }
        }
    }
    Ok(rel)
}

/// Turns a hardlink target into a root-relative path. Tar writers sometimes record absolute
/// targets; those name a file inside the same archive, so they are read relative to the root.
pub(crate) fn hardlink_target_path(raw: &Path) -> Result<PathBuf, &'static str> {
    let stripped = raw.strip_prefix("/").unwrap_or(raw);
    entry_relative_path(stripped)
        .map_err(|_| "hardlink target escapes the image root (`..` component)")
}

/// Whether a relative symlink at `link` (root-relative) pointing to `target` climbs above the
/// root when resolved lexically. Absolute targets are resolved inside the container root at run
/// time and are never followed while unpacking, so they do not escape.
pub(crate) fn symlink_escapes(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = link.parent().map_or(0, |p| p.components().count());
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return true;
                }
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    false
}

/// What was found when walking the parents of a path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parents {
    /// Every parent exists and is a real directory.
    Present,
    /// Some parent does not exist (only when not creating).
    Missing,
}

/// Walks the parent directories of `rel` under `root` without following symlinks.
///
/// A parent that is a symlink is refused: writing through it could land anywhere on the host.
/// With `create`, missing parents are made (mode 0755), as tar does for entries whose directory
/// entry came earlier in a lower layer or not at all.
pub(crate) fn check_parents(root: &Path, rel: &Path, create: bool) -> Result<Parents, String> {
    let Some(parent) = rel.parent() else {
        return Ok(Parents::Present);
    };
    let mut current = root.to_path_buf();
    let mut shown = PathBuf::new();
    for component in parent.components() {
        current.push(component);
        shown.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "parent {:?} is a symlink; refusing to write through it",
                    shown.display().to_string()
                ));
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "parent {:?} is not a directory",
                    shown.display().to_string()
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Ok(Parents::Missing);
                }
                create_dir_0755(&current).map_err(|e| {
                    format!(
                        "cannot create parent {:?}: {e}",
                        shown.display().to_string()
                    )
                })?;
            }
            Err(e) => {
                return Err(format!(
                    "cannot inspect parent {:?}: {e}",
                    shown.display().to_string()
                ));
            }
        }
    }
    Ok(Parents::Present)
}

pub(crate) fn create_dir_0755(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new().mode(0o755).create(path)?;
    // The umask may have narrowed the mode; the image root must be readable by the step's user.
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_cleaned_and_escapes_refused() {
        assert_eq!(
            entry_relative_path(Path::new("./etc/passwd")).unwrap(),
            Path::new("etc/passwd")
        );
        assert_eq!(
            entry_relative_path(Path::new("etc/./x/")).unwrap(),
            Path::new("etc/x")
        );
        assert_eq!(entry_relative_path(Path::new("./")).unwrap(), Path::new(""));
        assert!(entry_relative_path(Path::new("../escape")).is_err());
        assert!(entry_relative_path(Path::new("a/../../b")).is_err());
        assert!(entry_relative_path(Path::new("a/../b")).is_err());
        assert!(entry_relative_path(Path::new("/abs/path")).is_err());
    }

    #[test]
    fn hardlink_targets_are_root_relative() {
        assert_eq!(
            hardlink_target_path(Path::new("/bin/sh")).unwrap(),
            Path::new("bin/sh")
        );
        assert_eq!(
            hardlink_target_path(Path::new("./bin/sh")).unwrap(),
            Path::new("bin/sh")
        );
        assert!(hardlink_target_path(Path::new("../../etc/passwd")).is_err());
        assert!(hardlink_target_path(Path::new("/../etc/passwd")).is_err());
    }

    #[test]
    fn symlink_escape_is_lexical_from_the_link_directory() {
        assert!(!symlink_escapes(Path::new("bin/sh"), Path::new("busybox")));
        assert!(!symlink_escapes(
            Path::new("usr/bin/sh"),
            Path::new("../../bin/busybox")
        ));
        assert!(symlink_escapes(
            Path::new("usr/bin/sh"),
            Path::new("../../../bin/busybox")
        ));
        assert!(symlink_escapes(Path::new("up"), Path::new("../../..")));
        assert!(symlink_escapes(Path::new("a/b"), Path::new("c/../../..")));
        assert!(!symlink_escapes(Path::new("a/b"), Path::new("./c/../..")));
        assert!(!symlink_escapes(Path::new("etc"), Path::new("/etc")));
        assert!(!symlink_escapes(Path::new("x"), Path::new("/../../..")));
    }

    #[test]
    fn parents_through_symlinks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        let err = check_parents(dir.path(), Path::new("link/passwd"), true).unwrap_err();
        assert!(err.contains("symlink"), "{err}");
        assert_eq!(
            check_parents(dir.path(), Path::new("a/b/c"), false).unwrap(),
            Parents::Missing
        );
        assert_eq!(
            check_parents(dir.path(), Path::new("a/b/c"), true).unwrap(),
            Parents::Present
        );
        assert!(dir.path().join("a/b").is_dir());
        fs::write(dir.path().join("f"), b"").unwrap();
        assert!(
            check_parents(dir.path(), Path::new("f/x"), true)
                .unwrap_err()
                .contains("not a directory")
        );
    }
}
