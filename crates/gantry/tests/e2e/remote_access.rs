//! Remote users of `gantry server --auth` reach only what the admin opened to them: no file
//! of the server outside its data roots (whatever `..`, symlinks or hard links say), no
//! address of the server's own network through URL inputs or webhooks, no host network or
//! GPU where the admin denied them. Their own data travels with the run, uploaded once.

use crate::support::{Gantry, step};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    let mut args = vec!["server", "--listen", "127.0.0.1:0", "--auth"];
    args.extend(extra);
    let (child, url) = g.spawn_listening(&args, &[("GANTRY_MONITOR_INTERVAL", "1s")]);
    Server { child, url }
}

fn token(g: &Gantry, name: &str, role: &str, project: Option<&str>) -> String {
    let mut args = vec!["token", "create", "--name", name, "--role", role];
    if let Some(p) = project {
        args.extend(["--project", p]);
    }
    g.ok(&args).trim().to_string()
}

/// `gantry --server URL ARGS` as the holder of `token`: (exit code, stdout, stderr).
fn remote(g: &Gantry, url: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let mut c = g.command(&[&["--server", url], args].concat());
    c.env("GANTRY_TOKEN", token);
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The audit log's entries of one action, newest first (read with the admin token).
fn audited(g: &Gantry, url: &str, admin: &str, action: &str) -> Vec<Value> {
    let (code, out, err) = remote(
        g,
        url,
        admin,
        &["audit", "--limit", "500", "--output", "json"],
    );
    assert_eq!(code, 0, "{err}");
    let all: Vec<Value> = serde_json::from_str(&out).unwrap();
    all.into_iter().filter(|a| a["action"] == action).collect()
}

/// A spec whose one step prints its input `data`.
fn reader_spec(name: &str, input: &str) -> String {
    format!(
        "name: {name}\nsteps:\n  - name: grab\n    image: busybox:1\n    inputs: {{ data: {input} }}\n    command: [sh, -c, 'cat ${{inputs.data}} || ls ${{inputs.data}}']\n"
    )
}

#[test]
fn an_editor_reads_no_server_file_outside_the_data_roots_and_refusals_are_audited() {
    let g = Gantry::new();
    let admin = token(&g, "admin", "admin", None);
    let editor = token(&g, "ed", "editor", Some("exfil"));
    let viewer = token(&g, "vi", "viewer", Some("exfil"));
    let other = token(&g, "ob", "editor", Some("teamb"));

    // A data root with a readable file, a symlink leading out, and a hard link to a file
    // elsewhere (same filesystem); a second root open to project teamb only.
    let root = g.dir.path().join("data");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("ok.csv"), "a,b\n1,2\n").unwrap();
    std::fs::write(root.join("sub/part.csv"), "x\n").unwrap();
    let private = g.dir.path().join("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::write(private.join("secret"), "TOP-SECRET\n").unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
    std::os::unix::fs::symlink(private.join("secret"), root.join("secret-link")).unwrap();
    std::fs::hard_link(private.join("secret"), root.join("hard")).unwrap();
    let teamb = g.dir.path().join("teamb");
    std::fs::create_dir_all(&teamb).unwrap();
    std::fs::write(teamb.join("b.csv"), "b\n").unwrap();
    let server = start_server(
        &g,
        &[
            "--data-root",
            &format!("shared={}", root.display()),
            "--data-root",
            &format!("teamb={}:teamb", teamb.display()),
        ],
    );
    let db = g.home.path().join("gantry.db");
    assert!(
        db.exists(),
        "the server's database should be at {}",
        db.display()
    );

    let refused = [
        ("/etc/shadow", "outside-data-roots"),
        (db.to_str().unwrap(), "outside-data-roots"),
        (&format!("{}/../private/secret", root.display()), "dot-dot"),
        (&format!("{}/etc-link/hostname", root.display()), "escape"),
        (&format!("{}/secret-link", root.display()), "escape"),
        (&format!("{}/hard", root.display()), "hard-link"),
        (&format!("{}/b.csv", teamb.display()), "data-root-project"),
    ];
    for (i, (path, rule)) in refused.iter().enumerate() {
        let file = g.write(
            &format!("exfil-{i}.yaml"),
            &reader_spec("exfil", &format!("{{ path: \"{path}\" }}")),
        );
        let (code, out, err) = remote(
            &g,
            &server.url,
            &editor,
            &["run", file.to_str().unwrap(), "--no-upload"],
        );
        assert_eq!(code, 6, "{path} must be refused (403)\n{out}\n{err}");
        assert!(err.contains("steps.grab.inputs.data"), "{err}");
        assert!(err.contains(rule), "{path}: expected rule {rule} in: {err}");
        assert!(!out.contains("TOP-SECRET") && !err.contains("TOP-SECRET"));
    }
    // Nothing ran, nothing was stored from those paths.
    let (_, runs, _) = remote(&g, &server.url, &admin, &["runs", "--output", "json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&runs).unwrap(),
        serde_json::json!([])
    );
    let refusals = audited(&g, &server.url, &admin, "run.refused");
    assert_eq!(refusals.len(), refused.len(), "{refusals:#?}");
    assert!(
        refusals.iter().all(|a| a["principal"] == "ed"),
        "{refusals:#?}"
    );
    assert!(refusals.iter().any(|a| {
        a["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("/etc/shadow")
    }));

    // A viewer cannot submit at all.
    let ok = g.write(
        "ok.yaml",
        &reader_spec(
            "exfil",
            &format!("{{ path: \"{}/ok.csv\" }}", root.display()),
        ),
    );
    let (code, _, err) = remote(
        &g,
        &server.url,
        &viewer,
        &["run", ok.to_str().unwrap(), "--no-upload"],
    );
    assert_eq!(code, 6, "{err}");

    // What the admin opened works: a file and a directory below the shared root, and the
    // project root for its own project.
    let (code, out, err) = remote(
        &g,
        &server.url,
        &editor,
        &[
            "run",
            ok.to_str().unwrap(),
            "--no-upload",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let run: Value = serde_json::from_str(&out).unwrap();
    let id = run["run_id"].as_str().unwrap();
    let (_, logs, _) = remote(&g, &server.url, &editor, &["logs", id, "grab"]);
    assert_eq!(logs, "a,b\n1,2\n");
    let dir = g.write(
        "dir.yaml",
        &reader_spec("exfil", &format!("{{ path: \"{}/sub\" }}", root.display())),
    );
    let (code, out, err) = remote(
        &g,
        &server.url,
        &editor,
        &["run", dir.to_str().unwrap(), "--no-upload"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let b = g.write(
        "b.yaml",
        &reader_spec(
            "teamb",
            &format!("{{ path: \"{}/b.csv\" }}", teamb.display()),
        ),
    );
    let (code, out, err) = remote(
        &g,
        &server.url,
        &other,
        &["run", b.to_str().unwrap(), "--no-upload"],
    );
    assert_eq!(code, 0, "{out}\n{err}");

    // A hard link inside a directory input is found when the directory is read: the step
    // never starts and nothing of the linked file is stored.
    std::fs::hard_link(private.join("secret"), root.join("sub/linked")).unwrap();
    let (code, out, err) = remote(
        &g,
        &server.url,
        &editor,
        &[
            "run",
            dir.to_str().unwrap(),
            "--no-upload",
            "--no-cache",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    let run: Value = serde_json::from_str(&out).unwrap();
    let grab = step(&run, "grab");
    assert_eq!(grab["status"], "failed", "{run:#}");
    let reason = grab["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("linked") && reason.contains("hard link"),
        "{reason}"
    );
    let stored = walk_files(&g.home.path().join("artifacts"));
    assert!(
        stored.iter().all(|f| !std::fs::read(f)
            .unwrap_or_default()
            .windows(10)
            .any(|w| w == b"TOP-SECRET")),
        "the hard-linked secret ended up in the artifact store"
    );
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(walk_files(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

#[test]
fn a_remote_run_uploads_its_local_data_once_and_runs_on_it() {
    let g = Gantry::new();
    let admin = token(&g, "admin", "admin", None);
    let editor = token(&g, "ed", "editor", Some("mine"));
    let server = start_server(&g, &[]);
    // The client's data lives beside its spec, in a directory the server never sees by path.
    let client = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(client.path().join("data/tree")).unwrap();
    std::fs::write(client.path().join("data/in.csv"), "x,y\n3,4\n").unwrap();
    std::fs::write(client.path().join("data/tree/a.txt"), "A\n").unwrap();
    std::fs::write(client.path().join("data/tree/b.txt"), "B\n").unwrap();
    let spec = client.path().join("pipeline.yaml");
    std::fs::write(
        &spec,
        r#"
name: mine
steps:
  - name: use
    image: busybox:1
    inputs:
      table: { path: data/in.csv }
      tree: { path: data/tree }
    command: [sh, -c, 'cat ${inputs.table} ${inputs.tree}/a.txt ${inputs.tree}/b.txt']
"#,
    )
    .unwrap();
    let (code, out, err) = remote(&g, &server.url, &editor, &["run", spec.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("inputs: 2 uploaded"), "{err}");
    let (_, runs, _) = remote(&g, &server.url, &editor, &["runs", "--output", "json"]);
    let runs: Value = serde_json::from_str(&runs).unwrap();
    let first = runs[0]["id"].as_str().unwrap().to_string();
    let (_, logs, _) = remote(&g, &server.url, &editor, &["logs", &first, "use"]);
    assert_eq!(logs, "x,y\n3,4\nA\nB\n");
    assert_eq!(audited(&g, &server.url, &admin, "artifact.upload").len(), 2);

    // The second submit sends nothing: the server holds both contents for the project.
    let (code, out, err) = remote(
        &g,
        &server.url,
        &editor,
        &["run", spec.to_str().unwrap(), "--no-cache"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("inputs: 0 uploaded (0 bytes), 2 already on the server"),
        "{err}"
    );
    assert_eq!(audited(&g, &server.url, &admin, "artifact.upload").len(), 2);

    // A changed file is uploaded again (a new digest); the unchanged tree is not.
    std::fs::write(client.path().join("data/in.csv"), "x,y\n5,6\n").unwrap();
    let (code, out, err) = remote(&g, &server.url, &editor, &["run", spec.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("inputs: 1 uploaded"), "{err}");
    assert!(err.contains("1 already on the server"), "{err}");
}

/// A tiny HTTP server on `addr` answering every request with `answer`; counts connections.
fn http_server(addr: &str, answer: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(addr).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (base, hits)
}

fn ok_csv() -> String {
    "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nu,v\n7,8\n".to_string()
}

#[test]
fn url_inputs_cannot_reach_the_servers_own_network_unless_allowed() {
    let g = Gantry::new();
    let editor = token(&g, "ed", "editor", Some("fetch"));
    let (target, hits) = http_server("127.0.0.1:0", ok_csv());
    let port = target.rsplit(':').next().unwrap().to_string();
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nLocation: {target}/data.csv\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let (redirector, redirector_hits) = http_server("127.0.0.2:0", redirect);
    // 127.0.0.2 is allowed, so only the redirect's target is in question.
    let server = start_server(&g, &["--allow-fetch", "127.0.0.2"]);

    // A literal loopback address is refused at submit.
    let literal = g.write(
        "literal.yaml",
        &reader_spec("fetch", &format!("{{ url: \"{target}/data.csv\" }}")),
    );
    let (code, _, err) = remote(
        &g,
        &server.url,
        &editor,
        &["run", literal.to_str().unwrap()],
    );
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("loopback") && err.contains("--allow-fetch"),
        "{err}"
    );
    // A name that resolves to loopback is refused when resolved: the step fails, and the
    // target never saw a connection.
    let named = g.write(
        "named.yaml",
        &reader_spec(
            "fetch",
            &format!("{{ url: \"http://localhost:{port}/data.csv\" }}"),
        ),
    );
    let (code, out, err) = remote(
        &g,
        &server.url,
        &editor,
        &["run", named.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    let run: Value = serde_json::from_str(&out).unwrap();
    let reason = step(&run, "grab")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("loopback"), "{reason}");
    // An allowed address that redirects to loopback is refused at the redirect.
    let via = g.write(
        "redirect.yaml",
        &reader_spec("fetch", &format!("{{ url: \"{redirector}/data.csv\" }}")),
    );
    let (code, out, err) = remote(
        &g,
        &server.url,
        &editor,
        &["run", via.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    let run: Value = serde_json::from_str(&out).unwrap();
    let reason = step(&run, "grab")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("redirected from"), "{reason}");
    assert_eq!(redirector_hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the loopback target was reached"
    );
    drop(server);

    // Allowlisted by the admin, the same URL works.
    let server = start_server(&g, &["--allow-fetch", "127.0.0.1"]);
    let (code, out, err) = remote(
        &g,
        &server.url,
        &editor,
        &["run", literal.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn host_network_and_gpus_are_the_admins_to_grant() {
    let g = Gantry::new();
    let editor = token(&g, "ed", "editor", Some("caps"));
    let online = g.write(
        "online.yaml",
        "name: caps\nsteps:\n  - name: online\n    image: busybox:1\n    network: true\n    command: [sh, -c, 'ls /sys/class/net']\n",
    );
    let gpu = g.write(
        "gpu.yaml",
        "name: caps\nsteps:\n  - name: train\n    image: busybox:1\n    resources: { gpu: 1 }\n    command: [sh, -c, 'ls /dev']\n",
    );
    let server = start_server(&g, &["--deny-gpu", "caps", "--gpus", "1"]);
    let (code, _, err) = remote(&g, &server.url, &editor, &["run", online.to_str().unwrap()]);
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("steps.online.network") && err.contains("--allow-network caps"),
        "{err}"
    );
    let (code, _, err) = remote(&g, &server.url, &editor, &["run", gpu.to_str().unwrap()]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("steps.train.resources.gpu"), "{err}");
    drop(server);

    let server = start_server(&g, &["--allow-network", "caps"]);
    let (code, out, err) = remote(&g, &server.url, &editor, &["run", online.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
}

#[test]
fn webhooks_to_the_servers_network_are_refused_at_deploy_and_audited_by_host_only() {
    let g = Gantry::new();
    let admin = token(&g, "admin", "admin", None);
    let editor = token(&g, "ed", "editor", Some("iris"));
    let server = start_server(&g, &[]);
    for hook in [
        "http://127.0.0.1:9/hooks/T000/SECRETPART",
        "http://169.254.169.254/latest/meta-data/SECRETPART",
        "file:///etc/shadow",
    ] {
        let (code, _, err) = remote(
            &g,
            &server.url,
            &editor,
            &[
                "deploy",
                "flowers",
                "--model",
                "iris@champion",
                "--webhook",
                hook,
            ],
        );
        assert_eq!(code, 6, "{hook}: {err}");
        assert!(err.contains("webhook"), "{err}");
        assert!(
            !err.contains("SECRETPART"),
            "the webhook's path was shown: {err}"
        );
    }
    let refused = audited(&g, &server.url, &admin, "deployment.refused");
    assert_eq!(refused.len(), 3, "{refused:#?}");
    assert!(
        !serde_json::to_string(&refused)
            .unwrap()
            .contains("SECRETPART")
    );
}

#[test]
fn secrets_stay_out_of_help_and_arguments_carrying_them_are_warned_about() {
    let g = Gantry::empty();
    let out = g
        .command(&["--help"])
        .env("GANTRY_DB", "postgres://u:hunter2@127.0.0.1/db")
        .env("GANTRY_TOKEN", "gantry_id_hunter3")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("GANTRY_DB"), "{help}");
    assert!(
        !help.contains("hunter2") && !help.contains("hunter3"),
        "{help}"
    );
    let out = g
        .command(&[
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "gantry_id_hunter3",
            "runs",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: --token on the command line"),
        "{err}"
    );
    assert!(!err.contains("hunter3"), "{err}");
}
