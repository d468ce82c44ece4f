//! Deployments through the REST API without replicas (a server without an engine keeps
//! the desired state but runs nothing): validation that names the field, revisions,
//! canary → promote → rollback, compare-and-set, feedback, and the monitor computed from a
//! prediction log against a real model's reference profile. SQLite, and PostgreSQL when
//! `GANTRY_TEST_POSTGRES_URL` is set.

#![allow(clippy::unwrap_used)]

mod support;

use gantry_artifacts::ArtifactStore;
use gantry_server::{AppState, ServerConfig};
use gantry_store::{KeyValue, NewModelVersion, NewPrediction, Store};
use serde_json::{Value, json};
use std::path::Path;

struct Api {
    base: String,
    http: reqwest::Client,
    store: Store,
    artifacts: ArtifactStore,
    _home: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Api {
    async fn start() -> Api {
        Api::start_with(false).await
    }

    async fn start_with(auth: bool) -> Api {
        let home = tempfile::tempdir().unwrap();
        let db = support::database_url(home.path()).await;
        let store = Store::connect(&db).await.unwrap();
        let artifacts = ArtifactStore::open_local(&home.path().join("artifacts")).unwrap();
        register_iris(&store, &artifacts, home.path()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = ServerConfig::local(&base, home.path().join("mlflow"));
        config.auth = auth;
        let state = AppState::new(store.clone(), artifacts.clone(), config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(gantry_server::serve(state, listener, async {
            let _ = stopped.await;
        }));
        Api {
            base,
            http: reqwest::Client::new(),
            store,
            artifacts,
            _home: home,
            _stop: stop,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(None, method, path, body).await
    }

    async fn call_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
}

/// Trains two real iris models with the built-in components and registers them as iris
/// v1 and v2, v1 with the data's reference profile.
async fn register_iris(store: &Store, artifacts: &ArtifactStore, root: &Path) {
    let work = root.join("train");
    let run = |name: &str, with: Value, inputs: &[(&str, &Path)], out: &str| {
        let ins = work.join(format!("{out}-in"));
        std::fs::create_dir_all(&ins).unwrap();
        for (n, p) in inputs {
            std::os::unix::fs::symlink(p, ins.join(n)).unwrap();
        }
        let outs = work.join(out);
        gantry_ml::run_component(
            name,
            &gantry_ml::ComponentIo {
                with: &with,
                inputs: &ins,
                outputs: &outs,
            },
        )
        .unwrap();
        outs
    };
    std::fs::create_dir_all(&work).unwrap();
    let csv = work.join("iris.csv");
    std::fs::write(&csv, gantry_ml::datasets::iris_csv()).unwrap();
    let ingested = run("csv-ingest", json!({}), &[("source", &csv)], "ingest");
    let dataset = ingested.join("dataset");
    let profiled = run("profile", json!({}), &[("dataset", &dataset)], "profile");
    let profile = artifacts.put_path(&profiled.join("profile")).await.unwrap();
    for (version, depth) in [(1, 4), (2, 1)] {
        let trained = run(
            "train",
            json!({"label": "species", "algorithm": "decision_tree", "max_depth": depth, "seed": 1}),
            &[("train", &dataset)],
            &format!("train{version}"),
        );
        let model = artifacts.put_path(&trained.join("model")).await.unwrap();
        let v = store
            .register_model_version(&NewModelVersion {
                model: "iris".into(),
                artifact_digest: model.digest.clone(),
                artifact_kind: "directory".into(),
                run_id: None,
                step_run_id: None,
                step: None,
                metrics_json: "{}".into(),
                data_digests_json: "[]".into(),
                params_json: "{}".into(),
                flavor: "builtin".into(),
                description: None,
                alias: (version == 1).then(|| "champion".to_string()),
                now_ms: 1,
            })
            .await
            .unwrap();
        assert_eq!(v.version, version);
        if version == 1 {
            store
                .set_registered_model_version_tag(
                    "iris",
                    1,
                    &KeyValue {
                        key: gantry_engine::REFERENCE_PROFILE_TAG.into(),
                        value: profile.digest.clone(),
                    },
                )
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_changes_are_refused_naming_the_field_and_nothing_is_written() {
    let api = Api::start().await;
    let cases = [
        ("flowers", json!({"model": "nope@1"}), "model"),
        ("flowers", json!({"model": "iris@7"}), "model"),
        (
            "flowers",
            json!({"model": "iris@champion", "replicas": 0}),
            "replicas",
        ),
        (
            "flowers",
            json!({"model": "iris@champion", "memory": "1Mi"}),
            "memory",
        ),
        (
            "flowers",
            json!({"model": "iris@champion", "canary": "iris@1"}),
            "canary",
        ),
        (
            "flowers",
            json!({"model": "iris@champion", "weight": 10}),
            "weight",
        ),
        (
            "flowers",
            json!({"model": "iris@champion", "rules": ["psi >> 1"]}),
            "rules",
        ),
        (
            "flowers",
            json!({"model": "iris@champion", "sample_rate": 3}),
            "sample_rate",
        ),
        ("flowers", json!({"modle": "iris@champion"}), "modle"),
        ("flowers", json!({"replicas": "two"}), "body"),
        ("flowers", json!({}), "model"),
        ("Flowers!", json!({"model": "iris@champion"}), "name"),
    ];
    for (name, body, field) in cases {
        let (status, v) = api
            .post(&format!("/api/v1/deployments/{name}"), body.clone())
            .await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    assert!(api.store.list_deployments().await.unwrap().is_empty());
    let (status, _) = api.get("/api/v1/deployments/flowers").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_promote_rollback_and_undeploy_are_revisions() {
    let api = Api::start().await;
    let (status, v) = api
        .post(
            "/api/v1/deployments/flowers",
            json!({"model": "iris@champion", "replicas": 2, "rules": ["psi > 0.2 for feature petal_length"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["revision"], 1);
    assert_eq!(
        v["spec"]["model"],
        json!({"reference": "iris@champion", "model": "iris", "version": 1})
    );
    // Moving the alias later does not change what serves: versions are pinned.
    api.store
        .set_model_alias("iris", 2, "champion", 5)
        .await
        .unwrap();
    let (_, v) = api.get("/api/v1/deployments/flowers").await;
    assert_eq!(v["spec"]["model"]["version"], 1);

    let (status, v) = api
        .post(
            "/api/v1/deployments/flowers",
            json!({"canary": "iris@2", "weight": 20}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["revision"], 2);
    assert_eq!(v["spec"]["canary"]["weight"], 20);
    assert_eq!(v["spec"]["replicas"], 2, "untouched fields stay");

    let (status, v) = api
        .post("/api/v1/deployments/flowers/promote", json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["spec"]["model"]["version"], 2);
    assert!(v["spec"]["canary"].is_null());
    let (status, v) = api
        .post("/api/v1/deployments/flowers/promote", json!({}))
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["field"], "canary");

    let (status, v) = api
        .post("/api/v1/deployments/flowers/rollback", json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["revision"], 4);
    assert_eq!(v["spec"]["model"]["version"], 1);
    assert_eq!(v["spec"]["canary"]["target"]["version"], 2);

    // A stale editor is refused rather than silently overwriting.
    let (status, v) = api
        .post(
            "/api/v1/deployments/flowers",
            json!({"replicas": 3, "expected_revision": 2}),
        )
        .await;
    assert_eq!(status, 409, "{v}");

    let (_, v) = api.get("/api/v1/deployments/flowers").await;
    let actions: Vec<&str> = v["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["rollback", "promote", "update", "create"]);
    assert!(
        v["actual"]["serving_revision"].is_null(),
        "no engine, nothing serves: {v}"
    );
    // Rolling back again undoes the change before: the canary goes too.
    let (status, v) = api
        .post("/api/v1/deployments/flowers/rollback", json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["revision"], 5);
    assert_eq!(v["spec"]["model"]["version"], 1);
    assert!(v["spec"]["canary"].is_null(), "{v}");
    let (status, v) = api
        .post("/api/v1/deployments/flowers/rollback", json!({}))
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["field"], "revision");

    let (status, _) = api
        .call(reqwest::Method::DELETE, "/api/v1/deployments/flowers", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = api.get("/api/v1/deployments/flowers").await;
    assert_eq!(status, 404);
    let (status, v) = api
        .post("/v2/models/flowers/infer", json!({"inputs": []}))
        .await;
    assert_eq!(status, 404);
    assert!(
        v["error"].as_str().unwrap().contains("flowers"),
        "OIP error shape: {v}"
    );
    // The history stays, and a new deployment of the same name continues it.
    let (_, v) = api
        .post("/api/v1/deployments/flowers", json!({"model": "iris@1"}))
        .await;
    assert_eq!(v["revision"], 7, "{v}");
}

fn iris_rows() -> Vec<(Value, String)> {
    let csv = gantry_ml::datasets::iris_csv();
    let mut lines = csv.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let mut row = serde_json::Map::new();
            let mut label = String::new();
            for (h, c) in header.iter().zip(&cells) {
                if h == "species" {
                    label = c.to_string();
                } else {
                    row.insert(h.clone(), json!(c.parse::<f64>().unwrap()));
                }
            }
            (Value::Object(row), label)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_joins_the_log_and_the_monitor_sees_drift_and_a_performance_drop() {
    let api = Api::start().await;
    let (status, v) = api
        .post(
            "/api/v1/deployments/flowers",
            json!({"model": "iris@1", "rules": ["psi > 0.2 for feature petal_length", "psi(sepal_width) > 0.2", "accuracy < 0.9", "error_rate > 0.1"]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    // A prediction log as the proxy writes it: every iris row twice, the second time with
    // petals 3 cm longer and a prediction that is then wrong.
    let now = gantry_engine::now_ms();
    let mut batch = Vec::new();
    for (i, (row, label)) in iris_rows().into_iter().enumerate() {
        for shifted in [false, true] {
            let mut r = row.clone();
            if shifted {
                r["petal_length"] = json!(r["petal_length"].as_f64().unwrap() + 3.0);
            }
            batch.push(NewPrediction {
                request_id: format!("req-{i}-{shifted}"),
                deployment: "flowers".into(),
                model: "iris".into(),
                version: 1,
                role: "primary".into(),
                inputs: json!([r]).into(),
                outputs: json!([if shifted {
                    "virginica".to_string()
                } else {
                    label.clone()
                }]),
                rows: 1,
                error: None,
                latency_us: 800 + i as i64,
                created_at_ms: now - 1000,
            });
        }
    }
    // Logged as the server's log writer does: with the aggregates monitors read.
    let mut aggregator = gantry_server::deploy::aggregates::LogAggregator::new(
        api.store.clone(),
        api.artifacts.clone(),
    );
    aggregator.insert(&batch).await.unwrap();

    // Feedback: the truth for every request, in one call.
    let feedback: Vec<Value> = iris_rows()
        .into_iter()
        .enumerate()
        .flat_map(|(i, (_, label))| {
            [false, true].map(|s| json!({"request_id": format!("req-{i}-{s}"), "label": label}))
        })
        .collect();
    let (status, v) = api
        .post(
            "/api/v1/deployments/flowers/feedback",
            json!({"feedback": feedback}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stored"], 300);
    // Bad feedback names the item and field; none of that call is stored.
    for (body, field) in [
        (
            json!({"request_id": "nope", "label": "setosa"}),
            "feedback[0].request_id",
        ),
        (
            json!({"feedback": [{"request_id": "req-0-false", "label": "x"}, {"request_id": "req-1-false", "row": 3, "label": "x"}]}),
            "feedback[1].row",
        ),
        (
            json!({"request_id": "req-0-false", "labels": ["a", "b"]}),
            "feedback[0].labels",
        ),
        (json!({"request_id": "req-0-false"}), "feedback[0].label"),
    ] {
        let (status, v) = api
            .post("/api/v1/deployments/flowers/feedback", body.clone())
            .await;
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
    }
    let p = api.store.get_prediction("req-0-false").await.unwrap();
    assert_eq!(
        p.labels,
        vec![Some(json!("setosa"))],
        "the refused call changed nothing"
    );

    let (status, m) = api.get("/api/v1/deployments/flowers/monitor").await;
    assert_eq!(status, 200, "{m}");
    let r = &m["report"];
    assert_eq!(r["samples"], 300);
    let drift = r["drift"].as_array().unwrap();
    let feature = |f: &str| drift.iter().find(|d| d["feature"] == f).unwrap().clone();
    assert_eq!(feature("petal_length")["status"], "drift", "{m:#}");
    assert_eq!(feature("sepal_width")["status"], "ok", "{m:#}");
    assert!(feature("petal_length")["psi"].as_f64().unwrap() > 0.2);
    // Half the answers are wrong once the petals moved: 150 right + the shifted virginica.
    let accuracy = r["performance"][0]["accuracy"].as_f64().unwrap();
    assert!((accuracy - 200.0 / 300.0).abs() < 1e-9, "{accuracy}");
    let state = |rule: &str| {
        r["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == rule)
            .unwrap_or_else(|| panic!("no alert {rule}: {}", r["alerts"]))["state"]
            .clone()
    };
    // Rules are reported in their canonical form.
    assert_eq!(state("psi(petal_length) > 0.2"), "firing");
    assert_eq!(state("psi(sepal_width) > 0.2"), "ok");
    assert_eq!(state("accuracy < 0.9"), "firing");
    assert_eq!(state("error_rate > 0.1"), "ok");
    assert!(r["latency"]["p99_ms"].as_f64().unwrap() >= 0.8);
    assert!(
        r["verdict"].as_str().unwrap().contains("petal_length"),
        "{}",
        r["verdict"]
    );

    let (status, log) = api
        .get("/api/v1/deployments/flowers/predictions?limit=5")
        .await;
    assert_eq!(status, 200);
    assert_eq!(log.as_array().unwrap().len(), 5);
    let (status, v) = api
        .get("/api/v1/deployments/flowers/predictions?limit=0")
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["field"], "limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_projects_govern_deployments() {
    let api = Api::start_with(true).await;
    let token = |name: &'static str, role, project: Option<&'static str>| {
        let store = api.store.clone();
        async move {
            gantry_server::auth::issue_token(&store, name, role, project)
                .await
                .unwrap()
                .secret
        }
    };
    use gantry_server::auth::Role;
    let viewer = token("viewer", Role::Viewer, None).await;
    let ours = token("ours", Role::Editor, Some("flowers-team")).await;
    let theirs = token("theirs", Role::Editor, Some("other-team")).await;
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let body = json!({"model": "iris@champion"});

    let (status, _) = api
        .call(
            post.clone(),
            "/api/v1/deployments/flowers",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 401, "no token");
    let (status, v) = api
        .call_as(
            Some(&viewer),
            post.clone(),
            "/api/v1/deployments/flowers",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 403, "viewers read only: {v}");
    let (status, v) = api
        .call_as(
            Some(&ours),
            post.clone(),
            "/api/v1/deployments/flowers",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["project"], "flowers-team");
    // Another project's token does not see it, cannot change it, cannot send feedback.
    let (status, _) = api
        .call_as(
            Some(&theirs),
            get.clone(),
            "/api/v1/deployments/flowers",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, list) = api
        .call_as(Some(&theirs), get.clone(), "/api/v1/deployments", None)
        .await;
    assert_eq!(list, json!([]));
    let (status, _) = api
        .call_as(
            Some(&theirs),
            post.clone(),
            "/api/v1/deployments/flowers/promote",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .call_as(
            Some(&theirs),
            post.clone(),
            "/api/v1/deployments/flowers",
            Some(json!({"replicas": 2})),
        )
        .await;
    assert_eq!(status, 404);
    // The viewer (no project) reads it; the audit log names who changed what.
    let (status, v) = api
        .call_as(
            Some(&viewer),
            get.clone(),
            "/api/v1/deployments/flowers",
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let audit = api.store.list_audit(10).await.unwrap();
    assert!(
        audit.iter().any(|a| a.action == "deployment.apply"
            && a.target == "flowers"
            && a.principal == "ours"),
        "{audit:?}"
    );
}

/// Monitoring at volume: predictions bulk-loaded through the log writer's aggregator (not
/// HTTP, to stay fast), the monitor read from aggregates compared with a direct computation
/// over the very same rows.
mod at_scale {
    use super::*;
    use gantry_monitor::aggregate::{BUCKET_MS, LATENCY_RELATIVE_ERROR, WINDOW_SAMPLE};
    use gantry_monitor::{MonitorConfig, Observation, Task};
    use gantry_server::deploy::aggregates::{LogAggregator, load_reference, observations_of};
    use gantry_server::deploy::monitor::compute;

    const MINUTE: i64 = 60_000;

    /// A time in the second half of bucket `minutes_ago` before `now` (= bucket start + half
    /// a bucket): bucket windows and `(now − w, now]` then hold the same rows.
    fn at(now: i64, minutes_ago: i64, jitter: i64) -> i64 {
        now - minutes_ago * BUCKET_MS + 1 + jitter.rem_euclid(BUCKET_MS / 2 - 2)
    }

    fn now_mid_bucket() -> i64 {
        let now = gantry_engine::now_ms();
        now.div_euclid(BUCKET_MS) * BUCKET_MS - 5 * BUCKET_MS + BUCKET_MS / 2
    }

    fn prediction(id: String, row: &Value, output: &str, t: i64, latency_us: i64) -> NewPrediction {
        NewPrediction {
            request_id: id,
            deployment: "flowers".into(),
            model: "iris".into(),
            version: 1,
            role: "primary".into(),
            inputs: json!([row]).into(),
            outputs: json!([output]),
            rows: 1,
            error: None,
            latency_us,
            created_at_ms: t,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_million_predictions_are_monitored_from_aggregates_as_from_the_rows() {
        let api = Api::start().await;
        let (status, v) = api
            .post(
                "/api/v1/deployments/flowers",
                json!({"model": "iris@1", "rules": ["psi > 0.2 for feature petal_length", "accuracy(30m) < 0.9", "p99 > 30"]}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let now = now_mid_bucket();
        let rows = iris_rows();
        let mut aggregator = LogAggregator::new(api.store.clone(), api.artifacts.clone());
        let mut observations: Vec<Observation> = Vec::with_capacity(1_000_000);
        let mut batch = Vec::with_capacity(10_000);
        for i in 0..1_000_000i64 {
            let (row, label) = &rows[(i as usize * 7) % rows.len()];
            let mut row = row.clone();
            // A third of the traffic has longer petals; those predictions are wrong.
            let shifted = i % 3 == 0;
            if shifted {
                row["petal_length"] = json!(row["petal_length"].as_f64().unwrap() + 2.5);
            }
            let output = if shifted { "virginica" } else { label.as_str() };
            let t = at(now, 1 + i % 55, i * 7919);
            let latency = 300 + (i * 37) % 40_000;
            let p = prediction(format!("r-{i}"), &row, output, t, latency);
            observations.extend(observations_of(&p, &[]));
            batch.push(p);
            if batch.len() == 10_000 {
                aggregator.insert(&batch).await.unwrap();
                batch.clear();
            }
        }
        // Feedback for every 50th request, through the API (late: after logging).
        let mut feedback = Vec::new();
        for i in (0..1_000_000usize).step_by(50) {
            let label = &rows[(i * 7) % rows.len()].1;
            feedback.push(json!({"request_id": format!("r-{i}"), "label": label}));
            observations[i].label = Some(json!(label));
        }
        for chunk in feedback.chunks(5000) {
            let (status, v) = api
                .post(
                    "/api/v1/deployments/flowers/feedback",
                    json!({"feedback": chunk}),
                )
                .await;
            assert_eq!(status, 200, "{v}");
        }

        let view = compute(&api.store, &api.artifacts, "flowers", now)
            .await
            .unwrap();
        let got = &view.report;
        let reference = load_reference(&api.store, &api.artifacts, "iris", 1)
            .await
            .unwrap();
        let config = MonitorConfig {
            window_ms: 60 * MINUTE,
            performance_windows_ms: vec![15 * MINUTE, 60 * MINUTE, 24 * 60 * MINUTE],
            rules: [
                "psi > 0.2 for feature petal_length",
                "accuracy(30m) < 0.9",
                "p99 > 30",
            ]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect(),
            ..MonitorConfig::default()
        };
        let want = gantry_monitor::evaluate(
            reference.profile.as_ref(),
            reference.label.as_deref(),
            Task::Classification,
            &observations,
            &config,
            now,
        );
        assert_eq!(got.samples, 1_000_000);
        assert_eq!(got.samples, want.samples);
        for (a, d) in got
            .drift
            .iter()
            .chain(&got.prediction_drift)
            .zip(want.drift.iter().chain(&want.prediction_drift))
        {
            assert_eq!(a.feature, d.feature);
            assert_eq!((a.status, a.rows, a.samples), (d.status, d.rows, d.samples));
            assert_eq!(a.psi, d.psi, "{}", a.feature);
            assert_eq!(a.jensen_shannon, d.jensen_shannon, "{}", a.feature);
            assert_eq!(a.chi_square, d.chi_square, "{}", a.feature);
            assert_eq!(a.bins, d.bins, "{}", a.feature);
            if let (Some(x), Some(y)) = (&a.ks, &d.ks) {
                // The writer's sampling is seeded per process, so this is a random draw: the
                // DKW bound at one failure in a billion, not KS_SAMPLE_BOUND's 95% (which one
                // feature in twenty misses by chance).
                let bound = ((2.0f64 / 1e-9).ln() / (2.0 * WINDOW_SAMPLE as f64)).sqrt();
                assert!(
                    (x.statistic - y.statistic).abs() <= bound,
                    "{}: KS {} vs {}",
                    a.feature,
                    x.statistic,
                    y.statistic
                );
            } else {
                assert_eq!(a.ks.is_some(), d.ks.is_some(), "{}", a.feature);
            }
        }
        assert!(
            got.drifted().any(|d| d.feature == "petal_length"),
            "{got:#?}"
        );
        assert_eq!(got.performance, want.performance);
        assert_eq!(got.performance[0].labelled, 20_000 * 15 / 55 + 1);
        for (x, y) in [
            (got.latency.p50_ms, want.latency.p50_ms),
            (got.latency.p95_ms, want.latency.p95_ms),
            (got.latency.p99_ms, want.latency.p99_ms),
        ] {
            let (x, y) = (x.unwrap(), y.unwrap());
            assert!(
                (x - y).abs() <= 2.0 * LATENCY_RELATIVE_ERROR * y,
                "{x} vs {y}"
            );
        }
        let states = |r: &gantry_monitor::MonitorReport| {
            r.alerts
                .iter()
                .map(|a| (a.rule.clone(), a.state))
                .collect::<Vec<_>>()
        };
        assert_eq!(states(got), states(&want));
        assert_eq!(got.verdict, want.verdict);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn old_minutes_roll_up_into_hours_and_history_shows_drift_per_hour() {
        let api = Api::start().await;
        let (status, v) = api
            .post("/api/v1/deployments/flowers", json!({"model": "iris@1"}))
            .await;
        assert_eq!(status, 200, "{v}");
        let now = now_mid_bucket();
        let rows = iris_rows();
        // Five and four hours ago: 600 predictions each, the later hour's petals 3 cm longer.
        let mut aggregator = LogAggregator::new(api.store.clone(), api.artifacts.clone());
        for (hours_ago, shift) in [(5i64, 0.0), (4, 3.0)] {
            let batch: Vec<NewPrediction> = (0..600)
                .map(|i| {
                    let (row, label) = &rows[i % rows.len()];
                    let mut row = row.clone();
                    row["petal_length"] = json!(row["petal_length"].as_f64().unwrap() + shift);
                    let minute = hours_ago * 60 - 5 - (i as i64 % 40);
                    prediction(
                        format!("h{hours_ago}-{i}"),
                        &row,
                        label,
                        at(now, minute, i as i64),
                        700,
                    )
                })
                .collect();
            aggregator.insert(&batch).await.unwrap();
        }
        let day = |v: &gantry_server::deploy::monitor::MonitorView| {
            v.report
                .performance
                .iter()
                .find(|p| p.window_ms == 24 * 60 * MINUTE)
                .cloned()
                .unwrap()
        };
        let before = compute(&api.store, &api.artifacts, "flowers", now)
            .await
            .unwrap();
        let minute_rows = api
            .store
            .monitor_buckets("flowers", 0, now)
            .await
            .unwrap()
            .len();
        assert!(minute_rows >= 80, "{minute_rows}");
        let hours = gantry_server::deploy::monitor::roll_up(&api.store, "flowers", now)
            .await
            .unwrap();
        assert!(hours >= 2, "{hours}");
        let after_rows = api.store.monitor_buckets("flowers", 0, now).await.unwrap();
        assert!(after_rows.len() <= 3, "{}", after_rows.len());
        assert!(after_rows.iter().all(|b| b.key.span_ms == 60 * MINUTE));
        // Nothing is lost by rolling up, and rolling up again changes nothing.
        let after = compute(&api.store, &api.artifacts, "flowers", now)
            .await
            .unwrap();
        assert_eq!(day(&after).predictions, day(&before).predictions);
        assert_eq!(day(&after).predictions, 1200);
        assert_eq!(
            gantry_server::deploy::monitor::roll_up(&api.store, "flowers", now)
                .await
                .unwrap(),
            0
        );

        // A late record for a rolled-up minute, from the writer that still holds that minute
        // in memory: counted once, not with the minute's earlier records a second time.
        let (row, label) = &rows[0];
        let late = prediction("late-0".into(), row, label, at(now, 5 * 60 - 5, 0), 700);
        aggregator.insert(&[late]).await.unwrap();
        let late_view = compute(&api.store, &api.artifacts, "flowers", now)
            .await
            .unwrap();
        assert_eq!(day(&late_view).predictions, 1201);
        // The buckets' own observations (not the performance sums above).
        let samples = |h: &Value| -> u64 {
            h["hours"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["samples"].as_u64().unwrap())
                .sum()
        };
        let (_, h) = api
            .get("/api/v1/deployments/flowers/monitor/history?hours=6")
            .await;
        assert_eq!(samples(&h), 1201, "{h:#}");
        // A roll-up that read one bucket before it changed leaves everything as it was, the
        // rows it had deleted before finding out included.
        let rows_now = api.store.monitor_buckets("flowers", 0, now).await.unwrap();
        assert!(rows_now.len() >= 2, "{rows_now:?}");
        let mut stale: Vec<_> = rows_now.iter().map(|b| (b.key.clone(), b.seq)).collect();
        if let Some(last) = stale.last_mut() {
            last.1 -= 1;
        }
        let err = api
            .store
            .replace_monitor_buckets(&stale, &[])
            .await
            .unwrap_err();
        assert!(
            matches!(err, gantry_store::StoreError::Conflict { .. }),
            "{err}"
        );
        assert_eq!(
            api.store.monitor_buckets("flowers", 0, now).await.unwrap(),
            rows_now
        );
        assert_eq!(
            gantry_server::deploy::monitor::roll_up(&api.store, "flowers", now)
                .await
                .unwrap(),
            1,
            "the late minute joins its hour"
        );
        let rolled = compute(&api.store, &api.artifacts, "flowers", now)
            .await
            .unwrap();
        assert_eq!(day(&rolled).predictions, 1201);
        assert!(
            api.store
                .monitor_buckets("flowers", 0, now)
                .await
                .unwrap()
                .iter()
                .all(|b| b.key.span_ms == 60 * MINUTE)
        );

        let (status, h) = api
            .get("/api/v1/deployments/flowers/monitor/history?hours=6")
            .await;
        assert_eq!(status, 200, "{h}");
        let hours = h["hours"].as_array().unwrap();
        let samples: u64 = hours.iter().map(|x| x["samples"].as_u64().unwrap()).sum();
        assert_eq!(samples, 1201, "{h:#}");
        // Hours with enough values for a PSI (an hour the traffic barely touched has none).
        let psi: Vec<f64> = hours
            .iter()
            .filter_map(|x| x["psi"]["petal_length"].as_f64())
            .collect();
        let (calm, shifted) = (psi[0], psi[psi.len() - 1]);
        assert!(
            calm < 0.2 && shifted > 0.2,
            "per-hour PSI {calm} then {shifted}: {h:#}"
        );
        let (status, v) = api
            .get("/api/v1/deployments/flowers/monitor/history?hours=0")
            .await;
        assert_eq!(
            (status, v["error"]["field"].as_str()),
            (400, Some("hours")),
            "{v}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_canary_is_compared_with_the_primary_feature_by_feature() {
        let api = Api::start().await;
        let (status, v) = api
            .post(
                "/api/v1/deployments/flowers",
                json!({"model": "iris@1", "canary": "iris@2", "weight": 50}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let now = gantry_engine::now_ms();
        let rows = iris_rows();
        let batch: Vec<NewPrediction> = (0..600)
            .map(|i| {
                // Both sides see the same rows; only the canary's petals are longer.
                let (row, label) = &rows[(i / 2) % rows.len()];
                let canary = i % 2 == 1;
                let mut row = row.clone();
                if canary {
                    row["petal_length"] = json!(row["petal_length"].as_f64().unwrap() + 3.0);
                }
                let mut p = prediction(format!("c-{i}"), &row, label, now - 60_000, 500);
                if canary {
                    p.role = "canary".into();
                    p.version = 2;
                }
                p
            })
            .collect();
        let mut aggregator = LogAggregator::new(api.store.clone(), api.artifacts.clone());
        aggregator.insert(&batch).await.unwrap();
        for query in ["a=primary&b=canary", "a=version:1&b=version:2", ""] {
            let (status, v) = api
                .get(&format!(
                    "/api/v1/deployments/flowers/monitor/compare?{query}"
                ))
                .await;
            assert_eq!(status, 200, "{v}");
            let feature = |f: &str| {
                v["features"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["feature"] == f)
                    .unwrap_or_else(|| panic!("{f}: {v:#}"))
                    .clone()
            };
            assert!(
                feature("petal_length")["psi"].as_f64().unwrap() > 0.2,
                "{v:#}"
            );
            assert_eq!(feature("sepal_width")["psi"].as_f64(), Some(0.0), "{v:#}");
            assert_eq!(feature("sepal_width")["samples"], json!([300, 300]));
        }
        let (status, v) = api
            .get("/api/v1/deployments/flowers/monitor/compare?b=blue")
            .await;
        assert_eq!(
            (status, v["error"]["field"].as_str()),
            (400, Some("b")),
            "{v}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn late_feedback_restarts_failures_and_retention_keep_the_counts_right() {
        let api = Api::start().await;
        let (status, v) = api
            .post("/api/v1/deployments/flowers", json!({"model": "iris@1"}))
            .await;
        assert_eq!(status, 200, "{v}");
        let now = now_mid_bucket();
        let rows = iris_rows();
        let batch = |from: usize, n: usize, minutes_ago: i64| -> Vec<NewPrediction> {
            (from..from + n)
                .map(|i| {
                    let (row, label) = &rows[i % rows.len()];
                    prediction(
                        format!("r-{i}"),
                        row,
                        label,
                        at(now, minutes_ago, i as i64),
                        900,
                    )
                })
                .collect()
        };
        // 100 predictions two hours ago and 100 five minutes ago, then the writer dies.
        let mut first = LogAggregator::new(api.store.clone(), api.artifacts.clone());
        first.insert(&batch(0, 100, 120)).await.unwrap();
        first.insert(&batch(100, 100, 5)).await.unwrap();
        drop(first);
        // A restarted writer continues into the same minute with rows of its own.
        let mut second = LogAggregator::new(api.store.clone(), api.artifacts.clone());
        second.insert(&batch(200, 50, 5)).await.unwrap();
        // A batch that fails (a request id logged before) counts nothing, here or later.
        let mut dup = batch(250, 10, 5);
        dup.push(batch(0, 1, 5).remove(0));
        assert!(second.insert(&dup).await.is_err());
        second.insert(&batch(260, 10, 5)).await.unwrap();

        let view = compute(&api.store, &api.artifacts, "flowers", now)
            .await
            .unwrap();
        assert_eq!(view.report.samples, 160, "nothing lost or counted twice");
        // A server's cached evaluation (settled buckets merged once, the current minute each
        // time) gives the same report, on first use and when reused.
        let cache = gantry_server::deploy::monitor::MonitorCache::default();
        for _ in 0..2 {
            let cached = gantry_server::deploy::monitor::compute_cached(
                &api.store,
                &api.artifacts,
                "flowers",
                now,
                &cache,
            )
            .await
            .unwrap();
            assert_eq!(cached.report, view.report);
        }
        assert_eq!(
            api.store.count_predictions("flowers").await.unwrap(),
            260,
            "the log holds what the aggregates count"
        );
        let day = |v: &gantry_server::deploy::monitor::MonitorView| {
            v.report
                .performance
                .iter()
                .find(|p| p.window_ms == 24 * 60 * MINUTE)
                .cloned()
                .unwrap()
        };
        assert_eq!(day(&view).predictions, 260);
        assert_eq!(day(&view).labelled, 0);

        // Feedback arrives now for the two-hour-old predictions: it lands in their bucket
        // (the day's window), not in the last 15 minutes. Half the labels are wrong.
        let labels: Vec<Value> = (0..100)
            .map(|i| {
                let truth = if i % 2 == 0 {
                    rows[i % rows.len()].1.clone()
                } else {
                    "other".into()
                };
                json!({"request_id": format!("r-{i}"), "label": truth})
            })
            .collect();
        let (status, v) = api
            .post(
                "/api/v1/deployments/flowers/feedback",
                json!({"feedback": labels}),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let view = compute(&api.store, &api.artifacts, "flowers", now)
            .await
            .unwrap();
        assert_eq!(
            view.report.performance[0].labelled, 0,
            "15 minutes: {:?}",
            view.report.performance[0]
        );
        assert_eq!((day(&view).labelled, day(&view).accuracy), (100, Some(0.5)));
        // Replacing labels moves the counts, it does not add to them.
        let fixed: Vec<Value> = (0..100)
            .filter(|i| i % 2 == 1)
            .take(10)
            .map(|i| json!({"request_id": format!("r-{i}"), "label": rows[i % rows.len()].1}))
            .collect();
        let (status, _) = api
            .post(
                "/api/v1/deployments/flowers/feedback",
                json!({"feedback": fixed}),
            )
            .await;
        assert_eq!(status, 200);
        let view = compute(&api.store, &api.artifacts, "flowers", now)
            .await
            .unwrap();
        assert_eq!((day(&view).labelled, day(&view).accuracy), (100, Some(0.6)));

        // Retention drops the old buckets with their counts.
        let gone = api
            .store
            .prune_monitor("flowers", now - 60 * MINUTE)
            .await
            .unwrap();
        assert!(gone >= 1);
        let view = compute(&api.store, &api.artifacts, "flowers", now)
            .await
            .unwrap();
        assert_eq!((day(&view).predictions, day(&view).labelled), (160, 0));
        assert_eq!(view.report.samples, 160);
    }
}
