//! What kind of network an address belongs to.
//!
//! Pure: the guard's decision rests on this table, so it is written out range by range and
//! unit-tested without any I/O. Addresses that carry an IPv4 address inside an IPv6 one
//! (mapped, compatible, NAT64, 6to4) are classified by the IPv4 address they carry, because
//! that is where a packet to them ends up.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kind of network an address belongs to. Only [`AddrClass::Global`] is reachable by a
/// guarded fetch without an allowlist entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddrClass {
    /// `127.0.0.0/8`, `::1`: this machine.
    Loopback,
    /// `0.0.0.0`, `::`: connecting to it reaches this machine on Linux.
    Unspecified,
    /// `169.254.0.0/16`, `fe80::/10`: the link, including cloud metadata services
    /// (`169.254.169.254`).
    LinkLocal,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16` (RFC 1918).
    Private,
    /// `100.64.0.0/10`: carrier-grade NAT, often a provider's internal network (RFC 6598).
    SharedCgn,
    /// `fc00::/7`: the IPv6 counterpart of private addresses (RFC 4193).
    UniqueLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`:
    /// never routed on the internet.
    Documentation,
    /// Special-purpose ranges that are not public unicast: `0.0.0.0/8`, `192.0.0.0/24`,
    /// `198.18.0.0/15`, `240.0.0.0/4`, and IPv6 outside `2000::/3` that no other class covers.
    Reserved,
    /// `2001::/32` (Teredo): the address hides the real endpoint, so it cannot be checked.
    Tunnel,
    /// Public unicast: what a guarded fetch may reach.
    Global,
}

impl AddrClass {
    /// Whether a guarded fetch may reach this class without an allowlist entry.
    pub fn is_global(self) -> bool {
        self == AddrClass::Global
    }
}

impl fmt::Display for AddrClass {
    /// Reads after "X is": "127.0.0.1 is a loopback address".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrClass::Loopback => "a loopback address",
            AddrClass::Unspecified => "the unspecified address",
            AddrClass::LinkLocal => "a link-local address",
            AddrClass::Private => "a private address",
            AddrClass::SharedCgn => "a shared (carrier-grade NAT) address",
            AddrClass::UniqueLocal => "a unique-local address",
            AddrClass::Multicast => "a multicast address",
            AddrClass::Broadcast => "the broadcast address",
            AddrClass::Documentation => "a documentation address",
            AddrClass::Reserved => "a reserved address",
            AddrClass::Tunnel => "a Teredo tunnel address",
            AddrClass::Global => "a public address",
        })
    }
}

/// The class of `ip`. IPv6 addresses that embed an IPv4 address (`::ffff:a.b.c.d`,
/// `::a.b.c.d`, `64:ff9b::a.b.c.d`, `2002:AABB:CCDD::/48`) take the class of the IPv4 address.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// `true` when the first `prefix` bits of `a` and `b` agree.
pub(crate) fn same_prefix(a: u128, b: u128, prefix: u8, width: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(width - prefix.min(width));
    (a >> shift) == (b >> shift)
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    same_prefix(
        u128::from(ip.to_bits()),
        u128::from(Ipv4Addr::from(net).to_bits()),
        prefix,
        32,
    )
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u8) -> bool {
    let [a, b, c, d, e, f, g, h] = net;
    same_prefix(
        ip.to_bits(),
        Ipv6Addr::new(a, b, c, d, e, f, g, h).to_bits(),
        prefix,
        128,
    )
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    // Order matters where ranges nest: 0.0.0.0 before 0/8, 255.255.255.255 before 240/4.
    const TABLE: &[([u8; 4], u8, AddrClass)] = &[
        ([0, 0, 0, 0], 32, AddrClass::Unspecified),
        ([0, 0, 0, 0], 8, AddrClass::Reserved),
        ([127, 0, 0, 0], 8, AddrClass::Loopback),
        ([169, 254, 0, 0], 16, AddrClass::LinkLocal),
        ([10, 0, 0, 0], 8, AddrClass::Private),
        ([172, 16, 0, 0], 12, AddrClass::Private),
        ([192, 168, 0, 0], 16, AddrClass::Private),
        ([100, 64, 0, 0], 10, AddrClass::SharedCgn),
        ([224, 0, 0, 0], 4, AddrClass::Multicast),
        ([255, 255, 255, 255], 32, AddrClass::Broadcast),
        ([240, 0, 0, 0], 4, AddrClass::Reserved),
        ([192, 0, 2, 0], 24, AddrClass::Documentation),
        ([198, 51, 100, 0], 24, AddrClass::Documentation),
        ([203, 0, 113, 0], 24, AddrClass::Documentation),
        ([192, 0, 0, 0], 24, AddrClass::Reserved),
        ([198, 18, 0, 0], 15, AddrClass::Reserved),
    ];
    TABLE
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map_or(AddrClass::Global, |(_, _, class)| *class)
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    if ip.is_unspecified() {
        return AddrClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddrClass::Loopback;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    const TABLE: &[([u16; 8], u8, AddrClass)] = &[
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, AddrClass::Reserved), // local-use NAT64
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, AddrClass::LinkLocal),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, AddrClass::Reserved), // deprecated site-local
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, AddrClass::UniqueLocal),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, AddrClass::Multicast),
        (
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
            32,
            AddrClass::Documentation,
        ),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, AddrClass::Documentation),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, AddrClass::Tunnel),
        ([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, AddrClass::Reserved), // benchmarking
        ([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, AddrClass::Reserved), // ORCHID
        ([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, AddrClass::Reserved), // ORCHIDv2
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, AddrClass::Reserved),  // discard-only
    ];
    if let Some((_, _, class)) = TABLE
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
    {
        return *class;
    }
    // Only 2000::/3 is allocated for global unicast; anything else is not a public host.
    if in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        AddrClass::Global
    } else {
        AddrClass::Reserved
    }
}

/// The IPv4 address a packet to `ip` is delivered to, for the forms that embed one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = ip.to_bits();
    let low32 = Ipv4Addr::from_bits((bits & 0xffff_ffff) as u32);
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated but still parsed).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if bits >> 32 == 0 {
        return Some(low32);
    }
    // 64:ff9b::a.b.c.d (well-known NAT64 prefix, RFC 6052).
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return Some(low32);
    }
    // 2002:AABB:CCDD::/48 (6to4): the IPv4 address is bits 16..48.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return Some(Ipv4Addr::from_bits(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> AddrClass {
        classify(s.parse().expect("test address parses"))
    }

    #[test]
    fn every_v4_class() {
        let cases = [
            ("127.0.0.1", AddrClass::Loopback),
            ("127.255.255.254", AddrClass::Loopback),
            ("0.0.0.0", AddrClass::Unspecified),
            ("0.1.2.3", AddrClass::Reserved),
            ("169.254.169.254", AddrClass::LinkLocal),
            ("10.1.2.3", AddrClass::Private),
            ("172.16.0.1", AddrClass::Private),
            ("172.31.255.255", AddrClass::Private),
            ("172.32.0.1", AddrClass::Global),
            ("172.15.255.255", AddrClass::Global),
            ("192.168.1.1", AddrClass::Private),
            ("100.64.0.1", AddrClass::SharedCgn),
            ("100.127.255.255", AddrClass::SharedCgn),
            ("100.128.0.1", AddrClass::Global),
            ("224.0.0.1", AddrClass::Multicast),
            ("239.255.255.250", AddrClass::Multicast),
            ("255.255.255.255", AddrClass::Broadcast),
            ("240.0.0.1", AddrClass::Reserved),
            ("192.0.2.1", AddrClass::Documentation),
            ("198.51.100.7", AddrClass::Documentation),
            ("203.0.113.9", AddrClass::Documentation),
            ("192.0.0.8", AddrClass::Reserved),
            ("198.18.0.1", AddrClass::Reserved),
            ("198.19.255.255", AddrClass::Reserved),
            ("198.20.0.1", AddrClass::Global),
            ("8.8.8.8", AddrClass::Global),
            ("1.1.1.1", AddrClass::Global),
        ];
        for (addr, want) in cases {
            assert_eq!(class(addr), want, "{addr}");
        }
    }

    #[test]
    fn every_v6_class() {
        let cases = [
            ("::1", AddrClass::Loopback),
            ("::", AddrClass::Unspecified),
            ("fe80::1", AddrClass::LinkLocal),
            ("febf::1", AddrClass::LinkLocal),
            ("fec0::1", AddrClass::Reserved),
            ("fd12::1", AddrClass::UniqueLocal),
            ("fc00::1", AddrClass::UniqueLocal),
            ("ff02::1", AddrClass::Multicast),
            ("2001:db8::1", AddrClass::Documentation),
            ("3fff::1", AddrClass::Documentation),
            ("2001::1", AddrClass::Tunnel),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", AddrClass::Tunnel),
            ("2001:2::1", AddrClass::Reserved),
            ("100::1", AddrClass::Reserved),
            ("64:ff9b:1::1", AddrClass::Reserved),
            ("4000::1", AddrClass::Reserved),
            ("2606:4700::1", AddrClass::Global),
            ("2a00:1450:4001:82b::200e", AddrClass::Global),
        ];
        for (addr, want) in cases {
            assert_eq!(class(addr), want, "{addr}");
        }
    }

    #[test]
    fn embedded_ipv4_takes_the_class_of_the_ipv4_address() {
        let cases = [
            ("::ffff:127.0.0.1", AddrClass::Loopback),
            ("::ffff:169.254.169.254", AddrClass::LinkLocal),
            ("::ffff:10.0.0.1", AddrClass::Private),
            ("::ffff:0.0.0.0", AddrClass::Unspecified),
            ("::ffff:8.8.8.8", AddrClass::Global),
            ("::127.0.0.1", AddrClass::Loopback),
            ("::169.254.169.254", AddrClass::LinkLocal),
            ("64:ff9b::127.0.0.1", AddrClass::Loopback),
            ("64:ff9b::a9fe:a9fe", AddrClass::LinkLocal),
            ("64:ff9b::8.8.8.8", AddrClass::Global),
            ("2002:7f00:1::", AddrClass::Loopback),
            ("2002:c0a8:101::1", AddrClass::Private),
            ("2002:a9fe:a9fe::", AddrClass::LinkLocal),
            ("2002:808:808::1", AddrClass::Global),
        ];
        for (addr, want) in cases {
            assert_eq!(class(addr), want, "{addr}");
        }
    }

    #[test]
    fn only_global_is_reachable_by_default() {
        assert!(AddrClass::Global.is_global());
        assert!(!AddrClass::Loopback.is_global());
        assert_eq!(AddrClass::Loopback.to_string(), "a loopback address");
    }

    #[test]
    fn prefix_comparison_at_the_edges() {
        assert!(same_prefix(0, u128::MAX, 0, 32));
        assert!(same_prefix(5, 5, 32, 32));
        assert!(!same_prefix(5, 4, 32, 32));
        assert!(same_prefix(u128::MAX, u128::MAX, 128, 128));
        assert!(!same_prefix(u128::MAX, u128::MAX - 1, 128, 128));
    }
}
