//! evaluate() end to end: a reference profile made by gantry-ml's own
//! `profile_dataset` from a synthetic training set, and prediction logs drawn
//! from the same or from shifted distributions.

// Fixture helpers outside #[test] fns count as non-test code for clippy.
#![allow(clippy::unwrap_used)]

mod aggregated;
mod alerts;
mod drift;
mod fixture;
mod traffic;
