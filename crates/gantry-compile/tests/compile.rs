//! `gantry compile --target argo|kfp`: a pipeline with params, a matrix sweep, GPU and MIG
//! steps, built-in steps, retries and timeouts becomes an Argo Workflow and a KFP v2 pipeline
//! spec that their own schemas and loaders accept (testing/kube.rs), whose references all
//! resolve, and that match the golden files (`GANTRY_BLESS=1` rewrites them).

#[path = "../../../testing/kube.rs"]
mod kube;
#[path = "../../../testing/skip.rs"]
mod skip;

use std::path::{Path, PathBuf};

use gantry_compile::{
    CompileError, CompileOptions, Target, check_references, compile, compile_argo, compile_kfp,
};
use gantry_spec::Pipeline;

const HELPER: &str = "registry.example.com/gantry@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const TRAINER: &str = "registry.example.com/team/trainer@sha256:2222222222222222222222222222222222222222222222222222222222222222";
const DATA_DIGEST: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

/// Everything the issue lists: params (free and matrix-bound), a built-in reading a file
/// stored beforehand, a sweep over an image step with a GPU, a fan-in over the sweep, a MIG
/// step with network, retries, timeouts.
fn iris() -> String {
    format!(
        r#"name: iris
description: Train and ship an iris classifier
params:
  test_fraction: 0.2
  max_depth: 4
  label: species
  rates: 0.1
steps:
  - name: ingest
    uses: builtin/csv-ingest
    with: {{ source: data/iris.csv }}
    outputs: [dataset]
  - name: split
    uses: builtin/split
    inputs: {{ dataset: ingest.dataset }}
    with: {{ test_fraction: "${{params.test_fraction}}", seed: 7, stratify: "${{params.label}}" }}
    outputs: [train, test]
  - name: train
    image: {TRAINER}
    command: [python, /app/train.py, --lr, "${{matrix.lr}}", --max-depth, "${{params.max_depth}}", --data, "${{inputs.train}}"]
    matrix: {{ lr: ["${{params.rates}}", 0.3] }}
    inputs: {{ train: split.train }}
    outputs: [model]
    resources: {{ cpu: 2, memory: 2Gi, gpu: 1 }}
    kubernetes: {{ node_selector: {{ nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3 }}, tolerations: [{{ key: nvidia.com/gpu, operator: Exists, effect: NoSchedule }}] }}
    retries: 2
    timeout: 20m
  - name: evaluate
    uses: builtin/evaluate
    inputs: {{ model: train.model, test: split.test }}
    outputs: [report]
    timeout: 5m
    timeout_grace: 30s
  - name: publish.report
    image: {TRAINER}
    command: [sh, -c, "cp -r /gantry/inputs/report /gantry/outputs/published"]
    env: {{ DEPTH: "d${{params.max_depth}}" }}
    inputs: {{ report: evaluate.report }}
    outputs: [published]
    resources: {{ gpu: {{ count: 1, model: 1g.10gb }} }}
    network: true
    retries: 1
"#
    )
}

fn parse(text: &str) -> Pipeline {
    gantry_spec::parse("p.yaml", Path::new("/base"), text)
        .unwrap_or_else(|e| panic!("the test spec parses: {e}"))
}

fn options() -> CompileOptions {
    let mut opts = CompileOptions::new("s3://gantry-artifacts/team", HELPER);
    opts.namespace = Some("ml".into());
    opts.service_account = Some("pipelines".into());
    opts.image_pull_secrets = vec!["regcred".into()];
    opts.artifacts_secret = Some("gantry-s3".into());
    opts.input_digests
        .insert("ingest/source".into(), DATA_DIGEST.into());
    opts
}

fn golden(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("GANTRY_BLESS").is_some_and(|v| !v.is_empty()) {
        std::fs::write(&path, text).expect("writing the golden file");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e} (GANTRY_BLESS=1 writes it)", path.display()));
    assert!(
        want == text,
        "{} differs from what compiles now (GANTRY_BLESS=1 rewrites it):\n{text}",
        path.display()
    );
}

fn assert_refs(target: Target, text: &str) {
    if let Err(errors) = check_references(target, text) {
        panic!("dangling references:\n{}\n{text}", errors.join("\n"));
    }
}

#[test]
fn the_iris_pipeline_compiles_to_a_valid_argo_workflow() {
    let text = compile_argo(&parse(&iris()), &options()).expect("compiles");
    assert_refs(Target::Argo, &text);
    kube::assert_valid_argo_workflow(&text);
    golden("iris.argo.yaml", &text);

    // What the workflow must say, beyond the schema.
    for needle in [
        "generateName: iris-",
        "namespace: ml",
        // Free params stay parameters; `rates` decides the sweep's names, so it is compiled in.
        "name: max_depth",
        "value: \"4\"",
        "- --max-depth\n      - \"{{workflow.parameters.max_depth}}\"",
        // A typed param keeps its type inside the plan's JSON.
        r#"\"max_depth\":{{workflow.parameters.max_depth}}"#,
        r#"\"label\":\"{{workflow.parameters.label}}\""#,
        "nvidia.com/gpu: \"1\"",
        "nvidia.com/mig-1g.10gb: \"1\"",
        "limit: 2",
        "activeDeadlineSeconds: 1270",
        "readOnlyRootFilesystem: true",
        "automountServiceAccountToken: false",
        "- /gantry/bin/gantry\n      - step-exec\n      - --digests-dir\n      - /gantry/digests",
        "path: /gantry/digests/model",
        "{{tasks.split.outputs.parameters.train}}",
        DATA_DIGEST,
        "/opt/gantry/bin/gantry\n      - component\n      - split",
        "secretRef:",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("name: rates"), "{text}");
    assert!(!text.contains("⟦"), "a sentinel leaked:\n{text}");
    // The sweep's two members share one template.
    assert_eq!(text.matches("\n  - name: train\n").count(), 1, "{text}");
    assert_eq!(text.matches("template: train\n").count(), 2, "{text}");
}

#[test]
fn the_iris_pipeline_compiles_to_a_valid_kfp_pipeline_spec() {
    let text = compile_kfp(&parse(&iris()), &options()).expect("compiles");
    assert_refs(Target::Kfp, &text);
    kube::assert_valid_kfp_pipeline_spec(&text);
    golden("iris.kfp.yaml", &text);
    for needle in [
        "schemaVersion: \"2.1.0\"",
        "parameterType: NUMBER_INTEGER",
        "componentInputParameter: max_depth",
        "producerTask: split",
        "outputParameterKey: train",
        "maxRetryCount: 2",
        "resourceType: nvidia.com/mig-1g.10gb",
        "{{$.outputs.parameters['model'].output_file}}",
        r#"\"max_depth\":{{$.inputs.parameters['max_depth']}}"#,
        "DEPTH=d{{$.inputs.parameters['max_depth']}}",
        "emptyDirMounts:",
        "secretAsEnv:",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("⟦"), "a sentinel leaked:\n{text}");
    assert_eq!(text.matches("\n  comp-train:\n").count(), 1, "{text}");
}

#[test]
fn param_overrides_become_the_defaults() {
    let mut opts = options();
    opts.params = vec![
        ("max_depth".into(), "9".into()),
        ("rates".into(), "0.5".into()),
    ];
    let p = parse(&iris());
    let argo = compile_argo(&p, &opts).expect("compiles");
    assert!(argo.contains("value: \"9\""), "{argo}");
    assert!(argo.contains("train[lr=0.5]"), "{argo}");
    let kfp = compile_kfp(&p, &opts).expect("compiles");
    assert!(kfp.contains("defaultValue: 9"), "{kfp}");
    opts.params = vec![("max_depth".into(), "deep".into())];
    let err = compile_argo(&p, &opts).expect_err("a bad override");
    assert!(matches!(err, CompileError::Spec(_)), "{err}");
}

fn sweep(members: usize, extra: &str) -> String {
    let values: Vec<String> = (0..members).map(|i| format!("{i}")).collect();
    format!(
        r#"name: big-sweep
steps:
  - name: prep
    uses: builtin/split
    outputs: [data]
  - name: train
    image: {TRAINER}
    command: [train, "--seed=${{matrix.seed}}", "${{inputs.data}}"]
    matrix: {{ seed: [{}] }}
    inputs: {{ data: prep.data }}
    outputs: [model]
    retries: 1
    timeout: 1h
  - name: pick
    uses: builtin/evaluate
    inputs: {{ models: train.model }}
    outputs: [best]
{extra}"#,
        values.join(", ")
    )
}

#[test]
fn a_sweep_shares_one_template_and_every_output_validates() {
    let p = parse(&sweep(40, ""));
    let argo = compile_argo(&p, &options()).expect("compiles");
    let kfp = compile_kfp(&p, &options()).expect("compiles");
    assert_refs(Target::Argo, &argo);
    assert_refs(Target::Kfp, &kfp);
    assert_eq!(argo.matches("template: train\n").count(), 40);
    // The fan-in gets every member's digest, each member mounted under its label.
    assert!(argo.contains("{{tasks.train-seed-39-"), "{argo}");
    assert!(argo.contains(r#"\"path\":\"models/seed=39\""#), "{argo}");
    if let Some(Err(report)) = kube::validate_argo_workflows_many(&[("sweep.yaml", &argo)]) {
        panic!("{report}");
    }
    if let Some(Err(report)) = kube::check_kfp_pipeline_specs_many(&[("sweep.yaml", &kfp)]) {
        panic!("{report}");
    }
}

#[test]
fn a_thousand_member_sweep_fits_and_a_larger_one_is_refused() {
    let p = parse(&sweep(1000, ""));
    let mut docs = Vec::new();
    for target in [Target::Argo, Target::Kfp] {
        let text = compile(&p, target, &options()).expect("1,000 members fit");
        assert!(text.len() < 1 << 20, "{target:?}: {} bytes", text.len());
        assert_refs(target, &text);
        docs.push(text);
    }
    if let Some(Err(report)) = kube::validate_argo_workflows_many(&[("sweep.yaml", &docs[0])]) {
        panic!("{report}");
    }
    if let Some(Err(report)) = kube::check_kfp_pipeline_specs_many(&[("sweep.yaml", &docs[1])]) {
        panic!("{report}");
    }
    let p = parse(&sweep(4096, ""));
    for target in [Target::Argo, Target::Kfp] {
        let err = compile(&p, target, &options()).expect_err("too large");
        let CompileError::TooLarge { bytes, limit, .. } = &err else {
            panic!("{err}");
        };
        assert!(bytes > limit);
        let message = err.to_string();
        assert!(message.contains("bytes"), "{message}");
        assert!(message.contains("fewer matrix members"), "{message}");
    }
    let mut opts = options();
    opts.max_bytes = 2000;
    let err = compile_argo(&parse(&sweep(2, "")), &opts).expect_err("over a small limit");
    assert!(
        matches!(err, CompileError::TooLarge { limit: 2000, .. }),
        "{err}"
    );
}

#[test]
fn names_are_valid_and_never_collide() {
    // A plain step named exactly like the label a sweep member would get.
    let member_label = gantry_kube::names::dns_label("train[seed=1]", 63);
    let extra = format!(
        "  - name: {member_label}\n    image: {TRAINER}\n    command: [x]\n  - name: train_2\n    image: {TRAINER}\n    command: [x]\n",
    );
    let p = parse(&sweep(3, &extra));
    for target in [Target::Argo, Target::Kfp] {
        let text = compile(&p, target, &options()).expect("compiles");
        assert_refs(target, &text);
        let doc: serde_json::Value =
            serde_saphyr::from_multiple::<serde_json::Value>(&text).expect("yaml")[0].clone();
        let names: Vec<String> = match target {
            Target::Argo => doc["spec"]["templates"][0]["dag"]["tasks"]
                .as_array()
                .expect("tasks")
                .iter()
                .map(|t| t["name"].as_str().expect("name").to_string())
                .collect(),
            Target::Kfp => doc["root"]["dag"]["tasks"]
                .as_object()
                .expect("tasks")
                .keys()
                .cloned()
                .collect(),
        };
        assert_eq!(names.len(), 7, "{names:?}");
        let unique: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for n in &names {
            assert!(gantry_kube::names::is_dns_label(n), "{n}");
        }
        if target == Target::Argo {
            kube::assert_valid_argo_workflow(&text);
        } else {
            kube::assert_valid_kfp_pipeline_spec(&text);
        }
    }
}

#[test]
fn tag_images_paths_and_urls_are_refused_with_a_way_out() {
    let tagged = "name: p\nsteps:\n  - name: a\n    image: busybox:1.36\n    command: [x]\n";
    let err = compile_argo(&parse(tagged), &options()).expect_err("a tag");
    let message = err.to_string();
    assert!(
        message.contains("step 'a'") && message.contains("busybox:1.36"),
        "{message}"
    );
    assert!(message.contains("--allow-tags"), "{message}");
    let mut opts = options();
    opts.allow_tags = true;
    let text = compile_argo(&parse(tagged), &opts).expect("allowed");
    assert_refs(Target::Argo, &text);

    let path = format!(
        "name: p\nsteps:\n  - name: a\n    image: {TRAINER}\n    command: [x]\n    inputs: {{ data: {{ path: data/x.csv }} }}\n"
    );
    let err = compile_kfp(&parse(&path), &options()).expect_err("a path");
    let message = err.to_string();
    for needle in [
        "step 'a'",
        "input 'data'",
        "/base/data/x.csv",
        "gantry upload",
        "a/data=sha256:",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    let url = path.replace("path: data/x.csv", "url: https://example.com/x.csv");
    let message = compile_argo(&parse(&url), &options())
        .expect_err("a URL")
        .to_string();
    assert!(message.contains("https://example.com/x.csv"), "{message}");
    let mut opts = options();
    opts.input_digests
        .insert("a/data".into(), DATA_DIGEST.into());
    assert!(compile_argo(&parse(&url), &opts).is_ok());

    let no_command = format!("name: p\nsteps:\n  - name: a\n    image: {TRAINER}\n");
    let message = compile_argo(&parse(&no_command), &options())
        .expect_err("no command")
        .to_string();
    assert!(message.contains("add `command:`"), "{message}");

    let spec = parse(tagged);
    let mut opts = options();
    opts.allow_tags = true;
    opts.helper_image = "registry.example.com/gantry:latest".into();
    let message = compile_argo(&spec, &opts)
        .expect_err("helper by tag")
        .to_string();
    assert!(message.contains("--helper-image"), "{message}");
    opts.helper_image = HELPER.into();
    opts.artifacts = "/var/lib/gantry".into();
    let message = compile_argo(&spec, &opts).expect_err("not s3").to_string();
    assert!(message.contains("s3://"), "{message}");
}

#[test]
fn the_reference_check_finds_dangling_references() {
    let text = compile_argo(&parse(&iris()), &options()).expect("compiles");
    let broken = text.replacen("- split\n", "- splitt\n", 1);
    assert_ne!(broken, text);
    let errors = check_references(Target::Argo, &broken).expect_err("dangling");
    assert!(errors.iter().any(|e| e.contains("splitt")), "{errors:?}");
    let broken = text.replace(
        "{{workflow.parameters.max_depth}}",
        "{{workflow.parameters.depth}}",
    );
    assert!(check_references(Target::Argo, &broken).is_err());

    let text = compile_kfp(&parse(&iris()), &options()).expect("compiles");
    let broken = text.replace("producerTask: split", "producerTask: splat");
    let errors = check_references(Target::Kfp, &broken).expect_err("dangling");
    assert!(errors.iter().any(|e| e.contains("splat")), "{errors:?}");
    let broken = text.replace("outputParameterKey: train", "outputParameterKey: trian");
    assert!(check_references(Target::Kfp, &broken).is_err());
}

#[test]
fn more_plain_steps_than_one_argo_dag_holds_are_refused_clearly() {
    let mut spec = String::from("name: wide\nsteps:\n");
    for i in 0..201 {
        spec.push_str(&format!(
            "  - name: s{i}\n    image: {TRAINER}\n    command: [x]\n"
        ));
    }
    let err = compile_argo(&parse(&spec), &options()).expect_err("too wide");
    assert!(matches!(err, CompileError::Shape(_)), "{err}");
    assert!(err.to_string().contains("at most 200"), "{err}");
    // KFP has no such limit.
    let text = compile_kfp(&parse(&spec), &options()).expect("compiles");
    assert_refs(Target::Kfp, &text);
}

#[test]
fn steps_that_report_carry_the_server_in_their_plan_and_the_token_to_the_wrapper_only() {
    let mut opts = options();
    opts.report = Some(gantry_compile::ReportTo {
        server: "http://gantry.gantry.svc:8080".into(),
        token_secret: "gantry-iris-token".into(),
    });
    let p = parse(&iris());
    let argo = compile_argo(&p, &opts).expect("compiles");
    assert_refs(Target::Argo, &argo);
    kube::assert_valid_argo_workflow(&argo);
    for needle in [
        r#"\"server\":\"http://gantry.gantry.svc:8080\""#,
        r#"\"orchestrator\":\"argo\""#,
        r#"\"run\":\"{{workflow.uid}}\""#,
        r#"\"pipeline\":\"iris\""#,
        r#"\"image_digest\":\"sha256:2222"#,
        "name: GANTRY_STEP_SEQ",
        "secretKeyRef:\n            name: gantry-iris-token\n            key: token",
    ] {
        assert!(argo.contains(needle), "missing {needle:?} in\n{argo}");
    }
    // The token goes to the step container (the wrapper) of each template, never the fetch.
    let templates = argo.matches("\n    container:\n").count();
    assert_eq!(
        argo.matches("name: GANTRY_STEP_TOKEN").count(),
        templates,
        "{argo}"
    );
    // The sweep's members still share one template (their position is a parameter).
    assert_eq!(argo.matches("\n  - name: train\n").count(), 1, "{argo}");

    let kfp = compile_kfp(&p, &opts).expect("compiles");
    assert_refs(Target::Kfp, &kfp);
    kube::assert_valid_kfp_pipeline_spec(&kfp);
    for needle in [
        r#"\"run\":\"{{$.pipeline_job_uuid}}\""#,
        r#"\"orchestrator\":\"kfp\""#,
        "- --step\n        - 1:split\n",
        "secretName: gantry-iris-token",
        "envVar: GANTRY_STEP_TOKEN",
    ] {
        assert!(kfp.contains(needle), "missing {needle:?} in\n{kfp}");
    }
    assert_eq!(kfp.matches("\n  comp-train:\n").count(), 1, "{kfp}");

    // A 1,000-member sweep still fits in one object.
    let big = parse(&sweep(1000, ""));
    for target in [Target::Argo, Target::Kfp] {
        let text = compile(&big, target, &opts).expect("1,000 members fit");
        assert!(text.len() < 1 << 20, "{target:?}: {} bytes", text.len());
    }

    // What the report needs is checked before anything is written.
    for (server, secret, flag) in [
        ("gantry:8080", "gantry-iris-token", "--report-to"),
        ("http://gantry:8080/{x}", "gantry-iris-token", "--report-to"),
        (
            "http://gantry:8080",
            "Gantry_Token",
            "--report-token-secret",
        ),
    ] {
        opts.report = Some(gantry_compile::ReportTo {
            server: server.into(),
            token_secret: secret.into(),
        });
        let err = compile_argo(&p, &opts).expect_err("refused");
        assert!(matches!(err, CompileError::Options(_)), "{err}");
        assert!(err.to_string().contains(flag), "{err}");
    }
}

/// `register` and `deploy` act on the server when their steps report: their plans say which
/// side effect they have (the wrapper fails the step when the server cannot act), no other
/// step's plan has one, and without `--report-to` none does.
#[test]
fn register_and_deploy_steps_tell_the_server_to_act_on_their_reports() {
    let text = format!(
        r#"name: iris
steps:
  - name: train
    image: {TRAINER}
    command: [python, /app/train.py]
    outputs: [model]
  - name: register
    uses: builtin/register
    inputs: {{ model: train.model }}
    with: {{ model: iris, alias: champion }}
    outputs: [registration]
  - name: deploy
    uses: builtin/deploy
    inputs: {{ registration: register.registration }}
    with: {{ deployment: iris-prod, model: iris@champion }}
    outputs: [deployment]
"#
    );
    let p = parse(&text);
    let mut opts = options();
    let plain = compile_argo(&p, &opts).expect("compiles");
    assert!(!plain.contains(r#"\"effect\""#), "{plain}");
    opts.report = Some(gantry_compile::ReportTo {
        server: "http://gantry.gantry.svc:8080".into(),
        token_secret: "gantry-iris-token".into(),
    });
    let argo = compile_argo(&p, &opts).expect("compiles");
    assert_refs(Target::Argo, &argo);
    kube::assert_valid_argo_workflow(&argo);
    let kfp = compile_kfp(&p, &opts).expect("compiles");
    assert_refs(Target::Kfp, &kfp);
    kube::assert_valid_kfp_pipeline_spec(&kfp);
    // Argo has the plan in a template's fetch and step containers, KFP in its executor.
    for doc in [&argo, &kfp] {
        let count = |needle: &str| doc.matches(needle).count();
        let register = count(r#"\"effect\":\"register\""#);
        assert!(register >= 1, "{doc}");
        assert_eq!(count(r#"\"effect\":\"deploy\""#), register, "{doc}");
        assert_eq!(count(r#"\"effect\""#), 2 * register, "{doc}");
    }
    // Each plan is its own step's: the register step's says `register`, and so on.
    let wf = serde_saphyr::from_multiple::<serde_json::Value>(&argo)
        .expect("yaml")
        .remove(0);
    let templates = wf["spec"]["templates"].as_array().unwrap();
    for (name, effect) in [
        ("train", None),
        ("register", Some("register")),
        ("deploy", Some("deploy")),
    ] {
        let t = templates
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no template {name} in\n{argo}"));
        let plan = t["container"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "GANTRY_STEP_PLAN")
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("no plan in {t:#}"));
        // The plan holds Argo's placeholders (not JSON until substituted): read its report.
        let report = &plan[plan.find(r#""report":"#).expect("a report")..];
        let said = ["register", "deploy"]
            .into_iter()
            .find(|e| report.contains(&format!(r#""effect":"{e}""#)));
        assert_eq!(said, effect, "{name}: {plan}");
    }
}

#[test]
fn a_reporting_workflow_ends_with_a_handler_that_reports_how_it_ended() {
    let mut opts = options();
    opts.report = Some(gantry_compile::ReportTo {
        server: "http://gantry.gantry.svc:8080".into(),
        token_secret: "gantry-iris-token".into(),
    });
    let p = parse(&iris());
    // The spec as written goes with the end, as the run's snapshot.
    opts.spec_text = Some(iris());
    let snapshot = |plan: &serde_json::Value| {
        gantry_kube::exported::decode_spec(plan["report"]["spec"].as_str().expect("a spec"))
    };
    let steps = 6; // iris(): ingest, split, two sweep members, evaluate, publish.report
    let yaml = |text: &str| serde_saphyr::from_multiple::<serde_json::Value>(text).expect("yaml");

    // Argo: spec.onExit names a template running `gantry step-end` with the workflow's status
    // and failures, the token, the network label, and a plan that names the run.
    let argo = compile_argo(&p, &opts).expect("compiles");
    kube::assert_valid_argo_workflow(&argo);
    let wf = yaml(&argo).remove(0);
    assert_eq!(wf["spec"]["onExit"], "gantry-end", "{argo}");
    let end = wf["spec"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "gantry-end")
        .expect("the exit template");
    let c = &end["container"];
    assert_eq!(c["image"], HELPER, "{end:#}");
    assert_eq!(
        c["command"],
        serde_json::json!([
            "/opt/gantry/bin/gantry",
            "step-end",
            "--status",
            "{{workflow.status}}",
            "--failures",
            "{{workflow.failures}}"
        ])
    );
    assert_eq!(end["metadata"]["labels"]["gantry.dev/network"], "egress");
    let env = c["env"].as_array().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
    assert_eq!(
        var("GANTRY_STEP_TOKEN").expect("token")["valueFrom"]["secretKeyRef"]["name"],
        "gantry-iris-token"
    );
    let plan: serde_json::Value = serde_json::from_str(
        var("GANTRY_STEP_PLAN").expect("plan")["value"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(plan["report"]["run"], "{{workflow.uid}}");
    assert_eq!(plan["report"]["orchestrator"], "argo");
    assert_eq!(plan["report"]["pipeline"], "iris");
    assert_eq!(plan["report"]["steps"], steps);
    assert_eq!(snapshot(&plan), Ok(iris()));
    assert_eq!(c["resources"]["requests"], c["resources"]["limits"]);
    // Without --report-to there is no handler.
    let plain = compile_argo(&p, &options()).expect("compiles");
    assert!(
        !plain.contains("onExit") && !plain.contains("step-end"),
        "{plain}"
    );

    // KFP: the steps run in an exit-handler DAG; the end task runs after it whatever happened
    // (ALL_UPSTREAM_TASKS_COMPLETED) and gets its final status. The kfp SDK loads it.
    let kfp = compile_kfp(&p, &opts).expect("compiles");
    kube::assert_valid_kfp_pipeline_spec(&kfp);
    let docs = yaml(&kfp);
    let (spec, platform) = (&docs[0], &docs[1]);
    let root = spec["root"]["dag"]["tasks"].as_object().unwrap();
    assert_eq!(
        root.keys().collect::<Vec<_>>(),
        ["exit-handler", "gantry-end"],
        "{kfp}"
    );
    let end = &root["gantry-end"];
    assert_eq!(
        end["triggerPolicy"]["strategy"],
        "ALL_UPSTREAM_TASKS_COMPLETED"
    );
    assert_eq!(
        end["inputs"]["parameters"]["status"]["taskFinalStatus"]["producerTask"],
        "exit-handler"
    );
    let dag = &spec["components"]["comp-exit-handler"]["dag"]["tasks"];
    assert_eq!(dag.as_object().unwrap().len(), steps, "{kfp}");
    // The free params reach the steps through the handler's DAG.
    let free = spec["root"]["inputDefinitions"]["parameters"]
        .as_object()
        .map(|m| m.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(!free.is_empty(), "iris() has free params: {kfp}");
    for name in &free {
        assert_eq!(
            root["exit-handler"]["inputs"]["parameters"][name]["componentInputParameter"],
            serde_json::json!(name)
        );
    }
    let exec = &spec["deploymentSpec"]["executors"]["exec-gantry-end"]["container"];
    assert_eq!(
        exec["command"],
        serde_json::json!(["/opt/gantry/bin/gantry", "step-end"])
    );
    assert_eq!(exec["args"][0], "--kfp-status");
    assert_eq!(exec["args"][1], "{{$.inputs.parameters['status']}}");
    let plan: serde_json::Value = serde_json::from_str(exec["args"][3].as_str().unwrap()).unwrap();
    assert_eq!(plan["report"]["run"], "{{$.pipeline_job_uuid}}");
    assert_eq!(snapshot(&plan), Ok(iris()));
    // Only the end carries it; a spec over the limit is not kept.
    assert_eq!(kfp.matches(r#"\"spec\":"#).count(), 1, "{kfp}");
    opts.spec_text = Some(format!(
        "{}# {}\n",
        iris(),
        "x".repeat(gantry_kube::exported::MAX_SPEC_BYTES)
    ));
    let big = compile_argo(&p, &opts).expect("compiles");
    assert!(
        !big.contains(r#"\"spec\":"#),
        "a spec over the limit is left out"
    );
    let kube =
        &platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-gantry-end"];
    assert_eq!(kube["secretAsEnv"][0]["secretName"], "gantry-iris-token");
    assert_eq!(
        kube["podMetadata"]["labels"]["gantry.dev/network"],
        "egress"
    );
}
