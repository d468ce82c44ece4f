//! Queries of the web UI: a filtered, keyset-paginated run list with per-run step summaries
//! in one query (never one per row), log search, and browser sessions.

use std::collections::HashMap;

use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use crate::auth::{TOKEN_COLUMNS, TokenRecord, token_from_row};
use crate::error::StoreError;
use crate::record::RunRecord;
use crate::runs::{RUN_COLUMNS, run_from_row};
use crate::status::RunStatus;
use crate::store::{Store, column};

/// How many rows one run-list request may examine when a param filter is checked in Rust:
/// the page then ends early with a cursor, instead of scanning the whole table.
const MAX_SCANNED: usize = 5_000;
/// Up to this many matching metric values, a metric filter starts from the metric's index.
const METRIC_INDEX_MAX: i64 = 5_000;

/// What the run list is ordered by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunSort {
    #[default]
    Created,
    /// Wall time from start to finish; runs without one sort as -1.
    Duration,
}

/// A comparison for a metric filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Cmp {
    fn sql(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Eq => "=",
            Cmp::Ge => ">=",
            Cmp::Gt => ">",
        }
    }
}

/// Where the next page starts: the sort key and id of the last row shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunCursor {
    pub key: i64,
    pub id: String,
}

/// The run list's filters, order and page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunQuery {
    pub pipeline: Option<String>,
    pub status: Option<RunStatus>,
    /// Created at or after (ms).
    pub since_ms: Option<i64>,
    /// Created before (ms).
    pub until_ms: Option<i64>,
    /// A param equal to this text (numbers compare by their JSON text, `0.1` = `0.1`).
    pub param: Option<(String, String)>,
    /// Some step of the run recorded this metric and it compares true.
    pub metric: Option<(String, Cmp, f64)>,
    pub sort: RunSort,
    pub ascending: bool,
    pub after: Option<RunCursor>,
    pub limit: usize,
}

/// One page of runs and where the next one starts (None: this was the last).
#[derive(Clone, Debug, PartialEq)]
pub struct RunPage {
    pub runs: Vec<RunRecord>,
    pub next: Option<RunCursor>,
}

/// What a run's steps add up to, for a list row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepSummary {
    /// Step runs (attempts included).
    pub step_runs: i64,
    pub cached: i64,
    pub failed: i64,
    pub running: i64,
    /// The largest single request (steps of a run may run one after another).
    pub max_requested_cpu_millis: i64,
    pub max_requested_memory_bytes: i64,
    pub max_peak_memory_bytes: Option<i64>,
    pub cpu_micros: Option<i64>,
}

impl Store {
    /// One page of runs; the sort key of each row is the cursor of the next page.
    pub async fn list_runs_page(&self, q: &RunQuery) -> Result<RunPage, StoreError> {
        let limit = q.limit.clamp(1, 1000);
        let key_expr = match q.sort {
            RunSort::Created => "created_at_ms",
            RunSort::Duration => "COALESCE(finished_at_ms - started_at_ms, -1)",
        };
        // A metric filter matching few values is read from the metric's index (then each
        // run is looked up); one matching many is probed run by run in list order, which
        // stops as soon as the page is full. Counting the matches first keeps both bounded.
        let metric_by_index = match &q.metric {
            Some((name, cmp, value)) => {
                let row = sqlx::query(AssertSqlSafe(format!(
                    "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM metrics WHERE name = $1 AND value {} $2",
                    cmp.sql()
                )))
                .bind(name.as_str())
                .bind(*value)
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::query("counting metric matches"))?;
                int(&row, "n")?.unwrap_or(0) <= METRIC_INDEX_MAX
            }
            None => false,
        };
        let mut runs = Vec::with_capacity(limit);
        let mut after = q.after.clone();
        let mut scanned = 0usize;
        loop {
            // With a param filter some rows of a batch may not match: fetch what is missing,
            // a little more, until the page is full or the table ends.
            let want = if q.param.is_some() {
                (limit - runs.len()).max(50)
            } else {
                limit - runs.len()
            } + 1;
            let mut sql =
                format!("SELECT {RUN_COLUMNS}, {key_expr} AS sort_key FROM runs WHERE 1 = 1");
            let mut args: Vec<Arg> = Vec::new();
            let ph = |a: Arg, args: &mut Vec<Arg>| {
                args.push(a);
                format!("${}", args.len())
            };
            if let Some(p) = &q.pipeline {
                sql += &format!(" AND pipeline = {}", ph(Arg::Text(p.clone()), &mut args));
            }
            if let Some(s) = q.status {
                sql += &format!(
                    " AND status = {}",
                    ph(Arg::Text(s.as_str().to_owned()), &mut args)
                );
            }
            if let Some(t) = q.since_ms {
                sql += &format!(" AND created_at_ms >= {}", ph(Arg::Int(t), &mut args));
            }
            if let Some(t) = q.until_ms {
                sql += &format!(" AND created_at_ms < {}", ph(Arg::Int(t), &mut args));
            }
            if let Some((key, _)) = &q.param {
                let pattern = format!("%{}%", like_escape(&format!("\"{}\":", json_key(key))));
                sql += &format!(
                    " AND params_json LIKE {} ESCAPE '\\'",
                    ph(Arg::Text(pattern), &mut args)
                );
            }
            if let Some((name, cmp, value)) = &q.metric {
                let n = ph(Arg::Text(name.clone()), &mut args);
                let v = ph(Arg::Real(*value), &mut args);
                // `|| ''` keeps the planner off an index the other form must not use: the
                // run list's order index for the first, the metric's for the second.
                if metric_by_index {
                    sql += &format!(
                        " AND (id || '') IN (SELECT s.run_id FROM metrics m \
                         JOIN step_runs s ON s.id = m.step_run_id \
                         WHERE m.name = {n} AND m.value {} {v})",
                        cmp.sql()
                    );
                } else {
                    sql += &format!(
                        " AND EXISTS (SELECT 1 FROM step_runs s JOIN metrics m ON m.step_run_id = s.id \
                         WHERE s.run_id = runs.id AND (m.name || '') = {n} AND m.value {} {v})",
                        cmp.sql()
                    );
                }
            }
            if let Some(c) = &after {
                let k = ph(Arg::Int(c.key), &mut args);
                let i = ph(Arg::Text(c.id.clone()), &mut args);
                let op = if q.ascending { ">" } else { "<" };
                sql += &format!(" AND ({key_expr} {op} {k} OR ({key_expr} = {k} AND id {op} {i}))");
            }
            let dir = if q.ascending { "ASC" } else { "DESC" };
            sql += &format!(
                " ORDER BY {key_expr} {dir}, id {dir} LIMIT {}",
                ph(Arg::Int(want as i64), &mut args)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for a in args {
                query = match a {
                    Arg::Text(t) => query.bind(t),
                    Arg::Int(i) => query.bind(i),
                    Arg::Real(r) => query.bind(r),
                };
            }
            let rows = query
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::query("listing runs"))?;
            let exhausted = rows.len() < want;
            for (i, row) in rows.iter().enumerate() {
                let run = run_from_row(row)?;
                let cursor = RunCursor {
                    key: column::<i64>(row, "sort_key")?,
                    id: run.id.clone(),
                };
                scanned += 1;
                let keep = match &q.param {
                    Some((key, want)) => param_matches(&run.params_json, key, want),
                    None => true,
                };
                if keep {
                    if runs.len() == limit {
                        // One more matching row exists: the page ends before it.
                        return Ok(RunPage { runs, next: after });
                    }
                    runs.push(run);
                }
                after = Some(cursor);
                if scanned >= MAX_SCANNED && runs.len() < limit {
                    // Rows remain when this batch has more, or the table does.
                    let more = i + 1 < rows.len() || !exhausted;
                    return Ok(RunPage {
                        runs,
                        next: if more { after } else { None },
                    });
                }
            }
            if exhausted {
                return Ok(RunPage { runs, next: None });
            }
        }
    }

    /// The distinct pipelines with runs, sorted (for the list's filter).
    pub async fn run_pipelines(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT pipeline FROM runs ORDER BY pipeline LIMIT 1000")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("listing pipelines"))?;
        rows.iter().map(|r| column(r, "pipeline")).collect()
    }

    /// Step summaries of many runs in one query.
    pub async fn step_summaries(
        &self,
        run_ids: &[String],
    ) -> Result<HashMap<String, StepSummary>, StoreError> {
        let mut out = HashMap::new();
        // Bounded IN lists: both backends cap the number of bind parameters.
        for chunk in run_ids.chunks(500) {
            self.step_summaries_into(chunk, &mut out).await?;
        }
        Ok(out)
    }

    async fn step_summaries_into(
        &self,
        run_ids: &[String],
        out: &mut HashMap<String, StepSummary>,
    ) -> Result<(), StoreError> {
        let placeholders: Vec<String> = (1..=run_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT run_id, CAST(COUNT(*) AS BIGINT) AS n, \
             CAST(SUM(CASE WHEN status = 'cached' THEN 1 ELSE 0 END) AS BIGINT) AS cached, \
             CAST(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS BIGINT) AS failed, \
             CAST(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS BIGINT) AS running, \
             MAX(requested_cpu_millis) AS cpu, MAX(requested_memory_bytes) AS mem, \
             MAX(peak_memory_bytes) AS peak, CAST(SUM(cpu_micros) AS BIGINT) AS cpu_micros \
             FROM step_runs WHERE run_id IN ({}) GROUP BY run_id",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in run_ids {
            query = query.bind(id.as_str());
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("summarizing step runs"))?;
        for row in &rows {
            out.insert(
                column::<String>(row, "run_id")?,
                StepSummary {
                    step_runs: int(row, "n")?.unwrap_or(0),
                    cached: int(row, "cached")?.unwrap_or(0),
                    failed: int(row, "failed")?.unwrap_or(0),
                    running: int(row, "running")?.unwrap_or(0),
                    max_requested_cpu_millis: int(row, "cpu")?.unwrap_or(0),
                    max_requested_memory_bytes: int(row, "mem")?.unwrap_or(0),
                    max_peak_memory_bytes: int(row, "peak")?,
                    cpu_micros: int(row, "cpu_micros")?,
                },
            );
        }
        Ok(())
    }

    /// A tracking run's metric for a chart `columns` wide, x being the step or the time (ms):
    /// every point when there are at most four per column; otherwise, per column, the smallest
    /// and the largest value (drawn at the column's middle), so no spike is lost. NaN points
    /// are left out. Reads the metric's index once, whatever its length.
    pub async fn metric_series(
        &self,
        run_id: &str,
        key: &str,
        by_time: bool,
        columns: usize,
    ) -> Result<Vec<(f64, f64)>, StoreError> {
        match self.metric_series_shape(run_id, key, by_time).await? {
            Some(shape) => {
                self.metric_series_of(run_id, key, by_time, columns, shape)
                    .await
            }
            None => Ok(Vec::new()),
        }
    }

    /// `(points, smallest x, largest x)` of a tracking run's metric (NaN left out); None when
    /// it has no point. Points are only ever added, so the shape changes whenever the data do.
    pub async fn metric_series_shape(
        &self,
        run_id: &str,
        key: &str,
        by_time: bool,
    ) -> Result<Option<(i64, i64, i64)>, StoreError> {
        let x = if by_time { "timestamp_ms" } else { "step" };
        let op = || format!("reading metric {key} of tracking run {run_id}");
        let stats = sqlx::query(AssertSqlSafe(format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, MIN({x}) AS lo, MAX({x}) AS hi FROM mlflow_metrics \
             WHERE run_uuid = $1 AND key = $2 AND is_nan = 0"
        )))
        .bind(run_id)
        .bind(key)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::query(op()))?;
        let n = int(&stats, "n")?.unwrap_or(0);
        match (int(&stats, "lo")?, int(&stats, "hi")?) {
            (Some(lo), Some(hi)) if n > 0 => Ok(Some((n, lo, hi))),
            _ => Ok(None),
        }
    }

    /// What [`Store::metric_series`] returns, without its first query: `(count, min x, max x)`
    /// from [`Store::metric_series_shape`] (a caller that caches series keys them by it).
    pub async fn metric_series_of(
        &self,
        run_id: &str,
        key: &str,
        by_time: bool,
        columns: usize,
        (n, lo, hi): (i64, i64, i64),
    ) -> Result<Vec<(f64, f64)>, StoreError> {
        let x = if by_time { "timestamp_ms" } else { "step" };
        let op = || format!("reading metric {key} of tracking run {run_id}");
        let columns = columns.clamp(1, 10_000) as i64;
        if n == 0 {
            return Ok(Vec::new());
        }
        if n <= columns * 4 || hi == lo {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {x} AS x, value FROM mlflow_metrics \
                 WHERE run_uuid = $1 AND key = $2 AND is_nan = 0 ORDER BY {x}, step, timestamp_ms, value"
            )))
            .bind(run_id)
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op()))?;
            return rows
                .iter()
                .map(|r| Ok((column::<i64>(r, "x")? as f64, column::<f64>(r, "value")?)))
                .collect();
        }
        let span = hi - lo + 1;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT CAST((({x} - $3) * $4) / $5 AS BIGINT) AS b, MIN({x}) AS x0, MAX({x}) AS x1, \
             MIN(value) AS vmin, MAX(value) AS vmax FROM mlflow_metrics \
             WHERE run_uuid = $1 AND key = $2 AND is_nan = 0 GROUP BY b ORDER BY b"
        )))
        .bind(run_id)
        .bind(key)
        .bind(lo)
        .bind(columns)
        .bind(span)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op()))?;
        let mut out = Vec::with_capacity(rows.len() * 2);
        for r in &rows {
            let x0 = int(r, "x0")?.unwrap_or(lo) as f64;
            let x1 = int(r, "x1")?.unwrap_or(hi) as f64;
            let mid = (x0 + x1) / 2.0;
            let vmin: f64 = column(r, "vmin")?;
            let vmax: f64 = column(r, "vmax")?;
            out.push((mid, vmin));
            if vmax != vmin {
                out.push((mid, vmax));
            }
        }
        Ok(out)
    }

    /// Starts a browser session for the token `token_id`.
    pub async fn create_ui_session(
        &self,
        id_sha256: &str,
        token_id: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        // Expired sessions of anyone go first, so the table stays small.
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("removing expired sessions"))?;
        sqlx::query(
            "INSERT INTO ui_sessions (id_sha256, token_id, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id_sha256)
        .bind(token_id)
        .bind(now_ms)
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("starting a session"))?;
        Ok(())
    }

    /// The token behind a live session: None when the session is unknown, expired, or its
    /// token was revoked.
    pub async fn ui_session(
        &self,
        id_sha256: &str,
        now_ms: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let cols: Vec<String> = TOKEN_COLUMNS
            .split(", ")
            .map(|c| format!("t.{}", c.trim()))
            .collect();
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM ui_sessions s JOIN api_tokens t ON t.id = s.token_id \
             WHERE s.id_sha256 = $1 AND s.expires_at_ms > $2 AND t.revoked_at_ms IS NULL",
            cols.join(", ")
        )))
        .bind(id_sha256)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading a session"))?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Ends a session (logout); ending an unknown one is not an error.
    pub async fn delete_ui_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM ui_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query("ending a session"))?;
        Ok(())
    }
}

enum Arg {
    Text(String),
    Int(i64),
    Real(f64),
}

fn int(row: &AnyRow, name: &str) -> Result<Option<i64>, StoreError> {
    column::<Option<i64>>(row, name)
}

/// A key as it appears inside a JSON string (quotes and backslashes escaped).
fn json_key(key: &str) -> String {
    let quoted = serde_json::Value::String(key.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether the run's params hold `key` with a value whose text is `want` (strings by their
/// content, numbers and booleans by their JSON text).
fn param_matches(params_json: &str, key: &str, want: &str) -> bool {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(params_json)
    else {
        return false;
    };
    match map.get(key) {
        Some(serde_json::Value::String(s)) => s == want,
        Some(serde_json::Value::Number(n)) => {
            n.to_string() == want
                || match (n.as_f64(), want.parse::<f64>()) {
                    (Some(a), Ok(b)) => a == b,
                    _ => false,
                }
        }
        Some(serde_json::Value::Bool(b)) => b.to_string() == want,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_match_by_text_and_number() {
        let p = r#"{"lr":0.1,"algo":"rf","deep":true,"n":10}"#;
        assert!(param_matches(p, "lr", "0.1"));
        assert!(param_matches(p, "lr", "0.10"));
        assert!(param_matches(p, "algo", "rf"));
        assert!(!param_matches(p, "algo", "RF"));
        assert!(param_matches(p, "deep", "true"));
        assert!(param_matches(p, "n", "10"));
        assert!(!param_matches(p, "missing", "1"));
        assert!(!param_matches("not json", "lr", "0.1"));
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_escape(r#"a_b%c\"#), r#"a\_b\%c\\"#);
        assert_eq!(json_key("we\"ird"), "we\\\"ird");
    }
}
