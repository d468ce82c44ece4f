//! Images (digests, names, signatures, scan results) and, for admins, the audit log.

use super::page::{Cell, Page, Pager, Section, Table, fmt_bytes, fmt_time, query};
use super::{UiError, UiResult, nav, render};
use crate::AppState;
use crate::api::{self, ApiError};
use crate::auth::Principal;
use axum::Extension;
use axum::extract::{Query, State};
use std::collections::HashMap;

/// Audit entries per page.
const AUDIT_PAGE: i64 = 100;

/// `GET /images`: what the server's image store holds, with trust status.
pub async fn images(State(state): State<AppState>, Extension(p): Extension<Principal>) -> UiResult {
    let mut out = Page::new(nav(&state, &p, "images"), "Images");
    // The image store is the server's, shared by every project: its names and digests are
    // not shown to a token scoped to one project.
    if p.project.is_some() {
        out.push(Section::Text(
            "The server's image store is shared by all projects; a project-scoped token does not list it."
                .into(),
        ));
        return Ok(render(&out));
    }
    let Some(engine) = state.runs.engine() else {
        out.push(Section::Text(
            "This server runs no engine, so it holds no images.".into(),
        ));
        return Ok(render(&out));
    };
    let images = engine.images().clone();
    let listed = tokio::task::spawn_blocking(move || {
        let list = images.list()?;
        let with_sigs = list
            .into_iter()
            .map(|info| {
                let sigs = images
                    .signatures(&info.digest)
                    .ok()
                    .flatten()
                    .and_then(|a| gantry_engine::trust::signature_set(&a).ok())
                    .map(|s| s.layers().len());
                (info, sigs)
            })
            .collect::<Vec<_>>();
        Ok::<_, gantry_image::ImageError>(with_sigs)
    })
    .await
    .map_err(|e| UiError(ApiError::internal("listing images", e)))?
    .map_err(|e| UiError(ApiError::internal("listing images", e)))?;
    let db_version = engine
        .config()
        .trust
        .as_ref()
        .and_then(|t| t.vulndb().ok().flatten())
        .map(|db| db.version().to_owned());
    let scans: HashMap<String, gantry_store::ImageScanRecord> = match &db_version {
        Some(v) => state
            .store
            .image_scans(v)
            .await?
            .into_iter()
            .map(|s| (s.digest.clone(), s))
            .collect(),
        None => HashMap::new(),
    };
    out.push(Section::KeyValues(vec![(
        "Vulnerability database".to_owned(),
        match &db_version {
            Some(v) => Cell::text(v.clone()),
            None => Cell::text("none imported (gantry vulndb import)"),
        },
    )]));
    let mut t = Table::new(
        "Images in the server's store",
        &[
            "Names",
            "Digest",
            "Size",
            "Layers",
            "Architecture",
            "Created",
            "Signatures",
            "Scan",
        ],
    )
    .empty("No images yet.");
    for (info, sigs) in &listed {
        let scan = scans.get(&info.digest);
        t.push(vec![
            Cell::text(if info.names.is_empty() {
                "(untagged)".to_owned()
            } else {
                info.names.join(", ")
            }),
            Cell::text(info.digest.clone()).class("mono"),
            Cell::text(fmt_bytes(info.size as i64)).class("num"),
            Cell::text(info.layers.to_string()).class("num"),
            info.architecture
                .clone()
                .map(Cell::text)
                .unwrap_or_else(Cell::missing),
            info.created
                .clone()
                .map(Cell::text)
                .unwrap_or_else(Cell::missing),
            match sigs {
                Some(n) => Cell::status("verified")
                    .title(format!("{n} signature(s) stored"))
                    .class("sig"),
                None => Cell::text("unsigned"),
            },
            match scan {
                Some(s) => Cell::text(format!("worst: {}", s.worst))
                    .title(s.counts_json.clone())
                    .class(format!("status-{}", super::page::css_token(&s.worst))),
                None => Cell::missing(),
            },
        ]);
    }
    out.push(Section::Table(t));
    Ok(render(&out))
}

/// `GET /audit?before=ID`: every write made through the server, newest first (admins).
pub async fn audit(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<HashMap<String, String>>,
) -> UiResult {
    api::require_admin(&p)?;
    let before: i64 = match q.get("before").filter(|s| !s.is_empty()) {
        Some(b) => b
            .parse()
            .map_err(|_| UiError(ApiError::invalid("before", "not an audit entry id")))?,
        None => i64::MAX,
    };
    let rows = state
        .store
        .list_audit_before(before, AUDIT_PAGE + 1)
        .await?;
    let more = rows.len() as i64 > AUDIT_PAGE;
    let shown = &rows[..rows.len().min(AUDIT_PAGE as usize)];
    let mut out = Page::new(nav(&state, &p, "audit"), "Audit log");
    let mut t = Table::new(
        "Every change made through this server, newest first",
        &["#", "When", "Who", "Action", "Target", "Detail"],
    )
    .empty("Nothing has been changed through the server yet.");
    for r in shown {
        let target = if r.action.starts_with("run.") && r.target.starts_with("r-") {
            Cell::link(
                r.target.clone(),
                format!("/runs/{}", super::page::enc(&r.target)),
            )
        } else {
            Cell::text(r.target.clone())
        };
        t.push(vec![
            Cell::text(r.id.to_string()).class("num"),
            Cell::text(fmt_time(r.ts_ms)).class("time"),
            Cell::text(r.principal.clone()),
            Cell::text(r.action.clone()).class("mono"),
            target,
            Cell::text(r.detail.to_string()).class("mono"),
        ]);
    }
    out.push(Section::Table(t));
    out.push(Section::Pager(Pager {
        first: (before != i64::MAX).then(|| "/audit".to_owned()),
        next: more
            .then(|| {
                shown
                    .last()
                    .map(|r| format!("/audit{}", query(&[("before", &r.id.to_string())])))
            })
            .flatten(),
        info: format!("{} entries", shown.len()),
    }));
    Ok(render(&out))
}
