//! The registry protocol as registries out there speak it: the Docker token flow (a real
//! `docker-registry` with `auth: token:` that sends clients to a token service for a JWT), and
//! a layer download that breaks off halfway and is resumed with a range request.

use crate::support::{Gantry, both, image_digests, names_in, text};
use crate::test_registry::{
    self as oci, BuiltImage, HostileRegistry, RecordedRequest, Response, TOKEN_SERVICE,
    TestRegistry, TokenRequest,
};
use serde_json::Value;
use std::collections::BTreeSet;

use std::process::Output;

// ------------------------------------------------------------------------------------------
// Bearer tokens
// ------------------------------------------------------------------------------------------

const USER: &str = "bob";
const PASSWORD: &str = "correct-horse-battery-staple";

/// The token requests Gantry made (by its User-Agent) since the log held `since` entries;
/// fails when anyone else asked in the meantime, so nothing is mistaken for Gantry's.
fn gantry_token_requests(all: &[TokenRequest], since: usize) -> Vec<TokenRequest> {
    let new = &all[since..];
    assert!(
        new.iter().all(|r| r.user_agent.starts_with("gantry/")),
        "a token request that is not Gantry's: {new:#?}"
    );
    assert!(!new.is_empty(), "Gantry never asked the token service");
    new.to_vec()
}

#[test]
fn a_token_registry_refuses_anonymous_pulls_and_serves_pulls_and_pushes_after_gantry_login() {
    let Some((reg, tokens)) = TestRegistry::start_with_token_auth(USER, PASSWORD) else {
        return;
    };

    // The registry really wants a token: its challenge sends clients to the token service.
    let challenge = oci::http_get(&reg.addr, "/v2/", None);
    assert_eq!(challenge.status, 401, "{challenge:?}");
    let www = challenge.header("WWW-Authenticate").unwrap_or_default();
    assert!(
        www.starts_with("Bearer ")
            && www.contains(&format!("realm=\"{}\"", tokens.realm()))
            && www.contains(&format!("service=\"{TOKEN_SERVICE}\"")),
        "{www}"
    );

    // Another tool (skopeo) pushes through the token flow with the user's password.
    let image = oci::build_image(
        &[oci::file_entries(&[(
            "etc/app-release",
            b"2.1\n".as_slice(),
        )])],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("app.oci.tar");
    image.write_oci_archive(&archive, "latest");
    reg.skopeo_copy(&format!("oci-archive:{}", archive.display()), "team/app:1");
    let digest = reg.skopeo_inspect_digest("team/app:1");
    assert_eq!(digest, image.manifest_digest);
    assert!(
        tokens.requests().iter().any(|r| r.outcome == "granted"
            && r.scopes
                .iter()
                .any(|s| s == "repository:team/app:pull,push")),
        "skopeo pushed without a push token? {:#?}",
        tokens.requests()
    );

    let g = Gantry::new();
    let busybox = image_digests(&g);
    assert_eq!(busybox.len(), 1);
    let docker = tempfile::tempdir().unwrap();
    let reference = format!("{}/team/app:1", reg.addr);
    let mut printed = String::new();
    let mut record = |out: &Output| {
        printed.push_str(&text(&out.stdout));
        printed.push_str(&text(&out.stderr));
    };

    // Without a login Gantry gets an anonymous token, which grants nothing: refused, and told
    // how to log in.
    let since = tokens.requests().len();
    let out = g.run_with_docker_config(&["image", "pull", &reference], docker.path(), None);
    record(&out);
    assert_eq!(out.status.code(), Some(6), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&reg.addr) && err.contains(&format!("gantry login {}", reg.addr)),
        "{err}"
    );
    for r in gantry_token_requests(&tokens.requests(), since) {
        assert_eq!(r.user, None, "{r:#?}");
        assert_eq!(r.outcome, "anonymous", "{r:#?}");
        assert_eq!(r.service, TOKEN_SERVICE, "{r:#?}");
        assert_eq!(r.scopes, vec!["repository:team/app:pull"], "{r:#?}");
    }
    assert_eq!(
        image_digests(&g),
        busybox,
        "a refused pull stored something"
    );

    // A wrong password: the token service itself refuses it.
    let out = g.run_with_docker_config(
        &["login", &reg.addr, "-u", USER, "--password-stdin"],
        docker.path(),
        Some("not-my-password\n"),
    );
    record(&out);
    assert!(out.status.success(), "{}", both(&out));
    let since = tokens.requests().len();
    let out = g.run_with_docker_config(&["image", "pull", &reference], docker.path(), None);
    record(&out);
    assert_eq!(out.status.code(), Some(6), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&reg.addr) && err.contains(&tokens.realm()) && err.contains("401"),
        "{err}"
    );
    for r in gantry_token_requests(&tokens.requests(), since) {
        assert_eq!(r.user.as_deref(), Some(USER), "{r:#?}");
        assert_eq!(r.outcome, "refused", "{r:#?}");
    }

    // The right password: a token for pulling team/app, and the image skopeo pushed.
    let out = g.run_with_docker_config(
        &["login", &reg.addr, "-u", USER, "--password-stdin"],
        docker.path(),
        Some(&format!("{PASSWORD}\n")),
    );
    record(&out);
    assert!(out.status.success(), "{}", both(&out));
    let since = tokens.requests().len();
    let out = g.run_with_docker_config(
        &["image", "pull", &reference, "-o", "json"],
        docker.path(),
        None,
    );
    record(&out);
    assert!(out.status.success(), "{}", both(&out));
    let pulled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pulled["digest"], digest.as_str(), "{pulled:#}");
    assert_eq!(pulled["already_present"], false, "{pulled:#}");
    for r in gantry_token_requests(&tokens.requests(), since) {
        assert_eq!(r.user.as_deref(), Some(USER), "{r:#?}");
        assert_eq!(r.outcome, "granted", "{r:#?}");
        assert_eq!(r.service, TOKEN_SERVICE, "{r:#?}");
        assert_eq!(r.scopes, vec!["repository:team/app:pull"], "{r:#?}");
        assert_eq!(r.granted, vec!["repository:team/app:pull"], "{r:#?}");
    }
    let mut stored = image_digests(&g);
    stored.sort();
    let mut expected = vec![busybox[0].clone(), digest.clone()];
    expected.sort();
    assert_eq!(stored, expected);

    // Pushing another stored image needs a token that may push: Gantry asks for pull,push.
    let target = format!("{}/team/busybox:1", reg.addr);
    let since = tokens.requests().len();
    let out = g.run_with_docker_config(
        &["image", "push", "busybox:1", &target, "-o", "json"],
        docker.path(),
        None,
    );
    record(&out);
    assert!(out.status.success(), "{}", both(&out));
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["digest"], busybox[0].as_str(), "{pushed:#}");
    assert_eq!(pushed["uploaded_blobs"], 2, "{pushed:#}");
    let asked = gantry_token_requests(&tokens.requests(), since);
    assert!(
        asked.iter().any(|r| r.user.as_deref() == Some(USER)
            && r.outcome == "granted"
            && r.scopes == ["repository:team/busybox:pull,push"]
            && r.granted == ["repository:team/busybox:pull,push"]),
        "Gantry never asked for a push token: {asked:#?}"
    );
    for r in &asked {
        assert!(
            r.scopes
                .iter()
                .all(|s| s.starts_with("repository:team/busybox:")),
            "a token for another repository while pushing team/busybox: {r:#?}"
        );
    }
    // Another client sees exactly the image Gantry stores.
    assert_eq!(reg.skopeo_inspect_digest("team/busybox:1"), busybox[0]);

    // Where the user may only pull, the token service leaves push out of the token and the
    // registry refuses the upload: Gantry says the stored credentials were refused rather
    // than asking for a login the user already did.
    let since = tokens.requests().len();
    let out = g.run_with_docker_config(
        &[
            "image",
            "push",
            "busybox:1",
            &format!("{}/readonly/busybox:1", reg.addr),
        ],
        docker.path(),
        None,
    );
    record(&out);
    assert_eq!(out.status.code(), Some(6), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&reg.addr)
            && err.contains("credentials stored for")
            && err.contains("not allowed")
            && !err.contains("run `gantry login"),
        "{err}"
    );
    let asked = gantry_token_requests(&tokens.requests(), since);
    assert!(
        asked.iter().all(|r| r.outcome == "granted"
            && r.scopes == ["repository:readonly/busybox:pull,push"]
            && r.granted == ["repository:readonly/busybox:pull"]),
        "{asked:#?}"
    );

    assert!(
        !printed.contains(PASSWORD),
        "gantry printed the password:\n{printed}"
    );
    assert!(
        !printed.contains("eyJ"),
        "gantry printed something that looks like a token:\n{printed}"
    );
}

// ------------------------------------------------------------------------------------------
// A download that breaks off, and the pull that resumes it
// ------------------------------------------------------------------------------------------

/// An image with one layer holding `size` bytes of noise (so the layer is about that big: the
/// test images' gzip does not compress).
fn noisy_image(size: usize) -> BuiltImage {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    oci::build_image(
        &[oci::file_entries(&[("opt/model/weights.bin", &noise)])],
        &[],
    )
}

/// The requests for `path`, in order.
fn requests_for(reg: &HostileRegistry, path: &str) -> Vec<RecordedRequest> {
    reg.recorded_requests()
        .into_iter()
        .filter(|r| r.path() == path)
        .collect()
}

/// A registry serving `image` as team/model:1 whose layer download hangs up after half the
/// bytes; a first `gantry image pull` into `g`, which fails. Checks that nothing was stored
/// and that exactly the half that arrived waits under tmp/downloads. Returns the registry, the
/// layer's path on it and the half.
fn pull_that_breaks_off_halfway(
    g: &Gantry,
    image: &BuiltImage,
) -> (HostileRegistry, String, usize) {
    let layer = &image.layers[0];
    let half = layer.gz.len() / 2;
    let reg = HostileRegistry::start(oci::image_routes("team/model", "1", image));
    let layer_path = format!("/v2/team/model/blobs/{}", layer.digest);
    reg.set(
        &layer_path,
        Response::blob_broken_off(&layer.gz, &layer.digest, half),
    );
    let reference = format!("{}/team/model:1", reg.addr);

    let out = g.run(&["image", "pull", &reference]);
    assert!(!out.status.success(), "{}", both(&out));
    // A clean error, not a crash (101 is a Rust panic) or a signal.
    assert!(
        out.status.code().is_some_and(|c| c != 101),
        "{}",
        both(&out)
    );
    let err = text(&out.stderr);
    assert!(
        err.contains(&reg.addr)
            && err.contains(&layer.digest)
            && err.contains("broke off")
            && err.contains(&format!("after {half} of {} bytes", layer.gz.len()))
            && err.contains("pull again"),
        "{err}"
    );

    // The one layer request asked for the whole blob.
    let asked = requests_for(&reg, &layer_path);
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(asked[0].method, "GET");
    assert_eq!(asked[0].header("Range"), None, "{asked:#?}");

    // Nothing reached the store: no image, no blob, no root filesystem, no staging left over.
    assert!(image_digests(g).is_empty());
    let images = g.home.path().join("images");
    assert_eq!(names_in(&images.join("blobs/sha256")), BTreeSet::new());
    assert_eq!(names_in(&images.join("rootfs")), BTreeSet::new());
    assert_eq!(
        names_in(&images.join("tmp")),
        BTreeSet::from(["downloads".to_string()])
    );
    // What did arrive is kept for the next pull, byte for byte.
    let hex = layer.digest.strip_prefix("sha256:").unwrap();
    let downloads = images.join("tmp/downloads");
    let partials: Vec<String> = names_in(&downloads)
        .into_iter()
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert_eq!(partials, vec![format!("{hex}.partial")]);
    let kept = std::fs::read(downloads.join(format!("{hex}.partial"))).unwrap();
    assert_eq!(kept.len(), half);
    assert!(
        kept == layer.gz[..half],
        "the partial download is not the layer's first half"
    );
    (reg, layer_path, half)
}

/// After a successful pull of `image`: the image is stored under its digest, its layer is in
/// the store, and no partial download is left.
fn stored_whole(g: &Gantry, image: &BuiltImage, pulled: &Value) {
    assert_eq!(
        pulled["digest"],
        image.manifest_digest.as_str(),
        "{pulled:#}"
    );
    assert_eq!(image_digests(g), vec![image.manifest_digest.clone()]);
    let images = g.home.path().join("images");
    let hex = image.layers[0].digest.strip_prefix("sha256:").unwrap();
    assert!(
        names_in(&images.join("blobs/sha256")).contains(hex),
        "the layer is not in the store"
    );
    let partials: Vec<String> = names_in(&images.join("tmp/downloads"))
        .into_iter()
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(partials.is_empty(), "partial downloads left: {partials:?}");
}

#[test]
fn a_pull_that_breaks_off_halfway_stores_nothing_and_the_next_pull_resumes_where_it_stopped() {
    let image = noisy_image(512 << 10);
    let layer = &image.layers[0];
    let g = Gantry::empty();
    let (reg, layer_path, half) = pull_that_breaks_off_halfway(&g, &image);
    let reference = format!("{}/team/model:1", reg.addr);

    // The registry is whole again, and answers range requests.
    reg.set_blob_with_ranges(&layer_path, layer.gz.clone(), &layer.digest);
    let before = requests_for(&reg, &layer_path).len();
    let pulled = g.json(&["image", "pull", &reference]);

    // Gantry asked only for the bytes it lacked, and only those came down.
    let asked = &requests_for(&reg, &layer_path)[before..];
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(asked[0].method, "GET");
    assert_eq!(
        asked[0].header("Range"),
        Some(format!("bytes={half}-").as_str()),
        "{asked:#?}"
    );
    assert_eq!(
        pulled["downloaded_bytes"],
        (layer.gz.len() - half) as u64,
        "{pulled:#}"
    );
    assert_eq!(pulled["already_present"], false, "{pulled:#}");
    stored_whole(&g, &image, &pulled);
}

#[test]
fn a_resumed_pull_from_a_registry_that_ignores_the_range_starts_the_layer_over_and_succeeds() {
    let image = noisy_image(256 << 10);
    let layer = &image.layers[0];
    let g = Gantry::empty();
    let (reg, layer_path, half) = pull_that_breaks_off_halfway(&g, &image);
    let reference = format!("{}/team/model:1", reg.addr);

    // The registry is whole again but answers every request with the whole blob and 200.
    reg.set(&layer_path, Response::blob(layer.gz.clone(), &layer.digest));
    let before = requests_for(&reg, &layer_path).len();
    let pulled = g.json(&["image", "pull", &reference]);

    let asked = &requests_for(&reg, &layer_path)[before..];
    assert_eq!(asked.len(), 1, "{asked:#?}");
    assert_eq!(
        asked[0].header("Range"),
        Some(format!("bytes={half}-").as_str()),
        "{asked:#?}"
    );
    // The half kept from before was dropped, not glued to a whole copy.
    assert_eq!(
        pulled["downloaded_bytes"],
        layer.gz.len() as u64,
        "{pulled:#}"
    );
    stored_whole(&g, &image, &pulled);
}
