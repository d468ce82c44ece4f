//! `gantry server` as a real process, driven by `gantry --server URL …`: the same commands
//! and output as locally, tokens and the audit log, and a server killed with SIGKILL.

use crate::support::{Gantry, eventually};
use serde_json::Value;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(g: &Gantry, extra: &[&str]) -> Server {
    let mut args = vec!["server", "--listen", "127.0.0.1:0"];
    args.extend(extra);
    let (child, url) = g.spawn_listening(&args, &[]);
    Server { child, url }
}

/// `gantry --server URL ARGS` with an optional token: (exit code, stdout, stderr).
fn remote(g: &Gantry, url: &str, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut c = g.command(&[&["--server", url], args].concat());
    c.env_remove("GANTRY_TOKEN");
    if let Some(t) = token {
        c.env("GANTRY_TOKEN", t);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn remote_json(g: &Gantry, url: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let (code, out, err) = remote(g, url, None, &all);
    assert_eq!(code, 0, "gantry --server {url} {args:?}: {err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn the_cli_works_against_a_server_like_it_does_locally() {
    let g = Gantry::new();
    let file = g.write(
        "hello.yaml",
        r#"
name: hello
params:
  who: world
steps:
  - name: greet
    image: busybox:1
    command: [sh, -c, 'echo "hello ${params.who}"; echo hi > /gantry/outputs/msg']
    outputs: [msg]
"#,
    );
    let server = start_server(&g, &[]);
    let (code, out, err) = remote(
        &g,
        &server.url,
        None,
        &[
            "run",
            file.to_str().unwrap(),
            "-p",
            "who=server",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["status"], "succeeded");
    assert_eq!(summary["steps"][0]["step"], "greet");
    let id = summary["run_id"].as_str().unwrap();

    // Same documents remotely and locally.
    let remote_runs = remote_json(&g, &server.url, &["runs"]);
    let local_runs = g.json(&["runs"]);
    assert_eq!(remote_runs, local_runs);
    let remote_show = remote_json(&g, &server.url, &["show", id]);
    assert_eq!(remote_show, g.show(id));
    assert_eq!(remote_show["params"]["who"], "server");
    // Same tables too.
    let (_, table, _) = remote(&g, &server.url, None, &["show", id]);
    assert_eq!(table, g.ok(&["show", id]));
    let (_, logs, _) = remote(&g, &server.url, None, &["logs", id]);
    assert_eq!(logs, g.ok(&["logs", id]));
    assert!(logs.contains("[greet] hello server"), "{logs}");
    let (_, followed, _) = remote(&g, &server.url, None, &["logs", id, "greet", "--follow"]);
    assert_eq!(followed.trim(), "hello server");
    assert_eq!(
        remote_json(&g, &server.url, &["artifacts", id]),
        g.json(&["artifacts", id])
    );
    let digest = remote_show["steps"][0]["outputs"]["msg"].as_str().unwrap();
    let out_dir = g.dir.path().join("fetched");
    let (code, path, err) = remote(
        &g,
        &server.url,
        None,
        &[
            "artifact",
            "get",
            digest,
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(path.trim()).unwrap(), "hi\n");

    // Errors keep their exit codes.
    let (code, _, err) = remote(&g, &server.url, None, &["show", "r-000000000000"]);
    assert_eq!(code, 3, "{err}");
    let bad = g.write(
        "bad.yaml",
        "name: bad\nsteps:\n  - name: a\n    imagee: busybox:1\n",
    );
    let (code, _, err) = remote(&g, &server.url, None, &["run", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.yaml:4:"), "{err}");
}

#[test]
fn tokens_roles_and_the_audit_log_from_the_cli() {
    let g = Gantry::new();
    let admin = g.ok(&["token", "create", "--name", "admin", "--role", "admin"]);
    let admin = admin.trim().to_string();
    assert!(admin.starts_with("gantry_"), "{admin}");
    let server = start_server(&g, &["--auth"]);

    let (code, _, err) = remote(&g, &server.url, None, &["runs"]);
    assert_eq!(code, 6, "{err}");
    let (code, _, err) = remote(&g, &server.url, Some("gantry_nope"), &["runs"]);
    assert_eq!(code, 6, "{err}");
    let (code, viewer, err) = remote(
        &g,
        &server.url,
        Some(&admin),
        &["token", "create", "--name", "viewer", "--role", "viewer"],
    );
    assert_eq!(code, 0, "{err}");
    let viewer = viewer.trim().to_string();
    let file = g.write(
        "q.yaml",
        "name: q\nsteps:\n  - name: a\n    image: busybox:1\n    command: [\"true\"]\n",
    );
    let (code, _, err) = remote(
        &g,
        &server.url,
        Some(&viewer),
        &["run", file.to_str().unwrap()],
    );
    assert_eq!(code, 6, "{err}");
    let (code, _, err) = remote(
        &g,
        &server.url,
        Some(&admin),
        &["run", file.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let (code, list, _) = remote(&g, &server.url, Some(&viewer), &["runs"]);
    assert_eq!(code, 0);
    assert!(list.contains("succeeded"), "{list}");

    let (code, audit, err) = remote(
        &g,
        &server.url,
        Some(&admin),
        &["audit", "--output", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let audit: Value = serde_json::from_str(&audit).unwrap();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["run.submit", "token.create", "token.create"]);
    let (_, tokens, _) = remote(&g, &server.url, Some(&admin), &["token", "list"]);
    assert!(tokens.contains("viewer") && !tokens.contains(&viewer[20..]));
    let (code, _, err) = remote(
        &g,
        &server.url,
        Some(&admin),
        &["token", "revoke", "viewer"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = remote(&g, &server.url, Some(&viewer), &["runs"]);
    assert_eq!(code, 6);
}

#[test]
fn a_server_refuses_public_addresses_without_auth() {
    let g = Gantry::new();
    let out = g.run(&["server", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--auth"));
}

#[test]
fn a_server_killed_with_sigkill_restarts_with_every_acknowledged_write() {
    let g = Gantry::new();
    let file = g.write(
        "crash.yaml",
        r#"
name: crash
steps:
  - name: first
    image: busybox:1
    command: [sh, -c, 'echo done > /gantry/outputs/x']
    outputs: [x]
  - name: stuck
    image: busybox:1
    command: [sh, -c, 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.01; done']
    inputs: { x: first.x }
"#,
    );
    let quick = g.write(
        "quick.yaml",
        "name: quick\nsteps:\n  - name: a\n    image: busybox:1\n    command: [\"true\"]\n",
    );
    let mut server = start_server(&g, &[]);
    let (code, _, err) = remote(&g, &server.url, None, &["run", quick.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let mut client = Command::new(crate::support::BIN)
        .args(["--server", &server.url, "run", file.to_str().unwrap()])
        .env("GANTRY_HOME", g.home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut id = String::new();
    let running = eventually(|| {
        let (_, out, _) = remote(&g, &server.url, None, &["runs", "--output", "json"]);
        let Ok(runs) = serde_json::from_str::<Value>(&out) else {
            return false;
        };
        let Some(r) = runs
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["pipeline"] == "crash")
        else {
            return false;
        };
        id = r["id"].as_str().unwrap().to_string();
        let show = remote_json(&g, &server.url, &["show", &id]);
        // Running, and with some of its log stored.
        let (_, last, _) = remote(
            &g,
            &server.url,
            None,
            &["logs", &id, "stuck", "--tail", "1"],
        );
        let ticks: u64 = last
            .trim()
            .strip_prefix("tick ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        show["steps"][1]["status"] == "running" && ticks >= 20
    });
    assert!(running, "the second step never ran (or logged nothing)");
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let _ = client.wait();

    let server = start_server(&g, &[]);
    let runs = remote_json(&g, &server.url, &["runs"]);
    let statuses: Vec<(&str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["pipeline"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses, [("crash", "interrupted"), ("quick", "succeeded")]);
    let show = remote_json(&g, &server.url, &["show", &id]);
    assert_eq!(show["steps"][0]["status"], "succeeded");
    assert!(
        show["steps"][0]["outputs"]["x"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(show["steps"][1]["status"], "interrupted");
    // Log lines are stored every 200 ms, so the last ones before a crash may be lost: what
    // was stored reads back as a whole prefix of the output, in order.
    let (code, log, err) = remote(&g, &server.url, None, &["logs", &id, "stuck"]);
    assert_eq!(code, 0, "{err}");
    let ticks: Vec<u64> = log
        .lines()
        .map(|l| l.strip_prefix("tick ").unwrap().parse().unwrap())
        .collect();
    assert!(ticks.len() >= 20, "{log}");
    assert!(
        ticks.iter().enumerate().all(|(i, &t)| t == i as u64 + 1),
        "{log}"
    );
    // The restarted server runs new work, reaping what the killed one left.
    let (code, _, err) = remote(&g, &server.url, None, &["run", quick.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(g.runc_containers().is_empty());
}

/// A bare HTTP/1.1 request on loopback: (status, parsed JSON body).
fn http_json(url: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    http_json_as(url, None, method, path, body)
}

/// [`http_json`] with `Authorization: Bearer TOKEN` when a token is given.
fn http_json_as(
    url: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, payload) = text.split_once("\r\n\r\n").unwrap();
    let payload = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // One or more chunks: keep the data lines only.
        payload
            .split("\r\n")
            .collect::<Vec<_>>()
            .chunks(2)
            .filter_map(|c| c.get(1).copied())
            .collect::<String>()
    } else {
        payload.to_string()
    };
    (
        status,
        serde_json::from_str(&payload).unwrap_or(Value::Null),
    )
}

#[test]
fn every_pipeline_run_is_also_an_mlflow_run_with_its_params_and_step_metrics() {
    let g = Gantry::new();
    let file = g.write(
        "scored.yaml",
        r#"
name: scored
params:
  threshold: 0.5
steps:
  - name: score
    image: busybox:1
    command: [sh, -c, 'echo "{\"accuracy\": 0.93, \"loss\": {\"train\": 0.25}}" > /gantry/metrics.json']
"#,
    );
    let (code, s, err) = g.run_pipeline(&file, &["-p", "threshold=0.7"]);
    assert_eq!(code, 0, "{err}");
    let run_id = s["run_id"].as_str().unwrap().to_string();

    let server = start_server(&g, &[]);
    let (status, exp) = http_json(
        &server.url,
        "GET",
        "/api/2.0/mlflow/experiments/get-by-name?experiment_name=scored",
        None,
    );
    assert_eq!(status, 200, "{exp}");
    let experiment_id = exp["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, found) = http_json(
        &server.url,
        "POST",
        "/api/2.0/mlflow/runs/search",
        Some(&serde_json::json!({
            "experiment_ids": [experiment_id],
            "filter": format!("tags.`gantry.run_id` = '{run_id}'"),
        })),
    );
    assert_eq!(status, 200, "{found}");
    let runs = found["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{found:#}");
    let run = &runs[0];
    assert_eq!(run["info"]["status"], "FINISHED");
    assert_eq!(run["info"]["run_name"], run_id.as_str());
    let metric = |k: &str| {
        run["data"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == k)
            .unwrap_or_else(|| panic!("no metric {k} in {run:#}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(metric("score.accuracy"), 0.93);
    assert_eq!(metric("score.loss.train"), 0.25);
    let params = run["data"]["params"].as_array().unwrap();
    assert!(
        params
            .iter()
            .any(|p| p["key"] == "threshold" && p["value"] == "0.7"),
        "{run:#}"
    );
}

#[test]
fn steps_under_the_server_log_to_mlflow_through_a_relay_while_their_network_stays_closed() {
    let g = Gantry::new();
    let server = start_server(&g, &[]);
    let port = server
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let file = g.write(
        "relay.yaml",
        &r#"
name: relay
steps:
  - name: logs
    image: busybox:1
    command:
      - sh
      - -c
      - |
        echo "uri=$MLFLOW_TRACKING_URI"
        echo "ifaces=$(ls /sys/class/net | tr '\n' ' ')"
        wget -q -O- --header 'Content-Type: application/json' --post-data "{\"run_id\":\"$MLFLOW_RUN_ID\",\"key\":\"inside\",\"value\":1.5,\"timestamp\":1,\"step\":0}" "$MLFLOW_TRACKING_URI/api/2.0/mlflow/runs/log-metric" && echo LOGGED
        if wget -q -T 2 -O- http://127.0.0.1:PORT/healthz >/dev/null 2>&1; then echo DIRECT=open; else echo DIRECT=closed; fi
"#
        .replace("PORT", &port),
    );
    let (code, out, err) = remote(
        &g,
        &server.url,
        None,
        &["run", file.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let summary: Value = serde_json::from_str(&out).unwrap();
    let run_id = summary["run_id"].as_str().unwrap().to_string();
    let (_, logs, _) = remote(&g, &server.url, None, &["logs", &run_id, "logs"]);
    assert!(logs.contains("uri=http://127.0.0.1:5000"), "{logs}");
    assert!(
        logs.contains("ifaces=lo "),
        "the step keeps no network: {logs}"
    );
    assert!(logs.contains("LOGGED"), "{logs}");
    assert!(
        logs.contains("DIRECT=closed"),
        "only the relay is reachable: {logs}"
    );

    // The metric landed in the step's own MLflow run, a child of the pipeline run's.
    let (_, exp) = http_json(
        &server.url,
        "GET",
        "/api/2.0/mlflow/experiments/get-by-name?experiment_name=relay",
        None,
    );
    let experiment_id = exp["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, found) = http_json(
        &server.url,
        "POST",
        "/api/2.0/mlflow/runs/search",
        Some(&serde_json::json!({
            "experiment_ids": [experiment_id],
            "filter": format!("tags.`gantry.run_id` = '{run_id}' and tags.`gantry.step` = 'logs'"),
        })),
    );
    assert_eq!(status, 200, "{found}");
    let child = &found["runs"][0];
    assert_eq!(child["info"]["status"], "FINISHED", "{found:#}");
    let metrics = child["data"]["metrics"].as_array().unwrap();
    assert!(
        metrics
            .iter()
            .any(|m| m["key"] == "inside" && m["value"] == 1.5),
        "{child:#}"
    );
    let tags = child["data"]["tags"].as_array().unwrap();
    assert!(
        tags.iter().any(|t| t["key"] == "mlflow.parentRunId"),
        "{child:#}"
    );

    // What the step logged shows up in Gantry's own CLI, remotely and locally.
    let shown = remote_json(&g, &server.url, &["show", &run_id]);
    assert_eq!(
        shown["mlflow"]["steps"]["logs"]["metrics"]["inside"], 1.5,
        "{shown:#}"
    );
    let local = g.show(&run_id);
    assert_eq!(local["mlflow"]["steps"]["logs"]["metrics"]["inside"], 1.5);
    let (_, text, _) = remote(&g, &server.url, None, &["show", &run_id]);
    assert!(
        text.contains("logged through MLflow from inside steps"),
        "{text}"
    );
    assert!(text.contains("metric inside"), "{text}");
}

#[test]
fn with_auth_steps_log_to_mlflow_with_a_run_scoped_token_that_is_revoked_afterwards() {
    let g = Gantry::new();
    let admin = g.ok(&["token", "create", "--name", "admin", "--role", "admin"]);
    let admin = admin.trim().to_string();
    let server = start_server(&g, &["--auth"]);
    // Another project's MLflow experiment and run, which the step's token must not reach.
    let (status, v) = http_json_as(
        &server.url,
        Some(&admin),
        "POST",
        "/api/2.0/mlflow/experiments/create",
        Some(&serde_json::json!({"name": "elsewhere"})),
    );
    assert_eq!(status, 200, "{v}");
    let (status, v) = http_json_as(
        &server.url,
        Some(&admin),
        "POST",
        "/api/2.0/mlflow/runs/create",
        Some(&serde_json::json!({"experiment_id": v["experiment_id"]})),
    );
    assert_eq!(status, 200, "{v}");
    let other_run = v["run"]["info"]["run_id"].as_str().unwrap();
    let file = g.write(
        "authed.yaml",
        &r#"
name: authed
steps:
  - name: logs
    image: busybox:1
    command:
      - sh
      - -c
      - |
        [ -n "$MLFLOW_TRACKING_TOKEN" ] && echo HAS_TOKEN
        echo "TOKEN $MLFLOW_TRACKING_TOKEN"
        api="$MLFLOW_TRACKING_URI/api/2.0/mlflow"
        auth="Authorization: Bearer $MLFLOW_TRACKING_TOKEN"
        status() { wget -S -q -O /dev/null --header "$auth" "$@" 2>&1 | grep -o 'HTTP/1.[01] [0-9]*' | tail -1 | cut -d' ' -f2; }
        body="{\"run_id\":\"$MLFLOW_RUN_ID\",\"key\":\"inside\",\"value\":2.5,\"timestamp\":1,\"step\":0}"
        url="$api/runs/log-metric"
        wget -q -O- --header 'Content-Type: application/json' --post-data "$body" "$url" >/dev/null 2>&1 || echo NO_TOKEN_REFUSED
        wget -q -O- --header 'Content-Type: application/json' --header "$auth" --post-data "$body" "$url" && echo LOGGED
        echo "OWN_RUN $(status "$api/runs/get?run_id=$MLFLOW_RUN_ID")"
        echo "OTHER_RUN $(status "$api/runs/get?run_id=OTHER_RUN_ID")"
        echo "OTHER_EXPERIMENT $(status --header 'Content-Type: application/json' --post-data '{"name":"elsewhere/mine"}' "$api/experiments/create")"
"#
        .replace("OTHER_RUN_ID", other_run),
    );
    let (code, out, err) = remote(
        &g,
        &server.url,
        Some(&admin),
        &["run", file.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let run_id = serde_json::from_str::<Value>(&out).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, logs, _) = remote(&g, &server.url, Some(&admin), &["logs", &run_id, "logs"]);
    assert!(logs.contains("HAS_TOKEN"), "{logs}");
    assert!(
        logs.contains("NO_TOKEN_REFUSED"),
        "the relay adds no credentials: {logs}"
    );
    assert!(logs.contains("LOGGED"), "{logs}");
    // During the run the token works for the run's own project only: another project's run
    // answers as missing, and naming an experiment after another project is forbidden.
    assert!(logs.contains("OWN_RUN 200"), "{logs}");
    assert!(logs.contains("OTHER_RUN 404"), "{logs}");
    assert!(logs.contains("OTHER_EXPERIMENT 403"), "{logs}");

    // Once the run is over, the same token is refused outright.
    let secret = logs
        .lines()
        .find_map(|l| l.trim().strip_prefix("TOKEN "))
        .unwrap_or_else(|| panic!("the step printed no token: {logs}"))
        .trim()
        .to_string();
    let (status, v) = http_json_as(
        &server.url,
        Some(&secret),
        "GET",
        &format!("/api/2.0/mlflow/runs/get?run_id={other_run}"),
        None,
    );
    assert_eq!(status, 401, "a finished run's token still works: {v}");
    let (status, v) = http_json_as(
        &server.url,
        Some(&secret),
        "POST",
        "/api/2.0/mlflow/experiments/create",
        Some(&serde_json::json!({"name": "authed/after"})),
    );
    assert_eq!(status, 401, "a finished run's token still works: {v}");

    // The step's token is listed as scoped to the run's project and revoked; its secret
    // never appears in the token list.
    let (code, tokens, err) = remote(
        &g,
        &server.url,
        Some(&admin),
        &["token", "list", "--output", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let tokens: Value = serde_json::from_str(&tokens).unwrap();
    let step_token = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == format!("steps-of-{run_id}").as_str())
        .unwrap_or_else(|| panic!("no step token in {tokens:#}"));
    assert_eq!(step_token["role"], "editor");
    assert_eq!(step_token["project"], "authed");
    assert!(!step_token["revoked_at_ms"].is_null(), "{step_token:#}");
    assert!(
        !tokens.to_string().contains("gantry_t") && !tokens.to_string().contains(&secret),
        "no secret is listed"
    );
}
