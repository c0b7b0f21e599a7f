//! The data of each phase, without the rules that move between them (those
//! are the `Connection` methods in `http.rs`, `ws.rs` and `closing.rs`).

use std::net::SocketAddr;

use super::event::Verdict;
use super::settings::{Settings, Tick, MAX_HTTP_QUEUED, NEVER};
use crate::obs::metrics::Limit;
use crate::proto::http::Request;
use crate::proto::message::Receiver;

/// Which phase a connection is in, for the shell's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Http,
    Ws,
    Closing,
}

#[derive(Debug)]
pub(super) enum Phase<C> {
    Http(Box<HttpState>),
    Ws(WsState<C>),
    Closing(Closing),
}

#[derive(Debug)]
pub(super) struct HttpState {
    /// Kept while the connection speaks HTTP (publishing checks it).
    pub(super) peer: SocketAddr,
    pub(super) buf: Vec<u8>,
    /// A request whose head is complete, waiting for this many body bytes.
    pub(super) awaiting_body: Option<(Request, usize)>,
    /// A request whose answer waits for another worker, by ticket: no other
    /// request is taken until it is answered.
    pub(super) parked: Option<(u64, Request)>,
    /// The tick by which the next request head (or pending body) must be in.
    pub(super) deadline: Tick,
    pub(super) served: u32,
    /// Reading and answering stopped because the client does not read its
    /// answers (or its buffer is full), until the queue drains.
    stalled: bool,
}

impl HttpState {
    pub(super) fn new(peer: SocketAddr, deadline: Tick) -> HttpState {
        HttpState {
            peer,
            buf: Vec::new(),
            awaiting_body: None,
            parked: None,
            deadline,
            served: 0,
            stalled: false,
        }
    }

    /// A keep-alive connection between requests holds no buffer: what a
    /// request needed is given back once it is read whole (it counts toward
    /// `--max-total-receive-bytes` while held).
    pub(super) fn release_if_idle(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
        }
    }

    /// Stops taking requests; the first stall of a run counts as a limit
    /// hit.
    pub(super) fn stall(&mut self) -> Option<Limit> {
        (!std::mem::replace(&mut self.stalled, true)).then_some(Limit::HttpBackpressure)
    }

    pub(super) fn after_flush<C>(&mut self, queued: usize) -> Option<Verdict<C>> {
        if self.stalled && queued <= MAX_HTTP_QUEUED {
            self.stalled = false;
            return Some(Verdict::ResumeReading);
        }
        None
    }
}

#[derive(Debug)]
pub(super) struct WsState<C> {
    pub(super) rx: Receiver,
    pub(super) client: C,
    pub(super) last_seen: Tick,
    pub(super) next_ping: Tick,
}

impl<C> WsState<C> {
    pub(super) fn new(client: C, deflate: bool, now: Tick, settings: &Settings) -> WsState<C> {
        WsState {
            rx: Receiver::new(settings.max_message, deflate),
            client,
            last_seen: now,
            next_ping: now + settings.ping.unwrap_or(0),
        }
    }

    pub(super) fn deadline(&self, settings: &Settings) -> Tick {
        let idle = settings.idle.map_or(NEVER, |t| self.last_seen + t);
        let ping = settings.ping.map_or(NEVER, |_| self.next_ping);
        idle.min(ping)
    }
}

#[derive(Debug)]
pub(super) struct Closing {
    /// The end of the linger: the connection is removed then at the latest.
    pub(super) until: Tick,
    write_shut: bool,
    pub(super) mode: CloseMode,
}

/// What is still awaited from the peer once our last bytes are out.
#[derive(Debug)]
pub(super) enum CloseMode {
    /// Shut the write side, then discard input until the peer closes.
    /// Closing only after the peer's FIN keeps a reset from destroying the
    /// Close frame or error response before the peer has read it.
    Linger,
    /// We sent a Close: wait for the peer's Close (RFC 6455 7.1.1), then end
    /// the connection.
    AwaitClose(Receiver),
    /// Nothing more is expected from the peer: end the connection as soon
    /// as the queue is written and the socket is quiet.
    AfterFlush,
}

impl CloseMode {
    /// We sent a Close and wait for the peer's: what it was still sending
    /// us is dropped, and nothing more is kept (see `Receiver::drop_message`).
    pub(super) fn await_close(mut rx: Receiver) -> CloseMode {
        rx.drop_message();
        CloseMode::AwaitClose(rx)
    }
}

impl Closing {
    pub(super) fn new(until: Tick, mode: CloseMode) -> Closing {
        Closing {
            until,
            write_shut: false,
            mode,
        }
    }

    pub(super) fn after_flush<C>(&mut self, flushed: bool) -> Option<Verdict<C>> {
        if !flushed {
            return None;
        }
        if matches!(self.mode, CloseMode::AfterFlush) {
            return Some(Verdict::CheckQuiet);
        }
        if !std::mem::replace(&mut self.write_shut, true) {
            return Some(Verdict::ShutWrite);
        }
        None
    }
}
