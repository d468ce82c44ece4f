//! CART decision trees: gini for classification, squared error for
//! regression; the base learner of the forest and of gradient boosting.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// A fitted tree as flat arrays (compact in JSON): node `i` is a leaf when
/// `feature[i] < 0`; otherwise rows with `x[feature] <= threshold` go to
/// `left[i]`, the others to `right[i]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tree {
    pub(crate) feature: Vec<i32>,
    pub(crate) threshold: Vec<f64>,
    pub(crate) left: Vec<u32>,
    pub(crate) right: Vec<u32>,
    /// Leaf values: class probabilities (classification) or one value
    /// (regression); empty for inner nodes.
    pub(crate) value: Vec<Vec<f64>>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct TreeParams {
    /// `usize::MAX` for unlimited.
    pub(crate) max_depth: usize,
    pub(crate) min_samples_split: usize,
    pub(crate) min_samples_leaf: usize,
    /// Features tried per split (at least; more when none of them splits);
    /// `None` tries all.
    pub(crate) max_features: Option<usize>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Target<'a> {
    Classes { y: &'a [usize], classes: usize },
    Values(&'a [f64]),
}

struct Work {
    node: usize,
    samples: Vec<usize>,
    depth: usize,
}

struct Split {
    feature: usize,
    threshold: f64,
    score: f64,
}

impl Tree {
    /// Fits on `samples` (row indices into the column-major `columns`;
    /// repeats allowed, as in a bootstrap sample).
    pub(crate) fn fit(
        columns: &[Vec<f64>],
        samples: Vec<usize>,
        target: Target<'_>,
        params: &TreeParams,
        rng: &mut Rng,
    ) -> Tree {
        let mut tree = Tree {
            feature: Vec::new(),
            threshold: Vec::new(),
            left: Vec::new(),
            right: Vec::new(),
            value: Vec::new(),
        };
        tree.push_leaf(Vec::new());
        let mut stack = vec![Work {
            node: 0,
            samples,
            depth: 0,
        }];
        let min_split = params
            .min_samples_split
            .max(2)
            .max(2 * params.min_samples_leaf.max(1));
        while let Some(work) = stack.pop() {
            let n = work.samples.len();
            let split = if work.depth < params.max_depth
                && n >= min_split
                && !pure(&work.samples, target)
            {
                best_split(columns, &work.samples, target, params, rng)
            } else {
                None
            };
            let Some(split) = split else {
                tree.value[work.node] = leaf_value(&work.samples, target);
                continue;
            };
            let column = &columns[split.feature];
            let (left, right): (Vec<usize>, Vec<usize>) = work
                .samples
                .iter()
                .partition(|&&i| column[i] <= split.threshold);
            let l = tree.push_leaf(Vec::new());
            let r = tree.push_leaf(Vec::new());
            tree.feature[work.node] = split.feature as i32;
            tree.threshold[work.node] = split.threshold;
            tree.left[work.node] = l as u32;
            tree.right[work.node] = r as u32;
            // Right first so the left subtree is built (and numbered) first.
            stack.push(Work {
                node: r,
                samples: right,
                depth: work.depth + 1,
            });
            stack.push(Work {
                node: l,
                samples: left,
                depth: work.depth + 1,
            });
        }
        tree
    }

    fn push_leaf(&mut self, value: Vec<f64>) -> usize {
        self.feature.push(-1);
        self.threshold.push(0.0);
        self.left.push(0);
        self.right.push(0);
        self.value.push(value);
        self.feature.len() - 1
    }

    /// The leaf `x` falls into.
    pub(crate) fn leaf(&self, x: &[f64]) -> usize {
        let mut node = 0;
        while let Some(&f) = self.feature.get(node).filter(|f| **f >= 0) {
            let v = x.get(f as usize).copied().unwrap_or(0.0);
            node = if v <= self.threshold[node] {
                self.left[node] as usize
            } else {
                self.right[node] as usize
            };
        }
        node
    }

    pub(crate) fn predict(&self, x: &[f64]) -> &[f64] {
        self.value.get(self.leaf(x)).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn nodes(&self) -> usize {
        self.feature.len()
    }

    #[cfg(test)]
    pub(crate) fn depth(&self) -> usize {
        let mut depth = vec![0usize; self.nodes()];
        let mut max = 0;
        for i in 0..self.nodes() {
            if self.feature[i] >= 0 {
                let here = depth[i];
                for child in [self.left[i] as usize, self.right[i] as usize] {
                    if let Some(d) = depth.get_mut(child) {
                        *d = here + 1;
                        max = max.max(*d);
                    }
                }
            }
        }
        max
    }
}

fn pure(samples: &[usize], target: Target<'_>) -> bool {
    match target {
        Target::Classes { y, .. } => samples.windows(2).all(|w| y[w[0]] == y[w[1]]),
        Target::Values(y) => {
            let first = samples.first().map_or(0.0, |&i| y[i]);
            samples
                .iter()
                .all(|&i| (y[i] - first).abs() <= 1e-12 * first.abs().max(1.0))
        }
    }
}

fn leaf_value(samples: &[usize], target: Target<'_>) -> Vec<f64> {
    let n = samples.len().max(1) as f64;
    match target {
        Target::Classes { y, classes } => {
            let mut counts = vec![0.0; classes];
            for &i in samples {
                counts[y[i]] += 1.0;
            }
            counts.iter().map(|c| c / n).collect()
        }
        Target::Values(y) => vec![samples.iter().map(|&i| y[i]).sum::<f64>() / n],
    }
}

/// The split with the largest impurity decrease, if any decreases it.
///
/// Both criteria reduce to maximising a score over the two children:
/// gini: `Σ_c l_c²/n_l + Σ_c r_c²/n_r`; squared error: `S_l²/n_l + S_r²/n_r`.
fn best_split(
    columns: &[Vec<f64>],
    samples: &[usize],
    target: Target<'_>,
    params: &TreeParams,
    rng: &mut Rng,
) -> Option<Split> {
    let n = samples.len();
    let min_leaf = params.min_samples_leaf.max(1);
    let parent = match target {
        Target::Classes { y, classes } => {
            let mut counts = vec![0.0f64; classes];
            for &i in samples {
                counts[y[i]] += 1.0;
            }
            counts.iter().map(|c| c * c).sum::<f64>() / n as f64
        }
        Target::Values(y) => {
            let s: f64 = samples.iter().map(|&i| y[i]).sum();
            s * s / n as f64
        }
    };
    let mut features: Vec<usize> = (0..columns.len()).collect();
    let wanted = match params.max_features {
        Some(m) if m < features.len() => {
            rng.shuffle(&mut features);
            m.max(1)
        }
        _ => features.len(),
    };
    let mut best: Option<Split> = None;
    let mut order: Vec<(f64, usize)> = Vec::with_capacity(n);
    let mut class_left = match target {
        Target::Classes { classes, .. } => vec![0.0f64; classes],
        Target::Values(_) => Vec::new(),
    };
    let mut class_total = class_left.clone();
    for (tried, &f) in features.iter().enumerate() {
        if tried >= wanted && best.is_some() {
            break;
        }
        let column = &columns[f];
        order.clear();
        order.extend(samples.iter().map(|&i| (column[i], i)));
        order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        if order[0].0 == order[n - 1].0 {
            continue;
        }
        let consider = |pos: usize, score: f64, best: &mut Option<Split>| {
            // pos = number of samples going left.
            if score > best.as_ref().map_or(parent, |b| b.score) + 1e-12 * parent.abs().max(1e-12) {
                let lo = order[pos - 1].0;
                let hi = order[pos].0;
                let mid = lo + (hi - lo) / 2.0;
                *best = Some(Split {
                    feature: f,
                    threshold: if mid < hi { mid } else { lo },
                    score,
                });
            }
        };
        match target {
            Target::Classes { y, .. } => {
                class_left.iter_mut().for_each(|c| *c = 0.0);
                class_total.iter_mut().for_each(|c| *c = 0.0);
                for &(_, i) in &order {
                    class_total[y[i]] += 1.0;
                }
                let mut sq_left = 0.0;
                let mut sq_right: f64 = class_total.iter().map(|c| c * c).sum();
                for pos in 1..n {
                    let c = y[order[pos - 1].1];
                    let l = class_left[c];
                    let r = class_total[c] - l;
                    sq_left += 2.0 * l + 1.0;
                    sq_right -= 2.0 * r - 1.0;
                    class_left[c] = l + 1.0;
                    if order[pos - 1].0 == order[pos].0 || pos < min_leaf || n - pos < min_leaf {
                        continue;
                    }
                    let score = sq_left / pos as f64 + sq_right / (n - pos) as f64;
                    consider(pos, score, &mut best);
                }
            }
            Target::Values(y) => {
                let total: f64 = order.iter().map(|&(_, i)| y[i]).sum();
                let mut left = 0.0;
                for pos in 1..n {
                    left += y[order[pos - 1].1];
                    if order[pos - 1].0 == order[pos].0 || pos < min_leaf || n - pos < min_leaf {
                        continue;
                    }
                    let right = total - left;
                    let score = left * left / pos as f64 + right * right / (n - pos) as f64;
                    consider(pos, score, &mut best);
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> TreeParams {
        TreeParams {
            max_depth: usize::MAX,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: None,
        }
    }

    #[test]
    fn a_tree_learns_xor_exactly() {
        // XOR needs two levels; a greedy tree finds it with a tie-broken first split.
        let x0 = vec![0.0, 0.0, 1.0, 1.0, 0.1, 0.9];
        let x1 = vec![0.0, 1.0, 0.0, 1.0, 0.2, 0.8];
        let y = vec![0, 1, 1, 0, 0, 0];
        let tree = Tree::fit(
            &[x0.clone(), x1.clone()],
            (0..6).collect(),
            Target::Classes { y: &y, classes: 2 },
            &params(),
            &mut Rng::new(0),
        );
        for i in 0..6 {
            let p = tree.predict(&[x0[i], x1[i]]);
            assert_eq!(p[y[i]], 1.0, "row {i}: {p:?}");
        }
    }

    #[test]
    fn regression_leaves_are_means_and_depth_is_limited() {
        let x: Vec<f64> = (0..8).map(f64::from).collect();
        let y = vec![1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 7.0, 9.0];
        let stump = Tree::fit(
            std::slice::from_ref(&x),
            (0..8).collect(),
            Target::Values(&y),
            &TreeParams {
                max_depth: 1,
                ..params()
            },
            &mut Rng::new(0),
        );
        assert_eq!(stump.depth(), 1);
        assert_eq!(stump.threshold[0], 3.5);
        assert_eq!(stump.predict(&[0.0]), &[1.0]);
        assert_eq!(stump.predict(&[6.0]), &[6.5]);
        let full = Tree::fit(
            &[x],
            (0..8).collect(),
            Target::Values(&y),
            &params(),
            &mut Rng::new(0),
        );
        assert_eq!(full.predict(&[7.0]), &[9.0]);
        assert_eq!(full.predict(&[2.0]), &[1.0]);
    }

    #[test]
    fn min_samples_leaf_is_respected() {
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let y: Vec<usize> = (0..10).map(|i| usize::from(i == 9)).collect();
        let tree = Tree::fit(
            &[x],
            (0..10).collect(),
            Target::Classes { y: &y, classes: 2 },
            &TreeParams {
                min_samples_leaf: 3,
                ..params()
            },
            &mut Rng::new(0),
        );
        // The lone positive cannot be isolated: its leaf holds at least 3 rows.
        let p = tree.predict(&[9.0]);
        assert!(p[1] <= 1.0 / 3.0 + 1e-12, "{p:?}");
    }
}
