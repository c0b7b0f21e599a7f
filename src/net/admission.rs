//! `--max-connections-per-ip` on the worker's side: every connection is
//! counted against its client address from accept to close (see
//! `per_ip.rs`); the routes refuse an upgrade from an address that holds
//! the limit in WebSocket clients.

use std::net::IpAddr;

use super::worker::Worker;
use crate::log;
use crate::obs::metrics::Limit;
use crate::per_ip::{client_key, Kind};
use crate::proto::http::{Response, Status};

impl Worker {
    /// Counts a new connection against its address. One over the limit of
    /// connections in the HTTP phase is answered 503 at once, without
    /// waiting for its request, and closed.
    pub(super) fn admit_per_ip(&mut self, key: usize, ip: IpAddr) {
        let per_ip = &self.shared.per_ip;
        if per_ip.limit() == 0 {
            return;
        }
        let client = client_key(ip);
        if per_ip.acquire_http(client) {
            self.per_ip_held.insert(key, (client, Kind::Http));
            return;
        }
        self.shared.stats.limit_hit(Limit::PerIpHttp);
        log!(
            Debug,
            "connection refused: its address has --max-connections-per-ip connections in the HTTP phase",
            peer = ip,
            limit = per_ip.limit()
        );
        let response = Response::error(
            Status::SERVICE_UNAVAILABLE,
            "too many connections from your address",
        )
        .with_header("Retry-After", "5")
        .closing();
        self.drive(key, |conn, now, s| conn.turn_away(response, now, s));
    }

    /// The WebSocket clients of an address, for the upgrade check.
    pub(super) fn per_ip_clients(&self, ip: IpAddr) -> u64 {
        match self.shared.per_ip.limit() {
            0 => 0,
            _ => self.shared.per_ip.websockets(client_key(ip)),
        }
    }

    /// The connection became a WebSocket client: it now counts as one.
    pub(super) fn per_ip_upgraded(&mut self, key: usize) {
        if let Some((client, kind)) = self.per_ip_held.get_mut(&key) {
            self.shared.per_ip.upgraded(*client);
            *kind = Kind::WebSocket;
        }
    }

    /// Gives a closed connection's slot back to its address.
    pub(super) fn release_per_ip(&mut self, key: usize) {
        if let Some((client, kind)) = self.per_ip_held.remove(&key) {
            self.shared.per_ip.release(client, kind);
        }
    }
}
