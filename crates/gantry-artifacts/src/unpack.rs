//! Extracts a directory artifact's tar, entry by entry, refusing anything the packer would not
//! have produced: absolute paths, `..`, hard links, devices, writes through a symlink, a
//! second entry at an existing path, and symlinks that resolve outside the tree.
//!
//! The digest was verified before extraction, but whoever can write the object store can
//! store a crafted tar under its own correct digest, so the checks stay.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use crate::error::ArtifactError;
use crate::symlink::check_link;

const FILE_MODE: u32 = 0o644;
const EXEC_MODE: u32 = 0o755;
const DIR_MODE: u32 = 0o755;

/// Extracts `archive` into the existing, empty directory `dest`.
pub(crate) fn unpack_tree<R: Read>(
    archive: R,
    dest: &Path,
    digest: &str,
) -> Result<(), ArtifactError> {
    let unsafe_entry = |entry: &Path, reason: &str| ArtifactError::UnsafeEntry {
        digest: digest.to_owned(),
        entry: entry.display().to_string(),
        reason: reason.to_owned(),
    };
    let corrupt = |e: io::Error| ArtifactError::Corrupt {
        digest: digest.to_owned(),
        detail: format!("unreadable archive: {e}"),
    };
    let mut links = Vec::new();
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let rel = checked_relative(&raw)
            .ok_or_else(|| unsafe_entry(&raw, "the path is empty, absolute or contains `..`"))?;
        make_parents(dest, &rel).map_err(|reason| unsafe_entry(&raw, &reason))?;
        let target = dest.join(&rel);
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(unsafe_entry(&raw, "a directory over an existing entry")),
                Err(_) => create_dir(&target)?,
            },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let exec = entry.header().mode().map_err(corrupt)? & 0o111 != 0;
                // create_new fails on any existing entry, including a symlink, so nothing is
                // ever written through one.
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|e| match e.kind() {
                        io::ErrorKind::AlreadyExists => {
                            unsafe_entry(&raw, "a second entry at the same path")
                        }
                        _ => ArtifactError::io("create", &target)(e),
                    })?;
                io::copy(&mut entry, &mut file).map_err(corrupt)?;
                let mode = if exec { EXEC_MODE } else { FILE_MODE };
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(ArtifactError::io("set permissions of", &target))?;
            }
            tar::EntryType::Symlink => {
                let link_target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| unsafe_entry(&raw, "a symlink without a target"))?
                    .into_owned();
                if link_target.has_root() {
                    return Err(unsafe_entry(&raw, "an absolute symlink"));
                }
                symlink(&link_target, &target).map_err(|e| match e.kind() {
                    io::ErrorKind::AlreadyExists => {
                        unsafe_entry(&raw, "a second entry at the same path")
                    }
                    _ => ArtifactError::io("create symlink", &target)(e),
                })?;
                links.push((rel, link_target));
            }
            other => {
                return Err(unsafe_entry(
                    &raw,
                    &format!("entry type {other:?} is never stored"),
                ));
            }
        }
    }
    // Checked once the whole tree exists: a link's resolution depends on links after it.
    for (rel, link_target) in links {
        check_link(dest, &rel, &link_target).map_err(|problem| {
            unsafe_entry(
                &rel,
                &format!(
                    "symlink -> {} {}",
                    link_target.display(),
                    problem.describe()
                ),
            )
        })?;
    }
    Ok(())
}

/// The path as plain names, or None when it is empty, absolute or climbs with `..`.
fn checked_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Creates the missing parents of `rel` under `dest`; an existing parent must be a real
/// directory, never a symlink or a file.
fn make_parents(dest: &Path, rel: &Path) -> Result<(), String> {
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    let mut at = dest.to_path_buf();
    for component in parent.components() {
        at.push(component);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "its parent {} is not a directory",
                    at.strip_prefix(dest).unwrap_or(&at).display()
                ));
            }
            Err(_) => create_dir(&at).map_err(|e| e.to_string())?,
        }
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), ArtifactError> {
    fs::create_dir(path).map_err(ArtifactError::io("create directory", path))?;
    // Explicit: the umask must not make inputs unreadable to the container's user.
    fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
        .map_err(ArtifactError::io("set permissions of", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:test";

    /// Builds a tar by hand, including what the packer never writes.
    struct Crafted(tar::Builder<Vec<u8>>);

    impl Crafted {
        fn new() -> Self {
            Crafted(tar::Builder::new(Vec::new()))
        }

        fn raw_header(kind: tar::EntryType, size: u64) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_mode(0o644);
            h
        }

        /// Writes the name bytes directly, bypassing the tar crate's own `..` refusal.
        fn entry(mut self, kind: tar::EntryType, name: &str, data: &[u8]) -> Self {
            let mut h = Self::raw_header(kind, data.len() as u64);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }

        fn link(mut self, kind: tar::EntryType, name: &str, target: &str) -> Self {
            let mut h = Self::raw_header(kind, 0);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
            h.set_cksum();
            self.0.append(&h, io::empty()).unwrap();
            self
        }

        fn unpack(self) -> (tempfile::TempDir, Result<(), ArtifactError>) {
            let bytes = self.0.into_inner().unwrap();
            let outer = tempfile::tempdir().unwrap();
            let dest = outer.path().join("tree");
            fs::create_dir(&dest).unwrap();
            let result = unpack_tree(&bytes[..], &dest, DIGEST);
            (outer, result)
        }
    }

    fn refused(c: Crafted, what: &str) -> String {
        let (outer, result) = c.unpack();
        let err = result.expect_err(what).to_string();
        assert!(err.contains(DIGEST), "{err}");
        // Nothing escaped next to the tree.
        let siblings: Vec<_> = fs::read_dir(outer.path()).unwrap().collect();
        assert_eq!(siblings.len(), 1, "{what}: wrote outside the tree");
        err
    }

    use tar::EntryType::{Directory, Link, Regular, Symlink};

    #[test]
    fn a_well_formed_tree_unpacks() {
        let (outer, result) = Crafted::new()
            .entry(Directory, "d", b"")
            .entry(Regular, "d/f", b"hello")
            .link(Symlink, "d/l", "f")
            .unpack();
        result.unwrap();
        let tree = outer.path().join("tree");
        assert_eq!(fs::read(tree.join("d/l")).unwrap(), b"hello");
    }

    #[test]
    fn parent_dir_and_absolute_paths_are_refused() {
        refused(Crafted::new().entry(Regular, "../evil", b"x"), "dotdot");
        refused(
            Crafted::new().entry(Regular, "a/../../evil", b"x"),
            "nested dotdot",
        );
        refused(Crafted::new().entry(Regular, "/tmp/evil", b"x"), "absolute");
    }

    #[test]
    fn writing_through_a_symlink_is_refused() {
        let err = refused(
            Crafted::new()
                .link(Symlink, "out", "..")
                .entry(Regular, "out/evil", b"x"),
            "parent symlink",
        );
        assert!(err.contains("not a directory"), "{err}");
        refused(
            Crafted::new()
                .link(Symlink, "f", "g")
                .entry(Regular, "f", b"x"),
            "file over symlink",
        );
    }

    #[test]
    fn escaping_symlinks_and_hard_links_are_refused() {
        refused(
            Crafted::new().link(Symlink, "l", "/etc/passwd"),
            "absolute link",
        );
        refused(Crafted::new().link(Symlink, "l", "../x"), "escaping link");
        refused(
            Crafted::new()
                .link(Symlink, "a", ".")
                .link(Symlink, "b", "a/.."),
            "escape through another link",
        );
        refused(Crafted::new().link(Link, "h", "/etc/passwd"), "hard link");
    }

    #[test]
    fn modes_are_normalized() {
        let mut c = Crafted::new();
        let mut h = Crafted::raw_header(Regular, 1);
        h.set_path("setuid").unwrap();
        h.set_mode(0o4777);
        h.set_cksum();
        c.0.append(&h, &b"x"[..]).unwrap();
        let (outer, result) = c.unpack();
        result.unwrap();
        let mode = fs::metadata(outer.path().join("tree/setuid"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }
}
