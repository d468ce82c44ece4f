//! Inputs read from an admin-configured data root on behalf of remote users.
//!
//! A path named by a remote pipeline must not reach outside the data root: not with `..`, not
//! through a symlink (in the path or inside a directory), and not through a hard link to a
//! file elsewhere on the same filesystem (`/etc/shadow`). So no path string is ever opened
//! here: the root is opened once (O_PATH), the input's parent directories are resolved from
//! it with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) — or, on a
//! kernel without openat2, one component at a time with O_NOFOLLOW — and every entry is
//! classified with fstatat(AT_SYMLINK_NOFOLLOW), opened relative to its directory's descriptor
//! with O_NOFOLLOW and checked again on the opened descriptor. A regular file with more than
//! one link is refused; symlinks inside a directory are stored as symlinks after the same
//! check as `pack` does, never followed.
//!
//! The walk visits entries in the order `pack`'s walkdir does (depth first, names sorted
//! bytewise) and writes through the same `CanonicalTar`, so a tree has the same digest
//! whether stored with `put_path` or `put_confined`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, open, openat, openat2, readlinkat};
use nix::sys::stat::{FileStat, Mode, fstat, fstatat};

use crate::ArtifactKind;
use crate::error::ArtifactError;
use crate::pack::{CanonicalTar, changed_or_io};
use crate::read_as::read_as;
use crate::symlink::{LinkTree, Lookup, check_link_in};

/// An input below a data root, as `put_confined` reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confined {
    /// The data root, configured by an administrator (trusted; symlinks in it are followed).
    pub root: PathBuf,
    /// The input, relative to `root`: plain names only (no `..`, not absolute; empty or `.`
    /// is the root itself). Named by an untrusted user.
    pub rel: PathBuf,
    /// Read with this user's permissions (uid, gid, no supplementary groups) when set; needs a
    /// root process unless it is the process's own user.
    pub read_as: Option<(u32, u32)>,
}

const DOTDOT: &str = "`..` is not allowed in input paths";
const ABSOLUTE: &str = "absolute paths are not allowed";
const THROUGH_SYMLINK: &str =
    "it passes through a symlink, and symlinks are not followed in input paths";
const FINAL_SYMLINK: &str = "it is a symlink, and symlinks are not followed in input paths";
const OUTSIDE: &str = "it resolves outside the data root";

/// Why a path could not be resolved beneath a directory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Escape(&'static str),
    Changed,
    Errno(Errno),
}

/// Set once openat2 answered ENOSYS, so later resolutions go straight to the fallback.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens the directory `rel` beneath `dir` (O_PATH), refusing `..`, absolute paths and any
/// symlink on the way.
pub(crate) fn open_beneath(dir: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd, Refusal> {
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        match open_beneath_openat2(dir, rel) {
            Err(Refusal::Errno(Errno::ENOSYS)) => NO_OPENAT2.store(true, Ordering::Relaxed),
            resolved => return resolved,
        }
    }
    open_beneath_by_components(dir, rel)
}

fn open_beneath_openat2(dir: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd, Refusal> {
    if rel.as_os_str().is_empty() {
        return dir.try_clone_to_owned().map_err(io_refusal);
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    // EAGAIN: a rename elsewhere raced with a `..` lookup; the kernel asks for a retry.
    let mut last = Errno::EAGAIN;
    for _ in 0..8 {
        match openat2(dir, rel, how) {
            Ok(fd) => return Ok(fd),
            Err(Errno::EAGAIN) => last = Errno::EAGAIN,
            Err(Errno::ELOOP) => return Err(Refusal::Escape(THROUGH_SYMLINK)),
            Err(Errno::EXDEV) => return Err(Refusal::Escape(OUTSIDE)),
            Err(e) => return Err(Refusal::Errno(e)),
        }
    }
    Err(Refusal::Errno(last))
}

/// The fallback for kernels before 5.6: one component at a time, each classified without
/// following and opened with O_NOFOLLOW, the opened descriptor checked to be what was
/// classified.
pub(crate) fn open_beneath_by_components(
    dir: BorrowedFd<'_>,
    rel: &Path,
) -> Result<OwnedFd, Refusal> {
    let mut at = dir.try_clone_to_owned().map_err(io_refusal)?;
    for component in rel.components() {
        let name = match component {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            Component::ParentDir => return Err(Refusal::Escape(DOTDOT)),
            Component::RootDir | Component::Prefix(_) => return Err(Refusal::Escape(ABSOLUTE)),
        };
        let seen = fstatat(&at, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(Refusal::Errno)?;
        if file_type(&seen) == libc::S_IFLNK {
            return Err(Refusal::Escape(THROUGH_SYMLINK));
        }
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let next = openat(&at, name, flags, Mode::empty()).map_err(Refusal::Errno)?;
        let opened = fstat(&next).map_err(Refusal::Errno)?;
        if !same_inode(&seen, &opened) || file_type(&opened) != libc::S_IFDIR {
            return Err(Refusal::Changed);
        }
        at = next;
    }
    Ok(at)
}

fn io_refusal(e: io::Error) -> Refusal {
    Refusal::Errno(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Packs a confined input into `out`; blocking. When `read_as` is set, every open runs on
/// this thread with that user's filesystem identity (see `read_as`).
pub(crate) fn pack_confined<W: Write>(
    src: &Confined,
    out: W,
) -> Result<(ArtifactKind, W), ArtifactError> {
    let walk = Walk::new(src);
    let (root, names, _identity) = open_root(src, &walk)?;
    let Some((name, dirs)) = names.split_last() else {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = openat(&root, ".", flags, Mode::empty())
            .map_err(walk.errno("open the data root", &src.root))?;
        return walk
            .tree(dir, out)
            .map(|out| (ArtifactKind::Directory, out));
    };
    let parent_rel: PathBuf = dirs.iter().collect();
    let parent = open_beneath(root.as_fd(), &parent_rel).map_err(|r| walk.refused(r))?;
    match walk.open_entry(parent.as_fd(), name, &src.rel)? {
        Opened::Symlink(_) => Err(walk.escape(FINAL_SYMLINK)),
        Opened::File(mut file, _) => {
            let mut out = out;
            io::copy(&mut file, &mut out).map_err(ArtifactError::io("read", &src.rel))?;
            Ok((ArtifactKind::File, out))
        }
        Opened::Dir(dir) => walk
            .tree(dir, out)
            .map(|out| (ArtifactKind::Directory, out)),
    }
}

/// Opens the data root as the server itself (the admin chose it; the way to it need not be
/// open to the reading user), then takes on the reading identity for everything below it.
/// Returns the root, the input's names, and the guard that restores the identity.
fn open_root(
    src: &Confined,
    walk: &Walk<'_>,
) -> Result<(OwnedFd, Vec<OsString>, Option<crate::read_as::ReadAsGuard>), ArtifactError> {
    // Refused before any open, so the answer does not depend on what exists.
    let names = plain_names(&src.rel).map_err(|why| walk.escape(why))?;
    let root = open(
        &src.root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(walk.errno("open the data root", &src.root))?;
    let identity = match src.read_as {
        Some((uid, gid)) => read_as(uid, gid).map_err(|source| ArtifactError::Io {
            action: "switch to the reading user for",
            path: src.root.clone(),
            source,
        })?,
        None => None,
    };
    Ok((root, names, identity))
}

/// Checks that `src` can be read as `put_confined` would read it — resolved beneath the root
/// without symlinks or `..`, not a hard link, openable by the reading identity — without
/// reading any content; blocking. Returns what it would be stored as. Entries inside a
/// directory are checked when it is read.
pub fn probe_confined(src: &Confined) -> Result<ArtifactKind, ArtifactError> {
    let walk = Walk::new(src);
    let (root, names, _identity) = open_root(src, &walk)?;
    let Some((name, dirs)) = names.split_last() else {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        openat(&root, ".", flags, Mode::empty())
            .map_err(walk.errno("open the data root", &src.root))?;
        return Ok(ArtifactKind::Directory);
    };
    let parent_rel: PathBuf = dirs.iter().collect();
    let parent = open_beneath(root.as_fd(), &parent_rel).map_err(|r| walk.refused(r))?;
    match walk.open_entry(parent.as_fd(), name, &src.rel)? {
        Opened::Symlink(_) => Err(walk.escape(FINAL_SYMLINK)),
        Opened::File(..) => Ok(ArtifactKind::File),
        Opened::Dir(_) => Ok(ArtifactKind::Directory),
    }
}

/// `rel` as plain names; a `..` or an absolute path is refused with the reason.
fn plain_names(rel: &Path) -> Result<Vec<OsString>, &'static str> {
    let mut names = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(name) => names.push(name.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err(DOTDOT),
            Component::RootDir | Component::Prefix(_) => return Err(ABSOLUTE),
        }
    }
    Ok(names)
}

/// An entry opened relative to its directory, checked on the opened descriptor.
enum Opened {
    File(File, FileStat),
    Dir(OwnedFd),
    Symlink(PathBuf),
}

/// A directory being listed: its descriptor, the names still to visit, and its path
/// relative to the input (the name in the tar).
struct Frame {
    fd: OwnedFd,
    names: std::vec::IntoIter<OsString>,
    prefix: PathBuf,
}

struct Walk<'a> {
    src: &'a Confined,
    as_user: String,
}

impl<'a> Walk<'a> {
    fn new(src: &'a Confined) -> Self {
        let as_user = match src.read_as {
            Some((uid, gid)) => format!("uid {uid} gid {gid}"),
            None => format!("the server's user (uid {})", nix::unistd::geteuid()),
        };
        Walk { src, as_user }
    }

    fn escape(&self, why: &'static str) -> ArtifactError {
        ArtifactError::Escape {
            root: self.src.root.clone(),
            rel: self.src.rel.clone(),
            why,
        }
    }

    fn refused(&self, refusal: Refusal) -> ArtifactError {
        match refusal {
            Refusal::Escape(why) => self.escape(why),
            Refusal::Changed => ArtifactError::Changed {
                path: self.src.rel.clone(),
            },
            Refusal::Errno(e) => self.errno("open", &self.src.rel)(e),
        }
    }

    /// Maps a failed syscall on `path` (relative to the data root) to an error.
    fn errno(&self, action: &'static str, path: &Path) -> impl FnOnce(Errno) -> ArtifactError {
        let path = path.to_owned();
        let as_user = self.as_user.clone();
        move |e| match e {
            Errno::EACCES | Errno::EPERM => ArtifactError::PermissionDenied { path, as_user },
            e => ArtifactError::Io {
                action,
                path,
                source: io::Error::from(e),
            },
        }
    }

    /// Classifies `name` in `dir` without following it, then opens it with O_NOFOLLOW and
    /// checks the opened descriptor is the same inode of the same type.
    fn open_entry(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        shown: &Path,
    ) -> Result<Opened, ArtifactError> {
        let changed = || ArtifactError::Changed {
            path: shown.to_owned(),
        };
        let seen =
            fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(self.errno("read", shown))?;
        let kind = file_type(&seen);
        let flags = match kind {
            libc::S_IFLNK => {
                let target = readlinkat(dir, name).map_err(self.errno("read symlink", shown))?;
                return Ok(Opened::Symlink(PathBuf::from(target)));
            }
            libc::S_IFREG => {
                single_link(&seen, shown)?;
                OFlag::O_RDONLY
            }
            libc::S_IFDIR => OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            other => {
                return Err(ArtifactError::SpecialFile {
                    path: shown.to_owned(),
                    kind: special_kind(other),
                });
            }
        };
        // O_NONBLOCK: a fifo swapped in after the fstatat cannot block the open.
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = openat(dir, name, flags, Mode::empty()).map_err(|e| match e {
            Errno::ELOOP | Errno::ENOTDIR => changed(),
            e => self.errno("open", shown)(e),
        })?;
        let opened = fstat(&fd).map_err(self.errno("read", shown))?;
        if !same_inode(&seen, &opened) || file_type(&opened) != kind {
            return Err(changed());
        }
        if kind == libc::S_IFDIR {
            return Ok(Opened::Dir(fd));
        }
        // Links may have been added since the fstatat.
        single_link(&opened, shown)?;
        Ok(Opened::File(File::from(fd), opened))
    }

    /// The canonical tar of the directory open at `top`, walked by descriptors.
    fn tree<W: Write>(&self, top: OwnedFd, out: W) -> Result<W, ArtifactError> {
        let rel_top = &self.src.rel;
        let for_links = top
            .try_clone()
            .map_err(ArtifactError::io("read", rel_top))?;
        let links = FdTree {
            dir: for_links.as_fd(),
        };
        let mut tar = CanonicalTar::new(out);
        let names = self.list(&top, rel_top)?;
        let mut stack = vec![Frame {
            fd: top,
            names: names.into_iter(),
            prefix: PathBuf::new(),
        }];
        // An explicit stack: a hostile tree can be deeper than the thread's stack allows.
        while let Some(frame) = stack.last_mut() {
            let Some(name) = frame.names.next() else {
                stack.pop();
                continue;
            };
            let rel = frame.prefix.join(&name);
            let shown = rel_top.join(&rel);
            let written = match self.open_entry(frame.fd.as_fd(), &name, &shown)? {
                Opened::Dir(fd) => {
                    let written = tar.dir(&rel);
                    let names = self.list(&fd, &shown)?;
                    stack.push(Frame {
                        fd,
                        names: names.into_iter(),
                        prefix: rel,
                    });
                    written
                }
                Opened::File(file, stat) => {
                    let len = u64::try_from(stat.st_size).map_err(|_| changed_at(&shown))?;
                    let exec = stat.st_mode & 0o111 != 0;
                    tar.file(&rel, file, len, exec)
                }
                Opened::Symlink(target) => {
                    check_link_in(&links, &rel, &target).map_err(|problem| {
                        ArtifactError::UnsafeSymlink {
                            path: shown.clone(),
                            target: target.clone(),
                            problem: problem.describe(),
                        }
                    })?;
                    tar.symlink(&rel, &target)
                }
            };
            written.map_err(|e| changed_or_io(&shown, e))?;
        }
        tar.finish()
            .map_err(ArtifactError::io("write the archive of", rel_top))
    }

    /// The names in a directory, sorted bytewise as walkdir's `sort_by_file_name` does.
    fn list(&self, dir: &OwnedFd, shown: &Path) -> Result<Vec<OsString>, ArtifactError> {
        // fdopendir takes the descriptor; a duplicate leaves `dir` usable for openat.
        let dup = dir.try_clone().map_err(ArtifactError::io("read", shown))?;
        let mut listing = Dir::from_fd(dup).map_err(self.errno("read", shown))?;
        let mut names = Vec::new();
        for entry in listing.iter() {
            let entry = entry.map_err(self.errno("read", shown))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// The input directory, reached by descriptors, for resolving symlink targets inside it.
struct FdTree<'a> {
    dir: BorrowedFd<'a>,
}

impl LinkTree for FdTree<'_> {
    fn lookup(&self, at: &[OsString]) -> Lookup {
        let Some((name, dirs)) = at.split_last() else {
            return Lookup::NotALink;
        };
        let parent_rel: PathBuf = dirs.iter().collect();
        // As lstat by path would: a missing path is not a link.
        let parent = match open_beneath(self.dir, &parent_rel) {
            Ok(fd) => fd,
            Err(Refusal::Errno(Errno::ENOENT | Errno::ENOTDIR)) => return Lookup::NotALink,
            Err(_) => return Lookup::Unreadable,
        };
        match fstatat(&parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) if file_type(&stat) == libc::S_IFLNK => {
                match readlinkat(&parent, name.as_os_str()) {
                    Ok(target) => Lookup::Link(PathBuf::from(target)),
                    Err(_) => Lookup::Unreadable,
                }
            }
            Ok(_) | Err(Errno::ENOENT | Errno::ENOTDIR) => Lookup::NotALink,
            Err(_) => Lookup::Unreadable,
        }
    }
}

/// Refuses a regular file with more than one link: the other may be outside the data root.
fn single_link(stat: &FileStat, shown: &Path) -> Result<(), ArtifactError> {
    // nlink_t is u64 on x86_64 but u32 on some targets.
    #[allow(clippy::useless_conversion)]
    let links: u64 = stat.st_nlink.into();
    if links > 1 {
        return Err(ArtifactError::HardLink {
            path: shown.to_owned(),
            links,
        });
    }
    Ok(())
}

fn changed_at(path: &Path) -> ArtifactError {
    ArtifactError::Changed {
        path: path.to_owned(),
    }
}

fn file_type(stat: &FileStat) -> libc::mode_t {
    stat.st_mode & libc::S_IFMT
}

fn same_inode(a: &FileStat, b: &FileStat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

fn special_kind(file_type: libc::mode_t) -> &'static str {
    match file_type {
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        _ => "special file",
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    type Resolver = fn(BorrowedFd<'_>, &Path) -> Result<OwnedFd, Refusal>;

    const RESOLVERS: [(&str, Resolver); 2] = [
        ("openat2", open_beneath_openat2),
        ("components", open_beneath_by_components),
    ];

    /// root/{a/b, inner -> a, out -> /etc, up -> .., file}, and a directory beside root.
    fn layout() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir(dir.path().join("beside")).unwrap();
        fs::write(root.join("file"), "x").unwrap();
        symlink("a", root.join("inner")).unwrap();
        symlink("/etc", root.join("out")).unwrap();
        symlink("..", root.join("up")).unwrap();
        let fd = open(
            &root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        (dir, fd)
    }

    #[test]
    fn both_resolvers_open_plain_directories() {
        let (_dir, root) = layout();
        for (name, resolve) in RESOLVERS {
            for rel in ["a", "a/b", "./a/./b", ""] {
                let fd = resolve(root.as_fd(), Path::new(rel))
                    .unwrap_or_else(|e| panic!("{name} {rel}: {e:?}"));
                assert_eq!(
                    file_type(&fstat(&fd).unwrap()),
                    libc::S_IFDIR,
                    "{name} {rel}"
                );
            }
            let err = resolve(root.as_fd(), Path::new("file")).unwrap_err();
            assert_eq!(err, Refusal::Errno(Errno::ENOTDIR), "{name}");
            let err = resolve(root.as_fd(), Path::new("missing")).unwrap_err();
            assert_eq!(err, Refusal::Errno(Errno::ENOENT), "{name}");
        }
    }

    #[test]
    fn both_resolvers_refuse_parents_absolute_paths_and_symlinks() {
        let (_dir, root) = layout();
        for (name, resolve) in RESOLVERS {
            for rel in [
                "..",
                "../beside",
                "a/../..",
                "/etc",
                "out",
                "out/ssl",
                "inner",
                "inner/b",
                "up",
                "up/beside",
            ] {
                match resolve(root.as_fd(), Path::new(rel)) {
                    Err(Refusal::Escape(_)) => {}
                    other => panic!("{name} {rel}: not refused as an escape: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn the_fallback_refuses_every_parent_reference() {
        // openat2 allows `a/..` (it stays beneath); the fallback refuses any `..` outright,
        // as `plain_names` does before either runs.
        let (_dir, root) = layout();
        let err = open_beneath_by_components(root.as_fd(), Path::new("a/../a")).unwrap_err();
        assert_eq!(err, Refusal::Escape(DOTDOT));
        assert_eq!(plain_names(Path::new("a/../a")), Err(DOTDOT));
        assert_eq!(plain_names(Path::new("/a")), Err(ABSOLUTE));
        assert_eq!(
            plain_names(Path::new("./a/b/")).unwrap(),
            vec![OsString::from("a"), OsString::from("b")]
        );
    }
}
