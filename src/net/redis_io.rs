//! The I/O of a worker's Redis link (`node::redis::RedisLink`): its two
//! sockets and its host lookups. It does what the link asks and hands in
//! what the sockets and lookups say; every decision is the link's.
//!
//! Per loop turn, the worker first calls `on_ready` for each Redis token
//! that is ready, before it handles any client (`RedisLink::sequencing`
//! relies on it), then `settle`. So do `RedisLink::on_timer` when its
//! deadline is due and `RedisLink::publish`: each is followed by `settle`.
//! A lookup that finishes wakes the worker, whose `settle` hands it in.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::redis_resolve::{Lookup, Resolve, Wake};
use crate::node::redis::{LinkInput, LinkOutput, RedisLink, Side};

pub struct RedisIo {
    tokens: [Token; 2],
    resolve: Resolve,
    wake: Wake,
    sockets: [Option<Socket>; 2],
    lookups: [Option<Lookup>; 2],
}

struct Socket {
    stream: TcpStream,
    /// The non-blocking connect has not been seen to complete yet.
    connecting: bool,
}

impl RedisIo {
    /// `tokens`: the subscriber's, then the publisher's.
    pub fn new(tokens: [Token; 2], resolve: Resolve, wake: Wake) -> RedisIo {
        RedisIo {
            tokens,
            resolve,
            wake,
            sockets: [None, None],
            lookups: [None, None],
        }
    }

    /// Does one thing the link asked; a connect or lookup that cannot
    /// even start comes back as a failure for `LinkInput::Failed`.
    pub fn carry_out(&mut self, out: LinkOutput, registry: &Registry) -> Option<(Side, String)> {
        match out {
            LinkOutput::Lookup { side, host, port } => {
                match Lookup::start(&host, port, self.resolve, &self.wake) {
                    Ok(lookup) => {
                        self.lookups[side.index()] = Some(lookup);
                        None
                    }
                    Err(e) => Some((side, format!("cannot start a lookup: {e}"))),
                }
            }
            LinkOutput::Connect { side, addr } => self
                .open(side, addr, registry)
                .err()
                .map(|e| (side, format!("cannot connect to {addr}: {e}"))),
            LinkOutput::Close { side } => {
                self.close(side, registry);
                None
            }
        }
    }

    /// Readiness on `token`: a connect that completed (or failed), then
    /// everything there is to read, a chunk of `scratch` at a time.
    pub fn on_ready(
        &mut self,
        token: Token,
        scratch: &mut [u8],
        mut report: impl FnMut(LinkInput<'_>),
    ) {
        debug_assert!(!scratch.is_empty(), "a read into nothing looks like EOF");
        let Some(i) = self.tokens.iter().position(|t| *t == token) else {
            return;
        };
        let side = Side::BOTH[i];
        let Some(socket) = self.sockets[i].as_mut() else {
            return;
        };
        if socket.connecting {
            match connect_outcome(&socket.stream) {
                Ok(false) => return,
                Ok(true) => {
                    socket.connecting = false;
                    report(LinkInput::Connected { side });
                }
                Err(why) => return report(LinkInput::Failed { side, why }),
            }
        }
        loop {
            match socket.stream.read(scratch) {
                Ok(0) => {
                    let why = String::from("connection closed by Redis");
                    return report(LinkInput::Failed { side, why });
                }
                Ok(n) => report(LinkInput::Received {
                    side,
                    bytes: &scratch[..n],
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let why = format!("read failed: {e}");
                    return report(LinkInput::Failed { side, why });
                }
            }
        }
    }

    /// Hands in the lookups that have finished.
    pub fn finished_lookups(&mut self, mut report: impl FnMut(LinkInput<'_>)) {
        for (i, slot) in self.lookups.iter_mut().enumerate() {
            if let Some(addrs) = slot.as_ref().and_then(Lookup::addresses) {
                *slot = None;
                report(LinkInput::Resolved {
                    side: Side::BOTH[i],
                    addrs: addrs.map_err(|e| e.to_string()),
                });
            }
        }
    }

    /// Writes as much of `bytes` as the side's socket takes now.
    pub fn send(&mut self, side: Side, bytes: &[u8]) -> io::Result<usize> {
        let Some(socket) = self.sockets[side.index()].as_mut() else {
            return Ok(0);
        };
        let mut sent = 0;
        while sent < bytes.len() {
            match socket.stream.write(&bytes[sent..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "connection closed",
                    ))
                }
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// Carries out what the link asks, hands in the lookups that finished
    /// and writes what waits, until the link asks for nothing more.
    pub fn settle(&mut self, link: &mut RedisLink, registry: &Registry, now: Instant) {
        loop {
            let mut moved = false;
            while let Some(out) = link.poll_output() {
                moved = true;
                if let Some((side, why)) = self.carry_out(out, registry) {
                    link.handle(LinkInput::Failed { side, why }, now);
                }
            }
            self.finished_lookups(|input| {
                moved = true;
                link.handle(input, now);
            });
            for side in Side::BOTH {
                match self.send(side, link.unsent(side)) {
                    Ok(0) => {}
                    Ok(n) => link.written(side, n),
                    Err(e) => {
                        moved = true;
                        let why = format!("write failed: {e}");
                        link.handle(LinkInput::Failed { side, why }, now);
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn open(&mut self, side: Side, addr: SocketAddr, registry: &Registry) -> io::Result<()> {
        self.close(side, registry);
        let mut stream = TcpStream::connect(addr)?;
        let interest = Interest::READABLE | Interest::WRITABLE;
        registry.register(&mut stream, self.tokens[side.index()], interest)?;
        self.sockets[side.index()] = Some(Socket {
            stream,
            connecting: true,
        });
        Ok(())
    }

    /// A lookup still in flight is left to finish unread.
    fn close(&mut self, side: Side, registry: &Registry) {
        if let Some(mut socket) = self.sockets[side.index()].take() {
            let _ = registry.deregister(&mut socket.stream);
        }
        self.lookups[side.index()] = None;
    }
}

/// Whether a non-blocking connect has completed; the error it ended in.
fn connect_outcome(stream: &TcpStream) -> Result<bool, String> {
    let failed = |e: io::Error| format!("connection failed: {e}");
    if let Some(e) = stream.take_error().map_err(failed)? {
        return Err(failed(e));
    }
    // Ready without an error: connected, unless the socket says not yet.
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests;
