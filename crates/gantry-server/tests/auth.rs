//! `--auth`: bearer tokens, roles, project scopes and the audit log, over HTTP against a
//! real server.

#![allow(clippy::unwrap_used)]

mod support;

use gantry_server::auth::{Role, issue_token};
use serde_json::{Value, json};
use support::{Options, TestServer};

fn spec(name: &str) -> String {
    format!(
        "name: {name}\nsteps:\n  - name: a\n    image: busybox:1\n    command: [sh, -c, 'echo hi; echo x > /gantry/outputs/o']\n    outputs: [o]\n"
    )
}

async fn token(s: &TestServer, name: &str, role: Role, project: Option<&str>) -> String {
    issue_token(&s.state.store, name, role, project)
        .await
        .unwrap()
        .secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_and_revoked_tokens_get_401_json() {
    let s = TestServer::start(Options {
        auth: true,
        ..Options::default()
    })
    .await;
    let admin = token(&s, "root", Role::Admin, None).await;
    // Health stays open for probes.
    assert_eq!(s.get("/healthz", None).await.0, 200);

    let forged = format!("gantry_tffffffffffff_{}", "0".repeat(64));
    // Change the last hex digit (to another digit: "0" would be no change 1 time in 16).
    let last = if admin.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{last}", &admin[..admin.len() - 1]);
    assert_ne!(tampered, admin);
    for (tok, what) in [
        (None, "missing"),
        (Some("not-a-token"), "malformed"),
        (Some(forged.as_str()), "unknown id"),
        (Some(tampered.as_str()), "wrong secret"),
    ] {
        for path in ["/api/v1/runs", "/metrics", "/api/v1/tokens"] {
            let (status, v) = s.get(path, tok).await;
            assert_eq!(status, 401, "{what} on {path}: {v:#}");
            assert_eq!(v["error"]["code"], "unauthenticated", "{what}: {v:#}");
        }
    }
    // MLflow clients get MLflow-shaped errors.
    let (status, v) = s.get("/api/2.0/mlflow/experiments/search", None).await;
    assert_eq!(status, 401);
    assert_eq!(v["error_code"], "UNAUTHENTICATED", "{v:#}");

    assert_eq!(s.get("/api/v1/runs", Some(&admin)).await.0, 200);
    let (status, _) = s.post("/api/v1/tokens/root/revoke", Some(&admin), "").await;
    assert_eq!(status, 200);
    let (status, v) = s.get("/api/v1/runs", Some(&admin)).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_writes_and_token_management() {
    let s = TestServer::start(Options {
        auth: true,
        ..Options::default()
    })
    .await;
    let admin = token(&s, "admin", Role::Admin, None).await;
    let viewer = token(&s, "viewer", Role::Viewer, None).await;
    let editor = token(&s, "editor", Role::Editor, None).await;
    let body = json!({"spec_yaml": spec("alpha")}).to_string();

    let (status, v) = s.post("/api/v1/runs", Some(&viewer), &body).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("permission_denied")),
        "{v:#}"
    );
    let id = s.submit(&spec("alpha"), Some(&editor)).await;
    s.wait_terminal(&id, Some(&viewer)).await;
    let (status, _) = s
        .post(&format!("/api/v1/runs/{id}/cancel"), Some(&viewer), "")
        .await;
    assert_eq!(status, 403);

    let new = json!({"name": "ci", "role": "viewer"}).to_string();
    for t in [&viewer, &editor] {
        let (status, v) = s.post("/api/v1/tokens", Some(t), &new).await;
        assert_eq!(status, 403, "{v:#}");
        assert_eq!(s.get("/api/v1/tokens", Some(t)).await.0, 403);
        assert_eq!(s.get("/api/v1/audit", Some(t)).await.0, 403);
    }
    let (status, created) = s.post("/api/v1/tokens", Some(&admin), &new).await;
    assert_eq!(status, 201, "{created:#}");
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(s.get("/api/v1/runs", Some(&secret)).await.0, 200);
    let (status, v) = s
        .post(
            "/api/v1/tokens",
            Some(&admin),
            &json!({"name": "x", "role": "root"}).to_string(),
        )
        .await;
    assert_eq!((status, v["error"]["field"].as_str()), (400, Some("role")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_tokens_see_only_their_project() {
    let s = TestServer::start(Options {
        auth: true,
        ..Options::default()
    })
    .await;
    let admin = token(&s, "admin", Role::Admin, None).await;
    let alpha_editor = token(&s, "alpha-ed", Role::Editor, Some("alpha")).await;
    let alpha_viewer = token(&s, "alpha-view", Role::Viewer, Some("alpha")).await;

    let a = s.submit(&spec("alpha"), Some(&alpha_editor)).await;
    let (status, v) = s
        .post(
            "/api/v1/runs",
            Some(&alpha_editor),
            &json!({"spec_yaml": spec("beta")}).to_string(),
        )
        .await;
    assert_eq!(status, 403, "{v:#}");
    let b = s.submit(&spec("beta"), Some(&admin)).await;
    s.wait_terminal(&a, Some(&admin)).await;
    let beta = s.wait_terminal(&b, Some(&admin)).await;

    let ids = |v: &Value| -> Vec<String> {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, mine) = s.get("/api/v1/runs", Some(&alpha_viewer)).await;
    assert_eq!(ids(&mine), vec![a.clone()]);
    let (_, asked) = s
        .get("/api/v1/runs?pipeline=beta", Some(&alpha_viewer))
        .await;
    assert!(ids(&asked).is_empty());
    let (_, everything) = s.get("/api/v1/runs", Some(&admin)).await;
    assert_eq!(ids(&everything).len(), 2);

    let digest = beta["steps"][0]["outputs"]["o"].as_str().unwrap();
    for path in [
        format!("/api/v1/runs/{b}"),
        format!("/api/v1/runs/{b}/logs"),
        format!("/api/v1/runs/{b}/artifacts"),
        format!("/api/v1/runs/{b}/artifacts/{digest}"),
    ] {
        let (status, v) = s.get(&path, Some(&alpha_viewer)).await;
        assert_eq!(status, 404, "{path}: {v:#}");
        assert!(!v.to_string().contains("beta"), "{path} leaks: {v:#}");
    }
    let (status, _) = s
        .post(&format!("/api/v1/runs/{b}/cancel"), Some(&alpha_editor), "")
        .await;
    assert_eq!(status, 404);
    // The global artifact route is for unscoped tokens; scoped ones go through a run.
    let (status, _) = s
        .get(&format!("/api/v1/artifacts/{digest}"), Some(&alpha_viewer))
        .await;
    assert_eq!(status, 403);
    let alpha_digest = s.wait_terminal(&a, Some(&alpha_viewer)).await["steps"][0]["outputs"]["o"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = s
        .get(
            &format!("/api/v1/runs/{a}/artifacts/{alpha_digest}"),
            Some(&alpha_viewer),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_is_audited_and_secrets_never_leak() {
    let s = TestServer::start(Options {
        auth: true,
        ..Options::default()
    })
    .await;
    let admin = token(&s, "admin", Role::Admin, None).await;
    let (_, created) = s
        .post(
            "/api/v1/tokens",
            Some(&admin),
            &json!({"name": "robot", "role": "editor", "project": "alpha"}).to_string(),
        )
        .await;
    let robot = created["secret"].as_str().unwrap().to_string();
    let id = s
        .submit(
            "name: alpha\nsteps:\n  - name: s\n    image: busybox:1\n    command: [sh, -c, 'sleep 300']\n",
            Some(&robot),
        )
        .await;
    s.wait_run(&id, Some(&robot), |v| v["steps"][0]["status"] == "running")
        .await;
    assert_eq!(
        s.post(&format!("/api/v1/runs/{id}/cancel"), Some(&robot), "")
            .await
            .0,
        202
    );
    s.wait_terminal(&id, Some(&robot)).await;
    assert_eq!(
        s.post("/api/v1/tokens/robot/revoke", Some(&admin), "")
            .await
            .0,
        200
    );
    // A refused write is not a write.
    let viewer = token(&s, "v", Role::Viewer, None).await;
    let _ = s
        .post(
            "/api/v1/runs",
            Some(&viewer),
            &json!({"spec_yaml": "name: x"}).to_string(),
        )
        .await;

    let (status, audit) = s.get("/api/v1/audit", Some(&admin)).await;
    assert_eq!(status, 200);
    let entries: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|a| {
            (
                a["principal"].as_str().unwrap().to_string(),
                a["action"].as_str().unwrap().to_string(),
                a["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            ("admin".into(), "token.create".into(), "robot".into()),
            ("robot".into(), "run.submit".into(), id.clone()),
            ("robot".into(), "run.cancel".into(), id.clone()),
            ("admin".into(), "token.revoke".into(), "robot".into()),
        ]
    );

    // Neither secret appears in the audit log, the token list, or any stored record.
    let (_, tokens) = s.get("/api/v1/tokens", Some(&admin)).await;
    let (_, run) = s.get(&format!("/api/v1/runs/{id}"), Some(&admin)).await;
    for secret in [&admin, &robot] {
        let random = secret.rsplit('_').next().unwrap();
        for (what, text) in [
            ("audit", audit.to_string()),
            ("tokens", tokens.to_string()),
            ("run", run.to_string()),
        ] {
            assert!(
                !text.contains(random),
                "a secret leaks through {what}: {text}"
            );
        }
    }
    // Everything the database holds about tokens and writes, as bytes.
    let (db, wal) = if s.state.store.backend() == "sqlite" {
        (
            std::fs::read(s.home.path().join("gantry.db")).unwrap(),
            std::fs::read(s.home.path().join("gantry.db-wal")).unwrap_or_default(),
        )
    } else {
        let pool = sqlx::PgPool::connect(&s.db_url).await.unwrap();
        let mut all = Vec::new();
        for (table, query) in [
            ("api_tokens", "SELECT CAST(t AS TEXT) FROM api_tokens t"),
            ("audit_log", "SELECT CAST(t AS TEXT) FROM audit_log t"),
        ] {
            let rows: Vec<String> = sqlx::query_scalar(query).fetch_all(&pool).await.unwrap();
            assert!(!rows.is_empty(), "{table} is empty");
            all.extend(rows.join("\n").into_bytes());
        }
        (all, Vec::new())
    };
    for secret in [&admin, &robot] {
        let needle = secret.rsplit('_').next().unwrap().as_bytes();
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "a token secret is stored in the database"
            );
        }
    }
}

/// The OIP gRPC service sits behind the same authentication: over HTTP/2 (what gRPC clients
/// speak, prior knowledge without TLS) a call without a token is refused with 401, which gRPC
/// clients read as UNAUTHENTICATED, and with one it is answered as a gRPC message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_need_a_token_like_every_api_call() {
    use gantry_serve::grpc::{decode, frame, proto};
    let s = TestServer::start(Options {
        auth: true,
        ..Options::default()
    })
    .await;
    let viewer = token(&s, "reader", Role::Viewer, None).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let call = |method: &str, body: bytes::Bytes, bearer: Option<&str>| {
        let mut req = h2
            .post(s.url(&format!("/inference.GRPCInferenceService/{method}")))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let live = frame(&proto::ServerLiveRequest {});
    let refused = call("ServerLive", live.clone(), None).await.unwrap();
    assert_eq!(refused.version(), reqwest::Version::HTTP_2);
    assert_eq!(refused.status(), 401);
    let answered = call("ServerLive", live, Some(&viewer)).await.unwrap();
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.headers()["content-type"], "application/grpc+proto");
    let body = answered.bytes().await.unwrap();
    let message: proto::ServerLiveResponse = decode(&body).unwrap();
    assert!(message.live);
    // An unknown deployment: no message, only the status (in the trailers).
    let ready = frame(&proto::ModelReadyRequest {
        name: "nothing-here".into(),
        version: String::new(),
    });
    let answered = call("ModelReady", ready, Some(&viewer)).await.unwrap();
    assert_eq!(answered.status(), 200);
    let message: proto::ModelReadyResponse = decode(&answered.bytes().await.unwrap()).unwrap();
    assert!(!message.ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_set_by_admins_refused_by_field_and_scoped_like_everything_else() {
    let s = TestServer::start(Options {
        auth: true,
        ..Options::default()
    })
    .await;
    let admin = token(&s, "admin", Role::Admin, None).await;
    let alpha_admin = token(&s, "alpha-admin", Role::Admin, Some("alpha")).await;
    let editor = token(&s, "editor", Role::Editor, None).await;
    let beta_viewer = token(&s, "beta-viewer", Role::Viewer, Some("beta")).await;
    let put = |tok: &str, body: &str| {
        let (s, tok, body) = (&s, tok.to_owned(), body.to_owned());
        async move {
            s.call(
                reqwest::Method::PUT,
                "/api/v1/projects/alpha/quota",
                Some(&tok),
                Some(&body),
            )
            .await
        }
    };

    let (status, q) = put(
        &admin,
        r#"{"cpu": "1", "memory": "1Gi", "max_runs": 2, "weight": 2}"#,
    )
    .await;
    assert_eq!(status, 200, "{q:#}");
    assert_eq!(
        (
            &q["cpu_millis"],
            &q["memory_bytes"],
            &q["max_runs"],
            &q["weight"],
            &q["gpus"]
        ),
        (
            &json!(1000),
            &json!(1 << 30),
            &json!(2),
            &json!(2),
            &Value::Null
        )
    );
    assert_eq!(q["updated_by"], "admin");
    // Only admins without a project set quotas.
    for tok in [&editor, &alpha_admin] {
        let (status, v) = put(tok, r#"{"cpu": 64}"#).await;
        assert_eq!(status, 403, "{v:#}");
    }
    // Bad input: 400 naming the field, and the quota is unchanged.
    for (body, field) in [
        (r#"{"cpu": "lots"}"#, "cpu"),
        (r#"{"cpu": -1}"#, "cpu"),
        (r#"{"memory": "1Zi"}"#, "memory"),
        (r#"{"gpus": -1}"#, "gpus"),
        (r#"{"gpus": 1.5}"#, "gpus"),
        (r#"{"max_runs": "two"}"#, "max_runs"),
        (r#"{"weight": 0}"#, "weight"),
        (r#"{"cpus": 2}"#, "cpus"),
        ("[1]", "body"),
    ] {
        let (status, v) = put(&admin, body).await;
        assert_eq!(
            (status, v["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {v:#}"
        );
    }
    let (_, again) = s.get("/api/v1/projects/alpha/quota", Some(&admin)).await;
    assert_eq!(again["cpu_millis"], 1000);

    // Seen by those who see the project.
    let (_, all) = s.get("/api/v1/quotas", Some(&admin)).await;
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    let (_, scoped) = s.get("/api/v1/quotas", Some(&beta_viewer)).await;
    assert_eq!(scoped, json!([]));
    let (status, _) = s
        .get("/api/v1/projects/alpha/quota", Some(&beta_viewer))
        .await;
    assert_eq!(status, 404);
    let (status, queue) = s.get("/api/v1/queue", Some(&beta_viewer)).await;
    assert_eq!(status, 200);
    assert!(
        queue["projects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["project"] == "beta"),
        "{queue:#}"
    );

    // The quota applies at submit: a step larger than it is refused with the reason.
    let big = "name: alpha\nsteps:\n  - name: a\n    image: busybox:1\n    command: [true]\n    resources: { cpu: 2 }\n";
    let (status, v) = s
        .post(
            "/api/v1/runs",
            Some(&admin),
            &json!({"spec_yaml": big}).to_string(),
        )
        .await;
    assert_eq!(status, 400, "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("project alpha's quota is 1 CPU"),
        "{v:#}"
    );
    let (status, v) = s
        .post(
            "/api/v1/runs",
            Some(&admin),
            &json!({"spec_yaml": spec("alpha"), "priority": "urgent"}).to_string(),
        )
        .await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("priority"))
    );

    // Removed once; the audit log has both writes.
    for want in [200, 404] {
        let (status, v) = s
            .call(
                reqwest::Method::DELETE,
                "/api/v1/projects/alpha/quota",
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(status, want, "{v:#}");
    }
    let (_, audit) = s.get("/api/v1/audit", Some(&admin)).await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"quota.set") && actions.contains(&"quota.delete"),
        "{actions:?}"
    );
}
