//! Connections per client address, for `--max-connections-per-ip N`: an
//! address may hold N WebSocket clients (past that, upgrades get 503) and N
//! connections still in their HTTP phase (past that, a new connection gets
//! 503 at once), so that a flood of slow request heads from one address
//! cannot take every descriptor while the WebSocket count looks fine.
//!
//! One count per address for the whole process, since a client's
//! connections land on any worker; sharded so that workers accepting at the
//! same time rarely wait for each other.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// What a connection holds a slot as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// From accept until the upgrade (or the close).
    Http,
    /// A `/ws` or `/echo` client.
    WebSocket,
}

#[derive(Debug, Default)]
struct Counts {
    http: u32,
    websocket: u32,
}

impl Counts {
    fn of(&mut self, kind: Kind) -> &mut u32 {
        match kind {
            Kind::Http => &mut self.http,
            Kind::WebSocket => &mut self.websocket,
        }
    }
}

#[derive(Debug)]
pub struct PerIp {
    /// 0: no limit, and nothing counted.
    limit: usize,
    shards: Vec<Mutex<HashMap<IpAddr, Counts>>>,
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

    fn shard(&self, key: &IpAddr) -> MutexGuard<'_, HashMap<IpAddr, Counts>> {
        let bits = match key {
            IpAddr::V4(v4) => u128::from(u32::from(*v4)),
            IpAddr::V6(v6) => u128::from(*v6) >> 64,
        };
        // Folded so that every byte of the address picks the shard.
        let folded = bits.to_le_bytes().iter().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(*b))
        });
        self.shards[folded % SHARDS]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes an HTTP-phase slot for a new connection from `key` (see
    /// `client_key`); false when the address already holds the limit.
    pub fn acquire_http(&self, key: IpAddr) -> bool {
        let mut counts = self.shard(&key);
        let counts = counts.entry(key).or_default();
        if counts.http as usize >= self.limit {
            return false;
        }
        counts.http += 1;
        true
    }

    /// The WebSocket clients of the address.
    pub fn websockets(&self, key: IpAddr) -> u64 {
        self.shard(&key)
            .get(&key)
            .map_or(0, |c| u64::from(c.websocket))
    }

    /// A connection of `key` upgraded: its HTTP slot becomes a WebSocket one.
    pub fn upgraded(&self, key: IpAddr) {
        let mut counts = self.shard(&key);
        let counts = counts.entry(key).or_default();
        counts.http = counts.http.saturating_sub(1);
        counts.websocket += 1;
    }

    pub fn release(&self, key: IpAddr, kind: Kind) {
        let mut shard = self.shard(&key);
        if let Some(counts) = shard.get_mut(&key) {
            let count = counts.of(kind);
            *count = count.saturating_sub(1);
            if counts.http == 0 && counts.websocket == 0 {
                shard.remove(&key);
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
    fn each_address_gets_the_limit_of_each_kind_and_gets_slots_back() {
        let per_ip = PerIp::new(2);
        let (a, b) = (ip("127.0.0.1"), ip("127.0.0.2"));
        assert!(per_ip.acquire_http(a) && per_ip.acquire_http(a));
        assert!(!per_ip.acquire_http(a));
        assert!(per_ip.acquire_http(b));
        per_ip.upgraded(a);
        per_ip.upgraded(a);
        assert_eq!((per_ip.websockets(a), per_ip.websockets(b)), (2, 0));
        // Upgraded connections leave room for new HTTP ones.
        assert!(per_ip.acquire_http(a));
        per_ip.release(a, Kind::WebSocket);
        assert_eq!(per_ip.websockets(a), 1);
        per_ip.release(a, Kind::WebSocket);
        per_ip.release(a, Kind::Http);
        per_ip.release(b, Kind::Http);
        assert_eq!(per_ip.addresses(), 0, "no entry left behind");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:10.0.0.7"), ip("10.0.0.7"));
    }
}
