//! `register`: the pure part of registering a model: check the quality gate
//! and describe the registration. The engine records it in the model registry
//! after the step succeeds.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::MlError;
use crate::components::{ComponentIo, ComponentOutcome, json_bytes};
use crate::evaluate::report_metrics;
use crate::gate::{self, Check};
use crate::model::{Model, Task};
use crate::options::{OptionInfo, OptionKind, Options};

pub(crate) const NAME: &str = "register";

pub(crate) const OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        name: "model",
        kind: OptionKind::String,
        default: "(required)",
        description: "Registered model name (letters, digits, `_ . -`).",
    },
    OptionInfo {
        name: "alias",
        kind: OptionKind::String,
        default: "",
        description: "Alias to point at the new version, e.g. `staging` or `champion`.",
    },
    OptionInfo {
        name: "require",
        kind: OptionKind::String,
        default: "",
        description: "Quality gate, e.g. `accuracy >= 0.9 and f1_macro > 0.85`: `metric op number` joined with `and`; ops >=, >, <=, <, ==, !=.",
    },
    OptionInfo {
        name: "description",
        kind: OptionKind::String,
        default: "",
        description: "Free text stored with the version.",
    },
];

pub(crate) const NOTES: &str = "\
The gate is evaluated against the metrics of the `report` input (evaluate's: `accuracy`, \
`rmse`, …) or, without one, against the model's own metrics (`validation.accuracy`, …). An unmet \
gate fails the step naming each metric, its value and the threshold, and nothing is registered; \
an unknown metric fails it listing the available ones. Output `registration` is a JSON file \
(`format: gantry.registration`): model name, alias, description, algorithm, task, label, the \
metrics and where they came from, the gate's checks, and the sha256 of every file of the model \
artifact. The registry entry itself is written by the engine.";

pub const FORMAT: &str = "gantry.registration";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub format: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub algorithm: String,
    pub task: Task,
    pub label: String,
    /// `report` (evaluate's metrics) or `model` (train's validation metrics).
    pub metrics_source: String,
    pub metrics: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateOutcome>,
    /// sha256 of each file of the model artifact, by relative path.
    pub files: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateOutcome {
    pub expression: String,
    pub checks: Vec<Check>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Parses the gate before the run (from `validate_with`), unless it is templated.
pub(crate) fn check_options(opts: &Options) -> Result<(), MlError> {
    match opts.string("require")? {
        Some(g) if !g.contains("${") => gate::parse(&g).map(|_| ()),
        _ => Ok(()),
    }
}

pub(crate) fn run(io: &ComponentIo, opts: &Options) -> Result<ComponentOutcome, MlError> {
    let name = opts.required_string("model", "name the registered model, e.g. `model: iris`")?;
    if !valid_name(&name) {
        return Err(opts.error(format!(
            "`model` `{name}` must be 1–128 letters, digits, `_`, `.` or `-`"
        )));
    }
    let alias = opts.string("alias")?;
    if let Some(a) = alias.as_deref().filter(|a| !valid_name(a)) {
        return Err(opts.error(format!(
            "`alias` `{a}` must be 1–128 letters, digits, `_`, `.` or `-`"
        )));
    }
    // Parse the gate first: a typo should fail before any file is read.
    let gate = opts
        .string("require")?
        .map(|g| gate::parse(&g))
        .transpose()?;
    let model_path = io.input("model");
    let model = Model::load(&model_path)?;
    let (metrics, source) = match io.optional_input("report") {
        Some(report) => (report_metrics(&report)?, "report"),
        None => (model.metrics.clone(), "model"),
    };
    let gate = match gate {
        Some(g) => {
            let checks = g.require(&metrics)?;
            Some(GateOutcome {
                expression: g.expression,
                checks,
            })
        }
        None => None,
    };
    let registration = Registration {
        format: FORMAT.to_string(),
        model: name.clone(),
        alias: alias.clone(),
        description: opts.string("description")?,
        algorithm: model.algorithm.clone(),
        task: model.task,
        label: model.label.clone(),
        metrics_source: source.to_string(),
        metrics: metrics.clone(),
        gate,
        files: file_digests(&model_path)?,
    };
    io.write_file_output("registration", &json_bytes(&registration)?)?;
    let mut summary = format!(
        "model `{name}`{} ready to register ({} {}, metrics from the {source})\n",
        alias.map_or(String::new(), |a| format!(" (alias `{a}`)")),
        model.algorithm,
        model.task.name()
    );
    if let Some(g) = &registration.gate {
        for c in &g.checks {
            summary.push_str(&format!(
                "- gate: {} = {} ✓ ({})\n",
                c.condition.metric, c.value, c.condition
            ));
        }
    }
    Ok(ComponentOutcome { metrics, summary })
}

/// sha256 of every regular file under `path` (or of `path` itself), by
/// relative path with `/` separators.
pub fn file_digests(path: &Path) -> Result<BTreeMap<String, String>, MlError> {
    let mut out = BTreeMap::new();
    if path.is_file() {
        let name = path
            .file_name()
            .map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned());
        out.insert(name, digest_file(path)?);
        return Ok(out);
    }
    walk(path, "", &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) -> Result<(), MlError> {
    for entry in fs::read_dir(dir).map_err(|e| MlError::io("list", dir, e))? {
        let entry = entry.map_err(|e| MlError::io("list", dir, e))?;
        let rel = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let ty = entry
            .file_type()
            .map_err(|e| MlError::io("inspect", &entry.path(), e))?;
        if ty.is_dir() {
            walk(&entry.path(), &format!("{rel}/"), out)?;
        } else if ty.is_file() {
            out.insert(rel, digest_file(&entry.path())?);
        }
    }
    Ok(())
}

fn digest_file(path: &Path) -> Result<String, MlError> {
    let bytes = fs::read(path).map_err(|e| MlError::io("read", path, e))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}
