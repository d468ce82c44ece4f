//! `gantry model register`: a model made outside a pipeline becomes a registered version —
//! an ONNX file, a built-in model directory, or a custom serving image — checked before it is
//! stored, so a version that cannot serve is never registered.

use crate::cli::{Output, RegisterArgs};
use crate::exit::{self, coded};
use crate::home::Home;
use anyhow::Context;
use gantry_store::{KeyValue, NewModelVersion};
use std::path::{Path, PathBuf};

/// Largest reference profile accepted (the monitor reads no more).
const MAX_PROFILE_BYTES: u64 = 64 << 20;

/// What `--flavor custom` stores: the server runs this image as the model server.
#[derive(Debug, PartialEq, serde::Serialize)]
pub struct CustomServer {
    pub image: String,
    pub port: u16,
    pub args: Vec<String>,
    pub env: Vec<String>,
}

/// Checks the flags that belong to one flavor only.
pub fn check_flavor_flags(a: &RegisterArgs) -> anyhow::Result<()> {
    let usage = |m: String| Err(coded(exit::USAGE, m));
    if a.flavor == "custom" {
        if let Some(p) = &a.path {
            return usage(format!(
                "{}: a custom model has no file; it is an image: --image IMAGE --port PORT",
                p.display()
            ));
        }
        if a.image.is_none() || a.port.is_none() {
            return usage(
                "--flavor custom needs --image IMAGE (see `gantry images`) and --port PORT (where its server listens)"
                    .into(),
            );
        }
        if a.port == Some(0) {
            return usage("--port 0: give the port the image's server listens on".into());
        }
        if let Some(bad) = a.env.iter().find(|e| {
            e.split_once('=')
                .is_none_or(|(k, _)| k.is_empty() || k.contains(char::is_whitespace))
        }) {
            return usage(format!("--env {bad}: expected KEY=VALUE"));
        }
        return Ok(());
    }
    let flag = [
        ("--image", a.image.is_some()),
        ("--port", a.port.is_some()),
        ("--arg", !a.args.is_empty()),
        ("--env", !a.env.is_empty()),
    ]
    .into_iter()
    .find_map(|(f, set)| set.then_some(f));
    if let Some(f) = flag {
        return usage(format!(
            "{f} is for --flavor custom only; a {} model is served by gantry itself",
            a.flavor
        ));
    }
    if a.path.is_none() {
        return usage(format!(
            "--flavor {} needs the model's PATH: gantry model register {} PATH --flavor {}",
            a.flavor, a.name, a.flavor
        ));
    }
    Ok(())
}

/// Loads the model as `gantry serve` would; what fails here would fail every replica.
async fn check_loads(flavor: &str, path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Err(coded(
            exit::USAGE,
            format!("{}: no such file or directory", path.display()),
        ));
    }
    if flavor == "onnx" && path.is_file() && path.extension().is_none_or(|e| e != "onnx") {
        return Err(coded(
            exit::USAGE,
            format!(
                "{}: an ONNX model is a .onnx file (or a directory holding exactly one)",
                path.display()
            ),
        ));
    }
    let owned = path.to_path_buf();
    let flavor_owned = flavor.to_string();
    tokio::task::spawn_blocking(move || gantry_serve::load(&flavor_owned, &owned, "check", "1"))
        .await
        .context("checking the model")?
        .map_err(|e| {
            coded(
                exit::USAGE,
                format!("{}: not a loadable {flavor} model: {e}", path.display()),
            )
        })?;
    Ok(())
}

/// A profile file the monitor can read; its digest once stored.
async fn store_profile(home: &Home, path: &Path) -> anyhow::Result<String> {
    let size = std::fs::metadata(path)
        .map_err(|e| {
            coded(
                exit::USAGE,
                format!("--reference-profile {}: {e}", path.display()),
            )
        })?
        .len();
    if !path.is_file() || size > MAX_PROFILE_BYTES {
        return Err(coded(
            exit::USAGE,
            format!(
                "--reference-profile {}: expected a profile JSON file (the `profile` output of builtin/profile) of at most 64 MiB",
                path.display()
            ),
        ));
    }
    gantry_ml::profile::Profile::load(path).map_err(|e| {
        coded(
            exit::USAGE,
            format!("--reference-profile {}: {e}", path.display()),
        )
    })?;
    Ok(home.artifacts()?.put_path(path).await?.digest)
}

/// The JSON document of a custom model, written to a scratch file to be stored.
async fn custom_document(home: &Home, a: &RegisterArgs) -> anyhow::Result<PathBuf> {
    let (Some(image), Some(port)) = (a.image.clone(), a.port) else {
        return Err(coded(
            exit::USAGE,
            "--flavor custom needs --image and --port",
        ));
    };
    let images = home.images()?;
    let image_ref = image.clone();
    let store = images.clone();
    let found = tokio::task::spawn_blocking(move || store.resolve(&image_ref))
        .await
        .context("looking up the image")?;
    let info = match found {
        // An image that names a registry is pulled (and pinned by the deployment's checks).
        Err(gantry_image::ImageError::NotFound(_))
            if gantry_image::registry::RegistryRef::names_registry(&image) =>
        {
            let client = crate::images::registry_client(home)?;
            client
                .pull(&images, &image, &gantry_image::registry::NoProgress)
                .await
                .with_context(|| format!("--image {image}"))?
                .info
        }
        other => other.map_err(|e| coded(exit::NOT_FOUND, format!("--image {image}: {e}")))?,
    };
    if a.args.is_empty() && info.config.entrypoint.is_empty() && info.config.cmd.is_empty() {
        return Err(coded(
            exit::USAGE,
            format!(
                "--image {image}: the image has no entrypoint or cmd; give the command with --arg (repeatable)"
            ),
        ));
    }
    let doc = CustomServer {
        image,
        port,
        args: a.args.clone(),
        env: a.env.clone(),
    };
    let dir = home.work_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let file = dir.join(format!(
        "custom-model-{}-{}.json",
        std::process::id(),
        gantry_engine::now_ms()
    ));
    std::fs::write(&file, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

pub async fn register(home: &Home, a: &RegisterArgs) -> anyhow::Result<u8> {
    check_flavor_flags(a)?;
    let artifacts = home.artifacts()?;
    let info = if a.flavor == "custom" {
        let file = custom_document(home, a).await?;
        let stored = artifacts.put_path(&file).await;
        let _ = std::fs::remove_file(&file);
        stored?
    } else {
        let path = a
            .path
            .as_deref()
            .ok_or_else(|| coded(exit::USAGE, format!("--flavor {} needs PATH", a.flavor)))?;
        check_loads(&a.flavor, path).await?;
        artifacts.put_path(path).await?
    };
    let profile = match &a.reference_profile {
        Some(p) => Some(store_profile(home, p).await?),
        None => None,
    };
    let store = home.store().await?;
    let version = store
        .register_model_version(&NewModelVersion {
            model: a.name.clone(),
            artifact_digest: info.digest.clone(),
            artifact_kind: info.kind.as_str().to_string(),
            run_id: None,
            step_run_id: None,
            step: None,
            metrics_json: "{}".into(),
            data_digests_json: "[]".into(),
            params_json: "{}".into(),
            flavor: a.flavor.clone(),
            description: a.description.clone(),
            alias: a.alias.clone(),
            now_ms: gantry_engine::now_ms(),
        })
        .await?;
    if let Some(digest) = &profile {
        store
            .set_registered_model_version_tag(
                &version.model,
                version.version,
                &KeyValue::new(gantry_engine::REFERENCE_PROFILE_TAG, digest.clone()),
            )
            .await?;
    }
    let view = gantry_server::views::model_version(&version);
    if a.output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(exit::OK);
    }
    println!(
        "registered {} v{} ({}){} — artifact {}",
        version.model,
        version.version,
        version.flavor,
        a.alias
            .as_deref()
            .map(|al| format!(", {}@{al}", version.model))
            .unwrap_or_default(),
        info.digest
    );
    if let Some(d) = profile {
        println!("reference profile {d}: drift is measured against it once deployed");
    }
    println!(
        "deploy it with `gantry deploy {} --model {}@{}`",
        version.model.to_lowercase(),
        version.model,
        version.version
    );
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(argv: &[&str]) -> RegisterArgs {
        let mut full = vec!["gantry", "model", "register"];
        full.extend(argv);
        match crate::cli::Cli::try_parse_from(full).unwrap().command {
            crate::cli::Command::Model(crate::cli::ModelCommand::Register(a)) => a,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_must_fit_the_flavor() {
        let ok = |argv: &[&str]| check_flavor_flags(&args(argv));
        assert!(ok(&["m", "m.onnx", "--flavor", "onnx"]).is_ok());
        assert!(
            ok(&[
                "m",
                "--flavor",
                "custom",
                "--image",
                "srv:1",
                "--port",
                "9000",
                "--arg",
                "--verbose",
                "--env",
                "A=b=c"
            ])
            .is_ok()
        );
        for (argv, says) in [
            (&["m", "--flavor", "onnx"][..], "needs the model's PATH"),
            (
                &["m", "x.onnx", "--flavor", "onnx", "--port", "1"][..],
                "--port is for --flavor custom only",
            ),
            (
                &["m", "--flavor", "custom", "--image", "srv:1"][..],
                "needs --image IMAGE",
            ),
            (
                &[
                    "m", "dir", "--flavor", "custom", "--image", "a", "--port", "1",
                ][..],
                "a custom model has no file",
            ),
            (
                &[
                    "m", "--flavor", "custom", "--image", "a", "--port", "1", "--env", "NOEQ",
                ][..],
                "--env NOEQ",
            ),
            (
                &["m", "--flavor", "custom", "--image", "a", "--port", "0"][..],
                "--port 0",
            ),
        ] {
            let e = ok(argv).unwrap_err();
            assert_eq!(exit::code_for(&e), exit::USAGE, "{argv:?}");
            assert!(e.to_string().contains(says), "{argv:?}: {e}");
        }
    }

    #[tokio::test]
    async fn files_that_do_not_load_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("model.onnx");
        std::fs::write(&bad, b"this is not protobuf").unwrap();
        let e = check_loads("onnx", &bad).await.unwrap_err();
        assert_eq!(exit::code_for(&e), exit::USAGE);
        assert!(e.to_string().contains("not a loadable onnx model"), "{e}");

        let wrong_ext = dir.path().join("model.bin");
        std::fs::write(&wrong_ext, b"x").unwrap();
        let e = check_loads("onnx", &wrong_ext).await.unwrap_err();
        assert!(e.to_string().contains("is a .onnx file"), "{e}");

        let e = check_loads("builtin", dir.path()).await.unwrap_err();
        assert!(
            e.to_string().contains("not a loadable builtin model"),
            "{e}"
        );

        let e = check_loads("onnx", &dir.path().join("missing.onnx"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
    }
}
