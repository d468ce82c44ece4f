//! The web UI in a real browser (Debian's headless Chromium over WebDriver) against a real
//! `gantry server --auth` with real runs: log in with a token, filter runs, follow a running
//! step's log live, reach a failed step's log in one click, compare runs and sweep members,
//! follow a model back to its data, open an MLflow-client-printed link, promote a canary as
//! an editor and be refused as a viewer, and have a cross-origin form post refused. Every
//! page is checked with axe-core (no serious or critical violation) and the console (no CSP
//! violation, no script error).

use crate::browser::{Browser, BrowserOptions, WAIT};
use crate::support::{Gantry, wait_until};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::Duration;

const PIPELINE: &str = r#"
name: flowers
params:
  seed: 1
  note: first
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
    with: { label: species, algorithm: decision_tree, seed: "${params.seed}" }
    matrix:
      max_depth: [1, 2, 4]
    outputs: [model]
  - name: select
    uses: builtin/select-best
    inputs: { candidates: train.model }
    with: { metric: validation.accuracy }
    outputs: [model, report]
  - name: register
    uses: builtin/register
    inputs: { model: select.model, profile: profile.profile }
    with: { model: iris, alias: champion }
    outputs: [registration]
"#;

const FAILING: &str = r#"
name: broken
steps:
  - name: prepare
    image: busybox:1
    command: ["sh", "-c", "echo preparing; echo '{\"widgets\": 5}' > /gantry/metrics.json"]
  - name: crash
    image: busybox:1
    after: [prepare]
    command: ["sh", "-c", "echo about to fail; echo 'Traceback: <script>alert(1)</script> bad input' >&2; exit 3"]
"#;

const SLOW: &str = r#"
name: ticker
steps:
  - name: tick
    image: busybox:1
    command: ["sh", "-c", "for i in $(seq 1 400); do echo tick-$i; sleep 0.1; done"]
"#;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn token(g: &Gantry, name: &str, role: &str) -> String {
    g.ok(&["token", "create", "--name", name, "--role", role])
        .trim()
        .to_string()
}

fn remote_json(g: &Gantry, url: &str, token: &str, args: &[&str]) -> Value {
    let mut c = g.command(&[&["--server", url], args, &["--output", "json"]].concat());
    c.env("GANTRY_TOKEN", token);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "gantry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Logs in through the login page; returns nothing, leaves the browser on `next`.
fn log_in(b: &Browser, url: &str, token: &str) {
    b.delete_cookies();
    b.goto(&format!("{url}/login"));
    b.fill("#token", token);
    b.click("form.login-form button[type=submit]");
    b.wait_until("the login went through", WAIT, |b| {
        !b.current_url().contains("/login")
    });
}

/// Every page a test visits: accessible, and no script error or CSP violation.
fn check_page(b: &Browser, name: &str) {
    b.assert_accessible(name);
    b.assert_no_console_errors();
}

/// A page on another port of this host with a form that posts to `target` (a cross-origin
/// form post): serves it to one request.
fn hostile_page(target: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let html = format!(
        "<!doctype html><html lang=en><title>x</title><form method=post action=\"{target}\"><button id=go type=submit>go</button></form></html>"
    );
    std::thread::spawn(move || {
        for stream in listener.incoming().take(3) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    format!("http://{addr}/")
}

#[test]
fn a_data_scientist_follows_runs_logs_sweeps_and_models_in_the_browser() {
    let Some(b) = Browser::start() else { return };
    let g = Gantry::new();
    let csv = g.ok(&["dataset", "iris"]);
    g.write("iris.csv", &csv);
    let spec = g.write("flowers.yaml", PIPELINE);
    let (code, _, err) = g.run_pipeline(&spec, &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = g.run_pipeline(&spec, &["-p", "seed=2", "-p", "note=second"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = g.run_pipeline(&spec, &["-p", "seed=3", "-p", "note=third"]);
    assert_eq!(code, 0, "{err}");
    let broken = g.write("broken.yaml", FAILING);
    let (code, failed, _) = g.run_pipeline(&broken, &[]);
    assert_ne!(code, 0);
    let failed_id = failed["run_id"].as_str().unwrap().to_string();

    let (child, url) = g.spawn_listening(&["server", "--listen", "127.0.0.1:0", "--auth"], &[]);
    let server = Server { child, url };
    let url = server.url.clone();
    let editor = token(&g, "ed", "editor");
    let viewer = token(&g, "vi", "viewer");

    // Without a session every page leads to the login page; a wrong token is refused there.
    b.goto(&format!("{url}/runs"));
    b.wait_for("form.login-form", WAIT);
    check_page(&b, "login");
    b.fill("#token", "gantry_t000_nonsense");
    b.click("form.login-form button[type=submit]");
    b.wait_for(".notice.error", WAIT);
    assert!(b.body_text().contains("unknown or revoked"));
    // The refused login answered 401, which the console reports: expected here.
    b.browser_log();

    log_in(&b, &url, &editor);
    let cookie = b.cookie("gantry_session").expect("a session cookie");
    assert!(cookie.http_only, "{cookie:?}");
    assert_eq!(cookie.same_site.as_deref(), Some("Strict"), "{cookie:?}");
    // The JSON API does not take the cookie: it keeps requiring a bearer token.
    let api = b.execute_async(
        "const done = arguments[arguments.length - 1]; fetch('/api/v1/runs').then(r => done(r.status));",
        vec![],
    );
    assert_eq!(api, 401);
    b.browser_log();

    // The list, then a filter through the form (its state ends up in the URL).
    b.goto(&format!("{url}/runs"));
    b.wait_for("table", WAIT);
    check_page(&b, "runs");
    assert_eq!(b.find_all("tbody tr").len(), 4, "{}", b.body_text());
    b.execute(
        "document.querySelector('select[name=status]').value = 'failed';",
        vec![],
    );
    b.click("form.form button[type=submit]");
    b.wait_until("the list is filtered", WAIT, |b| {
        b.current_url().contains("status=failed")
    });
    assert_eq!(b.find_all("tbody tr").len(), 1);
    assert!(b.body_text().contains(&failed_id));
    // Back and forward move between the filtered and unfiltered list.
    b.back();
    b.wait_until("back to the whole list", WAIT, |b| {
        !b.current_url().contains("status=failed")
    });
    assert_eq!(b.find_all("tbody tr").len(), 4);
    b.forward();
    b.wait_until("forward to the filter", WAIT, |b| {
        b.current_url().contains("status=failed")
    });
    // A param filter and a metric filter, as permalinks.
    b.goto(&format!("{url}/runs?param=note%3Dsecond"));
    assert_eq!(b.find_all("tbody tr").len(), 1);
    b.goto(&format!("{url}/runs?metric=widgets%3E4"));
    assert_eq!(b.find_all("tbody tr").len(), 1, "{}", b.body_text());
    b.goto(&format!("{url}/runs?metric=widgets%3E5"));
    assert!(b.try_find("tbody tr").is_none());

    // A failed run: the failing step's log is one click away, and what the step printed is
    // shown as text (escaped), not markup.
    b.goto(&format!("{url}/runs?status=failed"));
    b.click(&format!("a[href='/runs/{failed_id}']"));
    b.wait_for("svg.dag", WAIT);
    check_page(&b, "failed run");
    assert!(
        b.find("svg.dag .node.status-failed")
            .text()
            .contains("crash")
    );
    b.click("ul.links a[href*='step=crash']");
    b.wait_for("pre.log", WAIT);
    check_page(&b, "failed step log");
    let log = b.find("pre.log").text();
    assert!(log.contains("about to fail"), "{log}");
    assert!(
        log.contains("Traceback: <script>alert(1)</script> bad input"),
        "{log}"
    );
    assert!(b.try_find("pre.log script").is_none());
    assert!(b.body_text().contains("exit code 3"), "{}", b.body_text());
    // Search inside the log, and the whole log as a download.
    b.goto(&format!(
        "{url}/runs/{failed_id}/logs?step=crash&q=Traceback"
    ));
    assert_eq!(b.find_all("pre.log .line").len(), 1);
    let download = b.execute_async(
        "const done = arguments[arguments.length - 1]; fetch(arguments[0]).then(r => r.text()).then(done);",
        vec![Value::String(format!("/runs/{failed_id}/logs.txt"))],
    );
    let download = download.as_str().unwrap();
    assert!(
        download.contains("[prepare] preparing") && download.contains("[crash] about to fail"),
        "{download}"
    );

    // A sweep: the run page collapses the matrix into one node and lists its members.
    let runs = remote_json(&g, &url, &editor, &["runs", "--pipeline", "flowers"]);
    let ids: Vec<String> = runs
        .as_array()
        .or_else(|| runs["runs"].as_array())
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{runs}");
    b.goto(&format!("{url}/runs/{}", ids[0]));
    let sweep = b.find("svg.dag").text();
    assert!(sweep.contains("×3: 3 succeeded"), "{sweep}");
    check_page(&b, "run with a sweep");
    let members = b.find_all("#sweeps + p + .table-wrap tbody tr, #sweeps ~ .table-wrap tbody tr");
    assert!(members.len() >= 3, "{}", b.body_text());
    let sweep_text = b.body_text();
    for depth in [1, 2, 4] {
        assert!(
            sweep_text.contains(&format!("train[max_depth={depth}]")),
            "{sweep_text}"
        );
    }

    // Compare three runs picked in the list: params as rows, differences highlighted.
    b.goto(&format!("{url}/runs?pipeline=flowers"));
    for id in &ids {
        b.click(&format!("input[type=checkbox][value='{id}']"));
    }
    b.click("form.select button[type=submit]");
    b.wait_until("the comparison opens", WAIT, |b| {
        b.current_url().contains("/compare")
    });
    check_page(&b, "compare");
    let headers = b.find("table").find_all("thead th");
    assert_eq!(headers.len(), 4, "a label column and three runs");
    let diff_rows: Vec<String> = b.find_all("tr.diff").iter().map(|r| r.text()).collect();
    assert!(
        diff_rows.iter().any(|r| r.starts_with("seed")),
        "{diff_rows:?}"
    );
    assert!(
        diff_rows.iter().any(|r| r.starts_with("note")),
        "{diff_rows:?}"
    );
    // A run with other steps: metrics it lacks are shown as missing, not 0.
    b.goto(&format!("{url}/compare?runs={}&runs={failed_id}", ids[0]));
    assert!(!b.find_all("td .missing").is_empty());
    check_page(&b, "compare with missing values");

    // A model back to its data: model → version → the data digest → the artifact.
    b.goto(&format!("{url}/models"));
    check_page(&b, "models");
    b.click("a[href='/models/iris']");
    b.wait_for("table", WAIT);
    check_page(&b, "model");
    b.click("a[href='/models/iris/versions/1']");
    b.wait_for("#lineage", WAIT);
    check_page(&b, "model version");
    let data_link = b.find("#lineage ~ .table-wrap a[href*='/artifacts/sha256']");
    let digest = data_link.text();
    data_link.click();
    b.wait_until("the data artifact opens", WAIT, |b| {
        b.current_url().contains("/artifacts/")
    });
    assert!(b.body_text().contains(&digest), "{}", b.body_text());
    check_page(&b, "artifact");

    // An editor moves the alias from the model page.
    b.goto(&format!("{url}/models/iris"));
    b.fill("form.form input[name=alias]", "staging");
    b.click("form.form button[type=submit]");
    b.wait_until("the alias is set", WAIT, |b| {
        b.try_body_text().is_some_and(|t| t.contains("@staging"))
    });

    // An MLflow-client-printed link: `/#/experiments/ID/runs/RUN` lands on that run, also
    // through the login page.
    let show = remote_json(&g, &url, &editor, &["show", &ids[0]]);
    let exp = show["mlflow"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mlflow_run = show["mlflow"]["run_id"].as_str().unwrap().to_string();
    b.delete_cookies();
    b.goto(&format!("{url}/#/experiments/{exp}/runs/{mlflow_run}"));
    b.wait_for("form.login-form", WAIT);
    b.fill("#token", &editor);
    b.click("form.login-form button[type=submit]");
    b.wait_until("the MLflow run page opens", WAIT, |b| {
        b.current_url()
            .ends_with(&format!("/experiments/{exp}/runs/{mlflow_run}"))
    });
    check_page(&b, "mlflow run");
    // The link the real `mlflow` client prints when a run ends.
    if let Some(python) = crate::skip::unless_env(
        "GANTRY_TEST_MLFLOW_PYTHON",
        "a Python with mlflow installed (scripts/test.sh makes .venv-test)",
    ) {
        let out = std::process::Command::new(python)
            .args([
                "-c",
                "import mlflow\nmlflow.set_experiment('notebook')\nwith mlflow.start_run(run_name='from-a-notebook'):\n    mlflow.log_param('lr', '0.1')\n    for i in range(5): mlflow.log_metric('loss', 1.0 / (i + 1), step=i)\n",
            ])
            .env("MLFLOW_TRACKING_URI", &url)
            .env("MLFLOW_TRACKING_TOKEN", &editor)
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{printed}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let link = printed
            .split_whitespace()
            .find(|w| w.starts_with(&url) && w.contains("/#/experiments/") && w.contains("/runs/"))
            .unwrap_or_else(|| panic!("mlflow printed no run link: {printed}"))
            .to_string();
        b.goto(&link);
        b.wait_until("the printed link opens the MLflow run", WAIT, |b| {
            b.current_url().contains("/experiments/") && !b.current_url().contains('#')
        });
        let text = b.body_text();
        assert!(text.contains("MLflow run from-a-notebook"), "{text}");
        assert!(
            b.try_find("svg.line-chart").is_some(),
            "the loss history is drawn"
        );
        check_page(&b, "mlflow run from the client");
    }
    b.goto(&format!("{url}/experiments/{exp}"));
    check_page(&b, "experiment");
    assert_eq!(b.find_all("tbody tr").len(), 3, "{}", b.body_text());
    b.goto(&format!("{url}/experiments"));
    check_page(&b, "experiments");

    // A viewer sees no write buttons, and a forged write is refused.
    log_in(&b, &url, &viewer);
    b.goto(&format!("{url}/runs/{}", ids[0]));
    assert!(b.try_find("form[action$='/rerun']").is_none());
    b.goto(&format!("{url}/models/iris"));
    assert!(b.try_find("form[action$='/aliases']").is_none());
    let forged = b.execute_async(
        "const done = arguments[arguments.length - 1];
         fetch('/models/iris/aliases', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'alias=production&version=1'}).then(r => done(r.status));",
        vec![],
    );
    assert_eq!(forged, 403);
    b.browser_log();

    // Logging out ends the session on the server.
    log_in(&b, &url, &editor);
    b.goto(&format!("{url}/runs"));
    b.click("header form[action='/logout'] button");
    b.wait_for("form.login-form", WAIT);
    b.goto(&format!("{url}/runs"));
    b.wait_for("form.login-form", WAIT);

    // Revoking the token ends its sessions at once.
    log_in(&b, &url, &viewer);
    b.goto(&format!("{url}/runs"));
    b.wait_for("table", WAIT);
    g.ok(&["token", "revoke", "vi"]);
    b.goto(&format!("{url}/runs"));
    b.wait_for("form.login-form", WAIT);

    // A form posted from another port of the same host carries the cookie (same site) but
    // is refused: the write did not come from this origin.
    log_in(&b, &url, &editor);
    let page = hostile_page(&format!("{url}/runs/{failed_id}/rerun"));
    b.goto(&page);
    b.click("#go");
    b.wait_until("the cross-origin post is answered", WAIT, |b| {
        b.current_url().starts_with(&url)
    });
    assert!(b.body_text().contains("cross-origin"), "{}", b.body_text());
    let after = remote_json(&g, &url, &editor, &["runs", "--pipeline", "broken"]);
    let count = after
        .as_array()
        .or_else(|| after["runs"].as_array())
        .unwrap()
        .len();
    assert_eq!(count, 1, "no rerun was started: {after}");
    drop(server);
}

#[test]
fn a_running_steps_log_grows_in_the_browser_without_a_reload() {
    let Some(b) = Browser::start() else { return };
    let g = Gantry::new();
    let (child, url) = g.spawn_listening(&["server", "--listen", "127.0.0.1:0"], &[]);
    let server = Server { child, url };
    let url = server.url.clone();
    let spec = g.write("ticker.yaml", SLOW);
    let mut submit = g.command(&["--server", &url, "run", spec.to_str().unwrap()]);
    submit.stdout(Stdio::null()).stderr(Stdio::inherit());
    let mut submitted = submit.spawn().unwrap();
    let mut run_id = String::new();
    wait_until("the run is running", || {
        let out = g.run(&["--server", &url, "runs", "--output", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let list = v
            .as_array()
            .cloned()
            .or_else(|| v["runs"].as_array().cloned());
        match list.and_then(|l| l.first().cloned()) {
            Some(r) if r["status"] == "running" => {
                run_id = r["id"].as_str().unwrap_or_default().to_string();
                true
            }
            _ => false,
        }
    });
    wait_until("the step has printed something", || {
        let out = g.run(&["--server", &url, "logs", &run_id]);
        String::from_utf8_lossy(&out.stdout).contains("tick-2")
    });

    b.goto(&format!("{url}/runs/{run_id}/logs?step=tick"));
    b.wait_for("pre.log[data-sse]", WAIT);
    // A marker that a reload would wipe.
    b.execute("window.__gantryMarker = 42;", vec![]);
    let lines_at_load = b.find_all("pre.log .line").len();
    assert!(lines_at_load >= 2, "{}", b.body_text());
    b.wait_until("new lines arrive over SSE", Duration::from_secs(20), |b| {
        b.find_all("pre.log .line").len() >= lines_at_load + 10
    });
    assert_eq!(b.execute("return window.__gantryMarker;", vec![]), 42);
    let text = b.find("pre.log").text();
    let last = lines_at_load + 5;
    assert!(text.contains(&format!("tick-{last}")), "{text}");
    check_page(&b, "live log");

    // The run page follows the status too; it reloads when the run ends (cancelled here).
    b.goto(&format!("{url}/runs/{run_id}"));
    b.wait_for("#run-status[data-status-sse]", WAIT);
    check_page(&b, "running run");
    b.click(&format!("form[action='/runs/{run_id}/cancel'] button"));
    b.wait_until("the run ends as cancelled", Duration::from_secs(30), |b| {
        b.try_text_of("#run-status").as_deref() == Some("cancelled")
    });
    let _ = submitted.wait();
    drop(server);
}

#[test]
fn an_editor_promotes_a_canary_in_the_browser_and_a_viewer_cannot() {
    let Some(b) = Browser::start() else { return };
    let g = Gantry::new();
    let csv = g.ok(&["dataset", "iris"]);
    g.write("iris.csv", &csv);
    let spec = g.write("flowers.yaml", PIPELINE);
    for seed in ["1", "2"] {
        let (code, _, err) = g.run_pipeline(&spec, &["-p", &format!("seed={seed}")]);
        assert_eq!(code, 0, "{err}");
    }
    let (child, url) = g.spawn_listening(
        &["server", "--listen", "127.0.0.1:0", "--auth"],
        &[("GANTRY_MONITOR_INTERVAL", "1s")],
    );
    let server = Server { child, url };
    let url = server.url.clone();
    let admin = token(&g, "adm", "admin");
    let editor = token(&g, "ed", "editor");
    let viewer = token(&g, "vi", "viewer");
    remote_json(
        &g,
        &url,
        &admin,
        &["deploy", "flowers", "--model", "iris@1"],
    );
    remote_json(
        &g,
        &url,
        &admin,
        &["deploy", "flowers", "--canary", "iris@2", "--weight", "25"],
    );

    log_in(&b, &url, &viewer);
    b.goto(&format!("{url}/deployments"));
    check_page(&b, "deployments");
    b.click("a[href='/deployments/flowers']");
    b.wait_for("#monitor", WAIT);
    check_page(&b, "deployment as viewer");
    assert!(
        b.body_text().contains("iris v2 receives 25% of traffic"),
        "{}",
        b.body_text()
    );
    assert!(b.try_find("form[action$='/promote']").is_none());
    let forged = b.execute_async(
        "const done = arguments[arguments.length - 1];
         fetch('/deployments/flowers/promote', {method: 'POST'}).then(r => done(r.status));",
        vec![],
    );
    assert_eq!(forged, 403);
    b.browser_log();

    log_in(&b, &url, &editor);
    b.goto(&format!("{url}/deployments/flowers"));
    b.click("form[action='/deployments/flowers/promote'] button");
    b.wait_until("the canary is promoted", WAIT, |b| {
        b.try_body_text()
            .is_some_and(|t| t.contains("Canary\nnone") || t.contains("Canary none"))
    });
    let d = remote_json(&g, &url, &admin, &["deployments"]);
    let flowers = d
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "flowers")
        .unwrap()
        .clone();
    assert_eq!(flowers["spec"]["model"]["version"], 2, "{flowers}");
    assert!(flowers["spec"]["canary"].is_null(), "{flowers}");
    check_page(&b, "deployment after promote");

    // With JavaScript off everything but live updates works: log in, list, pick two runs
    // and compare them (plain forms), open the deployment.
    let no_js = Browser::start_with(BrowserOptions {
        args: vec!["--blink-settings=scriptEnabled=false".into()],
        ..BrowserOptions::default()
    })
    .expect("a second browser");
    assert_eq!(
        no_js.execute("return 1;", vec![]),
        1,
        "WebDriver scripts still run with page scripts off"
    );
    log_in(&no_js, &url, &viewer);
    no_js.goto(&format!("{url}/runs"));
    let ran = "return document.documentElement.classList.contains('js');";
    assert_eq!(no_js.execute(ran, vec![]), false, "page scripts are off");
    assert_eq!(
        b.execute(ran, vec![]),
        true,
        "page scripts run in the other browser"
    );
    let boxes = no_js.find_all("input[type=checkbox][name=runs]");
    assert_eq!(boxes.len(), 2);
    for b in &boxes {
        b.click();
    }
    no_js.click("form.select button[type=submit]");
    no_js.wait_until("the comparison opens without JavaScript", WAIT, |b| {
        b.current_url().contains("/compare?runs=")
    });
    assert!(no_js.body_text().contains("Compare 2 runs"));
    no_js.goto(&format!("{url}/deployments/flowers"));
    assert!(no_js.body_text().contains("Monitor"));
    drop(no_js);

    // The admin sees the audit log, with the promotion by the editor.
    log_in(&b, &url, &admin);
    b.goto(&format!("{url}/audit"));
    check_page(&b, "audit");
    assert!(
        b.body_text().contains("deployment.promote"),
        "{}",
        b.body_text()
    );
    b.goto(&format!("{url}/images"));
    check_page(&b, "images");
    assert!(b.body_text().contains("busybox:1"), "{}", b.body_text());
    drop(server);
}
