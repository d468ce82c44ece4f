//! dpkg version ordering, through the `debversion` crate.

/// Parses a dpkg version (`[epoch:]upstream[-revision]`).
pub(super) fn parse(version: &str) -> Result<debversion::Version, String> {
    let version = version.trim();
    if version.is_empty() {
        return Err("empty version".to_string());
    }
    version
        .parse()
        .map_err(|e: debversion::ParseError| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;
    use std::process::Command;

    use crate::version::compare;

    /// Pairs whose order is easy to get wrong: epochs, `~`, `+debNuM`, letters vs digits.
    const PAIRS: &[(&str, &str)] = &[
        ("1:1.2.13.dfsg-1", "1.2.13.dfsg-1"),
        ("1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1.1"),
        ("1:1.2.13.dfsg-1", "2:0.1"),
        ("2.9.14+dfsg-1.3~deb12u1", "2.9.14+dfsg-1.3"),
        ("2.9.14+dfsg-1.3~deb12u1", "2.9.14+dfsg-1.3~deb12u2"),
        ("2.9.14+dfsg-1.3~deb12u5", "2.9.14+dfsg-1.2"),
        ("3.0.19-1~deb12u2", "3.0.19-1"),
        ("2.36-9+deb12u14", "2.36-9+deb12u9"),
        ("2.36-9+deb12u4", "2.36-9"),
        ("2.36-9+deb12u4", "2.36-10"),
        ("1.0~rc1-1", "1.0-1"),
        ("1.0~rc1~1", "1.0~rc1"),
        ("1.0~~", "1.0~"),
        ("1.0a", "1.0+"),
        ("1.0", "1.0.0"),
        ("1.0-1", "1.0"),
        ("1.0-0", "1.0"),
        ("0:1.0", "1.0"),
        ("1.01", "1.1"),
        ("5.36.0-7+deb12u2", "5.36.0-7+deb12u1"),
        ("2.38.1-5+deb12u3", "2.38.1-5+b1"),
        ("1.2.3+really1.2.2-1", "1.2.3-1"),
        ("10", "9"),
        ("1.0.", "1.0"),
        ("a", "b"),
        ("1.0-1ubuntu0.22.04.1", "1.0-1ubuntu0.22.04.2"),
        ("1.0-1ubuntu0.1", "1.0-1build1"),
        ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12"),
    ];

    fn dpkg_says(a: &str, op: &str, b: &str) -> Option<bool> {
        let status = Command::new("dpkg")
            .args(["--compare-versions", a, op, b])
            .status()
            .ok()?;
        Some(status.success())
    }

    #[test]
    fn agrees_with_dpkg() {
        let mut checked = 0;
        for (a, b) in PAIRS {
            let ours = compare("Debian:12", a, b).map_err(|e| e.to_string());
            let Ok(ours) = ours else {
                panic!("{a} vs {b}: {ours:?}");
            };
            let (Some(lt), Some(eq)) = (dpkg_says(a, "lt", b), dpkg_says(a, "eq", b)) else {
                let required = std::env::var_os("GANTRY_TEST_REQUIRE_ALL")
                    .is_some_and(|v| !v.is_empty() && v != "0");
                assert!(!required, "dpkg not found: install Debian's dpkg");
                eprintln!("skipped: dpkg not found, so ordering is not compared with it");
                return;
            };
            let theirs = if lt {
                Ordering::Less
            } else if eq {
                Ordering::Equal
            } else {
                Ordering::Greater
            };
            assert_eq!(ours, theirs, "{a} vs {b}");
            assert_eq!(
                compare("Debian:12", b, a).ok(),
                Some(theirs.reverse()),
                "{b} vs {a}"
            );
            checked += 1;
        }
        assert_eq!(checked, PAIRS.len());
    }

    #[test]
    fn known_orders() {
        let lt = |a, b| compare("Debian:12", a, b) == Ok(Ordering::Less);
        assert!(lt("1.2.13.dfsg-1", "1:1.2.13.dfsg-1"));
        assert!(lt("2.9.14+dfsg-1.3~deb12u1", "2.9.14+dfsg-1.3"));
        assert!(lt("1.0~rc1", "1.0"));
        assert!(lt("2.36-9", "2.36-9+deb12u1"));
        assert!(compare("Debian:12", "", "1").is_err());
    }
}
