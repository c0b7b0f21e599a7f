//! `--max-connections-per-ip` on the worker's side: every connection is
//! counted against its client address from accept to close (see
//! `per_ip.rs`); the upgrade check itself is in the routes.

use std::net::IpAddr;

use super::conn::CloseMode;
use super::worker::Worker;
use super::write_queue::Chunk;
use crate::log;
use crate::per_ip::{client_key, Slot};
use crate::proto::http::{Response, Status};

impl Worker {
    /// Counts a new connection against its address. One over the limit of
    /// connections in the HTTP phase is answered 503 at once, without
    /// waiting for its request, and closed; returns false then.
    pub(super) fn admit_per_ip(&mut self, key: usize, ip: IpAddr) -> bool {
        let per_ip = &self.shared.per_ip;
        if per_ip.limit() == 0 {
            return true;
        }
        let client = client_key(ip);
        if per_ip.acquire_http(client) {
            self.per_ip_held.insert(key, (client, Slot::Http));
            return true;
        }
        self.shared.stats.limit_hit("per_ip_http");
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
        self.send(key, Chunk::Owned(response.encode(false)));
        self.start_closing(key, CloseMode::Linger);
        false
    }

    /// The connection became a WebSocket client: it now counts as one.
    pub(super) fn per_ip_upgraded(&mut self, key: usize) {
        if let Some((client, slot)) = self.per_ip_held.get_mut(&key) {
            self.shared.per_ip.upgraded(*client);
            *slot = Slot::WebSocket;
        }
    }

    /// Gives a closed connection's slot back to its address.
    pub(super) fn release_per_ip(&mut self, key: usize) {
        if let Some((client, slot)) = self.per_ip_held.remove(&key) {
            self.shared.per_ip.release(client, slot);
        }
    }
}
