//! Remote runs bring their own data: uploads per project, proved by content, and runs that
//! name them by digest; everything else a remote spec names on the server is refused before
//! the run starts. Over HTTP against a real server with `--auth`.

#![allow(clippy::unwrap_used)]

mod support;

use gantry_server::auth::{Role, issue_token};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{Options, TestServer};

async fn token(s: &TestServer, name: &str, role: Role, project: Option<&str>) -> String {
    issue_token(&s.state.store, name, role, project)
        .await
        .unwrap()
        .secret
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

async fn put(
    s: &TestServer,
    token: &str,
    query: &str,
    digest: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let resp = s
        .http
        .request(
            Method::PUT,
            s.url(&format!("/api/v1/uploads/{digest}?{query}")),
        )
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let v = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
    (status, v)
}

/// A spec of project `name` whose step prints its path input `data`.
fn reader(name: &str) -> String {
    format!(
        "name: {name}\nsteps:\n  - name: s\n    image: busybox:1\n    inputs: {{ data: {{ path: data.csv }} }}\n    command: [sh, -c, 'cat ${{inputs.data}}']\n"
    )
}

async fn audit_actions(s: &TestServer) -> Vec<String> {
    s.state
        .store
        .list_audit(0)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_belong_to_the_project_that_sent_the_content() {
    let s = TestServer::start(Options {
        auth: true,
        remote: gantry_server::RemotePolicy {
            max_upload_bytes: 4096,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let a = token(&s, "a", Role::Editor, Some("alpha")).await;
    let b = token(&s, "b", Role::Editor, Some("beta")).await;
    let viewer = token(&s, "v", Role::Viewer, Some("alpha")).await;
    let data = b"k,v\n1,2\n".to_vec();
    let d = digest(&data);

    // Alpha uploads; the upload is alpha's, not beta's.
    let (status, v) = put(&s, &a, "project=alpha&kind=file", &d, data.clone()).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        (v["digest"].as_str(), v["size"].as_u64()),
        (Some(d.as_str()), Some(8))
    );
    let (status, _) = s
        .get(&format!("/api/v1/uploads/{d}?project=alpha"), Some(&a))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .get(&format!("/api/v1/uploads/{d}?project=beta"), Some(&b))
        .await;
    assert_eq!(status, 404);

    // Knowing the digest is not holding the data: beta's empty or wrong body is refused and
    // grants nothing; the real bytes do.
    for wrong in [Vec::new(), b"forged".to_vec()] {
        let (status, v) = put(&s, &b, "project=beta&kind=file", &d, wrong).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["field"], "digest", "{v}");
    }
    let (status, _) = s
        .get(&format!("/api/v1/uploads/{d}?project=beta"), Some(&b))
        .await;
    assert_eq!(status, 404);
    // Beta's run naming alpha's upload is refused before anything runs, and audited.
    let body = json!({"spec_yaml": reader("beta"), "inputs": {"s/data": d}}).to_string();
    let (status, v) = s.post("/api/v1/runs", Some(&b), &body).await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["field"], "inputs.s/data", "{v}");
    assert!(audit_actions(&s).await.contains(&"run.refused".to_string()));
    let (status, _) = put(&s, &b, "project=beta&kind=file", &d, data.clone()).await;
    assert_eq!(status, 201);
    let (status, v) = s.post("/api/v1/runs", Some(&b), &body).await;
    assert_eq!(status, 201, "{v}");
    let id = v["run_id"].as_str().unwrap().to_string();
    let run = s.wait_terminal(&id, Some(&b)).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let (_, _, logs) = s.sse(&format!("/api/v1/runs/{id}/logs"), Some(&b)).await;
    assert!(logs.contains("k,v") && logs.contains("1,2"), "{logs}");

    // A token cannot upload for another project; a viewer cannot upload at all.
    let (status, v) = put(&s, &a, "project=beta&kind=file", &d, data.clone()).await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (403, Some("project")),
        "{v}"
    );
    let (status, _) = put(&s, &viewer, "project=alpha&kind=file", &d, data.clone()).await;
    assert_eq!(status, 403);
    // Bad requests name their field.
    let (status, v) = put(&s, &a, "project=alpha", &d, data.clone()).await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("kind")),
        "{v}"
    );
    let (status, v) = put(&s, &a, "kind=file", &d, data.clone()).await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("project")),
        "{v}"
    );

    // A body that does not match its digest, or is too large, stores nothing.
    let other = b"other".to_vec();
    let (status, _) = put(
        &s,
        &a,
        "project=alpha&kind=file",
        &digest(b"not this"),
        other,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        s.state
            .artifacts
            .stat(&digest(b"not this"))
            .await
            .unwrap()
            .is_none()
    );
    let big = vec![b'x'; 4097];
    let (status, v) = put(
        &s,
        &a,
        "project=alpha&kind=file",
        &digest(&big),
        big.clone(),
    )
    .await;
    assert_eq!(status, 413, "{v}");
    assert!(
        s.state
            .artifacts
            .stat(&digest(&big))
            .await
            .unwrap()
            .is_none()
    );

    // A directory upload whose tar escapes is refused with nothing stored.
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    // set_path refuses `..`, so the name is written into the header by hand.
    h.as_old_mut().name[..5].copy_from_slice(b"../ex");
    h.set_cksum();
    tar.append(&h, &b"x"[..]).unwrap();
    let evil = tar.into_inner().unwrap();
    let (status, v) = put(
        &s,
        &a,
        "project=alpha&kind=directory",
        &digest(&evil),
        evil.clone(),
    )
    .await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("body")),
        "{v}"
    );
    assert!(
        s.state
            .artifacts
            .stat(&digest(&evil))
            .await
            .unwrap()
            .is_none()
    );

    // `inputs` must name a path input of the spec.
    let body = json!({"spec_yaml": reader("alpha"), "inputs": {"s/nope": d}}).to_string();
    let (status, v) = s.post("/api/v1/runs", Some(&a), &body).await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (400, Some("inputs.s/nope")),
        "{v}"
    );
    assert_eq!(
        audit_actions(&s)
            .await
            .iter()
            .filter(|a| *a == "artifact.upload")
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_spec_reads_no_server_path_and_reaches_no_private_address() {
    let s = TestServer::start(Options {
        auth: true,
        ..Options::default()
    })
    .await;
    let a = token(&s, "a", Role::Editor, Some("alpha")).await;
    for (input, rule) in [
        ("{ path: /etc/shadow }", "no-data-root"),
        ("{ path: data.csv }", "no-data-root"),
        (
            "{ url: \"http://169.254.169.254/latest/meta-data/\" }",
            "fetch",
        ),
        ("{ url: \"http://[::1]:9/x\" }", "fetch"),
        ("{ url: \"http://10.1.2.3/x\" }", "fetch"),
    ] {
        let spec = format!(
            "name: alpha\nsteps:\n  - name: s\n    image: busybox:1\n    inputs: {{ data: {input} }}\n    command: [cat, '${{inputs.data}}']\n"
        );
        let (status, v) = s
            .post(
                "/api/v1/runs",
                Some(&a),
                &json!({"spec_yaml": spec}).to_string(),
            )
            .await;
        assert_eq!(status, 403, "{input}: {v}");
        assert_eq!(v["error"]["field"], "steps.s.inputs.data", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(rule),
            "{v}"
        );
    }
    let (_, runs) = s.get("/api/v1/runs", Some(&a)).await;
    assert_eq!(runs["runs"], json!([]));
}
