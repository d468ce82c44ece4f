//! `split`: seeded, optionally stratified train / test (/ validation) split.

use std::collections::BTreeMap;

use crate::MlError;
use crate::components::{ComponentIo, ComponentOutcome};
use crate::dataset;
use crate::options::{OptionInfo, OptionKind, Options};
use crate::rng::Rng;

pub(crate) const NAME: &str = "split";

pub(crate) const OPTIONS: &[OptionInfo] = &[
    OptionInfo {
        name: "test_fraction",
        kind: OptionKind::Fraction,
        default: "0.2",
        description: "Share of rows in `test`.",
    },
    OptionInfo {
        name: "validation_fraction",
        kind: OptionKind::Fraction,
        default: "0",
        description: "Share of rows in `validation`; above 0 the `validation` output is written.",
    },
    OptionInfo {
        name: "seed",
        kind: OptionKind::Integer,
        default: "0",
        description: "Seed of the shuffle: the same seed and data give the same split.",
    },
    OptionInfo {
        name: "stratify",
        kind: OptionKind::String,
        default: "",
        description: "A column whose value proportions are kept in every part (usually the label).",
    },
];

pub(crate) const NOTES: &str = "\
Rows are shuffled with the seed (per stratum when `stratify` is set; missing values form their \
own stratum); a part with fraction f gets round(n·f) rows, spread over the strata in \
proportion, and every part keeps the original row order. A part with a fraction above 0 gets at least one row. Metrics: \
`train_rows`, `test_rows`, `validation_rows`.";

/// Splits row indices `0..n` into `[rest, part_1, part_2, …]` with
/// `fractions[j]` of the rows in `part_{j+1}`, per stratum when `strata` is given.
/// Each part is sorted.
pub(crate) fn partition(
    n: usize,
    strata: Option<&[Option<String>]>,
    fractions: &[f64],
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let key = strata.and_then(|s| s[i].as_deref());
        groups.entry(key).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
    // Each part gets round(n · f) rows in total: per stratum the floor of its
    // share, and the rows left over go to the strata with the largest remainders.
    let mut counts = vec![vec![0usize; fractions.len()]; groups.len()];
    for (j, f) in fractions.iter().enumerate() {
        let target = (n as f64 * f).round() as usize;
        let mut assigned = 0;
        let mut remainders = Vec::with_capacity(groups.len());
        for (g, rows) in groups.iter().enumerate() {
            let exact = rows.len() as f64 * f;
            counts[g][j] = exact.floor() as usize;
            assigned += counts[g][j];
            remainders.push((exact - exact.floor(), g));
        }
        remainders.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, g) in remainders {
            if assigned >= target {
                break;
            }
            if counts[g].iter().sum::<usize>() < groups[g].len() {
                counts[g][j] += 1;
                assigned += 1;
            }
        }
    }
    let mut rng = Rng::new(seed);
    let mut parts = vec![Vec::new(); fractions.len() + 1];
    for (rows, counts) in groups.iter_mut().zip(&counts) {
        rng.shuffle(rows);
        let mut start = 0;
        for (j, &k) in counts.iter().enumerate() {
            parts[j + 1].extend_from_slice(&rows[start..start + k]);
            start += k;
        }
        parts[0].extend_from_slice(&rows[start..]);
    }
    for (j, f) in fractions.iter().enumerate() {
        if parts[j + 1].is_empty() && *f > 0.0 && parts[0].len() > 1 {
            parts[0].sort_unstable();
            let pick = rng.below(parts[0].len());
            let row = parts[0].remove(pick);
            parts[j + 1].push(row);
        }
    }
    for part in &mut parts {
        part.sort_unstable();
    }
    parts
}

pub(crate) fn run(io: &ComponentIo, opts: &Options) -> Result<ComponentOutcome, MlError> {
    let ds = dataset::read(&io.input("dataset"))?;
    let test = opts.fraction("test_fraction", 0.2)?;
    let validation = opts.fraction("validation_fraction", 0.0)?;
    if test + validation >= 1.0 {
        return Err(opts.error(format!(
            "`test_fraction` + `validation_fraction` = {} leaves no training rows; keep their sum below 1",
            test + validation
        )));
    }
    let seed = opts.integer("seed")?.unwrap_or(0);
    let strata: Option<Vec<Option<String>>> = match opts.string("stratify")? {
        None => None,
        Some(col) => {
            let column = ds.require_column(&col, "`stratify`")?;
            Some((0..ds.rows()).map(|i| column.text(i)).collect())
        }
    };
    if ds.rows() < 2 {
        return Err(MlError::Data(format!(
            "split: the dataset has {} rows; at least 2 are needed",
            ds.rows()
        )));
    }
    let fractions: Vec<f64> = if validation > 0.0 {
        vec![test, validation]
    } else {
        vec![test]
    };
    let parts = partition(ds.rows(), strata.as_deref(), &fractions, seed);
    dataset::write(&ds.take(&parts[0]), &io.output_dir("train")?)?;
    dataset::write(&ds.take(&parts[1]), &io.output_dir("test")?)?;
    let mut metrics = BTreeMap::from([
        ("train_rows".to_string(), parts[0].len() as f64),
        ("test_rows".to_string(), parts[1].len() as f64),
    ]);
    let mut summary = format!(
        "{} rows → train {}, test {}",
        ds.rows(),
        parts[0].len(),
        parts[1].len()
    );
    if let Some(v) = parts.get(2) {
        dataset::write(&ds.take(v), &io.output_dir("validation")?)?;
        metrics.insert("validation_rows".to_string(), v.len() as f64);
        summary.push_str(&format!(", validation {}", v.len()));
    }
    summary.push_str(&format!(
        " (seed {seed}{})\n",
        opts.string("stratify")?
            .map_or(String::new(), |c| format!(", stratified by `{c}`"))
    ));
    Ok(ComponentOutcome { metrics, summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_deterministic_disjoint_and_complete() {
        let a = partition(100, None, &[0.2, 0.1], 7);
        let b = partition(100, None, &[0.2, 0.1], 7);
        assert_eq!(a, b);
        assert_eq!((a[0].len(), a[1].len(), a[2].len()), (70, 20, 10));
        let mut all: Vec<usize> = a.concat();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_ne!(partition(100, None, &[0.2], 8)[1], a[1]);
    }

    #[test]
    fn stratified_partition_keeps_proportions() {
        let strata: Vec<Option<String>> = (0..100)
            .map(|i| Some(if i < 80 { "a" } else { "b" }.to_string()))
            .collect();
        let parts = partition(100, Some(&strata), &[0.25], 1);
        let b_in_test = parts[1].iter().filter(|&&i| i >= 80).count();
        assert_eq!(parts[1].len(), 25);
        assert_eq!(b_in_test, 5);
        // 212 + 357 rows at 0.2: 42.4 + 71.4 → the total is round(113.8) = 114.
        let strata: Vec<Option<String>> = (0..569).map(|i| Some((i < 212).to_string())).collect();
        let parts = partition(569, Some(&strata), &[0.2], 1);
        assert_eq!(parts[1].len(), 114);
        let small = parts[1].iter().filter(|&&i| i < 212).count();
        assert!(small == 42 || small == 43, "{small}");
    }

    #[test]
    fn a_tiny_dataset_still_gets_a_test_row() {
        let parts = partition(2, None, &[0.1], 0);
        assert_eq!((parts[0].len(), parts[1].len()), (1, 1));
    }
}
