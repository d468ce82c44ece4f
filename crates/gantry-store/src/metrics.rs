use std::collections::BTreeMap;

use crate::error::StoreError;
use crate::record::MetricRow;
use crate::store::{Store, column};

impl Store {
    /// Records a step run's metrics; a key recorded again for the same step run is replaced.
    pub async fn record_metrics(
        &self,
        step_run_id: &str,
        metrics: &BTreeMap<String, f64>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // SQLite stores NaN as NULL and the column is NOT NULL; infinities would not survive a
        // JSON export either. Reject before writing anything.
        if let Some((key, value)) = metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(StoreError::Invalid {
                what: format!("metric {key} of step run {step_run_id}"),
                detail: format!("{value} is not a finite number"),
            });
        }
        if metrics.is_empty() {
            return Ok(());
        }
        let op = || format!("recording metrics of step run {step_run_id}");
        let mut tx = self.begin_write(&op()).await?;
        for (key, value) in metrics {
            sqlx::query(
                "INSERT INTO metrics (step_run_id, name, value, recorded_at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (step_run_id, name) \
                 DO UPDATE SET value = excluded.value, recorded_at_ms = excluded.recorded_at_ms",
            )
            .bind(step_run_id)
            .bind(key.as_str())
            .bind(*value)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        }
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Metrics of every step run of the run, in plan order, attempts in order, keys sorted.
    /// The metrics one step run recorded (its primary key's prefix: no scan of the run).
    pub async fn metrics_of_step_run(
        &self,
        step_run_id: &str,
    ) -> Result<Vec<(String, f64)>, StoreError> {
        let rows = sqlx::query("SELECT name, value FROM metrics WHERE step_run_id = $1")
            .bind(step_run_id)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(format!(
                "reading metrics of step run {step_run_id}"
            )))?;
        rows.iter()
            .map(|row| Ok((column(row, "name")?, column(row, "value")?)))
            .collect()
    }

    pub async fn metrics_for_run(&self, run_id: &str) -> Result<Vec<MetricRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.step, m.name, m.value FROM metrics m \
             JOIN step_runs s ON s.id = m.step_run_id \
             WHERE s.run_id = $1 ORDER BY s.seq, s.attempt, s.id, m.name",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading metrics of run {run_id}"
        )))?;
        rows.iter()
            .map(|row| {
                Ok(MetricRow {
                    step: column(row, "step")?,
                    key: column(row, "name")?,
                    value: column(row, "value")?,
                })
            })
            .collect()
    }
}
