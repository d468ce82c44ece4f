//! Artifacts in an S3 bucket (`--artifacts s3://bucket/prefix`, moto_server on 127.0.0.1):
//! real runc steps hand their outputs to each other through the bucket, a second run is
//! cached from it, and artifacts are fetched back — with nothing in GANTRY_HOME's own store.

use crate::moto::Moto;
use crate::support::{Gantry, step};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn with_s3(g: &Gantry, moto: &Moto, location: &str, args: &[&str]) -> Output {
    let mut c = g.command(args);
    c.env("GANTRY_ARTIFACTS", location);
    for (k, v) in moto.env() {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn steps_hand_outputs_through_a_bucket_and_a_rerun_is_cached_from_it() {
    let Some(moto) = Moto::start() else {
        return;
    };
    moto.create_bucket("team-artifacts");
    let g = Gantry::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello/pipeline.yaml");
    let file = g.write(
        "hello/pipeline.yaml",
        &std::fs::read_to_string(src).unwrap(),
    );
    let file = file.to_str().unwrap();
    let at = "s3://team-artifacts/gantry";

    let first = ok_json(&with_s3(&g, &moto, at, &["run", file, "-o", "json"]));
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["cache_hits"], 0);
    let upper = step(&first, "upper")["outputs"]["upper"]
        .as_str()
        .unwrap()
        .to_owned();
    // Nothing went into GANTRY_HOME's own store.
    let local_objects = g.home.path().join("artifacts/objects/sha256");
    assert!(
        !local_objects.exists() || std::fs::read_dir(&local_objects).unwrap().count() == 0,
        "outputs were stored locally"
    );

    // Fetched back from the bucket, verified.
    let out = tempfile::tempdir().unwrap();
    let got = with_s3(
        &g,
        &moto,
        at,
        &[
            "artifact",
            "get",
            &upper,
            "--out",
            out.path().to_str().unwrap(),
        ],
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let path = String::from_utf8_lossy(&got.stdout).trim().to_owned();
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        "HELLO 1\nHELLO 2\nHELLO 3\n"
    );

    // A second run finds every step's outputs in the bucket.
    let second = ok_json(&with_s3(&g, &moto, at, &["run", file, "-o", "json"]));
    assert_eq!(second["status"], "succeeded");
    assert_eq!(
        second["cache_hits"].as_u64(),
        Some(second["steps"].as_array().unwrap().len() as u64)
    );

    // Under another prefix the same bucket holds nothing of it: the run executes again.
    let third = ok_json(&with_s3(
        &g,
        &moto,
        "s3://team-artifacts/other",
        &["run", file, "-o", "json"],
    ));
    assert_eq!(third["cache_hits"], 0);

    // gc and df work on the bucket: nothing a kept run needs is removed.
    let gc = ok_json(&with_s3(&g, &moto, at, &["gc", "--dry-run", "-o", "json"]));
    assert_eq!(gc["dry_run"], true, "{gc:#}");
    assert!(gc["kept_artifacts"].as_u64().unwrap() >= 3, "{gc:#}");
    let df = with_s3(&g, &moto, at, &["df"]);
    assert!(
        df.status.success(),
        "{}",
        String::from_utf8_lossy(&df.stderr)
    );

    // A bad location is a usage error that says what is wrong.
    let bad = with_s3(&g, &moto, "s3://Team_Artifacts", &["run", file]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("GANTRY_ARTIFACTS") && err.contains("bucket name"),
        "{err}"
    );
}
