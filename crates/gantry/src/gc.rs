//! `gantry gc` and `gantry df`: on GANTRY_HOME, or through a server as an admin (audited).

use std::time::Duration;

use crate::cli::Output;
use crate::commands::Source;
use crate::exit::{self, coded};
use crate::render::{self, table};
use gantry_engine::gc::{self, GcTargets};
use serde_json::{Value, json};

/// Runs kept by default: those that ended in the last 30 days.
pub const DEFAULT_OLDER_THAN: &str = "30d";

fn parse_older_than(text: &str) -> anyhow::Result<Duration> {
    humantime::parse_duration(text).map_err(|e| {
        coded(
            exit::USAGE,
            format!("bad --older-than '{text}': give a duration such as 30d or 12h ({e})"),
        )
    })
}

async fn local<T>(
    home: &crate::home::Home,
    f: impl AsyncFnOnce(&GcTargets<'_>, Option<std::path::PathBuf>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let store = home.store().await?;
    let artifacts = home.artifacts()?;
    let images = home.images()?;
    let work_dir = home.work_dir();
    let targets = GcTargets {
        store: &store,
        artifacts: &artifacts,
        images: &images,
        work_dir: &work_dir,
        builtin_exe: std::env::current_exe().ok(),
    };
    f(&targets, store.sqlite_path()).await
}

pub async fn gc(
    src: &Source<'_>,
    older_than: &str,
    dry_run: bool,
    output: Output,
) -> anyhow::Result<u8> {
    let retention = parse_older_than(older_than)?;
    let report: Value = match src {
        Source::Remote(client) => {
            client
                .post(
                    &["gc"],
                    &json!({"dry_run": dry_run, "older_than": older_than}),
                )
                .await?
        }
        Source::Local(home) => {
            let r = local(home, async |t, _| {
                Ok(gc::collect(t, retention, dry_run).await?)
            })
            .await?;
            json!(r)
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(exit::OK);
    }
    let verb = if dry_run { "would free" } else { "freed" };
    let mut t = table(&["WHAT", "ITEMS", "BYTES"]);
    let mut total = 0;
    for (key, label) in [
        ("artifacts", "artifacts"),
        ("scratch", "scratch directories"),
        ("logs", "log chunks"),
        ("images", "images"),
    ] {
        let bytes = report[key]["bytes"].as_i64().unwrap_or(0);
        total += bytes;
        t.add_row(vec![
            label.to_string(),
            report[key]["count"].as_i64().unwrap_or(0).to_string(),
            render::bytes(bytes),
        ]);
    }
    println!("{t}");
    println!(
        "{verb} {} (runs that ended before {} are not kept; {} artifacts in use stay)",
        render::bytes(total),
        render::timestamp(report["cutoff_ms"].as_i64().unwrap_or(0)),
        report["kept_artifacts"].as_i64().unwrap_or(0)
    );
    Ok(exit::OK)
}

pub async fn df(src: &Source<'_>, older_than: &str, output: Output) -> anyhow::Result<u8> {
    let retention = parse_older_than(older_than)?;
    let usage: Value = match src {
        Source::Remote(client) => {
            client
                .get(&["df"], &[("older_than", older_than.to_string())])
                .await?
        }
        Source::Local(home) => {
            let u = local(home, async |t, db| {
                Ok(gc::disk_usage(t, db.as_deref(), retention).await?)
            })
            .await?;
            json!(u)
        }
    };
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&usage)?);
        return Ok(exit::OK);
    }
    let b = |v: &Value| render::bytes(v.as_i64().unwrap_or(0));
    let n = |v: &Value| v.as_i64().unwrap_or(0).to_string();
    let r = &usage["reclaimable"];
    let mut t = table(&["WHAT", "ITEMS", "SIZE", "GC WOULD FREE"]);
    t.add_row(vec![
        "artifacts".into(),
        n(&usage["artifacts"]["count"]),
        b(&usage["artifacts"]["bytes"]),
        b(&r["artifacts"]["bytes"]),
    ]);
    t.add_row(vec![
        "artifact cache".into(),
        String::new(),
        b(&usage["artifact_cache_bytes"]),
        String::new(),
    ]);
    t.add_row(vec![
        "images".into(),
        n(&usage["images"]["count"]),
        b(&usage["images"]["bytes"]),
        b(&r["images"]["bytes"]),
    ]);
    t.add_row(vec![
        "logs".into(),
        n(&usage["logs"]["count"]),
        b(&usage["logs"]["bytes"]),
        b(&r["logs"]["bytes"]),
    ]);
    t.add_row(vec![
        "scratch".into(),
        n(&usage["scratch"]["count"]),
        b(&usage["scratch"]["bytes"]),
        b(&r["scratch"]["bytes"]),
    ]);
    t.add_row(vec![
        "database".into(),
        String::new(),
        b(&usage["database_bytes"]),
        String::new(),
    ]);
    println!("{t}");
    println!(
        "gc --older-than {older_than} would keep runs that ended after {}",
        render::timestamp(r["cutoff_ms"].as_i64().unwrap_or(0))
    );
    Ok(exit::OK)
}
