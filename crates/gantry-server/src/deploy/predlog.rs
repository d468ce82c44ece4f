//! The prediction log's writer: group commit.
//!
//! A request's prediction is acknowledged (its answer sent) only after its log record is
//! committed, so a crash loses nothing a client was told about. Concurrent requests share
//! one transaction: the writer takes whatever queued while the previous batch committed.
//! A batch that fails as a whole (one duplicate request id) is retried record by record,
//! so one bad record never takes the others down with it.
//!
//! Each batch's monitoring aggregates (see `aggregates.rs`) are staged before and written in
//! the same transaction, so the log and what monitors count never disagree, even after a kill.

use super::aggregates::LogAggregator;
use crate::metrics::Metrics;
use gantry_artifacts::ArtifactStore;
use gantry_store::{NewPrediction, Store};
use std::sync::{Arc, OnceLock};
use tokio::sync::{mpsc, oneshot};

/// Most records committed in one transaction.
const MAX_BATCH: usize = 512;
/// Records waiting for the writer before callers wait for room.
const QUEUE: usize = 8192;

enum Job {
    Record(
        Box<NewPrediction>,
        Option<oneshot::Sender<Result<(), String>>>,
    ),
    Flush(oneshot::Sender<()>),
}

pub struct PredictionLog {
    store: Store,
    artifacts: ArtifactStore,
    metrics: Arc<Metrics>,
    tx: OnceLock<mpsc::Sender<Job>>,
}

impl PredictionLog {
    pub(crate) fn start(
        store: Store,
        artifacts: ArtifactStore,
        metrics: Arc<Metrics>,
    ) -> PredictionLog {
        PredictionLog {
            store,
            artifacts,
            metrics,
            tx: OnceLock::new(),
        }
    }

    /// The writer starts with the first record (inside the server's runtime).
    fn sender(&self) -> &mpsc::Sender<Job> {
        self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let aggregator = LogAggregator::new(self.store.clone(), self.artifacts.clone());
            tokio::spawn(write(
                self.store.clone(),
                aggregator,
                Arc::clone(&self.metrics),
                rx,
            ));
            tx
        })
    }

    /// Logs one prediction and waits until it is committed.
    pub async fn record(&self, p: NewPrediction) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.sender()
            .send(Job::Record(Box::new(p), Some(tx)))
            .await
            .map_err(|_| "the prediction log writer stopped".to_string())?;
        rx.await
            .map_err(|_| "the prediction log writer stopped".to_string())?
    }

    /// Logs a prediction nobody waits for (shadow traffic).
    pub async fn record_detached(&self, p: NewPrediction) {
        let _ = self.sender().send(Job::Record(Box::new(p), None)).await;
    }

    /// Waits until everything queued so far is committed.
    pub async fn flush(&self) {
        let Some(tx) = self.tx.get() else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Job::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Logs `records` with their aggregates in one transaction.
async fn log(
    store: &Store,
    aggregator: &mut LogAggregator,
    records: &[NewPrediction],
) -> Result<(), gantry_store::StoreError> {
    let staged = aggregator.stage(records).await?;
    store
        .insert_predictions_with(records, &staged.buckets, &staged.deltas)
        .await?;
    aggregator.commit(staged);
    Ok(())
}

async fn write(
    store: Store,
    mut aggregator: LogAggregator,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Job>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut records = Vec::with_capacity(jobs.len());
        let mut waiters = Vec::with_capacity(jobs.len());
        let mut flushes = Vec::new();
        for job in jobs {
            match job {
                Job::Record(p, w) => {
                    records.push(*p);
                    waiters.push(w);
                }
                Job::Flush(done) => flushes.push(done),
            }
        }
        if !records.is_empty() {
            match log(&store, &mut aggregator, &records).await {
                Ok(()) => {
                    metrics.observe_prediction_log(records.len(), 0);
                    for w in waiters.into_iter().flatten() {
                        let _ = w.send(Ok(()));
                    }
                }
                Err(batch_error) if records.len() == 1 => {
                    metrics.observe_prediction_log(0, 1);
                    tracing::warn!("prediction log: {batch_error}");
                    if let Some(Some(w)) = waiters.into_iter().next() {
                        let _ = w.send(Err(batch_error.to_string()));
                    }
                }
                Err(_) => {
                    for (p, w) in records.into_iter().zip(waiters) {
                        let result = log(&store, &mut aggregator, std::slice::from_ref(&p))
                            .await
                            .map_err(|e| e.to_string());
                        match &result {
                            Ok(()) => metrics.observe_prediction_log(1, 0),
                            Err(e) => {
                                metrics.observe_prediction_log(0, 1);
                                tracing::warn!(request = %p.request_id, "prediction log: {e}");
                            }
                        }
                        if let Some(w) = w {
                            let _ = w.send(result);
                        }
                    }
                }
            }
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}
