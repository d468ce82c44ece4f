//! `/metrics` counts requests, rows, errors and latency, in a format promtool accepts.

use std::io::Write;
use std::process::{Command, Stdio};

use gantry_ml::datasets;
use serde_json::json;

use crate::support::{TestServer, csv_rows, iris, matrix_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_rows_and_errors() {
    let trained = iris();
    let s = TestServer::start(vec![trained.load("iris", "1")]).await;
    let (rows, _) = csv_rows(&datasets::iris_csv(), "species");
    for _ in 0..3 {
        s.ok("/v2/models/iris/infer", &matrix_request(&rows[..5]))
            .await;
    }
    s.ok("/v2/models/iris/predict", &json!({"rows": rows[..2]}))
        .await;
    s.error("/v2/models/iris/infer", &json!({"inputs": []}), 400)
        .await;
    s.error("/v2/models/nope/infer", &json!({"inputs": []}), 404)
        .await;

    // Prometheus asks for OpenMetrics; anything else gets the classic text format.
    let response = s
        .http
        .get(s.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let openmetrics = response.text().await.unwrap();
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(
        openmetrics.contains("# TYPE gantry_model_requests counter\n"),
        "{openmetrics}"
    );
    let response = s.http.get(s.url("/metrics")).send().await.unwrap();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();
    assert!(
        text.contains("# TYPE gantry_model_requests_total counter\n"),
        "{text}"
    );
    for needle in [
        r#"gantry_model_requests_total{model="iris",version="1",protocol="infer",code="200"} 3"#,
        r#"gantry_model_requests_total{model="iris",version="1",protocol="predict",code="200"} 1"#,
        r#"gantry_model_requests_total{model="iris",version="1",protocol="infer",code="400"} 1"#,
        r#"gantry_model_rows_total{model="iris",version="1"} 17"#,
        r#"gantry_model_errors_total{model="iris",version="1",kind="bad_request"} 1"#,
        r#"gantry_model_request_duration_seconds_count{model="iris",version="1"} 5"#,
        r#"gantry_model_request_duration_seconds_bucket{le="0.0001",model="iris",version="1"}"#,
        r#"gantry_model_request_duration_seconds_bucket{le="10.0",model="iris",version="1"}"#,
        "# TYPE gantry_model_request_duration_seconds histogram",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
        assert!(
            openmetrics.contains(needle),
            "missing {needle} in:\n{openmetrics}"
        );
    }
    assert!(
        !text.contains("nope"),
        "unknown models make no series:\n{text}"
    );

    // promtool (Debian's prometheus package) must accept the exposition as it is.
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool cannot be run ({e}): install Debian's prometheus package \
                 (scripts/test.sh does) so the exposition is linted"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s.stop().await;
}
