//! An Alpine image with Python environments: apk packages matched by origin, Python
//! distributions by their PEP 503 name with PEP 440 ordering.

mod common;

use std::fs;

use common::*;
use gantry_scan::{Database, Severity, import, inventory, scan};

#[test]
fn alpine_packages_are_matched_by_origin_with_apk_ordering() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db_dir = dir.path().join("db");
    import(&db_dir, &fixtures().join("osv-alpine/alpine.json"))?;
    let root = fixtures().join("alpine/rootfs");

    let inv = inventory(&root)?;
    let os = inv.os.as_ref().ok_or("no os")?;
    assert_eq!(os.ecosystem.as_deref(), Some("Alpine:v3.20"));
    assert_eq!(os.pretty_name.as_deref(), Some("Alpine Linux v3.20"));
    assert_eq!(inv.packages.len(), 6);
    let libssl = inv
        .packages
        .iter()
        .find(|p| p.name == "libssl3")
        .ok_or("libssl3")?;
    assert_eq!(
        (libssl.source.as_str(), libssl.origin.as_str()),
        ("openssl", "lib/apk/db/installed")
    );

    let report = scan(&inv, &Database::open(&db_dir)?.ok_or("no db")?);
    assert_eq!(
        triples(&report),
        [
            (
                "ALPINE-CVE-2099-0101".into(),
                "libcrypto3".into(),
                Some("3.3.2-r1".into())
            ),
            (
                "ALPINE-CVE-2099-0101".into(),
                "libssl3".into(),
                Some("3.3.2-r1".into())
            ),
            (
                "ALPINE-CVE-2099-0103".into(),
                "zlib".into(),
                Some("1.3.1_p1-r0".into())
            ),
        ]
    );
    let f = finding(&report, "ALPINE-CVE-2099-0101", "libssl3").ok_or("finding")?;
    assert_eq!((f.severity, f.score), (Severity::High, Some(7.5)));
    Ok(())
}

#[test]
fn python_distributions_are_found_in_site_and_dist_packages_and_ordered_by_pep_440() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("rootfs");
    fs::create_dir_all(root.join("etc"))?;
    fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )?;
    fs::create_dir_all(root.join("var/lib/dpkg"))?;
    fs::write(
        root.join("var/lib/dpkg/status"),
        "Package: python3-requests\nStatus: install ok installed\nVersion: 2.28.1+dfsg-1\nSource: requests\n",
    )?;
    let debian_site = "usr/lib/python3/dist-packages";
    dist_info(
        &root,
        debian_site,
        "requests-2.28.1.dist-info",
        "requests",
        "2.28.1",
    )?;
    let venv = "opt/venv/lib/python3.11/site-packages";
    dist_info(&root, venv, "PyYAML-6.0rc1.dist-info", "PyYAML", "6.0rc1")?;
    dist_info(
        &root,
        venv,
        "zope.interface-1.0.dist-info",
        "zope.interface",
        "1.0",
    )?;
    dist_info(&root, venv, "epoched-1!1.0.dist-info", "Epoched", "1!1.0")?;
    dist_info(
        &root,
        "usr/local/lib/python3.12/dist-packages",
        "Jinja2-3.1.2.dist-info",
        "Jinja2",
        "3.1.2",
    )?;
    dist_info(
        &root,
        "root/.local/lib/python3.12/site-packages",
        "Broken.dist-info",
        "",
        "",
    )?;
    // An egg-info file, as older Debian packages ship.
    fs::write(
        root.join(debian_site).join("six-1.16.0.egg-info"),
        "Metadata-Version: 1.1\nName: six\nVersion: 1.16.0\n",
    )?;
    // Not under a python* directory: not a site directory.
    dist_info(
        &root,
        "opt/other/site-packages",
        "hidden-1.0.dist-info",
        "hidden",
        "1.0",
    )?;
    let db_dir = dir.path().join("db");
    import(&db_dir, &fixtures().join("osv-pypi/pypi.json"))?;

    let inv = inventory(&root)?;
    let mut python: Vec<(&str, &str)> = inv
        .packages
        .iter()
        .filter(|p| p.ecosystem == "PyPI")
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    python.sort();
    assert_eq!(
        python,
        [
            ("epoched", "1!1.0"),
            ("jinja2", "3.1.2"),
            ("pyyaml", "6.0rc1"),
            ("requests", "2.28.1"),
            ("six", "1.16.0"),
            ("zope-interface", "1.0"),
        ]
    );
    // Debian's python3-requests is reported by dpkg too, in its own ecosystem.
    assert!(
        inv.packages
            .iter()
            .any(|p| p.ecosystem == "Debian:12" && p.source == "requests")
    );
    assert!(
        inv.notes.iter().any(|n| n.contains("Broken.dist-info")),
        "{:?}",
        inv.notes
    );
    let origin = &inv
        .packages
        .iter()
        .find(|p| p.name == "pyyaml")
        .ok_or("pyyaml")?
        .origin;
    assert_eq!(
        origin,
        "opt/venv/lib/python3.11/site-packages/PyYAML-6.0rc1.dist-info/METADATA"
    );

    let report = scan(&inv, &Database::open(&db_dir)?.ok_or("no db")?);
    assert_eq!(
        triples(&report),
        [
            (
                "GHSA-2099-0001-aaaa".into(),
                "requests".into(),
                Some("2.32.0".into())
            ),
            (
                "GHSA-2099-0002-aaaa".into(),
                "pyyaml".into(),
                Some("6.0".into())
            ),
            (
                "GHSA-2099-0004-aaaa".into(),
                "zope-interface".into(),
                Some("1.0.post1".into())
            ),
            ("GHSA-2099-0007-aaaa".into(), "jinja2".into(), None),
            (
                "PYSEC-2099-6".into(),
                "epoched".into(),
                Some("1!1.0.post1".into())
            ),
        ]
    );
    let requests = finding(&report, "GHSA-2099-0001-aaaa", "requests").ok_or("requests")?;
    assert_eq!(
        (requests.severity, requests.score),
        (Severity::Medium, None)
    );
    assert_eq!(requests.aliases, ["CVE-2099-0201"]);
    let yaml = finding(&report, "GHSA-2099-0002-aaaa", "pyyaml").ok_or("pyyaml")?;
    assert_eq!((yaml.severity, yaml.score), (Severity::Critical, Some(9.3)));
    // The database has no Debian records: the dpkg package is not checked, and a note says so.
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("no records for Debian:12")),
        "{:?}",
        report.notes
    );
    Ok(())
}

#[test]
fn a_version_that_does_not_parse_is_a_note_not_a_match() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("rootfs");
    dist_info(
        &root,
        "usr/lib/python3.11/site-packages",
        "requests-x.dist-info",
        "requests",
        "not!a!version",
    )?;
    let db_dir = dir.path().join("db");
    import(&db_dir, &fixtures().join("osv-pypi/pypi.json"))?;

    let report = scan(
        &inventory(&root)?,
        &Database::open(&db_dir)?.ok_or("no db")?,
    );

    assert!(report.findings.is_empty());
    assert!(
        report.notes.iter().any(|n| n.contains("not!a!version")),
        "{:?}",
        report.notes
    );
    Ok(())
}
