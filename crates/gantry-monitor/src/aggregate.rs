//! Mergeable summaries of logged predictions, so a monitor never re-reads the log.
//!
//! The prediction log's writer folds each prediction into the [`Aggregate`] of its time
//! bucket (one minute) as it logs it; a window is the merge of its buckets. Everything
//! the monitor reports is computed from these counts:
//!
//! - per feature, the counts in the reference profile's bins (numeric histogram bins, or the
//!   top categories plus "other") and the rows and usable values: PSI, Jensen–Shannon and χ²
//!   come from counts, so they are **exactly** those of the rows themselves;
//! - per numeric feature, a uniform random sample (reservoir) of its values for the KS test:
//!   exact while a window holds at most [`WINDOW_SAMPLE`] values; beyond, the sample's KS
//!   statistic is within [`KS_SAMPLE_BOUND`] of the full data's with 95% confidence (the
//!   Dvoretzky–Kiefer–Wolfowitz bound for a sample of [`WINDOW_SAMPLE`] values);
//! - the prediction's distribution, counted like a feature against the label's profile;
//! - latency in a logarithmic sketch: every quantile within [`LATENCY_RELATIVE_ERROR`]
//!   (relative) of the exact value at its rank;
//! - errors and request counts, exactly;
//! - performance as confusion counts (classification) or error sums (regression) per bucket
//!   of the prediction's time, updated when feedback arrives ([`PerformanceCounts`]).

use std::collections::BTreeMap;

use gantry_ml::model::Task;
use gantry_ml::profile::{ColumnProfile, Profile};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::observation::{Observation, class_text, regression_value};
use crate::performance::{PerformanceWindow, f1_macro_counts};

/// The span of a bucket the log writer fills.
pub const BUCKET_MS: i64 = 60_000;
/// Values of each numeric feature a one-minute bucket keeps for the KS test.
pub const BUCKET_SAMPLE: usize = 64;
/// Values of each numeric feature a merged window keeps for the KS test.
pub const WINDOW_SAMPLE: usize = 2000;
/// `sqrt(ln(2/0.05) / (2·2000))`: the 95% DKW bound on the KS statistic of a uniform sample of
/// [`WINDOW_SAMPLE`] values against the statistic of all of them.
pub const KS_SAMPLE_BOUND: f64 = 0.0304;
/// The latency sketch's relative accuracy.
pub const LATENCY_RELATIVE_ERROR: f64 = 0.01;

/// A uniform random sample of a stream of values, and how many values it was drawn from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reservoir {
    pub seen: u64,
    pub values: Vec<f64>,
}

impl Reservoir {
    /// Algorithm R: each of the `seen` values is kept with probability `cap / seen`.
    pub fn add(&mut self, x: f64, cap: usize, rng: &mut SplitMix) {
        self.seen += 1;
        if self.values.len() < cap {
            self.values.push(x);
        } else {
            let j = rng.below(self.seen);
            if let Some(slot) = usize::try_from(j).ok().and_then(|j| self.values.get_mut(j)) {
                *slot = x;
            }
        }
    }

    /// Whether the sample holds every value seen (then statistics over it are exact).
    pub fn is_complete(&self) -> bool {
        self.values.len() as u64 == self.seen
    }

    /// One sample of at most `cap` values drawn uniformly from the union of the parts' streams:
    /// every kept value of a part stands for `seen / kept` values of it (weighted sampling
    /// without replacement, keys `u^(1/w)`). When everything fits, nothing is dropped.
    pub fn merge(parts: &[&Reservoir], cap: usize, rng: &mut SplitMix) -> Reservoir {
        let seen = parts.iter().map(|p| p.seen).sum();
        let total: usize = parts.iter().map(|p| p.values.len()).sum();
        if total <= cap {
            let values = parts
                .iter()
                .flat_map(|p| p.values.iter().copied())
                .collect();
            return Reservoir { seen, values };
        }
        let mut keyed: Vec<(f64, f64)> = Vec::with_capacity(total);
        for p in parts {
            if p.values.is_empty() {
                continue;
            }
            let weight = p.seen as f64 / p.values.len() as f64;
            for &x in &p.values {
                let u = rng.unit().max(f64::MIN_POSITIVE);
                keyed.push((u.powf(1.0 / weight), x));
            }
        }
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
        keyed.truncate(cap);
        Reservoir {
            seen,
            values: keyed.into_iter().map(|(_, x)| x).collect(),
        }
    }
}

/// A small deterministic generator (SplitMix64): samples are reproducible from a seed.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n); 0 for n = 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// One column of a batch of rows, as [`Aggregate::add_batch`] reads it.
pub enum BatchColumn<'a> {
    /// Floats (non-finite ones are missing values).
    F64(&'a [f64]),
    /// Anything else: row `i`'s value as JSON.
    Values(&'a dyn Fn(usize) -> Value),
}

impl BatchColumn<'_> {
    /// Row `i`'s value as JSON.
    pub fn get(&self, i: usize) -> Value {
        match self {
            BatchColumn::F64(v) => v.get(i).map(|x| Value::from(*x)).unwrap_or(Value::Null),
            BatchColumn::Values(f) => f(i),
        }
    }
}

/// A column's live values counted against its reference profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColumnCounts {
    /// Live rows that carry the inputs (missing values included).
    pub rows: u64,
    /// Of those, values usable for this column (not missing, of its type).
    pub values: u64,
    /// Counts per reference bin: the numeric histogram's bins, or the top categories and
    /// "other" last.
    pub bins: Vec<u64>,
    /// Numeric columns: a sample of the values, for the KS test.
    #[serde(default, skip_serializing_if = "is_empty_sample")]
    pub sample: Reservoir,
}

fn is_empty_sample(r: &Reservoir) -> bool {
    r.seen == 0
}

impl ColumnCounts {
    /// Empty counts with the column's bins.
    pub fn for_column(column: &ColumnProfile) -> ColumnCounts {
        let bins = if let Some(n) = &column.numeric {
            n.histogram.counts.len().max(1)
        } else if let Some(c) = &column.categorical {
            c.top.len() + 1
        } else {
            0
        };
        ColumnCounts {
            bins: vec![0; bins],
            ..ColumnCounts::default()
        }
    }

    /// Counts one live row's value (`None`: the row lacks the key); returns the number a
    /// numeric column compares (for a caller that keeps all values or samples them).
    pub fn add(&mut self, column: &ColumnProfile, value: Option<&Value>) -> Option<f64> {
        self.rows += 1;
        let value = value?;
        if let Some(numeric) = &column.numeric {
            let x = column.live_number(value)?;
            self.values += 1;
            let bin = numeric.histogram.bin(x);
            if let Some(c) = self.bins.get_mut(bin) {
                *c += 1;
            }
            Some(x)
        } else if let Some(categorical) = &column.categorical {
            let text = column.live_text(value)?;
            self.values += 1;
            let other = self.bins.len().saturating_sub(1);
            let bucket = categorical
                .top
                .iter()
                .position(|t| t.value == text)
                .unwrap_or(other);
            if let Some(c) = self.bins.get_mut(bucket) {
                *c += 1;
            }
            None
        } else {
            if column.live_number(value).is_some() || column.live_text(value).is_some() {
                self.values += 1;
            }
            None
        }
    }

    fn absorb(&mut self, other: &ColumnCounts) {
        self.rows += other.rows;
        self.values += other.values;
        if self.bins.len() < other.bins.len() {
            self.bins.resize(other.bins.len(), 0);
        }
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
    }
}

/// Latencies in logarithmic buckets: bucket `i` holds values in `(γ^(i-1), γ^i]` with
/// `γ = (1+α)/(1−α)`, so the bucket's midpoint `2γ^i/(γ+1)` is within α of any value in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySketch {
    pub count: u64,
    /// Latencies of 0 (or below the smallest bucket).
    pub zeros: u64,
    pub buckets: BTreeMap<i32, u64>,
}

fn gamma() -> f64 {
    (1.0 + LATENCY_RELATIVE_ERROR) / (1.0 - LATENCY_RELATIVE_ERROR)
}

impl LatencySketch {
    pub fn add(&mut self, ms: f64) {
        if !ms.is_finite() {
            return;
        }
        self.count += 1;
        if ms <= 1e-9 {
            self.zeros += 1;
            return;
        }
        let index = (ms.ln() / gamma().ln()).ceil() as i32;
        *self.buckets.entry(index).or_default() += 1;
    }

    /// Adds `n` observations of the same latency.
    pub fn add_n(&mut self, ms: f64, n: u64) {
        if !ms.is_finite() || n == 0 {
            return;
        }
        self.count += n;
        if ms <= 1e-9 {
            self.zeros += n;
            return;
        }
        let index = (ms.ln() / gamma().ln()).ceil() as i32;
        *self.buckets.entry(index).or_default() += n;
    }

    pub fn absorb(&mut self, other: &LatencySketch) {
        self.count += other.count;
        self.zeros += other.zeros;
        for (i, n) in &other.buckets {
            *self.buckets.entry(*i).or_default() += n;
        }
    }

    /// The value at rank `q·(count−1)` (the rank whose neighbours `stats::quantile`
    /// interpolates), within [`LATENCY_RELATIVE_ERROR`] of it; None when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (self.count - 1) as f64).round() as u64;
        if rank < self.zeros {
            return Some(0.0);
        }
        let mut seen = self.zeros;
        let g = gamma();
        for (i, n) in &self.buckets {
            seen += n;
            if seen > rank {
                return Some(2.0 * g.powi(*i) / (g + 1.0));
            }
        }
        self.buckets
            .keys()
            .next_back()
            .map(|i| 2.0 * g.powi(*i) / (g + 1.0))
    }
}

/// What one bucket (or a window, merged) of a deployment's log says about drift, predictions,
/// latency and errors, counted against one reference profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Observations (rows of logged predictions; a failed request counts once).
    pub observations: u64,
    pub errors: u64,
    /// Observations that carried their inputs.
    pub with_inputs: u64,
    /// Per reference column but the label.
    pub features: BTreeMap<String, ColumnCounts>,
    /// The predictions against the label column's profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<ColumnCounts>,
    pub latency: LatencySketch,
}

impl Aggregate {
    /// Folds one observation in; `reference` and `label_column` as for [`crate::evaluate`].
    /// Numeric values are sampled into reservoirs of `sample_cap` values.
    pub fn add(
        &mut self,
        reference: Option<&Profile>,
        label_column: Option<&str>,
        o: &Observation,
        sample_cap: usize,
        rng: &mut SplitMix,
    ) {
        self.observations += 1;
        if o.error {
            self.errors += 1;
        }
        self.latency.add(o.latency_ms);
        let Some(profile) = reference else {
            return;
        };
        if !o.inputs.is_empty() {
            self.with_inputs += 1;
            for column in &profile.columns {
                if Some(column.name.as_str()) == label_column {
                    continue;
                }
                // Looked up before inserting: no key allocation per row once the bucket has it.
                if !self.features.contains_key(&column.name) {
                    self.features
                        .insert(column.name.clone(), ColumnCounts::for_column(column));
                }
                let Some(counts) = self.features.get_mut(&column.name) else {
                    continue;
                };
                if let Some(x) = counts.add(column, o.inputs.get(&column.name)) {
                    counts.sample.add(x, sample_cap, rng);
                }
            }
        }
        if let Some(column) = label_column.and_then(|l| profile.column(l)) {
            let counts = self
                .prediction
                .get_or_insert_with(|| ColumnCounts::for_column(column));
            if let Some(x) = counts.add(column, o.prediction.as_ref()) {
                counts.sample.add(x, sample_cap, rng);
            }
        }
    }

    /// Folds in the rows of one answered request at once, column by column: the same counts
    /// as [`Aggregate::add`] with one observation per row (every row carrying the
    /// `columns`, the row's prediction from `predictions`, the request's latency). `column`
    /// gives a reference column's values by name, None when the request lacks it.
    #[allow(clippy::too_many_arguments)]
    pub fn add_batch<'a>(
        &mut self,
        reference: Option<&Profile>,
        label_column: Option<&str>,
        rows: usize,
        column: &dyn Fn(&str) -> Option<BatchColumn<'a>>,
        has_columns: bool,
        predictions: &[Value],
        latency_ms: f64,
        sample_cap: usize,
        rng: &mut SplitMix,
    ) {
        if rows == 0 {
            return;
        }
        self.observations += rows as u64;
        self.latency.add_n(latency_ms, rows as u64);
        let Some(profile) = reference else {
            return;
        };
        if has_columns {
            self.with_inputs += rows as u64;
            for c in &profile.columns {
                if Some(c.name.as_str()) == label_column {
                    continue;
                }
                if !self.features.contains_key(&c.name) {
                    self.features
                        .insert(c.name.clone(), ColumnCounts::for_column(c));
                }
                let Some(counts) = self.features.get_mut(&c.name) else {
                    continue;
                };
                match (column(&c.name), &c.numeric) {
                    (Some(BatchColumn::F64(values)), Some(numeric)) => {
                        // What `ColumnCounts::add` does with a JSON number (a non-finite
                        // float is JSON null: missing).
                        for &x in values.iter().take(rows) {
                            counts.rows += 1;
                            if !x.is_finite() {
                                continue;
                            }
                            counts.values += 1;
                            let bin = numeric.histogram.bin(x);
                            if let Some(n) = counts.bins.get_mut(bin) {
                                *n += 1;
                            }
                            counts.sample.add(x, sample_cap, rng);
                        }
                        counts.rows += rows.saturating_sub(values.len()) as u64;
                    }
                    (Some(values), _) => {
                        for i in 0..rows {
                            let v = values.get(i);
                            if let Some(x) = counts.add(c, Some(&v)) {
                                counts.sample.add(x, sample_cap, rng);
                            }
                        }
                    }
                    (None, _) => counts.rows += rows as u64,
                }
            }
        }
        if let Some(c) = label_column.and_then(|l| profile.column(l)) {
            let counts = self
                .prediction
                .get_or_insert_with(|| ColumnCounts::for_column(c));
            for i in 0..rows {
                if let Some(x) = counts.add(c, predictions.get(i)) {
                    counts.sample.add(x, sample_cap, rng);
                }
            }
        }
    }

    /// The aggregate of all `parts` (counted against the same reference); samples merged
    /// into at most `sample_cap` values.
    pub fn merge(parts: &[&Aggregate], sample_cap: usize, rng: &mut SplitMix) -> Aggregate {
        let mut out = Aggregate::default();
        for p in parts {
            out.observations += p.observations;
            out.errors += p.errors;
            out.with_inputs += p.with_inputs;
            out.latency.absorb(&p.latency);
            for (name, counts) in &p.features {
                out.features.entry(name.clone()).or_default().absorb(counts);
            }
            if let Some(pred) = &p.prediction {
                out.prediction
                    .get_or_insert_with(Default::default)
                    .absorb(pred);
            }
        }
        for (name, counts) in out.features.iter_mut() {
            let samples: Vec<&Reservoir> = parts
                .iter()
                .filter_map(|p| p.features.get(name).map(|c| &c.sample))
                .collect();
            counts.sample = Reservoir::merge(&samples, sample_cap, rng);
        }
        if let Some(pred) = out.prediction.as_mut() {
            let samples: Vec<&Reservoir> = parts
                .iter()
                .filter_map(|p| p.prediction.as_ref().map(|c| &c.sample))
                .collect();
            pred.sample = Reservoir::merge(&samples, sample_cap, rng);
        }
        out
    }
}

/// The scoring of one labelled row: what it adds to a bucket's performance counts. A row may
/// be scorable both ways (numeric classes); the model's task picks one when evaluating.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scored {
    /// (truth, predicted) as class texts.
    pub classes: Option<(String, String)>,
    /// predicted − truth.
    pub error: Option<f64>,
}

/// How a feedback `label` scores against the row's `prediction`.
pub fn score(prediction: Option<&Value>, label: &Value) -> Scored {
    let Some(prediction) = prediction else {
        return Scored::default();
    };
    Scored {
        classes: class_text(label).zip(class_text(prediction)),
        error: regression_value(label)
            .zip(regression_value(prediction))
            .map(|(t, p)| p - t),
    }
}

/// Performance of a set of buckets: predictions made, confusion counts, error sums.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerformanceCounts {
    /// Rows with a prediction.
    pub predictions: u64,
    /// (truth, predicted) → labelled rows.
    pub confusion: BTreeMap<(String, String), u64>,
    pub regression_n: u64,
    pub sum_squared_error: f64,
    pub sum_absolute_error: f64,
}

impl PerformanceCounts {
    /// Adds (`sign` = 1) or removes (−1, a label replaced) one scored row.
    pub fn apply(&mut self, scored: &Scored, sign: i64) {
        if let Some(pair) = &scored.classes {
            let n = self.confusion.entry(pair.clone()).or_default();
            *n = n.saturating_add_signed(sign);
        }
        if let Some(e) = scored.error {
            self.regression_n = self.regression_n.saturating_add_signed(sign);
            self.sum_squared_error += sign as f64 * e * e;
            self.sum_absolute_error += sign as f64 * e.abs();
        }
    }

    /// The report's performance over a window from these counts; the same figures
    /// `performance_window` computes from the rows.
    pub fn window(&self, task: Task, window_ms: i64) -> PerformanceWindow {
        let mut result = PerformanceWindow {
            window_ms,
            predictions: usize::try_from(self.predictions).unwrap_or(usize::MAX),
            labelled: 0,
            accuracy: None,
            f1_macro: None,
            rmse: None,
            mae: None,
        };
        match task {
            Task::Classification => {
                let labelled: u64 = self.confusion.values().sum();
                result.labelled = usize::try_from(labelled).unwrap_or(usize::MAX);
                if labelled > 0 {
                    let right: u64 = self
                        .confusion
                        .iter()
                        .filter(|((t, p), _)| t == p)
                        .map(|(_, n)| n)
                        .sum();
                    result.accuracy = Some(right as f64 / labelled as f64);
                    result.f1_macro = Some(f1_macro_counts(&self.confusion));
                }
            }
            Task::Regression => {
                result.labelled = usize::try_from(self.regression_n).unwrap_or(usize::MAX);
                if self.regression_n > 0 {
                    let n = self.regression_n as f64;
                    result.rmse = Some((self.sum_squared_error.max(0.0) / n).sqrt());
                    result.mae = Some(self.sum_absolute_error.max(0.0) / n);
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference with a numeric `age`, a categorical `plan`, a numeric `score` and a label.
    fn reference() -> Profile {
        use gantry_ml::dataset::{Column, ColumnData, Dataset};
        let n = 400;
        let data = Dataset::new(vec![
            Column::new(
                "age",
                ColumnData::Float((0..n).map(|i| Some(20.0 + (i % 40) as f64)).collect()),
            ),
            Column::new(
                "plan",
                ColumnData::Categorical(
                    (0..n)
                        .map(|i| Some(["basic", "pro", "team"][i % 3].to_string()))
                        .collect(),
                ),
            ),
            Column::new(
                "score",
                ColumnData::Float((0..n).map(|i| Some((i % 10) as f64)).collect()),
            ),
            Column::new(
                "churn",
                ColumnData::Categorical(
                    (0..n)
                        .map(|i| Some(if i % 4 == 0 { "yes" } else { "no" }.to_string()))
                        .collect(),
                ),
            ),
        ])
        .expect("dataset");
        gantry_ml::profile::profile_dataset(&data, 10, 20)
    }

    #[test]
    fn a_batch_counts_what_its_rows_count_one_by_one() {
        let profile = reference();
        let rows = 64;
        // Floats with a NaN (missing) and values outside the reference's range, a
        // categorical sent as text with an unseen category, `score` not sent at all.
        let age: Vec<f64> = (0..rows)
            .map(|i| if i == 5 { f64::NAN } else { 10.0 + i as f64 })
            .collect();
        let plan: Vec<Value> = (0..rows)
            .map(|i| Value::from(["basic", "pro", "gold", "NA"][i % 4]))
            .collect();
        let predictions: Vec<Value> = (0..rows)
            .map(|i| Value::from(if i % 3 == 0 { "yes" } else { "no" }))
            .collect();
        let plan_at = |i: usize| plan[i].clone();
        let column = |name: &str| match name {
            "age" => Some(BatchColumn::F64(&age)),
            "plan" => Some(BatchColumn::Values(&plan_at)),
            _ => None,
        };
        let mut batch = Aggregate::default();
        batch.add_batch(
            Some(&profile),
            Some("churn"),
            rows,
            &column,
            true,
            &predictions,
            2.5,
            BUCKET_SAMPLE,
            &mut SplitMix::new(1),
        );
        let mut one_by_one = Aggregate::default();
        let mut rng = SplitMix::new(1);
        for i in 0..rows {
            let mut inputs = BTreeMap::new();
            inputs.insert("age".to_string(), Value::from(age[i]));
            inputs.insert("plan".to_string(), plan[i].clone());
            one_by_one.add(
                Some(&profile),
                Some("churn"),
                &Observation {
                    request_id: "r".into(),
                    timestamp_ms: 0,
                    inputs,
                    prediction: Some(predictions[i].clone()),
                    label: None,
                    latency_ms: 2.5,
                    error: false,
                },
                BUCKET_SAMPLE,
                &mut rng,
            );
        }
        // Every count is the same; the samples hold the same values (all of them: 64 fit).
        let strip = |a: &Aggregate| {
            let mut a = a.clone();
            for c in a.features.values_mut() {
                c.sample.values.sort_by(f64::total_cmp);
            }
            if let Some(p) = a.prediction.as_mut() {
                p.sample.values.sort_by(f64::total_cmp);
            }
            a
        };
        assert_eq!(strip(&batch), strip(&one_by_one));
        assert_eq!(batch.observations, 64);
        assert_eq!(batch.features["age"].values, 63, "NaN is a missing value");
        assert_eq!(batch.features["score"].rows, 64);
        assert_eq!(batch.features["score"].values, 0);
        assert_eq!(batch.latency.count, 64);
    }

    #[test]
    fn a_reservoir_keeps_everything_until_full_then_stays_uniform() {
        let mut rng = SplitMix::new(7);
        let mut r = Reservoir::default();
        for i in 0..10 {
            r.add(i as f64, 16, &mut rng);
        }
        assert!(r.is_complete());
        let mut big = Reservoir::default();
        for i in 0..100_000 {
            big.add(i as f64, 1000, &mut rng);
        }
        assert_eq!((big.seen, big.values.len()), (100_000, 1000));
        // A uniform sample of 0..100k has mean ≈ 50k (sd of the mean ≈ 913).
        let mean = big.values.iter().sum::<f64>() / 1000.0;
        assert!((mean - 50_000.0).abs() < 4_000.0, "{mean}");
    }

    #[test]
    fn merging_reservoirs_weighs_each_part_by_what_it_saw() {
        let mut rng = SplitMix::new(1);
        // 90k values of 0 seen through a sample of 100, 10k values of 1 through 100.
        let a = Reservoir {
            seen: 90_000,
            values: vec![0.0; 100],
        };
        let b = Reservoir {
            seen: 10_000,
            values: vec![1.0; 100],
        };
        let m = Reservoir::merge(&[&a, &b], 100, &mut rng);
        assert_eq!((m.seen, m.values.len()), (100_000, 100));
        let ones = m.values.iter().filter(|x| **x == 1.0).count();
        // Expected 10 ± 3 (hypergeometric-ish).
        assert!((2..=25).contains(&ones), "{ones}");
        // Small parts merge losslessly.
        let small = Reservoir::merge(&[&a, &b], 500, &mut rng);
        assert_eq!(small.values.len(), 200);
    }

    #[test]
    fn sketch_quantiles_are_within_the_relative_error() {
        let mut s = LatencySketch::default();
        let mut exact = Vec::new();
        let mut rng = SplitMix::new(3);
        for _ in 0..20_000 {
            let x = (rng.unit() * 8.0).exp() * 0.01;
            s.add(x);
            exact.push(x);
        }
        exact.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
            let rank = (q * (exact.len() - 1) as f64).round() as usize;
            let want = exact[rank];
            let got = s.quantile(q).unwrap();
            assert!(
                (got - want).abs() <= LATENCY_RELATIVE_ERROR * want * 1.0001,
                "q{q}: {got} vs {want}"
            );
        }
        let mut halves = (LatencySketch::default(), LatencySketch::default());
        for (i, x) in exact.iter().enumerate() {
            if i % 2 == 0 {
                halves.0.add(*x)
            } else {
                halves.1.add(*x)
            }
        }
        halves.0.absorb(&halves.1);
        assert_eq!(halves.0, s);
    }

    #[test]
    fn replaced_labels_leave_no_trace() {
        let mut p = PerformanceCounts::default();
        let first = score(Some(&Value::from("a")), &Value::from("b"));
        let second = score(Some(&Value::from("a")), &Value::from("a"));
        p.apply(&first, 1);
        p.apply(&first, -1);
        p.apply(&second, 1);
        let w = p.window(Task::Classification, 60_000);
        assert_eq!((w.labelled, w.accuracy), (1, Some(1.0)));
        let mut r = PerformanceCounts::default();
        let s = score(Some(&Value::from(3.0)), &Value::from(1.0));
        r.apply(&s, 1);
        let w = r.window(Task::Regression, 60_000);
        assert_eq!((w.rmse, w.mae), (Some(2.0), Some(2.0)));
    }
}
