//! `gantry models`, `gantry model show`, `gantry model alias`.

use crate::cli::Output;
use crate::exit::{self, coded};
use crate::home::Home;
use crate::render::{self, table};
use serde_json::json;

pub async fn list(home: &Home, output: Output) -> anyhow::Result<u8> {
    let store = home.store().await?;
    let models = store.list_models().await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&models)?);
        return Ok(exit::OK);
    }
    let mut t = table(&["NAME", "LATEST", "ALIASES", "UPDATED"]);
    for m in &models {
        let aliases: Vec<String> = m.aliases.iter().map(|(a, v)| format!("{a}→v{v}")).collect();
        t.add_row(vec![
            m.name.clone(),
            m.latest_version
                .map(|v| format!("v{v}"))
                .unwrap_or_default(),
            aliases.join(", "),
            render::timestamp(m.updated_at_ms),
        ]);
    }
    println!("{t}");
    Ok(exit::OK)
}

pub async fn show(home: &Home, reference: &str, output: Output) -> anyhow::Result<u8> {
    let store = home.store().await?;
    let v = store.resolve_model(reference).await?;
    let metrics: serde_json::Value = serde_json::from_str(&v.metrics_json).unwrap_or_default();
    let data: serde_json::Value = serde_json::from_str(&v.data_digests_json).unwrap_or_default();
    let params: serde_json::Value = serde_json::from_str(&v.params_json).unwrap_or_default();
    if output == Output::Json {
        let out = json!({
            "model": v.model, "version": v.version, "aliases": v.aliases, "flavor": v.flavor,
            "artifact": {"digest": v.artifact_digest, "kind": v.artifact_kind},
            "metrics": metrics, "params": params,
            "lineage": {"run": v.run_id, "step": v.step, "step_run": v.step_run_id, "data": data},
            "description": v.description, "created_at_ms": v.created_at_ms,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(exit::OK);
    }
    println!("model     {} v{}", v.model, v.version);
    if !v.aliases.is_empty() {
        println!("aliases   {}", v.aliases.join(", "));
    }
    println!("flavor    {}", v.flavor);
    println!("artifact  {} ({})", v.artifact_digest, v.artifact_kind);
    println!("created   {}", render::timestamp(v.created_at_ms));
    if let (Some(run), Some(step)) = (&v.run_id, &v.step) {
        println!("from      run {run}, step {step}");
    }
    if let Some(items) = data.as_array().filter(|a| !a.is_empty()) {
        println!(
            "data      {}",
            items
                .iter()
                .filter_map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join("\n          ")
        );
    }
    if let Some(obj) = metrics.as_object().filter(|m| !m.is_empty()) {
        println!();
        let mut t = table(&["METRIC", "VALUE"]);
        for (k, val) in obj {
            t.add_row(vec![k.clone(), val.to_string()]);
        }
        println!("{t}");
    }
    Ok(exit::OK)
}

pub async fn alias(home: &Home, name: &str, version: i64, alias: &str) -> anyhow::Result<u8> {
    if version < 1 {
        return Err(coded(
            exit::USAGE,
            format!("version {version}: versions start at 1"),
        ));
    }
    let store = home.store().await?;
    store
        .set_model_alias(name, version, alias, gantry_engine::now_ms())
        .await?;
    println!("{name}@{alias} → v{version}");
    Ok(exit::OK)
}
