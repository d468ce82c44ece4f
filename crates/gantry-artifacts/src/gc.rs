//! What a local store holds on disk, and removing an artifact from it for garbage collection:
//! the meta goes first (from then on the artifact is not in the store: a cache lookup misses
//! and a materialize fails cleanly), then the content and its materialized copy.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use crate::ArtifactKind;
use crate::capture::LocalDirs;
use crate::digest::format_digest;
use crate::error::ArtifactError;
use crate::store::{ArtifactStore, Meta};

/// One committed artifact of a local store.
#[derive(Clone, Debug)]
pub struct StoredArtifact {
    pub digest: String,
    pub kind: ArtifactKind,
    /// Bytes on disk: the content plus a materialized copy that is not a link to it.
    pub disk_bytes: u64,
    /// When it was committed (its meta written).
    pub committed: SystemTime,
}

/// Bytes used by each part of a local store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreUsage {
    pub artifacts: u64,
    pub objects_bytes: u64,
    /// Materialized copies that are not hard links of an object.
    pub cache_bytes: u64,
    /// Staging and temporary files.
    pub tmp_bytes: u64,
}

impl ArtifactStore {
    fn local_dirs(&self) -> Result<&LocalDirs, ArtifactError> {
        self.local.as_ref().ok_or(ArtifactError::NotLocal)
    }

    /// Every committed artifact of a local store; blocking.
    pub fn list_local(&self) -> Result<Vec<StoredArtifact>, ArtifactError> {
        let dirs = self.local_dirs()?;
        let meta_dir = dirs.objects.join("meta");
        let mut out = Vec::new();
        let entries = match fs::read_dir(&meta_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(ArtifactError::io("read", &meta_dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(ArtifactError::io("read", &meta_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".json") else {
                continue;
            };
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let path = entry.path();
            let Ok(text) = fs::read(&path) else { continue };
            let Ok(meta) = serde_json::from_slice::<Meta>(&text) else {
                continue;
            };
            let committed = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(StoredArtifact {
                digest: format_digest(hex),
                kind: meta.kind,
                disk_bytes: artifact_disk_bytes(dirs, hex),
                committed,
            });
        }
        Ok(out)
    }

    /// Removes an artifact from a local store (meta, content, materialized copy); returns
    /// the bytes freed; blocking.
    pub fn remove_local(&self, digest: &str) -> Result<u64, ArtifactError> {
        let dirs = self.local_dirs()?;
        let hex = crate::digest::parse_digest(digest)?;
        let freed = artifact_disk_bytes(dirs, &hex);
        let meta = dirs.objects.join("meta").join(format!("{hex}.json"));
        match fs::remove_file(&meta) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArtifactError::io("remove", &meta)(e)),
        }
        let content = dirs.content(&hex);
        match fs::remove_file(&content) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArtifactError::io("remove", &content)(e)),
        }
        let cached = dirs.cache.join(&hex);
        match fs::symlink_metadata(&cached) {
            Ok(m) if m.is_dir() => {
                // Renamed aside first, so a half-removed tree is never taken for a copy.
                fs::create_dir_all(&dirs.tmp).map_err(ArtifactError::io("create", &dirs.tmp))?;
                let aside = dirs.tmp.join(format!(".gc-{hex}"));
                fs::rename(&cached, &aside).map_err(ArtifactError::io("remove", &cached))?;
                fs::remove_dir_all(&aside).map_err(ArtifactError::io("remove", &aside))?;
            }
            Ok(_) => fs::remove_file(&cached).map_err(ArtifactError::io("remove", &cached))?,
            Err(_) => {}
        }
        Ok(freed)
    }

    /// When a committed artifact was committed (or stored again); None when it is not.
    pub fn committed_at_local(&self, digest: &str) -> Option<SystemTime> {
        let dirs = self.local.as_ref()?;
        let hex = crate::digest::parse_digest(digest).ok()?;
        fs::metadata(dirs.objects.join("meta").join(format!("{hex}.json")))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Removes (or with `dry_run` only counts) content that was never committed — left by a
    /// crash between storing and committing — written before `before`; returns (files,
    /// bytes); blocking.
    pub fn sweep_uncommitted_local(
        &self,
        before: SystemTime,
        dry_run: bool,
    ) -> Result<(u64, u64), ArtifactError> {
        let dirs = self.local_dirs()?;
        let content_dir = dirs.objects.join("sha256");
        let meta_dir = dirs.objects.join("meta");
        let (mut files, mut bytes) = (0, 0);
        for e in fs::read_dir(&content_dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(m) = e.metadata() else { continue };
            // object_store's own staging (`<hex>#N`) and finished content alike.
            let hex = name.split('#').next().unwrap_or(&name);
            if meta_dir.join(format!("{hex}.json")).exists()
                || m.modified().map_or(true, |t| t >= before)
            {
                continue;
            }
            files += 1;
            bytes += m.len();
            if !dry_run {
                fs::remove_file(e.path()).map_err(ArtifactError::io("remove", &e.path()))?;
                let _ = fs::remove_file(dirs.cache.join(hex));
            }
        }
        Ok((files, bytes))
    }

    /// Bytes used by a local store's parts; blocking.
    pub fn usage_local(&self) -> Result<StoreUsage, ArtifactError> {
        let dirs = self.local_dirs()?;
        let mut u = StoreUsage::default();
        let mut object_inodes = std::collections::HashSet::new();
        if let Ok(entries) = fs::read_dir(dirs.objects.join("sha256")) {
            for e in entries.flatten() {
                if let Ok(m) = e.metadata() {
                    u.objects_bytes += m.len();
                    object_inodes.insert((m.dev(), m.ino()));
                }
            }
        }
        if let Ok(entries) = fs::read_dir(dirs.objects.join("meta")) {
            u.artifacts = entries.flatten().count() as u64;
        }
        if let Ok(entries) = fs::read_dir(&dirs.cache) {
            for e in entries.flatten() {
                u.cache_bytes += disk_bytes(&e.path(), &mut object_inodes);
            }
        }
        u.tmp_bytes = disk_bytes(&dirs.tmp, &mut Default::default());
        Ok(u)
    }
}

/// The content's bytes plus its materialized copy's, unless that is the same inode.
fn artifact_disk_bytes(dirs: &LocalDirs, hex: &str) -> u64 {
    let content = fs::symlink_metadata(dirs.content(hex)).ok();
    let mut bytes = content.as_ref().map_or(0, |m| m.len());
    let mut skip = std::collections::HashSet::new();
    if let Some(m) = &content {
        skip.insert((m.dev(), m.ino()));
    }
    bytes += disk_bytes(&dirs.cache.join(hex), &mut skip);
    bytes
}

/// Bytes of the regular files under `path` (or of `path` itself), not following symlinks,
/// each inode once: one already in `counted` (a hard link of an object, say) is skipped, and
/// every inode counted is added to it.
pub fn disk_bytes(path: &Path, counted: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file() && counted.insert((m.dev(), m.ino())))
        .map(|m| m.len())
        .sum()
}
