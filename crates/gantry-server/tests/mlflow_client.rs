//! MLflow's real Python client (`tests/mlflow/client_test.py`, and MLflow 3's logged models in
//! `tests/mlflow/logged_models_test.py`) against the MLflow API served in-process on
//! 127.0.0.1:0, on SQLite and (with `GANTRY_TEST_POSTGRES_URL`) PostgreSQL.
//!
//! `GANTRY_TEST_MLFLOW_PYTHON` names a Python with `mlflow` installed (scripts/test.sh makes
//! one); unset, the test is skipped (a failure under `GANTRY_TEST_REQUIRE_ALL`, see
//! `testing/skip.rs`); set but unusable, it fails.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use axum::Extension;
use gantry_artifacts::ArtifactStore;
use gantry_server::auth::Principal;
use gantry_server::{AppState, ServerConfig, mlflow};
use gantry_store::{SearchQuery, Store};
use serde_json::Value;
use sqlx::migrate::MigrateDatabase;

#[path = "../../../testing/skip.rs"]
mod skip;

const PYTHON_ENV: &str = "GANTRY_TEST_MLFLOW_PYTHON";
const POSTGRES_ENV: &str = "GANTRY_TEST_POSTGRES_URL";

fn mlflow_python() -> Option<String> {
    let python = skip::unless_env(
        PYTHON_ENV,
        "a python with mlflow installed (scripts/test.sh makes .venv-test) to run the \
         real-client test",
    )?;
    let out = std::process::Command::new(&python)
        .args(["-c", "import mlflow; print(mlflow.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("{PYTHON_ENV}={python} is set but cannot be run: {e}"));
    assert!(
        out.status.success(),
        "{PYTHON_ENV}={python} is set but `import mlflow` fails: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(python)
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

/// The MLflow API on 127.0.0.1:0 over the store at `url`; artifacts under `home`.
async fn serve(url: &str, home: &Path) -> (Store, String, tokio::task::JoinHandle<()>) {
    let store = Store::connect(url).await.unwrap();
    let artifacts = ArtifactStore::open_local(&home.join("artifacts")).unwrap();
    let config = ServerConfig::local("http://127.0.0.1", home.join("mlflow-artifacts"));
    let state = AppState::new(store.clone(), artifacts, config);
    let app = mlflow::router()
        .with_state(state)
        .layer(Extension(Principal::local()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (store, format!("http://{addr}"), server)
}

/// Runs `tests/mlflow/<script>` against the server at `uri`; its last line of output (JSON).
async fn run_script(python: &str, script: &str, uri: &str, home: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mlflow")
        .join(script);
    let child = tokio::process::Command::new(python)
        .arg(&script)
        .current_dir(home)
        .env("MLFLOW_TRACKING_URI", uri)
        // Fail fast instead of retrying, and never reach outside the machine.
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .env("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "1")
        .env("HOME", home)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), child)
        .await
        .expect("the mlflow client script ran for over 5 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the mlflow client script {} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        script.display(),
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line of the script is not JSON ({e}): {stdout}"))
}

async fn run_client(python: &str, url: &str, home: &Path) {
    let (store, uri, server) = serve(url, home).await;
    let ids = run_script(python, "client_test.py", &uri, home).await;

    // What the client logged is in the store.
    let exp = ids["experiment_id"].as_str().unwrap();
    assert_eq!(store.get_experiment(exp).await.unwrap().name, "client-test");
    let runs = store
        .search_tracking_runs(&SearchQuery {
            experiment_ids: vec![exp.to_owned()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.items.len(), 5);
    let first = store
        .get_tracking_run(ids["runs"][0].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(first.info.status, "FINISHED");
    assert!(
        first
            .params
            .iter()
            .any(|p| p.key == "lr" && p.value == "0.1")
    );
    let acc = first.metrics.iter().find(|m| m.key == "acc").unwrap();
    assert_eq!((acc.value, acc.step), (0.9, 2));
    let batch = ids["batch_run"].as_str().unwrap();
    let history = store
        .metric_history(batch, "series", None, None)
        .await
        .unwrap();
    assert_eq!(history.items.len(), 990);
    let champion = store
        .registered_model_version_by_alias("iris-model", "champion")
        .await
        .unwrap();
    assert_eq!(champion.version, 1);
    let model_file = home.join(format!(
        "mlflow-artifacts/{exp}/{}/artifacts/model.txt",
        first.info.run_id
    ));
    assert_eq!(std::fs::read_to_string(model_file).unwrap(), "weights v1");
    server.abort();
}

/// `logged_models_test.py`: a model logged in a run, found, tagged, finalized and deleted by
/// MLflow 3's client; then the store is checked directly.
async fn logged_models(python: &str, url: &str, home: &Path) {
    let (store, uri, server) = serve(url, home).await;
    let ids = run_script(python, "logged_models_test.py", &uri, home).await;
    let exp = ids["experiment_id"].as_str().unwrap();
    let model_id = ids["model_id"].as_str().unwrap();
    let m = store.get_logged_model(model_id, false).await.unwrap();
    assert_eq!(m.status, "READY");
    assert_eq!(m.source_run_id.as_deref(), ids["run_id"].as_str());
    assert_eq!(m.experiment_id, exp);
    // Its files are where its artifact location says, below its experiment's folder.
    let mlmodel = home.join(format!(
        "mlflow-artifacts/{exp}/models/{model_id}/artifacts/MLmodel"
    ));
    let text = std::fs::read_to_string(&mlmodel).unwrap();
    assert!(text.contains(model_id), "{text}");
    let deleted = ids["deleted_model_id"].as_str().unwrap();
    assert!(store.get_logged_model(deleted, false).await.is_err());
    assert_eq!(
        store
            .get_logged_model(deleted, true)
            .await
            .unwrap()
            .lifecycle_stage,
        "deleted"
    );
    let outputs = store
        .run_outputs(ids["run_id"].as_str().unwrap())
        .await
        .unwrap();
    assert!(
        outputs
            .iter()
            .any(|o| o.model_id == model_id && o.step == 0)
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_models_against_sqlite() {
    let Some(python) = mlflow_python() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/gantry.db", home.path().display());
    logged_models(&python, &url, home.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_models_against_postgres() {
    let Some(python) = mlflow_python() else {
        return;
    };
    let Some(base) = skip::unless_env(
        POSTGRES_ENV,
        "a PostgreSQL URL to run the logged-models client test against PostgreSQL",
    ) else {
        return;
    };
    sqlx::any::install_default_drivers();
    let url = with_database(&base, &format!("gantry_ml_{}", gantry_store::new_id("")));
    sqlx::Any::create_database(&url).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    logged_models(&python, &url, home.path()).await;
    sqlx::Any::force_drop_database(&url).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_client_against_sqlite() {
    let Some(python) = mlflow_python() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/gantry.db", home.path().display());
    run_client(&python, &url, home.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_client_against_postgres() {
    let Some(python) = mlflow_python() else {
        return;
    };
    let Some(base) = skip::unless_env(
        POSTGRES_ENV,
        "a PostgreSQL URL to run the mlflow client test against PostgreSQL",
    ) else {
        return;
    };
    sqlx::any::install_default_drivers();
    let url = with_database(&base, &format!("gantry_mc_{}", gantry_store::new_id("")));
    sqlx::Any::create_database(&url).await.unwrap();
    let home = tempfile::tempdir().unwrap();
    run_client(&python, &url, home.path()).await;
    sqlx::Any::force_drop_database(&url).await.unwrap();
}
