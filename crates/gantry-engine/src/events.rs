//! What the engine tells its caller while a run goes on, and what it returns at the end.

use gantry_store::{RunStatus, StepStatus};
use serde::Serialize;
use std::collections::BTreeMap;

/// Progress of a run, in the order it happens. Consumers render it (progress view,
/// plain lines, JSON); the store holds the same facts durably.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The run is recorded but waits for admission (capacity, its project's quota, its
    /// turn); `RunStarted` follows once its first step is admitted.
    RunQueued {
        run_id: String,
        pipeline: String,
        reason: String,
    },
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
        /// Held until the consumer drops the event: a consumer that stops reading stops the
        /// echo (the store still gets every line) instead of queueing lines without bound.
        #[serde(skip)]
        room: EchoRoom,
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

/// A place in the bounded queue of echoed log lines (see [`Event::StepLog`]).
#[derive(Clone, Debug, Default)]
pub struct EchoRoom(#[allow(dead_code)] Option<std::sync::Arc<tokio::sync::OwnedSemaphorePermit>>);

impl EchoRoom {
    pub(crate) fn held(permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Self(Some(std::sync::Arc::new(permit)))
    }
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
