//! Distribution-comparison statistics used for drift.
//!
//! All functions take counts (or raw samples for KS) and are pure. They
//! reproduce the numbers of numpy/scipy so a monitor's output can be checked
//! with a one-liner; each test names the one-liner it was computed with.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use crate::kolmogorov;

/// Floor for a bin's proportion in [`psi`] and for an empty expected bin in
/// [`chi_square`]: an empty bin would otherwise make `ln(a/e)` infinite.
/// The price: a bin that is empty on one side and holds 10% on the other
/// adds about 0.1·ln(0.1/1e-4) ≈ 0.69 to the PSI, so PSI over few samples
/// (where empty bins happen by chance) reads high.
pub const EPSILON: f64 = 1e-4;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error(
        "the expected and actual distributions have {expected} and {actual} bins: compare counts over the same bins"
    )]
    LengthMismatch { expected: usize, actual: usize },
    #[error("the {which} distribution is empty: pass at least one bin (or value)")]
    Empty { which: &'static str },
    #[error("the {which} distribution has no observations (all counts are 0): nothing to compare")]
    ZeroTotal { which: &'static str },
    #[error(
        "the {which} distribution holds {value} at index {index}: counts must be finite and ≥ 0, values finite"
    )]
    InvalidValue {
        which: &'static str,
        index: usize,
        value: f64,
    },
}

/// Result of the two-sample Kolmogorov–Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ks {
    /// The largest distance between the two empirical CDFs, in [0, 1].
    pub statistic: f64,
    pub p_value: f64,
}

/// Result of Pearson's chi-square goodness-of-fit test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChiSquare {
    pub statistic: f64,
    pub p_value: f64,
    /// Degrees of freedom: bins that hold anything on either side, minus one.
    pub degrees_of_freedom: usize,
}

/// Population Stability Index between two count vectors over the same bins:
/// `Σ (a − e)·ln(a / e)` over the proportions `e = expected/Σexpected` and
/// `a = actual/Σactual`, each floored at [`EPSILON`] first. 0 means the same
/// distribution; the usual reading is < 0.1 stable, 0.1–0.2 moderate, > 0.2
/// a significant shift.
pub fn psi(expected: &[f64], actual: &[f64]) -> Result<f64, StatsError> {
    let (e, a) = proportions_pair(expected, actual)?;
    Ok(e.iter()
        .zip(&a)
        .map(|(&e, &a)| {
            let (e, a) = (e.max(EPSILON), a.max(EPSILON));
            (a - e) * (a / e).ln()
        })
        .sum())
}

/// Jensen–Shannon distance with base-2 logarithms, in [0, 1]: the square
/// root of the divergence `½·KL(p‖m) + ½·KL(q‖m)` with `m = (p + q)/2`, as
/// `scipy.spatial.distance.jensenshannon(p, q, base=2)`. Inputs are counts,
/// normalised here; empty bins need no floor (0·ln 0 = 0).
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> Result<f64, StatsError> {
    let (p, q) = proportions_pair(p, q)?;
    let divergence: f64 = p
        .iter()
        .zip(&q)
        .map(|(&p, &q)| {
            let m = (p + q) / 2.0;
            0.5 * (relative_entropy(p, m) + relative_entropy(q, m))
        })
        .sum::<f64>()
        / std::f64::consts::LN_2;
    // Rounding can leave a tiny negative divergence for identical inputs.
    Ok(divergence.max(0.0).sqrt())
}

fn relative_entropy(x: f64, y: f64) -> f64 {
    if x > 0.0 { x * (x / y).ln() } else { 0.0 }
}

/// Two-sample Kolmogorov–Smirnov test (two-sided). The p-value is scipy's
/// `ks_2samp(a, b, method="asymp")`: the Kolmogorov distribution of
/// `D_n` with `n = round(n₁·n₂/(n₁+n₂))` (ties to even), evaluated like
/// `scipy.stats.kstwo.sf` (see [`kolmogorov`](crate::kolmogorov)). It is
/// close to, but more accurate for small samples than, the limiting
/// `Q_KS(√n·D)`.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> Result<Ks, StatsError> {
    let a = sorted_sample(a, "first")?;
    let b = sorted_sample(b, "second")?;
    let (n1, n2) = (a.len(), b.len());
    let (mut i, mut j) = (0, 0);
    let mut statistic: f64 = 0.0;
    // Walk the merged values; at each distinct value both CDFs have taken in
    // every sample ≤ it (scipy's searchsorted side="right").
    while i < n1 && j < n2 {
        let v = a[i].min(b[j]);
        while i < n1 && a[i] <= v {
            i += 1;
        }
        while j < n2 && b[j] <= v {
            j += 1;
        }
        let diff = (i as f64 / n1 as f64 - j as f64 / n2 as f64).abs();
        statistic = statistic.max(diff);
    }
    let en = (n1 as f64 * n2 as f64) / (n1 + n2) as f64;
    // One sample of each side gives en = 0.5, which scipy rounds to 0 (a NaN
    // p-value); one is the smallest meaningful size.
    let n = (en.round_ties_even() as u64).max(1);
    Ok(Ks {
        statistic,
        p_value: kolmogorov::two_sided_sf(n, statistic),
    })
}

/// Pearson's chi-square test of `observed` counts against the `expected`
/// distribution (counts or proportions, scaled to the observed total), as
/// `scipy.stats.chisquare(observed, expected_scaled)`. Bins empty on both
/// sides carry no information and are dropped (they do not count towards
/// the degrees of freedom); an expected proportion of 0 where something was
/// observed is floored at [`EPSILON`], so the statistic stays finite (and
/// very large).
pub fn chi_square(expected: &[f64], observed: &[f64]) -> Result<ChiSquare, StatsError> {
    let (e, _) = proportions_pair(expected, observed)?;
    let total: f64 = observed.iter().sum();
    let mut statistic = 0.0;
    let mut bins = 0usize;
    for (&e, &o) in e.iter().zip(observed) {
        if e == 0.0 && o == 0.0 {
            continue;
        }
        bins += 1;
        let expected_count = if e == 0.0 { EPSILON } else { e } * total;
        statistic += (o - expected_count).powi(2) / expected_count;
    }
    let degrees_of_freedom = bins.saturating_sub(1);
    let p_value = if degrees_of_freedom == 0 {
        // One occupied bin: the distributions cannot differ in shape.
        1.0
    } else {
        ChiSquared::new(degrees_of_freedom as f64)
            .map(|d| d.sf(statistic))
            .unwrap_or(f64::NAN)
    };
    Ok(ChiSquare {
        statistic,
        p_value,
        degrees_of_freedom,
    })
}

/// The `q` quantile (0 ≤ q ≤ 1, clamped) of ascending `sorted` values by
/// linear interpolation between closest ranks (numpy's default); NaN when
/// `sorted` is empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn proportions_pair(expected: &[f64], actual: &[f64]) -> Result<(Vec<f64>, Vec<f64>), StatsError> {
    if expected.len() != actual.len() {
        return Err(StatsError::LengthMismatch {
            expected: expected.len(),
            actual: actual.len(),
        });
    }
    Ok((
        proportions(expected, "expected")?,
        proportions(actual, "actual")?,
    ))
}

fn proportions(counts: &[f64], which: &'static str) -> Result<Vec<f64>, StatsError> {
    if counts.is_empty() {
        return Err(StatsError::Empty { which });
    }
    if let Some((index, &value)) = counts
        .iter()
        .enumerate()
        .find(|(_, c)| !c.is_finite() || **c < 0.0)
    {
        return Err(StatsError::InvalidValue {
            which,
            index,
            value,
        });
    }
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return Err(StatsError::ZeroTotal { which });
    }
    Ok(counts.iter().map(|c| c / total).collect())
}

fn sorted_sample(values: &[f64], which: &'static str) -> Result<Vec<f64>, StatsError> {
    if values.is_empty() {
        return Err(StatsError::Empty { which });
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(StatsError::InvalidValue {
            which,
            index,
            value,
        });
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, tolerance: f64) {
        assert!(
            (got - want).abs() <= tolerance,
            "got {got}, want {want} (± {tolerance})"
        );
    }

    #[test]
    fn psi_by_hand() {
        // Proportions 0.5/0.5 against 0.4/0.6:
        //   (0.4 − 0.5)·ln(0.4/0.5) + (0.6 − 0.5)·ln(0.6/0.5)
        // = 0.1·ln(1.25) + 0.1·ln(1.2) = 0.1·ln(1.5) = 0.0405465…
        close(
            psi(&[50.0, 50.0], &[40.0, 60.0]).unwrap(),
            0.1 * 1.5f64.ln(),
            1e-15,
        );
        assert_eq!(psi(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]).unwrap(), 0.0);
    }

    #[test]
    fn psi_matches_numpy() {
        // E = lambda x: np.maximum(x / x.sum(), 1e-4); p, q = E(e), E(a)
        // np.sum((q - p) * np.log(q / p))
        // with e = np.array([10., 20, 30, 40]), a = np.array([15., 25, 25, 35])
        close(
            psi(&[10.0, 20.0, 30.0, 40.0], &[15.0, 25.0, 25.0, 35.0]).unwrap(),
            0.04722308044204256,
            1e-12,
        );
        // An empty expected bin is floored at 1e-4 instead of dividing by 0:
        // same one-liner with e = [50., 50, 0], a = [40., 40, 20].
        close(
            psi(&[50.0, 50.0, 0.0], &[40.0, 40.0, 20.0]).unwrap(),
            1.5640491119253044,
            1e-12,
        );
    }

    #[test]
    fn jensen_shannon_matches_scipy() {
        // scipy.spatial.distance.jensenshannon([10,20,30,40], [15,25,25,35], base=2)
        close(
            jensen_shannon(&[10.0, 20.0, 30.0, 40.0], &[15.0, 25.0, 25.0, 35.0]).unwrap(),
            0.09210804568706057,
            1e-12,
        );
        // jensenshannon([1,0,3], [0,2,2], base=2)
        close(
            jensen_shannon(&[1.0, 0.0, 3.0], &[0.0, 2.0, 2.0]).unwrap(),
            0.6270214338169248,
            1e-12,
        );
        assert_eq!(jensen_shannon(&[3.0, 1.0], &[6.0, 2.0]).unwrap(), 0.0);
        // Disjoint supports are as far apart as it gets.
        close(
            jensen_shannon(&[1.0, 0.0], &[0.0, 1.0]).unwrap(),
            1.0,
            1e-15,
        );
    }

    #[test]
    fn ks_matches_scipy_asymp() {
        // scipy.stats.ks_2samp(x, y, method="asymp") with
        // x = [0.1,0.5,0.9,1.3,2.2,2.8,3.1,4.0,4.4,5.9]; y = [1.0,1.5,2.0,3.5,3.6,5.0,6.1,7.2]
        let ks = ks_two_sample(
            &[0.1, 0.5, 0.9, 1.3, 2.2, 2.8, 3.1, 4.0, 4.4, 5.9],
            &[1.0, 1.5, 2.0, 3.5, 3.6, 5.0, 6.1, 7.2],
        )
        .unwrap();
        close(ks.statistic, 0.325, 1e-12);
        close(ks.p_value, 0.6900812500000001, 1e-9);
        // Ties: x2 = [1,2,2,3,3,3,4,4,4,4]; y2 = [2,3,3,4,4,4,5,5]
        let ks = ks_two_sample(
            &[1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 4.0],
            &[2.0, 3.0, 3.0, 4.0, 4.0, 4.0, 5.0, 5.0],
        )
        .unwrap();
        close(ks.statistic, 0.25, 1e-12);
        close(ks.p_value, 0.90625, 1e-9);
    }

    /// Larger samples reach the other branches of the Kolmogorov distribution:
    /// a = [(i*0.6180339887) % 1 for i in range(1, N+1)]
    /// b = [((i*0.4142135623) % 1)**P for i in range(1, M+1)]
    /// ks_2samp(a, b, method="asymp")
    #[test]
    fn ks_matches_scipy_on_larger_samples() {
        let a =
            |n: usize| -> Vec<f64> { (1..=n).map(|i| (i as f64 * 0.6180339887) % 1.0).collect() };
        let b = |m: usize, p: f64| -> Vec<f64> {
            (1..=m)
                .map(|i| ((i as f64 * 0.4142135623) % 1.0).powf(p))
                .collect()
        };
        for (n, m, p, statistic, p_value) in [
            (300, 200, 1.3, 0.10500000000000004, 0.13200897954441235),
            (1000, 400, 1.1, 0.038000000000000034, 0.7886464329451963),
            (1000, 400, 1.5, 0.15100000000000002, 3.700624084052884e-06),
        ] {
            let ks = ks_two_sample(&a(n), &b(m, p)).unwrap();
            close(ks.statistic, statistic, 1e-12);
            close(ks.p_value, p_value, 1e-9);
        }
    }

    #[test]
    fn chi_square_matches_scipy() {
        // obs = np.array([18., 22, 35, 25]); exp = np.array([0.2, 0.25, 0.3, 0.25])
        // scipy.stats.chisquare(obs, exp * obs.sum())
        let c = chi_square(&[0.2, 0.25, 0.3, 0.25], &[18.0, 22.0, 35.0, 25.0]).unwrap();
        close(c.statistic, 1.3933333333333335, 1e-12);
        close(c.p_value, 0.7070981764915207, 1e-9);
        assert_eq!(c.degrees_of_freedom, 3);
        // Expected given as counts: obs = [30., 14, 34, 45, 57, 20], exp = [20., 20, 30, 40, 60, 30]
        // chisquare(obs, exp / exp.sum() * obs.sum())
        let c = chi_square(
            &[20.0, 20.0, 30.0, 40.0, 60.0, 30.0],
            &[30.0, 14.0, 34.0, 45.0, 57.0, 20.0],
        )
        .unwrap();
        close(c.statistic, 11.441666666666666, 1e-12);
        close(c.p_value, 0.04329313031580497, 1e-9);
    }

    #[test]
    fn chi_square_drops_bins_empty_on_both_sides_and_floors_unseen_ones() {
        let with_empty = chi_square(&[20.0, 30.0, 0.0], &[25.0, 25.0, 0.0]).unwrap();
        let without = chi_square(&[20.0, 30.0], &[25.0, 25.0]).unwrap();
        assert_eq!(with_empty, without);
        assert_eq!(without.degrees_of_freedom, 1);
        // A category never seen in the reference: (10 − 50·1e-4)² / (50·1e-4) ≈ 19990.
        let unseen = chi_square(&[20.0, 30.0, 0.0], &[20.0, 20.0, 10.0]).unwrap();
        assert!(unseen.statistic.is_finite() && unseen.statistic > 19_000.0);
        assert!(unseen.p_value < 1e-12);
        assert_eq!(chi_square(&[5.0], &[9.0]).unwrap().p_value, 1.0);
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        // np.quantile([1,2,3,4,10], [0, 0.5, 0.95, 1]) → 1, 3, 8.8, 10
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 0.5), 3.0);
        close(quantile(&v, 0.95), 8.8, 1e-12);
        assert_eq!(quantile(&v, 1.0), 10.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn bad_inputs_are_errors_that_say_what_to_do() {
        let err = psi(&[1.0, 2.0], &[1.0]).unwrap_err();
        assert_eq!(
            err,
            StatsError::LengthMismatch {
                expected: 2,
                actual: 1
            }
        );
        assert!(err.to_string().contains("same bins"), "{err}");
        assert_eq!(
            jensen_shannon(&[], &[]).unwrap_err(),
            StatsError::Empty { which: "expected" }
        );
        let err = psi(&[0.0, 0.0], &[1.0, 2.0]).unwrap_err();
        assert_eq!(err, StatsError::ZeroTotal { which: "expected" });
        let err = chi_square(&[1.0, -2.0], &[1.0, 2.0]).unwrap_err();
        assert!(
            matches!(err, StatsError::InvalidValue { index: 1, .. }),
            "{err}"
        );
        let err = ks_two_sample(&[1.0, f64::NAN], &[1.0]).unwrap_err();
        assert!(err.to_string().contains("index 1"), "{err}");
        assert_eq!(
            ks_two_sample(&[1.0], &[]).unwrap_err(),
            StatsError::Empty { which: "second" }
        );
    }
}
