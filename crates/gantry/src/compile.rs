//! `gantry compile FILE --target argo|kfp`: a pipeline for Argo Workflows or Kubeflow
//! Pipelines (the export itself is `gantry_compile`, pure).

use std::collections::BTreeMap;

use anyhow::Context;
use gantry_compile::{CompileError, CompileOptions, Target};

use crate::cli::{CompileArgs, Global};
use crate::exit::{self, coded};

pub fn run(g: &Global, args: CompileArgs) -> anyhow::Result<u8> {
    let target: Target = args
        .target
        .parse()
        .map_err(|e: String| coded(exit::USAGE, format!("--target: {e}")))?;
    let pipeline = gantry_spec::load(&args.file)?;
    let artifacts = g.artifacts.clone().ok_or_else(|| {
        coded(
            exit::USAGE,
            "gantry compile needs the artifact store the workflow's pods use: --artifacts s3://BUCKET/PREFIX (or GANTRY_ARTIFACTS)",
        )
    })?;
    let helper_image = args.helper_image.clone().ok_or_else(|| {
        coded(
            exit::USAGE,
            "gantry compile needs --helper-image (or GANTRY_KUBE_BUILTIN_IMAGE): the built-in image in a registry, by digest — `gantry image push builtin REF` prints it",
        )
    })?;
    let mut opts = CompileOptions::new(artifacts, helper_image);
    opts.namespace = args.namespace;
    opts.service_account = args.service_account;
    opts.executor_service_account = args.executor_service_account;
    opts.image_pull_secrets = args.pull_secrets;
    opts.artifacts_secret = args.artifacts_secret;
    opts.allow_tags = args.allow_tags;
    opts.report = args
        .report_to
        .zip(args.report_token_secret)
        .map(|(server, token_secret)| gantry_compile::ReportTo {
            server,
            token_secret,
        });
    if opts.report.is_some() {
        // The run's snapshot, as `gantry run` keeps it (the spec was just read and parsed).
        opts.spec_text = std::fs::read_to_string(&args.file).ok();
    }
    opts.params = crate::commands::parse_overrides(&args.params)?;
    opts.input_digests = args
        .input_digests
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if k.contains('/') => Ok((k.to_string(), v.to_string())),
            _ => Err(coded(
                exit::USAGE,
                format!("--input-digest {kv}: expected STEP/INPUT=sha256:…"),
            )),
        })
        .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    let yaml = match gantry_compile::compile(&pipeline, target, &opts) {
        Ok(y) => y,
        Err(CompileError::Spec(e)) => return Err(e.into()),
        Err(e) => return Err(coded(exit::USAGE, e.to_string())),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, &yaml).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{yaml}"),
    }
    Ok(exit::OK)
}
