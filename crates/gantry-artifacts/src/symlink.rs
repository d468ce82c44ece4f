//! Whether a symlink inside a tree resolves to somewhere inside that tree.
//!
//! A lexical check is not enough: with `a -> .`, the link `b -> a/..` looks harmless but the
//! kernel resolves it to the tree's parent. So targets are resolved component by component the
//! way the kernel would, expanding the tree's own symlinks (read with lstat/readlink, never
//! followed), and a `..` that leaves the root is an escape.

use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may expand, as Linux's own limit.
const MAX_EXPANSIONS: u32 = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkProblem {
    Absolute,
    Escapes,
    Loop,
}

impl LinkProblem {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            LinkProblem::Absolute => "is absolute",
            LinkProblem::Escapes => "points outside the directory",
            LinkProblem::Loop => "is part of a symlink loop",
        }
    }
}

/// What one path inside a tree is, as far as resolving a link target is concerned.
pub(crate) enum Lookup {
    NotALink,
    Link(PathBuf),
    /// A symlink whose target cannot be read, or a path that cannot be inspected: treated as
    /// an escape, so what cannot be checked is never stored.
    Unreadable,
}

/// A tree whose symlinks can be looked up without following any: the directory on disk, a
/// directory reached by file descriptors, or the entries of an uploaded archive.
pub(crate) trait LinkTree {
    /// `at` holds plain names below the tree's root, none of them a symlink but maybe the last.
    fn lookup(&self, at: &[OsString]) -> Lookup;
}

/// A tree on disk, reached by path (lstat and readlink, never following).
struct OnDisk<'a>(&'a Path);

impl LinkTree for OnDisk<'_> {
    fn lookup(&self, at: &[OsString]) -> Lookup {
        // `at` holds no symlinks (each was expanded when pushed), so this lstat follows none
        // inside the tree.
        let here: PathBuf = at.iter().fold(self.0.to_path_buf(), |p, c| p.join(c));
        if !fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink()) {
            return Lookup::NotALink;
        }
        match fs::read_link(&here) {
            Ok(target) => Lookup::Link(target),
            Err(_) => Lookup::Unreadable,
        }
    }
}

/// Checks the symlink at `root/link` (relative `link`) whose target is `target`.
pub(crate) fn check_link(root: &Path, link: &Path, target: &Path) -> Result<(), LinkProblem> {
    check_link_in(&OnDisk(root), link, target)
}

/// Checks the symlink `link` (relative to the tree's root) whose target is `target`.
pub(crate) fn check_link_in(
    tree: &impl LinkTree,
    link: &Path,
    target: &Path,
) -> Result<(), LinkProblem> {
    let parent: Vec<OsString> = link
        .parent()
        .map(|p| {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut budget = MAX_EXPANSIONS;
    resolve(tree, parent, target, &mut budget).map(|_| ())
}

fn resolve(
    tree: &impl LinkTree,
    mut at: Vec<OsString>,
    target: &Path,
    budget: &mut u32,
) -> Result<Vec<OsString>, LinkProblem> {
    for component in target.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => return Err(LinkProblem::Absolute),
            Component::CurDir => {}
            Component::ParentDir => {
                if at.pop().is_none() {
                    return Err(LinkProblem::Escapes);
                }
            }
            Component::Normal(name) => {
                at.push(name.to_owned());
                match tree.lookup(&at) {
                    Lookup::NotALink => {}
                    found => {
                        *budget = budget.checked_sub(1).ok_or(LinkProblem::Loop)?;
                        let Lookup::Link(next) = found else {
                            return Err(LinkProblem::Escapes);
                        };
                        at.pop();
                        at = resolve(tree, at, &next, budget)?;
                    }
                }
            }
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn check(root: &Path, link: &str) -> Result<(), LinkProblem> {
        let target = fs::read_link(root.join(link)).unwrap();
        check_link(root, Path::new(link), &target)
    }

    #[test]
    fn links_are_resolved_through_other_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("d/e")).unwrap();
        fs::write(root.join("f"), "x").unwrap();
        symlink("../f", root.join("d/to_f")).unwrap();
        symlink("e/../../f", root.join("d/lexical")).unwrap();
        symlink("missing/file", root.join("dangling")).unwrap();
        symlink(".", root.join("self")).unwrap();
        symlink("self/..", root.join("sneaky")).unwrap();
        symlink("../..", root.join("d/up")).unwrap();
        symlink("/etc/passwd", root.join("abs")).unwrap();
        symlink("loop_b", root.join("loop_a")).unwrap();
        symlink("loop_a", root.join("loop_b")).unwrap();
        symlink("d/e/../../d", root.join("ok_dir")).unwrap();

        assert_eq!(check(root, "d/to_f"), Ok(()));
        assert_eq!(check(root, "d/lexical"), Ok(()));
        assert_eq!(check(root, "dangling"), Ok(()));
        assert_eq!(check(root, "self"), Ok(()));
        assert_eq!(check(root, "ok_dir"), Ok(()));
        assert_eq!(check(root, "sneaky"), Err(LinkProblem::Escapes));
        assert_eq!(check(root, "d/up"), Err(LinkProblem::Escapes));
        assert_eq!(check(root, "abs"), Err(LinkProblem::Absolute));
        assert_eq!(check(root, "loop_a"), Err(LinkProblem::Loop));
    }
}
