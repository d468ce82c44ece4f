use std::fs;
use std::io::{self, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::capture::{self, Captured, LocalDirs};
use crate::confined::Confined;
use crate::digest::{ALGORITHM_PREFIX, HashingWriter, StreamHasher, format_digest, parse_digest};
use crate::error::ArtifactError;
use crate::export::copy_out;
use crate::pack::Input;
use crate::unpack::unpack_tree;
use crate::{ArtifactInfo, ArtifactKind};

/// Content up to this size is uploaded with one put; larger content streams as a multipart
/// upload so memory stays bounded.
pub(crate) const SINGLE_PUT_MAX: u64 = 8 << 20;
/// Size of the chunks handed from the packing thread to the uploader.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the packing thread and the uploader.
pub(crate) const CHANNEL_DEPTH: usize = 4;
pub(crate) const PART_SIZE: usize = 8 << 20;
pub(crate) const PARTS_IN_FLIGHT: usize = 4;
/// A meta document is a few dozen bytes; anything bigger was not written by us.
const META_MAX: u64 = 4096;

/// The record written after the content: its presence means the artifact is committed.
#[derive(Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) kind: ArtifactKind,
    pub(crate) size: u64,
}

/// Content-addressed artifacts over any `object_store` backend, with a local cache of
/// materialized copies.
///
/// Layout in the object store: `sha256/<hex>` holds the content (a file's bytes, or a
/// directory's canonical tar) and `meta/<hex>.json` (`{"kind","size"}`) is written after it.
/// For a directory, `size` is the size of its tar.
#[derive(Clone, Debug)]
pub struct ArtifactStore {
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) cache_dir: PathBuf,
    /// Set for a store on the local filesystem: outputs are then moved in, not copied.
    pub(crate) local: Option<LocalDirs>,
}

impl ArtifactStore {
    /// A store on the local filesystem: objects under `root/objects`, materialized copies
    /// under `root/materialized`.
    pub fn open_local(root: &Path) -> Result<ArtifactStore, ArtifactError> {
        let objects_dir = root.join("objects");
        fs::create_dir_all(&objects_dir).map_err(ArtifactError::io("create", &objects_dir))?;
        let local = LocalFileSystem::new_with_prefix(&objects_dir).map_err(
            ArtifactError::object_store(format!("opening {}", objects_dir.display())),
        )?;
        let cache_dir = root.join("materialized");
        ensure_cache_dir(&cache_dir)?;
        let tmp = root.join("tmp");
        clear_stale_staging(&tmp);
        let mut store = ArtifactStore::from_object_store(Arc::new(local), &cache_dir);
        store.local = Some(LocalDirs {
            objects: objects_dir,
            tmp,
            cache: cache_dir,
        });
        Ok(store)
    }

    /// A store over any object store (S3, in-memory, ...); `cache_dir` holds materialized
    /// copies and is created on first use.
    pub fn from_object_store(store: Arc<dyn ObjectStore>, cache_dir: &Path) -> ArtifactStore {
        ArtifactStore {
            objects: store,
            cache_dir: cache_dir.to_owned(),
            local: None,
        }
    }

    /// Stores a step's output, which the caller gives up (it may be moved away): on a local
    /// store a file is hashed once and renamed into the store, and hard-linked into the cache
    /// of materialized copies, so the next step reads it at no further cost; a directory is
    /// packed once into a staging file that is renamed in. A file with other hard links, one
    /// on another filesystem, or any output on another kind of store is stored as
    /// [`ArtifactStore::put_path`] does. A full disk fails with
    /// [`ArtifactError::NoSpace`] and leaves nothing in the store.
    pub async fn capture(&self, path: &Path) -> Result<ArtifactInfo, ArtifactError> {
        let Some(dirs) = self.local.clone() else {
            return self.put_path(path).await;
        };
        let owned = path.to_owned();
        let meta_dir = dirs.objects.join("meta");
        let captured = tokio::task::spawn_blocking(move || {
            capture::capture(&dirs, &owned, |hex| {
                Ok(meta_dir.join(format!("{hex}.json")).is_file())
            })
        })
        .await
        .map_err(ArtifactError::task(format!("storing {}", path.display())))??;
        match captured {
            Captured::Present(info) => {
                self.touch_meta(&info.digest[ALGORITHM_PREFIX.len()..]);
                Ok(info)
            }
            Captured::Stored(info) => {
                let hex = &info.digest[ALGORITHM_PREFIX.len()..];
                if let Err(e) = self.commit(hex, info.kind, info.size).await {
                    // Not committed: leave no content without meta behind (unless a concurrent
                    // capture of the same bytes committed it meanwhile).
                    if let Some(dirs) = &self.local
                        && !dirs
                            .objects
                            .join("meta")
                            .join(format!("{hex}.json"))
                            .exists()
                    {
                        let _ = fs::remove_file(dirs.content(hex));
                        let _ = fs::remove_file(dirs.cache.join(hex));
                    }
                    return Err(match e {
                        ArtifactError::ObjectStore { ref source, .. }
                            if source.to_string().contains("No space left") =>
                        {
                            ArtifactError::NoSpace {
                                path: path.to_owned(),
                                detail: "writing its metadata".into(),
                            }
                        }
                        e => e,
                    });
                }
                Ok(info)
            }
            Captured::Fallback => self.put_path(path).await,
        }
    }

    /// Stores a file or a directory tree and returns its digest. Storing content that is
    /// already there uploads nothing.
    pub async fn put_path(&self, path: &Path) -> Result<ArtifactInfo, ArtifactError> {
        self.put_input(Input::Path(path.to_owned())).await
    }

    /// Stores an input below a data root, as `put_path(root.join(rel))` would (same bytes, same
    /// digest), but reading only by file descriptors beneath the root: `..`, absolute paths,
    /// symlinks in the path or as the input, hard-linked files and (with `read_as`) files the
    /// user may not read are refused, and nothing is stored then. Errors name the path
    /// relative to the data root.
    pub async fn put_confined(&self, src: &Confined) -> Result<ArtifactInfo, ArtifactError> {
        self.put_input(Input::Confined(src.clone())).await
    }

    async fn put_input(&self, input: Input) -> Result<ArtifactInfo, ArtifactError> {
        let input = Arc::new(input);
        // First pass: hash only, so content already stored is never uploaded again, and a
        // refused input is refused before anything is written.
        let first = Arc::clone(&input);
        let (kind, (_, hex, size)) = tokio::task::spawn_blocking(move || {
            first
                .pack(HashingWriter::new(io::sink()))
                .map(|(kind, out)| (kind, out.finish()))
        })
        .await
        .map_err(ArtifactError::task(format!(
            "hashing {}",
            input.shown().display()
        )))??;
        let info = ArtifactInfo {
            digest: format_digest(&hex),
            kind,
            size,
        };
        if self.read_meta(&hex).await?.is_some() {
            self.touch_meta(&hex);
            return Ok(info);
        }
        self.upload(&input, kind, &hex, size).await?;
        self.commit(&hex, kind, size).await?;
        Ok(info)
    }

    /// Marks a committed artifact as just stored again (a local store's meta mtime), so that
    /// `gantry gc`'s grace keeps it while the run that stored it records it.
    fn touch_meta(&self, hex: &str) {
        if let Some(dirs) = &self.local {
            let meta = dirs.objects.join("meta").join(format!("{hex}.json"));
            if let Ok(f) = fs::OpenOptions::new().write(true).open(&meta) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
        }
    }

    /// Writes the metadata object, which makes the content at `sha256/<hex>` an artifact.
    pub(crate) async fn commit(
        &self,
        hex: &str,
        kind: ArtifactKind,
        size: u64,
    ) -> Result<(), ArtifactError> {
        let digest = format_digest(hex);
        let meta =
            serde_json::to_vec(&Meta { kind, size }).map_err(|e| ArtifactError::Corrupt {
                digest: digest.clone(),
                detail: format!("cannot encode metadata: {e}"),
            })?;
        self.objects
            .put(&meta_path(hex), PutPayload::from(meta))
            .await
            .map_err(ArtifactError::object_store(format!("committing {digest}")))?;
        Ok(())
    }

    /// Kind and size of a committed artifact; None when it is not in the store.
    pub async fn stat(&self, digest: &str) -> Result<Option<ArtifactInfo>, ArtifactError> {
        let hex = parse_digest(digest)?;
        Ok(self.read_meta(&hex).await?.map(|m| ArtifactInfo {
            digest: format_digest(&hex),
            kind: m.kind,
            size: m.size,
        }))
    }

    /// A local, verified copy of the artifact (a file, or a directory tree), shared by every
    /// caller: `cache_dir/<hex>`. Files are 0644 and directories 0755 so an unprivileged
    /// container user can read them; treat it as read-only.
    pub async fn materialize(&self, digest: &str) -> Result<PathBuf, ArtifactError> {
        let hex = parse_digest(digest)?;
        let digest = format_digest(&hex);
        let cached = self.cache_dir.join(&hex);
        // Entries only appear by rename once complete, so an existing one is whole.
        if tokio::fs::symlink_metadata(&cached).await.is_ok() {
            return Ok(cached);
        }
        let meta = self
            .read_meta(&hex)
            .await?
            .ok_or_else(|| ArtifactError::NotFound {
                digest: digest.clone(),
            })?;
        ensure_cache_dir(&self.cache_dir)?;
        if let Some(dirs) = self.local.clone() {
            // The content is a file here already: verify it where it lies, then link it (a
            // file) or unpack it straight from there (a directory) — no download copy.
            let cache_dir = self.cache_dir.clone();
            return tokio::task::spawn_blocking(move || {
                let content = dirs.content(&hex);
                match meta.kind {
                    ArtifactKind::File => {
                        capture::verify_in_place(&content, &hex, meta.size)?;
                        link_or_copy(&content, &cache_dir, &cached)
                    }
                    ArtifactKind::Directory => {
                        unpack_in_place(&content, &hex, meta.size, &cache_dir, &cached)
                    }
                }
            })
            .await
            .map_err(ArtifactError::task(format!("materializing {digest}")))?;
        }
        let download = self.download_verified(&hex, meta.size).await?;
        let cache_dir = self.cache_dir.clone();
        tokio::task::spawn_blocking(move || match meta.kind {
            ArtifactKind::File => place_file(download, &cached),
            ArtifactKind::Directory => place_tree(download, &cache_dir, &cached, &digest),
        })
        .await
        .map_err(ArtifactError::task(format!("materializing sha256:{hex}")))?
    }

    /// Writes a copy of the artifact to `out_dir/<first 12 hex>` (a file or a directory) and
    /// returns that path. Never overwrites: an existing entry there is an error.
    pub async fn export(&self, digest: &str, out_dir: &Path) -> Result<PathBuf, ArtifactError> {
        let hex = parse_digest(digest)?;
        let source = self.materialize(&hex).await?;
        let dest = out_dir.join(&hex[..12]);
        let out_dir = out_dir.to_owned();
        tokio::task::spawn_blocking(move || copy_out(&source, &out_dir, &dest).map(|()| dest))
            .await
            .map_err(ArtifactError::task(format!("exporting sha256:{hex}")))?
    }

    /// The bytes of a file artifact, verified; refuses directories and files over `max`.
    pub async fn read_bytes(&self, digest: &str, max: u64) -> Result<Vec<u8>, ArtifactError> {
        let hex = parse_digest(digest)?;
        let digest = format_digest(&hex);
        let meta = self
            .read_meta(&hex)
            .await?
            .ok_or_else(|| ArtifactError::NotFound {
                digest: digest.clone(),
            })?;
        if meta.kind != ArtifactKind::File {
            return Err(ArtifactError::NotAFile { digest });
        }
        if meta.size > max {
            return Err(ArtifactError::TooLarge {
                digest,
                size: meta.size,
                max,
            });
        }
        let mut stream = self.get(&hex).await?.into_stream();
        let mut hasher = StreamHasher::new();
        let mut out = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(ArtifactError::object_store(format!("reading {digest}")))?;
            hasher.update(&chunk);
            check_not_longer(&hasher, meta.size, &digest)?;
            out.extend_from_slice(&chunk);
        }
        verify(hasher, &hex, meta.size)?;
        Ok(out)
    }

    pub(crate) async fn read_meta(&self, hex: &str) -> Result<Option<Meta>, ArtifactError> {
        let digest = format_digest(hex);
        let got = match self.objects.get(&meta_path(hex)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => {
                return Err(ArtifactError::ObjectStore {
                    op: format!("reading the metadata of {digest}"),
                    source: e,
                });
            }
        };
        if got.meta.size > META_MAX {
            return Err(ArtifactError::Corrupt {
                digest,
                detail: format!("metadata is {} bytes", got.meta.size),
            });
        }
        let bytes = got
            .bytes()
            .await
            .map_err(ArtifactError::object_store(format!(
                "reading the metadata of {digest}"
            )))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ArtifactError::Corrupt {
                digest,
                detail: format!("unreadable metadata: {e}"),
            })
    }

    async fn get(&self, hex: &str) -> Result<object_store::GetResult, ArtifactError> {
        self.objects
            .get(&content_path(hex))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => ArtifactError::Corrupt {
                    digest: format_digest(hex),
                    detail: "metadata present but content missing".into(),
                },
                e => ArtifactError::ObjectStore {
                    op: format!("reading sha256:{hex}"),
                    source: e,
                },
            })
    }

    /// Second pass: packs the input again while uploading, and only commits the upload when
    /// the bytes hash to what the first pass saw.
    async fn upload(
        &self,
        input: &Arc<Input>,
        kind: ArtifactKind,
        hex: &str,
        size: u64,
    ) -> Result<(), ArtifactError> {
        let location = content_path(hex);
        let op = || format!("storing {} as sha256:{hex}", input.shown().display());
        let changed = || ArtifactError::Changed {
            path: input.shown().to_owned(),
        };
        let owned = Arc::clone(input);
        if size <= SINGLE_PUT_MAX {
            let (again, (bytes, got, _)) = tokio::task::spawn_blocking(move || {
                owned
                    .pack(HashingWriter::new(Vec::new()))
                    .map(|(kind, out)| (kind, out.finish()))
            })
            .await
            .map_err(ArtifactError::task(op()))??;
            if got != hex || again != kind {
                return Err(changed());
            }
            self.objects
                .put(&location, PutPayload::from(bytes))
                .await
                .map_err(ArtifactError::object_store(op()))?;
            return Ok(());
        }

        let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
        let producer = tokio::task::spawn_blocking(move || {
            let sender = ChunkSender::new(tx);
            let (again, out) = owned.pack(HashingWriter::new(sender))?;
            let (sender, got, len) = out.finish();
            sender
                .finish()
                .map_err(ArtifactError::io("upload", owned.shown()))?;
            Ok::<_, ArtifactError>((again, got, len))
        });
        let upload = self
            .objects
            .put_multipart(&location)
            .await
            .map_err(ArtifactError::object_store(op()))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut failure = None;
        while let Some(chunk) = rx.recv().await {
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                failure = Some(ArtifactError::object_store(op())(e));
                break;
            }
            writer.put(chunk);
        }
        // Dropping the receiver makes a still-running producer stop at its next send.
        drop(rx);
        let produced = producer.await.map_err(ArtifactError::task(op()));
        let outcome = match (failure, produced) {
            (Some(e), _) => Err(e),
            (None, Err(e)) | (None, Ok(Err(e))) => Err(e),
            (None, Ok(Ok((again, got, len)))) if again == kind && got == hex && len == size => {
                Ok(())
            }
            (None, Ok(Ok(_))) => Err(changed()),
        };
        match outcome {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(ArtifactError::object_store(op()))?;
                Ok(())
            }
            Err(e) => {
                // Best effort: the upload is invisible until finished anyway.
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// Downloads the content into a temp file in the cache dir, verifying size and digest.
    async fn download_verified(
        &self,
        hex: &str,
        size: u64,
    ) -> Result<tempfile::NamedTempFile, ArtifactError> {
        let digest = format_digest(hex);
        let temp = tempfile::Builder::new()
            .prefix(".download-")
            .tempfile_in(&self.cache_dir)
            .map_err(ArtifactError::io("create a temp file in", &self.cache_dir))?;
        let write_err = ArtifactError::io("write", temp.path());
        let std_file = temp
            .as_file()
            .try_clone()
            .map_err(ArtifactError::io("open", temp.path()))?;
        let mut file = tokio::fs::File::from_std(std_file);
        let mut stream = self.get(hex).await?.into_stream();
        let mut hasher = StreamHasher::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(ArtifactError::object_store(format!("reading {digest}")))?;
            hasher.update(&chunk);
            check_not_longer(&hasher, size, &digest)?;
            if let Err(e) = file.write_all(&chunk).await {
                return Err(write_err(e));
            }
        }
        if let Err(e) = file.flush().await {
            return Err(write_err(e));
        }
        verify(hasher, hex, size)?;
        Ok(temp)
    }
}

pub(crate) fn content_path(hex: &str) -> ObjectPath {
    ObjectPath::from(format!("sha256/{hex}"))
}

fn meta_path(hex: &str) -> ObjectPath {
    ObjectPath::from(format!("meta/{hex}.json"))
}

fn ensure_cache_dir(dir: &Path) -> Result<(), ArtifactError> {
    fs::create_dir_all(dir).map_err(ArtifactError::io("create", dir))?;
    // Containers running as an unprivileged user traverse it to reach their inputs.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(ArtifactError::io("set permissions of", dir))
}

/// Stops a download as soon as it exceeds the committed size, so a tampered object cannot
/// fill the disk.
pub(crate) fn check_not_longer(
    hasher: &StreamHasher,
    size: u64,
    digest: &str,
) -> Result<(), ArtifactError> {
    if hasher.len() > size {
        return Err(ArtifactError::Corrupt {
            digest: digest.to_owned(),
            detail: format!("content is longer than the recorded {size} bytes"),
        });
    }
    Ok(())
}

pub(crate) fn verify(hasher: StreamHasher, hex: &str, size: u64) -> Result<(), ArtifactError> {
    let len = hasher.len();
    let got = hasher.finish();
    if got != hex || len != size {
        return Err(ArtifactError::Corrupt {
            digest: format_digest(hex),
            detail: format!("content has {len} bytes and digest sha256:{got}"),
        });
    }
    Ok(())
}

fn place_file(temp: tempfile::NamedTempFile, cached: &Path) -> Result<PathBuf, ArtifactError> {
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(ArtifactError::io("set permissions of", temp.path()))?;
    // A concurrent materialize may have renamed the same bytes here already: replacing them
    // is harmless, and readers keep the inode they opened.
    temp.persist(cached)
        .map_err(|e| ArtifactError::io("create", cached)(e.error))?;
    Ok(cached.to_owned())
}

/// Clears staging files a crashed capture left behind (best effort): those older than an
/// hour, so another process's capture in progress keeps its file.
fn clear_stale_staging(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    let now = std::time::SystemTime::now();
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default().as_secs() > 3600);
        if old && e.file_name().to_string_lossy().starts_with(".capture-") {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Puts a verified stored file into the cache: a hard link of the object (same bytes, no
/// copy), or a copy where linking is impossible.
fn link_or_copy(content: &Path, cache_dir: &Path, cached: &Path) -> Result<PathBuf, ArtifactError> {
    match fs::hard_link(content, cached) {
        Ok(()) => return Ok(cached.to_owned()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(cached.to_owned()),
        Err(_) => {}
    }
    let temp = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(cache_dir)
        .map_err(ArtifactError::io("create a temp file in", cache_dir))?;
    let mut from = fs::File::open(content).map_err(ArtifactError::io("read", content))?;
    io::copy(&mut from, &mut temp.as_file()).map_err(ArtifactError::io("write", temp.path()))?;
    place_file(temp, cached)
}

/// Unpacks a stored directory's tar into the cache straight from the object, hashing as it
/// reads; a digest or size that does not match leaves nothing behind.
fn unpack_in_place(
    content: &Path,
    hex: &str,
    size: u64,
    cache_dir: &Path,
    cached: &Path,
) -> Result<PathBuf, ArtifactError> {
    let digest = format_digest(hex);
    let file = capture::open_content(content, hex)?;
    let staging = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(cache_dir)
        .map_err(ArtifactError::io("create a temp directory in", cache_dir))?;
    let mut reader = capture::HashingReader {
        inner: io::BufReader::with_capacity(1 << 20, io::Read::take(file, size + 1)),
        hasher: StreamHasher::new(),
    };
    unpack_tree(&mut reader, staging.path(), &digest)?;
    // The tar reader may stop at its end-of-archive blocks: hash whatever follows too.
    io::copy(&mut reader, &mut io::sink()).map_err(ArtifactError::io("read", content))?;
    verify(reader.hasher, hex, size)?;
    cache_tree(staging, cached)
}

fn place_tree(
    mut archive: tempfile::NamedTempFile,
    cache_dir: &Path,
    cached: &Path,
    digest: &str,
) -> Result<PathBuf, ArtifactError> {
    let staging = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(cache_dir)
        .map_err(ArtifactError::io("create a temp directory in", cache_dir))?;
    let file = archive.as_file_mut();
    file.rewind()
        .map_err(ArtifactError::io("read", archive.path()))?;
    unpack_tree(
        io::BufReader::new(archive.as_file()),
        staging.path(),
        digest,
    )?;
    cache_tree(staging, cached)
}

/// Renames an unpacked, verified tree into the cache (0755 at its root).
fn cache_tree(staging: tempfile::TempDir, cached: &Path) -> Result<PathBuf, ArtifactError> {
    fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
        .map_err(ArtifactError::io("set permissions of", staging.path()))?;
    match fs::rename(staging.path(), cached) {
        Ok(()) => {
            // Renamed away: nothing left for the guard to clean.
            let _ = staging.keep();
            Ok(cached.to_owned())
        }
        // A concurrent materialize won the race with identical content; ours is dropped.
        Err(_) if fs::symlink_metadata(cached).is_ok_and(|m| m.is_dir()) => Ok(cached.to_owned()),
        Err(e) => Err(ArtifactError::io("create", cached)(e)),
    }
}

/// Hands fixed-size chunks from the blocking packer to the async uploader.
pub(crate) struct ChunkSender {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChunkSender {
    pub(crate) fn new(tx: mpsc::Sender<Bytes>) -> Self {
        ChunkSender {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send_buffered(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.send_buffered()
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send_buffered()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks are only sent full (or at finish) to keep parts large.
        Ok(())
    }
}
