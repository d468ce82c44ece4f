//! Garbage collection and disk use (`gantry gc`, `gantry df`, the server's `--gc-interval`).
//!
//! A run is kept while it is not over or when it ended inside the retention (`older_than`);
//! gc removes artifacts that no kept run, registered model version or upload inside
//! retention refers to, scratch directories of runs that are over, the logs of runs that are
//! not kept, built-in images of other gantry binaries that no kept run used, and image files
//! no image in the index uses. It is safe while runs execute: their runs are kept, an artifact
//! is checked again right before it goes, and anything written in the last
//! [`GRACE`] (an output being recorded, an upload, a scratch directory being laid out) stays.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use gantry_artifacts::ArtifactStore;
use gantry_image::ImageStore;
use gantry_store::Store;
use serde::Serialize;

use crate::error::EngineError;

/// Nothing written more recently than this is removed, whatever the retention.
pub const GRACE: Duration = Duration::from_secs(60);

/// Built-in image names start with this.
const BUILTIN_PREFIX: &str = "gantry-builtin:";

/// What gc works on.
pub struct GcTargets<'a> {
    pub store: &'a Store,
    pub artifacts: &'a ArtifactStore,
    pub images: &'a ImageStore,
    /// `GANTRY_HOME/work`: scratch directories named after runs.
    pub work_dir: &'a Path,
    /// The running binary, whose built-in image is kept (replicas may be running in it).
    pub builtin_exe: Option<std::path::PathBuf>,
}

/// Count and bytes of one kind of thing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Amount {
    pub count: u64,
    pub bytes: u64,
}

impl Amount {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

/// What gc removed (or, with `dry_run`, would remove).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Runs that ended before this (ms since the epoch) are not kept.
    pub cutoff_ms: i64,
    pub artifacts: Amount,
    pub scratch: Amount,
    pub logs: Amount,
    pub images: Amount,
    /// Artifacts in use that stay.
    pub kept_artifacts: u64,
}

impl GcReport {
    pub fn freed_bytes(&self) -> u64 {
        self.artifacts.bytes + self.scratch.bytes + self.logs.bytes + self.images.bytes
    }
}

fn io_err(what: String) -> impl FnOnce(String) -> EngineError {
    move |message| EngineError::Gc {
        message: format!("{what}: {message}"),
    }
}

/// Runs filesystem work off the async threads; its error (or a panic) names `what`.
async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    what: impl Into<String>,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, EngineError> {
    let what = what.into();
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(io_err(what)(e.to_string())),
        Err(e) => Err(io_err(what)(e.to_string())),
    }
}

impl<'a> GcTargets<'a> {
    /// The engine's stores and work directory; the built-in image of its binary is kept.
    pub fn of_engine<R: gantry_runtime::Runtime>(engine: &'a crate::Engine<R>) -> Self {
        GcTargets {
            store: engine.store(),
            artifacts: engine.artifacts(),
            images: engine.images(),
            work_dir: &engine.config().work_dir,
            builtin_exe: engine.config().builtin_exe.clone(),
        }
    }
}

/// Collects garbage (see the module docs).
pub async fn collect(
    t: &GcTargets<'_>,
    older_than: Duration,
    dry_run: bool,
) -> Result<GcReport, EngineError> {
    let now = SystemTime::now();
    let cutoff = now
        .checked_sub(older_than)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let cutoff_ms = ms(cutoff);
    let fresh = now.checked_sub(GRACE).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = GcReport {
        dry_run,
        cutoff_ms,
        ..GcReport::default()
    };

    // Artifacts.
    let referenced = t.store.referenced_artifacts(cutoff_ms).await?;
    let stored = t.artifacts.list_committed().await?;
    for a in stored {
        if referenced.contains(&a.digest) || a.committed > fresh {
            report.kept_artifacts += 1;
            continue;
        }
        if dry_run {
            report.artifacts.add(a.disk_bytes);
            continue;
        }
        // A run may have started using it, or stored it again, since the list was made.
        if t.store.artifact_referenced(&a.digest, cutoff_ms).await?
            || t.artifacts
                .committed_at(&a.digest)
                .await
                .is_some_and(|c| c > fresh)
        {
            report.kept_artifacts += 1;
            continue;
        }
        let freed = t.artifacts.remove(&a.digest).await?;
        report.artifacts.add(freed);
    }

    // Content a crash left uncommitted.
    let (files, bytes) = t.artifacts.sweep_uncommitted(fresh, dry_run).await?;
    report.artifacts.count += files;
    report.artifacts.bytes += bytes;

    // Scratch directories of runs that are over.
    let active = t.store.active_run_ids().await?;
    let work = t.work_dir.to_owned();
    let scratch = blocking("removing scratch directories", move || {
        scratch_dirs(&work, &active, fresh, dry_run)
    })
    .await?;
    report.scratch = scratch;

    // Logs of runs that are not kept.
    let logs = if dry_run {
        t.store.expired_logs(cutoff_ms).await?
    } else {
        t.store.delete_expired_logs(cutoff_ms).await?
    };
    report.logs = Amount {
        count: logs.chunks as u64,
        bytes: logs.bytes as u64,
    };

    // Built-in images of other binaries that no kept run used, then orphaned image files.
    let used = t.store.referenced_images(cutoff_ms).await?;
    let images = t.images.clone();
    let current = t.builtin_exe.clone();
    report.images = blocking("removing images", move || {
        prune_images(&images, &used, current.as_deref(), dry_run)
    })
    .await?;
    Ok(report)
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Run scratch directories (`work/r-…`) of runs that are not in progress.
fn scratch_dirs(
    work: &Path,
    active: &HashSet<String>,
    fresh: SystemTime,
    dry_run: bool,
) -> Result<Amount, EngineError> {
    let mut amount = Amount::default();
    let Ok(entries) = std::fs::read_dir(work) else {
        return Ok(amount);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("r-") || active.contains(&name) {
            continue;
        }
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if !meta.is_dir() || meta.modified().is_ok_and(|m| m > fresh) {
            continue;
        }
        let path = entry.path();
        let bytes = tree_bytes(&path);
        if !dry_run {
            std::fs::remove_dir_all(&path)
                .map_err(|e| io_err(format!("removing {}", path.display()))(e.to_string()))?;
        }
        amount.add(bytes);
    }
    Ok(amount)
}

fn prune_images(
    images: &ImageStore,
    used: &HashSet<String>,
    current_exe: Option<&Path>,
    dry_run: bool,
) -> Result<Amount, EngineError> {
    let err = |e: gantry_image::ImageError| io_err("removing images".into())(e.to_string());
    let mut amount = Amount::default();
    let builtin: Vec<_> = images
        .list()
        .map_err(err)?
        .into_iter()
        .filter(|i| !i.names.is_empty() && i.names.iter().all(|n| n.starts_with(BUILTIN_PREFIX)))
        .collect();
    // The built-in images of this binary and of every gantry process running (a server of an
    // older version may have model replicas in its image); hashing binaries is only needed
    // when there are built-in images to judge.
    let mut in_use = HashSet::new();
    if !builtin.is_empty() {
        let mut exes: Vec<std::path::PathBuf> =
            current_exe.map(Path::to_path_buf).into_iter().collect();
        exes.extend(running_gantry_binaries());
        for exe in exes {
            if let Some(info) = crate::existing_builtin_image(images, &exe) {
                in_use.insert(info.digest);
            }
        }
    }
    for image in builtin {
        if used.contains(&image.digest) || in_use.contains(&image.digest) {
            continue;
        }
        let rootfs = images.rootfs(&image.digest).ok();
        let bytes = image.size + rootfs.as_deref().map_or(0, tree_bytes);
        if !dry_run {
            images.remove(&image.digest).map_err(err)?;
        }
        amount.add(bytes);
    }
    amount.bytes += images.prune_orphans(dry_run).map_err(err)?;
    Ok(amount)
}

/// `/proc/PID/exe` of every running process whose binary is named gantry, one per binary
/// (an upgraded binary replaced on disk is still readable there).
fn running_gantry_binaries() -> Vec<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let exe = entry.path().join("exe");
        let Ok(target) = std::fs::read_link(&exe) else {
            continue;
        };
        let base = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if base != "gantry" && base != "gantry (deleted)" {
            continue;
        }
        if let Ok(m) = std::fs::metadata(&exe)
            && seen.insert((m.dev(), m.ino()))
        {
            out.push(exe);
        }
    }
    out
}

fn tree_bytes(path: &Path) -> u64 {
    gantry_artifacts::disk_bytes(path, &mut HashSet::new())
}

/// What uses the disk, and what gc (with the same retention) would free.
#[derive(Clone, Debug, Serialize)]
pub struct DiskUsage {
    pub artifacts: Amount,
    /// Materialized copies that are not links of stored objects, plus staging.
    pub artifact_cache_bytes: u64,
    pub images: Amount,
    pub logs: Amount,
    pub scratch: Amount,
    pub database_bytes: u64,
    pub reclaimable: GcReport,
}

/// `gantry df`: every part's use, plus a dry run of gc.
pub async fn disk_usage(
    t: &GcTargets<'_>,
    database: Option<&Path>,
    older_than: Duration,
) -> Result<DiskUsage, EngineError> {
    let a = t.artifacts.usage().await?;
    let images = t.images.clone();
    let i = blocking("measuring images", move || images.usage()).await?;
    let logs = t.store.log_volume().await?;
    let work = t.work_dir.to_owned();
    let scratch = tokio::task::spawn_blocking(move || {
        let mut amount = Amount::default();
        for entry in std::fs::read_dir(&work).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with("r-") {
                amount.add(tree_bytes(&entry.path()));
            }
        }
        amount
    })
    .await
    .map_err(|e| io_err("measuring scratch".into())(e.to_string()))?;
    let database_bytes = database.map_or(0, |db| {
        let mut total = 0;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            total += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        }
        total
    });
    let reclaimable = collect(t, older_than, true).await?;
    Ok(DiskUsage {
        artifacts: Amount {
            count: a.artifacts,
            bytes: a.objects_bytes,
        },
        artifact_cache_bytes: a.cache_bytes + a.tmp_bytes,
        images: Amount {
            count: i.images,
            bytes: i.blobs_bytes + i.rootfs_bytes + i.tmp_bytes,
        },
        logs: Amount {
            count: logs.chunks as u64,
            bytes: logs.bytes as u64,
        },
        scratch,
        database_bytes,
        reclaimable,
    })
}
