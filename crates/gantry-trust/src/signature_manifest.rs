//! The signature image cosign stores next to a signed image (cosign's "tag" scheme).
//!
//! For an image `repo@sha256:<hex>`, cosign pushes an OCI image manifest tagged
//! `sha256-<hex>.sig` into the same repository. Each layer is one signature: the layer blob is
//! the simple-signing payload ([`crate::simple_signing`]), the layer's
//! `dev.cosignproject.cosign/signature` annotation is the base64 ASN.1 DER ECDSA signature over
//! it. The config blob is a nearly empty image config whose `rootfs.diff_ids` list the payload
//! digests.
//!
//! [`SignatureSet`] parses such a manifest (bounded, strict about layer media types), lets the
//! caller attach the payload blobs it fetched, adds signatures, and writes the manifest, config
//! and blobs back for the caller to push. Registry I/O is the caller's.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::keys::{PublicKey, SigningKey};
use crate::simple_signing::{self, SimpleSigningPayload};
use crate::verify::Verification;

/// Media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation that carries the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// OCI image manifest media type (what cosign writes).
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker schema 2 manifest media type (accepted when reading).
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI image config media type.
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The prefix of every Sigstore bundle media type (`…bundle.v0.3+json`, `…bundle+json;version=0.3`).
pub const SIGSTORE_BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";

/// The largest signature manifest accepted.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// The most signatures (layers) one signature manifest may hold.
pub const MAX_SIGNATURES: usize = 256;
/// The largest payload blob accepted.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// How to sign in the format gantry reads, for error messages.
pub const LEGACY_SIGN_HINT: &str = "sign in the legacy format with `cosign sign --key cosign.key \
     --new-bundle-format=false --use-signing-config=false IMAGE@sha256:…`";

/// A signature manifest gantry cannot use, or a signature it cannot add.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature manifest is {size} bytes, more than the {MAX_MANIFEST_BYTES} allowed")]
    TooLarge { size: usize },
    #[error("the signature manifest is not valid JSON for an OCI image manifest: {0}")]
    Json(String),
    #[error("the signature manifest has schemaVersion {0}; only 2 is supported")]
    SchemaVersion(u64),
    #[error("the signature manifest has media type `{0}`, not an OCI image manifest")]
    ManifestMediaType(String),
    #[error(
        "the signatures use the Sigstore bundle format (media type `{media_type}`), the OCI 1.1 \
         referrers format cosign v3 writes by default; gantry does not support it yet: \
         {LEGACY_SIGN_HINT}"
    )]
    BundleFormat { media_type: String },
    #[error(
        "signature layer {index} has media type `{media_type}`; gantry reads only cosign \
         simple-signing signatures (`{SIMPLE_SIGNING_MEDIA_TYPE}`)"
    )]
    UnknownLayer { index: usize, media_type: String },
    #[error("signature layer {index} has no `{SIGNATURE_ANNOTATION}` annotation")]
    NoSignature { index: usize },
    #[error("{what} `{digest}` is not a sha256 digest (`sha256:` and 64 lowercase hex digits)")]
    BadDigest { what: String, digest: String },
    #[error("the signature manifest holds {0} signatures, more than the {MAX_SIGNATURES} allowed")]
    TooManySignatures(usize),
    #[error("there is no signature layer {0}")]
    NoLayer(usize),
    #[error("payload for signature layer {index} does not match it: {reason}")]
    PayloadMismatch { index: usize, reason: String },
    #[error("the payload is {0} bytes, more than the {MAX_PAYLOAD_BYTES} allowed")]
    PayloadTooLarge(usize),
    #[error(transparent)]
    Payload(#[from] simple_signing::PayloadError),
    #[error("the signature does not verify with key {0}; refusing to store it")]
    DoesNotVerify(String),
    #[error(transparent)]
    Key(#[from] crate::keys::KeyError),
    #[error("could not encode the signature manifest: {0}")]
    Encode(String),
}

/// `sha256:<hex>` → `sha256-<hex>.sig`, the tag cosign stores an image's signatures under.
pub fn signature_tag(image_digest: &str) -> Result<String, SignatureError> {
    let hex = sha256_hex(image_digest).ok_or_else(|| SignatureError::BadDigest {
        what: "image digest".into(),
        digest: image_digest.to_owned(),
    })?;
    Ok(format!("sha256-{hex}.sig"))
}

/// The hex part of a well-formed `sha256:<64 lowercase hex>` digest.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One signature: a layer of the signature manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLayer {
    /// Digest of the payload blob.
    pub digest: String,
    /// Size of the payload blob in bytes.
    pub size: u64,
    /// The base64 signature (the `dev.cosignproject.cosign/signature` annotation).
    pub signature: String,
    /// All the layer's annotations, the signature included (cosign may add a certificate,
    /// a transparency-log bundle, ...); kept as they are when the manifest is rewritten.
    pub annotations: BTreeMap<String, String>,
    payload: Option<Vec<u8>>,
}

impl SignatureLayer {
    /// The payload bytes, once attached with [`SignatureSet::attach_payload`] or added.
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }
}

/// The signatures of one image, as stored under its `sha256-<hex>.sig` tag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureSet {
    layers: Vec<SignatureLayer>,
}

/// What the caller pushes to store a [`SignatureSet`]: the payload blobs and the config blob
/// first, then the manifest under [`signature_tag`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureUpload {
    /// The manifest bytes (media type [`OCI_MANIFEST_MEDIA_TYPE`]).
    pub manifest: Vec<u8>,
    /// `sha256:` digest of `manifest`.
    pub manifest_digest: String,
    /// The config blob (media type [`OCI_CONFIG_MEDIA_TYPE`]).
    pub config: Vec<u8>,
    /// `sha256:` digest of `config`.
    pub config_digest: String,
    /// `(digest, bytes)` of each payload blob this set knows; payloads of layers read from an
    /// existing manifest and never attached are already in the registry and are not listed.
    pub payloads: Vec<(String, Vec<u8>)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: u64,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    config: RawDescriptor,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

fn is_bundle(media_type: &str) -> bool {
    media_type.starts_with(SIGSTORE_BUNDLE_MEDIA_TYPE_PREFIX)
}

impl SignatureSet {
    /// An empty set (an image with no signatures yet).
    pub fn new() -> SignatureSet {
        SignatureSet::default()
    }

    /// Parses a signature manifest fetched from `sha256-<hex>.sig`.
    pub fn parse(manifest: &[u8]) -> Result<SignatureSet, SignatureError> {
        if manifest.len() > MAX_MANIFEST_BYTES {
            return Err(SignatureError::TooLarge {
                size: manifest.len(),
            });
        }
        let raw: RawManifest =
            serde_json::from_slice(manifest).map_err(|e| SignatureError::Json(e.to_string()))?;
        for media_type in [raw.artifact_type.as_deref(), Some(&raw.config.media_type)]
            .into_iter()
            .flatten()
        {
            if is_bundle(media_type) {
                return Err(SignatureError::BundleFormat {
                    media_type: media_type.to_owned(),
                });
            }
        }
        if raw.schema_version != 2 {
            return Err(SignatureError::SchemaVersion(raw.schema_version));
        }
        if let Some(mt) = raw.media_type.as_deref()
            && mt != OCI_MANIFEST_MEDIA_TYPE
            && mt != DOCKER_MANIFEST_MEDIA_TYPE
        {
            return Err(SignatureError::ManifestMediaType(mt.to_owned()));
        }
        if raw.layers.len() > MAX_SIGNATURES {
            return Err(SignatureError::TooManySignatures(raw.layers.len()));
        }
        let mut layers = Vec::with_capacity(raw.layers.len());
        for (index, layer) in raw.layers.into_iter().enumerate() {
            if is_bundle(&layer.media_type) {
                return Err(SignatureError::BundleFormat {
                    media_type: layer.media_type,
                });
            }
            if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
                return Err(SignatureError::UnknownLayer {
                    index,
                    media_type: layer.media_type,
                });
            }
            if sha256_hex(&layer.digest).is_none() {
                return Err(SignatureError::BadDigest {
                    what: format!("signature layer {index}'s digest"),
                    digest: layer.digest,
                });
            }
            let annotations = layer.annotations.unwrap_or_default();
            let Some(signature) = annotations.get(SIGNATURE_ANNOTATION).cloned() else {
                return Err(SignatureError::NoSignature { index });
            };
            layers.push(SignatureLayer {
                digest: layer.digest,
                size: layer.size,
                signature,
                annotations,
                payload: None,
            });
        }
        Ok(SignatureSet { layers })
    }

    /// The signatures, in manifest order.
    pub fn layers(&self) -> &[SignatureLayer] {
        &self.layers
    }

    /// Whether the set holds no signature.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Attaches the payload blob fetched for layer `index`, after checking its size and digest.
    pub fn attach_payload(&mut self, index: usize, payload: Vec<u8>) -> Result<(), SignatureError> {
        let layer = self
            .layers
            .get_mut(index)
            .ok_or(SignatureError::NoLayer(index))?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(SignatureError::PayloadTooLarge(payload.len()));
        }
        if u64::try_from(payload.len()).ok() != Some(layer.size) {
            return Err(SignatureError::PayloadMismatch {
                index,
                reason: format!("{} bytes, the layer says {}", payload.len(), layer.size),
            });
        }
        let digest = sha256_digest(&payload);
        if digest != layer.digest {
            return Err(SignatureError::PayloadMismatch {
                index,
                reason: format!("digest {digest}, the layer says {}", layer.digest),
            });
        }
        layer.payload = Some(payload);
        Ok(())
    }

    /// Signs the payload for `docker_reference` at `image_digest` with `key` and adds it
    /// (see [`SignatureSet::add`]).
    pub fn sign(
        &mut self,
        key: &SigningKey,
        docker_reference: &str,
        image_digest: &str,
        annotations: Option<&BTreeMap<String, String>>,
    ) -> Result<(), SignatureError> {
        if sha256_hex(image_digest).is_none() {
            return Err(SignatureError::BadDigest {
                what: "image digest".into(),
                digest: image_digest.to_owned(),
            });
        }
        let payload = simple_signing::payload(docker_reference, image_digest, annotations);
        let signature = key.sign(&payload)?;
        self.add(payload, &signature, key.public_key())
    }

    /// Adds a signature (`signature`: ASN.1 DER or raw `r || s` over `payload`) made by
    /// `signer`. It must verify. A layer this key already signed for the same image is
    /// replaced (re-signing is idempotent); a layer whose payload was not attached is replaced
    /// only when it is byte-for-byte the same signature. Other keys' signatures are kept.
    pub fn add(
        &mut self,
        payload: Vec<u8>,
        signature: &[u8],
        signer: &PublicKey,
    ) -> Result<(), SignatureError> {
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(SignatureError::PayloadTooLarge(payload.len()));
        }
        let parsed = SimpleSigningPayload::parse(&payload)?;
        if !signer.verifies(&payload, signature) {
            return Err(SignatureError::DoesNotVerify(
                signer.id().short().to_owned(),
            ));
        }
        let image = parsed.critical.image.docker_manifest_digest;
        let digest = sha256_digest(&payload);
        let encoded = STANDARD.encode(signature);
        self.layers.retain(|layer| {
            if layer.digest == digest && layer.signature == encoded {
                return false;
            }
            let Some(old_payload) = layer.payload.as_deref() else {
                return true;
            };
            let same_image = SimpleSigningPayload::parse(old_payload)
                .is_ok_and(|p| p.critical.image.docker_manifest_digest == image);
            let same_key = STANDARD
                .decode(&layer.signature)
                .is_ok_and(|sig| signer.verifies(old_payload, &sig));
            !(same_image && same_key)
        });
        if self.layers.len() >= MAX_SIGNATURES {
            return Err(SignatureError::TooManySignatures(self.layers.len() + 1));
        }
        let mut annotations = BTreeMap::new();
        annotations.insert(SIGNATURE_ANNOTATION.to_owned(), encoded.clone());
        self.layers.push(SignatureLayer {
            digest,
            size: payload.len() as u64,
            signature: encoded,
            annotations,
            payload: Some(payload),
        });
        Ok(())
    }

    /// Verifies every signature against `image_digest` with `keys`, using the attached
    /// payloads (a layer whose payload was not attached is rejected).
    pub fn verify(&self, image_digest: &str, keys: &[PublicKey]) -> Verification {
        let missing: Vec<usize> = (0..self.layers.len())
            .filter(|&i| self.layers[i].payload.is_none())
            .collect();
        let present = self
            .layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.payload.as_deref().map(|p| (i, l, p)));
        let mut verification = crate::verify::verify_indexed(image_digest, present, keys);
        for index in missing {
            verification.rejected.push(crate::verify::Rejection {
                layer: index,
                reason: format!("signature layer {index}: its payload was not fetched"),
            });
        }
        verification.rejected.sort_by_key(|r| r.layer);
        verification
    }

    /// The manifest, config and payload blobs to push.
    pub fn to_upload(&self) -> Result<SignatureUpload, SignatureError> {
        let diff_ids: Vec<&str> = self.layers.iter().map(|l| l.digest.as_str()).collect();
        let history: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|_| serde_json::json!({ "created": "0001-01-01T00:00:00Z" }))
            .collect();
        let config = serde_json::json!({
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": history,
            "os": "",
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "config": {},
        });
        let config =
            serde_json::to_vec(&config).map_err(|e| SignatureError::Encode(e.to_string()))?;
        let config_digest = sha256_digest(&config);
        let layers: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
                    "size": l.size,
                    "digest": l.digest,
                    "annotations": l.annotations,
                })
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": OCI_CONFIG_MEDIA_TYPE,
                "size": config.len(),
                "digest": config_digest,
            },
            "layers": layers,
        });
        let manifest =
            serde_json::to_vec(&manifest).map_err(|e| SignatureError::Encode(e.to_string()))?;
        let payloads = self
            .layers
            .iter()
            .filter_map(|l| l.payload.clone().map(|p| (l.digest.clone(), p)))
            .collect();
        Ok(SignatureUpload {
            manifest_digest: sha256_digest(&manifest),
            manifest,
            config,
            config_digest,
            payloads,
        })
    }
}
