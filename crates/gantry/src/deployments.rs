//! `gantry deploy`, `promote`, `rollback`, `undeploy`, `deployments` and `feedback`: the
//! desired state of deployments, on GANTRY_HOME's store (a `gantry server` on that home serves
//! it) or through `--server`.

use crate::cli::{DeployArgs, FeedbackArgs, Output};
use crate::commands::{Source, text};
use crate::exit::{self, Coded, coded};
use crate::home::Home;
use crate::render::{self, table};
use anyhow::Context;
use gantry_server::deploy::ops::{self, DeployRequest, FeedbackItem, FeedbackRequest, OpError};
use gantry_store::{DeploymentRecord, Store};
use serde_json::{Value, json};
use std::io::Read;
use std::path::Path;

/// Largest feedback file read.
const MAX_FEEDBACK_BYTES: u64 = 64 << 20;
/// Who local changes are recorded as (the server records its token's name).
const LOCAL_PRINCIPAL: &str = "local";

/// The request `gantry deploy` sends; absent flags leave the deployment as it is.
pub fn deploy_request(a: &DeployArgs) -> DeployRequest {
    DeployRequest {
        model: a.model.clone(),
        canary: a.canary.clone(),
        weight: a.weight,
        shadow: a.shadow.clone(),
        clear_canary: a.no_canary,
        clear_shadow: a.no_shadow,
        replicas: a.replicas,
        cpu: a.cpu.clone(),
        memory: a.memory.clone(),
        sample_rate: a.sample_rate,
        rules: if a.no_rules {
            Some(Vec::new())
        } else if a.rules.is_empty() {
            None
        } else {
            Some(a.rules.clone())
        },
        webhook: a.webhook.clone(),
        window: a.window.clone(),
        max_predictions: a.max_predictions,
        max_age: a.retention.clone(),
        expected_revision: a.expected_revision,
    }
}

/// The flag of `gantry deploy` that sets a request field, for error messages.
pub fn flag_for(field: &str) -> Option<&'static str> {
    Some(match field {
        "name" => "NAME",
        "model" => "--model",
        "canary" => "--canary",
        "weight" => "--weight",
        "shadow" => "--shadow",
        "replicas" => "--replicas",
        "cpu" => "--cpu",
        "memory" => "--memory",
        "sample_rate" => "--sample-rate",
        "rules" => "--rule",
        "webhook" => "--webhook",
        "window" => "--window",
        "max_predictions" => "--max-predictions",
        "max_age" => "--retention",
        "expected_revision" => "--expected-revision",
        _ => return None,
    })
}

/// Names the flag at fault instead of the API field, locally and from a server.
fn name_flag(err: anyhow::Error) -> anyhow::Error {
    if let Some(OpError::Invalid { field, message }) = err.downcast_ref::<OpError>() {
        let flag = flag_for(field).unwrap_or(field);
        return coded(exit::USAGE, format!("{flag}: {message}"));
    }
    if let Some(Coded {
        code,
        field: Some((field, message)),
        ..
    }) = err.downcast_ref::<Coded>()
        && let Some(flag) = flag_for(field)
    {
        return anyhow::Error::new(Coded {
            code: *code,
            message: format!("server: {flag}: {message}"),
            field: None,
        });
    }
    err
}

/// A deployment as the API shows it; locally there is no actual state.
fn record_view(r: &DeploymentRecord) -> Value {
    json!({
        "name": r.name,
        "revision": r.revision,
        "project": r.project,
        "spec": r.spec,
        "created_at_ms": r.created_at_ms,
        "updated_at_ms": r.updated_at_ms,
        "actual": null,
    })
}

async fn audit(store: &Store, action: &str, name: &str, detail: Value) -> anyhow::Result<()> {
    store
        .append_audit(
            LOCAL_PRINCIPAL,
            action,
            name,
            &detail,
            gantry_engine::now_ms(),
        )
        .await?;
    Ok(())
}

pub async fn deploy(src: &Source<'_>, args: &DeployArgs) -> anyhow::Result<u8> {
    let req = deploy_request(args);
    let name = args.name.as_str();
    let view = match src {
        Source::Remote(client) => client
            .post(&["deployments", name], &json!(req))
            .await
            .map_err(name_flag)?,
        Source::Local(home) => {
            let store = home.store().await?;
            let detail = json!(req);
            let r = ops::apply(
                &store,
                name,
                req,
                LOCAL_PRINCIPAL,
                None,
                gantry_engine::now_ms(),
            )
            .await
            .map_err(|e| name_flag(e.into()))?;
            audit(&store, "deployment.apply", name, detail).await?;
            record_view(&r)
        }
    };
    print_changed(src, &view, args.output)
}

/// `gantry promote` and `gantry rollback`.
pub async fn promote_or_rollback(
    src: &Source<'_>,
    name: &str,
    rollback: bool,
    output: Output,
) -> anyhow::Result<u8> {
    let verb = if rollback { "rollback" } else { "promote" };
    let view = match src {
        Source::Remote(client) => {
            client
                .post(&["deployments", name, verb], &json!({}))
                .await?
        }
        Source::Local(home) => {
            let store = home.store().await?;
            let now = gantry_engine::now_ms();
            let r = if rollback {
                ops::rollback(&store, name, LOCAL_PRINCIPAL, None, now).await?
            } else {
                ops::promote(&store, name, LOCAL_PRINCIPAL, None, now).await?
            };
            audit(
                &store,
                &format!("deployment.{verb}"),
                name,
                json!({"revision": r.revision}),
            )
            .await?;
            record_view(&r)
        }
    };
    print_changed(src, &view, output)
}

pub async fn undeploy(src: &Source<'_>, name: &str, output: Output) -> anyhow::Result<u8> {
    let answer = match src {
        Source::Remote(client) => client.delete(&["deployments", name]).await?,
        Source::Local(home) => {
            let store = home.store().await?;
            ops::undeploy(&store, name, LOCAL_PRINCIPAL, None, gantry_engine::now_ms()).await?;
            audit(&store, "deployment.undeploy", name, json!({})).await?;
            json!({"name": name, "deleted": true})
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("undeployed {name}: its replicas stop; its revisions stay for the record");
    }
    Ok(exit::OK)
}

fn print_changed(src: &Source<'_>, view: &Value, output: Output) -> anyhow::Result<u8> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(view)?);
        return Ok(exit::OK);
    }
    let name = text(&view["name"]);
    println!("deployment {name} revision {}", text(&view["revision"]));
    print!("{}", spec_lines(&view["spec"]));
    match src {
        Source::Local(home) => println!(
            "note: written to {}; a `gantry server` on this GANTRY_HOME serves it at /v2/models/{name}",
            home.root.display()
        ),
        Source::Remote(_) => {
            println!("the server rolls it out; `gantry deployments {name}` shows its replicas")
        }
    }
    Ok(exit::OK)
}

/// `model:version` of a spec's model target.
pub fn target_label(t: &Value) -> String {
    if t.is_null() {
        return "-".into();
    }
    format!("{}:{}", text(&t["model"]), text(&t["version"]))
}

/// `model:version (reference)` when the user's reference says more than the version.
fn target_with_reference(t: &Value) -> String {
    let label = target_label(t);
    match t["reference"].as_str() {
        Some(r) if r.contains('@') && !r.ends_with(&format!("@{}", text(&t["version"]))) => {
            format!("{label} ({r})")
        }
        _ => label,
    }
}

/// `model:version @weight%`, or `-`.
pub fn canary_label(spec: &Value) -> String {
    let c = &spec["canary"];
    if c.is_null() {
        return "-".into();
    }
    format!("{} @{}%", target_label(&c["target"]), text(&c["weight"]))
}

/// The desired state, one aspect per line.
pub fn spec_lines(spec: &Value) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<9} {v}\n"));
    line("model", target_with_reference(&spec["model"]));
    if !spec["canary"].is_null() {
        line(
            "canary",
            format!(
                "{} answering {}% of requests",
                target_with_reference(&spec["canary"]["target"]),
                text(&spec["canary"]["weight"])
            ),
        );
    }
    if !spec["shadow"].is_null() {
        line(
            "shadow",
            format!(
                "{} (gets a copy of every request)",
                target_with_reference(&spec["shadow"])
            ),
        );
    }
    line(
        "replicas",
        format!(
            "{} × cpu {}, memory {}",
            text(&spec["replicas"]),
            render::cpu_millis(spec["cpu_millis"].as_i64().unwrap_or(0)),
            render::bytes(spec["memory_bytes"].as_i64().unwrap_or(0))
        ),
    );
    line(
        "logging",
        format!(
            "sample rate {}, keep {} predictions for {}",
            text(&spec["sample_rate"]),
            text(&spec["retention"]["max_predictions"]),
            text(&spec["retention"]["max_age"])
        ),
    );
    let rules: Vec<String> = spec["monitor"]["rules"]
        .as_array()
        .map(|r| r.iter().map(text).collect())
        .unwrap_or_default();
    line(
        "monitor",
        format!(
            "window {}; {}{}",
            text(&spec["monitor"]["window"]),
            if rules.is_empty() {
                "no alert rules".to_string()
            } else {
                format!("rules: {}", rules.join("; "))
            },
            spec["monitor"]["webhook"]
                .as_str()
                .map(|w| format!("; webhook {w}"))
                .unwrap_or_default()
        ),
    );
    out
}

/// `ready/desired` replicas over every pool the spec asks for, or `-/desired` without
/// actual state (local mode).
pub fn replicas_cell(item: &Value) -> String {
    let spec = &item["spec"];
    let per_pool = spec["replicas"].as_u64().unwrap_or(0);
    let pools = 1 + u64::from(!spec["canary"].is_null()) + u64::from(!spec["shadow"].is_null());
    let desired = per_pool * pools;
    match item["actual"]["pools"].as_array() {
        Some(actual) => {
            let ready = actual
                .iter()
                .flat_map(|p| p["replicas"].as_array().cloned().unwrap_or_default())
                .filter(|r| r["ready"].as_bool() == Some(true))
                .count();
            format!("{ready}/{desired}")
        }
        None => format!("-/{desired}"),
    }
}

/// The revision, with the one still serving when a rollout is under way.
fn revision_cell(item: &Value) -> String {
    let desired = text(&item["revision"]);
    match item["actual"]["serving_revision"].as_i64() {
        Some(s) if s.to_string() != desired => format!("{desired} (serving {s})"),
        _ => desired,
    }
}

pub async fn list_or_show(
    src: &Source<'_>,
    name: Option<&str>,
    output: Output,
) -> anyhow::Result<u8> {
    if let Some(name) = name {
        return show(src, name, output).await;
    }
    let items: Vec<Value> = match src {
        Source::Remote(client) => client
            .get(&["deployments"], &[])
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Source::Local(home) => home
            .store()
            .await?
            .list_deployments()
            .await?
            .iter()
            .map(record_view)
            .collect(),
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(exit::OK);
    }
    print!("{}", list_table(&items));
    Ok(exit::OK)
}

pub fn list_table(items: &[Value]) -> String {
    let mut t = table(&["NAME", "MODEL", "CANARY", "REPLICAS", "REVISION", "UPDATED"]);
    for d in items {
        t.add_row(vec![
            text(&d["name"]),
            target_label(&d["spec"]["model"]),
            canary_label(&d["spec"]),
            replicas_cell(d),
            revision_cell(d),
            render::timestamp(d["updated_at_ms"].as_i64().unwrap_or(0)),
        ]);
    }
    format!("{t}\n")
}

async fn show(src: &Source<'_>, name: &str, output: Output) -> anyhow::Result<u8> {
    let v = match src {
        Source::Remote(client) => client.get(&["deployments", name], &[]).await?,
        Source::Local(home) => {
            let store = home.store().await?;
            let r = store.get_deployment(name).await?;
            let mut v = record_view(&r);
            v["revisions"] = json!(store.deployment_revisions(name).await?);
            v
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", detail(&v));
    }
    Ok(exit::OK)
}

/// `gantry deployments NAME`: desired state, actual state, revisions.
pub fn detail(v: &Value) -> String {
    let mut out = format!(
        "deployment {} revision {}{}\n",
        text(&v["name"]),
        text(&v["revision"]),
        v["project"]
            .as_str()
            .map(|p| format!(" (project {p})"))
            .unwrap_or_default()
    );
    out.push_str(&spec_lines(&v["spec"]));
    out.push('\n');
    let actual = &v["actual"];
    if actual.is_null() {
        out.push_str(
            "actual state: not known here (a `gantry server` on this GANTRY_HOME serves it; ask it with --server)\n",
        );
    } else {
        match actual["serving_revision"].as_i64() {
            Some(r) => out.push_str(&format!("serving revision {r}\n")),
            None => out.push_str("not serving yet\n"),
        }
        if let Some(why) = actual["rollout"].as_str() {
            out.push_str(&format!("rollout: {why}\n"));
        }
        let mut t = table(&[
            "ROLE",
            "MODEL",
            "FLAVOR",
            "REPLICA",
            "READY",
            "RESTARTS",
            "LAST ERROR",
        ]);
        let empty = Vec::new();
        for pool in actual["pools"].as_array().unwrap_or(&empty) {
            for r in pool["replicas"].as_array().unwrap_or(&empty) {
                t.add_row(vec![
                    text(&pool["role"]),
                    format!("{}:{}", text(&pool["model"]), text(&pool["version"])),
                    text(&pool["flavor"]),
                    text(&r["id"]),
                    if r["ready"].as_bool() == Some(true) {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                    text(&r["restarts"]),
                    text(&r["last_error"]),
                ]);
            }
        }
        if !t.is_empty() {
            out.push_str(&format!("{t}\n"));
        }
    }
    if let Some(revs) = v["revisions"].as_array().filter(|r| !r.is_empty()) {
        out.push_str("\nrevisions\n");
        let mut t = table(&["REVISION", "ACTION", "BY", "TIME", "MODEL", "CANARY"]);
        for r in revs {
            t.add_row(vec![
                text(&r["revision"]),
                text(&r["action"]),
                text(&r["principal"]),
                render::timestamp(r["created_at_ms"].as_i64().unwrap_or(0)),
                target_label(&r["spec"]["model"]),
                canary_label(&r["spec"]),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    out
}

/// A label from the command line: JSON when it parses (`3`, `2.5`, `true`, `"setosa"`),
/// else the text itself (`setosa`).
pub fn parse_label(raw: &str) -> anyhow::Result<Value> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Null) => Err(coded(
            exit::USAGE,
            "LABEL null: give the true value of the prediction",
        )),
        Ok(v) => Ok(v),
        Err(_) => Ok(Value::String(raw.to_string())),
    }
}

/// The items of a JSON Lines feedback file, checked line by line (blank lines skipped).
pub fn parse_feedback_lines(source: &str, content: &str) -> anyhow::Result<Vec<Value>> {
    let mut items = Vec::new();
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| coded(exit::USAGE, format!("{source}:{}: not JSON: {e}", i + 1)))?;
        serde_json::from_value::<FeedbackItem>(value.clone()).map_err(|e| {
            coded(
                exit::USAGE,
                format!(
                    "{source}:{}: {e}; each line is {{\"request_id\": \"…\", \"label\": …}} (or \"labels\": [...] for every row)",
                    i + 1
                ),
            )
        })?;
        items.push(value);
    }
    if items.is_empty() {
        return Err(coded(
            exit::USAGE,
            format!("{source}: no feedback lines in it"),
        ));
    }
    Ok(items)
}

fn read_feedback_file(path: &Path) -> anyhow::Result<Vec<Value>> {
    let mut content = String::new();
    let source = if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_FEEDBACK_BYTES)
            .read_to_string(&mut content)
            .context("reading feedback from standard input")?;
        "stdin".to_string()
    } else {
        let file = std::fs::File::open(path).map_err(|e| {
            coded(
                if e.kind() == std::io::ErrorKind::NotFound {
                    exit::NOT_FOUND
                } else {
                    exit::USAGE
                },
                format!("--file {}: {e}", path.display()),
            )
        })?;
        file.take(MAX_FEEDBACK_BYTES)
            .read_to_string(&mut content)
            .with_context(|| format!("reading --file {}", path.display()))?;
        path.display().to_string()
    };
    parse_feedback_lines(&source, &content)
}

pub async fn feedback(src: &Source<'_>, args: &FeedbackArgs) -> anyhow::Result<u8> {
    let items = match (&args.file, &args.request_id, &args.label) {
        (Some(file), _, _) => read_feedback_file(file)?,
        (None, Some(id), Some(label)) => {
            let mut item = json!({"request_id": id, "label": parse_label(label)?});
            if let Some(row) = args.row {
                item["row"] = json!(row);
            }
            vec![item]
        }
        _ => {
            return Err(coded(
                exit::USAGE,
                "give REQUEST_ID and LABEL, or --file FEEDBACK.jsonl",
            ));
        }
    };
    let stored = match src {
        Source::Remote(client) => {
            let answer = client
                .post(
                    &["deployments", &args.name, "feedback"],
                    &json!({ "feedback": items }),
                )
                .await?;
            answer["stored"].as_u64().unwrap_or(0) as usize
        }
        Source::Local(home) => feedback_local(home, &args.name, items).await?,
    };
    if args.output == Output::Json {
        println!("{}", json!({ "stored": stored }));
    } else {
        println!(
            "stored {stored} label{} for deployment {}",
            if stored == 1 { "" } else { "s" },
            args.name
        );
    }
    Ok(exit::OK)
}

async fn feedback_local(home: &Home, name: &str, items: Vec<Value>) -> anyhow::Result<usize> {
    let store = home.store().await?;
    // Feedback for a deployment that does not exist is a wrong name, not a wrong request id.
    store.get_deployment(name).await?;
    let feedback = items
        .into_iter()
        .map(serde_json::from_value::<FeedbackItem>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| coded(exit::USAGE, format!("feedback: {e}")))?;
    Ok(ops::feedback(
        &store,
        name,
        FeedbackRequest::Many { feedback },
        gantry_engine::now_ms(),
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_json_when_they_parse_else_text() {
        assert_eq!(parse_label("3").unwrap(), json!(3));
        assert_eq!(parse_label("2.5").unwrap(), json!(2.5));
        assert_eq!(parse_label("true").unwrap(), json!(true));
        assert_eq!(parse_label("\"7\"").unwrap(), json!("7"));
        assert_eq!(parse_label("setosa").unwrap(), json!("setosa"));
        assert_eq!(parse_label("Iris setosa").unwrap(), json!("Iris setosa"));
        let e = parse_label("null").unwrap_err();
        assert_eq!(exit::code_for(&e), exit::USAGE);
    }

    #[test]
    fn feedback_files_are_checked_line_by_line() {
        let items = parse_feedback_lines(
            "f.jsonl",
            "{\"request_id\": \"a\", \"label\": 1}\n\n{\"request_id\": \"b\", \"labels\": [\"x\", \"y\"]}\n",
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1]["labels"], json!(["x", "y"]));

        let e = parse_feedback_lines("f.jsonl", "{\"request_id\": \"a\", \"label\": 1}\n{oops\n")
            .unwrap_err();
        assert_eq!(exit::code_for(&e), exit::USAGE);
        assert!(e.to_string().starts_with("f.jsonl:2: not JSON"), "{e}");

        let e = parse_feedback_lines("f.jsonl", "{\"request\": \"a\", \"label\": 1}").unwrap_err();
        assert!(
            e.to_string().contains("f.jsonl:1: unknown field `request`"),
            "{e}"
        );

        let e = parse_feedback_lines("f.jsonl", "\n  \n").unwrap_err();
        assert!(e.to_string().contains("no feedback lines"), "{e}");
    }

    #[test]
    fn rejected_fields_are_reported_as_flags() {
        let local = name_flag(
            OpError::Invalid {
                field: "sample_rate".into(),
                message: "2 is not a fraction between 0 and 1".into(),
            }
            .into(),
        );
        assert_eq!(exit::code_for(&local), exit::USAGE);
        assert_eq!(
            local.to_string(),
            "--sample-rate: 2 is not a fraction between 0 and 1"
        );
        let remote = name_flag(anyhow::Error::new(Coded {
            code: exit::USAGE,
            message: "server: max_age: bad".into(),
            field: Some(("max_age".into(), "bad".into())),
        }));
        assert_eq!(remote.to_string(), "server: --retention: bad");
        assert_eq!(exit::code_for(&remote), exit::USAGE);
        let other = name_flag(OpError::NotFound("deployment x not found".into()).into());
        assert_eq!(exit::code_for(&other), exit::NOT_FOUND);
    }

    #[test]
    fn deploy_flags_become_the_request() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "gantry",
            "deploy",
            "iris",
            "--model",
            "iris@champion",
            "--canary",
            "iris@3",
            "--weight",
            "20",
            "--rule",
            "psi > 0.2 for feature x",
            "--rule",
            "accuracy < 0.8",
            "--retention",
            "7d",
        ])
        .unwrap();
        let crate::cli::Command::Deploy(args) = cli.command else {
            panic!("not deploy");
        };
        let req = json!(deploy_request(&args));
        assert_eq!(
            req,
            json!({
                "model": "iris@champion", "canary": "iris@3", "weight": 20,
                "rules": ["psi > 0.2 for feature x", "accuracy < 0.8"], "max_age": "7d",
            })
        );
        let cli =
            crate::cli::Cli::try_parse_from(["gantry", "deploy", "iris", "--no-rules"]).unwrap();
        let crate::cli::Command::Deploy(args) = cli.command else {
            panic!("not deploy");
        };
        assert_eq!(json!(deploy_request(&args)), json!({"rules": []}));
        assert!(
            crate::cli::Cli::try_parse_from([
                "gantry",
                "deploy",
                "iris",
                "--canary",
                "a@1",
                "--no-canary"
            ])
            .is_err()
        );
    }

    fn item(actual: Value) -> Value {
        json!({
            "name": "iris", "revision": 3, "updated_at_ms": 0, "actual": actual,
            "spec": {
                "model": {"reference": "iris@champion", "model": "iris", "version": 2},
                "canary": {"target": {"reference": "iris@3", "model": "iris", "version": 3}, "weight": 10},
                "replicas": 2, "cpu_millis": 500, "memory_bytes": 268435456u64, "sample_rate": 1.0,
                "monitor": {"rules": ["accuracy < 0.8"], "window": "1h"},
                "retention": {"max_predictions": 1000, "max_age": "30d"},
            },
        })
    }

    #[test]
    fn list_rows_show_models_canary_and_readiness() {
        let local = item(Value::Null);
        assert_eq!(target_label(&local["spec"]["model"]), "iris:2");
        assert_eq!(canary_label(&local["spec"]), "iris:3 @10%");
        assert_eq!(replicas_cell(&local), "-/4");
        let served = item(json!({
            "serving_revision": 2,
            "pools": [
                {"role": "primary", "model": "iris", "version": 2, "flavor": "builtin",
                 "replicas": [{"id": "a", "ready": true, "restarts": 0},
                              {"id": "b", "ready": true, "restarts": 1}]},
                {"role": "canary", "model": "iris", "version": 3, "flavor": "builtin",
                 "replicas": [{"id": "c", "ready": false, "restarts": 2, "last_error": "exit 1"}]},
            ],
            "rollout": "revision 3: waiting for canary",
        }));
        assert_eq!(replicas_cell(&served), "2/4");
        assert_eq!(revision_cell(&served), "3 (serving 2)");
        let table = list_table(std::slice::from_ref(&served));
        assert!(table.contains("iris:3 @10%"), "{table}");
        let shown = detail(&served);
        assert!(shown.contains("iris:2 (iris@champion)"), "{shown}");
        assert!(
            shown.contains("rollout: revision 3: waiting for canary"),
            "{shown}"
        );
        assert!(shown.contains("exit 1"), "{shown}");
        assert!(shown.contains("2 × cpu 500m, memory 256.0MiB"), "{shown}");
    }
}
