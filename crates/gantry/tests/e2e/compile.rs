//! `gantry compile`: the hello pipeline exported for Argo Workflows and Kubeflow Pipelines,
//! valid for each (Argo's CRD schema made strict; the kfp SDK), and the refusals a user meets.

use std::path::Path;

use crate::support::Gantry;

fn helper() -> String {
    format!("registry.test/gantry/builtin@sha256:{}", "a".repeat(64))
}

#[test]
fn the_hello_pipeline_exports_to_argo_and_kfp() {
    let g = Gantry::empty();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello/pipeline.yaml");
    let src = src.to_str().unwrap();
    let helper = helper();
    let base = [
        "compile",
        src,
        "--artifacts",
        "s3://team/gantry",
        "--helper-image",
        &helper,
        "--allow-tags",
        "-p",
        "repeat=5",
    ];

    let out = g.dir.path().join("hello.argo.yaml");
    let mut args = base.to_vec();
    args.extend(["--target", "argo", "--out", out.to_str().unwrap()]);
    let done = g.run(&args);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let argo = std::fs::read_to_string(&out).unwrap();
    assert!(argo.contains("kind: Workflow"), "{argo}");
    assert!(argo.contains("step-exec"), "{argo}");
    crate::kube::assert_valid_argo_workflow(&argo);

    let mut args = base.to_vec();
    args.extend(["--target", "kfp"]);
    let done = g.run(&args);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let kfp = String::from_utf8(done.stdout).unwrap();
    assert!(kfp.contains("schemaVersion: \"2.1.0\""), "{kfp}");
    crate::kube::assert_valid_kfp_pipeline_spec(&kfp);

    // Reporting to a server, the exit handler carries the spec file as written (base64, so
    // that no `{{` of it is taken for a placeholder): the run's snapshot.
    let mut args = base.to_vec();
    args.extend([
        "--target",
        "argo",
        "--report-to",
        "http://gantry:8080",
        "--report-token-secret",
        "gantry-token",
    ]);
    let done = g.run(&args);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let argo = String::from_utf8(done.stdout).unwrap();
    crate::kube::assert_valid_argo_workflow(&argo);
    let written = std::fs::read_to_string(src).unwrap();
    let encoded = gantry_kube::exported::encode_spec(&written).unwrap();
    assert_eq!(
        argo.matches(&format!(r#"\"spec\":\"{encoded}\""#)).count(),
        1,
        "{argo}"
    );
}

#[test]
fn compile_says_what_it_needs() {
    let g = Gantry::empty();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello/pipeline.yaml");
    let src = src.to_str().unwrap();
    let helper = helper();
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec![
                "compile",
                src,
                "--target",
                "argo",
                "--helper-image",
                &helper,
            ],
            "--artifacts",
        ),
        (
            vec![
                "compile",
                src,
                "--target",
                "argo",
                "--artifacts",
                "s3://b/p",
            ],
            "--helper-image",
        ),
        (
            vec![
                "compile",
                src,
                "--target",
                "airflow",
                "--artifacts",
                "s3://b/p",
                "--helper-image",
                &helper,
            ],
            "use argo or kfp",
        ),
        (
            vec![
                "compile",
                src,
                "--target",
                "argo",
                "--artifacts",
                "s3://b/p",
                "--helper-image",
                &helper,
            ],
            "not pinned by digest",
        ),
    ];
    for (args, says) in cases {
        let out = g
            .command(&args)
            .env_remove("GANTRY_ARTIFACTS")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
