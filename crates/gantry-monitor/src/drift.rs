//! Drift of one column: live values against the column's reference profile.

use gantry_ml::profile::ColumnProfile;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::ColumnCounts;
use crate::format::format_value;
use crate::stats::{self, ChiSquare, Ks};

/// A feature drifts when its PSI is above this. The common reading of PSI:
/// < 0.1 no meaningful change, 0.1–0.2 moderate, > 0.2 significant.
pub const PSI_DRIFT_THRESHOLD: f64 = 0.2;

/// The bucket live categorical values outside the reference `top` fall in.
pub const OTHER_BUCKET: &str = "(other)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    Numeric,
    Categorical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftStatus {
    Ok,
    Drift,
    InsufficientData,
}

/// One bin of the comparison, as proportions (for charts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// `[1.5, 2)` for a numeric bin, the value for a category, [`OTHER_BUCKET`].
    pub label: String,
    pub reference: f64,
    pub live: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub feature: String,
    pub kind: FeatureKind,
    pub status: DriftStatus,
    /// Live rows that carry this feature's inputs (missing values included).
    pub rows: usize,
    /// Live non-missing values compared with the reference.
    pub samples: usize,
    pub psi: Option<f64>,
    pub jensen_shannon: Option<f64>,
    /// Numeric features whose reference profile holds a `sample` only.
    pub ks: Option<Ks>,
    /// When `ks` was computed over a sample of the live values (a monitor window larger than
    /// its sample): the statistic is within this of the full data's, with 95% confidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ks_error_bound: Option<f64>,
    /// Categorical features only.
    pub chi_square: Option<ChiSquare>,
    /// Of the live rows; `None` without live rows.
    pub missing_fraction: Option<f64>,
    pub reference_missing_fraction: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bins: Vec<Bin>,
    /// Why statistics are missing, when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl FeatureDrift {
    fn empty(name: &str, column: &ColumnProfile, rows: usize, missing: usize) -> Self {
        FeatureDrift {
            feature: name.to_string(),
            kind: if column.ty.is_numeric() && column.categorical.is_none() {
                FeatureKind::Numeric
            } else {
                FeatureKind::Categorical
            },
            status: DriftStatus::InsufficientData,
            rows,
            samples: rows - missing,
            psi: None,
            jensen_shannon: None,
            ks: None,
            ks_error_bound: None,
            chi_square: None,
            missing_fraction: (rows > 0).then(|| missing as f64 / rows as f64),
            reference_missing_fraction: column.missing_fraction,
            bins: Vec::new(),
            note: None,
        }
    }
}

/// Compares `live` values (one per live row; `None` where the row lacks the
/// key) with `column`'s reference distribution. Fewer than `min_samples`
/// usable values give [`DriftStatus::InsufficientData`] and no statistics.
pub(crate) fn feature_drift(
    name: &str,
    column: &ColumnProfile,
    live: &[Option<&Value>],
    min_samples: usize,
) -> FeatureDrift {
    let mut counts = ColumnCounts::for_column(column);
    let mut values = Vec::new();
    for v in live {
        if let Some(x) = counts.add(column, *v) {
            values.push(x);
        }
    }
    drift_from_counts(name, column, &counts, &values, min_samples)
}

/// The drift of one column from its live counts (see [`ColumnCounts`]) and the live numeric
/// values the KS test compares (all of them, or a uniform sample of them).
pub(crate) fn drift_from_counts(
    name: &str,
    column: &ColumnProfile,
    counts: &ColumnCounts,
    sample: &[f64],
    min_samples: usize,
) -> FeatureDrift {
    let rows = usize::try_from(counts.rows).unwrap_or(usize::MAX);
    let values = usize::try_from(counts.values)
        .unwrap_or(usize::MAX)
        .min(rows);
    let mut drift = FeatureDrift::empty(name, column, rows, rows - values);
    let actual: Vec<f64> = counts.bins.iter().map(|&c| c as f64).collect();
    if let Some(numeric) = &column.numeric {
        drift.kind = FeatureKind::Numeric;
        if let Some(note) = too_few(values, min_samples) {
            drift.note = Some(note);
            return drift;
        }
        let histogram = &numeric.histogram;
        let expected: Vec<f64> = histogram.counts.iter().map(|&c| c as f64).collect();
        drift.bins = bins(&expected, &actual, |i| {
            numeric_bin_label(&histogram.edges, i)
        });
        compare(&mut drift, &expected, &actual);
        if numeric.sample.is_empty() {
            drift.note = Some(
                "the reference profile has no sample, so no KS test: profile the training data again to add one"
                    .to_string(),
            );
        } else {
            drift.ks = stats::ks_two_sample(&numeric.sample, sample).ok();
            if drift.ks.is_some() && (sample.len() as u64) < counts.values {
                drift.ks_error_bound = Some(crate::aggregate::KS_SAMPLE_BOUND);
            }
        }
        drift
    } else if let Some(categorical) = &column.categorical {
        drift.kind = FeatureKind::Categorical;
        if let Some(note) = too_few(values, min_samples) {
            drift.note = Some(note);
            return drift;
        }
        let mut expected: Vec<f64> = categorical.top.iter().map(|t| t.count as f64).collect();
        expected.push(categorical.other as f64);
        drift.bins = bins(&expected, &actual, |i| {
            categorical
                .top
                .get(i)
                .map_or_else(|| OTHER_BUCKET.to_string(), |t| t.value.clone())
        });
        compare(&mut drift, &expected, &actual);
        drift.chi_square = stats::chi_square(&expected, &actual).ok();
        drift
    } else {
        drift.note = Some(format!(
            "the reference profile has no values for `{name}` (it was entirely missing at training)"
        ));
        drift
    }
}

fn too_few(samples: usize, min_samples: usize) -> Option<String> {
    (samples < min_samples.max(1)).then(|| {
        format!(
            "{samples} live values, {min_samples} needed (min_samples) to compare distributions"
        )
    })
}

fn compare(drift: &mut FeatureDrift, expected: &[f64], actual: &[f64]) {
    drift.psi = stats::psi(expected, actual).ok();
    drift.jensen_shannon = stats::jensen_shannon(expected, actual).ok();
    drift.status = match drift.psi {
        Some(psi) if psi > PSI_DRIFT_THRESHOLD => DriftStatus::Drift,
        Some(_) => DriftStatus::Ok,
        // The reference bins are all empty: nothing to compare with.
        None => {
            drift.note = Some("the reference distribution is empty".to_string());
            DriftStatus::InsufficientData
        }
    };
}

fn bins(expected: &[f64], actual: &[f64], label: impl Fn(usize) -> String) -> Vec<Bin> {
    let share = |counts: &[f64], i: usize| {
        let total: f64 = counts.iter().sum();
        if total > 0.0 { counts[i] / total } else { 0.0 }
    };
    (0..expected.len())
        .map(|i| Bin {
            label: label(i),
            reference: share(expected, i),
            live: share(actual, i),
        })
        .collect()
}

fn numeric_bin_label(edges: &[f64], i: usize) -> String {
    match (edges.get(i), edges.get(i + 1)) {
        (Some(lo), Some(hi)) if i + 2 == edges.len() => {
            format!("[{}, {}]", format_value(*lo), format_value(*hi))
        }
        (Some(lo), Some(hi)) => format!("[{}, {})", format_value(*lo), format_value(*hi)),
        _ => format!("bin {i}"),
    }
}
