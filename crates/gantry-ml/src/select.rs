//! `select-best`: the best model of a sweep by one metric, copied unchanged.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::MlError;
use crate::components::{ComponentIo, ComponentOutcome, json_bytes};
use crate::model::{MODEL_FILE, Model, Task};
use crate::options::{OptionInfo, OptionKind, Options};

pub(crate) const NAME: &str = "select-best";

pub(crate) const OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        name: "metric",
        kind: OptionKind::String,
        default: "`validation.accuracy` / `validation.rmse`",
        description: "The model metric to compare (any key of the candidates' `metrics`, e.g. `validation.f1_macro`); the default depends on the task.",
    },
    OptionInfo {
        name: "mode",
        kind: OptionKind::Choice(&["max", "min"]),
        default: "from the metric",
        description: "Whether larger or smaller is better: max for accuracy, precision, recall, f1, auc, r2; min for rmse, mae, mse, log_loss; required for other metrics.",
    },
];

pub(crate) const NOTES: &str = "\
`candidates` is a directory with one entry per sweep combination, each a `model` artifact (a \
model directory or its `model.json`); the engine mounts them as \
`/gantry/inputs/candidates/<combination>`. Ties go to the first name in sorted order. Outputs: \
`model`, a byte-identical copy of the winner, and `report` (`report.json`: metric, mode, winner, \
every candidate with its value, algorithm and hyperparameters, best first; `report.md`). \
Metrics: the winner's value under the metric's name, and `candidates`.";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectionReport {
    pub metric: String,
    pub mode: String,
    pub winner: String,
    /// Best first.
    pub candidates: Vec<Candidate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub name: String,
    pub value: f64,
    pub algorithm: String,
    pub hyperparameters: BTreeMap<String, Value>,
}

/// `Some(true)` when larger is better, from the metric's name: its last
/// segment that names a known metric (`validation.f1_macro`, `f1.setosa`).
pub fn default_maximize(metric: &str) -> Option<bool> {
    metric.rsplit('.').find_map(
        |segment| match segment.split('_').next().unwrap_or(segment) {
            "accuracy" | "precision" | "recall" | "f1" | "auc" | "r2" => Some(true),
            "rmse" | "mae" | "mse" | "log" | "loss" => Some(false),
            _ => None,
        },
    )
}

pub(crate) fn run(io: &ComponentIo, opts: &Options) -> Result<ComponentOutcome, MlError> {
    let dir = io.input("candidates");
    if !dir.is_dir() {
        return Err(MlError::Data(format!(
            "{}: `candidates` must be a directory of model artifacts, one per sweep combination",
            dir.display()
        )));
    }
    let mut entries: Vec<(String, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| MlError::io("list", &dir, e))? {
        let entry = entry.map_err(|e| MlError::io("list", &dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        entries.push((name, entry.path()));
    }
    entries.sort();
    if entries.is_empty() {
        return Err(MlError::Data(format!(
            "{}: no candidates; the sweep produced no models",
            dir.display()
        )));
    }
    let mut models = Vec::with_capacity(entries.len());
    for (name, path) in &entries {
        let model = Model::load(path).map_err(|e| {
            MlError::Data(format!("candidate `{name}` is not a model artifact: {e}"))
        })?;
        models.push(model);
    }
    let metric = match opts.string("metric")? {
        Some(m) => m,
        None => match models[0].task {
            Task::Classification => "validation.accuracy".to_string(),
            Task::Regression => "validation.rmse".to_string(),
        },
    };
    let maximize = match opts.string("mode")?.as_deref() {
        Some("max") => true,
        Some("min") => false,
        Some(other) => {
            return Err(opts.error(format!("`mode` must be max or min, found `{other}`")));
        }
        None => default_maximize(&metric).ok_or_else(|| {
            opts.error(format!(
                "cannot tell whether a larger `{metric}` is better; set `mode: max` or `mode: min`"
            ))
        })?,
    };
    let mut candidates = Vec::with_capacity(models.len());
    for ((name, _), model) in entries.iter().zip(&models) {
        let value = *model.metrics.get(&metric).ok_or_else(|| {
            MlError::Data(format!(
                "candidate `{name}` has no metric `{metric}`; its metrics are: {}",
                model.metrics.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        candidates.push(Candidate {
            name: name.clone(),
            value,
            algorithm: model.algorithm.clone(),
            hyperparameters: model.hyperparameters.clone(),
        });
    }
    // Stable sort: ties keep name order.
    candidates.sort_by(|a, b| {
        let order = a.value.total_cmp(&b.value);
        if maximize { order.reverse() } else { order }
    });
    let winner = candidates[0].name.clone();
    let (_, winner_path) = entries
        .iter()
        .find(|(n, _)| *n == winner)
        .ok_or_else(|| MlError::Data("the winner vanished from the candidates".into()))?;

    let out = io.output_dir("model")?;
    if winner_path.is_dir() {
        copy_tree(winner_path, &out)?;
    } else {
        fs::copy(winner_path, out.join(MODEL_FILE))
            .map_err(|e| MlError::io("copy", winner_path, e))?;
    }

    let report = SelectionReport {
        metric: metric.clone(),
        mode: if maximize { "max" } else { "min" }.to_string(),
        winner: winner.clone(),
        candidates,
    };
    let mut md = format!(
        "best of {} candidates by {} ({}): **{}**\n\n| rank | candidate | {} | algorithm | hyperparameters |\n|---|---|---|---|---|\n",
        report.candidates.len(),
        metric,
        report.mode,
        winner,
        metric
    );
    for (rank, c) in report.candidates.iter().enumerate() {
        let hyper = c
            .hyperparameters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        md.push_str(&format!(
            "| {} | {} | {:.4} | {} | {} |\n",
            rank + 1,
            c.name,
            c.value,
            c.algorithm,
            hyper
        ));
    }
    let report_dir = io.output_dir("report")?;
    let json_path = report_dir.join(crate::evaluate::REPORT_JSON);
    fs::write(&json_path, json_bytes(&report)?).map_err(|e| MlError::io("write", &json_path, e))?;
    let md_path = report_dir.join(crate::evaluate::REPORT_MD);
    fs::write(&md_path, &md).map_err(|e| MlError::io("write", &md_path, e))?;
    let metrics = BTreeMap::from([
        (metric, report.candidates[0].value),
        ("candidates".to_string(), report.candidates.len() as f64),
    ]);
    Ok(ComponentOutcome {
        metrics,
        summary: md,
    })
}

/// Copies regular files and directories; symlinks and other special files
/// are refused (an artifact never needs them).
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<(), MlError> {
    fs::create_dir_all(to).map_err(|e| MlError::io("create directory", to, e))?;
    let mut entries: Vec<_> = fs::read_dir(from)
        .map_err(|e| MlError::io("list", from, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| MlError::io("list", from, e))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ty = entry
            .file_type()
            .map_err(|e| MlError::io("inspect", &src, e))?;
        if ty.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ty.is_file() {
            fs::copy(&src, &dst).map_err(|e| MlError::io("copy", &src, e))?;
        } else {
            return Err(MlError::Data(format!(
                "{}: not a regular file or directory; a model artifact holds only those",
                src.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_direction_comes_from_its_name() {
        assert_eq!(default_maximize("validation.accuracy"), Some(true));
        assert_eq!(default_maximize("validation.f1_macro"), Some(true));
        assert_eq!(default_maximize("f1.setosa"), Some(true));
        assert_eq!(default_maximize("validation.rmse"), Some(false));
        assert_eq!(default_maximize("validation.log_loss"), Some(false));
        assert_eq!(default_maximize("r2"), Some(true));
        assert_eq!(default_maximize("validation.rows"), None);
    }
}
