//! The artifact store against the real filesystem (and object_store's in-memory backend):
//! round trips, deduplication, determinism, refusal of unsafe trees, corruption, concurrency
//! and streaming of large content.

// Helpers are plain fns, which clippy's allow-unwrap-in-tests does not cover.
#![allow(clippy::unwrap_used)]

mod support {
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use gantry_artifacts::ArtifactStore;
    use sha2::{Digest, Sha256};

    pub struct Env {
        pub dir: tempfile::TempDir,
        pub store: ArtifactStore,
    }

    impl Env {
        pub fn new() -> Env {
            let dir = tempfile::tempdir().unwrap();
            let store = ArtifactStore::open_local(&dir.path().join("store")).unwrap();
            Env { dir, store }
        }

        /// A fresh directory for inputs or outputs of the test.
        pub fn scratch(&self, name: &str) -> PathBuf {
            let p = self.dir.path().join(name);
            fs::create_dir_all(&p).unwrap();
            p
        }

        pub fn objects(&self) -> PathBuf {
            self.dir.path().join("store/objects")
        }

        pub fn materialized(&self) -> PathBuf {
            self.dir.path().join("store/materialized")
        }

        /// Number of stored contents (not metadata).
        pub fn content_count(&self) -> usize {
            match fs::read_dir(self.objects().join("sha256")) {
                Ok(rd) => rd.count(),
                Err(_) => 0,
            }
        }
    }

    pub fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    pub fn hex_of(digest: &str) -> &str {
        digest.strip_prefix("sha256:").unwrap()
    }

    pub fn write(path: &Path, data: &[u8], mode: u32) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, data).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[derive(Debug, PartialEq, Eq)]
    pub enum Node {
        Dir { mode: u32 },
        File { mode: u32, data: Vec<u8> },
        Link { target: PathBuf },
    }

    /// Everything under `root` (not following symlinks), keyed by relative path.
    pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
        let mut out = BTreeMap::new();
        for e in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().to_owned();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                Node::Link {
                    target: fs::read_link(e.path()).unwrap(),
                }
            } else if meta.is_dir() {
                Node::Dir { mode }
            } else {
                Node::File {
                    mode,
                    data: fs::read(e.path()).unwrap(),
                }
            };
            out.insert(rel, node);
        }
        out
    }

    pub fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Entries left in a directory (to check that failures leave nothing behind).
    pub fn entries(dir: &Path) -> Vec<String> {
        match fs::read_dir(dir) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

mod files {
    use std::fs;

    use gantry_artifacts::{ArtifactError, ArtifactKind};

    use crate::support::*;

    #[tokio::test]
    async fn a_file_round_trips_through_put_materialize_export_and_read() {
        let env = Env::new();
        let src = env.scratch("src").join("model.bin");
        let data = b"weights \x00\x01\x02 and more".repeat(1000);
        // A private, executable source: the stored copy is readable by anyone, the bits are
        // what count.
        write(&src, &data, 0o700);

        let info = env.store.put_path(&src).await.unwrap();
        assert_eq!(info.digest, format!("sha256:{}", sha256_hex(&data)));
        assert_eq!(info.kind, ArtifactKind::File);
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(
            env.store.stat(&info.digest).await.unwrap(),
            Some(info.clone())
        );

        let local = env.store.materialize(&info.digest).await.unwrap();
        assert_eq!(local, env.materialized().join(hex_of(&info.digest)));
        assert_eq!(fs::read(&local).unwrap(), data);
        assert_eq!(mode_of(&local), 0o644);
        // Materializing again returns the cached copy.
        assert_eq!(env.store.materialize(&info.digest).await.unwrap(), local);

        let out = env.scratch("out");
        let exported = env.store.export(&info.digest, &out).await.unwrap();
        assert_eq!(exported, out.join(&hex_of(&info.digest)[..12]));
        assert_eq!(fs::read(&exported).unwrap(), data);
        let err = env.store.export(&info.digest, &out).await.unwrap_err();
        assert!(matches!(err, ArtifactError::Exists { .. }), "{err}");
        assert!(
            err.to_string().contains(&hex_of(&info.digest)[..12]),
            "{err}"
        );
        assert_eq!(entries(&out).len(), 1, "no staging file left behind");

        // Bare hex works as well as the prefixed form.
        let bytes = env
            .store
            .read_bytes(hex_of(&info.digest), data.len() as u64)
            .await
            .unwrap();
        assert_eq!(bytes, data);
        let err = env.store.read_bytes(&info.digest, 10).await.unwrap_err();
        assert!(matches!(err, ArtifactError::TooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn an_empty_file_is_an_artifact() {
        let env = Env::new();
        let src = env.scratch("src").join("empty");
        write(&src, b"", 0o644);
        let info = env.store.put_path(&src).await.unwrap();
        assert_eq!(info.digest, format!("sha256:{}", sha256_hex(b"")));
        let local = env.store.materialize(&info.digest).await.unwrap();
        assert_eq!(fs::read(local).unwrap(), b"");
    }

    #[tokio::test]
    async fn unknown_and_malformed_digests_are_reported() {
        let env = Env::new();
        let unknown = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(env.store.stat(&unknown).await.unwrap(), None);
        let err = env.store.materialize(&unknown).await.unwrap_err();
        assert!(matches!(err, ArtifactError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains(&unknown), "{err}");
        let err = env.store.read_bytes(&unknown, 10).await.unwrap_err();
        assert!(matches!(err, ArtifactError::NotFound { .. }), "{err}");

        for bad in ["sha256:xyz", "../../etc/passwd", "sha256:../../x"] {
            let err = env.store.materialize(bad).await.unwrap_err();
            assert!(
                matches!(err, ArtifactError::InvalidDigest { .. }),
                "{bad}: {err}"
            );
        }
        assert!(entries(&env.materialized()).is_empty());
    }

    #[tokio::test]
    async fn a_missing_path_names_it() {
        let env = Env::new();
        let missing = env.dir.path().join("nope");
        let err = env.store.put_path(&missing).await.unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}

mod directories {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, SystemTime};

    use gantry_artifacts::{ArtifactError, ArtifactKind};

    use crate::support::*;

    /// A tree with everything a step's output directory can hold.
    fn build_tree(root: &Path) {
        write(&root.join("data/train.csv"), b"a,b\n1,2\n", 0o600);
        write(&root.join("data/test.csv"), b"a,b\n3,4\n", 0o644);
        write(&root.join("bin/run.sh"), b"#!/bin/sh\necho hi\n", 0o750);
        fs::create_dir_all(root.join("empty/nested-empty")).unwrap();
        let long = "x".repeat(120);
        write(
            &root.join(format!("deep/{long}/{long}.txt")),
            b"long",
            0o644,
        );
        symlink("train.csv", root.join("data/latest.csv")).unwrap();
        symlink("../data", root.join("bin/data")).unwrap();
        symlink("data/./../bin/run.sh", root.join("run")).unwrap();
        symlink("missing-target", root.join("dangling")).unwrap();
    }

    fn expected_modes(root: &Path) -> Vec<(PathBuf, u32)> {
        [
            ("data", 0o755),
            ("data/train.csv", 0o644),
            ("data/test.csv", 0o644),
            ("bin", 0o755),
            ("bin/run.sh", 0o755),
            ("empty", 0o755),
            ("empty/nested-empty", 0o755),
        ]
        .into_iter()
        .map(|(p, m)| (root.join(p), m))
        .collect()
    }

    #[tokio::test]
    async fn a_tree_round_trips_with_modes_empty_dirs_and_symlinks() {
        let env = Env::new();
        let src = env.scratch("src");
        build_tree(&src);

        let info = env.store.put_path(&src).await.unwrap();
        assert_eq!(info.kind, ArtifactKind::Directory);
        assert!(info.size > 0);

        let local = env.store.materialize(&info.digest).await.unwrap();
        assert_eq!(local, env.materialized().join(hex_of(&info.digest)));
        assert_eq!(mode_of(&local), 0o755);
        for (path, mode) in expected_modes(&local) {
            assert_eq!(mode_of(&path), mode, "{}", path.display());
        }
        let got = snapshot(&local);
        let want = snapshot(&src);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (rel, node) in &got {
            match (node, &want[rel]) {
                (Node::File { data: a, .. }, Node::File { data: b, .. }) => assert_eq!(a, b),
                (Node::Dir { .. }, Node::Dir { .. }) => {}
                (a, b) => assert_eq!(a, b, "{}", rel.display()),
            }
        }
        assert_eq!(
            fs::read(local.join("bin/data/latest.csv")).unwrap(),
            b"a,b\n1,2\n"
        );

        let out = env.scratch("out");
        let exported = env.store.export(&info.digest, &out).await.unwrap();
        assert_eq!(exported, out.join(&hex_of(&info.digest)[..12]));
        assert_eq!(snapshot(&exported), got);
        assert_eq!(mode_of(&exported), 0o755);
        let err = env.store.export(&info.digest, &out).await.unwrap_err();
        assert!(matches!(err, ArtifactError::Exists { .. }), "{err}");
        assert_eq!(entries(&out).len(), 1);

        let err = env
            .store
            .read_bytes(&info.digest, u64::MAX)
            .await
            .unwrap_err();
        assert!(matches!(err, ArtifactError::NotAFile { .. }), "{err}");

        // The stored tree itself is what a put of the materialized copy gives back.
        let again = env.store.put_path(&local).await.unwrap();
        assert_eq!(again, info);
    }

    #[tokio::test]
    async fn an_empty_directory_is_an_artifact() {
        let env = Env::new();
        let src = env.scratch("empty");
        let info = env.store.put_path(&src).await.unwrap();
        assert_eq!(info.kind, ArtifactKind::Directory);
        let local = env.store.materialize(&info.digest).await.unwrap();
        assert!(snapshot(&local).is_empty());
    }

    #[tokio::test]
    async fn digest_ignores_mtimes_creation_order_and_non_exec_mode_bits() {
        let env = Env::new();
        let a = env.scratch("a");
        write(&a.join("x/1.txt"), b"one", 0o644);
        write(&a.join("x/2.txt"), b"two", 0o644);
        write(&a.join("y.sh"), b"run", 0o755);
        fs::create_dir(a.join("z")).unwrap();

        // Same tree, created in the opposite order, other mtimes and permission bits.
        let b = env.scratch("b");
        fs::create_dir(b.join("z")).unwrap();
        write(&b.join("y.sh"), b"run", 0o700);
        write(&b.join("x/2.txt"), b"two", 0o600);
        write(&b.join("x/1.txt"), b"one", 0o400);
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for f in ["x/1.txt", "x/2.txt", "y.sh"] {
            fs::File::options()
                .write(true)
                .open(b.join(f))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }

        let da = env.store.put_path(&a).await.unwrap().digest;
        let db = env.store.put_path(&b).await.unwrap().digest;
        assert_eq!(da, db);
        assert_eq!(env.content_count(), 1);

        // But the exec bit, content, names and empty directories all count.
        fs::set_permissions(b.join("y.sh"), fs::Permissions::from_mode(0o644)).unwrap();
        let no_exec = env.store.put_path(&b).await.unwrap().digest;
        assert_ne!(no_exec, da);
        fs::set_permissions(b.join("y.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(env.store.put_path(&b).await.unwrap().digest, da);
        fs::create_dir(b.join("z/new-empty")).unwrap();
        assert_ne!(env.store.put_path(&b).await.unwrap().digest, da);
        write(&a.join("x/1.txt"), b"ONE", 0o644);
        assert_ne!(env.store.put_path(&a).await.unwrap().digest, da);
    }

    use std::os::unix::fs::PermissionsExt;

    #[tokio::test]
    async fn escaping_and_absolute_symlinks_are_rejected_by_name() {
        let env = Env::new();
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("absolute", &[("sub/passwd", "/etc/passwd")]),
            ("parent", &[("sub/up", "../../outside")]),
            ("via-self", &[("me", "."), ("sub/sneaky", "../me/..")]),
        ];
        for (name, links) in cases {
            let src = env.scratch(name);
            write(&src.join("sub/ok.txt"), b"ok", 0o644);
            for (link, target) in *links {
                symlink(target, src.join(link)).unwrap();
            }
            let bad = links.last().unwrap().0;
            let err = env.store.put_path(&src).await.unwrap_err();
            assert!(
                matches!(err, ArtifactError::UnsafeSymlink { .. }),
                "{name}: {err}"
            );
            assert!(err.to_string().contains(bad), "{name}: {err}");
        }
        assert_eq!(env.content_count(), 0);
    }

    #[tokio::test]
    async fn a_top_level_symlink_is_rejected() {
        let env = Env::new();
        let real_dir = env.scratch("real");
        write(&real_dir.join("f"), b"x", 0o644);
        let links = env.scratch("links");
        symlink(&real_dir, links.join("to-dir")).unwrap();
        symlink(real_dir.join("f"), links.join("to-file")).unwrap();
        for link in ["to-dir", "to-file"] {
            let err = env.store.put_path(&links.join(link)).await.unwrap_err();
            assert!(
                matches!(err, ArtifactError::TopLevelSymlink { .. }),
                "{err}"
            );
            assert!(err.to_string().contains(link), "{err}");
        }
    }

    #[tokio::test]
    async fn fifos_and_sockets_are_rejected() {
        let env = Env::new();
        let src = env.scratch("special");
        write(&src.join("ok"), b"x", 0o644);
        let status = std::process::Command::new("mkfifo")
            .arg(src.join("pipe"))
            .status()
            .unwrap();
        assert!(status.success());
        let err = env.store.put_path(&src).await.unwrap_err();
        assert!(matches!(err, ArtifactError::SpecialFile { .. }), "{err}");
        assert!(
            err.to_string().contains("pipe") && err.to_string().contains("fifo"),
            "{err}"
        );
        // A fifo as the top-level path, too (and the put must not block opening it).
        let err = env.store.put_path(&src.join("pipe")).await.unwrap_err();
        assert!(matches!(err, ArtifactError::SpecialFile { .. }), "{err}");

        let sock_dir = env.scratch("sock");
        let _listener = std::os::unix::net::UnixListener::bind(sock_dir.join("s")).unwrap();
        let err = env.store.put_path(&sock_dir).await.unwrap_err();
        assert!(err.to_string().contains("socket"), "{err}");
        assert_eq!(env.content_count(), 0);
    }
}

mod storage {
    use std::fs;
    use std::sync::Arc;

    use gantry_artifacts::{ArtifactError, ArtifactStore};
    use object_store::memory::InMemory;
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStoreExt, PutPayload};

    use crate::support::*;

    #[tokio::test]
    async fn identical_content_is_stored_once() {
        let env = Env::new();
        let a = env.scratch("a").join("f");
        let b = env.scratch("b").join("g");
        write(&a, b"same bytes", 0o644);
        write(&b, b"same bytes", 0o600);
        let first = env.store.put_path(&a).await.unwrap();
        let objects_before = snapshot(&env.objects());
        let second = env.store.put_path(&b).await.unwrap();
        let third = env.store.put_path(&a).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(first, third);
        assert_eq!(env.content_count(), 1);
        assert_eq!(entries(&env.objects().join("meta")).len(), 1);
        // The second and third puts found the metadata and rewrote nothing.
        assert_eq!(snapshot(&env.objects()), objects_before);

        write(&b, b"other bytes", 0o644);
        assert_ne!(env.store.put_path(&b).await.unwrap(), first);
        assert_eq!(env.content_count(), 2);
    }

    #[tokio::test]
    async fn corrupted_content_is_detected_and_leaves_nothing_behind() {
        let env = Env::new();
        let file = env.scratch("f").join("f");
        write(&file, b"precious model", 0o644);
        let tree = env.scratch("t");
        write(&tree.join("a/b.txt"), b"precious tree", 0o644);
        let file_info = env.store.put_path(&file).await.unwrap();
        let tree_info = env.store.put_path(&tree).await.unwrap();

        for (info, how) in [
            (&file_info, "flip"),
            (&tree_info, "flip"),
            (&file_info, "truncate"),
        ] {
            let content = env.objects().join("sha256").join(hex_of(&info.digest));
            let mut bytes = fs::read(&content).unwrap();
            match how {
                "flip" => bytes[0] ^= 0xff,
                _ => bytes.truncate(bytes.len() - 1),
            }
            fs::write(&content, &bytes).unwrap();
            let err = env.store.materialize(&info.digest).await.unwrap_err();
            assert!(matches!(err, ArtifactError::Corrupt { .. }), "{how}: {err}");
            assert!(err.to_string().contains(&info.digest), "{err}");
            assert!(
                entries(&env.materialized()).is_empty(),
                "left behind: {:?}",
                entries(&env.materialized())
            );
        }
        let err = env
            .store
            .read_bytes(&file_info.digest, 1 << 20)
            .await
            .unwrap_err();
        assert!(matches!(err, ArtifactError::Corrupt { .. }), "{err}");

        // Content gone while its metadata says committed.
        fs::remove_file(env.objects().join("sha256").join(hex_of(&tree_info.digest))).unwrap();
        let err = env.store.materialize(&tree_info.digest).await.unwrap_err();
        assert!(matches!(err, ArtifactError::Corrupt { .. }), "{err}");
        assert!(entries(&env.materialized()).is_empty());
    }

    #[tokio::test]
    async fn any_object_store_backend_works() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(InMemory::new());
        let store = ArtifactStore::from_object_store(memory.clone(), &dir.path().join("cache"));
        let src = dir.path().join("src");
        write(&src.join("x/y.txt"), b"hello", 0o644);
        let info = store.put_path(&src).await.unwrap();
        let hex = hex_of(&info.digest).to_owned();
        let meta = memory
            .get(&ObjectPath::from(format!("meta/{hex}.json")))
            .await
            .unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&meta.bytes().await.unwrap()).unwrap();
        assert_eq!(
            meta,
            serde_json::json!({"kind": "directory", "size": info.size})
        );

        let local = store.materialize(&info.digest).await.unwrap();
        assert_eq!(fs::read(local.join("x/y.txt")).unwrap(), b"hello");

        // A crafted tar stored under its own, correct digest is still unpacked with checks.
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_path("escape").unwrap();
        h.set_link_name("../../../../etc").unwrap();
        h.set_cksum();
        builder.append(&h, std::io::empty()).unwrap();
        let evil = builder.into_inner().unwrap();
        let evil_hex = sha256_hex(&evil);
        let size = evil.len();
        memory
            .put(
                &ObjectPath::from(format!("sha256/{evil_hex}")),
                PutPayload::from(evil),
            )
            .await
            .unwrap();
        let meta = format!(r#"{{"kind":"directory","size":{size}}}"#);
        memory
            .put(
                &ObjectPath::from(format!("meta/{evil_hex}.json")),
                PutPayload::from(meta),
            )
            .await
            .unwrap();
        let err = store.materialize(&evil_hex).await.unwrap_err();
        assert!(matches!(err, ArtifactError::UnsafeEntry { .. }), "{err}");
        assert!(err.to_string().contains("escape"), "{err}");
        let left: Vec<_> = entries(&dir.path().join("cache"))
            .into_iter()
            .filter(|e| e != &hex)
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

mod scale {
    use std::fs;
    use std::io::{Read, Write};

    use gantry_artifacts::ArtifactKind;
    use sha2::{Digest, Sha256};

    use crate::support::*;

    const MIB: usize = 1 << 20;

    /// 64 MiB where every MiB differs, so reordered or dropped chunks change the digest.
    fn write_large(path: &std::path::Path, mib: usize) -> String {
        let mut file = fs::File::create(path).unwrap();
        let mut hasher = Sha256::new();
        let mut block = vec![0u8; MIB];
        for i in 0..mib {
            block
                .iter_mut()
                .enumerate()
                .for_each(|(j, b)| *b = (i * 31 + j / 4096) as u8);
            file.write_all(&block).unwrap();
            hasher.update(&block);
        }
        hex::encode(hasher.finalize())
    }

    fn file_sha256(path: &std::path::Path) -> String {
        let mut f = fs::File::open(path).unwrap();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; MIB];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        hex::encode(hasher.finalize())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_file_streams_through_multipart_upload() {
        // The local object store, with every upload counted on its way through.
        let env = Env::new();
        let counted = std::sync::Arc::new(crate::counting::Counting::new(
            object_store::local::LocalFileSystem::new_with_prefix(env.objects()).unwrap(),
        ));
        let store = gantry_artifacts::ArtifactStore::from_object_store(
            counted.clone(),
            &env.materialized(),
        );
        let src = env.scratch("big").join("weights.bin");
        let expected = write_large(&src, 64);
        let info = store.put_path(&src).await.unwrap();
        let content = format!("sha256/{expected}");
        let uploads = counted.uploads();
        assert_eq!(
            uploads
                .single_puts
                .iter()
                .filter(|p| **p == content)
                .count(),
            0,
            "64 MiB went up in one put: {uploads:?}"
        );
        let parts = uploads.parts_of(&content);
        assert!(
            parts.len() > 1 && parts.iter().all(|n| *n <= 8 << 20),
            "64 MiB should stream as several parts of at most 8 MiB: {uploads:?}"
        );
        assert_eq!(parts.iter().sum::<usize>(), 64 * MIB);
        assert_eq!(info.digest, format!("sha256:{expected}"));
        assert_eq!(info.size, 64 * MIB as u64);
        assert_eq!(info.kind, ArtifactKind::File);
        let stored = env.objects().join("sha256").join(&expected);
        assert_eq!(fs::metadata(&stored).unwrap().len(), 64 * MIB as u64);
        assert_eq!(file_sha256(&stored), expected);
        let local = store.materialize(&info.digest).await.unwrap();
        assert_eq!(file_sha256(&local), expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_puts_and_materializes_of_the_same_content_agree() {
        let env = Env::new();
        // Big enough to take the multipart path, in a tree.
        let tree = env.scratch("tree");
        write_large(&tree.join("big.bin"), 10);
        write(&tree.join("small.txt"), b"small", 0o644);
        let small = env.scratch("single").join("f");
        write(&small, b"small file", 0o644);

        let mut puts = Vec::new();
        for i in 0..6 {
            let store = env.store.clone();
            let path = if i % 2 == 0 {
                tree.clone()
            } else {
                small.clone()
            };
            puts.push(tokio::spawn(
                async move { store.put_path(&path).await.unwrap() },
            ));
        }
        let mut infos = Vec::new();
        for p in puts {
            infos.push(p.await.unwrap());
        }
        assert!(infos.iter().step_by(2).all(|i| i == &infos[0]));
        assert!(infos.iter().skip(1).step_by(2).all(|i| i == &infos[1]));
        assert_eq!(env.content_count(), 2);
        assert!(
            entries(&env.objects().join("sha256"))
                .iter()
                .all(|e| e.len() == 64),
            "staging files left: {:?}",
            entries(&env.objects().join("sha256"))
        );

        let mut mats = Vec::new();
        for i in 0..6 {
            let store = env.store.clone();
            let digest = infos[i % 2].digest.clone();
            mats.push(tokio::spawn(async move {
                store.materialize(&digest).await.unwrap()
            }));
        }
        for (i, m) in mats.into_iter().enumerate() {
            let path = m.await.unwrap();
            assert_eq!(path, env.materialized().join(hex_of(&infos[i % 2].digest)));
        }
        let tree_copy = env.materialized().join(hex_of(&infos[0].digest));
        assert_eq!(fs::read(tree_copy.join("small.txt")).unwrap(), b"small");
        assert_eq!(
            file_sha256(&tree_copy.join("big.bin")),
            file_sha256(&tree.join("big.bin"))
        );
        let mut left = entries(&env.materialized());
        left.sort();
        let mut want = vec![
            hex_of(&infos[0].digest).to_owned(),
            hex_of(&infos[1].digest).to_owned(),
        ];
        want.sort();
        assert_eq!(left, want, "temp entries left in the cache");
    }
}

/// An object store wrapper that records what was uploaded: single puts by location, and the
/// size of every part of every multipart upload.
mod counting {
    use std::fmt;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use futures::stream::BoxStream;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
    };

    #[derive(Clone, Debug, Default)]
    pub struct Uploads {
        /// Locations written with one put.
        pub single_puts: Vec<String>,
        /// (location, part sizes in the order they were handed over) per multipart upload.
        pub multipart: Vec<(String, Arc<Mutex<Vec<usize>>>)>,
    }

    impl Uploads {
        /// The part sizes of the multipart uploads to `location`, all together.
        pub fn parts_of(&self, location: &str) -> Vec<usize> {
            self.multipart
                .iter()
                .filter(|(l, _)| l == location)
                .flat_map(|(_, parts)| parts.lock().unwrap().clone())
                .collect()
        }
    }

    #[derive(Debug)]
    pub struct Counting<S> {
        inner: S,
        uploads: Mutex<Uploads>,
    }

    impl<S> Counting<S> {
        pub fn new(inner: S) -> Counting<S> {
            Counting {
                inner,
                uploads: Mutex::default(),
            }
        }

        pub fn uploads(&self) -> Uploads {
            self.uploads.lock().unwrap().clone()
        }
    }

    impl<S: fmt::Display> fmt::Display for Counting<S> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Counting({})", self.inner)
        }
    }

    #[derive(Debug)]
    struct CountedUpload {
        inner: Box<dyn MultipartUpload>,
        parts: Arc<Mutex<Vec<usize>>>,
    }

    #[async_trait]
    impl MultipartUpload for CountedUpload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            self.parts.lock().unwrap().push(data.content_length());
            self.inner.put_part(data)
        }

        async fn complete(&mut self) -> Result<PutResult> {
            self.inner.complete().await
        }

        async fn abort(&mut self) -> Result<()> {
            self.inner.abort().await
        }
    }

    #[async_trait]
    impl<S: ObjectStore> ObjectStore for Counting<S> {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> Result<PutResult> {
            self.uploads
                .lock()
                .unwrap()
                .single_puts
                .push(location.to_string());
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            let parts = Arc::default();
            self.uploads
                .lock()
                .unwrap()
                .multipart
                .push((location.to_string(), Arc::clone(&parts)));
            Ok(Box::new(CountedUpload { inner, parts }))
        }

        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        async fn get_ranges(
            &self,
            location: &Path,
            ranges: &[std::ops::Range<u64>],
        ) -> Result<Vec<bytes::Bytes>> {
            self.inner.get_ranges(location, ranges).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        fn list_with_offset(
            &self,
            prefix: Option<&Path>,
            offset: &Path,
        ) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list_with_offset(prefix, offset)
        }

        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.inner.copy_opts(from, to, options).await
        }

        async fn rename_opts(
            &self,
            from: &Path,
            to: &Path,
            options: object_store::RenameOptions,
        ) -> Result<()> {
            self.inner.rename_opts(from, to, options).await
        }
    }
}

/// A step's outputs are captured without copies: a file is moved in (same inode) and is
/// then its own materialized copy; a directory is packed once; everything reads back as
/// `put_path` would have stored it.
mod capture {
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    use gantry_artifacts::ArtifactKind;

    use crate::support::*;

    #[tokio::test]
    async fn a_file_output_is_moved_in_and_is_its_own_cached_copy() {
        let env = Env::new();
        let out = env.scratch("outputs");
        let data = vec![7u8; 3 << 20];
        write(&out.join("model.bin"), &data, 0o600);
        let ino = fs::metadata(out.join("model.bin")).unwrap().ino();

        let info = env.store.capture(&out.join("model.bin")).await.unwrap();
        assert_eq!(info.kind, ArtifactKind::File);
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(hex_of(&info.digest), sha256_hex(&data));
        assert!(!out.join("model.bin").exists(), "the output was moved away");
        let stored = env.objects().join("sha256").join(hex_of(&info.digest));
        let meta = fs::metadata(&stored).unwrap();
        assert_eq!(meta.ino(), ino, "stored without a copy");
        assert_eq!(mode_of(&stored), 0o644);
        // The next step's input: the same inode again, no download.
        let cached = env.store.materialize(&info.digest).await.unwrap();
        assert_eq!(fs::metadata(&cached).unwrap().ino(), ino);
        assert_eq!(fs::read(&cached).unwrap(), data);
        assert_eq!(
            env.store.stat(&info.digest).await.unwrap(),
            Some(info.clone())
        );

        // The same bytes again: already stored, nothing added.
        write(&out.join("again.bin"), &data, 0o644);
        let again = env.store.capture(&out.join("again.bin")).await.unwrap();
        assert_eq!(again, info);
        assert_eq!(env.content_count(), 1);
    }

    #[tokio::test]
    async fn a_file_with_other_links_is_copied_and_left_alone() {
        let env = Env::new();
        let out = env.scratch("outputs");
        write(&out.join("a"), b"shared bytes", 0o644);
        fs::hard_link(out.join("a"), out.join("b")).unwrap();
        let info = env.store.capture(&out.join("a")).await.unwrap();
        assert_eq!(hex_of(&info.digest), sha256_hex(b"shared bytes"));
        let stored = env.objects().join("sha256").join(hex_of(&info.digest));
        assert_ne!(
            fs::metadata(&stored).unwrap().ino(),
            fs::metadata(out.join("b")).unwrap().ino(),
            "the other name cannot reach the stored bytes"
        );
        assert_eq!(fs::read(out.join("b")).unwrap(), b"shared bytes");
        // A later write through the other name changes nothing stored.
        fs::write(out.join("b"), b"changed").unwrap();
        let cached = env.store.materialize(&info.digest).await.unwrap();
        assert_eq!(fs::read(cached).unwrap(), b"shared bytes");
    }

    #[tokio::test]
    async fn a_directory_output_is_packed_once_to_the_digest_put_path_gives() {
        let env = Env::new();
        let tree = env.scratch("tree");
        write(&tree.join("a/b.txt"), b"hello", 0o644);
        write(&tree.join("run.sh"), b"#!/bin/sh\n", 0o755);
        std::os::unix::fs::symlink("a/b.txt", tree.join("link")).unwrap();
        let expected = snapshot(&tree);

        let other = Env::new();
        let via_put = other.store.put_path(&tree).await.unwrap();
        let info = env.store.capture(&tree).await.unwrap();
        assert_eq!(info, via_put);
        assert!(entries(&env.dir.path().join("store/tmp")).is_empty());
        let cached = env.store.materialize(&info.digest).await.unwrap();
        assert_eq!(snapshot(&cached), expected);
    }

    #[tokio::test]
    async fn a_corrupted_object_is_caught_when_materialized_in_place() {
        let env = Env::new();
        let src = env.scratch("src");
        write(&src.join("f"), b"original", 0o644);
        // put_path (not capture) so that no cached copy exists yet.
        let info = env.store.put_path(&src.join("f")).await.unwrap();
        let stored = env.objects().join("sha256").join(hex_of(&info.digest));
        fs::write(&stored, b"tampered").unwrap();
        let err = env.store.materialize(&info.digest).await.unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert!(
            entries(&env.materialized()).is_empty(),
            "{:?}",
            entries(&env.materialized())
        );

        let tree = env.scratch("tree");
        write(&tree.join("x"), b"tree bytes", 0o644);
        let dir = env.store.put_path(&tree).await.unwrap();
        let stored = env.objects().join("sha256").join(hex_of(&dir.digest));
        let mut tar = fs::read(&stored).unwrap();
        let at = tar.windows(10).position(|w| w == b"tree bytes").unwrap();
        tar[at] = b'T';
        fs::write(&stored, tar).unwrap();
        let err = env.store.materialize(&dir.digest).await.unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert!(
            entries(&env.materialized()).is_empty(),
            "{:?}",
            entries(&env.materialized())
        );
    }
}

/// What gc uses: listing committed artifacts, removing one (meta first), sweeping content a
/// crash left uncommitted, and the disk use of each part.
mod gc {
    use std::fs;
    use std::time::{Duration, SystemTime};

    use crate::support::*;

    #[tokio::test]
    async fn artifacts_are_listed_removed_and_uncommitted_content_swept() {
        let env = Env::new();
        let out = env.scratch("outputs");
        write(&out.join("f"), &[5u8; 4096], 0o644);
        let file = env.store.capture(&out.join("f")).await.unwrap();
        let tree = env.scratch("tree");
        write(&tree.join("x"), b"tree", 0o644);
        let dir = env.store.put_path(&tree).await.unwrap();
        env.store.materialize(&dir.digest).await.unwrap();

        let listed = env.store.list_local().unwrap();
        assert_eq!(listed.len(), 2);
        let f = listed.iter().find(|a| a.digest == file.digest).unwrap();
        // The captured file and its cached copy are one inode: counted once.
        assert_eq!(f.disk_bytes, 4096);
        assert!(env.store.committed_at_local(&file.digest).unwrap() <= SystemTime::now());
        let usage = env.store.usage_local().unwrap();
        assert_eq!(usage.artifacts, 2);
        assert!(usage.cache_bytes >= 4, "the unpacked tree: {usage:?}");

        // Removing: meta first, then content and cache; the artifact is gone for every reader.
        assert_eq!(env.store.remove_local(&dir.digest).unwrap(), dir.size + 4);
        assert_eq!(env.store.stat(&dir.digest).await.unwrap(), None);
        assert!(env.store.materialize(&dir.digest).await.is_err());
        assert!(!env.materialized().join(hex_of(&dir.digest)).exists());
        assert!(entries(&env.dir.path().join("store/tmp")).is_empty());
        assert_eq!(env.store.list_local().unwrap().len(), 1);

        // Content without meta (a crash between storing and committing), older than the
        // cutoff, is swept; newer content is left to the capture that may still commit it.
        let stray = env.objects().join("sha256").join("ee".repeat(32));
        fs::write(&stray, [1u8; 100]).unwrap();
        let later = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(
            env.store
                .sweep_uncommitted_local(SystemTime::UNIX_EPOCH, false)
                .unwrap(),
            (0, 0)
        );
        assert_eq!(
            env.store.sweep_uncommitted_local(later, true).unwrap(),
            (1, 100)
        );
        assert!(stray.exists());
        assert_eq!(
            env.store.sweep_uncommitted_local(later, false).unwrap(),
            (1, 100)
        );
        assert!(!stray.exists());
        // Committed content is never swept.
        assert!(
            env.objects()
                .join("sha256")
                .join(hex_of(&file.digest))
                .exists()
        );
    }
}
