//! A closed-loop load generator for the Open Inference Protocol's gRPC `ModelInfer`, the gRPC
//! counterpart of `wrk` in `bench/serving.py`: CONCURRENCY workers, each on its own HTTP/2
//! connection, send the same unary call back to back for SECONDS and the run prints one JSON
//! line of figures. The request is what `tritonclient.grpc` sends by default: one FP64 tensor
//! whose values travel in `raw_input_contents`.
//!
//! ```text
//! cargo run --release -p gantry-serve --example grpc_load -- \
//!     http://127.0.0.1:8081 MODEL INPUT ROWS_JSON CONCURRENCY SECONDS
//! ```
//! ROWS_JSON: a file holding a JSON array of rows (arrays of numbers), sent as one
//! `[rows, columns]` tensor named INPUT.

use gantry_serve::grpc::{frame, proto, unframe};
use prost::Message;
use std::time::{Duration, Instant};

fn fail(message: String) -> ! {
    eprintln!("grpc_load: {message}");
    std::process::exit(2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, model, input, rows_file, concurrency, seconds] = args.as_slice() else {
        fail("usage: grpc_load URL MODEL INPUT ROWS_JSON CONCURRENCY SECONDS".into());
    };
    let rows: Vec<Vec<f64>> = std::fs::read(rows_file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| fail(format!("{rows_file}: {e}")));
    let concurrency: usize = concurrency
        .parse()
        .unwrap_or_else(|_| fail(format!("CONCURRENCY {concurrency}: not a count")));
    let seconds: f64 = seconds
        .parse()
        .unwrap_or_else(|_| fail(format!("SECONDS {seconds}: not a number")));
    let columns = rows.first().map_or(0, Vec::len);
    let raw: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let request = proto::ModelInferRequest {
        model_name: model.clone(),
        inputs: vec![proto::InferInputTensor {
            name: input.clone(),
            datatype: "FP64".into(),
            shape: vec![rows.len() as i64, columns as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![raw],
        ..Default::default()
    };
    let body = frame(&request);
    let endpoint = format!(
        "{}/inference.GRPCInferenceService/ModelInfer",
        url.trim_end_matches('/')
    );

    // One call first: the answer must be a ModelInferResponse with outputs.
    let client = connect();
    match call(&client, &endpoint, body.clone()).await {
        Ok(answer) => {
            let message = unframe(&answer)
                .ok()
                .and_then(|m| proto::ModelInferResponse::decode(m).ok())
                .unwrap_or_else(|| fail("the first answer is not a ModelInferResponse".into()));
            if message.outputs.is_empty() {
                fail("the first answer has no outputs".into());
            }
        }
        Err(e) => fail(format!("the first call failed: {e}")),
    }

    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (endpoint, body) = (endpoint.clone(), body.clone());
            tokio::spawn(async move {
                let client = connect();
                let mut latencies_us = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match call(&client, &endpoint, body.clone()).await {
                        Ok(_) => latencies_us.push(sent.elapsed().as_micros() as u64),
                        Err(_) => errors += 1,
                    }
                }
                (latencies_us, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w
            .await
            .unwrap_or_else(|e| fail(format!("a worker failed: {e}")));
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1));
        latencies
            .get(i - 1)
            .map_or(f64::NAN, |us| *us as f64 / 1000.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "req_s": latencies.len() as f64 / elapsed,
            "requests": latencies.len(),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "errors": errors,
        })
    );
}

fn connect() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap_or_else(|e| fail(format!("an HTTP/2 client: {e}")))
}

/// One unary call; the answer's body (its gRPC status must be OK).
async fn call(
    client: &reqwest::Client,
    endpoint: &str,
    body: axum::body::Bytes,
) -> Result<axum::body::Bytes, String> {
    let response = client
        .post(endpoint)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()));
    }
    // A failed call answers with its status in the headers (trailers-only).
    if let Some(status) = response.headers().get("grpc-status")
        && status.as_bytes() != b"0"
    {
        return Err(format!("grpc-status {status:?}"));
    }
    let answer = response.bytes().await.map_err(|e| e.to_string())?;
    if answer.len() < 5 {
        return Err("an empty answer".into());
    }
    Ok(answer)
}
