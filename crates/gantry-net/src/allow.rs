//! Allowlist entries an admin adds (`--allow-fetch`): an address range or a host name.
//!
//! Parsing is strict and every rejection says what to write instead, because a mistyped entry
//! that silently matches nothing (or everything) is worse than a refusal at startup.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::class::same_prefix;
use crate::error::NetError;

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allow {
    /// Addresses in `addr/prefix`; matched against the address a fetch connects to, whatever
    /// name led there. An IPv4 range also matches the IPv4-mapped IPv6 form of its addresses.
    Net {
        /// The network address, with no bits set past `prefix`.
        addr: IpAddr,
        /// Leading bits that must agree: at most 32 for IPv4, 128 for IPv6.
        prefix: u8,
    },
    /// A host name as written in the URL: lower-case, without a trailing dot. `*.example.com`
    /// matches every name under `example.com` (not `example.com` itself). Whatever the name
    /// resolves to is allowed: that is the admin's choice.
    Host(String),
}

impl Allow {
    /// Whether this entry allows connecting to `ip` for a URL whose host is `host`
    /// (normalized: lower-case, no trailing dot).
    pub(crate) fn allows(&self, host: &str, ip: IpAddr) -> bool {
        match self {
            Allow::Net { addr, prefix } => net_contains(*addr, *prefix, ip),
            Allow::Host(pattern) => host_matches(pattern, host),
        }
    }
}

fn net_contains(net: IpAddr, prefix: u8, ip: IpAddr) -> bool {
    // `::ffff:10.0.0.1` reaches 10.0.0.1, so an IPv4 range covers it too.
    match (net, ip.to_canonical()) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            same_prefix(u128::from(n.to_bits()), u128::from(i.to_bits()), prefix, 32)
        }
        (IpAddr::V6(n), _) => match ip {
            IpAddr::V6(i) => same_prefix(n.to_bits(), i.to_bits(), prefix, 128),
            IpAddr::V4(i) => same_prefix(n.to_bits(), i.to_ipv6_mapped().to_bits(), prefix, 128),
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => host
            .strip_suffix(parent)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => pattern == host,
    }
}

/// A host name as the guard compares it: lower-case, without a trailing dot.
pub(crate) fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

impl fmt::Display for Allow {
    /// The form `parse_allow` reads back: `10.0.0.0/8`, `127.0.0.1`, `*.corp.example`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allow::Net { addr, prefix } if *prefix == full_prefix(*addr) => {
                write!(f, "{addr}")
            }
            Allow::Net { addr, prefix } => write!(f, "{addr}/{prefix}"),
            Allow::Host(host) => f.write_str(host),
        }
    }
}

impl FromStr for Allow {
    type Err = NetError;

    /// Same as [`crate::FetchPolicy::parse_allow`], so the type works as a clap value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_allow(s)
    }
}

fn full_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

pub(crate) fn parse_allow(text: &str) -> Result<Allow, NetError> {
    let bad = |why: String| NetError::BadAllow {
        text: text.to_owned(),
        why,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad(
            "an empty entry allows nothing; give an address, a CIDR range or a host name".into(),
        ));
    }
    if s.contains("://") {
        return Err(bad(
            "give a host name or an address, not a URL (drop the scheme and path)".into(),
        ));
    }
    if let Some((addr, prefix)) = s.split_once('/') {
        return parse_net(addr, prefix).map_err(bad);
    }
    if let Ok(addr) = parse_ip(s) {
        return Ok(Allow::Net {
            addr,
            prefix: full_prefix(addr),
        });
    }
    parse_host(s).map(Allow::Host).map_err(bad)
}

fn parse_ip(s: &str) -> Result<IpAddr, std::net::AddrParseError> {
    let unbracketed = s
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(s);
    unbracketed.parse()
}

fn parse_net(addr: &str, prefix: &str) -> Result<Allow, String> {
    let addr = parse_ip(addr)
        .map_err(|_| format!("{addr:?} before the '/' is not an IPv4 or IPv6 address"))?;
    let max = full_prefix(addr);
    let prefix: u8 = match prefix.parse() {
        Ok(p) if prefix.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => {
            return Err(format!(
                "{prefix:?} after the '/' is not a prefix length (0 to {max})"
            ));
        }
    };
    if prefix > max {
        return Err(format!(
            "prefix /{prefix} is longer than the {max} bits of {}",
            if max == 32 {
                "an IPv4 address"
            } else {
                "an IPv6 address"
            }
        ));
    }
    let network = mask(addr, u32::from(prefix));
    if network != addr {
        return Err(format!(
            "{addr} has bits set past the /{prefix} prefix; did you mean {network}/{prefix}?"
        ));
    }
    Ok(Allow::Net { addr, prefix })
}

fn mask(addr: IpAddr, prefix: u32) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            IpAddr::V4((v4.to_bits() & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            IpAddr::V6((v6.to_bits() & keep).into())
        }
    }
}

fn parse_host(s: &str) -> Result<String, String> {
    let host = normalize_host(s);
    if host.contains(':') {
        return Err("ports are not part of an entry; give the host name alone".into());
    }
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host.as_str()),
    };
    if name.contains('*') {
        return Err("'*' is only allowed as a whole first label, as in *.example.com".into());
    }
    if name.is_empty() {
        return Err("a wildcard needs a domain after it, as in *.example.com".into());
    }
    if name.len() > 253 {
        return Err("a host name is at most 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("a host name can't have empty labels ('..' or a leading '.')".into());
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "label {label:?} has characters a host name can't have \
                 (internationalized names go in their xn-- form)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    // URL parsers read a host whose last label is numeric as an IPv4 address ("10.1" is
    // 10.0.0.1), so such a name would never match the host of any URL.
    if name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(if wildcard {
            "a domain ending in a number is an address; give a CIDR range such as 10.0.0.0/8".into()
        } else {
            "this is not a complete address; write all four parts (10.0.0.1) or a CIDR range".into()
        });
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(addr: &str, prefix: u8) -> Allow {
        Allow::Net {
            addr: addr.parse().expect("test address parses"),
            prefix,
        }
    }

    fn why(text: &str) -> String {
        match parse_allow(text) {
            Err(NetError::BadAllow { why, .. }) => why,
            other => panic!("{text:?} should be rejected, got {other:?}"),
        }
    }

    #[test]
    fn parses_addresses_ranges_and_names() {
        let cases = [
            ("127.0.0.1", net("127.0.0.1", 32)),
            ("10.0.0.0/8", net("10.0.0.0", 8)),
            ("::1/128", net("::1", 128)),
            ("::1", net("::1", 128)),
            ("[::1]", net("::1", 128)),
            ("fd00::/8", net("fd00::", 8)),
            ("0.0.0.0/0", net("0.0.0.0", 0)),
            (" 192.168.0.0/16 ", net("192.168.0.0", 16)),
            ("registry.internal", Allow::Host("registry.internal".into())),
            (
                "Registry.Internal.",
                Allow::Host("registry.internal".into()),
            ),
            ("*.corp.example", Allow::Host("*.corp.example".into())),
            ("localhost", Allow::Host("localhost".into())),
            ("my_host-1.lan", Allow::Host("my_host-1.lan".into())),
        ];
        for (text, want) in cases {
            assert_eq!(parse_allow(text).ok(), Some(want), "{text:?}");
        }
    }

    #[test]
    fn display_reads_back() {
        for text in [
            "127.0.0.1",
            "10.0.0.0/8",
            "fd00::/8",
            "::1",
            "*.corp.example",
        ] {
            let allow = parse_allow(text).expect("parses");
            assert_eq!(allow.to_string(), text);
            assert_eq!(text.parse::<Allow>().ok(), Some(allow));
        }
    }

    #[test]
    fn rejections_say_what_to_write_instead() {
        assert!(why("").contains("empty"));
        assert!(why("10.0.0.0/33").contains("longer than the 32 bits"));
        assert!(why("::/129").contains("longer than the 128 bits"));
        assert!(why("10.0.0.1/8").contains("did you mean 10.0.0.0/8"));
        assert!(why("10.0.0.0/x").contains("not a prefix length"));
        assert!(why("10.0.0.0/+8").contains("not a prefix length"));
        assert!(why("10.0.0.0/").contains("not a prefix length"));
        assert!(why("10.0.0/8").contains("not an IPv4 or IPv6 address"));
        assert!(why("example.com/8").contains("not an IPv4 or IPv6 address"));
        assert!(why("http://example.com/").contains("not a URL"));
        assert!(why("example.com:8080").contains("ports"));
        assert!(why("*").contains("'*'"));
        assert!(why("*.").contains("'*'"));
        assert!(why("*..").contains("wildcard needs a domain"));
        assert!(why("a.*.example").contains("'*'"));
        assert!(why("exa mple.com").contains("characters"));
        assert!(why("bücher.example").contains("xn--"));
        assert!(why("a..b").contains("empty labels"));
        assert!(why("-a.example").contains("'-'"));
        assert!(why("10.1").contains("not a complete address"));
        assert!(why("*.10").contains("CIDR"));
        assert!(why(&"a".repeat(64)).contains("63"));
    }

    #[test]
    fn error_message_names_the_entry() {
        let err = parse_allow("10.0.0.0/33").expect_err("rejected");
        assert_eq!(
            err.to_string(),
            "invalid --allow-fetch entry \"10.0.0.0/33\": \
             prefix /33 is longer than the 32 bits of an IPv4 address"
        );
    }

    #[test]
    fn ranges_match_addresses_inside_them_only() {
        let ten = net("10.0.0.0", 8);
        assert!(ten.allows("x", "10.255.0.1".parse().expect("ip")));
        assert!(!ten.allows("x", "11.0.0.1".parse().expect("ip")));
        assert!(ten.allows("x", "::ffff:10.0.0.1".parse().expect("ip")));
        assert!(!ten.allows("x", "::1".parse().expect("ip")));
        let everything = net("0.0.0.0", 0);
        assert!(everything.allows("x", "127.0.0.1".parse().expect("ip")));
        let lo6 = net("::1", 128);
        assert!(lo6.allows("x", "::1".parse().expect("ip")));
        assert!(!lo6.allows("x", "127.0.0.1".parse().expect("ip")));
        let mapped = net("::ffff:0:0", 96);
        assert!(mapped.allows("x", "127.0.0.1".parse().expect("ip")));
        let ula = net("fd00::", 8);
        assert!(ula.allows("x", "fd12::1".parse().expect("ip")));
        assert!(!ula.allows("x", "fe80::1".parse().expect("ip")));
    }

    #[test]
    fn hosts_match_exactly_and_wildcards_match_subdomains() {
        let ip = "10.0.0.1".parse().expect("ip");
        let exact = Allow::Host("registry.internal".into());
        assert!(exact.allows("registry.internal", ip));
        assert!(!exact.allows("x.registry.internal", ip));
        assert!(!exact.allows("registry.internal.evil", ip));
        let wild = Allow::Host("*.corp.example".into());
        assert!(wild.allows("a.corp.example", ip));
        assert!(wild.allows("a.b.corp.example", ip));
        assert!(!wild.allows("corp.example", ip));
        assert!(!wild.allows("evilcorp.example", ip));
        assert!(!wild.allows(".corp.example", ip));
        assert_eq!(normalize_host("LocalHost."), "localhost");
    }
}
