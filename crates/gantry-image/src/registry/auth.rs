//! Registry credentials (Gantry's own `auth.json`, then Docker's `config.json`) and the
//! `WWW-Authenticate` challenges registries answer with.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::ImageError;

/// A user name and password (or token) for one registry. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

impl Credentials {
    /// The value of a `Basic` Authorization header.
    pub(crate) fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// Docker's credential file shape, which Gantry's `auth.json` shares.
#[derive(Default, Deserialize, Serialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Default, Deserialize, Serialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

/// Where credentials come from: `GANTRY_HOME/auth.json` (written by `gantry login`, mode 0600)
/// first, then Docker's `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (`auths`
/// entries only; credential helpers are not run).
#[derive(Clone, Debug, Default)]
pub struct CredentialStore {
    own: Option<PathBuf>,
    docker: Option<PathBuf>,
}

impl CredentialStore {
    /// Credentials from `own` (Gantry's file) and Docker's usual config file.
    pub fn new(own: PathBuf) -> CredentialStore {
        let docker = std::env::var_os("DOCKER_CONFIG")
            .map(|d| PathBuf::from(d).join("config.json"))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
            });
        CredentialStore {
            own: Some(own),
            docker,
        }
    }

    /// No credentials at all: anonymous access only.
    pub fn anonymous() -> CredentialStore {
        CredentialStore::default()
    }

    /// The file `gantry login` writes.
    pub fn path(&self) -> Option<&Path> {
        self.own.as_deref()
    }

    /// The credentials for `registry` (`localhost:5000`, `docker.io`), if any file has some.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, ImageError> {
        for path in [&self.own, &self.docker].into_iter().flatten() {
            let Some(file) = read_config(path)? else {
                continue;
            };
            for (key, entry) in &file.auths {
                if same_registry(key, registry)
                    && let Some(creds) = decode(entry, path, key)?
                {
                    return Ok(Some(creds));
                }
            }
        }
        Ok(None)
    }

    /// Stores `creds` for `registry` in Gantry's file (0600, replaced atomically).
    pub fn login(&self, registry: &str, creds: &Credentials) -> Result<PathBuf, ImageError> {
        let path = self.own.clone().ok_or_else(|| {
            ImageError::Unsupported("no credential file is configured".to_string())
        })?;
        let mut file = read_config(&path)?.unwrap_or_default();
        file.auths.retain(|k, _| !same_registry(k, registry));
        file.auths.insert(
            registry.to_string(),
            AuthEntry {
                auth: Some(STANDARD.encode(format!("{}:{}", creds.username, creds.password))),
                ..AuthEntry::default()
            },
        );
        write_private(&path, &file)?;
        Ok(path)
    }

    /// Forgets `registry` in Gantry's file; true when there was something to forget.
    pub fn logout(&self, registry: &str) -> Result<bool, ImageError> {
        let Some(path) = self.own.clone() else {
            return Ok(false);
        };
        let Some(mut file) = read_config(&path)? else {
            return Ok(false);
        };
        let before = file.auths.len();
        file.auths.retain(|k, _| !same_registry(k, registry));
        if file.auths.len() == before {
            return Ok(false);
        }
        write_private(&path, &file)?;
        Ok(true)
    }
}

fn read_config(path: &Path) -> Result<Option<ConfigFile>, ImageError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ImageError::io("cannot read credentials", path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ImageError::json(format!("credential file {}", path.display()), e))
}

fn decode(entry: &AuthEntry, path: &Path, key: &str) -> Result<Option<Credentials>, ImageError> {
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials {
            username: username.clone(),
            password: password.clone(),
        }));
    }
    let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        ImageError::Malformed(format!(
            "{}: the `auth` of {key:?} is not base64 of `user:password`",
            path.display()
        ))
    };
    let decoded = STANDARD.decode(auth.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (username, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

fn write_private(path: &Path, file: &ConfigFile) -> Result<(), ImageError> {
    let bytes = serde_json::to_vec_pretty(file).map_err(|e| ImageError::json("credentials", e))?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| ImageError::io("cannot create", dir, e))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| ImageError::io("cannot write", &tmp, e))?;
    out.write_all(&bytes)
        .and_then(|()| out.sync_all())
        .map_err(|e| ImageError::io("cannot write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| ImageError::io("cannot replace", path, e))
}

/// Docker writes keys as `host`, `https://host`, `https://index.docker.io/v1/`.
fn same_registry(key: &str, registry: &str) -> bool {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let key = key.split('/').next().unwrap_or(key);
    let hub = |r: &str| matches!(r, "docker.io" | "index.docker.io" | "registry-1.docker.io");
    key == registry || (hub(key) && hub(registry))
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses the first challenge of a `WWW-Authenticate` value (`Bearer realm="…",service="…"`).
pub(crate) fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `k="v", k2=v2` with quoted values that may hold commas and escaped quotes.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if chars.next().is_none() || name.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name.trim().to_string(), value.trim().to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        assert_eq!(
            parse_challenge("Basic realm=\"basic-realm\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn credentials_round_trip_privately_and_docker_keys_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore {
            own: Some(dir.path().join("auth.json")),
            docker: Some(dir.path().join("docker.json")),
        };
        assert_eq!(store.get("localhost:5000").unwrap(), None);
        let creds = Credentials {
            username: "u".into(),
            password: "p:w".into(),
        };
        store.login("localhost:5000", &creds).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("auth.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(store.get("localhost:5000").unwrap(), Some(creds.clone()));
        assert!(!format!("{creds:?}").contains("p:w"));

        fs::write(
            dir.path().join("docker.json"),
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}}}},"credsStore":"desktop"}}"#,
                STANDARD.encode("hub:secret")
            ),
        )
        .unwrap();
        assert_eq!(store.get("docker.io").unwrap().unwrap().username, "hub");
        assert!(store.logout("localhost:5000").unwrap());
        assert_eq!(store.get("localhost:5000").unwrap(), None);
        assert!(!store.logout("localhost:5000").unwrap());
    }
}
