//! `gantry serve`: one model over the Open Inference Protocol v2. Either a registered model
//! from GANTRY_HOME's registry, or (`--model-dir`) a model directory with no store at all —
//! what every deployment replica runs inside its container, so it must start fast and exit 0
//! on SIGTERM.

use crate::cli::{Global, ServeArgs};
use crate::exit::{self, coded};
use crate::home::Home;
use anyhow::Context;
use gantry_serve::{ModelSet, ServeState};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// What to load, under which name and version.
struct Target {
    flavor: String,
    path: PathBuf,
    name: String,
    version: String,
}

pub async fn serve(g: &Global, args: ServeArgs) -> anyhow::Result<u8> {
    for (flag, addr) in [
        ("--listen", Some(args.listen)),
        ("--grpc-listen", args.grpc_listen),
    ] {
        if let Some(addr) = addr
            && !addr.ip().is_loopback()
            && !args.insecure_listen
        {
            return Err(coded(
                exit::USAGE,
                format!(
                    "{flag} {addr}: this model server has no authentication, so it listens on loopback only; add --insecure-listen if everyone who can reach {} may use it",
                    addr.ip()
                ),
            ));
        }
    }
    let target = match (&args.model_dir, &args.model) {
        (Some(dir), _) => Target {
            flavor: required(&args.flavor, "--flavor")?,
            path: dir.clone(),
            name: required(&args.name, "--name")?,
            version: required(&args.version, "--version")?,
        },
        (None, Some(reference)) => from_registry(g, reference).await?,
        (None, None) => {
            return Err(coded(
                exit::USAGE,
                "give a registered MODEL[@VERSION|@ALIAS], or --model-dir DIR --flavor F --name N --version V",
            ));
        }
    };
    let Target {
        flavor,
        path,
        name,
        version,
    } = target;
    let (f, n, v) = (flavor.clone(), name.clone(), version.clone());
    let model = tokio::task::spawn_blocking(move || gantry_serve::load(&f, &path, &n, &v))
        .await
        .context("loading the model")??;
    let mut models = ModelSet::new();
    models.insert(model)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            coded(
                exit::ENVIRONMENT,
                format!("--listen {}: cannot listen: {e}", args.listen),
            )
        })?;
    let addr = listener.local_addr()?;
    let state = Arc::new(ServeState::new(models));
    let grpc = match args.grpc_listen {
        None => None,
        Some(grpc_addr) => {
            let grpc_listener = tokio::net::TcpListener::bind(grpc_addr)
                .await
                .map_err(|e| {
                    coded(
                        exit::ENVIRONMENT,
                        format!("--grpc-listen {grpc_addr}: cannot listen: {e}"),
                    )
                })?;
            let bound = grpc_listener.local_addr()?;
            let task = tokio::spawn(gantry_serve::serve_grpc(
                grpc_listener,
                Arc::clone(&state),
                gantry_server::shutdown_signal(),
            ));
            Some((bound, task))
        }
    };
    {
        // Whoever started us (the deployment reconciler, a test) waits for this line.
        let mut out = std::io::stdout().lock();
        let grpc_text = grpc
            .as_ref()
            .map(|(bound, _)| format!(" and grpc://{bound}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "serving {name} v{version} ({flavor}) on http://{addr}{grpc_text}"
        );
        let _ = out.flush();
    }
    gantry_serve::serve(listener, state, gantry_server::shutdown_signal())
        .await
        .context("serving")?;
    if let Some((_, task)) = grpc {
        task.await
            .context("the gRPC server")?
            .context("serving gRPC")?;
    }
    Ok(exit::OK)
}

fn required(v: &Option<String>, flag: &str) -> anyhow::Result<String> {
    v.clone()
        .ok_or_else(|| coded(exit::USAGE, format!("--model-dir needs {flag}")))
}

async fn from_registry(g: &Global, reference: &str) -> anyhow::Result<Target> {
    if g.server.is_some() {
        return Err(coded(
            exit::USAGE,
            "`gantry serve MODEL` loads from GANTRY_HOME's registry, not through --server / GANTRY_SERVER; deploy it there with `gantry deploy` instead",
        ));
    }
    let home = Home::from_global(g)?;
    let store = home.store().await?;
    let v = store.resolve_model(reference).await?;
    match v.flavor.as_str() {
        "builtin" | "onnx" => {}
        "custom" => {
            return Err(coded(
                exit::USAGE,
                format!(
                    "{}@{} is a custom model: it runs its own image; deploy it with `gantry deploy {} --model {}@{}` and `gantry server`",
                    v.model,
                    v.version,
                    v.model.to_lowercase(),
                    v.model,
                    v.version
                ),
            ));
        }
        other => {
            return Err(coded(
                exit::USAGE,
                format!(
                    "{}@{} has flavor `{other}`: only builtin and onnx models can be served by gantry",
                    v.model, v.version
                ),
            ));
        }
    }
    let path = home.artifacts()?.materialize(&v.artifact_digest).await?;
    Ok(Target {
        flavor: v.flavor,
        path,
        name: v.model,
        version: v.version.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, Parser};

    #[test]
    fn the_replica_command_line_parses() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "gantry",
            "serve",
            "--model-dir",
            "/model",
            "--flavor",
            "onnx",
            "--name",
            "fraud",
            "--version",
            "3",
            "--listen",
            "127.0.0.1:8080",
        ])
        .unwrap();
        let Command::Serve(a) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(a.version.as_deref(), Some("3"));
        assert_eq!(a.flavor.as_deref(), Some("onnx"));
        // A model directory needs everything that names what it serves.
        assert!(Cli::try_parse_from(["gantry", "serve", "--model-dir", "/m"]).is_err());
        assert!(Cli::try_parse_from(["gantry", "serve"]).is_err());
        assert!(Cli::try_parse_from(["gantry", "serve", "iris@champion"]).is_ok());
    }
}
