//! A real browser for tests of the web UI: headless Chromium driven through chromedriver by a
//! small W3C WebDriver client of our own (reqwest + serde_json, no WebDriver crate), with
//! console-error checks (CSP violations, uncaught exceptions, failed loads) and axe-core
//! accessibility checks run inside the page.
//!
//! Include it next to skip.rs (it calls `crate::skip::because`, so `mod skip` must sit at the
//! crate root of the test binary); it needs `tokio` (rt-multi-thread, time), `reqwest`,
//! `serde_json` and `tempfile`:
//!
//! ```ignore
//! #[path = "../../../../testing/skip.rs"]
//! mod skip;
//! #[path = "../../../../testing/browser.rs"]
//! mod browser;
//!
//! #[test]
//! fn the_dashboard_lists_deployments() {
//!     let Some(b) = browser::Browser::start() else { return };
//!     b.goto(&format!("{base}/ui/"));
//!     b.wait_for("table.deployments", browser::WAIT).find("td").text();
//!     b.assert_no_console_errors();
//!     b.assert_accessible("dashboard");
//! }
//! ```
//!
//! The API is blocking: a [`Browser`] owns a small current-thread tokio runtime and blocks on
//! every WebDriver command, so it is meant for plain `#[test]` functions. (Calling it from
//! inside a tokio runtime panics with "Cannot start a runtime from within a runtime"; there,
//! use it from `tokio::task::spawn_blocking`.) Failures panic with the command, the CSS
//! selector, the page's URL and the start of its text; [`Browser::command`] is the one method
//! that returns WebDriver errors as values.
//!
//! Console checks: [`Browser::browser_log`] reads chromedriver's `POST /session/{id}/se/log`
//! (`{"type": "browser"}`), which hands each entry out once and keeps entries across
//! navigations until read, so [`Browser::assert_no_console_errors`] covers every page loaded
//! since the previous check. Chromium logs CSP violations as SEVERE entries of source
//! `security`, uncaught exceptions as `javascript`, failed loads (4xx/5xx) as `network`; the
//! browser's own request for `/favicon.ico` is the one 404 ignored (see [`LogEntry::is_error`]).
//!
//! Scripts run through WebDriver ([`Browser::execute`], and axe-core, injected that way) are
//! not subject to the page's Content-Security-Policy, and axe-core runs under
//! `default-src 'none'; script-src 'self'; style-src 'self'` without causing any violation. A
//! `<script>` element such a script adds to the page is still blocked (and logged).
//!
//! Requirements: Debian's `chromium` and `chromium-driver` (or `GANTRY_TEST_CHROMIUM` /
//! `GANTRY_TEST_CHROMEDRIVER` naming other binaries); [`Browser::start`] returns None after
//! `skip::because` without them. axe-core: `scripts/browser-deps.sh` downloads and verifies
//! it; `GANTRY_TEST_AXE_JS` may name another copy of `axe.min.js`.

// Not every test binary that includes this uses all of it.
#![allow(dead_code)]

use std::cell::OnceCell;
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The axe-core version scripts/browser-deps.sh downloads (keep the two in step).
pub const AXE_VERSION: &str = "4.14.1";

/// A reasonable default for [`Browser::wait_for`] and [`Browser::wait_until`].
pub const WAIT: Duration = Duration::from_secs(10);

const INSTALL_HINT: &str =
    "chromium and chromium-driver are not installed: apt-get install chromium chromium-driver";
const AXE_HINT: &str = "axe-core is not downloaded: run scripts/browser-deps.sh";

/// The W3C key of a web element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How often the `wait_*` methods poll.
const POLL: Duration = Duration::from_millis(50);

/// Special keys for [`Element::send_keys`] (WebDriver's code points).
pub mod keys {
    pub const ENTER: &str = "\u{E007}";
    pub const TAB: &str = "\u{E004}";
    pub const ESCAPE: &str = "\u{E00C}";
    pub const BACKSPACE: &str = "\u{E003}";
    pub const ARROW_DOWN: &str = "\u{E015}";
    pub const ARROW_UP: &str = "\u{E013}";
}

// ------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------

/// A failed WebDriver command: the HTTP status and W3C error code (`no such element`,
/// `javascript error`, ...) chromedriver answered, or status 0 and `transport` when there was
/// no answer.
#[derive(Debug, Clone)]
pub struct WebDriverError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // chromedriver repeats the code at the start of the message, and appends a
        // "(Session info: chrome=...)" line that says nothing here.
        let message = self
            .message
            .split("\n  (Session info")
            .next()
            .unwrap_or(&self.message);
        if message.starts_with(&self.error) {
            write!(f, "{message}")
        } else {
            write!(f, "{}: {message}", self.error)
        }
    }
}

impl std::error::Error for WebDriverError {}

// ------------------------------------------------------------------------------------------
// Browser
// ------------------------------------------------------------------------------------------

/// How to start the browser; [`Browser::start`] uses the defaults.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// The window size in CSS pixels (default 1280x900).
    pub window_size: (u32, u32),
    /// Accept self-signed and otherwise invalid TLS certificates (default false).
    pub accept_insecure_certs: bool,
    /// More Chromium command-line switches.
    pub args: Vec<String>,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions {
            window_size: (1280, 900),
            accept_insecure_certs: false,
            args: Vec::new(),
        }
    }
}

/// One headless Chromium, with its own chromedriver and a fresh profile (no cookies, no cache)
/// in a tempdir; the session is ended, chromedriver killed and the profile removed on drop.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT` of chromedriver.
    base: String,
    session: String,
    driver: Child,
    /// Holds `profile/` and `chromedriver.log`.
    dir: tempfile::TempDir,
    axe_source: OnceCell<String>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session makes chromedriver close Chromium; killing chromedriver alone
        // could leave Chromium running.
        let url = format!("{}/session/{}", self.base, self.session);
        let ended = self.rt.block_on(async {
            let request = self.http.delete(url).send();
            matches!(
                tokio::time::timeout(Duration::from_secs(10), request).await,
                Ok(Ok(response)) if response.status().is_success()
            )
        });
        if !ended {
            kill_descendants(self.driver.id());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// A headless Chromium with the default [`BrowserOptions`], or None (after
    /// `skip::because`) when chromium or chromedriver is not installed.
    #[track_caller]
    pub fn start() -> Option<Browser> {
        Self::start_with(BrowserOptions::default())
    }

    /// [`Browser::start`] with other options.
    #[track_caller]
    pub fn start_with(options: BrowserOptions) -> Option<Browser> {
        let chromium = program("GANTRY_TEST_CHROMIUM", "chromium");
        let chromedriver = program("GANTRY_TEST_CHROMEDRIVER", "chromedriver");
        let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
            crate::skip::because(INSTALL_HINT);
            return None;
        };

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building the browser's tokio runtime");
        let http = reqwest::Client::builder()
            .no_proxy()
            // Longer than the page-load timeout below, so chromedriver's own timeout error
            // (which names what timed out) comes back rather than ours.
            .timeout(Duration::from_secs(120))
            .build()
            .expect("building the WebDriver HTTP client");
        let dir = tempfile::Builder::new()
            .prefix("gantry-browser-")
            .tempdir()
            .expect("creating the browser's tempdir");
        let profile = dir.path().join("profile");
        fs::create_dir(&profile).expect("creating the browser profile dir");
        let log_path = dir.path().join("chromedriver.log");

        let (driver, port) = launch_chromedriver(&chromedriver, &log_path);
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            rt,
            http,
            base,
            session: String::new(),
            driver,
            dir,
            axe_source: OnceCell::new(),
        };
        browser.wait_driver_ready(&log_path);

        let (width, height) = options.window_size;
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
            // Quiet and hermetic: no first-run UI, no calls home, no proxy from the
            // environment, English messages.
            "--no-first-run".to_string(),
            "--no-default-browser-check".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--no-proxy-server".to_string(),
            "--lang=en-US".to_string(),
        ];
        args.extend(options.args);
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "acceptInsecureCerts": options.accept_insecure_certs,
                    "pageLoadStrategy": "normal",
                    "timeouts": { "implicit": 0, "pageLoad": 60_000, "script": 30_000 },
                    "goog:chromeOptions": {
                        "binary": chromium.to_string_lossy(),
                        "args": args,
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                }
            }
        });
        let created = browser.raw("POST", "/session", Some(capabilities));
        let session = match created {
            Ok(value) => value
                .get("sessionId")
                .and_then(Value::as_str)
                .map(str::to_string),
            Err(e) => panic!(
                "chromedriver could not start {}: {e}\nchromedriver log:\n{}",
                chromium.display(),
                log_tail(&log_path)
            ),
        };
        browser.session = session.unwrap_or_else(|| {
            panic!(
                "chromedriver created a session without a sessionId\nchromedriver log:\n{}",
                log_tail(&log_path)
            )
        });
        Some(browser)
    }

    fn wait_driver_ready(&mut self, log_path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let last = match self.raw("GET", "/status", None) {
                Ok(value) if value.get("ready").and_then(Value::as_bool) == Some(true) => return,
                Ok(value) => format!("not ready: {value}"),
                Err(e) => e.to_string(),
            };
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!(
                    "chromedriver exited ({status}) before it was ready\nchromedriver log:\n{}",
                    log_tail(log_path)
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver on {} is not ready after 20s ({last})\nchromedriver log:\n{}",
                self.base,
                log_tail(log_path)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // --------------------------------------------------------------------------------------
    // The protocol
    // --------------------------------------------------------------------------------------

    /// One WebDriver command on this session: `method` ("GET", "POST", "DELETE") on
    /// `/session/{id}{path}` (path starts with `/`, e.g. `/window/rect`), with a JSON body
    /// (POST without a body sends `{}`). Returns the answer's `value`.
    pub fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WebDriverError> {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WebDriverError> {
        let url = format!("{}{path}", self.base);
        let transport = |message: String| WebDriverError {
            status: 0,
            error: "transport".to_string(),
            message,
        };
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| transport(format!("bad HTTP method {method:?}: {e}")))?;
        let body = match (body, method == reqwest::Method::POST) {
            (Some(body), _) => Some(body),
            (None, true) => Some(json!({})),
            (None, false) => None,
        };
        self.rt.block_on(async {
            let mut request = self.http.request(method.clone(), &url);
            if let Some(body) = body {
                let bytes = serde_json::to_vec(&body)
                    .map_err(|e| transport(format!("encoding the request body: {e}")))?;
                request = request
                    .header("content-type", "application/json; charset=utf-8")
                    .body(bytes);
            }
            let response = request
                .send()
                .await
                .map_err(|e| transport(format!("{method} {url}: {e}")))?;
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| transport(format!("reading the answer to {method} {url}: {e}")))?;
            let mut answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
                transport(format!(
                    "{method} {url} answered {status} with something other than JSON ({e}): {}",
                    snippet(&String::from_utf8_lossy(&bytes), 300)
                ))
            })?;
            let value = answer
                .get_mut("value")
                .map(Value::take)
                .unwrap_or(Value::Null);
            if status.is_success() {
                Ok(value)
            } else {
                let field = |name: &str| {
                    value
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                Err(WebDriverError {
                    status: status.as_u16(),
                    error: field("error"),
                    message: field("message"),
                })
            }
        })
    }

    /// [`Browser::command`], panicking with `what` and where the browser is on failure.
    #[track_caller]
    fn call(&self, what: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.command(method, path, body) {
            Ok(value) => value,
            Err(e) => panic!("{what}: {e}\n{}", self.whereabouts()),
        }
    }

    /// `on URL; the page says: TEXT...`, best effort, for error messages.
    fn whereabouts(&self) -> String {
        let url = match self.command("GET", "/url", None) {
            Ok(Value::String(url)) => url,
            Ok(other) => other.to_string(),
            Err(e) => return format!("(the browser does not answer: {e})"),
        };
        let text = self.command(
            "POST",
            "/execute/sync",
            Some(json!({
                "script": "return document.body ? document.body.innerText : document.documentElement.outerHTML;",
                "args": [],
            })),
        );
        match text {
            Ok(Value::String(text)) if text.trim().is_empty() => format!("on {url} (no text)"),
            Ok(Value::String(text)) => format!("on {url}; the page says: {}", snippet(&text, 600)),
            Ok(other) => format!(
                "on {url}; the page says: {}",
                snippet(&other.to_string(), 600)
            ),
            Err(e) => format!("on {url} (its text is unavailable: {e})"),
        }
    }

    // --------------------------------------------------------------------------------------
    // Navigation
    // --------------------------------------------------------------------------------------

    /// Loads `url` and waits for its load event.
    #[track_caller]
    pub fn goto(&self, url: &str) {
        self.call(
            &format!("navigating to {url}"),
            "POST",
            "/url",
            Some(json!({ "url": url })),
        );
    }

    #[track_caller]
    pub fn current_url(&self) -> String {
        as_string(self.call("reading the URL", "GET", "/url", None))
    }

    #[track_caller]
    pub fn title(&self) -> String {
        as_string(self.call("reading the title", "GET", "/title", None))
    }

    /// The current DOM serialized as HTML (not the bytes the server sent).
    #[track_caller]
    pub fn page_source(&self) -> String {
        as_string(self.call("reading the page source", "GET", "/source", None))
    }

    /// The page's rendered text, or None while no page is there (during a navigation):
    /// for conditions polled across a form submission.
    pub fn try_body_text(&self) -> Option<String> {
        self.command(
            "POST",
            "/execute/sync",
            Some(serde_json::json!({
                "script": "return document.body ? document.body.innerText : null;",
                "args": []
            })),
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// The rendered text of the first element matching `css`, or None when there is none or
    /// the page is being replaced (never a stale-element panic): for polled conditions.
    pub fn try_text_of(&self, css: &str) -> Option<String> {
        self.command(
            "POST",
            "/execute/sync",
            Some(serde_json::json!({
                "script": "var e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                "args": [css]
            })),
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// `document.body.innerText`: the text as rendered.
    #[track_caller]
    pub fn body_text(&self) -> String {
        self.find("body").text()
    }

    #[track_caller]
    pub fn back(&self) {
        self.call("going back", "POST", "/back", None);
    }

    #[track_caller]
    pub fn forward(&self) {
        self.call("going forward", "POST", "/forward", None);
    }

    #[track_caller]
    pub fn refresh(&self) {
        self.call("reloading", "POST", "/refresh", None);
    }

    // --------------------------------------------------------------------------------------
    // Elements
    // --------------------------------------------------------------------------------------

    /// The first element matching `css`; panics (naming the selector, the URL and the start
    /// of the page's text) when there is none.
    #[track_caller]
    pub fn find(&self, css: &str) -> Element<'_> {
        match self.try_find(css) {
            Some(element) => element,
            None => panic!("no element matches `{css}` {}", self.whereabouts()),
        }
    }

    /// The first element matching `css`, or None.
    #[track_caller]
    pub fn try_find(&self, css: &str) -> Option<Element<'_>> {
        self.find_in("", css, css)
    }

    /// Every element matching `css`, in document order.
    #[track_caller]
    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        self.find_all_in("", css, css)
    }

    /// Finds under `scope` (`""` for the document, `/element/ID` for an element); `label`
    /// names the whole selector chain in messages.
    #[track_caller]
    fn find_in(&self, scope: &str, css: &str, label: &str) -> Option<Element<'_>> {
        let body = json!({ "using": "css selector", "value": css });
        match self.command("POST", &format!("{scope}/element"), Some(body)) {
            Ok(value) => Some(self.element_or_panic(&value, label)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("finding `{label}`: {e}\n{}", self.whereabouts()),
        }
    }

    #[track_caller]
    fn find_all_in(&self, scope: &str, css: &str, label: &str) -> Vec<Element<'_>> {
        let body = json!({ "using": "css selector", "value": css });
        let value = self.call(
            &format!("finding all `{label}`"),
            "POST",
            &format!("{scope}/elements"),
            Some(body),
        );
        match value {
            Value::Array(items) => items
                .iter()
                .map(|item| self.element_or_panic(item, label))
                .collect(),
            other => panic!("finding all `{label}`: expected a list, got {other}"),
        }
    }

    #[track_caller]
    fn element_or_panic(&self, value: &Value, label: &str) -> Element<'_> {
        match self.element_from(value) {
            Some(mut element) => {
                element.css = label.to_string();
                element
            }
            None => panic!("finding `{label}`: expected an element reference, got {value}"),
        }
    }

    /// The element a script returned (`return document.activeElement`), if `value` is an
    /// element reference.
    pub fn element_from(&self, value: &Value) -> Option<Element<'_>> {
        let id = value.get(ELEMENT_KEY)?.as_str()?;
        Some(Element {
            browser: self,
            id: id.to_string(),
            css: "<element from a script>".to_string(),
        })
    }

    /// Waits up to `timeout` for an element matching `css` to exist.
    #[track_caller]
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Element<'_> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(element) = self.try_find(css) {
                return element;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no element matches `{css}` after waiting {timeout:?} {}",
                    self.whereabouts()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits up to `timeout` for `condition` to hold; `what` describes it for the panic.
    #[track_caller]
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Browser) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if condition(self) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what} {}",
                    self.whereabouts()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Clicks the first element matching `css`.
    #[track_caller]
    pub fn click(&self, css: &str) {
        self.find(css).click();
    }

    /// Clears the first field matching `css` and types `text` into it.
    #[track_caller]
    pub fn fill(&self, css: &str, text: &str) {
        let field = self.find(css);
        field.clear();
        field.send_keys(text);
    }

    // --------------------------------------------------------------------------------------
    // Scripts
    // --------------------------------------------------------------------------------------

    /// Runs `script` as the body of a function (`arguments[0]`... are `args`; pass elements
    /// with [`Element::as_arg`]) and returns what it returns. WebDriver scripts are not
    /// subject to the page's Content-Security-Policy.
    #[track_caller]
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            &format!("running the script `{}`", snippet(script, 200)),
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script` with a callback as its last argument
    /// (`arguments[arguments.length - 1]`) and returns the value it is called with; fails
    /// after the session's 30 s script timeout.
    #[track_caller]
    pub fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            &format!("running the async script `{}`", snippet(script, 200)),
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
    }

    // --------------------------------------------------------------------------------------
    // Cookies, dialogs, screenshots
    // --------------------------------------------------------------------------------------

    /// The cookies visible to the current page (HttpOnly ones included).
    #[track_caller]
    pub fn cookies(&self) -> Vec<Cookie> {
        match self.call("reading the cookies", "GET", "/cookie", None) {
            Value::Array(items) => items.iter().map(Cookie::from_json).collect(),
            other => panic!("reading the cookies: expected a list, got {other}"),
        }
    }

    /// The cookie `name` visible to the current page, if any.
    #[track_caller]
    pub fn cookie(&self, name: &str) -> Option<Cookie> {
        match self.command("GET", &format!("/cookie/{}", path_segment(name)), None) {
            Ok(value) => Some(Cookie::from_json(&value)),
            Err(e) if e.error == "no such cookie" => None,
            Err(e) => panic!("reading the cookie {name}: {e}\n{}", self.whereabouts()),
        }
    }

    /// Sets a cookie for the current page's domain (a page of that domain must be loaded).
    #[track_caller]
    pub fn set_cookie(&self, cookie: &Cookie) {
        self.call(
            &format!("setting the cookie {}", cookie.name),
            "POST",
            "/cookie",
            Some(json!({ "cookie": cookie.to_json() })),
        );
    }

    #[track_caller]
    pub fn delete_cookie(&self, name: &str) {
        self.call(
            &format!("deleting the cookie {name}"),
            "DELETE",
            &format!("/cookie/{}", path_segment(name)),
            None,
        );
    }

    /// Deletes every cookie of the current page's domain.
    #[track_caller]
    pub fn delete_cookies(&self) {
        self.call("deleting the cookies", "DELETE", "/cookie", None);
    }

    /// The text of the open alert/confirm/prompt dialog, if one is open.
    #[track_caller]
    pub fn alert_text(&self) -> Option<String> {
        match self.command("GET", "/alert/text", None) {
            Ok(value) => Some(as_string(value)),
            Err(e) if e.error == "no such alert" => None,
            Err(e) => panic!("reading the alert: {e}"),
        }
    }

    #[track_caller]
    pub fn accept_alert(&self) {
        self.call("accepting the alert", "POST", "/alert/accept", None);
    }

    #[track_caller]
    pub fn dismiss_alert(&self) {
        self.call("dismissing the alert", "POST", "/alert/dismiss", None);
    }

    /// A PNG of the viewport.
    #[track_caller]
    pub fn screenshot(&self) -> Vec<u8> {
        let value = self.call("taking a screenshot", "GET", "/screenshot", None);
        decode_png(&value)
    }

    /// Writes a PNG of the viewport to `path` (say, for a failing test to leave behind).
    #[track_caller]
    pub fn screenshot_png(&self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        let png = self.screenshot();
        fs::write(path, png)
            .unwrap_or_else(|e| panic!("writing the screenshot to {}: {e}", path.display()));
    }

    // --------------------------------------------------------------------------------------
    // The console
    // --------------------------------------------------------------------------------------

    /// The browser's console and network messages since the last call (chromedriver hands
    /// each entry out once): `console.*` calls, uncaught exceptions, CSP violations, failed
    /// loads, from every page loaded in between.
    #[track_caller]
    pub fn browser_log(&self) -> Vec<LogEntry> {
        let value = self.call(
            "reading the browser log",
            "POST",
            "/se/log",
            Some(json!({ "type": "browser" })),
        );
        match value {
            Value::Array(items) => items.iter().map(LogEntry::from_json).collect(),
            other => panic!("reading the browser log: expected a list, got {other}"),
        }
    }

    /// Fails on any SEVERE entry of [`Browser::browser_log`] (uncaught exceptions,
    /// `console.error`, failed loads) and on any entry about the Content Security Policy,
    /// listing them all. Consumes the log, so each call checks what happened since the last.
    #[track_caller]
    pub fn assert_no_console_errors(&self) {
        let errors: Vec<String> = self
            .browser_log()
            .into_iter()
            .filter(LogEntry::is_error)
            .map(|entry| format!("  {entry}"))
            .collect();
        assert!(
            errors.is_empty(),
            "the browser console has {} error(s) (now on {}):\n{}",
            errors.len(),
            self.current_url(),
            errors.join("\n")
        );
    }

    // --------------------------------------------------------------------------------------
    // Accessibility
    // --------------------------------------------------------------------------------------

    /// Runs axe-core on the current page, reporting violations of every rule it runs by
    /// default (WCAG 2.x A/AA and best practices).
    pub fn axe(&self) -> Result<AxeReport, AxeError> {
        self.axe_with(json!({ "resultTypes": ["violations"] }))
    }

    /// [`Browser::axe`] with other `axe.run` options, e.g.
    /// `json!({"resultTypes": ["violations"], "rules": {"color-contrast": {"enabled": false}}})`.
    pub fn axe_with(&self, options: Value) -> Result<AxeReport, AxeError> {
        let source = match self.axe_source.get() {
            Some(source) => source,
            None => {
                let path = axe_js_path();
                let source = fs::read_to_string(&path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        AxeError::Missing(path.clone())
                    } else {
                        AxeError::Failed(format!("reading {}: {e}", path.display()))
                    }
                })?;
                self.axe_source.get_or_init(|| source)
            }
        };
        let failed = |what: &str, e: WebDriverError| AxeError::Failed(format!("{what}: {e}"));
        // Injected once per page (a navigation starts a new window object).
        let present = self
            .command(
                "POST",
                "/execute/sync",
                Some(json!({ "script": "return typeof window.axe === 'object' && typeof window.axe.run === 'function';", "args": [] })),
            )
            .map_err(|e| failed("looking for axe in the page", e))?;
        if present != Value::Bool(true) {
            let script = format!(
                "{source}\n;return typeof window.axe === 'object' ? window.axe.version : null;"
            );
            let version = self
                .command(
                    "POST",
                    "/execute/sync",
                    Some(json!({ "script": script, "args": [] })),
                )
                .map_err(|e| failed("injecting axe-core", e))?;
            if !version.is_string() {
                return Err(AxeError::Failed(format!(
                    "axe-core ran but defined no window.axe (got {version})"
                )));
            }
        }
        let run = r#"
            const options = arguments[0];
            const done = arguments[arguments.length - 1];
            window.axe.run(document, options).then(
                (r) => done({ ok: true, url: r.url, violations: r.violations.map((v) => ({
                    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                    nodes: v.nodes.map((n) => ({
                        target: n.target, html: n.html, failureSummary: n.failureSummary,
                    })),
                })) }),
                (e) => done({ ok: false, error: String((e && e.stack) || e) }),
            );
        "#;
        let result = self
            .command(
                "POST",
                "/execute/async",
                Some(json!({ "script": run, "args": [options] })),
            )
            .map_err(|e| failed("running axe", e))?;
        if result.get("ok") != Some(&Value::Bool(true)) {
            return Err(AxeError::Failed(format!(
                "axe.run failed: {}",
                result.get("error").unwrap_or(&result)
            )));
        }
        let violations = match result.get("violations") {
            Some(Value::Array(items)) => items.iter().map(AxeViolation::from_json).collect(),
            _ => return Err(AxeError::Failed(format!("axe.run returned {result}"))),
        };
        Ok(AxeReport {
            url: str_field(&result, "url"),
            violations,
        })
    }

    /// Fails on any axe-core violation of impact "serious" or "critical" on the current page,
    /// listing each with the elements at fault; `page_name` names the page in the message.
    /// Skips (see skip.rs) when axe-core is not downloaded.
    #[track_caller]
    pub fn assert_accessible(&self, page_name: &str) {
        let report = match self.axe() {
            Ok(report) => report,
            Err(AxeError::Missing(path)) => {
                crate::skip::because(&format!(
                    "{AXE_HINT} (no {}; GANTRY_TEST_AXE_JS may name another axe.min.js)",
                    path.display()
                ));
                return;
            }
            Err(e) => panic!("checking the accessibility of {page_name}: {e}"),
        };
        let serious = report.serious();
        assert!(
            serious.is_empty(),
            "{page_name} ({}) has {} serious or critical accessibility violation(s):\n{}",
            report.url,
            serious.len(),
            serious
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

// ------------------------------------------------------------------------------------------
// Element
// ------------------------------------------------------------------------------------------

/// An element of the current page. It goes stale when the page changes (a navigation, or a
/// script replacing it); find it again then.
#[derive(Clone)]
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
    /// How it was found, for messages.
    css: String,
}

impl fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Element(`{}`)", self.css)
    }
}

impl<'b> Element<'b> {
    #[track_caller]
    fn call(&self, what: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        self.browser.call(
            &format!("{what} `{}`", self.css),
            method,
            &format!("/element/{}{path}", self.id),
            body,
        )
    }

    /// This element as a script argument for [`Browser::execute`].
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    /// The CSS selector it was found with (`outer inner` for nested finds).
    pub fn selector(&self) -> &str {
        &self.css
    }

    /// Scrolls it into view and clicks its centre; fails when another element would get the
    /// click (an overlay) or it is not interactable.
    #[track_caller]
    pub fn click(&self) {
        self.call("clicking", "POST", "/click", None);
    }

    /// Its rendered text (`innerText`: hidden parts excluded, whitespace as displayed).
    #[track_caller]
    pub fn text(&self) -> String {
        as_string(self.call("reading the text of", "GET", "/text", None))
    }

    /// The HTML attribute `name` as written in the markup (booleans give "true"), or None.
    #[track_caller]
    pub fn attr(&self, name: &str) -> Option<String> {
        match self.call(
            &format!("reading the attribute {name} of"),
            "GET",
            &format!("/attribute/{}", path_segment(name)),
            None,
        ) {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    }

    /// The DOM property `name` (`value`, `checked`, `href` as resolved, ...).
    #[track_caller]
    pub fn prop(&self, name: &str) -> Value {
        self.call(
            &format!("reading the property {name} of"),
            "GET",
            &format!("/property/{}", path_segment(name)),
            None,
        )
    }

    /// The `value` property of a form field, as typed.
    #[track_caller]
    pub fn value(&self) -> String {
        as_string(self.prop("value"))
    }

    /// Types `text` (see [`keys`] for Enter and the like) into it, focusing it first.
    #[track_caller]
    pub fn send_keys(&self, text: &str) {
        self.call(
            "typing into",
            "POST",
            "/value",
            Some(json!({ "text": text })),
        );
    }

    /// Empties a text field.
    #[track_caller]
    pub fn clear(&self) {
        self.call("clearing", "POST", "/clear", None);
    }

    #[track_caller]
    pub fn is_displayed(&self) -> bool {
        self.call(
            "checking whether it is displayed:",
            "GET",
            "/displayed",
            None,
        )
        .as_bool()
        .unwrap_or(false)
    }

    #[track_caller]
    pub fn is_enabled(&self) -> bool {
        self.call("checking whether it is enabled:", "GET", "/enabled", None)
            .as_bool()
            .unwrap_or(false)
    }

    /// Whether a checkbox, radio button or option is selected.
    #[track_caller]
    pub fn is_selected(&self) -> bool {
        self.call("checking whether it is selected:", "GET", "/selected", None)
            .as_bool()
            .unwrap_or(false)
    }

    /// Lower-case tag name.
    #[track_caller]
    pub fn tag_name(&self) -> String {
        as_string(self.call("reading the tag name of", "GET", "/name", None)).to_lowercase()
    }

    /// Its outer HTML.
    #[track_caller]
    pub fn html(&self) -> String {
        as_string(
            self.browser
                .execute("return arguments[0].outerHTML;", vec![self.as_arg()]),
        )
    }

    /// The first descendant matching `css`.
    #[track_caller]
    pub fn find(&self, css: &str) -> Element<'b> {
        match self.try_find(css) {
            Some(element) => element,
            None => panic!(
                "no element matches `{css}` inside `{}` {}",
                self.css,
                self.browser.whereabouts()
            ),
        }
    }

    #[track_caller]
    pub fn try_find(&self, css: &str) -> Option<Element<'b>> {
        self.browser.find_in(
            &format!("/element/{}", self.id),
            css,
            &format!("{} {css}", self.css),
        )
    }

    #[track_caller]
    pub fn find_all(&self, css: &str) -> Vec<Element<'b>> {
        self.browser.find_all_in(
            &format!("/element/{}", self.id),
            css,
            &format!("{} {css}", self.css),
        )
    }
}

// ------------------------------------------------------------------------------------------
// Cookies and log entries
// ------------------------------------------------------------------------------------------

/// A cookie as WebDriver sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub path: Option<String>,
    pub domain: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    /// "Strict", "Lax" or "None".
    pub same_site: Option<String>,
    /// Seconds since the epoch; None for a session cookie.
    pub expiry: Option<u64>,
}

impl Cookie {
    /// A session cookie for the current page's domain and path `/`.
    pub fn new(name: &str, value: &str) -> Cookie {
        Cookie {
            name: name.to_string(),
            value: value.to_string(),
            path: Some("/".to_string()),
            ..Cookie::default()
        }
    }

    fn from_json(v: &Value) -> Cookie {
        let opt = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_string);
        Cookie {
            name: str_field(v, "name"),
            value: str_field(v, "value"),
            path: opt("path"),
            domain: opt("domain"),
            secure: v.get("secure").and_then(Value::as_bool).unwrap_or(false),
            http_only: v.get("httpOnly").and_then(Value::as_bool).unwrap_or(false),
            same_site: opt("sameSite"),
            expiry: v
                .get("expiry")
                .and_then(|e| e.as_u64().or_else(|| e.as_f64().map(|f| f as u64))),
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "value": self.value,
            "secure": self.secure,
            "httpOnly": self.http_only,
        });
        if let Some(path) = &self.path {
            v["path"] = json!(path);
        }
        if let Some(domain) = &self.domain {
            v["domain"] = json!(domain);
        }
        if let Some(same_site) = &self.same_site {
            v["sameSite"] = json!(same_site);
        }
        if let Some(expiry) = self.expiry {
            v["expiry"] = json!(expiry);
        }
        v
    }
}

/// One browser console entry: level is SEVERE (errors, uncaught exceptions, failed loads,
/// CSP violations), WARNING, INFO or DEBUG; `source` is Chromium's category (`javascript`,
/// `console-api`, `network`, `security`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub level: String,
    pub message: String,
    pub source: Option<String>,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
}

impl LogEntry {
    fn from_json(v: &Value) -> LogEntry {
        LogEntry {
            level: str_field(v, "level"),
            message: str_field(v, "message"),
            source: v.get("source").and_then(Value::as_str).map(str::to_string),
            timestamp: v
                .get("timestamp")
                .and_then(|t| t.as_u64().or_else(|| t.as_f64().map(|f| f as u64)))
                .unwrap_or(0),
        }
    }

    /// What [`Browser::assert_no_console_errors`] fails on: a SEVERE entry, or anything about
    /// the Content Security Policy. Except one: the browser asks for `/favicon.ico` on its own
    /// (after the load event, so whether its 404 is logged before a check is a race), and that
    /// 404 is not the page's doing. A failed load of an icon the page links to still counts.
    pub fn is_error(&self) -> bool {
        if self.is_default_favicon_404() {
            return false;
        }
        self.level == "SEVERE"
            || self.message.contains("Content Security Policy")
            || self.message.contains("Refused to")
    }

    /// "http://host/favicon.ico - Failed to load resource: ... 404 ...".
    fn is_default_favicon_404(&self) -> bool {
        self.source.as_deref() == Some("network")
            && self
                .message
                .split_once(" - Failed to load resource: ")
                .is_some_and(|(url, why)| {
                    url.ends_with("/favicon.ico") && why.contains("status of 404")
                })
    }
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "[{} {source}] {}", self.level, self.message),
            None => write!(f, "[{}] {}", self.level, self.message),
        }
    }
}

// ------------------------------------------------------------------------------------------
// axe-core
// ------------------------------------------------------------------------------------------

/// Why [`Browser::axe`] has no report.
#[derive(Debug)]
pub enum AxeError {
    /// axe.min.js is not at this path (run scripts/browser-deps.sh).
    Missing(PathBuf),
    /// Injecting or running it failed.
    Failed(String),
}

impl fmt::Display for AxeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AxeError::Missing(path) => write!(f, "{AXE_HINT} (no {})", path.display()),
            AxeError::Failed(message) => write!(f, "axe-core failed: {message}"),
        }
    }
}

impl std::error::Error for AxeError {}

/// Where axe.min.js is read from: `GANTRY_TEST_AXE_JS`, or where scripts/browser-deps.sh
/// puts it, `${XDG_CACHE_HOME:-$HOME/.cache}/gantry/axe-core/AXE_VERSION/axe.min.js`.
pub fn axe_js_path() -> PathBuf {
    if let Some(path) = std::env::var_os("GANTRY_TEST_AXE_JS").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|p| !p.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })
        .unwrap_or_else(|| PathBuf::from("/nonexistent-home/.cache"));
    cache
        .join("gantry/axe-core")
        .join(AXE_VERSION)
        .join("axe.min.js")
}

/// The violations axe-core found on one page.
#[derive(Debug, Clone)]
pub struct AxeReport {
    pub url: String,
    pub violations: Vec<AxeViolation>,
}

impl AxeReport {
    /// The violations of impact "serious" or "critical".
    pub fn serious(&self) -> Vec<&AxeViolation> {
        self.violations
            .iter()
            .filter(|v| matches!(v.impact.as_deref(), Some("serious" | "critical")))
            .collect()
    }

    /// The violation of rule `id` (e.g. "image-alt"), if any.
    pub fn violation(&self, id: &str) -> Option<&AxeViolation> {
        self.violations.iter().find(|v| v.id == id)
    }
}

/// One rule axe-core found broken, with every element that breaks it.
#[derive(Debug, Clone)]
pub struct AxeViolation {
    /// The rule, e.g. "image-alt", "color-contrast", "label".
    pub id: String,
    /// "minor", "moderate", "serious" or "critical".
    pub impact: Option<String>,
    pub help: String,
    pub help_url: String,
    pub nodes: Vec<AxeNode>,
}

/// An element at fault: its selector path (one entry per frame/shadow root) and markup.
#[derive(Debug, Clone)]
pub struct AxeNode {
    pub target: Vec<String>,
    pub html: String,
    pub failure_summary: Option<String>,
}

impl AxeViolation {
    fn from_json(v: &Value) -> AxeViolation {
        let nodes = match v.get("nodes") {
            Some(Value::Array(nodes)) => nodes
                .iter()
                .map(|n| AxeNode {
                    target: match n.get("target") {
                        Some(Value::Array(parts)) => parts
                            .iter()
                            .map(|p| match p {
                                Value::String(s) => s.clone(),
                                // Shadow DOM paths are nested lists.
                                Value::Array(inner) => inner
                                    .iter()
                                    .map(|i| {
                                        i.as_str().map_or_else(|| i.to_string(), str::to_string)
                                    })
                                    .collect::<Vec<_>>()
                                    .join(" >>> "),
                                other => other.to_string(),
                            })
                            .collect(),
                        _ => Vec::new(),
                    },
                    html: str_field(n, "html"),
                    failure_summary: n
                        .get("failureSummary")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                })
                .collect(),
            _ => Vec::new(),
        };
        AxeViolation {
            id: str_field(v, "id"),
            impact: v.get("impact").and_then(Value::as_str).map(str::to_string),
            help: str_field(v, "help"),
            help_url: str_field(v, "helpUrl"),
            nodes,
        }
    }
}

impl fmt::Display for AxeViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  {} ({}): {} <{}>",
            self.id,
            self.impact.as_deref().unwrap_or("no impact"),
            self.help,
            self.help_url
        )?;
        for node in &self.nodes {
            write!(
                f,
                "\n    at {}: {}",
                node.target.join(" | "),
                snippet(&node.html, 200)
            )?;
            if let Some(summary) = &node.failure_summary {
                write!(f, "\n       {}", snippet(summary, 300))?;
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// The program `$var`, else /usr/bin/`name`, else `name` on PATH; None when absent. A `$var`
/// that names no executable is an error in the test setup, not a reason to skip.
#[track_caller]
fn program(var: &str, name: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            executable(&path),
            "{var}={} is not an executable file",
            path.display()
        );
        return Some(path);
    }
    let usr_bin = Path::new("/usr/bin").join(name);
    if executable(&usr_bin) {
        return Some(usr_bin);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// Starts chromedriver on a port of its choosing (`--port=0`; it prints the one it took),
/// falling back to ports we pick when that fails.
#[track_caller]
fn launch_chromedriver(chromedriver: &Path, log_path: &Path) -> (Child, u16) {
    let mut failures = Vec::new();
    for attempt in 0..4 {
        let requested = if attempt == 0 { 0 } else { free_port() };
        let log = fs::File::create(log_path).expect("creating chromedriver.log");
        let mut child = Command::new(chromedriver)
            .arg(format!("--port={requested}"))
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .expect("cloning the chromedriver.log handle"),
            )
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let deadline = Instant::now() + Duration::from_secs(15);
        let failure = loop {
            let log = fs::read_to_string(log_path).unwrap_or_default();
            if let Some(port) = started_on_port(&log, requested) {
                return (child, port);
            }
            if let Ok(Some(status)) = child.try_wait() {
                break format!("port {requested}: chromedriver exited ({status}): {log}");
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break format!("port {requested}: chromedriver did not start within 15s: {log}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        failures.push(failure);
    }
    panic!(
        "could not start {}:\n{}",
        chromedriver.display(),
        failures.join("\n")
    );
}

/// The port of "ChromeDriver was started successfully on port 12345." (older versions say
/// only "...started successfully.": then the one requested, unless that was 0).
fn started_on_port(log: &str, requested: u16) -> Option<u16> {
    let line = log
        .lines()
        .find(|line| line.contains("started successfully"))?;
    let from_line = line.split("on port ").nth(1).and_then(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u16>().ok()
    });
    match from_line {
        Some(port) if port != 0 => Some(port),
        _ if requested != 0 => Some(requested),
        _ => None,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 to find a free port")
}

/// SIGKILLs every descendant of `pid` (Chromium and its helpers, when the session could not
/// be ended), found through /proc; best effort.
fn kill_descendants(pid: u32) {
    let mut parents = std::collections::HashMap::<u32, Vec<u32>>::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.entry(ppid).or_default().push(child);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for &c in parents.get(&p).map(Vec::as_slice).unwrap_or_default() {
            found.push(c.to_string());
            queue.push(c);
        }
    }
    if !found.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&found)
            .stderr(Stdio::null())
            .status();
    }
}

fn log_tail(path: &Path) -> String {
    let log = fs::read_to_string(path).unwrap_or_else(|e| format!("(unreadable: {e})"));
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn as_string(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn str_field(v: &Value, name: &str) -> String {
    v.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `text` with runs of whitespace collapsed, cut to about `max` characters.
fn snippet(text: &str, max: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &collapsed[..cut]),
        None => collapsed,
    }
}

/// Percent-encodes a URL path segment (attribute and cookie names).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[track_caller]
fn decode_png(value: &Value) -> Vec<u8> {
    let Some(encoded) = value.as_str() else {
        panic!(
            "taking a screenshot: expected base64 text, got {}",
            snippet(&value.to_string(), 100)
        );
    };
    let png = base64_decode(encoded)
        .unwrap_or_else(|e| panic!("taking a screenshot: the PNG is not valid base64: {e}"));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "taking a screenshot: the answer is not a PNG ({} bytes)",
        png.len()
    );
    png
}

/// Standard base64 (RFC 4648, `+/`, padding optional, whitespace ignored).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut padding = false;
    for (i, c) in text.bytes().enumerate() {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding = true;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err(format!("byte {c:#04x} at offset {i}")),
        };
        if padding {
            return Err(format!("data after padding at offset {i}"));
        }
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err("truncated input (a lone final character)".to_string());
    }
    Ok(out)
}
