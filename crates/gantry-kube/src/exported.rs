//! Exported workflows (Argo Workflows, Kubeflow Pipelines) reporting to a Gantry server.
//!
//! `gantry compile --report-to URL` puts a [`ReportPlan`] into each step's plan. The wrapper
//! (`gantry step-exec`) then, with the token it finds in [`TOKEN_ENV`]:
//!
//! 1. computes the step's cache key from what it is about to run (the same material as the
//!    engine: image digest, the argv after `--`, the step's own env, params, input digests,
//!    outputs) and asks `POST /api/v1/exported/cache` ([`CacheQuery`] → [`CacheAnswer`]); on a
//!    hit whose outputs are in the store it skips the command and hands the orchestrator the
//!    stored digests;
//! 2. reports the attempt with `POST /api/v1/exported/steps` ([`ExportedStep`] →
//!    [`ExportedAnswer`]): the server records a run per workflow run, the step run with its
//!    usage, lineage and metrics, and the run's status.
//!
//! An unreachable server never fails a step: the wrapper says so in the step's log and goes
//! on uncached and unrecorded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::is_digest;

/// The environment variable holding the wrapper's API token (from a Secret).
pub const TOKEN_ENV: &str = "GANTRY_STEP_TOKEN";
/// The key of that Secret holding the token.
pub const TOKEN_KEY: &str = "token";
/// The step's position in the plan (its name is in `GANTRY_STEP`, as for every step): not in
/// the plan, so that a sweep's members, which differ in these only, share one template.
pub const SEQ_ENV: &str = "GANTRY_STEP_SEQ";
/// The step's name.
pub const STEP_ENV: &str = "GANTRY_STEP";

/// Orchestrators an exported run can come from.
pub const ORCHESTRATORS: [&str; 2] = ["argo", "kfp"];
/// Built-ins whose success the server acts on when their step reports: `register` records the
/// model version its `registration` output describes, `deploy` applies its `deployment`
/// request (as the engine does for Gantry's own runs).
pub const EFFECTS: [&str; 2] = ["register", "deploy"];

/// Where and as what a step of an exported workflow reports (part of the step plan; the
/// orchestrator substitutes its placeholders in `run`, `run_name`, params and inputs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportPlan {
    /// The Gantry server's base URL (`https://gantry.example:8080`).
    pub server: String,
    /// `argo` or `kfp`.
    pub orchestrator: String,
    /// The orchestrator's id of this run of the workflow (Argo's `workflow.uid`).
    pub run: String,
    /// Its name, for people (Argo's `workflow.name`).
    pub run_name: String,
    pub pipeline: String,
    /// How many steps the plan has: the run succeeded when all of them did.
    pub steps: u32,
    /// The step's `retries`: a failure of the last attempt fails the run.
    pub retries: u32,
    /// The step's `cache` setting: `false` runs it every time (it is still recorded).
    pub cache: bool,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpu: u32,
    /// What the cache key needs beyond what the wrapper sees; `None` when the image is not
    /// pinned by digest (`--allow-tags`): such a step is never cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyPlan>,
    /// One of [`EFFECTS`] when the step is that built-in: its success is only complete once the
    /// server has acted on the report, so the step fails when the server cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// The exit handler's plan only: the pipeline spec as written ([`encode_spec`]), stored
    /// with the run as its snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
}

/// The largest spec kept as an exported run's snapshot (it travels in the exit handler's
/// plan, an environment variable or argument of the pod).
pub const MAX_SPEC_BYTES: usize = 48 << 10;

/// The spec's text as it travels in a plan: base64, so that no orchestrator takes a `{{` of
/// the spec for one of its placeholders. `None` when it is over [`MAX_SPEC_BYTES`].
pub fn encode_spec(text: &str) -> Option<String> {
    use base64::Engine;
    (text.len() <= MAX_SPEC_BYTES).then(|| base64::engine::general_purpose::STANDARD.encode(text))
}

/// The spec's text from [`encode_spec`]'s form.
pub fn decode_spec(encoded: &str) -> Result<String, String> {
    use base64::Engine;
    if encoded.len() > MAX_SPEC_BYTES.div_ceil(3) * 4 {
        return Err(format!("is over {} KiB", MAX_SPEC_BYTES >> 10));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("is not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())
}

/// The parts of the cache key the wrapper cannot see itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPlan {
    pub image_digest: String,
    /// The names of the step's own `env:` (their values are read where the command gets them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    pub network: bool,
    /// A built-in component (its version is part of the key).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub builtin: bool,
    /// Params declared as numbers: an orchestrator may pass `1` for `1.0`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub float_params: Vec<String>,
}

impl ReportPlan {
    pub fn check(&self) -> Result<(), String> {
        let scheme_ok = self.server.starts_with("http://") || self.server.starts_with("https://");
        if !scheme_ok {
            return Err(format!(
                "report server {:?} is not an http:// or https:// URL",
                self.server
            ));
        }
        if !ORCHESTRATORS.contains(&self.orchestrator.as_str()) {
            return Err(format!("unknown orchestrator {:?}", self.orchestrator));
        }
        for (what, v) in [("run", &self.run), ("pipeline", &self.pipeline)] {
            if v.trim().is_empty() {
                return Err(format!("the report's {what} is empty"));
            }
        }
        if let Some(e) = &self.effect
            && !EFFECTS.contains(&e.as_str())
        {
            return Err(format!("unknown side effect {e:?}"));
        }
        if let Some(k) = &self.key
            && !is_digest(&k.image_digest)
        {
            return Err(format!(
                "the report's image digest {:?} is not a digest",
                k.image_digest
            ));
        }
        Ok(())
    }
}

/// `POST /api/v1/exported/cache`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheQuery {
    pub pipeline: String,
    pub key: String,
    /// The step's declared outputs: a hit must have every one.
    pub outputs: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheAnswer {
    pub hit: Option<CacheHit>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheHit {
    /// The step run that produced the outputs.
    pub step_run: String,
    pub run: String,
    pub outputs: BTreeMap<String, String>,
}

/// How an attempt ended, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportedStatus {
    Succeeded,
    Failed,
    /// Not run: the outputs of `cached_from` were reused.
    Cached,
    /// Stopped by the orchestrator (SIGTERM before the timeout).
    Cancelled,
}

/// `POST /api/v1/exported/steps`: one attempt of one step of an exported run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedStep {
    pub orchestrator: String,
    pub run: String,
    pub run_name: String,
    pub pipeline: String,
    pub step: String,
    pub seq: u32,
    pub steps: u32,
    pub retries: u32,
    pub status: ExportedStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpu: u32,
    #[serde(default)]
    pub peak_memory_bytes: u64,
    #[serde(default)]
    pub cpu_micros: u64,
    #[serde(default)]
    pub wall_ms: u64,
    /// Input path (below `/gantry/inputs`) → digest.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// The digest of the stored `/gantry/metrics.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// The run's params (recorded with the run when this report creates it).
    #[serde(default)]
    pub params: serde_json::Value,
    /// The plan's [`ReportPlan::effect`]: on success the server registers or deploys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// The id the attempt's step run gets ([`is_step_run_id`]), chosen by the wrapper once per
    /// attempt: a report sent again after its answer was lost is recorded, and acted on, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_run: Option<String>,
}

/// A step run id as the store makes them: `step` and 12 lowercase hex digits.
pub fn is_step_run_id(id: &str) -> bool {
    id.strip_prefix("step").is_some_and(|hex| {
        hex.len() == 12
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The longest text accepted in a report's names.
const MAX_NAME: usize = 512;

/// A known orchestrator and names of 1 to [`MAX_NAME`] characters without control characters;
/// else `(field, message)`.
fn check_names(orchestrator: &str, names: &[(&str, &String)]) -> Result<(), (String, String)> {
    if !ORCHESTRATORS.contains(&orchestrator) {
        return Err((
            "orchestrator".to_string(),
            format!("must be argo or kfp, got {orchestrator:?}"),
        ));
    }
    for (field, v) in names {
        if v.trim().is_empty() || v.len() > MAX_NAME || v.chars().any(char::is_control) {
            return Err((
                field.to_string(),
                format!("must be 1 to {MAX_NAME} characters without control characters"),
            ));
        }
    }
    Ok(())
}

impl ExportedStep {
    /// The first problem with the report: `(field, message)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, message: String| Err((field.to_string(), message));
        check_names(
            &self.orchestrator,
            &[
                ("run", &self.run),
                ("run_name", &self.run_name),
                ("pipeline", &self.pipeline),
                ("step", &self.step),
            ],
        )?;
        if self.steps == 0 || self.seq >= self.steps {
            return bad(
                "seq",
                format!(
                    "step {} of {} is not a position in the plan",
                    self.seq, self.steps
                ),
            );
        }
        if self.finished_at_ms < self.started_at_ms {
            return bad("finished_at_ms", "is before started_at_ms".to_string());
        }
        for (field, d) in [
            ("cache_key", &self.cache_key),
            ("image_digest", &self.image_digest),
            ("metrics", &self.metrics),
        ] {
            if let Some(d) = d
                && !is_digest(d)
            {
                return bad(field, format!("{d:?} is not sha256:<64 hex digits>"));
            }
        }
        for (side, map) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            for (name, d) in map {
                if name.is_empty() || name.len() > MAX_NAME {
                    return bad(
                        side,
                        format!("the name {name:?} is not 1 to {MAX_NAME} characters"),
                    );
                }
                if !is_digest(d) {
                    return bad(
                        &format!("{side}.{name}"),
                        format!("{d:?} is not sha256:<64 hex digits>"),
                    );
                }
            }
        }
        if let Some(e) = &self.effect
            && !EFFECTS.contains(&e.as_str())
        {
            return bad("effect", format!("must be one of {EFFECTS:?}, got {e:?}"));
        }
        if let Some(id) = &self.step_run
            && !is_step_run_id(id)
        {
            return bad(
                "step_run",
                format!("{id:?} is not `step` and 12 lowercase hex digits"),
            );
        }
        match self.status {
            ExportedStatus::Cached if self.cached_from.is_none() || self.cache_key.is_none() => {
                return bad(
                    "cached_from",
                    "a cached step names the step run it reused and its cache key".into(),
                );
            }
            ExportedStatus::Cached => {}
            _ if self.cached_from.is_some() => {
                return bad(
                    "cached_from",
                    "only a cached step reuses another step run's outputs".into(),
                );
            }
            ExportedStatus::Failed | ExportedStatus::Cancelled if !self.outputs.is_empty() => {
                return bad(
                    "outputs",
                    "a step that did not succeed has no outputs".into(),
                );
            }
            _ => {}
        }
        Ok(())
    }
}

/// What the server answers to a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedAnswer {
    /// Gantry's id of the workflow run.
    pub run_id: String,
    pub step_run_id: String,
    pub attempt: u32,
    /// The run's status after this report.
    pub run_status: String,
    /// What the step's side effect did (`registered model iris v3`), for the step's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// Why the side effect failed: the attempt is recorded failed with it, and the wrapper
    /// fails the step so that the orchestrator sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect_error: Option<String>,
}

/// `POST /api/v1/exported/runs`: how the whole workflow ended, from its exit handler
/// (`gantry step-end`), so that a run whose step died before reporting (evicted, OOM-killed,
/// never scheduled) does not stay `running`, and one stopped by the orchestrator ends as such.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEnd {
    pub orchestrator: String,
    pub run: String,
    pub run_name: String,
    pub pipeline: String,
    /// The orchestrator's word: Argo's `workflow.status` (`Succeeded`, `Failed`, `Error`),
    /// KFP's final state (`SUCCEEDED`, `FAILED`, `CANCELED`, ...).
    pub status: String,
    /// What the orchestrator says went wrong (Argo's `workflow.failures`, KFP's error), as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<String>,
    pub finished_at_ms: i64,
    /// The run's params (recorded with the run when no step reported before).
    #[serde(default)]
    pub params: serde_json::Value,
    /// The pipeline spec ([`encode_spec`]), stored as the run's snapshot when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<String>,
}

/// How a workflow ended, in Gantry's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkflowEnd {
    Succeeded,
    Failed,
    Cancelled,
}

impl ExportedEnd {
    /// The orchestrator's final status in Gantry's terms, or the field at fault.
    pub fn outcome(&self) -> Result<WorkflowEnd, (String, String)> {
        check_names(
            &self.orchestrator,
            &[
                ("run", &self.run),
                ("run_name", &self.run_name),
                ("pipeline", &self.pipeline),
            ],
        )?;
        match self.status.to_ascii_lowercase().as_str() {
            "succeeded" => Ok(WorkflowEnd::Succeeded),
            "failed" | "error" | "system_error" => Ok(WorkflowEnd::Failed),
            "canceled" | "cancelled" | "cancelling" | "canceling" => Ok(WorkflowEnd::Cancelled),
            other => Err((
                "status".to_string(),
                format!(
                    "{other:?} is not a final status (Succeeded, Failed, Error, SUCCEEDED, FAILED, CANCELED)"
                ),
            )),
        }
    }

    /// One line about what failed, for the run's error: Argo's failures are a JSON list of
    /// nodes (`displayName`, `message`), KFP's a message.
    pub fn summary(&self) -> String {
        let status = &self.status;
        let Some(text) = self
            .failures
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return format!("the workflow ended {status}");
        };
        use serde_json::Value;
        let mut value =
            serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.into()));
        // Argo 3.5 and later pass the list quoted (a JSON string holding the JSON list).
        if let Value::String(inner) = &value
            && let Ok(list @ (Value::Array(_) | Value::Null)) = serde_json::from_str(inner)
        {
            value = list;
        }
        let detail = match value {
            Value::Array(nodes) if !nodes.is_empty() => nodes
                .iter()
                .map(|n| {
                    let name = n["displayName"].as_str().unwrap_or("?");
                    match n["message"].as_str().filter(|m| !m.is_empty()) {
                        Some(m) => format!("{name}: {m}"),
                        None => name.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            Value::String(m) if !m.trim().is_empty() => m,
            Value::Array(_) | Value::Null => return format!("the workflow ended {status}"),
            _ => text.to_string(),
        };
        let line = format!("the workflow ended {status}: {detail}");
        line.chars().take(4096).collect()
    }
}

/// What the server answers to a workflow's end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportedEndAnswer {
    pub run_id: String,
    /// The run's status after it.
    pub run_status: String,
}

/// Gantry's id of an exported run: the same for every step that reports it, so reports that
/// arrive together make one run.
pub fn run_id(orchestrator: &str, run: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(format!("{orchestrator}\0{run}").as_bytes());
    format!("run-{}", &hex::encode(hash)[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn report() -> ExportedStep {
        ExportedStep {
            orchestrator: "argo".into(),
            run: "0b9c-uid".into(),
            run_name: "iris-x7k2p".into(),
            pipeline: "iris".into(),
            step: "train".into(),
            seq: 1,
            steps: 3,
            retries: 0,
            status: ExportedStatus::Succeeded,
            exit_code: Some(0),
            reason: None,
            cache_key: Some(digest('a')),
            cached_from: None,
            image_digest: Some(digest('b')),
            started_at_ms: 10,
            finished_at_ms: 20,
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            gpu: 0,
            effect: None,
            step_run: None,
            peak_memory_bytes: 5,
            cpu_micros: 6,
            wall_ms: 10,
            inputs: BTreeMap::from([("data".to_string(), digest('c'))]),
            outputs: BTreeMap::from([("model".to_string(), digest('d'))]),
            metrics: None,
            params: serde_json::json!({}),
        }
    }

    #[test]
    fn reports_are_checked_field_by_field() {
        assert_eq!(report().check(), Ok(()));
        let field = |r: ExportedStep| r.check().unwrap_err().0;
        assert_eq!(
            field(ExportedStep {
                orchestrator: "airflow".into(),
                ..report()
            }),
            "orchestrator"
        );
        assert_eq!(field(ExportedStep { seq: 3, ..report() }), "seq");
        assert_eq!(
            field(ExportedStep {
                step: "a\nb".into(),
                ..report()
            }),
            "step"
        );
        let mut r = report();
        r.outputs.insert("x".into(), "sha256:nope".into());
        assert_eq!(field(r), "outputs.x");
        assert_eq!(
            field(ExportedStep {
                status: ExportedStatus::Cached,
                ..report()
            }),
            "cached_from"
        );
        assert_eq!(
            field(ExportedStep {
                cached_from: Some("step-1".into()),
                ..report()
            }),
            "cached_from"
        );
        assert_eq!(
            field(ExportedStep {
                status: ExportedStatus::Failed,
                ..report()
            }),
            "outputs"
        );
        assert_eq!(
            field(ExportedStep {
                finished_at_ms: 1,
                ..report()
            }),
            "finished_at_ms"
        );
        assert_eq!(
            field(ExportedStep {
                effect: Some("delete".into()),
                ..report()
            }),
            "effect"
        );
        for bad in [
            "step",
            "step0123456789AB",
            "run-0123456789ab",
            "step0123456789abc",
        ] {
            assert_eq!(
                field(ExportedStep {
                    step_run: Some(bad.into()),
                    ..report()
                }),
                "step_run",
                "{bad}"
            );
        }
        let chosen = ExportedStep {
            step_run: Some("step0123456789ab".into()),
            effect: Some("register".into()),
            ..report()
        };
        assert_eq!(chosen.check(), Ok(()));
    }

    #[test]
    fn specs_travel_as_base64_within_a_size() {
        let text = "name: p # {{workflow.name}} and ${params.x}, ünïcode\n";
        let encoded = encode_spec(text).unwrap();
        assert!(!encoded.contains("{{"), "{encoded}");
        assert_eq!(decode_spec(&encoded).as_deref(), Ok(text));
        let big = "x".repeat(MAX_SPEC_BYTES + 1);
        assert_eq!(encode_spec(&big), None);
        assert!(encode_spec(&big[1..]).is_some());
        use base64::Engine;
        let too_big = base64::engine::general_purpose::STANDARD.encode(&big);
        assert!(decode_spec(&too_big).unwrap_err().contains("KiB"));
        assert!(decode_spec("not base64!").unwrap_err().contains("base64"));
        let latin1 = base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe]);
        assert!(decode_spec(&latin1).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn a_workflows_end_is_read_in_each_orchestrators_words() {
        let end = |status: &str, failures: Option<&str>| ExportedEnd {
            orchestrator: "argo".into(),
            run: "uid".into(),
            run_name: "iris-x".into(),
            pipeline: "iris".into(),
            status: status.into(),
            failures: failures.map(str::to_string),
            finished_at_ms: 1,
            params: serde_json::json!({}),
            spec: None,
        };
        for (status, want) in [
            ("Succeeded", WorkflowEnd::Succeeded),
            ("Failed", WorkflowEnd::Failed),
            ("Error", WorkflowEnd::Failed),
            ("SUCCEEDED", WorkflowEnd::Succeeded),
            ("FAILED", WorkflowEnd::Failed),
            ("CANCELED", WorkflowEnd::Cancelled),
            ("CANCELLED", WorkflowEnd::Cancelled),
        ] {
            assert_eq!(end(status, None).outcome(), Ok(want), "{status}");
        }
        assert_eq!(end("Running", None).outcome().unwrap_err().0, "status");
        let mut bad = end("Failed", None);
        bad.run_name = "a\nb".into();
        assert_eq!(bad.outcome().unwrap_err().0, "run_name");

        // Argo's failures: a JSON list of nodes, plain (older Argo) or quoted (3.5 and later).
        let list = r#"[{"displayName":"train","message":"OOMKilled (exit code 137)"},{"displayName":"eval","message":""}]"#;
        let want = "the workflow ended Failed: train: OOMKilled (exit code 137); eval";
        assert_eq!(end("Failed", Some(list)).summary(), want);
        let quoted = serde_json::to_string(list).unwrap();
        assert_eq!(end("Failed", Some(&quoted)).summary(), want);
        for none in ["null", "\"null\"", "[]", "", "  "] {
            assert_eq!(
                end("Failed", Some(none)).summary(),
                "the workflow ended Failed",
                "{none:?}"
            );
        }
        // KFP's error message, as text.
        assert_eq!(
            end("FAILED", Some("pod upper was evicted")).summary(),
            "the workflow ended FAILED: pod upper was evicted"
        );
    }

    #[test]
    fn an_exported_run_has_one_id_per_orchestrator_run() {
        let a = run_id("argo", "uid-1");
        assert_eq!(a, run_id("argo", "uid-1"));
        assert_ne!(a, run_id("argo", "uid-2"));
        assert_ne!(a, run_id("kfp", "uid-1"));
        assert!(a.starts_with("run-") && a.len() == 16, "{a}");
    }

    #[test]
    fn report_plans_are_checked() {
        let mut plan = ReportPlan {
            server: "https://gantry.example".into(),
            orchestrator: "argo".into(),
            run: "{{workflow.uid}}".into(),
            run_name: "{{workflow.name}}".into(),
            pipeline: "iris".into(),
            steps: 1,
            retries: 0,
            cache: true,
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            gpu: 0,
            effect: None,
            spec: None,
            key: Some(KeyPlan {
                image_digest: digest('a'),
                env: vec![],
                network: false,
                builtin: false,
                float_params: vec![],
            }),
        };
        assert_eq!(plan.check(), Ok(()));
        plan.server = "gantry.example".into();
        assert!(plan.check().is_err());
        plan.server = "http://gantry".into();
        if let Some(k) = plan.key.as_mut() {
            k.image_digest = "latest".into();
        }
        assert!(plan.check().is_err());
    }
}
