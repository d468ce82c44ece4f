//! `gantry step-exec` in an exported workflow (`gantry compile --report-to`): Gantry's cache
//! before the command, a report to the server after it (see `gantry_kube::exported`).
//!
//! The server is a help, not a dependency: when it cannot be reached, or refuses, the step
//! says so in its log and runs uncached and unrecorded.

use std::collections::BTreeMap;
use std::time::Duration;

use gantry_artifacts::ArtifactStore;
use gantry_kube::contract::StepPlan;
use gantry_kube::exported::{
    CacheAnswer, CacheHit, CacheQuery, ExportedAnswer, ExportedEnd, ExportedEndAnswer,
    ExportedStatus, ExportedStep, ReportPlan, SEQ_ENV, STEP_ENV, TOKEN_ENV,
};
use gantry_spec::{CacheKeyMaterial, ParamValue};

use crate::exit;
use crate::remote::{Client, code_of};

/// How long one call to the server may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries of a report (a server restarting, a network blip), with a growing pause between.
const REPORT_TRIES: u32 = 4;

pub struct Reporter {
    plan: ReportPlan,
    client: Client,
    step: String,
    seq: u32,
    /// The step's cache key, when its image is pinned.
    key: Option<String>,
}

/// A variable of the step: as `--env` gives it (KFP), else from our environment (Argo).
fn step_var(extra: &[(String, String)], name: &str) -> Option<String> {
    extra
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(name).ok())
}

impl Reporter {
    /// `None` when the plan does not ask for reports, or when they cannot be made (said why).
    pub fn new(plan: &StepPlan, extra_env: &[(String, String)], argv: &[String]) -> Option<Self> {
        let report = plan.report.clone()?;
        let client = client(&report, "reporting")?;
        let step = step_var(extra_env, STEP_ENV).filter(|s| !s.is_empty());
        let seq = step_var(extra_env, SEQ_ENV).and_then(|s| s.parse::<u32>().ok());
        let (Some(step), Some(seq)) = (step, seq) else {
            eprintln!(
                "gantry: not reporting to {}: {STEP_ENV} and {SEQ_ENV} must name the step and its position",
                report.server
            );
            return None;
        };
        let key = match cache_key(plan, &report, extra_env, argv) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("gantry: no cache key for this step ({e}); it runs uncached");
                None
            }
        };
        Some(Reporter {
            plan: report,
            client,
            step,
            seq,
            key,
        })
    }

    /// A previous execution of the same step whose outputs are all in `store`.
    pub async fn lookup(&self, plan: &StepPlan, store: &ArtifactStore) -> Option<CacheHit> {
        let key = self.key.as_ref().filter(|_| self.plan.cache)?;
        let query = CacheQuery {
            pipeline: self.plan.pipeline.clone(),
            key: key.clone(),
            outputs: plan.outputs.clone(),
        };
        let body = serde_json::to_value(&query).ok()?;
        let answer = match self.client.post(&["exported", "cache"], &body).await {
            Ok(v) => v,
            Err(e) => {
                eprintln!(
                    "gantry: cache lookup at {} failed: {e:#}; running the step",
                    self.plan.server
                );
                return None;
            }
        };
        let hit = match serde_json::from_value::<CacheAnswer>(answer) {
            Ok(a) => a.hit?,
            Err(e) => {
                eprintln!(
                    "gantry: the server's cache answer is not understood ({e}); running the step"
                );
                return None;
            }
        };
        for name in &plan.outputs {
            let present = match hit.outputs.get(name) {
                Some(d) => matches!(store.stat(d).await, Ok(Some(_))),
                None => false,
            };
            if !present {
                eprintln!(
                    "gantry: the cached output {name} of step run {} is not in {}; running the step",
                    hit.step_run, plan.artifacts
                );
                return None;
            }
        }
        Some(hit)
    }

    /// Sends the attempt's report; failures are said, never fatal, except for a step with a
    /// side effect (`register`, `deploy`), which did its work only once the server acted on
    /// the report: the reason it did not is returned, and fails the step.
    pub async fn send(&self, plan: &StepPlan, done: Done) -> Option<String> {
        let report = ExportedStep {
            orchestrator: self.plan.orchestrator.clone(),
            run: self.plan.run.clone(),
            run_name: self.plan.run_name.clone(),
            pipeline: self.plan.pipeline.clone(),
            step: self.step.clone(),
            seq: self.seq,
            steps: self.plan.steps,
            retries: self.plan.retries,
            status: done.status,
            exit_code: done.exit_code,
            reason: done.reason,
            cache_key: self.key.clone(),
            cached_from: done.cached_from,
            image_digest: self.plan.key.as_ref().map(|k| k.image_digest.clone()),
            started_at_ms: done.started_at_ms,
            finished_at_ms: done.finished_at_ms.max(done.started_at_ms),
            cpu_millis: self.plan.cpu_millis,
            memory_bytes: self.plan.memory_bytes,
            gpu: self.plan.gpu,
            peak_memory_bytes: done.peak_memory_bytes,
            cpu_micros: done.cpu_micros,
            wall_ms: done.wall_ms,
            inputs: plan
                .inputs
                .iter()
                .map(|i| (i.path.clone(), i.digest.clone()))
                .collect(),
            outputs: done.outputs,
            metrics: done.metrics,
            params: plan.params.clone(),
            effect: self.plan.effect.clone(),
            // Chosen here, once per attempt: the retries below send the same id.
            step_run: Some(gantry_store::new_id("step")),
        };
        let effect = self.plan.effect.as_deref();
        let body = match serde_json::to_value(&report) {
            Ok(b) => b,
            Err(e) => return effect.map(|_| format!("the report could not be written: {e}")),
        };
        let sent = post_with_retries(&self.client, &["exported", "steps"], &body).await;
        match sent {
            Ok(v) => match serde_json::from_value::<ExportedAnswer>(v) {
                Ok(a) => {
                    eprintln!(
                        "gantry: reported to {}: run {}, step run {} (attempt {}), run {}",
                        self.plan.server, a.run_id, a.step_run_id, a.attempt, a.run_status
                    );
                    if let Some(line) = &a.effect {
                        eprintln!("gantry: {line}");
                    }
                    a.effect_error
                }
                Err(e) => {
                    eprintln!("gantry: reported to {}", self.plan.server);
                    effect.map(|what| {
                        format!(
                            "the server's answer to the `{what}` step is not understood ({e}); its side effect is unknown"
                        )
                    })
                }
            },
            Err(e) => {
                eprintln!(
                    "gantry: could not report to {}: {e:#}; this attempt is not recorded in gantry",
                    self.plan.server
                );
                effect.map(|what| {
                    format!(
                        "a `{what}` step acts through the Gantry server, which did not take its report"
                    )
                })
            }
        }
    }
}

/// The server's client with the token from [`TOKEN_ENV`]; `None` (said why, `doing` naming
/// what is skipped) without a token or with a bad URL.
fn client(report: &ReportPlan, doing: &str) -> Option<Client> {
    let Some(token) = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
    else {
        eprintln!(
            "gantry: not {doing} to {}: no token in {TOKEN_ENV} (the Secret of --report-token-secret, key `token`)",
            report.server
        );
        return None;
    };
    match Client::new(&report.server, Some(token.trim())) {
        Ok(c) => Some(c.with_timeout(CALL_TIMEOUT)),
        Err(e) => {
            eprintln!("gantry: not {doing}: {e:#}");
            None
        }
    }
}

/// A POST to the server, tried again on a server away or failing (a refusal, 4xx, will not
/// change on a retry), with a growing pause between tries.
async fn post_with_retries(
    client: &Client,
    path: &[&str],
    body: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let mut pause = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match client.post(path, body).await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let retry = matches!(code_of(&e), Some(exit::ENVIRONMENT | exit::INTERNAL));
                if !retry || attempt == REPORT_TRIES {
                    return Err(e);
                }
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
        }
    }
}

/// How the orchestrator says the workflow ended, as `gantry step-end` is given it.
pub enum EndStatus {
    /// Argo: `{{workflow.status}}` and `{{workflow.failures}}`.
    Argo {
        status: String,
        failures: Option<String>,
    },
    /// KFP: the exit task's `PipelineTaskFinalStatus` as JSON (`state`, `error.message`).
    Kfp(String),
}

/// `gantry step-end`, the exported workflow's exit handler: tells the server how the workflow
/// ended. It never fails the workflow: what goes wrong is said in its log, and it exits 0.
pub async fn end(given_plan: Option<&str>, status: EndStatus) -> anyhow::Result<u8> {
    let plan = crate::step_exec::read_plan(given_plan)?;
    let Some(report) = plan.report.clone() else {
        return Err(crate::exit::coded(
            exit::USAGE,
            "the plan has no `report` (compile with --report-to)",
        ));
    };
    let (status, failures) = match status {
        EndStatus::Argo { status, failures } => (status, failures),
        EndStatus::Kfp(json) => match serde_json::from_str::<serde_json::Value>(&json) {
            Ok(v) => (
                v["state"].as_str().unwrap_or_default().to_string(),
                v["error"]["message"]
                    .as_str()
                    .filter(|m| !m.is_empty())
                    .map(str::to_string),
            ),
            Err(e) => {
                eprintln!(
                    "gantry: the final status {json:?} is not JSON ({e}); not reporting the workflow's end"
                );
                return Ok(exit::OK);
            }
        },
    };
    let Some(client) = client(&report, "reporting the workflow's end") else {
        return Ok(exit::OK);
    };
    let body = ExportedEnd {
        orchestrator: report.orchestrator.clone(),
        run: report.run.clone(),
        run_name: report.run_name.clone(),
        pipeline: report.pipeline.clone(),
        status,
        failures,
        finished_at_ms: gantry_engine::now_ms(),
        params: plan.params.clone(),
        spec: report.spec.clone(),
    };
    let body = serde_json::to_value(&body)?;
    match post_with_retries(&client, &["exported", "runs"], &body).await {
        Ok(v) => match serde_json::from_value::<ExportedEndAnswer>(v) {
            Ok(a) => eprintln!(
                "gantry: reported the workflow's end to {}: run {} {}",
                report.server, a.run_id, a.run_status
            ),
            Err(_) => eprintln!("gantry: reported the workflow's end to {}", report.server),
        },
        Err(e) => eprintln!(
            "gantry: could not report the workflow's end to {}: {e:#}",
            report.server
        ),
    }
    Ok(exit::OK)
}

/// How the attempt ended, for [`Reporter::send`].
pub struct Done {
    pub status: ExportedStatus,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub cached_from: Option<String>,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub peak_memory_bytes: u64,
    pub cpu_micros: u64,
    pub wall_ms: u64,
    pub outputs: BTreeMap<String, String>,
    pub metrics: Option<String>,
}

/// The engine's cache key of this step, from what is about to run: the same material
/// (`gantry_spec::cache_key`), so exported runs and runs on Gantry share results.
fn cache_key(
    plan: &StepPlan,
    report: &ReportPlan,
    extra_env: &[(String, String)],
    argv: &[String],
) -> Result<Option<String>, String> {
    let Some(k) = &report.key else {
        return Ok(None);
    };
    let env: BTreeMap<String, String> = k
        .env
        .iter()
        .map(|name| (name.clone(), step_var(extra_env, name).unwrap_or_default()))
        .collect();
    let mut params: BTreeMap<String, ParamValue> = serde_json::from_value(plan.params.clone())
        .map_err(|e| format!("the plan's params: {e}"))?;
    for name in &k.float_params {
        if let Some(ParamValue::Int(i)) = params.get(name) {
            let f = *i as f64;
            params.insert(name.clone(), ParamValue::Float(f));
        }
    }
    let inputs: BTreeMap<String, String> = plan
        .inputs
        .iter()
        .map(|i| (i.path.clone(), i.digest.clone()))
        .collect();
    let component_version = if k.builtin {
        let name = argv
            .get(2)
            .ok_or("a built-in step without a component name")?;
        let c = gantry_ml::component(name)
            .ok_or_else(|| format!("this gantry has no built-in component {name}"))?;
        Some(c.version)
    } else {
        None
    };
    Ok(Some(gantry_spec::cache_key(&CacheKeyMaterial {
        image_digest: &k.image_digest,
        command: argv,
        env: &env,
        params: &params,
        inputs: &inputs,
        outputs: &plan.outputs,
        component_version,
        resources_network: k.network,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_kube::contract::{PlannedInput, VERSION};
    use gantry_kube::exported::KeyPlan;

    fn plan(params: serde_json::Value) -> (StepPlan, ReportPlan) {
        let report = ReportPlan {
            server: "http://127.0.0.1:1".into(),
            orchestrator: "argo".into(),
            run: "uid".into(),
            run_name: "name".into(),
            pipeline: "p".into(),
            steps: 2,
            retries: 0,
            cache: true,
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            gpu: 0,
            effect: None,
            spec: None,
            key: Some(KeyPlan {
                image_digest: format!("sha256:{}", "a".repeat(64)),
                env: vec!["MODE".into()],
                network: false,
                builtin: false,
                float_params: vec!["lr".into()],
            }),
        };
        let plan = StepPlan {
            v: VERSION,
            artifacts: "s3://b/p".into(),
            inputs: vec![PlannedInput {
                path: "data".into(),
                digest: format!("sha256:{}", "b".repeat(64)),
            }],
            outputs: vec!["model".into()],
            params,
            report: Some(report.clone()),
        };
        (plan, report)
    }

    #[test]
    fn the_key_is_the_engines_key_of_the_same_step() {
        let (p, r) = plan(serde_json::json!({"lr": 1, "epochs": 3, "name": "x"}));
        let argv = vec!["python".to_string(), "train.py".to_string()];
        let env = vec![("MODE".to_string(), "fast".to_string())];
        let key = cache_key(&p, &r, &env, &argv).unwrap().unwrap();
        // What the engine computes for the same step (params typed as the spec declares).
        let expected = gantry_spec::cache_key(&CacheKeyMaterial {
            image_digest: &format!("sha256:{}", "a".repeat(64)),
            command: &argv,
            env: &BTreeMap::from([("MODE".to_string(), "fast".to_string())]),
            params: &BTreeMap::from([
                ("lr".to_string(), ParamValue::Float(1.0)),
                ("epochs".to_string(), ParamValue::Int(3)),
                ("name".to_string(), ParamValue::String("x".into())),
            ]),
            inputs: &BTreeMap::from([("data".to_string(), format!("sha256:{}", "b".repeat(64)))]),
            outputs: &["model".to_string()],
            component_version: None,
            resources_network: false,
        });
        assert_eq!(key, expected);
        // Another env value, another argument or another input: another key.
        let other_env = vec![("MODE".to_string(), "slow".to_string())];
        assert_ne!(cache_key(&p, &r, &other_env, &argv).unwrap().unwrap(), key);
        let other_argv = vec!["python".to_string(), "train2.py".to_string()];
        assert_ne!(cache_key(&p, &r, &env, &other_argv).unwrap().unwrap(), key);
        let mut p2 = p.clone();
        p2.inputs[0].digest = format!("sha256:{}", "c".repeat(64));
        assert_ne!(cache_key(&p2, &r, &env, &argv).unwrap().unwrap(), key);
        // An image by tag has no key.
        let mut r2 = r.clone();
        r2.key = None;
        assert_eq!(cache_key(&p, &r2, &env, &argv).unwrap(), None);
    }
}
