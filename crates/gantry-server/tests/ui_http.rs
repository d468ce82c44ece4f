//! The web UI's security rules over HTTP: sessions (login, logout, revocation), which routes
//! a session cookie opens, same-origin writes, security headers, escaping, static assets and
//! 404s. The whole router is served on 127.0.0.1:0 without an engine (no run executes here),
//! on SQLite — or on PostgreSQL when `GANTRY_TEST_SERVER_ON_POSTGRES` is set, like the other
//! server suites.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use gantry_artifacts::ArtifactStore;
use gantry_server::auth::{Role, hash_secret, issue_token};
use gantry_server::{AppState, ServerConfig};
use gantry_store::{LogChunk, RunRecord, RunStatus, StepRunRecord, StepStatus, Store};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;

const XSS: &str = "<script>alert(1)</script>";

struct Ui {
    base: String,
    /// `127.0.0.1:port`, what the client sends as Host.
    host: String,
    store: Store,
    http: reqwest::Client,
    _home: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    fn location(&self) -> &str {
        self.header("location")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `application/x-www-form-urlencoded`, as a browser sends a form.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

const SAME_ORIGIN: (&str, &str) = ("sec-fetch-site", "same-origin");

impl Ui {
    async fn start(auth: bool) -> Ui {
        let home = tempfile::tempdir().unwrap();
        let db_url = support::database_url(home.path()).await;
        let store = Store::connect(&db_url).await.unwrap();
        let artifacts = ArtifactStore::open_local(&home.path().join("artifacts")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let base = format!("http://{host}");
        let mut config = ServerConfig::local(&base, home.path().join("mlflow-artifacts"));
        config.auth = auth;
        let state = AppState::new(store.clone(), artifacts, config);
        let app = gantry_server::router(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Ui {
            base,
            host,
            store,
            http,
            _home: home,
            task,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header("cookie", format!("gantry_session={c}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        self.send(Method::GET, path, cookie, &[], None).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::POST, path, cookie, headers, Some(String::new()))
            .await
    }

    async fn login_with(&self, token: &str, next: &str, headers: &[(&str, &str)]) -> Resp {
        let body = form(&[("token", token), ("next", next)]);
        self.send(Method::POST, "/login", None, headers, Some(body))
            .await
    }

    /// Logs in with `token` and returns the session secret from the cookie.
    async fn login(&self, token: &str) -> String {
        let r = self.login_with(token, "/runs", &[SAME_ORIGIN]).await;
        assert_eq!(r.status, 303, "{}", r.body);
        session_of(&r).unwrap()
    }

    async fn token(&self, name: &str, role: Role) -> String {
        issue_token(&self.store, name, role, None)
            .await
            .unwrap()
            .secret
    }

    fn run_record(id: &str, pipeline: &str, status: RunStatus) -> RunRecord {
        RunRecord {
            id: id.into(),
            pipeline: pipeline.into(),
            status,
            spec_file: "/work/p/gantry.yaml".into(),
            // Not a valid spec: the page's graph then shows the recorded steps.
            spec_yaml: String::new(),
            params_json: "{}".into(),
            images_json: "{}".into(),
            no_cache: false,
            rerun_of: None,
            created_at_ms: 1_700_000_000_000,
            started_at_ms: Some(1_700_000_000_000),
            finished_at_ms: None,
            owner_pid: None,
            owner_host: None,
            error: None,
            submitted_by: None,
        }
    }

    async fn run(&self, id: &str, pipeline: &str, status: RunStatus) {
        let r = Ui::run_record(id, pipeline, status);
        self.store.create_run(&r).await.unwrap();
    }

    async fn step(&self, id: &str, run_id: &str, name: &str, status: StepStatus) {
        self.store
            .upsert_step_run(&StepRunRecord {
                id: id.into(),
                run_id: run_id.into(),
                step: name.into(),
                seq: 0,
                attempt: 1,
                status,
                exit_code: None,
                reason: None,
                cache_key: None,
                cached_from: None,
                image_digest: None,
                started_at_ms: Some(1_700_000_000_000),
                finished_at_ms: None,
                requested_cpu_millis: 1000,
                requested_memory_bytes: 1 << 30,
                requested_gpu: 0,
                peak_memory_bytes: None,
                cpu_micros: None,
                wall_ms: None,
                inputs_json: "{}".into(),
                outputs_json: "{}".into(),
                gpu_model: None,
                gpu_util_percent: None,
                gpu_memory_peak_bytes: None,
                gpu_idle_ms: None,
                resources_note: None,
                usage_key: None,
                gpu_devices: None,
            })
            .await
            .unwrap();
    }
}

/// The session secret a login response sets, if any.
fn session_of(r: &Resp) -> Option<String> {
    let c = r.header("set-cookie");
    let v = c.strip_prefix("gantry_session=")?;
    let secret = v.split(';').next()?;
    (!secret.is_empty()).then(|| secret.to_owned())
}

/// Whether `html` shows [`XSS`] as text: `<` and `>` as named or numeric references
/// (askama writes `&#60;`, the SVG writer `&lt;`).
fn shows_escaped(html: &str) -> bool {
    html.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
        || html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
}

#[track_caller]
fn assert_security_headers(r: &Resp, what: &str) {
    let csp = r.header("content-security-policy");
    for directive in [
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            csp.split(';').any(|d| d.trim() == directive),
            "{what}: CSP lacks {directive}: {csp:?}"
        );
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
    assert_eq!(r.header("x-content-type-options"), "nosniff", "{what}");
}

#[track_caller]
fn assert_html(r: &Resp, what: &str) {
    assert!(
        r.header("content-type").starts_with("text/html"),
        "{what}: {:?}",
        r.header("content-type")
    );
}

#[track_caller]
fn assert_refused_cross_origin(r: &Resp, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.body);
    assert_html(r, what);
    assert!(r.body.contains("cross-origin"), "{what}: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_and_a_login_starts_one() {
    let ui = Ui::start(true).await;
    let admin = ui.token("root", Role::Admin).await;

    let r = ui.get("/runs", None).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/login?next=%2Fruns");
    let r = ui.get("/runs?status=failed&pipeline=a", None).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.location(),
        "/login?next=%2Fruns%3Fstatus%3Dfailed%26pipeline%3Da"
    );
    // A session cookie that is not one of ours changes nothing.
    let r = ui.get("/runs", Some(&"ab".repeat(32))).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/login?next=%2Fruns");

    let r = ui.get("/login?next=%2Fruns", None).await;
    assert_eq!(r.status, 200);
    assert_html(&r, "login page");
    assert!(r.body.contains("name=\"token\""), "{}", r.body);
    assert_security_headers(&r, "login page");

    // Wrong tokens: the form again, with 401 and no cookie.
    let last = if admin.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{last}", &admin[..admin.len() - 1]);
    for wrong in [tampered.as_str(), "not-a-token", ""] {
        let r = ui.login_with(wrong, "/runs", &[SAME_ORIGIN]).await;
        assert_eq!(r.status, 401, "{wrong}: {}", r.body);
        assert_html(&r, "refused login");
        assert!(r.body.contains("unknown or revoked"), "{}", r.body);
        assert_eq!(r.header("set-cookie"), "", "{wrong}");
        assert_security_headers(&r, "refused login");
    }

    // The right token: a session cookie, back to `next`.
    let r = ui.login_with(&admin, "/runs", &[SAME_ORIGIN]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/runs");
    let cookie = r.header("set-cookie").to_owned();
    let secret = session_of(&r).unwrap();
    assert_eq!(secret.len(), 64, "{cookie}");
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()), "{cookie}");
    assert_eq!(
        cookie,
        format!("gantry_session={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200")
    );
    // The store keeps only its hash.
    let token = ui
        .store
        .ui_session(&hash_secret(&secret), gantry_engine::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.name, "root");
    assert!(
        ui.store
            .ui_session(&secret, gantry_engine::now_ms())
            .await
            .unwrap()
            .is_none()
    );
    // The login is audited.
    let audit = ui.store.list_audit(10).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "ui.login" && a.principal == "root"),
        "{audit:?}"
    );

    // Behind a TLS proxy the cookie is Secure; each login is a new session.
    let r = ui
        .login_with(
            &admin,
            "/runs",
            &[SAME_ORIGIN, ("x-forwarded-proto", "https")],
        )
        .await;
    assert_eq!(r.status, 303);
    let tls_cookie = r.header("set-cookie").to_owned();
    let tls_secret = session_of(&r).unwrap();
    assert_ne!(tls_secret, secret);
    assert_eq!(
        tls_cookie,
        format!(
            "gantry_session={tls_secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200; Secure"
        )
    );

    // With the cookie: the pages.
    let r = ui.get("/runs", Some(&secret)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_html(&r, "/runs");
    assert_security_headers(&r, "/runs");
    let r = ui.get("/", Some(&tls_secret)).await;
    assert_eq!(r.status, 200);

    // A login form posted from another site is refused (login CSRF), and starts nothing.
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", "http://evil.example")],
        vec![],
    ] {
        let r = ui.login_with(&admin, "/runs", &headers).await;
        assert_refused_cross_origin(&r, &format!("login with {headers:?}"));
        assert_eq!(r.header("set-cookie"), "");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sends_back_only_to_this_server() {
    let ui = Ui::start(true).await;
    let admin = ui.token("root", Role::Admin).await;
    for (next, want) in [
        ("/runs/r-1?tab=logs", "/runs/r-1?tab=logs"),
        ("/models", "/models"),
        ("//evil.example", "/runs"),
        ("//evil.example/runs", "/runs"),
        ("https://evil.example/", "/runs"),
        ("http:evil.example", "/runs"),
        ("/\\evil.example", "/runs"),
        ("javascript:alert(1)", "/runs"),
        ("", "/runs"),
    ] {
        let r = ui.login_with(&admin, next, &[SAME_ORIGIN]).await;
        assert_eq!(r.status, 303, "{next}: {}", r.body);
        assert_eq!(r.location(), want, "next={next:?}");
    }
    // The login page keeps `next` for its form, escaped.
    let r = ui
        .get(
            "/login?next=%2F%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("<script>alert"), "{}", r.body);
    assert!(shows_escaped(&r.body), "{}", r.body);
    let r = ui.get("/login?next=%2F%2Fevil.example", None).await;
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("evil.example"), "{}", r.body);
}

/// Browsers drop tabs and newlines from a URL before resolving it, so `/<TAB>/evil.example`
/// is `//evil.example`: another host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_next_with_a_tab_stays_on_this_server() {
    let ui = Ui::start(true).await;
    let admin = ui.token("root", Role::Admin).await;
    for next in ["/\t/evil.example", "/\t\\evil.example", "\t//evil.example"] {
        let r = ui.login_with(&admin, next, &[SAME_ORIGIN]).await;
        assert_eq!(r.status, 303, "{next:?}: {}", r.body);
        let browser_sees: String = r
            .location()
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .collect();
        assert!(
            browser_sees.starts_with('/')
                && !browser_sees.starts_with("//")
                && !browser_sees.starts_with("/\\"),
            "next={next:?} redirects to {:?}, which a browser resolves as {browser_sees:?}",
            r.location()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opens_pages_and_log_streams_but_not_the_json_api() {
    let ui = Ui::start(true).await;
    let admin = ui.token("root", Role::Admin).await;
    let secret = ui.login(&admin).await;
    ui.run("r-done", "iris", RunStatus::Succeeded).await;
    ui.step("s-done", "r-done", "train", StepStatus::Succeeded)
        .await;
    ui.store
        .append_logs(
            "s-done",
            &[LogChunk::message("stdout", 1, "epoch 1 done\n")],
        )
        .await
        .unwrap();

    // JSON API: the cookie is no credential there.
    for path in ["/api/v1/runs", "/api/v1/runs/r-done", "/api/v1/tokens"] {
        let r = ui.get(path, Some(&secret)).await;
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "unauthenticated", "{path}");
    }
    let r = ui
        .post("/api/v1/runs/r-done/cancel", Some(&secret), &[SAME_ORIGIN])
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    // ... while the bearer token works there.
    let r = ui
        .http
        .get(format!("{}/api/v1/runs", ui.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // The log stream the run page follows takes the cookie.
    let r = ui.get("/api/v1/runs/r-done/logs", Some(&secret)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type").starts_with("text/event-stream"),
        "{:?}",
        r.header("content-type")
    );
    assert!(r.body.contains("epoch 1 done"), "{}", r.body);
    // Without it, or with a made-up one: 401.
    for cookie in [None, Some("cd".repeat(32))] {
        let r = ui.get("/api/v1/runs/r-done/logs", cookie.as_deref()).await;
        assert_eq!(r.status, 401, "{cookie:?}: {}", r.body);
    }
    // The session sees what its token sees: an unknown run is 404, not 401.
    let r = ui.get("/api/v1/runs/r-nope/logs", Some(&secret)).await;
    assert_eq!(r.status, 404, "{}", r.body);

    // The pages themselves.
    let r = ui.get("/runs/r-done", Some(&secret)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_html(&r, "/runs/r-done");
    assert_security_headers(&r, "/runs/r-done");
    let r = ui.get("/runs/r-done/logs", Some(&secret)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("epoch 1 done"), "{}", r.body);
    assert_security_headers(&r, "/runs/r-done/logs");
    let r = ui.get("/runs/r-done/logs.txt", Some(&secret)).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/plain"));
    assert!(r.header("content-disposition").starts_with("attachment"));
    assert!(r.body.contains("epoch 1 done"));
    let r = ui.get("/audit", Some(&secret)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_security_headers(&r, "/audit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_must_come_from_this_origin() {
    let ui = Ui::start(true).await;
    let admin = ui.token("root", Role::Admin).await;
    let secret = ui.login(&admin).await;
    ui.run("r-live", "iris", RunStatus::Running).await;
    let other_port = "http://127.0.0.1:9999";
    let this_origin = format!("http://{}", ui.host);
    let refused: Vec<Vec<(&str, &str)>> = vec![
        vec![("sec-fetch-site", "same-site")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "none")],
        vec![("origin", other_port)],
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        vec![],
        // Sec-Fetch-Site, when sent, decides: a matching Origin does not override it.
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", this_origin.as_str()),
        ],
    ];
    for path in [
        "/runs/r-live/cancel",
        "/runs/r-live/rerun",
        "/runs/r-nope/cancel",
        "/models/m/aliases",
        "/deployments/d/promote",
        "/deployments/d/rollback",
        "/logout",
    ] {
        for headers in &refused {
            let r = ui.post(path, Some(&secret), headers).await;
            assert_refused_cross_origin(&r, &format!("{path} with {headers:?}"));
            assert_security_headers(&r, "refusal page");
        }
    }
    // The session survived the refused logouts.
    assert_eq!(ui.get("/runs", Some(&secret)).await.status, 200);

    // From this origin the handler answers: the run belongs to another process here (no
    // engine), so cancelling it is a conflict; an unknown run is not found.
    for headers in [vec![SAME_ORIGIN], vec![("origin", this_origin.as_str())]] {
        let r = ui
            .post("/runs/r-live/cancel", Some(&secret), &headers)
            .await;
        assert_eq!(r.status, 409, "{headers:?}: {}", r.body);
        assert!(!r.body.contains("cross-origin"), "{}", r.body);
        let r = ui
            .post("/runs/r-nope/cancel", Some(&secret), &headers)
            .await;
        assert_eq!(r.status, 404, "{headers:?}: {}", r.body);
        assert_html(&r, "404 page of a form");
    }
    // Without a session a form post is not redirected (it would lose the post): 401 page.
    let r = ui.post("/runs/r-live/cancel", None, &[SAME_ORIGIN]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_html(&r, "post without a session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_cannot_write_from_the_ui() {
    let ui = Ui::start(true).await;
    let viewer = ui.token("watcher", Role::Viewer).await;
    let editor = ui.token("dev", Role::Editor).await;
    let v = ui.login(&viewer).await;
    let e = ui.login(&editor).await;
    ui.run("r-live", "iris", RunStatus::Running).await;

    let r = ui
        .post("/runs/r-live/cancel", Some(&v), &[SAME_ORIGIN])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_html(&r, "viewer's cancel");
    assert!(!r.body.contains("cross-origin"), "{}", r.body);
    assert!(r.body.contains("viewer"), "{}", r.body);
    let r = ui
        .post("/runs/r-live/rerun", Some(&v), &[SAME_ORIGIN])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // The editor gets past the role check (then the missing engine answers).
    let r = ui
        .post("/runs/r-live/cancel", Some(&e), &[SAME_ORIGIN])
        .await;
    assert_eq!(r.status, 409, "{}", r.body);

    // The viewer's run page offers no buttons; the editor's does.
    let page = ui.get("/runs/r-live", Some(&v)).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("/runs/r-live/cancel"), "{}", page.body);
    let page = ui.get("/runs/r-live", Some(&e)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/runs/r-live/cancel"), "{}", page.body);
    // The admin pages are an admin's.
    let r = ui.get("/audit", Some(&v)).await;
    assert_eq!(r.status, 403, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_the_token_ends_its_sessions() {
    let ui = Ui::start(true).await;
    let admin = ui.token("root", Role::Admin).await;
    ui.run("r-done", "iris", RunStatus::Succeeded).await;
    let secret = ui.login(&admin).await;
    assert_eq!(ui.get("/runs", Some(&secret)).await.status, 200);
    assert_eq!(
        ui.get("/api/v1/runs/r-done/logs", Some(&secret))
            .await
            .status,
        200
    );

    ui.store
        .revoke_token("root", gantry_engine::now_ms())
        .await
        .unwrap();
    let r = ui.get("/runs", Some(&secret)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/login?next=%2Fruns");
    let r = ui.get("/api/v1/runs/r-done/logs", Some(&secret)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = ui
        .post("/runs/r-done/rerun", Some(&secret), &[SAME_ORIGIN])
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    // And the revoked token cannot log in again.
    let r = ui.login_with(&admin, "/runs", &[SAME_ORIGIN]).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session() {
    let ui = Ui::start(true).await;
    let admin = ui.token("root", Role::Admin).await;
    let secret = ui.login(&admin).await;
    let other = ui.login(&admin).await;
    assert_eq!(ui.get("/runs", Some(&secret)).await.status, 200);

    let r = ui.post("/logout", Some(&secret), &[SAME_ORIGIN]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/login");
    let cleared = r.header("set-cookie");
    assert!(cleared.starts_with("gantry_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(cleared.contains("Path=/"), "{cleared}");

    let r = ui.get("/runs", Some(&secret)).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/login?next=%2Fruns");
    assert!(
        ui.store
            .ui_session(&hash_secret(&secret), gantry_engine::now_ms())
            .await
            .unwrap()
            .is_none()
    );
    // Another session of the same token lives on.
    assert_eq!(ui.get("/runs", Some(&other)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_still_refuses_cross_origin_writes() {
    let ui = Ui::start(false).await;
    ui.run("r-live", "iris", RunStatus::Running).await;
    // The local admin needs no login.
    let r = ui.get("/runs", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_security_headers(&r, "local /runs");
    let r = ui.get("/login?next=%2Fmodels", None).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/models");

    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "http://127.0.0.1:9999")],
        vec![("origin", "http://evil.example")],
        vec![],
    ] {
        for path in [
            "/runs/r-live/cancel",
            "/runs/r-live/rerun",
            "/models/m/aliases",
        ] {
            let r = ui.post(path, None, &headers).await;
            assert_refused_cross_origin(&r, &format!("local {path} with {headers:?}"));
        }
    }
    let r = ui.post("/runs/r-live/cancel", None, &[SAME_ORIGIN]).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let origin = format!("http://{}", ui.host);
    let r = ui
        .post("/runs/r-live/cancel", None, &[("origin", origin.as_str())])
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_from_the_store_is_escaped() {
    let ui = Ui::start(true).await;
    let admin = ui.token("root", Role::Admin).await;
    let secret = ui.login(&admin).await;
    ui.run("r-xss", XSS, RunStatus::Failed).await;
    let mut r = Ui::run_record("r-xss2", XSS, RunStatus::Failed);
    r.error = Some(format!("{XSS} & \"quoted\""));
    r.params_json = serde_json::json!({ XSS: XSS, "lr": 0.1 }).to_string();
    r.finished_at_ms = Some(1_700_000_001_000);
    ui.store.create_run(&r).await.unwrap();
    ui.step("s-xss", "r-xss2", XSS, StepStatus::Failed).await;
    ui.store
        .record_metrics("s-xss", &BTreeMap::from([(XSS.to_owned(), 0.5)]), 1)
        .await
        .unwrap();
    ui.store
        .append_logs(
            "s-xss",
            &[LogChunk::message("stderr", 1, &format!("{XSS}\n"))],
        )
        .await
        .unwrap();

    let enc_xss = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    for path in [
        "/runs".to_owned(),
        "/runs/r-xss".to_owned(),
        "/runs/r-xss2".to_owned(),
        "/runs/r-xss2/logs".to_owned(),
        format!("/runs/r-xss2/logs?q={enc_xss}"),
        format!("/runs?pipeline={enc_xss}"),
        format!("/runs?param={enc_xss}%3D1&metric=acc%3E1"),
        "/compare?runs=r-xss,r-xss2".to_owned(),
        format!("/runs/{enc_xss}"),
    ] {
        let r = ui.get(&path, Some(&secret)).await;
        assert!(
            [200, 400, 404].contains(&r.status),
            "{path}: {} {}",
            r.status,
            r.body
        );
        assert_html(&r, &path);
        assert!(
            !r.body.contains("<script>alert"),
            "{path} shows the script unescaped:\n{}",
            r.body
        );
        assert!(
            shows_escaped(&r.body),
            "{path} does not show the text escaped:\n{}",
            r.body
        );
    }
    // Error pages that echo what was asked for.
    for path in [
        format!("/runs?metric={enc_xss}"),
        format!("/runs?status={enc_xss}"),
        format!("/no-such-page/{enc_xss}"),
        format!("/runs/r-xss2/logs?step={enc_xss}x"),
    ] {
        let r = ui.get(&path, Some(&secret)).await;
        assert!(
            [400, 404].contains(&r.status),
            "{path}: {} {}",
            r.status,
            r.body
        );
        assert!(
            !r.body.contains("<script>alert"),
            "{path} shows the script unescaped:\n{}",
            r.body
        );
    }
    // The pages do show that text where they should: the list, the error, the log.
    let list = ui.get("/runs", Some(&secret)).await.body;
    assert!(list.contains("r-xss2"));
    let page = ui.get("/runs/r-xss2", Some(&secret)).await.body;
    assert!(page.contains("&amp;") || page.contains("&#38;"), "{page}");
    // The graph is SVG inlined as markup (not through the template's escaping): the step
    // name in it is escaped by the SVG writer.
    let svg_start = page.find("<svg").expect("the run page has its graph");
    let svg = &page[svg_start..page[svg_start..].find("</svg>").unwrap() + svg_start];
    assert!(
        svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the graph does not show the step: {svg}"
    );
    let log = ui.get("/runs/r-xss2/logs", Some(&secret)).await.body;
    assert!(log.contains("stderr") || log.contains("alert(1)"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_assets_are_open_and_cached_long() {
    let ui = Ui::start(true).await;
    // No session needed: the login page uses them.
    let r = ui.get("/static/app.js", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type").starts_with("text/javascript"),
        "{:?}",
        r.header("content-type")
    );
    let cache = r.header("cache-control");
    let max_age: u64 = cache
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .unwrap_or_else(|| panic!("no max-age: {cache:?}"))
        .parse()
        .unwrap();
    assert!(max_age >= 30 * 24 * 3600, "{cache}");
    assert!(!cache.contains("no-store"), "{cache}");
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert!(!r.body.is_empty());
    let r = ui.get("/static/app.css", None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/css"));

    let r = ui.get("/static/nope", None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = ui.get("/static/app.js.map", None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    // Pages themselves are never cached.
    let admin = ui.token("root", Role::Admin).await;
    let secret = ui.login(&admin).await;
    let r = ui.get("/runs", Some(&secret)).await;
    assert_eq!(r.header("cache-control"), "no-store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_a_page_for_the_ui_and_json_for_the_api() {
    let ui = Ui::start(false).await;
    let r = ui.get("/nope", None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_html(&r, "/nope");
    assert!(r.body.contains("There is no page at /nope"), "{}", r.body);
    let r = ui.get("/runs/r-missing", None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_html(&r, "/runs/r-missing");

    let r = ui.get("/api/v1/nope", None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.header("content-type").starts_with("application/json"));
    assert_eq!(r.json()["error"]["code"], "not_found");
    let r = ui.get("/api/v1/runs/r-missing", None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.header("content-type").starts_with("application/json"));

    // With auth, an unknown page still needs a session first, then is a 404 page.
    let ui = Ui::start(true).await;
    let r = ui.get("/nope", None).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/login?next=%2Fnope");
    let admin = ui.token("root", Role::Admin).await;
    let secret = ui.login(&admin).await;
    let r = ui.get("/nope", Some(&secret)).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_html(&r, "/nope with a session");
}

/// Every HTML page is a UI response, also those answered outside the UI's routes: the 404
/// page (it echoes the path asked for) and the "log in first" page of a form posted without
/// a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_pages_outside_the_ui_routes_carry_the_security_headers() {
    let local = Ui::start(false).await;
    let authed = Ui::start(true).await;
    let admin = authed.token("root", Role::Admin).await;
    let secret = authed.login(&admin).await;
    let mut missing = Vec::new();
    for (what, r) in [
        ("404 page, local mode", local.get("/nope", None).await),
        (
            "404 page, with a session",
            authed.get("/nope", Some(&secret)).await,
        ),
        (
            "401 page of a post without a session",
            authed.post("/runs/r-1/cancel", None, &[SAME_ORIGIN]).await,
        ),
    ] {
        assert!([401, 404].contains(&r.status), "{what}: {}", r.status);
        assert_html(&r, what);
        let csp = r.header("content-security-policy");
        if csp.is_empty() || r.header("x-content-type-options") != "nosniff" {
            missing.push(format!("{what} (status {}): CSP {csp:?}", r.status));
        } else {
            assert_security_headers(&r, what);
        }
    }
    assert!(
        missing.is_empty(),
        "HTML pages without the security headers:\n{}",
        missing.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_token_sees_its_project_only() {
    let ui = Ui::start(true).await;
    let scoped = issue_token(&ui.store, "team-a", Role::Viewer, Some("iris"))
        .await
        .unwrap()
        .secret;
    let s = ui.login(&scoped).await;
    ui.run("r-mine", "iris", RunStatus::Succeeded).await;
    ui.run("r-theirs", "secret-project", RunStatus::Succeeded)
        .await;

    let list = ui.get("/runs", Some(&s)).await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("r-mine"), "{}", list.body);
    assert!(!list.body.contains("r-theirs"), "{}", list.body);
    assert!(!list.body.contains("secret-project"), "{}", list.body);
    // Asking for the other project's list, or its run, shows nothing of it.
    let other = ui.get("/runs?pipeline=secret-project", Some(&s)).await;
    assert!(!other.body.contains("r-theirs"), "{}", other.body);
    assert_eq!(ui.get("/runs/r-theirs", Some(&s)).await.status, 404);
    assert_eq!(ui.get("/runs/r-theirs/logs", Some(&s)).await.status, 404);
    // The server-wide image store is not listed to a project token.
    let images = ui.get("/images", Some(&s)).await;
    assert_eq!(images.status, 200);
    assert!(images.body.contains("does not list it"), "{}", images.body);
}

/// A long metric history is reduced and cached for its chart; a point logged afterwards still
/// shows (the cache is keyed by the history's shape), and every column's extreme survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_charts_follow_new_points_through_the_cache() {
    use gantry_store::{MetricPoint, NewTrackingRun};
    let ui = Ui::start(false).await;
    let exp = ui
        .store
        .create_experiment("curves", None, &[], 1)
        .await
        .unwrap();
    let run = ui
        .store
        .create_tracking_run(
            &NewTrackingRun {
                experiment_id: exp.clone(),
                user_id: "u".into(),
                run_name: Some("long".into()),
                start_time: Some(1),
                tags: Vec::new(),
            },
            1,
        )
        .await
        .unwrap()
        .info
        .run_id;
    let point = |i: i64, value: f64| MetricPoint {
        key: "loss".into(),
        value,
        timestamp: 1_000 + i,
        step: i,
    };
    for start in (0..3000).step_by(1000) {
        let batch: Vec<MetricPoint> = (start..start + 1000)
            .map(|i| point(i, if i == 1234 { 555.0 } else { 1.0 }))
            .collect();
        ui.store.log_batch(&run, &batch, &[], &[]).await.unwrap();
    }
    let path = format!("/experiments/{exp}/runs/{run}");
    // The chart alone (the page's table also shows the latest value).
    let chart = |body: &str| -> String {
        let start = body
            .find("class=\"chart line-chart\"")
            .expect("a line chart");
        let end = body[start..].find("</svg>").expect("the chart ends") + start;
        body[start..end].to_owned()
    };
    let first = ui.get(&path, None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let drawn = chart(&first.body);
    assert!(drawn.contains("555"), "the spike is kept: {drawn}");
    assert!(!drawn.contains("777"));
    // Served again from the cache, then a new point changes the history's shape.
    assert_eq!(chart(&ui.get(&path, None).await.body), drawn);
    ui.store
        .log_batch(&run, &[point(3000, 777.0)], &[], &[])
        .await
        .unwrap();
    let after = chart(&ui.get(&path, None).await.body);
    assert!(after.contains("777"), "the new point is drawn: {after}");
    assert_ne!(after, drawn);
}
