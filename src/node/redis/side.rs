//! One Redis connection of a link, without its socket: its state, what
//! waits to be written to it, and the replies read from it. When to
//! connect, and what a failure leads to, is the link's business
//! (`link.rs`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::queue::OutQueue;
use super::script::parse_position;
use super::subscriptions::Following;
use crate::log;
use crate::proto::resp::{self, Reply};

/// Which of a link's two connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Subscriber,
    Publisher,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Subscriber, Side::Publisher];

    /// Its place in arrays of one thing per side.
    pub fn index(self) -> usize {
        self as usize
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Side::Subscriber => "subscriber",
            Side::Publisher => "publisher",
        }
    }
}

/// What the link reports to the worker.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A message from the channel.
    Message(Vec<u8>),
    /// A message from the Redis channel of wsnotify channel `channel`.
    ChannelMessage { channel: Arc<str>, payload: Vec<u8> },
    /// The subscription began or stopped following a wsnotify channel.
    Following(Following),
    /// Where channel `channel` stands, as Redis says when asked
    /// (`RedisLink::ask_channel_position`).
    ChannelPosition {
        channel: Arc<str>,
        epoch: String,
        offset: u64,
    },
    /// A side became ready (true) or was lost (false).
    Ready(bool),
    /// Where the broadcast stream stands, as Redis (its sequencer) says
    /// when the publishing side connects.
    Position { epoch: String, offset: u64 },
}

#[derive(Debug)]
pub(super) enum State {
    Down {
        retry_at: Instant,
    },
    /// The shell looks the host name up.
    Resolving,
    /// The shell connects; `rest` are the addresses to try if this one
    /// fails, the next one last.
    Connecting {
        deadline: Instant,
        rest: Vec<SocketAddr>,
    },
    /// Connected, waiting for the handshake replies.
    Handshake {
        deadline: Instant,
    },
    Ready,
}

/// Why a connection attempt or connection ended.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) why: String,
    /// Redis refused the credentials: retrying soon cannot help.
    pub(super) credentials: bool,
}

impl From<String> for Failure {
    fn from(why: String) -> Failure {
        Failure {
            why,
            credentials: false,
        }
    }
}

#[derive(Debug)]
pub(super) struct Connection {
    pub(super) side: Side,
    pub(super) state: State,
    inbuf: Vec<u8>,
    pub(super) out: OutQueue,
    /// Failures since the side was last ready: the backoff step.
    pub(super) attempt: u32,
    /// The handshake commands whose replies are still to come, in order.
    awaiting: VecDeque<&'static str>,
    /// The publications whose reply is still to come, in order.
    pub(super) unanswered: VecDeque<Unanswered>,
    /// Bytes of the channel messages kept in `unanswered`.
    pub(super) held_bytes: usize,
    /// What the subscription pushed (messages, confirmations), for the
    /// link to read after `received`.
    pub(super) pushed: VecDeque<Pushed>,
    /// Channel messages Redis refused to number (an error reply, such as
    /// `NOPERM`), for the link to release after `received`.
    pub(super) refused: Vec<Held>,
}

/// What Redis pushed on a subscription connection.
#[derive(Debug)]
pub(super) enum Pushed {
    Message { topic: Vec<u8>, payload: Vec<u8> },
    Confirmed { topic: Vec<u8>, subscribed: bool },
}

/// A publication whose reply is still to come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unanswered {
    /// When the wait for its reply began: the oldest tells a Redis that
    /// stopped answering from one that is busy. `None` until the start of
    /// the loop turn after the one that queued it, the first moment it was
    /// surely written (see `RedisLink::turn_began`).
    pub(super) since: Option<Instant>,
    pub(super) what: Awaited,
}

/// What a publication was, for what its reply (or its loss) leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Awaited {
    /// A plain publication, or a broadcast kept in `Returns`.
    Publication,
    /// A hole of the broadcast stream, owed for the history of that
    /// generation (see `script`).
    Hole(u64),
    /// A hole of a channel, owed for the history of that generation.
    ChannelHole(Arc<str>, u64),
    /// A channel message sent for numbering: kept until Redis answers,
    /// delivered without an offset if it does not in time.
    Channel(Held),
    /// A question for where a channel stands.
    ChannelPosition(Arc<str>),
}

/// A channel message of this worker sent for numbering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub seq: u64,
    pub channel: Arc<str>,
    pub json: Box<str>,
}

impl Held {
    /// What it costs while kept, counted against the link's cap.
    pub(super) fn cost(&self) -> usize {
        self.channel.len() + self.json.len() + 48
    }
}

impl Unanswered {
    pub(super) fn new(what: Awaited) -> Unanswered {
        Unanswered { since: None, what }
    }

    /// The generation of the stream's hole it is, if one.
    pub(super) fn hole(&self) -> Option<u64> {
        match self.what {
            Awaited::Hole(generation) => Some(generation),
            _ => None,
        }
    }
}

impl Connection {
    pub(super) fn new(side: Side, now: Instant) -> Connection {
        Connection {
            side,
            state: State::Down { retry_at: now },
            inbuf: Vec::new(),
            out: OutQueue::default(),
            attempt: 0,
            awaiting: VecDeque::new(),
            unanswered: VecDeque::new(),
            held_bytes: 0,
            pushed: VecDeque::new(),
            refused: Vec::new(),
        }
    }

    pub(super) fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready)
    }

    /// The connect has completed: what is queued may be written.
    pub(super) fn is_connected(&self) -> bool {
        matches!(self.state, State::Handshake { .. } | State::Ready)
    }

    /// The connect completed: the handshake goes out, and its replies are
    /// due by the connect's deadline.
    pub(super) fn connected(
        &mut self,
        deadline: Instant,
        handshake: Vec<(&'static str, Vec<u8>)>,
        events: &mut VecDeque<Event>,
    ) {
        self.state = State::Handshake { deadline };
        for (name, command) in handshake {
            self.out.push(&command);
            self.awaiting.push_back(name);
        }
        self.handshake_step(events);
    }

    /// Back to `Down` after a failure, with nothing of the old connection
    /// kept; returns how many bytes were never written.
    pub(super) fn reset(&mut self, retry_at: Instant) -> usize {
        self.state = State::Down { retry_at };
        self.inbuf = Vec::new();
        self.awaiting.clear();
        self.unanswered.clear();
        self.held_bytes = 0;
        self.pushed.clear();
        // A command cut by the failure cannot be finished on a new
        // connection, and Pub/Sub keeps nothing for later anyway.
        self.out.clear()
    }

    /// Bytes read from the connection: every whole reply in them is
    /// handled, a partial one waits for the rest.
    pub(super) fn received(
        &mut self,
        bytes: &[u8],
        events: &mut VecDeque<Event>,
    ) -> Result<(), Failure> {
        self.inbuf.extend_from_slice(bytes);
        let mut used = 0;
        while let Some((reply, n)) =
            resp::parse(&self.inbuf[used..]).map_err(|e| format!("bad reply: {}", e.0))?
        {
            used += n;
            self.on_reply(reply, events)?;
        }
        self.inbuf.drain(..used);
        Ok(())
    }

    /// The side is ready once every handshake reply is in.
    fn handshake_step(&mut self, events: &mut VecDeque<Event>) {
        if matches!(self.state, State::Handshake { .. }) && self.awaiting.is_empty() {
            self.state = State::Ready;
            self.attempt = 0;
            events.push_back(Event::Ready(true));
            log!(Info, "redis connected", role = self.side.name());
        }
    }

    fn on_reply(&mut self, reply: Reply, events: &mut VecDeque<Event>) -> Result<(), Failure> {
        match (&self.state, reply) {
            (State::Handshake { .. }, Reply::Error(e)) => {
                let command = self.awaiting.pop_front().unwrap_or("?");
                let credentials =
                    command == "AUTH" || e.starts_with("NOAUTH") || e.starts_with("WRONGPASS");
                let hint = if credentials {
                    " (check the user and password in --redis)"
                } else {
                    ""
                };
                Err(Failure {
                    why: format!("Redis refused the handshake ({command}): {e}{hint}"),
                    credentials,
                })
            }
            (State::Handshake { .. }, reply) => {
                if self.awaiting.pop_front() == Some("POSITION") {
                    let (epoch, offset) = parse_position(&reply)
                        .ok_or_else(|| String::from("unexpected reply to the stream script"))?;
                    events.push_back(Event::Position { epoch, offset });
                }
                self.handshake_step(events);
                Ok(())
            }
            (State::Ready, Reply::Array(Some(items))) if self.side == Side::Subscriber => {
                let mut items = items.into_iter();
                let (Some(Reply::Bulk(Some(kind))), Some(Reply::Bulk(Some(topic))), Some(third)) =
                    (items.next(), items.next(), items.next())
                else {
                    return Ok(());
                };
                let pushed = match (kind.as_slice(), third) {
                    (b"message", Reply::Bulk(Some(payload))) => Pushed::Message { topic, payload },
                    (b"subscribe", _) => Pushed::Confirmed {
                        topic,
                        subscribed: true,
                    },
                    (b"unsubscribe", _) => Pushed::Confirmed {
                        topic,
                        subscribed: false,
                    },
                    _ => return Ok(()),
                };
                self.pushed.push_back(pushed);
                Ok(())
            }
            (State::Ready, reply) if self.side == Side::Publisher => {
                let what = self.unanswered.pop_front().map(|u| u.what);
                if let Reply::Error(e) = &reply {
                    log!(Warn, "redis error reply", error = e);
                }
                match what {
                    Some(Awaited::Channel(held)) => {
                        self.held_bytes -= held.cost();
                        if matches!(reply, Reply::Error(_)) {
                            self.refused.push(held);
                        }
                    }
                    Some(Awaited::ChannelPosition(channel)) => {
                        if let Some((epoch, offset)) = parse_position(&reply) {
                            events.push_back(Event::ChannelPosition {
                                channel,
                                epoch,
                                offset,
                            });
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
            (State::Ready, Reply::Error(e)) => {
                log!(Warn, "redis error reply", error = e);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
