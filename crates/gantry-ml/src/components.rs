//! The component registry, the I/O contract of a component run, and the
//! generated reference documentation (docs/components.md).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::drift::{self, DriftReporter};
use crate::options::{OptionInfo, Options};
use crate::{
    MlError, deploy, evaluate, expectations, ingest, profile, register, select, split, train,
    transform,
};

/// Where a component reads and writes: plain directories, so the same code
/// runs inside a container (`/gantry/...`) and in tests.
pub struct ComponentIo<'a> {
    /// The step's `with:` values (an object; `null` means none).
    pub with: &'a Value,
    /// A directory with one entry (file or directory) per input.
    pub inputs: &'a Path,
    /// A directory where the component writes one entry per output.
    pub outputs: &'a Path,
}

/// What a successful run reports.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentOutcome {
    /// Step metrics (the engine writes them to `/gantry/metrics.json`).
    pub metrics: BTreeMap<String, f64>,
    /// Human-readable text (markdown) for the step log.
    pub summary: String,
}

/// A built-in component: what `uses: builtin/<name>` refers to.
#[derive(Debug)]
pub struct ComponentInfo {
    pub name: &'static str,
    /// Goes into cache keys; bumped whenever outputs could change for the same inputs.
    pub version: &'static str,
    pub description: &'static str,
    /// Required inputs.
    pub inputs: &'static [&'static str],
    pub optional_inputs: &'static [&'static str],
    /// Outputs always written.
    pub outputs: &'static [&'static str],
    /// Outputs written only under some options (e.g. split's `validation`).
    pub optional_outputs: &'static [&'static str],
    pub options: &'static [OptionInfo],
    /// Markdown details for the docs: formats, defaults, behaviour.
    pub notes: &'static str,
}

static COMPONENTS: [ComponentInfo; 11] = [
    ComponentInfo {
        name: ingest::NAME,
        version: "1",
        description: "Reads a CSV file (optionally gzip-compressed) into a typed dataset.",
        inputs: &[],
        optional_inputs: &["source"],
        outputs: &["dataset"],
        optional_outputs: &[],
        options: ingest::OPTIONS,
        notes: ingest::NOTES,
    },
    ComponentInfo {
        name: profile::NAME,
        version: "1",
        description: "Profiles a dataset: the reference profile that monitoring compares live traffic against.",
        inputs: &["dataset"],
        optional_inputs: &[],
        outputs: &["profile", "summary"],
        optional_outputs: &[],
        options: profile::OPTIONS,
        notes: profile::NOTES,
    },
    ComponentInfo {
        name: transform::NAME,
        version: "2",
        description: "Cleans and encodes a dataset (dedup, drop useless columns, impute, encode, standardize) and saves the fitted transform for serving.",
        inputs: &["dataset"],
        optional_inputs: &[],
        outputs: &["dataset", "transform"],
        optional_outputs: &[],
        options: transform::OPTIONS,
        notes: transform::NOTES,
    },
    ComponentInfo {
        name: expectations::NAME,
        version: "1",
        description: "Checks a dataset against expectations; any violation fails the step with a report of every failure.",
        inputs: &["dataset"],
        optional_inputs: &[],
        outputs: &["report"],
        optional_outputs: &[],
        options: expectations::OPTIONS,
        notes: expectations::NOTES,
    },
    ComponentInfo {
        name: drift::NAME,
        version: "1",
        description: "Compares a dataset with a reference (dataset or profile): drift per column (PSI, Jensen–Shannon, KS, chi²) in a JSON, markdown and HTML report; optionally fails the step on drift.",
        inputs: &["reference", "current"],
        optional_inputs: &[],
        outputs: &["report"],
        optional_outputs: &[],
        options: drift::OPTIONS,
        notes: drift::NOTES,
    },
    ComponentInfo {
        name: split::NAME,
        version: "1",
        description: "Splits a dataset into train / test (and optionally validation), seeded and optionally stratified.",
        inputs: &["dataset"],
        optional_inputs: &[],
        outputs: &["train", "test"],
        optional_outputs: &["validation"],
        options: split::OPTIONS,
        notes: split::NOTES,
    },
    ComponentInfo {
        name: train::NAME,
        version: "2",
        description: "Trains a model (logistic, linear, ridge, decision tree, random forest, gradient boosting); the artifact carries its preprocessing and serves raw rows.",
        inputs: &["train"],
        optional_inputs: &["transform", "validation"],
        outputs: &["model"],
        optional_outputs: &[],
        options: train::OPTIONS,
        notes: train::NOTES,
    },
    ComponentInfo {
        name: evaluate::NAME,
        version: "1",
        description: "Evaluates a model on a test dataset: classification or regression metrics and a report.",
        inputs: &["model", "test"],
        optional_inputs: &[],
        outputs: &["report"],
        optional_outputs: &[],
        options: evaluate::OPTIONS,
        notes: evaluate::NOTES,
    },
    ComponentInfo {
        name: select::NAME,
        version: "1",
        description: "Picks the best model of a sweep by one metric and copies it unchanged.",
        inputs: &["candidates"],
        optional_inputs: &[],
        outputs: &["model", "report"],
        optional_outputs: &[],
        options: select::OPTIONS,
        notes: select::NOTES,
    },
    ComponentInfo {
        name: register::NAME,
        version: "1",
        description: "Checks a model against a quality gate and describes the registration the engine then records.",
        inputs: &["model"],
        optional_inputs: &["report", "profile"],
        outputs: &["registration"],
        optional_outputs: &[],
        options: register::OPTIONS,
        notes: register::NOTES,
    },
    ComponentInfo {
        name: deploy::NAME,
        version: "1",
        description: "Requests a deployment of a registered model (canary, replicas, monitoring rules); the engine records it and `gantry server` serves it.",
        inputs: &[],
        optional_inputs: &["registration"],
        outputs: &["deployment"],
        optional_outputs: &[],
        options: deploy::OPTIONS,
        notes: deploy::NOTES,
    },
];

/// Every built-in component.
pub fn components() -> &'static [ComponentInfo] {
    &COMPONENTS
}

/// The built-in component named `name` (without the `builtin/` prefix).
pub fn component(name: &str) -> Option<&'static ComponentInfo> {
    let name = name.strip_prefix("builtin/").unwrap_or(name);
    COMPONENTS.iter().find(|c| c.name == name)
}

fn lookup(name: &str) -> Result<&'static ComponentInfo, MlError> {
    component(name).ok_or_else(|| MlError::UnknownComponent {
        name: name.to_string(),
        available: COMPONENTS
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Checks a step's `with:` before anything runs: unknown option names (with a
/// suggestion), wrong kinds, and option combinations a component refuses.
/// Strings holding an unresolved `${...}` template pass the kind check.
pub fn validate_with(name: &str, with: &Value) -> Result<(), MlError> {
    let info = lookup(name)?;
    let opts = Options::check(info.name, with, info.options, true)?;
    match info.name {
        train::NAME => train::check_algorithm_options(&opts),
        expectations::NAME => expectations::check_rules(&opts),
        ingest::NAME => ingest::check_options(&opts),
        register::NAME => register::check_options(&opts),
        deploy::NAME => deploy::check_options(&opts),
        drift::NAME => drift::check_options(&opts),
        _ => Ok(()),
    }
}

/// Implementations of components declared here whose code lives in crates
/// that depend on this one (see [`crate::drift`]); the binary links them in.
#[derive(Clone, Copy, Default)]
pub struct Extensions<'a> {
    pub drift: Option<&'a dyn DriftReporter>,
}

/// Runs the component `name` on ordinary directories (components that need
/// an [`Extensions`] implementation fail with [`MlError::NotLinked`]).
pub fn run_component(name: &str, io: &ComponentIo) -> Result<ComponentOutcome, MlError> {
    run_component_with(name, io, Extensions::default())
}

/// [`run_component`] with the implementations of [`Extensions`].
pub fn run_component_with(
    name: &str,
    io: &ComponentIo,
    extensions: Extensions,
) -> Result<ComponentOutcome, MlError> {
    let info = lookup(name)?;
    let opts = Options::check(info.name, io.with, info.options, false)?;
    for input in info.inputs {
        if !io.inputs.join(input).exists() {
            return Err(MlError::MissingInput {
                component: info.name.to_string(),
                input: (*input).to_string(),
                hint: format!("wire it in the step, e.g. `inputs: {{ {input}: <step>.<output> }}`"),
            });
        }
    }
    fs::create_dir_all(io.outputs).map_err(|e| MlError::io("create directory", io.outputs, e))?;
    match info.name {
        ingest::NAME => ingest::run(io, &opts),
        profile::NAME => profile::run(io, &opts),
        transform::NAME => transform::run(io, &opts),
        expectations::NAME => expectations::run(io, &opts),
        split::NAME => split::run(io, &opts),
        train::NAME => train::run(io, &opts),
        evaluate::NAME => evaluate::run(io, &opts),
        select::NAME => select::run(io, &opts),
        deploy::NAME => deploy::run(io, &opts),
        drift::NAME => drift::run(io, &opts, extensions.drift),
        _ => register::run(io, &opts),
    }
}

/// Runs `name` in the step layout: `root/with.json` (absent means no
/// options), `root/inputs/`, `root/outputs/`, and writes `root/metrics.json`.
/// This is what `gantry component <name>` does inside the container with
/// `root = /gantry`.
pub fn run_in_step_dir(name: &str, root: &Path) -> Result<ComponentOutcome, MlError> {
    let with_path = root.join("with.json");
    let with: Value = match fs::read_to_string(&with_path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| MlError::Json {
            path: with_path.clone(),
            source: e,
            hint: "it must hold the step's `with:` as a JSON object",
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Null,
        Err(e) => return Err(MlError::io("read", &with_path, e)),
    };
    let inputs = root.join("inputs");
    let outputs = root.join("outputs");
    let outcome = run_component(
        name,
        &ComponentIo {
            with: &with,
            inputs: &inputs,
            outputs: &outputs,
        },
    )?;
    let metrics_path = root.join("metrics.json");
    let mut bytes = serde_json::to_vec_pretty(&outcome.metrics).map_err(|e| MlError::Json {
        path: metrics_path.clone(),
        source: e,
        hint: "a metric is not a finite number",
    })?;
    bytes.push(b'\n');
    fs::write(&metrics_path, bytes).map_err(|e| MlError::io("write", &metrics_path, e))?;
    Ok(outcome)
}

impl ComponentIo<'_> {
    /// The path of an input when it is present.
    pub(crate) fn optional_input(&self, name: &str) -> Option<PathBuf> {
        let path = self.inputs.join(name);
        path.exists().then_some(path)
    }

    pub(crate) fn input(&self, name: &str) -> PathBuf {
        self.inputs.join(name)
    }

    /// A directory output, created empty.
    pub(crate) fn output_dir(&self, name: &str) -> Result<PathBuf, MlError> {
        let path = self.outputs.join(name);
        if path.is_file() {
            fs::remove_file(&path).map_err(|e| MlError::io("replace", &path, e))?;
        }
        fs::create_dir_all(&path).map_err(|e| MlError::io("create directory", &path, e))?;
        Ok(path)
    }

    /// Writes a file output (replacing an empty directory left there).
    pub(crate) fn write_file_output(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, MlError> {
        let path = self.outputs.join(name);
        if path.is_dir() {
            fs::remove_dir(&path).map_err(|e| MlError::io("replace", &path, e))?;
        }
        fs::write(&path, bytes).map_err(|e| MlError::io("write", &path, e))?;
        Ok(path)
    }
}

/// Pretty JSON with a final newline: the form of every JSON artifact we write.
pub(crate) fn json_bytes<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, MlError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| MlError::Data(format!("cannot encode JSON output: {e}")))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The reference documentation of every component (docs/components.md), generated
/// from the same declarations that validate `with:`, so it cannot drift.
pub fn components_markdown() -> String {
    let mut md = String::from(
        "# Built-in components\n\n\
         Used as `uses: builtin/<name>` in a pipeline. Each runs inside the built-in image as \
         `gantry component <name>`: options from `with:`, inputs under `/gantry/inputs/<name>`, \
         outputs written to `/gantry/outputs/<name>`, metrics to `/gantry/metrics.json`. Unknown \
         options are errors before the run starts. Numbers and booleans may also be given as \
         strings (as `${params.x}` templating produces).\n\n\
         Artifacts: a **dataset** is a directory with `schema.json` (columns: name, type, nullable, \
         categories; row count) and `data.jsonl` (one JSON array per row, `null` for missing); a \
         **model** is a directory with `model.json`; a **report** is a directory with \
         `report.json` and `report.md`. Column types: `int`, `float`, `bool`, `categorical`, \
         `text`, `datetime`.\n",
    );
    for c in components() {
        md.push_str(&format!(
            "\n## `builtin/{}` (version {})\n\n{}\n\n",
            c.name, c.version, c.description
        ));
        let list = |names: &[&str]| {
            if names.is_empty() {
                "—".to_string()
            } else {
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        md.push_str(&format!("- inputs: {}", list(c.inputs)));
        if !c.optional_inputs.is_empty() {
            md.push_str(&format!("; optional: {}", list(c.optional_inputs)));
        }
        md.push_str(&format!("\n- outputs: {}", list(c.outputs)));
        if !c.optional_outputs.is_empty() {
            md.push_str(&format!("; optional: {}", list(c.optional_outputs)));
        }
        md.push_str("\n\n");
        if c.options.is_empty() {
            md.push_str("No options.\n\n");
        } else {
            md.push_str("| option | type | default | description |\n|---|---|---|---|\n");
            for o in c.options {
                md.push_str(&format!(
                    "| `{}` | {} | {} | {} |\n",
                    o.name,
                    o.kind.describe(),
                    if o.default.is_empty() {
                        "—"
                    } else {
                        o.default
                    },
                    o.description
                ));
            }
            md.push('\n');
        }
        md.push_str(c.notes);
        md.push('\n');
    }
    md
}
