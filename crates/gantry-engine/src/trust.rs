//! The image trust gate: the trust policy (`gantry-trust`) applied to the images runs and
//! deployments use, with the I/O a rule needs — signatures from the image store or the image's
//! registry, vulnerability scans (`gantry-scan`) stored per image digest and database version.
//! Every decision is recorded by the caller on the run or deployment and in the audit log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use gantry_image::ImageStore;
use gantry_image::registry::{RegistryClient, RegistryRef, SignatureArtifacts};
use gantry_scan::{Database, ScanReport, Severity};
use gantry_store::{ImageScanRecord, Store};
use gantry_trust::{
    Decision, Facts, ImageRef, Outcome, Policy, PublicKey, SignatureSet, Verification,
};

/// The trust policy in force and the vulnerability database it gates with.
#[derive(Debug)]
pub struct ImageTrust {
    policy_path: Option<PathBuf>,
    policy: RwLock<Option<Arc<Policy>>>,
    vulndb_dir: PathBuf,
    db_cache: Mutex<Option<(SystemTime, Arc<Database>)>>,
}

/// A scan as stored: the report and the summary the policy reads.
#[derive(Clone, Debug)]
pub struct StoredScan {
    pub record: ImageScanRecord,
    pub report: ScanReport,
    /// Found now (not read back from the store).
    pub fresh: bool,
}

impl ImageTrust {
    /// Loads the policy at `policy_path` when given (a missing explicit file is an error;
    /// `optional` makes a missing file mean "no policy") and uses the vulnerability database in
    /// `vulndb_dir`.
    pub fn new(
        policy_path: Option<PathBuf>,
        optional: bool,
        vulndb_dir: PathBuf,
    ) -> Result<ImageTrust, String> {
        let policy_path = match policy_path {
            Some(p) if optional && !p.exists() => None,
            other => other,
        };
        let trust = ImageTrust {
            policy_path,
            policy: RwLock::new(None),
            vulndb_dir,
            db_cache: Mutex::new(None),
        };
        trust.reload()?;
        Ok(trust)
    }

    /// Re-reads the policy file (the server calls this on SIGHUP). On error the previous
    /// policy stays in force.
    pub fn reload(&self) -> Result<Option<PathBuf>, String> {
        let Some(path) = &self.policy_path else {
            return Ok(None);
        };
        let policy = Policy::load(path).map_err(|e| e.to_string())?;
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(policy));
        Ok(Some(path.clone()))
    }

    /// The policy in force, if any.
    pub fn policy(&self) -> Option<Arc<Policy>> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where the vulnerability database lives.
    pub fn vulndb_dir(&self) -> &Path {
        &self.vulndb_dir
    }

    /// The vulnerability database, reloaded when its file changed; `None` before any import.
    pub fn vulndb(&self) -> Result<Option<Arc<Database>>, String> {
        let modified = std::fs::read_dir(&self.vulndb_dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok().and_then(|m| m.modified().ok()))
            .max();
        let Some(modified) = modified else {
            return Ok(None);
        };
        let mut cache = self.db_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, db)) = cache.as_ref()
            && *at == modified
        {
            return Ok(Some(Arc::clone(db)));
        }
        let db = Database::open(&self.vulndb_dir).map_err(|e| e.to_string())?;
        let db = db.map(Arc::new);
        *cache = db.as_ref().map(|d| (modified, Arc::clone(d)));
        Ok(db)
    }

    /// The scan of `digest` with the current database: read back when stored, else made now
    /// (from the image's unpacked root filesystem) and stored. `None` when no database exists.
    pub async fn scan(
        &self,
        images: &Arc<ImageStore>,
        store: &Store,
        digest: &str,
    ) -> Result<Option<StoredScan>, String> {
        let Some(db) = self.vulndb()? else {
            return Ok(None);
        };
        if let Some(record) = store
            .image_scan(digest, db.version())
            .await
            .map_err(|e| e.to_string())?
            && let Ok(report) = serde_json::from_str::<ScanReport>(&record.report_json)
        {
            return Ok(Some(StoredScan {
                record,
                report,
                fresh: false,
            }));
        }
        let images = Arc::clone(images);
        let owned = digest.to_string();
        let db2 = Arc::clone(&db);
        let report = tokio::task::spawn_blocking(move || -> Result<ScanReport, String> {
            let rootfs = images.rootfs(&owned).map_err(|e| e.to_string())?;
            let inventory = gantry_scan::inventory(&rootfs).map_err(|e| e.to_string())?;
            Ok(gantry_scan::scan(&inventory, &db2))
        })
        .await
        .map_err(|e| format!("scanning panicked: {e}"))??;
        let (worst, _) = summarize(&report);
        let record = ImageScanRecord {
            digest: digest.to_string(),
            db_version: db.version().to_string(),
            scanned_at_ms: crate::now_ms(),
            worst: worst.to_string(),
            counts_json: serde_json::to_string(&report.counts).unwrap_or_else(|_| "{}".into()),
            report_json: serde_json::to_string(&report).map_err(|e| e.to_string())?,
        };
        store
            .put_image_scan(&record)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Some(StoredScan {
            record,
            report,
            fresh: true,
        }))
    }

    /// Decides on the image `digest`, named `reference` in a spec or deployment; `None` when
    /// no policy is in force.
    pub async fn check(
        &self,
        images: &Arc<ImageStore>,
        registry: Option<&RegistryClient>,
        store: &Store,
        reference: &str,
        digest: &str,
        pinned_by_run: bool,
    ) -> Option<Decision> {
        let policy = self.policy()?;
        let image = match parse_reference(reference) {
            Ok(r) => r,
            Err(denied) => return Some(denied),
        };
        let rule = match policy.rule_for(&image) {
            Ok(rule) => rule,
            Err(decision) => return Some(decision),
        };
        let mut facts = Facts {
            // A rerun runs the digest its run recorded, whatever the spec says.
            pinned: image.is_pinned() || pinned_by_run,
            digest: Some(digest.to_string()),
            ..Facts::default()
        };
        if rule.needs_signatures() {
            facts.signatures =
                Some(verify_signatures(images, registry, reference, digest, &rule.keys()).await);
        }
        let mut notes = Vec::new();
        if rule.needs_scan() {
            match self.scan(images, store, digest).await {
                Ok(Some(scan)) => {
                    let (worst, unrated) = summarize(&scan.report);
                    facts.worst_severity = Some(worst);
                    facts.unrated_findings = unrated;
                }
                Ok(None) => notes.push(format!(
                    "no vulnerability database in {}: import one with `gantry vulndb import`",
                    self.vulndb_dir.display()
                )),
                Err(e) => notes.push(format!("the scan failed: {e}")),
            }
        }
        let mut decision = rule.decide(&facts);
        if decision.outcome != Outcome::Allow {
            decision.reasons.extend(notes);
        }
        Some(decision)
    }
}

impl ImageTrust {
    /// What the policy says before the image is pulled: a denial when its registry is not
    /// allowed, no rule matches, or the rule wants a digest the reference does not pin, so a
    /// denied image is never downloaded. `None` when the rest can only be judged once the
    /// image is at hand (or there is no policy).
    pub fn precheck(&self, reference: &str, pinned_by_run: bool) -> Option<Decision> {
        let policy = self.policy()?;
        let image = match parse_reference(reference) {
            Ok(r) => r,
            Err(denied) => return Some(denied),
        };
        let rule = match policy.rule_for(&image) {
            Ok(rule) => rule,
            Err(decision) => return (decision.outcome == Outcome::Deny).then_some(decision),
        };
        if !rule.requires_digest() || image.is_pinned() || pinned_by_run {
            return None;
        }
        // Everything else granted: the decision says only what the reference lacks.
        let granted = Facts {
            pinned: false,
            digest: None,
            signatures: Some(Verification {
                verified_by: rule.keys().iter().map(|k| k.id().clone()).collect(),
                rejected: Vec::new(),
            }),
            worst_severity: Some(Severity::None),
            unrated_findings: false,
        };
        let decision = rule.decide(&granted);
        (decision.outcome == Outcome::Deny).then_some(decision)
    }
}

/// The reference as the policy reads it, or the denial of one it cannot read.
fn parse_reference(reference: &str) -> Result<ImageRef, Decision> {
    ImageRef::parse(reference).map_err(|e| Decision {
        outcome: Outcome::Deny,
        rule: None,
        reasons: vec![format!("the reference cannot be judged: {e}")],
    })
}

/// The worst rated severity of a report (`none` when clean) and whether unrated findings exist.
pub fn summarize(report: &ScanReport) -> (Severity, bool) {
    let worst = report
        .findings
        .iter()
        .map(|f| f.severity)
        .filter(|s| *s != Severity::Unknown)
        .max()
        .unwrap_or(Severity::None);
    let unrated = report
        .findings
        .iter()
        .any(|f| f.severity == Severity::Unknown);
    (worst, unrated)
}

/// Checks the image's cosign signatures with `keys`: from the image store when kept there, else
/// from the registry the reference names (then kept). Kept signatures can be older than the
/// registry's (a second signer an `all_of` rule waits for signs later), so when one of `keys`
/// has not signed the kept ones, the registry's current signatures are checked too. Failures
/// become rejections, so the policy's decision says why.
pub async fn verify_signatures(
    images: &Arc<ImageStore>,
    registry: Option<&RegistryClient>,
    reference: &str,
    digest: &str,
    keys: &[PublicKey],
) -> Verification {
    let failed = |reason: String| Verification {
        verified_by: Vec::new(),
        rejected: vec![gantry_trust::Rejection { layer: 0, reason }],
    };
    let kept = match images.signatures(digest) {
        Ok(kept) => kept,
        Err(e) => return failed(e.to_string()),
    };
    let Some(kept) = kept else {
        // Nothing kept: this fetches from the registry (and keeps what it finds).
        let artifacts = match load_signatures(images, registry, reference, digest).await {
            Ok(Some(a)) => a,
            Ok(None) => return Verification::default(),
            Err(e) => return failed(e),
        };
        return match signature_set(&artifacts) {
            Ok(set) => set.verify(digest, keys),
            Err(e) => failed(e),
        };
    };
    let verification = match signature_set(&kept) {
        Ok(set) => set.verify(digest, keys),
        Err(e) => failed(e),
    };
    if keys.iter().all(|k| verification.is_verified_by(k.id())) {
        return verification;
    }
    let Some(registry) = registry.filter(|_| RegistryRef::names_registry(reference)) else {
        return verification;
    };
    let Ok(r) = RegistryRef::parse(reference) else {
        return verification;
    };
    // The registry unreachable or without signatures: the kept ones still count.
    let Ok(Some(fresh)) = registry.fetch_signatures(&r, digest).await else {
        return verification;
    };
    if fresh.manifest == kept.manifest {
        return verification;
    }
    let Ok(fresh_set) = signature_set(&fresh) else {
        return verification;
    };
    let mut merged = fresh_set.verify(digest, keys);
    for id in &verification.verified_by {
        if !merged.verified_by.contains(id) {
            merged.verified_by.push(id.clone());
        }
    }
    // Keep the registry's signatures, so later decisions need not ask again.
    let _ = keep_fresh_signatures(images, digest, &fresh);
    merged
}

/// Keeps `fresh` (signatures just read from the registry) as the image's signatures, unless
/// that would drop a signature kept only in the image store (`gantry image sign --local`, not
/// pushed yet); says whether it kept them.
pub fn keep_fresh_signatures(
    images: &ImageStore,
    digest: &str,
    fresh: &SignatureArtifacts,
) -> Result<bool, String> {
    let fresh_set = signature_set(fresh)?;
    if let Some(kept) = images.signatures(digest).map_err(|e| e.to_string())?
        && let Ok(kept_set) = signature_set(&kept)
        && !kept_set
            .layers()
            .iter()
            .all(|k| fresh_set.layers().iter().any(|l| l.digest == k.digest))
    {
        return Ok(false);
    }
    images
        .save_signatures(digest, fresh)
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// The signatures of `digest`: kept in the image store, else fetched from the registry (and
/// kept). `None` when there are none.
pub async fn load_signatures(
    images: &Arc<ImageStore>,
    registry: Option<&RegistryClient>,
    reference: &str,
    digest: &str,
) -> Result<Option<SignatureArtifacts>, String> {
    if let Some(kept) = images.signatures(digest).map_err(|e| e.to_string())? {
        return Ok(Some(kept));
    }
    let Some(registry) = registry.filter(|_| RegistryRef::names_registry(reference)) else {
        return Ok(None);
    };
    let r = RegistryRef::parse(reference).map_err(|e| e.to_string())?;
    match registry.fetch_signatures(&r, digest).await {
        Ok(Some(artifacts)) => {
            images
                .save_signatures(digest, &artifacts)
                .map_err(|e| e.to_string())?;
            Ok(Some(artifacts))
        }
        Ok(None) => {
            if registry.has_sigstore_bundle(&r, digest).await {
                Err(format!(
                    "{} has a Sigstore bundle signature (cosign v3's default format), which Gantry cannot verify yet; {}",
                    r.repository_path(),
                    gantry_trust::signature_manifest::LEGACY_SIGN_HINT
                ))
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(format!("cannot fetch the signatures: {e}")),
    }
}

/// Parses kept signature artifacts and attaches each payload.
pub fn signature_set(artifacts: &SignatureArtifacts) -> Result<SignatureSet, String> {
    let mut set = SignatureSet::parse(&artifacts.manifest).map_err(|e| e.to_string())?;
    let digests: Vec<String> = set.layers().iter().map(|l| l.digest.clone()).collect();
    for (i, d) in digests.iter().enumerate() {
        let payload = artifacts
            .blob(d)
            .ok_or_else(|| format!("the signature payload {d} is missing"))?;
        set.attach_payload(i, payload.to_vec())
            .map_err(|e| e.to_string())?;
    }
    Ok(set)
}

/// Signature artifacts for pushing a [`SignatureSet`] to `source`.
pub fn artifacts_of(set: &SignatureSet, source: &str) -> Result<SignatureArtifacts, String> {
    let upload = set.to_upload().map_err(|e| e.to_string())?;
    let mut blobs = vec![(upload.config_digest.clone(), upload.config.clone())];
    blobs.extend(upload.payloads.iter().cloned());
    Ok(SignatureArtifacts {
        source: source.to_string(),
        manifest: upload.manifest,
        blobs,
    })
}
