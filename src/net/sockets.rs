//! The kernel's side of a worker's connections: their sockets by the key
//! the node gave them, registered with the worker's poll under that key,
//! and the Redis sockets. Through `Transmit` the node writes to them.

use std::io::{self, IoSlice, Read};
use std::net::Shutdown;
use std::os::fd::AsFd;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::redis_io::RedisIo;
use super::socket_write::{send, sendmsg};
use crate::ids::ConnKey;
use crate::node::redis::Side;
use crate::node::Transmit;

pub struct Sockets {
    /// By key: the node gives a closed connection's key to the next one,
    /// so this grows only to the most connections open at once.
    conns: Vec<Option<TcpStream>>,
    pub redis: Option<RedisIo>,
}

impl Sockets {
    pub fn new(redis: Option<RedisIo>) -> Sockets {
        Sockets {
            conns: Vec::new(),
            redis,
        }
    }

    /// Keeps a new connection's socket and watches it for input.
    pub fn insert(
        &mut self,
        key: ConnKey,
        mut stream: TcpStream,
        registry: &Registry,
    ) -> io::Result<()> {
        registry.register(&mut stream, Token(key.0), Interest::READABLE)?;
        if self.conns.len() <= key.0 {
            self.conns.resize_with(key.0 + 1, || None);
        }
        self.conns[key.0] = Some(stream);
        Ok(())
    }

    /// Closes a connection's socket.
    pub fn close(&mut self, key: ConnKey, registry: &Registry) {
        if let Some(mut stream) = self.conns.get_mut(key.0).and_then(Option::take) {
            let _ = registry.deregister(&mut stream);
        }
    }

    pub fn shut_write(&self, key: ConnKey) {
        if let Some(stream) = self.get(key) {
            let _ = stream.shutdown(Shutdown::Write);
        }
    }

    /// Watches the socket for writability too (while bytes wait for it),
    /// or for input only.
    pub fn watch_writable(&mut self, key: ConnKey, on: bool, registry: &Registry) {
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if let Some(stream) = self.conns.get_mut(key.0).and_then(Option::as_mut) {
            let _ = registry.reregister(stream, Token(key.0), interest);
        }
    }

    /// Reads once into `buf`; `None` when there is no such socket.
    pub fn read(&mut self, key: ConnKey, buf: &mut [u8]) -> Option<io::Result<usize>> {
        let stream = self.conns.get_mut(key.0).and_then(Option::as_mut)?;
        Some(stream.read(buf))
    }

    fn get(&self, key: ConnKey) -> Option<&TcpStream> {
        self.conns.get(key.0).and_then(Option::as_ref)
    }
}

impl Transmit for Sockets {
    fn send(&mut self, key: ConnKey, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(stream) = self.get(key) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        match bufs {
            [one] => send(stream.as_fd(), one),
            _ => sendmsg(stream.as_fd(), bufs),
        }
    }

    fn send_redis(&mut self, side: Side, bytes: &[u8]) -> io::Result<usize> {
        match &mut self.redis {
            Some(redis) => redis.send(side, bytes),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every open connection costs its entry in the node's table and its
    /// socket here: most of the memory an idle client costs (see
    /// BENCHMARKS.md). It was 152 bytes before the worker became a node
    /// and a shell, and must not grow.
    ///
    /// mio's debug builds keep a selector id in every socket, to catch one
    /// registered with two polls (12 more bytes with the padding); the
    /// release build, the one that runs, has only the descriptor.
    #[test]
    fn a_connection_stays_compact() {
        let mio_debug_check = if cfg!(debug_assertions) { 12 } else { 0 };
        let socket = std::mem::size_of::<Option<TcpStream>>() - mio_debug_check;
        let size = crate::node::CONNECTION_BYTES + socket;
        println!("a connection: {size} bytes");
        assert!(size <= 152, "a connection grew to {size} bytes");
    }
}
