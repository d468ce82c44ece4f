//! The SQLite writer: one thread with its own read-write connection that takes every
//! `log-batch` (and single metric, param and tag) of this process and commits them in groups,
//! and every batch of the prediction log.
//!
//! SQLite lets one writer in at a time, so concurrent batches gain nothing from a pool: each
//! would wait for the lock, and sqlx's Any driver converts every bound value on the way. Here
//! batches queue on a channel; the thread takes what has arrived (up to [`GROUP_ROWS`] rows),
//! writes each batch inside a savepoint of one `BEGIN IMMEDIATE` transaction — a batch that
//! fails (unknown run, changed param) is rolled back alone — commits once, and only then
//! answers each caller. An answered batch is committed (WAL, `synchronous = NORMAL`), so it
//! survives a killed process like every other write of the store.
//!
//! A batch of predictions (the server's log writer sends up to a few hundred at a time) is a
//! transaction of its own: one prepared insert per row, values bound from the caller's
//! encoded rows without the copies and conversions a pool connection makes. It is all or
//! nothing: a request id logged before fails the batch naming it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::error::StoreError;
use crate::tracking::{
    KeyValue, LATEST_CONFLICT, MetricPoint, inactive_run, latest_points, param_changed,
    run_not_found, stored,
};

/// A group stops taking batches at this many rows (metrics, params and tags); one batch
/// holds at most 1000 metrics, so a group is a few dozen batches at most.
const GROUP_ROWS: usize = 50_000;

/// How many busy timeouts a group waits for the write lock before it fails.
const BUSY_ATTEMPTS: u32 = 6;

/// What the writer is asked to log: one MLflow batch for one run.
pub(crate) struct Batch {
    pub run_id: String,
    pub metrics: Vec<MetricPoint>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

impl Batch {
    fn rows(&self) -> usize {
        self.metrics.len() + self.params.len() + self.tags.len()
    }
}

/// One prediction as stored: its fields encoded, plus the log writer's number for it.
pub(crate) struct PredictionRow {
    pub request_id: String,
    pub deployment: String,
    pub model: String,
    pub version: i64,
    pub role: String,
    pub inputs_json: String,
    pub outputs_json: String,
    pub rows: i64,
    pub error: Option<String>,
    pub latency_us: i64,
    pub created_at_ms: i64,
    pub inputs_bin: Option<Vec<u8>>,
    pub log_seq: Option<i64>,
}

/// A batch of predictions, logged by `writer` (None: not through a log writer).
pub(crate) struct Predictions {
    pub writer: Option<String>,
    pub rows: Vec<PredictionRow>,
}

type Reply = oneshot::Sender<Result<(), StoreError>>;

enum Job {
    Tracking(Batch, Reply),
    Predictions(Predictions, Reply),
}

/// The handle: cheap to clone, the thread runs while a handle lives.
#[derive(Clone, Debug)]
pub(crate) struct TrackingWriter {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Tracking(batch, _) => f
                .debug_struct("Tracking")
                .field("run_id", &batch.run_id)
                .finish(),
            Job::Predictions(p, _) => f
                .debug_struct("Predictions")
                .field("rows", &p.rows.len())
                .finish(),
        }
    }
}

impl TrackingWriter {
    /// Starts the thread; it opens its connection on first use (and again after a failure).
    pub(crate) fn start(
        path: PathBuf,
        busy_timeout: Duration,
    ) -> Result<TrackingWriter, StoreError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("gantry-tracking-writer".into())
            .spawn(move || run(&path, busy_timeout, &rx))
            .map_err(|e| StoreError::Invalid {
                what: "the tracking writer".into(),
                detail: format!("cannot start its thread: {e}"),
            })?;
        Ok(TrackingWriter { jobs })
    }

    /// Logs `batch`, answering once it is committed (or refused).
    pub(crate) async fn write(&self, batch: Batch) -> Result<(), StoreError> {
        let op = format!("logging to tracking run {}", batch.run_id);
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Tracking(batch, reply))
            .map_err(|_| stopped(&op))?;
        answer.await.map_err(|_| stopped(&op))?
    }

    /// Logs `batch` in one transaction, answering once it is committed (or refused).
    pub(crate) async fn log_predictions(&self, batch: Predictions) -> Result<(), StoreError> {
        let op = predictions_op(batch.rows.len());
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Predictions(batch, reply))
            .map_err(|_| stopped(&op))?;
        answer.await.map_err(|_| stopped(&op))?
    }
}

fn predictions_op(n: usize) -> String {
    format!("logging {n} predictions")
}

fn stopped(op: &str) -> StoreError {
    StoreError::Invalid {
        what: op.to_owned(),
        detail: "the tracking writer stopped".into(),
    }
}

fn run(path: &PathBuf, busy_timeout: Duration, rx: &mpsc::Receiver<Job>) {
    let mut conn: Option<Connection> = None;
    while let Ok(first) = rx.recv() {
        // Whatever has arrived: tracking batches up to GROUP_ROWS rows form one group,
        // prediction batches are transactions of their own.
        let mut group: Vec<(Batch, Reply)> = Vec::new();
        let mut predictions: Vec<(Predictions, Reply)> = Vec::new();
        let mut rows = 0;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Tracking(batch, reply) => {
                    rows += batch.rows();
                    group.push((batch, reply));
                }
                Job::Predictions(p, reply) => predictions.push((p, reply)),
            }
            if rows < GROUP_ROWS {
                next = rx.try_recv().ok();
            }
        }
        if conn.is_none() {
            match open(path, busy_timeout) {
                Ok(c) => conn = Some(c),
                Err(source) => {
                    for (batch, reply) in group {
                        let _ = reply.send(Err(StoreError::BulkQuery {
                            op: op_of(&batch),
                            source: clone_error(&source),
                        }));
                    }
                    for (p, reply) in predictions {
                        let _ = reply.send(Err(StoreError::BulkQuery {
                            op: predictions_op(p.rows.len()),
                            source: clone_error(&source),
                        }));
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        if !group.is_empty() {
            let batches: Vec<&Batch> = group.iter().map(|(b, _)| b).collect();
            let (results, broken) = write_group(c, &batches);
            for ((_, reply), result) in group.into_iter().zip(results) {
                let _ = reply.send(result);
            }
            if broken {
                // A connection that cannot even roll back is reopened for the next group.
                conn = None;
            }
        }
        for (p, reply) in predictions {
            let Some(c) = conn.as_mut() else {
                let _ = reply.send(Err(stopped(&predictions_op(p.rows.len()))));
                continue;
            };
            let (result, broken) = write_predictions(c, &p);
            let _ = reply.send(result);
            if broken {
                conn = None;
            }
        }
    }
}

fn open(path: &PathBuf, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(busy_timeout)?;
    // As the pool's connections: WAL is the file's; NORMAL skips an fsync per commit (a
    // killed process loses nothing committed); references are enforced.
    c.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    c.set_prepared_statement_cache_capacity(32);
    Ok(c)
}

/// rusqlite's errors are not `Clone`; one failure answered to several callers is rebuilt
/// from its code and message.
fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// Takes the write lock; the busy timeout waits for another process's write, and one that
/// keeps the lock longer (a migration, a big delete) gets a few more chances.
fn begin_immediate(conn: &Connection) -> rusqlite::Result<()> {
    let mut attempt = 1;
    loop {
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => return Ok(()),
            Err(e)
                if attempt < BUSY_ATTEMPTS
                    && e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) =>
            {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Rolls back after a failure; true when the connection cannot be trusted any more.
fn roll_back(conn: &Connection) -> bool {
    conn.execute_batch("ROLLBACK").is_err() && !conn.is_autocommit()
}

/// Writes a batch of predictions in one transaction: all of them, or none. Returns the
/// result and whether the connection cannot be trusted any more.
fn write_predictions(conn: &mut Connection, p: &Predictions) -> (Result<(), StoreError>, bool) {
    let op = || predictions_op(p.rows.len());
    let fail = |source| StoreError::BulkQuery { op: op(), source };
    if let Err(e) = begin_immediate(conn) {
        return (Err(fail(e)), false);
    }
    let inserted = (|| -> Result<(), StoreError> {
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO predictions (request_id, deployment, model, version, role, \
                 inputs_json, outputs_json, rows, error, latency_us, created_at_ms, inputs_bin, \
                 log_writer, log_seq) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .map_err(fail)?;
        for r in &p.rows {
            let done = insert.execute(params![
                r.request_id,
                r.deployment,
                r.model,
                r.version,
                r.role,
                r.inputs_json,
                r.outputs_json,
                r.rows,
                r.error,
                r.latency_us,
                r.created_at_ms,
                r.inputs_bin,
                p.writer,
                r.log_seq,
            ]);
            match done {
                Ok(_) => {}
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
                        && matches!(
                            &e,
                            rusqlite::Error::SqliteFailure(f, _)
                                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        ) =>
                {
                    return Err(crate::serving::prediction_exists(&r.request_id, &r.role));
                }
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(())
    })();
    if let Err(e) = inserted {
        return (Err(e), roll_back(conn));
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        return (Err(fail(e)), roll_back(conn));
    }
    (Ok(()), false)
}

/// Writes `batches` in one transaction. Each batch is checked first (its run is active, its
/// params do not change a logged value) and refused alone; the writes of an accepted batch
/// cannot be refused by the data, so one that fails (disk full, I/O) fails the whole group and
/// nothing of it is stored. Returns each batch's result, and whether the connection is in a
/// state that cannot be trusted any more.
fn write_group(conn: &mut Connection, batches: &[&Batch]) -> (Vec<Result<(), StoreError>>, bool) {
    let fail_all = |e: &rusqlite::Error| -> Vec<Result<(), StoreError>> {
        batches
            .iter()
            .map(|b| {
                Err(StoreError::BulkQuery {
                    op: op_of(b),
                    source: clone_error(e),
                })
            })
            .collect()
    };
    if let Err(e) = begin_immediate(conn) {
        return (fail_all(&e), false);
    }
    let mut results = Vec::with_capacity(batches.len());
    for b in batches {
        match check_batch(conn, b).map(|new_params| apply_batch(conn, b, &new_params)) {
            Err(refused) => results.push(Err(refused)),
            Ok(Ok(())) => results.push(Ok(())),
            Ok(Err(e)) => {
                let broken = roll_back(conn);
                return (fail_all(&e), broken);
            }
        }
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let broken = roll_back(conn);
        // Nothing of the group is stored: every batch fails, a refused one with its own error.
        let all = results
            .into_iter()
            .zip(batches)
            .map(|(r, b)| {
                r.and(Err(StoreError::BulkQuery {
                    op: op_of(b),
                    source: clone_error(&e),
                }))
            })
            .collect();
        return (all, broken);
    }
    (results, false)
}

fn op_of(b: &Batch) -> String {
    format!("logging to tracking run {}", b.run_id)
}

/// The store's refusals for `b` (as on PostgreSQL): its run must exist and be active, and a
/// param already logged must keep its value. Returns the params not logged yet (the first
/// value of a key in the batch counts).
fn check_batch<'b>(conn: &Connection, b: &'b Batch) -> Result<Vec<&'b KeyValue>, StoreError> {
    let q = |source| StoreError::BulkQuery {
        op: op_of(b),
        source,
    };
    let run = b.run_id.as_str();
    let stage: Option<String> = conn
        .prepare_cached("SELECT lifecycle_stage FROM mlflow_runs WHERE run_uuid = ?1")
        .and_then(|mut s| s.query_row(params![run], |r| r.get(0)).optional())
        .map_err(q)?;
    match stage {
        None => return Err(run_not_found(run)),
        Some(s) if s.as_str() != "active" => return Err(inactive_run(run, &s)),
        Some(_) => {}
    }
    let mut new = Vec::new();
    if b.params.is_empty() {
        return Ok(new);
    }
    let mut seen = HashSet::new();
    let mut lookup = conn
        .prepare_cached("SELECT value FROM mlflow_params WHERE run_uuid = ?1 AND key = ?2")
        .map_err(q)?;
    for p in b.params.iter().filter(|p| seen.insert(p.key.as_str())) {
        let old: Option<String> = lookup
            .query_row(params![run, p.key], |r| r.get(0))
            .optional()
            .map_err(q)?;
        match old {
            Some(old) if old != p.value => return Err(param_changed(run, p, &old)),
            Some(_) => {}
            None => new.push(p),
        }
    }
    Ok(new)
}

/// Rows per multi-row metric INSERT (6 values each, far below SQLite's bind limit).
const METRIC_ROWS: usize = 64;

/// Writes a checked batch: its new params, its tags (the last value of a key wins, the run's
/// name follows `mlflow.runName`), its metric points (a point already logged is kept once) and
/// the latest point of each metric.
fn apply_batch(conn: &Connection, b: &Batch, new_params: &[&KeyValue]) -> rusqlite::Result<()> {
    let run = b.run_id.as_str();
    if !new_params.is_empty() {
        let mut insert = conn.prepare_cached(
            "INSERT INTO mlflow_params (run_uuid, key, value) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING",
        )?;
        for p in new_params {
            insert.execute(params![run, p.key, p.value])?;
        }
    }

    if !b.tags.is_empty() {
        let mut last: HashMap<&str, &str> = HashMap::new();
        let mut order = Vec::new();
        for t in &b.tags {
            if last.insert(&t.key, &t.value).is_none() {
                order.push(t.key.as_str());
            }
        }
        let mut upsert = conn.prepare_cached(
            "INSERT INTO mlflow_tags (run_uuid, key, value) VALUES (?1, ?2, ?3) \
             ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value",
        )?;
        for key in order {
            let value = last.get(key).copied().unwrap_or_default();
            upsert.execute(params![run, key, value])?;
        }
        if let Some(name) = last.get("mlflow.runName") {
            conn.prepare_cached("UPDATE mlflow_runs SET run_name = ?1 WHERE run_uuid = ?2")?
                .execute(params![name, run])?;
        }
    }

    if !b.metrics.is_empty() {
        const INSERT: &str = "INSERT INTO mlflow_metrics \
             (run_uuid, key, step, timestamp_ms, value, is_nan) VALUES ";
        let chunks = b.metrics.chunks_exact(METRIC_ROWS);
        let rest = chunks.remainder();
        if chunks.len() > 0 {
            let values = vec!["(?, ?, ?, ?, ?, ?)"; METRIC_ROWS].join(", ");
            let mut many =
                conn.prepare_cached(&format!("{INSERT}{values} ON CONFLICT DO NOTHING"))?;
            for chunk in chunks {
                let mut i = 1;
                for m in chunk {
                    let (value, is_nan) = stored(m);
                    many.raw_bind_parameter(i, run)?;
                    many.raw_bind_parameter(i + 1, &m.key)?;
                    many.raw_bind_parameter(i + 2, m.step)?;
                    many.raw_bind_parameter(i + 3, m.timestamp)?;
                    many.raw_bind_parameter(i + 4, value)?;
                    many.raw_bind_parameter(i + 5, is_nan)?;
                    i += 6;
                }
                many.raw_execute()?;
            }
        }
        if !rest.is_empty() {
            let mut one = conn.prepare_cached(&format!(
                "{INSERT}(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING"
            ))?;
            for m in rest {
                let (value, is_nan) = stored(m);
                one.execute(params![run, m.key, m.step, m.timestamp, value, is_nan])?;
            }
        }
        let mut latest = conn.prepare_cached(&format!(
            "INSERT INTO mlflow_latest_metrics \
             (run_uuid, key, step, timestamp_ms, value, is_nan) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) {LATEST_CONFLICT}"
        ))?;
        for m in latest_points(&b.metrics) {
            let (value, is_nan) = stored(m);
            latest.execute(params![run, m.key, m.step, m.timestamp, value, is_nan])?;
        }
    }
    Ok(())
}
