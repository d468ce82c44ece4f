//! Matching an inventory against the database.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::db::{Affected, Event, Range, Record};
use crate::inventory::{OsInfo, Package};
use crate::version::{Scheme, Version};
use crate::{Database, Inventory, Severity};

/// One vulnerability of one installed package.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The OSV id (`DEBIAN-CVE-2023-45853`, `GHSA-…`).
    pub id: String,
    /// Other ids of the same vulnerability (`CVE-…`).
    pub aliases: Vec<String>,
    /// The installed package (binary name for dpkg).
    pub package: String,
    /// The name matched (dpkg source package, apk origin, normalized PyPI name).
    pub source: String,
    /// The OSV ecosystem of the package (`Debian:12`).
    pub ecosystem: String,
    /// The installed version (of the binary package).
    pub installed: String,
    /// The first fixed version after the installed one, when the advisory names one.
    pub fixed: Option<String>,
    /// How bad it is.
    pub severity: Severity,
    /// The CVSS base score, when a vector was given.
    pub score: Option<f64>,
    /// The advisory's summary (truncated).
    pub summary: String,
}

/// The result of [`scan`]: what `gantry image scan --output json` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    /// The image's OS.
    pub os: Option<OsInfo>,
    /// Findings, most severe first, then by id and package.
    pub findings: Vec<Finding>,
    /// Packages looked at.
    pub packages_scanned: usize,
    /// Findings per severity (every severity is present).
    pub counts: BTreeMap<Severity, usize>,
    /// [`Database::version`] of the database used.
    pub db_version: String,
    /// Inventory notes, versions that could not be ordered, ecosystems the database lacks.
    pub notes: Vec<String>,
}

/// Matches every package of `inventory` against `db`.
///
/// A package matches a record's affected entry with the same ecosystem (Ubuntu's `:LTS` and
/// `Pro:` forms included) and name (the source name for dpkg, the origin for apk, the
/// normalized name for PyPI) when its version is in one of the entry's ranges or listed in its
/// `versions`. Versions that cannot be parsed are noted and not matched.
pub fn scan(inventory: &Inventory, db: &Database) -> ScanReport {
    let mut notes = inventory.notes.clone();
    let mut findings = Vec::new();
    let mut uncovered: BTreeMap<&str, usize> = BTreeMap::new();
    for pkg in &inventory.packages {
        if pkg.ecosystem.is_empty() {
            continue;
        }
        if !db.covers(&pkg.ecosystem) {
            *uncovered.entry(pkg.ecosystem.as_str()).or_insert(0) += 1;
            continue;
        }
        scan_package(pkg, db, &mut findings, &mut notes);
    }
    for (ecosystem, n) in uncovered {
        notes.push(format!(
            "the database has no records for {ecosystem}: {n} packages not checked (import its OSV data)"
        ));
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.package.cmp(&b.package))
    });
    let mut counts: BTreeMap<Severity, usize> = Severity::ALL.iter().map(|s| (*s, 0)).collect();
    for f in &findings {
        *counts.entry(f.severity).or_insert(0) += 1;
    }
    ScanReport {
        os: inventory.os.clone(),
        findings,
        packages_scanned: inventory.packages.len(),
        counts,
        db_version: db.version().to_string(),
        notes,
    }
}

fn scan_package(
    pkg: &Package,
    db: &Database,
    findings: &mut Vec<Finding>,
    notes: &mut Vec<String>,
) {
    let Some(scheme) = Scheme::of_ecosystem(&pkg.ecosystem) else {
        return;
    };
    let version_text = pkg.matched_version();
    let mut installed: Option<Result<Version, String>> = None;
    let mut installed_semver: Option<Result<Version, String>> = None;
    let mut seen = BTreeSet::new();
    let mut noted = BTreeSet::new();
    for (record, affected) in db.candidates(&pkg.ecosystem, &pkg.source) {
        if seen.contains(record.id.as_str()) {
            continue;
        }
        let mut matched: Option<Option<String>> = None;
        if affected.versions.iter().any(|v| v == version_text) {
            matched = Some(None);
        }
        for range in &affected.ranges {
            if matched.is_some() {
                break;
            }
            let (scheme, slot) = if range.semver {
                (Scheme::Semver, &mut installed_semver)
            } else {
                (scheme, &mut installed)
            };
            let parsed =
                slot.get_or_insert_with(|| scheme.parse(version_text).map_err(|e| e.to_string()));
            let v = match parsed {
                Ok(v) => v,
                Err(e) => {
                    if noted.insert(format!("{scheme:?}")) {
                        notes.push(format!("{} {}: {e}; not matched", pkg.name, pkg.origin));
                    }
                    continue;
                }
            };
            match in_range(range, v, scheme) {
                Ok(Some(fixed)) => matched = Some(fixed),
                Ok(None) => {}
                Err(e) => {
                    if noted.insert(record.id.clone()) {
                        notes.push(format!("{}: {e}; range skipped", record.id));
                    }
                }
            }
        }
        if matched.is_none() && !affected.versions.is_empty() {
            let parsed = installed
                .get_or_insert_with(|| scheme.parse(version_text).map_err(|e| e.to_string()));
            matched = listed(affected, scheme, parsed).then_some(None);
        }
        if let Some(fixed) = matched {
            seen.insert(record.id.as_str());
            findings.push(finding(pkg, record, affected, fixed));
        }
    }
}

/// Whether the installed version equals (by the ecosystem's ordering) a listed version.
fn listed(affected: &Affected, scheme: Scheme, installed: &Result<Version, String>) -> bool {
    let Ok(v) = installed else {
        return false;
    };
    affected
        .versions
        .iter()
        .any(|s| matches!(scheme.parse(s), Ok(p) if p.compare(v) == Some(Ordering::Equal)))
}

fn finding(pkg: &Package, record: &Record, affected: &Affected, fixed: Option<String>) -> Finding {
    Finding {
        id: record.id.clone(),
        aliases: record.aliases.clone(),
        package: pkg.name.clone(),
        source: pkg.source.clone(),
        ecosystem: pkg.ecosystem.clone(),
        installed: pkg.version.clone(),
        fixed,
        severity: affected.severity,
        score: affected.score,
        summary: record.summary.clone(),
    }
}

/// `Ok(Some(fixed))` when `v` is inside `range` (with the next fixed version, if any),
/// `Ok(None)` when outside, `Err` when an event version does not parse.
///
/// OSV semantics: events are sorted by version (`introduced: "0"` first); walking them, an
/// `introduced` at or below `v` opens the range, a `fixed` or `limit` at or below `v` or a
/// `last_affected` below `v` closes it.
pub(crate) fn in_range(
    range: &Range,
    v: &Version,
    scheme: Scheme,
) -> Result<Option<Option<String>>, String> {
    let mut events: Vec<(Option<Version>, &Event)> = Vec::with_capacity(range.events.len());
    for event in &range.events {
        let text = match event {
            Event::Introduced(t) if t == "0" => {
                events.push((None, event));
                continue;
            }
            Event::Introduced(t) | Event::Fixed(t) | Event::LastAffected(t) | Event::Limit(t) => t,
        };
        let parsed = scheme.parse(text).map_err(|e| e.to_string())?;
        events.push((Some(parsed), event));
    }
    events.sort_by(|(a, ea), (b, eb)| {
        let by_version = match (a, b) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(a), Some(b)) => a.compare(b).unwrap_or(Ordering::Equal),
        };
        by_version.then_with(|| event_rank(ea).cmp(&event_rank(eb)))
    });
    let mut affected = false;
    let mut fixed = None;
    for (at, event) in &events {
        let cmp = at
            .as_ref()
            .map(|at| v.compare(at).unwrap_or(Ordering::Less));
        let applies = match event {
            Event::Introduced(_) => cmp.is_none_or(|c| c != Ordering::Less),
            Event::Fixed(_) | Event::Limit(_) => cmp.is_some_and(|c| c != Ordering::Less),
            Event::LastAffected(_) => cmp == Some(Ordering::Greater),
        };
        if applies {
            affected = matches!(event, Event::Introduced(_));
        } else if affected {
            if let Event::Fixed(t) = event {
                fixed = Some(t.clone());
            }
            break;
        }
    }
    Ok(affected.then_some(fixed))
}

fn event_rank(event: &Event) -> u8 {
    match event {
        Event::Introduced(_) => 0,
        Event::LastAffected(_) => 1,
        Event::Fixed(_) => 2,
        Event::Limit(_) => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(events: &[(&str, &str)]) -> Range {
        Range {
            semver: false,
            events: events
                .iter()
                .map(|(k, v)| match *k {
                    "i" => Event::Introduced(v.to_string()),
                    "f" => Event::Fixed(v.to_string()),
                    "l" => Event::LastAffected(v.to_string()),
                    _ => Event::Limit(v.to_string()),
                })
                .collect(),
        }
    }

    fn check(events: &[(&str, &str)], v: &str) -> Option<Option<String>> {
        let scheme = Scheme::Pep440;
        let v = scheme.parse(v).ok()?;
        in_range(&range(events), &v, scheme).ok()?
    }

    #[test]
    fn osv_range_semantics() {
        let r = [("i", "0"), ("f", "1.5")];
        assert_eq!(check(&r, "1.0"), Some(Some("1.5".to_string())));
        assert_eq!(check(&r, "1.5"), None);
        let r = [("i", "1.0"), ("l", "1.2")];
        assert_eq!(check(&r, "0.9"), None);
        assert_eq!(check(&r, "1.2"), Some(None));
        assert_eq!(check(&r, "1.2.1"), None);
        // Two windows, events given out of order.
        let r = [("f", "2.5"), ("i", "2.0"), ("f", "1.5"), ("i", "1.0")];
        assert_eq!(check(&r, "1.7"), None);
        assert_eq!(check(&r, "2.1"), Some(Some("2.5".to_string())));
        assert_eq!(check(&r, "1.0"), Some(Some("1.5".to_string())));
        let r = [("i", "0"), ("x", "3.0")];
        assert_eq!(check(&r, "2.9"), Some(None));
        assert_eq!(check(&r, "3.0"), None);
        let r = [("i", "0")];
        assert_eq!(check(&r, "99"), Some(None));
    }
}
