//! For `bench/monitor.py`: fills a deployment's prediction log the way the server's log writer
//! does (with its monitoring aggregates), then times the monitor.
//!
//! `monitor_load HOME DEPLOYMENT CSV LABEL COUNT [ROWS_PER_REQUEST] [MINUTES]` logs COUNT
//! predictions of rows drawn from CSV (every column but LABEL is an input, LABEL is the
//! answer; every 5th answer is wrong and every 1000th request gets feedback) spread over the last
//! MINUTES (default 55), and prints one JSON line: load time, the monitor's p50/p95 over 30
//! cached evaluations (what `GET …/monitor` and each monitor tick of a server compute) and the
//! median of 5 uncached ones (a local `gantry monitor`).

use gantry_artifacts::ArtifactStore;
use gantry_server::deploy::aggregates::LogAggregator;
use gantry_server::deploy::monitor::{compute, compute_cached};
use gantry_store::{NewPrediction, Store};
use serde_json::{Map, Value, json};
use std::time::Instant;

fn usage() -> ! {
    eprintln!("usage: monitor_load HOME DEPLOYMENT CSV LABEL COUNT [ROWS_PER_REQUEST] [MINUTES]");
    std::process::exit(2)
}

fn cell(text: &str) -> Value {
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or_else(|| Value::String(text.to_owned()), Value::Number)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        usage();
    }
    let (home, deployment, csv_path, label) = (&args[0], &args[1], &args[2], &args[3]);
    let count: u64 = args[4].parse().unwrap_or_else(|_| usage());
    let per_request: usize = args
        .get(5)
        .map_or(Ok(1), |a| a.parse())
        .unwrap_or_else(|_| usage());
    let minutes: i64 = args
        .get(6)
        .map_or(Ok(55), |a| a.parse())
        .unwrap_or_else(|_| usage());
    let store = Store::connect(&format!("sqlite://{home}/gantry.db")).await?;
    let artifacts = ArtifactStore::open_local(&std::path::Path::new(home).join("artifacts"))?;
    let record = store.get_deployment(deployment).await?;
    let model = record.spec["model"]["model"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let version = record.spec["model"]["version"].as_i64().unwrap_or(1);

    let mut reader = csv::Reader::from_path(csv_path)?;
    let headers = reader.headers()?.clone();
    let mut rows: Vec<(Value, Value)> = Vec::new();
    for rec in reader.records() {
        let rec = rec?;
        let mut inputs = Map::new();
        let mut answer = Value::Null;
        for (h, v) in headers.iter().zip(rec.iter()) {
            if h == label {
                answer = cell(v);
            } else {
                inputs.insert(h.to_owned(), cell(v));
            }
        }
        rows.push((Value::Object(inputs), answer));
    }
    let wrong = rows
        .iter()
        .map(|(_, a)| a.clone())
        .find(|a| *a != rows[0].1)
        .unwrap_or_default();

    let now = gantry_engine::now_ms();
    let span = minutes * 60_000;
    let mut aggregator = LogAggregator::new(store.clone(), artifacts.clone());
    let started = Instant::now();
    let mut batch = Vec::with_capacity(5000);
    let mut feedback = Vec::new();
    for i in 0..count {
        let mut inputs = Vec::with_capacity(per_request);
        let mut outputs = Vec::with_capacity(per_request);
        for j in 0..per_request {
            let (row, answer) = &rows[(i as usize * 31 + j * 7) % rows.len()];
            inputs.push(row.clone());
            outputs.push(if (i as usize + j).is_multiple_of(5) {
                wrong.clone()
            } else {
                answer.clone()
            });
        }
        let id = format!("load-{i}");
        if i.is_multiple_of(1000) {
            feedback.push((id.clone(), rows[(i as usize * 31) % rows.len()].1.clone()));
        }
        batch.push(NewPrediction {
            request_id: id,
            deployment: deployment.clone(),
            model: model.clone(),
            version,
            role: "primary".into(),
            inputs: json!(inputs).into(),
            outputs: json!(outputs),
            rows: per_request as i64,
            error: None,
            latency_us: 400 + (i as i64 * 37) % 9000,
            created_at_ms: now - span + (i as i64 * span) / count.max(1) as i64,
        });
        if batch.len() == batch.capacity() {
            aggregator.insert(&batch).await?;
            batch.clear();
        }
    }
    aggregator.insert(&batch).await?;
    let loaded_s = started.elapsed().as_secs_f64();
    let fb_started = Instant::now();
    let bucket_ms = |t: i64| t.div_euclid(60_000) * 60_000;
    let score = |p: Option<&Value>, l: &Value| {
        let s = gantry_monitor::aggregate::score(p, l);
        (s.classes, s.error)
    };
    let scoring = gantry_store::FeedbackScoring {
        bucket_ms: &bucket_ms,
        score: &score,
    };
    for (id, label) in &feedback {
        store
            .put_feedback_scored(id, 0, label, now, Some(&scoring))
            .await?;
    }
    let feedback_s = fb_started.elapsed().as_secs_f64();

    // Uncached (the CLI's local `gantry monitor`), then as a server's ticks and API do: the
    // first evaluation fills the cache, the others read keys and changed buckets only.
    let mut cold = Vec::new();
    let mut samples = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let view = compute(&store, &artifacts, deployment, gantry_engine::now_ms()).await?;
        cold.push(t.elapsed().as_secs_f64() * 1000.0);
        samples = view.report.samples;
    }
    cold.sort_by(f64::total_cmp);
    let cache = gantry_server::deploy::monitor::MonitorCache::default();
    compute_cached(
        &store,
        &artifacts,
        deployment,
        gantry_engine::now_ms(),
        &cache,
    )
    .await?;
    let mut times = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        compute_cached(
            &store,
            &artifacts,
            deployment,
            gantry_engine::now_ms(),
            &cache,
        )
        .await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "predictions": count, "rows_per_request": per_request, "load_s": loaded_s,
            "feedback": feedback.len(), "feedback_s": feedback_s,
            "monitor_p50_ms": times[14], "monitor_p95_ms": times[28], "monitor_samples": samples,
            "uncached_monitor_median_ms": cold[2],
        })
    );
    Ok(())
}
