//! Who is calling, and what they may do.
//!
//! The request middleware (see `auth::layer`, written with the token store) resolves
//! every request to a [`Principal`] and inserts it into the request extensions; handlers
//! take `axum::Extension<Principal>` and ask it before writing. In local mode (no
//! `--auth`) every request is the local admin.

use serde::Serialize;

/// Roles, from least to most privileged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "editor" => Some(Role::Editor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Token name, or "local" in single-user mode.
    pub name: String,
    pub role: Role,
    /// A token scoped to one project sees and changes only that project.
    pub project: Option<String>,
}

impl Principal {
    /// The single user of a server without `--auth`.
    pub fn local() -> Principal {
        Principal {
            name: "local".into(),
            role: Role::Admin,
            project: None,
        }
    }

    pub fn can_write(&self) -> bool {
        self.role >= Role::Editor
    }

    pub fn can_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this caller may see or change things of `project`.
    pub fn can_access_project(&self, project: &str) -> bool {
        self.project.as_deref().is_none_or(|p| p == project)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_privilege() {
        let viewer = Principal {
            name: "v".into(),
            role: Role::Viewer,
            project: Some("a".into()),
        };
        assert!(!viewer.can_write() && !viewer.can_admin());
        assert!(viewer.can_access_project("a") && !viewer.can_access_project("b"));
        let editor = Principal {
            role: Role::Editor,
            ..viewer.clone()
        };
        assert!(editor.can_write() && !editor.can_admin());
        assert!(Principal::local().can_admin());
        assert!(Principal::local().can_access_project("anything"));
        assert_eq!(Role::parse("editor"), Some(Role::Editor));
        assert_eq!(Role::parse("root"), None);
    }
}
