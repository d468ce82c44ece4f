//! `csv-ingest`: a CSV file (optionally gzip) → a typed dataset.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cell::{parse_bool, parse_datetime, parse_float, parse_int};
use crate::components::{ComponentIo, ComponentOutcome};
use crate::dataset::{Column, ColumnData, ColumnType, Dataset};
use crate::options::{OptionInfo, OptionKind, Options};
use crate::{MlError, dataset};

pub(crate) const NAME: &str = "csv-ingest";

pub(crate) const OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        name: "source",
        kind: OptionKind::String,
        default: "",
        description: "Path (relative to the pipeline file) or http(s) URL of the CSV; the engine fetches it and passes it as the `source` input.",
    },
    OptionInfo {
        name: "delimiter",
        kind: OptionKind::String,
        default: "`,`",
        description: "Field separator, one character; `tab` or `\\t` for TSV.",
    },
    OptionInfo {
        name: "header",
        kind: OptionKind::Bool,
        default: "true",
        description: "Whether the first row holds column names; without one, columns are named `column_1`, `column_2`, …",
    },
    OptionInfo {
        name: "quote",
        kind: OptionKind::String,
        default: "`\"`",
        description: "Quote character; quoted fields may hold delimiters, doubled quotes and newlines.",
    },
    OptionInfo {
        name: "missing",
        kind: OptionKind::StringList,
        default: "`[\"\", NA, NaN, \"?\", null]`",
        description: "Values (after trimming) read as missing.",
    },
    OptionInfo {
        name: "columns",
        kind: OptionKind::Columns,
        default: "all",
        description: "Keep only these columns, in this order: a list `[a, b]`, or a map `{old: new}` that also renames.",
    },
    OptionInfo {
        name: "types",
        kind: OptionKind::Map,
        default: "inferred",
        description: "Force column types, e.g. `{zip: categorical, age: float}`; types: int, float, bool, categorical, text, datetime (names after renaming).",
    },
    OptionInfo {
        name: "max_categories",
        kind: OptionKind::Integer,
        default: "50",
        description: "A string column with more distinct values than this is inferred as `text` (ids, free text: profiled but not encoded) instead of `categorical`.",
    },
    OptionInfo {
        name: "trim",
        kind: OptionKind::Bool,
        default: "true",
        description: "Trim spaces around fields.",
    },
];

pub(crate) const NOTES: &str = "\
Type inference per column, over its non-missing values: `bool` if all are true/false/yes/no \
(any case), else `int` if all are whole numbers, else `float` if all are numbers, else `datetime` \
if all are `YYYY-MM-DD` or ISO 8601 / RFC 3339 date-times (no offset means UTC), else \
`categorical` (≤ `max_categories` distinct values) or `text`. A column with no values at all is \
`float`. A row with a different number of fields than the header is an error that names its \
line. gzip input is recognised by its magic bytes, whatever the file name.";

/// Decompressed inputs larger than this are refused: a small gzip bomb must not
/// fill the step's memory before the container's limit kills it without a word.
const MAX_DECOMPRESSED_BYTES: u64 = 16 << 30;

pub(crate) const DEFAULT_MISSING: [&str; 5] = ["", "NA", "NaN", "?", "null"];
pub(crate) const DEFAULT_MAX_CATEGORIES: usize = 50;

/// Checks what can be checked before the run (from `validate_with`).
pub(crate) fn check_options(opts: &Options) -> Result<(), MlError> {
    Settings::from_options(opts).map(|_| ())
}

pub(crate) fn run(io: &ComponentIo, opts: &Options) -> Result<ComponentOutcome, MlError> {
    let source = source_file(io)?;
    let settings = Settings::from_options(opts)?;
    let (gzip, bytes) = read_source(&source)?;
    let dataset = parse_csv(&bytes, &source, &settings)?;
    let out = io.output_dir("dataset")?;
    dataset::write(&dataset, &out)?;

    let mut summary = format!(
        "read {} rows × {} columns from {}{}\n\n| column | type | missing |\n|---|---|---|\n",
        dataset.rows(),
        dataset.columns.len(),
        source.file_name().map_or_else(
            || source.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        ),
        if gzip { " (gzip)" } else { "" }
    );
    for c in &dataset.columns {
        summary.push_str(&format!(
            "| {} | {} | {} |\n",
            c.name,
            c.ty(),
            c.missing_count()
        ));
    }
    let mut metrics = BTreeMap::new();
    metrics.insert("rows".to_string(), dataset.rows() as f64);
    metrics.insert("columns".to_string(), dataset.columns.len() as f64);
    Ok(ComponentOutcome { metrics, summary })
}

fn source_file(io: &ComponentIo) -> Result<PathBuf, MlError> {
    let path = io.optional_input("source").ok_or_else(|| MlError::MissingInput {
        component: NAME.to_string(),
        input: "source".to_string(),
        hint: "set `with: { source: data/file.csv }` (a path or an http(s) URL) or wire a step output to `inputs: { source: ... }`".to_string(),
    })?;
    if !path.is_dir() {
        return Ok(path);
    }
    // A directory artifact holding exactly one file is accepted as that file.
    let mut files = Vec::new();
    for entry in fs::read_dir(&path).map_err(|e| MlError::io("list", &path, e))? {
        let entry = entry.map_err(|e| MlError::io("list", &path, e))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            files.push(entry.path());
        }
    }
    match files.len() {
        1 => Ok(files.remove(0)),
        n => Err(MlError::Csv {
            path,
            message: format!("the source is a directory with {n} files; pass a single CSV file"),
        }),
    }
}

pub(crate) struct Settings {
    delimiter: u8,
    quote: u8,
    header: bool,
    trim: bool,
    missing: BTreeSet<String>,
    columns: Option<Vec<(String, String)>>,
    types: BTreeMap<String, ColumnType>,
    max_categories: usize,
}

impl Settings {
    fn from_options(opts: &Options) -> Result<Self, MlError> {
        let delimiter = match opts.string("delimiter")?.as_deref() {
            None => b',',
            Some("tab" | "\\t") => b'\t',
            Some(s) => single_byte(opts, "delimiter", s)?,
        };
        let quote = match opts.string("quote")? {
            None => b'"',
            Some(s) => single_byte(opts, "quote", &s)?,
        };
        let missing = opts.string_list("missing")?.map_or_else(
            || DEFAULT_MISSING.iter().map(|s| s.to_string()).collect(),
            |list| list.into_iter().collect(),
        );
        let columns = match opts.raw("columns") {
            None => None,
            Some(Value::Object(map)) => Some(
                map.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or(k).to_string()))
                    .collect(),
            ),
            Some(_) => opts
                .string_list("columns")?
                .map(|list| list.into_iter().map(|c| (c.clone(), c)).collect()),
        };
        let mut types = BTreeMap::new();
        if let Some(Value::Object(map)) = opts.raw("types") {
            for (col, ty) in map {
                let parsed = ty.as_str().and_then(ColumnType::parse).ok_or_else(|| {
                    opts.error(format!(
                        "`types.{col}` must be one of int, float, bool, categorical, text, datetime; found {ty}"
                    ))
                })?;
                types.insert(col.clone(), parsed);
            }
        }
        Ok(Self {
            delimiter,
            quote,
            header: opts.bool("header", true)?,
            trim: opts.bool("trim", true)?,
            missing,
            columns,
            types,
            max_categories: opts.count("max_categories", DEFAULT_MAX_CATEGORIES, 1)?,
        })
    }

    /// The settings of a step without options.
    #[cfg(test)]
    pub(crate) fn defaults() -> Self {
        let opts = Options::check(NAME, &Value::Null, OPTIONS, false);
        match opts.and_then(|o| Self::from_options(&o)) {
            Ok(settings) => settings,
            Err(e) => panic!("the defaults are valid: {e}"),
        }
    }
}

fn single_byte(opts: &Options, name: &str, s: &str) -> Result<u8, MlError> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(opts.error(format!(
            "`{name}` must be a single ASCII character, found `{s}`"
        ))),
    }
}

/// The file's bytes, gunzipped when they start with the gzip magic.
pub(crate) fn read_source(path: &Path) -> Result<(bool, Vec<u8>), MlError> {
    let mut file = fs::File::open(path).map_err(|e| MlError::io("open", path, e))?;
    let file_size = file.metadata().map_or(0, |m| m.len());
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut file, &mut magic).map_err(|e| MlError::io("read", path, e))?;
    let head = io::Cursor::new(magic[..n].to_vec());
    let gzip = n == 2 && magic == [0x1f, 0x8b];
    let stream: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(head.chain(file)))
    } else {
        Box::new(head.chain(file))
    };
    // Sized for a plain file up front: growing a buffer of hundreds of MiB by
    // doubling copies it several times.
    let size = file_size.min(MAX_DECOMPRESSED_BYTES) as usize;
    let mut bytes = Vec::with_capacity(if gzip { 0 } else { size + 1 });
    stream
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| MlError::Csv {
            path: path.to_path_buf(),
            message: format!(
                "cannot read{}: {e}",
                if gzip { " (gzip stream)" } else { "" }
            ),
        })?;
    if bytes.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(MlError::Csv {
            path: path.to_path_buf(),
            message: format!(
                "more than {} GiB of data; split the file",
                MAX_DECOMPRESSED_BYTES >> 30
            ),
        });
    }
    Ok((gzip, bytes))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

pub(crate) fn parse_csv(bytes: &[u8], path: &Path, s: &Settings) -> Result<Dataset, MlError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(s.delimiter)
        .quote(s.quote)
        .trim(if s.trim {
            csv::Trim::All
        } else {
            csv::Trim::None
        })
        .from_reader(bytes);
    let csv_error = |e: csv::Error| {
        let line = e.position().map(csv::Position::line);
        MlError::Csv {
            path: path.to_path_buf(),
            message: match (e.kind(), line) {
                (csv::ErrorKind::Utf8 { .. }, Some(line)) => {
                    format!("line {line}: not valid UTF-8; convert the file to UTF-8")
                }
                (_, Some(line)) => format!("line {line}: {e}"),
                (_, None) => e.to_string(),
            },
        }
    };

    let mut names: Option<Vec<String>> = None;
    let mut raw: Vec<Vec<Option<String>>> = Vec::new();
    let mut lines: Vec<u64> = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut first = true;
    while reader.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, csv::Position::line);
        if first {
            first = false;
            let width = record.len();
            if s.header {
                names = Some(header_names(&record, path)?);
                raw = vec![Vec::new(); width];
                continue;
            }
            names = Some((1..=width).map(|i| format!("column_{i}")).collect());
            raw = vec![Vec::new(); width];
        }
        if record.len() != raw.len() {
            return Err(MlError::RaggedRow {
                path: path.to_path_buf(),
                line,
                expected: raw.len(),
                actual: record.len(),
            });
        }
        for (column, field) in raw.iter_mut().zip(record.iter()) {
            column.push((!s.missing.contains(field)).then(|| field.to_string()));
        }
        lines.push(line);
    }
    let Some(names) = names else {
        return Err(MlError::Csv {
            path: path.to_path_buf(),
            message: "the file is empty; expected a header line and rows".to_string(),
        });
    };

    // Select and rename.
    let mut selected: Vec<(String, Vec<Option<String>>)> = Vec::new();
    match &s.columns {
        None => selected = names.into_iter().zip(raw).collect(),
        Some(wanted) => {
            let mut by_name: BTreeMap<String, Vec<Option<String>>> =
                names.iter().cloned().zip(raw).collect();
            for (old, new) in wanted {
                let values = by_name.remove(old).ok_or_else(|| MlError::Csv {
                    path: path.to_path_buf(),
                    message: format!(
                        "`columns` names `{old}`, which is not a column (or is listed twice); the columns are: {}",
                        names.join(", ")
                    ),
                })?;
                selected.push((new.clone(), values));
            }
        }
    }
    for col in s.types.keys() {
        if !selected.iter().any(|(n, _)| n == col) {
            return Err(MlError::Csv {
                path: path.to_path_buf(),
                message: format!(
                    "`types` names `{col}`, which is not a column; the columns are: {}",
                    selected
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }

    let mut columns = Vec::with_capacity(selected.len());
    for (name, values) in selected {
        let ty = match s.types.get(&name) {
            Some(ty) => *ty,
            None => infer_type(&values, s.max_categories),
        };
        let data = convert(&name, &values, ty, &lines, path)?;
        columns.push(Column::new(name, data));
    }
    Dataset::new(columns)
}

pub(crate) fn header_names(
    record: &csv::StringRecord,
    path: &Path,
) -> Result<Vec<String>, MlError> {
    let mut names = Vec::with_capacity(record.len());
    let mut seen = BTreeSet::new();
    for (i, field) in record.iter().enumerate() {
        let field = field.trim_start_matches('\u{feff}').trim();
        let name = if field.is_empty() {
            format!("column_{}", i + 1)
        } else {
            field.to_string()
        };
        if !seen.insert(name.clone()) {
            return Err(MlError::Csv {
                path: path.to_path_buf(),
                message: format!(
                    "line 1: the header names `{name}` twice; rename one of them (or use `columns` to pick)"
                ),
            });
        }
        names.push(name);
    }
    Ok(names)
}

fn infer_type(values: &[Option<String>], max_categories: usize) -> ColumnType {
    let present: Vec<&str> = values.iter().flatten().map(String::as_str).collect();
    if present.is_empty() {
        return ColumnType::Float;
    }
    if present.iter().all(|v| parse_bool(v).is_some()) {
        ColumnType::Bool
    } else if present.iter().all(|v| parse_int(v).is_some()) {
        ColumnType::Int
    } else if present.iter().all(|v| parse_float(v).is_some()) {
        ColumnType::Float
    } else if present.iter().all(|v| parse_datetime(v).is_some()) {
        ColumnType::Datetime
    } else {
        let distinct = present.iter().collect::<BTreeSet<_>>().len();
        if distinct > max_categories {
            ColumnType::Text
        } else {
            ColumnType::Categorical
        }
    }
}

fn convert(
    name: &str,
    values: &[Option<String>],
    ty: ColumnType,
    lines: &[u64],
    path: &Path,
) -> Result<ColumnData, MlError> {
    fn typed<T>(
        values: &[Option<String>],
        parse: impl Fn(&str) -> Option<T>,
        bad: impl Fn(usize, &str) -> MlError,
    ) -> Result<Vec<Option<T>>, MlError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                None => Ok(None),
                Some(text) => parse(text).map(Some).ok_or_else(|| bad(i, text)),
            })
            .collect()
    }
    let bad = |i: usize, text: &str| MlError::Csv {
        path: path.to_path_buf(),
        message: format!(
            "line {}, column `{name}`: `{text}` is not a {ty} value; fix the value, list it in `missing`, or change `types.{name}`",
            lines.get(i).copied().unwrap_or(0)
        ),
    };
    Ok(match ty {
        ColumnType::Bool => ColumnData::Bool(typed(values, parse_bool, bad)?),
        ColumnType::Int => ColumnData::Int(typed(values, parse_int, bad)?),
        ColumnType::Float => ColumnData::Float(typed(values, parse_float, bad)?),
        ColumnType::Datetime => ColumnData::Datetime(typed(values, parse_datetime, bad)?),
        ColumnType::Categorical => ColumnData::Categorical(values.to_vec()),
        ColumnType::Text => ColumnData::Text(values.to_vec()),
    })
}
