//! Interoperability with an independent implementation of cosign's key-based signatures
//! (`tests/oracle/cosign_oracle.py`, Python's `cryptography`): signatures it makes verify
//! here, and signatures made here verify there.
//!
//! The Python is `GANTRY_TEST_MLFLOW_PYTHON` (scripts/test.sh makes the venv), else the
//! workspace's `.venv-test/bin/python` when it exists. With neither, the tests are skipped (a
//! failure under `GANTRY_TEST_REQUIRE_ALL`, see `testing/skip.rs`); a Python that is found
//! but cannot `import cryptography` fails.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use gantry_trust::{
    PublicKey, SignatureSet, SigningKey, generate_key_pair, payload, sha256_digest,
};

#[path = "../../../testing/skip.rs"]
mod skip;

const PYTHON_ENV: &str = "GANTRY_TEST_MLFLOW_PYTHON";
const REPO: &str = "localhost:5000/team/model";

fn python() -> Option<PathBuf> {
    let python = match std::env::var(PYTHON_ENV) {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-test/bin/python");
            if !venv.exists() {
                skip::because(&format!(
                    "{PYTHON_ENV} is not set and {} does not exist: set it to a python with \
                     `cryptography` installed (scripts/test.sh makes .venv-test) to run the \
                     cosign interop tests",
                    venv.display()
                ));
                return None;
            }
            venv
        }
    };
    let out = Command::new(&python)
        .args(["-c", "import cryptography; print(cryptography.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("{} cannot be run: {e}", python.display()));
    assert!(
        out.status.success(),
        "{} cannot `import cryptography` (pip install cryptography): {}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(python)
}

fn oracle(python: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/cosign_oracle.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "oracle {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_signature_made_by_the_independent_implementation_verifies_in_gantry() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let image = sha256_digest(b"an image manifest");
    oracle(
        &python,
        &["make", dir.path().to_str().unwrap(), REPO, &image],
    );
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();

    let body = read("payload.json");
    assert_eq!(
        body,
        payload(REPO, &image, None),
        "both write cosign's payload bytes"
    );

    let key = PublicKey::load(&dir.path().join("cosign.pub")).unwrap();
    let mut set = SignatureSet::parse(&read("manifest.json")).unwrap();
    set.attach_payload(0, body).unwrap();
    let verification = set.verify(&image, std::slice::from_ref(&key));
    assert_eq!(
        verification.verified_by,
        vec![key.id().clone()],
        "{verification:?}"
    );

    // Its signature is not valid for another image.
    let other = sha256_digest(b"another image");
    assert!(set.verify(&other, &[key]).verified_by.is_empty());

    // The config blob gantry writes for the same signature is the one it wrote.
    let upload = set.to_upload().unwrap();
    assert_eq!(upload.config, read("config.json"));
}

#[test]
fn its_sec1_and_pkcs8_private_keys_sign_in_gantry() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let image = sha256_digest(b"image");
    oracle(
        &python,
        &["make", dir.path().to_str().unwrap(), REPO, &image],
    );
    let public = PublicKey::load(&dir.path().join("cosign.pub")).unwrap();
    for file in ["sec1.key", "pkcs8.key"] {
        let key = SigningKey::load(&dir.path().join(file)).unwrap();
        assert_eq!(key.public_key().id(), public.id(), "{file}");
    }
}

#[test]
fn a_signature_made_by_gantry_verifies_in_the_independent_implementation() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_key_pair().unwrap();
    let key = SigningKey::from_pem(&pair.private_pem).unwrap();
    let image = sha256_digest(b"an image manifest");
    let mut set = SignatureSet::new();
    set.sign(&key, REPO, &image, None).unwrap();
    let upload = set.to_upload().unwrap();

    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let public = write("gantry.pub", pair.public_pem.as_bytes());
    let manifest = write("manifest.json", &upload.manifest);
    let body = write("payload.json", &upload.payloads[0].1);
    let out = oracle(
        &python,
        &["verify", &public, &manifest, &body, &image, REPO],
    );
    assert_eq!(out.trim(), "verified");

    // The oracle refuses it for another image: the check is real.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/cosign_oracle.py");
    let other = sha256_digest(b"another");
    let refused = Command::new(&python)
        .arg(script)
        .args(["verify", &public, &manifest, &body, &other, REPO])
        .output()
        .unwrap();
    assert!(!refused.status.success());
}
