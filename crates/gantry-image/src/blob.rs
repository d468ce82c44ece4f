//! Content-addressed blobs: hashing while copying, and reading small JSON blobs with a cap.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::MediaType;
use sha2::{Digest as _, Sha256};

use crate::ImageError;
use crate::compression::HashingReader;

/// Manifests, indexes and configs are small; anything bigger is not one.
pub(crate) const MAX_JSON_BLOB: u64 = 16 << 20;

/// A blob placed in a blob directory (`<dir>/<hex>`), with what a descriptor needs.
#[derive(Clone, Debug)]
pub(crate) struct BlobRef {
    pub(crate) digest: String,
    pub(crate) size: u64,
    pub(crate) media_type: MediaType,
}

impl BlobRef {
    pub(crate) fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub(crate) fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join(digest.strip_prefix("sha256:").unwrap_or(digest))
}

/// Reads a whole file, refusing one larger than `cap` bytes.
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ImageError> {
    let file = fs::File::open(path).map_err(|e| ImageError::io("cannot open", path, e))?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ImageError::io("cannot read", path, e))?;
    if bytes.len() as u64 > cap {
        return Err(ImageError::LimitExceeded(format!(
            "{} is larger than {cap} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Hashes a file by reading at most `cap` bytes of it; returns `(digest, size)`.
pub(crate) fn hash_file(path: &Path, cap: u64) -> Result<(String, u64), ImageError> {
    let file = fs::File::open(path).map_err(|e| ImageError::io("cannot open", path, e))?;
    let mut hashing = HashingReader::new(file.take(cap.saturating_add(1)));
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| ImageError::io("cannot read", path, e))?;
    let (digest, size) = hashing.finish();
    if size > cap {
        return Err(ImageError::LimitExceeded(format!(
            "{} is larger than the limit of {cap} bytes",
            path.display()
        )));
    }
    Ok((digest, size))
}

/// Copies `reader` into `dest` (a new file), hashing it; at most `cap` bytes are accepted.
pub(crate) fn copy_hashed(
    reader: impl Read,
    dest: &Path,
    cap: u64,
) -> Result<(String, u64), ImageError> {
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| ImageError::io("cannot create", dest, e))?;
    let mut hashing = HashingReader::new(reader.take(cap.saturating_add(1)));
    io::copy(&mut hashing, &mut out).map_err(|e| ImageError::io("cannot write", dest, e))?;
    out.sync_all()
        .map_err(|e| ImageError::io("cannot sync", dest, e))?;
    let (digest, size) = hashing.finish();
    if size > cap {
        return Err(ImageError::LimitExceeded(format!(
            "{} would be larger than the limit of {cap} bytes",
            dest.display()
        )));
    }
    Ok((digest, size))
}

/// Writes `bytes` as a blob into `dir` (a staging blob directory).
pub(crate) fn write_blob(
    dir: &Path,
    bytes: &[u8],
    media_type: MediaType,
) -> Result<BlobRef, ImageError> {
    let digest = sha256_digest(bytes);
    let path = blob_path(dir, &digest);
    if !path.exists() {
        let mut file =
            fs::File::create(&path).map_err(|e| ImageError::io("cannot create", &path, e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| ImageError::io("cannot write", &path, e))?;
    }
    Ok(BlobRef {
        digest,
        size: bytes.len() as u64,
        media_type,
    })
}
