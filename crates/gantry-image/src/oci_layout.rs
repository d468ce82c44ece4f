//! OCI image layouts (a directory, or a tar of one): every blob is checked against the digest
//! and size of the descriptor that names it before anything is unpacked.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use oci_spec::image::{Arch, Descriptor, ImageIndex, ImageManifest, MediaType, Os};

use crate::ImageError;
use crate::blob::{BlobRef, MAX_JSON_BLOB, blob_path, copy_hashed, read_capped};
use crate::compression::HashingReader;
use crate::import::StagedImage;
use crate::reference::normalize_reference;
use crate::unpack::UnpackLimits;

pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd and `docker save` (25+) put the full reference here; `ref.name` may hold a tag only.
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Indexes nest rarely; a deeper chain is malformed or hostile.
const MAX_INDEX_DEPTH: usize = 4;

fn invalid(layout: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::InvalidArchive {
        path: layout.to_path_buf(),
        reason: reason.into(),
    }
}

fn is_index(media_type: &MediaType) -> bool {
    *media_type == MediaType::ImageIndex || media_type.to_string() == DOCKER_MANIFEST_LIST
}

fn is_manifest(media_type: &MediaType) -> bool {
    *media_type == MediaType::ImageManifest || media_type.to_string() == DOCKER_MANIFEST
}

fn descriptor_names(descriptor: &Descriptor) -> Vec<String> {
    let Some(annotations) = descriptor.annotations() else {
        return Vec::new();
    };
    [CONTAINERD_NAME, REF_NAME]
        .iter()
        .filter_map(|key| annotations.get(*key))
        .filter_map(|name| normalize_reference(name).ok())
        .collect()
}

/// Where blobs come from and whether they may be moved rather than copied.
struct Source<'a> {
    layout: &'a Path,
    /// True when the layout was extracted into our own scratch space.
    movable: bool,
}

impl Source<'_> {
    fn blob_file(&self, descriptor: &Descriptor) -> Result<std::path::PathBuf, ImageError> {
        let hex = descriptor.as_digest_sha256().ok_or_else(|| {
            ImageError::Unsupported(format!(
                "{}: blob {} uses a digest algorithm other than sha256, which this store does not support",
                self.layout.display(),
                descriptor.digest()
            ))
        })?;
        let path = self.layout.join("blobs/sha256").join(hex);
        if !path.is_file() {
            return Err(invalid(
                self.layout,
                format!("blob {} is missing from blobs/sha256", descriptor.digest()),
            ));
        }
        Ok(path)
    }

    fn mismatch(&self, descriptor: &Descriptor, expected: String, actual: String) -> ImageError {
        ImageError::DigestMismatch {
            what: format!("blob {} in {}", descriptor.digest(), self.layout.display()),
            expected,
            actual,
        }
    }

    /// Reads a small JSON blob and checks it against its descriptor.
    fn read_json_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_file(descriptor)?;
        let bytes = read_capped(&path, MAX_JSON_BLOB)?;
        self.verify(
            descriptor,
            &crate::blob::sha256_digest(&bytes),
            bytes.len() as u64,
        )?;
        Ok(bytes)
    }

    fn verify(&self, descriptor: &Descriptor, digest: &str, size: u64) -> Result<(), ImageError> {
        if digest != descriptor.digest().as_ref() {
            return Err(self.mismatch(
                descriptor,
                descriptor.digest().to_string(),
                digest.to_string(),
            ));
        }
        if size != descriptor.size() {
            return Err(self.mismatch(
                descriptor,
                format!("{} bytes", descriptor.size()),
                format!("{size} bytes"),
            ));
        }
        Ok(())
    }

    /// Places the blob of `descriptor` in `blobs` after checking its digest and size.
    fn stage_blob(
        &self,
        descriptor: &Descriptor,
        blobs: &Path,
        cap: u64,
    ) -> Result<BlobRef, ImageError> {
        let blob = BlobRef {
            digest: descriptor.digest().to_string(),
            size: descriptor.size(),
            media_type: descriptor.media_type().clone(),
        };
        let dest = blob_path(blobs, &blob.digest);
        if dest.exists() {
            return Ok(blob);
        }
        if descriptor.size() > cap {
            return Err(ImageError::LimitExceeded(format!(
                "blob {} of {} declares {} bytes, over the unpack limit of {cap} bytes",
                descriptor.digest(),
                self.layout.display(),
                descriptor.size()
            )));
        }
        let src = self.blob_file(descriptor)?;
        let file = fs::File::open(&src).map_err(|e| ImageError::io("cannot open", &src, e))?;
        // Reading one byte past the declared size is enough to tell a size mismatch.
        let limited = file.take(descriptor.size().saturating_add(1));
        if self.movable {
            let mut hashing = HashingReader::new(limited);
            io::copy(&mut hashing, &mut io::sink())
                .map_err(|e| ImageError::io("cannot read", &src, e))?;
            let (digest, size) = hashing.finish();
            self.verify(descriptor, &digest, size)?;
            fs::rename(&src, &dest).map_err(|e| ImageError::io("cannot stage", &dest, e))?;
        } else {
            let partial = blobs.join(format!("{}.partial", blob.hex()));
            let (digest, size) = copy_hashed(limited, &partial, u64::MAX)?;
            self.verify(descriptor, &digest, size)?;
            fs::rename(&partial, &dest).map_err(|e| ImageError::io("cannot stage", &dest, e))?;
        }
        Ok(blob)
    }
}

fn linux_amd64(descriptor: &Descriptor) -> bool {
    descriptor
        .platform()
        .as_ref()
        .is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == Arch::Amd64)
}

/// Picks the image to import from a layout's index: the one named `wanted` if any, else the
/// first image; an image index is followed to its linux/amd64 manifest.
pub(crate) fn stage(
    layout: &Path,
    movable: bool,
    wanted: Option<&str>,
    blobs: &Path,
    limits: &UnpackLimits,
) -> Result<StagedImage, ImageError> {
    let source = Source { layout, movable };
    let marker = read_capped(&layout.join("oci-layout"), 1 << 20)?;
    let marker: serde_json::Value = serde_json::from_slice(&marker)
        .map_err(|e| ImageError::json(format!("{}/oci-layout", layout.display()), e))?;
    if !marker
        .get("imageLayoutVersion")
        .is_some_and(|v| v.is_string())
    {
        return Err(invalid(layout, "oci-layout has no imageLayoutVersion"));
    }
    let index_bytes = read_capped(&layout.join("index.json"), MAX_JSON_BLOB)?;
    let index: ImageIndex = serde_json::from_slice(&index_bytes)
        .map_err(|e| ImageError::json(format!("{}/index.json", layout.display()), e))?;
    let images: Vec<&Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| is_manifest(d.media_type()) || is_index(d.media_type()))
        .collect();
    let top = wanted
        .and_then(|w| {
            images
                .iter()
                .find(|d| descriptor_names(d).iter().any(|n| n == w))
        })
        .or_else(|| {
            images
                .iter()
                .find(|d| is_index(d.media_type()) || d.platform().is_none() || linux_amd64(d))
        })
        .or_else(|| images.first())
        .copied()
        .ok_or_else(|| invalid(layout, "index.json lists no image manifest"))?;
    let name = wanted
        .map(str::to_string)
        .or_else(|| descriptor_names(top).into_iter().next());

    let mut descriptor = top.clone();
    let mut depth = 0;
    while is_index(descriptor.media_type()) {
        depth += 1;
        if depth > MAX_INDEX_DEPTH {
            return Err(invalid(layout, "image indexes nest too deeply"));
        }
        let bytes = source.read_json_blob(&descriptor)?;
        let nested: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::json(format!("image index {}", descriptor.digest()), e))?;
        let manifests = nested.manifests();
        descriptor = manifests
            .iter()
            .find(|d| linux_amd64(d))
            .or_else(|| match manifests.as_slice() {
                [only] if only.platform().is_none() => Some(only),
                _ => None,
            })
            .cloned()
            .ok_or_else(|| {
                invalid(
                    layout,
                    format!(
                        "image index {} has no linux/amd64 image",
                        descriptor.digest()
                    ),
                )
            })?;
    }

    let manifest_bytes = source.read_json_blob(&descriptor)?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| ImageError::json(format!("image manifest {}", descriptor.digest()), e))?;
    let config_type = manifest.config().media_type();
    if *config_type != MediaType::ImageConfig && config_type.to_string() != DOCKER_CONFIG {
        return Err(invalid(
            layout,
            format!(
                "manifest {} is not a container image (config media type {config_type})",
                descriptor.digest()
            ),
        ));
    }
    let manifest_blob = source.stage_blob(&descriptor, blobs, MAX_JSON_BLOB)?;
    let config = source.stage_blob(manifest.config(), blobs, MAX_JSON_BLOB)?;
    let mut layers = Vec::with_capacity(manifest.layers().len());
    for layer in manifest.layers() {
        layers.push(source.stage_blob(layer, blobs, limits.max_total_bytes)?);
    }
    Ok(StagedImage {
        layers,
        config: Some(config),
        manifest: Some(manifest_blob),
        name,
    })
}
