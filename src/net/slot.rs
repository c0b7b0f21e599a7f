//! A worker's entry for one connection: the socket, the connection's state
//! machine, and the loop's bookkeeping for it. Kept small: an idle
//! WebSocket connection holds no heap buffer, only this in the slab.

use mio::net::TcpStream;

use super::timer_wheel::Tick;
use crate::app::hub::Client;
use crate::conn::{Connection, NEVER};

#[derive(Debug)]
pub struct Slot {
    pub stream: TcpStream,
    pub conn: Connection<Client>,
    /// The tick of this connection's live timer-wheel entry (`NEVER`: none).
    pub armed: Tick,
    /// Whether WRITABLE interest is registered (only while the queue is not
    /// empty).
    pub writable: bool,
    /// Whether the connection is in the worker's list to flush.
    pub dirty: bool,
}

impl Slot {
    pub fn new(stream: TcpStream, conn: Connection<Client>) -> Slot {
        Slot {
            stream,
            conn,
            armed: NEVER,
            writable: false,
            dirty: false,
        }
    }

    /// The peer's address for logs ("-" once the socket has lost it).
    pub fn peer_label(&self) -> String {
        self.conn
            .peer()
            .or_else(|| self.stream.peer_addr().ok())
            .map_or_else(|| "-".to_owned(), |a| a.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open connection is one of these in the worker's slab: its size
    /// is most of the memory an idle client costs (see BENCHMARKS.md). It
    /// was 152 bytes before the connection became a state machine of its
    /// own, and must not grow.
    #[test]
    fn a_connection_stays_compact() {
        let size = std::mem::size_of::<Slot>();
        println!("size_of::<Slot>() = {size}");
        assert!(size <= 152, "Slot grew to {size} bytes");
    }
}
