//! gc of images against a real store and image store (no containers needed): built-in images
//! of other binaries go once no kept run used them; images people named, and built-in images
//! a kept run used, stay.

#![allow(clippy::unwrap_used)] // test fixtures

use std::time::Duration;

use gantry_artifacts::ArtifactStore;
use gantry_engine::gc::{self, GcTargets};
use gantry_image::ImageStore;
use gantry_store::{RunRecord, RunStatus, Store};

/// A small rootfs tar whose content (and so digest) depends on `marker`.
fn rootfs_tar(dir: &std::path::Path, marker: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{marker}.tar"));
    let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
    for d in ["bin/", "etc/", "proc/", "dev/", "sys/", "tmp/"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        b.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(marker.len() as u64);
    b.append_data(&mut h, "etc/marker", marker.as_bytes())
        .unwrap();
    b.finish().unwrap();
    path
}

fn run(id: &str, status: RunStatus, finished_at_ms: Option<i64>, images_json: String) -> RunRecord {
    RunRecord {
        id: id.into(),
        pipeline: "p".into(),
        status,
        spec_file: "p.yaml".into(),
        spec_yaml: "name: p\nsteps: []\n".into(),
        params_json: "{}".into(),
        images_json,
        no_cache: false,
        rerun_of: None,
        created_at_ms: 1,
        started_at_ms: Some(1),
        finished_at_ms,
        owner_pid: None,
        owner_host: None,
        error: None,
        submitted_by: None,
    }
}

#[tokio::test]
async fn old_builtin_images_go_and_images_in_use_or_named_by_people_stay() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/g.db", dir.path().display()))
        .await
        .unwrap();
    let artifacts = ArtifactStore::open_local(&dir.path().join("artifacts")).unwrap();
    let images = ImageStore::open(&dir.path().join("images")).unwrap();
    let import = |marker: &str, name: &str| {
        images
            .import(&rootfs_tar(dir.path(), marker), Some(name))
            .unwrap()
            .digest
    };
    let unused = import("a", "gantry-builtin:aaaaaaaaaaaaaaaa");
    let live = import("b", "gantry-builtin:bbbbbbbbbbbbbbbb");
    let named = import("c", "mine:1");
    let expired = import("d", "gantry-builtin:dddddddddddddddd");
    // A run in progress used `live`; a run that ended long ago used `expired`.
    let images_of = |d: &str| format!(r#"{{"step":"{d}"}}"#);
    store
        .create_run(&run("r-live", RunStatus::Running, None, images_of(&live)))
        .await
        .unwrap();
    store
        .create_run(&run(
            "r-old",
            RunStatus::Succeeded,
            Some(2),
            images_of(&expired),
        ))
        .await
        .unwrap();

    let work = dir.path().join("work");
    let targets = GcTargets {
        store: &store,
        artifacts: &artifacts,
        images: &images,
        work_dir: &work,
        builtin_exe: None,
    };
    let retention = Duration::from_secs(3600);
    let dry = gc::collect(&targets, retention, true).await.unwrap();
    assert_eq!(dry.images.count, 2, "{dry:?}");
    assert!(dry.images.bytes > 0);
    assert_eq!(images.list().unwrap().len(), 4, "a dry run removes nothing");

    let report = gc::collect(&targets, retention, false).await.unwrap();
    assert_eq!(report.images.count, 2);
    let left: Vec<String> = images
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect();
    assert!(left.contains(&live) && left.contains(&named), "{left:?}");
    assert!(
        !left.contains(&unused) && !left.contains(&expired),
        "{left:?}"
    );
    assert!(images.rootfs(&live).unwrap().join("etc/marker").is_file());
    // Nothing left to collect.
    let again = gc::collect(&targets, retention, false).await.unwrap();
    assert_eq!((again.images.count, again.images.bytes), (0, 0));
}
