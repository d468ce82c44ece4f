//! The model artifact: a directory with `model.json` holding everything needed
//! to serve raw rows: the fitted preprocessing (feature schema: raw column
//! names and types), the label and its class mapping, the algorithm with its
//! hyperparameters and fitted parameters, and the validation metrics.
//!
//! The bytes are a function of the inputs and options only (no timestamps,
//! no hash-map order), so training twice gives an identical artifact.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::MlError;
use crate::algorithms::boosting::Boosting;
use crate::algorithms::forest::Forest;
use crate::algorithms::linear::{LinearModel, LogisticModel};
use crate::algorithms::matrix::Matrix;
use crate::algorithms::tree::Tree;
use crate::cell::{parse_bool, parse_float, parse_int};
use crate::dataset::{ColumnType, Dataset};
use crate::transform::{self, Transform};

pub const FORMAT: &str = "gantry.model";
pub const FORMAT_VERSION: u32 = 1;
/// The file inside a model directory.
pub const MODEL_FILE: &str = "model.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classification,
    Regression,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub format: String,
    pub format_version: u32,
    pub task: Task,
    /// `logistic`, `linear`, `ridge`, `decision_tree`, `random_forest`, `gradient_boosting`.
    pub algorithm: String,
    /// Every hyperparameter, defaults included.
    pub hyperparameters: BTreeMap<String, Value>,
    pub seed: u64,
    pub label: String,
    pub label_type: ColumnType,
    /// Classification: the class labels (as text, sorted); prediction `i` of
    /// [`Prediction::probabilities`] belongs to `classes[i]`. Empty for regression.
    pub classes: Vec<String>,
    /// Raw row → features; its `columns` are the model's input schema.
    pub preprocessing: Transform,
    /// `validation.*` and `training.*` metrics computed by train.
    pub metrics: BTreeMap<String, f64>,
    pub training: TrainingInfo,
    pub(crate) estimator: Estimator,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub rows: u64,
    pub features: u64,
    /// How `validation.*` metrics were obtained.
    pub validation: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Estimator {
    Logistic(LogisticModel),
    Linear(LinearModel),
    Tree(Tree),
    Forest(Forest),
    Boosting(Boosting),
}

impl Estimator {
    /// Classification: class probabilities; regression: `[value]`.
    pub(crate) fn predict(&self, x: &[f64]) -> Vec<f64> {
        match self {
            Estimator::Logistic(m) => m.predict(x),
            Estimator::Linear(m) => vec![m.predict(x)],
            Estimator::Tree(t) => t.predict(x).to_vec(),
            Estimator::Forest(f) => f.predict(x),
            Estimator::Boosting(b) => b.predict(x),
        }
    }
}

/// One prediction for one row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The predicted class (typed like the label column: string, int, bool)
    /// or the regression value.
    pub value: Value,
    /// Classification: one probability per entry of [`Model::classes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<Vec<f64>>,
}

impl Model {
    /// Loads a model directory (or its `model.json` directly).
    pub fn load(path: &Path) -> Result<Model, MlError> {
        let file = if path.is_dir() {
            path.join(MODEL_FILE)
        } else {
            path.to_path_buf()
        };
        let bytes = fs::read(&file).map_err(|e| MlError::io("read model", &file, e))?;
        let model: Model = serde_json::from_slice(&bytes).map_err(|e| MlError::Json {
            path: file.clone(),
            source: e,
            hint: "pass the `model` output of builtin/train or builtin/select-best",
        })?;
        if model.format != FORMAT || model.format_version > FORMAT_VERSION {
            return Err(MlError::Model(format!(
                "{}: format {} version {} is not supported (this gantry reads {FORMAT} up to version {FORMAT_VERSION})",
                file.display(),
                model.format,
                model.format_version
            )));
        }
        Ok(model)
    }

    /// The exact bytes of `model.json`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MlError> {
        let mut bytes = serde_json::to_vec(self)
            .map_err(|e| MlError::Model(format!("cannot encode the model: {e}")))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Writes the model directory `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<(), MlError> {
        fs::create_dir_all(dir).map_err(|e| MlError::io("create directory", dir, e))?;
        let file = dir.join(MODEL_FILE);
        fs::write(&file, self.to_bytes()?).map_err(|e| MlError::io("write", &file, e))
    }

    /// The raw input columns (name, type) a serving row provides.
    pub fn input_schema(&self) -> Vec<(String, ColumnType)> {
        self.preprocessing.input_schema()
    }

    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Predicts raw rows (column name → JSON value, as a client sends them).
    /// Missing or `null` values are imputed like in training; unknown keys are ignored.
    pub fn predict(&self, rows: &[BTreeMap<String, Value>]) -> Result<Vec<Prediction>, MlError> {
        let x = transform::apply_rows(&self.preprocessing, rows)?;
        Ok(self
            .predict_matrix(&x)
            .into_iter()
            .map(|out| self.prediction(out))
            .collect())
    }

    /// Predicts numeric rows given in [`Model::input_schema`] order, row-major (`NaN` for a
    /// missing value): the same answers as [`Model::predict`] without a map per row. Fails
    /// when the schema has a text or categorical column.
    pub fn predict_numeric(&self, values: &[f64]) -> Result<Vec<Prediction>, MlError> {
        let x = transform::apply_numeric(&self.preprocessing, values)?;
        Ok(self
            .predict_matrix(&x)
            .into_iter()
            .map(|out| self.prediction(out))
            .collect())
    }

    pub(crate) fn prediction(&self, out: Vec<f64>) -> Prediction {
        match self.task {
            Task::Regression => Prediction {
                value: Value::from(out.first().copied().unwrap_or(0.0)),
                probabilities: None,
            },
            Task::Classification => Prediction {
                value: self.class_value(argmax(&out)),
                probabilities: Some(out),
            },
        }
    }

    pub(crate) fn predict_matrix(&self, x: &Matrix) -> Vec<Vec<f64>> {
        (0..x.rows())
            .map(|i| self.estimator.predict(x.row(i)))
            .collect()
    }

    /// The feature matrix of a dataset: encoded by the model's preprocessing,
    /// unless the dataset is already the output of that same transform.
    /// `role` names the dataset in errors (`test`).
    pub(crate) fn features_of(&self, dataset: &Dataset, role: &str) -> Result<Matrix, MlError> {
        features_of(&self.preprocessing, dataset, role)
    }

    /// The class label `i` typed like the label column.
    pub fn class_value(&self, i: usize) -> Value {
        let Some(text) = self.classes.get(i) else {
            return Value::Null;
        };
        match self.label_type {
            ColumnType::Int => parse_int(text).map_or_else(|| text.as_str().into(), Value::from),
            ColumnType::Float => {
                parse_float(text).map_or_else(|| text.as_str().into(), Value::from)
            }
            ColumnType::Bool => parse_bool(text).map_or_else(|| text.as_str().into(), Value::from),
            _ => Value::from(text.as_str()),
        }
    }
}

/// See [`Model::features_of`]. A dataset clean encoded with another
/// transform is refused: its features can share names with raw columns (a
/// standardized `age` is still `age`), so encoding it again would silently
/// train or score on doubly-transformed values.
pub(crate) fn features_of(
    transform: &Transform,
    dataset: &Dataset,
    role: &str,
) -> Result<Matrix, MlError> {
    if let Some(mark) = dataset.transform.as_deref()
        && !transform.produced(dataset)
    {
        let short = |h: &str| h.get(..12).unwrap_or(h).to_string();
        let preprocessing = match transform.fingerprint() {
            Some(other) => format!(
                "the preprocessing here comes from another transform file (sha256 {}…)",
                short(other)
            ),
            None => "the preprocessing here was fitted by train itself".to_string(),
        };
        return Err(MlError::Data(format!(
            "the {role} dataset is clean's encoded output for the transform file with sha256 {}…, but {preprocessing}; \
             encoding it again would transform its features twice: give the raw (uncleaned) rows instead, \
             or train with the `transform` output of the clean step that produced this dataset",
            short(mark)
        )));
    }
    if transform.produced(dataset) {
        let mut columns = Vec::with_capacity(transform.features.len());
        for name in &transform.features {
            let column = dataset.require_column(name, "feature")?;
            columns.push(column);
        }
        let rows = dataset.rows();
        let mut data = Vec::with_capacity(rows * columns.len());
        for i in 0..rows {
            for (c, name) in columns.iter().zip(&transform.features) {
                data.push(c.number(i).ok_or_else(|| {
                    MlError::Data(format!(
                        "feature `{name}` has a missing or non-numeric value in row {i}; encoded datasets come complete from clean"
                    ))
                })?);
            }
        }
        return Ok(Matrix::new(rows, columns.len(), data));
    }
    transform::apply_dataset(transform, dataset)
}

pub(crate) fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}
