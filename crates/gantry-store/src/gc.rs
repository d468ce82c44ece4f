//! What garbage collection must keep, and the logs it may drop. A run is *kept* while it is
//! not over, or when it ended (or, if it never recorded an end, started) at or after the
//! retention cutoff; what a kept run consumed or produced stays, as does every registered
//! model version's artifact, data and tagged digests (a drift reference profile), and every
//! upload granted inside retention.

use std::collections::HashSet;

use crate::error::StoreError;
use crate::store::{Store, column};

/// The SQL condition (on `runs r`, cutoff as `$1`) of a run gc keeps.
const KEPT_RUN: &str = "(r.status IN ('queued', 'running') \
     OR COALESCE(r.finished_at_ms, r.started_at_ms, r.created_at_ms) >= $1)";

/// What the expired logs hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogVolume {
    pub chunks: i64,
    pub bytes: i64,
}

impl Store {
    /// Every artifact digest gc must keep (see the module docs).
    pub async fn referenced_artifacts(
        &self,
        cutoff_ms: i64,
    ) -> Result<HashSet<String>, StoreError> {
        let op = "listing the artifacts gc keeps";
        let mut out = HashSet::new();
        let sql = format!(
            "SELECT DISTINCT l.digest FROM lineage l JOIN step_runs s ON s.id = l.step_run_id \
             JOIN runs r ON r.id = s.run_id WHERE {KEPT_RUN}"
        );
        for row in sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(cutoff_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?
        {
            out.insert(column::<String>(&row, "digest")?);
        }
        // A running step's inputs (and a finished step's outputs) are on its record before
        // they are in the lineage.
        let sql = format!(
            "SELECT s.inputs_json, s.outputs_json FROM step_runs s JOIN runs r ON r.id = s.run_id \
             WHERE {KEPT_RUN} AND s.status IN ('pending', 'running')"
        );
        for row in sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(cutoff_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?
        {
            for col in ["inputs_json", "outputs_json"] {
                let text: String = column(&row, col)?;
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    collect_digests(&v, &mut out);
                }
            }
        }
        // A version's artifact, its data, and digests in its tags (a drift reference profile).
        for row in
            sqlx::query("SELECT artifact_digest, data_digests_json, tags_json FROM model_versions")
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::query(op))?
        {
            out.insert(column::<String>(&row, "artifact_digest")?);
            for col in ["data_digests_json", "tags_json"] {
                let text: String = column(&row, col)?;
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    collect_digests(&v, &mut out);
                }
            }
        }
        for row in
            sqlx::query("SELECT value FROM mlflow_model_version_tags WHERE value LIKE 'sha256:%'")
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::query(op))?
        {
            out.insert(column::<String>(&row, "value")?);
        }
        for row in sqlx::query("SELECT digest FROM artifact_grants WHERE created_at_ms >= $1")
            .bind(cutoff_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?
        {
            out.insert(column::<String>(&row, "digest")?);
        }
        Ok(out)
    }

    /// Whether `digest` is referenced now (checked again right before gc removes it, so a
    /// run that started using it since the list was made keeps it).
    pub async fn artifact_referenced(
        &self,
        digest: &str,
        cutoff_ms: i64,
    ) -> Result<bool, StoreError> {
        let op = "checking an artifact before gc removes it";
        let sql = format!(
            "SELECT 1 AS one FROM lineage l JOIN step_runs s ON s.id = l.step_run_id \
             JOIN runs r ON r.id = s.run_id WHERE l.digest = $2 AND {KEPT_RUN} LIMIT 1"
        );
        let in_run = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(cutoff_ms)
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(op))?
            .is_some();
        if in_run {
            return Ok(true);
        }
        let sql = "SELECT 1 AS one FROM step_runs s JOIN runs r ON r.id = s.run_id \
             WHERE r.status IN ('queued', 'running') AND s.status IN ('pending', 'running') \
             AND (s.inputs_json LIKE $1 OR s.outputs_json LIKE $1) LIMIT 1";
        let in_step = sqlx::query(sql)
            .bind(format!("%{digest}%"))
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(op))?
            .is_some();
        if in_step {
            return Ok(true);
        }
        let in_model = sqlx::query(
            "SELECT 1 AS one FROM model_versions WHERE artifact_digest = $1 \
             OR data_digests_json LIKE $2 OR tags_json LIKE $2 LIMIT 1",
        )
        .bind(digest)
        .bind(format!("%{digest}%"))
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(op))?
        .is_some();
        let in_tag =
            sqlx::query("SELECT 1 AS one FROM mlflow_model_version_tags WHERE value = $1 LIMIT 1")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query(op))?
                .is_some();
        if in_model || in_tag {
            return Ok(true);
        }
        Ok(
            sqlx::query("SELECT 1 AS one FROM artifact_grants WHERE digest = $1 AND created_at_ms >= $2 LIMIT 1")
                .bind(digest)
                .bind(cutoff_ms)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query(op))?
                .is_some(),
        )
    }

    /// Image digests a kept run pinned or ran.
    pub async fn referenced_images(&self, cutoff_ms: i64) -> Result<HashSet<String>, StoreError> {
        let op = "listing the images gc keeps";
        let mut out = HashSet::new();
        let sql = format!("SELECT r.images_json FROM runs r WHERE {KEPT_RUN}");
        for row in sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(cutoff_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?
        {
            let images: String = column(&row, "images_json")?;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&images) {
                collect_digests(&v, &mut out);
            }
        }
        let sql = format!(
            "SELECT DISTINCT s.image_digest FROM step_runs s JOIN runs r ON r.id = s.run_id \
             WHERE s.image_digest IS NOT NULL AND {KEPT_RUN}"
        );
        for row in sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(cutoff_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?
        {
            out.insert(column::<String>(&row, "image_digest")?);
        }
        Ok(out)
    }

    /// Ids of the runs that are not over (their scratch directories are in use).
    pub async fn active_run_ids(&self) -> Result<HashSet<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM runs WHERE status IN ('queued', 'running')")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("listing the runs in progress"))?;
        rows.iter().map(|r| column(r, "id")).collect()
    }

    /// The log of runs that are not kept.
    pub async fn expired_logs(&self, cutoff_ms: i64) -> Result<LogVolume, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) AS chunks, CAST(COALESCE(SUM(c.bytes), 0) AS BIGINT) AS bytes FROM log_chunks c \
             JOIN runs r ON r.id = c.run_id WHERE NOT {KEPT_RUN}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(cutoff_ms)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query("measuring expired logs"))?;
        Ok(LogVolume {
            chunks: column(&row, "chunks")?,
            bytes: column(&row, "bytes")?,
        })
    }

    /// Drops the log of runs that are not kept; returns what it held.
    pub async fn delete_expired_logs(&self, cutoff_ms: i64) -> Result<LogVolume, StoreError> {
        let volume = self.expired_logs(cutoff_ms).await?;
        let op = "dropping expired logs";
        let sql = format!(
            "DELETE FROM log_chunks WHERE run_id IN (SELECT r.id FROM runs r WHERE NOT {KEPT_RUN})"
        );
        let mut tx = self.begin_write(op).await?;
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(cutoff_ms)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op))?;
        tx.commit().await.map_err(StoreError::query(op))?;
        Ok(volume)
    }

    /// Every log's chunks and bytes.
    pub async fn log_volume(&self) -> Result<LogVolume, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS chunks, CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS bytes FROM log_chunks",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query("measuring logs"))?;
        Ok(LogVolume {
            chunks: column(&row, "chunks")?,
            bytes: column(&row, "bytes")?,
        })
    }
}

/// Every `sha256:` string in a JSON value.
fn collect_digests(v: &serde_json::Value, out: &mut HashSet<String>) {
    match v {
        serde_json::Value::String(s) if s.starts_with("sha256:") => {
            out.insert(s.clone());
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_digests(i, out)),
        serde_json::Value::Object(map) => map.values().for_each(|i| collect_digests(i, out)),
        _ => {}
    }
}
