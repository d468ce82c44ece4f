//! Drift between two data sets, offline: a reference (training data, or any
//! earlier batch, as a [`Profile`]) against a current batch, column by column
//! with the very comparison the live monitor runs on a deployment's window
//! ([`crate::drift`]), then rendered as JSON, markdown or one HTML page.
//!
//! ```text
//! reference ── Profile ──────┐
//!                            ├─ each column: drift_of (PSI, JS, KS | χ²; threshold) ─> DriftReport
//! current ─── CurrentData ───┘                                   ─> to_markdown / to_html
//! ```
//!
//! `gantry drift` reads CSVs, profiles and datasets into these; the
//! `builtin/drift` component gets [`Reporter`] as its implementation.

mod html;
mod markdown;

use std::collections::BTreeMap;

use gantry_ml::MlError;
use gantry_ml::columnar::{Reading, Table, TableData};
use gantry_ml::dataset::ColumnType;
use gantry_ml::dataset::Dataset;
use gantry_ml::drift::{DriftFiles, DriftOptions, DriftReporter};
use gantry_ml::parallel::parallel_map;
use gantry_ml::profile::{ColumnProfile, Profile};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DEFAULT_MIN_SAMPLES;
use crate::aggregate::ColumnCounts;
use crate::alert::features_phrase;
use crate::drift::{
    DriftStatus, FeatureDrift, PSI_DRIFT_THRESHOLD, drift_from_counts, feature_drift,
};
use crate::format::format_value;

pub use html::to_html;
pub use markdown::to_markdown;

pub const FORMAT: &str = "gantry.drift-report";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct DriftSettings {
    /// A column drifts when its PSI is above this.
    pub threshold: f64,
    /// Fewer values than this in a column and it is `insufficient-data`.
    pub min_samples: usize,
    /// Compared like the live monitor compares predictions, reported as
    /// `prediction (<label>)`.
    pub label: Option<String>,
    /// Only these reference columns; `None`: all of them.
    pub columns: Option<Vec<String>>,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            threshold: PSI_DRIFT_THRESHOLD,
            min_samples: DEFAULT_MIN_SAMPLES,
            label: None,
            columns: None,
        }
    }
}

/// One column's drift and, for numeric columns, the reference histogram's
/// edges (the bins PSI and Jensen–Shannon were computed over).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    #[serde(flatten)]
    pub drift: FeatureDrift,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub format: String,
    pub format_version: u32,
    /// What the reference and the current data are, for people (file names,
    /// digests); empty when the caller does not say.
    #[serde(default)]
    pub reference: String,
    #[serde(default)]
    pub current: String,
    pub reference_rows: u64,
    pub current_rows: usize,
    pub threshold: f64,
    pub min_samples: usize,
    /// The column compared as the label / prediction, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// One per compared reference column but the label, in reference order.
    pub drift: Vec<ColumnDrift>,
    pub prediction_drift: Option<ColumnDrift>,
    /// Current columns the reference does not have: not compared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<String>,
    /// Columns that drifted (the label's name included when it did).
    pub drifted: Vec<String>,
    /// One line for people.
    pub verdict: String,
}

impl DriftReport {
    pub fn any_drift(&self) -> bool {
        !self.drifted.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OfflineError {
    #[error("{role} `{name}` is not a column of the reference; its columns are: {available}")]
    UnknownColumn {
        role: &'static str,
        name: String,
        available: String,
    },
}

/// The current data, column by column: what [`compare`] reads.
pub trait CurrentData: Sync {
    fn rows(&self) -> usize;
    fn column_names(&self) -> Vec<&str>;
    /// The column's values as the live monitor sees a request's inputs;
    /// `None` when there is no such column.
    fn live_column(&self, name: &str) -> Option<LiveColumn<'_>>;
}

/// One column's values, as the live monitor would get them in requests.
pub enum LiveColumn<'a> {
    /// One JSON value per row, `null` where missing.
    Rows(Vec<Value>),
    /// One number per row, NaN where missing (what JSON numbers would be).
    Numbers(&'a [f64]),
    /// Interned: `codes[row]` indexes `values`, [`gantry_ml::columnar::MISSING_CODE`] where missing
    /// (a million rows of five categories stay five values).
    Coded {
        values: Vec<Value>,
        codes: &'a [u32],
    },
}

impl LiveColumn<'_> {
    /// The live monitor's drift of this column against `column`: the same
    /// counting ([`ColumnCounts::add`]) and statistics ([`crate::drift`]),
    /// without a JSON value per row where the column is typed.
    fn drift(&self, name: &str, column: &ColumnProfile, min_samples: usize) -> FeatureDrift {
        let mut counts = ColumnCounts::for_column(column);
        let mut numbers = Vec::new();
        match self {
            LiveColumn::Rows(values) => {
                let live: Vec<Option<&Value>> = values.iter().map(Some).collect();
                return feature_drift(name, column, &live, min_samples);
            }
            LiveColumn::Numbers(xs) => {
                numbers.reserve(xs.len());
                for &x in *xs {
                    let value = if x.is_nan() {
                        Value::Null
                    } else {
                        Value::from(x)
                    };
                    numbers.extend(counts.add(column, Some(&value)));
                }
            }
            LiveColumn::Coded { values, codes } => {
                // Counting a row depends on its value alone: count each distinct
                // value once, then apply that to every row holding it.
                let effects: Vec<(u64, Option<usize>, Option<f64>)> = values
                    .iter()
                    .map(|v| {
                        let mut one = ColumnCounts::for_column(column);
                        let x = one.add(column, Some(v));
                        (one.values, one.bins.iter().position(|&c| c > 0), x)
                    })
                    .collect();
                for &code in *codes {
                    counts.rows += 1;
                    // MISSING_CODE has no entry: the row counts, no value does.
                    let Some(&(usable, bin, x)) = effects.get(code as usize) else {
                        continue;
                    };
                    counts.values += usable;
                    if let Some(c) = bin.and_then(|b| counts.bins.get_mut(b)) {
                        *c += 1;
                    }
                    numbers.extend(x);
                }
            }
        }
        // Sorted here without the stable sort's buffer: the KS test's own sort
        // then finds a single run.
        numbers.sort_unstable_by(f64::total_cmp);
        drift_from_counts(name, column, &counts, &numbers, min_samples)
    }
}

impl CurrentData for Table {
    fn rows(&self) -> usize {
        self.rows
    }

    fn column_names(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| !matches!(c.data, TableData::Skipped))
            .map(|c| c.name.as_str())
            .collect()
    }

    fn live_column(&self, name: &str) -> Option<LiveColumn<'_>> {
        match &self.column(name)?.data {
            TableData::Numbers(values) => Some(LiveColumn::Numbers(values)),
            TableData::Labels { values, codes } => Some(LiveColumn::Coded {
                values: values.iter().map(|v| Value::from(v.as_str())).collect(),
                codes,
            }),
            TableData::Skipped => None,
        }
    }
}

impl CurrentData for Dataset {
    fn rows(&self) -> usize {
        Dataset::rows(self)
    }

    fn column_names(&self) -> Vec<&str> {
        Dataset::column_names(self)
    }

    fn live_column(&self, name: &str) -> Option<LiveColumn<'_>> {
        let column = self.column(name)?;
        Some(LiveColumn::Rows(
            (0..column.len()).map(|i| column.json(i)).collect(),
        ))
    }
}

/// How to read a current CSV column so that it compares with `reference`
/// like live values do: as the reference column's type, values that are not
/// one counting as missing.
pub fn reading_for(reference: &ColumnProfile) -> Reading {
    Reading::As(reference.ty)
}

/// Current columns read with inferred types that do not compare like live
/// values with the reference column of the same name (say `yes`/`no` read as
/// a bool where the reference holds those words as categories): read them
/// again with [`reading_for`]. Numbers fit numbers whether int or float.
pub fn misfits(reference: &Profile, current: &Table) -> Vec<String> {
    let kind = |ty: ColumnType| match ty {
        ColumnType::Int | ColumnType::Float => 0,
        ColumnType::Datetime => 1,
        ColumnType::Bool => 2,
        ColumnType::Categorical | ColumnType::Text => 3,
    };
    current
        .columns
        .iter()
        .filter(|c| !matches!(c.data, TableData::Skipped))
        .filter(|c| {
            reference
                .column(&c.name)
                .is_some_and(|r| kind(r.ty) != kind(c.ty))
        })
        .map(|c| c.name.clone())
        .collect()
}

/// The live monitor's drift of one feature ([`crate::drift`]) with the
/// drift threshold `threshold` instead of [`PSI_DRIFT_THRESHOLD`].
pub fn drift_of(
    name: &str,
    column: &ColumnProfile,
    live: &[Option<&Value>],
    min_samples: usize,
    threshold: f64,
) -> FeatureDrift {
    let mut drift = feature_drift(name, column, live, min_samples);
    apply_threshold(&mut drift, threshold);
    drift
}

fn apply_threshold(drift: &mut FeatureDrift, threshold: f64) {
    if let (Some(psi), DriftStatus::Ok | DriftStatus::Drift) = (drift.psi, drift.status) {
        drift.status = if psi > threshold {
            DriftStatus::Drift
        } else {
            DriftStatus::Ok
        };
    }
}

/// Compares every selected reference column with the current column of the
/// same name (columns in parallel).
pub fn compare(
    reference: &Profile,
    current: &impl CurrentData,
    settings: &DriftSettings,
) -> Result<DriftReport, OfflineError> {
    let known = |role: &'static str, name: &str| {
        if reference.column(name).is_some() {
            Ok(())
        } else {
            Err(OfflineError::UnknownColumn {
                role,
                name: name.to_string(),
                available: reference
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };
    if let Some(label) = &settings.label {
        known("label", label)?;
    }
    for name in settings.columns.iter().flatten() {
        known("column", name)?;
    }
    let label = settings.label.as_deref();
    let selected: Vec<&ColumnProfile> = reference
        .columns
        .iter()
        .filter(|c| Some(c.name.as_str()) != label)
        .filter(|c| {
            settings
                .columns
                .as_ref()
                .is_none_or(|wanted| wanted.contains(&c.name))
        })
        .chain(label.and_then(|l| reference.column(l)))
        .collect();
    let mut compared = parallel_map(&selected, |column| column_drift(column, current, settings));
    let prediction_drift = label.and_then(|l| {
        compared.pop().map(|mut d| {
            d.drift.feature = format!("prediction ({l})");
            d
        })
    });
    let unmatched: Vec<String> = current
        .column_names()
        .into_iter()
        .filter(|name| reference.column(name).is_none())
        .map(str::to_string)
        .collect();
    let mut drifted: Vec<String> = compared
        .iter()
        .filter(|d| d.drift.status == DriftStatus::Drift)
        .map(|d| d.drift.feature.clone())
        .collect();
    if let (Some(l), Some(p)) = (label, &prediction_drift)
        && p.drift.status == DriftStatus::Drift
    {
        drifted.push(l.to_string());
    }
    let mut report = DriftReport {
        format: FORMAT.to_string(),
        format_version: FORMAT_VERSION,
        reference: String::new(),
        current: String::new(),
        reference_rows: reference.rows,
        current_rows: current.rows(),
        threshold: settings.threshold,
        min_samples: settings.min_samples,
        label: settings.label.clone(),
        drift: compared,
        prediction_drift,
        unmatched,
        drifted,
        verdict: String::new(),
    };
    report.verdict = verdict(&report);
    Ok(report)
}

fn column_drift(
    column: &ColumnProfile,
    current: &impl CurrentData,
    settings: &DriftSettings,
) -> ColumnDrift {
    let drift = match current.live_column(&column.name) {
        Some(live) => {
            let mut drift = live.drift(&column.name, column, settings.min_samples);
            apply_threshold(&mut drift, settings.threshold);
            drift
        }
        None => {
            let absent = vec![None; current.rows()];
            let mut drift = feature_drift(&column.name, column, &absent, settings.min_samples);
            drift.note = Some("not in the current data".to_string());
            drift
        }
    };
    ColumnDrift {
        drift,
        edges: column
            .numeric
            .as_ref()
            .map(|n| n.histogram.edges.clone())
            .unwrap_or_default(),
    }
}

/// The live monitor's verdict, for two data sets.
fn verdict(report: &DriftReport) -> String {
    let total = report.drift.len();
    let computed = report
        .drift
        .iter()
        .filter(|d| d.drift.status != DriftStatus::InsufficientData)
        .count();
    let drifted: Vec<&str> = report
        .drift
        .iter()
        .filter(|d| d.drift.status == DriftStatus::Drift)
        .map(|d| d.drift.feature.as_str())
        .collect();
    let mut parts = vec![if total == 0 {
        "no feature columns to compare".to_string()
    } else if computed == 0 {
        format!(
            "not enough data for drift ({} current rows, {} values per feature needed)",
            report.current_rows, report.min_samples
        )
    } else {
        features_phrase(total, computed, &drifted)
    }];
    if let Some(p) = &report.prediction_drift
        && p.drift.status == DriftStatus::Drift
    {
        parts.push(format!(
            "predictions drifted (psi {})",
            format_value(p.drift.psi.unwrap_or_default())
        ));
    }
    parts.join("; ")
}

/// The cells of one row of the drift table, as `gantry monitor` prints them:
/// feature, PSI, JS, KS p (or chi² p), missing, status (with its note).
pub fn table_cells(d: &FeatureDrift) -> [String; 6] {
    let number = |x: Option<f64>| x.map_or_else(|| "-".to_string(), format_value);
    let p_value = match (&d.ks, &d.chi_square) {
        (Some(ks), _) => format_value(ks.p_value),
        (None, Some(chi)) => format!("{} (chi²)", format_value(chi.p_value)),
        (None, None) => "-".to_string(),
    };
    let status = status_word(d.status);
    [
        d.feature.clone(),
        number(d.psi),
        number(d.jensen_shannon),
        p_value,
        d.missing_fraction.map_or_else(
            || "-".to_string(),
            |m| format!("{}%", format_value(m * 100.0)),
        ),
        match &d.note {
            Some(note) => format!("{status} ({note})"),
            None => status.to_string(),
        },
    ]
}

pub(crate) fn status_word(status: DriftStatus) -> &'static str {
    match status {
        DriftStatus::Ok => "ok",
        DriftStatus::Drift => "drift",
        DriftStatus::InsufficientData => "insufficient-data",
    }
}

/// `builtin/drift`'s implementation (see [`gantry_ml::drift`]).
pub struct Reporter;

impl DriftReporter for Reporter {
    fn report(
        &self,
        reference: &Profile,
        current: &Dataset,
        options: &DriftOptions,
    ) -> Result<DriftFiles, MlError> {
        let settings = DriftSettings {
            threshold: options.threshold,
            label: options.label.clone(),
            columns: options.columns.clone(),
            ..DriftSettings::default()
        };
        let mut report = compare(reference, current, &settings).map_err(|e| MlError::Option {
            component: "drift".to_string(),
            message: e.to_string(),
        })?;
        report.reference = "reference".to_string();
        report.current = "current".to_string();
        let mut json = serde_json::to_vec_pretty(&report)
            .map_err(|e| MlError::Data(format!("cannot encode the drift report: {e}")))?;
        json.push(b'\n');
        Ok(DriftFiles {
            json,
            markdown: to_markdown(&report),
            html: to_html(&report),
            verdict: report.verdict.clone(),
            drifted: report.drifted.clone(),
            metrics: metrics(&report),
        })
    }
}

/// Step metrics: `columns`, `drifted`, `max_psi`, `psi.<column>`.
pub fn metrics(report: &DriftReport) -> BTreeMap<String, f64> {
    let features = report
        .drift
        .iter()
        .map(|d| (d.drift.feature.as_str(), &d.drift));
    let label = report
        .label
        .as_deref()
        .zip(report.prediction_drift.as_ref())
        .map(|(name, d)| (name, &d.drift));
    let all: Vec<(&str, &FeatureDrift)> = features.chain(label).collect();
    let mut metrics = BTreeMap::from([
        ("columns".to_string(), all.len() as f64),
        ("drifted".to_string(), report.drifted.len() as f64),
    ]);
    let mut max_psi: Option<f64> = None;
    for (name, d) in all {
        if let Some(psi) = d.psi.filter(|p| p.is_finite()) {
            metrics.insert(format!("psi.{name}"), psi);
            max_psi = Some(max_psi.map_or(psi, |m| m.max(psi)));
        }
    }
    if let Some(m) = max_psi {
        metrics.insert("max_psi".to_string(), m);
    }
    metrics
}

#[cfg(test)]
mod tests;
