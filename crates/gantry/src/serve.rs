//! `gantry server`, `gantry token …` and `gantry audit`.

use crate::cli::{ExecArgs, Output, ServerArgs, TokenCommand};
use crate::commands::{Source, open_engine_relaying, text};
use crate::exit::{self, coded};
use crate::home::Home;
use crate::render::{self, table};
use gantry_server::auth::{Role, issue_token};
use gantry_server::{AppState, ServerConfig};
use serde_json::{Value, json};

pub async fn server(home: &Home, runtime: &str, args: ServerArgs) -> anyhow::Result<u8> {
    for addr in std::iter::once(args.listen).chain(args.grpc_listen) {
        if !addr.ip().is_loopback() && !args.auth && !args.insecure_no_auth {
            return Err(coded(
                exit::USAGE,
                format!(
                    "refusing to listen on {addr} without --auth: anyone who reaches it could run containers here; add --auth (and create tokens with `gantry token create`), or --insecure-no-auth if you really mean it"
                ),
            ));
        }
    }
    let exec = ExecArgs {
        no_cache: false,
        output: Output::Table,
        cpus: args.cpus.clone(),
        memory: args.memory.clone(),
        gpus: args.gpus,
        keep_workdirs: false,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            coded(
                exit::ENVIRONMENT,
                format!("cannot listen on {}: {e}", args.listen),
            )
        })?;
    let addr = listener.local_addr()?;
    let mut more = Vec::new();
    if let Some(grpc) = args.grpc_listen {
        more.push(tokio::net::TcpListener::bind(grpc).await.map_err(|e| {
            coded(
                exit::ENVIRONMENT,
                format!("--grpc-listen {grpc}: cannot listen: {e}"),
            )
        })?);
    }
    let grpc_text = match more.first() {
        Some(l) => format!(" and grpc://{}", l.local_addr()?),
        None => String::new(),
    };
    // Steps reach the tracking API through a relay into their own network namespace; with
    // --auth each run's steps present a token of their own (MLFLOW_TRACKING_TOKEN).
    let relay_to = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let step_tokens: Option<std::sync::Arc<dyn gantry_engine::StepTokens>> = if args.auth {
        Some(std::sync::Arc::new(
            gantry_server::step_tokens::RunScopedTokens {
                store: home.store().await?,
            },
        ))
    } else {
        None
    };
    let (inputs, remote) = remote_policies(&args)?;
    // Runs of a previous server process that died are marked interrupted here.
    let engine =
        open_engine_relaying(home, runtime, &exec, Some(relay_to), step_tokens, inputs).await?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let config = ServerConfig {
        auth: args.auth,
        max_body_bytes: args.max_body_bytes,
        public_url: public_url.clone(),
        mlflow_artifacts_dir: home.root.join("mlflow-artifacts"),
        remote,
        prices: home.config()?.prices,
    };
    let store = engine.store().clone();
    if args.auth && store.list_tokens().await?.iter().all(|t| t.revoked()) {
        eprintln!(
            "note: --auth is on and no token exists yet: create one with `gantry token create --name admin --role admin`"
        );
    }
    let state = AppState::new(store, engine.artifacts().clone(), config).with_engine(engine);
    // Project quotas (kept in step with the store), then the runs a previous server left
    // queued, in their order, before any new submission.
    gantry_server::api::queue::sync_quotas(&state).await?;
    gantry_server::api::queue::spawn_quota_sync(state.clone(), std::time::Duration::from_secs(5));
    match state.runs.resume_queued().await {
        Ok(0) => {}
        Ok(n) => eprintln!(
            "note: {n} queued run(s) of the previous server resumed their place in the queue"
        ),
        Err(e) => {
            eprintln!("warning: the queued runs of the previous server were not resumed: {e}")
        }
    }
    if let Some(every) = &args.gc_interval {
        let parse = |flag: &str, v: &str| {
            humantime::parse_duration(v).map_err(|e| {
                coded(
                    exit::USAGE,
                    format!("bad {flag} '{v}': give a duration such as 6h or 30d ({e})"),
                )
            })
        };
        let interval = parse("--gc-interval", every)?;
        if interval < std::time::Duration::from_secs(1) {
            return Err(coded(exit::USAGE, "--gc-interval must be at least 1s"));
        }
        let older_than = parse("--gc-older-than", &args.gc_older_than)?;
        gantry_server::api::gc::spawn_schedule(state.clone(), interval, older_than);
    }
    println!(
        "gantry server listening on http://{addr}{grpc_text} (auth {})",
        if args.auth { "on" } else { "off" }
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    gantry_server::serve_on(state, listener, more, gantry_server::shutdown_signal()).await?;
    eprintln!("gantry server stopped");
    Ok(exit::OK)
}

/// The engine's input policy (data roots, reader identity, fetch allowlist) and the
/// server's caps (uploads, network, GPUs, webhooks) from `gantry server`'s flags.
fn remote_policies(
    args: &ServerArgs,
) -> anyhow::Result<(gantry_engine::InputPolicy, gantry_server::RemotePolicy)> {
    let usage = |m: String| coded(exit::USAGE, m);
    let mut roots = Vec::new();
    for text in &args.data_roots {
        let root = gantry_engine::DataRoot::parse(text)
            .and_then(gantry_engine::DataRoot::resolve)
            .map_err(usage)?;
        if roots
            .iter()
            .any(|r: &gantry_engine::DataRoot| r.name == root.name)
        {
            return Err(usage(format!(
                "--data-root {text}: the name {} is given twice",
                root.name
            )));
        }
        roots.push(root);
    }
    let root_user = nix::unistd::geteuid().is_root();
    let read_as = match args.data_reader.as_deref() {
        Some("server") => None,
        Some(ids) => {
            let (uid, gid) = ids.split_once(':').unwrap_or((ids, ids));
            let parse = |v: &str| {
                v.trim().parse::<u32>().map_err(|_| {
                    usage(format!(
                        "--data-reader {ids}: expected UID[:GID] (numbers) or `server`"
                    ))
                })
            };
            Some((parse(uid)?, parse(gid)?))
        }
        None if root_user => Some((65534, 65534)),
        None => None,
    };
    let mut allow = Vec::new();
    for a in &args.allow_fetch {
        allow.push(
            gantry_net::FetchPolicy::parse_allow(a)
                .map_err(|e| usage(format!("--allow-fetch {a}: {e}")))?,
        );
    }
    let fetch = gantry_net::FetchPolicy::guarded(allow);
    let inputs = gantry_engine::InputPolicy {
        paths: gantry_engine::PathAccess::Roots { roots, read_as },
        fetch: fetch.clone(),
    };
    let remote = gantry_server::RemotePolicy {
        max_upload_bytes: args.max_upload_bytes,
        allow_network: args.allow_network.clone(),
        deny_gpu: args.deny_gpu.clone(),
        fetch,
    };
    Ok((inputs, remote))
}

pub async fn token(src: &Source<'_>, cmd: TokenCommand) -> anyhow::Result<u8> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            project,
            output,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                coded(
                    exit::USAGE,
                    format!("--role {role}: expected viewer, editor or admin"),
                )
            })?;
            let (record, secret) = match src {
                Source::Remote(client) => {
                    let v = client
                        .post(
                            &["tokens"],
                            &json!({"name": name, "role": role.as_str(), "project": project}),
                        )
                        .await?;
                    (v["token"].clone(), text(&v["secret"]))
                }
                Source::Local(home) => {
                    let store = home.store().await?;
                    let issued = issue_token(&store, &name, role, project.as_deref()).await?;
                    store
                        .append_audit(
                            "local",
                            "token.create",
                            &issued.record.name,
                            &json!({"id": issued.record.id, "role": role.as_str(), "project": project}),
                            gantry_engine::now_ms(),
                        )
                        .await?;
                    (json!(issued.record), issued.secret)
                }
            };
            if output == Output::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"token": record, "secret": secret}))?
                );
            } else {
                eprintln!(
                    "created token {} ({}, role {}{}); its secret is shown once, now:",
                    text(&record["name"]),
                    text(&record["id"]),
                    role.as_str(),
                    record["project"]
                        .as_str()
                        .map(|p| format!(", project {p}"))
                        .unwrap_or_default()
                );
                println!("{secret}");
            }
            Ok(exit::OK)
        }
        TokenCommand::List { output } => {
            let tokens: Vec<Value> = match src {
                Source::Remote(client) => client
                    .get(&["tokens"], &[])
                    .await?
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                Source::Local(home) => home
                    .store()
                    .await?
                    .list_tokens()
                    .await?
                    .iter()
                    .map(|t| json!(t))
                    .collect(),
            };
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
                return Ok(exit::OK);
            }
            let mut t = table(&[
                "ID",
                "NAME",
                "ROLE",
                "PROJECT",
                "CREATED",
                "LAST USED",
                "REVOKED",
            ]);
            for tok in &tokens {
                let time = |v: &Value| {
                    v.as_i64()
                        .map(render::timestamp)
                        .unwrap_or_else(|| "-".into())
                };
                t.add_row(vec![
                    text(&tok["id"]),
                    text(&tok["name"]),
                    text(&tok["role"]),
                    tok["project"].as_str().unwrap_or("*").to_string(),
                    time(&tok["created_at_ms"]),
                    time(&tok["last_used_at_ms"]),
                    time(&tok["revoked_at_ms"]),
                ]);
            }
            println!("{t}");
            Ok(exit::OK)
        }
        TokenCommand::Revoke { id_or_name: token } => {
            match src {
                Source::Remote(client) => {
                    client
                        .post(&["tokens", &token, "revoke"], &json!({}))
                        .await?;
                }
                Source::Local(home) => {
                    let store = home.store().await?;
                    let rec = store.revoke_token(&token, gantry_engine::now_ms()).await?;
                    store
                        .append_audit(
                            "local",
                            "token.revoke",
                            &rec.name,
                            &json!({"id": rec.id}),
                            gantry_engine::now_ms(),
                        )
                        .await?;
                }
            }
            println!("revoked {token}");
            Ok(exit::OK)
        }
    }
}

pub async fn audit(src: &Source<'_>, limit: i64, output: Output) -> anyhow::Result<u8> {
    let entries: Vec<Value> = match src {
        Source::Remote(client) => client
            .get(&["audit"], &[("limit", limit.to_string())])
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Source::Local(home) => home
            .store()
            .await?
            .list_audit(limit)
            .await?
            .iter()
            .map(|a| json!(a))
            .collect(),
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(exit::OK);
    }
    let mut t = table(&["TIME", "PRINCIPAL", "ACTION", "TARGET", "DETAIL"]);
    for a in &entries {
        t.add_row(vec![
            render::timestamp(a["ts_ms"].as_i64().unwrap_or(0)),
            text(&a["principal"]),
            text(&a["action"]),
            text(&a["target"]),
            a["detail"].to_string(),
        ]);
    }
    println!("{t}");
    Ok(exit::OK)
}
