//! Integration tests of the built-in components, run end to end on
//! directories exactly as the engine lays them out (one test binary).

// Fixture helpers live outside #[test] functions; in them a panic is the test failure report.
#![allow(clippy::unwrap_used)]

mod support;

mod components;
mod determinism;
mod drift;
mod messy_csv;
mod oracle;
mod pipelines;
mod preprocessing;
mod serving;
