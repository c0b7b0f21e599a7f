//! What the application may know about the process when it decides: plain
//! values the shell reads (the wall clock once per loop turn, counters,
//! the drain), never the atomics or mailboxes themselves.

use crate::obs::metrics::Memory;

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The wall clock of this loop turn, in ms since the Unix epoch.
    pub now_ms: u64,
    pub draining: bool,
    /// Whole seconds left before the drain deadline (while draining).
    pub drain_deadline_in_s: u64,
    /// Open WebSocket connections of the process.
    pub active: u64,
    /// `/ws` clients of the process (echo connections excluded).
    pub notify_clients: u64,
    pub connections_total: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
    pub uptime_s: u64,
    /// `disabled`, `connected` or `reconnecting`.
    pub redis: &'static str,
    /// WebSocket clients of the requesting address (counted only with
    /// `--max-connections-per-ip`, else 0).
    pub peer_clients: u64,
    pub pid: u32,
    /// Where the listening sockets came from: `bound`, `inherited` or
    /// `handed_over`.
    pub listener: &'static str,
    /// Whether another process serves the listening sockets too (see
    /// `net::listeners::ListenerState`).
    pub listener_shared: bool,
    /// What the process holds for its clients, the history included.
    pub memory: Memory,
}
