//! Every pipeline run is also an MLflow run: the run appears through the
//! MLflow-compatible API (experiment = pipeline name) with its params as params and its
//! steps' metrics as metrics (`<step>.<metric>`), so MLflow tooling sees Gantry's work.
//!
//! The mirror is best effort by design: a failure here is logged and never fails or
//! slows the pipeline run it describes.

use crate::now_ms;
use gantry_spec::ParamValue;
use gantry_store::{
    KeyValue, MetricPoint, NewTrackingRun, RunStatus, Store, StoreError, TrackingRunUpdate,
};
use std::collections::BTreeMap;

/// Tag on the MLflow run naming the Gantry run it mirrors.
pub const GANTRY_RUN_TAG: &str = "gantry.run_id";

pub(crate) struct Mirror {
    store: Store,
    pub(crate) experiment_id: String,
    pub(crate) tracking_run: String,
}

impl Mirror {
    pub(crate) async fn start(
        store: &Store,
        pipeline: &str,
        run_id: &str,
        params: &BTreeMap<String, ParamValue>,
    ) -> Option<Mirror> {
        match Self::try_start(store, pipeline, run_id, params).await {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!("run {run_id}: not mirrored as an MLflow run: {e}");
                None
            }
        }
    }

    async fn try_start(
        store: &Store,
        pipeline: &str,
        run_id: &str,
        params: &BTreeMap<String, ParamValue>,
    ) -> Result<Mirror, StoreError> {
        let now = now_ms();
        let experiment_id = match store.get_experiment_by_name(pipeline).await {
            Ok(e) => e.experiment_id,
            Err(StoreError::NotFound { .. }) => {
                match store.create_experiment(pipeline, None, &[], now).await {
                    Ok(id) => id,
                    // Another run of the same pipeline created it first.
                    Err(StoreError::AlreadyExists { .. }) => {
                        store.get_experiment_by_name(pipeline).await?.experiment_id
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let tags = vec![
            kv(GANTRY_RUN_TAG, run_id),
            kv("gantry.pipeline", pipeline),
            kv("mlflow.source.type", "JOB"),
        ];
        let run = store
            .create_tracking_run(
                &NewTrackingRun {
                    experiment_id: experiment_id.clone(),
                    user_id: "gantry".into(),
                    run_name: Some(run_id.to_string()),
                    start_time: Some(now),
                    tags,
                },
                now,
            )
            .await?;
        let params: Vec<KeyValue> = params.iter().map(|(k, v)| kv(k, &v.to_string())).collect();
        for chunk in params.chunks(100) {
            store.log_batch(&run.info.run_id, &[], chunk, &[]).await?;
        }
        Ok(Mirror {
            store: store.clone(),
            experiment_id,
            tracking_run: run.info.run_id,
        })
    }

    /// Records the steps' metrics and the final status.
    pub(crate) async fn finish(&self, run_id: &str, status: RunStatus) {
        if let Err(e) = self.try_finish(run_id, status).await {
            tracing::warn!("run {run_id}: MLflow mirror not completed: {e}");
        }
    }

    async fn try_finish(&self, run_id: &str, status: RunStatus) -> Result<(), StoreError> {
        let now = now_ms();
        let points: Vec<MetricPoint> = self
            .store
            .metrics_for_run(run_id)
            .await?
            .into_iter()
            .filter(|m| m.value.is_finite())
            .map(|m| MetricPoint {
                key: metric_key(&m.step, &m.key),
                value: m.value,
                timestamp: now,
                step: 0,
            })
            .collect();
        for chunk in points.chunks(1000) {
            self.store
                .log_batch(&self.tracking_run, chunk, &[], &[])
                .await?;
        }
        let status = match status {
            RunStatus::Succeeded => "FINISHED",
            RunStatus::Cancelled => "KILLED",
            _ => "FAILED",
        };
        self.store
            .update_tracking_run(
                &self.tracking_run,
                &TrackingRunUpdate {
                    status: Some(status.into()),
                    end_time: Some(now),
                    run_name: None,
                },
            )
            .await?;
        Ok(())
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
    }
}

/// `<step>.<metric>` in MLflow's key alphabet: sweep names such as
/// `train[algorithm=logistic]` become `train_algorithm_logistic_`.
pub(crate) fn metric_key(step: &str, metric: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}.{}", clean(step), clean(metric))
}

#[cfg(test)]
mod tests {
    use super::metric_key;

    #[test]
    fn metric_keys_use_mlflow_s_alphabet() {
        assert_eq!(metric_key("evaluate", "accuracy"), "evaluate.accuracy");
        assert_eq!(
            metric_key("train[algorithm=logistic]", "validation.auc"),
            "train_algorithm_logistic_.validation.auc"
        );
        assert_eq!(metric_key("s", "a/b"), "s.a_b");
    }
}
