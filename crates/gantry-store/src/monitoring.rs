//! Monitoring aggregates (see `migrations/*/0007_monitor.sql`): bucket states written with the
//! predictions they count, additive performance counts, and the reads a monitor makes instead
//! of reading the log. The states are opaque JSON here; gantry-monitor owns their meaning.

use serde::Serialize;
use sqlx::{Any, AssertSqlSafe, Transaction};

use crate::error::StoreError;
use crate::store::{Store, column};

/// Which bucket: a writer's counts of one deployment, version and role over
/// `[bucket_ms, bucket_ms + span_ms)`, binned against the reference profile `reference`
/// (a digest, or empty without one).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct BucketKey {
    pub deployment: String,
    pub bucket_ms: i64,
    pub span_ms: i64,
    pub role: String,
    pub version: i64,
    pub reference: String,
    pub writer: String,
}

/// A bucket and its state (JSON text); `seq` counts the rewrites of the row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BucketState {
    pub key: BucketKey,
    pub seq: i64,
    pub state_json: String,
    pub updated_at_ms: i64,
}

/// What a scored row (or a prediction) adds to one bucket's performance counts.
#[derive(Clone, Debug, PartialEq)]
pub struct PerformanceDelta {
    pub deployment: String,
    pub bucket_ms: i64,
    pub role: String,
    pub version: i64,
    pub kind: PerformanceKind,
    pub n: i64,
    pub sum_squared_error: f64,
    pub sum_absolute_error: f64,
}

/// The three kinds of performance rows.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PerformanceKind {
    /// Rows that got a prediction.
    Predictions,
    /// A labelled row of a classifier: (truth, predicted) as class texts.
    Class { truth: String, predicted: String },
    /// A labelled row of a regressor (its errors are in the sums).
    Regression,
}

impl PerformanceKind {
    fn columns(&self) -> (&'static str, &str, &str) {
        match self {
            PerformanceKind::Predictions => ("predictions", "", ""),
            PerformanceKind::Class { truth, predicted } => ("class", truth, predicted),
            PerformanceKind::Regression => ("regression", "", ""),
        }
    }
}

/// A prediction-log writer's checkpoint: it has counted its records up to `folded_seq` into
/// its monitor buckets; `heartbeat_ms` is when it last said it is alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogWriter {
    pub writer: String,
    pub folded_seq: i64,
    pub heartbeat_ms: i64,
}

/// Summed performance counts of one kind over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct PerformanceSum {
    pub kind: PerformanceKind,
    pub n: i64,
    pub sum_squared_error: f64,
    pub sum_absolute_error: f64,
}

/// How a label scores against its row's prediction: filled by the caller that knows models
/// (the store does not). `bucket_ms` maps a prediction's time to its bucket.
pub struct FeedbackScoring<'a> {
    pub bucket_ms: &'a (dyn Fn(i64) -> i64 + Sync),
    /// (prediction of the row, label) → (class pair, regression error).
    #[allow(clippy::type_complexity)]
    pub score: &'a (
            dyn Fn(
        Option<&serde_json::Value>,
        &serde_json::Value,
    ) -> (Option<(String, String)>, Option<f64>)
                + Sync
        ),
}

impl Store {
    /// Buckets of `deployment` starting in `[from_ms, to_ms]`, oldest first.
    pub async fn monitor_buckets(
        &self,
        deployment: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<BucketState>, StoreError> {
        let rows = sqlx::query(
            "SELECT deployment, bucket_ms, span_ms, role, version, reference, writer, seq, \
             state_json, updated_at_ms FROM monitor_buckets \
             WHERE deployment = $1 AND bucket_ms >= $2 AND bucket_ms <= $3 \
             ORDER BY bucket_ms, role, version, reference, writer",
        )
        .bind(deployment)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading monitor buckets of deployment {deployment}"
        )))?;
        rows.iter()
            .map(|row| {
                Ok(BucketState {
                    key: bucket_key(row)?,
                    seq: column(row, "seq")?,
                    state_json: column(row, "state_json")?,
                    updated_at_ms: column(row, "updated_at_ms")?,
                })
            })
            .collect()
    }

    /// The keys, rewrite counts and update times of the buckets [`Store::monitor_buckets`] would return,
    /// without their states: a reader that caches states fetches only those that changed.
    pub async fn monitor_bucket_keys(
        &self,
        deployment: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(BucketKey, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT deployment, bucket_ms, span_ms, role, version, reference, writer, seq, \
             updated_at_ms FROM monitor_buckets WHERE deployment = $1 AND bucket_ms >= $2 AND bucket_ms <= $3 \
             ORDER BY bucket_ms, role, version, reference, writer",
        )
        .bind(deployment)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading monitor buckets of deployment {deployment}"
        )))?;
        rows.iter()
            .map(|row| {
                Ok((
                    bucket_key(row)?,
                    column(row, "seq")?,
                    column(row, "updated_at_ms")?,
                ))
            })
            .collect()
    }

    /// One bucket's state and rewrite count; None when it is gone.
    pub async fn monitor_bucket_state(
        &self,
        k: &BucketKey,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let row = bind_bucket_key(
            sqlx::query(concat!(
                "SELECT seq, state_json FROM monitor_buckets WHERE ",
                bucket_key_is!()
            )),
            k,
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading a monitor bucket of deployment {}",
            k.deployment
        )))?;
        row.map(|r| Ok((column(&r, "seq")?, column(&r, "state_json")?)))
            .transpose()
    }

    /// Performance counts of `deployment`'s `roles` over buckets starting in
    /// `[from_ms, to_ms]`, summed per kind (and class pair).
    pub async fn monitor_performance(
        &self,
        deployment: &str,
        from_ms: i64,
        to_ms: i64,
        roles: &[&str],
    ) -> Result<Vec<PerformanceSum>, StoreError> {
        let roles_sql = crate::tracking::placeholders(4, roles.len().max(1));
        let sql = format!(
            "SELECT kind, truth, predicted, CAST(SUM(n) AS BIGINT) AS n, \
             CAST(SUM(sum_squared_error) AS DOUBLE PRECISION) AS sse, \
             CAST(SUM(sum_absolute_error) AS DOUBLE PRECISION) AS sae FROM monitor_performance \
             WHERE deployment = $1 AND bucket_ms >= $2 AND bucket_ms <= $3 AND role IN {roles_sql} \
             GROUP BY kind, truth, predicted"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(deployment)
            .bind(from_ms)
            .bind(to_ms);
        if roles.is_empty() {
            q = q.bind("");
        }
        for r in roles {
            q = q.bind(*r);
        }
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(format!(
                "reading performance counts of deployment {deployment}"
            )))?;
        rows.iter()
            .map(|row| {
                let kind: String = column(row, "kind")?;
                let kind = match kind.as_str() {
                    "predictions" => PerformanceKind::Predictions,
                    "regression" => PerformanceKind::Regression,
                    _ => PerformanceKind::Class {
                        truth: column(row, "truth")?,
                        predicted: column(row, "predicted")?,
                    },
                };
                Ok(PerformanceSum {
                    kind,
                    n: column(row, "n")?,
                    sum_squared_error: column(row, "sse")?,
                    sum_absolute_error: column(row, "sae")?,
                })
            })
            .collect()
    }

    /// Replaces buckets in one transaction (a rollup of minute buckets into an hour): the
    /// `remove` rows go, each at the revision (`seq`) it was read at, and the `add` rows are
    /// inserted, none of them existing by then. A row that changed since it was read (a
    /// writer counted a late record into it), or an `add` row another roll-up wrote
    /// meanwhile, fails it all with [`StoreError::Conflict`], nothing changed: counts would
    /// be lost otherwise.
    pub async fn replace_monitor_buckets(
        &self,
        remove: &[(BucketKey, i64)],
        add: &[BucketState],
    ) -> Result<(), StoreError> {
        let op = || "rolling up monitor buckets".to_string();
        let mut tx = self.begin_write(&op()).await?;
        for (k, seq) in remove {
            let done = bind_bucket_key(
                sqlx::query(concat!(
                    "DELETE FROM monitor_buckets WHERE ",
                    bucket_key_is!(),
                    " AND seq = $7"
                )),
                k,
            )
            .bind(*seq)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?
            .rows_affected();
            if done != 1 {
                return Err(bucket_conflict(&mut tx, k, *seq, &op()).await?);
            }
        }
        for b in add {
            if insert_bucket(&mut tx, b, &op()).await? != 1 {
                return Err(bucket_conflict(&mut tx, &b.key, 0, &op()).await?);
            }
        }
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Registers prediction-log writer `writer` (nothing counted yet), or renews it.
    pub async fn register_log_writer(&self, writer: &str, now_ms: i64) -> Result<(), StoreError> {
        self.insert_log_writer(
            writer,
            now_ms,
            "UPDATE SET heartbeat_ms = excluded.heartbeat_ms",
        )
        .await
    }

    /// Registers writer `writer` when it is not (a writer whose records are found in a
    /// journal it left behind): nothing counted, a heartbeat of long ago.
    pub async fn register_log_writer_if_absent(&self, writer: &str) -> Result<(), StoreError> {
        self.insert_log_writer(writer, 0, "NOTHING").await
    }

    async fn insert_log_writer(
        &self,
        writer: &str,
        heartbeat_ms: i64,
        on_conflict: &'static str,
    ) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO monitor_writers (writer, folded_seq, heartbeat_ms) VALUES ($1, 0, $2) \
             ON CONFLICT (writer) DO {on_conflict}"
        )))
        .bind(writer)
        .bind(heartbeat_ms)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "registering prediction-log writer {writer}"
        )))?;
        Ok(())
    }

    /// A writer's checkpoint; None when it is not registered.
    pub async fn log_writer(&self, writer: &str) -> Result<Option<LogWriter>, StoreError> {
        let row = sqlx::query(
            "SELECT writer, folded_seq, heartbeat_ms FROM monitor_writers WHERE writer = $1",
        )
        .bind(writer)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading prediction-log writer {writer}"
        )))?;
        row.map(|r| log_writer_row(&r)).transpose()
    }

    /// Writers whose heartbeat is older than `before_ms`, and that logged records after
    /// their checkpoint (records nobody has counted yet).
    pub async fn stale_log_writers(&self, before_ms: i64) -> Result<Vec<LogWriter>, StoreError> {
        let rows = sqlx::query(
            "SELECT w.writer, w.folded_seq, w.heartbeat_ms FROM monitor_writers w \
             WHERE w.heartbeat_ms < $1 AND EXISTS (SELECT 1 FROM predictions p \
             WHERE p.log_writer = w.writer AND p.log_seq > w.folded_seq) ORDER BY w.writer",
        )
        .bind(before_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading stale prediction-log writers"))?;
        rows.iter().map(log_writer_row).collect()
    }

    /// Records in one transaction that `writer` has counted its records up to `folded_seq`
    /// into `buckets` (whole states) and `deltas`, if its checkpoint still is `expected_seq`;
    /// returns false, writing nothing, when it is not (another process took the writer's
    /// records over: see [`Store::stale_log_writers`]).
    pub async fn checkpoint_log_writer(
        &self,
        writer: &str,
        expected_seq: i64,
        folded_seq: i64,
        now_ms: i64,
        buckets: &[BucketState],
        deltas: &[PerformanceDelta],
    ) -> Result<bool, StoreError> {
        let op = || format!("checkpointing prediction-log writer {writer}");
        let mut tx = self.begin_write(&op()).await?;
        let moved = sqlx::query(
            "UPDATE monitor_writers SET folded_seq = $1, heartbeat_ms = $2 \
             WHERE writer = $3 AND folded_seq = $4",
        )
        .bind(folded_seq)
        .bind(now_ms)
        .bind(writer)
        .bind(expected_seq)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?
        .rows_affected();
        if moved == 0 {
            return Ok(false);
        }
        match write_own_buckets(&mut tx, buckets, &op()).await {
            // A bucket it held was rolled up or pruned meanwhile: nothing is written, and
            // the writer counts its records again from the log, reading buckets back.
            Err(StoreError::Conflict { .. }) => return Ok(false),
            r => r?,
        }
        add_performance(&mut tx, deltas, &op()).await?;
        tx.commit().await.map_err(StoreError::query(op()))?;
        Ok(true)
    }

    /// Retention of the aggregates: deletes buckets and performance counts of `deployment`
    /// that start before `older_than_ms`. Returns the bucket rows deleted.
    pub async fn prune_monitor(
        &self,
        deployment: &str,
        older_than_ms: i64,
    ) -> Result<u64, StoreError> {
        let op = || format!("pruning monitor aggregates of deployment {deployment}");
        let mut tx = self.begin_write(&op()).await?;
        let gone =
            sqlx::query("DELETE FROM monitor_buckets WHERE deployment = $1 AND bucket_ms < $2")
                .bind(deployment)
                .bind(older_than_ms)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?
                .rows_affected();
        sqlx::query("DELETE FROM monitor_performance WHERE deployment = $1 AND bucket_ms < $2")
            .bind(deployment)
            .bind(older_than_ms)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))?;
        Ok(gone)
    }
}

fn log_writer_row(row: &sqlx::any::AnyRow) -> Result<LogWriter, StoreError> {
    Ok(LogWriter {
        writer: column(row, "writer")?,
        folded_seq: column(row, "folded_seq")?,
        heartbeat_ms: column(row, "heartbeat_ms")?,
    })
}

/// The key columns of a `monitor_buckets` row.
fn bucket_key(row: &sqlx::any::AnyRow) -> Result<BucketKey, StoreError> {
    Ok(BucketKey {
        deployment: column(row, "deployment")?,
        bucket_ms: column(row, "bucket_ms")?,
        span_ms: column(row, "span_ms")?,
        role: column(row, "role")?,
        version: column(row, "version")?,
        reference: column(row, "reference")?,
        writer: column(row, "writer")?,
    })
}

/// A prediction-log writer's buckets, each written only over the revision it was computed
/// from (`seq - 1`; none for `seq` 1). A bucket that changed or went away meanwhile (rolled
/// up into its hour, pruned) fails the write with [`StoreError::Conflict`]: the writer's copy
/// is stale, and writing it would count again what the roll-up already holds.
pub(crate) async fn write_own_buckets(
    tx: &mut Transaction<'static, Any>,
    buckets: &[BucketState],
    op: &str,
) -> Result<(), StoreError> {
    for b in buckets {
        let k = &b.key;
        let done = if b.seq <= 1 {
            insert_bucket(tx, b, op).await?
        } else {
            bind_bucket_key(
                sqlx::query(concat!(
                    "UPDATE monitor_buckets SET span_ms = $7, seq = $8, state_json = $9, \
                     updated_at_ms = $10 WHERE ",
                    bucket_key_is!(),
                    " AND seq = $11"
                )),
                k,
            )
            .bind(k.span_ms)
            .bind(b.seq)
            .bind(&b.state_json)
            .bind(b.updated_at_ms)
            .bind(b.seq - 1)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::query(op.to_owned()))?
            .rows_affected()
        };
        if done != 1 {
            return Err(bucket_conflict(tx, k, b.seq - 1, op).await?);
        }
    }
    Ok(())
}

/// The condition naming one bucket row, its key bound as `$1`…`$6` by [`bind_bucket_key`].
macro_rules! bucket_key_is {
    () => {
        "deployment = $1 AND bucket_ms = $2 AND role = $3 AND version = $4 \
         AND reference = $5 AND writer = $6"
    };
}
use bucket_key_is;

/// Binds `k` as `$1`…`$6`: deployment, bucket, role, version, reference, writer.
fn bind_bucket_key<'q>(q: AnyQuery<'q>, k: &'q BucketKey) -> AnyQuery<'q> {
    q.bind(&k.deployment)
        .bind(k.bucket_ms)
        .bind(&k.role)
        .bind(k.version)
        .bind(&k.reference)
        .bind(&k.writer)
}

type AnyQuery<'q> = sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>;

/// Inserts `b` unless its row exists; the rows inserted (0 or 1).
async fn insert_bucket(
    tx: &mut Transaction<'static, Any>,
    b: &BucketState,
    op: &str,
) -> Result<u64, StoreError> {
    let k = &b.key;
    let done = bind_bucket_key(
        sqlx::query(
            "INSERT INTO monitor_buckets (deployment, bucket_ms, role, version, reference, \
             writer, span_ms, seq, state_json, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (deployment, bucket_ms, role, version, reference, writer) DO NOTHING",
        ),
        k,
    )
    .bind(k.span_ms)
    .bind(b.seq)
    .bind(&b.state_json)
    .bind(b.updated_at_ms)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query(op.to_owned()))?;
    Ok(done.rows_affected())
}

/// The conflict of a bucket write that expected revision `expected` of `k`.
async fn bucket_conflict(
    tx: &mut Transaction<'static, Any>,
    k: &BucketKey,
    expected: i64,
    op: &str,
) -> Result<StoreError, StoreError> {
    let row = bind_bucket_key(
        sqlx::query(concat!(
            "SELECT seq FROM monitor_buckets WHERE ",
            bucket_key_is!()
        )),
        k,
    )
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::query(op.to_owned()))?;
    let actual: Option<i64> = row.as_ref().map(|r| column(r, "seq")).transpose()?;
    Ok(StoreError::Conflict {
        kind: "monitor bucket",
        id: format!(
            "{}/{}/{}/v{}/{}",
            k.deployment, k.bucket_ms, k.role, k.version, k.writer
        ),
        expected,
        actual: actual.unwrap_or(0),
    })
}

/// Adds performance deltas (negative ones remove).
pub(crate) async fn add_performance(
    tx: &mut Transaction<'static, Any>,
    deltas: &[PerformanceDelta],
    op: &str,
) -> Result<(), StoreError> {
    for d in deltas {
        let (kind, truth, predicted) = d.kind.columns();
        sqlx::query(
            "INSERT INTO monitor_performance (deployment, bucket_ms, role, version, kind, truth, \
             predicted, n, sum_squared_error, sum_absolute_error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (deployment, bucket_ms, role, version, kind, truth, predicted) DO UPDATE \
             SET n = monitor_performance.n + excluded.n, \
             sum_squared_error = monitor_performance.sum_squared_error + excluded.sum_squared_error, \
             sum_absolute_error = monitor_performance.sum_absolute_error + excluded.sum_absolute_error",
        )
        .bind(&d.deployment)
        .bind(d.bucket_ms)
        .bind(&d.role)
        .bind(d.version)
        .bind(kind)
        .bind(truth)
        .bind(predicted)
        .bind(d.n)
        .bind(d.sum_squared_error)
        .bind(d.sum_absolute_error)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query(op.to_owned()))?;
    }
    Ok(())
}

/// The deltas one scored row adds (`sign` 1) or removes (−1).
pub(crate) fn scored_deltas(
    at: (&str, i64, &str, i64),
    scored: &(Option<(String, String)>, Option<f64>),
    sign: i64,
) -> Vec<PerformanceDelta> {
    let (deployment, bucket_ms, role, version) = at;
    let mut out = Vec::new();
    let base = |kind| PerformanceDelta {
        deployment: deployment.to_owned(),
        bucket_ms,
        role: role.to_owned(),
        version,
        kind,
        n: sign,
        sum_squared_error: 0.0,
        sum_absolute_error: 0.0,
    };
    if let Some((truth, predicted)) = &scored.0 {
        out.push(base(PerformanceKind::Class {
            truth: truth.clone(),
            predicted: predicted.clone(),
        }));
    }
    if let Some(e) = scored.1 {
        let mut d = base(PerformanceKind::Regression);
        d.sum_squared_error = sign as f64 * e * e;
        d.sum_absolute_error = sign as f64 * e.abs();
        out.push(d);
    }
    out
}
