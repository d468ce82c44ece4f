//! Why a fetch was refused, in words a user can act on.
//!
//! reqwest reports a refusal from the resolver or the redirect policy as a generic "error
//! sending request" whose cause is buried in its `source()` chain; [`refusal`] and
//! [`describe`] dig it out so callers print our message instead.

use std::error::Error;
use std::net::IpAddr;

use crate::allow::normalize_host;
use crate::class::AddrClass;

/// The command-line flag the refusal hint names; the server's admin passes allowlist entries
/// with it.
pub const ALLOW_FLAG: &str = "--allow-fetch";

/// Why a URL or an allowlist entry was not accepted.
#[derive(Clone, Debug, thiserror::Error)]
pub enum NetError {
    /// The fetch would reach an address the policy forbids.
    #[error(
        "refusing to fetch {}{}: {}; {hint}",
        target(.url.as_deref(), host),
        origin(.redirected_from.as_deref()),
        reason(host, *.addr, *.class)
    )]
    Refused {
        /// The refused URL (without credentials) when known; the resolver only knows the
        /// host, and [`describe`] fills the URL in from reqwest's error.
        url: Option<String>,
        /// The URL whose redirect led here, when [`describe`] could tell it was one.
        redirected_from: Option<String>,
        /// The URL's host: a name, or the IP literal.
        host: String,
        /// The forbidden address the host is or resolved to.
        addr: IpAddr,
        /// Why the address is forbidden.
        class: AddrClass,
        /// What an admin can do about it.
        hint: String,
    },
    /// Only http and https are fetched: other schemes reach files or other protocols.
    #[error("refusing to fetch {url}: only http and https URLs can be fetched, not {scheme}")]
    Scheme {
        /// The URL, without credentials.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// The text is not a URL that can be fetched.
    #[error("invalid URL {url:?}: {why}")]
    BadUrl {
        /// The text as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// An allowlist entry could not be parsed.
    #[error("invalid {ALLOW_FLAG} entry {text:?}: {why}")]
    BadAllow {
        /// The entry as given.
        text: String,
        /// What is wrong with it, and what to write instead.
        why: String,
    },
    /// reqwest could not build the client (its TLS backend failed to initialize).
    #[error("cannot build the HTTP client: {why}")]
    Client {
        /// reqwest's reason.
        why: String,
    },
    /// A name resolved to no address at all.
    #[error("{host} resolved to no address")]
    NoAddress {
        /// The name looked up.
        host: String,
    },
}

impl NetError {
    /// A refusal of `addr`, which `host` is or resolved to.
    pub(crate) fn refused(url: Option<String>, host: &str, addr: IpAddr, class: AddrClass) -> Self {
        // Allowing the name is narrower than allowing the address (which every name that
        // resolves there would then reach), so the hint names the host as the URL gave it.
        let entry = host.trim_start_matches('[').trim_end_matches(']');
        NetError::Refused {
            url,
            redirected_from: None,
            host: host.to_owned(),
            addr,
            class,
            hint: format!("an admin can allow it with {ALLOW_FLAG} {entry}"),
        }
    }

    /// This error with `known` (already redacted) recorded as its URL when the refusal did
    /// not know it.
    pub(crate) fn with_url(mut self, known: String) -> Self {
        if let NetError::Refused { url, .. } = &mut self
            && url.is_none()
        {
            *url = Some(known);
        }
        self
    }

    /// This error placed in the fetch of `requested` (already redacted), the URL reqwest
    /// reports: when the refused host or URL is another one, a redirect led there.
    fn in_fetch_of(mut self, requested: String) -> Self {
        if let NetError::Refused {
            url,
            redirected_from,
            host,
            ..
        } = &mut self
        {
            match url {
                Some(refused) if *refused != requested => *redirected_from = Some(requested),
                Some(_) => {}
                None if host_of(&requested).as_deref() == Some(&normalize_host(host)) => {
                    *url = Some(requested);
                }
                None => *redirected_from = Some(requested),
            }
        }
        self
    }
}

/// The host of `url` as the guard compares hosts, brackets of an IPv6 literal removed.
fn host_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    Some(normalize_host(
        host.trim_start_matches('[').trim_end_matches(']'),
    ))
}

fn origin(redirected_from: Option<&str>) -> String {
    redirected_from
        .map(|from| format!(" (redirected from {from})"))
        .unwrap_or_default()
}

fn target<'a>(url: Option<&'a str>, host: &'a str) -> String {
    match url {
        Some(url) => url.to_owned(),
        None => format!("from {host}"),
    }
}

fn reason(host: &str, addr: IpAddr, class: AddrClass) -> String {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if literal.parse::<IpAddr>() == Ok(addr) {
        format!("{addr} is {class}")
    } else {
        format!("{host} resolves to {addr}, {class}")
    }
}

/// `url` as it may appear in messages and logs: without a password or user name.
pub(crate) fn redacted(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    // Fails only for URLs that cannot have credentials, which then have none to hide.
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.to_string()
}

/// `url` cut down to what is safe to log when the URL itself may be a secret (a chat webhook
/// carries its token in the path or query): scheme, host and port, with `/…` standing for
/// any path, query or fragment. Credentials are dropped; text that is not a URL shows as
/// `(not a URL)` rather than verbatim.
pub fn redact_url(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return "(not a URL)".to_owned();
    };
    let mut shown = format!("{}://", parsed.scheme());
    if let Some(host) = parsed.host_str() {
        shown.push_str(host);
    }
    if let Some(port) = parsed.port() {
        shown.push_str(&format!(":{port}"));
    }
    let bare = matches!(parsed.path(), "" | "/")
        && parsed.query().is_none()
        && parsed.fragment().is_none();
    shown.push_str(if bare { "/" } else { "/…" });
    shown
}

/// The guard's refusal somewhere in `err`'s `source()` chain, if it is there. reqwest wraps
/// resolver and redirect-policy errors in its own, so a caller holding a `reqwest::Error`
/// finds the reason here.
pub fn refusal<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a NetError> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(ours) = err.downcast_ref::<NetError>() {
            return Some(ours);
        }
        current = err.source();
    }
    None
}

/// A one-line description of a failed fetch: the guard's refusal (with the URL filled in)
/// if there is one, else reqwest's message with its causes joined by ": ", so that "error
/// sending request" comes with the reason it failed.
pub fn describe(err: &reqwest::Error) -> String {
    if let Some(refused) = refusal(err) {
        return match err.url() {
            Some(url) => refused.clone().in_fetch_of(redacted(url)).to_string(),
            None => refused.to_string(),
        };
    }
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        let part = err.to_string();
        // Some wrappers repeat their cause's message in their own; say it once.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_of_a_literal_names_the_address_and_the_flag() {
        let err = NetError::refused(
            Some("http://127.0.0.1:9/x".into()),
            "127.0.0.1",
            "127.0.0.1".parse().expect("ip"),
            AddrClass::Loopback,
        );
        assert_eq!(
            err.to_string(),
            "refusing to fetch http://127.0.0.1:9/x: 127.0.0.1 is a loopback address; \
             an admin can allow it with --allow-fetch 127.0.0.1"
        );
    }

    #[test]
    fn refusal_of_a_name_says_what_it_resolved_to() {
        let err = NetError::refused(
            None,
            "metadata.internal",
            "169.254.169.254".parse().expect("ip"),
            AddrClass::LinkLocal,
        );
        assert_eq!(
            err.to_string(),
            "refusing to fetch from metadata.internal: metadata.internal resolves to \
             169.254.169.254, a link-local address; an admin can allow it with \
             --allow-fetch metadata.internal"
        );
        let url =
            reqwest::Url::parse("http://user:secret@metadata.internal/latest").expect("url parses");
        assert!(err.with_url(redacted(&url)).to_string().starts_with(
            "refusing to fetch http://metadata.internal/latest: metadata.internal resolves"
        ));
    }

    #[test]
    fn a_refused_redirect_hop_names_where_it_came_from() {
        let hop = NetError::refused(
            Some("http://10.0.0.1/".into()),
            "10.0.0.1",
            "10.0.0.1".parse().expect("ip"),
            AddrClass::Private,
        );
        assert_eq!(
            hop.clone()
                .in_fetch_of("https://example.com/a".into())
                .to_string(),
            "refusing to fetch http://10.0.0.1/ (redirected from https://example.com/a): \
             10.0.0.1 is a private address; an admin can allow it with --allow-fetch 10.0.0.1"
        );
        assert_eq!(
            hop.clone()
                .in_fetch_of("http://10.0.0.1/".into())
                .to_string(),
            hop.to_string()
        );
    }

    #[test]
    fn ipv6_literals_are_recognized_with_brackets() {
        let err = NetError::refused(
            None,
            "[::1]",
            "::1".parse().expect("ip"),
            AddrClass::Loopback,
        );
        assert_eq!(
            err.to_string(),
            "refusing to fetch from [::1]: ::1 is a loopback address; \
             an admin can allow it with --allow-fetch ::1"
        );
    }

    #[test]
    fn refusal_walks_the_source_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Box<dyn Error + Send + Sync>);

        let inner = NetError::NoAddress { host: "x".into() };
        let outer = Outer(Box::new(Outer(Box::new(inner))));
        assert!(matches!(refusal(&outer), Some(NetError::NoAddress { .. })));
        let unrelated = Outer(Box::new(std::io::Error::other("no")));
        assert!(refusal(&unrelated).is_none());
    }

    #[test]
    fn redact_url_keeps_only_scheme_host_and_port() {
        assert_eq!(
            redact_url("https://u:p@hooks.example.com:8443/services/T0/B1/secret?x=1"),
            "https://hooks.example.com:8443/…"
        );
        assert_eq!(redact_url("http://example.com"), "http://example.com/");
        assert_eq!(
            redact_url("http://example.com/?token=1"),
            "http://example.com/…"
        );
        assert_eq!(redact_url("http://[::1]:9/x"), "http://[::1]:9/…");
        assert_eq!(redact_url("not a url with /secret"), "(not a URL)");
    }

    #[test]
    fn credentials_never_reach_messages() {
        let url = reqwest::Url::parse("https://me:hunter2@example.com/a?b").expect("url parses");
        assert_eq!(redacted(&url), "https://example.com/a?b");
    }
}
