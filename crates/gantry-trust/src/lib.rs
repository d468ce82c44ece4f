//! gantry-trust: image signatures and the trust policy.
//!
//! - [`keys`]: ECDSA P-256 key pairs (generate, write, read PKCS#8 / SEC1 / SPKI PEM).
//! - [`simple_signing`]: cosign's simple-signing payload, byte for byte.
//! - [`signature_manifest`]: the `sha256-<hex>.sig` signature image (parse, add, write).
//! - [`verify`]: checking an image's signatures against public keys.
//! - [`policy`]: `policy.yaml` and the allow / warn / deny decision.
//!
//! Pure logic: registry I/O and scanning are the caller's. Sigstore bundles (cosign v3's
//! default, OCI 1.1 referrers) are refused with a message saying how to sign in the legacy
//! format.

pub mod keys;
pub mod policy;
pub mod signature_manifest;
pub mod simple_signing;
pub mod verify;

pub use keys::{
    KeyError, KeyId, KeyPair, KeyPaths, PublicKey, SigningKey, generate_key_pair, write_key_pair,
};
pub use policy::{
    Decision, Facts, ImageRef, Mode, Outcome, Policy, PolicyError, ReferenceError, Rule,
    SignatureRequirement, TrustedKey,
};
pub use signature_manifest::{
    SignatureError, SignatureLayer, SignatureSet, SignatureUpload, sha256_digest, signature_tag,
};
pub use simple_signing::{SimpleSigningPayload, payload};
pub use verify::{Rejection, Verification, verify};
