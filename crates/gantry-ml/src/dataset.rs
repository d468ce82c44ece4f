//! The dataset artifact passed between components.
//!
//! On disk a dataset is a directory:
//! - `schema.json`: format + version, row count, the columns in order (name,
//!   type, nullable, the sorted category list of categoricals) and, for the
//!   output of `clean`, the sha256 of the transform file written with it;
//! - `data.jsonl`: one JSON array per row, one element per column, `null` for
//!   a missing value. JSON keeps `null` apart from `""` (CSV cannot) and
//!   serde_json writes floats in their shortest round-trip form, so identical
//!   data gives identical bytes.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::MlError;
use crate::cell::{Cell, format_datetime, parse_datetime};

pub const SCHEMA_FILE: &str = "schema.json";
pub const DATA_FILE: &str = "data.jsonl";
pub const FORMAT: &str = "gantry.dataset";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Int,
    Float,
    Bool,
    /// A string with few distinct values (see csv-ingest's `max_categories`).
    Categorical,
    /// A string with many distinct values (ids, free text): profiled, not encoded.
    Text,
    /// Milliseconds since the Unix epoch, UTC; written as RFC 3339.
    Datetime,
}

impl ColumnType {
    pub const ALL: [ColumnType; 6] = [
        ColumnType::Int,
        ColumnType::Float,
        ColumnType::Bool,
        ColumnType::Categorical,
        ColumnType::Text,
        ColumnType::Datetime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::Bool => "bool",
            ColumnType::Categorical => "categorical",
            ColumnType::Text => "text",
            ColumnType::Datetime => "datetime",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "string" | "str" => Some(ColumnType::Categorical),
            _ => Self::ALL.into_iter().find(|t| t.name() == name),
        }
    }

    /// Int, float, bool and datetime: values with an order and a mean.
    pub fn is_numeric(self) -> bool {
        !matches!(self, ColumnType::Categorical | ColumnType::Text)
    }
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Categorical(Vec<Option<String>>),
    Text(Vec<Option<String>>),
    Datetime(Vec<Option<i64>>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub data: ColumnData,
}

impl Column {
    pub fn new(name: impl Into<String>, data: ColumnData) -> Self {
        Self {
            name: name.into(),
            data,
        }
    }

    pub fn ty(&self) -> ColumnType {
        match &self.data {
            ColumnData::Int(_) => ColumnType::Int,
            ColumnData::Float(_) => ColumnType::Float,
            ColumnData::Bool(_) => ColumnType::Bool,
            ColumnData::Categorical(_) => ColumnType::Categorical,
            ColumnData::Text(_) => ColumnType::Text,
            ColumnData::Datetime(_) => ColumnType::Datetime,
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            ColumnData::Int(v) | ColumnData::Datetime(v) => v.len(),
            ColumnData::Float(v) => v.len(),
            ColumnData::Bool(v) => v.len(),
            ColumnData::Categorical(v) | ColumnData::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_missing(&self, row: usize) -> bool {
        match &self.data {
            ColumnData::Int(v) | ColumnData::Datetime(v) => v[row].is_none(),
            ColumnData::Float(v) => v[row].is_none(),
            ColumnData::Bool(v) => v[row].is_none(),
            ColumnData::Categorical(v) | ColumnData::Text(v) => v[row].is_none(),
        }
    }

    pub fn missing_count(&self) -> usize {
        (0..self.len()).filter(|&i| self.is_missing(i)).count()
    }

    /// The value as a number: bool is 0/1, datetime is seconds since the epoch;
    /// `None` when missing or a string.
    pub fn number(&self, row: usize) -> Option<f64> {
        match &self.data {
            ColumnData::Int(v) => v[row].map(|x| x as f64),
            ColumnData::Float(v) => v[row],
            ColumnData::Bool(v) => v[row].map(|b| if b { 1.0 } else { 0.0 }),
            ColumnData::Datetime(v) => v[row].map(|ms| ms as f64 / 1000.0),
            ColumnData::Categorical(_) | ColumnData::Text(_) => None,
        }
    }

    pub(crate) fn cell(&self, row: usize) -> Cell<'_> {
        match &self.data {
            ColumnData::Categorical(v) | ColumnData::Text(v) => {
                v[row].as_deref().map_or(Cell::Missing, Cell::Str)
            }
            _ => self.number(row).map_or(Cell::Missing, Cell::Num),
        }
    }

    /// The value as text (`None` when missing), as it is written in `data.jsonl`
    /// without quotes; used for grouping, categories and reports.
    pub fn text(&self, row: usize) -> Option<String> {
        match &self.data {
            ColumnData::Int(v) => v[row].map(|x| x.to_string()),
            ColumnData::Float(v) => v[row].map(format_float),
            ColumnData::Bool(v) => v[row].map(|b| b.to_string()),
            ColumnData::Categorical(v) | ColumnData::Text(v) => v[row].clone(),
            ColumnData::Datetime(v) => v[row].map(format_datetime),
        }
    }

    /// The value as JSON (`null` when missing).
    pub fn json(&self, row: usize) -> serde_json::Value {
        use serde_json::Value;
        match &self.data {
            ColumnData::Int(v) => v[row].map_or(Value::Null, Value::from),
            ColumnData::Float(v) => v[row].map_or(Value::Null, Value::from),
            ColumnData::Bool(v) => v[row].map_or(Value::Null, Value::from),
            ColumnData::Categorical(v) | ColumnData::Text(v) => {
                v[row].clone().map_or(Value::Null, Value::from)
            }
            ColumnData::Datetime(v) => v[row].map_or(Value::Null, |ms| format_datetime(ms).into()),
        }
    }

    /// Sorted distinct values of a categorical or text column.
    pub fn categories(&self) -> Vec<String> {
        match &self.data {
            ColumnData::Categorical(v) | ColumnData::Text(v) => v
                .iter()
                .flatten()
                .map(String::as_str)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn take(&self, rows: &[usize]) -> Column {
        fn pick<T: Clone>(v: &[T], rows: &[usize]) -> Vec<T> {
            rows.iter().map(|&i| v[i].clone()).collect()
        }
        let data = match &self.data {
            ColumnData::Int(v) => ColumnData::Int(pick(v, rows)),
            ColumnData::Float(v) => ColumnData::Float(pick(v, rows)),
            ColumnData::Bool(v) => ColumnData::Bool(pick(v, rows)),
            ColumnData::Categorical(v) => ColumnData::Categorical(pick(v, rows)),
            ColumnData::Text(v) => ColumnData::Text(pick(v, rows)),
            ColumnData::Datetime(v) => ColumnData::Datetime(pick(v, rows)),
        };
        Column::new(self.name.clone(), data)
    }
}

pub(crate) fn format_float(x: f64) -> String {
    serde_json::Value::from(x).to_string()
}

/// A table of typed columns of equal length.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Dataset {
    pub columns: Vec<Column>,
    /// sha256 of the transform file `clean` wrote with this dataset (its
    /// encoded output); lets `train` and `evaluate` tell encoded features from
    /// raw columns of the same name (see `Transform::fingerprint`).
    pub transform: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub format: String,
    pub format_version: u32,
    pub rows: usize,
    pub columns: Vec<ColumnSchema>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub nullable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
}

impl Dataset {
    pub fn new(columns: Vec<Column>) -> Result<Self, MlError> {
        let ds = Self {
            columns,
            transform: None,
        };
        ds.check_shape()?;
        Ok(ds)
    }

    fn check_shape(&self) -> Result<(), MlError> {
        let rows = self.rows();
        let mut seen = BTreeSet::new();
        for c in &self.columns {
            if c.len() != rows {
                return Err(MlError::Data(format!(
                    "column `{}` has {} values but the dataset has {rows} rows",
                    c.name,
                    c.len()
                )));
            }
            if !seen.insert(c.name.as_str()) {
                return Err(MlError::Data(format!(
                    "column `{}` appears twice; rename one of them",
                    c.name
                )));
            }
        }
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// The column, or an error naming it and listing the dataset's columns.
    pub fn require_column(&self, name: &str, role: &str) -> Result<&Column, MlError> {
        self.column(name).ok_or_else(|| {
            MlError::Data(format!(
                "{role} column `{name}` is not in the dataset; its columns are: {}",
                self.column_names().join(", ")
            ))
        })
    }

    pub fn schema(&self) -> Schema {
        Schema {
            format: FORMAT.to_string(),
            format_version: FORMAT_VERSION,
            rows: self.rows(),
            columns: self
                .columns
                .iter()
                .map(|c| ColumnSchema {
                    name: c.name.clone(),
                    ty: c.ty(),
                    nullable: c.missing_count() > 0,
                    categories: (c.ty() == ColumnType::Categorical).then(|| c.categories()),
                })
                .collect(),
            transform: self.transform.clone(),
        }
    }

    /// The rows at `rows`, in that order.
    pub fn take(&self, rows: &[usize]) -> Dataset {
        Dataset {
            columns: self.columns.iter().map(|c| c.take(rows)).collect(),
            transform: self.transform.clone(),
        }
    }

    pub fn write(&self, dir: &Path) -> Result<(), MlError> {
        write(self, dir)
    }

    pub fn read(dir: &Path) -> Result<Self, MlError> {
        read(dir)
    }
}

/// Writes `dataset` as a dataset directory at `dir` (created if needed).
pub fn write(dataset: &Dataset, dir: &Path) -> Result<(), MlError> {
    dataset.check_shape()?;
    fs::create_dir_all(dir).map_err(|e| MlError::io("create directory", dir, e))?;
    let schema_path = dir.join(SCHEMA_FILE);
    let mut schema = serde_json::to_vec_pretty(&dataset.schema()).map_err(|e| MlError::Json {
        path: schema_path.clone(),
        source: e,
        hint: "this is a bug in gantry-ml",
    })?;
    schema.push(b'\n');
    fs::write(&schema_path, schema).map_err(|e| MlError::io("write", &schema_path, e))?;

    let data_path = dir.join(DATA_FILE);
    let file = fs::File::create(&data_path).map_err(|e| MlError::io("create", &data_path, e))?;
    let mut out = BufWriter::new(file);
    let mut line = String::new();
    for row in 0..dataset.rows() {
        line.clear();
        line.push('[');
        for (i, c) in dataset.columns.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&c.json(row).to_string());
        }
        line.push_str("]\n");
        out.write_all(line.as_bytes())
            .map_err(|e| MlError::io("write", &data_path, e))?;
    }
    out.flush().map_err(|e| MlError::io("write", &data_path, e))
}

/// Reads a dataset directory written by [`write`].
pub fn read(dir: &Path) -> Result<Dataset, MlError> {
    let schema_path = dir.join(SCHEMA_FILE);
    if !schema_path.is_file() {
        return Err(MlError::dataset(
            dir,
            format!(
                "no {SCHEMA_FILE} here; pass the `dataset` output of csv-ingest, clean or split"
            ),
        ));
    }
    let text =
        fs::read_to_string(&schema_path).map_err(|e| MlError::io("read", &schema_path, e))?;
    let schema: Schema = serde_json::from_str(&text).map_err(|e| MlError::Json {
        path: schema_path.clone(),
        source: e,
        hint: "the dataset directory is damaged; produce it again",
    })?;
    if schema.format != FORMAT || schema.format_version > FORMAT_VERSION {
        return Err(MlError::dataset(
            dir,
            format!(
                "format {} version {} is not supported (this gantry reads {FORMAT} up to version {FORMAT_VERSION})",
                schema.format, schema.format_version
            ),
        ));
    }
    let mut columns: Vec<ColumnData> = schema
        .columns
        .iter()
        .map(|c| empty_column(c.ty, schema.rows))
        .collect();
    let data_path = dir.join(DATA_FILE);
    let file = fs::File::open(&data_path).map_err(|e| MlError::io("open", &data_path, e))?;
    let mut rows = 0usize;
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line_no = index + 1;
        let line = line.map_err(|e| MlError::io("read", &data_path, e))?;
        if line.is_empty() {
            continue;
        }
        let values: Vec<serde_json::Value> = serde_json::from_str(&line).map_err(|e| {
            MlError::dataset(
                dir,
                format!("{DATA_FILE} line {line_no}: not a JSON array: {e}"),
            )
        })?;
        if values.len() != columns.len() {
            return Err(MlError::dataset(
                dir,
                format!(
                    "{DATA_FILE} line {line_no}: {} values for {} columns",
                    values.len(),
                    columns.len()
                ),
            ));
        }
        for ((value, data), col) in values.iter().zip(columns.iter_mut()).zip(&schema.columns) {
            push_json(data, value).ok_or_else(|| {
                MlError::dataset(
                    dir,
                    format!(
                        "{DATA_FILE} line {line_no}, column `{}`: {value} is not a {} value",
                        col.name, col.ty
                    ),
                )
            })?;
        }
        rows += 1;
    }
    if rows != schema.rows {
        return Err(MlError::dataset(
            dir,
            format!(
                "{SCHEMA_FILE} says {} rows but {DATA_FILE} has {rows}; the artifact is incomplete",
                schema.rows
            ),
        ));
    }
    let ds = Dataset {
        columns: schema
            .columns
            .into_iter()
            .zip(columns)
            .map(|(c, data)| Column::new(c.name, data))
            .collect(),
        transform: schema.transform,
    };
    ds.check_shape()?;
    Ok(ds)
}

pub(crate) fn empty_column(ty: ColumnType, capacity: usize) -> ColumnData {
    match ty {
        ColumnType::Int => ColumnData::Int(Vec::with_capacity(capacity)),
        ColumnType::Float => ColumnData::Float(Vec::with_capacity(capacity)),
        ColumnType::Bool => ColumnData::Bool(Vec::with_capacity(capacity)),
        ColumnType::Categorical => ColumnData::Categorical(Vec::with_capacity(capacity)),
        ColumnType::Text => ColumnData::Text(Vec::with_capacity(capacity)),
        ColumnType::Datetime => ColumnData::Datetime(Vec::with_capacity(capacity)),
    }
}

/// Appends a JSON value to a column; `None` when it is not of the column's type.
fn push_json(data: &mut ColumnData, value: &serde_json::Value) -> Option<()> {
    use serde_json::Value;
    let null = value.is_null();
    match data {
        ColumnData::Int(v) => v.push(if null { None } else { Some(value.as_i64()?) }),
        ColumnData::Float(v) => v.push(if null { None } else { Some(value.as_f64()?) }),
        ColumnData::Bool(v) => v.push(if null { None } else { Some(value.as_bool()?) }),
        ColumnData::Categorical(v) | ColumnData::Text(v) => v.push(match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            _ => return None,
        }),
        ColumnData::Datetime(v) => v.push(if null {
            None
        } else {
            Some(parse_datetime(value.as_str()?)?)
        }),
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Dataset {
        Dataset::new(vec![
            Column::new("i", ColumnData::Int(vec![Some(1), None, Some(-3)])),
            Column::new("f", ColumnData::Float(vec![Some(0.1), Some(2.0), None])),
            Column::new("b", ColumnData::Bool(vec![Some(true), None, Some(false)])),
            Column::new(
                "c",
                ColumnData::Categorical(vec![Some("x, \"y\"\n".into()), Some(String::new()), None]),
            ),
            Column::new(
                "t",
                ColumnData::Text(vec![None, Some("a".into()), Some("b".into())]),
            ),
            Column::new(
                "d",
                ColumnData::Datetime(vec![Some(0), Some(1_709_209_800_250), None]),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn write_then_read_round_trips_every_type_and_keeps_null_apart_from_empty() {
        let dir = tempfile::tempdir().unwrap();
        let ds = sample();
        ds.write(dir.path()).unwrap();
        let back = read(dir.path()).unwrap();
        assert_eq!(back, ds);
        let data = fs::read_to_string(dir.path().join(DATA_FILE)).unwrap();
        assert_eq!(
            data.lines().next().unwrap(),
            r#"[1,0.1,true,"x, \"y\"\n",null,"1970-01-01T00:00:00Z"]"#
        );
        let schema: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.path().join(SCHEMA_FILE)).unwrap())
                .unwrap();
        assert_eq!(schema["rows"], 3);
        assert_eq!(schema["columns"][3]["categories"][0], "");
        assert_eq!(schema["columns"][0]["type"], "int");
    }

    #[test]
    fn identical_data_gives_identical_bytes() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        sample().write(a.path()).unwrap();
        sample().write(b.path()).unwrap();
        for f in [SCHEMA_FILE, DATA_FILE] {
            assert_eq!(
                fs::read(a.path().join(f)).unwrap(),
                fs::read(b.path().join(f)).unwrap()
            );
        }
    }

    #[test]
    fn damaged_artifacts_are_reported_with_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        sample().write(dir.path()).unwrap();
        let path = dir.path().join(DATA_FILE);
        let text = fs::read_to_string(&path)
            .unwrap()
            .replacen("[1,", "[\"one\",", 1);
        fs::write(&path, text).unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 1, column `i`"), "{err}");

        let empty = tempfile::tempdir().unwrap();
        let err = read(empty.path()).unwrap_err().to_string();
        assert!(err.contains("no schema.json"), "{err}");
    }

    #[test]
    fn duplicate_or_uneven_columns_are_refused() {
        let err = Dataset::new(vec![
            Column::new("a", ColumnData::Int(vec![Some(1)])),
            Column::new("a", ColumnData::Int(vec![Some(1)])),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("appears twice"));
        let err = Dataset::new(vec![
            Column::new("a", ColumnData::Int(vec![Some(1)])),
            Column::new("b", ColumnData::Int(vec![])),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("has 0 values"));
    }
}
