//! The end of a connection: our last bytes out, the peer's side of the
//! close, and a bounded wait so no peer can hold a socket open.

use std::fmt;

use super::event::{Event, Verdict};
use super::{Connection, Phase, Tick};
use crate::proto::message::{Message, Receiver};

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

/// Why a connection is removed (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Everything was said on both sides.
    Done,
    KeepAliveTimeout,
    LingerExpired,
    PeerClosed,
    /// A WebSocket client's socket ended without a Close frame.
    PeerGone,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Closed::Done => "closed",
            Closed::KeepAliveTimeout => "keep-alive timeout",
            Closed::LingerExpired => "close linger expired",
            Closed::PeerClosed => "connection closed by peer",
            Closed::PeerGone => "connection closed by peer without a close frame",
        })
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

impl<C: Copy> Connection<C> {
    /// What a closing peer still sends: its Close when we await one,
    /// otherwise nothing that matters until it closes. Uses everything.
    pub(super) fn closing_receive(&mut self, input: &[u8]) -> usize {
        let Phase::Closing(closing) = &mut self.phase else {
            return input.len();
        };
        if input.is_empty() {
            return 0;
        }
        match &mut closing.mode {
            // The peer sent more after its Close: it is waited for until its
            // FIN (see `Verdict::CheckQuiet`).
            CloseMode::AfterFlush => closing.mode = CloseMode::Linger,
            CloseMode::Linger => {}
            CloseMode::AwaitClose(rx) => {
                let mut rest = input;
                while !rest.is_empty() {
                    let (used, result) = rx.feed(rest);
                    rest = &rest[used..];
                    if matches!(result, Ok(Some(Message::Close(_))) | Err(_)) {
                        closing.mode = if rest.is_empty() {
                            CloseMode::AfterFlush
                        } else {
                            CloseMode::Linger
                        };
                        break;
                    }
                }
            }
        }
        input.len()
    }

    /// A read found nothing waiting. A connection that only waited for its
    /// queue to empty is done once it has.
    pub fn input_quiet(&mut self) -> Option<Event<C>> {
        match &self.phase {
            Phase::Closing(Closing {
                mode: CloseMode::AfterFlush,
                ..
            }) if self.out.is_empty() => Some(Event::Closed(Closed::Done)),
            _ => None,
        }
    }
}
