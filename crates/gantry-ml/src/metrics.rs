//! Quality metrics of predictions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Rows of this class in the truth.
    pub support: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    pub rows: u64,
    pub accuracy: f64,
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub f1_macro: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[actual][predicted]`, classes in `per_class` order.
    pub confusion: Vec<Vec<u64>>,
    /// Binary only: ROC AUC with the second class (in sorted order) as positive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_loss: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub rows: u64,
    pub rmse: f64,
    pub mae: f64,
    pub r2: f64,
}

/// `truth` may hold class indices beyond the model's classes (labels never
/// seen in training); `names` covers all of them.
pub(crate) fn classification(
    truth: &[usize],
    predicted: &[usize],
    names: &[String],
    probabilities: Option<&[Vec<f64>]>,
) -> ClassificationMetrics {
    let k = names.len();
    let n = truth.len();
    let mut confusion = vec![vec![0u64; k]; k];
    for (&t, &p) in truth.iter().zip(predicted) {
        if t < k && p < k {
            confusion[t][p] += 1;
        }
    }
    let correct: u64 = (0..k).map(|c| confusion[c][c]).sum();
    let mut per_class = Vec::with_capacity(k);
    let (mut p_sum, mut r_sum, mut f_sum, mut present) = (0.0, 0.0, 0.0, 0usize);
    for c in 0..k {
        let tp = confusion[c][c] as f64;
        let actual: u64 = confusion[c].iter().sum();
        let predicted_c: u64 = (0..k).map(|r| confusion[r][c]).sum();
        let precision = if predicted_c == 0 {
            0.0
        } else {
            tp / predicted_c as f64
        };
        let recall = if actual == 0 { 0.0 } else { tp / actual as f64 };
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        if actual > 0 || predicted_c > 0 {
            present += 1;
            p_sum += precision;
            r_sum += recall;
            f_sum += f1;
        }
        per_class.push(ClassMetrics {
            class: names[c].clone(),
            precision,
            recall,
            f1,
            support: actual,
        });
    }
    let present = present.max(1) as f64;
    let auc = match probabilities {
        Some(p) if p.first().is_some_and(|row| row.len() == 2) => {
            let scores: Vec<f64> = p.iter().map(|row| row[1]).collect();
            let positive: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
            roc_auc(&scores, &positive)
        }
        _ => None,
    };
    let log_loss = probabilities.map(|p| {
        let total: f64 = truth
            .iter()
            .zip(p)
            .map(|(&t, row)| -row.get(t).copied().unwrap_or(0.0).clamp(1e-15, 1.0).ln())
            .sum();
        // `+ 0.0` turns a perfect score's -0.0 into 0.0.
        total / n.max(1) as f64 + 0.0
    });
    ClassificationMetrics {
        rows: n as u64,
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        precision_macro: p_sum / present,
        recall_macro: r_sum / present,
        f1_macro: f_sum / present,
        per_class,
        confusion,
        auc,
        log_loss,
    }
}

/// Mann–Whitney estimate (ties count one half); `None` without both classes.
pub(crate) fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let pos = positive.iter().filter(|p| **p).count();
    let neg = positive.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &idx in &order[i..=j] {
            if positive[idx] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_pos - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos * neg) as f64)
}

pub(crate) fn regression(truth: &[f64], predicted: &[f64]) -> RegressionMetrics {
    let n = truth.len().max(1) as f64;
    let mean = truth.iter().sum::<f64>() / n;
    let mut sse = 0.0;
    let mut sae = 0.0;
    let mut sst = 0.0;
    for (t, p) in truth.iter().zip(predicted) {
        sse += (t - p).powi(2);
        sae += (t - p).abs();
        sst += (t - mean).powi(2);
    }
    RegressionMetrics {
        rows: truth.len() as u64,
        rmse: (sse / n).sqrt(),
        mae: sae / n,
        r2: if sst == 0.0 { 0.0 } else { 1.0 - sse / sst },
    }
}

impl ClassificationMetrics {
    /// Flat metrics, names prefixed with `prefix` (e.g. `validation.`).
    pub(crate) fn to_map(&self, prefix: &str, per_class: bool) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert(format!("{prefix}accuracy"), self.accuracy);
        m.insert(format!("{prefix}precision_macro"), self.precision_macro);
        m.insert(format!("{prefix}recall_macro"), self.recall_macro);
        m.insert(format!("{prefix}f1_macro"), self.f1_macro);
        if let Some(auc) = self.auc {
            m.insert(format!("{prefix}auc"), auc);
        }
        if let Some(l) = self.log_loss {
            m.insert(format!("{prefix}log_loss"), l);
        }
        if per_class {
            for c in &self.per_class {
                m.insert(format!("{prefix}precision.{}", c.class), c.precision);
                m.insert(format!("{prefix}recall.{}", c.class), c.recall);
                m.insert(format!("{prefix}f1.{}", c.class), c.f1);
            }
        }
        m
    }

    pub(crate) fn to_markdown(&self) -> String {
        let mut md = format!(
            "accuracy {:.4}, macro precision {:.4}, recall {:.4}, F1 {:.4}{} on {} rows\n\n| class | precision | recall | f1 | support |\n|---|---|---|---|---|\n",
            self.accuracy,
            self.precision_macro,
            self.recall_macro,
            self.f1_macro,
            self.auc
                .map_or(String::new(), |a| format!(", ROC AUC {a:.4}")),
            self.rows
        );
        for c in &self.per_class {
            md.push_str(&format!(
                "| {} | {:.4} | {:.4} | {:.4} | {} |\n",
                c.class, c.precision, c.recall, c.f1, c.support
            ));
        }
        md.push_str("\nconfusion (rows: actual, columns: predicted)\n\n| |");
        for c in &self.per_class {
            md.push_str(&format!(" {} |", c.class));
        }
        md.push_str("\n|---|");
        md.push_str(&"---|".repeat(self.per_class.len()));
        md.push('\n');
        for (c, row) in self.per_class.iter().zip(&self.confusion) {
            md.push_str(&format!("| {} |", c.class));
            for v in row {
                md.push_str(&format!(" {v} |"));
            }
            md.push('\n');
        }
        md
    }
}

impl RegressionMetrics {
    pub(crate) fn to_map(&self, prefix: &str) -> BTreeMap<String, f64> {
        BTreeMap::from([
            (format!("{prefix}rmse"), self.rmse),
            (format!("{prefix}mae"), self.mae),
            (format!("{prefix}r2"), self.r2),
        ])
    }

    pub(crate) fn to_markdown(&self) -> String {
        format!(
            "RMSE {:.4}, MAE {:.4}, R² {:.4} on {} rows\n",
            self.rmse, self.mae, self.r2, self.rows
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_metrics_match_hand_computed_values() {
        let names: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let truth = [0, 0, 0, 1, 1];
        let pred = [0, 0, 1, 1, 0];
        let m = classification(&truth, &pred, &names, None);
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        assert_eq!(m.confusion, vec![vec![2, 1], vec![1, 1]]);
        let a = &m.per_class[0];
        assert!((a.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((a.recall - 2.0 / 3.0).abs() < 1e-12);
        let b = &m.per_class[1];
        assert!((b.precision - 0.5).abs() < 1e-12 && (b.recall - 0.5).abs() < 1e-12);
        assert!((m.f1_macro - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn auc_counts_ties_as_half() {
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[0.5, 0.7], &[true, true]), None);
    }

    #[test]
    fn regression_metrics() {
        let m = regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 5.0]);
        assert!((m.rmse - (4.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!((m.mae - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.r2 - (1.0 - 4.0 / 2.0)).abs() < 1e-12);
    }
}
