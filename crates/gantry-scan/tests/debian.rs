//! A Debian 12 image: the real dpkg status of a Debian machine, matched against OSV records
//! written for its real source packages and versions.

mod common;
#[path = "../../../testing/skip.rs"]
mod skip;

use std::process::Command;

use common::*;
use gantry_scan::{Database, Severity, import, inventory, scan};

#[test]
fn the_os_and_every_installed_package_are_inventoried_through_the_os_release_symlink() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("rootfs");
    debian_rootfs(&root)?;

    let inv = inventory(&root)?;

    let os = inv.os.as_ref().ok_or("no os")?;
    assert_eq!(os.id, "debian");
    assert_eq!(os.version_id.as_deref(), Some("12"));
    assert_eq!(os.version_codename.as_deref(), Some("bookworm"));
    assert_eq!(
        os.pretty_name.as_deref(),
        Some("Debian GNU/Linux 12 (bookworm)")
    );
    assert_eq!(os.ecosystem.as_deref(), Some("Debian:12"));
    let status = std::fs::read_to_string(fixtures().join("debian12/status"))?;
    let installed = status.matches("Status: install ok installed").count();
    assert_eq!(inv.packages.len(), installed);
    assert!(inv.packages.iter().all(|p| p.ecosystem == "Debian:12"));

    let pkg = |name: &str| {
        inv.packages
            .iter()
            .find(|p| p.name == name)
            .ok_or(format!("no {name}"))
    };
    let ssl = pkg("libssl3")?;
    assert_eq!(
        (ssl.source.as_str(), ssl.version.as_str()),
        ("openssl", "3.0.19-1~deb12u2")
    );
    assert_eq!(ssl.origin, "var/lib/dpkg/status");
    let zlib = pkg("zlib1g")?;
    assert_eq!(
        (zlib.source.as_str(), zlib.matched_version()),
        ("zlib", "1:1.2.13.dfsg-1")
    );
    // `Source: util-linux (2.38.1-5+deb12u3)`: the source version, not the binary's epoch 1.
    let bsdutils = pkg("bsdutils")?;
    assert_eq!(bsdutils.version, "1:2.38.1-5+deb12u3");
    assert_eq!(bsdutils.matched_version(), "2.38.1-5+deb12u3");
    assert_eq!(pkg("libxml2")?.source, "libxml2");
    Ok(())
}

#[test]
fn a_scan_finds_what_is_vulnerable_and_nothing_that_is_fixed() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("rootfs");
    debian_rootfs(&root)?;
    let db_dir = dir.path().join("db");

    let report = import(&db_dir, &fixtures().join("osv-debian"))?;
    let db = Database::open(&db_dir)?.ok_or("no db")?;
    let scan_report = scan(&inventory(&root)?, &db);

    assert_eq!(
        ids(&scan_report),
        [
            "DEBIAN-CVE-2099-0001", // libxml2 fixed just above ~deb12u5
            "DEBIAN-CVE-2099-0003", // zlib fixed in 1:…dfsg-2 (epoch)
            "DEBIAN-CVE-2099-0007", // perl last_affected = installed
            "DEBIAN-CVE-2099-0009", // util-linux versions list
            "DEBIAN-CVE-2099-0011", // glibc fixed in +deb12u15
            "DSA-2099-1",           // openssl fixed in 3.0.19-1 > 3.0.19-1~deb12u2
        ]
    );
    // The fixed version is the one of the matching range.
    let libxml2 = finding(&scan_report, "DEBIAN-CVE-2099-0001", "libxml2").ok_or("libxml2")?;
    assert_eq!(libxml2.fixed.as_deref(), Some("2.9.14+dfsg-1.3~deb12u6"));
    assert_eq!(libxml2.installed, "2.9.14+dfsg-1.3~deb12u5");
    assert_eq!(libxml2.aliases, ["CVE-2099-0001"]);
    assert_eq!(
        (libxml2.severity, libxml2.score),
        (Severity::Critical, Some(9.8))
    );
    assert!(finding(&scan_report, "DEBIAN-CVE-2099-0001", "libxml2-dev").is_some());

    // Binary packages are matched through their source: libssl3 comes from openssl.
    let libssl3 = finding(&scan_report, "DSA-2099-1", "libssl3").ok_or("libssl3")?;
    assert_eq!(libssl3.source, "openssl");
    assert_eq!(libssl3.fixed.as_deref(), Some("3.0.19-1"));
    assert_eq!(
        (libssl3.severity, libssl3.score),
        (Severity::Medium, Some(5.5))
    );
    // The record that also names Hex kept its Debian entry (introduced 3.0.20-1: not reached).
    assert!(!ids(&scan_report).contains(&"DEBIAN-CVE-2099-0013"));

    let zlib = finding(&scan_report, "DEBIAN-CVE-2099-0003", "zlib1g").ok_or("zlib")?;
    assert_eq!(zlib.fixed.as_deref(), Some("1:1.2.13.dfsg-2"));
    assert_eq!((zlib.severity, zlib.score), (Severity::Low, None));
    let perl = finding(&scan_report, "DEBIAN-CVE-2099-0007", "perl-base").ok_or("perl")?;
    assert_eq!(
        (perl.fixed.as_deref(), perl.severity),
        (None, Severity::Medium)
    );
    // bsdutils' binary version has epoch 1; its source version is the one listed.
    let bsdutils = finding(&scan_report, "DEBIAN-CVE-2099-0009", "bsdutils").ok_or("bsdutils")?;
    assert_eq!(bsdutils.severity, Severity::High);
    assert_eq!(bsdutils.installed, "1:2.38.1-5+deb12u3");
    let glibc: Vec<_> = scan_report
        .findings
        .iter()
        .filter(|f| f.id == "DEBIAN-CVE-2099-0011")
        .map(|f| f.package.as_str())
        .collect();
    assert!(
        glibc.contains(&"libc6") && glibc.contains(&"libc-bin"),
        "{glibc:?}"
    );

    // Most severe first; counts add up.
    let severities: Vec<Severity> = scan_report.findings.iter().map(|f| f.severity).collect();
    assert!(
        severities.windows(2).all(|w| w[0] >= w[1]),
        "{severities:?}"
    );
    assert_eq!(
        scan_report.counts.values().sum::<usize>(),
        scan_report.findings.len()
    );
    assert_eq!(scan_report.counts[&Severity::Critical], 2);
    assert_eq!(scan_report.db_version, db.version());
    assert_eq!(scan_report.db_version, report.version);

    // The report is what `gantry image scan --output json` prints, and reads back.
    let json = serde_json::to_string(&scan_report)?;
    assert!(json.contains("\"critical\":2"), "{json}");
    let back: gantry_scan::ScanReport = serde_json::from_str(&json)?;
    assert_eq!(back, scan_report);
    Ok(())
}

#[test]
fn bad_records_and_unknown_ecosystems_are_reported_and_the_import_goes_on() -> TestResult {
    let dir = tempfile::tempdir()?;
    let report = import(&dir.path().join("db"), &fixtures().join("osv-debian"))?;

    // 0001 0002 0003 0004 0005 0007 0008 0009 0011 0013 DSA-2099-1
    assert_eq!(report.imported, 11);
    assert_eq!(report.total, 11);
    assert_eq!((report.replaced, report.unchanged), (0, 0));
    assert_eq!(report.withdrawn_skipped, 1);
    assert_eq!(report.ecosystems.get("Debian:12"), Some(&10));
    assert_eq!(report.ecosystems.get("Debian:11"), Some(&1));
    let reasons: Vec<String> = report
        .skipped
        .iter()
        .map(|s| format!("{}: {}", s.file, s.reason))
        .collect();
    assert_eq!(report.skipped_total, 4, "{reasons:#?}");
    let has = |file: &str, text: &str| {
        report
            .skipped
            .iter()
            .any(|s| s.file == file && s.reason.contains(text))
    };
    assert!(has("malformed.json", "malformed"), "{reasons:#?}");
    assert!(has("missing-id.json", "malformed record"), "{reasons:#?}");
    assert!(
        has(
            "more/unknown-ecosystems.json[0]",
            "record skipped: unsupported ecosystem Maven"
        ),
        "{reasons:#?}"
    );
    assert!(
        has(
            "more/unknown-ecosystems.json[1]",
            "affected entries skipped: unsupported ecosystem Hex"
        ),
        "{reasons:#?}"
    );

    let db = Database::open(&dir.path().join("db"))?.ok_or("no db")?;
    assert_eq!(db.len(), 11);
    assert_eq!(db.ecosystems().get("Debian:12"), Some(&10));
    assert!(!db.ecosystems().contains_key("Maven"));
    Ok(())
}

#[test]
fn the_real_dpkg_status_of_this_machine_reads_as_dpkg_query_sees_it() -> TestResult {
    let status = std::path::Path::new("/var/lib/dpkg/status");
    let query = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${db:Status-Status} ${Package} ${Version} ${source:Package} ${source:Version}\n",
        ])
        .output();
    let (true, Ok(query)) = (status.exists(), query) else {
        skip::because("no dpkg here: install Debian's dpkg to compare with dpkg-query");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("var/lib/dpkg"))?;
    std::fs::copy(status, root.join("var/lib/dpkg/status"))?;

    let inv = inventory(&root)?;

    let mut expected: Vec<String> = String::from_utf8(query.stdout)?
        .lines()
        .filter_map(|l| l.strip_prefix("installed "))
        .map(str::to_string)
        .collect();
    let mut ours: Vec<String> = inv
        .packages
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {}",
                p.name,
                p.version,
                p.source,
                p.matched_version()
            )
        })
        .collect();
    expected.sort();
    ours.sort();
    assert!(!ours.is_empty());
    assert_eq!(ours, expected);
    // Without os-release the packages are kept but cannot be matched; a note says so.
    assert!(inv.os.is_none());
    assert!(
        inv.notes.iter().any(|n| n.contains("not matched")),
        "{:?}",
        inv.notes
    );
    Ok(())
}

#[test]
fn distroless_status_d_stanzas_are_read() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("var/lib/dpkg/status.d"))?;
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )?;
    std::fs::write(
        root.join("var/lib/dpkg/status.d/libssl3"),
        "Package: libssl3\nVersion: 3.0.19-1~deb12u2\nArchitecture: amd64\nSource: openssl\n",
    )?;
    std::fs::write(
        root.join("var/lib/dpkg/status.d/libssl3.md5sums"),
        "abc  usr/lib/x\n",
    )?;
    std::fs::write(
        root.join("var/lib/dpkg/status.d/base"),
        "Package: base-files\nVersion: 12.4+deb12u5\n\nPackage: netbase\nVersion: 6.4\n",
    )?;
    let db_dir = dir.path().join("db");
    import(&db_dir, &fixtures().join("osv-debian/openssl-tilde.json"))?;

    let inv = inventory(root)?;
    let names: Vec<&str> = inv.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["base-files", "netbase", "libssl3"]);
    let report = scan(&inv, &Database::open(&db_dir)?.ok_or("no db")?);
    assert_eq!(
        triples(&report),
        [(
            "DSA-2099-1".into(),
            "libssl3".into(),
            Some("3.0.19-1".into())
        )]
    );
    Ok(())
}
