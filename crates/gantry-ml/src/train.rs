//! `train`: fits one algorithm and writes a self-contained model artifact.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::Value;

use crate::MlError;
use crate::algorithms::boosting::{Boosting, BoostingParams};
use crate::algorithms::forest::Forest;
use crate::algorithms::linear::{LinearModel, LogisticModel};
use crate::algorithms::matrix::Matrix;
use crate::algorithms::tree::{Target, Tree, TreeParams};
use crate::components::{ComponentIo, ComponentOutcome};
use crate::dataset::{self, Column, ColumnType, Dataset};
use crate::metrics;
use crate::model::{self, Estimator, Model, Task, TrainingInfo, argmax};
use crate::options::{OptionInfo, OptionKind, Options};
use crate::rng::Rng;
use crate::split::partition;
use crate::transform::{self, FitOptions, Impute, Transform};

pub(crate) const NAME: &str = "train";

pub(crate) const ALGORITHMS: [&str; 6] = [
    "logistic",
    "linear",
    "ridge",
    "decision_tree",
    "random_forest",
    "gradient_boosting",
];

/// The hyperparameters each algorithm accepts; anything else is refused.
const HYPERPARAMETERS: [(&str, &[&str]); 6] = [
    ("logistic", &["C", "max_iter"]),
    ("linear", &[]),
    ("ridge", &["alpha"]),
    (
        "decision_tree",
        &["max_depth", "min_samples_split", "min_samples_leaf"],
    ),
    (
        "random_forest",
        &[
            "n_trees",
            "max_depth",
            "min_samples_split",
            "min_samples_leaf",
            "max_features",
        ],
    ),
    (
        "gradient_boosting",
        &[
            "n_estimators",
            "learning_rate",
            "max_depth",
            "min_samples_split",
            "min_samples_leaf",
            "subsample",
        ],
    ),
];

pub(crate) const OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        name: "label",
        kind: OptionKind::String,
        default: "(required)",
        description: "The column to predict.",
    },
    OptionInfo {
        name: "task",
        kind: OptionKind::Choice(&["classification", "regression"]),
        default: "inferred",
        description: "Inferred from the label: categorical, bool and text labels, and int labels with at most 10 distinct values, are classification; float and other int labels are regression.",
    },
    OptionInfo {
        name: "algorithm",
        kind: OptionKind::Choice(&ALGORITHMS),
        default: "random_forest",
        description: "`logistic` (classification), `linear` and `ridge` (regression), `decision_tree`, `random_forest`, `gradient_boosting` (both).",
    },
    OptionInfo {
        name: "seed",
        kind: OptionKind::Integer,
        default: "0",
        description: "Seed of every random choice (bootstrap samples, feature subsets, subsampling, the validation hold-out).",
    },
    OptionInfo {
        name: "validation_fraction",
        kind: OptionKind::Fraction,
        default: "0.2",
        description: "Without a `validation` input: share of `train` held out (seeded, stratified for classification) to compute `validation.*` metrics; the final model is then refit on all of `train`. 0 (or fewer than 10 training rows) computes `validation.*` on the training rows (optimistic).",
    },
    OptionInfo {
        name: "C",
        kind: OptionKind::Number,
        default: "1.0",
        description: "logistic: inverse L2 regularisation strength (larger = weaker).",
    },
    OptionInfo {
        name: "max_iter",
        kind: OptionKind::Integer,
        default: "500",
        description: "logistic: L-BFGS iterations at most.",
    },
    OptionInfo {
        name: "alpha",
        kind: OptionKind::Number,
        default: "1.0",
        description: "ridge: L2 penalty on the coefficients.",
    },
    OptionInfo {
        name: "max_depth",
        kind: OptionKind::Integer,
        default: "unlimited; 3 for gradient_boosting",
        description: "decision_tree, random_forest, gradient_boosting: maximum tree depth.",
    },
    OptionInfo {
        name: "min_samples_split",
        kind: OptionKind::Integer,
        default: "2",
        description: "Tree algorithms: a node with fewer rows is not split.",
    },
    OptionInfo {
        name: "min_samples_leaf",
        kind: OptionKind::Integer,
        default: "1",
        description: "Tree algorithms: every leaf keeps at least this many rows.",
    },
    OptionInfo {
        name: "n_trees",
        kind: OptionKind::Integer,
        default: "100",
        description: "random_forest: number of trees.",
    },
    OptionInfo {
        name: "max_features",
        kind: OptionKind::NumberOr(&["sqrt", "log2", "all"]),
        default: "sqrt (classification), all (regression)",
        description: "random_forest: features tried per split: a word, a fraction in (0, 1], or a count.",
    },
    OptionInfo {
        name: "n_estimators",
        kind: OptionKind::Integer,
        default: "100",
        description: "gradient_boosting: boosting stages.",
    },
    OptionInfo {
        name: "learning_rate",
        kind: OptionKind::Number,
        default: "0.1",
        description: "gradient_boosting: shrinkage of each stage.",
    },
    OptionInfo {
        name: "subsample",
        kind: OptionKind::Number,
        default: "1.0",
        description: "gradient_boosting: share of rows (drawn without replacement, seeded) each stage is fit on.",
    },
];

pub(crate) const NOTES: &str = "\
Preprocessing: with the `transform` input (from `clean`), `train` accepts either clean's encoded \
output or raw rows (it then applies the transform), and the model embeds that transform. Clean's \
output is recognised by the sha256 of the transform file it was written with; encoded data with \
another transform, or without one, is refused rather than encoded twice. Without a transform, \
`train` fits one itself: median imputation, one-hot encoding, text columns dropped, and \
standardization for `logistic`, `linear` and `ridge`. Either way the model serves raw rows. \
Algorithms: logistic regression is L2-regularised (binary or multinomial, L-BFGS); `linear` is \
least squares, `ridge` adds an L2 penalty (closed form); trees are CART (gini / squared error); \
the random forest averages class probabilities over bootstrap trees; gradient boosting uses \
regression trees with Newton leaf steps (log loss, softmax, squared error). Rows with a missing \
label are skipped. Hyperparameters that the chosen algorithm does not use are refused. Metrics: \
classification `validation.accuracy`, `validation.precision_macro`, `validation.recall_macro`, \
`validation.f1_macro`, `validation.log_loss`, binary `validation.auc`; regression \
`validation.rmse`, `validation.mae`, `validation.r2`; the same under `training.*` (the final \
model on all training rows); `training.rows`, `validation.rows`. The same inputs and options give \
a byte-identical `model/model.json`.";

/// Refuses hyperparameters the chosen algorithm does not use (run before anything starts).
pub(crate) fn check_algorithm_options(opts: &Options) -> Result<(), MlError> {
    let Some(algorithm) = opts.string("algorithm")? else {
        return check_for("random_forest", opts);
    };
    if algorithm.contains("${") {
        return Ok(());
    }
    check_for(&algorithm, opts)
}

fn check_for(algorithm: &str, opts: &Options) -> Result<(), MlError> {
    let allowed = HYPERPARAMETERS
        .iter()
        .find(|(a, _)| *a == algorithm)
        .map_or(&[][..], |(_, h)| *h);
    let all: BTreeSet<&str> = HYPERPARAMETERS
        .iter()
        .flat_map(|(_, h)| h.iter().copied())
        .collect();
    let refused: Vec<&str> = all
        .into_iter()
        .filter(|h| opts.has(h) && !allowed.contains(h))
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(opts.error(format!(
        "{} not used by algorithm `{algorithm}`, whose hyperparameters are: {}",
        refused
            .iter()
            .map(|h| format!("`{h}`"))
            .collect::<Vec<_>>()
            .join(", ")
            + if refused.len() == 1 { " is" } else { " are" },
        if allowed.is_empty() {
            "none".to_string()
        } else {
            allowed.join(", ")
        }
    )))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum MaxFeatures {
    Sqrt,
    Log2,
    All,
    Fraction(f64),
    Count(usize),
}

#[derive(Clone, Debug)]
struct Hyper {
    c: f64,
    max_iter: usize,
    alpha: f64,
    max_depth: Option<usize>,
    min_samples_split: usize,
    min_samples_leaf: usize,
    n_trees: usize,
    max_features: MaxFeatures,
    n_estimators: usize,
    learning_rate: f64,
    subsample: f64,
}

impl Hyper {
    fn from_options(opts: &Options, algorithm: &str, task: Task) -> Result<Self, MlError> {
        let positive = |name: &str, default: f64| -> Result<f64, MlError> {
            let v = opts.number_or(name, default)?;
            if v <= 0.0 {
                return Err(opts.error(format!("`{name}` must be above 0, found {v}")));
            }
            Ok(v)
        };
        let max_features = match opts.raw("max_features") {
            None => {
                if task == Task::Classification {
                    MaxFeatures::Sqrt
                } else {
                    MaxFeatures::All
                }
            }
            Some(Value::String(s)) if s == "sqrt" => MaxFeatures::Sqrt,
            Some(Value::String(s)) if s == "log2" => MaxFeatures::Log2,
            Some(Value::String(s)) if s == "all" => MaxFeatures::All,
            Some(_) => {
                let v = opts.number("max_features")?.unwrap_or(0.0);
                if v > 0.0 && v <= 1.0 {
                    MaxFeatures::Fraction(v)
                } else if v > 1.0 && v.fract() == 0.0 {
                    MaxFeatures::Count(v as usize)
                } else {
                    return Err(opts.error(format!(
                        "`max_features` must be sqrt, log2, all, a fraction in (0, 1] or a whole count, found {v}"
                    )));
                }
            }
        };
        let subsample = positive("subsample", 1.0)?;
        if subsample > 1.0 {
            return Err(opts.error(format!("`subsample` must be at most 1, found {subsample}")));
        }
        let default_depth = (algorithm == "gradient_boosting").then_some(3);
        Ok(Self {
            c: positive("C", 1.0)?,
            max_iter: opts.count("max_iter", 500, 1)?,
            alpha: {
                let a = opts.number_or("alpha", 1.0)?;
                if a < 0.0 {
                    return Err(opts.error(format!("`alpha` must be at least 0, found {a}")));
                }
                a
            },
            max_depth: match opts.integer("max_depth")? {
                Some(0) => return Err(opts.error("`max_depth` must be at least 1")),
                Some(d) => Some(d as usize),
                None => default_depth,
            },
            min_samples_split: opts.count("min_samples_split", 2, 2)?,
            min_samples_leaf: opts.count("min_samples_leaf", 1, 1)?,
            n_trees: opts.count("n_trees", 100, 1)?,
            max_features,
            n_estimators: opts.count("n_estimators", 100, 1)?,
            learning_rate: positive("learning_rate", 0.1)?,
            subsample,
        })
    }

    /// The resolved hyperparameters of `algorithm`, for the artifact.
    fn to_map(&self, algorithm: &str) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        let depth = self.max_depth.map_or(Value::Null, Value::from);
        let features = match self.max_features {
            MaxFeatures::Sqrt => Value::from("sqrt"),
            MaxFeatures::Log2 => Value::from("log2"),
            MaxFeatures::All => Value::from("all"),
            MaxFeatures::Fraction(f) => Value::from(f),
            MaxFeatures::Count(c) => Value::from(c),
        };
        let mut put = |k: &str, v: Value| {
            m.insert(k.to_string(), v);
        };
        match algorithm {
            "logistic" => {
                put("C", self.c.into());
                put("max_iter", self.max_iter.into());
            }
            "ridge" => put("alpha", self.alpha.into()),
            "decision_tree" | "random_forest" | "gradient_boosting" => {
                put("max_depth", depth);
                put("min_samples_split", self.min_samples_split.into());
                put("min_samples_leaf", self.min_samples_leaf.into());
                if algorithm == "random_forest" {
                    put("n_trees", self.n_trees.into());
                    put("max_features", features);
                }
                if algorithm == "gradient_boosting" {
                    put("n_estimators", self.n_estimators.into());
                    put("learning_rate", self.learning_rate.into());
                    put("subsample", self.subsample.into());
                }
            }
            _ => {}
        }
        m
    }

    fn tree_params(&self, features: usize, forest: bool) -> TreeParams {
        let max_features = forest.then(|| {
            let f = features as f64;
            let m = match self.max_features {
                MaxFeatures::Sqrt => f.sqrt().floor() as usize,
                MaxFeatures::Log2 => f.log2().floor() as usize,
                MaxFeatures::All => features,
                MaxFeatures::Fraction(x) => (x * f).floor() as usize,
                MaxFeatures::Count(c) => c,
            };
            m.clamp(1, features.max(1))
        });
        TreeParams {
            max_depth: self.max_depth.unwrap_or(usize::MAX),
            min_samples_split: self.min_samples_split,
            min_samples_leaf: self.min_samples_leaf,
            max_features,
        }
    }
}

/// The label as the learner sees it.
enum Labels {
    Classes(Vec<usize>),
    Values(Vec<f64>),
}

impl Labels {
    fn take(&self, rows: &[usize]) -> Labels {
        match self {
            Labels::Classes(y) => Labels::Classes(rows.iter().map(|&i| y[i]).collect()),
            Labels::Values(y) => Labels::Values(rows.iter().map(|&i| y[i]).collect()),
        }
    }
}

fn fit_estimator(
    algorithm: &str,
    x: &Matrix,
    labels: &Labels,
    classes: usize,
    hyper: &Hyper,
    seed: u64,
) -> Estimator {
    let target = match labels {
        Labels::Classes(y) => Target::Classes { y, classes },
        Labels::Values(y) => Target::Values(y),
    };
    match (algorithm, labels) {
        ("logistic", Labels::Classes(y)) => {
            Estimator::Logistic(LogisticModel::fit(x, y, classes, hyper.c, hyper.max_iter))
        }
        ("linear" | "ridge", Labels::Values(y)) => Estimator::Linear(LinearModel::fit(
            x,
            y,
            if algorithm == "ridge" {
                hyper.alpha
            } else {
                0.0
            },
        )),
        ("random_forest", _) => Estimator::Forest(Forest::fit(
            x,
            target,
            hyper.n_trees,
            &hyper.tree_params(x.cols(), true),
            seed,
        )),
        ("gradient_boosting", _) => Estimator::Boosting(Boosting::fit(
            x,
            target,
            &BoostingParams {
                n_estimators: hyper.n_estimators,
                learning_rate: hyper.learning_rate,
                subsample: hyper.subsample,
                tree: hyper.tree_params(x.cols(), false),
                seed,
            },
        )),
        _ => Estimator::Tree(Tree::fit(
            &x.columns(),
            (0..x.rows()).collect(),
            target,
            &hyper.tree_params(x.cols(), false),
            &mut Rng::new(seed),
        )),
    }
}

/// Metrics of `estimator` on (x, truth), prefixed.
fn score(
    estimator: &Estimator,
    x: &Matrix,
    truth: &Labels,
    names: &[String],
    prefix: &str,
) -> BTreeMap<String, f64> {
    let outputs: Vec<Vec<f64>> = (0..x.rows()).map(|i| estimator.predict(x.row(i))).collect();
    let mut m = match truth {
        Labels::Classes(y) => {
            let predicted: Vec<usize> = outputs.iter().map(|o| argmax(o)).collect();
            metrics::classification(y, &predicted, names, Some(&outputs)).to_map(prefix, false)
        }
        Labels::Values(y) => {
            let predicted: Vec<f64> = outputs
                .iter()
                .map(|o| o.first().copied().unwrap_or(0.0))
                .collect();
            metrics::regression(y, &predicted).to_map(prefix)
        }
    };
    m.insert(format!("{prefix}rows"), x.rows() as f64);
    m.retain(|_, v| v.is_finite());
    m
}

pub(crate) fn infer_task(label: &Column) -> Result<Task, MlError> {
    Ok(match label.ty() {
        ColumnType::Categorical | ColumnType::Text | ColumnType::Bool => Task::Classification,
        ColumnType::Float => Task::Regression,
        ColumnType::Int => {
            let distinct: BTreeSet<String> =
                (0..label.len()).filter_map(|i| label.text(i)).collect();
            if distinct.len() <= 10 {
                Task::Classification
            } else {
                Task::Regression
            }
        }
        ColumnType::Datetime => {
            return Err(MlError::Data(format!(
                "label `{}` is a datetime; predict a number or a category instead",
                label.name
            )));
        }
    })
}

/// Sorted class labels: numerically for int and float labels, by text otherwise.
fn class_names(label: &Column) -> Vec<String> {
    let mut names: Vec<String> = (0..label.len())
        .filter_map(|i| label.text(i))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if matches!(label.ty(), ColumnType::Int | ColumnType::Float) {
        names.sort_by(|a, b| {
            let (x, y) = (
                a.parse::<f64>().unwrap_or(0.0),
                b.parse::<f64>().unwrap_or(0.0),
            );
            x.total_cmp(&y)
        });
    }
    names
}

/// Encodes a label column against `names`, appending labels not seen before
/// (they can only be predicted wrong, but count in the metrics).
fn encode_classes(label: &Column, names: &mut Vec<String>) -> Vec<usize> {
    (0..label.len())
        .map(|i| {
            let text = label.text(i).unwrap_or_default();
            match names.iter().position(|n| *n == text) {
                Some(k) => k,
                None => {
                    names.push(text);
                    names.len() - 1
                }
            }
        })
        .collect()
}

fn numeric_labels(label: &Column) -> Result<Vec<f64>, MlError> {
    (0..label.len())
        .map(|i| {
            label.number(i).ok_or_else(|| {
                MlError::Data(format!(
                    "regression needs a numeric label but `{}` is {} (row {i}); set `task: classification`",
                    label.name,
                    label.ty()
                ))
            })
        })
        .collect()
}

/// Rows with a label.
fn labelled(ds: Dataset, label: &str) -> Result<(Dataset, usize), MlError> {
    let column = ds.require_column(label, "label")?;
    let keep: Vec<usize> = (0..ds.rows()).filter(|&i| !column.is_missing(i)).collect();
    let skipped = ds.rows() - keep.len();
    Ok(if skipped == 0 {
        (ds, 0)
    } else {
        (ds.take(&keep), skipped)
    })
}

pub(crate) fn run(io: &ComponentIo, opts: &Options) -> Result<ComponentOutcome, MlError> {
    let started = Instant::now();
    check_algorithm_options(opts)?;
    let label =
        opts.required_string("label", "name the column to predict, e.g. `label: species`")?;
    let algorithm = opts.choice("algorithm", &ALGORITHMS, "random_forest")?;
    let seed = opts.integer("seed")?.unwrap_or(0);
    let (ds, skipped) = labelled(dataset::read(&io.input("train"))?, &label)?;
    if ds.rows() < 2 {
        return Err(MlError::Data(format!(
            "train: {} labelled rows; at least 2 are needed",
            ds.rows()
        )));
    }
    let label_column = ds.require_column(&label, "label")?.clone();
    let task = match opts.string("task")?.as_deref() {
        Some("classification") => Task::Classification,
        Some("regression") => Task::Regression,
        Some(other) => {
            return Err(opts.error(format!(
                "`task` must be classification or regression, found `{other}`"
            )));
        }
        None => infer_task(&label_column)?,
    };
    match (algorithm, task) {
        ("logistic", Task::Regression) => {
            return Err(opts.error(format!(
                "`logistic` is a classification algorithm but the task is regression (label `{label}` is {}); use linear, ridge, decision_tree, random_forest or gradient_boosting, or set `task: classification`",
                label_column.ty()
            )));
        }
        ("linear" | "ridge", Task::Classification) => {
            return Err(opts.error(format!(
                "`{algorithm}` is a regression algorithm but the task is classification (label `{label}` is {}); use logistic, decision_tree, random_forest or gradient_boosting, or set `task: regression`",
                label_column.ty()
            )));
        }
        _ => {}
    }
    let hyper = Hyper::from_options(opts, algorithm, task)?;

    let transform = match io.optional_input("transform") {
        Some(path) => {
            let t = Transform::load(&path)?;
            if t.columns.iter().any(|c| c.name == label) {
                return Err(MlError::Data(format!(
                    "the transform encodes the label `{label}` as a feature; give clean the option `label: {label}`"
                )));
            }
            t
        }
        None if ds.transform.is_some() => {
            return Err(MlError::Data(
                "this dataset is the encoded output of clean; also give train clean's transform \
                 (`inputs: { transform: <clean step>.transform }`) so the model can serve raw rows"
                    .to_string(),
            ));
        }
        None => transform::fit(
            &ds,
            &FitOptions {
                label: Some(label.clone()),
                impute: Impute::Median,
                fill_value: None,
                onehot: true,
                standardize: matches!(algorithm, "logistic" | "linear" | "ridge"),
                drop_constant: true,
            },
        )?,
    };
    if transform.features.is_empty() {
        return Err(MlError::Data(format!(
            "no usable feature columns besides the label `{label}` (dropped: {})",
            transform
                .dropped
                .iter()
                .map(|d| format!("`{}`: {}", d.name, d.reason))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    let x = model::features_of(&transform, &ds, "train")?;

    let mut names = match task {
        Task::Classification => class_names(&label_column),
        Task::Regression => Vec::new(),
    };
    let labels = match task {
        Task::Classification => Labels::Classes(encode_classes(&label_column, &mut names)),
        Task::Regression => Labels::Values(numeric_labels(&label_column)?),
    };
    let classes = names.len();
    if task == Task::Classification && classes < 2 {
        return Err(MlError::Data(format!(
            "label `{label}` has a single class ({}); classification needs at least two",
            names.first().map_or("", String::as_str)
        )));
    }

    let estimator = fit_estimator(algorithm, &x, &labels, classes, &hyper, seed);

    // Validation metrics.
    let mut metrics = BTreeMap::new();
    let validation_fraction = opts.fraction("validation_fraction", 0.2)?;
    let validation_note;
    if let Some(path) = io.optional_input("validation") {
        let (vds, _) = labelled(dataset::read(&path)?, &label)?;
        let vx = model::features_of(&transform, &vds, "validation")?;
        let vlabel = vds.require_column(&label, "label")?;
        let mut vnames = names.clone();
        let vlabels = match task {
            Task::Classification => Labels::Classes(encode_classes(vlabel, &mut vnames)),
            Task::Regression => Labels::Values(numeric_labels(vlabel)?),
        };
        metrics.extend(score(&estimator, &vx, &vlabels, &vnames, "validation."));
        validation_note = format!("the validation input ({} rows)", vds.rows());
    } else if validation_fraction > 0.0 && ds.rows() >= 10 {
        let strata: Option<Vec<Option<String>>> = (task == Task::Classification)
            .then(|| (0..ds.rows()).map(|i| label_column.text(i)).collect());
        let parts = partition(ds.rows(), strata.as_deref(), &[validation_fraction], seed);
        let holdout_estimator = fit_estimator(
            algorithm,
            &x.take_rows(&parts[0]),
            &labels.take(&parts[0]),
            classes,
            &hyper,
            seed,
        );
        metrics.extend(score(
            &holdout_estimator,
            &x.take_rows(&parts[1]),
            &labels.take(&parts[1]),
            &names,
            "validation.",
        ));
        validation_note = format!(
            "a seeded hold-out of {} of the {} training rows ({:.0}%); the final model is refit on all rows",
            parts[1].len(),
            ds.rows(),
            validation_fraction * 100.0
        );
    } else {
        validation_note =
            "the training rows (no validation input and no hold-out): optimistic".to_string();
    }

    let training = score(&estimator, &x, &labels, &names, "training.");
    if !metrics.contains_key("validation.rows") {
        metrics.extend(
            training
                .iter()
                .map(|(k, v)| (k.replacen("training.", "validation.", 1), *v)),
        );
    }
    metrics.extend(training);

    let model = Model {
        format: model::FORMAT.to_string(),
        format_version: model::FORMAT_VERSION,
        task,
        algorithm: algorithm.to_string(),
        hyperparameters: hyper.to_map(algorithm),
        seed,
        label: label.clone(),
        label_type: label_column.ty(),
        classes: names,
        preprocessing: transform,
        metrics: metrics.clone(),
        training: TrainingInfo {
            rows: ds.rows() as u64,
            features: x.cols() as u64,
            validation: validation_note.clone(),
        },
        estimator,
    };
    model.save(&io.output_dir("model")?)?;

    let mut summary = format!(
        "trained {algorithm} ({}) on {} rows × {} features to predict `{label}`{} in {:.2}s\nvalidation: {validation_note}\n\n| metric | value |\n|---|---|\n",
        task.name(),
        ds.rows(),
        x.cols(),
        if skipped > 0 {
            format!(" ({skipped} rows without a label skipped)")
        } else {
            String::new()
        },
        started.elapsed().as_secs_f64()
    );
    for (k, v) in &metrics {
        summary.push_str(&format!("| {k} | {v:.4} |\n"));
    }
    Ok(ComponentOutcome { metrics, summary })
}
