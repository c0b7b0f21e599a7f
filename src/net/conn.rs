//! Per-connection state. Kept small: an idle WebSocket connection holds no
//! heap buffer, only this struct in the worker's slab.

use std::net::SocketAddr;

use mio::net::TcpStream;

use super::timer_wheel::Tick;
use super::write_queue::WriteQueue;
use crate::app::routes::Endpoint;
use crate::proto::http::Request;
use crate::proto::message::Receiver;

/// A tick value meaning "no timer entry in the wheel".
pub const NOT_ARMED: Tick = Tick::MAX;

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    pub phase: Phase,
    pub out: WriteQueue,
    /// The tick of this connection's live timer-wheel entry.
    pub armed: Tick,
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
    /// Our last bytes are queued; what happens once they are written
    /// depends on `mode`. `until` bounds the whole thing.
    Closing {
        until: Tick,
        write_shut: bool,
        mode: CloseMode,
    },
}

#[derive(Debug)]
pub enum CloseMode {
    /// Shut the write side, then discard input until the peer closes.
    /// Closing only after the peer's FIN keeps a reset from destroying the
    /// Close frame or error response before the peer has read it.
    Linger,
    /// We sent a Close: wait for the peer's Close (RFC 6455 7.1.1), then end
    /// the connection.
    AwaitClose(Receiver),
    /// Nothing more is expected from the peer: end the connection as soon
    /// as the queue is written.
    AfterFlush,
}

#[derive(Debug)]
pub struct HttpState {
    /// Kept while the connection speaks HTTP (publishing checks it); a
    /// WebSocket client does not carry it, logs ask the socket.
    pub peer: SocketAddr,
    pub buf: Vec<u8>,
    /// A request whose head is complete, waiting for this many body bytes.
    pub awaiting_body: Option<(Request, usize)>,
    /// A request whose answer waits for another worker, by ticket: no other
    /// request is read until it is answered.
    pub parked: Option<(u64, Request)>,
    /// The tick by which the next request head (or pending body) must be in.
    pub deadline: Tick,
    pub served: u32,
    /// Reading and answering stopped because the client does not read its
    /// answers (or its buffer is full); the worker resumes once the queue
    /// drains.
    pub stalled: bool,
}

#[derive(Debug)]
pub struct WsState {
    pub rx: Receiver,
    pub endpoint: Endpoint,
    /// The client's sequence number in the hub (`/ws` only).
    pub seq: u64,
    pub last_seen: Tick,
    pub next_ping: Tick,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr, deadline: Tick) -> Conn {
        Conn {
            stream,
            phase: Phase::Http(Box::new(HttpState {
                peer,
                buf: Vec::new(),
                awaiting_body: None,
                parked: None,
                stalled: false,
                deadline,
                served: 0,
            })),
            out: WriteQueue::default(),
            armed: NOT_ARMED,
            writable: false,
            dirty: false,
        }
    }

    /// The peer's address for logs ("-" once the socket has lost it).
    pub fn peer_label(&self) -> String {
        let addr = match &self.phase {
            Phase::Http(http) => Some(http.peer),
            _ => self.stream.peer_addr().ok(),
        };
        addr.map_or_else(|| "-".to_owned(), |a| a.to_string())
    }

    pub fn is_ws(&self) -> bool {
        matches!(self.phase, Phase::Ws(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open connection is one of these in the worker's slab: its size
    /// is most of the memory an idle client costs (see BENCHMARKS.md).
    #[test]
    fn a_connection_stays_compact() {
        let size = std::mem::size_of::<Conn>();
        println!("size_of::<Conn>() = {size}");
        assert!(size <= 160, "Conn grew to {size} bytes");
    }
}
