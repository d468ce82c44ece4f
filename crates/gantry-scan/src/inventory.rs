//! What is installed in an unpacked image: the OS and its packages (dpkg, apk) and Python
//! distributions.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ScanError;
use crate::confined::RootFs;

/// Largest `os-release` read.
const OS_RELEASE_CAP: u64 = 64 * 1024;
/// Largest package database (dpkg `status`, apk `installed`) read.
const PACKAGE_DB_CAP: u64 = 64 * 1024 * 1024;
/// Largest file in `status.d` read.
const STATUS_D_FILE_CAP: u64 = 4 * 1024 * 1024;
/// Most files in `status.d`, distributions in one site directory.
const DIR_ENTRIES_CAP: usize = 100_000;
/// How much of a Python `METADATA` is read (the headers come first).
const METADATA_PREFIX: u64 = 256 * 1024;
/// Directories below a start directory searched for `site-packages`.
const PYTHON_WALK_DEPTH: usize = 7;
/// Directory entries looked at while searching for `site-packages`, all start dirs together.
const PYTHON_WALK_ENTRIES: usize = 500_000;
/// Where Python environments live.
const PYTHON_WALK_STARTS: &[&str] = &["usr/lib", "usr/local", "opt", "root", "home", "app", "srv"];

/// The OS of an image, from `os-release`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    /// `ID` (`debian`, `ubuntu`, `alpine`).
    pub id: String,
    /// `VERSION_ID` (`12`, `22.04`, `3.20.3`).
    pub version_id: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
    /// `VERSION_CODENAME` (`bookworm`).
    pub version_codename: Option<String>,
    /// The OSV ecosystem of its packages (`Debian:12`, `Ubuntu:22.04`, `Alpine:v3.20`), when
    /// known.
    pub ecosystem: Option<String>,
}

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// OSV ecosystem (`Debian:12`, `Alpine:v3.20`, `PyPI`); empty when the OS is unknown.
    pub ecosystem: String,
    /// The installed (binary) package name; PEP 503-normalized for PyPI.
    pub name: String,
    /// The name advisories use: the dpkg source package, the apk origin, else `name`.
    pub source: String,
    /// The installed version.
    pub version: String,
    /// The source package version when dpkg gives one (`Source: name (version)`); it is the
    /// one matched.
    pub source_version: Option<String>,
    /// Where it was found (`var/lib/dpkg/status`, a `METADATA` path).
    pub origin: String,
}

impl Package {
    /// The version compared with advisories: the source version when known.
    pub fn matched_version(&self) -> &str {
        self.source_version.as_deref().unwrap_or(&self.version)
    }
}

/// Everything [`inventory`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// The OS, when `os-release` exists.
    pub os: Option<OsInfo>,
    /// The packages, in the order found.
    pub packages: Vec<Package>,
    /// What could not be read or understood (never fatal).
    pub notes: Vec<String>,
}

/// Inventories the unpacked root filesystem at `rootfs`. Its content is untrusted: symlinks
/// are resolved inside it, sizes are capped, and unreadable parts become notes.
pub fn inventory(rootfs: &Path) -> Result<Inventory, ScanError> {
    let fs = RootFs::new(rootfs)?;
    let mut inv = Inventory::default();
    inv.os = read_os_release(&fs, &mut inv.notes);
    let os_ecosystem = inv.os.as_ref().and_then(|os| os.ecosystem.clone());
    let before = inv.packages.len();
    read_dpkg(&fs, &mut inv);
    read_apk(&fs, &mut inv);
    if inv.packages.len() > before && os_ecosystem.is_none() {
        let os = inv.os.as_ref().map_or("no os-release", |os| os.id.as_str());
        inv.notes.push(format!(
            "OS packages found but the OS is not one with an OSV ecosystem ({os}): they are not matched"
        ));
    }
    for pkg in &mut inv.packages[before..] {
        pkg.ecosystem = os_ecosystem.clone().unwrap_or_default();
    }
    read_python(&fs, &mut inv);
    Ok(inv)
}

fn read_os_release(fs: &RootFs, notes: &mut Vec<String>) -> Option<OsInfo> {
    for rel in ["etc/os-release", "usr/lib/os-release"] {
        match fs.read_file(rel, OS_RELEASE_CAP) {
            Ok(Some((bytes, _))) => {
                return Some(parse_os_release(&String::from_utf8_lossy(&bytes)));
            }
            Ok(None) => {}
            Err(reason) => notes.push(format!("os-release: {reason}")),
        }
    }
    notes.push("no os-release: OS unknown".to_string());
    None
}

/// Parses `os-release` (`KEY=value`, values optionally quoted).
pub(crate) fn parse_os_release(text: &str) -> OsInfo {
    let mut os = OsInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        let value = (!value.is_empty()).then_some(value);
        match key.trim() {
            "ID" => os.id = value.unwrap_or_default().to_ascii_lowercase(),
            "VERSION_ID" => os.version_id = value,
            "PRETTY_NAME" => os.pretty_name = value,
            "VERSION_CODENAME" => os.version_codename = value,
            _ => {}
        }
    }
    os.ecosystem = os_ecosystem(&os.id, os.version_id.as_deref());
    os
}

fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[bytes.len() - 1] == bytes[0]
    {
        let inner = &value[1..value.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut escaped = false;
        for c in inner.chars() {
            if escaped || c != '\\' || bytes[0] == b'\'' {
                out.push(c);
                escaped = false;
            } else {
                escaped = true;
            }
        }
        out
    } else {
        value.to_string()
    }
}

/// The OSV ecosystem of an OS's packages.
fn os_ecosystem(id: &str, version_id: Option<&str>) -> Option<String> {
    let version = version_id?;
    match id {
        "debian" => {
            let major = version.split('.').next().unwrap_or(version);
            Some(format!("Debian:{major}"))
        }
        "ubuntu" => Some(format!("Ubuntu:{version}")),
        "alpine" => {
            let mut parts = version.split(['.', '_']);
            let major = parts.next()?;
            let minor: String = parts
                .next()?
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            (!minor.is_empty()).then(|| format!("Alpine:v{major}.{minor}"))
        }
        _ => None,
    }
}

/// Splits an RFC 822-style control file into stanzas of `(field, first-line value)`;
/// continuation lines are dropped.
fn stanzas(text: &str) -> Vec<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    let mut current: Vec<(&str, &str)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            continue;
        } else if let Some((key, value)) = line.split_once(':') {
            current.push((key.trim(), value.trim()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn field<'a>(stanza: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    stanza
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
        .filter(|v| !v.is_empty())
}

/// Packages of a dpkg status file (or one `status.d` file). Stanzas without `Status` count as
/// installed (distroless writes none).
pub(crate) fn parse_dpkg(text: &str, origin: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in stanzas(text) {
        let (Some(name), Some(version)) = (field(&stanza, "Package"), field(&stanza, "Version"))
        else {
            continue;
        };
        if let Some(status) = field(&stanza, "Status")
            && status.split_whitespace().nth(2) != Some("installed")
        {
            continue;
        }
        let (source, source_version) = match field(&stanza, "Source") {
            Some(src) => match src.split_once('(') {
                Some((n, v)) => (
                    n.trim().to_string(),
                    Some(v.trim_end_matches(')').trim().to_string()).filter(|v| !v.is_empty()),
                ),
                None => (src.to_string(), None),
            },
            None => (name.to_string(), None),
        };
        out.push(Package {
            ecosystem: String::new(),
            name: name.to_string(),
            source,
            version: version.to_string(),
            source_version,
            origin: origin.to_string(),
        });
    }
    out
}

fn read_dpkg(fs: &RootFs, inv: &mut Inventory) {
    match fs.read_file("var/lib/dpkg/status", PACKAGE_DB_CAP) {
        Ok(Some((bytes, inside))) => inv
            .packages
            .extend(parse_dpkg(&String::from_utf8_lossy(&bytes), &inside)),
        Ok(None) => {}
        Err(reason) => inv.notes.push(format!("dpkg status: {reason}")),
    }
    let names = match fs.list_dir("var/lib/dpkg/status.d", DIR_ENTRIES_CAP) {
        Ok(Some((names, _))) => names,
        Ok(None) => return,
        Err(reason) => {
            inv.notes.push(format!("dpkg status.d: {reason}"));
            return;
        }
    };
    for name in names {
        if name.ends_with(".md5sums") || name.starts_with('.') {
            continue;
        }
        let rel = format!("var/lib/dpkg/status.d/{name}");
        match fs.read_file(&rel, STATUS_D_FILE_CAP) {
            Ok(Some((bytes, inside))) => inv
                .packages
                .extend(parse_dpkg(&String::from_utf8_lossy(&bytes), &inside)),
            Ok(None) => {}
            Err(reason) => inv.notes.push(format!("dpkg status.d: {reason}")),
        }
    }
}

/// Packages of an apk `installed` database (`P:` name, `V:` version, `o:` origin).
pub(crate) fn parse_apk(text: &str, origin: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in stanzas(text) {
        let (Some(name), Some(version)) = (field(&stanza, "P"), field(&stanza, "V")) else {
            continue;
        };
        let source = stanza
            .iter()
            .find(|(k, v)| *k == "o" && !v.is_empty())
            .map_or(name, |(_, v)| *v);
        out.push(Package {
            ecosystem: String::new(),
            name: name.to_string(),
            source: source.to_string(),
            version: version.to_string(),
            source_version: None,
            origin: origin.to_string(),
        });
    }
    out
}

fn read_apk(fs: &RootFs, inv: &mut Inventory) {
    match fs.read_file("lib/apk/db/installed", PACKAGE_DB_CAP) {
        Ok(Some((bytes, inside))) => inv
            .packages
            .extend(parse_apk(&String::from_utf8_lossy(&bytes), &inside)),
        Ok(None) => {}
        Err(reason) => inv.notes.push(format!("apk installed: {reason}")),
    }
}

/// PEP 503 normalization: lowercase, runs of `-`, `_`, `.` become one `-`.
pub(crate) fn normalize_pypi(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.extend(c.to_lowercase());
            in_sep = false;
        }
    }
    out
}

/// `Name` and `Version` of a core metadata file (headers end at the first blank line).
fn parse_metadata(text: &str) -> Option<(String, String)> {
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            match key.trim().to_ascii_lowercase().as_str() {
                "name" if name.is_none() => name = Some(value.trim().to_string()),
                "version" if version.is_none() => version = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    match (name, version) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => Some((n, v)),
        _ => None,
    }
}

fn read_python(fs: &RootFs, inv: &mut Inventory) {
    let mut site_dirs = Vec::new();
    let mut seen = HashSet::new();
    let mut budget = PYTHON_WALK_ENTRIES;
    for start in PYTHON_WALK_STARTS {
        match fs.resolve(start) {
            Ok(Some(resolved)) if resolved.meta.is_dir() => {
                if seen.insert(resolved.host.clone()) {
                    walk_for_site_dirs(
                        &resolved.host,
                        &resolved.inside,
                        0,
                        &mut budget,
                        &mut site_dirs,
                    );
                }
            }
            Ok(_) => {}
            Err(reason) => inv.notes.push(format!("python: {reason}")),
        }
    }
    if budget == 0 {
        inv.notes.push(format!(
            "python: stopped searching for site-packages after {PYTHON_WALK_ENTRIES} entries"
        ));
    }
    for site in site_dirs {
        let names = match fs.list_dir(&site, DIR_ENTRIES_CAP) {
            Ok(Some((names, _))) => names,
            Ok(None) => continue,
            Err(reason) => {
                inv.notes.push(format!("python: {reason}"));
                continue;
            }
        };
        for name in names {
            let candidates = if name.ends_with(".dist-info") {
                vec![format!("{site}/{name}/METADATA")]
            } else if name.ends_with(".egg-info") {
                vec![format!("{site}/{name}/PKG-INFO"), format!("{site}/{name}")]
            } else {
                continue;
            };
            for rel in candidates {
                match fs.resolve(&rel) {
                    Ok(Some(r)) if r.meta.is_file() => {}
                    _ => continue,
                }
                match fs.read_prefix(&rel, METADATA_PREFIX) {
                    Ok(Some((bytes, inside))) => {
                        match parse_metadata(&String::from_utf8_lossy(&bytes)) {
                            Some((n, version)) => {
                                let n = normalize_pypi(&n);
                                inv.packages.push(Package {
                                    ecosystem: "PyPI".to_string(),
                                    source: n.clone(),
                                    name: n,
                                    version,
                                    source_version: None,
                                    origin: inside,
                                });
                            }
                            None => inv
                                .notes
                                .push(format!("python: {inside}: no Name or Version")),
                        }
                    }
                    Ok(None) => {}
                    Err(reason) => inv.notes.push(format!("python: {reason}")),
                }
                break;
            }
        }
    }
}

/// Finds `site-packages`/`dist-packages` directories whose parent is `python*`, without
/// following symlinks (the start directory is already resolved inside the rootfs).
fn walk_for_site_dirs(
    host: &Path,
    inside: &str,
    depth: usize,
    budget: &mut usize,
    found: &mut Vec<String>,
) {
    let Ok(entries) = fs::read_dir(host) else {
        return;
    };
    let parent_is_python = inside
        .rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("python"));
    let mut dirs = Vec::new();
    for entry in entries {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(entry) = entry else { continue };
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if !file_type.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if inside.is_empty() {
            name.clone()
        } else {
            format!("{inside}/{name}")
        };
        if parent_is_python && (name == "site-packages" || name == "dist-packages") {
            found.push(child);
        } else if depth < PYTHON_WALK_DEPTH {
            dirs.push((entry.path(), child));
        }
    }
    dirs.sort();
    for (path, child) in dirs {
        walk_for_site_dirs(&path, &child, depth + 1, budget, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_ecosystems() {
        let os =
            parse_os_release("ID=alpine\nVERSION_ID=3.20.3\nPRETTY_NAME=\"Alpine Linux v3.20\"\n");
        assert_eq!(os.ecosystem.as_deref(), Some("Alpine:v3.20"));
        assert_eq!(os.pretty_name.as_deref(), Some("Alpine Linux v3.20"));
        let os = parse_os_release("ID=ubuntu\nVERSION_ID=\"22.04\"\nVERSION_CODENAME=jammy\n");
        assert_eq!(os.ecosystem.as_deref(), Some("Ubuntu:22.04"));
        let os = parse_os_release("ID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!(os.ecosystem.as_deref(), Some("Debian:12"));
        let os = parse_os_release("ID=debian\nPRETTY_NAME='Debian trixie/sid'\n");
        assert_eq!(os.ecosystem, None);
        assert_eq!(os.pretty_name.as_deref(), Some("Debian trixie/sid"));
    }

    #[test]
    fn dpkg_stanzas() {
        let text = "Package: a\nStatus: install ok installed\nVersion: 1.0-1\nSource: src-a (1:1.0-1)\nDescription: x\n more\n\n\
                    Package: b\nStatus: deinstall ok config-files\nVersion: 2\n\n\
                    Package: c\nStatus: install ok half-installed\nVersion: 3\n\n\
                    Package: d\nVersion: 4\nSource: dsrc\n";
        let pkgs = parse_dpkg(text, "status");
        let got: Vec<_> = pkgs
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.source.as_str(),
                    p.source_version.as_deref(),
                )
            })
            .collect();
        assert_eq!(got, [("a", "src-a", Some("1:1.0-1")), ("d", "dsrc", None)]);
    }

    #[test]
    fn pep503() {
        assert_eq!(normalize_pypi("Foo.Bar__baz-_-Qux"), "foo-bar-baz-qux");
        assert_eq!(normalize_pypi("PyYAML"), "pyyaml");
    }
}
