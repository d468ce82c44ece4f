use thiserror::Error;

/// Why a run could not start or could not be recorded. A step that fails is not an
/// error: it is a recorded outcome of the run.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("{0}")]
    Spec(#[from] gantry_spec::SpecError),
    #[error(
        "step {step}: {reason}; lower its `resources` or raise the capacity (--cpus / --memory / --gpus)"
    )]
    Capacity { step: String, reason: String },
    #[error("step {step}: image {reference}: {source}")]
    Image {
        step: String,
        reference: String,
        #[source]
        source: Box<gantry_image::ImageError>,
    },
    #[error(
        "step {step}: built-in component '{name}' is not available yet; use `image:` with a command"
    )]
    Builtin { step: String, name: String },
    #[error("step {step}: {message}")]
    Invalid { step: String, message: String },
    #[error("built-in image: {message}")]
    BuiltinImage { message: String },
    #[error("step {step}: {message}")]
    Step { step: String, message: String },
    #[error("metadata store: {0}")]
    Store(#[from] gantry_store::StoreError),
    #[error("artifact store: {0}")]
    Artifacts(#[from] gantry_artifacts::ArtifactError),
    #[error("runtime: {0}")]
    Runtime(#[from] gantry_runtime::RuntimeError),
    #[error("gc: {message}")]
    Gc { message: String },
    #[error("run {run}: {message}")]
    Rerun { run: String, message: String },
    /// The trust policy denied an image; the run is recorded as failed before any step ran.
    #[error("run {run}: denied by the image trust policy: {message}")]
    PolicyDenied { run: String, message: String },
}
