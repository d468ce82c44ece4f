//! Exported workflows (Argo, KFP) report their steps to the server, which records their runs
//! with lineage and metrics and answers their cache lookups, without ever letting a report
//! claim what is not stored or feed Gantry's own runs. Over HTTP against a real server with
//! `--auth` (SQLite, or PostgreSQL when the suite runs on it).

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use gantry_kube::exported::{ExportedStatus, ExportedStep, run_id};
use gantry_server::auth::{Role, issue_token};
use gantry_store::RunStatus;
use serde_json::{Value, json};
use support::{Options, TestServer};

async fn token(s: &TestServer, name: &str, role: Role, project: Option<&str>) -> String {
    issue_token(&s.state.store, name, role, project)
        .await
        .unwrap()
        .secret
}

async fn post(s: &TestServer, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let resp = s
        .http
        .post(s.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Stores `content` in the server's artifact store and returns its digest.
async fn stored(s: &TestServer, name: &str, content: &str) -> String {
    let path = s.home.path().join(name);
    std::fs::write(&path, content).unwrap();
    s.state.artifacts.put_path(&path).await.unwrap().digest
}

/// A page of the web UI, as a browser gets it after logging in with `token`.
async fn ui_page(s: &TestServer, token: &str, path: &str) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = browser
        .post(s.url("/login"))
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&next=%2F"))
        .send()
        .await
        .unwrap();
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("gantry_session="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no session: {login:?}"))
        .to_string();
    let page = browser
        .get(s.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    page.text().await.unwrap()
}

/// A real server with `--auth`.
async fn server() -> TestServer {
    TestServer::start(Options {
        auth: true,
        ..Options::default()
    })
    .await
}

fn key(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn step(run: &str, name: &str, seq: u32, status: ExportedStatus) -> ExportedStep {
    ExportedStep {
        orchestrator: "argo".into(),
        run: run.into(),
        run_name: format!("iris-{run}"),
        pipeline: "iris".into(),
        step: name.into(),
        seq,
        steps: 2,
        retries: 0,
        status,
        exit_code: Some(if status == ExportedStatus::Failed {
            3
        } else {
            0
        }),
        reason: (status == ExportedStatus::Failed).then(|| "exit code 3".into()),
        cache_key: None,
        cached_from: None,
        image_digest: Some(key('e')),
        started_at_ms: 1_000,
        finished_at_ms: 2_000,
        cpu_millis: 500,
        memory_bytes: 256 << 20,
        gpu: 0,
        effect: None,
        step_run: None,
        peak_memory_bytes: 10 << 20,
        cpu_micros: 400_000,
        wall_ms: 1_000,
        inputs: BTreeMap::new(),
        outputs: BTreeMap::new(),
        metrics: None,
        params: json!({"lr": 0.1}),
    }
}

fn body(r: &ExportedStep) -> Value {
    serde_json::to_value(r).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_run_is_recorded_from_its_steps_reports_and_shares_the_cache() {
    let s = server().await;
    let wf = token(&s, "argo-iris", Role::Editor, Some("iris")).await;
    let data = stored(&s, "data.csv", "a,b\n1,2\n").await;
    let model = stored(&s, "model.bin", "weights").await;
    let metrics = stored(
        &s,
        "metrics.json",
        r#"{"accuracy": 0.93, "loss": {"train": 0.2}}"#,
    )
    .await;

    // Step 1 of 2 (prepare) succeeds: the run exists and is running.
    let mut prepare = step("uid-1", "prepare", 0, ExportedStatus::Succeeded);
    prepare.outputs.insert("data".into(), data.clone());
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&prepare)).await;
    assert_eq!(code, 200, "{a}");
    let run = run_id("argo", "uid-1");
    assert_eq!(a["run_id"], json!(run));
    assert_eq!(a["attempt"], json!(1));
    assert_eq!(a["run_status"], json!("running"));

    // Step 2 (train) reads it and succeeds with a model and metrics: the run succeeded.
    let mut train = step("uid-1", "train", 1, ExportedStatus::Succeeded);
    train.inputs.insert("data".into(), data.clone());
    train.outputs.insert("model".into(), model.clone());
    train.metrics = Some(metrics.clone());
    train.cache_key = Some(key('f'));
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&train)).await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["run_status"], json!("succeeded"));
    let train_run = a["step_run_id"].as_str().unwrap().to_string();

    // The run reads like any other: steps, usage, lineage, metrics, who reported it.
    let rec = s.state.store.get_run(&run).await.unwrap();
    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(rec.pipeline, "iris");
    assert_eq!(rec.spec_file, "argo:iris-uid-1");
    assert_eq!(rec.submitted_by.as_deref(), Some("argo-iris"));
    assert_eq!(rec.finished_at_ms, Some(2_000));
    let steps = s.state.store.list_step_runs(&run).await.unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1].requested_cpu_millis, 500);
    assert_eq!(steps[1].peak_memory_bytes, Some(10 << 20));
    let lineage = s.state.store.lineage_for_run(&run).await.unwrap();
    let edges: Vec<(&str, &str, &str)> = lineage
        .iter()
        .map(|l| (l.step.as_str(), l.direction.as_str(), l.digest.as_str()))
        .collect();
    assert!(
        edges.contains(&("prepare", "output", data.as_str())),
        "{edges:?}"
    );
    assert!(
        edges.contains(&("train", "input", data.as_str())),
        "{edges:?}"
    );
    assert!(
        edges.contains(&("train", "output", model.as_str())),
        "{edges:?}"
    );
    let (code, shown) = s.get(&format!("/api/v1/runs/{run}"), Some(&wf)).await;
    assert_eq!(code, 200, "{shown}");
    assert_eq!(shown["status"], json!("succeeded"));
    let mut recorded = s.state.store.metrics_of_step_run(&train_run).await.unwrap();
    recorded.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = recorded.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(names, ["accuracy", "loss.train"]);

    // Another run of the workflow asks the cache: the train step's outputs come back.
    let query = json!({"pipeline": "iris", "key": key('f'), "outputs": ["model"]});
    let (code, a) = post(&s, &wf, "/api/v1/exported/cache", &query).await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["hit"]["step_run"], json!(train_run));
    assert_eq!(a["hit"]["outputs"]["model"], json!(model));
    // It reports the hit; the cached step names what it reused.
    let mut hit = step("uid-2", "train", 1, ExportedStatus::Cached);
    hit.cache_key = Some(key('f'));
    hit.cached_from = Some(train_run.clone());
    hit.inputs.insert("data".into(), data.clone());
    hit.outputs.insert("model".into(), model.clone());
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&hit)).await;
    assert_eq!(code, 200, "{a}");
    let second = run_id("argo", "uid-2");
    let steps = s.state.store.list_step_runs(&second).await.unwrap();
    assert_eq!(steps[0].status, gantry_store::StepStatus::Cached);
    assert_eq!(steps[0].cached_from.as_deref(), Some(train_run.as_str()));

    // A declared output the entry lacks, or another project's lookup: no hit.
    let more = json!({"pipeline": "iris", "key": key('f'), "outputs": ["model", "extra"]});
    let (_, a) = post(&s, &wf, "/api/v1/exported/cache", &more).await;
    assert_eq!(a["hit"], Value::Null);
    let admin = token(&s, "root", Role::Admin, None).await;
    let other = json!({"pipeline": "other", "key": key('f'), "outputs": ["model"]});
    let (code, a) = post(&s, &admin, "/api/v1/exported/cache", &other).await;
    assert_eq!((code, &a["hit"]), (200, &Value::Null), "{a}");
    // Gantry's own runs never reuse what a pod reported.
    assert_eq!(s.state.store.find_cached(&key('f')).await.unwrap(), None);

    // Recovery after a restart leaves the orchestrator's runs alone.
    let mut third = step("uid-3", "prepare", 0, ExportedStatus::Succeeded);
    third.outputs.insert("data".into(), data.clone());
    let (code, _) = post(&s, &wf, "/api/v1/exported/steps", &body(&third)).await;
    assert_eq!(code, 200);
    let interrupted = gantry_engine::interrupt_orphaned_runs(&s.state.store, s.home.path())
        .await
        .unwrap();
    assert!(interrupted.is_empty(), "{interrupted:?}");
    let third_id = run_id("argo", "uid-3");
    assert_eq!(
        s.state.store.get_run(&third_id).await.unwrap().status,
        RunStatus::Running
    );
    // Rerunning it here is refused: its spec and runner are the orchestrator's.
    let engine = s
        .state
        .runs
        .engine()
        .expect("the test server runs pipelines");
    let err = engine.rerun_request(&third_id).await.expect_err("refused");
    assert!(err.to_string().contains("exported workflow"), "{err}");
    // Cancelling it here is refused with where to do it.
    let (code, a) = post(
        &s,
        &wf,
        &format!("/api/v1/runs/{third_id}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(code, 409, "{a}");
    assert!(
        a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("argo stop"),
        "{a}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_cannot_claim_what_is_not_stored_or_not_theirs() {
    let s = server().await;
    let wf = token(&s, "argo-iris", Role::Editor, Some("iris")).await;
    let viewer = token(&s, "look", Role::Viewer, Some("iris")).await;
    let teamb = token(&s, "teamb", Role::Editor, Some("teamb")).await;
    let model = stored(&s, "model.bin", "weights").await;

    // An output that is not in the server's store.
    let mut r = step("uid-9", "train", 1, ExportedStatus::Succeeded);
    r.outputs.insert("model".into(), key('9'));
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&r)).await;
    assert_eq!(code, 400, "{a}");
    assert_eq!(a["error"]["field"], json!("outputs.model"));

    // A cache hit naming a step run that is no cache entry of that key.
    let mut r = step("uid-9", "train", 1, ExportedStatus::Cached);
    r.cache_key = Some(key('f'));
    r.cached_from = Some("step-000000000000".into());
    r.outputs.insert("model".into(), model.clone());
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&r)).await;
    assert_eq!(code, 400, "{a}");
    assert_eq!(a["error"]["field"], json!("cached_from"));

    // Malformed reports name the field.
    let (code, a) = post(
        &s,
        &wf,
        "/api/v1/exported/steps",
        &json!({"orchestrator": "argo"}),
    )
    .await;
    assert_eq!(code, 400, "{a}");
    assert_eq!(a["error"]["field"], json!("body"));
    let mut r = step("uid-9", "train", 5, ExportedStatus::Succeeded);
    r.steps = 2;
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&r)).await;
    assert_eq!((code, &a["error"]["field"]), (400, &json!("seq")), "{a}");

    // A viewer cannot report; another project's token cannot report or look up this one's.
    let ok = step("uid-9", "prepare", 0, ExportedStatus::Succeeded);
    let (code, _) = post(&s, &viewer, "/api/v1/exported/steps", &body(&ok)).await;
    assert_eq!(code, 403);
    let (code, _) = post(&s, &teamb, "/api/v1/exported/steps", &body(&ok)).await;
    assert_eq!(code, 403);
    let q = json!({"pipeline": "iris", "key": key('f'), "outputs": []});
    let (code, _) = post(&s, &teamb, "/api/v1/exported/cache", &q).await;
    assert_eq!(code, 403);
    let (code, _) = post(
        &s,
        &wf,
        "/api/v1/exported/cache",
        &json!({"pipeline": "iris", "key": "x", "outputs": []}),
    )
    .await;
    assert_eq!(code, 400);
    // Nothing of the refused reports was recorded.
    assert!(
        s.state
            .store
            .get_run(&run_id("argo", "uid-9"))
            .await
            .is_err()
    );

    // Retries: a failure with attempts left keeps the run going; the last one fails it.
    let mut f = step("uid-10", "train", 1, ExportedStatus::Failed);
    f.retries = 1;
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&f)).await;
    assert_eq!((code, &a["run_status"]), (200, &json!("running")), "{a}");
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&f)).await;
    assert_eq!((code, &a["run_status"]), (200, &json!("failed")), "{a}");
    assert_eq!(a["attempt"], json!(2));
    let rec = s
        .state
        .store
        .get_run(&run_id("argo", "uid-10"))
        .await
        .unwrap();
    assert_eq!(rec.error.as_deref(), Some("step train exit code 3"));
}

fn end(run: &str, status: &str, failures: Option<&str>) -> Value {
    json!({
        "orchestrator": "argo", "run": run, "run_name": format!("iris-{run}"),
        "pipeline": "iris", "status": status, "failures": failures,
        "finished_at_ms": 9_000, "params": {"lr": 0.1},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflows_end_settles_its_run_when_a_step_died_before_reporting() {
    let s = server().await;
    let wf = token(&s, "argo-iris", Role::Editor, Some("iris")).await;
    let viewer = token(&s, "look", Role::Viewer, Some("iris")).await;
    let teamb = token(&s, "teamb", Role::Editor, Some("teamb")).await;
    let data = stored(&s, "data.csv", "a,b\n1,2\n").await;

    // Step 1 of 2 reports; step 2's pod is OOM-killed before its wrapper can: the run would
    // stay running. The exit handler reports Argo's status and failures: the run fails with
    // the orchestrator's message, and the step that did report keeps its record.
    let mut prepare = step("uid-e1", "prepare", 0, ExportedStatus::Succeeded);
    prepare.outputs.insert("data".into(), data.clone());
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&prepare)).await;
    assert_eq!((code, &a["run_status"]), (200, &json!("running")), "{a}");
    let run = run_id("argo", "uid-e1");
    let failures = r#"[{"displayName":"train","message":"OOMKilled (exit code 137)","templateName":"train","phase":"Failed","podName":"iris-x-train-1","finishedAt":"2026-12-05T21:00:00Z"}]"#;
    let (code, a) = post(
        &s,
        &wf,
        "/api/v1/exported/runs",
        &end("uid-e1", "Failed", Some(failures)),
    )
    .await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["run_id"], json!(run));
    assert_eq!(a["run_status"], json!("failed"));
    let rec = s.state.store.get_run(&run).await.unwrap();
    assert_eq!(rec.status, RunStatus::Failed);
    assert_eq!(rec.finished_at_ms, Some(9_000));
    assert_eq!(
        rec.error.as_deref(),
        Some("the workflow ended Failed: train: OOMKilled (exit code 137)")
    );
    let steps = s.state.store.list_step_runs(&run).await.unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].step, "prepare");

    // A second end (Argo retries an exit handler) changes nothing; nor does a success
    // reported for a run that already failed.
    for status in ["Failed", "Succeeded"] {
        let (code, a) = post(
            &s,
            &wf,
            "/api/v1/exported/runs",
            &end("uid-e1", status, None),
        )
        .await;
        assert_eq!((code, &a["run_status"]), (200, &json!("failed")), "{a}");
    }
    let again = s.state.store.get_run(&run).await.unwrap();
    assert_eq!(again.error, rec.error);

    // A run whose steps all reported success ended already; its end keeps it so.
    let mut only = step("uid-e2", "prepare", 0, ExportedStatus::Succeeded);
    only.steps = 1;
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&only)).await;
    assert_eq!((code, &a["run_status"]), (200, &json!("succeeded")), "{a}");
    let (code, a) = post(
        &s,
        &wf,
        "/api/v1/exported/runs",
        &end("uid-e2", "Succeeded", Some("null")),
    )
    .await;
    assert_eq!((code, &a["run_status"]), (200, &json!("succeeded")), "{a}");
    assert_eq!(
        s.state
            .store
            .get_run(&run_id("argo", "uid-e2"))
            .await
            .unwrap()
            .error,
        None
    );

    // A workflow stopped before any step reported still gets its run, ended as the
    // orchestrator says; KFP's words are understood too.
    let mut kfp = end("kfp-uid-3", "CANCELED", Some("run cancelled by alice"));
    kfp["orchestrator"] = json!("kfp");
    let (code, a) = post(&s, &wf, "/api/v1/exported/runs", &kfp).await;
    assert_eq!((code, &a["run_status"]), (200, &json!("cancelled")), "{a}");
    let rec = s
        .state
        .store
        .get_run(&run_id("kfp", "kfp-uid-3"))
        .await
        .unwrap();
    assert_eq!(rec.status, RunStatus::Cancelled);
    assert_eq!(rec.pipeline, "iris");
    assert_eq!(
        rec.error.as_deref(),
        Some("the workflow ended CANCELED: run cancelled by alice")
    );
    assert!(s.state.store.exported_run(&rec.id).await.unwrap().is_some());

    // Refused, naming the field: an unknown status, a bad orchestrator, a malformed body;
    // a viewer, another project's token.
    let (code, a) = post(
        &s,
        &wf,
        "/api/v1/exported/runs",
        &end("uid-e4", "Running", None),
    )
    .await;
    assert_eq!((code, &a["error"]["field"]), (400, &json!("status")), "{a}");
    let mut bad = end("uid-e4", "Failed", None);
    bad["orchestrator"] = json!("airflow");
    let (code, a) = post(&s, &wf, "/api/v1/exported/runs", &bad).await;
    assert_eq!(
        (code, &a["error"]["field"]),
        (400, &json!("orchestrator")),
        "{a}"
    );
    let (code, a) = post(&s, &wf, "/api/v1/exported/runs", &json!({"run": "x"})).await;
    assert_eq!((code, &a["error"]["field"]), (400, &json!("body")), "{a}");
    let (code, _) = post(
        &s,
        &viewer,
        "/api/v1/exported/runs",
        &end("uid-e4", "Failed", None),
    )
    .await;
    assert_eq!(code, 403);
    let (code, _) = post(
        &s,
        &teamb,
        "/api/v1/exported/runs",
        &end("uid-e4", "Failed", None),
    )
    .await;
    assert_eq!(code, 403);
    assert!(
        s.state
            .store
            .get_run(&run_id("argo", "uid-e4"))
            .await
            .is_err()
    );
}

/// What `register` writes as its `registration` output (`gantry_ml::register::Registration`).
fn registration(model: &str, alias: Option<&str>) -> String {
    json!({
        "format": "gantry.registration", "model": model, "alias": alias,
        "algorithm": "logistic_regression", "task": "classification", "label": "species",
        "metrics_source": "report", "metrics": {"accuracy": 0.93},
        "files": {"model.bin": key('b')},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_register_and_deploy_act_when_their_steps_report() {
    let s = server().await;
    let wf = token(&s, "argo-iris", Role::Editor, Some("iris")).await;
    let data = stored(&s, "data.csv", "a,b\n1,2\n").await;
    let model = stored(&s, "model.bin", "weights").await;
    let reg = stored(
        &s,
        "registration.json",
        &registration("iris", Some("champion")),
    )
    .await;
    let request = stored(
        &s,
        "deployment.json",
        &json!({"deployment": "iris-prod", "change": {"model": "iris@champion"}}).to_string(),
    )
    .await;
    let three = |name: &str, seq: u32| {
        let mut r = step("uid-r", name, seq, ExportedStatus::Succeeded);
        r.steps = 3;
        r
    };

    // train → register → deploy, as `gantry compile --report-to` runs them.
    let mut train = three("train", 0);
    train.inputs.insert("data".into(), data.clone());
    train.outputs.insert("model".into(), model.clone());
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&train)).await;
    assert_eq!(code, 200, "{a}");

    let mut register = three("register", 1);
    register.effect = Some("register".into());
    register.inputs.insert("model".into(), model.clone());
    register.outputs.insert("registration".into(), reg.clone());
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&register)).await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(
        a["effect"],
        json!("registered model iris v1 (iris@champion)")
    );
    assert_eq!(a["effect_error"], Value::Null);
    assert_eq!(a["run_status"], json!("running"));
    let register_run = a["step_run_id"].as_str().unwrap().to_string();

    // The version reads like one Gantry's own run registered: artifact, metrics, lineage back
    // to the data the model was trained on, the alias; visible to the project's token.
    let run = run_id("argo", "uid-r");
    let (code, v) = s.get("/api/v1/models/iris/versions/1", Some(&wf)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["artifact"]["digest"], json!(model));
    assert_eq!(v["metrics"]["accuracy"], json!(0.93));
    assert_eq!(v["aliases"], json!(["champion"]));
    assert_eq!(v["lineage"]["run"], json!(run));
    assert_eq!(v["lineage"]["step_run"], json!(register_run));
    assert_eq!(v["lineage"]["data"], json!([data]));
    // The step's log says what it did.
    let logs = s
        .state
        .store
        .logs(&run, Some("register"), 0, 0)
        .await
        .unwrap();
    assert!(
        logs.iter()
            .any(|l| l.stream == "gantry" && l.data.contains("registered model iris v1")),
        "{logs:?}"
    );

    let mut deploy = three("deploy", 2);
    deploy.effect = Some("deploy".into());
    deploy.outputs.insert("deployment".into(), request.clone());
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&deploy)).await;
    assert_eq!(code, 200, "{a}");
    let line = a["effect"].as_str().unwrap_or_default();
    assert!(
        line.starts_with("deployment iris-prod revision 1: iris"),
        "{a}"
    );
    assert_eq!(a["run_status"], json!("succeeded"));
    let (code, d) = s.get("/api/v1/deployments/iris-prod", Some(&wf)).await;
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["spec"]["model"]["version"], json!(1), "{d}");

    // A cached `register` reuses a result: nothing is registered again.
    let mut again = step("uid-r2", "register", 1, ExportedStatus::Cached);
    again.effect = Some("register".into());
    again.cache_key = Some(key('c'));
    let mut cached_from = None;
    for sr in s.state.store.list_step_runs(&run).await.unwrap() {
        if sr.step == "register" {
            cached_from = Some(sr.id.clone());
        }
    }
    again.cached_from = cached_from;
    again.outputs.insert("registration".into(), reg.clone());
    let (_, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&again)).await;
    assert_eq!(a["effect"], Value::Null, "{a}");
    let versions = s.state.store.list_model_versions("iris").await.unwrap();
    assert_eq!(versions.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_register_that_cannot_act_fails_its_attempt_and_says_why() {
    let s = server().await;
    let wf = token(&s, "argo-iris", Role::Editor, Some("iris")).await;
    let fraud = token(&s, "argo-fraud", Role::Editor, Some("fraud")).await;
    let model = stored(&s, "model.bin", "weights").await;

    // No `registration` output: the attempt failed, and with no retries left the run.
    let mut r = step("uid-x", "register", 1, ExportedStatus::Succeeded);
    r.effect = Some("register".into());
    r.inputs.insert("model".into(), model.clone());
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&r)).await;
    assert_eq!(code, 200, "{a}");
    let error = a["effect_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("registration failed: the step wrote no `registration` output"),
        "{a}"
    );
    assert_eq!(a["run_status"], json!("failed"));
    let run = s
        .state
        .store
        .get_run(&run_id("argo", "uid-x"))
        .await
        .unwrap();
    assert_eq!(
        run.error.as_deref(),
        Some(format!("step register {error}").as_str())
    );
    let steps = s
        .state
        .store
        .list_step_runs(&run_id("argo", "uid-x"))
        .await
        .unwrap();
    assert_eq!(steps[0].status, gantry_store::StepStatus::Failed);
    assert_eq!(steps[0].reason.as_deref(), Some(error));

    // A model of another project: project fraud registered `fraud-model`; iris's token
    // cannot add a version to it.
    let theirs = stored(&s, "fraud.json", &registration("fraud-model", None)).await;
    let mut f = step("uid-f", "register", 1, ExportedStatus::Succeeded);
    f.pipeline = "fraud".into();
    f.effect = Some("register".into());
    f.inputs.insert("model".into(), model.clone());
    f.outputs.insert("registration".into(), theirs.clone());
    let (code, a) = post(&s, &fraud, "/api/v1/exported/steps", &body(&f)).await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["effect"], json!("registered model fraud-model v1"), "{a}");
    let mut r = step("uid-y", "register", 1, ExportedStatus::Succeeded);
    r.effect = Some("register".into());
    r.inputs.insert("model".into(), model.clone());
    r.outputs.insert("registration".into(), theirs);
    let (_, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&r)).await;
    assert_eq!(
        a["effect_error"],
        json!("registration failed: model fraud-model belongs to another project than iris")
    );
    let versions = s
        .state
        .store
        .list_model_versions("fraud-model")
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);

    // A deployment request naming a model that does not exist fails the deploy step.
    let request = stored(
        &s,
        "deployment.json",
        &json!({"deployment": "iris-prod", "change": {"model": "nope@1"}}).to_string(),
    )
    .await;
    let mut d = step("uid-z", "deploy", 1, ExportedStatus::Succeeded);
    d.effect = Some("deploy".into());
    d.outputs.insert("deployment".into(), request);
    let (_, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&d)).await;
    let error = a["effect_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("deployment failed: "), "{a}");
    assert!(error.contains("nope"), "{a}");
    let (code, _) = s.get("/api/v1/deployments/iris-prod", Some(&wf)).await;
    assert_eq!(code, 404);

    // An unknown side effect is refused with the field named.
    let mut u = step("uid-u", "register", 1, ExportedStatus::Succeeded);
    u.effect = Some("delete-everything".into());
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&u)).await;
    assert_eq!((code, &a["error"]["field"]), (400, &json!("effect")), "{a}");
}

/// The wrapper retries a report whose answer did not arrive; with the step run id it chose,
/// the attempt is recorded, and its model registered, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_sent_again_is_recorded_and_acted_on_once() {
    let s = server().await;
    let wf = token(&s, "argo-iris", Role::Editor, Some("iris")).await;
    let other = token(&s, "argo-fraud", Role::Editor, Some("fraud")).await;
    let model = stored(&s, "model.bin", "weights").await;
    let reg = stored(&s, "registration.json", &registration("iris", None)).await;
    let mut r = step("uid-again", "register", 1, ExportedStatus::Succeeded);
    r.effect = Some("register".into());
    r.step_run = Some("step00000000a1a1".into());
    r.inputs.insert("model".into(), model.clone());
    r.outputs.insert("registration".into(), reg);
    let (code, first) = post(&s, &wf, "/api/v1/exported/steps", &body(&r)).await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["step_run_id"], json!("step00000000a1a1"));
    assert_eq!(first["effect"], json!("registered model iris v1"));
    let (code, again) = post(&s, &wf, "/api/v1/exported/steps", &body(&r)).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["step_run_id"], first["step_run_id"]);
    assert_eq!(again["attempt"], json!(1));
    assert_eq!(
        again["effect"],
        json!("done already: step run step00000000a1a1")
    );
    let run = run_id("argo", "uid-again");
    let counts = || async {
        let versions = s.state.store.list_model_versions("iris").await.unwrap();
        let steps = s.state.store.list_step_runs(&run).await.unwrap();
        (versions.len(), steps.len())
    };
    assert_eq!(counts().await, (1, 1));

    // Sent twice at once (a retry while the first is still being answered): one of them
    // records and registers, the other answers from its record.
    let mut twice = r.clone();
    twice.step_run = Some("step00000000c3c3".into());
    let twice = body(&twice);
    let (a, b) = tokio::join!(
        post(&s, &wf, "/api/v1/exported/steps", &twice),
        post(&s, &wf, "/api/v1/exported/steps", &twice),
    );
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    assert_eq!(a.1["step_run_id"], b.1["step_run_id"]);
    let effects = [&a.1["effect"], &b.1["effect"]];
    assert!(
        effects.contains(&&json!("registered model iris v2"))
            && effects.contains(&&json!("done already: step run step00000000c3c3")),
        "{effects:?}"
    );
    assert_eq!(counts().await, (2, 2));

    // A failed side effect answers the same failure again.
    let mut bad = step("uid-again", "register", 1, ExportedStatus::Succeeded);
    bad.effect = Some("register".into());
    bad.step_run = Some("step00000000b2b2".into());
    bad.inputs.insert("model".into(), model.clone());
    let (_, first) = post(&s, &wf, "/api/v1/exported/steps", &body(&bad)).await;
    let (_, again) = post(&s, &wf, "/api/v1/exported/steps", &body(&bad)).await;
    assert!(first["effect_error"].is_string(), "{first}");
    assert_eq!(again["effect_error"], first["effect_error"]);
    assert_eq!(again["attempt"], json!(3));
    assert_eq!(counts().await, (2, 3));

    // An id that is another step's, or another run's, is refused, naming the field.
    let mut taken = step("uid-again", "train", 0, ExportedStatus::Succeeded);
    taken.step_run = Some("step00000000a1a1".into());
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&taken)).await;
    assert_eq!(
        (code, &a["error"]["field"]),
        (409, &json!("step_run")),
        "{a}"
    );
    let mut theirs = step("uid-other", "register", 1, ExportedStatus::Succeeded);
    theirs.pipeline = "fraud".into();
    theirs.step_run = Some("step00000000a1a1".into());
    let (code, a) = post(&s, &other, "/api/v1/exported/steps", &body(&theirs)).await;
    assert_eq!(
        (code, &a["error"]["field"]),
        (409, &json!("step_run")),
        "{a}"
    );
    assert!(
        s.state
            .store
            .get_run(&run_id("argo", "uid-other"))
            .await
            .is_err()
    );
}

/// A copy of a report that arrives while another request is still acting on it (its
/// registration not yet recorded) waits for that outcome and answers it, failure included; a
/// request that never finishes (the server stopped halfway) gets the copy a 503, which the
/// wrapper sends again, and the workflow's end settles the attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_report_being_acted_on_answers_its_outcome() {
    use gantry_store::StepStatus;
    const STEPS: &str = "/api/v1/exported/steps";
    let s = server().await;
    let wf = token(&s, "argo-iris", Role::Editor, Some("iris")).await;
    let model = stored(&s, "model.bin", "weights").await;
    let reg = stored(&s, "registration.json", &registration("iris", None)).await;
    let report = |id: &str| {
        let mut r = step("uid-busy", "register", 1, ExportedStatus::Succeeded);
        r.effect = Some("register".into());
        r.step_run = Some(id.into());
        r.inputs.insert("model".into(), model.clone());
        r.outputs.insert("registration".into(), reg.clone());
        body(&r)
    };
    // The state another request leaves while it registers: recorded, still running.
    let acting = |id: &'static str| {
        let s = &s;
        async move {
            let mut rec = s.state.store.find_step_run(id).await.unwrap().unwrap();
            rec.status = StepStatus::Running;
            s.state.store.upsert_step_run(&rec).await.unwrap();
            rec
        }
    };
    let (code, first) = post(&s, &wf, STEPS, &report("step00000000d4d4")).await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(first["effect"], json!("registered model iris v1"));
    let steps = s
        .state
        .store
        .list_step_runs(&run_id("argo", "uid-busy"))
        .await;
    assert_eq!(steps.unwrap()[0].status, StepStatus::Succeeded);

    let mut rec = acting("step00000000d4d4").await;
    let copy = report("step00000000d4d4");
    let waiting = post(&s, &wf, STEPS, &copy);
    tokio::pin!(waiting);
    tokio::select! {
        a = &mut waiting => panic!("answered before the outcome was known: {a:?}"),
        () = tokio::time::sleep(std::time::Duration::from_millis(600)) => {}
    }
    rec.status = StepStatus::Failed;
    rec.reason = Some("registration failed: the disk is full".into());
    s.state.store.upsert_step_run(&rec).await.unwrap();
    let (code, answer) = waiting.await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["effect"], Value::Null, "{answer}");
    assert_eq!(
        answer["effect_error"],
        json!("registration failed: the disk is full")
    );

    // A request that stopped halfway: the copy is told to come again, and the end settles it.
    let (code, a) = post(&s, &wf, STEPS, &report("step00000000e5e5")).await;
    assert_eq!(code, 200, "{a}");
    acting("step00000000e5e5").await;
    let (code, answer) = post(&s, &wf, STEPS, &report("step00000000e5e5")).await;
    assert_eq!(
        (code, &answer["error"]["code"]),
        (503, &json!("unavailable")),
        "{answer}"
    );
    let (code, a) = post(
        &s,
        &wf,
        "/api/v1/exported/runs",
        &end("uid-busy", "Succeeded", None),
    )
    .await;
    assert_eq!(code, 200, "{a}");
    let steps = s
        .state
        .store
        .list_step_runs(&run_id("argo", "uid-busy"))
        .await;
    let statuses: Vec<_> = steps.unwrap().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [StepStatus::Failed, StepStatus::Interrupted]);
    let (code, answer) = post(&s, &wf, STEPS, &report("step00000000e5e5")).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        answer["effect_error"],
        json!("the server stopped before it finished acting on this step's report")
    );
    assert_eq!(
        s.state
            .store
            .list_model_versions("iris")
            .await
            .unwrap()
            .len(),
        2
    );
}

/// The exit handler brings the spec as written: the run keeps it as its snapshot, as a run of
/// Gantry's own does, whether a step's report or the end created the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflows_end_brings_the_spec_snapshot() {
    use gantry_kube::exported::encode_spec;
    let s = server().await;
    let wf = token(&s, "argo-iris", Role::Editor, Some("iris")).await;
    let text = "name: iris\nsteps:\n  - name: prepare # {{not argo's}}\n    image: busybox\n    command: [\"true\"]\n  - name: train\n    image: busybox\n    command: [\"true\"]\n    after: [prepare]\n";
    let with_spec = |run: &str, spec: &str| {
        let mut e = end(run, "Succeeded", None);
        e["spec"] = json!(encode_spec(spec).unwrap());
        e
    };

    // A run its first step created gets the spec at the end; a later end changes nothing.
    let first = step("uid-s", "prepare", 0, ExportedStatus::Succeeded);
    let (code, a) = post(&s, &wf, "/api/v1/exported/steps", &body(&first)).await;
    assert_eq!(code, 200, "{a}");
    let run = run_id("argo", "uid-s");
    assert_eq!(s.state.store.get_run(&run).await.unwrap().spec_yaml, "");
    let (code, a) = post(&s, &wf, "/api/v1/exported/runs", &with_spec("uid-s", text)).await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(s.state.store.get_run(&run).await.unwrap().spec_yaml, text);
    // The UI draws the run's whole graph from it: `train` never reported.
    let viewer = token(&s, "look", Role::Viewer, Some("iris")).await;
    let page = ui_page(&s, &viewer, &format!("/runs/{run}")).await;
    assert!(page.contains("<title>prepare → train</title>"), "{page}");
    assert!(page.contains(r#"data-node="train""#), "{page}");
    let (code, _) = post(
        &s,
        &wf,
        "/api/v1/exported/runs",
        &with_spec("uid-s", "name: other\n"),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(s.state.store.get_run(&run).await.unwrap().spec_yaml, text);

    // A run the end creates has it from the start.
    let (code, a) = post(&s, &wf, "/api/v1/exported/runs", &with_spec("uid-t", text)).await;
    assert_eq!(code, 200, "{a}");
    let created = s
        .state
        .store
        .get_run(&run_id("argo", "uid-t"))
        .await
        .unwrap();
    assert_eq!(created.spec_yaml, text);

    // What is not a spec is refused, naming the field, before anything is recorded.
    let mut bad = end("uid-u", "Succeeded", None);
    bad["spec"] = json!("{{not base64}}");
    let (code, a) = post(&s, &wf, "/api/v1/exported/runs", &bad).await;
    assert_eq!((code, &a["error"]["field"]), (400, &json!("spec")), "{a}");
    assert!(
        s.state
            .store
            .get_run(&run_id("argo", "uid-u"))
            .await
            .is_err()
    );
}
