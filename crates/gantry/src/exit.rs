//! Exit codes scripts can rely on (documented in the README).

/// Everything went as asked.
pub const OK: u8 = 0;
/// The run finished but a step failed (or the run was interrupted).
pub const RUN_FAILED: u8 = 1;
/// Bad input: invalid spec, unknown parameter, wrong flag.
pub const USAGE: u8 = 2;
/// A run, step, image or artifact that was named does not exist.
pub const NOT_FOUND: u8 = 3;
/// The machine lacks something Gantry needs (OCI runtime, privileges).
pub const ENVIRONMENT: u8 = 4;
/// Gantry itself failed (store, I/O).
pub const INTERNAL: u8 = 5;
/// The server refused the request: no token, a wrong or revoked one (401), or a role or
/// project that does not allow it (403).
pub const AUTH: u8 = 6;
/// Cancelled with Ctrl-C / SIGTERM.
pub const CANCELLED: u8 = 130;

/// An error that carries its own exit code.
#[derive(Debug)]
pub struct Coded {
    pub code: u8,
    pub message: String,
    /// The request field a server named as the one at fault (`sample_rate`), with the
    /// server's message alone, so a command can name its own flag instead.
    pub field: Option<(String, String)>,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {}

pub fn coded(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        code,
        message: message.into(),
        field: None,
    })
}

pub fn code_for(err: &anyhow::Error) -> u8 {
    use gantry_artifacts::ArtifactError;
    use gantry_engine::EngineError;
    use gantry_image::ImageError;
    use gantry_server::deploy::ops::OpError;
    use gantry_store::StoreError;
    fn store(e: &StoreError) -> u8 {
        match e {
            StoreError::NotFound { .. } => NOT_FOUND,
            StoreError::Ambiguous { .. }
            | StoreError::UnsupportedUrl { .. }
            | StoreError::Invalid { .. } => USAGE,
            _ => INTERNAL,
        }
    }
    fn image(e: &ImageError) -> u8 {
        match e {
            ImageError::NotFound(_) => NOT_FOUND,
            ImageError::Io { .. } => INTERNAL,
            ImageError::Registry {
                status: Some(404), ..
            } => NOT_FOUND,
            ImageError::Registry {
                status: Some(401 | 403),
                ..
            } => AUTH,
            ImageError::Registry { .. } => INTERNAL,
            _ => USAGE,
        }
    }
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.code;
        }
        if cause.downcast_ref::<gantry_spec::SpecError>().is_some() {
            return USAGE;
        }
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            return match e {
                EngineError::Spec(_)
                | EngineError::Capacity { .. }
                | EngineError::Builtin { .. }
                | EngineError::Invalid { .. }
                | EngineError::PolicyDenied { .. } => USAGE,
                EngineError::Image { source, .. } => image(source),
                EngineError::Store(s) => store(s),
                EngineError::Runtime(_) => ENVIRONMENT,
                _ => INTERNAL,
            };
        }
        if cause
            .downcast_ref::<gantry_runtime::RuntimeError>()
            .is_some()
        {
            return ENVIRONMENT;
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return store(e);
        }
        if let Some(e) = cause.downcast_ref::<ImageError>() {
            return image(e);
        }
        if let Some(e) = cause.downcast_ref::<OpError>() {
            return match e {
                OpError::Invalid { .. } | OpError::Conflict(_) => USAGE,
                OpError::NotFound(_) => NOT_FOUND,
                OpError::Store(s) => store(s),
            };
        }
        if let Some(e) = cause.downcast_ref::<gantry_serve::ServeError>() {
            return match e {
                gantry_serve::ServeError::Internal(_) => INTERNAL,
                gantry_serve::ServeError::NotFound(_) => NOT_FOUND,
                _ => USAGE,
            };
        }
        if let Some(e) = cause.downcast_ref::<ArtifactError>() {
            return match e {
                ArtifactError::NotFound { .. } => NOT_FOUND,
                ArtifactError::Location { .. } | ArtifactError::NotLocal => USAGE,
                ArtifactError::ObjectStore { .. } => ENVIRONMENT,
                _ => INTERNAL,
            };
        }
    }
    INTERNAL
}

/// Spec errors already carry file:line:col blocks; everything else gets "error: ".
pub fn render_error(err: &anyhow::Error) -> String {
    if let Some(spec) = err
        .chain()
        .find_map(|c| c.downcast_ref::<gantry_spec::SpecError>())
    {
        return spec.to_string();
    }
    let mut out = format!("error: {err}");
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(&format!("\n  caused by: {text}"));
        }
    }
    out
}
