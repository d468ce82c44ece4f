//! Random forest: bootstrap samples, random feature subsets per split, soft
//! voting (averaged leaf probabilities) or averaged values.

use serde::{Deserialize, Serialize};

use super::matrix::Matrix;
use super::tree::{Target, Tree, TreeParams};
use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Forest {
    pub(crate) trees: Vec<Tree>,
}

impl Forest {
    /// Trees are built in parallel, each from its own seed drawn in order from
    /// `seed`, so the result does not depend on the number of threads.
    pub(crate) fn fit(
        x: &Matrix,
        target: Target<'_>,
        n_trees: usize,
        params: &TreeParams,
        seed: u64,
    ) -> Forest {
        let columns = x.columns();
        let n = x.rows();
        let mut master = Rng::new(seed);
        let rngs: Vec<Rng> = (0..n_trees).map(|_| master.fork()).collect();
        let build = |mut rng: Rng| {
            let samples: Vec<usize> = (0..n).map(|_| rng.below(n)).collect();
            Tree::fit(&columns, samples, target, params, &mut rng)
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(n_trees.max(1));
        let trees = if threads <= 1 {
            rngs.into_iter().map(build).collect()
        } else {
            let chunk = n_trees.div_ceil(threads);
            let mut rngs = rngs;
            let mut parts: Vec<Vec<Rng>> = Vec::new();
            while !rngs.is_empty() {
                let rest = rngs.split_off(chunk.min(rngs.len()));
                parts.push(std::mem::replace(&mut rngs, rest));
            }
            std::thread::scope(|scope| {
                let handles: Vec<_> = parts
                    .into_iter()
                    .map(|part| scope.spawn(|| part.into_iter().map(build).collect::<Vec<Tree>>()))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        };
        Forest { trees }
    }

    /// The averaged leaf values of all trees.
    pub(crate) fn predict(&self, x: &[f64]) -> Vec<f64> {
        let mut sum: Vec<f64> = Vec::new();
        for tree in &self.trees {
            let v = tree.predict(x);
            if sum.is_empty() {
                sum = v.to_vec();
            } else {
                sum.iter_mut().zip(v).for_each(|(s, v)| *s += v);
            }
        }
        let k = self.trees.len().max(1) as f64;
        sum.iter_mut().for_each(|s| *s /= k);
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forest_is_deterministic_and_averages_probabilities() {
        let mut rng = Rng::new(5);
        let n = 200;
        let data: Vec<f64> = (0..n * 3).map(|_| rng.next_f64()).collect();
        let x = Matrix::new(n, 3, data);
        let y: Vec<usize> = (0..n)
            .map(|i| usize::from(x.get(i, 0) + x.get(i, 1) > 1.0))
            .collect();
        let params = TreeParams {
            max_depth: usize::MAX,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_features: Some(2),
        };
        let a = Forest::fit(&x, Target::Classes { y: &y, classes: 2 }, 20, &params, 1);
        let b = Forest::fit(&x, Target::Classes { y: &y, classes: 2 }, 20, &params, 1);
        assert_eq!(a, b);
        let c = Forest::fit(&x, Target::Classes { y: &y, classes: 2 }, 20, &params, 2);
        assert_ne!(a, c);
        let p = a.predict(&[0.9, 0.9, 0.5]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(p[1] > 0.8, "{p:?}");
        assert!(a.predict(&[0.05, 0.1, 0.5])[0] > 0.8);
    }
}
