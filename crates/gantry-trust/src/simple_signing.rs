//! cosign's "simple signing" payload: the JSON document a key-based cosign signature signs.
//!
//! ```json
//! {"critical":{"identity":{"docker-reference":"localhost:5000/team/model"},"image":{"docker-manifest-digest":"sha256:…"},"type":"cosign container image signature"},"optional":null}
//! ```
//!
//! [`payload`] writes exactly the bytes cosign writes (Go's `encoding/json`: compact, fields in
//! this order, `optional` keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped). The signature
//! covers those bytes as stored, so a verifier never re-serializes; it parses with
//! [`SimpleSigningPayload::parse`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `critical.type` of every cosign image signature.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";

/// The payload bytes cosign signs for `docker_reference` (the repository, `registry/path`,
/// without tag or digest) at `manifest_digest` (`sha256:<hex>`), with optional annotations
/// (`cosign sign -a key=value`; `None` or empty writes `"optional":null`).
pub fn payload(
    docker_reference: &str,
    manifest_digest: &str,
    annotations: Option<&BTreeMap<String, String>>,
) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    out.push_str(r#"{"critical":{"identity":{"docker-reference":"#);
    go_json_string(&mut out, docker_reference);
    out.push_str(r#"},"image":{"docker-manifest-digest":"#);
    go_json_string(&mut out, manifest_digest);
    out.push_str(r#"},"type":"#);
    go_json_string(&mut out, COSIGN_SIGNATURE_TYPE);
    out.push_str(r#"},"optional":"#);
    match annotations {
        Some(map) if !map.is_empty() => {
            out.push('{');
            for (i, (key, value)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(&mut out, key);
                out.push(':');
                go_json_string(&mut out, value);
            }
            out.push('}');
        }
        _ => out.push_str("null"),
    }
    out.push('}');
    out.into_bytes()
}

/// A JSON string as Go's `encoding/json` writes it (HTML-safe escaping on).
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A parsed simple-signing payload. Unknown fields are ignored (they are still covered by the
/// signature, which is checked over the raw bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimpleSigningPayload {
    pub critical: Critical,
    #[serde(default)]
    pub optional: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The `critical` section: what was signed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `critical.identity`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// A payload that is not a simple-signing document.
#[derive(Debug, thiserror::Error)]
#[error("the signed payload is not a cosign simple-signing document: {0}")]
pub struct PayloadError(String);

impl SimpleSigningPayload {
    /// Parses payload bytes.
    pub fn parse(bytes: &[u8]) -> Result<SimpleSigningPayload, PayloadError> {
        serde_json::from_slice(bytes).map_err(|e| PayloadError(e.to_string()))
    }
}
