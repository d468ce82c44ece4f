//! `clean` and the fitted [`Transform`] it saves.
//!
//! The transform turns raw columns into numeric features. Training data
//! ([`apply_dataset`]) and serving rows ([`apply`]) both go through
//! [`ColumnStep::encode`] one value at a time, so what a model sees at serving
//! is computed exactly as it was at training.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::MlError;
use crate::algorithms::matrix::Matrix;
use crate::cell::{Cell, parse_bool, parse_datetime, parse_float};
use crate::components::{ComponentIo, ComponentOutcome, json_bytes};
use crate::dataset::{self, Column, ColumnData, ColumnType, Dataset};
use crate::options::{OptionInfo, OptionKind, Options, as_number};

pub(crate) const NAME: &str = "clean";

pub(crate) const OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        name: "label",
        kind: OptionKind::String,
        default: "",
        description: "The label (target) column: kept unchanged, not encoded; rows where it is missing are dropped.",
    },
    OptionInfo {
        name: "drop",
        kind: OptionKind::StringList,
        default: "`[]`",
        description: "Columns to drop (ids, leaks).",
    },
    OptionInfo {
        name: "drop_duplicates",
        kind: OptionKind::Bool,
        default: "true",
        description: "Drop rows identical to an earlier row (all columns, label included), keeping the first.",
    },
    OptionInfo {
        name: "drop_constant",
        kind: OptionKind::Bool,
        default: "true",
        description: "Drop columns with at most one distinct value (all-missing columns included).",
    },
    OptionInfo {
        name: "impute",
        kind: OptionKind::Choice(&["median", "mean", "mode", "constant"]),
        default: "median",
        description: "How missing values are filled. Categorical columns use the mode unless `constant`.",
    },
    OptionInfo {
        name: "fill_value",
        kind: OptionKind::Scalar,
        default: "`0` / `missing`",
        description: "The value for `impute: constant`: used as a number in numeric columns and as a category in categorical ones (a numeric fill for a categorical column becomes its text).",
    },
    OptionInfo {
        name: "encoding",
        kind: OptionKind::Choice(&["onehot", "ordinal"]),
        default: "onehot",
        description: "Categorical encoding: one 0/1 feature `column=category` per category, or one feature holding the category's index in the sorted category list.",
    },
    OptionInfo {
        name: "standardize",
        kind: OptionKind::Bool,
        default: "false",
        description: "Scale numeric features to mean 0, standard deviation 1 (after imputation).",
    },
];

pub(crate) const NOTES: &str = "\
Outputs: `dataset`, the encoded features (float columns; one-hot features are named \
`column=category`) followed by the unchanged label column; and `transform`, a JSON file \
(`format: gantry.transform`) with, per raw input column, its name, type and fitted encoding \
(fill value, categories, centre and scale), the output feature names and the columns dropped \
with the reason. Text columns (too many distinct values) are dropped. At serving time the same \
transform runs inside the model: a missing or `null` value (or the strings `\"\"`, `NA`, `NaN`, \
`?`, `null`) is filled like at training, a category never seen in training encodes as all-zero \
one-hot features (ordinal: -1). Give the transform to `train` (`inputs: { transform: \
clean.transform }`) so the model artifact carries it. The encoded dataset records the sha256 of \
the transform file (`transform` in its `schema.json`): train and evaluate use it as is only with \
that very file (or a model trained with it), and refuse it otherwise. Metrics: `rows`, `features`, \
`duplicates_dropped`, `label_missing_dropped`, `columns_dropped`, `values_imputed`.";

pub const FORMAT: &str = "gantry.transform";
pub const FORMAT_VERSION: u32 = 1;

/// Values read as missing in serving rows, like csv-ingest's default markers.
const MISSING_MARKERS: [&str; 5] = ["", "NA", "NaN", "?", "null"];

/// A fitted preprocessing: raw columns → numeric features.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    pub format: String,
    pub format_version: u32,
    /// The label column (not an input at serving time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The raw input columns, in order: the model's feature schema.
    pub columns: Vec<ColumnStep>,
    /// The encoded feature names, in order.
    pub features: Vec<String>,
    /// Raw columns dropped at fit time.
    pub dropped: Vec<DroppedColumn>,
    /// sha256 (hex) of the transform file this was loaded from, exactly as
    /// clean wrote it: set by [`Transform::load`] and kept in the model. Clean
    /// marks its encoded dataset with the same hash, so recognising clean's
    /// output compares two stored strings and never depends on floats
    /// surviving a JSON round trip. `None` for a transform train fitted itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// One raw input column and how it is encoded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnStep {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub encoding: Encoding,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Encoding {
    /// One feature: the value (bool 0/1, datetime in epoch seconds), `fill`
    /// when missing, then `(x - center) / scale` when standardized.
    Numeric {
        fill: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        center: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale: Option<f64>,
    },
    /// One 0/1 feature per category; unseen categories give all zeros.
    OneHot {
        categories: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fill: Option<String>,
    },
    /// One feature: the category's index; unseen categories give -1.
    Ordinal {
        categories: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fill: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DroppedColumn {
    pub name: String,
    pub reason: String,
}

impl ColumnStep {
    /// Number of features this column produces.
    pub fn width(&self) -> usize {
        match &self.encoding {
            Encoding::OneHot { categories, .. } => categories.len(),
            _ => 1,
        }
    }

    /// Appends this column's features for one value. The single encoding
    /// function of the crate: training and serving both call it.
    pub(crate) fn encode(&self, cell: Cell<'_>, out: &mut Vec<f64>) {
        match &self.encoding {
            Encoding::Numeric {
                fill,
                center,
                scale,
            } => {
                let v = match cell {
                    Cell::Num(x) => x,
                    // A string reaching a numeric column was refused earlier; treat as missing.
                    Cell::Missing | Cell::Str(_) => *fill,
                };
                out.push((v - center.unwrap_or(0.0)) / scale.unwrap_or(1.0));
            }
            Encoding::OneHot { categories, fill } => {
                let value = cell_category(cell, fill.as_deref());
                let hit =
                    value.and_then(|v| categories.binary_search_by(|c| c.as_str().cmp(v)).ok());
                out.extend((0..categories.len()).map(|i| if Some(i) == hit { 1.0 } else { 0.0 }));
            }
            Encoding::Ordinal { categories, fill } => {
                let value = cell_category(cell, fill.as_deref());
                let hit =
                    value.and_then(|v| categories.binary_search_by(|c| c.as_str().cmp(v)).ok());
                out.push(hit.map_or(-1.0, |i| i as f64));
            }
        }
    }

    fn feature_names(&self) -> Vec<String> {
        match &self.encoding {
            Encoding::OneHot { categories, .. } => categories
                .iter()
                .map(|c| format!("{}={c}", self.name))
                .collect(),
            _ => vec![self.name.clone()],
        }
    }
}

fn cell_category<'a>(cell: Cell<'a>, fill: Option<&'a str>) -> Option<&'a str> {
    match cell {
        Cell::Str(s) => Some(s),
        Cell::Missing | Cell::Num(_) => fill,
    }
}

impl Transform {
    /// The sha256 of the file this transform was loaded from: the mark of
    /// the datasets clean encoded with it.
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// The exact bytes of a transform file: pretty JSON and a final newline.
    /// The fingerprint describes the file a value came from, so it is left out.
    pub fn to_file_bytes(&self) -> Result<Vec<u8>, MlError> {
        if self.fingerprint.is_none() {
            return json_bytes(self);
        }
        json_bytes(&Transform {
            fingerprint: None,
            ..self.clone()
        })
    }

    /// The raw input columns (name, type): what a serving row must provide.
    pub fn input_schema(&self) -> Vec<(String, ColumnType)> {
        self.columns
            .iter()
            .map(|c| (c.name.clone(), c.ty))
            .collect()
    }

    /// Reads a transform file and records the fingerprint of its bytes.
    pub fn load(path: &Path) -> Result<Self, MlError> {
        let bytes = fs::read(path).map_err(|e| MlError::io("read", path, e))?;
        let mut t: Transform = serde_json::from_slice(&bytes).map_err(|e| MlError::Json {
            path: path.to_path_buf(),
            source: e,
            hint: "pass the `transform` output of builtin/clean",
        })?;
        if t.format != FORMAT || t.format_version > FORMAT_VERSION {
            return Err(MlError::Data(format!(
                "{}: format {} version {} is not supported (this gantry reads {FORMAT} up to version {FORMAT_VERSION})",
                path.display(),
                t.format,
                t.format_version
            )));
        }
        t.fingerprint = Some(fingerprint_of(&bytes));
        Ok(t)
    }

    /// Whether `dataset` already holds this transform's output.
    pub fn produced(&self, dataset: &Dataset) -> bool {
        dataset.transform.is_some() && dataset.transform == self.fingerprint
    }
}

/// The fingerprint of a transform file's bytes: its sha256 in hex.
pub fn fingerprint_of(file_bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(file_bytes))
}

/// How to fit a transform.
#[derive(Clone, Debug, PartialEq)]
pub struct FitOptions {
    pub label: Option<String>,
    pub impute: Impute,
    /// For `Impute::Constant`.
    pub fill_value: Option<Value>,
    pub onehot: bool,
    pub standardize: bool,
    pub drop_constant: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impute {
    Median,
    Mean,
    Mode,
    Constant,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            label: None,
            impute: Impute::Median,
            fill_value: None,
            onehot: true,
            standardize: false,
            drop_constant: true,
        }
    }
}

/// Fits a transform on every column of `dataset` but the label.
pub fn fit(dataset: &Dataset, options: &FitOptions) -> Result<Transform, MlError> {
    let mut columns = Vec::new();
    let mut dropped = Vec::new();
    for column in &dataset.columns {
        if options.label.as_deref() == Some(column.name.as_str()) {
            continue;
        }
        match fit_column(column, options)? {
            Ok(step) => columns.push(step),
            Err(reason) => dropped.push(DroppedColumn {
                name: column.name.clone(),
                reason,
            }),
        }
    }
    let features = columns.iter().flat_map(ColumnStep::feature_names).collect();
    Ok(Transform {
        format: FORMAT.to_string(),
        format_version: FORMAT_VERSION,
        label: options.label.clone(),
        columns,
        features,
        dropped,
        fingerprint: None,
    })
}

/// `Ok(Ok(step))`, or `Ok(Err(reason))` when the column is dropped.
fn fit_column(
    column: &Column,
    options: &FitOptions,
) -> Result<Result<ColumnStep, String>, MlError> {
    let ty = column.ty();
    if ty == ColumnType::Text {
        return Ok(Err(format!(
            "text column ({} distinct values) is not encoded; to encode it, type it `categorical` in csv-ingest's `types`",
            column.categories().len()
        )));
    }
    let rows = column.len();
    if ty.is_numeric() {
        let values: Vec<f64> = (0..rows).filter_map(|i| column.number(i)).collect();
        let distinct = values
            .iter()
            .map(|v| v.to_bits())
            .collect::<BTreeSet<_>>()
            .len();
        if options.drop_constant && distinct <= 1 {
            return Ok(Err(if values.is_empty() {
                "all values missing".to_string()
            } else {
                "constant".to_string()
            }));
        }
        let fill = match options.impute {
            Impute::Constant => match &options.fill_value {
                None => 0.0,
                Some(v) => as_number(v).ok_or_else(|| {
                    MlError::option(
                        NAME,
                        format!(
                            "`fill_value` {v} is not a number but column `{}` is {ty}; use a number or impute this column another way",
                            column.name
                        ),
                    )
                })?,
            },
            _ if values.is_empty() => 0.0,
            Impute::Median => {
                let mut sorted = values.clone();
                sorted.sort_by(f64::total_cmp);
                crate::profile::quantile_sorted(&sorted, 0.5)
            }
            Impute::Mean => values.iter().sum::<f64>() / values.len() as f64,
            Impute::Mode => {
                let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
                for v in &values {
                    *counts.entry(v.to_bits()).or_default() += 1;
                }
                mode_of(values.iter().map(|v| (*v, counts[&v.to_bits()])))
            }
        };
        let (center, scale) = if options.standardize {
            let filled: Vec<f64> = (0..rows)
                .map(|i| column.number(i).unwrap_or(fill))
                .collect();
            let n = filled.len().max(1) as f64;
            let mean = filled.iter().sum::<f64>() / n;
            let var = filled.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let std = var.sqrt();
            (Some(mean), Some(if std > 1e-12 { std } else { 1.0 }))
        } else {
            (None, None)
        };
        return Ok(Ok(ColumnStep {
            name: column.name.clone(),
            ty,
            encoding: Encoding::Numeric {
                fill,
                center,
                scale,
            },
        }));
    }
    // Categorical.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..rows {
        if let Some(v) = column.text(i) {
            *counts.entry(v).or_default() += 1;
        }
    }
    if options.drop_constant && counts.len() <= 1 {
        return Ok(Err(if counts.is_empty() {
            "all values missing".to_string()
        } else {
            "constant".to_string()
        }));
    }
    let has_missing = column.missing_count() > 0;
    let fill = match options.impute {
        Impute::Constant => Some(match &options.fill_value {
            None => "missing".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }),
        _ => counts
            .iter()
            .fold(None::<(&String, usize)>, |best, (k, &n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((k, n)),
            })
            .map(|(k, _)| k.clone()),
    };
    let mut categories: BTreeSet<String> = counts.into_keys().collect();
    if has_missing && let Some(f) = &fill {
        categories.insert(f.clone());
    }
    let categories: Vec<String> = categories.into_iter().collect();
    Ok(Ok(ColumnStep {
        name: column.name.clone(),
        ty,
        encoding: if options.onehot {
            Encoding::OneHot { categories, fill }
        } else {
            Encoding::Ordinal { categories, fill }
        },
    }))
}

/// The most frequent value; ties go to the smallest.
fn mode_of(items: impl Iterator<Item = (f64, usize)>) -> f64 {
    let mut best: Option<(f64, usize)> = None;
    for (v, n) in items {
        best = match best {
            Some((bv, bn)) if bn > n || (bn == n && bv <= v) => Some((bv, bn)),
            _ => Some((v, n)),
        };
    }
    best.map_or(0.0, |(v, _)| v)
}

/// Encodes the raw columns of `dataset` into a feature matrix.
pub(crate) fn apply_dataset(transform: &Transform, dataset: &Dataset) -> Result<Matrix, MlError> {
    let rows = dataset.rows();
    let mut sources = Vec::with_capacity(transform.columns.len());
    for step in &transform.columns {
        let column = dataset.column(&step.name).ok_or_else(|| {
            MlError::Data(format!(
                "the dataset has no column `{}`, which the model's preprocessing needs; its columns are: {}",
                step.name,
                dataset.column_names().join(", ")
            ))
        })?;
        if step.ty.is_numeric() && !column.ty().is_numeric() {
            return Err(MlError::Data(format!(
                "column `{}` is {} here but was {} in training; make its values numbers",
                step.name,
                column.ty(),
                step.ty
            )));
        }
        sources.push(column);
    }
    let mut data = Vec::with_capacity(rows * transform.features.len());
    for row in 0..rows {
        for (step, column) in transform.columns.iter().zip(&sources) {
            if step.ty.is_numeric()
                || column.ty() == ColumnType::Categorical
                || column.ty() == ColumnType::Text
            {
                step.encode(column.cell(row), &mut data);
            } else {
                // A numeric column feeding a categorical step: categories are its text.
                let text = column.text(row);
                step.encode(text.as_deref().map_or(Cell::Missing, Cell::Str), &mut data);
            }
        }
    }
    Ok(Matrix::new(rows, transform.features.len(), data))
}

/// Encodes serving rows (column name → JSON value) into feature vectors.
/// Absent keys and `null` are missing; extra keys are ignored.
pub fn apply(
    transform: &Transform,
    rows: &[BTreeMap<String, Value>],
) -> Result<Vec<Vec<f64>>, MlError> {
    Ok(apply_rows(transform, rows)?.into_rows())
}

pub(crate) fn apply_rows(
    transform: &Transform,
    rows: &[BTreeMap<String, Value>],
) -> Result<Matrix, MlError> {
    let mut data = Vec::with_capacity(rows.len() * transform.features.len());
    for (index, row) in rows.iter().enumerate() {
        for step in &transform.columns {
            let value = row.get(&step.name).unwrap_or(&Value::Null);
            let text;
            let cell = match value {
                Value::Null => Cell::Missing,
                Value::String(s) if MISSING_MARKERS.contains(&s.trim()) => Cell::Missing,
                _ if step.ty.is_numeric() => {
                    Cell::Num(json_number(value, step.ty).ok_or_else(|| {
                        MlError::Data(format!(
                            "row {index}, column `{}`: {value} is not a {} value",
                            step.name, step.ty
                        ))
                    })?)
                }
                Value::String(s) => Cell::Str(s.trim()),
                Value::Number(_) | Value::Bool(_) => {
                    text = value.to_string();
                    Cell::Str(&text)
                }
                _ => {
                    return Err(MlError::Data(format!(
                        "row {index}, column `{}`: {value} is not a {} value",
                        step.name, step.ty
                    )));
                }
            };
            step.encode(cell, &mut data);
        }
    }
    Ok(Matrix::new(rows.len(), transform.features.len(), data))
}

/// Numeric rows in the order of `transform.columns` (`values` row-major, `NaN` = missing),
/// without building a map per row: the serving fast path for a `[N, F]` tensor. Every
/// column must be numeric (int, float, bool as 0/1, datetime in seconds).
pub(crate) fn apply_numeric(transform: &Transform, values: &[f64]) -> Result<Matrix, MlError> {
    let width = transform.columns.len();
    if let Some(step) = transform.columns.iter().find(|c| !c.ty.is_numeric()) {
        return Err(MlError::Data(format!(
            "column `{}` is {}: send it by name (numeric tensors carry numeric columns only)",
            step.name, step.ty
        )));
    }
    if width == 0 || !values.len().is_multiple_of(width) {
        return Err(MlError::Data(format!(
            "{} values do not make rows of the model's {width} columns",
            values.len()
        )));
    }
    let rows = values.len() / width;
    let mut data = Vec::with_capacity(rows * transform.features.len());
    for row in values.chunks_exact(width) {
        for (step, &x) in transform.columns.iter().zip(row) {
            let cell = if x.is_nan() {
                Cell::Missing
            } else {
                Cell::Num(x)
            };
            step.encode(cell, &mut data);
        }
    }
    Ok(Matrix::new(rows, transform.features.len(), data))
}

/// A JSON value as the number a column of type `ty` holds (see [`Column::number`]).
fn json_number(value: &Value, ty: ColumnType) -> Option<f64> {
    match (value, ty) {
        (Value::Bool(b), ColumnType::Bool) => Some(if *b { 1.0 } else { 0.0 }),
        (Value::String(s), ColumnType::Bool) => {
            parse_bool(s.trim()).map(|b| if b { 1.0 } else { 0.0 })
        }
        (Value::String(s), ColumnType::Datetime) => {
            parse_datetime(s.trim()).map(|ms| ms as f64 / 1000.0)
        }
        (Value::String(s), _) => parse_float(s.trim()),
        (Value::Number(n), _) => n.as_f64(),
        _ => None,
    }
}

pub(crate) fn run(io: &ComponentIo, opts: &Options) -> Result<ComponentOutcome, MlError> {
    let mut ds = dataset::read(&io.input("dataset"))?;
    let label = opts.string("label")?;
    let fit_options = FitOptions {
        label: label.clone(),
        impute: match opts.choice("impute", &["median", "mean", "mode", "constant"], "median")? {
            "mean" => Impute::Mean,
            "mode" => Impute::Mode,
            "constant" => Impute::Constant,
            _ => Impute::Median,
        },
        fill_value: opts.raw("fill_value").cloned(),
        onehot: opts.choice("encoding", &["onehot", "ordinal"], "onehot")? == "onehot",
        standardize: opts.bool("standardize", false)?,
        drop_constant: opts.bool("drop_constant", true)?,
    };
    if fit_options.fill_value.is_some() && fit_options.impute != Impute::Constant {
        return Err(
            opts.error("`fill_value` is only used with `impute: constant`; set both or neither")
        );
    }
    let rows_in = ds.rows();
    let mut report = Vec::new();

    let to_drop = opts.string_list("drop")?.unwrap_or_default();
    for name in &to_drop {
        ds.require_column(name, "`drop`")?;
        if label.as_deref() == Some(name.as_str()) {
            return Err(opts.error(format!("`drop` lists the label column `{name}`")));
        }
    }
    ds.columns.retain(|c| !to_drop.contains(&c.name));

    let mut label_missing = 0;
    if let Some(label) = &label {
        let column = ds.require_column(label, "label")?;
        let keep: Vec<usize> = (0..ds.rows()).filter(|&i| !column.is_missing(i)).collect();
        label_missing = ds.rows() - keep.len();
        if label_missing > 0 {
            ds = ds.take(&keep);
            report.push(format!(
                "dropped {label_missing} rows without a `{label}` value"
            ));
        }
    }

    let mut duplicates = 0;
    if opts.bool("drop_duplicates", true)? {
        let mut seen = BTreeSet::new();
        let keep: Vec<usize> = (0..ds.rows())
            .filter(|&i| {
                let key: Vec<Value> = ds.columns.iter().map(|c| c.json(i)).collect();
                seen.insert(Value::Array(key).to_string())
            })
            .collect();
        duplicates = ds.rows() - keep.len();
        if duplicates > 0 {
            ds = ds.take(&keep);
            report.push(format!("dropped {duplicates} duplicate rows"));
        }
    }
    if ds.rows() == 0 {
        return Err(MlError::Data(format!(
            "clean: no rows left of {rows_in} (after dropping duplicates and rows without a label)"
        )));
    }

    let transform = fit(&ds, &fit_options)?;
    if transform.columns.is_empty() {
        return Err(MlError::Data(format!(
            "clean: every column was dropped ({}); nothing to learn from",
            transform
                .dropped
                .iter()
                .map(|d| format!("`{}`: {}", d.name, d.reason))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    let imputed: usize = transform
        .columns
        .iter()
        .filter_map(|s| ds.column(&s.name))
        .map(Column::missing_count)
        .sum();
    let matrix = apply_dataset(&transform, &ds)?;
    let mut columns: Vec<Column> = transform
        .features
        .iter()
        .enumerate()
        .map(|(j, name)| {
            Column::new(
                name.clone(),
                ColumnData::Float((0..matrix.rows()).map(|i| Some(matrix.get(i, j))).collect()),
            )
        })
        .collect();
    if let Some(label) = &label {
        columns.push(ds.require_column(label, "label")?.clone());
    }
    // The mark is the hash of the very bytes written, so whoever loads that
    // file recognises this dataset however its floats parse.
    let transform_bytes = transform.to_file_bytes()?;
    let mut out = Dataset::new(columns)?;
    out.transform = Some(fingerprint_of(&transform_bytes));
    dataset::write(&out, &io.output_dir("dataset")?)?;
    io.write_file_output("transform", &transform_bytes)?;

    for d in &transform.dropped {
        report.push(format!("dropped column `{}`: {}", d.name, d.reason));
    }
    let mut summary = format!(
        "{} rows in, {} rows out; {} raw columns → {} features ({} encoding{}); {imputed} missing values imputed ({})\n",
        rows_in,
        out.rows(),
        transform.columns.len(),
        transform.features.len(),
        if fit_options.onehot {
            "one-hot"
        } else {
            "ordinal"
        },
        if fit_options.standardize {
            ", standardized"
        } else {
            ""
        },
        opts.choice("impute", &["median", "mean", "mode", "constant"], "median")?,
    );
    for line in &report {
        summary.push_str(&format!("- {line}\n"));
    }
    let metrics = BTreeMap::from([
        ("rows".to_string(), out.rows() as f64),
        ("features".to_string(), transform.features.len() as f64),
        ("duplicates_dropped".to_string(), duplicates as f64),
        ("label_missing_dropped".to_string(), label_missing as f64),
        (
            "columns_dropped".to_string(),
            (transform.dropped.len() + to_drop.len()) as f64,
        ),
        ("values_imputed".to_string(), imputed as f64),
    ]);
    Ok(ComponentOutcome { metrics, summary })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messy() -> Dataset {
        Dataset::new(vec![
            Column::new(
                "age",
                ColumnData::Int(vec![Some(10), None, Some(30), Some(40)]),
            ),
            Column::new(
                "color",
                ColumnData::Categorical(vec![
                    Some("red".into()),
                    Some("blue".into()),
                    None,
                    Some("red".into()),
                ]),
            ),
            Column::new("k", ColumnData::Float(vec![Some(1.0); 4])),
            Column::new(
                "y",
                ColumnData::Bool(vec![Some(true), Some(false), Some(true), Some(false)]),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn fit_imputes_encodes_and_drops_constant_columns() {
        let t = fit(
            &messy(),
            &FitOptions {
                label: Some("y".into()),
                ..FitOptions::default()
            },
        )
        .unwrap();
        assert_eq!(t.features, vec!["age", "color=blue", "color=red"]);
        assert_eq!(
            t.dropped,
            vec![DroppedColumn {
                name: "k".into(),
                reason: "constant".into()
            }]
        );
        let m = apply_dataset(&t, &messy()).unwrap();
        assert_eq!(m.row(1), &[30.0, 1.0, 0.0]); // median of 10, 30, 40
        assert_eq!(m.row(2), &[30.0, 0.0, 1.0]); // mode is red
    }

    #[test]
    fn serving_rows_encode_exactly_like_training_rows() {
        let ds = messy();
        let t = fit(
            &ds,
            &FitOptions {
                label: Some("y".into()),
                standardize: true,
                ..FitOptions::default()
            },
        )
        .unwrap();
        let trained = apply_dataset(&t, &ds).unwrap();
        let rows: Vec<BTreeMap<String, Value>> = (0..ds.rows())
            .map(|i| {
                ds.columns
                    .iter()
                    .map(|c| (c.name.clone(), c.json(i)))
                    .collect()
            })
            .collect();
        let served = apply(&t, &rows).unwrap();
        for (i, row) in served.iter().enumerate() {
            assert_eq!(row.as_slice(), trained.row(i));
        }
        // Strings for numbers, missing markers, unseen categories, absent keys.
        let odd: Vec<BTreeMap<String, Value>> = vec![
            serde_json::from_value(json!({"age": "30", "color": "green"})).unwrap(),
            serde_json::from_value(json!({"age": "NA"})).unwrap(),
        ];
        let served = apply(&t, &odd).unwrap();
        assert_eq!(served[0][1..], [0.0, 0.0]);
        assert_eq!(served[0][0], served[1][0]);
        let err = apply(
            &t,
            &[serde_json::from_value(json!({"age": "old"})).unwrap()],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("row 0, column `age`"), "{err}");
    }

    #[test]
    fn constant_imputation_adds_the_fill_category_and_checks_numeric_fills() {
        let opts = FitOptions {
            label: Some("y".into()),
            impute: Impute::Constant,
            fill_value: Some(json!("unknown")),
            ..FitOptions::default()
        };
        let err = fit(&messy(), &opts).unwrap_err().to_string();
        assert!(err.contains("column `age`"), "{err}");
        let ds = Dataset::new(vec![messy().columns[1].clone()]).unwrap();
        let t = fit(&ds, &opts).unwrap();
        assert_eq!(t.features, vec!["color=blue", "color=red", "color=unknown"]);
    }

    #[test]
    fn ordinal_codes_follow_the_sorted_categories_and_unseen_is_minus_one() {
        let opts = FitOptions {
            label: Some("y".into()),
            onehot: false,
            ..FitOptions::default()
        };
        let t = fit(&messy(), &opts).unwrap();
        assert_eq!(t.features, vec!["age", "color"]);
        let rows: Vec<BTreeMap<String, Value>> = vec![
            serde_json::from_value(json!({"color": "blue"})).unwrap(),
            serde_json::from_value(json!({"color": "red"})).unwrap(),
            serde_json::from_value(json!({"color": "green"})).unwrap(),
            serde_json::from_value(json!({})).unwrap(),
        ];
        let x = apply(&t, &rows).unwrap();
        let codes: Vec<f64> = x.iter().map(|r| r[1]).collect();
        assert_eq!(codes, vec![0.0, 1.0, -1.0, 1.0]);
    }

    #[test]
    fn load_fingerprints_the_file_bytes_and_saving_leaves_the_fingerprint_out() {
        let dir = tempfile::tempdir().unwrap();
        let fitted = fit(&messy(), &FitOptions::default()).unwrap();
        assert_eq!(fitted.fingerprint(), None);
        let bytes = fitted.to_file_bytes().unwrap();
        let path = dir.path().join("transform");
        fs::write(&path, &bytes).unwrap();
        let loaded = Transform::load(&path).unwrap();
        assert_eq!(loaded.fingerprint(), Some(fingerprint_of(&bytes).as_str()));
        assert_eq!(loaded.to_file_bytes().unwrap(), bytes);
        assert_eq!(
            Transform {
                fingerprint: None,
                ..loaded
            },
            fitted
        );
        let standardized = fit(
            &messy(),
            &FitOptions {
                standardize: true,
                ..FitOptions::default()
            },
        )
        .unwrap();
        assert_ne!(
            fingerprint_of(&standardized.to_file_bytes().unwrap()),
            fingerprint_of(&bytes)
        );
    }
}
