//! One evaluation of a deployment's monitor: [`evaluate`] → [`MonitorReport`].

use gantry_ml::model::Task;
use gantry_ml::profile::Profile;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aggregate::{Aggregate, ColumnCounts, PerformanceCounts};
use crate::alert::{AlertState, AlertStatus, Evaluated, evaluate_rule, features_phrase};
use crate::drift::{DriftStatus, FeatureDrift, drift_from_counts, feature_drift};
use crate::format::{format_value, window_phrase};
use crate::latency::{LatencyStats, latency_stats};
use crate::observation::Observation;
use crate::performance::{PerformanceWindow, performance_window};
use crate::rule::AlertRule;

pub const DEFAULT_WINDOW_MS: i64 = 3_600_000;
pub const DEFAULT_MIN_SAMPLES: usize = 30;
pub const DEFAULT_PERFORMANCE_WINDOWS_MS: [i64; 3] = [300_000, 3_600_000, 86_400_000];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorConfig {
    /// Drift and latency look at the predictions of this last stretch of time.
    pub window_ms: i64,
    /// Fewer live values than this for a feature (or live rows, for the
    /// missing fraction) and its drift is `insufficient-data`, not computed:
    /// PSI over a handful of values is mostly noise. Even above it PSI reads
    /// high by chance on small samples: a reference bin holding 5% that
    /// happens to be empty live adds 0.05·ln(0.05/1e-4) ≈ 0.31 on its own
    /// (see [`crate::stats::EPSILON`]); with 10 bins, a few hundred values
    /// keep same-distribution PSI well under 0.2.
    pub min_samples: usize,
    /// Performance is computed over each of these windows.
    pub performance_windows_ms: Vec<i64>,
    pub rules: Vec<AlertRule>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            window_ms: DEFAULT_WINDOW_MS,
            min_samples: DEFAULT_MIN_SAMPLES,
            performance_windows_ms: DEFAULT_PERFORMANCE_WINDOWS_MS.to_vec(),
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorReport {
    pub now_ms: i64,
    pub window_ms: i64,
    /// Predictions logged in the window.
    pub samples: usize,
    /// One per model input: every reference column but the label.
    pub drift: Vec<FeatureDrift>,
    /// Predictions against the label's distribution at training.
    pub prediction_drift: Option<FeatureDrift>,
    pub performance: Vec<PerformanceWindow>,
    pub latency: LatencyStats,
    pub alerts: Vec<AlertStatus>,
    /// One line for people.
    pub verdict: String,
}

impl MonitorReport {
    pub fn firing(&self) -> impl Iterator<Item = &AlertStatus> {
        self.alerts.iter().filter(|a| a.state == AlertState::Firing)
    }

    pub fn drifted(&self) -> impl Iterator<Item = &FeatureDrift> {
        self.drift.iter().filter(|d| d.status == DriftStatus::Drift)
    }
}

/// Evaluates a deployment's monitor at `now_ms`: drift of the model inputs
/// and predictions in the last `config.window_ms` against `reference` (the
/// training profile; `label_column` names the label in it), performance
/// over feedback labels per configured window, latency and errors, and the
/// alert rules. `observations` may span more than the windows; the ones
/// outside are ignored.
pub fn evaluate(
    reference: Option<&Profile>,
    label_column: Option<&str>,
    task: Task,
    observations: &[Observation],
    config: &MonitorConfig,
    now_ms: i64,
) -> MonitorReport {
    let window: Vec<&Observation> = observations
        .iter()
        .filter(|o| o.in_window(now_ms, config.window_ms))
        .collect();
    // A row logged without its inputs says nothing about them: it is left
    // out rather than counted as a missing value of every feature.
    let with_inputs: Vec<&Observation> = window
        .iter()
        .copied()
        .filter(|o| !o.inputs.is_empty())
        .collect();
    let drift: Vec<FeatureDrift> = reference.map_or_else(Vec::new, |profile| {
        profile
            .columns
            .iter()
            .filter(|c| Some(c.name.as_str()) != label_column)
            .map(|column| {
                let live: Vec<Option<&Value>> = with_inputs
                    .iter()
                    .map(|o| o.inputs.get(&column.name))
                    .collect();
                feature_drift(&column.name, column, &live, config.min_samples)
            })
            .collect()
    });
    let prediction_drift = reference
        .zip(label_column)
        .and_then(|(profile, label)| profile.column(label))
        .map(|column| {
            let live: Vec<Option<&Value>> = window.iter().map(|o| o.prediction.as_ref()).collect();
            feature_drift(&column.name, column, &live, config.min_samples)
        });
    let performance_of = |w: i64| performance_window(observations, task, now_ms, w);
    let latency = latency_stats(&window);
    assemble(
        Parts {
            reference_present: reference.is_some(),
            label_column,
            task,
            samples: window.len(),
            drift,
            prediction_drift,
            latency,
        },
        &performance_of,
        config,
        now_ms,
    )
}

/// [`evaluate`] from aggregates instead of rows: `window` is the merge of the buckets of the
/// drift window (counted against `reference`), `performance` gives the counts of the buckets
/// of any window (every window of `config`, and those its rules name:
/// [`MonitorConfig::performance_windows`]). PSI, Jensen–Shannon, χ², counts, error rates and
/// performance are those of the rows themselves; KS and latency quantiles are within the
/// bounds documented in [`crate::aggregate`].
pub fn evaluate_aggregated(
    reference: Option<&Profile>,
    label_column: Option<&str>,
    task: Task,
    window: &Aggregate,
    performance: &dyn Fn(i64) -> PerformanceCounts,
    config: &MonitorConfig,
    now_ms: i64,
) -> MonitorReport {
    let drift: Vec<FeatureDrift> = reference.map_or_else(Vec::new, |profile| {
        profile
            .columns
            .iter()
            .filter(|c| Some(c.name.as_str()) != label_column)
            .map(|column| {
                let counts = window
                    .features
                    .get(&column.name)
                    .cloned()
                    .unwrap_or_else(|| {
                        let mut empty = ColumnCounts::for_column(column);
                        // Rows without the column at all still count as rows lacking it.
                        empty.rows = window.with_inputs;
                        empty
                    });
                drift_from_counts(
                    &column.name,
                    column,
                    &counts,
                    &counts.sample.values,
                    config.min_samples,
                )
            })
            .collect()
    });
    let prediction_drift = reference
        .zip(label_column)
        .and_then(|(profile, label)| profile.column(label))
        .map(|column| {
            let counts = window.prediction.clone().unwrap_or_else(|| {
                let mut empty = ColumnCounts::for_column(column);
                empty.rows = window.observations;
                empty
            });
            drift_from_counts(
                &column.name,
                column,
                &counts,
                &counts.sample.values,
                config.min_samples,
            )
        });
    let requests = usize::try_from(window.observations).unwrap_or(usize::MAX);
    let errors = usize::try_from(window.errors).unwrap_or(usize::MAX);
    let latency = LatencyStats {
        requests,
        errors,
        error_rate: (requests > 0).then(|| errors as f64 / requests as f64),
        p50_ms: window.latency.quantile(0.5),
        p95_ms: window.latency.quantile(0.95),
        p99_ms: window.latency.quantile(0.99),
        relative_error: Some(crate::aggregate::LATENCY_RELATIVE_ERROR),
    };
    let performance_of = |w: i64| performance(w).window(task, w);
    assemble(
        Parts {
            reference_present: reference.is_some(),
            label_column,
            task,
            samples: requests,
            drift,
            prediction_drift,
            latency,
        },
        &performance_of,
        config,
        now_ms,
    )
}

impl MonitorConfig {
    /// Every window performance is needed over: the configured ones, then those only the
    /// rules name.
    pub fn performance_windows(&self) -> Vec<i64> {
        let mut out = self.performance_windows_ms.clone();
        for rule in &self.rules {
            if let crate::rule::Metric::Performance {
                window_ms: Some(w), ..
            } = rule.metric
                && !out.contains(&w)
            {
                out.push(w);
            }
        }
        out
    }
}

/// What both ways of evaluating compute before the rules and the verdict.
struct Parts<'a> {
    reference_present: bool,
    label_column: Option<&'a str>,
    task: Task,
    samples: usize,
    drift: Vec<FeatureDrift>,
    prediction_drift: Option<FeatureDrift>,
    latency: LatencyStats,
}

fn assemble(
    parts: Parts<'_>,
    performance_of: &dyn Fn(i64) -> PerformanceWindow,
    config: &MonitorConfig,
    now_ms: i64,
) -> MonitorReport {
    let Parts {
        reference_present,
        label_column,
        task,
        samples,
        drift,
        mut prediction_drift,
        latency,
    } = parts;
    // Both tasks compare like with like: the label column's profile is numeric for
    // regression (and integer classes), categorical for named classes.
    if let Some(d) = prediction_drift.as_mut() {
        d.feature = format!("prediction ({})", d.feature);
    }
    let performance: Vec<PerformanceWindow> = config
        .performance_windows_ms
        .iter()
        .map(|&w| performance_of(w))
        .collect();
    let extra_performance: Vec<PerformanceWindow> = config
        .performance_windows()
        .into_iter()
        .filter(|w| !config.performance_windows_ms.contains(w))
        .map(performance_of)
        .collect();
    let evaluated = Evaluated {
        reference_present,
        label_column,
        task,
        extra_performance: &extra_performance,
        window_ms: config.window_ms,
        min_samples: config.min_samples,
        drift: &drift,
        prediction_drift: prediction_drift.as_ref(),
        performance: &performance,
        latency: &latency,
    };
    let alerts: Vec<AlertStatus> = config
        .rules
        .iter()
        .map(|rule| evaluate_rule(rule, &evaluated))
        .collect();
    let mut report = MonitorReport {
        now_ms,
        window_ms: config.window_ms,
        samples,
        drift,
        prediction_drift,
        performance,
        latency,
        alerts,
        verdict: String::new(),
    };
    report.verdict = verdict(&report, reference_present, task, config.min_samples);
    report
}

fn verdict(report: &MonitorReport, has_reference: bool, task: Task, min_samples: usize) -> String {
    let window = window_phrase(report.window_ms);
    let mut parts = Vec::new();
    if report.samples == 0 {
        parts.push(format!("no predictions in the last {window}"));
    } else if !has_reference {
        parts.push("no reference profile, so drift is not checked".to_string());
    } else {
        let total = report.drift.len();
        let computed = report
            .drift
            .iter()
            .filter(|d| d.status != DriftStatus::InsufficientData)
            .count();
        let drifted: Vec<&str> = report.drifted().map(|d| d.feature.as_str()).collect();
        parts.push(if total == 0 {
            "the reference profile has no input features".to_string()
        } else if computed == 0 {
            format!(
                "not enough data for drift yet ({} predictions in the last {window}, {min_samples} values per feature needed)",
                report.samples
            )
        } else {
            features_phrase(total, computed, &drifted)
        });
        if let Some(prediction) = &report.prediction_drift
            && prediction.status == DriftStatus::Drift
        {
            parts.push(format!(
                "predictions drifted (psi {})",
                format_value(prediction.psi.unwrap_or_default())
            ));
        }
    }
    let scored = report.performance.iter().find(|p| p.labelled > 0);
    parts.push(match (scored, task) {
        (Some(p), Task::Classification) => format!(
            "accuracy {} over the last {} ({} labelled)",
            format_value(p.accuracy.unwrap_or_default()),
            window_phrase(p.window_ms),
            p.labelled
        ),
        (Some(p), Task::Regression) => format!(
            "rmse {} over the last {} ({} labelled)",
            format_value(p.rmse.unwrap_or_default()),
            window_phrase(p.window_ms),
            p.labelled
        ),
        (None, _) => "no feedback labels yet".to_string(),
    });
    let mut line = parts.join("; ");
    let firing = report.firing().count();
    if firing > 0 {
        line.push_str(&format!(
            " ({firing} alert{} firing)",
            if firing == 1 { "" } else { "s" }
        ));
    }
    line
}
