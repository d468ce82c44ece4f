//! The static `gantry-init` (built from `init/gantry-init.rs` by `build.rs`) that runs as PID 1
//! of every container: it reaps orphans, forwards SIGTERM and friends to the command, and exits
//! with the command's status.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where the init is mounted (read-only) inside every container. `/dev` is the container's own
/// tmpfs, so the mount point exists in any image without writing into its shared rootfs.
pub const INIT_PATH: &str = "/dev/gantry-init";

static INIT_BINARY: &[u8] = include_bytes!(env!("GANTRY_INIT_BINARY"));

/// Makes sure `dir/gantry-init` holds this build's init (mode 0555) and returns its path. A
/// different file there (another gantry version's) is replaced by a rename, so containers still
/// running it keep theirs.
pub fn install_init(dir: &Path) -> io::Result<PathBuf> {
    let path = dir.join("gantry-init");
    let current = fs::read(&path).ok();
    let mode_ok = fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o555);
    if current.as_deref() == Some(INIT_BINARY) && mode_ok {
        return Ok(path);
    }
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(INIT_BINARY)?;
    tmp.1.sync_all()?;
    fs::set_permissions(&tmp.0, fs::Permissions::from_mode(0o555))?;
    fs::rename(&tmp.0, &path)?;
    Ok(path)
}

/// A new file `dir/.gantry-init.<pid>.<n>`, created exclusively.
fn tempfile_in(dir: &Path) -> io::Result<(PathBuf, fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    for n in 0u32.. {
        let path = dir.join(format!(".gantry-init.{}.{n}", std::process::id()));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ELF program header types of a 64-bit little-endian executable.
    fn program_header_types(elf: &[u8]) -> Vec<u32> {
        let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
        let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
        let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
        let (size, count) = (u16_at(0x36), u16_at(0x38));
        (0..count).map(|i| u32_at(phoff + i * size)).collect()
    }

    #[test]
    fn the_embedded_init_is_a_static_executable() {
        assert_eq!(&INIT_BINARY[..4], b"\x7fELF");
        assert_eq!(INIT_BINARY[4], 2, "64-bit");
        let types = program_header_types(INIT_BINARY);
        assert!(types.contains(&1), "a loadable segment: {types:?}");
        // PT_INTERP names a dynamic loader; PT_DYNAMIC alone is static-pie's self-relocation.
        assert!(
            !types.contains(&3),
            "gantry-init must be linked statically: {types:?}"
        );
    }

    #[test]
    fn installing_is_idempotent_and_replaces_other_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = install_init(dir.path()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), INIT_BINARY);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o555
        );
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let first = inode(&path);
        assert_eq!(install_init(dir.path()).unwrap(), path);
        assert_eq!(inode(&path), first, "an up-to-date init is left alone");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(&path, b"old version").unwrap();
        install_init(dir.path()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), INIT_BINARY);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["gantry-init"]);
    }
}
