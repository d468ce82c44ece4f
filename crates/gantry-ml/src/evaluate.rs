//! `evaluate`: a model's quality on a test dataset.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::MlError;
use crate::components::{ComponentIo, ComponentOutcome, json_bytes};
use crate::dataset;
use crate::metrics::{self, ClassificationMetrics, RegressionMetrics};
use crate::model::{Model, Task, argmax};
use crate::options::{OptionInfo, Options};

pub(crate) const NAME: &str = "evaluate";

pub(crate) const OPTIONS: &[OptionInfo] = &[];

pub(crate) const NOTES: &str = "\
`test` may be raw rows or the encoded output of `clean` (the model applies its own \
preprocessing to raw rows); rows without a label are skipped. `report` is a directory with \
`report.json` (`format: gantry.evaluation`, the flat `metrics`, and the detailed classification \
or regression figures) and `report.md`. Metrics: classification `accuracy`, `precision_macro`, \
`recall_macro`, `f1_macro`, `log_loss`, binary `auc` (ROC AUC, the second class in sorted \
order is positive), per class `precision.<class>`, `recall.<class>`, `f1.<class>`, and the \
confusion matrix in the report; regression `rmse`, `mae`, `r2`; both `rows`.";

pub const FORMAT: &str = "gantry.evaluation";
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    pub format: String,
    pub task: Task,
    pub algorithm: String,
    pub label: String,
    /// Flat metrics, as recorded for the step and used by `register`'s gate.
    pub metrics: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<ClassificationMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionMetrics>,
}

/// Reads the metrics of a report: a report directory or a `report.json`
/// (any JSON object with a `metrics` map works).
pub fn report_metrics(path: &Path) -> Result<BTreeMap<String, f64>, MlError> {
    let file = if path.is_dir() {
        path.join(REPORT_JSON)
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file).map_err(|e| MlError::io("read report", &file, e))?;
    #[derive(Deserialize)]
    struct Metrics {
        metrics: BTreeMap<String, f64>,
    }
    let m: Metrics = serde_json::from_str(&text).map_err(|e| MlError::Json {
        path: file.clone(),
        source: e,
        hint: "pass the `report` output of builtin/evaluate",
    })?;
    Ok(m.metrics)
}

/// Evaluates `model` on a dataset that holds its label column.
pub fn evaluate(
    model: &Model,
    test: &dataset::Dataset,
) -> Result<(EvaluationReport, usize), MlError> {
    let label = test.require_column(&model.label, "label")?;
    let keep: Vec<usize> = (0..test.rows()).filter(|&i| !label.is_missing(i)).collect();
    let skipped = test.rows() - keep.len();
    let test = if skipped > 0 {
        test.take(&keep)
    } else {
        test.clone()
    };
    if test.rows() == 0 {
        return Err(MlError::Data(format!(
            "the test dataset has no rows with a `{}` value",
            model.label
        )));
    }
    let label = test.require_column(&model.label, "label")?;
    let x = model.features_of(&test, "test")?;
    let outputs = model.predict_matrix(&x);
    let mut report = EvaluationReport {
        format: FORMAT.to_string(),
        task: model.task,
        algorithm: model.algorithm.clone(),
        label: model.label.clone(),
        metrics: BTreeMap::new(),
        classification: None,
        regression: None,
    };
    match model.task {
        Task::Classification => {
            let mut names = model.classes.clone();
            let truth: Vec<usize> = (0..test.rows())
                .map(|i| {
                    let text = label.text(i).unwrap_or_default();
                    names.iter().position(|n| *n == text).unwrap_or_else(|| {
                        names.push(text);
                        names.len() - 1
                    })
                })
                .collect();
            let predicted: Vec<usize> = outputs.iter().map(|o| argmax(o)).collect();
            let m = metrics::classification(&truth, &predicted, &names, Some(&outputs));
            report.metrics = m.to_map("", true);
            report.metrics.insert("rows".into(), m.rows as f64);
            report.classification = Some(m);
        }
        Task::Regression => {
            let truth: Vec<f64> = (0..test.rows())
                .map(|i| {
                    label.number(i).ok_or_else(|| {
                        MlError::Data(format!(
                            "label `{}` must be numeric for a regression model (row {i} is not)",
                            model.label
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
            let predicted: Vec<f64> = outputs
                .iter()
                .map(|o| o.first().copied().unwrap_or(0.0))
                .collect();
            let m = metrics::regression(&truth, &predicted);
            report.metrics = m.to_map("");
            report.metrics.insert("rows".into(), m.rows as f64);
            report.regression = Some(m);
        }
    }
    report.metrics.retain(|_, v| v.is_finite());
    Ok((report, skipped))
}

pub(crate) fn run(io: &ComponentIo, _opts: &Options) -> Result<ComponentOutcome, MlError> {
    let model = Model::load(&io.input("model"))?;
    let test = dataset::read(&io.input("test"))?;
    let (report, skipped) = evaluate(&model, &test)?;
    let mut md = format!(
        "# Evaluation of {} ({}) predicting `{}`\n\n",
        model.algorithm,
        model.task.name(),
        model.label
    );
    if skipped > 0 {
        md.push_str(&format!(
            "{skipped} test rows without a label were skipped.\n\n"
        ));
    }
    if let Some(c) = &report.classification {
        md.push_str(&c.to_markdown());
    }
    if let Some(r) = &report.regression {
        md.push_str(&r.to_markdown());
    }
    let dir = io.output_dir("report")?;
    let json = json_bytes(&report)?;
    std::fs::write(dir.join(REPORT_JSON), json)
        .map_err(|e| MlError::io("write", &dir.join(REPORT_JSON), e))?;
    std::fs::write(dir.join(REPORT_MD), &md)
        .map_err(|e| MlError::io("write", &dir.join(REPORT_MD), e))?;
    Ok(ComponentOutcome {
        metrics: report.metrics,
        summary: md,
    })
}
