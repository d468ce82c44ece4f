//! Image names (`busybox:1`, `registry.example.com/team/x:tag`) and references to stored images.

use crate::ImageError;

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;
/// Shortest digest prefix accepted as a reference, as `docker` does for image IDs.
pub(crate) const MIN_PREFIX_LEN: usize = 12;

/// Validates an image name and returns its canonical form: `:latest` added when there is no tag,
/// and Docker Hub's implicit `docker.io/` and `library/` dropped so `docker.io/library/busybox:1`
/// and `busybox:1` name the same image.
pub fn normalize_reference(name: &str) -> Result<String, ImageError> {
    let invalid = |reason: &str| ImageError::InvalidReference {
        reference: name.to_string(),
        reason: reason.to_string(),
    };
    if name.contains('@') {
        return Err(invalid(
            "a name cannot carry a digest here; give `name:tag` and pin digests where a reference is expected",
        ));
    }
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name[last_slash..].find(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(tag) = tag {
        validate_tag(tag).map_err(invalid)?;
    }
    let mut parts: Vec<&str> = repository.split('/').collect();
    let domain = if parts.len() > 1 && looks_like_domain(parts[0]) {
        Some(parts.remove(0))
    } else {
        None
    };
    if let Some(domain) = domain {
        validate_domain(domain).map_err(invalid)?;
    }
    for part in &parts {
        validate_path_component(part).map_err(invalid)?;
    }
    let hub = matches!(
        domain,
        None | Some("docker.io") | Some("index.docker.io") | Some("registry-1.docker.io")
    );
    if hub && parts.len() == 2 && parts[0] == "library" {
        parts.remove(0);
    }
    let mut canonical = String::new();
    if let Some(domain) = domain.filter(|_| !hub) {
        canonical.push_str(domain);
        canonical.push('/');
    }
    canonical.push_str(&parts.join("/"));
    if canonical.len() > MAX_NAME_LEN {
        return Err(invalid("the repository name is longer than 255 characters"));
    }
    canonical.push(':');
    canonical.push_str(tag.unwrap_or("latest"));
    Ok(canonical)
}

/// Whether the first component of a name is a registry host (`ghcr.io`, `localhost:5000`,
/// `localhost`) rather than a path component, as Docker decides it.
pub fn looks_like_domain(part: &str) -> bool {
    part.contains('.')
        || part.contains(':')
        || part == "localhost"
        || part.chars().any(|c| c.is_ascii_uppercase())
}

/// Checks a registry host (`host` or `host:port`); the error says what is wrong.
pub fn validate_domain(domain: &str) -> Result<(), &'static str> {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the registry port must be a number");
    }
    let ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err("the registry host is not a valid host name")
    }
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn validate_path_component(part: &str) -> Result<(), &'static str> {
    const BAD: &str = "each name component must be lower-case letters and digits, joined by `.`, `_`, `__` or `-`";
    let bytes = part.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(BAD);
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &part[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(BAD);
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), &'static str> {
    const BAD: &str =
        "a tag is 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`";
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if bytes.is_empty() || bytes.len() > MAX_TAG_LEN || !word(bytes[0]) {
        return Err(BAD);
    }
    if bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') {
        Ok(())
    } else {
        Err(BAD)
    }
}

/// The hex part of `sha256:<64 lower-case hex>`, or `None`.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| is_hex(hex) && hex.len() == 64)
}

pub(crate) fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a user typed to pick a stored image.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reference {
    /// A canonical `name:tag`.
    Name(String),
    /// A full `sha256:<hex>`.
    Digest(String),
    /// Hex that is a digest prefix, or a name when an image is called that.
    HexPrefix { hex: String, name: Option<String> },
    /// `name@sha256:<hex>`: the name must point at that digest.
    Pinned { name: String, digest: String },
}

pub(crate) fn parse_reference(reference: &str) -> Result<Reference, ImageError> {
    let invalid = |reason: &str| ImageError::InvalidReference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    };
    if let Some((name, digest)) = reference.split_once('@') {
        if sha256_hex(digest).is_none() {
            return Err(invalid(
                "the digest after `@` must be sha256:<64 hex characters>",
            ));
        }
        return Ok(Reference::Pinned {
            name: normalize_reference(name)?,
            digest: digest.to_string(),
        });
    }
    if let Some(hex) = reference.strip_prefix("sha256:") {
        if !is_hex(hex) || hex.len() > 64 || hex.len() < MIN_PREFIX_LEN {
            return Err(invalid(
                "a digest is sha256: followed by 12 to 64 lower-case hex characters",
            ));
        }
        if hex.len() == 64 {
            return Ok(Reference::Digest(reference.to_string()));
        }
        return Ok(Reference::HexPrefix {
            hex: hex.to_string(),
            name: None,
        });
    }
    if is_hex(reference) && (MIN_PREFIX_LEN..=64).contains(&reference.len()) {
        return Ok(Reference::HexPrefix {
            hex: reference.to_string(),
            name: normalize_reference(reference).ok(),
        });
    }
    normalize_reference(reference).map(Reference::Name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated_and_canonicalised() {
        assert_eq!(normalize_reference("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize_reference("busybox:1").unwrap(), "busybox:1");
        assert_eq!(
            normalize_reference("docker.io/library/busybox:1").unwrap(),
            "busybox:1"
        );
        assert_eq!(
            normalize_reference("library/busybox").unwrap(),
            "busybox:latest"
        );
        assert_eq!(
            normalize_reference("docker.io/team/x:2").unwrap(),
            "team/x:2"
        );
        assert_eq!(
            normalize_reference("registry.example.com/team/x:tag").unwrap(),
            "registry.example.com/team/x:tag"
        );
        assert_eq!(
            normalize_reference("localhost:5000/a/b").unwrap(),
            "localhost:5000/a/b:latest"
        );
        assert_eq!(
            normalize_reference("my_app-x__y.z:v1.0-rc_1").unwrap(),
            "my_app-x__y.z:v1.0-rc_1"
        );
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "a//b",
            "-a",
            "a-",
            "a___b",
            "a:b:c",
            "a:.x",
            "busybox@sha256:00",
            "reg.io:port/x",
            "x/../y",
            "a b",
        ] {
            assert!(
                normalize_reference(bad).is_err(),
                "{bad:?} should be invalid"
            );
        }
        let long = "a".repeat(256);
        assert!(normalize_reference(&long).is_err());
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(normalize_reference(&long_tag).is_err());
    }

    #[test]
    fn references_are_classified() {
        let hex = "ab".repeat(32);
        assert_eq!(
            parse_reference(&format!("sha256:{hex}")).unwrap(),
            Reference::Digest(format!("sha256:{hex}"))
        );
        assert_eq!(
            parse_reference(&hex[..12]).unwrap(),
            Reference::HexPrefix {
                hex: hex[..12].to_string(),
                name: Some(format!("{}:latest", &hex[..12]))
            }
        );
        assert!(matches!(
            parse_reference(&hex[..11]).unwrap(),
            Reference::Name(_)
        ));
        assert_eq!(
            parse_reference(&format!("busybox@sha256:{hex}")).unwrap(),
            Reference::Pinned {
                name: "busybox:latest".into(),
                digest: format!("sha256:{hex}")
            }
        );
        assert!(parse_reference("busybox@sha256:abc").is_err());
        assert!(parse_reference("sha256:xyz").is_err());
        assert_eq!(
            parse_reference("busybox:1").unwrap(),
            Reference::Name("busybox:1".into())
        );
    }
}
