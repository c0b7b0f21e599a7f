//! What a connection tells the shell.

use std::fmt;

use crate::obs::metrics::Limit;
use crate::proto::fault::{FrameError, HttpError};
use crate::proto::http::Request;
use crate::proto::message::Message;

#[derive(Debug)]
pub enum Event<C> {
    /// A complete request. The shell answers it with `respond`, `upgrade`
    /// or `park` before it feeds the connection again.
    Request { request: Request, body: Vec<u8> },
    /// A data message (Text or Binary) from a WebSocket client.
    Message(Message),
    /// The client left the WebSocket phase; its connection is closing.
    Left { client: C, why: Ending },
    /// A request broke an HTTP rule: the error answer is queued and the
    /// connection is closing.
    Refused(HttpError),
    /// A limit held the peer back without ending anything.
    Limit(Limit),
    /// The parked request with this ticket waited too long; the shell
    /// answers it with `answer_parked`.
    ParkExpired(u64),
    /// Nothing more to do: the shell removes the connection.
    Closed(Closed),
}

/// Why a WebSocket client left, mapped here to its limit and its log text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client sent its Close.
    PeerClosed,
    /// The client broke a frame or message rule.
    Fault(FrameError),
    IdleTimeout,
    SlowConsumer,
    /// The server closes it (the drain): the Close frame carried this text.
    Server(&'static str),
    /// The client went away without a Close frame.
    PeerGone,
}

impl Ending {
    pub fn limit(self) -> Option<Limit> {
        match self {
            Ending::Fault(error) => error.limit(),
            Ending::IdleTimeout => Some(Limit::IdleTimeout),
            _ => None,
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::PeerClosed => f.write_str("client closed"),
            Ending::Fault(error) => error.fmt(f),
            Ending::IdleTimeout => f.write_str("idle timeout"),
            Ending::SlowConsumer => f.write_str("slow consumer"),
            Ending::Server(reason) => f.write_str(reason),
            Ending::PeerGone => f.write_str("connection closed by peer without a close frame"),
        }
    }
}

/// What a write of the queue leads to.
#[derive(Debug)]
pub enum Verdict<C> {
    /// HTTP requests were held back while answers piled up; the queue is
    /// short again, so the shell reads on.
    ResumeReading,
    /// Our last bytes are out: the shell shuts the write side.
    ShutWrite,
    /// Our last bytes are out and nothing more is expected: the shell
    /// reads once more, and a quiet socket (or its end) closes it. Reading
    /// first keeps the kernel from answering unread input with a reset
    /// that would destroy what the peer has not read yet.
    CheckQuiet,
    /// The client let its queue grow past the limit.
    Dropped(Event<C>),
}

/// An answer for a parked request that no longer waits (or never did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale;

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
