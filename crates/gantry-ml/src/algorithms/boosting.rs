//! Gradient boosting over regression trees (Friedman): squared error for
//! regression, log loss for binary classification (one tree per stage) and
//! softmax for K classes (K trees per stage), with Newton-step leaf values.

use serde::{Deserialize, Serialize};

use super::matrix::Matrix;
use super::tree::{Target, Tree, TreeParams};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Loss {
    SquaredError,
    Binomial,
    Multinomial,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Boosting {
    pub(crate) loss: Loss,
    pub(crate) learning_rate: f64,
    /// Initial raw score per output (1, or K for softmax).
    pub(crate) init: Vec<f64>,
    /// `stages[s][k]`: the tree of output `k` at stage `s`.
    pub(crate) stages: Vec<Vec<Tree>>,
}

pub(crate) struct BoostingParams {
    pub(crate) n_estimators: usize,
    pub(crate) learning_rate: f64,
    pub(crate) subsample: f64,
    pub(crate) tree: TreeParams,
    pub(crate) seed: u64,
}

impl Boosting {
    pub(crate) fn fit(x: &Matrix, target: Target<'_>, p: &BoostingParams) -> Boosting {
        let n = x.rows();
        let columns = x.columns();
        let mut rng = Rng::new(p.seed);
        let (loss, outputs, y_onehot, init) = match target {
            Target::Values(y) => {
                let mean = y.iter().sum::<f64>() / n.max(1) as f64;
                (Loss::SquaredError, 1, Vec::new(), vec![mean])
            }
            Target::Classes { y, classes } => {
                let mut prior = vec![0.0; classes];
                for &c in y {
                    prior[c] += 1.0 / n.max(1) as f64;
                }
                let clamp = |p: f64| p.clamp(1e-6, 1.0 - 1e-6);
                let onehot: Vec<Vec<f64>> = (0..classes)
                    .map(|k| y.iter().map(|&c| if c == k { 1.0 } else { 0.0 }).collect())
                    .collect();
                if classes == 2 {
                    let p1 = clamp(prior[1]);
                    (Loss::Binomial, 1, onehot, vec![(p1 / (1.0 - p1)).ln()])
                } else {
                    (
                        Loss::Multinomial,
                        classes,
                        onehot,
                        prior.iter().map(|p| clamp(*p).ln()).collect(),
                    )
                }
            }
        };
        // Raw scores F[k][i].
        let mut scores: Vec<Vec<f64>> = init.iter().map(|v| vec![*v; n]).collect();
        let mut stages = Vec::with_capacity(p.n_estimators);
        let mut residual = vec![0.0; n];
        let mut probs = vec![vec![0.0; n]; outputs];
        let take = ((p.subsample * n as f64).round() as usize).clamp(1, n.max(1));
        for _ in 0..p.n_estimators {
            let samples: Vec<usize> = if take < n {
                let mut all: Vec<usize> = (0..n).collect();
                rng.shuffle(&mut all);
                all.truncate(take);
                all.sort_unstable();
                all
            } else {
                (0..n).collect()
            };
            if loss == Loss::Multinomial {
                for i in 0..n {
                    let max = (0..outputs)
                        .map(|k| scores[k][i])
                        .fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = (0..outputs).map(|k| (scores[k][i] - max).exp()).sum();
                    for k in 0..outputs {
                        probs[k][i] = (scores[k][i] - max).exp() / z;
                    }
                }
            }
            let mut stage = Vec::with_capacity(outputs);
            for k in 0..outputs {
                for i in 0..n {
                    residual[i] = match (loss, target) {
                        (Loss::SquaredError, Target::Values(y)) => y[i] - scores[0][i],
                        (Loss::Binomial, _) => y_onehot[1][i] - sigmoid(scores[0][i]),
                        _ => y_onehot[k][i] - probs[k][i],
                    };
                }
                let mut tree = Tree::fit(
                    &columns,
                    samples.clone(),
                    Target::Values(&residual),
                    &p.tree,
                    &mut rng,
                );
                if loss != Loss::SquaredError {
                    newton_leaves(&mut tree, x, &samples, &residual, loss, outputs);
                }
                for (i, score) in scores[k].iter_mut().enumerate() {
                    *score +=
                        p.learning_rate * tree.predict(x.row(i)).first().copied().unwrap_or(0.0);
                }
                stage.push(tree);
            }
            stages.push(stage);
        }
        Boosting {
            loss,
            learning_rate: p.learning_rate,
            init,
            stages,
        }
    }

    /// Regression: `[value]`; classification: class probabilities.
    pub(crate) fn predict(&self, x: &[f64]) -> Vec<f64> {
        let mut raw = self.init.clone();
        for stage in &self.stages {
            for (k, tree) in stage.iter().enumerate() {
                if let Some(r) = raw.get_mut(k) {
                    *r += self.learning_rate * tree.predict(x).first().copied().unwrap_or(0.0);
                }
            }
        }
        match self.loss {
            Loss::SquaredError => raw,
            Loss::Binomial => {
                let p = sigmoid(raw[0]);
                vec![1.0 - p, p]
            }
            Loss::Multinomial => softmax(&raw),
        }
    }
}

/// Replaces each leaf's mean residual by a Newton step:
/// `Σr / Σp(1−p)` (log loss) or `(K−1)/K · Σr / Σ|r|(1−|r|)` (softmax).
fn newton_leaves(
    tree: &mut Tree,
    x: &Matrix,
    samples: &[usize],
    residual: &[f64],
    loss: Loss,
    classes: usize,
) {
    let nodes = tree.nodes();
    let mut num = vec![0.0; nodes];
    let mut den = vec![0.0; nodes];
    for &i in samples {
        let leaf = tree.leaf(x.row(i));
        let r = residual[i];
        num[leaf] += r;
        den[leaf] += r.abs() * (1.0 - r.abs());
    }
    let factor = if loss == Loss::Multinomial {
        (classes as f64 - 1.0) / classes as f64
    } else {
        1.0
    };
    for leaf in 0..nodes {
        if tree.feature[leaf] < 0 {
            let v = if den[leaf] < 1e-12 {
                0.0
            } else {
                factor * num[leaf] / den[leaf]
            };
            tree.value[leaf] = vec![v];
        }
    }
}

pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

pub(crate) fn softmax(raw: &[f64]) -> Vec<f64> {
    let max = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = raw.iter().map(|r| (r - max).exp()).collect();
    let z: f64 = exp.iter().sum();
    exp.iter().map(|e| e / z).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n_estimators: usize) -> BoostingParams {
        BoostingParams {
            n_estimators,
            learning_rate: 0.1,
            subsample: 1.0,
            tree: TreeParams {
                max_depth: 3,
                min_samples_split: 2,
                min_samples_leaf: 1,
                max_features: None,
            },
            seed: 0,
        }
    }

    #[test]
    fn boosting_fits_a_nonlinear_curve_better_with_more_stages() {
        let n = 200;
        let xs: Vec<f64> = (0..n).map(|i| i as f64 / n as f64 * 6.0).collect();
        let y: Vec<f64> = xs.iter().map(|x| x.sin()).collect();
        let x = Matrix::new(n, 1, xs.clone());
        let mse = |m: &Boosting| {
            xs.iter()
                .zip(&y)
                .map(|(x, y)| (m.predict(&[*x])[0] - y).powi(2))
                .sum::<f64>()
                / n as f64
        };
        let few = Boosting::fit(&x, Target::Values(&y), &params(5));
        let many = Boosting::fit(&x, Target::Values(&y), &params(100));
        assert!(mse(&many) < 0.01, "{}", mse(&many));
        assert!(mse(&many) < mse(&few) / 5.0);
    }

    #[test]
    fn binary_and_multiclass_probabilities_sum_to_one_and_separate_classes() {
        let n = 90;
        let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let y3: Vec<usize> = (0..n).map(|i| i / 30).collect();
        let x = Matrix::new(n, 1, xs);
        let m = Boosting::fit(&x, Target::Classes { y: &y3, classes: 3 }, &params(30));
        assert_eq!(m.loss, Loss::Multinomial);
        for (xi, c) in [(5.0, 0), (45.0, 1), (80.0, 2)] {
            let p = m.predict(&[xi]);
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(p[c] > 0.9, "{xi}: {p:?}");
        }
        let y2: Vec<usize> = (0..n).map(|i| usize::from(i >= 60)).collect();
        let m = Boosting::fit(&x, Target::Classes { y: &y2, classes: 2 }, &params(30));
        assert_eq!(m.loss, Loss::Binomial);
        assert!(m.predict(&[70.0])[1] > 0.9);
        assert!(m.predict(&[10.0])[0] > 0.9);
    }
}
