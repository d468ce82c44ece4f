//! Model quality over feedback labels.

use std::collections::BTreeMap;

use gantry_ml::model::Task;
use serde::{Deserialize, Serialize};

use crate::observation::{Observation, class_text, regression_value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerformanceWindow {
    pub window_ms: i64,
    /// Predictions made in the window.
    pub predictions: usize,
    /// Of those, the ones with a feedback label that can be scored against
    /// the prediction (both present and, for regression, numeric).
    pub labelled: usize,
    /// Classification only; `None` when nothing is labelled.
    pub accuracy: Option<f64>,
    /// Classification only: the unweighted mean F1 over every class seen in
    /// labels or predictions (scikit-learn's `f1_score(average="macro")`).
    pub f1_macro: Option<f64>,
    /// Regression only.
    pub rmse: Option<f64>,
    pub mae: Option<f64>,
}

pub(crate) fn performance_window(
    observations: &[Observation],
    task: Task,
    now_ms: i64,
    window_ms: i64,
) -> PerformanceWindow {
    let window: Vec<&Observation> = observations
        .iter()
        .filter(|o| o.in_window(now_ms, window_ms))
        .collect();
    let mut result = PerformanceWindow {
        window_ms,
        predictions: window.iter().filter(|o| o.prediction.is_some()).count(),
        labelled: 0,
        accuracy: None,
        f1_macro: None,
        rmse: None,
        mae: None,
    };
    match task {
        Task::Classification => {
            let pairs: Vec<(String, String)> = window
                .iter()
                .filter_map(|o| {
                    let truth = class_text(o.label.as_ref()?)?;
                    let predicted = class_text(o.prediction.as_ref()?)?;
                    Some((truth, predicted))
                })
                .collect();
            result.labelled = pairs.len();
            if !pairs.is_empty() {
                result.accuracy =
                    Some(pairs.iter().filter(|(t, p)| t == p).count() as f64 / pairs.len() as f64);
                result.f1_macro = Some(f1_macro(&pairs));
            }
        }
        Task::Regression => {
            let errors: Vec<f64> = window
                .iter()
                .filter_map(|o| {
                    let truth = regression_value(o.label.as_ref()?)?;
                    let predicted = regression_value(o.prediction.as_ref()?)?;
                    Some(predicted - truth)
                })
                .collect();
            result.labelled = errors.len();
            if !errors.is_empty() {
                let n = errors.len() as f64;
                result.rmse = Some((errors.iter().map(|e| e * e).sum::<f64>() / n).sqrt());
                result.mae = Some(errors.iter().map(|e| e.abs()).sum::<f64>() / n);
            }
        }
    }
    result
}

/// `pairs` of (truth, predicted).
fn f1_macro(pairs: &[(String, String)]) -> f64 {
    let mut confusion: BTreeMap<(String, String), u64> = BTreeMap::new();
    for pair in pairs {
        *confusion.entry(pair.clone()).or_default() += 1;
    }
    f1_macro_counts(&confusion)
}

/// Macro F1 from confusion counts: (truth, predicted) → rows.
pub(crate) fn f1_macro_counts(confusion: &BTreeMap<(String, String), u64>) -> f64 {
    #[derive(Default)]
    struct Counts {
        true_positive: u64,
        false_positive: u64,
        false_negative: u64,
    }
    let mut classes: BTreeMap<&str, Counts> = BTreeMap::new();
    for ((truth, predicted), &n) in confusion {
        if n == 0 {
            continue;
        }
        if truth == predicted {
            classes.entry(truth).or_default().true_positive += n;
        } else {
            classes.entry(truth).or_default().false_negative += n;
            classes.entry(predicted).or_default().false_positive += n;
        }
    }
    let f1 = |c: &Counts| {
        let tp = c.true_positive as f64;
        let precision_denominator = tp + c.false_positive as f64;
        let recall_denominator = tp + c.false_negative as f64;
        if tp == 0.0 {
            return 0.0;
        }
        let precision = tp / precision_denominator;
        let recall = tp / recall_denominator;
        2.0 * precision * recall / (precision + recall)
    };
    classes.values().map(f1).sum::<f64>() / classes.len().max(1) as f64
}
