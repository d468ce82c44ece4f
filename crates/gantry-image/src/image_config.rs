//! The image config blob: what a step inherits from its image, and the layers' diff IDs.
//!
//! Docker's config JSON and the OCI one share these fields, so one lenient reader serves both.

use serde::{Deserialize, Serialize};

use crate::ImageError;

/// The parts of an image config that shape how its container runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImageRuntimeConfig {
    pub user: Option<String>,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    config: Option<RawRuntime>,
    #[serde(default)]
    rootfs: Option<RawRootfs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawRuntime {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRootfs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// A parsed image config.
#[derive(Clone, Debug, Default)]
pub(crate) struct ParsedConfig {
    pub(crate) runtime: ImageRuntimeConfig,
    pub(crate) created: Option<String>,
    pub(crate) architecture: Option<String>,
    pub(crate) diff_ids: Vec<String>,
}

pub(crate) fn parse_config(bytes: &[u8], what: &str) -> Result<ParsedConfig, ImageError> {
    let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| ImageError::json(what, e))?;
    let runtime = raw.config.unwrap_or_default();
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(ParsedConfig {
        runtime: ImageRuntimeConfig {
            user: non_empty(runtime.user),
            env: runtime.env.unwrap_or_default(),
            entrypoint: runtime.entrypoint.unwrap_or_default(),
            cmd: runtime.cmd.unwrap_or_default(),
            working_dir: non_empty(runtime.working_dir),
        },
        created: non_empty(raw.created),
        architecture: non_empty(raw.architecture),
        diff_ids: raw.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
    })
}

#[derive(Serialize)]
struct MinimalConfig<'a> {
    architecture: &'a str,
    os: &'a str,
    config: MinimalRuntime,
    rootfs: MinimalRootfs<'a>,
}

#[derive(Serialize)]
struct MinimalRuntime {}

#[derive(Serialize)]
struct MinimalRootfs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: &'a [String],
}

/// The config of an image made from a plain rootfs tar: no command, no env, no timestamp, so
/// importing the same tar twice gives the same digest.
pub(crate) fn minimal_config(diff_ids: &[String]) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(&MinimalConfig {
        architecture: "amd64",
        os: "linux",
        config: MinimalRuntime {},
        rootfs: MinimalRootfs {
            kind: "layers",
            diff_ids,
        },
    })
    .map_err(|e| ImageError::json("the generated image config", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_with_nulls() {
        let json = br#"{"architecture":"amd64","created":"2024-01-01T00:00:00Z","os":"linux",
            "config":{"User":"1000:1000","Env":["PATH=/bin"],"Entrypoint":null,"Cmd":["sh"],"WorkingDir":""},
            "container_config":{"Hostname":"x"},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let c = parse_config(json, "config").unwrap();
        assert_eq!(c.runtime.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.runtime.env, vec!["PATH=/bin"]);
        assert!(c.runtime.entrypoint.is_empty());
        assert_eq!(c.runtime.cmd, vec!["sh"]);
        assert_eq!(c.runtime.working_dir, None);
        assert_eq!(c.diff_ids, vec!["sha256:aa"]);
        assert_eq!(c.architecture.as_deref(), Some("amd64"));
    }

    #[test]
    fn minimal_config_round_trips() {
        let bytes = minimal_config(&["sha256:bb".to_string()]).unwrap();
        let c = parse_config(&bytes, "config").unwrap();
        assert_eq!(c.diff_ids, vec!["sha256:bb"]);
        assert_eq!(c.runtime, ImageRuntimeConfig::default());
        assert_eq!(bytes, minimal_config(&["sha256:bb".to_string()]).unwrap());
    }
}
