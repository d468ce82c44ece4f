//! The offline database: zip and directory imports agree, re-imports are idempotent, newer
//! records replace older ones, withdrawn ones disappear, and oversized input is refused
//! without being read into memory.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use common::*;
use gantry_scan::{Database, Inventory, Package, import, scan};
use zip::write::SimpleFileOptions;

fn zip_dir(src: &Path, dest: &Path) -> TestResult {
    let mut zip = zip::ZipWriter::new(fs::File::create(dest)?);
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    for path in files {
        let name = path.strip_prefix(src)?.to_string_lossy().into_owned();
        zip.start_file(name, options)?;
        zip.write_all(&fs::read(&path)?)?;
    }
    zip.finish()?;
    Ok(())
}

fn record(id: &str, modified: &str, name: &str, fixed: &str) -> String {
    format!(
        r#"{{"id":"{id}","modified":"{modified}","summary":"s","affected":[{{"package":{{"ecosystem":"Debian:12","name":"{name}"}},"ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]}}]}}]}}"#
    )
}

fn one_package(name: &str, version: &str) -> Inventory {
    Inventory {
        os: None,
        packages: vec![Package {
            ecosystem: "Debian:12".into(),
            name: name.into(),
            source: name.into(),
            version: version.into(),
            source_version: None,
            origin: "test".into(),
        }],
        notes: vec![],
    }
}

#[test]
fn a_zip_import_equals_a_directory_import_and_reimporting_changes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let zip_path = dir.path().join("all.zip");
    zip_dir(&fixtures().join("osv-debian"), &zip_path)?;

    let from_dir = import(&dir.path().join("db-dir"), &fixtures().join("osv-debian"))?;
    let from_zip = import(&dir.path().join("db-zip"), &zip_path)?;

    assert_eq!(from_zip.version, from_dir.version);
    assert_eq!(from_zip.imported, from_dir.imported);
    assert_eq!(from_zip.ecosystems, from_dir.ecosystems);
    assert_eq!(from_zip.skipped_total, from_dir.skipped_total);
    assert!(
        from_zip
            .skipped
            .iter()
            .any(|s| s.file == "all.zip:malformed.json")
    );
    let a = Database::open(&dir.path().join("db-dir"))?.ok_or("no db")?;
    let b = Database::open(&dir.path().join("db-zip"))?.ok_or("no db")?;
    assert_eq!((a.version(), a.len()), (b.version(), b.len()));

    // Same data again: nothing new, same version, file untouched.
    let db_file = dir.path().join("db-zip/osv-db.jsonl");
    let before = fs::metadata(&db_file)?.modified()?;
    let again = import(&dir.path().join("db-zip"), &zip_path)?;
    assert_eq!(
        (again.imported, again.replaced, again.unchanged),
        (0, 0, from_zip.imported)
    );
    assert_eq!(again.version, from_zip.version);
    assert_eq!(fs::metadata(&db_file)?.modified()?, before);
    // And stable across reopening.
    assert_eq!(
        Database::open(&dir.path().join("db-zip"))?
            .ok_or("no db")?
            .version(),
        b.version()
    );
    Ok(())
}

#[test]
fn a_newer_record_replaces_an_older_one_and_a_withdrawn_one_is_removed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let db_dir = dir.path().join("db");
    let src = dir.path().join("src.json");
    let inv = one_package("curl", "7.88.1-10+deb12u5");
    assert!(Database::open(&db_dir)?.is_none());

    fs::write(
        &src,
        record("DEB-1", "2024-01-01T00:00:00Z", "curl", "7.88.1-10+deb12u4"),
    )?;
    let first = import(&db_dir, &src)?;
    assert_eq!(first.imported, 1);
    let db = Database::open(&db_dir)?.ok_or("no db")?;
    assert!(scan(&inv, &db).findings.is_empty());

    // An older `modified` (fractional seconds make a string comparison lie) is ignored.
    fs::write(
        &src,
        record(
            "DEB-1",
            "2023-12-31T23:59:59.999Z",
            "curl",
            "7.88.1-10+deb12u9",
        ),
    )?;
    let older = import(&db_dir, &src)?;
    assert_eq!(
        (older.replaced, older.unchanged, older.version.as_str()),
        (0, 1, first.version.as_str())
    );

    fs::write(
        &src,
        record(
            "DEB-1",
            "2024-01-01T00:00:00.5Z",
            "curl",
            "7.88.1-10+deb12u9",
        ),
    )?;
    let newer = import(&db_dir, &src)?;
    assert_eq!(newer.replaced, 1);
    assert_ne!(newer.version, first.version);
    let db = Database::open(&db_dir)?.ok_or("no db")?;
    assert_eq!(db.version(), newer.version);
    let report = scan(&inv, &db);
    assert_eq!(
        triples(&report),
        [(
            "DEB-1".into(),
            "curl".into(),
            Some("7.88.1-10+deb12u9".into())
        )]
    );

    fs::write(
        &src,
        r#"[{"id":"DEB-1","modified":"2024-02-01T00:00:00Z","withdrawn":"2024-02-01T00:00:00Z","affected":[]}]"#,
    )?;
    let withdrawn = import(&db_dir, &src)?;
    assert_eq!(
        (
            withdrawn.withdrawn_skipped,
            withdrawn.removed,
            withdrawn.total
        ),
        (1, 1, 0)
    );
    let db = Database::open(&db_dir)?.ok_or("no db")?;
    assert!(db.is_empty());
    assert!(scan(&inv, &db).findings.is_empty());
    Ok(())
}

#[test]
fn oversized_files_and_zip_entries_are_skipped_without_being_read() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    fs::create_dir_all(&src)?;
    fs::write(
        src.join("ok.json"),
        record("DEB-2", "2024-01-01T00:00:00Z", "curl", "1"),
    )?;
    // A sparse 10 GiB "JSON" file: refused from its size alone.
    fs::File::create(src.join("huge.json"))?.set_len(10 * 1024 * 1024 * 1024)?;
    let report = import(&dir.path().join("db"), &src)?;
    assert_eq!(report.imported, 1);
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.file == "huge.json" && s.reason.contains("larger than"))
    );

    // A zip entry that inflates past the cap (a small zip bomb).
    let bomb = dir.path().join("bomb.zip");
    let mut zip = zip::ZipWriter::new(fs::File::create(&bomb)?);
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("bomb.json", options)?;
    let zeros = vec![b' '; 1024 * 1024];
    for _ in 0..17 {
        zip.write_all(&zeros)?;
    }
    zip.start_file("ok.json", options)?;
    zip.write_all(record("DEB-3", "2024-01-01T00:00:00Z", "curl", "1").as_bytes())?;
    zip.finish()?;
    let report = import(&dir.path().join("db"), &bomb)?;
    assert_eq!((report.imported, report.total), (1, 2));
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.file == "bomb.zip:bomb.json" && s.reason.contains("larger than"))
    );

    // Not a source at all.
    let txt = dir.path().join("notes.txt");
    fs::write(&txt, "hello")?;
    assert!(import(&dir.path().join("db"), &txt).is_err());
    let broken = dir.path().join("broken.zip");
    fs::write(&broken, "not a zip")?;
    assert!(import(&dir.path().join("db"), &broken).is_err());
    // The database survived the failed imports.
    assert_eq!(
        Database::open(&dir.path().join("db"))?
            .ok_or("no db")?
            .len(),
        2
    );
    Ok(())
}

#[test]
fn ubuntu_records_match_through_their_lts_and_pro_ecosystems() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("ubuntu.json");
    fs::write(
        &src,
        r#"[
          {"id":"UBUNTU-CVE-2099-1","modified":"2099-01-01T00:00:00Z",
           "severity":[{"type":"Ubuntu","score":"medium"}],
           "affected":[{"package":{"ecosystem":"Ubuntu:22.04:LTS","name":"openssl"},
             "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.2-0ubuntu1.16"}]}]},
             {"package":{"ecosystem":"Ubuntu:Pro:22.04:LTS","name":"openssl"},
             "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.2-0ubuntu1.16"}]}]}]},
          {"id":"UBUNTU-CVE-2099-2","modified":"2099-01-01T00:00:00Z",
           "affected":[{"package":{"ecosystem":"Ubuntu:24.04:LTS","name":"openssl"},
             "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}
        ]"#,
    )?;
    let db_dir = dir.path().join("db");
    import(&db_dir, &src)?;
    let root = dir.path().join("rootfs");
    fs::create_dir_all(root.join("etc"))?;
    fs::create_dir_all(root.join("var/lib/dpkg"))?;
    fs::write(
        root.join("etc/os-release"),
        "ID=ubuntu\nVERSION_ID=\"22.04\"\n",
    )?;
    fs::write(
        root.join("var/lib/dpkg/status"),
        "Package: libssl3\nStatus: install ok installed\nVersion: 3.0.2-0ubuntu1.15\nSource: openssl\n",
    )?;

    let report = scan(
        &gantry_scan::inventory(&root)?,
        &Database::open(&db_dir)?.ok_or("no db")?,
    );

    assert_eq!(
        triples(&report),
        [(
            "UBUNTU-CVE-2099-1".into(),
            "libssl3".into(),
            Some("3.0.2-0ubuntu1.16".into())
        )]
    );
    assert_eq!(report.findings[0].severity, gantry_scan::Severity::Medium);
    assert_eq!(report.findings[0].ecosystem, "Ubuntu:22.04");
    Ok(())
}

/// 10,000 records and 500 packages: loading and scanning must stay well under a second in a
/// release build (the bound here is loose for debug builds).
#[test]
fn a_ten_thousand_record_database_loads_and_scans_quickly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("big.json");
    let records: Vec<String> = (0..10_000)
        .map(|i| {
            record(
                &format!("DEB-{i:05}"),
                "2024-01-01T00:00:00Z",
                &format!("pkg{}", i % 2000),
                &format!("1.{}-1", i % 7),
            )
        })
        .collect();
    fs::write(&src, format!("[{}]", records.join(",")))?;
    let db_dir = dir.path().join("db");
    assert_eq!(import(&db_dir, &src)?.imported, 10_000);
    let inv = Inventory {
        os: None,
        packages: (0..500)
            .map(|i| Package {
                ecosystem: "Debian:12".into(),
                name: format!("pkg{i}"),
                source: format!("pkg{i}"),
                version: "1.3-1".into(),
                source_version: None,
                origin: "test".into(),
            })
            .collect(),
        notes: vec![],
    };

    let start = Instant::now();
    let db = Database::open(&db_dir)?.ok_or("no db")?;
    let report = scan(&inv, &db);
    let elapsed = start.elapsed();

    eprintln!(
        "open + scan: {elapsed:?} for {} findings",
        report.findings.len()
    );
    // pkgN has 5 records, fixed in 1.{0..6}-1; 1.3-1 is below 1.4, 1.5 and 1.6.
    assert!(report.findings.len() >= 500);
    let limit = if cfg!(debug_assertions) { 10.0 } else { 1.0 };
    assert!(elapsed.as_secs_f64() < limit, "{elapsed:?}");
    Ok(())
}
