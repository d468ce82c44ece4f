//! OCI registries for tests: a real one ([`TestRegistry`], Debian's `docker-registry`, pushed to
//! with `skopeo`) and a lying one ([`HostileRegistry`], a tiny HTTP/1.1 server serving whatever
//! a test tells it to), plus small OCI images built without network ([`build_image`],
//! [`make_oci_archive`], [`busybox_oci_archive`]).
//!
//! Include it next to skip.rs in any crate's tests (it needs only std and `tempfile`):
//!
//! ```ignore
//! #[path = "../../../testing/skip.rs"]
//! mod skip;
//! #[path = "../../../testing/registry.rs"]
//! mod registry;
//! ```
//!
//! (It includes its own copy of skip.rs, so it works wherever the test declares `mod skip`, or
//! without one.) [`TestRegistry::start`] returns None after `skip::because` when
//! `docker-registry` or `skopeo` is missing, which fails the test under
//! `GANTRY_TEST_REQUIRE_ALL=1`.
//!
//! Images are built in-process with no crates: a hand-written ustar writer, gzip made of
//! stored (uncompressed) deflate blocks, and a small SHA-256. They are valid OCI images that
//! skopeo, the registry and any tar/gzip reader accept; they are only not compressed.

// Not every test binary that includes this uses all of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// Its own copy of skip.rs, so this works whether or not (and wherever) the test declares
// `mod skip`.
#[allow(clippy::duplicate_mod)]
#[path = "skip.rs"]
mod skip;

/// Media types used by the images built here.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

const INSTALL_HINT: &str = "install the Debian packages docker-registry, skopeo and apache2-utils";

// ------------------------------------------------------------------------------------------
// TestRegistry: a real distribution registry
// ------------------------------------------------------------------------------------------

/// A `docker-registry serve` (distribution 2.8) on 127.0.0.1 with filesystem storage in a
/// tempdir, killed on drop.
pub struct TestRegistry {
    /// `127.0.0.1:PORT`, for `docker://{addr}/repo:tag` and image names like `{addr}/repo:tag`.
    pub addr: String,
    /// Basic-auth credentials, when started with [`TestRegistry::start_with_basic_auth`].
    pub user: Option<String>,
    pub password: Option<String>,
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestRegistry {
    /// An anonymous registry, or None (after `skip::because`) when `docker-registry` or
    /// `skopeo` is missing.
    #[track_caller]
    pub fn start() -> Option<TestRegistry> {
        Self::start_inner(None)
    }

    /// A registry that requires HTTP basic auth (htpasswd, bcrypt) for everything, `/v2/`
    /// included; None (after `skip::because`) when `docker-registry`, `skopeo` or `htpasswd`
    /// is missing.
    #[track_caller]
    pub fn start_with_basic_auth(user: &str, password: &str) -> Option<TestRegistry> {
        Self::start_inner(Some((user, password)))
    }

    #[track_caller]
    fn start_inner(auth: Option<(&str, &str)>) -> Option<TestRegistry> {
        Self::start_configured(match auth {
            Some((user, password)) => RegistryAuth::Basic { user, password },
            None => RegistryAuth::None,
        })
    }

    #[track_caller]
    fn start_configured(auth: RegistryAuth<'_>) -> Option<TestRegistry> {
        let creds = auth.credentials();
        let Some(registry_bin) = find_program(&["docker-registry", "registry"]) else {
            skip::because(&format!(
                "the registry binary docker-registry is missing: {INSTALL_HINT}"
            ));
            return None;
        };
        if find_program(&["skopeo"]).is_none() {
            skip::because(&format!("skopeo is missing: {INSTALL_HINT}"));
            return None;
        }
        let htpasswd_bin = if matches!(auth, RegistryAuth::Basic { .. }) {
            let Some(bin) = find_program(&["htpasswd"]) else {
                skip::because(&format!("htpasswd is missing: {INSTALL_HINT}"));
                return None;
            };
            Some(bin)
        } else {
            None
        };

        let dir = tempfile::Builder::new()
            .prefix("gantry-test-registry-")
            .tempdir()
            .expect("creating the registry's tempdir");
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).expect("creating the registry's storage dir");
        let htpasswd_path = dir.path().join("htpasswd");
        if let (RegistryAuth::Basic { user, password }, Some(bin)) = (&auth, &htpasswd_bin) {
            let out = Command::new(bin)
                .args(["-Bbn", user, password])
                .output()
                .expect("running htpasswd");
            assert!(
                out.status.success(),
                "htpasswd -Bbn failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            fs::write(&htpasswd_path, &out.stdout).expect("writing htpasswd");
        }
        // A header only this registry sends, so the readiness check can never be answered by
        // some other server that took the port in a race.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let token = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let log_path = dir.path().join("registry.log");

        let mut last_failure = String::new();
        for _attempt in 0..8 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let mut config = format!(
                "version: 0.1\n\
                 log:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n  headers:\n    X-Gantry-Test-Registry: [\"{token}\"]\n",
                storage = json_string(&storage.to_string_lossy()),
            );
            match &auth {
                RegistryAuth::None => {}
                RegistryAuth::Basic { .. } => config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: gantry-test-registry\n    path: {}\n",
                    json_string(&htpasswd_path.to_string_lossy())
                )),
                RegistryAuth::Token {
                    realm,
                    service,
                    issuer,
                    root_cert_bundle,
                    ..
                } => config.push_str(&format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    json_string(realm),
                    json_string(service),
                    json_string(issuer),
                    json_string(&root_cert_bundle.to_string_lossy())
                )),
            }
            let config_path = dir.path().join("config.yml");
            fs::write(&config_path, config).expect("writing the registry config");
            let log = fs::File::create(&log_path).expect("creating the registry log");
            let mut cmd = Command::new(&registry_bin);
            cmd.arg("serve")
                .arg(&config_path)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("cloning the log file handle"))
                .stderr(log);
            // REGISTRY_* variables override the config file.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("REGISTRY_") {
                    cmd.env_remove(key);
                }
            }
            let mut child = cmd.spawn().expect("starting docker-registry");
            let expected = if creds.is_some() { 401 } else { 200 };
            match wait_ready(&mut child, &addr, expected, &token) {
                Ok(()) => {
                    return Some(TestRegistry {
                        addr,
                        user: creds.map(|(u, _)| u.to_string()),
                        password: creds.map(|(_, p)| p.to_string()),
                        dir,
                        child,
                    });
                }
                Err(failure) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let tail = log_tail(&log_path);
                    if tail.contains("address already in use") {
                        // Another process took the port between free_port() and the bind.
                        last_failure = failure;
                        continue;
                    }
                    panic!("{failure}; docker-registry's log ends:\n{tail}");
                }
            }
        }
        panic!("docker-registry never found a free port: {last_failure}");
    }

    /// The last 4 KiB of the registry's own log (stdout and stderr).
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("registry.log"))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The registry's tempdir (config.yml, htpasswd, registry.log, storage/).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `user:password` when this registry has auth.
    fn creds(&self) -> Option<String> {
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => Some(format!("{u}:{p}")),
            _ => None,
        }
    }

    /// `skopeo copy --dest-tls-verify=false [--dest-creds user:pass] SRC docker://ADDR/DEST`.
    /// `src` is any skopeo transport: `oci-archive:/x.tar`, `oci:/dir:tag`,
    /// `docker-archive:/x.tar`; `dest` is `repo:tag` (or `repo@sha256:…`). Panics with
    /// skopeo's stderr on failure.
    #[track_caller]
    pub fn skopeo_copy(&self, src: &str, dest: &str) {
        let mut args = vec!["copy".to_string(), "--dest-tls-verify=false".to_string()];
        if let Some(creds) = self.creds() {
            args.push("--dest-creds".to_string());
            args.push(creds);
        }
        args.push(src.to_string());
        args.push(format!("docker://{}/{dest}", self.addr));
        self.skopeo(&args);
    }

    /// The manifest digest (`sha256:…`) the registry holds for `reference` (`repo:tag`).
    #[track_caller]
    /// Pushes `image` as `dest` (`repo:tag`) with skopeo (through an oci-archive); returns the
    /// digest the registry reports.
    pub fn push_image(&self, image: &BuiltImage, dest: &str) -> String {
        let dir = tempfile::tempdir().expect("a temp dir");
        let archive = dir.path().join("image.oci.tar");
        image.write_oci_archive(&archive, "latest");
        self.skopeo_copy(&format!("oci-archive:{}", archive.display()), dest);
        self.skopeo_inspect_digest(dest)
    }

    pub fn skopeo_inspect_digest(&self, reference: &str) -> String {
        let mut args = vec!["inspect".to_string(), "--tls-verify=false".to_string()];
        if let Some(creds) = self.creds() {
            args.push("--creds".to_string());
            args.push(creds);
        }
        args.push("--format".to_string());
        args.push("{{.Digest}}".to_string());
        args.push(format!("docker://{}/{reference}", self.addr));
        self.skopeo(&args).trim().to_string()
    }

    /// Copies `reference` (`repo:tag` or `repo@sha256:…`) out of the registry into the OCI
    /// layout directory `dest_dir` (`oci:DEST_DIR[:TAG]`, TAG being the reference's tag when
    /// it has one).
    #[track_caller]
    pub fn skopeo_copy_to_oci_layout(&self, reference: &str, dest_dir: &Path) {
        let mut args = vec!["copy".to_string(), "--src-tls-verify=false".to_string()];
        if let Some(creds) = self.creds() {
            args.push("--src-creds".to_string());
            args.push(creds);
        }
        args.push(format!("docker://{}/{reference}", self.addr));
        let dest = match reference_tag(reference) {
            Some(tag) => format!("oci:{}:{tag}", dest_dir.display()),
            None => format!("oci:{}", dest_dir.display()),
        };
        args.push(dest);
        self.skopeo(&args);
    }

    /// Runs `skopeo --insecure-policy ARGS…` (HOME-independent: a policy file is not needed);
    /// returns its stdout, panics with its stderr on failure.
    #[track_caller]
    pub fn skopeo(&self, args: &[String]) -> String {
        let out = Command::new("skopeo")
            .arg("--insecure-policy")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running skopeo");
        assert!(
            out.status.success(),
            "skopeo {} failed ({}):\n{}\ndocker-registry's log ends:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Where the registry's filesystem storage keeps the blob `digest` (`sha256:HEX`):
    /// `storage/docker/registry/v2/blobs/sha256/HE/HEX/data`. Blobs are shared by all
    /// repositories; `repo` is only checked to hold it (as a layer, config or manifest).
    /// Overwrite the file keeping its length (see [`TestRegistry::corrupt_blob`]) to make the
    /// registry serve content that does not match its digest.
    #[track_caller]
    pub fn blob_data_path(&self, repo: &str, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "not a sha256 digest: {digest}"
        );
        let v2 = self.dir.path().join("storage/docker/registry/v2");
        let repo_dir = v2.join("repositories").join(repo);
        let linked = repo_dir
            .join("_layers/sha256")
            .join(hex)
            .join("link")
            .exists()
            || repo_dir
                .join("_manifests/revisions/sha256")
                .join(hex)
                .join("link")
                .exists();
        assert!(
            linked,
            "repository {repo} on {} holds no blob {digest}",
            self.addr
        );
        v2.join("blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Flips one byte in the middle of the stored blob (same length, so the registry still
    /// serves it whole): the registry then serves content that does not match `digest`.
    #[track_caller]
    pub fn corrupt_blob(&self, repo: &str, digest: &str) {
        let path = self.blob_data_path(repo, digest);
        let mut data = fs::read(&path).expect("reading the stored blob");
        assert!(!data.is_empty(), "cannot corrupt the empty blob {digest}");
        let middle = data.len() / 2;
        data[middle] ^= 0xff;
        fs::write(&path, data).expect("rewriting the stored blob");
    }

    /// An HTTP request to this registry, with its credentials when `with_auth`.
    pub fn get(&self, path: &str, with_auth: bool) -> HttpResponse {
        let auth = match (&self.user, &self.password, with_auth) {
            (Some(u), Some(p), true) => Some((u.as_str(), p.as_str())),
            _ => None,
        };
        http_get(&self.addr, path, auth)
    }
}

/// The last 4 KiB of the file `path`.
fn log_tail(path: &Path) -> String {
    let data = fs::read(path).unwrap_or_default();
    let start = data.len().saturating_sub(4096);
    String::from_utf8_lossy(&data[start..]).into_owned()
}

/// Polls `GET /v2/` on `addr` until it answers as the registry started with `token` (status
/// `expected`: 200, or 401 with auth), for 10 s.
fn wait_ready(child: &mut Child, addr: &str, expected: u16, token: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("docker-registry exited early ({status})"));
        }
        match http_request_timeout("GET", addr, "/v2/", None, Duration::from_secs(2)) {
            Ok(resp) if resp.header("X-Gantry-Test-Registry") == Some(token) => {
                if resp.status == expected {
                    return Ok(());
                }
                return Err(format!(
                    "GET /v2/ answered {} instead of {expected}: {}",
                    resp.status,
                    String::from_utf8_lossy(&resp.body)
                ));
            }
            Ok(resp) => last = format!("GET /v2/ answered {} from another server", resp.status),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "docker-registry on {addr} was not ready within 10 s ({last})"
    ))
}

/// The tag of `repo:tag`, None for `repo` or `repo@digest`.
fn reference_tag(reference: &str) -> Option<&str> {
    if reference.contains('@') {
        return None;
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.split_once(':').map(|(_, tag)| tag)
}

/// The first of `names` found on PATH (or in /usr/bin, /usr/sbin).
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push(PathBuf::from("/usr/bin"));
    dirs.push(PathBuf::from("/usr/sbin"));
    for name in names {
        for dir in &dirs {
            let candidate = dir.join(name);
            if let Ok(meta) = fs::metadata(&candidate) {
                use std::os::unix::fs::PermissionsExt;
                if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                    return Some(candidate);
                }
            }
        }
    }
    None
}

/// A port that was free a moment ago on 127.0.0.1 (bind :0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

// ------------------------------------------------------------------------------------------
// Bearer tokens: a registry that trusts a token service, and the token service
// ------------------------------------------------------------------------------------------

/// How [`TestRegistry::start_configured`] protects the registry.
enum RegistryAuth<'a> {
    None,
    Basic {
        user: &'a str,
        password: &'a str,
    },
    /// `auth: token:`: the registry answers 401 with a `Bearer realm=…` challenge and accepts
    /// the JWTs that the certificate in `root_cert_bundle` signed.
    Token {
        user: &'a str,
        password: &'a str,
        realm: &'a str,
        service: &'a str,
        issuer: &'a str,
        root_cert_bundle: &'a Path,
    },
}

impl RegistryAuth<'_> {
    /// The user name and password a client presents (to the registry, or the token service).
    fn credentials(&self) -> Option<(&str, &str)> {
        match self {
            RegistryAuth::None => None,
            RegistryAuth::Basic { user, password } | RegistryAuth::Token { user, password, .. } => {
                Some((user, password))
            }
        }
    }
}

/// The `service` the token-auth registry names in its challenges (the tokens' `aud`).
pub const TOKEN_SERVICE: &str = "gantry-test-registry";
/// The `iss` of the tokens the [`TokenServer`] issues, which the registry trusts.
pub const TOKEN_ISSUER: &str = "gantry-test-token-issuer";

impl TestRegistry {
    /// A registry that speaks the Docker token flow (distribution's `auth: token:`), and the
    /// [`TokenServer`] it sends clients to. Every request without a valid bearer token gets
    /// `401` with `WWW-Authenticate: Bearer realm="http://127.0.0.1:PORT/token",
    /// service="gantry-test-registry",scope=…`; the token server gives `user`/`password`
    /// (HTTP basic) tokens for pull and push on every repository but those under `readonly/`
    /// (pull only). `user`/`password` are also
    /// this registry's `user`/`password`, so the skopeo helpers pass them (skopeo speaks the
    /// token flow); [`TestRegistry::get`] with auth does not (it only speaks basic auth).
    ///
    /// None (after `skip::because`) when `docker-registry` or `skopeo` is missing, or no
    /// Python with `cryptography` is found (see [`python_with_cryptography`]).
    #[track_caller]
    pub fn start_with_token_auth(
        user: &str,
        password: &str,
    ) -> Option<(TestRegistry, TokenServer)> {
        let tokens = TokenServer::start(user, password)?;
        let realm = tokens.realm();
        let registry = Self::start_configured(RegistryAuth::Token {
            user,
            password,
            realm: &realm,
            service: TOKEN_SERVICE,
            issuer: TOKEN_ISSUER,
            root_cert_bundle: &tokens.root_cert_bundle(),
        })?;
        Some((registry, tokens))
    }
}

/// A Python that can `import cryptography`: `GANTRY_TEST_MLFLOW_PYTHON` when set (scripts/test.sh
/// sets it), else the first `.venv-test/bin/python` in this crate's directory or one above it
/// (the workspace's). None after `skip::because` when there is none, or it lacks
/// `cryptography`.
#[track_caller]
pub fn python_with_cryptography() -> Option<PathBuf> {
    const ENV: &str = "GANTRY_TEST_MLFLOW_PYTHON";
    let python = match std::env::var(ENV) {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let found = Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|dir| dir.join(".venv-test/bin/python"))
                .find(|p| p.exists());
            let Some(found) = found else {
                skip::because(&format!(
                    "{ENV} is not set and no .venv-test/bin/python was found: set it to a \
                     python with `cryptography` installed (scripts/test.sh makes .venv-test)"
                ));
                return None;
            };
            found
        }
    };
    let works = Command::new(&python)
        .args(["-c", "import cryptography"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        skip::because(&format!(
            "{} cannot `import cryptography`: pip install cryptography (scripts/test.sh pins it)",
            python.display()
        ));
        return None;
    }
    Some(python)
}

/// One request the [`TokenServer`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The client's `User-Agent` (`gantry/0.1.0`, `containers/5.x (github.com/containers/image)`).
    pub user_agent: String,
    /// The user of the request's HTTP basic credentials; None when anonymous.
    pub user: Option<String>,
    /// `granted` (right credentials: a token with the access asked for), `anonymous` (no
    /// credentials: a token with no access at all) or `refused` (wrong credentials: 401, no
    /// token).
    pub outcome: String,
    /// The `service` query parameter.
    pub service: String,
    /// The `scope` query parameters, as sent (`repository:team/app:pull,push`).
    pub scopes: Vec<String>,
    /// The token's `access`, one `repository:NAME:ACTIONS` each (empty for anonymous).
    pub granted: Vec<String>,
}

/// A Docker-style token service (`GET /token?service=…&scope=…`, HTTP basic credentials) on
/// 127.0.0.1, run as a small Python script with `cryptography`: at startup it makes an EC
/// P-256 key and a self-signed certificate (the registry's `rootcertbundle`) and signs ES256
/// JWTs whose header carries the certificate in `x5c`, which is what distribution verifies
/// against the bundle. Right credentials get a token with the actions asked for (`pull`,
/// `push`; only `pull` on repositories under `readonly/`); no credentials get a token with no access, as Docker Hub's token service answers an
/// anonymous client (the registry then answers 401 `insufficient_scope`); wrong credentials
/// get 401 and no token. Every request is logged ([`TokenServer::requests`]). Killed on drop.
pub struct TokenServer {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TokenServer {
    /// A token service that knows one `user` with `password`; None (after `skip::because`)
    /// without a Python with `cryptography`.
    #[track_caller]
    pub fn start(user: &str, password: &str) -> Option<TokenServer> {
        let python = python_with_cryptography()?;
        let dir = tempfile::Builder::new()
            .prefix("gantry-test-token-server-")
            .tempdir()
            .expect("creating the token server's tempdir");
        let script = dir.path().join("token_server.py");
        fs::write(&script, TOKEN_SERVER_PY).expect("writing the token server script");
        let log = fs::File::create(dir.path().join("server.log"))
            .expect("creating the token server's log");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(dir.path())
            .arg(TOKEN_ISSUER)
            .env("GANTRY_TEST_TOKEN_USER", user)
            .env("GANTRY_TEST_TOKEN_PASSWORD", password)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log file handle"))
            .stderr(log)
            .spawn()
            .expect("starting the token server");
        // The script binds 127.0.0.1:0, writes the certificate, then the port (renamed into
        // place, so a half-written file is never read).
        let port_file = dir.path().join("port");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(text) = fs::read_to_string(&port_file)
                && let Ok(port) = text.trim().parse::<u16>()
            {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the token server exited early ({status}); its log ends:\n{}",
                    log_tail(&dir.path().join("server.log"))
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the token server did not start within 30 s; its log ends:\n{}",
                    log_tail(&dir.path().join("server.log"))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Some(TokenServer {
            addr: format!("127.0.0.1:{port}"),
            dir,
            child,
        })
    }

    /// `http://127.0.0.1:PORT/token`, the realm the registry names.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The PEM certificate whose key signs the tokens.
    pub fn root_cert_bundle(&self) -> PathBuf {
        self.dir.path().join("root.pem")
    }

    /// The last 4 KiB of the script's own output (tracebacks).
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("server.log"))
    }

    /// Every token request answered so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        let text = fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default();
        let words = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                assert_eq!(f.len(), 6, "a malformed token server log line: {line:?}");
                TokenRequest {
                    user_agent: f[0].to_string(),
                    user: (f[1] != "-").then(|| f[1].to_string()),
                    outcome: f[2].to_string(),
                    service: f[3].to_string(),
                    scopes: words(f[4]),
                    granted: words(f[5]),
                }
            })
            .collect()
    }
}

/// The token service [`TokenServer`] runs: `python token_server.py DIR ISSUER`, the user and
/// password in `GANTRY_TEST_TOKEN_USER`/`GANTRY_TEST_TOKEN_PASSWORD`. Writes `DIR/root.pem`,
/// then `DIR/port`; logs one tab-separated line per request to `DIR/requests.log`
/// (user agent, user or `-`, outcome, service, scopes, granted access).
const TOKEN_SERVER_PY: &str = r##"
import base64, datetime, hmac, json, os, sys, threading, time, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

DIR, ISSUER = sys.argv[1], sys.argv[2]
USER = os.environ["GANTRY_TEST_TOKEN_USER"]
PASSWORD = os.environ["GANTRY_TEST_TOKEN_PASSWORD"]
ALLOWED = ("pull", "push")

key = ec.generate_private_key(ec.SECP256R1())
now = datetime.datetime.now(datetime.timezone.utc)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gantry test token issuer")])
cert = (
    x509.CertificateBuilder()
    .subject_name(name)
    .issuer_name(name)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(hours=1))
    .not_valid_after(now + datetime.timedelta(days=2))
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .add_extension(
        x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=False,
            encipher_only=False, decipher_only=False,
        ),
        critical=True,
    )
    .sign(key, hashes.SHA256())
)
X5C = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims):
    header = {"typ": "JWT", "alg": "ES256", "x5c": X5C}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    # JWS ES256 signatures are r || s, 32 bytes each (not DER).
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def parse_scope(scope):
    # repository:NAME:ACTIONS; NAME may hold no colon for repositories, but split safely.
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return kind, name, [a for a in actions.split(",") if a]


LOG_LOCK = threading.Lock()


def log(*fields):
    clean = [str(f).replace("\t", " ").replace("\n", " ") for f in fields]
    with LOG_LOCK, open(os.path.join(DIR, "requests.log"), "a") as f:
        f.write("\t".join(clean) + "\n")
        f.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body, extra=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path != "/token":
            self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            return
        query = parse_qs(url.query)
        service = query.get("service", [""])[0]
        scopes = query.get("scope", [])
        agent = self.headers.get("User-Agent", "")
        user = None
        auth = self.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except Exception:
                user, password = "?", None
            if not (hmac.compare_digest(user.encode(), USER.encode()) and password is not None
                    and hmac.compare_digest(password.encode(), PASSWORD.encode())):
                log(agent, user or "?", "refused", service, " ".join(scopes), "")
                self.reply(
                    401,
                    {"errors": [{"code": "UNAUTHORIZED", "message": "wrong user name or password"}]},
                    [("WWW-Authenticate", 'Basic realm="gantry-test-token-server"')],
                )
                return
        access = []
        if user is not None:
            for scope in scopes:
                kind, name, actions = parse_scope(scope)
                if kind == "repository" and name:
                    allowed = ("pull",) if name.startswith("readonly/") else ALLOWED
                    granted = [a for a in actions if a in allowed]
                    access.append({"type": "repository", "name": name, "actions": granted})
        issued = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": service,
            "exp": issued + 300,
            "nbf": issued - 10,
            "iat": issued,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt(claims)
        log(
            agent,
            user or "-",
            "granted" if user is not None else "anonymous",
            service,
            " ".join(scopes),
            " ".join("%s:%s:%s" % (a["type"], a["name"], ",".join(a["actions"])) for a in access),
        )
        self.reply(
            200,
            {
                "token": token,
                "access_token": token,
                "expires_in": 300,
                "issued_at": datetime.datetime.fromtimestamp(issued, datetime.timezone.utc)
                .isoformat()
                .replace("+00:00", "Z"),
            },
        )

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(os.path.join(DIR, "root.pem"), "wb") as f:
    f.write(cert.public_bytes(serialization.Encoding.PEM))
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
server.serve_forever()
"##;

// ------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client
// ------------------------------------------------------------------------------------------

/// A response read by [`http_get`] (body de-chunked).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The `Accept` header [`http_get`] sends: distribution answers 404 to a manifest GET that
/// does not accept the manifest's media type.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, */*";

/// `GET path` on `addr` (`127.0.0.1:PORT`) with optional basic auth; panics on I/O errors.
/// Reads the whole body: not for huge responses.
#[track_caller]
pub fn http_get(addr: &str, path: &str, basic_auth: Option<(&str, &str)>) -> HttpResponse {
    http_request_timeout("GET", addr, path, basic_auth, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// `HEAD path` on `addr`; panics on I/O errors.
#[track_caller]
pub fn http_head(addr: &str, path: &str, basic_auth: Option<(&str, &str)>) -> HttpResponse {
    http_request_timeout("HEAD", addr, path, basic_auth, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("HEAD http://{addr}{path}: {e}"))
}

fn http_request_timeout(
    method: &str,
    addr: &str,
    path: &str,
    basic_auth: Option<(&str, &str)>,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let sock: std::net::SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address {addr}: {e}"))?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: gantry-test\r\nAccept: {MANIFEST_ACCEPT}\r\nConnection: close\r\n"
    );
    if let Some((user, password)) = basic_auth {
        request.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64(format!("{user}:{password}").as_bytes())
        ));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .map_err(|e| e.to_string())?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut resp = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if method == "HEAD" || status == 204 || status == 304 {
        return Ok(resp);
    }
    let chunked = resp
        .header("Transfer-Encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        loop {
            let mut size_line = String::new();
            reader
                .read_line(&mut size_line)
                .map_err(|e| e.to_string())?;
            let size_hex = size_line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| format!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size];
            reader.read_exact(&mut chunk).map_err(|e| e.to_string())?;
            resp.body.extend_from_slice(&chunk);
            let mut crlf = String::new();
            reader.read_line(&mut crlf).map_err(|e| e.to_string())?;
        }
    } else if let Some(len) = resp
        .header("Content-Length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        resp.body = vec![0; len];
        reader
            .read_exact(&mut resp.body)
            .map_err(|e| e.to_string())?;
    } else {
        reader
            .read_to_end(&mut resp.body)
            .map_err(|e| e.to_string())?;
    }
    Ok(resp)
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// SHA-256, gzip (stored blocks), ustar: enough to build OCI images without crates
// ------------------------------------------------------------------------------------------

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    sha256(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:HEX` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// SHA-256 (FIPS 180-4).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut message = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_be_bytes());
    let mut w = [0u32; 64];
    for block in message.chunks_exact(64) {
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (slot, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *slot = slot.wrapping_add(v);
        }
    }
    let mut out = [0u8; 32];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid gzip member holding `data` in stored (uncompressed) deflate blocks.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(u8::from(last));
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// One entry of a layer tar. Paths are written as given (no normalization), so hostile
/// entries such as `../../etc/evil` or `/etc/passwd` can be made.
#[derive(Debug, Clone)]
pub enum TarEntry {
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
}

impl TarEntry {
    /// A 0644 regular file.
    pub fn file(path: &str, data: &[u8]) -> TarEntry {
        TarEntry::File {
            path: path.to_string(),
            mode: 0o644,
            data: data.to_vec(),
        }
    }
    /// A 0755 regular file.
    pub fn exe(path: &str, data: &[u8]) -> TarEntry {
        TarEntry::File {
            path: path.to_string(),
            mode: 0o755,
            data: data.to_vec(),
        }
    }
    /// A 0755 directory.
    pub fn dir(path: &str) -> TarEntry {
        TarEntry::Dir {
            path: path.to_string(),
            mode: 0o755,
        }
    }
    pub fn symlink(path: &str, target: &str) -> TarEntry {
        TarEntry::Symlink {
            path: path.to_string(),
            target: target.to_string(),
        }
    }
    pub fn hardlink(path: &str, target: &str) -> TarEntry {
        TarEntry::Hardlink {
            path: path.to_string(),
            target: target.to_string(),
        }
    }
    fn path(&self) -> &str {
        match self {
            TarEntry::File { path, .. }
            | TarEntry::Dir { path, .. }
            | TarEntry::Symlink { path, .. }
            | TarEntry::Hardlink { path, .. } => path,
        }
    }
}

/// The entries for plain files `(path, content)`, each preceded by 0755 entries for its parent
/// directories not yet seen (only for relative paths without `..`; others go in as given).
pub fn file_entries(files: &[(&str, &[u8])]) -> Vec<TarEntry> {
    let mut seen = BTreeSet::new();
    let mut entries = Vec::new();
    for (path, data) in files {
        let clean = !path.starts_with('/') && !path.split('/').any(|c| c == "..");
        if clean {
            let parts: Vec<&str> = path
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .collect();
            for i in 1..parts.len() {
                let dir = format!("{}/", parts[..i].join("/"));
                if seen.insert(dir.clone()) {
                    entries.push(TarEntry::dir(&dir));
                }
            }
        }
        entries.push(TarEntry::file(path, data));
    }
    entries
}

/// A ustar archive of `entries` (root-owned, mtime 2023-11-14, two zero blocks at the end).
/// Panics on a path that ustar cannot hold (over 255 bytes, or no split into 155 + 100).
pub fn tar(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let (kind, mode, data, link): (u8, u32, &[u8], &str) = match entry {
            TarEntry::File { mode, data, .. } => (b'0', *mode, data, ""),
            TarEntry::Dir { mode, .. } => (b'5', *mode, &[], ""),
            TarEntry::Symlink { target, .. } => (b'2', 0o777, &[], target),
            TarEntry::Hardlink { target, .. } => (b'1', 0o644, &[], target),
        };
        out.extend_from_slice(&tar_header(
            entry.path(),
            kind,
            mode,
            data.len() as u64,
            link,
        ));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn tar_header(path: &str, kind: u8, mode: u32, size: u64, link: &str) -> [u8; 512] {
    fn put(h: &mut [u8; 512], at: usize, len: usize, value: &[u8]) {
        assert!(
            value.len() <= len,
            "tar field too long: {}",
            String::from_utf8_lossy(value)
        );
        h[at..at + value.len()].copy_from_slice(value);
    }
    fn octal(h: &mut [u8; 512], at: usize, len: usize, value: u64) {
        let s = format!("{value:0width$o}", width = len - 1);
        put(h, at, len, s.as_bytes());
    }
    let mut h = [0u8; 512];
    let (prefix, name) = if path.len() <= 100 {
        ("", path)
    } else {
        let split = path
            .char_indices()
            .filter(|&(i, c)| c == '/' && i <= 155 && path.len() - i - 1 <= 100)
            .map(|(i, _)| i)
            .next()
            .unwrap_or_else(|| panic!("path too long for ustar: {path}"));
        (&path[..split], &path[split + 1..])
    };
    put(&mut h, 0, 100, name.as_bytes());
    octal(&mut h, 100, 8, u64::from(mode));
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size);
    octal(&mut h, 136, 12, 1_700_000_000);
    h[148..156].copy_from_slice(b"        ");
    h[156] = kind;
    put(&mut h, 157, 100, link.as_bytes());
    put(&mut h, 257, 6, b"ustar\0");
    put(&mut h, 263, 2, b"00");
    put(&mut h, 265, 32, b"root");
    put(&mut h, 297, 32, b"root");
    put(&mut h, 345, 155, prefix.as_bytes());
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let checksum = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(checksum.as_bytes());
    h
}

// ------------------------------------------------------------------------------------------
// OCI images
// ------------------------------------------------------------------------------------------

/// One layer: the gzip'd tar as stored in a registry, its digest, and its diff ID (the digest
/// of the uncompressed tar, as listed in the config's rootfs).
#[derive(Debug, Clone)]
pub struct Layer {
    pub tar: Vec<u8>,
    pub gz: Vec<u8>,
    pub digest: String,
    pub diff_id: String,
}

impl Layer {
    /// A layer of `entries`.
    pub fn new(entries: &[TarEntry]) -> Layer {
        let tar = tar(entries);
        let gz = gzip(&tar);
        Layer {
            digest: digest_of(&gz),
            diff_id: digest_of(&tar),
            tar,
            gz,
        }
    }
}

/// A single-platform OCI image: config, layers and the manifest naming them, with digests.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layers: Vec<Layer>,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

/// The GOARCH name of this machine (`amd64`, `arm64`, …).
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// An image (linux, this machine's architecture) of `layers`, bottom first, with `cmd` as its
/// `Cmd` (none when empty).
pub fn build_image(layers: &[Vec<TarEntry>], cmd: &[&str]) -> BuiltImage {
    build_image_from_layers(layers.iter().map(|l| Layer::new(l)).collect(), cmd)
}

/// An image of ready-made layers (e.g. a [`Layer`] whose `gz` a test tampered with: the
/// manifest keeps the digest given in `Layer::digest`).
pub fn build_image_from_layers(layers: Vec<Layer>, cmd: &[&str]) -> BuiltImage {
    let diff_ids: Vec<String> = layers.iter().map(|l| json_string(&l.diff_id)).collect();
    let cmd_json = if cmd.is_empty() {
        String::new()
    } else {
        let args: Vec<String> = cmd.iter().map(|c| json_string(c)).collect();
        format!(",\"Cmd\":[{}]", args.join(","))
    };
    let config = format!(
        "{{\"architecture\":\"{}\",\"os\":\"linux\",\"created\":\"2023-11-14T22:13:20Z\",\
         \"config\":{{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"]{cmd_json}}},\
         \"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[{}]}}}}",
        oci_arch(),
        diff_ids.join(",")
    )
    .into_bytes();
    let config_digest = digest_of(&config);
    let layer_descs: Vec<String> = layers
        .iter()
        .map(|l| descriptor(OCI_LAYER_GZIP, &l.digest, l.gz.len(), None))
        .collect();
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{},\"layers\":[{}]}}",
        descriptor(OCI_CONFIG, &config_digest, config.len(), None),
        layer_descs.join(",")
    )
    .into_bytes();
    let manifest_digest = digest_of(&manifest);
    BuiltImage {
        config,
        config_digest,
        layers,
        manifest,
        manifest_digest,
    }
}

fn descriptor(media_type: &str, digest: &str, size: usize, ref_name: Option<&str>) -> String {
    let annotations = ref_name
        .map(|r| {
            format!(
                ",\"annotations\":{{\"org.opencontainers.image.ref.name\":{}}}",
                json_string(r)
            )
        })
        .unwrap_or_default();
    format!(
        "{{\"mediaType\":\"{media_type}\",\"digest\":\"{digest}\",\"size\":{size}{annotations}}}"
    )
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl BuiltImage {
    /// `(path, content)` of every file of the OCI layout of this image, tagged `tag`
    /// (`org.opencontainers.image.ref.name` in index.json).
    fn layout_files(&self, tag: &str) -> Vec<(String, Vec<u8>)> {
        let index = format!(
            "{{\"schemaVersion\":2,\"manifests\":[{}]}}",
            descriptor(
                OCI_MANIFEST,
                &self.manifest_digest,
                self.manifest.len(),
                Some(tag)
            )
        );
        let mut files = vec![
            (
                "oci-layout".to_string(),
                b"{\"imageLayoutVersion\":\"1.0.0\"}".to_vec(),
            ),
            ("index.json".to_string(), index.into_bytes()),
        ];
        let mut blobs: Vec<(&str, &[u8])> = vec![
            (&self.manifest_digest, &self.manifest),
            (&self.config_digest, &self.config),
        ];
        for layer in &self.layers {
            blobs.push((&layer.digest, &layer.gz));
        }
        let mut seen = BTreeSet::new();
        for (digest, data) in blobs {
            if seen.insert(digest.to_string()) {
                let hex = digest.trim_start_matches("sha256:");
                files.push((format!("blobs/sha256/{hex}"), data.to_vec()));
            }
        }
        files
    }

    /// Writes the OCI layout directory `dir` (created) holding this image as `tag`; for
    /// skopeo's `oci:DIR:TAG`.
    pub fn write_oci_layout(&self, dir: &Path, tag: &str) {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("creating the OCI layout");
        for (path, data) in self.layout_files(tag) {
            fs::write(dir.join(path), data).expect("writing the OCI layout");
        }
    }

    /// Writes the `oci-archive` tar `path` (an OCI layout in a tar) holding this image as
    /// `tag`; for skopeo's `oci-archive:PATH`.
    pub fn write_oci_archive(&self, path: &Path, tag: &str) {
        let mut entries = vec![TarEntry::dir("blobs/"), TarEntry::dir("blobs/sha256/")];
        for (p, data) in self.layout_files(tag) {
            entries.push(TarEntry::File {
                path: p,
                mode: 0o644,
                data,
            });
        }
        fs::write(path, tar(&entries)).expect("writing the OCI archive");
    }
}

/// Writes `DIR/<tag>.oci.tar`, an `oci-archive` of an image whose layers (bottom first) hold
/// the given files (parent directories added), tagged `tag`; returns its path. For
/// `registry.skopeo_copy(&format!("oci-archive:{}", path.display()), "repo:tag")`.
pub fn make_oci_archive(dir: &Path, layers: &[Vec<(&str, &[u8])>], tag: &str) -> PathBuf {
    let layers: Vec<Vec<TarEntry>> = layers.iter().map(|files| file_entries(files)).collect();
    let image = build_image(&layers, &[]);
    let name: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{name}.oci.tar"));
    image.write_oci_archive(&path, tag);
    path
}

/// The static busybox (`/bin/busybox` or one on PATH that is statically linked), if any.
pub fn static_busybox() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/bin/busybox")];
    if let Some(p) = find_program(&["busybox"]) {
        candidates.insert(0, p);
    }
    candidates.into_iter().find(|bb| {
        Command::new("ldd")
            .arg(bb)
            .output()
            .map(|o| {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                text.contains("not a dynamic") || text.contains("statically linked")
            })
            .unwrap_or(false)
    })
}

/// A single-layer busybox image like scripts/busybox-rootfs.sh makes (bin/busybox and a
/// symlink per applet, etc/passwd, etc/group, tmp 1777, proc sys dev gantry), `Cmd
/// ["/bin/sh"]`; None (after `skip::because`) without a static busybox.
#[track_caller]
pub fn busybox_image() -> Option<BuiltImage> {
    let Some(bb) = static_busybox() else {
        skip::because("a static busybox is missing: install the Debian package busybox-static");
        return None;
    };
    let binary = fs::read(&bb).expect("reading busybox");
    let list = Command::new(&bb)
        .arg("--list")
        .output()
        .expect("running busybox --list");
    let mut entries = vec![TarEntry::dir("./")];
    for d in ["bin/", "etc/", "proc/", "sys/", "dev/", "gantry/"] {
        entries.push(TarEntry::dir(d));
    }
    entries.push(TarEntry::Dir {
        path: "tmp/".to_string(),
        mode: 0o1777,
    });
    entries.push(TarEntry::exe("bin/busybox", &binary));
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            entries.push(TarEntry::symlink(&format!("bin/{applet}"), "busybox"));
        }
    }
    entries.push(TarEntry::file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    ));
    entries.push(TarEntry::file(
        "etc/group",
        b"root:x:0:\nnogroup:x:65534:\n",
    ));
    Some(build_image(&[entries], &["/bin/sh"]))
}

/// Writes `DIR/busybox.oci.tar`, an `oci-archive` of [`busybox_image`] tagged `latest`; None
/// (after `skip::because`) without a static busybox.
#[track_caller]
pub fn busybox_oci_archive(dir: &Path) -> Option<PathBuf> {
    let image = busybox_image()?;
    let path = dir.join("busybox.oci.tar");
    image.write_oci_archive(&path, "latest");
    Some(path)
}

// ------------------------------------------------------------------------------------------
// HostileRegistry: a server that says what the test wants
// ------------------------------------------------------------------------------------------

/// A response body. [`Body::Repeat`] and [`Body::Concat`] are streamed, so a test can serve
/// a 64 MiB manifest without building it.
#[derive(Debug, Clone)]
pub enum Body {
    Bytes(Vec<u8>),
    Repeat { byte: u8, len: u64 },
    Concat(Vec<Body>),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Repeat { len, .. } => *len,
            Body::Concat(parts) => parts.iter().map(Body::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the body; stops at the first error (the client hung up).
    fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        match self {
            Body::Bytes(b) => out.write_all(b),
            Body::Repeat { byte, len } => {
                let chunk = vec![*byte; 64 * 1024];
                let mut left = *len;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    out.write_all(&chunk[..n])?;
                    left -= n as u64;
                }
                Ok(())
            }
            Body::Concat(parts) => parts.iter().try_for_each(|p| p.write_to(out)),
        }
    }
}

/// What the [`HostileRegistry`] answers on one path. A `Content-Length` header is added from
/// the body unless `headers` has one (so a test can also lie about the length).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16, headers: &[(&str, &str)], body: Body) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
        }
    }

    /// 200, an OCI image manifest `body`, `Docker-Content-Digest: digest` (pass the real
    /// digest of `body` for an honest answer, another one for a lie).
    pub fn manifest(body: Vec<u8>, digest: &str) -> Response {
        Response::new(
            200,
            &[
                ("Content-Type", OCI_MANIFEST),
                ("Docker-Content-Digest", digest),
            ],
            Body::Bytes(body),
        )
    }

    /// 200, a blob `body`, `Docker-Content-Digest: digest`.
    pub fn blob(body: Vec<u8>, digest: &str) -> Response {
        Response::new(
            200,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Docker-Content-Digest", digest),
            ],
            Body::Bytes(body),
        )
    }

    /// 200 for a blob `body` that announces its whole length (`Content-Length`,
    /// `Docker-Content-Digest: digest`) but sends only its first `sent` bytes, then hangs up:
    /// a download that breaks off partway.
    pub fn blob_broken_off(body: &[u8], digest: &str, sent: usize) -> Response {
        assert!(
            sent < body.len(),
            "a broken-off blob must send less than its {} bytes",
            body.len()
        );
        let len = body.len().to_string();
        Response::new(
            200,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Docker-Content-Digest", digest),
                ("Content-Length", len.as_str()),
            ],
            Body::Bytes(body[..sent].to_vec()),
        )
    }

    /// A registry error (`{"errors":[{"code":CODE,…}]}`) with `status`.
    pub fn error(status: u16, code: &str) -> Response {
        let body = format!("{{\"errors\":[{{\"code\":\"{code}\",\"message\":\"{code}\"}}]}}");
        Response::new(
            status,
            &[("Content-Type", "application/json")],
            Body::Bytes(body.into_bytes()),
        )
    }
}

/// The routes of an honest registry serving `image` as `repo:tag`: the manifest by tag and by
/// digest, the config and every layer blob. Tests replace or add routes to lie.
pub fn image_routes(repo: &str, tag: &str, image: &BuiltImage) -> Vec<(String, Response)> {
    let mut routes = vec![
        (
            format!("/v2/{repo}/manifests/{tag}"),
            Response::manifest(image.manifest.clone(), &image.manifest_digest),
        ),
        (
            format!("/v2/{repo}/manifests/{}", image.manifest_digest),
            Response::manifest(image.manifest.clone(), &image.manifest_digest),
        ),
        (
            format!("/v2/{repo}/blobs/{}", image.config_digest),
            Response::blob(image.config.clone(), &image.config_digest),
        ),
    ];
    for layer in &image.layers {
        routes.push((
            format!("/v2/{repo}/blobs/{}", layer.digest),
            Response::blob(layer.gz.clone(), &layer.digest),
        ));
    }
    routes
}

/// The ready-made lies of [`HostileRegistry::scenario`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// `repo:tag` and `repo@D` (D the honest manifest's digest, also sent as
    /// Docker-Content-Digest) answer another manifest, whose sha256 is not D.
    ManifestDigestMismatch,
    /// `repo:tag` and `repo@D` answer a 64 MiB manifest (a JSON object padded with spaces,
    /// streamed, Content-Length announced), Docker-Content-Digest D.
    HugeManifest,
    /// An honest manifest whose (only) layer blob is served with one byte flipped, so its
    /// content does not match the digest the manifest names.
    LayerDigestMismatch,
    /// An honest image whose layer is a valid tar.gz with digest matching, holding
    /// `etc/ok` and then `../../etc/evil`: an unpacker must refuse it.
    PathEscapeLayer,
}

/// The size of [`Hostility::HugeManifest`]'s manifest.
pub const HUGE_MANIFEST_LEN: u64 = 64 << 20;

/// A tiny HTTP/1.1 server on 127.0.0.1 (one thread per connection, `Connection: close`) that
/// answers `GET`/`HEAD` by exact path (query string included, else without it) from its
/// routes, `/v2/` with 200 unless a route overrides it, anything else 404
/// `MANIFEST_UNKNOWN`/`BLOB_UNKNOWN`/`NOT_FOUND`. Stopped on drop.
pub struct HostileRegistry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    routes: Arc<Mutex<Vec<(String, Response)>>>,
    requests: Arc<Mutex<Vec<String>>>,
    recorded: Arc<Mutex<Vec<RecordedRequest>>>,
    ranged: Arc<Mutex<Vec<(String, RangedBlob)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HostileRegistry {
    /// Serves `routes` (`(path, response)`, e.g. `/v2/repo/manifests/tag`).
    pub fn start(routes: Vec<(String, Response)>) -> HostileRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("the listener's address")
            .to_string();
        let routes = Arc::new(Mutex::new(routes));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let ranged = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = Shared {
                routes: routes.clone(),
                requests: requests.clone(),
                recorded: recorded.clone(),
                ranged: ranged.clone(),
            };
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || serve_one(conn, &shared));
                }
            })
        };
        HostileRegistry {
            addr,
            routes,
            requests,
            recorded,
            ranged,
            stop,
            thread: Some(thread),
        }
    }

    /// A registry lying about `repo:tag` as `hostility` says; also returns the honest image
    /// (whose `manifest_digest` is the D the scenarios name, for pulls by digest).
    pub fn scenario(hostility: Hostility, repo: &str, tag: &str) -> (HostileRegistry, BuiltImage) {
        let honest_files =
            file_entries(&[("etc/ok", b"ok\n".as_slice()), ("bin/tool", b"#!/bin/sh\n")]);
        let (image, routes) = match hostility {
            Hostility::ManifestDigestMismatch => {
                let image = build_image(&[honest_files], &[]);
                let other = build_image(
                    &[file_entries(&[("etc/other", b"other\n".as_slice())])],
                    &[],
                );
                let mut routes = image_routes(repo, tag, &image);
                // The other image's blobs, for a client that follows the lying manifest.
                for (path, response) in image_routes(repo, &other.manifest_digest, &other) {
                    if path.contains("/blobs/") {
                        set_route(&mut routes, &path, response);
                    }
                }
                for path in [
                    format!("/v2/{repo}/manifests/{tag}"),
                    format!("/v2/{repo}/manifests/{}", image.manifest_digest),
                ] {
                    set_route(
                        &mut routes,
                        &path,
                        Response::manifest(other.manifest.clone(), &image.manifest_digest),
                    );
                }
                (image, routes)
            }
            Hostility::HugeManifest => {
                let image = build_image(&[honest_files], &[]);
                let head = b"{\"schemaVersion\":2,".to_vec();
                let tail = b"\"layers\":[]}".to_vec();
                let pad = HUGE_MANIFEST_LEN - head.len() as u64 - tail.len() as u64;
                let body = Body::Concat(vec![
                    Body::Bytes(head),
                    Body::Repeat {
                        byte: b' ',
                        len: pad,
                    },
                    Body::Bytes(tail),
                ]);
                let huge = Response::new(
                    200,
                    &[
                        ("Content-Type", OCI_MANIFEST),
                        ("Docker-Content-Digest", image.manifest_digest.as_str()),
                    ],
                    body,
                );
                let mut routes = image_routes(repo, tag, &image);
                for path in [
                    format!("/v2/{repo}/manifests/{tag}"),
                    format!("/v2/{repo}/manifests/{}", image.manifest_digest),
                ] {
                    set_route(&mut routes, &path, huge.clone());
                }
                (image, routes)
            }
            Hostility::LayerDigestMismatch => {
                let image = build_image(&[honest_files], &[]);
                let mut routes = image_routes(repo, tag, &image);
                let layer = &image.layers[0];
                let mut bad = layer.gz.clone();
                let middle = bad.len() / 2;
                bad[middle] ^= 0xff;
                set_route(
                    &mut routes,
                    &format!("/v2/{repo}/blobs/{}", layer.digest),
                    Response::blob(bad, &layer.digest),
                );
                (image, routes)
            }
            Hostility::PathEscapeLayer => {
                let mut entries = honest_files;
                entries.push(TarEntry::file("../../etc/evil", b"evil\n"));
                let image = build_image(&[entries], &[]);
                let routes = image_routes(repo, tag, &image);
                (image, routes)
            }
        };
        (HostileRegistry::start(routes), image)
    }

    /// Adds or replaces the response on `path` (replacing a
    /// [`HostileRegistry::set_blob_with_ranges`] there too).
    pub fn set(&self, path: &str, response: Response) {
        self.ranged
            .lock()
            .expect("the ranged lock")
            .retain(|(p, _)| p != path);
        let mut routes = self.routes.lock().expect("the routes lock");
        set_route(&mut routes, path, response);
    }

    /// Serves the blob `body` on `path` as a registry that supports range requests does:
    /// `Range: bytes=START-` (or `bytes=START-END`) gets `206 Partial Content` with
    /// `Content-Range: bytes START-END/LEN` and those bytes, a range starting at or past the end
    /// `416` with `Content-Range: bytes */LEN`, no `Range` the whole blob with 200; every answer
    /// says `Accept-Ranges: bytes` and `Docker-Content-Digest: digest`. Replaces whatever
    /// [`HostileRegistry::set`] put on `path`, until the next `set` there.
    pub fn set_blob_with_ranges(&self, path: &str, body: Vec<u8>, digest: &str) {
        let mut ranged = self.ranged.lock().expect("the ranged lock");
        ranged.retain(|(p, _)| p != path);
        ranged.push((
            path.to_string(),
            RangedBlob {
                body,
                digest: digest.to_string(),
            },
        ));
    }

    /// The requests served so far, as `METHOD PATH` (e.g. `GET /v2/x/manifests/1`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("the requests lock").clone()
    }

    /// The requests served so far with their headers, in order.
    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        self.recorded.lock().expect("the recorded lock").clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(&self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn set_route(routes: &mut Vec<(String, Response)>, path: &str, response: Response) {
    match routes.iter_mut().find(|(p, _)| p == path) {
        Some(slot) => slot.1 = response,
        None => routes.push((path.to_string(), response)),
    }
}

/// One request a [`HostileRegistry`] served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// A blob served with range support ([`HostileRegistry::set_blob_with_ranges`]).
#[derive(Debug, Clone)]
struct RangedBlob {
    body: Vec<u8>,
    digest: String,
}

impl RangedBlob {
    /// The answer to a request with the `Range` header `range`.
    fn answer(&self, range: Option<&str>) -> Response {
        let len = self.body.len();
        let common = [
            ("Content-Type", "application/octet-stream"),
            ("Docker-Content-Digest", self.digest.as_str()),
            ("Accept-Ranges", "bytes"),
        ];
        let Some(range) = range else {
            return Response::new(200, &common, Body::Bytes(self.body.clone()));
        };
        // `bytes=START-` or `bytes=START-END` (inclusive); anything else is ignored, as HTTP
        // allows, with the whole blob.
        let parsed = range.trim().strip_prefix("bytes=").and_then(|spec| {
            let (start, end) = spec.split_once('-')?;
            let start: usize = start.trim().parse().ok()?;
            let end: Option<usize> = match end.trim() {
                "" => None,
                e => Some(e.parse().ok()?),
            };
            Some((start, end))
        });
        match parsed {
            None => Response::new(200, &common, Body::Bytes(self.body.clone())),
            Some((start, _)) if start >= len => {
                let unsatisfied = format!("bytes */{len}");
                let mut headers = common.to_vec();
                headers.push(("Content-Range", unsatisfied.as_str()));
                Response::new(416, &headers, Body::Bytes(Vec::new()))
            }
            Some((start, end)) => {
                let last = end.map_or(len - 1, |e| e.min(len - 1));
                if last < start {
                    return Response::new(200, &common, Body::Bytes(self.body.clone()));
                }
                let content_range = format!("bytes {start}-{last}/{len}");
                let mut headers = common.to_vec();
                headers.push(("Content-Range", content_range.as_str()));
                Response::new(206, &headers, Body::Bytes(self.body[start..=last].to_vec()))
            }
        }
    }
}

/// What the connection threads of a [`HostileRegistry`] share.
#[derive(Clone)]
struct Shared {
    routes: Arc<Mutex<Vec<(String, Response)>>>,
    requests: Arc<Mutex<Vec<String>>>,
    recorded: Arc<Mutex<Vec<RecordedRequest>>>,
    ranged: Arc<Mutex<Vec<(String, RangedBlob)>>>,
}

fn serve_one(conn: TcpStream, shared: &Shared) {
    let Shared {
        routes,
        requests,
        recorded,
        ranged,
    } = shared;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    // A TLS ClientHello (clients probing https first) starts with 0x16: hang up at once.
    match reader.fill_buf() {
        Ok(buf) if buf.first().is_some_and(u8::is_ascii_uppercase) => {}
        _ => return,
    }
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
    }
    // Read the headers (the request body, if any, is ignored).
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim_end().is_empty() => break,
            Ok(_) => {
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    if let Ok(mut log) = requests.lock() {
        log.push(format!("{method} {target}"));
    }
    let request = RecordedRequest {
        method: method.clone(),
        target: target.clone(),
        headers,
    };
    let path_only = target.split('?').next().unwrap_or("").to_string();
    let ranged_blob = ranged.lock().ok().and_then(|r| {
        r.iter()
            .find(|(p, _)| *p == target)
            .or_else(|| r.iter().find(|(p, _)| *p == path_only))
            .map(|(_, b)| b.clone())
    });
    let ranged_response = ranged_blob.map(|b| b.answer(request.header("Range")));
    if let Ok(mut log) = recorded.lock() {
        log.push(request);
    }
    let response = if let Some(response) = ranged_response {
        response
    } else {
        let routes = routes.lock().map(|r| r.clone()).unwrap_or_default();
        let found = routes
            .iter()
            .find(|(p, _)| *p == target)
            .or_else(|| routes.iter().find(|(p, _)| *p == path_only))
            .map(|(_, r)| r.clone());
        found.unwrap_or_else(|| {
            if path_only == "/v2/" || path_only == "/v2" {
                Response::new(
                    200,
                    &[("Content-Type", "application/json")],
                    Body::Bytes(b"{}".to_vec()),
                )
            } else if path_only.contains("/manifests/") {
                Response::error(404, "MANIFEST_UNKNOWN")
            } else if path_only.contains("/blobs/") {
                Response::error(404, "BLOB_UNKNOWN")
            } else {
                Response::error(404, "NOT_FOUND")
            }
        })
    };
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, conn);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    let mut has_length = false;
    let mut has_api_version = false;
    for (k, v) in &response.headers {
        has_length |= k.eq_ignore_ascii_case("Content-Length");
        has_api_version |= k.eq_ignore_ascii_case("Docker-Distribution-Api-Version");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    if !has_api_version {
        head.push_str("Docker-Distribution-Api-Version: registry/2.0\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    if method != "HEAD" {
        let _ = response.body.write_to(&mut out);
    }
    if let Ok(conn) = out.into_inner() {
        let _ = conn.shutdown(Shutdown::Write);
        // Let the client read everything before the socket closes (closing with unread input
        // would reset the connection).
        let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
        let mut sink = [0u8; 1024];
        let mut reader = reader;
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
