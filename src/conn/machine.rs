//! The connection: its phase and its queue, and the calls every phase
//! answers. `enter` is the one place the phase changes.

use std::net::SocketAddr;

use super::event::{Closed, Ending, Event, Verdict};
use super::settings::{Settings, Tick};
use super::state::{CloseMode, Closing, HttpState, Phase, Stage};
use super::write_queue::WriteQueue;
use crate::proto::deflate::Inflater;
use crate::proto::message::Receiver;

#[derive(Debug)]
pub struct Connection<C> {
    pub(super) phase: Phase<C>,
    pub(super) out: WriteQueue,
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
    /// and nothing is left. `inflater`, the worker's one, inflates
    /// compressed messages.
    pub fn receive(
        &mut self,
        input: &[u8],
        now: Tick,
        settings: &Settings,
        inflater: &mut Inflater,
    ) -> (usize, Option<Event<C>>) {
        match self.phase {
            Phase::Http(_) => self.http_receive(input, now, settings),
            Phase::Ws(_) => self.ws_receive(input, now, settings, inflater),
            Phase::Closing(_) => (self.closing_receive(input, inflater), None),
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
            Phase::Ws(_) if self.out.held() > settings.max_queue => {
                self.drop_slow_consumer(now, settings)
            }
            Phase::Ws(_) => None,
            Phase::Closing(closing) => closing.after_flush(self.out.is_empty()),
        }
    }

    /// Drops a WebSocket client as a slow consumer although its own queue
    /// is within its limit: the process holds too much in all queues (see
    /// `--max-total-queue-bytes`).
    pub fn shed(&mut self, now: Tick, settings: &Settings) -> Option<Verdict<C>> {
        match self.phase {
            Phase::Ws(_) => self.drop_slow_consumer(now, settings),
            _ => None,
        }
    }

    /// What to send, in order.
    pub fn out(&self) -> &WriteQueue {
        &self.out
    }

    /// Writes as much of the queue as `out` takes (see
    /// `WriteQueue::flush_to`); `after_flush` says what follows.
    pub fn flush_to<W: std::io::Write>(&mut self, out: &mut W) -> std::io::Result<usize> {
        self.out.flush_to(out)
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

    /// Heap bytes held for what a client is still sending: an unfinished
    /// WebSocket message (its frames and fragments), or an HTTP request's
    /// head and body. Counted toward `--max-total-receive-bytes`.
    pub fn receiving(&self) -> usize {
        match &self.phase {
            Phase::Ws(ws) => ws.rx.held(),
            Phase::Http(http) => http.buf.capacity(),
            Phase::Closing(_) => 0,
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

    /// Whether this WebSocket client negotiated permessage-deflate (false
    /// outside the WebSocket phase).
    pub fn deflate(&self) -> bool {
        matches!(&self.phase, Phase::Ws(ws) if ws.rx.deflate())
    }

    /// The one place the phase changes; returns the phase left.
    pub(super) fn enter(&mut self, next: Phase<C>) -> Phase<C> {
        std::mem::replace(&mut self.phase, next)
    }

    /// Queued bytes go out, then `mode` decides what is still awaited from
    /// the peer, within the linger.
    pub(super) fn start_closing(&mut self, mode: CloseMode, now: Tick, settings: &Settings) {
        self.enter(Phase::Closing(Closing::new(now + settings.linger, mode)));
    }

    /// Leaves the WebSocket phase for closing; `mode` gets the receiver for
    /// a close that still awaits the peer's Close. Returns the client that
    /// left.
    pub(super) fn end_ws(
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
