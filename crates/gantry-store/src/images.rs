//! What the store remembers about images: trust decisions and vulnerability scans.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use crate::error::StoreError;
use crate::store::{Store, column};

/// One trust decision about the image of a run step or a deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDecisionRecord {
    /// `run` or `deployment`.
    pub subject_kind: String,
    pub subject_id: String,
    /// The step, or the deployment's model slot.
    pub item: String,
    pub reference: String,
    pub digest: String,
    /// `allow`, `warn` or `deny`.
    pub outcome: String,
    pub rule: Option<String>,
    pub reasons: Vec<String>,
    pub ts_ms: i64,
}

/// A stored vulnerability scan of one image with one database version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageScanRecord {
    pub digest: String,
    pub db_version: String,
    pub scanned_at_ms: i64,
    /// Worst rated severity found (`none` when clean).
    pub worst: String,
    /// Findings per severity, as JSON (`{"critical": 1, ...}`).
    pub counts_json: String,
    /// The whole report, as JSON.
    pub report_json: String,
}

impl Store {
    /// Records decisions (replacing none: a later check adds rows with its own time).
    pub async fn record_image_decisions(
        &self,
        decisions: &[ImageDecisionRecord],
    ) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("recording image decisions"))?;
        for d in decisions {
            let reasons = serde_json::to_string(&d.reasons).unwrap_or_else(|_| "[]".into());
            sqlx::query(
                "INSERT INTO image_decisions (subject_kind, subject_id, item, reference, digest, \
                 outcome, rule, reasons_json, ts_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (subject_kind, subject_id, item, ts_ms) DO UPDATE SET \
                 reference = excluded.reference, digest = excluded.digest, \
                 outcome = excluded.outcome, rule = excluded.rule, reasons_json = excluded.reasons_json",
            )
            .bind(&d.subject_kind)
            .bind(&d.subject_id)
            .bind(&d.item)
            .bind(&d.reference)
            .bind(&d.digest)
            .bind(&d.outcome)
            .bind(d.rule.as_deref())
            .bind(reasons)
            .bind(d.ts_ms)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(format!(
                "recording the image decision for {} {}",
                d.subject_kind, d.subject_id
            )))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::query("recording image decisions"))
    }

    /// The decisions about `subject_kind` `subject_id`, oldest first.
    pub async fn image_decisions(
        &self,
        subject_kind: &str,
        subject_id: &str,
    ) -> Result<Vec<ImageDecisionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT subject_kind, subject_id, item, reference, digest, outcome, rule, \
             reasons_json, ts_ms FROM image_decisions WHERE subject_kind = $1 AND subject_id = $2 \
             ORDER BY ts_ms, item",
        )
        .bind(subject_kind)
        .bind(subject_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading the image decisions of {subject_kind} {subject_id}"
        )))?;
        rows.iter().map(decision_from_row).collect()
    }

    /// Stores a scan (replacing one of the same image and database version).
    pub async fn put_image_scan(&self, scan: &ImageScanRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO image_scans (digest, db_version, scanned_at_ms, worst, counts_json, \
             report_json) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (digest, db_version) DO \
             UPDATE SET scanned_at_ms = excluded.scanned_at_ms, worst = excluded.worst, \
             counts_json = excluded.counts_json, report_json = excluded.report_json",
        )
        .bind(&scan.digest)
        .bind(&scan.db_version)
        .bind(scan.scanned_at_ms)
        .bind(&scan.worst)
        .bind(&scan.counts_json)
        .bind(&scan.report_json)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "storing the scan of {}",
            scan.digest
        )))?;
        Ok(())
    }

    /// The scan of `digest` with database `db_version`, if one was stored.
    pub async fn image_scan(
        &self,
        digest: &str,
        db_version: &str,
    ) -> Result<Option<ImageScanRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT digest, db_version, scanned_at_ms, worst, counts_json, report_json \
             FROM image_scans WHERE digest = $1 AND db_version = $2",
        )
        .bind(digest)
        .bind(db_version)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(format!("reading the scan of {digest}")))?;
        row.as_ref().map(scan_from_row).transpose()
    }

    /// The newest scan of every image scanned with `db_version`.
    pub async fn image_scans(&self, db_version: &str) -> Result<Vec<ImageScanRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT digest, db_version, scanned_at_ms, worst, counts_json, report_json \
             FROM image_scans WHERE db_version = $1 ORDER BY digest",
        )
        .bind(db_version)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing image scans"))?;
        rows.iter().map(scan_from_row).collect()
    }
}

fn decision_from_row(row: &AnyRow) -> Result<ImageDecisionRecord, StoreError> {
    let reasons: String = column(row, "reasons_json")?;
    Ok(ImageDecisionRecord {
        subject_kind: column(row, "subject_kind")?,
        subject_id: column(row, "subject_id")?,
        item: column(row, "item")?,
        reference: column(row, "reference")?,
        digest: column(row, "digest")?,
        outcome: column(row, "outcome")?,
        rule: column(row, "rule")?,
        reasons: serde_json::from_str(&reasons).map_err(|e| StoreError::Corrupt {
            what: "image_decisions.reasons_json".into(),
            detail: e.to_string(),
        })?,
        ts_ms: column(row, "ts_ms")?,
    })
}

fn scan_from_row(row: &AnyRow) -> Result<ImageScanRecord, StoreError> {
    Ok(ImageScanRecord {
        digest: column(row, "digest")?,
        db_version: column(row, "db_version")?,
        scanned_at_ms: column(row, "scanned_at_ms")?,
        worst: column(row, "worst")?,
        counts_json: column(row, "counts_json")?,
        report_json: column(row, "report_json")?,
    })
}
