//! Where a run's external inputs may come from.
//!
//! `gantry run` reads the user's own files and fetches any URL: the user runs it with their
//! own privileges. Runs submitted to a server execute with the server's privileges, so there
//! a `path:` input is read only below a data root the admin configured (and open to the
//! run's project), through file descriptors that cannot leave the root (see
//! `gantry_artifacts::Confined`), and URLs go through a [`FetchPolicy`] that refuses the
//! server's own network. Clients bring their own data by uploading it (the run then names
//! it by digest and no path is read at all).
//!
//! [`locate`] is the pure decision (which root, which relative path) that both the server's
//! submit-time check and the engine's read use.

use gantry_net::FetchPolicy;
use std::path::{Component, Path, PathBuf};

/// A directory the admin opened to remote runs: `gantry server --data-root NAME=DIR`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRoot {
    /// Shown in messages and the audit log.
    pub name: String,
    /// Absolute and canonical (resolved once at startup).
    pub dir: PathBuf,
    /// Projects that may read it; None: every project.
    pub projects: Option<Vec<String>>,
}

impl DataRoot {
    /// Parses `NAME=DIR` or `NAME=DIR:PROJECT[,PROJECT…]` (the directory itself is not
    /// checked here; see [`DataRoot::resolve`]).
    pub fn parse(text: &str) -> Result<DataRoot, String> {
        let usage = "expected NAME=DIR or NAME=DIR:PROJECT[,PROJECT…], e.g. shared=/srv/data or team-a=/srv/a:team-a";
        let (name, rest) = text
            .split_once('=')
            .ok_or_else(|| format!("--data-root {text}: {usage}"))?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "--data-root {text}: the name must be letters, digits, '-', '_' or '.'; {usage}"
            ));
        }
        let (dir, projects) = match rest.rsplit_once(':') {
            Some((dir, list)) if !list.contains('/') => {
                let projects: Vec<String> = list
                    .split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect();
                if projects.is_empty() {
                    return Err(format!("--data-root {text}: no project after ':'; {usage}"));
                }
                (dir, Some(projects))
            }
            _ => (rest, None),
        };
        let dir = PathBuf::from(dir);
        if !dir.is_absolute() {
            return Err(format!(
                "--data-root {text}: the directory must be an absolute path"
            ));
        }
        Ok(DataRoot {
            name: name.to_owned(),
            dir,
            projects,
        })
    }

    /// Makes `dir` canonical so a path is compared with what the kernel will resolve;
    /// fails when it does not exist or is not a directory.
    pub fn resolve(mut self) -> Result<DataRoot, String> {
        let canonical = std::fs::canonicalize(&self.dir)
            .map_err(|e| format!("--data-root {}={}: {e}", self.name, self.dir.display()))?;
        if !canonical.is_dir() {
            return Err(format!(
                "--data-root {}={}: not a directory",
                self.name,
                self.dir.display()
            ));
        }
        self.dir = canonical;
        Ok(self)
    }

    fn open_to(&self, project: &str) -> bool {
        self.projects
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p == project || p == "*"))
    }

    fn describe(&self) -> String {
        match &self.projects {
            None => format!("{}={}", self.name, self.dir.display()),
            Some(ps) => format!(
                "{}={} (projects {})",
                self.name,
                self.dir.display(),
                ps.join(", ")
            ),
        }
    }
}

/// What a run's `path:` inputs may read.
#[derive(Clone, Debug, Default)]
pub enum PathAccess {
    /// Anything the process can read: `gantry run`, whose user is the caller.
    #[default]
    Any,
    /// Only below these roots (none: no server path at all), opened with these
    /// filesystem ids where the process may switch to them (root).
    Roots {
        roots: Vec<DataRoot>,
        read_as: Option<(u32, u32)>,
    },
}

/// The external-input rules of one engine.
#[derive(Clone, Debug, Default)]
pub struct InputPolicy {
    pub paths: PathAccess,
    pub fetch: FetchPolicy,
}

impl InputPolicy {
    /// `gantry run`: the user's own files, any http(s) URL.
    pub fn local() -> InputPolicy {
        InputPolicy {
            paths: PathAccess::Any,
            fetch: FetchPolicy::unrestricted(),
        }
    }
}

/// Why a path input was refused before anything was read. The `rule` names what the admin
/// can change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error(
        "{path} is a file of the server, and this server opens no data root to remote runs; upload the data from the client instead (`gantry --server URL run FILE` does so for local paths), or ask an admin for `gantry server --data-root NAME=DIR`"
    )]
    NoRoots { path: String },
    #[error("{path} contains `..`; name the file by its path below a data root ({roots})")]
    DotDot { path: String, roots: String },
    #[error(
        "{path} is under no data root of this server ({roots}); upload it from the client instead"
    )]
    NotUnder { path: String, roots: String },
    #[error("{path} is in data root `{root}`, which is not open to project {project}")]
    NotForProject {
        path: String,
        root: String,
        project: String,
    },
}

impl PathRefusal {
    /// A short name of the rule that refused, for the audit log and API errors.
    pub fn rule(&self) -> &'static str {
        match self {
            PathRefusal::NoRoots { .. } => "no-data-root",
            PathRefusal::DotDot { .. } => "dot-dot",
            PathRefusal::NotUnder { .. } => "outside-data-roots",
            PathRefusal::NotForProject { .. } => "data-root-project",
        }
    }
}

/// The data root that lets `project` read `path`, and `path` relative to it. Lexical only:
/// the read itself then opens the relative path beneath the root's descriptor, which also
/// refuses symlinks and hard links that lead out.
pub fn locate<'a>(
    roots: &'a [DataRoot],
    project: &str,
    path: &Path,
) -> Result<(&'a DataRoot, PathBuf), PathRefusal> {
    let shown = path.display().to_string();
    let listed = || {
        roots
            .iter()
            .map(DataRoot::describe)
            .collect::<Vec<_>>()
            .join("; ")
    };
    if roots.is_empty() {
        return Err(PathRefusal::NoRoots { path: shown });
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(PathRefusal::DotDot {
            path: shown,
            roots: listed(),
        });
    }
    // Longest matching root first, so a project root nested in a shared one wins.
    let mut candidates: Vec<&DataRoot> = roots
        .iter()
        .filter(|r| path.is_absolute() && path.starts_with(&r.dir))
        .collect();
    candidates.sort_by_key(|r| std::cmp::Reverse(r.dir.components().count()));
    let Some(first) = candidates.first() else {
        return Err(PathRefusal::NotUnder {
            path: shown,
            roots: listed(),
        });
    };
    let Some(root) = candidates.iter().find(|r| r.open_to(project)) else {
        return Err(PathRefusal::NotForProject {
            path: shown,
            root: first.name.clone(),
            project: project.to_owned(),
        });
    };
    let rel: PathBuf = path
        .strip_prefix(&root.dir)
        .map(|p| {
            p.components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect()
        })
        .unwrap_or_default();
    Ok((root, rel))
}

/// An external input of a planned run that the engine's policy refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputRefusal {
    pub step: String,
    pub input: String,
    /// What refused: `no-data-root`, `outside-data-roots`, `dot-dot`, `data-root-project`,
    /// `escape` (a symlink or `..` on the way), `hard-link`, `permission`, `not-found`,
    /// `fetch` (a URL the fetch policy refuses).
    pub rule: &'static str,
    pub message: String,
}

impl std::fmt::Display for InputRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {} input {}: refused ({}): {}",
            self.step, self.input, self.rule, self.message
        )
    }
}

impl<R: gantry_runtime::Runtime> crate::Engine<R> {
    /// Checks every external input of `plan` (a run of `project`) against this engine's
    /// policy before the run is accepted, reading no data: paths are located below a data
    /// root and opened beneath it (which refuses symlinks, `..` and hard links leading out,
    /// and files the reader identity may not read); URLs are checked by scheme and literal
    /// address (names are checked again when resolved at fetch time). Inputs in `pinned`
    /// ("step/input" → digest: uploaded by the client) read no path at all.
    pub async fn check_external_inputs(
        &self,
        plan: &gantry_spec::Plan,
        project: &str,
        pinned: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), InputRefusal> {
        let policy = &self.config().inputs;
        for step in &plan.steps {
            for (input, src) in &step.inputs {
                if pinned.contains_key(&format!("{}/{}", step.name, input)) {
                    continue;
                }
                let refuse = |rule: &'static str, message: String| InputRefusal {
                    step: step.name.clone(),
                    input: input.clone(),
                    rule,
                    message,
                };
                match src {
                    gantry_spec::InputSource::Path(path) => {
                        let PathAccess::Roots { roots, read_as } = &policy.paths else {
                            continue;
                        };
                        let (root, rel) = locate(roots, project, path)
                            .map_err(|e| refuse(e.rule(), e.to_string()))?;
                        let confined = gantry_artifacts::Confined {
                            root: root.dir.clone(),
                            rel,
                            read_as: *read_as,
                        };
                        let probed = tokio::task::spawn_blocking(move || {
                            gantry_artifacts::probe_confined(&confined)
                        })
                        .await
                        .map_err(|e| {
                            refuse("internal", format!("checking the path panicked: {e}"))
                        })?;
                        if let Err(e) = probed {
                            return Err(refuse(
                                confined_rule(&e),
                                format!("{}: {e}", path.display()),
                            ));
                        }
                    }
                    gantry_spec::InputSource::Url(url) => {
                        policy
                            .fetch
                            .check_url(url)
                            .map_err(|e| refuse("fetch", e.to_string()))?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The rule name of a refused confined read.
pub fn confined_rule(e: &gantry_artifacts::ArtifactError) -> &'static str {
    use gantry_artifacts::ArtifactError as E;
    match e {
        E::Escape { .. } => "escape",
        E::HardLink { .. } => "hard-link",
        E::PermissionDenied { .. } => "permission",
        E::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => "not-found",
        _ => "unreadable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(name: &str, dir: &str, projects: Option<&[&str]>) -> DataRoot {
        DataRoot {
            name: name.into(),
            dir: dir.into(),
            projects: projects.map(|ps| ps.iter().map(|p| p.to_string()).collect()),
        }
    }

    #[test]
    fn parses_data_root_flags() {
        assert_eq!(
            DataRoot::parse("shared=/srv/data").unwrap(),
            root("shared", "/srv/data", None)
        );
        assert_eq!(
            DataRoot::parse("a=/srv/a:team-a, team-b").unwrap(),
            root("a", "/srv/a", Some(&["team-a", "team-b"]))
        );
        for bad in ["/srv", "=/srv", "x=relative/dir", "x y=/srv", "x=/srv:"] {
            assert!(DataRoot::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn paths_below_a_root_are_located_relative_to_it() {
        let roots = [root("shared", "/srv/data", None)];
        let (r, rel) = locate(&roots, "p", Path::new("/srv/data/iris/train.csv")).unwrap();
        assert_eq!(r.name, "shared");
        assert_eq!(rel, PathBuf::from("iris/train.csv"));
        let (_, rel) = locate(&roots, "p", Path::new("/srv/data")).unwrap();
        assert_eq!(rel, PathBuf::new());
    }

    #[test]
    fn everything_else_is_refused_with_its_rule() {
        let roots = [
            root("shared", "/srv/data", None),
            root("b", "/srv/b", Some(&["team-b"])),
        ];
        let cases = [
            ("/etc/shadow", "outside-data-roots"),
            ("/srv/database", "outside-data-roots"),
            ("/srv/data/../../etc/shadow", "dot-dot"),
            ("/srv/data/x/../y", "dot-dot"),
            ("relative.csv", "outside-data-roots"),
            ("/srv/b/x.csv", "data-root-project"),
        ];
        for (path, rule) in cases {
            let err = locate(&roots, "team-a", Path::new(path)).unwrap_err();
            assert_eq!(err.rule(), rule, "{path}: {err}");
            assert!(err.to_string().contains(path), "{err}");
        }
        assert!(locate(&roots, "team-b", Path::new("/srv/b/x.csv")).is_ok());
        let none = locate(&[], "p", Path::new("/srv/data/x")).unwrap_err();
        assert_eq!(none.rule(), "no-data-root");
    }

    #[test]
    fn a_nested_project_root_wins_over_the_shared_one() {
        let roots = [
            root("shared", "/srv", None),
            root("b", "/srv/b", Some(&["team-b"])),
        ];
        let (r, rel) = locate(&roots, "team-b", Path::new("/srv/b/x.csv")).unwrap();
        assert_eq!((r.name.as_str(), rel), ("b", PathBuf::from("x.csv")));
        // Another project still reads it through the shared root that contains it.
        let (r, _) = locate(&roots, "team-a", Path::new("/srv/b/x.csv")).unwrap();
        assert_eq!(r.name, "shared");
    }
}
