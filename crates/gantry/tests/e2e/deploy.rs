//! Deployments, end to end with the real binary: train and register two versions, serve
//! one through `gantry server` as runc replicas, shift traffic to a canary and promote it
//! while requests keep flowing (none may fail), roll back, restart a crashed replica, log
//! predictions and feedback, watch drift fire an alert to a webhook, and validate /metrics
//! with promtool.

use crate::support::{Gantry, eventually, wait_until};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) const PIPELINE: &str = r#"
name: iris
params:
  max_depth: 4
steps:
  - name: ingest
    uses: builtin/csv-ingest
    with: { source: iris.csv }
    outputs: [dataset]
  - name: profile
    uses: builtin/profile
    inputs: { dataset: ingest.dataset }
    outputs: [profile, summary]
  - name: split
    uses: builtin/split
    inputs: { dataset: ingest.dataset }
    with: { test_fraction: 0.3, seed: 1, stratify: species }
    outputs: [train, test]
  - name: train
    uses: builtin/train
    inputs: { train: split.train }
    with: { label: species, algorithm: decision_tree, max_depth: "${params.max_depth}", seed: 1 }
    outputs: [model]
  - name: register
    uses: builtin/register
    inputs: { model: train.model, profile: profile.profile }
    with: { model: iris, alias: champion }
    outputs: [registration]
"#;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM: the server stops its replicas on the way out.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(g: &Gantry) -> Server {
    start_server_with(g, &[])
}

fn start_server_with(g: &Gantry, extra: &[&str]) -> Server {
    let mut args = vec!["server", "--listen", "127.0.0.1:0"];
    args.extend(extra);
    let (child, url) = g.spawn_listening(&args, &[("GANTRY_MONITOR_INTERVAL", "1s")]);
    Server { child, url }
}

/// One HTTP/1.1 request over a fresh connection: (status, body). A connection that fails
/// (a killed server) is status 0 with the error as the body.
pub fn http(url: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    match try_http(url, method, path, body) {
        Ok(answer) => answer,
        Err(e) => (0, Value::String(e.to_string())),
    }
}

fn try_http(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    try_http_as(url, method, path, body, None)
}

/// [`try_http`] with `Authorization: Bearer TOKEN` when a token is given.
fn try_http_as(
    url: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    ))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub(crate) fn row(sl: f64, sw: f64, pl: f64, pw: f64) -> Value {
    json!({"sepal_length": sl, "sepal_width": sw, "petal_length": pl, "petal_width": pw})
}

/// An OIP request with one named input per column.
pub(crate) fn infer_body(rows: &[(f64, f64, f64, f64)]) -> Value {
    let col = |name: &str, f: fn(&(f64, f64, f64, f64)) -> f64| json!({"name": name, "datatype": "FP64", "shape": [rows.len()], "data": rows.iter().map(f).collect::<Vec<_>>()});
    json!({"inputs": [
        col("sepal_length", |r| r.0),
        col("sepal_width", |r| r.1),
        col("petal_length", |r| r.2),
        col("petal_width", |r| r.3),
    ]})
}

fn train_two_versions(g: &Gantry) {
    let csv = g.ok(&["dataset", "iris"]);
    g.write("iris.csv", &csv);
    let file = g.write("iris.yaml", PIPELINE);
    let (code, _, err) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = g.run_pipeline(&file, &["-p", "max_depth=1"]);
    assert_eq!(code, 0, "{err}");
}

fn remote(g: &Gantry, url: &str, args: &[&str]) -> (i32, String, String) {
    g.remote(url, args)
}

fn remote_ok(g: &Gantry, url: &str, args: &[&str]) -> String {
    let (code, out, err) = remote(g, url, args);
    assert_eq!(code, 0, "gantry {args:?}: {err}");
    out
}

fn served_version(url: &str, name: &str) -> Option<String> {
    let (status, body) = http(
        url,
        "POST",
        &format!("/v2/models/{name}/infer"),
        Some(&infer_body(&[(5.1, 3.5, 1.4, 0.2)])),
    );
    (status == 200).then(|| body["model_version"].as_str().unwrap_or("").to_string())
}

fn wait_serving(url: &str, name: &str, version: &str) {
    wait_until(&format!("{name} serves version {version}"), || {
        (0..6).all(|_| served_version(url, name).as_deref() == Some(version))
    });
}

/// Requests sent in a loop by `threads` clients until stopped; counts the failures.
struct Traffic {
    stop: Arc<AtomicBool>,
    /// The `id` of every request answered with 200, as the client saw it.
    answered: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<Vec<String>>>,
    versions: Arc<Mutex<std::collections::BTreeMap<String, usize>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// What the clients of a [`Traffic`] saw once it stopped.
struct Seen {
    /// The `id` of every answered request.
    answered: Vec<String>,
    failures: Vec<String>,
    /// Answers per model version.
    versions: std::collections::BTreeMap<String, usize>,
}

impl Traffic {
    fn start(url: &str, name: &str, threads: usize) -> Traffic {
        let t = Traffic {
            stop: Arc::default(),
            answered: Arc::default(),
            failures: Arc::default(),
            versions: Arc::default(),
            threads: Vec::new(),
        };
        let mut handles = Vec::new();
        for _ in 0..threads {
            let (url, name) = (url.to_string(), name.to_string());
            let (stop, answered, failures, versions) = (
                Arc::clone(&t.stop),
                Arc::clone(&t.answered),
                Arc::clone(&t.failures),
                Arc::clone(&t.versions),
            );
            handles.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = http(
                        &url,
                        "POST",
                        &format!("/v2/models/{name}/infer"),
                        Some(&infer_body(&[(6.7, 3.0, 5.2, 2.3)])),
                    );
                    if status == 200 {
                        let id = body["id"].as_str().unwrap_or("(an answer without id)");
                        answered.lock().unwrap().push(id.to_string());
                        let v = body["model_version"].as_str().unwrap_or("?").to_string();
                        *versions.lock().unwrap().entry(v).or_default() += 1;
                    } else {
                        failures.lock().unwrap().push(format!("{status}: {body}"));
                    }
                }
            }));
        }
        Traffic {
            threads: handles,
            ..t
        }
    }

    fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.threads {
            h.join().unwrap();
        }
        let answered = self.answered.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        let versions = self.versions.lock().unwrap().clone();
        Seen {
            answered,
            failures,
            versions,
        }
    }
}

fn runc(g: &Gantry) -> Command {
    let mut c = Command::new("runc");
    c.arg("--root").arg(g.home.path().join("runtime/state"));
    c
}

fn replica_containers(g: &Gantry) -> Vec<String> {
    g.runc_containers()
        .into_iter()
        .filter(|c| c.starts_with("gantry-serve-"))
        .collect()
}

#[test]
fn canary_promote_and_rollback_under_live_traffic_lose_no_request() {
    let g = Gantry::new();
    train_two_versions(&g);
    let server = start_server(&g);
    let url = server.url.clone();

    remote_ok(
        &g,
        &url,
        &["deploy", "flowers", "--model", "iris@1", "--replicas", "2"],
    );
    wait_serving(&url, "flowers", "1");

    // Every replica is an unprivileged container whose network namespace has only `lo`.
    let containers = replica_containers(&g);
    assert_eq!(containers.len(), 2, "{containers:?}");
    for c in &containers {
        let state = runc(&g).args(["state", c]).output().unwrap();
        let state: Value = serde_json::from_slice(&state.stdout).unwrap();
        let pid = state["pid"].as_i64().unwrap();
        let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
        let ifaces: Vec<&str> = dev
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(str::trim)
            .collect();
        assert_eq!(ifaces, ["lo"], "replica {c} sees {ifaces:?}");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(status.contains("Uid:\t65534"), "{status}");
        assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    }

    let traffic = Traffic::start(&url, "flowers", 4);
    std::thread::sleep(Duration::from_millis(500));
    // A canary takes part of the traffic…
    remote_ok(
        &g,
        &url,
        &["deploy", "flowers", "--canary", "iris@2", "--weight", "50"],
    );
    wait_until("the canary answers some requests", || {
        traffic
            .versions
            .lock()
            .unwrap()
            .get("2")
            .copied()
            .unwrap_or(0)
            > 5
    });
    // …and then all of it, while requests keep coming.
    remote_ok(&g, &url, &["promote", "flowers"]);
    wait_serving(&url, "flowers", "2");
    remote_ok(&g, &url, &["rollback", "flowers"]);
    std::thread::sleep(Duration::from_millis(300));
    let Seen {
        answered,
        failures,
        versions,
    } = traffic.stop();
    let ok = answered.len();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 50, "only {ok} requests went through: {versions:?}");
    // Rolled back to the canary state: both versions answer again.
    wait_until("rollback restores the canary split", || {
        let v: Vec<String> = (0..30)
            .filter_map(|_| served_version(&url, "flowers"))
            .collect();
        v.iter().any(|x| x == "1") && v.iter().any(|x| x == "2")
    });

    let listed: Value =
        serde_json::from_str(&remote_ok(&g, &url, &["deployments", "-o", "json"])).unwrap();
    let d = &listed[0];
    assert_eq!(d["name"], "flowers");
    assert_eq!(d["spec"]["model"]["version"], 1);
    assert_eq!(d["spec"]["canary"]["target"]["version"], 2);
    assert!(d["revision"].as_i64().unwrap() >= 4, "{d}");

    // A crashed replica is restarted.
    let victim = replica_containers(&g)
        .into_iter()
        .find(|c| c.contains("-v1-"))
        .expect("a replica of version 1");
    let st = runc(&g).args(["kill", &victim, "KILL"]).status().unwrap();
    assert!(st.success());
    wait_until("the killed replica is replaced and ready", || {
        let (_, d) = http(&url, "GET", "/api/v1/deployments/flowers", None);
        d["actual"]["pools"].as_array().is_some_and(|pools| {
            pools.iter().all(|p| {
                p["replicas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| r["ready"] == true)
            }) && pools.iter().any(|p| {
                p["replicas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["restarts"].as_u64() >= Some(1))
            })
        })
    });

    // Undeploy stops every replica.
    remote_ok(&g, &url, &["undeploy", "flowers"]);
    wait_until("replicas are gone after undeploy", || {
        replica_containers(&g).is_empty()
    });
    let (status, body) = http(
        &url,
        "POST",
        "/v2/models/flowers/infer",
        Some(&infer_body(&[(5.0, 3.0, 1.5, 0.2)])),
    );
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("flowers"));
}

/// A one-shot HTTP receiver on 127.0.0.1 that keeps every JSON body POSTed to it.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&got);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            if let Ok(v) = serde_json::from_slice(&body) {
                sink.lock().unwrap().push(v);
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, got)
}

#[test]
fn drift_and_a_performance_drop_fire_alerts_to_a_webhook_and_metrics_pass_promtool() {
    let g = Gantry::new();
    train_two_versions(&g);
    // The receiver is on loopback, which webhooks reach only when the admin allows it.
    let server = start_server_with(&g, &["--allow-fetch", "127.0.0.1"]);
    let url = server.url.clone();
    let (hook, received) = webhook_receiver();
    remote_ok(
        &g,
        &url,
        &[
            "deploy",
            "flowers",
            "--model",
            "iris@champion",
            "--rule",
            "psi > 0.2 for feature petal_length",
            "--rule",
            "accuracy < 0.85",
            "--webhook",
            &hook,
        ],
    );
    wait_until("flowers is ready", || {
        served_version(&url, "flowers").is_some()
    });

    // Traffic like the training data, then shifted petals (a drift the model has not seen),
    // each with feedback: correct labels first, wrong ones after the shift.
    let csv = g.ok(&["dataset", "iris"]);
    let rows: Vec<Vec<String>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    let mut ids = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let v: Vec<f64> = r[..4].iter().map(|x| x.parse().unwrap()).collect();
        let shifted = i % 2 == 1;
        let pl = if shifted { v[2] + 4.0 } else { v[2] };
        let (status, body) = http(
            &url,
            "POST",
            "/v2/models/flowers/predict",
            Some(&json!({"rows": [row(v[0], v[1], pl, v[3])]})),
        );
        assert_eq!(status, 200, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        let truth = if shifted {
            "no-such-species"
        } else {
            r[4].as_str()
        };
        ids.push((id, truth.to_string()));
    }
    let (status, body) = http(
        &url,
        "POST",
        "/api/v1/deployments/flowers/feedback",
        Some(
            &json!({"feedback": ids.iter().map(|(id, label)| json!({"request_id": id, "label": label})).collect::<Vec<_>>()}),
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], rows.len());

    // Unknown request ids are refused with the field named, and nothing is stored.
    let (status, body) = http(
        &url,
        "POST",
        "/api/v1/deployments/flowers/feedback",
        Some(&json!({"request_id": "nope", "label": "setosa"})),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "feedback[0].request_id", "{body}");

    wait_until("both alerts reach the webhook", || {
        let got = received.lock().unwrap();
        ["psi > 0.2 for feature petal_length", "accuracy < 0.85"]
            .iter()
            .all(|rule| {
                got.iter().any(|a| {
                    a["state"] == "firing"
                        && a["rule"]
                            .as_str()
                            .is_some_and(|r| r.contains(rule.split_whitespace().next().unwrap()))
                })
            })
    });

    // The same drift, hour by hour, from the monitor's buckets.
    let history: Value = serde_json::from_str(&remote_ok(
        &g,
        &url,
        &[
            "monitor",
            "flowers",
            "--history",
            "--hours",
            "2",
            "--output",
            "json",
        ],
    ))
    .unwrap();
    let hours = history["hours"].as_array().unwrap();
    let samples: u64 = hours.iter().map(|h| h["samples"].as_u64().unwrap()).sum();
    // Every prediction so far (the traffic, and the probes that found the serving version).
    let now: Value = serde_json::from_str(&remote_ok(
        &g,
        &url,
        &["monitor", "flowers", "--output", "json"],
    ))
    .unwrap();
    assert_eq!(
        Some(samples),
        now["report"]["samples"].as_u64(),
        "{history:#}"
    );
    assert!(samples >= rows.len() as u64, "{history:#}");
    assert!(
        hours
            .iter()
            .any(|h| h["psi"]["petal_length"].as_f64().is_some_and(|p| p > 0.2)),
        "{history:#}"
    );
    let table = remote_ok(&g, &url, &["monitor", "flowers", "--history"]);
    assert!(
        table.contains("HIGHEST FEATURE PSI") && table.contains("petal_length"),
        "{table}"
    );

    // Bad requests are answered with the model server's 400 and counted as errors: rows
    // naming an unknown column; a tensor whose data does not fit its shape (sent on as it
    // came); a well-formed tensor the model has no column for (the proxy parsed it and sent
    // it on with binary data: the model server's words are the same).
    let refused = |route: &str, body: Value, words: &str| {
        let (status, answer) = http(&url, "POST", route, Some(&body));
        assert_eq!(status, 400, "{answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(words), "{answer}");
    };
    refused(
        "/v2/models/flowers/predict",
        json!({"rows": [{"petal_lenght": 1.0}]}),
        "petal_lenght",
    );
    refused(
        "/v2/models/flowers/infer",
        json!({"inputs": [{"name": "sepal_length", "datatype": "FP64", "shape": [2], "data": [1.0]}]}),
        "sepal_length",
    );
    refused(
        "/v2/models/flowers/infer",
        json!({"inputs": [{"name": "sepal_lenght", "datatype": "FP64", "shape": [1], "data": [1.0]}]}),
        "input \"sepal_lenght\" is not a column of this model",
    );

    let report: Value =
        serde_json::from_str(&remote_ok(&g, &url, &["monitor", "flowers", "-o", "json"])).unwrap();
    assert_eq!(
        report["report"]["latency"]["errors"], 3,
        "{}",
        report["report"]["latency"]
    );
    let drift = report["report"]["drift"].as_array().unwrap();
    let status_of = |f: &str| {
        drift
            .iter()
            .find(|d| d["feature"] == f)
            .map(|d| d["status"].clone())
            .unwrap()
    };
    assert_eq!(status_of("petal_length"), "drift", "{report}");
    assert_eq!(status_of("sepal_width"), "ok", "{report}");
    let text = remote_ok(&g, &url, &["monitor", "flowers"]);
    assert!(text.contains("petal_length"), "{text}");

    // /metrics is valid Prometheus exposition, drift gauges and alert states included.
    let (_, metrics) = http(&url, "GET", "/metrics", None);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("gantry_deployment_feature_psi{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gantry_deployment_alert_firing{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gantry_deployment_requests_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gantry_usage_cpu_seconds_requested_total{project=")
            && metrics.contains("gantry_usage_cost_total{project="),
        "{metrics}"
    );
    promtool_accepts(&metrics);

    // A restarted server continues from the recorded alert states: alerts that were
    // already firing are not announced again.
    let announced = received.lock().unwrap().len();
    let (_, before) = http(&url, "GET", "/api/v1/deployments/flowers/monitor", None);
    drop(server);
    let server = start_server(&g);
    wait_until("the restarted server serves", || {
        served_version(&server.url, "flowers").is_some()
    });
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        received.lock().unwrap().len(),
        announced,
        "{:?}",
        received.lock().unwrap()
    );
    let (_, after) = http(
        &server.url,
        "GET",
        "/api/v1/deployments/flowers/monitor",
        None,
    );
    assert_eq!(after["alert_events"], before["alert_events"]);

    // The deployment's replicas count in usage reports: the first server's (stopped with
    // it) and the restarted server's, each its requests × its life.
    let (code, report, err) = remote(
        &g,
        &server.url,
        &["usage", "--by", "deployment", "--output", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(&report).unwrap();
    let flowers = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == "flowers")
        .unwrap_or_else(|| panic!("no deployment line in {report:#}"));
    assert!(flowers["replicas"].as_u64().unwrap() >= 2, "{flowers:#}");
    assert!(
        flowers["cpu_hours_requested"].as_f64().unwrap() > 0.0,
        "{flowers:#}"
    );
    assert!(
        flowers["cpu_hours_used"].as_f64().unwrap() > 0.0,
        "{flowers:#}"
    );
}

pub fn promtool_accepts(metrics: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A custom model: an image of our own that speaks OIP v2 (busybox `nc` running a shell
/// script that doubles its input), registered as `custom` and deployed like any other model.
#[test]
fn a_custom_image_serving_oip_is_deployed_and_routed() {
    let g = Gantry::new();
    let srv = g.dir.path().join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    // One connection per request: read the request line, headers and body, answer, close.
    let script = r##"#!/bin/sh
read -r method path proto
len=0
while read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in [Cc]ontent-[Ll]ength:*) len=${line#*:}; len=$((len)) ;; esac
done
body=$(head -c "$len")
case "$path" in
  */health/*|*/ready) resp='{"ready": true}' ;;
  */infer)
    data=$(printf '%s' "$body" | sed -n 's/.*"data": *\[\([^]]*\)\].*/\1/p')
    doubled=$(printf '%s' "$data" | tr ',' '\n' | awk 'NF {printf "%s%s", sep, $1*2; sep=","}')
    n=$(printf '%s' "$data" | tr ',' '\n' | grep -c .)
    resp=$(printf '{"model_name":"%s","model_version":"%s","id":"%s","outputs":[{"name":"doubled","datatype":"FP64","shape":[%s],"data":[%s]}]}' \
      "$GANTRY_MODEL_NAME" "$GANTRY_MODEL_VERSION" "$(cat /proc/sys/kernel/random/uuid)" "$n" "$doubled") ;;
  *) resp=$(printf '{"name":"%s","versions":["%s"],"platform":"busybox-nc"}' "$GANTRY_MODEL_NAME" "$GANTRY_MODEL_VERSION") ;;
esac
printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "${#resp}" "$resp"
"##;
    std::fs::write(srv.join("oip"), script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(srv.join("oip"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The image: busybox plus /srv/oip, as a rootfs tar.
    let tar_path = g.dir.path().join("oip.tar");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "set -e; d=$(mktemp -d); bash {script} $d/base.tar; mkdir $d/root; tar -xf $d/base.tar -C $d/root; cp -a {srv} $d/root/srv; tar -cf {out} -C $d/root .; rm -rf $d",
            script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/busybox-rootfs.sh"),
            srv = srv.display(),
            out = tar_path.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    g.ok(&[
        "image",
        "import",
        tar_path.to_str().unwrap(),
        "--name",
        "oip-doubler:1",
    ]);
    // Two versions of the same server: the second serves as a shadow below.
    for _ in 0..2 {
        g.ok(&[
            "model",
            "register",
            "doubler",
            "--flavor",
            "custom",
            "--image",
            "oip-doubler:1",
            "--port",
            "9000",
            "--arg",
            "/bin/nc",
            "--arg",
            "-ll",
            "--arg",
            "-p",
            "--arg",
            "9000",
            "--arg",
            "-e",
            "--arg",
            "/srv/oip",
        ]);
    }
    let server = start_server(&g);
    let url = server.url.clone();
    remote_ok(&g, &url, &["deploy", "twice", "--model", "doubler@1"]);
    let body =
        json!({"inputs": [{"name": "x", "datatype": "FP64", "shape": [3], "data": [1.5, 2, 10]}]});
    wait_until("the custom model answers", || {
        http(&url, "POST", "/v2/models/twice/infer", Some(&body)).0 == 200
    });
    let (status, answer) = http(&url, "POST", "/v2/models/twice/infer", Some(&body));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model_name"], "twice");
    let out: Vec<f64> = answer["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(out, [3.0, 4.0, 20.0]);
    // Metadata, readiness and a pinned version pass through the control plane; a version
    // the deployment does not serve is a 404 in the protocol's shape.
    let (status, meta) = http(&url, "GET", "/v2/models/twice/versions/1", None);
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["platform"], "busybox-nc");
    assert_eq!(http(&url, "GET", "/v2/models/twice/ready", None).0, 200);
    assert_eq!(
        http(&url, "GET", "/v2/models/twice/versions/1/ready", None).0,
        200
    );
    let (status, pinned) = http(
        &url,
        "POST",
        "/v2/models/twice/versions/1/infer",
        Some(&body),
    );
    assert_eq!(status, 200, "{pinned}");
    let (status, err) = http(
        &url,
        "POST",
        "/v2/models/twice/versions/9/infer",
        Some(&body),
    );
    assert_eq!(status, 404, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("version 9"),
        "{err}"
    );
    // Logged like any prediction, keyed by the id the model server returned.
    let id = answer["id"].as_str().unwrap();
    assert!(eventually(|| {
        let (_, log) = http(&url, "GET", "/api/v1/deployments/twice/predictions", None);
        log.as_array().is_some_and(|l| {
            l.iter().any(|p| {
                p["request_id"] == id
                    && p["rows"] == 3
                    && p["outputs"].as_array().is_some_and(|o| {
                        o.iter()
                            .map(|v| v.as_f64().unwrap_or(f64::NAN))
                            .collect::<Vec<_>>()
                            == [3.0, 4.0, 20.0]
                    })
            })
        })
    }));

    let log_of = |url: &str| -> Vec<Value> {
        let (_, log) = http(
            url,
            "GET",
            "/api/v1/deployments/twice/predictions?limit=1000",
            None,
        );
        log.as_array().cloned().unwrap_or_default()
    };
    // A shadow gets a copy of each request: its answer is logged under the same request id
    // with role `shadow`, and never returned.
    remote_ok(&g, &url, &["deploy", "twice", "--shadow", "doubler@2"]);
    wait_until("the shadow serves", || {
        let (_, d) = http(&url, "GET", "/api/v1/deployments/twice", None);
        d["actual"]["serving_revision"] == d["revision"]
    });
    let (status, answer) = http(&url, "POST", "/v2/models/twice/infer", Some(&body));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model_version"], "1", "the primary answers");
    let id = answer["id"].as_str().unwrap().to_string();
    wait_until("the shadow's answer is logged", || {
        log_of(&url)
            .iter()
            .any(|p| p["request_id"] == id.as_str() && p["role"] == "shadow" && p["version"] == 2)
    });

    // Sampling: with a rate of 0 nothing more is logged, though every request is answered.
    remote_ok(
        &g,
        &url,
        &["deploy", "twice", "--no-shadow", "--sample-rate", "0"],
    );
    wait_until("the sample rate applies", || {
        let (_, d) = http(&url, "GET", "/api/v1/deployments/twice", None);
        d["actual"]["serving_revision"] == d["revision"]
    });
    let before = log_of(&url).len();
    for _ in 0..5 {
        assert_eq!(
            http(&url, "POST", "/v2/models/twice/infer", Some(&body)).0,
            200
        );
    }
    assert_eq!(log_of(&url).len(), before);

    // Retention: the monitor prunes the log down to --max-predictions.
    remote_ok(&g, &url, &["deploy", "twice", "--max-predictions", "1"]);
    wait_until("the log is pruned to its retention", || {
        log_of(&url).len() == 1
    });
}

/// Starts `gantry serve ARGS --listen 127.0.0.1:0`.
fn serve_standalone(g: &Gantry, args: &[&str]) -> Server {
    let mut all = vec!["serve"];
    all.extend(args);
    all.extend(["--listen", "127.0.0.1:0"]);
    let (child, url) = g.spawn_listening(&all, &[]);
    Server { child, url }
}

#[test]
fn gantry_serve_answers_oip_for_a_registered_model_and_its_metrics_pass_promtool() {
    let g = Gantry::new();
    train_two_versions(&g);
    // Version 1 (max_depth 4); the second training run moved `champion` to a stump.
    let s = serve_standalone(&g, &["iris@1"]);
    let (status, meta) = http(&s.url, "GET", "/v2/models/iris", None);
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["platform"], "gantry");
    let names: Vec<&str> = meta["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    );
    let (status, answer) = http(
        &s.url,
        "POST",
        "/v2/models/iris/infer",
        Some(&infer_body(&[(5.1, 3.5, 1.4, 0.2), (6.7, 3.0, 5.2, 2.3)])),
    );
    assert_eq!(status, 200, "{answer}");
    let predict = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "predict")
        .unwrap();
    assert_eq!(predict["data"], json!(["setosa", "virginica"]));
    let (status, err) = http(
        &s.url,
        "POST",
        "/v2/models/iris/infer",
        Some(
            &json!({"inputs": [{"name": "sepal_length", "datatype": "FP64", "shape": [2], "data": [1.0]}]}),
        ),
    );
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("sepal_length"),
        "{err}"
    );
    let (_, metrics) = http(&s.url, "GET", "/metrics", None);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("gantry_model_requests_total{"),
        "{metrics}"
    );
    promtool_accepts(&metrics);
}

/// A scikit-learn model converted with skl2onnx, registered with `gantry model register`,
/// deployed, and answering like scikit-learn. Needs `GANTRY_TEST_SKLEARN_PYTHON` (a Python
/// with scikit-learn, skl2onnx and onnx; scripts/test.sh makes one); unset, it is skipped (a
/// failure under `GANTRY_TEST_REQUIRE_ALL`).
#[test]
fn an_onnx_model_from_scikit_learn_is_registered_deployed_and_agrees_with_scikit_learn() {
    let Some(python) = crate::skip::unless_env(
        "GANTRY_TEST_SKLEARN_PYTHON",
        "a python with scikit-learn, skl2onnx and onnx (scripts/test.sh makes .venv-test) \
         to run the ONNX end-to-end test",
    ) else {
        return;
    };
    let g = Gantry::new();
    let out = g.dir.path().join("onnx");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gantry-serve/tests/onnx/train_sklearn.py"
    );
    let status = Command::new(&python)
        .arg(script)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "{python} {script} failed");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("expected.json")).unwrap()).unwrap();
    let logistic = expected["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "logistic")
        .unwrap();
    // A ZipMap export cannot serve: refused at registration, with the way out.
    let refused = g.run(&[
        "model",
        "register",
        "iris-onnx",
        out.join("logistic_zipmap.onnx").to_str().unwrap(),
        "--flavor",
        "onnx",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("zipmap"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    g.ok(&[
        "model",
        "register",
        "iris-onnx",
        out.join("logistic.onnx").to_str().unwrap(),
        "--flavor",
        "onnx",
        "--alias",
        "champion",
    ]);

    let server = start_server(&g);
    remote_ok(
        &g,
        &server.url,
        &["deploy", "iris-onnx", "--model", "iris-onnx@champion"],
    );
    let rows: Vec<Vec<f64>> = logistic["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    let body = json!({"inputs": [{"name": "input", "datatype": "FP32", "shape": [rows.len(), 4], "data": rows}]});
    wait_until("the ONNX deployment answers", || {
        http(
            &server.url,
            "POST",
            "/v2/models/iris-onnx/infer",
            Some(&body),
        )
        .0 == 200
    });
    let (status, answer) = http(
        &server.url,
        "POST",
        "/v2/models/iris-onnx/infer",
        Some(&body),
    );
    assert_eq!(status, 200, "{answer}");
    let outputs = answer["outputs"].as_array().unwrap();
    let label = outputs.iter().find(|o| o["datatype"] == "BYTES").unwrap();
    assert_eq!(label["data"], logistic["label"]);
    let probs = outputs
        .iter()
        .find(|o| o["datatype"] == "FP32" || o["datatype"] == "FP64")
        .unwrap();
    let got: Vec<f64> = probs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let want: Vec<f64> = logistic["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-5, "{a} vs scikit-learn's {b}");
    }
}

/// Every prediction a client got an answer for is in the log after the server is killed
/// with SIGKILL and started again; feedback for them still works.
#[test]
fn acknowledged_predictions_survive_a_killed_server() {
    let g = Gantry::new();
    train_two_versions(&g);
    let mut server = start_server(&g);
    remote_ok(&g, &server.url, &["deploy", "flowers", "--model", "iris@1"]);
    wait_until("flowers is ready", || {
        served_version(&server.url, "flowers").is_some()
    });
    let traffic = Traffic::start(&server.url, "flowers", 3);
    std::thread::sleep(Duration::from_millis(1500));
    // Kill mid-traffic: requests in flight may fail, answered ones must all be logged.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let answered = traffic.stop().answered;
    assert!(
        answered.len() > 10,
        "only {} answers before the kill",
        answered.len()
    );
    let server = start_server(&g);
    let (status, log) = http(
        &server.url,
        "GET",
        "/api/v1/deployments/flowers/predictions?limit=10000",
        None,
    );
    assert_eq!(status, 200, "{log}");
    let logged: std::collections::HashSet<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["request_id"].as_str().unwrap())
        .collect();
    // Requests in flight at the kill may be logged without an answer; that is fine. Every
    // answered one must be there.
    let lost: Vec<&String> = answered
        .iter()
        .filter(|id| !logged.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered predictions are not in the log after the restart: {:?}",
        lost.len(),
        answered.len(),
        &lost[..lost.len().min(5)]
    );
    // The monitor counts aggregates committed with the log: after the kill it counts exactly
    // the logged rows (a failed request once), none twice, none lost.
    let observed: u64 = log
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            if p["error"].is_null() {
                p["rows"].as_u64().unwrap()
            } else {
                1
            }
        })
        .sum();
    let (status, m) = http(
        &server.url,
        "GET",
        "/api/v1/deployments/flowers/monitor",
        None,
    );
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["report"]["samples"].as_u64(), Some(observed), "{m}");
    let id = &answered[0];
    remote_ok(&g, &server.url, &["feedback", "flowers", id, "virginica"]);
    // The restarted server serves the deployment again (its replicas were reaped). An id
    // the client names is checked against the log before the answer: one logged before the
    // kill (inserted from the journal) is refused, a new one is logged once.
    wait_until("flowers serves again after the restart", || {
        served_version(&server.url, "flowers").is_some()
    });
    let mut named = infer_body(&[(5.1, 3.5, 1.4, 0.2)]);
    named["id"] = json!(id);
    let (status, v) = http(
        &server.url,
        "POST",
        "/v2/models/flowers/infer",
        Some(&named),
    );
    assert_eq!(status, 409, "{v}");
    named["id"] = json!("client-chosen-1");
    let (status, v) = http(
        &server.url,
        "POST",
        "/v2/models/flowers/infer",
        Some(&named),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["id"], "client-chosen-1");
    let (status, v) = http(
        &server.url,
        "POST",
        "/v2/models/flowers/infer",
        Some(&named),
    );
    assert_eq!(status, 409, "{v}");
}

/// Two servers on one machine (two homes) with a deployment of the same name: stopping one
/// leaves the other's replicas alone (container ids and cgroups are machine-wide).
#[test]
fn same_named_deployments_of_two_homes_do_not_touch_each_other() {
    let (a, b) = (Gantry::new(), Gantry::new());
    train_two_versions(&a);
    train_two_versions(&b);
    let (sa, sb) = (start_server(&a), start_server(&b));
    for (g, s) in [(&a, &sa), (&b, &sb)] {
        remote_ok(g, &s.url, &["deploy", "flowers", "--model", "iris@1"]);
    }
    for s in [&sa, &sb] {
        wait_serving(&s.url, "flowers", "1");
    }
    remote_ok(&a, &sa.url, &["undeploy", "flowers"]);
    wait_until("a's replicas are gone", || {
        replica_containers(&a).is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    let (_, d) = http(&sb.url, "GET", "/api/v1/deployments/flowers", None);
    let restarts: u64 = d["actual"]["pools"][0]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["restarts"].as_u64().unwrap())
        .sum();
    assert_eq!(restarts, 0, "b's replica was disturbed: {d}");
    assert_eq!(served_version(&sb.url, "flowers").as_deref(), Some("1"));
}

/// Runs `crates/gantry-serve/tests/tritonclient_check.py` (the real `tritonclient`) against an
/// OIP server and returns what it printed.
fn tritonclient_check(python: &str, protocol: &str, address: &str, model: &str) -> Value {
    tritonclient_check_as(
        python,
        protocol,
        address,
        model,
        &format!("triton-{protocol}"),
    )
}

fn tritonclient_check_as(
    python: &str,
    protocol: &str,
    address: &str,
    model: &str,
    id_prefix: &str,
) -> Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gantry-serve/tests/tritonclient_check.py"
    );
    let out = Command::new(python)
        .args([script, protocol, address, model, id_prefix])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tritonclient {protocol} against {address}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    })
}

/// What tritonclient got must be what the JSON protocol answers, every way it asked.
fn assert_tritonclient_agrees(got: &Value, expected: &Value) {
    assert_eq!(got["live"], true, "{got:#}");
    assert_eq!(got["ready"], true, "{got:#}");
    assert_eq!(got["model_ready"], true, "{got:#}");
    assert_eq!(
        got["inputs"],
        json!(["sepal_length", "sepal_width", "petal_length", "petal_width"])
    );
    assert_eq!(got["outputs"], json!(["predict", "probabilities"]));
    let want_labels = &expected["predict"];
    let want_probs: Vec<f64> = expected["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for way in [
        "default",
        "json_inputs",
        "json_both",
        "binary_outputs",
        "only_predict",
    ] {
        let answer = &got[way];
        assert_eq!(&answer["predict"], want_labels, "{way}: {got:#}");
        assert!(
            answer["id"].as_str().unwrap().ends_with(way),
            "{way}: the request id comes back: {answer}"
        );
        if way == "only_predict" {
            assert_eq!(answer["probabilities_present"], false, "{answer}");
            continue;
        }
        let probs: Vec<f64> = answer["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
            .collect();
        assert_eq!(probs, want_probs, "{way}: {got:#}");
    }
    let bad = got["bad_request"].as_str().unwrap();
    assert!(
        bad.contains("petal_colour") && bad.contains("not a column"),
        "the server's reason reaches the client: {bad}"
    );
}

/// The real `tritonclient`, with its defaults (binary tensors both ways over HTTP; gRPC with
/// raw contents), against `gantry serve` (HTTP and `--grpc-listen`) and over HTTP against a
/// deployment through `gantry server`'s `/v2` routes, whose prediction log still gets the
/// decoded rows. Needs `GANTRY_TEST_TRITON_PYTHON` (a Python with
/// `tritonclient[http,grpc]`; scripts/test.sh makes one).
#[test]
fn tritonclient_http_binary_and_grpc_work_against_gantry_serve_and_a_deployment() {
    let Some(python) = crate::skip::unless_env(
        "GANTRY_TEST_TRITON_PYTHON",
        "a python with tritonclient[http,grpc] (scripts/test.sh makes .venv-test) to run the \
         tritonclient tests",
    ) else {
        return;
    };
    let g = Gantry::new();
    train_two_versions(&g);
    let rows = [(5.1, 3.5, 1.4, 0.2), (6.7, 3.0, 5.2, 2.3)];
    let expected_from = |url: &str, model: &str| {
        let (status, answer) = http(
            url,
            "POST",
            &format!("/v2/models/{model}/infer"),
            Some(&infer_body(&rows)),
        );
        assert_eq!(status, 200, "{answer}");
        let output = |name: &str| {
            answer["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["name"] == name)
                .unwrap()["data"]
                .clone()
        };
        json!({"predict": output("predict"), "probabilities": output("probabilities")})
    };

    // `gantry serve` with the gRPC API on a second port; its first line names both.
    let (s, grpc) = spawn_with_grpc(
        &g,
        &[
            "serve",
            "iris@1",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ],
    );
    let expected = expected_from(&s.url, "iris");
    assert_eq!(expected["predict"], json!(["setosa", "virginica"]));
    let http_address = s.url.trim_start_matches("http://").to_string();
    assert_tritonclient_agrees(
        &tritonclient_check(&python, "http", &http_address, "iris"),
        &expected,
    );
    assert_tritonclient_agrees(
        &tritonclient_check(&python, "grpc", &grpc, "iris"),
        &expected,
    );

    let (server, grpc) = spawn_with_grpc(
        &g,
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ],
    );
    remote_ok(&g, &server.url, &["deploy", "iris", "--model", "iris@1"]);
    wait_serving(&server.url, "iris", "1");
    let address = server.url.trim_start_matches("http://").to_string();
    assert_tritonclient_agrees(
        &tritonclient_check(&python, "http", &address, "iris"),
        &expected,
    );
    // gRPC through the server: on --grpc-listen, and on the main port too (HTTP/2).
    assert_tritonclient_agrees(
        &tritonclient_check(&python, "grpc", &grpc, "iris"),
        &expected,
    );
    let on_main_port = tritonclient_check_as(&python, "grpc", &address, "iris", "main-port");
    assert_eq!(on_main_port["default"]["predict"], expected["predict"]);
    // The proxy read the binary request and answer for the prediction log.
    let (_, log) = http(
        &server.url,
        "GET",
        "/api/v1/deployments/iris/predictions?limit=1000",
        None,
    );
    let logged = log
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["request_id"] == "triton-http-default")
        .unwrap_or_else(|| panic!("no binary request in the log: {log:#}"));
    assert_eq!(logged["rows"], 2, "{logged:#}");
    assert_eq!(logged["inputs"][0]["sepal_length"], 5.1, "{logged:#}");
    assert_eq!(logged["inputs"][1]["petal_width"], 2.3, "{logged:#}");
    assert_eq!(
        logged["outputs"],
        json!(["setosa", "virginica"]),
        "{logged:#}"
    );
    // …and so were the gRPC ones, translated into binary REST requests to the replica.
    let logged = log
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["request_id"] == "triton-grpc-default")
        .unwrap_or_else(|| panic!("no gRPC request in the log: {log:#}"));
    assert_eq!(logged["inputs"][0]["sepal_length"], 5.1, "{logged:#}");
    assert_eq!(
        logged["outputs"],
        json!(["setosa", "virginica"]),
        "{logged:#}"
    );
}

/// Starts `gantry ARGS` whose first line names an http:// and a grpc:// address.
fn spawn_with_grpc(g: &Gantry, args: &[&str]) -> (Server, String) {
    let mut child = g
        .command(args)
        .env("GANTRY_MONITOR_INTERVAL", "1s")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let word = |scheme: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(scheme))
            .unwrap_or_else(|| panic!("no {scheme} address in {line:?}"))
            .to_string()
    };
    let url = format!("http://{}", word("http://"));
    (Server { child, url }, word("grpc://"))
}

/// A deployment made with a project's token belongs to that project: another project's token
/// gets 404 from every `/v2` route of it — metadata and readiness as well as inference — as if
/// it did not exist, while its own project reaches all of them.
#[test]
fn another_projects_deployment_is_invisible_on_every_v2_route() {
    let g = Gantry::new();
    train_two_versions(&g);
    let token = |name: &str, project: &str| {
        g.ok(&[
            "token",
            "create",
            "--name",
            name,
            "--role",
            "editor",
            "--project",
            project,
        ])
        .trim()
        .to_string()
    };
    let ours = token("ours", "iris");
    let theirs = token("theirs", "elsewhere");
    let server = start_server_with(&g, &["--auth"]);
    let mut deploy = g.command(&[
        "--server",
        &server.url,
        "deploy",
        "iris",
        "--model",
        "iris@1",
    ]);
    deploy.env("GANTRY_TOKEN", &ours);
    let out = deploy.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let as_ = |token: &str, method: &str, path: &str, body: Option<&Value>| {
        try_http_as(&server.url, method, path, body, Some(token)).unwrap()
    };
    let infer = infer_body(&[(5.1, 3.5, 1.4, 0.2)]);
    wait_until("the deployment answers its project", || {
        as_(&ours, "POST", "/v2/models/iris/infer", Some(&infer)).0 == 200
    });
    for (method, path, body) in [
        ("GET", "/v2/models/iris", None),
        ("GET", "/v2/models/iris/ready", None),
        ("GET", "/v2/models/iris/versions/1", None),
        ("GET", "/v2/models/iris/versions/1/ready", None),
        ("POST", "/v2/models/iris/infer", Some(&infer)),
    ] {
        let (status, answer) = as_(&ours, method, path, body);
        assert_eq!(status, 200, "{method} {path} for its project: {answer}");
        let (status, answer) = as_(&theirs, method, path, body);
        assert_eq!(status, 404, "{method} {path} for another project: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("no deployment `iris`")),
            "{answer}"
        );
    }
}
