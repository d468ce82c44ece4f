//! A synthetic training set, its profile, and logs of live traffic.

use std::collections::BTreeMap;

use gantry_ml::dataset::{Column, ColumnData, Dataset};
use gantry_ml::profile::{Profile, profile_dataset};
use gantry_monitor::{MonitorConfig, Observation};
use serde_json::{Value, json};

pub const NOW: i64 = 1_800_000_000_000;
pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;

/// SplitMix64: a small deterministic generator, so every run sees the same data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// An index drawn with the given weights (summing to 1).
    pub fn pick(&mut self, weights: &[f64]) -> usize {
        let mut u = self.uniform();
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return i;
            }
            u -= w;
        }
        weights.len() - 1
    }
}

pub const COLORS: [&str; 3] = ["red", "green", "blue"];
pub const COLOR_WEIGHTS: [f64; 3] = [0.5, 0.3, 0.2];
pub const CLASSES: [&str; 3] = ["a", "b", "c"];
pub const CLASS_WEIGHTS: [f64; 3] = [0.6, 0.3, 0.1];

/// One row of the world: `x1` ~ N(0, 1), `x2` ~ U(0, 10), `color` 50/30/20,
/// label `species` 60/30/10 (classification) and `target` ~ N(50, 5).
pub struct Row {
    pub x1: f64,
    pub x2: f64,
    pub color: &'static str,
    pub species: &'static str,
    pub target: f64,
}

pub fn draw(rng: &mut Rng) -> Row {
    Row {
        x1: rng.normal(),
        x2: rng.uniform() * 10.0,
        color: COLORS[rng.pick(&COLOR_WEIGHTS)],
        species: CLASSES[rng.pick(&CLASS_WEIGHTS)],
        target: 50.0 + 5.0 * rng.normal(),
    }
}

/// The profile of 2000 training rows whose label column is `label`
/// (`species` for classification, `target` for regression).
pub fn reference(label: &str) -> Profile {
    let mut rng = Rng::new(7);
    let rows: Vec<Row> = (0..2000).map(|_| draw(&mut rng)).collect();
    let dataset = Dataset::new(vec![
        Column::new(
            "x1",
            ColumnData::Float(rows.iter().map(|r| Some(r.x1)).collect()),
        ),
        Column::new(
            "x2",
            ColumnData::Float(rows.iter().map(|r| Some(r.x2)).collect()),
        ),
        Column::new(
            "color",
            ColumnData::Categorical(rows.iter().map(|r| Some(r.color.to_string())).collect()),
        ),
        Column::new(
            "species",
            ColumnData::Categorical(rows.iter().map(|r| Some(r.species.to_string())).collect()),
        ),
        Column::new(
            "target",
            ColumnData::Float(rows.iter().map(|r| Some(r.target)).collect()),
        ),
    ])
    .unwrap();
    let mut profile = profile_dataset(&dataset, 10, 20);
    profile
        .columns
        .retain(|c| c.name == label || !["species", "target"].contains(&c.name.as_str()));
    profile
}

/// A logged prediction of `row` made `age_ms` before [`NOW`]; the model
/// predicts the true class (and target) unless told otherwise.
pub fn observe(id: usize, age_ms: i64, row: &Row) -> Observation {
    let mut inputs = BTreeMap::new();
    inputs.insert("x1".to_string(), json!(row.x1));
    inputs.insert("x2".to_string(), json!(row.x2));
    inputs.insert("color".to_string(), json!(row.color));
    Observation {
        request_id: format!("req-{id}"),
        timestamp_ms: NOW - age_ms,
        inputs,
        prediction: Some(json!(row.species)),
        label: None,
        latency_ms: 5.0,
        error: false,
    }
}

/// `n` predictions spread over the last 50 minutes, drawn from the training
/// distribution, then changed by `change(index, row, observation)`.
pub fn traffic(
    seed: u64,
    n: usize,
    mut change: impl FnMut(usize, &Row, &mut Observation),
) -> Vec<Observation> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let row = draw(&mut rng);
            let mut observation = observe(i, (i as i64 * 50 * MINUTE) / n as i64, &row);
            change(i, &row, &mut observation);
            observation
        })
        .collect()
}

pub fn input(observation: &Observation, feature: &str) -> f64 {
    observation.inputs[feature].as_f64().unwrap()
}

pub fn set(observation: &mut Observation, feature: &str, value: Value) {
    observation.inputs.insert(feature.to_string(), value);
}

pub fn config(rules: &[&str]) -> MonitorConfig {
    MonitorConfig {
        rules: rules.iter().map(|r| r.parse().unwrap()).collect(),
        ..MonitorConfig::default()
    }
}
