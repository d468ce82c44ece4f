//! Where an image lives in a registry: `registry/repository[:tag][@sha256:…]`.

use std::fmt;

use crate::ImageError;
use crate::reference::{looks_like_domain, normalize_reference, sha256_hex};

/// Docker Hub's canonical registry name, and the host its API answers on.
const HUB: &str = "docker.io";
const HUB_API: &str = "registry-1.docker.io";

/// A reference to an image in a registry. `tag` is `None` only when a digest pins the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryRef {
    /// `localhost:5000`, `ghcr.io`, `docker.io`.
    pub registry: String,
    /// `team/trainer`; Docker Hub's official images keep their `library/` prefix here.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>` when pinned.
    pub digest: Option<String>,
}

impl RegistryRef {
    /// Parses `registry/repo:tag`, `registry/repo@sha256:…` or both. A name without a registry
    /// (`busybox:1`) is Docker Hub's, as Docker reads it.
    pub fn parse(reference: &str) -> Result<RegistryRef, ImageError> {
        let invalid = |reason: &str| ImageError::InvalidReference {
            reference: reference.to_string(),
            reason: reason.to_string(),
        };
        let (name, digest) = match reference.split_once('@') {
            Some((name, digest)) => {
                if sha256_hex(digest).is_none() {
                    return Err(invalid(
                        "the digest after `@` must be sha256:<64 lower-case hex characters>",
                    ));
                }
                (name, Some(digest.to_string()))
            }
            None => (reference, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let has_tag = name[last_slash..].contains(':');
        let canonical = normalize_reference(name)?;
        let (repo, tag) = canonical
            .rsplit_once(':')
            .ok_or_else(|| invalid("no tag after normalisation"))?;
        let mut parts: Vec<&str> = repo.split('/').collect();
        let registry = if parts.len() > 1 && looks_like_domain(parts[0]) {
            parts.remove(0).to_string()
        } else {
            HUB.to_string()
        };
        let mut repository = parts.join("/");
        if registry == HUB && parts.len() == 1 {
            repository = format!("library/{repository}");
        }
        let tag = if has_tag || digest.is_none() {
            Some(tag.to_string())
        } else {
            None
        };
        Ok(RegistryRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// True when `reference` names its registry explicitly (`localhost:5000/x`, `ghcr.io/x`):
    /// only those are pulled when missing. Docker Hub short names (`busybox:1`) never reach
    /// the network on their own; write `docker.io/library/busybox:1` to pull one.
    pub fn names_registry(reference: &str) -> bool {
        let name = reference.split('@').next().unwrap_or(reference);
        match name.split_once('/') {
            Some((first, _)) => looks_like_domain(first),
            None => false,
        }
    }

    /// The host the registry's API answers on.
    pub fn api_host(&self) -> &str {
        if self.registry == HUB {
            HUB_API
        } else {
            &self.registry
        }
    }

    /// The tag or digest a manifest request names: the digest when pinned.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The name the image store keeps for this reference (`localhost:5000/team/x:1`), or
    /// `None` for a digest-only reference.
    pub fn store_name(&self) -> Option<String> {
        let tag = self.tag.as_ref()?;
        normalize_reference(&format!("{}/{}:{tag}", self.registry, self.repository)).ok()
    }

    /// `registry/repository`, cosign's `docker-reference`.
    pub fn repository_path(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository at another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> RegistryRef {
        RegistryRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository pinned to `digest` (the tag kept for display).
    pub fn with_digest(&self, digest: &str) -> RegistryRef {
        RegistryRef {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// The host part of the registry without its port.
    pub fn host(&self) -> &str {
        host_of(&self.registry)
    }
}

/// The host of `host[:port]` (`[::1]:5000` → `::1`).
pub(crate) fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

impl fmt::Display for RegistryRef {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_registry_repository_tag_and_digest() {
        let r = RegistryRef::parse("localhost:5000/team/trainer:1.4").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "team/trainer");
        assert_eq!(r.tag.as_deref(), Some("1.4"));
        assert_eq!(r.digest, None);
        assert_eq!(
            r.store_name().as_deref(),
            Some("localhost:5000/team/trainer:1.4")
        );

        let hex = "ab".repeat(32);
        let r = RegistryRef::parse(&format!("ghcr.io/x/y@sha256:{hex}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_reference(), format!("sha256:{hex}"));
        assert_eq!(r.store_name(), None);

        let r = RegistryRef::parse(&format!("ghcr.io/x/y:2@sha256:{hex}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("2"));
        assert_eq!(r.manifest_reference(), format!("sha256:{hex}"));

        let r = RegistryRef::parse("busybox").unwrap();
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.store_name().as_deref(), Some("busybox:latest"));

        assert!(RegistryRef::parse("ghcr.io/x@sha256:12").is_err());
        assert!(RegistryRef::parse("Bad/Name").is_err());
    }

    #[test]
    fn only_explicit_registries_are_pulled() {
        assert!(RegistryRef::names_registry("localhost:5000/x:1"));
        assert!(RegistryRef::names_registry("ghcr.io/x/y"));
        assert!(RegistryRef::names_registry("localhost/x"));
        assert!(RegistryRef::names_registry("docker.io/library/busybox:1"));
        assert!(!RegistryRef::names_registry("busybox:1"));
        assert!(!RegistryRef::names_registry("team/x:1"));
        // One rule for what is a registry, the one names are normalized with: an upper-case
        // first component is a host, so the image pulled is the image the store names.
        assert!(RegistryRef::names_registry("Registry/x:1"));
        let r = RegistryRef::parse("Registry/x:1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("Registry", "x")
        );
        assert_eq!(
            RegistryRef::parse("registry-1.docker.io/library/busybox:1")
                .unwrap()
                .registry,
            "docker.io"
        );
        assert_eq!(host_of("localhost:5000"), "localhost");
        assert_eq!(host_of("[::1]:5000"), "::1");
        assert_eq!(host_of("ghcr.io"), "ghcr.io");
    }
}
