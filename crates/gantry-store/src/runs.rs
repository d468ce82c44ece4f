use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::error::StoreError;
use crate::record::{RunFilter, RunRecord};
use crate::status::RunStatus;
use crate::store::{Store, column};

/// Shortest prefix `get_run` resolves, so a typo does not silently pick some run.
const MIN_PREFIX_LEN: usize = 4;

macro_rules! run_columns {
    () => {
        "id, pipeline, status, spec_file, spec_yaml, params_json, images_json, no_cache, rerun_of, \
         created_at_ms, started_at_ms, finished_at_ms, owner_pid, owner_host, error, submitted_by"
    };
}

/// The columns `run_from_row` reads.
pub(crate) const RUN_COLUMNS: &str = run_columns!();

const INSERT_RUN: &str = concat!(
    "INSERT INTO runs (",
    run_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
);
const INSERT_RUN_IF_ABSENT: &str = concat!(
    "INSERT INTO runs (",
    run_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
     ON CONFLICT (id) DO NOTHING"
);

/// `sql` (one of the inserts above) with `r`'s columns bound.
fn insert_run<'q>(
    sql: &'static str,
    r: &'q RunRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sql)
        .bind(&r.id)
        .bind(&r.pipeline)
        .bind(r.status.as_str())
        .bind(&r.spec_file)
        .bind(&r.spec_yaml)
        .bind(&r.params_json)
        .bind(&r.images_json)
        .bind(i64::from(r.no_cache))
        .bind(r.rerun_of.as_deref())
        .bind(r.created_at_ms)
        .bind(r.started_at_ms)
        .bind(r.finished_at_ms)
        .bind(r.owner_pid)
        .bind(r.owner_host.as_deref())
        .bind(r.error.as_deref())
        .bind(r.submitted_by.as_deref())
}

impl Store {
    pub async fn create_run(&self, r: &RunRecord) -> Result<(), StoreError> {
        insert_run(INSERT_RUN, r)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query(format!("creating run {}", r.id)))?;
        Ok(())
    }

    /// The run of an exported workflow (one of its steps reports): `r` is stored with its
    /// orchestrator's id on the first report and the stored run returned on every report.
    /// Reports arriving together agree, since `r.id` is derived from the orchestrator's id.
    pub async fn ensure_exported_run(
        &self,
        r: &RunRecord,
        orchestrator: &str,
        external_id: &str,
        name: &str,
    ) -> Result<RunRecord, StoreError> {
        let op = format!("recording exported run {}", r.id);
        let mut tx = self.begin_write(&op).await?;
        insert_run(INSERT_RUN_IF_ABSENT, r)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op.clone()))?;
        sqlx::query(
            "INSERT INTO exported_runs (run_id, orchestrator, external_id, name) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&r.id)
        .bind(orchestrator)
        .bind(external_id)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op.clone()))?;
        tx.commit().await.map_err(StoreError::query(op))?;
        self.get_run(&r.id).await
    }

    /// `(orchestrator, external id, name)` when run `id` is an exported workflow's.
    pub async fn exported_run(
        &self,
        id: &str,
    ) -> Result<Option<(String, String, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT orchestrator, external_id, name FROM exported_runs WHERE run_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(format!("looking up exported run {id}")))?;
        row.map(|row| {
            Ok((
                column(&row, "orchestrator")?,
                column(&row, "external_id")?,
                column(&row, "name")?,
            ))
        })
        .transpose()
    }

    /// The ids of the exported workflows' runs that are queued or running: no process of
    /// this machine owns them, so recovery leaves them alone.
    pub async fn live_exported_runs(
        &self,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT e.run_id FROM exported_runs e JOIN runs r ON r.id = e.run_id \
             WHERE r.status IN ('queued', 'running')",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing exported runs"))?;
        Ok(ids.into_iter().collect())
    }

    /// Ends a run that is still queued or running (an exported workflow's end, as its
    /// orchestrator reports it); a run that already ended keeps its status. True when it ended
    /// here.
    pub async fn end_live_run(
        &self,
        id: &str,
        status: RunStatus,
        finished_at_ms: i64,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE runs SET status = $2, finished_at_ms = $3, error = COALESCE($4, error) \
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(finished_at_ms)
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!("ending run {id}")))?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets the spec snapshot of a run that has none (an exported run learns its spec from
    /// the workflow's exit handler); true when it was set.
    pub async fn set_missing_spec(&self, id: &str, spec_yaml: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE runs SET spec_yaml = $2 WHERE id = $1 AND spec_yaml = ''")
            .bind(id)
            .bind(spec_yaml)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query(format!("saving the spec of run {id}")))?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets the status; `finished_at_ms` and `error` are only written when given.
    pub async fn update_run_status(
        &self,
        id: &str,
        status: RunStatus,
        finished_at_ms: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE runs SET status = $2, finished_at_ms = COALESCE($3, finished_at_ms), \
             error = COALESCE($4, error) WHERE id = $1",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(finished_at_ms)
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "updating the status of run {id}"
        )))?;
        expect_one_row(done.rows_affected(), id)
    }

    pub async fn set_run_started(&self, id: &str, started_at_ms: i64) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE runs SET started_at_ms = $2 WHERE id = $1")
            .bind(id)
            .bind(started_at_ms)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query(format!("marking run {id} started")))?;
        expect_one_row(done.rows_affected(), id)
    }

    /// Finds a run by exact id, or by a unique prefix of at least 4 characters.
    pub async fn get_run(&self, id_or_prefix: &str) -> Result<RunRecord, StoreError> {
        let op = || format!("looking up run {id_or_prefix}");
        let exact = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = $1"
        ))
        .bind(id_or_prefix)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(op()))?;
        if let Some(row) = exact {
            return run_from_row(&row);
        }
        let not_found = || StoreError::NotFound {
            kind: "run",
            id: id_or_prefix.to_owned(),
        };
        if id_or_prefix.chars().count() < MIN_PREFIX_LEN {
            return Err(not_found());
        }
        // substr rather than LIKE: LIKE treats `_`/`%` as wildcards and is case-insensitive
        // on SQLite but not on PostgreSQL.
        let mut rows = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE substr(id, 1, length($1)) = $1 ORDER BY id LIMIT 6"
        ))
        .bind(id_or_prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op()))?;
        match rows.len() {
            0 => Err(not_found()),
            1 => run_from_row(&rows.remove(0)),
            _ => Err(StoreError::Ambiguous {
                kind: "run",
                prefix: id_or_prefix.to_owned(),
                matches: rows
                    .iter()
                    .map(|r| column::<String>(r, "id"))
                    .collect::<Result<_, _>>()?,
            }),
        }
    }

    /// Runs matching the filter, newest first.
    pub async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        let mut sql = String::from(concat!("SELECT ", run_columns!(), " FROM runs WHERE 1 = 1"));
        let mut n = 0;
        let mut placeholder = || {
            n += 1;
            format!("${n}")
        };
        if f.pipeline.is_some() {
            sql += &format!(" AND pipeline = {}", placeholder());
        }
        if f.status.is_some() {
            sql += &format!(" AND status = {}", placeholder());
        }
        sql += &format!(
            " ORDER BY created_at_ms DESC, id DESC LIMIT {} OFFSET {}",
            placeholder(),
            placeholder()
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        if let Some(p) = &f.pipeline {
            query = query.bind(p.as_str());
        }
        if let Some(s) = f.status {
            query = query.bind(s.as_str());
        }
        let limit = if f.limit <= 0 { i64::MAX } else { f.limit };
        let rows = query
            .bind(limit)
            .bind(f.offset.max(0))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("listing runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    /// Runs in any of `statuses`, oldest first (the order a recovery pass handles them in).
    pub async fn runs_with_status(
        &self,
        statuses: &[RunStatus],
    ) -> Result<Vec<RunRecord>, StoreError> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=statuses.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            concat!(
                "SELECT ",
                run_columns!(),
                " FROM runs WHERE status IN ({}) ORDER BY created_at_ms, id"
            ),
            placeholders.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for s in statuses {
            query = query.bind(s.as_str());
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("listing runs by status"))?;
        rows.iter().map(run_from_row).collect()
    }

    /// Marks a queued or running run, and its pending or running step runs, interrupted in one
    /// transaction. A run that already reached a terminal status is left as it is: its owner
    /// finished it in the meantime.
    pub async fn mark_run_interrupted(
        &self,
        id: &str,
        now_ms: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        let op = || format!("marking run {id} interrupted");
        let mut tx = self.begin_write(&op()).await?;
        let done = sqlx::query(
            "UPDATE runs SET status = 'interrupted', finished_at_ms = $2, error = $3 \
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(id)
        .bind(now_ms)
        .bind(reason)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        if done.rows_affected() == 0 {
            let exists = sqlx::query("SELECT id FROM runs WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?;
            return match exists {
                Some(_) => Ok(()),
                None => Err(StoreError::NotFound {
                    kind: "run",
                    id: id.to_owned(),
                }),
            };
        }
        sqlx::query(crate::step_runs::INTERRUPT_UNFINISHED_STEPS)
            .bind(id)
            .bind(now_ms)
            .bind(reason)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))
    }
}

fn expect_one_row(affected: u64, id: &str) -> Result<(), StoreError> {
    if affected == 0 {
        return Err(StoreError::NotFound {
            kind: "run",
            id: id.to_owned(),
        });
    }
    Ok(())
}

pub(crate) fn run_from_row(row: &AnyRow) -> Result<RunRecord, StoreError> {
    let id: String = column(row, "id")?;
    let status: String = column(row, "status")?;
    let status = status.parse().map_err(|e| StoreError::Corrupt {
        what: format!("run {id}"),
        detail: format!("{e}"),
    })?;
    Ok(RunRecord {
        pipeline: column(row, "pipeline")?,
        status,
        spec_file: column(row, "spec_file")?,
        spec_yaml: column(row, "spec_yaml")?,
        params_json: column(row, "params_json")?,
        images_json: column(row, "images_json")?,
        no_cache: column::<i64>(row, "no_cache")? != 0,
        rerun_of: column(row, "rerun_of")?,
        created_at_ms: column(row, "created_at_ms")?,
        started_at_ms: column(row, "started_at_ms")?,
        finished_at_ms: column(row, "finished_at_ms")?,
        owner_pid: column(row, "owner_pid")?,
        owner_host: column(row, "owner_host")?,
        error: column(row, "error")?,
        submitted_by: column(row, "submitted_by")?,
        id,
    })
}
