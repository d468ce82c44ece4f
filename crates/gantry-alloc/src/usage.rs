//! Usage sums of a group of step runs and model replicas, and their cost.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::prices::Prices;

/// How a usage report groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    /// A run's project is its pipeline; a deployment's, the project it was created in.
    Project,
    Pipeline,
    /// `pipeline/step`, the members of a `matrix:` sweep together.
    Step,
    Deployment,
    /// Who submitted the run (or created the deployment).
    User,
}

impl Dimension {
    pub const ALL: [Dimension; 5] = [
        Dimension::Project,
        Dimension::Pipeline,
        Dimension::Step,
        Dimension::Deployment,
        Dimension::User,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Project => "project",
            Dimension::Pipeline => "pipeline",
            Dimension::Step => "step",
            Dimension::Deployment => "deployment",
            Dimension::User => "user",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Dimension {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dimension::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown grouping {s:?}; use one of project, pipeline, step, deployment, user"
                )
            })
    }
}

/// Resources × time of a group: hours throughout (core-hours, GiB-hours, GPU-hours).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sums {
    /// Pipeline runs with at least one step run in the group.
    pub runs: u64,
    /// Step attempts that ran a container.
    pub step_runs: u64,
    pub cache_hits: u64,
    /// Model replica containers.
    pub replicas: u64,
    /// Containers' wall time.
    pub wall_hours: f64,
    pub cpu_hours_requested: f64,
    pub cpu_hours_used: f64,
    pub memory_gib_hours_requested: f64,
    /// Peak memory × wall time: what the containers needed at most.
    pub memory_gib_hours_peak: f64,
    /// GPU-hours by GPU model ("" when the model is unknown).
    pub gpu_hours: BTreeMap<String, f64>,
    /// GPU-hours allocated while the GPUs were < 10% utilized.
    pub gpu_hours_idle: f64,
    /// What the cache hits would have cost: the usage of the step runs they reused.
    pub saved: Saved,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub wall_hours: f64,
    pub cpu_hours_requested: f64,
    pub cpu_hours_used: f64,
    pub memory_gib_hours_requested: f64,
    pub gpu_hours: BTreeMap<String, f64>,
}

impl Sums {
    pub fn add(&mut self, o: &Sums) {
        self.runs += o.runs;
        self.step_runs += o.step_runs;
        self.cache_hits += o.cache_hits;
        self.replicas += o.replicas;
        self.wall_hours += o.wall_hours;
        self.cpu_hours_requested += o.cpu_hours_requested;
        self.cpu_hours_used += o.cpu_hours_used;
        self.memory_gib_hours_requested += o.memory_gib_hours_requested;
        self.memory_gib_hours_peak += o.memory_gib_hours_peak;
        merge(&mut self.gpu_hours, &o.gpu_hours);
        self.gpu_hours_idle += o.gpu_hours_idle;
        self.saved.wall_hours += o.saved.wall_hours;
        self.saved.cpu_hours_requested += o.saved.cpu_hours_requested;
        self.saved.cpu_hours_used += o.saved.cpu_hours_used;
        self.saved.memory_gib_hours_requested += o.saved.memory_gib_hours_requested;
        merge(&mut self.saved.gpu_hours, &o.saved.gpu_hours);
    }

    pub fn gpu_hours_total(&self) -> f64 {
        self.gpu_hours.values().sum()
    }
}

fn merge(into: &mut BTreeMap<String, f64>, from: &BTreeMap<String, f64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// Cost of requested resources (what a reservation costs whether used or not).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub cpu: f64,
    pub memory: f64,
    pub gpu: f64,
    pub total: f64,
    /// Of `total`: CPU requested but not used, and GPUs allocated but idle.
    pub idle: f64,
    /// What the cache hits saved.
    pub saved: f64,
}

impl Cost {
    pub fn of(s: &Sums, p: &Prices) -> Cost {
        let gpu_cost = |hours: &BTreeMap<String, f64>| -> f64 {
            hours
                .iter()
                .map(|(model, h)| h * p.gpu_hour_for((!model.is_empty()).then_some(model)))
                .sum()
        };
        let cpu = s.cpu_hours_requested * p.cpu_hour;
        let memory = s.memory_gib_hours_requested * p.memory_gib_hour;
        let gpu = gpu_cost(&s.gpu_hours);
        let mean_gpu_price = if s.gpu_hours_total() > 0.0 {
            gpu / s.gpu_hours_total()
        } else {
            0.0
        };
        let idle = (s.cpu_hours_requested - s.cpu_hours_used).max(0.0) * p.cpu_hour
            + s.gpu_hours_idle * mean_gpu_price;
        let saved = s.saved.cpu_hours_requested * p.cpu_hour
            + s.saved.memory_gib_hours_requested * p.memory_gib_hour
            + gpu_cost(&s.saved.gpu_hours);
        Cost {
            cpu,
            memory,
            gpu,
            total: cpu + memory + gpu,
            idle,
            saved,
        }
    }
}

/// One group of a report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub key: String,
    #[serde(flatten)]
    pub sums: Sums,
    pub cost: Cost,
}

/// A usage report: one line per group, largest cost first, and the total.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub by: Dimension,
    pub since_ms: i64,
    pub until_ms: i64,
    pub currency: String,
    pub lines: Vec<Line>,
    pub total: Line,
}

impl Report {
    pub fn new(
        by: Dimension,
        since_ms: i64,
        until_ms: i64,
        groups: BTreeMap<String, Sums>,
        prices: &Prices,
    ) -> Report {
        let mut total = Sums::default();
        let mut lines: Vec<Line> = groups
            .into_iter()
            .map(|(key, sums)| {
                total.add(&sums);
                Line {
                    cost: Cost::of(&sums, prices),
                    key,
                    sums,
                }
            })
            .collect();
        lines.sort_by(|a, b| {
            b.cost
                .total
                .total_cmp(&a.cost.total)
                .then_with(|| a.key.cmp(&b.key))
        });
        Report {
            by,
            since_ms,
            until_ms,
            currency: prices.currency.clone(),
            lines,
            total: Line {
                key: "total".into(),
                cost: Cost::of(&total, prices),
                sums: total,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(cpu_req: f64, cpu_used: f64, mem: f64, gpu: &[(&str, f64)]) -> Sums {
        Sums {
            runs: 1,
            step_runs: 1,
            wall_hours: 1.0,
            cpu_hours_requested: cpu_req,
            cpu_hours_used: cpu_used,
            memory_gib_hours_requested: mem,
            memory_gib_hours_peak: mem / 2.0,
            gpu_hours: gpu.iter().map(|(m, h)| (m.to_string(), *h)).collect(),
            ..Sums::default()
        }
    }

    #[test]
    fn cost_is_requests_times_prices_and_idle_is_the_unused_part() {
        let p = Prices {
            currency: "EUR".into(),
            cpu_hour: 0.1,
            memory_gib_hour: 0.01,
            gpu_hour: BTreeMap::from([("default".into(), 2.0), ("h100".into(), 3.0)]),
        };
        let mut s = sums(4.0, 1.0, 8.0, &[("NVIDIA H100 80GB HBM3", 2.0), ("", 1.0)]);
        s.gpu_hours_idle = 1.5;
        let c = Cost::of(&s, &p);
        assert!((c.cpu - 0.4).abs() < 1e-12);
        assert!((c.memory - 0.08).abs() < 1e-12);
        assert!((c.gpu - 8.0).abs() < 1e-12);
        assert!((c.total - 8.48).abs() < 1e-12);
        // 3 core-hours unused at 0.1, 1.5 idle GPU-hours at the mean 8/3 per hour.
        assert!((c.idle - (0.3 + 4.0)).abs() < 1e-9, "{}", c.idle);
        assert_eq!(c.saved, 0.0);
    }

    #[test]
    fn report_lines_are_costliest_first_and_total_adds_up() {
        let p = Prices::default();
        let groups = BTreeMap::from([
            ("a".to_string(), sums(1.0, 1.0, 1.0, &[])),
            ("b".to_string(), sums(10.0, 2.0, 1.0, &[])),
            ("c".to_string(), sums(0.0, 0.0, 0.0, &[("", 1.0)])),
        ]);
        let r = Report::new(Dimension::Project, 0, 1, groups, &p);
        let keys: Vec<&str> = r.lines.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(keys, ["c", "b", "a"]);
        assert_eq!(r.total.sums.runs, 3);
        assert!((r.total.sums.cpu_hours_requested - 11.0).abs() < 1e-12);
        let sum: f64 = r.lines.iter().map(|l| l.cost.total).sum();
        assert!((r.total.cost.total - sum).abs() < 1e-9);
        assert_eq!(r.currency, "USD");
    }

    #[test]
    fn dimensions_parse_and_name_the_choices() {
        assert_eq!("user".parse(), Ok(Dimension::User));
        let e = "team".parse::<Dimension>().err().unwrap_or_default();
        assert!(
            e.contains("project, pipeline, step, deployment, user"),
            "{e}"
        );
    }
}
