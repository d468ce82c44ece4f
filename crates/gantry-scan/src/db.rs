//! The offline OSV database: import (zip, directory, JSON file), compact storage, loading.
//!
//! Storage: one file, `<db_dir>/osv-db.jsonl`. Its first line is a header
//! `{"format":1,"version":"sha256:…","records":N,"ecosystems":{…}}`; each further line is one
//! compact record (id, aliases, modified, a truncated summary, and per affected package the
//! ecosystem, name, ranges, versions and the severity computed at import), sorted by id.
//! `version` is the SHA-256 of the record lines, so it is stable across reopening and changes
//! whenever the content does. The file is replaced atomically (temporary file, fsync, rename,
//! fsync of the directory), and imports into one directory are serialized by an advisory lock
//! on `<db_dir>/.import.lock`; readers never need it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::confined::read_capped;
use crate::inventory::normalize_pypi;
use crate::osv::{OsvAffected, OsvRecord};
use crate::version::Scheme;
use crate::{ScanError, Severity};

/// The database file inside the database directory.
const DB_FILE: &str = "osv-db.jsonl";
/// Held (advisory lock) while an import runs.
const LOCK_FILE: &str = ".import.lock";
/// The storage format written and understood.
const FORMAT: u32 = 1;
/// Largest single JSON file or zip entry imported.
pub(crate) const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;
/// Most zip entries or directory entries looked at in one import.
pub(crate) const MAX_ENTRIES: usize = 2_000_000;
/// Most bytes decompressed or read in one import.
pub(crate) const MAX_TOTAL_BYTES: u64 = 32 * 1024 * 1024 * 1024;
/// Deepest directory level searched for `*.json`.
const MAX_DIR_DEPTH: usize = 16;
/// Skipped entries listed in an [`ImportReport`]; the rest are only counted.
const MAX_LISTED_SKIPS: usize = 1000;
/// Characters of summary kept.
const SUMMARY_CHARS: usize = 200;

/// A range event, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Event {
    /// `introduced` (`"0"`: from the beginning).
    #[serde(rename = "i")]
    Introduced(String),
    /// `fixed`: this version and later are not affected.
    #[serde(rename = "f")]
    Fixed(String),
    /// `last_affected`: later versions are not affected.
    #[serde(rename = "l")]
    LastAffected(String),
    /// `limit`: this version and later are outside the range.
    #[serde(rename = "x")]
    Limit(String),
}

/// A range, as stored: `ECOSYSTEM` (ordered by the ecosystem) or `SEMVER`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Range {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub semver: bool,
    pub events: Vec<Event>,
}

/// An affected package, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Affected {
    pub ecosystem: String,
    /// PEP 503-normalized for PyPI.
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// A record, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: String,
    pub modified: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    pub affected: Vec<Affected>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    version: String,
    records: usize,
    ecosystems: BTreeMap<String, usize>,
}

/// A record or affected entry left out of an import, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The file (or `archive.zip:entry`) it came from.
    pub file: String,
    /// Why (malformed JSON, an unsupported ecosystem, too large).
    pub reason: String,
}

/// What [`import`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Records new to the database.
    pub imported: usize,
    /// Records that replaced an older version of themselves (a newer `modified`).
    pub replaced: usize,
    /// Records already present with the same or a newer `modified`.
    pub unchanged: usize,
    /// Withdrawn records seen (never stored).
    pub withdrawn_skipped: usize,
    /// Previously stored records removed because they are now withdrawn.
    pub removed: usize,
    /// What was left out, at most 1000 entries (see `skipped_total`).
    pub skipped: Vec<Skipped>,
    /// How many things were left out in all.
    pub skipped_total: usize,
    /// Records read from the source per ecosystem (an OSV ecosystem name such as `Debian:12`).
    pub ecosystems: BTreeMap<String, usize>,
    /// Records in the database after the import.
    pub total: usize,
    /// The database version after the import ([`Database::version`]).
    pub version: String,
}

impl ImportReport {
    fn skip(&mut self, file: &str, reason: impl Into<String>) {
        self.skipped_total += 1;
        if self.skipped.len() < MAX_LISTED_SKIPS {
            self.skipped.push(Skipped {
                file: file.to_string(),
                reason: reason.into(),
            });
        }
    }
}

/// A loaded OSV database, indexed for matching.
#[derive(Debug)]
pub struct Database {
    version: String,
    records: Vec<Record>,
    ecosystems: BTreeMap<String, usize>,
    /// (match ecosystem, package name) → (record, affected) indices.
    index: HashMap<(String, String), Vec<(u32, u32)>>,
    /// Match ecosystems with at least one record.
    match_ecosystems: BTreeSet<String>,
}

impl Database {
    /// Loads the database in `db_dir`; `Ok(None)` when nothing has been imported there.
    pub fn open(db_dir: &Path) -> Result<Option<Database>, ScanError> {
        let Some((header, records)) = load(db_dir)? else {
            return Ok(None);
        };
        Ok(Some(Database::build(header.version, records)))
    }

    fn build(version: String, records: Vec<Record>) -> Database {
        let mut index: HashMap<(String, String), Vec<(u32, u32)>> = HashMap::new();
        let mut match_ecosystems = BTreeSet::new();
        for (r, record) in records.iter().enumerate() {
            for (a, affected) in record.affected.iter().enumerate() {
                let eco = match_ecosystem(&affected.ecosystem);
                match_ecosystems.insert(eco.clone());
                let (Ok(r), Ok(a)) = (u32::try_from(r), u32::try_from(a)) else {
                    continue;
                };
                index
                    .entry((eco, affected.name.clone()))
                    .or_default()
                    .push((r, a));
            }
        }
        let ecosystems = count_ecosystems(records.iter());
        Database {
            version,
            records,
            ecosystems,
            index,
            match_ecosystems,
        }
    }

    /// A digest of the stored content (`sha256:…`): the same after reopening, different after
    /// any change.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How many records are stored.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records per OSV ecosystem (`Debian:12`, `Ubuntu:22.04:LTS`, `PyPI`).
    pub fn ecosystems(&self) -> &BTreeMap<String, usize> {
        &self.ecosystems
    }

    /// The (record, affected) entries for a package of `ecosystem` named `name`.
    pub(crate) fn candidates(
        &self,
        ecosystem: &str,
        name: &str,
    ) -> impl Iterator<Item = (&Record, &Affected)> {
        self.index
            .get(&(match_ecosystem(ecosystem), name.to_string()))
            .into_iter()
            .flatten()
            .filter_map(|(r, a)| {
                let record = self.records.get(*r as usize)?;
                Some((record, record.affected.get(*a as usize)?))
            })
    }

    /// Whether any record concerns `ecosystem` (compared as matching does).
    pub(crate) fn covers(&self, ecosystem: &str) -> bool {
        self.match_ecosystems.contains(&match_ecosystem(ecosystem))
    }
}

/// The ecosystem key used for matching: Ubuntu's `Ubuntu:22.04:LTS` and
/// `Ubuntu:Pro:22.04:LTS` both become `Ubuntu:22.04`; others are kept as they are.
pub(crate) fn match_ecosystem(ecosystem: &str) -> String {
    if let Some(rest) = ecosystem.strip_prefix("Ubuntu:") {
        let release = rest
            .split(':')
            .find(|p| *p != "Pro" && *p != "LTS")
            .unwrap_or(rest);
        return format!("Ubuntu:{release}");
    }
    ecosystem.to_string()
}

fn count_ecosystems<'a>(records: impl Iterator<Item = &'a Record>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for record in records {
        let set: BTreeSet<&str> = record
            .affected
            .iter()
            .map(|a| a.ecosystem.as_str())
            .collect();
        for eco in set {
            *out.entry(eco.to_string()).or_insert(0) += 1;
        }
    }
    out
}

fn db_path(db_dir: &Path) -> PathBuf {
    db_dir.join(DB_FILE)
}

fn load(db_dir: &Path) -> Result<Option<(Header, Vec<Record>)>, ScanError> {
    let path = db_path(db_dir);
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ScanError::io(&path, e)),
    };
    let corrupt = |reason: String| ScanError::CorruptDatabase {
        path: path.clone(),
        reason,
    };
    let mut lines = std::io::BufReader::with_capacity(1 << 20, file).split(b'\n');
    let first = lines
        .next()
        .ok_or_else(|| corrupt("empty file".to_string()))?
        .map_err(|e| ScanError::io(&path, e))?;
    let header: Header =
        serde_json::from_slice(&first).map_err(|e| corrupt(format!("header: {e}")))?;
    if header.format != FORMAT {
        return Err(corrupt(format!(
            "format {} (this build reads {FORMAT}); re-import",
            header.format
        )));
    }
    let mut records = Vec::with_capacity(header.records.min(1 << 22));
    for (n, line) in lines.enumerate() {
        let line = line.map_err(|e| ScanError::io(&path, e))?;
        if line.is_empty() {
            continue;
        }
        let record: Record = serde_json::from_slice(&line)
            .map_err(|e| corrupt(format!("record line {}: {e}", n + 2)))?;
        records.push(record);
    }
    if records.len() != header.records {
        return Err(corrupt(format!(
            "{} records, header says {}",
            records.len(),
            header.records
        )));
    }
    Ok(Some((header, records)))
}

/// Serializes `records` (sorted by id) and writes the database atomically; returns the
/// version.
fn store(db_dir: &Path, records: &BTreeMap<String, Record>) -> Result<String, ScanError> {
    fs::create_dir_all(db_dir).map_err(|e| ScanError::io(db_dir, e))?;
    let (body, version) = serialize_records(records.values())?;
    let header = Header {
        format: FORMAT,
        version: version.clone(),
        records: records.len(),
        ecosystems: count_ecosystems(records.values()),
    };
    let path = db_path(db_dir);
    let tmp = db_dir.join(format!(".{DB_FILE}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        serde_json::to_writer(&mut file, &header)?;
        file.write_all(b"\n")?;
        file.write_all(&body)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        fs::File::open(db_dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        ScanError::io(&path, e)
    })?;
    Ok(version)
}

fn serialize_records<'a>(
    records: impl Iterator<Item = &'a Record>,
) -> Result<(Vec<u8>, String), ScanError> {
    let mut body = Vec::new();
    for record in records {
        serde_json::to_writer(&mut body, record).map_err(|e| ScanError::CorruptDatabase {
            path: PathBuf::from(&record.id),
            reason: format!("cannot serialize: {e}"),
        })?;
        body.push(b'\n');
    }
    let version = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    Ok((body, version))
}

/// Merges the OSV records at `source` into the database in `db_dir` (created if needed).
///
/// `source` is a `.zip` (osv.dev's per-ecosystem `all.zip`), a directory searched recursively
/// for `*.json`, or one `.json` file holding a record or an array of records. A record
/// replaces a stored one with the same `id` only when its `modified` is newer. Malformed
/// records, oversized files and affected entries of ecosystems without a version ordering are
/// skipped and reported; withdrawn records are dropped (and removed when stored). The whole
/// import fails only when the source or the database cannot be read or written.
pub fn import(db_dir: &Path, source: &Path) -> Result<ImportReport, ScanError> {
    // One import at a time per database: an advisory lock held until this returns (the OS
    // releases it if the process dies).
    fs::create_dir_all(db_dir).map_err(|e| ScanError::io(db_dir, e))?;
    let lock_path = db_dir.join(LOCK_FILE);
    let lock = fs::File::create(&lock_path).map_err(|e| ScanError::io(&lock_path, e))?;
    lock.lock().map_err(|e| ScanError::io(&lock_path, e))?;
    let (mut records, old_version): (BTreeMap<String, Record>, Option<String>) = match load(db_dir)?
    {
        Some((header, records)) => (
            records.into_iter().map(|r| (r.id.clone(), r)).collect(),
            Some(header.version),
        ),
        None => (BTreeMap::new(), None),
    };
    let mut report = ImportReport::default();
    let mut changed = false;
    read_source(
        source,
        &mut |label: &str, bytes: &[u8], report: &mut ImportReport| {
            for parsed in parse_document(label, bytes, report) {
                merge(parsed, &mut records, report, &mut changed);
            }
        },
        &mut report,
    )?;
    report.version = match old_version {
        Some(version) if !changed => version,
        _ => store(db_dir, &records)?,
    };
    report.total = records.len();
    drop(lock);
    Ok(report)
}

/// Hands every JSON document of `source` to `sink` as (label, bytes).
fn read_source(
    source: &Path,
    sink: &mut dyn FnMut(&str, &[u8], &mut ImportReport),
    report: &mut ImportReport,
) -> Result<(), ScanError> {
    let meta = fs::metadata(source).map_err(|e| ScanError::io(source, e))?;
    let label = source.display().to_string();
    if meta.is_dir() {
        let mut state = WalkState::default();
        walk_dir(source, source, 0, sink, report, &mut state)?;
        return Ok(());
    }
    let ext = source
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("zip") => read_zip(source, sink, report),
        Some("json") => {
            match read_capped(source, MAX_JSON_BYTES, true) {
                Ok(bytes) => sink(&label, &bytes, report),
                Err(e) => report.skip(&label, e.to_string()),
            }
            Ok(())
        }
        _ => Err(ScanError::InvalidSource {
            path: source.to_path_buf(),
            reason: "expected a .zip, a .json file or a directory".to_string(),
        }),
    }
}

#[derive(Default)]
struct WalkState {
    entries: usize,
    bytes: u64,
}

fn walk_dir(
    base: &Path,
    dir: &Path,
    depth: usize,
    sink: &mut dyn FnMut(&str, &[u8], &mut ImportReport),
    report: &mut ImportReport,
    state: &mut WalkState,
) -> Result<(), ScanError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| ScanError::io(dir, e))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        state.entries += 1;
        if state.entries > MAX_ENTRIES {
            return Err(ScanError::InvalidSource {
                path: base.to_path_buf(),
                reason: format!("more than {MAX_ENTRIES} entries"),
            });
        }
        let path = entry.path();
        let label = path
            .strip_prefix(base)
            .unwrap_or(&path)
            .display()
            .to_string();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            if depth >= MAX_DIR_DEPTH {
                report.skip(&label, format!("deeper than {MAX_DIR_DEPTH} levels"));
            } else {
                walk_dir(base, &path, depth + 1, sink, report, state)?;
            }
            continue;
        }
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if !is_json {
            continue;
        }
        if !file_type.is_file() {
            report.skip(&label, "not a regular file (symlinks are not followed)");
            continue;
        }
        match read_capped(&path, MAX_JSON_BYTES, true) {
            Ok(bytes) => {
                state.bytes += bytes.len() as u64;
                if state.bytes > MAX_TOTAL_BYTES {
                    return Err(ScanError::InvalidSource {
                        path: base.to_path_buf(),
                        reason: format!("more than {MAX_TOTAL_BYTES} bytes of JSON"),
                    });
                }
                sink(&label, &bytes, report);
            }
            Err(e) => report.skip(&label, e.to_string()),
        }
    }
    Ok(())
}

fn read_zip(
    source: &Path,
    sink: &mut dyn FnMut(&str, &[u8], &mut ImportReport),
    report: &mut ImportReport,
) -> Result<(), ScanError> {
    let invalid = |reason: String| ScanError::InvalidSource {
        path: source.to_path_buf(),
        reason,
    };
    let file = fs::File::open(source).map_err(|e| ScanError::io(source, e))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| invalid(format!("not a readable zip archive: {e}")))?;
    if archive.len() > MAX_ENTRIES {
        return Err(invalid(format!(
            "{} entries (at most {MAX_ENTRIES})",
            archive.len()
        )));
    }
    let zip_name = source
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut total: u64 = 0;
    let mut buf = Vec::new();
    for i in 0..archive.len() {
        let mut entry = match archive.by_index(i) {
            Ok(entry) => entry,
            Err(e) => {
                report.skip(
                    &format!("{zip_name}:#{i}"),
                    format!("unreadable entry: {e}"),
                );
                continue;
            }
        };
        let name = entry
            .name()
            .map_or_else(|_| format!("#{i}"), |n| n.into_owned());
        let label = format!("{zip_name}:{name}");
        if entry.is_dir() || !name.to_ascii_lowercase().ends_with(".json") {
            continue;
        }
        if entry.size() > MAX_JSON_BYTES {
            report.skip(&label, format!("larger than {MAX_JSON_BYTES} bytes"));
            continue;
        }
        buf.clear();
        let read = (&mut entry).take(MAX_JSON_BYTES + 1).read_to_end(&mut buf);
        total += buf.len() as u64;
        if total > MAX_TOTAL_BYTES {
            return Err(invalid(format!(
                "more than {MAX_TOTAL_BYTES} bytes decompressed"
            )));
        }
        match read {
            Ok(_) if buf.len() as u64 > MAX_JSON_BYTES => {
                report.skip(&label, format!("larger than {MAX_JSON_BYTES} bytes"));
            }
            Ok(_) => sink(&label, &buf, report),
            Err(e) => report.skip(&label, format!("unreadable entry: {e}")),
        }
    }
    Ok(())
}

/// What one record became.
enum Parsed {
    Withdrawn(String),
    Record(Record),
}

/// Parses one JSON document (a record or an array of records) into converted records,
/// reporting what is skipped.
fn parse_document(label: &str, bytes: &[u8], report: &mut ImportReport) -> Vec<Parsed> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let values: Vec<serde_json::Value> = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                report.skip(label, format!("malformed JSON: {e}"));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            let label = format!("{label}[{i}]");
            match serde_json::from_value::<OsvRecord>(value) {
                Ok(record) => {
                    out.extend(convert(&label, record, report));
                }
                Err(e) => report.skip(&label, format!("malformed record: {e}")),
            }
        }
        out
    } else {
        match serde_json::from_slice::<OsvRecord>(bytes) {
            Ok(record) => convert(label, record, report).into_iter().collect(),
            Err(e) => {
                report.skip(label, format!("malformed record: {e}"));
                Vec::new()
            }
        }
    }
}

/// Converts a published record into the stored form; `None` (reported) when nothing of it
/// can be used.
fn convert(label: &str, record: OsvRecord, report: &mut ImportReport) -> Option<Parsed> {
    if record.id.trim().is_empty() {
        report.skip(label, "malformed record: empty id");
        return None;
    }
    if record.withdrawn.as_deref().is_some_and(|w| !w.is_empty()) {
        return Some(Parsed::Withdrawn(record.id));
    }
    let Some(modified) = record.modified.clone().filter(|m| !m.trim().is_empty()) else {
        report.skip(
            label,
            format!("malformed record {}: no modified time", record.id),
        );
        return None;
    };
    let mut unsupported = BTreeSet::new();
    let mut affected = Vec::new();
    for entry in &record.affected {
        match convert_affected(&record, entry) {
            Ok(Some(a)) => affected.push(a),
            Ok(None) => {}
            Err(ecosystem) => {
                unsupported.insert(ecosystem);
            }
        }
    }
    if !unsupported.is_empty() {
        let list = unsupported.into_iter().collect::<Vec<_>>().join(", ");
        let what = if affected.is_empty() {
            "record skipped"
        } else {
            "affected entries skipped"
        };
        report.skip(
            label,
            format!("{}: {what}: unsupported ecosystem {list}", record.id),
        );
    }
    if affected.is_empty() {
        return None;
    }
    let summary = record
        .summary
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| record.details.as_deref().and_then(|d| d.lines().next()))
        .map(|s| truncate(s.trim(), SUMMARY_CHARS))
        .unwrap_or_default();
    Some(Parsed::Record(Record {
        id: record.id.clone(),
        modified,
        aliases: record.aliases.clone(),
        summary,
        affected,
    }))
}

/// `Err(ecosystem)` for an ecosystem without version ordering; `Ok(None)` for an entry that
/// has nothing to match (no package, only `GIT` ranges).
fn convert_affected(record: &OsvRecord, entry: &OsvAffected) -> Result<Option<Affected>, String> {
    let Some(package) = &entry.package else {
        return Ok(None);
    };
    let ecosystem = package.ecosystem.trim();
    let Some(scheme) = Scheme::of_ecosystem(ecosystem) else {
        return Err(if ecosystem.is_empty() {
            "(none)".to_string()
        } else {
            ecosystem.to_string()
        });
    };
    let name = match scheme {
        Scheme::Pep440 => normalize_pypi(&package.name),
        _ => package.name.trim().to_string(),
    };
    if name.is_empty() {
        return Ok(None);
    }
    let ranges: Vec<Range> = entry
        .ranges
        .iter()
        .filter(|r| r.kind == "ECOSYSTEM" || r.kind == "SEMVER")
        .map(|r| Range {
            semver: r.kind == "SEMVER",
            events: r
                .events
                .iter()
                .filter_map(|e| {
                    if let Some(v) = &e.introduced {
                        Some(Event::Introduced(v.clone()))
                    } else if let Some(v) = &e.fixed {
                        Some(Event::Fixed(v.clone()))
                    } else if let Some(v) = &e.last_affected {
                        Some(Event::LastAffected(v.clone()))
                    } else {
                        e.limit.as_ref().map(|v| Event::Limit(v.clone()))
                    }
                })
                .collect(),
        })
        .filter(|r| !r.events.is_empty())
        .collect();
    if ranges.is_empty() && entry.versions.is_empty() {
        return Ok(None);
    }
    let (severity, score) = crate::cvss::rate(record, entry);
    Ok(Some(Affected {
        ecosystem: ecosystem.to_string(),
        name,
        ranges,
        versions: entry.versions.clone(),
        severity,
        score,
    }))
}

fn truncate(s: &str, chars: usize) -> String {
    match s.char_indices().nth(chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn merge(
    parsed: Parsed,
    records: &mut BTreeMap<String, Record>,
    report: &mut ImportReport,
    changed: &mut bool,
) {
    match parsed {
        Parsed::Withdrawn(id) => {
            report.withdrawn_skipped += 1;
            if records.remove(&id).is_some() {
                report.removed += 1;
                *changed = true;
            }
        }
        Parsed::Record(record) => {
            let ecosystems: BTreeSet<&str> = record
                .affected
                .iter()
                .map(|a| a.ecosystem.as_str())
                .collect();
            for eco in ecosystems {
                *report.ecosystems.entry(eco.to_string()).or_insert(0) += 1;
            }
            match records.get(&record.id) {
                Some(old) if !is_newer(&record.modified, &old.modified) => report.unchanged += 1,
                Some(_) => {
                    report.replaced += 1;
                    *changed = true;
                    records.insert(record.id.clone(), record);
                }
                None => {
                    report.imported += 1;
                    *changed = true;
                    records.insert(record.id.clone(), record);
                }
            }
        }
    }
}

/// Whether RFC 3339 time `a` is later than `b` (compared as instants; as text when either does
/// not parse).
fn is_newer(a: &str, b: &str) -> bool {
    match (instant(a), instant(b)) {
        (Some(a), Some(b)) => a > b,
        _ => a > b,
    }
}

/// An RFC 3339 time as (seconds since 1970, nanoseconds).
fn instant(s: &str) -> Option<(i64, u32)> {
    let s = s.trim();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !matches!(s.as_bytes().get(10), Some(b'T' | b't' | b' ')) || !(1..=12).contains(&month) {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut nanos: u32 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let mut scale = 100_000_000u32;
        for b in frac.bytes().take(digits.min(9)) {
            nanos += u32::from(b - b'0') * scale;
            scale /= 10;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" | "" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (March-based year).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((
        days * 86_400 + hour * 3600 + minute * 60 + second - offset,
        nanos,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_instants() {
        assert_eq!(instant("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(instant("2000-03-01T00:00:00Z"), Some((951_868_800, 0)));
        assert!(is_newer("2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00Z"));
        assert!(is_newer(
            "2024-01-01T01:00:00Z",
            "2024-01-01T01:30:00+01:00"
        ));
        assert!(!is_newer(
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.000Z"
        ));
    }

    #[test]
    fn ubuntu_match_ecosystems() {
        assert_eq!(match_ecosystem("Ubuntu:22.04:LTS"), "Ubuntu:22.04");
        assert_eq!(match_ecosystem("Ubuntu:Pro:18.04:LTS"), "Ubuntu:18.04");
        assert_eq!(match_ecosystem("Ubuntu:24.10"), "Ubuntu:24.10");
        assert_eq!(match_ecosystem("Debian:12"), "Debian:12");
    }
}
