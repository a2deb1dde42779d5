//! Which IP addresses are not on the public internet: the targets of server-side request forgery
//! (the loopback services, the cloud metadata endpoint at 169.254.169.254, the private network
//! behind the server). An IPv6 address that carries an IPv4 one (`::ffff:127.0.0.1`, NAT64, 6to4)
//! is judged by the IPv4 address it reaches.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonPublic {
    Loopback,
    /// 169.254/16, fe80::/10: the cloud metadata endpoint lives here.
    LinkLocal,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier-grade NAT), fc00::/7, fec0::/10.
    Private,
    /// 0/8 and `::`: connecting to 0.0.0.0 reaches the local host.
    Unspecified,
    Multicast,
    Broadcast,
    /// 240/4: never assigned to a host.
    Reserved,
}

impl fmt::Display for NonPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NonPublic::Loopback => "a loopback address",
            NonPublic::LinkLocal => "a link-local address (the cloud metadata endpoint among them)",
            NonPublic::Private => "a private network address",
            NonPublic::Unspecified => "an unspecified address",
            NonPublic::Multicast => "a multicast address",
            NonPublic::Broadcast => "the broadcast address",
            NonPublic::Reserved => "a reserved address",
        })
    }
}

/// `None` for a public address; otherwise what it is.
pub fn classify(ip: IpAddr) -> Option<NonPublic> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<NonPublic> {
    let [a, b, ..] = ip.octets();
    Some(match (a, b) {
        _ if ip.is_broadcast() => NonPublic::Broadcast,
        (0, _) => NonPublic::Unspecified,
        (127, _) => NonPublic::Loopback,
        (169, 254) => NonPublic::LinkLocal,
        (10, _) | (192, 168) => NonPublic::Private,
        (172, 16..=31) | (100, 64..=127) => NonPublic::Private,
        (224..=239, _) => NonPublic::Multicast,
        (240..=255, _) => NonPublic::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<NonPublic> {
    let first = ip.segments()[0];
    Some(match first {
        _ if ip.is_unspecified() => NonPublic::Unspecified,
        _ if ip.is_loopback() => NonPublic::Loopback,
        0xfe80..=0xfebf => NonPublic::LinkLocal,
        // fec0::/10 is the deprecated site-local range; fc00::/7 the unique local one.
        0xfec0..=0xfeff | 0xfc00..=0xfdff => NonPublic::Private,
        0xff00..=0xffff => NonPublic::Multicast,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 one reaches: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`, deprecated but still routed by some stacks), NAT64 (`64:ff9b::/96`) and 6to4
/// (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // `::` and `::1` are IPv6's own unspecified and loopback addresses.
        [0, 0, 0, 0, 0, 0, _, _] if !ip.is_unspecified() && !ip.is_loopback() => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, high, mid, ..] => Some(Ipv4Addr::new((high >> 8) as u8, high as u8, (mid >> 8) as u8, mid as u8)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> Option<NonPublic> {
        classify(text.parse().expect("an IP address"))
    }

    #[test]
    fn ipv4_ranges_that_reach_the_server_or_its_network_are_not_public() {
        let cases = [
            ("127.0.0.1", NonPublic::Loopback),
            ("127.255.255.254", NonPublic::Loopback),
            ("169.254.169.254", NonPublic::LinkLocal),
            ("10.0.0.5", NonPublic::Private),
            ("172.16.0.1", NonPublic::Private),
            ("172.31.255.255", NonPublic::Private),
            ("192.168.1.1", NonPublic::Private),
            ("100.100.100.200", NonPublic::Private),
            ("0.0.0.0", NonPublic::Unspecified),
            ("0.1.2.3", NonPublic::Unspecified),
            ("224.0.0.1", NonPublic::Multicast),
            ("239.255.255.250", NonPublic::Multicast),
            ("255.255.255.255", NonPublic::Broadcast),
            ("240.0.0.1", NonPublic::Reserved),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), Some(want), "{ip}");
        }
        for public in ["8.8.8.8", "172.15.255.255", "172.32.0.0", "100.63.255.255", "100.128.0.0", "223.255.255.255"] {
            assert_eq!(class(public), None, "{public}");
        }
    }

    #[test]
    fn ipv6_ranges_and_ipv4_addresses_inside_ipv6_ones_are_judged() {
        let cases = [
            ("::1", NonPublic::Loopback),
            ("::", NonPublic::Unspecified),
            ("fe80::1", NonPublic::LinkLocal),
            ("febf::1", NonPublic::LinkLocal),
            ("fc00::1", NonPublic::Private),
            ("fd00:ec2::254", NonPublic::Private),
            ("fec0::1", NonPublic::Private),
            ("ff02::1", NonPublic::Multicast),
            ("::ffff:127.0.0.1", NonPublic::Loopback),
            ("::ffff:169.254.169.254", NonPublic::LinkLocal),
            ("::ffff:10.1.2.3", NonPublic::Private),
            ("::ffff:0.0.0.0", NonPublic::Unspecified),
            ("::127.0.0.1", NonPublic::Loopback),
            ("64:ff9b::a9fe:a9fe", NonPublic::LinkLocal),
            ("2002:7f00:1::", NonPublic::Loopback),
            ("2002:c0a8:101::1", NonPublic::Private),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), Some(want), "{ip}");
        }
        for public in ["2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert_eq!(class(public), None, "{public}");
        }
    }
}
