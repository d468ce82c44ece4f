//! Version ordering per ecosystem: Debian and Ubuntu (dpkg rules), Alpine (apk rules), PyPI
//! (PEP 440), and semantic versioning for `SEMVER` ranges and semver ecosystems.

mod alpine;
mod debian;
mod pep440;

use std::cmp::Ordering;

pub use alpine::ApkVersion;

/// How an ecosystem orders versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// dpkg ordering (Debian, Ubuntu): epoch, upstream, revision; `~` sorts before anything.
    Debian,
    /// apk ordering (Alpine).
    Alpine,
    /// PEP 440 (PyPI).
    Pep440,
    /// Semantic Versioning 2.0 (crates.io, npm, Go and OSV `SEMVER` ranges); a leading `v`
    /// is ignored.
    Semver,
}

impl Scheme {
    /// The scheme of an OSV ecosystem name (`Debian:12`, `Ubuntu:22.04:LTS`, `Alpine:v3.20`,
    /// `PyPI`, `crates.io`, `npm`, `Go`); `None` for ecosystems this crate cannot order.
    pub fn of_ecosystem(ecosystem: &str) -> Option<Scheme> {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        match base {
            "Debian" | "Ubuntu" => Some(Scheme::Debian),
            "Alpine" => Some(Scheme::Alpine),
            "PyPI" => Some(Scheme::Pep440),
            "crates.io" | "npm" | "Go" => Some(Scheme::Semver),
            _ => None,
        }
    }

    /// Parses `version` under this scheme.
    pub fn parse(self, version: &str) -> Result<Version, VersionError> {
        let invalid = |reason: String| VersionError::Invalid {
            version: version.to_string(),
            scheme: self,
            reason,
        };
        Ok(match self {
            Scheme::Debian => Version::Debian(debian::parse(version).map_err(invalid)?),
            Scheme::Alpine => Version::Alpine(version.parse().map_err(invalid)?),
            Scheme::Pep440 => Version::Pep440(pep440::parse(version).map_err(invalid)?),
            Scheme::Semver => {
                let trimmed = version.trim();
                let trimmed = trimmed.strip_prefix('v').unwrap_or(trimmed);
                Version::Semver(
                    semver::Version::parse(trimmed).map_err(|e| invalid(e.to_string()))?,
                )
            }
        })
    }
}

/// A parsed version; only versions of the same scheme compare.
#[derive(Clone, Debug)]
pub enum Version {
    /// A dpkg version.
    Debian(debversion::Version),
    /// An apk version.
    Alpine(ApkVersion),
    /// A PEP 440 version.
    Pep440(pep440_rs::Version),
    /// A semantic version.
    Semver(semver::Version),
}

impl Version {
    /// Orders two versions of the same scheme; `None` across schemes.
    pub fn compare(&self, other: &Version) -> Option<Ordering> {
        match (self, other) {
            (Version::Debian(a), Version::Debian(b)) => Some(a.cmp(b)),
            (Version::Alpine(a), Version::Alpine(b)) => Some(a.cmp(b)),
            (Version::Pep440(a), Version::Pep440(b)) => Some(a.cmp(b)),
            (Version::Semver(a), Version::Semver(b)) => Some(a.cmp_precedence(b)),
            _ => None,
        }
    }
}

/// A version that cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The ecosystem has no known ordering.
    #[error("no version ordering for ecosystem {0:?}")]
    UnknownEcosystem(String),
    /// The version does not parse under the ecosystem's scheme.
    #[error("invalid {scheme:?} version {version:?}: {reason}")]
    Invalid {
        /// The version text.
        version: String,
        /// The scheme it was parsed with.
        scheme: Scheme,
        /// Why it does not parse.
        reason: String,
    },
}

/// Orders versions `a` and `b` of `ecosystem` (an OSV ecosystem name such as `Debian:12`).
pub fn compare(ecosystem: &str, a: &str, b: &str) -> Result<Ordering, VersionError> {
    let scheme = Scheme::of_ecosystem(ecosystem)
        .ok_or_else(|| VersionError::UnknownEcosystem(ecosystem.to_string()))?;
    let a = scheme.parse(a)?;
    let b = scheme.parse(b)?;
    // Same scheme on both sides, so `compare` is always `Some`.
    Ok(a.compare(&b).unwrap_or(Ordering::Equal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystems_and_semver() {
        assert_eq!(
            Scheme::of_ecosystem("Ubuntu:Pro:22.04:LTS"),
            Some(Scheme::Debian)
        );
        assert_eq!(Scheme::of_ecosystem("Maven"), None);
        assert_eq!(
            compare("crates.io", "1.0.0-rc.1", "v1.0.0"),
            Ok(Ordering::Less)
        );
        assert!(compare("Maven", "1", "2").is_err());
        assert!(compare("crates.io", "1.x", "2.0.0").is_err());
    }
}
