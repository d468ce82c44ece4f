//! The image trust policy on `gantry server`, with a real registry: runs submitted by remote
//! users are judged by the server's policy (signatures fetched from the registry, decisions on
//! the run), the policy is reloaded on SIGHUP (a broken file keeps the previous one in
//! force), the server pulls only through its fetch guard,
//! and a custom model whose image the policy denies never starts a replica.

use crate::support::{Gantry, wait_until};
use crate::test_registry::{Layer, TarEntry, TestRegistry, build_image_from_layers, busybox_image};
use serde_json::Value;
use std::path::Path;
use std::process::Child;

/// Pushes busybox plus a layer holding `marker` (so each marker is a distinct image) to
/// `repo_tag` in `reg`; returns the manifest digest.
fn push_variant(reg: &TestRegistry, dir: &Path, repo_tag: &str, marker: &str) -> Option<String> {
    let base = busybox_image()?;
    let mut layers = base.layers;
    layers.push(Layer::new(&[
        TarEntry::dir("etc/"),
        TarEntry::file("etc/marker", marker.as_bytes()),
    ]));
    let image = build_image_from_layers(layers, &["/bin/sh"]);
    let archive = dir.join(format!("{marker}.oci.tar"));
    image.write_oci_archive(&archive, "latest");
    reg.skopeo_copy(&format!("oci-archive:{}", archive.display()), repo_tag);
    Some(image.manifest_digest)
}

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

impl Server {
    fn start(g: &Gantry, extra: &[&str]) -> Server {
        let mut args = vec!["server", "--listen", "127.0.0.1:0"];
        args.extend(extra);
        let (child, url) = g.spawn_listening(&args, &[]);
        Server { child, url }
    }

    fn hangup(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    }
}

fn pipeline(g: &Gantry, image: &str) -> String {
    g.write(
        "hello.yaml",
        &format!(
            "name: hello\nsteps:\n  - name: greet\n    image: {image}\n    command: [\"sh\", \"-c\", \"cat /etc/marker\"]\n"
        ),
    )
    .display()
    .to_string()
}

fn policy(g: &Gantry, registry: &str, key: &Path) -> String {
    g.write(
        "policy.yaml",
        &format!(
            "registries: [{registry}]\nrules:\n  - images: [\"{registry}/team/**\"]\n    signatures: {{any_of: [\"{}\"]}}\n",
            key.display()
        ),
    )
    .display()
    .to_string()
}

#[test]
fn a_server_judges_submitted_runs_by_its_policy_and_reloads_it_on_sighup() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let g = Gantry::new();
    let Some(_) = push_variant(&reg, g.dir.path(), "team/app:1", "app") else {
        return;
    };
    let image = format!("{}/team/app:1", reg.addr);
    // The publisher signs in their own GANTRY_HOME: the server must fetch the signature from
    // the registry, it has none kept.
    let publisher = Gantry::empty();
    let keys = g.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    publisher.ok(&["key", "generate", keys.join("team").to_str().unwrap()]);
    publisher.ok(&["key", "generate", keys.join("other").to_str().unwrap()]);
    publisher.ok(&[
        "image",
        "sign",
        &image,
        "--key",
        keys.join("team.key").to_str().unwrap(),
    ]);

    // First the policy trusts only a key that did not sign the image.
    let policy_file = policy(&g, &reg.addr, &keys.join("other.pub"));
    let server = Server::start(
        &g,
        &["--policy", &policy_file, "--allow-fetch", "127.0.0.1"],
    );
    let spec = pipeline(&g, &image);
    let (code, _, err) = g.remote(&server.url, &["run", &spec]);
    assert_eq!(code, 2, "a denied run exits 2: {err}");
    assert!(err.contains("denied by the image trust policy"), "{err}");
    assert!(err.contains("not signed by any of"), "{err}");
    let runs: Value =
        serde_json::from_str(&g.remote(&server.url, &["runs", "-o", "json"]).1).unwrap();
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    let run_id = runs[0]["id"].as_str().unwrap().to_string();
    let (_, shown, _) = g.remote(&server.url, &["show", &run_id, "-o", "json"]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["image_decisions"][0]["outcome"], "deny", "{shown}");
    assert_eq!(shown["image_decisions"][0]["item"], "greet");
    assert!(
        shown["steps"].as_array().unwrap().is_empty(),
        "no step ran: {shown}"
    );

    // The admin trusts the publisher's key and sends SIGHUP: the same run is admitted.
    policy(&g, &reg.addr, &keys.join("team.pub"));
    server.hangup();
    let mut last = String::new();
    wait_until("the reloaded policy admits the run", || {
        let (code, out, err) = g.remote(&server.url, &["run", &spec]);
        last = format!("{out}{err}");
        code == 0
    });
    assert!(!last.contains("denied"), "{last}");
    let runs: Value =
        serde_json::from_str(&g.remote(&server.url, &["runs", "-o", "json"]).1).unwrap();
    let run_id = runs[0]["id"].as_str().unwrap().to_string();
    let (_, shown, _) = g.remote(&server.url, &["show", &run_id, "-o", "json"]);
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["status"], "succeeded", "{shown}");
    let decision = &shown["image_decisions"][0];
    assert_eq!(decision["outcome"], "allow", "{shown}");
    assert!(
        decision["reasons"][0]
            .as_str()
            .unwrap()
            .contains("signed by"),
        "{decision}"
    );
    // The decisions are in the audit log too.
    let (_, audit, _) = g.remote(&server.url, &["audit", "-o", "json"]);
    assert!(
        audit.contains("image.deny") && audit.contains("image.allow"),
        "{audit}"
    );
    let metrics = crate::trust::get_text(&server.url, "/metrics");
    assert!(
        metrics.contains(r#"gantry_trust_policy_reloads_total{result="ok"} 1"#)
            && metrics.contains("gantry_trust_policy_last_reload_successful 1"),
        "{metrics}"
    );

    // A broken policy file on SIGHUP: the reload fails, says so in the metrics, and the
    // previous policy stays in force.
    std::fs::write(&policy_file, "rules: [unclosed\n").unwrap();
    server.hangup();
    let mut metrics = String::new();
    wait_until("the failed reload is counted", || {
        metrics = crate::trust::get_text(&server.url, "/metrics");
        metrics.contains(r#"gantry_trust_policy_reloads_total{result="error"} 1"#)
    });
    assert!(
        metrics.contains("gantry_trust_policy_last_reload_successful 0"),
        "{metrics}"
    );
    let (code, _, err) = g.remote(&server.url, &["run", &spec]);
    assert_eq!(code, 0, "the previous policy admits the run: {err}");
}

#[test]
fn a_server_pulls_only_from_registries_its_fetch_guard_allows() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let g = Gantry::new();
    let Some(_) = push_variant(&reg, g.dir.path(), "team/app:1", "guarded") else {
        return;
    };
    let image = format!("{}/team/app:1", reg.addr);
    let spec = pipeline(&g, &image);
    // Loopback is the server's own network: refused unless the admin opens it.
    let server = Server::start(&g, &[]);
    let (code, _, err) = g.remote(&server.url, &["run", &spec]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&reg.addr),
        "the refusal names the registry: {err}"
    );
    assert!(
        err.contains("--allow-fetch"),
        "and says how to allow it: {err}"
    );
    let images = g.ok(&["images"]);
    assert!(!images.contains(&reg.addr), "nothing was pulled: {images}");
    drop(server);

    let server = Server::start(&g, &["--allow-fetch", "127.0.0.1"]);
    let (code, out, err) = g.remote(&server.url, &["run", &spec]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(g.ok(&["images"]).contains(&image));
}

#[test]
fn a_custom_model_whose_image_the_policy_denies_never_starts_a_replica() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let g = Gantry::new();
    let Some(_) = push_variant(&reg, g.dir.path(), "team/srv:1", "unsigned") else {
        return;
    };
    let image = format!("{}/team/srv:1", reg.addr);
    let keys = g.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    g.ok(&["key", "generate", keys.join("team").to_str().unwrap()]);
    // Registering pulls the image (it names a registry).
    g.ok(&[
        "model", "register", "echo", "--flavor", "custom", "--image", &image, "--port", "9000",
        "--arg", "/bin/nc", "--arg", "-ll", "--arg", "-p", "--arg", "9000", "--arg", "-e", "--arg",
        "/bin/cat",
    ]);
    let policy_file = policy(&g, &reg.addr, &keys.join("team.pub"));
    let server = Server::start(
        &g,
        &["--policy", &policy_file, "--allow-fetch", "127.0.0.1"],
    );
    let (code, out, err) = g.remote(&server.url, &["deploy", "echo", "--model", "echo@1"]);
    assert_eq!(code, 0, "{out}{err}");
    let mut view = Value::Null;
    wait_until("the rollout reports the denial", || {
        let (_, out, _) = g.remote(&server.url, &["deployments", "echo", "-o", "json"]);
        view = serde_json::from_str(&out).unwrap_or(Value::Null);
        view["actual"]["rollout"]
            .as_str()
            .is_some_and(|r| r.contains("denied by the image trust policy"))
    });
    assert_eq!(view["image_decisions"][0]["outcome"], "deny", "{view}");
    assert_eq!(view["image_decisions"][0]["reference"], image.as_str());
    assert!(view["actual"]["serving_revision"].is_null(), "{view}");
    assert!(
        g.runc_containers().is_empty(),
        "no replica container: {:?}",
        g.runc_containers()
    );
}
