//! The image store: an OCI image layout on disk plus a cache of unpacked root filesystems.
//!
//! ```text
//! <root>/oci-layout
//! <root>/index.json            one descriptor per (image, name); unnamed images have none
//! <root>/blobs/sha256/<hex>    manifests, configs, layers
//! <root>/rootfs/<hex>/         unpacked rootfs of the manifest <hex>
//! <root>/tmp/                  staging; everything here is scratch
//! <root>/.lock                 serialises changes to index.json between processes
//! ```

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    Descriptor, Digest, ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder,
    MediaType,
};
use serde::Serialize;

use crate::ImageError;
use crate::blob::{BlobRef, MAX_JSON_BLOB, blob_path, read_capped, write_blob};
use crate::confine::create_dir_0755;
use crate::image_config::{ImageRuntimeConfig, ParsedConfig, minimal_config, parse_config};
use crate::import::{SourceKind, StagedImage, detect, extract_archive, stage_rootfs_tar};
use crate::oci_layout::REF_NAME;
use crate::reference::{Reference, normalize_reference, parse_reference, sha256_hex};
use crate::staging::{StagingDir, remove_tree};
use crate::unpack::{UnpackLimits, Usage, unpack_layer_digest};

/// Directories every rootfs gets, so a read-only bind-mounted root still offers runc its mount
/// points.
const RUNTIME_DIRS: [&str; 6] = ["proc", "sys", "dev", "tmp", "gantry", "etc"];

/// A stored image as the CLI and engine see it.
#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    /// Manifest digest, `sha256:<hex>`.
    pub digest: String,
    /// Canonical names (`busybox:1`), sorted.
    pub names: Vec<String>,
    /// Sum of the layer blob sizes.
    pub size: u64,
    pub layers: usize,
    pub config: ImageRuntimeConfig,
    pub created: Option<String>,
    pub architecture: Option<String>,
}

/// The pieces of a stored image a registry push needs.
#[derive(Clone, Debug)]
pub struct ImageParts {
    /// The manifest's exact bytes (its digest is the image digest).
    pub manifest: Vec<u8>,
    pub media_type: String,
    /// `(digest, size, path)` of the config, then of each layer.
    pub blobs: Vec<(String, u64, PathBuf)>,
}

/// An OCI image store rooted at one directory.
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
    limits: UnpackLimits,
}

/// The images of `index.json`, in index order, with their names.
type Catalog = Vec<(String, Vec<String>)>;

impl ImageStore {
    /// Opens (creating if needed) a store at `root` with the default unpack limits.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        ImageStore::open_with_limits(root, UnpackLimits::default())
    }

    /// Opens (creating if needed) a store at `root` whose imports and unpacks obey `limits`.
    pub fn open_with_limits(root: &Path, limits: UnpackLimits) -> Result<ImageStore, ImageError> {
        let store = ImageStore {
            root: root.to_path_buf(),
            limits,
        };
        for dir in [store.blobs_dir(), store.rootfs_root(), store.tmp_dir()] {
            fs::create_dir_all(&dir).map_err(|e| ImageError::io("cannot create", &dir, e))?;
        }
        let _lock = store.lock()?;
        store.sweep_stale_staging();
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomically(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !store.index_path().exists() {
            store.write_index(&empty_index()?)?;
        }
        Ok(store)
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bounds imports and unpacks obey.
    pub fn limits(&self) -> &UnpackLimits {
        &self.limits
    }

    /// Staging left by a process that crashed mid-import; anything a day old is not in use.
    fn sweep_stale_staging(&self) {
        const STALE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE);
            if stale {
                // Best effort: a leftover we cannot remove costs disk space, not correctness.
                let _ = remove_tree(&entry.path());
            }
        }
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    fn rootfs_root(&self) -> PathBuf {
        self.root.join("rootfs")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// Imports a docker-archive, an OCI layout (directory or tar) or a plain rootfs tar; each may
    /// be gzip or zstd compressed. `name` overrides the name the source carries; a rootfs tar
    /// needs one. Nothing is stored unless every blob verifies and every layer unpacks safely.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<ImageInfo, ImageError> {
        let name = name.map(normalize_reference).transpose()?;
        let detected = detect(path, &self.limits)?;
        if detected.kind == SourceKind::RootfsTar && name.is_none() {
            return Err(ImageError::NameRequired {
                path: path.to_path_buf(),
            });
        }
        let staging = StagingDir::new(&self.tmp_dir(), "import")?;
        let blobs = staging.path().join("blobs");
        fs::create_dir(&blobs).map_err(|e| ImageError::io("cannot create", &blobs, e))?;
        let wanted = name.as_deref();
        let staged = match detected.kind {
            SourceKind::RootfsTar => stage_rootfs_tar(path, &blobs, &self.limits)?,
            SourceKind::OciLayoutDir => {
                crate::oci_layout::stage(path, false, wanted, &blobs, &self.limits)?
            }
            SourceKind::OciLayoutTar | SourceKind::DockerArchive => {
                let extracted = staging.path().join("archive");
                fs::create_dir(&extracted)
                    .map_err(|e| ImageError::io("cannot create", &extracted, e))?;
                extract_archive(path, &extracted, &self.limits)?;
                if detected.kind == SourceKind::DockerArchive {
                    crate::docker_archive::stage(
                        path,
                        &extracted,
                        &detected.docker_manifest,
                        wanted,
                        &blobs,
                        &self.limits,
                    )?
                } else {
                    crate::oci_layout::stage(&extracted, true, wanted, &blobs, &self.limits)?
                }
            }
        };
        let name = name.or(staged.name.clone());

        let rootfs = staging.path().join("rootfs");
        let manifest = self.complete_staged(staged, &blobs, &rootfs)?;
        self.commit(&blobs, &rootfs, &manifest, name.as_deref())?;
        drop(staging);
        self.info(
            &manifest.digest,
            names_of(&self.catalog()?, &manifest.digest),
        )
    }

    /// Unpacks the staged layers into `rootfs` (which validates each of them), checks them
    /// against the config's diff IDs, and writes whatever config and manifest the source lacked.
    fn complete_staged(
        &self,
        staged: StagedImage,
        blobs: &Path,
        rootfs: &Path,
    ) -> Result<BlobRef, ImageError> {
        let expected = match &staged.config {
            Some(config) => {
                let bytes = read_capped(&blob_path(blobs, &config.digest), MAX_JSON_BLOB)?;
                Some(parse_config(&bytes, &format!("image config {}", config.digest))?.diff_ids)
            }
            None => None,
        };
        let diff_ids = self.unpack_layers(blobs, &staged.layers, expected.as_deref(), rootfs)?;
        let config = match staged.config {
            Some(config) => config,
            None => write_blob(blobs, &minimal_config(&diff_ids)?, MediaType::ImageConfig)?,
        };
        match staged.manifest {
            Some(manifest) => Ok(manifest),
            None => {
                let bytes = manifest_json(&config, &staged.layers)?;
                write_blob(blobs, &bytes, MediaType::ImageManifest)
            }
        }
    }

    /// Unpacks `layers` (blobs in `blobs`) in order into a fresh `dest`; returns their diff IDs.
    fn unpack_layers(
        &self,
        blobs: &Path,
        layers: &[BlobRef],
        expected_diff_ids: Option<&[String]>,
        dest: &Path,
    ) -> Result<Vec<String>, ImageError> {
        self.unpack_layers_when(blobs, layers, expected_diff_ids, dest, &mut |_| Ok(()))
    }

    /// [`ImageStore::unpack_layers`], calling `ready(i)` before layer `i` is read: a pull
    /// unpacks each layer as soon as it and those before it are downloaded.
    pub(crate) fn unpack_layers_when(
        &self,
        blobs: &Path,
        layers: &[BlobRef],
        expected_diff_ids: Option<&[String]>,
        dest: &Path,
        ready: &mut dyn FnMut(usize) -> Result<(), ImageError>,
    ) -> Result<Vec<String>, ImageError> {
        if let Some(expected) = expected_diff_ids
            && expected.len() != layers.len()
        {
            return Err(ImageError::Malformed(format!(
                "the image config lists {} diff_ids for {} layers",
                expected.len(),
                layers.len()
            )));
        }
        create_dir_0755(dest).map_err(|e| ImageError::io("cannot create", dest, e))?;
        let mut usage = Usage::default();
        let mut diff_ids = Vec::with_capacity(layers.len());
        for (i, layer) in layers.iter().enumerate() {
            ready(i)?;
            let path = blob_path(blobs, &layer.digest);
            let file =
                fs::File::open(&path).map_err(|e| ImageError::io("cannot open", &path, e))?;
            let diff_id =
                unpack_layer_digest(io::BufReader::new(file), dest, &self.limits, &mut usage)
                    .map_err(|e| ImageError::Layer {
                        layer: layer.digest.clone(),
                        source: Box::new(e),
                    })?;
            if let Some(expected) = expected_diff_ids
                && expected[i] != diff_id
            {
                return Err(ImageError::DigestMismatch {
                    what: format!(
                        "uncompressed layer {} (diff_id {} in the image config)",
                        layer.digest, i
                    ),
                    expected: expected[i].clone(),
                    actual: diff_id,
                });
            }
            diff_ids.push(diff_id);
        }
        for dir in RUNTIME_DIRS {
            let path = dest.join(dir);
            if let Err(e) = fs::symlink_metadata(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(ImageError::io("cannot inspect", &path, e));
                }
                create_dir_0755(&path).map_err(|e| ImageError::io("cannot create", &path, e))?;
                if dir == "tmp" {
                    // runc gives the /tmp tmpfs this directory's mode: make it usable by any uid.
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o1777))
                        .map_err(|e| ImageError::io("cannot set the mode of", &path, e))?;
                }
            }
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
            .map_err(|e| ImageError::io("cannot set the mode of", dest, e))?;
        Ok(diff_ids)
    }

    /// Moves verified blobs and the unpacked rootfs into place, then records the name.
    fn commit(
        &self,
        staged_blobs: &Path,
        rootfs: &Path,
        manifest: &BlobRef,
        name: Option<&str>,
    ) -> Result<(), ImageError> {
        let _lock = self.lock()?;
        let entries = fs::read_dir(staged_blobs)
            .map_err(|e| ImageError::io("cannot list", staged_blobs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("cannot list", staged_blobs, e))?;
            let file_name = entry.file_name();
            let Some(hex) = file_name
                .to_str()
                .filter(|n| sha256_hex(&format!("sha256:{n}")).is_some())
            else {
                continue;
            };
            let dest = self.blobs_dir().join(hex);
            if !dest.exists() {
                fs::rename(entry.path(), &dest)
                    .map_err(|e| ImageError::io("cannot store blob", &dest, e))?;
            }
        }
        sync_dir(&self.blobs_dir())?;
        self.place_rootfs(rootfs, manifest.hex())?;

        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        if let Some(name) = name {
            manifests.retain(|d| ref_name(d) != Some(name));
        }
        let already = manifests
            .iter()
            .any(|d| d.digest().as_ref() == manifest.digest && ref_name(d) == name);
        if !already {
            let mut descriptor = Descriptor::new(
                manifest.media_type.clone(),
                manifest.size,
                parse_digest(&manifest.digest)?,
            );
            if let Some(name) = name {
                descriptor.set_annotations(Some(HashMap::from([(
                    REF_NAME.to_string(),
                    name.to_string(),
                )])));
                // A named entry makes an unnamed one for the same image redundant.
                manifests
                    .retain(|d| !(d.digest().as_ref() == manifest.digest && ref_name(d).is_none()));
            }
            if name.is_some()
                || !manifests
                    .iter()
                    .any(|d| d.digest().as_ref() == manifest.digest)
            {
                manifests.push(descriptor);
            }
        }
        keep_moved_images(&index, &mut manifests);
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// Renames an unpacked rootfs into the cache; losing a race to another process is fine.
    fn place_rootfs(&self, rootfs: &Path, hex: &str) -> Result<PathBuf, ImageError> {
        let dest = self.rootfs_root().join(hex);
        if dest.is_dir() {
            return Ok(dest);
        }
        // Files in the tree are not synced one by one; one syncfs before the rename makes sure a
        // crash never leaves a cached rootfs with torn files behind a durable name.
        let tree = fs::File::open(rootfs).map_err(|e| ImageError::io("cannot open", rootfs, e))?;
        nix::unistd::syncfs(&tree).map_err(|e| ImageError::io("cannot sync", rootfs, e.into()))?;
        match fs::rename(rootfs, &dest) {
            Ok(()) => {
                sync_dir(&self.rootfs_root())?;
                Ok(dest)
            }
            Err(_) if dest.is_dir() => Ok(dest),
            Err(e) => Err(ImageError::io("cannot store rootfs", &dest, e)),
        }
    }

    /// All images, in the order they were first stored.
    pub fn list(&self) -> Result<Vec<ImageInfo>, ImageError> {
        self.catalog()?
            .into_iter()
            .map(|(digest, names)| self.info(&digest, names))
            .collect()
    }

    /// Finds an image by `name:tag`, `name` (= `name:latest`), `sha256:<hex>`, a unique digest
    /// prefix of 12 or more hex characters, or `name@sha256:<hex>` (which must match).
    pub fn resolve(&self, reference: &str) -> Result<ImageInfo, ImageError> {
        let catalog = self.catalog()?;
        let digest = resolve_in(&catalog, reference)?;
        self.info(&digest, names_of(&catalog, &digest))
    }

    /// The unpacked rootfs of the image `digest`, built from its blobs the first time it is asked
    /// for. Concurrent builders each unpack into their own scratch directory; the first rename wins.
    pub fn rootfs(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = self.known_digest(digest)?;
        let dest = self.rootfs_root().join(&hex);
        if dest.is_dir() {
            return Ok(dest);
        }
        let manifest = self.read_manifest(digest)?;
        let config_digest = manifest.config().digest().to_string();
        let config = self.read_config(&config_digest)?;
        let layers: Vec<BlobRef> = manifest
            .layers()
            .iter()
            .map(|d| BlobRef {
                digest: d.digest().to_string(),
                size: d.size(),
                media_type: d.media_type().clone(),
            })
            .collect();
        let staging = StagingDir::new(&self.tmp_dir(), "rootfs")?;
        let rootfs = staging.path().join("rootfs");
        self.unpack_layers(&self.blobs_dir(), &layers, Some(&config.diff_ids), &rootfs)?;
        self.place_rootfs(&rootfs, &hex)
    }

    /// Gives the image `digest` (or any other reference [`ImageStore::resolve`] accepts) the name
    /// `name`, moving the name from any image that had it.
    pub fn tag(&self, digest: &str, name: &str) -> Result<(), ImageError> {
        let name = normalize_reference(name)?;
        let _lock = self.lock()?;
        let catalog = self.catalog()?;
        let digest = resolve_in(&catalog, digest)?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let Some(template) = manifests
            .iter()
            .find(|d| d.digest().as_ref() == digest)
            .cloned()
        else {
            return Err(ImageError::NotFound(digest));
        };
        manifests.retain(|d| ref_name(d) != Some(name.as_str()));
        manifests.retain(|d| !(d.digest().as_ref() == digest && ref_name(d).is_none()));
        let mut descriptor = template;
        descriptor.set_annotations(Some(HashMap::from([(REF_NAME.to_string(), name)])));
        manifests.push(descriptor);
        keep_moved_images(&index, &mut manifests);
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// Untags `reference` when it is a name; the image (blobs no other image uses, and its
    /// rootfs) is deleted once no name is left. A digest or digest prefix deletes the image and
    /// all its names.
    pub fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let lock = self.lock()?;
        let catalog = self.catalog()?;
        let digest = resolve_in(&catalog, reference)?;
        let untag = match parse_reference(reference)? {
            Reference::Name(name) | Reference::Pinned { name, .. } => Some(name),
            Reference::HexPrefix {
                name: Some(name), ..
            } if names_of(&catalog, &digest).contains(&name) => Some(name),
            _ => None,
        };
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        match &untag {
            Some(name) => manifests.retain(|d| ref_name(d) != Some(name.as_str())),
            None => manifests.retain(|d| d.digest().as_ref() != digest),
        }
        let still_there = manifests.iter().any(|d| d.digest().as_ref() == digest);
        if !still_there {
            manifests.retain(|d| d.digest().as_ref() != digest);
        }
        index.set_manifests(manifests);
        self.write_index(&index)?;
        if still_there {
            return Ok(());
        }
        self.delete_image_files(&digest, &index)?;
        drop(lock);
        Ok(())
    }

    /// Deletes the rootfs and the blobs of `digest` that no image left in `index` uses.
    fn delete_image_files(&self, digest: &str, index: &ImageIndex) -> Result<(), ImageError> {
        let hex = sha256_hex(digest).unwrap_or(digest).to_string();
        let rootfs = self.rootfs_root().join(&hex);
        if rootfs.exists() {
            // Renamed first so a half-deleted tree is never mistaken for a cached rootfs.
            let trash = StagingDir::new(&self.tmp_dir(), "trash")?;
            let moved = trash.path().join("rootfs");
            fs::rename(&rootfs, &moved).map_err(|e| ImageError::io("cannot remove", &rootfs, e))?;
            remove_tree(trash.path()).map_err(|e| ImageError::io("cannot remove", &moved, e))?;
        }
        let mut in_use = HashSet::new();
        for descriptor in index.manifests() {
            if let Ok(blobs) = self.blobs_of(descriptor.digest().as_ref()) {
                in_use.extend(blobs);
            }
        }
        let mine = self
            .blobs_of(digest)
            .unwrap_or_else(|_| vec![digest.to_string()]);
        for blob in mine.into_iter().filter(|b| !in_use.contains(b)) {
            let path = blob_path(&self.blobs_dir(), &blob);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(ImageError::io("cannot remove", &path, e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The manifest, config and layer digests of an image.
    pub(crate) fn blobs_of(&self, digest: &str) -> Result<Vec<String>, ImageError> {
        let manifest = self.read_manifest(digest)?;
        let mut blobs = vec![digest.to_string(), manifest.config().digest().to_string()];
        blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
        Ok(blobs)
    }

    /// Resolves `user` (`uid`, `uid:gid`, `name`, `name:group`) with the image's own
    /// `/etc/passwd` and `/etc/group`, read without following symlinks out of its rootfs.
    pub fn lookup_user(&self, digest: &str, user: &str) -> Result<(u32, u32), ImageError> {
        let rootfs = self.rootfs(digest)?;
        crate::user::lookup_user(&rootfs, digest, user)
    }

    fn known_digest(&self, digest: &str) -> Result<String, ImageError> {
        let hex = sha256_hex(digest).ok_or_else(|| ImageError::InvalidReference {
            reference: digest.to_string(),
            reason: "expected a manifest digest sha256:<64 hex characters>; resolve names first"
                .into(),
        })?;
        if !self.catalog()?.iter().any(|(d, _)| d == digest) {
            return Err(ImageError::NotFound(digest.to_string()));
        }
        Ok(hex.to_string())
    }

    fn read_manifest(&self, digest: &str) -> Result<ImageManifest, ImageError> {
        let bytes = read_capped(&blob_path(&self.blobs_dir(), digest), MAX_JSON_BLOB)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::json(format!("image manifest {digest}"), e))
    }

    fn read_config(&self, digest: &str) -> Result<ParsedConfig, ImageError> {
        let bytes = read_capped(&blob_path(&self.blobs_dir(), digest), MAX_JSON_BLOB)?;
        parse_config(&bytes, &format!("image config {digest}"))
    }

    fn info(&self, digest: &str, names: Vec<String>) -> Result<ImageInfo, ImageError> {
        let manifest = self.read_manifest(digest)?;
        let config = self.read_config(manifest.config().digest().as_ref())?;
        Ok(ImageInfo {
            digest: digest.to_string(),
            names,
            size: manifest.layers().iter().map(|l| l.size()).sum(),
            layers: manifest.layers().len(),
            config: config.runtime,
            created: config.created,
            architecture: config.architecture,
        })
    }

    fn read_index(&self) -> Result<ImageIndex, ImageError> {
        let path = self.index_path();
        let bytes = read_capped(&path, MAX_JSON_BLOB)?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::json(path.display().to_string(), e))
    }

    fn write_index(&self, index: &ImageIndex) -> Result<(), ImageError> {
        let bytes =
            serde_json::to_vec_pretty(index).map_err(|e| ImageError::json("index.json", e))?;
        write_atomically(&self.index_path(), &bytes)
    }

    fn catalog(&self) -> Result<Catalog, ImageError> {
        let mut catalog: Catalog = Vec::new();
        for descriptor in self.read_index()?.manifests() {
            let digest = descriptor.digest().to_string();
            let slot = match catalog.iter().position(|(d, _)| *d == digest) {
                Some(i) => i,
                None => {
                    catalog.push((digest, Vec::new()));
                    catalog.len() - 1
                }
            };
            if let Some(name) = ref_name(descriptor) {
                catalog[slot].1.push(name.to_string());
            }
        }
        for (_, names) in &mut catalog {
            names.sort();
            names.dedup();
        }
        Ok(catalog)
    }

    /// A scratch directory inside the store, removed on drop unless its content was committed.
    pub(crate) fn staging(&self, prefix: &str) -> Result<StagingDir, ImageError> {
        StagingDir::new(&self.tmp_dir(), prefix)
    }

    /// Where partial registry downloads wait to be resumed.
    pub(crate) fn downloads_dir(&self) -> Result<PathBuf, ImageError> {
        let dir = self.tmp_dir().join("downloads");
        fs::create_dir_all(&dir).map_err(|e| ImageError::io("cannot create", &dir, e))?;
        Ok(dir)
    }

    /// The path of a blob the store holds, if it does.
    pub(crate) fn stored_blob(&self, digest: &str) -> Option<PathBuf> {
        sha256_hex(digest)?;
        let path = blob_path(&self.blobs_dir(), digest);
        path.is_file().then_some(path)
    }

    /// Commits a pulled image: its verified blobs (manifest, config, layers) in the staging
    /// directory `blobs` and the root filesystem [`ImageStore::unpack_layers_when`] made from
    /// them in `rootfs`; stores it under `name`.
    pub(crate) fn commit_pulled(
        &self,
        blobs: &Path,
        rootfs: &Path,
        manifest: &BlobRef,
        name: Option<&str>,
    ) -> Result<ImageInfo, ImageError> {
        self.commit(blobs, rootfs, manifest, name)?;
        self.info(
            &manifest.digest,
            names_of(&self.catalog()?, &manifest.digest),
        )
    }

    /// What a push sends: the manifest's exact bytes and media type, and every blob it names
    /// (config first, then layers) with its size and path.
    pub fn parts(&self, digest: &str) -> Result<ImageParts, ImageError> {
        self.known_digest(digest)?;
        let path = blob_path(&self.blobs_dir(), digest);
        let bytes = read_capped(&path, MAX_JSON_BLOB)?;
        let manifest: ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::json(format!("image manifest {digest}"), e))?;
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| crate::registry::OCI_MANIFEST.to_string());
        let mut blobs = vec![(
            manifest.config().digest().to_string(),
            manifest.config().size(),
            blob_path(&self.blobs_dir(), manifest.config().digest().as_ref()),
        )];
        for layer in manifest.layers() {
            blobs.push((
                layer.digest().to_string(),
                layer.size(),
                blob_path(&self.blobs_dir(), layer.digest().as_ref()),
            ));
        }
        Ok(ImageParts {
            manifest: bytes,
            media_type,
            blobs,
        })
    }

    /// Keeps the signatures fetched (or made) for the image `digest`, so later verification
    /// needs no registry.
    pub fn save_signatures(
        &self,
        digest: &str,
        artifacts: &crate::registry::SignatureArtifacts,
    ) -> Result<(), ImageError> {
        let hex = sha256_hex(digest).ok_or_else(|| ImageError::InvalidReference {
            reference: digest.to_string(),
            reason: "expected sha256:<64 hex characters>".into(),
        })?;
        let dir = self.root.join("signatures");
        fs::create_dir_all(&dir).map_err(|e| ImageError::io("cannot create", &dir, e))?;
        let bytes = serde_json::to_vec(artifacts).map_err(|e| ImageError::json("signatures", e))?;
        write_atomically(&dir.join(format!("{hex}.json")), &bytes)
    }

    /// The signatures kept for the image `digest`, if any.
    pub fn signatures(
        &self,
        digest: &str,
    ) -> Result<Option<crate::registry::SignatureArtifacts>, ImageError> {
        let Some(hex) = sha256_hex(digest) else {
            return Ok(None);
        };
        let path = self.root.join("signatures").join(format!("{hex}.json"));
        if !path.exists() {
            return Ok(None);
        }
        let bytes = read_capped(&path, MAX_JSON_BLOB)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ImageError::json(path.display().to_string(), e))
    }

    /// Serialises index changes between processes; released when the file is dropped.
    pub(crate) fn lock(&self) -> Result<fs::File, ImageError> {
        let path = self.root.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io("cannot open", &path, e))?;
        file.lock()
            .map_err(|e| ImageError::io("cannot lock", &path, e))?;
        Ok(file)
    }
}

/// When a name moves to another image, the image it left keeps an unnamed entry, so it stays
/// resolvable by digest (a pinned pipeline may still use it).
fn keep_moved_images(before: &ImageIndex, after: &mut Vec<Descriptor>) {
    for descriptor in before.manifests() {
        let digest = descriptor.digest();
        if !after.iter().any(|d| d.digest() == digest) {
            let mut unnamed = descriptor.clone();
            unnamed.set_annotations(None);
            after.push(unnamed);
        }
    }
}

fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()?
        .get(REF_NAME)
        .map(String::as_str)
}

fn names_of(catalog: &Catalog, digest: &str) -> Vec<String> {
    catalog
        .iter()
        .find(|(d, _)| d == digest)
        .map(|(_, names)| names.clone())
        .unwrap_or_default()
}

fn resolve_in(catalog: &Catalog, reference: &str) -> Result<String, ImageError> {
    let by_name = |name: &str| {
        catalog
            .iter()
            .find(|(_, names)| names.iter().any(|n| n == name))
            .map(|(d, _)| d.clone())
    };
    let not_found = || ImageError::NotFound(reference.to_string());
    match parse_reference(reference)? {
        Reference::Name(name) => by_name(&name).ok_or_else(not_found),
        Reference::Digest(digest) => catalog
            .iter()
            .find(|(d, _)| *d == digest)
            .map(|(d, _)| d.clone())
            .ok_or_else(not_found),
        Reference::HexPrefix { hex, name } => {
            if let Some(found) = name.as_deref().and_then(by_name) {
                return Ok(found);
            }
            let prefix = format!("sha256:{hex}");
            let matches: Vec<&String> = catalog
                .iter()
                .map(|(d, _)| d)
                .filter(|d| d.starts_with(&prefix))
                .collect();
            match matches.as_slice() {
                [] => Err(not_found()),
                [one] => Ok((*one).clone()),
                many => Err(ImageError::Ambiguous {
                    reference: reference.to_string(),
                    matches: many
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        }
        Reference::Pinned { name, digest } => {
            let actual = by_name(&name).ok_or_else(not_found)?;
            if actual != digest {
                return Err(ImageError::PinMismatch {
                    reference: reference.to_string(),
                    name,
                    pinned: digest,
                    actual,
                });
            }
            Ok(actual)
        }
    }
}

fn parse_digest(digest: &str) -> Result<Digest, ImageError> {
    Digest::from_str(digest)
        .map_err(|e| ImageError::Malformed(format!("invalid digest {digest:?}: {e}")))
}

fn empty_index() -> Result<ImageIndex, ImageError> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::<Descriptor>::new())
        .build()
        .map_err(|e| ImageError::Malformed(format!("cannot build an empty image index: {e}")))
}

/// The OCI manifest of a converted image; serialisation is deterministic, so importing the same
/// content twice gives the same digest.
fn manifest_json(config: &BlobRef, layers: &[BlobRef]) -> Result<Vec<u8>, ImageError> {
    let descriptor = |blob: &BlobRef| -> Result<Descriptor, ImageError> {
        Ok(Descriptor::new(
            blob.media_type.clone(),
            blob.size,
            parse_digest(&blob.digest)?,
        ))
    };
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(config)?)
        .layers(
            layers
                .iter()
                .map(descriptor)
                .collect::<Result<Vec<_>, _>>()?,
        )
        .build()
        .map_err(|e| ImageError::Malformed(format!("cannot build the image manifest: {e}")))?;
    serde_json::to_vec(&manifest).map_err(|e| ImageError::json("the generated image manifest", e))
}

/// Writes `path` via a temporary file, fsync and rename, so readers see the old or the new
/// content, never a torn one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(ImageError::io("cannot write", path, e));
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io("cannot sync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_that_match_two_images_are_ambiguous() {
        let a = format!("sha256:{}{}", "abcdef012345", "0".repeat(52));
        let b = format!("sha256:{}{}", "abcdef012345", "1".repeat(52));
        let catalog: Catalog = vec![(a.clone(), vec!["x:1".into()]), (b.clone(), vec![])];
        let err = resolve_in(&catalog, "abcdef012345").unwrap_err();
        assert!(matches!(err, ImageError::Ambiguous { .. }), "{err}");
        assert!(err.to_string().contains(&a) && err.to_string().contains(&b));
        assert_eq!(resolve_in(&catalog, "abcdef0123450").unwrap(), a);
        assert_eq!(resolve_in(&catalog, "sha256:abcdef0123451").unwrap(), b);
        assert_eq!(resolve_in(&catalog, "x:1").unwrap(), a);
        assert_eq!(
            resolve_in(&catalog, "x").unwrap_err().to_string(),
            ImageError::NotFound("x".into()).to_string()
        );
    }

    #[test]
    fn a_name_made_of_hex_wins_over_a_prefix() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let catalog: Catalog = vec![
            (a.clone(), vec![]),
            (b.clone(), vec!["aaaaaaaaaaaa:latest".into()]),
        ];
        assert_eq!(resolve_in(&catalog, "aaaaaaaaaaaa").unwrap(), b);
        assert_eq!(resolve_in(&catalog, "aaaaaaaaaaaaa").unwrap(), a);
    }
}
