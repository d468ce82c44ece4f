//! `gantry models`, `gantry model show`, `gantry model alias`.

use crate::cli::Output;
use crate::commands::{Source, text};
use crate::exit::{self, coded};
use crate::render::{self, table};
use serde_json::{Value, json};

pub async fn list(src: &Source<'_>, output: Output) -> anyhow::Result<u8> {
    let models: Vec<Value> = match src {
        Source::Remote(client) => client
            .get(&["models"], &[])
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default(),
        Source::Local(home) => {
            let store = home.store().await?;
            store
                .list_models()
                .await?
                .iter()
                .map(|m| json!(m))
                .collect()
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&models)?);
        return Ok(exit::OK);
    }
    let mut t = table(&["NAME", "LATEST", "ALIASES", "UPDATED"]);
    for m in &models {
        let aliases: Vec<String> = m["aliases"]
            .as_object()
            .map(|a| a.iter().map(|(a, v)| format!("{a}→v{v}")).collect())
            .unwrap_or_default();
        t.add_row(vec![
            text(&m["name"]),
            m["latest_version"]
                .as_i64()
                .map(|v| format!("v{v}"))
                .unwrap_or_default(),
            aliases.join(", "),
            render::timestamp(m["updated_at_ms"].as_i64().unwrap_or(0)),
        ]);
    }
    println!("{t}");
    Ok(exit::OK)
}

pub async fn show(src: &Source<'_>, reference: &str, output: Output) -> anyhow::Result<u8> {
    let out = match src {
        Source::Remote(client) => {
            let (name, version) = reference.split_once('@').unwrap_or((reference, "latest"));
            client
                .get(&["models", name, "versions", version], &[])
                .await?
        }
        Source::Local(home) => {
            let store = home.store().await?;
            gantry_server::views::model_version(&store.resolve_model(reference).await?)
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(exit::OK);
    }
    let v = &out;
    println!("model     {} v{}", text(&v["model"]), text(&v["version"]));
    let aliases: Vec<String> = v["aliases"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    if !aliases.is_empty() {
        println!("aliases   {}", aliases.join(", "));
    }
    println!("flavor    {}", text(&v["flavor"]));
    println!(
        "artifact  {} ({})",
        text(&v["artifact"]["digest"]),
        text(&v["artifact"]["kind"])
    );
    println!(
        "created   {}",
        render::timestamp(v["created_at_ms"].as_i64().unwrap_or(0))
    );
    if let (Some(run), Some(step)) = (v["lineage"]["run"].as_str(), v["lineage"]["step"].as_str()) {
        println!("from      run {run}, step {step}");
    }
    if let Some(items) = v["lineage"]["data"].as_array().filter(|a| !a.is_empty()) {
        println!(
            "data      {}",
            items
                .iter()
                .filter_map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join("\n          ")
        );
    }
    if let Some(obj) = v["metrics"].as_object().filter(|m| !m.is_empty()) {
        println!();
        let mut t = table(&["METRIC", "VALUE"]);
        for (k, val) in obj {
            t.add_row(vec![k.clone(), val.to_string()]);
        }
        println!("{t}");
    }
    Ok(exit::OK)
}

pub async fn alias(src: &Source<'_>, name: &str, version: i64, alias: &str) -> anyhow::Result<u8> {
    if version < 1 {
        return Err(coded(
            exit::USAGE,
            format!("version {version}: versions start at 1"),
        ));
    }
    match src {
        Source::Remote(client) => {
            client
                .post(
                    &["models", name, "aliases"],
                    &json!({"alias": alias, "version": version}),
                )
                .await?;
        }
        Source::Local(home) => {
            let store = home.store().await?;
            store
                .set_model_alias(name, version, alias, gantry_engine::now_ms())
                .await?;
        }
    }
    println!("{name}@{alias} → v{version}");
    Ok(exit::OK)
}
