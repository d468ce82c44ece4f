//! Reading files of an untrusted root filesystem without ever leaving it.
//!
//! Paths are resolved one component at a time. A symlink is followed *as if the rootfs were
//! `/`*: an absolute target starts again at the rootfs root, `..` stops at the root, and at most
//! [`MAX_SYMLINK_HOPS`] links are followed. Only the resolved, symlink-free path is opened.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Component, Path, PathBuf};

use crate::ScanError;

/// Symlinks followed while resolving one path (Linux's own limit is 40).
pub(crate) const MAX_SYMLINK_HOPS: usize = 40;

/// An unpacked root filesystem on the host.
#[derive(Debug)]
pub(crate) struct RootFs {
    root: PathBuf,
}

/// A path inside the rootfs after confined symlink resolution.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// Where it is on the host.
    pub host: PathBuf,
    /// Where it is inside the rootfs, `/`-separated and without a leading slash.
    pub inside: String,
    /// Its metadata (never that of a symlink).
    pub meta: fs::Metadata,
}

/// Why a file could not be read (the caller turns it into a note).
pub(crate) type Reason = String;

impl RootFs {
    /// Opens the rootfs at `root`, which must be a directory (the path itself is the caller's,
    /// so it may be a symlink on the host).
    pub fn new(root: &Path) -> Result<Self, ScanError> {
        let root = fs::canonicalize(root).map_err(|e| ScanError::io(root, e))?;
        let meta = fs::metadata(&root).map_err(|e| ScanError::io(&root, e))?;
        if !meta.is_dir() {
            return Err(ScanError::NotADirectory(root));
        }
        Ok(RootFs { root })
    }

    /// Resolves `rel` (relative to the rootfs root; a leading `/` is ignored). `Ok(None)` when
    /// it does not exist; `Err` for loops and I/O errors other than "not found".
    pub fn resolve(&self, rel: &str) -> Result<Option<Resolved>, Reason> {
        let mut pending: VecDeque<OsString> = VecDeque::new();
        push_components(&mut pending, Path::new(rel), false);
        let mut stack: Vec<OsString> = Vec::new();
        let mut hops = 0usize;
        while let Some(component) = pending.pop_front() {
            if component == ".." {
                stack.pop();
                continue;
            }
            stack.push(component);
            let host = self.host_path(&stack);
            let meta = match fs::symlink_metadata(&host) {
                Ok(meta) => meta,
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(format!("{}: {e}", join(&stack))),
            };
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(format!("{rel}: more than {MAX_SYMLINK_HOPS} symlinks"));
                }
                let target = fs::read_link(&host).map_err(|e| format!("{}: {e}", join(&stack)))?;
                stack.pop();
                if target.is_absolute() {
                    stack.clear();
                }
                push_components(&mut pending, &target, true);
            } else if !pending.is_empty() && !meta.is_dir() {
                return Ok(None);
            }
        }
        let host = self.host_path(&stack);
        let meta = match fs::symlink_metadata(&host) {
            Ok(meta) => meta,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(format!("{rel}: {e}")),
        };
        Ok(Some(Resolved {
            host,
            inside: join(&stack),
            meta,
        }))
    }

    /// Reads the regular file at `rel`, at most `cap` bytes. `Ok(None)` when it does not exist;
    /// `Err` when it is not a regular file, is larger than `cap` or cannot be read.
    pub fn read_file(&self, rel: &str, cap: u64) -> Result<Option<(Vec<u8>, String)>, Reason> {
        let Some(resolved) = self.resolve(rel)? else {
            return Ok(None);
        };
        if !resolved.meta.is_file() {
            return Err(format!("{}: not a regular file", resolved.inside));
        }
        let bytes = read_capped(&resolved.host, cap, true)
            .map_err(|e| format!("{}: {e}", resolved.inside))?;
        Ok(Some((bytes, resolved.inside)))
    }

    /// Like [`RootFs::read_file`] but silently keeps only the first `cap` bytes.
    pub fn read_prefix(&self, rel: &str, cap: u64) -> Result<Option<(Vec<u8>, String)>, Reason> {
        let Some(resolved) = self.resolve(rel)? else {
            return Ok(None);
        };
        if !resolved.meta.is_file() {
            return Err(format!("{}: not a regular file", resolved.inside));
        }
        let bytes = read_capped(&resolved.host, cap, false)
            .map_err(|e| format!("{}: {e}", resolved.inside))?;
        Ok(Some((bytes, resolved.inside)))
    }

    /// The names in the directory at `rel` (resolved), sorted, at most `cap` of them.
    /// `Ok(None)` when it does not exist or is not a directory.
    pub fn list_dir(&self, rel: &str, cap: usize) -> Result<Option<(Vec<String>, String)>, Reason> {
        let Some(resolved) = self.resolve(rel)? else {
            return Ok(None);
        };
        if !resolved.meta.is_dir() {
            return Ok(None);
        }
        let entries =
            fs::read_dir(&resolved.host).map_err(|e| format!("{}: {e}", resolved.inside))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", resolved.inside))?;
            if names.len() >= cap {
                return Err(format!("{}: more than {cap} entries", resolved.inside));
            }
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(Some((names, resolved.inside)))
    }

    fn host_path(&self, stack: &[OsString]) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(stack);
        path
    }
}

/// Reads at most `cap` bytes of the file at `path` (a path that is not a symlink). With
/// `strict`, a longer file is an error; otherwise it is cut.
pub(crate) fn read_capped(path: &Path, cap: u64, strict: bool) -> std::io::Result<Vec<u8>> {
    let file = fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if strict && meta.len() > cap {
        return Err(too_large(cap));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(cap)).unwrap_or(0));
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        if strict {
            return Err(too_large(cap));
        }
        bytes.truncate(usize::try_from(cap).unwrap_or(usize::MAX));
    }
    Ok(bytes)
}

fn too_large(cap: u64) -> std::io::Error {
    std::io::Error::other(format!("larger than {cap} bytes"))
}

fn is_missing(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

/// Queues the components of `path`; `front` puts them before what is already pending (a
/// symlink target replaces the link and is followed by the rest of the path).
fn push_components(pending: &mut VecDeque<OsString>, path: &Path, front: bool) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    if front {
        for part in parts.into_iter().rev() {
            pending.push_front(part);
        }
    } else {
        pending.extend(parts);
    }
}

fn join(stack: &[OsString]) -> String {
    stack
        .iter()
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("usr/lib"))?;
        fs::create_dir_all(root.join("etc"))?;
        fs::write(root.join("usr/lib/os-release"), "ID=debian\n")?;
        fs::write(dir.path().join("secret"), "outside")?;
        symlink("../usr/lib/os-release", root.join("etc/os-release"))?;
        symlink("/usr/lib/os-release", root.join("etc/abs"))?;
        symlink("../../../../secret", root.join("etc/escape"))?;
        symlink("/../secret", root.join("etc/escape-abs"))?;
        symlink("loop", root.join("etc/loop"))?;
        let fs = RootFs::new(&root)?;
        let read = |rel: &str| fs.read_file(rel, 1024);
        assert_eq!(
            read("etc/os-release")?,
            Some((b"ID=debian\n".to_vec(), "usr/lib/os-release".to_string()))
        );
        assert!(read("etc/abs")?.is_some());
        // `..` stops at the root: these resolve to `/secret` of the rootfs, which is absent.
        assert_eq!(read("etc/escape")?, None);
        assert_eq!(read("etc/escape-abs")?, None);
        assert!(read("etc/loop").is_err());
        assert_eq!(read("etc/os-release/x")?, None);
        Ok(())
    }
}
