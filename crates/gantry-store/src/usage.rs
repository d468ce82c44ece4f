//! Usage sums for reports and a step's history for right-sizing.
//!
//! Step runs count in the window they ended in (a running one up to the window's end); a
//! replica counts for the part of its life inside the window. Sums are computed in SQL over
//! `step_runs` (one grouped query, one more for GPU-hours by model) and in Rust over the
//! window's replicas, which are few.

use std::collections::BTreeMap;

use gantry_alloc::{Dimension, Sample, Sums};
use sqlx::AssertSqlSafe;

use crate::error::StoreError;
use crate::store::{Backend, Store, column};

const MS_PER_HOUR: f64 = 3_600_000.0;
const GIB: f64 = (1u64 << 30) as f64;

/// Which usage to sum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    pub since_ms: i64,
    pub until_ms: i64,
    pub by: Dimension,
    /// Only this project's runs and deployments (a project-scoped caller).
    pub project: Option<String>,
    /// Only this run's step runs (a run's cost); no replicas.
    pub run_id: Option<String>,
}

/// One model replica container's life, for deployments' usage.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaUsage {
    /// The container id.
    pub id: String,
    pub deployment: String,
    /// None: the deployment's own project.
    pub project: Option<String>,
    pub model: String,
    pub version: i64,
    pub requested_cpu_millis: i64,
    pub requested_memory_bytes: i64,
    pub requested_gpu: i64,
    pub gpu_model: Option<String>,
    pub started_at_ms: i64,
}

/// The wall time of a step run in the window: its own, or until the window's end while it
/// runs ($2 is the window's end).
const WALL: &str = "(CASE WHEN s.wall_ms IS NOT NULL THEN s.wall_ms \
     WHEN s.cached_from IS NULL AND s.started_at_ms IS NOT NULL AND s.finished_at_ms IS NOT NULL \
       THEN s.finished_at_ms - s.started_at_ms \
     WHEN s.status = 'running' AND s.started_at_ms IS NOT NULL THEN $2 - s.started_at_ms \
     ELSE 0 END)";

impl Store {
    /// Usage sums by `q.by`: step runs and, for the project, deployment and user groupings,
    /// model replicas.
    pub async fn usage(&self, q: &UsageQuery) -> Result<BTreeMap<String, Sums>, StoreError> {
        let mut groups: BTreeMap<String, Sums> = BTreeMap::new();
        if q.by != Dimension::Deployment {
            self.step_usage(q, &mut groups).await?;
        }
        if q.run_id.is_none()
            && matches!(
                q.by,
                Dimension::Project | Dimension::Deployment | Dimension::User
            )
        {
            self.replica_usage(q, &mut groups).await?;
        }
        Ok(groups)
    }

    async fn step_usage(
        &self,
        q: &UsageQuery,
        groups: &mut BTreeMap<String, Sums>,
    ) -> Result<(), StoreError> {
        let declared = |col: &str| match self.backend {
            Backend::Sqlite => format!(
                "(CASE WHEN instr({col}, '[') > 0 THEN substr({col}, 1, instr({col}, '[') - 1) \
                 ELSE {col} END)"
            ),
            Backend::Postgres => format!("split_part({col}, '[', 1)"),
        };
        let key = match q.by {
            Dimension::Project | Dimension::Pipeline | Dimension::Deployment => {
                "r.pipeline".to_string()
            }
            Dimension::Step => format!("(r.pipeline || '/' || {})", declared("x.step")),
            Dimension::User => "COALESCE(r.submitted_by, '-')".to_string(),
        };
        let mut filter = String::from(
            "((s.finished_at_ms >= $1 AND s.finished_at_ms < $2) \
             OR (s.finished_at_ms IS NULL AND s.status = 'running' AND s.started_at_ms < $2))",
        );
        if q.project.is_some() {
            filter.push_str(" AND s.run_id IN (SELECT id FROM runs WHERE pipeline = $3)");
        }
        if q.run_id.is_some() {
            filter.push_str(if q.project.is_some() {
                " AND s.run_id = $4"
            } else {
                " AND s.run_id = $3"
            });
        }
        let f = |e: &str| format!("CAST({e} AS DOUBLE PRECISION)");
        // Summed per run (and step) first, in the order of the covering index
        // `step_runs_usage` (migration 18), so SQLite needs no sort of every step run; then
        // per group over the runs.
        let (inner_group, inner_step) = match q.by {
            Dimension::Step => ("s.run_id, s.step", ", s.step AS step"),
            _ => ("s.run_id", ""),
        };
        // SQLite would rather range-scan `step_runs_by_finished` and sort; PostgreSQL plans
        // its own (hash) aggregation.
        let indexed = match self.backend {
            Backend::Sqlite => " INDEXED BY step_runs_usage",
            Backend::Postgres => "",
        };
        let sums = [
            "step_runs",
            "cache_hits",
            "wall",
            "cpu_req",
            "cpu_used",
            "mem_req",
            "mem_peak",
            "gpu_idle",
            "saved_wall",
            "saved_cpu_req",
            "saved_cpu_used",
            "saved_mem",
        ]
        .map(|c| match c {
            // Counts stay integers (PostgreSQL's SUM of a bigint is a numeric).
            "step_runs" | "cache_hits" => format!("CAST(SUM(x.{c}) AS BIGINT) AS {c}"),
            _ => format!("SUM(x.{c}) AS {c}"),
        })
        .join(", ");
        let sql = format!(
            "SELECT {key} AS k, COUNT(DISTINCT x.run_id) AS runs, {sums} FROM (\
             SELECT s.run_id AS run_id{inner_step}, \
             SUM(CASE WHEN s.cached_from IS NULL AND s.started_at_ms IS NOT NULL THEN 1 ELSE 0 END) AS step_runs, \
             SUM(CASE WHEN s.cached_from IS NULL THEN 0 ELSE 1 END) AS cache_hits, \
             SUM({wall}) AS wall, \
             SUM({cpu} * {WALL}) AS cpu_req, \
             SUM({cpu_used}) AS cpu_used, \
             SUM({mem} * {WALL}) AS mem_req, \
             SUM({peak} * {WALL}) AS mem_peak, \
             SUM({idle} * s.requested_gpu) AS gpu_idle, \
             SUM({o_wall}) AS saved_wall, \
             SUM({o_cpu} * COALESCE(o.wall_ms, 0)) AS saved_cpu_req, \
             SUM({o_cpu_used}) AS saved_cpu_used, \
             SUM({o_mem} * COALESCE(o.wall_ms, 0)) AS saved_mem \
             FROM step_runs s{indexed} \
             LEFT JOIN step_runs o ON o.id = s.cached_from \
             WHERE {filter} GROUP BY {inner_group}) x \
             JOIN runs r ON r.id = x.run_id GROUP BY {key}",
            wall = f(WALL),
            cpu = f("s.requested_cpu_millis"),
            cpu_used =
                f("CASE WHEN s.cached_from IS NULL THEN COALESCE(s.cpu_micros, 0) ELSE 0 END"),
            mem = f("s.requested_memory_bytes"),
            peak = f("COALESCE(s.peak_memory_bytes, 0)"),
            idle = f("CASE WHEN s.cached_from IS NULL THEN COALESCE(s.gpu_idle_ms, 0) ELSE 0 END"),
            o_wall = f("COALESCE(o.wall_ms, 0)"),
            o_cpu = f("COALESCE(o.requested_cpu_millis, 0)"),
            o_cpu_used = f("COALESCE(o.cpu_micros, 0)"),
            o_mem = f("COALESCE(o.requested_memory_bytes, 0)"),
        );
        // Both statements on one connection: with SQLite's shared page cache a second pooled
        // connection re-reads the pages the first one just read (measured: 195k page reads
        // instead of 19k for the GPU statement after the main one on 100k step runs).
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::query("summing step runs' usage".to_string()))?;
        let rows = self
            .bind_usage(&sql, q)
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::query("summing step runs' usage".to_string()))?;
        for row in &rows {
            let k: String = column(row, "k")?;
            let n = |name: &str| -> Result<f64, StoreError> {
                Ok(column::<Option<f64>>(row, name)?.unwrap_or(0.0))
            };
            let count = |name: &str| -> Result<u64, StoreError> {
                Ok(column::<Option<i64>>(row, name)?.unwrap_or(0).max(0) as u64)
            };
            let s = groups.entry(k).or_default();
            s.runs += count("runs")?;
            s.step_runs += count("step_runs")?;
            s.cache_hits += count("cache_hits")?;
            s.wall_hours += n("wall")? / MS_PER_HOUR;
            s.cpu_hours_requested += n("cpu_req")? / 1000.0 / MS_PER_HOUR;
            s.cpu_hours_used += n("cpu_used")? / 1000.0 / MS_PER_HOUR;
            s.memory_gib_hours_requested += n("mem_req")? / GIB / MS_PER_HOUR;
            s.memory_gib_hours_peak += n("mem_peak")? / GIB / MS_PER_HOUR;
            s.gpu_hours_idle += n("gpu_idle")? / MS_PER_HOUR;
            s.saved.wall_hours += n("saved_wall")? / MS_PER_HOUR;
            s.saved.cpu_hours_requested += n("saved_cpu_req")? / 1000.0 / MS_PER_HOUR;
            s.saved.cpu_hours_used += n("saved_cpu_used")? / 1000.0 / MS_PER_HOUR;
            s.saved.memory_gib_hours_requested += n("saved_mem")? / GIB / MS_PER_HOUR;
        }

        // GPU-hours by model, used and saved.
        // Only GPU steps and cache hits (whose original may have had GPUs) can hold
        // GPU-hours: the partial index `step_runs_gpu_usage` has just those.
        let gpu_key = key.replace("x.step", "s.step");
        let sql = format!(
            "SELECT {gpu_key} AS k, COALESCE(s.gpu_model, o.gpu_model, '') AS model, \
             SUM({gpu} * {WALL}) AS used, SUM({o_gpu} * COALESCE(o.wall_ms, 0)) AS saved \
             FROM step_runs s JOIN runs r ON r.id = s.run_id \
             LEFT JOIN step_runs o ON o.id = s.cached_from \
             WHERE {filter} AND (s.requested_gpu > 0 OR s.cached_from IS NOT NULL) \
             AND (s.requested_gpu > 0 OR o.requested_gpu > 0) \
             GROUP BY {gpu_key}, COALESCE(s.gpu_model, o.gpu_model, '')",
            gpu = f("s.requested_gpu"),
            o_gpu = f("COALESCE(o.requested_gpu, 0)"),
        );
        let rows = self
            .bind_usage(&sql, q)
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::query(
                "summing step runs' GPU-hours".to_string(),
            ))?;
        for row in &rows {
            let k: String = column(row, "k")?;
            let model: String = column(row, "model")?;
            let used = column::<Option<f64>>(row, "used")?.unwrap_or(0.0) / MS_PER_HOUR;
            let saved = column::<Option<f64>>(row, "saved")?.unwrap_or(0.0) / MS_PER_HOUR;
            let s = groups.entry(k).or_default();
            if used > 0.0 {
                *s.gpu_hours.entry(model.clone()).or_default() += used;
            }
            if saved > 0.0 {
                *s.saved.gpu_hours.entry(model).or_default() += saved;
            }
        }
        Ok(())
    }

    fn bind_usage<'q>(
        &self,
        sql: &'q str,
        q: &'q UsageQuery,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(q.since_ms)
            .bind(q.until_ms);
        if let Some(p) = &q.project {
            query = query.bind(p.as_str());
        }
        if let Some(r) = &q.run_id {
            query = query.bind(r.as_str());
        }
        query
    }

    async fn replica_usage(
        &self,
        q: &UsageQuery,
        groups: &mut BTreeMap<String, Sums>,
    ) -> Result<(), StoreError> {
        let mut sql = String::from(
            "SELECT u.deployment, u.project, u.requested_cpu_millis, u.requested_memory_bytes, \
             u.requested_gpu, u.gpu_model, u.started_at_ms, \
             COALESCE(u.stopped_at_ms, u.last_seen_ms) AS ended_at_ms, u.peak_memory_bytes, \
             u.cpu_micros, (SELECT d.principal FROM deployment_revisions d \
               WHERE d.deployment = u.deployment ORDER BY d.revision LIMIT 1) AS creator \
             FROM replica_usage u \
             WHERE COALESCE(u.stopped_at_ms, u.last_seen_ms) > $1 AND u.started_at_ms < $2",
        );
        if q.project.is_some() {
            sql.push_str(" AND u.project = $3");
        }
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(q.since_ms)
            .bind(q.until_ms);
        if let Some(p) = &q.project {
            query = query.bind(p.as_str());
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(
                "reading model replicas' usage".to_string(),
            ))?;
        for row in &rows {
            let deployment: String = column(row, "deployment")?;
            let key = match q.by {
                Dimension::Deployment => deployment,
                Dimension::Project => {
                    column::<Option<String>>(row, "project")?.unwrap_or_else(|| "-".into())
                }
                Dimension::User => {
                    column::<Option<String>>(row, "creator")?.unwrap_or_else(|| "-".into())
                }
                Dimension::Pipeline | Dimension::Step => continue,
            };
            let started: i64 = column(row, "started_at_ms")?;
            let ended: i64 = column(row, "ended_at_ms")?;
            let life = (ended - started).max(0) as f64;
            let inside = (ended.min(q.until_ms) - started.max(q.since_ms)).max(0) as f64;
            // Used CPU and peak are known for the whole life; the window gets its share.
            let share = if life > 0.0 { inside / life } else { 0.0 };
            let hours = inside / MS_PER_HOUR;
            let cpu: i64 = column(row, "requested_cpu_millis")?;
            let mem: i64 = column(row, "requested_memory_bytes")?;
            let gpu: i64 = column(row, "requested_gpu")?;
            let peak: Option<i64> = column(row, "peak_memory_bytes")?;
            let used: Option<i64> = column(row, "cpu_micros")?;
            let model: Option<String> = column(row, "gpu_model")?;
            let s = groups.entry(key).or_default();
            s.replicas += 1;
            s.wall_hours += hours;
            s.cpu_hours_requested += cpu as f64 / 1000.0 * hours;
            s.cpu_hours_used += used.unwrap_or(0) as f64 * share / 1e6 / 3600.0;
            s.memory_gib_hours_requested += mem as f64 / GIB * hours;
            s.memory_gib_hours_peak += peak.unwrap_or(0) as f64 / GIB * hours;
            if gpu > 0 {
                *s.gpu_hours.entry(model.unwrap_or_default()).or_default() += gpu as f64 * hours;
            }
        }
        Ok(())
    }

    /// Records a replica container as started (and seen now).
    pub async fn replica_started(&self, r: &ReplicaUsage) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO replica_usage (id, deployment, project, model, version, \
             requested_cpu_millis, requested_memory_bytes, requested_gpu, gpu_model, \
             started_at_ms, last_seen_ms) VALUES ($1, $2, \
             COALESCE($3, (SELECT d.project FROM deployments d WHERE d.name = $2)), \
             $4, $5, $6, $7, $8, $9, $10, $10) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&r.id)
        .bind(&r.deployment)
        .bind(r.project.as_deref())
        .bind(&r.model)
        .bind(r.version)
        .bind(r.requested_cpu_millis)
        .bind(r.requested_memory_bytes)
        .bind(r.requested_gpu)
        .bind(r.gpu_model.as_deref())
        .bind(r.started_at_ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!("recording replica {}", r.id)))?;
        Ok(())
    }

    /// Moves `last_seen_ms` of the replicas still running.
    pub async fn replicas_seen(&self, ids: &[String], now_ms: i64) -> Result<(), StoreError> {
        for chunk in ids.chunks(500) {
            let sql = format!(
                "UPDATE replica_usage SET last_seen_ms = $1 WHERE stopped_at_ms IS NULL AND id IN ({})",
                crate::tracking::placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now_ms);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            q.execute(&self.pool).await.map_err(StoreError::query(
                "updating replicas' last seen time".to_string(),
            ))?;
        }
        Ok(())
    }

    /// Records a replica container as stopped, with what it used over its life.
    pub async fn replica_stopped(
        &self,
        id: &str,
        now_ms: i64,
        peak_memory_bytes: Option<i64>,
        cpu_micros: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE replica_usage SET stopped_at_ms = $2, last_seen_ms = $2, \
             peak_memory_bytes = $3, cpu_micros = $4 WHERE id = $1 AND stopped_at_ms IS NULL",
        )
        .bind(id)
        .bind(now_ms)
        .bind(peak_memory_bytes)
        .bind(cpu_micros)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "recording replica {id} as stopped"
        )))?;
        Ok(())
    }

    /// The last `limit` attempts of a step that ran a container and ended (newest first), for
    /// right-sizing: by the history key `gantry_alloc::usage_key`.
    pub async fn step_history(
        &self,
        usage_key: &str,
        limit: i64,
    ) -> Result<Vec<Sample>, StoreError> {
        let rows = sqlx::query(
            "SELECT requested_cpu_millis, requested_memory_bytes, peak_memory_bytes, cpu_micros, \
             wall_ms, status, reason FROM step_runs \
             WHERE usage_key = $1 AND cached_from IS NULL AND finished_at_ms IS NOT NULL \
             AND wall_ms IS NOT NULL ORDER BY finished_at_ms DESC, id DESC LIMIT $2",
        )
        .bind(usage_key)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading the history of step {usage_key}"
        )))?;
        let nat = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        rows.iter()
            .map(|row| {
                let status: String = column(row, "status")?;
                let reason: Option<String> = column(row, "reason")?;
                Ok(Sample {
                    requested_cpu_millis: nat(column(row, "requested_cpu_millis")?),
                    requested_memory_bytes: nat(column(row, "requested_memory_bytes")?),
                    peak_memory_bytes: nat(column(row, "peak_memory_bytes")?),
                    cpu_micros: nat(column(row, "cpu_micros")?),
                    wall_ms: nat(column(row, "wall_ms")?),
                    succeeded: status == "succeeded",
                    oom_killed: reason.is_some_and(|r| r.starts_with("oom-killed")),
                })
            })
            .collect()
    }
}
