//! Images to and from OCI registries: a real `docker-registry` (distribution) for pushes,
//! pulls, auth and runs, and a lying one (`HostileRegistry`) for what must be refused.

use crate::support::{Gantry, both, image_digests, names_in, step, text};
use crate::test_registry::{
    self as oci, BuiltImage, HostileRegistry, Hostility, Layer, Response, TarEntry, TestRegistry,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Every path under `root` (recursively, symlinks not followed).
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// What the image store holds on disk: blobs, unpacked root filesystems, and what its
/// scratch space holds besides the partial-download folder.
#[derive(Debug, PartialEq, Eq)]
struct StoreState {
    blobs: BTreeSet<String>,
    rootfs: BTreeSet<String>,
    tmp: BTreeSet<String>,
    partials: BTreeSet<String>,
}

fn store_state(g: &Gantry) -> StoreState {
    let images = g.home.path().join("images");
    StoreState {
        blobs: names_in(&images.join("blobs/sha256")),
        rootfs: names_in(&images.join("rootfs")),
        tmp: names_in(&images.join("tmp"))
            .into_iter()
            .filter(|n| n != "downloads")
            .collect(),
        partials: names_in(&images.join("tmp/downloads"))
            .into_iter()
            .filter(|n| n.ends_with(".partial"))
            .collect(),
    }
}

/// An image of busybox plus a layer holding `/etc/variant` with `variant`, so a step can
/// say which image it ran in.
fn busybox_variant(variant: &str) -> Option<BuiltImage> {
    let busybox = oci::busybox_image()?;
    let marker = Layer::new(&oci::file_entries(&[(
        "etc/variant",
        format!("{variant}\n").as_bytes(),
    )]));
    Some(oci::build_image_from_layers(
        vec![busybox.layers[0].clone(), marker],
        &["/bin/sh"],
    ))
}

#[test]
fn a_stored_image_pushed_to_a_registry_keeps_its_digest_and_a_second_push_uploads_nothing() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let g = Gantry::new();
    let local = image_digests(&g);
    assert_eq!(local.len(), 1);
    let target = format!("{}/team/busybox:1", reg.addr);

    let first = g.json(&["image", "push", "busybox:1", &target]);
    assert_eq!(first["digest"], local[0].as_str(), "{first:#}");
    assert_eq!(
        first["pinned"],
        format!("{target}@{}", local[0]).as_str(),
        "{first:#}"
    );
    // The config and the one layer went up; the registry had neither.
    assert_eq!(first["uploaded_blobs"], 2, "{first:#}");
    assert_eq!(first["existing_blobs"], 0, "{first:#}");
    assert!(
        first["uploaded_bytes"].as_u64().unwrap() > 1_000_000,
        "{first:#}"
    );

    // Another client sees exactly the image Gantry stores.
    assert_eq!(reg.skopeo_inspect_digest("team/busybox:1"), local[0]);

    let second = g.ok(&["image", "push", "busybox:1", &target]);
    assert!(
        second.contains("0 blobs uploaded") && second.contains("2 already there"),
        "{second}"
    );
    let third = g.json(&["image", "push", "busybox:1", &target]);
    assert_eq!(third["uploaded_blobs"], 0, "{third:#}");
    assert_eq!(third["uploaded_bytes"], 0, "{third:#}");
    assert_eq!(third["existing_blobs"], 2, "{third:#}");
    assert_eq!(third["digest"], local[0].as_str());
}

#[test]
fn an_image_pushed_by_another_tool_is_pulled_with_the_registrys_digest_and_a_second_pull_is_free() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let image = oci::build_image(
        &[
            oci::file_entries(&[("etc/first", b"bottom layer\n".as_slice())]),
            oci::file_entries(&[("usr/share/second", b"top layer\n".as_slice())]),
        ],
        &["/bin/sh"],
    );
    let digest = reg.push_image(&image, "team/two-layers:1");
    let reference = format!("{}/team/two-layers:1", reg.addr);

    let g = Gantry::empty();
    let pulled = g.json(&["image", "pull", &reference]);
    assert_eq!(pulled["digest"], digest.as_str(), "{pulled:#}");
    assert_eq!(pulled["layers"], 2, "{pulled:#}");
    assert_eq!(pulled["already_present"], false, "{pulled:#}");
    assert_eq!(pulled["reused_layers"], 0, "{pulled:#}");
    assert!(
        pulled["downloaded_bytes"].as_u64().unwrap() > 0,
        "{pulled:#}"
    );
    assert_eq!(
        pulled["pinned"],
        format!("{reference}@{digest}").as_str(),
        "{pulled:#}"
    );

    let list = g.json(&["images"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["digest"], digest.as_str());
    assert_eq!(list[0]["layers"], 2);
    assert!(
        list[0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == reference.as_str()),
        "{list:#?}"
    );
    // Both layers are unpacked into the image's root filesystem.
    let rootfs = g
        .home
        .path()
        .join("images/rootfs")
        .join(digest.trim_start_matches("sha256:"));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/first")).unwrap(),
        "bottom layer\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("usr/share/second")).unwrap(),
        "top layer\n"
    );

    let again = g.ok(&["image", "pull", &reference]);
    assert!(
        again.contains("already stored") && again.contains(&digest),
        "{again}"
    );
    let again = g.json(&["image", "pull", &reference]);
    assert_eq!(again["already_present"], true, "{again:#}");
    assert_eq!(again["downloaded_bytes"], 0, "{again:#}");
    assert_eq!(image_digests(&g), vec![digest]);
}

#[test]
fn a_pipeline_pulls_its_registry_image_and_a_rerun_runs_the_recorded_digest_after_the_tag_moved() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let (Some(original), Some(replacement)) =
        (busybox_variant("original"), busybox_variant("replacement"))
    else {
        return;
    };
    let first_digest = reg.push_image(&original, "team/tool:1");
    let reference = format!("{}/team/tool:1", reg.addr);

    let g = Gantry::empty();
    let file = g.write(
        "pipeline.yaml",
        &format!(
            "name: from-registry\nsteps:\n  - name: hello\n    image: {reference}\n    command: [sh, -c, \"echo hello from; cat /etc/variant\"]\n"
        ),
    );
    let (code, summary, stderr) = g.run_pipeline(&file, &[]);
    assert_eq!(code, 0, "{summary:#}\n{stderr}");
    let run = summary["run_id"].as_str().unwrap().to_string();
    let show = g.show(&run);
    assert_eq!(show["images"]["hello"], first_digest.as_str(), "{show:#}");
    assert_eq!(step(&show, "hello")["image"], first_digest.as_str());
    let logs = g.ok(&["logs", &run, "hello"]);
    assert!(logs.contains("original"), "{logs}");
    assert_eq!(image_digests(&g), vec![first_digest.clone()]);

    // The image leaves the store, and the tag moves to another image.
    g.ok(&["image", "rm", &reference]);
    assert!(image_digests(&g).is_empty());
    let moved_to = reg.push_image(&replacement, "team/tool:1");
    assert_ne!(moved_to, first_digest);

    // The rerun pulls the digest the run recorded, not what the tag names now.
    let out = g.run(&["rerun", &run, "--output", "json", "--no-cache"]);
    assert!(out.status.success(), "{}", both(&out));
    let rerun: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rerun_id = rerun["run_id"].as_str().unwrap();
    let rerun_show = g.show(rerun_id);
    assert_eq!(rerun_show["rerun_of"], run.as_str());
    assert_eq!(
        rerun_show["images"]["hello"],
        first_digest.as_str(),
        "{rerun_show:#}"
    );
    assert_eq!(step(&rerun_show, "hello")["image"], first_digest.as_str());
    let logs = g.ok(&["logs", rerun_id, "hello"]);
    assert!(
        logs.contains("original") && !logs.contains("replacement"),
        "{logs}"
    );
    assert_eq!(image_digests(&g), vec![first_digest]);
}

const USER: &str = "alice";
const PASSWORD: &str = "Tr0ub4dor-and-3";

#[test]
fn a_registry_that_requires_a_password_refuses_pulls_until_gantry_login_and_again_after_logout() {
    let Some(reg) = TestRegistry::start_with_basic_auth(USER, PASSWORD) else {
        return;
    };
    let image = oci::build_image(
        &[oci::file_entries(&[("etc/secret-app", b"v1\n".as_slice())])],
        &[],
    );
    let digest = reg.push_image(&image, "team/private:1");
    let reference = format!("{}/team/private:1", reg.addr);
    let g = Gantry::empty();
    let docker = tempfile::tempdir().unwrap();
    let mut printed = String::new();
    let mut record = |out: &Output| {
        printed.push_str(&text(&out.stdout));
        printed.push_str(&text(&out.stderr));
    };

    let out = g.run_with_docker_config(&["image", "pull", &reference], docker.path(), None);
    record(&out);
    assert_eq!(out.status.code(), Some(6), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&reg.addr) && err.contains(&format!("gantry login {}", reg.addr)),
        "{err}"
    );

    // A wrong password is stored, but the registry refuses it just the same.
    let out = g.run_with_docker_config(
        &["login", &reg.addr, "-u", USER, "--password-stdin"],
        docker.path(),
        Some("not-the-password\n"),
    );
    record(&out);
    assert!(out.status.success(), "{}", both(&out));
    let out = g.run_with_docker_config(&["image", "pull", &reference], docker.path(), None);
    record(&out);
    assert_eq!(out.status.code(), Some(6), "{}", both(&out));

    let out = g.run_with_docker_config(
        &["login", &reg.addr, "-u", USER, "--password-stdin"],
        docker.path(),
        Some(&format!("{PASSWORD}\n")),
    );
    record(&out);
    assert!(out.status.success(), "{}", both(&out));
    let auth = g.home.path().join("auth.json");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "auth.json has mode {mode:o}");
    }
    let stored = std::fs::read_to_string(&auth).unwrap();
    assert!(stored.contains(&reg.addr), "{stored}");
    assert!(
        !stored.contains(PASSWORD),
        "the password is in clear text: {stored}"
    );

    let out = g.run_with_docker_config(
        &["image", "pull", &reference, "-o", "json"],
        docker.path(),
        None,
    );
    record(&out);
    assert!(out.status.success(), "{}", both(&out));
    let pulled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pulled["digest"], digest.as_str());

    let out = g.run_with_docker_config(&["logout", &reg.addr], docker.path(), None);
    record(&out);
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        !std::fs::read_to_string(&auth).unwrap().contains(&reg.addr),
        "logout left the registry in auth.json"
    );
    let out = g.run_with_docker_config(&["image", "pull", &reference], docker.path(), None);
    record(&out);
    assert_eq!(out.status.code(), Some(6), "{}", both(&out));
    // Logging out twice says there is nothing to forget.
    let out = g.run_with_docker_config(&["logout", &reg.addr], docker.path(), None);
    record(&out);
    assert_eq!(out.status.code(), Some(3), "{}", both(&out));

    assert!(
        !printed.contains(PASSWORD),
        "gantry printed the password:\n{printed}"
    );
}

#[test]
fn credentials_in_dockers_config_json_are_used_for_a_registry_that_requires_a_password() {
    let Some(reg) = TestRegistry::start_with_basic_auth(USER, PASSWORD) else {
        return;
    };
    let image = oci::build_image(
        &[oci::file_entries(&[("etc/app", b"v1\n".as_slice())])],
        &[],
    );
    let digest = reg.push_image(&image, "team/private:1");
    let reference = format!("{}/team/private:1", reg.addr);
    let g = Gantry::empty();
    let docker = tempfile::tempdir().unwrap();
    let config = |user: &str, password: &str| {
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{}\"}}}}}}",
            reg.addr,
            oci::base64(format!("{user}:{password}").as_bytes())
        )
    };

    std::fs::write(docker.path().join("config.json"), config(USER, "wrong")).unwrap();
    let out = g.run_with_docker_config(&["image", "pull", &reference], docker.path(), None);
    assert_eq!(out.status.code(), Some(6), "{}", both(&out));
    assert!(image_digests(&g).is_empty());

    std::fs::write(docker.path().join("config.json"), config(USER, PASSWORD)).unwrap();
    let out = g.run_with_docker_config(
        &["image", "pull", &reference, "-o", "json"],
        docker.path(),
        None,
    );
    assert!(out.status.success(), "{}", both(&out));
    let pulled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pulled["digest"], digest.as_str());
    assert!(!text(&out.stdout).contains(PASSWORD) && !text(&out.stderr).contains(PASSWORD));
    assert!(
        !g.home.path().join("auth.json").exists(),
        "reading Docker's credentials must not copy them into GANTRY_HOME"
    );
}

#[test]
fn pulling_a_tag_or_repository_the_registry_does_not_have_is_not_found_and_names_both() {
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let image = oci::build_image(&[oci::file_entries(&[("etc/x", b"x".as_slice())])], &[]);
    reg.push_image(&image, "team/app:1");
    let g = Gantry::empty();
    for missing in ["team/app:nope", "team/never-pushed:1"] {
        let reference = format!("{}/{missing}", reg.addr);
        let out = g.run(&["image", "pull", &reference]);
        assert_eq!(out.status.code(), Some(3), "{}", both(&out));
        let err = text(&out.stderr);
        assert!(
            err.contains(&reg.addr) && err.contains(missing) && err.contains("manifest unknown"),
            "{err}"
        );
    }
    assert!(image_digests(&g).is_empty());
    assert_eq!(store_state(&g).blobs, BTreeSet::new());
}

/// Pulls `reference` into `g` (which holds busybox) and checks that it failed with a message
/// containing every one of `expect`, and that the store is exactly as before.
fn refused_without_trace(g: &Gantry, reference: &str, expect: &[&str]) {
    let before = store_state(g);
    let images_before = image_digests(g);
    let out = g.run(&["image", "pull", reference]);
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "{reference} was not refused:\n{}",
        both(&out)
    );
    let err = text(&out.stderr);
    for e in expect {
        assert!(
            err.contains(e),
            "no {e:?} in the error for {reference}:\n{err}"
        );
    }
    assert_eq!(
        image_digests(g),
        images_before,
        "{reference}: the image list changed"
    );
    assert_eq!(store_state(g), before, "{reference}: the store changed");
}

#[test]
fn a_registry_that_lies_about_the_manifest_is_refused_and_nothing_is_stored() {
    let g = Gantry::new();
    let (hostile, honest) =
        HostileRegistry::scenario(Hostility::ManifestDigestMismatch, "evil/app", "1");
    for reference in [
        format!("{}/evil/app:1", hostile.addr),
        format!("{}/evil/app@{}", hostile.addr, honest.manifest_digest),
    ] {
        refused_without_trace(&g, &reference, &[&honest.manifest_digest, "tampered"]);
    }
    // It never got as far as asking for a layer.
    let requests = hostile.requests();
    assert!(
        !requests.iter().any(|r| r.contains("/blobs/")),
        "{requests:#?}"
    );
}

#[test]
fn a_huge_manifest_is_refused_before_it_is_read_and_nothing_is_stored() {
    let g = Gantry::new();
    let (hostile, honest) = HostileRegistry::scenario(Hostility::HugeManifest, "evil/app", "1");
    for reference in [
        format!("{}/evil/app:1", hostile.addr),
        format!("{}/evil/app@{}", hostile.addr, honest.manifest_digest),
    ] {
        refused_without_trace(&g, &reference, &[&hostile.addr, "limit", "refused"]);
    }
}

#[test]
fn a_manifest_announcing_more_layer_bytes_than_the_unpack_limit_is_refused_before_any_download() {
    let g = Gantry::new();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"sha256:{}","size":2}},"layers":[{{"mediaType":"{}","digest":"sha256:{}","size":10995116277760}}]}}"#,
        oci::OCI_MANIFEST,
        oci::OCI_CONFIG,
        "0".repeat(64),
        oci::OCI_LAYER_GZIP,
        "1".repeat(64)
    )
    .into_bytes();
    let digest = oci::digest_of(&manifest);
    let hostile = HostileRegistry::start(vec![(
        "/v2/evil/big/manifests/1".to_string(),
        Response::manifest(manifest, &digest),
    )]);
    let reference = format!("{}/evil/big:1", hostile.addr);
    refused_without_trace(&g, &reference, &["announces", "limit"]);
    assert!(
        !hostile.requests().iter().any(|r| r.contains("/blobs/")),
        "no blob was asked for: {:#?}",
        hostile.requests()
    );
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused_and_leaves_no_partial_download() {
    let g = Gantry::new();
    let (hostile, honest) =
        HostileRegistry::scenario(Hostility::LayerDigestMismatch, "evil/app", "1");
    let reference = format!("{}/evil/app:1", hostile.addr);
    refused_without_trace(&g, &reference, &[&honest.layers[0].digest, "tampered"]);
    // It did download the layer: the check happened on its content.
    assert!(
        hostile
            .requests()
            .iter()
            .any(|r| r.contains(&honest.layers[0].digest)),
        "{:#?}",
        hostile.requests()
    );

    // The same from a real registry whose stored blob was corrupted on disk.
    let Some(reg) = TestRegistry::start() else {
        return;
    };
    let image = oci::build_image(
        &[oci::file_entries(&[("etc/data", &[7u8; 64 * 1024][..])])],
        &[],
    );
    reg.push_image(&image, "team/app:1");
    // skopeo may recompress; corrupt the layer the registry's manifest names.
    let manifest: Value =
        serde_json::from_slice(&reg.get("/v2/team/app/manifests/1", false).body).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    reg.corrupt_blob("team/app", &layer);
    refused_without_trace(
        &g,
        &format!("{}/team/app:1", reg.addr),
        &[&layer, "tampered"],
    );
    // A retry fails the same way: nothing corrupt was kept to resume from.
    refused_without_trace(
        &g,
        &format!("{}/team/app:1", reg.addr),
        &[&layer, "tampered"],
    );
}

#[test]
fn a_layer_that_writes_outside_the_image_is_refused_and_writes_nothing_anywhere() {
    let g = Gantry::new();
    let (hostile, _honest) = HostileRegistry::scenario(Hostility::PathEscapeLayer, "evil/app", "1");
    let reference = format!("{}/evil/app:1", hostile.addr);
    refused_without_trace(&g, &reference, &["../../etc/evil", "escape"]);
    let evil: Vec<PathBuf> = walk(g.home.path())
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "evil"))
        .collect();
    assert!(evil.is_empty(), "{evil:?}");
    let home = g.home.path();
    for outside in [
        home.parent().unwrap().join("etc/evil"),
        home.join("etc/evil"),
        home.join("images/etc/evil"),
    ] {
        assert!(!outside.exists(), "{} was written", outside.display());
    }
    // A pipeline naming it fails before any step runs, and the same holds.
    let file = g.write(
        "evil.yaml",
        &format!(
            "name: evil\nsteps:\n  - name: a\n    image: {reference}\n    command: [\"true\"]\n"
        ),
    );
    let before = store_state(&g);
    let out = g.run(&["run", file.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", both(&out));
    assert!(text(&out.stderr).contains("escape"), "{}", both(&out));
    assert_eq!(store_state(&g), before);
    assert!(!home.parent().unwrap().join("etc/evil").exists());
}

/// An image manifest (and its config) for `arch`, of `layer`.
fn manifest_for(arch: &str, layer: &Layer) -> (Vec<u8>, String, Vec<u8>, String) {
    let config = format!(
        "{{\"architecture\":\"{arch}\",\"os\":\"linux\",\"config\":{{}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{}\"]}}}}",
        layer.diff_id
    )
    .into_bytes();
    let config_digest = oci::digest_of(&config);
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{}\",\"config\":{{\"mediaType\":\"{}\",\"digest\":\"{config_digest}\",\"size\":{}}},\"layers\":[{{\"mediaType\":\"{}\",\"digest\":\"{}\",\"size\":{}}}]}}",
        oci::OCI_MANIFEST,
        oci::OCI_CONFIG,
        config.len(),
        oci::OCI_LAYER_GZIP,
        layer.digest,
        layer.gz.len()
    )
    .into_bytes();
    let manifest_digest = oci::digest_of(&manifest);
    (manifest, manifest_digest, config, config_digest)
}

#[test]
fn a_multi_architecture_image_resolves_to_this_machines_architecture() {
    let host = oci::oci_arch();
    let foreign = if host == "arm64" { "amd64" } else { "arm64" };
    let host_layer = Layer::new(&oci::file_entries(&[("etc/arch", host.as_bytes())]));
    let foreign_layer = Layer::new(&[
        TarEntry::dir("etc/"),
        TarEntry::file("etc/arch", foreign.as_bytes()),
    ]);
    let (host_manifest, host_digest, host_config, host_config_digest) =
        manifest_for(host, &host_layer);
    let (foreign_manifest, foreign_digest, foreign_config, foreign_config_digest) =
        manifest_for(foreign, &foreign_layer);
    // The foreign platform first, so taking the first entry would be wrong.
    let entry = |digest: &str, size: usize, arch: &str| {
        format!(
            "{{\"mediaType\":\"{}\",\"digest\":\"{digest}\",\"size\":{size},\"platform\":{{\"os\":\"linux\",\"architecture\":\"{arch}\"}}}}",
            oci::OCI_MANIFEST
        )
    };
    let index = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{},{}]}}",
        entry(&foreign_digest, foreign_manifest.len(), foreign),
        entry(&host_digest, host_manifest.len(), host)
    )
    .into_bytes();
    let index_digest = oci::digest_of(&index);
    let index_response = Response::new(
        200,
        &[
            ("Content-Type", "application/vnd.oci.image.index.v1+json"),
            ("Docker-Content-Digest", index_digest.as_str()),
        ],
        oci::Body::Bytes(index.clone()),
    );
    let repo = "/v2/team/multi";
    let registry = HostileRegistry::start(vec![
        (format!("{repo}/manifests/1"), index_response.clone()),
        (format!("{repo}/manifests/{index_digest}"), index_response),
        (
            format!("{repo}/manifests/{host_digest}"),
            Response::manifest(host_manifest, &host_digest),
        ),
        (
            format!("{repo}/manifests/{foreign_digest}"),
            Response::manifest(foreign_manifest, &foreign_digest),
        ),
        (
            format!("{repo}/blobs/{host_config_digest}"),
            Response::blob(host_config, &host_config_digest),
        ),
        (
            format!("{repo}/blobs/{foreign_config_digest}"),
            Response::blob(foreign_config, &foreign_config_digest),
        ),
        (
            format!("{repo}/blobs/{}", host_layer.digest),
            Response::blob(host_layer.gz.clone(), &host_layer.digest),
        ),
        (
            format!("{repo}/blobs/{}", foreign_layer.digest),
            Response::blob(foreign_layer.gz.clone(), &foreign_layer.digest),
        ),
    ]);

    let g = Gantry::empty();
    let reference = format!("{}/team/multi:1", registry.addr);
    let pulled = g.json(&["image", "pull", &reference]);
    assert_eq!(pulled["digest"], host_digest.as_str(), "{pulled:#}");
    assert_eq!(pulled["index_digest"], index_digest.as_str(), "{pulled:#}");
    let list = g.json(&["images"]);
    assert_eq!(list[0]["digest"], host_digest.as_str());
    assert_eq!(list[0]["architecture"], host);
    let rootfs = g
        .home
        .path()
        .join("images/rootfs")
        .join(host_digest.trim_start_matches("sha256:"));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/arch")).unwrap(),
        host
    );
    // Nothing of the other platform was even downloaded.
    let requests = registry.requests();
    for other in [
        &foreign_digest,
        &foreign_config_digest,
        &foreign_layer.digest,
    ] {
        assert!(
            !requests.iter().any(|r| r.contains(other.as_str())),
            "{other} was fetched: {requests:#?}"
        );
    }

    // An index without this machine's platform is refused, naming what it offers.
    let only_foreign = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{}]}}",
        entry(&foreign_digest, 1, foreign)
    )
    .into_bytes();
    let only_digest = oci::digest_of(&only_foreign);
    registry.set(
        &format!("{repo}/manifests/foreign"),
        Response::new(
            200,
            &[
                ("Content-Type", "application/vnd.oci.image.index.v1+json"),
                ("Docker-Content-Digest", only_digest.as_str()),
            ],
            oci::Body::Bytes(only_foreign),
        ),
    );
    let out = g.run(&[
        "image",
        "pull",
        &format!("{}/team/multi:foreign", registry.addr),
    ]);
    assert!(!out.status.success(), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("no linux/{host} image"))
            && err.contains(&format!("linux/{foreign}")),
        "{err}"
    );
    assert_eq!(image_digests(&g), vec![host_digest]);
}
