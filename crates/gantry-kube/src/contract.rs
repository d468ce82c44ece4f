//! What travels between the Kubernetes runtime and the `gantry` binary inside a step's pod.
//!
//! The runtime hands the pod a [`StepPlan`] (in the [`PLAN_ENV`] environment variable of both
//! containers): the init container (`gantry step-fetch`) fetches the inputs by digest into
//! `/gantry/inputs` and writes `/gantry/params.json`; the step runs under `gantry step-exec --
//! CMD…`, which uploads the declared outputs (and `/gantry/metrics.json`) after the command
//! ends and writes a [`StepReport`] as the container's termination message. The pod never
//! reaches the metadata database: the runtime reads the report from the pod's status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The environment variable holding the JSON [`StepPlan`].
pub const PLAN_ENV: &str = "GANTRY_STEP_PLAN";
/// Where the wrapper writes its report (Kubernetes' default `terminationMessagePath`).
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Kubernetes keeps at most this much of a termination message.
pub const MAX_TERMINATION_MESSAGE: usize = 4096;
/// Where the init container leaves a copy of the static `gantry` binary for the wrapper.
pub const WRAPPER_BIN: &str = "/gantry/bin/gantry";
/// The step's working area (an emptyDir): `inputs/` (read-only for the step), `outputs/`,
/// `params.json`, `metrics.json`.
pub const WORK_DIR: &str = "/gantry";

/// The version of the plan and report formats.
pub const VERSION: u32 = 1;

/// One input: `path` under `/gantry/inputs` (a sweep's members are `input/label`), by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedInput {
    pub path: String,
    pub digest: String,
}

/// What one attempt's pod fetches and uploads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepPlan {
    pub v: u32,
    /// The artifact store, as `--artifacts` takes it (`s3://bucket/prefix`).
    pub artifacts: String,
    pub inputs: Vec<PlannedInput>,
    /// Declared outputs, each `/gantry/outputs/<name>`.
    pub outputs: Vec<String>,
    /// Written to `/gantry/params.json`.
    pub params: serde_json::Value,
    /// An exported workflow's step: where the wrapper looks up the cache and reports to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::exported::ReportPlan>,
}

impl StepPlan {
    /// Refuses input paths that could leave `/gantry/inputs` and output names that are not
    /// one plain file name: the plan is read inside the pod, but it is ours to get right.
    pub fn check(&self) -> Result<(), String> {
        if self.v != VERSION {
            return Err(format!(
                "step plan version {} (this gantry reads {VERSION})",
                self.v
            ));
        }
        for i in &self.inputs {
            let ok = !i.path.is_empty()
                && !i.path.starts_with('/')
                && i.path
                    .split('/')
                    .all(|c| !c.is_empty() && c != "." && c != "..");
            if !ok {
                return Err(format!("input path {:?} is not relative and plain", i.path));
            }
            if !is_digest(&i.digest) {
                return Err(format!(
                    "input {}: {:?} is not a sha256 digest",
                    i.path, i.digest
                ));
            }
        }
        for o in &self.outputs {
            if o.is_empty() || o.contains('/') || o == "." || o == ".." {
                return Err(format!("output name {o:?} is not one plain name"));
            }
        }
        if let Some(r) = &self.report {
            r.check()?;
        }
        Ok(())
    }
}

/// `sha256:` and 64 lowercase hex digits.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// How the step's command ended and what it left, as `gantry step-exec` saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    pub v: u32,
    /// The command's exit status; `None` when a signal ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended a process of the step (the container's cgroup says so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
    /// The wrapper stopped the command at its timeout (SIGTERM, the grace, SIGKILL).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// The wrapper stopped the command because the pod was asked to stop (a cancel).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// The step made more processes than its pids limit allows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pids_limit_hit: bool,
    #[serde(default)]
    pub peak_memory_bytes: u64,
    #[serde(default)]
    pub cpu_micros: u64,
    #[serde(default)]
    pub wall_ms: u64,
    /// Uploaded outputs: name → digest. A declared output the step did not write is absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// `/gantry/metrics.json`, uploaded as it was, when the step wrote one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// Why the wrapper could not do its part (an upload failed); the step then fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the whole report was larger than a termination message: the digest of the stored
    /// report, whose `outputs` and `metrics` replace these (which are then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<String>,
}

impl StepReport {
    /// How the command ended, as the engine's outcomes name it.
    pub fn termination(&self) -> gantry_runtime::Termination {
        use gantry_runtime::Termination;
        if self.oom_killed {
            Termination::OomKilled
        } else if self.timed_out {
            Termination::TimedOut
        } else if self.stopped {
            Termination::Cancelled
        } else if self.signal.is_some() {
            Termination::Signaled
        } else {
            Termination::Exited
        }
    }

    /// The report as one termination message, or `None` when it is over
    /// [`MAX_TERMINATION_MESSAGE`] (store it and send [`StepReport::pointer`] instead).
    pub fn message(&self) -> Option<String> {
        let text = serde_json::to_string(self).ok()?;
        (text.len() <= MAX_TERMINATION_MESSAGE).then_some(text)
    }

    /// The small report that points at the stored full one.
    pub fn pointer(&self, stored: &str) -> StepReport {
        StepReport {
            outputs: BTreeMap::new(),
            metrics: None,
            more: Some(stored.to_string()),
            error: self.error.as_ref().map(|e| e.chars().take(1024).collect()),
            ..self.clone()
        }
    }

    /// Reads a termination message; `Err` says why it is not a report of ours.
    pub fn parse(message: &str) -> Result<StepReport, String> {
        let report: StepReport = serde_json::from_str(message.trim())
            .map_err(|e| format!("the step's termination message is not a gantry report: {e}"))?;
        if report.v != VERSION {
            return Err(format!(
                "the step's report has version {} (this gantry reads {VERSION})",
                report.v
            ));
        }
        for (name, digest) in &report.outputs {
            if !is_digest(digest) {
                return Err(format!("output {name}: {digest:?} is not a digest"));
            }
        }
        for d in report.metrics.iter().chain(report.more.iter()) {
            if !is_digest(d) {
                return Err(format!("{d:?} is not a digest"));
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn plans_with_escaping_paths_or_bad_digests_are_refused() {
        let mut plan = StepPlan {
            v: VERSION,
            artifacts: "s3://b/p".into(),
            inputs: vec![PlannedInput {
                path: "models/lr-0.1".into(),
                digest: digest('a'),
            }],
            outputs: vec!["model".into()],
            params: serde_json::json!({}),
            report: None,
        };
        assert_eq!(plan.check(), Ok(()));
        for bad in ["../x", "/etc", "a//b", "a/./b", ""] {
            plan.inputs[0].path = bad.into();
            assert!(plan.check().is_err(), "{bad}");
        }
        plan.inputs[0].path = "x".into();
        plan.inputs[0].digest = "sha256:XYZ".into();
        assert!(plan.check().is_err());
        plan.inputs[0].digest = digest('b');
        plan.outputs = vec!["a/b".into()];
        assert!(plan.check().is_err());
    }

    #[test]
    fn reports_round_trip_and_large_ones_point_at_the_stored_copy() {
        let mut report = StepReport {
            v: VERSION,
            exit_code: Some(0),
            peak_memory_bytes: 1 << 20,
            ..Default::default()
        };
        report.outputs.insert("model".into(), digest('c'));
        let text = report.message().expect("small");
        assert!(text.len() < 300, "{text}");
        assert_eq!(StepReport::parse(&text), Ok(report.clone()));
        for i in 0..100 {
            report.outputs.insert(format!("output-{i}"), digest('d'));
        }
        assert!(report.message().is_none());
        let pointer = report.pointer(&digest('e'));
        let text = pointer.message().expect("small");
        let back = StepReport::parse(&text).expect("parses");
        assert_eq!(back.more, Some(digest('e')));
        assert_eq!(back.exit_code, Some(0));
        assert!(back.outputs.is_empty());
        assert!(StepReport::parse("oops").is_err());
        assert!(StepReport::parse(r#"{"v":2}"#).is_err());
        assert!(StepReport::parse(r#"{"v":1,"outputs":{"x":"nope"}}"#).is_err());
    }
}
