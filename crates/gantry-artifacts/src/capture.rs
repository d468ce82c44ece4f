//! Storing a step's outputs without extra copies, on a local store: a file is hashed once and
//! renamed into the store, then hard-linked into the cache of materialized copies, so the
//! next step's input costs nothing more; a directory is packed once, hashing as it goes, into
//! a staging file that is renamed in. A file with other hard links is stored as a reflink
//! where the filesystem has them; only then, or on another filesystem, is it copied (by the
//! general `put_path`).
//!
//! The output was written by a container that has exited, so nothing changes it under us;
//! still nothing here follows a symlink, and the renamed file is checked to be the inode that
//! was hashed.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::digest::{HashingWriter, StreamHasher, format_digest};
use crate::error::ArtifactError;
use crate::pack::{classify, open_regular, write_canonical};
use crate::store::{check_not_longer, verify};
use crate::{ArtifactInfo, ArtifactKind};

/// Bytes read at a time while hashing in place.
const READ_BUF: usize = 1 << 20;

/// Where a local store keeps things on disk.
#[derive(Clone, Debug)]
pub(crate) struct LocalDirs {
    /// `root/objects`: `sha256/<hex>` and `meta/<hex>.json`, as object_store lays them out.
    pub(crate) objects: PathBuf,
    /// `root/tmp`: staging files, on the same filesystem as the objects.
    pub(crate) tmp: PathBuf,
    /// `root/materialized`.
    pub(crate) cache: PathBuf,
}

impl LocalDirs {
    pub(crate) fn content(&self, hex: &str) -> PathBuf {
        self.objects.join("sha256").join(hex)
    }
}

/// What happened to a captured output.
pub(crate) enum Captured {
    /// Stored here (content in place; the meta is the caller's to write).
    Stored(ArtifactInfo),
    /// The same content is already committed.
    Present(ArtifactInfo),
    /// Could not be moved (other hard links, another filesystem): store it the general way.
    Fallback,
}

/// The errors of a full disk name the output and where its bytes were going.
fn io_error(
    action: &'static str,
    path: &Path,
    output: &Path,
) -> impl Fn(io::Error) -> ArtifactError {
    let path = path.to_owned();
    let output = output.to_owned();
    move |e| {
        if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
            ArtifactError::NoSpace {
                path: output.clone(),
                detail: format!("{action} {}", path.display()),
            }
        } else {
            ArtifactError::io(action, &path)(e)
        }
    }
}

/// Captures `path` (consumed when stored) into the local store `dirs`; blocking.
pub(crate) fn capture(
    dirs: &LocalDirs,
    path: &Path,
    committed: impl Fn(&str) -> Result<bool, ArtifactError>,
) -> Result<Captured, ArtifactError> {
    match classify(path)? {
        ArtifactKind::File => capture_file(dirs, path, committed),
        ArtifactKind::Directory => capture_tree(dirs, path, committed),
    }
}

fn capture_file(
    dirs: &LocalDirs,
    path: &Path,
    committed: impl Fn(&str) -> Result<bool, ArtifactError>,
) -> Result<Captured, ArtifactError> {
    let (mut file, meta) = open_regular(path)?;
    let hasher = hash_to_end(&mut file, path, None)?;
    let size = hasher.len();
    let hex = hasher.finish();
    let info = ArtifactInfo {
        digest: format_digest(&hex),
        kind: ArtifactKind::File,
        size,
    };
    if committed(&hex)? {
        return Ok(Captured::Present(info));
    }
    if size != meta.len() {
        return Err(ArtifactError::Changed {
            path: path.to_owned(),
        });
    }
    if meta.nlink() != 1 {
        // Another name could still reach these bytes: store a clone of them instead.
        return reflink(dirs, &file, path, info, &hex);
    }
    // Readable by any step user, writable by nobody but us; owned by us when we can.
    if nix::unistd::geteuid().is_root() {
        nix::unistd::fchown(&file, Some(0.into()), Some(0.into()))
            .map_err(|e| ArtifactError::io("change the owner of", path)(e.into()))?;
    }
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(ArtifactError::io("set permissions of", path))?;
    let dest = dirs.content(&hex);
    create_dir(dest.parent().unwrap_or(&dirs.objects))?;
    // The name must still be the inode that was hashed.
    let now = fs::symlink_metadata(path).map_err(ArtifactError::io("read", path))?;
    if now.ino() != meta.ino() || now.dev() != meta.dev() {
        return Err(ArtifactError::Changed {
            path: path.to_owned(),
        });
    }
    // Never over an existing object: a concurrent capture of the same bytes got there first.
    match nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        path,
        nix::fcntl::AT_FDCWD,
        &dest,
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) => {}
        Err(nix::errno::Errno::EXDEV) | Err(nix::errno::Errno::EINVAL) => {
            // Another filesystem (or one without RENAME_NOREPLACE): store a copy.
            return Ok(Captured::Fallback);
        }
        Err(e) => return Err(ArtifactError::io("move", path)(e.into())),
    }
    link_into_cache(dirs, &dest, &hex);
    Ok(Captured::Stored(info))
}

/// Stores a reflink (a copy-on-write clone) of `file` where the filesystem has them (XFS,
/// Btrfs): no bytes are copied and the output's other names cannot reach the stored ones.
/// Elsewhere the general, copying path takes over.
fn reflink(
    dirs: &LocalDirs,
    file: &File,
    path: &Path,
    info: ArtifactInfo,
    hex: &str,
) -> Result<Captured, ArtifactError> {
    create_dir(&dirs.tmp)?;
    let staging = tempfile::Builder::new()
        .prefix(".capture-")
        .tempfile_in(&dirs.tmp)
        .map_err(io_error("create a staging file in", &dirs.tmp, path))?;
    if rustix::fs::ioctl_ficlone(staging.as_file(), file).is_err() {
        return Ok(Captured::Fallback);
    }
    let cloned = staging
        .as_file()
        .metadata()
        .map_err(ArtifactError::io("read", staging.path()))?;
    if cloned.len() != info.size {
        return Ok(Captured::Fallback);
    }
    staging
        .as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(ArtifactError::io("set permissions of", staging.path()))?;
    let dest = dirs.content(hex);
    create_dir(dest.parent().unwrap_or(&dirs.objects))?;
    match staging.persist_noclobber(&dest) {
        Ok(_) => {}
        // A concurrent capture of the same bytes got there first.
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(ArtifactError::io("create", &dest)(e.error)),
    }
    link_into_cache(dirs, &dest, hex);
    Ok(Captured::Stored(info))
}

/// The next step reads the file through the cache: a hard link makes that free.
fn link_into_cache(dirs: &LocalDirs, content: &Path, hex: &str) {
    let cached = dirs.cache.join(hex);
    // Best effort: without the link, materialize verifies and links (or copies) later.
    let _ = fs::hard_link(content, cached);
}

fn capture_tree(
    dirs: &LocalDirs,
    path: &Path,
    committed: impl Fn(&str) -> Result<bool, ArtifactError>,
) -> Result<Captured, ArtifactError> {
    create_dir(&dirs.tmp)?;
    let staging = tempfile::Builder::new()
        .prefix(".capture-")
        .tempfile_in(&dirs.tmp)
        .map_err(io_error("create a staging file in", &dirs.tmp, path))?;
    let staged = staging.path().to_owned();
    let out = BufWriter::with_capacity(
        READ_BUF,
        staging
            .as_file()
            .try_clone()
            .map_err(ArtifactError::io("open", &staged))?,
    );
    let out = write_canonical(path, ArtifactKind::Directory, HashingWriter::new(out))
        .map_err(|e| no_space(e, path, &staged))?;
    let (out, hex, size) = out.finish();
    out.into_inner()
        .map_err(|e| io_error("write", &staged, path)(e.into_error()))?;
    let info = ArtifactInfo {
        digest: format_digest(&hex),
        kind: ArtifactKind::Directory,
        size,
    };
    if committed(&hex)? {
        return Ok(Captured::Present(info));
    }
    staging
        .as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(ArtifactError::io("set permissions of", &staged))?;
    let dest = dirs.content(&hex);
    create_dir(dest.parent().unwrap_or(&dirs.objects))?;
    staging
        .persist(&dest)
        .map_err(|e| ArtifactError::io("create", &dest)(e.error))?;
    Ok(Captured::Stored(info))
}

/// An I/O error of the packer that is a full disk becomes [`ArtifactError::NoSpace`].
fn no_space(e: ArtifactError, output: &Path, staged: &Path) -> ArtifactError {
    match e {
        ArtifactError::Io { source, .. }
            if matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT)
            ) =>
        {
            ArtifactError::NoSpace {
                path: output.to_owned(),
                detail: format!("writing {}", staged.display()),
            }
        }
        e => e,
    }
}

fn create_dir(dir: &Path) -> Result<(), ArtifactError> {
    fs::create_dir_all(dir).map_err(ArtifactError::io("create", dir))
}

/// Reads `reader` to its end in large pieces, hashing; with `limit` (size, digest) stops as
/// soon as the content is longer than its recorded size.
fn hash_to_end(
    reader: &mut impl Read,
    path: &Path,
    limit: Option<(u64, &str)>,
) -> Result<StreamHasher, ArtifactError> {
    let mut hasher = StreamHasher::new();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(hasher),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ArtifactError::io("read", path)(e)),
        };
        hasher.update(&buf[..n]);
        if let Some((size, digest)) = limit {
            check_not_longer(&hasher, size, digest)?;
        }
    }
}

/// Opens a stored object; a missing one is a corrupt artifact (its meta says it exists).
pub(crate) fn open_content(path: &Path, hex: &str) -> Result<File, ArtifactError> {
    File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ArtifactError::Corrupt {
            digest: format_digest(hex),
            detail: "metadata present but content missing".into(),
        },
        _ => ArtifactError::io("read", path)(e),
    })
}

/// Hashes a stored file in place and checks it against its digest and size; blocking.
pub(crate) fn verify_in_place(path: &Path, hex: &str, size: u64) -> Result<(), ArtifactError> {
    let mut file = open_content(path, hex)?;
    let hasher = hash_to_end(&mut file, path, Some((size, &format_digest(hex))))?;
    verify(hasher, hex, size)
}

/// Reads through to `inner`, hashing what passes.
pub(crate) struct HashingReader<R> {
    pub(crate) inner: R,
    pub(crate) hasher: StreamHasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
