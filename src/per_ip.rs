//! Connections per client address, for `--max-connections-per-ip`. One
//! count per address for the whole process, since a client's connections
//! land on any worker; sharded so that workers accepting at the same time
//! rarely wait for each other.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;

const SHARDS: usize = 16;

#[derive(Debug)]
pub struct PerIp {
    /// 0: no limit, and nothing counted.
    limit: usize,
    shards: Vec<Mutex<HashMap<IpAddr, u32>>>,
}

/// The address a client is counted under. An IPv4 client reaching an IPv6
/// socket counts as its IPv4 address; an IPv6 client as its /64, the
/// smallest network a host is usually given, so that one host cannot take
/// more slots just by picking new addresses within it.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

impl PerIp {
    pub fn new(limit: usize) -> PerIp {
        PerIp {
            limit,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn shard(&self, key: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        let bits = match key {
            IpAddr::V4(v4) => u128::from(u32::from(*v4)),
            IpAddr::V6(v6) => u128::from(*v6) >> 64,
        };
        // Folded so that every byte of the address picks the shard.
        let folded = bits.to_le_bytes().iter().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(*b))
        });
        &self.shards[folded % SHARDS]
    }

    /// Takes a slot for a client under `key` (see `client_key`); false when
    /// it already holds the limit.
    pub fn acquire(&self, key: IpAddr) -> bool {
        let mut counts = self
            .shard(&key)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(key).or_insert(0);
        if *count as usize >= self.limit {
            return false;
        }
        *count += 1;
        true
    }

    pub fn release(&self, key: IpAddr) {
        let mut counts = self
            .shard(&key)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&key);
            }
        }
    }

    /// Addresses holding at least one slot.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        client_key(s.parse().unwrap())
    }

    #[test]
    fn each_address_gets_the_limit_and_gets_slots_back() {
        let per_ip = PerIp::new(2);
        let (a, b) = (ip("127.0.0.1"), ip("127.0.0.2"));
        assert!(per_ip.acquire(a) && per_ip.acquire(a));
        assert!(!per_ip.acquire(a));
        assert!(per_ip.acquire(b));
        per_ip.release(a);
        assert!(per_ip.acquire(a));
        for _ in 0..2 {
            per_ip.release(a);
        }
        per_ip.release(b);
        assert_eq!(per_ip.addresses(), 0, "no entry left behind");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:10.0.0.7"), ip("10.0.0.7"));
    }
}
