//! Resolving `user[:group]` against an image's own `/etc/passwd` and `/etc/group`.
//!
//! Those files come from the image, so they are opened as if the rootfs were `/`: a symlink such as
//! `/etc/passwd -> /etc/shadow` is followed inside the rootfs, never on the host.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::ImageError;

/// Linux's own bound on symlinks followed while resolving one path.
const MAX_SYMLINK_HOPS: usize = 40;
/// Account databases are small; a bigger one is not worth reading.
const MAX_ACCOUNT_FILE: u64 = 4 << 20;

/// Resolves `rel` under `root` with `root` acting as `/` for every symlink on the way. Returns
/// `None` when the path does not exist there.
pub(crate) fn resolve_in_root(root: &Path, rel: &Path) -> io::Result<Option<PathBuf>> {
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front_components(&mut pending, rel);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&part);
        let meta = match fs::symlink_metadata(&candidate) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(io::Error::other("too many levels of symbolic links"));
            }
            let target = fs::read_link(&candidate)?;
            if target.is_absolute() {
                resolved.clear();
            }
            push_front_components(&mut pending, &target);
            continue;
        }
        if !meta.is_dir() && !pending.is_empty() {
            return Ok(None);
        }
        resolved.push(part);
    }
    let mut path = root.to_path_buf();
    path.extend(&resolved);
    Ok(Some(path))
}

fn push_front_components(pending: &mut VecDeque<OsString>, path: &Path) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
        })
        .collect();
    for part in parts.into_iter().rev() {
        pending.push_front(part);
    }
}

/// Reads a regular file of the image, or `None` when it is absent.
fn read_image_file(root: &Path, rel: &str) -> Result<Option<String>, ImageError> {
    let shown = || root.join(rel);
    let Some(path) = resolve_in_root(root, Path::new(rel))
        .map_err(|e| ImageError::io("cannot resolve", shown(), e))?
    else {
        return Ok(None);
    };
    let meta =
        fs::symlink_metadata(&path).map_err(|e| ImageError::io("cannot inspect", &path, e))?;
    if !meta.is_file() {
        return Ok(None);
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| ImageError::io("cannot open", &path, e))?;
    let mut text = String::new();
    file.take(MAX_ACCOUNT_FILE)
        .read_to_string(&mut text)
        .map_err(|e| ImageError::io("cannot read", &path, e))?;
    Ok(Some(text))
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

fn passwd_entries(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: fields.first()?.to_string(),
                uid: fields.get(2)?.parse().ok()?,
                gid: fields.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn group_gid(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next() != Some(name) {
            return None;
        }
        fields.nth(1)?.parse().ok()
    })
}

/// Resolves `user` (`uid`, `uid:gid`, `name`, `name:group`, …) in the image rooted at `rootfs`.
///
/// A numeric uid with no passwd entry and no group gets gid 0, as Docker and runc do.
pub(crate) fn lookup_user(
    rootfs: &Path,
    digest: &str,
    user: &str,
) -> Result<(u32, u32), ImageError> {
    let fail = |reason: String| ImageError::User {
        user: user.to_string(),
        digest: digest.to_string(),
        reason,
    };
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if user_part.is_empty() || group_part == Some("") {
        return Err(fail(
            "expected `user`, `uid`, `user:group` or `uid:gid`".into(),
        ));
    }
    let passwd = read_image_file(rootfs, "etc/passwd")?;
    let entries = passwd.as_deref().map(passwd_entries).unwrap_or_default();
    let (uid, default_gid) = match user_part.parse::<u32>() {
        Ok(uid) => (
            uid,
            entries.iter().find(|e| e.uid == uid).map_or(0, |e| e.gid),
        ),
        Err(_) => {
            if passwd.is_none() {
                return Err(fail(
                    "the image has no /etc/passwd to look the name up in; use a numeric uid".into(),
                ));
            }
            let entry = entries
                .iter()
                .find(|e| e.name == user_part)
                .ok_or_else(|| fail("no such user in the image's /etc/passwd".into()))?;
            (entry.uid, entry.gid)
        }
    };
    let gid = match group_part {
        None => default_gid,
        Some(group) => {
            match group.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    let groups = read_image_file(rootfs, "etc/group")?.ok_or_else(|| {
                    fail("the image has no /etc/group to look the group up in; use a numeric gid".into())
                })?;
                    group_gid(&groups, group).ok_or_else(|| {
                        fail(format!("no group {group:?} in the image's /etc/group"))
                    })?
                }
            }
        }
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("usr/share")).unwrap();
        fs::write(root.join("usr/share/passwd"), "a:x:5:6::/:/bin/sh\n").unwrap();
        symlink("../usr/share/passwd", root.join("etc/passwd")).unwrap();
        symlink("/../../../../etc", root.join("hostetc")).unwrap();
        assert_eq!(
            resolve_in_root(&root, Path::new("etc/passwd"))
                .unwrap()
                .unwrap(),
            root.join("usr/share/passwd")
        );
        // `/../../etc` clamps at the image root, as `..` does at `/`.
        assert_eq!(
            resolve_in_root(&root, Path::new("hostetc/hostname")).unwrap(),
            None
        );
        symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(&root, Path::new("loop")).is_err());
        assert_eq!(lookup_user(&root, "d", "a").unwrap(), (5, 6));
    }

    #[test]
    fn parses_user_forms() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001::/home/app:/bin/sh\nbroken\n",
        )
        .unwrap();
        fs::write(root.join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        assert_eq!(lookup_user(root, "d", "app").unwrap(), (1000, 1001));
        assert_eq!(lookup_user(root, "d", "1000").unwrap(), (1000, 1001));
        assert_eq!(lookup_user(root, "d", "4242").unwrap(), (4242, 0));
        assert_eq!(lookup_user(root, "d", "app:staff").unwrap(), (1000, 50));
        assert_eq!(lookup_user(root, "d", "1000:7").unwrap(), (1000, 7));
        assert!(
            lookup_user(root, "d", "nobody")
                .unwrap_err()
                .to_string()
                .contains("no such user")
        );
        assert!(lookup_user(root, "d", "app:nogroup").is_err());
        assert!(lookup_user(root, "d", "").is_err());
        assert!(lookup_user(root, "d", "app:").is_err());
    }
}
