//! How the node writes without a socket: the shell hands it a `Transmit`
//! when it is time to write, and the node offers it bytes for a connection
//! or a Redis connection, as rustls hands its records to a `Write`. The
//! node never calls the kernel itself, but a broadcast still goes from the
//! one encoded frame straight to every socket, with nothing copied or
//! queued for a client whose socket takes it all.

use std::io::{self, IoSlice, Write};

use super::redis::Side;
use crate::ids::ConnKey;

pub trait Transmit {
    /// Writes as much of `bufs`, in order, as the socket of `key` takes now;
    /// `WouldBlock` when it takes nothing.
    fn send(&mut self, key: ConnKey, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// The same for one of the worker's Redis connections.
    fn send_redis(&mut self, side: Side, bytes: &[u8]) -> io::Result<usize>;
}

/// One connection's socket as a `Write`, for its write queue.
pub struct KeyWriter<'a, T: Transmit> {
    pub io: &'a mut T,
    pub key: ConnKey,
}

impl<T: Transmit> Write for KeyWriter<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.send(self.key, &[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.io.send(self.key, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
