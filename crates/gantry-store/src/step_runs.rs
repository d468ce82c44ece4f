use sqlx::any::AnyRow;

use crate::error::StoreError;
use crate::record::StepRunRecord;
use crate::store::{Store, column};

/// The step run belongs to none of the exported workflows' runs.
macro_rules! not_exported {
    () => {
        "NOT EXISTS (SELECT 1 FROM exported_runs e WHERE e.run_id = step_runs.run_id)"
    };
}

macro_rules! step_run_columns {
    () => {
        "id, run_id, step, seq, attempt, status, exit_code, reason, cache_key, cached_from, \
         image_digest, started_at_ms, finished_at_ms, requested_cpu_millis, \
         requested_memory_bytes, requested_gpu, peak_memory_bytes, cpu_micros, wall_ms, \
         inputs_json, outputs_json, gpu_model, gpu_util_percent, gpu_memory_peak_bytes, \
         gpu_idle_ms, resources_note, usage_key, gpu_devices"
    };
}

/// The INSERT of every column of a step run ([`bind_step_run`] binds them).
macro_rules! insert_step_run {
    () => {
        concat!(
            "INSERT INTO step_runs (",
            step_run_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
        )
    };
}

fn saving(s: &StepRunRecord) -> String {
    format!("saving step run {} ({}) of run {}", s.id, s.step, s.run_id)
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds a step run's fields in the order of `step_run_columns!`.
fn bind_step_run<'q>(q: AnyQuery<'q>, s: &'q StepRunRecord) -> AnyQuery<'q> {
    q.bind(&s.id)
        .bind(&s.run_id)
        .bind(&s.step)
        .bind(s.seq)
        .bind(s.attempt)
        .bind(s.status.as_str())
        .bind(s.exit_code)
        .bind(s.reason.as_deref())
        .bind(s.cache_key.as_deref())
        .bind(s.cached_from.as_deref())
        .bind(s.image_digest.as_deref())
        .bind(s.started_at_ms)
        .bind(s.finished_at_ms)
        .bind(s.requested_cpu_millis)
        .bind(s.requested_memory_bytes)
        .bind(s.requested_gpu)
        .bind(s.peak_memory_bytes)
        .bind(s.cpu_micros)
        .bind(s.wall_ms)
        .bind(&s.inputs_json)
        .bind(&s.outputs_json)
        .bind(s.gpu_model.as_deref())
        .bind(s.gpu_util_percent)
        .bind(s.gpu_memory_peak_bytes)
        .bind(s.gpu_idle_ms)
        .bind(s.resources_note.as_deref())
        .bind(s.usage_key.as_deref())
        .bind(s.gpu_devices.as_deref())
}

/// Marks run `$1`'s unfinished step runs interrupted at `$2` (if they have no end) because
/// of `$3` (if they have no reason).
pub(crate) const INTERRUPT_UNFINISHED_STEPS: &str = "UPDATE step_runs SET status = 'interrupted', \
     finished_at_ms = COALESCE(finished_at_ms, $2), reason = COALESCE(reason, $3) \
     WHERE run_id = $1 AND status IN ('pending', 'running')";

impl Store {
    /// Inserts the step run, or replaces every field of the one with the same id.
    pub async fn upsert_step_run(&self, s: &StepRunRecord) -> Result<(), StoreError> {
        bind_step_run(
            sqlx::query(concat!(
                insert_step_run!(),
                " ON CONFLICT (id) DO UPDATE SET run_id = excluded.run_id, step = excluded.step, \
                 seq = excluded.seq, attempt = excluded.attempt, status = excluded.status, \
                 exit_code = excluded.exit_code, reason = excluded.reason, \
                 cache_key = excluded.cache_key, cached_from = excluded.cached_from, \
                 image_digest = excluded.image_digest, started_at_ms = excluded.started_at_ms, \
                 finished_at_ms = excluded.finished_at_ms, \
                 requested_cpu_millis = excluded.requested_cpu_millis, \
                 requested_memory_bytes = excluded.requested_memory_bytes, \
                 requested_gpu = excluded.requested_gpu, \
                 peak_memory_bytes = excluded.peak_memory_bytes, cpu_micros = excluded.cpu_micros, \
                 wall_ms = excluded.wall_ms, inputs_json = excluded.inputs_json, \
                 outputs_json = excluded.outputs_json, gpu_model = excluded.gpu_model, \
                 gpu_util_percent = excluded.gpu_util_percent, \
                 gpu_memory_peak_bytes = excluded.gpu_memory_peak_bytes, \
                 gpu_idle_ms = excluded.gpu_idle_ms, resources_note = excluded.resources_note, \
                 usage_key = excluded.usage_key, gpu_devices = excluded.gpu_devices"
            )),
            s,
        )
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(saving(s)))?;
        Ok(())
    }

    /// Inserts the step run unless one with its id exists; true when it was inserted (a
    /// report sent twice at once is recorded by one of them).
    pub async fn insert_step_run(&self, s: &StepRunRecord) -> Result<bool, StoreError> {
        let done = bind_step_run(
            sqlx::query(concat!(insert_step_run!(), " ON CONFLICT (id) DO NOTHING")),
            s,
        )
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(saving(s)))?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks the run's step runs still pending or running interrupted, with `reason` unless
    /// they have one; how many there were. (An exported run's end settles an attempt whose
    /// report the server stopped handling halfway.)
    pub async fn interrupt_unfinished_step_runs(
        &self,
        run_id: &str,
        now_ms: i64,
        reason: &str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(INTERRUPT_UNFINISHED_STEPS)
            .bind(run_id)
            .bind(now_ms)
            .bind(reason)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query(format!(
                "interrupting the unfinished steps of run {run_id}"
            )))?;
        Ok(done.rows_affected())
    }

    /// The step run with this id, if there is one.
    pub async fn find_step_run(&self, id: &str) -> Result<Option<StepRunRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            step_run_columns!(),
            " FROM step_runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(format!("reading step run {id}")))?;
        row.as_ref().map(step_run_from_row).transpose()
    }

    /// The run's step runs in plan order, attempts in order.
    pub async fn list_step_runs(&self, run_id: &str) -> Result<Vec<StepRunRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            step_run_columns!(),
            " FROM step_runs WHERE run_id = $1 ORDER BY seq, attempt, id"
        ))
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "listing step runs of run {run_id}"
        )))?;
        rows.iter().map(step_run_from_row).collect()
    }

    /// The most recent step run that actually executed with `cache_key` and succeeded.
    ///
    /// Cache hits (status `cached`, or with `cached_from` set) are never returned, so a hit
    /// always points at the execution that produced the outputs.
    ///
    /// Step runs of exported workflows (reported by their pods, see `ensure_exported_run`)
    /// are never returned: Gantry's own runs reuse only what Gantry ran.
    pub async fn find_cached(&self, cache_key: &str) -> Result<Option<StepRunRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            step_run_columns!(),
            " FROM step_runs WHERE cache_key = $1 AND status = 'succeeded' \
             AND cached_from IS NULL AND ",
            not_exported!(),
            " ORDER BY finished_at_ms DESC, id DESC LIMIT 1"
        ))
        .bind(cache_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "looking up cache key {cache_key}"
        )))?;
        row.as_ref().map(step_run_from_row).transpose()
    }

    /// [`Store::find_cached`] for a step of an exported workflow of `pipeline`: Gantry's own
    /// executions, and those reported by exported runs of the same pipeline (project).
    pub async fn find_cached_for_exported(
        &self,
        cache_key: &str,
        pipeline: &str,
    ) -> Result<Option<StepRunRecord>, StoreError> {
        self.exported_cache_entry(cache_key, pipeline, None).await
    }

    /// Step run `id` when [`Store::find_cached_for_exported`] could have answered it for
    /// `cache_key` and `pipeline` (it need not be the newest).
    pub async fn cache_entry_for_exported(
        &self,
        id: &str,
        cache_key: &str,
        pipeline: &str,
    ) -> Result<Option<StepRunRecord>, StoreError> {
        self.exported_cache_entry(cache_key, pipeline, Some(id))
            .await
    }

    async fn exported_cache_entry(
        &self,
        cache_key: &str,
        pipeline: &str,
        id: Option<&str>,
    ) -> Result<Option<StepRunRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            step_run_columns!(),
            " FROM step_runs WHERE cache_key = $1 AND status = 'succeeded' \
             AND cached_from IS NULL AND ($3 IS NULL OR id = $3) AND (",
            not_exported!(),
            " OR EXISTS (SELECT 1 FROM runs r WHERE r.id = step_runs.run_id AND r.pipeline = $2)) \
             ORDER BY finished_at_ms DESC, id DESC LIMIT 1"
        ))
        .bind(cache_key)
        .bind(pipeline)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "looking up cache key {cache_key} for pipeline {pipeline}"
        )))?;
        row.as_ref().map(step_run_from_row).transpose()
    }

    /// How many attempts of `step` run `run_id` has, and how many of its steps succeeded
    /// (or were cached).
    pub async fn step_progress(&self, run_id: &str, step: &str) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM step_runs WHERE run_id = $1 AND step = $2) AS attempts, \
             (SELECT COUNT(DISTINCT step) FROM step_runs WHERE run_id = $1 \
              AND status IN ('succeeded', 'cached')) AS done",
        )
        .bind(run_id)
        .bind(step)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "counting the steps of run {run_id}"
        )))?;
        Ok((column(&row, "attempts")?, column(&row, "done")?))
    }
}

fn step_run_from_row(row: &AnyRow) -> Result<StepRunRecord, StoreError> {
    let id: String = column(row, "id")?;
    let status: String = column(row, "status")?;
    let status = status.parse().map_err(|e| StoreError::Corrupt {
        what: format!("step run {id}"),
        detail: format!("{e}"),
    })?;
    Ok(StepRunRecord {
        run_id: column(row, "run_id")?,
        step: column(row, "step")?,
        seq: column(row, "seq")?,
        attempt: column(row, "attempt")?,
        status,
        exit_code: column(row, "exit_code")?,
        reason: column(row, "reason")?,
        cache_key: column(row, "cache_key")?,
        cached_from: column(row, "cached_from")?,
        image_digest: column(row, "image_digest")?,
        started_at_ms: column(row, "started_at_ms")?,
        finished_at_ms: column(row, "finished_at_ms")?,
        requested_cpu_millis: column(row, "requested_cpu_millis")?,
        requested_memory_bytes: column(row, "requested_memory_bytes")?,
        requested_gpu: column(row, "requested_gpu")?,
        peak_memory_bytes: column(row, "peak_memory_bytes")?,
        cpu_micros: column(row, "cpu_micros")?,
        wall_ms: column(row, "wall_ms")?,
        inputs_json: column(row, "inputs_json")?,
        outputs_json: column(row, "outputs_json")?,
        gpu_model: column(row, "gpu_model")?,
        gpu_util_percent: column(row, "gpu_util_percent")?,
        gpu_memory_peak_bytes: column(row, "gpu_memory_peak_bytes")?,
        gpu_idle_ms: column(row, "gpu_idle_ms")?,
        resources_note: column(row, "resources_note")?,
        usage_key: column(row, "usage_key")?,
        gpu_devices: column(row, "gpu_devices")?,
        id,
    })
}
