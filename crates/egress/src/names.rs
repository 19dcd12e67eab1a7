//! Synthetic addresses: the job's resolver answers each allowed name with its own address from
//! 198.18.0.0/15, so a transparent connection to that address names its destination exactly,
//! even for protocols that carry no name (SSH), and even when the real address is loopback.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

/// The benchmarking range (RFC 2544): never a real destination.
pub const POOL_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
pub const POOL_SIZE: u32 = 1 << 17;

pub fn in_pool(ip: IpAddr) -> bool {
    match crate::addr::canonical(ip) {
        IpAddr::V4(v4) => u32::from(v4) & !(POOL_SIZE - 1) == POOL_BASE,
        IpAddr::V6(_) => false,
    }
}

#[derive(Debug, Default)]
pub struct Names {
    by_name: HashMap<String, Ipv4Addr>,
    by_addr: HashMap<Ipv4Addr, String>,
    next: u32,
}

impl Names {
    /// The name's synthetic address, assigning the next free one; `None` when the pool is spent.
    pub fn assign(&mut self, name: &str) -> Option<Ipv4Addr> {
        if let Some(a) = self.by_name.get(name) {
            return Some(*a);
        }
        // Skip .0 and .255 of every /24: some clients treat them as network/broadcast.
        loop {
            self.next += 1;
            if self.next >= POOL_SIZE {
                return None;
            }
            let last = self.next & 0xff;
            if last != 0 && last != 255 {
                break;
            }
        }
        let a = Ipv4Addr::from(POOL_BASE + self.next);
        self.by_name.insert(name.to_string(), a);
        self.by_addr.insert(a, name.to_string());
        Some(a)
    }

    pub fn name_of(&self, ip: IpAddr) -> Option<&str> {
        match crate::addr::canonical(ip) {
            IpAddr::V4(v4) => self.by_addr.get(&v4).map(String::as_str),
            IpAddr::V6(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_stable_distinct_addresses() {
        let mut n = Names::default();
        let a = n.assign("allowed.test").unwrap();
        let b = n.assign("shared.test").unwrap();
        assert_ne!(a, b);
        assert_eq!(n.assign("allowed.test"), Some(a));
        assert_eq!(n.name_of(IpAddr::V4(a)), Some("allowed.test"));
        assert_eq!(n.name_of("198.18.9.9".parse().unwrap()), None);
        assert!(in_pool(IpAddr::V4(a)));
        assert!(in_pool("198.19.255.254".parse().unwrap()));
        assert!(!in_pool("198.20.0.1".parse().unwrap()));
        for _ in 0..600 {
            let x = n.assign(&format!("n{}.test", n.next)).unwrap();
            assert!(x.octets()[3] != 0 && x.octets()[3] != 255);
        }
    }
}
