//! gantry-store: the metadata store — runs, step runs, artifacts, lineage, logs, metrics,
//! the model registry, and serving (deployments, the prediction log, feedback, alert events).
//!
//! One [`Store`] speaks to SQLite (the default: one file, WAL mode, so a CLI process can follow
//! logs while the engine writes them) or PostgreSQL (shared deployments) through sqlx's `Any`
//! driver. Queries are written once with `$n` placeholders, which both backends accept; the
//! schema has one migration directory per backend (`migrations/sqlite`, `migrations/postgres`)
//! because column types differ. Migrations are embedded in the binary and applied by sqlx's
//! migrator on every [`Store::connect`], tracked in its `_sqlx_migrations` table.
//!
//! Times are i64 milliseconds since the Unix epoch; ids and JSON documents are text.

mod auth;
mod bulk;
pub mod columns;
mod error;
mod gc;
mod images;
mod lineage;
mod logged_models;
mod logs;
mod metrics;
mod models;
mod monitoring;
mod queue;
mod record;
mod runs;
mod serving;
mod status;
mod step_runs;
mod store;
mod tracking;
mod ui;
mod usage;
mod writer;

pub use auth::{AuditRecord, NewToken, TokenRecord};
pub use error::{ParseStatusError, StoreError};
pub use gc::LogVolume;
pub use images::{ImageDecisionRecord, ImageScanRecord};
pub use logged_models::{
    LOGGED_MODEL_SEARCH_DEFAULT, LOGGED_MODEL_STATUSES, LoggedModel, LoggedModelMetric,
    LoggedModelMetricInput, NewLoggedModel, RunOutput,
};
pub use logs::{
    ChunkQuery, LINE_INDEX_BITS, LogChunk, LogChunkRow, LogRow, MAX_CHUNK_LINES, line_position,
    split_position,
};
pub use monitoring::{
    BucketKey, BucketState, FeedbackScoring, LogWriter, PerformanceDelta, PerformanceKind,
    PerformanceSum,
};
pub use queue::{ProjectQuota, QueuedRun};
pub use record::{
    ArtifactRow, LineageRow, MetricRow, ModelRecord, ModelVersionRecord, NewModelVersion,
    RunFilter, RunRecord, StepRunRecord,
};
pub use serving::{
    AlertEvent, DeploymentRecord, DeploymentRevision, LoggedPrediction, NewAlertEvent,
    NewPrediction, PREDICTION_ROLES, PredictionInputs, PredictionRecord, limits as serving_limits,
};
pub use status::{Direction, RunStatus, StepStatus};
pub use store::Store;
pub use tracking::{
    DEFAULT_EXPERIMENT_ID, Experiment, KeyValue, MetricPoint, NewRegisteredModelVersion,
    NewTrackingRun, Page, RegisteredModel, RegisteredModelVersion, SearchQuery, TrackingRun,
    TrackingRunInfo, TrackingRunUpdate, ViewType, limits as tracking_limits, validate_key,
};
pub use ui::{Cmp, RunCursor, RunPage, RunQuery, RunSort, StepSummary};
pub use usage::{ReplicaUsage, UsageQuery};

/// A new random id: `prefix` followed by 12 lowercase hex characters, e.g. `r-3fa9c0d1e2b4`.
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 6] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_ids_are_prefix_plus_12_hex() {
        let a = super::new_id("r-");
        let b = super::new_id("r-");
        assert_ne!(a, b);
        let hex = a.strip_prefix("r-").unwrap();
        assert_eq!(hex.len(), 12);
        assert!(
            hex.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
