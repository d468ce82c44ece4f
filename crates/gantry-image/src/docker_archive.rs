//! `docker save` archives: `manifest.json` naming a config file and layer tars, converted to an
//! OCI image (docker's config JSON is already a valid OCI config).

use std::fs;
use std::path::Path;

use oci_spec::image::MediaType;
use serde::Deserialize;

use crate::ImageError;
use crate::blob::{BlobRef, MAX_JSON_BLOB, blob_path, hash_file, read_capped, write_blob};
use crate::compression::sniff_reader;
use crate::confine::entry_relative_path;
use crate::image_config::parse_config;
use crate::import::StagedImage;
use crate::reference::normalize_reference;
use crate::unpack::UnpackLimits;

/// One image in a docker-archive's `manifest.json`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl DockerManifestEntry {
    fn names(&self) -> Vec<String> {
        self.repo_tags
            .iter()
            .flatten()
            .filter_map(|t| normalize_reference(t).ok())
            .collect()
    }
}

fn invalid(archive: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::InvalidArchive {
        path: archive.to_path_buf(),
        reason: reason.into(),
    }
}

/// Stages the image of `entries` named `wanted` (or the first one) from an extracted
/// docker-archive in `extracted` into the blob directory `blobs`.
pub(crate) fn stage(
    archive: &Path,
    extracted: &Path,
    entries: &[DockerManifestEntry],
    wanted: Option<&str>,
    blobs: &Path,
    limits: &UnpackLimits,
) -> Result<StagedImage, ImageError> {
    let entry = wanted
        .and_then(|w| entries.iter().find(|e| e.names().iter().any(|n| n == w)))
        .or_else(|| entries.first())
        .ok_or_else(|| invalid(archive, "manifest.json lists no image"))?;
    let member = |name: &str| -> Result<std::path::PathBuf, ImageError> {
        let rel = entry_relative_path(Path::new(name))
            .map_err(|r| invalid(archive, format!("manifest.json names {name:?}: {r}")))?;
        let path = extracted.join(rel);
        if !fs::symlink_metadata(&path)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            return Err(invalid(
                archive,
                format!("manifest.json names {name:?}, which is not a file in the archive"),
            ));
        }
        Ok(path)
    };

    let config_bytes = read_capped(&member(&entry.config)?, MAX_JSON_BLOB)?;
    let config = parse_config(
        &config_bytes,
        &format!("{} config {}", archive.display(), entry.config),
    )?;
    if config.diff_ids.len() != entry.layers.len() {
        return Err(invalid(
            archive,
            format!(
                "config {} lists {} diff_ids but manifest.json lists {} layers",
                entry.config,
                config.diff_ids.len(),
                entry.layers.len()
            ),
        ));
    }
    let config = write_blob(blobs, &config_bytes, MediaType::ImageConfig)?;

    let mut layers: Vec<BlobRef> = Vec::with_capacity(entry.layers.len());
    let mut staged: std::collections::HashMap<&str, BlobRef> = std::collections::HashMap::new();
    for name in &entry.layers {
        if let Some(done) = staged.get(name.as_str()) {
            layers.push(done.clone());
            continue;
        }
        let path = member(name)?;
        let (digest, size) = hash_file(&path, limits.max_total_bytes)?;
        let file = fs::File::open(&path).map_err(|e| ImageError::io("cannot open", &path, e))?;
        let (compression, _) = sniff_reader(file)?;
        let dest = blob_path(blobs, &digest);
        if !dest.exists() {
            // The extracted archive is our own scratch space: moving is the cheapest copy.
            fs::rename(&path, &dest).map_err(|e| ImageError::io("cannot stage", &dest, e))?;
        }
        let blob = BlobRef {
            digest,
            size,
            media_type: compression.layer_media_type(),
        };
        staged.insert(name, blob.clone());
        layers.push(blob);
    }
    let name = wanted
        .map(str::to_string)
        .or_else(|| entry.names().into_iter().next());
    Ok(StagedImage {
        layers,
        config: Some(config),
        manifest: None,
        name,
    })
}
