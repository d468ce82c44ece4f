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
use gantry_monitor::aggregate::{Aggregate, BUCKET_MS, BUCKET_SAMPLE, SplitMix};
use gantry_monitor::{Observation, Task};
use gantry_spec::deployment::DeploymentSpec;
use gantry_store::{
    BucketKey, BucketState, NewPrediction, PerformanceDelta, PerformanceKind, Store, StoreError,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
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
    let inputs = p.inputs.as_array();
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

/// What a batch adds, staged until its transaction commits.
pub struct Staged {
    pub buckets: Vec<BucketState>,
    pub deltas: Vec<PerformanceDelta>,
    next: Vec<(BucketKey, i64, Aggregate)>,
}

/// Folds logged predictions into bucket aggregates (see the module docs).
pub struct LogAggregator {
    store: Store,
    artifacts: ArtifactStore,
    writer: String,
    references: HashMap<String, (Instant, Arc<Reference>)>,
    open: HashMap<BucketKey, (i64, Aggregate)>,
    rng: SplitMix,
}

impl LogAggregator {
    pub fn new(store: Store, artifacts: ArtifactStore) -> LogAggregator {
        let writer = gantry_store::new_id("w-");
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
        }
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

    /// The aggregates and performance counts `batch` adds; nothing changes here until
    /// [`LogAggregator::commit`] is called with the result after the batch committed.
    pub async fn stage(&mut self, batch: &[NewPrediction]) -> Result<Staged, StoreError> {
        let mut touched: BTreeMap<BucketKey, (i64, Aggregate)> = BTreeMap::new();
        let mut predicted: BTreeMap<(String, i64, String, i64), i64> = BTreeMap::new();
        let now = gantry_engine::now_ms();
        for p in batch {
            let reference = self.reference(&p.deployment).await;
            let bucket_ms = bucket_of(p.created_at_ms);
            let key = BucketKey {
                deployment: p.deployment.clone(),
                bucket_ms,
                span_ms: BUCKET_MS,
                role: p.role.clone(),
                version: p.version,
                reference: reference.digest.clone(),
                writer: self.writer.clone(),
            };
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
            let observations = observations_of(p, &[]);
            let mut rows_predicted = 0;
            for o in &observations {
                if o.prediction.is_some() {
                    rows_predicted += 1;
                }
                agg.add(
                    reference.profile.as_ref(),
                    reference.label.as_deref(),
                    o,
                    BUCKET_SAMPLE,
                    &mut self.rng,
                );
            }
            if rows_predicted > 0 {
                *predicted
                    .entry((p.deployment.clone(), bucket_ms, p.role.clone(), p.version))
                    .or_default() += rows_predicted;
            }
        }
        let mut buckets = Vec::with_capacity(touched.len());
        let mut next = Vec::with_capacity(touched.len());
        for (key, (seq, agg)) in touched {
            let state_json = serde_json::to_string(&agg).map_err(|e| StoreError::Invalid {
                what: "monitor bucket".into(),
                detail: e.to_string(),
            })?;
            buckets.push(BucketState {
                key: key.clone(),
                seq: seq + 1,
                state_json,
                updated_at_ms: now,
            });
            next.push((key, seq + 1, agg));
        }
        let deltas = predicted
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
            .collect();
        Ok(Staged {
            buckets,
            deltas,
            next,
        })
    }

    /// Keeps the staged states once their transaction committed.
    pub fn commit(&mut self, staged: Staged) {
        if self.open.len() > OPEN_BUCKETS {
            // Oldest first: late records for these are read back from the store.
            let mut keys: Vec<BucketKey> = self.open.keys().cloned().collect();
            keys.sort_by_key(|k| k.bucket_ms);
            for k in keys.iter().take(self.open.len() - OPEN_BUCKETS / 2) {
                self.open.remove(k);
            }
        }
        for (key, seq, agg) in staged.next {
            self.open.insert(key, (seq, agg));
        }
    }

    /// A bucket this writer may have written before: its stored state, or an empty one.
    async fn read_back(&self, key: &BucketKey) -> Result<(i64, Aggregate), StoreError> {
        let rows = self
            .store
            .monitor_buckets(&key.deployment, key.bucket_ms, key.bucket_ms)
            .await?;
        for row in rows {
            if row.key == *key {
                let agg =
                    serde_json::from_str(&row.state_json).map_err(|e| StoreError::Corrupt {
                        what: format!("monitor bucket of {} at {}", key.deployment, key.bucket_ms),
                        detail: e.to_string(),
                    })?;
                return Ok((row.seq, agg));
            }
        }
        Ok((0, Aggregate::default()))
    }

    /// Logs `batch` with its aggregates in one transaction (for bulk loaders and tests; the
    /// server's log writer stages and commits around its own group commit).
    pub async fn insert(&mut self, batch: &[NewPrediction]) -> Result<(), StoreError> {
        let staged = self.stage(batch).await?;
        self.store
            .insert_predictions_with(batch, &staged.buckets, &staged.deltas)
            .await?;
        self.commit(staged);
        Ok(())
    }
}
