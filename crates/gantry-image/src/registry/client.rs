//! The HTTP side of the OCI distribution API: which scheme a registry speaks, authentication
//! (anonymous, basic, bearer tokens), and registry errors turned into messages that name the
//! registry, the reference and what went wrong.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::auth::{Challenge, CredentialStore, parse_challenge};
use super::reference::{RegistryRef, host_of};
use crate::ImageError;

/// Largest error body read from a registry.
const MAX_ERROR_BODY: usize = 64 << 10;
/// Largest token response.
const MAX_TOKEN_BODY: usize = 1 << 20;

/// How a [`RegistryClient`] reaches registries.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Registries (`host` or `host:port`) that may be reached over plain HTTP besides loopback.
    pub insecure: Vec<String>,
    pub credentials: CredentialStore,
    /// Layers downloaded or uploaded at once.
    pub parallel_layers: usize,
    /// Where requests may go: a server passes its guarded policy (and a client built with
    /// [`gantry_net::FetchPolicy::client`]) so an image reference cannot reach its own network.
    pub fetch: gantry_net::FetchPolicy,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            credentials: CredentialStore::anonymous(),
            parallel_layers: 4,
            fetch: gantry_net::FetchPolicy::unrestricted(),
        }
    }
}

#[derive(Default)]
struct State {
    /// `registry|repository|actions` → Authorization header value.
    auth: HashMap<String, HeaderValue>,
    /// Registries that answered over plain HTTP.
    plain: HashSet<String>,
    /// Registries whose scheme is known.
    probed: HashSet<String>,
}

/// A client for OCI distribution registries (pull, push, signatures).
pub struct RegistryClient {
    pub(crate) http: reqwest::Client,
    pub(crate) opts: RegistryOptions,
    state: Mutex<State>,
}

/// The default HTTP client: TLS through rustls, connect and idle timeouts, no read timeout (a
/// layer may take long) but a stall on any single read fails the transfer.
pub fn default_http_client() -> Result<reqwest::Client, ImageError> {
    http_builder()
        .build()
        .map_err(|e| ImageError::Unsupported(format!("cannot build the registry HTTP client: {e}")))
}

/// The builder [`default_http_client`] uses, for callers that add a fetch guard.
pub fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(120))
        .pool_idle_timeout(Duration::from_secs(30))
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("insecure", &self.opts.insecure)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    pub fn new(http: reqwest::Client, opts: RegistryOptions) -> RegistryClient {
        RegistryClient {
            http,
            opts,
            state: Mutex::new(State::default()),
        }
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// Plain HTTP is allowed for loopback registries and those named `--insecure-registry`.
    pub fn allows_plain_http(&self, registry: &str) -> bool {
        let host = host_of(registry);
        let loopback =
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        loopback
            || self
                .opts
                .insecure
                .iter()
                .any(|i| i == registry || i == host)
    }

    /// Refuses a URL the fetch policy does not allow (IP literals are checked here; names are
    /// checked by the guarded client's resolver).
    pub(crate) fn check_url(&self, r: &RegistryRef, url: &str) -> Result<(), ImageError> {
        self.opts
            .fetch
            .check_url(url)
            .map(|_| ())
            .map_err(|e| self.error(r, None, e.to_string()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `https://host` or, for a registry allowed plain HTTP that does not speak TLS,
    /// `http://host`: probed once with `GET /v2/`.
    async fn base_url(&self, r: &RegistryRef) -> Result<String, ImageError> {
        let host = r.api_host().to_string();
        {
            let state = self.lock();
            if state.probed.contains(&host) {
                let scheme = if state.plain.contains(&host) {
                    "http"
                } else {
                    "https"
                };
                return Ok(format!("{scheme}://{host}"));
            }
        }
        let https = format!("https://{host}");
        self.check_url(r, &format!("{https}/v2/"))?;
        let probe = self.http.get(format!("{https}/v2/")).send().await;
        let plain = match probe {
            Ok(_) => false,
            Err(e) if self.allows_plain_http(&r.registry) => {
                let http = format!("http://{host}");
                match self.http.get(format!("{http}/v2/")).send().await {
                    Ok(_) => true,
                    Err(_) => return Err(self.transport(r, &e)),
                }
            }
            Err(e) => {
                let mut err = self.transport(r, &e);
                if let ImageError::Registry { message, .. } = &mut err {
                    message.push_str(&format!(
                        "; registries are reached over TLS (plain HTTP only for loopback or `--insecure-registry {}`)",
                        r.registry
                    ));
                }
                return Err(err);
            }
        };
        let mut state = self.lock();
        state.probed.insert(host.clone());
        if plain {
            state.plain.insert(host.clone());
        }
        let scheme = if plain { "http" } else { "https" };
        Ok(format!("{scheme}://{host}"))
    }

    /// Sends the request `build` makes (given the base URL), authenticating once when the
    /// registry answers 401. `actions` is the scope a token is asked for (`pull`, `pull,push`).
    pub(crate) async fn send(
        &self,
        r: &RegistryRef,
        actions: &str,
        build: &(dyn Fn(&reqwest::Client, &str) -> Result<RequestBuilder, ImageError> + Sync),
    ) -> Result<Response, ImageError> {
        let base = self.base_url(r).await?;
        let key = format!("{}|{}|{actions}", r.registry, r.repository);
        let mut auth = self.lock().auth.get(&key).cloned();
        for attempt in 0..2 {
            let mut request = build(&self.http, &base)?;
            if let Some(value) = &auth {
                request = request.header(AUTHORIZATION, value.clone());
            }
            let response = request.send().await.map_err(|e| self.transport(r, &e))?;
            if response.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let Some(challenge) = challenge else {
                return Ok(response);
            };
            let value = self.authenticate(r, actions, challenge).await?;
            self.lock().auth.insert(key.clone(), value.clone());
            auth = Some(value);
        }
        Err(self.error(r, None, "authentication loop".to_string()))
    }

    async fn authenticate(
        &self,
        r: &RegistryRef,
        actions: &str,
        challenge: Challenge,
    ) -> Result<HeaderValue, ImageError> {
        let creds = self.opts.credentials.get(&r.registry)?;
        let header = |s: String| {
            HeaderValue::from_str(&s)
                .map_err(|_| self.error(r, None, "credentials are not valid header text".into()))
        };
        match challenge {
            Challenge::Basic => match creds {
                Some(c) => {
                    let mut v = header(c.basic_header())?;
                    v.set_sensitive(true);
                    Ok(v)
                }
                None => Err(self.error(
                    r,
                    Some(401),
                    format!(
                        "401 Unauthorized: the registry wants a user name and password; run `gantry login {}`",
                        r.registry
                    ),
                )),
            },
            Challenge::Bearer {
                realm,
                service,
                scope: _,
            } => {
                let mut url = reqwest::Url::parse(&realm).map_err(|_| {
                    self.error(r, None, format!("the token realm {realm:?} is not a URL"))
                })?;
                self.check_url(r, url.as_str())?;
                let realm_host = url.host_str().unwrap_or_default().to_string();
                let secure_enough = url.scheme() == "https"
                    || (url.scheme() == "http" && self.allows_plain_http(&realm_host));
                if !matches!(url.scheme(), "http" | "https") || !secure_enough {
                    return Err(self.error(
                        r,
                        None,
                        format!("refusing the token realm {realm}: not HTTPS"),
                    ));
                }
                let scope = format!("repository:{}:{actions}", r.repository);
                {
                    let mut query = url.query_pairs_mut();
                    query.append_pair("scope", &scope);
                    if let Some(service) = &service {
                        query.append_pair("service", service);
                    }
                }
                let mut request = self.http.get(url);
                if let Some(c) = &creds {
                    let mut v = header(c.basic_header())?;
                    v.set_sensitive(true);
                    request = request.header(AUTHORIZATION, v);
                }
                let response = request.send().await.map_err(|e| self.transport(r, &e))?;
                let status = response.status();
                let body = read_limited(response, MAX_TOKEN_BODY).await.map_err(|e| {
                    self.error(r, None, format!("reading the token from {realm}: {e}"))
                })?;
                if !status.is_success() {
                    let hint = if creds.is_none() {
                        format!("; run `gantry login {}`", r.registry)
                    } else {
                        "; check the credentials `gantry login` stored".to_string()
                    };
                    return Err(self.error(
                        r,
                        Some(status.as_u16()),
                        format!("the token service {realm} answered {status}{hint}"),
                    ));
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let token: Token = serde_json::from_slice(&body).map_err(|e| {
                    self.error(r, None, format!("the token service {realm} answered no token: {e}"))
                })?;
                let token = token.token.or(token.access_token).ok_or_else(|| {
                    self.error(r, None, format!("the token service {realm} answered no token"))
                })?;
                let mut v = header(format!("Bearer {token}"))?;
                v.set_sensitive(true);
                Ok(v)
            }
        }
    }

    /// An error about `r` on its registry.
    pub(crate) fn error(
        &self,
        r: &RegistryRef,
        status: Option<u16>,
        message: String,
    ) -> ImageError {
        ImageError::Registry {
            registry: r.registry.clone(),
            reference: r.to_string(),
            status,
            message,
        }
    }

    fn transport(&self, r: &RegistryRef, e: &reqwest::Error) -> ImageError {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        self.error(r, None, format!("cannot reach {}: {text}", r.api_host()))
    }

    /// Turns a non-success response into an error naming what failed: the registry's own
    /// error codes (`MANIFEST_UNKNOWN`, `DENIED`) when it sent them.
    pub(crate) async fn status_error(
        &self,
        r: &RegistryRef,
        what: &str,
        response: Response,
    ) -> ImageError {
        let status = response.status();
        let body = read_limited(response, MAX_ERROR_BODY)
            .await
            .unwrap_or_default();
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<ErrorEntry>,
        }
        #[derive(serde::Deserialize)]
        struct ErrorEntry {
            code: Option<String>,
            message: Option<String>,
        }
        let detail = serde_json::from_slice::<Errors>(&body)
            .ok()
            .map(|e| {
                e.errors
                    .iter()
                    .map(|x| {
                        format!(
                            "{} {}",
                            x.code.as_deref().unwrap_or(""),
                            x.message.as_deref().unwrap_or("")
                        )
                        .trim()
                        .to_string()
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|s| !s.is_empty());
        let hint = match status {
            // Still refused after authenticating with stored credentials: logging in is not
            // what is missing (a token service hands out tokens without the access asked for
            // to a user who may not do this).
            StatusCode::UNAUTHORIZED => match self.opts.credentials.get(&r.registry) {
                Ok(Some(_)) => format!(
                    "; the credentials stored for {0} were refused: wrong, or not allowed to do this (`gantry login {0}` replaces them)",
                    r.registry
                ),
                _ => format!("; run `gantry login {}`", r.registry),
            },
            StatusCode::FORBIDDEN => "; the credentials do not allow this".to_string(),
            _ => String::new(),
        };
        let message = match detail {
            Some(d) => format!("{what}: {status}: {d}{hint}"),
            None => format!("{what}: {status}{hint}"),
        };
        self.error(r, Some(status.as_u16()), message)
    }

    /// A request to `base` + `path`.
    pub(crate) fn request(
        client: &reqwest::Client,
        method: Method,
        base: &str,
        path: &str,
    ) -> RequestBuilder {
        client.request(method, format!("{base}{path}"))
    }
}

/// Reads at most `cap` bytes of a body; more is an error, never buffered.
pub(crate) async fn read_limited(mut response: Response, cap: usize) -> Result<Vec<u8>, String> {
    if let Some(len) = response.content_length()
        && len > cap as u64
    {
        return Err(format!("{len} bytes is more than the limit of {cap}"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > cap {
            return Err(format!("more than the limit of {cap} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
