//! Safe layer unpacking: entry by entry, with our own confinement checks, whiteouts and bounds.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use tar::EntryType;

use crate::ImageError;
use crate::compression::{Budget, CappedReader, HashingReader, decoded_reader};
use crate::confine::{
    Parents, check_parents, entry_relative_path, hardlink_target_path, symlink_escapes,
};
use crate::staging::remove_tree;

/// Bounds on what unpacking an image may write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Total uncompressed tar bytes over all layers of an image (decompression stops here too).
    pub max_total_bytes: u64,
    /// Total number of tar entries over all layers of an image.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_total_bytes: 8 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// What the layers of one image have used so far.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    pub(crate) bytes: u64,
    pub(crate) entries: u64,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Unpacks one layer (plain, gzip or zstd tar, told by its magic bytes) onto `dest`, applying its
/// whiteouts to what earlier layers left there.
///
/// `used` carries the uncompressed bytes read over all layers of an image; the call fails once it
/// would pass `limits.max_total_bytes`. `limits.max_entries` bounds the entries of this call. On
/// error `dest` is left half-written: unpack into a scratch directory and drop it on failure.
pub fn unpack_layer<R: Read>(
    reader: R,
    dest: &Path,
    limits: &UnpackLimits,
    used: &mut u64,
) -> Result<(), ImageError> {
    let mut usage = Usage {
        bytes: *used,
        entries: 0,
    };
    let result = unpack_layer_digest(reader, dest, limits, &mut usage);
    *used = usage.bytes;
    result.map(|_| ())
}

/// Like [`unpack_layer`], sharing the entry count across layers, and returning the layer's diff
/// ID (sha256 of the uncompressed tar) so it can be checked against the image config.
pub(crate) fn unpack_layer_digest<R: Read>(
    reader: R,
    dest: &Path,
    limits: &UnpackLimits,
    usage: &mut Usage,
) -> Result<String, ImageError> {
    match fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(ImageError::io(
                "cannot unpack into",
                dest,
                io::Error::other("not a directory"),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(|e| ImageError::io("cannot create", dest, e))?;
        }
        Err(e) => return Err(ImageError::io("cannot inspect", dest, e)),
    }
    let budget = Budget::new(limits.max_total_bytes.saturating_sub(usage.bytes));
    let (_, decoded) = decoded_reader(reader)?;
    let mut hashing = HashingReader::new(CappedReader::new(decoded, budget.clone()));
    let result = {
        let mut archive = tar::Archive::new(&mut hashing);
        let mut unpacker = Unpacker {
            dest,
            as_root: nix::unistd::geteuid().is_root(),
            this_layer: HashSet::new(),
            limits,
            budget: budget.clone(),
            usage_entries: &mut usage.entries,
        };
        unpacker.run(&mut archive)
    };
    let result = result.and_then(|()| {
        // The tar ends at its zero blocks; read what follows so the diff ID covers the whole
        // stream, as the image config's diff_ids do. The cap still applies.
        io::copy(&mut hashing, &mut io::sink())
            .map(|_| ())
            .map_err(|e| ImageError::Malformed(format!("cannot read the layer stream: {e}")))
    });
    usage.bytes = usage.bytes.saturating_add(budget.read());
    match result {
        Err(ImageError::Malformed(_)) if budget.exceeded() => {
            Err(ImageError::LimitExceeded(format!(
                "layers decompress to more than the unpack limit of {} bytes",
                limits.max_total_bytes
            )))
        }
        Err(e) => Err(e),
        Ok(()) => Ok(hashing.finish().0),
    }
}

struct Unpacker<'a> {
    dest: &'a Path,
    as_root: bool,
    /// Paths this layer wrote: whiteouts and opaque markers hide lower layers only.
    this_layer: HashSet<PathBuf>,
    limits: &'a UnpackLimits,
    budget: Rc<Budget>,
    usage_entries: &'a mut u64,
}

impl Unpacker<'_> {
    fn run<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<(), ImageError> {
        let entries = archive.entries().map_err(|e| self.read_error(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.read_error(e))?;
            self.apply(&mut entry)?;
        }
        Ok(())
    }

    fn read_error(&self, e: io::Error) -> ImageError {
        if self.budget.exceeded() {
            // Reported by the caller, which knows the overall limit.
            ImageError::Malformed(String::new())
        } else {
            ImageError::Malformed(format!("cannot read the layer tar: {e}"))
        }
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = entry
            .path()
            .map_err(|e| ImageError::Malformed(format!("entry with an unreadable path: {e}")))?
            .into_owned();
        *self.usage_entries += 1;
        if *self.usage_entries > self.limits.max_entries {
            return Err(ImageError::LimitExceeded(format!(
                "entry {:?}: more than the unpack limit of {} entries",
                raw.display().to_string(),
                self.limits.max_entries
            )));
        }
        let rel = entry_relative_path(&raw).map_err(|r| ImageError::unsafe_entry(&raw, r))?;
        let unsafe_here = |reason: String| ImageError::unsafe_entry(&raw, reason);

        if let Some(name) = rel.file_name().and_then(|n| n.to_str())
            && let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX)
        {
            let parent = rel.parent().unwrap_or(Path::new(""));
            if name == OPAQUE_MARKER {
                return self.opaque(parent).map_err(unsafe_here);
            }
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // Other `.wh..wh.` names are aufs bookkeeping with no meaning in a rootfs.
                return Ok(());
            }
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(unsafe_here("whiteout names no file".into()));
            }
            return self.whiteout(&parent.join(hidden)).map_err(unsafe_here);
        }

        let header = entry.header();
        let mut kind = header.entry_type();
        if kind == EntryType::Regular && entry.path_bytes().ends_with(b"/") {
            kind = EntryType::Directory;
        }
        let raw_mode = header
            .mode()
            .map_err(|e| unsafe_here(format!("bad mode: {e}")))?;
        // setuid/setgid never survive; the sticky bit does on directories (/tmp needs it).
        let mode = if kind == EntryType::Directory {
            raw_mode & 0o1777
        } else {
            raw_mode & 0o777
        };
        let owner = self.owner(header).map_err(unsafe_here)?;

        if rel.as_os_str().is_empty() {
            return match kind {
                // The root keeps the store's own mode and owner (0755, root).
                EntryType::Directory | EntryType::XGlobalHeader | EntryType::XHeader => Ok(()),
                _ => Err(unsafe_here("entry replaces the image root".into())),
            };
        }

        match kind {
            EntryType::Directory => self.directory(&rel, mode, owner).map_err(unsafe_here),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.regular(entry, &raw, &rel, mode, owner)
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| unsafe_here(format!("unreadable symlink target: {e}")))?
                    .ok_or_else(|| unsafe_here("symlink without a target".into()))?
                    .into_owned();
                self.symlink(&rel, &target, owner).map_err(unsafe_here)
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| unsafe_here(format!("unreadable hardlink target: {e}")))?
                    .ok_or_else(|| unsafe_here("hardlink without a target".into()))?
                    .into_owned();
                self.hardlink(&rel, &target).map_err(unsafe_here)
            }
            EntryType::Fifo => self.fifo(&rel, mode, owner).map_err(unsafe_here),
            // Device nodes come from the runtime's /dev, never from an image.
            EntryType::Char | EntryType::Block => Ok(()),
            // Extension headers are consumed by the tar reader; anything else carries no file.
            _ => Ok(()),
        }
    }

    fn owner(&self, header: &tar::Header) -> Result<Option<(u32, u32)>, String> {
        if !self.as_root {
            return Ok(None);
        }
        let uid = header.uid().map_err(|e| format!("bad uid: {e}"))?;
        let gid = header.gid().map_err(|e| format!("bad gid: {e}"))?;
        let uid = u32::try_from(uid).map_err(|_| format!("uid {uid} out of range"))?;
        let gid = u32::try_from(gid).map_err(|_| format!("gid {gid} out of range"))?;
        Ok(Some((uid, gid)))
    }

    fn path(&self, rel: &Path) -> PathBuf {
        self.dest.join(rel)
    }

    fn parents(&self, rel: &Path) -> Result<(), String> {
        check_parents(self.dest, rel, true).map(|_| ())
    }

    /// Removes whatever a non-directory entry is about to replace.
    fn clear(&self, rel: &Path) -> Result<(), String> {
        remove_tree(&self.path(rel)).map_err(|e| format!("cannot replace the existing file: {e}"))
    }

    fn chown(&self, path: &Path, owner: Option<(u32, u32)>) -> Result<(), String> {
        match owner {
            Some((uid, gid)) => match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
                // Root inside a user namespace cannot give away ids it has no mapping for; the
                // file then keeps our own, which is what an unprivileged unpack does anyway.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
                other => other.map_err(|e| format!("cannot set owner {uid}:{gid}: {e}")),
            },
            None => Ok(()),
        }
    }

    fn directory(
        &mut self,
        rel: &Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), String> {
        self.parents(rel)?;
        let path = self.path(rel);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                self.clear(rel)?;
                fs::create_dir(&path).map_err(|e| format!("cannot create directory: {e}"))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(|e| format!("cannot create directory: {e}"))?;
            }
            Err(e) => return Err(format!("cannot inspect: {e}")),
        }
        self.chown(&path, owner)?;
        // Without root, the owner keeps write access so later entries and layers can go inside.
        let mode = if self.as_root { mode } else { mode | 0o700 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set mode: {e}"))?;
        self.this_layer.insert(rel.to_path_buf());
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &Path,
        rel: &Path,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<(), ImageError> {
        let shown = || raw.display().to_string();
        let over_limit = || {
            ImageError::LimitExceeded(format!(
                "entry {:?}: layers hold more than the unpack limit of {} bytes",
                shown(),
                self.limits.max_total_bytes
            ))
        };
        // Checked before writing anything, so a huge declared size costs nothing.
        if entry.size() > self.budget.remaining() {
            return Err(over_limit());
        }
        let unsafe_here = |reason: String| ImageError::unsafe_entry(raw, reason);
        self.parents(rel).map_err(unsafe_here)?;
        self.clear(rel).map_err(unsafe_here)?;
        let path = self.path(rel);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| unsafe_here(format!("cannot create file: {e}")))?;
        io::copy(entry, &mut file).map_err(|e| {
            if self.budget.exceeded() {
                over_limit()
            } else {
                ImageError::io("cannot write", &path, e)
            }
        })?;
        if let Ok(mtime) = entry.header().mtime() {
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
            // Tools such as Python compare mtimes against caches; a failure here is harmless.
            let _ = file.set_modified(when);
        }
        self.chown(&path, owner).map_err(unsafe_here)?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| ImageError::io("cannot set the mode of", &path, e))?;
        self.this_layer.insert(rel.to_path_buf());
        Ok(())
    }

    fn symlink(
        &mut self,
        rel: &Path,
        target: &Path,
        owner: Option<(u32, u32)>,
    ) -> Result<(), String> {
        if target.as_os_str().is_empty() {
            return Err("symlink with an empty target".into());
        }
        if symlink_escapes(rel, target) {
            return Err(format!(
                "symlink target {:?} escapes the image root",
                target.display().to_string()
            ));
        }
        self.parents(rel)?;
        self.clear(rel)?;
        let path = self.path(rel);
        std::os::unix::fs::symlink(target, &path)
            .map_err(|e| format!("cannot create symlink: {e}"))?;
        self.chown(&path, owner)?;
        self.this_layer.insert(rel.to_path_buf());
        Ok(())
    }

    fn hardlink(&mut self, rel: &Path, raw_target: &Path) -> Result<(), String> {
        let target = hardlink_target_path(raw_target)
            .map_err(|r| format!("{r}: {:?}", raw_target.display().to_string()))?;
        let shown = || raw_target.display().to_string();
        if target.as_os_str().is_empty() {
            return Err("hardlink to the image root".into());
        }
        match check_parents(self.dest, &target, false) {
            Ok(Parents::Present) => {}
            Ok(Parents::Missing) => {
                return Err(format!("hardlink target {:?} does not exist", shown()));
            }
            Err(reason) => return Err(format!("hardlink target {:?}: {reason}", shown())),
        }
        let target_path = self.path(&target);
        match fs::symlink_metadata(&target_path) {
            Ok(meta) if meta.file_type().is_file() => {}
            Ok(_) => {
                return Err(format!(
                    "hardlink target {:?} is not a regular file",
                    shown()
                ));
            }
            Err(_) => return Err(format!("hardlink target {:?} does not exist", shown())),
        }
        if target == rel {
            return Ok(());
        }
        self.parents(rel)?;
        self.clear(rel)?;
        fs::hard_link(&target_path, self.path(rel))
            .map_err(|e| format!("cannot create hardlink: {e}"))?;
        self.this_layer.insert(rel.to_path_buf());
        Ok(())
    }

    fn fifo(&mut self, rel: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<(), String> {
        self.parents(rel)?;
        self.clear(rel)?;
        let path = self.path(rel);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| format!("cannot create fifo: {e}"))?;
        self.chown(&path, owner)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set mode: {e}"))?;
        self.this_layer.insert(rel.to_path_buf());
        Ok(())
    }

    /// `.wh.<name>`: hide `<name>` as lower layers left it.
    fn whiteout(&mut self, rel: &Path) -> Result<(), String> {
        if self.this_layer.contains(rel) {
            return Ok(());
        }
        match check_parents(self.dest, rel, false)? {
            Parents::Missing => Ok(()),
            Parents::Present => {
                remove_tree(&self.path(rel)).map_err(|e| format!("cannot apply whiteout: {e}"))
            }
        }
    }

    /// `.wh..wh..opq`: the directory keeps only what this layer puts in it.
    fn opaque(&mut self, dir: &Path) -> Result<(), String> {
        if !dir.as_os_str().is_empty() {
            self.parents(dir)?;
        }
        let path = self.path(dir);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err("opaque directory is a symlink; refusing to write through it".into());
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                self.clear(dir)?;
                crate::confine::create_dir_0755(&path)
                    .map_err(|e| format!("cannot create directory: {e}"))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                crate::confine::create_dir_0755(&path)
                    .map_err(|e| format!("cannot create directory: {e}"))?;
            }
            Err(e) => return Err(format!("cannot inspect: {e}")),
        }
        self.this_layer.insert(dir.to_path_buf());
        self.clear_lower(dir)
    }

    fn clear_lower(&self, dir: &Path) -> Result<(), String> {
        let children =
            fs::read_dir(self.path(dir)).map_err(|e| format!("cannot list directory: {e}"))?;
        for child in children {
            let child = child.map_err(|e| format!("cannot list directory: {e}"))?;
            let rel = dir.join(child.file_name());
            if self.this_layer.contains(&rel) {
                let is_dir = child.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir {
                    self.clear_lower(&rel)?;
                }
            } else {
                remove_tree(&child.path())
                    .map_err(|e| format!("cannot apply opaque whiteout: {e}"))?;
            }
        }
        Ok(())
    }
}
