//! Signing an image and checking its signatures, the way `gantry image sign` and the trust
//! policy use this crate (the registry I/O is replaced by passing the bytes around).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gantry_trust::signature_manifest::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE};
use gantry_trust::{
    PublicKey, SignatureError, SignatureSet, SigningKey, generate_key_pair, payload, sha256_digest,
    signature_tag, verify,
};
use serde_json::Value;

const REPO: &str = "localhost:5000/team/model";

fn digest(seed: &str) -> String {
    sha256_digest(seed.as_bytes())
}

fn new_key() -> SigningKey {
    let pair = generate_key_pair().unwrap();
    SigningKey::from_pem(&pair.private_pem).unwrap()
}

/// What a registry would hold after `gantry image sign`: the pushed manifest, read back, with
/// the payload blobs fetched by digest and attached.
fn round_trip(set: &SignatureSet) -> SignatureSet {
    let upload = set.to_upload().unwrap();
    let mut fetched = SignatureSet::parse(&upload.manifest).unwrap();
    let blobs: BTreeMap<String, Vec<u8>> = upload.payloads.into_iter().collect();
    for i in 0..fetched.layers().len() {
        let blob = blobs[&fetched.layers()[i].digest].clone();
        fetched.attach_payload(i, blob).unwrap();
    }
    fetched
}

#[test]
fn a_signed_image_verifies_with_the_signers_public_key() {
    let key = new_key();
    let image = digest("image");
    let mut set = SignatureSet::new();
    set.sign(&key, REPO, &image, None).unwrap();

    let stored = round_trip(&set);
    let verification = stored.verify(&image, &[key.public_key().clone()]);
    assert_eq!(
        verification.verified_by,
        vec![key.public_key().id().clone()]
    );
    assert!(verification.rejected.is_empty(), "{verification:?}");
}

#[test]
fn the_payload_is_cosigns_byte_layout() {
    let image = format!("sha256:{}", "ab".repeat(32));
    let bytes = payload(REPO, &image, None);
    let expected = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{REPO}"}},"image":{{"docker-manifest-digest":"{image}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    assert_eq!(String::from_utf8(bytes).unwrap(), expected);

    let mut annotations = BTreeMap::new();
    annotations.insert("team".to_owned(), "fraud <ml>".to_owned());
    annotations.insert("build".to_owned(), "42".to_owned());
    let bytes = String::from_utf8(payload(REPO, &image, Some(&annotations))).unwrap();
    assert!(
        bytes.ends_with(r#""optional":{"build":"42","team":"fraud \u003cml\u003e"}}"#),
        "{bytes}"
    );
}

#[test]
fn the_signature_image_is_laid_out_like_cosigns() {
    let key = new_key();
    let image = digest("image");
    let mut set = SignatureSet::new();
    set.sign(&key, REPO, &image, None).unwrap();
    let upload = set.to_upload().unwrap();

    assert_eq!(
        signature_tag(&image).unwrap(),
        format!("sha256-{}.sig", &image[7..])
    );
    let manifest: Value = serde_json::from_slice(&upload.manifest).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(manifest["config"]["digest"], upload.config_digest.as_str());
    assert_eq!(manifest["config"]["size"], upload.config.len());
    let layer = &manifest["layers"][0];
    let payload_bytes = payload(REPO, &image, None);
    assert_eq!(layer["mediaType"], SIMPLE_SIGNING_MEDIA_TYPE);
    assert_eq!(layer["digest"], sha256_digest(&payload_bytes).as_str());
    assert_eq!(layer["size"], payload_bytes.len());
    let signature = STANDARD
        .decode(layer["annotations"][SIGNATURE_ANNOTATION].as_str().unwrap())
        .unwrap();
    assert!(key.public_key().verifies(&payload_bytes, &signature));

    let config: Value = serde_json::from_slice(&upload.config).unwrap();
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(config["rootfs"]["diff_ids"][0], layer["digest"]);
    assert_eq!(config["created"], "0001-01-01T00:00:00Z");
    assert_eq!(
        upload.payloads,
        vec![(sha256_digest(&payload_bytes), payload_bytes)]
    );
    assert_eq!(upload.manifest_digest, sha256_digest(&upload.manifest));
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let signer = new_key();
    let stranger = new_key();
    let image = digest("image");
    let mut set = SignatureSet::new();
    set.sign(&signer, REPO, &image, None).unwrap();

    let verification = round_trip(&set).verify(&image, &[stranger.public_key().clone()]);
    assert!(verification.verified_by.is_empty());
    let reason = &verification.rejected[0].reason;
    assert!(
        reason.contains(&format!(
            "no signature verifies with key {}",
            stranger.public_key().id().short()
        )),
        "{reason}"
    );
}

#[test]
fn a_signature_copied_from_another_image_is_refused() {
    let key = new_key();
    let signed_image = digest("signed");
    let other_image = digest("unsigned");
    let mut set = SignatureSet::new();
    set.sign(&key, REPO, &signed_image, None).unwrap();

    // Someone pushes the signed image's `.sig` manifest under the other image's tag.
    let verification = round_trip(&set).verify(&other_image, &[key.public_key().clone()]);
    assert!(verification.verified_by.is_empty());
    let reason = &verification.rejected[0].reason;
    assert!(
        reason.contains(&format!(
            "signature by key {} is for {signed_image}, not this image {other_image}",
            key.public_key().id().short()
        )),
        "{reason}"
    );
}

#[test]
fn a_re_pointed_tag_fails_because_the_signed_digest_is_not_the_images() {
    // `team/model:prod` was signed at digest A; the tag now points at B. The caller resolves
    // the tag to B and looks up `sha256-B.sig`, where someone copied A's signatures.
    let key = new_key();
    let a = digest("release-1");
    let b = digest("tampered");
    let mut set = SignatureSet::new();
    set.sign(&key, REPO, &a, None).unwrap();
    let stored = round_trip(&set);
    let pairs: Vec<_> = stored
        .layers()
        .iter()
        .map(|l| (l, l.payload().unwrap()))
        .collect();
    let verification = verify(&b, pairs, &[key.public_key().clone()]);
    assert!(verification.verified_by.is_empty());
    assert!(
        verification.rejected[0]
            .reason
            .contains(&format!("is for {a}"))
    );
}

#[test]
fn a_changed_payload_is_refused() {
    let key = new_key();
    let image = digest("image");
    let mut set = SignatureSet::new();
    set.sign(&key, REPO, &image, None).unwrap();
    let upload = set.to_upload().unwrap();
    let stored = SignatureSet::parse(&upload.manifest).unwrap();
    let layer = &stored.layers()[0];

    // Same length, one byte different: the digest check catches it.
    let mut changed = upload.payloads[0].1.clone();
    let at = changed.iter().position(|&b| b == b'l').unwrap();
    changed[at] = b'L';
    let verification = verify(
        &image,
        [(layer, changed.as_slice())],
        &[key.public_key().clone()],
    );
    assert!(verification.verified_by.is_empty());
    let reason = &verification.rejected[0].reason;
    assert!(reason.contains("payload changed: digest"), "{reason}");
    assert!(reason.contains(&format!(
        "does not match the signature layer {}",
        layer.digest
    )));

    // Attaching it is refused too.
    let mut stored = stored.clone();
    assert!(matches!(
        stored.attach_payload(0, changed),
        Err(SignatureError::PayloadMismatch { index: 0, .. })
    ));
    // And a layer whose payload was never fetched does not count.
    let verification = stored.verify(&image, &[key.public_key().clone()]);
    assert!(verification.rejected[0].reason.contains("not fetched"));
}

#[test]
fn re_signing_with_the_same_key_replaces_and_another_key_appends() {
    let alice = new_key();
    let bob = new_key();
    let image = digest("image");
    let mut set = SignatureSet::new();
    set.sign(&alice, REPO, &image, None).unwrap();
    let mut stored = round_trip(&set);
    let mut annotations = BTreeMap::new();
    annotations.insert("run".to_owned(), "2".to_owned());
    stored
        .sign(&alice, REPO, &image, Some(&annotations))
        .unwrap();
    assert_eq!(
        stored.layers().len(),
        1,
        "alice's old signature is replaced"
    );
    stored.sign(&bob, REPO, &image, None).unwrap();
    assert_eq!(stored.layers().len(), 2);

    // Without the payloads fetched, an identical re-signature is still recognized.
    let upload = stored.to_upload().unwrap();
    let mut bare = SignatureSet::parse(&upload.manifest).unwrap();
    bare.sign(&bob, REPO, &image, None).unwrap();
    assert_eq!(bare.layers().len(), 2);

    let both = round_trip(&stored).verify(
        &image,
        &[alice.public_key().clone(), bob.public_key().clone()],
    );
    assert_eq!(
        both.verified_by,
        vec![
            alice.public_key().id().clone(),
            bob.public_key().id().clone()
        ]
    );
}

#[test]
fn a_signature_that_does_not_verify_is_not_stored() {
    let alice = new_key();
    let bob = new_key();
    let image = digest("image");
    let bytes = payload(REPO, &image, None);
    let signature = alice.sign(&bytes).unwrap();
    let mut set = SignatureSet::new();
    let err = set.add(bytes, &signature, bob.public_key()).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert!(set.is_empty());
}

#[test]
fn a_raw_r_s_signature_is_accepted() {
    let key = new_key();
    let image = digest("image");
    let bytes = payload(REPO, &image, None);
    let der = key.sign(&bytes).unwrap();
    // DER → raw 64-byte r || s.
    let raw = der_to_raw(&der);
    assert_eq!(raw.len(), 64);
    let mut set = SignatureSet::new();
    set.add(bytes, &raw, key.public_key()).unwrap();
    let verification = round_trip(&set).verify(&image, &[key.public_key().clone()]);
    assert_eq!(verification.verified_by.len(), 1);
}

fn der_to_raw(der: &[u8]) -> Vec<u8> {
    // SEQUENCE { INTEGER r, INTEGER s } with short lengths (always so for P-256).
    let mut out = Vec::new();
    let mut i = 2;
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = if int.len() > 32 {
            &int[int.len() - 32..]
        } else {
            int
        };
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

#[test]
fn cosign_v3_bundles_are_refused_with_how_to_sign_in_the_legacy_format() {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest("{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "digest": digest("b"), "size": 1}],
    });
    let err = SignatureSet::parse(&serde_json::to_vec(&manifest).unwrap()).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("Sigstore bundle"), "{message}");
    assert!(message.contains("--new-bundle-format=false"), "{message}");
    assert!(message.contains("--use-signing-config=false"), "{message}");

    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest("{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.3", "digest": digest("b"), "size": 1}],
    });
    let err = SignatureSet::parse(&serde_json::to_vec(&manifest).unwrap()).unwrap_err();
    assert!(matches!(err, SignatureError::BundleFormat { .. }), "{err}");
}

#[test]
fn unknown_layers_and_oversized_manifests_are_refused() {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest("{}"), "size": 2},
        "layers": [{"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": digest("b"), "size": 1,
                    "annotations": {SIGNATURE_ANNOTATION: "AA=="}}],
    });
    let err = SignatureSet::parse(&serde_json::to_vec(&manifest).unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("signature layer 0 has media type `application/vnd.dsse.envelope.v1+json`"),
        "{err}"
    );
    let huge = vec![b' '; 2 << 20];
    assert!(matches!(
        SignatureSet::parse(&huge),
        Err(SignatureError::TooLarge { .. })
    ));
}

#[test]
fn the_verification_is_recorded_as_json() {
    let key = new_key();
    let image = digest("image");
    let mut set = SignatureSet::new();
    set.sign(&key, REPO, &image, None).unwrap();
    let verification = round_trip(&set).verify(&image, &[key.public_key().clone()]);
    let json = serde_json::to_value(&verification).unwrap();
    assert_eq!(json["verified_by"][0], key.public_key().id().as_str());
    assert!(json["rejected"].as_array().unwrap().is_empty());
}

#[test]
fn a_public_key_reads_back_from_its_pem() {
    let pair = generate_key_pair().unwrap();
    let public = PublicKey::from_pem(&pair.public_pem).unwrap();
    assert_eq!(public.id(), &pair.key_id);
    assert_eq!(public.to_pem().unwrap(), pair.public_pem);
}
