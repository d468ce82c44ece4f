//! `gantry key generate`, `gantry image sign|verify|scan`, `gantry vulndb import|show`.

use crate::cli::Output;
use crate::exit::{self, coded};
use crate::home::Home;
use crate::render::table;
use anyhow::Context;
use gantry_engine::trust::{artifacts_of, keep_fresh_signatures, load_signatures, signature_set};
use gantry_image::registry::RegistryRef;
use gantry_scan::Severity;
use gantry_trust::{PublicKey, SignatureSet, SigningKey};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

pub fn key_generate(name: &Path, force: bool) -> anyhow::Result<u8> {
    let dir = match name.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let stem = name
        .file_name()
        .and_then(|s| s.to_str())
        .ok_or_else(|| coded(exit::USAGE, format!("{}: not a file name", name.display())))?;
    let pair = gantry_trust::generate_key_pair()?;
    let paths = gantry_trust::write_key_pair(&pair, &dir, stem, force).map_err(|e| {
        coded(
            exit::USAGE,
            format!("{e}; pass --force to replace existing files"),
        )
    })?;
    println!(
        "private key {} (mode 0600, keep it secret)\npublic key  {} ({})",
        paths.private.display(),
        paths.public.display(),
        pair.key_id.short()
    );
    Ok(exit::OK)
}

/// The digest `reference` names: asked of its registry when it names one (unless `local`),
/// else looked up in the image store.
async fn digest_of(home: &Home, reference: &str, local: bool) -> anyhow::Result<String> {
    if !local && RegistryRef::names_registry(reference) {
        let r = RegistryRef::parse(reference)?;
        let client = crate::images::registry_client(home)?;
        let (manifest, _) = client.resolve(&r).await?;
        return Ok(manifest.digest);
    }
    let reference = match reference.split_once('@') {
        Some((_, d)) => d,
        None => reference,
    };
    Ok(home.images()?.resolve(reference)?.digest)
}

pub async fn sign(home: &Home, reference: &str, key: &Path, local: bool) -> anyhow::Result<u8> {
    let signing = SigningKey::load(key).map_err(|e| coded(exit::USAGE, e.to_string()))?;
    let digest = digest_of(home, reference, local).await?;
    let r = RegistryRef::parse(reference)?;
    let images = Arc::new(home.images()?);
    let remote = !local && RegistryRef::names_registry(reference);
    let client = crate::images::registry_client(home)?;
    // Start from the signatures the image already has, so signing adds rather than replaces.
    let existing = if remote {
        client
            .fetch_signatures(&r, &digest)
            .await?
            .map(|a| signature_set(&a))
            .transpose()
            .map_err(|e| anyhow::anyhow!(e))?
    } else {
        images
            .signatures(&digest)?
            .map(|a| signature_set(&a))
            .transpose()
            .map_err(|e| anyhow::anyhow!(e))?
    };
    let mut set = existing.unwrap_or_else(SignatureSet::new);
    set.sign(&signing, &r.repository_path(), &digest, None)?;
    let artifacts = artifacts_of(&set, &r.repository_path()).map_err(|e| anyhow::anyhow!(e))?;
    if remote {
        client.push_signatures(&r, &digest, &artifacts).await?;
    }
    images.save_signatures(&digest, &artifacts)?;
    println!(
        "signed {}@{digest} with {} ({} signature(s) {})",
        r.repository_path(),
        signing.public_key().id().short(),
        set.layers().len(),
        if remote {
            format!(
                "stored in the registry as {}",
                gantry_trust::signature_tag(&digest)?
            )
        } else {
            "kept locally; push them with `gantry image push --with-signatures`".to_string()
        }
    );
    Ok(exit::OK)
}

pub async fn verify(
    home: &Home,
    reference: &str,
    keys: &[std::path::PathBuf],
    output: Output,
) -> anyhow::Result<u8> {
    let keys: Vec<PublicKey> = keys
        .iter()
        .map(|p| PublicKey::load(p).map_err(|e| coded(exit::USAGE, e.to_string())))
        .collect::<Result<_, _>>()?;
    let digest = digest_of(home, reference, false).await?;
    let images = Arc::new(home.images()?);
    let client = crate::images::registry_client(home)?;
    // Fresh from the registry when the reference names one: what is there now counts.
    let artifacts = if RegistryRef::names_registry(reference) {
        let r = RegistryRef::parse(reference)?;
        match client.fetch_signatures(&r, &digest).await? {
            Some(a) => {
                // Kept for runs, unless that would lose a signature kept only here (a signature
                // that does not parse is reported below).
                let _ = keep_fresh_signatures(&images, &digest, &a);
                Some(a)
            }
            None => load_signatures(&images, Some(&client), reference, &digest)
                .await
                .map_err(|e| coded(exit::RUN_FAILED, e))?,
        }
    } else {
        load_signatures(&images, None, reference, &digest)
            .await
            .map_err(|e| coded(exit::RUN_FAILED, e))?
    };
    let verification = match &artifacts {
        Some(a) => signature_set(a)
            .map_err(|e| coded(exit::RUN_FAILED, e))?
            .verify(&digest, &keys),
        None => gantry_trust::Verification::default(),
    };
    let ok = !verification.verified_by.is_empty();
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "reference": reference,
                "digest": digest,
                "verified": ok,
                "verified_by": verification.verified_by,
                "rejected": verification.rejected,
                "signatures": artifacts.is_some(),
            }))?
        );
    } else if artifacts.is_none() {
        println!("{reference} ({digest}) has no signatures");
    } else {
        for id in &verification.verified_by {
            println!("verified: {reference}@{digest} is signed by {}", id.short());
        }
        for r in &verification.rejected {
            println!("rejected signature {}: {}", r.layer, r.reason);
        }
    }
    Ok(if ok { exit::OK } else { exit::RUN_FAILED })
}

pub async fn scan(
    home: &Home,
    reference: &str,
    fail_on: Option<&str>,
    output: Output,
) -> anyhow::Result<u8> {
    let fail_on: Option<Severity> = fail_on
        .map(|s| {
            s.parse().map_err(|e: gantry_scan::ParseSeverityError| {
                coded(exit::USAGE, format!("--fail-on: {e}"))
            })
        })
        .transpose()?;
    let trust = home.trust()?;
    let engine = home.engine("runc", |_| {}).await?;
    let info = engine.obtain_image(reference, None).await?;
    let images = Arc::new(home.images()?);
    let scan = trust
        .scan(&images, engine.store(), &info.digest)
        .await
        .map_err(|e| anyhow::anyhow!(e))?
        .ok_or_else(|| {
            coded(
                exit::ENVIRONMENT,
                format!(
                    "no vulnerability database in {}: import advisories first, e.g. `gantry vulndb import all.zip` (osv.dev's per-ecosystem export)",
                    trust.vulndb_dir().display()
                ),
            )
        })?;
    let report = &scan.report;
    let (worst, _) = gantry_engine::trust::summarize(report);
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "reference": reference,
                "digest": info.digest,
                "worst": worst,
                "scanned_at_ms": scan.record.scanned_at_ms,
                "report": report,
            }))?
        );
    } else {
        let os = report
            .os
            .as_ref()
            .map(|o| o.pretty_name.clone().unwrap_or_else(|| o.id.clone()))
            .unwrap_or_else(|| "unknown OS".into());
        println!(
            "{reference} ({}) — {os}, {} packages, database {}",
            crate::render::short_digest(&info.digest),
            report.packages_scanned,
            crate::render::short_digest(&report.db_version)
        );
        if report.findings.is_empty() {
            println!("no known vulnerabilities");
        } else {
            let mut t = table(&["ID", "PACKAGE", "INSTALLED", "FIXED IN", "SEVERITY"]);
            for f in &report.findings {
                let package = if f.package == f.source {
                    f.package.clone()
                } else {
                    format!("{} ({})", f.package, f.source)
                };
                let severity = match f.score {
                    Some(s) => format!("{} {s:.1}", f.severity),
                    None => f.severity.to_string(),
                };
                t.add_row(vec![
                    f.id.clone(),
                    package,
                    f.installed.clone(),
                    f.fixed.clone().unwrap_or_else(|| "-".into()),
                    severity,
                ]);
            }
            println!("{t}");
            let counts: Vec<String> = report
                .counts
                .iter()
                .rev()
                .filter(|(_, n)| **n > 0)
                .map(|(s, n)| format!("{n} {s}"))
                .collect();
            println!("{} findings: {}", report.findings.len(), counts.join(", "));
        }
        for note in &report.notes {
            eprintln!("note: {note}");
        }
    }
    let failed = fail_on.is_some_and(|limit| {
        report
            .findings
            .iter()
            .any(|f| f.severity != Severity::Unknown && f.severity >= limit)
    });
    Ok(if failed { exit::RUN_FAILED } else { exit::OK })
}

pub async fn vulndb_import(home: &Home, source: &str, output: Output) -> anyhow::Result<u8> {
    let dir = home.root.join("vulndb");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let download;
    let path: &Path = if source.starts_with("http://") || source.starts_with("https://") {
        download = fetch_to_temp(&dir, source).await?;
        download.path()
    } else {
        Path::new(source)
    };
    let owned = path.to_path_buf();
    let dir2 = dir.clone();
    let report = tokio::task::spawn_blocking(move || gantry_scan::import(&dir2, &owned))
        .await
        .context("importing advisories")?
        .map_err(|e| coded(exit::USAGE, e.to_string()))?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "imported {} new, {} replaced, {} unchanged, {} withdrawn skipped, {} removed; {} records in the database, version {}",
            report.imported,
            report.replaced,
            report.unchanged,
            report.withdrawn_skipped,
            report.removed,
            report.total,
            crate::render::short_digest(&report.version)
        );
        for (eco, n) in &report.ecosystems {
            println!("  {eco}: {n}");
        }
        for s in &report.skipped {
            eprintln!("skipped {}: {}", s.file, s.reason);
        }
        if report.skipped_total > report.skipped.len() {
            eprintln!(
                "… and {} more skipped",
                report.skipped_total - report.skipped.len()
            );
        }
    }
    Ok(exit::OK)
}

pub fn vulndb_show(home: &Home, output: Output) -> anyhow::Result<u8> {
    let dir = home.root.join("vulndb");
    let db = gantry_scan::Database::open(&dir)?.ok_or_else(|| {
        coded(
            exit::NOT_FOUND,
            format!(
                "no vulnerability database in {}: run `gantry vulndb import`",
                dir.display()
            ),
        )
    })?;
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "version": db.version(),
                "records": db.len(),
                "ecosystems": db.ecosystems(),
            }))?
        );
    } else {
        println!("{} records, version {}", db.len(), db.version());
        for (eco, n) in db.ecosystems() {
            println!("  {eco}: {n}");
        }
    }
    Ok(exit::OK)
}

/// Downloads `url` to a temporary file (with the URL's extension, so a zip is read as one).
async fn fetch_to_temp(dir: &Path, url: &str) -> anyhow::Result<tempfile::NamedTempFile> {
    use futures::StreamExt;
    use std::io::Write;
    let suffix = if url.to_ascii_lowercase().ends_with(".zip") {
        ".zip"
    } else {
        ".json"
    };
    let mut file = tempfile::Builder::new()
        .prefix(".download-")
        .suffix(suffix)
        .tempfile_in(dir)?;
    let response = reqwest::get(url)
        .await
        .with_context(|| format!("downloading {url}"))?;
    if !response.status().is_success() {
        return Err(coded(
            exit::NOT_FOUND,
            format!("downloading {url}: {}", response.status()),
        ));
    }
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("downloading {url}"))?;
        file.write_all(&chunk)?;
    }
    file.flush()?;
    Ok(file)
}
