//! What every handler shares.

use gantry_artifacts::ArtifactStore;
use gantry_store::Store;
use std::path::PathBuf;
use std::sync::Arc;

/// Server-wide settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Require bearer tokens (`gantry server --auth`). Off: local single-user mode.
    pub auth: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The externally visible base URL (for artifact URIs and MLFLOW_TRACKING_URI).
    pub public_url: String,
    /// Where MLflow artifacts uploaded through the proxy live.
    pub mlflow_artifacts_dir: PathBuf,
}

/// Shared state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub artifacts: ArtifactStore,
    pub config: Arc<ServerConfig>,
}
