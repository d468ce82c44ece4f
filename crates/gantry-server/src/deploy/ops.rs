//! Changing deployments (implemented in the engine, which also runs `builtin/deploy`).

pub use gantry_engine::deployments::*;
