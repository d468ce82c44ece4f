//! Model monitoring for gantry, as pure functions: no I/O, no async, no
//! clock (`now_ms` is passed in).
//!
//! The server loads a deployment's prediction log ([`Observation`]s) and the
//! model's reference profile (captured at training by `builtin/profile`),
//! calls [`evaluate`] and renders, serves or exports the [`MonitorReport`]:
//!
//! ```text
//! observations ─┬─ window ─┬─ inputs ──── vs reference columns ─> drift (PSI, JS, KS, χ²)
//!               │          ├─ predictions vs reference label ──> prediction drift
//!               │          └─ latency, errors ─────────────────> latency
//!               └─ each performance window: labels vs predictions ─> accuracy, F1 / RMSE, MAE
//!                                       all of it ─> alert rules ─> alerts, verdict
//! ```
//!
//! [`stats`] holds the statistics themselves; they match numpy/scipy, and the
//! tests say with which one-liner each expected number was computed.

pub mod aggregate;
mod alert;
mod drift;
mod format;
mod kolmogorov;
mod latency;
mod observation;
pub mod offline;
mod performance;
mod report;
pub mod rule;
pub mod stats;

pub use alert::{AlertState, AlertStatus};
pub use drift::{Bin, DriftStatus, FeatureDrift, FeatureKind, OTHER_BUCKET, PSI_DRIFT_THRESHOLD};
pub use format::{format_value, window_phrase};
pub use gantry_ml::model::Task;
pub use gantry_ml::profile::Profile;
pub use latency::LatencyStats;
pub use observation::Observation;
pub use performance::PerformanceWindow;
pub use report::{
    DEFAULT_MIN_SAMPLES, DEFAULT_PERFORMANCE_WINDOWS_MS, DEFAULT_WINDOW_MS, MonitorConfig,
    MonitorReport, evaluate, evaluate_aggregated,
};
pub use rule::{AlertRule, Metric, Op, RuleError};
pub use stats::{ChiSquare, Ks, StatsError};
