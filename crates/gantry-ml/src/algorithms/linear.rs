//! Linear models: least squares and ridge (closed form, Cholesky) and
//! L2-regularised logistic regression (binary or multinomial, L-BFGS).

use serde::{Deserialize, Serialize};

use super::boosting::{sigmoid, softmax};
use super::matrix::{Matrix, cholesky_solve, dot};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct LinearModel {
    pub(crate) coefficients: Vec<f64>,
    pub(crate) intercept: f64,
}

impl LinearModel {
    /// Minimises `‖y − Xw − b‖² + alpha‖w‖²` (intercept not penalised).
    /// With `alpha = 0` a rank-deficient design (e.g. one-hot columns that
    /// sum to one) gets the smallest ridge that makes it solvable.
    pub(crate) fn fit(x: &Matrix, y: &[f64], alpha: f64) -> LinearModel {
        let (n, d) = (x.rows(), x.cols());
        let nf = n.max(1) as f64;
        let means: Vec<f64> = (0..d)
            .map(|j| (0..n).map(|i| x.get(i, j)).sum::<f64>() / nf)
            .collect();
        let y_mean = y.iter().sum::<f64>() / nf;
        let mut gram = vec![0.0; d * d];
        let mut rhs = vec![0.0; d];
        let mut centered = vec![0.0; d];
        for (i, yi) in y.iter().enumerate().take(n) {
            for (c, (v, m)) in centered.iter_mut().zip(x.row(i).iter().zip(&means)) {
                *c = v - m;
            }
            let yc = yi - y_mean;
            for a in 0..d {
                let ca = centered[a];
                if ca == 0.0 {
                    continue;
                }
                rhs[a] += ca * yc;
                for b in a..d {
                    gram[a * d + b] += ca * centered[b];
                }
            }
        }
        for a in 0..d {
            for b in 0..a {
                gram[a * d + b] = gram[b * d + a];
            }
        }
        let scale = (0..d).map(|a| gram[a * d + a]).sum::<f64>() / d.max(1) as f64;
        let mut ridge = alpha;
        let mut jitter = 1e-10 * scale.max(1e-12);
        let coefficients = loop {
            let mut a = gram.clone();
            for k in 0..d {
                a[k * d + k] += ridge;
            }
            if let Some(w) = cholesky_solve(&a, &rhs) {
                break w;
            }
            if ridge > 1e12 * scale.max(1.0) {
                break vec![0.0; d];
            }
            ridge = alpha + jitter;
            jitter *= 10.0;
        };
        let intercept = y_mean - dot(&coefficients, &means);
        LinearModel {
            coefficients,
            intercept,
        }
    }

    pub(crate) fn predict(&self, x: &[f64]) -> f64 {
        self.intercept + dot(&self.coefficients, x)
    }
}

/// Binary: one weight row (probability of class 1); K classes: K rows (softmax).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct LogisticModel {
    pub(crate) classes: usize,
    pub(crate) weights: Vec<Vec<f64>>,
    pub(crate) intercepts: Vec<f64>,
    pub(crate) iterations: usize,
}

impl LogisticModel {
    /// Minimises the mean log loss plus `‖W‖² / (2·C·n)` (scikit-learn's
    /// objective divided by n), intercepts not penalised.
    pub(crate) fn fit(
        x: &Matrix,
        y: &[usize],
        classes: usize,
        c: f64,
        max_iter: usize,
    ) -> LogisticModel {
        let (n, d) = (x.rows(), x.cols());
        let rows = if classes == 2 { 1 } else { classes };
        let params = rows * (d + 1);
        let lambda = 1.0 / (c * n.max(1) as f64);
        let objective = |theta: &[f64], grad: &mut [f64]| -> f64 {
            grad.iter_mut().for_each(|g| *g = 0.0);
            let mut loss = 0.0;
            let mut z = vec![0.0; rows];
            for i in 0..n {
                let xi = x.row(i);
                for (k, zk) in z.iter_mut().enumerate() {
                    let w = &theta[k * (d + 1)..k * (d + 1) + d];
                    *zk = dot(w, xi) + theta[k * (d + 1) + d];
                }
                // Per-output error (p − y) for the gradient.
                let errors: Vec<f64> = if rows == 1 {
                    let target = if y[i] == 1 { 1.0 } else { 0.0 };
                    // log(1 + e^z) − t·z, computed stably.
                    loss += z[0].max(0.0) + (-z[0].abs()).exp().ln_1p() - target * z[0];
                    vec![sigmoid(z[0]) - target]
                } else {
                    let p = softmax(&z);
                    loss -= p[y[i]].max(1e-300).ln();
                    p.iter()
                        .enumerate()
                        .map(|(k, pk)| pk - if k == y[i] { 1.0 } else { 0.0 })
                        .collect()
                };
                for (k, e) in errors.iter().enumerate() {
                    let g = &mut grad[k * (d + 1)..(k + 1) * (d + 1)];
                    for (gj, xj) in g[..d].iter_mut().zip(xi) {
                        *gj += e * xj;
                    }
                    g[d] += e;
                }
            }
            let nf = n.max(1) as f64;
            loss /= nf;
            grad.iter_mut().for_each(|g| *g /= nf);
            for k in 0..rows {
                for j in 0..d {
                    let w = theta[k * (d + 1) + j];
                    loss += 0.5 * lambda * w * w;
                    grad[k * (d + 1) + j] += lambda * w;
                }
            }
            loss
        };
        let (theta, iterations) = lbfgs(objective, vec![0.0; params], max_iter, 1e-6);
        LogisticModel {
            classes,
            weights: (0..rows)
                .map(|k| theta[k * (d + 1)..k * (d + 1) + d].to_vec())
                .collect(),
            intercepts: (0..rows).map(|k| theta[k * (d + 1) + d]).collect(),
            iterations,
        }
    }

    pub(crate) fn predict(&self, x: &[f64]) -> Vec<f64> {
        let z: Vec<f64> = self
            .weights
            .iter()
            .zip(&self.intercepts)
            .map(|(w, b)| dot(w, x) + b)
            .collect();
        if self.weights.len() == 1 {
            let p = sigmoid(z[0]);
            vec![1.0 - p, p]
        } else {
            softmax(&z)
        }
    }
}

/// Limited-memory BFGS with a backtracking (Armijo) line search. Returns the
/// minimiser and the number of iterations. Deterministic: no randomness, a
/// fixed order of floating-point operations.
pub(crate) fn lbfgs(
    f: impl Fn(&[f64], &mut [f64]) -> f64,
    mut x: Vec<f64>,
    max_iter: usize,
    tol: f64,
) -> (Vec<f64>, usize) {
    const MEMORY: usize = 10;
    let n = x.len();
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut rho_hist: Vec<f64> = Vec::new();
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    for iter in 0..max_iter {
        let gnorm = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if gnorm < tol {
            return (x, iter);
        }
        // Two-loop recursion: direction = −H·g.
        let mut q = g.clone();
        let mut alpha = vec![0.0; s_hist.len()];
        for k in (0..s_hist.len()).rev() {
            alpha[k] = rho_hist[k] * dot(&s_hist[k], &q);
            q.iter_mut()
                .zip(&y_hist[k])
                .for_each(|(qi, yi)| *qi -= alpha[k] * yi);
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(y)) => dot(s, y) / dot(y, y),
            _ => 1.0 / gnorm.max(1.0),
        };
        q.iter_mut().for_each(|qi| *qi *= gamma);
        for k in 0..s_hist.len() {
            let beta = rho_hist[k] * dot(&y_hist[k], &q);
            q.iter_mut()
                .zip(&s_hist[k])
                .for_each(|(qi, si)| *qi += (alpha[k] - beta) * si);
        }
        let mut direction: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&direction, &g);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho_hist.clear();
            direction = g.iter().map(|v| -v / gnorm.max(1.0)).collect();
            slope = dot(&direction, &g);
        }
        let mut step = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            for i in 0..n {
                x_new[i] = x[i] + step * direction[i];
            }
            let f_new = f(&x_new, &mut g_new);
            if f_new.is_finite() && f_new <= fx + 1e-4 * step * slope {
                let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
                let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &y);
                if sy > 1e-12 {
                    if s_hist.len() == MEMORY {
                        s_hist.remove(0);
                        y_hist.remove(0);
                        rho_hist.remove(0);
                    }
                    s_hist.push(s);
                    y_hist.push(y);
                    rho_hist.push(1.0 / sy);
                }
                let improvement = fx - f_new;
                std::mem::swap(&mut x, &mut x_new);
                std::mem::swap(&mut g, &mut g_new);
                fx = f_new;
                accepted = true;
                if improvement <= 1e-12 * fx.abs().max(1.0) {
                    return (x, iter + 1);
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            return (x, iter + 1);
        }
    }
    (x, max_iter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_recovers_exact_coefficients() {
        let x = Matrix::new(4, 2, vec![0.0, 1.0, 1.0, 0.0, 2.0, 3.0, 3.0, 1.0]);
        let y: Vec<f64> = (0..4)
            .map(|i| 1.0 + 2.0 * x.get(i, 0) - 3.0 * x.get(i, 1))
            .collect();
        let m = LinearModel::fit(&x, &y, 0.0);
        assert!((m.coefficients[0] - 2.0).abs() < 1e-9, "{m:?}");
        assert!((m.coefficients[1] + 3.0).abs() < 1e-9, "{m:?}");
        assert!((m.intercept - 1.0).abs() < 1e-9, "{m:?}");
        // Ridge shrinks.
        let r = LinearModel::fit(&x, &y, 10.0);
        assert!(r.coefficients[0].abs() < 2.0 && r.coefficients[1].abs() < 3.0);
    }

    #[test]
    fn collinear_columns_still_solve() {
        // Two one-hot columns that always sum to one.
        let x = Matrix::new(4, 2, vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
        let y = [5.0, 1.0, 5.0, 1.0];
        let m = LinearModel::fit(&x, &y, 0.0);
        for (i, yi) in y.iter().enumerate() {
            assert!((m.predict(x.row(i)) - yi).abs() < 1e-6, "{m:?}");
        }
    }

    #[test]
    fn lbfgs_minimises_a_quadratic() {
        let f = |x: &[f64], g: &mut [f64]| {
            g[0] = 2.0 * (x[0] - 3.0);
            g[1] = 20.0 * (x[1] + 1.0);
            (x[0] - 3.0).powi(2) + 10.0 * (x[1] + 1.0).powi(2)
        };
        let (x, _) = lbfgs(f, vec![0.0, 0.0], 100, 1e-10);
        assert!(
            (x[0] - 3.0).abs() < 1e-6 && (x[1] + 1.0).abs() < 1e-6,
            "{x:?}"
        );
    }

    #[test]
    fn logistic_regression_separates_and_matches_a_known_solution() {
        // Symmetric data: the optimum has intercept 0 and a positive weight.
        let x = Matrix::new(4, 1, vec![-2.0, -1.0, 1.0, 2.0]);
        let y = [0, 1, 0, 1];
        let m = LogisticModel::fit(&x, &y, 2, 1.0, 100);
        assert!(m.intercepts[0].abs() < 1e-6, "{m:?}");
        assert!(m.weights[0][0] > 0.0);
        let x = Matrix::new(6, 1, vec![-3.0, -2.0, -1.0, 1.0, 2.0, 3.0]);
        let y = [0, 0, 0, 1, 1, 1];
        let m = LogisticModel::fit(&x, &y, 2, 1.0, 100);
        assert!(m.predict(&[2.5])[1] > 0.8);
        let y3 = [0, 0, 1, 1, 2, 2];
        let m = LogisticModel::fit(&x, &y3, 3, 100.0, 200);
        assert!(
            m.predict(&[-3.0])[0] > 0.6 && m.predict(&[3.0])[2] > 0.6,
            "{m:?}"
        );
    }
}
