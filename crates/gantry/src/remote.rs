//! `--server URL`: the same commands against a `gantry server` over its REST API.

use crate::exit::{self, coded};
use anyhow::Context;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

pub struct Client {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str, token: Option<&str>) -> anyhow::Result<Client> {
        let base = Url::parse(server).map_err(|e| {
            coded(
                exit::USAGE,
                format!("--server {server}: not a URL ({e}); e.g. http://127.0.0.1:8080"),
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(coded(
                exit::USAGE,
                format!("--server {server}: use an http:// or https:// URL"),
            ));
        }
        Ok(Client {
            base,
            token: token.map(str::to_owned),
            http: reqwest::Client::new(),
        })
    }

    /// Every request ends after `timeout` (the default is no limit).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Client {
        if let Ok(http) = reqwest::Client::builder().timeout(timeout).build() {
            self.http = http;
        }
        self
    }

    /// `base` + `/api/v1/<segments>` with each segment escaped, + query.
    pub fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(b)?);
        }
        self.execute(req).await
    }

    /// Sends a raw (e.g. streamed) body.
    pub async fn send_body(
        &self,
        method: Method,
        url: Url,
        body: reqwest::Body,
    ) -> anyhow::Result<reqwest::Response> {
        let req = self
            .http
            .request(method, url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        self.execute(req).await
    }

    async fn execute(&self, mut req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| {
            coded(
                exit::ENVIRONMENT,
                format!(
                    "cannot reach the gantry server at {}: {e} (is `gantry server` running there?)",
                    self.base
                ),
            )
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(api_error(resp).await)
    }

    pub async fn get(&self, segments: &[&str], query: &[(&str, String)]) -> anyhow::Result<Value> {
        let resp = self
            .send(Method::GET, self.url(segments, query), None)
            .await?;
        json_of(resp).await
    }

    pub async fn post(&self, segments: &[&str], body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .send(Method::POST, self.url(segments, &[]), Some(body))
            .await?;
        json_of(resp).await
    }

    pub async fn delete(&self, segments: &[&str]) -> anyhow::Result<Value> {
        let resp = self
            .send(Method::DELETE, self.url(segments, &[]), None)
            .await?;
        json_of(resp).await
    }
}

/// The exit code a failed request was given (e.g. [`exit::NOT_FOUND`] for a 404).
pub fn code_of(err: &anyhow::Error) -> Option<u8> {
    err.downcast_ref::<exit::Coded>().map(|c| c.code)
}

pub async fn json_of(resp: reqwest::Response) -> anyhow::Result<Value> {
    let url = resp.url().clone();
    let bytes = resp.bytes().await.context("reading the server's answer")?;
    serde_json::from_slice(&bytes).with_context(|| format!("the answer of {url} is not JSON"))
}

/// Turns `{"error": {"code", "message"}}` into an error with the matching exit code.
async fn api_error(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body: Value = resp
        .bytes()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let message = body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("the server answered {status}"));
    let code = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => exit::AUTH,
        StatusCode::NOT_FOUND => exit::NOT_FOUND,
        s if s.is_client_error() => exit::USAGE,
        _ => exit::INTERNAL,
    };
    let field = body["error"]["field"]
        .as_str()
        .map(|f| (f.to_string(), message.clone()));
    // Spec diagnostics already read as `file:line:col: error: …`.
    let text = if body["error"]["code"] == "invalid_spec" {
        message
    } else if let Some((f, m)) = &field {
        format!("server: {f}: {m}")
    } else {
        format!("server: {message}")
    };
    anyhow::Error::new(exit::Coded {
        code,
        message: text,
        field,
    })
}
