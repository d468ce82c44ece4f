//! The monitoring side of the prediction log: every logged prediction is folded into the
//! aggregate of its one-minute bucket ([`gantry_monitor::aggregate`]) in the transaction that
//! logs it, so monitors read counts, never the log.
//!
//! One [`LogAggregator`] belongs to one writer (the prediction log's task, or a bulk loader);
//! it names its rows with an id of its own, so writers never overwrite each other's buckets and
//! a restarted server simply starts new rows (what the old process committed stays counted,
//! exactly once, because it was committed with the predictions). A bucket this writer counted
//! before and no longer holds in memory is read back before it is changed.
//!
//! Drift counts are binned against the reference profile of the deployment's primary version
//! at the time of logging (canary traffic is compared with the same reference, as the monitor
//! always did); the reference's digest is part of the bucket's key.

use gantry_artifacts::ArtifactStore;
use gantry_ml::profile::Profile;
use gantry_monitor::aggregate::{Aggregate, BUCKET_MS, BUCKET_SAMPLE, BatchColumn, SplitMix};
use gantry_monitor::{Observation, Task};
use gantry_spec::deployment::DeploymentSpec;
use gantry_store::columns::ColumnValues;
use gantry_store::{
    BucketKey, BucketState, LogWriter, NewPrediction, PerformanceDelta, PerformanceKind,
    PredictionInputs, Store, StoreError,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest reference profile read.
const MAX_PROFILE_BYTES: u64 = 64 << 20;
/// How long a deployment's reference is trusted before it is looked up again (a promotion
/// changes it).
const REFERENCE_TTL: Duration = Duration::from_secs(5);
/// Buckets kept in memory per writer (older ones are read back when a late record needs one).
const OPEN_BUCKETS: usize = 4096;

/// What a deployment's monitor compares with: the primary version's training profile, its
/// label column and task.
#[derive(Debug, Default)]
pub struct Reference {
    /// The profile's artifact digest; empty without one.
    pub digest: String,
    pub profile: Option<Profile>,
    pub label: Option<String>,
    pub task: Option<Task>,
}

/// Loads the reference of `model` version `version` (missing pieces are None, logged).
pub async fn load_reference(
    store: &Store,
    artifacts: &ArtifactStore,
    model: &str,
    version: i64,
) -> Result<Reference, StoreError> {
    let record = store.get_model_version(model, version).await?;
    let digest = gantry_engine::reference_profile_of(store, model, version).await;
    let profile: Option<Profile> = match &digest {
        Some(d) => match artifacts.read_bytes(d, MAX_PROFILE_BYTES).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| tracing::warn!("reference profile {d}: {e}"))
                .ok(),
            Err(e) => {
                tracing::warn!("reference profile {d}: {e}");
                None
            }
        },
        None => None,
    };
    let (label, task) = if record.flavor == "builtin" {
        match artifacts.materialize(&record.artifact_digest).await {
            Ok(path) => match gantry_ml::model::Model::load(&path) {
                Ok(m) => (Some(m.label.clone()), Some(m.task)),
                Err(_) => (None, None),
            },
            Err(_) => (None, None),
        }
    } else {
        (None, None)
    };
    Ok(Reference {
        digest: if profile.is_some() {
            digest.unwrap_or_default()
        } else {
            String::new()
        },
        profile,
        label,
        task,
    })
}

/// The bucket a time falls in.
pub fn bucket_of(ms: i64) -> i64 {
    ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// One observation per row of a logged prediction (a failed request is one observation);
/// `labels` by row, where feedback is known.
pub fn observations_of(p: &NewPrediction, labels: &[Option<Value>]) -> Vec<Observation> {
    let latency_ms = p.latency_us as f64 / 1000.0;
    if p.error.is_some() || p.rows <= 0 {
        return vec![Observation {
            request_id: p.request_id.clone(),
            timestamp_ms: p.created_at_ms,
            inputs: BTreeMap::new(),
            prediction: None,
            label: None,
            latency_ms,
            error: p.error.is_some(),
        }];
    }
    let rows = p.inputs.to_rows();
    let inputs = rows.as_array();
    let outputs = p.outputs.as_array();
    (0..p.rows as usize)
        .map(|i| Observation {
            request_id: p.request_id.clone(),
            timestamp_ms: p.created_at_ms,
            inputs: inputs
                .and_then(|a| a.get(i))
                .and_then(|r| r.as_object())
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            prediction: outputs.and_then(|a| a.get(i)).cloned(),
            label: labels.get(i).cloned().flatten(),
            latency_ms,
            error: false,
        })
        .collect()
}

/// Folds one logged prediction into `agg`; returns the rows that got a prediction.
/// Column records are counted column by column ([`Aggregate::add_batch`]), row records
/// observation by observation: the counts are the same.
fn fold_prediction(
    agg: &mut Aggregate,
    reference: &Reference,
    p: &NewPrediction,
    rng: &mut SplitMix,
) -> i64 {
    if let (PredictionInputs::Columns(columns), None) = (&p.inputs, &p.error)
        && p.rows > 0
    {
        type Lookup<'a> = Box<dyn Fn(usize) -> Value + 'a>;
        let values: Vec<Lookup<'_>> = columns
            .columns()
            .iter()
            .map(|c| Box::new(move |i| c.values.json(i)) as Lookup<'_>)
            .collect();
        let column = |name: &str| -> Option<BatchColumn<'_>> {
            let i = columns.columns().iter().position(|c| c.name == name)?;
            match &columns.columns()[i].values {
                ColumnValues::F64(v) => Some(BatchColumn::F64(v)),
                _ => values.get(i).map(|f| BatchColumn::Values(f.as_ref())),
            }
        };
        let empty = Vec::new();
        let outputs = p.outputs.as_array().unwrap_or(&empty);
        let rows = columns.rows();
        agg.add_batch(
            reference.profile.as_ref(),
            reference.label.as_deref(),
            rows,
            &column,
            !columns.columns().is_empty(),
            outputs,
            p.latency_us as f64 / 1000.0,
            BUCKET_SAMPLE,
            rng,
        );
        return outputs.iter().take(rows).count() as i64;
    }
    let mut predicted = 0;
    for o in observations_of(p, &[]) {
        if o.prediction.is_some() {
            predicted += 1;
        }
        agg.add(
            reference.profile.as_ref(),
            reference.label.as_deref(),
            &o,
            BUCKET_SAMPLE,
            rng,
        );
    }
    predicted
}

/// What a batch adds, staged until its transaction commits.
pub struct Staged {
    pub buckets: Vec<BucketState>,
    pub deltas: Vec<PerformanceDelta>,
    next: Vec<(BucketKey, i64, Aggregate)>,
}

/// Performance counts of predictions made, by (deployment, bucket, role, version).
type Predicted = BTreeMap<(String, i64, String, i64), i64>;

/// Folds logged predictions into bucket aggregates (see the module docs).
///
/// Two ways to use it: [`LogAggregator::insert`] (or `stage` + `commit`) writes the buckets
/// in the transaction that logs the predictions — for bulk loaders; the server's log writer
/// instead [`LogAggregator::fold`]s committed predictions in memory and
/// [`LogAggregator::checkpoint`]s the changed buckets every second (see `predlog.rs`).
pub struct LogAggregator {
    store: Store,
    artifacts: ArtifactStore,
    writer: String,
    references: HashMap<String, (Instant, Arc<Reference>)>,
    open: HashMap<BucketKey, (i64, Aggregate)>,
    rng: SplitMix,
    /// Buckets folded into since the last checkpoint.
    dirty: BTreeSet<BucketKey>,
    /// Predictions made since the last checkpoint.
    predicted: Predicted,
}

impl LogAggregator {
    pub fn new(store: Store, artifacts: ArtifactStore) -> LogAggregator {
        LogAggregator::for_writer(store, artifacts, gantry_store::new_id("w-"))
    }

    /// An aggregator writing the buckets of writer `writer` (a writer whose records it takes
    /// over, or its own).
    pub fn for_writer(store: Store, artifacts: ArtifactStore, writer: String) -> LogAggregator {
        let seed = writer
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
        LogAggregator {
            store,
            artifacts,
            writer,
            references: HashMap::new(),
            open: HashMap::new(),
            rng: SplitMix::new(seed),
            dirty: BTreeSet::new(),
            predicted: BTreeMap::new(),
        }
    }

    /// The writer id its buckets (and, for the log writer, its records) carry.
    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// The deployment's current reference (cached for a few seconds).
    async fn reference(&mut self, deployment: &str) -> Arc<Reference> {
        if let Some((at, r)) = self.references.get(deployment)
            && at.elapsed() < REFERENCE_TTL
        {
            return Arc::clone(r);
        }
        let loaded = match self.store.get_deployment(deployment).await {
            Ok(record) => match serde_json::from_value::<DeploymentSpec>(record.spec) {
                Ok(spec) => load_reference(
                    &self.store,
                    &self.artifacts,
                    &spec.model.model,
                    spec.model.version,
                )
                .await
                .unwrap_or_default(),
                Err(_) => Reference::default(),
            },
            Err(_) => Reference::default(),
        };
        let r = Arc::new(loaded);
        self.references
            .insert(deployment.to_owned(), (Instant::now(), Arc::clone(&r)));
        r
    }

    async fn key_of(&mut self, p: &NewPrediction) -> (BucketKey, Arc<Reference>) {
        let reference = self.reference(&p.deployment).await;
        let key = BucketKey {
            deployment: p.deployment.clone(),
            bucket_ms: bucket_of(p.created_at_ms),
            span_ms: BUCKET_MS,
            role: p.role.clone(),
            version: p.version,
            reference: reference.digest.clone(),
            writer: self.writer.clone(),
        };
        (key, reference)
    }

    /// The aggregates and performance counts `batch` adds; nothing changes here until
    /// [`LogAggregator::commit`] is called with the result after the batch committed.
    pub async fn stage(&mut self, batch: &[NewPrediction]) -> Result<Staged, StoreError> {
        let mut touched: BTreeMap<BucketKey, (i64, Aggregate)> = BTreeMap::new();
        let mut predicted: Predicted = BTreeMap::new();
        let now = gantry_engine::now_ms();
        for p in batch {
            let (key, reference) = self.key_of(p).await;
            if !touched.contains_key(&key) {
                let current = match self.open.get(&key) {
                    Some(c) => c.clone(),
                    None => self.read_back(&key).await?,
                };
                touched.insert(key.clone(), current);
            }
            let Some((_, agg)) = touched.get_mut(&key) else {
                continue;
            };
            count_into(
                agg,
                &mut predicted,
                &reference,
                p,
                key.bucket_ms,
                &mut self.rng,
            );
        }
        let mut buckets = Vec::with_capacity(touched.len());
        let mut next = Vec::with_capacity(touched.len());
        for (key, (seq, agg)) in touched {
            buckets.push(bucket_state(&key, seq + 1, &agg, now)?);
            next.push((key, seq + 1, agg));
        }
        Ok(Staged {
            buckets,
            deltas: deltas_of(predicted),
            next,
        })
    }

    /// Keeps the staged states once their transaction committed.
    pub fn commit(&mut self, staged: Staged) {
        self.evict();
        for (key, seq, agg) in staged.next {
            self.open.insert(key, (seq, agg));
        }
    }

    /// Drops the oldest clean buckets once more than [`OPEN_BUCKETS`] are held (a late
    /// record for one reads it back from the store).
    fn evict(&mut self) {
        if self.open.len() <= OPEN_BUCKETS {
            return;
        }
        let mut keys: Vec<BucketKey> = self
            .open
            .keys()
            .filter(|k| !self.dirty.contains(*k))
            .cloned()
            .collect();
        keys.sort_by_key(|k| k.bucket_ms);
        let excess = self.open.len().saturating_sub(OPEN_BUCKETS / 2);
        for k in keys.iter().take(excess) {
            self.open.remove(k);
        }
    }

    /// Counts committed predictions into the buckets held in memory; they reach the store
    /// with the next [`LogAggregator::checkpoint`].
    pub async fn fold(&mut self, batch: &[NewPrediction]) -> Result<(), StoreError> {
        for p in batch {
            let (key, reference) = self.key_of(p).await;
            if !self.open.contains_key(&key) {
                let current = self.read_back(&key).await?;
                self.open.insert(key.clone(), current);
            }
            let Some((_, agg)) = self.open.get_mut(&key) else {
                continue;
            };
            count_into(
                agg,
                &mut self.predicted,
                &reference,
                p,
                key.bucket_ms,
                &mut self.rng,
            );
            self.dirty.insert(key);
        }
        Ok(())
    }

    /// Whether anything was folded since the last checkpoint.
    pub fn is_dirty(&self) -> bool {
        !self.dirty.is_empty() || !self.predicted.is_empty()
    }

    /// Writes the buckets and counts folded since the last checkpoint, and that this writer
    /// has counted its records up to `folded_seq`, if its checkpoint still is `expected_seq`.
    /// Returns false, writing nothing, when it is not (another process took the records
    /// over); the caller then [`LogAggregator::forget`]s and catches up from the log.
    pub async fn checkpoint(
        &mut self,
        expected_seq: i64,
        folded_seq: i64,
    ) -> Result<bool, StoreError> {
        let now = gantry_engine::now_ms();
        let mut buckets = Vec::with_capacity(self.dirty.len());
        for key in &self.dirty {
            if let Some((seq, agg)) = self.open.get(key) {
                buckets.push(bucket_state(key, seq + 1, agg, now)?);
            }
        }
        let deltas = deltas_of(self.predicted.clone());
        let moved = self
            .store
            .checkpoint_log_writer(
                &self.writer,
                expected_seq,
                folded_seq,
                now,
                &buckets,
                &deltas,
            )
            .await?;
        if moved {
            for key in std::mem::take(&mut self.dirty) {
                if let Some((seq, _)) = self.open.get_mut(&key) {
                    *seq += 1;
                }
            }
            self.predicted.clear();
            self.evict();
        }
        Ok(moved)
    }

    /// Drops everything held in memory (what was not checkpointed is counted again from
    /// the log by whoever owns the records).
    pub fn forget(&mut self) {
        self.open.clear();
        self.dirty.clear();
        self.predicted.clear();
    }

    /// A bucket this writer may have written before: its stored state, or an empty one.
    async fn read_back(&self, key: &BucketKey) -> Result<(i64, Aggregate), StoreError> {
        match self.store.monitor_bucket_state(key).await? {
            Some((seq, state_json)) => {
                let agg = serde_json::from_str(&state_json).map_err(|e| StoreError::Corrupt {
                    what: format!("monitor bucket of {} at {}", key.deployment, key.bucket_ms),
                    detail: e.to_string(),
                })?;
                Ok((seq, agg))
            }
            None => Ok((0, Aggregate::default())),
        }
    }

    /// Logs `batch` with its aggregates in one transaction (for bulk loaders and tests; the
    /// server's log writer folds and checkpoints instead).
    /// A bucket held in memory that was rolled up (or pruned) meanwhile fails the write; the
    /// batch is then counted again over buckets read back from the store.
    pub async fn insert(&mut self, batch: &[NewPrediction]) -> Result<(), StoreError> {
        let staged = self.stage(batch).await?;
        let staged = match self
            .store
            .insert_predictions_with(batch, &staged.buckets, &staged.deltas)
            .await
        {
            Err(StoreError::Conflict { .. }) => {
                let dirty = &self.dirty;
                self.open.retain(|k, _| dirty.contains(k));
                let staged = self.stage(batch).await?;
                self.store
                    .insert_predictions_with(batch, &staged.buckets, &staged.deltas)
                    .await?;
                staged
            }
            r => r.map(|()| staged)?,
        };
        self.commit(staged);
        Ok(())
    }
}

/// Counts the records writer `w` logged after its checkpoint into its buckets, and moves the
/// checkpoint past them, in one transaction (nothing when another process moved it first).
/// Returns the new checkpoint, or None when it lost that race.
pub async fn take_over(
    store: &Store,
    artifacts: &ArtifactStore,
    w: &LogWriter,
) -> Result<Option<i64>, StoreError> {
    let mut aggregator =
        LogAggregator::for_writer(store.clone(), artifacts.clone(), w.writer.clone());
    let mut cursor = w.folded_seq;
    loop {
        let page = store
            .logged_predictions_after(&w.writer, cursor, TAKE_OVER_PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        let batch: Vec<NewPrediction> = page.into_iter().map(|l| l.prediction).collect();
        aggregator.fold(&batch).await?;
    }
    if cursor == w.folded_seq {
        return Ok(Some(cursor));
    }
    let moved = aggregator.checkpoint(w.folded_seq, cursor).await?;
    if moved {
        tracing::info!(
            writer = %w.writer,
            records = cursor - w.folded_seq,
            "prediction log: counted the records a stopped writer had not counted"
        );
    }
    Ok(moved.then_some(cursor))
}

/// Records read back per query when taking a writer over.
const TAKE_OVER_PAGE: i64 = 1000;

/// Folds `p` into `agg` and adds the rows it predicted to `predicted`.
fn count_into(
    agg: &mut Aggregate,
    predicted: &mut Predicted,
    reference: &Reference,
    p: &NewPrediction,
    bucket_ms: i64,
    rng: &mut SplitMix,
) {
    let n = fold_prediction(agg, reference, p, rng);
    if n > 0 {
        *predicted
            .entry((p.deployment.clone(), bucket_ms, p.role.clone(), p.version))
            .or_default() += n;
    }
}

fn bucket_state(
    key: &BucketKey,
    seq: i64,
    agg: &Aggregate,
    now: i64,
) -> Result<BucketState, StoreError> {
    let state_json = serde_json::to_string(agg).map_err(|e| StoreError::Invalid {
        what: "monitor bucket".into(),
        detail: e.to_string(),
    })?;
    Ok(BucketState {
        key: key.clone(),
        seq,
        state_json,
        updated_at_ms: now,
    })
}

fn deltas_of(predicted: Predicted) -> Vec<PerformanceDelta> {
    predicted
        .into_iter()
        .map(
            |((deployment, bucket_ms, role, version), n)| PerformanceDelta {
                deployment,
                bucket_ms,
                role,
                version,
                kind: PerformanceKind::Predictions,
                n,
                sum_squared_error: 0.0,
                sum_absolute_error: 0.0,
            },
        )
        .collect()
}
