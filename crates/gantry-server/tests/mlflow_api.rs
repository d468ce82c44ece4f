//! The MLflow-compatible API over HTTP: the router served on 127.0.0.1:0 with a real store
//! (SQLite in a temp dir; PostgreSQL too when `GANTRY_TEST_POSTGRES_URL` is set).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use axum::Extension;
use gantry_artifacts::ArtifactStore;
use gantry_server::auth::{Principal, Role};
use gantry_server::{AppState, ServerConfig, mlflow};
use gantry_store::Store;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../../../testing/skip.rs"]
mod skip;

const POSTGRES_ENV: &str = "GANTRY_TEST_POSTGRES_URL";

struct Server {
    base: String,
    addr: std::net::SocketAddr,
    home: tempfile::TempDir,
    store: Store,
    http: reqwest::Client,
    pg_db: Option<String>,
}

impl Server {
    async fn start(principal: Principal, postgres: bool) -> Option<Server> {
        let home = tempfile::tempdir().unwrap();
        let (url, pg_db) = if postgres {
            let base = skip::unless_env(
                POSTGRES_ENV,
                "a PostgreSQL URL to run the MLflow API against PostgreSQL",
            )?;
            use sqlx::migrate::MigrateDatabase;
            sqlx::any::install_default_drivers();
            let url = with_database(&base, &format!("gantry_ma_{}", gantry_store::new_id("")));
            sqlx::Any::create_database(&url).await.unwrap();
            (url.clone(), Some(url))
        } else {
            (
                format!("sqlite://{}/gantry.db", home.path().display()),
                None,
            )
        };
        let store = Store::connect(&url).await.unwrap();
        let artifacts = ArtifactStore::open_local(&home.path().join("artifacts")).unwrap();
        let config = ServerConfig::local("http://127.0.0.1", home.path().join("mlflow-artifacts"));
        let state = AppState::new(store.clone(), artifacts, config);
        let app = mlflow::router()
            .with_state(state)
            .layer(Extension(principal));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Some(Server {
            base: format!("http://{addr}"),
            addr,
            home,
            store,
            http: reqwest::Client::new(),
            pg_db,
        })
    }

    async fn finish(self) {
        if let Some(url) = &self.pg_db {
            use sqlx::migrate::MigrateDatabase;
            sqlx::Any::force_drop_database(url).await.unwrap();
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    async fn post(&self, endpoint: &str, body: Value) -> (u16, Value) {
        self.call("POST", &format!("/api/2.0/mlflow/{endpoint}"), Some(body))
            .await
    }

    async fn get(&self, endpoint_and_query: &str) -> (u16, Value) {
        self.call(
            "GET",
            &format!("/api/2.0/mlflow/{endpoint_and_query}"),
            None,
        )
        .await
    }

    /// A request sent byte for byte, so the path reaches the server unnormalized.
    async fn raw(&self, request: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        conn.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[start..].find('/') {
        Some(slash) => &base[..start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{:#}", got.1);
    assert_eq!(got.1["error_code"], code, "{:#}", got.1);
    assert!(
        !got.1["message"].as_str().unwrap_or_default().is_empty(),
        "{:#}",
        got.1
    );
}

async fn new_run(s: &Server, exp: &str, name: &str) -> String {
    let (st, v) = s
        .post(
            "runs/create",
            json!({"experiment_id": exp, "run_name": name, "start_time": 1000, "tags": [{"key": "team", "value": "ml"}]}),
        )
        .await;
    assert_eq!(st, 200, "{v:#}");
    v["run"]["info"]["run_id"].as_str().unwrap().to_owned()
}

mod cases {
    use super::*;

    pub async fn tracking_round_trip(s: &Server) {
        let (st, v) = s.post("experiments/create", json!({"name": "iris"})).await;
        assert_eq!(st, 200, "{v:#}");
        let exp = v["experiment_id"].as_str().unwrap().to_owned();
        assert_error(
            &s.post("experiments/create", json!({"name": "iris"})).await,
            400,
            "RESOURCE_ALREADY_EXISTS",
        );
        let (st, v) = s.get(&format!("experiments/get?experiment_id={exp}")).await;
        assert_eq!(st, 200);
        assert_eq!(v["experiment"]["name"], "iris");
        assert_eq!(v["experiment"]["lifecycle_stage"], "active");
        assert!(v["experiment"]["creation_time"].is_i64());
        let (_, v) = s.get("experiments/get-by-name?experiment_name=iris").await;
        assert_eq!(v["experiment"]["experiment_id"], exp.as_str());
        assert_error(
            &s.get("experiments/get-by-name?experiment_name=nope").await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
        );

        let run = new_run(s, &exp, "first").await;
        let (st, v) = s
            .post(
                "runs/log-metric",
                json!({"run_id": run, "key": "acc", "value": 0.5, "timestamp": 10, "step": 0}),
            )
            .await;
        assert_eq!(st, 200, "{v:#}");
        // int64 fields as strings and non-finite doubles as proto JSON sends them.
        s.post(
            "runs/log-metric",
            json!({"run_uuid": run, "key": "acc", "value": "0.75", "timestamp": "11", "step": "1"}),
        )
        .await;
        s.post(
            "runs/log-metric",
            json!({"run_id": run, "key": "weird", "value": "NaN", "timestamp": 1}),
        )
        .await;
        s.post(
            "runs/log-metric",
            json!({"run_id": run, "key": "big", "value": "-Infinity", "timestamp": 1}),
        )
        .await;
        let (st, _) = s
            .post(
                "runs/log-parameter",
                json!({"run_id": run, "key": "lr", "value": "0.1"}),
            )
            .await;
        assert_eq!(st, 200);
        let (st, _) = s
            .post(
                "runs/set-tag",
                json!({"run_id": run, "key": "note", "value": "hi"}),
            )
            .await;
        assert_eq!(st, 200);
        // 998 metrics + 1 param + 1 tag: MLflow's limit of 1000 entries in all.
        let metrics: Vec<Value> = (0..998)
            .map(|i| json!({"key": "loss", "value": 1.0 / f64::from(i + 1), "timestamp": 100 + i, "step": i}))
            .collect();
        let (st, v) = s
            .post(
                "runs/log-batch",
                json!({"run_id": run, "metrics": metrics, "params": [{"key": "depth", "value": "4"}], "tags": [{"key": "mlflow.runName", "value": "renamed"}]}),
            )
            .await;
        assert_eq!(st, 200, "{v:#}");

        let (st, v) = s.get(&format!("runs/get?run_id={run}")).await;
        assert_eq!(st, 200);
        let info = &v["run"]["info"];
        assert_eq!(info["run_id"], run.as_str());
        assert_eq!(info["run_uuid"], run.as_str());
        assert_eq!(info["experiment_id"], exp.as_str());
        assert_eq!(info["run_name"], "renamed");
        assert_eq!(info["status"], "RUNNING");
        assert_eq!(info["start_time"], 1000);
        assert_eq!(info["lifecycle_stage"], "active");
        assert_eq!(
            info["artifact_uri"],
            format!("mlflow-artifacts:/{exp}/{run}/artifacts")
        );
        let data = &v["run"]["data"];
        let metric = |k: &str| {
            data["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["key"] == k)
                .unwrap()
                .clone()
        };
        assert_eq!(metric("acc")["value"], 0.75);
        assert_eq!(metric("acc")["step"], 1);
        assert_eq!(metric("weird")["value"], "NaN");
        assert_eq!(metric("big")["value"], "-Infinity");
        assert_eq!(metric("loss")["step"], 997);
        assert_eq!(
            data["params"],
            json!([{"key": "depth", "value": "4"}, {"key": "lr", "value": "0.1"}])
        );
        assert!(
            data["tags"]
                .as_array()
                .unwrap()
                .contains(&json!({"key": "note", "value": "hi"}))
        );

        // History pages.
        let (st, v) = s
            .get(&format!(
                "metrics/get-history?run_id={run}&metric_key=loss&max_results=600"
            ))
            .await;
        assert_eq!(st, 200);
        assert_eq!(v["metrics"].as_array().unwrap().len(), 600);
        let token = v["next_page_token"].as_str().unwrap().to_owned();
        let (_, v) = s
            .get(&format!(
                "metrics/get-history?run_id={run}&metric_key=loss&max_results=600&page_token={token}"
            ))
            .await;
        assert_eq!(v["metrics"].as_array().unwrap().len(), 398);
        assert_eq!(v["metrics"][397]["step"], 997);
        assert!(v.get("next_page_token").is_none());

        // Search with MLflow's grammar.
        for (i, acc) in [0.2, 0.9, 0.6].iter().enumerate() {
            let id = new_run(s, &exp, &format!("r{i}")).await;
            s.post(
                "runs/log-batch",
                json!({"run_id": id, "metrics": [{"key": "acc", "value": acc, "timestamp": 1, "step": 0}], "params": [{"key": "lr", "value": "0.1"}]}),
            )
            .await;
        }
        let (st, v) = s
            .post(
                "runs/search",
                json!({"experiment_ids": [exp], "filter": "metrics.acc > 0.5 and params.lr = '0.1'", "order_by": ["metrics.acc DESC"], "max_results": 2}),
            )
            .await;
        assert_eq!(st, 200, "{v:#}");
        let names: Vec<_> = v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["info"]["run_name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["r1", "renamed"]);
        let token = v["next_page_token"].as_str().unwrap().to_owned();
        let (_, v) = s
            .post(
                "runs/search",
                json!({"experiment_ids": [exp], "filter": "metrics.acc > 0.5 and params.lr = '0.1'", "order_by": ["metrics.acc DESC"], "max_results": 2, "page_token": token}),
            )
            .await;
        assert_eq!(v["runs"].as_array().unwrap().len(), 1);
        assert_eq!(v["runs"][0]["info"]["run_name"], "r2");
        assert_error(
            &s.post(
                "runs/search",
                json!({"experiment_ids": [exp], "max_results": 2, "page_token": token}),
            )
            .await,
            400,
            "INVALID_PARAMETER_VALUE",
        );
        assert_error(
            &s.post(
                "runs/search",
                json!({"experiment_ids": [exp], "filter": "metrics.acc > 1 or params.x = 'y'"}),
            )
            .await,
            400,
            "INVALID_PARAMETER_VALUE",
        );

        // Update, delete, restore.
        let (st, v) = s
            .post(
                "runs/update",
                json!({"run_id": run, "status": "FINISHED", "end_time": 5000}),
            )
            .await;
        assert_eq!(st, 200, "{v:#}");
        assert_eq!(v["run_info"]["status"], "FINISHED");
        assert_eq!(v["run_info"]["end_time"], 5000);
        assert_eq!(s.post("runs/delete", json!({"run_id": run})).await.0, 200);
        let (_, v) = s
            .post(
                "runs/search",
                json!({"experiment_ids": [exp], "run_view_type": "DELETED_ONLY"}),
            )
            .await;
        assert_eq!(v["runs"].as_array().unwrap().len(), 1);
        assert_eq!(s.post("runs/restore", json!({"run_id": run})).await.0, 200);

        let (_, v) = s
            .post("experiments/search", json!({"filter": "name = 'iris'"}))
            .await;
        assert_eq!(v["experiments"].as_array().unwrap().len(), 1);
        assert_eq!(
            s.post(
                "experiments/update",
                json!({"experiment_id": exp, "new_name": "iris-2"})
            )
            .await
            .0,
            200
        );
        assert_eq!(
            s.post("experiments/delete", json!({"experiment_id": exp}))
                .await
                .0,
            200
        );
        let (_, v) = s.get(&format!("runs/get?run_id={run}")).await;
        assert_eq!(v["run"]["info"]["lifecycle_stage"], "deleted");
        assert_eq!(
            s.post("experiments/restore", json!({"experiment_id": exp}))
                .await
                .0,
            200
        );
        // The UI's alias prefix serves the same API.
        let (st, v) = s
            .call(
                "GET",
                &format!("/ajax-api/2.0/mlflow/runs/get?run_id={run}"),
                None,
            )
            .await;
        assert_eq!(st, 200);
        assert_eq!(v["run"]["info"]["lifecycle_stage"], "active");
    }

    pub async fn bad_requests_get_mlflow_errors_and_change_nothing(s: &Server) {
        let run = new_run(s, "0", "target").await;
        s.post(
            "runs/log-parameter",
            json!({"run_id": run, "key": "lr", "value": "0.1"}),
        )
        .await;
        let before = s.get(&format!("runs/get?run_id={run}")).await.1;

        // Malformed JSON and a body that is not an object.
        let (st, v) = s
            .call(
                "POST",
                "/api/2.0/mlflow/runs/log-batch",
                Some(Value::String("{".into())),
            )
            .await;
        assert_eq!(st, 400, "{v:#}");
        assert_eq!(v["error_code"], "BAD_REQUEST");
        let resp = s
            .http
            .post(format!("{}/api/2.0/mlflow/runs/log-batch", s.base))
            .body("{\"run_id\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(v["error_code"], "BAD_REQUEST");

        let metric = |value: Value, ts: Value| json!({"key": "m", "value": value, "timestamp": ts, "step": 0});
        for body in [
            json!({"run_id": run, "metrics": [metric(json!(1.0), json!(1)), metric(json!("abc"), json!(1))]}),
            json!({"run_id": run, "metrics": [metric(json!(1.0), json!("x"))]}),
            json!({"run_id": run, "metrics": [metric(json!(1.0), json!(1.5))]}),
            json!({"run_id": run, "metrics": [{"key": "m", "value": 1.0}]}),
            json!({"run_id": run, "metrics": "not a list"}),
            json!({"run_id": run, "params": [{"key": 7, "value": "x"}]}),
            json!({"run_id": run, "params": [{"key": "lr", "value": "0.2"}], "metrics": [metric(json!(2.0), json!(2))]}),
            json!({"run_id": run, "params": [{"key": "../etc", "value": "x"}]}),
            json!({"run_id": run, "params": [{"key": "p", "value": "x".repeat(6001)}]}),
            json!({"run_id": run, "tags": [{"key": "t", "value": "x".repeat(8001)}]}),
            json!({"run_id": run, "metrics": (0..1001).map(|i| metric(json!(i), json!(1))).collect::<Vec<_>>()}),
            json!({"run_id": run, "params": (0..101).map(|i| json!({"key": format!("p{i}"), "value": "v"})).collect::<Vec<_>>()}),
            json!({"metrics": [metric(json!(1.0), json!(1))]}),
        ] {
            let got = s.post("runs/log-batch", body.clone()).await;
            assert_eq!(got.0, 400, "{body}");
            assert_error(&got, 400, "INVALID_PARAMETER_VALUE");
        }
        assert_error(
            &s.post("runs/log-batch", json!({"run_id": "0123456789abcdef0123456789abcdef", "metrics": [metric(json!(1.0), json!(1))]}))
                .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
        );
        assert_error(
            &s.get("runs/get?run_id=nope").await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
        );
        assert_error(&s.get("runs/get").await, 400, "INVALID_PARAMETER_VALUE");
        assert_error(
            &s.post("runs/create", json!({"experiment_id": "4242"}))
                .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
        );
        assert_error(
            &s.post("runs/update", json!({"run_id": run, "status": "BOGUS"}))
                .await,
            400,
            "INVALID_PARAMETER_VALUE",
        );
        assert_error(
            &s.get(&format!(
                "metrics/get-history?run_id={run}&metric_key=m&max_results=x"
            ))
            .await,
            400,
            "INVALID_PARAMETER_VALUE",
        );
        // Nothing of the refused requests was written.
        let after = s.get(&format!("runs/get?run_id={run}")).await.1;
        assert_eq!(before, after);
    }

    pub async fn registry_models_versions_and_aliases(s: &Server) {
        let (st, v) = s
            .post(
                "registered-models/create",
                json!({"name": "iris", "description": "flowers", "tags": [{"key": "team", "value": "ml"}]}),
            )
            .await;
        assert_eq!(st, 200, "{v:#}");
        assert_eq!(v["registered_model"]["name"], "iris");
        assert_error(
            &s.post("registered-models/create", json!({"name": "iris"}))
                .await,
            400,
            "RESOURCE_ALREADY_EXISTS",
        );
        for i in 1..=2 {
            let (st, v) = s
                .post(
                    "model-versions/create",
                    json!({"name": "iris", "source": format!("mlflow-artifacts:/0/r{i}/artifacts/model"), "run_id": format!("r{i}"), "tags": [{"key": "i", "value": i.to_string()}]}),
                )
                .await;
            assert_eq!(st, 200, "{v:#}");
            assert_eq!(v["model_version"]["version"], i.to_string());
            assert_eq!(v["model_version"]["status"], "READY");
        }
        let (st, v) = s
            .post(
                "registered-models/alias",
                json!({"name": "iris", "alias": "champion", "version": "1"}),
            )
            .await;
        assert_eq!(st, 200, "{v:#}");
        let (_, v) = s
            .get("registered-models/alias?name=iris&alias=champion")
            .await;
        assert_eq!(v["model_version"]["version"], "1");
        assert_eq!(v["model_version"]["aliases"], json!(["champion"]));
        let (_, v) = s.get("registered-models/get?name=iris").await;
        assert_eq!(
            v["registered_model"]["aliases"],
            json!([{"alias": "champion", "version": "1"}])
        );
        assert_eq!(v["registered_model"]["latest_versions"][0]["version"], "2");
        let (_, v) = s
            .get("model-versions/get-download-uri?name=iris&version=2")
            .await;
        assert_eq!(v["artifact_uri"], "mlflow-artifacts:/0/r2/artifacts/model");
        let (_, v) = s
            .get("model-versions/search?filter=name%3D%27iris%27%20and%20tags.i%3D%272%27")
            .await;
        assert_eq!(v["model_versions"].as_array().unwrap().len(), 1, "{v:#}");
        let (_, v) = s
            .get("registered-models/search?filter=name%20LIKE%20%27ir%25%27")
            .await;
        assert_eq!(v["registered_models"].as_array().unwrap().len(), 1, "{v:#}");
        let (st, v) = s
            .call(
                "PATCH",
                "/api/2.0/mlflow/model-versions/update",
                Some(json!({"name": "iris", "version": "2", "description": "better"})),
            )
            .await;
        assert_eq!(st, 200, "{v:#}");
        assert_eq!(v["model_version"]["description"], "better");
        let (st, _) = s
            .call(
                "DELETE",
                "/api/2.0/mlflow/registered-models/alias",
                Some(json!({"name": "iris", "alias": "champion"})),
            )
            .await;
        assert_eq!(st, 200);
        assert_error(
            &s.get("registered-models/alias?name=iris&alias=champion")
                .await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
        );
        assert_error(
            &s.get("model-versions/get?name=iris&version=x").await,
            400,
            "INVALID_PARAMETER_VALUE",
        );
        let (st, _) = s
            .call(
                "DELETE",
                "/api/2.0/mlflow/model-versions/delete",
                Some(json!({"name": "iris", "version": "1"})),
            )
            .await;
        assert_eq!(st, 200);
        assert_error(
            &s.get("model-versions/get?name=iris&version=1").await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
        );
        let (st, _) = s
            .call(
                "DELETE",
                "/api/2.0/mlflow/registered-models/delete",
                Some(json!({"name": "iris"})),
            )
            .await;
        assert_eq!(st, 200);
        assert_error(
            &s.get("registered-models/get?name=iris").await,
            404,
            "RESOURCE_DOES_NOT_EXIST",
        );
    }

    /// 32 clients logging 1000-metric batches at once: every point arrives.
    pub async fn concurrent_clients_lose_no_metric(s: &Server) {
        let run = new_run(s, "0", "busy").await;
        let mut tasks = Vec::new();
        for c in 0..32 {
            let http = s.http.clone();
            let url = format!("{}/api/2.0/mlflow/runs/log-batch", s.base);
            let run = run.clone();
            tasks.push(tokio::spawn(async move {
                for b in 0..3i64 {
                    let metrics: Vec<Value> = (0..1000i64)
                        .map(|i| json!({"key": format!("c{c}"), "value": i, "timestamp": b, "step": b * 1000 + i}))
                        .collect();
                    let resp = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(json!({"run_id": run, "metrics": metrics}).to_string())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status().as_u16(), 200, "{}", resp.text().await.unwrap());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for c in 0..32 {
            let h = s
                .store
                .metric_history(&run, &format!("c{c}"), None, None)
                .await
                .unwrap();
            assert_eq!(h.items.len(), 3000, "client {c}");
        }
    }
}

macro_rules! on_every_backend {
    ($($case:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let s = crate::Server::start(gantry_server::auth::Principal::local(), false).await.unwrap();
                    crate::cases::$case(&s).await;
                    s.finish().await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(s) = crate::Server::start(gantry_server::auth::Principal::local(), true).await else {
                        return;
                    };
                    crate::cases::$case(&s).await;
                    s.finish().await;
                }
            )+
        }
    };
}

on_every_backend!(
    tracking_round_trip,
    bad_requests_get_mlflow_errors_and_change_nothing,
    registry_models_versions_and_aliases,
    concurrent_clients_lose_no_metric,
);

#[tokio::test]
async fn viewers_read_but_cannot_write() {
    let viewer = Principal {
        name: "vic".into(),
        role: Role::Viewer,
        project: None,
    };
    let s = Server::start(viewer, false).await.unwrap();
    let (st, v) = s.get("experiments/get?experiment_id=0").await;
    assert_eq!(st, 200, "{v:#}");
    for (endpoint, body) in [
        ("experiments/create", json!({"name": "x"})),
        ("runs/create", json!({"experiment_id": "0"})),
        ("runs/log-batch", json!({"run_id": "r"})),
        ("registered-models/create", json!({"name": "m"})),
    ] {
        assert_error(&s.post(endpoint, body).await, 403, "PERMISSION_DENIED");
    }
    let resp = s
        .http
        .put(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/0/x.txt",
            s.base
        ))
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert!(!s.home.path().join("mlflow-artifacts/0/x.txt").exists());
    let (_, v) = s.post("experiments/search", json!({})).await;
    assert_eq!(v["experiments"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn artifact_proxy_round_trips_and_refuses_traversal() {
    let s = Server::start(Principal::local(), false).await.unwrap();
    let run = new_run(&s, "0", "arts").await;
    let base = format!("{}/api/2.0/mlflow-artifacts/artifacts", s.base);
    let root = s.home.path().join("mlflow-artifacts");
    for (path, data) in [
        (format!("0/{run}/artifacts/model.txt"), "weights"),
        (format!("0/{run}/artifacts/dir/a.txt"), "a"),
        (format!("0/{run}/artifacts/dir/sub/b.txt"), "bb"),
    ] {
        let resp = s
            .http
            .put(format!("{base}/{path}"))
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            200,
            "{}",
            resp.text().await.unwrap()
        );
    }
    let got = s
        .http
        .get(format!("{base}/0/{run}/artifacts/dir/sub/b.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.text().await.unwrap(), "bb");
    let (st, v) = s
        .call(
            "GET",
            &format!("/api/2.0/mlflow-artifacts/artifacts?path=0/{run}/artifacts/dir"),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v:#}");
    assert_eq!(
        v["files"],
        json!([{"path": "a.txt", "is_dir": false, "file_size": 1}, {"path": "sub", "is_dir": true}])
    );
    let (_, v) = s
        .get(&format!("artifacts/list?run_id={run}&path=dir"))
        .await;
    assert_eq!(
        v["root_uri"],
        format!("mlflow-artifacts:/0/{run}/artifacts")
    );
    assert_eq!(
        v["files"],
        json!([{"path": "dir/a.txt", "is_dir": false, "file_size": 1}, {"path": "dir/sub", "is_dir": true}])
    );
    let missing = s
        .http
        .get(format!("{base}/0/{run}/artifacts/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    // Traversal in every spelling is refused before the disk is touched.
    let outside = s.home.path().join("escaped.txt");
    for path in [
        "../escaped.txt",
        "0/../../escaped.txt",
        "%2e%2e/escaped.txt",
        "%2E%2E%2Fescaped.txt",
        "%252e%252e/escaped.txt",
        "..%5cescaped.txt",
        "%2Fetc%2Fescaped.txt",
        "/etc/escaped.txt",
        "a/%00/escaped.txt",
        "a/./escaped.txt",
    ] {
        let req = format!(
            "PUT /api/2.0/mlflow-artifacts/artifacts/{path} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\nevil"
        );
        let resp = s.raw(&req).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
        assert!(resp.contains("INVALID_PARAMETER_VALUE"), "{path}: {resp}");
        let get = format!(
            "GET /api/2.0/mlflow-artifacts/artifacts/{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let resp = s.raw(&get).await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
    }
    let resp = s
        .raw("GET /api/2.0/mlflow-artifacts/artifacts?path=..%2F.. HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(!outside.exists());
    assert!(!Path::new("/etc/escaped.txt").exists());
    assert!(!root.join("a").exists());
    // No temporary files are left behind.
    let leftovers: Vec<_> = walk(&root)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".upload-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

/// Set in the child process of `acknowledged_writes_survive_sigkill`: the store it serves.
const CHILD_ENV: &str = "GANTRY_TEST_MLFLOW_CHILD_STORE";

/// Not a test on its own: serves the MLflow API when started as the child of
/// `acknowledged_writes_survive_sigkill` (which runs it with `--ignored --exact`), printing its
/// address, until killed. Ignored, so a normal run lists it as such instead of a vacuous "ok".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the server half of acknowledged_writes_survive_sigkill, which starts it"]
async fn sigkill_child_server() {
    let url = std::env::var(CHILD_ENV).unwrap_or_else(|_| {
        panic!("{CHILD_ENV} is not set: acknowledged_writes_survive_sigkill runs this as its child")
    });
    let home = tempfile::tempdir().unwrap();
    let store = Store::connect(&url).await.unwrap();
    let artifacts = ArtifactStore::open_local(&home.path().join("artifacts")).unwrap();
    let config = ServerConfig::local("http://127.0.0.1", home.path().join("mlflow-artifacts"));
    let app = mlflow::router()
        .with_state(AppState::new(store, artifacts, config))
        .layer(Extension(Principal::local()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("LISTENING {}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

/// A server killed with SIGKILL in the middle of concurrent batches: after a restart, every
/// batch it acknowledged is there in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncBufReadExt;

    let home = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/gantry.db", home.path().display());
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "sigkill_child_server",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &url)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the child server exited before listening");
            // libtest may print "test name ... " on the same line first.
            if let Some((_, addr)) = line.split_once("LISTENING ") {
                break addr.trim().to_owned();
            }
        }
    };
    let addr = tokio::time::timeout(std::time::Duration::from_secs(60), listening)
        .await
        .expect("the child server did not listen within 60 s");
    let http = reqwest::Client::new();
    let base = format!("http://{addr}/api/2.0/mlflow");
    let resp = http
        .post(format!("{base}/runs/create"))
        .body(json!({"experiment_id": "0"}).to_string())
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let run = v["run"]["info"]["run_id"].as_str().unwrap().to_owned();

    let acked: Arc<Mutex<Vec<(i64, i64)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8i64 {
        let (http, base, run, acked) = (http.clone(), base.clone(), run.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for b in 0..10_000i64 {
                let metrics: Vec<Value> = (0..100i64)
                    .map(|i| json!({"key": format!("w{w}"), "value": i, "timestamp": b, "step": b * 100 + i}))
                    .collect();
                let sent = http
                    .post(format!("{base}/runs/log-batch"))
                    .body(json!({"run_id": run, "metrics": metrics}).to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push((w, b)),
                    _ => return,
                }
            }
        }));
    }
    // Let writes pile up, then kill mid-stream.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.lock().unwrap().len() < 40 {
        assert!(
            writers.iter().any(|w| !w.is_finished()),
            "every writer stopped after {} acknowledged batches: the server refused or died",
            acked.lock().unwrap().len()
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} batches acknowledged in 60 s",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    for w in writers {
        w.await.unwrap();
    }

    let store = Store::connect(&url).await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40);
    for w in 0..8i64 {
        let history = store
            .metric_history(&run, &format!("w{w}"), None, None)
            .await
            .unwrap();
        let steps: std::collections::HashSet<i64> = history.items.iter().map(|m| m.step).collect();
        for (_, b) in acked.iter().filter(|(aw, _)| *aw == w) {
            for i in 0..100 {
                assert!(
                    steps.contains(&(b * 100 + i)),
                    "writer {w} batch {b} point {i} lost"
                );
            }
        }
    }
}

/// The MLflow client sends a JSON body with DELETE, and its HTTP library may send the body in a
/// packet after the headers. A handler that answered without reading it left the connection
/// unusable, so the client's next request on it (reused from its pool) got no answer: every
/// DELETE reads its body, and both requests of one connection are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_whose_body_arrives_late_keeps_its_connection() {
    let s = Server::start(Principal::local(), false).await.unwrap();
    let (_, e) = s.post("experiments/create", json!({"name": "late"})).await;
    let exp = e["experiment_id"].as_str().unwrap().to_owned();
    let (st, m) = s
        .post("logged-models", json!({"experiment_id": exp, "name": "m"}))
        .await;
    assert_eq!(st, 200, "{m:#}");
    let id = m["model"]["info"]["model_id"].as_str().unwrap().to_owned();
    let (st, v) = s
        .call(
            "PATCH",
            &format!("/api/2.0/mlflow/logged-models/{id}/tags"),
            Some(json!({"tags": [{"key": "k", "value": "v"}]})),
        )
        .await;
    assert_eq!(st, 200, "{v:#}");
    for path in [
        format!("/api/2.0/mlflow/logged-models/{id}/tags/k"),
        format!("/api/2.0/mlflow/logged-models/{id}"),
    ] {
        let body = json!({"model_id": id}).to_string();
        let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        conn.write_all(
            format!(
                "DELETE {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // The body, then a second request on the same connection.
        let _ = conn.write_all(body.as_bytes()).await;
        let _ = conn
            .write_all(
                format!(
                    "GET /api/2.0/mlflow/logged-models/{id}?allow_deleted=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await;
        let mut answer = String::new();
        let _ = conn.read_to_string(&mut answer).await;
        // (An answer's body has no newline before the next status line.)
        let statuses: Vec<&str> = answer
            .match_indices("HTTP/1.1 ")
            .map(|(i, _)| answer[i..].lines().next().unwrap_or_default())
            .collect();
        assert_eq!(
            statuses,
            ["HTTP/1.1 200 OK", "HTTP/1.1 200 OK"],
            "DELETE {path}: {answer}"
        );
    }
    s.finish().await;
}
