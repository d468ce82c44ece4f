//! The policy: which URLs and addresses a fetch may reach.
//!
//! A URL's host is checked in two places because reqwest treats the two kinds differently:
//! an IP-literal host is connected to directly (no resolver is asked), so [`FetchPolicy::check_url`]
//! and the redirect policy check it; a named host is checked by the client's resolver against
//! the addresses it is about to connect to, which leaves no window for DNS to answer
//! differently between the check and the connection.

use std::net::IpAddr;

use crate::allow::{self, Allow, normalize_host};
use crate::class::classify;
use crate::error::{NetError, redacted};

/// What outbound fetches may reach.
///
/// The default is [`FetchPolicy::guarded`] with an empty allowlist: public addresses only.
#[derive(Clone, Debug, Default)]
pub struct FetchPolicy {
    unrestricted: bool,
    allow: Vec<Allow>,
}

impl FetchPolicy {
    /// Anything goes (still http and https only): for a local single-user `gantry run`, where
    /// whoever writes the pipeline already has the machine.
    pub fn unrestricted() -> Self {
        FetchPolicy {
            unrestricted: true,
            allow: Vec::new(),
        }
    }

    /// Public addresses only, plus what `allow` lists: for the server, where a remote user
    /// chooses the URL and must not reach the server's own network (metadata services,
    /// databases, admin ports on loopback).
    pub fn guarded(allow: Vec<Allow>) -> Self {
        FetchPolicy {
            unrestricted: false,
            allow,
        }
    }

    /// Parses one allowlist entry: an address (`127.0.0.1`, `::1`), a CIDR range
    /// (`10.0.0.0/8`, `fd00::/8`), a host name (`registry.internal`) or a wildcard
    /// (`*.corp.example`, subdomains only).
    pub fn parse_allow(s: &str) -> Result<Allow, NetError> {
        allow::parse_allow(s)
    }

    /// Whether this policy lets anything through.
    pub fn is_unrestricted(&self) -> bool {
        self.unrestricted
    }

    /// The allowlist of a guarded policy.
    pub fn allowed(&self) -> &[Allow] {
        &self.allow
    }

    /// Parses `url` and refuses what can be refused before connecting: a scheme other than
    /// http or https, and an IP-literal host the policy forbids (in any spelling the URL
    /// parser accepts: `0x7f.1`, `2130706433` and `[::ffff:127.0.0.1]` are all 127.0.0.1).
    /// A named host passes here; the resolver of [`FetchPolicy::client`] checks its
    /// addresses. Credentials in the URL are fine and never appear in errors.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, NetError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| NetError::BadUrl {
            url: url.to_owned(),
            why: e.to_string(),
        })?;
        self.check_parsed(&parsed)?;
        Ok(parsed)
    }

    /// [`FetchPolicy::check_url`] for a URL already parsed (a redirect's target).
    pub(crate) fn check_parsed(&self, url: &reqwest::Url) -> Result<(), NetError> {
        let scheme = url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(NetError::Scheme {
                url: redacted(url),
                scheme: scheme.to_owned(),
            });
        }
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(NetError::BadUrl {
                url: redacted(url),
                why: "the URL has no host".into(),
            });
        };
        // The parser has already turned every IPv4 spelling into dotted decimal and put IPv6
        // in brackets, and a domain never parses as an address, so this finds every literal.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            self.check_addr(host, ip)
                .map_err(|e| e.with_url(redacted(url)))?;
        }
        Ok(())
    }

    /// Whether a fetch of a URL whose host is `host` may connect to `ip`: yes when the policy
    /// is unrestricted, `host` matches a host entry, `ip` is in a range entry, or `ip` is a
    /// public address.
    pub fn check_addr(&self, host: &str, ip: IpAddr) -> Result<(), NetError> {
        if self.unrestricted {
            return Ok(());
        }
        let normalized = normalize_host(host);
        if self.allow.iter().any(|a| a.allows(&normalized, ip)) {
            return Ok(());
        }
        let class = classify(ip);
        if class.is_global() {
            return Ok(());
        }
        Err(NetError::refused(None, host, ip, class))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::AddrClass;

    fn guarded() -> FetchPolicy {
        FetchPolicy::default()
    }

    fn refused_class(policy: &FetchPolicy, url: &str) -> AddrClass {
        match policy.check_url(url) {
            Err(NetError::Refused { class, .. }) => class,
            other => panic!("{url} should be refused, got {other:?}"),
        }
    }

    #[test]
    fn other_schemes_are_refused_by_name() {
        for (url, scheme) in [
            ("ftp://example.com/x", "ftp"),
            ("file:///etc/passwd", "file"),
            ("gopher://example.com:70/", "gopher"),
            ("data:text/plain,hi", "data"),
        ] {
            for policy in [guarded(), FetchPolicy::unrestricted()] {
                match policy.check_url(url) {
                    Err(NetError::Scheme { scheme: s, .. }) => assert_eq!(s, scheme),
                    other => panic!("{url} should be refused for its scheme, got {other:?}"),
                }
            }
        }
        let err = guarded()
            .check_url("file:///etc/passwd")
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "refusing to fetch file:///etc/passwd: only http and https URLs can be fetched, not file"
        );
    }

    #[test]
    fn internal_literals_are_refused_in_every_spelling() {
        let policy = guarded();
        let cases = [
            ("http://127.0.0.1:9/x", AddrClass::Loopback),
            ("http://[::1]/", AddrClass::Loopback),
            (
                "http://169.254.169.254/latest/meta-data",
                AddrClass::LinkLocal,
            ),
            ("http://0x7f.1/", AddrClass::Loopback),
            ("http://0x7f000001/", AddrClass::Loopback),
            ("http://2130706433/", AddrClass::Loopback),
            ("http://017700000001/", AddrClass::Loopback),
            ("http://127.1/", AddrClass::Loopback),
            ("http://127.0.0.1./", AddrClass::Loopback),
            ("http://0/", AddrClass::Unspecified),
            ("http://0.0.0.0:8080/", AddrClass::Unspecified),
            ("http://[::]/", AddrClass::Unspecified),
            ("http://[::ffff:127.0.0.1]/", AddrClass::Loopback),
            ("http://[::ffff:169.254.169.254]/", AddrClass::LinkLocal),
            ("http://[::ffff:a9fe:a9fe]/", AddrClass::LinkLocal),
            ("http://[64:ff9b::a9fe:a9fe]/", AddrClass::LinkLocal),
            ("http://[fe80::1]/", AddrClass::LinkLocal),
            ("http://[fd12::1]/", AddrClass::UniqueLocal),
            ("https://10.1.2.3/", AddrClass::Private),
            ("http://user:pw@192.168.0.1/", AddrClass::Private),
            ("http://100.64.0.1/", AddrClass::SharedCgn),
            ("http://[2001::1]/", AddrClass::Tunnel),
        ];
        for (url, want) in cases {
            assert_eq!(refused_class(&policy, url), want, "{url}");
        }
    }

    #[test]
    fn the_url_parser_normalizes_numeric_hosts_before_the_check() {
        // What reqwest will connect to, so what the check must see.
        for url in [
            "http://0x7f.1/",
            "http://2130706433/",
            "http://017700000001/",
            "http://127.1/",
        ] {
            let parsed = reqwest::Url::parse(url).expect("url parses");
            assert_eq!(parsed.host_str(), Some("127.0.0.1"), "{url}");
        }
    }

    #[test]
    fn refusals_name_the_url_without_credentials() {
        let err = guarded()
            .check_url("http://admin:hunter2@127.0.0.1:9/x")
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "refusing to fetch http://127.0.0.1:9/x: 127.0.0.1 is a loopback address; \
             an admin can allow it with --allow-fetch 127.0.0.1"
        );
    }

    #[test]
    fn public_literals_and_names_pass() {
        let policy = guarded();
        for url in [
            "http://8.8.8.8/",
            "https://[2606:4700::1]/",
            "http://172.32.0.1/",
            "https://user:pw@example.com/x",
            // Names are checked by the resolver, against what they resolve to.
            "http://localhost/",
            "http://metadata.google.internal/",
        ] {
            assert!(policy.check_url(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn unrestricted_passes_every_http_host() {
        let policy = FetchPolicy::unrestricted();
        for url in [
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://169.254.169.254/",
        ] {
            assert!(policy.check_url(url).is_ok(), "{url}");
        }
        assert!(policy.is_unrestricted());
        assert!(!guarded().is_unrestricted());
    }

    #[test]
    fn allowlist_entries_open_exactly_what_they_name() {
        let allow = |s: &str| FetchPolicy::parse_allow(s).expect("entry parses");
        let policy = FetchPolicy::guarded(vec![
            allow("127.0.0.1"),
            allow("10.0.0.0/8"),
            allow("fd00::/8"),
            allow("registry.internal"),
            allow("*.corp.example"),
        ]);
        assert_eq!(policy.allowed().len(), 5);
        assert!(policy.check_url("http://127.0.0.1:8080/").is_ok());
        assert!(policy.check_url("http://[::ffff:127.0.0.1]/").is_ok());
        assert!(policy.check_url("http://10.200.0.1/").is_ok());
        assert!(policy.check_url("http://[fd12::1]/").is_ok());
        assert!(policy.check_url("http://127.0.0.2/").is_err());
        assert!(policy.check_url("http://[::1]/").is_err());
        assert!(policy.check_url("http://192.168.0.1/").is_err());

        let private: IpAddr = "192.168.7.7".parse().expect("ip");
        assert!(policy.check_addr("registry.internal", private).is_ok());
        assert!(policy.check_addr("Registry.Internal.", private).is_ok());
        assert!(policy.check_addr("git.corp.example", private).is_ok());
        assert!(policy.check_addr("corp.example", private).is_err());
        assert!(policy.check_addr("other.internal", private).is_err());
        // A range entry matches whatever name led to the address.
        assert!(
            policy
                .check_addr("anything.example", "10.9.9.9".parse().expect("ip"))
                .is_ok()
        );
    }

    #[test]
    fn bad_urls_are_reported_as_such() {
        for url in ["not a url", "http://", "http://exa mple.com/", ""] {
            assert!(
                matches!(guarded().check_url(url), Err(NetError::BadUrl { .. })),
                "{url:?}"
            );
        }
    }
}
