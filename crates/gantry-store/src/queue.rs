//! Admission control's durable state: each project's quota (an admin's limits) and the runs
//! waiting for admission, kept so the queue survives a server restart.
//!
//! The store only keeps them; deciding what to admit is the server's. A queued run's row goes
//! with its run (`ON DELETE CASCADE`), so the queue never keeps a run from being deleted.

use sqlx::any::AnyRow;

use crate::error::StoreError;
use crate::store::{Store, column};

/// An admin's limits for one project on a server (see `gantry project quota`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProjectQuota {
    pub project: String,
    /// None: no limit (as for every limit below).
    pub cpu_millis: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub gpus: Option<i64>,
    /// Runs in flight at once.
    pub max_runs: Option<i64>,
    /// Fair-share weight, at least 1.
    pub weight: i64,
    pub updated_at_ms: i64,
    pub updated_by: Option<String>,
}

/// A run waiting for admission, kept so the queue survives a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedRun {
    pub run_id: String,
    pub project: String,
    pub priority: i64,
    /// Submission order: the queue is read by it.
    pub seq: i64,
    pub request_json: String,
    pub enqueued_at_ms: i64,
}

const QUOTA_COLUMNS: &str =
    "project, cpu_millis, memory_bytes, gpus, max_runs, weight, updated_at_ms, updated_by";

const QUEUE_COLUMNS: &str = "run_id, project, priority, seq, request_json, enqueued_at_ms";

impl Store {
    /// Creates or replaces the project's quota.
    ///
    /// Fails with [`StoreError::Invalid`] when the weight is below 1 or a limit is negative.
    pub async fn set_project_quota(&self, q: &ProjectQuota) -> Result<(), StoreError> {
        validate_quota(q)?;
        sqlx::query(
            "INSERT INTO project_quotas (project, cpu_millis, memory_bytes, gpus, max_runs, \
             weight, updated_at_ms, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (project) DO UPDATE SET cpu_millis = excluded.cpu_millis, \
             memory_bytes = excluded.memory_bytes, gpus = excluded.gpus, \
             max_runs = excluded.max_runs, weight = excluded.weight, \
             updated_at_ms = excluded.updated_at_ms, updated_by = excluded.updated_by",
        )
        .bind(&q.project)
        .bind(q.cpu_millis)
        .bind(q.memory_bytes)
        .bind(q.gpus)
        .bind(q.max_runs)
        .bind(q.weight)
        .bind(q.updated_at_ms)
        .bind(q.updated_by.as_deref())
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "setting the quota of project {}",
            q.project
        )))?;
        Ok(())
    }

    /// Removes the project's quota; false when there was none.
    pub async fn delete_project_quota(&self, project: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM project_quotas WHERE project = $1")
            .bind(project)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query(format!(
                "deleting the quota of project {project}"
            )))?;
        Ok(done.rows_affected() > 0)
    }

    /// Every quota, by project name.
    pub async fn project_quotas(&self) -> Result<Vec<ProjectQuota>, StoreError> {
        let sql = format!("SELECT {QUOTA_COLUMNS} FROM project_quotas ORDER BY project");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("listing project quotas"))?;
        rows.iter().map(quota_from_row).collect()
    }

    /// The project's quota; None when it has none.
    pub async fn project_quota(&self, project: &str) -> Result<Option<ProjectQuota>, StoreError> {
        let sql = format!("SELECT {QUOTA_COLUMNS} FROM project_quotas WHERE project = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(project)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(format!(
                "reading the quota of project {project}"
            )))?;
        row.as_ref().map(quota_from_row).transpose()
    }

    /// Records a queued run. Replaces an existing row of the same run.
    ///
    /// The run's row must exist: fails with [`StoreError::NotFound`] otherwise.
    pub async fn enqueue_run(&self, q: &QueuedRun) -> Result<(), StoreError> {
        // INSERT ... SELECT from the run's row: nothing is written for a missing run, whether
        // or not SQLite enforces foreign keys. (The WHERE also keeps SQLite from reading
        // ON CONFLICT as a join constraint.)
        let done = sqlx::query(
            "INSERT INTO run_queue (run_id, project, priority, seq, request_json, enqueued_at_ms) \
             SELECT r.id, $2, $3, $4, $5, $6 FROM runs r WHERE r.id = $1 \
             ON CONFLICT (run_id) DO UPDATE SET project = excluded.project, \
             priority = excluded.priority, seq = excluded.seq, \
             request_json = excluded.request_json, enqueued_at_ms = excluded.enqueued_at_ms",
        )
        .bind(&q.run_id)
        .bind(&q.project)
        .bind(q.priority)
        .bind(q.seq)
        .bind(&q.request_json)
        .bind(q.enqueued_at_ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!("queueing run {}", q.run_id)))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "run",
                id: q.run_id.clone(),
            });
        }
        Ok(())
    }

    /// Removes a run from the queue (admitted or cancelled); false when it was not there.
    pub async fn dequeue_run(&self, run_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM run_queue WHERE run_id = $1")
            .bind(run_id)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query(format!(
                "removing run {run_id} from the queue"
            )))?;
        Ok(done.rows_affected() > 0)
    }

    /// The queue in submission order (seq ascending; run id among equal seqs).
    pub async fn queued_runs(&self) -> Result<Vec<QueuedRun>, StoreError> {
        let sql = format!("SELECT {QUEUE_COLUMNS} FROM run_queue ORDER BY seq, run_id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("reading the run queue"))?;
        rows.iter()
            .map(|row| {
                Ok(QueuedRun {
                    run_id: column(row, "run_id")?,
                    project: column(row, "project")?,
                    priority: column(row, "priority")?,
                    seq: column(row, "seq")?,
                    request_json: column(row, "request_json")?,
                    enqueued_at_ms: column(row, "enqueued_at_ms")?,
                })
            })
            .collect()
    }
}

fn validate_quota(q: &ProjectQuota) -> Result<(), StoreError> {
    if q.weight < 1 {
        return Err(StoreError::Invalid {
            what: format!("weight of project {}'s quota", q.project),
            detail: format!("{} is below 1; a fair-share weight is at least 1", q.weight),
        });
    }
    for (name, limit) in [
        ("cpu_millis", q.cpu_millis),
        ("memory_bytes", q.memory_bytes),
        ("gpus", q.gpus),
        ("max_runs", q.max_runs),
    ] {
        if let Some(v) = limit
            && v < 0
        {
            return Err(StoreError::Invalid {
                what: format!("{name} of project {}'s quota", q.project),
                detail: format!("{v} is negative; leave it unset for no limit"),
            });
        }
    }
    Ok(())
}

fn quota_from_row(row: &AnyRow) -> Result<ProjectQuota, StoreError> {
    Ok(ProjectQuota {
        project: column(row, "project")?,
        cpu_millis: column(row, "cpu_millis")?,
        memory_bytes: column(row, "memory_bytes")?,
        gpus: column(row, "gpus")?,
        max_runs: column(row, "max_runs")?,
        weight: column(row, "weight")?,
        updated_at_ms: column(row, "updated_at_ms")?,
        updated_by: column(row, "updated_by")?,
    })
}
