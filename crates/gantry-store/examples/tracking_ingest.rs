//! The tracking store's ingest without HTTP: `clients` tasks each log `batches` batches of
//! 1000 metrics to a run of their own in a fresh SQLite store (or `--url`), and the rate is
//! printed. For profiling the store's write path (`bench/tracking.py` measures the server).
//!
//! cargo run --release -p gantry-store --example tracking_ingest -- [clients] [batches] [--url URL]

use std::time::Instant;

use gantry_store::{DEFAULT_EXPERIMENT_ID, MetricPoint, NewTrackingRun, Store};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pos = args.iter().filter(|a| !a.starts_with("--"));
    let clients: usize = pos.next().map_or(Ok(8), |s| s.parse())?;
    let batches: usize = pos.next().map_or(Ok(250), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let url = match args.iter().position(|a| a == "--url") {
        Some(i) => args.get(i + 1).cloned().ok_or("--url needs a value")?,
        None => format!("sqlite://{}/gantry.db", dir.path().display()),
    };
    let store = Store::connect(&url).await?;
    let mut runs = Vec::new();
    for c in 0..clients {
        let run = store
            .create_tracking_run(
                &NewTrackingRun {
                    experiment_id: DEFAULT_EXPERIMENT_ID.into(),
                    user_id: "bench".into(),
                    run_name: Some(format!("ingest-{c}")),
                    start_time: None,
                    tags: vec![],
                },
                0,
            )
            .await?;
        runs.push(run.info.run_id);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for run in runs {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..batches {
                let metrics: Vec<MetricPoint> = (0..1000)
                    .map(|i| {
                        let step = (b * 1000 + i) as i64;
                        MetricPoint {
                            key: "m".into(),
                            value: step as f64 * 0.001,
                            timestamp: 1_700_000_000_000 + step,
                            step,
                        }
                    })
                    .collect();
                store.log_batch(&run, &metrics, &[], &[]).await?;
            }
            Ok::<(), gantry_store::StoreError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = clients * batches * 1000;
    println!(
        "{n} metrics in {secs:.2} s: {:.0} metrics/s",
        n as f64 / secs
    );
    Ok(())
}
