//! Cosign's signature storage, as bytes: the signature manifest under the tag
//! `sha256-<hex>.sig` and the blobs it names. Parsing and verifying them is `gantry-trust`'s
//! job; this module moves them between registries and the image store.

use serde::{Deserialize, Serialize};

use super::client::{RegistryClient, read_limited};
use super::push::{BlobSource, LocalBlob, NoPushProgress};
use super::reference::RegistryRef;
use crate::ImageError;
use crate::blob::sha256_digest;
use crate::reference::sha256_hex;

/// A signature payload or config is tiny; anything larger is not one.
const MAX_SIGNATURE_BLOB: usize = 1 << 20;
/// A signature manifest names a handful of signatures.
const MAX_SIGNATURE_LAYERS: usize = 256;

/// A cosign signature manifest and the blobs it names, each verified against its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureArtifacts {
    /// Where they were found (`registry/repo`).
    pub source: String,
    /// The manifest's exact bytes.
    pub manifest: Vec<u8>,
    /// `(digest, bytes)` of the config and every layer (payload) the manifest names.
    pub blobs: Vec<(String, Vec<u8>)>,
}

impl SignatureArtifacts {
    /// The bytes of the blob `digest`, if present.
    pub fn blob(&self, digest: &str) -> Option<&[u8]> {
        self.blobs
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, b)| b.as_slice())
    }
}

/// The tag cosign stores the signatures of `digest` under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> Result<String, ImageError> {
    let hex = sha256_hex(digest).ok_or_else(|| ImageError::InvalidReference {
        reference: digest.to_string(),
        reason: "expected sha256:<64 hex characters>".into(),
    })?;
    Ok(format!("sha256-{hex}.sig"))
}

#[derive(Deserialize)]
struct Manifest {
    config: Option<Desc>,
    #[serde(default)]
    layers: Vec<Desc>,
}

#[derive(Deserialize)]
struct Desc {
    digest: String,
    size: u64,
}

impl RegistryClient {
    /// The signatures stored for the image `digest` in `r`'s repository; `None` when there are
    /// none (no `.sig` tag).
    pub async fn fetch_signatures(
        &self,
        r: &RegistryRef,
        digest: &str,
    ) -> Result<Option<SignatureArtifacts>, ImageError> {
        let tag = signature_tag(digest)?;
        let Some(fetched) = self.fetch_manifest_at(r, &tag).await? else {
            return Ok(None);
        };
        let manifest: Manifest = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| ImageError::json(format!("signature manifest {tag} of {r}"), e))?;
        if manifest.layers.len() > MAX_SIGNATURE_LAYERS {
            return Err(self.error(
                r,
                None,
                format!(
                    "the signature manifest {tag} names {} layers; refused",
                    manifest.layers.len()
                ),
            ));
        }
        let mut blobs = Vec::new();
        for desc in manifest.config.iter().chain(manifest.layers.iter()) {
            if desc.size > MAX_SIGNATURE_BLOB as u64 {
                return Err(self.error(
                    r,
                    None,
                    format!(
                        "signature blob {} is {} bytes; refused",
                        desc.digest, desc.size
                    ),
                ));
            }
            if blobs
                .iter()
                .any(|(d, _): &(String, Vec<u8>)| *d == desc.digest)
            {
                continue;
            }
            let bytes = self
                .fetch_blob_bytes(r, &desc.digest, MAX_SIGNATURE_BLOB)
                .await?;
            blobs.push((desc.digest.clone(), bytes));
        }
        Ok(Some(SignatureArtifacts {
            source: r.repository_path(),
            manifest: fetched.bytes,
            blobs,
        }))
    }

    /// Stores signature artifacts for the image `digest` in `r`'s repository (replacing the
    /// `.sig` tag).
    pub async fn push_signatures(
        &self,
        r: &RegistryRef,
        digest: &str,
        artifacts: &SignatureArtifacts,
    ) -> Result<(), ImageError> {
        let tag = signature_tag(digest)?;
        let blobs = artifacts
            .blobs
            .iter()
            .map(|(d, bytes)| {
                if sha256_digest(bytes) != *d {
                    return Err(ImageError::DigestMismatch {
                        what: format!("signature blob for {r}"),
                        expected: d.clone(),
                        actual: sha256_digest(bytes),
                    });
                }
                Ok(LocalBlob {
                    digest: d.clone(),
                    size: bytes.len() as u64,
                    source: BlobSource::Bytes(bytes.clone()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.push_blobs(r, blobs, &NoPushProgress).await?;
        self.push_manifest(r, &tag, &artifacts.manifest, super::OCI_MANIFEST)
            .await?;
        Ok(())
    }

    /// True when the registry's referrers API lists a Sigstore bundle (cosign v3's default
    /// format) for `digest`: used to say why no `.sig` signature was found.
    pub async fn has_sigstore_bundle(&self, r: &RegistryRef, digest: &str) -> bool {
        let path = format!("/v2/{}/referrers/{digest}", r.repository);
        let Ok(response) = self
            .send(r, "pull", &|c, base| {
                Ok(RegistryClient::request(
                    c,
                    reqwest::Method::GET,
                    base,
                    &path,
                ))
            })
            .await
        else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        let Ok(body) = read_limited(response, MAX_SIGNATURE_BLOB).await else {
            return false;
        };
        String::from_utf8_lossy(&body).contains("application/vnd.dev.sigstore.bundle")
    }
}
