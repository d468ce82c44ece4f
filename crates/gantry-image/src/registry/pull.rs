//! Pulling an image: manifest (an index resolved to this host's platform), config and layers
//! downloaded in parallel into a staging directory, each verified against its digest, then
//! unpacked and committed by the image store exactly like an import. Partial layer downloads
//! are kept under `<store>/tmp/downloads` so an interrupted pull resumes with a range request;
//! nothing reaches the store unless every blob verifies and every layer unpacks safely.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use oci_spec::image::MediaType;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::client::{RegistryClient, read_limited};
use super::reference::RegistryRef;
use crate::blob::{BlobRef, MAX_JSON_BLOB, blob_path, sha256_digest};
use crate::reference::sha256_hex;
use crate::{ImageError, ImageInfo, ImageStore};

/// Registries refuse manifests over 4 MiB; so do we, before reading more.
pub(crate) const MAX_MANIFEST: usize = 4 << 20;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// What a pull reports as it goes; every method has a no-op default.
pub trait PullProgress: Send + Sync {
    /// A layer starts downloading (`offset` > 0 when a partial download resumes).
    fn layer_start(&self, _digest: &str, _size: u64, _offset: u64) {}
    /// `n` more bytes of a layer arrived.
    fn layer_bytes(&self, _digest: &str, _n: u64) {}
    /// A layer is complete; `reused` when the store already had it.
    fn layer_done(&self, _digest: &str, _reused: bool) {}
    /// Unpacking and committing started.
    fn unpacking(&self) {}
}

impl std::fmt::Debug for dyn PullProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PullProgress")
    }
}

/// Reports nothing.
pub struct NoProgress;
impl PullProgress for NoProgress {}

/// The outcome of a pull.
#[derive(Clone, Debug)]
pub struct Pulled {
    pub info: ImageInfo,
    /// The reference pinned to the manifest digest that was stored.
    pub pinned: RegistryRef,
    /// The image index the reference pointed at, when it was one.
    pub index_digest: Option<String>,
    /// Bytes downloaded by this pull (0 when the image was already stored).
    pub downloaded: u64,
    /// Layers the store already had.
    pub reused_layers: usize,
    /// The image was in the store already; only its name was (re)set.
    pub already_present: bool,
}

/// A manifest as fetched: its exact bytes, their digest and media type.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub media_type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The OCI architecture name of this host.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl RegistryClient {
    /// Fetches the manifest `r` names (by digest when pinned), verified: a pinned digest must
    /// match the bytes, and so must the `Docker-Content-Digest` the registry sends. Media types
    /// other than OCI/Docker image manifests and indexes are refused.
    pub async fn fetch_manifest(&self, r: &RegistryRef) -> Result<FetchedManifest, ImageError> {
        self.fetch_manifest_at(r, r.manifest_reference())
            .await?
            .ok_or_else(|| {
                self.error(
                    r,
                    Some(404),
                    "404 manifest unknown: no such tag or digest in the repository".to_string(),
                )
            })
    }

    /// Like [`RegistryClient::fetch_manifest`] for `tag_or_digest`, `None` on 404.
    pub async fn fetch_manifest_at(
        &self,
        r: &RegistryRef,
        tag_or_digest: &str,
    ) -> Result<Option<FetchedManifest>, ImageError> {
        let path = format!("/v2/{}/manifests/{tag_or_digest}", r.repository);
        let accept = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].join(", ");
        let response = self
            .send(r, "pull", &|c, base| {
                Ok(RegistryClient::request(c, Method::GET, base, &path).header(ACCEPT, &accept))
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self
                .status_error(r, &format!("manifest {tag_or_digest}"), response)
                .await);
        }
        let header_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_limited(response, MAX_MANIFEST)
            .await
            .map_err(|e| self.error(r, None, format!("manifest {tag_or_digest}: {e}; refused")))?;
        let digest = sha256_digest(&bytes);
        let expected = if sha256_hex(tag_or_digest).is_some() {
            Some(tag_or_digest.to_string())
        } else {
            header_digest.filter(|d| d.starts_with("sha256:"))
        };
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(ImageError::DigestMismatch {
                what: format!("manifest of {r} from {}", r.registry),
                expected,
                actual: digest,
            });
        }
        let parsed: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::json(format!("manifest of {r}"), e))?;
        let media_type = parsed
            .media_type
            .clone()
            .or(header_type)
            .unwrap_or_else(|| {
                if parsed.manifests.is_empty() {
                    OCI_MANIFEST.to_string()
                } else {
                    OCI_INDEX.to_string()
                }
            });
        if ![OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&media_type.as_str())
            || parsed.schema_version != Some(2)
        {
            return Err(self.error(
                r,
                None,
                format!(
                    "unsupported media type {media_type:?} (schema version {}): Gantry pulls OCI and Docker v2 image manifests and indexes",
                    parsed.schema_version.map_or("none".to_string(), |v| v.to_string())
                ),
            ));
        }
        Ok(Some(FetchedManifest {
            bytes,
            digest,
            media_type,
        }))
    }

    /// The digest of the image manifest `r` names for this host's platform (and the index
    /// digest when the reference names an index).
    pub async fn resolve(
        &self,
        r: &RegistryRef,
    ) -> Result<(FetchedManifest, Option<String>), ImageError> {
        let top = self.fetch_manifest(r).await?;
        if top.media_type != OCI_INDEX && top.media_type != DOCKER_LIST {
            return Ok((top, None));
        }
        let index: Manifest = serde_json::from_slice(&top.bytes)
            .map_err(|e| ImageError::json(format!("image index of {r}"), e))?;
        let arch = host_architecture();
        let chosen = index
            .manifests
            .iter()
            .filter(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            })
            .min_by_key(|m| m.platform.as_ref().and_then(|p| p.variant.clone()))
            .ok_or_else(|| {
                let offered: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref())
                    .map(|p| format!("{}/{}", p.os, p.architecture))
                    .collect();
                self.error(
                    r,
                    None,
                    format!(
                        "the image index has no linux/{arch} image (it offers {})",
                        if offered.is_empty() {
                            "none".to_string()
                        } else {
                            offered.join(", ")
                        }
                    ),
                )
            })?;
        let child = self
            .fetch_manifest_at(r, &chosen.digest)
            .await?
            .ok_or_else(|| {
                self.error(
                    r,
                    Some(404),
                    format!("404 manifest unknown: the index names {} but the registry does not have it", chosen.digest),
                )
            })?;
        if child.media_type != OCI_MANIFEST && child.media_type != DOCKER_MANIFEST {
            return Err(self.error(
                r,
                None,
                format!(
                    "the index entry {} is a {}, not an image manifest",
                    chosen.digest, child.media_type
                ),
            ));
        }
        Ok((child, Some(top.digest)))
    }

    /// Pulls `reference` into `store` and names it there (`registry/repo:tag`). An image the
    /// store already has costs one manifest request.
    pub async fn pull(
        &self,
        store: &ImageStore,
        reference: &str,
        progress: &dyn PullProgress,
    ) -> Result<Pulled, ImageError> {
        let r = RegistryRef::parse(reference)?;
        let (manifest, index_digest) = self.resolve(&r).await?;
        let pinned = r.with_digest(&manifest.digest);
        let name = r.store_name();
        let parsed: Manifest = serde_json::from_slice(&manifest.bytes)
            .map_err(|e| ImageError::json(format!("manifest of {r}"), e))?;
        let config = parsed
            .config
            .ok_or_else(|| self.error(&r, None, "the manifest has no config".to_string()))?;
        let config_type = config.media_type.clone().unwrap_or_default();
        if config_type != OCI_CONFIG && config_type != DOCKER_CONFIG {
            return Err(self.error(
                &r,
                None,
                format!("unsupported media type {config_type:?} for the config: this is an artifact, not a container image"),
            ));
        }
        for layer in &parsed.layers {
            let t = layer.media_type.as_deref().unwrap_or_default();
            if !t.contains("tar") || t.contains("nondistributable") || t.contains("foreign") {
                return Err(self.error(
                    &r,
                    None,
                    format!("unsupported media type {t:?} for layer {}", layer.digest),
                ));
            }
            if sha256_hex(&layer.digest).is_none() {
                return Err(self.error(
                    &r,
                    None,
                    format!("layer digest {:?} is not sha256", layer.digest),
                ));
            }
        }
        if sha256_hex(&config.digest).is_none() {
            return Err(self.error(
                &r,
                None,
                format!("config digest {:?} is not sha256", config.digest),
            ));
        }

        if let Ok(info) = store.resolve(&manifest.digest) {
            let store2 = store.clone();
            let digest = manifest.digest.clone();
            let named = name.clone();
            let info = tokio::task::spawn_blocking(move || match named {
                Some(n) => store2
                    .tag(&digest, &n)
                    .and_then(|()| store2.resolve(&digest)),
                None => Ok(info),
            })
            .await
            .map_err(|e| ImageError::Malformed(format!("naming the image panicked: {e}")))??;
            return Ok(Pulled {
                info,
                pinned,
                index_digest,
                downloaded: 0,
                reused_layers: parsed.layers.len(),
                already_present: true,
            });
        }

        // Compressed layers are never larger than what they unpack to by more than a little;
        // a manifest announcing more than the unpack bound is refused before any download.
        let announced: u64 = parsed.layers.iter().map(|l| l.size).sum();
        if announced > store.limits().max_total_bytes {
            return Err(ImageError::LimitExceeded(format!(
                "{r}: the manifest announces {announced} bytes of layers, more than the limit of {} bytes",
                store.limits().max_total_bytes
            )));
        }
        let staging = store.staging("pull")?;
        let blobs = staging.path().join("blobs");
        std::fs::create_dir(&blobs).map_err(|e| ImageError::io("cannot create", &blobs, e))?;
        let manifest_ref = write_staged(&blobs, &manifest.bytes, &manifest.media_type)?;

        let config_ref = BlobRef {
            digest: config.digest.clone(),
            size: config.size,
            media_type: MediaType::from(config_type.as_str()),
        };
        if config.size > MAX_JSON_BLOB {
            return Err(self.error(
                &r,
                None,
                format!("the config blob is {} bytes; refused", config.size),
            ));
        }
        self.fetch_small_blob_to(&r, &config_ref, &blobs).await?;

        let layers: Vec<BlobRef> = parsed
            .layers
            .iter()
            .map(|l| BlobRef {
                digest: l.digest.clone(),
                size: l.size,
                media_type: MediaType::from(l.media_type.as_deref().unwrap_or_default()),
            })
            .collect();
        let downloads = store.downloads_dir()?;
        let config_bytes = std::fs::read(blob_path(&blobs, &config_ref.digest))
            .map_err(|e| ImageError::io("cannot read", blob_path(&blobs, &config_ref.digest), e))?;
        let expected = crate::image_config::parse_config(
            &config_bytes,
            &format!("image config {}", config_ref.digest),
        )?
        .diff_ids;

        // Layers are unpacked in order on a blocking thread while later ones still download:
        // layer i as soon as it and every layer before it are verified.
        let rootfs = staging.path().join("rootfs");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<usize>();
        let unpacker = {
            let store = store.clone();
            let blobs = blobs.clone();
            let layers = layers.clone();
            let rootfs = rootfs.clone();
            tokio::task::spawn_blocking(move || {
                let mut ready = std::collections::HashSet::new();
                store.unpack_layers_when(&blobs, &layers, Some(&expected), &rootfs, &mut |i| {
                    while !ready.contains(&i) {
                        match ready_rx.recv() {
                            Ok(j) => {
                                ready.insert(j);
                            }
                            Err(_) => {
                                return Err(ImageError::Malformed(
                                    "the layer downloads stopped".into(),
                                ));
                            }
                        }
                    }
                    Ok(())
                })
            })
        };

        let parallel = self.opts.parallel_layers.max(1);
        // Boxed as `Send` futures: a closure-built stream of borrowing futures trips the
        // compiler's `Send` inference in callers that spawn the pull.
        type LayerFuture<'a> = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(u64, bool), ImageError>> + Send + 'a>,
        >;
        let futures: Vec<LayerFuture<'_>> = layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let tx = ready_tx.clone();
                let blobs = &blobs;
                let downloads = &downloads;
                let r = &r;
                Box::pin(async move {
                    let result = self
                        .fetch_layer(r, store, layer, blobs, downloads, progress)
                        .await;
                    if result.is_ok() {
                        let _ = tx.send(i);
                    }
                    result
                }) as LayerFuture<'_>
            })
            .collect();
        drop(ready_tx);
        let results: Vec<Result<(u64, bool), ImageError>> = futures::stream::iter(futures)
            .buffer_unordered(parallel)
            .collect()
            .await;
        let mut downloaded = 0;
        let mut reused = 0;
        let mut failed = None;
        for result in results {
            match result {
                Ok((bytes, was_reused)) => {
                    downloaded += bytes;
                    reused += usize::from(was_reused);
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        progress.unpacking();
        let unpacked = unpacker
            .await
            .map_err(|e| ImageError::Malformed(format!("unpacking the image panicked: {e}")))?;
        // A download error explains an unpacker that stopped waiting; report it first.
        if let Some(e) = failed {
            return Err(e);
        }
        unpacked?;
        let store2 = store.clone();
        let info = tokio::task::spawn_blocking(move || {
            let result = store2.commit_pulled(&blobs, &rootfs, &manifest_ref, name.as_deref());
            drop(staging);
            result
        })
        .await
        .map_err(|e| ImageError::Malformed(format!("storing the image panicked: {e}")))??;
        Ok(Pulled {
            info,
            pinned,
            index_digest,
            downloaded,
            reused_layers: reused,
            already_present: false,
        })
    }

    /// Downloads a small blob (config, signature payload) into memory, verified.
    pub async fn fetch_blob_bytes(
        &self,
        r: &RegistryRef,
        digest: &str,
        cap: usize,
    ) -> Result<Vec<u8>, ImageError> {
        let path = format!("/v2/{}/blobs/{digest}", r.repository);
        let response = self
            .send(r, "pull", &|c, base| {
                Ok(RegistryClient::request(c, Method::GET, base, &path))
            })
            .await?;
        if !response.status().is_success() {
            return Err(self
                .status_error(r, &format!("blob {digest}"), response)
                .await);
        }
        let bytes = read_limited(response, cap)
            .await
            .map_err(|e| self.error(r, None, format!("blob {digest}: {e}; refused")))?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("blob of {r} from {}", r.registry),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    async fn fetch_small_blob_to(
        &self,
        r: &RegistryRef,
        blob: &BlobRef,
        dir: &Path,
    ) -> Result<(), ImageError> {
        let bytes = self
            .fetch_blob_bytes(r, &blob.digest, blob.size as usize)
            .await?;
        if bytes.len() as u64 != blob.size {
            return Err(ImageError::DigestMismatch {
                what: format!("size of blob {} of {r}", blob.digest),
                expected: blob.size.to_string(),
                actual: bytes.len().to_string(),
            });
        }
        let path = blob_path(dir, &blob.digest);
        std::fs::write(&path, &bytes).map_err(|e| ImageError::io("cannot write", &path, e))
    }

    /// One layer into the staging `blobs` dir: linked from the store when it has it, else
    /// downloaded (resuming a partial download) and verified. Returns (bytes downloaded, reused).
    async fn fetch_layer(
        &self,
        r: &RegistryRef,
        store: &ImageStore,
        layer: &BlobRef,
        blobs: &Path,
        downloads: &Path,
        progress: &dyn PullProgress,
    ) -> Result<(u64, bool), ImageError> {
        let dest = blob_path(blobs, &layer.digest);
        if let Some(stored) = store.stored_blob(&layer.digest)
            && (std::fs::hard_link(&stored, &dest).is_ok() || std::fs::copy(&stored, &dest).is_ok())
        {
            progress.layer_done(&layer.digest, true);
            return Ok((0, true));
        }
        let partial = downloads.join(format!("{}.partial", layer.hex()));
        let lock = lock_partial(&partial)?;
        let (partial, _lock) = match lock {
            Some(lock) => (partial, Some(lock)),
            // Another pull is fetching the same layer: download our own copy.
            None => (
                downloads.join(format!("{}.{}.partial", layer.hex(), std::process::id())),
                None,
            ),
        };
        let (mut hasher, mut offset) = hash_prefix(&partial, layer.size)?;
        progress.layer_start(&layer.digest, layer.size, offset);
        let path = format!("/v2/{}/blobs/{}", r.repository, layer.digest);
        let mut downloaded = 0u64;
        if offset < layer.size || layer.size == 0 {
            let range = offset;
            let response = self
                .send(r, "pull", &|c, base| {
                    let mut req = RegistryClient::request(c, Method::GET, base, &path);
                    if range > 0 {
                        req = req.header(RANGE, format!("bytes={range}-"));
                    }
                    Ok(req)
                })
                .await?;
            let status = response.status();
            if !status.is_success() {
                // An empty partial (just created to hold the lock) is not worth keeping.
                if offset == 0 {
                    let _ = std::fs::remove_file(&partial);
                }
                return Err(self
                    .status_error(r, &format!("layer {}", layer.digest), response)
                    .await);
            }
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(status == StatusCode::PARTIAL_CONTENT)
                .write(true)
                .truncate(status != StatusCode::PARTIAL_CONTENT)
                .open(&partial)
                .await
                .map_err(|e| ImageError::io("cannot write", &partial, e))?;
            if status != StatusCode::PARTIAL_CONTENT && offset > 0 {
                // The registry ignored the range: start over.
                hasher = Sha256::new();
                offset = 0;
            }
            let mut body = response;
            let mut out = tokio::io::BufWriter::with_capacity(1 << 20, &mut file);
            loop {
                let chunk = match body.chunk().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = out.flush().await;
                        return Err(self.error(
                            r,
                            None,
                            format!(
                                "layer {} broke off after {} of {} bytes: {e}; pull again to resume",
                                layer.digest,
                                offset + downloaded,
                                layer.size
                            ),
                        ));
                    }
                };
                if offset + downloaded + chunk.len() as u64 > layer.size {
                    drop(out);
                    let _ = std::fs::remove_file(&partial);
                    return Err(self.error(
                        r,
                        None,
                        format!(
                            "layer {} is larger than the {} bytes its descriptor says; refused",
                            layer.digest, layer.size
                        ),
                    ));
                }
                hasher.update(&chunk);
                out.write_all(&chunk)
                    .await
                    .map_err(|e| ImageError::io("cannot write", &partial, e))?;
                downloaded += chunk.len() as u64;
                progress.layer_bytes(&layer.digest, chunk.len() as u64);
            }
            out.flush()
                .await
                .map_err(|e| ImageError::io("cannot write", &partial, e))?;
            file.sync_all()
                .await
                .map_err(|e| ImageError::io("cannot sync", &partial, e))?;
        }
        let total = offset + downloaded;
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if total != layer.size || actual != layer.digest {
            let _ = std::fs::remove_file(&partial);
            return Err(ImageError::DigestMismatch {
                what: format!("layer of {r} from {}", r.registry),
                expected: format!("{} ({} bytes)", layer.digest, layer.size),
                actual: format!("{actual} ({total} bytes)"),
            });
        }
        std::fs::rename(&partial, &dest).map_err(|e| ImageError::io("cannot stage", &dest, e))?;
        progress.layer_done(&layer.digest, false);
        Ok((downloaded, false))
    }
}

fn write_staged(dir: &Path, bytes: &[u8], media_type: &str) -> Result<BlobRef, ImageError> {
    let digest = sha256_digest(bytes);
    let path = blob_path(dir, &digest);
    std::fs::write(&path, bytes).map_err(|e| ImageError::io("cannot write", &path, e))?;
    Ok(BlobRef {
        digest,
        size: bytes.len() as u64,
        media_type: MediaType::from(media_type),
    })
}

/// Locks the partial download itself (created empty if missing); `None` when another process
/// holds it. The lock goes with the file: once it is renamed into place or removed, nothing is
/// left behind.
fn lock_partial(partial: &Path) -> Result<Option<nix::fcntl::Flock<std::fs::File>>, ImageError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(partial)
        .map_err(|e| ImageError::io("cannot open", partial, e))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err(_) => Ok(None),
    }
}

/// Hashes what a previous attempt left in `partial`; a file longer than `size` is discarded.
fn hash_prefix(partial: &PathBuf, size: u64) -> Result<(Sha256, u64), ImageError> {
    let mut hasher = Sha256::new();
    let mut file = match std::fs::File::open(partial) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((hasher, 0)),
        Err(e) => return Err(ImageError::io("cannot open", partial, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| ImageError::io("cannot inspect", partial, e))?
        .len();
    if len > size {
        drop(file);
        let _ = std::fs::remove_file(partial);
        return Ok((hasher, 0));
    }
    file.rewind()
        .map_err(|e| ImageError::io("cannot read", partial, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ImageError::io("cannot read", partial, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher, total))
}
