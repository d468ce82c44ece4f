//! Evaluating alert rules against what the monitor computed.

use gantry_ml::model::Task;
use serde::{Deserialize, Serialize};

use crate::drift::{FeatureDrift, FeatureKind};
use crate::format::{format_value, window_phrase};
use crate::latency::LatencyStats;
use crate::performance::PerformanceWindow;
use crate::rule::{AlertRule, FeatureStat, LatencyStat, Metric, PerformanceStat, PredictionStat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertState {
    Firing,
    Ok,
    /// Nothing to compare: no traffic, no labels, too few samples, an unknown feature.
    NoData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertStatus {
    /// The rule in its canonical text.
    pub rule: String,
    pub state: AlertState,
    pub value: Option<f64>,
    pub threshold: f64,
    /// The feature the value belongs to (the worst one for a rule over all features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// For people: "psi of mean_radius is 0.83 > 0.2".
    pub message: String,
}

/// What the rules are evaluated over.
pub(crate) struct Evaluated<'a> {
    pub reference_present: bool,
    pub label_column: Option<&'a str>,
    pub task: Task,
    /// Performance over windows only rules name (not in the report).
    pub extra_performance: &'a [PerformanceWindow],
    pub window_ms: i64,
    pub min_samples: usize,
    pub drift: &'a [FeatureDrift],
    pub prediction_drift: Option<&'a FeatureDrift>,
    pub performance: &'a [PerformanceWindow],
    pub latency: &'a LatencyStats,
}

enum Reading {
    Value {
        subject: String,
        value: f64,
        feature: Option<String>,
        unit: &'static str,
        /// For a rule over all features: how many satisfy it.
        also: Option<usize>,
    },
    NoData(String),
}

pub(crate) fn evaluate_rule(rule: &AlertRule, data: &Evaluated<'_>) -> AlertStatus {
    let threshold = format_value(rule.threshold);
    let op = rule.op.symbol();
    let (state, value, feature, message) = match read(rule, data) {
        Reading::NoData(reason) => (AlertState::NoData, None, None, reason),
        Reading::Value {
            subject,
            value,
            feature,
            unit,
            also,
        } => {
            let shown = format!("{}{unit}", format_value(value));
            if rule.op.holds(value, rule.threshold) {
                let others = match also {
                    Some(n) if n > 1 => format!(" ({n} features over the threshold)"),
                    _ => String::new(),
                };
                let message = format!("{subject} is {shown} {op} {threshold}{unit}{others}");
                (AlertState::Firing, Some(value), feature, message)
            } else {
                let message = format!("{subject} is {shown} (fires when {op} {threshold}{unit})");
                (AlertState::Ok, Some(value), feature, message)
            }
        }
    };
    AlertStatus {
        rule: rule.to_string(),
        state,
        value,
        threshold: rule.threshold,
        feature,
        message,
    }
}

fn read(rule: &AlertRule, data: &Evaluated<'_>) -> Reading {
    let plain = |subject: String, value: f64, unit: &'static str| Reading::Value {
        subject,
        value,
        feature: None,
        unit,
        also: None,
    };
    let window = window_phrase(data.window_ms);
    match &rule.metric {
        Metric::Feature { stat, feature } => read_feature(rule, *stat, feature.as_deref(), data),
        Metric::Prediction(stat) => {
            let name = rule.metric.name();
            let Some(drift) = data.prediction_drift else {
                return Reading::NoData(no_prediction_reference(data));
            };
            let value = match stat {
                PredictionStat::Psi => drift.psi,
                PredictionStat::JensenShannon => drift.jensen_shannon,
            };
            match value {
                Some(v) => plain(
                    format!("{name} (predictions against the labels at training)"),
                    v,
                    "",
                ),
                None => Reading::NoData(format!(
                    "{name}: {}",
                    drift.note.as_deref().unwrap_or("not enough predictions")
                )),
            }
        }
        Metric::Performance { stat, window_ms } => {
            let window_ms = window_ms
                .or_else(|| data.performance.iter().map(|p| p.window_ms).min())
                .unwrap_or(data.window_ms);
            let Some(performance) = data
                .performance
                .iter()
                .chain(data.extra_performance)
                .find(|p| p.window_ms == window_ms)
            else {
                return Reading::NoData(format!(
                    "{}: no performance computed over the last {}",
                    stat.name(),
                    window_phrase(window_ms)
                ));
            };
            let phrase = window_phrase(window_ms);
            let (value, applies) = match stat {
                PerformanceStat::Accuracy => (performance.accuracy, Task::Classification),
                PerformanceStat::F1 => (performance.f1_macro, Task::Classification),
                PerformanceStat::Rmse => (performance.rmse, Task::Regression),
                PerformanceStat::Mae => (performance.mae, Task::Regression),
            };
            let name = stat.name();
            if applies != data.task {
                return Reading::NoData(format!(
                    "{name} applies to {} models; this one is a {} model",
                    applies.name(),
                    data.task.name()
                ));
            }
            match value {
                Some(v) => plain(format!("{name} over the last {phrase}"), v, ""),
                None => Reading::NoData(format!(
                    "{name}: no predictions with feedback labels in the last {phrase}"
                )),
            }
        }
        Metric::Latency(stat) => {
            let value = match stat {
                LatencyStat::P50 => data.latency.p50_ms,
                LatencyStat::P95 => data.latency.p95_ms,
                LatencyStat::P99 => data.latency.p99_ms,
            };
            match value {
                Some(v) => plain(
                    format!("{} latency over the last {window}", stat.name()),
                    v,
                    " ms",
                ),
                None => {
                    Reading::NoData(format!("{}: no requests in the last {window}", stat.name()))
                }
            }
        }
        Metric::ErrorRate => match data.latency.error_rate {
            Some(v) => plain(format!("error rate over the last {window}"), v, ""),
            None => Reading::NoData(format!("error_rate: no requests in the last {window}")),
        },
        Metric::Requests => plain(
            format!("requests in the last {window}"),
            data.latency.requests as f64,
            "",
        ),
    }
}

fn read_feature(
    rule: &AlertRule,
    stat: FeatureStat,
    feature: Option<&str>,
    data: &Evaluated<'_>,
) -> Reading {
    let name = stat.name();
    if !data.reference_present {
        return Reading::NoData(format!(
            "{name}: the deployment has no reference profile to compare with"
        ));
    }
    let value_of = |d: &FeatureDrift| -> Option<f64> {
        match stat {
            FeatureStat::Psi => d.psi,
            FeatureStat::JensenShannon => d.jensen_shannon,
            FeatureStat::Ks => d.ks.map(|k| k.statistic),
            FeatureStat::KsPValue => d.ks.map(|k| k.p_value),
            // Like the other statistics, not judged on a handful of rows.
            FeatureStat::Missing => d
                .missing_fraction
                .filter(|_| d.rows >= data.min_samples.max(1)),
        }
    };
    if let Some(feature) = feature {
        let Some(drift) = data.drift.iter().find(|d| d.feature == feature) else {
            let known: Vec<&str> = data.drift.iter().map(|d| d.feature.as_str()).collect();
            let why = if data.label_column == Some(feature) {
                "is the label column; watch it with prediction_psi or prediction_js".to_string()
            } else {
                format!(
                    "is not an input of the reference profile (inputs: {})",
                    shortlist(&known, 8)
                )
            };
            return Reading::NoData(format!("{name}: feature `{feature}` {why}"));
        };
        return match value_of(drift) {
            Some(value) => Reading::Value {
                subject: format!("{name} of {feature}"),
                value,
                feature: Some(feature.to_string()),
                unit: "",
                also: None,
            },
            None => Reading::NoData(format!(
                "{name} of {feature}: {}",
                why_no_value(stat, drift, data)
            )),
        };
    }
    let values: Vec<(&FeatureDrift, f64)> = data
        .drift
        .iter()
        .filter_map(|d| value_of(d).map(|v| (d, v)))
        .collect();
    let worst = if stat == FeatureStat::KsPValue {
        values.iter().min_by(|a, b| a.1.total_cmp(&b.1))
    } else {
        values.iter().max_by(|a, b| a.1.total_cmp(&b.1))
    };
    match worst {
        Some((drift, value)) => Reading::Value {
            subject: format!("{name} of {}", drift.feature),
            value: *value,
            feature: Some(drift.feature.clone()),
            unit: "",
            also: Some(
                values
                    .iter()
                    .filter(|(_, v)| rule.op.holds(*v, rule.threshold))
                    .count(),
            ),
        },
        None => {
            let ks = matches!(stat, FeatureStat::Ks | FeatureStat::KsPValue);
            let example = if ks {
                data.drift.iter().find(|d| d.kind == FeatureKind::Numeric)
            } else {
                data.drift.first()
            };
            Reading::NoData(match example {
                Some(drift) => format!(
                    "{name}: no feature has a value yet ({})",
                    why_no_value(stat, drift, data)
                ),
                None if ks => {
                    format!("{name}: the reference profile has no numeric input features")
                }
                None => format!("{name}: the reference profile has no input features"),
            })
        }
    }
}

fn why_no_value(stat: FeatureStat, drift: &FeatureDrift, data: &Evaluated<'_>) -> String {
    match stat {
        FeatureStat::Missing => format!(
            "{} live rows, {} needed (min_samples)",
            drift.rows, data.min_samples
        ),
        FeatureStat::Ks | FeatureStat::KsPValue if drift.kind == FeatureKind::Categorical => {
            "KS applies to numeric features; this one is categorical (use psi, js or chi-square)"
                .to_string()
        }
        _ => drift
            .note
            .clone()
            .unwrap_or_else(|| "not enough data".to_string()),
    }
}

fn no_prediction_reference(data: &Evaluated<'_>) -> String {
    if !data.reference_present {
        "the deployment has no reference profile to compare predictions with".to_string()
    } else if let Some(label) = data.label_column {
        format!("the reference profile has no label column `{label}` to compare predictions with")
    } else {
        "the model's label column is unknown, so predictions have no reference".to_string()
    }
}

/// What `computed` of `total` features say about drift once at least one could be checked:
/// "no drift on …" or "drift on N of M features (a, b, c…)". Shared by the live monitor's
/// summary and the offline report's.
pub(crate) fn features_phrase(total: usize, computed: usize, drifted: &[&str]) -> String {
    if drifted.is_empty() {
        let unchecked = total - computed;
        if unchecked == 0 {
            format!("no drift on {total} features")
        } else {
            format!("no drift on {computed} of {total} features ({unchecked} without enough data)")
        }
    } else {
        format!(
            "drift on {} of {total} features ({})",
            drifted.len(),
            shortlist(drifted, 3)
        )
    }
}

pub(crate) fn shortlist(names: &[&str], max: usize) -> String {
    let mut shown = names
        .iter()
        .take(max)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > max {
        shown.push_str(", …");
    }
    if shown.is_empty() {
        shown.push_str("none");
    }
    shown
}
