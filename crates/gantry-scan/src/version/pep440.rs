//! PEP 440 ordering, through the `pep440_rs` crate.

/// Parses a PEP 440 version (epochs, pre/post/dev releases, local versions).
pub(super) fn parse(version: &str) -> Result<pep440_rs::Version, String> {
    version
        .trim()
        .parse::<pep440_rs::Version>()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use crate::version::compare;

    #[test]
    fn pep440_order() {
        let ordered = [
            "1.0.dev1",
            "1.0a1",
            "1.0b2",
            "1.0rc1",
            "1.0",
            "1.0+local.1",
            "1.0.post1",
            "1.1",
            "2!0.1",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                compare("PyPI", pair[0], pair[1]),
                Ok(Ordering::Less),
                "{pair:?}"
            );
        }
        assert_eq!(compare("PyPI", "1.0", "1.0.0"), Ok(Ordering::Equal));
        assert_eq!(compare("PyPI", "1.0RC1", "1.0rc1"), Ok(Ordering::Equal));
        assert!(compare("PyPI", "not a version", "1.0").is_err());
    }
}
