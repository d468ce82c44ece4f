//! Request volume, errors and latency percentiles over the monitor window.

use serde::{Deserialize, Serialize};

use crate::observation::Observation;
use crate::stats::quantile;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    pub requests: usize,
    pub errors: usize,
    /// `None` without requests.
    pub error_rate: Option<f64>,
    /// Percentiles over all requests, failed ones included (their latency is
    /// what callers waited); `None` without requests.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// When the percentiles come from a sketch (monitors of deployments): each is within this
    /// relative error of the exact value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_error: Option<f64>,
}

pub(crate) fn latency_stats(window: &[&Observation]) -> LatencyStats {
    let requests = window.len();
    let errors = window.iter().filter(|o| o.error).count();
    let mut latencies: Vec<f64> = window
        .iter()
        .map(|o| o.latency_ms)
        .filter(|l| l.is_finite())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |q| (!latencies.is_empty()).then(|| quantile(&latencies, q));
    LatencyStats {
        requests,
        errors,
        error_rate: (requests > 0).then(|| errors as f64 / requests as f64),
        p50_ms: percentile(0.5),
        p95_ms: percentile(0.95),
        p99_ms: percentile(0.99),
        relative_error: None,
    }
}
