//! Pushing an image: every blob the registry lacks is uploaded (monolithic upload, streamed
//! from the store), then the manifest's exact bytes, so the digest in the registry is the
//! digest in the store.

use std::path::PathBuf;

use futures::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use super::client::RegistryClient;
use super::reference::RegistryRef;
use crate::{ImageError, ImageStore};

/// What a push reports as it goes; every method has a no-op default.
pub trait PushProgress: Send + Sync {
    fn blob_start(&self, _digest: &str, _size: u64, _exists: bool) {}
    fn blob_bytes(&self, _digest: &str, _n: u64) {}
    fn blob_done(&self, _digest: &str) {}
}

/// Reports nothing.
pub struct NoPushProgress;
impl PushProgress for NoPushProgress {}

/// The outcome of a push.
#[derive(Clone, Debug)]
pub struct Pushed {
    /// `registry/repo:tag@sha256:…`.
    pub pinned: RegistryRef,
    pub uploaded_bytes: u64,
    pub uploaded_blobs: usize,
    /// Blobs the registry already had.
    pub existing_blobs: usize,
}

/// A blob to upload: its digest, size and where its bytes are.
pub(crate) struct LocalBlob {
    pub(crate) digest: String,
    pub(crate) size: u64,
    pub(crate) source: BlobSource,
}

pub(crate) enum BlobSource {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl RegistryClient {
    /// Pushes the stored image `local` (name or digest) to `target` (`registry/repo:tag`).
    pub async fn push(
        &self,
        store: &ImageStore,
        local: &str,
        target: &str,
        progress: &dyn PushProgress,
    ) -> Result<Pushed, ImageError> {
        let r = RegistryRef::parse(target)?;
        let info = store.resolve(local)?;
        if let Some(d) = &r.digest
            && *d != info.digest
        {
            return Err(ImageError::PinMismatch {
                reference: target.to_string(),
                name: local.to_string(),
                pinned: d.clone(),
                actual: info.digest.clone(),
            });
        }
        let parts = store.parts(&info.digest)?;
        let blobs: Vec<LocalBlob> = parts
            .blobs
            .into_iter()
            .map(|(digest, size, path)| LocalBlob {
                digest,
                size,
                source: BlobSource::File(path),
            })
            .collect();
        let (uploaded_bytes, uploaded_blobs, existing_blobs) =
            self.push_blobs(&r, blobs, progress).await?;
        let tag = r.tag.clone().unwrap_or_else(|| info.digest.clone());
        self.push_manifest(&r, &tag, &parts.manifest, &parts.media_type)
            .await?;
        Ok(Pushed {
            pinned: r.with_digest(&info.digest),
            uploaded_bytes,
            uploaded_blobs,
            existing_blobs,
        })
    }

    /// Uploads the blobs the registry lacks, a few at a time.
    pub(crate) async fn push_blobs(
        &self,
        r: &RegistryRef,
        blobs: Vec<LocalBlob>,
        progress: &dyn PushProgress,
    ) -> Result<(u64, usize, usize), ImageError> {
        let parallel = self.opts.parallel_layers.max(1);
        type BlobFuture<'a> = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Option<u64>, ImageError>> + Send + 'a>,
        >;
        let futures: Vec<BlobFuture<'_>> = blobs
            .iter()
            .map(|b| Box::pin(self.push_blob(r, b, progress)) as BlobFuture<'_>)
            .collect();
        let results: Vec<Result<Option<u64>, ImageError>> = futures::stream::iter(futures)
            .buffer_unordered(parallel)
            .collect()
            .await;
        let (mut bytes, mut uploaded, mut existing) = (0, 0, 0);
        for result in results {
            match result? {
                Some(n) => {
                    bytes += n;
                    uploaded += 1;
                }
                None => existing += 1,
            }
        }
        Ok((bytes, uploaded, existing))
    }

    /// Uploads one blob unless the registry has it; `Some(bytes)` when it uploaded.
    async fn push_blob(
        &self,
        r: &RegistryRef,
        blob: &LocalBlob,
        progress: &dyn PushProgress,
    ) -> Result<Option<u64>, ImageError> {
        let head = format!("/v2/{}/blobs/{}", r.repository, blob.digest);
        let response = self
            .send(r, "pull,push", &|c, base| {
                Ok(RegistryClient::request(c, Method::HEAD, base, &head))
            })
            .await?;
        if response.status().is_success() {
            progress.blob_start(&blob.digest, blob.size, true);
            progress.blob_done(&blob.digest);
            return Ok(None);
        }
        progress.blob_start(&blob.digest, blob.size, false);
        let start = format!("/v2/{}/blobs/uploads/", r.repository);
        let response = self
            .send(r, "pull,push", &|c, base| {
                Ok(RegistryClient::request(c, Method::POST, base, &start)
                    .header(CONTENT_LENGTH, "0"))
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self
                .status_error(
                    r,
                    &format!("starting the upload of {}", blob.digest),
                    response,
                )
                .await);
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.error(r, None, "the upload answer has no Location".to_string()))?
            .to_string();
        if location.starts_with("http://") || location.starts_with("https://") {
            self.check_url(r, &location)?;
        }
        let digest = blob.digest.clone();
        let response = self
            .send(r, "pull,push", &|c, base| {
                let mut url = if location.starts_with("http://") || location.starts_with("https://")
                {
                    location.clone()
                } else {
                    format!("{base}{location}")
                };
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("digest=");
                url.push_str(&digest);
                let body = match &blob.source {
                    BlobSource::Bytes(b) => reqwest::Body::from(b.clone()),
                    BlobSource::File(path) => {
                        let file = std::fs::File::open(path)
                            .map_err(|e| ImageError::io("cannot open", path, e))?;
                        let stream = tokio_util::io::ReaderStream::with_capacity(
                            tokio::fs::File::from_std(file),
                            1 << 20,
                        );
                        reqwest::Body::wrap_stream(stream)
                    }
                };
                Ok(c.put(url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, blob.size.to_string())
                    .body(body))
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self
                .status_error(r, &format!("uploading {}", blob.digest), response)
                .await);
        }
        progress.blob_bytes(&blob.digest, blob.size);
        progress.blob_done(&blob.digest);
        Ok(Some(blob.size))
    }

    /// Puts a manifest's exact bytes under `tag_or_digest`; checks the digest the registry
    /// computed.
    pub async fn push_manifest(
        &self,
        r: &RegistryRef,
        tag_or_digest: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String, ImageError> {
        let path = format!("/v2/{}/manifests/{tag_or_digest}", r.repository);
        let body = bytes.to_vec();
        let response = self
            .send(r, "pull,push", &|c, base| {
                Ok(RegistryClient::request(c, Method::PUT, base, &path)
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone()))
            })
            .await?;
        if response.status() != StatusCode::CREATED && !response.status().is_success() {
            return Err(self
                .status_error(r, &format!("putting manifest {tag_or_digest}"), response)
                .await);
        }
        let digest = crate::blob::sha256_digest(bytes);
        if let Some(theirs) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && theirs != digest
        {
            return Err(ImageError::DigestMismatch {
                what: format!("manifest pushed to {r}"),
                expected: digest,
                actual: theirs.to_string(),
            });
        }
        Ok(digest)
    }
}
