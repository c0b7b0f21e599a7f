//! One connection as data: a state machine with no socket and no clock.
//!
//! The shell feeds it the bytes it read and the current tick; it answers
//! with what happened ([`Event`]), keeps what is to be sent in its queue
//! ([`Connection::out`]), and says when it next needs the clock
//! ([`Connection::deadline`]). Its phases: HTTP (requests, keep-alive,
//! pipelining, 100-continue, a parked request, backpressure), WebSocket
//! (messages, control frames, ping and idle timers, the slow-consumer
//! verdict) and closing (the close handshake, waiting for the peer's Close,
//! the linger). [`Connection::enter`] is the one place the phase changes.
//!
//! `C` is what the application attaches to a WebSocket client (its
//! endpoint and id); the connection only carries it.

mod closing;
mod event;
mod http;
pub mod write_queue;
mod ws;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use closing::Closed;
pub use event::{Ending, Event, Stale, Verdict};
pub use http::MAX_HTTP_QUEUED;
pub use write_queue::{Chunk, WriteQueue};

use crate::proto::message::Receiver;
use closing::{CloseMode, Closing};
use http::HttpState;
use ws::WsState;

/// A point in time in ticks of the shell's clock (100 ms in the server):
/// 32 bits keep the per-connection state small and last 13 years.
pub type Tick = u32;
/// A deadline that never comes.
pub const NEVER: Tick = Tick::MAX;

/// What every connection of a worker shares: its timeouts in ticks and its
/// size limits. Kept by the shell and passed in, not stored per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Time for a request head (or a pending body), and for a keep-alive
    /// connection's next request.
    pub header: Tick,
    pub idle: Option<Tick>,
    pub ping: Option<Tick>,
    /// How long a closing connection may take to read our last bytes.
    pub linger: Tick,
    pub max_message: usize,
    /// Unsent bytes past which a WebSocket client is a slow consumer.
    pub max_queue: usize,
}

#[derive(Debug)]
pub struct Connection<C> {
    phase: Phase<C>,
    out: WriteQueue,
}

/// Which phase a connection is in, for the shell's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Http,
    Ws,
    Closing,
}

#[derive(Debug)]
enum Phase<C> {
    Http(Box<HttpState>),
    Ws(WsState<C>),
    Closing(Closing),
}

impl<C: Copy> Connection<C> {
    pub fn new(peer: SocketAddr, now: Tick, settings: &Settings) -> Connection<C> {
        Connection {
            phase: Phase::Http(Box::new(HttpState::new(peer, now + settings.header))),
            out: WriteQueue::default(),
        }
    }

    /// Takes received bytes until they produce an event or run out; returns
    /// how many were used. Call again with the rest (or with nothing, after
    /// an HTTP request, for the pipelined ones) until it returns no event
    /// and nothing is left.
    pub fn receive(
        &mut self,
        input: &[u8],
        now: Tick,
        settings: &Settings,
    ) -> (usize, Option<Event<C>>) {
        match self.phase {
            Phase::Http(_) => self.http_receive(input, now, settings),
            Phase::Ws(_) => self.ws_receive(input, now, settings),
            Phase::Closing(_) => (self.closing_receive(input), None),
        }
    }

    /// The peer will send nothing more.
    pub fn peer_eof(&mut self, now: Tick, settings: &Settings) -> Option<Event<C>> {
        let queued = !self.out.is_empty();
        match &self.phase {
            // An HTTP client that half-closed after its request still gets
            // the queued answer.
            Phase::Http(_) | Phase::Closing(_) if queued => {
                self.start_closing(CloseMode::AfterFlush, now, settings);
                None
            }
            // A half-closed peer may still read: what is queued for it (say,
            // the 101 and the welcome of an upgrade sent with the FIN) goes
            // out first.
            Phase::Ws(_) if queued => {
                let client = self.end_ws(|_| CloseMode::AfterFlush, now, settings)?;
                Some(Event::Left {
                    client,
                    why: Ending::PeerGone,
                })
            }
            Phase::Ws(_) => Some(Event::Closed(Closed::PeerGone)),
            _ => Some(Event::Closed(Closed::PeerClosed)),
        }
    }

    /// The tick at which this connection next needs attention.
    pub fn deadline(&self, settings: &Settings) -> Tick {
        match &self.phase {
            Phase::Http(http) => http.deadline,
            Phase::Ws(ws) => ws.deadline(settings),
            Phase::Closing(closing) => closing.until,
        }
    }

    /// Whatever is due at `now`: timeouts, pings, the end of a linger.
    pub fn on_deadline(&mut self, now: Tick, settings: &Settings) -> Option<Event<C>> {
        if self.deadline(settings) > now {
            return None;
        }
        match self.phase {
            Phase::Http(_) => self.http_deadline(now, settings),
            Phase::Ws(_) => self.ws_deadline(now, settings),
            Phase::Closing(_) => Some(Event::Closed(Closed::LingerExpired)),
        }
    }

    /// What follows a write of the queue, given what is left in it.
    pub fn after_flush(&mut self, now: Tick, settings: &Settings) -> Option<Verdict<C>> {
        match &mut self.phase {
            Phase::Http(http) => http.after_flush(self.out.pending()),
            Phase::Ws(_) if self.out.pending() > settings.max_queue => {
                self.drop_slow_consumer(now, settings)
            }
            Phase::Ws(_) => None,
            Phase::Closing(closing) => closing.after_flush(self.out.is_empty()),
        }
    }

    /// What to send, in order.
    pub fn out(&self) -> &WriteQueue {
        &self.out
    }

    /// The queue, for the shell to write from and to deliver broadcasts
    /// into.
    pub fn out_mut(&mut self) -> &mut WriteQueue {
        &mut self.out
    }

    /// The WebSocket client's application data, while it is one.
    pub fn client(&self) -> Option<&C> {
        match &self.phase {
            Phase::Ws(ws) => Some(&ws.client),
            _ => None,
        }
    }

    pub fn client_mut(&mut self) -> Option<&mut C> {
        match &mut self.phase {
            Phase::Ws(ws) => Some(&mut ws.client),
            _ => None,
        }
    }

    /// The peer's address while it speaks HTTP (a WebSocket client does not
    /// carry it: the socket knows it).
    pub fn peer(&self) -> Option<SocketAddr> {
        match &self.phase {
            Phase::Http(http) => Some(http.peer),
            _ => None,
        }
    }

    pub fn stage(&self) -> Stage {
        match self.phase {
            Phase::Http(_) => Stage::Http,
            Phase::Ws(_) => Stage::Ws,
            Phase::Closing(_) => Stage::Closing,
        }
    }

    pub fn is_ws(&self) -> bool {
        self.stage() == Stage::Ws
    }

    /// The one place the phase changes; returns the phase left.
    fn enter(&mut self, next: Phase<C>) -> Phase<C> {
        std::mem::replace(&mut self.phase, next)
    }

    /// Queued bytes go out, then `mode` decides what is still awaited from
    /// the peer, within the linger.
    fn start_closing(&mut self, mode: CloseMode, now: Tick, settings: &Settings) {
        self.enter(Phase::Closing(Closing::new(now + settings.linger, mode)));
    }

    /// Leaves the WebSocket phase for closing; `mode` gets the receiver for
    /// a close that still awaits the peer's Close. Returns the client that
    /// left.
    fn end_ws(
        &mut self,
        mode: impl FnOnce(Receiver) -> CloseMode,
        now: Tick,
        settings: &Settings,
    ) -> Option<C> {
        if !self.is_ws() {
            return None;
        }
        let closing = Closing::new(now + settings.linger, CloseMode::Linger);
        let Phase::Ws(ws) = self.enter(Phase::Closing(closing)) else {
            return None;
        };
        if let Phase::Closing(closing) = &mut self.phase {
            closing.mode = mode(ws.rx);
        }
        Some(ws.client)
    }
}
