//! Self-test of testing/registry.rs: the real registry fixture (docker-registry + skopeo) and
//! the hostile one, checked with skopeo and raw HTTP so that tests built on them test Gantry,
//! not the fixture.

#![allow(clippy::unwrap_used)]

#[path = "../../../testing/skip.rs"]
mod skip;

#[path = "../../../testing/registry.rs"]
mod registry;

use std::process::Command;

use registry::{
    Body, HostileRegistry, Hostility, Response, TarEntry, TestRegistry, build_image, digest_of,
    http_get, http_head, sha256_hex,
};

#[test]
fn sha256_gzip_and_tar_agree_with_the_system_tools() {
    let dir = tempfile::tempdir().unwrap();
    for data in [&b""[..], b"abc", &vec![7u8; 200_000]] {
        let path = dir.path().join("data");
        std::fs::write(&path, data).unwrap();
        let out = Command::new("sha256sum").arg(&path).output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(text.split_whitespace().next().unwrap(), sha256_hex(data));
        }
        let gz = dir.path().join("data.gz");
        std::fs::write(&gz, registry::gzip(data)).unwrap();
        if let Ok(out) = Command::new("gzip").arg("-dc").arg(&gz).output() {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, data);
        }
    }
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
    let entries = vec![
        TarEntry::dir("a/"),
        TarEntry::file("a/b.txt", b"hello"),
        TarEntry::symlink("a/link", "b.txt"),
        TarEntry::file(&long, b"long"),
        TarEntry::file("../../etc/evil", b"evil"),
    ];
    let tar = dir.path().join("x.tar");
    std::fs::write(&tar, registry::tar(&entries)).unwrap();
    if let Ok(out) = Command::new("tar").arg("-tvf").arg(&tar).output() {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        for name in [
            "a/b.txt",
            "a/link -> b.txt",
            long.as_str(),
            "../../etc/evil",
        ] {
            assert!(listing.contains(name), "{name} missing from\n{listing}");
        }
    }
    assert_eq!(registry::base64(b"user:pass"), "dXNlcjpwYXNz");
    assert_eq!(registry::base64(b"ab"), "YWI=");
}

#[test]
fn real_registry_push_inspect_pull_and_auth() {
    let Some(anon) = TestRegistry::start() else {
        return;
    };
    let Some(authed) = TestRegistry::start_with_basic_auth("alice", "s3cret") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // make_oci_archive: a two-layer image, pushed and inspected.
    let archive = registry::make_oci_archive(
        dir.path(),
        &[
            vec![
                ("etc/hello", b"hello\n".as_slice()),
                ("usr/share/doc/x", b"x"),
            ],
            vec![("etc/hello", b"hello again\n".as_slice())],
        ],
        "v1",
    );
    let src = format!("oci-archive:{}", archive.display());
    anon.skopeo_copy(&src, "test/made:v1");
    let digest = anon.skopeo_inspect_digest("test/made:v1");
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let manifest = anon.get("/v2/test/made/manifests/v1", false);
    assert_eq!(manifest.status, 200);
    assert_eq!(
        manifest.header("Docker-Content-Digest"),
        Some(digest.as_str())
    );
    assert_eq!(digest_of(&manifest.body), digest);

    // build_image + write_oci_archive: digests known up front, kept by skopeo.
    let image = build_image(
        &[
            registry::file_entries(&[("a/one", b"1".as_slice())]),
            registry::file_entries(&[("a/two", b"2".as_slice())]),
        ],
        &["/bin/true"],
    );
    let built = dir.path().join("built.tar");
    image.write_oci_archive(&built, "b1");
    anon.skopeo_copy(&format!("oci-archive:{}", built.display()), "test/built:b1");
    assert_eq!(
        anon.skopeo_inspect_digest("test/built:b1"),
        image.manifest_digest
    );
    let layer = &image.layers[1];
    let data_path = anon.blob_data_path("test/built", &layer.digest);
    assert!(data_path.exists(), "{}", data_path.display());
    assert_eq!(std::fs::read(&data_path).unwrap(), layer.gz);
    let blob = anon.get(&format!("/v2/test/built/blobs/{}", layer.digest), false);
    assert_eq!(
        (blob.status, digest_of(&blob.body)),
        (200, layer.digest.clone())
    );

    // Corrupting it on disk: the registry serves bytes that do not match the digest.
    anon.corrupt_blob("test/built", &layer.digest);
    let blob = anon.get(&format!("/v2/test/built/blobs/{}", layer.digest), false);
    assert_eq!(blob.status, 200);
    assert_eq!(blob.body.len(), layer.gz.len());
    assert_ne!(digest_of(&blob.body), layer.digest);

    // The OCI layout directory source and the copy back out.
    let layout = dir.path().join("layout");
    image.write_oci_layout(&layout, "l1");
    anon.skopeo_copy(&format!("oci:{}:l1", layout.display()), "test/layout:l1");
    let out_dir = dir.path().join("out");
    anon.skopeo_copy_to_oci_layout("test/made:v1", &out_dir);
    let index = std::fs::read_to_string(out_dir.join("index.json")).unwrap();
    assert!(
        index.contains(&digest) && index.contains("\"v1\""),
        "{index}"
    );

    // Basic auth: /v2/ without credentials is 401, with them 200; skopeo uses them.
    let anonymous = authed.get("/v2/", false);
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous
            .header("WWW-Authenticate")
            .is_some_and(|v| v.starts_with("Basic"))
    );
    assert_eq!(authed.get("/v2/", true).status, 200);
    authed.skopeo_copy(&src, "private/made:v1");
    assert_eq!(authed.skopeo_inspect_digest("private/made:v1"), digest);
    assert_eq!(
        authed.get("/v2/private/made/manifests/v1", false).status,
        401
    );
    assert!(authed.blob_data_path("private/made", &digest).exists());

    // Busybox, when a static one is installed.
    if let Some(bb) = registry::busybox_oci_archive(dir.path()) {
        anon.skopeo_copy(
            &format!("oci-archive:{}", bb.display()),
            "library/busybox:1",
        );
        let d = anon.skopeo_inspect_digest("library/busybox:1");
        assert!(d.starts_with("sha256:"));
    }
}

#[test]
fn hostile_registry_scenarios() {
    let repo = "evil/img";
    let skopeo = registry::find_program(&["skopeo"]);
    let dir = tempfile::tempdir().unwrap();
    let skopeo_pull = |addr: &str, reference: &str, n: usize| -> (bool, String) {
        let out = Command::new(skopeo.as_ref().unwrap())
            .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
            .arg(format!("docker://{addr}/{reference}"))
            .arg(format!(
                "oci:{}",
                dir.path().join(format!("pull{n}")).display()
            ))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // (a) The manifest body does not hash to the digest asked for / announced.
    let (hostile, honest) = HostileRegistry::scenario(Hostility::ManifestDigestMismatch, repo, "1");
    let by_digest = http_get(
        &hostile.addr,
        &format!("/v2/{repo}/manifests/{}", honest.manifest_digest),
        None,
    );
    assert_eq!(by_digest.status, 200);
    assert_eq!(
        by_digest.header("Docker-Content-Digest"),
        Some(honest.manifest_digest.as_str())
    );
    assert_ne!(digest_of(&by_digest.body), honest.manifest_digest);
    if skopeo.is_some() {
        let (ok, err) = skopeo_pull(
            &hostile.addr,
            &format!("{repo}@{}", honest.manifest_digest),
            1,
        );
        assert!(
            !ok,
            "skopeo accepted a manifest that does not match its digest"
        );
        assert!(err.to_lowercase().contains("digest"), "{err}");
    }
    assert!(
        hostile
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /v2/evil/img/manifests/"))
    );
    drop(hostile);

    // (b) A 64 MiB manifest, announced and streamed.
    let (hostile, _) = HostileRegistry::scenario(Hostility::HugeManifest, repo, "1");
    let head = http_head(&hostile.addr, &format!("/v2/{repo}/manifests/1"), None);
    assert_eq!(
        head.header("Content-Length"),
        Some(registry::HUGE_MANIFEST_LEN.to_string().as_str())
    );
    let got = http_get(&hostile.addr, &format!("/v2/{repo}/manifests/1"), None);
    assert_eq!(got.body.len() as u64, registry::HUGE_MANIFEST_LEN);
    assert!(got.body.starts_with(b"{\"schemaVersion\":2,") && got.body.ends_with(b"]}"));
    drop(hostile);

    // (c) The layer blob does not match the digest the honest manifest names.
    let (hostile, image) = HostileRegistry::scenario(Hostility::LayerDigestMismatch, repo, "1");
    let layer = &image.layers[0];
    let blob = http_get(
        &hostile.addr,
        &format!("/v2/{repo}/blobs/{}", layer.digest),
        None,
    );
    assert_eq!(blob.body.len(), layer.gz.len());
    assert_ne!(digest_of(&blob.body), layer.digest);
    if skopeo.is_some() {
        let (ok, err) = skopeo_pull(&hostile.addr, &format!("{repo}:1"), 3);
        assert!(
            !ok,
            "skopeo accepted a layer that does not match its digest"
        );
        assert!(err.to_lowercase().contains("digest"), "{err}");
    }
    drop(hostile);

    // (d) A layer escaping the rootfs, digest matching: transports accept it (skopeo does),
    // only an unpacker can refuse it.
    let (hostile, image) = HostileRegistry::scenario(Hostility::PathEscapeLayer, repo, "1");
    let layer = &image.layers[0];
    let blob = http_get(
        &hostile.addr,
        &format!("/v2/{repo}/blobs/{}", layer.digest),
        None,
    );
    assert_eq!(digest_of(&blob.body), layer.digest);
    assert!(layer.tar.windows(14).any(|w| w == b"../../etc/evil"));
    if skopeo.is_some() {
        let (ok, err) = skopeo_pull(&hostile.addr, &format!("{repo}:1"), 4);
        assert!(ok, "{err}");
    }
    drop(hostile);

    // Hand-made routes: a lying Content-Length and a 404 default.
    let hostile = HostileRegistry::start(vec![(
        "/v2/x/blobs/sha256:00".to_string(),
        Response::new(
            200,
            &[],
            Body::Repeat {
                byte: b'a',
                len: 10,
            },
        ),
    )]);
    assert_eq!(http_get(&hostile.addr, "/v2/", None).status, 200);
    assert_eq!(
        http_get(&hostile.addr, "/v2/x/blobs/sha256:00", None).body,
        b"aaaaaaaaaa"
    );
    assert_eq!(
        http_get(&hostile.addr, "/v2/x/manifests/nope", None).status,
        404
    );
    hostile.set("/v2/x/manifests/nope", Response::error(401, "UNAUTHORIZED"));
    assert_eq!(
        http_get(&hostile.addr, "/v2/x/manifests/nope", None).status,
        401
    );
}
