//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use gantry_scan::{Finding, ScanReport};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A Debian 12 rootfs holding the fixture copy of a real machine's dpkg status and os-release,
/// with Debian's own symlink `etc/os-release -> ../usr/lib/os-release`.
pub fn debian_rootfs(root: &Path) -> std::io::Result<()> {
    fs::create_dir_all(root.join("etc"))?;
    fs::create_dir_all(root.join("usr/lib"))?;
    fs::create_dir_all(root.join("var/lib/dpkg"))?;
    fs::copy(
        fixtures().join("debian12/os-release"),
        root.join("usr/lib/os-release"),
    )?;
    symlink("../usr/lib/os-release", root.join("etc/os-release"))?;
    fs::copy(
        fixtures().join("debian12/status"),
        root.join("var/lib/dpkg/status"),
    )?;
    Ok(())
}

/// Writes a Python distribution's `METADATA` under `site` (relative to `root`).
pub fn dist_info(
    root: &Path,
    site: &str,
    dir: &str,
    name: &str,
    version: &str,
) -> std::io::Result<()> {
    let path = root.join(site).join(dir);
    fs::create_dir_all(&path)?;
    fs::write(
        path.join("METADATA"),
        format!(
            "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test\n\nVersion: 0.0.0-not-a-header\n"
        ),
    )
}

/// The findings of `report` as (id, package, fixed) triples, sorted.
pub fn triples(report: &ScanReport) -> Vec<(String, String, Option<String>)> {
    let mut out: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.id.clone(), f.package.clone(), f.fixed.clone()))
        .collect();
    out.sort();
    out
}

pub fn finding<'a>(report: &'a ScanReport, id: &str, package: &str) -> Option<&'a Finding> {
    report
        .findings
        .iter()
        .find(|f| f.id == id && f.package == package)
}

pub fn ids(report: &ScanReport) -> Vec<&str> {
    let mut ids: Vec<&str> = report.findings.iter().map(|f| f.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    ids
}
