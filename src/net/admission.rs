//! Admission at accept: `--max-connections-per-ip` counts every connection
//! of a client address from accept to close, HTTP ones included, so a flood
//! of slow request heads from one address cannot take every descriptor
//! while the connection cap (which counts WebSocket clients) looks fine.

use std::net::IpAddr;

use super::conn::CloseMode;
use super::worker::Worker;
use super::write_queue::Chunk;
use crate::log;
use crate::per_ip::client_key;
use crate::proto::http::{Response, Status};

impl Worker {
    /// Counts a new connection against its address. One over the limit is
    /// answered 503 at once, without waiting for its request, and closed;
    /// returns false then.
    pub(super) fn admit_per_ip(&mut self, key: usize, ip: IpAddr) -> bool {
        let per_ip = &self.shared.per_ip;
        if per_ip.limit() == 0 {
            return true;
        }
        let client = client_key(ip);
        if per_ip.acquire(client) {
            self.per_ip_held.insert(key, client);
            return true;
        }
        self.shared.stats.limit_hit("per_ip");
        log!(
            Debug,
            "connection refused: its address holds --max-connections-per-ip",
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

    /// Gives a closed connection's slot back to its address.
    pub(super) fn release_per_ip(&mut self, key: usize) {
        if let Some(client) = self.per_ip_held.remove(&key) {
            self.shared.per_ip.release(client);
        }
    }
}
