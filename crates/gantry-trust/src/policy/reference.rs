//! Image references with Docker-style normalization.
//!
//! `busybox` → `docker.io/library/busybox`, `user/app` → `docker.io/user/app`,
//! `localhost:5000/team/model:v1` keeps its registry. The first path component is a registry
//! when it contains `.` or `:`, or is `localhost`. `index.docker.io` and
//! `registry-1.docker.io` are written `docker.io`.

use std::fmt;

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
    /// Parses and normalizes `reference`.
    pub fn parse(reference: &str) -> Result<ImageRef, ReferenceError> {
        let fail = |reason: &str| ReferenceError {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
        };
        if reference.is_empty() {
            return Err(fail("it is empty"));
        }
        if reference.len() > 4096 {
            return Err(fail("it is longer than 4096 characters"));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest).map_err(|r| fail(&r))?;
                (rest, Some(digest.to_owned()))
            }
            None => (reference, None),
        };
        // A tag follows the last `:` after the last `/` (a `:` before it is a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                let tag = &rest[at + 1..];
                validate_tag(tag).map_err(|r| fail(&r))?;
                (&rest[..at], Some(tag.to_owned()))
            }
            None => (rest, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if is_registry(first) => (first, path.to_owned()),
            _ => (DOCKER_HUB, name.to_owned()),
        };
        validate_registry(registry).map_err(|r| fail(&r))?;
        let registry = match registry {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
            other => other,
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        validate_repository(&repository).map_err(|r| fail(&r))?;
        Ok(ImageRef {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
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

/// Whether a first path component names a registry.
pub(crate) fn is_registry(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

pub(crate) fn validate_registry(registry: &str) -> Result<(), String> {
    let ok = !registry.is_empty()
        && registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "registry `{registry}` has characters a host name cannot have"
        ))
    }
}

fn validate_repository(repository: &str) -> Result<(), String> {
    for component in repository.split('/') {
        let valid = !component.is_empty()
            && component.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && component
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if !valid {
            return Err(format!(
                "repository component `{component}` must be lowercase letters, digits and \
                 `.`, `_`, `-`, starting with a letter or digit"
            ));
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` must be 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
        ))
    }
}

fn validate_digest(digest: &str) -> Result<(), String> {
    let hex_len = match digest.split_once(':') {
        Some(("sha256", hex)) => (hex.len() == 64).then_some(hex),
        Some(("sha512", hex)) => (hex.len() == 128).then_some(hex),
        _ => None,
    };
    match hex_len {
        Some(hex)
            if hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "digest `{digest}` must be `sha256:` and 64 lowercase hex digits"
        )),
    }
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
