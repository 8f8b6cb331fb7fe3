//! The simulated public address pool. Addresses come from documentation and benchmarking
//! ranges (RFC 5737 TEST-NET-3/TEST-NET-2, RFC 2544 198.18.0.0/15, RFC 3849 2001:db8::/32),
//! so nothing armsim hands out can be mistaken for a real Azure address.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddressPool {
    // The ranges are constants: snapshots only carry what is in use.
    #[serde(skip, default = "default_v4_ranges")]
    v4_ranges: Vec<Ipv4Net>,
    v4_used: BTreeMap<u64, u64>,
    #[serde(skip, default = "default_v6_base")]
    v6_base: Ipv6Net,
    v6_used: BTreeMap<u64, u64>,
}

fn default_v4_ranges() -> Vec<Ipv4Net> {
    ["203.0.113.0/24", "198.51.100.0/24", "198.18.0.0/15"]
        .iter()
        .map(|s| s.parse().expect("constant IPv4 range parses"))
        .collect()
}

fn default_v6_base() -> Ipv6Net {
    "2001:db8::/32".parse().expect("constant IPv6 range parses")
}

impl Default for AddressPool {
    fn default() -> Self {
        AddressPool {
            v4_ranges: default_v4_ranges(),
            v4_used: BTreeMap::new(),
            v6_base: default_v6_base(),
            v6_used: BTreeMap::new(),
        }
    }
}

/// First aligned free block of `size` addresses inside `ranges`, given non-overlapping `used`.
fn first_fit(ranges: &[(u64, u64)], used: &BTreeMap<u64, u64>, size: u64) -> Option<u64> {
    let align = |x: u64| x.div_ceil(size) * size;
    for &(start, len) in ranges {
        let end = start + len;
        let mut cand = align(start);
        while cand + size <= end {
            match used.range(..cand + size).next_back() {
                Some((&us, &ul)) if us + ul > cand => cand = align(us + ul),
                _ => return Some(cand),
            }
        }
    }
    None
}

impl AddressPool {
    /// Allocates a prefix of `prefix_len` bits (32/128 for a single address).
    pub fn allocate(&mut self, ipv6: bool, prefix_len: u8) -> Option<IpNet> {
        if ipv6 {
            let host_bits = 128u32.checked_sub(u32::from(prefix_len))?;
            if host_bits > 63 {
                return None;
            }
            let size = 1u64 << host_bits;
            let at = first_fit(&[(0, u64::MAX / 2)], &self.v6_used, size)?;
            self.v6_used.insert(at, size);
            let base = u128::from(self.v6_base.network());
            let addr = Ipv6Addr::from(base + u128::from(at));
            Ipv6Net::new(addr, prefix_len).ok().map(IpNet::V6)
        } else {
            let host_bits = 32u32.checked_sub(u32::from(prefix_len))?;
            let size = 1u64 << host_bits;
            let ranges: Vec<(u64, u64)> = self
                .v4_ranges
                .iter()
                .map(|r| {
                    (
                        u64::from(u32::from(r.network())),
                        1u64 << (32 - r.prefix_len()),
                    )
                })
                .collect();
            let at = first_fit(&ranges, &self.v4_used, size)?;
            self.v4_used.insert(at, size);
            Ipv4Net::new(Ipv4Addr::from(at as u32), prefix_len)
                .ok()
                .map(IpNet::V4)
        }
    }

    pub fn release(&mut self, net: &IpNet) {
        match net {
            IpNet::V4(n) => {
                self.v4_used.remove(&u64::from(u32::from(n.network())));
            }
            IpNet::V6(n) => {
                let base = u128::from(self.v6_base.network());
                let off = u128::from(n.network()).wrapping_sub(base);
                if let Ok(off) = u64::try_from(off) {
                    self.v6_used.remove(&off);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_aligned_disjoint_and_reusable() {
        let mut p = AddressPool::default();
        let a = p.allocate(false, 32).unwrap();
        let b = p.allocate(false, 28).unwrap();
        let c = p.allocate(false, 31).unwrap();
        assert_eq!(a.to_string(), "203.0.113.0/32");
        assert_eq!(b.to_string(), "203.0.113.16/28");
        assert_eq!(c.to_string(), "203.0.113.2/31");
        p.release(&b);
        assert_eq!(
            p.allocate(false, 28).unwrap().to_string(),
            "203.0.113.16/28"
        );
        let v6 = p.allocate(true, 124).unwrap();
        assert_eq!(v6.to_string(), "2001:db8::/124");
    }

    #[test]
    fn pool_runs_into_the_next_range() {
        let mut p = AddressPool::default();
        for _ in 0..16 {
            p.allocate(false, 28).unwrap();
        }
        assert_eq!(
            p.allocate(false, 28).unwrap().to_string(),
            "198.51.100.0/28"
        );
    }
}
