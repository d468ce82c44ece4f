//! One suite, every backend: the local filesystem, object_store's in-memory store, and S3 —
//! a real S3 API, moto_server on 127.0.0.1 (skipped without `GANTRY_TEST_MOTO_SERVER`, a
//! failure under `GANTRY_TEST_REQUIRE_ALL`). The same layout (`sha256/<hex>` then
//! `meta/<hex>.json`), the same answers, the same refusals.

#![allow(clippy::unwrap_used)]

#[path = "../../../testing/skip.rs"]
mod skip;

#[path = "../../../testing/moto.rs"]
mod moto;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gantry_artifacts::{ArtifactError, ArtifactKind, ArtifactStore, Location};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};

struct Backend {
    name: &'static str,
    store: ArtifactStore,
    /// The same objects, read and written behind the store's back.
    raw: Arc<dyn ObjectStore>,
    dir: tempfile::TempDir,
}

impl Backend {
    fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join("scratch").join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    async fn keys(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut list = self.raw.list(Some(&ObjectPath::from(prefix)));
        while let Some(m) = futures::StreamExt::next(&mut list).await {
            out.push(m.unwrap().location.to_string());
        }
        out.sort();
        out
    }

    async fn raw_bytes(&self, key: &str) -> Vec<u8> {
        self.raw
            .get(&ObjectPath::from(key))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }

    async fn raw_put(&self, key: &str, bytes: Vec<u8>) {
        self.raw
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await
            .unwrap();
    }
}

fn write(path: &Path, bytes: &[u8], mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn hex_of(digest: &str) -> String {
    digest.strip_prefix("sha256:").unwrap().to_owned()
}

/// Every file under `root` (relative path → bytes, mode bits, or a symlink's target).
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        let what = if meta.file_type().is_symlink() {
            format!("-> {}", fs::read_link(e.path()).unwrap().display())
        } else if meta.is_dir() {
            "dir".into()
        } else {
            format!(
                "{:o} {}",
                meta.permissions().mode() & 0o111,
                hex::encode(Sha256::digest(fs::read(e.path()).unwrap()))
            )
        };
        out.insert(rel, what);
    }
    out
}

async fn files_and_trees_round_trip_with_the_same_layout(b: &Backend) {
    let file = b.scratch("one").join("model.bin");
    write(&file, b"weights", 0o600);
    let info = b.store.put_path(&file).await.unwrap();
    assert_eq!(info.kind, ArtifactKind::File);
    assert_eq!(info.size, 7);
    assert_eq!(
        hex_of(&info.digest),
        hex::encode(Sha256::digest(b"weights"))
    );
    let hex = hex_of(&info.digest);
    assert_eq!(b.raw_bytes(&format!("sha256/{hex}")).await, b"weights");
    let meta: serde_json::Value =
        serde_json::from_slice(&b.raw_bytes(&format!("meta/{hex}.json")).await).unwrap();
    assert_eq!(meta, serde_json::json!({"kind": "file", "size": 7}));
    assert_eq!(
        b.store.stat(&info.digest).await.unwrap(),
        Some(info.clone())
    );
    let copy = b.store.materialize(&info.digest).await.unwrap();
    assert_eq!(fs::read(&copy).unwrap(), b"weights");

    let src = b.scratch("tree");
    write(&src.join("data/train.csv"), b"a,b\n1,2\n", 0o644);
    write(&src.join("bin/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    std::os::unix::fs::symlink("data/train.csv", src.join("latest.csv")).unwrap();
    let dir_info = b.store.put_path(&src).await.unwrap();
    assert_eq!(dir_info.kind, ArtifactKind::Directory);
    let out = b.store.materialize(&dir_info.digest).await.unwrap();
    assert_eq!(tree(&out), tree(&src), "{}", b.name);
    // The same tree anywhere gives the same digest.
    let again = b.scratch("tree-copy");
    write(&again.join("data/train.csv"), b"a,b\n1,2\n", 0o600);
    write(&again.join("bin/run.sh"), b"#!/bin/sh\necho hi\n", 0o700);
    std::os::unix::fs::symlink("data/train.csv", again.join("latest.csv")).unwrap();
    assert_eq!(b.store.put_path(&again).await.unwrap(), dir_info);
    // An exported copy, once.
    let exported = b.scratch("export");
    let path = b.store.export(&info.digest, &exported).await.unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"weights");
    let err = b.store.export(&info.digest, &exported).await.unwrap_err();
    assert!(matches!(err, ArtifactError::Exists { .. }), "{err}");
}

async fn identical_content_is_stored_once_even_when_written_concurrently(b: &Backend) {
    let before = b.keys("sha256").await.len();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let f = b.scratch(&format!("same-{i}")).join("f");
        write(&f, b"the same bytes from six writers", 0o644);
        let store = b.store.clone();
        tasks.push(tokio::spawn(
            async move { store.put_path(&f).await.unwrap() },
        ));
    }
    let mut digests = Vec::new();
    for t in tasks {
        digests.push(t.await.unwrap().digest);
    }
    digests.dedup();
    assert_eq!(digests.len(), 1);
    assert_eq!(b.keys("sha256").await.len(), before + 1, "{}", b.name);
    assert_eq!(b.keys("meta").await.len(), before + 1);
}

async fn large_content_streams_in_parts_and_reads_back_verified(b: &Backend) {
    // 20 MiB: above the single-put limit, so a multipart upload.
    let mut bytes = vec![0u8; 20 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let f = b.scratch("large").join("big.bin");
    write(&f, &bytes, 0o644);
    let info = b.store.put_path(&f).await.unwrap();
    assert_eq!(info.size, 20 << 20);
    assert_eq!(hex_of(&info.digest), hex::encode(Sha256::digest(&bytes)));
    let head = b
        .raw
        .head(&ObjectPath::from(format!(
            "sha256/{}",
            hex_of(&info.digest)
        )))
        .await
        .unwrap();
    assert_eq!(head.size, 20 << 20);
    let copy = b.store.materialize(&info.digest).await.unwrap();
    assert!(fs::read(copy).unwrap() == bytes, "{}", b.name);
    // Captured like a step's output (moved in on a local store, uploaded elsewhere).
    let out = b.scratch("output").join("out.bin");
    write(&out, &bytes[..1 << 20], 0o644);
    let captured = b.store.capture(&out).await.unwrap();
    assert_eq!(
        hex_of(&captured.digest),
        hex::encode(Sha256::digest(&bytes[..1 << 20]))
    );
    assert_eq!(
        b.store.read_bytes(&captured.digest, 2 << 20).await.unwrap(),
        &bytes[..1 << 20]
    );
}

async fn corrupt_or_missing_content_is_refused_and_nothing_is_cached(b: &Backend) {
    let f = b.scratch("precious").join("f");
    write(&f, b"precious bytes", 0o644);
    let info = b.store.put_path(&f).await.unwrap();
    let key = format!("sha256/{}", hex_of(&info.digest));
    let mut bytes = b.raw_bytes(&key).await;
    bytes[0] ^= 0xff;
    b.raw_put(&key, bytes).await;
    let err = b.store.materialize(&info.digest).await.unwrap_err();
    assert!(
        matches!(err, ArtifactError::Corrupt { .. }),
        "{}: {err}",
        b.name
    );
    let err = b.store.read_bytes(&info.digest, 1 << 20).await.unwrap_err();
    assert!(matches!(err, ArtifactError::Corrupt { .. }), "{err}");

    let g = b.scratch("gone").join("g");
    write(&g, b"content that will vanish", 0o644);
    let gone = b.store.put_path(&g).await.unwrap();
    b.raw
        .delete(&ObjectPath::from(format!(
            "sha256/{}",
            hex_of(&gone.digest)
        )))
        .await
        .unwrap();
    let err = b.store.materialize(&gone.digest).await.unwrap_err();
    assert!(
        matches!(err, ArtifactError::Corrupt { .. }),
        "{}: {err}",
        b.name
    );
}

async fn unknown_digests_limits_and_kinds_are_refused_clearly(b: &Backend) {
    let missing = format!("sha256:{}", "ab".repeat(32));
    let err = b.store.materialize(&missing).await.unwrap_err();
    assert!(matches!(err, ArtifactError::NotFound { .. }), "{err}");
    assert_eq!(b.store.stat(&missing).await.unwrap(), None);
    let err = b.store.materialize("sha256:nothex").await.unwrap_err();
    assert!(matches!(err, ArtifactError::InvalidDigest { .. }), "{err}");
    let f = b.scratch("limits").join("f");
    write(&f, &[7u8; 4096], 0o644);
    let info = b.store.put_path(&f).await.unwrap();
    let err = b.store.read_bytes(&info.digest, 100).await.unwrap_err();
    assert!(matches!(err, ArtifactError::TooLarge { .. }), "{err}");
    let d = b.scratch("a-dir");
    write(&d.join("x"), b"x", 0o644);
    let dir = b.store.put_path(&d).await.unwrap();
    let err = b.store.read_bytes(&dir.digest, 1 << 20).await.unwrap_err();
    assert!(matches!(err, ArtifactError::NotAFile { .. }), "{err}");
}

async fn garbage_collection_lists_removes_and_sweeps_on_every_backend(b: &Backend) {
    let f = b.scratch("gc").join("old.bin");
    write(&f, b"an artifact nothing needs any more", 0o644);
    let info = b.store.put_path(&f).await.unwrap();
    let copy = b.store.materialize(&info.digest).await.unwrap();
    assert!(copy.exists());
    let listed = b.store.list_committed().await.unwrap();
    let entry = listed.iter().find(|a| a.digest == info.digest).unwrap();
    assert_eq!(entry.kind, ArtifactKind::File);
    assert!(entry.disk_bytes >= info.size, "{}", b.name);
    let committed = b.store.committed_at(&info.digest).await.unwrap();
    assert!(committed <= std::time::SystemTime::now() + std::time::Duration::from_secs(5));
    let usage = b.store.usage().await.unwrap();
    assert_eq!(usage.artifacts, listed.len() as u64, "{}", b.name);
    assert!(usage.objects_bytes >= info.size);

    let freed = b.store.remove(&info.digest).await.unwrap();
    assert!(freed >= info.size, "{}: freed {freed}", b.name);
    assert_eq!(b.store.stat(&info.digest).await.unwrap(), None);
    let err = b.store.materialize(&info.digest).await.unwrap_err();
    assert!(matches!(err, ArtifactError::NotFound { .. }), "{err}");
    let hex = hex_of(&info.digest);
    assert!(!b.keys("sha256").await.contains(&format!("sha256/{hex}")));
    assert!(!copy.exists(), "{}: the materialized copy stays", b.name);
    assert_eq!(
        b.store.list_committed().await.unwrap().len(),
        listed.len() - 1
    );

    // Content a crash left without its meta is swept once old enough.
    let orphan = hex::encode(Sha256::digest(b"orphan"));
    b.raw_put(&format!("sha256/{orphan}"), b"orphan".to_vec())
        .await;
    let now = std::time::SystemTime::now();
    assert_eq!(
        b.store
            .sweep_uncommitted(now - std::time::Duration::from_secs(3600), false)
            .await
            .unwrap(),
        (0, 0),
        "too recent to sweep"
    );
    let later = now + std::time::Duration::from_secs(3600);
    assert_eq!(
        b.store.sweep_uncommitted(later, true).await.unwrap(),
        (1, 6)
    );
    assert!(b.keys("sha256").await.contains(&format!("sha256/{orphan}")));
    assert_eq!(
        b.store.sweep_uncommitted(later, false).await.unwrap(),
        (1, 6)
    );
    assert!(!b.keys("sha256").await.contains(&format!("sha256/{orphan}")));
    // Committed artifacts are never swept.
    assert_eq!(
        b.store.list_committed().await.unwrap().len(),
        listed.len() - 1
    );
}

async fn suite(b: Backend) {
    files_and_trees_round_trip_with_the_same_layout(&b).await;
    identical_content_is_stored_once_even_when_written_concurrently(&b).await;
    large_content_streams_in_parts_and_reads_back_verified(&b).await;
    corrupt_or_missing_content_is_refused_and_nothing_is_cached(&b).await;
    unknown_digests_limits_and_kinds_are_refused_clearly(&b).await;
    garbage_collection_lists_removes_and_sweeps_on_every_backend(&b).await;
}

#[tokio::test]
async fn on_the_local_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = ArtifactStore::open(
        &Location::Local(root.clone()),
        &dir.path().join("unused-cache"),
    )
    .unwrap();
    let raw = Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(root.join("objects")).unwrap(),
    );
    suite(Backend {
        name: "local",
        store,
        raw,
        dir,
    })
    .await;
}

#[tokio::test]
async fn in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let raw = Arc::new(object_store::memory::InMemory::new());
    let store = ArtifactStore::from_object_store(raw.clone(), &dir.path().join("cache"));
    suite(Backend {
        name: "memory",
        store,
        raw,
        dir,
    })
    .await;
}

#[tokio::test]
async fn on_s3() {
    let Some(moto) = moto::Moto::start() else {
        return;
    };
    moto.create_bucket("gantry-test");
    let env: BTreeMap<&str, String> = moto.env().into_iter().collect();
    let lookup = |k: &str| env.get(k).cloned();
    let dir = tempfile::tempdir().unwrap();
    let location = Location::parse("s3://gantry-test/team/artifacts").unwrap();
    let store =
        ArtifactStore::open_with_env(&location, &dir.path().join("cache"), &lookup).unwrap();
    let s3 = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("gantry-test")
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .build()
        .unwrap();
    // The store's objects are below its prefix; the raw view looks at the same place.
    let raw = Arc::new(object_store::prefix::PrefixStore::new(s3, "team/artifacts"));
    suite(Backend {
        name: "s3",
        store,
        raw,
        dir,
    })
    .await;

    // A bucket that does not exist: a clear error naming what failed, nothing panics.
    let missing = Location::parse("s3://no-such-bucket").unwrap();
    let store = ArtifactStore::open_with_env(&missing, &dir_for_errors(), &lookup).unwrap();
    let f = tempfile::tempdir().unwrap();
    write(&f.path().join("x"), b"x", 0o644);
    let err = store.put_path(&f.path().join("x")).await.unwrap_err();
    assert!(matches!(err, ArtifactError::ObjectStore { .. }), "{err}");
}

fn dir_for_errors() -> PathBuf {
    std::env::temp_dir().join("gantry-backends-unused-cache")
}
