//! The aggregated path (buckets counted as predictions are logged, merged per window) gives
//! the report the rows give: PSI, Jensen–Shannon, χ², counts, error rates and performance
//! identical; KS within the sample's DKW bound; latency quantiles within the sketch's
//! relative error.

use std::collections::BTreeMap;

use gantry_monitor::aggregate::{
    Aggregate, BUCKET_MS, BUCKET_SAMPLE, KS_SAMPLE_BOUND, LATENCY_RELATIVE_ERROR,
    PerformanceCounts, SplitMix, WINDOW_SAMPLE, score,
};
use gantry_monitor::{MonitorConfig, Observation, Task, evaluate, evaluate_aggregated};
use serde_json::json;

use crate::fixture::*;

/// Buckets of `log` as the log writer fills them (one per minute), and the performance
/// counts per bucket (predictions, and scored labels).
fn buckets(
    log: &[Observation],
    label: &str,
    profile: &gantry_ml::profile::Profile,
) -> (BTreeMap<i64, Aggregate>, BTreeMap<i64, PerformanceCounts>) {
    let mut rng = SplitMix::new(11);
    let mut drift: BTreeMap<i64, Aggregate> = BTreeMap::new();
    let mut perf: BTreeMap<i64, PerformanceCounts> = BTreeMap::new();
    for o in log {
        let b = o.timestamp_ms.div_euclid(BUCKET_MS) * BUCKET_MS;
        drift
            .entry(b)
            .or_default()
            .add(Some(profile), Some(label), o, BUCKET_SAMPLE, &mut rng);
        let p = perf.entry(b).or_default();
        if o.prediction.is_some() {
            p.predictions += 1;
        }
        if let Some(l) = &o.label {
            p.apply(&score(o.prediction.as_ref(), l), 1);
        }
    }
    (drift, perf)
}

/// The buckets of the window `w` up to [`NOW`]: from the one holding `NOW − w` to the one
/// holding `NOW` (as the server sums them).
fn window_of<T: Clone>(buckets: &BTreeMap<i64, T>, w: i64) -> Vec<T> {
    let first = (NOW - w).div_euclid(BUCKET_MS) * BUCKET_MS;
    buckets.range(first..=NOW).map(|(_, v)| v.clone()).collect()
}

fn add_perf(parts: &[PerformanceCounts]) -> PerformanceCounts {
    let mut out = PerformanceCounts::default();
    for p in parts {
        out.predictions += p.predictions;
        for (k, n) in &p.confusion {
            *out.confusion.entry(k.clone()).or_default() += n;
        }
        out.regression_n += p.regression_n;
        out.sum_squared_error += p.sum_squared_error;
        out.sum_absolute_error += p.sum_absolute_error;
    }
    out
}

#[test]
fn aggregates_give_the_report_of_the_rows() {
    let profile = reference("species");
    // 20k predictions over 50 minutes (a window of whole buckets), x1 shifted in half of
    // them, colors skewed, a third labelled (some wrong), a few errors, spread latencies.
    let mut rng = Rng::new(5);
    let log = traffic(21, 20_000, |i, row, o| {
        // Off the minute boundaries, so bucket windows and `(now − w, now]` hold the same rows.
        o.timestamp_ms -= 1;
        if i % 2 == 0 {
            set(o, "x1", json!(row.x1 + 1.5));
        }
        if i % 7 == 0 {
            set(o, "color", json!("blue"));
        }
        if i % 11 == 0 {
            o.inputs.remove("x2");
        }
        if i % 3 == 0 {
            o.label = Some(json!(if i % 9 == 0 { "c" } else { row.species }));
        }
        if i % 97 == 0 {
            o.error = true;
            o.prediction = None;
        }
        o.latency_ms = 0.2 + (rng.uniform() * 6.0).exp();
    });
    let config = MonitorConfig {
        window_ms: HOUR,
        performance_windows_ms: vec![15 * MINUTE, HOUR],
        rules: [
            "psi > 0.2 for feature x1",
            "accuracy(30m) < 0.9",
            "p99 > 100",
        ]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect(),
        ..MonitorConfig::default()
    };
    let (drift, perf) = buckets(&log, "species", &profile);
    // The rows of whole buckets are what the aggregated window covers.
    let rows: Vec<Observation> = log.clone();
    let direct = evaluate(
        Some(&profile),
        Some("species"),
        Task::Classification,
        &rows,
        &config,
        NOW,
    );
    let parts = window_of(&drift, HOUR);
    let refs: Vec<&Aggregate> = parts.iter().collect();
    let window = Aggregate::merge(&refs, WINDOW_SAMPLE, &mut SplitMix::new(3));
    let performance = |w: i64| add_perf(&window_of(&perf, w));
    let aggregated = evaluate_aggregated(
        Some(&profile),
        Some("species"),
        Task::Classification,
        &window,
        &performance,
        &config,
        NOW,
    );

    assert_eq!(aggregated.samples, direct.samples);
    assert_eq!(aggregated.drift.len(), direct.drift.len());
    for (a, d) in aggregated
        .drift
        .iter()
        .chain(&aggregated.prediction_drift)
        .zip(direct.drift.iter().chain(&direct.prediction_drift))
    {
        assert_eq!(a.feature, d.feature);
        assert_eq!(
            (a.status, a.rows, a.samples),
            (d.status, d.rows, d.samples),
            "{}",
            a.feature
        );
        assert_eq!(a.psi, d.psi, "{}", a.feature);
        assert_eq!(a.jensen_shannon, d.jensen_shannon, "{}", a.feature);
        assert_eq!(a.chi_square, d.chi_square, "{}", a.feature);
        assert_eq!(a.missing_fraction, d.missing_fraction, "{}", a.feature);
        assert_eq!(a.bins, d.bins, "{}", a.feature);
        match (&a.ks, &d.ks) {
            (Some(a_ks), Some(d_ks)) => assert!(
                (a_ks.statistic - d_ks.statistic).abs() <= KS_SAMPLE_BOUND,
                "{}: KS {} vs {}",
                a.feature,
                a_ks.statistic,
                d_ks.statistic
            ),
            (None, None) => {}
            other => panic!("{}: KS {other:?}", a.feature),
        }
    }
    assert!(aggregated.drifted().any(|d| d.feature == "x1"));
    assert_eq!(aggregated.performance, direct.performance);
    let (l, d) = (&aggregated.latency, &direct.latency);
    assert_eq!(
        (l.requests, l.errors, l.error_rate),
        (d.requests, d.errors, d.error_rate)
    );
    for (got, want) in [
        (l.p50_ms, d.p50_ms),
        (l.p95_ms, d.p95_ms),
        (l.p99_ms, d.p99_ms),
    ] {
        let (got, want) = (got.unwrap(), want.unwrap());
        // The sketch answers the value at the rank; the rows interpolate between two
        // neighbours, which differ by far less than 1% at these sample sizes.
        assert!(
            (got - want).abs() <= 2.0 * LATENCY_RELATIVE_ERROR * want,
            "latency {got} vs {want}"
        );
    }
    let states = |r: &gantry_monitor::MonitorReport| {
        r.alerts
            .iter()
            .map(|a| (a.rule.clone(), a.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(states(&aggregated), states(&direct));
    // The 30-minute window only a rule names is computed too, identically.
    let thirty = |r: &gantry_monitor::MonitorReport| {
        r.alerts
            .iter()
            .find(|a| a.rule.contains("30m"))
            .map(|a| a.value)
    };
    assert_eq!(thirty(&aggregated), thirty(&direct));
    assert!(thirty(&direct).flatten().is_some());
    assert_eq!(aggregated.verdict, direct.verdict);
}

#[test]
fn a_small_window_is_exact_even_for_ks() {
    let profile = reference("target");
    let log = traffic(4, 900, |i, row, o| {
        o.timestamp_ms -= 1;
        o.prediction = Some(json!(row.target + if i % 2 == 0 { 8.0 } else { 0.0 }));
        o.label = Some(json!(row.target));
    });
    let config = MonitorConfig::default();
    let (drift, perf) = buckets(&log, "target", &profile);
    let rows: Vec<Observation> = log.clone();
    let direct = evaluate(
        Some(&profile),
        Some("target"),
        Task::Regression,
        &rows,
        &config,
        NOW,
    );
    let parts = window_of(&drift, HOUR);
    let refs: Vec<&Aggregate> = parts.iter().collect();
    let window = Aggregate::merge(&refs, WINDOW_SAMPLE, &mut SplitMix::new(3));
    let performance = |w: i64| add_perf(&window_of(&perf, w));
    let aggregated = evaluate_aggregated(
        Some(&profile),
        Some("target"),
        Task::Regression,
        &window,
        &performance,
        &config,
        NOW,
    );
    // Fewer values than the per-bucket sample holds: the samples are complete, KS exact.
    for (a, d) in aggregated.drift.iter().zip(&direct.drift) {
        assert_eq!(
            a.ks.as_ref().map(|k| k.statistic),
            d.ks.as_ref().map(|k| k.statistic)
        );
    }
    assert_eq!(aggregated.prediction_drift, direct.prediction_drift);
    for (a, d) in aggregated.performance.iter().zip(&direct.performance) {
        assert_eq!((a.labelled, a.predictions), (d.labelled, d.predictions));
        let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-9 * y.abs().max(1.0),
            (None, None) => true,
            _ => false,
        };
        assert!(
            close(a.rmse, d.rmse) && close(a.mae, d.mae),
            "{a:?} vs {d:?}"
        );
    }
}
