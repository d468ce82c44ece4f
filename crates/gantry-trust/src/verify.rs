//! Verifying cosign signatures of one image against a set of public keys.
//!
//! Per signature layer, in this order: the fetched payload's size and SHA-256 match the
//! layer; the signature (base64 of ASN.1 DER, or of raw `r || s`) verifies over the payload
//! bytes with one of the keys; the payload is a simple-signing document of type
//! `cosign container image signature`; and its `docker-manifest-digest` is the image being
//! checked. The last check is what refuses a signature copied from another image, or a tag
//! re-pointed at an image the key never signed.
//!
//! The `docker-reference` is not compared: an image copied to another registry keeps its
//! digest and its signatures (cosign does the same).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyId, PublicKey};
use crate::signature_manifest::{MAX_PAYLOAD_BYTES, SignatureLayer, sha256_digest};
use crate::simple_signing::{COSIGN_SIGNATURE_TYPE, SimpleSigningPayload};

/// The outcome of checking an image's signatures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Keys with at least one valid signature for this image, in key order, without repeats.
    pub verified_by: Vec<KeyId>,
    /// Signatures that did not count, with the reason.
    pub rejected: Vec<Rejection>,
}

/// A signature that did not count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Index of the layer in the signature manifest.
    pub layer: usize,
    /// A sentence saying why.
    pub reason: String,
}

impl Verification {
    /// Whether `key` signed the image.
    pub fn is_verified_by(&self, key: &KeyId) -> bool {
        self.verified_by.contains(key)
    }
}

/// Verifies signature layers, each paired with the payload bytes fetched for it (by digest),
/// for the image `image_digest` (`sha256:<hex>`) with `keys`. Layer indexes in rejections
/// count from 0 in iteration order.
pub fn verify<'a>(
    image_digest: &str,
    signatures: impl IntoIterator<Item = (&'a SignatureLayer, &'a [u8])>,
    keys: &[PublicKey],
) -> Verification {
    verify_indexed(
        image_digest,
        signatures
            .into_iter()
            .enumerate()
            .map(|(i, (layer, payload))| (i, layer, payload)),
        keys,
    )
}

pub(crate) fn verify_indexed<'a>(
    image_digest: &str,
    signatures: impl IntoIterator<Item = (usize, &'a SignatureLayer, &'a [u8])>,
    keys: &[PublicKey],
) -> Verification {
    let mut verification = Verification::default();
    let mut verified = vec![false; keys.len()];
    for (index, layer, payload) in signatures {
        match check(image_digest, layer, payload, keys) {
            Ok(k) => {
                if let Some(slot) = verified.get_mut(k) {
                    *slot = true;
                }
            }
            Err(reason) => verification.rejected.push(Rejection {
                layer: index,
                reason: format!("signature layer {index}: {reason}"),
            }),
        }
    }
    verification.verified_by = keys
        .iter()
        .zip(verified)
        .filter(|(_, ok)| *ok)
        .map(|(k, _)| k.id().clone())
        .collect();
    verification
}

fn key_list(keys: &[PublicKey]) -> String {
    match keys {
        [] => "no key (none was given)".to_owned(),
        [one] => format!("key {}", one.id().short()),
        many => format!(
            "any of the keys {}",
            many.iter()
                .map(|k| k.id().short())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The index of the key that signed this layer for this image, or why it does not count.
fn check(
    image_digest: &str,
    layer: &SignatureLayer,
    payload: &[u8],
    keys: &[PublicKey],
) -> Result<usize, String> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "the payload is {} bytes, more than the {MAX_PAYLOAD_BYTES} allowed",
            payload.len()
        ));
    }
    if u64::try_from(payload.len()).ok() != Some(layer.size) {
        return Err(format!(
            "payload changed: it is {} bytes, the signature layer says {}",
            payload.len(),
            layer.size
        ));
    }
    let digest = sha256_digest(payload);
    if digest != layer.digest {
        return Err(format!(
            "payload changed: digest {digest} does not match the signature layer {}",
            layer.digest
        ));
    }
    let signature = STANDARD
        .decode(layer.signature.trim())
        .map_err(|e| format!("the signature annotation is not base64: {e}"))?;
    let Some(k) = keys
        .iter()
        .position(|key| key.verifies(payload, &signature))
    else {
        return Err(format!("no signature verifies with {}", key_list(keys)));
    };
    let by = keys[k].id().short();
    let parsed =
        SimpleSigningPayload::parse(payload).map_err(|e| format!("signature by key {by}: {e}"))?;
    if parsed.critical.kind != COSIGN_SIGNATURE_TYPE {
        return Err(format!(
            "signature by key {by} has type \"{}\", not \"{COSIGN_SIGNATURE_TYPE}\"",
            parsed.critical.kind
        ));
    }
    let signed = &parsed.critical.image.docker_manifest_digest;
    if signed != image_digest {
        return Err(format!(
            "signature by key {by} is for {signed}, not this image {image_digest}"
        ));
    }
    Ok(k)
}
