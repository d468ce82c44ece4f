//! The REST API against a real server: real runc steps on busybox, SQLite, the local
//! artifact store, over HTTP on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{Options, TestServer, sse_events};

const HELLO: &str = r#"
name: hello
params:
  greeting: hi
steps:
  - name: write
    image: busybox:1
    command: [sh, -c, 'echo "${params.greeting} from write"; echo payload > /gantry/outputs/file; mkdir -p /gantry/outputs/tree/sub; echo inner > /gantry/outputs/tree/sub/a.txt']
    outputs: [file, tree]
  - name: read
    image: busybox:1
    command: [sh, -c, 'cat /gantry/inputs/file/* /gantry/inputs/file 2>/dev/null; echo read done']
    inputs: { file: write.file }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_poll_list_show_logs_and_artifacts() {
    let s = TestServer::start(Options::default()).await;
    let body = json!({"spec_yaml": HELLO, "params": {"greeting": "hello"}}).to_string();
    let (status, v) = s.post("/api/v1/runs", None, &body).await;
    assert_eq!(status, 201, "{v:#}");
    let id = v["run_id"].as_str().unwrap().to_string();
    assert_eq!(v["pipeline"], "hello");

    let doc = s.wait_terminal(&id, None).await;
    assert_eq!(doc["status"], "succeeded", "{doc:#}");
    assert_eq!(doc["params"], json!({"greeting": "hello"}));
    assert_eq!(doc["steps"].as_array().unwrap().len(), 2);

    // Logs, without and with follow, over SSE.
    let (status, ctype, body) = s.sse(&format!("/api/v1/runs/{id}/logs"), None).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    let lines: Vec<String> = sse_events(&body, "log")
        .iter()
        .map(|r| {
            format!(
                "[{}] {}",
                r["step"].as_str().unwrap(),
                r["data"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        lines.contains(&"[write] hello from write".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"[read] read done".to_string()), "{lines:?}");
    assert_eq!(
        sse_events(&body, "end"),
        vec![json!({"status": "succeeded"})]
    );
    let (_, _, followed) = s
        .sse(
            &format!("/api/v1/runs/{id}/logs?step=read&follow=true"),
            None,
        )
        .await;
    let read_only: Vec<_> = sse_events(&followed, "log");
    assert!(read_only.iter().all(|r| r["step"] == "read"));
    assert!(read_only.iter().any(|r| r["data"] == "read done"));
    let (status, v) = s
        .get(&format!("/api/v1/runs/{id}/logs?step=nope"), None)
        .await;
    assert_eq!(status, 404, "{v:#}");

    // Artifacts: list, a file, a directory listing, a file inside it.
    let (status, rows) = s.get(&format!("/api/v1/runs/{id}/artifacts"), None).await;
    assert_eq!(status, 200);
    let digest_of = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name && r["direction"] == "output")
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let file = digest_of("file");
    let tree = digest_of("tree");
    let resp = s
        .http
        .get(s.url(&format!("/api/v1/artifacts/{file}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "payload\n");
    let (status, listing) = s
        .get(&format!("/api/v1/runs/{id}/artifacts/{tree}"), None)
        .await;
    assert_eq!(status, 200, "{listing:#}");
    assert_eq!(listing["kind"], "directory");
    assert_eq!(listing["files"][0]["path"], "sub/a.txt");
    let inner = s
        .http
        .get(s.url(&format!("/api/v1/artifacts/{tree}?path=sub/a.txt")))
        .send()
        .await
        .unwrap();
    assert_eq!(inner.text().await.unwrap(), "inner\n");
    for bad in ["../../../../etc/passwd", "/etc/passwd", "sub/../../x"] {
        let (status, v) = s
            .get(&format!("/api/v1/artifacts/{tree}?path={}", bad), None)
            .await;
        assert_eq!(status, 400, "{bad}: {v:#}");
        assert_eq!(v["error"]["field"], "path");
    }
    let (status, v) = s
        .get(&format!("/api/v1/artifacts/{tree}?path=sub/missing"), None)
        .await;
    assert_eq!(status, 404, "{v:#}");
    let (status, v) = s.get("/api/v1/artifacts/sha256:nothex", None).await;
    assert_eq!(status, 400, "{v:#}");
    assert_eq!(v["error"]["field"], "digest");
    let missing = format!("sha256:{}", "0".repeat(64));
    let (status, _) = s.get(&format!("/api/v1/artifacts/{missing}"), None).await;
    assert_eq!(status, 404);

    // More runs of two pipelines, for filters and pages.
    let other = "name: other\nsteps:\n  - name: a\n    image: busybox:1\n    command: [\"true\"]\n";
    let o1 = s.submit(other, None).await;
    s.wait_terminal(&o1, None).await;
    let o2 = s.submit(other, None).await;
    s.wait_terminal(&o2, None).await;
    let (status, page) = s.get("/api/v1/runs?pipeline=other&limit=1", None).await;
    assert_eq!(status, 200, "{page:#}");
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
    assert_eq!(page["runs"][0]["id"], o2.as_str(), "newest first");
    assert_eq!(page["next_offset"], 1);
    let (_, page2) = s
        .get("/api/v1/runs?pipeline=other&limit=1&offset=1", None)
        .await;
    assert_eq!(page2["runs"][0]["id"], o1.as_str());
    assert_eq!(page2["next_offset"], json!(null));
    let (_, all) = s.get("/api/v1/runs?status=succeeded", None).await;
    assert_eq!(all["runs"].as_array().unwrap().len(), 3);
    let (_, none) = s.get("/api/v1/runs?status=failed", None).await;
    assert!(none["runs"].as_array().unwrap().is_empty());
    let (status, v) = s.get("/api/v1/runs?status=bogus", None).await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("status"))
    );
    let (status, v) = s.get("/api/v1/runs?limit=-1", None).await;
    assert_eq!((status, v["error"]["field"].as_str()), (400, Some("limit")));
    // A prefix works like in the CLI.
    let (status, v) = s.get(&format!("/api/v1/runs/{}", &id[..8]), None).await;
    assert_eq!((status, v["id"].as_str()), (200, Some(id.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_is_cancelled_and_recorded_cancelled() {
    let s = TestServer::start(Options::default()).await;
    let id = s
        .submit(
            "name: long\nsteps:\n  - name: sleep\n    image: busybox:1\n    command: [sh, -c, 'echo started; sleep 300']\n",
            None,
        )
        .await;
    s.wait_run(&id, None, |v| v["steps"][0]["status"] == "running")
        .await;
    let (status, v) = s.post(&format!("/api/v1/runs/{id}/cancel"), None, "").await;
    assert_eq!(status, 202, "{v:#}");
    let started = std::time::Instant::now();
    let doc = s.wait_terminal(&id, None).await;
    assert_eq!(doc["status"], "cancelled", "{doc:#}");
    assert_eq!(doc["steps"][0]["status"], "cancelled");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let (status, v) = s.post(&format!("/api/v1/runs/{id}/cancel"), None, "").await;
    assert_eq!(status, 409, "{v:#}");
    assert_eq!(v["error"]["code"], "failed_precondition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx_and_change_nothing() {
    let s = TestServer::start(Options::default()).await;
    let post = |body: String| {
        let s = &s;
        async move { s.post("/api/v1/runs", None, &body).await }
    };
    // A spec error: 400 with file:line:col and the diagnostics.
    let broken =
        "name: broken\nsteps:\n  - name: a\n    imagee: busybox:1\n    command: [\"true\"]\n";
    let (status, v) = post(json!({"spec_yaml": broken}).to_string()).await;
    assert_eq!(status, 400, "{v:#}");
    assert_eq!(v["error"]["code"], "invalid_spec");
    assert_eq!(v["error"]["field"], "spec_yaml");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pipeline.yaml:4:"),
        "{v:#}"
    );
    let diagnostics = v["error"]["diagnostics"].as_array().unwrap();
    assert!(
        diagnostics.iter().any(|d| d["location"]["line"] == 4
            && d["location"]["file"] == "pipeline.yaml"
            && d["message"].as_str().unwrap().contains("imagee")),
        "{v:#}"
    );

    let cases = [
        ("{not json", "body"),
        ("[1, 2]", "body"),
        (r#"{"spec_yaml": 42}"#, "spec_yaml"),
        (r#"{"params": {}}"#, "spec_yaml"),
        (r#"{"spec_yaml": "name: x", "no_cache": "yes"}"#, "no_cache"),
        (r#"{"spec_yaml": "name: x", "params": [1]}"#, "params"),
        (
            r#"{"spec_yaml": "name: x", "params": {"max_depth": {"a": 1}}}"#,
            "params.max_depth",
        ),
        (r#"{"spec_yaml": "name: x", "surprise": 1}"#, "surprise"),
    ];
    for (body, field) in cases {
        let (status, v) = post(body.to_string()).await;
        assert_eq!(status, 400, "{body}: {v:#}");
        assert_eq!(v["error"]["field"], field, "{body}: {v:#}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10);
    }
    // A param the spec does not declare, and one of the wrong type.
    let spec = "name: p\nparams:\n  max_depth: 3\nsteps:\n  - name: a\n    image: busybox:1\n    command: [\"true\"]\n";
    let (status, v) = post(json!({"spec_yaml": spec, "params": {"max_dpth": 4}}).to_string()).await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("params.max_dpth")),
        "{v:#}"
    );
    let (status, v) =
        post(json!({"spec_yaml": spec, "params": {"max_depth": "deep"}}).to_string()).await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("params.max_depth")),
        "{v:#}"
    );
    // An image that does not exist.
    let (status, v) = post(
        json!({"spec_yaml": "name: q\nsteps:\n  - name: a\n    image: nothere:1\n    command: [\"true\"]\n"})
            .to_string(),
    )
    .await;
    assert_eq!(status, 400, "{v:#}");

    // Unknown runs and endpoints.
    let (status, v) = s.get("/api/v1/runs/r-000000000000", None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = s.post("/api/v1/runs/r-000000000000/cancel", None, "").await;
    assert_eq!(status, 404);
    let (status, _) = s.get("/api/v1/runs/r-000000000000/logs", None).await;
    assert_eq!(status, 404);
    let (status, v) = s.get("/api/v1/nothing", None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Oversize bodies: 413 JSON, with or without a content-length.
    let huge = json!({"spec_yaml": "x".repeat(100 << 10)}).to_string();
    let (status, v) = post(huge.clone()).await;
    assert_eq!(status, 413, "{v:#}");
    assert_eq!(v["error"]["code"], "payload_too_large");
    // Chunked, so only the body's actual length can give it away.
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut req = format!(
        "POST /api/v1/runs HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for c in huge.as_bytes().chunks(8192) {
        req.extend(format!("{:x}\r\n", c.len()).bytes());
        req.extend(c);
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    let _ = conn.write_all(&req).await;
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // Artifact uploads through the MLflow proxy are not JSON bodies: a model bigger than
    // the body limit still goes through (it streams to disk under its own cap).
    let big: Vec<u8> = (0..(256u32 << 10)).map(|i| (i % 251) as u8).collect();
    let http = reqwest::Client::new();
    let put = http
        .put(s.url("/api/2.0/mlflow-artifacts/artifacts/0/abc/artifacts/model.bin"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.status(),
        200,
        "{}",
        put.text().await.unwrap_or_default()
    );
    let got = http
        .get(s.url("/api/2.0/mlflow-artifacts/artifacts/0/abc/artifacts/model.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), &big[..]);

    // Nothing was recorded by any of it.
    let (_, runs) = s.get("/api/v1/runs", None).await;
    assert!(runs["runs"].as_array().unwrap().is_empty(), "{runs:#}");
    assert!(s.state.store.list_audit(0).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_prometheus_metrics() {
    let s = TestServer::start(Options::default()).await;
    let (status, v) = s.get("/healthz", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"status": "ok", "store": s.state.store.backend(), "engine": true})
    );
    let id = s
        .submit(
            "name: m\nsteps:\n  - name: a\n    image: busybox:1\n    command: [\"true\"]\n",
            None,
        )
        .await;
    s.wait_terminal(&id, None).await;
    let _ = s.get("/api/v1/runs/r-000000000000", None).await;
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"gantry_http_requests_total{method="POST",route="/api/v1/runs",status="201"} 1"#,
        r#"gantry_http_requests_total{method="GET",route="/api/v1/runs/{id}",status="404"} 1"#,
        r#"gantry_http_request_duration_seconds_bucket{"#,
        r#"gantry_http_request_duration_seconds_count{method="GET",route="/healthz"} 1"#,
        r#"gantry_runs{status="succeeded"} 1"#,
        r#"gantry_runs{status="running"} 0"#,
        r#"gantry_step_duration_seconds_count{status="succeeded"} 1"#,
        "gantry_queue_depth 0",
        "gantry_runs_in_flight 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_cancels_in_flight_runs() {
    let mut s = TestServer::start(Options::default()).await;
    let id = s
        .submit(
            "name: long\nsteps:\n  - name: sleep\n    image: busybox:1\n    command: [sh, -c, 'sleep 300']\n  - name: after\n    image: busybox:1\n    command: [\"true\"]\n    after: [sleep]\n",
            None,
        )
        .await;
    s.wait_run(&id, None, |v| v["steps"][0]["status"] == "running")
        .await;
    let took = s.shutdown().await;
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
    let run = s.state.store.get_run(&id).await.unwrap();
    assert_eq!(run.status.as_str(), "cancelled");
    let steps = s.state.store.list_step_runs(&id).await.unwrap();
    assert!(
        steps.iter().all(|st| st.status.as_str() == "cancelled"),
        "{steps:#?}"
    );
}
