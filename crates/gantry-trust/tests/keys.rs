//! Generating, writing and reading signing keys, as `gantry key generate` and
//! `gantry image sign --key` do.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

use gantry_trust::{KeyError, PublicKey, SigningKey, generate_key_pair, write_key_pair};

#[test]
fn a_generated_key_pair_is_written_private_0600_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_key_pair().unwrap();
    assert!(pair.private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(pair.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));

    let paths = write_key_pair(&pair, dir.path(), "team", false).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&paths.private), 0o600);
    assert_eq!(paths.private, dir.path().join("team.key"));
    assert_eq!(paths.public, dir.path().join("team.pub"));
    assert_eq!(mode(&paths.public) & 0o600, 0o600);

    let other = generate_key_pair().unwrap();
    let err = write_key_pair(&other, dir.path(), "team", false).unwrap_err();
    assert!(matches!(err, KeyError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("--force"));
    assert_eq!(
        std::fs::read_to_string(&paths.private).unwrap(),
        *pair.private_pem,
        "the existing key is untouched"
    );

    write_key_pair(&other, dir.path(), "team", true).unwrap();
    let loaded = SigningKey::load(&paths.private).unwrap();
    assert_eq!(loaded.public_key().id(), &other.key_id);
    assert_eq!(PublicKey::load(&paths.public).unwrap().id(), &other.key_id);
    assert_eq!(mode(&paths.private), 0o600);
}

#[test]
fn an_existing_public_key_file_is_not_clobbered_and_leaves_no_private_key_behind() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("team.pub"), "someone else's key").unwrap();
    let pair = generate_key_pair().unwrap();
    assert!(write_key_pair(&pair, dir.path(), "team", false).is_err());
    assert!(!dir.path().join("team.key").exists());
}

#[test]
fn private_key_material_never_shows_in_debug_output() {
    let pair = generate_key_pair().unwrap();
    let key = SigningKey::from_pem(&pair.private_pem).unwrap();
    let body: String = pair
        .private_pem
        .lines()
        .nth(1)
        .unwrap()
        .chars()
        .take(20)
        .collect();
    for shown in [format!("{pair:?}"), format!("{key:?}")] {
        assert!(!shown.contains(&body), "{shown}");
        assert!(shown.contains(pair.key_id.as_str()), "{shown}");
    }
}

#[test]
fn a_sec1_ec_private_key_is_accepted() {
    // `openssl ecparam -name prime256v1 -genkey` writes SEC1 after an EC PARAMETERS block.
    let Some(sec1) = openssl(&["ecparam", "-name", "prime256v1", "-genkey"]) else {
        return;
    };
    assert!(sec1.contains("BEGIN EC PRIVATE KEY"), "{sec1}");
    let key = SigningKey::from_pem(&sec1).unwrap();
    let message = b"payload";
    let signature = key.sign(message).unwrap();
    assert!(key.public_key().verifies(message, &signature));
}

fn openssl(args: &[&str]) -> Option<String> {
    match std::process::Command::new("openssl").args(args).output() {
        Ok(out) if out.status.success() => Some(String::from_utf8(out.stdout).unwrap()),
        _ => {
            // The Python oracle test covers SEC1 keys independently of openssl.
            eprintln!("skipped: no usable openssl command");
            None
        }
    }
}

#[test]
fn an_encrypted_cosign_key_is_refused_with_what_to_do() {
    let text = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJrZGYiOnt9fQ==\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n";
    let err = SigningKey::from_pem_named(text, "cosign.key").unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("cosign.key is an encrypted cosign key"),
        "{message}"
    );
    assert!(message.contains("export it unencrypted"), "{message}");
    assert!(message.contains("gantry key generate"), "{message}");

    let old = text.replace("SIGSTORE", "COSIGN");
    assert!(matches!(
        SigningKey::from_pem(&old),
        Err(KeyError::EncryptedCosignKey { .. })
    ));
}

#[test]
fn the_wrong_kind_of_pem_is_named() {
    let pair = generate_key_pair().unwrap();
    assert!(matches!(
        SigningKey::from_pem(&pair.public_pem),
        Err(KeyError::PublicNotPrivate { .. })
    ));
    assert!(matches!(
        PublicKey::from_pem(&pair.private_pem),
        Err(KeyError::NoPem { .. })
    ));
    assert!(matches!(
        SigningKey::from_pem("not a key"),
        Err(KeyError::NoPem { .. })
    ));
}

#[test]
fn a_key_id_is_the_sha256_of_the_spki_der_and_has_a_short_form() {
    let pair = generate_key_pair().unwrap();
    let id = pair.key_id.as_str();
    assert!(id.starts_with("sha256:") && id.len() == 7 + 64);
    assert_eq!(pair.key_id.short(), &id[..19]);
}
