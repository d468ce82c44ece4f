//! Checks a directory tar uploaded by a client before it may become an artifact.
//!
//! `unpack` checks every archive again when materializing, but an upload is refused up front
//! so nothing a client crafted is ever committed. The rules are those of the canonical packer:
//! entries are directories, regular files or symlinks; names are plain relative names (no
//! empty, `.` or `..` components, not absolute); every parent is a directory listed before
//! its entries; no path appears twice; symlink targets resolve inside the tree (checked once
//! the whole tree is known, with the same resolution as `pack`); no hard links, devices,
//! fifos, sparse files or pax headers; nothing but zeros after the end of the archive.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;

use crate::error::ArtifactError;
use crate::symlink::{LinkTree, Lookup, check_link_in};

/// More entries than any sane input has; each costs its name in memory while checking.
const MAX_ENTRIES: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File,
    Link(PathBuf),
}

/// Checks `archive` (an uploaded directory artifact claiming `digest`); blocking.
pub(crate) fn check_archive<R: Read>(archive: R, digest: &str) -> Result<(), ArtifactError> {
    let bad = |e: io::Error| ArtifactError::BadArchive {
        digest: digest.to_owned(),
        detail: e.to_string(),
    };
    let refuse = |entry: &[u8], reason: &str| ArtifactError::UnsafeEntry {
        digest: digest.to_owned(),
        entry: String::from_utf8_lossy(entry).into_owned(),
        reason: reason.to_owned(),
    };
    let mut tree: BTreeMap<Vec<u8>, Node> = BTreeMap::new();
    let mut links = Vec::new();
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = entry.path_bytes().into_owned();
        if tree.len() >= MAX_ENTRIES {
            return Err(refuse(
                &name,
                &format!("more than {MAX_ENTRIES} entries in one directory artifact"),
            ));
        }
        if entry.pax_extensions().map_err(bad)?.is_some() {
            return Err(refuse(&name, "pax extended headers are never stored"));
        }
        check_name(&name).map_err(|reason| refuse(&name, reason))?;
        if tree.contains_key(&name) {
            return Err(refuse(&name, "a second entry at the same path"));
        }
        if let Some(cut) = name.iter().rposition(|&b| b == b'/') {
            let parent = &name[..cut];
            if tree.get(parent) != Some(&Node::Dir) {
                return Err(refuse(
                    &name,
                    &format!(
                        "its parent {} is not a directory listed before it",
                        String::from_utf8_lossy(parent)
                    ),
                ));
            }
        }
        let kind = entry.header().entry_type();
        let node = match kind {
            tar::EntryType::Directory => {
                if entry.size() != 0 {
                    return Err(refuse(&name, "a directory entry with content"));
                }
                Node::Dir
            }
            tar::EntryType::Regular => Node::File,
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| refuse(&name, "a symlink without a target"))?;
                let target = PathBuf::from(OsString::from_vec(target.into_owned()));
                links.push((name.clone(), target.clone()));
                Node::Link(target)
            }
            other => {
                return Err(refuse(
                    &name,
                    &format!("entry type {other:?} is never stored"),
                ));
            }
        };
        tree.insert(name, node);
    }
    // The tar reader stops at the first zero block; whatever follows must be padding too.
    let mut rest = archive.into_inner();
    let mut buf = [0u8; 8192];
    loop {
        let n = rest.read(&mut buf).map_err(bad)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(ArtifactError::BadArchive {
                digest: digest.to_owned(),
                detail: "data after the end of the archive".into(),
            });
        }
    }
    // Checked once the whole tree is known: a link's resolution depends on links after it.
    let known = InArchive(&tree);
    for (name, target) in links {
        let rel = Path::new(std::ffi::OsStr::from_bytes(&name));
        check_link_in(&known, rel, &target).map_err(|problem| {
            refuse(
                &name,
                &format!("symlink -> {} {}", target.display(), problem.describe()),
            )
        })?;
    }
    Ok(())
}

/// Plain relative names only: the form the packer writes.
fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if name.first() == Some(&b'/') {
        return Err("the path is absolute");
    }
    for component in name.split(|&b| b == b'/') {
        match component {
            b"" => return Err("the path has an empty component"),
            b"." => return Err("the path contains `.`"),
            b".." => return Err("the path contains `..`"),
            _ => {}
        }
    }
    Ok(())
}

/// The tree an archive describes, for resolving symlink targets.
struct InArchive<'a>(&'a BTreeMap<Vec<u8>, Node>);

impl LinkTree for InArchive<'_> {
    fn lookup(&self, at: &[OsString]) -> Lookup {
        let key = at
            .iter()
            .map(|c| c.as_bytes())
            .collect::<Vec<_>>()
            .join(&b'/');
        match self.0.get(&key) {
            Some(Node::Link(target)) => Lookup::Link(target.clone()),
            _ => Lookup::NotALink,
        }
    }
}

/// Feeds an upload, chunk by chunk, to `check_archive` on a blocking thread.
pub(crate) struct ArchiveCheck {
    tx: mpsc::Sender<Bytes>,
    done: tokio::task::JoinHandle<Result<(), ArtifactError>>,
}

impl ArchiveCheck {
    pub(crate) fn start(digest: &str) -> Self {
        let (tx, rx) = mpsc::channel(4);
        let digest = digest.to_owned();
        let done = tokio::task::spawn_blocking(move || {
            check_archive(
                ChannelReader {
                    rx,
                    current: Bytes::new(),
                },
                &digest,
            )
        });
        ArchiveCheck { tx, done }
    }

    /// False when the check has already stopped (it refused the archive): `finish` says why.
    pub(crate) async fn feed(&self, chunk: Bytes) -> bool {
        self.tx.send(chunk).await.is_ok()
    }

    /// Ends the input and waits for the verdict.
    pub(crate) async fn finish(self) -> Result<(), ArtifactError> {
        drop(self.tx);
        self.done
            .await
            .map_err(ArtifactError::task("checking an uploaded archive"))?
    }
}

/// A blocking reader over chunks sent from async code; the end of the channel is EOF.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_plain_and_relative() {
        for good in ["a", "a/b", "a b/.c", "..a/b.."] {
            assert_eq!(check_name(good.as_bytes()), Ok(()), "{good}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "./a", "a/./b", "..", "a/../b", "a/..",
        ] {
            assert!(check_name(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
