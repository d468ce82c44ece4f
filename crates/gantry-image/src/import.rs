//! Telling what an import source is, and staging its blobs inside the store for verification.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::ImageError;
use crate::blob::{BlobRef, MAX_JSON_BLOB, blob_path, copy_hashed};
use crate::compression::{Budget, CappedReader, decoded_reader, sniff_reader};
use crate::confine::{check_parents, entry_relative_path, hardlink_target_path, symlink_escapes};
use crate::docker_archive::DockerManifestEntry;
use crate::unpack::UnpackLimits;

/// The kinds of input `ImageStore::import` understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceKind {
    DockerArchive,
    OciLayoutDir,
    OciLayoutTar,
    RootfsTar,
}

/// What the first look at a source found.
#[derive(Debug)]
pub(crate) struct Detected {
    pub(crate) kind: SourceKind,
    pub(crate) docker_manifest: Vec<DockerManifestEntry>,
}

/// An image whose blobs sit in a staging blob directory, not yet unpacked or committed.
#[derive(Debug)]
pub(crate) struct StagedImage {
    pub(crate) layers: Vec<BlobRef>,
    /// `None`: a rootfs tar, whose config is generated once the diff ID is known.
    pub(crate) config: Option<BlobRef>,
    /// `None`: the manifest is generated (docker-archive, rootfs tar); OCI layouts keep theirs.
    pub(crate) manifest: Option<BlobRef>,
    /// The name the source gives the image, canonical.
    pub(crate) name: Option<String>,
}

fn invalid(path: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::InvalidArchive {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

type CappedTar = tar::Archive<CappedReader<Box<dyn Read>>>;

/// Opens `path` as a (possibly compressed) tar stream whose decoded size is capped.
fn open_tar(
    path: &Path,
    limits: &UnpackLimits,
) -> Result<(CappedTar, std::rc::Rc<Budget>), ImageError> {
    let file = fs::File::open(path).map_err(|e| ImageError::io("cannot open", path, e))?;
    let (_, decoded) = decoded_reader(io::BufReader::new(file))?;
    let budget = Budget::new(limits.max_total_bytes);
    Ok((
        tar::Archive::new(CappedReader::new(decoded, budget.clone())),
        budget,
    ))
}

fn archive_read_error(
    path: &Path,
    budget: &Budget,
    limits: &UnpackLimits,
    e: io::Error,
) -> ImageError {
    if budget.exceeded() {
        ImageError::LimitExceeded(format!(
            "{} decompresses to more than the unpack limit of {} bytes",
            path.display(),
            limits.max_total_bytes
        ))
    } else {
        invalid(
            path,
            format!(
                "not a readable tar archive ({e}); expected a docker-archive, an OCI layout or a rootfs tar"
            ),
        )
    }
}

/// Classifies `path`: an OCI layout directory, or a tar holding a docker-archive, an OCI layout
/// or a plain rootfs.
pub(crate) fn detect(path: &Path, limits: &UnpackLimits) -> Result<Detected, ImageError> {
    let meta = fs::metadata(path).map_err(|e| ImageError::io("cannot read", path, e))?;
    if meta.is_dir() {
        if !path.join("oci-layout").is_file() {
            return Err(invalid(
                path,
                "directory is not an OCI image layout (no oci-layout file); pass a docker-archive, an OCI layout or a rootfs tar",
            ));
        }
        return Ok(Detected {
            kind: SourceKind::OciLayoutDir,
            docker_manifest: Vec::new(),
        });
    }
    let (mut archive, budget) = open_tar(path, limits)?;
    let read_error = |e| archive_read_error(path, &budget, limits, e);
    let mut entries_seen: u64 = 0;
    let mut docker_manifest = None;
    let mut has_layout = false;
    let mut has_index = false;
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        entries_seen += 1;
        if entries_seen > limits.max_entries {
            return Err(ImageError::LimitExceeded(format!(
                "{} has more than the unpack limit of {} entries",
                path.display(),
                limits.max_entries
            )));
        }
        let Ok(raw) = entry.path() else { continue };
        let Ok(rel) = entry_relative_path(&raw) else {
            continue;
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        match rel.to_str() {
            Some("manifest.json") if entry.size() <= MAX_JSON_BLOB => {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(read_error)?;
                docker_manifest = serde_json::from_slice::<Vec<DockerManifestEntry>>(&bytes)
                    .ok()
                    .filter(|m| !m.is_empty());
            }
            Some("oci-layout") => has_layout = true,
            Some("index.json") => has_index = true,
            _ => {}
        }
    }
    if entries_seen == 0 {
        return Err(invalid(
            path,
            "empty or not a tar archive; expected a docker-archive, an OCI layout or a rootfs tar",
        ));
    }
    let (kind, docker_manifest) = match docker_manifest {
        Some(m) => (SourceKind::DockerArchive, m),
        None if has_layout && has_index => (SourceKind::OciLayoutTar, Vec::new()),
        None => (SourceKind::RootfsTar, Vec::new()),
    };
    Ok(Detected {
        kind,
        docker_manifest,
    })
}

/// Extracts the regular files of a docker-archive or OCI layout tar into `dest`, which only this
/// code writes. Links are materialised as hardlinks to the files they name (older `docker save`
/// links identical `layer.tar` files), so later lookups never meet a symlink.
pub(crate) fn extract_archive(
    path: &Path,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<(), ImageError> {
    let (mut archive, budget) = open_tar(path, limits)?;
    let read_error = |e| archive_read_error(path, &budget, limits, e);
    // link path -> target path, both relative to `dest`
    let mut links: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let raw = entry.path().map_err(read_error)?.into_owned();
        let unsafe_entry = |reason: String| ImageError::unsafe_entry(&raw, reason);
        let rel = entry_relative_path(&raw).map_err(|r| unsafe_entry(r.to_string()))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            check_parents(dest, &rel.join("x"), true).map_err(unsafe_entry)?;
        } else if kind.is_file() {
            check_parents(dest, &rel, true).map_err(unsafe_entry)?;
            let target = dest.join(&rel);
            crate::staging::remove_tree(&target)
                .map_err(|e| ImageError::io("cannot replace", &target, e))?;
            copy_hashed(&mut entry, &target, u64::MAX).map_err(|e| match e {
                ImageError::Io { .. } if budget.exceeded() => read_error(io::Error::other("limit")),
                other => other,
            })?;
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(read_error)?
                .ok_or_else(|| unsafe_entry("link without a target".into()))?
                .into_owned();
            let resolved = if kind.is_symlink() {
                if target.is_absolute() || symlink_escapes(&rel, &target) {
                    return Err(unsafe_entry(format!(
                        "symlink target {:?} escapes the archive",
                        target.display().to_string()
                    )));
                }
                lexical_join(rel.parent().unwrap_or(Path::new("")), &target)
            } else {
                hardlink_target_path(&target).map_err(|r| unsafe_entry(r.to_string()))?
            };
            links.insert(rel, resolved);
        }
    }
    // Links may name other links or files that come later in the archive: resolve until stable.
    while !links.is_empty() {
        let before = links.len();
        links.retain(|link, target| {
            let target_path = dest.join(&*target);
            let is_file = fs::symlink_metadata(&target_path)
                .map(|m| m.is_file())
                .unwrap_or(false);
            if !is_file || check_parents(dest, link, true).is_err() {
                return true;
            }
            let link_path = dest.join(link);
            let _ = crate::staging::remove_tree(&link_path);
            fs::hard_link(&target_path, &link_path).is_err()
        });
        if links.len() == before {
            // Dangling links: whatever needed them will report the missing file by name.
            break;
        }
    }
    Ok(())
}

/// Resolves `..` in `base/target` lexically; the caller has checked it stays inside.
fn lexical_join(base: &Path, target: &Path) -> PathBuf {
    let mut out = base.to_path_buf();
    for component in target.components() {
        match component {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(part) => out.push(part),
            _ => {}
        }
    }
    out
}

/// Stages a plain rootfs tar (as given: plain, gzip or zstd) as the single layer of an image.
pub(crate) fn stage_rootfs_tar(
    path: &Path,
    blobs: &Path,
    limits: &UnpackLimits,
) -> Result<StagedImage, ImageError> {
    let file = fs::File::open(path).map_err(|e| ImageError::io("cannot open", path, e))?;
    let (compression, whole) = sniff_reader(io::BufReader::new(file))?;
    let partial = blobs.join("rootfs-layer.partial");
    let (digest, size) = copy_hashed(whole, &partial, limits.max_total_bytes)?;
    let dest = blob_path(blobs, &digest);
    fs::rename(&partial, &dest).map_err(|e| ImageError::io("cannot stage", &dest, e))?;
    Ok(StagedImage {
        layers: vec![BlobRef {
            digest,
            size,
            media_type: compression.layer_media_type(),
        }],
        config: None,
        manifest: None,
        name: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn detects_source_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let limits = UnpackLimits::default();
        let cases: [(&str, Vec<u8>, SourceKind); 4] = [
            (
                "docker.tar",
                tar_with(&[(
                    "manifest.json",
                    br#"[{"Config":"c.json","RepoTags":null,"Layers":[]}]"#,
                )]),
                SourceKind::DockerArchive,
            ),
            (
                "oci.tar",
                tar_with(&[("oci-layout", b"{}"), ("./index.json", b"{}")]),
                SourceKind::OciLayoutTar,
            ),
            (
                "rootfs.tar",
                tar_with(&[("etc/hostname", b"x")]),
                SourceKind::RootfsTar,
            ),
            // A rootfs that happens to hold a manifest.json of another shape is still a rootfs.
            (
                "app.tar",
                tar_with(&[("manifest.json", b"{\"name\":1}")]),
                SourceKind::RootfsTar,
            ),
        ];
        for (name, bytes, kind) in cases {
            let path = dir.path().join(name);
            fs::write(&path, &bytes).unwrap();
            assert_eq!(detect(&path, &limits).unwrap().kind, kind, "{name}");
            let gz = dir.path().join(format!("{name}.gz"));
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut enc, &bytes).unwrap();
            fs::write(&gz, enc.finish().unwrap()).unwrap();
            assert_eq!(detect(&gz, &limits).unwrap().kind, kind, "{name}.gz");
        }
        let junk = dir.path().join("junk");
        fs::write(
            &junk,
            b"this is not an archive at all, not even close".repeat(20),
        )
        .unwrap();
        assert!(matches!(
            detect(&junk, &limits),
            Err(ImageError::InvalidArchive { .. })
        ));
        let empty_dir = dir.path().join("d");
        fs::create_dir(&empty_dir).unwrap();
        assert!(
            detect(&empty_dir, &limits)
                .unwrap_err()
                .to_string()
                .contains("oci-layout")
        );
    }
}
