//! A real server in-process: SQLite and the artifact store in a temp dir, the real runc
//! engine with a busybox image, listening on 127.0.0.1:0.

#![allow(dead_code)]

#[path = "../../../../testing/busybox.rs"]
mod busybox;

use gantry_artifacts::ArtifactStore;
use gantry_engine::{Engine, EngineConfig};
use gantry_image::ImageStore;
use gantry_kube::StepRuntime;
use gantry_runtime::{OciRuntime, OciRuntimeConfig};
use gantry_server::{AppState, ServerConfig};
use gantry_store::Store;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// SQLite in the test's home, or — when `GANTRY_TEST_SERVER_ON_POSTGRES` is set (scripts/test.sh
/// runs these suites a second time so) — a fresh database on `GANTRY_TEST_POSTGRES_URL`.
pub async fn database_url(root: &Path) -> String {
    if std::env::var_os("GANTRY_TEST_SERVER_ON_POSTGRES").is_none() {
        return format!("sqlite://{}/gantry.db", root.display());
    }
    let base = std::env::var("GANTRY_TEST_POSTGRES_URL")
        .expect("GANTRY_TEST_SERVER_ON_POSTGRES needs GANTRY_TEST_POSTGRES_URL");
    let name = format!("gantry_srv_{}", gantry_store::new_id(""));
    let (head, query) = base.split_once('?').unwrap_or((base.as_str(), ""));
    let authority = head.find("://").map_or(0, |i| i + 3);
    let prefix = match head[authority..].find('/') {
        Some(slash) => &head[..authority + slash],
        None => head,
    };
    let url = if query.is_empty() {
        format!("{prefix}/{name}")
    } else {
        format!("{prefix}/{name}?{query}")
    };
    sqlx::any::install_default_drivers();
    <sqlx::Any as sqlx::migrate::MigrateDatabase>::create_database(&url)
        .await
        .unwrap_or_else(|e| panic!("creating PostgreSQL database {name}: {e}"));
    url
}

pub struct TestServer {
    pub base: String,
    pub db_url: String,
    pub home: tempfile::TempDir,
    pub state: AppState,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

pub struct Options {
    pub auth: bool,
    pub max_body_bytes: usize,
    /// `--data-root`s (none by default, like `gantry server`).
    pub data_roots: Vec<gantry_engine::DataRoot>,
    /// `--allow-fetch` entries for URL inputs and webhooks.
    pub allow_fetch: Vec<&'static str>,
    /// Uploads, network, GPUs (its `fetch` is replaced by `allow_fetch`).
    pub remote: gantry_server::RemotePolicy,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auth: false,
            max_body_bytes: 64 << 10,
            data_roots: Vec::new(),
            allow_fetch: Vec::new(),
            remote: gantry_server::RemotePolicy::default(),
        }
    }
}

impl TestServer {
    pub async fn start(opts: Options) -> TestServer {
        let home = tempfile::tempdir().unwrap();
        let root = home.path();
        let db_url = database_url(root).await;
        let store = Store::connect(&db_url).await.unwrap();
        let artifacts = ArtifactStore::open_local(&root.join("artifacts")).unwrap();
        let images = ImageStore::open(&root.join("images")).unwrap();
        images.import(busybox::tar(), Some("busybox:1")).unwrap();
        let runtime = StepRuntime::Oci(
            OciRuntime::new(OciRuntimeConfig {
                binary: PathBuf::from("runc"),
                state_dir: root.join("runtime/state"),
                bundles_dir: root.join("runtime/bundles"),
                cgroup_parent: "gantry".into(),
            })
            .unwrap(),
        );
        let mut cfg = EngineConfig::new(root.join("work"));
        cfg.retry_base = Duration::from_millis(50);
        // What `gantry server` sets: paths only below data roots, read as nobody; fetches
        // refused on the server's own network unless allowed.
        let fetch = gantry_net::FetchPolicy::guarded(
            opts.allow_fetch
                .iter()
                .map(|a| gantry_net::FetchPolicy::parse_allow(a).unwrap())
                .collect(),
        );
        cfg.inputs = gantry_engine::InputPolicy {
            paths: gantry_engine::PathAccess::Roots {
                roots: opts
                    .data_roots
                    .iter()
                    .map(|r| r.clone().resolve().unwrap())
                    .collect(),
                read_as: Some((65534, 65534)),
            },
            fetch: fetch.clone(),
        };
        let engine = Engine::new(store.clone(), artifacts.clone(), images, runtime, cfg);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let config = ServerConfig {
            auth: opts.auth,
            max_body_bytes: opts.max_body_bytes,
            public_url: base.clone(),
            mlflow_artifacts_dir: root.join("mlflow-artifacts"),
            remote: gantry_server::RemotePolicy {
                fetch,
                ..opts.remote
            },
            prices: gantry_alloc::Prices::default(),
        };
        let state = AppState::new(store, artifacts, config).with_engine(engine);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(gantry_server::serve(state.clone(), listener, async {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            db_url,
            home,
            state,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
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
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// Submits YAML; returns the run id (panics unless 201).
    pub async fn submit(&self, yaml: &str, token: Option<&str>) -> String {
        let body = serde_json::json!({"spec_yaml": yaml}).to_string();
        let (status, v) = self.post("/api/v1/runs", token, &body).await;
        assert_eq!(status, 201, "{v:#}");
        v["run_id"].as_str().unwrap().to_string()
    }

    /// Polls the run until `pred` holds (60 s at most); returns the last document.
    pub async fn wait_run(
        &self,
        id: &str,
        token: Option<&str>,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, v) = self.get(&format!("/api/v1/runs/{id}"), token).await;
            assert_eq!(status, 200, "{v:#}");
            if pred(&v) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting on run {id}: {v:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_terminal(&self, id: &str, token: Option<&str>) -> Value {
        self.wait_run(id, token, |v| {
            !matches!(v["status"].as_str(), Some("running" | "queued"))
        })
        .await
    }

    /// Triggers graceful shutdown and waits for the server to return.
    pub async fn shutdown(&mut self) -> Duration {
        let started = std::time::Instant::now();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        started.elapsed()
    }

    /// An SSE response body read to its end.
    pub async fn sse(&self, path: &str, token: Option<&str>) -> (u16, String, String) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = tokio::time::timeout(Duration::from_secs(60), req.send())
            .await
            .unwrap()
            .unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = tokio::time::timeout(Duration::from_secs(60), resp.text())
            .await
            .unwrap()
            .unwrap();
        (status, ctype, body)
    }
}

/// The `data:` payloads of the SSE events named `event`.
pub fn sse_events(body: &str, event: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter(|frame| {
            frame
                .lines()
                .any(|l| l == format!("event: {event}") || l == format!("event:{event}"))
        })
        .map(|frame| {
            let data: String = frame
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            serde_json::from_str(&data).unwrap()
        })
        .collect()
}
