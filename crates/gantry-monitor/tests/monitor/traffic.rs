//! Performance over feedback labels, latency and errors.

use std::collections::BTreeMap;

use gantry_monitor::{AlertState, MonitorConfig, Observation, Task, evaluate};
use serde_json::{Value, json};

use crate::fixture::*;

fn logged(age_ms: i64, label: Option<Value>, prediction: Option<Value>) -> Observation {
    Observation {
        request_id: format!("r{age_ms}"),
        timestamp_ms: NOW - age_ms,
        inputs: BTreeMap::new(),
        error: prediction.is_none(),
        prediction,
        label,
        latency_ms: 3.0,
    }
}

fn windows() -> MonitorConfig {
    MonitorConfig {
        performance_windows_ms: vec![5 * MINUTE, HOUR, 24 * HOUR],
        ..MonitorConfig::default()
    }
}

/// Classification, hand-counted. In the last 5 minutes (truth → predicted):
/// a→a, a→b, b→b, b→b, c→a: accuracy 3/5 = 0.6;
/// F1: a (tp 1, fp 1, fn 1) = 0.5; b (tp 2, fp 1, fn 0): P 2/3, R 1 → 0.8;
/// c (tp 0) = 0; macro (0.5 + 0.8 + 0)/3 = 0.4333…
/// sklearn.metrics.f1_score(list("aabbc"), list("abbba"), average="macro") = 0.43333
/// Up to an hour: 10 more, all right, with classes typed every way (1 == "1").
/// Up to a day: 5 more, all wrong. Older: ignored.
fn classification_log() -> Vec<Observation> {
    let mut log = Vec::new();
    for (i, (truth, predicted)) in [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b"), ("c", "a")]
        .into_iter()
        .enumerate()
    {
        log.push(logged(
            i as i64 * MINUTE,
            Some(json!(truth)),
            Some(json!(predicted)),
        ));
    }
    for i in 0..10 {
        let (truth, predicted) = match i % 3 {
            0 => (json!(1), json!("1")),
            1 => (json!("2"), json!(2.0)),
            _ => (json!(true), json!("true")),
        };
        log.push(logged(30 * MINUTE + i, Some(truth), Some(predicted)));
    }
    for i in 0..5 {
        log.push(logged(5 * HOUR + i, Some(json!("a")), Some(json!("b"))));
    }
    log.push(logged(30 * HOUR, Some(json!("a")), Some(json!("a"))));
    // Not scored: no label, a null label, a failed request with a label.
    log.push(logged(MINUTE, None, Some(json!("a"))));
    log.push(logged(MINUTE, Some(Value::Null), Some(json!("a"))));
    log.push(logged(MINUTE, Some(json!("a")), None));
    log
}

#[test]
fn classification_performance_per_window() {
    let log = classification_log();
    let report = evaluate(None, None, Task::Classification, &log, &windows(), NOW);
    let [five, hour, day] = &report.performance[..] else {
        panic!("{:?}", report.performance)
    };
    assert_eq!(
        (five.window_ms, five.labelled, five.predictions),
        (5 * MINUTE, 5, 7)
    );
    assert_eq!(five.accuracy, Some(0.6));
    assert!(
        (five.f1_macro.unwrap() - 1.3 / 3.0).abs() < 1e-12,
        "{five:?}"
    );
    assert_eq!((five.rmse, five.mae), (None, None));
    assert_eq!(hour.labelled, 15);
    assert!((hour.accuracy.unwrap() - 13.0 / 15.0).abs() < 1e-12);
    assert_eq!(day.labelled, 20);
    assert!((day.accuracy.unwrap() - 13.0 / 20.0).abs() < 1e-12);
    assert_eq!(
        report.verdict,
        "no reference profile, so drift is not checked; accuracy 0.6 over the last 5 minutes (5 labelled)"
    );
}

#[test]
fn nothing_labelled_leaves_performance_empty() {
    let log = vec![logged(MINUTE, None, Some(json!("a")))];
    let report = evaluate(None, None, Task::Classification, &log, &windows(), NOW);
    for p in &report.performance {
        assert_eq!((p.labelled, p.accuracy, p.f1_macro), (0, None, None));
    }
    assert!(
        report.verdict.ends_with("; no feedback labels yet"),
        "{}",
        report.verdict
    );
}

#[test]
fn regression_performance() {
    // predicted − truth = 1, −2, 3, 0: RMSE √(14/4) = 1.8708…, MAE 6/4 = 1.5.
    let log = vec![
        logged(MINUTE, Some(json!(10.0)), Some(json!(11.0))),
        logged(MINUTE, Some(json!("10")), Some(json!(8))),
        logged(MINUTE, Some(json!(-1.5)), Some(json!("1.5"))),
        logged(MINUTE, Some(json!(7)), Some(json!(7))),
        // Not numbers: not scored.
        logged(MINUTE, Some(json!("n/a")), Some(json!(7))),
    ];
    let report = evaluate(
        None,
        None,
        Task::Regression,
        &log,
        &MonitorConfig {
            rules: vec![
                "rmse > 1.5".parse().unwrap(),
                "mae(1h) > 1.5".parse().unwrap(),
            ],
            ..windows()
        },
        NOW,
    );
    let five = &report.performance[0];
    assert_eq!(five.labelled, 4);
    assert!((five.rmse.unwrap() - 3.5f64.sqrt()).abs() < 1e-12);
    assert_eq!(five.mae, Some(1.5));
    assert_eq!((five.accuracy, five.f1_macro), (None, None));
    assert_eq!(report.alerts[0].state, AlertState::Firing);
    assert_eq!(
        report.alerts[0].message,
        "rmse over the last 5 minutes is 1.8708 > 1.5"
    );
    assert_eq!(report.alerts[1].state, AlertState::Ok);
    assert_eq!(
        report.alerts[1].message,
        "mae over the last hour is 1.5 (fires when > 1.5)"
    );
    assert!(
        report
            .verdict
            .contains("rmse 1.8708 over the last 5 minutes (4 labelled)")
    );
}

#[test]
fn performance_rules_pick_their_window() {
    let log = classification_log();
    let config = MonitorConfig {
        rules: [
            "accuracy < 0.85",     // smallest window: 0.6
            "accuracy(1h) < 0.85", // 0.8667
            "accuracy(24h) < 0.85",
            "f1(2h) < 0.5", // not configured: computed for the rule, 0.9 on 15
            "rmse > 1",
            "accuracy(1m) < 0.9",
        ]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect(),
        ..windows()
    };
    let report = evaluate(None, None, Task::Classification, &log, &config, NOW);
    let states: Vec<AlertState> = report.alerts.iter().map(|a| a.state).collect();
    assert_eq!(
        states,
        [
            AlertState::Firing,
            AlertState::Ok,
            AlertState::Firing,
            AlertState::Ok,
            AlertState::NoData,
            AlertState::Ok,
        ]
    );
    assert_eq!(
        report.alerts[0].message,
        "accuracy over the last 5 minutes is 0.6 < 0.85"
    );
    assert_eq!(
        report.alerts[4].message,
        "rmse applies to regression models; this one is a classification model"
    );
    assert_eq!(
        report.alerts[5].value,
        Some(1.0),
        "a→a at age 0 is the only one in 1m"
    );
    let none = evaluate(None, None, Task::Classification, &[], &config, NOW);
    assert_eq!(
        none.alerts[0].message,
        "accuracy: no predictions with feedback labels in the last 5 minutes"
    );
}

#[test]
fn latency_percentiles_and_error_rate_over_the_window() {
    // 100 requests in the window with latencies 1..=100 ms, every 20th failed;
    // one slow request two hours ago is outside it.
    let mut log: Vec<Observation> = (1..=100)
        .map(|i| Observation {
            latency_ms: i as f64,
            error: i % 20 == 0,
            ..logged(i * 1000, None, Some(json!("a")))
        })
        .collect();
    log.push(Observation {
        latency_ms: 10_000.0,
        error: true,
        ..logged(2 * HOUR, None, None)
    });
    let config = MonitorConfig {
        rules: [
            "p99 > 50",
            "p50 > 60",
            "p95 >= 95.05",
            "error_rate >= 0.05",
            "error_rate > 0.05",
            "requests < 1",
        ]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect(),
        ..windows()
    };
    let report = evaluate(None, None, Task::Classification, &log, &config, NOW);
    let latency = &report.latency;
    assert_eq!((latency.requests, latency.errors), (100, 5));
    assert_eq!(latency.error_rate, Some(0.05));
    // np.percentile(np.arange(1, 101), [50, 95, 99]) → 50.5, 95.05, 99.01
    assert_eq!(latency.p50_ms, Some(50.5));
    assert!((latency.p95_ms.unwrap() - 95.05).abs() < 1e-9);
    assert!((latency.p99_ms.unwrap() - 99.01).abs() < 1e-9);
    let states: Vec<AlertState> = report.alerts.iter().map(|a| a.state).collect();
    assert_eq!(
        states,
        [
            AlertState::Firing,
            AlertState::Ok,
            AlertState::Firing,
            AlertState::Firing,
            AlertState::Ok,
            AlertState::Ok,
        ]
    );
    assert_eq!(
        report.alerts[0].message,
        "p99 latency over the last hour is 99.01 ms > 50 ms"
    );
    assert_eq!(report.samples, 100);

    let quiet = evaluate(None, None, Task::Classification, &[], &config, NOW);
    assert_eq!(quiet.latency.requests, 0);
    assert_eq!(
        (quiet.latency.p99_ms, quiet.latency.error_rate),
        (None, None)
    );
    let states: Vec<AlertState> = quiet.alerts.iter().map(|a| a.state).collect();
    assert_eq!(states[..5], [AlertState::NoData; 5]);
    assert_eq!(quiet.alerts[0].message, "p99: no requests in the last hour");
    assert_eq!(
        quiet.alerts[5].state,
        AlertState::Firing,
        "no traffic at all is a value"
    );
    assert_eq!(
        quiet.verdict,
        "no predictions in the last hour; no feedback labels yet (1 alert firing)"
    );
}
