//! A CSV file read straight into typed columns, for paths that only profile and
//! compare (`gantry drift`): numbers are parsed from the bytes as the records
//! stream by and text is interned, so a million rows never become a million
//! `String`s (csv-ingest keeps every cell as text until it knows the column's
//! type, which a dataset artifact needs but a drift report does not).
//!
//! Types are inferred like csv-ingest with its default options (fields
//! trimmed; `""`, `NA`, `NaN`, `?`, `null` missing; bool, then int, float,
//! datetime, else categorical up to 50 distinct values or text), and
//! [`profile_table`] gives the profile `builtin/profile` gives for the same
//! file (a test below checks it). Inference runs on the fly: a column takes
//! the type of its first value and, when a later value does not fit, is read
//! again as text in a second pass over the file (only such columns).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::MlError;
use crate::cell::{parse_bool, parse_datetime, parse_float};
use crate::dataset::ColumnType;
use crate::ingest::{DEFAULT_MAX_CATEGORIES, DEFAULT_MISSING, header_names, read_source};
use crate::parallel::parallel_map;
use crate::profile::{
    ColumnProfile, FORMAT, FORMAT_VERSION, Profile, categorical_profile, numeric_profile,
};

/// The code of a missing value in [`TableData::Labels`].
pub const MISSING_CODE: u32 = u32::MAX;

/// Columns of equal length, typed.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub rows: usize,
    pub columns: Vec<TableColumn>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableColumn {
    pub name: String,
    pub ty: ColumnType,
    pub data: TableData,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TableData {
    /// int, float and datetime columns (datetimes in seconds since the epoch,
    /// as profiles hold them); NaN marks a missing value (parsed values are
    /// always finite).
    Numbers(Vec<f64>),
    /// categorical, text and bool columns (bools as `true`/`false`):
    /// `codes[row]` indexes `values`, [`MISSING_CODE`] marks a missing value.
    Labels {
        values: Vec<String>,
        codes: Vec<u32>,
    },
    /// Not read ([`Reading::Skip`]).
    Skipped,
}

/// How one column is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Infer the type like csv-ingest.
    Infer,
    /// Read as this type; a value that is not one counts as missing (the way
    /// the monitor reads live values against a reference column), except for
    /// categorical and text, which take any value as it is.
    As(ColumnType),
    Skip,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&TableColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Takes every column `other` read (same file, another [`Reading`]) in
    /// place of the column of the same name.
    pub fn replace_from(&mut self, other: Table) {
        for column in other.columns {
            if matches!(column.data, TableData::Skipped) {
                continue;
            }
            if let Some(mine) = self.columns.iter_mut().find(|c| c.name == column.name) {
                *mine = column;
            }
        }
    }
}

impl TableColumn {
    /// Missing values in the column.
    pub fn missing(&self) -> usize {
        match &self.data {
            TableData::Numbers(v) => v.iter().filter(|x| x.is_nan()).count(),
            TableData::Labels { codes, .. } => codes.iter().filter(|&&c| c == MISSING_CODE).count(),
            TableData::Skipped => 0,
        }
    }
}

/// Reads the CSV file at `path` (gzip recognised by its magic bytes); `reading`
/// says how to read each column, by header name.
pub fn read_csv(path: &Path, reading: &dyn Fn(&str) -> Reading) -> Result<Table, MlError> {
    let (_, bytes) = read_source(path)?;
    parse_csv(&bytes, path, reading)
}

/// [`read_csv`] on bytes already read; `path` names the file in errors.
pub fn parse_csv(
    bytes: &[u8],
    path: &Path,
    reading: &dyn Fn(&str) -> Reading,
) -> Result<Table, MlError> {
    let (names, mut builders, rows) = scan(bytes, path, &|_, name| reading(name))?;
    // Columns whose inferred type broke halfway: read them again as text.
    let retry: Vec<usize> = builders
        .iter()
        .enumerate()
        .filter(|(_, b)| matches!(b, Builder::Broken))
        .map(|(i, _)| i)
        .collect();
    if !retry.is_empty() {
        let (_, again, _) = scan(bytes, path, &|i, _| {
            if retry.contains(&i) {
                Reading::As(ColumnType::Categorical)
            } else {
                Reading::Skip
            }
        })?;
        for (i, builder) in again.into_iter().enumerate() {
            if retry.contains(&i) {
                builders[i] = match builder {
                    Builder::Forced(_, labels) => Builder::InferredLabels(labels),
                    other => other,
                };
            }
        }
    }
    let columns = names
        .into_iter()
        .zip(builders)
        .map(|(name, builder)| {
            let (ty, data) = builder.finish(rows);
            TableColumn { name, ty, data }
        })
        .collect();
    Ok(Table { rows, columns })
}

/// One pass over the records: names, one builder per column, row count.
fn scan(
    bytes: &[u8],
    path: &Path,
    reading: &dyn Fn(usize, &str) -> Reading,
) -> Result<(Vec<String>, Vec<Builder>, usize), MlError> {
    // Fields are trimmed here, not by the reader: looking at both ends of a
    // field is cheaper than the reader's pass over every field of a record.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let csv_error = |e: csv::Error| match e.position() {
        Some(p) => MlError::CsvLine {
            path: path.to_path_buf(),
            line: p.line(),
            message: e.to_string(),
        },
        None => MlError::Csv {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    };
    let mut record = csv::ByteRecord::new();
    if !reader.read_byte_record(&mut record).map_err(csv_error)? {
        return Err(MlError::Csv {
            path: path.to_path_buf(),
            message: "the file is empty; expected a header line and rows".to_string(),
        });
    }
    record.trim();
    let header =
        csv::StringRecord::from_byte_record(record.clone()).map_err(|_| MlError::CsvLine {
            path: path.to_path_buf(),
            line: 1,
            message: "the header is not valid UTF-8; convert the file to UTF-8".to_string(),
        })?;
    let names = header_names(&header, path)?;
    // Lines bound the rows: sizing the columns once saves copying them as they grow.
    let capacity = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    let mut builders: Vec<Builder> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Builder::new(reading(i, name), capacity))
        .collect();
    let mut rows = 0usize;
    while reader.read_byte_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, csv::Position::line);
        if record.len() != builders.len() {
            return Err(MlError::CsvLine {
                path: path.to_path_buf(),
                line,
                message: format!(
                    "expected {} fields (like the header) but found {}; fix that row, or quote fields that contain the delimiter",
                    builders.len(),
                    record.len()
                ),
            });
        }
        for ((builder, field), name) in builders.iter_mut().zip(record.iter()).zip(&names) {
            builder
                .push(field.trim_ascii(), rows)
                .map_err(|message| MlError::CsvLine {
                    path: path.to_path_buf(),
                    line,
                    message: format!("column `{name}`: {message}"),
                })?;
        }
        rows += 1;
    }
    Ok((names, builders, rows))
}

/// Interned text of one column.
#[derive(Default)]
struct Labels {
    index: HashMap<Box<str>, u32>,
    values: Vec<String>,
    codes: Vec<u32>,
}

impl Labels {
    fn with_capacity(capacity: usize) -> Self {
        Labels {
            codes: Vec::with_capacity(capacity),
            ..Labels::default()
        }
    }

    fn push(&mut self, text: &str) {
        let code = match self.index.get(text) {
            Some(&code) => code,
            None => {
                let code = self.values.len() as u32;
                self.index.insert(text.into(), code);
                self.values.push(text.to_string());
                code
            }
        };
        self.codes.push(code);
    }
}

/// A column being read.
enum Builder {
    Skip,
    /// Inferring; only missing values so far (how many, and the capacity to
    /// give the column).
    Pending(usize, usize),
    /// Inferred from the first value; the flag says whether a value that does
    /// not fit counts as missing (`Reading::As`) or breaks the inference.
    Bool(Vec<u8>, bool),
    Number {
        values: Vec<f64>,
        all_int: bool,
        lenient: Option<ColumnType>,
    },
    Datetime(Vec<f64>, bool),
    /// Text read as asked (`Reading::As(categorical | text)`).
    Forced(ColumnType, Labels),
    /// Text found by inference (categorical or text by distinct count).
    InferredLabels(Labels),
    /// A value did not fit the inferred type: read again as text.
    Broken,
}

const BOOL_MISSING: u8 = 2;

impl Builder {
    fn new(reading: Reading, capacity: usize) -> Self {
        match reading {
            Reading::Skip => Builder::Skip,
            Reading::Infer => Builder::Pending(0, capacity),
            Reading::As(ColumnType::Bool) => Builder::Bool(Vec::with_capacity(capacity), true),
            Reading::As(ty @ (ColumnType::Int | ColumnType::Float)) => Builder::Number {
                values: Vec::with_capacity(capacity),
                all_int: ty == ColumnType::Int,
                lenient: Some(ty),
            },
            Reading::As(ColumnType::Datetime) => {
                Builder::Datetime(Vec::with_capacity(capacity), true)
            }
            Reading::As(ty @ (ColumnType::Categorical | ColumnType::Text)) => {
                Builder::Forced(ty, Labels::with_capacity(capacity))
            }
        }
    }

    /// Adds the value of row `row` (`field` already trimmed).
    fn push(&mut self, field: &[u8], row: usize) -> Result<(), String> {
        let missing = is_missing(field);
        match self {
            Builder::Skip | Builder::Broken => {}
            Builder::Pending(n, capacity) => {
                if missing {
                    *n += 1;
                } else {
                    let (before, capacity) = (*n, *capacity);
                    *self = Builder::first_value(field, before, capacity)?;
                }
            }
            Builder::Bool(values, lenient) => {
                let value = if missing { None } else { bool_of(field) };
                match value {
                    Some(b) => values.push(u8::from(b)),
                    None if missing || *lenient => values.push(BOOL_MISSING),
                    None => *self = Builder::Broken,
                }
            }
            Builder::Number {
                values,
                all_int,
                lenient,
            } => {
                if missing {
                    values.push(f64::NAN);
                } else if let Some((x, int)) = number_of(field) {
                    values.push(x);
                    *all_int &= int;
                } else if lenient.is_some() {
                    values.push(f64::NAN);
                } else {
                    *self = Builder::Broken;
                }
            }
            Builder::Datetime(values, lenient) => {
                let value = if missing { None } else { datetime_of(field) };
                match value {
                    Some(x) => values.push(x),
                    None if missing || *lenient => values.push(f64::NAN),
                    None => *self = Builder::Broken,
                }
            }
            Builder::Forced(_, labels) | Builder::InferredLabels(labels) => {
                if missing {
                    labels.codes.push(MISSING_CODE);
                } else {
                    let text = std::str::from_utf8(field)
                        .map_err(|_| "not valid UTF-8; convert the file to UTF-8".to_string())?;
                    labels.push(text);
                }
            }
        }
        debug_assert!(matches!(self, Builder::Skip | Builder::Broken) || self.len() == row + 1);
        Ok(())
    }

    /// The builder a column gets from its first value, after `missing` missing ones.
    fn first_value(field: &[u8], missing: usize, capacity: usize) -> Result<Builder, String> {
        fn filled<T: Clone>(value: T, n: usize, capacity: usize) -> Vec<T> {
            let mut v = Vec::with_capacity(capacity.max(n + 1));
            v.resize(n, value);
            v
        }
        let mut builder = if bool_of(field).is_some() {
            Builder::Bool(filled(BOOL_MISSING, missing, capacity), false)
        } else if number_of(field).is_some() {
            Builder::Number {
                values: filled(f64::NAN, missing, capacity),
                all_int: true,
                lenient: None,
            }
        } else if datetime_of(field).is_some() {
            Builder::Datetime(filled(f64::NAN, missing, capacity), false)
        } else {
            let mut labels = Labels::with_capacity(capacity.max(missing + 1));
            labels.codes.resize(missing, MISSING_CODE);
            Builder::InferredLabels(labels)
        };
        builder.push(field, missing)?;
        Ok(builder)
    }

    fn len(&self) -> usize {
        match self {
            Builder::Skip | Builder::Broken => 0,
            Builder::Pending(n, _) => *n,
            Builder::Bool(v, _) => v.len(),
            Builder::Number { values, .. } | Builder::Datetime(values, _) => values.len(),
            Builder::Forced(_, l) | Builder::InferredLabels(l) => l.codes.len(),
        }
    }

    fn finish(self, rows: usize) -> (ColumnType, TableData) {
        let labels = |l: Labels| TableData::Labels {
            values: l.values,
            codes: l.codes,
        };
        match self {
            // A column without any value is float, like csv-ingest's.
            Builder::Pending(..) => (ColumnType::Float, TableData::Numbers(vec![f64::NAN; rows])),
            Builder::Skip | Builder::Broken => (ColumnType::Text, TableData::Skipped),
            Builder::Bool(v, _) => {
                let codes = v
                    .into_iter()
                    .map(|b| {
                        if b == BOOL_MISSING {
                            MISSING_CODE
                        } else {
                            u32::from(b)
                        }
                    })
                    .collect();
                (
                    ColumnType::Bool,
                    TableData::Labels {
                        values: vec!["false".to_string(), "true".to_string()],
                        codes,
                    },
                )
            }
            Builder::Number {
                values,
                all_int,
                lenient,
            } => {
                let ty = match lenient {
                    Some(ty) => ty,
                    None if all_int => ColumnType::Int,
                    None => ColumnType::Float,
                };
                (ty, TableData::Numbers(values))
            }
            Builder::Datetime(v, _) => (ColumnType::Datetime, TableData::Numbers(v)),
            Builder::Forced(ty, l) => (ty, labels(l)),
            Builder::InferredLabels(l) => {
                let ty = if l.values.len() > DEFAULT_MAX_CATEGORIES {
                    ColumnType::Text
                } else {
                    ColumnType::Categorical
                };
                (ty, labels(l))
            }
        }
    }
}

fn is_missing(field: &[u8]) -> bool {
    DEFAULT_MISSING.iter().any(|m| m.as_bytes() == field)
}

fn bool_of(field: &[u8]) -> Option<bool> {
    // parse_bool without its lowercase copy: only 2–5 byte fields can match.
    if field.len() < 2 || field.len() > 5 {
        return None;
    }
    parse_bool(std::str::from_utf8(field).ok()?)
}

/// The value and whether it is a whole number as csv-ingest's `int` reads
/// them (`i64::from_str`); `None` when it is not a number.
fn number_of(field: &[u8]) -> Option<(f64, bool)> {
    let digits = match field.first() {
        Some(b'+' | b'-') => &field[1..],
        _ => field,
    };
    // Up to 18 digits always fit an i64: the common case, without a float parse.
    if !digits.is_empty() && digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit) {
        let magnitude = digits
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        let n = if field[0] == b'-' {
            -magnitude
        } else {
            magnitude
        };
        return Some((n as f64, true));
    }
    if let Some(x) = plain_decimal(field) {
        return Some((x, false));
    }
    let text = std::str::from_utf8(field).ok()?;
    if let Ok(n) = text.parse::<i64>() {
        return Some((n as f64, true));
    }
    parse_float(text).map(|x| (x, false))
}

/// Exact powers of ten (all of them up to 10^22 are exact in an f64).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// `[+-]digits.digits` with at most 15 digits in all and a point: the value
/// is `m / 10^k` with `m < 2^53` and `k ≤ 15`, both exact as f64, so one
/// correctly rounded division gives the bits `str::parse` gives (Clinger's
/// fast path). `None` for anything else (parsed the slow way).
fn plain_decimal(field: &[u8]) -> Option<f64> {
    let (negative, body) = match field.first()? {
        b'-' => (true, &field[1..]),
        b'+' => (false, &field[1..]),
        _ => (false, field),
    };
    if body.len() > 16 {
        return None;
    }
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut point: Option<usize> = None;
    for &b in body {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                digits += 1;
            }
            b'.' if point.is_none() => point = Some(digits),
            _ => return None,
        }
    }
    let point = point?;
    if digits == 0 || digits > 15 {
        return None;
    }
    let x = mantissa as f64 / POW10[digits - point];
    Some(if negative { -x } else { x })
}

fn datetime_of(field: &[u8]) -> Option<f64> {
    let ms = parse_datetime(std::str::from_utf8(field).ok()?)?;
    Some(ms as f64 / 1000.0)
}

/// The profile `builtin/profile` writes for the same data (`bins` histogram
/// bins, `top` categories), columns profiled in parallel. Skipped columns are
/// left out.
pub fn profile_table(table: &Table, bins: usize, top: usize) -> Profile {
    let columns: Vec<&TableColumn> = table
        .columns
        .iter()
        .filter(|c| !matches!(c.data, TableData::Skipped))
        .collect();
    Profile {
        format: FORMAT.to_string(),
        format_version: FORMAT_VERSION,
        rows: table.rows as u64,
        columns: parallel_map(&columns, |c| profile_column(c, table.rows, bins, top)),
    }
}

fn profile_column(column: &TableColumn, rows: usize, bins: usize, top: usize) -> ColumnProfile {
    let (count, numeric, categorical) = match &column.data {
        TableData::Numbers(values) => {
            let present: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
            let count = present.len();
            (count, numeric_profile(present, bins), None)
        }
        TableData::Labels { values, codes } => {
            let mut per_code = vec![0u64; values.len()];
            for &code in codes {
                if let Some(n) = per_code.get_mut(code as usize) {
                    *n += 1;
                }
            }
            let count: u64 = per_code.iter().sum();
            let counts: BTreeMap<String, u64> = values
                .iter()
                .zip(per_code)
                .filter(|(_, n)| *n > 0)
                .map(|(v, n)| (v.clone(), n))
                .collect();
            (
                count as usize,
                None,
                Some(categorical_profile(counts, count, top)),
            )
        }
        TableData::Skipped => (0, None, None),
    };
    let missing = rows - count;
    ColumnProfile {
        name: column.name.clone(),
        ty: column.ty,
        count: count as u64,
        missing: missing as u64,
        missing_fraction: if rows == 0 {
            0.0
        } else {
            missing as f64 / rows as f64
        },
        numeric,
        categorical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::profile_dataset;

    fn infer(csv: &str) -> Table {
        parse_csv(csv.as_bytes(), Path::new("t.csv"), &|_| Reading::Infer).unwrap()
    }

    fn ty(table: &Table, name: &str) -> ColumnType {
        table.column(name).unwrap().ty
    }

    #[test]
    fn types_are_inferred_like_csv_ingest() {
        let t = infer(
            "b,i,f,d,c,late,empty,yesno\n\
             yes,1,1.5,2024-01-02,red,1,,yes\n\
             No,-2,2,2024-01-03T10:00:00Z,blue,2,NA,no\n\
             ,NA,?,,red,x, ,maybe\n",
        );
        assert_eq!(t.rows, 3);
        assert_eq!(ty(&t, "b"), ColumnType::Bool);
        assert_eq!(ty(&t, "i"), ColumnType::Int);
        assert_eq!(ty(&t, "f"), ColumnType::Float);
        assert_eq!(ty(&t, "d"), ColumnType::Datetime);
        assert_eq!(ty(&t, "c"), ColumnType::Categorical);
        // Numbers first, then text: read again as text, original spelling kept.
        assert_eq!(ty(&t, "late"), ColumnType::Categorical);
        let TableData::Labels { values, codes } = &t.column("late").unwrap().data else {
            panic!("late is text")
        };
        assert_eq!(values, &["1", "2", "x"]);
        assert_eq!(codes, &[0, 1, 2]);
        assert_eq!(ty(&t, "empty"), ColumnType::Float);
        assert_eq!(ty(&t, "yesno"), ColumnType::Categorical);
        let TableData::Numbers(i) = &t.column("i").unwrap().data else {
            panic!("i is numeric")
        };
        assert_eq!(i[..2], [1.0, -2.0]);
        assert!(i[2].is_nan());
        let TableData::Numbers(d) = &t.column("d").unwrap().data else {
            panic!("d is numeric")
        };
        assert_eq!(d[0], 1_704_153_600.0);
    }

    #[test]
    fn many_distinct_strings_are_text() {
        let mut csv = String::from("id\n");
        for i in 0..60 {
            csv.push_str(&format!("id-{i}\n"));
        }
        assert_eq!(ty(&infer(&csv), "id"), ColumnType::Text);
    }

    #[test]
    fn forced_types_count_what_does_not_fit_as_missing() {
        let t = parse_csv(
            b"x,flag,code,skip\n1.5,yes,1,a\nabc,maybe,2.0,b\n",
            Path::new("t.csv"),
            &|name| match name {
                "x" => Reading::As(ColumnType::Float),
                "flag" => Reading::As(ColumnType::Bool),
                "code" => Reading::As(ColumnType::Categorical),
                _ => Reading::Skip,
            },
        )
        .unwrap();
        assert_eq!(t.column("x").unwrap().missing(), 1);
        assert_eq!(t.column("flag").unwrap().missing(), 1);
        let TableData::Labels { values, .. } = &t.column("code").unwrap().data else {
            panic!("code is text")
        };
        assert_eq!(values, &["1", "2.0"]);
        assert_eq!(t.column("skip").unwrap().data, TableData::Skipped);
    }

    #[test]
    fn bad_rows_are_reported_with_file_and_line() {
        let err = parse_csv(b"a,b\n1,2\n3\n", Path::new("data/cur.csv"), &|_| {
            Reading::Infer
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("data/cur.csv:3: expected 2 fields"),
            "{err}"
        );
        let err = parse_csv(b"a\nok\n\xff\n", Path::new("x.csv"), &|_| Reading::Infer)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("x.csv:3: column `a`: not valid UTF-8"),
            "{err}"
        );
        let err = parse_csv(b"", Path::new("e.csv"), &|_| Reading::Infer)
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn the_decimal_fast_path_gives_the_bits_of_str_parse() {
        let mut state = 12345u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut texts: Vec<String> = [
            "0.1",
            "-0.0",
            "+.5",
            "1.",
            ".5",
            "0.30000000000000004",
            "123456789012.345",
            "999999999999999.",
            "-12.3456",
            "00012.5000",
            ".",
            "-.",
            "1.2.3",
            "1e5",
            "+",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            let int = next() % 10u64.pow((next() % 10) as u32 + 1);
            let frac_digits = (next() % 9) as usize;
            let frac = next() % 10u64.pow(frac_digits as u32).max(1);
            let sign = ["", "-", "+"][(next() % 3) as usize];
            texts.push(format!("{sign}{int}.{frac:0frac_digits$}"));
        }
        for text in &texts {
            let fast = plain_decimal(text.as_bytes());
            let slow = parse_float(text);
            if let Some(x) = fast {
                assert_eq!(Some(x.to_bits()), slow.map(f64::to_bits), "{text}");
            }
            let (x, _) = number_of(text.as_bytes()).map_or((f64::NAN, false), |v| v);
            assert_eq!(
                slow.map(f64::to_bits),
                (!x.is_nan()).then(|| x.to_bits()),
                "{text}"
            );
        }
        assert_eq!(plain_decimal(b"12.5"), Some(12.5));
        assert_eq!(plain_decimal(b"1e5"), None);
    }

    /// The point of this module: the same profile as csv-ingest + profile.
    #[test]
    fn the_profile_equals_csv_ingest_then_profile() {
        let mut csv = String::from("n,x,when,flag,color,id,mixed\n");
        for i in 0..500u64 {
            let x = if i % 17 == 0 {
                "NA".to_string()
            } else {
                format!("{:.3}", (i * 7919 % 1000) as f64 / 37.0 - 5.0)
            };
            let when = format!("2024-03-{:02}T{:02}:15:00Z", 1 + i % 28, i % 24);
            let flag = ["yes", "no", "", "True"][(i % 4) as usize];
            let color = ["red", "green", "blue", "\"dark, blue\""][(i * 3 % 4) as usize];
            let mixed = if i == 400 {
                "n/a".to_string()
            } else {
                i.to_string()
            };
            csv.push_str(&format!(
                "{},{x},{when},{flag},{color},user-{i},{mixed}\n",
                i % 13
            ));
        }
        let table = infer(&csv);
        let ours = profile_table(&table, 10, 20);
        let settings = crate::ingest::Settings::defaults();
        let dataset =
            crate::ingest::parse_csv(csv.as_bytes(), Path::new("t.csv"), &settings).unwrap();
        let theirs = profile_dataset(&dataset, 10, 20);
        assert_eq!(ours, theirs);
    }
}
