//! `--max-connections-per-ip` on the worker's side: the address each
//! connection is counted under, and as what, from accept to close (the
//! process-wide counts are in `crate::per_ip`).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::ids::ConnKey;
use crate::per_ip::{client_key, Kind, PerIp};

#[derive(Debug, Default)]
pub struct PerIpSlots {
    held: HashMap<ConnKey, (IpAddr, Kind)>,
}

impl PerIpSlots {
    /// Counts a new connection against its address; false when the address
    /// already holds the limit in connections in the HTTP phase (it is then
    /// not counted, and is to be turned away).
    pub fn admit(&mut self, counts: &PerIp, key: ConnKey, ip: IpAddr) -> bool {
        if counts.limit() == 0 {
            return true;
        }
        let client = client_key(ip);
        if !counts.acquire_http(client) {
            return false;
        }
        self.held.insert(key, (client, Kind::Http));
        true
    }

    /// The WebSocket clients of an address, for the upgrade check (0 while
    /// the limit is off: nothing is counted then).
    pub fn clients(counts: &PerIp, ip: IpAddr) -> u64 {
        match counts.limit() {
            0 => 0,
            _ => counts.websockets(client_key(ip)),
        }
    }

    /// The connection became a WebSocket client: it now counts as one.
    pub fn upgraded(&mut self, counts: &PerIp, key: ConnKey) {
        if let Some((client, kind)) = self.held.get_mut(&key) {
            counts.upgraded(*client);
            *kind = Kind::WebSocket;
        }
    }

    /// Gives a closed connection's slot back to its address.
    pub fn release(&mut self, counts: &PerIp, key: ConnKey) {
        if let Some((client, kind)) = self.held.remove(&key) {
            counts.release(client, kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn a_slot_is_held_from_accept_to_close_and_changes_kind_on_upgrade() {
        let counts = PerIp::new(2);
        let mut slots = PerIpSlots::default();
        assert!(slots.admit(&counts, ConnKey(1), A));
        assert!(slots.admit(&counts, ConnKey(2), A));
        assert!(!slots.admit(&counts, ConnKey(3), A), "a third in HTTP");
        slots.upgraded(&counts, ConnKey(1));
        assert_eq!(PerIpSlots::clients(&counts, A), 1);
        assert!(slots.admit(&counts, ConnKey(3), A), "the upgrade freed one");
        slots.release(&counts, ConnKey(1));
        slots.release(&counts, ConnKey(1));
        assert_eq!(PerIpSlots::clients(&counts, A), 0, "released once");
    }

    #[test]
    fn off_counts_nothing() {
        let counts = PerIp::new(0);
        let mut slots = PerIpSlots::default();
        for key in 0..100 {
            assert!(slots.admit(&counts, ConnKey(key), A));
        }
        assert!(slots.held.is_empty());
        assert_eq!(PerIpSlots::clients(&counts, A), 0);
    }
}
