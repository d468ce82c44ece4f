//! The built-in image: the running `gantry` binary plus the shared libraries it needs,
//! in an otherwise empty rootfs. `uses: builtin/<name>` steps run in it under the same
//! least-privilege defaults as any image; no registry or network is involved.
//!
//! Built once per binary (named by the binary's digest) and imported like any rootfs
//! tar, so the usual safe-unpack path and content addressing apply.

use crate::EngineError;
use gantry_image::{ImageInfo, ImageStore};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The CA bundle (Debian's path), copied from the machine into the built-in image.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where the binary sits inside the built-in image.
pub const BUILTIN_BINARY: &str = "/opt/gantry/bin/gantry";
const NAME_PREFIX: &str = "gantry-builtin";

fn err(message: String) -> EngineError {
    EngineError::BuiltinImage { message }
}

/// Returns the built-in image for `exe`, building and importing it when this binary has
/// none yet. A small marker keyed by (size, mtime, inode) avoids re-hashing the binary
/// on every run.
pub fn ensure_builtin_image(images: &ImageStore, exe: &Path) -> Result<ImageInfo, EngineError> {
    let stamp = stamp(exe).map_err(|e| err(format!("reading {}: {e}", exe.display())))?;
    if let Some(info) = marked(images, &stamp) {
        return Ok(info);
    }
    let name = image_name(exe)?;
    let info = match images.resolve(&name) {
        Ok(info) => info,
        Err(_) => {
            let staging = tempfile::Builder::new()
                .prefix(".builtin-")
                .suffix(".tar")
                .tempfile_in(images.root())
                .map_err(|e| err(format!("creating a staging file: {e}")))?;
            write_rootfs_tar(exe, staging.as_file())?;
            images
                .import(staging.path(), Some(&name))
                .map_err(|e| err(format!("importing the built-in image: {e}")))?
        }
    };
    let _ = std::fs::write(marker(images), format!("{stamp} {}\n", info.digest));
    Ok(info)
}

/// The built-in image of `exe` when it has been built already (never builds one); the
/// marker spares hashing the binary when it is current.
pub fn existing_builtin_image(images: &ImageStore, exe: &Path) -> Option<ImageInfo> {
    if let Some(info) = stamp(exe).ok().and_then(|s| marked(images, &s)) {
        return Some(info);
    }
    images.resolve(&image_name(exe).ok()?).ok()
}

/// What identifies a binary without hashing it: path, size, mtime, inode.
fn stamp(exe: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(exe)?;
    Ok(format!(
        "{}:{}:{}:{}",
        exe.display(),
        meta.len(),
        meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
        meta.ino()
    ))
}

fn marker(images: &ImageStore) -> std::path::PathBuf {
    images.root().join("builtin-image.marker")
}

/// The image the marker names for this stamp, when it is still there.
fn marked(images: &ImageStore, stamp: &str) -> Option<ImageInfo> {
    let text = std::fs::read_to_string(marker(images)).ok()?;
    let (s, digest) = text.trim().rsplit_once(' ')?;
    (s == stamp).then(|| images.resolve(digest).ok()).flatten()
}

/// `gantry-builtin:<first 16 hex of the binary's sha256>`.
fn image_name(exe: &Path) -> Result<String, EngineError> {
    let hex = file_sha256(exe)?;
    Ok(format!("{NAME_PREFIX}:{}", &hex[..16]))
}

fn file_sha256(path: &Path) -> Result<String, EngineError> {
    let mut f =
        std::fs::File::open(path).map_err(|e| err(format!("opening {}: {e}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| err(format!("reading {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The shared objects `exe` loads, as absolute paths, from `ldd`. A static binary has none.
pub(crate) fn shared_libraries(exe: &Path) -> Result<Vec<PathBuf>, EngineError> {
    let out = Command::new("ldd").arg(exe).output().map_err(|e| {
        err(format!(
            "running ldd on {} (install libc-bin): {e}",
            exe.display()
        ))
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
        if all.contains("not a dynamic executable") || all.contains("statically linked") {
            return Ok(Vec::new());
        }
        return Err(err(format!("ldd {} failed: {}", exe.display(), all.trim())));
    }
    Ok(parse_ldd(&text))
}

pub(crate) fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    libs.sort();
    libs.dedup();
    libs
}

/// A deterministic tar (fixed mtimes and owners) so one binary always gives one digest.
fn write_rootfs_tar(exe: &Path, out: &std::fs::File) -> Result<(), EngineError> {
    let libs = shared_libraries(exe)?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(out));
    let io = |e: std::io::Error| err(format!("writing the built-in image: {e}"));
    let mut dirs: Vec<String> = [
        "proc",
        "sys",
        "dev",
        "gantry",
        "etc",
        "etc/ssl",
        "etc/ssl/certs",
        "tmp",
        "opt/gantry/bin",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for lib in &libs {
        let mut parent = lib.parent();
        while let Some(p) = parent.filter(|p| *p != Path::new("/")) {
            dirs.push(p.to_string_lossy().trim_start_matches('/').to_string());
            parent = p.parent();
        }
    }
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        let mode = if d == "tmp" { 0o1777 } else { 0o755 };
        append(
            &mut b,
            &format!("{d}/"),
            tar::EntryType::Directory,
            mode,
            &[],
        )
        .map_err(io)?;
    }
    append(
        &mut b,
        "etc/passwd",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n",
    )
    .map_err(io)?;
    append(
        &mut b,
        "etc/group",
        tar::EntryType::Regular,
        0o644,
        b"root:x:0:\nnogroup:x:65534:\n",
    )
    .map_err(io)?;
    // The machine's CA bundle: the built-in image is also what a Kubernetes pod fetches its
    // inputs with (HTTPS to S3), and it has no other certificates.
    if let Ok(bundle) = std::fs::read(CA_BUNDLE) {
        append(
            &mut b,
            CA_BUNDLE.trim_start_matches('/'),
            tar::EntryType::Regular,
            0o644,
            &bundle,
        )
        .map_err(io)?;
    }
    let binary = std::fs::read(exe).map_err(|e| err(format!("reading {}: {e}", exe.display())))?;
    append(
        &mut b,
        BUILTIN_BINARY.trim_start_matches('/'),
        tar::EntryType::Regular,
        0o755,
        &binary,
    )
    .map_err(io)?;
    for lib in &libs {
        // Follow the symlink chain on the host: the image gets the real bytes at the
        // path the loader asks for.
        let bytes =
            std::fs::read(lib).map_err(|e| err(format!("reading {}: {e}", lib.display())))?;
        let name = lib.to_string_lossy().trim_start_matches('/').to_string();
        append(&mut b, &name, tar::EntryType::Regular, 0o755, &bytes).map_err(io)?;
    }
    let mut w = b.into_inner().map_err(io)?;
    w.flush().map_err(io)?;
    Ok(())
}

fn append<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_parsed_into_absolute_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd1a7f2000)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0d1c7f0000)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0d1c600000)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f0d1cd9c000)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn the_image_is_built_once_per_binary_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let images = ImageStore::open(&dir.path().join("images")).unwrap();
        // Any dynamic binary will do: /bin/ls stands in for gantry here.
        let exe = Path::new("/bin/ls");
        let a = ensure_builtin_image(&images, exe).unwrap();
        assert!(a.names[0].starts_with("gantry-builtin:"));
        std::fs::remove_file(images.root().join("builtin-image.marker")).unwrap();
        let b = ensure_builtin_image(&images, exe).unwrap();
        assert_eq!(a.digest, b.digest);
        let rootfs = images.rootfs(&a.digest).unwrap();
        assert!(rootfs.join("opt/gantry/bin/gantry").is_file());
        assert!(rootfs.join("lib64/ld-linux-x86-64.so.2").is_file());
        // The copied binary runs inside its rootfs with only the libraries we copied.
        let out = Command::new("chroot")
            .arg(&rootfs)
            .args([BUILTIN_BINARY, "/"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("opt"));
    }
}
