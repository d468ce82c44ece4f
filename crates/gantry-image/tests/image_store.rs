//! Integration tests for the image store: real archives built at test time, imported into a real
//! store on disk, unpacked, resolved and removed.

// Fixture helpers live outside #[test] functions; in them a panic is the test failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use gantry_image::{ImageError, ImageStore, UnpackLimits, normalize_reference, unpack_layer};
use serde_json::json;
use sha2::{Digest, Sha256};
use tar::EntryType;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// One tar entry, written with raw header bytes so tests can build the hostile paths that
/// `tar::Builder`'s own checks would refuse.
#[derive(Clone)]
struct Entry {
    kind: EntryType,
    path: String,
    link: Option<String>,
    data: Vec<u8>,
    mode: u32,
    uid: u64,
    declared_size: Option<u64>,
}

#[derive(Clone, Default)]
struct Layer(Vec<Entry>);

impl Layer {
    fn new() -> Layer {
        Layer::default()
    }

    fn push(
        mut self,
        kind: EntryType,
        path: &str,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
    ) -> Layer {
        self.0.push(Entry {
            kind,
            path: path.to_string(),
            link: link.map(str::to_string),
            data: data.to_vec(),
            mode,
            uid: 0,
            declared_size: None,
        });
        self
    }

    fn dir(self, path: &str) -> Layer {
        self.push(EntryType::Directory, path, None, b"", 0o755)
    }

    fn file(self, path: &str, data: &[u8]) -> Layer {
        self.push(EntryType::Regular, path, None, data, 0o644)
    }

    fn file_mode(self, path: &str, data: &[u8], mode: u32) -> Layer {
        self.push(EntryType::Regular, path, None, data, mode)
    }

    fn symlink(self, path: &str, target: &str) -> Layer {
        self.push(EntryType::Symlink, path, Some(target), b"", 0o777)
    }

    fn hardlink(self, path: &str, target: &str) -> Layer {
        self.push(EntryType::Link, path, Some(target), b"", 0o644)
    }

    fn owned_by(mut self, uid: u64) -> Layer {
        if let Some(last) = self.0.last_mut() {
            last.uid = uid;
        }
        self
    }

    fn declaring_size(mut self, size: u64) -> Layer {
        if let Some(last) = self.0.last_mut() {
            last.declared_size = Some(size);
        }
        self
    }

    fn tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for e in &self.0 {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(e.kind);
            header.set_size(e.declared_size.unwrap_or(e.data.len() as u64));
            header.set_mode(e.mode);
            header.set_uid(e.uid);
            header.set_gid(e.uid);
            header.set_mtime(1_700_000_000);
            let old = header.as_old_mut();
            assert!(e.path.len() < 100);
            old.name = [0; 100];
            old.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
            if let Some(link) = &e.link {
                old.linkname = [0; 100];
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_cksum();
            builder.append(&header, &e.data[..]).unwrap();
        }
        builder.into_inner().unwrap()
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// A small real rootfs: the static busybox, a shell symlink and account files.
fn busybox_layer() -> Layer {
    let busybox =
        fs::read("/bin/busybox").expect("busybox-static must be installed (/bin/busybox)");
    Layer::new()
        .dir("bin/")
        .file_mode("bin/busybox", &busybox, 0o755)
        .symlink("bin/sh", "busybox")
        .hardlink("bin/ls", "bin/busybox")
        .dir("etc/")
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .file("etc/group", b"root:x:0:\napp:x:1001:\nstaff:x:50:app\n")
}

/// An image config in Docker's shape for these layers (uncompressed tars).
fn config_json(uncompressed_layers: &[&Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = uncompressed_layers.iter().map(|l| sha256(l)).collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-05-01T00:00:00Z",
        "config": {
            "User": "app",
            "Env": ["PATH=/bin"],
            "Entrypoint": null,
            "Cmd": ["/bin/sh", "-c", "echo hi"],
            "WorkingDir": "/home/app"
        },
        "container_config": {"Hostname": "abc"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap()
}

fn append_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(EntryType::Regular);
    builder.append_data(&mut header, path, data).unwrap();
}

/// `docker save` output in the newer layout (blobs/sha256/...).
fn docker_archive(layer_blobs: &[Vec<u8>], config: &[u8], tags: &[&str]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let config_path = format!("blobs/sha256/{}", hex_of(&sha256(config)));
    append_file(&mut builder, &config_path, config);
    let mut layer_paths = Vec::new();
    for blob in layer_blobs {
        let path = format!("blobs/sha256/{}", hex_of(&sha256(blob)));
        append_file(&mut builder, &path, blob);
        layer_paths.push(path);
    }
    let manifest = json!([{"Config": config_path, "RepoTags": tags, "Layers": layer_paths}]);
    append_file(
        &mut builder,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    builder.into_inner().unwrap()
}

/// `docker save` output in the older layout (`<id>/layer.tar`), where a repeated layer is a
/// symlink to the first copy.
fn docker_archive_legacy(layer: &[u8], config: &[u8], tags: &[&str]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let config_name = format!("{}.json", hex_of(&sha256(config)));
    append_file(&mut builder, &config_name, config);
    append_file(&mut builder, "aaaa/VERSION", b"1.0");
    append_file(&mut builder, "aaaa/layer.tar", layer);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    builder
        .append_link(&mut header, "bbbb/layer.tar", "../aaaa/layer.tar")
        .unwrap();
    let manifest = json!([{"Config": config_name, "RepoTags": tags, "Layers": ["aaaa/layer.tar", "bbbb/layer.tar"]}]);
    append_file(
        &mut builder,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    builder.into_inner().unwrap()
}

struct OciBlobs {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layers: Vec<(Vec<u8>, &'static str)>,
}

fn oci_manifest(config: &[u8], layers: &[(Vec<u8>, &'static str)]) -> Vec<u8> {
    let layer_descs: Vec<_> = layers
        .iter()
        .map(
            |(blob, media)| json!({"mediaType": media, "digest": sha256(blob), "size": blob.len()}),
        )
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": config.len()},
        "layers": layer_descs
    }))
    .unwrap()
}

/// Writes an OCI layout directory; with `as_index` the top-level entry is a multi-platform image
/// index whose linux/amd64 entry is the image.
fn oci_layout_dir(dir: &Path, blobs: &OciBlobs, ref_name: Option<&str>, as_index: bool) {
    let blob_dir = dir.join("blobs/sha256");
    fs::create_dir_all(&blob_dir).unwrap();
    let put = |bytes: &[u8]| {
        fs::write(blob_dir.join(hex_of(&sha256(bytes))), bytes).unwrap();
    };
    put(&blobs.manifest);
    put(&blobs.config);
    for (layer, _) in &blobs.layers {
        put(layer);
    }
    let annotations = match ref_name {
        Some(name) => json!({"org.opencontainers.image.ref.name": name}),
        None => json!({}),
    };
    let manifest_desc = json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha256(&blobs.manifest),
        "size": blobs.manifest.len(),
        "platform": {"architecture": "amd64", "os": "linux"}
    });
    let top = if as_index {
        let other = oci_manifest(b"{}", &[]);
        put(&other);
        let nested = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&other),
                 "size": other.len(), "platform": {"architecture": "arm64", "os": "linux"}},
                manifest_desc
            ]
        }))
        .unwrap();
        put(&nested);
        json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(&nested),
               "size": nested.len(), "annotations": annotations})
    } else {
        let mut d = manifest_desc;
        d["annotations"] = annotations;
        d
    };
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [top]})).unwrap(),
    )
    .unwrap();
}

fn tar_of_dir(dir: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_dir_all(".", dir).unwrap();
    builder.into_inner().unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    store: ImageStore,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_limits(UnpackLimits::default())
    }

    fn with_limits(limits: UnpackLimits) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let store = ImageStore::open_with_limits(&dir.join("store"), limits).unwrap();
        Fixture {
            _tmp: tmp,
            dir,
            store,
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    fn root(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Every path under the store (but the lock file) plus the bytes of index.json.
    fn snapshot(&self) -> (Vec<PathBuf>, Vec<u8>) {
        let root = self.root();
        let mut paths: Vec<PathBuf> = walkdir::WalkDir::new(&root)
            .into_iter()
            .map(|e| e.unwrap().path().strip_prefix(&root).unwrap().to_path_buf())
            .filter(|p| p != Path::new(".lock"))
            .collect();
        paths.sort();
        (paths, fs::read(root.join("index.json")).unwrap())
    }

    /// Imports `bytes` as a rootfs tar and expects a rejection that changes nothing in the store.
    fn assert_rejected(&self, bytes: &[u8], expected: &[&str]) -> ImageError {
        let before = self.snapshot();
        let path = self.write("hostile.tar", bytes);
        let err = self.store.import(&path, Some("hostile:1")).unwrap_err();
        let message = err.to_string();
        for part in expected {
            assert!(
                message.contains(part),
                "error {message:?} should mention {part:?}"
            );
        }
        assert_eq!(
            self.snapshot(),
            before,
            "a rejected import must leave nothing behind"
        );
        assert!(
            fs::read_dir(self.root().join("tmp"))
                .unwrap()
                .next()
                .is_none()
        );
        err
    }
}

/// Reads a rootfs into path -> description, for comparing two unpacks.
fn tree(root: &Path) -> BTreeMap<String, String> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let meta = e.path().symlink_metadata().unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(e.path()).unwrap().display())
            } else if meta.is_dir() {
                "dir".to_string()
            } else {
                format!(
                    "{} {:o}",
                    sha256(&fs::read(e.path()).unwrap()),
                    meta.mode() & 0o7777
                )
            };
            (rel, what)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Importing and resolving

#[test]
fn rootfs_tar_is_imported_and_resolvable_by_name_digest_and_prefix() {
    let fx = Fixture::new();
    let path = fx.write("busybox.tar", &busybox_layer().tar());
    let info = fx.store.import(&path, Some("busybox:1")).unwrap();
    assert_eq!(info.names, vec!["busybox:1"]);
    assert_eq!(info.layers, 1);
    assert_eq!(info.architecture.as_deref(), Some("amd64"));
    assert!(info.config.cmd.is_empty());
    assert_eq!(info.size, fs::metadata(&path).unwrap().len());
    let hex = hex_of(&info.digest).to_string();

    let list = fx.store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].digest, info.digest);
    for reference in [
        "busybox:1".to_string(),
        "docker.io/library/busybox:1".to_string(),
        info.digest.clone(),
        hex[..12].to_string(),
        format!("sha256:{}", &hex[..16]),
        format!("busybox:1@{}", info.digest),
    ] {
        assert_eq!(
            fx.store.resolve(&reference).unwrap().digest,
            info.digest,
            "{reference}"
        );
    }
    assert!(matches!(
        fx.store.resolve("busybox"),
        Err(ImageError::NotFound(_))
    ));
    assert!(matches!(
        fx.store.resolve("sha256:0000000000000000"),
        Err(ImageError::NotFound(_))
    ));

    // The store is an OCI layout whose index names the image.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(fx.root().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], info.digest);
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "busybox:1"
    );
    assert!(fx.root().join("oci-layout").is_file());
    assert!(fx.root().join("blobs/sha256").join(&hex).is_file());

    // The unpacked rootfs is real: busybox runs from it.
    let rootfs = fx.store.rootfs(&info.digest).unwrap();
    assert_eq!(rootfs, fx.root().join("rootfs").join(&hex));
    assert_eq!(fs::metadata(&rootfs).unwrap().mode() & 0o777, 0o755);
    for dir in ["proc", "sys", "dev", "tmp", "gantry", "etc"] {
        assert!(rootfs.join(dir).is_dir(), "{dir}");
    }
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::metadata(rootfs.join("bin/ls")).unwrap().ino(),
        fs::metadata(rootfs.join("bin/busybox")).unwrap().ino()
    );
    let out = std::process::Command::new(rootfs.join("bin/busybox"))
        .args(["echo", "from-the-image"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "from-the-image"
    );

    // Importing the same content again is idempotent.
    let again = fx.store.import(&path, Some("busybox:1")).unwrap();
    assert_eq!(again.digest, info.digest);
    assert_eq!(fx.store.list().unwrap().len(), 1);
    assert!(
        fs::read_dir(fx.root().join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn rootfs_tar_without_a_name_is_refused_clearly() {
    let fx = Fixture::new();
    let path = fx.write("plain.tar", &Layer::new().file("hello", b"hi").tar());
    let before = fx.snapshot();
    let err = fx.store.import(&path, None).unwrap_err();
    assert!(matches!(err, ImageError::NameRequired { .. }), "{err}");
    assert!(err.to_string().contains("name"), "{err}");
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn compressed_rootfs_tars_are_imported() {
    let fx = Fixture::new();
    let layer = Layer::new().file("data/a.txt", b"alpha").tar();
    let plain = fx
        .store
        .import(&fx.write("a.tar", &layer), Some("a:plain"))
        .unwrap();
    let gz = fx
        .store
        .import(&fx.write("a.tar.gz", &gzip(&layer)), Some("a:gz"))
        .unwrap();
    let zst = fx
        .store
        .import(&fx.write("a.tar.zst", &zstd(&layer)), Some("a:zst"))
        .unwrap();
    // Different layer blobs, same content once unpacked.
    assert_ne!(plain.digest, gz.digest);
    assert_ne!(gz.digest, zst.digest);
    for info in [&plain, &gz, &zst] {
        let rootfs = fx.store.rootfs(&info.digest).unwrap();
        assert_eq!(fs::read(rootfs.join("data/a.txt")).unwrap(), b"alpha");
    }
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(fx.root().join("blobs/sha256").join(hex_of(&zst.digest))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
}

#[test]
fn docker_archive_is_converted_and_named_from_repo_tags() {
    let fx = Fixture::new();
    let base = busybox_layer().tar();
    let top = Layer::new()
        .dir("home/")
        .dir("home/app/")
        .file("home/app/run.sh", b"echo hi\n")
        .tar();
    let config = config_json(&[&base, &top]);
    // Layers as `docker save` writes them (plain) and gzip-compressed: both must verify.
    let archive = docker_archive(
        &[base.clone(), gzip(&top)],
        &config,
        &["busybox:1.36", "busybox:latest"],
    );
    let path = fx.write("docker.tar", &archive);
    let info = fx.store.import(&path, None).unwrap();
    assert_eq!(info.names, vec!["busybox:1.36"]);
    assert_eq!(info.layers, 2);
    assert_eq!(info.config.user.as_deref(), Some("app"));
    assert_eq!(info.config.env, vec!["PATH=/bin"]);
    assert_eq!(info.config.cmd, vec!["/bin/sh", "-c", "echo hi"]);
    assert!(info.config.entrypoint.is_empty());
    assert_eq!(info.config.working_dir.as_deref(), Some("/home/app"));
    assert_eq!(info.created.as_deref(), Some("2024-05-01T00:00:00Z"));
    // The config blob is docker's own file, byte for byte.
    assert!(
        fx.root()
            .join("blobs/sha256")
            .join(hex_of(&sha256(&config)))
            .is_file()
    );
    let rootfs = fx.store.rootfs(&info.digest).unwrap();
    assert_eq!(
        fs::read(rootfs.join("home/app/run.sh")).unwrap(),
        b"echo hi\n"
    );
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(
        fx.store.lookup_user(&info.digest, "app").unwrap(),
        (1000, 1001)
    );

    // A gzip-compressed archive (`docker save | gzip`) and a re-import give the same image.
    let again = fx
        .store
        .import(&fx.write("docker.tar.gz", &gzip(&archive)), None)
        .unwrap();
    assert_eq!(again.digest, info.digest);
    // An explicit name overrides the archive's.
    let named = fx.store.import(&path, Some("mine/busybox:x")).unwrap();
    assert_eq!(named.digest, info.digest);
    assert_eq!(named.names, vec!["busybox:1.36", "mine/busybox:x"]);
}

#[test]
fn legacy_docker_archive_with_linked_layers_is_imported() {
    let fx = Fixture::new();
    let layer = Layer::new().file("a", b"same layer twice").tar();
    let config = config_json(&[&layer, &layer]);
    let path = fx.write(
        "legacy.tar",
        &docker_archive_legacy(&layer, &config, &["legacy:1"]),
    );
    let info = fx.store.import(&path, None).unwrap();
    assert_eq!(info.names, vec!["legacy:1"]);
    assert_eq!(info.layers, 2);
    assert_eq!(
        fs::read(fx.store.rootfs(&info.digest).unwrap().join("a")).unwrap(),
        b"same layer twice"
    );
}

#[test]
fn docker_archive_with_wrong_diff_ids_is_rejected() {
    let fx = Fixture::new();
    let layer = Layer::new().file("a", b"real").tar();
    let other = Layer::new().file("a", b"claimed").tar();
    let config = config_json(&[&other]);
    let path = fx.write("bad.tar", &docker_archive(&[layer], &config, &["bad:1"]));
    let before = fx.snapshot();
    let err = fx.store.import(&path, None).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&sha256(&other)), "{err}");
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn oci_layouts_as_directory_and_tar_are_imported() {
    let fx = Fixture::new();
    let base = busybox_layer().tar();
    let top = Layer::new().file("etc/motd", b"welcome\n").tar();
    let config = config_json(&[&base, &top]);
    let layers = vec![
        (gzip(&base), "application/vnd.oci.image.layer.v1.tar+gzip"),
        (zstd(&top), "application/vnd.oci.image.layer.v1.tar+zstd"),
    ];
    let blobs = OciBlobs {
        manifest: oci_manifest(&config, &layers),
        config: config.clone(),
        layers,
    };
    let manifest_digest = sha256(&blobs.manifest);

    let dir = fx.dir.join("layout");
    oci_layout_dir(
        &dir,
        &blobs,
        Some("registry.example.com/team/tool:2"),
        false,
    );
    let from_dir = fx.store.import(&dir, None).unwrap();
    assert_eq!(
        from_dir.digest, manifest_digest,
        "the manifest is kept verbatim"
    );
    assert_eq!(from_dir.names, vec!["registry.example.com/team/tool:2"]);
    assert_eq!(from_dir.config.cmd, vec!["/bin/sh", "-c", "echo hi"]);
    let rootfs = fx.store.rootfs(&from_dir.digest).unwrap();
    assert_eq!(fs::read(rootfs.join("etc/motd")).unwrap(), b"welcome\n");
    assert!(rootfs.join("bin/busybox").is_file());
    // The source directory is left as it was.
    assert!(
        dir.join("blobs/sha256")
            .join(hex_of(&manifest_digest))
            .is_file()
    );

    // The same layout as a tar, and as a multi-platform index: same image.
    let tar_path = fx.write("layout.tar", &tar_of_dir(&dir));
    let from_tar = fx.store.import(&tar_path, Some("tool:tar")).unwrap();
    assert_eq!(from_tar.digest, manifest_digest);
    let index_dir = fx.dir.join("layout-index");
    oci_layout_dir(&index_dir, &blobs, Some("tool:multi"), true);
    let from_index = fx.store.import(&index_dir, None).unwrap();
    assert_eq!(from_index.digest, manifest_digest);
    assert_eq!(
        fx.store.resolve(&manifest_digest).unwrap().names,
        vec!["registry.example.com/team/tool:2", "tool:multi", "tool:tar"]
    );
    assert_eq!(fx.store.list().unwrap().len(), 1);
}

#[test]
fn oci_layout_blob_digest_and_size_mismatches_are_rejected() {
    let fx = Fixture::new();
    fx.store
        .import(
            &fx.write("seed.tar", &Layer::new().file("seed", b"x").tar()),
            Some("seed:1"),
        )
        .unwrap();
    let layer = Layer::new().file("a", b"original").tar();
    let config = config_json(&[&layer]);
    let layers = vec![(layer.clone(), "application/vnd.oci.image.layer.v1.tar")];
    let blobs = OciBlobs {
        manifest: oci_manifest(&config, &layers),
        config,
        layers,
    };

    // Same size, different bytes.
    let tampered = fx.dir.join("tampered");
    oci_layout_dir(&tampered, &blobs, Some("t:1"), false);
    let mut evil = layer.clone();
    let at = evil.windows(8).position(|w| w == b"original").unwrap();
    evil[at..at + 8].copy_from_slice(b"modified");
    fs::write(
        tampered.join("blobs/sha256").join(hex_of(&sha256(&layer))),
        &evil,
    )
    .unwrap();
    let before = fx.snapshot();
    let err = fx.store.import(&tampered, None).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&sha256(&evil)), "{err}");
    assert_eq!(fx.snapshot(), before);
    // The same, shipped as a tar.
    let err = fx
        .store
        .import(&fx.write("tampered.tar", &tar_of_dir(&tampered)), None)
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert_eq!(fx.snapshot(), before);

    // Longer than its descriptor says.
    let longer = fx.dir.join("longer");
    oci_layout_dir(&longer, &blobs, Some("t:1"), false);
    let mut padded = layer.clone();
    padded.extend_from_slice(&[0; 512]);
    fs::write(
        longer.join("blobs/sha256").join(hex_of(&sha256(&layer))),
        &padded,
    )
    .unwrap();
    let err = fx.store.import(&longer, None).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert_eq!(fx.snapshot(), before);

    // A tampered manifest.
    let bad_manifest = fx.dir.join("bad-manifest");
    oci_layout_dir(&bad_manifest, &blobs, Some("t:1"), false);
    let manifest_path = bad_manifest
        .join("blobs/sha256")
        .join(hex_of(&sha256(&blobs.manifest)));
    let mut bytes = fs::read(&manifest_path).unwrap();
    bytes[0] = b' ';
    fs::write(&manifest_path, bytes).unwrap();
    assert!(matches!(
        fx.store.import(&bad_manifest, None),
        Err(ImageError::DigestMismatch { .. })
    ));

    // A missing blob.
    let missing = fx.dir.join("missing");
    oci_layout_dir(&missing, &blobs, Some("t:1"), false);
    fs::remove_file(missing.join("blobs/sha256").join(hex_of(&sha256(&layer)))).unwrap();
    let err = fx.store.import(&missing, None).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn pinned_reference_must_match_the_digest() {
    let fx = Fixture::new();
    let a = fx
        .store
        .import(
            &fx.write("a.tar", &Layer::new().file("a", b"a").tar()),
            Some("app:1"),
        )
        .unwrap();
    let b = fx
        .store
        .import(
            &fx.write("b.tar", &Layer::new().file("b", b"b").tar()),
            Some("other:1"),
        )
        .unwrap();
    assert_eq!(
        fx.store
            .resolve(&format!("app:1@{}", a.digest))
            .unwrap()
            .digest,
        a.digest
    );
    let err = fx
        .store
        .resolve(&format!("app:1@{}", b.digest))
        .unwrap_err();
    assert!(matches!(err, ImageError::PinMismatch { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&a.digest) && message.contains(&b.digest),
        "{message}"
    );
    assert!(matches!(
        fx.store.resolve("app:1@sha256:abc"),
        Err(ImageError::InvalidReference { .. })
    ));
}

#[test]
fn digest_prefixes_need_twelve_characters() {
    let fx = Fixture::new();
    let mut digests = Vec::new();
    for i in 0..5 {
        let path = fx.write(
            &format!("{i}.tar"),
            &Layer::new().file("n", i.to_string().as_bytes()).tar(),
        );
        digests.push(
            fx.store
                .import(&path, Some(&format!("n:{i}")))
                .unwrap()
                .digest,
        );
    }
    for d in &digests {
        assert_eq!(fx.store.resolve(&hex_of(d)[..12]).unwrap().digest, *d);
        assert_eq!(fx.store.resolve(hex_of(d)).unwrap().digest, *d);
        // Shorter hex is read as a name, never as a prefix that might pick the wrong image.
        assert!(matches!(
            fx.store.resolve(&hex_of(d)[..11]),
            Err(ImageError::NotFound(_))
        ));
        assert!(matches!(
            fx.store.resolve(&format!("sha256:{}", &hex_of(d)[..11])),
            Err(ImageError::InvalidReference { .. })
        ));
    }
}

#[test]
fn tag_remove_and_shared_blobs() {
    let fx = Fixture::new();
    let shared = busybox_layer().tar();
    let extra = Layer::new().file("extra", b"x").tar();
    let one = fx
        .store
        .import(
            &fx.write(
                "one.tar",
                &docker_archive(
                    std::slice::from_ref(&shared),
                    &config_json(&[&shared]),
                    &["one:1"],
                ),
            ),
            None,
        )
        .unwrap();
    let two = fx
        .store
        .import(
            &fx.write(
                "two.tar",
                &docker_archive(
                    &[shared.clone(), extra.clone()],
                    &config_json(&[&shared, &extra]),
                    &["two:1"],
                ),
            ),
            None,
        )
        .unwrap();
    assert_ne!(one.digest, two.digest);
    let shared_blob = fx
        .root()
        .join("blobs/sha256")
        .join(hex_of(&sha256(&shared)));

    fx.store.tag(&one.digest, "alias:5").unwrap();
    assert_eq!(
        fx.store.resolve("alias:5").unwrap().names,
        vec!["alias:5", "one:1"]
    );
    fx.store.remove("alias:5").unwrap();
    assert_eq!(fx.store.resolve(&one.digest).unwrap().names, vec!["one:1"]);

    let one_rootfs = fx.store.rootfs(&one.digest).unwrap();
    fx.store.remove("one:1").unwrap();
    assert!(matches!(
        fx.store.resolve(&one.digest),
        Err(ImageError::NotFound(_))
    ));
    assert!(!one_rootfs.exists());
    assert!(
        !fx.root()
            .join("blobs/sha256")
            .join(hex_of(&one.digest))
            .exists()
    );
    assert!(shared_blob.exists(), "a layer still used by two:1 stays");

    fx.store.remove(&two.digest).unwrap();
    assert!(!shared_blob.exists());
    assert!(fx.store.list().unwrap().is_empty());
    let left: Vec<_> = fs::read_dir(fx.root().join("blobs/sha256"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "no blob outlives its images");
    assert!(matches!(
        fx.store.remove("one:1"),
        Err(ImageError::NotFound(_))
    ));
}

#[test]
fn a_name_moved_to_a_new_image_leaves_the_old_one_by_digest() {
    let fx = Fixture::new();
    let old = fx
        .store
        .import(
            &fx.write("a.tar", &Layer::new().file("v", b"1").tar()),
            Some("app:1"),
        )
        .unwrap();
    let new = fx
        .store
        .import(
            &fx.write("b.tar", &Layer::new().file("v", b"2").tar()),
            Some("app:1"),
        )
        .unwrap();
    assert_eq!(fx.store.resolve("app:1").unwrap().digest, new.digest);
    let old_now = fx.store.resolve(&old.digest).unwrap();
    assert!(old_now.names.is_empty());
    assert_eq!(fx.store.list().unwrap().len(), 2);
    fx.store.remove(&old.digest).unwrap();
    assert_eq!(fx.store.list().unwrap().len(), 1);
}

#[test]
fn rootfs_is_rebuilt_from_blobs_and_concurrent_builders_agree() {
    let fx = Fixture::new();
    let info = fx
        .store
        .import(
            &fx.write("bb.tar", &gzip(&busybox_layer().tar())),
            Some("bb:1"),
        )
        .unwrap();
    let first = fx.store.rootfs(&info.digest).unwrap();
    let expected = tree(&first);
    fs::remove_dir_all(&first).unwrap();

    let handles: Vec<_> = (0..4)
        .map(|_| {
            let store = fx.store.clone();
            let digest = info.digest.clone();
            std::thread::spawn(move || store.rootfs(&digest).unwrap())
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), first);
    }
    assert_eq!(tree(&first), expected);
    assert!(
        fs::read_dir(fx.root().join("tmp"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(matches!(
        fx.store
            .rootfs("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        Err(ImageError::NotFound(_))
    ));
    assert!(matches!(
        fx.store.rootfs("bb:1"),
        Err(ImageError::InvalidReference { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Layer semantics

#[test]
fn whiteouts_and_opaque_directories_hide_lower_layers() {
    let lower = Layer::new()
        .file("a/keep", b"k")
        .file("a/gone", b"g")
        .file("b/old", b"o")
        .file("b/sub/older", b"o")
        .file("c", b"c")
        .dir("d/")
        .file("d/x", b"x");
    let upper = Layer::new()
        .file("a/.wh.gone", b"")
        // The marker after a sibling from this layer: only lower content goes.
        .file("b/new", b"n")
        .file("b/.wh..wh..opq", b"")
        .file(".wh.c", b"")
        .file("d/.wh.never-existed", b"")
        .file(".wh.d", b"")
        .dir("d/")
        .file("d/y", b"y");

    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("rootfs");
    let mut used = 0;
    let limits = UnpackLimits::default();
    unpack_layer(&lower.tar()[..], &dest, &limits, &mut used).unwrap();
    unpack_layer(&gzip(&upper.tar())[..], &dest, &limits, &mut used).unwrap();
    assert!(used > 0);
    let names: Vec<String> = tree(&dest).into_keys().collect();
    assert_eq!(names, ["a", "a/keep", "b", "b/new", "d", "d/y"]);

    // Through the store, as a two-layer OCI image.
    let fx = Fixture::new();
    let config = config_json(&[&lower.tar(), &upper.tar()]);
    let layers = vec![
        (lower.tar(), "application/vnd.oci.image.layer.v1.tar"),
        (upper.tar(), "application/vnd.oci.image.layer.v1.tar"),
    ];
    let dir = fx.dir.join("layout");
    oci_layout_dir(
        &dir,
        &OciBlobs {
            manifest: oci_manifest(&config, &layers),
            config,
            layers,
        },
        Some("wh:1"),
        false,
    );
    let info = fx.store.import(&dir, None).unwrap();
    let rootfs = fx.store.rootfs(&info.digest).unwrap();
    assert!(rootfs.join("a/keep").exists());
    assert!(!rootfs.join("a/gone").exists());
    assert!(!rootfs.join("b/old").exists() && !rootfs.join("b/sub").exists());
    assert!(rootfs.join("b/new").exists());
    assert!(!rootfs.join("c").exists());
    assert!(!rootfs.join("d/x").exists() && rootfs.join("d/y").exists());
    assert!(!rootfs.join("b/.wh..wh..opq").exists() && !rootfs.join(".wh.c").exists());
}

#[test]
fn modes_owners_devices_and_replacements() {
    let layer = Layer::new()
        .file_mode("suid", b"#!/bin/sh\n", 0o4755)
        .file_mode("sgid-dir-file", b"", 0o2640)
        .push(EntryType::Directory, "sticky/", None, b"", 0o1777)
        .file("owned", b"o")
        .owned_by(1234)
        .push(EntryType::Char, "dev/null", None, b"", 0o666)
        .push(EntryType::Block, "dev/sda", None, b"", 0o660)
        .push(EntryType::Fifo, "pipe", None, b"", 0o600)
        .dir("was-dir/")
        .file("was-dir/inner", b"i")
        .file("was-file", b"f");
    let replace = Layer::new()
        .file("was-dir", b"now a file")
        .dir("was-file/")
        .file("was-file/inner", b"now a dir");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("rootfs");
    let mut used = 0;
    unpack_layer(&layer.tar()[..], &dest, &UnpackLimits::default(), &mut used).unwrap();
    unpack_layer(
        &zstd(&replace.tar())[..],
        &dest,
        &UnpackLimits::default(),
        &mut used,
    )
    .unwrap();
    let mode = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("suid"), 0o755);
    assert_eq!(mode("sgid-dir-file"), 0o640);
    assert_eq!(
        mode("sticky"),
        0o1777,
        "directories keep the sticky bit (/tmp)"
    );
    assert!(!dest.join("dev/null").exists() && !dest.join("dev/sda").exists());
    assert!(
        fs::symlink_metadata(dest.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo_like()
    );
    let owner = fs::metadata(dest.join("owned")).unwrap().uid();
    if nix_is_root() {
        assert_eq!(owner, 1234);
    } else {
        assert_eq!(owner, fs::metadata(tmp.path()).unwrap().uid());
    }
    assert_eq!(fs::read(dest.join("was-dir")).unwrap(), b"now a file");
    assert_eq!(fs::read(dest.join("was-file/inner")).unwrap(), b"now a dir");
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

fn nix_is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Hostile layers: each is refused with a clear error and leaves nothing behind.

fn hostile_fixture() -> Fixture {
    let fx = Fixture::new();
    // A good image first, so "index unchanged" means something.
    fx.store
        .import(
            &fx.write("good.tar", &Layer::new().file("ok", b"ok").tar()),
            Some("good:1"),
        )
        .unwrap();
    fx
}

#[test]
fn rejects_parent_directory_escape() {
    let fx = hostile_fixture();
    let bytes = Layer::new()
        .file("ok", b"fine")
        .file("../escape", b"pwned")
        .tar();
    let err = fx.assert_rejected(
        &bytes,
        &["layer sha256:", "\"../escape\"", "escapes the image root"],
    );
    assert!(matches!(err, ImageError::Layer { .. }));
    assert!(!fx.dir.join("escape").exists());
    assert!(!fx.root().join("tmp/escape").exists());
}

#[test]
fn rejects_absolute_path() {
    let fx = hostile_fixture();
    let target = fx.dir.join("abs-target");
    let bytes = Layer::new()
        .file(&target.display().to_string(), b"pwned")
        .tar();
    fx.assert_rejected(&bytes, &["absolute path", &target.display().to_string()]);
    assert!(!target.exists());
}

#[test]
fn rejects_writing_through_a_symlink() {
    let fx = hostile_fixture();
    let outside = fx.dir.join("outside");
    fs::create_dir(&outside).unwrap();
    let bytes = Layer::new()
        .symlink("link", &outside.display().to_string())
        .file("link/passwd", b"root::0:0::/:/bin/sh\n")
        .tar();
    fx.assert_rejected(&bytes, &["\"link/passwd\"", "symlink"]);
    assert!(!outside.join("passwd").exists());

    // Also the classic `link -> /etc`.
    let bytes = Layer::new()
        .symlink("etc", "/etc")
        .file("etc/passwd", b"x")
        .tar();
    fx.assert_rejected(&bytes, &["\"etc/passwd\"", "symlink"]);
}

#[test]
fn rejects_symlink_climbing_out_of_the_root() {
    let fx = hostile_fixture();
    let bytes = Layer::new().symlink("up", "../../..").tar();
    fx.assert_rejected(&bytes, &["\"up\"", "escapes the image root"]);
    let bytes = Layer::new()
        .dir("usr/")
        .symlink("usr/lib", "../../lib")
        .tar();
    fx.assert_rejected(&bytes, &["\"usr/lib\"", "escapes"]);
}

#[test]
fn rejects_hardlink_escapes() {
    let fx = hostile_fixture();
    let bytes = Layer::new().hardlink("stolen", "../../etc/passwd").tar();
    fx.assert_rejected(&bytes, &["\"stolen\"", "hardlink target escapes"]);

    // Through a symlinked parent: `d -> /etc`, then `h` linked to `d/passwd`.
    let bytes = Layer::new()
        .symlink("d", "/etc")
        .hardlink("h", "d/passwd")
        .tar();
    fx.assert_rejected(&bytes, &["\"h\"", "symlink"]);

    // To something that is not an earlier regular file.
    let bytes = Layer::new().hardlink("h", "nope").tar();
    fx.assert_rejected(&bytes, &["does not exist"]);
    let bytes = Layer::new()
        .symlink("s", "/etc/shadow")
        .hardlink("h", "s")
        .tar();
    fx.assert_rejected(&bytes, &["not a regular file"]);
}

#[test]
fn rejects_oversized_layers_and_bombs() {
    let limits = UnpackLimits {
        max_total_bytes: 1 << 20,
        max_entries: 100,
    };
    let fx = Fixture::with_limits(limits.clone());
    fx.store
        .import(
            &fx.write("good.tar", &Layer::new().file("ok", b"ok").tar()),
            Some("good:1"),
        )
        .unwrap();

    // A real 4 MiB file, gzip-compressed to a few KiB: decompression stops at the limit.
    let bomb = gzip(&Layer::new().file("zeros", &vec![0u8; 4 << 20]).tar());
    assert!(bomb.len() < 64 << 10);
    let err = fx.assert_rejected(&bomb, &["unpack limit"]);
    assert!(matches!(err, ImageError::LimitExceeded(_)), "{err}");

    // The same bomb as a layer of an OCI layout: the unpacker stops it and names the entry.
    let layer = bomb.clone();
    let config = config_json(&[&Layer::new().file("zeros", &vec![0u8; 4 << 20]).tar()]);
    let layers = vec![(layer, "application/vnd.oci.image.layer.v1.tar+gzip")];
    let dir = fx.dir.join("bomb-layout");
    oci_layout_dir(
        &dir,
        &OciBlobs {
            manifest: oci_manifest(&config, &layers),
            config,
            layers,
        },
        Some("bomb:1"),
        false,
    );
    let before = fx.snapshot();
    let err = fx.store.import(&dir, None).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ImageError::Layer { .. }), "{message}");
    assert!(
        message.contains(&sha256(&bomb))
            && message.contains("\"zeros\"")
            && message.contains("unpack limit"),
        "{message}"
    );
    assert_eq!(fx.snapshot(), before);

    // Two files that each fit but together do not.
    let half = vec![7u8; 600 << 10];
    let pair = Layer::new().file("one", &half).file("two", &half).tar();
    fx.assert_rejected(&pair, &["unpack limit"]);

    // Too many entries.
    let mut many = Layer::new();
    for i in 0..150 {
        many = many.file(&format!("f{i}"), b"");
    }
    fx.assert_rejected(&many.tar(), &["more than the unpack limit of 100 entries"]);

    // The same bounds hold for unpack_layer on its own: a compressed stream of pure zeros
    // stops at the limit instead of being decompressed whole.
    let tmp = tempfile::tempdir().unwrap();
    let small = UnpackLimits {
        max_total_bytes: 64 << 10,
        max_entries: 10,
    };
    let mut used = 0;
    let err = unpack_layer(
        &gzip(&vec![0u8; 8 << 20])[..],
        &tmp.path().join("r"),
        &small,
        &mut used,
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::LimitExceeded(_)), "{err}");
    assert!(
        used <= (64 << 10) + (256 << 10),
        "stopped near the limit, read {used}"
    );
    // A header that merely claims a huge size is refused before anything is written.
    let mut used = 0;
    let liar = Layer::new().file("huge", b"").declaring_size(1 << 40).tar();
    let err = unpack_layer(&liar[..], &tmp.path().join("r1"), &small, &mut used).unwrap_err();
    assert!(
        err.to_string().contains("\"huge\"") && err.to_string().contains("unpack limit"),
        "{err}"
    );
    assert!(!tmp.path().join("r1/huge").exists());
    let mut used = 0;
    let err = unpack_layer(&many.tar()[..], &tmp.path().join("r2"), &small, &mut used).unwrap_err();
    assert!(err.to_string().contains("entries"), "{err}");
    // `used` carries over: a second layer sees what the first consumed.
    let mut used = 60 << 10;
    let err = unpack_layer(
        &Layer::new().file("x", &[1u8; 8 << 10]).tar()[..],
        &tmp.path().join("r3"),
        &small,
        &mut used,
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::LimitExceeded(_)), "{err}");
}

#[test]
fn unpack_layer_alone_never_writes_outside_dest() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("a/b/dest");
    fs::create_dir_all(&dest).unwrap();
    let cases = [
        Layer::new().file("../../escape", b"x"),
        Layer::new().file("./../escape", b"x"),
        Layer::new()
            .symlink("l", tmp.path().to_str().unwrap())
            .file("l/escape", b"x"),
        Layer::new().symlink("l", "../../..").file("l/escape", b"x"),
        Layer::new()
            .dir("x/")
            .symlink("x/l", "../..")
            .file("x/l/escape", b"x"),
    ];
    for layer in cases {
        let mut used = 0;
        let err =
            unpack_layer(&layer.tar()[..], &dest, &UnpackLimits::default(), &mut used).unwrap_err();
        assert!(matches!(err, ImageError::UnsafeEntry { .. }), "{err}");
    }
    for dir in [
        tmp.path().to_path_buf(),
        tmp.path().join("a"),
        tmp.path().join("a/b"),
    ] {
        assert!(!dir.join("escape").exists(), "{}", dir.display());
    }
}

// ---------------------------------------------------------------------------------------------
// Users

#[test]
fn lookup_user_reads_the_image_account_files() {
    let fx = Fixture::new();
    let info = fx
        .store
        .import(&fx.write("bb.tar", &busybox_layer().tar()), Some("bb:1"))
        .unwrap();
    let d = &info.digest;
    assert_eq!(fx.store.lookup_user(d, "app").unwrap(), (1000, 1001));
    assert_eq!(fx.store.lookup_user(d, "1000").unwrap(), (1000, 1001));
    assert_eq!(fx.store.lookup_user(d, "1000:1000").unwrap(), (1000, 1000));
    assert_eq!(fx.store.lookup_user(d, "app:staff").unwrap(), (1000, 50));
    assert_eq!(fx.store.lookup_user(d, "nobody").unwrap(), (65534, 65534));
    let err = fx.store.lookup_user(d, "ghost").unwrap_err();
    assert!(
        matches!(err, ImageError::User { .. }) && err.to_string().contains("ghost"),
        "{err}"
    );
}

#[test]
fn lookup_user_never_follows_a_symlink_to_the_host() {
    let fx = Fixture::new();
    // A host file that looks like an account database with a root-equivalent user in it.
    let host_file = fx.dir.join("host-shadow");
    fs::write(&host_file, "evil:x:0:0::/:/bin/sh\n").unwrap();
    let host_dir = fx.dir.join("hostetc");
    fs::create_dir(&host_dir).unwrap();
    fs::write(host_dir.join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();

    let cases = [
        Layer::new()
            .dir("etc/")
            .symlink("etc/passwd", host_file.to_str().unwrap()),
        Layer::new().symlink("etc", host_dir.to_str().unwrap()),
        Layer::new()
            .dir("etc/")
            .symlink("etc/passwd", "/../../../../../../../../etc/shadow"),
    ];
    for (i, layer) in cases.into_iter().enumerate() {
        let info = fx
            .store
            .import(
                &fx.write(&format!("u{i}.tar"), &layer.tar()),
                Some(&format!("u:{i}")),
            )
            .unwrap();
        let err = fx.store.lookup_user(&info.digest, "evil").unwrap_err();
        assert!(matches!(err, ImageError::User { .. }), "case {i}: {err}");
        // The host's /etc/passwd is not consulted either: it has root, the image does not.
        assert!(
            fx.store.lookup_user(&info.digest, "root").is_err(),
            "case {i}"
        );
        // Numeric users need no database.
        assert_eq!(
            fx.store.lookup_user(&info.digest, "4242").unwrap(),
            (4242, 0)
        );
    }
    // `..` climbing from the root stays at the root, so this link names itself: a loop, refused.
    let layer = Layer::new()
        .dir("etc/")
        .symlink("etc/passwd", "/../../../../../../../../etc/passwd");
    let info = fx
        .store
        .import(&fx.write("loop.tar", &layer.tar()), Some("u:loop"))
        .unwrap();
    let err = fx.store.lookup_user(&info.digest, "evil").unwrap_err();
    assert!(err.to_string().contains("symbolic links"), "{err}");
}

#[test]
fn names_are_canonical() {
    assert_eq!(normalize_reference("busybox").unwrap(), "busybox:latest");
    assert_eq!(
        normalize_reference("registry.example.com/team/x:tag").unwrap(),
        "registry.example.com/team/x:tag"
    );
    assert!(matches!(
        normalize_reference("Bad/Name"),
        Err(ImageError::InvalidReference { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Disk use and pruning

#[test]
fn orphaned_rootfs_blobs_and_old_staging_are_pruned_and_images_stay_usable() {
    let fx = Fixture::new();
    let path = fx.write("busybox.tar", &busybox_layer().tar());
    let info = fx.store.import(&path, Some("busybox:1")).unwrap();
    let before = fx.store.usage().unwrap();
    assert_eq!(before.images, 1);
    assert!(before.blobs_bytes > 0 && before.rootfs_bytes > 0);
    // What an interrupted removal or import leaves: a rootfs and a blob no image uses, and
    // staging in tmp/ (an hour old, and a fresh one an import in progress may still use).
    let orphan_rootfs = fx.root().join("rootfs").join("ab".repeat(32));
    fs::create_dir_all(orphan_rootfs.join("bin")).unwrap();
    fs::write(orphan_rootfs.join("bin/x"), vec![1u8; 1000]).unwrap();
    let orphan_blob = fx.root().join("blobs/sha256").join("cd".repeat(32));
    fs::write(&orphan_blob, vec![2u8; 500]).unwrap();
    let tmp = fx.root().join("tmp");
    fs::create_dir_all(tmp.join("downloads")).unwrap();
    let old = tmp.join("downloads/old.partial");
    let fresh = tmp.join("fresh-staging");
    fs::write(&old, vec![3u8; 300]).unwrap();
    fs::write(&fresh, vec![4u8; 200]).unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();

    // A dry run measures and removes nothing.
    assert_eq!(fx.store.prune_orphans(true).unwrap(), 1000 + 500 + 300);
    assert!(orphan_rootfs.exists() && orphan_blob.exists() && old.exists());
    assert_eq!(fx.store.prune_orphans(false).unwrap(), 1000 + 500 + 300);
    assert!(!orphan_rootfs.exists() && !orphan_blob.exists() && !old.exists());
    assert!(fresh.exists(), "staging younger than an hour stays");
    // The image is whole: its blobs and rootfs are untouched.
    assert_eq!(fx.store.usage().unwrap().blobs_bytes, before.blobs_bytes);
    let rootfs = fx.store.rootfs(&info.digest).unwrap();
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(fx.store.prune_orphans(false).unwrap(), 0);
}
