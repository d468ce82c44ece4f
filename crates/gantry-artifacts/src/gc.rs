//! What a store holds, and removing an artifact from it for garbage collection: the meta goes
//! first (from then on the artifact is not in the store: a cache lookup misses and a
//! materialize fails cleanly), then the content and its materialized copy. A local store does
//! it on its files (`*_local`, blocking); the async functions work on any backend.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStoreExt};

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
        remove_cached(&dirs.cache, &hex)?;
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

/// The same operations on any backend: a local store does them on its files (the blocking
/// functions above, on a blocking thread), any other through the object store's list, head
/// and delete. The order is the same everywhere: the meta goes first.
impl ArtifactStore {
    /// Every committed artifact.
    pub async fn list_committed(&self) -> Result<Vec<StoredArtifact>, ArtifactError> {
        if self.local.is_some() {
            let s = self.clone();
            return blocking("listing artifacts", move || s.list_local()).await;
        }
        let sizes = self.sizes("sha256").await?;
        let metas = self.list_prefix("meta").await?;
        let mut out = Vec::with_capacity(metas.len());
        let docs = futures::stream::iter(metas.into_iter().filter_map(|m| {
            let hex = m
                .location
                .filename()?
                .strip_suffix(".json")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))?
                .to_owned();
            Some((hex, m.last_modified))
        }))
        .map(|(hex, modified)| async move {
            let meta = self.read_meta(&hex).await;
            (hex, modified, meta)
        })
        .buffer_unordered(16);
        futures::pin_mut!(docs);
        while let Some((hex, modified, meta)) = docs.next().await {
            let Ok(Some(meta)) = meta else { continue };
            let cached = disk_bytes(&self.cache_dir.join(&hex), &mut Default::default());
            out.push(StoredArtifact {
                digest: format_digest(&hex),
                kind: meta.kind,
                disk_bytes: sizes.get(&hex).copied().unwrap_or(0) + cached,
                committed: SystemTime::from(modified),
            });
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// Removes an artifact (meta, content, materialized copy); the bytes freed.
    pub async fn remove(&self, digest: &str) -> Result<u64, ArtifactError> {
        if self.local.is_some() {
            let s = self.clone();
            let d = digest.to_owned();
            return blocking("removing an artifact", move || s.remove_local(&d)).await;
        }
        let hex = crate::digest::parse_digest(digest)?;
        let content = ObjectPath::from(format!("sha256/{hex}"));
        let size = match self.objects.head(&content).await {
            Ok(m) => m.size,
            Err(_) => 0,
        };
        for path in [ObjectPath::from(format!("meta/{hex}.json")), content] {
            match self.objects.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(ArtifactError::ObjectStore {
                        op: format!("removing {path}"),
                        source: e,
                    });
                }
            }
        }
        let cache = self.cache_dir.clone();
        let cached = blocking("removing a materialized copy", move || {
            remove_cached(&cache, &hex)
        })
        .await?;
        Ok(size + cached)
    }

    /// When the artifact was committed (or stored again); None when it is not.
    pub async fn committed_at(&self, digest: &str) -> Option<SystemTime> {
        if self.local.is_some() {
            return self.committed_at_local(digest);
        }
        let hex = crate::digest::parse_digest(digest).ok()?;
        let meta = self
            .objects
            .head(&ObjectPath::from(format!("meta/{hex}.json")))
            .await
            .ok()?;
        Some(SystemTime::from(meta.last_modified))
    }

    /// Removes (or with `dry_run` only counts) content never committed and written before
    /// `before`; returns (objects, bytes).
    pub async fn sweep_uncommitted(
        &self,
        before: SystemTime,
        dry_run: bool,
    ) -> Result<(u64, u64), ArtifactError> {
        if self.local.is_some() {
            let s = self.clone();
            return blocking("sweeping uncommitted content", move || {
                s.sweep_uncommitted_local(before, dry_run)
            })
            .await;
        }
        let committed: std::collections::HashSet<String> = self
            .list_prefix("meta")
            .await?
            .into_iter()
            .filter_map(|m| {
                m.location
                    .filename()
                    .and_then(|f| f.strip_suffix(".json"))
                    .map(str::to_owned)
            })
            .collect();
        let (mut files, mut bytes) = (0, 0);
        for m in self.list_prefix("sha256").await? {
            let Some(hex) = m.location.filename().map(str::to_owned) else {
                continue;
            };
            if committed.contains(&hex) || SystemTime::from(m.last_modified) >= before {
                continue;
            }
            files += 1;
            bytes += m.size;
            if !dry_run {
                match self.objects.delete(&m.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        return Err(ArtifactError::ObjectStore {
                            op: format!("removing {}", m.location),
                            source: e,
                        });
                    }
                }
            }
        }
        Ok((files, bytes))
    }

    /// Bytes used by the store's parts: objects (wherever they are), the local cache of
    /// materialized copies and, for a local store, its staging files.
    pub async fn usage(&self) -> Result<StoreUsage, ArtifactError> {
        if self.local.is_some() {
            let s = self.clone();
            return blocking("measuring artifacts", move || s.usage_local()).await;
        }
        let objects_bytes = self.sizes("sha256").await?.values().sum();
        let artifacts = self.list_prefix("meta").await?.len() as u64;
        let cache = self.cache_dir.clone();
        let cache_bytes = blocking("measuring the cache", move || {
            Ok(disk_bytes(&cache, &mut Default::default()))
        })
        .await?;
        Ok(StoreUsage {
            artifacts,
            objects_bytes,
            cache_bytes,
            tmp_bytes: 0,
        })
    }

    async fn list_prefix(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ArtifactError> {
        self.objects
            .list(Some(&ObjectPath::from(prefix)))
            .try_collect()
            .await
            .map_err(ArtifactError::object_store(format!("listing {prefix}/")))
    }

    /// Size of each object under `prefix`, by file name.
    async fn sizes(&self, prefix: &str) -> Result<HashMap<String, u64>, ArtifactError> {
        Ok(self
            .list_prefix(prefix)
            .await?
            .into_iter()
            .filter_map(|m| Some((m.location.filename()?.to_owned(), m.size)))
            .collect())
    }
}

/// Removes `cache/<hex>` (a file, or a tree renamed aside first — to `.gc-<hex>`, never an
/// artifact's name — so a half-removed tree is never taken for a copy); the bytes it held.
fn remove_cached(cache: &Path, hex: &str) -> Result<u64, ArtifactError> {
    let cached = cache.join(hex);
    let freed = disk_bytes(&cached, &mut Default::default());
    match fs::symlink_metadata(&cached) {
        Ok(m) if m.is_dir() => {
            let aside = cache.join(format!(".gc-{hex}"));
            fs::rename(&cached, &aside).map_err(ArtifactError::io("remove", &cached))?;
            fs::remove_dir_all(&aside).map_err(ArtifactError::io("remove", &aside))?;
        }
        Ok(_) => fs::remove_file(&cached).map_err(ArtifactError::io("remove", &cached))?,
        Err(_) => {}
    }
    Ok(freed)
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, ArtifactError> + Send + 'static,
) -> Result<T, ArtifactError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ArtifactError::task(what.to_owned()))?
}
