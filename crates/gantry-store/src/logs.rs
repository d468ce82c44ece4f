use crate::error::StoreError;
use crate::record::{LogChunk, LogRow};
use crate::store::{Backend, Store, column};

impl Store {
    /// Appends the chunks to a step run's log in one transaction, so a follower sees all of
    /// them or none.
    pub async fn append_logs(
        &self,
        step_run_id: &str,
        chunks: &[LogChunk],
    ) -> Result<(), StoreError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let op = || format!("appending logs of step run {step_run_id}");
        // The run id never changes, so it is read before the write transaction (on SQLite a
        // read inside it would need the write lock anyway).
        let run_id: String = sqlx::query("SELECT run_id FROM step_runs WHERE id = $1")
            .bind(step_run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(op()))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "step run",
                id: step_run_id.to_owned(),
            })
            .and_then(|row| column(&row, "run_id"))?;
        let mut tx = self.begin_write(&op()).await?;
        if self.backend == Backend::Postgres {
            // Identity values are handed out at insert time but become visible at commit, so
            // two concurrent appenders could commit ids out of order and a follower paging
            // with after_id would skip rows. Appenders of one run take turns on the run's row
            // instead. NO KEY UPDATE does not block foreign-key checks against the row.
            sqlx::query("SELECT id FROM runs WHERE id = $1 FOR NO KEY UPDATE")
                .bind(&run_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?;
        }
        for chunk in chunks {
            let data = storable_text(&chunk.data);
            sqlx::query(
                "INSERT INTO logs (run_id, step_run_id, stream, ts_ms, data) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&run_id)
            .bind(step_run_id)
            .bind(&chunk.stream)
            .bind(chunk.ts_ms)
            .bind(&*data)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        }
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Log rows of the run (optionally of one step, all attempts) with id > `after_id`, in
    /// id order; at most `limit` rows (`limit <= 0`: no limit). Following a live run means
    /// calling again with the last id seen.
    pub async fn logs(
        &self,
        run_id: &str,
        step: Option<&str>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        let limit = if limit <= 0 { i64::MAX } else { limit };
        let query = match step {
            Some(step) => sqlx::query(
                "SELECT l.id, s.step, s.attempt, l.stream, l.ts_ms, l.data \
                 FROM logs l JOIN step_runs s ON s.id = l.step_run_id \
                 WHERE l.run_id = $1 AND s.step = $2 AND l.id > $3 ORDER BY l.id LIMIT $4",
            )
            .bind(run_id)
            .bind(step),
            None => sqlx::query(
                "SELECT l.id, s.step, s.attempt, l.stream, l.ts_ms, l.data \
                 FROM logs l JOIN step_runs s ON s.id = l.step_run_id \
                 WHERE l.run_id = $1 AND l.id > $2 ORDER BY l.id LIMIT $3",
            )
            .bind(run_id),
        };
        let rows = query
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(format!("reading logs of run {run_id}")))?;
        rows.iter()
            .map(|row| {
                Ok(LogRow {
                    id: column(row, "id")?,
                    step: column(row, "step")?,
                    attempt: column(row, "attempt")?,
                    stream: column(row, "stream")?,
                    ts_ms: column(row, "ts_ms")?,
                    data: column(row, "data")?,
                })
            })
            .collect()
    }
}

/// PostgreSQL text cannot hold NUL; a step may print one. Replaced on both backends so the
/// stored log does not depend on the backend.
fn storable_text(data: &str) -> std::borrow::Cow<'_, str> {
    if data.contains('\0') {
        std::borrow::Cow::Owned(data.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(data)
    }
}
