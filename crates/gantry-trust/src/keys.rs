//! ECDSA P-256 key pairs: generation, PEM files, and the key id used in messages.
//!
//! Private keys are read from unencrypted PKCS#8 (`BEGIN PRIVATE KEY`) or SEC1
//! (`BEGIN EC PRIVATE KEY`) PEM; public keys from SPKI (`BEGIN PUBLIC KEY`), the format
//! `cosign generate-key-pair` writes to `cosign.pub`. Private key material never appears in
//! `Debug` or `Display` output.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature};
use p256::elliptic_curve::Generate;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A problem with a key: generating, reading, parsing or writing it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{what} is an encrypted cosign key ({label}); gantry reads unencrypted keys only: export \
         it unencrypted (PKCS#8 `BEGIN PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE KEY`) or generate \
         one with `gantry key generate`"
    )]
    EncryptedCosignKey { what: String, label: String },
    #[error(
        "{what} is an encrypted PKCS#8 key; gantry reads unencrypted keys only: decrypt it (for \
         example `openssl pkcs8 -in KEY -out plain.key`) or generate one with `gantry key generate`"
    )]
    EncryptedPkcs8 { what: String },
    #[error("{what} holds a public key, not a private key")]
    PublicNotPrivate { what: String },
    #[error("{what} holds no PEM {expected} (expected a `-----BEGIN {expected}-----` block)")]
    NoPem {
        what: String,
        expected: &'static str,
    },
    #[error("{what} is not an ECDSA P-256 {kind} key: {detail}")]
    Invalid {
        what: String,
        kind: &'static str,
        detail: String,
    },
    #[error("could not generate a key: {0}")]
    Random(String),
    #[error("could not encode the key: {0}")]
    Encode(String),
    #[error("{} already exists; pass --force to replace it", path.display())]
    Exists { path: PathBuf },
    #[error("could not write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not sign: {0}")]
    Sign(String),
}

/// The id of a public key: `sha256:` and the lowercase hex SHA-256 of its SPKI DER encoding.
/// [`KeyId::short`] is the form used in messages.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// The id of a key from its SPKI DER bytes.
    pub fn of_spki_der(der: &[u8]) -> KeyId {
        KeyId(format!("sha256:{}", hex::encode(Sha256::digest(der))))
    }

    /// The full id, `sha256:<64 hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `sha256:` and the first 12 hex digits, for messages.
    pub fn short(&self) -> &str {
        self.0.get(..7 + 12).unwrap_or(&self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A freshly generated key pair in PEM form.
pub struct KeyPair {
    /// PKCS#8 `BEGIN PRIVATE KEY`, unencrypted; wiped from memory when dropped.
    pub private_pem: Zeroizing<String>,
    /// SPKI `BEGIN PUBLIC KEY`.
    pub public_pem: String,
    /// The id of the public key.
    pub key_id: KeyId,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("private_pem", &"<redacted>")
            .field("key_id", &self.key_id)
            .finish()
    }
}

/// Generates an ECDSA P-256 key pair from the operating system's CSPRNG.
pub fn generate_key_pair() -> Result<KeyPair, KeyError> {
    let inner =
        p256::ecdsa::SigningKey::try_generate().map_err(|e| KeyError::Random(e.to_string()))?;
    let private_pem = inner
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encode(e.to_string()))?;
    let public = PublicKey::from_verifying_key(*inner.verifying_key())?;
    Ok(KeyPair {
        private_pem,
        public_pem: public.to_pem()?,
        key_id: public.id().clone(),
    })
}

/// Where [`write_key_pair`] put the two files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPaths {
    /// `<name>.key`, mode 0600.
    pub private: PathBuf,
    /// `<name>.pub`, mode 0644.
    pub public: PathBuf,
}

/// Writes `dir/<name>.key` (mode 0600) and `dir/<name>.pub` (mode 0644). Both are created
/// exclusively (`O_EXCL`): an existing file is an error unless `force`, which replaces it.
/// When the public key cannot be written, the private key just written is removed again.
pub fn write_key_pair(
    pair: &KeyPair,
    dir: &Path,
    name: &str,
    force: bool,
) -> Result<KeyPaths, KeyError> {
    let paths = KeyPaths {
        private: dir.join(format!("{name}.key")),
        public: dir.join(format!("{name}.pub")),
    };
    write_exclusive(&paths.private, pair.private_pem.as_bytes(), 0o600, force)?;
    if let Err(e) = write_exclusive(&paths.public, pair.public_pem.as_bytes(), 0o644, force) {
        let _ = std::fs::remove_file(&paths.private);
        return Err(e);
    }
    Ok(paths)
}

fn write_exclusive(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<(), KeyError> {
    if force {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(KeyError::Write {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                KeyError::Write {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| KeyError::Write {
            path: path.to_owned(),
            source,
        })
}

/// An ECDSA P-256 private key that signs payloads (SHA-256, ASN.1 DER signatures).
pub struct SigningKey {
    inner: p256::ecdsa::SigningKey,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", self.public.id())
            .finish_non_exhaustive()
    }
}

/// The PEM labels this crate recognizes, and the block that carries `label`.
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

impl SigningKey {
    /// Reads a private key file; `what` in errors is the path.
    pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_owned(),
                    source,
                })?,
            );
        SigningKey::from_pem_named(&text, &path.display().to_string())
    }

    /// Parses a PKCS#8 or SEC1 PEM private key.
    pub fn from_pem(text: &str) -> Result<SigningKey, KeyError> {
        SigningKey::from_pem_named(text, "the key")
    }

    /// Like [`SigningKey::from_pem`]; `what` names the key's origin in errors.
    pub fn from_pem_named(text: &str, what: &str) -> Result<SigningKey, KeyError> {
        for label in [
            "ENCRYPTED SIGSTORE PRIVATE KEY",
            "ENCRYPTED COSIGN PRIVATE KEY",
        ] {
            if pem_block(text, label).is_some() {
                return Err(KeyError::EncryptedCosignKey {
                    what: what.to_owned(),
                    label: label.to_owned(),
                });
            }
        }
        if pem_block(text, "ENCRYPTED PRIVATE KEY").is_some() {
            return Err(KeyError::EncryptedPkcs8 {
                what: what.to_owned(),
            });
        }
        let invalid = |detail: String| KeyError::Invalid {
            what: what.to_owned(),
            kind: "private",
            detail,
        };
        let inner = if let Some(block) = pem_block(text, "PRIVATE KEY") {
            p256::ecdsa::SigningKey::from_pkcs8_pem(block).map_err(|e| invalid(e.to_string()))?
        } else if let Some(block) = pem_block(text, "EC PRIVATE KEY") {
            let secret =
                p256::SecretKey::from_sec1_pem(block).map_err(|e| invalid(e.to_string()))?;
            p256::ecdsa::SigningKey::from(&secret)
        } else if pem_block(text, "PUBLIC KEY").is_some() {
            return Err(KeyError::PublicNotPrivate {
                what: what.to_owned(),
            });
        } else {
            return Err(KeyError::NoPem {
                what: what.to_owned(),
                expected: "PRIVATE KEY",
            });
        };
        let public = PublicKey::from_verifying_key(*inner.verifying_key())?;
        Ok(SigningKey { inner, public })
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message` (ECDSA P-256 over its SHA-256) and returns the ASN.1 DER signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let signature: DerSignature = self
            .inner
            .try_sign(message)
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        Ok(signature.as_bytes().to_vec())
    }
}

/// An ECDSA P-256 public key that verifies signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    inner: p256::ecdsa::VerifyingKey,
    id: KeyId,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.id).finish()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id.short())
    }
}

impl PublicKey {
    fn from_verifying_key(inner: p256::ecdsa::VerifyingKey) -> Result<PublicKey, KeyError> {
        let der = inner
            .to_public_key_der()
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        Ok(PublicKey {
            id: KeyId::of_spki_der(der.as_bytes()),
            inner,
        })
    }

    /// Reads a public key file (SPKI PEM); `what` in errors is the path.
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        PublicKey::from_pem_named(&text, &path.display().to_string())
    }

    /// Parses an SPKI PEM public key (`BEGIN PUBLIC KEY`).
    pub fn from_pem(text: &str) -> Result<PublicKey, KeyError> {
        PublicKey::from_pem_named(text, "the key")
    }

    /// Like [`PublicKey::from_pem`]; `what` names the key's origin in errors.
    pub fn from_pem_named(text: &str, what: &str) -> Result<PublicKey, KeyError> {
        let Some(block) = pem_block(text, "PUBLIC KEY") else {
            return Err(KeyError::NoPem {
                what: what.to_owned(),
                expected: "PUBLIC KEY",
            });
        };
        let inner = p256::ecdsa::VerifyingKey::from_public_key_pem(block).map_err(|e| {
            KeyError::Invalid {
                what: what.to_owned(),
                kind: "public",
                detail: e.to_string(),
            }
        })?;
        PublicKey::from_verifying_key(inner)
    }

    /// The SPKI PEM text.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.inner
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    /// `sha256:<hex of the SPKI DER>`.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// Whether `signature` (ASN.1 DER, or raw 64-byte `r || s`) is this key's ECDSA P-256
    /// SHA-256 signature over `message`. Either `s` form (high or low) is accepted.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let parsed = Signature::from_der(signature).or_else(|_| {
            if signature.len() == 64 {
                Signature::from_slice(signature)
            } else {
                Err(p256::ecdsa::Error::new())
            }
        });
        match parsed {
            Ok(sig) => self.inner.verify(message, &sig.normalize_s()).is_ok(),
            Err(_) => false,
        }
    }
}
