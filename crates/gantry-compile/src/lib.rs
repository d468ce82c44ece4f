//! Export a Gantry pipeline to other orchestrators: an Argo Workflows `Workflow`
//! ([`compile_argo`]) and a Kubeflow Pipelines v2 pipeline spec ([`compile_kfp`]).
//!
//! Pure: a validated [`Pipeline`] and [`CompileOptions`] in, YAML text out. Every step keeps
//! Gantry's step contract on the other orchestrator the way the Kubernetes runtime keeps it
//! (crates/gantry-kube): the built-in ("helper") image's `gantry step-fetch` fetches the inputs
//! by digest from the S3 artifact store, the step runs under `gantry step-exec`, which uploads
//! the outputs and writes each output's digest where the orchestrator reads it as an output
//! parameter; downstream steps get those digests as parameters, substituted by the
//! orchestrator before their containers start.
//!
//! ```text
//! Pipeline ──plan (params: real values, free ones as sentinels)──> units ──> argo | kfp ──> YAML
//! ```
//!
//! Params a matrix or a built-in `source` uses fix the shape of the workflow and are compiled
//! in with their value; every other param stays a parameter of the exported workflow
//! (`{{workflow.parameters.x}}` in Argo, a pipeline input in KFP) with its value as default.

mod argo;
mod kfp;
mod merge;
mod names;
mod refs;
mod units;

use std::collections::BTreeMap;

use gantry_spec::Pipeline;

pub use refs::check_references;

/// The largest document accepted: a Kubernetes object must fit etcd's request limit (about
/// 1.5 MiB), and the orchestrator adds its own status to it.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Which orchestrator a pipeline is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// An Argo Workflows `Workflow` (argoproj.io/v1alpha1).
    Argo,
    /// A Kubeflow Pipelines v2 pipeline spec (IR YAML, schema 2.1.0), followed by its
    /// Kubernetes platform spec.
    Kfp,
}

impl Target {
    /// `(orchestrator, run id, run name)` of a report: the orchestrator's placeholders.
    fn run_placeholders(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Target::Argo => ("argo", "{{workflow.uid}}", "{{workflow.name}}"),
            Target::Kfp => ("kfp", "{{$.pipeline_job_uuid}}", "{{$.pipeline_job_name}}"),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "argo" => Ok(Target::Argo),
            "kfp" => Ok(Target::Kfp),
            other => Err(format!("unknown target '{other}': use argo or kfp")),
        }
    }
}

/// Where and how the exported workflow runs.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// The artifact store every step fetches from and uploads to (`s3://bucket/prefix`).
    pub artifacts: String,
    /// The built-in image, by digest (`registry/gantry@sha256:…`): it holds the static
    /// `gantry` binary the fetch runs and copies for the wrapper, and runs built-in steps.
    pub helper_image: String,
    /// `metadata.namespace` of the Argo Workflow; `None`: the submitter's.
    pub namespace: Option<String>,
    /// The pods' service account (Argo `spec.serviceAccountName`); `None`: the namespace's
    /// default. Steps never get its token (`automountServiceAccountToken: false`).
    pub service_account: Option<String>,
    /// The account of Argo's executor (the `wait` container, which reports outputs);
    /// `None`: `service_account`, else `default`.
    pub executor_service_account: Option<String>,
    /// Secrets for pulling step images.
    pub image_pull_secrets: Vec<String>,
    /// A Secret whose keys become the environment of the fetch and of the wrapper
    /// (`AWS_ACCESS_KEY_ID`, …), as in the Kubernetes runtime.
    pub artifacts_secret: Option<String>,
    /// KFP only: the keys of `artifacts_secret` to expose (KFP maps a Secret key by key).
    pub artifacts_secret_keys: Vec<String>,
    /// Accept step images by tag (`busybox:1.36`). Off: an image must be pinned by digest
    /// (`@sha256:…`) so that the exported workflow runs what Gantry would have run.
    pub allow_tags: bool,
    /// `-p name=value` overrides of the pipeline's params (their defaults otherwise); the
    /// result is the default of each param the exported workflow keeps as a parameter.
    pub params: Vec<(String, String)>,
    /// Digests of `path:`/`url:` inputs, already stored with `gantry upload`, by
    /// `step/input` (the declared step name: a matrix step's members share it).
    pub input_digests: BTreeMap<String, String>,
    /// The user and group steps run as (the Kubernetes runtime's default: 65534).
    pub uid: u32,
    pub gid: u32,
    /// The refusal threshold for the emitted document, in bytes.
    pub max_bytes: usize,
    /// Report each step to a Gantry server, which then records the run and whose cache the
    /// steps use; `None`: the workflow runs on its own.
    pub report: Option<ReportTo>,
    /// The spec's text as written: with `report`, the exit handler sends it to the server as
    /// the run's snapshot (up to `gantry_kube::exported::MAX_SPEC_BYTES`).
    pub spec_text: Option<String>,
}

/// Where the steps of an exported workflow report (`--report-to`, `--report-token-secret`).
#[derive(Clone, Debug)]
pub struct ReportTo {
    /// The Gantry server as the cluster's pods reach it (`http://gantry.gantry.svc:8080`).
    pub server: String,
    /// The Secret (in the workflow's namespace) whose key `token` holds an editor token of the
    /// pipeline's project; only the wrapper gets it, never the step's command.
    pub token_secret: String,
}

impl CompileOptions {
    /// Options with the required parts and every default.
    pub fn new(artifacts: impl Into<String>, helper_image: impl Into<String>) -> CompileOptions {
        CompileOptions {
            artifacts: artifacts.into(),
            helper_image: helper_image.into(),
            namespace: None,
            service_account: None,
            executor_service_account: None,
            image_pull_secrets: Vec::new(),
            artifacts_secret: None,
            artifacts_secret_keys: vec!["AWS_ACCESS_KEY_ID".into(), "AWS_SECRET_ACCESS_KEY".into()],
            allow_tags: false,
            params: Vec::new(),
            input_digests: BTreeMap::new(),
            uid: 65534,
            gid: 65534,
            max_bytes: MAX_DOCUMENT_BYTES,
            report: None,
            spec_text: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The spec (or a param override) is invalid: the diagnostics, with file and line.
    #[error("{0}")]
    Spec(#[from] gantry_spec::SpecError),
    /// A bad option (`--artifacts`, `--helper-image`, an input digest).
    #[error("{0}")]
    Options(String),
    /// A step the target cannot express.
    #[error("step '{step}': {message}")]
    Step { step: String, message: String },
    /// The document is over [`CompileOptions::max_bytes`].
    #[error(
        "the compiled {target} document is {bytes} bytes ({mib:.2} MiB) for {steps} steps, over the {limit}-byte limit of a Kubernetes object; run fewer matrix members (split the sweep into several pipelines) or fewer steps",
        mib = *bytes as f64 / (1024.0 * 1024.0)
    )]
    TooLarge {
        target: &'static str,
        bytes: usize,
        limit: usize,
        steps: usize,
    },
    /// The pipeline has a shape the target cannot hold (too many tasks for one Argo DAG).
    #[error("{0}")]
    Shape(String),
    #[error("serializing the document: {0}")]
    Serialize(String),
}

/// `pipeline` as an Argo `Workflow` (YAML).
pub fn compile_argo(pipeline: &Pipeline, opts: &CompileOptions) -> Result<String, CompileError> {
    compile(pipeline, Target::Argo, opts)
}

/// `pipeline` as a KFP v2 pipeline spec, then its Kubernetes platform spec (two YAML
/// documents, as `kfp.compiler` writes them with kfp-kubernetes).
pub fn compile_kfp(pipeline: &Pipeline, opts: &CompileOptions) -> Result<String, CompileError> {
    compile(pipeline, Target::Kfp, opts)
}

/// [`compile_argo`] or [`compile_kfp`].
pub fn compile(
    pipeline: &Pipeline,
    target: Target,
    opts: &CompileOptions,
) -> Result<String, CompileError> {
    check_options(opts)?;
    let units = units::build(pipeline, target, opts)?;
    let text = match target {
        Target::Argo => argo::render(pipeline, &units, opts)?,
        Target::Kfp => kfp::render(pipeline, &units, opts)?,
    };
    if text.len() > opts.max_bytes {
        return Err(CompileError::TooLarge {
            target: match target {
                Target::Argo => "Argo Workflow",
                Target::Kfp => "KFP pipeline spec",
            },
            bytes: text.len(),
            limit: opts.max_bytes,
            steps: units.units.len(),
        });
    }
    Ok(text)
}

fn check_options(opts: &CompileOptions) -> Result<(), CompileError> {
    let bucket = opts.artifacts.strip_prefix("s3://").unwrap_or("");
    if bucket.is_empty() || bucket.starts_with('/') {
        return Err(CompileError::Options(format!(
            "--artifacts {:?} is not an S3 location; write s3://bucket/prefix (the store the steps' pods fetch from and upload to)",
            opts.artifacts
        )));
    }
    if !pinned(&opts.helper_image) {
        return Err(CompileError::Options(format!(
            "--helper-image {:?} is not pinned by digest; give the built-in image as registry/repo@sha256:<64 hex digits>",
            opts.helper_image
        )));
    }
    if let Some(r) = &opts.report {
        let url_ok = (r.server.starts_with("http://") || r.server.starts_with("https://"))
            && !r.server.contains(char::is_whitespace)
            && !r.server.contains(['"', '\\', '{', '}']);
        if !url_ok {
            return Err(CompileError::Options(format!(
                "--report-to {:?} is not an http:// or https:// URL (the Gantry server as the cluster's pods reach it)",
                r.server
            )));
        }
        if !is_subdomain(&r.token_secret) {
            return Err(CompileError::Options(format!(
                "--report-token-secret {:?} is not a Kubernetes Secret name (lowercase letters, digits, '-' and '.')",
                r.token_secret
            )));
        }
    }
    for (key, digest) in &opts.input_digests {
        if !gantry_kube::contract::is_digest(digest) {
            return Err(CompileError::Options(format!(
                "input digest for {key}: {digest:?} is not sha256:<64 hex digits>"
            )));
        }
    }
    Ok(())
}

/// A DNS-1123 subdomain (a Secret's name).
fn is_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// The report part of a unit's plan (the orchestrator fills in `run` and `run_name`); the
/// step's name and position travel in `GANTRY_STEP` and [`SEQ_ENV`], which a sweep's
/// members vary, so that their shared template stays one.
pub(crate) fn report_plan(
    units: &units::Units,
    unit: &units::Unit,
    opts: &CompileOptions,
    target: Target,
) -> Option<gantry_kube::exported::ReportPlan> {
    let to = opts.report.as_ref()?;
    let key = unit
        .image
        .rsplit_once('@')
        .filter(|_| pinned(&unit.image))
        .map(|(_, digest)| gantry_kube::exported::KeyPlan {
            image_digest: digest.to_string(),
            env: unit.env.iter().map(|(k, _)| k.clone()).collect(),
            network: unit.network,
            builtin: unit.builtin.is_some(),
            float_params: units
                .params
                .iter()
                .filter(|p| matches!(p.value, gantry_spec::ParamValue::Float(_)))
                .map(|p| p.name.clone())
                .collect(),
        });
    Some(gantry_kube::exported::ReportPlan {
        retries: unit.retries,
        cache: unit.cache,
        cpu_millis: unit.cpu_millis,
        memory_bytes: unit.memory_bytes,
        gpu: unit.gpu.as_ref().map_or(0, |g| g.count),
        key,
        effect: unit
            .builtin
            .clone()
            .filter(|b| gantry_kube::exported::EFFECTS.contains(&b.as_str())),
        ..base_report(units, to, target)
    })
}

/// The report's run and server; no retries, cache or resources of a step.
fn base_report(
    units: &units::Units,
    to: &ReportTo,
    target: Target,
) -> gantry_kube::exported::ReportPlan {
    let (orchestrator, run, run_name) = target.run_placeholders();
    gantry_kube::exported::ReportPlan {
        server: to.server.clone(),
        orchestrator: orchestrator.into(),
        run: run.into(),
        run_name: run_name.into(),
        pipeline: units.pipeline.clone(),
        steps: units.units.len() as u32,
        retries: 0,
        cache: false,
        cpu_millis: 0,
        memory_bytes: 0,
        gpu: 0,
        key: None,
        effect: None,
        spec: None,
    }
}

/// The exit handler's name (Argo template, KFP task and component): it reports the
/// workflow's end (`gantry step-end`) when the steps report (`--report-to`).
pub(crate) const END_NAME: &str = "gantry-end";

/// The exit handler's plan: no inputs or outputs, the report's run and server.
pub(crate) fn end_plan(
    units: &units::Units,
    opts: &CompileOptions,
    target: Target,
) -> Option<gantry_kube::contract::StepPlan> {
    let to = opts.report.as_ref()?;
    Some(gantry_kube::contract::StepPlan {
        v: gantry_kube::contract::VERSION,
        artifacts: opts.artifacts.clone(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        params: serde_json::json!({}),
        report: Some(gantry_kube::exported::ReportPlan {
            cpu_millis: END_CPU_MILLIS,
            memory_bytes: END_MEMORY_BYTES,
            spec: opts
                .spec_text
                .as_deref()
                .and_then(gantry_kube::exported::encode_spec),
            ..base_report(units, to, target)
        }),
    })
}

/// The exit handler's plan as JSON, where it reports, and its CPU and memory as Kubernetes
/// quantities.
pub(crate) fn end_parts<'a>(
    units: &units::Units,
    opts: &'a CompileOptions,
    target: Target,
) -> Result<(String, &'a ReportTo, String, String), CompileError> {
    let (Some(plan), Some(to)) = (end_plan(units, opts, target), &opts.report) else {
        return Err(CompileError::Shape("no report to end".into()));
    };
    let plan = serde_json::to_string(&plan).map_err(|e| CompileError::Serialize(e.to_string()))?;
    Ok((
        plan,
        to,
        format!("{END_CPU_MILLIS}m"),
        END_MEMORY_BYTES.to_string(),
    ))
}

/// What the exit handler asks for (one HTTP call).
pub(crate) const END_CPU_MILLIS: u64 = 100;
pub(crate) const END_MEMORY_BYTES: u64 = 128 << 20;

/// The environment variable holding a step's position in the plan, for its report.
pub const SEQ_ENV: &str = gantry_kube::exported::SEQ_ENV;

/// Whether an image reference names its image by digest.
pub(crate) fn pinned(image: &str) -> bool {
    image
        .rsplit_once('@')
        .is_some_and(|(name, digest)| !name.is_empty() && gantry_kube::contract::is_digest(digest))
}

/// Serializes to YAML, long strings on one line (quoted), never folded.
pub(crate) fn to_yaml(value: &serde_json::Value) -> Result<String, CompileError> {
    let opts = serde_saphyr::ser_options! { prefer_block_scalars: false };
    serde_saphyr::to_string_with_options(value, opts)
        .map_err(|e| CompileError::Serialize(e.to_string()))
}
