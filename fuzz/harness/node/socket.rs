//! A connection's socket as byte buffers: what the client sent and the
//! server has not read, everything the server wrote, and how much more
//! the kernel would take. The node writes into it through `Wire`, its
//! `Transmit`, which refuses (with a panic) any write the shell would
//! never make.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};

use wsnotify::ids::ConnKey;
use wsnotify::node::redis::Side;
use wsnotify::node::Transmit;

use super::script::Room;

#[derive(Debug)]
pub struct Socket {
    pub node: usize,
    pub key: ConnKey,
    /// Sent by the client, not read by the server yet.
    pub inbox: VecDeque<u8>,
    /// Everything the client ever sent, to tell which request was upgraded.
    pub sent: Vec<u8>,
    /// Everything the server wrote, in order.
    pub received: Vec<u8>,
    pub room: Room,
    /// The room was ever less than everything: the server may have had
    /// bytes queued when it let the connection go.
    pub ever_limited: bool,
    /// The last write that took anything took less than it was offered: a
    /// queue chunk may be half-written.
    pub partial: bool,
    /// The node asked to hear when the socket takes writes again.
    pub watched: bool,
    pub fin_sent: bool,
    pub write_shut: bool,
    /// `Close`d by the node, or its worker ended.
    pub closed: bool,
    /// Reads and writes fail (the peer reset it).
    pub broken: bool,
}

impl Socket {
    pub fn new(node: usize, key: ConnKey) -> Socket {
        Socket {
            node,
            key,
            inbox: VecDeque::new(),
            sent: Vec::new(),
            received: Vec::new(),
            room: Room::Everything,
            ever_limited: false,
            partial: false,
            watched: false,
            fin_sent: false,
            write_shut: false,
            closed: false,
            broken: false,
        }
    }

    /// The client still takes part: it may send, read or fail.
    pub fn is_open(&self) -> bool {
        !self.closed
    }

    pub fn set_room(&mut self, room: Room) {
        self.room = room;
        self.ever_limited |= room != Room::Everything;
    }

    fn write(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let offered: usize = bufs.iter().map(|b| b.len()).sum();
        let mut left = match self.room {
            Room::Nothing | Room::Bytes(0) => return Err(io::ErrorKind::WouldBlock.into()),
            Room::Bytes(n) => n,
            Room::Everything => usize::MAX,
        };
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(left);
            self.received.extend_from_slice(&buf[..take]);
            left -= take;
            n += take;
            if take < buf.len() {
                break;
            }
        }
        if let Room::Bytes(_) = self.room {
            self.room = Room::Bytes(left);
        }
        self.partial = n < offered;
        Ok(n)
    }
}

/// One node's sockets, lent to it as its `Transmit`.
pub struct Wire<'a> {
    pub by_key: &'a HashMap<ConnKey, usize>,
    pub sockets: &'a mut [Socket],
}

impl Transmit for Wire<'_> {
    fn send(&mut self, key: ConnKey, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let index = *self
            .by_key
            .get(&key)
            .unwrap_or_else(|| panic!("a write to key {key}, which was never accepted"));
        let socket = &mut self.sockets[index];
        assert!(
            !socket.closed,
            "a write to connection {key} after its Close"
        );
        assert!(
            !socket.write_shut,
            "a write to connection {key} after its ShutWrite"
        );
        if socket.broken {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        socket.write(bufs)
    }

    fn send_redis(&mut self, _: Side, _: &[u8]) -> io::Result<usize> {
        panic!("a Redis write, with no Redis configured")
    }
}
