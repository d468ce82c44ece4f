//! MLflow-compatible experiment tracking: experiments, runs, params, tags and metric history,
//! with MLflow's rules (immutable params, latest metric = largest step then timestamp, NaN and
//! infinities kept), its limits, and its search grammar.
//!
//! Tracking runs are not pipeline runs: they live in their own tables (`mlflow_*`) and are
//! called "tracking runs" here to keep them apart from [`crate::RunRecord`].

mod registry;
pub(crate) mod search;

use std::collections::{HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::{Any, Executor};

use crate::error::StoreError;
use crate::store::{Backend, Store, column};

pub use registry::{NewRegisteredModelVersion, RegisteredModel, RegisteredModelVersion};
use std::fmt::Write as _;

use search::{
    Comparator, Condition, EXPERIMENT_ATTRIBUTES, FieldValue, Literal, MODEL_ATTRIBUTES,
    MODEL_VERSION_ATTRIBUTES, RUN_ATTRIBUTES, SearchKey, compare_values, parse_filter,
    parse_order_by,
};

/// MLflow's limits, enforced before anything is written.
pub mod limits {
    pub const BATCH_METRICS: usize = 1000;
    pub const BATCH_PARAMS: usize = 100;
    pub const BATCH_TAGS: usize = 100;
    pub const BATCH_TOTAL: usize = 1000;
    pub const PARAM_VALUE_CHARS: usize = 6000;
    pub const TAG_VALUE_CHARS: usize = 8000;
    pub const KEY_CHARS: usize = 250;
    pub const NAME_CHARS: usize = 500;
    /// Default and largest `max_results` of run searches.
    pub const SEARCH_DEFAULT: usize = 1000;
    pub const SEARCH_MAX: usize = 50000;
}

/// The experiment MLflow clients use when they name none.
pub const DEFAULT_EXPERIMENT_ID: &str = "0";

const RUN_STATUSES: [&str; 5] = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

/// Rows per multi-row INSERT: well under SQLite's 32766 and PostgreSQL's 65535 bind limits.
const ROWS_PER_INSERT: usize = 500;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Experiment {
    /// A decimal number, as MLflow's ids are.
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    /// "active" or "deleted".
    pub lifecycle_stage: String,
    pub creation_time: i64,
    pub last_update_time: i64,
    pub tags: Vec<KeyValue>,
}

/// One metric point; also a run's latest value of a metric.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackingRunInfo {
    /// 32 lowercase hex characters.
    pub run_id: String,
    pub experiment_id: String,
    pub run_name: String,
    pub user_id: String,
    /// RUNNING, SCHEDULED, FINISHED, FAILED or KILLED.
    pub status: String,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    /// "active" or "deleted".
    pub lifecycle_stage: String,
    /// `mlflow-artifacts:/<experiment_id>/<run_id>/artifacts` unless the experiment has its own
    /// artifact location.
    pub artifact_uri: String,
}

/// A run with its latest metrics, params and tags, each sorted by key.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackingRun {
    pub info: TrackingRunInfo,
    pub metrics: Vec<MetricPoint>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

#[derive(Clone, Debug, Default)]
pub struct NewTrackingRun {
    pub experiment_id: String,
    pub user_id: String,
    /// Taken from the `mlflow.runName` tag when absent; a random name when neither is given.
    pub run_name: Option<String>,
    pub start_time: Option<i64>,
    pub tags: Vec<KeyValue>,
}

/// Fields of a run that `runs/update` may change; None leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct TrackingRunUpdate {
    pub status: Option<String>,
    pub end_time: Option<i64>,
    pub run_name: Option<String>,
}

/// Which lifecycle stages a search returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    /// MLflow's names (`ACTIVE_ONLY`, `DELETED_ONLY`, `ALL`); also its numbers 1, 2, 3.
    pub fn parse(s: &str) -> Option<ViewType> {
        match s {
            "ACTIVE_ONLY" | "1" => Some(ViewType::ActiveOnly),
            "DELETED_ONLY" | "2" => Some(ViewType::DeletedOnly),
            "ALL" | "3" => Some(ViewType::All),
            _ => None,
        }
    }

    fn admits(self, stage: &str) -> bool {
        match self {
            ViewType::ActiveOnly => stage == "active",
            ViewType::DeletedOnly => stage == "deleted",
            ViewType::All => true,
        }
    }
}

/// A search: what `runs/search`, `experiments/search` and the registry searches take.
#[derive(Clone, Debug, Default)]
pub struct SearchQuery {
    /// Runs only: the experiments to search.
    pub experiment_ids: Vec<String>,
    pub filter: String,
    pub view: ViewType,
    /// None: the default of the search.
    pub max_results: Option<usize>,
    pub order_by: Vec<String>,
    pub page_token: Option<String>,
}

/// One page of results and, when more remain, the token of the next.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

fn invalid(what: impl Into<String>, detail: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        what: what.into(),
        detail: detail.into(),
    }
}

pub(crate) fn run_not_found(run_id: &str) -> StoreError {
    StoreError::NotFound {
        kind: "tracking run",
        id: run_id.to_owned(),
    }
}

fn experiment_not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        kind: "experiment",
        id: id.to_owned(),
    }
}

/// `($start, $start+1, …)` for `n` values.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    let mut s = String::with_capacity(n * 5 + 2);
    s.push('(');
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('$');
        s.push_str(&(start + i).to_string());
    }
    s.push(')');
    s
}

/// `VALUES ($1, …, $cols), (…)` for `rows` rows; on SQLite `(?, …)` instead, because SQLite
/// looks up a numbered parameter by a linear scan (quadratic in a 6000-value batch), while
/// anonymous ones bind in order. Only for statements whose every parameter is in the list.
pub(crate) fn values_rows(backend: Backend, rows: usize, cols: usize) -> String {
    let mut s = String::from("VALUES ");
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push_str(&list(backend, 1 + r * cols, cols));
    }
    s
}

/// [`placeholders`], or anonymous `(?, …)` on SQLite (see [`values_rows`]): only for
/// statements whose parameters are all such lists, bound in order.
fn list(backend: Backend, start: usize, n: usize) -> String {
    match backend {
        Backend::Postgres => placeholders(start, n),
        Backend::Sqlite => {
            let mut s = String::with_capacity(n * 3 + 2);
            s.push('(');
            for i in 0..n {
                if i > 0 {
                    s.push_str(", ");
                }
                s.push('?');
            }
            s.push(')');
            s
        }
    }
}

/// Keys of metrics, params and tags: MLflow's rules, so that a key is also a safe relative
/// path (no leading '/', no empty, '.' or '..' segments).
pub fn validate_key(kind: &str, key: &str) -> Result<(), StoreError> {
    let what = || format!("{kind} key '{key}'");
    if key.is_empty() {
        return Err(invalid(what(), "it is empty"));
    }
    if key.chars().count() > limits::KEY_CHARS {
        return Err(invalid(
            what(),
            format!("it is longer than {} characters", limits::KEY_CHARS),
        ));
    }
    if !key
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | '/' | ':'))
    {
        return Err(invalid(
            what(),
            "names may only contain alphanumerics, underscores (_), dashes (-), periods (.), \
             spaces ( ), colons (:) and slashes (/)",
        ));
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(invalid(
            what(),
            "it would resolve to a different path: no leading or trailing '/', '//', '.' or '..'",
        ));
    }
    Ok(())
}

fn validate_value(kind: &str, key: &str, value: &str, max: usize) -> Result<(), StoreError> {
    let len = value.chars().count();
    if len > max {
        return Err(invalid(
            format!("value of {kind} '{key}'"),
            format!("it has {len} characters; the limit is {max}"),
        ));
    }
    Ok(())
}

fn validate_status(status: &str) -> Result<(), StoreError> {
    if RUN_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(invalid(
            format!("run status '{status}'"),
            format!("expected one of {}", RUN_STATUSES.join(", ")),
        ))
    }
}

fn validate_name(kind: &str, name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() {
        return Err(invalid(format!("{kind} name"), "it is empty"));
    }
    if name.chars().count() > limits::NAME_CHARS {
        return Err(invalid(
            format!("{kind} name"),
            format!("it is longer than {} characters", limits::NAME_CHARS),
        ));
    }
    Ok(())
}

fn parse_experiment_id(id: &str) -> Result<i64, StoreError> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| experiment_not_found(id))
}

/// Checks MLflow's log-batch limits and every key and value.
pub fn validate_batch(
    metrics: &[MetricPoint],
    params: &[KeyValue],
    tags: &[KeyValue],
) -> Result<(), StoreError> {
    let what = "log-batch request";
    for (kind, count, limit) in [
        ("metrics", metrics.len(), limits::BATCH_METRICS),
        ("params", params.len(), limits::BATCH_PARAMS),
        ("tags", tags.len(), limits::BATCH_TAGS),
    ] {
        if count > limit {
            return Err(invalid(
                what,
                format!("a batch may hold at most {limit} {kind}, it has {count}"),
            ));
        }
    }
    let total = metrics.len() + params.len() + tags.len();
    if total > limits::BATCH_TOTAL {
        return Err(invalid(
            what,
            format!(
                "a batch may hold at most {} metrics, params and tags in all, it has {total}",
                limits::BATCH_TOTAL
            ),
        ));
    }
    for m in metrics {
        validate_key("metric", &m.key)?;
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for p in params {
        validate_key("param", &p.key)?;
        validate_value("param", &p.key, &p.value, limits::PARAM_VALUE_CHARS)?;
        if let Some(prev) = seen.insert(&p.key, &p.value)
            && prev != p.value
        {
            return Err(invalid(
                format!("param '{}'", p.key),
                format!(
                    "the batch logs it twice with different values ('{prev}' and '{}')",
                    p.value
                ),
            ));
        }
    }
    for t in tags {
        validate_key("tag", &t.key)?;
        validate_value("tag", &t.key, &t.value, limits::TAG_VALUE_CHARS)?;
    }
    Ok(())
}

/// An opaque page token: the offset and a hash of the query (without the page size), so a
/// token is only accepted by the search that issued it.
fn encode_token(offset: usize, query_hash: u64) -> String {
    hex::encode(format!("{offset}:{query_hash:016x}"))
}

fn decode_token(token: Option<&str>, query_hash: u64) -> Result<usize, StoreError> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    let bad = || {
        invalid(
            "page_token",
            "it was not issued for this query: pass the next_page_token of the previous page \
             of the same search, or none for the first page",
        )
    };
    let text = hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (offset, hash) = text.split_once(':').ok_or_else(bad)?;
    if hash != format!("{query_hash:016x}") {
        return Err(bad());
    }
    offset.parse().map_err(|_| bad())
}

/// FNV-1a: stable across processes (unlike std's hasher), which page tokens need.
fn query_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

pub(crate) fn page_bounds(
    query: &SearchQuery,
    hash: u64,
    default: usize,
    total: usize,
) -> Result<(usize, usize, Option<String>), StoreError> {
    let max = query.max_results.unwrap_or(default);
    if max == 0 || max > limits::SEARCH_MAX {
        return Err(invalid(
            "max_results",
            format!(
                "{max} is out of range: give 1 to {} (default {default})",
                limits::SEARCH_MAX
            ),
        ));
    }
    let offset = decode_token(query.page_token.as_deref(), hash)?;
    let start = offset.min(total);
    let end = start.saturating_add(max).min(total);
    let next = (end < total).then(|| encode_token(end, hash));
    Ok((start, end, next))
}

/// What a page token is bound to: the search, not the page size — MLflow's tokens are
/// offsets, and clients ask for the next page with another `max_results`.
pub(crate) fn search_hash(kind: &str, q: &SearchQuery) -> u64 {
    let view = format!("{:?}", q.view);
    let mut parts = vec![kind, q.filter.as_str(), view.as_str()];
    parts.extend(q.experiment_ids.iter().map(String::as_str));
    parts.push("|");
    parts.extend(q.order_by.iter().map(String::as_str));
    query_hash(&parts)
}

fn metric_value(value: f64, is_nan: i64) -> f64 {
    if is_nan != 0 { f64::NAN } else { value }
}

fn random_run_name() -> String {
    const ADJECTIVES: [&str; 16] = [
        "amazing", "bold", "brave", "bright", "calm", "clever", "eager", "gentle", "happy", "keen",
        "lucky", "nimble", "quiet", "swift", "vivid", "wise",
    ];
    const NOUNS: [&str; 16] = [
        "ant", "bat", "crow", "deer", "eel", "fox", "gnu", "hare", "ibis", "jay", "koi", "lark",
        "mole", "newt", "owl", "yak",
    ];
    let r: [u8; 3] = rand::random();
    format!(
        "{}-{}-{}",
        ADJECTIVES[usize::from(r[0] % 16)],
        NOUNS[usize::from(r[1] % 16)],
        r[2]
    )
}

const RUN_COLUMNS: &str = "run_uuid, experiment_id, run_name, user_id, status, start_time, \
                           end_time, lifecycle_stage, artifact_uri";

fn run_info_from_row(row: &AnyRow) -> Result<TrackingRunInfo, StoreError> {
    Ok(TrackingRunInfo {
        run_id: column(row, "run_uuid")?,
        experiment_id: column::<i64>(row, "experiment_id")?.to_string(),
        run_name: column(row, "run_name")?,
        user_id: column(row, "user_id")?,
        status: column(row, "status")?,
        start_time: column(row, "start_time")?,
        end_time: column(row, "end_time")?,
        lifecycle_stage: column(row, "lifecycle_stage")?,
        artifact_uri: column(row, "artifact_uri")?,
    })
}

/// A run info with only `columns` read (the others empty), for search candidates.
fn partial_run_info(row: &AnyRow, columns: &[&str]) -> Result<TrackingRunInfo, StoreError> {
    let text = |name: &str| -> Result<String, StoreError> {
        if columns.contains(&name) {
            column(row, name)
        } else {
            Ok(String::new())
        }
    };
    let time = |name: &str| -> Result<Option<i64>, StoreError> {
        if columns.contains(&name) {
            column(row, name)
        } else {
            Ok(None)
        }
    };
    Ok(TrackingRunInfo {
        run_id: text("run_uuid")?,
        experiment_id: String::new(),
        run_name: text("run_name")?,
        user_id: text("user_id")?,
        status: text("status")?,
        start_time: time("start_time")?,
        end_time: time("end_time")?,
        lifecycle_stage: text("lifecycle_stage")?,
        artifact_uri: text("artifact_uri")?,
    })
}

fn experiment_from_row(row: &AnyRow) -> Result<Experiment, StoreError> {
    Ok(Experiment {
        experiment_id: column::<i64>(row, "experiment_id")?.to_string(),
        name: column(row, "name")?,
        artifact_location: column(row, "artifact_location")?,
        lifecycle_stage: column(row, "lifecycle_stage")?,
        creation_time: column(row, "creation_time")?,
        last_update_time: column(row, "last_update_time")?,
        tags: Vec::new(),
    })
}

/// Errors of a write that hit a unique constraint: the thing exists already.
fn unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

async fn active_run_experiment<'e, E>(executor: E, run_id: &str) -> Result<(), StoreError>
where
    E: Executor<'e, Database = Any>,
{
    let row = sqlx::query("SELECT lifecycle_stage FROM mlflow_runs WHERE run_uuid = $1")
        .bind(run_id)
        .fetch_optional(executor)
        .await
        .map_err(StoreError::query(format!(
            "looking up tracking run {run_id}"
        )))?
        .ok_or_else(|| run_not_found(run_id))?;
    let stage: String = column(&row, "lifecycle_stage")?;
    if stage != "active" {
        return Err(inactive_run(run_id, &stage));
    }
    Ok(())
}

pub(crate) fn inactive_run(run_id: &str, stage: &str) -> StoreError {
    invalid(
        format!("tracking run {run_id}"),
        format!(
            "the run must be in the 'active' state to be changed, it is '{stage}': restore it first"
        ),
    )
}

pub(crate) fn param_changed(run_id: &str, p: &KeyValue, old: &str) -> StoreError {
    invalid(
        format!("param '{}' of run {run_id}", p.key),
        format!(
            "changing param values is not allowed: it was already logged with value '{old}', \
             attempted new value '{}'",
            p.value
        ),
    )
}

impl Store {
    // ----- experiments -------------------------------------------------------------------

    /// Creates an experiment and returns its id. Its artifact location defaults to
    /// `mlflow-artifacts:/<id>`.
    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[KeyValue],
        now_ms: i64,
    ) -> Result<String, StoreError> {
        validate_name("experiment", name)?;
        for t in tags {
            validate_key("tag", &t.key)?;
            validate_value("tag", &t.key, &t.value, limits::TAG_VALUE_CHARS)?;
        }
        let op = || format!("creating experiment {name}");
        let mut tx = self.begin_write(&op()).await?;
        let exists = sqlx::query("SELECT experiment_id FROM mlflow_experiments WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        if exists.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "experiment",
                id: name.to_owned(),
            });
        }
        let row = sqlx::query(
            "INSERT INTO mlflow_experiments (name, artifact_location, lifecycle_stage, \
             creation_time, last_update_time) VALUES ($1, $2, 'active', $3, $3) \
             RETURNING experiment_id",
        )
        .bind(name)
        .bind(artifact_location.unwrap_or(""))
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if unique_violation(&e) {
                StoreError::AlreadyExists {
                    kind: "experiment",
                    id: name.to_owned(),
                }
            } else {
                StoreError::query(op())(e)
            }
        })?;
        let id: i64 = column(&row, "experiment_id")?;
        if artifact_location.is_none_or(str::is_empty) {
            sqlx::query(
                "UPDATE mlflow_experiments SET artifact_location = $1 WHERE experiment_id = $2",
            )
            .bind(format!("mlflow-artifacts:/{id}"))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        }
        for chunk in tags.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO mlflow_experiment_tags (experiment_id, key, value) {} \
                 ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
                values_rows(self.backend, chunk.len(), 3)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for t in chunk {
                q = q.bind(id).bind(&t.key).bind(&t.value);
            }
            q.execute(&mut *tx).await.map_err(StoreError::query(op()))?;
        }
        tx.commit().await.map_err(StoreError::query(op()))?;
        Ok(id.to_string())
    }

    pub async fn get_experiment(&self, experiment_id: &str) -> Result<Experiment, StoreError> {
        let id = parse_experiment_id(experiment_id)?;
        let op = || format!("looking up experiment {experiment_id}");
        let row = sqlx::query("SELECT * FROM mlflow_experiments WHERE experiment_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(op()))?
            .ok_or_else(|| experiment_not_found(experiment_id))?;
        let mut e = experiment_from_row(&row)?;
        e.tags = self.experiment_tags(id).await?;
        Ok(e)
    }

    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment, StoreError> {
        let op = || format!("looking up experiment {name}");
        let row = sqlx::query("SELECT * FROM mlflow_experiments WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(op()))?
            .ok_or_else(|| experiment_not_found(name))?;
        let mut e = experiment_from_row(&row)?;
        e.tags = self
            .experiment_tags(parse_experiment_id(&e.experiment_id)?)
            .await?;
        Ok(e)
    }

    async fn experiment_tags(&self, id: i64) -> Result<Vec<KeyValue>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, value FROM mlflow_experiment_tags WHERE experiment_id = $1 ORDER BY key",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading tags of experiment {id}"
        )))?;
        rows.iter()
            .map(|r| {
                Ok(KeyValue::new(
                    column::<String>(r, "key")?,
                    column::<String>(r, "value")?,
                ))
            })
            .collect()
    }

    /// MLflow's experiment search: filter on `name` and `tags.<key>`, order by `name`,
    /// `experiment_id`, `creation_time` or `last_update_time` (default: newest first).
    pub async fn search_experiments(
        &self,
        query: &SearchQuery,
    ) -> Result<Page<Experiment>, StoreError> {
        let conditions = parse_filter(&query.filter, &EXPERIMENT_ATTRIBUTES)?;
        let orders = query
            .order_by
            .iter()
            .map(|o| parse_order_by(o, &EXPERIMENT_ATTRIBUTES))
            .collect::<Result<Vec<_>, _>>()?;
        let op = "searching experiments";
        let rows = sqlx::query("SELECT * FROM mlflow_experiments")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(op))?;
        let tag_rows = sqlx::query(
            "SELECT experiment_id, key, value FROM mlflow_experiment_tags ORDER BY key",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query(op))?;
        let mut tags: HashMap<String, Vec<KeyValue>> = HashMap::new();
        for r in &tag_rows {
            tags.entry(column::<i64>(r, "experiment_id")?.to_string())
                .or_default()
                .push(KeyValue::new(
                    column::<String>(r, "key")?,
                    column::<String>(r, "value")?,
                ));
        }
        let mut experiments = Vec::new();
        for row in &rows {
            let mut e = experiment_from_row(row)?;
            if !query.view.admits(&e.lifecycle_stage) {
                continue;
            }
            e.tags = tags.remove(&e.experiment_id).unwrap_or_default();
            experiments.push(e);
        }
        let field = |e: &Experiment, key: &SearchKey| -> Option<Stored> {
            match key {
                SearchKey::Attribute(a) => match a.as_str() {
                    "name" => Some(Stored::Str(e.name.clone())),
                    "creation_time" => Some(Stored::Num(e.creation_time as f64)),
                    "last_update_time" => Some(Stored::Num(e.last_update_time as f64)),
                    "experiment_id" => e.experiment_id.parse().ok().map(Stored::Num),
                    _ => None,
                },
                SearchKey::Tag(k) => e
                    .tags
                    .iter()
                    .find(|t| &t.key == k)
                    .map(|t| Stored::Str(t.value.clone())),
                _ => None,
            }
        };
        filter_and_order(&mut experiments, &conditions, &orders, field, |a, b| {
            b.creation_time.cmp(&a.creation_time).then_with(|| {
                let id = |e: &Experiment| e.experiment_id.parse::<i64>().unwrap_or(i64::MAX);
                id(a).cmp(&id(b))
            })
        });
        let (start, end, next) = page_bounds(
            query,
            search_hash("experiments", query),
            limits::SEARCH_DEFAULT,
            experiments.len(),
        )?;
        Ok(Page {
            items: experiments.drain(start..end).collect(),
            next_page_token: next,
        })
    }

    /// Renames an experiment.
    pub async fn rename_experiment(
        &self,
        experiment_id: &str,
        new_name: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        validate_name("experiment", new_name)?;
        let id = parse_experiment_id(experiment_id)?;
        let op = || format!("renaming experiment {experiment_id}");
        let mut tx = self.begin_write(&op()).await?;
        let row =
            sqlx::query("SELECT lifecycle_stage FROM mlflow_experiments WHERE experiment_id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?
                .ok_or_else(|| experiment_not_found(experiment_id))?;
        let stage: String = column(&row, "lifecycle_stage")?;
        if stage != "active" {
            return Err(invalid(
                format!("experiment {experiment_id}"),
                "cannot rename a deleted experiment: restore it first",
            ));
        }
        let taken = sqlx::query(
            "SELECT experiment_id FROM mlflow_experiments WHERE name = $1 AND experiment_id != $2",
        )
        .bind(new_name)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        if taken.is_some() {
            return Err(StoreError::AlreadyExists {
                kind: "experiment",
                id: new_name.to_owned(),
            });
        }
        sqlx::query(
            "UPDATE mlflow_experiments SET name = $1, last_update_time = $2 WHERE experiment_id = $3",
        )
        .bind(new_name)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Marks an experiment and its active runs deleted (`restore` undoes both).
    pub async fn set_experiment_deleted(
        &self,
        experiment_id: &str,
        deleted: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let id = parse_experiment_id(experiment_id)?;
        let (from, to) = if deleted {
            ("active", "deleted")
        } else {
            ("deleted", "active")
        };
        let op = || format!("changing experiment {experiment_id} to {to}");
        let mut tx = self.begin_write(&op()).await?;
        let row =
            sqlx::query("SELECT lifecycle_stage FROM mlflow_experiments WHERE experiment_id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?
                .ok_or_else(|| experiment_not_found(experiment_id))?;
        let stage: String = column(&row, "lifecycle_stage")?;
        if stage != from {
            return Err(invalid(
                format!("experiment {experiment_id}"),
                format!("it is already {stage}"),
            ));
        }
        sqlx::query(
            "UPDATE mlflow_experiments SET lifecycle_stage = $1, last_update_time = $2 \
             WHERE experiment_id = $3",
        )
        .bind(to)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        sqlx::query(
            "UPDATE mlflow_runs SET lifecycle_stage = $1, deleted_time = $2 \
             WHERE experiment_id = $3 AND lifecycle_stage = $4",
        )
        .bind(to)
        .bind(deleted.then_some(now_ms))
        .bind(id)
        .bind(from)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))
    }

    pub async fn set_experiment_tag(
        &self,
        experiment_id: &str,
        tag: &KeyValue,
    ) -> Result<(), StoreError> {
        validate_key("tag", &tag.key)?;
        validate_value("tag", &tag.key, &tag.value, limits::TAG_VALUE_CHARS)?;
        let id = parse_experiment_id(experiment_id)?;
        let op = || format!("tagging experiment {experiment_id}");
        let mut tx = self.begin_write(&op()).await?;
        let exists =
            sqlx::query("SELECT experiment_id FROM mlflow_experiments WHERE experiment_id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?;
        if exists.is_none() {
            return Err(experiment_not_found(experiment_id));
        }
        sqlx::query(
            "INSERT INTO mlflow_experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(id)
        .bind(&tag.key)
        .bind(&tag.value)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        tx.commit().await.map_err(StoreError::query(op()))
    }

    // ----- runs --------------------------------------------------------------------------

    pub async fn create_tracking_run(
        &self,
        new: &NewTrackingRun,
        now_ms: i64,
    ) -> Result<TrackingRun, StoreError> {
        let exp_id = parse_experiment_id(&new.experiment_id)?;
        for t in &new.tags {
            validate_key("tag", &t.key)?;
            validate_value("tag", &t.key, &t.value, limits::TAG_VALUE_CHARS)?;
        }
        let tag_name = new
            .tags
            .iter()
            .rev()
            .find(|t| t.key == "mlflow.runName")
            .map(|t| t.value.clone());
        let run_name = match (&new.run_name, tag_name) {
            (Some(n), Some(t)) if !n.is_empty() && *n != t => {
                return Err(invalid(
                    "run name",
                    format!("run_name '{n}' and tag mlflow.runName '{t}' differ: give one"),
                ));
            }
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, Some(t)) if !t.is_empty() => t,
            _ => random_run_name(),
        };
        validate_value("run name", &run_name, &run_name, limits::NAME_CHARS)?;
        let run_id = hex::encode(rand::random::<[u8; 16]>());
        let op = || {
            format!(
                "creating a tracking run in experiment {}",
                new.experiment_id
            )
        };
        let mut tx = self.begin_write(&op()).await?;
        let row = sqlx::query(
            "SELECT lifecycle_stage, artifact_location FROM mlflow_experiments \
             WHERE experiment_id = $1",
        )
        .bind(exp_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?
        .ok_or_else(|| experiment_not_found(&new.experiment_id))?;
        let stage: String = column(&row, "lifecycle_stage")?;
        if stage != "active" {
            return Err(invalid(
                format!("experiment {}", new.experiment_id),
                "runs can only be created in an active experiment: restore it first",
            ));
        }
        let location: String = column(&row, "artifact_location")?;
        let artifact_uri = format!("{}/{run_id}/artifacts", location.trim_end_matches('/'));
        let start_time = new.start_time.unwrap_or(now_ms);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO mlflow_runs ({RUN_COLUMNS}) \
             VALUES ($1, $2, $3, $4, 'RUNNING', $5, NULL, 'active', $6)"
        )))
        .bind(&run_id)
        .bind(exp_id)
        .bind(&run_name)
        .bind(&new.user_id)
        .bind(start_time)
        .bind(&artifact_uri)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        let mut tags: Vec<KeyValue> = new
            .tags
            .iter()
            .filter(|t| t.key != "mlflow.runName")
            .cloned()
            .collect();
        tags.push(KeyValue::new("mlflow.runName", run_name.clone()));
        upsert_tags(self.backend, &mut tx, &run_id, &tags, &op()).await?;
        tx.commit().await.map_err(StoreError::query(op()))?;
        self.get_tracking_run(&run_id).await
    }

    /// A run with its latest metrics, params and tags.
    pub async fn get_tracking_run(&self, run_id: &str) -> Result<TrackingRun, StoreError> {
        let op = || format!("looking up tracking run {run_id}");
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM mlflow_runs WHERE run_uuid = $1"
        )))
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(op()))?
        .ok_or_else(|| run_not_found(run_id))?;
        let info = run_info_from_row(&row)?;
        let mut runs = self.hydrate_runs(vec![info]).await?;
        runs.pop().ok_or_else(|| run_not_found(run_id))
    }

    /// Changes status, end time and name; renaming also sets the `mlflow.runName` tag.
    pub async fn update_tracking_run(
        &self,
        run_id: &str,
        update: &TrackingRunUpdate,
    ) -> Result<TrackingRunInfo, StoreError> {
        if let Some(status) = &update.status {
            validate_status(status)?;
        }
        if let Some(name) = &update.run_name {
            validate_value("run name", name, name, limits::NAME_CHARS)?;
        }
        let op = || format!("updating tracking run {run_id}");
        let mut tx = self.begin_write(&op()).await?;
        active_run_experiment(&mut *tx, run_id).await?;
        sqlx::query(
            "UPDATE mlflow_runs SET status = COALESCE($1, status), \
             end_time = COALESCE($2, end_time), run_name = COALESCE($3, run_name) \
             WHERE run_uuid = $4",
        )
        .bind(update.status.as_deref())
        .bind(update.end_time)
        .bind(update.run_name.as_deref().filter(|n| !n.is_empty()))
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        if let Some(name) = update.run_name.as_deref().filter(|n| !n.is_empty()) {
            upsert_tags(
                self.backend,
                &mut tx,
                run_id,
                &[KeyValue::new("mlflow.runName", name)],
                &op(),
            )
            .await?;
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM mlflow_runs WHERE run_uuid = $1"
        )))
        .bind(run_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        let info = run_info_from_row(&row)?;
        tx.commit().await.map_err(StoreError::query(op()))?;
        Ok(info)
    }

    /// Soft-deletes (or restores) a run, as MLflow does: it stays, marked `deleted`.
    pub async fn set_tracking_run_deleted(
        &self,
        run_id: &str,
        deleted: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let op = || format!("deleting or restoring tracking run {run_id}");
        let done = sqlx::query(
            "UPDATE mlflow_runs SET lifecycle_stage = $1, deleted_time = $2 WHERE run_uuid = $3",
        )
        .bind(if deleted { "deleted" } else { "active" })
        .bind(deleted.then_some(now_ms))
        .bind(run_id)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(op()))?;
        if done.rows_affected() == 0 {
            return Err(run_not_found(run_id));
        }
        Ok(())
    }

    /// Logs metrics, params and tags in one transaction: all of them or, on any error,
    /// none. Params are immutable: logging another value for a logged key fails; the same
    /// value again is accepted. The same metric point logged twice is kept once.
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[MetricPoint],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<(), StoreError> {
        if self.writer.is_some() {
            return self
                .log_batch_owned(run_id, metrics.to_vec(), params.to_vec(), tags.to_vec())
                .await;
        }
        validate_batch(metrics, params, tags)?;
        self.log_batch_checked(run_id, metrics, params, tags).await
    }

    /// [`Store::log_batch`] for a caller that owns the batch (no copy on SQLite).
    pub async fn log_batch_owned(
        &self,
        run_id: &str,
        metrics: Vec<MetricPoint>,
        params: Vec<KeyValue>,
        tags: Vec<KeyValue>,
    ) -> Result<(), StoreError> {
        validate_batch(&metrics, &params, &tags)?;
        match &self.writer {
            // SQLite: this process's one writer thread takes the batch and group-commits it
            // with the others that arrive meanwhile.
            Some(writer) if !(metrics.is_empty() && params.is_empty() && tags.is_empty()) => {
                writer
                    .write(crate::writer::Batch {
                        run_id: run_id.to_owned(),
                        metrics,
                        params,
                        tags,
                    })
                    .await
            }
            _ => {
                self.log_batch_checked(run_id, &metrics, &params, &tags)
                    .await
            }
        }
    }

    async fn log_batch_checked(
        &self,
        run_id: &str,
        metrics: &[MetricPoint],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<(), StoreError> {
        if metrics.is_empty() && params.is_empty() && tags.is_empty() {
            // Still tell the caller about an unknown run.
            return self.tracking_run_exists(run_id).await;
        }
        self.try_log_batch(run_id, metrics, params, tags).await
    }

    async fn try_log_batch(
        &self,
        run_id: &str,
        metrics: &[MetricPoint],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<(), StoreError> {
        let op = || format!("logging to tracking run {run_id}");
        let mut tx = self.begin_write(&op()).await?;
        active_run_experiment(&mut *tx, run_id).await?;

        if !params.is_empty() {
            let mut unique: Vec<&KeyValue> = Vec::with_capacity(params.len());
            let mut seen = HashSet::new();
            for p in params {
                if seen.insert(p.key.as_str()) {
                    unique.push(p);
                }
            }
            let sql = format!(
                "SELECT key, value FROM mlflow_params WHERE run_uuid = $1 AND key IN {}",
                placeholders(2, unique.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(run_id);
            for p in &unique {
                q = q.bind(&p.key);
            }
            let existing = q
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?;
            let mut logged: HashMap<String, String> = HashMap::new();
            for r in &existing {
                logged.insert(column(r, "key")?, column(r, "value")?);
            }
            for p in &unique {
                if let Some(old) = logged.get(&p.key)
                    && *old != p.value
                {
                    return Err(param_changed(run_id, p, old));
                }
            }
            let new: Vec<&&KeyValue> = unique
                .iter()
                .filter(|p| !logged.contains_key(&p.key))
                .collect();
            let mut inserted = 0;
            for chunk in new.chunks(ROWS_PER_INSERT) {
                let sql = format!(
                    "INSERT INTO mlflow_params (run_uuid, key, value) {} ON CONFLICT DO NOTHING",
                    values_rows(self.backend, chunk.len(), 3)
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for p in chunk {
                    q = q.bind(run_id).bind(&p.key).bind(&p.value);
                }
                inserted += q
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query(op()))?
                    .rows_affected();
            }
            // A concurrent transaction logged some of these keys between the check and the
            // insert (PostgreSQL's read committed): its values must be the same.
            if inserted < new.len() as u64 {
                for p in &new {
                    let row = sqlx::query(
                        "SELECT value FROM mlflow_params WHERE run_uuid = $1 AND key = $2",
                    )
                    .bind(run_id)
                    .bind(&p.key)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(StoreError::query(op()))?;
                    let logged: String = column(&row, "value")?;
                    if logged != p.value {
                        return Err(param_changed(run_id, p, &logged));
                    }
                }
            }
        }

        if !tags.is_empty() {
            upsert_tags(self.backend, &mut tx, run_id, tags, &op()).await?;
            if let Some(name) = tags.iter().rev().find(|t| t.key == "mlflow.runName") {
                sqlx::query("UPDATE mlflow_runs SET run_name = $1 WHERE run_uuid = $2")
                    .bind(&name.value)
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query(op()))?;
            }
        }

        if !metrics.is_empty() {
            insert_metrics(self.backend, &mut tx, run_id, metrics, &op()).await?;
        }
        tx.commit().await.map_err(StoreError::query(op()))
    }

    async fn tracking_run_exists(&self, run_id: &str) -> Result<(), StoreError> {
        let row = sqlx::query("SELECT run_uuid FROM mlflow_runs WHERE run_uuid = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(format!(
                "looking up tracking run {run_id}"
            )))?;
        row.map(|_| ()).ok_or_else(|| run_not_found(run_id))
    }

    /// Removes a tag of a run (not found if it has none by that key).
    pub async fn delete_tracking_run_tag(&self, run_id: &str, key: &str) -> Result<(), StoreError> {
        let op = || format!("deleting tag {key} of tracking run {run_id}");
        let mut tx = self.begin_write(&op()).await?;
        active_run_experiment(&mut *tx, run_id).await?;
        let done = sqlx::query("DELETE FROM mlflow_tags WHERE run_uuid = $1 AND key = $2")
            .bind(run_id)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "tracking run",
                id: format!("{run_id} (tag '{key}')"),
            });
        }
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Every point of a metric, by step then timestamp; `max_results` None returns all.
    pub async fn metric_history(
        &self,
        run_id: &str,
        key: &str,
        max_results: Option<usize>,
        page_token: Option<&str>,
    ) -> Result<Page<MetricPoint>, StoreError> {
        self.tracking_run_exists(run_id).await?;
        let hash = query_hash(&["history", run_id, key]);
        let offset = decode_token(page_token, hash)?;
        if max_results == Some(0) {
            return Err(invalid(
                "max_results",
                "give a positive number, or none for all points",
            ));
        }
        let limit = max_results.map_or(i64::MAX, |m| i64::try_from(m).unwrap_or(i64::MAX));
        let op = || format!("reading history of metric {key} of tracking run {run_id}");
        let offset_sql = i64::try_from(offset).unwrap_or(i64::MAX);
        let points: Vec<(i64, i64, f64, i64)> = match &self.bulk {
            Some(bulk) => {
                let (run, k) = (run_id.to_owned(), key.to_owned());
                let (limit, offset) = (limit.saturating_add(1), offset_sql);
                bulk.read(op(), move |c| {
                    let mut st = c.prepare(
                        "SELECT step, timestamp_ms, value, is_nan FROM mlflow_metrics \
                         WHERE run_uuid = ?1 AND key = ?2 ORDER BY step, timestamp_ms, value \
                         LIMIT ?3 OFFSET ?4",
                    )?;
                    let rows = st.query_map((run, k, limit, offset), |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?;
                    rows.collect()
                })
                .await?
            }
            None => {
                const SQL: &str = "SELECT step, timestamp_ms, value, is_nan FROM mlflow_metrics \
                     WHERE run_uuid = $1 AND key = $2 ORDER BY step, timestamp_ms, value \
                     LIMIT $3 OFFSET $4";
                let limit = limit.saturating_add(1);
                match &self.bulk_pg {
                    Some(pg) => sqlx::query_as(SQL)
                        .bind(run_id)
                        .bind(key)
                        .bind(limit)
                        .bind(offset_sql)
                        .fetch_all(pg)
                        .await
                        .map_err(StoreError::query(op()))?,
                    None => sqlx::query_as(SQL)
                        .bind(run_id)
                        .bind(key)
                        .bind(limit)
                        .bind(offset_sql)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(StoreError::query(op()))?,
                }
            }
        };
        let mut items = Vec::with_capacity(points.len());
        for (step, timestamp, value, is_nan) in points {
            items.push(MetricPoint {
                key: key.to_owned(),
                value: metric_value(value, is_nan),
                timestamp,
                step,
            });
        }
        let next = match max_results {
            Some(m) if items.len() > m => {
                items.truncate(m);
                Some(encode_token(offset + m, hash))
            }
            _ => None,
        };
        Ok(Page {
            items,
            next_page_token: next,
        })
    }

    /// MLflow's `runs/search`: runs of the given experiments that match every condition of
    /// the filter, ordered by `order_by` then newest first, then by run id.
    ///
    /// One query reads the candidate runs with the metric, param and tag values the filter and
    /// the ordering name (a LEFT JOIN per key), already narrowed by every condition SQL decides
    /// exactly as the evaluator does; the evaluator then checks all conditions, sorts and pages.
    pub async fn search_tracking_runs(
        &self,
        query: &SearchQuery,
    ) -> Result<Page<TrackingRun>, StoreError> {
        let conditions = parse_filter(&query.filter, &RUN_ATTRIBUTES)?;
        let orders = query
            .order_by
            .iter()
            .map(|o| parse_order_by(o, &RUN_ATTRIBUTES))
            .collect::<Result<Vec<_>, _>>()?;
        let hash = search_hash("runs", query);
        // Validate max_results and the token before any work.
        page_bounds(query, hash, limits::SEARCH_DEFAULT, 0)?;
        let mut ids = Vec::with_capacity(query.experiment_ids.len());
        for e in &query.experiment_ids {
            ids.push(
                e.parse::<i64>()
                    .map_err(|_| invalid(format!("experiment id '{e}'"), "expected a number"))?,
            );
        }
        if ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_page_token: None,
            });
        }
        let mut wanted: Vec<SearchKey> = Vec::new();
        for key in conditions
            .iter()
            .map(|c| &c.key)
            .chain(orders.iter().map(|o| &o.key))
        {
            if !matches!(key, SearchKey::Attribute(_)) && !wanted.contains(key) {
                wanted.push(key.clone());
            }
        }
        // Only the attributes the search looks at are read for every candidate; the page's
        // runs are read in full afterwards.
        let mut attributes = vec!["run_uuid", "start_time"];
        for key in conditions
            .iter()
            .map(|c| &c.key)
            .chain(orders.iter().map(|o| &o.key))
        {
            if let SearchKey::Attribute(a) = key {
                let column = if a == "run_id" {
                    "run_uuid"
                } else {
                    a.as_str()
                };
                if !attributes.contains(&column) {
                    attributes.push(column);
                }
            }
        }
        let sql = SearchSql::new(
            self.backend,
            &ids,
            query.view,
            &conditions,
            &wanted,
            &attributes,
        );
        let rows = sql
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql.sql.as_str())))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("searching tracking runs"))?;
        let mut candidates: Vec<(TrackingRunInfo, Vec<Option<Stored>>)> =
            Vec::with_capacity(rows.len());
        for r in &rows {
            let info = partial_run_info(r, &attributes)?;
            let mut values = Vec::with_capacity(wanted.len());
            for (i, key) in wanted.iter().enumerate() {
                let v = if matches!(key, SearchKey::Metric(_)) {
                    let value: Option<f64> = column(r, &format!("v{i}"))?;
                    let is_nan: Option<i64> = column(r, &format!("n{i}"))?;
                    value.map(|v| Stored::Num(metric_value(v, is_nan.unwrap_or(0))))
                } else {
                    column::<Option<String>>(r, &format!("v{i}"))?.map(Stored::Str)
                };
                values.push(v);
            }
            candidates.push((info, values));
        }
        /// A candidate's value for a key: an attribute, or the joined value of a wanted key.
        fn field<'a>(
            cand: &'a (TrackingRunInfo, Vec<Option<Stored>>),
            wanted: &[SearchKey],
            key: &SearchKey,
        ) -> Option<FieldValue<'a>> {
            match key {
                SearchKey::Attribute(_) => attribute_value(&cand.0, key),
                _ => {
                    let i = wanted.iter().position(|w| w == key)?;
                    cand.1[i].as_ref().map(Stored::as_field)
                }
            }
        }
        candidates.retain(|cand| {
            conditions
                .iter()
                .all(|c| c.matches(field(cand, &wanted, &c.key)))
        });
        candidates.sort_by(|a, b| {
            for o in &orders {
                let ord = compare_values(
                    field(a, &wanted, &o.key),
                    field(b, &wanted, &o.key),
                    o.ascending,
                );
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            b.0.start_time
                .cmp(&a.0.start_time)
                .then_with(|| a.0.run_id.cmp(&b.0.run_id))
        });
        let (start, end, next) =
            page_bounds(query, hash, limits::SEARCH_DEFAULT, candidates.len())?;
        let page: Vec<TrackingRunInfo> =
            candidates.drain(start..end).map(|(info, _)| info).collect();
        let page_ids: Vec<String> = page.into_iter().map(|info| info.run_id).collect();
        Ok(Page {
            items: self.hydrate_runs(self.run_infos(&page_ids).await?).await?,
            next_page_token: next,
        })
    }

    /// The infos of runs, in the order of `run_ids` (missing ones left out).
    async fn run_infos(&self, run_ids: &[String]) -> Result<Vec<TrackingRunInfo>, StoreError> {
        let mut found: HashMap<String, TrackingRunInfo> = HashMap::with_capacity(run_ids.len());
        for chunk in run_ids.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM mlflow_runs WHERE run_uuid IN {}",
                list(self.backend, 1, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for id in chunk {
                q = q.bind(id.as_str());
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::query("reading tracking runs"))?;
            for r in &rows {
                let info = run_info_from_row(r)?;
                found.insert(info.run_id.clone(), info);
            }
        }
        Ok(run_ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    /// Adds latest metrics, params and tags to run infos, keeping their order.
    async fn hydrate_runs(
        &self,
        infos: Vec<TrackingRunInfo>,
    ) -> Result<Vec<TrackingRun>, StoreError> {
        let mut metrics: HashMap<String, Vec<MetricPoint>> = HashMap::new();
        let mut params: HashMap<String, Vec<KeyValue>> = HashMap::new();
        let mut tags: HashMap<String, Vec<KeyValue>> = HashMap::new();
        let op = "reading metrics, params and tags of tracking runs";
        for chunk in infos.chunks(ROWS_PER_INSERT) {
            let ph = list(self.backend, 1, chunk.len());
            let queries = [
                format!(
                    "SELECT run_uuid, key, value, is_nan, timestamp_ms, step \
                     FROM mlflow_latest_metrics WHERE run_uuid IN {ph} ORDER BY key"
                ),
                format!(
                    "SELECT run_uuid, key, value FROM mlflow_params WHERE run_uuid IN {ph} ORDER BY key"
                ),
                format!(
                    "SELECT run_uuid, key, value FROM mlflow_tags WHERE run_uuid IN {ph} ORDER BY key"
                ),
            ];
            for (i, sql) in queries.iter().enumerate() {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for info in chunk {
                    q = q.bind(&info.run_id);
                }
                let rows = q
                    .fetch_all(&self.pool)
                    .await
                    .map_err(StoreError::query(op))?;
                for r in &rows {
                    let run: String = column(r, "run_uuid")?;
                    let key: String = column(r, "key")?;
                    match i {
                        0 => metrics.entry(run).or_default().push(MetricPoint {
                            key,
                            value: metric_value(column(r, "value")?, column(r, "is_nan")?),
                            timestamp: column(r, "timestamp_ms")?,
                            step: column(r, "step")?,
                        }),
                        1 => params
                            .entry(run)
                            .or_default()
                            .push(KeyValue::new(key, column::<String>(r, "value")?)),
                        _ => tags
                            .entry(run)
                            .or_default()
                            .push(KeyValue::new(key, column::<String>(r, "value")?)),
                    }
                }
            }
        }
        // Sorted bytewise in Rust: PostgreSQL's collation may order keys differently.
        Ok(infos
            .into_iter()
            .map(|info| {
                let mut m = metrics.remove(&info.run_id).unwrap_or_default();
                let mut p = params.remove(&info.run_id).unwrap_or_default();
                let mut t = tags.remove(&info.run_id).unwrap_or_default();
                m.sort_by(|a, b| a.key.cmp(&b.key));
                p.sort_by(|a, b| a.key.cmp(&b.key));
                t.sort_by(|a, b| a.key.cmp(&b.key));
                TrackingRun {
                    info,
                    metrics: m,
                    params: p,
                    tags: t,
                }
            })
            .collect())
    }
}

/// A value bound into a [`SearchSql`].
enum Bind {
    I64(i64),
    F64(f64),
    Str(String),
}

/// The query of a run search: runs of the experiments in the view, a LEFT JOIN per wanted
/// metric, param or tag key (columns `v<i>`, and `n<i>` = is_nan for metrics), narrowed by the
/// conditions SQL decides exactly as the evaluator does (numeric comparisons of latest
/// metrics, equality of params, tags and string attributes).
struct SearchSql {
    sql: String,
    binds: Vec<Bind>,
}

impl SearchSql {
    fn new(
        backend: Backend,
        experiment_ids: &[i64],
        view: ViewType,
        conditions: &[Condition],
        wanted: &[SearchKey],
        attributes: &[&str],
    ) -> SearchSql {
        let mut next = 1;
        let mut ph = || {
            let p = match backend {
                Backend::Sqlite => "?".to_owned(),
                Backend::Postgres => format!("${next}"),
            };
            next += 1;
            p
        };
        let mut binds = Vec::new();
        let mut columns = String::new();
        let mut joins = String::new();
        for (i, key) in wanted.iter().enumerate() {
            let (table, name) = match key {
                SearchKey::Metric(k) => ("mlflow_latest_metrics", k),
                SearchKey::Param(k) => ("mlflow_params", k),
                SearchKey::Tag(k) => ("mlflow_tags", k),
                SearchKey::Attribute(_) => continue,
            };
            let _ = write!(columns, ", j{i}.value AS v{i}");
            if matches!(key, SearchKey::Metric(_)) {
                let _ = write!(columns, ", j{i}.is_nan AS n{i}");
            }
            let p = ph();
            binds.push(Bind::Str(name.clone()));
            let _ = write!(
                joins,
                " LEFT JOIN {table} j{i} ON j{i}.run_uuid = r.run_uuid AND j{i}.key = {p}"
            );
        }
        let ids: Vec<String> = experiment_ids
            .iter()
            .map(|id| {
                binds.push(Bind::I64(*id));
                ph()
            })
            .collect();
        let mut filter = format!("r.experiment_id IN ({})", ids.join(", "));
        match view {
            ViewType::ActiveOnly => filter.push_str(" AND r.lifecycle_stage = 'active'"),
            ViewType::DeletedOnly => filter.push_str(" AND r.lifecycle_stage = 'deleted'"),
            ViewType::All => {}
        }
        for c in conditions {
            let cmp = match c.op {
                Comparator::Eq => "=",
                Comparator::Ne => "<>",
                Comparator::Lt => "<",
                Comparator::Le => "<=",
                Comparator::Gt => ">",
                Comparator::Ge => ">=",
                _ => continue,
            };
            let joined = wanted.iter().position(|w| *w == c.key);
            match (&c.key, &c.value, joined) {
                (SearchKey::Metric(_), Literal::Number(x), Some(i)) => {
                    let p = ph();
                    binds.push(Bind::F64(*x));
                    let _ = write!(filter, " AND j{i}.is_nan = 0 AND j{i}.value {cmp} {p}");
                }
                (SearchKey::Param(_) | SearchKey::Tag(_), Literal::Str(x), Some(i))
                    if matches!(c.op, Comparator::Eq | Comparator::Ne) =>
                {
                    let p = ph();
                    binds.push(Bind::Str(x.clone()));
                    let _ = write!(filter, " AND j{i}.value {cmp} {p}");
                }
                (SearchKey::Attribute(a), Literal::Str(x), _) if c.op == Comparator::Eq => {
                    let column = match a.as_str() {
                        "run_id" => "run_uuid",
                        "run_name" => "run_name",
                        "status" => "status",
                        "user_id" => "user_id",
                        _ => continue,
                    };
                    let p = ph();
                    binds.push(Bind::Str(x.clone()));
                    let _ = write!(filter, " AND r.{column} = {p}");
                }
                _ => {}
            }
        }
        let run_columns: Vec<String> = attributes.iter().map(|c| format!("r.{c}")).collect();
        SearchSql {
            sql: format!(
                "SELECT {}{columns} FROM mlflow_runs r{joins} WHERE {filter}",
                run_columns.join(", ")
            ),
            binds,
        }
    }

    fn bind<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
        for b in &self.binds {
            q = match b {
                Bind::I64(v) => q.bind(*v),
                Bind::F64(v) => q.bind(*v),
                Bind::Str(v) => q.bind(v.as_str()),
            };
        }
        q
    }
}

/// Keeps the items every condition matches and orders them by `orders`, then by `tiebreak`:
/// the searches that read whole rows and decide in Rust (experiments, logged models).
pub(crate) fn filter_and_order<T>(
    items: &mut Vec<T>,
    conditions: &[Condition],
    orders: &[search::OrderBy],
    field: impl Fn(&T, &SearchKey) -> Option<Stored>,
    tiebreak: impl Fn(&T, &T) -> std::cmp::Ordering,
) {
    items.retain(|item| {
        conditions
            .iter()
            .all(|c| c.matches(field(item, &c.key).as_ref().map(Stored::as_field)))
    });
    items.sort_by(|a, b| {
        for o in orders {
            let (va, vb) = (field(a, &o.key), field(b, &o.key));
            let ord = compare_values(
                va.as_ref().map(Stored::as_field),
                vb.as_ref().map(Stored::as_field),
                o.ascending,
            );
            if ord != std::cmp::Ordering::Equal {
                return ord;
            }
        }
        tiebreak(a, b)
    });
}

/// A value read for a search, owned.
pub(crate) enum Stored {
    Num(f64),
    Str(String),
}

impl Stored {
    pub(crate) fn as_field(&self) -> FieldValue<'_> {
        match self {
            Stored::Num(n) => FieldValue::Num(*n),
            Stored::Str(s) => FieldValue::Str(s),
        }
    }
}

fn attribute_value<'a>(info: &'a TrackingRunInfo, key: &SearchKey) -> Option<FieldValue<'a>> {
    let SearchKey::Attribute(a) = key else {
        return None;
    };
    Some(match a.as_str() {
        "run_id" => FieldValue::Str(&info.run_id),
        "run_name" => FieldValue::Str(&info.run_name),
        "status" => FieldValue::Str(&info.status),
        "user_id" => FieldValue::Str(&info.user_id),
        "artifact_uri" => FieldValue::Str(&info.artifact_uri),
        "lifecycle_stage" => FieldValue::Str(&info.lifecycle_stage),
        "start_time" => FieldValue::Num(info.start_time? as f64),
        "end_time" => FieldValue::Num(info.end_time? as f64),
        _ => return None,
    })
}

async fn upsert_tags(
    backend: Backend,
    tx: &mut sqlx::Transaction<'static, Any>,
    run_id: &str,
    tags: &[KeyValue],
    op: &str,
) -> Result<(), StoreError> {
    // One row per key, the last value winning: PostgreSQL refuses to update a row twice in
    // one statement.
    let mut last: HashMap<&str, &str> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for t in tags {
        if last.insert(&t.key, &t.value).is_none() {
            order.push(&t.key);
        }
    }
    for chunk in order.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO mlflow_tags (run_uuid, key, value) {} \
             ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value",
            values_rows(backend, chunk.len(), 3)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for key in chunk {
            q = q
                .bind(run_id)
                .bind(*key)
                .bind(last.get(key).copied().unwrap_or_default());
        }
        q.execute(&mut **tx).await.map_err(StoreError::query(op))?;
    }
    Ok(())
}

/// A metric point as stored: NaN as value 0 with `is_nan` 1.
pub(crate) fn stored(m: &MetricPoint) -> (f64, i64) {
    if m.value.is_nan() {
        (0.0, 1)
    } else {
        (m.value, 0)
    }
}

/// The batch's own latest point per key (step, then timestamp, then value), by key.
pub(crate) fn latest_points(metrics: &[MetricPoint]) -> Vec<&MetricPoint> {
    let mut latest: HashMap<&str, &MetricPoint> = HashMap::new();
    let later = |a: &MetricPoint, b: &MetricPoint| {
        (a.step, a.timestamp)
            .cmp(&(b.step, b.timestamp))
            .then_with(|| stored(a).0.total_cmp(&stored(b).0))
            == std::cmp::Ordering::Greater
    };
    for m in metrics {
        match latest.get(m.key.as_str()) {
            Some(cur) if !later(m, cur) => {}
            _ => {
                latest.insert(&m.key, m);
            }
        }
    }
    let mut points: Vec<&MetricPoint> = latest.into_values().collect();
    points.sort_by(|a, b| a.key.cmp(&b.key));
    points
}

/// The end of the upsert of `mlflow_latest_metrics`: it keeps whichever of the stored and
/// the new point is later (step, then timestamp, then value).
pub(crate) const LATEST_CONFLICT: &str = "ON CONFLICT (run_uuid, key) DO UPDATE SET \
     step = excluded.step, timestamp_ms = excluded.timestamp_ms, value = excluded.value, \
     is_nan = excluded.is_nan \
     WHERE excluded.step > mlflow_latest_metrics.step \
     OR (excluded.step = mlflow_latest_metrics.step \
         AND (excluded.timestamp_ms > mlflow_latest_metrics.timestamp_ms \
              OR (excluded.timestamp_ms = mlflow_latest_metrics.timestamp_ms \
                  AND excluded.value > mlflow_latest_metrics.value)))";

async fn insert_metrics(
    backend: Backend,
    tx: &mut sqlx::Transaction<'static, Any>,
    run_id: &str,
    metrics: &[MetricPoint],
    op: &str,
) -> Result<(), StoreError> {
    for chunk in metrics.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO mlflow_metrics (run_uuid, key, step, timestamp_ms, value, is_nan) {} \
             ON CONFLICT DO NOTHING",
            values_rows(backend, chunk.len(), 6)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for m in chunk {
            let (value, is_nan) = stored(m);
            q = q
                .bind(run_id)
                .bind(&m.key)
                .bind(m.step)
                .bind(m.timestamp)
                .bind(value)
                .bind(is_nan);
        }
        q.execute(&mut **tx).await.map_err(StoreError::query(op))?;
    }
    let points = latest_points(metrics);
    for chunk in points.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO mlflow_latest_metrics (run_uuid, key, step, timestamp_ms, value, is_nan) \
             {} {LATEST_CONFLICT}",
            values_rows(backend, chunk.len(), 6)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for m in chunk {
            let (value, is_nan) = stored(m);
            q = q
                .bind(run_id)
                .bind(&m.key)
                .bind(m.step)
                .bind(m.timestamp)
                .bind(value)
                .bind(is_nan);
        }
        q.execute(&mut **tx).await.map_err(StoreError::query(op))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_mlflow_rules() {
        for ok in ["acc", "val/loss", "a b", "m-1.x", "mlflow.runName", "a:b"] {
            validate_key("metric", ok).unwrap();
        }
        for bad in [
            "", "/abs", "a/../b", "..", "a//b", "a/", "./a", "a\\b", "a\0b", "x\"y",
        ] {
            assert!(validate_key("metric", bad).is_err(), "{bad:?}");
        }
        assert!(validate_key("metric", &"a".repeat(251)).is_err());
    }

    #[test]
    fn page_tokens_belong_to_their_query() {
        let t = encode_token(42, 7);
        assert_eq!(decode_token(Some(&t), 7).unwrap(), 42);
        assert!(decode_token(Some(&t), 8).is_err());
        assert!(decode_token(Some("zz"), 7).is_err());
        assert_eq!(decode_token(None, 7).unwrap(), 0);
        assert_eq!(decode_token(Some(""), 7).unwrap(), 0);
    }

    #[test]
    fn batch_limits() {
        let m = |i: usize| MetricPoint {
            key: format!("m{i}"),
            value: 1.0,
            timestamp: 1,
            step: 0,
        };
        let metrics: Vec<_> = (0..1001).map(m).collect();
        assert!(validate_batch(&metrics, &[], &[]).is_err());
        assert!(validate_batch(&metrics[..1000], &[], &[]).is_ok());
        let params: Vec<_> = (0..101)
            .map(|i| KeyValue::new(format!("p{i}"), "v"))
            .collect();
        assert!(validate_batch(&[], &params, &[]).is_err());
        let tags: Vec<_> = (0..50)
            .map(|i| KeyValue::new(format!("t{i}"), "v"))
            .collect();
        assert!(validate_batch(&metrics[..960], &[], &tags).is_err());
        assert!(validate_batch(&[], &[KeyValue::new("p", "x".repeat(6001))], &[]).is_err());
        assert!(validate_batch(&[], &[], &[KeyValue::new("t", "x".repeat(8001))]).is_err());
        assert!(
            validate_batch(
                &[],
                &[KeyValue::new("p", "1"), KeyValue::new("p", "2")],
                &[]
            )
            .is_err()
        );
    }

    #[test]
    fn placeholders_number_from_start() {
        assert_eq!(placeholders(3, 2), "($3, $4)");
        assert_eq!(
            values_rows(Backend::Postgres, 2, 2),
            "VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(values_rows(Backend::Sqlite, 2, 2), "VALUES (?, ?), (?, ?)");
    }
}
