//! Turns a file or directory into the canonical byte stream that is hashed and stored.
//!
//! A file is its bytes. A directory is a tar whose bytes depend only on the tree's names,
//! contents, exec bits and symlink targets: entries in depth-first order with names sorted
//! bytewise, mtime 0, uid/gid 0, no user/group names, mode 0644 or 0755. So the same tree
//! always has the same digest, wherever and whenever it was written.
//!
//! The tree was written by an untrusted step, so nothing here follows a symlink: the walk uses
//! lstat, files are opened with O_NOFOLLOW (and O_NONBLOCK, so a fifo swapped in cannot block
//! the open) and checked to be regular files on the opened descriptor.
//!
//! Two sources feed the same tar writer (`CanonicalTar`), so they produce the same bytes for
//! the same tree: a path given by a trusted caller (walked here with walkdir), and an input
//! confined to a data root (walked by file descriptors in `confined`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use walkdir::WalkDir;

use crate::ArtifactKind;
use crate::confined::{Confined, pack_confined};
use crate::error::ArtifactError;
use crate::symlink::check_link;

const FILE_MODE: u32 = 0o644;
const EXEC_MODE: u32 = 0o755;
const DIR_MODE: u32 = 0o755;
const LINK_MODE: u32 = 0o777;

/// The tree (or file) being packed.
pub(crate) enum Input {
    /// A path given by a trusted caller.
    Path(PathBuf),
    /// A path below an admin-configured data root, read by file descriptors only.
    Confined(Confined),
}

impl Input {
    /// Packs the input into `out` and says what it was; blocking.
    pub(crate) fn pack<W: Write>(&self, out: W) -> Result<(ArtifactKind, W), ArtifactError> {
        match self {
            Input::Path(path) => {
                let kind = classify(path)?;
                write_canonical(path, kind, out).map(|out| (kind, out))
            }
            Input::Confined(src) => pack_confined(src, out),
        }
    }

    /// The path to name in messages: for a confined input, relative to its data root.
    pub(crate) fn shown(&self) -> &Path {
        match self {
            Input::Path(path) => path,
            Input::Confined(src) => &src.rel,
        }
    }
}

/// What `path` will be stored as; rejects a top-level symlink and special files.
pub(crate) fn classify(path: &Path) -> Result<ArtifactKind, ArtifactError> {
    let meta = fs::symlink_metadata(path).map_err(ArtifactError::io("read", path))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        Err(ArtifactError::TopLevelSymlink {
            path: path.to_owned(),
        })
    } else if ft.is_dir() {
        Ok(ArtifactKind::Directory)
    } else if ft.is_file() {
        Ok(ArtifactKind::File)
    } else {
        Err(special_file(path, ft))
    }
}

/// Writes the canonical stream of `path` to `out` and returns `out`.
pub(crate) fn write_canonical<W: Write>(
    path: &Path,
    kind: ArtifactKind,
    mut out: W,
) -> Result<W, ArtifactError> {
    match kind {
        ArtifactKind::File => {
            let (mut file, _) = open_regular(path)?;
            io::copy(&mut file, &mut out).map_err(ArtifactError::io("read", path))?;
            Ok(out)
        }
        ArtifactKind::Directory => write_tree(path, out),
    }
}

fn write_tree<W: Write>(root: &Path, out: W) -> Result<W, ArtifactError> {
    let mut tar = CanonicalTar::new(out);
    let walk = WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_owned();
            ArtifactError::Io {
                action: "read",
                path,
                source: e.into(),
            }
        })?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .map_err(|_| ArtifactError::Changed {
                path: path.to_owned(),
            })?;
        let ft = entry.file_type();
        let written = if ft.is_dir() {
            tar.dir(rel)
        } else if ft.is_file() {
            let (file, meta) = open_regular(path)?;
            let exec = meta.permissions().mode() & 0o111 != 0;
            tar.file(rel, file, meta.len(), exec)
        } else if ft.is_symlink() {
            let target = fs::read_link(path).map_err(ArtifactError::io("read symlink", path))?;
            check_link(root, rel, &target).map_err(|problem| ArtifactError::UnsafeSymlink {
                path: path.to_owned(),
                target: target.clone(),
                problem: problem.describe(),
            })?;
            tar.symlink(rel, &target)
        } else {
            return Err(special_file(path, ft));
        };
        written.map_err(|e| changed_or_io(path, e))?;
    }
    tar.finish()
        .map_err(ArtifactError::io("write the archive of", root))
}

/// The canonical tar format, entry by entry: every source of trees writes through this, so
/// the same tree has the same bytes whichever way it was walked. Entries must come depth
/// first with names sorted bytewise.
pub(crate) struct CanonicalTar<W: Write> {
    tar: tar::Builder<W>,
}

impl<W: Write> CanonicalTar<W> {
    pub(crate) fn new(out: W) -> Self {
        CanonicalTar {
            tar: tar::Builder::new(out),
        }
    }

    pub(crate) fn dir(&mut self, rel: &Path) -> io::Result<()> {
        let mut header = header(tar::EntryType::Directory, DIR_MODE, 0);
        self.tar.append_data(&mut header, rel, io::empty())
    }

    /// Appends `len` bytes of `file`; a file that shrinks meanwhile fails with `Shrank`.
    pub(crate) fn file(&mut self, rel: &Path, file: File, len: u64, exec: bool) -> io::Result<()> {
        let mode = if exec { EXEC_MODE } else { FILE_MODE };
        let mut header = header(tar::EntryType::Regular, mode, len);
        let exact = ExactLen {
            inner: file,
            remaining: len,
        };
        self.tar.append_data(&mut header, rel, exact)
    }

    /// Appends a symlink; the caller has checked its target.
    pub(crate) fn symlink(&mut self, rel: &Path, target: &Path) -> io::Result<()> {
        let mut header = header(tar::EntryType::Symlink, LINK_MODE, 0);
        self.tar.append_link(&mut header, rel, target)
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header
}

/// Opens a regular file without following a symlink and without blocking on a fifo.
pub(crate) fn open_regular(path: &Path) -> Result<(File, fs::Metadata), ArtifactError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                ArtifactError::Changed {
                    path: path.to_owned(),
                }
            } else {
                ArtifactError::io("open", path)(e)
            }
        })?;
    let meta = file.metadata().map_err(ArtifactError::io("read", path))?;
    if !meta.is_file() {
        return Err(special_file(path, meta.file_type()));
    }
    Ok((file, meta))
}

fn special_file(path: &Path, ft: fs::FileType) -> ArtifactError {
    let kind = if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "special file"
    };
    ArtifactError::SpecialFile {
        path: path.to_owned(),
        kind,
    }
}

/// A file that shrank while being read would leave the tar header lying about its size.
struct ExactLen {
    inner: File,
    remaining: u64,
}

/// Marks the read error of a file that shrank, so it is reported as a change, not as I/O.
#[derive(Debug)]
struct Shrank;

impl std::fmt::Display for Shrank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("file shrank while being stored")
    }
}

impl std::error::Error for Shrank {}

impl Read for ExactLen {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other(Shrank));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

pub(crate) fn changed_or_io(path: &Path, e: io::Error) -> ArtifactError {
    if e.get_ref().is_some_and(|inner| inner.is::<Shrank>()) {
        ArtifactError::Changed {
            path: PathBuf::from(path),
        }
    } else {
        ArtifactError::io("archive", path)(e)
    }
}
