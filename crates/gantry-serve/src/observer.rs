//! A hook for prediction logging when the server runs standalone (the control plane logs
//! from its proxy instead).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::rows::Row;

/// One answered request, successful or not.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InferenceEvent {
    /// The response id (the request's, or the one generated for it).
    pub id: String,
    pub model: String,
    pub version: String,
    /// The decoded inputs, one map per row; empty when they could not be decoded.
    pub rows: Vec<Row>,
    /// One prediction per row (see [`crate::response_predictions`]); empty on error.
    pub predictions: Vec<Value>,
    pub latency: Duration,
    pub error: Option<String>,
    /// When the request arrived, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// Called after each response to a model request is computed, on the serving thread:
/// keep it cheap (hand the event to a channel) and never block.
pub trait InferenceObserver: Send + Sync {
    fn observe(&self, event: InferenceEvent);
}
