//! What the engine tells its caller while a run goes on, and what it returns at the end.

use gantry_store::{RunStatus, StepStatus};
use serde::Serialize;
use std::collections::BTreeMap;

/// Progress of a run, in the order it happens. Consumers render it (progress view,
/// plain lines, JSON); the store holds the same facts durably.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    RunStarted {
        run_id: String,
        pipeline: String,
        steps: Vec<String>,
    },
    StepStarted {
        step: String,
        attempt: u32,
    },
    StepLog {
        step: String,
        stream: String,
        line: String,
    },
    StepRetrying {
        step: String,
        next_attempt: u32,
        reason: String,
        delay_ms: u64,
    },
    StepFinished {
        step: String,
        status: StepStatus,
        attempt: u32,
        exit_code: Option<i64>,
        reason: Option<String>,
        wall_ms: Option<i64>,
    },
    RunFinished {
        run_id: String,
        status: RunStatus,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct StepSummary {
    pub step: String,
    pub status: StepStatus,
    pub attempts: u32,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub cached: bool,
    pub wall_ms: Option<i64>,
    pub outputs: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub pipeline: String,
    pub status: RunStatus,
    pub duration_ms: i64,
    pub cache_hits: usize,
    pub steps: Vec<StepSummary>,
}
