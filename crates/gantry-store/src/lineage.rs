use crate::error::StoreError;
use crate::record::{ArtifactRow, LineageRow};
use crate::status::Direction;
use crate::store::{Store, column};

impl Store {
    /// Records that an artifact exists; recording the same digest again changes nothing.
    pub async fn record_artifact(
        &self,
        digest: &str,
        kind: &str,
        size: u64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let size = i64::try_from(size).map_err(|_| StoreError::Invalid {
            what: format!("size of artifact {digest}"),
            detail: format!("{size} bytes does not fit a signed 64-bit integer"),
        })?;
        sqlx::query(
            "INSERT INTO artifacts (digest, kind, size, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(kind)
        .bind(size)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!("recording artifact {digest}")))?;
        Ok(())
    }

    pub async fn get_artifact(&self, digest: &str) -> Result<Option<ArtifactRow>, StoreError> {
        let row = sqlx::query(
            "SELECT digest, kind, size, created_at_ms FROM artifacts WHERE digest = $1",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(format!("looking up artifact {digest}")))?;
        row.map(|row| {
            Ok(ArtifactRow {
                digest: column(&row, "digest")?,
                kind: column(&row, "kind")?,
                size: column(&row, "size")?,
                created_at_ms: column(&row, "created_at_ms")?,
            })
        })
        .transpose()
    }

    /// Records that step run `step_run_id` read (input) or wrote (output) `digest` under
    /// `name`. Recording the same name and direction again replaces the digest.
    pub async fn record_lineage(
        &self,
        step_run_id: &str,
        name: &str,
        digest: &str,
        direction: Direction,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO lineage (step_run_id, direction, name, digest) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (step_run_id, direction, name) DO UPDATE SET digest = excluded.digest",
        )
        .bind(step_run_id)
        .bind(direction.as_str())
        .bind(name)
        .bind(digest)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "recording {direction} {name} = {digest} of step run {step_run_id}"
        )))?;
        Ok(())
    }

    /// Every input and output of every step run of the run, in plan order (inputs first).
    pub async fn lineage_for_run(&self, run_id: &str) -> Result<Vec<LineageRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.step_run_id, s.step, l.name, l.digest, l.direction, a.kind, a.size \
             FROM lineage l JOIN step_runs s ON s.id = l.step_run_id \
             LEFT JOIN artifacts a ON a.digest = l.digest \
             WHERE s.run_id = $1 ORDER BY s.seq, s.attempt, s.id, l.direction, l.name",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading lineage of run {run_id}"
        )))?;
        rows.iter()
            .map(|row| {
                Ok(LineageRow {
                    step_run_id: column(row, "step_run_id")?,
                    step: column(row, "step")?,
                    name: column(row, "name")?,
                    digest: column(row, "digest")?,
                    direction: column(row, "direction")?,
                    kind: column(row, "kind")?,
                    size: column(row, "size")?,
                })
            })
            .collect()
    }
}
