//! Project-scoped tokens on the MLflow API: the whole server (auth middleware included, no
//! engine) on 127.0.0.1:0 with SQLite in a temp dir. An admin sets up two projects, "alpha"
//! and "beta" (an experiment, a run with a metric, a registered model with a version and an
//! uploaded artifact each); a token scoped to alpha then works on alpha's things and finds
//! beta's missing, and cannot change them.

#![allow(clippy::unwrap_used)]

use gantry_artifacts::ArtifactStore;
use gantry_server::auth::{Role, issue_token};
use gantry_server::mlflow::scope::PROJECT_TAG;
use gantry_server::{AppState, ServerConfig};
use gantry_store::{NewModelVersion, RunRecord, RunStatus, Store};
use reqwest::Method;
use serde_json::{Value, json};

const MISSING_EXPERIMENT: &str = "987654";
const MISSING_RUN: &str = "0123456789abcdef0123456789abcdef";

struct Server {
    base: String,
    home: tempfile::TempDir,
    store: Store,
    http: reqwest::Client,
}

impl Server {
    async fn start() -> Server {
        let home = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}/gantry.db", home.path().display()))
            .await
            .unwrap();
        let artifacts = ArtifactStore::open_local(&home.path().join("artifacts")).unwrap();
        let mut config =
            ServerConfig::local("http://127.0.0.1", home.path().join("mlflow-artifacts"));
        config.auth = true;
        let state = AppState::new(store.clone(), artifacts, config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = gantry_server::router(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            base,
            home,
            store,
            http: reqwest::Client::new(),
        }
    }

    async fn token(&self, name: &str, role: Role, project: Option<&str>) -> String {
        issue_token(&self.store, name, role, project)
            .await
            .unwrap()
            .secret
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Vec<u8>) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    }

    async fn json(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, bytes) = self
            .call(
                token,
                method,
                path,
                body.map(|b| b.to_string().into_bytes()),
            )
            .await;
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v)
    }

    async fn post(&self, token: &str, endpoint: &str, body: Value) -> (u16, Value) {
        self.json(
            token,
            Method::POST,
            &format!("/api/2.0/mlflow/{endpoint}"),
            Some(body),
        )
        .await
    }

    async fn get(&self, token: &str, endpoint_and_query: &str) -> (u16, Value) {
        self.json(
            token,
            Method::GET,
            &format!("/api/2.0/mlflow/{endpoint_and_query}"),
            None,
        )
        .await
    }

    async fn upload(&self, token: &str, path: &str, bytes: &[u8]) -> (u16, Vec<u8>) {
        self.call(
            token,
            Method::PUT,
            &format!("/api/2.0/mlflow-artifacts/artifacts/{path}"),
            Some(bytes.to_vec()),
        )
        .await
    }

    async fn download(&self, token: &str, path: &str) -> (u16, Vec<u8>) {
        self.call(
            token,
            Method::GET,
            &format!("/api/2.0/mlflow-artifacts/artifacts/{path}"),
            None,
        )
        .await
    }

    async fn delete(&self, token: &str, path: &str) -> (u16, Vec<u8>) {
        self.call(
            token,
            Method::DELETE,
            &format!("/api/2.0/mlflow-artifacts/artifacts/{path}"),
            None,
        )
        .await
    }

    async fn list(&self, token: &str, path: &str) -> Vec<String> {
        let (status, v) = self
            .json(
                token,
                Method::GET,
                &format!("/api/2.0/mlflow-artifacts/artifacts?path={path}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{v:#}");
        names(&v["files"], "path")
    }
}

/// The values of `field` in a JSON array (or nothing for a missing one).
fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i[field].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Both projects, set up by an admin (models by each project's editor, so they carry their
/// project's tag).
struct World {
    s: Server,
    admin: String,
    alpha: String,
    beta: String,
    alpha_viewer: String,
    alpha_exp: String,
    beta_exp: String,
    alpha_run: String,
    beta_run: String,
}

fn artifact(exp: &str, run: &str) -> String {
    format!("{exp}/{run}/artifacts/model/weights.bin")
}

impl World {
    async fn new() -> World {
        let s = Server::start().await;
        let admin = s.token("admin", Role::Admin, None).await;
        let alpha = s.token("alpha-editor", Role::Editor, Some("alpha")).await;
        let beta = s.token("beta-editor", Role::Editor, Some("beta")).await;
        let alpha_viewer = s.token("alpha-viewer", Role::Viewer, Some("alpha")).await;
        let mut exps = Vec::new();
        let mut runs = Vec::new();
        for (project, editor) in [("alpha", &alpha), ("beta", &beta)] {
            let (status, v) = s
                .post(&admin, "experiments/create", json!({"name": project}))
                .await;
            assert_eq!(status, 200, "{v:#}");
            let exp = v["experiment_id"].as_str().unwrap().to_owned();
            let (status, v) = s
                .post(
                    &admin,
                    "runs/create",
                    json!({"experiment_id": exp, "run_name": project}),
                )
                .await;
            assert_eq!(status, 200, "{v:#}");
            let run = v["run"]["info"]["run_id"].as_str().unwrap().to_owned();
            let metric =
                json!({"run_id": run, "key": "loss", "value": 1.0, "timestamp": 1, "step": 0});
            assert_eq!(s.post(&admin, "runs/log-metric", metric).await.0, 200);
            let model = format!("{project}-model");
            let (status, v) = s
                .post(editor, "registered-models/create", json!({"name": model}))
                .await;
            assert_eq!(status, 200, "{v:#}");
            let version = json!({
                "name": model,
                "source": format!("mlflow-artifacts:/{exp}/{run}/artifacts/model"),
                "run_id": run,
            });
            let (status, v) = s.post(editor, "model-versions/create", version).await;
            assert_eq!(status, 200, "{v:#}");
            let alias = json!({"name": model, "alias": "champion", "version": "1"});
            assert_eq!(
                s.post(editor, "registered-models/alias", alias).await.0,
                200
            );
            let (status, _) = s
                .upload(
                    &admin,
                    &artifact(&exp, &run),
                    format!("{project}-bytes").as_bytes(),
                )
                .await;
            assert_eq!(status, 200);
            exps.push(exp);
            runs.push(run);
        }
        World {
            s,
            admin,
            alpha,
            beta,
            alpha_viewer,
            alpha_exp: exps[0].clone(),
            beta_exp: exps[1].clone(),
            alpha_run: runs[0].clone(),
            beta_run: runs[1].clone(),
        }
    }

    /// Beta's metric history as the admin sees it.
    async fn beta_loss(&self) -> Value {
        let (status, v) = self
            .s
            .get(
                &self.admin,
                &format!(
                    "metrics/get-history?run_id={}&metric_key=loss",
                    self.beta_run
                ),
            )
            .await;
        assert_eq!(status, 200, "{v:#}");
        v["metrics"].clone()
    }
}

/// `hidden` is exactly the answer to a missing thing: `missing` (asked for `missing_id`) with
/// the hidden thing's id in its place.
#[track_caller]
fn assert_as_missing(hidden: &(u16, Value), missing: &(u16, Value), missing_id: &str, id: &str) {
    assert_eq!(missing.0, 404, "{:#}", missing.1);
    assert_eq!(missing.1["error_code"], "RESOURCE_DOES_NOT_EXIST");
    let expected = missing.1["message"]
        .as_str()
        .unwrap()
        .replace(missing_id, id);
    assert_eq!(
        (
            hidden.0,
            hidden.1["error_code"].as_str(),
            hidden.1["message"].as_str()
        ),
        (
            404,
            Some("RESOURCE_DOES_NOT_EXIST"),
            Some(expected.as_str())
        ),
        "{:#}",
        hidden.1
    );
}

#[track_caller]
fn assert_not_found(answer: &(u16, Value), what: &str) {
    assert_eq!(
        (answer.0, answer.1["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST")),
        "{what}: {:#}",
        answer.1
    );
}

#[track_caller]
fn assert_denied(answer: &(u16, Value), what: &str) {
    assert_eq!(
        (answer.0, answer.1["error_code"].as_str()),
        (403, Some("PERMISSION_DENIED")),
        "{what}: {:#}",
        answer.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_editor_works_on_its_own_experiments_runs_models_and_artifacts() {
    let w = World::new().await;
    let (s, t) = (&w.s, w.alpha.as_str());

    let (status, v) = s
        .get(t, &format!("experiments/get?experiment_id={}", w.alpha_exp))
        .await;
    assert_eq!(
        (status, v["experiment"]["name"].as_str()),
        (200, Some("alpha")),
        "{v:#}"
    );
    let (status, v) = s
        .get(t, "experiments/get-by-name?experiment_name=alpha")
        .await;
    assert_eq!(status, 200, "{v:#}");
    let tag = json!({"experiment_id": w.alpha_exp, "key": "owner", "value": "alpha team"});
    assert_eq!(
        s.post(t, "experiments/set-experiment-tag", tag).await.0,
        200
    );

    let (status, v) = s.get(t, &format!("runs/get?run_id={}", w.alpha_run)).await;
    assert_eq!(status, 200, "{v:#}");
    let metric =
        json!({"run_id": w.alpha_run, "key": "loss", "value": 0.5, "timestamp": 2, "step": 1});
    assert_eq!(s.post(t, "runs/log-metric", metric).await.0, 200);
    let (status, v) = s
        .get(
            t,
            &format!("metrics/get-history?run_id={}&metric_key=loss", w.alpha_run),
        )
        .await;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["metrics"].as_array().unwrap().len(), 2, "{v:#}");
    let (status, v) = s
        .post(
            t,
            "runs/update",
            json!({"run_id": w.alpha_run, "status": "FINISHED"}),
        )
        .await;
    assert_eq!(status, 200, "{v:#}");

    let (status, v) = s.get(t, "registered-models/get?name=alpha-model").await;
    assert_eq!(status, 200, "{v:#}");
    let tags = &v["registered_model"]["tags"];
    assert!(
        tags.as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == PROJECT_TAG && t["value"] == "alpha"),
        "a scoped editor's model carries its project: {v:#}"
    );
    let (status, v) = s
        .get(t, "model-versions/get?name=alpha-model&version=1")
        .await;
    assert_eq!(status, 200, "{v:#}");
    let tag = json!({"name": "alpha-model", "key": "stage", "value": "candidate"});
    assert_eq!(s.post(t, "registered-models/set-tag", tag).await.0, 200);

    let path = artifact(&w.alpha_exp, &w.alpha_run);
    assert_eq!(s.download(t, &path).await, (200, b"alpha-bytes".to_vec()));
    let extra = format!("{}/{}/artifacts/notes.txt", w.alpha_exp, w.alpha_run);
    assert_eq!(s.upload(t, &extra, b"notes").await.0, 200);
    assert_eq!(s.download(t, &extra).await, (200, b"notes".to_vec()));
    assert_eq!(s.delete(t, &extra).await.0, 200);
    assert_eq!(
        s.list(t, &format!("{}/{}/artifacts", w.alpha_exp, w.alpha_run))
            .await,
        vec!["model"]
    );
    let (status, v) = s
        .get(
            t,
            &format!("artifacts/list?run_id={}&path=model", w.alpha_run),
        )
        .await;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(names(&v["files"], "path"), vec!["model/weights.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_projects_experiments_answer_as_missing_and_stay_unchanged() {
    let w = World::new().await;
    let (s, t, beta) = (&w.s, w.alpha.as_str(), w.beta_exp.as_str());

    let by_id = |id: String| format!("experiments/get?experiment_id={id}");
    assert_as_missing(
        &s.get(t, &by_id(beta.to_owned())).await,
        &s.get(t, &by_id(MISSING_EXPERIMENT.to_owned())).await,
        MISSING_EXPERIMENT,
        beta,
    );
    assert_as_missing(
        &s.get(t, "experiments/get-by-name?experiment_name=beta")
            .await,
        &s.get(t, "experiments/get-by-name?experiment_name=nosuch")
            .await,
        "nosuch",
        "beta",
    );
    for (endpoint, body) in [
        (
            "experiments/update",
            json!({"experiment_id": beta, "new_name": "alpha/stolen"}),
        ),
        ("experiments/delete", json!({"experiment_id": beta})),
        ("experiments/restore", json!({"experiment_id": beta})),
        (
            "experiments/set-experiment-tag",
            json!({"experiment_id": beta, "key": "owner", "value": "alpha"}),
        ),
        ("runs/create", json!({"experiment_id": beta})),
    ] {
        assert_as_missing(
            &s.post(t, endpoint, body.clone()).await,
            &s.post(t, endpoint, {
                let mut b = body;
                b["experiment_id"] = json!(MISSING_EXPERIMENT);
                b
            })
            .await,
            MISSING_EXPERIMENT,
            beta,
        );
    }
    let (status, v) = s.get(&w.admin, &by_id(beta.to_owned())).await;
    assert_eq!(status, 200, "{v:#}");
    let e = &v["experiment"];
    assert_eq!(
        (e["name"].as_str(), e["lifecycle_stage"].as_str()),
        (Some("beta"), Some("active"))
    );
    assert_eq!(e["tags"], json!([]), "{v:#}");
    let (_, v) = s
        .post(&w.admin, "runs/search", json!({"experiment_ids": [beta]}))
        .await;
    assert_eq!(
        v["runs"].as_array().unwrap().len(),
        1,
        "no run was added to beta: {v:#}"
    );

    // Beta's own editor still works on it.
    let (status, v) = s.get(&w.beta, &by_id(beta.to_owned())).await;
    assert_eq!(status, 200, "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_projects_runs_answer_as_missing_and_their_metrics_stay_unchanged() {
    let w = World::new().await;
    let (s, t, run) = (&w.s, w.alpha.as_str(), w.beta_run.as_str());
    let before = w.beta_loss().await;

    assert_as_missing(
        &s.get(t, &format!("runs/get?run_id={run}")).await,
        &s.get(t, &format!("runs/get?run_id={MISSING_RUN}")).await,
        MISSING_RUN,
        run,
    );
    assert_as_missing(
        &s.get(
            t,
            &format!("metrics/get-history?run_id={run}&metric_key=loss"),
        )
        .await,
        &s.get(
            t,
            &format!("metrics/get-history?run_id={MISSING_RUN}&metric_key=loss"),
        )
        .await,
        MISSING_RUN,
        run,
    );
    assert_as_missing(
        &s.get(t, &format!("artifacts/list?run_id={run}")).await,
        &s.get(t, &format!("artifacts/list?run_id={MISSING_RUN}"))
            .await,
        MISSING_RUN,
        run,
    );
    let metric = json!({"key": "loss", "value": -1.0, "timestamp": 9, "step": 9});
    for (endpoint, extra) in [
        ("runs/log-metric", metric.clone()),
        ("runs/log-batch", json!({"metrics": [metric]})),
        ("runs/log-parameter", json!({"key": "lr", "value": "1"})),
        ("runs/set-tag", json!({"key": "owner", "value": "alpha"})),
        ("runs/delete-tag", json!({"key": "mlflow.runName"})),
        ("runs/update", json!({"status": "KILLED"})),
        ("runs/delete", json!({})),
        ("runs/restore", json!({})),
        ("runs/log-inputs", json!({})),
        ("runs/log-model", json!({"model_json": "{}"})),
    ] {
        let with = |id: &str| {
            let mut b = extra.clone();
            b["run_id"] = json!(id);
            b
        };
        assert_as_missing(
            &s.post(t, endpoint, with(run)).await,
            &s.post(t, endpoint, with(MISSING_RUN)).await,
            MISSING_RUN,
            run,
        );
    }
    assert_eq!(
        w.beta_loss().await,
        before,
        "beta's metric history is unchanged"
    );
    let (_, v) = s.get(&w.admin, &format!("runs/get?run_id={run}")).await;
    let info = &v["run"]["info"];
    assert_eq!(
        (info["status"].as_str(), info["lifecycle_stage"].as_str()),
        (Some("RUNNING"), Some("active")),
        "{v:#}"
    );
    assert_eq!(v["run"]["data"]["params"], json!([]), "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_projects_models_and_versions_answer_as_missing() {
    let w = World::new().await;
    let (s, t) = (&w.s, w.alpha.as_str());

    assert_as_missing(
        &s.get(t, "registered-models/get?name=beta-model").await,
        &s.get(t, "registered-models/get?name=nosuch").await,
        "nosuch",
        "beta-model",
    );
    for query in [
        "model-versions/get?name=beta-model&version=1",
        "model-versions/get-download-uri?name=beta-model&version=1",
        "registered-models/get-latest-versions?name=beta-model",
        "registered-models/alias?name=beta-model&alias=champion",
    ] {
        assert_not_found(&s.get(t, query).await, query);
    }
    for (endpoint, body) in [
        (
            "registered-models/update",
            json!({"name": "beta-model", "description": "alpha's now"}),
        ),
        (
            "registered-models/set-tag",
            json!({"name": "beta-model", "key": PROJECT_TAG, "value": "alpha"}),
        ),
        (
            "registered-models/delete-tag",
            json!({"name": "beta-model", "key": PROJECT_TAG}),
        ),
        (
            "registered-models/alias",
            json!({"name": "beta-model", "alias": "stolen", "version": "1"}),
        ),
        (
            "model-versions/create",
            json!({"name": "beta-model", "source": "s3://x/model"}),
        ),
        (
            "model-versions/update",
            json!({"name": "beta-model", "version": "1", "description": "x"}),
        ),
        (
            "model-versions/set-tag",
            json!({"name": "beta-model", "version": "1", "key": "k", "value": "v"}),
        ),
        (
            "model-versions/delete",
            json!({"name": "beta-model", "version": "1"}),
        ),
        ("registered-models/delete", json!({"name": "beta-model"})),
    ] {
        assert_not_found(&s.post(t, endpoint, body).await, endpoint);
    }
    // A version of alpha's model cannot name beta's run as its source.
    let stolen = json!({"name": "alpha-model", "source": "s3://x/model", "run_id": w.beta_run});
    assert_as_missing(
        &s.post(t, "model-versions/create", stolen).await,
        &s.post(
            t,
            "model-versions/create",
            json!({"name": "alpha-model", "source": "s3://x/model", "run_id": MISSING_RUN}),
        )
        .await,
        MISSING_RUN,
        &w.beta_run,
    );

    let (status, v) = s
        .get(&w.admin, "registered-models/get?name=beta-model")
        .await;
    assert_eq!(status, 200, "{v:#}");
    let m = &v["registered_model"];
    assert_eq!(
        (&m["description"], &m["aliases"]),
        (&json!(""), &json!([{"alias": "champion", "version": "1"}])),
        "{v:#}"
    );
    let tags = m["tags"].as_array().unwrap();
    assert_eq!(tags.len(), 1, "{v:#}");
    assert_eq!(
        (tags[0]["key"].as_str(), tags[0]["value"].as_str()),
        (Some(PROJECT_TAG), Some("beta"))
    );
    let (_, v) = s
        .get(
            &w.admin,
            "registered-models/get-latest-versions?name=beta-model",
        )
        .await;
    assert_eq!(v["model_versions"][0]["version"], "1", "{v:#}");
    assert_eq!(
        s.get(&w.beta, "registered-models/get?name=beta-model")
            .await
            .0,
        200
    );

    // Nor can alpha claim a model for beta, or move its own out of alpha.
    let claim = json!({"name": "gamma-model", "tags": [{"key": PROJECT_TAG, "value": "beta"}]});
    assert_denied(&s.post(t, "registered-models/create", claim).await, "claim");
    let tag = json!({"name": "alpha-model", "key": PROJECT_TAG, "value": "beta"});
    assert_denied(&s.post(t, "registered-models/set-tag", tag).await, "set");
    let tag = json!({"name": "alpha-model", "key": PROJECT_TAG});
    assert_denied(
        &s.post(t, "registered-models/delete-tag", tag).await,
        "delete",
    );
    assert_eq!(
        s.get(t, "registered-models/get?name=alpha-model").await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_projects_artifacts_cannot_be_read_written_or_deleted() {
    let w = World::new().await;
    let (s, t) = (&w.s, w.alpha.as_str());
    let path = artifact(&w.beta_exp, &w.beta_run);
    let on_disk = s.home.path().join("mlflow-artifacts").join(&path);

    // Listings: the root shows alpha's experiment only, beta's directories list as empty.
    assert_eq!(s.list(t, "").await, vec![w.alpha_exp.clone()]);
    assert!(s.list(t, &w.beta_exp).await.is_empty());
    assert!(
        s.list(t, &format!("{}/{}/artifacts/model", w.beta_exp, w.beta_run))
            .await
            .is_empty()
    );
    let mut all = vec![w.alpha_exp.clone(), w.beta_exp.clone()];
    all.sort();
    assert_eq!(s.list(&w.admin, "").await, all);

    // Beta's file: read, overwritten, deleted (it and its run's directory), each as missing.
    let (status, body) = s.download(t, &path).await;
    let missing = artifact(&w.alpha_exp, "nosuchrun");
    let (missing_status, missing_body) = s.download(t, &missing).await;
    assert_eq!((status, missing_status), (404, 404));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        String::from_utf8(missing_body)
            .unwrap()
            .replace(&missing, &path),
        "beta's file answers like a missing one"
    );
    let (status, body) = s.upload(t, &path, b"overwritten by alpha").await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, body) = s.delete(t, &path).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _) = s.delete(t, &format!("{}/{}", w.beta_exp, w.beta_run)).await;
    assert_eq!(status, 404);
    // A new file in beta's experiment, or one outside every experiment, is refused too.
    let planted = format!("{}/{}/artifacts/planted.txt", w.beta_exp, w.beta_run);
    assert_eq!(s.upload(t, &planted, b"x").await.0, 404);
    assert_eq!(s.upload(t, "loose.txt", b"x").await.0, 404);
    assert_eq!(
        s.upload(t, &format!("0{}/x.txt", w.alpha_exp), b"x")
            .await
            .0,
        404
    );

    assert_eq!(std::fs::read(&on_disk).ok(), Some(b"beta-bytes".to_vec()));
    assert_eq!(
        s.download(&w.admin, &path).await,
        (200, b"beta-bytes".to_vec())
    );
    assert_eq!(
        s.download(&w.beta, &path).await,
        (200, b"beta-bytes".to_vec())
    );
    assert!(
        !s.home
            .path()
            .join("mlflow-artifacts")
            .join(&planted)
            .exists()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_token_creates_only_experiments_named_after_its_project() {
    let w = World::new().await;
    let (s, t) = (&w.s, w.alpha.as_str());

    for name in ["beta", "zeta", "alphabet", "beta/alpha"] {
        let answer = s.post(t, "experiments/create", json!({"name": name})).await;
        assert_denied(&answer, name);
        let message = answer.1["message"].as_str().unwrap();
        assert!(message.contains("alpha or alpha/"), "{message}");
    }
    let (status, v) = s
        .post(t, "experiments/create", json!({"name": "alpha/tuning"}))
        .await;
    assert_eq!(status, 200, "{v:#}");
    let tuning = v["experiment_id"].as_str().unwrap().to_owned();
    let (status, v) = s
        .post(t, "runs/create", json!({"experiment_id": tuning}))
        .await;
    assert_eq!(status, 200, "{v:#}");
    // Renaming out of the project is creating elsewhere.
    let rename = json!({"experiment_id": tuning, "new_name": "beta/tuning"});
    assert_denied(&s.post(t, "experiments/update", rename).await, "rename");
    let rename = json!({"experiment_id": tuning, "new_name": "alpha/tuning-2"});
    assert_eq!(s.post(t, "experiments/update", rename).await.0, 200);

    let (status, v) = s
        .get(&w.admin, "experiments/get-by-name?experiment_name=zeta")
        .await;
    assert_eq!(status, 404, "{v:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_list_only_the_projects_things() {
    let w = World::new().await;
    let (s, t) = (&w.s, w.alpha.as_str());
    assert_eq!(
        s.post(t, "experiments/create", json!({"name": "alpha/tuning"}))
            .await
            .0,
        200
    );

    let (status, v) = s
        .post(t, "experiments/search", json!({"order_by": ["name ASC"]}))
        .await;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(
        names(&v["experiments"], "name"),
        vec!["alpha", "alpha/tuning"]
    );
    let (_, v) = s
        .post(
            &w.admin,
            "experiments/search",
            json!({"order_by": ["name ASC"]}),
        )
        .await;
    assert_eq!(
        names(&v["experiments"], "name"),
        vec!["Default", "alpha", "alpha/tuning", "beta"]
    );

    let both = json!({"experiment_ids": [w.alpha_exp, w.beta_exp]});
    let (status, v) = s.post(t, "runs/search", both.clone()).await;
    assert_eq!(status, 200, "{v:#}");
    let runs: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["info"]["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(runs, vec![w.alpha_run.as_str()]);
    let (_, v) = s
        .post(t, "runs/search", json!({"experiment_ids": [w.beta_exp]}))
        .await;
    assert!(
        v.get("runs")
            .is_none_or(|r| r.as_array().unwrap().is_empty()),
        "{v:#}"
    );
    let (_, v) = s.post(&w.admin, "runs/search", both).await;
    assert_eq!(v["runs"].as_array().unwrap().len(), 2, "{v:#}");

    let (status, v) = s.get(t, "registered-models/search").await;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(names(&v["registered_models"], "name"), vec!["alpha-model"]);
    let (status, v) = s.get(t, "model-versions/search").await;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(names(&v["model_versions"], "name"), vec!["alpha-model"]);
    let (_, v) = s.get(&w.admin, "registered-models/search").await;
    assert_eq!(
        names(&v["registered_models"], "name"),
        vec!["alpha-model", "beta-model"]
    );

    // Pages keep the store's tokens: walking them yields each of alpha's experiments once.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"max_results": 1, "order_by": ["name ASC"]});
        if let Some(t) = &token {
            body["page_token"] = json!(t);
        }
        let (status, v) = s.post(t, "experiments/search", body).await;
        assert_eq!(status, 200, "{v:#}");
        seen.extend(names(&v["experiments"], "name"));
        match v["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, vec!["alpha", "alpha/tuning"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_viewer_reads_but_cannot_write() {
    let w = World::new().await;
    let (s, t) = (&w.s, w.alpha_viewer.as_str());
    let (status, v) = s
        .get(t, &format!("experiments/get?experiment_id={}", w.alpha_exp))
        .await;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(
        s.get(t, &format!("runs/get?run_id={}", w.alpha_run))
            .await
            .0,
        200
    );
    assert_eq!(
        s.get(t, "registered-models/get?name=alpha-model").await.0,
        200
    );
    let path = artifact(&w.alpha_exp, &w.alpha_run);
    assert_eq!(s.download(t, &path).await, (200, b"alpha-bytes".to_vec()));
    // And it sees nothing of beta.
    assert_not_found(
        &s.get(t, "registered-models/get?name=beta-model").await,
        "model",
    );

    let metric =
        json!({"run_id": w.alpha_run, "key": "loss", "value": 0.1, "timestamp": 3, "step": 2});
    assert_denied(&s.post(t, "runs/log-metric", metric).await, "log-metric");
    assert_denied(
        &s.post(t, "experiments/create", json!({"name": "alpha/x"}))
            .await,
        "create",
    );
    assert_eq!(s.upload(t, &path, b"changed").await.0, 403);
    assert_eq!(s.delete(t, &path).await.0, 403);
    assert_eq!(s.download(t, &path).await, (200, b"alpha-bytes".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_registered_by_a_projects_pipeline_runs_are_that_projects() {
    let w = World::new().await;
    let s = &w.s;
    // What a `builtin/register` step of a pipeline run stores: a gantry run of the pipeline
    // (its project) and a version naming it, in a model without tags.
    for (pipeline, model) in [("alpha", "churn"), ("beta", "fraud")] {
        let run_id = gantry_store::new_id("r-");
        s.store
            .create_run(&RunRecord {
                id: run_id.clone(),
                pipeline: pipeline.into(),
                status: RunStatus::Succeeded,
                spec_file: "gantry.yaml".into(),
                spec_yaml: format!("name: {pipeline}\nsteps: []\n"),
                params_json: "{}".into(),
                images_json: "{}".into(),
                no_cache: false,
                rerun_of: None,
                created_at_ms: 1,
                started_at_ms: Some(1),
                finished_at_ms: Some(2),
                owner_pid: None,
                owner_host: None,
                error: None,
                submitted_by: None,
            })
            .await
            .unwrap();
        s.store
            .register_model_version(&NewModelVersion {
                model: model.into(),
                artifact_digest: format!("sha256:{model}"),
                artifact_kind: "file".into(),
                run_id: Some(run_id),
                step_run_id: Some(gantry_store::new_id("s-")),
                step: Some("register".into()),
                metrics_json: "{}".into(),
                data_digests_json: "[]".into(),
                params_json: "{}".into(),
                flavor: "builtin".into(),
                description: None,
                alias: None,
                now_ms: 3,
            })
            .await
            .unwrap();
    }
    let t = w.alpha.as_str();
    assert_eq!(s.get(t, "registered-models/get?name=churn").await.0, 200);
    assert_eq!(
        s.get(t, "model-versions/get?name=churn&version=1").await.0,
        200
    );
    assert_not_found(&s.get(t, "registered-models/get?name=fraud").await, "fraud");
    assert_not_found(
        &s.get(&w.beta, "registered-models/get?name=churn").await,
        "churn",
    );
    let (_, v) = s.get(t, "registered-models/search").await;
    assert_eq!(
        names(&v["registered_models"], "name"),
        vec!["alpha-model", "churn"]
    );
    let (_, v) = s.get(&w.beta, "model-versions/search").await;
    assert_eq!(
        names(&v["model_versions"], "name"),
        vec!["beta-model", "fraud"]
    );
}

/// MLflow 3's logged models follow their experiment: a project token reaches its own, finds
/// the other project's missing (reading, changing, linking metrics or outputs to them, or
/// creating into the other project), and a viewer only reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_models_belong_to_their_experiments_project() {
    let w = World::new().await;
    let s = &w.s;
    let lm = |id: &str| format!("/api/2.0/mlflow/logged-models/{id}");
    let mut models = Vec::new();
    for (exp, run) in [(&w.alpha_exp, &w.alpha_run), (&w.beta_exp, &w.beta_run)] {
        let body = json!({
            "experiment_id": exp,
            "name": "model",
            "source_run_id": run,
            "tags": [{"key": "team", "value": "ml"}],
        });
        let (status, v) = s.post(&w.admin, "logged-models", body).await;
        assert_eq!(status, 200, "{v:#}");
        assert_eq!(v["model"]["info"]["status"], "LOGGED_MODEL_PENDING");
        models.push(v["model"]["info"]["model_id"].as_str().unwrap().to_owned());
    }
    let (alpha_model, beta_model) = (models[0].as_str(), models[1].as_str());
    let missing_model = "m-0123456789abcdef0123456789abcdef";
    let t = w.alpha.as_str();

    // Its own: read, finalize, tag, params, outputs, linked metrics; under both prefixes.
    let (status, v) = s.json(t, Method::GET, &lm(alpha_model), None).await;
    assert_eq!(
        (status, v["model"]["info"]["model_id"].as_str()),
        (200, Some(alpha_model)),
        "{v:#}"
    );
    let ajax = format!("/ajax-api/2.0/mlflow/logged-models/{alpha_model}");
    assert_eq!(s.json(t, Method::GET, &ajax, None).await.0, 200);
    let ready = json!({"model_id": alpha_model, "status": "LOGGED_MODEL_READY"});
    let (status, v) = s
        .json(t, Method::PATCH, &lm(alpha_model), Some(ready))
        .await;
    assert_eq!(
        (status, v["model"]["info"]["status"].as_str()),
        (200, Some("LOGGED_MODEL_READY")),
        "{v:#}"
    );
    let tags = json!({"tags": [{"key": "stage", "value": "x"}]});
    let path = format!("{}/tags", lm(alpha_model));
    assert_eq!(
        s.json(t, Method::PATCH, &path, Some(tags.clone())).await.0,
        200
    );
    let outputs = json!({"run_id": w.alpha_run, "models": [{"model_id": alpha_model, "step": 0}]});
    assert_eq!(s.post(t, "runs/outputs", outputs).await.0, 200);
    let (status, v) = s.get(t, &format!("runs/get?run_id={}", w.alpha_run)).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["run"]["outputs"]["model_outputs"],
        json!([{"model_id": alpha_model, "step": 0}])
    );
    let metric = json!({"run_id": w.alpha_run, "key": "acc", "value": 0.5, "timestamp": 2,
                        "step": 1, "model_id": alpha_model});
    assert_eq!(s.post(t, "runs/log-metric", metric).await.0, 200);
    let (_, v) = s.json(t, Method::GET, &lm(alpha_model), None).await;
    assert_eq!(v["model"]["data"]["metrics"][0]["key"], "acc");
    assert_eq!(
        v["model"]["data"]["metrics"][0]["run_id"],
        w.alpha_run.as_str()
    );

    // The other project's: exactly as missing, for every endpoint.
    let hidden = s.json(t, Method::GET, &lm(beta_model), None).await;
    let missing = s.json(t, Method::GET, &lm(missing_model), None).await;
    assert_as_missing(&hidden, &missing, missing_model, beta_model);
    let ready = json!({"status": "LOGGED_MODEL_READY"});
    let beta_tag = format!("{}/tags/team", lm(beta_model));
    let beta_tags = format!("{}/tags", lm(beta_model));
    let beta_params = format!("{}/params", lm(beta_model));
    let params = json!({"params": [{"key": "p", "value": "1"}]});
    for (what, answer) in [
        (
            "finalize",
            s.json(t, Method::PATCH, &lm(beta_model), Some(ready)).await,
        ),
        (
            "delete",
            s.json(t, Method::DELETE, &lm(beta_model), None).await,
        ),
        (
            "set tags",
            s.json(t, Method::PATCH, &beta_tags, Some(tags)).await,
        ),
        (
            "delete tag",
            s.json(t, Method::DELETE, &beta_tag, None).await,
        ),
        (
            "params",
            s.json(t, Method::POST, &beta_params, Some(params)).await,
        ),
    ] {
        assert_not_found(&answer, what);
    }
    let outputs = json!({"run_id": w.alpha_run, "models": [{"model_id": beta_model}]});
    assert_not_found(&s.post(t, "runs/outputs", outputs).await, "outputs");
    let metric = json!({"run_id": w.alpha_run, "key": "leak", "value": 1.0, "timestamp": 3,
                        "model_id": beta_model});
    assert_not_found(&s.post(t, "runs/log-metric", metric).await, "linked metric");
    let (_, v) = s.get(t, &format!("runs/get?run_id={}", w.alpha_run)).await;
    let keys = names(&v["run"]["data"]["metrics"], "key");
    assert!(!keys.contains(&"leak".to_owned()), "{keys:?}");
    let into_beta = json!({"experiment_id": w.beta_exp, "name": "x"});
    assert_not_found(
        &s.post(t, "logged-models", into_beta).await,
        "create in beta",
    );
    let from_beta_run =
        json!({"experiment_id": w.alpha_exp, "name": "x", "source_run_id": w.beta_run});
    assert_not_found(
        &s.post(t, "logged-models", from_beta_run).await,
        "create from beta's run",
    );
    let search = json!({"experiment_ids": [w.alpha_exp, w.beta_exp]});
    let (status, v) = s.post(t, "logged-models/search", search.clone()).await;
    assert_eq!(status, 200, "{v:#}");
    let found: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["info"]["model_id"].as_str().unwrap())
        .collect();
    assert_eq!(found, [alpha_model]);
    // The admin sees both, and beta's is as it was.
    let (_, v) = s.post(&w.admin, "logged-models/search", search).await;
    assert_eq!(v["models"].as_array().unwrap().len(), 2);
    let (_, v) = s.json(&w.admin, Method::GET, &lm(beta_model), None).await;
    let info = &v["model"]["info"];
    assert_eq!(info["status"], "LOGGED_MODEL_PENDING");
    assert_eq!(info["tags"], json!([{"key": "team", "value": "ml"}]));
    assert_eq!(v["model"]["data"]["metrics"], json!([]));

    // A viewer of alpha reads alpha's model and changes nothing.
    let viewer = w.alpha_viewer.as_str();
    assert_eq!(
        s.json(viewer, Method::GET, &lm(alpha_model), None).await.0,
        200
    );
    let alpha_tags = format!("{}/tags", lm(alpha_model));
    let alpha_tag = format!("{}/tags/stage", lm(alpha_model));
    let create = json!({"experiment_id": w.alpha_exp, "name": "y"});
    let ready = json!({"status": "LOGGED_MODEL_UPLOAD_FAILED"});
    let tags = json!({"tags": [{"key": "k", "value": "v"}]});
    for (what, answer) in [
        ("create", s.post(viewer, "logged-models", create).await),
        (
            "finalize",
            s.json(viewer, Method::PATCH, &lm(alpha_model), Some(ready))
                .await,
        ),
        (
            "set tags",
            s.json(viewer, Method::PATCH, &alpha_tags, Some(tags)).await,
        ),
        (
            "delete tag",
            s.json(viewer, Method::DELETE, &alpha_tag, None).await,
        ),
        (
            "delete",
            s.json(viewer, Method::DELETE, &lm(alpha_model), None).await,
        ),
    ] {
        assert_denied(&answer, what);
    }
    let (_, v) = s.json(t, Method::GET, &lm(alpha_model), None).await;
    assert_eq!(v["model"]["info"]["status"], "LOGGED_MODEL_READY");
    let stage: Vec<String> = names(&v["model"]["info"]["tags"], "key");
    assert!(stage.contains(&"stage".to_owned()), "{stage:?}");
}
