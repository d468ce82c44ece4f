//! gantry-serve's HTTP-level tests: a real server on 127.0.0.1:0, a real HTTP client,
//! models trained by gantry-ml (and, when configured, exported by scikit-learn).

#![allow(clippy::unwrap_used)]

mod builtin;
mod metrics;
mod oip;
mod onnx;
#[path = "../../../../testing/skip.rs"]
mod skip;
mod support;
