//! Per-connection state. Kept small: an idle WebSocket connection holds no
//! heap buffer, only this struct in the worker's slab.

use std::net::SocketAddr;

use mio::net::TcpStream;

use super::write_queue::WriteQueue;
use crate::app::routes::Endpoint;
use crate::proto::http::Request;
use crate::proto::message::Receiver;

/// A tick value meaning "no timer entry in the wheel".
pub const NOT_ARMED: u64 = u64::MAX;

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub phase: Phase,
    pub out: WriteQueue,
    /// The tick of this connection's live timer-wheel entry.
    pub armed: u64,
    /// Whether WRITABLE interest is registered (only while `out` is not
    /// empty).
    pub writable: bool,
    /// Whether the connection is in the worker's list to flush.
    pub dirty: bool,
}

#[derive(Debug)]
pub enum Phase {
    Http(Box<HttpState>),
    Ws(WsState),
    /// Our last bytes are queued; afterwards the write side is shut and the
    /// read side drained until the peer closes or `until` passes. Closing
    /// only after the peer's FIN keeps a reset from destroying the Close
    /// frame or error response before the peer has read it.
    Closing {
        until: u64,
        write_shut: bool,
    },
}

#[derive(Debug)]
pub struct HttpState {
    pub buf: Vec<u8>,
    /// A request whose head is complete, waiting for this many body bytes.
    pub awaiting_body: Option<(Request, usize)>,
    /// The tick by which the next request head (or pending body) must be in.
    pub deadline: u64,
    pub served: u32,
}

#[derive(Debug)]
pub struct WsState {
    pub rx: Receiver,
    pub endpoint: Endpoint,
    /// The client's sequence number in the hub (`/ws` only).
    pub seq: u64,
    pub last_seen: u64,
    pub next_ping: u64,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, deadline: u64) -> Conn {
        Conn {
            stream,
            peer,
            phase: Phase::Http(Box::new(HttpState {
                buf: Vec::new(),
                awaiting_body: None,
                deadline,
                served: 0,
            })),
            out: WriteQueue::default(),
            armed: NOT_ARMED,
            writable: false,
            dirty: false,
        }
    }

    pub fn is_ws(&self) -> bool {
        matches!(self.phase, Phase::Ws(_))
    }
}
