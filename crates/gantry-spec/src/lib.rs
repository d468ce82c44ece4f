//! The pipeline spec: YAML → validated [`Pipeline`] → [`Plan`], plus cache keys.
//!
//! Pure: no I/O except [`load`] reading one file. Every problem in a spec is
//! reported as a [`Diagnostic`] with file, line and column, all at once, so a run
//! never starts from a spec that has one.
//!
//! ```text
//! parse/load ──> Pipeline ──resolve_params──> params ──plan──> Plan (topological)
//! ```
//!
//! `plan` is also where a `matrix:` step becomes one planned step per combination
//! (consumers of its outputs get an [`InputSource::Sweep`]) and where `with: { source }`
//! of a built-in step becomes its `source` input.

mod cache_key;
mod dag;
pub mod deployment;
mod error;
mod local_inputs;
mod located;
mod matrix;
mod params;
mod parse;
mod pipeline;
mod plan;
pub mod quantity;
mod source;
mod suggestion;
mod template;
mod validate;

pub use cache_key::{CacheKeyMaterial, cache_key};
pub use error::{Diagnostic, Location, SpecError};
pub use local_inputs::check_local_inputs;
pub use params::{ParamValue, resolve_params};
pub use parse::{load, parse};
pub use pipeline::{
    DEFAULT_MEMORY_BYTES, InputSource, KubePlacement, Pipeline, Resources, Step, Toleration,
};
pub use plan::{ImageRef, Plan, PlannedStep, Sweep, plan};
pub use template::INPUTS_DIR;

/// How long a timed-out or cancelled step gets between SIGTERM and SIGKILL unless its
/// `timeout_grace:` says otherwise.
pub const DEFAULT_TIMEOUT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// The log bytes kept for one attempt of a step unless its `logs: { max: … }` says otherwise;
/// past it the middle of the log is dropped (the first and last halves are kept).
pub const DEFAULT_LOGS_MAX: u64 = 256 << 20;
/// The smallest `logs.max` accepted.
pub const MIN_LOGS_MAX: u64 = 64 << 10;
/// The largest `logs.max` accepted: logs live in the metadata database.
pub const MAX_LOGS_MAX: u64 = 16 << 30;
/// The longest `timeout_grace:` accepted.
pub const MAX_TIMEOUT_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);
/// The largest `retries: { memory_growth: … }` accepted: a step that needs more than 16× its
/// memory after one OOM kill needs a bigger `memory:`, not a retry.
pub const MAX_RETRY_MEMORY_GROWTH: f64 = 16.0;
