//! Disk use of the image store and garbage collection of what no image in the index uses:
//! rootfs trees and blobs left by an interrupted removal or import, and staging left in
//! `tmp/` (older than an hour, so an import in progress keeps its files).

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::ImageError;
use crate::reference::sha256_hex;
use crate::staging::remove_tree;
use crate::store::ImageStore;

/// What the image store uses on disk, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageUsage {
    pub images: u64,
    pub blobs_bytes: u64,
    pub rootfs_bytes: u64,
    pub tmp_bytes: u64,
}

/// Staging in `tmp/` younger than this belongs to an import or pull that may still run.
const STAGING_GRACE: Duration = Duration::from_secs(3600);

impl ImageStore {
    /// Bytes used by blobs, unpacked root filesystems and staging.
    pub fn usage(&self) -> Result<ImageUsage, ImageError> {
        Ok(ImageUsage {
            images: self.list()?.len() as u64,
            blobs_bytes: bytes_under(&self.root().join("blobs")),
            rootfs_bytes: bytes_under(&self.root().join("rootfs")),
            tmp_bytes: bytes_under(&self.root().join("tmp")),
        })
    }

    /// Removes (or with `dry_run` only measures) rootfs trees and blobs no image in the index
    /// uses, and old staging; returns the bytes freed (or that would be).
    pub fn prune_orphans(&self, dry_run: bool) -> Result<u64, ImageError> {
        let _lock = self.lock()?;
        let mut manifests = HashSet::new();
        let mut blobs = HashSet::new();
        for image in self.list()? {
            if let Some(hex) = sha256_hex(&image.digest) {
                manifests.insert(hex.to_owned());
            }
            // An image whose manifest cannot be read would lose its blobs: stop instead.
            for blob in self.blobs_of(&image.digest)? {
                if let Some(hex) = sha256_hex(&blob) {
                    blobs.insert(hex.to_owned());
                }
            }
        }
        let mut freed = 0;
        let rootfs = self.root().join("rootfs");
        for entry in fs::read_dir(&rootfs).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if manifests.contains(&name) {
                continue;
            }
            let path = entry.path();
            freed += bytes_under(&path);
            if !dry_run {
                remove_tree(&path).map_err(|e| ImageError::io("cannot remove", &path, e))?;
            }
        }
        let blob_dir = self.root().join("blobs/sha256");
        for entry in fs::read_dir(&blob_dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if blobs.contains(&name) {
                continue;
            }
            let path = entry.path();
            freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
            if !dry_run {
                fs::remove_file(&path).map_err(|e| ImageError::io("cannot remove", &path, e))?;
            }
        }
        let now = SystemTime::now();
        let tmp = self.root().join("tmp");
        // Partial layer downloads (kept to resume a pull) are judged one by one.
        let mut stale: Vec<fs::DirEntry> = Vec::new();
        for entry in fs::read_dir(&tmp).into_iter().flatten().flatten() {
            if entry.file_name() == "downloads" {
                stale.extend(fs::read_dir(entry.path()).into_iter().flatten().flatten());
            } else {
                stale.push(entry);
            }
        }
        for entry in stale {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STAGING_GRACE);
            if !old {
                continue;
            }
            let path = entry.path();
            freed += bytes_under(&path);
            if !dry_run {
                let removed = if path.is_dir() {
                    remove_tree(&path)
                } else {
                    fs::remove_file(&path)
                };
                removed.map_err(|e| ImageError::io("cannot remove", &path, e))?;
            }
        }
        Ok(freed)
    }
}

/// Bytes of the regular files under `path`, not following symlinks; hard links counted once.
pub(crate) fn bytes_under(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0;
    for e in walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if let Ok(m) = e.metadata()
            && m.is_file()
            && (m.nlink() == 1 || seen.insert((m.dev(), m.ino())))
        {
            total += m.len();
        }
    }
    total
}
