//! Inputs named by remote users: confined reads below a data root (`put_confined`) and
//! verified uploads (`put_stream`, fed by `digest_path`/`canonical_body`). Every refusal is
//! checked to leave nothing in the store.

// Helpers are plain fns, which clippy's allow-unwrap-in-tests does not cover.
#![allow(clippy::unwrap_used)]

#[path = "../../../testing/skip.rs"]
mod skip;

mod support {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use gantry_artifacts::{ArtifactStore, Confined};
    use sha2::{Digest, Sha256};

    pub struct Env {
        pub dir: tempfile::TempDir,
        pub store: ArtifactStore,
        /// The data root: `<dir>/data`.
        pub root: PathBuf,
    }

    impl Env {
        pub fn new() -> Env {
            let dir = tempfile::tempdir().unwrap();
            // Traversable by other users, for the read-as tests.
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
            let store = ArtifactStore::open_local(&dir.path().join("store")).unwrap();
            let root = dir.path().join("data");
            fs::create_dir(&root).unwrap();
            Env { dir, store, root }
        }

        /// A directory outside the data root, on the same filesystem.
        pub fn outside(&self) -> PathBuf {
            let p = self.dir.path().join("outside");
            fs::create_dir_all(&p).unwrap();
            p
        }

        pub fn confined(&self, rel: &str) -> Confined {
            Confined {
                root: self.root.clone(),
                rel: PathBuf::from(rel),
                read_as: None,
            }
        }

        /// Every file under the store's objects (content, metadata, multipart staging).
        pub fn stored_files(&self) -> Vec<PathBuf> {
            let objects = self.dir.path().join("store/objects");
            walkdir::WalkDir::new(objects)
                .into_iter()
                .map(|e| e.unwrap())
                .filter(|e| !e.file_type().is_dir())
                .map(|e| e.path().to_owned())
                .collect()
        }

        pub fn assert_nothing_stored(&self, what: &str) {
            assert_eq!(self.stored_files(), Vec::<PathBuf>::new(), "{what}");
        }
    }

    pub fn write(path: &Path, data: &[u8], mode: u32) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, data).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn sha256_digest(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    pub fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }
}

mod confined_reads {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use gantry_artifacts::{ArtifactError, ArtifactKind, Confined};

    use crate::support::*;

    /// Nested directories, exec bits, an empty directory, inside symlinks, names whose
    /// bytewise order differs from a whole-path order, a long name and a large file.
    fn build_tree(dir: &Path) {
        write(&dir.join("README"), b"read me", 0o644);
        write(&dir.join("bin/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
        write(&dir.join("a/z"), b"a/z", 0o600);
        write(&dir.join("a.b"), b"a.b", 0o644);
        write(&dir.join("a-c/x"), b"a-c/x", 0o644);
        write(&dir.join("B"), b"upper", 0o644);
        write(
            &dir.join(format!("long/{}", "n".repeat(150))),
            b"long",
            0o644,
        );
        fs::create_dir_all(dir.join("empty")).unwrap();
        symlink("../README", dir.join("bin/readme")).unwrap();
        symlink("bin", dir.join("tools")).unwrap();
        symlink("missing/file", dir.join("dangling")).unwrap();
    }

    #[tokio::test]
    async fn a_confined_file_and_tree_have_the_digest_put_path_gives() {
        let env = Env::new();
        build_tree(&env.root.join("inputs/tree"));
        write(&env.root.join("inputs/file.csv"), b"a,b\n1,2\n", 0o644);
        for rel in ["inputs/tree", "inputs/file.csv", "./inputs/./tree", "", "."] {
            let confined = env.store.put_confined(&env.confined(rel)).await.unwrap();
            let by_path = env.store.put_path(&env.root.join(rel)).await.unwrap();
            assert_eq!(confined, by_path, "{rel}");
        }
        let tree = env
            .store
            .put_confined(&env.confined("inputs/tree"))
            .await
            .unwrap();
        assert_eq!(tree.kind, ArtifactKind::Directory);
        // What was stored is the tree itself.
        let local = env.store.materialize(&tree.digest).await.unwrap();
        assert_eq!(fs::read(local.join("bin/readme")).unwrap(), b"read me");
        assert_eq!(
            fs::read_link(local.join("tools")).unwrap(),
            Path::new("bin")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_confined_input_streams_through_multipart_upload() {
        let env = Env::new();
        let big: Vec<u8> = (0..(9 << 20)).map(|i: u32| (i / 4093) as u8).collect();
        write(&env.root.join("big/weights.bin"), &big, 0o644);
        write(&env.root.join("big/small"), b"small", 0o644);
        let confined = env.store.put_confined(&env.confined("big")).await.unwrap();
        let by_path = env.store.put_path(&env.root.join("big")).await.unwrap();
        assert_eq!(confined, by_path);
        let file = env
            .store
            .put_confined(&env.confined("big/weights.bin"))
            .await
            .unwrap();
        assert_eq!(file.digest, sha256_digest(&big));
        assert_eq!(
            env.store.read_bytes(&file.digest, 10 << 20).await.unwrap(),
            big
        );
    }

    fn assert_escape(err: &ArtifactError, rel: &str, why: &str) {
        assert!(
            matches!(err, ArtifactError::Escape { rel: r, .. } if r == Path::new(rel)),
            "{rel}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(rel) && msg.contains(why), "{rel}: {msg}");
    }

    #[tokio::test]
    async fn parent_references_are_refused_even_when_they_stay_inside() {
        let env = Env::new();
        write(&env.root.join("sub/f"), b"f", 0o644);
        write(&env.outside().join("secret"), b"secret", 0o644);
        for rel in [
            "../outside/secret",
            "sub/../../outside/secret",
            "sub/../sub/f",
        ] {
            let err = env
                .store
                .put_confined(&env.confined(rel))
                .await
                .unwrap_err();
            assert_escape(&err, rel, "`..`");
        }
        env.assert_nothing_stored("after `..`");
    }

    #[tokio::test]
    async fn absolute_paths_are_refused() {
        let env = Env::new();
        // The reported attack: root.join("/etc/shadow") is /etc/shadow.
        for rel in ["/etc/shadow", "/etc/passwd"] {
            let err = env
                .store
                .put_confined(&env.confined(rel))
                .await
                .unwrap_err();
            assert_escape(&err, rel, "absolute");
        }
        env.assert_nothing_stored("after absolute paths");
    }

    #[tokio::test]
    async fn a_symlink_in_the_path_is_refused_wherever_it_points() {
        let env = Env::new();
        write(&env.root.join("real/f"), b"f", 0o644);
        symlink("/etc", env.root.join("etc-link")).unwrap();
        // Even a link that stays inside: symlinks are never followed in input paths.
        symlink("real", env.root.join("inside-link")).unwrap();
        for rel in ["etc-link/passwd", "inside-link/f", "inside-link/."] {
            let err = env
                .store
                .put_confined(&env.confined(rel))
                .await
                .unwrap_err();
            assert_escape(&err, rel, "symlink");
        }
        env.assert_nothing_stored("after symlinks in the path");
    }

    #[tokio::test]
    async fn a_symlink_as_the_input_is_refused() {
        let env = Env::new();
        write(&env.root.join("real/f"), b"f", 0o644);
        symlink("/etc/passwd", env.root.join("passwd")).unwrap();
        symlink("real", env.root.join("dir-link")).unwrap();
        symlink("f", env.root.join("real/file-link")).unwrap();
        for rel in ["passwd", "dir-link", "real/file-link"] {
            let err = env
                .store
                .put_confined(&env.confined(rel))
                .await
                .unwrap_err();
            assert_escape(&err, rel, "is a symlink");
        }
        env.assert_nothing_stored("after symlink inputs");
    }

    #[tokio::test]
    async fn symlinks_inside_a_directory_are_kept_or_refused_as_put_path_does() {
        let env = Env::new();
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("absolute", &[("sub/passwd", "/etc/passwd")]),
            ("parent", &[("sub/up", "../../outside")]),
            ("via-self", &[("me", "."), ("sub/sneaky", "../me/..")]),
        ];
        for (name, links) in cases {
            let dir = env.root.join(name);
            write(&dir.join("sub/ok.txt"), b"ok", 0o644);
            for (link, target) in *links {
                symlink(target, dir.join(link)).unwrap();
            }
            let bad = format!("{name}/{}", links.last().unwrap().0);
            let err = env
                .store
                .put_confined(&env.confined(name))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ArtifactError::UnsafeSymlink { path, .. } if path == Path::new(&bad)),
                "{name}: {err:?}"
            );
            let by_path = env.store.put_path(&dir).await.unwrap_err();
            assert!(
                matches!(by_path, ArtifactError::UnsafeSymlink { .. }),
                "{name}"
            );
        }
        env.assert_nothing_stored("after unsafe symlinks");
        // A link that stays inside is stored as a link.
        let dir = env.root.join("fine");
        write(&dir.join("sub/ok.txt"), b"ok", 0o644);
        symlink("sub/ok.txt", dir.join("ok")).unwrap();
        let confined = env.store.put_confined(&env.confined("fine")).await.unwrap();
        assert_eq!(confined, env.store.put_path(&dir).await.unwrap());
    }

    #[tokio::test]
    async fn a_hard_link_to_a_file_outside_the_root_is_refused() {
        let env = Env::new();
        let secret = env.outside().join("shadow");
        write(&secret, b"root:$6$...", 0o600);
        fs::hard_link(&secret, env.root.join("innocent.txt")).unwrap();
        let err = env
            .store
            .put_confined(&env.confined("innocent.txt"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ArtifactError::HardLink { path, links: 2 } if path == Path::new("innocent.txt")),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("innocent.txt") && msg.contains("2 hard links"),
            "{msg}"
        );
        env.assert_nothing_stored("after a hard-linked file");
    }

    #[tokio::test]
    async fn a_hard_link_inside_a_directory_input_is_refused() {
        let env = Env::new();
        let secret = env.outside().join("shadow");
        write(&secret, b"root:$6$...", 0o600);
        write(&env.root.join("dir/a-fine"), b"fine", 0o644);
        fs::create_dir(env.root.join("dir/sub")).unwrap();
        fs::hard_link(&secret, env.root.join("dir/sub/linked")).unwrap();
        let err = env
            .store
            .put_confined(&env.confined("dir"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ArtifactError::HardLink { path, .. } if path == Path::new("dir/sub/linked")),
            "{err:?}"
        );
        // Two names for one file, both inside, are refused too: the rule is the link count.
        let both = env.root.join("both");
        write(&both.join("one"), b"same", 0o644);
        fs::hard_link(both.join("one"), both.join("two")).unwrap();
        let err = env
            .store
            .put_confined(&env.confined("both"))
            .await
            .unwrap_err();
        assert!(matches!(err, ArtifactError::HardLink { .. }), "{err:?}");
        env.assert_nothing_stored("after hard links in a directory");
    }

    #[tokio::test]
    async fn fifos_are_refused_without_blocking() {
        let env = Env::new();
        write(&env.root.join("dir/ok"), b"ok", 0o644);
        nix::unistd::mkfifo(
            &env.root.join("dir/pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        for rel in ["dir", "dir/pipe"] {
            let err = env
                .store
                .put_confined(&env.confined(rel))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ArtifactError::SpecialFile { path, kind: "fifo" } if path == Path::new("dir/pipe")),
                "{rel}: {err:?}"
            );
        }
        env.assert_nothing_stored("after a fifo");
    }

    #[tokio::test]
    async fn reading_as_a_user_applies_that_users_permissions() {
        if !is_root() {
            crate::skip::because(
                "reading as another user needs root (scripts/test.sh runs as root)",
            );
            return;
        }
        let env = Env::new();
        write(&env.root.join("private"), b"root only", 0o600);
        write(&env.root.join("public"), b"anyone", 0o644);
        write(&env.root.join("tree/public"), b"anyone", 0o644);
        write(&env.root.join("tree/private"), b"root only", 0o600);
        let nobody = |rel: &str| Confined {
            read_as: Some((65534, 65534)),
            ..env.confined(rel)
        };
        for (rel, shown) in [("private", "private"), ("tree", "tree/private")] {
            let err = env.store.put_confined(&nobody(rel)).await.unwrap_err();
            assert!(
                matches!(&err, ArtifactError::PermissionDenied { path, .. } if path == Path::new(shown)),
                "{rel}: {err:?}"
            );
            assert!(
                err.to_string().contains("uid 65534") && err.to_string().contains(shown),
                "{err}"
            );
        }
        env.assert_nothing_stored("after permission denied");
        // The server's own identity can read it, and a readable file is readable as nobody.
        env.store
            .put_confined(&env.confined("private"))
            .await
            .unwrap();
        let public = env.store.put_confined(&nobody("public")).await.unwrap();
        assert_eq!(public.digest, sha256_digest(b"anyone"));
        // The blocking threads got their identity back: root reads the tree afterwards.
        env.store.put_confined(&env.confined("tree")).await.unwrap();
    }

    #[tokio::test]
    async fn errors_name_the_path_relative_to_the_data_root() {
        let env = Env::new();
        let err = env
            .store
            .put_confined(&env.confined("nope/missing.csv"))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("nope/missing.csv"), "{msg}");
        assert!(!msg.contains(env.dir.path().to_str().unwrap()), "{msg}");
    }
}

mod uploads {
    use std::fs;
    use std::io;
    use std::os::unix::fs::symlink;

    use bytes::Bytes;
    use futures::{StreamExt, TryStreamExt};
    use gantry_artifacts::{ArtifactError, ArtifactKind, canonical_body, digest_path};

    use crate::support::*;

    const MAX: u64 = 64 << 20;

    fn body(bytes: &[u8]) -> impl futures::Stream<Item = io::Result<Bytes>> + Unpin {
        let chunks: Vec<io::Result<Bytes>> = bytes
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks)
    }

    #[tokio::test]
    async fn a_file_upload_is_stored_under_its_digest() {
        let env = Env::new();
        let data = b"weights".repeat(1000);
        let digest = sha256_digest(&data);
        let info = env
            .store
            .put_stream(ArtifactKind::File, &digest, MAX, body(&data))
            .await
            .unwrap();
        assert_eq!(
            (info.digest.as_str(), info.kind, info.size),
            (digest.as_str(), ArtifactKind::File, data.len() as u64)
        );
        assert_eq!(env.store.read_bytes(&digest, MAX).await.unwrap(), data);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_directory_uploaded_from_canonical_body_matches_put_path() {
        let env = Env::new();
        let tree = env.outside().join("tree");
        write(&tree.join("data/train.csv"), b"x,y\n1,2\n", 0o644);
        write(&tree.join("run.sh"), b"#!/bin/sh\n", 0o755);
        write(
            &tree.join(format!("deep/{}", "n".repeat(120))),
            b"long",
            0o644,
        );
        symlink("data/train.csv", tree.join("latest")).unwrap();
        symlink("t".repeat(130), tree.join("long-target")).unwrap();
        fs::create_dir(tree.join("empty")).unwrap();
        let local = digest_path(&tree).unwrap();
        let stream = canonical_body(tree.clone(), local.kind);
        let info = env
            .store
            .put_stream(local.kind, &local.digest, MAX, stream)
            .await
            .unwrap();
        assert_eq!(info, local);
        let other = Env::new();
        assert_eq!(other.store.put_path(&tree).await.unwrap(), local);
        let copy = env.store.materialize(&info.digest).await.unwrap();
        assert_eq!(fs::read(copy.join("latest")).unwrap(), b"x,y\n1,2\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_upload_streams_through_multipart() {
        let env = Env::new();
        let big: Vec<u8> = (0..(9 << 20)).map(|i: u32| (i / 4093) as u8).collect();
        let path = env.outside().join("big.bin");
        write(&path, &big, 0o644);
        let local = digest_path(&path).unwrap();
        let info = env
            .store
            .put_stream(
                local.kind,
                &local.digest,
                MAX,
                canonical_body(path, local.kind),
            )
            .await
            .unwrap();
        assert_eq!(info.digest, sha256_digest(&big));
        assert_eq!(env.store.read_bytes(&info.digest, MAX).await.unwrap(), big);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_digest_is_refused_and_nothing_is_committed() {
        let env = Env::new();
        let small = b"small".to_vec();
        let large: Vec<u8> = (0..(9 << 20)).map(|i: u32| (i % 251) as u8).collect();
        let claimed = sha256_digest(b"something else");
        for (name, data) in [("single put", &small), ("multipart", &large)] {
            let err = env
                .store
                .put_stream(ArtifactKind::File, &claimed, MAX, body(data))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ArtifactError::DigestMismatch { expected, got }
                    if *expected == claimed && *got == sha256_digest(data)),
                "{name}: {err:?}"
            );
            assert!(env.store.stat(&claimed).await.unwrap().is_none());
            env.assert_nothing_stored(name);
        }
    }

    #[tokio::test]
    async fn an_upload_over_the_limit_is_refused_without_reading_on() {
        let env = Env::new();
        let digest = sha256_digest(b"12345678901");
        let err = env
            .store
            .put_stream(ArtifactKind::File, &digest, 10, body(b"12345678901"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ArtifactError::UploadTooLarge { max: 10, .. }),
            "{err:?}"
        );
        // An endless body: the put must stop at the limit.
        let endless =
            futures::stream::repeat(Bytes::from_static(b"0123456789")).map(Ok::<_, io::Error>);
        let err = env
            .store
            .put_stream(ArtifactKind::File, &digest, 1 << 20, endless)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ArtifactError::UploadTooLarge { max, .. } if max == 1 << 20),
            "{err:?}"
        );
        env.assert_nothing_stored("after too large uploads");
    }

    #[tokio::test]
    async fn a_failing_body_aborts_the_upload() {
        let env = Env::new();
        let digest = sha256_digest(b"never");
        let failing = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"part")),
            Err(io::Error::other("connection reset")),
        ]);
        let err = env
            .store
            .put_stream(ArtifactKind::File, &digest, MAX, failing)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");
        env.assert_nothing_stored("after a failed body");
    }

    #[tokio::test]
    async fn storing_stored_content_again_is_idempotent() {
        let env = Env::new();
        let data = b"same bytes".to_vec();
        let digest = sha256_digest(&data);
        let first = env
            .store
            .put_stream(ArtifactKind::File, &digest, MAX, body(&data))
            .await
            .unwrap();
        let stored = env.stored_files();
        let again = env
            .store
            .put_stream(ArtifactKind::File, &digest, MAX, body(&data))
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(env.stored_files(), stored);
        // Already committed, the body must still prove the caller holds the content: knowing
        // the digest is not enough (an empty or another body is refused, a failing one too).
        for wrong in [&b""[..], &b"other bytes"[..]] {
            let err = env
                .store
                .put_stream(ArtifactKind::File, &digest, MAX, body(wrong))
                .await
                .unwrap_err();
            assert!(
                matches!(err, ArtifactError::DigestMismatch { .. }),
                "{err:?}"
            );
        }
        let failing = futures::stream::iter(vec![Err::<Bytes, _>(io::Error::other("cut"))]);
        let err = env
            .store
            .put_stream(ArtifactKind::File, &digest, MAX, failing)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cut"), "{err}");
        assert_eq!(env.stored_files(), stored);
        // But the same bytes cannot become a directory by being announced as one.
        let err = env
            .store
            .put_stream(ArtifactKind::Directory, &digest, MAX, body(&data))
            .await
            .unwrap_err();
        assert!(matches!(err, ArtifactError::KindConflict { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn canonical_body_ends_with_an_error_when_the_kind_changed() {
        let env = Env::new();
        let path = env.outside().join("f");
        write(&path, b"f", 0o644);
        let got: Result<Vec<Bytes>, _> = canonical_body(path, ArtifactKind::Directory)
            .try_collect()
            .await;
        assert!(matches!(got, Err(ArtifactError::Changed { .. })), "{got:?}");
    }

    /// Builds a tar by hand, writing name and link bytes directly, so it can hold what the
    /// packer never writes.
    struct Crafted(tar::Builder<Vec<u8>>);

    impl Crafted {
        fn new() -> Self {
            Crafted(tar::Builder::new(Vec::new()))
        }

        fn raw(mut self, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) -> Self {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }

        fn dir(self, name: &str) -> Self {
            self.raw(tar::EntryType::Directory, name, "", b"")
        }

        fn file(self, name: &str) -> Self {
            self.raw(tar::EntryType::Regular, name, "", b"data")
        }

        fn link(self, name: &str, target: &str) -> Self {
            self.raw(tar::EntryType::Symlink, name, target, b"")
        }

        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    #[tokio::test]
    async fn hostile_archives_are_refused_and_nothing_is_committed() {
        use tar::EntryType::{Block, Char, Fifo, Link};
        // (case, archive, the entry named, a word of the reason)
        let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
            (
                "parent",
                Crafted::new().file("../x").bytes(),
                "../x",
                "`..`",
            ),
            (
                "nested parent",
                Crafted::new().dir("a").file("a/../../x").bytes(),
                "a/../../x",
                "`..`",
            ),
            (
                "absolute",
                Crafted::new().file("/etc/cron.d/x").bytes(),
                "/etc/cron.d/x",
                "absolute",
            ),
            (
                "hard link",
                Crafted::new().raw(Link, "h", "/etc/shadow", b"").bytes(),
                "h",
                "Link is never stored",
            ),
            (
                "hard link inside",
                Crafted::new().file("f").raw(Link, "h", "f", b"").bytes(),
                "h",
                "Link is never stored",
            ),
            (
                "char device",
                Crafted::new().raw(Char, "null", "", b"").bytes(),
                "null",
                "Char is never stored",
            ),
            (
                "block device",
                Crafted::new().raw(Block, "sda", "", b"").bytes(),
                "sda",
                "Block is never stored",
            ),
            (
                "fifo",
                Crafted::new().raw(Fifo, "pipe", "", b"").bytes(),
                "pipe",
                "Fifo is never stored",
            ),
            (
                "absolute symlink",
                Crafted::new().link("l", "/etc/passwd").bytes(),
                "l",
                "is absolute",
            ),
            (
                "escaping symlink",
                Crafted::new().link("l", "../x").bytes(),
                "l",
                "points outside",
            ),
            (
                "escape through another link",
                Crafted::new().link("a", ".").link("b", "a/..").bytes(),
                "b",
                "points outside",
            ),
            (
                "write through a symlink",
                Crafted::new().link("l", "d").dir("d").file("l/x").bytes(),
                "l/x",
                "parent l is not a directory",
            ),
            (
                "duplicate",
                Crafted::new().file("f").file("f").bytes(),
                "f",
                "second entry",
            ),
            (
                "missing parent",
                Crafted::new().file("d/f").bytes(),
                "d/f",
                "parent d is not a directory",
            ),
            (
                "empty component",
                Crafted::new().dir("d").file("d//f").bytes(),
                "d//f",
                "empty component",
            ),
        ];
        for (name, tar, entry, reason) in cases {
            let env = Env::new();
            let digest = sha256_digest(&tar);
            let err = env
                .store
                .put_stream(ArtifactKind::Directory, &digest, MAX, body(&tar))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, ArtifactError::UnsafeEntry { entry: e, reason: r, .. }
                    if e == entry && r.contains(reason)),
                "{name}: {err:?}"
            );
            assert!(env.store.stat(&digest).await.unwrap().is_none(), "{name}");
            env.assert_nothing_stored(name);
        }
    }

    #[tokio::test]
    async fn garbage_and_trailing_data_are_refused() {
        let mut trailing = Crafted::new().file("f").bytes();
        trailing.extend_from_slice(b"hidden payload");
        for (name, tar) in [
            ("not a tar", b"definitely not a tar archive".repeat(40)),
            ("trailing data", trailing),
        ] {
            let env = Env::new();
            let digest = sha256_digest(&tar);
            let err = env
                .store
                .put_stream(ArtifactKind::Directory, &digest, MAX, body(&tar))
                .await
                .unwrap_err();
            assert!(
                matches!(err, ArtifactError::BadArchive { .. }),
                "{name}: {err:?}"
            );
            env.assert_nothing_stored(name);
        }
    }

    #[tokio::test]
    async fn a_well_formed_crafted_archive_is_accepted() {
        // The checks refuse what is unsafe, not what merely was not made by our packer.
        let env = Env::new();
        let tar = Crafted::new()
            .dir("d")
            .file("d/f")
            .link("d/l", "f")
            .link("up", "d/../d/f")
            .bytes();
        let digest = sha256_digest(&tar);
        let info = env
            .store
            .put_stream(ArtifactKind::Directory, &digest, MAX, body(&tar))
            .await
            .unwrap();
        let copy = env.store.materialize(&info.digest).await.unwrap();
        assert_eq!(fs::read(copy.join("up")).unwrap(), b"data");
    }
}
