//! Which resolved addresses the proxy refuses to connect to: private, loopback, link-local
//! (cloud metadata), the host's own, and other non-public ranges, unless pinned or allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4-mapped IPv6 address as the IPv4 address it is; every other address unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Why a job must not reach `ip` by name, or `None` for an ordinary public address.
/// `host_addrs` are the supervisor host's own interface addresses.
pub fn forbidden(ip: IpAddr, host_addrs: &[IpAddr]) -> Option<&'static str> {
    let ip = canonical(ip);
    let by_range = match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    };
    by_range.or_else(|| {
        host_addrs
            .iter()
            .any(|h| canonical(*h) == ip)
            .then_some("the host's own address")
    })
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_private() {
        Some("private address")
    } else if ip.is_link_local() {
        Some("link-local address (cloud metadata lives here)")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared (carrier-grade NAT) address")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified address")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("multicast or reserved address")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking range (stockade's synthetic addresses)")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignment range")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        Some("loopback address")
    } else if ip.is_unspecified() {
        Some("unspecified address")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("unique local (private) address")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local address")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if s[0] == 0x64 && s[1] == 0xff9b {
        // NAT64: judge the IPv4 address inside.
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        forbidden_v4(v4)
    } else if s[0] == 0x2002 {
        // 6to4: judge the IPv4 address inside.
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        forbidden_v4(v4)
    } else if let Some(v4) = ip.to_ipv4() {
        // IPv4-compatible (deprecated) ::a.b.c.d
        forbidden_v4(v4)
    } else {
        None
    }
}

/// The host's own interface addresses, read once when the supervisor starts.
pub fn host_addresses() -> std::io::Result<Vec<IpAddr>> {
    Ok(if_addrs::get_if_addrs()?.into_iter().map(|i| i.ip()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Option<&'static str> {
        forbidden(s.parse().unwrap(), &["203.0.113.9".parse().unwrap()])
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for a in [
            "127.0.0.1",
            "127.5.6.7",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "198.19.255.254",
            "192.0.0.8",
            "::1",
            "::",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "203.0.113.9",
        ] {
            assert!(f(a).is_some(), "{a} must be refused");
        }
        assert_eq!(
            f("169.254.169.254"),
            Some("link-local address (cloud metadata lives here)")
        );
        assert_eq!(f("203.0.113.9"), Some("the host's own address"));
    }

    #[test]
    fn public_addresses_pass() {
        for a in [
            "8.8.8.8",
            "140.82.112.3",
            "172.32.0.1",
            "100.128.0.1",
            "198.20.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(f(a), None, "{a} is public");
        }
    }

    #[test]
    fn host_addresses_include_loopback() {
        let addrs = host_addresses().unwrap();
        assert!(addrs.contains(&"127.0.0.1".parse().unwrap()), "{addrs:?}");
    }
}
