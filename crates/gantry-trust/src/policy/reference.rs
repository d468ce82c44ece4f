//! Image references with Docker-style normalization.
//!
//! `busybox` → `docker.io/library/busybox`, `user/app` → `docker.io/user/app`,
//! `localhost:5000/team/model:v1` keeps its registry. The first path component is a registry
//! when it contains `.` or `:`, or is `localhost`. `index.docker.io` and
//! `registry-1.docker.io` are written `docker.io`. Parsing is gantry-image's, the parser the
//! registry client pulls with: the policy never judges a name other than the one fetched.

use std::fmt;

use gantry_image::registry::RegistryRef;
use serde::{Deserialize, Serialize};

/// The registry Docker Hub references normalize to.
pub const DOCKER_HUB: &str = "docker.io";

/// A normalized image reference: `registry/repository[:tag][@digest]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    /// `docker.io`, `localhost:5000`, `ghcr.io`, ...
    pub registry: String,
    /// The path inside the registry: `library/busybox`, `team/model`.
    pub repository: String,
    /// The tag, when one was given.
    pub tag: Option<String>,
    /// The digest (`sha256:<hex>`), when one was given.
    pub digest: Option<String>,
}

/// A reference that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{reference}` is not a valid image reference: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

impl ImageRef {
    /// Parses and normalizes `reference` with the same parser the registry client pulls
    /// with (`gantry_image::registry::RegistryRef`), so the policy judges exactly the image
    /// that is fetched. A tag is kept only when one was written.
    pub fn parse(reference: &str) -> Result<ImageRef, ReferenceError> {
        let parsed = RegistryRef::parse(reference).map_err(|e| ReferenceError {
            reference: reference.to_owned(),
            reason: match e {
                gantry_image::ImageError::InvalidReference { reason, .. } => reason,
                other => other.to_string(),
            },
        })?;
        let name = reference.split('@').next().unwrap_or(reference);
        let tag_written = name
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'));
        Ok(ImageRef {
            registry: parsed.registry,
            repository: parsed.repository,
            tag: parsed.tag.filter(|_| tag_written),
            digest: parsed.digest,
        })
    }

    /// `registry/repository`, without tag or digest: what policy globs match, and cosign's
    /// `docker-reference`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Whether the reference pins a digest.
    pub fn is_pinned(&self) -> bool {
        self.digest.is_some()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Whether a first path component names a registry (Docker's rule, shared with the client).
pub(crate) fn is_registry(component: &str) -> bool {
    gantry_image::looks_like_domain(component)
}

/// Checks a registry host written in a policy.
pub(crate) fn validate_registry(registry: &str) -> Result<(), String> {
    gantry_image::validate_domain(registry).map_err(|why| format!("registry `{registry}`: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_docker_hub_and_keeps_other_registries() {
        let r = |s: &str| ImageRef::parse(s).map(|r| r.to_string());
        assert_eq!(
            r("busybox").ok().as_deref(),
            Some("docker.io/library/busybox")
        );
        assert_eq!(
            r("user/app:1.0").ok().as_deref(),
            Some("docker.io/user/app:1.0")
        );
        assert_eq!(
            r("index.docker.io/library/busybox").ok().as_deref(),
            Some("docker.io/library/busybox")
        );
        assert_eq!(
            r("localhost:5000/team/model:v1").ok().as_deref(),
            Some("localhost:5000/team/model:v1")
        );
        assert_eq!(r("localhost/x").ok().as_deref(), Some("localhost/x"));
        let d = format!("sha256:{}", "a".repeat(64));
        let pinned = ImageRef::parse(&format!("ghcr.io/o/r:t@{d}"));
        assert!(
            pinned
                .as_ref()
                .is_ok_and(|p| p.is_pinned() && p.tag.as_deref() == Some("t"))
        );
        assert!(ImageRef::parse("Busybox").is_err());
        assert!(ImageRef::parse("busybox@sha256:abc").is_err());
        assert!(ImageRef::parse("a//b").is_err());
    }
}
