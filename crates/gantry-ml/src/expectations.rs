//! `validate`: expectations about a dataset; every violation is reported.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::MlError;
use crate::cell::parse_datetime;
use crate::components::{ComponentIo, ComponentOutcome, json_bytes};
use crate::dataset::{self, Column, ColumnType, Dataset};
use crate::options::{OptionInfo, OptionKind, Options, as_number};

pub(crate) const NAME: &str = "validate";

pub(crate) const OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        name: "min_rows",
        kind: OptionKind::Integer,
        default: "",
        description: "At least this many rows.",
    },
    OptionInfo {
        name: "max_rows",
        kind: OptionKind::Integer,
        default: "",
        description: "At most this many rows.",
    },
    OptionInfo {
        name: "required",
        kind: OptionKind::StringList,
        default: "`[]`",
        description: "Columns that must exist.",
    },
    OptionInfo {
        name: "columns",
        kind: OptionKind::Map,
        default: "`{}`",
        description: "Rules per column (the column must exist): `type`, `min`, `max`, `max_missing`, `not_null`, `allowed`, `unique`; see below.",
    },
];

pub(crate) const NOTES: &str = "\
Column rules: `type` (int, float, bool, categorical, text, datetime; `float` also accepts int \
columns, `categorical` also text ones), `min` / `max` (inclusive bounds for numeric columns, \
ISO dates for datetime ones), `max_missing` (largest allowed share of missing values, 0–1), \
`not_null: true` (no missing value), `allowed` (list of permitted values; numbers compare \
numerically), `unique: true` (no value twice). Example: `{ min_rows: 100, required: [age], \
columns: { age: { type: int, min: 0, max: 120, max_missing: 0.05 }, species: { allowed: [a, \
b] } } }`. Any violation fails the step; the error lists every failed check with counts and an \
example row. On success `report` is a directory with `report.json` (every check and its result) \
and `report.md`. Metrics: `checks`, `failed`, `rows`.";

const RULES: [&str; 7] = [
    "type",
    "min",
    "max",
    "max_missing",
    "not_null",
    "allowed",
    "unique",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub passed: bool,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub passed: bool,
    pub rows: u64,
    pub checks: Vec<CheckResult>,
}

impl ValidationReport {
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| !c.passed)
    }

    pub fn to_markdown(&self) -> String {
        let mut md = format!(
            "{} of {} checks passed on {} rows\n\n| check | column | result | detail |\n|---|---|---|---|\n",
            self.checks.iter().filter(|c| c.passed).count(),
            self.checks.len(),
            self.rows
        );
        for c in &self.checks {
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                c.check,
                c.column.as_deref().unwrap_or(""),
                if c.passed { "ok" } else { "FAILED" },
                c.detail
            ));
        }
        md
    }
}

/// Checks rule names and shapes (also before the run, from `validate_with`).
pub(crate) fn check_rules(opts: &Options) -> Result<(), MlError> {
    let Some(columns) = opts.raw("columns") else {
        return Ok(());
    };
    let Value::Object(columns) = columns else {
        return Err(opts.error("`columns` must be a map from column name to rules"));
    };
    let mut problems = Vec::new();
    for (column, rules) in columns {
        let Value::Object(rules) = rules else {
            problems.push(format!(
                "`columns.{column}` must be a map of rules, e.g. {{ min: 0 }}"
            ));
            continue;
        };
        for (rule, value) in rules {
            if !RULES.contains(&rule.as_str()) {
                problems.push(format!(
                    "unknown rule `columns.{column}.{rule}`; the rules are: {}",
                    RULES.join(", ")
                ));
                continue;
            }
            let templated = value.as_str().is_some_and(|s| s.contains("${"));
            let ok = templated
                || match rule.as_str() {
                    "type" => value.as_str().and_then(ColumnType::parse).is_some(),
                    "min" | "max" => {
                        as_number(value).is_some()
                            || value.as_str().and_then(parse_datetime).is_some()
                    }
                    "max_missing" => as_number(value).is_some_and(|v| (0.0..=1.0).contains(&v)),
                    "not_null" | "unique" => value.is_boolean(),
                    _ => value.is_array(),
                };
            if !ok {
                problems.push(format!(
                    "`columns.{column}.{rule}` has an invalid value {value}; expected {}",
                    match rule.as_str() {
                        "type" => "one of int, float, bool, categorical, text, datetime",
                        "min" | "max" => "a number (or an ISO date for datetime columns)",
                        "max_missing" => "a fraction between 0 and 1",
                        "not_null" | "unique" => "true or false",
                        _ => "a list of values",
                    }
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(opts.error(problems.join("; ")))
    }
}

fn result(check: &str, column: Option<&str>, passed: bool, detail: String) -> CheckResult {
    CheckResult {
        check: check.to_string(),
        column: column.map(str::to_string),
        passed,
        detail,
    }
}

/// Runs every expectation of `opts` against `ds`.
pub(crate) fn validate(ds: &Dataset, opts: &Options) -> Result<ValidationReport, MlError> {
    check_rules(opts)?;
    let rows = ds.rows();
    let mut checks = Vec::new();
    if let Some(min) = opts.integer("min_rows")? {
        checks.push(result(
            "min_rows",
            None,
            rows as u64 >= min,
            format!("{rows} rows, at least {min} expected"),
        ));
    }
    if let Some(max) = opts.integer("max_rows")? {
        checks.push(result(
            "max_rows",
            None,
            rows as u64 <= max,
            format!("{rows} rows, at most {max} expected"),
        ));
    }
    let available = ds.column_names().join(", ");
    for name in opts.string_list("required")?.unwrap_or_default() {
        let present = ds.column(&name).is_some();
        checks.push(result(
            "required",
            Some(&name),
            present,
            if present {
                "present".to_string()
            } else {
                format!("missing; the columns are: {available}")
            },
        ));
    }
    if let Some(Value::Object(columns)) = opts.raw("columns") {
        for (name, rules) in columns {
            let Some(column) = ds.column(name) else {
                checks.push(result(
                    "exists",
                    Some(name),
                    false,
                    format!("no such column; the columns are: {available}"),
                ));
                continue;
            };
            if let Value::Object(rules) = rules {
                for (rule, value) in rules {
                    checks.push(check_rule(column, rule, value));
                }
            }
        }
    }
    Ok(ValidationReport {
        passed: checks.iter().all(|c| c.passed),
        rows: rows as u64,
        checks,
    })
}

fn example(rows: &[usize], column: &Column) -> String {
    match rows.first() {
        None => String::new(),
        Some(&i) => format!(
            " (e.g. row {}: {})",
            i + 1,
            column.text(i).unwrap_or_else(|| "missing".to_string())
        ),
    }
}

fn check_rule(column: &Column, rule: &str, value: &Value) -> CheckResult {
    let name = Some(column.name.as_str());
    let rows = column.len();
    let ty = column.ty();
    match rule {
        "type" => {
            let want = value.as_str().and_then(ColumnType::parse);
            let ok = match want {
                Some(ColumnType::Float) => matches!(ty, ColumnType::Float | ColumnType::Int),
                Some(ColumnType::Categorical) => {
                    matches!(ty, ColumnType::Categorical | ColumnType::Text)
                }
                Some(t) => t == ty,
                None => false,
            };
            result(
                "type",
                name,
                ok,
                format!("{ty}, {} expected", want.map_or("?", ColumnType::name)),
            )
        }
        "min" | "max" => {
            if !ty.is_numeric() {
                return result(
                    rule,
                    name,
                    false,
                    format!(
                        "{ty} column has no order; `{rule}` needs a numeric or datetime column"
                    ),
                );
            }
            let bound = if ty == ColumnType::Datetime {
                value
                    .as_str()
                    .and_then(parse_datetime)
                    .map(|ms| ms as f64 / 1000.0)
                    .or_else(|| as_number(value))
            } else {
                as_number(value)
            };
            let Some(bound) = bound else {
                return result(rule, name, false, format!("invalid bound {value}"));
            };
            let bad: Vec<usize> = (0..rows)
                .filter(|&i| {
                    column
                        .number(i)
                        .is_some_and(|v| if rule == "min" { v < bound } else { v > bound })
                })
                .collect();
            result(
                rule,
                name,
                bad.is_empty(),
                if bad.is_empty() {
                    format!(
                        "all values {} {value}",
                        if rule == "min" { "≥" } else { "≤" }
                    )
                } else {
                    format!(
                        "{} values {} {value}{}",
                        bad.len(),
                        if rule == "min" { "below" } else { "above" },
                        example(&bad, column)
                    )
                },
            )
        }
        "max_missing" | "not_null" => {
            let limit = if rule == "not_null" {
                if value.as_bool() == Some(false) {
                    return result(rule, name, true, "not required".to_string());
                }
                0.0
            } else {
                as_number(value).unwrap_or(0.0)
            };
            let missing: Vec<usize> = (0..rows).filter(|&i| column.is_missing(i)).collect();
            let share = if rows == 0 {
                0.0
            } else {
                missing.len() as f64 / rows as f64
            };
            result(
                rule,
                name,
                share <= limit + 1e-12,
                format!(
                    "{} missing ({:.1}%), at most {:.1}% allowed{}",
                    missing.len(),
                    share * 100.0,
                    limit * 100.0,
                    if share > limit {
                        example(&missing, column)
                    } else {
                        String::new()
                    }
                ),
            )
        }
        "allowed" => {
            let list = value.as_array().cloned().unwrap_or_default();
            let texts: BTreeSet<String> = list
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect();
            let numbers: Vec<f64> = list.iter().filter_map(as_number).collect();
            let bad: Vec<usize> = (0..rows)
                .filter(|&i| match (column.number(i), column.text(i)) {
                    (Some(v), _) if ty != ColumnType::Datetime => !numbers.contains(&v),
                    (_, Some(t)) => !texts.contains(&t),
                    (_, None) => false,
                })
                .collect();
            let distinct: BTreeSet<String> = bad.iter().filter_map(|&i| column.text(i)).collect();
            result(
                "allowed",
                name,
                bad.is_empty(),
                if bad.is_empty() {
                    "all values allowed".to_string()
                } else {
                    format!(
                        "{} values not allowed: {}{}",
                        bad.len(),
                        distinct.into_iter().take(5).collect::<Vec<_>>().join(", "),
                        example(&bad, column)
                    )
                },
            )
        }
        _ => {
            // unique
            if value.as_bool() == Some(false) {
                return result("unique", name, true, "not required".to_string());
            }
            let mut seen = BTreeMap::new();
            let mut dup = Vec::new();
            for i in 0..rows {
                if let Some(t) = column.text(i)
                    && seen.insert(t, i).is_some()
                {
                    dup.push(i);
                }
            }
            result(
                "unique",
                name,
                dup.is_empty(),
                if dup.is_empty() {
                    "no repeated value".to_string()
                } else {
                    format!("{} repeated values{}", dup.len(), example(&dup, column))
                },
            )
        }
    }
}

pub(crate) fn run(io: &ComponentIo, opts: &Options) -> Result<ComponentOutcome, MlError> {
    let ds = dataset::read(&io.input("dataset"))?;
    let report = validate(&ds, opts)?;
    let failed = report.failures().count();
    if failed > 0 {
        let text = report
            .failures()
            .map(|c| match &c.column {
                Some(col) => format!("- {} on column `{col}`: {}", c.check, c.detail),
                None => format!("- {}: {}", c.check, c.detail),
            })
            .collect::<Vec<_>>()
            .join("\n");
        return Err(MlError::ValidationFailed {
            failed,
            total: report.checks.len(),
            report: text,
        });
    }
    let dir = io.output_dir("report")?;
    let json = dir.join(crate::evaluate::REPORT_JSON);
    std::fs::write(&json, json_bytes(&report)?).map_err(|e| MlError::io("write", &json, e))?;
    let md = report.to_markdown();
    let md_path = dir.join(crate::evaluate::REPORT_MD);
    std::fs::write(&md_path, &md).map_err(|e| MlError::io("write", &md_path, e))?;
    let metrics = BTreeMap::from([
        ("checks".to_string(), report.checks.len() as f64),
        ("failed".to_string(), 0.0),
        ("rows".to_string(), report.rows as f64),
    ]);
    Ok(ComponentOutcome {
        metrics,
        summary: md,
    })
}
