//! gantry's built-in ML components as a pure library: no containers, no
//! database. Each component reads its inputs from a directory and writes its
//! outputs to another ([`ComponentIo`]); the engine runs them inside the
//! built-in image as `gantry component <name>` ([`run_in_step_dir`]).
//!
//! ```text
//! csv-ingest ─> dataset ─┬─> profile ──> profile (reference for monitoring)
//!                        ├─> validate ─> report
//!                        ├─> drift (vs a reference dataset or profile) ─> report
//!                        └─> clean ──> dataset + transform
//!                                         │
//!                    split ─> train/test ─┴─> train ─> model ─> evaluate ─> report
//!                                                  └─(sweep)─> select-best ─> register
//! ```
//!
//! Artifacts: [`dataset`] (directory: schema + JSON lines), [`transform`]
//! (fitted preprocessing), [`model`] (self-contained, serves raw rows),
//! [`profile`] (reference profile), reports. Everything is deterministic: the
//! same inputs and options give byte-identical outputs.

mod algorithms;
mod cell;
pub mod columnar;
mod components;
pub mod dataset;
pub mod datasets;
pub mod deploy;
pub mod drift;
mod error;
pub mod evaluate;
mod expectations;
pub mod gate;
mod ingest;
pub mod metrics;
pub mod model;
mod options;
pub mod parallel;
pub mod profile;
pub mod register;
mod rng;
mod select;
mod split;
mod train;
pub mod transform;

pub use components::{
    ComponentInfo, ComponentIo, ComponentOutcome, Extensions, component, components,
    components_markdown, run_component, run_component_with, run_in_step_dir, validate_with,
};
pub use error::MlError;
pub use expectations::{CheckResult, ValidationReport};
pub use options::{OptionInfo, OptionKind};
pub use select::{Candidate, SelectionReport, default_maximize};
